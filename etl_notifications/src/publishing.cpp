#include "publishing.hpp"

#include <utility>

#include "notify/envelope.hpp"
#include "notify/log.hpp"

namespace etl {

void Publishing::add(notify::amqp::Message message, const std::shared_ptr<Ticket>& ticket) {
  ++ticket->unconfirmed;
  waiting_.push_back(Outgoing{std::move(message), ticket});
}

void Publishing::publish_waiting() {
  while (!waiting_.empty()) {
    Outgoing& out = waiting_.front();
    // Kept in case the broker returns it unroutable.
    Outgoing copy{out.message, out.ticket, monotonic_.now()};
    try {
      publisher_.publish(std::move(out.message),
                         [this, copy = std::move(copy)](auto result) { confirmed(copy, result); });
    } catch (const notify::amqp::Error&) {
      waiting_.pop_front();  // the publisher keeps it and sends it again after connect()
      throw;
    }
    waiting_.pop_front();
  }
}

std::optional<std::string> Publishing::requeue_given_back() {
  if (given_back_.empty()) return std::nullopt;
  for (auto& out : given_back_) waiting_.push_back(std::move(out));
  given_back_.clear();
  return std::exchange(given_back_reason_, {});
}

void Publishing::drop(const std::function<bool(const notify::kafka::TopicPartition&)>& revoked) {
  std::erase_if(waiting_, [&](const Outgoing& o) { return revoked(o.ticket->tp); });
}

void Publishing::confirmed(const Outgoing& copy, PostingPublisher::Result result) {
  using Result = PostingPublisher::Result;
  if (result == Result::kAcked) {
    const auto t = copy.message.headers.find(notify::envelope::kTemplateHeader);
    metrics_.posting_confirmed(copy.message.routing_key,
                               t == copy.message.headers.end() ? "" : t->second,
                               monotonic_.now() - copy.published_at);
  }
  if (result == Result::kReturned) {
    notify::log::error("posting returned unroutable", {{"posting_id", copy.message.message_id},
                                                       {"routing_key", copy.message.routing_key}});
    if (given_back_.empty()) {
      given_back_reason_ = "a posting was returned unroutable: is the queue bound?";
    }
    given_back_.push_back(copy);
    return;
  }
  if (result == Result::kNacked) {
    // The publisher gave up after its bounded republishing; the posting waits for the pause.
    const std::string reason = "rabbitmq nacked posting " + copy.message.message_id + " " +
                               std::to_string(PostingPublisher::kMaxNacks) +
                               " times: is the queue full or the disk alarm on?";
    notify::log::error("posting nacked", {{"posting_id", copy.message.message_id},
                                          {"routing_key", copy.message.routing_key},
                                          {"nacks", PostingPublisher::kMaxNacks}});
    if (given_back_.empty()) given_back_reason_ = reason;
    given_back_.push_back(copy);
    return;
  }
  Ticket& ticket = *copy.ticket;
  if (--ticket.unconfirmed == 0 && ticket.sealed) finished_(ticket);
}

}  // namespace etl
