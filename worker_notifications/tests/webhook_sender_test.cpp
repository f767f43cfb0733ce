#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include <httplib.h>

#include "notify/time.hpp"
#include "senders/webhook_sender.hpp"

using namespace notify::worker;

namespace {

// A loopback HTTP receiver answering with a scripted status.
struct Receiver {
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::atomic<int> status{200};
  std::mutex mutex;
  std::vector<httplib::Request> requests;

  Receiver() {
    server.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mutex);
      requests.push_back(req);
      res.status = status.load();
      res.set_content("{\"ok\": true}", "application/json");
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
    while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~Receiver() {
    server.stop();
    thread.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/hook"; }
  // Options allowing this receiver, and a closed port for connection trouble.
  WebhookOptions allowing() const {
    WebhookOptions o;
    o.allowlist = {"http://127.0.0.1:" + std::to_string(port) + "/hook", "http://127.0.0.1:1"};
    return o;
  }
  std::size_t received() {
    std::lock_guard lock(mutex);
    return requests.size();
  }
};

notify::Posting posting(const std::string& url) {
  notify::Posting p;
  p.posting_id = "0b9f1c36-5d8e-5f0a-9a51-1d3d2e7c4b10";
  p.event_id = "req-1";
  p.event_type = "notification_requested";
  p.channel = notify::Channel::kWebhook;
  p.template_name = "email/generic";
  p.recipient = {"u1", url, "Ann", "UTC", "en"};
  p.content = {"Hello", "text", "<p>html</p>"};
  p.event_time = *notify::parse_iso8601("2026-11-23T10:00:00Z");
  p.created_at = p.event_time;
  p.expires_at = p.event_time + std::chrono::hours(1);
  return p;
}

}  // namespace

TEST_CASE("webhook: the rendered posting is POSTed as JSON with an idempotency key") {
  Receiver r;
  WebhookSender sender(r.allowing());
  const auto result = sender.send(posting(r.url()));
  CHECK(result.status == SendStatus::kSent);
  CHECK(result.smtp_code == 200);
  REQUIRE(r.requests.size() == 1);
  const auto& req = r.requests[0];
  CHECK(req.get_header_value("Content-Type") == "application/json");
  CHECK(req.get_header_value("Idempotency-Key") == "0b9f1c36-5d8e-5f0a-9a51-1d3d2e7c4b10");
  const auto body = nlohmann::json::parse(req.body);
  CHECK(body["posting_id"] == "0b9f1c36-5d8e-5f0a-9a51-1d3d2e7c4b10");
  CHECK(body["subject"] == "Hello");
  CHECK(body["event"]["type"] == "notification_requested");
  CHECK(body["recipient"]["user_id"] == "u1");
}

TEST_CASE("webhook: 5xx, 429 and connection trouble are transient; other 4xx permanent") {
  Receiver r;
  WebhookSender sender(r.allowing());
  r.status = 503;
  CHECK(sender.send(posting(r.url())).status == SendStatus::kTransient);
  r.status = 429;
  CHECK(sender.send(posting(r.url())).status == SendStatus::kTransient);
  r.status = 404;
  const auto gone = sender.send(posting(r.url()));
  CHECK(gone.status == SendStatus::kPermanent);
  CHECK(gone.smtp_code == 404);
  CHECK(gone.detail.rfind("HTTP 404", 0) == 0);
  r.status = 302;  // redirects are not followed
  CHECK(sender.send(posting(r.url())).status == SendStatus::kPermanent);
  CHECK(sender.send(posting("http://127.0.0.1:1/hook")).status == SendStatus::kTransient);
  CHECK(sender.send(posting("ftp://127.0.0.1/hook")).status == SendStatus::kPermanent);
}

TEST_CASE("webhook: a URL outside WEBHOOK_URL_ALLOWLIST is refused for good, nothing is sent") {
  Receiver r;
  WebhookSender sender(r.allowing());
  const std::string other_port = "http://127.0.0.1:" + std::to_string(r.port + 1) + "/hook";
  for (const std::string& url :
       {"http://127.0.0.1:" + std::to_string(r.port) + "/other", other_port,
        "http://localhost:" + std::to_string(r.port) + "/hook",
        "http://u@127.0.0.1:" + std::to_string(r.port) + "/hook",
        "http://127.0.0.1:" + std::to_string(r.port) + "/hook/%2e%2e/admin",
        std::string("ftp://127.0.0.1/hook"), std::string("")}) {
    CAPTURE(url);
    const auto refused = sender.send(posting(url));
    CHECK(refused.status == SendStatus::kPermanent);
    CHECK(refused.smtp_code == 0);
    CHECK(refused.detail.rfind("webhook URL not allowed by WEBHOOK_URL_ALLOWLIST: ", 0) == 0);
  }
  // An empty allowlist allows nothing, like the ETL's.
  WebhookSender closed({});
  const auto refused = closed.send(posting(r.url()));
  CHECK(refused.status == SendStatus::kPermanent);
  CHECK(r.received() == 0);
  // A long URL is quoted shortened.
  const auto long_url = sender.send(posting("http://evil.example/" + std::string(5000, 'x')));
  CHECK(long_url.detail.size() < 300);
  // Below the allowlisted path: sent.
  CHECK(sender.send(posting(r.url())).status == SendStatus::kSent);
  CHECK(r.received() == 1);
}
