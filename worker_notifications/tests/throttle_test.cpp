#include "throttle.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using Clock = worker::TokenBucket::Clock;

namespace {

const Clock::time_point kT0 = Clock::time_point{} + 1000h;

}  // namespace

TEST_CASE("TokenBucket 5/s: a burst of 5, then one every 200 ms") {
  worker::TokenBucket bucket(5, 5);
  for (int i = 0; i < 5; ++i) CHECK(bucket.acquire(kT0) == 0ms);
  CHECK(bucket.acquire(kT0) == 200ms);
  CHECK(bucket.acquire(kT0) == 200ms);  // not taken while waiting
  CHECK(bucket.acquire(kT0 + 150ms) == 50ms);
  CHECK(bucket.acquire(kT0 + 200ms) == 0ms);
  CHECK(bucket.acquire(kT0 + 200ms) == 200ms);
  CHECK(bucket.acquire(kT0 + 400ms) == 0ms);
  // After a quiet second the burst is back.
  for (int i = 0; i < 5; ++i) CHECK(bucket.acquire(kT0 + 1400ms) == 0ms);
  CHECK(bucket.acquire(kT0 + 1400ms) == 200ms);
}

TEST_CASE("TokenBucket::reserve queues callers in order") {
  worker::TokenBucket bucket(5, 5);
  std::vector<milliseconds> waits;
  for (int i = 0; i < 8; ++i) waits.push_back(bucket.reserve(kT0));
  CHECK(waits == std::vector<milliseconds>{0ms, 0ms, 0ms, 0ms, 0ms, 200ms, 400ms, 600ms});
  // acquire sees the reservations too.
  CHECK(bucket.acquire(kT0 + 600ms) == 200ms);
  CHECK(bucket.acquire(kT0 + 800ms) == 0ms);
}

TEST_CASE("TokenBucket rounds waits up, never early") {
  worker::TokenBucket bucket(3, 1);  // 333.33… ms apart
  CHECK(bucket.reserve(kT0) == 0ms);
  CHECK(bucket.reserve(kT0) == 334ms);
  CHECK(bucket.reserve(kT0) == 667ms);
  CHECK(bucket.reserve(kT0) == 1000ms);
}

TEST_CASE("TokenBucket with rate 0 is unlimited") {
  worker::TokenBucket bucket(0, 1);
  CHECK(bucket.unlimited());
  for (int i = 0; i < 1000; ++i) REQUIRE(bucket.reserve(kT0) == 0ms);
  CHECK(bucket.acquire(kT0) == 0ms);
}

TEST_CASE("Throttle 3600/h with burst 1 spaces by 1 s") {
  worker::Throttle throttle({.per_second = 0, .per_hour = 3600, .hour_burst = 1});
  CHECK(throttle.reserve(kT0) == 0ms);
  CHECK(throttle.reserve(kT0) == 1000ms);
  CHECK(throttle.reserve(kT0) == 2000ms);
  CHECK(throttle.reserve(kT0 + 2500ms) == 500ms);
  CHECK(throttle.reserve(kT0 + 10s) == 0ms);  // idle: no backlog
}

TEST_CASE("Throttle combines both limits: the larger wait wins") {
  SUBCASE("the hourly limit is the tighter one") {
    worker::Throttle throttle({.per_second = 5, .per_hour = 3600});
    CHECK(throttle.reserve(kT0) == 0ms);
    CHECK(throttle.reserve(kT0) == 1000ms);
    CHECK(throttle.reserve(kT0) == 2000ms);
  }
  SUBCASE("the per-second limit is the tighter one") {
    worker::Throttle throttle({.per_second = 1, .per_hour = 36000, .hour_burst = 10});
    CHECK(throttle.reserve(kT0) == 0ms);
    CHECK(throttle.reserve(kT0) == 1000ms);
    CHECK(throttle.reserve(kT0) == 2000ms);
  }
  SUBCASE("a burst allowed per second, then the hourly pace") {
    worker::Throttle throttle({.per_second = 5, .per_hour = 7200, .hour_burst = 3});
    std::vector<milliseconds> waits;
    for (int i = 0; i < 6; ++i) waits.push_back(throttle.reserve(kT0));
    CHECK(waits == std::vector<milliseconds>{0ms, 0ms, 0ms, 500ms, 1000ms, 1500ms});
  }
  SUBCASE("both unlimited") {
    worker::Throttle throttle(worker::ThrottleOptions{});
    for (int i = 0; i < 100; ++i) REQUIRE(throttle.reserve(kT0) == 0ms);
  }
}

TEST_CASE("Throttle gives concurrent callers distinct slots") {
  worker::Throttle throttle({.per_second = 10, .per_hour = 0, .second_burst = 1});
  constexpr int kThreads = 4, kEach = 25;
  std::vector<std::vector<milliseconds>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) seen[t].push_back(throttle.reserve(kT0));
    });
  }
  for (auto& th : threads) th.join();
  std::vector<milliseconds> all;
  for (const auto& s : seen) all.insert(all.end(), s.begin(), s.end());
  std::sort(all.begin(), all.end());
  REQUIRE(all.size() == kThreads * kEach);
  for (int i = 0; i < kThreads * kEach; ++i) CHECK(all[i] == milliseconds(100 * i));
}
