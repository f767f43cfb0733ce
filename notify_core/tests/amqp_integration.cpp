// The AMQP edge against the RabbitMQ of the test stack. Every test declares its own topology
// (a unique exchange name), so tests never see each other's queues.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../src/amqp_internal.hpp"  // the nack test declares a queue the edge does not offer
#include "notify/amqp.hpp"
#include "stack.hpp"

using namespace std::chrono_literals;
using notify::amqp::ConfirmedPublisher;
using notify::amqp::Connection;
using notify::amqp::ConnectionOptions;
using notify::amqp::Consumer;
using notify::amqp::Delivery;
using notify::amqp::Error;
using notify::amqp::Message;
using notify::amqp::Refused;
using notify::amqp::Topology;
using notify::amqp::Url;
using Result = ConfirmedPublisher::Result;

namespace {

ConnectionOptions connection_options(const std::string& name) {
  ConnectionOptions options;
  options.url = Url::parse(notify::testing::Stack::get().value("RABBITMQ_URL"));
  options.connect_timeout = 3s;
  options.heartbeat = 5s;
  options.connection_name = name;
  return options;
}

Topology fresh_topology() {
  Topology topology;
  topology.exchange = notify::testing::unique_name("amqp-it");
  return topology;
}

ConfirmedPublisher::Options publisher_options(const Topology& topology, std::size_t window) {
  ConfirmedPublisher::Options options;
  options.connection = connection_options("amqp-it publisher");
  options.exchange = topology.exchange;
  options.window = window;
  options.declare = topology;
  return options;
}

Consumer::Options consumer_options(const Topology& topology, const std::string& queue,
                                   std::uint16_t prefetch = 32) {
  Consumer::Options options;
  options.connection = connection_options("amqp-it consumer");
  options.queue = queue;
  options.prefetch = prefetch;
  options.declare = topology;
  return options;
}

Message message(const std::string& id, const std::string& routing_key = "email",
                std::uint8_t priority = 0) {
  Message m;
  m.routing_key = routing_key;
  m.message_id = id;
  m.priority = priority;
  m.body = R"({"id":")" + id + R"(","padding":")" + std::string(200, 'x') + R"("})";
  m.headers = {{"kind", "welcome"}, {"attempt", "1"}, {"id", id}};
  return m;
}

// Consumes until `count` deliveries arrived or nothing comes for `idle`; acks each.
std::vector<Delivery> drain(Consumer& consumer, std::size_t count,
                            std::chrono::milliseconds idle = 3s) {
  std::vector<Delivery> out;
  while (out.size() < count) {
    std::optional<Delivery> d = consumer.next(idle);
    if (!d) break;
    consumer.ack(d->delivery_tag);
    out.push_back(std::move(*d));
  }
  return out;
}

template <typename F>
void retry_until_connected(F&& connect, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    try {
      connect();
      return;
    } catch (const Error&) {
      if (std::chrono::steady_clock::now() > deadline) throw;
      std::this_thread::sleep_for(300ms);
    }
  }
}

}  // namespace

TEST_CASE("amqp: declare_topology is idempotent and creates the work and dead-letter queues") {
  const Topology topology = fresh_topology();
  {
    Connection connection(connection_options("amqp-it declare"));
    notify::amqp::declare_topology(connection, topology);
    notify::amqp::declare_topology(connection, topology);
  }
  {
    Connection again(connection_options("amqp-it declare again"));
    notify::amqp::declare_topology(again, topology);
  }
  // Consuming works only for queues that exist: these were declared above.
  for (const std::string& queue :
       {topology.queue_for("email"), topology.dead_letter_queue_for("email")}) {
    Consumer::Options options = consumer_options(topology, queue);
    options.declare.reset();
    Consumer consumer(options);
    consumer.connect();
    CHECK(consumer.connected());
    CHECK_FALSE(consumer.next(50ms).has_value());
  }
  Consumer::Options missing = consumer_options(topology, topology.queue_for("sms"));
  missing.declare.reset();
  Consumer consumer(missing);
  try {
    consumer.connect();
    FAIL("consuming a missing queue must fail");
  } catch (const Refused& e) {
    CHECK(e.reply_code() == 404);
    CHECK(e.is_permanent());
    CHECK(e.summary().starts_with("404 NOT_FOUND"));
    CHECK(std::string(e.what()).find("404") != std::string::npos);
    CHECK(std::string(e.what()).find("NOT_FOUND") != std::string::npos);
  }
  CHECK_FALSE(consumer.connected());
}

