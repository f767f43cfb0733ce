#include "auth_client/auth_client.hpp"

#include <curl/curl.h>

#include "notify/curl.hpp"

#include <algorithm>
#include <atomic>
#include <limits>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "auth_client/url.hpp"
#include "notify/json.hpp"
#include "user_cache.hpp"

namespace auth {

namespace {

// The Auth service answers small objects; anything far larger is not a user.
constexpr std::size_t kMaxUserBytes = 1 << 20;
// A page of 1,000 users is a few hundred KiB.
constexpr std::size_t kMaxPageBytes = 16 << 20;

using notify::curl::append;
using notify::curl::EasyHandle;
using notify::curl::global_init;
using notify::curl::Slist;

// Longest accepted fields of a user: ids and names are short, an address has at most 254 bytes
// (RFC 5321), IANA zones and BCP 47 locales far less than 64.
constexpr std::size_t kMaxUserIdBytes = 256;
constexpr std::size_t kMaxNameBytes = 256;
constexpr std::size_t kMaxAddressBytes = 254;
constexpr std::size_t kMaxTagBytes = 64;

std::string text_field(const nlohmann::json& j, const char* name, bool required,
                       std::size_t max_bytes) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) {
    if (required) throw InvalidUser(std::string("user: missing field '") + name + "'");
    return {};
  }
  std::string text;
  if (it->is_string()) {
    text = it->get<std::string>();
  } else if (it->is_number_integer()) {
    text = it->dump();
  } else {
    throw InvalidUser(std::string("user: field '") + name + "' is not a string");
  }
  if (text.size() > max_bytes) {
    throw InvalidUser(std::string("user: field '") + name + "' is longer than " +
                      std::to_string(max_bytes) + " bytes");
  }
  return text;
}

bool bool_field(const nlohmann::json& j, const char* name, bool fallback) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean())
    throw InvalidUser(std::string("user: field '") + name + "' is not a boolean");
  return it->get<bool>();
}

// The body of one response, capped.
struct Sink {
  std::string body;
  std::size_t limit = 0;
  bool overflow = false;
};

size_t collect_body(char* data, size_t size, size_t nmemb, void* userp) {
  auto* sink = static_cast<Sink*>(userp);
  const size_t n = size * nmemb;
  if (n > sink->limit - sink->body.size()) {
    sink->overflow = true;
    return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  }
  sink->body.append(data, n);
  return n;
}

