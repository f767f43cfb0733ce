#include "redis_ledger.hpp"

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <initializer_list>
#include <random>
#include <span>
#include <stdexcept>
#include <vector>

#include "notify/c_handle.hpp"

namespace worker {
namespace {

// A claim when SET NX found the key taken (or it went in between). KEYS[1] the posting's key,
// ARGV[1] the claimant's token, ARGV[2] the lease in ms. 0: claimed (or this loop's own claim
// renewed); -1: sent; n > 0: held by another for n more ms.
constexpr std::string_view kClaimScript = R"lua(
local held = redis.call('GET', KEYS[1])
if held == false or held == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 0
end
if held == 'sent' then return -1 end
local left = redis.call('PTTL', KEYS[1])
if left < 1 then return 1 end
return left
)lua";

// KEYS[1] the posting's key, ARGV[1] the releasing loop's token: only its own claim goes.
constexpr std::string_view kReleaseScript = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua";

constexpr std::string_view kSent = "sent";

using Url = notify::CHandle<CURLU, curl_url_cleanup>;
using Reply = notify::CHandle<redisReply, freeReplyObject>;

// One part of a parsed URL, "" when absent; URL-decoded.
std::string url_part(CURLU* url, CURLUPart part) {
  char* value = nullptr;
  if (curl_url_get(url, part, &value, CURLU_URLDECODE) != CURLUE_OK || value == nullptr) return {};
  std::string text(value);
  curl_free(value);
  return text;
}

// A time as Redis's PXAT wants it: milliseconds since the epoch, at least 1.
std::string epoch_ms(notify::TimePoint t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
  return std::to_string(std::max<std::int64_t>(1, ms.count()));
}

timeval to_timeval(std::chrono::milliseconds duration) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(duration.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((duration.count() % 1000) * 1000);
  return tv;
}

// A command's arguments as hiredis takes them, binary-safe.
struct Args {
  explicit Args(std::initializer_list<std::string_view> args) {
    argv.reserve(args.size());
    lengths.reserve(args.size());
    for (const std::string_view arg : args) {
      argv.push_back(arg.data());
      lengths.push_back(arg.size());
    }
  }
  int count() const { return static_cast<int>(argv.size()); }
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
};

// One command, waiting for its reply; null when the connection failed.
Reply call(redisContext* context, std::initializer_list<std::string_view> args) {
  Args a(args);
  return Reply(static_cast<redisReply*>(
      redisCommandArgv(context, a.count(), a.argv.data(), a.lengths.data())));
}

// One command into the output buffer, not waiting for its reply.
bool append(redisContext* context, std::initializer_list<std::string_view> args) {
  Args a(args);
  return redisAppendCommandArgv(context, a.count(), a.argv.data(), a.lengths.data()) == REDIS_OK;
}

std::string random_hex(std::size_t bytes) {
  std::random_device device;
  std::string text;
  text.reserve(bytes * 2);
  for (std::size_t i = 0; i < bytes; ++i) {
    std::array<char, 3> hex{};
    std::snprintf(hex.data(), hex.size(), "%02x", static_cast<unsigned>(device() & 0xffU));
    text.append(hex.data(), 2);
  }
  return text;
}

}  // namespace

std::string ledger_key(std::string_view posting_id) {
  std::string key = "notify:ledger:";
  key.append(posting_id);
  return key;
}

