#include "pipeline.hpp"

#include <algorithm>

#include "notify/log.hpp"
#include "notify/posting.hpp"

namespace etl {
namespace {

using namespace std::chrono_literals;
using notify::kafka::TopicPartition;

constexpr auto kFirstBackoff = 500ms;
constexpr auto kIdlePoll = 100ms;
constexpr auto kRevokeFlush = 5s;
constexpr auto kShutdownFlush = 10s;

nlohmann::json where(const notify::kafka::Message& m) {
  return {{"topic", m.topic}, {"partition", m.partition}, {"offset", m.offset}};
}

RawMessage raw(const notify::kafka::Message& m) {
  return RawMessage{m.topic, m.partition, m.offset, m.key, m.value, m.timestamp_ms};
}

notify::amqp::Message to_amqp(const notify::Posting& p) {
  notify::amqp::Message m;
  m.routing_key = p.channel;
  m.body = notify::encode(p);
  m.message_id = p.posting_id;
  m.priority = static_cast<std::uint8_t>(p.priority);
  m.headers = {{"event_id", p.event_id}, {"template", p.template_name}};
  return m;
}

notify::amqp::ConfirmedPublisher::Options publisher_options(const EtlConfig& c) {
  notify::amqp::ConfirmedPublisher::Options o;
  o.connection.url = notify::amqp::Url::parse(c.rabbitmq_url);
  o.connection.connection_name = "etl_notifications";
  o.exchange = c.exchange;
  o.window = c.confirm_window;
  notify::amqp::Topology topology;
  topology.exchange = c.exchange;
  o.declare = topology;
  return o;
}

auth::ClientOptions auth_options(const EtlConfig& c) {
  auth::ClientOptions o;
  o.base_url = c.auth_url;
  o.token = c.auth_token;
  o.request_timeout = c.auth_timeout;
  o.max_attempts = c.auth_max_attempts;
  return o;
}

}  // namespace

Pipeline::Pipeline(const EtlConfig& config)
    : config_(config),
      templates_(config.templates_dir),
      transformer_(TransformOptions{config.public_base_url, config.welcome_ttl}, templates_),
      auth_(auth_options(config)),
      publisher_(publisher_options(config)) {
  notify::kafka::Consumer::Options o;
  o.bootstrap_servers = config.kafka_bootstrap_servers;
  o.group_id = config.group_id;
  o.topics = {config.events_topic};
  o.auto_offset_reset = config.auto_offset_reset;
  o.extra = config.consumer_properties;
  consumer_ = std::make_unique<notify::kafka::Consumer>(o, this);
}

Pipeline::~Pipeline() = default;

void Pipeline::run(const std::atomic<bool>& stop) {
  try {
    publisher_.connect();
  } catch (const notify::amqp::Error& e) {
    block(std::string("rabbitmq: ") + e.what());
  }
  while (!stop.load()) {
    if (!blocked_reason_.empty()) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= retry_at_) {
        try_unblock();
        continue;
      }
      // Partitions are paused: polling only serves the group (rebalances, liveness).
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(retry_at_ - now);
      if (auto m = consumer_->poll(std::min<std::chrono::milliseconds>(wait, kIdlePoll))) {
        take(std::move(*m));
      }
      continue;
    }
    try {
      publish_pending();
      if (!blocked_reason_.empty()) continue;
      publisher_.pump(0ms);
    } catch (const notify::amqp::Error& e) {
      block(std::string("rabbitmq: ") + e.what());
      continue;
    }
    if (!returned_.empty()) {
      for (auto& r : returned_) pending_.push_back(std::move(r));
      returned_.clear();
      block("a posting was returned unroutable: is the queue bound?");
      continue;
    }
    // Take a new event only when everything before it is in the publisher's hands.
    if (pending_.empty() && backlog_.empty()) {
      const auto timeout = publisher_.outstanding() > 0 ? 1ms : kIdlePoll;
      if (auto m = consumer_->poll(timeout)) take(std::move(*m));
    }
  }
  shutdown();
}

void Pipeline::take(notify::kafka::Message message) {
  tracker_.begin(TopicPartition{message.topic, message.partition}, message.offset);
  backlog_.push_back(std::move(message));
  if (blocked_reason_.empty()) drain_backlog();
}

void Pipeline::drain_backlog() {
  while (!backlog_.empty()) {
    if (prepare(backlog_.front()) == Step::kTransient) return;
    backlog_.pop_front();
  }
}

Pipeline::Step Pipeline::prepare(const notify::kafka::Message& message) {
  auto decoded = decode_event(raw(message), clock_.now());
  if (auto* rejection = std::get_if<Rejection>(&decoded)) {
    reject(message, rejection->reason);
    return Step::kDone;
  }
  const Event& event = std::get<Event>(decoded);

  const auth::Lookup lookup = auth_.get_user(event.user_id);
  if (lookup.status == auth::LookupStatus::kUnknownUser) {
    reject(message, "unknown user " + event.user_id);
    return Step::kDone;
  }
  if (lookup.status != auth::LookupStatus::kFound) {
    block("auth: " + lookup.error);
    return Step::kTransient;
  }

  auto result = transformer_.postings(event, *lookup.user, clock_.now());
  if (auto* rejection = std::get_if<Rejection>(&result)) {
    reject(message, rejection->reason);
    return Step::kDone;
  }
  auto& postings = std::get<std::vector<notify::Posting>>(result);
  const TopicPartition tp{message.topic, message.partition};
  if (postings.empty()) {
    finish(tp, message.offset);
    return Step::kDone;
  }
  auto ticket = std::make_shared<Ticket>(Ticket{tp, message.offset, postings.size()});
  for (const auto& p : postings) {
    notify::log::info("posting rendered", {{"event_id", p.event_id},
                                           {"posting_id", p.posting_id},
                                           {"template", p.template_name},
                                           {"channel", p.channel}});
    pending_.push_back(Outgoing{to_amqp(p), ticket});
  }
  return Step::kDone;
}

