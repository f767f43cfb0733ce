#pragma once
// Durable deferral and retries without a broker plugin. A deferred posting waits in one of a
// ladder of delay queues, each with a single queue-level TTL that dead-letters back to the work
// queue; there the policy looks at it again and, if it is still early, sends it down another
// rung. These functions choose the rung, name the queues and space the retries.

#include <chrono>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "notify/posting.hpp"
#include "policy.hpp"

namespace worker {

// "10s,1m,10m,1h,6h" (units ms, s, m, h, d; see notify::parse_duration). Returns the tiers
// sorted ascending without duplicates. Throws notify::ConfigError if the list is empty or an
// item is malformed or not positive.
std::vector<std::chrono::milliseconds> parse_tiers(const std::string& text);

// The delay queue for a posting that must wait `remaining` more: the largest tier that does not
// overshoot. Below the smallest tier it is the smallest one, so a deferral ends at most one
// smallest tier late (with "10s,…" a posting wakes up to 10 s after its time); above the largest
// it is the largest, and the posting climbs the ladder again when it comes back.
// `tiers` must be non-empty and sorted ascending (as parse_tiers returns them).
std::chrono::milliseconds choose_tier(std::chrono::milliseconds remaining,
                                      const std::vector<std::chrono::milliseconds>& tiers);

// A stable queue-name suffix in the largest whole unit: "10s", "1m", "6h", "2d", "1500ms".
std::string tier_name(std::chrono::milliseconds tier);

// The wait after the `attempt`-th failed attempt (1-based): base · 2^(attempt-1) plus up to
// 25 % jitter (attempt 1 → [base, 1.25 base)). The exponent stops growing at kMaxRetryExponent,
// so late attempts wait at most base · 2^16 · 1.25 and nothing overflows.
inline constexpr int kMaxRetryExponent = 16;
std::chrono::milliseconds retry_delay(int attempt, std::chrono::milliseconds base,
                                      const std::function<double()>& random01);

// max_attempts is the total number of send attempts. The defaults make 8 attempts with 7 waits
// of 10, 20, 40, 80, 160, 320 and 640 s: 1270 s ≈ 21 min in all, ≈ 26.5 min at most with jitter.
struct RetryOptions {
  std::chrono::milliseconds base{std::chrono::seconds(10)};
  int max_attempts = 8;
};

// The posting failed max_attempts times: dead-letter it ("attempts_exhausted").
struct Exhausted {
  bool operator==(const Exhausted&) const = default;
};
using RetryDecision = std::variant<Defer, Drop, Exhausted>;

// After a transient failure. failed_attempts counts the attempts made so far, the one that just
// failed included (≥ 1). In order: failed_attempts ≥ max_attempts → Exhausted; already expired
// → Drop{kExpired}; the retry would fall at or past expires_at → Drop{kExpiredBeforeWindow};
// otherwise Defer{now + retry_delay(failed_attempts), kRetry}.
RetryDecision decide_retry(int failed_attempts, notify::TimePoint now, notify::TimePoint expires_at,
                           const RetryOptions& options, const std::function<double()>& random01);

}  // namespace worker
