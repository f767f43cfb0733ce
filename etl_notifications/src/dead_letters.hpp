#pragma once
// Refused events go to the dead-letter topic with their reason, and their offset moves on. An
// original too large to go whole goes as a shortened copy that can still be found (size,
// SHA-256, topic/partition/offset); one the broker refuses even so is logged and counted, and
// its offset moves on too: no single event may stall the partition. The topic not taking it
// for a passing reason is transient: the caller pauses and tries again.

#include <cstddef>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "config.hpp"
#include "job.hpp"
#include "metrics.hpp"
#include "notify/kafka.hpp"
#include "notify/time.hpp"
#include "ports.hpp"

namespace etl {

// Where an event was read (topic, partition, offset), as fields of a log line.
nlohmann::json place_fields(const notify::kafka::Message& m);

// What goes to the dead-letter topic.
struct DeadLetter {
  std::optional<std::string> key;
  std::string value;
  notify::kafka::Headers headers;
};

// The original with the reason (already shortened) and where it first arrived: its own place,
// or the first arrival its original_* headers name when it is a replay.
DeadLetter whole_copy(const notify::kafka::Message& original, const std::string& reason);
// Whether the original is too large to go whole (its value beyond MAX_EVENT_BYTES, its key
// beyond 4 KiB).
bool too_large_to_copy_whole(const notify::kafka::Message& original, std::size_t max_event_bytes);
// The whole copy cut to a key of 4 KiB and a value of 64 KiB, with the original's size and
// SHA-256 and truncated=true.
DeadLetter shortened_copy(const notify::kafka::Message& original, DeadLetter whole);

class DeadLetters {
 public:
  DeadLetters(const EtlConfig& config, DeadLetterSink& sink, StatusSink& status,
              const notify::Clock& clock, EtlMetrics& metrics)
      : config_(config), sink_(sink), status_(status), clock_(clock), metrics_(metrics) {}

  // Writes the job's event to the dead-letter topic, logs "event rejected", counts it and
  // reports it refused (a status event) once it is done with it.
  // Step::done() when the offset may move on (also when the broker refused even the shortened
  // copy), Step::wait() when the topic is unavailable for now (nothing written, the job kept).
  Step refuse(Job& job, const std::string& reason, RefusalClass refusal);

 private:
  const EtlConfig& config_;
  DeadLetterSink& sink_;
  StatusSink& status_;
  const notify::Clock& clock_;
  EtlMetrics& metrics_;
};

}  // namespace etl
