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

// 2026-11-23T10:30:00.000Z
std::string format_iso8601(TimePoint t);
// Accepts RFC 3339 / ISO 8601 with Z or a numeric offset, with or without fractions.
std::optional<TimePoint> parse_iso8601(std::string_view text);

}  // namespace notify
