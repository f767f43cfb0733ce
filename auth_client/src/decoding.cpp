// Users and pages of the users listing from the Auth service's JSON, within limits: every field
// is checked for its type and length as it is read.

#include <limits>
#include <string>

#include "auth_client/auth_client.hpp"
#include "notify/json.hpp"

namespace auth {
namespace {

// Longest accepted fields of a user: ids and names are short, an address has at most 254 bytes
// (RFC 5321), IANA zones and BCP 47 locales far less than 64.
constexpr std::size_t kMaxUserIdBytes = 256;
constexpr std::size_t kMaxNameBytes = 256;
constexpr std::size_t kMaxAddressBytes = 254;
constexpr std::size_t kMaxTagBytes = 64;

std::string text_field(const nlohmann::json& j, const char* name, bool required,
                       std::size_t max_bytes) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) {
    if (required) throw InvalidUser(std::string("user: missing field '") + name + "'");
    return {};
  }
  std::string text;
  if (it->is_string()) {
    text = it->get<std::string>();
  } else if (it->is_number_integer()) {
    text = it->dump();
  } else {
    throw InvalidUser(std::string("user: field '") + name + "' is not a string");
  }
  if (text.size() > max_bytes) {
    throw InvalidUser(std::string("user: field '") + name + "' is longer than " +
                      std::to_string(max_bytes) + " bytes");
  }
  return text;
}

bool bool_field(const nlohmann::json& j, const char* name, bool fallback) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean())
    throw InvalidUser(std::string("user: field '") + name + "' is not a boolean");
  return it->get<bool>();
}

long long integer_field(const nlohmann::json& j, const char* name, long long min, long long max) {
  auto it = j.find(name);
  if (it == j.end()) throw InvalidPage(std::string("page: missing field '") + name + "'");
  const auto v = notify::integer_as<long long>(*it);
  if (!v) throw InvalidPage(std::string("page: field '") + name + "' is not an integer");
  if (*v < min || *v > max) {
    throw InvalidPage(std::string("page: field '") + name + "' out of range");
  }
  return *v;
}

}  // namespace

User decode_user(const nlohmann::json& j) {
  if (!j.is_object()) throw InvalidUser("user: not a JSON object");
  User u;
  u.id = text_field(j, "id", true, kMaxUserIdBytes);
  u.email = text_field(j, "email", true, kMaxAddressBytes);
  if (u.id.empty()) throw InvalidUser("user: empty 'id'");
  if (u.email.empty()) throw InvalidUser("user: empty 'email'");
  u.first_name = text_field(j, "first_name", false, kMaxNameBytes);
  u.last_name = text_field(j, "last_name", false, kMaxNameBytes);
  u.timezone = text_field(j, "timezone", false, kMaxTagBytes);
  u.locale = text_field(j, "locale", false, kMaxTagBytes);
  u.email_notifications = bool_field(j, "email_notifications", true);
  u.active = bool_field(j, "active", bool_field(j, "is_active", true));
  return u;
}

// A broken envelope throws InvalidPage; a broken user is skipped and counted.
Page decode_page(const nlohmann::json& j) {
  if (!j.is_object()) throw InvalidPage("page: not a JSON object");
  auto items = j.find("items");
  if (items == j.end()) throw InvalidPage("page: missing field 'items'");
  if (!items->is_array()) throw InvalidPage("page: field 'items' is not an array");
  constexpr long long kIntMax = std::numeric_limits<int>::max();
  Page page;
  page.page_number = static_cast<int>(integer_field(j, "page_number", 0, kIntMax));
  page.page_size = static_cast<int>(integer_field(j, "page_size", 0, kIntMax));
  page.total = integer_field(j, "total", 0, std::numeric_limits<long long>::max());
  page.items.reserve(items->size());
  for (std::size_t i = 0; i < items->size(); ++i) {
    try {
      page.items.push_back(decode_user((*items)[i]));
    } catch (const InvalidUser& e) {
      if (page.skipped++ == 0) page.skip_error = "item " + std::to_string(i) + ": " + e.what();
    }
  }
  return page;
}

User parse_user(std::string_view body, const notify::JsonLimits& limits) {
  try {
    return decode_user(notify::parse_json(body, limits));
  } catch (const notify::JsonError& e) {
    throw InvalidUser(std::string("user: ") + e.what());
  }
}

Page parse_page(std::string_view body, const notify::JsonLimits& limits) {
  try {
    return decode_page(notify::parse_json(body, limits));
  } catch (const notify::JsonError& e) {
    throw InvalidPage(std::string("page: ") + e.what());
  }
}

nlohmann::json encode_user(const User& u) {
  return {{"id", u.id},
          {"email", u.email},
          {"first_name", u.first_name},
          {"last_name", u.last_name},
          {"timezone", u.timezone},
          {"locale", u.locale},
          {"email_notifications", u.email_notifications},
          {"active", u.active}};
}

}  // namespace auth
