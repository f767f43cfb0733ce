// notify::kafka::Producer: produce() waits for the broker's delivery report.

#include <algorithm>
#include <map>
#include <utility>

#include "kafka_handles.hpp"
#include "notify/log.hpp"

namespace notify::kafka {

using namespace impl;

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
      log::warn("kafka broker unreachable", fields);
    } else {
      log::warn("kafka producer error", fields);
    }
  }
};

Producer::Producer(const std::string& bootstrap_servers,
                   const std::map<std::string, std::string>& extra)
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
  // An id, not an address: see Impl::pending.
  // NOLINTNEXTLINE(performance-no-int-to-ptr)
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
      (void)hdrs.release();  // the message owns them now
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

}  // namespace notify::kafka
