#pragma once
// Reading JSON that someone else wrote: every input the services decode (events, postings, Auth
// answers, context fetches) goes through parse_json, so its size and nesting are bounded before
// anything copies or prints it (nlohmann's copies and dump() recurse), and a document is one
// value with nothing after it.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include <nlohmann/json.hpp>

namespace notify {

inline constexpr std::size_t kDefaultMaxJsonDepth = 64;  // MAX_JSON_DEPTH

struct JsonLimits {
  // Arrays and objects inside each other: "[[1]]" has depth 2, a scalar 0.
  std::size_t max_depth = kDefaultMaxJsonDepth;
};

// What is wrong with a document, in words safe to log (no more than a short excerpt of it).
class JsonError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One JSON value making up the whole input. Throws JsonError for invalid JSON, bytes after the
// value (a NUL included: nlohmann would stop reading there), and nesting deeper than
// limits.max_depth, which is found by a scan before the parser builds anything.
nlohmann::json parse_json(std::string_view text, const JsonLimits& limits = {});

// The deepest nesting of arrays and objects in text, scanning no further than one level past
// `stop_above` (so a hostile input costs no more than it takes to find it too deep).
std::size_t json_depth(std::string_view text, std::size_t stop_above);

// The value as T when it is a JSON integer that T holds exactly; nothing for floats, strings,
// and integers out of T's range (never cut to fewer bits).
template <class T>
std::optional<T> integer_as(const nlohmann::json& value) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  if (value.is_number_unsigned()) {
    const auto v = value.get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return std::nullopt;
    return static_cast<T>(v);
  }
  if (value.is_number_integer()) {
    const auto v = value.get<std::int64_t>();
    if constexpr (std::is_unsigned_v<T>) {
      if (v < 0 || static_cast<std::uint64_t>(v) > std::numeric_limits<T>::max()) {
        return std::nullopt;
      }
    } else {
      if (v < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
          v > static_cast<std::int64_t>(std::numeric_limits<T>::max())) {
        return std::nullopt;
      }
    }
    return static_cast<T>(v);
  }
  return std::nullopt;
}

// At most max_bytes of text, cut at a UTF-8 character boundary, with "…" and the full size when
// cut: for values quoted in reasons and logs, which must stay small whatever came in.
std::string shorten(std::string_view text, std::size_t max_bytes);

// A value for a reason: JSON-quoted (so control characters and quotes are visible and cannot
// break a log line or header) and shortened to about max_bytes.
std::string quote(std::string_view text, std::size_t max_bytes = 80);

}  // namespace notify
