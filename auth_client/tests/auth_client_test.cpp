// auth::Client against an in-process HTTP server on 127.0.0.1 (loopback only, fast).

#include <doctest/doctest.h>
#include <httplib.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "auth_client/auth_client.hpp"
#include "fake_auth.hpp"

using namespace auth_test;

TEST_CASE("decode_user fills defaults and requires id and email") {
  auto u = auth::decode_user(nlohmann::json::parse(R"({"id": 42, "email": "x@example.com"})"));
  CHECK(u.id == "42");
  CHECK(u.email == "x@example.com");
  CHECK(u.first_name.empty());
  CHECK(u.email_notifications);
  CHECK(u.active);

  auto inactive = auth::decode_user(
      nlohmann::json::parse(R"({"id":"a","email":"a@b.c","is_active":false,"locale":null})"));
  CHECK_FALSE(inactive.active);
  CHECK(inactive.locale.empty());

  CHECK_THROWS_AS(auth::decode_user(nlohmann::json::parse(R"({"email":"a@b.c"})")),
                  auth::InvalidUser);
  CHECK_THROWS_AS(auth::decode_user(nlohmann::json::parse(R"({"id":"a"})")), auth::InvalidUser);
  CHECK_THROWS_AS(auth::decode_user(nlohmann::json::parse(R"({"id":"a","email":"a@b.c",
      "active":"yes"})")),
                  auth::InvalidUser);
  CHECK_THROWS_AS(auth::decode_user(nlohmann::json::parse("[]")), auth::InvalidUser);

  auto round = auth::decode_user(auth::encode_user(u));
  CHECK(round.id == u.id);
  CHECK(round.email == u.email);
}

TEST_CASE("a found user is decoded, with the Bearer token and Accept header sent") {
  FakeAuth fake;
  std::mutex mu;
  std::string auth_header, accept_header, path;
  fake.server().Get(R"(/api/v1/users/(.+))",
                    [&](const httplib::Request& req, httplib::Response& res) {
                      std::lock_guard lock(mu);
                      auth_header = req.get_header_value("Authorization");
                      accept_header = req.get_header_value("Accept");
                      path = req.matches[1];
                      res.set_content(kAlice, "application/json");
                    });
  fake.start();

  RecordedSleeps sleeps;
  auto opts = options_for(fake, sleeps);
  opts.token = "s3cret";
  auth::Client client(opts);
  auto r = client.get_user("u-1");
  REQUIRE(r.status == auth::LookupStatus::kFound);
  REQUIRE(r.user.has_value());
  CHECK(r.user->id == "u-1");
  CHECK(r.user->email == "alice@example.com");
  CHECK(r.user->first_name == "Alice");
  CHECK(r.user->last_name == "Liddell");
  CHECK(r.user->timezone == "Europe/Berlin");
  CHECK(r.user->locale == "de-DE");
  CHECK_FALSE(r.user->email_notifications);
  CHECK(r.user->active);
  CHECK(r.attempts == 1);
  CHECK(r.http_status == 200);
  CHECK(sleeps.delays.empty());

  std::lock_guard lock(mu);
  CHECK(auth_header == "Bearer s3cret");
  CHECK(accept_header == "application/json");
  CHECK(path == "u-1");
}

TEST_CASE("no Authorization header without a token; the id is URL-escaped") {
  FakeAuth fake;
  std::mutex mu;
  bool has_auth = true;
  std::string target;
  fake.server().Get(R"(/api/v1/users/(.+))",
                    [&](const httplib::Request& req, httplib::Response& res) {
                      std::lock_guard lock(mu);
                      has_auth = req.has_header("Authorization");
                      target = req.matches[1];
                      res.set_content(kAlice, "application/json");
                    });
  fake.start();
  RecordedSleeps sleeps;
  auth::Client client(options_for(fake, sleeps));
  auto r = client.get_user("a.b~c_D-1");
  CHECK(r.status == auth::LookupStatus::kFound);
  std::lock_guard lock(mu);
  CHECK_FALSE(has_auth);
  // The whole id arrived as one segment.
  CHECK(target == "a.b~c_D-1");
}

TEST_CASE("an id that could change the URL is refused without any request") {
  FakeAuth fake;
  std::atomic<int> calls{0};
  fake.server().Get(R"(/api/v1/.*)", [&](const httplib::Request&, httplib::Response& res) {
    ++calls;
    res.set_content(kAlice, "application/json");
  });
  fake.start();
  RecordedSleeps sleeps;
  auth::Client client(options_for(fake, sleeps));
  for (const std::string& id :
       std::vector<std::string>{"..", ".", "a/b", "%2e%2e", "a?b", "a#b", "a b", "a\tb", "\x01",
                                "../../admin", std::string(129, 'a')}) {
    CAPTURE(id);
    const auto r = client.get_user(id);
    CHECK(r.status == auth::LookupStatus::kUnknownUser);
    CHECK(r.error.rfind("user id not allowed: ", 0) == 0);
    CHECK(r.error.size() < 100);
  }
  CHECK(client.get_user("a\nb").error == "user id not allowed: a?b");
  CHECK(calls == 0);
  CHECK(sleeps.delays.empty());
}

