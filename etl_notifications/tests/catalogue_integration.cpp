// The event catalogue on real brokers and the development Auth service: each event type, a
// fan-out over pages with opt-outs counted exactly, and every bad-input class in the
// dead-letter topic while good events keep flowing.

#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <httplib.h>

#include "etl_process.hpp"
#include "notify/amqp.hpp"
#include "notify/digest.hpp"
#include "notify/kafka.hpp"
#include "notify/posting.hpp"
#include "notify/time.hpp"
#include "stack.hpp"

using namespace std::chrono_literals;
using notify::testing::Process;
using notify::testing::Stack;
using notify::testing::unique_name;
using notify::testing::wait_until;

namespace {

struct Catalogue : notify::testing::EtlNames {
  std::unique_ptr<notify::kafka::Producer> producer =
      std::make_unique<notify::kafka::Producer>(Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"));

  std::unique_ptr<Process> start_etl(const std::map<std::string, std::string>& extra = {}) const {
    std::map<std::string, std::string> env = {
        {"ETL_RETRY_MAX_BACKOFF", "2s"},
        {"PUBLIC_BASE_URL", "https://example.org"},
        {"CONTEXT_URL_ALLOWLIST", Stack::get().value("AUTH_URL") + "/api/v1/users"},
        {"WEBHOOK_URL_ALLOWLIST", "https://hooks.example.org"}};
    for (auto& [k, v] : extra) env[k] = v;
    return notify::testing::start_etl(*this, env);
  }

  std::unique_ptr<notify::amqp::Consumer> queue(const std::string& channel) const {
    return notify::testing::postings_consumer(*this, channel, 1000, {"email", "webhook"});
  }

  notify::kafka::Delivery emit(const nlohmann::json& value, const std::string& key = "k") const {
    return producer->produce(topic, key, value.dump());
  }
  notify::kafka::Delivery emit_raw(const std::string& value, const std::string& key = "k") const {
    return producer->produce(topic, key, value);
  }
};

// Postings read until `count` arrived or nothing came for `quiet`.
std::vector<notify::Posting> drain(notify::amqp::Consumer& q, std::size_t count,
                                   std::chrono::seconds timeout) {
  std::vector<notify::Posting> out;
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (out.size() < count && std::chrono::steady_clock::now() < until) {
    if (auto d = q.next(200ms)) {
      out.push_back(notify::decode_posting(d->body));
      q.ack(d->delivery_tag);
    }
  }
  return out;
}

nlohmann::json fixture_user(std::size_t i) {
  std::ifstream in(Stack::get().value("SOURCE_DIR") + "/dev/users.json");
  return nlohmann::json::parse(in).at(i);
}

httplib::Client auth() { return httplib::Client(Stack::get().value("AUTH_URL")); }

struct DeadLetter {
  std::optional<std::string> key;
  std::string value;
  std::map<std::string, std::string> headers;
};

// The first `count` records of a dead-letter topic, or fewer when the timeout passes.
std::vector<DeadLetter> dead_letter_records(const std::string& topic, std::size_t count,
                                            std::chrono::seconds timeout) {
  struct Listener : notify::kafka::RebalanceListener {
    void on_assigned(const std::vector<notify::kafka::TopicPartition>&) override {}
    void on_revoked(const std::vector<notify::kafka::TopicPartition>&) override {}
    void on_lost(const std::vector<notify::kafka::TopicPartition>&) override {}
  } listener;
  notify::kafka::Consumer::Options o;
  o.bootstrap_servers = Stack::get().value("KAFKA_BOOTSTRAP_SERVERS");
  o.group_id = unique_name("dlq-reader");
  o.topics = {topic};
  o.extra = {{"fetch.wait.max.ms", "50"}};
  notify::kafka::Consumer consumer(o, &listener);
  std::vector<DeadLetter> out;
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (out.size() < count && std::chrono::steady_clock::now() < until) {
    if (auto m = consumer.poll(200ms)) {
      DeadLetter d{m->key, m->value, {}};
      for (const auto& [name, value] : m->headers) d.headers[name] = value;
      out.push_back(std::move(d));
    }
  }
  consumer.close();
  return out;
}

// Dead-lettered events of a topic: error header by original value.
std::map<std::string, std::string> dead_letters(const std::string& topic, std::size_t count,
                                                std::chrono::seconds timeout) {
  std::map<std::string, std::string> out;
  for (auto& d : dead_letter_records(topic, count, timeout)) out[d.value] = d.headers["error"];
  return out;
}

}  // namespace

TEST_CASE("catalogue: every event type becomes its postings") {
  Catalogue c;
  auto email = c.queue("email");
  auto webhook = c.queue("webhook");
  const auto ada = fixture_user(0);
  const auto zoe = fixture_user(1);
  const auto id = [](const nlohmann::json& u) { return u["id"].get<std::string>(); };

  c.emit({{"id", id(ada)},
          {"event_type", "user_changed_password_successfully"},
          {"priority", "immediate"},
          {"from_service", "auth"},
          {"details", {{"email", ada["email"]}}}});
  c.emit({{"event_type", "reminder"},
          {"user_id", id(zoe)},
          {"send_at", "2026-12-01T18:00:00+03:00"},
          {"template", "email/event_reminder"},
          {"template_context",
           {{"event_name", "Premiere"},
            {"starts_at", "18:00"},
            {"event_url", "https://example.org/e/1"}}}});
  c.emit({{"event_type", "notification_requested"},
          {"event_id", unique_name("req")},
          {"user_ids", {id(ada), id(zoe)}},
          {"template", "email/generic"},
          {"template_context", {{"title", "Hello"}, {"message", "A message"}}},
          {"channels", {"email", "webhook"}},
          {"webhook_url", "https://hooks.example.org/in"},
          {"priority", "high"},
          {"expires_in", "2 hours"}});
  auto etl = c.start_etl();
  const auto mails = drain(*email, 4, 60s);
  const auto hooks = drain(*webhook, 2, 10s);
  INFO("etl log:\n" << etl->log());
  REQUIRE(mails.size() == 4);
  REQUIRE(hooks.size() == 2);

  std::map<std::string, std::vector<notify::Posting>> by_template;
  for (const auto& p : mails) by_template[p.template_name].push_back(p);
  REQUIRE(by_template["email/password_changed"].size() == 1);
  const auto& pw = by_template["email/password_changed"][0];
  CHECK(pw.quiet_hours == notify::QuietHours::kBypass);
  CHECK(pw.priority >= 7);
  CHECK(pw.recipient.address == ada["email"]);

  REQUIRE(by_template["email/event_reminder"].size() == 1);
  const auto& reminder = by_template["email/event_reminder"][0];
  REQUIRE(reminder.not_before);
  CHECK(notify::format_iso8601(*reminder.not_before) == "2026-12-01T15:00:00.000Z");
  CHECK(reminder.quiet_hours == notify::QuietHours::kBypass);
  CHECK(reminder.content.text.find("Premiere") != std::string::npos);

  REQUIRE(by_template["email/generic"].size() == 2);
  for (const auto& p : by_template["email/generic"]) {
    CHECK(p.priority == 7);
    CHECK(p.expires_at - p.event_time == std::chrono::hours(2));
  }
  for (const auto& h : hooks) CHECK(h.recipient.address == "https://hooks.example.org/in");
  CHECK(etl->terminate() == 0);
}

TEST_CASE("catalogue: a mailing fans out over 10,000 users in pages, opt-outs counted exactly") {
  Catalogue c;
  const std::string prefix = unique_name("fan") + "-";
  auto a = auth();
  REQUIRE(a.Post(("/_dev/users/bulk?count=10000&prefix=" + prefix).c_str(), "", "text/plain"));
  // Every 7th of them opts out.
  nlohmann::json opted_out = nlohmann::json::array();
  for (int i = 7; i <= 10000; i += 7) {
    const std::string n = std::to_string(i);
    opted_out.push_back({{"id", prefix + n},
                         {"email", prefix + n + "@example.com"},
                         {"first_name", "F" + n},
                         {"email_notifications", false},
                         {"active", true}});
  }
  REQUIRE(a.Post("/_dev/users", opted_out.dump(), "application/json")->status / 100 == 2);
  // The expected count, from the Auth service itself: every active user who did not opt out;
  // the others are skipped (these 1428, and those other tests of the run left opted out).
  auto expected_page = a.Get("/api/v1/users/?is_active=true&email_notifications=true&page_size=1");
  REQUIRE(expected_page);
  const long long expected = nlohmann::json::parse(expected_page->body)["total"].get<long long>();
  CHECK(expected >= 10000 - 1428);
  auto active_page = a.Get("/api/v1/users/?is_active=true&page_size=1");
  REQUIRE(active_page);
  const long long skipped =
      nlohmann::json::parse(active_page->body)["total"].get<long long>() - expected;
  CHECK(skipped >= 1428);

  auto email = c.queue("email");
  // No opt-out filter in the URL: the ETL itself must leave them out.
  c.emit({{"event_type", "mailing"},
          {"from_service", "mailing"},
          {"receivers", Stack::get().value("AUTH_URL") +
                            "/api/v1/users/?is_active=true&page_number=1&page_size=500"},
          {"template", "email/new_movies"},
          {"delivery_type", {"email"}},
          {"template_context",
           {{"movies", {{{"title", "Arrival"}, {"url", "https://example.org/m/1"}}}}}},
          {"expires_in", "2 days"}});
  auto etl = c.start_etl();
  const auto postings = drain(*email, static_cast<std::size_t>(expected) + 10, 120s);
  INFO("etl log:\n" << etl->log());
  std::set<std::string> ids;
  for (const auto& p : postings) {
    ids.insert(p.posting_id);
    CHECK(p.quiet_hours == notify::QuietHours::kRespect);
  }
  CHECK(postings.size() == static_cast<std::size_t>(expected));
  CHECK(ids.size() == postings.size());
  CHECK(etl->log().find("\"skipped\":" + std::to_string(skipped)) != std::string::npos);
  CHECK(etl->terminate() == 0);
}

TEST_CASE("catalogue: every bad-input class lands in the dead-letter topic; good events flow") {
  Catalogue c;
  auto email = c.queue("email");
  const auto ada = fixture_user(0);
  const std::string key = "same-partition";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"{not json", "value is not valid JSON"},
      {R"({"event_type": "party"})", "unknown event_type 'party'"},
      {R"({"event_type": "mailing", "template": "email/new_movies"})",
       "missing or non-string field 'receivers'"},
      {R"({"event_type": "notification_requested", "event_id": "x1", "user_ids": [")" +
           ada["id"].get<std::string>() + R"("], "template": "email/no_such_template"})",
       "template 'email/no_such_template' has no subject.mustache"},
      {R"({"event_type": "notification_requested", "event_id": "x2", "user_ids": [")" +
           ada["id"].get<std::string>() +
           R"("], "template": "email/generic", "template_context": {"x": "http://169.254.169.254/latest"}})",
       "template_context.x: URL not allowed: http://169.254.169.254/latest"},
      {R"({"event_type": "mailing", "receivers": "http://169.254.169.254/users", "template": "email/new_movies"})",
       "receivers must be a users URL of the Auth service"},
      {std::string(2000, 'x'), "larger than MAX_EVENT_BYTES=1024"},
  };
  for (const auto& [value, reason] : bad) c.emit_raw(value, key);
  c.emit({{"id", ada["id"]},
          {"event_type", "user_signed_up"},
          {"priority", "immediate"},
          {"details", {{"email", ada["email"]}, {"confirm_link", "/s/good"}}}},
         key);
  auto etl = c.start_etl({{"MAX_EVENT_BYTES", "1024"}});
  const auto good = drain(*email, 1, 60s);
  INFO("etl log:\n" << etl->log());
  REQUIRE(good.size() == 1);
  CHECK(good[0].template_name == "email/welcome");

  const auto dead = dead_letters(c.topic + ".dlq", bad.size(), 30s);
  for (const auto& item : bad) {
    // Named copies: doctest's INFO captures them (clang cannot capture structured bindings).
    const std::string& value = item.first;
    const std::string& reason = item.second;
    INFO(value.substr(0, 80));
    REQUIRE(dead.count(value) == 1);
    CHECK(dead.at(value).find(reason) != std::string::npos);
  }
  CHECK(etl->running());
  CHECK(etl->terminate() == 0);
}

