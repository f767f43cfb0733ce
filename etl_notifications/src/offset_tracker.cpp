#include "offset_tracker.hpp"

namespace etl {

void OffsetTracker::begin(const notify::kafka::TopicPartition& tp, std::int64_t offset) {
  partitions_[tp].emplace(offset, false);
}

std::optional<std::int64_t> OffsetTracker::finish(const notify::kafka::TopicPartition& tp,
                                                  std::int64_t offset) {
  auto p = partitions_.find(tp);
  if (p == partitions_.end()) return std::nullopt;
  auto& pending = p->second;
  auto it = pending.find(offset);
  if (it == pending.end()) return std::nullopt;
  it->second = true;
  std::optional<std::int64_t> next;
  while (!pending.empty() && pending.begin()->second) {
    next = pending.begin()->first + 1;
    pending.erase(pending.begin());
  }
  return next;
}

void OffsetTracker::forget(const std::vector<notify::kafka::TopicPartition>& partitions) {
  for (const auto& tp : partitions) partitions_.erase(tp);
}

std::size_t OffsetTracker::in_flight() const {
  std::size_t n = 0;
  for (const auto& [tp, pending] : partitions_) n += pending.size();
  return n;
}

}  // namespace etl
