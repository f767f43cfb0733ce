#include "throttle.hpp"

#include <algorithm>
#include <cmath>

namespace worker {

namespace {

using Clock = TokenBucket::Clock;

Clock::duration seconds_to_duration(double s) {
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::nanoseconds(std::llround(s * 1e9)));
}

// Rounded up: sleeping the returned wait never sends early.
std::chrono::milliseconds wait_until(Clock::time_point at, Clock::time_point now) {
  if (at <= now) return std::chrono::milliseconds::zero();
  return std::chrono::ceil<std::chrono::milliseconds>(at - now);
}

}  // namespace

TokenBucket::TokenBucket(double rate_per_second, double burst) {
  if (!(rate_per_second > 0.0)) return;  // unlimited
  interval_ = std::max(seconds_to_duration(1.0 / rate_per_second), Clock::duration(1));
  tolerance_ = seconds_to_duration((std::max(burst, 1.0) - 1.0) / rate_per_second);
}

Clock::time_point TokenBucket::available_at(Clock::time_point now) const {
  if (unlimited()) return now;
  return std::max(now, due_ - tolerance_);
}

void TokenBucket::take(Clock::time_point at) {
  if (unlimited()) return;
  due_ = std::max(due_, at) + interval_;
}

std::chrono::milliseconds TokenBucket::acquire(Clock::time_point now) {
  const Clock::time_point at = available_at(now);
  if (at > now) return wait_until(at, now);
  take(now);
  return std::chrono::milliseconds::zero();
}

std::chrono::milliseconds TokenBucket::reserve(Clock::time_point now) {
  const Clock::time_point at = available_at(now);
  take(at);
  return wait_until(at, now);
}

Throttle::Throttle(const ThrottleOptions& options)
    : per_second_(options.per_second,
                  options.second_burst > 0 ? options.second_burst : options.per_second),
      per_hour_(options.per_hour / 3600.0, options.hour_burst) {}

std::chrono::milliseconds Throttle::reserve(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  // One slot for both buckets: the later of their earliest times. Taking each bucket's own
  // earliest time separately could let the sends bunch up past the per-second limit.
  const Clock::time_point at = std::max(per_second_.available_at(now), per_hour_.available_at(now));
  per_second_.take(at);
  per_hour_.take(at);
  return wait_until(at, now);
}

}  // namespace worker
