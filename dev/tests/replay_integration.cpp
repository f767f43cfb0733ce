// notify_replay against the test stack: dead-lettered events go back to their topic, dead
// postings back to the work queue, and a dry run changes nothing. Every test uses its own
// topics and exchange.
#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "notify/amqp.hpp"
#include "notify/kafka.hpp"
#include "stack.hpp"

using namespace std::chrono_literals;
using notify::testing::Process;
using notify::testing::Stack;
using notify::testing::unique_name;

namespace {

std::string log_path(const std::string& name) {
  return Stack::get().value("STACK_DIR") + "/test-logs/" + unique_name(name) + ".log";
}

// Runs notify_replay to its end; returns what it printed.
std::string replay(const std::vector<std::string>& args) {
  Process p(Stack::get().value("BIN_DIR") + "/notify_replay", args, {}, log_path("replay"));
  const auto status = p.wait(60s);
  INFO(p.log());
  REQUIRE(status.has_value());
  CHECK(*status == 0);
  return p.log();
}

// key -> value of every message the topic holds now.
std::map<std::string, std::string> topic_contents(const std::string& topic) {
  std::map<std::string, std::string> out;
  notify::kafka::read_topic_to_end(Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"), topic,
                                   [&](const notify::kafka::Message& m) {
                                     out[m.key.value_or("")] = m.value;
                                     return true;
                                   });
  return out;
}

notify::amqp::ConnectionOptions connection() {
  notify::amqp::ConnectionOptions o;
  o.url = notify::amqp::Url::parse(Stack::get().value("RABBITMQ_URL"));
  o.connect_timeout = 3s;
  o.connection_name = "replay-it";
  return o;
}

// Every message of a queue, by message id; unacknowledged, so they stay in the queue.
std::map<std::string, notify::amqp::Delivery> peek(const std::string& queue) {
  notify::amqp::Consumer consumer({connection(), queue, 0, std::nullopt});
  consumer.connect();
  std::map<std::string, notify::amqp::Delivery> out;
  while (auto d = consumer.next(1500ms)) out[d->message_id] = *d;
  consumer.disconnect();
  return out;
}

}  // namespace

TEST_CASE("replay events: a dry run lists the dead letters, a real run re-produces them") {
  const auto bootstrap = Stack::get().value("KAFKA_BOOTSTRAP_SERVERS");
  const auto dlq = unique_name("replay-dlq");
  const auto target = unique_name("replay-events");
  notify::kafka::Producer producer(bootstrap);
  // The target exists before the replay, so that "nothing produced" is observable.
  producer.produce(target, std::string("sentinel"), "{}");
  const std::map<std::string, std::string> dead = {
      {"user-1", R"({"id":"user-1","event_type":"user_signed_up","details":{}})"},
      {"user-2", R"({"id":"user-2","event_type":"user_signed_up","details":{"x":1}})"}};
  int offset = 40;
  for (const auto& [key, value] : dead) {
    producer.produce(dlq, key, value, 10s,
                     {{"error", "template welcome: missing confirm_link"},
                      {"original_topic", target},
                      {"original_partition", "0"},
                      {"original_offset", std::to_string(offset++)}});
  }

  SUBCASE("dry run") {
    const auto out = replay({"events", "--bootstrap", bootstrap, "--topic", dlq, "--dry-run"});
    CHECK(out.find("key=user-1") != std::string::npos);
    CHECK(out.find("key=user-2") != std::string::npos);
    CHECK(out.find("error=template welcome: missing confirm_link") != std::string::npos);
    CHECK(out.find("2 of 2 dead-lettered events") != std::string::npos);
    CHECK(topic_contents(target).size() == 1);
  }

  SUBCASE("--match keeps only the matching errors") {
    const auto out = replay(
        {"events", "--bootstrap", bootstrap, "--topic", dlq, "--match", "auth 404", "--dry-run"});
    CHECK(out.find("key=user-") == std::string::npos);
    CHECK(out.find("0 of 2 dead-lettered events") != std::string::npos);
  }

  SUBCASE("real run") {
    const auto out = replay({"events", "--bootstrap", bootstrap, "--topic", dlq});
    CHECK(out.find("2 replayed") != std::string::npos);
    auto contents = topic_contents(target);
    contents.erase("sentinel");
    CHECK(contents == dead);
    // The dead letters themselves stay: Kafka does not delete.
    CHECK(topic_contents(dlq) == dead);
  }
}

TEST_CASE("replay postings: a dry run leaves them, a real run moves them to the work queue") {
  notify::amqp::Topology topology;
  topology.exchange = unique_name("replay-it");
  topology.channels = {"email"};
  {
    notify::amqp::Connection c(connection());
    notify::amqp::declare_topology(c, topology);
  }
  const auto work = topology.queue_for("email");
  const auto dead = topology.dead_letter_queue_for("email");

  // Dead postings as the worker leaves them: published through the dead-letter exchange.
  notify::amqp::ConfirmedPublisher publisher(
      {connection(), topology.dead_letter_exchange(), 8, std::nullopt});
  publisher.connect();
  for (const std::string id : {"posting-1", "posting-2"}) {
    notify::amqp::Message m;
    m.routing_key = "email";
    m.message_id = id;
    m.priority = 5;
    m.body = R"({"posting_id":")" + id + R"("})";
    m.headers = {{"x-dead-reason", "smtp_rejected"},
                 {"x-attempts", "3"},
                 {"x-last-error", "smtp 550: mailbox unavailable"},
                 {"x-deliver-at", "2024-01-01T00:00:00Z"},
                 {"x-trace", "keep-" + id}};
    publisher.publish(m, [](notify::amqp::ConfirmedPublisher::Result) {});
  }
  REQUIRE(publisher.flush(10s));
  const std::vector<std::string> base = {
      "postings",   "--rabbitmq-url",  Stack::get().value("RABBITMQ_URL"),
      "--exchange", topology.exchange, "--channel",
      "email",      "--wait",          "1"};

  SUBCASE("dry run") {
    auto args = base;
    args.emplace_back("--dry-run");
    const auto out = replay(args);
    CHECK(out.find("message_id=posting-1\treason=smtp_rejected\tlast_error=smtp 550") !=
          std::string::npos);
    CHECK(out.find("message_id=posting-2") != std::string::npos);
    CHECK(peek(dead).size() == 2);
    CHECK(peek(work).empty());
  }

  SUBCASE("real run") {
    const auto out = replay(base);
    CHECK(out.find("2 replayed") != std::string::npos);
    CHECK(peek(dead).empty());
    const auto moved = peek(work);
    REQUIRE(moved.size() == 2);
    for (const std::string id : {"posting-1", "posting-2"}) {
      const auto& d = moved.at(id);
      CHECK(d.body == R"({"posting_id":")" + id + R"("})");
      CHECK(d.priority == 5);
      CHECK(d.headers.count("x-dead-reason") == 0);
      CHECK(d.headers.count("x-attempts") == 0);
      CHECK(d.headers.count("x-last-error") == 0);
      CHECK(d.headers.count("x-deliver-at") == 0);
      CHECK(d.headers.at("x-trace") == "keep-" + id);
    }
  }
}
