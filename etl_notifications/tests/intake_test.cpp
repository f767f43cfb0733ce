#include <doctest/doctest.h>

#include "intake.hpp"
#include "notify/time.hpp"

using namespace etl;

namespace {
RawMessage message(std::string value, std::optional<std::int64_t> ts = 1795000000000) {
  return RawMessage{"notify_events",  2,  42, std::string("u1+user_signed_up"),
                    std::move(value), ts, {}};
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

TEST_CASE("the catalogue: password change, mailing, reminder, generic request") {
  auto ok = [](const std::string& value) {
    auto r = decode_event(message(value), kNow);
    if (auto* rej = std::get_if<Rejection>(&r)) FAIL_CHECK(rej->reason);
    REQUIRE(std::holds_alternative<Event>(r));
    return std::get<Event>(r);
  };
  const Event pw = ok(R"({"id": "u1", "event_type": "user_changed_password_successfully",
                          "from_service": "auth", "details": {"email": "u@example.com"}})");
  CHECK(pw.user_id == "u1");

  const Event mailing = ok(R"({"event_type": "mailing", "from_service": "mailing",
      "receivers": "http://auth/api/v1/users/?is_active=true&page_number=1&page_size=500",
      "template": "email/new_movies", "delivery_type": ["email"],
      "template_context": {"title": "New"}, "expires_in": "2 days"})");
  CHECK(mailing.receivers.find("page_size=500") != std::string::npos);
  CHECK(mailing.template_name == "email/new_movies");
  CHECK(mailing.channels == std::vector{notify::Channel::kEmail});
  CHECK(mailing.expires_in == std::chrono::hours(48));
  CHECK(mailing.template_context["title"] == "New");

  const Event reminder = ok(R"({"event_type": "reminder", "user_id": "u2",
      "send_at": "2026-12-01T18:00:00+03:00", "template": "email/event_reminder",
      "template_context": {"event_name": "Premiere"}})");
  CHECK(notify::format_iso8601(*reminder.send_at) == "2026-12-01T15:00:00.000Z");

  const Event request = ok(R"({"event_type": "notification_requested", "event_id": "req-1",
      "user_ids": ["u1", "u2", "u1"], "template": "email/generic", "template_context": {},
      "channels": ["email", "webhook"], "priority": "high", "expires_in": "PT2H",
      "quiet_hours": "bypass"})");
  CHECK(request.identity == "req-1");
  CHECK(request.user_ids == std::vector<std::string>{"u1", "u2"});  // duplicates dropped
  CHECK(request.channels == std::vector{notify::Channel::kEmail, notify::Channel::kWebhook});
  CHECK(request.expires_in == std::chrono::hours(2));
  CHECK(request.quiet_hours == notify::QuietHours::kBypass);
  CHECK_FALSE(request.category);  // the type's default: transactional

  const Event bulk = ok(R"({"event_type": "notification_requested", "event_id": "req-2",
      "user_ids": ["u1"], "template": "email/generic", "category": "bulk"})");
  CHECK(bulk.category == notify::Category::kBulk);
  const Event transactional = ok(R"({"event_type": "notification_requested", "event_id": "req-3",
      "user_ids": ["u1"], "template": "email/generic", "category": "transactional"})");
  CHECK(transactional.category == notify::Category::kTransactional);
}

