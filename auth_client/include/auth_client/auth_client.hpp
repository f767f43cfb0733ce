#pragma once
// User lookups in the Auth service (GET /api/v1/users/{id}) over libcurl.
// The outcome of a lookup is data: found, unknown user (drop the event for this user), or
// unavailable (transient or operator problem: do not drop, retry later).

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace auth {

struct User {
  std::string id;
  std::string email;
  std::string first_name;
  std::string last_name;
  std::string timezone;  // IANA zone, may be empty
  std::string locale;
  bool email_notifications = true;
  bool active = true;
};

// Thrown by decode_user when a required field (id, email) is missing or a field has the wrong
// type; what() names the field.
class InvalidUser : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Missing or null optional fields get their defaults; a numeric id is accepted as text.
// "is_active" is accepted as an alias of "active".
User decode_user(const nlohmann::json& j);  // throws InvalidUser
nlohmann::json encode_user(const User& user);

struct ClientOptions {
  std::string base_url;  // e.g. http://127.0.0.1:8081 (a trailing slash is fine)
  std::string token;     // sent as "Authorization: Bearer {token}" when not empty
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds request_timeout{5000};
  int max_attempts = 3;
  std::chrono::milliseconds backoff{200};  // before retry n: backoff * 2^(n-1), plus jitter
  // Waits between attempts; default std::this_thread::sleep_for. Tests inject.
  std::function<void(std::chrono::milliseconds)> sleep;
  // Uniform in [0, 1): adds up to 20% jitter to each delay. Default: a seeded generator.
  std::function<double()> jitter;
};

enum class LookupStatus { kFound, kUnknownUser, kUnavailable };

struct Lookup {
  LookupStatus status = LookupStatus::kUnavailable;
  std::optional<User> user;  // set when kFound
  std::string error;         // why, when not kFound
  int attempts = 0;          // HTTP requests made
  long http_status = 0;      // of the last attempt; 0 when no response arrived
};

std::string_view to_string(LookupStatus status);

// One libcurl easy handle, reused across lookups (keeps the connection alive).
// A Client belongs to one thread at a time.
class Client {
 public:
  explicit Client(ClientOptions options);
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // 200 → kFound; 404, and 400/422 (malformed id) → kUnknownUser; 5xx, 429, timeouts and
  // connection errors are retried, then kUnavailable; 401/403 and other 4xx → kUnavailable
  // at once (an operator problem must not drop events); a malformed body → kUnavailable.
  Lookup get_user(std::string_view id);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace auth
