#include <doctest/doctest.h>

#include <map>

#include <nlohmann/json.hpp>

#include "notify/config.hpp"
#include "notify/posting.hpp"
#include "notify/time.hpp"

using namespace notify;
using namespace std::chrono;

namespace {
Posting sample() {
  Posting p;
  p.posting_id = make_posting_id("notify_events/0/42", "user-1", "email");
  p.event_id = "notify_events/0/42";
  p.event_type = "user_signed_up";
  p.source = "auth";
  p.event_time = *parse_iso8601("2026-11-23T10:00:00Z");
  p.channel = notify::Channel::kEmail;
  p.template_name = "email/welcome";
  p.recipient = {"user-1", "ann@example.com", "Ann Lee", "Europe/Berlin", "en"};
  p.content = {"Welcome, Zoë", "Hello", "<p>Hello</p>"};
  p.priority = 9;
  p.quiet_hours = QuietHours::kBypass;
  p.created_at = *parse_iso8601("2026-11-23T10:00:01.250Z");
  p.expires_at = p.created_at + hours(24);
  return p;
}
}  // namespace

TEST_CASE("a posting survives its JSON encoding") {
  Posting p = sample();
  p.not_before = *parse_iso8601("2026-12-01T15:00:00Z");
  Posting q = decode_posting(encode(p));
  CHECK(q.posting_id == p.posting_id);
  CHECK(q.event_id == p.event_id);
  CHECK(q.event_time == p.event_time);
  CHECK(q.recipient.address == "ann@example.com");
  CHECK(q.recipient.timezone == "Europe/Berlin");
  CHECK(q.content.subject == "Welcome, Zoë");
  CHECK(q.priority == 9);
  CHECK(q.quiet_hours == QuietHours::kBypass);
  CHECK(q.created_at == p.created_at);
  CHECK(q.expires_at == p.expires_at);
  REQUIRE(q.not_before);
  CHECK(*q.not_before == *p.not_before);
  CHECK_FALSE(decode_posting(encode(sample())).not_before.has_value());
}

TEST_CASE("a bad posting is refused with the field it lacks") {
  CHECK_THROWS_WITH_AS(decode_posting("nope"), "posting: not valid JSON", PostingError);
  CHECK_THROWS_WITH_AS(decode_posting("[]"), "posting: not a JSON object", PostingError);
  auto j = nlohmann::json::parse(encode(sample()));
  j["recipient"].erase("address");
  CHECK_THROWS_WITH_AS(decode_posting(j.dump()), "posting: missing field recipient.address",
                       PostingError);
  j = nlohmann::json::parse(encode(sample()));
  j["priority"] = 12;
  CHECK_THROWS_AS(decode_posting(j.dump()), PostingError);
  j = nlohmann::json::parse(encode(sample()));
  j["schema_version"] = 2;
  CHECK_THROWS_AS(decode_posting(j.dump()), PostingError);
  j = nlohmann::json::parse(encode(sample()));
  j["expires_at"] = "tomorrow";
  CHECK_THROWS_AS(decode_posting(j.dump()), PostingError);
}

TEST_CASE("posting ids are deterministic per event, recipient and channel") {
  const auto a = make_posting_id("notify_events/0/42", "user-1", "email");
  CHECK(a == make_posting_id("notify_events/0/42", "user-1", "email"));
  CHECK(a.size() == 36);
  CHECK(a[14] == '5');  // UUID version 5
  CHECK(a != make_posting_id("notify_events/0/43", "user-1", "email"));
  CHECK(a != make_posting_id("notify_events/0/42", "user-2", "email"));
  CHECK(a != make_posting_id("notify_events/0/42", "user-1", "webhook"));
  CHECK(make_posting_id("a", "bc", "x") != make_posting_id("ab", "c", "x"));
}

TEST_CASE("ISO 8601 times with zones and fractions") {
  CHECK(format_iso8601(*parse_iso8601("2026-12-01T18:00:00+03:00")) == "2026-12-01T15:00:00.000Z");
  CHECK(format_iso8601(*parse_iso8601("2026-12-01T18:00:00.5Z")) == "2026-12-01T18:00:00.500Z");
  CHECK(format_iso8601(*parse_iso8601("2026-12-01T18:00:00-0500")) == "2026-12-01T23:00:00.000Z");
  CHECK(format_iso8601(*parse_iso8601("2026-12-01T18:00:00.123456+00:00")) ==
        "2026-12-01T18:00:00.123Z");  // what Python's isoformat() writes
  CHECK_FALSE(parse_iso8601("2026-12-01"));
  CHECK_FALSE(parse_iso8601("2026-12-01T18:00:00Zjunk"));
  CHECK_FALSE(parse_iso8601("2026-12-01T18:00:00.1234567890Z"));  // ten fractional digits
  CHECK_FALSE(parse_iso8601("2026-12-01T18:00:00.Z"));
  CHECK(format_iso8601(*parse_iso8601("2026-12-01T18:00:00.123456789Z")) ==
        "2026-12-01T18:00:00.123Z");
  CHECK(format_iso8601(*parse_iso8601("1969-12-31T23:59:59.250Z")) == "1969-12-31T23:59:59.250Z");
}

