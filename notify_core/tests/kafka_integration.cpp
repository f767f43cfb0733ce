// The Kafka edge against the development broker (librdkafka's mock cluster) of the test stack.
//
// Every test uses its own topics and consumer group. Topics are created by producing to them:
// the mock cluster creates unknown topics (4 partitions) on any metadata request.
//
// The mock cluster delays the first join of a group by 3 s (as group.initial.rebalance.delay.ms
// on a real broker) and waits session.timeout.ms - 1 s for members to rejoin on a later
// rebalance, so the consumers here use short session and heartbeat intervals to keep the suite
// fast.

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "notify/kafka.hpp"
#include "stack.hpp"

namespace kafka = notify::kafka;
using namespace std::chrono_literals;

namespace {

std::string bootstrap() { return notify::testing::Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"); }

kafka::Consumer::Options options(const std::string& group, const std::string& topic) {
  kafka::Consumer::Options o;
  o.bootstrap_servers = bootstrap();
  o.group_id = group;
  o.topics = {topic};
  o.auto_offset_reset = "earliest";
  o.extra = {
      // The mock waits session.timeout.ms - 1 s for members during a rebalance.
      {"session.timeout.ms", "3000"},
      {"heartbeat.interval.ms", "300"},
      // Fetch without the default 500 ms long poll on an empty partition.
      {"fetch.wait.max.ms", "50"},
  };
  return o;
}

struct RecordingListener : kafka::RebalanceListener {
  std::vector<std::vector<kafka::TopicPartition>> assigned;
  std::vector<std::vector<kafka::TopicPartition>> revoked;
  std::vector<std::vector<kafka::TopicPartition>> lost;
  std::function<void(const std::vector<kafka::TopicPartition>&)> on_revoke;

  void on_assigned(const std::vector<kafka::TopicPartition>& partitions) override {
    assigned.push_back(partitions);
  }
  void on_revoked(const std::vector<kafka::TopicPartition>& partitions) override {
    revoked.push_back(partitions);
    if (on_revoke) on_revoke(partitions);
  }
  void on_lost(const std::vector<kafka::TopicPartition>& partitions) override {
    lost.push_back(partitions);
  }
};

// Polls until n messages arrived or the timeout passed.
std::vector<kafka::Message> consume(kafka::Consumer& consumer, std::size_t n,
                                    std::chrono::milliseconds timeout = 15s) {
  std::vector<kafka::Message> out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out.size() < n && std::chrono::steady_clock::now() < deadline) {
    if (auto m = consumer.poll(100ms)) out.push_back(std::move(*m));
  }
  return out;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

TEST_CASE("kafka: a produced message arrives with key, value, timestamp and headers") {
  const auto topic = notify::testing::unique_name("kafka_roundtrip");
  kafka::Producer producer(bootstrap());
  const auto before = now_ms();
  const std::string value("binary\0value", 12);
  const auto delivery = producer.produce(topic, std::string("user-1+user_signed_up"), value, 10s,
                                         {{"trace", "abc"}, {"empty", ""}, {"trace", "second"}});
  const auto unkeyed = producer.produce(topic, std::nullopt, "{}");
  const auto after = now_ms();
  CHECK(delivery.topic == topic);
  CHECK(delivery.offset >= 0);

  kafka::Consumer consumer(options(notify::testing::unique_name("g_roundtrip"), topic), nullptr);
  auto messages = consume(consumer, 2);
  REQUIRE(messages.size() == 2);
  if (!messages[0].key) std::swap(messages[0], messages[1]);  // two partitions: any order

  const auto& m = messages[0];
  CHECK(m.topic == topic);
  CHECK(m.partition == delivery.partition);
  CHECK(m.offset == delivery.offset);
  CHECK(m.key == std::optional<std::string>("user-1+user_signed_up"));
  CHECK(m.value == value);
  REQUIRE(m.timestamp_ms.has_value());
  CHECK(*m.timestamp_ms >= before - 1000);
  CHECK(*m.timestamp_ms <= after + 1000);
  // (The delivery's timestamp is not compared: the mock reports a fixed log-append time, 1234.)
  const kafka::Headers expected = {{"trace", "abc"}, {"empty", ""}, {"trace", "second"}};
  CHECK(m.headers == expected);

  const auto& u = messages[1];
  CHECK_FALSE(u.key.has_value());
  CHECK(u.value == "{}");
  CHECK(u.headers.empty());
  CHECK(u.offset == unkeyed.offset);
}

TEST_CASE("kafka: offsets advance only through store_offset") {
  const auto topic = notify::testing::unique_name("kafka_offsets");
  const auto group = notify::testing::unique_name("g_offsets");
  kafka::Producer producer(bootstrap());
  // One key: one partition, consecutive offsets.
  for (int i = 0; i < 3; ++i) producer.produce(topic, std::string("k"), "m" + std::to_string(i));

  kafka::TopicPartition tp;
  {
    kafka::Consumer consumer(options(group, topic), nullptr);
    const auto messages = consume(consumer, 3);
    REQUIRE(messages.size() == 3);
    CHECK(messages[0].value == "m0");
    CHECK(messages[2].value == "m2");
    tp = {topic, messages[0].partition};
    CHECK(kafka::committed_offset(bootstrap(), group, tp) == -1001);  // nothing stored yet
    consumer.store_offset(tp, messages[1].offset + 1);  // m0 and m1 are done, m2 is not
    consumer.close();
  }
  CHECK(kafka::committed_offset(bootstrap(), group, tp) == 2);

  kafka::Consumer again(options(group, topic), nullptr);
  const auto rest = consume(again, 1);
  REQUIRE(rest.size() == 1);
  CHECK(rest[0].value == "m2");
  CHECK(rest[0].offset == 2);
  CHECK(again.poll(300ms) == std::nullopt);  // and nothing else
}

TEST_CASE("kafka: commit_async commits what was stored, without waiting and without a poll") {
  const auto topic = notify::testing::unique_name("kafka_commit_async");
  const auto group = notify::testing::unique_name("g_commit_async");
  kafka::Producer producer(bootstrap());
  for (int i = 0; i < 2; ++i) producer.produce(topic, std::string("k"), "m" + std::to_string(i));
  kafka::Consumer consumer(options(group, topic), nullptr);
  const auto messages = consume(consumer, 2);
  REQUIRE(messages.size() == 2);
  const kafka::TopicPartition tp{topic, messages[0].partition};
  consumer.store_offset(tp, messages[0].offset + 1);
  const auto started = std::chrono::steady_clock::now();
  consumer.commit_async();
  CHECK(std::chrono::steady_clock::now() - started < 50ms);  // it does not wait for the broker
  CHECK(notify::testing::wait_until(
      [&] { return kafka::committed_offset(bootstrap(), group, tp) == messages[0].offset + 1; },
      5s));
  consumer.commit_async();  // nothing new stored: nothing to send, no error
  consumer.store_offset(tp, messages[1].offset + 1);
  consumer.commit_async();
  CHECK(notify::testing::wait_until(
      [&] { return kafka::committed_offset(bootstrap(), group, tp) == messages[1].offset + 1; },
      5s));
}

TEST_CASE("kafka: a member that stops polling loses its partitions: on_lost, nothing committed") {
  const auto topic = notify::testing::unique_name("kafka_lost");
  const auto group = notify::testing::unique_name("g_lost");
  kafka::Producer producer(bootstrap());
  for (int i = 0; i < 3; ++i) producer.produce(topic, std::string("k"), "m" + std::to_string(i));

  auto o = options(group, topic);
  // Fenced the quick way: no poll for longer than max.poll.interval.ms (which librdkafka wants
  // at least session.timeout.ms; shorter, the first join times out on the mock) makes
  // librdkafka leave the group and report the assignment lost, as a session that expired in a
  // broker outage does.
  o.extra["max.poll.interval.ms"] = "3000";
  RecordingListener listener;
  kafka::Consumer consumer(o, &listener);
  const auto messages = consume(consumer, 3);
  REQUIRE(messages.size() == 3);
  const kafka::TopicPartition tp{topic, messages[0].partition};
  consumer.store_offset(tp, messages[2].offset + 1);  // stored, not yet committed

  std::this_thread::sleep_for(4500ms);
  CHECK(notify::testing::wait_until(
      [&] {
        consumer.poll(100ms);
        return !listener.lost.empty();
      },
      10s));
  REQUIRE(listener.lost.size() == 1);
  CHECK(std::find(listener.lost[0].begin(), listener.lost[0].end(), tp) != listener.lost[0].end());
  CHECK(listener.revoked.empty());
  // What was stored for a lost partition is not committed...
  CHECK(kafka::committed_offset(bootstrap(), group, tp) == -1001);
  // ...and the member, back in the group, reads the partition again from the last commit.
  const auto again = consume(consumer, 3);
  REQUIRE(again.size() == 3);
  CHECK(again[0].offset == messages[0].offset);
  CHECK(listener.assigned.size() == 2);
  consumer.close();
  CHECK(kafka::committed_offset(bootstrap(), group, tp) == -1001);  // nothing stored since
}

TEST_CASE("kafka: a second member triggers revoke and assign; offsets stored on revoke commit") {
  const auto topic = notify::testing::unique_name("kafka_rebalance");
  const auto group = notify::testing::unique_name("g_rebalance");
  kafka::Producer producer(bootstrap());
  const auto first = producer.produce(topic, std::string("k"), "first");  // creates the topic
  const kafka::TopicPartition tp{topic, first.partition};

  RecordingListener one;
  kafka::Consumer c1(options(group, topic), &one);
  const auto got = consume(c1, 1);
  REQUIRE(got.size() == 1);
  REQUIRE(one.assigned.size() == 1);
  CHECK(one.assigned[0].size() == 4);  // the mock's auto-created topics have 4 partitions
  CHECK(one.revoked.empty());

  RecordingListener two;
  kafka::Consumer c2(options(group, topic), &two);
  // Settled: both members own partitions, and together all four.
  const bool settled = notify::testing::wait_until(
      [&] {
        c1.poll(50ms);
        c2.poll(50ms);
        const auto a1 = c1.assignment();
        const auto a2 = c2.assignment();
        return !a1.empty() && !a2.empty() && a1.size() + a2.size() == 4;
      },
      20s);
  INFO("c1 assigned " << one.assigned.size() << " times, revoked " << one.revoked.size()
                      << "; c2 assigned " << two.assigned.size() << ", revoked "
                      << two.revoked.size());
  REQUIRE(settled);
  REQUIRE(one.revoked.size() >= 1);
  CHECK(one.revoked[0].size() == 4);  // eager protocol: everything goes back first
  REQUIRE(one.assigned.size() >= 2);
  REQUIRE(two.assigned.size() >= 1);
  // The listeners saw what the consumers own now.
  CHECK(one.assigned.back() == c1.assignment());
  CHECK(two.assigned.back() == c2.assignment());
  std::set<kafka::TopicPartition> all;
  for (const auto& p : c1.assignment()) all.insert(p);
  for (const auto& p : c2.assignment()) all.insert(p);
  CHECK(all.size() == 4);

  // What the listener stores in on_revoked is committed. The owner of tp leaves the group: the
  // mock refuses commits while a join is in progress (a real broker takes them from the current
  // generation), so a leave is the revocation that shows it.
  const auto mine = c1.assignment();
  const bool c1_owns = std::find(mine.begin(), mine.end(), tp) != mine.end();
  RecordingListener& owner_listener = c1_owns ? one : two;
  kafka::Consumer& owner = c1_owns ? c1 : c2;
  owner_listener.on_revoke = [&](const std::vector<kafka::TopicPartition>& revoked) {
    if (std::find(revoked.begin(), revoked.end(), tp) != revoked.end()) {
      owner.store_offset(tp, got[0].offset + 1);
    }
  };
  CHECK(kafka::committed_offset(bootstrap(), group, tp) == -1001);
  const auto revocations = owner_listener.revoked.size();
  owner.close();
  CHECK(owner_listener.revoked.size() == revocations + 1);
  CHECK(kafka::committed_offset(bootstrap(), group, tp) == got[0].offset + 1);
}

TEST_CASE("kafka: pause stops delivery, resume continues without loss") {
  const auto topic = notify::testing::unique_name("kafka_pause");
  kafka::Producer producer(bootstrap());
  for (int i = 0; i < 3; ++i) producer.produce(topic, std::string("k"), "m" + std::to_string(i));

  kafka::Consumer consumer(options(notify::testing::unique_name("g_pause"), topic), nullptr);
  const auto first = consume(consumer, 1);
  REQUIRE(first.size() == 1);
  CHECK(first[0].value == "m0");
  const auto assigned = consumer.assignment();
  REQUIRE(assigned.size() == 4);

  // m1 and m2 are most likely fetched already: pausing must hold them back too.
  consumer.pause(assigned);
  producer.produce(topic, std::string("k"), "m3");
  CHECK(consume(consumer, 1, 1500ms).empty());

  consumer.resume(assigned);
  const auto rest = consume(consumer, 3);
  REQUIRE(rest.size() == 3);
  CHECK(rest[0].value == "m1");
  CHECK(rest[1].value == "m2");
  CHECK(rest[2].value == "m3");
  CHECK(rest[2].offset == first[0].offset + 3);
}
