// The ETL on real brokers, alone: events produced into Kafka, postings read from RabbitMQ.
// Transient trouble downstream (Auth answering 503, RabbitMQ restarting) pauses intake; nothing
// is lost and the partition goes on afterwards.

#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <set>
#include <thread>

#include <httplib.h>

#include "etl_process.hpp"
#include "notify/amqp.hpp"
#include "notify/kafka.hpp"
#include "notify/posting.hpp"
#include "stack.hpp"

using namespace std::chrono_literals;
using notify::testing::Process;
using notify::testing::Stack;
using notify::testing::wait_until;

namespace {

struct Fixture : notify::testing::EtlNames {
  std::unique_ptr<Process> start_etl() const {
    return notify::testing::start_etl(
        *this, {{"AUTH_MAX_ATTEMPTS", "2"}, {"ETL_RETRY_MAX_BACKOFF", "1s"}});
  }

  std::unique_ptr<notify::amqp::Consumer> postings() const {
    return notify::testing::postings_consumer(*this, "email", 100);
  }

  // Signs up the fixture users, all on one partition (one key), in order.
  std::vector<std::string> emit(int count) const {
    std::ifstream in(Stack::get().value("SOURCE_DIR") + "/dev/users.json");
    const auto users = nlohmann::json::parse(in);
    notify::kafka::Producer producer(Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"));
    std::vector<std::string> event_ids;
    for (int i = 0; i < count; ++i) {
      const auto& user = users.at(static_cast<std::size_t>(i) % users.size());
      const nlohmann::json value = {
          {"id", user["id"]},
          {"event_type", "user_signed_up"},
          {"priority", "immediate"},
          {"from_service", "auth"},
          {"details", {{"email", user["email"]}, {"confirm_link", "/s/" + std::to_string(i)}}}};
      const auto d = producer.produce(topic, std::string("one-partition"), value.dump());
      event_ids.push_back(topic + "/" + std::to_string(d.partition) + "/" +
                          std::to_string(d.offset));
    }
    return event_ids;
  }
};

// Reads postings until `expected` distinct event ids were seen or the time is up.
std::set<std::string> collect(notify::amqp::Consumer& consumer, std::size_t expected,
                              std::chrono::seconds timeout) {
  std::set<std::string> seen;
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (seen.size() < expected && std::chrono::steady_clock::now() < until) {
    try {
      if (!consumer.connected()) consumer.connect();
      if (auto d = consumer.next(200ms)) {
        seen.insert(notify::decode_posting(d->body).event_id);
        consumer.ack(d->delivery_tag);
      }
    } catch (const notify::amqp::Error&) {
      consumer.disconnect();
      std::this_thread::sleep_for(500ms);
    }
  }
  return seen;
}

void auth_faults(const nlohmann::json& faults) {
  httplib::Client auth(Stack::get().value("AUTH_URL"));
  auto r = faults.is_null() ? auth.Delete("/_dev/faults")
                            : auth.Post("/_dev/faults", faults.dump(), "application/json");
  REQUIRE(r);
  REQUIRE(r->status / 100 == 2);
}

}  // namespace

TEST_CASE("etl: Auth answering 503 pauses intake; it resumes when Auth recovers, losing nothing") {
  Fixture f;
  auto queue = f.postings();
  auth_faults({{"status", 503}, {"seconds", 6}});
  const auto event_ids = f.emit(5);
  auto etl = f.start_etl();

  const auto seen = collect(*queue, event_ids.size(), 60s);
  INFO("etl log:\n" << etl->log());
  CHECK(seen == std::set<std::string>(event_ids.begin(), event_ids.end()));
  CHECK(etl->log().find("intake paused") != std::string::npos);
  CHECK(etl->log().find("intake resumed") != std::string::npos);
  CHECK(etl->terminate() == 0);
  // Committed past the last event: a restart would not publish them again.
  const std::string& last = event_ids.back();
  const auto offset = std::stoll(last.substr(last.rfind('/') + 1));
  const auto partition = std::stoi(last.substr(f.topic.size() + 1));
  CHECK(notify::kafka::committed_offset(Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"), f.group,
                                        {f.topic, partition}) == offset + 1);
  auth_faults(nullptr);
}

TEST_CASE("etl: a RabbitMQ restart while running loses no posting") {
  Fixture f;
  auto queue = f.postings();
  auto etl = f.start_etl();
  f.emit(3);
  CHECK(collect(*queue, 3, 60s).size() == 3);

  Stack::get().control("restart", "rabbitmq");
  queue->disconnect();
  const auto second = f.emit(4);
  std::set<std::string> expected(second.begin(), second.end());
  const auto seen = collect(*queue, expected.size(), 90s);
  INFO("etl log:\n" << etl->log());
  for (const auto& id : expected) CHECK(seen.count(id) == 1);
  CHECK(etl->log().find("rabbitmq connected") != std::string::npos);
  CHECK(etl->terminate() == 0);
}

TEST_CASE(
    "etl: killed (kill -9) a commit interval after its last confirm, it has committed "
    "everything: a new instance publishes nothing again") {
  Fixture f;
  auto queue = f.postings();
  auto etl = f.start_etl();
  const auto event_ids = f.emit(30);
  const auto seen = collect(*queue, event_ids.size(), 60s);
  const auto last_seen = std::chrono::steady_clock::now();
  INFO("etl log:\n" << etl->log());
  REQUIRE(seen.size() == event_ids.size());
  const std::string& last = event_ids.back();
  const notify::kafka::TopicPartition tp{f.topic, std::stoi(last.substr(f.topic.size() + 1))};
  const auto end = std::stoll(last.substr(last.rfind('/') + 1)) + 1;
  auto committed = [&] {
    return notify::kafka::committed_offset(Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"), f.group,
                                           tp);
  };
  // The last posting has just reached its queue, so its confirm is on its way to the ETL: give
  // it KAFKA_COMMIT_INTERVAL (250 ms by default) and a margin for that confirm and the commit's
  // round trip, then kill it. (librdkafka's 5 s timer used to leave up to 5 s of events
  // uncommitted.) Meanwhile, watch when the end is committed.
  std::optional<std::chrono::milliseconds> committed_after;
  while (std::chrono::steady_clock::now() < last_seen + 250ms + 750ms) {
    if (!committed_after && committed() == end) {
      committed_after = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - last_seen);
    }
    std::this_thread::sleep_for(10ms);
  }
  etl->kill();
  REQUIRE(committed_after.has_value());
  MESSAGE("the end was committed at most " << committed_after->count()
                                           << " ms after the last posting reached its queue");
  CHECK(committed() == end);

  // A new instance of the same group starts at the end: not one posting again.
  auto again = f.start_etl();
  REQUIRE(wait_until([&] { return again->log().find("partitions assigned") != std::string::npos; },
                     30s));
  const auto republished = collect(*queue, 1, 5s);
  INFO("second etl log:\n" << again->log());
  CHECK(republished.empty());
  CHECK(again->terminate() == 0);
}
