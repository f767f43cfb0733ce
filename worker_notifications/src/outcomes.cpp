#include "outcomes.hpp"

#include <algorithm>

#include "notify/envelope.hpp"
#include "notify/log.hpp"
#include "senders/mime_encoding.hpp"

namespace worker {
namespace {

// An exception's text goes into a header and the logs: bounded.
constexpr std::size_t kMaxExceptionText = 1024;

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
    return Postpone{defer->until, defer->reason, failed, last_error, {}};
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

}  // namespace

std::string_view to_string(AckOutcome outcome) {
  switch (outcome) {
    case AckOutcome::kSent:
      return "sent";
    case AckOutcome::kExpired:
      return "expired";
    case AckOutcome::kExpiredBeforeWindow:
      return "expired_before_window";
    case AckOutcome::kDuplicate:
      return "duplicate";
  }
  return "sent";
}

AckOutcome outcome_of(DropReason reason) {
  return reason == DropReason::kExpired ? AckOutcome::kExpired : AckOutcome::kExpiredBeforeWindow;
}

std::string_view duplicate_cause(const notify::amqp::Delivery& delivery) {
  if (delivery.redelivered) return "redelivered";
  if (notify::envelope::attempts_of(delivery) > 0 || notify::envelope::deliver_at_of(delivery)) {
    return "retry_copy";
  }
  return "republished";
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

std::optional<std::string> unsendable(const notify::Posting& posting) {
  if (posting.channel != notify::Channel::kEmail || posting.category != notify::Category::kBulk) {
    return std::nullopt;
  }
  if (posting.unsubscribe.url.empty()) {
    return "bulk e-mail without unsubscribe.url: never sent without List-Unsubscribe";
  }
  if (!notify::worker::mime::list_unsubscribe_value(posting.unsubscribe.url,
                                                    posting.unsubscribe.mailto)) {
    return "bulk e-mail whose unsubscribe links List-Unsubscribe cannot carry (an http(s) URL "
           "and a mailto: URI of printable ASCII without blanks, '<', '>', ',' or '\"')";
  }
  return std::nullopt;
}

std::variant<std::monostate, Action> before_send(const notify::Posting& posting,
                                                 std::optional<notify::TimePoint> deliver_at,
                                                 int attempts, notify::TimePoint now,
                                                 const PolicyOptions& policy,
                                                 const std::function<double()>& random01) {
  if (auto why = unsendable(posting)) {
    return Action{DeadLetter{DeadReason::kPermanentFailure, attempts, {}, std::move(*why)}};
  }
  if (now >= posting.expires_at) return Action{Ack{AckOutcome::kExpired}};
  // Back from a delay queue before its time (a tier shorter than the rest): once more.
  if (deliver_at && *deliver_at > now) {
    if (*deliver_at >= posting.expires_at) return Action{Ack{AckOutcome::kExpiredBeforeWindow}};
    return Action{Postpone{*deliver_at, DeferReason::kDeferred, attempts, {}, {}}};
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
    return Action{Postpone{defer->until, defer->reason, attempts, {}, e.zone}};
  }
  return std::monostate{};
}

std::optional<Action> after_claim(const DeliveryLedger::Claim& claim, notify::TimePoint now,
                                  int attempts) {
  switch (claim.result) {
    case DeliveryLedger::Claimed::kYes:
      return std::nullopt;
    case DeliveryLedger::Claimed::kAlreadySent:
      return Ack{AckOutcome::kDuplicate};
    case DeliveryLedger::Claimed::kHeld:
      break;
  }
  return Postpone{
      now + std::max<std::chrono::milliseconds>(claim.held_for, std::chrono::seconds(1)),
      DeferReason::kClaimed,
      attempts,
      {},
      {}};
}

std::optional<Action> after_throttle(std::chrono::milliseconds wait, notify::TimePoint now,
                                     int attempts) {
  if (wait <= kLongestThrottleSleep) return std::nullopt;
  return Postpone{now + wait, DeferReason::kThrottled, attempts, {}, {}};
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

Action undecodable(std::string_view why) {
  return DeadLetter{DeadReason::kUndecodable, 0, {}, std::string(why)};
}

}  // namespace worker
