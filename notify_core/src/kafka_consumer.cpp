// notify::kafka::Consumer: a group consumer over librdkafka with manual offset store.

#include <algorithm>
#include <cstring>
#include <exception>
#include <mutex>
#include <utility>

#include "kafka_handles.hpp"
#include "notify/log.hpp"

namespace notify::kafka {

using namespace impl;

namespace {

ListPtr to_list(const std::vector<TopicPartition>& partitions) {
  ListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())));
  for (const auto& tp : partitions) {
    rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition);
  }
  return list;
}

std::vector<TopicPartition> from_list(const rd_kafka_topic_partition_list_t* list) {
  std::vector<TopicPartition> out;
  if (list == nullptr) return out;
  for (int i = 0; i < list->cnt; ++i) {
    out.push_back({list->elems[i].topic, list->elems[i].partition});
  }
  return out;
}

nlohmann::json to_json(const std::vector<TopicPartition>& partitions) {
  auto out = nlohmann::json::array();
  for (const auto& tp : partitions)
    out.push_back(tp.topic + "[" + std::to_string(tp.partition) + "]");
  return out;
}

bool is_cooperative(rd_kafka_t* rk) {
  const char* protocol = rd_kafka_rebalance_protocol(rk);
  return protocol != nullptr && std::strcmp(protocol, "COOPERATIVE") == 0;
}

}  // namespace

struct Consumer::Impl {
  Options options;
  RebalanceListener* listener = nullptr;
  HandlePtr rk;
  // Callbacks run inside rd_kafka_consumer_poll (C code): what they throw is kept and rethrown
  // by poll() once the C frames are gone.
  std::exception_ptr callback_error;
  std::mutex fatal_mutex;  // the error callback may run on a librdkafka thread
  std::optional<std::string> fatal;

  static Impl* of(void* opaque) { return static_cast<Impl*>(opaque); }

  static void error_cb(rd_kafka_t* rk, int err_int, const char* reason, void* opaque) {
    const auto err = static_cast<rd_kafka_resp_err_t>(err_int);
    Impl* self = of(opaque);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
      char buf[512];
      const auto orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
      std::lock_guard lock(self->fatal_mutex);
      self->fatal = std::string(buf) + " (" + err_name(orig) + ")";
      log::error("kafka fatal error", {{"error", *self->fatal}});
      return;
    }
    nlohmann::json fields = {{"error", err_name(err)}, {"reason", reason}};
    if (is_transport_noise(err)) {
      log::warn("kafka broker unreachable", fields);
    } else {
      log::warn("kafka consumer error", fields);
    }
  }

  static void rebalance_cb(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t* partitions, void* opaque) {
    Impl* self = of(opaque);
    const bool cooperative = is_cooperative(rk);
    const auto tps = from_list(partitions);
    try {
      if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        self->assign(partitions, cooperative);
        log::info("kafka partitions assigned", {{"partitions", to_json(tps)}});
        if (self->listener != nullptr) self->listener->on_assigned(tps);
        return;
      }
      if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        log::warn("kafka rebalance error", {{"error", err_name(err)}});
      } else if (rd_kafka_assignment_lost(rk) != 0) {
        // Fenced: the group may have handed these partitions to someone else already. What was
        // stored for them is not committed (librdkafka would refuse it now anyway, and the
        // next assign() clears it): the new owner starts from the last commit.
        log::warn("kafka partitions lost", {{"partitions", to_json(tps)}});
        if (self->listener != nullptr) self->listener->on_lost(tps);
      } else {
        log::info("kafka partitions revoked", {{"partitions", to_json(tps)}});
        if (self->listener != nullptr) self->listener->on_revoked(tps);
        // Commit what the listener stored before someone else owns these partitions.
        const auto commit_err = rd_kafka_commit(rk, nullptr, 0);
        if (commit_err != RD_KAFKA_RESP_ERR_NO_ERROR &&
            commit_err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
          log::warn("kafka commit on revoke failed", {{"error", err_name(commit_err)}});
        }
      }
    } catch (...) {
      if (!self->callback_error) self->callback_error = std::current_exception();
    }
    // Revoke (or error): give the partitions up even if the listener threw, else the group
    // cannot proceed.
    try {
      self->unassign(partitions, cooperative);
    } catch (...) {
      if (!self->callback_error) self->callback_error = std::current_exception();
    }
  }

  void assign(rd_kafka_topic_partition_list_t* partitions, bool cooperative) {
    if (cooperative) {
      ErrorPtr error(rd_kafka_incremental_assign(rk.get(), partitions));
      if (error) throw Error(std::string("kafka assign: ") + rd_kafka_error_string(error.get()));
    } else if (const auto e = rd_kafka_assign(rk.get(), partitions)) {
      fail("kafka assign", e);
    }
  }

  void unassign(rd_kafka_topic_partition_list_t* partitions, bool cooperative) {
    if (cooperative) {
      ErrorPtr error(rd_kafka_incremental_unassign(rk.get(), partitions));
      if (error) throw Error(std::string("kafka unassign: ") + rd_kafka_error_string(error.get()));
    } else if (const auto e = rd_kafka_assign(rk.get(), nullptr)) {
      fail("kafka unassign", e);
    }
  }

  void throw_pending() {
    {
      std::lock_guard lock(fatal_mutex);
      if (fatal) throw Error("kafka consumer fatal error: " + *fatal);
    }
    if (callback_error) std::rethrow_exception(std::exchange(callback_error, nullptr));
  }

  void check_open() const {
    if (!rk) throw Error("kafka consumer is closed");
  }
};

