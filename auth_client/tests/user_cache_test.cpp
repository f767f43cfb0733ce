// The get_user cache: TTL on an injected clock, LRU bound, only found users kept, stats.

#include <doctest/doctest.h>
#include <httplib.h>

#include <map>
#include <mutex>
#include <string>

#include "auth_client/auth_client.hpp"
#include "fake_auth.hpp"

using namespace auth_test;

namespace {

// Users "u-*" exist; "gone" is 404; "flaky" is 503. Counts calls per id.
class CountingAuth {
 public:
  CountingAuth() {
    fake_.server().Get(
        R"(/api/v1/users/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
          const std::string id = req.matches[1];
          {
            std::lock_guard lock(mu_);
            ++calls_[id];
          }
          if (id == "gone") {
            res.status = 404;
          } else if (id == "flaky") {
            res.status = 503;
          } else {
            res.set_content(R"({"id":")" + id + R"(","email":")" + id + R"(@example.com"})",
                            "application/json");
          }
        });
    fake_.start();
  }
  const FakeAuth& fake() const { return fake_; }
  int calls(const std::string& id) {
    std::lock_guard lock(mu_);
    return calls_[id];
  }

 private:
  FakeAuth fake_;
  std::mutex mu_;
  std::map<std::string, int> calls_;
};

struct FakeClock {
  std::chrono::steady_clock::time_point now{};
  std::function<std::chrono::steady_clock::time_point()> fn() {
    return [this] { return now; };
  }
};

}  // namespace

TEST_CASE("a found user is served from the cache until the TTL passes") {
  CountingAuth auth_service;
  RecordedSleeps sleeps;
  FakeClock clock;
  auto opts = options_for(auth_service.fake(), sleeps);
  opts.cache_ttl = 60s;
  opts.clock = clock.fn();
  auth::Client client(opts);

  auto first = client.get_user("u-1");
  REQUIRE(first.status == auth::LookupStatus::kFound);
  CHECK_FALSE(first.cached);
  CHECK(first.attempts == 1);

  clock.now += 59s;
  auto second = client.get_user("u-1");
  REQUIRE(second.status == auth::LookupStatus::kFound);
  CHECK(second.cached);
  CHECK(second.attempts == 0);
  CHECK(second.user->email == "u-1@example.com");
  CHECK(auth_service.calls("u-1") == 1);

  // Exactly one TTL after it was stored, the entry has expired.
  clock.now += 1s;
  auto third = client.get_user("u-1");
  CHECK(third.status == auth::LookupStatus::kFound);
  CHECK_FALSE(third.cached);
  CHECK(auth_service.calls("u-1") == 2);

  const auto s = client.stats();
  CHECK(s.requests == 2);
  CHECK(s.cache_hits == 1);
  CHECK(s.cache_misses == 2);
}

TEST_CASE("unknown and unavailable users are not cached") {
  CountingAuth auth_service;
  RecordedSleeps sleeps;
  FakeClock clock;
  auto opts = options_for(auth_service.fake(), sleeps);
  opts.cache_ttl = 60s;
  opts.clock = clock.fn();
  opts.max_attempts = 1;
  auth::Client client(opts);
  for (int i = 0; i < 2; ++i) {
    CHECK(client.get_user("gone").status == auth::LookupStatus::kUnknownUser);
    CHECK(client.get_user("flaky").status == auth::LookupStatus::kUnavailable);
  }
  CHECK(auth_service.calls("gone") == 2);
  CHECK(auth_service.calls("flaky") == 2);
  CHECK(client.stats().cache_hits == 0);
  CHECK(client.stats().requests == 4);
}

TEST_CASE("a full cache evicts the least recently used user") {
  CountingAuth auth_service;
  RecordedSleeps sleeps;
  FakeClock clock;
  auto opts = options_for(auth_service.fake(), sleeps);
  opts.cache_ttl = 60s;
  opts.cache_capacity = 2;
  opts.clock = clock.fn();
  auth::Client client(opts);

  client.get_user("u-a");
  client.get_user("u-b");
  CHECK(client.get_user("u-a").cached);  // u-a is now the most recently used
  client.get_user("u-c");                // evicts u-b
  CHECK(client.get_user("u-a").cached);
  CHECK(client.get_user("u-c").cached);
  CHECK_FALSE(client.get_user("u-b").cached);  // asked again, evicts u-a
  CHECK_FALSE(client.get_user("u-a").cached);
  CHECK(auth_service.calls("u-a") == 2);
  CHECK(auth_service.calls("u-b") == 2);
  CHECK(auth_service.calls("u-c") == 1);
}

TEST_CASE("cache_ttl 0 or cache_capacity 0 turn the cache off") {
  CountingAuth auth_service;
  RecordedSleeps sleeps;
  for (const bool by_ttl : {true, false}) {
    CAPTURE(by_ttl);
    auto opts = options_for(auth_service.fake(), sleeps);
    opts.cache_ttl = by_ttl ? 0s : 60s;
    opts.cache_capacity = by_ttl ? 10 : 0;
    auth::Client client(opts);
    for (int i = 0; i < 3; ++i) CHECK_FALSE(client.get_user("u-off").cached);
    CHECK(client.stats().requests == 3);
    CHECK(client.stats().cache_hits == 0);
    CHECK(client.stats().cache_misses == 0);
  }
  CHECK(auth_service.calls("u-off") == 6);
}

TEST_CASE("the cache is on by default, keyed by id") {
  CountingAuth auth_service;
  auth::ClientOptions opts;
  opts.base_url = auth_service.fake().url();
  auth::Client client(opts);
  CHECK_FALSE(client.get_user("u-1").cached);
  CHECK_FALSE(client.get_user("u-2").cached);
  CHECK(client.get_user("u-1").cached);
  CHECK(client.get_user("u-2").user->id == "u-2");
  CHECK(auth_service.calls("u-1") == 1);
  CHECK(client.stats().cache_hits == 2);
  // Moving the client keeps its cache and counters.
  auth::Client moved = std::move(client);
  CHECK(moved.get_user("u-1").cached);
  CHECK(moved.stats().cache_hits == 3);
}
