#include "audience.hpp"

#include <algorithm>
#include <string>

#include "auth_client/url.hpp"
#include "notify/envelope.hpp"
#include "notify/log.hpp"
#include "notify/posting.hpp"
#include "status_events.hpp"

namespace etl {
namespace {

constexpr std::size_t kUsersPerStep = 100;  // single lookups between two publish rounds

std::string_view error_kind(auth::LookupStatus status) {
  switch (status) {
    case auth::LookupStatus::kFound:
      return "";
    case auth::LookupStatus::kUnknownUser:
      return "unknown_user";
    case auth::LookupStatus::kUnavailable:
      return "unavailable";
  }
  return "unavailable";
}

std::string_view error_kind(auth::FetchStatus status) {
  switch (status) {
    case auth::FetchStatus::kOk:
      return "";
    case auth::FetchStatus::kTooLarge:
      return "too_large";
    case auth::FetchStatus::kBadResponse:
      return "bad_response";
    case auth::FetchStatus::kUnavailable:
      return "unavailable";
  }
  return "unavailable";
}

}  // namespace

Step AudienceWalk::resolve_context(Job& job) {
  auto keys = context_urls_to_fetch(job.request->context, transformer_.options());
  if (auto* rejection = std::get_if<Rejection>(&keys)) {
    return Step::refuse(rejection->reason, RefusalClass::kInvalidEvent);
  }
  for (const std::string& key : std::get<std::vector<std::string>>(keys)) {
    const std::string url = job.request->context[key].get<std::string>();
    const auto started = monotonic_.now();
    const auth::FetchResult fetched = users_.fetch_json(url, config_.max_context_fetch_bytes);
    metrics_.auth_call("fetch_json", monotonic_.now() - started, error_kind(fetched.status));
    switch (fetched.status) {
      case auth::FetchStatus::kOk:
        job.request->context[key] = fetched.body;
        break;
      case auth::FetchStatus::kUnavailable:
        return Step::wait("context fetch: " + fetched.error);
      case auth::FetchStatus::kTooLarge:
        return Step::refuse(
            "template_context." + key + ": answer larger than " +
                "MAX_CONTEXT_FETCH_BYTES=" + std::to_string(config_.max_context_fetch_bytes),
            RefusalClass::kContextFetch);
      default:
        return Step::refuse("template_context." + key + ": " + fetched.error,
                            RefusalClass::kContextFetch);
    }
  }
  return Step::more();
}

Step AudienceWalk::walk(Job& job) {
  return job.request->audience.kind == Audience::Kind::kUsers ? walk_users(job) : walk_pages(job);
}

Step AudienceWalk::add_user(Job& job, const auth::User& user) {
  auto result = transformer_.postings(*job.event, *job.request, user, clock_.now());
  if (auto* rejection = std::get_if<Rejection>(&result)) {
    return Step::refuse(rejection->reason, RefusalClass::kRender);
  }
  if (auto* skip = std::get_if<Skip>(&result)) {
    ++job.skipped;
    notify::log::debug(
        "recipient skipped",
        {{"event_id", job.event->identity}, {"user_id", user.id}, {"reason", skip->reason}});
    for (const auto& e :
         skipped_events(*job.event, *job.request, user.id, skip->reason, clock_.now())) {
      status_.emit(e);
    }
    return Step::more();
  }
  // The fields are built only when they are written, not for every posting at info level.
  const bool debug = notify::log::enabled(notify::log::Level::kDebug);
  for (auto& p : std::get<std::vector<notify::Posting>>(result)) {
    if (debug) {
      notify::log::debug("posting rendered", {{"event_id", p.event_id},
                                              {"posting_id", p.posting_id},
                                              {"template", p.template_name},
                                              {"channel", notify::to_string(p.channel)}});
    }
    ++job.postings;
    publishing_.add(notify::envelope::to_message(p), job.ticket);
  }
  return Step::more();
}

Step AudienceWalk::walk_users(Job& job) {
  const auto& ids = job.request->audience.user_ids;
  const std::size_t end = std::min(ids.size(), job.next_user + kUsersPerStep);
  while (job.next_user < end) {
    const std::string& id = ids[job.next_user];
    const auto started = monotonic_.now();
    const auth::Lookup lookup = users_.get_user(id);
    if (!lookup.cached) {
      metrics_.auth_call("get_user", monotonic_.now() - started, error_kind(lookup.status));
    }
    if (lookup.status == auth::LookupStatus::kUnavailable) {
      return Step::wait("auth: " + lookup.error);
    }
    if (lookup.status == auth::LookupStatus::kUnknownUser) {
      if (job.request->single_user) {
        // Auth's own 404, 400 or 422 needs no words; an id or a record refused here says why.
        const bool said_by_auth =
            lookup.http_status == 404 || lookup.http_status == 400 || lookup.http_status == 422;
        const bool why = !said_by_auth && !lookup.error.empty();
        return Step::refuse("unknown user " + id + (why ? ": " + lookup.error : ""),
                            RefusalClass::kUnknownUser);
      }
      ++job.skipped;
      notify::log::info("unknown user skipped",
                        {{"event_id", job.event->identity}, {"user_id", id}});
    } else if (Step step = add_user(job, *lookup.user); step.kind != Step::Kind::kMore) {
      return step;  // refused
    }
    ++job.next_user;
  }
  return job.next_user == ids.size() ? Step::done() : Step::more();
}

Step AudienceWalk::walk_pages(Job& job) {
  const std::string& base = job.request->audience.users_url;
  if (job.next_page == 0) {
    if (!auth::url_allowed(base, {config_.auth_url})) {
      return Step::refuse(
          "receivers must be a users URL of the Auth service (" + config_.auth_url + "): " + base,
          RefusalClass::kInvalidEvent);
    }
    const auto first = auth::query_param(base, "page_number");
    try {
      job.next_page = first ? std::max(1, std::stoi(*first)) : 1;
    } catch (const std::exception&) {
      return Step::refuse("receivers: page_number is not a number", RefusalClass::kInvalidEvent);
    }
  }
  const auto url = auth::with_query_param(base, "page_number", std::to_string(job.next_page));
  if (!url) return Step::refuse("receivers is not a URL: " + base, RefusalClass::kInvalidEvent);
  const auto started = monotonic_.now();
  const auth::PageLookup page = users_.list_users(*url);
  metrics_.auth_call("list_users", monotonic_.now() - started, error_kind(page.status));
  // The Auth service refusing the filters (400, 422) or answering with a page that is not one
  // will not change by waiting: refuse the event rather than stall the partition on it.
  const bool refused_url = page.http_status == 400 || page.http_status == 422 ||
                           (page.http_status >= 200 && page.http_status < 300);
  if (page.status == auth::LookupStatus::kUnavailable && refused_url) {
    return Step::refuse("receivers: " + page.error, RefusalClass::kReceivers);
  }
  if (page.status == auth::LookupStatus::kUnavailable) return Step::wait("auth: " + page.error);
  if (page.status != auth::LookupStatus::kFound) {
    return Step::refuse("receivers: " + page.error, RefusalClass::kReceivers);
  }
  if (page.page->total > static_cast<long long>(config_.max_recipients)) {
    return Step::refuse(
        "audience of " + std::to_string(page.page->total) +
            " users is larger than MAX_RECIPIENTS=" + std::to_string(config_.max_recipients),
        RefusalClass::kAudienceTooLarge);
  }
  for (const auth::User& user : page.page->items) {
    if (Step step = add_user(job, user); step.kind != Step::Kind::kMore) return step;
  }
  job.skipped += page.page->skipped;
  const long long seen = static_cast<long long>(job.next_page) * page.page->page_size;
  if (page.page->items.empty() || page.page->page_size <= 0 || seen >= page.page->total) {
    return Step::done();
  }
  ++job.next_page;
  return Step::more();
}

}  // namespace etl
