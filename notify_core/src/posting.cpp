#include "notify/posting.hpp"

#include <uuid/uuid.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>

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
// format_iso8601's "YYYY-MM-DDTHH:MM:SS.mmmZ", written without a stream: date::format built an
// ostringstream (and its locale) per call, a tenth of a sign-up's CPU for three times.
std::string written(TimePoint t) {
  using namespace std::chrono;
  t = std::clamp(t, kEarliestTime, kLatestTime);
  const auto day = floor<days>(t);
  const year_month_day date{day};
  const hh_mm_ss<milliseconds> time{t - day};
  char text[] = "YYYY-MM-DDTHH:MM:SS.mmmZ";
  auto put = [&text](std::size_t at, unsigned value, std::size_t width) {
    for (std::size_t i = width; i-- > 0; value /= 10)
      text[at + i] = static_cast<char>('0' + value % 10);
  };
  put(0, static_cast<unsigned>(static_cast<int>(date.year())), 4);
  put(5, static_cast<unsigned>(date.month()), 2);
  put(8, static_cast<unsigned>(date.day()), 2);
  put(11, static_cast<unsigned>(time.hours().count()), 2);
  put(14, static_cast<unsigned>(time.minutes().count()), 2);
  put(17, static_cast<unsigned>(time.seconds().count()), 2);
  put(20, static_cast<unsigned>(time.subseconds().count()), 3);
  return std::string(text, sizeof text - 1);
}

}  // namespace

std::string_view to_string(QuietHours q) { return q == QuietHours::kBypass ? "bypass" : "respect"; }

std::string_view to_string(Channel channel) {
  return channel == Channel::kWebhook ? "webhook" : "email";
}

std::string_view to_string(Category category) {
  return category == Category::kBulk ? "bulk" : "transactional";
}

std::optional<Category> category_from(std::string_view name) {
  if (name == "bulk") return Category::kBulk;
  if (name == "transactional") return Category::kTransactional;
  return std::nullopt;
}

std::optional<Channel> channel_from(std::string_view name) {
  for (Channel c : kChannels) {
    if (to_string(c) == name) return c;
  }
  return std::nullopt;
}

