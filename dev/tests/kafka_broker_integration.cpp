// The development Kafka broker keeps its data across restarts (--data-dir): the same messages at
// the same offsets, and the committed offsets of a group. Runs its own broker process on a
// folder of its own; needs no stack.
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "notify/kafka.hpp"
#include "stack.hpp"

namespace {

namespace fs = std::filesystem;
using notify::testing::Process;
using notify::testing::wait_until;
using namespace std::chrono_literals;

struct Broker {
  fs::path dir;
  std::unique_ptr<Process> process;
  std::string bootstrap;

  Broker(const fs::path& dir, const std::string& log_name) : dir(dir) {
    fs::remove(dir / "bootstrap");
    process = std::make_unique<Process>(
        DEV_KAFKA_BROKER,
        std::vector<std::string>{"--bootstrap-file", (dir / "bootstrap").string(), "--data-dir",
                                 (dir / "data").string(), "--groups", "kept"},
        std::map<std::string, std::string>{}, (dir / log_name).string());
    REQUIRE(wait_until([&] { return fs::exists(dir / "bootstrap"); }, 30s));
    std::ifstream in(dir / "bootstrap");
    std::getline(in, bootstrap);
  }
};

using Seen = std::vector<std::tuple<std::string, std::int32_t, std::int64_t, std::string,
                                    std::string, notify::kafka::Headers>>;

Seen read_all(const std::string& bootstrap, const std::vector<std::string>& topics) {
  Seen seen;
  for (const auto& topic : topics) {
    notify::kafka::read_topic_to_end(bootstrap, topic, [&](const notify::kafka::Message& m) {
      seen.emplace_back(m.topic, m.partition, m.offset, m.key.value_or("<null>"), m.value,
                        m.headers);
      return true;
    });
  }
  std::sort(seen.begin(), seen.end());
  return seen;
}

}  // namespace

TEST_CASE("the development broker keeps messages, offsets and committed offsets across restarts") {
  const fs::path dir =
      fs::temp_directory_path() / ("notify-kafka-broker-test-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::vector<std::string> topics = {"notify_events", "notify_events.dlq", "other_topic"};

  Seen before;
  std::map<std::int32_t, std::int64_t> committed;
  std::map<std::int32_t, std::int64_t> ends;
  {
    Broker broker(dir, "first.log");
    notify::kafka::Producer producer(broker.bootstrap);
    for (int i = 0; i < 30; ++i) {
      const auto d = producer.produce("notify_events", "user-" + std::to_string(i),
                                      "event " + std::to_string(i), 10s, {{"attempt", "1"}});
      ends[d.partition] = std::max(ends[d.partition], d.offset + 1);
    }
    producer.produce("notify_events.dlq", std::nullopt, "refused");
    producer.produce("other_topic", "k", "");

    // The group reads some of the events and commits what it has done.
    {
      notify::kafka::Consumer consumer(
          {broker.bootstrap, "kept", {"notify_events"}, "earliest", {}}, nullptr);
      int read = 0;
      REQUIRE(wait_until(
          [&] {
            if (auto m = consumer.poll(100ms)) {
              if (++read <= 12) consumer.store_offset({m->topic, m->partition}, m->offset + 1);
            }
            return read >= 12;
          },
          30s));
      consumer.commit();
      consumer.close();
    }
    for (const auto& [p, end] : ends) {
      committed[p] =
          notify::kafka::committed_offset(broker.bootstrap, "kept", {"notify_events", p});
    }
    before = read_all(broker.bootstrap, topics);
    REQUIRE(before.size() == 32);
    // The broker writes the committed offsets every second and when it stops.
    CHECK(broker.process->terminate() == 0);
  }

  Broker again(dir, "second.log");
  CHECK(read_all(again.bootstrap, topics) == before);
  for (const auto& entry : committed) {
    const std::int32_t partition = entry.first;
    CAPTURE(partition);
    CHECK(notify::kafka::committed_offset(again.bootstrap, "kept", {"notify_events", partition}) ==
          entry.second);
  }
  // New messages continue after the kept ones.
  notify::kafka::Producer producer(again.bootstrap);
  const auto d = producer.produce("notify_events", "user-0", "after the restart");
  CHECK(d.offset == ends[d.partition]);
  CHECK(again.process->terminate() == 0);
  fs::remove_all(dir);
}