TEST_CASE("amqp: 1000 messages through a window of 64 are all confirmed and arrive intact") {
  const Topology topology = fresh_topology();
  ConfirmedPublisher publisher(publisher_options(topology, 64));
  CHECK_FALSE(publisher.connected());
  publisher.connect();
  REQUIRE(publisher.connected());

  constexpr int kCount = 1000;
  int acked = 0;
  int returned = 0;
  std::size_t max_outstanding = 0;
  for (int i = 0; i < kCount; ++i) {
    publisher.publish(message("m-" + std::to_string(i), "email", static_cast<std::uint8_t>(i % 10)),
                      [&](Result r) { (r == Result::kAcked ? acked : returned)++; });
    max_outstanding = std::max(max_outstanding, publisher.outstanding());
  }
  CHECK(max_outstanding <= 64);
  REQUIRE(publisher.flush(30s));
  CHECK(acked == kCount);
  CHECK(returned == 0);
  CHECK(publisher.outstanding() == 0);

  Consumer consumer(consumer_options(topology, topology.queue_for("email"), 100));
  consumer.connect();
  const std::vector<Delivery> deliveries = drain(consumer, kCount + 1, 2s);
  REQUIRE(deliveries.size() == kCount);
  std::set<std::string> ids;
  for (const Delivery& d : deliveries) {
    ids.insert(d.message_id);
    const int n = std::stoi(d.message_id.substr(2));
    CHECK(d.routing_key == "email");
    CHECK(d.priority == n % 10);
    CHECK(d.body == message(d.message_id).body);
    CHECK(d.headers == std::map<std::string, std::string>{
                           {"kind", "welcome"}, {"attempt", "1"}, {"id", d.message_id}});
    CHECK_FALSE(d.redelivered);
  }
  CHECK(ids.size() == kCount);
}

TEST_CASE("amqp: a message no queue is bound for is reported as returned") {
  const Topology topology = fresh_topology();
  ConfirmedPublisher publisher(publisher_options(topology, 8));
  publisher.connect();
  std::vector<std::pair<std::string, Result>> results;
  int n = 0;
  for (const char* key : {"email", "nowhere", "email", "nowhere"}) {
    const std::string id = std::string(key) + "-" + std::to_string(n++);
    publisher.publish(message(id, key), [&results, id](Result r) { results.emplace_back(id, r); });
  }
  REQUIRE(publisher.flush(10s));
  REQUIRE(results.size() == 4);
  std::map<std::string, Result> by_id(results.begin(), results.end());
  std::size_t returned = 0;
  for (const auto& entry : by_id) {
    const std::string& id = entry.first;  // a named reference: CHECK_MESSAGE captures it
    const Result result = entry.second;
    const bool unroutable = id.starts_with("nowhere");
    CHECK_MESSAGE((result == Result::kReturned) == unroutable, id);
    returned += result == Result::kReturned;
  }
  CHECK(returned == 2);

  Consumer consumer(consumer_options(topology, topology.queue_for("email")));
  consumer.connect();
  CHECK(drain(consumer, 10, 1s).size() == 2);
}

