// Client::fetch_json against in-process HTTP servers on 127.0.0.1.

#include <doctest/doctest.h>
#include <httplib.h>

#include <atomic>
#include <mutex>
#include <string>

#include "auth_client/auth_client.hpp"
#include "fake_auth.hpp"

using namespace auth_test;

namespace {

// Records the headers of the last request to /context.
struct Seen {
  std::mutex mu;
  std::string authorization = "(none)";
  std::string accept;
  int calls = 0;
};

void serve_context(FakeAuth& fake, Seen& seen) {
  fake.server().Get("/context", [&seen](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(seen.mu);
    ++seen.calls;
    seen.authorization =
        req.has_header("Authorization") ? req.get_header_value("Authorization") : "(none)";
    seen.accept = req.get_header_value("Accept");
    res.set_content(R"({"title":"Casablanca","year":1942})", "application/json");
  });
}

}  // namespace

TEST_CASE("fetch_json: the token goes only to base_url's origin") {
  FakeAuth auth_service, content;
  Seen auth_seen, content_seen;
  serve_context(auth_service, auth_seen);
  serve_context(content, content_seen);
  auth_service.start();
  content.start();
  RecordedSleeps sleeps;
  auto opts = options_for(auth_service, sleeps);
  opts.token = "s3cret";
  auth::Client client(opts);

  auto other = client.fetch_json(content.url() + "/context", 1024);
  REQUIRE(other.status == auth::FetchStatus::kOk);
  CHECK(other.body["title"] == "Casablanca");
  CHECK(other.body["year"] == 1942);
  CHECK(other.http_status == 200);
  CHECK(other.attempts == 1);
  CHECK(other.error.empty());

  // The same host on another port is another origin; "localhost" is another host.
  auto home = client.fetch_json(auth_service.url() + "/context", 1024);
  REQUIRE(home.status == auth::FetchStatus::kOk);
  auto by_name = client.fetch_json(
      "http://localhost:" + std::to_string(auth_service.port()) + "/context", 1024);
  CHECK(by_name.status == auth::FetchStatus::kOk);

  {
    std::lock_guard lock(content_seen.mu);
    CHECK(content_seen.authorization == "(none)");
    CHECK(content_seen.accept == "application/json");
  }
  std::lock_guard lock(auth_seen.mu);
  CHECK(auth_seen.calls == 2);
  // The last call went to "localhost": no token either.
  CHECK(auth_seen.authorization == "(none)");
}

TEST_CASE("fetch_json: with base_url's origin the token is sent") {
  FakeAuth auth_service;
  Seen seen;
  serve_context(auth_service, seen);
  auth_service.start();
  RecordedSleeps sleeps;
  auto opts = options_for(auth_service, sleeps);
  opts.token = "s3cret";
  auth::Client client(opts);
  CHECK(client.fetch_json(auth_service.url() + "/context", 1024).status == auth::FetchStatus::kOk);
  std::lock_guard lock(seen.mu);
  CHECK(seen.authorization == "Bearer s3cret");
}

TEST_CASE("fetch_json: a body past max_bytes is kTooLarge, with or without Content-Length") {
  FakeAuth fake;
  const std::string big = "[" + std::string(5000, ' ') + "1]";  // valid JSON, 5003 bytes
  fake.server().Get("/sized", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(big, "application/json");
  });
  fake.server().Get("/chunked", [&](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider(
        "application/json", [&](size_t offset, httplib::DataSink& sink) {
          if (offset < big.size()) {
            sink.write(big.data() + offset, std::min<size_t>(1000, big.size() - offset));
          } else {
            sink.done();
          }
          return true;
        });
  });
  fake.start();
  RecordedSleeps sleeps;
  auth::Client client(options_for(fake, sleeps));

  for (const char* path : {"/sized", "/chunked"}) {
    CAPTURE(path);
    auto over = client.fetch_json(fake.url() + path, big.size() - 1);
    CHECK(over.status == auth::FetchStatus::kTooLarge);
    CHECK(over.attempts == 1);
    CHECK(over.error.find(std::to_string(big.size() - 1)) != std::string::npos);
    CHECK(over.body.is_null());

    auto exact = client.fetch_json(fake.url() + path, big.size());
    CHECK(exact.status == auth::FetchStatus::kOk);
    CHECK(exact.body == nlohmann::json::array({1}));
  }
  CHECK(sleeps.delays.empty());
}

TEST_CASE("fetch_json does not follow redirects") {
  FakeAuth internal, outside;
  std::atomic<int> internal_calls{0};
  internal.server().Get("/admin", [&](const httplib::Request&, httplib::Response& res) {
    ++internal_calls;
    res.set_content("{}", "application/json");
  });
  internal.start();
  outside.server().Get("/bounce", [&](const httplib::Request&, httplib::Response& res) {
    res.set_redirect(internal.url() + "/admin", 302);
  });
  outside.start();
  RecordedSleeps sleeps;
  auth::Client client(options_for(outside, sleeps));
  auto r = client.fetch_json(outside.url() + "/bounce", 1024);
  CHECK(r.status == auth::FetchStatus::kBadResponse);
  CHECK(r.http_status == 302);
  CHECK(r.attempts == 1);
  CHECK(r.error.find("not followed") != std::string::npos);
  CHECK(r.error.find(internal.url() + "/admin") != std::string::npos);
  CHECK(internal_calls == 0);
}

