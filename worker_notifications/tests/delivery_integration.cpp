// The worker on a real RabbitMQ, alone: postings published straight into its exchange, mail
// received by an in-process SMTP sink that can be scripted to fail. Each test has its own
// exchange (so its own queues) and its own sink. Quiet hours are a window of a few seconds
// around now, in UTC, so deferral through the delay queues is seen end to end in seconds.

#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <sstream>
#include <thread>

#include <prometheus/registry.h>
#include <nlohmann/json.hpp>

#include "amqp_edges.hpp"
#include "delivery.hpp"
#include "metrics.hpp"
#include "notify/amqp.hpp"
#include "notify/metrics.hpp"
#include "notify/posting.hpp"
#include "senders/mime_encoding.hpp"
#include "smtp_sink.hpp"
#include "stack.hpp"
#include "worker_fixture.hpp"

using namespace worker::testing;

TEST_CASE("worker: a posting is sent as one multipart mail and acknowledged") {
  Fixture f;
  auto worker = f.start_worker();
  const auto p = f.posting("Welcome aboard");
  f.publish(p);

  INFO("worker log:\n" << tail(worker->log()));
  REQUIRE(f.sink.wait_for_messages(1, 10s));
  REQUIRE(wait_until([&] { return !entries(*worker, "posting sent").empty(); }, 5s));
  std::this_thread::sleep_for(500ms);  // a duplicate would show up now
  CHECK(worker->terminate() == 0);

  const auto mails = f.sink.messages();
  REQUIRE(mails.size() == 1);
  const auto& mail = mails.front();
  CHECK(mail.mail_from == kFrom);
  CHECK(mail.rcpt_to == std::vector<std::string>{kAddress});
  CHECK(mail.header("Subject") == "Welcome aboard");
  // curl wraps the text and HTML alternatives in a multipart/mixed envelope.
  CHECK(mail.header("Content-Type").value_or("").rfind("multipart/", 0) == 0);
  CHECK(mail.body().find("multipart/alternative") != std::string::npos);
  CHECK(mail.body().find("text/plain") != std::string::npos);
  CHECK(mail.body().find("text/html") != std::string::npos);
  CHECK(mail.header("Message-ID").value_or("").find(p.posting_id) != std::string::npos);
  CHECK(posting_id_of(mail) == p.posting_id);
  CHECK(mail.body().find("please confirm") != std::string::npos);
  const auto sent = entries(*worker, "posting sent", {{"posting_id", p.posting_id}});
  CHECK(sent.size() == 1);
  CHECK(f.work_queue_empty());
}

TEST_CASE("worker: SMTP_FROM with a display name: the From header names it, MAIL FROM is bare") {
  Fixture f;
  auto worker = f.start_worker({{"SMTP_FROM", "Zoë's Team, Notify <notifications@example.com>"}});
  f.publish(f.posting("From a named sender"));
  INFO("worker log:\n" << tail(worker->log()));
  REQUIRE(f.sink.wait_for_messages(1, 10s));
  CHECK(worker->terminate() == 0);
  const auto mail = f.sink.messages().front();
  CHECK(mail.mail_from == kFrom);
  // Not ASCII: one RFC 2047 encoded word, the address after it in angle brackets.
  CHECK(mail.header("From") == "=?UTF-8?B?" +
                                   notify::worker::mime::base64_encode("Zoë's Team, Notify") +
                                   "?= <notifications@example.com>");
}

TEST_CASE("worker: the maildev inbox shows the sender's display name") {
  Fixture f;
  const notify::testing::Inbox inbox(Stack::get().value("INBOX_URL"));
  auto worker =
      f.start_worker({{"SMTP_HOST", Stack::get().value("SMTP_HOST")},
                      {"SMTP_PORT", Stack::get().value("SMTP_PORT")},
                      {"SMTP_FROM", "Zoë Benachrichtigungen <notifications@example.com>"}});
  const std::string subject = "Display name " + f.exchange;
  f.publish(f.posting(subject));
  INFO("worker log:\n" << tail(worker->log()));
  nlohmann::json mail;
  const bool arrived = wait_until(
      [&] {
        for (const auto& m : inbox.messages()) {
          if (m.value("subject", "") == subject) {
            mail = m;
            return true;
          }
        }
        return false;
      },
      15s);
  CHECK(worker->terminate() == 0);
  REQUIRE(arrived);
  INFO("mail: " << mail.dump());
  REQUIRE(mail["from"].is_array());
  CHECK(mail["from"][0]["name"] == "Zoë Benachrichtigungen");
  CHECK(mail["from"][0]["address"] == "notifications@example.com");
}

