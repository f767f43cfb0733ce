#pragma once
// The ETL's loop: Kafka in, postings out, offsets stored only past events whose postings
// RabbitMQ confirmed. One thread drives everything, so the poll loop is never starved: slow
// or failing downstream work pauses the partitions and keeps polling (the group membership
// and rebalances are served), then resumes where it stopped. A large audience is walked page by
// page, with a bounded number of postings in memory.

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth_client/auth_client.hpp"
#include "config.hpp"
#include "metrics.hpp"
#include "notify/amqp.hpp"
#include "notify/kafka.hpp"
#include "notify/time.hpp"
#include "offset_tracker.hpp"
#include "render.hpp"
#include "transform.hpp"

namespace etl {

class Pipeline final : public notify::kafka::RebalanceListener {
 public:
  // Metrics go to `registry` (a fresh one when null).
  explicit Pipeline(const EtlConfig& config,
                    std::shared_ptr<prometheus::Registry> registry = nullptr);
  ~Pipeline() override;

  // Connected to both brokers: a Kafka assignment was seen and the publisher is connected.
  // Safe from any thread (the metrics server's /readyz).
  bool ready() const;
  // Why it is not ready ("rabbitmq refused: 403 ACCESS_REFUSED - ..."), or nothing when it is.
  // Safe from any thread.
  std::optional<std::string> not_ready_reason() const;

  // Runs until stop is set, then publishes what is pending (bounded), commits and leaves.
  void run(const std::atomic<bool>& stop);

  void on_assigned(const std::vector<notify::kafka::TopicPartition>& partitions) override;
  void on_revoked(const std::vector<notify::kafka::TopicPartition>& partitions) override;

 private:
  // An event's offset is finished once it is sealed (all postings made) and every posting
  // is confirmed.
  struct Ticket {
    notify::kafka::TopicPartition tp;
    std::int64_t offset = 0;
    std::size_t unconfirmed = 0;
    bool sealed = false;
  };
  struct Outgoing {
    notify::amqp::Message message;
    std::shared_ptr<Ticket> ticket;
    std::chrono::steady_clock::time_point published_at{};  // handed to the publisher
  };
  // The event in progress.
  struct Job {
    notify::kafka::Message message;
    std::shared_ptr<Ticket> ticket;
    std::string type;  // event_type once decoded, for the metrics
    std::optional<Event> event;
    std::optional<Request> request;
    bool context_resolved = false;
    std::size_t next_user = 0;  // Audience::kUsers
    int next_page = 0;          // Audience::kUsersUrl; 0: from the URL's page_number
    long long postings = 0;
    long long skipped = 0;
  };
  enum class Step { kMore, kDone, kTransient };

  void take(notify::kafka::Message message);
  void work();
  Step advance(Job& job);
  Step resolve_context(Job& job);
  Step add_user(Job& job, const auth::User& user);
  Step walk_users(Job& job);
  Step walk_pages(Job& job);
  // reason_class: the bounded label of the dead-letter metrics (EtlMetrics::dead_lettered).
  Step dead_letter(Job& job, const std::string& reason, std::string_view reason_class = "other");
  void seal(Job& job);
  void finish(const notify::kafka::TopicPartition& tp, std::int64_t offset);
  void publish_pending();
  void confirmed(const std::shared_ptr<Ticket>& ticket, const Outgoing& copy,
                 notify::amqp::ConfirmedPublisher::Result result);
  void block(const std::string& reason);
  // RabbitMQ failed: pause and retry. A refusal (bad credentials, missing permission or queue)
  // is logged as an error with its reply code, counted, and shown on /readyz.
  void block(const notify::amqp::Error& error);
  void try_unblock();
  void update_pause();
  void shutdown();
  void update_lag();

  EtlConfig config_;
  std::shared_ptr<prometheus::Registry> registry_;
  EtlMetrics metrics_;
  std::atomic<bool> kafka_ok_{false};     // an assignment was seen (the group is joined)
  std::atomic<bool> rabbitmq_ok_{false};  // the publisher is connected
  mutable std::mutex rabbitmq_problem_mutex_;
  std::string rabbitmq_problem_;  // the last connection failure or refusal, for /readyz
  std::chrono::steady_clock::time_point next_lag_update_{};
  notify::SystemClock clock_;
  TemplateStore templates_;
  Transformer transformer_;
  auth::Client auth_;
  notify::amqp::ConfirmedPublisher publisher_;
  OffsetTracker tracker_;
  std::deque<notify::kafka::Message> backlog_;  // consumed, not yet started
  std::optional<Job> job_;                      // the event in progress
  std::deque<Outgoing> pending_;                // rendered, not yet handed to the publisher
  std::vector<Outgoing> returned_;  // unroutable or nacked too often: published after a pause
  std::string returned_reason_;     // why the first of returned_ came back
  std::string blocked_reason_;      // empty when running
  bool paused_ = false;
  std::chrono::steady_clock::time_point retry_at_{};
  std::chrono::milliseconds backoff_{0};
  std::unique_ptr<notify::kafka::Producer> dlq_;       // the dead-letter topic
  std::unique_ptr<notify::kafka::Consumer> consumer_;  // last: calls back into this
};

}  // namespace etl
