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

notify::Posting posting(const std::string& template_name, int priority) {
  notify::Posting p;
  p.template_name = template_name;
  p.priority = priority;
  p.channel = notify::Channel::kEmail;
  return p;
}

}  // namespace

TEST_CASE("WorkerMetrics: postings by channel, template, priority and outcome") {
  prometheus::Registry registry;
  worker::WorkerMetrics metrics(registry, 3);
  const auto welcome = posting("welcome", 9);
  metrics.posting("email", &welcome, "sent");
  metrics.posting("email", &welcome, "sent");
  metrics.posting("email", &welcome, "failed");
  metrics.posting("email", nullptr, "dead_lettered");
  const std::string text = notify::render_metrics(registry);
  CHECK(has(text,
            "notify_worker_postings_total{channel=\"email\",outcome=\"sent\",priority=\"9\","
            "template=\"welcome\"} 2"));
  CHECK(has(text,
            "notify_worker_postings_total{channel=\"email\",outcome=\"failed\","
            "priority=\"9\",template=\"welcome\"} 1"));
  CHECK(has(text,
            "notify_worker_postings_total{channel=\"email\",outcome=\"dead_lettered\","
            "priority=\"unknown\",template=\"unknown\"} 1"));
}

TEST_CASE("WorkerMetrics: retries by attempt, bounded by RETRY_MAX_ATTEMPTS") {
  prometheus::Registry registry;
  worker::WorkerMetrics metrics(registry, 3);
  metrics.retry("email", 1);
  metrics.retry("email", 2);
  metrics.retry("email", 7);  // more than max_attempts: counted as the last
  metrics.retry("email", 0);
  const std::string text = notify::render_metrics(registry);
  CHECK(has(text, "notify_worker_retries_total{attempt=\"1\",channel=\"email\"} 2"));
  CHECK(has(text, "notify_worker_retries_total{attempt=\"2\",channel=\"email\"} 1"));
  CHECK(has(text, "notify_worker_retries_total{attempt=\"3\",channel=\"email\"} 1"));
  CHECK_FALSE(has(text, "attempt=\"7\""));
}

TEST_CASE("WorkerMetrics: send and end-to-end latencies") {
  prometheus::Registry registry;
  worker::WorkerMetrics metrics(registry, 3);
  CHECK(has(notify::render_metrics(registry),
            "notify_worker_end_to_end_seconds_count{channel=\"webhook\"} 0"));

  metrics.send_took("email", 30ms);
  const notify::TimePoint event_time{std::chrono::milliseconds(1'700'000'000'000)};
  metrics.delivered("email", event_time, event_time + 2min);
  metrics.delivered("email", event_time, event_time - 1s);  // skewed clocks: zero, not negative
  const std::string text = notify::render_metrics(registry);
  CHECK(has(text, "notify_worker_send_seconds_count{channel=\"email\"} 1"));
  CHECK(has(text, "notify_worker_send_seconds_bucket{channel=\"email\",le=\"0.05\"} 1"));
  CHECK(has(text, "notify_worker_end_to_end_seconds_count{channel=\"email\"} 2"));
  CHECK(has(text, "notify_worker_end_to_end_seconds_bucket{channel=\"email\",le=\"0.1\"} 1"));
  CHECK(has(text, "notify_worker_end_to_end_seconds_bucket{channel=\"email\",le=\"60\"} 1"));
  CHECK(has(text, "notify_worker_end_to_end_seconds_bucket{channel=\"email\",le=\"300\"} 2"));
}

TEST_CASE("WorkerMetrics: RabbitMQ refusals by reply code, handling errors by channel") {
  prometheus::Registry registry;
  worker::WorkerMetrics metrics(registry, 3);
  std::string text = notify::render_metrics(registry);
  CHECK(has(text, "notify_worker_handling_errors_total{channel=\"email\"} 0"));
  metrics.amqp_refused("email", 403);
  metrics.amqp_refused("email", 403);
  metrics.amqp_refused("webhook", 404);
  metrics.amqp_refused("email", 7);  // not an AMQP code: no label value of its own
  metrics.handling_error("webhook");
  text = notify::render_metrics(registry);
  CHECK(has(text, "notify_worker_amqp_refusals_total{channel=\"email\",code=\"403\"} 2"));
  CHECK(has(text, "notify_worker_amqp_refusals_total{channel=\"webhook\",code=\"404\"} 1"));
  CHECK(has(text, "notify_worker_amqp_refusals_total{channel=\"email\",code=\"other\"} 1"));
  CHECK(has(text, "notify_worker_handling_errors_total{channel=\"webhook\"} 1"));
}

TEST_CASE("WorkerMetrics: the series alerts and runbooks name exist at zero from the start") {
  prometheus::Registry registry;
  worker::WorkerMetrics metrics(registry, 3);
  const std::string text = notify::render_metrics(registry);
  for (const char* channel : {"email", "webhook"}) {
    CAPTURE(channel);
    const std::string c = std::string("channel=\"") + channel + "\"";
    for (const char* attempt : {"1", "2", "3"}) {
      CHECK(has(text, std::string("notify_worker_retries_total{attempt=\"") + attempt + "\"," + c +
                          "} 0"));
    }
    for (const char* code : {"403", "404", "406", "530"}) {
      CHECK(has(text, "notify_worker_amqp_refusals_total{" + c + ",code=\"" + code + "\"} 0"));
    }
    CHECK(has(text, "notify_worker_postings_total{" + c +
                        ",outcome=\"dead_lettered\",priority=\"unknown\",template=\"unknown\"} 0"));
    CHECK(has(text, "notify_worker_handling_errors_total{" + c + "} 0"));
    CHECK(has(text, "notify_worker_ledger_failures_total{" + c + "} 0"));
    for (const char* cause : {"redelivered", "retry_copy", "republished"}) {
      CHECK(has(text, "notify_worker_duplicates_suppressed_total{cause=\"" + std::string(cause) +
                          "\"," + c + "} 0"));
    }
  }
  CHECK_FALSE(has(text, "attempt=\"4\""));
}

TEST_CASE("WorkerMetrics: status events lost, by cause, from zero") {
  prometheus::Registry registry;
  worker::WorkerMetrics metrics(registry, 3);
  std::string text = notify::render_metrics(registry);
  CHECK(has(text, "notify_worker_status_events_lost_total{cause=\"dropped\"} 0"));
  CHECK(has(text, "notify_worker_status_events_lost_total{cause=\"failed\"} 0"));
  metrics.status_event_lost("dropped");
  metrics.status_event_lost("dropped");
  metrics.status_event_lost("failed");
  text = notify::render_metrics(registry);
  CHECK(has(text, "notify_worker_status_events_lost_total{cause=\"dropped\"} 2"));
  CHECK(has(text, "notify_worker_status_events_lost_total{cause=\"failed\"} 1"));
}
