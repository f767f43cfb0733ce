// notify_trace's story without a broker: every status of the contract (documentation/status.md)
// as a person reads it, the ETL's dead letters, selection, time order, and bad input skipped.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "notify/time.hpp"
#include "trace_story.hpp"

using namespace notify::trace;
using nlohmann::json;

namespace {

const Selection kByEvent{Selection::By::kEvent, "signup-1"};

// A status event of the contract with `fields` added to the common ones.
json status(const std::string& status, const std::string& time,
            const json& fields = json::object()) {
  json doc = {{"schema_version", 1},
              {"status", status},
              {"time", time},
              {"service", "worker_notifications"},
              {"event_id", "signup-1"},
              {"event_type", "user_signed_up"},
              {"posting_id", "8d7c0a1f"},
              {"user_id", "u-1"},
              {"channel", "email"},
              {"template", "email/welcome"}};
  doc.update(fields);
  return doc;
}

Entry decoded(const json& doc) {
  auto entry = decode_status(doc.dump());
  REQUIRE(entry.has_value());
  return *entry;
}

std::string line(const json& doc, const Selection& selection = kByEvent,
                 const date::time_zone* zone = nullptr) {
  return story_line(decoded(doc), selection, zone);
}

notify::kafka::Message dead_letter(const std::string& value, notify::kafka::Headers headers,
                                   std::int64_t offset = 12) {
  notify::kafka::Message m;
  m.topic = "notify_events.dlq";
  m.partition = 0;
  m.offset = offset;
  m.value = value;
  m.timestamp_ms = 1796126403000;  // 2026-12-01T12:00:03Z
  m.headers = std::move(headers);
  return m;
}

const notify::kafka::Headers kOrigin = {{"error", "unknown user u-9"},
                                        {"original_topic", "notify_events"},
                                        {"original_partition", "0"},
                                        {"original_offset", "41"}};

notify::kafka::Message status_message(const std::string& value) {
  notify::kafka::Message m;
  m.topic = "notify_status";
  m.value = value;
  return m;
}

}  // namespace

