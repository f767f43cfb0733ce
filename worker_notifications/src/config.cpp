#include "config.hpp"

#include "notify/amqp.hpp"

namespace worker {

WorkerConfig load_config(const notify::Env& env) {
  WorkerConfig c;
  c.rabbitmq_url = env.str("RABBITMQ_URL", c.rabbitmq_url);
  try {
    notify::amqp::Url::parse(c.rabbitmq_url);
  } catch (const std::exception& e) {
    throw notify::ConfigError("RABBITMQ_URL=" + c.rabbitmq_url + ": " + e.what());
  }
  c.exchange = env.str("RABBITMQ_EXCHANGE", c.exchange);
  c.prefetch = static_cast<std::uint16_t>(env.integer("WORKER_PREFETCH", c.prefetch, 1, 65535));
  c.smtp_host = env.str("SMTP_HOST", c.smtp_host);
  c.smtp_port = static_cast<int>(env.integer("SMTP_PORT", c.smtp_port, 1, 65535));
  c.smtp_from = env.str("SMTP_FROM", c.smtp_from);
  if (c.smtp_from.find('@') == std::string::npos) {
    throw notify::ConfigError("SMTP_FROM=" + c.smtp_from + ": not an email address");
  }
  c.smtp_username = env.str("SMTP_USERNAME", "");
  c.smtp_password = env.str("SMTP_PASSWORD", "");
  c.smtp_timeout = env.duration("SMTP_TIMEOUT", c.smtp_timeout);
  c.transient_delay = env.duration("WORKER_TRANSIENT_DELAY", c.transient_delay);
  c.log_level = env.str("LOG_LEVEL", c.log_level);
  return c;
}

}  // namespace worker
