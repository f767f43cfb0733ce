// URL helpers over libcurl's URL API: query parameters, origins and the allowlist check.

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "auth_client/url.hpp"

namespace {

const std::string kListing =
    "http://127.0.0.1:8081/api/v1/users/?is_active=true&email_notifications=true&page_number=3"
    "&page_size=500";

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

}  // namespace

TEST_CASE("with_query_param replaces a parameter in place and keeps the others") {
  auto next = auth::with_query_param(kListing, "page_number", "4");
  REQUIRE(next.has_value());
  CHECK(*next ==
        "http://127.0.0.1:8081/api/v1/users/?is_active=true&email_notifications=true"
        "&page_number=4&page_size=500");
  CHECK(auth::query_param(*next, "page_number") == "4");
  CHECK(auth::query_param(*next, "page_size") == "500");
}

TEST_CASE("with_query_param appends a missing parameter, also to a URL without a query") {
  CHECK(auth::with_query_param("http://auth:8081/api/v1/users/", "page_size", "50") ==
        "http://auth:8081/api/v1/users/?page_size=50");
  CHECK(auth::with_query_param("http://auth:8081/api/v1/users/?a=1", "b", "2") ==
        "http://auth:8081/api/v1/users/?a=1&b=2");
  // An empty query ("?") is still a URL to build on.
  CHECK(auth::with_query_param("http://auth/x?", "b", "2") == "http://auth/x?b=2");
}

TEST_CASE("with_query_param drops duplicates and keeps the fragment") {
  CHECK(auth::with_query_param("http://h/p?x=1&y=2&x=3#top", "x", "9") == "http://h/p?x=9&y=2#top");
}

TEST_CASE("with_query_param percent-encodes, query_param decodes") {
  auto url = auth::with_query_param("http://h/search", "q", "a b&c=d/é");
  REQUIRE(url.has_value());
  // libcurl may write the escapes in either case.
  CHECK(lower(*url) == "http://h/search?q=a%20b%26c%3dd%2f%c3%a9");
  CHECK(auth::query_param(*url, "q") == "a b&c=d/é");
  // An encoded name is matched by its decoded form, and replaced.
  auto renamed = auth::with_query_param("http://h/?user%20id=1", "user id", "2");
  CHECK(renamed == "http://h/?user%20id=2");
}

TEST_CASE("query_param: '+' is a space, a bare name is empty, an absent name is nullopt") {
  CHECK(auth::query_param("http://h/?q=a+b%2Bc", "q") == "a b+c");
  CHECK(auth::query_param("http://h/?flag&x=1", "flag") == "");
  CHECK_FALSE(auth::query_param("http://h/?x=1", "y").has_value());
  CHECK_FALSE(auth::query_param("http://h/", "x").has_value());
  // The prefix of a name is not the name.
  CHECK_FALSE(auth::query_param("http://h/?page_number=1", "page").has_value());
}

TEST_CASE("unparseable URLs give nullopt") {
  for (const char* bad : {"", "not a url", "example.com/path", "http://exa mple.com/",
                          "http://[::1/", "http://h:99999/"}) {
    CAPTURE(bad);
    CHECK_FALSE(auth::with_query_param(bad, "a", "b").has_value());
    CHECK_FALSE(auth::query_param(bad, "a").has_value());
    CHECK_FALSE(auth::origin_of(bad).has_value());
  }
}

TEST_CASE("path_of gives a URL's path without its query and fragment") {
  CHECK(auth::path_of("http://127.0.0.1:8081/unsubscribe?x=1#top") == "/unsubscribe");
  CHECK(auth::path_of("https://example.org") == "/");
  CHECK(auth::path_of("https://example.org/a/b/../c") == "/a/c");
  CHECK(auth::path_of("no scheme at all") == std::nullopt);
}