bool transient_curl_error(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

std::string trim_trailing_slashes(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

long long integer_field(const nlohmann::json& j, const char* name, long long min, long long max) {
  auto it = j.find(name);
  if (it == j.end()) throw InvalidPage(std::string("page: missing field '") + name + "'");
  const auto v = notify::integer_as<long long>(*it);
  if (!v) throw InvalidPage(std::string("page: field '") + name + "' is not an integer");
  if (*v < min || *v > max) {
    throw InvalidPage(std::string("page: field '") + name + "' out of range");
  }
  return *v;
}

// What one HTTP request came to.
struct Response {
  CURLcode rc = CURLE_OK;
  std::string error;  // libcurl's message when rc != CURLE_OK
  bool too_large = false;
  long status = 0;
  std::string body;
  std::string redirect;  // the Location of a 3xx, not followed
};

std::string request_error(const Response& r) { return "request failed: " + r.error; }

std::string too_large_error(std::size_t limit) {
  return "response larger than " + std::to_string(limit) + " bytes";
}

}  // namespace

User decode_user(const nlohmann::json& j) {
  if (!j.is_object()) throw InvalidUser("user: not a JSON object");
  User u;
  u.id = text_field(j, "id", true, kMaxUserIdBytes);
  u.email = text_field(j, "email", true, kMaxAddressBytes);
  if (u.id.empty()) throw InvalidUser("user: empty 'id'");
  if (u.email.empty()) throw InvalidUser("user: empty 'email'");
  u.first_name = text_field(j, "first_name", false, kMaxNameBytes);
  u.last_name = text_field(j, "last_name", false, kMaxNameBytes);
  u.timezone = text_field(j, "timezone", false, kMaxTagBytes);
  u.locale = text_field(j, "locale", false, kMaxTagBytes);
  u.email_notifications = bool_field(j, "email_notifications", true);
  u.active = bool_field(j, "active", bool_field(j, "is_active", true));
  return u;
}

// A broken envelope throws InvalidPage; a broken user is skipped and counted.
Page decode_page(const nlohmann::json& j) {
  if (!j.is_object()) throw InvalidPage("page: not a JSON object");
  auto items = j.find("items");
  if (items == j.end()) throw InvalidPage("page: missing field 'items'");
  if (!items->is_array()) throw InvalidPage("page: field 'items' is not an array");
  constexpr long long kIntMax = std::numeric_limits<int>::max();
  Page page;
  page.page_number = static_cast<int>(integer_field(j, "page_number", 0, kIntMax));
  page.page_size = static_cast<int>(integer_field(j, "page_size", 0, kIntMax));
  page.total = integer_field(j, "total", 0, std::numeric_limits<long long>::max());
  page.items.reserve(items->size());
  for (std::size_t i = 0; i < items->size(); ++i) {
    try {
      page.items.push_back(decode_user((*items)[i]));
    } catch (const InvalidUser& e) {
      if (page.skipped++ == 0) page.skip_error = "item " + std::to_string(i) + ": " + e.what();
    }
  }
  return page;
}

User parse_user(std::string_view body, const notify::JsonLimits& limits) {
  try {
    return decode_user(notify::parse_json(body, limits));
  } catch (const notify::JsonError& e) {
    throw InvalidUser(std::string("user: ") + e.what());
  }
}

Page parse_page(std::string_view body, const notify::JsonLimits& limits) {
  try {
    return decode_page(notify::parse_json(body, limits));
  } catch (const notify::JsonError& e) {
    throw InvalidPage(std::string("page: ") + e.what());
  }
}

nlohmann::json encode_user(const User& u) {
  return {{"id", u.id},
          {"email", u.email},
          {"first_name", u.first_name},
          {"last_name", u.last_name},
          {"timezone", u.timezone},
          {"locale", u.locale},
          {"email_notifications", u.email_notifications},
          {"active", u.active}};
}

std::string_view to_string(FetchStatus status) {
  switch (status) {
    case FetchStatus::kOk:
      return "ok";
    case FetchStatus::kTooLarge:
      return "too_large";
    case FetchStatus::kBadResponse:
      return "bad_response";
    case FetchStatus::kUnavailable:
      return "unavailable";
  }
  return "unknown";
}

std::string_view to_string(LookupStatus status) {
  switch (status) {
    case LookupStatus::kFound:
      return "found";
    case LookupStatus::kUnknownUser:
      return "unknown_user";
    case LookupStatus::kUnavailable:
      return "unavailable";
  }
  return "unknown";
}

struct Client::Impl {
  ClientOptions options;
  std::string base_url;
  Origin base_origin;
  EasyHandle easy;
  Slist plain_headers;  // for other services
  Slist auth_headers;   // the same plus the token, only ever sent to base_origin
  char error_buffer[CURL_ERROR_SIZE] = {};
  Sink sink;
  UserCache cache;
  std::atomic<long long> requests{0};
  std::atomic<long long> cache_hits{0};
  std::atomic<long long> cache_misses{0};

  explicit Impl(ClientOptions o)
      : options(std::move(o)), cache(options.cache_ttl, options.cache_capacity) {
    global_init();
    if (options.base_url.empty()) throw std::invalid_argument("auth client: empty base_url");
    auto origin = origin_of(options.base_url);
    if (!origin) {
      throw std::invalid_argument("auth client: base_url is not an http(s) URL: " +
                                  options.base_url);
    }
    base_origin = std::move(*origin);
    if (options.max_attempts < 1) options.max_attempts = 1;
    if (!options.sleep) {
      options.sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
    }
    if (!options.jitter) {
      options.jitter = [gen = std::mt19937(std::random_device{}())]() mutable {
        return std::uniform_real_distribution<double>(0.0, 1.0)(gen);
      };
    }
    if (!options.clock) options.clock = [] { return std::chrono::steady_clock::now(); };
    base_url = trim_trailing_slashes(options.base_url);
    easy.reset(curl_easy_init());
    if (!easy) throw std::runtime_error("curl_easy_init failed");

    append(plain_headers, "Accept: application/json");
    append(auth_headers, "Accept: application/json");
    if (!options.token.empty()) append(auth_headers, "Authorization: Bearer " + options.token);

    CURL* h = easy.get();
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options.connect_timeout.count()));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options.request_timeout.count()));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);
    // Never follow redirects: an allowlisted URL must not bounce us to an internal one, and the
    // token must not travel to wherever a Location points.
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "notify-auth-client/1");
  }

  std::string user_url(std::string_view id) {
    char* escaped = curl_easy_escape(easy.get(), id.data(), static_cast<int>(id.size()));
    if (escaped == nullptr) throw std::bad_alloc();
    std::string url = base_url + "/api/v1/users/" + escaped;
    curl_free(escaped);
    return url;
  }

  std::chrono::milliseconds delay_before(int retry) {
    const double base = static_cast<double>(options.backoff.count()) * (1LL << (retry - 1));
    const double jitter = std::clamp(options.jitter(), 0.0, 1.0) * 0.2 * base;
    return std::chrono::milliseconds(static_cast<long long>(base + jitter));
  }

  // One GET; the body is read up to limit bytes.
  Response perform(const std::string& url, const Slist& headers, std::size_t limit) {
    CURL* h = easy.get();
    sink.body.clear();
    sink.limit = limit;
    sink.overflow = false;
    error_buffer[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
    // Lets libcurl refuse at once when Content-Length already says too much.
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(limit));
    ++requests;
    Response r;
    r.rc = curl_easy_perform(h);
    if (r.rc != CURLE_OK) {
      r.error = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(r.rc);
      r.too_large = sink.overflow || r.rc == CURLE_FILESIZE_EXCEEDED;
      return r;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    if (r.status >= 300 && r.status < 400) {
      char* location = nullptr;
      curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &location);
      if (location != nullptr) r.redirect = location;
    }
    r.body = std::move(sink.body);
    return r;
  }

  // Calls attempt() until it says not to retry or max_attempts is reached, sleeping between.
  template <class Result, class Attempt>
  Result with_retries(Attempt attempt) {
    Result out;
    for (int n = 1; n <= options.max_attempts; ++n) {
      if (n > 1) options.sleep(delay_before(n - 1));
      auto [result, retry] = attempt();
      out = std::move(result);
      out.attempts = n;
      if (!retry) break;
    }
    return out;
  }

  std::pair<Lookup, bool> decide_user(const Response& r) {
    Lookup out;
    out.http_status = r.status;
    if (r.rc != CURLE_OK) {
      out.error = r.too_large ? too_large_error(kMaxUserBytes) : request_error(r);
      return {out, !r.too_large && transient_curl_error(r.rc)};
    }
    if (r.status == 200) {
      try {
        out.user = parse_user(r.body, options.json_limits);
        out.status = LookupStatus::kFound;
      } catch (const InvalidUser& e) {
        // A 200 with a record we refuse will not change by asking again: for this user the
        // answer is as good as "unknown", so one bad record cannot stall the events behind it.
        out.status = LookupStatus::kUnknownUser;
        out.error = std::string("invalid user in response: ") + e.what();
      }
      return {out, false};
    }
    if (r.status == 404 || r.status == 400 || r.status == 422) {
      out.status = LookupStatus::kUnknownUser;
      out.error = "HTTP " + std::to_string(r.status);
      return {out, false};
    }
    return unavailable(std::move(out));
  }

  std::pair<PageLookup, bool> decide_page(const Response& r) {
    PageLookup out;
    out.http_status = r.status;
    if (r.rc != CURLE_OK) {
      out.error = r.too_large ? too_large_error(kMaxPageBytes) : request_error(r);
      return {out, !r.too_large && transient_curl_error(r.rc)};
    }
    if (r.status == 200) {
      try {
        out.page = parse_page(r.body, options.json_limits);
        out.status = LookupStatus::kFound;
      } catch (const InvalidPage& e) {
        out.error = e.what();
      }
      return {out, false};
    }
    if (r.status == 404) {
      out.status = LookupStatus::kUnknownUser;
      out.error = "HTTP 404";
      return {out, false};
    }
    if (r.status == 400 || r.status == 422) {
      out.error = "HTTP " + std::to_string(r.status) + ": the Auth service rejected the query";
      return {out, false};
    }
    return unavailable(std::move(out));
  }

  // The non-200, non-"unknown" answers of the Auth service, the same for users and pages.
  template <class Result>
  std::pair<Result, bool> unavailable(Result out) {
    const long status = out.http_status;
    out.status = LookupStatus::kUnavailable;
    if (status == 401 || status == 403) {
      out.error = "HTTP " + std::to_string(status) +
                  ": the Auth service rejected our credentials (check the token)";
      return {std::move(out), false};
    }
    out.error = "HTTP " + std::to_string(status);
    return {std::move(out), status >= 500 || status == 429};
  }

  std::pair<FetchResult, bool> decide_fetch(const Response& r, std::size_t max_bytes) {
    FetchResult out;
    out.http_status = r.status;
    if (r.rc != CURLE_OK) {
      if (r.too_large) {
        out.status = FetchStatus::kTooLarge;
        out.error = too_large_error(max_bytes);
        return {out, false};
      }
      out.error = request_error(r);
      const bool permanent = r.rc == CURLE_UNSUPPORTED_PROTOCOL || r.rc == CURLE_URL_MALFORMAT;
      out.status = permanent ? FetchStatus::kBadResponse : FetchStatus::kUnavailable;
      return {out, transient_curl_error(r.rc)};
    }
    const std::string http = "HTTP " + std::to_string(r.status);
    if (r.status >= 200 && r.status < 300) {
      try {
        out.body = notify::parse_json(r.body, options.json_limits);
        out.status = FetchStatus::kOk;
      } catch (const notify::JsonError& e) {
        out.status = FetchStatus::kBadResponse;
        out.error = http + ": body is " + e.what();
      }
      return {out, false};
    }
    if (r.status >= 500 || r.status == 408 || r.status == 429) {
      out.status = FetchStatus::kUnavailable;
      out.error = http;
      return {out, true};
    }
    out.status = FetchStatus::kBadResponse;
    out.error = r.redirect.empty() ? http : http + ": redirect to " + r.redirect + " not followed";
    return {out, false};
  }

  Lookup get_user(std::string_view id) {
    if (id.empty()) {
      Lookup out;
      out.status = LookupStatus::kUnknownUser;
      out.error = "empty user id";
      return out;
    }
    if (!user_id_allowed(id)) {
      // "..", "a/b", "%2e%2e", "a?b" would change the URL: no request for such an id.
      Lookup out;
      out.status = LookupStatus::kUnknownUser;
      out.error = "user id not allowed: ";
      for (char c : id.substr(0, 64)) {
        const bool control = static_cast<unsigned char>(c) < 0x20 || c == 0x7F;
        out.error.push_back(control ? '?' : c);
      }
      if (id.size() > 64) out.error += "…";
      return out;
    }
    if (cache.enabled()) {
      if (auto user = cache.get(id, options.clock())) {
        ++cache_hits;
        Lookup out;
        out.status = LookupStatus::kFound;
        out.user = std::move(user);
        out.cached = true;
        return out;
      }
      ++cache_misses;
    }
    const std::string url = user_url(id);
    auto out = with_retries<Lookup>(
        [&] { return decide_user(perform(url, auth_headers, kMaxUserBytes)); });
    if (out.status == LookupStatus::kFound) cache.put(id, *out.user, options.clock());
    return out;
  }

  PageLookup list_users(const std::string& url) {
    if (origin_of(url) != base_origin) {
      PageLookup out;
      out.error = "listing URL is not on the Auth service (" + base_url + "): " + url;
      return out;
    }
    return with_retries<PageLookup>(
        [&] { return decide_page(perform(url, auth_headers, kMaxPageBytes)); });
  }

  FetchResult fetch_json(const std::string& url, std::size_t max_bytes) {
    const auto origin = origin_of(url);
    if (!origin) {
      FetchResult out;
      out.status = FetchStatus::kBadResponse;
      out.error = "not an http(s) URL: " + url;
      return out;
    }
    const Slist& headers = *origin == base_origin ? auth_headers : plain_headers;
    return with_retries<FetchResult>(
        [&] { return decide_fetch(perform(url, headers, max_bytes), max_bytes); });
  }
};

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

Lookup Client::get_user(std::string_view id) { return impl_->get_user(id); }

PageLookup Client::list_users(const std::string& url) { return impl_->list_users(url); }

FetchResult Client::fetch_json(const std::string& url, std::size_t max_bytes) {
  return impl_->fetch_json(url, max_bytes);
}

ClientStats Client::stats() const {
  ClientStats s;
  s.requests = impl_->requests.load();
  s.cache_hits = impl_->cache_hits.load();
  s.cache_misses = impl_->cache_misses.load();
  return s;
}

const std::string& Client::base_url() const { return impl_->base_url; }

}  // namespace auth
