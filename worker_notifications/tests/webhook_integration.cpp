// The webhook channel end to end in the worker: a posting in notifications.webhook is POSTed to
// its URL; a receiver answering 503 first gets it again through the retry ladder.

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

}  // namespace

TEST_CASE("worker: a webhook posting is POSTed to its URL, retried after a 503") {
  const Stack& s = Stack::get();
  const std::string exchange = unique_name("notifications");
  Receiver receiver;
  receiver.failures_left = 1;

  notify::amqp::Topology topology;
  topology.exchange = exchange;
  topology.channels = {"email", "webhook"};
  notify::amqp::ConfirmedPublisher::Options o;
  o.connection.url = notify::amqp::Url::parse(s.value("RABBITMQ_URL"));
  o.exchange = exchange;
  o.declare = topology;
  notify::amqp::ConfirmedPublisher publisher(o);
  publisher.connect();

  notify::Posting p;
  p.event_id = unique_name("req");
  p.posting_id = notify::make_posting_id(p.event_id, "u1", "webhook");
  p.event_type = "notification_requested";
  p.channel = "webhook";
  p.template_name = "email/generic";
  p.recipient = {"u1", "http://127.0.0.1:" + std::to_string(receiver.port) + "/hook", "Ann", "UTC", "en"};
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

  Process worker(s.value("BIN_DIR") + "/worker_notifications", {},
                 {{"RABBITMQ_URL", s.value("RABBITMQ_URL")},
                  {"RABBITMQ_EXCHANGE", exchange},
                  {"SMTP_HOST", "127.0.0.1"},
                  {"SMTP_PORT", "1"},
                  {"DELAY_TIERS", "1s,2s"},
                  {"RETRY_BASE_DELAY", "1s"},
                  {"WEBHOOK_CONCURRENCY", "1"},
                  {"LOG_LEVEL", "debug"}},
                 s.value("STACK_DIR") + "/test-logs/" + exchange + ".log");
  const bool delivered = wait_until([&] { return receiver.received() == 1; }, 30s);
  INFO("worker log:\n" << worker.log());
  REQUIRE(delivered);
  const auto body = nlohmann::json::parse(receiver.bodies[0]);
  CHECK(body["posting_id"] == p.posting_id);
  CHECK(body["subject"] == "Hello");
  CHECK(worker.log().find("http 503") != std::string::npos);
  CHECK(worker.terminate() == 0);
}
