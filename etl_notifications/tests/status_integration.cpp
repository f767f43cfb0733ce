// The ETL's status events on the test stack's Kafka: a recipient who opted out and an event
// refused into the dead-letter topic both appear on the status topic (NOTIFY_STATUS_TOPIC),
// keyed by the user and by the event, and notify_trace tells them.

#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "etl_process.hpp"
#include "notify/amqp.hpp"
#include "notify/kafka.hpp"
#include "notify/posting.hpp"
#include "notify/status.hpp"
#include "stack.hpp"

using namespace std::chrono_literals;
using notify::testing::Stack;
using notify::testing::unique_name;
using notify::testing::wait_until;

namespace {

// The status topic's messages now; none while it does not exist yet.
std::vector<notify::kafka::Message> status_messages(const std::string& topic) {
  std::vector<notify::kafka::Message> out;
  try {
    notify::kafka::read_topic_to_end(Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"), topic,
                                     [&](const notify::kafka::Message& m) {
                                       out.push_back(m);
                                       return true;
                                     });
  } catch (const notify::kafka::Error&) {
  }
  return out;
}

}  // namespace

TEST_CASE("status events: an opted-out recipient and a refused event appear on the status topic") {
  notify::testing::EtlNames names;
  const std::string opted = unique_name("opted");
  const std::string reader = unique_name("reader");
  nlohmann::json users = nlohmann::json::array();
  for (const auto& [id, notifications] : {std::pair{opted, false}, std::pair{reader, true}}) {
    users.push_back({{"id", id},
                     {"email", id + "@example.com"},
                     {"first_name", "F"},
                     {"email_notifications", notifications},
                     {"active", true}});
  }
  httplib::Client auth(Stack::get().value("AUTH_URL"));
  const auto added = auth.Post("/_dev/users", users.dump(), "application/json");
  REQUIRE(added);
  REQUIRE(added->status / 100 == 2);

  auto email = notify::testing::postings_consumer(names, "email", 10);
  notify::kafka::Producer producer(Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"));
  const std::string request_id = unique_name("req");
  producer.produce(names.topic, request_id,
                   nlohmann::json{{"event_type", "notification_requested"},
                                  {"event_id", request_id},
                                  {"user_ids", {opted, reader}},
                                  {"template", "email/generic"},
                                  {"template_context", {{"title", "Hi"}, {"message", "Hello"}}}}
                       .dump());
  const auto bad = producer.produce(names.topic, std::string("bad"), "{not json");
  const std::string bad_id =
      names.topic + "/" + std::to_string(bad.partition) + "/" + std::to_string(bad.offset);

  auto etl = notify::testing::start_etl(names);
  // The reader's posting goes out as before.
  std::optional<notify::amqp::Delivery> posting;
  wait_until([&] { return (posting = email->next(200ms)).has_value(); }, 60s);
  INFO("etl log:\n" << etl->log());
  REQUIRE(posting.has_value());
  CHECK(notify::decode_posting(posting->body).recipient.user_id == reader);

  std::vector<notify::kafka::Message> messages;
  CHECK(wait_until(
      [&] {
        messages = status_messages(names.status_topic);
        return messages.size() >= 2;
      },
      30s));
  REQUIRE(messages.size() == 2);
  std::map<std::string, std::pair<std::string, notify::status::Event>> by_status;
  for (const auto& m : messages) {
    const auto e = notify::status::decode(m.value);
    by_status[e.status] = {m.key.value_or(""), e};
  }
  REQUIRE(by_status.count("skipped") == 1);
  REQUIRE(by_status.count("refused") == 1);

  const auto& [skipped_key, skipped] = by_status["skipped"];
  CHECK(skipped_key == opted);
  CHECK(skipped.service == "etl_notifications");
  CHECK(skipped.event_id == request_id);
  CHECK(skipped.event_type == "notification_requested");
  CHECK(skipped.user_id == opted);
  CHECK(skipped.channel == "email");
  CHECK(skipped.template_name == "email/generic");
  CHECK(skipped.reason == "opted_out");
  CHECK(skipped.posting_id == notify::make_posting_id(request_id, opted, "email"));

  const auto& [refused_key, refused] = by_status["refused"];
  CHECK(refused_key == bad_id);
  CHECK(refused.service == "etl_notifications");
  CHECK(refused.event_id == bad_id);
  CHECK(refused.reason == "value is not valid JSON");
  CHECK(refused.user_id.empty());
  // Both happened just now.
  const auto now = std::chrono::system_clock::now();
  CHECK(refused.time > now - 2min);
  CHECK(skipped.time <= now);
  CHECK(etl->terminate() == 0);

  // notify_trace tells both, the refusal also from the dead-letter topic.
  auto trace = [&](const std::string& event_id) {
    notify::testing::Process p(
        Stack::get().value("BIN_DIR") + "/notify_trace",
        {"--bootstrap", Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"), "--status-topic",
         names.status_topic, "--dlq-topic", names.topic + ".dlq", "--event", event_id},
        {}, Stack::get().value("STACK_DIR") + "/test-logs/" + unique_name("trace") + ".log");
    const auto status = p.wait(60s);
    INFO(p.log());
    REQUIRE(status.has_value());
    CHECK(*status == 0);
    return p.log();
  };
  const std::string request_story = trace(request_id);
  CHECK(request_story.find("  skipped, the user opted out  email/generic  user " + opted +
                           "  posting " + skipped.posting_id + "\n") != std::string::npos);
  const std::string refused_story = trace(bad_id);
  CHECK(refused_story.find("  refused by the ETL: value is not valid JSON\n") != std::string::npos);
  CHECK(refused_story.find("  refused, kept in the dead-letter topic at " + names.topic +
                           ".dlq[") != std::string::npos);
}
