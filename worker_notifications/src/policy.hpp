#pragma once
// The worker's delivery policy: what to do with a posting right now. A pure function of the
// posting, the time and the options (randomness injected), so every case — DST nights, windows
// crossing midnight, exact boundaries — is a unit test, not a broker scenario.

#include <chrono>
#include <functional>
#include <iosfwd>
#include <string>
#include <string_view>
#include <variant>

#include "notify/posting.hpp"

namespace worker {

// Quiet hours as seconds since local midnight, [start, end). start > end crosses midnight
// ("22:00-08:00"); start == end means no quiet hours at all.
struct QuietWindow {
  std::chrono::seconds start{0};
  std::chrono::seconds end{0};
  bool operator==(const QuietWindow&) const = default;
};

// "22:00-08:00" or "22:00:00-08:00:30" (HH:MM or HH:MM:SS, 24-hour clock). Throws
// notify::ConfigError naming the text.
QuietWindow parse_quiet_window(const std::string& text);

// Whether a time of day (seconds since local midnight) falls inside the window.
bool in_quiet_window(std::chrono::seconds time_of_day, const QuietWindow& window);

// Whether the system time zone database knows an IANA zone name (e.g. to validate the default
// zone at start-up).
bool is_known_timezone(const std::string& name);

struct PolicyOptions {
  QuietWindow quiet{std::chrono::hours(22), std::chrono::hours(8)};
  std::string default_timezone = "UTC";  // for recipients with no zone or an unknown one
  // Deferred postings wake up spread over [end, end + spread) so a whole time zone does not
  // hit the SMTP server at 08:00:00 sharp.
  std::chrono::milliseconds spread{std::chrono::minutes(15)};
};

// Why a posting waits. The policy defers for quiet hours and schedules, the ladder for retries,
// the delivery loop for the throttle, for one more hop of an earlier deferral, and while another
// worker holds the posting's claim in the delivery ledger.
enum class DeferReason { kQuietHours, kScheduled, kRetry, kThrottled, kDeferred, kClaimed };
// "quiet_hours", "scheduled", "retry", "throttled", "deferred", "claimed": the x-defer-reason
// header and the logs (documentation/postings.md).
std::string_view to_string(DeferReason reason);

// Why a posting is dropped unsent.
enum class DropReason { kExpired, kExpiredBeforeWindow };
std::string_view to_string(DropReason reason);  // "expired", "expired_before_window"

// Outcomes as data.
struct Send {
  bool operator==(const Send&) const = default;
};
struct Defer {
  notify::TimePoint until;
  DeferReason reason;  // kQuietHours | kScheduled | kRetry
  bool operator==(const Defer&) const = default;
};
struct Drop {
  DropReason reason;
  bool operator==(const Drop&) const = default;
};
using Decision = std::variant<Send, Defer, Drop>;

struct Evaluation {
  Decision decision;
  bool zone_fallback = false;  // the recipient's zone was empty or unknown
  std::string zone;            // the zone used for quiet hours
};

// In order: expired → Drop; scheduled for later → Defer (or Drop if the schedule is past the
// expiry); inside quiet hours in the recipient's local time → Defer to the window's end plus a
// random part of the spread (or Drop if that is past the expiry); otherwise Send.
// random01 returns a value in [0, 1); an empty function means no spread.
// Throws notify::ConfigError if the default zone is unknown (validate it at start-up).
Evaluation decide(const notify::Posting& posting, notify::TimePoint now,
                  const PolicyOptions& options, const std::function<double()>& random01);

// For logs and test failure messages: "send", "defer quiet_hours until 2026-…Z", "drop expired".
std::string to_string(const Decision& decision);
std::ostream& operator<<(std::ostream& out, const Decision& decision);

}  // namespace worker