Consumer::Consumer(Options options, RebalanceListener* listener) : impl_(std::make_unique<Impl>()) {
  if (options.topics.empty()) throw Error("kafka consumer: no topics to subscribe to");
  impl_->options = std::move(options);
  impl_->listener = listener;
  const Options& o = impl_->options;

  ConfPtr conf = base_conf(o.bootstrap_servers);
  set(conf.get(), "group.id", o.group_id);
  // Offsets advance only through store_offset(), and are committed when the owner asks
  // (commit_async() on its own schedule), on revoke and on close: librdkafka's timer would
  // commit only every auto.commit.interval.ms, on a thread the owner cannot test or follow.
  set(conf.get(), "enable.auto.offset.store", "false");
  set(conf.get(), "enable.auto.commit", "false");
  set(conf.get(), "auto.offset.reset", o.auto_offset_reset);
  for (const auto& [name, value] : o.extra) {
    if (name == "enable.auto.offset.store" || name == "enable.auto.commit") {
      throw Error("kafka consumer: " + name + " cannot be set: offsets are stored and committed " +
                  "by the consumer's owner");
    }
    set(conf.get(), name, value);
  }
  rd_kafka_conf_set_opaque(conf.get(), impl_.get());
  rd_kafka_conf_set_error_cb(conf.get(), &Impl::error_cb);
  rd_kafka_conf_set_rebalance_cb(conf.get(), &Impl::rebalance_cb);

  impl_->rk = new_handle(RD_KAFKA_CONSUMER, std::move(conf));
  // Route the main queue (logs, errors, rebalances) to consumer_poll().
  rd_kafka_poll_set_consumer(impl_->rk.get());

  ListPtr topics(rd_kafka_topic_partition_list_new(static_cast<int>(o.topics.size())));
  for (const auto& topic : o.topics) {
    rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  }
  if (const auto err = rd_kafka_subscribe(impl_->rk.get(), topics.get())) {
    fail("kafka subscribe", err);
  }
}

Consumer::~Consumer() {
  try {
    close();
  } catch (const std::exception& e) {
    log::warn("kafka consumer close failed", {{"error", e.what()}});
  }
}

std::optional<Message> Consumer::poll(std::chrono::milliseconds timeout) {
  impl_->check_open();
  MessagePtr msg(rd_kafka_consumer_poll(impl_->rk.get(), static_cast<int>(timeout.count())));
  impl_->throw_pending();
  if (!msg) return std::nullopt;
  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) return to_message(msg.get());
  if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return std::nullopt;

  char buf[512];
  if (const auto fatal = rd_kafka_fatal_error(impl_->rk.get(), buf, sizeof buf)) {
    throw Error(std::string("kafka consumer fatal error: ") + buf + " (" + err_name(fatal) + ")");
  }
  nlohmann::json fields = {{"error", err_name(msg->err)},
                           {"reason", rd_kafka_message_errstr(msg.get())}};
  if (msg->rkt != nullptr) {
    fields["topic"] = rd_kafka_topic_name(msg->rkt);
    fields["partition"] = msg->partition;
  }
  if (is_transport_noise(msg->err)) {
    log::warn("kafka broker unreachable", fields);
  } else {
    log::warn("kafka consume error", fields);
  }
  return std::nullopt;
}

