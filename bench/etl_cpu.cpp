// bench_etl_cpu: the CPU cost of the ETL's own work per event, without brokers or Auth (Google
// Benchmark). The steps are the pipeline's: decode the Kafka message, plan the request, render
// the user's postings, encode each posting as JSON.
//
//   BM_SignUp            one user_signed_up event: decode + plan + render + encode
//   BM_MailingRecipient  one recipient of a mailing (the event is decoded and planned once per
//                        mailing, so a recipient costs render + encode)
//
// bench_etl_cpu [--templates DIR] [Google Benchmark flags]; DIR defaults to the source tree's.
//
// bench_etl_cpu [--templates DIR] --count signup|mailing N: exactly N events without Google
// Benchmark (for callgrind or `perf stat -e instructions`), then one JSON line
// {"case":"signup","events":N}. The set-up is the same for every N, so the instructions of
// N=11000 minus those of N=1000 are exactly 10000 events'. A mailing decodes and plans its event
// once, then renders and encodes N recipients.

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <variant>
#include <vector>

#include "auth_client/auth_client.hpp"
#include "intake.hpp"
#include "notify/posting.hpp"
#include "render.hpp"
#include "transform.hpp"

namespace {

std::string g_templates = NOTIFY_SOURCE_DIR "/templates";

notify::TimePoint now() {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

// The mailing's links are on the public site, as PLAN requires of a mailing's links.
etl::TransformOptions options() {
  etl::TransformOptions o;
  o.public_base_url = "https://example.org";
  // A mailing is bulk mail: each recipient gets a token (one HMAC) and its links, as in the ETL.
  o.unsubscribe.secret = "bench_etl_cpu's secret, 32 bytes";
  o.unsubscribe.url = "https://example.org/unsubscribe";
  return o;
}

// As the development Auth service answers for its fixture and bulk users.
auth::User user(int i) {
  auth::User u;
  u.id = "bench-" + std::to_string(i);
  u.email = u.id + "@example.com";
  u.first_name = "User";
  u.last_name = std::to_string(i);
  u.timezone = "UTC";
  u.locale = "en";
  return u;
}

// One sign-up event of user `u`, as Kafka hands it over.
etl::RawMessage signup_message(const auth::User& u) {
  etl::RawMessage raw;
  raw.topic = "notify_events";
  raw.key = u.id + "+user_signed_up";
  raw.value = R"({"id": ")" + u.id +
              R"(", "event_type": "user_signed_up", "priority": "immediate", )"
              R"("from_service": "auth", "details": {"email": ")" +
              u.email + R"(", "confirm_link": "/s/AbC12"}})";
  raw.timestamp_ms = 1'700'000'000'000;
  return raw;
}

etl::RawMessage mailing_message() {
  etl::RawMessage raw;
  raw.topic = "notify_events";
  raw.value = R"({"event_type": "mailing", "event_id": "bench-mailing", "from_service": "bench",
    "receivers": "http://127.0.0.1:8081/api/v1/users/?is_active=true&page_size=500",
    "template": "email/new_movies", "delivery_type": ["email"], "priority": "low",
    "template_context": {
      "movies": [{"title": "The Long Night", "url": "https://example.org/movies/the-long-night"},
                 {"title": "Blue Harbour", "url": "https://example.org/movies/blue-harbour"}],
      "unsubscribe_url": "https://example.org/unsubscribe?list=new_movies"},
    "expires_in": "2 days"})";
  return raw;
}

// The mailing's event and plan; a fixture the ETL refuses is a broken bench, said at once.
struct Mailing {
  etl::Event event;
  etl::Request request;
};

Mailing planned_mailing(const etl::Transformer& transformer) {
  auto decoded = etl::decode_event(mailing_message(), now());
  if (const auto* refused = std::get_if<etl::Rejection>(&decoded)) {
    std::fprintf(stderr, "bench_etl_cpu: the mailing is refused: %s\n", refused->reason.c_str());
    std::exit(1);
  }
  auto& event = std::get<etl::Event>(decoded);
  auto planned = etl::plan(event, transformer.options());
  if (const auto* refused = std::get_if<etl::Rejection>(&planned)) {
    std::fprintf(stderr, "bench_etl_cpu: the mailing is refused: %s\n", refused->reason.c_str());
    std::exit(1);
  }
  return Mailing{std::move(event), std::move(std::get<etl::Request>(planned))};
}

