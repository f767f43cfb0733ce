#include "pipeline.hpp"

#include <algorithm>
#include <utility>

#include "auth_client/url.hpp"
#include "notify/digest.hpp"
#include "notify/envelope.hpp"
#include "notify/json.hpp"
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
constexpr std::size_t kUsersPerStep = 100;  // single lookups between two publish rounds
constexpr std::size_t kMaxBacklog = 1000;   // consumed events waiting: more pauses intake
constexpr auto kLagInterval = 1s;
// Nacks of one posting before the publisher gives it back and intake pauses.
constexpr int kMaxNacks = 5;
// A reason travels in a Kafka header and a log line: values it quotes are shortened to this.
constexpr std::size_t kMaxReasonBytes = 1024;
// A dead letter whose original is too large to republish whole (larger than MAX_EVENT_BYTES, a
// key beyond this, or refused by the broker as too large) keeps this much of the value.
constexpr std::size_t kMaxDeadLetterKeyBytes = 4096;
constexpr std::size_t kShortenedValueBytes = 64 * 1024;

nlohmann::json where(const notify::kafka::Message& m) {
  return {{"topic", m.topic}, {"partition", m.partition}, {"offset", m.offset}};
}

RawMessage raw(const notify::kafka::Message& m) {
  return RawMessage{m.topic, m.partition, m.offset, m.key, m.value, m.timestamp_ms};
}

notify::amqp::ConfirmedPublisher::Options publisher_options(const EtlConfig& c) {
  notify::amqp::ConfirmedPublisher::Options o;
  o.connection.url = notify::amqp::Url::parse(c.rabbitmq_url);
  o.connection.connection_name = "etl_notifications";
  o.exchange = c.exchange;
  o.window = c.confirm_window;
  o.max_nacks = kMaxNacks;
  notify::amqp::Topology topology;
  topology.exchange = c.exchange;
  topology.channels = notify::envelope::channel_names();
  o.declare = topology;
  return o;
}

auth::ClientOptions auth_options(const EtlConfig& c) {
  auth::ClientOptions o;
  o.base_url = c.auth_url;
  o.token = c.auth_token;
  o.request_timeout = c.auth_timeout;
  o.max_attempts = c.auth_max_attempts;
  o.cache_ttl = c.auth_cache_ttl;
  o.json_limits.max_depth = c.max_json_depth;
  return o;
}

std::string_view error_kind(auth::LookupStatus status) {
  switch (status) {
    case auth::LookupStatus::kFound:
      return "";
    case auth::LookupStatus::kUnknownUser:
      return "unknown_user";
    case auth::LookupStatus::kUnavailable:
      return "unavailable";
  }
  return "unavailable";
}

std::string_view error_kind(auth::FetchStatus status) {
  switch (status) {
    case auth::FetchStatus::kOk:
      return "";
    case auth::FetchStatus::kTooLarge:
      return "too_large";
    case auth::FetchStatus::kBadResponse:
      return "bad_response";
    case auth::FetchStatus::kUnavailable:
      return "unavailable";
  }
  return "unavailable";
}

std::chrono::steady_clock::duration since(std::chrono::steady_clock::time_point start) {
  return std::chrono::steady_clock::now() - start;
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
  return o;
}

}  // namespace

Pipeline::Pipeline(const EtlConfig& config, std::shared_ptr<prometheus::Registry> registry)
    : config_(config),
      registry_(registry ? std::move(registry) : std::make_shared<prometheus::Registry>()),
      metrics_(*registry_),
      templates_(config.templates_dir),
      transformer_(transform_options(config), templates_),
      auth_(auth_options(config)),
      publisher_(publisher_options(config)),
      dlq_(std::make_unique<notify::kafka::Producer>(config.kafka_bootstrap_servers)) {
  notify::kafka::Consumer::Options o;
  o.bootstrap_servers = config.kafka_bootstrap_servers;
  o.group_id = config.group_id;
  o.topics = {config.events_topic};
  o.auto_offset_reset = config.auto_offset_reset;
  o.extra = config.consumer_properties;
  consumer_ = std::make_unique<notify::kafka::Consumer>(o, this);
}

