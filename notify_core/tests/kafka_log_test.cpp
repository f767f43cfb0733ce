// A Kafka outage is a warning, as a RabbitMQ outage is: the broker-down lines of librdkafka's
// error callback are logged at warn, never at info.

#include <doctest/doctest.h>

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "notify/kafka.hpp"
#include "notify/log.hpp"

namespace kafka = notify::kafka;

namespace {

// Nothing listens there: every connection attempt is refused at once.
constexpr const char* kNowhere = "127.0.0.1:1";

// Collects the lines written while it lives, in place of stderr.
class CapturedLog {
 public:
  CapturedLog() {
    notify::log::set_sink([this](const nlohmann::json& line) {
      std::lock_guard lock(mutex_);
      lines_.push_back(line);
    });
  }
  ~CapturedLog() { notify::log::set_sink({}); }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;

  std::vector<nlohmann::json> with_msg(const std::string& msg) {
    std::lock_guard lock(mutex_);
    std::vector<nlohmann::json> out;
    for (const auto& line : lines_) {
      if (line.value("msg", "") == msg) out.push_back(line);
    }
    return out;
  }

 private:
  std::mutex mutex_;
  std::vector<nlohmann::json> lines_;
};

}  // namespace

TEST_CASE("kafka consumer: a broker that cannot be reached is logged at warn") {
  CapturedLog log;
  {
    kafka::Consumer consumer({kNowhere, "group", {"topic"}, "earliest", {}}, nullptr);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (log.with_msg("kafka broker unreachable").empty() &&
           std::chrono::steady_clock::now() < deadline) {
      (void)consumer.poll(std::chrono::milliseconds(100));
    }
  }
  const auto lines = log.with_msg("kafka broker unreachable");
  REQUIRE_FALSE(lines.empty());
  for (const auto& line : lines) {
    CAPTURE(line.dump());
    CHECK(line["level"] == "warn");
  }
}

TEST_CASE("kafka producer: a broker that cannot be reached is logged at warn") {
  CapturedLog log;
  {
    kafka::Producer producer(kNowhere, {{"message.timeout.ms", "1000"}});
    CHECK_THROWS_AS(producer.produce("topic", std::nullopt, "x", std::chrono::seconds(2)),
                    kafka::Error);
  }
  const auto lines = log.with_msg("kafka broker unreachable");
  REQUIRE_FALSE(lines.empty());
  for (const auto& line : lines) {
    CAPTURE(line.dump());
    CHECK(line["level"] == "warn");
  }
}