TEST_CASE("amqp: reject without requeue dead-letters; ack removes") {
  const Topology topology = fresh_topology();
  ConfirmedPublisher publisher(publisher_options(topology, 16));
  publisher.connect();
  publisher.publish(message("keep"), nullptr);
  publisher.publish(message("poison"), nullptr);
  REQUIRE(publisher.flush(10s));

  Consumer consumer(consumer_options(topology, topology.queue_for("email")));
  consumer.connect();
  std::set<std::string> seen;
  for (int i = 0; i < 2; ++i) {
    std::optional<Delivery> d = consumer.next(5s);
    REQUIRE(d.has_value());
    seen.insert(d->message_id);
    if (d->message_id == "poison") {
      consumer.reject(d->delivery_tag, /*requeue=*/false);
    } else {
      consumer.ack(d->delivery_tag);
    }
  }
  CHECK(seen == std::set<std::string>{"keep", "poison"});
  CHECK_FALSE(consumer.next(300ms).has_value());

  // Gone for good from the work queue, also after reconnecting.
  consumer.disconnect();
  CHECK_FALSE(consumer.connected());
  consumer.connect();
  CHECK_FALSE(consumer.next(300ms).has_value());

  Consumer dead(consumer_options(topology, topology.dead_letter_queue_for("email")));
  dead.connect();
  std::optional<Delivery> d = dead.next(5s);
  REQUIRE(d.has_value());
  CHECK(d->message_id == "poison");
  CHECK(d->routing_key == "email");
  CHECK(d->headers.at("kind") == "welcome");
  // RabbitMQ adds x-death (a table array): skipped; count/first-death headers are strings/ints.
  dead.ack(d->delivery_tag);
  CHECK_FALSE(dead.next(300ms).has_value());
}

TEST_CASE("amqp: a multiple ack covers the earlier deliveries still open, not a rejected one") {
  const Topology topology = fresh_topology();
  ConfirmedPublisher publisher(publisher_options(topology, 16));
  publisher.connect();
  for (const char* id : {"a", "b", "c", "d"}) publisher.publish(message(id), nullptr);
  REQUIRE(publisher.flush(10s));

  Consumer consumer(consumer_options(topology, topology.queue_for("email")));
  consumer.connect();
  std::vector<Delivery> got;
  for (int i = 0; i < 4; ++i) {
    std::optional<Delivery> d = consumer.next(5s);
    REQUIRE(d.has_value());
    got.push_back(std::move(*d));
  }
  CHECK(got[1].message_id == "b");
  consumer.reject(got[1].delivery_tag, /*requeue=*/false);
  consumer.ack(got[3].delivery_tag, /*multiple=*/true);  // a, c and d
  // A timeout of 0 does not wait when nothing has arrived.
  const auto asked = std::chrono::steady_clock::now();
  CHECK_FALSE(consumer.next(0ms).has_value());
  CHECK(std::chrono::steady_clock::now() - asked < 1s);

  // Nothing comes back after reconnecting; b went to the dead-letter queue, alone.
  consumer.disconnect();
  consumer.connect();
  CHECK_FALSE(consumer.next(300ms).has_value());
  Consumer dead(consumer_options(topology, topology.dead_letter_queue_for("email")));
  dead.connect();
  std::optional<Delivery> d = dead.next(5s);
  REQUIRE(d.has_value());
  CHECK(d->message_id == "b");
  dead.ack(d->delivery_tag);
  CHECK_FALSE(dead.next(300ms).has_value());
}

TEST_CASE("amqp: a requeued rejection is redelivered") {
  const Topology topology = fresh_topology();
  ConfirmedPublisher publisher(publisher_options(topology, 16));
  publisher.connect();
  publisher.publish(message("again"), nullptr);
  REQUIRE(publisher.flush(10s));
  Consumer consumer(consumer_options(topology, topology.queue_for("email")));
  consumer.connect();
  std::optional<Delivery> first = consumer.next(5s);
  REQUIRE(first.has_value());
  CHECK_FALSE(first->redelivered);
  consumer.reject(first->delivery_tag, /*requeue=*/true);
  std::optional<Delivery> second = consumer.next(5s);
  REQUIRE(second.has_value());
  CHECK(second->message_id == "again");
  CHECK(second->redelivered);
  consumer.ack(second->delivery_tag);
}

