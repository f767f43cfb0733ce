// worker_notifications: wiring only. Read the configuration, build the delivery loop, run
// until SIGTERM or SIGINT.

#include <atomic>
#include <csignal>
#include <cstdio>

#include "config.hpp"
#include "delivery.hpp"
#include "notify/log.hpp"

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
    worker::DeliveryLoop loop(config);
    notify::log::info("started", {{"exchange", config.exchange},
                                  {"smtp", config.smtp_host + ":" + std::to_string(config.smtp_port)}});
    loop.run(g_stop);
  } catch (const std::exception& e) {
    notify::log::error("fatal", {{"error", e.what()}});
    return 1;
  }
  return 0;
}
