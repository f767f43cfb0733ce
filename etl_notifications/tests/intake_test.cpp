#include <doctest/doctest.h>

#include "intake.hpp"
#include "notify/time.hpp"

using namespace etl;

namespace {
RawMessage message(std::string value, std::optional<std::int64_t> ts = 1795000000000) {
  return RawMessage{"notify_events", 2, 42, std::string("u1+user_signed_up"), std::move(value), ts};
}
const notify::TimePoint kNow = *notify::parse_iso8601("2026-11-23T10:00:00Z");
const char* kSignup =
    R"({"id": "8f0c6d9e-1111-4222-8333-444455556666", "event_type": "user_signed_up",
        "priority": "immediate", "from_service": "auth",
        "details": {"email": "u@example.com", "confirm_link": "/s/AbC12"}})";

std::string reason(const std::variant<Event, Rejection>& r) {
  REQUIRE(std::holds_alternative<Rejection>(r));
  return std::get<Rejection>(r).reason;
}
}  // namespace

TEST_CASE("the Auth service's sign-up message is accepted as it is emitted today") {
  auto r = decode_event(message(kSignup), kNow);
  REQUIRE(std::holds_alternative<Event>(r));
  const Event& e = std::get<Event>(r);
  CHECK(e.identity == "notify_events/2/42");
  CHECK(e.type == "user_signed_up");
  CHECK(e.source == "auth");
  CHECK(e.priority == "immediate");
  CHECK(e.user_id == "8f0c6d9e-1111-4222-8333-444455556666");
  CHECK(e.details["confirm_link"] == "/s/AbC12");
  CHECK(e.time == notify::TimePoint(std::chrono::milliseconds(1795000000000)));
}

TEST_CASE("the event's time falls back to the Kafka timestamp, then to the time received") {
  CHECK(std::get<Event>(decode_event(message(kSignup, std::nullopt), kNow)).time == kNow);
  auto with_time = nlohmann::json::parse(kSignup);
  with_time["event_time"] = "2026-11-20T08:00:00+01:00";
  with_time["event_id"] = "evt-7";
  const Event e = std::get<Event>(decode_event(message(with_time.dump()), kNow));
  CHECK(notify::format_iso8601(e.time) == "2026-11-20T07:00:00.000Z");
  CHECK(e.identity == "evt-7");
}

TEST_CASE("bad events are refused with a clear reason") {
  CHECK(reason(decode_event(message("not json"), kNow)) == "value is not valid JSON");
  CHECK(reason(decode_event(message(""), kNow)) == "value is not valid JSON");
  CHECK(reason(decode_event(message("[1,2]"), kNow)) == "value is not a JSON object");
  CHECK(reason(decode_event(message(R"({"id": "x"})"), kNow)) ==
        "missing or non-string field 'event_type'");
  CHECK(reason(decode_event(message(R"({"event_type": "user_signed_up", "details": {}})"), kNow)) ==
        "missing or non-string field 'id'");
  CHECK(reason(decode_event(message(R"({"event_type": "user_signed_up", "id": "u"})"), kNow)) ==
        "missing or non-object field 'details'");
  CHECK(reason(decode_event(
            message(R"({"event_type": "user_signed_up", "id": "u", "details": {"email": "a@b"}})"),
            kNow)) == "missing or non-string field 'details.confirm_link'");
  CHECK(reason(decode_event(message(R"({"event_type": "party", "id": "u"})"), kNow)) ==
        "unknown event_type 'party'");
  CHECK(reason(decode_event(message(R"({"event_type": "x", "priority": "urgent"})"), kNow)) ==
        "unknown priority 'urgent' (immediate, high, normal, low)");
  auto bad_time = nlohmann::json::parse(kSignup);
  bad_time["event_time"] = "yesterday";
  CHECK(reason(decode_event(message(bad_time.dump()), kNow)) ==
        "event_time is not an ISO 8601 time: yesterday");
}
