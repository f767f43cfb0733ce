#include "moves.hpp"

#include <algorithm>

#include "notify/envelope.hpp"

namespace worker {

notify::amqp::Topology topology_of(const WorkerConfig& config) {
  notify::amqp::Topology t;
  t.exchange = config.exchange;
  t.channels = notify::envelope::channel_names();
  t.delay_tiers = config.delay_tiers;
  return t;
}

std::optional<Move> move_for(const notify::amqp::Delivery& delivery, const Action& action,
                             notify::TimePoint now, const notify::amqp::Topology& topology,
                             std::string_view channel) {
  using namespace notify::envelope;
  if (std::holds_alternative<Ack>(action)) return std::nullopt;
  Move move{copy_of(delivery, ""), std::chrono::milliseconds(0)};
  auto& headers = move.copy.headers;
  if (const auto* later = std::get_if<Postpone>(&action)) {
    const auto remaining =
        std::max<std::chrono::milliseconds>(later->until - now, std::chrono::milliseconds(0));
    move.tier = choose_tier(remaining, topology.delay_tiers);
    move.copy.routing_key = topology.delay_queue_for(channel, move.tier);
    headers[kDeliverAtHeader] = notify::format_iso8601(later->until);
    headers[kDeferReasonHeader] = std::string(to_string(later->reason));
    headers[kAttemptsHeader] = std::to_string(later->attempts);
    if (!later->last_error.empty()) headers[kLastErrorHeader] = later->last_error;
    return move;
  }
  const auto& dead = std::get<DeadLetter>(action);
  move.copy.routing_key = topology.dead_letter_queue_for(channel);
  headers[kDeadReasonHeader] = dead_reason_text(dead);
  headers[kAttemptsHeader] = std::to_string(dead.attempts);
  if (!dead.last_error.empty()) headers[kLastErrorHeader] = dead.last_error;
  return move;
}

}  // namespace worker
