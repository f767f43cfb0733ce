// Status events as JSON (documentation/status.md), and their sink onto Kafka.

#include "notify/status.hpp"

#include <stdexcept>
#include <utility>

#include <nlohmann/json.hpp>

#include "notify/json.hpp"
#include "notify/log.hpp"
#include "notify/time.hpp"

namespace notify::status {
namespace {

// A status event is small; more is not one of ours.
constexpr std::size_t kMaxDepth = 8;

void put(nlohmann::ordered_json& j, const char* name, const std::string& value) {
  if (!value.empty()) j[name] = value;
}

std::string text(const nlohmann::json& j, const char* name, bool required = false) {
  const auto it = j.find(name);
  if (it == j.end() || it->is_null()) {
    if (required) throw std::invalid_argument(std::string("status event: no ") + name);
    return {};
  }
  if (!it->is_string()) {
    throw std::invalid_argument(std::string("status event: ") + name + " is not a string");
  }
  return it->get<std::string>();
}

TimePoint time_of(const nlohmann::json& j, const char* name) {
  const std::string value = text(j, name, true);
  const auto t = parse_iso8601(value);
  if (!t) throw std::invalid_argument(std::string("status event: ") + name + " is not a time");
  return *t;
}

}  // namespace

std::string encode(const Event& e) {
  // In the contract's order, so a person reading the topic sees the status and time first.
  nlohmann::ordered_json j;
  j["schema_version"] = kSchemaVersion;
  j["status"] = e.status;
  j["time"] = format_iso8601(e.time);
  j["service"] = e.service;
  put(j, "event_id", e.event_id);
  put(j, "event_type", e.event_type);
  put(j, "posting_id", e.posting_id);
  put(j, "user_id", e.user_id);
  put(j, "channel", e.channel);
  put(j, "template", e.template_name);
  put(j, "reason", e.reason);
  if (e.until) j["until"] = format_iso8601(*e.until);
  put(j, "zone", e.zone);
  put(j, "reply", e.reply);
  if (e.attempts) j["attempts"] = *e.attempts;
  put(j, "last_error", e.last_error);
  // Replies and errors quote remote servers: bytes that are not UTF-8 are replaced, not thrown.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Event decode(std::string_view json) {
  nlohmann::json j;
  try {
    j = parse_json(json, {kMaxDepth});
  } catch (const JsonError& e) {
    throw std::invalid_argument(std::string("status event: ") + e.what());
  }
  return decode_document(j);
}

Event decode_document(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("status event: not a JSON object");
  Event e;
  e.status = text(j, "status", true);
  e.time = time_of(j, "time");
  e.service = text(j, "service", true);
  e.event_id = text(j, "event_id");
  e.event_type = text(j, "event_type");
  e.posting_id = text(j, "posting_id");
  e.user_id = text(j, "user_id");
  e.channel = text(j, "channel");
  e.template_name = text(j, "template");
  e.reason = text(j, "reason");
  if (j.contains("until") && !j["until"].is_null()) e.until = time_of(j, "until");
  e.zone = text(j, "zone");
  e.reply = text(j, "reply");
  if (j.contains("attempts") && !j["attempts"].is_null()) {
    const auto attempts = integer_as<int>(j["attempts"]);
    if (!attempts) throw std::invalid_argument("status event: attempts is not an integer");
    e.attempts = *attempts;
  }
  e.last_error = text(j, "last_error");
  return e;
}

std::string key_of(const Event& e) { return e.user_id.empty() ? e.event_id : e.user_id; }

KafkaSink::KafkaSink(const std::string& bootstrap_servers, std::string topic,
                     std::size_t max_buffered,
                     std::function<void(kafka::BufferedProducer::Loss)> on_lost)
    : topic_(std::move(topic)),
      on_lost_(on_lost),
      producer_({bootstrap_servers, max_buffered, {}, std::move(on_lost)}) {}

void KafkaSink::emit(const Event& e) {
  try {
    producer_.send(topic_, key_of(e), encode(e));  // counts and logs what it drops
  } catch (...) {
    // Only running out of memory gets here: the event is lost like a dropped one.
    unencoded_.fetch_add(1);
    try {
      if (on_lost_) on_lost_(kafka::BufferedProducer::Loss::kDropped);
      log::error("status event dropped: could not be encoded", {{"status", e.status}});
    } catch (...) {
    }
  }
}

std::uint64_t KafkaSink::dropped() const { return producer_.dropped() + unencoded_.load(); }
std::uint64_t KafkaSink::failed() const { return producer_.failed(); }
std::size_t KafkaSink::buffered() const { return producer_.buffered(); }

}  // namespace notify::status