void Pipeline::reject(const notify::kafka::Message& message, const std::string& reason) {
  auto fields = where(message);
  fields["reason"] = reason;
  notify::log::warn("event rejected", fields);
  finish(TopicPartition{message.topic, message.partition}, message.offset);
}

void Pipeline::finish(const TopicPartition& tp, std::int64_t offset) {
  if (auto next = tracker_.finish(tp, offset)) consumer_->store_offset(tp, *next);
}

void Pipeline::publish_pending() {
  while (!pending_.empty()) {
    Outgoing& out = pending_.front();
    auto ticket = out.ticket;
    Outgoing copy{out.message, ticket};  // kept in case the broker returns it unroutable
    try {
      publisher_.publish(std::move(out.message),
                         [this, ticket, copy = std::move(copy)](auto result) mutable {
                           confirmed(ticket, std::move(copy), result);
                         });
    } catch (const notify::amqp::Error& e) {
      pending_.pop_front();  // the publisher keeps it and sends it again after connect()
      block(std::string("rabbitmq: ") + e.what());
      return;
    }
    pending_.pop_front();
  }
}

void Pipeline::confirmed(const std::shared_ptr<Ticket>& ticket, Outgoing returned_copy,
                         notify::amqp::ConfirmedPublisher::Result result) {
  if (result == notify::amqp::ConfirmedPublisher::Result::kReturned) {
    notify::log::error("posting returned unroutable",
                       {{"posting_id", returned_copy.message.message_id},
                        {"routing_key", returned_copy.message.routing_key}});
    returned_.push_back(std::move(returned_copy));
    return;
  }
  if (--ticket->unconfirmed == 0) finish(ticket->tp, ticket->offset);
}

void Pipeline::block(const std::string& reason) {
  if (blocked_reason_.empty()) {
    consumer_->pause(consumer_->assignment());
    backoff_ = kFirstBackoff;
    notify::log::warn("intake paused", {{"reason", reason}});
  } else {
    backoff_ = std::min<std::chrono::milliseconds>(backoff_ * 2, config_.retry_max_backoff);
    notify::log::warn("still paused", {{"reason", reason}, {"retry_in_ms", backoff_.count()}});
  }
  blocked_reason_ = reason;
  retry_at_ = std::chrono::steady_clock::now() + backoff_;
}

void Pipeline::try_unblock() {
  const std::string before = blocked_reason_;
  blocked_reason_.clear();  // block() below sets it again if the trouble persists
  if (!publisher_.connected()) {
    try {
      publisher_.connect();
      notify::log::info("rabbitmq connected", {{"republished", publisher_.outstanding()}});
    } catch (const notify::amqp::Error& e) {
      blocked_reason_ = before;
      block(std::string("rabbitmq: ") + e.what());
      return;
    }
  }
  drain_backlog();
  if (!blocked_reason_.empty()) return;
  consumer_->resume(consumer_->assignment());
  notify::log::info("intake resumed", {{"after", before}});
}

void Pipeline::on_assigned(const std::vector<TopicPartition>& partitions) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& tp : partitions) list.push_back(tp.topic + "/" + std::to_string(tp.partition));
  notify::log::info("partitions assigned", {{"partitions", list}});
  if (!blocked_reason_.empty()) consumer_->pause(partitions);
}

void Pipeline::on_revoked(const std::vector<TopicPartition>& partitions) {
  // Confirm what is in flight so that its offsets are stored before the commit that follows.
  if (publisher_.connected()) {
    try {
      publisher_.flush(kRevokeFlush);
    } catch (const notify::amqp::Error& e) {
      notify::log::warn("flush on revoke failed", {{"error", e.what()}});
    }
  }
  auto revoked = [&](const notify::kafka::Message& m) {
    return std::find(partitions.begin(), partitions.end(),
                     TopicPartition{m.topic, m.partition}) != partitions.end();
  };
  std::erase_if(backlog_, revoked);
  std::erase_if(pending_, [&](const Outgoing& o) {
    return std::find(partitions.begin(), partitions.end(), o.ticket->tp) != partitions.end();
  });
  tracker_.forget(partitions);
  notify::log::info("partitions revoked", {{"count", partitions.size()}});
}

void Pipeline::shutdown() {
  notify::log::info("stopping", {{"in_flight", tracker_.in_flight()}});
  if (blocked_reason_.empty()) {
    try {
      publish_pending();
      if (publisher_.connected()) publisher_.flush(kShutdownFlush);
    } catch (const notify::amqp::Error& e) {
      notify::log::warn("flush on shutdown failed", {{"error", e.what()}});
    }
  }
  consumer_->close();  // commits the stored offsets: only past confirmed events
  notify::log::info("stopped");
}

}  // namespace etl
