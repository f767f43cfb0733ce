#include "channels.hpp"

#include <chrono>

#include "senders/webhook_sender.hpp"

namespace worker {
namespace {

notify::worker::SmtpOptions smtp_options(const WorkerConfig& c) {
  notify::worker::SmtpOptions o;
  o.host = c.smtp_host;
  o.port = c.smtp_port;
  o.from = c.smtp_from;
  o.username = c.smtp_username;
  o.password = c.smtp_password;
  o.timeout = c.smtp_timeout;
  return o;
}

class EmailChannel final : public ChannelSender {
 public:
  explicit EmailChannel(const WorkerConfig& c) : smtp_(smtp_options(c)), from_(c.smtp_from) {}
  notify::worker::SendResult send(const notify::Posting& p) override {
    return smtp_.send(to_email(p, from_));
  }

 private:
  notify::worker::SmtpSender smtp_;
  std::string from_;
};

// The webhook sender checks WEBHOOK_URL_ALLOWLIST itself before any request.
class WebhookChannel final : public ChannelSender {
 public:
  explicit WebhookChannel(const WorkerConfig& c)
      : http_(notify::worker::WebhookOptions{std::chrono::milliseconds(5000), c.webhook_timeout,
                                             c.webhook_url_allowlist}) {}
  notify::worker::SendResult send(const notify::Posting& p) override { return http_.send(p); }

 private:
  notify::worker::WebhookSender http_;
};

}  // namespace

std::string message_id_for(const std::string& posting_id, const std::string& from) {
  auto at = from.rfind('@');
  std::string domain = at == std::string::npos ? "localhost" : from.substr(at + 1);
  while (!domain.empty() && domain.back() == '>') domain.pop_back();
  return posting_id + "@" + (domain.empty() ? "localhost" : domain);
}

Email to_email(const notify::Posting& p, const std::string& from) {
  Email e;
  e.from = from;
  e.to = p.recipient.address;
  e.to_name = p.recipient.name;
  e.subject = p.content.subject;
  e.text = p.content.text;
  e.html = p.content.html;
  e.message_id = message_id_for(p.posting_id, from);
  e.extra_headers = {{"X-Notify-Posting-Id", p.posting_id}, {"X-Notify-Template", p.template_name}};
  // Bulk mail carries its one-click unsubscribe (before_send dead-letters it without one);
  // transactional mail never does, whatever its posting says.
  if (p.category == notify::Category::kBulk) {
    e.list_unsubscribe_url = p.unsubscribe.url;
    e.list_unsubscribe_mailto = p.unsubscribe.mailto;
  }
  return e;
}

std::unique_ptr<ChannelSender> make_sender(notify::Channel channel, const WorkerConfig& config) {
  if (channel == notify::Channel::kWebhook) return std::make_unique<WebhookChannel>(config);
  return std::make_unique<EmailChannel>(config);
}

}  // namespace worker
