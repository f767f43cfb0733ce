#pragma once
// The delivery ledger: what keeps a posting from being sent twice. SMTP has no idempotency and
// RabbitMQ delivers at least once (a worker that dies before its ack, a posting the ETL
// published again after a lost confirm, a replay), so before a send the loop claims the
// posting's id, after the transport's acceptance marks it sent, and after a transient failure
// releases it for the retry. A posting found sent is acknowledged without sending; one claimed
// by another loop waits until that claim is marked, released or its lease runs out (its holder
// died while sending: the one duplicate SMTP cannot prevent).
//
// One ledger per delivery loop (a connection is not shared between threads). redis_ledger.hpp
// is the one in production; tests give fakes.

#include <chrono>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "notify/time.hpp"

namespace worker {

// The ledger cannot be reached or answered something it should not. The loop takes no
// deliveries until it is back: nothing is sent unrecorded.
class LedgerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class DeliveryLedger {
 public:
  enum class Claimed {
    kYes,          // this loop holds the posting until it marks, releases or the lease ends
    kAlreadySent,  // marked sent by someone (this loop included): do not send again
    kHeld,         // another loop holds it: ask again once `held_for` has passed
  };
  struct Claim {
    Claimed result = Claimed::kYes;
    std::chrono::milliseconds held_for{0};  // kHeld: what is left of the holder's lease
  };

  virtual ~DeliveryLedger() = default;
  virtual bool connected() const = 0;
  virtual void connect() = 0;     // throws LedgerError
  virtual void disconnect() = 0;  // claims stay until their lease ends
  // Claims posting_id for `lease`. Claiming again what this loop holds renews the lease.
  // Throws LedgerError.
  virtual Claim claim(std::string_view posting_id, std::chrono::milliseconds lease) = 0;
  // Claims of several distinct postings, one answer per id in their order, in one round trip
  // where the ledger can (a batch of deliveries costs one wait, not one per mail). By default
  // one claim() after the other. Throws LedgerError: none of them may be sent.
  virtual std::vector<Claim> claim_all(std::span<const std::string_view> posting_ids,
                                       std::chrono::milliseconds lease);
  // Sent: kept until `keep_until`, after which no copy of the posting can be sent anyway (it
  // has expired). Throws LedgerError when it could not even be handed over; a ledger may
  // confirm it later (at the next call), and must then record it again after reconnecting.
  virtual void mark_sent(std::string_view posting_id, notify::TimePoint keep_until) = 0;
  // Gives up this loop's claim (a transient failure: the retry claims again). A claim of
  // another loop is left alone. Throws LedgerError.
  virtual void release(std::string_view posting_id) = 0;
  // Whether the ledger still answers, asked while the loop is idle so that readiness follows
  // it. Throws LedgerError.
  virtual void ping() = 0;
};

// How long a sent posting stays in the ledger: until its expiry (a copy arriving later is
// dropped as expired before the ledger is asked) plus a margin for clocks that disagree between
// hosts. Never before `now` plus the margin, for a posting sent at the last moment.
inline constexpr std::chrono::hours kLedgerMarginAfterExpiry{1};
notify::TimePoint ledger_keep_until(notify::TimePoint expires_at, notify::TimePoint now);

}  // namespace worker
