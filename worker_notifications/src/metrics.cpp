#include "metrics.hpp"

#include <algorithm>

namespace worker {
namespace {

using prometheus::Histogram;

// An SMTP transaction or a webhook call: milliseconds to the transport's timeout.
const Histogram::BucketBoundaries kSendBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                  1,     2.5,  5,     10,   30,  60};
// From the event to the inbox: seconds when sent at once, hours across quiet hours and
// schedules, up to the TTL (days).
const Histogram::BucketBoundaries kEndToEndBuckets = {
    0.1, 0.25, 0.5,  1,        2.5,      5,         10,    30,        60,
    300, 900,  3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400};

// The refusals a worker meets in practice: access refused (a permission), not found (a queue
// missing), precondition failed (a queue declared with other arguments), not allowed (a vhost
// or a closed channel reused). Any other code gets its series when it first happens.
constexpr const char* kRefusalCodes[] = {"403", "404", "406", "530"};

}  // namespace

WorkerMetrics::WorkerMetrics(prometheus::Registry& registry, int max_attempts)
    : max_attempts_(std::max(1, max_attempts)),
      postings_(prometheus::BuildCounter()
                    .Name("notify_worker_postings_total")
                    .Help("Postings handled, by channel, template, priority and outcome (sent, "
                          "failed, expired, deferred, dead_lettered)")
                    .Register(registry)),
      retries_(prometheus::BuildCounter()
                   .Name("notify_worker_retries_total")
                   .Help("Retries scheduled after a transient failure, by channel and attempt "
                         "that failed")
                   .Register(registry)),
      send_seconds_(prometheus::BuildHistogram()
                        .Name("notify_worker_send_seconds")
                        .Help("Duration of one SMTP transaction or webhook request, by channel")
                        .Register(registry)),
      end_to_end_seconds_(prometheus::BuildHistogram()
                              .Name("notify_worker_end_to_end_seconds")
                              .Help("From the event's time to acceptance by the SMTP server or "
                                    "webhook, by channel")
                              .Register(registry)),
      amqp_refusals_(prometheus::BuildCounter()
                         .Name("notify_worker_amqp_refusals_total")
                         .Help("Operations RabbitMQ refused (access refused, not found, "
                               "precondition failed...), by channel and AMQP reply code")
                         .Register(registry)),
      handling_errors_(prometheus::BuildCounter()
                           .Name("notify_worker_handling_errors_total")
                           .Help("Deliveries whose handling threw an exception (retried or "
                                 "dead-lettered), by channel")
                           .Register(registry)),
      duplicates_suppressed_(prometheus::BuildCounter()
                                 .Name("notify_worker_duplicates_suppressed_total")
                                 .Help("Postings found sent in the delivery ledger and "
                                       "acknowledged without sending, by channel and cause "
                                       "(redelivered, retry_copy, republished)")
                                 .Register(registry)),
      ledger_failures_(prometheus::BuildCounter()
                           .Name("notify_worker_ledger_failures_total")
                           .Help("Failures of the delivery ledger (Redis unreachable, a command "
                                 "refused), by channel: deliveries wait while it is down")
                           .Register(registry)),
      status_events_lost_(prometheus::BuildCounter()
                              .Name("notify_worker_status_events_lost_total")
                              .Help("Status events lost, by cause: dropped (the buffer was full "
                                    "while Kafka was unreachable) or failed (delivery failed)")
                              .Register(registry)) {
  // Every series whose labels are known in advance exists from the start at zero: an alert on
  // increase() or rate() has data before the first retry or refusal, and counts that first one
  // (a series born at 1 shows no increase). Postings by template appear with their first
  // posting; the undecodable ones (template and priority "unknown") start at zero.
  for (const char* cause : {"dropped", "failed"}) status_events_lost_.Add({{"cause", cause}});
  for (const char* channel : {"email", "webhook"}) {
    send_seconds_.Add({{"channel", channel}}, kSendBuckets);
    end_to_end_seconds_.Add({{"channel", channel}}, kEndToEndBuckets);
    handling_errors_.Add({{"channel", channel}});
    ledger_failures_.Add({{"channel", channel}});
    for (const char* cause : {"redelivered", "retry_copy", "republished"}) {
      duplicates_suppressed_.Add({{"channel", channel}, {"cause", cause}});
    }
    for (int attempt = 1; attempt <= max_attempts_; ++attempt) {
      retries_.Add({{"channel", channel}, {"attempt", std::to_string(attempt)}});
    }
    for (const char* code : kRefusalCodes) {
      amqp_refusals_.Add({{"channel", channel}, {"code", code}});
    }
    postings_.Add({{"channel", channel},
                   {"template", "unknown"},
                   {"priority", "unknown"},
                   {"outcome", "dead_lettered"}});
  }
}

void WorkerMetrics::posting(const std::string& channel, const notify::Posting* posting,
                            std::string_view outcome) {
  postings_
      .Add({{"channel", channel},
            {"template", posting != nullptr ? posting->template_name : "unknown"},
            {"priority", posting != nullptr ? std::to_string(posting->priority) : "unknown"},
            {"outcome", std::string(outcome)}})
      .Increment();
}

void WorkerMetrics::retry(const std::string& channel, int attempt) {
  const int bounded = std::clamp(attempt, 1, max_attempts_);
  retries_.Add({{"channel", channel}, {"attempt", std::to_string(bounded)}}).Increment();
}

void WorkerMetrics::amqp_refused(const std::string& channel, std::uint16_t reply_code) {
  // AMQP error codes are three digits; anything else from a broker is not a label value.
  const bool known = reply_code >= 300 && reply_code < 600;
  amqp_refusals_.Add({{"channel", channel}, {"code", known ? std::to_string(reply_code) : "other"}})
      .Increment();
}

void WorkerMetrics::handling_error(const std::string& channel) {
  handling_errors_.Add({{"channel", channel}}).Increment();
}

void WorkerMetrics::duplicate_suppressed(const std::string& channel, std::string_view cause) {
  duplicates_suppressed_.Add({{"channel", channel}, {"cause", std::string(cause)}}).Increment();
}

void WorkerMetrics::ledger_failure(const std::string& channel) {
  ledger_failures_.Add({{"channel", channel}}).Increment();
}

void WorkerMetrics::status_event_lost(std::string_view cause) {
  status_events_lost_.Add({{"cause", std::string(cause)}}).Increment();
}

void WorkerMetrics::send_took(const std::string& channel,
                              std::chrono::steady_clock::duration took) {
  send_seconds_.Add({{"channel", channel}}, kSendBuckets)
      .Observe(std::chrono::duration<double>(took).count());
}

void WorkerMetrics::delivered(const std::string& channel, notify::TimePoint event_time,
                              notify::TimePoint now) {
  // A clock skewed between the emitting service and this host must not go below zero.
  const double seconds = std::max(0.0, std::chrono::duration<double>(now - event_time).count());
  end_to_end_seconds_.Add({{"channel", channel}}, kEndToEndBuckets).Observe(seconds);
}

}  // namespace worker