Pipeline::~Pipeline() = default;

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
    publisher_.connect();
  } catch (const notify::amqp::Error& e) {
    block(e);
  }
  while (!stop.load()) {
    rabbitmq_ok_.store(publisher_.connected());
    update_lag();
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
      block(e);
      continue;
    }
    if (!returned_.empty()) {
      // Kept, not lost: published again after the pause, their offsets not committed till then.
      for (auto& r : returned_) pending_.push_back(std::move(r));
      returned_.clear();
      block(std::exchange(returned_reason_, {}));
      continue;
    }
    const bool busy =
        job_ || !backlog_.empty() || !pending_.empty() || publisher_.outstanding() > 0;
    if (auto m = consumer_->poll(busy ? 0ms : kIdlePoll)) take(std::move(*m));
    work();
  }
  shutdown();
}

void Pipeline::take(notify::kafka::Message message) {
  tracker_.begin(TopicPartition{message.topic, message.partition}, message.offset);
  backlog_.push_back(std::move(message));
  update_pause();
}

// Moves events forward while the postings waiting for the publisher stay under one window.
void Pipeline::work() {
  while (blocked_reason_.empty() && pending_.size() < config_.confirm_window) {
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
    const Step step = advance(*job_);
    if (step == Step::kTransient) return;
    if (step == Step::kDone) {
      seal(*job_);
      job_.reset();
    }
  }
}

Pipeline::Step Pipeline::advance(Job& job) {
  if (!job.event) {
    IntakeLimits limits{config_.max_event_bytes, config_.max_recipients, config_.max_json_depth};
    auto decoded = decode_event(raw(job.message), clock_.now(), limits);
    if (auto* rejection = std::get_if<Rejection>(&decoded)) {
      return dead_letter(job, rejection->reason, "invalid_event");
    }
    job.type = std::get<Event>(decoded).type;
    auto planned = plan(std::get<Event>(decoded), transformer_.options());
    if (auto* rejection = std::get_if<Rejection>(&planned)) {
      return dead_letter(job, rejection->reason, "invalid_event");
    }
    job.event = std::move(std::get<Event>(decoded));
    job.request = std::move(std::get<Request>(planned));
  }
  if (!job.context_resolved) {
    const Step step = resolve_context(job);
    if (step != Step::kMore) return step;
    job.context_resolved = true;
  }
  return job.request->audience.kind == Audience::Kind::kUsers ? walk_users(job) : walk_pages(job);
}

// Fetches the allowlisted URLs of template_context once per event.
Pipeline::Step Pipeline::resolve_context(Job& job) {
  auto keys = context_urls_to_fetch(job.request->context, transformer_.options());
  if (auto* rejection = std::get_if<Rejection>(&keys)) {
    return dead_letter(job, rejection->reason, "invalid_event");
  }
  for (const std::string& key : std::get<std::vector<std::string>>(keys)) {
    const std::string url = job.request->context[key].get<std::string>();
    const auto started = std::chrono::steady_clock::now();
    const auth::FetchResult fetched = auth_.fetch_json(url, config_.max_context_fetch_bytes);
    metrics_.auth_call("fetch_json", since(started), error_kind(fetched.status));
    switch (fetched.status) {
      case auth::FetchStatus::kOk:
        job.request->context[key] = fetched.body;
        break;
      case auth::FetchStatus::kUnavailable:
        block("context fetch: " + fetched.error);
        return Step::kTransient;
      case auth::FetchStatus::kTooLarge:
        return dead_letter(
            job,
            "template_context." + key + ": answer larger than " +
                "MAX_CONTEXT_FETCH_BYTES=" + std::to_string(config_.max_context_fetch_bytes),
            "context_fetch");
      default:
        return dead_letter(job, "template_context." + key + ": " + fetched.error, "context_fetch");
    }
  }
  return Step::kMore;
}

