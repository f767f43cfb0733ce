// Pure header helpers of the SMTP sender: RFC 2047 words, sanitising, mailboxes, dates.

#include <doctest/doctest.h>

#include "smtp_sink.hpp"

#include <string>

#include "senders/mime_encoding.hpp"

namespace mime = notify::worker::mime;

using notify::testing::base64_decode;

namespace {

// The bytes inside one "=?UTF-8?B?...?=" word.
std::string word_payload(const std::string& word) {
  REQUIRE(word.rfind("=?UTF-8?B?", 0) == 0);
  REQUIRE(word.size() >= 12);
  REQUIRE(word.compare(word.size() - 2, 2, "?=") == 0);
  return base64_decode(word.substr(10, word.size() - 12));
}

bool is_complete_utf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    if (i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

}  // namespace

TEST_CASE("base64 of the RFC 4648 test vectors") {
  CHECK(mime::base64_encode("") == "");
  CHECK(mime::base64_encode("f") == "Zg==");
  CHECK(mime::base64_encode("fo") == "Zm8=");
  CHECK(mime::base64_encode("foo") == "Zm9v");
  CHECK(mime::base64_encode("foob") == "Zm9vYg==");
  CHECK(mime::base64_encode("fooba") == "Zm9vYmE=");
  CHECK(mime::base64_encode("foobar") == "Zm9vYmFy");
}

TEST_CASE("plain ASCII header text stays as is") {
  CHECK(mime::encode_header_text("Welcome to the platform!") == "Welcome to the platform!");
  CHECK(mime::encode_header_text("") == "");
}

TEST_CASE("ASCII that looks like an encoded word is encoded") {
  const auto out = mime::encode_header_text("=?UTF-8?B?Zm9v?=");
  CHECK(out.rfind("=?UTF-8?B?", 0) == 0);
  CHECK(word_payload(out) == "=?UTF-8?B?Zm9v?=");
}

TEST_CASE("short UTF-8 text becomes one encoded word") {
  const auto out = mime::encode_header_text("Willkommen, Zoë!");
  CHECK(out == "=?UTF-8?B?" + mime::base64_encode("Willkommen, Zoë!") + "?=");
}

TEST_CASE("long UTF-8 text is split on character boundaries, words of at most 75 chars") {
  std::string text;
  for (int i = 0; i < 30; ++i) text += "Grüße 😀 ";  // 1-, 2- and 4-byte sequences
  const auto words = mime::encode_words(text);
  REQUIRE(words.size() > 1);
  std::string joined;
  for (const auto& w : words) {
    CHECK(w.size() <= mime::kMaxEncodedWordLength);
    const std::string payload = word_payload(w);
    CHECK(is_complete_utf8(payload));
    joined += payload;
  }
  CHECK(joined == text);

  // Folded with CRLF + space between the words; no other line breaks.
  const auto folded = mime::encode_header_text(text);
  std::size_t breaks = 0;
  for (std::size_t p = folded.find("\r\n"); p != std::string::npos;
       p = folded.find("\r\n", p + 1)) {
    ++breaks;
    CHECK(folded[p + 2] == ' ');
  }
  CHECK(breaks == words.size() - 1);
}

TEST_CASE("words use the full 45-byte budget and never split a 4-byte sequence") {
  std::string text;
  for (int i = 0; i < 12; ++i) text += "😀";  // 48 bytes: 11 fit in 45, the 12th does not
  const auto words = mime::encode_words(text);
  REQUIRE(words.size() == 2);
  CHECK(word_payload(words[0]).size() == 44);
  CHECK(word_payload(words[1]) == "😀");

  const auto ascii_words = mime::encode_words(std::string(90, 'a'));
  REQUIRE(ascii_words.size() == 2);
  CHECK(ascii_words[0].size() == 72);
}

TEST_CASE("CR, LF and other controls cannot inject a header") {
  CHECK(mime::sanitize_header_value("Hi\r\nBcc: victim@example.com") ==
        "Hi  Bcc: victim@example.com");
  CHECK(mime::sanitize_header_value(std::string("a\0b\tc", 5)) == "a b c");
  const auto encoded = mime::encode_header_text("Grüße\r\nBcc: x@example.com");
  CHECK(encoded.find("Bcc") == std::string::npos);  // inside base64 now
  CHECK(word_payload(encoded) == "Grüße  Bcc: x@example.com");
  CHECK(mime::encode_header_text("Hello\nX-Evil: 1") == "Hello X-Evil: 1");
}

TEST_CASE("header names") {
  CHECK(mime::is_valid_header_name("X-Notify-Posting-Id"));
  CHECK_FALSE(mime::is_valid_header_name(""));
  CHECK_FALSE(mime::is_valid_header_name("X Bad"));
  CHECK_FALSE(mime::is_valid_header_name("X-Bad:"));
  CHECK_FALSE(mime::is_valid_header_name("X-Bad\r\n"));
}

TEST_CASE("addresses") {
  CHECK(mime::is_valid_address("ada@example.com"));
  CHECK(mime::is_valid_address("first.last+tag@sub.example.co.uk"));
  CHECK_FALSE(mime::is_valid_address(""));
  CHECK_FALSE(mime::is_valid_address("no-at-sign"));
  CHECK_FALSE(mime::is_valid_address("@example.com"));
  CHECK_FALSE(mime::is_valid_address("ada@"));
  CHECK_FALSE(mime::is_valid_address("ada@example..com"));
  CHECK_FALSE(mime::is_valid_address("ada @example.com"));
  CHECK_FALSE(mime::is_valid_address("ada@example.com>\r\nRCPT TO:<x@y.z"));
  CHECK_FALSE(mime::is_valid_address("<ada@example.com>"));
}

TEST_CASE("parse_mailbox") {
  auto bare = mime::parse_mailbox(" noreply@example.com ");
  REQUIRE(bare);
  CHECK(bare->name.empty());
  CHECK(bare->address == "noreply@example.com");

  auto named = mime::parse_mailbox("Notify Team <noreply@example.com>");
  REQUIRE(named);
  CHECK(named->name == "Notify Team");
  CHECK(named->address == "noreply@example.com");

  auto quoted = mime::parse_mailbox(R"("Team, \"Notify\"" <noreply@example.com>)");
  REQUIRE(quoted);
  CHECK(quoted->name == R"(Team, "Notify")");

  CHECK_FALSE(mime::parse_mailbox("Broken <noreply@example.com"));
  CHECK_FALSE(mime::parse_mailbox("nobody"));
}

TEST_CASE("format_mailbox quotes specials and encodes non-ASCII names") {
  CHECK(mime::format_mailbox("", "a@example.com") == "a@example.com");
  CHECK(mime::format_mailbox("Ada Lovelace", "a@example.com") == "Ada Lovelace <a@example.com>");
  CHECK(mime::format_mailbox("Lovelace, Ada", "a@example.com") ==
        "\"Lovelace, Ada\" <a@example.com>");
  CHECK(mime::format_mailbox(R"(A "B" C)", "a@example.com") == R"("A \"B\" C" <a@example.com>)");
  CHECK(mime::format_mailbox("Zoë Müller", "z@example.com") ==
        "=?UTF-8?B?" + mime::base64_encode("Zoë Müller") + "?= <z@example.com>");
  CHECK(mime::format_mailbox("Eve\r\nBcc: x@y.z", "e@example.com") ==
        "\"Eve  Bcc: x@y.z\" <e@example.com>");
}

TEST_CASE("RFC 5322 dates in UTC") {
  using namespace std::chrono;
  const sys_seconds t = sys_days{year{2026} / March / 3} + 9h + 5min + 7s;
  CHECK(mime::format_rfc5322_date(time_point_cast<system_clock::duration>(t)) ==
        "Tue, 03 Mar 2026 09:05:07 +0000");
  const sys_seconds epoch{};
  CHECK(mime::format_rfc5322_date(epoch) == "Thu, 01 Jan 1970 00:00:00 +0000");
}

TEST_CASE("line ends become CRLF") {
  CHECK(mime::to_crlf("a\nb\r\nc\rd") == "a\r\nb\r\nc\r\nd");
  CHECK(mime::to_crlf("") == "");
  CHECK(mime::to_crlf("\n\n") == "\r\n\r\n");
}

TEST_CASE("a sender parsed from SMTP_FROM is written back as a valid From header") {
  struct Case {
    const char* configured;
    const char* header;
    const char* envelope;
  };
  const Case cases[] = {
      {"notifications@example.com", "notifications@example.com", "notifications@example.com"},
      {"Notifications <notifications@example.com>", "Notifications <notifications@example.com>",
       "notifications@example.com"},
      // Specials in the name are quoted, with quotes and backslashes escaped.
      {"Team, Ops <ops@example.org>", R"("Team, Ops" <ops@example.org>)", "ops@example.org"},
      {R"("Team, \"Ops\"" <ops@example.org>)", R"("Team, \"Ops\"" <ops@example.org>)",
       "ops@example.org"},
      // Non-ASCII names are RFC 2047 encoded words, never raw UTF-8 in the header.
      {"Zoë Benachrichtigungen <z@example.org>",
       "=?UTF-8?B?Wm/DqyBCZW5hY2hyaWNodGlndW5nZW4=?= <z@example.org>", "z@example.org"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.configured);
    const auto mailbox = mime::parse_mailbox(c.configured);
    REQUIRE(mailbox);
    CHECK(mailbox->address == c.envelope);
    CHECK(mime::format_mailbox(mailbox->name, mailbox->address) == c.header);
  }
}

