// The ETL's settings read from the environment: defaults, and bad values refused with the
// variable's name.
#include <doctest/doctest.h>

#include <map>
#include <optional>
#include <string>

#include "config.hpp"

using namespace std::chrono_literals;

namespace {

etl::EtlConfig load(const std::map<std::string, std::string>& vars) {
  return etl::load_config(notify::Env([vars](const std::string& name) {
    const auto it = vars.find(name);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  }));
}

std::string refusal(const std::map<std::string, std::string>& vars) {
  try {
    load(vars);
  } catch (const notify::ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("KAFKA_COMMIT_INTERVAL: 250 ms by default, from 1 ms to 1 minute") {
  CHECK(load({}).commit_interval == 250ms);
  CHECK(load({{"KAFKA_COMMIT_INTERVAL", "1s"}}).commit_interval == 1s);
  CHECK(load({{"KAFKA_COMMIT_INTERVAL", "1ms"}}).commit_interval == 1ms);
  CHECK(load({{"KAFKA_COMMIT_INTERVAL", "1m"}}).commit_interval == 1min);
  CHECK(refusal({{"KAFKA_COMMIT_INTERVAL", "0ms"}}) ==
        "KAFKA_COMMIT_INTERVAL=0ms: must be between 1ms and 1m");
  CHECK(refusal({{"KAFKA_COMMIT_INTERVAL", "61s"}}) ==
        "KAFKA_COMMIT_INTERVAL=61s: must be between 1ms and 1m");
  CHECK(refusal({{"KAFKA_COMMIT_INTERVAL", "soon"}})
            .starts_with("KAFKA_COMMIT_INTERVAL=soon: not a duration"));
}

TEST_CASE("KAFKA_CONSUMER_CONFIG cannot take the committing away from the ETL") {
  CHECK(load({{"KAFKA_CONSUMER_CONFIG", "session.timeout.ms=6000,fetch.wait.max.ms=50"}})
            .consumer_properties.size() == 2);
  for (const std::string name :
       {"enable.auto.commit", "enable.auto.offset.store", "auto.commit.interval.ms"}) {
    CAPTURE(name);
    CHECK(refusal({{"KAFKA_CONSUMER_CONFIG", "session.timeout.ms=6000," + name + "=true"}}) ==
          "KAFKA_CONSUMER_CONFIG: " + name +
              " cannot be set: offsets are committed by the ETL (see KAFKA_COMMIT_INTERVAL)");
  }
}
