#pragma once
// What one HTTP answer comes to for the Client (a user, a page, fetched JSON, or why not), and
// whether asking again can help: pure functions of the response, the limits and the attempt.

#include <chrono>
#include <cstddef>
#include <utility>

#include "auth_client/auth_client.hpp"
#include "notify/http_client.hpp"
#include "notify/json.hpp"

namespace auth::impl {

// The Auth service answers small objects; anything far larger is not a user.
inline constexpr std::size_t kMaxUserBytes = 1 << 20;
// A page of 1,000 users is a few hundred KiB.
inline constexpr std::size_t kMaxPageBytes = 16 << 20;

template <class Result>
struct Decision {
  Result result;
  bool retry = false;
};

Decision<Lookup> decide_user(const notify::http::Response& r, const notify::JsonLimits& limits);
Decision<PageLookup> decide_page(const notify::http::Response& r, const notify::JsonLimits& limits);
Decision<FetchResult> decide_fetch(const notify::http::Response& r, std::size_t max_bytes,
                                   const notify::JsonLimits& limits);

// The wait before retry n (from 1): backoff * 2^(n-1), plus up to 20% of that for a jitter in
// [0, 1).
std::chrono::milliseconds delay_before(int retry, std::chrono::milliseconds backoff, double jitter);

// Calls attempt() (returning a Decision) until it says not to retry or max_attempts is reached,
// calling wait(n) before retry n.
template <class Result, class Attempt, class Wait>
Result with_retries(int max_attempts, Attempt attempt, Wait wait) {
  Result out;
  for (int n = 1; n <= max_attempts; ++n) {
    if (n > 1) wait(n - 1);
    Decision<Result> decision = attempt();
    out = std::move(decision.result);
    out.attempts = n;
    if (!decision.retry) break;
  }
  return out;
}

}  // namespace auth::impl
