// notify_trace against the test stack's Kafka: status events (sent, deferred, expired,
// dead_lettered, skipped, refused) and an ETL dead letter, produced out of order onto topics of
// this test, come back as one story in time order, and as JSON lines with --json.
#include <doctest/doctest.h>

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "notify/kafka.hpp"
#include "stack.hpp"

using namespace std::chrono_literals;
using nlohmann::json;
using notify::testing::Process;
using notify::testing::Stack;
using notify::testing::unique_name;

namespace {

struct Run {
  int status = -1;
  std::vector<std::string> lines;  // standard output and error, as printed
  std::string log;
};

Run trace(const std::vector<std::string>& args) {
  const auto log = Stack::get().value("STACK_DIR") + "/test-logs/" + unique_name("trace") + ".log";
  Process p(Stack::get().value("BIN_DIR") + "/notify_trace", args, {}, log);
  const auto status = p.wait(60s);
  INFO(p.log());
  REQUIRE(status.has_value());
  Run run{*status, {}, p.log()};
  std::istringstream in(run.log);
  for (std::string line; std::getline(in, line);) run.lines.push_back(line);
  return run;
}

// The lines of the story itself: those that start with a date (the statuses of this test are
// of 2020; a dead letter is placed at the time the broker took it, now).
std::vector<std::string> story(const Run& run) {
  std::vector<std::string> out;
  for (const auto& line : run.lines) {
    if (line.size() > 20 && line[4] == '-' && line[7] == '-' && line[10] == ' ') {
      out.push_back(line);
    }
  }
  return out;
}

std::vector<json> json_lines(const Run& run) {
  std::vector<json> out;
  for (const auto& line : run.lines) {
    if (line.starts_with("{")) out.push_back(json::parse(line));
  }
  return out;
}

bool printed(const Run& run, const std::string& text) {
  return run.log.find(text) != std::string::npos;
}

json status(const std::string& status, const std::string& time, const std::string& event_id,
            const json& fields) {
  json doc = {{"schema_version", 1},
              {"status", status},
              {"time", time},
              {"service", "worker_notifications"},
              {"event_id", event_id}};
  doc.update(fields);
  return doc;
}

}  // namespace