TEST_CASE("404 means an unknown user, without retries") {
  FakeAuth fake;
  std::atomic<int> calls{0};
  fake.server().Get(R"(/api/v1/users/(.+))", [&](const httplib::Request&, httplib::Response& res) {
    ++calls;
    res.status = 404;
    res.set_content(R"({"detail":"user not found"})", "application/json");
  });
  fake.start();
  RecordedSleeps sleeps;
  auth::Client client(options_for(fake, sleeps));
  auto r = client.get_user("nobody");
  CHECK(r.status == auth::LookupStatus::kUnknownUser);
  CHECK_FALSE(r.user.has_value());
  CHECK(r.attempts == 1);
  CHECK(r.http_status == 404);
  CHECK(calls == 1);
  CHECK(sleeps.delays.empty());
}

TEST_CASE("422 for a malformed id is an unknown user; 401 is unavailable with a clear error") {
  FakeAuth fake;
  fake.server().Get(R"(/api/v1/users/(.+))",
                    [&](const httplib::Request& req, httplib::Response& res) {
                      res.status = req.matches[1] == "bad" ? 422 : 401;
                    });
  fake.start();
  RecordedSleeps sleeps;
  auth::Client client(options_for(fake, sleeps));
  auto bad = client.get_user("bad");
  CHECK(bad.status == auth::LookupStatus::kUnknownUser);
  auto denied = client.get_user("u-1");
  CHECK(denied.status == auth::LookupStatus::kUnavailable);
  CHECK(denied.attempts == 1);
  CHECK(denied.http_status == 401);
  CHECK(denied.error.find("401") != std::string::npos);
  CHECK(denied.error.find("token") != std::string::npos);
}

TEST_CASE("503 twice then 200: found on the third attempt, with growing delays") {
  FakeAuth fake;
  std::atomic<int> calls{0};
  fake.server().Get(R"(/api/v1/users/(.+))", [&](const httplib::Request&, httplib::Response& res) {
    if (++calls <= 2) {
      res.status = 503;
      return;
    }
    res.set_content(kAlice, "application/json");
  });
  fake.start();
  RecordedSleeps sleeps;
  auto opts = options_for(fake, sleeps);
  opts.backoff = 100ms;
  auth::Client client(opts);
  auto r = client.get_user("u-1");
  CHECK(r.status == auth::LookupStatus::kFound);
  CHECK(r.attempts == 3);
  CHECK(calls == 3);
  REQUIRE(sleeps.delays.size() == 2);
  CHECK(sleeps.delays[0] == 100ms);
  CHECK(sleeps.delays[1] == 200ms);
}

TEST_CASE("jitter adds at most a fifth of the delay") {
  FakeAuth fake;
  fake.server().Get(R"(/api/v1/users/(.+))",
                    [&](const httplib::Request&, httplib::Response& res) { res.status = 502; });
  fake.start();
  RecordedSleeps sleeps;
  auto opts = options_for(fake, sleeps);
  opts.backoff = 100ms;
  opts.max_attempts = 4;
  opts.jitter = [] { return 0.5; };
  auth::Client client(opts);
  auto r = client.get_user("u-1");
  CHECK(r.status == auth::LookupStatus::kUnavailable);
  REQUIRE(sleeps.delays.size() == 3);
  CHECK(sleeps.delays[0] == 110ms);
  CHECK(sleeps.delays[1] == 220ms);
  CHECK(sleeps.delays[2] == 440ms);
}

TEST_CASE("500 always: unavailable after max_attempts") {
  FakeAuth fake;
  std::atomic<int> calls{0};
  fake.server().Get(R"(/api/v1/users/(.+))", [&](const httplib::Request&, httplib::Response& res) {
    ++calls;
    res.status = 500;
  });
  fake.start();
  RecordedSleeps sleeps;
  auto opts = options_for(fake, sleeps);
  opts.max_attempts = 3;
  auth::Client client(opts);
  auto r = client.get_user("u-1");
  CHECK(r.status == auth::LookupStatus::kUnavailable);
  CHECK(r.attempts == 3);
  CHECK(r.http_status == 500);
  CHECK(calls == 3);
  CHECK(sleeps.delays.size() == 2);
  CHECK(r.error.find("500") != std::string::npos);
}

TEST_CASE("a server slower than request_timeout: unavailable") {
  FakeAuth fake;
  fake.server().Get(R"(/api/v1/users/(.+))", [&](const httplib::Request&, httplib::Response& res) {
    std::this_thread::sleep_for(400ms);
    res.set_content(kAlice, "application/json");
  });
  fake.start();
  RecordedSleeps sleeps;
  auto opts = options_for(fake, sleeps);
  opts.request_timeout = 200ms;
  opts.max_attempts = 1;
  auth::Client client(opts);
  const auto start = std::chrono::steady_clock::now();
  auto r = client.get_user("u-1");
  CHECK(std::chrono::steady_clock::now() - start < 390ms);
  CHECK(r.status == auth::LookupStatus::kUnavailable);
  CHECK(r.http_status == 0);
  CHECK(r.error.find("request failed") != std::string::npos);
}

