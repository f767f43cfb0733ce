#pragma once
// The one model of a posting: a ready-to-send message with its delivery conditions.
// Both services use this type and its JSON encoding (documentation/postings.md).

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "notify/json.hpp"

namespace notify {

using TimePoint = std::chrono::sys_time<std::chrono::milliseconds>;

inline constexpr int kPostingSchemaVersion = 1;

enum class QuietHours { kRespect, kBypass };

// How a posting goes out; the name is the routing key, the queue's suffix and the metrics label.
enum class Channel { kEmail, kWebhook };
inline constexpr Channel kChannels[] = {Channel::kEmail, Channel::kWebhook};
std::string_view to_string(Channel channel);                 // "email", "webhook"
std::optional<Channel> channel_from(std::string_view name);  // nothing for another name

// Bulk mail (mailings) must carry a one-click unsubscribe (RFC 8058); transactional mail (what
// the user's own action or account needs: sign-up, password notice, reminders) never does.
enum class Category { kTransactional, kBulk };
std::string_view to_string(Category category);                 // "transactional", "bulk"
std::optional<Category> category_from(std::string_view name);  // nothing for another name

// Where a recipient of bulk mail unsubscribes (documentation/unsubscribe.md): the worker puts
// both into List-Unsubscribe. Empty: none.
struct Unsubscribe {
  std::string url;     // the one-click URL, token included (https://.../unsubscribe?token=...)
  std::string mailto;  // the mailto: URI, token included; empty without UNSUBSCRIBE_MAILTO
  bool empty() const { return url.empty() && mailto.empty(); }
};

struct Recipient {
  std::string user_id;
  std::string address;   // the e-mail address (email) or the URL to POST to (webhook)
  std::string name;      // display name, may be empty
  std::string timezone;  // IANA zone, may be empty (the worker falls back to its default)
  std::string locale;
};

struct Content {
  std::string subject;
  std::string text;
  std::string html;
};

struct Posting {
  std::string posting_id;  // deterministic: see make_posting_id
  std::string event_id;    // the event's identity: event_id, else topic/partition/offset
  std::string event_type;
  std::string source;  // the emitting service (from_service)
  TimePoint event_time{};
  Channel channel = Channel::kEmail;
  std::string template_name;
  Recipient recipient;
  Content content;
  int priority = 0;  // 0..9, 9 first
  QuietHours quiet_hours = QuietHours::kRespect;
  TimePoint created_at{};
  TimePoint expires_at{};
  std::optional<TimePoint> not_before;
  // Absent in postings queued before categories existed: those read as transactional.
  Category category = Category::kTransactional;
  Unsubscribe unsubscribe;
};

// Thrown when a posting cannot be decoded or violates the schema; what() names the field.
class PostingError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string encode(const Posting& posting);
// Throws PostingError: not one JSON value within limits, a field missing, of the wrong type, or
// out of its range (integers are never cut, times never wrapped).
Posting decode_posting(std::string_view json, const JsonLimits& limits = {});

// A UUID (version 5, RFC 4122) of event identity, recipient and channel: a replay of the same
// event yields the same ids, so consumers can deduplicate.
std::string make_posting_id(std::string_view event_id, std::string_view recipient,
                            std::string_view channel);

std::string_view to_string(QuietHours q);

}  // namespace notify
