#pragma once
// One small HTTP client over libcurl for the HTTP edges (the Auth client, the webhook sender).
// One easy handle per Client, reused across requests so connections are kept alive; connect and
// total timeouts; a capped body; redirects never followed (the Location is reported); only http
// and https; no signals. libcurl itself stays in src/.

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace notify::http {

struct ClientOptions {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{10000};  // the whole request
  std::string user_agent;
};

struct Request {
  std::string url;
  std::vector<std::string> headers;  // "Name: value" lines
  std::optional<std::string> body;   // POSTed when set; a GET otherwise
  std::size_t max_body_bytes = 1 << 20;
  // false: a longer answer ends the transfer (Failure::kTooLarge); true: the first
  // max_body_bytes are kept and the rest is read and dropped.
  bool truncate_body = false;
};

// Why no response arrived. A decision, not a message: callers map it to their own outcomes.
enum class Failure {
  kNone,       // a response arrived, whatever its status
  kTransient,  // name not resolved, connection refused or dropped, timeout: a retry may work
  kBadUrl,     // a malformed URL or a scheme other than http(s): no retry will work
  kTooLarge,   // the answer passed max_body_bytes
  kOther,      // anything else (TLS verification, ...)
};

struct Response {
  Failure failure = Failure::kNone;
  std::string error;     // libcurl's message, when failure != kNone
  long status = 0;       // the HTTP status; 0 when no response arrived
  std::string body;      // at most max_body_bytes
  std::string redirect;  // the Location of a 3xx, not followed

  bool arrived() const { return failure == Failure::kNone; }
  bool too_large() const { return failure == Failure::kTooLarge; }
};

// Belongs to one thread at a time. Throws std::runtime_error when libcurl cannot start.
class Client {
 public:
  explicit Client(const ClientOptions& options);
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Response perform(const Request& request);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Percent-encodes every byte but RFC 3986's unreserved ones, e.g. for one path segment.
std::string escape(std::string_view text);

// libcurl's process-wide initialisation, once and thread-safe, for the process's other libcurl
// users (the SMTP sender); Client calls it itself. Throws std::runtime_error if it fails.
void global_init();

}  // namespace notify::http
