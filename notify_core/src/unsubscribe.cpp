#include "notify/unsubscribe.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <climits>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "notify/c_handle.hpp"
#include "notify/time.hpp"

namespace notify {
namespace {

constexpr std::string_view kVersion = "v1";
constexpr std::size_t kMacBytes = 32;  // SHA-256
// Far more than a token of a 256-byte user id: anything longer is not ours.
constexpr std::size_t kMaxTokenBytes = 1024;
// Expiries up to 9999-12-31, as every time the services write.
constexpr std::int64_t kMaxExpiry = 253402300799;

using MacBytes = std::array<unsigned char, kMacBytes>;

// A canonical decimal ("0", "1795428005"; no sign, no leading zero) up to kMaxExpiry.
std::optional<std::int64_t> expiry_from(std::string_view text) {
  if (text.empty() || text.size() > 12 || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  std::int64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (value > kMaxExpiry) return std::nullopt;
  return value;
}

TokenRefusal malformed(std::string why) {
  return TokenRefusal{TokenRefusal::Why::kMalformed, "malformed token: " + std::move(why)};
}

}  // namespace

// HMAC-SHA256 keyed once. A MAC is taken on a copy of the keyed context, which is kept for the
// next one and reinitialised there with the same key (EVP_MAC_init without a key): neither the
// key's pads nor a context are made again for every token (a mailing signs one per recipient).
// Copies in use are taken out of `idle`, so that several threads can sign and verify at once.
struct UnsubscribeSigner::Mac {
  using Context = CHandle<EVP_MAC_CTX, EVP_MAC_CTX_free>;
  CHandle<EVP_MAC, EVP_MAC_free> mac;
  Context keyed;
  mutable std::mutex mutex;
  mutable std::vector<Context> idle;  // at most one per thread that used the signer at once

