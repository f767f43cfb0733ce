#include "auth_client/url.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <memory>
#include <new>
#include <string_view>

namespace auth {

namespace {

struct UrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
using UrlHandle = std::unique_ptr<CURLU, UrlDeleter>;

// nullptr when libcurl cannot parse the text as an absolute URL of a scheme it supports.
UrlHandle parse(const std::string& text) {
  UrlHandle u(curl_url());
  if (!u) throw std::bad_alloc();
  if (curl_url_set(u.get(), CURLUPART_URL, text.c_str(), 0) != CURLUE_OK) return nullptr;
  return u;
}

// One part of a parsed URL; nullopt when the URL has no such part.
std::optional<std::string> part(CURLU* u, CURLUPart which, unsigned flags = 0) {
  char* out = nullptr;
  if (curl_url_get(u, which, &out, flags) != CURLUE_OK || out == nullptr) return std::nullopt;
  std::string s(out);
  curl_free(out);
  return s;
}

// The handle argument of curl_easy_escape/unescape is ignored since libcurl 7.82.
std::string escape(const std::string& s) {
  char* out = curl_easy_escape(nullptr, s.data(), static_cast<int>(s.size()));
  if (out == nullptr) throw std::bad_alloc();
  std::string r(out);
  curl_free(out);
  return r;
}

std::string unescape(std::string_view s) {
  int n = 0;
  char* out = curl_easy_unescape(nullptr, s.data(), static_cast<int>(s.size()), &n);
  if (out == nullptr) throw std::bad_alloc();
  std::string r(out, static_cast<std::size_t>(n));
  curl_free(out);
  return r;
}

// Form-style query component: "+" is a space, then percent-decoding.
std::string unescape_form(std::string_view s) {
  std::string plus(s);
  std::replace(plus.begin(), plus.end(), '+', ' ');
  return unescape(plus);
}

// libcurl hands the query over as one string; splitting it into its "&"-separated
// "name=value" pairs is the one step its URL API leaves to the caller.
std::vector<std::string_view> query_pairs(std::string_view query) {
  std::vector<std::string_view> pairs;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    if (!pair.empty()) pairs.push_back(pair);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return pairs;
}

std::string_view pair_name(std::string_view pair) { return pair.substr(0, pair.find('=')); }

std::optional<Origin> origin_of(CURLU* u) {
  auto scheme = part(u, CURLUPART_SCHEME);
  if (!scheme || (*scheme != "http" && *scheme != "https")) return std::nullopt;
  auto host = part(u, CURLUPART_HOST);
  auto port = part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT);
  if (!host || host->empty() || !port) return std::nullopt;
  Origin o;
  o.scheme = std::move(*scheme);
  o.host = std::move(*host);
  std::transform(o.host.begin(), o.host.end(), o.host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (auto zone = part(u, CURLUPART_ZONEID)) o.host += "%" + *zone;
  const auto [end, ec] = std::from_chars(port->data(), port->data() + port->size(), o.port);
  if (ec != std::errc() || end != port->data() + port->size()) return std::nullopt;
  return o;
}

// `base` parsed, with its origin, for resolve_link: remembered for the last base seen on this
// thread (the ETL resolves every link against PUBLIC_BASE_URL) and duplicated for each link
// (curl_url_dup copies every part) instead of parsed again. A null handle or origin: `base` is
// not an http(s) URL with a host.
struct ParsedBase {
  std::string text;
  UrlHandle handle;
  std::optional<Origin> origin;
};

const ParsedBase& parsed_base(const std::string& base) {
  thread_local std::optional<ParsedBase> last;
  if (!last || last->text != base) {
    UrlHandle handle = parse(base);
    std::optional<Origin> origin = handle ? origin_of(handle.get()) : std::nullopt;
    last = ParsedBase{base, std::move(handle), std::move(origin)};
  }
  return *last;
}

bool has_userinfo(CURLU* u) {
  return part(u, CURLUPART_USER) || part(u, CURLUPART_PASSWORD) || part(u, CURLUPART_OPTIONS);
}

// libcurl removes literal "." and ".." segments, but a server may decode "%2e%2e" or treat "\"
// as "/" and climb out of an allowed path prefix.
bool has_hidden_dot_segment(const std::string& path) {
  const std::string decoded = unescape(path);
  std::size_t start = 0;
  while (start <= decoded.size()) {
    const auto end = decoded.find_first_of("/\\", start);
    const auto segment = std::string_view(decoded).substr(
        start, end == std::string::npos ? std::string::npos : end - start);
    if (segment == "." || segment == "..") return true;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return false;
}

bool path_within(const std::string& path, const std::string& prefix) {
  if (prefix.empty() || prefix == "/") return true;
  if (!path.starts_with(prefix)) return false;
  return prefix.back() == '/' || path.size() == prefix.size() || path[prefix.size()] == '/';
}

bool ascii_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool ascii_digit(char c) { return c >= '0' && c <= '9'; }
bool slash(char c) { return c == '/' || c == '\\'; }

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// For http(s) a browser reads a backslash as "/" in the host and path, not in the query or
// fragment.
std::string backslashes_as_slashes(std::string text) {
  const auto end = std::min(text.find_first_of("?#"), text.size());
  std::replace(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(end), '\\', '/');
  return text;
}

// Path, query and fragment as a browser sends them: spaces, controls, non-ASCII bytes and the
// characters libcurl refuses percent-encoded; existing escapes kept. Also keeps a NUL byte from
// cutting the string short on its way into libcurl.
std::string percent_encoded(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    const bool unsafe = c <= 0x20 || c >= 0x7F || ch == '"' || ch == '<' || ch == '>' ||
                        ch == '`' || ch == '{' || ch == '}' || ch == '|' || ch == '^' || ch == '\\';
    if (!unsafe) {
      out.push_back(ch);
      continue;
    }
    out.push_back('%');
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xF]);
  }
  return out;
}

