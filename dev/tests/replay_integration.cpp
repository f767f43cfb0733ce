// notify_replay against the test stack: dead-lettered events go back to their topic, with the
// place of their first arrival, so the ETL makes the same posting ids again; dead postings go
// back to the work queue, and a dry run changes nothing. Every test uses its own topics and
// exchange.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "etl_process.hpp"
#include "notify/amqp.hpp"
#include "notify/kafka.hpp"
#include "notify/posting.hpp"
#include "stack.hpp"

#include <nlohmann/json.hpp>

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

// How many lines of a service's log contain `text`.
std::size_t count_lines(const std::string& log, const std::string& text) {
  std::size_t n = 0;
  for (std::size_t at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) ++n;
  return n;
}

// A mailing to 40 users of an Auth service of its own (one user a page), with templates of its
// own in which the new_movies subject for locale "xx" does not compile; user 37 reads "xx", so
// the mailing is refused on page 37, after the postings of pages 1-36 were published.
struct RefusedMailing {
  const Stack& stack = Stack::get();
  const std::string bootstrap = stack.value("KAFKA_BOOTSTRAP_SERVERS");
  const std::filesystem::path dir =
      std::filesystem::path(stack.value("STACK_DIR")) / unique_name("replay-identity");
  const std::filesystem::path broken = dir / "templates/email/new_movies/xx/subject.mustache";
  const std::string user_prefix = unique_name("replay");
  std::string auth_url;
  std::unique_ptr<Process> auth;
  notify::testing::EtlNames names;
  std::string dlq = names.topic + ".dlq";

  RefusedMailing() {
    namespace fs = std::filesystem;
    fs::create_directories(dir);
    fs::copy(fs::path(stack.value("SOURCE_DIR")) / "templates", dir / "templates",
             fs::copy_options::recursive);
    write_file(broken, "{{#movies}}New movies");
    nlohmann::json users = nlohmann::json::array();
    for (int i = 1; i <= 40; ++i) {
      users.push_back({{"id", user_prefix + "-" + std::to_string(i)},
                       {"email", address(i)},
                       {"timezone", "UTC"},
                       {"locale", i == 37 ? "xx" : "en"}});
    }
    write_file(dir / "users.json", users.dump());
    const int port = notify::testing::free_port();
    auth = std::make_unique<Process>(
        stack.value("BIN_DIR") + "/dev_auth_server",
        std::vector<std::string>{"--port", std::to_string(port), "--users",
                                 (dir / "users.json").string()},
        std::map<std::string, std::string>{}, log_path("replay-auth"));
    REQUIRE(notify::testing::wait_until(
        [&] { return notify::testing::http_status(port, "/healthz") == 200; }, 10s));
    auth_url = "http://127.0.0.1:" + std::to_string(port);
  }

  std::string address(int user) const {
    return user_prefix + "-" + std::to_string(user) + "@example.com";
  }

  std::unique_ptr<Process> start_etl() const {
    return notify::testing::start_etl(
        names, {{"AUTH_URL", auth_url}, {"TEMPLATES_DIR", (dir / "templates").string()}});
  }

  // Produces the mailing; returns the identity of its arrival (topic/partition/offset).
  std::string produce() const {
    const nlohmann::json mailing = {
        {"event_type", "mailing"},
        {"from_service", "mailing"},
        {"template", "email/new_movies"},
        {"receivers", auth_url + "/api/v1/users/?page_number=1&page_size=1"},
        {"delivery_type", {"email"}},
        {"template_context", {{"movies", {{{"title", "Arrival"}}}}}}};
    notify::kafka::Producer producer(bootstrap);
    const auto arrival = producer.produce(names.topic, std::string("mailing"), mailing.dump());
    return names.topic + "/" + std::to_string(arrival.partition) + "/" +
           std::to_string(arrival.offset);
  }

  // The dead letters of the mailing's topic, once there are any (30 s at most).
  std::vector<notify::kafka::Message> dead_letters() const {
    std::vector<notify::kafka::Message> dead;
    notify::testing::wait_until(
        [&] {
          try {
            dead = topic_messages(dlq);
          } catch (const notify::kafka::Error&) {  // not created yet
          }
          return !dead.empty();
        },
        30s);
    return dead;
  }

  // The cause fixed, the dead letter replayed by notify_replay.
  void fix_and_replay() const {
    write_file(broken, "New movies");
    const auto out = replay({"events", "--bootstrap", bootstrap, "--topic", dlq});
    CHECK(out.find("1 replayed") != std::string::npos);
  }
};

}  // namespace

