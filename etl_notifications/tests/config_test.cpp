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

TEST_CASE("NOTIFY_STATUS_TOPIC: notify_status by default, empty turns status events off") {
  CHECK(load({}).status_topic == "notify_status");
  CHECK(load({{"NOTIFY_STATUS_TOPIC", "outcomes"}}).status_topic == "outcomes");
  CHECK(load({{"NOTIFY_STATUS_TOPIC", ""}}).status_topic.empty());
  CHECK(load({{"NOTIFY_STATUS_TOPIC", "  "}}).status_topic.empty());
  CHECK(load({}).status_buffer == 100000);
  CHECK(load({{"STATUS_BUFFER", "10"}}).status_buffer == 10);
  CHECK(refusal({{"STATUS_BUFFER", "0"}}) == "STATUS_BUFFER=0: must be between 1 and 10000000");
}

TEST_CASE("UNSUBSCRIBE_*: off by default, checked when set, the secret never shown") {
  const etl::EtlConfig plain = load({});
  CHECK(plain.unsubscribe_secret.empty());
  CHECK(plain.unsubscribe_url.empty());
  CHECK(plain.unsubscribe_mailto.empty());
  CHECK(plain.unsubscribe_ttl == std::chrono::hours(24 * 60));

  const etl::EtlConfig set = load({{"UNSUBSCRIBE_SECRET", "0123456789abcdef"},
                                   {"UNSUBSCRIBE_URL", "https://example.org/unsubscribe?list=a"},
                                   {"UNSUBSCRIBE_MAILTO", "mailto:unsubscribe@example.org"},
                                   {"UNSUBSCRIBE_TTL", "90d"}});
  CHECK(set.unsubscribe_secret == "0123456789abcdef");
  CHECK(set.unsubscribe_url == "https://example.org/unsubscribe?list=a");
  CHECK(set.unsubscribe_mailto == "unsubscribe@example.org");  // the address, either way
  CHECK(set.unsubscribe_ttl == std::chrono::hours(24 * 90));

  const std::string short_secret = refusal({{"UNSUBSCRIBE_SECRET", "tiny-secret"}});
  CHECK(short_secret == "UNSUBSCRIBE_SECRET: must be at least 16 bytes long");
  CHECK(short_secret.find("tiny-secret") == std::string::npos);
  for (const std::string url : {"ftp://example.org/u", "example.org/u", "https://example.org/u v",
                                "https://example.org/u>x", "https://example.org/u,x"}) {
    CAPTURE(url);
    CHECK(refusal({{"UNSUBSCRIBE_URL", url}}).starts_with("UNSUBSCRIBE_URL=" + url + ": must be"));
  }
  for (const std::string mailto : {"nobody", "@example.org", "a@b?subject=x", "a b@example.org"}) {
    CAPTURE(mailto);
    CHECK(refusal({{"UNSUBSCRIBE_MAILTO", mailto}}).starts_with("UNSUBSCRIBE_MAILTO="));
  }
  CHECK(refusal({{"UNSUBSCRIBE_TTL", "10m"}}) ==
        "UNSUBSCRIBE_TTL=10m: must be at least 1h (mail is read days after it is sent)");
}
