#pragma once
// The worker's loop: postings in from the work queue, each decided by the delivery policy
// (send, defer, drop) and, once sent, acknowledged only after the SMTP server accepted it.
// Deferred postings (quiet hours, schedules, retries) live in RabbitMQ's delay queues, never
// in memory: the copy is published with a confirm before the original is acknowledged.
// Permanent failures go to the dead-letter queue with their reason in headers.
//
// The loop works in batches of what the consumer has already received (up to the prefetch; it
// never waits for more): the batch's ledger claims go in one round trip, its copies' confirms
// are awaited once, and its acknowledgements go as one basic.ack multiple over each run of
// acknowledged deliveries, a reject between them sent on its own, in order.
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
#include <vector>

#include "channels.hpp"
#include "config.hpp"
#include "edges.hpp"
#include "ledger.hpp"
#include "metrics.hpp"
#include "notify/amqp.hpp"
#include "notify/posting.hpp"
#include "notify/status.hpp"
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
    // Where the status events of settled postings go (NOTIFY_STATUS_TOPIC); none: not reported.
    notify::status::Sink* status = nullptr;
  };
  // Throttle, clocks, metrics and the status sink must outlive the loop. Throws
  // std::invalid_argument when a required part is missing.
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
  // What becomes of a delivery of the batch, settled in the batch's order at its end.
  enum class Settle {
    kNone,     // not decided (the loop stopped, a ledger it waited for): requeued
    kAck,      // acknowledged: sent, dropped, a duplicate, or its copy confirmed
    kCopy,     // its copy published, its confirm awaited with the batch's others
    kRequeue,  // back to the queue unsent (copy not stored, ledger unreachable)
    kDrop,     // rejected without requeue: the broker dead-letters it
  };
  // One delivery of the batch and what the loop learnt about it.
  struct Item {
    explicit Item(notify::amqp::Delivery d) : delivery(std::move(d)) {}
    notify::amqp::Delivery delivery;
    std::optional<notify::Posting> posting;
    int attempts = 0;
    std::optional<Action> action;  // decided without a send (or by the ledger): applied next
    SteadyClock::TimePoint decided_at{};
    bool claimed = false;  // this loop holds the posting's claim in the ledger
    SteadyClock::TimePoint claimed_at{};
    Settle settle = Settle::kNone;
    std::optional<Action> outcome;  // what was applied: logged and counted once settled
    std::chrono::milliseconds tier{0};
    std::string copy_error;  // why its copy was not stored
    std::string reply;       // the transport's reply when it accepted the send (sent_reply)
  };

  void run_connected(const std::atomic<bool>& stop);
  // Takes the deliveries already received after `first`, up to the prefetch.
  void take_batch(notify::amqp::Delivery first);
  void handle_batch(const std::atomic<bool>& stop);
  // Decodes and decides what needs no send (expired, deferred, undecodable).
  void decide(Item& item);
  // The claims of the batch's postings to be sent, in one round trip; a posting twice in the
  // batch is claimed at its turn (after the first copy's mark).
  void claim_batch();
  void act(Item& item);
  // The item's handling threw something other than a connection failure.
  void recover(Item& item, std::string_view what);
  void reset_connections();
  void amqp_failed(const notify::amqp::Error& error, std::string_view what);
  void apply(Item& item, const Action& action);
  // The batch's copies confirmed: their originals acknowledged, or requeued if not stored.
  void confirm_copies();
  // Acks and rejects of the batch in order: one multiple ack per run of acknowledged ones.
  void settle_batch();
  void log_settled(const Item& item);
  void connect_with_backoff(const std::atomic<bool>& stop);
  // Everything the loop needs is up: both AMQP connections, and the ledger with no mark owed.
  bool ready_to_take() const;
  // While no delivery comes: whether the ledger still answers, once a second.
  void check_ledger_when_idle();
  // The ledger's answer for an item: nothing when this loop may send it, or what to do instead
  // (acknowledge a duplicate, postpone while another loop holds it).
  std::optional<Action> after_claim_of(Item& item, const DeliveryLedger::Claim& claim);
  // After the send: marked sent (owed until the ledger is back if it fails), or released.
  void record_sent(Item& item);
  void release_claim(Item& item);
  void ledger_failed(const LedgerError& error, std::string_view what);
  // Sleeps in short steps so that SIGTERM is not kept waiting.
  void pause_for(std::chrono::milliseconds total, const std::atomic<bool>& stop);
  void count(const notify::Posting* posting, const Action& action);
  // The item's status event to the sink, if it makes one.
  void report(const Item& item);

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
  notify::status::Sink* status_;
  std::atomic<bool> connected_{false};
  mutable std::mutex problem_mutex_;
  std::string problem_;  // the last connection failure or refusal, for /readyz
  std::vector<Item> batch_;
  std::vector<std::size_t> window_;  // items whose copies await their confirms
  int failed_moves_ = 0;  // copies not confirmed in a row: pause before the next delivery
  std::unique_ptr<DeliveryLedger> ledger_;  // none: LEDGER_URL=none
  std::chrono::milliseconds lease_;         // of this loop's claims
  SteadyClock::TimePoint last_ledger_check_{};
  // A posting sent whose mark the ledger did not take: owed before the next delivery.
  std::optional<std::pair<std::string, notify::TimePoint>> unmarked_;
};

}  // namespace worker
