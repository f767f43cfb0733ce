#include "ladder.hpp"

#include <doctest/doctest.h>

#include <climits>
#include <string>
#include <vector>

#include "notify/config.hpp"
#include "notify/time.hpp"

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using Tiers = std::vector<milliseconds>;

namespace {

notify::TimePoint at(const std::string& iso) {
  const auto t = notify::parse_iso8601(iso);
  REQUIRE_MESSAGE(t.has_value(), iso);
  return *t;
}

const std::function<double()> kZero = [] { return 0.0; };

}  // namespace

TEST_CASE("parse_tiers: sorted ascending, deduplicated") {
  CHECK(worker::parse_tiers("10s,1m,10m,1h,6h") == Tiers{10s, 1min, 10min, 1h, 6h});
  CHECK(worker::parse_tiers("1h, 10s,10s ,1m") == Tiers{10s, 1min, 1h});
  CHECK(worker::parse_tiers("1d,1500ms") == Tiers{1500ms, 24h});
  CHECK(worker::parse_tiers("60s,1m") == Tiers{1min});
  CHECK(worker::parse_tiers("30") == Tiers{30s});  // a bare number is seconds
}

TEST_CASE("parse_tiers rejects bad lists with a clear message") {
  for (const char* bad :
       {"", " ", "10s,,1m", "10s,", ",10s", "0s", "10s,0ms", "10x", "abc", "-5s", "1.5s", "10 s",
        "10s,999999999999d", "36501d"}) {  // the last two: longer than 100 years, not wrapped
    CAPTURE(bad);
    try {
      worker::parse_tiers(bad);
      FAIL("accepted");
    } catch (const notify::ConfigError& e) {
      CHECK(std::string(e.what()).find(std::string("\"") + bad + "\"") != std::string::npos);
    }
  }
}

TEST_CASE("choose_tier: the largest tier that does not overshoot") {
  const Tiers tiers{10s, 1min, 10min, 1h, 6h};
  SUBCASE("exact") {
    CHECK(worker::choose_tier(10s, tiers) == 10s);
    CHECK(worker::choose_tier(1min, tiers) == 1min);
    CHECK(worker::choose_tier(6h, tiers) == 6h);
  }
  SUBCASE("between") {
    CHECK(worker::choose_tier(59s, tiers) == 10s);
    CHECK(worker::choose_tier(5min, tiers) == 1min);
    CHECK(worker::choose_tier(1h - 1ms, tiers) == 10min);
    CHECK(worker::choose_tier(5h, tiers) == 1h);
  }
  SUBCASE("below the smallest: the smallest (at most one smallest tier late)") {
    CHECK(worker::choose_tier(9999ms, tiers) == 10s);
    CHECK(worker::choose_tier(1ms, tiers) == 10s);
    CHECK(worker::choose_tier(0ms, tiers) == 10s);
    CHECK(worker::choose_tier(-5s, tiers) == 10s);
  }
  SUBCASE("above the largest: the largest") {
    CHECK(worker::choose_tier(6h + 1ms, tiers) == 6h);
    CHECK(worker::choose_tier(72h, tiers) == 6h);
  }
  SUBCASE("no tiers is a programming error") {
    CHECK_THROWS_AS(worker::choose_tier(1s, Tiers{}), std::invalid_argument);
  }
}

TEST_CASE("climbing down the ladder never overshoots the target by more than the smallest tier") {
  const Tiers tiers = worker::parse_tiers("10s,1m,10m,1h,6h");
  for (const milliseconds target : Tiers{10h + 7min + 3s, 9s, 1h, 61s}) {
    CAPTURE(target.count());
    milliseconds waited = 0ms;
    int hops = 0;
    while (waited < target) {
      waited += worker::choose_tier(target - waited, tiers);
      ++hops;
    }
    CHECK(waited - target < 10s);
    CHECK(hops < 30);
  }
}

TEST_CASE("tier_name: a stable suffix in the largest whole unit") {
  CHECK(worker::tier_name(10s) == "10s");
  CHECK(worker::tier_name(1min) == "1m");
  CHECK(worker::tier_name(10min) == "10m");
  CHECK(worker::tier_name(6h) == "6h");
  CHECK(worker::tier_name(48h) == "2d");
  CHECK(worker::tier_name(25h) == "25h");
  CHECK(worker::tier_name(90s) == "90s");
  CHECK(worker::tier_name(1000ms) == "1s");
  CHECK(worker::tier_name(1500ms) == "1500ms");
  CHECK(worker::tier_name(0ms) == "0ms");
}