TEST_CASE("schema violations of the catalogue are refused with the field") {
  auto why = [](const std::string& value) { return reason(decode_event(message(value), kNow)); };
  CHECK(why(R"({"event_type": "mailing", "template": "email/x"})") ==
        "missing or non-string field 'receivers'");
  CHECK(why(R"({"event_type": "mailing", "receivers": "http://a/", "template": "t",
               "delivery_type": ["pigeon"]})") ==
        "unknown channel \"pigeon\" in 'delivery_type' (email, webhook)");
  CHECK(why(R"({"event_type": "mailing", "receivers": "http://a/", "template": "t",
               "expires_in": "soon"})") ==
        "expires_in is not a duration (e.g. \"2 days\", \"120 sec\", \"PT2H\"): \"soon\"");
  CHECK(
      why(R"({"event_type": "reminder", "user_id": "u", "send_at": "tomorrow", "template": "t"})") ==
      "send_at is not an ISO 8601 time: tomorrow");
  CHECK(why(R"({"event_type": "notification_requested", "user_ids": ["u"], "template": "t"})") ==
        "missing or non-string field 'event_id'");
  CHECK(why(R"({"event_type": "notification_requested", "event_id": "e", "user_ids": [],
               "template": "t"})") == "field 'user_ids' must be a non-empty array of strings");
  CHECK(why(R"({"event_type": "notification_requested", "event_id": "e", "user_ids": ["u"],
               "template": "t", "template_context": []})") ==
        "field 'template_context' must be an object");
  CHECK(why(R"({"event_type": "notification_requested", "event_id": "e", "user_ids": ["u"],
               "template": "t", "quiet_hours": "sometimes"})") ==
        "quiet_hours must be respect or bypass, not 'sometimes'");
  CHECK(why(R"({"event_type": "notification_requested", "event_id": "e", "user_ids": ["u"],
               "template": "t", "category": "newsletter"})") ==
        "category must be transactional or bulk, not \"newsletter\"");
  CHECK(why(R"({"event_type": "notification_requested", "event_id": "e", "user_ids": ["u"],
               "template": "t", "category": 1})") ==
        "category must be transactional or bulk, not 1");
}

TEST_CASE("limits: event size and recipients per event") {
  IntakeLimits limits;
  limits.max_event_bytes = 100;
  auto big = decode_event(message(std::string(200, ' ')), kNow, limits);
  CHECK(std::get<Rejection>(big).reason == "event of 200 bytes is larger than MAX_EVENT_BYTES=100");
  limits = IntakeLimits{};
  limits.max_recipients = 2;
  auto many = decode_event(message(R"({"event_type": "notification_requested", "event_id": "e",
      "user_ids": ["a", "b", "c"], "template": "t"})"),
                           kNow, limits);
  CHECK(std::get<Rejection>(many).reason ==
        "user_ids has 3 recipients, more than MAX_RECIPIENTS=2");
}

TEST_CASE("expires_in: plain words and ISO 8601 durations") {
  using namespace std::chrono;
  CHECK(parse_expires_in("120 sec") == seconds(120));
  CHECK(parse_expires_in("1 hour") == hours(1));
  CHECK(parse_expires_in("2 days") == hours(48));
  CHECK(parse_expires_in("90 minutes") == minutes(90));
  CHECK(parse_expires_in("PT2H") == hours(2));
  CHECK(parse_expires_in("P2D") == hours(48));
  CHECK(parse_expires_in("P1DT12H30M") == hours(36) + minutes(30));
  CHECK(parse_expires_in("PT45S") == seconds(45));
  CHECK_FALSE(parse_expires_in("soon"));
  CHECK_FALSE(parse_expires_in("P"));
  CHECK_FALSE(parse_expires_in("PT"));
  CHECK_FALSE(parse_expires_in("P1H"));  // hours belong after T
  CHECK_FALSE(parse_expires_in("0 sec"));
  CHECK_FALSE(parse_expires_in("2 fortnights"));
  CHECK_FALSE(parse_expires_in("999999999999 weeks"));  // would overflow: refused
  CHECK_FALSE(parse_expires_in("P999999999999W"));
  CHECK(parse_expires_in("3650 days") == hours(24 * 3650));
  CHECK_FALSE(parse_expires_in(""));
}

