#include "delivery.hpp"

#include <stdexcept>

#include "moves.hpp"
#include "notify/envelope.hpp"
#include "notify/log.hpp"
#include "notify/redact.hpp"

namespace worker {
namespace {

using namespace std::chrono_literals;

// After copies that were not confirmed (nacked, returned, timed out) the loop pauses before the
// next delivery, doubling up to this, so a refusing broker is not asked in a tight loop.
constexpr auto kFirstMovePause = 500ms;
constexpr auto kLongestMovePause = 10s;
// A loop that failed outside any one delivery waits this long before it reconnects.
constexpr auto kLoopFailurePause = 1s;
// Reconnecting backs off from the first to the longest pause, doubling.
constexpr auto kFirstConnectPause = 500ms;
constexpr auto kLongestConnectPause = 10s;
// How long one wait for a delivery lasts: the loop looks at `stop` in between.
constexpr auto kPollTimeout = 200ms;

template <typename T>
T& required(T* part, const char* name) {
  if (part == nullptr) throw std::invalid_argument(std::string("DeliveryLoop: no ") + name);
  return *part;
}

template <typename T>
std::unique_ptr<T> required(std::unique_ptr<T> part, const char* name) {
  if (!part) throw std::invalid_argument(std::string("DeliveryLoop: no ") + name);
  return part;
}

}  // namespace

DeliveryLoop::DeliveryLoop(const WorkerConfig& config, notify::Channel channel, int index,
                           Parts parts)
    : config_(config),
      channel_(notify::to_string(channel)),
      name_(channel_ + "#" + std::to_string(index)),
      topology_(topology_of(config)),
      source_(required(std::move(parts.source), "delivery source")),
      republisher_(required(std::move(parts.republisher), "republisher")),
      sender_(required(std::move(parts.sender), "sender")),
      throttle_(parts.throttle),
      clock_(required(parts.clock, "clock")),
      steady_(required(parts.steady, "steady clock")),
      random01_(std::move(parts.random01)),
      metrics_(parts.metrics) {}

void DeliveryLoop::pause_for(std::chrono::milliseconds total, const std::atomic<bool>& stop) {
  const auto until = steady_.now() + total;
  while (!stop.load()) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - steady_.now());
    if (left <= 0ms) return;
    steady_.sleep_for(std::min<std::chrono::milliseconds>(left, 50ms));
  }
}

void DeliveryLoop::connect_with_backoff(const std::atomic<bool>& stop) {
  std::chrono::milliseconds backoff = kFirstConnectPause;
  while (!stop.load()) {
    try {
      if (!source_->connected()) source_->connect();
      if (!republisher_->connected()) republisher_->connect();
      connected_.store(true);
      notify::log::info("rabbitmq connected",
                        {{"queue", topology_.queue_for(channel_)}, {"prefetch", config_.prefetch}});
      return;
    } catch (const notify::amqp::Error& e) {
      amqp_failed(e, "rabbitmq unavailable");
      pause_for(backoff, stop);
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, kLongestConnectPause);
    }
  }
}

