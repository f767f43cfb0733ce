#pragma once
// The transport of each channel behind one interface: e-mail over SMTP, webhooks over HTTP.
// The loop only sees ChannelSender; tests give it a fake.

#include <memory>
#include <string>

#include "config.hpp"
#include "notify/posting.hpp"
#include "senders/smtp_sender.hpp"

namespace worker {

using notify::worker::Email;

// <posting id@domain of the sender>: the same posting always carries the same Message-ID, so
// a redelivered duplicate is recognisable in the recipient's mailbox.
std::string message_id_for(const std::string& posting_id, const std::string& from);
// The e-mail of a posting; a bulk posting's carries List-Unsubscribe (RFC 2369, RFC 8058).
Email to_email(const notify::Posting& posting, const std::string& from);

// The transport of one channel. May throw: the loop treats that as a transient failure.
class ChannelSender {
 public:
  virtual ~ChannelSender() = default;
  virtual notify::worker::SendResult send(const notify::Posting& posting) = 0;
};

// The channel's real transport, configured from the worker's settings.
std::unique_ptr<ChannelSender> make_sender(notify::Channel channel, const WorkerConfig& config);

}  // namespace worker
