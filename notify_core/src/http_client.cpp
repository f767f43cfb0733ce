// notify::http::Client over one libcurl easy handle.

#include "notify/http_client.hpp"

#include <curl/curl.h>

#include <new>
#include <stdexcept>
#include <utility>

#include "curl_handles.hpp"

namespace notify::http {
namespace {

// The body of one response, capped.
struct Sink {
  std::string body;
  std::size_t limit = 0;
  bool truncate = false;
  bool overflow = false;
};

size_t collect_body(char* data, size_t size, size_t nmemb, void* userp) {
  auto* sink = static_cast<Sink*>(userp);
  const size_t n = size * nmemb;
  const size_t room = sink->limit - sink->body.size();
  if (n > room) {
    if (sink->truncate) {
      sink->body.append(data, room);
      return n;
    }
    sink->overflow = true;
    return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  }
  sink->body.append(data, n);
  return n;
}

Failure failure_of(CURLcode rc) {
  switch (rc) {
    case CURLE_OK:
      return Failure::kNone;
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
      return Failure::kTransient;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return Failure::kBadUrl;
    case CURLE_FILESIZE_EXCEEDED:  // Content-Length already said too much
      return Failure::kTooLarge;
    default:
      return Failure::kOther;
  }
}

}  // namespace

struct Client::Impl {
  curl::EasyHandle easy;
  char error_buffer[CURL_ERROR_SIZE] = {};
  Sink sink;
};

Client::Client(const ClientOptions& options) : impl_(std::make_unique<Impl>()) {
  curl::global_init();
  impl_->easy.reset(curl_easy_init());
  if (!impl_->easy) throw std::runtime_error("curl_easy_init failed");
  CURL* h = impl_->easy.get();
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options.connect_timeout.count()));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout.count()));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &impl_->sink);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, impl_->error_buffer);
  // Never follow redirects: an allowlisted URL must not bounce a request to an internal one, and
  // credentials must not travel to wherever a Location points.
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  if (!options.user_agent.empty()) {
    curl_easy_setopt(h, CURLOPT_USERAGENT, options.user_agent.c_str());  // libcurl copies it
  }
}

Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

Response Client::perform(const Request& request) {
  Impl& impl = *impl_;
  CURL* h = impl.easy.get();
  curl::Slist headers;
  for (const std::string& line : request.headers) curl::append(headers, line);
  impl.sink = Sink{{}, request.max_body_bytes, request.truncate_body, false};
  impl.error_buffer[0] = '\0';
  curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  if (request.body) {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body->data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body->size()));
  } else {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  }
  // Lets libcurl refuse at once when Content-Length already says too much (0: no limit).
  curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE,
                   static_cast<curl_off_t>(request.truncate_body ? 0 : request.max_body_bytes));
  const CURLcode rc = curl_easy_perform(h);
  // The handle outlives this request: let go of what is freed when it returns.
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
  if (request.body) curl_easy_setopt(h, CURLOPT_POSTFIELDS, nullptr);

  Response r;
  if (rc != CURLE_OK) {
    r.failure = impl.sink.overflow ? Failure::kTooLarge : failure_of(rc);
    r.error = impl.error_buffer[0] != '\0' ? impl.error_buffer : curl_easy_strerror(rc);
    return r;
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
  if (r.status >= 300 && r.status < 400) {
    char* location = nullptr;
    curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &location);
    if (location != nullptr) r.redirect = location;
  }
  r.body = std::move(impl.sink.body);
  return r;
}

// The handle argument of curl_easy_escape is ignored since libcurl 7.82.
std::string escape(std::string_view text) {
  char* escaped = curl_easy_escape(nullptr, text.data(), static_cast<int>(text.size()));
  if (escaped == nullptr) throw std::bad_alloc();
  std::string out(escaped);
  curl_free(escaped);
  return out;
}

void global_init() { curl::global_init(); }

}  // namespace notify::http
