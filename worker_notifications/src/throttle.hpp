#pragma once
// Sending rate limits (MAILS_PER_SECOND, MAILS_PER_HOUR). Time is passed in, so the arithmetic
// is tested without sleeping; the caller sleeps for the wait it is given.

#include <chrono>
#include <mutex>

namespace worker {

// A token bucket kept as the time its next token is due (GCRA), in integer nanoseconds so a
// rate of 5/s spaces by exactly 200 ms. Not thread-safe; Throttle adds the lock.
class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  // rate_per_second 0 (or less) means unlimited. burst is how many tokens may be taken at once
  // (at least 1).
  TokenBucket(double rate_per_second, double burst);

  // How long to wait before one token is available; the token is taken only when that is zero.
  std::chrono::milliseconds acquire(Clock::time_point now);

  // Reserves the next token even if it is not there yet and returns the wait until it is, so
  // callers queue up in order.
  std::chrono::milliseconds reserve(Clock::time_point now);

  // The earliest time at or after `now` when a token can be taken, and taking it then (`at`
  // must not precede an earlier reservation). Building blocks for combining buckets.
  Clock::time_point available_at(Clock::time_point now) const;
  void take(Clock::time_point at);

  bool unlimited() const { return interval_ == Clock::duration::zero(); }

 private:
  Clock::duration interval_{};   // time to earn one token; zero when unlimited
  Clock::duration tolerance_{};  // (burst - 1) · interval
  Clock::time_point due_{};      // when the bucket would be empty at the current pace
};

struct ThrottleOptions {
  double per_second = 0;  // MAILS_PER_SECOND; 0 = unlimited
  double per_hour = 0;    // MAILS_PER_HOUR; 0 = unlimited
  // A second's worth at once by default; 0 means per_second.
  double second_burst = 0;
  // Evenly spaced by default, so no hour-long window sees much more than per_hour mails.
  double hour_burst = 1;
};

// Both limits at once, shared by the sender threads.
class Throttle {
 public:
  using Clock = TokenBucket::Clock;

  explicit Throttle(const ThrottleOptions& options);

  // Reserves a send slot that satisfies both buckets and returns how long the caller must sleep
  // before sending. Concurrent callers get successive slots.
  std::chrono::milliseconds reserve(Clock::time_point now);

 private:
  std::mutex mutex_;
  TokenBucket per_second_;
  TokenBucket per_hour_;
};

}  // namespace worker
