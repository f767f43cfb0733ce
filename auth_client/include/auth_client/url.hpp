#pragma once
// URL helpers over libcurl's URL API (CURLU), so that the URLs we check are parsed by the same
// parser that later fetches them: no hand-written parsing that could disagree with libcurl.
// Every function answers "no" (nullopt / false) for a URL libcurl cannot parse.

#include <optional>
#include <string>
#include <vector>

namespace auth {

// Sets one query parameter: replaces the first parameter of that name (dropping later
// duplicates) or appends it. Name and value are percent-encoded. The rest of the URL comes back
// in libcurl's normalised form (lowercase scheme, dot segments removed).
std::optional<std::string> with_query_param(const std::string& url, const std::string& name,
                                            const std::string& value);

// The percent-decoded value of the first query parameter of that name ("+" reads as a space);
// "" for a bare "name" without "=". nullopt when absent or when the URL does not parse.
std::optional<std::string> query_param(const std::string& url, const std::string& name);

struct Origin {
  std::string scheme;  // "http" or "https"
  std::string host;    // lowercased; IPv6 literals in brackets, e.g. "[::1]"
  int port = 0;        // default ports filled in: 80, 443

  friend bool operator==(const Origin&, const Origin&) = default;
};

// Only http and https URLs have an origin here.
std::optional<Origin> origin_of(const std::string& url);

// True when the URL has the origin of an allowlist entry (a base URL such as
// "https://content.example.org" or "http://127.0.0.1:8081/context/") and, when the entry has a
// path other than "/", the URL's path is that path or lies below it (whole segments: "/ctx"
// does not allow "/ctx-admin"). Refused: userinfo ("http://a@b/"), schemes other than http(s),
// percent-encoded dot segments ("%2e%2e") or backslashes that a server might treat as "..",
// unparseable URLs. Unparseable entries allow nothing.
bool url_allowed(const std::string& url, const std::vector<std::string>& allowlist);

}  // namespace auth
