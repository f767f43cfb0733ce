#include "notify/posting.hpp"

#include <uuid/uuid.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "notify/json.hpp"
#include "notify/time.hpp"

namespace notify {
namespace {

using nlohmann::json;

// The project's UUID namespace for posting ids (RFC 4122 version 5 names).
constexpr uuid_t kPostingNamespace = {0x01, 0x7b, 0x4c, 0x38, 0xa6, 0x59, 0x48, 0x09,
                                      0x89, 0x31, 0x55, 0x32, 0xcc, 0x75, 0xeb, 0xdc};

const json& field(const json& object, const char* name, const char* where) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) {
    throw PostingError(std::string("posting: missing field ") + where + name);
  }
  return *it;
}

std::string string_field(const json& object, const char* name, const char* where,
                         bool required = true) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) {
    if (required) throw PostingError(std::string("posting: missing field ") + where + name);
    return {};
  }
  if (!it->is_string()) {
    throw PostingError(std::string("posting: field ") + where + name + " must be a string");
  }
  return it->get<std::string>();
}

TimePoint time_field(const json& object, const char* name, const char* where) {
  const std::string text = string_field(object, name, where);
  auto t = parse_iso8601(text);
  if (!t) {
    throw PostingError(std::string("posting: field ") + where + name +
                       " is not an ISO 8601 time between years 0001 and 9999: " + quote(text));
  }
  return *t;
}

// Times are written within the readable range (an expiry past 9999 reads as 9999-12-31), so
// the worker can always decode what the ETL wrote.
std::string written(TimePoint t) {
  return format_iso8601(std::clamp(t, kEarliestTime, kLatestTime));
}

}  // namespace

std::string_view to_string(QuietHours q) { return q == QuietHours::kBypass ? "bypass" : "respect"; }

std::string_view to_string(Channel channel) {
  return channel == Channel::kWebhook ? "webhook" : "email";
}

std::optional<Channel> channel_from(std::string_view name) {
  for (Channel c : kChannels) {
    if (to_string(c) == name) return c;
  }
  return std::nullopt;
}

std::string encode(const Posting& p) {
  json j = {
      {"schema_version", kPostingSchemaVersion},
      {"posting_id", p.posting_id},
      {"event",
       {{"id", p.event_id},
        {"type", p.event_type},
        {"source", p.source},
        {"time", written(p.event_time)}}},
      {"channel", to_string(p.channel)},
      {"template", p.template_name},
      {"recipient",
       {{"user_id", p.recipient.user_id},
        {"address", p.recipient.address},
        {"name", p.recipient.name},
        {"timezone", p.recipient.timezone},
        {"locale", p.recipient.locale}}},
      {"content",
       {{"subject", p.content.subject}, {"text", p.content.text}, {"html", p.content.html}}},
      {"priority", p.priority},
      {"quiet_hours", to_string(p.quiet_hours)},
      {"created_at", written(p.created_at)},
      {"expires_at", written(p.expires_at)},
  };
  if (p.not_before) j["not_before"] = written(*p.not_before);
  return j.dump();
}

Posting decode_posting(std::string_view text, const JsonLimits& limits) {
  json j;
  try {
    j = parse_json(text, limits);
  } catch (const JsonError& e) {
    throw PostingError(std::string("posting: ") + e.what());
  }
  if (!j.is_object()) throw PostingError("posting: not a JSON object");

  const json& version = field(j, "schema_version", "");
  if (integer_as<int>(version) != kPostingSchemaVersion) {
    throw PostingError("posting: unsupported schema_version " + shorten(version.dump(), 80));
  }

  Posting p;
  p.posting_id = string_field(j, "posting_id", "");
  const json& event = field(j, "event", "");
  if (!event.is_object()) throw PostingError("posting: field event must be an object");
  p.event_id = string_field(event, "id", "event.");
  p.event_type = string_field(event, "type", "event.");
  p.source = string_field(event, "source", "event.", false);
  p.event_time = time_field(event, "time", "event.");
  const std::string channel = string_field(j, "channel", "");
  const auto known = channel_from(channel);
  if (!known) {
    throw PostingError("posting: field channel must be email or webhook, not " + quote(channel));
  }
  p.channel = *known;
  p.template_name = string_field(j, "template", "");

  const json& recipient = field(j, "recipient", "");
  if (!recipient.is_object()) throw PostingError("posting: field recipient must be an object");
  p.recipient.user_id = string_field(recipient, "user_id", "recipient.", false);
  p.recipient.address = string_field(recipient, "address", "recipient.");
  p.recipient.name = string_field(recipient, "name", "recipient.", false);
  p.recipient.timezone = string_field(recipient, "timezone", "recipient.", false);
  p.recipient.locale = string_field(recipient, "locale", "recipient.", false);

  const json& content = field(j, "content", "");
  if (!content.is_object()) throw PostingError("posting: field content must be an object");
  p.content.subject = string_field(content, "subject", "content.");
  p.content.text = string_field(content, "text", "content.");
  p.content.html = string_field(content, "html", "content.", false);

  const auto priority = integer_as<int>(field(j, "priority", ""));
  if (!priority || *priority < 0 || *priority > 9) {
    throw PostingError("posting: field priority must be an integer 0..9");
  }
  p.priority = *priority;

  const std::string quiet = string_field(j, "quiet_hours", "");
  if (quiet == "respect") {
    p.quiet_hours = QuietHours::kRespect;
  } else if (quiet == "bypass") {
    p.quiet_hours = QuietHours::kBypass;
  } else {
    throw PostingError("posting: field quiet_hours must be respect or bypass, not " + quote(quiet));
  }
  p.created_at = time_field(j, "created_at", "");
  p.expires_at = time_field(j, "expires_at", "");
  if (j.contains("not_before") && !j["not_before"].is_null()) {
    p.not_before = time_field(j, "not_before", "");
  }
  return p;
}

std::string make_posting_id(std::string_view event_id, std::string_view recipient,
                            std::string_view channel) {
  // Unit separators keep ("a", "bc") and ("ab", "c") apart.
  std::string name;
  name.reserve(event_id.size() + recipient.size() + channel.size() + 2);
  name.append(event_id).push_back('\x1f');
  name.append(recipient).push_back('\x1f');
  name.append(channel);
  uuid_t out;
  uuid_generate_sha1(out, kPostingNamespace, name.data(), name.size());
  char text[37];
  uuid_unparse_lower(out, text);
  return text;
}

}  // namespace notify