RedisAddress RedisAddress::parse(const std::string& url) {
  Url handle(curl_url());
  if (!handle) throw std::runtime_error("out of memory");
  if (curl_url_set(handle.get(), CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME) !=
      CURLUE_OK) {
    throw std::invalid_argument("not a URL (expected redis://host:port/db)");
  }
  const std::string scheme = url_part(handle.get(), CURLUPART_SCHEME);
  if (scheme != "redis") {
    throw std::invalid_argument("scheme " + scheme + " is not supported (expected redis://)");
  }
  RedisAddress address;
  address.host = url_part(handle.get(), CURLUPART_HOST);
  if (address.host.empty()) throw std::invalid_argument("no host");
  // A bracketed IPv6 literal is given to hiredis without its brackets.
  if (address.host.size() > 2 && address.host.front() == '[' && address.host.back() == ']') {
    address.host = address.host.substr(1, address.host.size() - 2);
  }
  const std::string port = url_part(handle.get(), CURLUPART_PORT);
  if (!port.empty()) address.port = std::stoi(port);  // libcurl checked it: 1-65535
  address.username = url_part(handle.get(), CURLUPART_USER);
  address.password = url_part(handle.get(), CURLUPART_PASSWORD);
  if (!url_part(handle.get(), CURLUPART_QUERY).empty() ||
      !url_part(handle.get(), CURLUPART_FRAGMENT).empty()) {
    throw std::invalid_argument("no query or fragment expected");
  }
  std::string path = url_part(handle.get(), CURLUPART_PATH);
  if (!path.empty() && path.front() == '/') path.erase(0, 1);
  if (!path.empty()) {
    const auto [end, error] = std::from_chars(path.data(), path.data() + path.size(), address.db);
    if (error != std::errc() || end != path.data() + path.size() || address.db < 0 ||
        address.db > 65535) {
      throw std::invalid_argument("the path must be a database number (/0)");
    }
  }
  return address;
}

std::string RedisAddress::display() const {
  const bool v6 = host.find(':') != std::string::npos;
  return "redis://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "/" +
         std::to_string(db);
}

void RedisLedger::ContextFree::operator()(redisContext* context) const { redisFree(context); }

RedisLedger::RedisLedger(RedisAddress address, std::string owner, std::chrono::milliseconds timeout)
    : address_(std::move(address)),
      token_(std::move(owner) + ":" + random_hex(12)),
      timeout_(timeout) {}

RedisLedger::~RedisLedger() = default;

bool RedisLedger::connected() const { return context_ != nullptr; }

void RedisLedger::disconnect() { context_.reset(); }

void RedisLedger::fail(const std::string& what) {
  std::string detail = what;
  if (context_ && context_->err != 0) detail += std::string(": ") + context_->errstr;
  // After an error a hiredis context cannot be used again: the next call connects anew.
  context_.reset();
  throw LedgerError("ledger " + address_.display() + ": " + detail);
}

void RedisLedger::check(const redisReply* reply, const std::string& what) {
  if (reply == nullptr) fail(what + " failed");
  if (reply->type == REDIS_REPLY_ERROR) {
    fail(what + " refused: " + std::string(reply->str, reply->len));
  }
}

void RedisLedger::connect() {
  context_.reset();
  context_.reset(
      redisConnectWithTimeout(address_.host.c_str(), address_.port, to_timeval(timeout_)));
  if (!context_) throw LedgerError("ledger " + address_.display() + ": out of memory");
  if (context_->err != 0) fail("cannot connect");
  if (redisSetTimeout(context_.get(), to_timeval(timeout_)) != REDIS_OK) fail("cannot set timeout");
  redisEnableKeepAlive(context_.get());

  if (!address_.password.empty()) {
    const Reply auth = address_.username.empty()
                           ? call(context_.get(), {"AUTH", address_.password})
                           : call(context_.get(), {"AUTH", address_.username, address_.password});
    check(auth.get(), "AUTH");
  }
  if (address_.db != 0) {
    check(call(context_.get(), {"SELECT", std::to_string(address_.db)}).get(), "SELECT");
  }
  // Marks written before the connection failed, their replies never read: written again.
  while (!unconfirmed_.empty()) {
    mark_now(unconfirmed_.front().posting_id, unconfirmed_.front().keep_until);
    unconfirmed_.pop_front();
  }
}

void RedisLedger::mark_now(const std::string& posting_id, notify::TimePoint keep_until) {
  const Reply reply =
      call(context_.get(), {"SET", ledger_key(posting_id), kSent, "PXAT", epoch_ms(keep_until)});
  check(reply.get(), "mark");
}