Pipeline::Step Pipeline::add_user(Job& job, const auth::User& user) {
  auto result = transformer_.postings(*job.event, *job.request, user, clock_.now());
  if (auto* rejection = std::get_if<Rejection>(&result)) {
    return dead_letter(job, rejection->reason, "render");
  }
  if (auto* skip = std::get_if<Skip>(&result)) {
    ++job.skipped;
    notify::log::debug(
        "recipient skipped",
        {{"event_id", job.event->identity}, {"user_id", user.id}, {"reason", skip->reason}});
    return Step::kMore;
  }
  for (auto& p : std::get<std::vector<notify::Posting>>(result)) {
    notify::log::debug("posting rendered", {{"event_id", p.event_id},
                                            {"posting_id", p.posting_id},
                                            {"template", p.template_name},
                                            {"channel", notify::to_string(p.channel)}});
    ++job.ticket->unconfirmed;
    ++job.postings;
    pending_.push_back(Outgoing{notify::envelope::to_message(p), job.ticket});
  }
  return Step::kMore;
}

Pipeline::Step Pipeline::walk_users(Job& job) {
  const auto& ids = job.request->audience.user_ids;
  const std::size_t end = std::min(ids.size(), job.next_user + kUsersPerStep);
  while (job.next_user < end) {
    const std::string& id = ids[job.next_user];
    const auto started = std::chrono::steady_clock::now();
    const auth::Lookup lookup = auth_.get_user(id);
    if (!lookup.cached) metrics_.auth_call("get_user", since(started), error_kind(lookup.status));
    if (lookup.status == auth::LookupStatus::kUnavailable) {
      block("auth: " + lookup.error);
      return Step::kTransient;
    }
    if (lookup.status == auth::LookupStatus::kUnknownUser) {
      if (job.request->single_user) {
        // Auth's own 404, 400 or 422 needs no words; an id or a record refused here says why.
        const bool said_by_auth =
            lookup.http_status == 404 || lookup.http_status == 400 || lookup.http_status == 422;
        const bool why = !said_by_auth && !lookup.error.empty();
        return dead_letter(job, "unknown user " + id + (why ? ": " + lookup.error : ""),
                           "unknown_user");
      }
      ++job.skipped;
      notify::log::info("unknown user skipped",
                        {{"event_id", job.event->identity}, {"user_id", id}});
    } else if (const Step step = add_user(job, *lookup.user); step != Step::kMore) {
      return step;  // refused: dead-lettered, or the dead-letter topic is unavailable
    }
    ++job.next_user;
  }
  return job.next_user == ids.size() ? Step::kDone : Step::kMore;
}

Pipeline::Step Pipeline::walk_pages(Job& job) {
  const std::string& base = job.request->audience.users_url;
  if (job.next_page == 0) {
    if (!auth::url_allowed(base, {config_.auth_url})) {
      return dead_letter(
          job,
          "receivers must be a users URL of the Auth service (" + config_.auth_url + "): " + base,
          "invalid_event");
    }
    const auto first = auth::query_param(base, "page_number");
    try {
      job.next_page = first ? std::max(1, std::stoi(*first)) : 1;
    } catch (const std::exception&) {
      return dead_letter(job, "receivers: page_number is not a number", "invalid_event");
    }
  }
  const auto url = auth::with_query_param(base, "page_number", std::to_string(job.next_page));
  if (!url) return dead_letter(job, "receivers is not a URL: " + base, "invalid_event");
  const auto started = std::chrono::steady_clock::now();
  const auth::PageLookup page = auth_.list_users(*url);
  metrics_.auth_call("list_users", since(started), error_kind(page.status));
  // The Auth service refusing the filters (400, 422) or answering with a page that is not one
  // will not change by waiting: refuse the event rather than stall the partition on it.
  const bool refused_url = page.http_status == 400 || page.http_status == 422 ||
                           (page.http_status >= 200 && page.http_status < 300);
  if (page.status == auth::LookupStatus::kUnavailable && refused_url) {
    return dead_letter(job, "receivers: " + page.error, "receivers");
  }
  if (page.status == auth::LookupStatus::kUnavailable) {
    block("auth: " + page.error);
    return Step::kTransient;
  }
  if (page.status != auth::LookupStatus::kFound) {
    return dead_letter(job, "receivers: " + page.error, "receivers");
  }
  if (page.page->total > static_cast<long long>(config_.max_recipients)) {
    return dead_letter(
        job,
        "audience of " + std::to_string(page.page->total) +
            " users is larger than MAX_RECIPIENTS=" + std::to_string(config_.max_recipients),
        "audience_too_large");
  }
  for (const auth::User& user : page.page->items) {
    if (const Step step = add_user(job, user); step != Step::kMore) return step;
  }
  job.skipped += page.page->skipped;
  const long long seen = static_cast<long long>(job.next_page) * page.page->page_size;
  if (page.page->items.empty() || page.page->page_size <= 0 || seen >= page.page->total) {
    return Step::kDone;
  }
  ++job.next_page;
  return Step::kMore;
}

