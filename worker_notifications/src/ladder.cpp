#include "ladder.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "notify/config.hpp"

namespace worker {

using std::chrono::milliseconds;

std::vector<milliseconds> parse_tiers(const std::string& text) {
  auto fail = [&](const std::string& why) {
    return notify::ConfigError("delay tiers \"" + text + "\": " + why +
                               " (expected e.g. 10s,1m,10m,1h,6h)");
  };
  std::vector<milliseconds> tiers;
  std::size_t begin = 0;
  while (true) {
    const std::size_t comma = text.find(',', begin);
    const std::string item = notify::trim(
        text.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin));
    if (item.empty()) throw fail("empty item");
    milliseconds tier;
    try {
      tier = notify::parse_duration(item);
    } catch (const notify::ConfigError& e) {
      throw fail("\"" + item + "\": " + e.what());
    }
    if (tier <= milliseconds::zero()) throw fail("\"" + item + "\" is not positive");
    tiers.push_back(tier);
    if (comma == std::string::npos) break;
    begin = comma + 1;
  }
  std::sort(tiers.begin(), tiers.end());
  tiers.erase(std::unique(tiers.begin(), tiers.end()), tiers.end());
  return tiers;
}

milliseconds choose_tier(milliseconds remaining, const std::vector<milliseconds>& tiers) {
  if (tiers.empty()) throw std::invalid_argument("choose_tier: no tiers");
  // The first tier greater than remaining; the one before it is the largest that fits.
  const auto above = std::upper_bound(tiers.begin(), tiers.end(), remaining);
  return above == tiers.begin() ? tiers.front() : *std::prev(above);
}

std::string tier_name(milliseconds tier) { return notify::format_duration(tier); }

milliseconds retry_delay(int attempt, milliseconds base, const std::function<double()>& random01) {
  const int exponent = std::clamp(attempt - 1, 0, kMaxRetryExponent);
  // Doubles, clamped, so even a huge base cannot overflow the representation.
  constexpr double kMax = static_cast<double>(std::numeric_limits<std::int64_t>::max()) / 2;
  const auto core = static_cast<std::int64_t>(
      std::min(static_cast<double>(base.count()) * std::ldexp(1.0, exponent), kMax));
  double r = random01 ? random01() : 0.0;
  if (!(r > 0.0)) r = 0.0;  // also catches NaN
  const std::int64_t quarter = core / 4;
  auto jitter = static_cast<std::int64_t>(static_cast<double>(quarter) * std::min(r, 1.0));
  if (jitter >= quarter) jitter = std::max<std::int64_t>(quarter - 1, 0);  // keep it below 25 %
  return milliseconds(core + jitter);
}

RetryDecision decide_retry(int failed_attempts, notify::TimePoint now, notify::TimePoint expires_at,
                           const RetryOptions& options, const std::function<double()>& random01) {
  if (failed_attempts >= options.max_attempts) return Exhausted{};
  if (now >= expires_at) return Drop{DropReason::kExpired};
  const notify::TimePoint until = now + retry_delay(failed_attempts, options.base, random01);
  if (until >= expires_at) return Drop{DropReason::kExpiredBeforeWindow};
  return Defer{until, DeferReason::kRetry};
}

}  // namespace worker
