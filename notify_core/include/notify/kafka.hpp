#pragma once
// The Kafka edge (src/kafka_*.cpp): the only code that includes <librdkafka/rdkafka.h>.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace notify::kafka {

// permanent(): the broker or client refuses this message as such (too large, an invalid
// record); sending it again cannot succeed. Everything else (timeouts, brokers down, queue
// full, authorization an operator can fix) is worth retrying.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, bool permanent = false)
      : std::runtime_error(what), permanent_(permanent) {}
  bool permanent() const { return permanent_; }

 private:
  bool permanent_ = false;
};

struct TopicPartition {
  std::string topic;
  std::int32_t partition = 0;
  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads a defaulted <=>
  auto operator<=>(const TopicPartition&) const = default;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Message {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::optional<std::string> key;
  std::string value;
  std::optional<std::int64_t> timestamp_ms;  // the broker's or producer's timestamp
  Headers headers;
};

// How far a consumer is behind on one partition: messages past its position.
struct PartitionLag {
  TopicPartition tp;
  std::int64_t lag = 0;
};

// Called from inside Consumer::poll() when the group reassigns partitions.
struct RebalanceListener {
  virtual ~RebalanceListener() = default;
  virtual void on_assigned(const std::vector<TopicPartition>& partitions) = 0;
  // Last chance to store offsets of these partitions: they are committed right after.
  virtual void on_revoked(const std::vector<TopicPartition>& partitions) = 0;
  // The group took these partitions away while this member was cut off from it (its session
  // expired in a broker outage, or it did not poll within max.poll.interval.ms): they may be
  // someone else's already, so nothing of them is committed, and work in flight for them is to
  // be dropped. Their new owner reads them again from the last commit.
  virtual void on_lost(const std::vector<TopicPartition>& partitions) = 0;
};

// A group consumer with manual offset store: offsets advance only through store_offset, and
// stored offsets are committed when the owner asks (commit, commit_async), on revoke and on
// close; never on a timer of librdkafka's, never for partitions that were lost.
class Consumer {
 public:
  struct Options {
    std::string bootstrap_servers;
    std::string group_id;
    std::vector<std::string> topics;
    std::string auto_offset_reset = "earliest";
    // Any librdkafka property but enable.auto.offset.store and enable.auto.commit (refused:
    // they would commit offsets the owner did not store).
    std::map<std::string, std::string> extra;
  };

  // listener may be null; it must outlive the consumer (close() revokes). Throws Error, naming
  // the property when one in `extra` is unknown or bad.
  Consumer(Options options, RebalanceListener* listener);
  ~Consumer();  // close() if not yet closed

