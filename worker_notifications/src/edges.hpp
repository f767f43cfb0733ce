#pragma once
// What a delivery loop needs from outside, as small interfaces: the work queue it consumes, the
// publisher that moves a copy to a delay or dead-letter queue, monotonic time with waiting, and
// randomness. amqp_edges.hpp wraps RabbitMQ behind the first two; tests give fakes, so every
// path of the loop runs in milliseconds without a broker.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

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
  // A delivery already received, or nothing: never waits. The loop takes its batch with it.
  virtual std::optional<notify::amqp::Delivery> next_received() = 0;
  // With `multiple`, every earlier delivery not yet acked or rejected is acknowledged too: the
  // caller vouches that all of them are done.
  virtual void ack(std::uint64_t delivery_tag, bool multiple) = 0;
  virtual void reject(std::uint64_t delivery_tag, bool requeue) = 0;
};

// Publishes copies of deliveries without waiting, then waits once for the broker's confirms of
// all of them (a window per batch, not a round trip per copy). Only kAcked means a copy is
// stored; any other result leaves it forgotten, so the original (still in the work queue) is
// the one that counts. Throws notify::amqp::Error when the connection fails: every copy not
// yet answered by await_confirms() is forgotten then.
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
  // Sends one copy; its confirm is awaited by the next await_confirms().
  virtual void publish(notify::amqp::Message message) = 0;
  // The answers of the copies published since the last call, in their order.
  virtual std::vector<Result> await_confirms() = 0;
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