// "scheme:" + what follows, read as a mail client reads it: slashes before the host skipped,
// whatever their number. nullopt when there is no host or the host part holds userinfo or
// bytes outside printable ASCII.
std::optional<std::string> absolute_candidate(const std::string& scheme, std::string_view rest) {
  const std::string cleaned = backslashes_as_slashes(std::string(rest));
  const auto start = cleaned.find_first_not_of('/');
  if (start == std::string::npos) return std::nullopt;
  const auto end = std::min(cleaned.find_first_of("/?#", start), cleaned.size());
  const std::string_view authority = std::string_view(cleaned).substr(start, end - start);
  if (authority.empty()) return std::nullopt;
  for (char ch : authority) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7F || ch == '@') return std::nullopt;
  }
  return scheme + "://" + std::string(authority) + percent_encoded(cleaned.substr(end));
}

}  // namespace

std::optional<std::string> with_query_param(const std::string& url, const std::string& name,
                                            const std::string& value) {
  auto u = parse(url);
  if (!u) return std::nullopt;
  const std::string query = part(u.get(), CURLUPART_QUERY).value_or("");
  const std::string replacement = escape(name) + "=" + escape(value);

  std::string rebuilt;
  bool placed = false;
  for (auto pair : query_pairs(query)) {
    const bool same = unescape_form(pair_name(pair)) == name;
    if (same && placed) continue;
    if (!rebuilt.empty()) rebuilt += '&';
    if (same) {
      rebuilt += replacement;
      placed = true;
    } else {
      rebuilt += pair;
    }
  }
  if (!placed) {
    if (!rebuilt.empty()) rebuilt += '&';
    rebuilt += replacement;
  }
  if (curl_url_set(u.get(), CURLUPART_QUERY, rebuilt.c_str(), 0) != CURLUE_OK) return std::nullopt;
  return part(u.get(), CURLUPART_URL);
}

std::optional<std::string> query_param(const std::string& url, const std::string& name) {
  auto u = parse(url);
  if (!u) return std::nullopt;
  const auto query = part(u.get(), CURLUPART_QUERY);
  if (!query) return std::nullopt;
  for (auto pair : query_pairs(*query)) {
    if (unescape_form(pair_name(pair)) != name) continue;
    const auto eq = pair.find('=');
    return eq == std::string_view::npos ? std::string() : unescape_form(pair.substr(eq + 1));
  }
  return std::nullopt;
}

std::optional<Origin> origin_of(const std::string& url) {
  auto u = parse(url);
  if (!u) return std::nullopt;
  return origin_of(u.get());
}

