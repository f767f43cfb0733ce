// The ETL's loop over fakes of its ports (ports.hpp): revokes, returns, nacks, an unavailable
// dead-letter topic, an Auth outage in the middle of a mailing and a shutdown with postings in
// flight, without any broker and in milliseconds. Each fake writes what happened to it on one
// timeline, so a test reads as the order of events it expects.

#include <doctest/doctest.h>

#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <prometheus/registry.h>

#include "notify/envelope.hpp"
#include "notify/time.hpp"
#include "pipeline.hpp"
#include "ports.hpp"

using namespace etl;
using notify::kafka::TopicPartition;
using Result = PostingPublisher::Result;

namespace {

const TopicPartition kP0{"notify_events", 0};
const TopicPartition kP1{"notify_events", 1};
const std::string kAuth = "http://auth.test";

using Timeline = std::vector<std::string>;

std::string name(const TopicPartition& tp) { return tp.topic + "/" + std::to_string(tp.partition); }

struct WallClock final : notify::Clock {
  notify::TimePoint now() const override { return *notify::parse_iso8601("2026-11-23T10:00:00Z"); }
};

struct FakeMonotonic final : MonotonicClock {
  std::chrono::steady_clock::time_point t{};
  std::chrono::steady_clock::time_point now() const override { return t; }
};

// Delivers its queue in order, skipping paused partitions; a poll lets its timeout pass.
struct FakeEvents final : EventSource {
  Timeline& timeline;
  FakeMonotonic& time;
  notify::kafka::RebalanceListener* listener = nullptr;
  std::deque<notify::kafka::Message> queue;
  std::vector<TopicPartition> assigned;
  std::set<TopicPartition> paused;
  std::map<TopicPartition, std::int64_t> stored;
  // When each store and each asynchronous commit happened, on the monotonic clock: the commit
  // timing is checked apart from the timeline, which tells the order of things.
  std::vector<std::chrono::steady_clock::time_point> store_times;
  std::vector<std::chrono::steady_clock::time_point> commit_times;
  bool closed = false;
  std::function<void()> on_poll;  // the test's hand in the loop: stop, revoke, look

  FakeEvents(Timeline& t, FakeMonotonic& m) : timeline(t), time(m) {}

  void set_listener(notify::kafka::RebalanceListener* l) override { listener = l; }
  std::optional<notify::kafka::Message> poll(std::chrono::milliseconds timeout) override {
    time.t += timeout;
    if (on_poll) on_poll();
    for (auto it = queue.begin(); it != queue.end(); ++it) {
      if (paused.contains({it->topic, it->partition})) continue;
      auto m = std::move(*it);
      queue.erase(it);
      return m;
    }
    return std::nullopt;
  }
  void pause(const std::vector<TopicPartition>& ps) override {
    timeline.push_back("pause");
    paused.insert(ps.begin(), ps.end());
  }
  void resume(const std::vector<TopicPartition>& ps) override {
    timeline.push_back("resume");
    for (const auto& tp : ps) paused.erase(tp);
  }
  std::vector<TopicPartition> assignment() const override { return assigned; }
  void store_offset(const TopicPartition& tp, std::int64_t next) override {
    timeline.push_back("store " + name(tp) + " " + std::to_string(next));
    stored[tp] = next;
    store_times.push_back(time.t);
  }
  void commit() override {}
  void commit_async() override { commit_times.push_back(time.t); }
  std::vector<notify::kafka::PartitionLag> lag() const override { return {}; }
  void close() override {
    timeline.push_back("close");
    closed = true;
  }

  void assign(const std::vector<TopicPartition>& ps) {
    assigned = ps;
    listener->on_assigned(ps);
  }
  void revoke(const std::vector<TopicPartition>& ps) {
    timeline.push_back("revoke");
    listener->on_revoked(ps);
    auto gone = [&](const TopicPartition& tp) { return std::ranges::count(ps, tp) > 0; };
    std::erase_if(assigned, gone);
    std::erase_if(queue, [&](const auto& m) { return gone({m.topic, m.partition}); });
  }
  // The group took the partitions away while this member was cut off (ASSIGNMENT_LOST).
  void lose(const std::vector<TopicPartition>& ps) {
    timeline.push_back("lost");
    listener->on_lost(ps);
    auto gone = [&](const TopicPartition& tp) { return std::ranges::count(ps, tp) > 0; };
    std::erase_if(assigned, gone);
    std::erase_if(queue, [&](const auto& m) { return gone({m.topic, m.partition}); });
  }
  void add(const TopicPartition& tp, std::int64_t offset, const std::string& value,
           notify::kafka::Headers headers = {}) {
    queue.push_back(
        {tp.topic, tp.partition, offset, std::nullopt, value, std::nullopt, std::move(headers)});
  }
};

auth::User user(const std::string& id) {
  auth::User u;
  u.id = id;
  u.email = id + "@example.com";
  u.first_name = "User " + id;
  u.timezone = "UTC";
  u.locale = "en";
  return u;
}

// Every user exists (as user(id), or as `users` has them); a listing page n holds user "m<n>";
// `unavailable` answers say so once; Auth refuses the `refused_pages` with a 422, each time.
struct FakeDirectory final : UserDirectory {
  std::vector<std::string> lookups;  // ids and page numbers, in order
  std::set<std::string> unavailable_once;
  std::set<int> refused_pages;
  std::map<std::string, auth::User> users;
  int pages = 1;