TEST_CASE("times from year 0001 to 9999 are read as written, never wrapped") {
  // A 64-bit nanosecond clock ends in 2262: these used to come back as dates in 1715 and 2115.
  CHECK(format_iso8601(*parse_iso8601("2300-01-01T00:00:00Z")) == "2300-01-01T00:00:00.000Z");
  CHECK(format_iso8601(*parse_iso8601("9999-12-31T23:59:59.999Z")) == "9999-12-31T23:59:59.999Z");
  CHECK(*parse_iso8601("9999-12-31T23:59:59.999Z") == notify::kLatestTime);
  CHECK(*parse_iso8601("0001-01-01T00:00:00Z") == notify::kEarliestTime);
  CHECK_FALSE(parse_iso8601("9999-12-31T23:59:59-01:00"));  // 10000-01-01 in UTC
  CHECK_FALSE(parse_iso8601("0001-01-01T00:00:00+01:00"));  // before year 1 in UTC
  CHECK_FALSE(parse_iso8601("99999-01-01T00:00:00Z"));
  CHECK_FALSE(parse_iso8601("2026-02-30T00:00:00Z"));
  // Found by fuzz_posting: anything but digits where they go is refused before date::parse.
  for (const char* odd : {"2026-11-23T10:00:e00.000Z", "2026-11-23T10:00:nanZ",
                          "2026-11-23T10:00:1e1Z", "2026-11-23T10:00:+1Z", "2026-1-23T10:00:00Z",
                          "+2026-11-23T10:00:00Z", "2026-11-23T10:00:0.5Z"}) {
    CAPTURE(odd);
    CHECK_FALSE(parse_iso8601(odd));
  }
  CHECK(parse_iso8601("2026-11-23 10:00:00Z") == parse_iso8601("2026-11-23T10:00:00Z"));
  // Found by fuzz_links: an offset is "Z", +hh:mm or +hhmm, nothing else.
  for (const std::string& odd :
       {std::string("1970-01-01T00:00:00.123-\0\0\0\0"
                    "0",
                    29),
        std::string("2026-11-23T10:00:00-"), std::string("2026-11-23T10:00:00+1"),
        std::string("2026-11-23T10:00:00+01:0x"), std::string("2026-11-23T10:00:00")}) {
    CAPTURE(odd);
    CHECK_FALSE(parse_iso8601(odd));
  }
  CHECK(parse_iso8601("2026-11-23T12:00:00+0200") == parse_iso8601("2026-11-23T10:00:00Z"));
  CHECK(notify::add_capped(notify::kLatestTime - std::chrono::hours(1), std::chrono::hours(48)) ==
        notify::kLatestTime);
  CHECK(notify::add_capped(notify::kEarliestTime, -std::chrono::hours(1)) == notify::kEarliestTime);
}

TEST_CASE("a posting valid until 9999 travels as written, and later expiries are capped") {
  Posting p = sample();
  p.expires_at = *parse_iso8601("9999-12-31T00:00:00Z");
  CHECK(decode_posting(encode(p)).expires_at == p.expires_at);
  p.expires_at = notify::kLatestTime + std::chrono::hours(24 * 400);
  CHECK(decode_posting(encode(p)).expires_at == notify::kLatestTime);
}

TEST_CASE("hostile postings are refused with a clear error, never crash") {
  const std::string good = encode(sample());
  CHECK_THROWS_WITH_AS(decode_posting(good + std::string(1, '\0') + "x"),
                       doctest::Contains("NUL byte"), PostingError);
  auto deep = nlohmann::json::parse(good);
  std::string text = good;
  text.insert(text.size() - 1,
              R"(,"extra": )" + std::string(200000, '[') + std::string(200000, ']'));
  CHECK_THROWS_WITH_AS(decode_posting(text), "posting: JSON nested deeper than MAX_JSON_DEPTH=64",
                       PostingError);
  deep["priority"] = 4294967296LL;  // used to be cut to 0
  CHECK_THROWS_WITH_AS(decode_posting(deep.dump()),
                       "posting: field priority must be an integer 0..9", PostingError);
  deep = nlohmann::json::parse(good);
  deep["schema_version"] = 4294967297LL;
  CHECK_THROWS_AS(decode_posting(deep.dump()), PostingError);
  deep = nlohmann::json::parse(good);
  deep["expires_at"] = "2300-01-01T00:00:00Z";
  CHECK(format_iso8601(decode_posting(deep.dump()).expires_at) == "2300-01-01T00:00:00.000Z");
  CHECK_FALSE(parse_iso8601(""));
}

TEST_CASE("configuration values are validated with the variable's name") {
  std::map<std::string, std::string> vars = {{"A", "12"}, {"B", "x"},       {"D", "250ms"},
                                             {"E", "5m"}, {"F", "3 weeks"}, {"G", "yes"}};
  Env env([&](const std::string& k) -> std::optional<std::string> {
    auto it = vars.find(k);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  });
  CHECK(env.integer("A", 1, 0, 100) == 12);
  CHECK(env.integer("MISSING", 7, 0, 100) == 7);
  CHECK_THROWS_WITH_AS(env.integer("B", 1, 0, 100), "B=x: not an integer", ConfigError);
  CHECK_THROWS_WITH_AS(env.integer("A", 1, 0, 10), "A=12: must be between 0 and 10", ConfigError);
  CHECK(env.duration("D", seconds(1)) == milliseconds(250));
  CHECK(env.duration("E", seconds(1)) == minutes(5));
  CHECK_THROWS_AS(env.duration("F", seconds(1)), ConfigError);
  CHECK(env.boolean("G", false));
  CHECK(env.str("MISSING", "dflt") == "dflt");
}
