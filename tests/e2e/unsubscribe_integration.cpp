// One-click unsubscribe end to end on real brokers (documentation/unsubscribe.md): a mailing's
// mails in the inbox carry List-Unsubscribe and List-Unsubscribe-Post with a token that
// verifies, a welcome mail carries neither, and the one-click POST a mail client sends to the
// development Auth service turns the user's e-mail notifications off, so the next mailing skips
// them.

#include <doctest/doctest.h>

#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "etl_process.hpp"
#include "notify/kafka.hpp"
#include "notify/time.hpp"
#include "notify/unsubscribe.hpp"
#include "stack.hpp"

using namespace std::chrono_literals;
using notify::testing::Inbox;
using notify::testing::Process;
using notify::testing::Stack;
using notify::testing::unique_name;
using notify::testing::wait_until;

namespace {

constexpr const char* kOneClick = "List-Unsubscribe=One-Click";

notify::TimePoint now() {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

// The value of a header as maildev keeps it (names in lower case; folds undone or not).
std::string header(const nlohmann::json& mail, const std::string& name) {
  const auto headers = mail.find("headers");
  if (headers == mail.end() || !headers->contains(name)) return "";
  const auto& value = (*headers)[name];
  std::string text = value.is_string() ? value.get<std::string>() : value.dump();
  std::string unfolded;
  for (const char c : text) {
    if (c != '\r' && c != '\n') unfolded.push_back(c);
  }
  return unfolded;
}

// The URIs of a List-Unsubscribe value, in order: "<a>, <b>" -> {a, b}.
std::vector<std::string> uris(const std::string& value) {
  std::vector<std::string> out;
  for (std::size_t open = value.find('<'); open != std::string::npos;
       open = value.find('<', open + 1)) {
    const std::size_t close = value.find('>', open);
    if (close == std::string::npos) break;
    out.push_back(value.substr(open + 1, close - open - 1));
  }
  return out;
}

std::string address_of(const nlohmann::json& mail) {
  return mail["to"][0]["address"].get<std::string>();
}

// "http://127.0.0.1:8081/unsubscribe?token=T" -> {"http://127.0.0.1:8081", "/unsubscribe?token=T"}
std::pair<std::string, std::string> split_url(const std::string& url) {
  const std::size_t path = url.find('/', url.find("://") + 3);
  return {url.substr(0, path), url.substr(path)};
}

std::string token_of(const std::string& url) {
  const std::size_t at = url.find("token=");
  REQUIRE(at != std::string::npos);
  return url.substr(at + 6, url.find('&', at) - at - 6);
}

bool notifications_on(const std::string& auth_url, const std::string& user_id) {
  httplib::Client auth(auth_url);
  const auto res = auth.Get("/api/v1/users/" + user_id);
  REQUIRE(res);
  REQUIRE(res->status == 200);
  return nlohmann::json::parse(res->body).at("email_notifications").get<bool>();
}

// A mailing to the users of an Auth service of its own (the stack's development Auth service
// serves every test's users, and a mailing goes to all of them): three users, with the stack's
// unsubscribe secret, its endpoint at its own /unsubscribe.
struct Mailings {
  const Stack& stack = Stack::get();
  const std::filesystem::path dir =
      std::filesystem::path(stack.value("STACK_DIR")) / unique_name("unsubscribe");
  const std::string prefix = unique_name("unsub");
  const std::string secret = stack.value("UNSUBSCRIBE_SECRET");
  notify::testing::EtlNames names;
  std::string auth_url;
  std::string unsubscribe_url;
  std::unique_ptr<Process> auth;
  std::unique_ptr<Process> etl;
  std::unique_ptr<Process> worker;

  Mailings() {
    std::filesystem::create_directories(dir);
    nlohmann::json users = nlohmann::json::array();
    for (int i = 1; i <= 3; ++i) {
      users.push_back({{"id", user(i)},
                       {"email", address(i)},
                       {"first_name", "User"},
                       {"timezone", "UTC"},
                       {"locale", "en"}});
    }
    std::ofstream(dir / "users.json") << users.dump();
    const int port = notify::testing::free_port();
    auth_url = "http://127.0.0.1:" + std::to_string(port);
    unsubscribe_url = auth_url + "/unsubscribe";
    auth = std::make_unique<Process>(
        stack.value("BIN_DIR") + "/dev_auth_server",
        std::vector<std::string>{"--port", std::to_string(port), "--users",
                                 (dir / "users.json").string()},
        std::map<std::string, std::string>{{"UNSUBSCRIBE_SECRET", secret},
                                           {"UNSUBSCRIBE_URL", unsubscribe_url}},
        (dir / "auth.log").string());
    REQUIRE(wait_until([&] { return notify::testing::http_status(port, "/healthz") == 200; }, 10s));

    etl = notify::testing::start_etl(names, {{"AUTH_URL", auth_url},
                                             {"UNSUBSCRIBE_URL", unsubscribe_url},
                                             {"UNSUBSCRIBE_MAILTO", "unsubscribe@example.org"},
                                             {"PUBLIC_BASE_URL", "https://example.org"},
                                             {"LOG_LEVEL", "debug"}});
    // No quiet hours (mailings respect them), whatever the time of day.
    worker = std::make_unique<Process>(
        stack.value("BIN_DIR") + "/worker_notifications", std::vector<std::string>{},
        std::map<std::string, std::string>{{"RABBITMQ_URL", stack.value("RABBITMQ_URL")},
                                           {"RABBITMQ_EXCHANGE", names.exchange},
                                           {"SMTP_HOST", stack.value("SMTP_HOST")},
                                           {"SMTP_PORT", stack.value("SMTP_PORT")},
                                           {"SMTP_FROM", "notifications@example.org"},
                                           {"QUIET_HOURS", "00:00-00:00"},
                                           {"LEDGER_URL", stack.value("LEDGER_URL")},
                                           {"LOG_LEVEL", "debug"}},
        (dir / "worker.log").string());
    // Its queue is declared before the first posting is published.
    REQUIRE(wait_until(
        [&] { return worker->log().find("rabbitmq connected") != std::string::npos; }, 30s));
  }

  std::string user(int i) const { return prefix + "-" + std::to_string(i); }
  std::string address(int i) const { return user(i) + "@example.com"; }

  void produce_mailing(const std::string& title) const {
    const nlohmann::json mailing = {
        {"event_type", "mailing"},
        {"event_id", unique_name("mailing")},
        {"from_service", "mailing"},
        {"template", "email/new_movies"},
        {"receivers", auth_url + "/api/v1/users/?is_active=true&page_number=1&page_size=10"},
        {"delivery_type", {"email"}},
        // The event's own link is not what the recipients get.
        {"template_context",
         {{"movies", {{{"title", title}, {"url", "https://example.org/movies/1"}}}},
          {"unsubscribe_url", "https://example.org/unsubscribe?list=everyone"}}}};
    notify::kafka::Producer producer(stack.value("KAFKA_BOOTSTRAP_SERVERS"));
    producer.produce(names.topic, std::string("mailing"), mailing.dump());
  }

  void produce_signup(int i) const {
    const nlohmann::json signup = {{"id", user(i)},
                                   {"event_type", "user_signed_up"},
                                   {"priority", "immediate"},
                                   {"from_service", "auth"},
                                   {"details", {{"email", address(i)}, {"confirm_link", "/s/x"}}}};
    notify::kafka::Producer producer(stack.value("KAFKA_BOOTSTRAP_SERVERS"));
    producer.produce(names.topic, user(i) + "+user_signed_up", signup.dump());
  }

  // The inbox's mails to this test's users whose text holds `needle`.
  std::vector<nlohmann::json> mails_with(const std::string& needle) const {
    std::vector<nlohmann::json> found;
    for (const auto& m : Inbox(stack.value("INBOX_URL")).messages()) {
      if (address_of(m).rfind(prefix + "-", 0) == 0 &&
          m.value("text", "").find(needle) != std::string::npos) {
        found.push_back(m);
      }
    }
    return found;
  }

  std::string logs() const {
    return "etl log:\n" + etl->log() + "\nworker log:\n" + worker->log() + "\nauth log:\n" +
           auth->log();
  }
};

}  // namespace

TEST_CASE(
    "unsubscribe: a mailing carries one-click headers, a click unsubscribes, the next "
    "mailing skips the user") {
  Mailings m;
  const std::string first = unique_name("Arrival");
  m.produce_mailing(first);
  std::vector<nlohmann::json> mails;
  const bool arrived = wait_until([&] { return (mails = m.mails_with(first)).size() >= 3; }, 60s);
  INFO(m.logs());
  REQUIRE(arrived);
  CHECK(mails.size() == 3);

  const notify::UnsubscribeSigner signer(m.secret);
  std::map<std::string, std::string> one_click;  // by address
  for (const auto& mail : mails) {
    const std::string to = address_of(mail);
    CAPTURE(to);
    CAPTURE(mail.dump());
    const auto links = uris(header(mail, "list-unsubscribe"));
    REQUIRE(links.size() == 2);
    CHECK(links[0].rfind(m.unsubscribe_url + "?token=", 0) == 0);
    CHECK(links[1] == "mailto:unsubscribe@example.org?subject=unsubscribe%20" + token_of(links[0]));
    CHECK(header(mail, "list-unsubscribe-post") == kOneClick);
    // The token names the recipient, is for bulk mail and is valid for days.
    const auto verified = signer.verify(token_of(links[0]), now());
    REQUIRE(std::holds_alternative<notify::UnsubscribeClaim>(verified));
    const auto& claim = std::get<notify::UnsubscribeClaim>(verified);
    CHECK(claim.user_id + "@example.com" == to);
    CHECK(claim.category == notify::Category::kBulk);
    CHECK(notify::TimePoint(claim.expires_at) > now() + std::chrono::hours(24 * 30));
    // The footer shows the same link; the event's own is not used.
    CHECK(mail["text"].get<std::string>().find(links[0]) != std::string::npos);
    CHECK(mail["text"].get<std::string>().find("list=everyone") == std::string::npos);
    one_click[to] = links[0];
  }

  SUBCASE("a welcome mail carries no unsubscribe header") {
    m.produce_signup(1);
    std::vector<nlohmann::json> welcome;
    REQUIRE(wait_until([&] { return !(welcome = m.mails_with("/s/x")).empty(); }, 60s));
    CHECK(address_of(welcome[0]) == m.address(1));
    CHECK(header(welcome[0], "list-unsubscribe").empty());
    CHECK(header(welcome[0], "list-unsubscribe-post").empty());
    CHECK(welcome[0]["text"].get<std::string>().find("token=") == std::string::npos);
  }

  SUBCASE("the one-click POST unsubscribes at once; the next mailing skips that user") {
    const auto [origin, target] = split_url(one_click.at(m.address(1)));
    httplib::Client auth(origin);
    // What a link scanner fetches changes nothing.
    const auto page = auth.Get(target);
    REQUIRE(page);
    CHECK(page->status == 200);
    CHECK(page->body.find("<form method=\"post\"") != std::string::npos);
    CHECK(page->body.find("name=\"List-Unsubscribe\" value=\"One-Click\"") != std::string::npos);
    CHECK(notifications_on(m.auth_url, m.user(1)));

    // What a mail client sends (RFC 8058).
    const auto clicked = auth.Post(target, kOneClick, "application/x-www-form-urlencoded");
    REQUIRE(clicked);
    CHECK(clicked->status == 200);
    CHECK_FALSE(notifications_on(m.auth_url, m.user(1)));
    CHECK(notifications_on(m.auth_url, m.user(2)));

    const std::string second = unique_name("Sequel");
    m.produce_mailing(second);
    REQUIRE(wait_until([&] { return m.mails_with(second).size() >= 2; }, 60s));
    // The first user comes first in the listing: a mail to them would have arrived by now.
    // The ETL skipped the first user as it walked the listing.
    REQUIRE(wait_until(
        [&] {
          const std::string log = m.etl->log();
          return log.find("recipient skipped") != std::string::npos &&
                 log.find("opted_out") != std::string::npos;
        },
        10s));
    std::this_thread::sleep_for(1s);
    std::set<std::string> to;
    for (const auto& mail : m.mails_with(second)) to.insert(address_of(mail));
    CHECK(to == std::set<std::string>{m.address(2), m.address(3)});
  }

  CHECK(m.etl->terminate() == 0);
  CHECK(m.worker->terminate() == 0);
}

TEST_CASE(
    "unsubscribe: the stack's development Auth service verifies tokens of the stack's "
    "secret") {
  const Stack& stack = Stack::get();
  const notify::UnsubscribeSigner signer(stack.value("UNSUBSCRIBE_SECRET"));
  const std::string user = unique_name("unsub-fixture");
  httplib::Client auth(stack.value("AUTH_URL"));
  const auto created = auth.Post(
      "/_dev/users", nlohmann::json{{"id", user}, {"email", user + "@example.com"}}.dump(),
      "application/json");
  REQUIRE(created);
  REQUIRE(created->status == 201);

  const auto in_a_day = std::chrono::floor<std::chrono::seconds>(now()) + std::chrono::hours(24);
  const std::string url = notify::make_unsubscribe_url(
      stack.value("UNSUBSCRIBE_URL"), signer.sign(user, notify::Category::kBulk, in_a_day));
  const auto [origin, target] = split_url(url);
  CHECK(origin == stack.value("AUTH_URL"));
  const auto post = [&auth](const std::string& path, const std::string& body) {
    auto res = auth.Post(path, body, "application/x-www-form-urlencoded");
    REQUIRE(res);
    return std::make_pair(res->status, res->body);
  };

  // Refused with a reason, nothing changed.
  const std::string path = split_url(stack.value("UNSUBSCRIBE_URL")).second;
  const notify::UnsubscribeSigner other("not the stack's secret, 32 bytes");
  for (const std::string& bad :
       {other.sign(user, notify::Category::kBulk, in_a_day),
        signer.sign(user, notify::Category::kTransactional, in_a_day),
        signer.sign(user, notify::Category::kBulk, in_a_day - std::chrono::hours(48)),
        std::string("garbage")}) {
    CAPTURE(bad);
    const auto [status, body] = post(path + "?token=" + bad, kOneClick);
    CHECK(status == 400);
    CHECK(body.rfind("cannot unsubscribe: ", 0) == 0);
  }
  CHECK(post(target, "").first == 400);  // not the one-click body
  CHECK(
      post(path + "?token=" + signer.sign(unique_name("nobody"), notify::Category::kBulk, in_a_day),
           kOneClick)
          .first == 404);
  CHECK(notifications_on(stack.value("AUTH_URL"), user));

  const auto [status, body] = post(target, kOneClick);
  CHECK(status == 200);
  CHECK(body.find(user + "@example.com") != std::string::npos);
  CHECK_FALSE(notifications_on(stack.value("AUTH_URL"), user));
  // Clicked again: still off, still 200.
  CHECK(post(target, kOneClick).first == 200);
}