  auth::User find(const std::string& id) const {
    const auto it = users.find(id);
    return it == users.end() ? user(id) : it->second;
  }

  auth::Lookup get_user(std::string_view id) override {
    lookups.emplace_back(id);
    if (unavailable_once.erase(std::string(id))) {
      return {auth::LookupStatus::kUnavailable, std::nullopt, "503 from auth", 3, 503};
    }
    return {auth::LookupStatus::kFound, find(std::string(id)), "", 1, 200};
  }
  auth::PageLookup list_users(const std::string& url) override {
    const auto n = std::stoi(url.substr(url.find("page_number=") + 12));
    lookups.push_back("page " + std::to_string(n));
    if (unavailable_once.erase("page " + std::to_string(n))) {
      return {auth::LookupStatus::kUnavailable, std::nullopt, "timeout", 3, 0};
    }
    if (refused_pages.contains(n)) {
      return {auth::LookupStatus::kUnavailable, std::nullopt, "422 from auth", 1, 422};
    }
    auth::Page page;
    page.items = {find("m" + std::to_string(n))};
    page.page_number = n;
    page.page_size = 1;
    page.total = pages;
    return {auth::LookupStatus::kFound, page, "", 1, 200};
  }
  auth::FetchResult fetch_json(const std::string&, std::size_t) override { return {}; }
};

// Confirms what it holds when pumped or flushed, as `answer` says: nothing means not yet.
// A pump that confirms nothing lets its wait pass, as the real one waits on its socket.
// `break_next_pump` makes the next pump lose the connection; connect() then republishes
// everything unconfirmed, as notify::amqp::ConfirmedPublisher does.
struct FakePublisher final : PostingPublisher {
  Timeline& timeline;
  FakeMonotonic& time;
  std::vector<std::chrono::milliseconds> pump_waits;  // of every pump, in order
  std::function<std::optional<Result>(const notify::amqp::Message&, int published)> answer =
      [](const auto&, int) { return Result::kAcked; };
  std::vector<std::pair<notify::amqp::Message, OnConfirmed>> unconfirmed;
  std::map<std::string, int> published;  // posting id -> times
  bool up = true;
  bool break_next_pump = false;
  int flushes = 0;

  FakePublisher(Timeline& t, FakeMonotonic& m) : timeline(t), time(m) {}

  bool connected() const override { return up; }
  void connect() override {
    if (up) return;
    up = true;
    for (const auto& [message, on_confirmed] : unconfirmed) {
      timeline.push_back("republish " + message.headers.at(notify::envelope::kEventIdHeader));
      ++published[message.message_id];
    }
  }
  void publish(notify::amqp::Message message, OnConfirmed on_confirmed) override {
    timeline.push_back("publish " + message.headers.at(notify::envelope::kEventIdHeader));
    ++published[message.message_id];
    unconfirmed.emplace_back(std::move(message), std::move(on_confirmed));
  }
  void pump(std::chrono::milliseconds wait) override {
    pump_waits.push_back(wait);
    if (std::exchange(break_next_pump, false)) {
      up = false;
      timeline.push_back("connection lost");
      throw notify::amqp::Error("connection reset by peer");
    }
    if (confirm() == 0) time.t += wait;
  }
  bool flush(std::chrono::milliseconds) override {
    ++flushes;
    confirm();
    return unconfirmed.empty();
  }
  std::size_t outstanding() const override { return unconfirmed.size(); }

  // Returns how many were confirmed.
  std::size_t confirm() {
    auto all = std::move(unconfirmed);
    unconfirmed.clear();
    std::size_t confirmed = 0;
    for (auto& [message, on_confirmed] : all) {
      const auto result = answer(message, published[message.message_id]);
      if (!result) {
        unconfirmed.emplace_back(std::move(message), std::move(on_confirmed));
        continue;
      }
      const char* what[] = {"ack ", "returned ", "nacked "};
      timeline.push_back(what[static_cast<int>(*result)] +
                         message.headers.at(notify::envelope::kEventIdHeader));
      on_confirmed(*result);
      ++confirmed;
    }
    return confirmed;
  }
};

// Throws the scripted errors first, then takes every letter.
struct FakeDeadLetters final : DeadLetterSink {
  Timeline& timeline;
  std::deque<notify::kafka::Error> errors;
  std::vector<DeadLetter> written;

