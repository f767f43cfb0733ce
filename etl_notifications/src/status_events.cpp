#include "status_events.hpp"

#include <variant>

#include "notify/json.hpp"

namespace etl {
namespace {

// A string member of a JSON object, when it is one, non-empty and at most max_bytes.
std::string text_at(const nlohmann::json& doc, const char* name, std::size_t max_bytes) {
  const auto it = doc.find(name);
  if (it == doc.end() || !it->is_string()) return {};
  const auto& text = it->get_ref<const std::string&>();
  return text.size() <= max_bytes ? text : std::string();
}

}  // namespace

std::vector<notify::status::Event> skipped_events(const Event& event, const Request& request,
                                                  const std::string& user_id,
                                                  const std::string& reason,
                                                  notify::TimePoint now) {
  std::vector<notify::status::Event> out;
  out.reserve(request.channels.size());
  for (const notify::Channel channel : request.channels) {
    notify::status::Event e;
    e.status = "skipped";
    e.time = now;
    e.service = kServiceName;
    e.event_id = event.identity;
    e.event_type = event.type;
    e.user_id = user_id;
    e.channel = notify::to_string(channel);
    e.posting_id = notify::make_posting_id(event.identity, user_id, e.channel);
    e.template_name = request.template_name;
    e.reason = reason;
    out.push_back(std::move(e));
  }
  return out;
}

notify::status::Event refused_event(const notify::kafka::Message& message, const Event* event,
                                    const std::string& type, const std::string& reason,
                                    const IntakeLimits& limits, notify::TimePoint now) {
  notify::status::Event e;
  e.status = "refused";
  e.time = now;
  e.service = kServiceName;
  e.reason = reason;
  if (event != nullptr) {
    e.event_id = event->identity;
    e.event_type = event->type;
    return e;
  }
  e.event_type = type;
  // Refused before it was decoded: what can be read of it, as decode_event reads it.
  if (message.value.size() <= limits.max_event_bytes) {
    try {
      const auto doc = notify::parse_json(message.value, notify::JsonLimits{limits.max_json_depth});
      if (doc.is_object()) {
        e.event_id = text_at(doc, "event_id", kMaxIdBytes);
        if (e.event_type.empty()) e.event_type = text_at(doc, "event_type", kMaxNameBytes);
      }
    } catch (const notify::JsonError&) {
      // Not JSON (often why it was refused): known by where it arrived.
    }
  }
  e.event_id = event_identity(e.event_id, origin_of(message.headers), message.topic,
                              message.partition, message.offset);
  return e;
}

}  // namespace etl