TEST_CASE("amqp: a priority-9 message overtakes a backlog of priority 0") {
  const Topology topology = fresh_topology();
  ConfirmedPublisher publisher(publisher_options(topology, 64));
  publisher.connect();
  for (int i = 0; i < 50; ++i) publisher.publish(message("low-" + std::to_string(i)), nullptr);
  publisher.publish(message("urgent", "email", 9), nullptr);
  REQUIRE(publisher.flush(10s));

  Consumer consumer(consumer_options(topology, topology.queue_for("email"), 1));
  consumer.connect();
  std::optional<Delivery> first = consumer.next(5s);
  REQUIRE(first.has_value());
  CHECK(first->message_id == "urgent");
  CHECK(first->priority == 9);
  consumer.ack(first->delivery_tag);
  CHECK(drain(consumer, 100, 1s).size() == 50);
}

TEST_CASE("amqp: an ack of a delivery from a closed connection is ignored") {
  const Topology topology = fresh_topology();
  ConfirmedPublisher publisher(publisher_options(topology, 16));
  publisher.connect();
  publisher.publish(message("a"), nullptr);
  publisher.publish(message("b"), nullptr);
  REQUIRE(publisher.flush(10s));

  Consumer consumer(consumer_options(topology, topology.queue_for("email"), 1));
  consumer.connect();
  std::optional<Delivery> old = consumer.next(5s);
  REQUIRE(old.has_value());
  consumer.disconnect();
  consumer.ack(old->delivery_tag);  // not connected: nothing to do
  consumer.connect();
  std::optional<Delivery> fresh = consumer.next(5s);
  REQUIRE(fresh.has_value());
  // Same broker tag (1) on the new channel; acking the old delivery must not ack this one.
  consumer.ack(old->delivery_tag);
  consumer.disconnect();
  consumer.connect();
  CHECK(drain(consumer, 10, 1s).size() == 2);
}

TEST_CASE("amqp: pump() and next() serve heartbeats: idle connections stay up") {
  // With a 1 s heartbeat the broker drops a silent connection after about 2 s.
  const Topology topology = fresh_topology();
  ConfirmedPublisher::Options publisher_opts = publisher_options(topology, 16);
  publisher_opts.connection.heartbeat = 1s;
  ConfirmedPublisher publisher(publisher_opts);
  publisher.connect();
  Consumer::Options consumer_opts = consumer_options(topology, topology.queue_for("email"));
  consumer_opts.connection.heartbeat = 1s;
  Consumer consumer(consumer_opts);
  consumer.connect();

  const auto until = std::chrono::steady_clock::now() + 4s;
  while (std::chrono::steady_clock::now() < until) {
    publisher.pump(100ms);
    CHECK_FALSE(consumer.next(100ms).has_value());
  }
  publisher.publish(message("after-idle"), nullptr);
  REQUIRE(publisher.flush(5s));
  std::optional<Delivery> d = consumer.next(5s);
  REQUIRE(d.has_value());
  CHECK(d->message_id == "after-idle");
  consumer.ack(d->delivery_tag);
}