TEST_CASE("every status of the contract reads as a person says it") {
  const std::string tail = "  email/welcome  user u-1  posting 8d7c0a1f";

  CHECK(
      line(status("sent", "2026-12-02T07:14:09.120Z", {{"reply", "smtp 250: 2.0.0 Ok: queued"}})) ==
      "2026-12-02 07:14:09  sent, smtp 250: 2.0.0 Ok: queued" + tail);
  CHECK(line(status("sent", "2026-12-02T07:14:09Z")) == "2026-12-02 07:14:09  sent" + tail);

  // The window's end as the recipient's clock shows it (CET is UTC+1 in December).
  CHECK(line(status("deferred", "2026-12-01T22:00:03.000Z",
                    {{"reason", "quiet_hours"},
                     {"until", "2026-12-02T07:00:00.000Z"},
                     {"zone", "Europe/Berlin"}})) ==
        "2026-12-01 22:00:03  deferred until 2026-12-02 08:00:00 Europe/Berlin (quiet hours)" +
            tail);
  CHECK(line(status("deferred", "2026-12-01T12:00:00Z",
                    {{"reason", "scheduled"},
                     {"until", "2026-12-03T09:30:00Z"},
                     {"zone", "America/New_York"}})) ==
        "2026-12-01 12:00:00  deferred until 2026-12-03 04:30:00 America/New_York (scheduled)" +
            tail);
  CHECK(line(status("deferred", "2026-12-01T12:00:05Z",
                    {{"reason", "retry"},
                     {"until", "2026-12-01T12:01:05Z"},
                     {"attempts", 2},
                     {"last_error", "smtp 451: 4.7.1 Try again later\r\n"}})) ==
        "2026-12-01 12:00:05  deferred until 2026-12-01 12:01:05 UTC (retry after 2 failed "
        "attempts: smtp 451: 4.7.1 Try again later  )" +
            tail);
  CHECK(line(status("deferred", "2026-12-01T12:00:05Z",
                    {{"reason", "retry"}, {"until", "2026-12-01T12:00:35Z"}, {"attempts", 1}})) ==
        "2026-12-01 12:00:05  deferred until 2026-12-01 12:00:35 UTC (retry after 1 failed "
        "attempt)" +
            tail);
  CHECK(line(status("deferred", "2026-12-01T12:00:05Z",
                    {{"reason", "throttled"}, {"until", "2026-12-01T12:00:06Z"}})) ==
        "2026-12-01 12:00:05  deferred until 2026-12-01 12:00:06 UTC (throttled)" + tail);
  CHECK(line(status("deferred", "2026-12-01T12:00:05Z",
                    {{"reason", "claimed"}, {"until", "2026-12-01T12:00:35Z"}})) ==
        "2026-12-01 12:00:05  deferred until 2026-12-01 12:00:35 UTC (another worker holds its "
        "claim)" +
            tail);

  CHECK(line(status("expired", "2026-12-03T12:00:00Z", {{"reason", "expired"}})) ==
        "2026-12-03 12:00:00  expired unsent" + tail);
  CHECK(line(status("expired", "2026-12-01T22:00:00Z", {{"reason", "expired_before_window"}})) ==
        "2026-12-01 22:00:00  expired: its delivery window would open only after it expires" +
            tail);

  CHECK(line(status("dead_lettered", "2026-12-01T12:05:00Z",
                    {{"reason", "attempts_exhausted"},
                     {"attempts", 8},
                     {"last_error", "smtp 452: 4.2.2 a***@example.com mailbox full"}})) ==
        "2026-12-01 12:05:00  dead-lettered: attempts_exhausted, after 8 failed attempts, last "
        "error: smtp 452: 4.2.2 a***@example.com mailbox full" +
            tail);
  CHECK(line(status("dead_lettered", "2026-12-01T12:05:00Z",
                    {{"reason", "permanent_failure"},
                     {"attempts", 1},
                     {"last_error", "smtp 550: 5.1.1 no such user"}})) ==
        "2026-12-01 12:05:00  dead-lettered: permanent_failure, after 1 failed attempt, last "
        "error: smtp 550: 5.1.1 no such user" +
            tail);

  CHECK(line(status("duplicate_suppressed", "2026-12-01T12:00:09Z", {{"reason", "redelivered"}})) ==
        "2026-12-01 12:00:09  duplicate suppressed, already sent (a redelivered copy)" + tail);
  CHECK(line(status("duplicate_suppressed", "2026-12-01T12:00:09Z", {{"reason", "retry_copy"}})) ==
        "2026-12-01 12:00:09  duplicate suppressed, already sent (a copy of a retry)" + tail);
  CHECK(line(status("duplicate_suppressed", "2026-12-01T12:00:09Z", {{"reason", "republished"}})) ==
        "2026-12-01 12:00:09  duplicate suppressed, already sent (published again)" + tail);

  const json etl = {{"service", "etl_notifications"}};
  json skipped = status("skipped", "2026-12-01T12:00:01Z", etl);
  skipped["reason"] = "opted_out";
  CHECK(line(skipped) == "2026-12-01 12:00:01  skipped, the user opted out" + tail);
  skipped["reason"] = "inactive";
  CHECK(line(skipped) == "2026-12-01 12:00:01  skipped, the user is inactive" + tail);
  skipped["reason"] = "no_address";
  CHECK(line(skipped) == "2026-12-01 12:00:01  skipped, the user has no address" + tail);

  // A refused event has no recipient or posting of its own.
  const json refused = {{"schema_version", 1},
                        {"status", "refused"},
                        {"time", "2026-12-01T12:00:01.250Z"},
                        {"service", "etl_notifications"},
                        {"event_id", "signup-1"},
                        {"event_type", "user_signed_up"},
                        {"reason", "unknown user u-9"}};
  CHECK(line(refused) == "2026-12-01 12:00:01  refused by the ETL: unknown user u-9");
  CHECK(line(refused, {Selection::By::kUser, "u-9"}) ==
        "2026-12-01 12:00:01  refused by the ETL: unknown user u-9  event signup-1 "
        "(user_signed_up)");

  // A status of a later contract is shown as it comes, not skipped.
  CHECK(line(status("bounced", "2026-12-01T12:00:01Z", {{"reason", "mailbox full"}})) ==
        "2026-12-01 12:00:01  bounced: mailbox full" + tail);
}

TEST_CASE("a line names the ids the selection does not") {
  const json sent = status("sent", "2026-12-02T07:14:09Z", {{"reply", "http 204"}});
  CHECK(line(sent, {Selection::By::kUser, "u-1"}) ==
        "2026-12-02 07:14:09  sent, http 204  email/welcome  event signup-1 (user_signed_up)  "
        "posting 8d7c0a1f");
  CHECK(line(sent, {Selection::By::kPosting, "8d7c0a1f"}) ==
        "2026-12-02 07:14:09  sent, http 204  email/welcome  event signup-1 (user_signed_up)  "
        "user u-1");
}

TEST_CASE("a line names the channel once: the templates are named for theirs") {
  json sent = status("sent", "2026-12-02T07:14:09Z", {{"reply", "http 204"}});
  sent["channel"] = "webhook";
  sent["template"] = "email/generic";
  CHECK(line(sent) ==
        "2026-12-02 07:14:09  sent, http 204  webhook email/generic  user u-1  posting 8d7c0a1f");
  sent.erase("template");
  CHECK(line(sent) == "2026-12-02 07:14:09  sent, http 204  webhook  user u-1  posting 8d7c0a1f");
  sent.erase("channel");
  sent["template"] = "notice";
  CHECK(line(sent) == "2026-12-02 07:14:09  sent, http 204  notice  user u-1  posting 8d7c0a1f");
}

