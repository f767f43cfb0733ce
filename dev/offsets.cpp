// notify_offsets: where a consumer group stands on some topics, as JSON, for `make status`.
//
//   notify_offsets --bootstrap ADDR --group G --topic T [--topic T2 ...] [--timeout-ms MS]
//
// Prints {"group": G, "partitions": [{"topic", "partition", "start", "end", "committed"}]}:
// the oldest offset kept, the end (high watermark) and the group's committed offset (-1001 when
// none) of each partition. The group is not joined, so its members are not disturbed; topics
// the cluster does not have are left out. Exit status: 0 done, 1 Kafka failed, 2 bad usage.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include "notify/kafka.hpp"
#include "notify/log.hpp"

int main(int argc, char** argv) {
  std::string bootstrap;
  std::string group;
  std::vector<std::string> topics;
  int timeout_ms = 1500;
  CLI::App app{"Where a Kafka consumer group stands on some topics, as JSON."};
  app.add_option("--bootstrap", bootstrap, "Kafka bootstrap servers")
      ->envname("KAFKA_BOOTSTRAP_SERVERS")
      ->required();
  app.add_option("--group", group, "the consumer group")->required();
  app.add_option("--topic", topics, "a topic (repeatable)")->required();
  app.add_option("--timeout-ms", timeout_ms, "how long to wait for each answer")
      ->check(CLI::Range(1, 600000));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  // Log lines go to stderr, and only warnings: stdout carries the JSON alone.
  notify::log::init("notify_offsets", notify::log::Level::kWarn);
  try {
    nlohmann::json partitions = nlohmann::json::array();
    for (const auto& po : notify::kafka::group_offsets(bootstrap, group, topics,
                                                       std::chrono::milliseconds(timeout_ms))) {
      partitions.push_back({{"topic", po.tp.topic},
                            {"partition", po.tp.partition},
                            {"start", po.start},
                            {"end", po.end},
                            {"committed", po.committed}});
    }
    std::cout << nlohmann::json{{"group", group}, {"partitions", partitions}}.dump() << "\n";
    return 0;
  } catch (const notify::kafka::Error& e) {
    std::cerr << "notify_offsets: " << e.what() << "\n";
    return 1;
  }
}