TEST_CASE("origin_of fills default ports, lowercases the host, knows only http(s)") {
  auto o = auth::origin_of("HTTP://Content.Example.ORG/a/b?c=d");
  REQUIRE(o.has_value());
  CHECK(o->scheme == "http");
  CHECK(o->host == "content.example.org");
  CHECK(o->port == 80);

  CHECK(auth::origin_of("https://x.example.org")->port == 443);
  CHECK(auth::origin_of("http://127.0.0.1:8081/")->port == 8081);
  CHECK(auth::origin_of("https://x.example.org:443/") == auth::origin_of("https://x.example.org"));
  CHECK(auth::origin_of("http://x.example.org:8080/") != auth::origin_of("http://x.example.org"));
  CHECK(auth::origin_of("http://x/") != auth::origin_of("https://x/"));

  auto v6 = auth::origin_of("http://[0:0::1]:8081/");
  REQUIRE(v6.has_value());
  CHECK(v6->host == "[::1]");
  CHECK(v6->port == 8081);

  CHECK_FALSE(auth::origin_of("file:///etc/passwd").has_value());
  CHECK_FALSE(auth::origin_of("gopher://x.example.org/").has_value());
  CHECK_FALSE(auth::origin_of("ftp://x.example.org/").has_value());
}

TEST_CASE("url_allowed: same origin as an entry") {
  const std::vector<std::string> allow{"http://127.0.0.1:8081", "https://content.example.org/"};
  CHECK(auth::url_allowed("http://127.0.0.1:8081/api/v1/users/1", allow));
  CHECK(auth::url_allowed("https://content.example.org/articles/42.json?x=1", allow));
  CHECK(auth::url_allowed("https://content.example.org", allow));
  // Upper-case host and scheme, explicit default port: the same origin.
  CHECK(auth::url_allowed("HTTPS://CONTENT.Example.Org:443/a", allow));
  // Another port, another scheme, another host: not.
  CHECK_FALSE(auth::url_allowed("http://127.0.0.1:8082/", allow));
  CHECK_FALSE(auth::url_allowed("http://content.example.org/", allow));
  CHECK_FALSE(auth::url_allowed("http://localhost:8081/", allow));
  CHECK_FALSE(auth::url_allowed("https://content.example.org/", {}));
}

TEST_CASE("url_allowed: look-alike hosts and smuggled origins are refused") {
  const std::vector<std::string> allow{"http://allowed.example.org"};
  CHECK(auth::url_allowed("http://allowed.example.org/", allow));
  CHECK_FALSE(auth::url_allowed("http://allowed.example.org.evil.com/", allow));
  CHECK_FALSE(auth::url_allowed("http://evil.allowed.example.org/", allow));
  CHECK_FALSE(auth::url_allowed("http://evil.com/?u=http://allowed.example.org", allow));
  CHECK_FALSE(auth::url_allowed("http://evil.com/http://allowed.example.org/", allow));
  CHECK_FALSE(auth::url_allowed("http://evil.com/#http://allowed.example.org", allow));
  // Userinfo: the host is evil.com. Refused even when the host itself is allowed.
  CHECK_FALSE(auth::url_allowed("http://allowed.example.org@evil.com/", allow));
  CHECK_FALSE(auth::url_allowed("http://allowed.example.org:80@evil.com/", allow));
  CHECK_FALSE(auth::url_allowed("http://allowed.example.org\\@evil.com/", allow));
  CHECK_FALSE(auth::url_allowed("http://user@allowed.example.org/", allow));
  CHECK_FALSE(auth::url_allowed("http://user:pw@allowed.example.org/", allow));
  // libcurl decodes a percent-encoded host: same host, same answer as the plain one.
  CHECK(auth::url_allowed("http://%61llowed.example.org/", allow));
  CHECK_FALSE(auth::url_allowed("http://allowed.example.org%2eevil.com/", allow));
}