TEST_CASE("worker: an expired posting is dropped, never sent") {
  Fixture f;
  auto worker = f.start_worker();
  auto p = f.posting("Too late");
  p.created_at -= std::chrono::hours(2);
  p.expires_at = now_ms() - std::chrono::minutes(1);
  f.publish(p);

  INFO("worker log:\n" << tail(worker->log()));
  REQUIRE(wait_until(
      [&] {
        return !entries(*worker, "posting dropped",
                        {{"posting_id", p.posting_id}, {"outcome", "expired"}})
                    .empty();
      },
      10s));
  std::this_thread::sleep_for(2s);
  CHECK(f.sink.messages().empty());
  CHECK(f.sink.connections() == 0);
  CHECK(worker->terminate() == 0);
  CHECK(f.work_queue_empty());
  CHECK_FALSE(f.next_dead_letter(300ms));
}

TEST_CASE("worker: quiet hours hold a respect posting until the window ends; bypass goes at once") {
  Fixture f;
  const auto window = window_ending_in(4s);
  auto worker = f.start_worker({{"QUIET_HOURS", window.spec}});
  const auto quiet = f.posting("Your weekly digest", 3, notify::QuietHours::kRespect);
  const auto urgent = f.posting("New sign-in to your account", 9, notify::QuietHours::kBypass);
  f.publish({quiet, urgent});

  INFO("quiet hours " << window.spec << "; worker log:\n" << tail(worker->log()));
  REQUIRE(wait_until([&] { return f.mails_for(urgent.posting_id) == 1; }, 3s));
  CHECK(SysClock::now() < window.end);
  // Until the window ends, only the bypass mail may be there.
  while (SysClock::now() < window.end - 100ms) {
    REQUIRE(f.mails_for(quiet.posting_id) == 0);
    std::this_thread::sleep_for(50ms);
  }
  const auto deferred = entries(*worker, "posting deferred",
                                {{"posting_id", quiet.posting_id}, {"reason", "quiet_hours"}});
  CHECK(deferred.size() == 1);
  REQUIRE(wait_until([&] { return f.mails_for(quiet.posting_id) == 1; }, 8s));
  const auto arrived = SysClock::now();
  CHECK(arrived >= window.end);
  CHECK(arrived < window.end + 3s);
  std::this_thread::sleep_for(500ms);
  CHECK(f.sink.messages().size() == 2);
  CHECK(worker->terminate() == 0);
  CHECK(f.work_queue_empty());
}

TEST_CASE("worker: a deferral survives a worker restart") {
  Fixture f;
  const auto window = window_ending_in(6s);
  auto first = f.start_worker({{"QUIET_HOURS", window.spec}});
  const auto p = f.posting("Digest after restart", 3, notify::QuietHours::kRespect);
  f.publish(p);

  INFO("quiet hours " << window.spec << "; first worker log:\n" << tail(first->log()));
  REQUIRE(wait_until(
      [&] {
        return !entries(*first, "posting deferred", {{"posting_id", p.posting_id}}).empty();
      },
      5s));
  CHECK(first->terminate() == 0);
  CHECK(SysClock::now() < window.end);

  auto second = f.start_worker({{"QUIET_HOURS", window.spec}});
  INFO("second worker log:\n" << tail(second->log()));
  while (SysClock::now() < window.end - 100ms) {
    REQUIRE(f.sink.messages().empty());
    std::this_thread::sleep_for(50ms);
  }
  REQUIRE(wait_until([&] { return f.mails_for(p.posting_id) >= 1; }, 10s));
  CHECK(SysClock::now() >= window.end);
  std::this_thread::sleep_for(1500ms);
  CHECK(f.sink.messages().size() == 1);
  CHECK(second->terminate() == 0);
  CHECK(f.work_queue_empty());
}

