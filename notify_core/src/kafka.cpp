// The Kafka edge over librdkafka's C API: handles live in RAII holders, error codes become
// notify::kafka::Error once, here, and librdkafka's own logging goes through notify::log.

#include "notify/kafka.hpp"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <utility>

#include "notify/log.hpp"

namespace notify::kafka {
namespace {

struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct ConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
struct ListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* list) const {
    rd_kafka_topic_partition_list_destroy(list);
  }
};
struct MessageDeleter {
  void operator()(rd_kafka_message_t* msg) const { rd_kafka_message_destroy(msg); }
};
struct HeadersDeleter {
  void operator()(rd_kafka_headers_t* hdrs) const { rd_kafka_headers_destroy(hdrs); }
};
struct ErrorDeleter {
  void operator()(rd_kafka_error_t* error) const { rd_kafka_error_destroy(error); }
};

using HandlePtr = std::unique_ptr<rd_kafka_t, HandleDeleter>;
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
using ListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, ListDeleter>;
using MessagePtr = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;
using HeadersPtr = std::unique_ptr<rd_kafka_headers_t, HeadersDeleter>;
using ErrorPtr = std::unique_ptr<rd_kafka_error_t, ErrorDeleter>;

std::string err_name(rd_kafka_resp_err_t err) { return rd_kafka_err2name(err); }

// Errors about the message itself: no retry can make the broker take it.
bool permanent_error(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR__BAD_MSG:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return true;
    default:
      return false;
  }
}

[[noreturn]] void fail(const std::string& what, rd_kafka_resp_err_t err) {
  throw Error(what + ": " + rd_kafka_err2str(err) + " (" + err_name(err) + ")",
              permanent_error(err));
}

void set(rd_kafka_conf_t* conf, const std::string& name, const std::string& value) {
  char errstr[512];
  if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr) !=
      RD_KAFKA_CONF_OK) {
    throw Error("Kafka property " + name + "=" + value + ": " + errstr);
  }
}

// librdkafka logs with syslog levels from its own threads.
void log_cb(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
  nlohmann::json fields = {{"client", rd_kafka_name(rk)}, {"facility", fac}};
  // Connection failures repeat until the broker is back; the error callback reports them once.
  if (std::strcmp(fac, "FAIL") == 0) level = 7;
  if (level <= 3) {
    log::error(buf, fields);
  } else if (level == 4) {
    log::warn(buf, fields);
  } else if (level <= 6) {
    log::info(buf, fields);
  } else {
    log::debug(buf, fields);
  }
}

bool is_transport_noise(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
         err == RD_KAFKA_RESP_ERR__RESOLVE;
}

ConfPtr base_conf(const std::string& bootstrap_servers) {
  ConfPtr conf(rd_kafka_conf_new());
  rd_kafka_conf_set_log_cb(conf.get(), log_cb);
  set(conf.get(), "bootstrap.servers", bootstrap_servers);
  return conf;
}

HandlePtr new_handle(rd_kafka_type_t type, ConfPtr conf) {
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), errstr, sizeof errstr);
  if (rk == nullptr) throw Error(std::string("Kafka client: ") + errstr);
  conf.release();  // rd_kafka_new took ownership
  return HandlePtr(rk);
}

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

std::optional<std::int64_t> timestamp_of(const rd_kafka_message_t* msg) {
  rd_kafka_timestamp_type_t type;
  const std::int64_t ts = rd_kafka_message_timestamp(msg, &type);
  if (type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE || ts < 0) return std::nullopt;
  return ts;
}

Message to_message(const rd_kafka_message_t* msg) {
  Message out;
  out.topic = rd_kafka_topic_name(msg->rkt);
  out.partition = msg->partition;
  out.offset = msg->offset;
  if (msg->key != nullptr) out.key.emplace(static_cast<const char*>(msg->key), msg->key_len);
  if (msg->payload != nullptr) out.value.assign(static_cast<const char*>(msg->payload), msg->len);
  out.timestamp_ms = timestamp_of(msg);
  rd_kafka_headers_t* hdrs = nullptr;  // owned by the message
  if (rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name;
    const void* value;
    size_t size;
    for (size_t i = 0;
         rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      out.headers.emplace_back(name, value == nullptr
                                         ? std::string()
                                         : std::string(static_cast<const char*>(value), size));
    }
  }
  return out;
}

