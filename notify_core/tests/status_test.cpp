// Status events as JSON: the exact bytes of the contract (documentation/status.md), absent
// fields omitted, and decode() reading back what encode() wrote.

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "notify/status.hpp"
#include "notify/time.hpp"

using notify::parse_iso8601;
using notify::status::Event;

namespace {

Event full() {
  Event e;
  e.status = "dead_lettered";
  e.time = *parse_iso8601("2026-11-23T10:00:03.250Z");
  e.service = "worker_notifications";
  e.event_id = "notify_events/0/42";
  e.event_type = "user_signed_up";
  e.posting_id = "6f1c1f2e-8a4b-5c3d-9e0f-123456789abc";
  e.user_id = "user-1";
  e.channel = "email";
  e.template_name = "email/welcome";
  e.reason = "permanent_failure";
  e.until = *parse_iso8601("2026-11-24T07:00:00Z");
  e.zone = "Europe/Berlin";
  e.reply = "smtp 250: 2.0.0 Ok: queued";
  e.attempts = 3;
  e.last_error = "smtp 550: 5.1.1 a***@example.com: mailbox unknown";
  return e;
}

}  // namespace

TEST_CASE("status: every field is written, in the contract's order") {
  CHECK(notify::status::encode(full()) ==
        R"({"schema_version":1,"status":"dead_lettered","time":"2026-11-23T10:00:03.250Z",)"
        R"("service":"worker_notifications","event_id":"notify_events/0/42",)"
        R"("event_type":"user_signed_up","posting_id":"6f1c1f2e-8a4b-5c3d-9e0f-123456789abc",)"
        R"("user_id":"user-1","channel":"email","template":"email/welcome",)"
        R"("reason":"permanent_failure","until":"2026-11-24T07:00:00.000Z",)"
        R"("zone":"Europe/Berlin","reply":"smtp 250: 2.0.0 Ok: queued","attempts":3,)"
        R"("last_error":"smtp 550: 5.1.1 a***@example.com: mailbox unknown"})");
}

TEST_CASE("status: absent fields are omitted, never null") {
  Event e;
  e.status = "refused";
  e.time = *parse_iso8601("2026-11-23T10:00:00Z");
  e.service = "etl_notifications";
  e.event_id = "notify_events/2/7";
  e.reason = "no user_id";
  CHECK(notify::status::encode(e) ==
        R"({"schema_version":1,"status":"refused","time":"2026-11-23T10:00:00.000Z",)"
        R"("service":"etl_notifications","event_id":"notify_events/2/7","reason":"no user_id"})");

  // attempts 0 is a value (a deferral before any failed send), not an absence.
  Event sent;
  sent.status = "deferred";
  sent.time = *parse_iso8601("2026-11-23T22:00:00Z");
  sent.service = "worker_notifications";
  sent.user_id = "u";
  sent.attempts = 0;
  CHECK(notify::status::encode(sent) ==
        R"({"schema_version":1,"status":"deferred","time":"2026-11-23T22:00:00.000Z",)"
        R"("service":"worker_notifications","user_id":"u","attempts":0})");
}

TEST_CASE("status: texts are escaped, bytes that are not UTF-8 replaced instead of throwing") {
  Event e = full();
  e.last_error = "line\n\"quoted\"\x01";
  e.reply = std::string("bad \xff\xfe bytes");
  const std::string json = notify::status::encode(e);
  const auto parsed = nlohmann::json::parse(json);
  CHECK(parsed["last_error"] == "line\n\"quoted\"\x01");
  CHECK(parsed["reply"] == "bad \xEF\xBF\xBD\xEF\xBF\xBD bytes");
  CHECK(json.find('\n') == std::string::npos);  // one line per event
}

TEST_CASE("status: decode reads back what encode wrote") {
  const Event e = full();
  CHECK(notify::status::decode(notify::status::encode(e)) == e);

  Event minimal;
  minimal.status = "sent";
  minimal.time = *parse_iso8601("2026-11-23T10:00:00.001Z");
  minimal.service = "worker_notifications";
  CHECK(notify::status::decode(notify::status::encode(minimal)) == minimal);

  // Unknown fields (a later schema) are ignored.
  const Event later = notify::status::decode(
      R"({"schema_version":2,"status":"sent","time":"2026-11-23T10:00:00.001Z",)"
      R"("service":"worker_notifications","new_field":{"a":[1]}})");
  CHECK(later == minimal);
}

TEST_CASE("status: decode names what is wrong") {
  using notify::status::decode;
  CHECK_THROWS_WITH_AS(decode("[]"), "status event: not a JSON object", std::invalid_argument);
  CHECK_THROWS_WITH_AS(decode(R"({"time":"2026-11-23T10:00:00Z","service":"s"})"),
                       "status event: no status", std::invalid_argument);
  CHECK_THROWS_WITH_AS(decode(R"({"status":"sent","time":"noon","service":"s"})"),
                       "status event: time is not a time", std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      decode(R"({"status":"sent","time":"2026-11-23T10:00:00Z","service":"s","attempts":"3"})"),
      "status event: attempts is not an integer", std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      decode(R"({"status":"sent","time":"2026-11-23T10:00:00Z","service":"s","user_id":7})"),
      "status event: user_id is not a string", std::invalid_argument);
  CHECK_THROWS_AS(decode("{"), std::invalid_argument);
}

TEST_CASE("status: the key is the user id, else the event id") {
  Event e = full();
  CHECK(notify::status::key_of(e) == "user-1");
  e.user_id.clear();
  CHECK(notify::status::key_of(e) == "notify_events/0/42");
}
