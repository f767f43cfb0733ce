#pragma once
// The event in progress and what one step of it ends in. A job remembers where it stands
// (decoded, context fetched, next user, next listing page), so it can stop at any step (Auth
// unavailable, the dead-letter topic down) and go on later without repeating what was done.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "intake.hpp"
#include "notify/kafka.hpp"
#include "transform.hpp"

namespace etl {

// An event's offset is finished once it is sealed (all postings made) and every posting is
// confirmed. Shared by the job and its postings awaiting their confirm.
struct Ticket {
  notify::kafka::TopicPartition tp;
  std::int64_t offset = 0;
  std::size_t unconfirmed = 0;
  bool sealed = false;
};

struct Job {
  notify::kafka::Message message;
  std::shared_ptr<Ticket> ticket;
  std::string type;  // event_type once decoded, for the metrics
  std::optional<Event> event;
  std::optional<Request> request;  // reset when the event is refused
  bool context_resolved = false;
  std::size_t next_user = 0;  // Audience::kUsers
  int next_page = 0;          // Audience::kUsersUrl; 0: from the URL's page_number
  long long postings = 0;
  long long skipped = 0;
};

// Why an event goes to the dead-letter topic, as the metrics count it.
enum class RefusalClass {
  kInvalidEvent,
  kUnknownUser,
  kReceivers,
  kAudienceTooLarge,
  kContextFetch,
  kRender,
  kOther,
};

// The label of notify_etl_dead_lettered_total{reason_class}.
std::string_view to_string(RefusalClass refusal);

// What one step of a job ends in.
struct Step {
  enum class Kind {
    kMore,    // go on with the next step
    kDone,    // every posting is made
    kWait,    // transient trouble: pause intake, keep the job, try again later
    kRefuse,  // the event cannot be carried out: dead-letter it
  };
  Kind kind = Kind::kMore;
  std::string reason;                           // kWait, kRefuse
  RefusalClass refusal = RefusalClass::kOther;  // kRefuse

  static Step more() { return {}; }
  static Step done() { return {Kind::kDone, {}, {}}; }
  static Step wait(std::string why) { return {Kind::kWait, std::move(why), {}}; }
  static Step refuse(std::string why, RefusalClass refusal) {
    return {Kind::kRefuse, std::move(why), refusal};
  }
};

}  // namespace etl
