#include "delivery.hpp"

#include <thread>

#include "notify/log.hpp"
#include "notify/redact.hpp"

namespace worker {
namespace {

using namespace std::chrono_literals;

constexpr auto kConfirmTimeout = 10s;
// Nacks of one copy before the publisher gives up on it: the original stays in the queue.
constexpr int kMaxNacks = 5;
// After copies that were not confirmed (nacked, returned, timed out) the loop pauses before the
// next delivery, doubling up to this, so a refusing broker is not asked in a tight loop.
constexpr auto kFirstMovePause = 500ms;
constexpr auto kLongestMovePause = 10s;
// A loop that failed outside any one delivery waits this long before it reconnects.
constexpr auto kLoopFailurePause = 1s;
// An exception's text goes into a header and the logs: bounded.
constexpr std::size_t kMaxExceptionText = 1024;
// Longer throttle waits go through the ladder: a held delivery would starve the heartbeats.
constexpr auto kLongestThrottleSleep = 5s;

notify::amqp::Topology topology_of(const WorkerConfig& c) {
  notify::amqp::Topology t;
  t.exchange = c.exchange;
  t.channels = notify::envelope::channel_names();
  t.delay_tiers = c.delay_tiers;
  return t;
}

notify::amqp::ConnectionOptions connection_of(const WorkerConfig& c, const std::string& channel,
                                              int index) {
  notify::amqp::ConnectionOptions o;
  o.url = notify::amqp::Url::parse(c.rabbitmq_url);
  o.connection_name = "worker_notifications " + channel + "#" + std::to_string(index);
  return o;
}

notify::worker::SmtpOptions smtp_options(const WorkerConfig& c) {
  notify::worker::SmtpOptions o;
  o.host = c.smtp_host;
  o.port = c.smtp_port;
  o.from = c.smtp_from;
  o.username = c.smtp_username;
  o.password = c.smtp_password;
  o.timeout = c.smtp_timeout;
  return o;
}

// Sleeps in short steps so that SIGTERM is not kept waiting.
void pause_for(std::chrono::milliseconds total, const std::atomic<bool>& stop) {
  const auto until = std::chrono::steady_clock::now() + total;
  while (!stop.load() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(50ms);
  }
}

using notify::envelope::attempts_of;
using notify::envelope::deliver_at_of;

std::string transport_reply(const notify::Posting& p, const SendResult& r) {
  return std::string(p.channel == notify::Channel::kWebhook ? "http " : "smtp ") +
         std::to_string(r.smtp_code) + ": " + r.detail;
}

// A transient failure, `failed` attempts so far: retried through the ladder, dropped past the
// posting's expiry, or dead-lettered once the attempts are exhausted.
Action retry_or_dead_letter(int failed, const notify::Posting& posting, notify::TimePoint now,
                            const RetryOptions& retry, const std::function<double()>& random01,
                            const std::string& last_error) {
  const RetryDecision next = decide_retry(failed, now, posting.expires_at, retry, random01);
  if (const auto* defer = std::get_if<Defer>(&next)) {
    return Postpone{defer->until, defer->reason, failed, last_error};
  }
  if (const auto* drop = std::get_if<Drop>(&next)) return Ack{outcome_of(drop->reason)};
  return DeadLetter{DeadReason::kAttemptsExhausted, failed, last_error, {}};
}

// Bounded: it travels in a header.
std::string bounded(std::string_view what) {
  if (what.size() <= kMaxExceptionText) return std::string(what);
  return std::string(what.substr(0, kMaxExceptionText)) + "...";
}

std::string exception_text(std::string_view what) { return "exception: " + bounded(what); }

class EmailChannel final : public ChannelSender {
 public:
  explicit EmailChannel(const WorkerConfig& c) : smtp_(smtp_options(c)), from_(c.smtp_from) {}
  SendResult send(const notify::Posting& p) override { return smtp_.send(to_email(p, from_)); }

 private:
  notify::worker::SmtpSender smtp_;
  std::string from_;
};

class WebhookChannel final : public ChannelSender {
 public:
  explicit WebhookChannel(const WorkerConfig& c)
      : http_(notify::worker::WebhookOptions{std::chrono::milliseconds(5000), c.webhook_timeout,
                                             c.webhook_url_allowlist}) {}
  SendResult send(const notify::Posting& p) override { return http_.send(p); }

