// The webhook channel end to end in the worker: a posting in notifications.webhook is POSTed to
// its URL; a receiver answering 503 first gets it again through the retry ladder. A posting
// whose URL is not in the worker's WEBHOOK_URL_ALLOWLIST is dead-lettered, nothing is POSTed.

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include <httplib.h>

#include "notify/amqp.hpp"
#include "notify/posting.hpp"
#include "notify/time.hpp"
#include "stack.hpp"

using namespace std::chrono_literals;
using notify::testing::Process;
using notify::testing::Stack;
using notify::testing::unique_name;
using notify::testing::wait_until;

namespace {

struct Receiver {
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::atomic<int> failures_left{0};
  std::mutex mutex;
  std::vector<std::string> bodies;

  Receiver() {
    server.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
      if (failures_left.fetch_sub(1) > 0) {
        res.status = 503;
        return;
      }
      std::lock_guard lock(mutex);
      bodies.push_back(req.body);
      res.status = 204;
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
    while (!server.is_running()) std::this_thread::sleep_for(1ms);
  }
  ~Receiver() {
    server.stop();
    thread.join();
  }
  std::size_t received() {
    std::lock_guard lock(mutex);
    return bodies.size();
  }
};

notify::amqp::Topology topology_of(const std::string& exchange) {
  notify::amqp::Topology topology;
  topology.exchange = exchange;
  topology.channels = {"email", "webhook"};
  return topology;
}

// A webhook posting to `url`, published to the exchange's webhook queue.
notify::Posting publish_webhook(const Stack& s, const std::string& exchange,
                                const std::string& url) {
  notify::amqp::ConfirmedPublisher::Options o;
  o.connection.url = notify::amqp::Url::parse(s.value("RABBITMQ_URL"));
  o.exchange = exchange;
  o.declare = topology_of(exchange);
  notify::amqp::ConfirmedPublisher publisher(o);
  publisher.connect();

  notify::Posting p;
  p.event_id = unique_name("req");
  p.posting_id = notify::make_posting_id(p.event_id, "u1", "webhook");
  p.event_type = "notification_requested";
  p.channel = notify::Channel::kWebhook;
  p.template_name = "email/generic";
  p.recipient = {"u1", url, "Ann", "UTC", "en"};
  p.content = {"Hello", "text", "<p>html</p>"};
  p.quiet_hours = notify::QuietHours::kBypass;
  p.event_time = notify::SystemClock().now();
  p.created_at = p.event_time;
  p.expires_at = p.event_time + 1h;
  notify::amqp::Message m;
  m.routing_key = "webhook";
  m.body = notify::encode(p);
  m.message_id = p.posting_id;
  publisher.publish(m, [](auto) {});
  REQUIRE(publisher.flush(10s));
  return p;
}

Process start_worker(const Stack& s, const std::string& exchange, const std::string& allowlist) {
  return Process(s.value("BIN_DIR") + "/worker_notifications", {},
                 {{"RABBITMQ_URL", s.value("RABBITMQ_URL")},
                  {"RABBITMQ_EXCHANGE", exchange},
                  {"SMTP_HOST", "127.0.0.1"},
                  {"SMTP_PORT", "1"},
                  {"DELAY_TIERS", "1s,2s"},
                  {"RETRY_BASE_DELAY", "1s"},
                  {"WEBHOOK_CONCURRENCY", "1"},
                  {"LEDGER_URL", s.value("LEDGER_URL")},
                  {"KAFKA_BOOTSTRAP_SERVERS", s.value("KAFKA_BOOTSTRAP_SERVERS")},
                  {"WEBHOOK_URL_ALLOWLIST", allowlist},
                  {"LOG_LEVEL", "debug"}},
                 s.value("STACK_DIR") + "/test-logs/" + exchange + ".log");
}

}  // namespace

TEST_CASE("worker: a webhook posting is POSTed to its URL, retried after a 503") {
  const Stack& s = Stack::get();
  const std::string exchange = unique_name("notifications");
  Receiver receiver;
  receiver.failures_left = 1;
  const std::string origin = "http://127.0.0.1:" + std::to_string(receiver.port);
  const notify::Posting p = publish_webhook(s, exchange, origin + "/hook");

  Process worker = start_worker(s, exchange, origin);
  const bool delivered = wait_until([&] { return receiver.received() == 1; }, 30s);
  INFO("worker log:\n" << worker.log());
  REQUIRE(delivered);
  const auto body = nlohmann::json::parse(receiver.bodies[0]);
  CHECK(body["posting_id"] == p.posting_id);
  CHECK(body["subject"] == "Hello");
  CHECK(worker.log().find("http 503") != std::string::npos);
  CHECK(worker.terminate() == 0);
}

TEST_CASE("worker: a webhook posting to a URL outside WEBHOOK_URL_ALLOWLIST is dead-lettered") {
  const Stack& s = Stack::get();
  const std::string exchange = unique_name("notifications");
  Receiver receiver;
  const std::string url = "http://127.0.0.1:" + std::to_string(receiver.port) + "/hook";
  const notify::Posting p = publish_webhook(s, exchange, url);

  // Another port of the same host: not this receiver.
  Process worker = start_worker(s, exchange, "http://127.0.0.1:1");
  notify::amqp::Consumer::Options o;
  o.connection.url = notify::amqp::Url::parse(s.value("RABBITMQ_URL"));
  o.queue = topology_of(exchange).dead_letter_queue_for("webhook");
  o.prefetch = 10;
  o.declare = topology_of(exchange);
  notify::amqp::Consumer dead_letters(o);
  dead_letters.connect();
  auto dead = dead_letters.next(30s);
  INFO("worker log:\n" << worker.log());
  REQUIRE(dead);
  dead_letters.ack(dead->delivery_tag);
  CHECK(dead->message_id == p.posting_id);
  CHECK(dead->headers["x-dead-reason"] == "permanent_failure");
  CHECK(dead->headers["x-last-error"].find("webhook URL not allowed by WEBHOOK_URL_ALLOWLIST") !=
        std::string::npos);
  CHECK(dead->headers["x-attempts"] == "1");
  CHECK(receiver.received() == 0);
  CHECK(worker.terminate() == 0);
}
