#pragma once
// The real collaborators of the Pipeline (ports.hpp), each a thin wrapper of one client of
// notify_core or auth_client, built from the configuration by main.cpp.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "auth_client/auth_client.hpp"
#include "config.hpp"
#include "notify/amqp.hpp"
#include "notify/kafka.hpp"
#include "ports.hpp"

namespace etl {

// The events topic through a group consumer. The consumer subscribes when built; rebalances
// reach the listener only from inside poll() and close().
class KafkaEventSource final : public EventSource, private notify::kafka::RebalanceListener {
 public:
  explicit KafkaEventSource(const EtlConfig& config);
  ~KafkaEventSource() override;

  void set_listener(notify::kafka::RebalanceListener* listener) override { listener_ = listener; }
  std::optional<notify::kafka::Message> poll(std::chrono::milliseconds timeout) override;
  void pause(const std::vector<notify::kafka::TopicPartition>& partitions) override;
  void resume(const std::vector<notify::kafka::TopicPartition>& partitions) override;
  std::vector<notify::kafka::TopicPartition> assignment() const override;
  void store_offset(const notify::kafka::TopicPartition& tp, std::int64_t next_offset) override;
  void commit() override;
  void commit_async() override;
  std::vector<notify::kafka::PartitionLag> lag() const override;
  void close() override;

 private:
  void on_assigned(const std::vector<notify::kafka::TopicPartition>& partitions) override;
  void on_revoked(const std::vector<notify::kafka::TopicPartition>& partitions) override;
  void on_lost(const std::vector<notify::kafka::TopicPartition>& partitions) override;

  notify::kafka::RebalanceListener* listener_ = nullptr;
  std::unique_ptr<notify::kafka::Consumer> consumer_;  // calls back into this
};

// The Auth service over libcurl (retries, timeouts, the user cache live in auth::Client).
class AuthDirectory final : public UserDirectory {
 public:
  explicit AuthDirectory(const EtlConfig& config);

  auth::Lookup get_user(std::string_view id) override { return client_.get_user(id); }
  auth::PageLookup list_users(const std::string& url) override { return client_.list_users(url); }
  auth::FetchResult fetch_json(const std::string& url, std::size_t max_bytes) override {
    return client_.fetch_json(url, max_bytes);
  }

 private:
  auth::Client client_;
};

// RabbitMQ with publisher confirms; declares the topology on every connect.
class AmqpPostingPublisher final : public PostingPublisher {
 public:
  explicit AmqpPostingPublisher(const EtlConfig& config);

  bool connected() const override { return publisher_.connected(); }
  void connect() override { publisher_.connect(); }
  void publish(notify::amqp::Message message, OnConfirmed on_confirmed) override {
    publisher_.publish(std::move(message), std::move(on_confirmed));
  }
  void pump(std::chrono::milliseconds wait) override { publisher_.pump(wait); }
  bool flush(std::chrono::milliseconds timeout) override { return publisher_.flush(timeout); }
  std::size_t outstanding() const override { return publisher_.outstanding(); }

 private:
  notify::amqp::ConfirmedPublisher publisher_;
};

// The dead-letter topic (DLQ_TOPIC); each produce waits up to 10 s for the broker.
class KafkaDeadLetterSink final : public DeadLetterSink {
 public:
  explicit KafkaDeadLetterSink(const EtlConfig& config);

  void produce(const std::optional<std::string>& key, const std::string& value,
               const notify::kafka::Headers& headers) override;

 private:
  std::string topic_;
  notify::kafka::Producer producer_;
};

// NOTIFY_STATUS_TOPIC empty: no status events.
class NoStatusEvents final : public StatusSink {
 public:
  void emit(const notify::status::Event&) override {}
};

class SteadyClock final : public MonotonicClock {
 public:
  std::chrono::steady_clock::time_point now() const override {
    return std::chrono::steady_clock::now();
  }
};

}  // namespace etl
