#include "senders/webhook_sender.hpp"

#include <curl/curl.h>

#include "auth_client/url.hpp"
#include "notify/curl.hpp"

#include <mutex>
#include <stdexcept>

#include "notify/time.hpp"

namespace notify::worker {
namespace {

using notify::curl::global_init;
using notify::curl::Slist;

std::size_t collect(char* data, std::size_t size, std::size_t count, void* out) {
  auto* body = static_cast<std::string*>(out);
  const std::size_t n = size * count;
  if (body->size() < 1024) body->append(data, std::min(n, 1024 - body->size()));
  return n;
}

}  // namespace

nlohmann::json webhook_payload(const notify::Posting& p) {
  return {{"posting_id", p.posting_id},
          {"event",
           {{"id", p.event_id},
            {"type", p.event_type},
            {"source", p.source},
            {"time", notify::format_iso8601(p.event_time)}}},
          {"template", p.template_name},
          {"recipient",
           {{"user_id", p.recipient.user_id},
            {"name", p.recipient.name},
            {"locale", p.recipient.locale},
            {"timezone", p.recipient.timezone}}},
          {"subject", p.content.subject},
          {"text", p.content.text},
          {"html", p.content.html},
          {"created_at", notify::format_iso8601(p.created_at)}};
}

struct WebhookSender::Impl {
  WebhookOptions options;
  CURL* curl = nullptr;
  ~Impl() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
};

WebhookSender::WebhookSender(WebhookOptions options) : impl_(std::make_unique<Impl>()) {
  global_init();
  impl_->options = options;
  impl_->curl = curl_easy_init();
  if (impl_->curl == nullptr) throw std::runtime_error("curl_easy_init failed");
}

WebhookSender::~WebhookSender() = default;

SendResult WebhookSender::send(const notify::Posting& posting) {
  const std::string& url = posting.recipient.address;
  if (!auth::url_allowed(url, impl_->options.allowlist)) {
    // A posting may come from anyone who can publish to the queue: no retry makes it allowed.
    constexpr std::size_t kShown = 200;
    return {SendStatus::kPermanent, 0,
            "webhook URL not allowed by WEBHOOK_URL_ALLOWLIST: " + url.substr(0, kShown) +
                (url.size() > kShown ? "…" : "")};
  }
  CURL* curl = impl_->curl;
  curl_easy_reset(curl);  // keeps the connection cache: the connection is reused
  const std::string body = webhook_payload(posting).dump();
  Slist headers;
  for (const std::string& h :
       {std::string("Content-Type: application/json"), "Idempotency-Key: " + posting.posting_id,
        "X-Notify-Posting-Id: " + posting.posting_id}) {
    notify::curl::append(headers, h);
  }
  std::string answer;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(impl_->options.connect_timeout.count()));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(impl_->options.timeout.count()));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "worker_notifications");

  const CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  if (rc != CURLE_OK) {
    // URL_MALFORMAT and UNSUPPORTED_PROTOCOL will never work; everything else may next time.
    const bool permanent = rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL;
    return {permanent ? SendStatus::kPermanent : SendStatus::kTransient, status,
            curl_easy_strerror(rc)};
  }
  const std::string detail =
      "HTTP " + std::to_string(status) + (answer.empty() ? "" : ": " + answer);
  if (status >= 200 && status < 300) return {SendStatus::kSent, status, detail};
  if (status == 408 || status == 429 || status >= 500) {
    return {SendStatus::kTransient, status, detail};
  }
  return {SendStatus::kPermanent, status, detail};
}

}  // namespace notify::worker