TEST_CASE("hostile events are refused with a bounded reason, never crash") {
  SUBCASE("nesting deeper than MAX_JSON_DEPTH, wherever it is") {
    const std::string deep(300000, '[');
    for (const std::string& where :
         {std::string("details"), std::string("template_context"), std::string("channels")}) {
      const std::string value = R"({"event_type": "user_signed_up", ")" + where + R"(": )" + deep;
      CHECK(reason(decode_event(message(value), kNow)) ==
            "value is JSON nested deeper than MAX_JSON_DEPTH=64");
    }
    IntakeLimits limits;
    limits.max_json_depth = 3;
    auto nested = nlohmann::json::parse(kSignup);
    nested["details"]["a"] = {{"b", {1}}};  // depth 4
    CHECK(reason(decode_event(message(nested.dump()), kNow, limits)) ==
          "value is JSON nested deeper than MAX_JSON_DEPTH=3");
    nested["details"]["a"] = {{"b", 1}};  // depth 3
    CHECK(std::holds_alternative<Event>(decode_event(message(nested.dump()), kNow, limits)));
  }
  SUBCASE("bytes after the one JSON value") {
    const std::string nul = std::string(kSignup) + std::string(1, '\0') + "anything";
    CHECK(
        reason(decode_event(message(nul), kNow)).starts_with("value is not valid JSON: NUL byte"));
    CHECK(reason(decode_event(message(std::string(kSignup) + " {}"), kNow)) ==
          "value is not valid JSON");
    CHECK(std::holds_alternative<Event>(decode_event(message(std::string(kSignup) + " \n"), kNow)));
  }
  SUBCASE("long values are refused without being quoted whole") {
    auto long_type = nlohmann::json::parse(kSignup);
    long_type["event_type"] = std::string(700000, 'x');
    CHECK(reason(decode_event(message(long_type.dump()), kNow)) ==
          "field 'event_type' is longer than 200 bytes");
    auto long_priority = nlohmann::json::parse(kSignup);
    long_priority["priority"] = std::string(150, 'p');
    const std::string why = reason(decode_event(message(long_priority.dump()), kNow));
    CHECK(why.size() < 200);
    CHECK(why.find("(150 bytes)") != std::string::npos);
    auto long_id = nlohmann::json::parse(kSignup);
    long_id["event_id"] = std::string(300, 'e');
    CHECK(reason(decode_event(message(long_id.dump()), kNow)) ==
          "field 'event_id' is longer than 256 bytes");
  }
  SUBCASE("times beyond what the service represents are refused, not wrapped") {
    auto t = nlohmann::json::parse(kSignup);
    t["event_time"] = "2300-01-01T00:00:00Z";
    auto far = decode_event(message(t.dump()), kNow);
    REQUIRE(std::holds_alternative<Event>(far));
    CHECK(notify::format_iso8601(std::get<Event>(far).time) == "2300-01-01T00:00:00.000Z");
    t["event_time"] = "10000-01-01T00:00:00Z";
    CHECK(reason(decode_event(message(t.dump()), kNow))
              .starts_with("event_time is not an ISO 8601 time"));
  }
  SUBCASE("integers beyond their field are refused, not cut") {
    auto e = nlohmann::json::parse(R"({"event_type": "mailing", "receivers": "http://a/",
        "template": "t"})");
    e["expires_in"] = 18446744073709551615ULL;
    CHECK(
        reason(decode_event(message(e.dump()), kNow)).starts_with("expires_in is not a duration"));
    e["expires_in"] = 9223372036854775807LL;
    CHECK(
        reason(decode_event(message(e.dump()), kNow)).starts_with("expires_in is not a duration"));
    e["expires_in"] = 4294967296LL + 60;
    CHECK(
        reason(decode_event(message(e.dump()), kNow)).starts_with("expires_in is not a duration"));
  }
}

namespace {
RawMessage replayed(notify::kafka::Headers headers, std::string value = kSignup) {
  RawMessage m = message(std::move(value));
  m.topic = "notify_events";
  m.partition = 0;
  m.offset = 9000;
  m.headers = std::move(headers);
  return m;
}
const notify::kafka::Headers kFirstArrival = {{"error", "auth: 404"},
                                              {"original_topic", "notify_events"},
                                              {"original_partition", "2"},
                                              {"original_offset", "42"},
                                              {"replayed_from", "notify_events.dlq[1]@7"}};
}  // namespace

