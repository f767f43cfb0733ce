#include "senders/webhook_sender.hpp"

#include "auth_client/url.hpp"
#include "notify/http_client.hpp"
#include "notify/time.hpp"

namespace notify::worker {

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
  notify::http::Client http;

  explicit Impl(WebhookOptions o)
      : options(std::move(o)),
        http({options.connect_timeout, options.timeout, "worker_notifications"}) {}
};

WebhookSender::WebhookSender(WebhookOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

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
  notify::http::Request request;
  request.url = url;
  request.body = webhook_payload(posting).dump();
  request.headers = {"Content-Type: application/json", "Idempotency-Key: " + posting.posting_id,
                     "X-Notify-Posting-Id: " + posting.posting_id};
  // The start of the answer is enough for the log; the rest is read and dropped.
  request.max_body_bytes = 1024;
  request.truncate_body = true;

  const notify::http::Response r = impl_->http.perform(request);
  if (!r.arrived()) {
    // A malformed URL or another scheme will never work; everything else may next time.
    const bool permanent = r.failure == notify::http::Failure::kBadUrl;
    return {permanent ? SendStatus::kPermanent : SendStatus::kTransient, r.status, r.error};
  }
  const long status = r.status;
  const std::string detail =
      "HTTP " + std::to_string(status) + (r.body.empty() ? "" : ": " + r.body);
  if (status >= 200 && status < 300) return {SendStatus::kSent, status, detail};
  if (status == 408 || status == 429 || status >= 500) {
    return {SendStatus::kTransient, status, detail};
  }
  return {SendStatus::kPermanent, status, detail};
}

}  // namespace notify::worker
