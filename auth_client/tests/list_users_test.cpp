// Client::list_users against an in-process HTTP server on 127.0.0.1.

#include <doctest/doctest.h>
#include <httplib.h>

#include <atomic>
#include <mutex>
#include <string>

#include "auth_client/auth_client.hpp"
#include "auth_client/url.hpp"
#include "fake_auth.hpp"

using namespace auth_test;
using nlohmann::json;

namespace {

json user_json(int i) {
  return {{"id", "u-" + std::to_string(i)}, {"email", "user" + std::to_string(i) + "@example.com"}};
}

// A listing of `total` users, paged as the Auth service does.
void serve_listing(FakeAuth& fake, int total, std::mutex& mu, std::string& last_query,
                   std::string& last_auth) {
  fake.server().Get(
      "/api/v1/users/", [&, total](const httplib::Request& req, httplib::Response& res) {
        const int number = std::stoi(req.get_param_value("page_number"));
        const int size = std::stoi(req.get_param_value("page_size"));
        json items = json::array();
        for (int i = (number - 1) * size; i < std::min(total, number * size); ++i) {
          items.push_back(user_json(i));
        }
        {
          std::lock_guard lock(mu);
          last_auth = req.get_header_value("Authorization");
          last_query =
              req.get_param_value("is_active") + "," + req.get_param_value("email_notifications");
        }
        res.set_content(
            json{{"items", items}, {"page_number", number}, {"page_size", size}, {"total", total}}
                .dump(),
            "application/json");
      });
}

}  // namespace

TEST_CASE("list_users pages through a listing with the token and the filters") {
  FakeAuth fake;
  std::mutex mu;
  std::string query, authorization;
  serve_listing(fake, 7, mu, query, authorization);
  fake.start();

  RecordedSleeps sleeps;
  auto opts = options_for(fake, sleeps);
  opts.token = "s3cret";
  auth::Client client(opts);

  auto url = auth::with_query_param(
      client.base_url() + "/api/v1/users/?is_active=true&email_notifications=true", "page_size",
      "3");
  REQUIRE(url.has_value());
  std::vector<std::string> ids;
  std::vector<int> numbers;
  for (int n = 1;; ++n) {
    auto page_url = auth::with_query_param(*url, "page_number", std::to_string(n));
    REQUIRE(page_url.has_value());
    auto r = client.list_users(*page_url);
    REQUIRE(r.status == auth::LookupStatus::kFound);
    REQUIRE(r.page.has_value());
    CHECK(r.attempts == 1);
    CHECK(r.http_status == 200);
    CHECK(r.page->page_size == 3);
    CHECK(r.page->total == 7);
    CHECK(r.page->skipped == 0);
    numbers.push_back(r.page->page_number);
    for (const auto& u : r.page->items) ids.push_back(u.id);
    if (!r.page->has_more()) break;
    REQUIRE(n < 10);
  }
  CHECK(numbers == std::vector<int>{1, 2, 3});
  REQUIRE(ids.size() == 7);
  CHECK(ids.front() == "u-0");
  CHECK(ids.back() == "u-6");
  CHECK(client.stats().requests == 3);

  std::lock_guard lock(mu);
  CHECK(authorization == "Bearer s3cret");
  CHECK(query == "true,true");
}

TEST_CASE("a malformed user inside a page is skipped and counted, not fatal") {
  FakeAuth fake;
  fake.server().Get("/api/v1/users/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"items": [
        {"id": "u-1", "email": "a@example.com"},
        {"id": "u-2"},
        "not a user",
        {"id": "u-4", "email": "d@example.com", "active": "yes"},
        {"id": 5, "email": "e@example.com"}],
      "page_number": 1, "page_size": 5, "total": 5})",
                    "application/json");
  });
  fake.start();
  RecordedSleeps sleeps;
  auth::Client client(options_for(fake, sleeps));
  auto r = client.list_users(fake.url() + "/api/v1/users/?page_number=1&page_size=5");
  REQUIRE(r.status == auth::LookupStatus::kFound);
  REQUIRE(r.page.has_value());
  REQUIRE(r.page->items.size() == 2);
  CHECK(r.page->items[0].id == "u-1");
  CHECK(r.page->items[1].id == "5");
  CHECK(r.page->skipped == 3);
  CHECK(r.page->skip_error.find("item 1") != std::string::npos);
  CHECK(r.page->skip_error.find("email") != std::string::npos);
  CHECK_FALSE(r.page->has_more());
}

