#pragma once
// The status events of the ETL (documentation/status.md): a recipient skipped (opted out,
// inactive, no address) and an event refused (sent to the dead-letter topic). Pure functions of
// what the pipeline knows and the time, so each case is a unit test. Both are rare next to the
// postings made, so building them costs the hot path nothing.

#include <cstddef>
#include <string>
#include <vector>

#include "intake.hpp"
#include "notify/kafka.hpp"
#include "notify/status.hpp"
#include "transform.hpp"

namespace etl {

inline constexpr const char* kServiceName = "etl_notifications";

// One `skipped` event per channel of the request, each with the posting id it would have had
// (notify::make_posting_id), keyed by the user.
std::vector<notify::status::Event> skipped_events(const Event& event, const Request& request,
                                                  const std::string& user_id,
                                                  const std::string& reason, notify::TimePoint now);

// The `refused` event of an event sent to the dead-letter topic, keyed by its identity: the
// decoded event's when there is one; else the identity decode_event gives (a non-empty event_id
// of the value, else the first arrival its original_* headers name, else where it was read:
// topic/partition/offset), read here from what can be read of the value. The event type when
// known (`type`: the decoded type of an event refused while planned).
notify::status::Event refused_event(const notify::kafka::Message& message, const Event* event,
                                    const std::string& type, const std::string& reason,
                                    const IntakeLimits& limits, notify::TimePoint now);

}  // namespace etl
