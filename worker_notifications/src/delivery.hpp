#pragma once
// The worker's loop: postings in from the work queue, each decided by the delivery policy
// (send, defer, drop) and, once sent, acknowledged only after the SMTP server accepted it.
// Deferred postings (quiet hours, schedules, retries) live in RabbitMQ's delay queues, never
// in memory: the copy is published with a confirm before the original is acknowledged.
// Permanent failures go to the dead-letter queue with their reason in headers.
//
// The loop only drives: what to do with a posting is decided in outcomes.hpp, where its copy
// goes in moves.hpp, and the queue, the republisher, the transport, time and randomness come in
// through the interfaces of edges.hpp and channels.hpp.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "channels.hpp"
#include "config.hpp"
#include "edges.hpp"
#include "ledger.hpp"
#include "metrics.hpp"
#include "notify/amqp.hpp"
#include "notify/posting.hpp"
#include "notify/time.hpp"
#include "outcomes.hpp"
#include "throttle.hpp"

namespace worker {

// One sender thread of one channel: its own work-queue consumer, republisher and transport.
class DeliveryLoop {
 public:
  struct Parts {
    std::unique_ptr<DeliverySource> source;    // required
    std::unique_ptr<Republisher> republisher;  // required
    std::unique_ptr<ChannelSender> sender;     // required
    Throttle* throttle = nullptr;              // e-mail caps; none for webhooks
    const notify::Clock* clock = nullptr;      // required: wall time for the policy
    SteadyClock* steady = nullptr;             // required: the throttle, pauses
    std::function<double()> random01;          // jitter; empty: none
    WorkerMetrics* metrics = nullptr;          // optional
    // The delivery ledger (LEDGER_URL); none: every delivery is sent, duplicates included.
    std::unique_ptr<DeliveryLedger> ledger;
  };
  // Throttle, clocks and metrics must outlive the loop. Throws std::invalid_argument when a
  // required part is missing.
  DeliveryLoop(const WorkerConfig& config, notify::Channel channel, int index, Parts parts);
  // Runs until stop is set. Nothing escapes: a delivery whose handling throws is retried or
  // dead-lettered, a failure of the loop itself is logged and the loop reconnects.
  void run(const std::atomic<bool>& stop);
  // Both AMQP connections and the ledger are up. Safe from any thread (the metrics server's
  // /readyz).
  bool connected() const { return connected_.load(); }
  // Why not connected ("rabbitmq refused: 403 ACCESS_REFUSED - ..."), or nothing when it is.
  // Safe from any thread.
  std::optional<std::string> not_ready_reason() const;

 private:
  void run_connected(const std::atomic<bool>& stop);
  void handle(const notify::amqp::Delivery& delivery);
  // handle() threw something other than a connection failure.
  void recover(const notify::amqp::Delivery& delivery, std::string_view what);
  void reset_connections();
  void amqp_failed(const notify::amqp::Error& error, std::string_view what);
  void apply(const notify::amqp::Delivery& delivery, const notify::Posting* posting,
             const Action& action);
  void connect_with_backoff(const std::atomic<bool>& stop);
  // Everything the loop needs is up: both AMQP connections, and the ledger with no mark owed.
  bool ready_to_take() const;
  // While no delivery comes: whether the ledger still answers, once a second.
  void check_ledger_when_idle();
  // Claims the posting in the ledger before its send: nothing when this loop may send it, or
  // what to do instead (acknowledge a duplicate, postpone while another loop holds it). Throws
  // LedgerError: the delivery goes back to the queue unsent.
  std::optional<Action> claim(const notify::amqp::Delivery& delivery,
                              const notify::Posting& posting, int attempts);
  // After the send: marked sent (owed until the ledger is back if it fails), or released.
  void record_sent(const notify::Posting& posting);
  void release_claim();
  void ledger_failed(const LedgerError& error, std::string_view what);
  // Sleeps in short steps so that SIGTERM is not kept waiting.
  void pause_for(std::chrono::milliseconds total, const std::atomic<bool>& stop);
  void count(const notify::Posting* posting, const Action& action);

  WorkerConfig config_;
  std::string channel_;  // the channel's name: queue suffix, log field and metrics label
  std::string name_;     // "email#0": the channel and the loop's index
  notify::amqp::Topology topology_;
  std::unique_ptr<DeliverySource> source_;
  std::unique_ptr<Republisher> republisher_;
  std::unique_ptr<ChannelSender> sender_;
  Throttle* throttle_;
  const notify::Clock& clock_;
  SteadyClock& steady_;
  std::function<double()> random01_;
  WorkerMetrics* metrics_;
  std::atomic<bool> connected_{false};
  mutable std::mutex problem_mutex_;
  std::string problem_;   // the last connection failure or refusal, for /readyz
  bool settled_ = false;  // the delivery in hand was acked or rejected
  int failed_moves_ = 0;  // copies not confirmed in a row: pause before the next delivery
  std::unique_ptr<DeliveryLedger> ledger_;  // none: LEDGER_URL=none
  std::chrono::milliseconds lease_;         // of this loop's claims
  std::optional<std::string> claimed_;      // the posting this loop holds a claim on
  SteadyClock::TimePoint last_ledger_check_{};
  // A posting sent whose mark the ledger did not take: owed before the next delivery.
  std::optional<std::pair<std::string, notify::TimePoint>> unmarked_;
};

}  // namespace worker