TEST_CASE("amqp: after a broker restart both sides fail, reconnect, and nothing is lost") {
  const Topology topology = fresh_topology();
  ConfirmedPublisher publisher(publisher_options(topology, 16));
  publisher.connect();
  Consumer consumer(consumer_options(topology, topology.queue_for("email"), 10));
  consumer.connect();

  std::set<std::string> published;
  int confirmations = 0;
  const auto publish = [&](const std::string& id) {
    published.insert(id);
    publisher.publish(message(id), [&](Result r) {
      CHECK(r == Result::kAcked);
      ++confirmations;
    });
  };
  for (int i = 0; i < 100; ++i) publish("before-" + std::to_string(i));
  REQUIRE(publisher.flush(10s));
  // Sent but not yet confirmed as far as the publisher knows: their acks are never read.
  for (int i = 0; i < 30; ++i) publish("unread-" + std::to_string(i));
  CHECK(publisher.outstanding() > 0);

  notify::testing::Stack::get().control("restart", "rabbitmq");

  std::set<std::string> consumed;
  const auto fails_within = [](auto&& call, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      try {
        call();
      } catch (const Error& e) {
        MESSAGE("expected failure: " << std::string(e.what()));
        // A lost connection is no refusal: nothing for an operator to fix.
        CHECK(dynamic_cast<const Refused*>(&e) == nullptr);
        return true;
      }
    }
    return false;
  };
  // Deliveries already buffered may still come out; then the closed socket shows.
  CHECK(fails_within(
      [&] {
        if (std::optional<Delivery> d = consumer.next(200ms)) consumed.insert(d->message_id);
      },
      30s));
  CHECK_FALSE(consumer.connected());
  CHECK(fails_within([&] { publisher.pump(200ms); }, 30s));
  CHECK_FALSE(publisher.connected());

  // Published while disconnected: kept, sent after connect().
  for (int i = 0; i < 10; ++i) {
    CHECK_THROWS_AS(publish("while-down-" + std::to_string(i)), Error);
  }
  CHECK(publisher.outstanding() >= 10);

  retry_until_connected([&] { publisher.connect(); }, 60s);
  retry_until_connected([&] { consumer.connect(); }, 60s);
  REQUIRE(publisher.flush(30s));
  CHECK(publisher.outstanding() == 0);
  CHECK(confirmations == static_cast<int>(published.size()));

  for (const Delivery& d : drain(consumer, 100000, 3s)) consumed.insert(d.message_id);
  std::vector<std::string> lost;
  for (const std::string& id : published) {
    if (!consumed.contains(id)) lost.push_back(id);
  }
  CHECK_MESSAGE(lost.empty(), lost.size() << " lost, e.g. " << (lost.empty() ? "" : lost[0]));
}

namespace {

// The Refused that f throws; fails the test when it throws none or another error.
template <typename F>
std::optional<Refused> refusal(F&& f) {
  try {
    f();
  } catch (const Refused& e) {
    MESSAGE("refused: " << std::string(e.what()));
    return e;
  } catch (const Error& e) {
    FAIL("a plain Error instead of Refused: " << std::string(e.what()));
    return std::nullopt;
  }
  FAIL("not refused");
  return std::nullopt;
}

}  // namespace

TEST_CASE("amqp: a wrong password is refused with 403, an unknown vhost with 530") {
  ConnectionOptions options = connection_options("amqp-it bad login");
  options.url.password = "not-the-password";
  auto bad_password = refusal([&] { Connection connection(options); });
  REQUIRE(bad_password);
  CHECK(bad_password->reply_code() == 403);
  CHECK(bad_password->summary().starts_with("403 ACCESS_REFUSED"));
  CHECK(bad_password->is_permanent());
  CHECK(std::string(bad_password->what()).find("not-the-password") == std::string::npos);

  options = connection_options("amqp-it bad vhost");
  options.url.vhost = notify::testing::unique_name("no-such-vhost");
  auto bad_vhost = refusal([&] { Connection connection(options); });
  REQUIRE(bad_vhost);
  CHECK(bad_vhost->reply_code() == 530);
  CHECK(bad_vhost->is_permanent());

  // The publisher and the consumer report the same, and stay disconnected.
  ConfirmedPublisher::Options publisher_opts = publisher_options(fresh_topology(), 8);
  publisher_opts.connection.url.password = "wrong";
  ConfirmedPublisher publisher(publisher_opts);
  auto publisher_refused = refusal([&] { publisher.connect(); });
  REQUIRE(publisher_refused);
  CHECK(publisher_refused->reply_code() == 403);
  CHECK_FALSE(publisher.connected());
}

