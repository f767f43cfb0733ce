#include "config.hpp"

#include "notify/amqp.hpp"
#include "redis_ledger.hpp"
#include "senders/mime_encoding.hpp"

namespace worker {

WorkerConfig load_config(const notify::Env& env) {
  WorkerConfig c;
  c.rabbitmq_url = env.str("RABBITMQ_URL", c.rabbitmq_url);
  try {
    notify::amqp::Url::parse(c.rabbitmq_url);
  } catch (const std::exception& e) {
    throw notify::ConfigError(std::string("RABBITMQ_URL: ") + e.what());  // names no password
  }
  c.exchange = env.str("RABBITMQ_EXCHANGE", c.exchange);
  c.prefetch = static_cast<std::uint16_t>(env.integer("WORKER_PREFETCH", c.prefetch, 1, 65535));
  c.smtp_host = env.str("SMTP_HOST", c.smtp_host);
  c.smtp_port = static_cast<int>(env.integer("SMTP_PORT", c.smtp_port, 1, 65535));
  c.smtp_from = env.str("SMTP_FROM", c.smtp_from);
  if (!notify::worker::mime::parse_mailbox(c.smtp_from)) {
    throw notify::ConfigError(
        "SMTP_FROM=" + notify::worker::mime::sanitize_header_value(c.smtp_from) +
        ": neither an address nor Name <address>");
  }
  c.smtp_username = env.str("SMTP_USERNAME", "");
  c.smtp_password = env.str("SMTP_PASSWORD", "");
  c.smtp_timeout = env.duration("SMTP_TIMEOUT", c.smtp_timeout);
  c.smtp_concurrency = static_cast<int>(env.integer("SMTP_CONCURRENCY", c.smtp_concurrency, 1, 64));
  c.webhook_concurrency =
      static_cast<int>(env.integer("WEBHOOK_CONCURRENCY", c.webhook_concurrency, 0, 64));
  c.webhook_timeout = env.duration("WEBHOOK_TIMEOUT", c.webhook_timeout);
  c.webhook_url_allowlist = env.url_list("WEBHOOK_URL_ALLOWLIST");  // as the ETL reads it
  const std::string ledger = env.str("LEDGER_URL", c.ledger_url);
  if (ledger == "none") {
    c.ledger_url.clear();
  } else {
    try {
      RedisAddress::parse(ledger);
    } catch (const std::exception& e) {
      throw notify::ConfigError("LEDGER_URL: " + std::string(e.what()));  // names no password
    }
    c.ledger_url = ledger;
  }
  c.ledger_lease = env.duration("LEDGER_LEASE", 2 * c.smtp_timeout);
  if (!c.ledger_url.empty() && c.ledger_lease <= c.smtp_timeout) {
    // A claim that ends while its holder is still talking to the SMTP server lets a second
    // worker send the same mail.
    throw notify::ConfigError("LEDGER_LEASE=" + notify::format_duration(c.ledger_lease) +
                              ": must be longer than SMTP_TIMEOUT (" +
                              notify::format_duration(c.smtp_timeout) + ")");
  }
  c.throttle.per_second = static_cast<double>(env.integer("MAILS_PER_SECOND", 0, 0, 1000000));
  c.throttle.per_hour = static_cast<double>(env.integer("MAILS_PER_HOUR", 0, 0, 1000000000));

  const std::string quiet = env.str("QUIET_HOURS", "22:00-08:00");
  try {
    c.policy.quiet = parse_quiet_window(quiet);
  } catch (const notify::ConfigError& e) {
    throw notify::ConfigError("QUIET_HOURS=" + quiet + ": " + e.what());
  }
  c.policy.spread = env.duration("QUIET_HOURS_SPREAD", c.policy.spread);
  c.policy.default_timezone = env.str("DEFAULT_TIMEZONE", c.policy.default_timezone);
  if (!is_known_timezone(c.policy.default_timezone)) {
    throw notify::ConfigError("DEFAULT_TIMEZONE=" + c.policy.default_timezone +
                              ": not an IANA time zone");
  }
  const std::string tiers = env.str("DELAY_TIERS", "10s,1m,10m,1h,6h");
  try {
    c.delay_tiers = parse_tiers(tiers);
  } catch (const notify::ConfigError& e) {
    throw notify::ConfigError("DELAY_TIERS=" + tiers + ": " + e.what());
  }
  c.retry.base = env.duration("RETRY_BASE_DELAY", c.retry.base);
  c.retry.max_attempts =
      static_cast<int>(env.integer("RETRY_MAX_ATTEMPTS", c.retry.max_attempts, 1, 100));
  c.log_level = env.str("LOG_LEVEL", c.log_level);
  c.metrics_host = env.str("METRICS_HOST", c.metrics_host);
  c.metrics_port = static_cast<int>(env.integer("METRICS_PORT", c.metrics_port, 0, 65535));
  c.status_topic = notify::trim(env.str("NOTIFY_STATUS_TOPIC", c.status_topic));
  c.kafka_bootstrap_servers = env.str("KAFKA_BOOTSTRAP_SERVERS", c.kafka_bootstrap_servers);
  if (!c.status_topic.empty() && notify::trim(c.kafka_bootstrap_servers).empty()) {
    throw notify::ConfigError(
        "KAFKA_BOOTSTRAP_SERVERS is empty: status events (NOTIFY_STATUS_TOPIC=" + c.status_topic +
        ") need a Kafka broker, or set NOTIFY_STATUS_TOPIC= to turn them off");
  }
  // librdkafka's queue.buffering.max.messages holds at most ten million.
  c.status_buffer = static_cast<std::size_t>(
      env.integer("STATUS_BUFFER", static_cast<std::int64_t>(c.status_buffer), 1, 10000000));
  c.max_json_depth = static_cast<std::size_t>(
      env.integer("MAX_JSON_DEPTH", static_cast<std::int64_t>(c.max_json_depth), 1, 512));
  return c;
}

}  // namespace worker
