#include "policy.hpp"

// date's headers trip a false -Wmaybe-uninitialized in GCC 12 at -O2 (as in notify_core).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <date/date.h>
#include <date/tz.h>

#include <cctype>
#include <cmath>
#include <ostream>
#include <stdexcept>

#include "notify/config.hpp"
#include "notify/time.hpp"

namespace worker {

namespace {

using std::chrono::days;
using std::chrono::milliseconds;
using std::chrono::seconds;

// "HH:MM" or "HH:MM:SS" (hour with one or two digits); nullopt if malformed or out of range.
std::optional<seconds> parse_time_of_day(const std::string& text) {
  int fields[3] = {0, 0, 0};
  int count = 0;
  std::size_t i = 0;
  while (count < 3) {
    const std::size_t begin = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    const std::size_t digits = i - begin;
    if (digits == 0 || digits > 2 || (count > 0 && digits != 2)) return std::nullopt;
    fields[count++] = std::stoi(text.substr(begin, digits));
    if (i == text.size()) break;
    if (text[i] != ':') return std::nullopt;
    ++i;
  }
  if (i != text.size() || count < 2) return std::nullopt;
  if (fields[0] > 23 || fields[1] > 59 || fields[2] > 59) return std::nullopt;
  return std::chrono::hours(fields[0]) + std::chrono::minutes(fields[1]) + seconds(fields[2]);
}

const date::time_zone* find_zone(const std::string& name) {
  if (name.empty()) return nullptr;
  try {
    return date::locate_zone(name);
  } catch (const std::exception&) {  // date throws std::runtime_error for unknown names
    return nullptr;
  }
}

// The first instant after `now` at which the zone's clocks show `local`. A local time skipped
// by a spring-forward jump maps to the jump itself; a repeated one (autumn) to its earlier
// occurrence unless that is already past.
notify::TimePoint first_instant_after(const date::time_zone& zone, date::local_seconds local,
                                      notify::TimePoint now) {
  const date::local_info info = zone.get_info(local);
  const date::sys_seconds as_if_utc{local.time_since_epoch()};
  switch (info.result) {
    case date::local_info::nonexistent:
      return info.first.end;
    case date::local_info::ambiguous: {
      const notify::TimePoint earlier = as_if_utc - info.first.offset;
      return earlier > now ? earlier : as_if_utc - info.second.offset;
    }
    default:
      return as_if_utc - info.first.offset;
  }
}

// The end of the quiet window containing `now` in `zone`, or nullopt if `now` is outside.
std::optional<notify::TimePoint> quiet_window_end(const date::time_zone& zone,
                                                  notify::TimePoint now,
                                                  const QuietWindow& window) {
  const auto local = zone.to_local(now);
  const auto day = std::chrono::floor<days>(local);
  const auto time_of_day = std::chrono::floor<seconds>(local - day);
  if (!in_quiet_window(time_of_day, window)) return std::nullopt;
  // In the evening half of a window crossing midnight, the end is on the next local day.
  const bool ends_tomorrow = window.start > window.end && time_of_day >= window.start;
  const date::local_seconds end_local = day + days(ends_tomorrow ? 1 : 0) + window.end;
  return first_instant_after(zone, end_local, now);
}

milliseconds spread_offset(milliseconds spread, const std::function<double()>& random01) {
  if (spread <= milliseconds::zero() || !random01) return milliseconds::zero();
  const double r = random01();
  if (!(r > 0.0)) return milliseconds::zero();  // also catches NaN
  const auto offset = milliseconds(std::llround(static_cast<double>(spread.count()) * r));
  return offset < spread ? offset : spread - milliseconds(1);  // keep [end, end + spread)
}

}  // namespace

QuietWindow parse_quiet_window(const std::string& text) {
  const auto dash = text.find('-');
  std::optional<seconds> start, end;
  if (dash != std::string::npos) {
    start = parse_time_of_day(notify::trim(text.substr(0, dash)));
    end = parse_time_of_day(notify::trim(text.substr(dash + 1)));
  }
  if (!start || !end) {
    throw notify::ConfigError("quiet hours \"" + text +
                              "\": expected HH:MM-HH:MM or HH:MM:SS-HH:MM:SS (e.g. 22:00-08:00)");
  }
  return QuietWindow{*start, *end};
}

bool in_quiet_window(seconds time_of_day, const QuietWindow& window) {
  if (window.start == window.end) return false;
  if (window.start < window.end) {
    return time_of_day >= window.start && time_of_day < window.end;
  }
  return time_of_day >= window.start || time_of_day < window.end;  // crosses midnight
}

bool is_known_timezone(const std::string& name) { return find_zone(name) != nullptr; }

std::string_view to_string(DeferReason reason) {
  switch (reason) {
    case DeferReason::kQuietHours:
      return "quiet_hours";
    case DeferReason::kScheduled:
      return "scheduled";
    case DeferReason::kRetry:
      return "retry";
    case DeferReason::kThrottled:
      return "throttled";
    case DeferReason::kDeferred:
      return "deferred";
    case DeferReason::kClaimed:
      return "claimed";
  }
  return "deferred";
}

std::string_view to_string(DropReason reason) {
  return reason == DropReason::kExpired ? "expired" : "expired_before_window";
}

Evaluation decide(const notify::Posting& posting, notify::TimePoint now,
                  const PolicyOptions& options, const std::function<double()>& random01) {
  Evaluation result{Send{}, false, posting.recipient.timezone};
  const date::time_zone* zone = find_zone(posting.recipient.timezone);
  if (zone == nullptr) {
    zone = find_zone(options.default_timezone);
    if (zone == nullptr) {
      throw notify::ConfigError("unknown default time zone \"" + options.default_timezone + "\"");
    }
    result.zone_fallback = true;
    result.zone = options.default_timezone;
  }

  if (now >= posting.expires_at) {
    result.decision = Drop{DropReason::kExpired};
    return result;
  }
  if (posting.not_before && now < *posting.not_before) {
    if (*posting.not_before >= posting.expires_at) {
      result.decision = Drop{DropReason::kExpiredBeforeWindow};
    } else {
      result.decision = Defer{*posting.not_before, DeferReason::kScheduled};
    }
    return result;
  }
  if (posting.quiet_hours == notify::QuietHours::kRespect) {
    if (const auto end = quiet_window_end(*zone, now, options.quiet)) {
      const notify::TimePoint until = *end + spread_offset(options.spread, random01);
      if (until >= posting.expires_at) {
        result.decision = Drop{DropReason::kExpiredBeforeWindow};
      } else {
        result.decision = Defer{until, DeferReason::kQuietHours};
      }
      return result;
    }
  }
  return result;  // Send
}

std::string to_string(const Decision& decision) {
  struct Describe {
    std::string operator()(const Send&) const { return "send"; }
    std::string operator()(const Defer& d) const {
      return "defer " + std::string(to_string(d.reason)) + " until " +
             notify::format_iso8601(d.until);
    }
    std::string operator()(const Drop& d) const {
      return "drop " + std::string(to_string(d.reason));
    }
  };
  return std::visit(Describe{}, decision);
}

std::ostream& operator<<(std::ostream& out, const Decision& decision) {
  return out << to_string(decision);
}

}  // namespace worker
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