TEST_CASE("notify_trace tells the story of a user, an event and a posting") {
  const auto bootstrap = Stack::get().value("KAFKA_BOOTSTRAP_SERVERS");
  const auto status_topic = unique_name("notify_status");
  const auto dlq_topic = unique_name("notify_events.dlq");
  const auto user = unique_name("user");
  const auto signup = unique_name("signup");
  const json email = {{"user_id", user}, {"channel", "email"}};

  json sent = status("sent", "2020-12-02T07:14:09.120Z", signup,
                     {{"event_type", "user_signed_up"},
                      {"posting_id", "p-welcome"},
                      {"template", "email/welcome"},
                      {"reply", "smtp 250: 2.0.0 Ok: queued"}});
  sent.update(email);
  json deferred = status("deferred", "2020-12-01T22:00:03.000Z", signup,
                         {{"event_type", "user_signed_up"},
                          {"posting_id", "p-welcome"},
                          {"template", "email/welcome"},
                          {"reason", "quiet_hours"},
                          {"until", "2020-12-02T07:00:00.000Z"},
                          {"zone", "Europe/Berlin"}});
  deferred.update(email);
  json expired = status("expired", "2020-12-01T23:00:00.000Z", "reminder-7",
                        {{"event_type", "reminder"},
                         {"posting_id", "p-reminder"},
                         {"template", "email/reminder"},
                         {"reason", "expired"}});
  expired.update(email);
  json dead = status("dead_lettered", "2020-12-01T21:00:00.000Z", "request-3",
                     {{"event_type", "notification_requested"},
                      {"posting_id", "p-request"},
                      {"template", "email/notice"},
                      {"reason", "permanent_failure"},
                      {"attempts", 1},
                      {"last_error", "smtp 550: 5.1.1 a***@example.com unknown"}});
  dead.update(email);
  json skipped = status("skipped", "2020-12-01T20:00:00.000Z", "mailing-48",
                        {{"service", "etl_notifications"},
                         {"event_type", "mailing"},
                         {"posting_id", "p-mailing"},
                         {"template", "email/new_movies"},
                         {"reason", "opted_out"}});
  skipped.update(email);
  const std::string refused_reason = "unknown user " + user;
  const json refused = status(
      "refused", "2020-12-01T19:00:00.500Z", "reminder-8",
      {{"service", "etl_notifications"}, {"event_type", "reminder"}, {"reason", refused_reason}});

  notify::kafka::Producer producer(bootstrap);
  // Out of order, as several services write them; other users' events and garbage between.
  for (const json* doc : {&sent, &skipped, &deferred, &dead, &expired}) {
    producer.produce(status_topic, user, doc->dump());
  }
  producer.produce(status_topic, user, "not a status event");
  json someone_else = skipped;
  someone_else["user_id"] = "someone-else";
  someone_else["posting_id"] = "p-mailing-2";
  producer.produce(status_topic, std::string("someone-else"), someone_else.dump());
  producer.produce(status_topic, std::string("reminder-8"), refused.dump());
  // The refused reminder as the ETL keeps it (etl_notifications/src/dead_letters.cpp).
  producer.produce(dlq_topic, std::string("reminder-8"),
                   json{{"event_type", "reminder"},
                        {"event_id", "reminder-8"},
                        {"user_id", user},
                        {"send_at", "2020-12-02T09:00:00Z"},
                        {"template", "email/reminder"}}
                       .dump(),
                   10s,
                   {{"error", refused_reason},
                    {"original_topic", "notify_events"},
                    {"original_partition", "0"},
                    {"original_offset", "17"}});

  const std::vector<std::string> topics = {"--bootstrap", bootstrap,     "--status-topic",
                                           status_topic,  "--dlq-topic", dlq_topic};
  auto args = [&](std::vector<std::string> more) {
    more.insert(more.end(), topics.begin(), topics.end());
    return more;
  };

  SUBCASE("a user's story, in time order") {
    const auto run = trace(args({"--user", user}));
    CHECK(run.status == 0);
    const std::string skipped_line =
        "2020-12-01 20:00:00  skipped, the user opted out  email/new_movies  event mailing-48 "
        "(mailing)  posting p-mailing";
    const std::string dead_line =
        "2020-12-01 21:00:00  dead-lettered: permanent_failure, after 1 failed attempt, last "
        "error: smtp 550: 5.1.1 a***@example.com unknown  email/notice  event request-3 "
        "(notification_requested)  posting p-request";
    const std::vector<std::string> expected = {
        skipped_line,
        dead_line,
        "2020-12-01 22:00:03  deferred until 2020-12-02 08:00:00 Europe/Berlin (quiet hours)  "
        "email/welcome  event " +
            signup + " (user_signed_up)  posting p-welcome",
        std::string("2020-12-01 23:00:00  expired unsent  email/reminder  event reminder-7 "
                    "(reminder)  posting p-reminder"),
        "2020-12-02 07:14:09  sent, smtp 250: 2.0.0 Ok: queued  email/welcome  event " + signup +
            " (user_signed_up)  posting p-welcome",
    };
    auto lines = story(run);
    REQUIRE(lines.size() == expected.size() + 1);
    // The refused reminder names the user only in the event the dead-letter topic keeps (its
    // status is keyed by the event); the broker took that copy now, after every status of 2020.
    CHECK(lines.back().find("  refused, kept in the dead-letter topic at " + dlq_topic + "[") !=
          std::string::npos);
    CHECK(lines.back().ends_with("]@0: " + refused_reason + "  event reminder-8 (reminder)"));
    lines.pop_back();
    CHECK(lines == expected);
    CHECK(printed(run, "user " + user + ": 6 entries, times in UTC"));
    CHECK(printed(run, status_topic + " (8 messages, 1 undecodable skipped)"));
    CHECK(printed(run, dlq_topic + " (1 message)"));
  }

  SUBCASE("a refused event: its status and its dead letter") {
    const auto run = trace(args({"--event", "reminder-8"}));
    CHECK(run.status == 0);
    const auto lines = story(run);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == "2020-12-01 19:00:00  refused by the ETL: " + refused_reason);
    CHECK(lines[1].find("  refused, kept in the dead-letter topic at " + dlq_topic + "[") !=
          std::string::npos);
    CHECK(lines[1].ends_with("]@0: " + refused_reason + "  user " + user));
  }

  SUBCASE("an event's story, in another zone") {
    const auto run = trace(args({"--event", signup, "--zone", "Europe/Berlin"}));
    CHECK(run.status == 0);
    CHECK(story(run) ==
          std::vector<std::string>{
              "2020-12-01 23:00:03  deferred until 2020-12-02 08:00:00 Europe/Berlin (quiet "
              "hours)  email/welcome  user " +
                  user + "  posting p-welcome",
              "2020-12-02 08:14:09  sent, smtp 250: 2.0.0 Ok: queued  email/welcome  user " + user +
                  "  posting p-welcome"});
    CHECK(printed(run, "times in Europe/Berlin"));
  }

  SUBCASE("a posting's story") {
    const auto run = trace(args({"--posting", "p-mailing"}));
    CHECK(run.status == 0);
    CHECK(story(run) == std::vector<std::string>{
                            "2020-12-01 20:00:00  skipped, the user opted out  email/new_movies  "
                            "event mailing-48 (mailing)  user " +
                            user});
  }

  SUBCASE("--json: the events as they are on the topic, in time order") {
    const auto run = trace(args({"--user", user, "--json"}));
    CHECK(run.status == 0);
    const auto lines = json_lines(run);
    REQUIRE(lines.size() == 6);
    CHECK(lines[0] == skipped);
    CHECK(lines[1] == dead);
    CHECK(lines[2] == deferred);
    CHECK(lines[3] == expired);
    CHECK(lines[4] == sent);
    CHECK(lines[5]["dead_letter"]["topic"] == dlq_topic);
    CHECK(lines[5]["dead_letter"]["offset"] == 0);
    CHECK(lines[5]["event_id"] == "reminder-8");
    CHECK(lines[5]["event_type"] == "reminder");
    CHECK(lines[5]["user_id"] == user);
    CHECK(lines[5]["reason"] == refused_reason);
    CHECK(story(run).empty());
  }

  SUBCASE("nothing found: said, with the topics read, and exit status 1") {
    const auto run = trace(args({"--user", "nobody-" + user}));
    CHECK(run.status == 1);
    CHECK(printed(run, "nothing found for user nobody-" + user + " in " + status_topic +
                           " (8 messages, 1 undecodable skipped) and " + dlq_topic +
                           " (1 message)"));
  }

  SUBCASE("bad usage: exactly one selection") {
    CHECK(trace(args({})).status == 2);
    CHECK(trace(args({"--user", user, "--event", signup})).status == 2);
    CHECK(trace(args({"--user", user, "--zone", "Mars/Base"})).status == 2);
  }
}
