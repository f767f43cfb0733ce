#include "delivery.hpp"

#include <pthread.h>

#include <algorithm>
#include <stdexcept>

#include "moves.hpp"
#include "notify/envelope.hpp"
#include "notify/log.hpp"
#include "notify/redact.hpp"
#include "status_events.hpp"

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
// A decision about a delivery of the batch (expired? quiet hours?) taken longer ago than this
// is taken again before its send.
constexpr auto kDecisionKept = 1s;

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
      status_(parts.status),
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
        notify::log::info("delivery ledger connected", {{"loop", name_}, {"channel", channel_}});
      }
      if (unmarked_) {
        ledger_->mark_sent(unmarked_->first, unmarked_->second);
        notify::log::info(
            "owed ledger mark recorded",
            {{"loop", name_}, {"channel", channel_}, {"posting_id", unmarked_->first}});
        unmarked_.reset();
      }
      connected_.store(true);
      notify::log::info("rabbitmq connected", {{"loop", name_},
                                               {"channel", channel_},
                                               {"queue", topology_.queue_for(channel_)},
                                               {"prefetch", config_.prefetch}});
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
  // Named like the loop in the logs ("email#0"), so top -H and a debugger show it too; the
  // kernel keeps 15 characters.
  pthread_setname_np(pthread_self(), name_.substr(0, 15).c_str());
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
        notify::log::error(
            "delivery loop failed, reconnecting",
            {{"loop", name_}, {"channel", channel_}, {"error", notify::mask_addresses(what)}});
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
      std::optional<notify::amqp::Delivery> first = source_->next(kPollTimeout);
      if (!first) {
        check_ledger_when_idle();
        continue;
      }
      take_batch(std::move(*first));
      handle_batch(stop);
      if (failed_moves_ > 0) {
        const auto pause = kFirstMovePause * (1 << std::min(failed_moves_ - 1, 5));
        pause_for(std::min<std::chrono::milliseconds>(pause, kLongestMovePause), stop);
      }
    } catch (const notify::amqp::Error& e) {
      // Unacknowledged deliveries return to the queue on the broker's side; reconnect both
      // connections (the republisher's is most likely gone too).
      batch_.clear();
      window_.clear();
      amqp_failed(e, "rabbitmq connection lost");
      reset_connections();
    }
  }
}

void DeliveryLoop::take_batch(notify::amqp::Delivery first) {
  batch_.clear();
  window_.clear();
  batch_.reserve(config_.prefetch);
  batch_.emplace_back(std::move(first));
  // Only what has arrived already: waiting to fill a batch would cost every mail latency.
  while (batch_.size() < config_.prefetch) {
    std::optional<notify::amqp::Delivery> more = source_->next_received();
    if (!more) break;
    batch_.emplace_back(std::move(*more));
  }
}

void DeliveryLoop::handle_batch(const std::atomic<bool>& stop) {
  for (Item& item : batch_) decide(item);
  if (ledger_ != nullptr) claim_batch();
  for (Item& item : batch_) {
    if (item.settle != Settle::kNone) continue;
    // Stopping (SIGTERM) sends nothing more: the rest of the batch goes back to the queue.
    if (stop.load()) break;
    // A ledger or a broker connection lost by an earlier delivery of the batch: back first, as
    // between two deliveries. Left undecided (requeued) if the loop stops meanwhile.
    if (!ready_to_take()) connect_with_backoff(stop);
    if (!ready_to_take()) break;
    try {
      act(item);
    } catch (const notify::amqp::Error&) {
      throw;
    } catch (const LedgerError& e) {
      // Nothing was sent: the delivery waits in the queue until the ledger is back.
      ledger_failed(e, "delivery ledger unavailable: delivery returned unsent");
      if (item.settle == Settle::kNone) item.settle = Settle::kRequeue;
    } catch (const std::exception& e) {
      recover(item, e.what());
    } catch (...) {
      recover(item, "unknown exception");
    }
  }
  // Claims of deliveries left undecided (the loop stopping) go now, not with their lease.
  if (ledger_ != nullptr && ledger_->connected()) {
    for (Item& item : batch_) release_claim(item);
  }
  confirm_copies();
  settle_batch();
  batch_.clear();
}

