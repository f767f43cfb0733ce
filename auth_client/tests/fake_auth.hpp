#pragma once
// Test helpers: an in-process HTTP server on 127.0.0.1 (loopback only, fast) and recorders for
// the client's injected sleep.

#include <doctest/doctest.h>
#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "auth_client/auth_client.hpp"

namespace auth_test {

using namespace std::chrono_literals;

// An httplib server on a free loopback port, stopped and joined on destruction.
class FakeAuth {
 public:
  FakeAuth() = default;
  ~FakeAuth() { stop(); }
  httplib::Server& server() { return server_; }

  void start() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // A stop() before the listen loop runs would be lost and the join would hang.
    while (!server_.is_running()) std::this_thread::sleep_for(1ms);
  }
  void stop() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

inline const char* kAlice = R"({"id":"u-1","email":"alice@example.com","first_name":"Alice",
  "last_name":"Liddell","timezone":"Europe/Berlin","locale":"de-DE",
  "email_notifications":false,"active":true})";

struct RecordedSleeps {
  std::vector<std::chrono::milliseconds> delays;
  std::function<void(std::chrono::milliseconds)> fn() {
    return [this](std::chrono::milliseconds d) { delays.push_back(d); };
  }
};

// A port that was free a moment ago and that nothing listens on.
inline int unused_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// No cache, so that every lookup reaches the fake server unless a test asks for one.
inline auth::ClientOptions options_for(const FakeAuth& fake, RecordedSleeps& sleeps) {
  auth::ClientOptions o;
  o.base_url = fake.url();
  o.sleep = sleeps.fn();
  o.jitter = [] { return 0.0; };
  o.request_timeout = 2000ms;
  o.cache_ttl = 0ms;
  return o;
}

}  // namespace auth_test
