#include "config.hpp"

#include <vector>

#include "notify/amqp.hpp"
#include "notify/unsubscribe.hpp"

namespace etl {
namespace {

void read_unsubscribe(const notify::Env& env, EtlConfig& c) {
  c.unsubscribe_secret = env.str("UNSUBSCRIBE_SECRET", "");
  if (!c.unsubscribe_secret.empty() &&
      c.unsubscribe_secret.size() < notify::UnsubscribeSigner::kMinSecretBytes) {
    // The value is a secret: named, never shown.
    throw notify::ConfigError("UNSUBSCRIBE_SECRET: must be at least " +
                              std::to_string(notify::UnsubscribeSigner::kMinSecretBytes) +
                              " bytes long");
  }
  c.unsubscribe_url = env.str("UNSUBSCRIBE_URL", "");
  if (!c.unsubscribe_url.empty() && ((c.unsubscribe_url.rfind("http://", 0) != 0 &&
                                      c.unsubscribe_url.rfind("https://", 0) != 0) ||
                                     !notify::fits_list_unsubscribe(c.unsubscribe_url))) {
    throw notify::ConfigError("UNSUBSCRIBE_URL=" + c.unsubscribe_url +
                              ": must be an http:// or https:// URL without blanks, control "
                              "characters, '<', '>', ',' or '\"'");
  }
  c.unsubscribe_mailto = env.str("UNSUBSCRIBE_MAILTO", "");
  if (c.unsubscribe_mailto.rfind("mailto:", 0) == 0) c.unsubscribe_mailto.erase(0, 7);
  if (!c.unsubscribe_mailto.empty()) {
    const auto at = c.unsubscribe_mailto.find('@');
    const bool address = at != std::string::npos && at > 0 &&
                         at + 1 < c.unsubscribe_mailto.size() &&
                         c.unsubscribe_mailto.find_first_of("?&%()[];:\\") == std::string::npos &&
                         notify::fits_list_unsubscribe(c.unsubscribe_mailto);
    if (!address) {
      throw notify::ConfigError("UNSUBSCRIBE_MAILTO=" + c.unsubscribe_mailto +
                                ": must be an e-mail address (unsubscribe@example.org)");
    }
  }
  c.unsubscribe_ttl = env.duration("UNSUBSCRIBE_TTL", c.unsubscribe_ttl);
  if (c.unsubscribe_ttl < std::chrono::hours(1)) {
    throw notify::ConfigError(
        "UNSUBSCRIBE_TTL=" + env.optional_str("UNSUBSCRIBE_TTL").value_or("") +
        ": must be at least 1h (mail is read days after it is sent)");
  }
}

}  // namespace

EtlConfig load_config(const notify::Env& env) {
  EtlConfig c;
  c.kafka_bootstrap_servers = env.str("KAFKA_BOOTSTRAP_SERVERS", c.kafka_bootstrap_servers);
  c.events_topic = env.str("NOTIFY_EVENTS_TOPIC", c.events_topic);
  c.group_id = env.str("KAFKA_GROUP_ID", c.group_id);
  c.auto_offset_reset = env.str("KAFKA_AUTO_OFFSET_RESET", c.auto_offset_reset);
  if (c.auto_offset_reset != "earliest" && c.auto_offset_reset != "latest") {
    throw notify::ConfigError("KAFKA_AUTO_OFFSET_RESET=" + c.auto_offset_reset +
                              ": must be earliest or latest");
  }
  // "session.timeout.ms=6000,fetch.wait.max.ms=50": librdkafka checks the names at start-up.
  for (const std::string& item : env.list("KAFKA_CONSUMER_CONFIG")) {
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw notify::ConfigError("KAFKA_CONSUMER_CONFIG: '" + item + "' is not name=value");
    }
    const std::string name = item.substr(0, eq);
    // The ETL stores offsets only past confirmed postings and commits them itself.
    if (name == "enable.auto.offset.store" || name == "enable.auto.commit" ||
        name == "auto.commit.interval.ms") {
      throw notify::ConfigError("KAFKA_CONSUMER_CONFIG: " + name +
                                " cannot be set: offsets are committed by the ETL (see "
                                "KAFKA_COMMIT_INTERVAL)");
    }
    c.consumer_properties[name] = item.substr(eq + 1);
  }
  c.commit_interval = env.duration("KAFKA_COMMIT_INTERVAL", c.commit_interval);
  if (c.commit_interval < std::chrono::milliseconds(1) ||
      c.commit_interval > std::chrono::minutes(1)) {
    throw notify::ConfigError(
        "KAFKA_COMMIT_INTERVAL=" + env.optional_str("KAFKA_COMMIT_INTERVAL").value_or("") +
        ": must be between 1ms and 1m");
  }
  c.rabbitmq_url = env.str("RABBITMQ_URL", c.rabbitmq_url);
  try {
    notify::amqp::Url::parse(c.rabbitmq_url);
  } catch (const std::exception& e) {
    throw notify::ConfigError(std::string("RABBITMQ_URL: ") + e.what());  // names no password
  }
  c.exchange = env.str("RABBITMQ_EXCHANGE", c.exchange);
  c.confirm_window = static_cast<std::size_t>(env.integer(
      "RABBITMQ_CONFIRM_WINDOW", static_cast<std::int64_t>(c.confirm_window), 1, 65535));
  c.auth_url = env.str("AUTH_URL", c.auth_url);
  if (c.auth_url.rfind("http://", 0) != 0 && c.auth_url.rfind("https://", 0) != 0) {
    throw notify::ConfigError("AUTH_URL=" + c.auth_url + ": must start with http:// or https://");
  }
  c.auth_token = env.str("AUTH_TOKEN", "");
  c.auth_timeout = env.duration("AUTH_TIMEOUT", c.auth_timeout);
  c.auth_max_attempts =
      static_cast<int>(env.integer("AUTH_MAX_ATTEMPTS", c.auth_max_attempts, 1, 20));
  c.templates_dir = env.str("TEMPLATES_DIR", c.templates_dir);
  c.public_base_url = env.str("PUBLIC_BASE_URL", c.public_base_url);
  c.dlq_topic = env.str("NOTIFY_EVENTS_DLQ_TOPIC", c.events_topic + ".dlq");
  c.status_topic = notify::trim(env.str("NOTIFY_STATUS_TOPIC", c.status_topic));
  // librdkafka's queue.buffering.max.messages holds at most ten million.
  c.status_buffer = static_cast<std::size_t>(
      env.integer("STATUS_BUFFER", static_cast<std::int64_t>(c.status_buffer), 1, 10000000));
  c.welcome_ttl = env.duration("WELCOME_TTL", c.welcome_ttl);
  c.security_ttl = env.duration("SECURITY_NOTICE_TTL", c.security_ttl);
  c.default_ttl = env.duration("DEFAULT_TTL", c.default_ttl);
  c.reminder_ttl = env.duration("REMINDER_TTL", c.reminder_ttl);
  read_unsubscribe(env, c);
  c.context_url_allowlist = env.url_list("CONTEXT_URL_ALLOWLIST");
  c.webhook_url_allowlist = env.url_list("WEBHOOK_URL_ALLOWLIST");
  c.max_event_bytes = static_cast<std::size_t>(
      env.integer("MAX_EVENT_BYTES", static_cast<std::int64_t>(c.max_event_bytes), 64, 1 << 28));
  c.max_json_depth = static_cast<std::size_t>(
      env.integer("MAX_JSON_DEPTH", static_cast<std::int64_t>(c.max_json_depth), 1, 512));
  c.max_recipients = static_cast<std::size_t>(
      env.integer("MAX_RECIPIENTS", static_cast<std::int64_t>(c.max_recipients), 1, 100000000));
  c.max_context_fetch_bytes = static_cast<std::size_t>(env.integer(
      "MAX_CONTEXT_FETCH_BYTES", static_cast<std::int64_t>(c.max_context_fetch_bytes), 1, 1 << 28));
  c.auth_cache_ttl = env.duration("AUTH_CACHE_TTL", c.auth_cache_ttl);
  c.retry_max_backoff = env.duration("ETL_RETRY_MAX_BACKOFF", c.retry_max_backoff);
  c.log_level = env.str("LOG_LEVEL", c.log_level);
  c.metrics_host = env.str("METRICS_HOST", c.metrics_host);
  c.metrics_port = static_cast<int>(env.integer("METRICS_PORT", c.metrics_port, 0, 65535));
  return c;
}

}  // namespace etl
