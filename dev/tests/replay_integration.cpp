// notify_replay against the test stack: dead-lettered events go back to their topic, with the
// place of their first arrival, so the ETL makes the same posting ids again; dead postings go
// back to the work queue, and a dry run changes nothing. Every test uses its own topics and
// exchange.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "etl_process.hpp"
#include "notify/amqp.hpp"
#include "notify/kafka.hpp"
#include "notify/posting.hpp"
#include "stack.hpp"

using namespace std::chrono_literals;
using notify::testing::Process;
using notify::testing::Stack;
using notify::testing::unique_name;

namespace {

std::string log_path(const std::string& name) {
  return Stack::get().value("STACK_DIR") + "/test-logs/" + unique_name(name) + ".log";
}

// Runs notify_replay to its end; returns what it printed.
std::string replay(const std::vector<std::string>& args) {
  Process p(Stack::get().value("BIN_DIR") + "/notify_replay", args, {}, log_path("replay"));
  const auto status = p.wait(60s);
  INFO(p.log());
  REQUIRE(status.has_value());
  CHECK(*status == 0);
  return p.log();
}

// Every message the topic holds now.
std::vector<notify::kafka::Message> topic_messages(const std::string& topic) {
  std::vector<notify::kafka::Message> out;
  notify::kafka::read_topic_to_end(Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"), topic,
                                   [&](const notify::kafka::Message& m) {
                                     out.push_back(m);
                                     return true;
                                   });
  return out;
}

// key -> value of every message the topic holds now.
std::map<std::string, std::string> topic_contents(const std::string& topic) {
  std::map<std::string, std::string> out;
  for (const auto& m : topic_messages(topic)) out[m.key.value_or("")] = m.value;
  return out;
}

std::string header(const notify::kafka::Message& m, const std::string& name) {
  for (const auto& [key, value] : m.headers) {
    if (key == name) return value;
  }
  return "";
}

notify::amqp::ConnectionOptions connection() {
  notify::amqp::ConnectionOptions o;
  o.url = notify::amqp::Url::parse(Stack::get().value("RABBITMQ_URL"));
  o.connect_timeout = 3s;
  o.connection_name = "replay-it";
  return o;
}

// Every message of a queue, by message id; unacknowledged, so they stay in the queue.
std::map<std::string, notify::amqp::Delivery> peek(const std::string& queue) {
  notify::amqp::Consumer consumer({connection(), queue, 0, std::nullopt});
  consumer.connect();
  std::map<std::string, notify::amqp::Delivery> out;
  while (auto d = consumer.next(1500ms)) out[d->message_id] = *d;
  consumer.disconnect();
  return out;
}

}  // namespace

TEST_CASE("replay events: a dry run lists the dead letters, a real run re-produces them") {
  const auto bootstrap = Stack::get().value("KAFKA_BOOTSTRAP_SERVERS");
  const auto dlq = unique_name("replay-dlq");
  const auto target = unique_name("replay-events");
  notify::kafka::Producer producer(bootstrap);
  // The target exists before the replay, so that "nothing produced" is observable.
  producer.produce(target, std::string("sentinel"), "{}");
  const std::map<std::string, std::string> dead = {
      {"user-1", R"({"id":"user-1","event_type":"user_signed_up","details":{}})"},
      {"user-2", R"({"id":"user-2","event_type":"user_signed_up","details":{"x":1}})"}};
  int offset = 40;
  for (const auto& [key, value] : dead) {
    producer.produce(dlq, key, value, 10s,
                     {{"error", "template welcome: missing confirm_link"},
                      {"original_topic", target},
                      {"original_partition", "0"},
                      {"original_offset", std::to_string(offset++)}});
  }

  SUBCASE("dry run") {
    const auto out = replay({"events", "--bootstrap", bootstrap, "--topic", dlq, "--dry-run"});
    CHECK(out.find("key=user-1") != std::string::npos);
    CHECK(out.find("key=user-2") != std::string::npos);
    CHECK(out.find("error=template welcome: missing confirm_link") != std::string::npos);
    CHECK(out.find("2 of 2 dead-lettered events") != std::string::npos);
    CHECK(topic_contents(target).size() == 1);
  }

  SUBCASE("--match keeps only the matching errors") {
    const auto out = replay(
        {"events", "--bootstrap", bootstrap, "--topic", dlq, "--match", "auth 404", "--dry-run"});
    CHECK(out.find("key=user-") == std::string::npos);
    CHECK(out.find("0 of 2 dead-lettered events") != std::string::npos);
  }

  SUBCASE("real run") {
    const auto out = replay({"events", "--bootstrap", bootstrap, "--topic", dlq});
    CHECK(out.find("2 replayed") != std::string::npos);
    auto contents = topic_contents(target);
    contents.erase("sentinel");
    CHECK(contents == dead);
    // Each carries where it first arrived, for the ETL, and the dead letter it came from.
    for (const auto& m : topic_messages(target)) {
      if (m.key == "sentinel") continue;
      CAPTURE(*m.key);
      CHECK(header(m, "original_topic") == target);
      CHECK(header(m, "original_partition") == "0");
      CHECK(header(m, "original_offset") == (m.key == "user-1" ? "40" : "41"));
      CHECK(header(m, "replayed_from").starts_with(dlq + "["));
      CHECK(header(m, "error").empty());
    }
    // The dead letters themselves stay: Kafka does not delete.
    CHECK(topic_contents(dlq) == dead);
  }
}

