// worker_notifications: wiring only. Read the configuration, start SMTP_CONCURRENCY e-mail and
// WEBHOOK_CONCURRENCY webhook delivery loops, run until SIGTERM or SIGINT, then let each finish
// its delivery in hand.

#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/registry.h>

#include "config.hpp"
#include "delivery.hpp"
#include "notify/log.hpp"
#include "notify/metrics.hpp"

namespace {
std::atomic<bool> g_stop{false};
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
    worker::Throttle throttle(config.throttle);
    auto registry = std::make_shared<prometheus::Registry>();
    worker::WorkerMetrics metrics(*registry, config.retry.max_attempts);
    std::vector<std::unique_ptr<worker::DeliveryLoop>> loops;
    for (int i = 0; i < config.smtp_concurrency; ++i) {
      loops.push_back(std::make_unique<worker::DeliveryLoop>(config, notify::Channel::kEmail,
                                                             &throttle, clock, i, &metrics));
    }
    for (int i = 0; i < config.webhook_concurrency; ++i) {
      loops.push_back(std::make_unique<worker::DeliveryLoop>(config, notify::Channel::kWebhook,
                                                             nullptr, clock, i, &metrics));
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
                       {"webhook_concurrency", config.webhook_concurrency}});
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
