#include "transform.hpp"

#include <string_view>

#include <date/date.h>
#include <kainjow/mustache.hpp>

#include "auth_client/url.hpp"
#include "notify/time.hpp"

namespace etl {
namespace {

using nlohmann::json;

// What templates see of the user, under "user": built for each recipient as the renderer's data
// directly, not as JSON to be converted.
TemplateStore::Values user_values(const auth::User& user, std::string_view unsubscribe_url) {
  using Values = TemplateStore::Values;
  Values fields{Values::type::object};
  fields["id"] = Values{user.id};
  fields["last_name"] = Values{user.last_name};
  fields["email"] = Values{user.email};
  // An empty string is true in a Mustache section: without a first name the key is left out, so
  // that templates greet "Hello," rather than "Hello ,".
  if (!user.first_name.empty()) fields["first_name"] = Values{user.first_name};
  Values values{Values::type::object};
  values["user"] = std::move(fields);
  // The recipient's own link: before the event's template_context, which cannot replace it.
  if (!unsubscribe_url.empty()) values["unsubscribe_url"] = Values{std::string(unsubscribe_url)};
  return values;
}

std::string display_name(const auth::User& user) {
  std::string name = user.first_name;
  if (!user.last_name.empty()) name += (name.empty() ? "" : " ") + user.last_name;
  return name;
}

// "23 November 2026, 10:00 UTC": readable in a notice, independent of the reader's locale.
std::string readable_time(notify::TimePoint t) {
  return date::format("%d %B %Y, %H:%M UTC", date::floor<std::chrono::minutes>(t));
}

// A value quoted in a refusal: at most `max` bytes (an ellipsis marks the cut), control
// characters written as \xNN, so a reason stays one readable, bounded line.
std::string shown(std::string_view value, std::size_t max = 200) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char byte : value) {
    const auto c = static_cast<unsigned char>(byte);
    // Cut before a character, never inside a UTF-8 sequence.
    if (out.size() >= max && (c & 0xC0) != 0x80) return out + "…";
    if (c < 0x20 || c == 0x7F) {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    } else {
      out.push_back(byte);
    }
  }
  return out;
}

// PUBLIC_BASE_URL as the link checks use it, parsed by libcurl once rather than for every link
// of every event: remembered for the last value seen (one per process in practice), per thread.
struct PublicSite {
  std::string url;                     // PUBLIC_BASE_URL as configured
  std::optional<auth::Origin> origin;  // nullopt: not an http(s) URL
  std::string base;                    // with a trailing "/": relative links land below its path
};

const PublicSite& public_site(const TransformOptions& options) {
  thread_local std::optional<PublicSite> site;
  if (!site || site->url != options.public_base_url) {
    site = PublicSite{options.public_base_url, auth::origin_of(options.public_base_url),
                      options.public_base_url};
    if (site->base.empty() || site->base.back() != '/') site->base.push_back('/');
  }
  return *site;
}

bool on_public_site(const std::string& url, const TransformOptions& options) {
  const auto& site = public_site(options).origin;
  if (!site) return false;
  const auto origin = auth::origin_of(url);
  return origin && *site == *origin;
}

bool slash(char c) { return c == '/' || c == '\\'; }

// The link as a browser resolves it, with PUBLIC_BASE_URL taken as a prefix: "/s/x" and "s/x"
// both land below its path ("https://example.org/app" + "/s/x" is ".../app/s/x"), as the
// public site's links always have. Scheme-relative and absolute links are not joined.
std::optional<std::string> resolve_on_site(std::string_view raw, const TransformOptions& options) {
  std::string text = auth::link_text(raw);
  const bool scheme_relative = text.size() >= 2 && slash(text[0]) && slash(text[1]);
  // "./" keeps "/a:b" a path, never a scheme.
  if (!text.empty() && slash(text[0]) && !scheme_relative) text.insert(0, ".");
  return auth::resolve_link(text, public_site(options).base);
}

