#pragma once
// Status events: what became of a posting (sent, deferred, expired, dead-lettered, a duplicate
// suppressed) and of an event's recipients (skipped, refused), published to the Kafka topic
// NOTIFY_STATUS_TOPIC (default notify_status) keyed by user id, for any service to follow.
// The JSON is a contract (documentation/status.md): fields are added, never renamed.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "notify/kafka.hpp"
#include "notify/posting.hpp"

namespace notify::status {

inline constexpr int kSchemaVersion = 1;
inline constexpr const char* kDefaultTopic = "notify_status";

// Empty strings and empty optionals are absent from the JSON.
struct Event {
  std::string status;  // "sent", "deferred", "expired", "dead_lettered", "duplicate_suppressed",
                       // "skipped", "refused"
  TimePoint time{};
  std::string service;  // "worker_notifications" | "etl_notifications"
  std::string event_id, event_type, posting_id, user_id, channel, template_name;
  std::string reason, zone, reply, last_error;
  std::optional<TimePoint> until;
  std::optional<int> attempts;
  bool operator==(const Event&) const = default;
};

// The event's JSON, one line: schema_version first, then the fields of the contract in its
// order, absent ones omitted. Invalid UTF-8 in a text is replaced (U+FFFD), never thrown over.
std::string encode(const Event& e);
// Reads what encode() writes (and a later schema's events: unknown fields are ignored). Throws
// std::invalid_argument naming the field when one the contract requires (status, time,
// service) is missing or a field has the wrong type.
Event decode(std::string_view json);
// The same from a parsed document (a reader that keeps the document, as notify_trace does).
Event decode_document(const nlohmann::json& doc);
// The Kafka key: the recipient's user id, else the event id.
std::string key_of(const Event& e);

// Where status events go. emit() never blocks and never throws.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void emit(const Event& e) = 0;
};

// A Sink onto Kafka: the topic through notify::kafka::BufferedProducer (at most max_buffered
// events waiting while Kafka is unreachable; beyond that dropped, counted and logged).
class KafkaSink final : public Sink {
 public:
  // on_lost is called once per event dropped or failed (a metric), from any thread. Throws
  // kafka::Error when librdkafka refuses the configuration.
  KafkaSink(const std::string& bootstrap_servers, std::string topic, std::size_t max_buffered,
            std::function<void(kafka::BufferedProducer::Loss)> on_lost = {});
  void emit(const Event& e) override;
  const std::string& topic() const { return topic_; }
  std::uint64_t dropped() const;  // not taken: the buffer was full
  std::uint64_t failed() const;   // taken but not delivered
  std::size_t buffered() const;   // waiting or in flight
  // Waits until everything buffered is delivered or timeout passed (tests, shutdown).
  bool flush(std::chrono::milliseconds timeout) { return producer_.flush(timeout); }

 private:
  std::string topic_;
  std::function<void(kafka::BufferedProducer::Loss)> on_lost_;
  std::atomic<std::uint64_t> unencoded_{0};  // dropped before the producer (out of memory)
  kafka::BufferedProducer producer_;
};

}  // namespace notify::status
