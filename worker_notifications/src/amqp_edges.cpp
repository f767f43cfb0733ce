#include "amqp_edges.hpp"

#include <chrono>
#include <string>

#include "moves.hpp"

namespace worker {
namespace {

using namespace std::chrono_literals;

constexpr auto kConfirmTimeout = 10s;
// Nacks of one copy before the publisher gives up on it: the original stays in the queue.
constexpr int kMaxNacks = 5;

notify::amqp::ConnectionOptions connection_of(const WorkerConfig& c, notify::Channel channel,
                                              int index) {
  notify::amqp::ConnectionOptions o;
  o.url = notify::amqp::Url::parse(c.rabbitmq_url);
  o.connection_name = "worker_notifications " + std::string(notify::to_string(channel)) + "#" +
                      std::to_string(index);
  return o;
}

}  // namespace

AmqpDeliverySource::AmqpDeliverySource(const WorkerConfig& config, notify::Channel channel,
                                       int index)
    : consumer_(
          notify::amqp::Consumer::Options{connection_of(config, channel, index),
                                          topology_of(config).queue_for(notify::to_string(channel)),
                                          config.prefetch, topology_of(config)}) {}

AmqpRepublisher::AmqpRepublisher(const WorkerConfig& config, notify::Channel channel, int index)
    : options_{connection_of(config, channel, index), "", 64, std::nullopt, kMaxNacks},
      publisher_(std::make_unique<notify::amqp::ConfirmedPublisher>(options_)) {}

void AmqpRepublisher::forget() {
  publisher_ = std::make_unique<notify::amqp::ConfirmedPublisher>(options_);
}

Republisher::Result AmqpRepublisher::publish(notify::amqp::Message message) {
  using Confirm = notify::amqp::ConfirmedPublisher::Result;
  Result result = Result::kUnconfirmed;
  try {
    publisher_->publish(std::move(message), [&result](Confirm r) {
      result = r == Confirm::kAcked      ? Result::kAcked
               : r == Confirm::kReturned ? Result::kReturned
                                         : Result::kNacked;
    });
    if (publisher_->flush(kConfirmTimeout)) return result;
  } catch (const notify::amqp::Error&) {
    forget();
    throw;
  }
  forget();
  return Result::kUnconfirmed;
}

}  // namespace worker
