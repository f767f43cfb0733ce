#include <doctest/doctest.h>

#include "notify/time.hpp"
#include "transform.hpp"

using namespace etl;

namespace {
const notify::TimePoint kNow = *notify::parse_iso8601("2026-11-23T10:00:05Z");

Event signup() {
  Event e;
  e.identity = "notify_events/0/7";
  e.type = "user_signed_up";
  e.source = "auth";
  e.priority = "immediate";
  e.user_id = "u-1";
  e.details = {{"email", "old@example.com"}, {"confirm_link", "/s/AbC12"}};
  e.time = *notify::parse_iso8601("2026-11-23T10:00:00Z");
  return e;
}

auth::User ann() {
  auth::User u;
  u.id = "u-1";
  u.email = "ann@example.com";
  u.first_name = "Ann <script>";
  u.last_name = "Lee";
  u.timezone = "Europe/Berlin";
  u.locale = "en";
  return u;
}
}  // namespace

TEST_CASE("a sign-up becomes one rendered welcome email posting") {
  TemplateStore templates(NOTIFY_SOURCE_DIR "/templates");
  Transformer transform({"https://example.org/", std::chrono::hours(24)}, templates);
  auto result = transform.postings(signup(), ann(), kNow);
  REQUIRE(std::holds_alternative<std::vector<notify::Posting>>(result));
  const auto& postings = std::get<std::vector<notify::Posting>>(result);
  REQUIRE(postings.size() == 1);
  const notify::Posting& p = postings[0];
  CHECK(p.posting_id == notify::make_posting_id("notify_events/0/7", "u-1", "email"));
  CHECK(p.channel == "email");
  CHECK(p.recipient.address == "ann@example.com");
  CHECK(p.recipient.timezone == "Europe/Berlin");
  CHECK(p.priority == 9);
  CHECK(p.quiet_hours == notify::QuietHours::kBypass);
  CHECK(notify::format_iso8601(p.expires_at) == "2026-11-24T10:00:00.000Z");
  CHECK(p.created_at == kNow);
  // Subject and text are verbatim; in HTML the user's values are escaped.
  CHECK(p.content.subject == "Welcome, Ann <script>! Please confirm your email");
  CHECK(p.content.text.find("https://example.org/s/AbC12") != std::string::npos);
  CHECK(p.content.html.find("Ann &lt;script&gt;") != std::string::npos);
  CHECK(p.content.html.find("<script>") == std::string::npos);
  CHECK(p.content.html.find("href=\"https://example.org/s/AbC12\"") != std::string::npos);
}

TEST_CASE("the same event yields the same posting id; another event another") {
  TemplateStore templates(NOTIFY_SOURCE_DIR "/templates");
  Transformer transform({}, templates);
  auto a = std::get<std::vector<notify::Posting>>(transform.postings(signup(), ann(), kNow));
  auto b = std::get<std::vector<notify::Posting>>(transform.postings(signup(), ann(), kNow));
  CHECK(a[0].posting_id == b[0].posting_id);
  Event other = signup();
  other.identity = "notify_events/0/8";
  auto c = std::get<std::vector<notify::Posting>>(transform.postings(other, ann(), kNow));
  CHECK(a[0].posting_id != c[0].posting_id);
}

TEST_CASE("priorities map to delivery terms") {
  CHECK(terms_for("immediate").priority == 9);
  CHECK(terms_for("immediate").quiet_hours == notify::QuietHours::kBypass);
  CHECK(terms_for("high").priority == 7);
  CHECK(terms_for("normal").priority == 5);
  CHECK(terms_for("low").priority == 2);
  CHECK(terms_for("low").quiet_hours == notify::QuietHours::kRespect);
}

TEST_CASE("links are joined to the public base URL") {
  CHECK(absolute_url("http://localhost:8000", "/s/x") == "http://localhost:8000/s/x");
  CHECK(absolute_url("http://localhost:8000/", "/s/x") == "http://localhost:8000/s/x");
  CHECK(absolute_url("http://localhost:8000", "s/x") == "http://localhost:8000/s/x");
  CHECK(absolute_url("http://localhost:8000", "https://other.org/a") == "https://other.org/a");
}

TEST_CASE("templates: locale fallback, missing templates and names that leave the folder") {
  TemplateStore templates(NOTIFY_SOURCE_DIR "/templates");
  const nlohmann::json ctx = {{"user", {{"first_name", "Zoë"}}}, {"confirm_url", "http://x/s/1"}};
  CHECK(templates.render("email/welcome", "de-AT", ctx).subject.rfind("Willkommen, Zoë!", 0) == 0);
  CHECK(templates.render("email/welcome", "fr", ctx).subject.rfind("Welcome, Zoë!", 0) == 0);
  CHECK(templates.render("email/welcome", "", ctx).text.find("http://x/s/1") != std::string::npos);
  CHECK_THROWS_WITH_AS(templates.render("email/nothing", "en", ctx),
                       "template 'email/nothing' has no subject.mustache", TemplateError);
  CHECK_THROWS_AS(templates.render("../etc/passwd", "en", ctx), TemplateError);
  CHECK_THROWS_AS(templates.render("email/../../x", "en", ctx), TemplateError);
  CHECK_THROWS_AS(templates.render("/etc", "en", ctx), TemplateError);
  CHECK(TemplateStore::valid_name("email/new_movies"));
  CHECK_FALSE(TemplateStore::valid_name("email//x"));
  CHECK_FALSE(TemplateStore::valid_name("Email/X"));
}