 private:
  notify::worker::WebhookSender http_;
};

}  // namespace

std::string_view to_string(AckOutcome outcome) {
  switch (outcome) {
    case AckOutcome::kSent:
      return "sent";
    case AckOutcome::kExpired:
      return "expired";
    case AckOutcome::kExpiredBeforeWindow:
      return "expired_before_window";
  }
  return "sent";
}

AckOutcome outcome_of(DropReason reason) {
  return reason == DropReason::kExpired ? AckOutcome::kExpired : AckOutcome::kExpiredBeforeWindow;
}

std::string_view to_string(DeadReason reason) {
  switch (reason) {
    case DeadReason::kPermanentFailure:
      return "permanent_failure";
    case DeadReason::kAttemptsExhausted:
      return "attempts_exhausted";
    case DeadReason::kUndecodable:
      return "undecodable";
    case DeadReason::kException:
      return "exception";
  }
  return "exception";
}

std::string dead_reason_text(const DeadLetter& dead) {
  std::string text(to_string(dead.reason));
  if (!dead.detail.empty()) text.append(": ").append(dead.detail);
  return text;
}

std::string message_id_for(const std::string& posting_id, const std::string& from) {
  auto at = from.rfind('@');
  std::string domain = at == std::string::npos ? "localhost" : from.substr(at + 1);
  while (!domain.empty() && domain.back() == '>') domain.pop_back();
  return posting_id + "@" + (domain.empty() ? "localhost" : domain);
}

Email to_email(const notify::Posting& p, const std::string& from) {
  Email e;
  e.from = from;
  e.to = p.recipient.address;
  e.to_name = p.recipient.name;
  e.subject = p.content.subject;
  e.text = p.content.text;
  e.html = p.content.html;
  e.message_id = message_id_for(p.posting_id, from);
  e.extra_headers = {{"X-Notify-Posting-Id", p.posting_id}, {"X-Notify-Template", p.template_name}};
  return e;
}

std::variant<std::monostate, Action> before_send(const notify::Posting& posting,
                                                 std::optional<notify::TimePoint> deliver_at,
                                                 int attempts, notify::TimePoint now,
                                                 const PolicyOptions& policy,
                                                 const std::function<double()>& random01) {
  if (now >= posting.expires_at) return Action{Ack{AckOutcome::kExpired}};
  // Back from a delay queue before its time (a tier shorter than the rest): once more.
  if (deliver_at && *deliver_at > now) {
    if (*deliver_at >= posting.expires_at) return Action{Ack{AckOutcome::kExpiredBeforeWindow}};
    return Action{Postpone{*deliver_at, DeferReason::kDeferred, attempts, {}}};
  }
  const Evaluation e = decide(posting, now, policy, random01);
  if (e.zone_fallback) {
    notify::log::debug("recipient time zone unknown, using the default",
                       {{"posting_id", posting.posting_id}, {"zone", e.zone}});
  }
  if (const auto* drop = std::get_if<Drop>(&e.decision)) {
    return Action{Ack{outcome_of(drop->reason)}};
  }
  if (const auto* defer = std::get_if<Defer>(&e.decision)) {
    return Action{Postpone{defer->until, defer->reason, attempts, {}}};
  }
  return std::monostate{};
}

Action after_send(const SendResult& result, const notify::Posting& posting, int attempts,
                  notify::TimePoint now, const RetryOptions& retry,
                  const std::function<double()>& random01) {
  if (result.status == SendStatus::kSent) return Ack{AckOutcome::kSent};
  const int failed = attempts + 1;
  if (result.status == SendStatus::kPermanent) {
    return DeadLetter{DeadReason::kPermanentFailure, failed, transport_reply(posting, result), {}};
  }
  return retry_or_dead_letter(failed, posting, now, retry, random01,
                              transport_reply(posting, result));
}

Action after_exception(std::string_view what, const notify::Posting* posting, int attempts,
                       notify::TimePoint now, const RetryOptions& retry,
                       const std::function<double()>& random01) {
  const int failed = attempts + 1;
  if (posting == nullptr) return DeadLetter{DeadReason::kException, failed, {}, bounded(what)};
  return retry_or_dead_letter(failed, *posting, now, retry, random01, exception_text(what));
}

std::unique_ptr<ChannelSender> make_sender(notify::Channel channel, const WorkerConfig& config) {
  if (channel == notify::Channel::kWebhook) return std::make_unique<WebhookChannel>(config);
  return std::make_unique<EmailChannel>(config);
}

DeliveryLoop::DeliveryLoop(const WorkerConfig& config, notify::Channel channel, Throttle* throttle,
                           const notify::Clock& clock, int index, WorkerMetrics* metrics,
                           std::unique_ptr<ChannelSender> sender)
    : config_(config),
      channel_(notify::to_string(channel)),
      name_(channel_ + "#" + std::to_string(index)),
      throttle_(throttle),
      clock_(clock),
      topology_(topology_of(config)),
      consumer_(notify::amqp::Consumer::Options{connection_of(config, channel_, index),
                                                topology_.queue_for(channel_), config.prefetch,
                                                topology_}),
      publisher_options_{connection_of(config, channel_, index), "", 64, std::nullopt, kMaxNacks},
      publisher_(std::make_unique<notify::amqp::ConfirmedPublisher>(publisher_options_)),
      sender_(sender ? std::move(sender) : make_sender(channel, config)),
      rng_(std::random_device{}()),
      metrics_(metrics) {
  random01_ = [this] { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); };
}

