#include "notify/time.hpp"

// date::parse trips a false -Wmaybe-uninitialized in GCC 12 at -O2.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <date/date.h>

#include <algorithm>
#include <cctype>
#include <initializer_list>
#include <sstream>

namespace notify {

TimePoint SystemClock::now() const {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

TimePoint add_capped(TimePoint t, std::chrono::milliseconds d) {
  if (d.count() > 0 && t > kLatestTime - d) return kLatestTime;
  if (d.count() < 0 && t < kEarliestTime - d) return kEarliestTime;
  return t + d;
}

std::string format_iso8601(TimePoint t) { return date::format("%FT%TZ", t); }

std::optional<TimePoint> parse_iso8601(std::string_view text) {
  // The fraction is taken off first and the rest parsed to whole seconds: a nanosecond clock
  // wraps outside 1677..2262, and a time such as 9999-12-31 (an expiry meaning "never") must
  // neither wrap nor be refused. "YYYY-MM-DDTHH:MM:SS" is 19 characters; a fraction follows.
  constexpr std::size_t kFractionAt = 19;
  constexpr std::size_t kMaxFractionDigits = 9;
  // Digits where the digits go: date::parse reads the seconds as a floating-point number, and
  // "10:00:e00" (found by fuzz_posting) made it convert a NaN to an integer, which is undefined.
  constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd";
  if (text.size() < kShape.size()) return std::nullopt;
  for (std::size_t i = 0; i < kShape.size(); ++i) {
    const char c = text[i];
    const bool fits = kShape[i] == 'd'   ? std::isdigit(static_cast<unsigned char>(c)) != 0
                      : kShape[i] == 'T' ? c == 'T' || c == ' '
                                         : c == kShape[i];
    if (!fits) return std::nullopt;
  }
  std::string whole(text);
  std::chrono::milliseconds fraction{0};
  if (whole.size() > kFractionAt && whole[kFractionAt] == '.') {
    std::size_t end = kFractionAt + 1;
    while (end < whole.size() && std::isdigit(static_cast<unsigned char>(whole[end]))) ++end;
    const std::size_t digits = end - kFractionAt - 1;
    if (digits == 0 || digits > kMaxFractionDigits) return std::nullopt;
    // Kept to the millisecond: further digits are cut off, not rounded.
    std::string millis = whole.substr(kFractionAt + 1, std::min<std::size_t>(digits, 3));
    millis.resize(3, '0');
    fraction = std::chrono::milliseconds(std::stoi(millis));
    whole.erase(kFractionAt, end - kFractionAt);
  }
  // Zulu or numeric offsets (+03:00 and +0300), nothing else: date::parse negated an unread
  // offset of "-" and NUL bytes (found by fuzz_links), which overflows.
  const std::string_view zone = std::string_view(whole).substr(kFractionAt);
  const auto digits_at = [&](std::initializer_list<std::size_t> at) {
    for (std::size_t i : at) {
      if (!std::isdigit(static_cast<unsigned char>(zone[i]))) return false;
    }
    return true;
  };
  const bool signed_offset = !zone.empty() && (zone[0] == '+' || zone[0] == '-');
  if (!(zone == "Z" || zone == "z" ||
        (signed_offset && zone.size() == 6 && zone[3] == ':' && digits_at({1, 2, 4, 5})) ||
        (signed_offset && zone.size() == 5 && digits_at({1, 2, 3, 4})))) {
    return std::nullopt;
  }
  static constexpr const char* kForms[] = {"%FT%TZ", "%FT%T%Ez", "%FT%T%z", "%F %TZ", "%F %T%Ez"};
  for (const char* form : kForms) {
    std::istringstream in{whole};
    date::sys_seconds t;
    in >> date::parse(form, t);
    if (in.fail() || in.peek() != std::char_traits<char>::eof()) continue;
    const TimePoint result = t + fraction;
    if (result < kEarliestTime || result > kLatestTime) return std::nullopt;
    return result;
  }
  return std::nullopt;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace notify
