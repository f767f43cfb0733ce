#include "etl_process.hpp"

namespace notify::testing {

std::map<std::string, std::string> etl_env(const EtlNames& names,
                                           const std::map<std::string, std::string>& extra) {
  const Stack& s = Stack::get();
  std::map<std::string, std::string> env = {
      {"KAFKA_BOOTSTRAP_SERVERS", s.value("KAFKA_BOOTSTRAP_SERVERS")},
      {"NOTIFY_EVENTS_TOPIC", names.topic},
      {"KAFKA_GROUP_ID", names.group},
      {"NOTIFY_STATUS_TOPIC", names.status_topic},
      // A killed member leaves the group after 6 s, not 45; the mock broker holds empty fetches
      // for the full wait, so keep it short.
      {"KAFKA_CONSUMER_CONFIG",
       "session.timeout.ms=6000,heartbeat.interval.ms=500,fetch.wait.max.ms=50"},
      {"RABBITMQ_URL", s.value("RABBITMQ_URL")},
      {"RABBITMQ_EXCHANGE", names.exchange},
      {"AUTH_URL", s.value("AUTH_URL")},
      {"TEMPLATES_DIR", s.value("SOURCE_DIR") + "/templates"},
      // The development Auth service's one-click unsubscribe, with the secret it verifies:
      // mailings are bulk mail and are refused without them.
      {"UNSUBSCRIBE_SECRET", s.value("UNSUBSCRIBE_SECRET")},
      {"UNSUBSCRIBE_URL", s.value("UNSUBSCRIBE_URL")},
      {"LOG_LEVEL", "info"}};
  for (const auto& [name, value] : extra) env[name] = value;
  return env;
}

std::unique_ptr<Process> start_etl(const EtlNames& names,
                                   const std::map<std::string, std::string>& extra) {
  const Stack& s = Stack::get();
  return std::make_unique<Process>(s.value("BIN_DIR") + "/etl_notifications",
                                   std::vector<std::string>{}, etl_env(names, extra),
                                   s.value("STACK_DIR") + "/test-logs/" + names.group + ".log");
}

std::unique_ptr<amqp::Consumer> postings_consumer(const EtlNames& names, const std::string& channel,
                                                  std::uint16_t prefetch,
                                                  const std::vector<std::string>& channels) {
  amqp::Consumer::Options o;
  o.connection.url = amqp::Url::parse(Stack::get().value("RABBITMQ_URL"));
  amqp::Topology topology;
  topology.exchange = names.exchange;
  topology.channels = channels;
  o.queue = topology.queue_for(channel);
  o.declare = topology;
  o.prefetch = prefetch;
  auto consumer = std::make_unique<amqp::Consumer>(o);
  consumer->connect();
  return consumer;
}

}  // namespace notify::testing