namespace {

// What nlohmann's serializer does to a string's bytes (ensure_ascii off): quotes, backslashes
// and control characters escaped, everything else verbatim. 0: copy; 'u': \u00XX; else the
// letter after the backslash.
constexpr std::array<char, 256> kEscapes = [] {
  std::array<char, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = 'u';
  t['\b'] = 'b';
  t['\t'] = 't';
  t['\n'] = 'n';
  t['\f'] = 'f';
  t['\r'] = 'r';
  t['"'] = '"';
  t['\\'] = '\\';
  return t;
}();

// The length of the well-formed UTF-8 sequence at s[i] (Unicode table 3-7, as nlohmann's
// decoder checks it: no overlong forms, no surrogates, nothing past U+10FFFF), 0 if none.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto at = [&](std::size_t k) -> unsigned {
    return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u;
  };
  const auto cont = [&](std::size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) {
    const unsigned b = at(k);
    return i + k < s.size() && b >= lo && b <= hi;
  };
  const unsigned b0 = at(0);
  if (b0 >= 0xC2 && b0 <= 0xDF) return cont(1) ? 2 : 0;
  if (b0 == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (b0 == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (b0 == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b0 >= 0xF1 && b0 <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b0 == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

// The bytes of `word` that need a look (a control character, '"', '\\', or not ASCII), each
// marked by its high bit: the bit tricks of "Bit Twiddling Hacks" (haszero, hasless). A mark
// may be wrong only above a byte rightly marked (a borrow runs upwards), so the lowest mark is
// always the first byte to look at.
std::uint64_t needs_look(std::uint64_t word) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ull;
  constexpr std::uint64_t kHigh = 0x8080808080808080ull;
  const auto has_zero = [](std::uint64_t v) { return (v - kOnes) & ~v & kHigh; };
  const std::uint64_t below_space = (word - kOnes * 0x20) & ~word & kHigh;
  return below_space | has_zero(word ^ (kOnes * '"')) | has_zero(word ^ (kOnes * '\\')) |
         (word & kHigh);
}

// Sixteen bytes at a time, in the vectors of GCC's and Clang's vector extensions (SSE2 or NEON
// instructions where the machine has them).
using Bytes16 = unsigned char __attribute__((vector_size(16)));

// The end of the run of bytes from s[i] that are written as they are.
std::size_t plain_prefix(std::string_view s, std::size_t i) {
  if constexpr (std::endian::native == std::endian::little) {
    while (i + 16 <= s.size()) {
      Bytes16 bytes;
      std::memcpy(&bytes, s.data() + i, 16);
      // Each byte that needs a look is 0xFF: below 0x20 or not ASCII (a byte minus 0x20 that is
      // 0x60 or more), '"', '\\'.
      const auto marks = ((bytes - 0x20) >= 0x60) | (bytes == '"') | (bytes == '\\');
      std::uint64_t low;
      std::uint64_t high;
      std::memcpy(&low, &marks, 8);
      std::memcpy(&high, reinterpret_cast<const char*>(&marks) + 8, 8);
      if (low != 0) return i + static_cast<std::size_t>(std::countr_zero(low)) / 8;
      if (high != 0) return i + 8 + static_cast<std::size_t>(std::countr_zero(high)) / 8;
      i += 16;
    }
  }
  while (i + 8 <= s.size()) {
    std::uint64_t word;
    std::memcpy(&word, s.data() + i, 8);
    if constexpr (std::endian::native == std::endian::little) {
      if (const std::uint64_t marks = needs_look(word)) {
        return i + static_cast<std::size_t>(std::countr_zero(marks)) / 8;
      }
    } else if (needs_look(word) != 0) {
      break;
    }
    i += 8;
  }
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80 || kEscapes[c] != 0) break;
    ++i;
  }
  return i;
}

// Appends s as a JSON string, byte for byte what nlohmann's dump() writes for it. Text that is
// not UTF-8 is left to nlohmann, which throws its type_error as encode() always did.
// Written in place rather than appended run by run and escape by escape (a mail's HTML breaks
// into a run at every quote and line): `out` is grown to what is left of s unescaped plus the
// closing quote, and again by some slack when an escape needs more, then cut to what was written.
void append_string(std::string& out, std::string_view s) {
  std::size_t w = out.size();
  out.resize(w + s.size() + 2);
  out[w++] = '"';
  std::size_t i = 0;
  while (i < s.size()) {
    // Here out has room for s[i..] unescaped and the closing quote.
    const std::size_t run = plain_prefix(s, i);
    std::memcpy(out.data() + w, s.data() + i, run - i);
    w += run - i;
    i = run;
    if (i == s.size()) break;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const std::size_t n = utf8_sequence(s, i);
      if (n == 0) (void)json(std::string(s)).dump();  // throws, naming the bad byte
      std::memcpy(out.data() + w, s.data() + i, n);
      w += n;
      i += n;
      continue;
    }
    const std::size_t written = kEscapes[c] == 'u' ? 6 : 2;  // for one byte of s
    const std::size_t needed = w + written + (s.size() - i - 1) + 1;
    if (needed > out.size()) out.resize(needed + 64 + (s.size() - i) / 4);
    char* at = out.data() + w;
    at[0] = '\\';
    if (written == 6) {
      static constexpr char kHex[] = "0123456789abcdef";
      at[1] = 'u';
      at[2] = '0';
      at[3] = '0';
      at[4] = kHex[c >> 4];
      at[5] = kHex[c & 0xF];
    } else {
      at[1] = kEscapes[c];
    }
    w += written;
    ++i;
  }
  out[w++] = '"';
  out.resize(w);
}