// What a mail may carry for a link: the link resolved (resolve_on_site), when that lies on the
// public site or an allowlisted service. nullopt: refused.
std::optional<std::string> allowed_link(std::string_view text, const TransformOptions& options) {
  auto resolved = resolve_on_site(text, options);
  if (!resolved) return std::nullopt;
  if (on_public_site(*resolved, options) ||
      auth::url_allowed(*resolved, options.context_allowlist)) {
    return resolved;
  }
  return std::nullopt;
}

// A value that a browser would follow as a link if a template put it into href, as opposed to
// text that merely mentions something ("hello: world", "10:30", "see https://x now"). Read
// after the browser's clean-up (link_text): a scheme that browsers resolve or run (http, https,
// ftp, ws, wss, file; javascript, data, vbscript); any other scheme followed by a blank-free
// rest holding "//" or a backslashed form of it ("foo://x", "ms-word:ofe|u|https://x",
// "smb:\\\\host\\share"); "//host" with slashes or backslashes; a path "/x" without blanks.
bool looks_like_link(std::string_view raw) {
  const std::string text = auth::link_text(raw);
  if (const auto scheme = auth::link_scheme(text)) {
    for (const char* s :
         {"http", "https", "ftp", "ws", "wss", "file", "javascript", "data", "vbscript"}) {
      if (*scheme == s) return true;
    }
    const std::string_view rest = std::string_view(text).substr(scheme->size() + 1);
    if (rest.find(' ') != std::string_view::npos) return false;
    // "//" in any of the forms a browser reads as one ("\\\\host", "/\\host"): a host.
    for (std::size_t i = 0; i + 1 < rest.size(); ++i) {
      if (slash(rest[i]) && slash(rest[i + 1])) return true;
    }
    return false;
  }
  if (text.empty() || !slash(text[0])) return false;
  if (text.size() >= 2 && slash(text[1])) return true;
  return text.find(' ') == std::string::npos;
}

std::string not_allowed(const std::string& path, std::string_view text) {
  return "template_context." + shown(path, 100) + ": URL not allowed: " + shown(text);
}

// Every link in the event's template_context replaced by what allowed_link makes of it, so the
// template renders (and the pipeline fetches) the resolved URL, never the text as written.
std::optional<Rejection> resolve_links(json& value, const std::string& path,
                                       const TransformOptions& options) {
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    if (!looks_like_link(text)) return std::nullopt;
    auto link = allowed_link(text, options);
    if (!link) return Rejection{not_allowed(path, text)};
    value = std::move(*link);
  } else if (value.is_structured()) {
    for (auto& [key, item] : value.items()) {
      if (auto r = resolve_links(item, path.empty() ? key : path + "." + key, options)) return r;
    }
  }
  return std::nullopt;
}

}  // namespace

DeliveryTerms terms_for(const std::string& event_priority) {
  if (event_priority == "immediate") return {9, notify::QuietHours::kBypass};
  if (event_priority == "high") return {7, notify::QuietHours::kRespect};
  if (event_priority == "low") return {2, notify::QuietHours::kRespect};
  return {5, notify::QuietHours::kRespect};
}

