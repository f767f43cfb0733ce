#pragma once
// The envelope of a posting on RabbitMQ, in one place for the ETL, the worker and
// notify_replay: which routing key, id, priority and headers a posting travels with, and the
// headers the worker keeps on it between attempts (documentation/postings.md); also the Kafka
// headers of a dead-lettered event and its replay.

#include <optional>
#include <string>
#include <vector>

#include "notify/amqp.hpp"
#include "notify/posting.hpp"

namespace notify::envelope {

// Set by the ETL, for operators reading a queue.
inline constexpr const char* kEventIdHeader = "event_id";
inline constexpr const char* kTemplateHeader = "template";
// Kept by the worker on a posting between its attempts.
inline constexpr const char* kAttemptsHeader = "x-attempts";     // failed sends so far
inline constexpr const char* kDeliverAtHeader = "x-deliver-at";  // end of the deferral (UTC)
inline constexpr const char* kDeferReasonHeader = "x-defer-reason";
inline constexpr const char* kLastErrorHeader = "x-last-error";  // the last SMTP or HTTP reply
inline constexpr const char* kDeadReasonHeader = "x-dead-reason";
// RabbitMQ's own, on what it dead-lettered or expired.
inline constexpr const char* kDeathHeader = "x-death";
inline constexpr const char* kFirstDeathReasonHeader = "x-first-death-reason";

// Kafka headers of an event in the ETL's dead-letter topic, and of the same event sent back by
// notify_replay (documentation/events.md): why it was refused, and where it first arrived.
// An event carrying the original_* headers keeps the identity of its first arrival, so its
// postings keep their posting ids.
inline constexpr const char* kErrorHeader = "error";
inline constexpr const char* kOriginalTopicHeader = "original_topic";
inline constexpr const char* kOriginalPartitionHeader = "original_partition";
inline constexpr const char* kOriginalOffsetHeader = "original_offset";
// Set by notify_replay: the dead letter a replayed event came from ("topic[partition]@offset").
inline constexpr const char* kReplayedFromHeader = "replayed_from";

// The queue suffixes of every channel, for amqp::Topology::channels.
std::vector<std::string> channel_names();

// A posting as the ETL publishes it: routing key = channel, persistent JSON body, message id =
// posting id, AMQP priority = the posting's, event id and template as headers.
amqp::Message to_message(const Posting& posting);

// The same delivery again, to `routing_key` (a delay or dead-letter queue): body, id, priority
// and headers as they came, without RabbitMQ's x-death (which only grows with each round).
amqp::Message copy_of(const amqp::Delivery& delivery, std::string routing_key);

// A dead posting sent back to its work queue as new: the worker's and RabbitMQ's bookkeeping
// headers (attempts, deferral, reasons, x-first-death-*) dropped, any other header kept.
amqp::Message replay_of(const amqp::Delivery& delivery, Channel channel);

// A header's value, "" when absent.
std::string header(const amqp::Delivery& delivery, const std::string& name);
// x-attempts: 0 when absent or not a count.
int attempts_of(const amqp::Delivery& delivery);
// x-deliver-at, when present and a time.
std::optional<TimePoint> deliver_at_of(const amqp::Delivery& delivery);

}  // namespace notify::envelope
