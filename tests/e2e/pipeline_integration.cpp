// End to end on real brokers: a sign-up event produced into Kafka becomes a welcome email in
// the web inbox, through etl_notifications, RabbitMQ and worker_notifications.

#include <doctest/doctest.h>

#include <signal.h>

#include <fstream>
#include <random>
#include <thread>

#include "notify/amqp.hpp"
#include "notify/kafka.hpp"
#include "notify/posting.hpp"
#include "notify/time.hpp"
#include "stack.hpp"

using namespace std::chrono_literals;
using notify::testing::Inbox;
using notify::testing::Process;
using notify::testing::Stack;
using notify::testing::unique_name;
using notify::testing::wait_until;

namespace {

struct Names {
  std::string topic = unique_name("notify_events");
  std::string group = unique_name("etl");
  std::string exchange = unique_name("notifications");
};

nlohmann::json fixture_user(std::size_t index) {
  std::ifstream in(Stack::get().value("SOURCE_DIR") + "/dev/users.json");
  return nlohmann::json::parse(in).at(index);
}

std::map<std::string, std::string> etl_env(const Names& n) {
  const Stack& s = Stack::get();
  return {{"KAFKA_BOOTSTRAP_SERVERS", s.value("KAFKA_BOOTSTRAP_SERVERS")},
          {"NOTIFY_EVENTS_TOPIC", n.topic},
          {"KAFKA_GROUP_ID", n.group},
          {"RABBITMQ_URL", s.value("RABBITMQ_URL")},
          {"RABBITMQ_EXCHANGE", n.exchange},
          {"AUTH_URL", s.value("AUTH_URL")},
          {"TEMPLATES_DIR", s.value("SOURCE_DIR") + "/templates"},
          {"PUBLIC_BASE_URL", "https://example.org"},
          // A killed member leaves the group after 6 s, not 45; the mock broker holds empty
          // fetches for the full wait, so keep it short.
          {"KAFKA_CONSUMER_CONFIG",
           "session.timeout.ms=6000,heartbeat.interval.ms=500,fetch.wait.max.ms=50"},
          {"LOG_LEVEL", "debug"}};
}

std::map<std::string, std::string> worker_env(const Names& n) {
  const Stack& s = Stack::get();
  // The stack's Redis as the delivery ledger, as in production: postings of different tests
  // never share an id (each test has its own topic), so one database serves them all.
  return {{"RABBITMQ_URL", s.value("RABBITMQ_URL")},
          {"RABBITMQ_EXCHANGE", n.exchange},
          {"SMTP_HOST", s.value("SMTP_HOST")},
          {"SMTP_PORT", s.value("SMTP_PORT")},
          {"SMTP_FROM", "notifications@example.org"},
          {"LEDGER_URL", s.value("LEDGER_URL")},
          {"KAFKA_BOOTSTRAP_SERVERS", s.value("KAFKA_BOOTSTRAP_SERVERS")},
          {"LOG_LEVEL", "debug"}};
}

std::unique_ptr<Process> start(const std::string& binary,
                               const std::map<std::string, std::string>& env,
                               const std::string& log_name) {
  const Stack& s = Stack::get();
  return std::make_unique<Process>(s.value("BIN_DIR") + "/" + binary, std::vector<std::string>{},
                                   env, s.value("STACK_DIR") + "/" + log_name + ".log");
}

std::string random_link() {
  static std::mt19937_64 rng{std::random_device{}()};
  return "/s/" + std::to_string(rng());
}

// The Auth service's message exactly as it emits it today.
notify::kafka::Delivery emit_signup(const std::string& topic, const nlohmann::json& user,
                                    const std::string& link) {
  notify::kafka::Producer producer(Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"));
  const nlohmann::json value = {{"id", user["id"]},
                                {"event_type", "user_signed_up"},
                                {"priority", "immediate"},
                                {"from_service", "auth"},
                                {"details", {{"email", user["email"]}, {"confirm_link", link}}}};
  return producer.produce(topic, user["id"].get<std::string>() + "+user_signed_up", value.dump());
}

std::vector<nlohmann::json> mails_with(const Inbox& inbox, const std::string& needle) {
  std::vector<nlohmann::json> found;
  for (const auto& m : inbox.messages()) {
    if (m.value("html", "").find(needle) != std::string::npos) found.push_back(m);
  }
  return found;
}

}  // namespace

TEST_CASE("a user who signs up gets a welcome email in the inbox") {
  const Names names;
  const auto user = fixture_user(1);  // Zoë, locale de: a UTF-8 subject in German
  const std::string link = random_link();
  const Inbox inbox(Stack::get().value("INBOX_URL"));

  auto etl = start("etl_notifications", etl_env(names), names.group);
  auto worker = start("worker_notifications", worker_env(names), names.group + "-worker");
  const auto delivery = emit_signup(names.topic, user, link);

  std::vector<nlohmann::json> mails;
  const bool arrived = wait_until([&] { return !(mails = mails_with(inbox, link)).empty(); }, 60s);
  INFO("etl log:\n" << etl->log() << "\nworker log:\n" << worker->log());
  REQUIRE(arrived);
  const auto& mail = mails.front();
  CHECK(mail["subject"].get<std::string>().rfind("Willkommen, Zoë!", 0) == 0);
  CHECK(mail["to"][0]["address"] == user["email"]);
  CHECK(mail["html"].get<std::string>().find("https://example.org" + link) != std::string::npos);
  CHECK(mail["text"].get<std::string>().find("https://example.org" + link) != std::string::npos);
  const std::string posting_id =
      notify::make_posting_id(names.topic + "/" + std::to_string(delivery.partition) + "/" +
                                  std::to_string(delivery.offset),
                              user["id"].get<std::string>(), "email");
  CHECK(mail["messageId"].get<std::string>().find(posting_id) != std::string::npos);

  // SIGTERM: both exit cleanly, and the ETL's offset is committed past the event.
  CHECK(etl->terminate() == 0);
  CHECK(worker->terminate() == 0);
  CHECK(notify::kafka::committed_offset(Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"), names.group,
                                        {names.topic, delivery.partition}) == delivery.offset + 1);
}

TEST_CASE("a bad event is logged and skipped; the partition goes on") {
  const Names names;
  const auto user = fixture_user(0);
  const std::string link = random_link();
  const Inbox inbox(Stack::get().value("INBOX_URL"));
  notify::kafka::Producer producer(Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"));
  // All on one partition (the good event's key), bad ones first.
  const std::string key = user["id"].get<std::string>() + "+user_signed_up";
  producer.produce(names.topic, key, "this is not json");
  producer.produce(names.topic, key, R"({"event_type": "user_signed_up"})");
  producer.produce(
      names.topic, key,
      R"({"id": "no-such-user", "event_type": "user_signed_up", "priority": "immediate",
                       "details": {"email": "x@example.com", "confirm_link": "/s/x"}})");
  // Hostile ones: each used to kill the ETL for good or stall the partition.
  producer.produce(
      names.topic, key,
      R"({"id": "u", "event_type": "user_signed_up", "details": )" + std::string(300000, '['));
  producer.produce(names.topic, key, R"({"event_type": ")" + std::string(700000, 'x') + R"("})");
  producer.produce(names.topic, key, std::string(R"({"event_type": "x"})") + '\0' + "[[[[");
  auto etl = start("etl_notifications", etl_env(names), names.group);
  auto worker = start("worker_notifications", worker_env(names), names.group + "-worker");
  emit_signup(names.topic, user, link);
  const bool arrived = wait_until([&] { return !mails_with(inbox, link).empty(); }, 60s);
  INFO("etl log:\n" << etl->log());
  REQUIRE(arrived);
  CHECK(etl->running());
  const std::string log = etl->log();
  CHECK(log.find("value is not valid JSON") != std::string::npos);
  CHECK(log.find("missing or non-string field 'id'") != std::string::npos);
  CHECK(log.find("unknown user no-such-user") != std::string::npos);
  CHECK(log.find("value is JSON nested deeper than MAX_JSON_DEPTH=64") != std::string::npos);
  CHECK(log.find("field 'event_type' is longer than 200 bytes") != std::string::npos);
  CHECK(log.find("value is not valid JSON: NUL byte at offset 19") != std::string::npos);
  CHECK(etl->terminate() == 0);
  CHECK(worker->terminate() == 0);
}

TEST_CASE("a hostile posting on the queue is dead-lettered; the worker lives and mails the next") {
  const Names names;
  const auto user = fixture_user(0);
  const std::string link = random_link();
  const Inbox inbox(Stack::get().value("INBOX_URL"));
  auto worker = start("worker_notifications", worker_env(names), names.group + "-worker");
  REQUIRE(wait_until([&] { return worker->log().find("rabbitmq connected") != std::string::npos; },
                     60s));

  // Put on the queue by someone else: nested 200,000 deep, a priority cut to 0 by a 32-bit
  // read, bytes after the value.
  notify::amqp::ConfirmedPublisher::Options o;
  o.connection.url = notify::amqp::Url::parse(Stack::get().value("RABBITMQ_URL"));
  o.exchange = names.exchange;
  notify::amqp::ConfirmedPublisher publisher(o);
  publisher.connect();
  const std::vector<std::string> hostile = {
      R"({"schema_version": 1, "posting_id": "p", "x": )" + std::string(200000, '[') +
          std::string(200000, ']') + "}",
      [] {
        notify::Posting p;
        p.posting_id = "hostile-1";
        p.event_id = "e";
        p.event_type = "user_signed_up";
        p.channel = notify::Channel::kEmail;
        p.recipient.address = "someone@example.org";
        p.content = {"subject", "text", ""};
        p.expires_at = notify::kLatestTime;
        auto j = nlohmann::json::parse(notify::encode(p));
        j["priority"] = 4294967296LL;  // 0 when read as 32 bits: it was sent
        return j.dump();
      }(),
      std::string(R"({"schema_version": 1})") + '\0' + "junk",
  };
  int confirmed = 0;
  for (std::size_t i = 0; i < hostile.size(); ++i) {
    notify::amqp::Message m;
    m.routing_key = "email";
    m.body = hostile[i];
    m.message_id = "hostile-" + std::to_string(i);
    publisher.publish(m, [&](auto) { ++confirmed; });
  }
  REQUIRE(publisher.flush(10s));
  REQUIRE(confirmed == 3);

  auto etl = start("etl_notifications", etl_env(names), names.group);
  emit_signup(names.topic, user, link);
  const bool arrived = wait_until([&] { return !mails_with(inbox, link).empty(); }, 60s);
  INFO("worker log:\n" << worker->log().substr(0, 20000));
  REQUIRE(arrived);
  CHECK(worker->running());

  notify::amqp::Topology topology;
  topology.exchange = names.exchange;
  notify::amqp::Consumer::Options c;
  c.connection.url = o.connection.url;
  c.queue = topology.dead_letter_queue_for("email");
  notify::amqp::Consumer dead(c);
  dead.connect();
  std::map<std::string, std::string> reasons;
  while (auto d = dead.next(2s)) {
    reasons[d->message_id] = d->headers["x-dead-reason"];
    dead.ack(d->delivery_tag);
  }
  CHECK(reasons["hostile-0"].find("nested deeper than MAX_JSON_DEPTH=64") != std::string::npos);
  CHECK(reasons["hostile-1"].find("priority must be an integer 0..9") != std::string::npos);
  CHECK(reasons["hostile-2"].find("NUL byte") != std::string::npos);
  CHECK(etl->terminate() == 0);
  CHECK(worker->terminate() == 0);
}

namespace {
// Freezes the RabbitMQ node (SIGSTOP) for the lifetime of the object: connections stay open,
// publishes are written to the socket, and no confirm comes back.
class FrozenBroker {
 public:
  FrozenBroker() {
    std::ifstream in(Stack::get().value("STACK_DIR") + "/rabbitmq/rabbitmq.pid");
    in >> pid_;
    REQUIRE(pid_ > 0);
    REQUIRE(::kill(pid_, SIGSTOP) == 0);
  }
  ~FrozenBroker() { thaw(); }
  void thaw() {
    if (pid_ > 0) ::kill(pid_, SIGCONT);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};
}  // namespace

TEST_CASE("the ETL killed after it consumed an event but before RabbitMQ confirmed loses nothing") {
  const Names names;
  const auto user = fixture_user(2);
  const std::string link = random_link();
  const Inbox inbox(Stack::get().value("INBOX_URL"));
  const std::string bootstrap = Stack::get().value("KAFKA_BOOTSTRAP_SERVERS");

  auto etl = start("etl_notifications", etl_env(names), names.group);
  REQUIRE(
      wait_until([&] { return etl->log().find("partitions assigned") != std::string::npos; }, 60s));

  FrozenBroker frozen;
  const auto delivery = emit_signup(names.topic, user, link);
  const std::string event_id = names.topic + "/" + std::to_string(delivery.partition) + "/" +
                               std::to_string(delivery.offset);
  // The ETL consumed the event and handed its posting to the (frozen) broker.
  REQUIRE(wait_until(
      [&] {
        const std::string log = etl->log();
        return log.find("posting rendered") != std::string::npos &&
               log.find(event_id) != std::string::npos;
      },
      30s));
  std::this_thread::sleep_for(500ms);
  etl->kill();  // SIGKILL: no goodbye, no commit
  CHECK(notify::kafka::committed_offset(bootstrap, names.group,
                                        {names.topic, delivery.partition}) != delivery.offset + 1);
  frozen.thaw();

  auto etl_again = start("etl_notifications", etl_env(names), names.group + "-again");
  auto worker = start("worker_notifications", worker_env(names), names.group + "-worker");
  std::vector<nlohmann::json> mails;
  const bool arrived = wait_until([&] { return !(mails = mails_with(inbox, link)).empty(); }, 90s);
  INFO("etl log:\n" << etl_again->log() << "\nworker log:\n" << worker->log());
  REQUIRE(arrived);
  // The restarted ETL reads the event again (its offset was never committed) and publishes it
  // again; the broker may also have kept the first copy it read before the crash. Every copy
  // carries the same posting id, and the worker's delivery ledger lets one mail through.
  REQUIRE(wait_until([&] { return etl_again->log().find("posting rendered") != std::string::npos; },
                     60s));
  std::this_thread::sleep_for(500ms);  // the confirm
  CHECK(etl_again->terminate() == 0);
  CHECK(notify::kafka::committed_offset(bootstrap, names.group,
                                        {names.topic, delivery.partition}) == delivery.offset + 1);
  // A second copy, if the broker kept the first, is on the queue by now: the worker takes it
  // within moments.
  wait_until([&] { return worker->log().find("posting already sent") != std::string::npos; }, 5s);
  const auto all = mails_with(inbox, link);
  CHECK(all.size() == 1);
  for (const auto& m : all) CHECK(m["messageId"] == mails.front()["messageId"]);
  CHECK(worker->terminate() == 0);
}