std::variant<Request, Rejection> plan(const Event& event, const TransformOptions& o) {
  Request r;
  r.channels = event.channels.empty() ? std::vector{notify::Channel::kEmail} : event.channels;
  r.context = event.template_context;
  r.webhook_url = event.webhook_url;
  auto ttl = [&](std::chrono::milliseconds fallback) {
    return event.expires_in.value_or(fallback);
  };

  if (event.type == "user_signed_up") {
    r.template_name = "email/welcome";
    r.channels = {notify::Channel::kEmail};
    r.terms = terms_for(event.priority.empty() ? "immediate" : event.priority);
    r.expires_at = notify::add_capped(event.time, o.welcome_ttl);
    const std::string confirm_link = event.details.value("confirm_link", "");
    const auto confirm_url = allowed_link(confirm_link, o);
    if (!confirm_url) {
      return Rejection{"details.confirm_link: URL not allowed: " + shown(confirm_link)};
    }
    r.derived["confirm_url"] = *confirm_url;
    // The user is waiting for this link; a new account may not be active yet.
    r.skip_opted_out = false;
    r.skip_inactive = false;
    r.single_user = true;
    r.audience.user_ids = {event.user_id};
  } else if (event.type == "user_changed_password_successfully") {
    // A security notice: at once, at any hour, even to users who opted out of other mail.
    r.template_name = "email/password_changed";
    r.channels = {notify::Channel::kEmail};
    r.terms = {std::max(7, terms_for(event.priority).priority), notify::QuietHours::kBypass};
    r.expires_at = notify::add_capped(event.time, o.security_ttl);
    r.derived["changed_at"] = readable_time(event.time);
    const auto support_url = resolve_on_site("/support", o);
    if (!support_url) return Rejection{"PUBLIC_BASE_URL is not an http(s) URL"};
    r.derived["support_url"] = *support_url;
    r.skip_opted_out = false;
    r.skip_inactive = false;
    r.single_user = true;
    r.audience.user_ids = {event.user_id};
  } else if (event.type == "mailing") {
    r.template_name = event.template_name;
    r.terms = terms_for(event.priority.empty() ? "low" : event.priority);
    r.terms.quiet_hours = notify::QuietHours::kRespect;  // mailings always respect them
    r.expires_at = notify::add_capped(event.time, ttl(o.default_ttl));
    r.audience.kind = Audience::Kind::kUsersUrl;
    r.audience.users_url = event.receivers;
    r.category = notify::Category::kBulk;
  } else if (event.type == "reminder") {
    // The user chose the time: not before send_at, and at send_at even inside quiet hours.
    r.template_name = event.template_name;
    r.terms = {terms_for(event.priority).priority, notify::QuietHours::kBypass};
    r.not_before = event.send_at;
    r.expires_at = notify::add_capped(*event.send_at, ttl(o.reminder_ttl));
    r.skip_opted_out = false;
    r.single_user = true;
    r.audience.user_ids = {event.user_id};
  } else if (event.type == "notification_requested") {
    r.template_name = event.template_name;
    r.terms = terms_for(event.priority);
    if (event.quiet_hours) r.terms.quiet_hours = *event.quiet_hours;
    r.expires_at = notify::add_capped(event.time, ttl(o.default_ttl));
    r.single_user = event.user_ids.size() == 1;
    r.audience.user_ids = event.user_ids;
    r.category = event.category.value_or(notify::Category::kTransactional);
  } else {
    return Rejection{"no postings defined for event_type '" + event.type + "'"};
  }
  if (r.category == notify::Category::kBulk && !o.unsubscribe.configured()) {
    return Rejection{kUnsubscribeNotConfigured};
  }
  if (!TemplateStore::valid_name(r.template_name)) {
    return Rejection{"template name not allowed: '" + r.template_name + "'"};
  }
  if (auto rejection = resolve_links(r.context, "", o)) return *rejection;
  return r;
}

namespace {

std::optional<Rejection> check_nested_links(const json& value, const std::string& path,
                                            const TransformOptions& options) {
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    if (looks_like_link(text) && !allowed_link(text, options)) {
      return Rejection{not_allowed(path, text)};
    }
  } else if (value.is_structured()) {
    for (const auto& [key, item] : value.items()) {
      if (auto r = check_nested_links(item, path + "." + key, options)) return r;
    }
  }
  return std::nullopt;
}

}  // namespace

std::variant<std::vector<std::string>, Rejection> context_urls_to_fetch(
    const nlohmann::json& context, const TransformOptions& options) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : context.items()) {
    if (value.is_string()) {
      const std::string& text = value.get_ref<const std::string&>();
      if (!looks_like_link(text)) continue;
      const auto link = allowed_link(text, options);
      if (!link) return Rejection{not_allowed(key, text)};
      if (on_public_site(*link, options)) continue;
      // Fetched as written: libcurl must read the text as the allowlist judged it (plan() has
      // already replaced it with its resolved form).
      if (!auth::url_allowed(text, options.context_allowlist)) {
        return Rejection{not_allowed(key, text)};
      }
      keys.push_back(key);
    } else if (auto r = check_nested_links(value, key, options)) {
      return *r;
    }
  }
  return keys;
}