TEST_CASE("fetch_json: 4xx and non-JSON are permanent, 5xx and 429 transient") {
  FakeAuth fake;
  std::atomic<int> flaky{0}, throttled{0}, missing{0};
  fake.server().Get("/missing", [&](const httplib::Request&, httplib::Response& res) {
    ++missing;
    res.status = 404;
  });
  fake.server().Get("/html", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("<html>hello</html>", "text/html");
  });
  fake.server().Get("/empty",
                    [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
  fake.server().Get("/flaky", [&](const httplib::Request&, httplib::Response& res) {
    if (++flaky <= 2) {
      res.status = 503;
      return;
    }
    res.set_content(R"({"ok":true})", "application/json");
  });
  fake.server().Get("/throttled", [&](const httplib::Request&, httplib::Response& res) {
    ++throttled;
    res.status = 429;
  });
  fake.start();
  RecordedSleeps sleeps;
  auto opts = options_for(fake, sleeps);
  opts.backoff = 100ms;
  opts.max_attempts = 3;
  auth::Client client(opts);

  auto gone = client.fetch_json(fake.url() + "/missing", 1024);
  CHECK(gone.status == auth::FetchStatus::kBadResponse);
  CHECK(gone.http_status == 404);
  CHECK(gone.attempts == 1);
  CHECK(missing == 1);

  auto html = client.fetch_json(fake.url() + "/html", 1024);
  CHECK(html.status == auth::FetchStatus::kBadResponse);
  CHECK(html.error == "HTTP 200: body is not valid JSON");
  CHECK(client.fetch_json(fake.url() + "/empty", 1024).status == auth::FetchStatus::kBadResponse);
  CHECK(sleeps.delays.empty());

  auto recovered = client.fetch_json(fake.url() + "/flaky", 1024);
  CHECK(recovered.status == auth::FetchStatus::kOk);
  CHECK(recovered.attempts == 3);
  CHECK(recovered.body["ok"] == true);
  CHECK(sleeps.delays == std::vector<std::chrono::milliseconds>{100ms, 200ms});

  auto busy = client.fetch_json(fake.url() + "/throttled", 1024);
  CHECK(busy.status == auth::FetchStatus::kUnavailable);
  CHECK(busy.attempts == 3);
  CHECK(busy.http_status == 429);
  CHECK(throttled == 3);
  CHECK(client.stats().requests == 1 + 1 + 1 + 3 + 3);
}

TEST_CASE("fetch_json: timeouts and refused connections are unavailable after retries") {
  FakeAuth fake;
  fake.server().Get("/slow", [](const httplib::Request&, httplib::Response& res) {
    std::this_thread::sleep_for(200ms);
    res.set_content("{}", "application/json");
  });
  fake.start();
  RecordedSleeps sleeps;
  auto opts = options_for(fake, sleeps);
  opts.request_timeout = 60ms;
  opts.max_attempts = 2;
  auth::Client client(opts);

  auto slow = client.fetch_json(fake.url() + "/slow", 1024);
  CHECK(slow.status == auth::FetchStatus::kUnavailable);
  CHECK(slow.attempts == 2);
  CHECK(slow.http_status == 0);

  auto refused =
      client.fetch_json("http://127.0.0.1:" + std::to_string(unused_port()) + "/x", 1024);
  CHECK(refused.status == auth::FetchStatus::kUnavailable);
  CHECK(refused.attempts == 2);
  CHECK(refused.error.find("request failed") != std::string::npos);
}

TEST_CASE("fetch_json refuses what is not an http(s) URL, without a request") {
  FakeAuth fake;
  fake.start();
  RecordedSleeps sleeps;
  auth::Client client(options_for(fake, sleeps));
  for (const char* url : {"file:///etc/passwd", "gopher://127.0.0.1/", "junk", ""}) {
    CAPTURE(url);
    auto r = client.fetch_json(url, 1024);
    CHECK(r.status == auth::FetchStatus::kBadResponse);
    CHECK(r.attempts == 0);
    CHECK(r.error.find("not an http(s) URL") != std::string::npos);
  }
  CHECK(client.stats().requests == 0);
  CHECK(auth::to_string(auth::FetchStatus::kTooLarge) == "too_large");
}

TEST_CASE("a base_url that is not an http(s) URL is refused at construction") {
  auth::ClientOptions o;
  o.base_url = "file:///etc/passwd";
  CHECK_THROWS_AS(auth::Client{o}, std::invalid_argument);
  o.base_url = "auth-service:8081";
  CHECK_THROWS_AS(auth::Client{o}, std::invalid_argument);
}
