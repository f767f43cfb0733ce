#pragma once
// Who an event is for, and their postings: the template context fetched once per event, then
// the audience walked a bounded step at a time (up to 100 single lookups, or one listing page),
// each user's postings rendered and handed to publishing. A step that meets an Auth outage
// ends in Step::wait and leaves the job where it stood: the walk goes on at the same user or
// page, never from the start.

#include "config.hpp"
#include "job.hpp"
#include "metrics.hpp"
#include "notify/time.hpp"
#include "ports.hpp"
#include "publishing.hpp"
#include "transform.hpp"

namespace etl {

class AudienceWalk {
 public:
  AudienceWalk(const EtlConfig& config, Transformer& transformer, UserDirectory& users,
               Publishing& publishing, StatusSink& status, EtlMetrics& metrics,
               const notify::Clock& clock, const MonotonicClock& monotonic)
      : config_(config),
        transformer_(transformer),
        users_(users),
        publishing_(publishing),
        status_(status),
        metrics_(metrics),
        clock_(clock),
        monotonic_(monotonic) {}

  // Fetches the allowlisted URLs of template_context (the job's request has them replaced).
  Step resolve_context(Job& job);
  // The next step of the audience: Step::done() once every user had their postings.
  Step walk(Job& job);

 private:
  Step walk_users(Job& job);
  Step walk_pages(Job& job);
  Step add_user(Job& job, const auth::User& user);

  const EtlConfig& config_;
  Transformer& transformer_;
  UserDirectory& users_;
  Publishing& publishing_;
  StatusSink& status_;  // recipients skipped
  EtlMetrics& metrics_;
  const notify::Clock& clock_;
  const MonotonicClock& monotonic_;
};

}  // namespace etl
