#pragma once
// The ETL's Prometheus metrics, served on METRICS_PORT:
//   notify_etl_events_total{type,outcome}            events consumed
//   notify_etl_dead_lettered_total{reason_class}     events sent to the dead-letter topic
//   notify_etl_postings_published_total{channel,template}  postings confirmed by RabbitMQ
//   notify_etl_publish_confirm_seconds               publish to confirm (histogram)
//   notify_etl_auth_request_seconds{call}            Auth calls, retries included (histogram)
//   notify_etl_auth_errors_total{call,kind}          Auth calls that did not succeed
//   notify_etl_consumer_lag{topic,partition}         messages past the consumer's position
//   notify_etl_amqp_refusals_total{code}             RabbitMQ refusals (403, 404, 406, 530...)
//   notify_etl_postings_republished_total            postings sent again after a reconnect
//   notify_etl_status_events_lost_total{cause}       status events dropped (buffer full) or failed
// Label values are bounded: event types of the catalogue, channels, template names (files of
// TEMPLATES_DIR), classes of refusal; never raw reasons or ids.

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "notify/kafka.hpp"

namespace etl {

// The event_type label: a type of the catalogue, or "other" (anything else cannot be a label).
std::string event_type_label(std::string_view type);

class EtlMetrics {
 public:
  using Duration = std::chrono::steady_clock::duration;

  explicit EtlMetrics(prometheus::Registry& registry);

  // outcome: "processed" (postings made, maybe none), "rejected" (an invalid event, to the
  // dead-letter topic), "dead_lettered" (a valid event that cannot be carried out, e.g. an
  // unknown user: to the dead-letter topic too).
  void event(std::string_view type, std::string_view outcome);
  // reason_class: "invalid_event", "unknown_user", "receivers", "audience_too_large",
  // "context_fetch", "render", "other"; "dead_letter_refused" when the broker refused even the
  // shortened copy (the event is skipped, logged at error, its offset committed).
  void dead_lettered(std::string_view reason_class);
  // A posting RabbitMQ confirmed, `since_publish` after it was handed to the publisher.
  void posting_confirmed(const std::string& channel, const std::string& template_name,
                         Duration since_publish);
  // One call to the Auth service (or a context fetch): call is "get_user", "list_users" or
  // "fetch_json"; error_kind empty when it succeeded, else "unavailable", "unknown_user",
  // "too_large", "bad_response".
  void auth_call(std::string_view call, Duration took, std::string_view error_kind);
  // RabbitMQ refused an operation with this reply code (notify::amqp::Refused).
  void amqp_refused(std::uint16_t reply_code);
  // After a lost connection, `count` postings whose confirm never came were published again
  // (the broker may have stored them the first time: each is a possible duplicate, which the
  // worker's delivery ledger recognises by its posting id).
  void postings_republished(std::size_t count);
  // The lag of every assigned partition; partitions no longer assigned disappear.
  void consumer_lag(const std::vector<notify::kafka::PartitionLag>& lags);

 private:
  prometheus::Family<prometheus::Counter>& events_;
  prometheus::Family<prometheus::Counter>& dead_lettered_;
  prometheus::Family<prometheus::Counter>& published_;
  prometheus::Family<prometheus::Histogram>& confirm_seconds_;
  prometheus::Family<prometheus::Histogram>& auth_seconds_;
  prometheus::Family<prometheus::Counter>& auth_errors_;
  prometheus::Family<prometheus::Gauge>& lag_;
  prometheus::Family<prometheus::Counter>& amqp_refusals_;
  prometheus::Counter& republished_;
  prometheus::Histogram& confirm_;
  std::set<notify::kafka::TopicPartition> lag_partitions_;
};

// notify_etl_status_events_lost_total{cause}: apart from EtlMetrics because the status sink it
// counts for is made before the pipeline (and outlives it). Safe from any thread: the
// producer's own thread reports the failed ones.
class StatusLossMetric {
 public:
  explicit StatusLossMetric(prometheus::Registry& registry);
  // "dropped" (the buffer was full while Kafka was unreachable) or "failed" (its delivery failed
  // for good).
  void lost(std::string_view cause);

 private:
  prometheus::Family<prometheus::Counter>& lost_;
};

}  // namespace etl
