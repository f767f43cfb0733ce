#include "senders/smtp_sender.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <stdexcept>
#include <utility>

#include "notify/c_handle.hpp"
#include "notify/http_client.hpp"
#include "senders/mime_encoding.hpp"

namespace notify::worker {

namespace {

using EasyHandle = notify::CHandle<CURL, curl_easy_cleanup>;
using Slist = notify::CHandle<curl_slist, curl_slist_free_all>;
using Mime = notify::CHandle<curl_mime, curl_mime_free>;

// Appends one line; throws std::bad_alloc when libcurl cannot.
void append(Slist& list, const std::string& line) {
  curl_slist* next = curl_slist_append(list.get(), line.c_str());
  if (next == nullptr) throw std::bad_alloc();
  (void)list.release();  // next now owns the old nodes
  list.reset(next);
}

void check(CURLcode rc, const char* what) {
  if (rc != CURLE_OK) {
    throw std::runtime_error(std::string("smtp: ") + what + ": " + curl_easy_strerror(rc));
  }
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Headers this sender writes itself; extra headers may not replace them.
bool is_reserved_header(std::string_view name) {
  static constexpr std::string_view kReserved[] = {"from",
                                                   "to",
                                                   "cc",
                                                   "bcc",
                                                   "subject",
                                                   "date",
                                                   "message-id",
                                                   "mime-version",
                                                   "content-type",
                                                   "content-transfer-encoding",
                                                   "sender",
                                                   "return-path",
                                                   "list-unsubscribe",
                                                   "list-unsubscribe-post"};
  const std::string n = lower(name);
  return std::find(std::begin(kReserved), std::end(kReserved), n) != std::end(kReserved);
}

// Server replies arrive through the header callback, one line at a time.
size_t collect_reply(char* data, size_t size, size_t nmemb, void* userp) {
  auto* lines = static_cast<std::vector<std::string>*>(userp);
  std::string line(data, size * nmemb);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  if (lines->size() < 64) lines->push_back(std::move(line));
  return size * nmemb;
}

size_t discard(char*, size_t size, size_t nmemb, void*) { return size * nmemb; }

// The reply that carried `code` (the last one with it: curl may QUIT after a failure, and the
// 221 that follows is not the news); else the last reply. Multi-line replies are joined.
std::string reply_text(const std::vector<std::string>& lines, long code) {
  if (lines.empty()) return {};
  const std::string wanted = std::to_string(code);
  std::size_t last = lines.size() - 1;
  for (std::size_t i = lines.size(); i-- > 0;) {
    if (code >= 100 && lines[i].compare(0, 3, wanted) == 0 &&
        (lines[i].size() == 3 || lines[i][3] == ' ')) {
      last = i;
      break;
    }
  }
  const std::string final_code = lines[last].substr(0, 3);
  std::size_t first = last;
  while (first > 0 && lines[first - 1].size() >= 4 &&
         lines[first - 1].compare(0, 3, final_code) == 0 && lines[first - 1][3] == '-') {
    --first;
  }
  std::string out;
  for (std::size_t i = first; i <= last; ++i) {
    if (!out.empty()) out += ' ';
    out += lines[i];
  }
  return out;
}

SendStatus classify(CURLcode rc, long smtp_code) {
  if (rc == CURLE_OK) return SendStatus::kSent;
  // Refused credentials say nothing about the mail: an operator fixes them, and dead-lettering
  // every posting meanwhile would be the wrong cure. Retries bound the cost.
  if (rc == CURLE_LOGIN_DENIED) return SendStatus::kTransient;
  if (smtp_code >= 500 && smtp_code < 600) return SendStatus::kPermanent;
  if (smtp_code >= 400 && smtp_code < 500) return SendStatus::kTransient;
  // Connection refused or dropped, timeouts, TLS trouble, odd replies: the next try may work,
  // and the worker's retry limit bounds the cost of being wrong.
  return SendStatus::kTransient;
}

std::string domain_of(std::string_view address) {
  const auto at = address.rfind('@');
  return at == std::string_view::npos ? "localhost" : std::string(address.substr(at + 1));
}

std::string generated_message_id(std::string_view domain) {
  static std::atomic<unsigned long long> counter{0};
  thread_local std::mt19937_64 gen{std::random_device{}()};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%016llx.%llu", static_cast<unsigned long long>(gen()),
                counter.fetch_add(1) + 1);
  return std::string(buf) + "@" + std::string(domain);
}

// A Message-ID without brackets, spaces or controls (it goes between < and >).
std::string clean_message_id(std::string_view id) {
  std::string out;
  for (unsigned char c : id) {
    if (c > 0x20 && c < 0x7f && c != '<' && c != '>') out += static_cast<char>(c);
  }
  return out;
}

std::string smtp_url(const SmtpOptions& o) {
  std::string host = o.host;
  if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
  std::string url = "smtp://" + host + ":" + std::to_string(o.port);
  // The URL path is the EHLO argument.
  if (!o.helo_domain.empty()) url += "/" + o.helo_domain;
  return url;
}

}  // namespace

std::string_view to_string(SendStatus status) {
  switch (status) {
    case SendStatus::kSent:
      return "sent";
    case SendStatus::kTransient:
      return "transient";
    case SendStatus::kPermanent:
      return "permanent";
  }
  return "unknown";
}

struct SmtpSender::Impl {
  SmtpOptions options;
  std::string url;
  EasyHandle easy;
  char error_buffer[CURL_ERROR_SIZE] = {};
  std::vector<std::string> replies;
  bool fresh_connection = false;  // set after a failure: never reuse a suspect connection

