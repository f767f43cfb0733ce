// Url::parse: amqp://user:pass@host:port/vhost (the RabbitMQ URI spec, without query
// parameters and without TLS), parsed by rabbitmq-c's amqp_parse_url. It answers only "bad
// URL", so a refused URL is looked at once more here to name the part at fault.
#include <amqp.h>

#include <functional>
#include <optional>
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

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Every '%' starts two hex digits. rabbitmq-c reads them with sscanf("%2x"), which would also
// take a sign or a space.
bool well_encoded(std::string_view part) {
  for (std::size_t i = 0; i < part.size(); ++i) {
    if (part[i] != '%') continue;
    if (i + 2 >= part.size() || !is_hex(part[i + 1]) || !is_hex(part[i + 2])) return false;
    i += 2;
  }
  return true;
}

// rabbitmq-c refuses a percent-encoded byte above 0x7f.
bool ascii_encoded(std::string_view part) {
  for (std::size_t i = 0; i + 2 < part.size(); ++i) {
    if (part[i] == '%' && part[i + 1] >= '8') return false;
  }
  return true;
}

std::string check_part(std::string_view part, const char* name) {
  if (!well_encoded(part)) return std::string("bad percent-encoding in the ") + name;
  if (!ascii_encoded(part)) {
    return std::string("the ") + name + " holds a percent-encoded byte above %7F";
  }
  return {};
}

bool valid_port(std::string_view port) {
  if (port.empty() || port.size() > 5) return false;
  int value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  return value >= 1 && value <= 65535;
}

// Why amqp_parse_url refused `rest` (the URL after "amqp://"): the first part at fault.
std::string why_refused(std::string_view rest) {
  constexpr auto npos = std::string_view::npos;
  const std::size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  const std::string_view path = slash == npos ? std::string_view() : rest.substr(slash + 1);
  const std::size_t at = authority.rfind('@');
  const std::string_view user_info = at == npos ? std::string_view() : authority.substr(0, at);
  const std::string_view host_port = at == npos ? authority : authority.substr(at + 1);
  const std::size_t colon = user_info.find(':');
  if (auto why = check_part(user_info.substr(0, colon), "user name"); !why.empty()) return why;
  if (colon != npos) {
    if (auto why = check_part(user_info.substr(colon + 1), "password"); !why.empty()) return why;
  }

  std::string_view host = host_port;
  std::optional<std::string_view> port;
  if (host_port.starts_with('[')) {  // [IPv6]:port
    const std::size_t close = host_port.find(']');
    if (close == npos) return "unterminated '[' in the host";
    host = host_port.substr(1, close - 1);
    const std::string_view after = host_port.substr(close + 1);
    if (!after.empty() && after[0] != ':') return "unexpected characters after ']'";
    if (!after.empty()) port = after.substr(1);
  } else if (const std::size_t c = host_port.find(':'); c != npos) {
    host = host_port.substr(0, c);
    port = host_port.substr(c + 1);
  }
  if (auto why = check_part(host, "host"); !why.empty()) return why;
  if (port && port->empty()) return "the port is empty";
  if (port && !valid_port(*port)) {
    return "the port '" + std::string(*port) + "' is not a number in 1..65535";
  }
  if (path.find('/') != npos) return "the vhost must be a single path segment (encode '/' as %2f)";
  if (auto why = check_part(path, "vhost"); !why.empty()) return why;
  return "not of the form amqp://user:password@host:port/vhost";
}

}  // namespace

Url Url::parse(std::string_view url) {
  constexpr std::string_view kScheme = "amqp://";
  if (url.substr(0, 8) == "amqps://") fail(url, "TLS (amqps) is not supported");
  if (url.substr(0, kScheme.size()) != kScheme) fail(url, "it must start with amqp://");
  const std::string_view rest = url.substr(kScheme.size());
  if (rest.find_first_of("?#") != std::string_view::npos) {
    fail(url, "query parameters and fragments are not supported");
  }
  if (!well_encoded(rest)) fail(url, why_refused(rest));

  // amqp_parse_url decodes in place: its fields point into this copy, or at its own defaults
  // when the URL leaves a part out.
  std::string buffer(url);
  amqp_connection_info info{};
  if (amqp_parse_url(buffer.data(), &info) != AMQP_STATUS_OK) fail(url, why_refused(rest));
  const auto from_url = [&](const char* field) {  // std::less_equal: a total order on pointers
    const std::less_equal<const char*> le;
    return le(buffer.data(), field) && le(field, buffer.data() + buffer.size());
  };

  Url result;
  if (from_url(info.user)) {
    result.user = info.user;
    if (result.user.empty()) fail(url, "the user name is empty");
    // A user without a password has none, not rabbitmq-c's default "guest".
    result.password = from_url(info.password) ? info.password : "";
  }
  if (from_url(info.host)) result.host = info.host;
  if (info.port < 1 || info.port > 65535) {
    fail(url, "the port '" + std::to_string(info.port) + "' is not a number in 1..65535");
  }
  result.port = info.port;
  // One path segment, percent-encoded: "/%2f" is the vhost "/", and so is an empty path.
  if (from_url(info.vhost) && info.vhost[0] != '\0') result.vhost = info.vhost;
  return result;
}

}  // namespace notify::amqp
