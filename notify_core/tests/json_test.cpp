#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "notify/json.hpp"

using notify::JsonError;
using notify::JsonLimits;
using notify::parse_json;

TEST_CASE("parse_json: one value, nesting bounded before the parser builds anything") {
  CHECK(parse_json(R"({"a": [1, {"b": "[[[["}]})")["a"][1]["b"] == "[[[[");
  CHECK(notify::json_depth(R"({"a": [1, {"b": "[[[[\"[["}]})", 100) == 3);
  CHECK(notify::json_depth("1", 100) == 0);
  CHECK(parse_json(std::string(64, '[') + std::string(64, ']')).is_array());
  CHECK_THROWS_WITH_AS(parse_json(std::string(65, '[') + std::string(65, ']')),
                       "JSON nested deeper than MAX_JSON_DEPTH=64", JsonError);
  // A few hundred thousand brackets cost one scan, and the scan stops at the limit.
  CHECK_THROWS_AS(parse_json(std::string(500000, '[')), JsonError);
  CHECK(notify::json_depth(std::string(500000, '{'), 10) == 11);
  CHECK_THROWS_AS(parse_json("[[[1]]]", JsonLimits{2}), JsonError);
  CHECK(parse_json("[[1]]", JsonLimits{2}).is_array());
}

TEST_CASE("parse_json: the whole input is the value") {
  CHECK_THROWS_WITH_AS(parse_json("{} x"), "not valid JSON", JsonError);
  CHECK_THROWS_WITH_AS(parse_json(std::string("{}\0garbage", 10)),
                       "not valid JSON: NUL byte at offset 2", JsonError);
  CHECK_THROWS_AS(parse_json(std::string("{\"a\": \"\0\"}", 10)), JsonError);
  CHECK_THROWS_AS(parse_json(""), JsonError);
  CHECK_THROWS_AS(parse_json("1e999"), JsonError);
  CHECK(parse_json(" {} \n\t").is_object());
}

TEST_CASE("integer_as: integers that fit, never cut") {
  using nlohmann::json;
  CHECK(notify::integer_as<int>(json(4294967296LL)) == std::nullopt);
  CHECK(notify::integer_as<int>(json(9)) == 9);
  CHECK(notify::integer_as<int>(json(-5)) == -5);
  CHECK(notify::integer_as<unsigned>(json(-5)) == std::nullopt);
  CHECK(notify::integer_as<long long>(json(18446744073709551615ULL)) == std::nullopt);
  CHECK(notify::integer_as<std::uint64_t>(json(18446744073709551615ULL)) ==
        18446744073709551615ULL);
  CHECK(notify::integer_as<int>(json(1.0)) == std::nullopt);
  CHECK(notify::integer_as<int>(json("1")) == std::nullopt);
  CHECK(notify::integer_as<int>(json(true)) == std::nullopt);
}

TEST_CASE("shorten and quoted keep values in reasons small and printable") {
  CHECK(notify::shorten("short", 10) == "short");
  CHECK(notify::shorten(std::string(700000, 'x'), 8) == "xxxxxxxx… (700000 bytes)");
  // Never splits a UTF-8 character: "ü" is two bytes.
  CHECK(notify::shorten("aü", 2) == "a… (3 bytes)");
  CHECK(notify::quote("a\"b\n") == R"("a\"b\n")");
  CHECK(notify::quote("\xff\xfe") == "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");  // replaced, not thrown
  CHECK(notify::quote(std::string(1000, 'y'), 10).size() < 40);
}
