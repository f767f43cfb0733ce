#pragma once
// The seams of the ETL's loop: what the Pipeline asks of the world, as small interfaces.
// edges.hpp wraps the real clients (librdkafka, rabbitmq-c, libcurl) in them; the unit tests
// give fakes, so revokes, returns, nacks and outages are tested without brokers.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth_client/auth_client.hpp"
#include "notify/amqp.hpp"
#include "notify/kafka.hpp"
#include "notify/status.hpp"
#include "notify/time.hpp"

namespace etl {

// Events in: a Kafka group consumer with manual offset store (notify::kafka::Consumer).
class EventSource {
 public:
  virtual ~EventSource() = default;
  // Rebalances are reported to `listener` from inside poll() (and close()); null: to nobody.
  virtual void set_listener(notify::kafka::RebalanceListener* listener) = 0;
  // A message, or nothing on timeout.
  virtual std::optional<notify::kafka::Message> poll(std::chrono::milliseconds timeout) = 0;
  virtual void pause(const std::vector<notify::kafka::TopicPartition>& partitions) = 0;
  virtual void resume(const std::vector<notify::kafka::TopicPartition>& partitions) = 0;
  virtual std::vector<notify::kafka::TopicPartition> assignment() const = 0;
  // `next_offset`: the offset of the next message to read (the last finished + 1).
  virtual void store_offset(const notify::kafka::TopicPartition& tp, std::int64_t next_offset) = 0;
  // Synchronous commit of the stored offsets. Throws notify::kafka::Error.
  virtual void commit() = 0;
  // Sends a commit of the offsets stored since the last one, without waiting for it; a failed
  // one is logged and its offsets go with the next. Throws notify::kafka::Error when closed.
  virtual void commit_async() = 0;
  // Throws notify::kafka::Error when unknown.
  virtual std::vector<notify::kafka::PartitionLag> lag() const = 0;
  // Commits the stored offsets and leaves the group (revoking, through the listener).
  virtual void close() = 0;
};

// Users and context from the Auth service and allowlisted services (auth::Client). Outcomes
// are data: found, unknown, unavailable (transient: pause, never drop).
class UserDirectory {
 public:
  virtual ~UserDirectory() = default;
  virtual auth::Lookup get_user(std::string_view id) = 0;
  // One page of a users listing URL.
  virtual auth::PageLookup list_users(const std::string& url) = 0;
  virtual auth::FetchResult fetch_json(const std::string& url, std::size_t max_bytes) = 0;
};

// Postings out, with publisher confirms (notify::amqp::ConfirmedPublisher). A posting's
// confirm callback says how it ended: acked, returned unroutable, or nacked too often.
// connect(), publish(), pump() throw notify::amqp::Error (Refused when the broker refuses).
class PostingPublisher {
 public:
  // Nacks of one posting before it is given back as kNacked (the broker keeps refusing it).
  static constexpr int kMaxNacks = 5;

  using Result = notify::amqp::ConfirmedPublisher::Result;
  using OnConfirmed = std::function<void(Result)>;

  virtual ~PostingPublisher() = default;
  virtual bool connected() const = 0;
  // Connects, then republishes in order everything still unconfirmed.
  virtual void connect() = 0;
  // On a connection loss the message is kept and goes out again after connect().
  virtual void publish(notify::amqp::Message message, OnConfirmed on_confirmed) = 0;
  // Reads confirms, waiting up to `wait` for the first.
  virtual void pump(std::chrono::milliseconds wait) = 0;
  // True when nothing is left unconfirmed within the timeout.
  virtual bool flush(std::chrono::milliseconds timeout) = 0;
  virtual std::size_t outstanding() const = 0;
};

// The dead-letter topic. Throws notify::kafka::Error when the message was not taken;
// permanent() when the broker refuses this message as such (e.g. too large).
class DeadLetterSink {
 public:
  virtual ~DeadLetterSink() = default;
  virtual void produce(const std::optional<std::string>& key, const std::string& value,
                       const notify::kafka::Headers& headers) = 0;
};

// Status events out (documentation/status.md): the recipients skipped and the events refused,
// for other services to follow. notify::status::Sink is the seam already: main.cpp gives a
// notify::status::KafkaSink (or NoStatusEvents when NOTIFY_STATUS_TOPIC is empty), the tests a
// fake. emit() never blocks and never throws: a bounded buffer stands in front of Kafka.
using StatusSink = notify::status::Sink;

// Monotonic time for backoffs, intervals and latencies (wall time is notify::Clock).
class MonotonicClock {
 public:
  virtual ~MonotonicClock() = default;
  virtual std::chrono::steady_clock::time_point now() const = 0;
};

// Everything the Pipeline talks to; each must outlive it.
struct Ports {
  EventSource& events;
  UserDirectory& users;
  PostingPublisher& publisher;
  DeadLetterSink& dead_letters;
  StatusSink& status;
  const notify::Clock& clock;
  const MonotonicClock& monotonic;
};

}  // namespace etl