void DeliveryLoop::decide(Item& item) {
  try {
    try {
      item.posting = notify::decode_posting(item.delivery.body, {config_.max_json_depth});
    } catch (const notify::PostingError& e) {
      item.action = undecodable(e.what());
      return;
    }
    item.attempts = notify::envelope::attempts_of(item.delivery);
    item.decided_at = steady_.now();
    auto early = before_send(*item.posting, notify::envelope::deliver_at_of(item.delivery),
                             item.attempts, clock_.now(), config_.policy, random01_);
    if (auto* action = std::get_if<Action>(&early)) item.action = std::move(*action);
  } catch (const std::exception& e) {
    recover(item, e.what());
  } catch (...) {
    recover(item, "unknown exception");
  }
}

void DeliveryLoop::claim_batch() {
  std::vector<std::string_view> ids;
  std::vector<Item*> claiming;
  ids.reserve(batch_.size());
  claiming.reserve(batch_.size());
  for (Item& item : batch_) {
    if (item.action || item.settle != Settle::kNone || !item.posting) continue;
    const std::string_view id = item.posting->posting_id;
    // A second copy of a posting in the same batch asks after the first one's mark.
    if (std::find(ids.begin(), ids.end(), id) != ids.end()) continue;
    ids.push_back(id);
    claiming.push_back(&item);
  }
  if (ids.empty()) return;
  std::vector<DeliveryLedger::Claim> claims;
  try {
    claims = ledger_->claim_all(ids, lease_);
  } catch (const LedgerError& e) {
    // Nothing was sent: these deliveries wait in the queue until the ledger is back.
    ledger_failed(e, "delivery ledger unavailable: deliveries returned unsent");
    for (Item* item : claiming) item->settle = Settle::kRequeue;
    return;
  }
  const auto now = steady_.now();
  for (std::size_t i = 0; i < claiming.size() && i < claims.size(); ++i) {
    Item& item = *claiming[i];
    item.claimed_at = now;
    item.action = after_claim_of(item, claims[i]);
  }
}

std::optional<Action> DeliveryLoop::after_claim_of(Item& item, const DeliveryLedger::Claim& claim) {
  item.claimed = claim.result == DeliveryLedger::Claimed::kYes;
  if (claim.result == DeliveryLedger::Claimed::kHeld) {
    notify::log::info("posting claimed by another worker",
                      {{"loop", name_},
                       {"channel", channel_},
                       {"posting_id", item.posting->posting_id},
                       {"message_id", item.delivery.message_id},
                       {"held_ms", claim.held_for.count()}});
  }
  return after_claim(claim, clock_.now(), item.attempts);
}

