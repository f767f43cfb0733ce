#pragma once
// Offsets advance only past events whose postings are all confirmed. Events of a partition
// finish out of order (confirms, retries); only the contiguous finished prefix may be
// committed. Pure bookkeeping, after modern-cpp-kafka's unordered offset commit queue.

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "notify/kafka.hpp"

namespace etl {

class OffsetTracker {
 public:
  // A message was consumed; offsets of a partition arrive in increasing order.
  void begin(const notify::kafka::TopicPartition& tp, std::int64_t offset);
  // The message is finished. Returns the next offset to store (last finished + 1) when the
  // contiguous prefix moved; nothing otherwise or when the partition is no longer tracked.
  std::optional<std::int64_t> finish(const notify::kafka::TopicPartition& tp, std::int64_t offset);
  // The partitions were revoked: forget them.
  void forget(const std::vector<notify::kafka::TopicPartition>& partitions);
  std::size_t in_flight() const;

 private:
  // offset -> finished, per partition; the front is the oldest unfinished.
  std::map<notify::kafka::TopicPartition, std::map<std::int64_t, bool>> partitions_;
};

}  // namespace etl
