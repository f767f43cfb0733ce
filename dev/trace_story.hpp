#pragma once
// The pure part of notify_trace: what the status topic and the ETL's dead-letter topic say
// about an event, a user or a posting, told as a story a person reads, one line per happening
// in time order (documentation/operations.md, "make trace"). Decoding, selecting and formatting;
// the reading of the topics is dev/trace.cpp's.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <date/tz.h>
#include <nlohmann/json.hpp>

#include "notify/kafka.hpp"
#include "notify/posting.hpp"

namespace notify::trace {

// One happening: a status event as the status topic carries it, or an event the ETL refused
// as its dead-letter topic keeps it.
struct Entry {
  enum class Source { kStatus, kDeadLetter };
  Source source = Source::kStatus;
  TimePoint time{};
  std::string status;  // kStatus: sent, deferred, ...; kDeadLetter: empty
  std::string service;
  std::string event_id;
  std::string event_type;
  std::string posting_id;
  std::string user_id;
  std::vector<std::string> user_ids;  // kDeadLetter of a notification_requested: its recipients
  std::string channel;
  std::string template_name;
  std::string reason;  // kDeadLetter: its error header
  std::optional<TimePoint> until;
  std::string zone;
  std::string reply;
  std::optional<long long> attempts;
  std::string last_error;
  std::string dead_letter;  // kDeadLetter: where it is kept, "notify_events.dlq[0]@12"
  bool shortened = false;   // kDeadLetter: a shortened copy of a too large original
  nlohmann::json json;      // what --json prints
};

// A status event (the contract of documentation/status.md): nothing when the value is not
// one (not a JSON object, no status, time or event_id, a known field of the wrong type).
// Unknown fields are ignored, and kept in json.
std::optional<Entry> decode_status(std::string_view value);

// A dead letter of the ETL (etl_notifications/src/dead_letters.cpp): the refused event as it
// came, the reason in the `error` header, its first arrival in the original_* headers. The
// value need not be JSON (that may be why it was refused). Nothing when it has no identity
// (neither an event_id in the value nor the original_* headers) or no timestamp.
std::optional<Entry> decode_dead_letter(const kafka::Message& message);

struct Selection {
  enum class By { kEvent, kUser, kPosting };
  By by = By::kEvent;
  std::string id;
};
std::string_view to_string(Selection::By by);  // "event", "user", "posting"

bool selects(const Selection& selection, const Entry& entry);

// What happened, as a person says it: "deferred until 2026-12-02 08:00:00 Europe/Berlin (quiet
// hours)", "sent, smtp 250: 2.0.0 Ok". Times without a zone of their own are shown in `zone`
// (nullptr: UTC).
std::string describe(const Entry& entry, const date::time_zone* zone);

// "2026-12-01 12:00:03" in `zone` (nullptr: UTC).
std::string format_time(TimePoint time, const date::time_zone* zone);

// One line of the story: time, what happened, then the channel/template and the ids the
// selection does not already name.
std::string story_line(const Entry& entry, const Selection& selection, const date::time_zone* zone);

// One JSON line: the status event as it was read; a dead letter as an object of the same
// field names with "dead_letter": {"topic", "partition", "offset"}.
std::string json_line(const Entry& entry);

// The entries a selection finds in what is read, in time order (ties keep the reading order),
// at most `limit` of them (the first read), with counts of what was read and skipped.
class Story {
 public:
  Story(Selection selection, std::size_t limit) : selection_(std::move(selection)), limit_(limit) {}

  void add_status(const kafka::Message& message);
  void add_dead_letter(const kafka::Message& message);

  const Selection& selection() const { return selection_; }
  // In time order.
  std::vector<Entry> entries() const;
  std::size_t matched() const { return matched_; }  // also those past the limit
  std::size_t status_read() const { return status_read_; }
  std::size_t status_undecodable() const { return status_undecodable_; }
  std::size_t dead_letters_read() const { return dead_letters_read_; }
  std::size_t dead_letters_undecodable() const { return dead_letters_undecodable_; }

 private:
  void keep(Entry entry);

  Selection selection_;
  std::size_t limit_;
  std::vector<Entry> entries_;
  std::size_t matched_ = 0;
  std::size_t status_read_ = 0;
  std::size_t status_undecodable_ = 0;
  std::size_t dead_letters_read_ = 0;
  std::size_t dead_letters_undecodable_ = 0;
};

}  // namespace notify::trace
