// worker_notifications: wiring only. Read the configuration, start SMTP_CONCURRENCY e-mail and
// WEBHOOK_CONCURRENCY webhook delivery loops, run until SIGTERM or SIGINT, then let each finish
// its delivery in hand.

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <prometheus/registry.h>

#include "amqp_edges.hpp"
#include "config.hpp"
#include "delivery.hpp"
#include "notify/log.hpp"
#include "notify/metrics.hpp"
#include "notify/status.hpp"
#include "redis_ledger.hpp"

namespace {
std::atomic<bool> g_stop{false};
// Connecting to the ledger and each of its commands: Redis answers in well under a millisecond,
// so a second means it is gone, and the delivery goes back to the queue.
constexpr std::chrono::milliseconds kLedgerTimeout{2000};
extern "C" void on_signal(int) { g_stop.store(true); }
}  // namespace

int main() {
  worker::WorkerConfig config;
  try {
    config = worker::load_config(notify::Env());
  } catch (const notify::ConfigError& e) {
    std::fprintf(stderr, "worker_notifications: configuration error: %s\n", e.what());
    return 2;
  }
  notify::log::init("worker_notifications", notify::log::parse_level(config.log_level));
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  std::signal(SIGPIPE, SIG_IGN);

  try {
    notify::SystemClock clock;
    worker::SystemSteadyClock steady;
    worker::Throttle throttle(config.throttle);
    auto registry = std::make_shared<prometheus::Registry>();
    worker::WorkerMetrics metrics(*registry, config.retry.max_attempts);
    // Shared by every loop; made before them, so gone after them (its destructor waits a moment
    // for what is still buffered).
    std::unique_ptr<notify::status::KafkaSink> status;
    if (!config.status_topic.empty()) {
      status = std::make_unique<notify::status::KafkaSink>(
          config.kafka_bootstrap_servers, config.status_topic, config.status_buffer,
          [&metrics](notify::kafka::BufferedProducer::Loss loss) {
            metrics.status_event_lost(notify::kafka::to_string(loss));
          });
    }
    const auto make_loop = [&](notify::Channel channel, int index, worker::Throttle* caps) {
      worker::DeliveryLoop::Parts parts;
      parts.source = std::make_unique<worker::AmqpDeliverySource>(config, channel, index);
      parts.republisher = std::make_unique<worker::AmqpRepublisher>(config, channel, index);
      parts.sender = worker::make_sender(channel, config);
      parts.throttle = caps;
      parts.clock = &clock;
      parts.steady = &steady;
      parts.random01 = worker::system_random01();
      parts.metrics = &metrics;
      parts.status = status.get();
      if (!config.ledger_url.empty()) {
        parts.ledger = std::make_unique<worker::RedisLedger>(
            worker::RedisAddress::parse(config.ledger_url),
            std::string(notify::to_string(channel)) + "#" + std::to_string(index), kLedgerTimeout);
      }
      return std::make_unique<worker::DeliveryLoop>(config, channel, index, std::move(parts));
    };
    std::vector<std::unique_ptr<worker::DeliveryLoop>> loops;
    for (int i = 0; i < config.smtp_concurrency; ++i) {
      loops.push_back(make_loop(notify::Channel::kEmail, i, &throttle));
    }
    for (int i = 0; i < config.webhook_concurrency; ++i) {
      loops.push_back(make_loop(notify::Channel::kWebhook, i, nullptr));  // no caps for webhooks
    }
    // Made after the loops, so destroyed first: /readyz never reads a loop that is gone.
    auto server =
        notify::start_metrics_server({config.metrics_host, config.metrics_port}, registry);
    if (server) {
      server->set_readiness([&loops]() -> std::optional<std::string> {
        for (const auto& loop : loops) {
          if (auto why = loop->not_ready_reason()) return why;
        }
        return std::nullopt;
      });
    }
    notify::log::info("started",
                      {{"exchange", config.exchange},
                       {"smtp", config.smtp_host + ":" + std::to_string(config.smtp_port)},
                       {"smtp_concurrency", config.smtp_concurrency},
                       {"webhook_concurrency", config.webhook_concurrency},
                       {"ledger", config.ledger_url.empty()
                                      ? std::string("none")
                                      : worker::RedisAddress::parse(config.ledger_url).display()},
                       {"ledger_lease", notify::format_duration(config.ledger_lease)},
                       {"status_topic",
                        config.status_topic.empty() ? std::string("none") : config.status_topic}});
    if (config.ledger_url.empty()) {
      notify::log::warn(
          "LEDGER_URL=none: no delivery ledger, so crashes, broker restarts and redeliveries can "
          "send a posting twice");
    }
    std::vector<std::thread> threads;
    for (auto& loop : loops) threads.emplace_back([&loop] { loop->run(g_stop); });
    for (auto& t : threads) t.join();
    notify::log::info("stopped");
  } catch (const std::exception& e) {
    notify::log::error("fatal", {{"error", e.what()}});
    return 1;
  }
  return 0;
}