TEST_CASE("List-Unsubscribe: URIs in angle brackets, folded after the comma, never encoded") {
  CHECK(mime::list_unsubscribe_value("https://example.org/u?token=T", "") ==
        "<https://example.org/u?token=T>");
  CHECK(mime::list_unsubscribe_value("http://127.0.0.1:8081/u?token=T", "mailto:u@example.org") ==
        "<http://127.0.0.1:8081/u?token=T>, <mailto:u@example.org>");
  // Longer than a line: folded after the comma, each URI whole on its line.
  const std::string url = "https://example.org/unsubscribe?token=v1." + std::string(100, 'A');
  const std::string mailto = "mailto:unsubscribe@example.org?subject=unsubscribe%20v1.A";
  CHECK(mime::list_unsubscribe_value(url, mailto) == "<" + url + ">,\r\n <" + mailto + ">");
  // Text that looks like an encoded word stays as it is: a URI is never RFC 2047 encoded.
  CHECK(mime::list_unsubscribe_value("https://example.org/u?a==?x?=", "") ==
        "<https://example.org/u?a==?x?=>");
  CHECK(
      mime::list_unsubscribe_value("https://example.org/" + std::string(880, 'a'), "").has_value());

  // What could end the header, inject one, or split the list is refused, never cleaned.
  for (const std::string& bad :
       {std::string(""), std::string("ftp://example.org/u"), std::string("javascript:alert(1)"),
        std::string("https://example.org/u\r\nBcc: evil@example.com"),
        std::string("https://example.org/u\nX: y"), std::string("https://example.org/u v"),
        std::string("https://example.org/u>, <https://evil.example"),
        std::string("https://example.org/u,x"), std::string("https://example.org/\"u"),
        std::string("https://example.org/\xc3\xa9"), std::string("https://example.org/u\0x", 22),
        std::string("https://example.org/") + std::string(900, 'a')}) {
    CAPTURE(bad);
    CHECK_FALSE(mime::list_unsubscribe_value(bad, ""));
  }
  for (const std::string& bad : {std::string("unsubscribe@example.org"), std::string("mailto:"),
                                 std::string("mailto:u@example.org\r\nBcc: evil@example.com"),
                                 std::string("mailto:u@example.org>, <https://evil.example")}) {
    CAPTURE(bad);
    CHECK_FALSE(mime::list_unsubscribe_value("https://example.org/u", bad));
  }
}
