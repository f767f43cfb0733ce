#pragma once
// The worker's Prometheus metrics, served on METRICS_PORT:
//   notify_worker_postings_total{channel,template,priority,outcome}  postings handled
//   notify_worker_retries_total{channel,attempt}     retries after transient failures
//   notify_worker_send_seconds{channel}              one SMTP transaction or webhook (histogram)
//   notify_worker_end_to_end_seconds{channel}        event time to acceptance (histogram)
//   notify_worker_amqp_refusals_total{channel,code}  RabbitMQ refusals (403, 404, 406, 530...)
//   notify_worker_handling_errors_total{channel}     deliveries whose handling threw
//   notify_worker_duplicates_suppressed_total{channel,cause}  found sent in the ledger, not sent
//   notify_worker_ledger_failures_total{channel}     the delivery ledger unreachable or refusing
//   notify_worker_status_events_lost_total{cause}    status events dropped (buffer full) or failed
// One instance is shared by every delivery loop: prometheus-cpp's metrics are thread-safe.
// Label values are bounded: channels, template names, priorities 0..9, attempts
// 1..RETRY_MAX_ATTEMPTS.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "notify/posting.hpp"

namespace worker {

class WorkerMetrics {
 public:
  WorkerMetrics(prometheus::Registry& registry, int max_attempts);

  // outcome: "sent"; "failed" (a transient failure, retried later); "expired" (dropped by its
  // TTL, before or between attempts); "deferred" (quiet hours, schedule, throttle, not the hops
  // of an earlier deferral through the delay queues); "dead_lettered" (a permanent failure,
  // retries exhausted, or undecodable: posting is null then, template and priority "unknown").
  void posting(const std::string& channel, const notify::Posting* posting,
               std::string_view outcome);
  // `attempt`: how many sends of this posting have failed, this one included.
  void retry(const std::string& channel, int attempt);
  // One SMTP transaction or webhook request, whatever its result.
  void send_took(const std::string& channel, std::chrono::steady_clock::duration took);
  // RabbitMQ refused an operation of a loop of `channel` (notify::amqp::Refused).
  void amqp_refused(const std::string& channel, std::uint16_t reply_code);
  // Handling a delivery threw (a sender, the policy, out of memory): retried or dead-lettered.
  void handling_error(const std::string& channel);
  // A posting found sent in the delivery ledger and acknowledged unsent; cause as
  // duplicate_cause() names it.
  void duplicate_suppressed(const std::string& channel, std::string_view cause);
  // The ledger failed a connect, claim, mark or release of a loop of `channel`.
  void ledger_failure(const std::string& channel);
  // A status event lost: "dropped" (the buffer was full while Kafka was unreachable) or "failed"
  // (its delivery failed for good). Safe from any thread (the producer's own reports it).
  void status_event_lost(std::string_view cause);
  // From the event's time to the transport's acceptance.
  void delivered(const std::string& channel, notify::TimePoint event_time, notify::TimePoint now);

 private:
  int max_attempts_;
  prometheus::Family<prometheus::Counter>& postings_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Histogram>& send_seconds_;
  prometheus::Family<prometheus::Histogram>& end_to_end_seconds_;
  prometheus::Family<prometheus::Counter>& amqp_refusals_;
  prometheus::Family<prometheus::Counter>& handling_errors_;
  prometheus::Family<prometheus::Counter>& duplicates_suppressed_;
  prometheus::Family<prometheus::Counter>& ledger_failures_;
  prometheus::Family<prometheus::Counter>& status_events_lost_;
};

}  // namespace worker
