// The Client's decisions: which answers are a user, an unknown user, a page, JSON, or trouble, and
// which trouble is worth another attempt.

#include "decisions.hpp"

#include <algorithm>
#include <string>

namespace auth {

std::string_view to_string(FetchStatus status) {
  switch (status) {
    case FetchStatus::kOk:
      return "ok";
    case FetchStatus::kTooLarge:
      return "too_large";
    case FetchStatus::kBadResponse:
      return "bad_response";
    case FetchStatus::kUnavailable:
      return "unavailable";
  }
  return "unknown";
}

std::string_view to_string(LookupStatus status) {
  switch (status) {
    case LookupStatus::kFound:
      return "found";
    case LookupStatus::kUnknownUser:
      return "unknown_user";
    case LookupStatus::kUnavailable:
      return "unavailable";
  }
  return "unknown";
}

namespace impl {
namespace {

using notify::http::Failure;
using notify::http::Response;

std::string request_error(const Response& r) { return "request failed: " + r.error; }

std::string too_large_error(std::size_t limit) {
  return "response larger than " + std::to_string(limit) + " bytes";
}

// The non-200, non-"unknown" answers of the Auth service, the same for users and pages.
template <class Result>
Decision<Result> unavailable(Result out) {
  const long status = out.http_status;
  out.status = LookupStatus::kUnavailable;
  if (status == 401 || status == 403) {
    out.error = "HTTP " + std::to_string(status) +
                ": the Auth service rejected our credentials (check the token)";
    return {std::move(out), false};
  }
  out.error = "HTTP " + std::to_string(status);
  return {std::move(out), status >= 500 || status == 429};
}

}  // namespace

Decision<Lookup> decide_user(const Response& r, const notify::JsonLimits& limits) {
  Lookup out;
  out.http_status = r.status;
  if (!r.arrived()) {
    out.error = r.too_large() ? too_large_error(kMaxUserBytes) : request_error(r);
    return {out, r.failure == Failure::kTransient};
  }
  if (r.status == 200) {
    try {
      out.user = parse_user(r.body, limits);
      out.status = LookupStatus::kFound;
    } catch (const InvalidUser& e) {
      // A 200 with a record we refuse will not change by asking again: for this user the
      // answer is as good as "unknown", so one bad record cannot stall the events behind it.
      out.status = LookupStatus::kUnknownUser;
      out.error = std::string("invalid user in response: ") + e.what();
    }
    return {out, false};
  }
  if (r.status == 404 || r.status == 400 || r.status == 422) {
    out.status = LookupStatus::kUnknownUser;
    out.error = "HTTP " + std::to_string(r.status);
    return {out, false};
  }
  return unavailable(std::move(out));
}

Decision<PageLookup> decide_page(const Response& r, const notify::JsonLimits& limits) {
  PageLookup out;
  out.http_status = r.status;
  if (!r.arrived()) {
    out.error = r.too_large() ? too_large_error(kMaxPageBytes) : request_error(r);
    return {out, r.failure == Failure::kTransient};
  }
  if (r.status == 200) {
    try {
      out.page = parse_page(r.body, limits);
      out.status = LookupStatus::kFound;
    } catch (const InvalidPage& e) {
      out.error = e.what();
    }
    return {out, false};
  }
  if (r.status == 404) {
    out.status = LookupStatus::kUnknownUser;
    out.error = "HTTP 404";
    return {out, false};
  }
  if (r.status == 400 || r.status == 422) {
    out.error = "HTTP " + std::to_string(r.status) + ": the Auth service rejected the query";
    return {out, false};
  }
  return unavailable(std::move(out));
}

Decision<FetchResult> decide_fetch(const Response& r, std::size_t max_bytes,
                                   const notify::JsonLimits& limits) {
  FetchResult out;
  out.http_status = r.status;
  if (!r.arrived()) {
    if (r.too_large()) {
      out.status = FetchStatus::kTooLarge;
      out.error = too_large_error(max_bytes);
      return {out, false};
    }
    out.error = request_error(r);
    out.status =
        r.failure == Failure::kBadUrl ? FetchStatus::kBadResponse : FetchStatus::kUnavailable;
    return {out, r.failure == Failure::kTransient};
  }
  const std::string http = "HTTP " + std::to_string(r.status);
  if (r.status >= 200 && r.status < 300) {
    try {
      out.body = notify::parse_json(r.body, limits);
      out.status = FetchStatus::kOk;
    } catch (const notify::JsonError& e) {
      out.status = FetchStatus::kBadResponse;
      out.error = http + ": body is " + e.what();
    }
    return {out, false};
  }
  if (r.status >= 500 || r.status == 408 || r.status == 429) {
    out.status = FetchStatus::kUnavailable;
    out.error = http;
    return {out, true};
  }
  out.status = FetchStatus::kBadResponse;
  out.error = r.redirect.empty() ? http : http + ": redirect to " + r.redirect + " not followed";
  return {out, false};
}

std::chrono::milliseconds delay_before(int retry, std::chrono::milliseconds backoff,
                                       double jitter) {
  const double base = static_cast<double>(backoff.count()) * (1LL << (retry - 1));
  const double extra = std::clamp(jitter, 0.0, 1.0) * 0.2 * base;
  return std::chrono::milliseconds(static_cast<long long>(base + extra));
}

}  // namespace impl
}  // namespace auth