  MacBytes of(std::string_view data) const {
    Context ctx;
    {
      const std::lock_guard lock(mutex);
      if (!idle.empty()) {
        ctx = std::move(idle.back());
        idle.pop_back();
      }
    }
    if (!ctx) ctx.reset(EVP_MAC_CTX_dup(keyed.get()));
    MacBytes out{};
    std::size_t size = 0;
    if (!ctx || EVP_MAC_init(ctx.get(), nullptr, 0, nullptr) != 1 ||
        EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(data.data()),
                       data.size()) != 1 ||
        EVP_MAC_final(ctx.get(), out.data(), &size, out.size()) != 1 || size != kMacBytes) {
      throw std::runtime_error("HMAC-SHA256 failed");
    }
    const std::lock_guard lock(mutex);
    idle.push_back(std::move(ctx));
    return out;
  }
};

UnsubscribeSigner::UnsubscribeSigner(std::string_view secret) : mac_(std::make_unique<Mac>()) {
  if (secret.size() < kMinSecretBytes) {
    throw std::invalid_argument("the unsubscribe secret must be at least " +
                                std::to_string(kMinSecretBytes) + " bytes long");
  }
  mac_->mac.reset(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  if (mac_->mac) mac_->keyed.reset(EVP_MAC_CTX_new(mac_->mac.get()));
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_construct_end()};
  if (!mac_->keyed ||
      EVP_MAC_init(mac_->keyed.get(), reinterpret_cast<const unsigned char*>(secret.data()),
                   secret.size(), params) != 1) {
    throw std::runtime_error("HMAC-SHA256 is not available from OpenSSL");
  }
}

UnsubscribeSigner::~UnsubscribeSigner() = default;
UnsubscribeSigner::UnsubscribeSigner(UnsubscribeSigner&&) noexcept = default;
UnsubscribeSigner& UnsubscribeSigner::operator=(UnsubscribeSigner&&) noexcept = default;

std::string UnsubscribeSigner::sign(std::string_view user_id, Category category,
                                    UnixSeconds expires_at) const {
  std::string token;
  token.reserve(kVersion.size() + user_id.size() * 4 / 3 + 64);
  token.append(kVersion).push_back('.');
  token.append(base64url_encode(user_id)).push_back('.');
  token.append(to_string(category)).push_back('.');
  token.append(std::to_string(expires_at.time_since_epoch().count()));
  const MacBytes mac = mac_->of(token);
  token.push_back('.');
  token.append(
      base64url_encode(std::string_view(reinterpret_cast<const char*>(mac.data()), mac.size())));
  return token;
}

std::variant<UnsubscribeClaim, TokenRefusal> UnsubscribeSigner::verify(std::string_view token,
                                                                       TimePoint now,
                                                                       Category expected) const {
  if (token.empty()) return malformed("empty");
  if (token.size() > kMaxTokenBytes) return malformed("longer than 1024 bytes");
  std::array<std::string_view, 5> parts;
  std::size_t count = 0;
  for (std::size_t start = 0;;) {
    const std::size_t dot = token.find('.', start);
    if (count == parts.size()) return malformed("more than five parts");
    parts[count++] = token.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (count != parts.size()) return malformed("fewer than five parts");
  if (parts[0] != kVersion) return malformed("unknown version");
  auto user_id = base64url_decode(parts[1]);
  if (!user_id || user_id->empty()) return malformed("the user id is not base64url");
  const auto category = category_from(parts[2]);
  if (!category) return malformed("unknown category");
  const auto expiry = expiry_from(parts[3]);
  if (!expiry) return malformed("the expiry is not a time in seconds");
  const auto presented = base64url_decode(parts[4]);
  if (!presented || presented->size() != kMacBytes) return malformed("the MAC is not 32 bytes");

  const std::size_t signed_size = token.size() - parts[4].size() - 1;
  const MacBytes mac = mac_->of(token.substr(0, signed_size));
  if (CRYPTO_memcmp(mac.data(), presented->data(), kMacBytes) != 0) {
    return TokenRefusal{TokenRefusal::Why::kBadSignature,
                        "the token's signature does not match (another secret, or altered)"};
  }
  if (*category != expected) {
    return TokenRefusal{TokenRefusal::Why::kWrongCategory,
                        "the token is for " + std::string(to_string(*category)) + " mail, not " +
                            std::string(to_string(expected))};
  }
  const UnixSeconds expires_at{std::chrono::seconds(*expiry)};
  if (std::chrono::floor<std::chrono::seconds>(now) > expires_at) {
    return TokenRefusal{TokenRefusal::Why::kExpired,
                        "the token expired at " + format_iso8601(TimePoint(expires_at))};
  }
  return UnsubscribeClaim{std::move(*user_id), *category, expires_at};
}

bool fits_list_unsubscribe(std::string_view uri) {
  for (const char c : uri) {
    if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>' || c == ',' || c == '"') return false;
  }
  return true;
}

std::string make_unsubscribe_url(std::string_view base, std::string_view token) {
  const std::size_t hash = base.find('#');
  const std::string_view head = base.substr(0, hash);
  const std::string_view fragment =
      hash == std::string_view::npos ? std::string_view() : base.substr(hash);
  std::string url;
  url.reserve(base.size() + token.size() + 8);
  url.append(head);
  if (head.find('?') == std::string_view::npos) {
    url.push_back('?');
  } else if (head.back() != '?' && head.back() != '&') {
    url.push_back('&');
  }
  url.append("token=").append(token).append(fragment);
  return url;
}

std::string base64url_encode(std::string_view bytes) {
  if (bytes.size() > static_cast<std::size_t>(INT_MAX / 4 * 3 - 3)) {
    throw std::length_error("base64url_encode: input too long");
  }
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');
  const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                      reinterpret_cast<const unsigned char*>(bytes.data()),
                                      static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(written));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  // One character left over makes no byte: no encoder writes it.
  if (text.size() % 4 == 1 || text.size() > kMaxTokenBytes * 4) return std::nullopt;
  std::string standard;
  standard.reserve(text.size() + 3);
  for (const char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      standard.push_back(c);
    } else if (c == '-') {
      standard.push_back('+');
    } else if (c == '_') {
      standard.push_back('/');
    } else {
      return std::nullopt;  // EVP_DecodeBlock would skip blanks and read '=' anywhere
    }
  }
  const std::size_t padding = (4 - standard.size() % 4) % 4;
  standard.append(padding, '=');
  std::string out(standard.size() / 4 * 3, '\0');
  const int decoded = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                      reinterpret_cast<const unsigned char*>(standard.data()),
                                      static_cast<int>(standard.size()));
  // EVP_DecodeBlock counts the padding's bytes as decoded zeros.
  if (decoded < 0 || static_cast<std::size_t>(decoded) != out.size()) return std::nullopt;
  out.resize(out.size() - padding);
  return out;
}

}  // namespace notify
