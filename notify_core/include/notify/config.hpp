#pragma once
// Reading configuration from the environment: each service fills a plain struct once at
// start-up; a bad value stops it with a message naming the variable and the value.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace notify {

// The longest duration a setting may have: 100 years. Durations are added to time points, and
// the standard clocks count nanoseconds in 64 bits (about 292 years either side of 1970): now
// plus 100 years still fits, with room to spare. Anything longer is a typo, not a setting.
inline constexpr std::chrono::milliseconds kMaxDuration = std::chrono::hours(24 * 36500);

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Source of variables; the default reads the process environment. Tests pass a map.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();

class Env {
 public:
  explicit Env(EnvLookup lookup = process_env()) : lookup_(std::move(lookup)) {}

  std::string str(const std::string& name, const std::string& fallback) const;
  std::optional<std::string> optional_str(const std::string& name) const;
  // A decimal integer in [min, max]; a value that does not fit 64 bits is refused like any
  // other out-of-range value, never wrapped.
  std::int64_t integer(const std::string& name, std::int64_t fallback, std::int64_t min,
                       std::int64_t max) const;
  // Durations: "250ms", "10s", "5m", "2h", "1d"; a bare number is seconds; at most kMaxDuration.
  std::chrono::milliseconds duration(const std::string& name,
                                     std::chrono::milliseconds fallback) const;
  bool boolean(const std::string& name, bool fallback) const;
  // "a,b,,c": the non-empty items, in order; none when unset.
  std::vector<std::string> list(const std::string& name) const;
  // A list of http(s) base URLs (allowlists); another entry stops the service at start-up.
  std::vector<std::string> url_list(const std::string& name) const;

 private:
  EnvLookup lookup_;
};

// Parses "250ms", "10s", "5m", "2h", "1d" (bare number: seconds). Throws ConfigError for
// anything else and for durations longer than kMaxDuration.
std::chrono::milliseconds parse_duration(const std::string& text);
// The inverse: the largest whole unit, "10s", "1m", "6h", "2d", "1500ms".
std::string format_duration(std::chrono::milliseconds duration);

// The text without leading and trailing white space (std::isspace), for the parts of a setting
// ("10s, 1m", "22:00 - 07:00").
std::string trim(std::string_view text);

}  // namespace notify
