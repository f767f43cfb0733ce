#pragma once
// URL helpers over libcurl's URL API (CURLU), so that the URLs we check are parsed by the same
// parser that later fetches them: no hand-written parsing that could disagree with libcurl.
// Every function answers "no" (nullopt / false) for a URL libcurl cannot parse.

#include <optional>
#include <string>
#include <string_view>
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

// The path of a URL as libcurl reads it ("http://127.0.0.1:8081/unsubscribe?x=1" ->
// "/unsubscribe"; "/" when it has none).
std::optional<std::string> path_of(const std::string& url);

// True when the URL has the origin of an allowlist entry (a base URL such as
// "https://content.example.org" or "http://127.0.0.1:8081/context/") and, when the entry has a
// path other than "/", the URL's path is that path or lies below it (whole segments: "/ctx"
// does not allow "/ctx-admin"). Refused: userinfo ("http://a@b/"), schemes other than http(s),
// percent-encoded dot segments ("%2e%2e") or backslashes that a server might treat as "..",
// unparseable URLs. Unparseable entries allow nothing.
bool url_allowed(const std::string& url, const std::vector<std::string>& allowlist);

// A link as a browser or mail client reads an href: leading and trailing C0 controls and spaces
// trimmed, tabs and line breaks anywhere removed. What resolve_link and link_scheme look at.
std::string link_text(std::string_view raw);

// The lowercased scheme that a browser reads at the start of `text` (a letter, then letters,
// digits, "+", "-" or ".", then ":"): "https" for "HTTPS:x", "hello" for "hello: world";
// nullopt for "10:30", "/s/x" or "//host/x". Pass text through link_text first.
std::optional<std::string> link_scheme(std::string_view text);

// `text` resolved the way a browser resolves an href on a page at `base` (the WHATWG URL
// standard for http and https), then parsed by libcurl: the text cleaned as link_text does; a
// backslash read as "/" before the query; after "http:" or "https:" any number of slashes or
// backslashes (none, one, three) still leads to the host, as in a mail client whose page is
// not `base`; "//host/x" (or with backslashes) takes the base's scheme; "/x", "x", "?q" are
// joined to the base. Returns the absolute URL in libcurl's normalised form (lowercase scheme
// and host, dot segments removed, spaces and other unsafe bytes of path, query and fragment
// percent-encoded), or nullopt when the result is not an http(s) URL with a host, when it
// carries userinfo ("https://a@b/" exists to mislead the reader), when the host has bytes
// outside printable ASCII (international names are refused, not converted), or when `base` is
// not an http(s) URL.
std::optional<std::string> resolve_link(std::string_view text, const std::string& base);

// A user id that may become one segment of a URL path: 1 to 128 bytes of ASCII letters, digits,
// "-", "_", ".", "~", and not only dots (".", "..", "..."). So no "/", "%", "?", "#", spaces or
// control characters: an id can neither leave /api/v1/users/ nor change the query.
bool user_id_allowed(std::string_view id);

}  // namespace auth
