#include "notify/time.hpp"

// date::parse trips a false -Wmaybe-uninitialized in GCC 12 at -O2.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <date/date.h>

#include <sstream>

namespace notify {

TimePoint SystemClock::now() const {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

std::string format_iso8601(TimePoint t) { return date::format("%FT%TZ", t); }

std::optional<TimePoint> parse_iso8601(std::string_view text) {
  // Zulu or numeric offsets (+03:00 and +0300), fractions optional: try the forms in turn.
  static constexpr const char* kForms[] = {"%FT%TZ", "%FT%T%Ez", "%FT%T%z", "%F %TZ", "%F %T%Ez"};
  for (const char* form : kForms) {
    std::istringstream in{std::string(text)};
    // Parsed to nanoseconds so that Python's six fractional digits are read, then truncated.
    std::chrono::sys_time<std::chrono::nanoseconds> t;
    in >> date::parse(form, t);
    if (!in.fail() && in.peek() == std::char_traits<char>::eof()) {
      return std::chrono::floor<std::chrono::milliseconds>(t);
    }
  }
  return std::nullopt;
}
#pragma GCC diagnostic pop

}  // namespace notify
