#include "dead_letters.hpp"

#include <algorithm>
#include <utility>

#include "notify/digest.hpp"
#include "notify/envelope.hpp"
#include "notify/json.hpp"
#include "notify/log.hpp"
#include "status_events.hpp"

namespace etl {
namespace {

// A reason travels in a Kafka header and a log line: values it quotes are shortened to this.
constexpr std::size_t kMaxReasonBytes = 1024;
// A dead letter whose original is too large to republish whole keeps this much.
constexpr std::size_t kMaxDeadLetterKeyBytes = 4096;
constexpr std::size_t kShortenedValueBytes = 64 * 1024;

}  // namespace

nlohmann::json place_fields(const notify::kafka::Message& m) {
  return {{"topic", m.topic}, {"partition", m.partition}, {"offset", m.offset}};
}

std::string_view to_string(RefusalClass refusal) {
  switch (refusal) {
    case RefusalClass::kInvalidEvent:
      return "invalid_event";
    case RefusalClass::kUnknownUser:
      return "unknown_user";
    case RefusalClass::kReceivers:
      return "receivers";
    case RefusalClass::kAudienceTooLarge:
      return "audience_too_large";
    case RefusalClass::kContextFetch:
      return "context_fetch";
    case RefusalClass::kRender:
      return "render";
    case RefusalClass::kOther:
      return "other";
  }
  return "other";
}

DeadLetter whole_copy(const notify::kafka::Message& m, const std::string& reason) {
  namespace envelope = notify::envelope;
  // A replay refused again keeps its first arrival, so that the next replay still has it.
  Origin first{m.topic, m.partition, m.offset};
  const auto named = origin_of(m.headers);
  if (const auto* origin = std::get_if<Origin>(&named)) first = *origin;
  return DeadLetter{m.key,
                    m.value,
                    {{envelope::kErrorHeader, reason},
                     {envelope::kOriginalTopicHeader, first.topic},
                     {envelope::kOriginalPartitionHeader, std::to_string(first.partition)},
                     {envelope::kOriginalOffsetHeader, std::to_string(first.offset)}}};
}

bool too_large_to_copy_whole(const notify::kafka::Message& m, std::size_t max_event_bytes) {
  return m.value.size() > max_event_bytes || (m.key && m.key->size() > kMaxDeadLetterKeyBytes);
}

DeadLetter shortened_copy(const notify::kafka::Message& m, DeadLetter whole) {
  DeadLetter copy = std::move(whole);
  copy.headers.emplace_back("original_size", std::to_string(m.value.size()));
  copy.headers.emplace_back("original_sha256", notify::sha256_hex(m.value));
  copy.headers.emplace_back("truncated", "true");
  if (copy.key && copy.key->size() > kMaxDeadLetterKeyBytes) {
    copy.headers.emplace_back("original_key_size", std::to_string(copy.key->size()));
    copy.key->resize(kMaxDeadLetterKeyBytes);
  }
  copy.value = m.value.substr(0, std::min(m.value.size(), kShortenedValueBytes));
  return copy;
}

namespace {

// What went to the dead-letter topic: the original, a shortened copy, or nothing (refused).
enum class Copy { kWhole, kShortened, kRefused };

std::string_view to_string(Copy copy) {
  switch (copy) {
    case Copy::kWhole:
      return "whole";
    case Copy::kShortened:
      return "shortened";
    case Copy::kRefused:
      return "lost";
  }
  return "lost";
}

}  // namespace

Step DeadLetters::refuse(Job& job, const std::string& full_reason, RefusalClass refusal) {
  const auto& m = job.message;
  const std::string reason = notify::shorten(full_reason, kMaxReasonBytes);
  DeadLetter whole = whole_copy(m, reason);
  bool whole_refused = too_large_to_copy_whole(m, config_.max_event_bytes);
  Copy outcome = Copy::kWhole;
  try {
    if (!whole_refused) {
      try {
        sink_.produce(whole.key, whole.value, whole.headers);
      } catch (const notify::kafka::Error& e) {
        if (!e.permanent()) throw;
        whole_refused = true;
      }
    }
    if (whole_refused) {
      outcome = Copy::kShortened;
      const DeadLetter copy = shortened_copy(m, std::move(whole));
      sink_.produce(copy.key, copy.value, copy.headers);
    }
  } catch (const notify::kafka::Error& e) {
    if (!e.permanent()) return Step::wait(std::string("dead-letter topic: ") + e.what());
    outcome = Copy::kRefused;
    auto fields = place_fields(m);
    fields["reason"] = reason;
    fields["error"] = e.what();
    fields["size"] = m.value.size();
    notify::log::error("dead letter refused by the broker; event skipped", fields);
  }
  auto fields = place_fields(m);
  fields["reason"] = reason;
  fields["dead_letter_topic"] = config_.dlq_topic;
  fields["dead_letter"] = to_string(outcome);
  if (job.event) fields["event_id"] = job.event->identity;
  notify::log::warn("event rejected", fields);
  metrics_.event(job.type, refusal == RefusalClass::kInvalidEvent ? "rejected" : "dead_lettered");
  metrics_.dead_lettered(outcome == Copy::kRefused ? "dead_letter_refused" : to_string(refusal));
  const IntakeLimits limits{config_.max_event_bytes, config_.max_recipients,
                            config_.max_json_depth};
  status_.emit(
      refused_event(m, job.event ? &*job.event : nullptr, job.type, reason, limits, clock_.now()));
  job.request.reset();
  return Step::done();
}

}  // namespace etl
