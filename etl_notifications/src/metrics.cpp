#include "metrics.hpp"

#include <array>

#include "job.hpp"

namespace etl {
namespace {

using prometheus::Histogram;

// Seconds: a confirm takes milliseconds, unless RabbitMQ restarts in between.
const Histogram::BucketBoundaries kConfirmBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                     0.25,  0.5,    1,     2.5,  5,     10,   30};
// An Auth call includes its retries (AUTH_MAX_ATTEMPTS) and their backoff.
const Histogram::BucketBoundaries kAuthBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                  0.5,   1,    2.5,   5,    10,  30};

constexpr std::array kEventTypes = {"user_signed_up", "user_changed_password_successfully",
                                    "mailing", "reminder", "notification_requested"};

std::string s(std::string_view v) { return std::string(v); }

}  // namespace

std::string event_type_label(std::string_view type) {
  for (std::string_view known : kEventTypes) {
    if (type == known) return s(type);
  }
  return "other";
}

EtlMetrics::EtlMetrics(prometheus::Registry& registry)
    : events_(prometheus::BuildCounter()
                  .Name("notify_etl_events_total")
                  .Help("Events consumed, by event type and outcome (processed, rejected, "
                        "dead_lettered)")
                  .Register(registry)),
      dead_lettered_(prometheus::BuildCounter()
                         .Name("notify_etl_dead_lettered_total")
                         .Help("Events written to the dead-letter topic, by class of reason")
                         .Register(registry)),
      published_(prometheus::BuildCounter()
                     .Name("notify_etl_postings_published_total")
                     .Help("Postings published and confirmed by RabbitMQ, by channel and template")
                     .Register(registry)),
      confirm_seconds_(prometheus::BuildHistogram()
                           .Name("notify_etl_publish_confirm_seconds")
                           .Help("Time from handing a posting to the publisher to its confirm")
                           .Register(registry)),
      auth_seconds_(prometheus::BuildHistogram()
                        .Name("notify_etl_auth_request_seconds")
                        .Help("Duration of Auth service calls and context fetches, retries "
                              "included, by call")
                        .Register(registry)),
      auth_errors_(prometheus::BuildCounter()
                       .Name("notify_etl_auth_errors_total")
                       .Help("Auth service calls and context fetches that did not succeed, by "
                             "call and kind")
                       .Register(registry)),
      lag_(prometheus::BuildGauge()
               .Name("notify_etl_consumer_lag")
               .Help("Messages of an assigned partition past the consumer's position")
               .Register(registry)),
      amqp_refusals_(prometheus::BuildCounter()
                         .Name("notify_etl_amqp_refusals_total")
                         .Help("Operations RabbitMQ refused (access refused, not found, "
                               "precondition failed...), by AMQP reply code")
                         .Register(registry)),
      republished_(prometheus::BuildCounter()
                       .Name("notify_etl_postings_republished_total")
                       .Help("Postings published again after a lost RabbitMQ connection, their "
                             "confirm not received: each may be a duplicate")
                       .Register(registry)
                       .Add({})),
      confirm_(confirm_seconds_.Add({}, kConfirmBuckets)) {
  // Known series start at zero, so rates and alerts see them before the first event.
  for (std::string_view type : kEventTypes) {
    for (const char* outcome : {"processed", "rejected", "dead_lettered"}) {
      events_.Add({{"type", s(type)}, {"outcome", outcome}});
    }
  }
  for (const char* outcome : {"processed", "rejected", "dead_lettered"}) {
    events_.Add({{"type", "other"}, {"outcome", outcome}});
  }
  for (const char* call : {"get_user", "list_users", "fetch_json"}) {
    auth_seconds_.Add({{"call", call}}, kAuthBuckets);
    for (const char* kind : {"unavailable", "unknown_user", "too_large", "bad_response"}) {
      auth_errors_.Add({{"call", call}, {"kind", kind}});
    }
  }
  for (const RefusalClass refusal :
       {RefusalClass::kInvalidEvent, RefusalClass::kUnknownUser, RefusalClass::kReceivers,
        RefusalClass::kAudienceTooLarge, RefusalClass::kContextFetch, RefusalClass::kRender,
        RefusalClass::kOther}) {
    dead_lettered_.Add({{"reason_class", s(to_string(refusal))}});
  }
  dead_lettered_.Add({{"reason_class", "dead_letter_refused"}});
  for (const char* code : {"403", "404", "406", "530"}) amqp_refusals_.Add({{"code", code}});
}

StatusLossMetric::StatusLossMetric(prometheus::Registry& registry)
    : lost_(prometheus::BuildCounter()
                .Name("notify_etl_status_events_lost_total")
                .Help("Status events lost, by cause: dropped (the buffer was full while Kafka was "
                      "unreachable) or failed (delivery failed)")
                .Register(registry)) {
  for (const char* cause : {"dropped", "failed"}) lost_.Add({{"cause", cause}});
}

void StatusLossMetric::lost(std::string_view cause) {
  lost_.Add({{"cause", s(cause)}}).Increment();
}

void EtlMetrics::event(std::string_view type, std::string_view outcome) {
  events_.Add({{"type", event_type_label(type)}, {"outcome", s(outcome)}}).Increment();
}

void EtlMetrics::amqp_refused(std::uint16_t reply_code) {
  // AMQP error codes are three digits; anything else from a broker is not a label value.
  const bool known = reply_code >= 300 && reply_code < 600;
  amqp_refusals_.Add({{"code", known ? std::to_string(reply_code) : "other"}}).Increment();
}

void EtlMetrics::postings_republished(std::size_t count) {
  republished_.Increment(static_cast<double>(count));
}

void EtlMetrics::dead_lettered(std::string_view reason_class) {
  dead_lettered_.Add({{"reason_class", s(reason_class)}}).Increment();
}

void EtlMetrics::posting_confirmed(const std::string& channel, const std::string& template_name,
                                   Duration since_publish) {
  published_.Add({{"channel", channel}, {"template", template_name}}).Increment();
  confirm_.Observe(std::chrono::duration<double>(since_publish).count());
}

void EtlMetrics::auth_call(std::string_view call, Duration took, std::string_view error_kind) {
  auth_seconds_.Add({{"call", s(call)}}, kAuthBuckets)
      .Observe(std::chrono::duration<double>(took).count());
  if (!error_kind.empty()) {
    auth_errors_.Add({{"call", s(call)}, {"kind", s(error_kind)}}).Increment();
  }
}

void EtlMetrics::consumer_lag(const std::vector<notify::kafka::PartitionLag>& lags) {
  std::set<notify::kafka::TopicPartition> now;
  for (const auto& l : lags) {
    lag_.Add({{"topic", l.tp.topic}, {"partition", std::to_string(l.tp.partition)}})
        .Set(static_cast<double>(l.lag));
    now.insert(l.tp);
  }
  for (const auto& gone : lag_partitions_) {
    if (now.count(gone) != 0) continue;
    auto& gauge = lag_.Add({{"topic", gone.topic}, {"partition", std::to_string(gone.partition)}});
    lag_.Remove(&gauge);
  }
  lag_partitions_ = std::move(now);
}

}  // namespace etl
