// The worker's operability endpoints on a real RabbitMQ: /healthz, /readyz once every delivery
// loop is connected, and /metrics counting sends, retries and expiries with their labels. Mail
// goes to an in-process SMTP sink scripted to refuse once.

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include <httplib.h>

#include "notify/amqp.hpp"
#include "notify/posting.hpp"
#include "smtp_sink.hpp"
#include "stack.hpp"

using namespace std::chrono_literals;
using notify::testing::free_port;
using notify::testing::http_status;
using notify::testing::metric_value;
using notify::testing::Process;
using notify::testing::scrape_metrics;
using notify::testing::SmtpSink;
using notify::testing::SmtpStage;
using notify::testing::Stack;
using notify::testing::unique_name;
using notify::testing::wait_until;

namespace {

constexpr const char* kRecipient = "ann.metrics@example.com";

notify::TimePoint now_ms() {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

std::string tail(const std::string& text, std::size_t n = 6000) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

struct Fixture {
  std::string exchange = unique_name("worker_metrics");
  SmtpSink sink;
  int port = free_port();

  notify::amqp::Topology topology() const {
    notify::amqp::Topology t;
    t.exchange = exchange;
    return t;
  }

  std::unique_ptr<Process> start_worker(
      const std::string& rabbitmq_url,
      const std::map<std::string, std::string>& overrides = {}) const {
    const Stack& s = Stack::get();
    std::map<std::string, std::string> env = {
        {"RABBITMQ_URL", rabbitmq_url},
        {"RABBITMQ_EXCHANGE", exchange},
        {"SMTP_HOST", sink.host()},
        {"SMTP_PORT", std::to_string(sink.port())},
        {"SMTP_FROM", "notifications@example.com"},
        {"SMTP_TIMEOUT", "5s"},
        {"LEDGER_URL", s.value("LEDGER_URL")},
        {"KAFKA_BOOTSTRAP_SERVERS", s.value("KAFKA_BOOTSTRAP_SERVERS")},
        {"DELAY_TIERS", "1s,2s,5s"},
        {"RETRY_BASE_DELAY", "1s"},
        {"RETRY_MAX_ATTEMPTS", "4"},
        {"QUIET_HOURS", "00:00-00:00"},
        {"QUIET_HOURS_SPREAD", "0"},
        {"DEFAULT_TIMEZONE", "UTC"},
        {"METRICS_HOST", "127.0.0.1"},
        {"METRICS_PORT", std::to_string(port)},
        {"LOG_LEVEL", "info"}};
    for (const auto& [name, value] : overrides) env[name] = value;
    return std::make_unique<Process>(s.value("BIN_DIR") + "/worker_notifications",
                                     std::vector<std::string>{}, env,
                                     s.value("STACK_DIR") + "/test-logs/" + exchange + ".log");
  }

  notify::Posting posting(int priority, notify::TimePoint expires_at) const {
    const auto now = now_ms();
    notify::Posting p;
    p.event_id = unique_name("event");
    p.posting_id = notify::make_posting_id(p.event_id, kRecipient, "email");
    p.event_type = "user_signed_up";
    p.source = "auth";
    p.event_time = now - 2s;  // the event happened a little before
    p.channel = notify::Channel::kEmail;
    p.template_name = "email/welcome";
    p.recipient = {"user-1", kRecipient, "Ann Example", "UTC", "en"};
    p.content = {"Welcome", "Hello Ann.", "<p>Hello Ann.</p>"};
    p.priority = priority;
    p.quiet_hours = notify::QuietHours::kBypass;
    p.created_at = now;
    p.expires_at = expires_at;
    return p;
  }

  void publish(const std::vector<notify::Posting>& postings) const {
    notify::amqp::ConfirmedPublisher::Options o;
    o.connection.url = notify::amqp::Url::parse(Stack::get().value("RABBITMQ_URL"));
    o.exchange = exchange;
    o.declare = topology();
    notify::amqp::ConfirmedPublisher publisher(o);
    publisher.connect();
    std::size_t acked = 0;
    for (const auto& p : postings) {
      notify::amqp::Message m;
      m.routing_key = "email";
      m.body = notify::encode(p);
      m.message_id = p.posting_id;
      m.priority = static_cast<std::uint8_t>(p.priority);
      publisher.publish(m, [&](notify::amqp::ConfirmedPublisher::Result r) {
        if (r == notify::amqp::ConfirmedPublisher::Result::kAcked) ++acked;
      });
    }
    REQUIRE(publisher.flush(10s));
    REQUIRE(acked == postings.size());
  }
};

}  // namespace

TEST_CASE("worker metrics: ready once connected; sent, failed, retried and expired counted") {
  Fixture f;
  // The first RCPT is greylisted, quoting the address as real servers do: a transient failure.
  f.sink.script(SmtpStage::kRcpt,
                std::string("451 4.7.1 <") + kRecipient + ">: Recipient address greylisted", 1);
  auto worker = f.start_worker(Stack::get().value("RABBITMQ_URL"));
  INFO("worker log:\n" << tail(worker->log()));

  REQUIRE(wait_until([&] { return http_status(f.port, "/healthz") == 200; }, 10s));
  REQUIRE(wait_until([&] { return http_status(f.port, "/readyz") == 200; }, 20s));

  const auto sent = f.posting(7, now_ms() + 1h);
  const auto expired = f.posting(3, now_ms() - 1s);
  f.publish({sent, expired});
  REQUIRE(f.sink.wait_for_messages(1, 30s));

  const std::string sent_series =
      "notify_worker_postings_total{channel=\"email\",outcome=\"sent\",priority=\"7\","
      "template=\"email/welcome\"}";
  const std::string e2e_count = "notify_worker_end_to_end_seconds_count{channel=\"email\"}";
  std::string text;
  const bool counted = wait_until(
      [&] {
        text = scrape_metrics(f.port);
        return metric_value(text, sent_series) == 1.0 && metric_value(text, e2e_count) == 1.0;
      },
      10s);
  INFO("metrics:\n" << text);
  CHECK(counted);
  CHECK(metric_value(text,
                     "notify_worker_postings_total{channel=\"email\",outcome=\"failed\","
                     "priority=\"7\",template=\"email/welcome\"}") == 1.0);
  CHECK(metric_value(text,
                     "notify_worker_postings_total{channel=\"email\",outcome=\"expired\","
                     "priority=\"3\",template=\"email/welcome\"}") == 1.0);
  CHECK(metric_value(text, "notify_worker_retries_total{attempt=\"1\",channel=\"email\"}") == 1.0);
  CHECK(metric_value(text, "notify_worker_send_seconds_count{channel=\"email\"}") == 2.0);
  // The event was two seconds old when the mail was accepted, after a retry a second later.
  CHECK(metric_value(text, "notify_worker_end_to_end_seconds_bucket{channel=\"email\",le=\"1\"}") ==
        0.0);
  CHECK(metric_value(
            text, "notify_worker_end_to_end_seconds_bucket{channel=\"email\",le=\"60\"}") == 1.0);

  // The greylisting reply was logged at info level with the address masked.
  const std::string log = worker->log();
  CHECK(log.find("greylisted") != std::string::npos);
  CHECK(log.find("a***@example.com") != std::string::npos);
  CHECK(log.find(kRecipient) == std::string::npos);

  CHECK(worker->terminate() == 0);
  CHECK(http_status(f.port, "/healthz") == 0);
}

TEST_CASE("worker metrics: alive but not ready while RabbitMQ is unreachable; counters at zero") {
  Fixture f;
  auto worker =
      f.start_worker("amqp://guest:guest@127.0.0.1:" + std::to_string(free_port()) + "/%2f");
  INFO("worker log:\n" << tail(worker->log()));
  REQUIRE(wait_until([&] { return http_status(f.port, "/healthz") == 200; }, 10s));
  CHECK(wait_until([&] { return worker->log().find("rabbitmq unavailable") != std::string::npos; },
                   10s));
  CHECK(http_status(f.port, "/readyz") == 503);
  // Before any delivery, the series alerts name are there at zero.
  const std::string text = scrape_metrics(f.port);
  INFO("metrics:\n" << text);
  for (const char* channel : {"email", "webhook"}) {
    const std::string c = std::string("channel=\"") + channel + "\"";
    for (const char* attempt : {"1", "2", "3", "4"}) {
      CHECK(metric_value(text, std::string("notify_worker_retries_total{attempt=\"") + attempt +
                                   "\"," + c + "}") == 0.0);
    }
    CHECK(metric_value(text, "notify_worker_amqp_refusals_total{" + c + ",code=\"403\"}") == 0.0);
    CHECK(metric_value(text, "notify_worker_postings_total{" + c +
                                 ",outcome=\"dead_lettered\",priority=\"unknown\","
                                 "template=\"unknown\"}") == 0.0);
    CHECK(metric_value(text, "notify_worker_ledger_failures_total{" + c + "}") == 0.0);
  }
  CHECK(worker->terminate() == 0);
}

TEST_CASE(
    "worker metrics: Kafka unreachable: mail goes out, status events past the buffer counted") {
  Fixture f;
  // One status event may wait; Kafka is a port nobody listens on.
  auto worker =
      f.start_worker(Stack::get().value("RABBITMQ_URL"),
                     {{"KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:" + std::to_string(free_port())},
                      {"STATUS_BUFFER", "1"}});
  INFO("worker log:\n" << tail(worker->log()));
  REQUIRE(wait_until([&] { return http_status(f.port, "/readyz") == 200; }, 20s));
  const std::string dropped = "notify_worker_status_events_lost_total{cause=\"dropped\"}";
  const std::string failed = "notify_worker_status_events_lost_total{cause=\"failed\"}";
  CHECK(metric_value(scrape_metrics(f.port), dropped) == 0.0);

  f.publish(
      {f.posting(5, now_ms() + 1h), f.posting(5, now_ms() + 1h), f.posting(5, now_ms() + 1h)});
  // Delivery does not wait for Kafka.
  REQUIRE(f.sink.wait_for_messages(3, 15s));
  std::string text;
  CHECK(wait_until(
      [&] {
        text = scrape_metrics(f.port);
        return metric_value(text, dropped) == 2.0;
      },
      5s));
  INFO("metrics:\n" << text);
  CHECK(metric_value(text, failed) == 0.0);  // the one buffered still waits
  CHECK(worker->log().find("kafka buffer full: message dropped") != std::string::npos);

  // Stopping waits a bounded time for the buffered one, then says it is lost.
  const auto stopping = std::chrono::steady_clock::now();
  CHECK(worker->terminate() == 0);
  CHECK(std::chrono::steady_clock::now() - stopping < 9s);
  CHECK(worker->log().find("kafka buffered producer closed with messages unsent: lost") !=
        std::string::npos);
}
