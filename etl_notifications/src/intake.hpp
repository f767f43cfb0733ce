#pragma once
// Intake: turns a raw Kafka message into a typed event, or refuses it with a reason.
// Pure: no broker, no clock (the Kafka timestamp is the event's time when it carries none).

#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include <nlohmann/json.hpp>

#include "notify/posting.hpp"

namespace etl {

struct Event {
  std::string identity;  // event_id when the event has one, else topic/partition/offset
  std::string type;      // event_type
  std::string source;    // from_service
  std::string priority;  // immediate | high | normal | low
  std::string user_id;
  nlohmann::json details = nlohmann::json::object();
  notify::TimePoint time{};
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

std::variant<Event, Rejection> decode_event(const RawMessage& message,
                                            notify::TimePoint received_at);

// topic/partition/offset: the identity of an event that carries no id of its own.
std::string message_identity(const RawMessage& message);

}  // namespace etl
