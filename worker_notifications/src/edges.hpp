#pragma once
// What a delivery loop needs from outside, as small interfaces: the work queue it consumes, the
// publisher that moves a copy to a delay or dead-letter queue, monotonic time with waiting, and
// randomness. amqp_edges.hpp wraps RabbitMQ behind the first two; tests give fakes, so every
// path of the loop runs in milliseconds without a broker.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

#include "notify/amqp.hpp"

namespace worker {

// The work queue of one channel, consumed with manual acks. Throws notify::amqp::Error when the
// connection fails (notify::amqp::Refused when the broker refuses).
class DeliverySource {
 public:
  virtual ~DeliverySource() = default;
  virtual bool connected() const = 0;
  virtual void connect() = 0;
  // Deliveries not acknowledged return to the queue.
  virtual void disconnect() = 0;
  // The next delivery, or nothing when none arrives within timeout.
  virtual std::optional<notify::amqp::Delivery> next(std::chrono::milliseconds timeout) = 0;
  virtual void ack(std::uint64_t delivery_tag) = 0;
  virtual void reject(std::uint64_t delivery_tag, bool requeue) = 0;
};

// Publishes one copy of a delivery and waits for the broker's confirm. Only kAcked means the
// copy is stored; any other result leaves the copy forgotten, so the original (still in the
// work queue) is the one that counts. Throws notify::amqp::Error when the connection fails
// (the copy is forgotten then too).
class Republisher {
 public:
  enum class Result {
    kAcked,
    kReturned,     // no queue bound for its routing key
    kNacked,       // the broker refused to store it (after the publisher's own retries)
    kUnconfirmed,  // no confirm within the publisher's time limit
  };
  virtual ~Republisher() = default;
  virtual bool connected() const = 0;
  virtual void connect() = 0;
  virtual void disconnect() = 0;
  virtual Result publish(notify::amqp::Message message) = 0;
};

// Monotonic time and waiting: the throttle, send durations and every pause of the loop
// (reconnect backoff, throttle waits, pauses after copies that were not confirmed).
class SteadyClock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~SteadyClock() = default;
  virtual TimePoint now() const = 0;
  virtual void sleep_for(std::chrono::milliseconds duration) = 0;
};

class SystemSteadyClock final : public SteadyClock {
 public:
  TimePoint now() const override;
  void sleep_for(std::chrono::milliseconds duration) override;
};

// Uniform in [0, 1), from a generator of its own seeded by std::random_device: one per loop
// (the generator is not shared between threads).
std::function<double()> system_random01();

}  // namespace worker
