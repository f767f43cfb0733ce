#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

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

namespace {
// How encode() wrote a posting before it wrote without a tree: its bytes are the reference.
std::string tree_encoded(const Posting& p) {
  auto written = [](TimePoint t) {
    return format_iso8601(std::clamp(t, kEarliestTime, kLatestTime));
  };
  nlohmann::json j = {
      {"schema_version", kPostingSchemaVersion},
      {"posting_id", p.posting_id},
      {"event",
       {{"id", p.event_id},
        {"type", p.event_type},
        {"source", p.source},
        {"time", written(p.event_time)}}},
      {"channel", to_string(p.channel)},
      {"template", p.template_name},
      {"recipient",
       {{"user_id", p.recipient.user_id},
        {"address", p.recipient.address},
        {"name", p.recipient.name},
        {"timezone", p.recipient.timezone},
        {"locale", p.recipient.locale}}},
      {"content",
       {{"subject", p.content.subject}, {"text", p.content.text}, {"html", p.content.html}}},
      {"priority", p.priority},
      {"quiet_hours", to_string(p.quiet_hours)},
      {"created_at", written(p.created_at)},
      {"expires_at", written(p.expires_at)},
  };
  if (p.not_before) j["not_before"] = written(*p.not_before);
  j["category"] = to_string(p.category);
  if (!p.unsubscribe.url.empty()) j["unsubscribe"]["url"] = p.unsubscribe.url;
  if (!p.unsubscribe.mailto.empty()) j["unsubscribe"]["mailto"] = p.unsubscribe.mailto;
  return j.dump();
}

// encode() and the reference agree: the same bytes, or both throw.
void check_same_as_tree(const Posting& p) {
  std::string reference;
  bool reference_threw = false;
  try {
    reference = tree_encoded(p);
  } catch (const nlohmann::json::exception&) {
    reference_threw = true;
  }
  if (reference_threw) {
    CHECK_THROWS_AS(encode(p), nlohmann::json::exception);
  } else {
    CHECK(encode(p) == reference);
  }
}
}  // namespace

