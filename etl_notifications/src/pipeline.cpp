#include "pipeline.hpp"

#include <algorithm>
#include <utility>

#include "notify/json.hpp"
#include "notify/log.hpp"

namespace etl {
namespace {

using namespace std::chrono_literals;
using notify::kafka::TopicPartition;

constexpr auto kFirstBackoff = 500ms;
constexpr auto kIdlePoll = 100ms;
// The longest wait for a confirm while nothing else is in hand: how late a new event may be
// noticed then. A confirm usually ends the wait much sooner.
constexpr auto kConfirmWait = 5ms;
constexpr auto kRevokeFlush = 5s;
constexpr auto kShutdownFlush = 10s;
constexpr std::size_t kMaxBacklog = 1000;  // consumed events waiting: more pauses intake
constexpr auto kLagInterval = 1s;

RawMessage raw(const notify::kafka::Message& m) {
  return RawMessage{m.topic, m.partition, m.offset, m.key, m.value, m.timestamp_ms, m.headers};
}

TransformOptions transform_options(const EtlConfig& c) {
  TransformOptions o;
  o.public_base_url = c.public_base_url;
  o.welcome_ttl = c.welcome_ttl;
  o.security_ttl = c.security_ttl;
  o.default_ttl = c.default_ttl;
  o.reminder_ttl = c.reminder_ttl;
  o.webhook_allowlist = c.webhook_url_allowlist;
  o.context_allowlist = c.context_url_allowlist;
  o.unsubscribe = {c.unsubscribe_secret, c.unsubscribe_url, c.unsubscribe_mailto,
                   c.unsubscribe_ttl};
  return o;
}

}  // namespace

Pipeline::Pipeline(const EtlConfig& config, Ports ports,
                   std::shared_ptr<prometheus::Registry> registry)
    : config_(config),
      ports_(ports),
      registry_(registry ? std::move(registry) : std::make_shared<prometheus::Registry>()),
      metrics_(*registry_),
      templates_(config.templates_dir),
      transformer_(transform_options(config), templates_),
      publishing_(ports.publisher, metrics_, ports.monotonic,
                  [this](const Ticket& ticket) { finish(ticket); }),
      audience_(config_, transformer_, ports.users, publishing_, ports.status, metrics_,
                ports.clock, ports.monotonic),
      dead_letters_(config_, ports.dead_letters, ports.status, ports.clock, metrics_) {
  ports_.events.set_listener(this);
}

Pipeline::~Pipeline() { ports_.events.set_listener(nullptr); }

bool Pipeline::ready() const { return kafka_ok_.load() && rabbitmq_ok_.load(); }

std::optional<std::string> Pipeline::not_ready_reason() const {
  if (!rabbitmq_ok_.load()) {
    std::lock_guard lock(rabbitmq_problem_mutex_);
    return rabbitmq_problem_.empty() ? "rabbitmq: not connected" : rabbitmq_problem_;
  }
  if (!kafka_ok_.load()) return "kafka: no partitions assigned yet";
  return std::nullopt;
}

void Pipeline::run(const std::atomic<bool>& stop) {
  try {
    ports_.publisher.connect();
  } catch (const notify::amqp::Error& e) {
    block(e);
  }
  while (!stop.load()) {
    rabbitmq_ok_.store(ports_.publisher.connected());
    update_lag();
    commit_if_due();
    if (!blocked_reason_.empty()) {
      const auto now = ports_.monotonic.now();
      if (now >= retry_at_) {
        try_unblock();
        continue;
      }
      // Partitions are paused: polling only serves the group (rebalances, liveness).
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(retry_at_ - now);
      if (auto m =
              ports_.events.poll(poll_wait(std::min<std::chrono::milliseconds>(wait, kIdlePoll)))) {
        take(std::move(*m));
      }
      continue;
    }
    try {
      publishing_.publish_waiting();
      ports_.publisher.pump(0ms);
    } catch (const notify::amqp::Error& e) {
      block(e);
      continue;
    }
    if (auto why = publishing_.requeue_given_back()) {
      // Kept, not lost: published again after the pause, their offsets not stored till then.
      block(*why);
      continue;
    }
    const bool in_hand = job_ || !backlog_.empty() || publishing_.waiting() > 0;
    if (in_hand) {
      if (auto m = ports_.events.poll(0ms)) take_burst(std::move(*m));
    } else if (ports_.publisher.outstanding() > 0) {
      // Only confirms are awaited: wait for the next one on the AMQP socket instead of
      // spinning between two non-blocking polls on a core the brokers need. An event that
      // reaches Kafka meanwhile waits at most kConfirmWait (less when a confirm comes first).
      if (auto m = ports_.events.poll(0ms)) {
        take_burst(std::move(*m));
      } else {
        try {
          ports_.publisher.pump(poll_wait(kConfirmWait));
        } catch (const notify::amqp::Error& e) {
          block(e);
          continue;
        }
      }
    } else if (auto m = ports_.events.poll(poll_wait(kIdlePoll))) {
      take_burst(std::move(*m));
    }
    work();
  }
  shutdown();
}

void Pipeline::take(notify::kafka::Message message) {
  tracker_.begin(TopicPartition{message.topic, message.partition}, message.offset);
  backlog_.push_back(std::move(message));
  update_pause();
}

// The event just polled and what else the consumer already holds, up to a confirm window of
// events: a burst is rendered and published together, and one read of confirms serves it all,
// instead of a poll and a read of the AMQP socket per event (system calls are most of what a
// relay costs). RabbitMQ, too, takes a burst of publishes in fewer and larger reads.
void Pipeline::take_burst(notify::kafka::Message first) {
  take(std::move(first));
  for (std::size_t taken = 1; taken < config_.confirm_window && backlog_.size() < kMaxBacklog;
       ++taken) {
    auto next = ports_.events.poll(0ms);
    if (!next) break;
    take(std::move(*next));
  }
}

// Moves events forward while the postings waiting for the publisher stay under one window.
void Pipeline::work() {
  while (blocked_reason_.empty() && publishing_.waiting() < config_.confirm_window) {
    commit_if_due();  // a long audience walk must not hold back what is already confirmed
    if (!job_) {
      if (backlog_.empty()) break;
      Job job;
      job.message = std::move(backlog_.front());
      backlog_.pop_front();
      job.ticket = std::make_shared<Ticket>(
          Ticket{TopicPartition{job.message.topic, job.message.partition}, job.message.offset});
      job_ = std::move(job);
      update_pause();
    }
    Step step = advance(*job_);
    if (step.kind == Step::Kind::kRefuse) {
      step = dead_letters_.refuse(*job_, step.reason, step.refusal);
    }
    if (step.kind == Step::Kind::kWait) {
      block(step.reason);
      return;
    }
    if (step.kind == Step::Kind::kDone) {
      seal(*job_);
      job_.reset();
    }
  }
}

// One step of the event in hand: decoded and planned once, its context fetched once, then its
// audience a step at a time.
Step Pipeline::advance(Job& job) {
  if (!job.event) {
    IntakeLimits limits{config_.max_event_bytes, config_.max_recipients, config_.max_json_depth};
    auto decoded = decode_event(raw(job.message), ports_.clock.now(), limits);
    if (auto* rejection = std::get_if<Rejection>(&decoded)) {
      return Step::refuse(rejection->reason, RefusalClass::kInvalidEvent);
    }
    job.type = std::get<Event>(decoded).type;
    auto planned = plan(std::get<Event>(decoded), transformer_.options());
    if (auto* rejection = std::get_if<Rejection>(&planned)) {
      return Step::refuse(rejection->reason, RefusalClass::kInvalidEvent);
    }
    job.event = std::move(std::get<Event>(decoded));
    job.request = std::move(std::get<Request>(planned));
  }
  if (!job.context_resolved) {
    Step step = audience_.resolve_context(job);
    if (step.kind != Step::Kind::kMore) return step;
    job.context_resolved = true;
  }
  return audience_.walk(job);
}

void Pipeline::seal(Job& job) {
  job.ticket->sealed = true;
  if (job.request) {
    // One line per event: its fields are not built at all when info lines are not written.
    if (notify::log::enabled(notify::log::Level::kInfo)) {
      auto fields = place_fields(job.message);
      fields["event_id"] = job.event->identity;
      fields["event_type"] = job.event->type;
      fields["postings"] = job.postings;
      fields["skipped"] = job.skipped;
      notify::log::info("event processed", fields);
    }
    metrics_.event(job.event->type, "processed");
  }
  if (job.ticket->unconfirmed == 0) finish(*job.ticket);
}

void Pipeline::finish(const Ticket& ticket) {
  if (auto next = tracker_.finish(ticket.tp, ticket.offset)) {
    ports_.events.store_offset(ticket.tp, *next);
    commit_pending_ = true;
    commit_if_due();
  }
}

void Pipeline::commit_if_due() {
  // Inside a revoke the consumer commits synchronously right after the listener returns.
  if (!commit_pending_ || rebalancing_) return;
  const auto now = ports_.monotonic.now();
  if (last_commit_ && now < *last_commit_ + config_.commit_interval) return;
  last_commit_ = now;
  try {
    ports_.events.commit_async();
    commit_pending_ = false;
  } catch (const notify::kafka::Error& e) {
    notify::log::warn("kafka commit not started", {{"error", e.what()}});
  }
}

std::chrono::milliseconds Pipeline::poll_wait(std::chrono::milliseconds wanted) const {
  if (!commit_pending_ || !last_commit_) return wanted;
  const auto due = *last_commit_ + config_.commit_interval - ports_.monotonic.now();
  // Rounded up: waking a fraction of a millisecond early would find the commit not yet due.
  return std::clamp(std::chrono::ceil<std::chrono::milliseconds>(due), 0ms, wanted);
}

void Pipeline::block(const std::string& reason) {
  if (blocked_reason_.empty()) {
    backoff_ = kFirstBackoff;
    notify::log::warn("intake paused", {{"reason", reason}});
  } else {
    backoff_ = std::min<std::chrono::milliseconds>(backoff_ * 2, config_.retry_max_backoff);
    notify::log::warn("still paused", {{"reason", reason}, {"retry_in_ms", backoff_.count()}});
  }
  blocked_reason_ = reason;
  retry_at_ = ports_.monotonic.now() + backoff_;
  update_pause();
}

void Pipeline::block(const notify::amqp::Error& error) {
  std::string problem = std::string("rabbitmq: ") + error.what();
  if (const auto* refused = dynamic_cast<const notify::amqp::Refused*>(&error)) {
    problem = "rabbitmq refused: " + refused->summary();
    metrics_.amqp_refused(refused->reply_code());
    // Waiting alone will not cure a permanent one (credentials, permissions, a queue declared
    // otherwise): an operator must act, so it is an error, retried all the same.
    if (refused->is_permanent()) {
      notify::log::error("rabbitmq refused", {{"reply_code", refused->reply_code()},
                                              {"reply_text", refused->reply_text()},
                                              {"error", error.what()}});
    }
  }
  {
    std::lock_guard lock(rabbitmq_problem_mutex_);
    rabbitmq_problem_ = problem;
  }
  block(problem);
}

void Pipeline::try_unblock() {
  const std::string before = blocked_reason_;
  blocked_reason_.clear();  // block() below sets it again if the trouble persists
  if (!ports_.publisher.connected()) {
    // Everything unconfirmed goes out again on connect(): the broker may have stored some of
    // it before the connection broke, so each one is a possible duplicate, counted.
    const std::size_t unconfirmed = ports_.publisher.outstanding();
    try {
      ports_.publisher.connect();
      metrics_.postings_republished(unconfirmed);
      notify::log::info("rabbitmq connected", {{"republished", unconfirmed}});
    } catch (const notify::amqp::Error& e) {
      blocked_reason_ = before;
      block(e);
      return;
    }
  }
  work();
  if (!blocked_reason_.empty()) return;
  update_pause();
  notify::log::info("intake resumed", {{"after", before}});
}

// Intake stops while downstream is in trouble or too many consumed events wait.
void Pipeline::update_pause() {
  const bool want = !blocked_reason_.empty() || backlog_.size() >= kMaxBacklog;
  if (want == paused_) return;
  const auto assigned = ports_.events.assignment();
  if (want) {
    ports_.events.pause(assigned);
  } else {
    ports_.events.resume(assigned);
  }
  paused_ = want;
}

void Pipeline::on_assigned(const std::vector<TopicPartition>& partitions) {
  kafka_ok_.store(true);
  nlohmann::json list = nlohmann::json::array();
  for (const auto& tp : partitions) list.push_back(tp.topic + "/" + std::to_string(tp.partition));
  notify::log::info("partitions assigned", {{"partitions", list}});
  if (paused_) ports_.events.pause(partitions);
}

void Pipeline::on_revoked(const std::vector<TopicPartition>& partitions) {
  // Confirm what is in flight so that its offsets are stored before the commit that follows.
  if (ports_.publisher.connected()) {
    rebalancing_ = true;
    try {
      ports_.publisher.flush(kRevokeFlush);
    } catch (const notify::amqp::Error& e) {
      notify::log::warn("flush on revoke failed", {{"error", e.what()}});
    }
    rebalancing_ = false;
  }
  drop(partitions);
  notify::log::info("partitions revoked", {{"count", partitions.size()}});
}

// No flush, unlike a revoke: an offset stored now could not be committed any more (the group
// has moved on without this member), and waiting for confirms would only delay the rejoin. What
// was published for these partitions stays published; what was not is dropped; the new owner,
// maybe this instance again, starts over from the last commit.
void Pipeline::on_lost(const std::vector<TopicPartition>& partitions) {
  drop(partitions);
  notify::log::warn("partitions lost; their events in flight are left to the next owner",
                    {{"count", partitions.size()}});
}

void Pipeline::drop(const std::vector<TopicPartition>& partitions) {
  auto gone = [&](const TopicPartition& tp) {
    return std::find(partitions.begin(), partitions.end(), tp) != partitions.end();
  };
  std::erase_if(backlog_, [&](const auto& m) { return gone({m.topic, m.partition}); });
  publishing_.drop(gone);
  if (job_ && gone(job_->ticket->tp)) job_.reset();  // the new owner starts it again
  tracker_.forget(partitions);
}

// About once a second: the lag comes from watermarks the event source already has.
void Pipeline::update_lag() {
  const auto now = ports_.monotonic.now();
  if (now < next_lag_update_) return;
  next_lag_update_ = now + kLagInterval;
  try {
    metrics_.consumer_lag(ports_.events.lag());
  } catch (const notify::kafka::Error& e) {
    notify::log::debug("consumer lag unknown", {{"error", e.what()}});
  }
}

void Pipeline::shutdown() {
  notify::log::info("stopping", {{"in_flight", tracker_.in_flight()}});
  if (blocked_reason_.empty()) {
    try {
      publishing_.publish_waiting();
    } catch (const notify::amqp::Error& e) {
      block(e);
    }
    try {
      if (ports_.publisher.connected()) ports_.publisher.flush(kShutdownFlush);
    } catch (const notify::amqp::Error& e) {
      notify::log::warn("flush on shutdown failed", {{"error", e.what()}});
    }
  }
  kafka_ok_.store(false);
  ports_.events.close();  // commits the stored offsets: only past confirmed events
  notify::log::info("stopped");
}

}  // namespace etl
