#pragma once
// The worker's configuration: filled once from the environment, validated at start-up.
// Defaults are documented in README.md (one table).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ladder.hpp"
#include "notify/config.hpp"
#include "policy.hpp"
#include "throttle.hpp"

namespace worker {

struct WorkerConfig {
  std::string rabbitmq_url = "amqp://guest:guest@127.0.0.1:5672/%2f";
  std::string exchange = "notifications";
  std::uint16_t prefetch = 32;
  std::string smtp_host = "127.0.0.1";
  int smtp_port = 1025;
  // The From of every mail: "address" or "Display Name <address>" (RFC 5322; the name is
  // quoted or RFC 2047 encoded when sent, as it needs); the envelope's MAIL FROM is the address.
  std::string smtp_from = "Notifications <notifications@example.com>";
  std::string smtp_username;
  std::string smtp_password;
  std::chrono::milliseconds smtp_timeout{30000};
  int smtp_concurrency = 1;     // sender threads, each with its own SMTP and AMQP connections
  int webhook_concurrency = 1;  // webhook threads; 0: the webhook queue is not consumed
  std::chrono::milliseconds webhook_timeout{10000};
  // WEBHOOK_URL_ALLOWLIST: http(s) base URLs webhooks may be posted to, checked again here so a
  // posting put on the queue by someone else cannot name any URL. Empty: every webhook is
  // refused (dead-lettered), as the ETL refuses them.
  std::vector<std::string> webhook_url_allowlist;
  // LEDGER_URL: the delivery ledger's Redis (redis_ledger.hpp); empty when LEDGER_URL
  // is "none": no ledger, and faults can then send a posting twice.
  std::string ledger_url = "redis://127.0.0.1:6379/0";
  // LEDGER_LEASE (default twice SMTP_TIMEOUT, longer than it): how long a claim holds when its
  // loop died while sending. Webhook loops hold at least twice WEBHOOK_TIMEOUT.
  std::chrono::milliseconds ledger_lease{60000};
  // Status events (documentation/status.md): NOTIFY_STATUS_TOPIC on KAFKA_BOOTSTRAP_SERVERS, at
  // most STATUS_BUFFER of them waiting while Kafka is unreachable. An empty topic: none.
  std::string status_topic = "notify_status";
  std::string kafka_bootstrap_servers = "127.0.0.1:9092";
  std::size_t status_buffer = 100000;
  std::size_t max_json_depth = 64;  // MAX_JSON_DEPTH: nesting of a posting, bounded while read
  ThrottleOptions throttle;         // MAILS_PER_SECOND, MAILS_PER_HOUR (0: unlimited)
  PolicyOptions policy;             // QUIET_HOURS, QUIET_HOURS_SPREAD, DEFAULT_TIMEZONE
  std::vector<std::chrono::milliseconds> delay_tiers;  // DELAY_TIERS
  RetryOptions retry;                                  // RETRY_BASE_DELAY, RETRY_MAX_ATTEMPTS
  std::string log_level = "info";
  std::string metrics_host = "0.0.0.0";  // /metrics, /healthz, /readyz
  int metrics_port = 9465;               // 0: any free port (logged)
};

WorkerConfig load_config(const notify::Env& env);  // throws notify::ConfigError

}  // namespace worker
