// Reading settings: every bad value stops the service at start with the variable and the value,
// and nothing overflows into a different, valid-looking value.
#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <string>

#include "notify/config.hpp"

using namespace std::chrono_literals;
using notify::ConfigError;
using notify::Env;

namespace {

Env env_of(std::map<std::string, std::string> values) {
  return Env([values = std::move(values)](const std::string& name) -> std::optional<std::string> {
    const auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  });
}

// The message of the ConfigError that f throws; fails the test when it throws none.
template <typename F>
std::string refusal(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("accepted");
  return "";
}

}  // namespace

TEST_CASE("parse_duration: units, bare seconds, and the largest duration") {
  CHECK(notify::parse_duration("250ms") == 250ms);
  CHECK(notify::parse_duration("10s") == 10s);
  CHECK(notify::parse_duration("10") == 10s);
  CHECK(notify::parse_duration("5m") == 5min);
  CHECK(notify::parse_duration("2h") == 2h);
  CHECK(notify::parse_duration("1d") == 24h);
  CHECK(notify::parse_duration("0s") == 0ms);
  CHECK(notify::parse_duration("36500d") == notify::kMaxDuration);
  CHECK(notify::parse_duration("876000h") == notify::kMaxDuration);
  CHECK(notify::parse_duration("0000000000000000000000001s") ==
        1s);  // zeros are not digits too many
}

TEST_CASE("parse_duration: overflowing durations are refused, never wrapped") {
  for (const char* text :
       {"36501d", "999999999999d", "9999999999999999999d", "876001h", "52560001m", "3153600001s",
        "3153600000001ms", "3153600001", "99999999999999999999999999999ms", "9223372036854775807ms",
        "9223372036854775808ms"}) {
    CAPTURE(text);
    const std::string why = refusal([&] { notify::parse_duration(text); });
    CHECK(why.find("36500d") != std::string::npos);
  }
}

TEST_CASE("parse_duration: malformed text is refused") {
  for (const char* text :
       {"", "s", "-5s", "+5s", " 5s", "5s ", "1.5s", "10x", "5 s", "5S", "1e3"}) {
    CAPTURE(text);
    CHECK_THROWS_AS(notify::parse_duration(text), ConfigError);
  }
}

TEST_CASE("format_duration is the inverse of parse_duration") {
  for (const char* text : {"250ms", "1500ms", "10s", "5m", "2h", "2d", "36500d"}) {
    CHECK(notify::format_duration(notify::parse_duration(text)) == text);
  }
}

TEST_CASE("Env::duration names the variable and the value") {
  const Env env = env_of({{"TTL", "999999999999d"}, {"BAD", "soon"}, {"OK", "90s"}});
  CHECK(env.duration("OK", 1s) == 90s);
  CHECK(env.duration("MISSING", 7s) == 7s);
  const std::string too_long = refusal([&] { env.duration("TTL", 1s); });
  CHECK(too_long.starts_with("TTL=999999999999d: "));
  CHECK(too_long.find("36500d") != std::string::npos);
  CHECK(refusal([&] { env.duration("BAD", 1s); }).starts_with("BAD=soon: "));
}

TEST_CASE("Env::integer: range checked, overflow refused as out of range") {
  const Env env = env_of({{"N", "42"},
                          {"NEG", "-3"},
                          {"BIG", "99999999999999999999"},
                          {"SMALL", "-99999999999999999999"},
                          {"MAX", "9223372036854775807"},
                          {"HIGH", "65536"},
                          {"TEXT", "12abc"},
                          {"BLANK", " 12"},
                          {"PLUS", "+12"},
                          {"FRACTION", "1.5"}});
  CHECK(env.integer("N", 0, 0, 100) == 42);
  CHECK(env.integer("NEG", 0, -10, 10) == -3);
  CHECK(env.integer("MISSING", 7, 0, 10) == 7);
  CHECK(env.integer("MAX", 0, 0, INT64_MAX) == INT64_MAX);
  CHECK(refusal([&] { env.integer("HIGH", 0, 0, 65535); }) ==
        "HIGH=65536: must be between 0 and 65535");
  CHECK(refusal([&] { env.integer("BIG", 0, 0, 65535); }) ==
        "BIG=99999999999999999999: must be between 0 and 65535");
  CHECK(refusal([&] { env.integer("SMALL", 0, 0, 65535); }) ==
        "SMALL=-99999999999999999999: must be between 0 and 65535");
  for (const char* name : {"TEXT", "BLANK", "PLUS", "FRACTION"}) {
    CAPTURE(name);
    CHECK(refusal([&] { env.integer(name, 0, 0, 100); }).find(": not an integer") !=
          std::string::npos);
  }
}

TEST_CASE("Env::boolean") {
  const Env env = env_of({{"YES", "Yes"}, {"OFF", "off"}, {"MAYBE", "maybe"}});
  CHECK(env.boolean("YES", false));
  CHECK_FALSE(env.boolean("OFF", true));
  CHECK(env.boolean("MISSING", true));
  CHECK(refusal([&] { env.boolean("MAYBE", true); }).starts_with("MAYBE=maybe: "));
}

TEST_CASE("lists and URL lists are read the same way by both services") {
  const Env env = env_of({{"L", "a,,b,"},
                          {"U", "https://a.example,http://b.example/x"},
                          {"BAD", "https://a.example,ftp://b.example"}});
  CHECK(env.list("L") == std::vector<std::string>{"a", "b"});
  CHECK(env.list("UNSET").empty());
  CHECK(env.url_list("U") == std::vector<std::string>{"https://a.example", "http://b.example/x"});
  CHECK_THROWS_WITH_AS(env.url_list("BAD"), "BAD: 'ftp://b.example' is not an http(s) base URL",
                       ConfigError);
}
