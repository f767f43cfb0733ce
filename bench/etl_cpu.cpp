// bench_etl_cpu: the CPU cost of the ETL's own work per event, without brokers or Auth (Google
// Benchmark). The steps are the pipeline's: decode the Kafka message, plan the request, render
// the user's postings, encode each posting as JSON.
//
//   BM_SignUp            one user_signed_up event: decode + plan + render + encode
//   BM_MailingRecipient  one recipient of a mailing (the event is decoded and planned once per
//                        mailing, so a recipient costs render + encode)
//
// bench_etl_cpu [--templates DIR] [Google Benchmark flags]; DIR defaults to the source tree's.

#include <benchmark/benchmark.h>

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

void BM_SignUp(benchmark::State& state) {
  etl::TemplateStore templates(g_templates);
  etl::Transformer transformer({}, templates);
  const auth::User ada = user(1);
  etl::RawMessage raw;
  raw.topic = "notify_events";
  raw.key = ada.id + "+user_signed_up";
  raw.value = R"({"id": ")" + ada.id +
              R"(", "event_type": "user_signed_up", "priority": "immediate", )"
              R"("from_service": "auth", "details": {"email": ")" +
              ada.email + R"(", "confirm_link": "/s/AbC12"}})";
  raw.timestamp_ms = 1'700'000'000'000;
  std::size_t postings = 0;
  for (auto _ : state) {
    ++raw.offset;  // a new identity, hence new posting ids, each time
    auto decoded = etl::decode_event(raw, now());
    auto& event = std::get<etl::Event>(decoded);
    auto planned = etl::plan(event, transformer.options());
    auto result = transformer.postings(event, std::get<etl::Request>(planned), ada, now());
    for (const auto& p : std::get<std::vector<notify::Posting>>(result)) {
      std::string body = notify::encode(p);
      benchmark::DoNotOptimize(body);
      ++postings;
    }
  }
  if (postings != static_cast<std::size_t>(state.iterations())) {
    state.SkipWithError("a sign-up did not make exactly one posting");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SignUp);

void BM_MailingRecipient(benchmark::State& state) {
  etl::TemplateStore templates(g_templates);
  etl::Transformer transformer({}, templates);
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
  auto decoded = etl::decode_event(raw, now());
  const auto& event = std::get<etl::Event>(decoded);
  auto planned = etl::plan(event, transformer.options());
  const auto& request = std::get<etl::Request>(planned);
  std::vector<auth::User> users;
  for (int i = 1; i <= 1000; ++i) users.push_back(user(i));
  std::size_t next = 0, postings = 0;
  for (auto _ : state) {
    const auth::User& u = users[next];
    next = (next + 1) % users.size();
    auto result = transformer.postings(event, request, u, now());
    for (const auto& p : std::get<std::vector<notify::Posting>>(result)) {
      std::string body = notify::encode(p);
      benchmark::DoNotOptimize(body);
      ++postings;
    }
  }
  if (postings != static_cast<std::size_t>(state.iterations())) {
    state.SkipWithError("a recipient did not get exactly one posting");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MailingRecipient);

}  // namespace

int main(int argc, char** argv) {
  // Our own flag first; Google Benchmark refuses flags it does not know.
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--templates") == 0 && i + 1 < argc) {
      g_templates = argv[++i];
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