bool is_cooperative(rd_kafka_t* rk) {
  const char* protocol = rd_kafka_rebalance_protocol(rk);
  return protocol != nullptr && std::strcmp(protocol, "COOPERATIVE") == 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Consumer

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
      log::info("kafka broker unreachable", fields);
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
  // Offsets advance only through store_offset(); what is stored is committed periodically.
  set(conf.get(), "enable.auto.offset.store", "false");
  set(conf.get(), "enable.auto.commit", "true");
  set(conf.get(), "auto.offset.reset", o.auto_offset_reset);
  for (const auto& [name, value] : o.extra) set(conf.get(), name, value);
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
    log::info("kafka broker unreachable", fields);
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

// ---------------------------------------------------------------------------------------------
// Producer

namespace {

// One produce() call waiting for its delivery report. Reports arrive on the producing thread,
// inside rd_kafka_poll().
struct PendingDelivery {
  bool done = false;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  Delivery delivery;
};

}  // namespace

struct Producer::Impl {
  HandlePtr rk;
  std::uint64_t next_id = 1;
  // Keyed by id rather than by pointer so that a report arriving after produce() gave up finds
  // nothing instead of a dead stack frame.
  std::map<std::uint64_t, PendingDelivery> pending;

  static void dr_msg_cb(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    const auto id = reinterpret_cast<std::uintptr_t>(msg->_private);
    const auto it = self->pending.find(id);
    if (it == self->pending.end()) {
      log::warn("kafka delivery report after timeout",
                {{"error", err_name(msg->err)}, {"offset", msg->offset}});
      return;
    }
    PendingDelivery& p = it->second;
    p.done = true;
    p.err = msg->err;
    p.delivery.topic = rd_kafka_topic_name(msg->rkt);
    p.delivery.partition = msg->partition;
    p.delivery.offset = msg->offset;
    p.delivery.timestamp_ms = timestamp_of(msg);
  }

  static void error_cb(rd_kafka_t*, int err_int, const char* reason, void*) {
    const auto err = static_cast<rd_kafka_resp_err_t>(err_int);
    nlohmann::json fields = {{"error", err_name(err)}, {"reason", reason}};
    if (is_transport_noise(err)) {
      log::info("kafka broker unreachable", fields);
    } else {
      log::warn("kafka producer error", fields);
    }
  }
};

Producer::Producer(std::string bootstrap_servers, std::map<std::string, std::string> extra)
    : impl_(std::make_unique<Impl>()) {
  ConfPtr conf = base_conf(bootstrap_servers);
  set(conf.get(), "acks", "all");
  set(conf.get(), "enable.idempotence", "true");
  set(conf.get(), "linger.ms", "0");  // one message at a time: do not wait for a batch
  for (const auto& [name, value] : extra) set(conf.get(), name, value);
  rd_kafka_conf_set_opaque(conf.get(), impl_.get());
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &Impl::dr_msg_cb);
  rd_kafka_conf_set_error_cb(conf.get(), &Impl::error_cb);
  impl_->rk = new_handle(RD_KAFKA_PRODUCER, std::move(conf));
}

Producer::~Producer() {
  // Normally empty: produce() waits. Give abandoned messages a moment, then drop them.
  if (impl_ && impl_->rk) rd_kafka_flush(impl_->rk.get(), 2000);
}

Delivery Producer::produce(const std::string& topic, const std::optional<std::string>& key,
                           const std::string& value, std::chrono::milliseconds timeout,
                           const Headers& headers) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  const std::uint64_t id = impl_->next_id++;
  impl_->pending.emplace(id, PendingDelivery{});
  struct Forget {  // whatever happens, this call stops waiting for its report
    Impl* impl;
    std::uint64_t id;
    ~Forget() { impl->pending.erase(id); }
  } forget{impl_.get(), id};

  // The RD_KAFKA_V_* macros do not parenthesize their arguments.
  const void* key_data = key ? key->data() : nullptr;
  const std::size_t key_size = key ? key->size() : 0;
  void* opaque = reinterpret_cast<void*>(static_cast<std::uintptr_t>(id));
  for (;;) {
    HeadersPtr hdrs;
    if (!headers.empty()) {
      hdrs.reset(rd_kafka_headers_new(headers.size()));
      for (const auto& [name, val] : headers) {
        rd_kafka_header_add(hdrs.get(), name.data(), static_cast<ssize_t>(name.size()), val.data(),
                            static_cast<ssize_t>(val.size()));
      }
    }
    const auto err = rd_kafka_producev(
        impl_->rk.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key_data, key_size),
        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
        RD_KAFKA_V_HEADERS(hdrs.get()), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      hdrs.release();  // the message owns them now
      break;
    }
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || Clock::now() >= deadline) {
      fail("kafka produce to " + topic, err);
    }
    rd_kafka_poll(impl_->rk.get(), 50);
  }

  for (;;) {
    const PendingDelivery& p = impl_->pending.at(id);
    if (p.done) {
      if (p.err != RD_KAFKA_RESP_ERR_NO_ERROR) fail("kafka delivery to " + topic, p.err);
      return p.delivery;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      throw Error("kafka delivery to " + topic + ": no report within " +
                  std::to_string(timeout.count()) + " ms");
    }
    rd_kafka_poll(impl_->rk.get(), static_cast<int>(std::min<long long>(left, 100)));
  }
}

// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// read_topic_to_end: a tools' reader by assignment, apart from the group consumer above.

namespace {

struct TopicDeleter {
  void operator()(rd_kafka_topic_t* rkt) const { rd_kafka_topic_destroy(rkt); }
};
struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* md) const { rd_kafka_metadata_destroy(md); }
};

std::vector<std::int32_t> partitions_of(rd_kafka_t* rk, const std::string& topic,
                                        std::chrono::milliseconds timeout) {
  std::unique_ptr<rd_kafka_topic_t, TopicDeleter> rkt(
      rd_kafka_topic_new(rk, topic.c_str(), nullptr));
  if (!rkt) fail("kafka topic " + topic, rd_kafka_last_error());
  const rd_kafka_metadata_t* raw = nullptr;
  if (const auto err =
          rd_kafka_metadata(rk, 0, rkt.get(), &raw, static_cast<int>(timeout.count()))) {
    fail("kafka metadata of " + topic, err);
  }
  std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter> md(raw);
  if (md->topic_cnt != 1) throw Error("kafka metadata of " + topic + ": topic not in the answer");
  const rd_kafka_metadata_topic_t& t = md->topics[0];
  if (t.err) fail("kafka topic " + topic, t.err);
  std::vector<std::int32_t> out;
  for (int i = 0; i < t.partition_cnt; ++i) out.push_back(t.partitions[i].id);
  std::sort(out.begin(), out.end());
  return out;
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
    std::int64_t low = 0;
    std::int64_t high = 0;
    if (const auto err = rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), p, &low, &high,
                                                          static_cast<int>(timeout.count()))) {
      fail("kafka watermarks of " + topic + "[" + std::to_string(p) + "]", err);
    }
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

}  // namespace notify::kafka