TEST_CASE("worker: a deferral survives a RabbitMQ restart") {
  Fixture f;
  // Long enough that the posting comes back from the delay queue, and is deferred once more,
  // after the broker is up again and the worker has reconnected (its backoff reaches 8 s): the
  // first copy then goes to a publisher connection the restart broke, and must not be sent twice.
  const auto window = window_ending_in(24s);
  const std::map<std::string, std::string> env = {{"QUIET_HOURS", window.spec},
                                                  {"DELAY_TIERS", "1s,2s,5s,10s"}};
  auto worker = f.start_worker(env);
  const auto p = f.posting("Digest across a broker restart", 3, notify::QuietHours::kRespect);
  f.publish(p);

  INFO("quiet hours " << window.spec << "; worker log:\n" << tail(worker->log()));
  REQUIRE(wait_until(
      [&] {
        return !entries(*worker, "posting deferred",
                        {{"posting_id", p.posting_id}, {"tier", "10s"}})
                    .empty();
      },
      5s));
  // The posting sits in the 10 s delay queue, held only by the broker: restart it.
  Stack::get().control("restart", "rabbitmq");
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(window.end - SysClock::now());
  INFO("rabbitmq was back " << left.count() << " ms before the window ended");

  REQUIRE(wait_until([&] { return f.mails_for(p.posting_id) >= 1; }, 40s));
  CHECK(SysClock::now() >= window.end);
  std::this_thread::sleep_for(1500ms);
  CHECK(f.sink.messages().size() == 1);
  CHECK(worker->terminate() == 0);
  CHECK(f.work_queue_empty());
}

TEST_CASE("worker: SMTP 451 twice then 250 sends exactly one mail after two retries") {
  Fixture f;
  f.sink.script(SmtpStage::kMail, "451 4.3.0 Try again later", 2);
  auto worker = f.start_worker();
  const auto p = f.posting("Retry me");
  f.publish(p);

  INFO("worker log:\n" << tail(worker->log()));
  REQUIRE(wait_until([&] { return f.mails_for(p.posting_id) >= 1; }, 20s));
  REQUIRE(wait_until([&] { return !entries(*worker, "posting sent").empty(); }, 5s));
  std::this_thread::sleep_for(1s);
  CHECK(f.sink.messages().size() == 1);

  const auto retries =
      entries(*worker, "posting deferred", {{"posting_id", p.posting_id}, {"reason", "retry"}});
  REQUIRE(retries.size() == 2);
  CHECK(retries[0].value("attempts", 0) == 1);
  CHECK(retries[1].value("attempts", 0) == 2);
  CHECK(retries[0].value("last_error", "").find("451") != std::string::npos);
  // Three MAIL FROM commands: two refused, one accepted.
  std::size_t mail_commands = 0;
  for (const auto& c : f.sink.commands()) mail_commands += c.rfind("MAIL FROM", 0) == 0 ? 1 : 0;
  CHECK(mail_commands == 3);
  CHECK(worker->terminate() == 0);
  CHECK(f.work_queue_empty());
  CHECK_FALSE(f.next_dead_letter(300ms));
}

TEST_CASE("worker: SMTP 550 dead-letters the posting with its reason, nothing is sent") {
  Fixture f;
  f.sink.script(SmtpStage::kRcpt, "550 5.1.1 No such user here", 1);
  auto worker = f.start_worker();
  const auto p = f.posting("Nobody home");
  f.publish(p);

  INFO("worker log:\n" << tail(worker->log()));
  auto dead = f.next_dead_letter(10s);
  REQUIRE(dead);
  CHECK(dead->message_id == p.posting_id);
  CHECK(notify::decode_posting(dead->body).posting_id == p.posting_id);
  CHECK(dead->headers["x-dead-reason"] == "permanent_failure");
  CHECK(dead->headers["x-last-error"].find("550") != std::string::npos);
  CHECK(dead->headers["x-attempts"] == "1");
  CHECK(entries(*worker, "posting dead-lettered", {{"posting_id", p.posting_id}}).size() == 1);
  std::this_thread::sleep_for(500ms);
  CHECK(f.sink.messages().empty());
  CHECK(worker->terminate() == 0);
  CHECK(f.work_queue_empty());
  CHECK_FALSE(f.next_dead_letter(300ms));
}

TEST_CASE("worker: an undecodable posting is dead-lettered at once") {
  Fixture f;
  auto worker = f.start_worker();
  notify::amqp::Message garbage;
  garbage.routing_key = "email";
  garbage.body = "not json";
  garbage.message_id = unique_name("garbage");
  f.publish(std::vector<notify::amqp::Message>{garbage});

  INFO("worker log:\n" << tail(worker->log()));
  auto dead = f.next_dead_letter(10s);
  REQUIRE(dead);
  CHECK(dead->body == "not json");
  CHECK(dead->message_id == garbage.message_id);
  CHECK(dead->headers["x-dead-reason"].rfind("undecodable", 0) == 0);
  CHECK(dead->headers["x-attempts"] == "0");
  CHECK(f.sink.connections() == 0);
  CHECK(worker->terminate() == 0);
  CHECK(f.work_queue_empty());
}

