#include "trace_story.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <utility>

#include "notify/envelope.hpp"
#include "notify/json.hpp"
#include "notify/status.hpp"
#include "notify/time.hpp"

namespace notify::trace {
namespace {

using nlohmann::json;

// A status event is a small object; anything far larger is not one.
constexpr std::size_t kMaxStatusBytes = 64 * 1024;
constexpr std::size_t kMaxStatusDepth = 16;
// What a line quotes of a reason or reply, and of an id: a story line stays one line.
constexpr std::size_t kMaxTextBytes = 300;
constexpr std::size_t kMaxIdBytes = 200;
// Recipients of a dead-lettered notification_requested named on its line.
constexpr std::size_t kUsersNamed = 3;

// Text from the topics on one line: control characters (a newline in an SMTP reply, an escape
// sequence in a reason) become spaces, and it is cut to max_bytes.
std::string one_line(std::string_view text, std::size_t max_bytes = kMaxTextBytes) {
  std::string out = shorten(text, max_bytes);
  for (char& c : out) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) c = ' ';
  }
  return out;
}

// A string field: absent is fine (left empty), another type is not.
bool read_text(const json& doc, const char* name, std::string& out) {
  const auto it = doc.find(name);
  if (it == doc.end()) return true;
  if (!it->is_string()) return false;
  out = it->get<std::string>();
  return true;
}

std::string header_value(const kafka::Message& m, std::string_view name) {
  for (const auto& [key, value] : m.headers) {
    if (key == name) return value;
  }
  return {};
}

std::string plural(long long n, std::string_view one, std::string_view many) {
  return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

std::string deferral_cause(const Entry& e) {
  if (e.reason == "quiet_hours") return "quiet hours";
  if (e.reason == "scheduled") return "scheduled";
  if (e.reason == "throttled") return "throttled";
  if (e.reason == "claimed") return "another worker holds its claim";
  if (e.reason == "retry") {
    std::string out = "retry";
    if (e.attempts) out += " after " + plural(*e.attempts, "failed attempt", "failed attempts");
    if (!e.last_error.empty()) out += ": " + one_line(e.last_error);
    return out;
  }
  return e.reason.empty() ? "no reason given" : one_line(e.reason);
}

std::string until_text(const Entry& e, const date::time_zone* display_zone) {
  // The window's end as the recipient's clock shows it, when the event names the zone it was
  // read in; else in the zone the story is shown in.
  const date::time_zone* zone = display_zone;
  std::string zone_name = display_zone != nullptr ? std::string(display_zone->name()) : "UTC";
  if (!e.zone.empty()) {
    try {
      zone = date::locate_zone(e.zone);
      zone_name = e.zone;
    } catch (const std::exception&) {  // date throws std::runtime_error for an unknown name
      zone_name += " (zone " + one_line(e.zone, kMaxIdBytes) + " unknown here)";
    }
  }
  return format_time(*e.until, zone) + " " + zone_name;
}

std::string skip_cause(const std::string& reason) {
  if (reason == "opted_out") return "skipped, the user opted out";
  if (reason == "inactive") return "skipped, the user is inactive";
  if (reason == "no_address") return "skipped, the user has no address";
  return "skipped: " + (reason.empty() ? std::string("no reason given") : one_line(reason));
}

std::string duplicate_cause(const std::string& reason) {
  std::string out = "duplicate suppressed, already sent";
  if (reason == "redelivered") return out + " (a redelivered copy)";
  if (reason == "retry_copy") return out + " (a copy of a retry)";
  if (reason == "republished") return out + " (published again)";
  return reason.empty() ? out : out + " (" + one_line(reason) + ")";
}

}  // namespace

std::optional<Entry> decode_status(std::string_view value) {
  if (value.size() > kMaxStatusBytes) return std::nullopt;
  json doc;
  status::Event event;
  try {
    doc = parse_json(value, JsonLimits{kMaxStatusDepth});
    event = status::decode_document(doc);
  } catch (const JsonError&) {
    return std::nullopt;
  } catch (const std::invalid_argument&) {  // not an event of the contract
    return std::nullopt;
  }
  if (event.status.empty() || event.event_id.empty()) return std::nullopt;
  Entry e;
  e.time = event.time;
  e.status = std::move(event.status);
  e.service = std::move(event.service);
  e.event_id = std::move(event.event_id);
  e.event_type = std::move(event.event_type);
  e.posting_id = std::move(event.posting_id);
  e.user_id = std::move(event.user_id);
  e.channel = std::move(event.channel);
  e.template_name = std::move(event.template_name);
  e.reason = std::move(event.reason);
  e.until = event.until;
  e.zone = std::move(event.zone);
  e.reply = std::move(event.reply);
  if (event.attempts) e.attempts = *event.attempts;
  e.last_error = std::move(event.last_error);
  e.json = std::move(doc);
  return e;
}