TEST_CASE("catalogue: Auth answering 503 for ten seconds loses nothing") {
  Catalogue c;
  auto email = c.queue("email");
  auto a = auth();
  REQUIRE(a.Post("/_dev/faults", R"({"status": 503, "seconds": 10})", "application/json"));
  const auto ada = fixture_user(0);
  std::set<std::string> expected;
  for (int i = 0; i < 5; ++i) {
    const std::string id = unique_name("req");
    expected.insert(id);
    c.emit({{"event_type", "notification_requested"},
            {"event_id", id},
            {"user_ids", {ada["id"]}},
            {"template", "email/generic"},
            {"template_context", {{"title", "T"}, {"message", "M"}}}});
  }
  auto etl = c.start_etl({{"AUTH_MAX_ATTEMPTS", "2"}, {"AUTH_CACHE_TTL", "0"}});
  const auto postings = drain(*email, expected.size(), 90s);
  INFO("etl log:\n" << etl->log());
  std::set<std::string> seen;
  for (const auto& p : postings) seen.insert(p.event_id);
  CHECK(seen == expected);
  CHECK(etl->log().find("intake paused") != std::string::npos);
  CHECK(etl->terminate() == 0);
  a.Delete("/_dev/faults");
}

TEST_CASE(
    "catalogue: hostile events are dead-lettered with a bounded reason; the partition goes on") {
  Catalogue c;
  auto email = c.queue("email");
  const auto ada = fixture_user(0);
  const std::string ada_id = ada["id"].get<std::string>();
  const std::string key = "same-partition";
  const std::string deep(300000, '[');
  const auto signup = [&](const std::string& id, const std::string& link) {
    return nlohmann::json{{"id", id},
                          {"event_type", "user_signed_up"},
                          {"details", {{"email", ada["email"]}, {"confirm_link", link}}}}
        .dump();
  };
  const std::string request = R"({"event_type": "notification_requested", "user_ids": [")" +
                              ada_id + R"("], "template": "email/generic", )";
  nlohmann::json huge = nlohmann::json::parse(signup(ada_id, "/s/huge"));
  huge["details"]["padding"] = std::string(950000, 'p');  // above MAX_EVENT_BYTES (900000)
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"id": "u", "event_type": "user_signed_up", "details": )" + deep,
       "value is JSON nested deeper than MAX_JSON_DEPTH=64"},
      {request + R"("event_id": "d1", "template_context": )" + deep,
       "value is JSON nested deeper than MAX_JSON_DEPTH=64"},
      {request + R"("event_id": "d2", "channels": )" + deep,
       "value is JSON nested deeper than MAX_JSON_DEPTH=64"},
      {R"({"event_type": ")" + std::string(700000, 'x') + R"("})",
       "field 'event_type' is longer than 200 bytes"},
      {R"({"event_type": "mailing", "receivers": "http://a/", "template": ")" +
           std::string(700000, 't') + R"("})",
       "field 'template' is longer than 200 bytes"},
      {signup(ada_id, "/s/nul") + std::string(1, '\0') + "trailing", "NUL byte at offset"},
      {R"({"event_type": "reminder", "user_id": ")" + ada_id +
           R"(", "send_at": "10000-01-01T00:00:00Z", "template": "email/event_reminder"})",
       "send_at is not an ISO 8601 time"},
      {request + R"("event_id": "d3", "expires_in": 4294967356})", "expires_in is not a duration"},
      {signup(ada_id, "https:/evil.example/x"), "details.confirm_link: URL not allowed"},
      {signup(ada_id, "//evil.example/x"), "details.confirm_link: URL not allowed"},
      {signup(ada_id, "https:\\\\evil.example\\x"), "details.confirm_link: URL not allowed"},
      {signup("..", "/s/dots"), "unknown user ..: user id not allowed"},
      {huge.dump(), "larger than MAX_EVENT_BYTES=900000"},
  };
  std::map<std::string, std::string> reason_at;  // by offset
  std::int64_t huge_offset = -1;
  for (const auto& [value, reason] : bad) {
    const auto delivery = c.emit_raw(value, key);
    reason_at[std::to_string(delivery.offset)] = reason;
    if (value.size() > 900000) huge_offset = delivery.offset;
  }
  const auto good_delivery = c.emit(nlohmann::json::parse(signup(ada_id, "/s/good")), key);
  auto etl = c.start_etl();
  const auto good = drain(*email, 1, 90s);
  INFO("etl log:\n" << etl->log().substr(0, 20000));
  REQUIRE(good.size() == 1);
  CHECK(good[0].template_name == "email/welcome");
  CHECK(etl->running());

  const auto dead = dead_letter_records(c.topic + ".dlq", bad.size(), 60s);
  REQUIRE(dead.size() == bad.size());
  for (const auto& d : dead) {
    const std::string offset = d.headers.at("original_offset");
    INFO("offset " << offset << ": " << d.headers.at("error").substr(0, 200));
    REQUIRE(reason_at.count(offset) == 1);
    CHECK(d.headers.at("error").find(reason_at[offset]) != std::string::npos);
    CHECK(d.headers.at("error").size() <= 1100);  // a reason never quotes a value whole
    if (offset == std::to_string(huge_offset)) {
      // Too large to go whole: a shortened copy that can still be found.
      CHECK(d.headers.at("truncated") == "true");
      CHECK(d.headers.at("original_size") == std::to_string(huge.dump().size()));
      CHECK(d.headers.at("original_sha256") == notify::sha256_hex(huge.dump()));
      CHECK(d.value.size() == 64 * 1024);
      CHECK(huge.dump().rfind(d.value, 0) == 0);
    } else {
      CHECK(d.headers.count("truncated") == 0);
    }
  }
  CHECK(etl->terminate() == 0);
  CHECK(notify::kafka::committed_offset(Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"), c.group,
                                        {c.topic, good_delivery.partition}) ==
        good_delivery.offset + 1);
}