void DeliveryLoop::run(const std::atomic<bool>& stop) {
  while (!stop.load()) {
    // Whatever escapes one round (out of memory, a bug) ends the round, never the thread.
    try {
      run_connected(stop);
    } catch (...) {
      try {
        std::string what = "unknown exception";
        try {
          throw;
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        notify::log::error("delivery loop failed, reconnecting",
                           {{"loop", name_}, {"error", notify::mask_addresses(what)}});
        if (metrics_ != nullptr) metrics_->handling_error(channel_);
      } catch (...) {
      }
      reset_connections();
      pause_for(kLoopFailurePause, stop);
    }
  }
  // Prefetched deliveries not yet handled return to the queue when the connection closes.
  connected_.store(false);
  source_->disconnect();
}

void DeliveryLoop::run_connected(const std::atomic<bool>& stop) {
  while (!stop.load()) {
    if (!source_->connected() || !republisher_->connected()) {
      connect_with_backoff(stop);
      continue;
    }
    try {
      std::optional<notify::amqp::Delivery> delivery = source_->next(kPollTimeout);
      if (!delivery) continue;
      settled_ = false;
      try {
        handle(*delivery);
      } catch (const notify::amqp::Error&) {
        throw;
      } catch (const std::exception& e) {
        recover(*delivery, e.what());
      } catch (...) {
        recover(*delivery, "unknown exception");
      }
      if (failed_moves_ > 0) {
        const auto pause = kFirstMovePause * (1 << std::min(failed_moves_ - 1, 5));
        pause_for(std::min<std::chrono::milliseconds>(pause, kLongestMovePause), stop);
      }
    } catch (const notify::amqp::Error& e) {
      // Unacknowledged deliveries return to the queue on the broker's side; reconnect both
      // connections (the republisher's is most likely gone too).
      amqp_failed(e, "rabbitmq connection lost");
      reset_connections();
    }
  }
}

void DeliveryLoop::reset_connections() {
  connected_.store(false);
  source_->disconnect();
  republisher_->disconnect();
}

void DeliveryLoop::amqp_failed(const notify::amqp::Error& error, std::string_view what) {
  std::string problem = std::string("rabbitmq: ") + error.what();
  const auto* refused = dynamic_cast<const notify::amqp::Refused*>(&error);
  if (refused != nullptr) {
    problem = "rabbitmq refused: " + refused->summary();
    if (metrics_ != nullptr) metrics_->amqp_refused(channel_, refused->reply_code());
  }
  if (refused != nullptr && refused->is_permanent()) {
    // Retried all the same (an operator may fix the permissions), but waiting alone will not.
    notify::log::error("rabbitmq refused", {{"loop", name_},
                                            {"reply_code", refused->reply_code()},
                                            {"reply_text", refused->reply_text()},
                                            {"error", error.what()}});
  } else {
    notify::log::warn(what, {{"loop", name_}, {"error", error.what()}});
  }
  std::lock_guard lock(problem_mutex_);
  problem_ = std::move(problem);
}

std::optional<std::string> DeliveryLoop::not_ready_reason() const {
  if (connected_.load()) return std::nullopt;
  std::lock_guard lock(problem_mutex_);
  return name_ + ": " + (problem_.empty() ? "rabbitmq: not connected" : problem_);
}

// The delivery's handling threw. Its posting is retried (or dead-lettered once that keeps
// happening) like after a transient failure, through apply() like any other outcome.
void DeliveryLoop::recover(const notify::amqp::Delivery& delivery, std::string_view what) {
  if (metrics_ != nullptr) metrics_->handling_error(channel_);
  const std::string text(what);
  notify::log::error("handling a delivery threw", {{"loop", name_},
                                                   {"message_id", delivery.message_id},
                                                   {"error", notify::mask_addresses(text)},
                                                   {"settled", settled_}});
  if (settled_) return;  // already acked or rejected: nothing is left to decide
  try {
    std::optional<notify::Posting> posting;
    try {
      posting = notify::decode_posting(delivery.body, {config_.max_json_depth});
    } catch (const std::exception&) {
    }
    const notify::Posting* p = posting ? &*posting : nullptr;
    apply(delivery, p,
          after_exception(text, p, notify::envelope::attempts_of(delivery), clock_.now(),
                          config_.retry, random01_));
  } catch (const notify::amqp::Error&) {
    throw;
  } catch (...) {
    if (settled_) return;
    // Even the way out failed: the broker dead-letters it (its x-death header says so) rather
    // than the loop seeing it again and again.
    notify::log::error("could not retry or dead-letter the delivery: rejected without requeue",
                       {{"loop", name_}, {"message_id", delivery.message_id}});
    source_->reject(delivery.delivery_tag, /*requeue=*/false);
    settled_ = true;
  }
}

void DeliveryLoop::handle(const notify::amqp::Delivery& delivery) {
  notify::Posting posting;
  try {
    posting = notify::decode_posting(delivery.body, {config_.max_json_depth});
  } catch (const notify::PostingError& e) {
    apply(delivery, nullptr, undecodable(e.what()));
    return;
  }
  const int attempts = notify::envelope::attempts_of(delivery);
  auto now = clock_.now();
  auto early = before_send(posting, notify::envelope::deliver_at_of(delivery), attempts, now,
                           config_.policy, random01_);
  if (auto* action = std::get_if<Action>(&early)) {
    apply(delivery, &posting, *action);
    return;
  }

  const auto wait = throttle_ != nullptr ? throttle_->reserve(steady_.now()) : 0ms;
  if (auto throttled = after_throttle(wait, now, attempts)) {
    apply(delivery, &posting, *throttled);
    return;
  }
  if (wait > 0ms) steady_.sleep_for(wait);

  const auto started = steady_.now();
  const SendResult result = sender_->send(posting);
  if (metrics_ != nullptr) metrics_->send_took(channel_, steady_.now() - started);
  now = clock_.now();
  apply(delivery, &posting, after_send(result, posting, attempts, now, config_.retry, random01_));
}

void DeliveryLoop::apply(const notify::amqp::Delivery& delivery, const notify::Posting* posting,
                         const Action& action) {
  nlohmann::json fields = {{"message_id", delivery.message_id}};
  if (posting != nullptr) {
    fields["posting_id"] = posting->posting_id;
    fields["event_id"] = posting->event_id;
    fields["template"] = posting->template_name;
    fields["priority"] = posting->priority;
  }

  std::optional<Move> move = move_for(delivery, action, clock_.now(), topology_, channel_);
  if (!move) {
    const auto& ack = std::get<Ack>(action);
    source_->ack(delivery.delivery_tag);
    settled_ = true;
    fields["outcome"] = to_string(ack.outcome);
    notify::log::info(ack.outcome == AckOutcome::kSent ? "posting sent" : "posting dropped",
                      fields);
    count(posting, action);
    return;
  }

  const auto* later = std::get_if<Postpone>(&action);
  const auto* dead = std::get_if<DeadLetter>(&action);
  const std::string& last_error = later != nullptr ? later->last_error : dead->last_error;
  if (later != nullptr) {
    fields["reason"] = to_string(later->reason);
    fields["until"] = notify::format_iso8601(later->until);
    fields["tier"] = notify::format_duration(move->tier);
    fields["attempts"] = later->attempts;
  } else {
    fields["reason"] = dead_reason_text(*dead);
  }
  // A transport's reply may quote the recipient's address: not in the logs.
  if (!last_error.empty()) fields["last_error"] = notify::mask_addresses(last_error);

  // The copy must be safe in RabbitMQ before the original goes.
  auto confirmed = Republisher::Result::kUnconfirmed;
  try {
    confirmed = republisher_->publish(std::move(move->copy));
  } catch (const notify::amqp::Error& e) {
    amqp_failed(e, "rabbitmq failed while moving a posting");
    fields["error"] = e.what();
  }
  if (confirmed != Republisher::Result::kAcked) {
    // Nacked, returned, not confirmed in time or the connection lost: the original is the copy.
    notify::log::error("could not move posting, it stays in the queue", fields);
    source_->reject(delivery.delivery_tag, /*requeue=*/true);
    settled_ = true;
    ++failed_moves_;
    return;
  }
  source_->ack(delivery.delivery_tag);
  settled_ = true;
  failed_moves_ = 0;
  count(posting, action);
  if (dead != nullptr) {
    notify::log::error("posting dead-lettered", fields);
  } else {
    notify::log::info("posting deferred", fields);
  }
}

// Counted once the original is acknowledged: a posting left in the queue is counted when it is
// handled again.
void DeliveryLoop::count(const notify::Posting* posting, const Action& action) {
  if (metrics_ == nullptr) return;
  if (const auto* ack = std::get_if<Ack>(&action)) {
    if (ack->outcome == AckOutcome::kSent) {
      metrics_->posting(channel_, posting, "sent");
      if (posting != nullptr) metrics_->delivered(channel_, posting->event_time, clock_.now());
    } else {
      metrics_->posting(channel_, posting, "expired");
    }
  } else if (const auto* later = std::get_if<Postpone>(&action)) {
    if (later->reason == DeferReason::kRetry) {
      metrics_->posting(channel_, posting, "failed");
      metrics_->retry(channel_, later->attempts);
    } else if (later->reason != DeferReason::kDeferred) {  // one more hop of an earlier deferral
      metrics_->posting(channel_, posting, "deferred");
    }
  } else {
    metrics_->posting(channel_, posting, "dead_lettered");
  }
}

}  // namespace worker