TEST_CASE("a 200 that is not a user within limits: the user is as good as unknown") {
  FakeAuth fake;
  fake.server().Get(R"(/api/v1/users/(.+))",
                    [&](const httplib::Request& req, httplib::Response& res) {
                      if (req.matches[1] == "broken") {
                        res.set_content("{\"id\": \"u-1\", ", "application/json");
                      } else {
                        res.set_content(R"({"id":"u-1"})", "application/json");
                      }
                    });
  fake.start();
  RecordedSleeps sleeps;
  auth::Client client(options_for(fake, sleeps));
  // Asking again gives the same answer: refusing it keeps one bad record from stalling events.
  auto broken = client.get_user("broken");
  CHECK(broken.status == auth::LookupStatus::kUnknownUser);
  CHECK(broken.error == "invalid user in response: user: not valid JSON");
  CHECK(broken.attempts == 1);
  auto incomplete = client.get_user("incomplete");
  CHECK(incomplete.status == auth::LookupStatus::kUnknownUser);
  CHECK(incomplete.error.find("email") != std::string::npos);
}

TEST_CASE("connection refused: unavailable after retries") {
  const int port = unused_port();
  RecordedSleeps sleeps;
  auth::ClientOptions opts;
  opts.base_url = "http://127.0.0.1:" + std::to_string(port) + "/";
  opts.sleep = sleeps.fn();
  opts.jitter = [] { return 0.0; };
  opts.max_attempts = 2;
  opts.request_timeout = 1000ms;
  auth::Client client(opts);
  auto r = client.get_user("u-1");
  CHECK(r.status == auth::LookupStatus::kUnavailable);
  CHECK(r.attempts == 2);
  CHECK(r.http_status == 0);
  CHECK(sleeps.delays.size() == 1);
}

TEST_CASE("one client, many lookups: the connection is reused") {
  FakeAuth fake;
  std::mutex mu;
  std::vector<int> remote_ports;
  fake.server().Get(R"(/api/v1/users/(.+))",
                    [&](const httplib::Request& req, httplib::Response& res) {
                      std::lock_guard lock(mu);
                      remote_ports.push_back(req.remote_port);
                      res.set_content(kAlice, "application/json");
                    });
  fake.start();
  RecordedSleeps sleeps;
  auth::Client client(options_for(fake, sleeps));
  for (int i = 0; i < 3; ++i) CHECK(client.get_user("u-1").status == auth::LookupStatus::kFound);
  std::lock_guard lock(mu);
  REQUIRE(remote_ports.size() == 3);
  CHECK(remote_ports[0] == remote_ports[1]);
  CHECK(remote_ports[1] == remote_ports[2]);
}

TEST_CASE("user records are decoded within limits: nesting, one value, field sizes") {
  const std::string good = R"({"id": "u-1", "email": "a@example.com", "first_name": "Ann"})";
  CHECK(auth::parse_user(good).first_name == "Ann");
  CHECK(auth::parse_user(R"({"id": 42, "email": "a@example.com"})").id == "42");
  CHECK_THROWS_WITH_AS(auth::parse_user(good + std::string(1, '\0') + "x"),
                       doctest::Contains("NUL byte"), auth::InvalidUser);
  CHECK_THROWS_WITH_AS(auth::parse_user(good + "{}"), "user: not valid JSON", auth::InvalidUser);
  CHECK_THROWS_WITH_AS(
      auth::parse_user(R"({"id": "u", "email": "a@b", "x": )" + std::string(100000, '[')),
      "user: JSON nested deeper than MAX_JSON_DEPTH=64", auth::InvalidUser);
  CHECK_THROWS_WITH_AS(auth::parse_user(R"({"id": "u", "email": "a@b", "first_name": ")" +
                                        std::string(300, 'n') + "\"}"),
                       "user: field 'first_name' is longer than 256 bytes", auth::InvalidUser);
  CHECK_THROWS_WITH_AS(
      auth::parse_user(R"({"id": "u", "email": ")" + std::string(255, 'e') + "\"}"),
      "user: field 'email' is longer than 254 bytes", auth::InvalidUser);
  CHECK_THROWS_AS(auth::parse_user(R"({"id": 1.5, "email": "a@b"})"), auth::InvalidUser);
}

TEST_CASE("pages are decoded within limits; integers never cut") {
  CHECK(auth::parse_page(R"({"items": [], "page_number": 1, "page_size": 5, "total": 0})")
            .page_size == 5);
  CHECK_THROWS_WITH_AS(
      auth::parse_page(R"({"items": [], "page_number": 4294967297, "page_size": 5, "total": 0})"),
      "page: field 'page_number' out of range", auth::InvalidPage);
  CHECK_THROWS_WITH_AS(
      auth::parse_page(
          R"({"items": [], "page_number": 1, "page_size": 5, "total": 18446744073709551615})"),
      "page: field 'total' is not an integer", auth::InvalidPage);
  CHECK_THROWS_WITH_AS(auth::parse_page(R"({"items": )" + std::string(1000, '[')),
                       "page: JSON nested deeper than MAX_JSON_DEPTH=64", auth::InvalidPage);
}
