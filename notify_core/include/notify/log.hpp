#pragma once
// One JSON line per significant action on stderr: {"ts","level","service","msg",...fields}.

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace notify::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void init(std::string service, Level level);
Level parse_level(std::string_view text);  // "debug", "info", "warn", "error"; else info
bool enabled(Level level);
void write(Level level, std::string_view msg,
           const nlohmann::json& fields = nlohmann::json::object());

// Tests see each line written (as its JSON object) in place of stderr; an empty function
// restores stderr.
using Sink = std::function<void(const nlohmann::json& line)>;
void set_sink(Sink sink);

inline void debug(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
  write(Level::kDebug, m, f);
}
inline void info(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
  write(Level::kInfo, m, f);
}
inline void warn(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
  write(Level::kWarn, m, f);
}
inline void error(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
  write(Level::kError, m, f);
}

}  // namespace notify::log
