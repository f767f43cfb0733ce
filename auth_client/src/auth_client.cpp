#include "auth_client/auth_client.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

namespace auth {

namespace {

// The Auth service answers small objects; anything far larger is not a user.
constexpr std::size_t kMaxBodyBytes = 1 << 20;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      throw std::runtime_error("curl_global_init failed");
    }
  });
}

struct EasyDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
using EasyHandle = std::unique_ptr<CURL, EasyDeleter>;

struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

void append(Slist& list, const std::string& line) {
  curl_slist* next = curl_slist_append(list.get(), line.c_str());
  if (next == nullptr) throw std::bad_alloc();
  (void)list.release();
  list.reset(next);
}

std::string text_field(const nlohmann::json& j, const char* name, bool required) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) {
    if (required) throw InvalidUser(std::string("user: missing field '") + name + "'");
    return {};
  }
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return it->dump();
  throw InvalidUser(std::string("user: field '") + name + "' is not a string");
}

bool bool_field(const nlohmann::json& j, const char* name, bool fallback) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean())
    throw InvalidUser(std::string("user: field '") + name + "' is not a boolean");
  return it->get<bool>();
}

size_t collect_body(char* data, size_t size, size_t nmemb, void* userp) {
  auto* body = static_cast<std::string*>(userp);
  const size_t n = size * nmemb;
  if (body->size() + n > kMaxBodyBytes) return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  body->append(data, n);
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

}  // namespace

User decode_user(const nlohmann::json& j) {
  if (!j.is_object()) throw InvalidUser("user: not a JSON object");
  User u;
  u.id = text_field(j, "id", true);
  u.email = text_field(j, "email", true);
  if (u.id.empty()) throw InvalidUser("user: empty 'id'");
  if (u.email.empty()) throw InvalidUser("user: empty 'email'");
  u.first_name = text_field(j, "first_name", false);
  u.last_name = text_field(j, "last_name", false);
  u.timezone = text_field(j, "timezone", false);
  u.locale = text_field(j, "locale", false);
  u.email_notifications = bool_field(j, "email_notifications", true);
  u.active = bool_field(j, "active", bool_field(j, "is_active", true));
  return u;
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
  EasyHandle easy;
  Slist headers;
  char error_buffer[CURL_ERROR_SIZE] = {};
  std::string body;

  explicit Impl(ClientOptions o) : options(std::move(o)) {
    global_init();
    if (options.base_url.empty()) throw std::invalid_argument("auth client: empty base_url");
    if (options.max_attempts < 1) options.max_attempts = 1;
    if (!options.sleep) {
      options.sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
    }
    if (!options.jitter) {
      options.jitter = [gen = std::mt19937(std::random_device{}())]() mutable {
        return std::uniform_real_distribution<double>(0.0, 1.0)(gen);
      };
    }
    base_url = trim_trailing_slashes(options.base_url);
    easy.reset(curl_easy_init());
    if (!easy) throw std::runtime_error("curl_easy_init failed");

    append(headers, "Accept: application/json");
    if (!options.token.empty()) append(headers, "Authorization: Bearer " + options.token);

    CURL* h = easy.get();
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options.connect_timeout.count()));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options.request_timeout.count()));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
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

  // One HTTP request. Returns the lookup it decides and whether it is worth another attempt.
  std::pair<Lookup, bool> attempt(const std::string& url) {
    CURL* h = easy.get();
    body.clear();
    error_buffer[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    const CURLcode rc = curl_easy_perform(h);

    Lookup out;
    if (rc != CURLE_OK) {
      out.error = std::string("request failed: ") +
                  (error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(rc));
      return {out, transient_curl_error(rc)};
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    out.http_status = status;
    if (status == 200) {
      try {
        out.user = decode_user(nlohmann::json::parse(body));
        out.status = LookupStatus::kFound;
      } catch (const nlohmann::json::exception& e) {
        out.error = std::string("malformed response body: ") + e.what();
      } catch (const InvalidUser& e) {
        out.error = std::string("invalid user in response: ") + e.what();
      }
      // A well-formed 200 with a broken body is a server bug: retrying will not fix it.
      return {out, false};
    }
    if (status == 404 || status == 400 || status == 422) {
      out.status = LookupStatus::kUnknownUser;
      out.error = "HTTP " + std::to_string(status);
      return {out, false};
    }
    if (status == 401 || status == 403) {
      out.error = "HTTP " + std::to_string(status) +
                  ": the Auth service rejected our credentials (check the token)";
      return {out, false};
    }
    out.error = "HTTP " + std::to_string(status);
    return {out, status >= 500 || status == 429};
  }

  Lookup get_user(std::string_view id) {
    if (id.empty()) {
      Lookup out;
      out.status = LookupStatus::kUnknownUser;
      out.error = "empty user id";
      return out;
    }
    const std::string url = user_url(id);
    Lookup out;
    for (int n = 1; n <= options.max_attempts; ++n) {
      if (n > 1) options.sleep(delay_before(n - 1));
      auto [lookup, retry] = attempt(url);
      out = std::move(lookup);
      out.attempts = n;
      if (!retry) break;
    }
    return out;
  }
};

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

Lookup Client::get_user(std::string_view id) { return impl_->get_user(id); }

}  // namespace auth
