#include "transform.hpp"

namespace etl {
namespace {

using nlohmann::json;

notify::Recipient email_recipient(const auth::User& user, const std::string& fallback_address) {
  notify::Recipient r;
  r.user_id = user.id;
  r.address = user.email.empty() ? fallback_address : user.email;
  r.name = user.first_name;
  if (!user.last_name.empty()) r.name += (r.name.empty() ? "" : " ") + user.last_name;
  r.timezone = user.timezone;
  r.locale = user.locale;
  return r;
}

json user_context(const auth::User& user) {
  return {{"id", user.id},
          {"first_name", user.first_name},
          {"last_name", user.last_name},
          {"email", user.email}};
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

Transformer::Result Transformer::postings(const Event& event, const auth::User& user,
                                          notify::TimePoint now) {
  try {
    if (event.type == "user_signed_up") return welcome(event, user, now);
  } catch (const TemplateError& e) {
    return Rejection{e.what()};
  }
  return Rejection{"no postings defined for event_type '" + event.type + "'"};
}

Transformer::Result Transformer::welcome(const Event& event, const auth::User& user,
                                         notify::TimePoint now) {
  notify::Posting p;
  p.channel = "email";
  p.recipient = email_recipient(user, event.details.value("email", ""));
  if (p.recipient.address.empty()) return Rejection{"user " + user.id + " has no email address"};
  p.event_id = event.identity;
  p.event_type = event.type;
  p.source = event.source;
  p.event_time = event.time;
  p.template_name = "email/welcome";
  p.posting_id = notify::make_posting_id(event.identity, user.id, p.channel);
  const DeliveryTerms terms = terms_for(event.priority);
  p.priority = terms.priority;
  p.quiet_hours = terms.quiet_hours;
  p.created_at = now;
  p.expires_at = event.time + options_.welcome_ttl;

  const json context = {
      {"user", user_context(user)},
      {"confirm_url",
       absolute_url(options_.public_base_url, event.details.value("confirm_link", ""))},
  };
  p.content = templates_.render(p.template_name, user.locale, context);
  return std::vector<notify::Posting>{std::move(p)};
}

}  // namespace etl
