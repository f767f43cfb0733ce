#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "notify/time.hpp"
#include "notify/unsubscribe.hpp"

using namespace notify;
using namespace std::chrono;

namespace {

constexpr std::string_view kSecret = "a development secret, 32 bytes.";
const TimePoint kNow = *parse_iso8601("2026-11-23T10:00:00.250Z");
const UnixSeconds kExpiry = floor<seconds>(kNow) + days(60);

TokenRefusal::Why refusal_of(const std::variant<UnsubscribeClaim, TokenRefusal>& result) {
  REQUIRE(std::holds_alternative<TokenRefusal>(result));
  return std::get<TokenRefusal>(result).why;
}

std::vector<std::string> split(const std::string& token) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (std::size_t dot; (dot = token.find('.', start)) != std::string::npos; start = dot + 1) {
    parts.push_back(token.substr(start, dot - start));
  }
  parts.push_back(token.substr(start));
  return parts;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ".") + p;
  return out;
}

}  // namespace

TEST_CASE("an unsubscribe token round-trips: user, category and expiry") {
  const UnsubscribeSigner signer(kSecret);
  for (const std::string& user :
       {std::string("abefc72e-b81a-4a0d-882b-db3049deaef3"), std::string("u"),
        std::string("Zoë/ü+?&=.x"), std::string("nul\0inside", 10), std::string(256, 'x')}) {
    CAPTURE(user);
    const std::string token = signer.sign(user, Category::kBulk, kExpiry);
    // URL-safe as it is: no escaping needed in a query or a header.
    for (const char c : token) {
      CHECK(((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
             c == '-' || c == '_' || c == '.'));
    }
    CHECK(token.rfind("v1.", 0) == 0);
    const auto result = signer.verify(token, kNow);
    REQUIRE(std::holds_alternative<UnsubscribeClaim>(result));
    const auto& claim = std::get<UnsubscribeClaim>(result);
    CHECK(claim.user_id == user);
    CHECK(claim.category == Category::kBulk);
    CHECK(claim.expires_at == kExpiry);
  }
  // The same inputs, the same token: nothing random in it.
  CHECK(signer.sign("u-1", Category::kBulk, kExpiry) ==
        signer.sign("u-1", Category::kBulk, kExpiry));
  // A known answer (openssl dgst -sha256 -hmac), so that another implementation of the format
  // can be checked against it.
  CHECK(signer.sign("u-1", Category::kBulk, kExpiry) ==
        "v1.dS0x.bulk.1800612000.CBJH_HCAFiH48oyNEbPa7Z1xPK-d85XSwhyxmfue_I8");
}

TEST_CASE("a signer's MAC is the same whichever tokens it took before and from how many threads") {
  const UnsubscribeSigner signer(kSecret);
  const std::string known = "v1.dS0x.bulk.1800612000.CBJH_HCAFiH48oyNEbPa7Z1xPK-d85XSwhyxmfue_I8";
  // The context a MAC was taken on is used again for the next: nothing of a longer token before
  // (several blocks of SHA-256) may be left in it.
  CHECK(!signer.sign(std::string(300, 'x'), Category::kBulk, kExpiry).empty());
  CHECK(refusal_of(signer.verify(known.substr(0, known.size() - 1) + "A", kNow)) ==
        TokenRefusal::Why::kBadSignature);
  CHECK(signer.sign("u-1", Category::kBulk, kExpiry) == known);

  constexpr int kThreads = 4;
  constexpr int kTokensEach = 300;
  std::vector<int> wrong(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&signer, &known, &wrong, t] {
      for (int i = 0; i < kTokensEach; ++i) {
        const std::string user = "user-" + std::to_string(t) + "-" + std::to_string(i);
        const std::string token = signer.sign(user, Category::kBulk, kExpiry);
        const auto claim = signer.verify(token, kNow);
        if (!std::holds_alternative<UnsubscribeClaim>(claim) ||
            std::get<UnsubscribeClaim>(claim).user_id != user ||
            signer.sign("u-1", Category::kBulk, kExpiry) != known) {
          ++wrong[static_cast<std::size_t>(t)];
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(wrong == std::vector<int>(kThreads, 0));
}

TEST_CASE("a token is valid up to its expiry second, and refused after it") {
  const UnsubscribeSigner signer(kSecret);
  const std::string token = signer.sign("u-1", Category::kBulk, kExpiry);
  CHECK(std::holds_alternative<UnsubscribeClaim>(
      signer.verify(token, TimePoint(kExpiry) + milliseconds(999))));
  const auto late = signer.verify(token, TimePoint(kExpiry) + seconds(1));
  CHECK(refusal_of(late) == TokenRefusal::Why::kExpired);
  CHECK(std::get<TokenRefusal>(late).reason.find("expired") != std::string::npos);
}

TEST_CASE("a tampered token is refused: user, category, expiry, MAC") {
  const UnsubscribeSigner signer(kSecret);
  const std::string token = signer.sign("u-1", Category::kBulk, kExpiry);
  const auto parts = split(token);
  REQUIRE(parts.size() == 5);

  auto with = [&](std::size_t index, const std::string& value) {
    auto changed = parts;
    changed[index] = value;
    return join(changed);
  };
  CHECK(refusal_of(signer.verify(with(1, base64url_encode("u-2")), kNow)) ==
        TokenRefusal::Why::kBadSignature);
  CHECK(refusal_of(signer.verify(with(2, "transactional"), kNow)) ==
        TokenRefusal::Why::kBadSignature);
  CHECK(refusal_of(signer.verify(
            with(3, std::to_string(kExpiry.time_since_epoch().count() + 86400 * 365)), kNow)) ==
        TokenRefusal::Why::kBadSignature);
  std::string mac = parts[4];
  mac[0] = mac[0] == 'A' ? 'B' : 'A';
  CHECK(refusal_of(signer.verify(with(4, mac), kNow)) == TokenRefusal::Why::kBadSignature);
  // Every single character changed.
  for (std::size_t i = 0; i < token.size(); ++i) {
    std::string changed = token;
    changed[i] = changed[i] == 'x' ? 'y' : 'x';
    CAPTURE(changed);
    CHECK(std::holds_alternative<TokenRefusal>(signer.verify(changed, kNow)));
  }
}

TEST_CASE("a token of another secret or another category is refused") {
  const UnsubscribeSigner signer(kSecret);
  const UnsubscribeSigner other("another secret of 32 bytes....");
  CHECK(refusal_of(other.verify(signer.sign("u-1", Category::kBulk, kExpiry), kNow)) ==
        TokenRefusal::Why::kBadSignature);
  const std::string transactional = signer.sign("u-1", Category::kTransactional, kExpiry);
  const auto wrong = signer.verify(transactional, kNow);
  CHECK(refusal_of(wrong) == TokenRefusal::Why::kWrongCategory);
  CHECK(std::holds_alternative<UnsubscribeClaim>(
      signer.verify(transactional, kNow, Category::kTransactional)));
  CHECK_THROWS_AS(UnsubscribeSigner("short"), std::invalid_argument);
}

TEST_CASE("garbage is refused as malformed, never crashes") {
  const UnsubscribeSigner signer(kSecret);
  const std::string good = signer.sign("u-1", Category::kBulk, kExpiry);
  const auto parts = split(good);
  for (const std::string& bad :
       {std::string(), std::string("."), std::string("...."), std::string("v1"),
        std::string("v2.") + parts[1] + "." + parts[2] + "." + parts[3] + "." + parts[4],
        good + ".x", good.substr(0, good.rfind('.')), std::string(5000, 'a'),
        "v1.." + parts[2] + "." + parts[3] + "." + parts[4],
        "v1.dS0x.newsletter." + parts[3] + "." + parts[4],
        "v1.dS0x.bulk.0" + parts[3] + "." + parts[4], "v1.dS0x.bulk.-1." + parts[4],
        "v1.dS0x.bulk.99999999999999." + parts[4], "v1.dS0x.bulk." + parts[3] + ".AAAA",
        "v1.d=0x.bulk." + parts[3] + "." + parts[4], "v1.d S0x.bulk." + parts[3] + "." + parts[4],
        "v1.dS0xA.bulk." + parts[3] + "." + parts[4], std::string("v1.\0.bulk.1.AA", 14)}) {
    CAPTURE(bad);
    CHECK(refusal_of(signer.verify(bad, kNow)) == TokenRefusal::Why::kMalformed);
  }
}

TEST_CASE("base64url through OpenSSL: no padding, URL-safe alphabet, strict decoding") {
  CHECK(base64url_encode("") == "");
  CHECK(base64url_encode("f") == "Zg");
  CHECK(base64url_encode("fo") == "Zm8");
  CHECK(base64url_encode("foo") == "Zm9v");
  CHECK(base64url_encode("\xfb\xff\xbf") == "-_-_");
  for (const std::string& s : {std::string(), std::string("f"), std::string("fo"),
                               std::string("foob"), std::string("\0\xff\xfe", 3)}) {
    CHECK(base64url_decode(base64url_encode(s)) == s);
  }
  CHECK_FALSE(base64url_decode("Zg=="));  // padding is not ours
  CHECK_FALSE(base64url_decode("Z"));
  CHECK_FALSE(base64url_decode("Zm+v"));
  CHECK_FALSE(base64url_decode("Zm 9v"));
}

TEST_CASE("the unsubscribe URL carries the token as a query parameter") {
  CHECK(make_unsubscribe_url("https://example.org/unsubscribe", "T") ==
        "https://example.org/unsubscribe?token=T");
  CHECK(make_unsubscribe_url("https://example.org/u?list=news", "T") ==
        "https://example.org/u?list=news&token=T");
  CHECK(make_unsubscribe_url("https://example.org/u?", "T") == "https://example.org/u?token=T");
  CHECK(make_unsubscribe_url("https://example.org/u?a=1&", "T") ==
        "https://example.org/u?a=1&token=T");
  CHECK(make_unsubscribe_url("https://example.org/u#top", "T") ==
        "https://example.org/u?token=T#top");
}