TEST_CASE("a replayed event keeps the identity of its first arrival, from its headers") {
  // Replayed at notify_events/0/9000; it first arrived at notify_events/2/42.
  auto r = decode_event(replayed(kFirstArrival), kNow);
  REQUIRE(std::holds_alternative<Event>(r));
  CHECK(std::get<Event>(r).identity == "notify_events/2/42");
  CHECK(std::get<Event>(r).identity == message_identity(message(kSignup)));

  SUBCASE("without the headers it is a new event") {
    CHECK(std::get<Event>(decode_event(replayed({{"replayed_from", "x"}}), kNow)).identity ==
          "notify_events/0/9000");
  }
  SUBCASE("an event_id wins: it travels in the value and is the same on a replay anyway") {
    auto with_id = nlohmann::json::parse(kSignup);
    with_id["event_id"] = "evt-1";
    CHECK(std::get<Event>(decode_event(replayed(kFirstArrival, with_id.dump()), kNow)).identity ==
          "evt-1");
  }
  SUBCASE("the largest partition and offset there are") {
    const auto origin = origin_of({{"original_topic", std::string(249, 'a')},
                                   {"original_partition", "2147483647"},
                                   {"original_offset", "9223372036854775807"}});
    REQUIRE(std::holds_alternative<Origin>(origin));
    CHECK(std::get<Origin>(origin).partition == 2147483647);
    CHECK(std::get<Origin>(origin).offset == 9223372036854775807LL);
    CHECK(std::holds_alternative<std::monostate>(origin_of({{"trace", "1"}})));
  }
}

TEST_CASE("first-arrival headers are parsed strictly: a malformed one is refused with why") {
  auto with = [](const std::string& name, const std::string& value) {
    notify::kafka::Headers h;
    for (const auto& [k, v] : kFirstArrival) h.emplace_back(k, k == name ? value : v);
    return h;
  };
  auto without = [](const std::string& name) {
    notify::kafka::Headers h;
    for (const auto& [k, v] : kFirstArrival) {
      if (k != name) h.emplace_back(k, v);
    }
    return h;
  };
  auto refused = [](const notify::kafka::Headers& h) {
    return reason(decode_event(replayed(h), kNow));
  };

  CHECK(refused(without("original_offset")) ==
        "header original_offset is missing: the first arrival of a replayed event is "
        "original_topic, original_partition and original_offset, once each");
  CHECK(refused({{"original_topic", "t"}}).starts_with("header original_partition is missing"));
  auto twice = kFirstArrival;
  twice.emplace_back("original_partition", "2");  // even the same value: which one is meant?
  CHECK(refused(twice).starts_with("header original_partition appears more than once"));

  for (const std::string& bad : std::vector<std::string>{"", "a/b", "a b", "..", ".", "t\n",
                                                         std::string(250, 'a'), "caf\xc3\xa9"}) {
    CAPTURE(bad);
    CHECK(refused(with("original_topic", bad))
              .starts_with("header original_topic is not a Kafka topic name: \""));
  }
  for (const std::string& bad :
       std::vector<std::string>{"", "-1", "+1", "01", " 1", "1 ", "1.0", "0x10", "2147483648",
                                "99999999999999999999", "１"}) {
    CAPTURE(bad);
    CHECK(refused(with("original_partition", bad))
              .starts_with("header original_partition is not a partition number: \""));
  }
  for (const std::string& bad :
       std::vector<std::string>{"", "-5", "007", "9223372036854775808", "18446744073709551616",
                                "1e3", std::string("42\0", 3)}) {
    CAPTURE(bad);
    CHECK(refused(with("original_offset", bad))
              .starts_with("header original_offset is not an offset: \""));
  }
  // A hostile value is quoted and cut in the reason.
  const auto why = refused(with("original_topic", std::string(100'000, '\x01')));
  CHECK(why.size() < 1000);
  CHECK(why.find('\x01') == std::string::npos);

  SUBCASE("checked even when an event_id makes the headers unused") {
    auto with_id = nlohmann::json::parse(kSignup);
    with_id["event_id"] = "evt-1";
    CHECK(reason(decode_event(replayed(with("original_offset", "x"), with_id.dump()), kNow))
              .starts_with("header original_offset is not an offset"));
  }
}