void RedisLedger::settle_marks() {
  while (!unconfirmed_.empty()) {
    const Reply reply(read_reply());
    if (!reply) fail("mark not confirmed");
    check(reply.get(), "mark");
    unconfirmed_.pop_front();
  }
}

DeliveryLedger::Claim RedisLedger::claim(std::string_view posting_id,
                                         std::chrono::milliseconds lease) {
  return claim_all(std::span<const std::string_view>(&posting_id, 1), lease).front();
}

void RedisLedger::flush_output(const std::string& what) {
  int done = 0;
  while (done == 0) {
    if (redisBufferWrite(context_.get(), &done) != REDIS_OK) fail(what + " failed");
  }
}

redisReply* RedisLedger::read_reply() {
  void* raw = nullptr;
  if (redisGetReply(context_.get(), &raw) != REDIS_OK) return nullptr;
  return static_cast<redisReply*>(raw);
}

std::vector<DeliveryLedger::Claim> RedisLedger::claim_all(
    std::span<const std::string_view> posting_ids, std::chrono::milliseconds lease) {
  if (!context_) connect();
  std::vector<Claim> claims(posting_ids.size());
  if (posting_ids.empty()) return claims;
  const std::string lease_ms = std::to_string(std::max<std::int64_t>(1, lease.count()));
  std::vector<std::string> keys;
  keys.reserve(posting_ids.size());
  // The common case, postings nobody has seen: one plain command each, all written together
  // behind the marks whose replies are still to be read.
  for (const std::string_view id : posting_ids) {
    keys.push_back(ledger_key(id));
    if (!append(context_.get(), {"SET", keys.back(), token_, "NX", "PX", lease_ms})) {
      fail("claim failed");
    }
  }
  flush_output("claim");
  settle_marks();
  std::vector<std::size_t> taken;  // keys that exist already: the script decides
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const Reply reply(read_reply());
    check(reply.get(), "claim");
    if (reply->type == REDIS_REPLY_NIL) taken.push_back(i);
  }
  if (taken.empty()) return claims;

  for (const std::size_t i : taken) {
    if (!append(context_.get(), {"EVAL", kClaimScript, "1", keys[i], token_, lease_ms})) {
      fail("claim failed");
    }
  }
  flush_output("claim");
  for (const std::size_t i : taken) {
    const Reply reply(read_reply());
    check(reply.get(), "claim");
    if (reply->type != REDIS_REPLY_INTEGER) fail("claim: unexpected reply");
    if (reply->integer < 0) {
      claims[i] = {Claimed::kAlreadySent, {}};
    } else if (reply->integer > 0) {
      claims[i] = {Claimed::kHeld, std::chrono::milliseconds(reply->integer)};
    }
  }
  return claims;
}

void RedisLedger::mark_sent(std::string_view posting_id, notify::TimePoint keep_until) {
  if (!context_) connect();
  // Owed from here on: if the write or its reply fails, connect() writes it again.
  unconfirmed_.push_back({std::string(posting_id), keep_until});
  if (!append(context_.get(),
              {"SET", ledger_key(posting_id), kSent, "PXAT", epoch_ms(keep_until)})) {
    fail("mark failed");
  }
  // Written now, right after the transport accepted the mail; its reply is read with the next
  // command, which saves a round trip per mail.
  flush_output("mark");
}

void RedisLedger::release(std::string_view posting_id) {
  if (!context_) connect();
  settle_marks();
  const std::string key = ledger_key(posting_id);
  const Reply reply = call(context_.get(), {"EVAL", kReleaseScript, "1", key, token_});
  check(reply.get(), "release");
}

void RedisLedger::ping() {
  if (!context_) connect();
  settle_marks();
  const Reply reply = call(context_.get(), {"PING"});
  check(reply.get(), "PING");
}

}  // namespace worker
