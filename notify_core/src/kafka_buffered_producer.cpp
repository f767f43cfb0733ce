// notify::kafka::BufferedProducer: send() never waits; librdkafka's bounded queue is the buffer
// and a thread of the producer's own serves the delivery reports.

#include <algorithm>
#include <atomic>
#include <limits>
#include <thread>
#include <utility>

#include "kafka_handles.hpp"
#include "notify/log.hpp"

namespace notify::kafka {

using namespace impl;

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
      .count();
}

// Losses of one kind, logged at most once per interval with the count since the last line: an
// outage that overflows the buffer writes a line every ten seconds, not one per message.
class LossLog {
 public:
  explicit LossLog(const char* message) : message_(message) {}

  void lost(const nlohmann::json& fields, std::uint64_t total) {
    unlogged_.fetch_add(1);
    const std::int64_t now = steady_ms();
    std::int64_t last = last_ms_.load();
    const auto interval =
        std::chrono::duration_cast<std::chrono::milliseconds>(BufferedProducer::kLossLogInterval);
    if (now - last < interval.count() || !last_ms_.compare_exchange_strong(last, now)) return;
    write(fields, total);
  }

  // What was lost since the last line, if anything (at destruction).
  void write_rest(const nlohmann::json& fields, std::uint64_t total) {
    if (unlogged_.load() > 0) write(fields, total);
  }

 private:
  void write(nlohmann::json fields, std::uint64_t total) {
    fields["lost"] = unlogged_.exchange(0);
    fields["lost_total"] = total;
    log::error(message_, fields);
  }

  const char* message_;
  std::atomic<std::uint64_t> unlogged_{0};
  // The first loss is logged at once.
  std::atomic<std::int64_t> last_ms_{std::numeric_limits<std::int64_t>::min() / 2};
};

bool is_purge(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT;
}

}  // namespace

struct BufferedProducer::Impl {
  std::function<void(Loss)> on_lost;
  std::size_t max_buffered = 0;
  HandlePtr rk;
  std::atomic<std::uint64_t> accepted{0};  // taken by librdkafka
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> purged{0};  // unsent at destruction
  LossLog drop_log{"kafka buffer full: message dropped"};
  LossLog failure_log{"kafka delivery failed: message lost"};
  std::atomic<bool> stop{false};
  // Past the destructor's count: a report librdkafka still serves is not counted twice.
  std::atomic<bool> closed{false};
  std::thread poller;

  // Messages taken and not yet reported on. Not rd_kafka_outq_len(), which counts the error
  // events waiting for the poller too.
  std::uint64_t waiting() const {
    const std::uint64_t done = delivered.load() + failed.load();
    const std::uint64_t taken = accepted.load();
    return taken > done ? taken - done : 0;
  }

  void lost(Loss loss) {
    if (!on_lost) return;
    try {
      on_lost(loss);
    } catch (...) {  // a counter that throws must not take the producer with it
    }
  }

  static void dr_msg_cb(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    if (self->closed.load()) return;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      self->delivered.fetch_add(1);
      return;
    }
    const std::uint64_t total = self->failed.fetch_add(1) + 1;
    self->lost(Loss::kFailed);
    if (is_purge(msg->err)) {
      self->purged.fetch_add(1);  // the destructor logs these together
      return;
    }
    self->failure_log.lost({{"topic", rd_kafka_topic_name(msg->rkt)},
                            {"error", err_name(msg->err)},
                            {"reason", rd_kafka_err2str(msg->err)}},
                           total);
  }

  static void error_cb(rd_kafka_t* rk, int err_int, const char* reason, void*) {
    auto err = static_cast<rd_kafka_resp_err_t>(err_int);
    nlohmann::json fields = {{"error", err_name(err)}, {"reason", reason}};
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
      // The idempotent producer cannot go on (its sequence broken): every message from now on
      // is refused (dropped) or fails its delivery, and is counted so.
      char why[512];
      err = rd_kafka_fatal_error(rk, why, sizeof why);
      fields = {{"error", err_name(err)}, {"reason", why}};
      log::error("kafka buffered producer failed for good", fields);
    } else if (is_transport_noise(err)) {
      log::warn("kafka broker unreachable: messages wait in the buffer", fields);
    } else {
      log::warn("kafka producer error", fields);
    }
  }
};