void DeliveryLoop::act(Item& item) {
  if (item.action) {
    apply(item, *item.action);
    return;
  }
  const notify::Posting& posting = *item.posting;
  auto now = clock_.now();
  // Slow sends earlier in the batch (throttle waits): expiry and quiet hours asked again.
  if (steady_.now() - item.decided_at > kDecisionKept) {
    auto early = before_send(posting, notify::envelope::deliver_at_of(item.delivery), item.attempts,
                             now, config_.policy, random01_);
    if (auto* action = std::get_if<Action>(&early)) {
      release_claim(item);
      apply(item, *action);
      return;
    }
  }
  const auto wait = throttle_ != nullptr ? throttle_->reserve(steady_.now()) : 0ms;
  if (auto throttled = after_throttle(wait, now, item.attempts)) {
    release_claim(item);
    apply(item, *throttled);
    return;
  }
  if (wait > 0ms) steady_.sleep_for(wait);

  if (ledger_ != nullptr) {
    // Not claimed with the batch (a second copy in it), or the claim is half through its lease
    // (slow sends before it): asked now, so no claim runs out before its mail is sent.
    if (!item.claimed || steady_.now() - item.claimed_at > lease_ / 2) {
      const DeliveryLedger::Claim claim = ledger_->claim(posting.posting_id, lease_);
      item.claimed_at = steady_.now();
      if (auto instead = after_claim_of(item, claim)) {
        apply(item, *instead);
        return;
      }
    }
  }
  const auto started = steady_.now();
  const SendResult result = sender_->send(posting);
  if (metrics_ != nullptr) metrics_->send_took(channel_, steady_.now() - started);
  if (result.status == SendStatus::kSent && status_ != nullptr) {
    item.reply = sent_reply(posting.channel, result);
  }
  if (ledger_ != nullptr) {
    // Marked before the ack: a copy of it arriving from now on is not sent.
    if (result.status == SendStatus::kSent) {
      record_sent(item);
    } else {
      release_claim(item);
    }
  }
  now = clock_.now();
  apply(item, after_send(result, posting, item.attempts, now, config_.retry, random01_));
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
  notify::log::error(what, {{"loop", name_}, {"channel", channel_}, {"error", error.what()}});
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
                                            {"channel", channel_},
                                            {"reply_code", refused->reply_code()},
                                            {"reply_text", refused->reply_text()},
                                            {"error", error.what()}});
  } else {
    notify::log::warn(what, {{"loop", name_}, {"channel", channel_}, {"error", error.what()}});
  }
  std::lock_guard lock(problem_mutex_);
  problem_ = std::move(problem);
}

std::optional<std::string> DeliveryLoop::not_ready_reason() const {
  if (connected_.load()) return std::nullopt;
  std::lock_guard lock(problem_mutex_);
  return name_ + ": " + (problem_.empty() ? "rabbitmq: not connected" : problem_);
}

void DeliveryLoop::record_sent(Item& item) {
  item.claimed = false;
  const notify::Posting& posting = *item.posting;
  const notify::TimePoint keep_until = ledger_keep_until(posting.expires_at, clock_.now());
  try {
    ledger_->mark_sent(posting.posting_id, keep_until);
  } catch (const LedgerError& e) {
    // Sent all the same: acknowledged (a redelivery would send it again), marked before this
    // loop takes anything else. Until then the claim's lease keeps other loops away.
    unmarked_.emplace(posting.posting_id, keep_until);
    ledger_failed(e, "delivery ledger unavailable: mark owed for a sent posting");
  }
}

void DeliveryLoop::release_claim(Item& item) {
  if (!item.claimed) return;
  item.claimed = false;
  try {
    ledger_->release(item.posting->posting_id);
  } catch (const LedgerError& e) {
    // The claim ends with its lease; the retry waits for that.
    ledger_failed(e, "delivery ledger unavailable: claim left to its lease");
  }
}

// The item's handling threw. Its posting is retried (or dead-lettered once that keeps
// happening) like after a transient failure, through apply() like any other outcome.
void DeliveryLoop::recover(Item& item, std::string_view what) {
  if (metrics_ != nullptr) metrics_->handling_error(channel_);
  const std::string text(what);
  const bool settled = item.settle != Settle::kNone;
  notify::log::error("handling a delivery threw", {{"loop", name_},
                                                   {"channel", channel_},
                                                   {"message_id", item.delivery.message_id},
                                                   {"error", notify::mask_addresses(text)},
                                                   {"settled", settled}});
  if (settled) return;  // already decided: nothing is left to do
  if (ledger_ != nullptr) release_claim(item);
  try {
    if (!item.posting) {
      try {
        item.posting = notify::decode_posting(item.delivery.body, {config_.max_json_depth});
      } catch (const std::exception&) {
      }
    }
    const notify::Posting* p = item.posting ? &*item.posting : nullptr;
    apply(item, after_exception(text, p, notify::envelope::attempts_of(item.delivery), clock_.now(),
                                config_.retry, random01_));
  } catch (const notify::amqp::Error&) {
    throw;
  } catch (...) {
    if (item.settle != Settle::kNone) return;
    // Even the way out failed: the broker dead-letters it (its x-death header says so) rather
    // than the loop seeing it again and again.
    notify::log::error(
        "could not retry or dead-letter the delivery: rejected without requeue",
        {{"loop", name_}, {"channel", channel_}, {"message_id", item.delivery.message_id}});
    item.settle = Settle::kDrop;
  }
}

