#pragma once
// Where a postponed or dead-lettered posting goes: the queues of the worker's topology, and the
// copy published there (routing key and the headers the worker keeps between attempts,
// documentation/postings.md). Pure: the loop publishes what these return.

#include <chrono>
#include <optional>
#include <string_view>

#include "config.hpp"
#include "notify/amqp.hpp"
#include "notify/time.hpp"
#include "outcomes.hpp"

namespace worker {

// The exchange, every channel's work queue, and the delay tiers, as WorkerConfig names them.
notify::amqp::Topology topology_of(const WorkerConfig& config);

struct Move {
  notify::amqp::Message copy;
  std::chrono::milliseconds tier{0};  // the delay queue's tier (a Postpone only)
};

// The copy of `delivery` an action publishes before the original is acknowledged: a Postpone
// to the delay queue whose tier fits the time left until `until` (x-deliver-at,
// x-defer-reason, x-attempts, x-last-error), a DeadLetter to the channel's dead-letter queue
// (x-dead-reason, x-attempts, x-last-error). Nothing for an Ack.
std::optional<Move> move_for(const notify::amqp::Delivery& delivery, const Action& action,
                             notify::TimePoint now, const notify::amqp::Topology& topology,
                             std::string_view channel);

}  // namespace worker
