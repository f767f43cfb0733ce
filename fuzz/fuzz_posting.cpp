// fuzz_posting: a message body from the postings queue through everything the worker does with
// it before a socket: decode_posting, the policy (before_send, decide) at a fixed time, the
// e-mail (to_email) and the pieces its MIME message is built of (mime_encoding), and the
// webhook payload. The SMTP sender assembles its headers from these pieces inside its libcurl
// transfer; here they are checked to stay on their lines.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "delivery.hpp"
#include "fuzz_check.hpp"
#include "notify/posting.hpp"
#include "notify/time.hpp"
#include "outcomes.hpp"
#include "policy.hpp"
#include "senders/mime_encoding.hpp"
#include "senders/webhook_sender.hpp"

namespace {

namespace mime = notify::worker::mime;

const notify::TimePoint kNow{std::chrono::milliseconds(1795428005000)};  // 2026-11-23T10:00:05Z
constexpr const char* kFrom = "Notify <notify@example.org>";

// A header line holds no CR or LF but for folding (CRLF followed by a space or tab).
void check_header(std::string_view line) {
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\n') fuzz::fail("a bare LF in a header", line);
    if (line[i] == '\r') {
      const bool folded =
          i + 2 < line.size() && line[i + 1] == '\n' && (line[i + 2] == ' ' || line[i + 2] == '\t');
      fuzz::require(folded, "a CR in a header that does not fold it", line);
      ++i;  // the LF of the fold
    }
    fuzz::require(line[i] != '\0', "a NUL in a header", line);
  }
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::string base64_decode(std::string_view text) {
  std::string out;
  unsigned bits = 0;
  int count = 0;
  for (char c : text) {
    if (c == '=') break;
    const int v = base64_value(c);
    fuzz::require(v >= 0, "a base64 character outside the alphabet", text);
    bits = (bits << 6) | static_cast<unsigned>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xff);
    }
  }
  return out;
}

// Encoded words are at most 75 characters and decode back to the text.
void check_words(std::string_view text) {
  std::string decoded;
  for (const std::string& word : mime::encode_words(text)) {
    fuzz::require(word.size() <= mime::kMaxEncodedWordLength, "an encoded word is too long", word);
    fuzz::require(word.rfind("=?UTF-8?B?", 0) == 0 && word.size() >= 12 &&
                      word.compare(word.size() - 2, 2, "?=") == 0,
                  "an encoded word is not one", word);
    decoded += base64_decode(std::string_view(word).substr(10, word.size() - 12));
  }
  fuzz::require(decoded == text, "encoded words do not decode to the text");
}

void check_body(std::string_view text) {
  const std::string crlf = mime::to_crlf(text);
  for (std::size_t i = 0; i < crlf.size(); ++i) {
    if (crlf[i] == '\r') {
      fuzz::require(i + 1 < crlf.size() && crlf[i + 1] == '\n', "a bare CR in a body");
    } else if (crlf[i] == '\n') {
      fuzz::require(i > 0 && crlf[i - 1] == '\r', "a bare LF in a body");
    }
  }
}

void check_email(const notify::Posting& p) {
  const auto email = worker::to_email(p, kFrom);
  const auto from = mime::parse_mailbox(email.from);
  fuzz::require(from.has_value(), "the sender's mailbox does not parse", email.from);
  check_header("From: " + mime::format_mailbox(from->name, from->address));
  if (mime::is_valid_address(email.to)) {
    const std::string to = mime::format_mailbox(email.to_name, email.to);
    check_header("To: " + to);
    const auto parsed = mime::parse_mailbox(to);
    fuzz::require(parsed && parsed->address == email.to,
                  "the recipient's mailbox does not read back", to);
  }
  check_header("Subject: " + mime::encode_header_text(email.subject));
  // Bulk mail: List-Unsubscribe is written as it is, never encoded, so what goes in must be
  // checked; a posting whose links it cannot carry is dead-lettered before any send.
  fuzz::require(email.list_unsubscribe_url.empty() ==
                    (p.category != notify::Category::kBulk || p.unsubscribe.url.empty()),
                "List-Unsubscribe on the wrong mail", p.unsubscribe.url);
  if (!email.list_unsubscribe_url.empty()) {
    const auto value =
        mime::list_unsubscribe_value(email.list_unsubscribe_url, email.list_unsubscribe_mailto);
    fuzz::require(value.has_value() == !worker::unsendable(p).has_value(),
                  "the worker's check and the header's disagree", email.list_unsubscribe_url);
    if (value) {
      check_header("List-Unsubscribe: " + *value);
      fuzz::require(value->find(email.list_unsubscribe_url) != std::string::npos,
                    "List-Unsubscribe lost its URL", *value);
    }
  }
  for (const auto& [name, value] : email.extra_headers) {
    if (!mime::is_valid_header_name(name)) continue;
    check_header(name + ": " + mime::encode_header_text(value));
  }
  check_words(email.subject);
  check_words(email.to_name);
  check_body(email.text);
  check_body(email.html);
}

void check_policy(const notify::Posting& p) {
  worker::PolicyOptions policy;
  policy.default_timezone = "Europe/Berlin";
  const auto random01 = [] { return 0.5; };
  const worker::Evaluation e = worker::decide(p, kNow, policy, random01);
  if (const auto* defer = std::get_if<worker::Defer>(&e.decision)) {
    fuzz::require(defer->until >= kNow, "deferred into the past", worker::to_string(e.decision));
    fuzz::require(defer->until < p.expires_at, "deferred beyond the expiry",
                  worker::to_string(e.decision));
  }
  if (std::holds_alternative<worker::Send>(e.decision)) {
    fuzz::require(kNow < p.expires_at, "an expired posting is sent");
  }
  (void)worker::before_send(p, std::nullopt, 0, kNow, policy, random01);
  (void)worker::before_send(p, kNow + std::chrono::hours(1), 2, kNow, policy, random01);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  notify::Posting posting;
  try {
    posting = notify::decode_posting(body);
  } catch (const notify::PostingError&) {
    return 0;  // refused: dead-lettered with the reason
  }
  // What was read writes back the same way.
  const std::string encoded = notify::encode(posting);
  try {
    fuzz::require(notify::encode(notify::decode_posting(encoded)) == encoded,
                  "a decoded posting does not encode the same way twice", encoded);
  } catch (const notify::PostingError& e) {
    fuzz::fail("a decoded posting, encoded, does not decode", e.what());
  }

  check_policy(posting);
  if (posting.channel == notify::Channel::kEmail) {
    check_email(posting);
  } else {
    const std::string payload = notify::worker::webhook_payload(posting).dump();
    fuzz::require(!payload.empty(), "an empty webhook payload");
  }
  return 0;
}