TEST_CASE("url_allowed: other schemes and unparseable URLs are refused") {
  const std::vector<std::string> allow{"http://allowed.example.org", "file:///etc",
                                       "gopher://allowed.example.org"};
  CHECK_FALSE(auth::url_allowed("file:///etc/passwd", allow));
  CHECK_FALSE(auth::url_allowed("gopher://allowed.example.org/", allow));
  CHECK_FALSE(auth::url_allowed("ftp://allowed.example.org/", allow));
  CHECK_FALSE(auth::url_allowed("//allowed.example.org/", allow));
  CHECK_FALSE(auth::url_allowed("allowed.example.org/", allow));
  CHECK_FALSE(auth::url_allowed("http://allowed.example.org:99999/", allow));
  CHECK_FALSE(auth::url_allowed("http://allowed example.org/", allow));
  CHECK_FALSE(auth::url_allowed("", allow));
  // A broken or userinfo entry allows nothing.
  CHECK_FALSE(auth::url_allowed("http://evil.com/", {"not a url", "http://u@evil.com"}));
}

TEST_CASE("url_allowed: IPv6 literals compare in their canonical form") {
  const std::vector<std::string> allow{"http://[::1]:8081"};
  CHECK(auth::url_allowed("http://[::1]:8081/x", allow));
  CHECK(auth::url_allowed("http://[0:0:0:0:0:0:0:1]:8081/x", allow));
  CHECK_FALSE(auth::url_allowed("http://[::2]:8081/x", allow));
  CHECK_FALSE(auth::url_allowed("http://[::1]/x", allow));
  CHECK_FALSE(auth::url_allowed("http://127.0.0.1:8081/x", allow));
}

TEST_CASE("url_allowed: numeric IPv4 spellings are normalised by libcurl") {
  const std::vector<std::string> allow{"http://127.0.0.1:8081"};
  CHECK(auth::url_allowed("http://2130706433:8081/", allow));
  CHECK(auth::url_allowed("http://0x7f.1:8081/", allow));
  CHECK_FALSE(auth::url_allowed("http://2130706433/", allow));
}

TEST_CASE("url_allowed: an entry with a path allows only that path and below") {
  const std::vector<std::string> allow{"https://cms.example.org/public"};
  CHECK(auth::url_allowed("https://cms.example.org/public", allow));
  CHECK(auth::url_allowed("https://cms.example.org/public/", allow));
  CHECK(auth::url_allowed("https://cms.example.org/public/articles/1?x=y", allow));
  CHECK_FALSE(auth::url_allowed("https://cms.example.org/", allow));
  CHECK_FALSE(auth::url_allowed("https://cms.example.org/private/x", allow));
  CHECK_FALSE(auth::url_allowed("https://cms.example.org/publicity", allow));
  CHECK_FALSE(auth::url_allowed("https://cms.example.org/PUBLIC/x", allow));
  // Literal dot segments are resolved by libcurl before the check...
  CHECK_FALSE(auth::url_allowed("https://cms.example.org/public/../private", allow));
  CHECK(auth::url_allowed("https://cms.example.org/public/a/../b", allow));
  // ...and encoded ones, or backslashes a server could read as "/", are refused outright.
  CHECK_FALSE(auth::url_allowed("https://cms.example.org/public/%2e%2e/private", allow));
  CHECK_FALSE(auth::url_allowed("https://cms.example.org/public/%2E%2E/private", allow));
  CHECK_FALSE(auth::url_allowed("https://cms.example.org/public/.%2e/private", allow));
  CHECK_FALSE(auth::url_allowed("https://cms.example.org/public%2f..%2fprivate", allow));
  CHECK_FALSE(auth::url_allowed("https://cms.example.org/public/..\\private", allow));

  // An entry ending in "/" is a prefix of whole segments too.
  CHECK(auth::url_allowed("https://cms.example.org/public/x", {"https://cms.example.org/public/"}));
  CHECK_FALSE(
      auth::url_allowed("https://cms.example.org/public", {"https://cms.example.org/public/"}));
}

