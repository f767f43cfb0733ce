#include "notify/config.hpp"

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <system_error>

namespace notify {

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr || *value == '\0') return std::nullopt;
    return std::string(value);
  };
}

std::optional<std::string> Env::optional_str(const std::string& name) const {
  return lookup_(name);
}

std::string Env::str(const std::string& name, const std::string& fallback) const {
  return lookup_(name).value_or(fallback);
}

std::int64_t Env::integer(const std::string& name, std::int64_t fallback, std::int64_t min,
                          std::int64_t max) const {
  auto text = lookup_(name);
  if (!text) return fallback;
  const auto range = [&] {
    return ConfigError(name + "=" + *text + ": must be between " + std::to_string(min) + " and " +
                       std::to_string(max));
  };
  // from_chars, unlike stoll, takes no leading blanks or '+' and reports overflow apart.
  std::int64_t value = 0;
  const char* end = text->data() + text->size();
  const auto [stop, error] = std::from_chars(text->data(), end, value);
  if (error == std::errc::result_out_of_range && stop == end) throw range();
  if (error != std::errc() || stop != end) {
    throw ConfigError(name + "=" + *text + ": not an integer");
  }
  if (value < min || value > max) throw range();
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

std::vector<std::string> Env::list(const std::string& name) const {
  std::vector<std::string> items;
  std::string item;
  std::istringstream in(lookup_(name).value_or(""));
  while (std::getline(in, item, ',')) {
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

std::vector<std::string> Env::url_list(const std::string& name) const {
  std::vector<std::string> urls = list(name);
  for (const std::string& url : urls) {
    if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
      throw ConfigError(name + ": '" + url + "' is not an http(s) base URL");
    }
  }
  return urls;
}

std::chrono::milliseconds parse_duration(const std::string& text) {
  using namespace std::chrono;
  std::size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0) throw ConfigError("not a duration (examples: 250ms, 10s, 5m, 2h, 1d)");
  const std::string unit = text.substr(i);
  milliseconds size{1};
  if (unit == "ms") {
    size = milliseconds(1);
  } else if (unit.empty() || unit == "s") {
    size = seconds(1);
  } else if (unit == "m") {
    size = minutes(1);
  } else if (unit == "h") {
    size = hours(1);
  } else if (unit == "d") {
    size = hours(24);
  } else {
    throw ConfigError("unknown duration unit '" + unit + "' (use ms, s, m, h or d)");
  }
  const auto too_long = [] {
    return ConfigError("longer than the maximum of " + format_duration(kMaxDuration) +
                       " (100 years)");
  };
  // Compared before multiplying: n · size must not wrap into a small or negative duration.
  std::int64_t n = 0;
  const auto [stop, error] = std::from_chars(text.data(), text.data() + i, n);
  if (error == std::errc::result_out_of_range) throw too_long();
  if (error != std::errc() || stop != text.data() + i) throw ConfigError("not a duration");
  if (n > kMaxDuration / size) throw too_long();
  return size * n;
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

std::string trim(std::string_view text) {
  const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!text.empty() && space(text.front())) text.remove_prefix(1);
  while (!text.empty() && space(text.back())) text.remove_suffix(1);
  return std::string(text);
}

}  // namespace notify
