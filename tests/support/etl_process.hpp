#pragma once
// etl_notifications as the integration tests run it: names of a test's own, the environment on
// this run's stack, and a consumer of the postings it publishes.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "notify/amqp.hpp"
#include "stack.hpp"

namespace notify::testing {

// The Kafka topics and group and the AMQP exchange of one test, so tests never see each other's
// data.
struct EtlNames {
  std::string topic = unique_name("notify_events");
  std::string group = unique_name("etl");
  std::string exchange = unique_name("notifications");
  std::string status_topic = unique_name("notify_status");  // NOTIFY_STATUS_TOPIC
};

// The environment of etl_notifications for these names: the stack's brokers and Auth service,
// the repository's templates, a consumer that leaves the group quickly when killed, info logs.
// `extra` adds variables or replaces these.
std::map<std::string, std::string> etl_env(const EtlNames& names,
                                           const std::map<std::string, std::string>& extra = {});

// etl_notifications started with etl_env(names, extra); its output goes to
// STACK_DIR/test-logs/<group>.log.
std::unique_ptr<Process> start_etl(const EtlNames& names,
                                   const std::map<std::string, std::string>& extra = {});

// A connected consumer of the queue of `channel` on the names' exchange; declares the exchange
// and a queue per channel of `channels` first.
std::unique_ptr<amqp::Consumer> postings_consumer(const EtlNames& names, const std::string& channel,
                                                  std::uint16_t prefetch,
                                                  const std::vector<std::string>& channels = {
                                                      "email"});

}  // namespace notify::testing