TEST_CASE("amqp: a declaration that does not match the queue is refused with 406") {
  const Topology topology = fresh_topology();
  {
    Connection connection(connection_options("amqp-it declare"));
    notify::amqp::declare_topology(connection, topology);
  }
  Topology other = topology;
  other.max_priority = 5;  // the queue exists with x-max-priority 9
  Connection connection(connection_options("amqp-it mismatch"));
  auto mismatch = refusal([&] { notify::amqp::declare_topology(connection, other); });
  REQUIRE(mismatch);
  CHECK(mismatch->reply_code() == 406);
  CHECK(mismatch->summary().starts_with("406 PRECONDITION_FAILED"));
  CHECK(mismatch->is_permanent());
  CHECK(mismatch->class_id() == 50);  // queue.declare
  CHECK(mismatch->method_id() == 10);

  // The same through a consumer that declares its topology on connect.
  Consumer consumer(consumer_options(other, other.queue_for("email")));
  auto consumer_refused = refusal([&] { consumer.connect(); });
  REQUIRE(consumer_refused);
  CHECK(consumer_refused->reply_code() == 406);
  CHECK_FALSE(consumer.connected());
}

TEST_CASE("amqp: a name the broker reserves is refused with 403") {
  Topology reserved = fresh_topology();
  reserved.exchange = "amq." + reserved.exchange;
  Connection connection(connection_options("amqp-it reserved"));
  auto refused = refusal([&] { notify::amqp::declare_topology(connection, reserved); });
  REQUIRE(refused);
  CHECK(refused->reply_code() == 403);
  CHECK(refused->is_permanent());
}

TEST_CASE("amqp: nobody listening is a plain Error, no refusal") {
  ConnectionOptions options = connection_options("amqp-it nobody");
  options.url.port = notify::testing::free_port();
  options.connect_timeout = 2s;
  try {
    Connection connection(options);
    FAIL("connected to nobody");
  } catch (const Refused& e) {
    FAIL("refused: " << std::string(e.what()));
  } catch (const Error& e) {
    MESSAGE("expected failure: " << std::string(e.what()));
  }
}

TEST_CASE("amqp: a message the broker keeps nacking is reported as kNacked after max_nacks") {
  const Topology topology = fresh_topology();
  const std::string full = topology.exchange + ".full";
  {
    // A queue that takes nothing: with overflow reject-publish, the broker nacks every message
    // routed only to it (what a full queue does).
    Connection connection(connection_options("amqp-it full queue"));
    notify::amqp::declare_topology(connection, topology);
    Connection::Impl& c = connection.impl();
    std::array<amqp_table_entry_t, 2> arguments{};
    arguments[0].key = amqp_cstring_bytes("x-max-length");
    arguments[0].value.kind = AMQP_FIELD_KIND_I32;
    arguments[0].value.value.i32 = 0;
    arguments[1].key = amqp_cstring_bytes("x-overflow");
    arguments[1].value.kind = AMQP_FIELD_KIND_UTF8;
    arguments[1].value.value.bytes = amqp_cstring_bytes("reject-publish");
    amqp_queue_declare(c.state, notify::amqp::kChannel, notify::amqp::bytes_of(full), 0, 0, 0,
                       /*auto_delete=*/1, amqp_table_t{2, arguments.data()});
    c.check(amqp_get_rpc_reply(c.state), "declare the full queue");
    amqp_queue_bind(c.state, notify::amqp::kChannel, notify::amqp::bytes_of(full),
                    notify::amqp::bytes_of(topology.exchange), amqp_cstring_bytes("full"),
                    amqp_empty_table);
    c.check(amqp_get_rpc_reply(c.state), "bind the full queue");

    ConfirmedPublisher::Options options = publisher_options(topology, 8);
    options.max_nacks = 3;
    ConfirmedPublisher publisher(options);
    publisher.connect();
    std::map<std::string, Result> results;
    for (const char* id : {"before", "refused", "after"}) {
      publisher.publish(message(id, std::string(id) == "refused" ? "full" : "email"),
                        [&results, id](Result r) { results[id] = r; });
    }
    REQUIRE(publisher.flush(10s));
    CHECK(results.size() == 3);
    CHECK(results["before"] == Result::kAcked);
    CHECK(results["refused"] == Result::kNacked);
    CHECK(results["after"] == Result::kAcked);
    CHECK(publisher.outstanding() == 0);
  }
  Consumer consumer(consumer_options(topology, topology.queue_for("email")));
  consumer.connect();
  CHECK(drain(consumer, 10, 1s).size() == 2);
}