void Consumer::store_offset(const TopicPartition& tp, std::int64_t next_offset) {
  impl_->check_open();
  ListPtr list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition)->offset =
      next_offset;
  const auto err = rd_kafka_offsets_store(impl_->rk.get(), list.get());
  if (err == RD_KAFKA_RESP_ERR__INVALID_ARG) fail("kafka store offset", err);
  const auto partition_err = list->elems[0].err;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR || partition_err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    // Normal after a rebalance took the partition away: its new owner re-reads from the last
    // commit.
    log::debug("kafka offset not stored",
               {{"topic", tp.topic},
                {"partition", tp.partition},
                {"offset", next_offset},
                {"error", err_name(partition_err ? partition_err : err)}});
  }
}

void Consumer::commit() {
  impl_->check_open();
  const auto err = rd_kafka_commit(impl_->rk.get(), nullptr, 0);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
    fail("kafka commit", err);
  }
}

void Consumer::commit_async() {
  impl_->check_open();
  // Asynchronous: only the enqueueing can fail here (no group), the outcome comes later.
  if (const auto err = rd_kafka_commit(impl_->rk.get(), nullptr, 1)) fail("kafka commit", err);
}

void Consumer::pause(const std::vector<TopicPartition>& partitions) {
  impl_->check_open();
  ListPtr list = to_list(partitions);
  if (const auto err = rd_kafka_pause_partitions(impl_->rk.get(), list.get())) {
    fail("kafka pause", err);
  }
}

void Consumer::resume(const std::vector<TopicPartition>& partitions) {
  impl_->check_open();
  ListPtr list = to_list(partitions);
  if (const auto err = rd_kafka_resume_partitions(impl_->rk.get(), list.get())) {
    fail("kafka resume", err);
  }
}

std::vector<TopicPartition> Consumer::assignment() const {
  impl_->check_open();
  rd_kafka_topic_partition_list_t* raw = nullptr;
  if (const auto err = rd_kafka_assignment(impl_->rk.get(), &raw)) fail("kafka assignment", err);
  ListPtr list(raw);
  return from_list(list.get());
}

std::vector<PartitionLag> Consumer::lag() const {
  impl_->check_open();
  rd_kafka_topic_partition_list_t* raw = nullptr;
  if (const auto err = rd_kafka_assignment(impl_->rk.get(), &raw)) fail("kafka assignment", err);
  ListPtr list(raw);
  // Fills each element's offset with the position (the next offset to hand to the application).
  if (const auto err = rd_kafka_position(impl_->rk.get(), list.get())) fail("kafka position", err);
  std::vector<PartitionLag> out;
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& e = list->elems[i];
    std::int64_t low = 0;
    std::int64_t high = 0;
    if (e.err != RD_KAFKA_RESP_ERR_NO_ERROR || e.offset < 0) continue;
    if (rd_kafka_get_watermark_offsets(impl_->rk.get(), e.topic, e.partition, &low, &high) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        high < 0) {
      continue;
    }
    out.push_back(
        {TopicPartition{e.topic, e.partition}, std::max<std::int64_t>(0, high - e.offset)});
  }
  return out;
}

void Consumer::close() {
  if (!impl_ || !impl_->rk) return;
  try {
    commit();
  } catch (const std::exception& e) {
    log::warn("kafka commit on close failed", {{"error", e.what()}});
  }
  // Leaves the group: the rebalance callback runs once more (revoke, commit).
  if (const auto err = rd_kafka_consumer_close(impl_->rk.get())) {
    log::warn("kafka consumer close", {{"error", err_name(err)}});
  }
  impl_->callback_error = nullptr;
  impl_->rk.reset();
}

}  // namespace notify::kafka
