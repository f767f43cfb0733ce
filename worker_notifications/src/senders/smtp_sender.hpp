#pragma once
// Sends e-mail over SMTP with libcurl. One easy handle lives as long as the sender, so the SMTP
// connection is reused from one message to the next. A sender belongs to one thread at a time.

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "senders/email.hpp"

namespace notify::worker {

struct SmtpOptions {
  std::string host = "127.0.0.1";
  int port = 25;
  std::string from;                // used when Email::from is empty; "addr" or "Name <addr>"
  std::string username, password;  // AUTH when username is set (and the server offers it)
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{30000};  // a whole message, connecting included
  std::string helo_domain;                   // EHLO argument; curl says "localhost" when empty
  // STARTTLS is used when the server offers it; a certificate that does not verify then fails
  // the send (kTransient). Turn off only for development servers with self-signed certificates.
  bool tls_verify = true;
  // The Date header's clock; default std::chrono::system_clock::now.
  std::function<std::chrono::system_clock::time_point()> now;
};

class SmtpSender final : public EmailSender {
 public:
  explicit SmtpSender(SmtpOptions options);
  ~SmtpSender() override;
  SmtpSender(const SmtpSender&) = delete;
  SmtpSender& operator=(const SmtpSender&) = delete;

  // kSent when the server accepted the message; kTransient for SMTP 4xx, connection failures,
  // timeouts and dropped connections; kPermanent for SMTP 5xx and invalid addresses; refused
  // credentials are kTransient. Never throws for a failed send; after any failure the next send
  // opens a new connection.
  SendResult send(const Email& email) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace notify::worker
