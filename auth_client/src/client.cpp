// auth::Client: requests to the Auth service (and JSON from other services) over the shared
// HTTP client, with retries and the user cache. What an answer means is decided in decisions.cpp.

#include <atomic>
#include <random>
#include <thread>
#include <utility>

#include "auth_client/auth_client.hpp"
#include "auth_client/url.hpp"
#include "decisions.hpp"
#include "notify/http_client.hpp"
#include "user_cache.hpp"

namespace auth {

namespace {

std::string trim_trailing_slashes(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

notify::http::ClientOptions http_options(const ClientOptions& o) {
  return {o.connect_timeout, o.request_timeout, "notify-auth-client/1"};
}

}  // namespace

struct Client::Impl {
  ClientOptions options;
  std::string base_url;
  Origin base_origin;
  notify::http::Client http;
  std::vector<std::string> plain_headers;  // for other services
  std::vector<std::string> auth_headers;   // the same plus the token, only ever sent to base_origin
  UserCache cache;
  std::atomic<long long> requests{0};
  std::atomic<long long> cache_hits{0};
  std::atomic<long long> cache_misses{0};

  explicit Impl(ClientOptions o)
      : options(std::move(o)),
        http(http_options(options)),
        cache(options.cache_ttl, options.cache_capacity) {
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

    plain_headers = {"Accept: application/json"};
    auth_headers = plain_headers;
    if (!options.token.empty()) auth_headers.push_back("Authorization: Bearer " + options.token);
  }

  std::string user_url(std::string_view id) const {
    return base_url + "/api/v1/users/" + notify::http::escape(id);
  }

  // One GET; the body is read up to limit bytes.
  notify::http::Response perform(const std::string& url, const std::vector<std::string>& headers,
                                 std::size_t limit) {
    ++requests;
    notify::http::Request request;
    request.url = url;
    request.headers = headers;
    request.max_body_bytes = limit;
    return http.perform(request);
  }

  template <class Result, class Attempt>
  Result with_retries(Attempt attempt) {
    return impl::with_retries<Result>(options.max_attempts, attempt, [this](int retry) {
      options.sleep(impl::delay_before(retry, options.backoff, options.jitter()));
    });
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
    auto out = with_retries<Lookup>([&] {
      return impl::decide_user(perform(url, auth_headers, impl::kMaxUserBytes),
                               options.json_limits);
    });
    if (out.status == LookupStatus::kFound) cache.put(id, *out.user, options.clock());
    return out;
  }

  PageLookup list_users(const std::string& url) {
    if (origin_of(url) != base_origin) {
      PageLookup out;
      out.error = "listing URL is not on the Auth service (" + base_url + "): " + url;
      return out;
    }
    return with_retries<PageLookup>([&] {
      return impl::decide_page(perform(url, auth_headers, impl::kMaxPageBytes),
                               options.json_limits);
    });
  }

  FetchResult fetch_json(const std::string& url, std::size_t max_bytes) {
    const auto origin = origin_of(url);
    if (!origin) {
      FetchResult out;
      out.status = FetchStatus::kBadResponse;
      out.error = "not an http(s) URL: " + url;
      return out;
    }
    const auto& headers = *origin == base_origin ? auth_headers : plain_headers;
    return with_retries<FetchResult>([&] {
      return impl::decide_fetch(perform(url, headers, max_bytes), max_bytes, options.json_limits);
    });
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
