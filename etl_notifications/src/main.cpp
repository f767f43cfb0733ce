// etl_notifications: wiring only. Read the configuration, build the edges and the pipeline
// over them, run until SIGTERM or SIGINT.

#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>

#include <prometheus/registry.h>

#include "config.hpp"
#include "edges.hpp"
#include "notify/log.hpp"
#include "notify/metrics.hpp"
#include "notify/status.hpp"
#include "notify/time.hpp"
#include "pipeline.hpp"

namespace {
std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) { g_stop.store(true); }
}  // namespace

int main() {
  etl::EtlConfig config;
  try {
    config = etl::load_config(notify::Env());
  } catch (const notify::ConfigError& e) {
    std::fprintf(stderr, "etl_notifications: configuration error: %s\n", e.what());
    return 2;
  }
  notify::log::init("etl_notifications", notify::log::parse_level(config.log_level));
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  std::signal(SIGPIPE, SIG_IGN);

  if (config.unsubscribe_secret.empty() || config.unsubscribe_url.empty()) {
    notify::log::warn(
        "unsubscribe not configured: UNSUBSCRIBE_SECRET and UNSUBSCRIBE_URL are required for "
        "bulk mail; mailings and bulk requests are refused to the dead-letter topic",
        {{"secret_set", config.unsubscribe_secret.empty() ? "no" : "yes"},
         {"url", config.unsubscribe_url}});
  }

  try {
    auto registry = std::make_shared<prometheus::Registry>();
    etl::KafkaEventSource events(config);
    etl::AuthDirectory users(config);
    etl::AmqpPostingPublisher publisher(config);
    etl::KafkaDeadLetterSink dead_letters(config);
    // Made before the pipeline, so gone after it (its destructor waits a moment for what is
    // still buffered).
    etl::StatusLossMetric status_lost(*registry);
    etl::NoStatusEvents no_status;
    std::unique_ptr<notify::status::KafkaSink> kafka_status;
    if (!config.status_topic.empty()) {
      kafka_status = std::make_unique<notify::status::KafkaSink>(
          config.kafka_bootstrap_servers, config.status_topic, config.status_buffer,
          [&status_lost](notify::kafka::BufferedProducer::Loss loss) {
            status_lost.lost(notify::kafka::to_string(loss));
          });
    }
    etl::StatusSink& status =
        kafka_status ? static_cast<etl::StatusSink&>(*kafka_status) : no_status;
    notify::SystemClock clock;
    etl::SteadyClock monotonic;
    etl::Pipeline pipeline(
        config, {events, users, publisher, dead_letters, status, clock, monotonic}, registry);
    // Made after the pipeline, so destroyed first: /readyz never reads a pipeline that is gone.
    auto metrics =
        notify::start_metrics_server({config.metrics_host, config.metrics_port}, registry);
    if (metrics) metrics->set_readiness([&pipeline] { return pipeline.not_ready_reason(); });
    notify::log::info("started",
                      {{"topic", config.events_topic},
                       {"group", config.group_id},
                       {"bootstrap", config.kafka_bootstrap_servers},
                       {"exchange", config.exchange},
                       {"status_topic",
                        config.status_topic.empty() ? std::string("none") : config.status_topic}});
    pipeline.run(g_stop);
  } catch (const std::exception& e) {
    notify::log::error("fatal", {{"error", e.what()}});
    return 1;
  }
  return 0;
}