TEST_CASE("times are shown in UTC, or in the zone asked for") {
  const auto t = *notify::parse_iso8601("2026-07-01T12:00:03.999Z");
  CHECK(format_time(t, nullptr) == "2026-07-01 12:00:03");
  CHECK(format_time(t, date::locate_zone("Europe/Berlin")) == "2026-07-01 14:00:03");
  CHECK(format_time(t, date::locate_zone("Asia/Tokyo")) == "2026-07-01 21:00:03");
  // A deferral without a zone of its own ends in the zone of the story.
  const json deferred = status("deferred", "2026-07-01T12:00:03Z",
                               {{"reason", "throttled"}, {"until", "2026-07-01T12:00:04Z"}});
  CHECK(
      line(deferred, kByEvent, date::locate_zone("Europe/Berlin"))
          .starts_with(
              "2026-07-01 14:00:03  deferred until 2026-07-01 14:00:04 Europe/Berlin (throttled)"));
  // A zone this machine does not know: the end in the story's zone, and that said.
  const json elsewhere =
      status("deferred", "2026-07-01T12:00:03Z",
             {{"reason", "quiet_hours"}, {"until", "2026-07-02T06:00:00Z"}, {"zone", "Mars/Base"}});
  CHECK(
      line(elsewhere).starts_with("2026-07-01 12:00:03  deferred until 2026-07-02 06:00:00 UTC "
                                  "(zone Mars/Base unknown here) (quiet hours)"));
}

TEST_CASE("a status event is decoded only when it keeps to the contract") {
  const json good = status("sent", "2026-12-02T07:14:09.120Z", {{"attempts", 0}});
  CHECK(decode_status(good.dump()).has_value());

  SUBCASE("unknown fields are kept, for --json") {
    json doc = good;
    doc["smtp_host"] = "mx.example.com";
    const auto entry = decoded(doc);
    CHECK(json::parse(json_line(entry)) == doc);
  }
  SUBCASE("not a status event") {
    for (const std::string value :
         {"", "not json", "[1,2]", "42", R"({"status":"sent"})", "{\"status\":\"sent\"} x"}) {
      CAPTURE(value);
      CHECK_FALSE(decode_status(value).has_value());
    }
    auto without = [&](const char* name) {
      json doc = good;
      doc.erase(name);
      return doc.dump();
    };
    CHECK_FALSE(decode_status(without("status")).has_value());
    CHECK_FALSE(decode_status(without("time")).has_value());
    CHECK_FALSE(decode_status(without("event_id")).has_value());
    auto with = [&](const char* name, json value) {
      json doc = good;
      doc[name] = std::move(value);
      return doc.dump();
    };
    CHECK_FALSE(decode_status(with("time", "yesterday")).has_value());
    CHECK_FALSE(decode_status(with("until", "soon")).has_value());
    CHECK_FALSE(decode_status(with("user_id", 42)).has_value());
    CHECK_FALSE(decode_status(with("status", nullptr)).has_value());
    CHECK_FALSE(decode_status(with("attempts", "3")).has_value());
    CHECK_FALSE(decode_status(with("attempts", 1.5)).has_value());
    CHECK_FALSE(decode_status(with("event_id", "")).has_value());
    CHECK_FALSE(decode_status(std::string(100, '[') + std::string(100, ']')).has_value());
    CHECK_FALSE(decode_status(with("reply", std::string(70 * 1024, 'x'))).has_value());
  }
}