TEST_CASE("replay postings: a dry run leaves them, a real run moves them to the work queue") {
  notify::amqp::Topology topology;
  topology.exchange = unique_name("replay-it");
  topology.channels = {"email"};
  {
    notify::amqp::Connection c(connection());
    notify::amqp::declare_topology(c, topology);
  }
  const auto work = topology.queue_for("email");
  const auto dead = topology.dead_letter_queue_for("email");

  // Dead postings as the worker leaves them: published through the dead-letter exchange.
  notify::amqp::ConfirmedPublisher publisher(
      {connection(), topology.dead_letter_exchange(), 8, std::nullopt});
  publisher.connect();
  for (const std::string id : {"posting-1", "posting-2"}) {
    notify::amqp::Message m;
    m.routing_key = "email";
    m.message_id = id;
    m.priority = 5;
    m.body = R"({"posting_id":")" + id + R"("})";
    m.headers = {{"x-dead-reason", "smtp_rejected"},
                 {"x-attempts", "3"},
                 {"x-last-error", "smtp 550: mailbox unavailable"},
                 {"x-deliver-at", "2024-01-01T00:00:00Z"},
                 {"x-trace", "keep-" + id}};
    publisher.publish(m, [](notify::amqp::ConfirmedPublisher::Result) {});
  }
  REQUIRE(publisher.flush(10s));
  const std::vector<std::string> base = {
      "postings",   "--rabbitmq-url",  Stack::get().value("RABBITMQ_URL"),
      "--exchange", topology.exchange, "--channel",
      "email",      "--wait",          "1"};

  SUBCASE("dry run") {
    auto args = base;
    args.emplace_back("--dry-run");
    const auto out = replay(args);
    CHECK(out.find("message_id=posting-1\treason=smtp_rejected\tlast_error=smtp 550") !=
          std::string::npos);
    CHECK(out.find("message_id=posting-2") != std::string::npos);
    CHECK(peek(dead).size() == 2);
    CHECK(peek(work).empty());
  }

  SUBCASE("real run") {
    const auto out = replay(base);
    CHECK(out.find("2 replayed") != std::string::npos);
    CHECK(peek(dead).empty());
    const auto moved = peek(work);
    REQUIRE(moved.size() == 2);
    for (const std::string id : {"posting-1", "posting-2"}) {
      const auto& d = moved.at(id);
      CHECK(d.body == R"({"posting_id":")" + id + R"("})");
      CHECK(d.priority == 5);
      CHECK(d.headers.count("x-dead-reason") == 0);
      CHECK(d.headers.count("x-attempts") == 0);
      CHECK(d.headers.count("x-last-error") == 0);
      CHECK(d.headers.count("x-deliver-at") == 0);
      CHECK(d.headers.at("x-trace") == "keep-" + id);
    }
  }
}

