#pragma once
// The ETL's HTTP edge over libcurl: user lookups in the Auth service (GET /api/v1/users/{id},
// with a TTL cache), pages of the users listing (GET /api/v1/users/?...), and JSON context
// fetched from other services. Outcomes are data: found, unknown user (drop the event for this
// user), or unavailable (transient or operator problem: do not drop, retry later).

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "notify/json.hpp"

namespace auth {

struct User {
  std::string id;
  std::string email;
  std::string first_name;
  std::string last_name;
  std::string timezone;  // IANA zone, may be empty
  std::string locale;
  bool email_notifications = true;
  bool active = true;
};

// Thrown by decode_user when a required field (id, email) is missing or a field has the wrong
// type; what() names the field.
class InvalidUser : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Missing or null optional fields get their defaults; a numeric id is accepted as text.
// "is_active" is accepted as an alias of "active".
// Fields longer than a user's fields can be (ids and names 256 bytes, e-mail 254, timezone and
// locale 64) are refused too.
User decode_user(const nlohmann::json& j);  // throws InvalidUser
// The same from an answer's body, parsed within limits (one value, nesting bounded).
User parse_user(std::string_view body, const notify::JsonLimits& limits = {});  // InvalidUser
nlohmann::json encode_user(const User& user);

struct ClientOptions {
  std::string base_url;  // e.g. http://127.0.0.1:8081 (a trailing slash is fine)
  std::string token;     // sent as "Authorization: Bearer {token}" when not empty
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds request_timeout{5000};
  int max_attempts = 3;
  std::chrono::milliseconds backoff{200};  // before retry n: backoff * 2^(n-1), plus jitter
  // Waits between attempts; default std::this_thread::sleep_for. Tests inject.
  std::function<void(std::chrono::milliseconds)> sleep;
  // Uniform in [0, 1): adds up to 20% jitter to each delay. Default: a seeded generator.
  std::function<double()> jitter;

  // get_user keeps found users this long (0 = no cache). Only kFound is cached: an unknown or
  // unavailable user is asked again next time.
  std::chrono::milliseconds cache_ttl{60'000};
  // At most this many cached users (0 = no cache); when full, the least recently used entry
  // (looked up or stored) is evicted. Expired entries are dropped when next looked up.
  std::size_t cache_capacity = 10'000;
  // The cache's clock; default std::chrono::steady_clock::now. Tests inject.
  std::function<std::chrono::steady_clock::time_point()> clock;

  // Every answer (users, pages, context) is parsed within these limits.
  notify::JsonLimits json_limits;
};

enum class LookupStatus { kFound, kUnknownUser, kUnavailable };

struct Lookup {
  LookupStatus status = LookupStatus::kUnavailable;
  std::optional<User> user;  // set when kFound
  std::string error;         // why, when not kFound
  int attempts = 0;          // HTTP requests made (0 when answered from the cache)
  long http_status = 0;      // of the last attempt; 0 when no response arrived
  bool cached = false;       // answered from the cache
};

std::string_view to_string(LookupStatus status);

// One page of the users listing: {"items": [...], "page_number", "page_size", "total"}.
struct Page {
  std::vector<User> items;  // the well-formed users of the page, in order
  int page_number = 0;
  int page_size = 0;
  long long total = 0;     // users matching the filters, over all pages
  int skipped = 0;         // malformed users left out, so one bad record cannot block a mailing
  std::string skip_error;  // why the first of them was left out

  // Whether a next page can hold more users. False on an empty page, whatever total claims,
  // so a caller paging "while has_more()" always ends.
  bool has_more() const {
    return (!items.empty() || skipped > 0) &&
           static_cast<long long>(page_number) * page_size < total;
  }
};

// A page envelope that is not one: not JSON within limits, missing or out-of-range fields.
class InvalidPage : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A broken envelope throws InvalidPage; a broken user is skipped and counted.
Page decode_page(const nlohmann::json& j);
Page parse_page(std::string_view body, const notify::JsonLimits& limits = {});

struct PageLookup {
  // kFound: a page; kUnknownUser: 404; kUnavailable: transient or operator trouble, or a
  // malformed envelope.
  LookupStatus status = LookupStatus::kUnavailable;
  std::optional<Page> page;  // set when kFound
  std::string error;         // why, when not kFound
  int attempts = 0;          // HTTP requests made
  long http_status = 0;      // of the last attempt; 0 when no response arrived
};

enum class FetchStatus {
  kOk,
  kTooLarge,     // the body passed max_bytes: permanent
  kBadResponse,  // 3xx (redirects are not followed), 4xx, not JSON, not an http(s) URL: permanent
  kUnavailable,  // 5xx, 408, 429, timeouts, connection errors (after retries): transient
};

struct FetchResult {
  FetchStatus status = FetchStatus::kUnavailable;
  nlohmann::json body;   // the parsed body, when kOk
  std::string error;     // why, when not kOk
  long http_status = 0;  // of the last attempt; 0 when no response arrived
  int attempts = 0;      // HTTP requests made
};

std::string_view to_string(FetchStatus status);

struct ClientStats {
  long long requests = 0;      // HTTP requests sent, every attempt of every call counted
  long long cache_hits = 0;    // get_user answered from the cache
  long long cache_misses = 0;  // get_user asked the service while the cache is on
};

// One libcurl easy handle, reused across requests (keeps connections alive). Redirects are never
// followed and only http and https are spoken. A Client belongs to one thread at a time (stats()
// may be read from any thread). Throws std::invalid_argument for a base_url that is not an
// http(s) URL.
class Client {
 public:
  explicit Client(ClientOptions options);
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // 200 → kFound; 404, and 400/422 (malformed id) → kUnknownUser; 5xx, 429, timeouts and
  // connection errors are retried, then kUnavailable; 401/403 and other 4xx → kUnavailable
  // at once (an operator problem must not drop events); a 200 whose body is not a user within
  // limits → kUnknownUser (asking again gives the same answer), with the reason in error.
  // Found users are cached (see ClientOptions::cache_ttl).
  Lookup get_user(std::string_view id);

  // GET a full listing URL of the Auth service, e.g.
  // {base_url}/api/v1/users/?is_active=true&email_notifications=true&page_number=3&page_size=500
  // (build it with with_query_param from url.hpp). Same token, retries and timeouts as get_user.
  // 200 → kFound with the page; 404 → kUnknownUser; 401/403, other 4xx (a query the service
  // rejects), a malformed envelope, or a URL outside base_url's origin (the token stays home)
  // → kUnavailable at once; 5xx, 429, timeouts → retried, then kUnavailable.
  PageLookup list_users(const std::string& url);

  // GET JSON from any http(s) URL (check it with url_allowed first), sending
  // "Accept: application/json", and the Bearer token only when the URL has base_url's origin.
  // Reading stops past max_bytes (kTooLarge). Redirects are not followed, so an allowlisted URL
  // cannot bounce the request to an internal one.
  FetchResult fetch_json(const std::string& url, std::size_t max_bytes);

  ClientStats stats() const;
  const std::string& base_url() const;  // as configured, without trailing slashes

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace auth
