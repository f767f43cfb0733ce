// The ETL's status events as data: which identity a refused event is known by (as decode_event
// would name it), and one skipped event per channel with the posting id it would have had.
#include <doctest/doctest.h>

#include <string>

#include "notify/time.hpp"
#include "status_events.hpp"

using namespace etl;

namespace {

const notify::TimePoint kNow = *notify::parse_iso8601("2026-12-01T12:00:03.250Z");

notify::kafka::Message message(const std::string& value, notify::kafka::Headers headers = {}) {
  notify::kafka::Message m;
  m.topic = "notify_events";
  m.partition = 2;
  m.offset = 41;
  m.value = value;
  m.headers = std::move(headers);
  return m;
}

const notify::kafka::Headers kFirstArrival = {
    {"original_topic", "notify_events"}, {"original_partition", "0"}, {"original_offset", "7"}};

}  // namespace

TEST_CASE("a refused event is known by the identity decode_event gives it") {
  const IntakeLimits limits;
  auto refused = [&](const notify::kafka::Message& m, const std::string& type = "") {
    return refused_event(m, nullptr, type, "why", limits, kNow);
  };

  SUBCASE("decoded: its identity and type") {
    Event event;
    event.identity = "signup-1";
    event.type = "user_signed_up";
    const auto e =
        refused_event(message("{}"), &event, "user_signed_up", "unknown user u-9", limits, kNow);
    notify::status::Event expected;
    expected.status = "refused";
    expected.time = kNow;
    expected.service = "etl_notifications";
    expected.event_id = "signup-1";
    expected.event_type = "user_signed_up";
    expected.reason = "unknown user u-9";
    CHECK(e == expected);
    CHECK(notify::status::key_of(e) == "signup-1");
  }
  SUBCASE("not decoded, with an event_id of its own") {
    const auto e = refused(message(R"({"event_type": "mailing", "event_id": "m-48"})"));
    CHECK(e.event_id == "m-48");
    CHECK(e.event_type == "mailing");
    CHECK(e.reason == "why");
    CHECK(e.user_id.empty());
  }
  SUBCASE("the type decoded before planning refused it") {
    CHECK(refused(message(R"({"event_type": "x"})"), "mailing").event_type == "mailing");
  }
  SUBCASE("not JSON: where it arrived") {
    CHECK(refused(message("not json")).event_id == "notify_events/2/41");
    CHECK(refused(message("[1]")).event_id == "notify_events/2/41");
    CHECK(refused(message(R"({"event_id": ""})")).event_id == "notify_events/2/41");
    CHECK(refused(message(R"({"event_id": 7})")).event_id == "notify_events/2/41");
    CHECK(refused(message(R"({"event_id": ")" + std::string(257, 'x') + R"("})")).event_id ==
          "notify_events/2/41");
  }
  SUBCASE("a replay: where it first arrived") {
    CHECK(refused(message("not json", kFirstArrival)).event_id == "notify_events/0/7");
    // Malformed first-arrival headers (that is why it was refused): its own place.
    CHECK(refused(message("not json", {{"original_offset", "-5"}})).event_id ==
          "notify_events/2/41");
  }
  SUBCASE("too large or too deep to read: where it arrived") {
    const std::string big = R"({"event_id": "big", "pad": ")" + std::string(1000, 'x') + R"("})";
    CHECK(
        refused_event(message(big), nullptr, "", "why", IntakeLimits{100, 10, 64}, kNow).event_id ==
        "notify_events/2/41");
    const std::string deep = R"({"event_id": "deep", "a": [[[[1]]]]})";
    CHECK(refused_event(message(deep), nullptr, "", "why", IntakeLimits{1000, 10, 3}, kNow)
              .event_id == "notify_events/2/41");
    CHECK(refused_event(message(deep), nullptr, "", "why", IntakeLimits{1000, 10, 5}, kNow)
              .event_id == "deep");
  }
}

TEST_CASE("a skipped recipient: one event per channel, each with its posting id") {
  Event event;
  event.identity = "req-1";
  event.type = "notification_requested";
  Request request;
  request.template_name = "email/generic";
  request.channels = {notify::Channel::kEmail, notify::Channel::kWebhook};
  const auto events = skipped_events(event, request, "u-1", "inactive", kNow);
  REQUIRE(events.size() == 2);
  notify::status::Event expected;
  expected.status = "skipped";
  expected.time = kNow;
  expected.service = "etl_notifications";
  expected.event_id = "req-1";
  expected.event_type = "notification_requested";
  expected.posting_id = notify::make_posting_id("req-1", "u-1", "email");
  expected.user_id = "u-1";
  expected.channel = "email";
  expected.template_name = "email/generic";
  expected.reason = "inactive";
  CHECK(events[0] == expected);
  CHECK(events[1].channel == "webhook");
  CHECK(events[1].posting_id == notify::make_posting_id("req-1", "u-1", "webhook"));
  CHECK(events[0].posting_id != events[1].posting_id);
  CHECK(notify::status::key_of(events[0]) == "u-1");
}
