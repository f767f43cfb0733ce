#pragma once
// The delivery loop's RabbitMQ edges: thin adapters of notify::amqp::Consumer and
// ConfirmedPublisher to DeliverySource and Republisher, one connection each, named
// "worker_notifications <channel>#<index>" in the management UI.

#include <memory>

#include "config.hpp"
#include "edges.hpp"
#include "notify/amqp.hpp"
#include "notify/posting.hpp"

namespace worker {

// The channel's work queue, declaring the worker's topology on every connect.
class AmqpDeliverySource final : public DeliverySource {
 public:
  AmqpDeliverySource(const WorkerConfig& config, notify::Channel channel, int index);
  bool connected() const override { return consumer_.connected(); }
  void connect() override { consumer_.connect(); }
  void disconnect() override { consumer_.disconnect(); }
  std::optional<notify::amqp::Delivery> next(std::chrono::milliseconds timeout) override {
    return consumer_.next(timeout);
  }
  std::optional<notify::amqp::Delivery> next_received() override {
    return consumer_.next(std::chrono::milliseconds(0));
  }
  void ack(std::uint64_t delivery_tag, bool multiple) override {
    consumer_.ack(delivery_tag, multiple);
  }
  void reject(std::uint64_t delivery_tag, bool requeue) override {
    consumer_.reject(delivery_tag, requeue);
  }

 private:
  notify::amqp::Consumer consumer_;
};

// Copies through the default exchange (routing key = queue name), pipelined; their confirms
// awaited together, up to 10 s.
class AmqpRepublisher final : public Republisher {
 public:
  AmqpRepublisher(const WorkerConfig& config, notify::Channel channel, int index);
  bool connected() const override { return publisher_->connected(); }
  void connect() override { publisher_->connect(); }
  void disconnect() override {
    answers_.reset();
    forget();
  }
  void publish(notify::amqp::Message message) override;
  std::vector<Result> await_confirms() override;

 private:
  // A copy without its confirm stays in ConfirmedPublisher, which would send it again after
  // reconnecting while the original goes back to the queue: two copies, two mails (and a
  // callback into a finished frame). A new, unconnected publisher forgets it.
  void forget();

  notify::amqp::ConfirmedPublisher::Options options_;
  std::unique_ptr<notify::amqp::ConfirmedPublisher> publisher_;
  // One answer per copy published since the last await_confirms(); kUnconfirmed until its
  // confirm comes. Shared with the callbacks, which a forgotten publisher may still hold.
  std::shared_ptr<std::vector<Result>> answers_;
};

}  // namespace worker