  // A message, or nothing on timeout. Consumer errors are logged; throws Error only when fatal,
  // and rethrows what the listener threw (the rebalance goes on regardless).
  std::optional<Message> poll(std::chrono::milliseconds timeout);
  // `next_offset` is the offset of the next message to read (the last done + 1).
  void store_offset(const TopicPartition& tp, std::int64_t next_offset);
  // Synchronous commit of stored offsets; nothing stored is fine. Throws Error when the group
  // refuses it (e.g. during a rebalance).
  void commit();
  // Sends a commit of the offsets stored since the last one and returns at once. Partitions
  // whose stored offset is already committed are left out; with none left, nothing is sent. A
  // commit that fails is logged by librdkafka (its offsets go with the next commit); one the
  // group cannot take now (no coordinator) is retried by librdkafka for up to
  // session.timeout.ms. Throws Error only when the consumer is closed.
  void commit_async();
  void pause(const std::vector<TopicPartition>& partitions);
  void resume(const std::vector<TopicPartition>& partitions);
  std::vector<TopicPartition> assignment() const;
  // Per assigned partition, the high watermark minus the consumer's position, from the
  // watermarks librdkafka keeps from its fetches: no broker round trip, so cheap enough for the
  // poll loop, but stale while a partition is paused. Partitions with no position yet (nothing
  // consumed since the assignment) or no known watermark are left out.
  std::vector<PartitionLag> lag() const;
  void close();  // commits stored offsets and leaves the group; errors are logged, not thrown

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Where the broker stored a produced message.
struct Delivery {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::optional<std::int64_t> timestamp_ms;
};

// A producer for tools and tests (emit, the dead-letter topic): produce() waits for delivery.
// acks=all, idempotent. Use from one thread at a time.
class Producer {
 public:
  explicit Producer(const std::string& bootstrap_servers,
                    const std::map<std::string, std::string>& extra = {});
  ~Producer();
  // Throws Error when the broker did not take the message within timeout. A message that timed
  // out may still be delivered later (at least once).
  Delivery produce(const std::string& topic, const std::optional<std::string>& key,
                   const std::string& value,
                   std::chrono::milliseconds timeout = std::chrono::seconds(10),
                   const Headers& headers = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Sends without waiting, for messages that must never hold up their producer (the status
// events of documentation/status.md): send() hands the message to librdkafka's queue and
// returns; delivery reports are served by a thread of the producer's own. While Kafka is
// unreachable messages wait in that queue, bounded by max_buffered and never timed out, and are
// delivered when it is back (acks=all, idempotent: no duplicates from librdkafka's retries).
// When the queue is full a message is dropped; a delivery that fails for good (the message too
// large, the topic refused) is lost too. Both are counted, reported to on_lost and logged at
// most once per kLossLogInterval with the count since, so an outage does not flood the log.
// Thread-safe: any number of threads may send through one producer.
class BufferedProducer {
 public:
  enum class Loss {
    kDropped,  // not taken: the buffer was full (or librdkafka refused the message at once)
    kFailed,   // taken, but its delivery failed for good (or it was unsent at destruction)
  };
  struct Options {
    std::string bootstrap_servers;
    std::size_t max_buffered = 100000;  // messages waiting or in flight (at least 1)
    // Any librdkafka property; acks, idempotence and the queue's bounds are set already.
    std::map<std::string, std::string> extra;
    // Called once per lost message, from the sending thread (kDropped) or the producer's own
    // (kFailed); must not throw and must not block.
    std::function<void(Loss)> on_lost;
  };
  static constexpr std::chrono::seconds kLossLogInterval{10};
  // How long the destructor waits for what is still buffered.
  static constexpr std::chrono::seconds kCloseTimeout{5};

  // Throws Error when librdkafka refuses the configuration. Connects in the background: a
  // broker down at start is not an error.
  explicit BufferedProducer(Options options);
  // Waits up to kCloseTimeout for buffered messages, then logs (and counts as failed) what is
  // left.
  ~BufferedProducer();
  BufferedProducer(const BufferedProducer&) = delete;
  BufferedProducer& operator=(const BufferedProducer&) = delete;

  // Queues the message (an empty key is sent as none); false when it was dropped. Never blocks,
  // never throws.
  bool send(const std::string& topic, std::string_view key, std::string_view value) noexcept;
  // Waits until nothing is buffered or timeout passed; true when nothing is left.
  bool flush(std::chrono::milliseconds timeout);

  std::uint64_t dropped() const;    // not taken (buffer full)
  std::uint64_t failed() const;     // taken but not delivered
  std::uint64_t delivered() const;  // acknowledged by the broker
  std::size_t buffered() const;     // waiting or in flight now

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "dropped" or "failed": the cause label of the services' status_events_lost_total counters.
constexpr std::string_view to_string(BufferedProducer::Loss loss) {
  return loss == BufferedProducer::Loss::kDropped ? "dropped" : "failed";
}

// The committed offset of a group on a partition (-1001 when none), for tests and tools.
std::int64_t committed_offset(const std::string& bootstrap_servers, const std::string& group_id,
                              const TopicPartition& tp);

// Where a group stands on each partition of some topics: the oldest offset kept, the end (high
// watermark) and the group's committed offset (-1001 when none), read without joining the group.
// Topics the cluster does not have are left out (asking for them by name could create them).
// For tools (make status). Throws Error when the broker does not answer within timeout.
struct PartitionOffsets {
  TopicPartition tp;
  std::int64_t start = 0;
  std::int64_t end = 0;
  std::int64_t committed = -1001;
};
std::vector<PartitionOffsets> group_offsets(const std::string& bootstrap_servers,
                                            const std::string& group_id,
                                            const std::vector<std::string>& topics,
                                            std::chrono::milliseconds timeout);

// Reads every message a topic holds right now, partition by partition from the oldest, up to
// each partition's high watermark at the time of the call: no consumer group, nothing
// committed, so the topic's readers are not disturbed and the read ends by itself even while
// others keep producing. on_message returns false to stop early. For tools (notify_replay).
// Throws Error when the topic does not exist or the broker does not answer within timeout.
void read_topic_to_end(const std::string& bootstrap_servers, const std::string& topic,
                       const std::function<bool(const Message&)>& on_message,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace notify::kafka
