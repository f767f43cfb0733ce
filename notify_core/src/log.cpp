#include "notify/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>

#include "notify/time.hpp"

namespace notify::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::string g_service = "notify";
std::mutex g_mutex;
Sink g_sink;  // guarded by g_mutex

const char* name(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

}  // namespace

void set_sink(Sink sink) {
  std::lock_guard lock(g_mutex);
  g_sink = std::move(sink);
}

void init(std::string service, Level level) {
  std::lock_guard lock(g_mutex);
  g_service = std::move(service);
  g_level = static_cast<int>(level);
}

Level parse_level(std::string_view text) {
  if (text == "debug") return Level::kDebug;
  if (text == "warn" || text == "warning") return Level::kWarn;
  if (text == "error") return Level::kError;
  return Level::kInfo;
}

bool enabled(Level level) { return static_cast<int>(level) >= g_level.load(); }

void write(Level level, std::string_view msg, const nlohmann::json& fields) {
  if (!enabled(level)) return;
  nlohmann::json line = {{"ts", format_iso8601(SystemClock().now())}, {"level", name(level)}};
  Sink sink;
  {
    std::lock_guard lock(g_mutex);
    line["service"] = g_service;
    sink = g_sink;
  }
  line["msg"] = msg;
  if (fields.is_object()) {
    for (const auto& [key, value] : fields.items()) line[key] = value;
  }
  if (sink) {
    sink(line);
    return;
  }
  // One write per line, so lines from several threads never interleave.
  const std::string text =
      line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

}  // namespace notify::log
