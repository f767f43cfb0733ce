#pragma once
// Pure helpers for building mail headers safely: RFC 2047 encoded words, mailboxes, RFC 5322
// dates, and sanitising so that no value can inject a header line.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace notify::worker::mime {

// An encoded word is at most 75 characters (RFC 2047 section 2).
inline constexpr std::size_t kMaxEncodedWordLength = 75;

// CR, LF and other control characters become spaces (a tab too): the value stays on one line.
std::string sanitize_header_value(std::string_view value);

// A field name: printable ASCII without ':' or space (RFC 5322 section 3.6.8).
bool is_valid_header_name(std::string_view name);

std::string base64_encode(std::string_view bytes);

// UTF-8 text as "=?UTF-8?B?...?=" words of at most kMaxEncodedWordLength characters each,
// never splitting a UTF-8 sequence (invalid bytes count as one character each).
std::vector<std::string> encode_words(std::string_view utf8);

// A header value for unstructured text (Subject, display names in encoded form): sanitised,
// then left as is when it is plain printable ASCII, else RFC 2047 encoded words folded with
// CRLF + space.
std::string encode_header_text(std::string_view text);

struct Mailbox {
  std::string name;     // display name, may be empty
  std::string address;  // addr-spec
};

// "addr@example.com" or "Display Name <addr@example.com>" (the name may be quoted).
std::optional<Mailbox> parse_mailbox(std::string_view text);

// A conservative check of an addr-spec: local@domain, no spaces, controls or specials that
// could break the SMTP envelope or a header.
bool is_valid_address(std::string_view address);

// The value of List-Unsubscribe (RFC 2369, RFC 8058): "<url>" or "<url>, <mailto>", folded
// after the comma when the line would pass 78 characters. Each URI is written as it is, never
// encoded: nothing when one is not fit for that (an http(s) URL, a mailto: URI; printable ASCII
// without blanks, '<', '>', ',' or '"'; at most kMaxListUnsubscribeUri bytes).
inline constexpr std::size_t kMaxListUnsubscribeUri = 900;
std::optional<std::string> list_unsubscribe_value(std::string_view url, std::string_view mailto);

// "Name <addr>" with the name quoted when it holds specials, encoded when it is not ASCII;
// just "addr" without a name.
std::string format_mailbox(std::string_view name, std::string_view address);

// "Tue, 03 Mar 2026 09:05:07 +0000" (RFC 5322 section 3.3, in UTC).
std::string format_rfc5322_date(std::chrono::system_clock::time_point t);

// Bare LF and bare CR become CRLF, as SMTP and the quoted-printable encoder expect.
std::string to_crlf(std::string_view text);

}  // namespace notify::worker::mime