void DeliveryLoop::apply(Item& item, const Action& action) {
  std::optional<Move> move = move_for(item.delivery, action, clock_.now(), topology_, channel_);
  item.outcome = action;
  if (!move) {
    item.settle = Settle::kAck;
    return;
  }
  item.tier = move->tier;
  // The copy must be safe in RabbitMQ before the original goes: published now, its confirm
  // awaited with the batch's other copies (confirm_copies).
  try {
    if (!republisher_->connected()) republisher_->connect();
    republisher_->publish(std::move(move->copy));
    item.settle = Settle::kCopy;
    window_.push_back(static_cast<std::size_t>(&item - batch_.data()));
  } catch (const notify::amqp::Error& e) {
    amqp_failed(e, "rabbitmq failed while moving a posting");
    // Every copy not yet confirmed is forgotten with the connection: their originals stay.
    for (const std::size_t i : window_) {
      batch_[i].settle = Settle::kRequeue;
      batch_[i].copy_error = e.what();
    }
    window_.clear();
    item.settle = Settle::kRequeue;
    item.copy_error = e.what();
  }
}

void DeliveryLoop::confirm_copies() {
  std::vector<Republisher::Result> answers;
  std::string error;
  if (!window_.empty()) {
    try {
      answers = republisher_->await_confirms();
    } catch (const notify::amqp::Error& e) {
      amqp_failed(e, "rabbitmq failed while moving a posting");
      error = e.what();
    }
  }
  for (std::size_t n = 0; n < window_.size(); ++n) {
    Item& item = batch_[window_[n]];
    if (n < answers.size() && answers[n] == Republisher::Result::kAcked) {
      item.settle = Settle::kAck;
    } else {
      // Nacked, returned, not confirmed in time or the connection lost: the original is the
      // copy.
      item.settle = Settle::kRequeue;
      item.copy_error = error;
    }
  }
  window_.clear();
  // Pauses follow the copies in order, as if confirmed one by one.
  for (const Item& item : batch_) {
    if (!item.outcome || std::holds_alternative<Ack>(*item.outcome)) continue;
    if (item.settle == Settle::kAck) {
      failed_moves_ = 0;
    } else if (item.settle == Settle::kRequeue) {
      ++failed_moves_;
    }
  }
}

void DeliveryLoop::settle_batch() {
  // Acks wait in a run and go as one basic.ack multiple; a reject (or a delivery left
  // undecided) first sends the run before it, so a multiple ack never covers it.
  std::size_t run = 0;
  std::uint64_t last_tag = 0;
  const auto send_run = [&] {
    if (run > 0) source_->ack(last_tag, run > 1);
    run = 0;
  };
  for (const Item& item : batch_) {
    switch (item.settle) {
      case Settle::kAck:
        last_tag = item.delivery.delivery_tag;
        ++run;
        break;
      case Settle::kDrop:
        send_run();
        source_->reject(item.delivery.delivery_tag, /*requeue=*/false);
        break;
      case Settle::kNone:
      case Settle::kCopy:  // not confirmed: cannot remain after confirm_copies
      case Settle::kRequeue:
        send_run();
        source_->reject(item.delivery.delivery_tag, /*requeue=*/true);
        break;
    }
  }
  send_run();
  for (const Item& item : batch_) log_settled(item);
}

