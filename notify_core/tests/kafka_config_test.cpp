// Configuration errors of the Kafka edge surface before any connection is made.

#include <doctest/doctest.h>

#include <functional>
#include <string>

#include "notify/kafka.hpp"

namespace kafka = notify::kafka;

namespace {

// Nothing listens there: the errors must come before any connection; a producer that is built
// only gets "connection refused" in the background.
constexpr const char* kNowhere = "127.0.0.1:1";

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const kafka::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("kafka consumer: an unknown property is an error naming it") {
  kafka::Consumer::Options o{kNowhere, "group", {"topic"}, "earliest", {{"no.such.property", "1"}}};
  const auto what = error_of([&] { kafka::Consumer(o, nullptr); });
  CHECK(what.find("no.such.property") != std::string::npos);
}

TEST_CASE("kafka consumer: a bad value of a known property is an error naming it") {
  kafka::Consumer::Options o{kNowhere, "group", {"topic"}, "sometimes", {}};
  const auto what = error_of([&] { kafka::Consumer(o, nullptr); });
  CHECK(what.find("auto.offset.reset") != std::string::npos);
}

TEST_CASE("kafka consumer: no topics is an error") {
  kafka::Consumer::Options o{kNowhere, "group", {}, "earliest", {}};
  CHECK_THROWS_AS(kafka::Consumer(o, nullptr), kafka::Error);
}

TEST_CASE("kafka producer: an unknown property is an error naming it") {
  const auto what = error_of([] { kafka::Producer(kNowhere, {{"linger.mss", "5"}}); });
  CHECK(what.find("linger.mss") != std::string::npos);
}

TEST_CASE("kafka producer: extra properties override the defaults") {
  CHECK_NOTHROW(kafka::Producer(
      kNowhere, {{"linger.ms", "5"}, {"acks", "1"}, {"enable.idempotence", "false"}}));
}
