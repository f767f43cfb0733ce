#pragma once
// One-click unsubscribe tokens (documentation/unsubscribe.md): self-contained and URL-safe,
//   v1.<base64url(user id)>.<category>.<expiry, unix seconds>.<base64url(HMAC-SHA256)>
// the MAC taken over everything before its dot and keyed by UNSUBSCRIBE_SECRET. The ETL signs
// one per recipient of bulk mail; the platform's endpoint (in development: dev_auth_server)
// verifies it with the same secret, so it needs no store of tokens.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "notify/posting.hpp"

namespace notify {

using UnixSeconds = std::chrono::sys_seconds;

// What a valid token says.
struct UnsubscribeClaim {
  std::string user_id;
  Category category = Category::kBulk;
  UnixSeconds expires_at{};
};

// Why a token is refused. Only a token whose MAC is right is judged by category and expiry, so
// a forged token is never reported as merely expired.
struct TokenRefusal {
  enum class Why { kMalformed, kBadSignature, kWrongCategory, kExpired };
  Why why;
  std::string reason;  // for a person: "token expired at 2026-11-23T10:00:00.000Z", ...
};

class UnsubscribeSigner {
 public:
  // The key: at least kMinSecretBytes, else std::invalid_argument.
  static constexpr std::size_t kMinSecretBytes = 16;
  explicit UnsubscribeSigner(std::string_view secret);
  ~UnsubscribeSigner();
  UnsubscribeSigner(UnsubscribeSigner&&) noexcept;
  UnsubscribeSigner& operator=(UnsubscribeSigner&&) noexcept;

  // Safe from several threads at once: each MAC is taken on a copy of the keyed context that no
  // other thread uses meanwhile.
  std::string sign(std::string_view user_id, Category category, UnixSeconds expires_at) const;
  // The claim of a token signed with this secret, of `expected` category, not expired at `now`
  // (a token is valid up to and including its expiry second).
  std::variant<UnsubscribeClaim, TokenRefusal> verify(std::string_view token, TimePoint now,
                                                      Category expected = Category::kBulk) const;

 private:
  struct Mac;
  std::unique_ptr<Mac> mac_;
};

// Whether a URI can stand in List-Unsubscribe as it is (RFC 2369), never encoded: printable
// ASCII without blanks, and none of '<', '>', ',' or '"', which end or split the header's <...>
// entries. The ETL checks UNSUBSCRIBE_URL and UNSUBSCRIBE_MAILTO with it, the worker each
// posting's links.
bool fits_list_unsubscribe(std::string_view uri);

// The base URL with the token as its `token` query parameter: "?token=" or, when the base
// already has a query, "&token=" (before a fragment, if any).
std::string make_unsubscribe_url(std::string_view base, std::string_view token);

// URL-safe base64 without padding (RFC 4648 section 5), through OpenSSL's EVP_EncodeBlock and
// EVP_DecodeBlock; decoding refuses any other character and impossible lengths.
std::string base64url_encode(std::string_view bytes);
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace notify
