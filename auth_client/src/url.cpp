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

}  // namespace auth