namespace {

// Postings read from a queue until `count` arrived or the time is up: posting id -> event id.
std::map<std::string, std::string> postings(notify::amqp::Consumer& queue, std::size_t count,
                                            std::chrono::seconds timeout) {
  std::map<std::string, std::string> out;
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (out.size() < count && std::chrono::steady_clock::now() < until) {
    if (auto d = queue.next(200ms)) {
      const auto posting = notify::decode_posting(d->body);
      out[posting.posting_id] = posting.event_id;
      queue.ack(d->delivery_tag);
    }
  }
  return out;
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

}  // namespace

TEST_CASE(
    "replay events: a mailing refused on page 37, replayed, gets the posting ids of its "
    "first arrival") {
  namespace fs = std::filesystem;
  const Stack& stack = Stack::get();
  const auto bootstrap = stack.value("KAFKA_BOOTSTRAP_SERVERS");
  const fs::path dir = fs::path(stack.value("STACK_DIR")) / unique_name("replay-identity");
  // Templates of its own: the new_movies subject for locale "xx" does not compile, and user 37
  // of 40 (one a page) reads "xx", so the mailing is refused on page 37.
  fs::create_directories(dir);
  fs::copy(fs::path(stack.value("SOURCE_DIR")) / "templates", dir / "templates",
           fs::copy_options::recursive);
  const fs::path broken = dir / "templates/email/new_movies/xx/subject.mustache";
  write_file(broken, "{{#movies}}New movies");
  nlohmann::json users = nlohmann::json::array();
  for (int i = 1; i <= 40; ++i) {
    const std::string id = "replay-" + std::to_string(i);
    users.push_back({{"id", id},
                     {"email", id + "@example.com"},
                     {"timezone", "UTC"},
                     {"locale", i == 37 ? "xx" : "en"}});
  }
  write_file(dir / "users.json", users.dump());
  // An Auth service of its own, so the audience is exactly these users.
  const int port = notify::testing::free_port();
  Process auth(stack.value("BIN_DIR") + "/dev_auth_server",
               {"--port", std::to_string(port), "--users", (dir / "users.json").string()}, {},
               log_path("replay-auth"));
  REQUIRE(notify::testing::wait_until(
      [&] { return notify::testing::http_status(port, "/healthz") == 200; }, 10s));
  const std::string auth_url = "http://127.0.0.1:" + std::to_string(port);

  notify::testing::EtlNames names;
  const std::string dlq = names.topic + ".dlq";
  auto queue = notify::testing::postings_consumer(names, "email", 100);
  auto etl = notify::testing::start_etl(
      names, {{"AUTH_URL", auth_url}, {"TEMPLATES_DIR", (dir / "templates").string()}});
  const nlohmann::json mailing = {
      {"event_type", "mailing"},
      {"from_service", "mailing"},
      {"template", "email/new_movies"},
      {"receivers", auth_url + "/api/v1/users/?page_number=1&page_size=1"},
      {"delivery_type", {"email"}},
      {"template_context", {{"movies", {{{"title", "Arrival"}}}}}}};
  notify::kafka::Producer producer(bootstrap);
  const auto arrival = producer.produce(names.topic, std::string("mailing"), mailing.dump());
  const std::string identity =
      names.topic + "/" + std::to_string(arrival.partition) + "/" + std::to_string(arrival.offset);

  // The first time: pages 1-36 mailed, then the event dead-lettered with where it arrived.
  const auto first = postings(*queue, 36, 60s);
  INFO("etl log:\n" << etl->log());
  REQUIRE(first.size() == 36);
  for (const auto& [posting_id, event_id] : first) CHECK(event_id == identity);
  std::vector<notify::kafka::Message> dead;
  CHECK(notify::testing::wait_until(
      [&] {
        try {
          dead = topic_messages(dlq);
        } catch (const notify::kafka::Error&) {  // not created yet
        }
        return !dead.empty();
      },
      30s));
  REQUIRE(dead.size() == 1);
  CHECK(header(dead[0], "error").find("xx/subject.mustache") != std::string::npos);
  CHECK(header(dead[0], "original_offset") == std::to_string(arrival.offset));
  CHECK(postings(*queue, 1, 2s).empty());  // pages 37-40 were not mailed

  // The cause fixed, the dead letter replayed: all 40 postings, the first 36 with their ids.
  write_file(broken, "New movies");
  const auto out = replay({"events", "--bootstrap", bootstrap, "--topic", dlq});
  CHECK(out.find("1 replayed") != std::string::npos);
  const auto second = postings(*queue, 40, 60s);
  REQUIRE(second.size() == 40);
  for (const auto& [posting_id, event_id] : second) CHECK(event_id == identity);
  for (const auto& entry : first) {
    const std::string& posting_id = entry.first;  // CAPTURE cannot take a structured binding
    CAPTURE(posting_id);
    CHECK(second.count(posting_id) == 1);
  }
  CHECK(etl->terminate() == 0);
  CHECK(auth.terminate() == 0);
}
