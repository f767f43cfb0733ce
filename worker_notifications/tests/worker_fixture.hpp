#pragma once
// The worker's integration tests on a real RabbitMQ and Redis: one exchange (so its own queues)
// and one in-process SMTP sink per test, workers started as child processes with the stack's
// ledger, postings published straight into the exchange, and the worker's JSON log read back.

#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "notify/amqp.hpp"
#include "notify/posting.hpp"
#include "smtp_sink.hpp"
#include "stack.hpp"

namespace worker::testing {

using namespace std::chrono_literals;
using notify::testing::Process;
using notify::testing::SmtpSink;
using notify::testing::SmtpStage;
using notify::testing::Stack;
using notify::testing::unique_name;
using notify::testing::wait_until;
using SysClock = std::chrono::system_clock;

constexpr const char* kAddress = "ann@example.com";
constexpr const char* kFrom = "notifications@example.com";

inline notify::TimePoint now_ms() {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(SysClock::now());
}

// "HH:MM:SS" of a UTC instant, wrapping at midnight.
inline std::string time_of_day(std::chrono::sys_seconds t) {
  const long long s = ((t.time_since_epoch().count() % 86400) + 86400) % 86400;
  char buf[16];
  std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  return buf;
}

// A QUIET_HOURS window (UTC) that contains now and ends `ahead` from now, on a whole second.
struct QuietWindow {
  std::string spec;
  SysClock::time_point end;
};
inline QuietWindow window_ending_in(std::chrono::seconds ahead) {
  const auto now = SysClock::now();
  const auto end = std::chrono::ceil<std::chrono::seconds>(now) + ahead;
  const auto start = std::chrono::floor<std::chrono::seconds>(now) - 60s;
  return {time_of_day(start) + "-" + time_of_day(end), end};
}

// No quiet hours at all (start == end), so the real time of day never defers a test's posting.
constexpr const char* kNoQuietHours = "00:00-00:00";

inline std::string tail(const std::string& text, std::size_t n = 6000) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

// The worker's JSON log lines with that msg and, for each given field, that value.
inline std::vector<nlohmann::json> entries(const Process& worker, const std::string& msg,
                                           const std::map<std::string, std::string>& fields = {}) {
  std::vector<nlohmann::json> found;
  std::istringstream in(worker.log());
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || j.value("msg", "") != msg) continue;
    bool match = true;
    for (const auto& [key, value] : fields) {
      if (!j.contains(key)) {
        match = false;
      } else if (j[key].is_string()) {
        match = match && j[key].get<std::string>() == value;
      } else {
        match = match && j[key].dump() == value;
      }
    }
    if (match) found.push_back(j);
  }
  return found;
}

inline std::string posting_id_of(const notify::testing::SinkMessage& m) {
  return m.header("X-Notify-Posting-Id").value_or("");
}

struct Fixture {
  std::string exchange = unique_name("worker");
  // The worker's status events go to a topic of this test's own on the stack's Kafka.
  std::string status_topic = unique_name("worker_status");
  SmtpSink sink;
  int workers_started = 0;

  notify::amqp::Topology topology() const {
    notify::amqp::Topology t;
    t.exchange = exchange;
    return t;
  }

  notify::amqp::ConnectionOptions connection() const {
    notify::amqp::ConnectionOptions o;
    o.url = notify::amqp::Url::parse(Stack::get().value("RABBITMQ_URL"));
    o.connection_name = "worker_integration";
    return o;
  }

  std::map<std::string, std::string> env() const {
    return {{"RABBITMQ_URL", Stack::get().value("RABBITMQ_URL")},
            {"RABBITMQ_EXCHANGE", exchange},
            {"SMTP_HOST", sink.host()},
            {"SMTP_PORT", std::to_string(sink.port())},
            {"SMTP_FROM", kFrom},
            {"SMTP_TIMEOUT", "5s"},
            {"DELAY_TIERS", "1s,2s,5s"},
            {"RETRY_BASE_DELAY", "1s"},
            {"QUIET_HOURS", kNoQuietHours},
            {"QUIET_HOURS_SPREAD", "0"},
            {"DEFAULT_TIMEZONE", "UTC"},
            {"LOG_LEVEL", "debug"},
            {"LEDGER_URL", Stack::get().value("LEDGER_URL")},
            {"KAFKA_BOOTSTRAP_SERVERS", Stack::get().value("KAFKA_BOOTSTRAP_SERVERS")},
            {"NOTIFY_STATUS_TOPIC", status_topic}};
  }

