#pragma once
// An e-mail ready to send, and how a send can end. Senders translate their library's errors
// into SendResult once; the worker decides ack / requeue / dead-letter from it alone.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace notify::worker {

struct Email {
  std::string from;        // "addr@example.com" or "Display Name <addr@example.com>"
  std::string to;          // the bare address
  std::string to_name;     // display name, may be empty or non-ASCII
  std::string subject;     // UTF-8
  std::string text;        // text/plain part (UTF-8); may be empty
  std::string html;        // text/html part (UTF-8); may be empty
  std::string message_id;  // without angle brackets; generated when empty
  // Bulk mail: List-Unsubscribe with these URIs and List-Unsubscribe-Post (RFC 8058). Empty: no
  // such headers (transactional mail).
  std::string list_unsubscribe_url;     // the one-click http(s) URL
  std::string list_unsubscribe_mailto;  // a mailto: URI, may be empty
  std::vector<std::pair<std::string, std::string>> extra_headers;
};

enum class SendStatus {
  kSent,       // the server accepted the message
  kTransient,  // try again later: 4xx, connection problems, timeouts
  kPermanent,  // will not succeed as is: 5xx, invalid address
};

struct SendResult {
  SendStatus status = SendStatus::kTransient;
  long smtp_code = 0;  // the last SMTP reply code; 0 when the server never answered
  std::string detail;  // the server's reply or the transport's error text
};

std::string_view to_string(SendStatus status);

// The seam between the delivery loop and the transport: tests substitute a fake.
class EmailSender {
 public:
  virtual ~EmailSender() = default;
  virtual SendResult send(const Email& email) = 0;
};

}  // namespace notify::worker