  explicit Impl(SmtpOptions o) : options(std::move(o)) {
    notify::http::global_init();  // libcurl's, once per process
    if (options.host.empty()) throw std::invalid_argument("smtp: empty host");
    if (options.port <= 0 || options.port > 65535) throw std::invalid_argument("smtp: bad port");
    if (!options.now) options.now = [] { return std::chrono::system_clock::now(); };
    url = smtp_url(options);
    easy.reset(curl_easy_init());
    if (!easy) throw std::runtime_error("curl_easy_init failed");
    CURL* h = easy.get();
    check(curl_easy_setopt(h, CURLOPT_URL, url.c_str()), "URL");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_TRY));
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, options.tls_verify ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, options.tls_verify ? 2L : 0L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options.connect_timeout.count()));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout.count()));
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, collect_reply);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &replies);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    if (!options.username.empty()) {
      curl_easy_setopt(h, CURLOPT_USERNAME, options.username.c_str());
      curl_easy_setopt(h, CURLOPT_PASSWORD, options.password.c_str());
    }
  }

  static SendResult invalid(std::string detail) {
    return {SendStatus::kPermanent, 0, std::move(detail)};
  }

  SendResult send(const Email& email) {
    const std::string& from_text = email.from.empty() ? options.from : email.from;
    const auto from = mime::parse_mailbox(from_text);
    if (!from) return invalid("invalid sender address: '" + from_text + "'");
    if (!mime::is_valid_address(email.to)) {
      return invalid("invalid recipient address: '" + mime::sanitize_header_value(email.to) + "'");
    }

    std::string message_id = clean_message_id(email.message_id);
    if (message_id.empty()) message_id = generated_message_id(domain_of(from->address));

    std::optional<std::string> list_unsubscribe;
    if (!email.list_unsubscribe_url.empty()) {
      // Bulk mail goes with its one-click unsubscribe or not at all.
      list_unsubscribe =
          mime::list_unsubscribe_value(email.list_unsubscribe_url, email.list_unsubscribe_mailto);
      if (!list_unsubscribe) {
        return invalid("invalid List-Unsubscribe URI: '" +
                       mime::sanitize_header_value(email.list_unsubscribe_url) + "'");
      }
    }

    Slist headers;
    append(headers, "Date: " + mime::format_rfc5322_date(options.now()));
    append(headers, "From: " + mime::format_mailbox(from->name, from->address));
    append(headers, "To: " + mime::format_mailbox(email.to_name, email.to));
    append(headers, "Subject: " + mime::encode_header_text(email.subject));
    append(headers, "Message-ID: <" + message_id + ">");
    append(headers, "MIME-Version: 1.0");
    if (list_unsubscribe) {
      append(headers, "List-Unsubscribe: " + *list_unsubscribe);
      append(headers, "List-Unsubscribe-Post: List-Unsubscribe=One-Click");
    }
    for (const auto& [name, value] : email.extra_headers) {
      if (!mime::is_valid_header_name(name) || is_reserved_header(name)) continue;
      append(headers, name + ": " + mime::encode_header_text(value));
    }

    Slist recipients;
    append(recipients, "<" + email.to + ">");
    const std::string mail_from = "<" + from->address + ">";

    CURL* h = easy.get();
    Mime message(curl_mime_init(h));
    Mime alternatives(curl_mime_init(h));
    if (!message || !alternatives) throw std::bad_alloc();
    auto add_text = [&](const std::string& body, const char* type) {
      curl_mimepart* part = curl_mime_addpart(alternatives.get());
      const std::string crlf = mime::to_crlf(body);
      check(curl_mime_data(part, crlf.data(), crlf.size()), "mime data");
      check(curl_mime_type(part, type), "mime type");
      check(curl_mime_encoder(part, "quoted-printable"), "mime encoder");
    };
    if (!email.text.empty() || email.html.empty())
      add_text(email.text, "text/plain; charset=utf-8");
    if (!email.html.empty()) add_text(email.html, "text/html; charset=utf-8");
    curl_mimepart* body = curl_mime_addpart(message.get());
    check(curl_mime_subparts(body, alternatives.get()), "mime subparts");
    (void)alternatives.release();  // owned by the part from here on
    check(curl_mime_type(body, "multipart/alternative"), "mime type");

    replies.clear();
    error_buffer[0] = '\0';
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, mail_from.c_str());
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, recipients.get());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(h, CURLOPT_MIMEPOST, message.get());
    curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, fresh_connection ? 1L : 0L);
    const CURLcode rc = curl_easy_perform(h);

    // The handle outlives this message: let go of everything that is freed below.
    curl_easy_setopt(h, CURLOPT_MIMEPOST, nullptr);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, nullptr);
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, nullptr);

    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    SendResult result{classify(rc, code), code, reply_text(replies, code)};
    fresh_connection = rc != CURLE_OK;
    if (rc != CURLE_OK) {
      const std::string curl_text = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(rc);
      if (code >= 400) {
        result.detail += " (" + curl_text + ")";
      } else if (!result.detail.empty()) {
        // The last reply was a success: the failure is the transport's.
        result.detail = curl_text + " (last reply: " + result.detail + ")";
      } else {
        result.detail = curl_text;
      }
    }
    return result;
  }
};

SmtpSender::SmtpSender(SmtpOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
SmtpSender::~SmtpSender() = default;

SendResult SmtpSender::send(const Email& email) { return impl_->send(email); }

}  // namespace notify::worker