  explicit FakeDeadLetters(Timeline& t) : timeline(t) {}

  void produce(const std::optional<std::string>& key, const std::string& value,
               const notify::kafka::Headers& headers) override {
    if (!errors.empty()) {
      auto e = errors.front();
      errors.pop_front();
      timeline.push_back(e.permanent() ? "dead letter refused" : "dead letter unavailable");
      throw e;
    }
    timeline.push_back("dead letter");
    written.push_back({key, value, headers});
  }
};

// Keeps what is emitted, and where on the timeline it came.
struct FakeStatus final : StatusSink {
  Timeline& timeline;
  std::vector<notify::status::Event> emitted;
  std::vector<std::size_t> at;  // the timeline's length at each

  explicit FakeStatus(Timeline& t) : timeline(t) {}

  void emit(const notify::status::Event& e) override {
    emitted.push_back(e);
    at.push_back(timeline.size());
  }
};

std::string header(const DeadLetter& d, const std::string& key) {
  for (const auto& [k, v] : d.headers) {
    if (k == key) return v;
  }
  return "";
}

// The log lines written to stderr while it lives.
class LogCapture {
 public:
  LogCapture() : file_(std::tmpfile()), saved_(dup(2)) {
    std::fflush(stderr);
    dup2(fileno(file_), 2);
  }
  ~LogCapture() {
    restore();
    std::fclose(file_);
  }
  std::string text() {
    restore();
    std::rewind(file_);
    std::string out;
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, file_)) > 0;) out.append(buf, n);
    return out;
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    dup2(saved_, 2);
    close(saved_);
    saved_ = -1;
  }
  std::FILE* file_;
  int saved_;
};

std::string signup(const std::string& user_id) {
  return R"({"id": ")" + user_id +
         R"(", "event_type": "user_signed_up", "from_service": "auth",
             "details": {"email": "x@example.com", "confirm_link": "/s/AbC12"}})";
}

std::string mailing() {
  return R"({"event_type": "mailing", "from_service": "mailing", "template": "email/new_movies",
             "receivers": ")" +
         kAuth + R"(/api/v1/users/?is_active=true&page_number=1&page_size=1",
             "delivery_type": ["email"],
             "template_context": {"movies": [{"title": "Arrival"}]}})";
}

// The value of an unlabelled counter.
double counter(prometheus::Registry& registry, const std::string& family) {
  for (const auto& f : registry.Collect()) {
    if (f.name == family && f.metric.size() == 1) return f.metric[0].counter.value;
  }
  return -1;
}

double counter(prometheus::Registry& registry, const std::string& family, const std::string& label,
               const std::string& value) {
  for (const auto& f : registry.Collect()) {
    if (f.name != family) continue;
    for (const auto& m : f.metric) {
      for (const auto& l : m.label) {
        if (l.name == label && l.value == value) return m.counter.value;
      }
    }
  }
  return 0;
}

// One ETL over fakes, partitions 0 and 1 assigned.
struct Harness {
  Timeline timeline;
  FakeMonotonic time;
  WallClock wall;
  FakeEvents events{timeline, time};
  FakeDirectory users;
  FakePublisher publisher{timeline, time};
  FakeDeadLetters dead_letters{timeline};
  FakeStatus status{timeline};
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  EtlConfig config;
  std::unique_ptr<Pipeline> pipeline;

  explicit Harness(std::size_t confirm_window = 512) {
    config.templates_dir = NOTIFY_SOURCE_DIR "/templates";
    config.auth_url = kAuth;
    config.confirm_window = confirm_window;
    // Mailings are bulk mail: refused without one-click unsubscribe.
    config.unsubscribe_secret = "pipeline_test's secret, 32 bytes";
    config.unsubscribe_url = "https://example.org/unsubscribe";
    pipeline = std::make_unique<Pipeline>(
        config, Ports{events, users, publisher, dead_letters, status, wall, time}, registry);
    events.assign({kP0, kP1});
  }

