// Tools' reads of Kafka, apart from the group consumer: a group's committed offset, and a
// whole topic read by assignment (read_topic_to_end).

#include <algorithm>
#include <map>
#include <tuple>
#include <utility>

#include "kafka_handles.hpp"
#include "notify/log.hpp"

namespace notify::kafka {

using namespace impl;

std::int64_t committed_offset(const std::string& bootstrap_servers, const std::string& group_id,
                              const TopicPartition& tp) {
  ConfPtr conf = base_conf(bootstrap_servers);
  set(conf.get(), "group.id", group_id);
  set(conf.get(), "enable.auto.commit", "false");
  HandlePtr rk = new_handle(RD_KAFKA_CONSUMER, std::move(conf));
  ListPtr list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition);
  const auto err = rd_kafka_committed(rk.get(), list.get(), 10000);
  // Never joined a group: nothing to leave.
  rd_kafka_destroy_flags(rk.release(), RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  if (err) fail("kafka committed offset of " + group_id, err);
  if (list->elems[0].err) fail("kafka committed offset of " + group_id, list->elems[0].err);
  return list->elems[0].offset;
}

namespace {

std::vector<std::int32_t> partitions_of(rd_kafka_t* rk, const std::string& topic,
                                        std::chrono::milliseconds timeout) {
  TopicPtr rkt(rd_kafka_topic_new(rk, topic.c_str(), nullptr));
  if (!rkt) fail("kafka topic " + topic, rd_kafka_last_error());
  const rd_kafka_metadata_t* raw = nullptr;
  if (const auto err =
          rd_kafka_metadata(rk, 0, rkt.get(), &raw, static_cast<int>(timeout.count()))) {
    fail("kafka metadata of " + topic, err);
  }
  MetadataPtr md(raw);
  if (md->topic_cnt != 1) throw Error("kafka metadata of " + topic + ": topic not in the answer");
  const rd_kafka_metadata_topic_t& t = md->topics[0];
  if (t.err) fail("kafka topic " + topic, t.err);
  std::vector<std::int32_t> out;
  for (int i = 0; i < t.partition_cnt; ++i) out.push_back(t.partitions[i].id);
  std::sort(out.begin(), out.end());
  return out;
}

// The oldest offset a partition keeps and its end (high watermark), asked of its leader.
std::pair<std::int64_t, std::int64_t> watermarks(rd_kafka_t* rk, const std::string& topic,
                                                 std::int32_t partition,
                                                 std::chrono::milliseconds timeout) {
  std::int64_t low = 0;
  std::int64_t high = 0;
  if (const auto err = rd_kafka_query_watermark_offsets(rk, topic.c_str(), partition, &low, &high,
                                                        static_cast<int>(timeout.count()))) {
    fail("kafka watermarks of " + topic + "[" + std::to_string(partition) + "]", err);
  }
  return {low, high};
}

}  // namespace

void read_topic_to_end(const std::string& bootstrap_servers, const std::string& topic,
                       const std::function<bool(const Message&)>& on_message,
                       std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  ConfPtr conf = base_conf(bootstrap_servers);
  // consumer_poll() needs a group, but it is never joined (assign, not subscribe) and nothing
  // is committed.
  set(conf.get(), "group.id", "notify-read-to-end");
  set(conf.get(), "enable.auto.commit", "false");
  set(conf.get(), "enable.auto.offset.store", "false");
  set(conf.get(), "enable.partition.eof", "true");
  // An empty fetch is held this long before the end of a partition shows.
  set(conf.get(), "fetch.wait.max.ms", "100");
  HandlePtr rk = new_handle(RD_KAFKA_CONSUMER, std::move(conf));
  struct NoClose {  // never joined a group: nothing to leave
    HandlePtr& rk;
    ~NoClose() { rd_kafka_destroy_flags(rk.release(), RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE); }
  } no_close{rk};

  // The end of each partition is fixed now: what arrives later (a replay that fails again)
  // is not read in this pass.
  std::map<std::int32_t, std::int64_t> end;
  ListPtr assignment(rd_kafka_topic_partition_list_new(1));
  for (const std::int32_t p : partitions_of(rk.get(), topic, timeout)) {
    const auto [low, high] = watermarks(rk.get(), topic, p, timeout);
    if (high <= low) continue;
    end[p] = high;
    rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), p)->offset = low;
  }
  if (end.empty()) return;
  if (const auto err = rd_kafka_assign(rk.get(), assignment.get())) fail("kafka assign", err);

  // The timeout is for silence, not for the whole read: a long topic takes what it takes.
  auto deadline = Clock::now() + timeout;
  while (!end.empty()) {
    if (Clock::now() >= deadline) {
      throw Error("kafka read of " + topic + ": no progress within " +
                  std::to_string(timeout.count()) + " ms");
    }
    MessagePtr msg(rd_kafka_consumer_poll(rk.get(), 200));
    if (!msg) continue;
    const std::int32_t p = msg->partition;
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      end.erase(p);
      continue;
    }
    if (msg->err) {
      if (msg->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
          msg->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
        fail("kafka read of " + topic, msg->err);
      }
      log::warn("kafka read error", {{"topic", topic},
                                     {"error", err_name(msg->err)},
                                     {"reason", rd_kafka_message_errstr(msg.get())}});
      continue;
    }
    deadline = Clock::now() + timeout;
    const auto it = end.find(p);
    if (it == end.end()) continue;  // this partition is already done
    if (msg->offset >= it->second) {
      end.erase(it);
      continue;
    }
    if (msg->offset + 1 >= it->second) end.erase(it);
    if (!on_message(to_message(msg.get()))) return;
  }
}

