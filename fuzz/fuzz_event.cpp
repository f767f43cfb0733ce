// fuzz_event: a Kafka message value through everything the ETL does with it before publishing:
// decode_event, plan, the context links, postings for a fixed user and for one made of the
// event's own strings (rendered with the repository's templates), and the posting encoding,
// which must decode back to the same posting. Links in the rendered HTML must lead where the
// link checks allow. The same bytes also go through the parser of a replay's first-arrival
// headers.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "auth_client/url.hpp"
#include "fuzz_check.hpp"
#include "intake.hpp"
#include "notify/posting.hpp"
#include "notify/time.hpp"
#include "notify/unsubscribe.hpp"
#include "render.hpp"
#include "transform.hpp"

namespace {

using nlohmann::json;

const notify::TimePoint kNow{std::chrono::milliseconds(1795428005000)};  // 2026-11-23T10:00:05Z

etl::TransformOptions options() {
  etl::TransformOptions o;
  o.public_base_url = "https://example.org/";
  o.webhook_allowlist = {"https://hooks.example.org/notify"};
  o.context_allowlist = {"https://content.example.org/api"};
  // Mailings are bulk: without these they are refused before their postings are made.
  o.unsubscribe.secret = "fuzz_event's secret, 32 bytes..";
  o.unsubscribe.url = "https://example.org/unsubscribe";
  o.unsubscribe.mailto = "unsubscribe@example.org";
  return o;
}

auth::User ann() {
  auth::User u;
  u.id = "u-1";
  u.email = "ann@example.com";
  u.first_name = "Ann <script>";
  u.last_name = "Lee";
  u.timezone = "Europe/Berlin";
  u.locale = "de-AT";
  return u;
}

// A user as hostile as the event: an Auth record is someone else's input too.
auth::User from_event(const etl::Event& e, std::uint8_t bits) {
  auth::User u;
  u.id = !e.user_id.empty() ? e.user_id : !e.user_ids.empty() ? e.user_ids.front() : "u-2";
  if (auto it = e.details.find("email"); it != e.details.end() && it->is_string()) {
    u.email = it->get<std::string>();
  }
  u.first_name = e.source;
  u.last_name = e.template_name;
  u.timezone = e.priority;
  u.locale = e.source;
  u.email_notifications = (bits & 1) != 0;
  u.active = (bits & 2) != 0;
  return u;
}

// The first field in which two postings differ; nothing when they are the same.
std::optional<std::string_view> differs(const notify::Posting& a, const notify::Posting& b) {
  const std::pair<bool, std::string_view> fields[] = {
      {a.posting_id == b.posting_id, "posting_id"},
      {a.event_id == b.event_id, "event_id"},
      {a.event_type == b.event_type, "event_type"},
      {a.source == b.source, "source"},
      {a.event_time == b.event_time, "event_time"},
      {a.channel == b.channel, "channel"},
      {a.template_name == b.template_name, "template_name"},
      {a.recipient.user_id == b.recipient.user_id, "recipient.user_id"},
      {a.recipient.address == b.recipient.address, "recipient.address"},
      {a.recipient.name == b.recipient.name, "recipient.name"},
      {a.recipient.timezone == b.recipient.timezone, "recipient.timezone"},
      {a.recipient.locale == b.recipient.locale, "recipient.locale"},
      {a.content.subject == b.content.subject, "content.subject"},
      {a.content.text == b.content.text, "content.text"},
      {a.content.html == b.content.html, "content.html"},
      {a.priority == b.priority, "priority"},
      {a.quiet_hours == b.quiet_hours, "quiet_hours"},
      {a.created_at == b.created_at, "created_at"},
      {a.expires_at == b.expires_at, "expires_at"},
      {a.not_before == b.not_before, "not_before"},
      {a.category == b.category, "category"},
      {a.unsubscribe.url == b.unsubscribe.url, "unsubscribe.url"},
      {a.unsubscribe.mailto == b.unsubscribe.mailto, "unsubscribe.mailto"}};
  for (const auto& [same, name] : fields) {
    if (!same) return name;
  }
  return std::nullopt;
}

// The HTML escapes of kainjow::mustache, undone.
std::string unescape_html(std::string_view s) {
  static const std::pair<std::string_view, char> kEntities[] = {
      {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    bool replaced = false;
    for (const auto& [entity, ch] : kEntities) {
      if (s.substr(i, entity.size()) == entity) {
        out += ch;
        i += entity.size();
        replaced = true;
        break;
      }
    }
    if (!replaced) out += s[i++];
  }
  return out;
}

bool slash(char c) { return c == '/' || c == '\\'; }

// Every href of the mail, read as a mail client reads it, is either a link to the public site or
// an allowlisted service, or text that names no host: a scheme other than http(s) whose rest
// holds a blank or no "//" (or backslashed form), such as "mailto:help@example.org" or
// "hello: world", which the ETL keeps as written (documentation/templates.md, "Links").
void check_links(const std::string& html, const etl::TransformOptions& o) {
  const auto public_origin = auth::origin_of(o.public_base_url);
  constexpr std::string_view kHref = "href=\"";
  for (auto at = html.find(kHref); at != std::string::npos; at = html.find(kHref, at)) {
    at += kHref.size();
    const auto end = html.find('"', at);
    if (end == std::string::npos) break;
    const std::string href = unescape_html(std::string_view(html).substr(at, end - at));
    const std::string text = auth::link_text(href);
    if (const auto scheme = auth::link_scheme(text);
        scheme && *scheme != "http" && *scheme != "https") {
      const std::string_view rest = std::string_view(text).substr(scheme->size() + 1);
      const bool blank_free = rest.find(' ') == std::string_view::npos;
      bool two_slashes = false;
      for (std::size_t i = 0; i + 1 < rest.size(); ++i)
        two_slashes |= slash(rest[i]) && slash(rest[i + 1]);
      fuzz::require(!(blank_free && two_slashes), "an href with a host and a foreign scheme", href);
      continue;
    }
    const auto resolved = auth::resolve_link(href, o.public_base_url);
    if (!resolved) {
      // A browser joins text without a scheme to the page ("+https://x" is a path): no host of
      // its own. Only what names a host must resolve.
      const bool names_host = (text.size() >= 2 && slash(text[0]) && slash(text[1])) ||
                              auth::link_scheme(text).has_value();
      fuzz::require(!names_host, "an href of the mail that names a host does not resolve", href);
      continue;
    }
    fuzz::require(auth::origin_of(*resolved) == public_origin ||
                      auth::url_allowed(*resolved, o.context_allowlist),
                  "an href leads to a foreign origin", href + " -> " + *resolved);
  }
}

void check_posting(const notify::Posting& p, const etl::TransformOptions& o) {
  const std::string encoded = notify::encode(p);
  notify::Posting decoded;
  try {
    decoded = notify::decode_posting(encoded);
  } catch (const notify::PostingError& e) {
    fuzz::fail("an encoded posting does not decode", std::string(e.what()) + "\n" + encoded);
  }
  if (const auto field = differs(p, decoded)) {
    fuzz::fail("a posting changed through encode/decode", std::string(*field) + "\n" + encoded);
  }
  fuzz::require(notify::encode(decoded) == encoded, "a posting encodes differently when decoded",
                encoded);
  if (p.channel == notify::Channel::kWebhook) {
    fuzz::require(auth::url_allowed(p.recipient.address, o.webhook_allowlist),
                  "a webhook posting names a URL outside the allowlist", p.recipient.address);
  }
  check_links(p.content.html, o);
  // Bulk mail carries a token of its recipient that verifies; transactional mail none.
  fuzz::require(p.unsubscribe.empty() == (p.category == notify::Category::kTransactional),
                "unsubscribe links on the wrong posting", encoded);
  if (p.category == notify::Category::kBulk) {
    static const notify::UnsubscribeSigner signer(o.unsubscribe.secret);
    const std::string prefix = o.unsubscribe.url + "?token=";
    fuzz::require(p.unsubscribe.url.rfind(prefix, 0) == 0, "an unsubscribe URL not on ours",
                  p.unsubscribe.url);
    const auto claim = signer.verify(p.unsubscribe.url.substr(prefix.size()), kNow);
    fuzz::require(std::holds_alternative<notify::UnsubscribeClaim>(claim) &&
                      std::get<notify::UnsubscribeClaim>(claim).user_id == p.recipient.user_id,
                  "an unsubscribe token that does not name its recipient", p.unsubscribe.url);
  }
}

void run(etl::Transformer& transformer, const etl::Event& event, const etl::Request& request,
         const auth::User& user) {
  const auto result = transformer.postings(event, request, user, kNow);
  if (const auto* postings = std::get_if<std::vector<notify::Posting>>(&result)) {
    for (const notify::Posting& p : *postings) check_posting(p, transformer.options());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static etl::TemplateStore templates(NOTIFY_TEMPLATES_DIR);
  static etl::Transformer transformer(options(), templates);

  // The same bytes as the first-arrival headers of a replay, split at newlines: a place is
  // accepted only in its one canonical spelling, so one event cannot take two identities.
  {
    const std::string text(reinterpret_cast<const char*>(data), size);
    const std::array<const char*, 3> names = {"original_topic", "original_partition",
                                              "original_offset"};
    notify::kafka::Headers headers;
    std::size_t start = 0;
    for (const char* name : names) {
      const auto end = text.find('\n', start);
      headers.emplace_back(name, text.substr(start, end == std::string::npos ? end : end - start));
      if (end == std::string::npos) break;
      start = end + 1;
    }
    const auto origin = etl::origin_of(headers);
    if (const auto* o = std::get_if<etl::Origin>(&origin)) {
      fuzz::require(headers.size() == 3 && headers[0].second == o->topic &&
                        headers[1].second == std::to_string(o->partition) &&
                        headers[2].second == std::to_string(o->offset),
                    "a first arrival accepted in a spelling that is not canonical", text);
    }
  }

  etl::RawMessage message;
  message.topic = "notify_events";
  message.partition = 3;
  message.offset = 42;
  message.value.assign(reinterpret_cast<const char*>(data), size);
  message.timestamp_ms = 1795428000000;

  auto decoded = etl::decode_event(message, kNow);
  const auto* event = std::get_if<etl::Event>(&decoded);
  if (event == nullptr) return 0;
  auto planned = etl::plan(*event, transformer.options());
  auto* request = std::get_if<etl::Request>(&planned);
  if (request == nullptr) return 0;

  // The pipeline replaces the allowlisted links it fetches with the service's answer.
  const auto keys = etl::context_urls_to_fetch(request->context, transformer.options());
  if (const auto* fetch = std::get_if<std::vector<std::string>>(&keys)) {
    for (const std::string& key : *fetch) {
      fuzz::require(request->context.contains(key) && request->context[key].is_string(),
                    "a context key to fetch is not a string value", key);
      const auto url = request->context[key].get<std::string>();
      fuzz::require(auth::url_allowed(url, transformer.options().context_allowlist),
                    "a context URL to fetch is not allowlisted", url);
      request->context[key] =
          json{{"title", "Fetched"}, {"url", "https://content.example.org/api/x"}};
    }
  } else {
    return 0;
  }

  run(transformer, *event, *request, ann());
  run(transformer, *event, *request, from_event(*event, size > 0 ? data[size - 1] : 0));
  return 0;
}