void DeliveryLoop::log_settled(const Item& item) {
  if (!item.outcome) return;  // requeued before anything was decided: logged where it failed
  const Action& action = *item.outcome;
  const notify::Posting* posting = item.posting ? &*item.posting : nullptr;
  const auto* ack = std::get_if<Ack>(&action);
  const bool duplicate = ack != nullptr && ack->outcome == AckOutcome::kDuplicate;
  const std::string_view cause = duplicate ? duplicate_cause(item.delivery) : std::string_view{};
  if (duplicate && item.settle == Settle::kAck && metrics_ != nullptr) {
    metrics_->duplicate_suppressed(channel_, cause);
  }
  const bool moved = ack == nullptr;
  const bool failed_move = moved && item.settle != Settle::kAck;
  const bool dead = std::holds_alternative<DeadLetter>(action);
  // Fields are built only for a line that will be written: a sent mail logs at info level.
  const bool logged = failed_move || (dead && item.settle == Settle::kAck) ||
                      notify::log::enabled(notify::log::Level::kInfo);
  if (logged) {
    nlohmann::json fields = {
        {"loop", name_}, {"channel", channel_}, {"message_id", item.delivery.message_id}};
    if (posting != nullptr) {
      fields["posting_id"] = posting->posting_id;
      fields["event_id"] = posting->event_id;
      fields["template"] = posting->template_name;
      fields["priority"] = posting->priority;
    }
    if (ack != nullptr) {
      fields["outcome"] = to_string(ack->outcome);
      if (duplicate) {
        fields["cause"] = cause;
        notify::log::info("posting already sent: acknowledged without sending", fields);
      } else {
        notify::log::info(ack->outcome == AckOutcome::kSent ? "posting sent" : "posting dropped",
                          fields);
      }
    } else {
      const auto* later = std::get_if<Postpone>(&action);
      const auto* dead_letter = std::get_if<DeadLetter>(&action);
      const std::string& last_error =
          later != nullptr ? later->last_error : dead_letter->last_error;
      if (later != nullptr) {
        fields["reason"] = to_string(later->reason);
        fields["until"] = notify::format_iso8601(later->until);
        fields["tier"] = notify::format_duration(item.tier);
        fields["attempts"] = later->attempts;
        // Held back for the recipient (quiet hours in their zone, a schedule): when, and the
        // zone the window was read in, so "why no mail yet?" is answered from this line.
        if (!later->zone.empty()) fields["zone"] = later->zone;
      } else {
        fields["reason"] = dead_reason_text(*dead_letter);
      }
      // A transport's reply may quote the recipient's address: not in the logs.
      if (!last_error.empty()) fields["last_error"] = notify::mask_addresses(last_error);
      if (!item.copy_error.empty()) fields["error"] = item.copy_error;
      if (failed_move) {
        notify::log::error("could not move posting, it stays in the queue", fields);
      } else if (dead) {
        notify::log::error("posting dead-lettered", fields);
      } else {
        notify::log::info("posting deferred", fields);
      }
    }
  }
  if (item.settle == Settle::kAck) {
    count(posting, action);
    report(item);
  }
}

// Reported once the original is acknowledged, like count(): a posting left in the queue is
// reported when it is handled again, so each outcome is reported once.
void DeliveryLoop::report(const Item& item) {
  if (status_ == nullptr) return;
  try {
    const notify::Posting* posting = item.posting ? &*item.posting : nullptr;
    if (auto event = status_event(posting, item.delivery, channel_, *item.outcome, item.reply,
                                  clock_.now())) {
      status_->emit(*event);  // never blocks, never throws
    }
  } catch (...) {
    // Out of memory while building it: lost, and said so; the delivery itself is done.
    try {
      if (metrics_ != nullptr) metrics_->status_event_lost("dropped");
      notify::log::error("status event dropped: could not be built",
                         {{"loop", name_}, {"message_id", item.delivery.message_id}});
    } catch (...) {
    }
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
