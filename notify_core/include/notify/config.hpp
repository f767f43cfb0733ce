#pragma once
// Reading configuration from the environment: each service fills a plain struct once at
// start-up; a bad value stops it with a message naming the variable and the value.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

namespace notify {

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
  std::int64_t integer(const std::string& name, std::int64_t fallback, std::int64_t min,
                       std::int64_t max) const;
  // Durations: "250ms", "10s", "5m", "2h", "1d"; a bare number is seconds.
  std::chrono::milliseconds duration(const std::string& name,
                                     std::chrono::milliseconds fallback) const;
  bool boolean(const std::string& name, bool fallback) const;

 private:
  EnvLookup lookup_;
};

// Parses "250ms", "10s", "5m", "2h", "1d" (bare number: seconds). Throws ConfigError.
std::chrono::milliseconds parse_duration(const std::string& text);
// The inverse: the largest whole unit, "10s", "1m", "6h", "2d", "1500ms".
std::string format_duration(std::chrono::milliseconds duration);

}  // namespace notify