// A permanent refusal: the original goes to the dead-letter topic with the reason, and the
// offset moves on. If Kafka does not take it for a passing reason, that is transient: pause and
// try again. An original too large to go whole goes as a shortened copy that can still be found
// (size, SHA-256, topic/partition/offset); one the broker refuses even so is logged and counted,
// and its offset moves on too: no single event may stall the partition.
Pipeline::Step Pipeline::dead_letter(Job& job, const std::string& full_reason,
                                     std::string_view reason_class) {
  const auto& m = job.message;
  const std::string reason = notify::shorten(full_reason, kMaxReasonBytes);
  notify::kafka::Headers headers = {{"error", reason},
                                    {"original_topic", m.topic},
                                    {"original_partition", std::to_string(m.partition)},
                                    {"original_offset", std::to_string(m.offset)}};
  bool whole_refused =
      m.value.size() > config_.max_event_bytes || (m.key && m.key->size() > kMaxDeadLetterKeyBytes);
  std::string outcome = "whole";
  try {
    if (!whole_refused) {
      try {
        dlq_->produce(config_.dlq_topic, m.key, m.value, 10s, headers);
      } catch (const notify::kafka::Error& e) {
        if (!e.permanent()) throw;
        whole_refused = true;
      }
    }
    if (whole_refused) {
      outcome = "shortened";
      headers.emplace_back("original_size", std::to_string(m.value.size()));
      headers.emplace_back("original_sha256", notify::sha256_hex(m.value));
      headers.emplace_back("truncated", "true");
      std::optional<std::string> key = m.key;
      if (key && key->size() > kMaxDeadLetterKeyBytes) {
        headers.emplace_back("original_key_size", std::to_string(key->size()));
        key->resize(kMaxDeadLetterKeyBytes);
      }
      dlq_->produce(config_.dlq_topic, key,
                    m.value.substr(0, std::min(m.value.size(), kShortenedValueBytes)), 10s,
                    headers);
    }
  } catch (const notify::kafka::Error& e) {
    if (!e.permanent()) {
      block(std::string("dead-letter topic: ") + e.what());
      return Step::kTransient;
    }
    outcome = "lost";
    auto fields = where(m);
    fields["reason"] = reason;
    fields["error"] = e.what();
    fields["size"] = m.value.size();
    notify::log::error("dead letter refused by the broker; event skipped", fields);
  }
  auto fields = where(m);
  fields["reason"] = reason;
  fields["dead_letter_topic"] = config_.dlq_topic;
  fields["dead_letter"] = outcome;
  if (job.event) fields["event_id"] = job.event->identity;
  notify::log::warn("event rejected", fields);
  metrics_.event(job.type, reason_class == "invalid_event" ? "rejected" : "dead_lettered");
  metrics_.dead_lettered(outcome == "lost" ? "dead_letter_refused" : reason_class);
  job.request.reset();
  return Step::kDone;
}

void Pipeline::seal(Job& job) {
  job.ticket->sealed = true;
  if (job.request) {
    auto fields = where(job.message);
    fields["event_id"] = job.event->identity;
    fields["event_type"] = job.event->type;
    fields["postings"] = job.postings;
    fields["skipped"] = job.skipped;
    notify::log::info("event processed", fields);
    metrics_.event(job.event->type, "processed");
  }
  if (job.ticket->unconfirmed == 0) finish(job.ticket->tp, job.ticket->offset);
}

void Pipeline::finish(const TopicPartition& tp, std::int64_t offset) {
  if (auto next = tracker_.finish(tp, offset)) consumer_->store_offset(tp, *next);
}

