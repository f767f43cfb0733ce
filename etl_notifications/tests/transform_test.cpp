#include <doctest/doctest.h>

#include "notify/time.hpp"
#include "transform.hpp"

using namespace etl;

namespace {
const notify::TimePoint kNow = *notify::parse_iso8601("2026-11-23T10:00:05Z");
const notify::TimePoint kEventTime = *notify::parse_iso8601("2026-11-23T10:00:00Z");

Event signup() {
  Event e;
  e.identity = "notify_events/0/7";
  e.type = "user_signed_up";
  e.source = "auth";
  e.priority = "immediate";
  e.user_id = "u-1";
  e.details = {{"email", "old@example.com"}, {"confirm_link", "/s/AbC12"}};
  e.time = kEventTime;
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

Request planned(const Event& e, const TransformOptions& o = {}) {
  auto r = plan(e, o);
  REQUIRE(std::holds_alternative<Request>(r));
  return std::get<Request>(r);
}

constexpr const char* kSecret = "a development secret, 32 bytes.";

TransformOptions with_unsubscribe(TransformOptions o = {}) {
  o.unsubscribe.secret = kSecret;
  o.unsubscribe.url = "https://example.org/unsubscribe";
  return o;
}

Event mailing() {
  Event e;
  e.identity = "notify_events/1/3";
  e.type = "mailing";
  e.time = kEventTime;
  e.receivers = "http://auth/api/v1/users/?page_number=1&page_size=500";
  e.template_name = "email/new_movies";
  e.channels = {notify::Channel::kEmail};
  e.expires_in = std::chrono::hours(48);
  return e;
}

std::vector<notify::Posting> render(Transformer& t, const Event& e, const auth::User& u) {
  auto result = t.postings(e, planned(e, t.options()), u, kNow);
  REQUIRE(std::holds_alternative<std::vector<notify::Posting>>(result));
  return std::get<std::vector<notify::Posting>>(result);
}
}  // namespace

TEST_CASE("a sign-up becomes one rendered welcome email posting") {
  TemplateStore templates(NOTIFY_SOURCE_DIR "/templates");
  TransformOptions options;
  options.public_base_url = "https://example.org/";
  Transformer transform(options, templates);
  const auto postings = render(transform, signup(), ann());
  REQUIRE(postings.size() == 1);
  const notify::Posting& p = postings[0];
  CHECK(p.posting_id == notify::make_posting_id("notify_events/0/7", "u-1", "email"));
  CHECK(p.channel == notify::Channel::kEmail);
  CHECK(p.recipient.address == "ann@example.com");
  CHECK(p.recipient.name == "Ann <script> Lee");
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

TEST_CASE("a user without a first name is greeted without one, in every locale") {
  TemplateStore templates(NOTIFY_SOURCE_DIR "/templates");
  TransformOptions options;
  options.public_base_url = "https://example.org/";
  Transformer transform(options, templates);
  auth::User nameless = ann();
  nameless.first_name.clear();
  const auto en = render(transform, signup(), nameless);
  REQUIRE(en.size() == 1);
  CHECK(en[0].content.subject == "Welcome! Please confirm your email");
  CHECK(en[0].content.text.rfind("Hello,\n", 0) == 0);
  CHECK(en[0].content.html.find("Hello,</h1>") != std::string::npos);
  nameless.locale = "de";
  const auto de = render(transform, signup(), nameless);
  REQUIRE(de.size() == 1);
  CHECK(de[0].content.text.rfind("Hallo,\n", 0) == 0);
  CHECK(de[0].content.subject.rfind("Willkommen! ", 0) == 0);
}

TEST_CASE("a sign-up goes even to a user who opted out or is not active yet") {
  TemplateStore templates(NOTIFY_SOURCE_DIR "/templates");
  Transformer transform({}, templates);
  auto user = ann();
  user.email_notifications = false;
  user.active = false;
  CHECK(render(transform, signup(), user).size() == 1);
}

TEST_CASE("the same event yields the same posting id; another event another") {
  TemplateStore templates(NOTIFY_SOURCE_DIR "/templates");
  Transformer transform({}, templates);
  auto a = render(transform, signup(), ann());
  auto b = render(transform, signup(), ann());
  CHECK(a[0].posting_id == b[0].posting_id);
  Event other = signup();
  other.identity = "notify_events/0/8";
  CHECK(a[0].posting_id != render(transform, other, ann())[0].posting_id);
}

TEST_CASE("a password change is a security notice: bypass, high priority, even if opted out") {
  Event e = signup();
  e.type = "user_changed_password_successfully";
  e.priority = "";
  e.details = {{"email", "ann@example.com"}};
  const Request r = planned(e);
  CHECK(r.template_name == "email/password_changed");
  CHECK(r.terms.quiet_hours == notify::QuietHours::kBypass);
  CHECK(r.terms.priority >= 7);
  CHECK_FALSE(r.skip_opted_out);
  CHECK(r.derived["changed_at"] == "23 November 2026, 10:00 UTC");
  // What the ETL derives is not subject to the event's context URL rules.
  CHECK(r.context.empty());
}

TEST_CASE("a mailing respects quiet hours and opt-outs and walks a users URL") {
  const Event e = mailing();
  const Request r = planned(e, with_unsubscribe());
  CHECK(r.audience.kind == Audience::Kind::kUsersUrl);
  CHECK(r.audience.users_url == e.receivers);
  CHECK(r.terms.quiet_hours == notify::QuietHours::kRespect);
  CHECK(r.skip_opted_out);
  CHECK(notify::format_iso8601(r.expires_at) == "2026-11-25T10:00:00.000Z");

  TemplateStore templates(NOTIFY_SOURCE_DIR "/templates");
  Transformer transform(with_unsubscribe(), templates);
  auto user = ann();
  user.email_notifications = false;
  auto result = transform.postings(e, r, user, kNow);
  REQUIRE(std::holds_alternative<Skip>(result));
  CHECK(std::get<Skip>(result).reason == "opted_out");
  user.email_notifications = true;
  user.active = false;
  CHECK(std::get<Skip>(transform.postings(e, r, user, kNow)).reason == "inactive");
}

TEST_CASE("a reminder is not sent before send_at, and at send_at even in quiet hours") {
  Event e;
  e.identity = "evt-9";
  e.type = "reminder";
  e.time = kEventTime;
  e.user_id = "u-1";
  e.send_at = *notify::parse_iso8601("2026-12-01T18:00:00+03:00");
  e.template_name = "email/event_reminder";
  const Request r = planned(e);
  REQUIRE(r.not_before);
  CHECK(notify::format_iso8601(*r.not_before) == "2026-12-01T15:00:00.000Z");
  CHECK(r.terms.quiet_hours == notify::QuietHours::kBypass);
  CHECK(r.expires_at > *r.not_before);
}

TEST_CASE("an expiry past year 9999 stops there, so the posting is what its encoding says") {
  // Found by fuzz_event: a reminder at 9999-12-31T23:59:59Z planned an expiry past 9999, which
  // the posting encoding clamps: the posting decoded by the worker differed from the one made.
  Event e;
  e.identity = "evt-10";
  e.type = "reminder";
  e.time = kEventTime;
  e.user_id = "u-1";
  e.send_at = *notify::parse_iso8601("9999-12-31T23:59:59Z");
  e.template_name = "email/event_reminder";
  e.expires_in = std::chrono::hours(48);
  const Request r = planned(e);
  CHECK(r.expires_at == notify::kLatestTime);
  e.type = "notification_requested";
  e.time = *notify::parse_iso8601("9999-12-31T00:00:00Z");
  e.user_ids = {"u-1"};
  e.template_name = "email/generic";
  CHECK(planned(e).expires_at == notify::kLatestTime);
}

TEST_CASE("a generic request names its users, channels, priority and quiet hours") {
  Event e;
  e.identity = "req-1";
  e.type = "notification_requested";
  e.time = kEventTime;
  e.user_ids = {"u-1", "u-2"};
  e.template_name = "email/generic";
  e.channels = {notify::Channel::kEmail, notify::Channel::kWebhook};
  e.priority = "high";
  e.quiet_hours = notify::QuietHours::kBypass;
  const Request r = planned(e);
  CHECK(r.audience.user_ids.size() == 2);
  CHECK(r.terms.priority == 7);
  CHECK(r.terms.quiet_hours == notify::QuietHours::kBypass);
  CHECK_FALSE(r.single_user);
}

TEST_CASE("template names that leave the templates folder are refused") {
  Event e;
  e.identity = "req-2";
  e.type = "notification_requested";
  e.time = kEventTime;
  e.user_ids = {"u-1"};
  e.template_name = "../../etc/passwd";
  auto r = plan(e, {});
  REQUIRE(std::holds_alternative<Rejection>(r));
  CHECK(std::get<Rejection>(r).reason == "template name not allowed: '../../etc/passwd'");
}

TEST_CASE("a webhook goes only to an allowlisted URL") {
  TemplateStore templates(NOTIFY_SOURCE_DIR "/templates");
  TransformOptions options;
  options.webhook_allowlist = {"https://hooks.example.org"};
  Transformer transform(options, templates);
  Event e;
  e.identity = "req-3";
  e.type = "notification_requested";
  e.time = kEventTime;
  e.user_ids = {"u-1"};
  e.template_name = "email/welcome";
  e.channels = {notify::Channel::kEmail, notify::Channel::kWebhook};
  e.webhook_url = "https://hooks.example.org/notify";
  auto ok = transform.postings(e, planned(e, options), ann(), kNow);
  REQUIRE(std::holds_alternative<std::vector<notify::Posting>>(ok));
  const auto& postings = std::get<std::vector<notify::Posting>>(ok);
  REQUIRE(postings.size() == 2);
  CHECK(postings[1].channel == notify::Channel::kWebhook);
  CHECK(postings[1].recipient.address == "https://hooks.example.org/notify");
  CHECK(postings[0].posting_id != postings[1].posting_id);

  e.webhook_url = "http://169.254.169.254/latest";
  auto refused = transform.postings(e, planned(e, options), ann(), kNow);
  REQUIRE(std::holds_alternative<Rejection>(refused));
  CHECK(std::get<Rejection>(refused).reason ==
        "webhook URL not allowed: http://169.254.169.254/latest");
}

TEST_CASE("context URLs: allowlisted services are fetched, public links kept, others refused") {
  TransformOptions o;
  o.public_base_url = "https://example.org";
  o.context_allowlist = {"http://content.internal:8080/api"};
  auto keys = context_urls_to_fetch({{"movies", "http://content.internal:8080/api/new"},
                                     {"more", "https://example.org/movies"},
                                     {"title", "New this week"}},
                                    o);
  REQUIRE(std::holds_alternative<std::vector<std::string>>(keys));
  CHECK(std::get<std::vector<std::string>>(keys) == std::vector<std::string>{"movies"});
  auto refused = context_urls_to_fetch({{"x", "http://127.0.0.1:15672/api/users"}}, o);
  REQUIRE(std::holds_alternative<Rejection>(refused));
  CHECK(std::get<Rejection>(refused).reason ==
        "template_context.x: URL not allowed: http://127.0.0.1:15672/api/users");
  CHECK(std::holds_alternative<Rejection>(context_urls_to_fetch({{"f", "file:///etc/passwd"}}, o)));
  CHECK(
      std::holds_alternative<Rejection>(context_urls_to_fetch({{"a", "javascript:alert(1)"}}, o)));
  CHECK(std::holds_alternative<Rejection>(
      context_urls_to_fetch({{"a", " java\tscript:alert(1)"}}, o)));
  CHECK(std::holds_alternative<Rejection>(
      context_urls_to_fetch({{"list", {{{"url", "http://10.0.0.1/x"}}}}}, o)));
  // Text that mentions a link is text; nested public links are fine.
  auto text = context_urls_to_fetch({{"message", "see https://other.org/ now"},
                                     {"movies", {{{"url", "https://example.org/m/1"}}}}},
                                    o);
  REQUIRE(std::holds_alternative<std::vector<std::string>>(text));
  CHECK(std::get<std::vector<std::string>>(text).empty());
}

TEST_CASE("priorities map to delivery terms") {
  CHECK(terms_for("immediate").priority == 9);
  CHECK(terms_for("immediate").quiet_hours == notify::QuietHours::kBypass);
  CHECK(terms_for("high").priority == 7);
  CHECK(terms_for("normal").priority == 5);
  CHECK(terms_for("").priority == 5);
  CHECK(terms_for("low").priority == 2);
  CHECK(terms_for("low").quiet_hours == notify::QuietHours::kRespect);
}

TEST_CASE("the confirm link is resolved against the public base URL and must stay on it") {
  TransformOptions o;
  o.public_base_url = "https://public.example/";
  auto confirm = [&](const std::string& link) {
    Event e = signup();
    e.details["confirm_link"] = link;
    return plan(e, o);
  };
  auto url = [&](const std::string& link) {
    auto r = confirm(link);
    REQUIRE(std::holds_alternative<Request>(r));
    return std::get<Request>(r).derived["confirm_url"].get<std::string>();
  };
  CHECK(url("/s/AbC12") == "https://public.example/s/AbC12");
  CHECK(url("s/AbC12") == "https://public.example/s/AbC12");
  CHECK(url(" /s/AbC12\n") == "https://public.example/s/AbC12");
  CHECK(url("HTTPS://PUBLIC.EXAMPLE/s/x") == "https://public.example/s/x");
  CHECK(url("\\s\\x") == "https://public.example/s/x");
  // PUBLIC_BASE_URL is a prefix: relative links land below its path.
  o.public_base_url = "https://public.example/app";
  CHECK(url("/s/AbC12") == "https://public.example/app/s/AbC12");
  CHECK(url("s/AbC12") == "https://public.example/app/s/AbC12");
  CHECK(url("/a:b") == "https://public.example/app/a:b");
  CHECK(url("https://public.example/other") == "https://public.example/other");
  o.public_base_url = "https://public.example/";
  for (const char* evil :
       {"https:/evil.example/x", "https:evil.example/x", "//evil.example/x",
        "https:\\\\evil.example\\x", "HTTPS:\\\\\\\\evil.example", " https://evil.example",
        "java\tscript:alert(1)", "\x01https://evil.example", "HTTPS://EVIL.EXAMPLE",
        "https://public.example@evil.example/", "https://evil.example\\@public.example",
        "/\\evil.example/x", "http://public.example/x", "javascript:alert(1)",
        "data:text/html,x"}) {
    CAPTURE(evil);
    auto r = confirm(evil);
    REQUIRE(std::holds_alternative<Rejection>(r));
    CHECK(std::get<Rejection>(r).reason.rfind("details.confirm_link: URL not allowed: ", 0) == 0);
  }
  CHECK(std::get<Rejection>(confirm("java\tscript:alert(1)")).reason ==
        "details.confirm_link: URL not allowed: java\\x09script:alert(1)");
}

namespace {
Event request_with(const nlohmann::json& context) {
  Event e;
  e.identity = "req-links";
  e.type = "notification_requested";
  e.time = kEventTime;
  e.user_ids = {"u-1"};
  e.template_name = "email/generic";
  e.template_context = context;
  return e;
}

TransformOptions public_example() {
  TransformOptions o;
  o.public_base_url = "https://public.example";
  o.context_allowlist = {"http://content.internal:8080/api"};
  return o;
}
}  // namespace

TEST_CASE("template_context links are refused when a mail client would leave our sites") {
  for (const char* evil :
       {"https:/evil.example/x", "https:evil.example/x", "//evil.example/x",
        "https:\\\\evil.example\\x", "HTTPS:\\\\\\\\evil.example", " https://evil.example",
        "java\tscript:alert(1)", "\x01https://evil.example", "HTTPS://EVIL.EXAMPLE",
        "https://public.example@evil.example/", "https://evil.example\\@public.example",
        "\\\\evil.example", "/\\evil.example", "https://evil.example\t",
        "https://public.example.evil.example/", "ftp://public.example/", "file:///etc/passwd",
        "data:text/html,<script>", "VBScript:x", "foo://evil.example",
        "ms-word:ofe|u|https://evil.example/d.docx",
        // Seen through fuzz_event's href check: backslashes name a host too.
        "smb:\\\\evil.example\\share", "search-ms:query=x&crumb=location:\\\\evil.example\\s",
        "foo:/\\evil.example", "https://\xc3\xa9vil.example/"}) {
    CAPTURE(evil);
    auto top = plan(request_with({{"action_url", evil}}), public_example());
    REQUIRE(std::holds_alternative<Rejection>(top));
    CHECK(std::get<Rejection>(top).reason.rfind("template_context.action_url: URL not allowed: ",
                                                0) == 0);
    auto nested = plan(request_with({{"movies", {{{"url", evil}}}}}), public_example());
    REQUIRE(std::holds_alternative<Rejection>(nested));
    CHECK(std::get<Rejection>(nested).reason.rfind("template_context.movies.0.url: URL not allowed",
                                                   0) == 0);
    // The check the pipeline runs before fetching agrees.
    CHECK(std::holds_alternative<Rejection>(
        context_urls_to_fetch({{"action_url", evil}}, public_example())));
  }
}

TEST_CASE("template_context links are carried in their resolved form") {
  const nlohmann::json context = {
      {"action_url", " HTTPS://Public.Example/exports/7\t"},
      {"relative", "/exports/7"},
      {"scheme_relative", "//public.example/x"},
      {"single_slash", "https:/public.example/y"},
      {"service", "http://content.internal:8080/api/new"},
      {"movies", {{{"url", "https:\\\\public.example\\m\\1"}}}},
      // Text that mentions something is not a link, and is kept as written.
      {"greeting", "hello: world"},
      {"time", "10:30"},
      {"message", "see https://other.org/ now"},
      {"mail", "mailto:help@public.example"},
      {"note", "/ 2 items left"},
      {"count", 3}};
  const Request r = planned(request_with(context), public_example());
  CHECK(r.context["action_url"] == "https://public.example/exports/7");
  CHECK(r.context["relative"] == "https://public.example/exports/7");
  CHECK(r.context["scheme_relative"] == "https://public.example/x");
  CHECK(r.context["single_slash"] == "https://public.example/y");
  CHECK(r.context["service"] == "http://content.internal:8080/api/new");
  CHECK(r.context["movies"][0]["url"] == "https://public.example/m/1");
  for (const char* key : {"greeting", "time", "message", "mail", "note", "count"}) {
    CAPTURE(key);
    CHECK(r.context[key] == context[key]);
  }
  auto keys = context_urls_to_fetch(r.context, public_example());
  REQUIRE(std::holds_alternative<std::vector<std::string>>(keys));
  CHECK(std::get<std::vector<std::string>>(keys) == std::vector<std::string>{"service"});
}

TEST_CASE("the mail's href holds the resolved link, never the text as written") {
  TemplateStore templates(NOTIFY_SOURCE_DIR "/templates");
  Transformer transform(public_example(), templates);
  const Event e = request_with(
      {{"title", "Export"}, {"message", "ready"}, {"action_url", "\tHTTPS://PUBLIC.EXAMPLE/a b"}});
  const auto postings = render(transform, e, ann());
  REQUIRE(postings.size() == 1);
  CHECK(postings[0].content.html.find("href=\"https://public.example/a%20b\"") !=
        std::string::npos);
  CHECK(postings[0].content.html.find("PUBLIC.EXAMPLE") == std::string::npos);
}

TEST_CASE("a refusal quotes a long link shortened, on one line") {
  const std::string evil = "https://evil.example/" + std::string(100000, 'x') + "\n";
  auto r = plan(request_with({{"action_url", evil}}), public_example());
  REQUIRE(std::holds_alternative<Rejection>(r));
  const std::string& reason = std::get<Rejection>(r).reason;
  CHECK(reason.size() < 400);
  CHECK(reason.find('\n') == std::string::npos);
  CHECK(reason.ends_with("…"));
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

TEST_CASE("mailings are bulk; sign-up, password change and reminders transactional") {
  CHECK(planned(mailing(), with_unsubscribe()).category == notify::Category::kBulk);
  CHECK(planned(signup()).category == notify::Category::kTransactional);
  Event password = signup();
  password.type = "user_changed_password_successfully";
  CHECK(planned(password).category == notify::Category::kTransactional);
  Event reminder;
  reminder.identity = "evt-9";
  reminder.type = "reminder";
  reminder.time = kEventTime;
  reminder.user_id = "u-1";
  reminder.send_at = kEventTime;
  reminder.template_name = "email/event_reminder";
  CHECK(planned(reminder).category == notify::Category::kTransactional);
  // A generic request says which; transactional by default.
  Event request = request_with({});
  CHECK(planned(request).category == notify::Category::kTransactional);
  request.category = notify::Category::kBulk;
  CHECK(planned(request, with_unsubscribe()).category == notify::Category::kBulk);
  request.category = notify::Category::kTransactional;
  CHECK(planned(request).category == notify::Category::kTransactional);
}

TEST_CASE("without UNSUBSCRIBE_SECRET and UNSUBSCRIBE_URL bulk events are refused") {
  const std::string why =
      "unsubscribe not configured: UNSUBSCRIBE_SECRET and UNSUBSCRIBE_URL are required for "
      "bulk mail";
  for (const auto& options : {TransformOptions{},
                              [] {
                                auto o = with_unsubscribe();
                                o.unsubscribe.secret.clear();
                                return o;
                              }(),
                              [] {
                                auto o = with_unsubscribe();
                                o.unsubscribe.url.clear();
                                return o;
                              }()}) {
    auto r = plan(mailing(), options);
    REQUIRE(std::holds_alternative<Rejection>(r));
    CHECK(std::get<Rejection>(r).reason == why);
    Event bulk_request = request_with({});
    bulk_request.category = notify::Category::kBulk;
    auto refused = plan(bulk_request, options);
    REQUIRE(std::holds_alternative<Rejection>(refused));
    CHECK(std::get<Rejection>(refused).reason == why);
  }
  // Transactional mail needs none of it.
  CHECK(std::holds_alternative<Request>(plan(signup(), {})));
  // A bulk Request given to a Transformer without the settings makes no posting either.
  TemplateStore templates(NOTIFY_SOURCE_DIR "/templates");
  Transformer bare({}, templates);
  auto result = bare.postings(mailing(), planned(mailing(), with_unsubscribe()), ann(), kNow);
  REQUIRE(std::holds_alternative<Rejection>(result));
  CHECK(std::get<Rejection>(result).reason == why);
}

TEST_CASE("a bulk posting carries the recipient's unsubscribe links; the footer shows them") {
  TemplateStore templates(NOTIFY_SOURCE_DIR "/templates");
  TransformOptions options = with_unsubscribe();
  options.public_base_url = "https://example.org";  // where the event's own link may point
  options.unsubscribe.url = "https://example.org/unsubscribe?list=movies";
  options.unsubscribe.mailto = "unsubscribe@example.org";
  options.unsubscribe.ttl = std::chrono::hours(24 * 30);
  Transformer transform(options, templates);
  Event e = mailing();
  // The event's own link must not replace the recipient's.
  e.template_context = {{"movies", nlohmann::json::array()},
                        {"unsubscribe_url", "https://example.org/unsubscribe?list=all"}};
  const auto postings = render(transform, e, ann());
  REQUIRE(postings.size() == 1);
  const notify::Posting& p = postings[0];
  CHECK(p.category == notify::Category::kBulk);
  const std::string prefix = "https://example.org/unsubscribe?list=movies&token=";
  REQUIRE(p.unsubscribe.url.rfind(prefix, 0) == 0);
  const std::string token = p.unsubscribe.url.substr(prefix.size());
  CHECK(p.unsubscribe.mailto == "mailto:unsubscribe@example.org?subject=unsubscribe%20" + token);

  const notify::UnsubscribeSigner signer(kSecret);
  const auto verified = signer.verify(token, kNow);
  REQUIRE(std::holds_alternative<notify::UnsubscribeClaim>(verified));
  const auto& claim = std::get<notify::UnsubscribeClaim>(verified);
  CHECK(claim.user_id == "u-1");
  CHECK(claim.category == notify::Category::kBulk);
  CHECK(claim.expires_at ==
        std::chrono::floor<std::chrono::seconds>(kNow) + std::chrono::hours(24 * 30));

  CHECK(p.content.text.find("Unsubscribe from these emails: " + p.unsubscribe.url) !=
        std::string::npos);
  CHECK(p.content.html.find("href=\"https://example.org/unsubscribe?list=movies&amp;token=" +
                            token + "\"") != std::string::npos);
  CHECK(p.content.text.find("list=all") == std::string::npos);
  CHECK(p.content.html.find("list=all") == std::string::npos);

  // Another recipient, another token.
  auth::User bob = ann();
  bob.id = "u-2";
  const auto other = render(transform, e, bob);
  REQUIRE(other.size() == 1);
  CHECK(other[0].unsubscribe.url != p.unsubscribe.url);
  // The posting carries it as the worker reads it.
  const notify::Posting decoded = notify::decode_posting(notify::encode(p));
  CHECK(decoded.category == notify::Category::kBulk);
  CHECK(decoded.unsubscribe.url == p.unsubscribe.url);
  CHECK(decoded.unsubscribe.mailto == p.unsubscribe.mailto);
}

TEST_CASE("transactional postings carry no unsubscribe links, even when configured") {
  TemplateStore templates(NOTIFY_SOURCE_DIR "/templates");
  Transformer transform(with_unsubscribe(), templates);
  const auto welcome = render(transform, signup(), ann());
  REQUIRE(welcome.size() == 1);
  CHECK(welcome[0].category == notify::Category::kTransactional);
  CHECK(welcome[0].unsubscribe.empty());
  CHECK(welcome[0].content.text.find("token=") == std::string::npos);
}
