// fuzz_links: the link and URL checks and the small text parsers. The input is split at 0xff
// bytes into pieces (a link, a base URL, an allowlist entry, a query name and value, more
// texts); every piece goes through every one-argument check, and the first pieces through the
// checks that take two or three. Invariants tie the checks together: an allowed URL has an
// allowlisted origin, a resolved link resolves to itself, a time written reads back the same.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "auth_client/url.hpp"
#include "fuzz_check.hpp"
#include "intake.hpp"
#include "notify/config.hpp"
#include "notify/time.hpp"

namespace {

constexpr char kSeparator = '\xff';
const std::string kPublicBase = "https://example.org/";
const std::string kOtherBase = "http://other.example:8080/a/b?c=d";
const std::string kAuthUsers = "http://auth.example:8081/api/v1/users/";

std::vector<std::string> split(std::string_view data) {
  std::vector<std::string> pieces;
  std::size_t start = 0;
  for (;;) {
    const auto at = data.find(kSeparator, start);
    pieces.emplace_back(data.substr(start, at - start));
    if (at == std::string_view::npos) break;
    start = at + 1;
  }
  return pieces;
}

const std::string& piece_or(const std::vector<std::string>& pieces, std::size_t i,
                            const std::string& otherwise) {
  return i < pieces.size() ? pieces[i] : otherwise;
}

bool has_origin_of(const auth::Origin& origin, const std::vector<std::string>& allowlist) {
  for (const std::string& entry : allowlist) {
    if (auth::origin_of(entry) == origin) return true;
  }
  return false;
}

void check_allowed(const std::string& url, const std::vector<std::string>& allowlist) {
  if (!auth::url_allowed(url, allowlist)) return;
  const auto origin = auth::origin_of(url);
  fuzz::require(origin.has_value(), "an allowed URL has no origin", url);
  fuzz::require(has_origin_of(*origin, allowlist), "an allowed URL has a foreign origin", url);
}

void check_resolved(const std::string& text, const std::string& base) {
  const auto resolved = auth::resolve_link(text, base);
  if (!resolved) return;
  for (unsigned char c : *resolved) {
    fuzz::require(c > 0x20 && c < 0x7f, "a resolved link holds a blank, control or non-ASCII byte",
                  *resolved);
  }
  fuzz::require(auth::origin_of(*resolved).has_value(), "a resolved link has no origin", *resolved);
  fuzz::require(auth::resolve_link(*resolved, base) == resolved,
                "a resolved link resolves to something else", text + " -> " + *resolved);
  fuzz::require(auth::resolve_link(*resolved, kOtherBase) == resolved,
                "a resolved link depends on the base", text + " -> " + *resolved);
  // A link that names http(s) leads to the same host from whatever page it is read on.
  const auto scheme = auth::link_scheme(auth::link_text(text));
  if (scheme == "http" || scheme == "https") {
    const auto elsewhere = auth::resolve_link(text, kOtherBase);
    if (elsewhere) {
      fuzz::require(auth::origin_of(*elsewhere) == auth::origin_of(*resolved),
                    "an absolute link's host depends on the base",
                    text + " -> " + *resolved + " | " + *elsewhere);
    }
  }
}

void check_query(const std::string& url, const std::string& name, const std::string& value) {
  (void)auth::query_param(url, name);
  const auto with = auth::with_query_param(url, name, value);
  if (!with) return;
  fuzz::require(auth::query_param(*with, name) == value, "a query parameter set does not read back",
                url + " + " + name + "=" + value + " -> " + *with);
  fuzz::require(auth::origin_of(*with) == auth::origin_of(url),
                "setting a query parameter changes the origin", url + " -> " + *with);
}

void check_time(const std::string& text) {
  const auto t = notify::parse_iso8601(text);
  if (!t) return;
  fuzz::require(*t >= notify::kEarliestTime && *t <= notify::kLatestTime,
                "a time read outside the readable range", text);
  const std::string written = notify::format_iso8601(*t);
  fuzz::require(notify::parse_iso8601(written) == t, "a time written does not read back",
                text + " -> " + written);
}

void check_durations(const std::string& text) {
  if (const auto d = etl::parse_expires_in(text)) {
    fuzz::require(d->count() >= 0 && *d <= std::chrono::hours(24 * 366 * 100),
                  "an expires_in out of range", text);
  }
  try {
    const auto d = notify::parse_duration(text);
    fuzz::require(d.count() >= 0 && d <= notify::kMaxDuration, "a duration out of range", text);
    const std::string written = notify::format_duration(d);
    fuzz::require(notify::parse_duration(written) == d, "a duration written does not read back",
                  text + " -> " + written);
  } catch (const notify::ConfigError&) {
  }
}

void check_user_id(const std::string& id) {
  if (!auth::user_id_allowed(id)) return;
  const std::string url = kAuthUsers + id;
  fuzz::require(auth::url_allowed(url, {kAuthUsers}), "an allowed user id leaves the users path",
                id);
  fuzz::require(!auth::query_param(url, "page_number").has_value(),
                "an allowed user id adds a query", id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto pieces = split(std::string_view(reinterpret_cast<const char*>(data), size));
  const std::vector<std::string> allowlist = {
      kPublicBase, piece_or(pieces, 2, "https://content.example.org/api")};
  for (const std::string& piece : pieces) {
    (void)auth::origin_of(piece);
    check_allowed(piece, allowlist);
    check_resolved(piece, kPublicBase);
    check_time(piece);
    check_durations(piece);
    check_user_id(piece);
  }
  const std::string& link = pieces.front();
  // A base is PUBLIC_BASE_URL, a URL the operator wrote: taken in libcurl's normalised form, as
  // an odd one (raw "<" or "//" in its path) would make links that are not (see fuzzing.md).
  const std::string base =
      auth::resolve_link(piece_or(pieces, 1, kPublicBase), kPublicBase).value_or(kPublicBase);
  check_resolved(link, base);
  if (const auto resolved = auth::resolve_link(link, base)) check_allowed(*resolved, allowlist);
  check_query(link, piece_or(pieces, 3, "page_number"), piece_or(pieces, 4, "2"));
  return 0;
}
