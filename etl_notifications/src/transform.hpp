#pragma once
// Transform: decides who is told what, when and how. An event plus the user it is about
// becomes rendered postings, or a rejection with its reason. Pure but for the template files.

#include <chrono>
#include <string>
#include <variant>
#include <vector>

#include "auth_client/auth_client.hpp"
#include "intake.hpp"
#include "notify/posting.hpp"
#include "render.hpp"

namespace etl {

struct TransformOptions {
  std::string public_base_url = "http://localhost:8000";
  std::chrono::milliseconds welcome_ttl = std::chrono::hours(24);
};

struct DeliveryTerms {
  int priority = 5;
  notify::QuietHours quiet_hours = notify::QuietHours::kRespect;
};

// "immediate" is what the user waits for right now (a confirmation link, a security notice):
// it bypasses quiet hours. Other priorities respect them.
DeliveryTerms terms_for(const std::string& event_priority);

// A relative link joined to the public base URL; an absolute link is kept.
std::string absolute_url(const std::string& base, const std::string& link);

class Transformer {
 public:
  Transformer(TransformOptions options, TemplateStore& templates)
      : options_(std::move(options)), templates_(templates) {}

  using Result = std::variant<std::vector<notify::Posting>, Rejection>;
  Result postings(const Event& event, const auth::User& user, notify::TimePoint now);

 private:
  Result welcome(const Event& event, const auth::User& user, notify::TimePoint now);

  TransformOptions options_;
  TemplateStore& templates_;
};

}  // namespace etl
