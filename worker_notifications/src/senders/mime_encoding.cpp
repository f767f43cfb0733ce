#include "senders/mime_encoding.hpp"

#include <date/date.h>

#include <locale>

#include "notify/unsubscribe.hpp"

namespace notify::worker::mime {

namespace {

constexpr std::string_view kWordPrefix = "=?UTF-8?B?";
constexpr std::string_view kWordSuffix = "?=";
// Base64 turns 3 bytes into 4 characters: 45 bytes make 60, the most that fits in 75 - 12.
constexpr std::size_t kMaxBytesPerWord =
    (kMaxEncodedWordLength - kWordPrefix.size() - kWordSuffix.size()) / 4 * 3;

// Plain ASCII header text longer than this is encoded, so that folding keeps lines short.
constexpr std::size_t kMaxPlainHeaderLength = 900;

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

// The length of the UTF-8 sequence starting at text[i]; 1 for an invalid or truncated one.
std::size_t sequence_length(std::string_view text, std::size_t i) {
  const auto c = static_cast<unsigned char>(text[i]);
  std::size_t n = 1;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
  }
  if (i + n > text.size()) return 1;
  for (std::size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) return 1;
  }
  return n;
}

bool needs_encoding(std::string_view text) {
  if (text.size() > kMaxPlainHeaderLength) return true;
  // Text that looks like an encoded word would be decoded by mail readers.
  if (text.find("=?") != std::string_view::npos) return true;
  for (unsigned char c : text) {
    if (c >= 0x80 || is_control(c)) return true;
  }
  return false;
}

bool is_ascii(std::string_view text) {
  for (unsigned char c : text) {
    if (c >= 0x80) return false;
  }
  return true;
}

std::string quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string sanitize_header_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) out += is_control(static_cast<unsigned char>(c)) ? ' ' : c;
  return out;
}

bool is_valid_header_name(std::string_view name) {
  if (name.empty()) return false;
  for (unsigned char c : name) {
    if (c <= 0x20 || c >= 0x7f || c == ':') return false;
  }
  return true;
}

std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const unsigned v = static_cast<unsigned char>(bytes[i]) << 16 |
                       static_cast<unsigned char>(bytes[i + 1]) << 8 |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    if (rest == 2) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::vector<std::string> encode_words(std::string_view utf8) {
  std::vector<std::string> words;
  std::size_t start = 0;
  while (start < utf8.size()) {
    std::size_t end = start;
    while (end < utf8.size()) {
      const std::size_t n = sequence_length(utf8, end);
      if (end + n - start > kMaxBytesPerWord) break;
      end += n;
    }
    std::string word(kWordPrefix);
    word += base64_encode(utf8.substr(start, end - start));
    word += kWordSuffix;
    words.push_back(std::move(word));
    start = end;
  }
  return words;
}

std::string encode_header_text(std::string_view text) {
  std::string clean = sanitize_header_value(text);
  if (!needs_encoding(clean)) return clean;
  std::string out;
  for (const auto& word : encode_words(clean)) {
    if (!out.empty()) out += "\r\n ";
    out += word;
  }
  return out;
}

namespace {

bool fit_for_list_header(std::string_view uri) {
  return uri.size() <= kMaxListUnsubscribeUri && notify::fits_list_unsubscribe(uri);
}

}  // namespace

std::optional<std::string> list_unsubscribe_value(std::string_view url, std::string_view mailto) {
  const bool http = url.starts_with("https://") || url.starts_with("http://");
  if (!http || !fit_for_list_header(url)) return std::nullopt;
  std::string value = "<" + std::string(url) + ">";
  if (mailto.empty()) return value;
  if (!mailto.starts_with("mailto:") || mailto.size() == 7 || !fit_for_list_header(mailto)) {
    return std::nullopt;
  }
  // "List-Unsubscribe: " is 18 characters.
  const bool fold = 18 + value.size() + 2 + mailto.size() + 2 > 78;
  value += fold ? ",\r\n <" : ", <";
  value.append(mailto).push_back('>');
  return value;
}

std::optional<Mailbox> parse_mailbox(std::string_view text) {
  text = trim(text);
  const auto open = text.rfind('<');
  if (open == std::string_view::npos) {
    if (!is_valid_address(text)) return std::nullopt;
    return Mailbox{"", std::string(text)};
  }
  if (text.back() != '>') return std::nullopt;
  const std::string_view address = text.substr(open + 1, text.size() - open - 2);
  if (!is_valid_address(address)) return std::nullopt;
  std::string_view name = trim(text.substr(0, open));
  std::string unquoted;
  if (name.size() >= 2 && name.front() == '"' && name.back() == '"') {
    name = name.substr(1, name.size() - 2);
    for (std::size_t i = 0; i < name.size(); ++i) {
      if (name[i] == '\\' && i + 1 < name.size()) ++i;
      unquoted += name[i];
    }
  } else {
    unquoted = std::string(name);
  }
  return Mailbox{sanitize_header_value(unquoted), std::string(address)};
}

bool is_valid_address(std::string_view address) {
  if (address.empty() || address.size() > 254) return false;
  const auto at = address.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == address.size()) return false;
  for (unsigned char c : address) {
    if (is_control(c) || c == ' ') return false;
    switch (c) {
      case '<':
      case '>':
      case '(':
      case ')':
      case '[':
      case ']':
      case ',':
      case ';':
      case ':':
      case '"':
      case '\\':
        return false;
      default:
        break;
    }
  }
  const std::string_view domain = address.substr(at + 1);
  if (domain.find('@') != std::string_view::npos) return false;
  if (domain.front() == '.' || domain.back() == '.' ||
      domain.find("..") != std::string_view::npos) {
    return false;
  }
  return true;
}

std::string format_mailbox(std::string_view name, std::string_view address) {
  const std::string clean = std::string(trim(sanitize_header_value(name)));
  if (clean.empty()) return std::string(address);
  std::string display;
  if (!is_ascii(clean) || clean.size() > kMaxPlainHeaderLength ||
      clean.find("=?") != std::string::npos) {
    display = encode_header_text(clean);
  } else if (clean.find_first_of("()<>[]:;@\\,.\"") != std::string::npos) {
    display = quote(clean);
  } else {
    display = clean;
  }
  return display + " <" + std::string(address) + ">";
}

std::string format_rfc5322_date(std::chrono::system_clock::time_point t) {
  // The classic locale: day and month names in English whatever the process's locale.
  return date::format(std::locale::classic(), "%a, %d %b %Y %H:%M:%S +0000",
                      date::floor<std::chrono::seconds>(t));
}

std::string to_crlf(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 32);
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\r') {
      out += "\r\n";
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else if (c == '\n') {
      out += "\r\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace notify::worker::mime