TEST_CASE("link_text trims as a browser does; link_scheme reads the scheme") {
  CHECK(auth::link_text(" \x01https://x/\t ") == "https://x/");
  CHECK(auth::link_text("java\tscr\nipt:alert(1)") == "javascript:alert(1)");
  CHECK(auth::link_text(" \t\r\n") == "");
  CHECK(auth::link_scheme("HTTPS:x") == "https");
  CHECK(auth::link_scheme("hello: world") == "hello");
  CHECK(auth::link_scheme("a+b-c.d:x") == "a+b-c.d");
  CHECK_FALSE(auth::link_scheme("10:30").has_value());
  CHECK_FALSE(auth::link_scheme("/s/x").has_value());
  CHECK_FALSE(auth::link_scheme("//host/x").has_value());
  CHECK_FALSE(auth::link_scheme("no colon").has_value());
  CHECK_FALSE(auth::link_scheme("a b:c").has_value());
  CHECK_FALSE(auth::link_scheme("").has_value());
}

TEST_CASE("resolve_link: relative links are joined to the base") {
  const std::string base = "https://public.example";
  CHECK(auth::resolve_link("/s/AbC12", base) == "https://public.example/s/AbC12");
  CHECK(auth::resolve_link("/s/AbC12", "https://public.example/app/") ==
        "https://public.example/s/AbC12");
  CHECK(auth::resolve_link("s/AbC12", "https://public.example/app/") ==
        "https://public.example/app/s/AbC12");
  CHECK(auth::resolve_link("\\s\\AbC12", base) == "https://public.example/s/AbC12");
  CHECK(auth::resolve_link("/a/../b?q=1#f", base) == "https://public.example/b?q=1#f");
  CHECK(auth::resolve_link(" /s/x y\t", base) == "https://public.example/s/x%20y");
  CHECK(auth::resolve_link("", base) == "https://public.example/");
  // The base must be an http(s) URL.
  CHECK_FALSE(auth::resolve_link("/s/x", "not a url").has_value());
  CHECK_FALSE(auth::resolve_link("/s/x", "file:///tmp/").has_value());
}

TEST_CASE("resolve_link: the remembered base is the one given, whatever came before") {
  // The last base is kept parsed: alternating bases, a refused one among them, and links that
  // change the handle they are joined on must not leak into the next link.
  for (int round = 0; round < 2; ++round) {
    CHECK(auth::resolve_link("s/x", "https://a.example/app/") == "https://a.example/app/s/x");
    CHECK(auth::resolve_link("https://evil.example/y?q#f", "https://a.example/app/") ==
          "https://evil.example/y?q#f");
    CHECK(auth::resolve_link("s/x", "https://a.example/app/") == "https://a.example/app/s/x");
    CHECK(auth::resolve_link("s/x", "http://b.example:8080/") == "http://b.example:8080/s/x");
    CHECK_FALSE(auth::resolve_link("s/x", "not a url").has_value());
    CHECK_FALSE(auth::resolve_link("s/x", "file:///tmp/").has_value());
    CHECK(auth::resolve_link("?q=1", "https://a.example/app/") == "https://a.example/app/?q=1");
    CHECK(auth::resolve_link("//c.example/z", "http://b.example:8080/") == "http://c.example/z");
  }
}

TEST_CASE("resolve_link: absolute links are normalised") {
  const std::string base = "https://public.example";
  CHECK(auth::resolve_link("https://public.example/a", base) == "https://public.example/a");
  CHECK(auth::resolve_link("HTTPS://PUBLIC.EXAMPLE/A", base) == "https://public.example/A");
  CHECK(auth::resolve_link("http://other.example:8080/x?y=1", base) ==
        "http://other.example:8080/x?y=1");
  CHECK(auth::resolve_link("https://public.example/x\\y?a\\b", base) ==
        "https://public.example/x/y?a%5Cb");
}

