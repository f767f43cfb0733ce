// The test harness itself: the broker stack of this run answers on every port it announces, and
// the helpers the other integration tests build on (Process, Inbox, Stack::control) work.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "stack.hpp"

namespace {

using namespace std::chrono_literals;
using notify::testing::Inbox;
using notify::testing::Process;
using notify::testing::Stack;
using notify::testing::unique_name;
using notify::testing::wait_until;

// "amqp://guest:guest@127.0.0.1:5672/%2f", "http://127.0.0.1:8025" or "127.0.0.1:9092"
int port_of(std::string address) {
  if (const auto scheme = address.find("://"); scheme != std::string::npos) {
    address.erase(0, scheme + 3);
  }
  if (const auto at = address.find('@'); at != std::string::npos) address.erase(0, at + 1);
  if (const auto slash = address.find('/'); slash != std::string::npos) address.erase(slash);
  return std::stoi(address.substr(address.rfind(':') + 1));
}

bool accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

std::string log_path(const std::string& name) {
  return Stack::get().value("STACK_DIR") + "/test-logs/" + unique_name(name) + ".log";
}

// One inline command to the stack's Redis ("SET k v", "GET k") and its reply, "\r\n" read as
// "\n" and the last one dropped: "+OK", ":1", "$4\nsent" (a bulk string: length, value), "$-1"
// (none); empty when nothing answers.
std::string redis_command(int port, const std::string& command) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const timeval timeout{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string reply;
  const std::string line = command + "\r\n";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size())) {
    // Small replies: one line, or a bulk string's length line and its value.
    std::array<char, 512> buffer{};
    while (true) {
      const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
      if (n <= 0) break;
      reply.append(buffer.data(), static_cast<std::size_t>(n));
      const bool bulk = reply.front() == '$' && reply.rfind("$-1", 0) != 0;
      const auto lines = static_cast<std::size_t>(std::count(reply.begin(), reply.end(), '\n'));
      if (lines >= (bulk ? 2U : 1U)) break;
    }
  }
  ::close(fd);
  std::erase(reply, '\r');
  if (!reply.empty() && reply.back() == '\n') reply.pop_back();
  return reply;
}

bool has_subject(const Inbox& inbox, const std::string& subject) {
  for (const auto& m : inbox.messages()) {
    if (m.value("subject", "") == subject) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("the stack answers on every port it announces") {
  const auto& stack = Stack::get();
  CHECK(port_of("amqp://guest:guest@127.0.0.1:5672/%2f") == 5672);
  CHECK(accepts(port_of(stack.value("RABBITMQ_URL"))));
  CHECK(accepts(port_of(stack.value("KAFKA_BOOTSTRAP_SERVERS"))));
  CHECK(accepts(std::stoi(stack.value("SMTP_PORT"))));
  CHECK(accepts(port_of(stack.value("INBOX_URL"))));
  CHECK(accepts(port_of(stack.value("AUTH_URL"))));
  CHECK(port_of("redis://127.0.0.1:6379/0") == 6379);
  CHECK(port_of(stack.value("LEDGER_URL")) == std::stoi(stack.value("REDIS_PORT")));
  CHECK(redis_command(std::stoi(stack.value("REDIS_PORT")), "PING") == "+PONG");
  CHECK(std::filesystem::exists(stack.value("SOURCE_DIR") + "/tests/harness/stack.sh"));
  CHECK(std::filesystem::is_directory(stack.value("BIN_DIR")));
}

TEST_CASE("unique names differ") {
  const auto a = unique_name("queue");
  const auto b = unique_name("queue");
  CHECK(a != b);
  CHECK(a.rfind("queue_", 0) == 0);
}

TEST_CASE("Process captures output, passes its environment and reports the exit status") {
  Process echo("/bin/sh", {"-c", "echo hi; echo \"greeting=$GREETING\" >&2; exit 3"},
               {{"GREETING", "hello"}}, log_path("echo"));
  CHECK(echo.wait(10s) == 3);
  CHECK_FALSE(echo.running());
  CHECK(echo.log() == "hi\ngreeting=hello\n");
}

TEST_CASE("Process::terminate stops a child and its children") {
  const auto marker = std::filesystem::path(log_path("marker"));
  // The shell starts a grandchild that would write the marker if it outlived terminate().
  Process sleeper("/bin/sh", {"-c", "(sleep 2; echo late > " + marker.string() + ") & sleep 30"},
                  {}, log_path("sleeper"));
  CHECK(sleeper.running());
  const auto started = std::chrono::steady_clock::now();
  CHECK(sleeper.terminate(5s) == 128 + SIGTERM);
  CHECK(std::chrono::steady_clock::now() - started < 5s);
  CHECK_FALSE(sleeper.running());
  std::this_thread::sleep_for(2500ms);
  CHECK_FALSE(std::filesystem::exists(marker));
}

TEST_CASE("Process::wait times out on a running child") {
  Process sleeper("/bin/sleep", {"30"}, {}, log_path("sleep"));
  CHECK_FALSE(sleeper.wait(100ms).has_value());
  sleeper.kill();
  CHECK_FALSE(sleeper.running());
}

TEST_CASE("a mail sent over SMTP shows in the inbox, and clear() removes it") {
  const auto& stack = Stack::get();
  const Inbox inbox(stack.value("INBOX_URL"));
  const auto subject = unique_name("harness check");
  const auto mail_file = log_path("mail");
  std::ofstream(mail_file) << "From: harness@example.test\r\nTo: someone@example.test\r\n"
                           << "Subject: " << subject << "\r\n\r\nHello from the harness.\r\n";

  Process curl(
      "/usr/bin/curl",
      {"--silent", "--show-error", "smtp://127.0.0.1:" + stack.value("SMTP_PORT"), "--mail-from",
       "harness@example.test", "--mail-rcpt", "someone@example.test", "--upload-file", mail_file},
      {}, log_path("curl"));
  REQUIRE_MESSAGE(curl.wait(30s) == 0, curl.log());
  CHECK(wait_until([&] { return has_subject(inbox, subject); }, 10s));

  inbox.clear();
  CHECK_FALSE(has_subject(inbox, subject));
}

TEST_CASE("Stack::control restarts a program and refuses an unknown one") {
  const auto& stack = Stack::get();
  const int auth_port = port_of(stack.value("AUTH_URL"));
  stack.control("restart", "auth");
  CHECK(wait_until([&] { return accepts(auth_port); }, 10s));
  CHECK_THROWS_AS(stack.control("restart", "no_such_program"), std::runtime_error);
}

TEST_CASE("Redis keeps what it stored across a restart (the ledger's append-only file)") {
  const auto& stack = Stack::get();
  const int port = std::stoi(stack.value("REDIS_PORT"));
  const auto key = unique_name("harness_ledger");
  REQUIRE(redis_command(port, "SET " + key + " sent EX 600") == "+OK");
  stack.control("restart", "redis");
  CHECK(redis_command(port, "PING") == "+PONG");
  CHECK(redis_command(port, "GET " + key) == "$4\nsent");
  CHECK(redis_command(port, "DEL " + key) == ":1");
}
