#include "notify/redact.hpp"

#include <cstring>

namespace notify {
namespace {

// The characters of an unquoted local part (RFC 5322 atext and dots, less the apostrophe that
// quotes addresses in messages) and of a domain.
bool local_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != '\0' && std::strchr(".!#$%&*+/=?^_`{|}~-", c) != nullptr);
}
bool domain_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-';
}

}  // namespace

std::string mask_address(std::string_view address) {
  const auto at = address.rfind('@');
  if (at == std::string_view::npos) return std::string(address);
  if (at == 0) return "***" + std::string(address);
  return std::string(address.substr(0, 1)) + "***" + std::string(address.substr(at));
}

std::string mask_addresses(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t copied = 0;  // text before this is in out
  for (std::size_t at = text.find('@'); at != std::string_view::npos; at = text.find('@', at + 1)) {
    std::size_t start = at;
    while (start > copied && local_char(text[start - 1])) --start;
    std::size_t end = at + 1;
    while (end < text.size() && domain_char(text[end])) ++end;
    if (start == at || end == at + 1) continue;  // not an address: "@" alone, "user@", "@host"
    out.append(text.substr(copied, start - copied));
    out.push_back(text[start]);
    out.append("***");
    copied = at;  // the "@" and the domain are kept
  }
  out.append(text.substr(copied));
  return out;
}

}  // namespace notify
