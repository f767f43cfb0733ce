#pragma once
// The status event a settled delivery reports (documentation/status.md): a pure function of the
// posting, its delivery, what was done with it and the time, so every case is a unit test.

#include <optional>
#include <string>
#include <string_view>

#include "notify/amqp.hpp"
#include "notify/posting.hpp"
#include "notify/status.hpp"
#include "outcomes.hpp"

namespace worker {

inline constexpr const char* kServiceName = "worker_notifications";

// The transport's reply to a send it accepted, as the status event carries it:
// "smtp 250: 2.0.0 Ok: queued as 4F2A" (the code once, addresses masked), "http 204".
std::string sent_reply(notify::Channel channel, const SendResult& result);

// The event for a delivery acknowledged with `action` (the original gone from the queue), or
// nothing for a later hop of an earlier deferral (DeferReason::kDeferred), which its first
// deferral reported. Without a posting (undecodable), its identity comes from the delivery's
// headers and message id. `reply`: sent_reply() of the send, for a sent posting.
std::optional<notify::status::Event> status_event(const notify::Posting* posting,
                                                  const notify::amqp::Delivery& delivery,
                                                  std::string_view channel, const Action& action,
                                                  std::string_view reply, notify::TimePoint now);

}  // namespace worker
