#pragma once
// The ETL's loop: events in, postings out, offsets stored only past events whose postings
// RabbitMQ confirmed, and committed within KAFKA_COMMIT_INTERVAL of that. One thread drives
// everything, so the poll loop is never starved: slow or failing downstream work pauses the
// partitions and keeps polling (the group membership and rebalances are served), then resumes where
// it stopped. A large audience is walked page by page, with a bounded number of postings in memory.
//
// The loop holds no broker client: it talks to the ports (ports.hpp) it is given, so its worst
// cases are unit tests. main.cpp hands it the real ones (edges.hpp).

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "audience.hpp"
#include "config.hpp"
#include "dead_letters.hpp"
#include "job.hpp"
#include "metrics.hpp"
#include "offset_tracker.hpp"
#include "ports.hpp"
#include "publishing.hpp"
#include "render.hpp"
#include "transform.hpp"

namespace etl {

class Pipeline final : public notify::kafka::RebalanceListener {
 public:
  // Registers itself as the event source's rebalance listener. Metrics go to `registry` (a
  // fresh one when null).
  Pipeline(const EtlConfig& config, Ports ports,
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
  void on_lost(const std::vector<notify::kafka::TopicPartition>& partitions) override;

 private:
  void take(notify::kafka::Message message);
  void take_burst(notify::kafka::Message first);
  void work();
  Step advance(Job& job);
  void seal(Job& job);
  void finish(const Ticket& ticket);
  // Starts a commit when offsets were stored since the last one and the last one is at least
  // KAFKA_COMMIT_INTERVAL ago: stores in between wait for the next, so a busy partition costs
  // one commit per interval and a quiet one a commit right after its confirm.
  void commit_if_due();
  // How long a poll may wait without making the pending commit late.
  std::chrono::milliseconds poll_wait(std::chrono::milliseconds wanted) const;
  // Forgets everything in hand for the partitions (they are no longer ours).
  void drop(const std::vector<notify::kafka::TopicPartition>& partitions);
  void block(const std::string& reason);
  // RabbitMQ failed: pause and retry. A refusal (bad credentials, missing permission or queue)
  // is logged as an error with its reply code, counted, and shown on /readyz.
  void block(const notify::amqp::Error& error);
  void try_unblock();
  void update_pause();
  void shutdown();
  void update_lag();

  EtlConfig config_;
  Ports ports_;
  std::shared_ptr<prometheus::Registry> registry_;
  EtlMetrics metrics_;
  std::atomic<bool> kafka_ok_{false};     // an assignment was seen (the group is joined)
  std::atomic<bool> rabbitmq_ok_{false};  // the publisher is connected
  mutable std::mutex rabbitmq_problem_mutex_;
  std::string rabbitmq_problem_;  // the last connection failure or refusal, for /readyz
  std::chrono::steady_clock::time_point next_lag_update_{};
  bool commit_pending_ = false;  // offsets stored since the last commit
  bool rebalancing_ = false;     // inside on_revoked
  std::optional<std::chrono::steady_clock::time_point> last_commit_;
  TemplateStore templates_;
  Transformer transformer_;
  OffsetTracker tracker_;
  Publishing publishing_;
  AudienceWalk audience_;
  DeadLetters dead_letters_;
  std::deque<notify::kafka::Message> backlog_;  // consumed, not yet started
  std::optional<Job> job_;                      // the event in progress
  std::string blocked_reason_;                  // empty when running
  bool paused_ = false;
  std::chrono::steady_clock::time_point retry_at_{};
  std::chrono::milliseconds backoff_{0};
};

}  // namespace etl
