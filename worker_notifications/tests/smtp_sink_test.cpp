// SmtpSender against the in-process SMTP sink on 127.0.0.1: what goes on the wire, connection
// reuse, and how replies and transport failures are classified.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "senders/mime_encoding.hpp"
#include "senders/smtp_sender.hpp"
#include "smtp_sink.hpp"

using notify::testing::SinkMessage;
using notify::testing::SmtpSink;
using notify::testing::SmtpStage;
using notify::worker::Email;
using notify::worker::SendStatus;
using notify::worker::SmtpOptions;
using notify::worker::SmtpSender;
using namespace std::chrono_literals;

using notify::testing::base64_decode;

namespace {

// Decodes an unstructured header value made of "=?UTF-8?B?...?=" words (whitespace between
// adjacent words is dropped, RFC 2047 section 6.2) and plain text.
std::string decode_rfc2047(const std::string& value) {
  std::string out;
  std::string pending_space;
  std::size_t pos = 0;
  bool last_was_word = false;
  while (pos < value.size()) {
    if (value.compare(pos, 10, "=?UTF-8?B?") == 0) {
      const auto end = value.find("?=", pos + 10);
      REQUIRE(end != std::string::npos);
      if (!last_was_word) out += pending_space;
      pending_space.clear();
      out += base64_decode(value.substr(pos + 10, end - pos - 10));
      pos = end + 2;
      last_was_word = true;
    } else if (value[pos] == ' ' || value[pos] == '\t') {
      pending_space += value[pos++];
    } else {
      out += pending_space;
      pending_space.clear();
      out += value[pos++];
      last_was_word = false;
    }
  }
  return out + pending_space;
}

std::string decode_quoted_printable(const std::string& in) {
  auto hex = [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : c - 'A' + 10;
  };
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '=' && i + 2 < in.size() && in[i + 1] == '\r' && in[i + 2] == '\n') {
      i += 2;  // soft line break
    } else if (in[i] == '=' && i + 2 < in.size()) {
      out += static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2]));
      i += 2;
    } else {
      out += in[i];
    }
  }
  return out;
}

// One MIME entity: its header fields (unfolded) and body.
struct Entity {
  SinkMessage raw;  // reuses SinkMessage::header / body for parsing
  std::optional<std::string> header(std::string_view name) const { return raw.header(name); }
  std::string body() const { return raw.body(); }
};

Entity entity(std::string data) {
  Entity e;
  e.raw.data = std::move(data);
  return e;
}

std::string boundary_of(const Entity& e) {
  const auto type = e.header("Content-Type");
  REQUIRE(type);
  const auto at = type->find("boundary=");
  REQUIRE(at != std::string::npos);
  std::string b = type->substr(at + 9);
  if (!b.empty() && b.front() == '"') b = b.substr(1, b.find('"', 1) - 1);
  return b.substr(0, b.find(';'));
}

std::vector<Entity> parts_of(const Entity& e) {
  const std::string boundary = "--" + boundary_of(e);
  const std::string body = "\r\n" + e.body();
  std::vector<Entity> parts;
  std::size_t pos = body.find("\r\n" + boundary);
  while (pos != std::string::npos) {
    std::size_t start = pos + 2 + boundary.size();
    if (body.compare(start, 2, "--") == 0) break;  // closing delimiter
    start = body.find("\r\n", start) + 2;
    const std::size_t next = body.find("\r\n" + boundary, start);
    REQUIRE(next != std::string::npos);
    parts.push_back(entity(body.substr(start, next - start)));
    pos = next;
  }
  return parts;
}

SmtpOptions options_for(const SmtpSink& sink) {
  SmtpOptions o;
  o.host = sink.host();
  o.port = sink.port();
  o.from = "Notify <noreply@example.com>";
  o.connect_timeout = 1000ms;
  o.timeout = 3000ms;
  o.helo_domain = "worker.example.com";
  return o;
}