// Render + encode for one recipient of a decoded and planned mailing.
std::size_t recipient(etl::Transformer& transformer, const etl::Event& event,
                      const etl::Request& request, const auth::User& u) {
  auto result = transformer.postings(event, request, u, now());
  std::size_t postings = 0;
  for (const auto& p : std::get<std::vector<notify::Posting>>(result)) {
    std::string body = notify::encode(p);
    benchmark::DoNotOptimize(body);
    ++postings;
  }
  return postings;
}

// Decode + plan + render + encode of one sign-up; returns the postings encoded.
std::size_t signup(etl::Transformer& transformer, etl::RawMessage& raw, const auth::User& u) {
  ++raw.offset;  // a new identity, hence new posting ids, each time
  auto decoded = etl::decode_event(raw, now());
  auto& event = std::get<etl::Event>(decoded);
  auto planned = etl::plan(event, transformer.options());
  return recipient(transformer, event, std::get<etl::Request>(planned), u);
}

std::vector<auth::User> bulk_users() {
  std::vector<auth::User> users;
  for (int i = 1; i <= 1000; ++i) users.push_back(user(i));
  return users;
}

void BM_SignUp(benchmark::State& state) {
  etl::TemplateStore templates(g_templates);
  etl::Transformer transformer(options(), templates);
  const auth::User ada = user(1);
  etl::RawMessage raw = signup_message(ada);
  std::size_t postings = 0;
  for (auto _ : state) postings += signup(transformer, raw, ada);
  if (postings != static_cast<std::size_t>(state.iterations())) {
    state.SkipWithError("a sign-up did not make exactly one posting");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SignUp);

void BM_MailingRecipient(benchmark::State& state) {
  etl::TemplateStore templates(g_templates);
  etl::Transformer transformer(options(), templates);
  const Mailing mailing = planned_mailing(transformer);
  const std::vector<auth::User> users = bulk_users();
  std::size_t next = 0, postings = 0;
  for (auto _ : state) {
    postings += recipient(transformer, mailing.event, mailing.request, users[next]);
    next = (next + 1) % users.size();
  }
  if (postings != static_cast<std::size_t>(state.iterations())) {
    state.SkipWithError("a recipient did not get exactly one posting");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MailingRecipient);

// --count: the same work as the benchmarks, a fixed number of times. Every event is of the same
// size (the same user for sign-ups, users cycling through the same 1000 for a mailing) and the
// templates are loaded by one warm-up event before the counted ones, so the instructions grow
// exactly linearly with N.
int count(const std::string& which, long n) {
  etl::TemplateStore templates(g_templates);
  etl::Transformer transformer(options(), templates);
  std::size_t postings = 0;
  if (which == "signup") {
    const auth::User ada = user(1);
    etl::RawMessage raw = signup_message(ada);
    signup(transformer, raw, ada);  // warm-up: loads and caches the templates
    for (long i = 0; i < n; ++i) postings += signup(transformer, raw, ada);
  } else if (which == "mailing") {
    const Mailing mailing = planned_mailing(transformer);
    const std::vector<auth::User> users = bulk_users();
    recipient(transformer, mailing.event, mailing.request, users[0]);  // warm-up, as above
    for (long i = 0; i < n; ++i) {
      const auth::User& u = users[static_cast<std::size_t>(i) % users.size()];
      postings += recipient(transformer, mailing.event, mailing.request, u);
    }
  } else {
    std::fprintf(stderr, "bench_etl_cpu: --count takes signup or mailing, not '%s'\n",
                 which.c_str());
    return 2;
  }
  if (postings != static_cast<std::size_t>(n)) {
    std::fprintf(stderr, "bench_etl_cpu: %zu postings for %ld events\n", postings, n);
    return 1;
  }
  std::printf("{\"case\":\"%s\",\"events\":%ld}\n", which.c_str(), n);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Our own flag first; Google Benchmark refuses flags it does not know.
  std::vector<char*> rest;
  const char* count_case = nullptr;
  const char* count_events = nullptr;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--templates") == 0 && i + 1 < argc) {
      g_templates = argv[++i];
    } else if (std::strcmp(argv[i], "--count") == 0 && i + 2 < argc) {
      count_case = argv[++i];
      count_events = argv[++i];
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (count_case != nullptr) {
    char* end = nullptr;
    const long n = std::strtol(count_events, &end, 10);
    if (end == count_events || *end != '\0' || n < 0) {
      std::fprintf(stderr, "bench_etl_cpu: --count %s N: N is a number of events, not '%s'\n",
                   count_case, count_events);
      return 2;
    }
    return count(count_case, n);
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
