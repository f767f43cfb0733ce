#include "delivery.hpp"

#include <thread>

#include "notify/log.hpp"

namespace worker {
namespace {

using namespace std::chrono_literals;

notify::amqp::Consumer::Options consumer_options(const WorkerConfig& c) {
  notify::amqp::Consumer::Options o;
  o.connection.url = notify::amqp::Url::parse(c.rabbitmq_url);
  o.connection.connection_name = "worker_notifications";
  notify::amqp::Topology topology;
  topology.exchange = c.exchange;
  o.queue = topology.queue_for("email");
  o.prefetch = c.prefetch;
  o.declare = topology;
  return o;
}

notify::worker::SmtpOptions smtp_options(const WorkerConfig& c) {
  notify::worker::SmtpOptions o;
  o.host = c.smtp_host;
  o.port = c.smtp_port;
  o.from = c.smtp_from;
  o.username = c.smtp_username;
  o.password = c.smtp_password;
  o.timeout = c.smtp_timeout;
  return o;
}

// Sleeps in short steps so that SIGTERM is not kept waiting.
void pause_for(std::chrono::milliseconds total, const std::atomic<bool>& stop) {
  const auto until = std::chrono::steady_clock::now() + total;
  while (!stop.load() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(50ms);
}

}  // namespace

std::string message_id_for(const std::string& posting_id, const std::string& from) {
  auto at = from.rfind('@');
  std::string domain = at == std::string::npos ? "localhost" : from.substr(at + 1);
  while (!domain.empty() && domain.back() == '>') domain.pop_back();
  return posting_id + "@" + (domain.empty() ? "localhost" : domain);
}

Email to_email(const notify::Posting& p, const std::string& from) {
  Email e;
  e.from = from;
  e.to = p.recipient.address;
  e.to_name = p.recipient.name;
  e.subject = p.content.subject;
  e.text = p.content.text;
  e.html = p.content.html;
  e.message_id = message_id_for(p.posting_id, from);
  e.extra_headers = {{"X-Notify-Posting-Id", p.posting_id}, {"X-Notify-Template", p.template_name}};
  return e;
}

Action action_for(const SendResult& result) {
  switch (result.status) {
    case SendStatus::kSent: return Ack{"sent"};
    case SendStatus::kTransient:
      return Requeue{"smtp " + std::to_string(result.smtp_code) + ": " + result.detail};
    case SendStatus::kPermanent:
      return DeadLetter{"smtp " + std::to_string(result.smtp_code) + ": " + result.detail};
  }
  return Requeue{"unknown send status"};
}

DeliveryLoop::DeliveryLoop(const WorkerConfig& config)
    : config_(config), consumer_(consumer_options(config)), sender_(smtp_options(config)) {}

void DeliveryLoop::connect_with_backoff(const std::atomic<bool>& stop) {
  auto backoff = 500ms;
  while (!stop.load()) {
    try {
      consumer_.connect();
      notify::log::info("rabbitmq connected", {{"queue", "email"}, {"prefetch", config_.prefetch}});
      return;
    } catch (const notify::amqp::Error& e) {
      notify::log::warn("rabbitmq unavailable", {{"error", e.what()}, {"retry_in_ms", backoff.count()}});
      pause_for(backoff, stop);
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, 10s);
    }
  }
}

void DeliveryLoop::run(const std::atomic<bool>& stop) {
  while (!stop.load()) {
    if (!consumer_.connected()) {
      connect_with_backoff(stop);
      continue;
    }
    try {
      if (auto delivery = consumer_.next(200ms)) handle(*delivery);
    } catch (const notify::amqp::Error& e) {
      // Unacked deliveries go back to the queue on the broker's side; we reconnect.
      notify::log::warn("rabbitmq connection lost", {{"error", e.what()}});
      consumer_.disconnect();
    }
  }
  // Prefetched deliveries not yet handled return to the queue when the connection closes.
  consumer_.disconnect();
  notify::log::info("stopped");
}

void DeliveryLoop::handle(const notify::amqp::Delivery& delivery) {
  notify::Posting posting;
  try {
    posting = notify::decode_posting(delivery.body);
  } catch (const notify::PostingError& e) {
    notify::log::error("posting dead-lettered",
                       {{"message_id", delivery.message_id}, {"reason", e.what()}});
    consumer_.reject(delivery.delivery_tag, /*requeue=*/false);
    return;
  }
  const SendResult result = sender_.send(to_email(posting, config_.smtp_from));
  const Action action = action_for(result);
  if (std::holds_alternative<Ack>(action)) {
    consumer_.ack(delivery.delivery_tag);
    notify::log::info("posting sent", {{"posting_id", posting.posting_id},
                                       {"event_id", posting.event_id},
                                       {"template", posting.template_name},
                                       {"smtp_code", result.smtp_code}});
  } else if (const auto* dead = std::get_if<DeadLetter>(&action)) {
    consumer_.reject(delivery.delivery_tag, /*requeue=*/false);
    notify::log::error("posting dead-lettered",
                       {{"posting_id", posting.posting_id}, {"reason", dead->reason}});
  } else {
    const auto& retry = std::get<Requeue>(action);
    notify::log::warn("send failed, will retry", {{"posting_id", posting.posting_id},
                                                  {"reason", retry.reason},
                                                  {"retry_in_ms", config_.transient_delay.count()}});
    // Hold the delivery for a while instead of requeueing at once: no hot loop against a
    // failing server. The consumer keeps its heartbeats since the pause stays short.
    std::this_thread::sleep_for(config_.transient_delay);
    consumer_.reject(delivery.delivery_tag, /*requeue=*/true);
  }
}

}  // namespace worker
