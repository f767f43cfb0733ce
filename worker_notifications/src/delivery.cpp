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
// An idle loop asks the ledger this often whether it still answers, so that readiness turns
// false while Redis is gone, not only when the next delivery finds out.
constexpr auto kLedgerIdleCheck = 1s;

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
      metrics_(parts.metrics),
      ledger_(std::move(parts.ledger)),
      lease_(channel == notify::Channel::kWebhook
                 ? std::max(config.ledger_lease, 2 * config.webhook_timeout)
                 : config.ledger_lease) {}

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
      if (ledger_ != nullptr && !ledger_->connected()) {
        ledger_->connect();
        notify::log::info("delivery ledger connected", {{"loop", name_}});
      }
      if (unmarked_) {
        ledger_->mark_sent(unmarked_->first, unmarked_->second);
        notify::log::info("owed ledger mark recorded",
                          {{"loop", name_}, {"posting_id", unmarked_->first}});
        unmarked_.reset();
      }
      connected_.store(true);
      notify::log::info("rabbitmq connected",
                        {{"queue", topology_.queue_for(channel_)}, {"prefetch", config_.prefetch}});
      return;
    } catch (const notify::amqp::Error& e) {
      amqp_failed(e, "rabbitmq unavailable");
    } catch (const LedgerError& e) {
      ledger_failed(e, "delivery ledger unavailable: taking no deliveries");
    }
    pause_for(backoff, stop);
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, kLongestConnectPause);
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
  if (ledger_ != nullptr) ledger_->disconnect();
}

void DeliveryLoop::run_connected(const std::atomic<bool>& stop) {
  while (!stop.load()) {
    if (!ready_to_take()) {
      connect_with_backoff(stop);
      continue;
    }
    try {
      std::optional<notify::amqp::Delivery> delivery = source_->next(kPollTimeout);
      if (!delivery) {
        check_ledger_when_idle();
        continue;
      }
      settled_ = false;
      try {
        handle(*delivery);
      } catch (const notify::amqp::Error&) {
        throw;
      } catch (const LedgerError& e) {
        // Nothing was sent: the delivery waits in the queue until the ledger is back.
        ledger_failed(e, "delivery ledger unavailable: delivery returned unsent");
        if (!settled_) source_->reject(delivery->delivery_tag, /*requeue=*/true);
        settled_ = true;
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

void DeliveryLoop::check_ledger_when_idle() {
  if (ledger_ == nullptr || steady_.now() - last_ledger_check_ < kLedgerIdleCheck) return;
  last_ledger_check_ = steady_.now();
  try {
    ledger_->ping();
  } catch (const LedgerError& e) {
    ledger_failed(e, "delivery ledger unavailable: taking no deliveries");
  }
}

bool DeliveryLoop::ready_to_take() const {
  if (!source_->connected() || !republisher_->connected()) return false;
  return ledger_ == nullptr || (ledger_->connected() && !unmarked_);
}

void DeliveryLoop::ledger_failed(const LedgerError& error, std::string_view what) {
  connected_.store(false);
  if (ledger_ != nullptr) ledger_->disconnect();
  if (metrics_ != nullptr) metrics_->ledger_failure(channel_);
  notify::log::error(what, {{"loop", name_}, {"error", error.what()}});
  std::lock_guard lock(problem_mutex_);
  problem_ = error.what();
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

std::optional<Action> DeliveryLoop::claim(const notify::amqp::Delivery& delivery,
                                          const notify::Posting& posting, int attempts) {
  const DeliveryLedger::Claim claim = ledger_->claim(posting.posting_id, lease_);
  if (claim.result == DeliveryLedger::Claimed::kYes) claimed_ = posting.posting_id;
  if (claim.result == DeliveryLedger::Claimed::kHeld) {
    notify::log::info("posting claimed by another worker", {{"loop", name_},
                                                            {"posting_id", posting.posting_id},
                                                            {"message_id", delivery.message_id},
                                                            {"held_ms", claim.held_for.count()}});
  }
  return after_claim(claim, clock_.now(), attempts);
}

void DeliveryLoop::record_sent(const notify::Posting& posting) {
  claimed_.reset();
  const notify::TimePoint keep_until = ledger_keep_until(posting.expires_at, clock_.now());
  try {
    ledger_->mark_sent(posting.posting_id, keep_until);
  } catch (const LedgerError& e) {
    // Sent all the same: acknowledged now (a redelivery would send it again), marked before
    // this loop takes anything else. Until then the claim's lease keeps other loops away.
    unmarked_.emplace(posting.posting_id, keep_until);
    ledger_failed(e, "delivery ledger unavailable: mark owed for a sent posting");
  }
}

void DeliveryLoop::release_claim() {
  if (!claimed_) return;
  const std::string posting_id = std::move(*claimed_);
  claimed_.reset();
  try {
    ledger_->release(posting_id);
  } catch (const LedgerError& e) {
    // The claim ends with its lease; the retry waits for that.
    ledger_failed(e, "delivery ledger unavailable: claim left to its lease");
  }
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
  release_claim();
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

  if (ledger_ != nullptr) {
    if (auto instead = claim(delivery, posting, attempts)) {
      apply(delivery, &posting, *instead);
      return;
    }
  }
  const auto started = steady_.now();
  const SendResult result = sender_->send(posting);
  if (metrics_ != nullptr) metrics_->send_took(channel_, steady_.now() - started);
  if (ledger_ != nullptr) {
    // Marked before the ack: a copy of it arriving from now on is not sent.
    if (result.status == SendStatus::kSent) {
      record_sent(posting);
    } else {
      release_claim();
    }
  }
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
    if (ack.outcome == AckOutcome::kDuplicate) {
      const std::string_view cause = duplicate_cause(delivery);
      fields["cause"] = cause;
      notify::log::info("posting already sent: acknowledged without sending", fields);
      if (metrics_ != nullptr) metrics_->duplicate_suppressed(channel_, cause);
    } else {
      notify::log::info(ack.outcome == AckOutcome::kSent ? "posting sent" : "posting dropped",
                        fields);
    }
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
    } else if (ack->outcome == AckOutcome::kDuplicate) {
      metrics_->posting(channel_, posting, "duplicate");
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
