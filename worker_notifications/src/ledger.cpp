#include "ledger.hpp"

#include <algorithm>

namespace worker {

notify::TimePoint ledger_keep_until(notify::TimePoint expires_at, notify::TimePoint now) {
  return notify::add_capped(std::max(expires_at, now), kLedgerMarginAfterExpiry);
}

}  // namespace worker
