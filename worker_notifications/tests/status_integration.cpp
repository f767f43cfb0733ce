// The worker's status events through real brokers: a scripted scenario (one posting sent, one
// deferred by quiet hours in a recipient's zone where it is night now, one expired, one refused
// for good by the SMTP server) and the status topic on the stack's Kafka read back: exactly
// those four events, keyed by user id, with their fields; the deferral's later hop through the
// delay queues adds none.

#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "notify/kafka.hpp"
#include "notify/status.hpp"
#include "notify/time.hpp"
#include "worker_fixture.hpp"

using namespace worker::testing;

namespace {

struct StatusMessage {
  std::string key;
  notify::status::Event event;
};

// Every status event the topic holds now (none while it does not exist yet).
std::vector<StatusMessage> status_events(const std::string& topic) {
  std::vector<StatusMessage> out;
  try {
    notify::kafka::read_topic_to_end(
        Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"), topic, [&](const notify::kafka::Message& m) {
          out.push_back({m.key.value_or(""), notify::status::decode(m.value)});
          return true;
        });
  } catch (const notify::kafka::Error&) {
    out.clear();  // not created yet
  }
  return out;
}

// A fixed-offset IANA zone where the local time is 02:xx now, and the instant 08:00 there, when
// QUIET_HOURS=22:00-08:00 end for it.
struct NightZone {
  std::string name;
  notify::TimePoint quiet_until;
};
NightZone zone_at_night(notify::TimePoint now) {
  using namespace std::chrono;
  const auto utc_hour = static_cast<int>(floor<hours>(now - floor<days>(now)).count());
  int offset = ((2 - utc_hour) % 24 + 24) % 24;  // hours east of UTC
  if (offset > 14) offset -= 24;                 // Etc/GMT zones span -12 .. +14
  // POSIX signs: Etc/GMT-2 is two hours east of UTC.
  const std::string name = offset == 0  ? "Etc/GMT"
                           : offset > 0 ? "Etc/GMT-" + std::to_string(offset)
                                        : "Etc/GMT+" + std::to_string(-offset);
  const auto local = now + hours(offset);
  const notify::TimePoint local_eight = floor<days>(local) + hours(8);
  return {name, local_eight - hours(offset)};
}

}  // namespace

TEST_CASE("status: sent, deferred, expired and dead-lettered postings report exactly that") {
  Fixture f;
  auto worker = f.start_worker({{"QUIET_HOURS", "22:00-08:00"}});
  INFO("worker log:\n" << tail(worker->log()));
  const auto started = now_ms();

  // Refused for good: the SMTP server's 550 quotes the address, the event masks it. Alone
  // first, so the scripted refusal meets this posting's RCPT and no other.
  auto refused = f.posting("Refused");
  refused.recipient.user_id = "user-refused";
  f.sink.script(SmtpStage::kRcpt, "550 5.1.1 <ann@example.com>: Recipient address rejected", 1);
  f.publish(refused);
  REQUIRE(wait_until([&] { return !entries(*worker, "posting dead-lettered").empty(); }, 10s));

  auto sent = f.posting("Sent");
  sent.recipient.user_id = "user-sent";
  auto expired = f.posting("Expired");
  expired.recipient.user_id = "user-expired";
  expired.created_at -= std::chrono::hours(2);
  expired.expires_at = now_ms() - std::chrono::minutes(1);
  auto deferred = f.posting("Deferred", 5, notify::QuietHours::kRespect);
  deferred.recipient.user_id = "user-deferred";
  const NightZone night = zone_at_night(now_ms());
  deferred.recipient.timezone = night.name;
  deferred.expires_at = now_ms() + std::chrono::hours(12);  // outlives the night
  f.publish(std::vector<notify::Posting>{sent, expired, deferred});

  REQUIRE(f.sink.wait_for_messages(1, 10s));
  REQUIRE(wait_until([&] { return status_events(f.status_topic).size() >= 4; }, 15s));
  // The deferred posting comes back from its delay queue (the longest tier is 5 s) and goes on
  // to the next hop: that reports nothing.
  REQUIRE(wait_until(
      [&] {
        return !entries(*worker, "posting deferred",
                        {{"posting_id", deferred.posting_id}, {"reason", "deferred"}})
                    .empty();
      },
      15s));
  CHECK(worker->terminate() == 0);
  const auto ended = now_ms();

  const auto messages = status_events(f.status_topic);
  REQUIRE(messages.size() == 4);  // nothing more after the worker stopped either
  std::map<std::string, notify::status::Event> by_posting;
  for (const auto& m : messages) {
    CAPTURE(notify::status::encode(m.event));
    CHECK(m.key == m.event.user_id);  // keyed by the recipient
    CHECK(m.event.time >= started);
    CHECK(m.event.time <= ended);
    by_posting[m.event.posting_id] = m.event;
  }
  REQUIRE(by_posting.size() == 4);

  // The fields every event carries, from the posting; the time checked above.
  const auto expected = [&](const notify::Posting& p, const char* status) {
    notify::status::Event e;
    e.status = status;
    e.time = by_posting[p.posting_id].time;
    e.service = "worker_notifications";
    e.event_id = p.event_id;
    e.event_type = p.event_type;
    e.posting_id = p.posting_id;
    e.user_id = p.recipient.user_id;
    e.channel = "email";
    e.template_name = p.template_name;
    return e;
  };

  auto want_sent = expected(sent, "sent");
  want_sent.reply = "smtp 250: 2.0.0 Ok: queued as 1";  // the sink's reply to the first mail
  CHECK(by_posting[sent.posting_id] == want_sent);

  auto want_deferred = expected(deferred, "deferred");
  want_deferred.reason = "quiet_hours";
  want_deferred.until = night.quiet_until;
  want_deferred.zone = night.name;
  CHECK(by_posting[deferred.posting_id] == want_deferred);

  auto want_expired = expected(expired, "expired");
  want_expired.reason = "expired";
  CHECK(by_posting[expired.posting_id] == want_expired);

  auto got_dead = by_posting[refused.posting_id];
  // After the server's reply libcurl adds its own words: compared up to there.
  const std::string reply = "smtp 550: 550 5.1.1 <a***@example.com>: Recipient address rejected";
  CHECK(got_dead.last_error.substr(0, reply.size()) == reply);
  CHECK(got_dead.last_error.find("ann@example.com") == std::string::npos);
  auto want_dead = expected(refused, "dead_lettered");
  want_dead.reason = "permanent_failure";
  want_dead.attempts = 1;
  want_dead.last_error = got_dead.last_error;
  CHECK(got_dead == want_dead);
}