std::optional<Entry> decode_dead_letter(const kafka::Message& m) {
  if (!m.timestamp_ms || *m.timestamp_ms <= 0) return std::nullopt;
  Entry e;
  e.source = Entry::Source::kDeadLetter;
  e.time = TimePoint(std::chrono::milliseconds(*m.timestamp_ms));
  e.service = "etl_notifications";
  e.reason = header_value(m, envelope::kErrorHeader);
  e.shortened = header_value(m, "truncated") == "true";
  e.dead_letter = m.topic + "[" + std::to_string(m.partition) + "]@" + std::to_string(m.offset);

  // The refused event, when it is JSON at all: who it was for. A shortened copy is not.
  json event;
  try {
    event = parse_json(m.value);
  } catch (const JsonError&) {
  }
  if (event.is_object()) {
    std::string event_id;
    if (read_text(event, "event_id", event_id)) e.event_id = event_id;
    std::string type;
    if (read_text(event, "event_type", type)) e.event_type = type;
    // reminder: user_id; the Auth service's events: id.
    const bool auth_event =
        e.event_type == "user_signed_up" || e.event_type == "user_changed_password_successfully";
    std::string user;
    if (!read_text(event, "user_id", user) || user.empty()) {
      user.clear();
      if (auth_event && !read_text(event, "id", user)) user.clear();
    }
    e.user_id = user;
    if (const auto it = event.find("user_ids"); it != event.end() && it->is_array()) {
      for (const auto& id : *it) {
        if (id.is_string()) e.user_ids.push_back(id.get<std::string>());
      }
    }
  }
  // Without an event_id of its own an event is known by its first arrival, as the ETL names it.
  if (e.event_id.empty()) {
    const std::string topic = header_value(m, envelope::kOriginalTopicHeader);
    const std::string partition = header_value(m, envelope::kOriginalPartitionHeader);
    const std::string offset = header_value(m, envelope::kOriginalOffsetHeader);
    if (topic.empty() || partition.empty() || offset.empty()) return std::nullopt;
    e.event_id = topic + "/" + partition + "/" + offset;
  }

  e.json = json::object();
  e.json["dead_letter"] = {{"topic", m.topic}, {"partition", m.partition}, {"offset", m.offset}};
  e.json["time"] = format_iso8601(e.time);
  e.json["service"] = e.service;
  e.json["event_id"] = e.event_id;
  if (!e.event_type.empty()) e.json["event_type"] = e.event_type;
  if (!e.user_id.empty()) e.json["user_id"] = e.user_id;
  if (!e.user_ids.empty()) e.json["user_ids"] = e.user_ids;
  if (!e.reason.empty()) e.json["reason"] = e.reason;
  if (e.shortened) e.json["shortened"] = true;
  return e;
}

std::string_view to_string(Selection::By by) {
  switch (by) {
    case Selection::By::kEvent:
      return "event";
    case Selection::By::kUser:
      return "user";
    case Selection::By::kPosting:
      return "posting";
  }
  return "event";
}

bool selects(const Selection& selection, const Entry& entry) {
  switch (selection.by) {
    case Selection::By::kEvent:
      return entry.event_id == selection.id;
    case Selection::By::kUser:
      return entry.user_id == selection.id ||
             std::find(entry.user_ids.begin(), entry.user_ids.end(), selection.id) !=
                 entry.user_ids.end();
    case Selection::By::kPosting:
      return entry.posting_id == selection.id;
  }
  return false;
}

std::string format_time(TimePoint time, const date::time_zone* zone) {
  const auto seconds = std::chrono::floor<std::chrono::seconds>(time);
  if (zone == nullptr) return date::format("%F %T", seconds);
  return date::format("%F %T", date::make_zoned(zone, seconds));
}

