#pragma once
// The worker's loop: postings in from the work queue, mail out, ack only after the SMTP server
// accepted the mail. Undecodable or permanently failing postings are dead-lettered (rejected
// without requeue into the dead-letter queue); transient failures go back to the queue after
// a pause.

#include <atomic>
#include <chrono>
#include <string>
#include <variant>

#include "config.hpp"
#include "notify/amqp.hpp"
#include "notify/posting.hpp"
#include "senders/smtp_sender.hpp"

namespace worker {

using notify::worker::Email;
using notify::worker::SendResult;
using notify::worker::SendStatus;

// <posting id@domain of the sender>: the same posting always carries the same Message-ID, so
// a redelivered duplicate is recognisable in the recipient's mailbox.
std::string message_id_for(const std::string& posting_id, const std::string& from);
Email to_email(const notify::Posting& posting, const std::string& from);

// What becomes of a delivery. Pure data, so the decision is testable without a broker.
struct Ack {
  std::string outcome;  // "sent"
};
struct DeadLetter {
  std::string reason;
};
struct Requeue {
  std::string reason;
};
using Action = std::variant<Ack, DeadLetter, Requeue>;

Action action_for(const SendResult& result);

class DeliveryLoop {
 public:
  explicit DeliveryLoop(const WorkerConfig& config);
  void run(const std::atomic<bool>& stop);

 private:
  void handle(const notify::amqp::Delivery& delivery);
  void connect_with_backoff(const std::atomic<bool>& stop);

  WorkerConfig config_;
  notify::amqp::Consumer consumer_;
  notify::worker::SmtpSender sender_;
};

}  // namespace worker
