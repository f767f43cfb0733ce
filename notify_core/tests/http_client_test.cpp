// notify::http::Client against an in-process server on loopback: what arrives, what is capped,
// and how a request that got no response is classified.

#include <doctest/doctest.h>
#include <httplib.h>

#include <chrono>
#include <string>
#include <thread>

#include "notify/http_client.hpp"

using namespace std::chrono_literals;
using notify::http::Failure;

namespace {

class Server {
 public:
  Server() = default;
  ~Server() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  httplib::Server& routes() { return server_; }
  void start() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(1ms);
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

notify::http::Client client() { return notify::http::Client({1000ms, 2000ms, "notify-test/1"}); }

}  // namespace

TEST_CASE("http client: a GET with headers, then a POST with a body, on one client") {
  Server s;
  s.routes().Get("/get", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content(req.get_header_value("X-Probe") + "|" + req.get_header_value("User-Agent"),
                    "text/plain");
  });
  s.routes().Post("/post", [](const httplib::Request& req, httplib::Response& res) {
    res.status = 201;
    res.set_content("got " + req.body, "text/plain");
  });
  s.start();
  auto http = client();

  notify::http::Request get;
  get.url = s.url("/get");
  get.headers = {"X-Probe: yes"};
  const auto got = http.perform(get);
  REQUIRE(got.arrived());
  CHECK(got.status == 200);
  CHECK(got.body == "yes|notify-test/1");

  notify::http::Request post;
  post.url = s.url("/post");
  post.body = R"({"a":1})";
  post.headers = {"Content-Type: application/json"};
  const auto posted = http.perform(post);
  REQUIRE(posted.arrived());
  CHECK(posted.status == 201);
  CHECK(posted.body == R"(got {"a":1})");

  // And a GET again after the POST: the method does not stick.
  get.headers = {};
  const auto again = http.perform(get);
  CHECK(again.status == 200);
  CHECK(again.body == "|notify-test/1");
}

TEST_CASE("http client: a body past the cap is kTooLarge, or truncated when asked") {
  Server s;
  s.routes().Get("/big", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(5000, 'x'), "text/plain");
  });
  s.routes().Get("/chunked", [](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("text/plain", [](std::size_t, httplib::DataSink& sink) {
      const std::string part(1000, 'y');
      for (int i = 0; i < 5; ++i) sink.write(part.data(), part.size());
      sink.done();
      return true;
    });
  });
  s.start();
  auto http = client();
  for (const char* path : {"/big", "/chunked"}) {
    INFO(path);
    notify::http::Request r;
    r.url = s.url(path);
    r.max_body_bytes = 1024;
    const auto capped = http.perform(r);
    CHECK(capped.too_large());
    CHECK(capped.status == 0);
    CHECK(capped.body.empty());

    r.truncate_body = true;
    const auto truncated = http.perform(r);
    REQUIRE(truncated.arrived());
    CHECK(truncated.status == 200);
    CHECK(truncated.body.size() == 1024);
  }
}

TEST_CASE("http client: a redirect is reported, not followed") {
  Server s;
  bool followed = false;
  s.routes().Get("/moved", [](const httplib::Request&, httplib::Response& res) {
    res.set_redirect("/elsewhere", 302);
  });
  s.routes().Get("/elsewhere",
                 [&](const httplib::Request&, httplib::Response&) { followed = true; });
  s.start();
  auto http = client();
  notify::http::Request r;
  r.url = s.url("/moved");
  const auto moved = http.perform(r);
  REQUIRE(moved.arrived());
  CHECK(moved.status == 302);
  CHECK(moved.redirect == s.url("/elsewhere"));
  CHECK_FALSE(followed);
}

TEST_CASE("http client: no response, classified") {
  auto http = client();
  notify::http::Request r;
  r.url = "http://127.0.0.1:1/nothing-listens";
  const auto refused = http.perform(r);
  CHECK(refused.failure == Failure::kTransient);
  CHECK(refused.status == 0);
  CHECK_FALSE(refused.error.empty());

  r.url = "ftp://127.0.0.1/file";
  CHECK(http.perform(r).failure == Failure::kBadUrl);
  r.url = "not a url";
  CHECK(http.perform(r).failure == Failure::kBadUrl);
}

TEST_CASE("http client: escape keeps only unreserved bytes") {
  CHECK(notify::http::escape("a b/c?d%e~f-g_h.i") == "a%20b%2Fc%3Fd%25e~f-g_h.i");
  CHECK(notify::http::escape("") == "");
}
