#include "intake.hpp"

#include <array>
#include <string_view>

#include "notify/time.hpp"

namespace etl {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 4> kPriorities = {"immediate", "high", "normal", "low"};

std::optional<std::string> string_at(const json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

Rejection missing(const std::string& field) {
  return Rejection{"missing or non-string field '" + field + "'"};
}

// user_signed_up: the Auth service's message as it emits it today.
std::variant<Event, Rejection> decode_user_event(Event event, const json& doc) {
  auto id = string_at(doc, "id");
  if (!id || id->empty()) return missing("id");
  event.user_id = *id;
  auto details = doc.find("details");
  if (details == doc.end() || !details->is_object()) {
    return Rejection{"missing or non-object field 'details'"};
  }
  auto email = string_at(*details, "email");
  if (!email || email->empty()) return missing("details.email");
  if (event.type == "user_signed_up") {
    auto link = string_at(*details, "confirm_link");
    if (!link || link->empty()) return missing("details.confirm_link");
  }
  event.details = *details;
  return event;
}

}  // namespace

std::string message_identity(const RawMessage& m) {
  return m.topic + "/" + std::to_string(m.partition) + "/" + std::to_string(m.offset);
}

std::variant<Event, Rejection> decode_event(const RawMessage& message,
                                            notify::TimePoint received_at) {
  json doc = json::parse(message.value, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Rejection{"value is not valid JSON"};
  if (!doc.is_object()) return Rejection{"value is not a JSON object"};

  Event event;
  auto type = string_at(doc, "event_type");
  if (!type || type->empty()) return missing("event_type");
  event.type = *type;
  event.source = string_at(doc, "from_service").value_or("");
  event.priority = string_at(doc, "priority").value_or("normal");
  bool known_priority = false;
  for (auto p : kPriorities) known_priority = known_priority || p == event.priority;
  if (!known_priority) {
    return Rejection{"unknown priority '" + event.priority + "' (immediate, high, normal, low)"};
  }

  auto event_id = string_at(doc, "event_id");
  event.identity = event_id && !event_id->empty() ? *event_id : message_identity(message);

  if (auto time = string_at(doc, "event_time")) {
    auto parsed = notify::parse_iso8601(*time);
    if (!parsed) return Rejection{"event_time is not an ISO 8601 time: " + *time};
    event.time = *parsed;
  } else if (message.timestamp_ms && *message.timestamp_ms > 0) {
    event.time = notify::TimePoint(std::chrono::milliseconds(*message.timestamp_ms));
  } else {
    event.time = received_at;
  }

  if (event.type == "user_signed_up") return decode_user_event(std::move(event), doc);
  return Rejection{"unknown event_type '" + event.type + "'"};
}

}  // namespace etl