TEST_CASE("a malformed envelope is unavailable, without retries") {
  FakeAuth fake;
  std::atomic<int> calls{0};
  fake.server().Get("/api/v1/users/", [&](const httplib::Request& req, httplib::Response& res) {
    ++calls;
    const std::string kind = req.get_param_value("kind");
    if (kind == "array") res.set_content("[]", "application/json");
    if (kind == "items") {
      res.set_content(R"({"items": {}, "page_number": 1, "page_size": 5, "total": 0})",
                      "application/json");
    }
    if (kind == "no_items") {
      res.set_content(R"({"page_number": 1, "page_size": 5, "total": 0})", "application/json");
    }
    if (kind == "total") {
      res.set_content(R"({"items": [], "page_number": 1, "page_size": 5, "total": "many"})",
                      "application/json");
    }
    if (kind == "negative") {
      res.set_content(R"({"items": [], "page_number": -1, "page_size": 5, "total": 0})",
                      "application/json");
    }
    if (kind == "truncated") res.set_content(R"({"items": [)", "application/json");
  });
  fake.start();
  RecordedSleeps sleeps;
  auth::Client client(options_for(fake, sleeps));
  const std::pair<const char*, const char*> cases[] = {{"array", "not a JSON object"},
                                                       {"items", "'items' is not an array"},
                                                       {"no_items", "missing field 'items'"},
                                                       {"total", "'total' is not an integer"},
                                                       {"negative", "'page_number' out of range"},
                                                       {"truncated", "page: not valid JSON"}};
  for (const auto& item : cases) {
    const char* const kind = item.first;  // named: CAPTURE cannot take a structured binding
    const char* const message = item.second;
    CAPTURE(kind);
    auto r = client.list_users(fake.url() + "/api/v1/users/?kind=" + kind);
    CHECK(r.status == auth::LookupStatus::kUnavailable);
    CHECK_FALSE(r.page.has_value());
    CHECK(r.attempts == 1);
    CHECK(r.http_status == 200);
    CHECK(r.error.find(message) != std::string::npos);
  }
  CHECK(calls == 6);
  CHECK(sleeps.delays.empty());
}

TEST_CASE("list_users: 404 is kUnknownUser, 422 and 401 unavailable at once, 503 retried") {
  FakeAuth fake;
  std::atomic<int> flaky{0};
  fake.server().Get("/api/v1/users/", [&](const httplib::Request& req, httplib::Response& res) {
    const std::string kind = req.get_param_value("kind");
    if (kind == "404") res.status = 404;
    if (kind == "422") res.status = 422;
    if (kind == "401") res.status = 401;
    if (kind == "flaky") {
      if (++flaky <= 2) {
        res.status = 503;
        return;
      }
      res.set_content(R"({"items": [], "page_number": 9, "page_size": 5, "total": 40})",
                      "application/json");
    }
  });
  fake.start();
  RecordedSleeps sleeps;
  auto opts = options_for(fake, sleeps);
  opts.backoff = 100ms;
  auth::Client client(opts);
  const std::string base = fake.url() + "/api/v1/users/?kind=";

  auto missing = client.list_users(base + "404");
  CHECK(missing.status == auth::LookupStatus::kUnknownUser);
  CHECK(missing.attempts == 1);

  auto rejected = client.list_users(base + "422");
  CHECK(rejected.status == auth::LookupStatus::kUnavailable);
  CHECK(rejected.attempts == 1);
  CHECK(rejected.error.find("rejected the query") != std::string::npos);

  auto denied = client.list_users(base + "401");
  CHECK(denied.status == auth::LookupStatus::kUnavailable);
  CHECK(denied.attempts == 1);
  CHECK(denied.error.find("token") != std::string::npos);
  CHECK(sleeps.delays.empty());

  auto r = client.list_users(base + "flaky");
  REQUIRE(r.status == auth::LookupStatus::kFound);
  CHECK(r.attempts == 3);
  CHECK(sleeps.delays == std::vector<std::chrono::milliseconds>{100ms, 200ms});
  // Past the last page: an empty page ends the paging whatever total claims.
  CHECK(r.page->items.empty());
  CHECK_FALSE(r.page->has_more());
  CHECK(client.stats().requests == 6);
}

TEST_CASE("list_users refuses a URL outside the Auth service: the token stays home") {
  FakeAuth auth_service, other;
  std::atomic<int> other_calls{0};
  other.server().Get("/api/v1/users/", [&](const httplib::Request&, httplib::Response& res) {
    ++other_calls;
    res.set_content(R"({"items": [], "page_number": 1, "page_size": 5, "total": 0})",
                    "application/json");
  });
  auth_service.start();
  other.start();
  RecordedSleeps sleeps;
  auto opts = options_for(auth_service, sleeps);
  opts.token = "s3cret";
  auth::Client client(opts);
  for (const std::string& url :
       {other.url() + "/api/v1/users/", std::string("file:///etc/passwd"), std::string("junk")}) {
    CAPTURE(url);
    auto r = client.list_users(url);
    CHECK(r.status == auth::LookupStatus::kUnavailable);
    CHECK(r.attempts == 0);
    CHECK(r.error.find("not on the Auth service") != std::string::npos);
  }
  CHECK(other_calls == 0);
  CHECK(client.stats().requests == 0);
}

TEST_CASE("list_users: timeouts are retried, then unavailable") {
  FakeAuth fake;
  std::atomic<int> calls{0};
  fake.server().Get("/api/v1/users/", [&](const httplib::Request&, httplib::Response& res) {
    ++calls;
    std::this_thread::sleep_for(200ms);
    res.set_content(R"({"items": [], "page_number": 1, "page_size": 5, "total": 0})",
                    "application/json");
  });
  fake.start();
  RecordedSleeps sleeps;
  auto opts = options_for(fake, sleeps);
  opts.request_timeout = 60ms;
  opts.max_attempts = 2;
  auth::Client client(opts);
  auto r = client.list_users(fake.url() + "/api/v1/users/");
  CHECK(r.status == auth::LookupStatus::kUnavailable);
  CHECK(r.attempts == 2);
  CHECK(r.http_status == 0);
  CHECK(r.error.find("request failed") != std::string::npos);
  CHECK(sleeps.delays.size() == 1);
}
