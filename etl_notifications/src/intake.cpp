#include "intake.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <limits>
#include <set>
#include <string_view>

#include "notify/envelope.hpp"
#include "notify/json.hpp"
#include "notify/time.hpp"

namespace etl {
namespace {

using nlohmann::json;

// Ten years: anything longer is a mistake, and it keeps the arithmetic far from overflow.
constexpr long long kMaxExpiresInSeconds = 10LL * 366 * 86400;

// Longest accepted strings besides names and identities (intake.hpp): addresses (RFC 5321
// allows 254 bytes) and links. The whole event is bounded by MAX_EVENT_BYTES; these keep what
// travels into postings, logs and headers small.
constexpr std::size_t kMaxAddressBytes = 254;
constexpr std::size_t kMaxLinkBytes = 4096;
// Values quoted in a reason are cut to this.
constexpr std::size_t kQuoteBytes = 80;

std::string excerpt(std::string_view text) { return notify::shorten(text, kQuoteBytes); }

constexpr std::array<std::string_view, 4> kPriorities = {"immediate", "high", "normal", "low"};

std::optional<std::string> string_at(const json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

Rejection missing(const std::string& field) {
  return Rejection{"missing or non-string field '" + field + "'"};
}

Rejection too_long(const std::string& field, std::size_t max_bytes) {
  return Rejection{"field '" + field + "' is longer than " + std::to_string(max_bytes) + " bytes"};
}

// A field that must be a non-empty string of at most max_bytes when the type needs it.
bool need_string(const json& doc, const char* name, std::size_t max_bytes, std::string* out,
                 Rejection* why) {
  auto value = string_at(doc, name);
  if (!value || value->empty()) {
    *why = missing(name);
    return false;
  }
  if (value->size() > max_bytes) {
    *why = too_long(name, max_bytes);
    return false;
  }
  *out = std::move(*value);
  return true;
}

std::optional<Rejection> read_channels(const json& doc, const char* name, Event* event) {
  auto it = doc.find(name);
  if (it == doc.end()) return std::nullopt;
  if (!it->is_array() || it->empty()) {
    return Rejection{"field '" + std::string(name) + "' must be a non-empty array of channels"};
  }
  for (const auto& c : *it) {
    const auto channel =
        c.is_string() ? notify::channel_from(c.get_ref<const std::string&>()) : std::nullopt;
    if (!channel) {
      return Rejection{"unknown channel " + excerpt(c.dump()) + " in '" + name +
                       "' (email, webhook)"};
    }
    if (std::find(event->channels.begin(), event->channels.end(), *channel) ==
        event->channels.end()) {
      event->channels.push_back(*channel);
    }
  }
  return std::nullopt;
}

std::optional<Rejection> read_template(const json& doc, Event* event) {
  Rejection why;
  if (!need_string(doc, "template", kMaxNameBytes, &event->template_name, &why)) return why;
  auto ctx = doc.find("template_context");
  if (ctx != doc.end() && !ctx->is_null()) {
    if (!ctx->is_object()) return Rejection{"field 'template_context' must be an object"};
    event->template_context = *ctx;
  }
  return std::nullopt;
}

std::optional<Rejection> read_expires_in(const json& doc, Event* event) {
  auto it = doc.find("expires_in");
  if (it == doc.end() || it->is_null()) return std::nullopt;
  if (const auto seconds = notify::integer_as<long long>(*it);
      seconds && *seconds > 0 && *seconds <= kMaxExpiresInSeconds) {
    event->expires_in = std::chrono::seconds(*seconds);
    return std::nullopt;
  }
  if (it->is_string()) {
    if (auto d = parse_expires_in(it->get<std::string>())) {
      event->expires_in = *d;
      return std::nullopt;
    }
  }
  return Rejection{"expires_in is not a duration (e.g. \"2 days\", \"120 sec\", \"PT2H\"): " +
                   excerpt(it->dump())};
}

std::optional<Rejection> read_webhook(const json& doc, Event* event) {
  auto it = doc.find("webhook_url");
  if (it == doc.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) return missing("webhook_url");
  if (it->get_ref<const std::string&>().size() > kMaxLinkBytes) {
    return too_long("webhook_url", kMaxLinkBytes);
  }
  event->webhook_url = it->get<std::string>();
  return std::nullopt;
}

// The Auth service's messages as it emits them today: user id in "id", data in "details".
std::optional<Rejection> decode_user_event(const json& doc, Event* event) {
  Rejection why;
  if (!need_string(doc, "id", kMaxIdBytes, &event->user_id, &why)) return why;
  auto details = doc.find("details");
  if (details == doc.end() || !details->is_object()) {
    return Rejection{"missing or non-object field 'details'"};
  }
  auto email = string_at(*details, "email");
  if (!email || email->empty()) return missing("details.email");
  if (email->size() > kMaxAddressBytes) return too_long("details.email", kMaxAddressBytes);
  if (event->type == "user_signed_up") {
    auto link = string_at(*details, "confirm_link");
    if (!link || link->empty()) return missing("details.confirm_link");
    if (link->size() > kMaxLinkBytes) return too_long("details.confirm_link", kMaxLinkBytes);
  }
  event->details = *details;
  return std::nullopt;
}

std::optional<Rejection> decode_mailing(const json& doc, Event* event) {
  Rejection why;
  if (!need_string(doc, "receivers", kMaxLinkBytes, &event->receivers, &why)) return why;
  if (auto r = read_template(doc, event)) return r;
  if (auto r = read_channels(doc, "delivery_type", event)) return r;
  if (auto r = read_webhook(doc, event)) return r;
  return read_expires_in(doc, event);
}

std::optional<Rejection> decode_reminder(const json& doc, Event* event) {
  Rejection why;
  if (!need_string(doc, "user_id", kMaxIdBytes, &event->user_id, &why)) return why;
  std::string send_at;
  if (!need_string(doc, "send_at", kMaxNameBytes, &send_at, &why)) return why;
  event->send_at = notify::parse_iso8601(send_at);
  if (!event->send_at) return Rejection{"send_at is not an ISO 8601 time: " + excerpt(send_at)};
  if (auto r = read_template(doc, event)) return r;
  if (auto r = read_channels(doc, "channels", event)) return r;
  if (auto r = read_webhook(doc, event)) return r;
  return read_expires_in(doc, event);
}

std::optional<Rejection> decode_request(const json& doc, Event* event, const IntakeLimits& limits) {
  auto ids = doc.find("user_ids");
  if (ids == doc.end() || !ids->is_array() || ids->empty()) {
    return Rejection{"field 'user_ids' must be a non-empty array of strings"};
  }
  if (ids->size() > limits.max_recipients) {
    return Rejection{
        "user_ids has " + std::to_string(ids->size()) +
        " recipients, more than MAX_RECIPIENTS=" + std::to_string(limits.max_recipients)};
  }
  std::set<std::string> seen;
  for (const auto& id : *ids) {
    if (!id.is_string() || id.get<std::string>().empty()) {
      return Rejection{"field 'user_ids' must be a non-empty array of strings"};
    }
    if (id.get_ref<const std::string&>().size() > kMaxIdBytes) {
      return too_long("user_ids[]", kMaxIdBytes);
    }
    if (seen.insert(id.get<std::string>()).second) event->user_ids.push_back(id.get<std::string>());
  }
  if (auto r = read_template(doc, event)) return r;
  if (auto r = read_channels(doc, "channels", event)) return r;
  if (auto r = read_expires_in(doc, event)) return r;
  if (auto r = read_webhook(doc, event)) return r;
  if (auto q = string_at(doc, "quiet_hours")) {
    if (*q == "respect") {
      event->quiet_hours = notify::QuietHours::kRespect;
    } else if (*q == "bypass") {
      event->quiet_hours = notify::QuietHours::kBypass;
    } else {
      return Rejection{"quiet_hours must be respect or bypass, not '" + excerpt(*q) + "'"};
    }
  }
  if (auto it = doc.find("category"); it != doc.end() && !it->is_null()) {
    const auto category =
        it->is_string() ? notify::category_from(it->get_ref<const std::string&>()) : std::nullopt;
    if (!category) {
      return Rejection{"category must be transactional or bulk, not " + excerpt(it->dump())};
    }
    event->category = *category;
  }
  return std::nullopt;
}

// Kafka refuses longer topic names.
constexpr std::size_t kMaxTopicBytes = 249;

bool valid_topic(std::string_view topic) {
  if (topic.empty() || topic.size() > kMaxTopicBytes || topic == "." || topic == "..") {
    return false;
  }
  return std::all_of(topic.begin(), topic.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

// A canonical decimal ("0", "42"; not "", "+1", "-1", "007", "1e3", " 1") no larger than max.
std::optional<std::int64_t> canonical_decimal(std::string_view text, std::int64_t max) {
  if (text.empty() || text.size() > 19 || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  std::int64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const int digit = c - '0';
    if (value > (max - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

}  // namespace

std::variant<std::monostate, Origin, Rejection> origin_of(const notify::kafka::Headers& headers) {
  namespace envelope = notify::envelope;
  const std::array<std::string_view, 3> names = {envelope::kOriginalTopicHeader,
                                                 envelope::kOriginalPartitionHeader,
                                                 envelope::kOriginalOffsetHeader};
  std::array<const std::string*, 3> values{};
  std::array<int, 3> seen{};
  for (const auto& [key, value] : headers) {
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (key != names[i]) continue;
      ++seen[i];
      values[i] = &value;
    }
  }
  if (seen == std::array<int, 3>{}) return std::monostate{};
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (seen[i] != 1) {
      return Rejection{"header " + std::string(names[i]) +
                       (seen[i] == 0 ? " is missing" : " appears more than once") +
                       ": the first arrival of a replayed event is original_topic, "
                       "original_partition and original_offset, once each"};
    }
  }
  Origin origin;
  if (!valid_topic(*values[0])) {
    return Rejection{"header original_topic is not a Kafka topic name: " +
                     notify::quote(*values[0])};
  }
  origin.topic = *values[0];
  const auto partition = canonical_decimal(*values[1], std::numeric_limits<std::int32_t>::max());
  if (!partition) {
    return Rejection{"header original_partition is not a partition number: " +
                     notify::quote(*values[1])};
  }
  origin.partition = static_cast<std::int32_t>(*partition);
  const auto offset = canonical_decimal(*values[2], std::numeric_limits<std::int64_t>::max());
  if (!offset) {
    return Rejection{"header original_offset is not an offset: " + notify::quote(*values[2])};
  }
  origin.offset = *offset;
  return origin;
}

std::string message_identity(const RawMessage& m) {
  return identity_of(Origin{m.topic, m.partition, m.offset});
}

std::string identity_of(const Origin& origin) {
  return origin.topic + "/" + std::to_string(origin.partition) + "/" +
         std::to_string(origin.offset);
}

std::string event_identity(std::string_view event_id,
                           const std::variant<std::monostate, Origin, Rejection>& first_arrival,
                           const std::string& topic, std::int32_t partition, std::int64_t offset) {
  if (!event_id.empty()) return std::string(event_id);
  // A replay: the postings of the first time again.
  if (const auto* first = std::get_if<Origin>(&first_arrival)) return identity_of(*first);
  return identity_of(Origin{topic, partition, offset});
}

std::variant<Event, Rejection> decode_event(const RawMessage& message,
                                            notify::TimePoint received_at,
                                            const IntakeLimits& limits) {
  if (message.value.size() > limits.max_event_bytes) {
    return Rejection{
        "event of " + std::to_string(message.value.size()) +
        " bytes is larger than MAX_EVENT_BYTES=" + std::to_string(limits.max_event_bytes)};
  }
  // Checked even when an event_id makes it unused: a malformed one is a mistake to show.
  const auto origin = origin_of(message.headers);
  if (const auto* rejection = std::get_if<Rejection>(&origin)) return *rejection;
  json doc;
  try {
    doc = notify::parse_json(message.value, notify::JsonLimits{limits.max_json_depth});
  } catch (const notify::JsonError& e) {
    return Rejection{std::string("value is ") + e.what()};
  }
  if (!doc.is_object()) return Rejection{"value is not a JSON object"};

  Event event;
  auto type = string_at(doc, "event_type");
  if (!type || type->empty()) return missing("event_type");
  if (type->size() > kMaxNameBytes) return too_long("event_type", kMaxNameBytes);
  event.type = *type;
  event.source = string_at(doc, "from_service").value_or("");
  if (event.source.size() > kMaxNameBytes) return too_long("from_service", kMaxNameBytes);
  event.priority = string_at(doc, "priority").value_or("");
  if (!event.priority.empty() &&
      std::find(kPriorities.begin(), kPriorities.end(), event.priority) == kPriorities.end()) {
    return Rejection{"unknown priority '" + excerpt(event.priority) +
                     "' (immediate, high, normal, low)"};
  }

  auto event_id = string_at(doc, "event_id");
  if (event_id && event_id->size() > kMaxIdBytes) return too_long("event_id", kMaxIdBytes);
  event.identity = event_identity(event_id ? std::string_view(*event_id) : std::string_view(),
                                  origin, message.topic, message.partition, message.offset);

  if (auto time = string_at(doc, "event_time")) {
    auto parsed = notify::parse_iso8601(*time);
    if (!parsed) return Rejection{"event_time is not an ISO 8601 time: " + excerpt(*time)};
    event.time = *parsed;
  } else if (message.timestamp_ms && *message.timestamp_ms > 0) {
    event.time = notify::TimePoint(std::chrono::milliseconds(*message.timestamp_ms));
  } else {
    event.time = received_at;
  }

  std::optional<Rejection> refused;
  if (event.type == "user_signed_up" || event.type == "user_changed_password_successfully") {
    refused = decode_user_event(doc, &event);
  } else if (event.type == "mailing") {
    refused = decode_mailing(doc, &event);
  } else if (event.type == "reminder") {
    refused = decode_reminder(doc, &event);
  } else if (event.type == "notification_requested") {
    if (!event_id || event_id->empty()) return missing("event_id");
    refused = decode_request(doc, &event, limits);
  } else {
    return Rejection{"unknown event_type '" + excerpt(event.type) + "'"};
  }
  if (refused) return *refused;
  return event;
}

std::optional<std::chrono::milliseconds> parse_expires_in(const std::string& text) {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  std::size_t i = 0;
  auto skip_spaces = [&] {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  };
  auto number = [&]() -> std::optional<long long> {
    std::size_t start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    if (i == start || i - start > 12) return std::nullopt;
    return std::stoll(text.substr(start, i - start));
  };

  skip_spaces();
  if (i < text.size() && text[i] == 'P') {  // ISO 8601: PnDTnHnMnS (and nW)
    ++i;
    long long total = 0;
    bool in_time = false;
    bool any = false;
    while (i < text.size()) {
      if (text[i] == 'T') {
        if (in_time) return std::nullopt;
        in_time = true;
        ++i;
        continue;
      }
      auto n = number();
      if (!n || i >= text.size()) return std::nullopt;
      const char unit = text[i++];
      long long factor = 0;
      if (!in_time && unit == 'W') factor = 7 * 86400;
      if (!in_time && unit == 'D') factor = 86400;
      if (in_time && unit == 'H') factor = 3600;
      if (in_time && unit == 'M') factor = 60;
      if (in_time && unit == 'S') factor = 1;
      if (factor == 0) return std::nullopt;
      if (*n > kMaxExpiresInSeconds / factor) return std::nullopt;
      total += *n * factor;
      if (total > kMaxExpiresInSeconds) return std::nullopt;
      any = true;
    }
    if (!any || total <= 0) return std::nullopt;
    return std::chrono::duration_cast<milliseconds>(seconds(total));
  }

  auto n = number();
  if (!n) return std::nullopt;
  skip_spaces();
  std::string unit;
  while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) {
    unit.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(text[i++]))));
  }
  skip_spaces();
  if (i != text.size() || *n <= 0) return std::nullopt;
  static const std::array<std::pair<std::string_view, long long>, 16> kUnits = {{
      {"s", 1},
      {"sec", 1},
      {"secs", 1},
      {"second", 1},
      {"seconds", 1},
      {"m", 60},
      {"min", 60},
      {"mins", 60},
      {"minute", 60},
      {"minutes", 60},
      {"h", 3600},
      {"hour", 3600},
      {"hours", 3600},
      {"d", 86400},
      {"day", 86400},
      {"days", 86400},
  }};
  long long factor = 0;
  for (const auto& [name, f] : kUnits) {
    if (unit == name) factor = f;
  }
  if (unit == "w" || unit == "week" || unit == "weeks") factor = 7 * 86400;
  if (factor == 0 || *n > kMaxExpiresInSeconds / factor) return std::nullopt;
  return std::chrono::duration_cast<milliseconds>(seconds(*n * factor));
}

}  // namespace etl
