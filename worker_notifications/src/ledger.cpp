#include "ledger.hpp"

#include <algorithm>

namespace worker {

std::vector<DeliveryLedger::Claim> DeliveryLedger::claim_all(
    std::span<const std::string_view> posting_ids, std::chrono::milliseconds lease) {
  std::vector<Claim> claims;
  claims.reserve(posting_ids.size());
  for (const std::string_view id : posting_ids) claims.push_back(claim(id, lease));
  return claims;
}

notify::TimePoint ledger_keep_until(notify::TimePoint expires_at, notify::TimePoint now) {
  return notify::add_capped(std::max(expires_at, now), kLedgerMarginAfterExpiry);
}

}  // namespace worker