Email sample_email() {
  Email e;
  e.to = "zoe@example.com";
  e.to_name = "Zoë Müller";
  e.subject = "Willkommen bei der Plattform, Zoë! Schön, dass du da bist — viele Grüße 😀";
  e.text = "Hallo Zoë,\nwillkommen!\n.a line starting with a dot\nGrüße";
  e.html = "<p>Hallo Zoë,</p>\n<p>willkommen!</p>";
  e.message_id = "3f1c2d4e-posting@example.com";
  e.extra_headers = {{"X-Notify-Posting-Id", "3f1c2d4e"}, {"Bcc", "evil@example.com"}};
  return e;
}

int count_of(const std::vector<std::string>& commands, std::string_view prefix) {
  int n = 0;
  for (const auto& c : commands) n += c.rfind(prefix, 0) == 0 ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("a multipart mail arrives with encoded headers and both parts") {
  SmtpSink sink;
  auto opts = options_for(sink);
  opts.now = [] { return std::chrono::system_clock::time_point(std::chrono::seconds(1772528707)); };
  SmtpSender sender(opts);
  const Email email = sample_email();
  const auto result = sender.send(email);
  INFO(result.detail);
  REQUIRE(result.status == SendStatus::kSent);
  CHECK(result.smtp_code == 250);
  CHECK(result.detail.find("queued") != std::string::npos);

  REQUIRE(sink.wait_for_messages(1, 1s));
  const SinkMessage m = sink.messages().at(0);
  CHECK(m.mail_from == "noreply@example.com");
  CHECK(m.rcpt_to == std::vector<std::string>{"zoe@example.com"});
  CHECK(m.helo == "worker.example.com");

  const auto subject = m.header("Subject");
  REQUIRE(subject);
  CHECK(subject->rfind("=?UTF-8?B?", 0) == 0);
  CHECK(decode_rfc2047(*subject) == email.subject);
  // Folded on the wire: every header line stays short.
  const std::string head = m.data.substr(0, m.data.find("\r\n\r\n"));
  for (std::size_t p = 0, e; p < head.size(); p = e + 2) {
    e = head.find("\r\n", p);
    if (e == std::string::npos) e = head.size();
    CHECK(e - p <= 998);
  }
  const auto to = m.header("To");
  REQUIRE(to);
  CHECK(decode_rfc2047(*to) == "Zoë Müller <zoe@example.com>");
  CHECK(m.header("From") == "Notify <noreply@example.com>");
  CHECK(m.header("Date") == "Tue, 03 Mar 2026 09:05:07 +0000");
  CHECK(m.header("Message-ID") == "<3f1c2d4e-posting@example.com>");
  CHECK(m.header("X-Notify-Posting-Id") == "3f1c2d4e");
  CHECK_FALSE(m.header("Bcc"));  // reserved: extra headers cannot add recipients
  const auto version = m.header("MIME-Version");
  REQUIRE(version);
  CHECK(*version == "1.0");

  const Entity top = entity(m.data);
  const auto top_type = top.header("Content-Type");
  REQUIRE(top_type);
  CHECK(top_type->rfind("multipart/mixed", 0) == 0);
  const auto outer = parts_of(top);
  REQUIRE(outer.size() == 1);
  CHECK(outer[0].header("Content-Type")->rfind("multipart/alternative", 0) == 0);
  const auto alternatives = parts_of(outer[0]);
  REQUIRE(alternatives.size() == 2);
  CHECK(alternatives[0].header("Content-Type") == "text/plain; charset=utf-8");
  CHECK(alternatives[0].header("Content-Transfer-Encoding") == "quoted-printable");
  CHECK(decode_quoted_printable(alternatives[0].body()) ==
        notify::worker::mime::to_crlf(email.text));
  CHECK(alternatives[1].header("Content-Type") == "text/html; charset=utf-8");
  CHECK(decode_quoted_printable(alternatives[1].body()) ==
        notify::worker::mime::to_crlf(email.html));
}

TEST_CASE("a header value cannot inject headers or recipients") {
  SmtpSink sink;
  SmtpSender sender(options_for(sink));
  Email email = sample_email();
  email.subject = "Hello\r\nBcc: victim@example.com";
  email.to_name = "Eve\r\nCc: victim@example.com";
  email.message_id = "id>\r\nX-Evil: 1";
  REQUIRE(sender.send(email).status == SendStatus::kSent);
  REQUIRE(sink.wait_for_messages(1, 1s));
  const auto m = sink.messages().at(0);
  CHECK(m.rcpt_to == std::vector<std::string>{"zoe@example.com"});
  CHECK_FALSE(m.header("Bcc"));
  CHECK_FALSE(m.header("Cc"));
  CHECK_FALSE(m.header("X-Evil"));
  CHECK(m.header("Subject") == "Hello  Bcc: victim@example.com");
  CHECK(m.header("Message-ID") == "<idX-Evil:1>");
}

TEST_CASE("bulk mail carries List-Unsubscribe and List-Unsubscribe-Post; other mail neither") {
  SmtpSink sink;
  SmtpSender sender(options_for(sink));
  Email bulk = sample_email();
  bulk.list_unsubscribe_url = "https://example.org/unsubscribe?token=v1." + std::string(80, 'T');
  bulk.list_unsubscribe_mailto = "mailto:unsubscribe@example.org?subject=unsubscribe%20v1.T";
  // Extra headers cannot add a second, unchecked one.
  bulk.extra_headers.emplace_back("List-Unsubscribe", "<https://evil.example/>");
  bulk.extra_headers.emplace_back("list-unsubscribe-post", "x");
  const auto sent = sender.send(bulk);
  INFO(sent.detail);
  REQUIRE(sent.status == SendStatus::kSent);
  REQUIRE(sender.send(sample_email()).status == SendStatus::kSent);
  REQUIRE(sink.wait_for_messages(2, 1s));
  const auto messages = sink.messages();
  const auto& m = messages.at(0);
  // Unfolded as a mail reader reads it: both URIs whole, in angle brackets.
  CHECK(m.header("List-Unsubscribe") ==
        "<" + bulk.list_unsubscribe_url + ">, <" + bulk.list_unsubscribe_mailto + ">");
  CHECK(m.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click");
  CHECK(m.data.find("evil.example") == std::string::npos);
  const std::string head = m.data.substr(0, m.data.find("\r\n\r\n"));
  CHECK(head.find("List-Unsubscribe: <https://example.org/unsubscribe?token=v1.") !=
        std::string::npos);
  std::size_t headers = 0;
  for (std::size_t at = 0; (at = head.find("\nList-Unsubscribe", at)) != std::string::npos; ++at) {
    ++headers;
  }
  CHECK(headers == 2);  // List-Unsubscribe and List-Unsubscribe-Post, once each
  const auto& transactional = messages.at(1);
  CHECK_FALSE(transactional.header("List-Unsubscribe"));
  CHECK_FALSE(transactional.header("List-Unsubscribe-Post"));
}

TEST_CASE("a bulk mail whose unsubscribe link would break its header is refused, not sent") {
  SmtpSink sink;
  SmtpSender sender(options_for(sink));
  Email bulk = sample_email();
  bulk.list_unsubscribe_url = "https://example.org/u?token=T\r\nBcc: victim@example.com";
  const auto r = sender.send(bulk);
  CHECK(r.status == SendStatus::kPermanent);
  CHECK(r.detail.rfind("invalid List-Unsubscribe URI", 0) == 0);
  CHECK(r.detail.find('\n') == std::string::npos);
  CHECK(sink.messages().empty());
}

TEST_CASE("three sends use one connection") {
  SmtpSink sink;
  SmtpSender sender(options_for(sink));
  for (int i = 0; i < 3; ++i) {
    Email email = sample_email();
    email.message_id = "m" + std::to_string(i) + "@example.com";
    const auto r = sender.send(email);
    INFO(r.detail);
    CHECK(r.status == SendStatus::kSent);
  }
  REQUIRE(sink.wait_for_messages(3, 1s));
  CHECK(sink.connections() == 1);
  const auto messages = sink.messages();
  CHECK(messages[2].connection == 1);
  CHECK(messages[2].header("Message-ID") == "<m2@example.com>");
  CHECK(count_of(sink.commands(), "EHLO") == 1);
}

TEST_CASE("451 to MAIL FROM is transient; the next send uses a fresh connection") {
  SmtpSink sink;
  sink.script(SmtpStage::kMail, "451 4.3.0 Try again later", 2);
  SmtpSender sender(options_for(sink));
  for (int i = 0; i < 2; ++i) {
    const auto r = sender.send(sample_email());
    CHECK(r.status == SendStatus::kTransient);
    CHECK(r.smtp_code == 451);
    INFO(r.detail);
    CHECK(r.detail.find("451 4.3.0 Try again later") != std::string::npos);
  }
  const auto r = sender.send(sample_email());
  INFO(r.detail);
  CHECK(r.status == SendStatus::kSent);
  CHECK(r.smtp_code == 250);
  CHECK(sink.messages().size() == 1);
  CHECK(sink.connections() == 3);
}

TEST_CASE("550 to RCPT is permanent, with the reply text") {
  SmtpSink sink;
  sink.script(SmtpStage::kRcpt, "550 5.1.1 <zoe@example.com>: Recipient address rejected");
  SmtpSender sender(options_for(sink));
  const auto r = sender.send(sample_email());
  CHECK(r.status == SendStatus::kPermanent);
  CHECK(r.smtp_code == 550);
  CHECK(r.detail.find("Recipient address rejected") != std::string::npos);
  CHECK(sink.messages().empty());
  // The sender recovers: the next message goes through.
  CHECK(sender.send(sample_email()).status == SendStatus::kSent);
}

TEST_CASE("554 after the data is permanent; 452 after the data is transient") {
  SmtpSink sink;
  sink.script(SmtpStage::kEndOfData, "554 5.7.1 Message rejected as spam");
  sink.script(SmtpStage::kEndOfData, "452 4.3.1 Insufficient system storage");
  SmtpSender sender(options_for(sink));
  const auto spam = sender.send(sample_email());
  CHECK(spam.status == SendStatus::kPermanent);
  CHECK(spam.smtp_code == 554);
  CHECK(spam.detail.find("spam") != std::string::npos);
  const auto full = sender.send(sample_email());
  CHECK(full.status == SendStatus::kTransient);
  CHECK(full.smtp_code == 452);
  CHECK(sink.messages().empty());
}

TEST_CASE("connection refused is transient") {
  int port = 0;
  {
    SmtpSink gone;
    port = gone.port();
  }
  SmtpOptions opts;
  opts.port = port;
  opts.from = "noreply@example.com";
  opts.connect_timeout = 1000ms;
  opts.timeout = 2000ms;
  SmtpSender sender(opts);
  const auto r = sender.send(sample_email());
  CHECK(r.status == SendStatus::kTransient);
  CHECK(r.smtp_code == 0);
  CHECK_FALSE(r.detail.empty());
}

TEST_CASE("a 421 greeting is transient") {
  SmtpSink sink;
  sink.script(SmtpStage::kGreeting, "421 4.3.2 Service shutting down");
  SmtpSender sender(options_for(sink));
  const auto r = sender.send(sample_email());
  CHECK(r.status == SendStatus::kTransient);
  CHECK(r.smtp_code == 421);
}

TEST_CASE("a server that stops answering is a transient timeout") {
  SmtpSink sink;
  sink.hang(SmtpStage::kEndOfData);
  auto opts = options_for(sink);
  opts.timeout = 300ms;
  SmtpSender sender(opts);
  const auto start = std::chrono::steady_clock::now();
  const auto r = sender.send(sample_email());
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  CHECK(r.status == SendStatus::kTransient);
  CHECK(r.detail.find("imeout") != std::string::npos);
  CHECK(sender.send(sample_email()).status == SendStatus::kSent);
  CHECK(sink.connections() == 2);
}

TEST_CASE("a connection closed mid-dialogue is transient") {
  SmtpSink sink;
  sink.close_on(SmtpStage::kMail);
  SmtpSender sender(options_for(sink));
  const auto r = sender.send(sample_email());
  CHECK(r.status == SendStatus::kTransient);
  CHECK(sender.send(sample_email()).status == SendStatus::kSent);
}

TEST_CASE("an idle connection closed by the server is replaced transparently") {
  SmtpSink sink;
  SmtpSender sender(options_for(sink));
  REQUIRE(sender.send(sample_email()).status == SendStatus::kSent);
  sink.drop_connections();
  const auto r = sender.send(sample_email());
  INFO(r.detail);
  CHECK(r.status == SendStatus::kSent);
  CHECK(sink.connections() == 2);
}

TEST_CASE("STARTTLS offered but refused: CURLUSESSL_TRY sends in clear") {
  SmtpSink sink(SmtpSink::Options{.advertise_starttls = true, .credentials = std::nullopt});
  SmtpSender sender(options_for(sink));
  const auto r = sender.send(sample_email());
  INFO(r.detail);
  CHECK(r.status == SendStatus::kSent);
  CHECK(count_of(sink.commands(), "STARTTLS") == 1);
}

TEST_CASE("AUTH PLAIN with the configured credentials; a wrong password is permanent") {
  SmtpSink sink(SmtpSink::Options{.advertise_starttls = false,
                                  .credentials = std::pair<std::string, std::string>{"u", "pw"}});
  auto opts = options_for(sink);
  opts.username = "u";
  opts.password = "pw";
  {
    SmtpSender sender(opts);
    const auto r = sender.send(sample_email());
    INFO(r.detail);
    CHECK(r.status == SendStatus::kSent);
  }
  opts.password = "wrong";
  SmtpSender denied(opts);
  const auto r = denied.send(sample_email());
  CHECK(r.status == SendStatus::kTransient);  // the mail is fine; the credentials are not
  CHECK(r.smtp_code == 535);
  CHECK(sink.messages().size() == 1);
}

TEST_CASE("invalid addresses are permanent without contacting the server") {
  SmtpSink sink;
  SmtpSender sender(options_for(sink));
  Email email = sample_email();
  email.to = "not an address";
  auto r = sender.send(email);
  CHECK(r.status == SendStatus::kPermanent);
  CHECK(r.detail.find("recipient") != std::string::npos);
  email.to = "zoe@example.com>\r\nRCPT TO:<evil@example.com";
  CHECK(sender.send(email).status == SendStatus::kPermanent);
  email = sample_email();
  email.from = "nobody";
  r = sender.send(email);
  CHECK(r.status == SendStatus::kPermanent);
  CHECK(r.detail.find("sender") != std::string::npos);
  CHECK(sink.connections() == 0);
}

TEST_CASE("text only, and a generated Message-ID when none is given") {
  SmtpSink sink;
  SmtpSender sender(options_for(sink));
  Email email = sample_email();
  email.html.clear();
  email.message_id.clear();
  REQUIRE(sender.send(email).status == SendStatus::kSent);
  REQUIRE(sink.wait_for_messages(1, 1s));
  const auto m = sink.messages().at(0);
  const auto id = m.header("Message-ID");
  REQUIRE(id);
  CHECK(id->front() == '<');
  CHECK(id->find("@example.com>") != std::string::npos);
  const auto alternatives = parts_of(parts_of(entity(m.data)).at(0));
  REQUIRE(alternatives.size() == 1);
  CHECK(alternatives[0].header("Content-Type") == "text/plain; charset=utf-8");
}
