#pragma once
// The worker's Prometheus metrics, served on METRICS_PORT:
//   notify_worker_postings_total{channel,template,priority,outcome}  postings handled
//   notify_worker_retries_total{channel,attempt}     retries after transient failures
//   notify_worker_send_seconds{channel}              one SMTP transaction or webhook (histogram)
//   notify_worker_end_to_end_seconds{channel}        event time to acceptance (histogram)
// One instance is shared by every delivery loop: prometheus-cpp's metrics are thread-safe.
// Label values are bounded: channels, template names, priorities 0..9, attempts
// 1..RETRY_MAX_ATTEMPTS.

#include <chrono>
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
  // From the event's time to the transport's acceptance.
  void delivered(const std::string& channel, notify::TimePoint event_time, notify::TimePoint now);

 private:
  int max_attempts_;
  prometheus::Family<prometheus::Counter>& postings_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Histogram>& send_seconds_;
  prometheus::Family<prometheus::Histogram>& end_to_end_seconds_;
};

}  // namespace worker
