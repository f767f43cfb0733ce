#pragma once
// Intake: turns a raw Kafka message into a typed, validated event, or refuses it with a reason.
// Pure: no broker, no clock (the Kafka timestamp is the event's time when it carries none).
// The catalogue of events is documented in documentation/events.md.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "notify/kafka.hpp"
#include "notify/posting.hpp"

namespace etl {

struct Event {
  // event_id when the event has one, else topic/partition/offset of its first arrival (Origin)
  std::string identity;
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
  std::optional<notify::Category> category;       // notification_requested (else by type)
  std::string webhook_url;                        // for the webhook channel, optional
};

// Longest accepted names (event_type, template, priority, ...) and identities (event_id, user
// ids): longer ones are refused.
inline constexpr std::size_t kMaxNameBytes = 200;
inline constexpr std::size_t kMaxIdBytes = 256;

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
  notify::kafka::Headers headers;
};

// Where an event first arrived. A dead-lettered event sent back by notify_replay carries it in
// the headers original_topic, original_partition and original_offset (the dead-letter copy's
// own names), so that an event without an event_id keeps the identity of its first arrival, and
// its postings their posting ids. The headers can name nothing an event_id could not: see
// documentation/events.md.
struct Origin {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
};

// The origin the headers name; std::monostate when they carry none of the three; a Rejection
// when any is there but not all three exactly once, each well formed: a topic name Kafka allows
// (1 to 249 of [A-Za-z0-9._-]), a partition and an offset in canonical decimal (no sign, no
// leading zero) within int32 and int64.
std::variant<std::monostate, Origin, Rejection> origin_of(const notify::kafka::Headers& headers);

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

// topic/partition/offset: the identity of an event that carries no id of its own, from where
// it arrived (message_identity) or first arrived (identity_of an Origin).
std::string message_identity(const RawMessage& message);
std::string identity_of(const Origin& origin);

// An event's identity: its event_id when not empty; else where it first arrived, when its
// original_* headers name that (first_arrival, from origin_of); else where it arrived.
std::string event_identity(std::string_view event_id,
                           const std::variant<std::monostate, Origin, Rejection>& first_arrival,
                           const std::string& topic, std::int32_t partition, std::int64_t offset);

// "120 sec", "1 hour", "2 days", "90 minutes", and ISO 8601 durations ("PT2H", "P2D",
// "P1DT12H30M"). Nothing for anything else.
std::optional<std::chrono::milliseconds> parse_expires_in(const std::string& text);

}  // namespace etl