TEST_CASE("a posting is encoded byte for byte as the JSON tree was serialised") {
  Posting p = sample();
  check_same_as_tree(p);
  p.not_before = *parse_iso8601("2026-12-01T15:00:00Z");
  p.channel = Channel::kWebhook;
  p.quiet_hours = QuietHours::kRespect;
  p.priority = 0;
  p.expires_at = TimePoint::max();  // capped as written
  check_same_as_tree(p);
  p.category = Category::kBulk;
  p.unsubscribe.url = "https://example.org/unsubscribe?token=v1.dS0x.bulk.1.AAAA";
  check_same_as_tree(p);
  p.unsubscribe.mailto = "mailto:unsubscribe@example.org?subject=unsubscribe%20v1.x";
  check_same_as_tree(p);
  p.unsubscribe.url.clear();
  check_same_as_tree(p);

  SUBCASE("quotes, backslashes, control characters, DEL and Unicode") {
    std::string every_ascii;
    for (int c = 0; c < 0x80; ++c) every_ascii.push_back(static_cast<char>(c));
    p.content.subject = every_ascii;
    p.content.text = "\"quoted\" \\ back\\slash\n\r\t\b\f tab\x01\x1f end";
    p.content.html = "<a href=\"x\">Zoë – 日本語 😀 \u2028 \xef\xbf\xbf</a>";
    p.recipient.name = "O'Brien \"the\" \x7f";
    p.unsubscribe.url = "https://example.org/u?a=\"b\"&c=\\\n";
    check_same_as_tree(p);
    const Posting q = decode_posting(encode(p));
    CHECK(q.content.subject == p.content.subject);
    CHECK(q.content.text == p.content.text);
    CHECK(q.content.html == p.content.html);
    CHECK(q.recipient.name == p.recipient.name);
  }
  SUBCASE("text that is not UTF-8 is refused as nlohmann refuses it") {
    for (const char* bad : {"\xff", "a\xc3", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                            "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "ok\xe2\x82"}) {
      p.content.text = bad;
      CHECK_THROWS_AS(encode(p), nlohmann::json::exception);
      check_same_as_tree(p);
    }
  }
  SUBCASE("every byte at every place of a long text (read 16 and 8 bytes at a time)") {
    const std::string plain(70, 'p');
    for (int c = 0; c < 0x100; ++c) {
      for (std::size_t at = 0; at < plain.size(); at += (c % 7 == 0 ? 1 : 5)) {
        std::string text = plain;
        text[at] = static_cast<char>(c);
        // Continuation bytes after a lead byte, so that UTF-8 is whole where it can be.
        const std::size_t continuations = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC2 ? 1 : 0;
        if (c <= 0xF4 && at + continuations < text.size()) {
          for (std::size_t k = 1; k <= continuations; ++k) text[at + k] = static_cast<char>(0x80);
          if (c == 0xE0) text[at + 1] = static_cast<char>(0xA0);
          if (c == 0xF0) text[at + 1] = static_cast<char>(0x90);
        }
        p.content.text = text;
        check_same_as_tree(p);
      }
    }
  }
  SUBCASE("random bytes: the same output, or the same refusal") {
    std::mt19937 random(12);  // fixed: a failure can be replayed
    const std::string alphabet = std::string("\x00\x1f\"\\aZ~\x7f", 8) +
                                 "\x80\xbf\xc2\xdf\xe0\xed\xef\xf0\xf4\xf5\xa0\x9f\x8f\x90";
    for (int round = 0; round < 5000; ++round) {
      std::string text;
      const int size = static_cast<int>(random() % 40);
      // Mostly plain text, so that runs of plain bytes of every length and alignment occur.
      const bool plain = round % 2 == 0;
      for (int i = 0; i < size; ++i) {
        text.push_back(plain && random() % 16 != 0 ? static_cast<char>('a' + random() % 26)
                                                   : alphabet[random() % alphabet.size()]);
      }
      p.content.html = text;
      check_same_as_tree(p);
    }
  }
}

TEST_CASE("a posting's category and unsubscribe links survive its encoding") {
  Posting p = sample();
  CHECK(p.category == Category::kTransactional);
  auto q = decode_posting(encode(p));
  CHECK(q.category == Category::kTransactional);
  CHECK(q.unsubscribe.empty());
  CHECK(encode(p).find("unsubscribe") == std::string::npos);  // transactional mail has none

  p.category = Category::kBulk;
  p.unsubscribe = {"https://example.org/unsubscribe?token=T",
                   "mailto:unsubscribe@example.org?subject=unsubscribe%20T"};
  q = decode_posting(encode(p));
  CHECK(q.category == Category::kBulk);
  CHECK(q.unsubscribe.url == p.unsubscribe.url);
  CHECK(q.unsubscribe.mailto == p.unsubscribe.mailto);
  p.unsubscribe.mailto.clear();
  q = decode_posting(encode(p));
  CHECK(q.unsubscribe.url == p.unsubscribe.url);
  CHECK(q.unsubscribe.mailto.empty());
}

TEST_CASE("a posting queued before categories existed reads as transactional") {
  auto j = nlohmann::json::parse(encode(sample()));
  j.erase("category");
  CHECK(decode_posting(j.dump()).category == Category::kTransactional);
  j["category"] = nullptr;
  CHECK(decode_posting(j.dump()).category == Category::kTransactional);
  j["category"] = "bulk";
  CHECK(decode_posting(j.dump()).category == Category::kBulk);
  for (const auto& bad : {nlohmann::json("newsletter"), nlohmann::json(""), nlohmann::json(1)}) {
    j["category"] = bad;
    CHECK_THROWS_AS(decode_posting(j.dump()), PostingError);
  }
  j["category"] = "newsletter";
  CHECK_THROWS_WITH_AS(decode_posting(j.dump()),
                       "posting: field category must be bulk or transactional, not \"newsletter\"",
                       PostingError);
  j["category"] = "bulk";
  j["unsubscribe"] = "https://example.org/u";
  CHECK_THROWS_WITH_AS(decode_posting(j.dump()), "posting: field unsubscribe must be an object",
                       PostingError);
  j["unsubscribe"] = {{"url", 12}};
  CHECK_THROWS_WITH_AS(decode_posting(j.dump()), "posting: field unsubscribe.url must be a string",
                       PostingError);
  j["unsubscribe"] = nlohmann::json::object();
  CHECK(decode_posting(j.dump()).unsubscribe.empty());
}

TEST_CASE("times are encoded as format_iso8601 writes them, within the readable range") {
  Posting p = sample();
  std::mt19937_64 random(7);
  const auto span = (kLatestTime - kEarliestTime).count();
  std::vector<TimePoint> times = {kEarliestTime,
                                  kLatestTime,
                                  TimePoint{},
                                  TimePoint::min(),
                                  TimePoint::max(),
                                  *parse_iso8601("2024-02-29T23:59:59.999Z"),
                                  *parse_iso8601("1969-12-31T23:59:59.001Z")};
  for (int i = 0; i < 2000; ++i) {
    times.push_back(kEarliestTime + milliseconds(static_cast<std::int64_t>(
                                        random() % static_cast<std::uint64_t>(span + 1))));
  }
  for (const TimePoint t : times) {
    p.created_at = p.event_time = p.expires_at = t;
    p.not_before = t;
    check_same_as_tree(p);
  }
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
