#pragma once
// The worker's configuration: filled once from the environment, validated at start-up.
// Defaults are documented in README.md (one table).

#include <chrono>
#include <cstdint>
#include <string>

#include "notify/config.hpp"

namespace worker {

struct WorkerConfig {
  std::string rabbitmq_url = "amqp://guest:guest@127.0.0.1:5672/%2f";
  std::string exchange = "notifications";
  std::uint16_t prefetch = 32;
  std::string smtp_host = "127.0.0.1";
  int smtp_port = 1025;
  std::string smtp_from = "notifications@example.com";
  std::string smtp_username;
  std::string smtp_password;
  std::chrono::milliseconds smtp_timeout{30000};
  std::chrono::milliseconds transient_delay{5000};  // before a transient failure is requeued
  std::string log_level = "info";
};

WorkerConfig load_config(const notify::Env& env);  // throws notify::ConfigError

}  // namespace worker