void DeliveryLoop::connect_with_backoff(const std::atomic<bool>& stop) {
  auto backoff = 500ms;
  while (!stop.load()) {
    try {
      if (!consumer_.connected()) consumer_.connect();
      if (!publisher_->connected()) publisher_->connect();
      connected_.store(true);
      notify::log::info("rabbitmq connected",
                        {{"queue", topology_.queue_for(channel_)}, {"prefetch", config_.prefetch}});
      return;
    } catch (const notify::amqp::Error& e) {
      amqp_failed(e, "rabbitmq unavailable");
      pause_for(backoff, stop);
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, 10s);
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
  consumer_.disconnect();
}

void DeliveryLoop::run_connected(const std::atomic<bool>& stop) {
  while (!stop.load()) {
    if (!publisher_) {
      publisher_ = std::make_unique<notify::amqp::ConfirmedPublisher>(publisher_options_);
    }
    if (!consumer_.connected() || !publisher_->connected()) {
      connect_with_backoff(stop);
      continue;
    }
    try {
      std::optional<notify::amqp::Delivery> delivery = consumer_.next(200ms);
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
      // connections (the publisher's is most likely gone too).
      amqp_failed(e, "rabbitmq connection lost");
      reset_connections();
    }
  }
}

void DeliveryLoop::reset_connections() {
  connected_.store(false);
  consumer_.disconnect();
  publisher_.reset();  // made again by run_connected()
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
          after_exception(text, p, attempts_of(delivery), clock_.now(), config_.retry, random01_));
  } catch (const notify::amqp::Error&) {
    throw;
  } catch (...) {
    if (settled_) return;
    // Even the way out failed: the broker dead-letters it (its x-death header says so) rather
    // than the loop seeing it again and again.
    notify::log::error("could not retry or dead-letter the delivery: rejected without requeue",
                       {{"loop", name_}, {"message_id", delivery.message_id}});
    consumer_.reject(delivery.delivery_tag, /*requeue=*/false);
    settled_ = true;
  }
}

void DeliveryLoop::handle(const notify::amqp::Delivery& delivery) {
  notify::Posting posting;
  try {
    posting = notify::decode_posting(delivery.body, {config_.max_json_depth});
  } catch (const notify::PostingError& e) {
    apply(delivery, nullptr, DeadLetter{DeadReason::kUndecodable, 0, {}, e.what()});
    return;
  }
  const int attempts = attempts_of(delivery);
  auto now = clock_.now();
  auto early =
      before_send(posting, deliver_at_of(delivery), attempts, now, config_.policy, random01_);
  if (auto* action = std::get_if<Action>(&early)) {
    apply(delivery, &posting, *action);
    return;
  }

  const auto wait = throttle_ != nullptr ? throttle_->reserve(std::chrono::steady_clock::now())
                                         : std::chrono::milliseconds(0);
  if (wait > kLongestThrottleSleep) {
    apply(delivery, &posting, Postpone{now + wait, DeferReason::kThrottled, attempts, {}});
    return;
  }
  if (wait > 0ms) std::this_thread::sleep_for(wait);

  const auto started = std::chrono::steady_clock::now();
  const SendResult result = sender_->send(posting);
  if (metrics_ != nullptr) {
    metrics_->send_took(channel_, std::chrono::steady_clock::now() - started);
  }
  now = clock_.now();
  apply(delivery, &posting, after_send(result, posting, attempts, now, config_.retry, random01_));
}

