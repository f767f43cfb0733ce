// Url::parse: amqp://user:pass@host:port/vhost (the RabbitMQ URI spec, without query
// parameters and without TLS).
#include <charconv>
#include <stdexcept>
#include <string>

#include "notify/amqp.hpp"

namespace notify::amqp {
namespace {

// The URL as it may be shown: a password never reaches a log or an error message.
std::string shown(std::string_view url) {
  const auto scheme = url.find("://");
  const auto at = url.rfind('@');
  if (scheme == std::string_view::npos || at == std::string_view::npos || at < scheme) {
    return std::string(url);
  }
  const auto colon = url.find(':', scheme + 3);
  if (colon == std::string_view::npos || colon > at) return std::string(url);
  return std::string(url.substr(0, colon + 1)) + "***" + std::string(url.substr(at));
}

[[noreturn]] void fail(std::string_view url, const std::string& why) {
  throw std::invalid_argument("invalid AMQP URL '" + shown(url) + "': " + why);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view url, std::string_view part, const char* name) {
  std::string out;
  out.reserve(part.size());
  for (std::size_t i = 0; i < part.size(); ++i) {
    if (part[i] != '%') {
      out += part[i];
      continue;
    }
    const int high = i + 2 < part.size() ? hex_value(part[i + 1]) : -1;
    const int low = i + 2 < part.size() ? hex_value(part[i + 2]) : -1;
    if (high < 0 || low < 0) fail(url, std::string("bad percent-encoding in the ") + name);
    out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return out;
}

}  // namespace

Url Url::parse(std::string_view url) {
  constexpr std::string_view kScheme = "amqp://";
  if (url.substr(0, 8) == "amqps://") fail(url, "TLS (amqps) is not supported");
  if (url.substr(0, kScheme.size()) != kScheme) fail(url, "it must start with amqp://");
  std::string_view rest = url.substr(kScheme.size());
  if (rest.find_first_of("?#") != std::string_view::npos) {
    fail(url, "query parameters and fragments are not supported");
  }

  Url result;
  const std::size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  const std::string_view path =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);

  std::string_view host_port = authority;
  if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view user_info = authority.substr(0, at);
    host_port = authority.substr(at + 1);
    const std::size_t colon = user_info.find(':');
    result.user = percent_decode(url, user_info.substr(0, colon), "user name");
    result.password = colon == std::string_view::npos
                          ? std::string()
                          : percent_decode(url, user_info.substr(colon + 1), "password");
    if (result.user.empty()) fail(url, "the user name is empty");
  }

  std::string_view host = host_port;
  std::string_view port;
  if (host_port.starts_with('[')) {  // [IPv6]:port
    const std::size_t close = host_port.find(']');
    if (close == std::string_view::npos) fail(url, "unterminated '[' in the host");
    host = host_port.substr(1, close - 1);
    const std::string_view after = host_port.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') fail(url, "unexpected characters after ']'");
      port = after.substr(1);
      if (port.empty()) fail(url, "the port is empty");
    }
  } else if (const std::size_t colon = host_port.find(':'); colon != std::string_view::npos) {
    host = host_port.substr(0, colon);
    port = host_port.substr(colon + 1);
    if (port.empty()) fail(url, "the port is empty");
  }
  if (!host.empty()) result.host = percent_decode(url, host, "host");

  if (!port.empty()) {
    int value = 0;
    const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (error != std::errc() || end != port.data() + port.size() || value < 1 || value > 65535) {
      fail(url, "the port '" + std::string(port) + "' is not a number in 1..65535");
    }
    result.port = value;
  }

  // One path segment, percent-encoded: "/%2f" is the vhost "/", and so is an empty path.
  if (path.find('/') != std::string_view::npos) {
    fail(url, "the vhost must be a single path segment (encode '/' as %2f)");
  }
  const std::string vhost = percent_decode(url, path, "vhost");
  result.vhost = vhost.empty() ? "/" : vhost;
  return result;
}

}  // namespace notify::amqp