TEST_CASE("worker: a priority-9 posting overtakes a backlog") {
  Fixture f;
  std::vector<notify::Posting> backlog;
  for (int i = 0; i < 30; ++i) backlog.push_back(f.posting("Newsletter " + std::to_string(i), 0));
  f.publish(backlog);
  const auto urgent = f.posting("Password reset", 9);
  f.publish(urgent);

  auto worker = f.start_worker({{"WORKER_PREFETCH", "1"}, {"SMTP_CONCURRENCY", "1"}});
  INFO("worker log:\n" << tail(worker->log()));
  REQUIRE(f.sink.wait_for_messages(31, 30s));
  const auto mails = f.sink.messages();
  CHECK((posting_id_of(mails[0]) == urgent.posting_id ||
         posting_id_of(mails[1]) == urgent.posting_id));
  CHECK(f.mails_for(urgent.posting_id) == 1);
  CHECK(worker->terminate() == 0);
  CHECK(f.work_queue_empty());
}

TEST_CASE("worker: two competing workers send every posting exactly once") {
  Fixture f;
  auto a = f.start_worker({{"WORKER_PREFETCH", "5"}});
  auto b = f.start_worker({{"WORKER_PREFETCH", "5"}});
  std::vector<notify::Posting> postings;
  for (int i = 0; i < 40; ++i) postings.push_back(f.posting("Item " + std::to_string(i)));
  f.publish(postings);

  INFO("worker a log:\n" << tail(a->log(), 3000) << "\nworker b log:\n" << tail(b->log(), 3000));
  REQUIRE(f.sink.wait_for_messages(40, 30s));
  std::this_thread::sleep_for(1s);  // duplicates would arrive now
  CHECK(a->terminate() == 0);
  CHECK(b->terminate() == 0);

  std::map<std::string, int> received;
  for (const auto& m : f.sink.messages()) ++received[posting_id_of(m)];
  CHECK(f.sink.messages().size() == 40);
  for (const auto& p : postings) CHECK_MESSAGE(received[p.posting_id] == 1, p.content.subject);
  // Both took part.
  CHECK_FALSE(entries(*a, "posting sent").empty());
  CHECK_FALSE(entries(*b, "posting sent").empty());
  CHECK(entries(*a, "posting sent").size() + entries(*b, "posting sent").size() == 40);
  CHECK(f.work_queue_empty());
}

TEST_CASE("worker: SIGTERM mid-way loses nothing") {
  Fixture f;
  std::vector<notify::Posting> postings;
  for (int i = 0; i < 20; ++i) postings.push_back(f.posting("Batch " + std::to_string(i)));
  f.publish(postings);

  // Throttled to 4 mails a second, the batch takes ~4 s: stop the worker after the first few.
  auto first = f.start_worker({{"MAILS_PER_SECOND", "4"}});
  INFO("first worker log:\n" << tail(first->log(), 3000));
  REQUIRE(f.sink.wait_for_messages(6, 10s));
  CHECK(first->terminate() == 0);
  const auto before = f.sink.messages().size();
  CHECK(before < postings.size());

  auto second = f.start_worker();
  INFO("second worker log:\n" << tail(second->log(), 3000));
  std::set<std::string> expected;
  for (const auto& p : postings) expected.insert(p.posting_id);
  REQUIRE(wait_until(
      [&] {
        std::set<std::string> seen;
        for (const auto& m : f.sink.messages()) seen.insert(posting_id_of(m));
        return seen == expected;
      },
      20s));
  CHECK(second->terminate() == 0);
  CHECK(f.work_queue_empty());
  CHECK(entries(*first, "stopped").size() == 1);
}

TEST_CASE("worker: reconnects by itself after a RabbitMQ restart") {
  Fixture f;
  auto worker = f.start_worker();
  const auto before = f.posting("Before the restart");
  f.publish(before);
  REQUIRE(wait_until([&] { return f.mails_for(before.posting_id) == 1; }, 10s));

  Stack::get().control("restart", "rabbitmq");
  const auto after = f.posting("After the restart");
  f.publish(after);

  INFO("worker log:\n" << tail(worker->log()));
  REQUIRE(wait_until([&] { return f.mails_for(after.posting_id) == 1; }, 40s));
  CHECK(worker->running());
  CHECK(entries(*worker, "rabbitmq connected").size() >= 2);
  CHECK(f.sink.messages().size() == 2);
  CHECK(worker->terminate() == 0);
  CHECK(f.work_queue_empty());
}

