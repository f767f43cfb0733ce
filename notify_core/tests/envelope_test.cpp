#include <doctest/doctest.h>

#include "notify/envelope.hpp"
#include "notify/time.hpp"

using namespace notify;

TEST_CASE("channels have one name each, and postings refuse any other") {
  CHECK(to_string(Channel::kEmail) == "email");
  CHECK(to_string(Channel::kWebhook) == "webhook");
  CHECK(channel_from("webhook") == Channel::kWebhook);
  CHECK_FALSE(channel_from("sms"));
  CHECK_FALSE(channel_from("Email"));
  CHECK(envelope::channel_names() == std::vector<std::string>{"email", "webhook"});
  Posting p;
  p.posting_id = "p";
  p.event_id = "e";
  p.event_type = "t";
  p.channel = Channel::kWebhook;
  p.recipient.address = "https://hooks.example.org/in";
  p.content = {"s", "t", ""};
  auto j = nlohmann::json::parse(encode(p));
  CHECK(j["channel"] == "webhook");
  CHECK(decode_posting(j.dump()).channel == Channel::kWebhook);
  j["channel"] = "sms";
  CHECK_THROWS_WITH_AS(decode_posting(j.dump()),
                       "posting: field channel must be email or webhook, not \"sms\"",
                       PostingError);
}

TEST_CASE("the envelope: a posting's message, the worker's copies, a replay") {
  Posting p;
  p.posting_id = "0b1c";
  p.event_id = "notify_events/0/7";
  p.template_name = "email/welcome";
  p.channel = Channel::kEmail;
  p.priority = 9;
  const amqp::Message m = envelope::to_message(p);
  CHECK(m.routing_key == "email");
  CHECK(m.message_id == "0b1c");
  CHECK(m.priority == 9);
  CHECK(m.headers.at("event_id") == "notify_events/0/7");
  CHECK(m.headers.at("template") == "email/welcome");
  CHECK(nlohmann::json::parse(m.body)["posting_id"] == "0b1c");

  amqp::Delivery d;
  d.body = m.body;
  d.message_id = m.message_id;
  d.priority = 9;
  d.headers = {{"x-death", "[...]"},
               {"x-attempts", "3"},
               {"x-dead-reason", "permanent_failure"},
               {"x-first-death-reason", "rejected"},
               {"x-deliver-at", "2026-12-01T08:00:00.000Z"},
               {"x-trace", "kept"}};
  const amqp::Message copy = envelope::copy_of(d, "notifications.email.delay.1m");
  CHECK(copy.routing_key == "notifications.email.delay.1m");
  CHECK(copy.headers.count("x-death") == 0);  // RabbitMQ's own grows with every round
  CHECK(copy.headers.at("x-attempts") == "3");
  CHECK(copy.body == d.body);
  const amqp::Message replay = envelope::replay_of(d, Channel::kWebhook);
  CHECK(replay.routing_key == "webhook");
  CHECK(replay.headers == amqp::Headers{{"x-trace", "kept"}});

  CHECK(envelope::attempts_of(d) == 3);
  CHECK(envelope::deliver_at_of(d) == parse_iso8601("2026-12-01T08:00:00Z"));
  for (const char* bad : {"", "-1", "3x", " 3", "99999999999"}) {
    d.headers["x-attempts"] = bad;
    CAPTURE(bad);
    CHECK(envelope::attempts_of(d) == 0);
  }
  d.headers.erase("x-deliver-at");
  CHECK_FALSE(envelope::deliver_at_of(d));
  CHECK(envelope::header(d, "x-nothing").empty());
}
