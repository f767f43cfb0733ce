#include "transform.hpp"

#include <cctype>

#include <date/date.h>

#include "auth_client/url.hpp"
#include "notify/time.hpp"

namespace etl {
namespace {

using nlohmann::json;

json user_context(const auth::User& user) {
  return {{"id", user.id},
          {"first_name", user.first_name},
          {"last_name", user.last_name},
          {"email", user.email}};
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

}  // namespace

DeliveryTerms terms_for(const std::string& event_priority) {
  if (event_priority == "immediate") return {9, notify::QuietHours::kBypass};
  if (event_priority == "high") return {7, notify::QuietHours::kRespect};
  if (event_priority == "low") return {2, notify::QuietHours::kRespect};
  return {5, notify::QuietHours::kRespect};
}

std::string absolute_url(const std::string& base, const std::string& link) {
  if (link.rfind("http://", 0) == 0 || link.rfind("https://", 0) == 0) return link;
  std::string out = base;
  while (!out.empty() && out.back() == '/') out.pop_back();
  if (link.empty() || link.front() != '/') out.push_back('/');
  return out + link;
}

std::variant<Request, Rejection> plan(const Event& event, const TransformOptions& o) {
  Request r;
  r.channels = event.channels.empty() ? std::vector<std::string>{"email"} : event.channels;
  r.context = event.template_context;
  r.webhook_url = event.webhook_url;
  auto ttl = [&](std::chrono::milliseconds fallback) { return event.expires_in.value_or(fallback); };

  if (event.type == "user_signed_up") {
    r.template_name = "email/welcome";
    r.channels = {"email"};
    r.terms = terms_for(event.priority.empty() ? "immediate" : event.priority);
    r.expires_at = event.time + o.welcome_ttl;
    r.derived["confirm_url"] =
        absolute_url(o.public_base_url, event.details.value("confirm_link", ""));
    // The user is waiting for this link; a new account may not be active yet.
    r.skip_opted_out = false;
    r.skip_inactive = false;
    r.single_user = true;
    r.audience.user_ids = {event.user_id};
  } else if (event.type == "user_changed_password_successfully") {
    // A security notice: at once, at any hour, even to users who opted out of other mail.
    r.template_name = "email/password_changed";
    r.channels = {"email"};
    r.terms = {std::max(7, terms_for(event.priority).priority), notify::QuietHours::kBypass};
    r.expires_at = event.time + o.security_ttl;
    r.derived["changed_at"] = readable_time(event.time);
    r.derived["support_url"] = absolute_url(o.public_base_url, "/support");
    r.skip_opted_out = false;
    r.skip_inactive = false;
    r.single_user = true;
    r.audience.user_ids = {event.user_id};
  } else if (event.type == "mailing") {
    r.template_name = event.template_name;
    r.terms = terms_for(event.priority.empty() ? "low" : event.priority);
    r.terms.quiet_hours = notify::QuietHours::kRespect;  // mailings always respect them
    r.expires_at = event.time + ttl(o.default_ttl);
    r.audience.kind = Audience::Kind::kUsersUrl;
    r.audience.users_url = event.receivers;
  } else if (event.type == "reminder") {
    // The user chose the time: not before send_at, and at send_at even inside quiet hours.
    r.template_name = event.template_name;
    r.terms = {terms_for(event.priority).priority, notify::QuietHours::kBypass};
    r.not_before = event.send_at;
    r.expires_at = *event.send_at + ttl(o.reminder_ttl);
    r.skip_opted_out = false;
    r.single_user = true;
    r.audience.user_ids = {event.user_id};
  } else if (event.type == "notification_requested") {
    r.template_name = event.template_name;
    r.terms = terms_for(event.priority);
    if (event.quiet_hours) r.terms.quiet_hours = *event.quiet_hours;
    r.expires_at = event.time + ttl(o.default_ttl);
    r.single_user = event.user_ids.size() == 1;
    r.audience.user_ids = event.user_ids;
  } else {
    return Rejection{"no postings defined for event_type '" + event.type + "'"};
  }
  if (!TemplateStore::valid_name(r.template_name)) {
    return Rejection{"template name not allowed: '" + r.template_name + "'"};
  }
  return r;
}

namespace {

// "https://x", "ftp://x", "javascript:alert(1)": a value that is a link, not text mentioning one.
bool is_link(const std::string& raw) {
  // As a browser reads an href: blanks and control characters around it trimmed, tabs and
  // line breaks inside it removed.
  std::string text;
  for (char c : raw) {
    if (c != '\t' && c != '\n' && c != '\r') text.push_back(c);
  }
  const auto blank = [](char c) { return static_cast<unsigned char>(c) <= 0x20; };
  while (!text.empty() && blank(text.front())) text.erase(text.begin());
  while (!text.empty() && blank(text.back())) text.pop_back();
  const auto colon = text.find(':');
  if (colon == std::string::npos || colon == 0) return false;
  for (std::size_t i = 0; i < colon; ++i) {
    const char c = text[i];
    const bool ok = std::isalpha(static_cast<unsigned char>(c)) ||
                    (i > 0 && (std::isdigit(static_cast<unsigned char>(c)) || c == '+' ||
                               c == '-' || c == '.'));
    if (!ok) return false;
  }
  std::string scheme = text.substr(0, colon);
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text.compare(colon, 3, "://") == 0 || scheme == "javascript" || scheme == "data" ||
         scheme == "vbscript";
}

bool on_public_site(const std::string& url, const TransformOptions& options) {
  const auto site = auth::origin_of(options.public_base_url);
  const auto origin = auth::origin_of(url);
  return site && origin && *site == *origin;
}

std::optional<Rejection> check_nested_links(const json& value, const std::string& path,
                                            const TransformOptions& options) {
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    if (is_link(text) && !on_public_site(text, options) &&
        !auth::url_allowed(text, options.context_allowlist)) {
      return Rejection{"template_context." + path + ": URL not allowed: " + text};
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
      if (!is_link(text) || on_public_site(text, options)) continue;
      if (!auth::url_allowed(text, options.context_allowlist)) {
        return Rejection{"template_context." + key + ": URL not allowed: " + text};
      }
      keys.push_back(key);
    } else if (auto r = check_nested_links(value, key, options)) {
      return *r;
    }
  }
  return keys;
}

Transformer::Result Transformer::postings(const Event& event, const Request& request,
                                          const auth::User& user, notify::TimePoint now) {
  if (request.skip_inactive && !user.active) return Skip{"inactive"};
  std::vector<notify::Posting> out;
  std::optional<notify::Content> content;  // rendered once, shared by the channels
  for (const std::string& channel : request.channels) {
    notify::Posting p;
    p.channel = channel;
    p.recipient.user_id = user.id;
    p.recipient.name = display_name(user);
    p.recipient.timezone = user.timezone;
    p.recipient.locale = user.locale;
    if (channel == "email") {
      if (request.skip_opted_out && !user.email_notifications) continue;
      p.recipient.address = user.email.empty() ? event.details.value("email", "") : user.email;
      if (p.recipient.address.empty()) continue;
    } else {
      p.recipient.address = request.webhook_url;
      if (p.recipient.address.empty()) continue;
      if (!auth::url_allowed(p.recipient.address, options_.webhook_allowlist)) {
        return Rejection{"webhook URL not allowed: " + p.recipient.address};
      }
    }
    p.event_id = event.identity;
    p.event_type = event.type;
    p.source = event.source;
    p.event_time = event.time;
    p.template_name = request.template_name;
    p.posting_id = notify::make_posting_id(event.identity, user.id, channel);
    p.priority = request.terms.priority;
    p.quiet_hours = request.terms.quiet_hours;
    p.created_at = now;
    p.expires_at = request.expires_at;
    p.not_before = request.not_before;
    if (!content) {
      json context = request.context;
      for (const auto& [key, value] : request.derived.items()) context[key] = value;
      context["user"] = user_context(user);
      try {
        content = templates_.render(request.template_name, user.locale, context);
      } catch (const TemplateError& e) {
        return Rejection{e.what()};
      }
    }
    p.content = *content;  // a webhook carries the same rendered content as JSON
    out.push_back(std::move(p));
  }
  if (out.empty()) {
    if (request.skip_opted_out && !user.email_notifications) return Skip{"opted_out"};
    return Skip{"no_address"};
  }
  return out;
}

}  // namespace etl
