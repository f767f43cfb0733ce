#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include <prometheus/registry.h>

#include "metrics.hpp"
#include "notify/metrics.hpp"

using namespace std::chrono_literals;

namespace {

bool has(const std::string& text, const std::string& line) {
  return text.find(line) != std::string::npos;
}

}  // namespace

TEST_CASE("EtlMetrics: events by type and outcome, known series from the start") {
  prometheus::Registry registry;
  etl::EtlMetrics metrics(registry);
  CHECK(has(notify::render_metrics(registry),
            "notify_etl_events_total{outcome=\"processed\",type=\"user_signed_up\"} 0"));

  metrics.event("user_signed_up", "processed");
  metrics.event("user_signed_up", "processed");
  metrics.event("made_up_type", "rejected");  // a label must not grow with bad input
  metrics.event("", "rejected");
  metrics.dead_lettered("invalid_event");
  const std::string text = notify::render_metrics(registry);
  CHECK(has(text, "notify_etl_events_total{outcome=\"processed\",type=\"user_signed_up\"} 2"));
  CHECK(has(text, "notify_etl_events_total{outcome=\"rejected\",type=\"other\"} 2"));
  CHECK_FALSE(has(text, "made_up_type"));
  CHECK(has(text, "notify_etl_dead_lettered_total{reason_class=\"invalid_event\"} 1"));
}

TEST_CASE("EtlMetrics: every counter an alert or runbook names exists at zero from the start") {
  prometheus::Registry registry;
  const etl::EtlMetrics metrics(registry);
  const std::string text = notify::render_metrics(registry);
  CHECK(has(text, "notify_etl_events_total{outcome=\"dead_lettered\",type=\"other\"} 0"));
  for (const char* reason : {"invalid_event", "unknown_user", "receivers", "audience_too_large",
                             "context_fetch", "render", "other", "dead_letter_refused"}) {
    CAPTURE(reason);
    CHECK(has(text,
              std::string("notify_etl_dead_lettered_total{reason_class=\"") + reason + "\"} 0"));
  }
  for (const char* code : {"403", "404", "406", "530"}) {
    CAPTURE(code);
    CHECK(has(text, std::string("notify_etl_amqp_refusals_total{code=\"") + code + "\"} 0"));
  }
  CHECK(has(text, "notify_etl_auth_errors_total{call=\"list_users\",kind=\"unavailable\"} 0"));
  CHECK(has(text, "notify_etl_auth_errors_total{call=\"fetch_json\",kind=\"too_large\"} 0"));
}

TEST_CASE("EtlMetrics: confirmed postings by channel and template, with their confirm time") {
  prometheus::Registry registry;
  etl::EtlMetrics metrics(registry);
  metrics.posting_confirmed("email", "welcome", 3ms);
  metrics.posting_confirmed("email", "welcome", 40ms);
  const std::string text = notify::render_metrics(registry);
  CHECK(has(text, "notify_etl_postings_published_total{channel=\"email\",template=\"welcome\"} 2"));
  CHECK(has(text, "notify_etl_publish_confirm_seconds_count 2"));
  CHECK(has(text, "notify_etl_publish_confirm_seconds_bucket{le=\"0.005\"} 1"));
  CHECK(has(text, "notify_etl_publish_confirm_seconds_bucket{le=\"0.05\"} 2"));
}

TEST_CASE("EtlMetrics: Auth calls are timed, their errors counted by kind") {
  prometheus::Registry registry;
  etl::EtlMetrics metrics(registry);
  metrics.auth_call("get_user", 20ms, "");
  metrics.auth_call("get_user", 2s, "unavailable");
  metrics.auth_call("list_users", 5ms, "unknown_user");
  const std::string text = notify::render_metrics(registry);
  CHECK(has(text, "notify_etl_auth_request_seconds_count{call=\"get_user\"} 2"));
  CHECK(has(text, "notify_etl_auth_request_seconds_count{call=\"list_users\"} 1"));
  CHECK(has(text, "notify_etl_auth_errors_total{call=\"get_user\",kind=\"unavailable\"} 1"));
  CHECK(has(text, "notify_etl_auth_errors_total{call=\"list_users\",kind=\"unknown_user\"} 1"));
  CHECK_FALSE(has(text, "kind=\"\""));
}

TEST_CASE("EtlMetrics: the lag of revoked partitions disappears") {
  prometheus::Registry registry;
  etl::EtlMetrics metrics(registry);
  metrics.consumer_lag({{{"events", 0}, 7}, {{"events", 1}, 0}});
  std::string text = notify::render_metrics(registry);
  CHECK(has(text, "notify_etl_consumer_lag{partition=\"0\",topic=\"events\"} 7"));
  CHECK(has(text, "notify_etl_consumer_lag{partition=\"1\",topic=\"events\"} 0"));

  metrics.consumer_lag({{{"events", 1}, 3}});
  text = notify::render_metrics(registry);
  CHECK_FALSE(has(text, "partition=\"0\""));
  CHECK(has(text, "notify_etl_consumer_lag{partition=\"1\",topic=\"events\"} 3"));
}

TEST_CASE("event_type_label: catalogue types, else other") {
  CHECK(etl::event_type_label("mailing") == "mailing");
  CHECK(etl::event_type_label("notification_requested") == "notification_requested");
  CHECK(etl::event_type_label("Mailing") == "other");
  CHECK(etl::event_type_label("") == "other");
}

TEST_CASE("EtlMetrics: RabbitMQ refusals by reply code") {
  prometheus::Registry registry;
  etl::EtlMetrics metrics(registry);
  metrics.amqp_refused(403);
  metrics.amqp_refused(403);
  metrics.amqp_refused(530);
  metrics.amqp_refused(65535);  // not an AMQP code: no label value of its own
  const std::string text = notify::render_metrics(registry);
  CHECK(has(text, "notify_etl_amqp_refusals_total{code=\"403\"} 2"));
  CHECK(has(text, "notify_etl_amqp_refusals_total{code=\"530\"} 1"));
  CHECK(has(text, "notify_etl_amqp_refusals_total{code=\"other\"} 1"));
}

TEST_CASE("StatusLossMetric: lost status events by cause, both at zero from the start") {
  prometheus::Registry registry;
  etl::StatusLossMetric lost(registry);
  std::string text = notify::render_metrics(registry);
  CHECK(has(text, "notify_etl_status_events_lost_total{cause=\"dropped\"} 0"));
  CHECK(has(text, "notify_etl_status_events_lost_total{cause=\"failed\"} 0"));
  lost.lost("dropped");
  lost.lost("dropped");
  lost.lost("failed");
  text = notify::render_metrics(registry);
  CHECK(has(text, "notify_etl_status_events_lost_total{cause=\"dropped\"} 2"));
  CHECK(has(text, "notify_etl_status_events_lost_total{cause=\"failed\"} 1"));
}