TEST_CASE("the ETL's dead letters: who the refused event was for, and why") {
  SUBCASE("a sign-up: its user is the event's id") {
    const auto e = decode_dead_letter(dead_letter(
        R"({"id":"u-9","event_type":"user_signed_up","event_id":"signup-9","details":{}})",
        kOrigin));
    REQUIRE(e.has_value());
    CHECK(e->event_id == "signup-9");
    CHECK(e->user_id == "u-9");
    CHECK(story_line(*e, {Selection::By::kUser, "u-9"}, nullptr) ==
          "2026-12-01 12:00:03  refused, kept in the dead-letter topic at "
          "notify_events.dlq[0]@12: unknown user u-9  event signup-9 (user_signed_up)");
    CHECK(json::parse(json_line(*e)) ==
          json{{"dead_letter", {{"topic", "notify_events.dlq"}, {"partition", 0}, {"offset", 12}}},
               {"time", "2026-12-01T12:00:03.000Z"},
               {"service", "etl_notifications"},
               {"event_id", "signup-9"},
               {"event_type", "user_signed_up"},
               {"user_id", "u-9"},
               {"reason", "unknown user u-9"}});
  }
  SUBCASE("a mailing's id is no user") {
    const auto e = decode_dead_letter(
        dead_letter(R"({"id":"x","event_type":"mailing","event_id":"m-1"})", kOrigin));
    REQUIRE(e.has_value());
    CHECK(e->user_id.empty());
  }
  SUBCASE("a reminder names its user") {
    const auto e = decode_dead_letter(
        dead_letter(R"({"event_type":"reminder","user_id":"u-3","send_at":"x"})", kOrigin));
    REQUIRE(e.has_value());
    CHECK(e->user_id == "u-3");
    // No event_id: known by its first arrival, as the ETL names it.
    CHECK(e->event_id == "notify_events/0/41");
  }
  SUBCASE("a request to many users is found by any of them") {
    const auto e = decode_dead_letter(dead_letter(
        R"({"event_type":"notification_requested","event_id":"r-1","user_ids":["a","b","c","d"]})",
        kOrigin));
    REQUIRE(e.has_value());
    CHECK(selects({Selection::By::kUser, "c"}, *e));
    CHECK_FALSE(selects({Selection::By::kUser, "e"}, *e));
    CHECK(story_line(*e, {Selection::By::kEvent, "r-1"}, nullptr) ==
          "2026-12-01 12:00:03  refused, kept in the dead-letter topic at "
          "notify_events.dlq[0]@12: unknown user u-9  users a, b, c, ... (4 in all)");
  }
  SUBCASE("a value that is no JSON, a shortened copy, is still a dead letter") {
    auto headers = kOrigin;
    headers.emplace_back("truncated", "true");
    headers[0].second = "value is not JSON:\nline 1";
    const auto e = decode_dead_letter(dead_letter(R"({"id":"u-9","event_ty)", headers));
    REQUIRE(e.has_value());
    CHECK(e->event_id == "notify_events/0/41");
    CHECK(story_line(*e, {Selection::By::kEvent, "notify_events/0/41"}, nullptr) ==
          "2026-12-01 12:00:03  refused, kept in the dead-letter topic at "
          "notify_events.dlq[0]@12 (a shortened copy): value is not JSON: line 1");
  }
  SUBCASE("without an identity or a time it cannot be placed") {
    CHECK_FALSE(decode_dead_letter(dead_letter("garbage", {{"error", "x"}})).has_value());
    auto no_time = dead_letter(R"({"event_id":"e"})", kOrigin);
    no_time.timestamp_ms.reset();
    CHECK_FALSE(decode_dead_letter(no_time).has_value());
  }
}

TEST_CASE("a story: what the selection finds, in time order, bad input counted") {
  Story story({Selection::By::kUser, "u-1"}, 10);
  story.add_status(status_message(status("sent", "2026-12-02T07:14:09Z").dump()));
  story.add_status(status_message("{not json"));
  json other = status("skipped", "2026-12-01T12:00:00Z", {{"reason", "opted_out"}});
  other["user_id"] = "u-2";
  story.add_status(status_message(other.dump()));
  story.add_status(
      status_message(status("deferred", "2026-12-01T22:00:03Z",
                            {{"reason", "quiet_hours"}, {"until", "2026-12-02T07:00:00Z"}})
                         .dump()));
  story.add_dead_letter(dead_letter(R"({"event_type":"reminder","user_id":"u-1"})", kOrigin));
  story.add_dead_letter(dead_letter("x", {}));

  CHECK(story.status_read() == 4);
  CHECK(story.status_undecodable() == 1);
  CHECK(story.dead_letters_read() == 2);
  CHECK(story.dead_letters_undecodable() == 1);
  CHECK(story.matched() == 3);
  std::vector<std::string> order;
  for (const auto& e : story.entries())
    order.push_back(e.status.empty() ? "dead letter" : e.status);
  CHECK(order == std::vector<std::string>{"dead letter", "deferred", "sent"});

  SUBCASE("at most the limit, the first read") {
    Story small({Selection::By::kEvent, "signup-1"}, 1);
    small.add_status(status_message(status("sent", "2026-12-02T07:14:09Z").dump()));
    small.add_status(status_message(status("expired", "2026-12-01T07:14:09Z").dump()));
    CHECK(small.matched() == 2);
    REQUIRE(small.entries().size() == 1);
    CHECK(small.entries()[0].status == "sent");
  }
  SUBCASE("by posting") {
    Story by_posting({Selection::By::kPosting, "8d7c0a1f"}, 10);
    by_posting.add_status(status_message(status("sent", "2026-12-02T07:14:09Z").dump()));
    by_posting.add_dead_letter(dead_letter(R"({"event_id":"signup-1"})", kOrigin));
    CHECK(by_posting.matched() == 1);
  }
}