void Pipeline::publish_pending() {
  while (!pending_.empty()) {
    Outgoing& out = pending_.front();
    auto ticket = out.ticket;
    // Kept in case the broker returns it unroutable.
    Outgoing copy{out.message, ticket, std::chrono::steady_clock::now()};
    try {
      publisher_.publish(
          std::move(out.message),
          [this, ticket, copy = std::move(copy)](auto result) { confirmed(ticket, copy, result); });
    } catch (const notify::amqp::Error& e) {
      pending_.pop_front();  // the publisher keeps it and sends it again after connect()
      block(e);
      return;
    }
    pending_.pop_front();
  }
}

void Pipeline::confirmed(const std::shared_ptr<Ticket>& ticket, const Outgoing& copy,
                         notify::amqp::ConfirmedPublisher::Result result) {
  if (result == notify::amqp::ConfirmedPublisher::Result::kAcked) {
    const auto t = copy.message.headers.find(notify::envelope::kTemplateHeader);
    metrics_.posting_confirmed(copy.message.routing_key,
                               t == copy.message.headers.end() ? "" : t->second,
                               since(copy.published_at));
  }
  if (result == notify::amqp::ConfirmedPublisher::Result::kReturned) {
    notify::log::error("posting returned unroutable", {{"posting_id", copy.message.message_id},
                                                       {"routing_key", copy.message.routing_key}});
    if (returned_.empty()) {
      returned_reason_ = "a posting was returned unroutable: is the queue bound?";
    }
    returned_.push_back(copy);
    return;
  }
  if (result == notify::amqp::ConfirmedPublisher::Result::kNacked) {
    // The publisher gave up after its bounded republishing; the posting waits for the pause.
    const std::string reason = "rabbitmq nacked posting " + copy.message.message_id + " " +
                               std::to_string(kMaxNacks) +
                               " times: is the queue full or the disk alarm on?";
    notify::log::error("posting nacked", {{"posting_id", copy.message.message_id},
                                          {"routing_key", copy.message.routing_key},
                                          {"nacks", kMaxNacks}});
    if (returned_.empty()) returned_reason_ = reason;
    returned_.push_back(copy);
    return;
  }
  if (--ticket->unconfirmed == 0 && ticket->sealed) finish(ticket->tp, ticket->offset);
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
  retry_at_ = std::chrono::steady_clock::now() + backoff_;
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
  if (!publisher_.connected()) {
    try {
      publisher_.connect();
      notify::log::info("rabbitmq connected", {{"republished", publisher_.outstanding()}});
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
  const auto assigned = consumer_->assignment();
  if (want) {
    consumer_->pause(assigned);
  } else {
    consumer_->resume(assigned);
  }
  paused_ = want;
}

void Pipeline::on_assigned(const std::vector<TopicPartition>& partitions) {
  kafka_ok_.store(true);
  nlohmann::json list = nlohmann::json::array();
  for (const auto& tp : partitions) list.push_back(tp.topic + "/" + std::to_string(tp.partition));
  notify::log::info("partitions assigned", {{"partitions", list}});
  if (paused_) consumer_->pause(partitions);
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
  auto revoked = [&](const TopicPartition& tp) {
    return std::find(partitions.begin(), partitions.end(), tp) != partitions.end();
  };
  std::erase_if(backlog_, [&](const auto& m) { return revoked({m.topic, m.partition}); });
  std::erase_if(pending_, [&](const Outgoing& o) { return revoked(o.ticket->tp); });
  if (job_ && revoked(job_->ticket->tp)) job_.reset();  // the new owner starts it again
  tracker_.forget(partitions);
  notify::log::info("partitions revoked", {{"count", partitions.size()}});
}

// About once a second: the lag comes from watermarks librdkafka already has, no round trip.
void Pipeline::update_lag() {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_lag_update_) return;
  next_lag_update_ = now + kLagInterval;
  try {
    metrics_.consumer_lag(consumer_->lag());
  } catch (const notify::kafka::Error& e) {
    notify::log::debug("consumer lag unknown", {{"error", e.what()}});
  }
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
  kafka_ok_.store(false);
  consumer_->close();  // commits the stored offsets: only past confirmed events
  notify::log::info("stopped");
}

}  // namespace etl