TEST_CASE("resolve_link: hostile spellings resolve to the host a mail client would visit") {
  const std::string base = "https://public.example";
  for (const char* evil :
       {"https:/evil.example/x", "https:evil.example/x", "//evil.example/x",
        "https:\\\\evil.example\\x", "HTTPS:\\\\\\\\evil.example", "https:///evil.example/x",
        "\\\\evil.example/x", "/\\evil.example/x", "\\/evil.example/x", " https://evil.example/x",
        "\x01https://evil.example/x", "https://evil.example/x\x01 ", "ht\ttps://evil.example/x",
        "https://evil\n.example/x", "HTTPS://EVIL.EXAMPLE/x",
        "https://evil.example\\@public.example"}) {
    CAPTURE(evil);
    const auto resolved = auth::resolve_link(evil, base);
    REQUIRE(resolved.has_value());
    CHECK(auth::origin_of(*resolved)->host == "evil.example");
    CHECK(auth::origin_of(*resolved)->scheme == "https");
  }
  CHECK(auth::resolve_link("https:evil.example/x", base) == "https://evil.example/x");
  CHECK(auth::resolve_link("//evil.example/x", "http://public.example") == "http://evil.example/x");
}

TEST_CASE("resolve_link: no http(s) host, userinfo or other schemes give nullopt") {
  const std::string base = "https://public.example";
  for (const char* bad :
       {"javascript:alert(1)", "java\tscript:alert(1)", " JavaScript:alert(1)",
        "data:text/html,<script>", "vbscript:x", "mailto:a@example.org", "ftp://evil.example/",
        "file:///etc/passwd", "hello: world", "https:", "https://", "https:///", "//",
        "https://public.example@evil.example/", "https://user:pw@public.example/",
        "//public.example@evil.example/", "https://evil example/", "https://\xc3\xa9vil.example/",
        "https://evil.example\x01/x"}) {
    CAPTURE(bad);
    CHECK_FALSE(auth::resolve_link(std::string_view(bad, std::char_traits<char>::length(bad)), base)
                    .has_value());
  }
  CHECK_FALSE(auth::resolve_link(std::string_view("https://ev\0il.example/", 22), base));
  // A NUL byte in the path is encoded, not a place where the string stops.
  CHECK(auth::resolve_link(std::string_view("/a\0b", 4), base) == "https://public.example/a%00b");
}

TEST_CASE("resolve_link: a relative link on a base with bytes outside printable ASCII is refused") {
  // Found by fuzz_links: libcurl parses such a base, and the relative link took its host.
  CHECK_FALSE(auth::resolve_link("/x", "https://exa\xa7mple.org/").has_value());
  CHECK_FALSE(auth::resolve_link("x", "https://\xc3\xa9vil.example/").has_value());
  CHECK_FALSE(auth::resolve_link("x", "https://example.org/\xa7/").has_value());
  CHECK(auth::resolve_link("/x", "https://example.org/") == "https://example.org/x");
}

TEST_CASE("user_id_allowed: one harmless path segment") {
  for (const char* ok : {"u-1", "17d51a56-0c1e-4b8e-9d5f-1a2b3c4d5e6f", "a.b", "A_b~c", "..a"}) {
    CAPTURE(ok);
    CHECK(auth::user_id_allowed(ok));
  }
  for (const char* bad : {"", ".", "..", "...", "a/b", "%2e%2e", "a?b", "a#b", "a b", "a\tb",
                          "a\x01", "\xc3\xa9", "a\\b", "a@b", "a:b"}) {
    CAPTURE(bad);
    CHECK_FALSE(auth::user_id_allowed(bad));
  }
  CHECK(auth::user_id_allowed(std::string(128, 'a')));
  CHECK_FALSE(auth::user_id_allowed(std::string(129, 'a')));
  CHECK_FALSE(auth::user_id_allowed(std::string_view("a\0b", 3)));
}
