#pragma once
// The webhook channel: an HTTP POST of the rendered posting as JSON to the recipient's URL
// (allowlisted by the ETL, and checked again here), over the shared HTTP client
// (notify/http_client.hpp), which keeps its connection for reuse.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "notify/posting.hpp"
#include "senders/email.hpp"

namespace notify::worker {

struct WebhookOptions {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{10000};
  // WEBHOOK_URL_ALLOWLIST (auth::url_allowed): a posting naming any other URL, or any URL when
  // the list is empty, is refused before a request is made.
  std::vector<std::string> allowlist;
};

// What the receiving service gets.
nlohmann::json webhook_payload(const notify::Posting& posting);

class WebhookSender {
 public:
  explicit WebhookSender(WebhookOptions options);
  ~WebhookSender();
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  // A URL outside the allowlist: kPermanent, nothing sent. 2xx: kSent. 408, 429, 5xx,
  // connection trouble, timeouts: kTransient. Other 4xx: kPermanent. Redirects are not
  // followed: the allowlist vouched for this URL, not for where it may point.
  SendResult send(const notify::Posting& posting);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace notify::worker
