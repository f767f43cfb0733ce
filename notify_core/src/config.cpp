#include "notify/config.hpp"

#include <cctype>
#include <cstdlib>
#include <limits>

namespace notify {

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr || *value == '\0') return std::nullopt;
    return std::string(value);
  };
}

std::optional<std::string> Env::optional_str(const std::string& name) const { return lookup_(name); }

std::string Env::str(const std::string& name, const std::string& fallback) const {
  return lookup_(name).value_or(fallback);
}

std::int64_t Env::integer(const std::string& name, std::int64_t fallback, std::int64_t min,
                          std::int64_t max) const {
  auto text = lookup_(name);
  if (!text) return fallback;
  std::size_t used = 0;
  std::int64_t value = 0;
  try {
    value = std::stoll(*text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text->size()) {
    throw ConfigError(name + "=" + *text + ": not an integer");
  }
  if (value < min || value > max) {
    throw ConfigError(name + "=" + *text + ": must be between " + std::to_string(min) + " and " +
                      std::to_string(max));
  }
  return value;
}

std::chrono::milliseconds Env::duration(const std::string& name,
                                        std::chrono::milliseconds fallback) const {
  auto text = lookup_(name);
  if (!text) return fallback;
  try {
    return parse_duration(*text);
  } catch (const ConfigError& e) {
    throw ConfigError(name + "=" + *text + ": " + e.what());
  }
}

bool Env::boolean(const std::string& name, bool fallback) const {
  auto text = lookup_(name);
  if (!text) return fallback;
  std::string v;
  for (char c : *text) v.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  throw ConfigError(name + "=" + *text + ": not a boolean (true/false)");
}

std::chrono::milliseconds parse_duration(const std::string& text) {
  std::size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0) throw ConfigError("not a duration (examples: 250ms, 10s, 5m, 2h, 1d)");
  if (i > 12) throw ConfigError("duration too large");
  const std::int64_t n = std::stoll(text.substr(0, i));
  const std::string unit = text.substr(i);
  using namespace std::chrono;
  if (unit == "ms") return milliseconds(n);
  if (unit.empty() || unit == "s") return seconds(n);
  if (unit == "m") return minutes(n);
  if (unit == "h") return hours(n);
  if (unit == "d") return hours(24 * n);
  throw ConfigError("unknown duration unit '" + unit + "' (use ms, s, m, h or d)");
}

std::string format_duration(std::chrono::milliseconds duration) {
  using namespace std::chrono;
  struct Unit {
    milliseconds size;
    const char* suffix;
  };
  static constexpr Unit kUnits[] = {
      {hours(24), "d"}, {hours(1), "h"}, {minutes(1), "m"}, {seconds(1), "s"}};
  if (duration > milliseconds::zero()) {
    for (const Unit& u : kUnits) {
      if (duration % u.size == milliseconds::zero()) {
        return std::to_string(duration / u.size) + u.suffix;
      }
    }
  }
  return std::to_string(duration.count()) + "ms";
}

}  // namespace notify