std::optional<std::string> path_of(const std::string& url) {
  auto u = parse(url);
  if (!u) return std::nullopt;
  return part(u.get(), CURLUPART_PATH);
}

bool url_allowed(const std::string& url, const std::vector<std::string>& allowlist) {
  auto u = parse(url);
  if (!u || has_userinfo(u.get())) return false;
  const auto origin = origin_of(u.get());
  const auto path = part(u.get(), CURLUPART_PATH);
  if (!origin || !path || has_hidden_dot_segment(*path)) return false;

  for (const auto& entry : allowlist) {
    auto e = parse(entry);
    if (!e || has_userinfo(e.get())) continue;
    const auto entry_origin = origin_of(e.get());
    if (!entry_origin || *entry_origin != *origin) continue;
    if (path_within(*path, part(e.get(), CURLUPART_PATH).value_or("/"))) return true;
  }
  return false;
}

std::string link_text(std::string_view raw) {
  std::string text;
  text.reserve(raw.size());
  for (char c : raw) {
    if (c != '\t' && c != '\n' && c != '\r') text.push_back(c);
  }
  const auto blank = [](char c) { return static_cast<unsigned char>(c) <= 0x20; };
  const auto first = std::find_if_not(text.begin(), text.end(), blank);
  const auto last = std::find_if_not(text.rbegin(), text.rend(), blank).base();
  return first < last ? std::string(first, last) : std::string();
}

std::optional<std::string> link_scheme(std::string_view text) {
  if (text.empty() || !ascii_alpha(text.front())) return std::nullopt;
  for (std::size_t i = 1; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ':') return lowercase(std::string(text.substr(0, i)));
    if (!ascii_alpha(c) && !ascii_digit(c) && c != '+' && c != '-' && c != '.') break;
  }
  return std::nullopt;
}

std::optional<std::string> resolve_link(std::string_view raw, const std::string& base) {
  const ParsedBase& parsed = parsed_base(base);
  if (!parsed.handle || !parsed.origin) return std::nullopt;
  UrlHandle u(curl_url_dup(parsed.handle.get()));
  if (!u) throw std::bad_alloc();
  const auto& base_origin = parsed.origin;

  const std::string text = link_text(raw);
  std::optional<std::string> absolute;
  if (const auto scheme = link_scheme(text)) {
    if (*scheme != "http" && *scheme != "https") return std::nullopt;
    absolute = absolute_candidate(*scheme, std::string_view(text).substr(scheme->size() + 1));
    if (!absolute) return std::nullopt;
  } else if (text.size() >= 2 && slash(text[0]) && slash(text[1])) {
    // Scheme-relative ("//host/x", two backslashes, "/" and a backslash): the base's scheme.
    absolute = absolute_candidate(base_origin->scheme, text);
    if (!absolute) return std::nullopt;
  }

  if (absolute) {
    if (curl_url_set(u.get(), CURLUPART_URL, absolute->c_str(), 0) != CURLUE_OK) {
      return std::nullopt;
    }
  } else if (!text.empty()) {
    // A path, query or fragment: libcurl joins it to the base held by the handle.
    const std::string relative = percent_encoded(backslashes_as_slashes(text));
    if (curl_url_set(u.get(), CURLUPART_URL, relative.c_str(), 0) != CURLUE_OK) {
      return std::nullopt;
    }
  }
  if (has_userinfo(u.get()) || !origin_of(u.get())) return std::nullopt;
  const auto host = part(u.get(), CURLUPART_HOST);
  if (!host) return std::nullopt;
  if (const std::string lower = lowercase(*host); lower != *host) {
    if (curl_url_set(u.get(), CURLUPART_HOST, lower.c_str(), 0) != CURLUE_OK) return std::nullopt;
  }
  // A relative link takes the base's host and path, which libcurl may have parsed with bytes
  // outside printable ASCII: the result holds none, wherever they came from.
  auto url = part(u.get(), CURLUPART_URL);
  if (!url) return std::nullopt;
  for (const char ch : *url) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7F) return std::nullopt;
  }
  return url;
}

bool user_id_allowed(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  bool only_dots = true;
  for (char c : id) {
    if (!ascii_alpha(c) && !ascii_digit(c) && c != '-' && c != '_' && c != '.' && c != '~') {
      return false;
    }
    only_dots = only_dots && c == '.';
  }
  return !only_dots;
}

}  // namespace auth