bool DeliveryLoop::republish(notify::amqp::Message message) {
  bool acked = false;
  // A copy without its confirm stays in the publisher, which would send it again after
  // reconnecting while the original goes back to the queue: two copies, two mails (and a
  // callback into this finished frame). The original is the one that counts: forget the copy.
  const auto forget_copy = [this] {
    publisher_ = std::make_unique<notify::amqp::ConfirmedPublisher>(publisher_options_);
  };
  try {
    publisher_->publish(std::move(message), [&acked](notify::amqp::ConfirmedPublisher::Result r) {
      acked = r == notify::amqp::ConfirmedPublisher::Result::kAcked;
    });
    if (publisher_->flush(kConfirmTimeout)) return acked;
  } catch (const notify::amqp::Error&) {
    forget_copy();
    throw;
  }
  forget_copy();
  return false;
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

  if (const auto* ack = std::get_if<Ack>(&action)) {
    consumer_.ack(delivery.delivery_tag);
    settled_ = true;
    fields["outcome"] = to_string(ack->outcome);
    notify::log::info(ack->outcome == AckOutcome::kSent ? "posting sent" : "posting dropped",
                      fields);
    count(posting, action);
    return;
  }

  notify::amqp::Message copy = notify::envelope::copy_of(delivery, "");
  const bool dead = std::holds_alternative<DeadLetter>(action);
  if (const auto* later = std::get_if<Postpone>(&action)) {
    const auto remaining = std::max<std::chrono::milliseconds>(later->until - clock_.now(),
                                                               std::chrono::milliseconds(0));
    const auto tier = choose_tier(remaining, config_.delay_tiers);
    copy.routing_key = topology_.delay_queue_for(channel_, tier);
    copy.headers[kDeliverAtHeader] = notify::format_iso8601(later->until);
    copy.headers[kDeferReasonHeader] = to_string(later->reason);
    copy.headers[kAttemptsHeader] = std::to_string(later->attempts);
    if (!later->last_error.empty()) copy.headers[kLastErrorHeader] = later->last_error;
    fields["reason"] = to_string(later->reason);
    fields["until"] = notify::format_iso8601(later->until);
    fields["tier"] = notify::format_duration(tier);
    fields["attempts"] = later->attempts;
    // A transport's reply may quote the recipient's address: not in the logs.
    if (!later->last_error.empty()) {
      fields["last_error"] = notify::mask_addresses(later->last_error);
    }
  } else {
    const auto& letter = std::get<DeadLetter>(action);
    copy.routing_key = topology_.dead_letter_queue_for(channel_);
    copy.headers[kDeadReasonHeader] = dead_reason_text(letter);
    copy.headers[kAttemptsHeader] = std::to_string(letter.attempts);
    if (!letter.last_error.empty()) copy.headers[kLastErrorHeader] = letter.last_error;
    fields["reason"] = dead_reason_text(letter);
    if (!letter.last_error.empty()) {
      fields["last_error"] = notify::mask_addresses(letter.last_error);
    }
  }

  // The copy must be safe in RabbitMQ before the original goes.
  bool confirmed = false;
  try {
    confirmed = republish(std::move(copy));
  } catch (const notify::amqp::Error& e) {
    amqp_failed(e, "rabbitmq failed while moving a posting");
    fields["error"] = e.what();
  }
  if (!confirmed) {
    // Nacked max_nacks times, returned, or not confirmed in time: the original is the copy.
    notify::log::error("could not move posting, it stays in the queue", fields);
    consumer_.reject(delivery.delivery_tag, /*requeue=*/true);
    settled_ = true;
    ++failed_moves_;
    return;
  }
  consumer_.ack(delivery.delivery_tag);
  settled_ = true;
  failed_moves_ = 0;
  count(posting, action);
  if (dead) {
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
