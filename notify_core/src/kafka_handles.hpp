#pragma once
// What every librdkafka client of notify::kafka shares (private to notify_core): the RAII
// holders of librdkafka's handles, the translation of its error codes into notify::kafka::Error,
// configuration with librdkafka's logging routed to notify::log, and messages as notify's own.

#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <optional>
#include <string>

#include "notify/c_handle.hpp"
#include "notify/kafka.hpp"

namespace notify::kafka::impl {

using HandlePtr = CHandle<rd_kafka_t, rd_kafka_destroy>;
using ConfPtr = CHandle<rd_kafka_conf_t, rd_kafka_conf_destroy>;
using ListPtr = CHandle<rd_kafka_topic_partition_list_t, rd_kafka_topic_partition_list_destroy>;
using MessagePtr = CHandle<rd_kafka_message_t, rd_kafka_message_destroy>;
using HeadersPtr = CHandle<rd_kafka_headers_t, rd_kafka_headers_destroy>;
using ErrorPtr = CHandle<rd_kafka_error_t, rd_kafka_error_destroy>;
using TopicPtr = CHandle<rd_kafka_topic_t, rd_kafka_topic_destroy>;
using MetadataPtr = CHandle<const rd_kafka_metadata_t, rd_kafka_metadata_destroy>;

std::string err_name(rd_kafka_resp_err_t err);

// Throws Error naming what failed and librdkafka's error; permanent() when no retry can help.
[[noreturn]] void fail(const std::string& what, rd_kafka_resp_err_t err);

// Broker connection trouble (a broker down, all brokers down, a lost connection): logged at
// warn, as a RabbitMQ outage is, once per error librdkafka reports (it reconnects on its own
// and reports an error repeated unchanged only once).
bool is_transport_noise(rd_kafka_resp_err_t err);

// Sets one librdkafka property; throws Error naming it when unknown or bad.
void set(rd_kafka_conf_t* conf, const std::string& name, const std::string& value);

// A configuration with the bootstrap servers and librdkafka's logging sent to notify::log.
ConfPtr base_conf(const std::string& bootstrap_servers);

// A client of this type; takes the configuration. Throws Error when librdkafka refuses it.
HandlePtr new_handle(rd_kafka_type_t type, ConfPtr conf);

std::optional<std::int64_t> timestamp_of(const rd_kafka_message_t* msg);

Message to_message(const rd_kafka_message_t* msg);

}  // namespace notify::kafka::impl