TEST_CASE("retry_delay doubles from the base and adds up to 25 % jitter") {
  CHECK(worker::retry_delay(1, 10s, kZero) == 10s);
  CHECK(worker::retry_delay(2, 10s, kZero) == 20s);
  CHECK(worker::retry_delay(3, 10s, kZero) == 40s);
  CHECK(worker::retry_delay(7, 10s, kZero) == 640s);
  CHECK(worker::retry_delay(1, 10s, [] { return 0.5; }) == 11250ms);
  CHECK(worker::retry_delay(1, 10s, [] { return 0.999; }) == 12497ms);
  CHECK(worker::retry_delay(1, 10s, [] { return 1.0; }) < 12500ms);  // stays below 1.25 base
  CHECK(worker::retry_delay(1, 10s, {}) == 10s);                     // no random source
  CHECK(worker::retry_delay(0, 10s, kZero) == 10s);                  // nonsense counts as 1
  CHECK(worker::retry_delay(-3, 10s, kZero) == 10s);

  milliseconds previous = 0ms;
  for (int attempt = 1; attempt <= worker::kMaxRetryExponent + 1; ++attempt) {
    const auto d = worker::retry_delay(attempt, 10s, kZero);
    CHECK(d == previous * 2 + (attempt == 1 ? 10s : 0s));
    previous = d;
  }
}

TEST_CASE("retry_delay stops growing at the cap and never overflows") {
  const auto cap = worker::retry_delay(worker::kMaxRetryExponent + 1, 10s, kZero);
  CHECK(cap == 10s * (1 << worker::kMaxRetryExponent));
  CHECK(worker::retry_delay(worker::kMaxRetryExponent + 2, 10s, kZero) == cap);
  CHECK(worker::retry_delay(100, 10s, kZero) == cap);
  CHECK(worker::retry_delay(INT_MAX, 10s, kZero) == cap);
  const auto huge = worker::retry_delay(INT_MAX, milliseconds::max(), [] { return 0.999; });
  CHECK(huge > 0ms);
}

TEST_CASE("decide_retry: defer, dead-letter after max_attempts, drop past the expiry") {
  const worker::RetryOptions o;  // 10 s base, 8 attempts
  const auto now = at("2026-01-16T12:00:00Z");
  const auto expires = at("2026-01-17T12:00:00Z");

  CHECK(worker::decide_retry(1, now, expires, o, kZero) ==
        worker::RetryDecision{worker::Defer{now + 10s, worker::DeferReason::kRetry}});
  CHECK(worker::decide_retry(2, now, expires, o, kZero) ==
        worker::RetryDecision{worker::Defer{now + 20s, worker::DeferReason::kRetry}});
  CHECK(worker::decide_retry(7, now, expires, o, kZero) ==
        worker::RetryDecision{worker::Defer{now + 640s, worker::DeferReason::kRetry}});
  CHECK(worker::decide_retry(8, now, expires, o, kZero) ==
        worker::RetryDecision{worker::Exhausted{}});
  CHECK(worker::decide_retry(9, now, expires, o, kZero) ==
        worker::RetryDecision{worker::Exhausted{}});

  SUBCASE("the default schedule: 8 attempts, 7 waits, 1270 s without jitter") {
    milliseconds total = 0ms;
    int deferrals = 0;
    for (int failed = 1;; ++failed) {
      const auto d = worker::decide_retry(failed, now, expires, o, kZero);
      if (!std::holds_alternative<worker::Defer>(d)) break;
      total += std::get<worker::Defer>(d).until - now;
      ++deferrals;
    }
    CHECK(deferrals == 7);
    CHECK(total == 1270s);
  }
  SUBCASE("a retry at or past the expiry is dropped") {
    CHECK(worker::decide_retry(3, now, now + 40s, o, kZero) ==
          worker::RetryDecision{worker::Drop{worker::DropReason::kExpiredBeforeWindow}});
    CHECK(worker::decide_retry(3, now, now + 40s + 1ms, o, kZero) ==
          worker::RetryDecision{worker::Defer{now + 40s, worker::DeferReason::kRetry}});
    CHECK(worker::decide_retry(1, now, now, o, kZero) ==
          worker::RetryDecision{worker::Drop{worker::DropReason::kExpired}});
  }
  SUBCASE("max_attempts 1: the first failure is final") {
    const worker::RetryOptions once{5s, 1};
    CHECK(worker::decide_retry(1, now, expires, once, kZero) ==
          worker::RetryDecision{worker::Exhausted{}});
  }
}
