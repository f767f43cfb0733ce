#pragma once
// The worker's loop: postings in from the work queue, each decided by the delivery policy
// (send, defer, drop) and, once sent, acknowledged only after the SMTP server accepted it.
// Deferred postings (quiet hours, schedules, retries) live in RabbitMQ's delay queues, never
// in memory: the copy is published with a confirm before the original is acknowledged.
// Permanent failures go to the dead-letter queue with their reason in headers.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <variant>

#include "config.hpp"
#include "ladder.hpp"
#include "metrics.hpp"
#include "notify/amqp.hpp"
#include "notify/envelope.hpp"
#include "notify/posting.hpp"
#include "notify/time.hpp"
#include "policy.hpp"
#include "senders/smtp_sender.hpp"
#include "senders/webhook_sender.hpp"
#include "throttle.hpp"

namespace worker {

using notify::worker::Email;
using notify::worker::SendResult;
using notify::worker::SendStatus;

// Headers the worker keeps on a posting between its attempts (notify/envelope.hpp).
using notify::envelope::kAttemptsHeader;
using notify::envelope::kDeadReasonHeader;
using notify::envelope::kDeferReasonHeader;
using notify::envelope::kDeliverAtHeader;
using notify::envelope::kLastErrorHeader;

// <posting id@domain of the sender>: the same posting always carries the same Message-ID, so
// a redelivered duplicate is recognisable in the recipient's mailbox.
std::string message_id_for(const std::string& posting_id, const std::string& from);
Email to_email(const notify::Posting& posting, const std::string& from);

// What became of a posting acknowledged without a copy: sent, or dropped unsent.
enum class AckOutcome { kSent, kExpired, kExpiredBeforeWindow };
std::string_view to_string(AckOutcome outcome);  // "sent", "expired", "expired_before_window"
AckOutcome outcome_of(DropReason reason);

// Why a posting goes to the dead-letter queue.
enum class DeadReason {
  kPermanentFailure,   // the transport refused it for good (5xx SMTP, 4xx HTTP, URL not allowed)
  kAttemptsExhausted,  // RETRY_MAX_ATTEMPTS transient failures
  kUndecodable,        // the body is not a posting
  kException,          // handling threw and not even the posting could be read
};
// "permanent_failure", "attempts_exhausted", "undecodable", "exception".
std::string_view to_string(DeadReason reason);

// What becomes of one delivery. Pure data, so every decision is testable without a broker.
struct Ack {
  AckOutcome outcome;
  bool operator==(const Ack&) const = default;
};
struct Postpone {
  notify::TimePoint until;
  DeferReason reason;
  int attempts = 0;  // failed sends so far
  std::string last_error;
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

// Before sending: an earlier deferral that has not ended yet goes back to the ladder;
// otherwise the policy decides. `deliver_at` and `attempts` come from the headers.
std::variant<std::monostate, Action> before_send(const notify::Posting& posting,
                                                 std::optional<notify::TimePoint> deliver_at,
                                                 int attempts, notify::TimePoint now,
                                                 const PolicyOptions& policy,
                                                 const std::function<double()>& random01);
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

// The transport of one channel: e-mail over SMTP, webhooks over HTTP.
class ChannelSender {
 public:
  virtual ~ChannelSender() = default;
  virtual SendResult send(const notify::Posting& posting) = 0;
};
std::unique_ptr<ChannelSender> make_sender(notify::Channel channel, const WorkerConfig& config);

// One sender thread of one channel: its own AMQP consumer and publisher connections and its own
// SMTP or HTTP connection.
class DeliveryLoop {
 public:
  // metrics may be null; it must outlive the loop. Without a sender, make_sender() makes the
  // channel's own (tests pass a fake).
  DeliveryLoop(const WorkerConfig& config, notify::Channel channel, Throttle* throttle,
               const notify::Clock& clock, int index, WorkerMetrics* metrics = nullptr,
               std::unique_ptr<ChannelSender> sender = nullptr);
  // Runs until stop is set. Nothing escapes: a delivery whose handling throws is retried or
  // dead-lettered, a failure of the loop itself is logged and the loop reconnects.
  void run(const std::atomic<bool>& stop);
  // Both AMQP connections are up. Safe from any thread (the metrics server's /readyz).
  bool connected() const { return connected_.load(); }
  // Why not connected ("rabbitmq refused: 403 ACCESS_REFUSED - ..."), or nothing when it is.
  // Safe from any thread.
  std::optional<std::string> not_ready_reason() const;

 private:
  void run_connected(const std::atomic<bool>& stop);
  void handle(const notify::amqp::Delivery& delivery);
  // handle() threw something other than a connection failure.
  void recover(const notify::amqp::Delivery& delivery, std::string_view what);
  void settle(const notify::amqp::Delivery& delivery, bool ack);
  void reset_connections();
  void amqp_failed(const notify::amqp::Error& error, std::string_view what);
  void apply(const notify::amqp::Delivery& delivery, const notify::Posting* posting,
             const Action& action);
  bool republish(notify::amqp::Message message);
  void connect_with_backoff(const std::atomic<bool>& stop);
  void count(const notify::Posting* posting, const Action& action);

  WorkerConfig config_;
  std::string channel_;  // the channel's name: queue suffix and metrics label
  std::string name_;     // "email#0": the channel and the loop's index
  Throttle* throttle_;   // e-mail caps; none for webhooks
  const notify::Clock& clock_;
  notify::amqp::Topology topology_;
  notify::amqp::Consumer consumer_;
  notify::amqp::ConfirmedPublisher::Options publisher_options_;
  // Replaced when a copy was not confirmed: see republish().
  std::unique_ptr<notify::amqp::ConfirmedPublisher> publisher_;
  std::unique_ptr<ChannelSender> sender_;
  std::mt19937_64 rng_;
  std::function<double()> random01_;
  WorkerMetrics* metrics_;
  std::atomic<bool> connected_{false};
  mutable std::mutex problem_mutex_;
  std::string problem_;   // the last connection failure or refusal, for /readyz
  bool settled_ = false;  // the delivery in hand was acked or rejected
  int failed_moves_ = 0;  // copies not confirmed in a row: pause before the next delivery
};

}  // namespace worker