namespace {

// The posting ids a sender accepted, read from the test's thread while the loop runs.
struct Accepted {
  std::mutex mutex;
  std::vector<std::string> ids;
  std::vector<std::string> get() {
    std::lock_guard lock(mutex);
    return ids;
  }
};

// A transport with a bug: it throws for some subjects and accepts everything else.
class ThrowingSender final : public worker::ChannelSender {
 public:
  explicit ThrowingSender(std::shared_ptr<Accepted> accepted) : accepted_(std::move(accepted)) {}
  worker::SendResult send(const notify::Posting& p) override {
    if (p.content.subject == "throw") throw std::runtime_error("renderer exploded");
    if (p.content.subject == "out of memory") throw std::bad_alloc();
    if (p.content.subject == "throw anything") throw 42;
    std::lock_guard lock(accepted_->mutex);
    accepted_->ids.push_back(p.posting_id);
    return {worker::SendStatus::kSent, 250, "250 ok"};
  }

 private:
  std::shared_ptr<Accepted> accepted_;
};

}  // namespace

TEST_CASE("worker: a sender that throws is retried, then dead-lettered; the loop lives on") {
  Fixture f;
  worker::WorkerConfig config;
  config.rabbitmq_url = Stack::get().value("RABBITMQ_URL");
  config.exchange = f.exchange;
  config.delay_tiers = {std::chrono::milliseconds(500)};
  config.retry.base = 100ms;
  config.retry.max_attempts = 3;
  config.policy.quiet = worker::parse_quiet_window(kNoQuietHours);
  config.policy.spread = 0ms;
  config.policy.default_timezone = "UTC";
  prometheus::Registry registry;
  worker::WorkerMetrics metrics(registry, config.retry.max_attempts);
  notify::SystemClock clock;
  auto sent = std::make_shared<Accepted>();
  worker::SystemSteadyClock steady;
  worker::DeliveryLoop::Parts parts;
  parts.source = std::make_unique<worker::AmqpDeliverySource>(config, notify::Channel::kEmail, 0);
  parts.republisher = std::make_unique<worker::AmqpRepublisher>(config, notify::Channel::kEmail, 0);
  parts.sender = std::make_unique<ThrowingSender>(sent);
  parts.clock = &clock;
  parts.steady = &steady;
  parts.random01 = worker::system_random01();
  parts.metrics = &metrics;
  worker::DeliveryLoop loop(config, notify::Channel::kEmail, 0, std::move(parts));
  std::atomic<bool> stop{false};
  std::thread thread([&] { loop.run(stop); });
  struct Join {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~Join() {
      stop = true;
      thread.join();
    }
  } join{stop, thread};
  REQUIRE(wait_until([&] { return loop.connected(); }, 20s));
  CHECK_FALSE(loop.not_ready_reason());

  const auto thrower = f.posting("throw");
  const auto oom = f.posting("out of memory");
  const auto anything = f.posting("throw anything");
  const auto good = f.posting("fine");
  f.publish(std::vector<notify::Posting>{thrower, oom, anything, good});

  std::map<std::string, notify::amqp::Delivery> dead;
  while (dead.size() < 3) {
    auto d = f.next_dead_letter(20s);
    REQUIRE(d);
    dead[d->message_id] = *d;
  }
  for (const auto& item : {std::pair{thrower, "exception: renderer exploded"},
                           std::pair{oom, "exception: std::bad_alloc"},
                           std::pair{anything, "exception: unknown exception"}}) {
    const notify::Posting& p = item.first;  // named: CAPTURE cannot take a structured binding
    const char* const error = item.second;
    CAPTURE(p.content.subject);
    REQUIRE(dead.contains(p.posting_id));
    auto& headers = dead[p.posting_id].headers;
    CHECK(headers["x-dead-reason"] == "attempts_exhausted");
    CHECK(headers["x-attempts"] == "3");
    CHECK(headers["x-last-error"] == error);
  }
  // The loop survived every one of them and delivered the good posting.
  CHECK(wait_until([&] { return !sent->get().empty(); }, 10s));
  CHECK(sent->get() == std::vector<std::string>{good.posting_id});
  CHECK(loop.connected());
  const std::string text = notify::render_metrics(registry);
  CHECK(notify::testing::metric_value(
            text, "notify_worker_handling_errors_total{channel=\"email\"}") == 9);
  CHECK_FALSE(f.next_dead_letter(300ms));
}
