#include "notify/envelope.hpp"

#include <array>
#include <charconv>

#include "notify/time.hpp"

namespace notify::envelope {

std::vector<std::string> channel_names() {
  std::vector<std::string> names;
  for (Channel c : kChannels) names.emplace_back(to_string(c));
  return names;
}

amqp::Message to_message(const Posting& p) {
  amqp::Message m;
  m.routing_key = std::string(to_string(p.channel));
  m.body = encode(p);
  m.message_id = p.posting_id;
  m.priority = static_cast<std::uint8_t>(p.priority);
  m.headers = {{kEventIdHeader, p.event_id}, {kTemplateHeader, p.template_name}};
  return m;
}

amqp::Message copy_of(const amqp::Delivery& delivery, std::string routing_key) {
  amqp::Message m;
  m.routing_key = std::move(routing_key);
  m.body = delivery.body;
  m.message_id = delivery.message_id;
  m.priority = delivery.priority;
  m.headers = delivery.headers;
  m.headers.erase(kDeathHeader);
  return m;
}

amqp::Message replay_of(const amqp::Delivery& delivery, Channel channel) {
  static constexpr std::array<const char*, 8> kBookkeeping = {
      kDeadReasonHeader,  kAttemptsHeader,         kLastErrorHeader,      kDeliverAtHeader,
      kDeferReasonHeader, kFirstDeathReasonHeader, "x-first-death-queue", "x-first-death-exchange"};
  amqp::Message m = copy_of(delivery, std::string(to_string(channel)));
  for (const char* name : kBookkeeping) m.headers.erase(name);
  return m;
}

std::string header(const amqp::Delivery& delivery, const std::string& name) {
  const auto it = delivery.headers.find(name);
  return it == delivery.headers.end() ? std::string() : it->second;
}

int attempts_of(const amqp::Delivery& delivery) {
  const std::string text = header(delivery, kAttemptsHeader);
  int value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < 0) return 0;
  return value;
}

std::optional<TimePoint> deliver_at_of(const amqp::Delivery& delivery) {
  const auto it = delivery.headers.find(kDeliverAtHeader);
  if (it == delivery.headers.end()) return std::nullopt;
  return parse_iso8601(it->second);
}

}  // namespace notify::envelope
