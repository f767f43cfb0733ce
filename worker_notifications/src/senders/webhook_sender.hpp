#pragma once
// The webhook channel: an HTTP POST of the rendered posting as JSON to the recipient's URL
// (allowlisted by the ETL), over libcurl with one easy handle kept for connection reuse.

#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "notify/posting.hpp"
#include "senders/email.hpp"

namespace notify::worker {

struct WebhookOptions {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{10000};
};

// What the receiving service gets.
nlohmann::json webhook_payload(const notify::Posting& posting);

class WebhookSender {
 public:
  explicit WebhookSender(WebhookOptions options);
  ~WebhookSender();
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  // 2xx: kSent. 408, 429, 5xx, connection trouble, timeouts: kTransient. Other 4xx: kPermanent.
  // Redirects are not followed: the ETL allowlisted this URL, not where it may point.
  SendResult send(const notify::Posting& posting);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace notify::worker