std::vector<PartitionOffsets> group_offsets(const std::string& bootstrap_servers,
                                            const std::string& group_id,
                                            const std::vector<std::string>& topics,
                                            std::chrono::milliseconds timeout) {
  ConfPtr conf = base_conf(bootstrap_servers);
  set(conf.get(), "group.id", group_id);
  set(conf.get(), "enable.auto.commit", "false");
  HandlePtr rk = new_handle(RD_KAFKA_CONSUMER, std::move(conf));
  struct NoClose {  // never joined the group: nothing to leave
    HandlePtr& rk;
    ~NoClose() { rd_kafka_destroy_flags(rk.release(), RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE); }
  } no_close{rk};
  const int timeout_ms = static_cast<int>(timeout.count());

  // Every topic's metadata, so that a topic missing is not created by being named.
  const rd_kafka_metadata_t* raw = nullptr;
  if (const auto err = rd_kafka_metadata(rk.get(), 1, nullptr, &raw, timeout_ms)) {
    fail("kafka metadata", err);
  }
  MetadataPtr md(raw);
  std::vector<PartitionOffsets> out;
  ListPtr list(rd_kafka_topic_partition_list_new(8));
  for (const std::string& topic : topics) {
    for (int i = 0; i < md->topic_cnt; ++i) {
      const rd_kafka_metadata_topic_t& t = md->topics[i];
      if (t.err || topic != t.topic) continue;
      std::vector<std::int32_t> partitions;
      for (int j = 0; j < t.partition_cnt; ++j) partitions.push_back(t.partitions[j].id);
      std::sort(partitions.begin(), partitions.end());
      for (const std::int32_t p : partitions) {
        PartitionOffsets po{TopicPartition{topic, p}};
        std::tie(po.start, po.end) = watermarks(rk.get(), topic, p, timeout);
        rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p);
        out.push_back(std::move(po));
      }
    }
  }
  if (out.empty()) return out;
  if (const auto err = rd_kafka_committed(rk.get(), list.get(), timeout_ms)) {
    fail("kafka committed offsets of " + group_id, err);
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    const rd_kafka_topic_partition_t& e = list->elems[i];
    if (!e.err) out[i].committed = e.offset;
  }
  return out;
}

}  // namespace notify::kafka