std::string describe(const Entry& e, const date::time_zone* zone) {
  if (e.source == Entry::Source::kDeadLetter) {
    return "refused, kept in the dead-letter topic at " + e.dead_letter +
           (e.shortened ? " (a shortened copy)" : "") + ": " +
           (e.reason.empty() ? std::string("no reason recorded") : one_line(e.reason));
  }
  const std::string& s = e.status;
  if (s == "sent") return e.reply.empty() ? "sent" : "sent, " + one_line(e.reply);
  if (s == "deferred") {
    std::string out = "deferred";
    if (e.until) out += " until " + until_text(e, zone);
    return out + " (" + deferral_cause(e) + ")";
  }
  if (s == "expired") {
    return e.reason == "expired_before_window"
               ? "expired: its delivery window would open only after it expires"
               : "expired unsent";
  }
  if (s == "dead_lettered") {
    std::string out = "dead-lettered: " +
                      (e.reason.empty() ? std::string("no reason given") : one_line(e.reason));
    if (e.attempts) out += ", after " + plural(*e.attempts, "failed attempt", "failed attempts");
    if (!e.last_error.empty()) out += ", last error: " + one_line(e.last_error);
    return out;
  }
  if (s == "duplicate_suppressed") return duplicate_cause(e.reason);
  if (s == "skipped") return skip_cause(e.reason);
  if (s == "refused") {
    return "refused by the ETL: " +
           (e.reason.empty() ? std::string("no reason given") : one_line(e.reason));
  }
  // A status of a later contract: shown as it comes.
  return one_line(s, kMaxIdBytes) + (e.reason.empty() ? "" : ": " + one_line(e.reason));
}

std::string story_line(const Entry& e, const Selection& selection, const date::time_zone* zone) {
  std::string line = format_time(e.time, zone) + "  " + describe(e, zone);
  // "email/welcome": the project's templates are named for their channel already; a template
  // of another channel's name is shown beside it ("webhook email/generic").
  const std::string channel = one_line(e.channel, kMaxIdBytes);
  const std::string template_name = one_line(e.template_name, kMaxIdBytes);
  if (!template_name.empty() && (channel.empty() || template_name.starts_with(channel + "/"))) {
    line += "  " + template_name;
  } else if (!channel.empty()) {
    line += "  " + channel + (template_name.empty() ? "" : " " + template_name);
  }
  if (selection.by != Selection::By::kEvent) {
    line += "  event " + one_line(e.event_id, kMaxIdBytes);
    if (!e.event_type.empty()) line += " (" + one_line(e.event_type, kMaxIdBytes) + ")";
  }
  if (selection.by != Selection::By::kUser) {
    if (!e.user_id.empty()) line += "  user " + one_line(e.user_id, kMaxIdBytes);
    if (!e.user_ids.empty()) {
      line += "  users ";
      for (std::size_t i = 0; i < std::min(e.user_ids.size(), kUsersNamed); ++i) {
        line += (i == 0 ? "" : ", ") + one_line(e.user_ids[i], kMaxIdBytes);
      }
      if (e.user_ids.size() > kUsersNamed) {
        line += ", ... (" + std::to_string(e.user_ids.size()) + " in all)";
      }
    }
  }
  if (selection.by != Selection::By::kPosting && !e.posting_id.empty()) {
    line += "  posting " + one_line(e.posting_id, kMaxIdBytes);
  }
  return line;
}

std::string json_line(const Entry& entry) {
  return entry.json.dump(-1, ' ', false, json::error_handler_t::replace);
}

void Story::add_status(const kafka::Message& message) {
  ++status_read_;
  auto entry = decode_status(message.value);
  if (!entry) {
    ++status_undecodable_;
    return;
  }
  keep(std::move(*entry));
}

void Story::add_dead_letter(const kafka::Message& message) {
  ++dead_letters_read_;
  auto entry = decode_dead_letter(message);
  if (!entry) {
    ++dead_letters_undecodable_;
    return;
  }
  keep(std::move(*entry));
}

void Story::keep(Entry entry) {
  if (!selects(selection_, entry)) return;
  ++matched_;
  if (entries_.size() < limit_) entries_.push_back(std::move(entry));
}

std::vector<Entry> Story::entries() const {
  std::vector<Entry> out = entries_;
  std::stable_sort(out.begin(), out.end(),
                   [](const Entry& a, const Entry& b) { return a.time < b.time; });
  return out;
}

}  // namespace notify::trace
