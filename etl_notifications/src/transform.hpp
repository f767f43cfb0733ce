#pragma once
// Transform: decides who is told what, when and how. An event becomes a Request (the
// template, context, channels and delivery terms, plus its audience), and the Request with one
// user becomes that user's rendered postings — or a reason why not. Pure but for the template
// files; the Auth lookups and page walks happen in the pipeline.

#include <chrono>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "auth_client/auth_client.hpp"
#include "intake.hpp"
#include "notify/posting.hpp"
#include "notify/unsubscribe.hpp"
#include "render.hpp"

namespace etl {

// One-click unsubscribe for bulk mail (documentation/unsubscribe.md).
struct UnsubscribeOptions {
  std::string secret;  // UNSUBSCRIBE_SECRET: the HMAC key of the tokens
  std::string url;     // UNSUBSCRIBE_URL: the endpoint the token is appended to
  std::string mailto;  // UNSUBSCRIBE_MAILTO: an address for a mailto: form; empty: none
  std::chrono::milliseconds ttl = std::chrono::hours(24 * 60);  // UNSUBSCRIBE_TTL
  // Without a secret and a URL no bulk mail goes out: it could not carry the link.
  bool configured() const { return !secret.empty() && !url.empty(); }
};

// Why a bulk event is refused when UnsubscribeOptions are not configured.
inline constexpr const char* kUnsubscribeNotConfigured =
    "unsubscribe not configured: UNSUBSCRIBE_SECRET and UNSUBSCRIBE_URL are required for bulk "
    "mail";

struct TransformOptions {
  std::string public_base_url = "http://localhost:8000";
  std::chrono::milliseconds welcome_ttl = std::chrono::hours(24);
  std::chrono::milliseconds security_ttl = std::chrono::hours(24);
  std::chrono::milliseconds default_ttl = std::chrono::hours(48);  // mailings, requests
  std::chrono::milliseconds reminder_ttl = std::chrono::hours(1);  // after send_at
  std::vector<std::string> webhook_allowlist;  // WEBHOOK_URL_ALLOWLIST: where webhooks may go
  std::vector<std::string> context_allowlist;  // CONTEXT_URL_ALLOWLIST: services fetched from
  UnsubscribeOptions unsubscribe;
};

struct DeliveryTerms {
  int priority = 5;
  notify::QuietHours quiet_hours = notify::QuietHours::kRespect;
};

// "immediate" is what the user waits for right now (a confirmation link, a security notice):
// it bypasses quiet hours. Other priorities respect them.
DeliveryTerms terms_for(const std::string& event_priority);

// Who an event is for.
struct Audience {
  enum class Kind { kUsers, kUsersUrl };
  Kind kind = Kind::kUsers;
  std::vector<std::string> user_ids;  // kUsers
  std::string users_url;              // kUsersUrl: an Auth listing, walked page by page
};

// What an event asks for, the same for every recipient.
struct Request {
  std::string template_name;
  nlohmann::json context = nlohmann::json::object();  // the event's template_context
  nlohmann::json derived = nlohmann::json::object();  // what the ETL adds (confirm_url, ...)
  std::vector<notify::Channel> channels;
  // Bulk postings carry a one-click unsubscribe per recipient; mailings are bulk, a generic
  // request says which, the other types are transactional.
  notify::Category category = notify::Category::kTransactional;
  DeliveryTerms terms;
  notify::TimePoint expires_at{};
  std::optional<notify::TimePoint> not_before;
  bool skip_opted_out = true;  // users with email_notifications=false get no email
  bool skip_inactive = true;
  bool single_user = false;  // an unknown user refuses the event (else: skipped)
  std::string webhook_url;
  Audience audience;
};

// A bulk request without UnsubscribeOptions configured is refused (kUnsubscribeNotConfigured).
// Links are judged as a mail client reads them (documentation/templates.md, "Links"): the
// sign-up's confirm_link and every value of template_context that looks like a link are
// resolved against PUBLIC_BASE_URL (auth::resolve_link) and must land on the public site's
// origin or an allowlisted service (CONTEXT_URL_ALLOWLIST); the Request carries the resolved
// URL in their place. Any other link refuses the event.
std::variant<Request, Rejection> plan(const Event& event, const TransformOptions& options);

// template_context values that are links (as plan() judges them): top-level ones of
// allowlisted services are to be fetched (their JSON replaces the value); links to the public
// site, and nested links to allowlisted services, stay links; any other link refuses the event,
// so an event can neither make the ETL fetch internal addresses nor slip a script or foreign
// link into a template. Text that merely mentions a URL is left alone. Returns the keys to
// fetch.
std::variant<std::vector<std::string>, Rejection> context_urls_to_fetch(
    const nlohmann::json& context, const TransformOptions& options);

// Why a user of the audience gets nothing: not an error.
struct Skip {
  std::string reason;  // "opted_out", "inactive", "no_address"
};

class Transformer {
 public:
  // Throws std::invalid_argument when the unsubscribe secret is set but too short.
  Transformer(TransformOptions options, TemplateStore& templates);

  const TransformOptions& options() const { return options_; }

  using Result = std::variant<std::vector<notify::Posting>, Skip, Rejection>;
  // A bulk request's postings carry the user's unsubscribe links (a token valid until now +
  // UNSUBSCRIBE_TTL), which its templates see as `unsubscribe_url`, whatever the event's
  // template_context says.
  Result postings(const Event& event, const Request& request, const auth::User& user,
                  notify::TimePoint now);

 private:
  notify::Unsubscribe unsubscribe_links(const std::string& user_id, notify::TimePoint now) const;

  TransformOptions options_;
  TemplateStore& templates_;
  std::optional<notify::UnsubscribeSigner> signer_;  // when unsubscribe is configured
};

}  // namespace etl
