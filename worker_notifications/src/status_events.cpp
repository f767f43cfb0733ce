#include "status_events.hpp"

#include "notify/envelope.hpp"
#include "notify/redact.hpp"

namespace worker {

std::string sent_reply(notify::Channel channel, const SendResult& result) {
  if (channel == notify::Channel::kWebhook) return "http " + std::to_string(result.smtp_code);
  // The SMTP sender's detail is the reply as the server wrote it, code first.
  const std::string code = std::to_string(result.smtp_code);
  std::string_view text = result.detail;
  if (text.size() > code.size() && text.substr(0, code.size()) == code &&
      (text[code.size()] == ' ' || text[code.size()] == '-')) {
    text.remove_prefix(code.size() + 1);
  }
  return "smtp " + code + ": " + notify::mask_addresses(text);
}

std::optional<notify::status::Event> status_event(const notify::Posting* posting,
                                                  const notify::amqp::Delivery& delivery,
                                                  std::string_view channel, const Action& action,
                                                  std::string_view reply, notify::TimePoint now) {
  notify::status::Event e;
  e.time = now;
  e.service = kServiceName;
  e.channel = std::string(channel);
  if (posting != nullptr) {
    e.event_id = posting->event_id;
    e.event_type = posting->event_type;
    e.posting_id = posting->posting_id;
    e.user_id = posting->recipient.user_id;
    e.channel = std::string(notify::to_string(posting->channel));
    e.template_name = posting->template_name;
  } else {
    // What the ETL put on the envelope (the message id is the posting id).
    e.event_id = notify::envelope::header(delivery, notify::envelope::kEventIdHeader);
    e.posting_id = delivery.message_id;
    e.template_name = notify::envelope::header(delivery, notify::envelope::kTemplateHeader);
  }

  if (const auto* ack = std::get_if<Ack>(&action)) {
    switch (ack->outcome) {
      case AckOutcome::kSent:
        e.status = "sent";
        e.reply = std::string(reply);
        break;
      case AckOutcome::kExpired:
      case AckOutcome::kExpiredBeforeWindow:
        e.status = "expired";
        e.reason = std::string(to_string(ack->outcome));
        break;
      case AckOutcome::kDuplicate:
        e.status = "duplicate_suppressed";
        e.reason = std::string(duplicate_cause(delivery));
        break;
    }
  } else if (const auto* later = std::get_if<Postpone>(&action)) {
    if (later->reason == DeferReason::kDeferred) return std::nullopt;
    e.status = "deferred";
    e.reason = std::string(to_string(later->reason));
    e.until = later->until;
    e.zone = later->zone;
    if (later->reason == DeferReason::kRetry) {
      e.attempts = later->attempts;
      e.last_error = notify::mask_addresses(later->last_error);
    }
  } else {
    const auto& dead = std::get<DeadLetter>(action);
    e.status = "dead_lettered";
    // The decoder's or an exception's text may quote an address.
    e.reason = notify::mask_addresses(dead_reason_text(dead));
    e.attempts = dead.attempts;
    e.last_error = notify::mask_addresses(dead.last_error);
  }
  return e;
}

}  // namespace worker
