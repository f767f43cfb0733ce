// Status events onto the development Kafka broker of the test stack: keyed by user id, never
// blocking the sender, bounded while Kafka is unreachable (the overflow counted), and the
// buffered ones delivered once it is back.
//
// "Unreachable" is a loopback port nobody listens on; "back" is a forwarder that starts
// listening on that port and passes the bytes to the stack's broker. The producer only
// bootstraps through it: the broker's metadata then names its own address.

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "notify/kafka.hpp"
#include "notify/status.hpp"
#include "notify/time.hpp"
#include "stack.hpp"

namespace kafka = notify::kafka;
namespace status = notify::status;
using namespace std::chrono_literals;
using notify::testing::Stack;

namespace {

std::string bootstrap() { return Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"); }

std::vector<kafka::Message> topic_messages(const std::string& topic) {
  std::vector<kafka::Message> out;
  kafka::read_topic_to_end(bootstrap(), topic, [&](const kafka::Message& m) {
    out.push_back(m);
    return true;
  });
  return out;
}

status::Event event(std::string user_id, std::string event_id, std::string what) {
  status::Event e;
  e.status = std::move(what);
  e.time = *notify::parse_iso8601("2026-11-23T10:00:00.125Z");
  e.service = "worker_notifications";
  e.event_id = std::move(event_id);
  e.user_id = std::move(user_id);
  e.channel = "email";
  e.template_name = "email/welcome";
  return e;
}

int port_of(const std::string& address) {
  return std::stoi(address.substr(address.rfind(':') + 1));
}

// Listens on 127.0.0.1:listen_port and copies bytes both ways between each connection and
// 127.0.0.1:target_port, until destroyed.
class Forwarder {
 public:
  Forwarder(int listen_port, int target_port) : target_port_(target_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr = loopback(listen_port);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listener_, 16) == 0);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~Forwarder() {
    stop_.store(true);
    acceptor_.join();  // no more pumps from here on
    for (auto& t : pumps_) t.join();
    ::close(listener_);
  }
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

 private:
  static sockaddr_in loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
  }

  void accept_loop() {
    while (!stop_.load()) {
      pollfd p{listener_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int client = ::accept(listener_, nullptr, nullptr);
      if (client < 0) continue;
      const int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr = loopback(target_port_);
      if (::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(client);
        ::close(upstream);
        continue;
      }
      pumps_.emplace_back([this, client, upstream] { pump(client, upstream); });
    }
  }

  void pump(int a, int b) {
    char buffer[16384];
    pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    while (!stop_.load()) {
      if (::poll(fds, 2, 50) <= 0) continue;
      bool open = true;
      for (int i = 0; i < 2 && open; ++i) {
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
        open =
            n > 0 && ::send(fds[1 - i].fd, buffer, static_cast<std::size_t>(n), MSG_NOSIGNAL) == n;
      }
      if (!open) break;
    }
    ::close(a);
    ::close(b);
  }

  int target_port_;
  int listener_ = -1;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> pumps_;  // added to by the acceptor only
};

}  // namespace

TEST_CASE("status: events arrive on the topic keyed by user id, else event id") {
  const auto topic = notify::testing::unique_name("status_keys");
  std::vector<status::Event> sent = {event("user-1", "notify_events/0/1", "sent"),
                                     event("user-2", "notify_events/0/2", "deferred"),
                                     event("", "notify_events/1/9", "refused"),
                                     event("user-1", "notify_events/0/3", "expired")};
  {
    status::KafkaSink sink(bootstrap(), topic, 100);
    for (const auto& e : sent) sink.emit(e);
    REQUIRE(sink.flush(15s));
    CHECK(sink.dropped() == 0);
    CHECK(sink.failed() == 0);
    CHECK(sink.buffered() == 0);
  }
  const auto messages = topic_messages(topic);
  REQUIRE(messages.size() == sent.size());
  std::map<std::string, std::vector<status::Event>> by_key;
  std::map<std::string, std::int32_t> partition_of;
  for (const auto& m : messages) {
    REQUIRE(m.key.has_value());
    by_key[*m.key].push_back(status::decode(m.value));
    // One key, one partition: a user's events are read in the order they were sent.
    if (partition_of.count(*m.key) != 0) CHECK(partition_of[*m.key] == m.partition);
    partition_of[*m.key] = m.partition;
  }
  CHECK(by_key["user-1"] == std::vector<status::Event>{sent[0], sent[3]});
  CHECK(by_key["user-2"] == std::vector<status::Event>{sent[1]});
  CHECK(by_key["notify_events/1/9"] == std::vector<status::Event>{sent[2]});
}

TEST_CASE("status: with Kafka unreachable emit() returns at once; the overflow is counted") {
  const int port = notify::testing::free_port();
  std::atomic<int> dropped{0}, failed{0};
  {
    status::KafkaSink sink(
        "127.0.0.1:" + std::to_string(port), notify::testing::unique_name("status_down"), 5,
        [&](kafka::BufferedProducer::Loss loss) {
          (loss == kafka::BufferedProducer::Loss::kDropped ? dropped : failed).fetch_add(1);
        });
    const auto started = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i) {
      sink.emit(event("user-" + std::to_string(i), "notify_events/0/" + std::to_string(i), "sent"));
    }
    const auto took = std::chrono::steady_clock::now() - started;
    CHECK(took < 500ms);  // twenty sends without a broker: no waiting for one
    CHECK(sink.buffered() == 5);
    CHECK(sink.dropped() == 15);
    CHECK(dropped.load() == 15);
    CHECK(sink.failed() == 0);
    std::this_thread::sleep_for(1500ms);  // waiting in the buffer is not failing
    CHECK(sink.failed() == 0);
    CHECK(sink.buffered() == 5);
  }
  // Destroyed with the broker still away: after its bounded wait the buffered five are lost,
  // and counted so.
  CHECK(failed.load() == 5);
  CHECK(dropped.load() == 15);
}

TEST_CASE("status: what waited in the buffer is delivered once Kafka is back") {
  const int port = notify::testing::free_port();
  const auto topic = notify::testing::unique_name("status_back");
  kafka::BufferedProducer producer(
      {"127.0.0.1:" + std::to_string(port), 10, {{"reconnect.backoff.max.ms", "500"}}, {}});
  for (int i = 0; i < 3; ++i) {
    CHECK(producer.send(topic, "user-" + std::to_string(i), "value " + std::to_string(i)));
  }
  std::this_thread::sleep_for(1s);
  CHECK(producer.buffered() == 3);
  CHECK(producer.delivered() == 0);

  Forwarder back(port, port_of(bootstrap()));
  REQUIRE(producer.flush(20s));
  CHECK(producer.delivered() == 3);
  CHECK(producer.failed() == 0);
  CHECK(producer.dropped() == 0);
  std::map<std::string, std::string> contents;
  for (const auto& m : topic_messages(topic)) contents[m.key.value_or("")] = m.value;
  CHECK(contents == std::map<std::string, std::string>{
                        {"user-0", "value 0"}, {"user-1", "value 1"}, {"user-2", "value 2"}});
}
