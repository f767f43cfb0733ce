#pragma once
// The ETL's configuration: filled once from the environment, validated at start-up.
// Defaults are documented in README.md (one table).

#include <chrono>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "notify/config.hpp"

namespace etl {

struct EtlConfig {
  std::string kafka_bootstrap_servers = "127.0.0.1:9092";
  std::string events_topic = "notify_events";
  std::string group_id = "etl_notifications";
  std::string auto_offset_reset = "earliest";
  std::map<std::string, std::string> consumer_properties;  // any librdkafka consumer property
  // The confirmed prefix of a partition is committed at most this long after its last confirm
  // (one asynchronous commit per interval at most): what a crash makes the next instance read
  // again.
  std::chrono::milliseconds commit_interval{250};
  std::string rabbitmq_url = "amqp://guest:guest@127.0.0.1:5672/%2f";
  std::string exchange = "notifications";
  std::size_t confirm_window = 512;
  std::string auth_url = "http://127.0.0.1:8081";
  std::string auth_token;
  std::chrono::milliseconds auth_timeout{5000};
  int auth_max_attempts = 3;
  std::string templates_dir = "templates";
  std::string dlq_topic = "notify_events.dlq";
  // Status events of skipped recipients and refused events (documentation/status.md):
  // NOTIFY_STATUS_TOPIC, at most STATUS_BUFFER of them waiting while Kafka is unreachable. An
  // empty topic: none.
  std::string status_topic = "notify_status";
  std::size_t status_buffer = 100000;
  std::string public_base_url = "http://localhost:8000";
  std::chrono::milliseconds welcome_ttl = std::chrono::hours(24);
  std::chrono::milliseconds security_ttl = std::chrono::hours(24);
  std::chrono::milliseconds default_ttl = std::chrono::hours(48);
  std::chrono::milliseconds reminder_ttl = std::chrono::hours(1);
  // One-click unsubscribe of bulk mail (documentation/unsubscribe.md): without secret and URL,
  // bulk events are refused.
  std::string unsubscribe_secret;  // UNSUBSCRIBE_SECRET, at least 16 bytes
  std::string unsubscribe_url;     // UNSUBSCRIBE_URL, http(s)
  std::string unsubscribe_mailto;  // UNSUBSCRIBE_MAILTO, an address; empty: no mailto: form
  std::chrono::milliseconds unsubscribe_ttl = std::chrono::hours(24 * 60);
  std::vector<std::string> context_url_allowlist;
  std::vector<std::string> webhook_url_allowlist;
  // Below librdkafka's default message.max.bytes (1,000,000): a refused event, with its
  // headers, still fits the dead-letter topic whole.
  std::size_t max_event_bytes = 900'000;
  std::size_t max_json_depth = 64;  // events, Auth answers and context fetches
  std::size_t max_recipients = 100000;
  std::size_t max_context_fetch_bytes = 256 * 1024;
  std::chrono::milliseconds auth_cache_ttl{60000};
  std::chrono::milliseconds retry_max_backoff{30000};  // transient trouble: pause and retry
  std::string log_level = "info";
  std::string metrics_host = "0.0.0.0";  // /metrics, /healthz, /readyz
  int metrics_port = 9464;               // 0: any free port (logged)
};

EtlConfig load_config(const notify::Env& env);  // throws notify::ConfigError

}  // namespace etl