// "key":"value" (with a comma before unless first): the writer of encode().
class ObjectWriter {
 public:
  explicit ObjectWriter(std::string& out) : out_(out) { out_.push_back('{'); }
  ObjectWriter& string(std::string_view key, std::string_view value) {
    this->key(key);
    append_string(out_, value);
    return *this;
  }
  ObjectWriter& integer(std::string_view key, int value) {
    this->key(key);
    // Not to_chars into a buffer: GCC 12's -O3 then warns of a memcpy overlap (-Wrestrict)
    // that cannot happen. Short enough for the string's own buffer: no allocation.
    out_ += std::to_string(value);
    return *this;
  }
  ObjectWriter& object(std::string_view key) {  // the caller writes the value
    this->key(key);
    return *this;
  }
  void close() { out_.push_back('}'); }

 private:
  // Keys are encode()'s own names, plain ASCII letters and '_': written as they are.
  void key(std::string_view key) {
    if (!first_) out_.push_back(',');
    first_ = false;
    out_.push_back('"');
    out_.append(key);
    out_.append("\":");
  }
  std::string& out_;
  bool first_ = true;
};

}  // namespace

// Written directly, without a JSON tree, yet the very bytes nlohmann's dump() of the posting as
// a tree wrote before (posting_test compares the two): keys in the tree's (sorted) order, no
// spaces, strings escaped as nlohmann escapes them. Building the tree and serialising it was
// a third of the ETL's CPU per sign-up.
std::string encode(const Posting& p) {
  std::string out;
  out.reserve(400 + p.posting_id.size() + p.event_id.size() + p.event_type.size() +
              p.source.size() + p.template_name.size() + p.recipient.user_id.size() +
              p.recipient.address.size() + p.recipient.name.size() + p.recipient.timezone.size() +
              p.recipient.locale.size() + p.unsubscribe.url.size() + p.unsubscribe.mailto.size() +
              (p.content.subject.size() + p.content.text.size() + p.content.html.size()) * 9 / 8);
  ObjectWriter top(out);
  top.string("category", to_string(p.category))
      .string("channel", to_string(p.channel))
      .object("content");
  ObjectWriter(out)
      .string("html", p.content.html)
      .string("subject", p.content.subject)
      .string("text", p.content.text)
      .close();
  top.string("created_at", written(p.created_at)).object("event");
  ObjectWriter(out)
      .string("id", p.event_id)
      .string("source", p.source)
      .string("time", written(p.event_time))
      .string("type", p.event_type)
      .close();
  top.string("expires_at", written(p.expires_at));
  if (p.not_before) top.string("not_before", written(*p.not_before));
  top.string("posting_id", p.posting_id)
      .integer("priority", p.priority)
      .string("quiet_hours", to_string(p.quiet_hours))
      .object("recipient");
  ObjectWriter(out)
      .string("address", p.recipient.address)
      .string("locale", p.recipient.locale)
      .string("name", p.recipient.name)
      .string("timezone", p.recipient.timezone)
      .string("user_id", p.recipient.user_id)
      .close();
  top.integer("schema_version", kPostingSchemaVersion).string("template", p.template_name);
  if (!p.unsubscribe.empty()) {
    top.object("unsubscribe");
    ObjectWriter links(out);
    if (!p.unsubscribe.mailto.empty()) links.string("mailto", p.unsubscribe.mailto);
    if (!p.unsubscribe.url.empty()) links.string("url", p.unsubscribe.url);
    links.close();
  }
  top.close();
  return out;
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
  if (auto it = j.find("category"); it != j.end() && !it->is_null()) {
    const std::string category = string_field(j, "category", "");
    const auto known_category = category_from(category);
    if (!known_category) {
      throw PostingError("posting: field category must be bulk or transactional, not " +
                         quote(category));
    }
    p.category = *known_category;
  }
  if (auto it = j.find("unsubscribe"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) throw PostingError("posting: field unsubscribe must be an object");
    p.unsubscribe.url = string_field(*it, "url", "unsubscribe.", false);
    p.unsubscribe.mailto = string_field(*it, "mailto", "unsubscribe.", false);
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