BufferedProducer::BufferedProducer(Options options) : impl_(std::make_unique<Impl>()) {
  impl_->on_lost = std::move(options.on_lost);
  impl_->max_buffered = std::max<std::size_t>(options.max_buffered, 1);
  ConfPtr conf = base_conf(options.bootstrap_servers);
  set(conf.get(), "acks", "all");
  set(conf.get(), "enable.idempotence", "true");
  set(conf.get(), "queue.buffering.max.messages", std::to_string(impl_->max_buffered));
  // A message waits in the buffer until it is delivered, however long Kafka is away: only a
  // full buffer loses messages, and that is counted.
  set(conf.get(), "message.timeout.ms", "0");
  // Nobody waits on these messages to send a mail: up to 100 ms of waiting gathers a busy
  // second's messages into ten requests rather than librdkafka's default 5 ms (two hundred),
  // fewer wake-ups of the producer's threads and of the broker.
  set(conf.get(), "linger.ms", "100");
  for (const auto& [name, value] : options.extra) set(conf.get(), name, value);
  rd_kafka_conf_set_opaque(conf.get(), impl_.get());
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &Impl::dr_msg_cb);
  rd_kafka_conf_set_error_cb(conf.get(), &Impl::error_cb);
  impl_->rk = new_handle(RD_KAFKA_PRODUCER, std::move(conf));
  Impl* impl = impl_.get();
  impl_->poller = std::thread([impl] {
    while (!impl->stop.load()) rd_kafka_poll(impl->rk.get(), 100);
  });
}

BufferedProducer::~BufferedProducer() {
  Impl& impl = *impl_;
  impl.stop.store(true);
  impl.poller.join();
  rd_kafka_t* rk = impl.rk.get();
  const auto flushed = rd_kafka_flush(
      rk, static_cast<int>(
              std::chrono::duration_cast<std::chrono::milliseconds>(kCloseTimeout).count()));
  const std::uint64_t left = impl.waiting();
  if (flushed != RD_KAFKA_RESP_ERR_NO_ERROR && left > 0) {
    // Their delivery reports (failed, purged) count them as lost.
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(rk, 0);
    // Reports that did not come back before the handle goes are counted here.
    const auto counted = impl.purged.load();
    for (auto n = counted; n < left; ++n) {
      impl.failed.fetch_add(1);
      impl.lost(Loss::kFailed);
    }
    impl.closed.store(true);
    log::error("kafka buffered producer closed with messages unsent: lost",
               {{"unsent", left},
                {"waited_ms",
                 std::chrono::duration_cast<std::chrono::milliseconds>(kCloseTimeout).count()}});
  }
  impl.drop_log.write_rest({}, impl.dropped.load());
  impl.failure_log.write_rest({}, impl.failed.load());
}

bool BufferedProducer::send(const std::string& topic, std::string_view key,
                            std::string_view value) noexcept {
  // The RD_KAFKA_V_* macros do not parenthesize their arguments.
  const void* key_data = key.empty() ? nullptr : key.data();
  const std::size_t key_size = key.size();
  void* value_data = const_cast<char*>(value.data());
  const std::size_t value_size = value.size();
  // Counted before: its delivery report may come before producev() returns here.
  impl_->accepted.fetch_add(1);
  // RD_KAFKA_MSG_F_COPY without RD_KAFKA_MSG_F_BLOCK: a full queue answers at once.
  const auto err = rd_kafka_producev(
      impl_->rk.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_KEY(key_data, key_size), RD_KAFKA_V_VALUE(value_data, value_size), RD_KAFKA_V_END);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return true;
  impl_->accepted.fetch_sub(1);
  const std::uint64_t total = impl_->dropped.fetch_add(1) + 1;
  impl_->lost(Loss::kDropped);
  try {
    impl_->drop_log.lost({{"topic", topic},
                          {"error", err_name(err)},
                          {"max_buffered", impl_->max_buffered},
                          {"buffered", impl_->waiting()}},
                         total);
  } catch (...) {  // out of memory while logging: the count above is what matters
  }
  return false;
}

bool BufferedProducer::flush(std::chrono::milliseconds timeout) {
  // rd_kafka_flush() would serve the delivery reports on this thread, beside the poller:
  // instead wait for the queue to empty while the poller serves them.
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (impl_->waiting() == 0) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::uint64_t BufferedProducer::dropped() const { return impl_->dropped.load(); }
std::uint64_t BufferedProducer::failed() const { return impl_->failed.load(); }
std::uint64_t BufferedProducer::delivered() const { return impl_->delivered.load(); }
std::size_t BufferedProducer::buffered() const {
  return static_cast<std::size_t>(impl_->waiting());
}

}  // namespace notify::kafka
