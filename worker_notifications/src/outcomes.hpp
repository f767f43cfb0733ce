#pragma once
// What becomes of one delivery, as data: acknowledged (sent or dropped unsent), postponed to a
// delay queue, or dead-lettered. Pure functions of the posting, its headers, the transport's
// reply, the time and a random source, so every path is a unit test without a broker.

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "ladder.hpp"
#include "ledger.hpp"
#include "notify/amqp.hpp"
#include "notify/posting.hpp"
#include "notify/time.hpp"
#include "policy.hpp"
#include "senders/smtp_sender.hpp"

namespace worker {

using notify::worker::SendResult;
using notify::worker::SendStatus;

// What became of a posting acknowledged without a copy: sent, dropped unsent, or found sent
// already in the delivery ledger (a duplicate, not sent again).
enum class AckOutcome { kSent, kExpired, kExpiredBeforeWindow, kDuplicate };
// "sent", "expired", "expired_before_window", "duplicate".
std::string_view to_string(AckOutcome outcome);
AckOutcome outcome_of(DropReason reason);

// Where a duplicate came from, as far as the delivery shows it: "redelivered" (RabbitMQ
// delivered it again: a worker or its connection died before the ack), "retry_copy" (a copy
// from a delay queue whose original was sent), "republished" (another copy of the posting: the
// ETL published it again after a lost confirm or a crash, or it was replayed).
std::string_view duplicate_cause(const notify::amqp::Delivery& delivery);

// Why a posting goes to the dead-letter queue.
enum class DeadReason {
  kPermanentFailure,   // the transport refused it for good (5xx SMTP, 4xx HTTP, URL not allowed)
  kAttemptsExhausted,  // RETRY_MAX_ATTEMPTS transient failures
  kUndecodable,        // the body is not a posting
  kException,          // handling threw and not even the posting could be read
};
// "permanent_failure", "attempts_exhausted", "undecodable", "exception".
std::string_view to_string(DeadReason reason);

struct Ack {
  AckOutcome outcome;
  bool operator==(const Ack&) const = default;
};
struct Postpone {
  notify::TimePoint until;
  DeferReason reason;
  int attempts = 0;  // failed sends so far
  std::string last_error;
  std::string zone;  // quiet hours or a schedule: the zone the policy read the window in
  bool operator==(const Postpone&) const = default;
};
struct DeadLetter {
  DeadReason reason;
  int attempts = 0;
  std::string last_error;
  std::string detail;  // why it is undecodable, the exception's text (bounded)
  bool operator==(const DeadLetter&) const = default;
};
// The x-dead-reason header: the reason, then ": <detail>" when there is one
// ("permanent_failure", "undecodable: posting: ...", "exception: ...").
std::string dead_reason_text(const DeadLetter& dead);
using Action = std::variant<Ack, Postpone, DeadLetter>;

// Why a posting can never be sent as it is, or nothing: a bulk e-mail without a one-click
// unsubscribe that List-Unsubscribe can carry (documentation/unsubscribe.md).
std::optional<std::string> unsendable(const notify::Posting& posting);

// Before sending: an unsendable posting is dead-lettered (permanent_failure, with the reason);
// an earlier deferral that has not ended yet goes back to the ladder; otherwise the policy
// decides. `deliver_at` and `attempts` come from the headers.
std::variant<std::monostate, Action> before_send(const notify::Posting& posting,
                                                 std::optional<notify::TimePoint> deliver_at,
                                                 int attempts, notify::TimePoint now,
                                                 const PolicyOptions& policy,
                                                 const std::function<double()>& random01);

// The ledger's answer to a claim: nothing when this loop may send; a duplicate acknowledged
// unsent; or, held by another loop, postponed until that claim is marked, released or expired
// (never sooner than a second, so a lease about to end is not polled).
std::optional<Action> after_claim(const DeliveryLedger::Claim& claim, notify::TimePoint now,
                                  int attempts);

// Longer throttle waits go through the ladder: a held delivery would starve the heartbeats.
inline constexpr std::chrono::milliseconds kLongestThrottleSleep{5000};
// The throttle asks to wait `wait` before sending: postponed when that is longer than
// kLongestThrottleSleep, otherwise nothing (the loop sleeps, then sends).
std::optional<Action> after_throttle(std::chrono::milliseconds wait, notify::TimePoint now,
                                     int attempts);

// After sending: sent, retried through the ladder, or dead-lettered. The reply of the
// transport ("smtp 451: ...", "http 503: ...") travels along.
Action after_send(const SendResult& result, const notify::Posting& posting, int attempts,
                  notify::TimePoint now, const RetryOptions& retry,
                  const std::function<double()>& random01);
// Handling threw (a sender's bug, out of memory...): a transient failure like any other, so
// the posting is retried through the ladder and, if it keeps throwing, dead-lettered after
// RETRY_MAX_ATTEMPTS with "exception: <what>" (bounded) as its last error. Without a posting
// (it could not even be decoded), dead-lettered at once (kException, the text as detail).
Action after_exception(std::string_view what, const notify::Posting* posting, int attempts,
                       notify::TimePoint now, const RetryOptions& retry,
                       const std::function<double()>& random01);
// The body is not a posting: dead-lettered at once, the decoder's message as detail.
Action undecodable(std::string_view why);

}  // namespace worker
