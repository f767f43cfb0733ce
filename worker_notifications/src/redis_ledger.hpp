#pragma once
// The delivery ledger in Redis (hiredis), one connection per delivery loop. Each posting is one
// key, notify:ledger:<posting id>: the holder's token with the lease as its expiry while a loop
// sends it, then "sent" until the posting's expiry plus a margin. Every key expires, so the
// ledger's memory follows the postings still alive (documentation/delivery.md gives the
// measured size).
//
// One round trip per batch of deliveries on the common path: the batch's claims are SET NX,
// pipelined (a Lua script, atomic, only for a key that exists already), and a mark is written
// at once but its reply is read with the next command. A mark whose reply never came is
// written again after reconnecting, so a mark is never lost while the worker lives (SET is
// idempotent). A release is a Lua script, so it never drops another loop's claim.

#include <chrono>
#include <deque>
#include <memory>
#include <string>

#include "ledger.hpp"

struct redisContext;
struct redisReply;

namespace worker {

// LEDGER_URL: redis://[[user]:password@]host[:port][/db], port 6379 and db 0 by default.
struct RedisAddress {
  std::string host;
  int port = 6379;
  int db = 0;
  std::string username;
  std::string password;
  // Throws std::invalid_argument naming what is wrong (never the password).
  static RedisAddress parse(const std::string& url);
  std::string display() const;  // "redis://host:port/db", without credentials
};

class RedisLedger final : public DeliveryLedger {
 public:
  // `owner` names the loop in its claims ("email#0"); a random part makes the token unique to
  // this process, so a restarted worker does not take its dead predecessor's claims for its
  // own. `timeout`: connecting and each command.
  RedisLedger(RedisAddress address, std::string owner, std::chrono::milliseconds timeout);
  ~RedisLedger() override;
  RedisLedger(const RedisLedger&) = delete;
  RedisLedger& operator=(const RedisLedger&) = delete;

  bool connected() const override;
  void connect() override;
  void disconnect() override;
  Claim claim(std::string_view posting_id, std::chrono::milliseconds lease) override;
  // Every SET NX of the batch written at once behind the marks still owed a reply, all replies
  // read in one go; the rare keys that exist already get their scripts in a second one.
  std::vector<Claim> claim_all(std::span<const std::string_view> posting_ids,
                               std::chrono::milliseconds lease) override;
  void mark_sent(std::string_view posting_id, notify::TimePoint keep_until) override;
  void release(std::string_view posting_id) override;
  void ping() override;

  const std::string& token() const { return token_; }

 private:
  struct ContextFree {
    void operator()(redisContext* context) const;
  };
  [[noreturn]] void fail(const std::string& what);
  // Fails with "<what> failed" (no reply: the connection broke) or "<what> refused: <error>".
  void check(const redisReply* reply, const std::string& what);
  // Reads the replies of the marks written so far; throws LedgerError (they stay owed).
  void settle_marks();
  // Writes a mark and waits for its reply (reconnecting: the owed ones).
  void mark_now(const std::string& posting_id, notify::TimePoint keep_until);
  // Writes what hiredis buffered; reads one reply (null: the connection failed).
  void flush_output(const std::string& what);
  redisReply* read_reply();

  RedisAddress address_;
  std::string token_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<redisContext, ContextFree> context_;
  struct Mark {
    std::string posting_id;
    notify::TimePoint keep_until;
  };
  std::deque<Mark> unconfirmed_;  // written, reply not read yet; owed after a failure
};

// The ledger key of a posting.
std::string ledger_key(std::string_view posting_id);

}  // namespace worker
