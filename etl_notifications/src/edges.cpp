#include "edges.hpp"

#include <utility>

#include "notify/envelope.hpp"

namespace etl {
namespace {

constexpr std::chrono::seconds kDeadLetterTimeout{10};

notify::kafka::Consumer::Options consumer_options(const EtlConfig& c) {
  notify::kafka::Consumer::Options o;
  o.bootstrap_servers = c.kafka_bootstrap_servers;
  o.group_id = c.group_id;
  o.topics = {c.events_topic};
  o.auto_offset_reset = c.auto_offset_reset;
  o.extra = c.consumer_properties;
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

notify::amqp::ConfirmedPublisher::Options publisher_options(const EtlConfig& c) {
  notify::amqp::ConfirmedPublisher::Options o;
  o.connection.url = notify::amqp::Url::parse(c.rabbitmq_url);
  o.connection.connection_name = "etl_notifications";
  o.exchange = c.exchange;
  o.window = c.confirm_window;
  o.max_nacks = PostingPublisher::kMaxNacks;
  notify::amqp::Topology topology;
  topology.exchange = c.exchange;
  topology.channels = notify::envelope::channel_names();
  o.declare = topology;
  return o;
}

}  // namespace

KafkaEventSource::KafkaEventSource(const EtlConfig& config)
    : consumer_(std::make_unique<notify::kafka::Consumer>(
          consumer_options(config), static_cast<notify::kafka::RebalanceListener*>(this))) {}

KafkaEventSource::~KafkaEventSource() = default;

std::optional<notify::kafka::Message> KafkaEventSource::poll(std::chrono::milliseconds timeout) {
  return consumer_->poll(timeout);
}

void KafkaEventSource::pause(const std::vector<notify::kafka::TopicPartition>& partitions) {
  consumer_->pause(partitions);
}

void KafkaEventSource::resume(const std::vector<notify::kafka::TopicPartition>& partitions) {
  consumer_->resume(partitions);
}

std::vector<notify::kafka::TopicPartition> KafkaEventSource::assignment() const {
  return consumer_->assignment();
}

void KafkaEventSource::store_offset(const notify::kafka::TopicPartition& tp,
                                    std::int64_t next_offset) {
  consumer_->store_offset(tp, next_offset);
}

void KafkaEventSource::commit() { consumer_->commit(); }

void KafkaEventSource::commit_async() { consumer_->commit_async(); }

std::vector<notify::kafka::PartitionLag> KafkaEventSource::lag() const { return consumer_->lag(); }

void KafkaEventSource::close() { consumer_->close(); }

void KafkaEventSource::on_assigned(const std::vector<notify::kafka::TopicPartition>& partitions) {
  if (listener_) listener_->on_assigned(partitions);
}

void KafkaEventSource::on_revoked(const std::vector<notify::kafka::TopicPartition>& partitions) {
  if (listener_) listener_->on_revoked(partitions);
}

void KafkaEventSource::on_lost(const std::vector<notify::kafka::TopicPartition>& partitions) {
  if (listener_) listener_->on_lost(partitions);
}

AuthDirectory::AuthDirectory(const EtlConfig& config) : client_(auth_options(config)) {}

AmqpPostingPublisher::AmqpPostingPublisher(const EtlConfig& config)
    : publisher_(publisher_options(config)) {}

KafkaDeadLetterSink::KafkaDeadLetterSink(const EtlConfig& config)
    : topic_(config.dlq_topic), producer_(config.kafka_bootstrap_servers) {}

void KafkaDeadLetterSink::produce(const std::optional<std::string>& key, const std::string& value,
                                  const notify::kafka::Headers& headers) {
  producer_.produce(topic_, key, value, kDeadLetterTimeout, headers);
}

}  // namespace etl
