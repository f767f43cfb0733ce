#pragma once
// Intake: turns a raw Kafka message into a typed, validated event, or refuses it with a reason.
// Pure: no broker, no clock (the Kafka timestamp is the event's time when it carries none).
// The catalogue of events is documented in documentation/events.md.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "notify/posting.hpp"

namespace etl {

struct Event {
  std::string identity;  // event_id when the event has one, else topic/partition/offset
  std::string type;      // event_type
  std::string source;    // from_service
  std::string priority;  // immediate | high | normal | low (absent: depends on the type)
  notify::TimePoint time{};

  std::string user_id;  // user_signed_up, user_changed_password_successfully, reminder
  std::vector<std::string> user_ids;                  // notification_requested
  std::string receivers;                              // mailing: an Auth users URL with filters
  nlohmann::json details = nlohmann::json::object();  // the Auth service's events
  std::string template_name;                          // mailing, reminder, notification_requested
  nlohmann::json template_context = nlohmann::json::object();
  std::vector<notify::Channel> channels;  // delivery_type / channels; empty: the type's default
  std::optional<std::chrono::milliseconds> expires_in;
  std::optional<notify::TimePoint> send_at;       // reminder
  std::optional<notify::QuietHours> quiet_hours;  // notification_requested
  std::string webhook_url;                        // for the webhook channel, optional
};

struct Rejection {
  std::string reason;
};

struct RawMessage {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::optional<std::string> key;
  std::string value;
  std::optional<std::int64_t> timestamp_ms;
};

struct IntakeLimits {
  // Below librdkafka's default message.max.bytes (1,000,000), so that a refused event, with
  // its headers, still fits the dead-letter topic whole.
  std::size_t max_event_bytes = 900'000;  // MAX_EVENT_BYTES
  std::size_t max_recipients = 100000;    // MAX_RECIPIENTS (user_ids of one event)
  std::size_t max_json_depth = 64;        // MAX_JSON_DEPTH
};

std::variant<Event, Rejection> decode_event(const RawMessage& message,
                                            notify::TimePoint received_at,
                                            const IntakeLimits& limits = {});

// topic/partition/offset: the identity of an event that carries no id of its own.
std::string message_identity(const RawMessage& message);

// "120 sec", "1 hour", "2 days", "90 minutes", and ISO 8601 durations ("PT2H", "P2D",
// "P1DT12H30M"). Nothing for anything else.
std::optional<std::chrono::milliseconds> parse_expires_in(const std::string& text);

}  // namespace etl
