#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "notify/posting.hpp"

namespace notify {

// Time comes from an injected clock, so decisions stay testable.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimePoint now() const override;
};

// The times the services read and write: years 0001 to 9999, as ISO 8601 writes them. A time
// outside is refused when read, never wrapped.
inline constexpr TimePoint kEarliestTime{std::chrono::milliseconds(-62135596800000)};  // 0001-01-01
inline constexpr TimePoint kLatestTime{
    std::chrono::milliseconds(253402300799999)};  // 9999-12-31T23:59:59.999

// A time plus a duration that stops at kLatestTime instead of leaving the readable range.
TimePoint add_capped(TimePoint t, std::chrono::milliseconds d);

// 2026-11-23T10:30:00.000Z
std::string format_iso8601(TimePoint t);
// Accepts RFC 3339 / ISO 8601 with Z or a numeric offset, with or without fractions.
std::optional<TimePoint> parse_iso8601(std::string_view text);

}  // namespace notify
