// The worker's settings of the delivery ledger: LEDGER_URL (or none) and LEDGER_LEASE, read and
// refused as a user types them.

#include <doctest/doctest.h>

#include <map>
#include <string>

#include "config.hpp"
#include "redis_ledger.hpp"

using namespace worker;
using namespace std::chrono_literals;

namespace {

WorkerConfig load(const std::map<std::string, std::string>& values) {
  return load_config(notify::Env([values](const std::string& name) -> std::optional<std::string> {
    const auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  }));
}

}  // namespace

TEST_CASE("ledger settings: on by default on the local Redis, lease twice SMTP_TIMEOUT") {
  const WorkerConfig c = load({});
  CHECK(c.ledger_url == "redis://127.0.0.1:6379/0");
  CHECK(c.ledger_lease == 60s);
  CHECK(load({{"SMTP_TIMEOUT", "5s"}}).ledger_lease == 10s);
  CHECK(load({{"LEDGER_LEASE", "2m"}}).ledger_lease == 2min);
}

TEST_CASE("ledger settings: none turns the ledger off") {
  CHECK(load({{"LEDGER_URL", "none"}}).ledger_url.empty());
  // Without a ledger a lease is not used, so it is not checked either.
  CHECK_NOTHROW(load({{"LEDGER_URL", "none"}, {"LEDGER_LEASE", "1s"}}));
}

TEST_CASE("ledger settings: a lease not longer than SMTP_TIMEOUT is refused, naming both") {
  try {
    load({{"LEDGER_LEASE", "30s"}});
    FAIL("accepted a lease as long as SMTP_TIMEOUT");
  } catch (const notify::ConfigError& e) {
    const std::string what = e.what();
    CHECK(what.find("LEDGER_LEASE=30s") != std::string::npos);
    CHECK(what.find("SMTP_TIMEOUT (30s)") != std::string::npos);
  }
}

TEST_CASE("ledger settings: a bad URL is refused without its password") {
  for (const char* url : {"http://127.0.0.1:6379/0", "redis://", "redis://:secret@host/x",
                          "redis://:secret@host:99999/0", "redis://host/0?x=1", "not a url"}) {
    CAPTURE(url);
    try {
      load({{"LEDGER_URL", url}});
      FAIL("accepted");
    } catch (const notify::ConfigError& e) {
      const std::string what = e.what();
      CHECK(what.rfind("LEDGER_URL: ", 0) == 0);
      CHECK(what.find("secret") == std::string::npos);
    }
  }
}

TEST_CASE("redis addresses: host, port, database and credentials") {
  const RedisAddress a = RedisAddress::parse("redis://127.0.0.1:6380/3");
  CHECK(a.host == "127.0.0.1");
  CHECK(a.port == 6380);
  CHECK(a.db == 3);
  CHECK(a.password.empty());
  CHECK(a.display() == "redis://127.0.0.1:6380/3");

  const RedisAddress b = RedisAddress::parse("redis://ledger");
  CHECK(b.port == 6379);
  CHECK(b.db == 0);

  const RedisAddress c = RedisAddress::parse("redis://worker:p%40ss@ledger:6379/0");
  CHECK(c.username == "worker");
  CHECK(c.password == "p@ss");
  CHECK(c.display() == "redis://ledger:6379/0");  // never the credentials

  const RedisAddress d = RedisAddress::parse("redis://[::1]:6379/1");
  CHECK(d.host == "::1");
  CHECK(d.display() == "redis://[::1]:6379/1");
}

TEST_CASE("ledger keys and how long a sent posting is kept") {
  CHECK(ledger_key("11111111-2222-5333-8444-555555555555") ==
        "notify:ledger:11111111-2222-5333-8444-555555555555");
  const notify::TimePoint now = *notify::parse_iso8601("2026-11-23T12:00:00Z");
  CHECK(ledger_keep_until(now + 48h, now) == now + 49h);
  // Sent at the last moment (or with a clock ahead of the ETL's): kept past now all the same.
  CHECK(ledger_keep_until(now - 1h, now) == now + 1h);
  // The latest readable time does not overflow.
  CHECK(ledger_keep_until(notify::kLatestTime, now) == notify::kLatestTime);
}

TEST_CASE("SMTP_FROM: an address or Name <address>; the default has a display name") {
  CHECK(load({}).smtp_from == "Notifications <notifications@example.com>");
  CHECK(load({{"SMTP_FROM", "ops@example.org"}}).smtp_from == "ops@example.org");
  CHECK(load({{"SMTP_FROM", "Zoë's Team <ops@example.org>"}}).smtp_from ==
        "Zoë's Team <ops@example.org>");
  CHECK(load({{"SMTP_FROM", R"("Team, Ops" <ops@example.org>)"}}).smtp_from ==
        R"("Team, Ops" <ops@example.org>)");
  for (const char* bad : {"nobody", "Ops <ops@example.org", "Ops <nobody>", "a b@example.org"}) {
    CAPTURE(bad);
    try {
      load({{"SMTP_FROM", bad}});
      FAIL("accepted");
    } catch (const notify::ConfigError& e) {
      CHECK(std::string(e.what()).find(std::string("SMTP_FROM=") + bad) != std::string::npos);
    }
  }
}

TEST_CASE("status settings: on by default, an empty topic turns them off, the buffer bounded") {
  const WorkerConfig c = load({});
  CHECK(c.status_topic == "notify_status");
  CHECK(c.kafka_bootstrap_servers == "127.0.0.1:9092");
  CHECK(c.status_buffer == 100000);
  CHECK(load({{"NOTIFY_STATUS_TOPIC", ""}}).status_topic.empty());
  CHECK(load({{"NOTIFY_STATUS_TOPIC", "outcomes"}}).status_topic == "outcomes");
  CHECK(load({{"KAFKA_BOOTSTRAP_SERVERS", "kafka:29092"}}).kafka_bootstrap_servers ==
        "kafka:29092");
  CHECK(load({{"STATUS_BUFFER", "5"}}).status_buffer == 5);
  CHECK_THROWS_AS(load({{"STATUS_BUFFER", "0"}}), notify::ConfigError);
  CHECK_THROWS_AS(load({{"STATUS_BUFFER", "many"}}), notify::ConfigError);
  CHECK_THROWS_WITH_AS(load({{"KAFKA_BOOTSTRAP_SERVERS", ""}}),
                       doctest::Contains("KAFKA_BOOTSTRAP_SERVERS is empty"), notify::ConfigError);
  // Off, the broker is not needed.
  CHECK_NOTHROW(load({{"NOTIFY_STATUS_TOPIC", ""}, {"KAFKA_BOOTSTRAP_SERVERS", ""}}));
}