TEST_CASE(
    "replay events: a mailing refused on page 37, replayed, gets the posting ids of its "
    "first arrival") {
  RefusedMailing m;
  auto queue = notify::testing::postings_consumer(m.names, "email", 100);
  auto etl = m.start_etl();
  const std::string identity = m.produce();

  // The first time: pages 1-36 mailed, then the event dead-lettered with where it arrived.
  const auto first = postings(*queue, 36, 60s);
  INFO("etl log:\n" << etl->log());
  REQUIRE(first.size() == 36);
  for (const auto& [posting_id, event_id] : first) CHECK(event_id == identity);
  const auto dead = m.dead_letters();
  REQUIRE(dead.size() == 1);
  CHECK(header(dead[0], "error").find("xx/subject.mustache") != std::string::npos);
  CHECK(header(dead[0], "original_offset") == identity.substr(identity.rfind('/') + 1));
  CHECK(postings(*queue, 1, 2s).empty());  // pages 37-40 were not mailed

  // The cause fixed, the dead letter replayed: all 40 postings, the first 36 with their ids.
  m.fix_and_replay();
  const auto second = postings(*queue, 40, 60s);
  REQUIRE(second.size() == 40);
  for (const auto& [posting_id, event_id] : second) CHECK(event_id == identity);
  for (const auto& entry : first) {
    const std::string& posting_id = entry.first;  // CAPTURE cannot take a structured binding
    CAPTURE(posting_id);
    CHECK(second.count(posting_id) == 1);
  }
  CHECK(etl->terminate() == 0);
  CHECK(m.auth->terminate() == 0);
}

TEST_CASE(
    "replay events: a mailing refused on page 37 and replayed mails only those who did not get "
    "it") {
  RefusedMailing m;
  auto etl = m.start_etl();
  // A worker on the mailing's exchange, mailing into the stack's inbox, with the stack's Redis
  // as its delivery ledger; no quiet hours, whatever the time of day.
  const Stack& stack = Stack::get();
  Process worker(stack.value("BIN_DIR") + "/worker_notifications", {},
                 {{"RABBITMQ_URL", stack.value("RABBITMQ_URL")},
                  {"RABBITMQ_EXCHANGE", m.names.exchange},
                  {"SMTP_HOST", stack.value("SMTP_HOST")},
                  {"SMTP_PORT", stack.value("SMTP_PORT")},
                  {"SMTP_FROM", "notifications@example.org"},
                  {"QUIET_HOURS", "00:00-00:00"},
                  {"LEDGER_URL", stack.value("LEDGER_URL")},
                  {"KAFKA_BOOTSTRAP_SERVERS", stack.value("KAFKA_BOOTSTRAP_SERVERS")},
                  {"LOG_LEVEL", "debug"}},
                 log_path("replay-worker"));
  const notify::testing::Inbox inbox(stack.value("INBOX_URL"));
  // Mails per user of this mailing, by number.
  const auto mails = [&] {
    std::map<int, int> by_user;
    for (const auto& mail : inbox.messages()) {
      for (int i = 1; i <= 40; ++i) {
        if (mail.dump().find("\"" + m.address(i) + "\"") != std::string::npos) ++by_user[i];
      }
    }
    return by_user;
  };
  const auto total = [](const std::map<int, int>& by_user) {
    int n = 0;
    for (const auto& entry : by_user) n += entry.second;
    return n;
  };

  INFO("etl log:\n" << etl->log());
  INFO("worker log:\n" << worker.log());
  // Its queue declared before the first posting is published.
  REQUIRE(notify::testing::wait_until(
      [&] { return count_lines(worker.log(), "rabbitmq connected") > 0; }, 20s));
  m.produce();
  REQUIRE(notify::testing::wait_until([&] { return total(mails()) == 36; }, 60s));
  REQUIRE(m.dead_letters().size() == 1);

  m.fix_and_replay();
  REQUIRE(notify::testing::wait_until([&] { return total(mails()) >= 40; }, 60s));
  // The 36 postings published again were found sent; wait for all of them, then no more mail.
  REQUIRE(notify::testing::wait_until(
      [&] {
        return count_lines(worker.log(), "posting already sent: acknowledged without sending") ==
               36;
      },
      30s));
  std::this_thread::sleep_for(1s);
  const auto by_user = mails();
  CHECK(total(by_user) == 40);
  for (int i = 1; i <= 40; ++i) {
    CAPTURE(i);
    CHECK(by_user.count(i) == 1);
    CHECK((by_user.count(i) == 1 && by_user.at(i) == 1));
  }
  CHECK(worker.terminate() == 0);
  CHECK(etl->terminate() == 0);
  CHECK(m.auth->terminate() == 0);
}
