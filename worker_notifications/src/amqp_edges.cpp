#include "amqp_edges.hpp"

#include <algorithm>
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
    : options_{connection_of(config, channel, index), "",
               std::max<std::size_t>(64, config.prefetch), std::nullopt, kMaxNacks},
      publisher_(std::make_unique<notify::amqp::ConfirmedPublisher>(options_)) {}

void AmqpRepublisher::forget() {
  publisher_ = std::make_unique<notify::amqp::ConfirmedPublisher>(options_);
}

void AmqpRepublisher::publish(notify::amqp::Message message) {
  using Confirm = notify::amqp::ConfirmedPublisher::Result;
  if (!answers_) answers_ = std::make_shared<std::vector<Result>>();
  const std::size_t index = answers_->size();
  answers_->push_back(Result::kUnconfirmed);
  try {
    publisher_->publish(std::move(message), [answers = answers_, index](Confirm r) {
      (*answers)[index] = r == Confirm::kAcked      ? Result::kAcked
                          : r == Confirm::kReturned ? Result::kReturned
                                                    : Result::kNacked;
    });
  } catch (const notify::amqp::Error&) {
    answers_.reset();
    forget();
    throw;
  }
}

std::vector<Republisher::Result> AmqpRepublisher::await_confirms() {
  if (!answers_) return {};
  const std::shared_ptr<std::vector<Result>> answers = std::move(answers_);
  answers_.reset();
  try {
    if (publisher_->flush(kConfirmTimeout)) return *answers;
  } catch (const notify::amqp::Error&) {
    forget();
    throw;
  }
  // Copies still without their confirm are forgotten (kUnconfirmed): their originals stay.
  forget();
  return *answers;
}

}  // namespace worker