  // Starts a worker with the fixture's environment overridden by `overrides`, and waits until it
  // consumes (so what a test publishes next is seen by a running worker).
  std::unique_ptr<Process> start_worker(const std::map<std::string, std::string>& overrides = {}) {
    auto e = env();
    for (const auto& [k, v] : overrides) e[k] = v;
    const Stack& s = Stack::get();
    auto worker = std::make_unique<Process>(s.value("BIN_DIR") + "/worker_notifications",
                                            std::vector<std::string>{}, e,
                                            s.value("STACK_DIR") + "/test-logs/" + exchange + "-" +
                                                std::to_string(++workers_started) + ".log");
    const bool connected =
        wait_until([&] { return !entries(*worker, "rabbitmq connected").empty(); }, 20s);
    INFO("worker log:\n" << tail(worker->log()));
    REQUIRE(connected);
    return worker;
  }

  notify::Posting posting(const std::string& subject, int priority = 5,
                          notify::QuietHours quiet = notify::QuietHours::kBypass) const {
    const auto now = now_ms();
    notify::Posting p;
    p.event_id = unique_name("event");
    p.posting_id = notify::make_posting_id(p.event_id, kAddress, "email");
    p.event_type = "user_signed_up";
    p.source = "auth";
    p.event_time = now;
    p.channel = notify::Channel::kEmail;
    p.template_name = "user_signed_up";
    p.recipient = {"user-1", kAddress, "Ann Example", "UTC", "en"};
    p.content = {subject, "Hello Ann,\nplease confirm.", "<p>Hello Ann, please confirm.</p>"};
    p.priority = priority;
    p.quiet_hours = quiet;
    p.created_at = now;
    p.expires_at = now + std::chrono::hours(1);
    return p;
  }

  static notify::amqp::Message message_of(const notify::Posting& p) {
    notify::amqp::Message m;
    m.routing_key = "email";
    m.body = notify::encode(p);
    m.message_id = p.posting_id;
    m.priority = static_cast<std::uint8_t>(p.priority);
    return m;
  }

  // Publishes with confirms into the exchange; every message must reach the work queue. Retries
  // the connection for a while, as the broker may just have restarted.
  void publish(const std::vector<notify::amqp::Message>& messages) const {
    notify::amqp::ConfirmedPublisher::Options o;
    o.connection = connection();
    o.exchange = exchange;
    o.declare = topology();
    notify::amqp::ConfirmedPublisher publisher(o);
    std::string last_error;
    const bool connected = wait_until(
        [&] {
          try {
            publisher.connect();
            return true;
          } catch (const notify::amqp::Error& e) {
            last_error = e.what();
            std::this_thread::sleep_for(250ms);
            return false;
          }
        },
        30s);
    INFO("last connection error: " << last_error);
    REQUIRE(connected);
    std::size_t acked = 0, returned = 0;
    for (const auto& m : messages) {
      publisher.publish(m, [&](notify::amqp::ConfirmedPublisher::Result r) {
        ++(r == notify::amqp::ConfirmedPublisher::Result::kAcked ? acked : returned);
      });
    }
    REQUIRE(publisher.flush(10s));
    REQUIRE(returned == 0);
    REQUIRE(acked == messages.size());
  }
  void publish(const std::vector<notify::Posting>& postings) const {
    std::vector<notify::amqp::Message> messages;
    for (const auto& p : postings) messages.push_back(message_of(p));
    publish(messages);
  }
  void publish(const notify::Posting& p) const { publish(std::vector<notify::Posting>{p}); }

  std::unique_ptr<notify::amqp::Consumer> consumer(const std::string& queue) const {
    notify::amqp::Consumer::Options o;
    o.connection = connection();
    o.queue = queue;
    o.prefetch = 10;
    o.declare = topology();
    auto c = std::make_unique<notify::amqp::Consumer>(o);
    c->connect();
    return c;
  }

  // With no worker running: nothing ready and nothing unacknowledged in the work queue.
  bool work_queue_empty() const {
    auto c = consumer(topology().queue_for("email"));
    if (auto d = c->next(500ms)) {
      c->reject(d->delivery_tag, /*requeue=*/true);
      return false;
    }
    return true;
  }

  // The next dead letter (acknowledged), or nothing within the timeout.
  std::optional<notify::amqp::Delivery> next_dead_letter(std::chrono::milliseconds timeout) const {
    auto c = consumer(topology().dead_letter_queue_for("email"));
    auto d = c->next(timeout);
    if (d) c->ack(d->delivery_tag);
    return d;
  }

  std::size_t mails_for(const std::string& posting_id) const {
    std::size_t n = 0;
    for (const auto& m : sink.messages()) n += posting_id_of(m) == posting_id ? 1 : 0;
    return n;
  }
};

}  // namespace worker::testing