Transformer::Transformer(TransformOptions options, TemplateStore& templates)
    : options_(std::move(options)), templates_(templates) {
  if (options_.unsubscribe.configured()) signer_.emplace(options_.unsubscribe.secret);
}

notify::Unsubscribe Transformer::unsubscribe_links(const std::string& user_id,
                                                   notify::TimePoint now) const {
  const auto expires_at =
      std::chrono::floor<std::chrono::seconds>(notify::add_capped(now, options_.unsubscribe.ttl));
  const std::string token = signer_->sign(user_id, notify::Category::kBulk, expires_at);
  notify::Unsubscribe links;
  links.url = notify::make_unsubscribe_url(options_.unsubscribe.url, token);
  if (!options_.unsubscribe.mailto.empty()) {
    // The token in the subject tells the reader of that mailbox who wants out.
    links.mailto = "mailto:" + options_.unsubscribe.mailto + "?subject=unsubscribe%20" + token;
  }
  return links;
}

Transformer::Result Transformer::postings(const Event& event, const Request& request,
                                          const auth::User& user, notify::TimePoint now) {
  if (request.skip_inactive && !user.active) return Skip{"inactive"};
  std::vector<notify::Posting> out;
  std::optional<notify::Unsubscribe> unsubscribe;  // a bulk request's, made with the content
  std::optional<notify::Content> content;          // rendered once, shared by the channels
  for (std::size_t c = 0; c < request.channels.size(); ++c) {
    const notify::Channel channel = request.channels[c];
    notify::Posting p;
    p.channel = channel;
    p.recipient.user_id = user.id;
    p.recipient.name = display_name(user);
    p.recipient.timezone = user.timezone;
    p.recipient.locale = user.locale;
    if (channel == notify::Channel::kEmail) {
      if (request.skip_opted_out && !user.email_notifications) continue;
      p.recipient.address = user.email.empty() ? event.details.value("email", "") : user.email;
      if (p.recipient.address.empty()) continue;
    } else {
      p.recipient.address = request.webhook_url;
      if (p.recipient.address.empty()) continue;
      if (!auth::url_allowed(p.recipient.address, options_.webhook_allowlist)) {
        return Rejection{"webhook URL not allowed: " + shown(p.recipient.address)};
      }
    }
    p.event_id = event.identity;
    p.event_type = event.type;
    p.source = event.source;
    p.event_time = event.time;
    p.template_name = request.template_name;
    p.posting_id = notify::make_posting_id(event.identity, user.id, notify::to_string(channel));
    p.priority = request.terms.priority;
    p.quiet_hours = request.terms.quiet_hours;
    p.created_at = now;
    p.expires_at = request.expires_at;
    p.not_before = request.not_before;
    p.category = request.category;
    if (!content) {
      unsubscribe.emplace();
      if (request.category == notify::Category::kBulk) {
        // plan() refuses bulk requests without it; a Request made elsewhere must not slip by.
        if (!signer_) return Rejection{kUnsubscribeNotConfigured};
        *unsubscribe = unsubscribe_links(user.id, now);
      }
      // The request's context is the same for every recipient: layered under what the ETL
      // derived and the user, not copied.
      try {
        content = templates_.render(request.template_name, user.locale,
                                    user_values(user, unsubscribe->url),
                                    {&request.derived, &request.context});
      } catch (const TemplateError& e) {
        return Rejection{e.what()};
      }
    }
    // A webhook carries the same rendered content as JSON; the last channel takes it whole
    // (a mail's text and HTML are copied only when another channel needs them too).
    if (c + 1 == request.channels.size()) {
      p.content = std::move(*content);
      p.unsubscribe = std::move(*unsubscribe);
    } else {
      p.content = *content;
      p.unsubscribe = *unsubscribe;
    }
    out.push_back(std::move(p));
  }
  if (out.empty()) {
    if (request.skip_opted_out && !user.email_notifications) return Skip{"opted_out"};
    return Skip{"no_address"};
  }
  return out;
}

}  // namespace etl