  // Runs the loop until `done` holds (then shuts it down), at most a simulated minute.
  void run_until(const std::function<bool()>& done, const std::function<void()>& each = {}) {
    std::atomic<bool> stop{false};
    int polls = 0;
    events.on_poll = [&] {
      if (each) each();
      if (done() || ++polls > 10'000) stop = true;
    };
    pipeline->run(stop);
    CHECK(polls <= 10'000);
  }

  bool stored(const TopicPartition& tp, std::int64_t next) const {
    auto it = events.stored.find(tp);
    return it != events.stored.end() && it->second == next;
  }
  std::size_t count(const std::string& entry) const { return std::ranges::count(timeline, entry); }
  // Index of the first `entry` in the timeline, after `from`; timeline.size() when none.
  std::size_t at(const std::string& entry, std::size_t from = 0) const {
    for (std::size_t i = from; i < timeline.size(); ++i) {
      if (timeline[i] == entry) return i;
    }
    return timeline.size();
  }
};

}  // namespace

TEST_CASE("pipeline: offsets are stored in order, only the contiguous confirmed prefix") {
  Harness h;
  for (int o = 0; o < 4; ++o) h.events.add(kP0, o, signup("u" + std::to_string(o)));
  // The posting of offset 1 stays unconfirmed until the others are.
  h.publisher.answer = [&](const notify::amqp::Message& m, int) -> std::optional<Result> {
    if (m.headers.at("event_id") == "notify_events/0/1" && h.count("ack notify_events/0/3") == 0) {
      return std::nullopt;
    }
    return Result::kAcked;
  };
  h.run_until([&] { return h.stored(kP0, 4); });
  // The four events are taken and published as one burst.
  CHECK(h.timeline == Timeline{"publish notify_events/0/0", "publish notify_events/0/1",
                               "publish notify_events/0/2", "publish notify_events/0/3",
                               "ack notify_events/0/0", "store notify_events/0 1",
                               "ack notify_events/0/2",  // 1 is still out: nothing stored
                               "ack notify_events/0/3", "ack notify_events/0/1",
                               "store notify_events/0 4", "close"});
}

TEST_CASE(
    "pipeline: while only confirms are awaited the loop waits for them on the publisher, "
    "a few milliseconds at a time, and still takes the next event") {
  using namespace std::chrono_literals;
  Harness h;
  h.events.add(kP0, 0, signup("u0"));
  // RabbitMQ confirms a posting 40 ms after it was published; the next event reaches Kafka
  // 20 ms after the first posting was published.
  std::map<std::string, std::chrono::steady_clock::time_point> published_at;
  h.publisher.answer = [&](const notify::amqp::Message& m, int) -> std::optional<Result> {
    const auto at = published_at.try_emplace(m.message_id, h.time.t).first->second;
    if (h.time.t - at < 40ms) return std::nullopt;
    return Result::kAcked;
  };
  bool second = false;
  h.run_until(
      [&] { return h.stored(kP0, 2); },
      [&] {
        if (!second && !published_at.empty() && h.time.t - published_at.begin()->second >= 20ms) {
          h.events.add(kP0, 1, signup("u1"));
          second = true;
        }
      });
  // Every wait is short, so the event of 20 ms is taken within one of them.
  std::chrono::milliseconds waited{0};
  for (const auto wait : h.publisher.pump_waits) {
    CHECK(wait <= 5ms);
    waited += wait;
  }
  CHECK(waited >= 60ms);  // the time went by waiting, not spinning
  CHECK(h.publisher.pump_waits.size() < 60);
  CHECK(h.at("publish notify_events/0/1") < h.at("ack notify_events/0/0"));
  CHECK(h.stored(kP0, 2));
}

TEST_CASE("pipeline: a revoke in the middle of a batch drops the revoked partition's work") {
  Harness h;
  h.users.pages = 5;
  h.users.unavailable_once = {"page 3"};
  h.events.add(kP0, 0, signup("u0"));  // its posting confirmed only after the revoke
  bool revoked = false;
  h.publisher.answer = [&](const notify::amqp::Message& m, int) -> std::optional<Result> {
    if (m.headers.at("event_id") == "notify_events/0/0" && !revoked) return std::nullopt;
    return Result::kAcked;
  };
  bool more = false;
  h.run_until([&] { return h.stored(kP1, 1) && h.publisher.outstanding() == 0; },
              [&] {
                // Once the first posting is out, the next events reach Kafka (else they would
                // come in one burst with it, and its posting would be dropped unpublished).
                if (!more && h.count("publish notify_events/0/0") == 1) {
                  h.events.add(kP0, 1, mailing());     // pages 1-2 rendered, page 3 unavailable
                  h.events.add(kP0, 2, signup("u2"));  // waiting at the revoke: dropped
                  h.events.add(kP1, 0, signup("v0"));
                  more = true;
                }
                if (!revoked && h.count("pause") == 1) {
                  h.events.revoke({kP0});  // its flush gets no confirm for offset 0
                  revoked = true;
                }
              });
  // Pages 1 and 2 were rendered but not yet published when the revoke came: dropped, and page 3
  // is not asked again (the new owner of partition 0 starts the mailing over).
  CHECK(h.users.lookups == std::vector<std::string>{"u0", "page 1", "page 2", "page 3", "v0"});
  CHECK(h.count("publish notify_events/0/1") == 0);
  CHECK(h.count("publish notify_events/0/2") == 0);
  // The late ack of offset 0 stores nothing for a partition no longer ours.
  CHECK(h.count("ack notify_events/0/0") == 1);
  CHECK(h.at("revoke") < h.at("ack notify_events/0/0"));
  CHECK_FALSE(h.events.stored.contains(kP0));
  CHECK(h.stored(kP1, 1));
}

TEST_CASE("pipeline: a returned posting is kept, intake pauses, and it is sent again") {
  Harness h;
  h.events.add(kP0, 0, signup("u0"));
  h.publisher.answer = [](const notify::amqp::Message&, int published) {
    return published == 1 ? Result::kReturned : Result::kAcked;
  };
  LogCapture log;
  h.run_until([&] { return h.stored(kP0, 1); });
  CHECK(h.timeline == Timeline{"publish notify_events/0/0", "returned notify_events/0/0", "pause",
                               "resume", "publish notify_events/0/0", "ack notify_events/0/0",
                               "store notify_events/0 1", "close"});
  const std::string text = log.text();
  CHECK(text.find(R"("msg":"posting returned unroutable")") != std::string::npos);
  CHECK(text.find(R"("msg":"intake paused","reason":"a posting was returned unroutable)") !=
        std::string::npos);
  CHECK(text.find(R"("msg":"intake resumed")") != std::string::npos);
}

TEST_CASE("pipeline: a posting nacked too often is kept, intake pauses with the reason") {
  Harness h;
  h.events.add(kP0, 0, signup("u0"));
  h.events.add(kP0, 1, signup("u1"));
  // Offset 0's first publication is nacked, once offset 1's posting is out too.
  h.publisher.answer = [&](const notify::amqp::Message& m, int published) -> std::optional<Result> {
    if (m.headers.at("event_id") != "notify_events/0/0" || published > 1) return Result::kAcked;
    if (h.count("publish notify_events/0/1") == 0) return std::nullopt;
    return Result::kNacked;
  };
  LogCapture log;
  h.run_until([&] { return h.stored(kP0, 2); });
  // Offset 1 is confirmed first, but nothing is stored before offset 0 is.
  const auto resumed = h.at("resume");
  CHECK(h.at("nacked notify_events/0/0") < h.at("pause"));
  CHECK(h.at("publish notify_events/0/0", resumed) < h.at("ack notify_events/0/0"));
  CHECK(h.at("ack notify_events/0/0") < h.at("store notify_events/0 2"));
  CHECK(h.count("store notify_events/0 1") == 0);
  const std::string text = log.text();
  CHECK(text.find(R"("msg":"posting nacked")") != std::string::npos);
  CHECK(text.find("rabbitmq nacked posting") != std::string::npos);
  CHECK(text.find("times: is the queue full or the disk alarm on?") != std::string::npos);
}

TEST_CASE("pipeline: the dead-letter topic unavailable pauses intake; the event goes later") {
  Harness h;
  h.events.add(kP0, 0, "not json");
  h.dead_letters.errors = {notify::kafka::Error("broker down"), notify::kafka::Error("still down")};
  h.run_until([&] { return h.stored(kP0, 1); });
  CHECK(h.timeline == Timeline{"dead letter unavailable", "pause", "dead letter unavailable",
                               "dead letter", "store notify_events/0 1", "resume", "close"});
  REQUIRE(h.dead_letters.written.size() == 1);
  CHECK(h.dead_letters.written[0].value == "not json");
  CHECK(header(h.dead_letters.written[0], "error") == "value is not valid JSON");
  CHECK(header(h.dead_letters.written[0], "original_offset") == "0");
}

TEST_CASE("pipeline: a dead letter the broker refuses goes shortened, else is skipped") {
  SUBCASE("refused whole: a shortened copy") {
    Harness h;
    h.events.add(kP0, 0, "not json" + std::string(100'000, ' '));
    h.dead_letters.errors = {notify::kafka::Error("message too large", true)};
    h.run_until([&] { return h.stored(kP0, 1); });
    CHECK(h.timeline ==
          Timeline{"dead letter refused", "dead letter", "store notify_events/0 1", "close"});
    REQUIRE(h.dead_letters.written.size() == 1);
    const DeadLetter& d = h.dead_letters.written[0];
    CHECK(d.value.size() == 64 * 1024);
    CHECK(header(d, "truncated") == "true");
    CHECK(header(d, "original_size") == "100008");
    CHECK(header(d, "original_sha256").size() == 64);
    CHECK(counter(*h.registry, "notify_etl_dead_lettered_total", "reason_class", "invalid_event") ==
          1);
  }
  SUBCASE("refused even shortened: skipped and counted, the partition goes on") {
    Harness h;
    h.events.add(kP0, 0, "not json");
    h.events.add(kP0, 1, signup("u1"));
    h.dead_letters.errors = {notify::kafka::Error("refused", true),
                             notify::kafka::Error("refused", true)};
    LogCapture log;
    h.run_until([&] { return h.stored(kP0, 2); });
    CHECK(h.dead_letters.written.empty());
    CHECK(h.at("store notify_events/0 1") < h.at("publish notify_events/0/1"));
    CHECK(counter(*h.registry, "notify_etl_dead_lettered_total", "reason_class",
                  "dead_letter_refused") == 1);
    const std::string text = log.text();
    CHECK(text.find(R"("msg":"dead letter refused by the broker; event skipped")") !=
          std::string::npos);
    CHECK(text.find(R"("dead_letter":"lost")") != std::string::npos);
  }
}

TEST_CASE("pipeline: Auth unavailable on page 37 of a mailing resumes at page 37") {
  Harness h;
  h.users.pages = 40;
  h.users.unavailable_once = {"page 37"};
  h.events.add(kP0, 0, mailing());
  LogCapture log;
  h.run_until([&] { return h.stored(kP0, 1); });
  std::vector<std::string> expected;
  for (int n = 1; n <= 40; ++n) {
    expected.emplace_back("page " + std::to_string(n));
    if (n == 37) expected.emplace_back("page 37");  // once unavailable, once answered
  }
  CHECK(h.users.lookups == expected);
  // One posting per user, each published once: pages 1-36 were not made again.
  CHECK(h.publisher.published.size() == 40);
  for (const auto& [id, times] : h.publisher.published) CHECK(times == 1);
  CHECK(h.count("pause") == 1);
  CHECK(h.count("resume") == 1);
  CHECK(h.at("resume") < h.at("store notify_events/0 1"));
  const std::string text = log.text();
  CHECK(text.find(R"("msg":"intake paused","reason":"auth: timeout")") != std::string::npos);
  CHECK(text.find(R"("postings":40)") != std::string::npos);
}

TEST_CASE("pipeline: shutdown flushes postings in flight and stores only confirmed offsets") {
  Harness h;
  for (int o = 0; o < 4; ++o) h.events.add(kP0, o, signup("u" + std::to_string(o)));
  // No confirm arrives while running; on the flush at shutdown all but offset 2's.
  bool stopping = false;
  h.publisher.answer = [&](const notify::amqp::Message& m, int) -> std::optional<Result> {
    if (!stopping || m.headers.at("event_id") == "notify_events/0/2") return std::nullopt;
    return Result::kAcked;
  };
  h.run_until([&] {
    stopping = h.publisher.published.size() == 4;
    return stopping;
  });
  CHECK(h.events.closed);
  CHECK(h.stored(kP0, 2));  // 0 and 1; 3 is confirmed but 2 is not
  CHECK(h.at("store notify_events/0 2") < h.at("close"));
  CHECK(h.publisher.outstanding() == 1);
}

TEST_CASE(
    "pipeline: the confirmed prefix is committed within KAFKA_COMMIT_INTERVAL of its "
    "confirm, by one commit per interval at most") {
  using namespace std::chrono_literals;
  using Time = std::chrono::steady_clock::time_point;
  Harness h;
  REQUIRE(h.config.commit_interval == 250ms);
  const Time start = h.time.t;
  SUBCASE("a quiet pipeline commits nothing") {
    h.run_until([&] { return h.time.t - start > 2s; });
    CHECK(h.events.commit_times.empty());
  }
  SUBCASE("confirms trickling in for two seconds") {
    // Offset o is confirmed once 100 ms * o have passed; every turn of the loop takes 7 ms,
    // which is how late the loop may notice that a commit is due.
    constexpr auto kTurn = 7ms;
    for (int o = 0; o < 20; ++o) h.events.add(kP0, o, signup("u" + std::to_string(o)));
    h.publisher.answer = [&](const notify::amqp::Message& m, int) -> std::optional<Result> {
      const std::string& id = m.headers.at("event_id");
      const int offset = std::stoi(id.substr(id.rfind('/') + 1));
      if (h.time.t - start < offset * 100ms) return std::nullopt;
      return Result::kAcked;
    };
    h.run_until([&] { return h.stored(kP0, 20) && h.time.t > h.events.store_times.back() + 1s; },
                [&] { h.time.t += kTurn; });
    const auto& stores = h.events.store_times;
    const auto& commits = h.events.commit_times;
    REQUIRE(stores.size() == 20);
    REQUIRE_FALSE(commits.empty());
    // The first confirm after a quiet time is committed at once.
    CHECK(commits.front() == stores.front());
    // Every store is covered by a commit within the interval.
    for (const Time stored : stores) {
      const auto covering = std::ranges::lower_bound(commits, stored);
      REQUIRE(covering != commits.end());
      CHECK(*covering - stored <= 250ms + kTurn);
    }
    // Coalesced: never two commits within one interval, and nothing after the last store.
    for (std::size_t i = 1; i < commits.size(); ++i) CHECK(commits[i] - commits[i - 1] >= 250ms);
    CHECK(commits.back() - stores.back() <= 250ms + kTurn);
    CHECK(commits.size() <= 10);  // 20 stores over 1.9 s
  }
}

TEST_CASE(
    "pipeline: partitions lost in an outage: no flush, nothing stored for them, the rest "
    "goes on") {
  Harness h;
  h.users.pages = 5;
  h.users.unavailable_once = {"page 3"};
  h.events.add(kP0, 0, signup("u0"));  // published; its confirm comes only after the loss
  h.events.add(kP0, 1, mailing());     // pages 1-2 rendered, page 3 unavailable: paused
  h.events.add(kP0, 2, signup("u2"));  // not consumed before the loss: the new owner reads it
  h.events.add(kP1, 0, signup("v0"));
  bool lost = false;
  int flushes_at_loss = -1;
  h.publisher.answer = [&](const notify::amqp::Message& m, int) -> std::optional<Result> {
    if (m.headers.at("event_id") == "notify_events/0/0" && !lost) return std::nullopt;
    return Result::kAcked;
  };
  LogCapture log;
  h.run_until([&] { return h.stored(kP1, 1) && h.publisher.outstanding() == 0; },
              [&] {
                if (!lost && h.count("pause") == 1) {
                  h.events.lose({kP0});
                  lost = true;
                  flushes_at_loss = h.publisher.flushes;
                }
              });
  CHECK(flushes_at_loss == 0);  // a revoke would have waited for confirms here
  CHECK(h.users.lookups == std::vector<std::string>{"u0", "page 1", "page 2", "page 3", "v0"});
  CHECK(h.count("publish notify_events/0/1") == 0);
  CHECK(h.count("publish notify_events/0/2") == 0);
  // The late ack stores nothing for a partition no longer ours: nothing stale to commit.
  CHECK(h.at("lost") < h.at("ack notify_events/0/0"));
  CHECK_FALSE(h.events.stored.contains(kP0));
  CHECK(h.stored(kP1, 1));
  const std::string text = log.text();
  CHECK(text.find(R"({"count":1,"level":"warn","msg":"partitions lost; their events in flight )"
                  R"(are left to the next owner")") != std::string::npos);
}

TEST_CASE("pipeline: postings republished after a lost RabbitMQ connection are counted") {
  Harness h;
  for (int o = 0; o < 3; ++o) h.events.add(kP0, o, signup("u" + std::to_string(o)));
  bool broken = false;
  // No confirm comes before the connection breaks, once all three postings are out.
  h.publisher.answer = [&](const notify::amqp::Message&, int) -> std::optional<Result> {
    if (!broken || !h.publisher.up) return std::nullopt;
    return Result::kAcked;
  };
  LogCapture log;
  h.run_until([&] { return h.stored(kP0, 3); },
              [&] {
                if (!broken && h.publisher.published.size() == 3) {
                  h.publisher.break_next_pump = true;
                  broken = true;
                }
              });
  CHECK(h.count("connection lost") == 1);
  CHECK(h.count("republish notify_events/0/0") == 1);
  CHECK(h.count("republish notify_events/0/2") == 1);
  CHECK(counter(*h.registry, "notify_etl_postings_republished_total") == 3);
  CHECK(log.text().find(R"("msg":"rabbitmq connected","republished":3)") != std::string::npos);
}

TEST_CASE("pipeline: a mailing refused on page 37 and replayed makes the same posting ids again") {
  // The first arrival: pages 1-36 published, page 37 refused by Auth, the event dead-lettered.
  Harness first;
  first.users.pages = 40;
  first.users.refused_pages = {37};
  first.events.add(kP0, 5, mailing());
  first.run_until([&] { return first.stored(kP0, 6); });
  REQUIRE(first.dead_letters.written.size() == 1);
  const DeadLetter& dead = first.dead_letters.written[0];
  CHECK(header(dead, "error").starts_with("receivers: 422 from auth"));
  CHECK(first.publisher.published.size() == 36);

  // notify_replay sends the dead letter back, much later, with its original_* headers; a new
  // instance of the ETL reads it at another offset, and Auth answers every page this time.
  notify::kafka::Headers replay_headers;
  for (const auto& [key, value] : dead.headers) {
    if (key.starts_with("original_")) replay_headers.emplace_back(key, value);
  }
  replay_headers.emplace_back("replayed_from", "notify_events.dlq[0]@0");
  CHECK(replay_headers.size() == 4);
  Harness again;
  again.users.pages = 40;
  again.events.add(kP0, 900, dead.value, replay_headers);
  SUBCASE("the 36 postings of the first time have the same ids; the worker's ledger skips them") {
    again.run_until([&] { return again.stored(kP0, 901); });
    CHECK(again.publisher.published.size() == 40);
    for (const auto& entry : first.publisher.published) {
      const std::string& posting_id = entry.first;  // CAPTURE cannot take a structured binding
      CAPTURE(posting_id);
      CHECK(again.publisher.published.contains(posting_id));
    }
    CHECK(again.count("publish notify_events/0/5") == 40);  // the event id of the first arrival
    CHECK(again.count("publish notify_events/0/900") == 0);
  }
  SUBCASE("refused again, its dead letter still names the first arrival") {
    again.users.refused_pages = {38};
    again.run_until([&] { return again.stored(kP0, 901); });
    REQUIRE(again.dead_letters.written.size() == 1);
    CHECK(header(again.dead_letters.written[0], "original_offset") == "5");
    CHECK(header(again.dead_letters.written[0], "original_partition") == "0");
  }
  SUBCASE("a malformed first-arrival header is refused into the dead-letter topic") {
    Harness bad;
    bad.events.add(kP0, 3, dead.value,
                   {{"original_topic", "notify_events"},
                    {"original_partition", "0"},
                    {"original_offset", "-5"}});
    bad.run_until([&] { return bad.stored(kP0, 4); });
    REQUIRE(bad.dead_letters.written.size() == 1);
    CHECK(header(bad.dead_letters.written[0], "error") ==
          R"(header original_offset is not an offset: "-5")");
    CHECK(header(bad.dead_letters.written[0], "original_offset") == "3");  // its own place
    CHECK(bad.publisher.published.empty());
  }
}

TEST_CASE("pipeline: skipped recipients and refused events become status events, nothing else") {
  Harness h;
  auth::User opted = user("u-opted");
  opted.email_notifications = false;
  auth::User idle = user("u-idle");
  idle.active = false;
  auth::User mute = user("u-mute");
  mute.email.clear();
  auth::User m2 = user("m2");
  m2.email_notifications = false;
  h.users.users = {{"u-opted", opted}, {"u-idle", idle}, {"u-mute", mute}, {"m2", m2}};
  h.users.pages = 2;
  // A request to four users: one posting, three skipped.
  h.events.add(kP0, 0, R"({"event_type": "notification_requested", "event_id": "req-1",
                           "user_ids": ["u-ok", "u-opted", "u-idle", "u-mute"],
                           "template": "email/generic",
                           "template_context": {"title": "Hi", "message": "A message"}})");
  // Not JSON: refused, known by where it arrived; the dead-letter topic is down at first.
  h.events.add(kP0, 1, "not json");
  h.dead_letters.errors = {notify::kafka::Error("broker down")};
  // Refused before it was decoded, but with an event_id of its own.
  h.events.add(kP0, 2, R"({"event_type": "notification_requested", "event_id": "req-bad",
                           "priority": "urgent", "user_ids": ["u-ok"], "template": "email/generic"})");
  // A mailing of two pages whose second user opted out.
  h.events.add(kP0, 3, mailing());
  // A sign-up reaches a user who opted out of other mail: no skip.
  h.events.add(kP0, 4, signup("u-opted"));
  h.run_until([&] { return h.stored(kP0, 5); });

  const auto now = h.wall.now();
  auto skipped = [&](const std::string& event_id, const std::string& type, const std::string& id,
                     const std::string& template_name, const std::string& reason) {
    notify::status::Event e;
    e.status = "skipped";
    e.time = now;
    e.service = "etl_notifications";
    e.event_id = event_id;
    e.event_type = type;
    e.posting_id = notify::make_posting_id(event_id, id, "email");
    e.user_id = id;
    e.channel = "email";
    e.template_name = template_name;
    e.reason = reason;
    return e;
  };
  auto refused = [&](const std::string& event_id, const std::string& type,
                     const std::string& reason) {
    notify::status::Event e;
    e.status = "refused";
    e.time = now;
    e.service = "etl_notifications";
    e.event_id = event_id;
    e.event_type = type;
    e.reason = reason;
    return e;
  };
  const std::vector<notify::status::Event> expected = {
      skipped("req-1", "notification_requested", "u-opted", "email/generic", "opted_out"),
      skipped("req-1", "notification_requested", "u-idle", "email/generic", "inactive"),
      skipped("req-1", "notification_requested", "u-mute", "email/generic", "no_address"),
      refused("notify_events/0/1", "", "value is not valid JSON"),
      refused("req-bad", "notification_requested",
              "unknown priority 'urgent' (immediate, high, normal, low)"),
      skipped("notify_events/0/3", "mailing", "m2", "email/new_movies", "opted_out"),
  };
  CHECK(h.status.emitted == expected);
  // Keyed by the user, or by the event when it has none.
  REQUIRE(h.status.emitted.size() == expected.size());
  CHECK(notify::status::key_of(h.status.emitted[0]) == "u-opted");
  CHECK(notify::status::key_of(h.status.emitted[3]) == "notify_events/0/1");
  // A refusal is reported once, when its dead letter is written, not while the topic is down.
  CHECK(h.count("dead letter unavailable") == 1);
  CHECK(h.status.at[3] > h.at("dead letter"));
  // Every posting made all the same: u-ok, the mailing's m1, the sign-up.
  CHECK(h.publisher.published.size() == 3);
}
