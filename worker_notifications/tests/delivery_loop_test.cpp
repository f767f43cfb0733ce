// The delivery loop without a broker: a fake work queue, republisher, transport, clocks and
// random source. Every outcome path of a delivery, throttling, redeliveries after a crash and
// the ways a copy can fail to be stored, each in milliseconds.

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "delivery.hpp"
#include "ledger.hpp"
#include "moves.hpp"
#include "notify/envelope.hpp"
#include "notify/log.hpp"
#include "notify/status.hpp"
#include "notify/time.hpp"

using namespace worker;
using namespace std::chrono_literals;

namespace {

notify::TimePoint at(const char* iso) { return *notify::parse_iso8601(iso); }

// 12:00 UTC on a Monday: daytime in Berlin.
const notify::TimePoint kNoon = at("2026-11-23T12:00:00Z");

struct Queue {
  std::deque<notify::amqp::Delivery> waiting;
  // Arrive only while the loop waits (next with a timeout), never as already received.
  std::deque<notify::amqp::Delivery> arriving;
  std::vector<std::uint64_t> acked;
  std::vector<std::pair<std::uint64_t, bool>> rejected;  // tag, requeue
  // What the broker was told, in order: "ack 3", "ack 5 multiple", "reject 4 requeue"...
  std::vector<std::string> settles;
  // How the loop asked: "wait" (next with a timeout) or "received" (next_received).
  std::vector<std::string> takes;
  // Takes and settles together, in the order they happened.
  std::vector<std::string> events;
  std::vector<std::uint64_t> outstanding;  // handed out, neither acked nor rejected
  std::vector<std::string> errors;         // a settle of a delivery not outstanding
  int connects = 0;
  int failing_connects = 0;  // connect() throws this many times first
  int disconnects = 0;
  int idle_polls = 0;  // empty polls before the empty queue stops the loop
  std::atomic<bool>* stop = nullptr;
};

// Hands out the queued deliveries, then stops the loop.
class FakeSource final : public DeliverySource {
 public:
  explicit FakeSource(Queue& q) : q_(q) {}
  bool connected() const override { return connected_; }
  void connect() override {
    ++q_.connects;
    if (q_.failing_connects > 0) {
      --q_.failing_connects;
      throw notify::amqp::Error("connection refused");
    }
    connected_ = true;
  }
  void disconnect() override {
    ++q_.disconnects;
    connected_ = false;
  }
  std::optional<notify::amqp::Delivery> next(std::chrono::milliseconds) override {
    q_.takes.emplace_back("wait");
    q_.events.emplace_back("wait");
    if (q_.waiting.empty() && !q_.arriving.empty()) {
      q_.waiting.push_back(std::move(q_.arriving.front()));
      q_.arriving.pop_front();
    }
    if (q_.waiting.empty()) {
      if (q_.idle_polls > 0) {
        --q_.idle_polls;
      } else {
        q_.stop->store(true);
      }
      return std::nullopt;
    }
    return hand_out();
  }
  std::optional<notify::amqp::Delivery> next_received() override {
    q_.takes.emplace_back("received");
    q_.events.emplace_back("received");
    if (q_.waiting.empty()) return std::nullopt;
    return hand_out();
  }
  // As RabbitMQ: a multiple ack covers every outstanding delivery up to the tag.
  void ack(std::uint64_t tag, bool multiple) override {
    q_.settles.push_back("ack " + std::to_string(tag) + (multiple ? " multiple" : ""));
    q_.events.push_back(q_.settles.back());
    const auto it = std::find(q_.outstanding.begin(), q_.outstanding.end(), tag);
    if (it == q_.outstanding.end()) {
      q_.errors.push_back("ack of " + std::to_string(tag) + ", not outstanding");
      return;
    }
    const auto from = multiple ? q_.outstanding.begin() : it;
    q_.acked.insert(q_.acked.end(), from, it + 1);
    q_.outstanding.erase(from, it + 1);
  }
  void reject(std::uint64_t tag, bool requeue) override {
    q_.settles.push_back("reject " + std::to_string(tag) + (requeue ? " requeue" : ""));
    q_.events.push_back(q_.settles.back());
    q_.rejected.emplace_back(tag, requeue);
    const auto it = std::find(q_.outstanding.begin(), q_.outstanding.end(), tag);
    if (it == q_.outstanding.end()) {
      q_.errors.push_back("reject of " + std::to_string(tag) + ", not outstanding");
      return;
    }
    q_.outstanding.erase(it);
  }

 private:
  notify::amqp::Delivery hand_out() {
    auto d = std::move(q_.waiting.front());
    q_.waiting.pop_front();
    q_.outstanding.push_back(d.delivery_tag);
    return d;
  }
  Queue& q_;
  bool connected_ = false;
};

struct Copies {
  std::vector<notify::amqp::Message> published;
  // What the broker answers, one per copy; kAcked once they run out. "lost": the connection
  // fails while publishing.
  std::deque<std::string> answers;
  int connects = 0;
  int disconnects = 0;
  std::vector<std::size_t> windows;  // copies per await_confirms()
};

class FakeRepublisher final : public Republisher {
 public:
  explicit FakeRepublisher(Copies& c) : c_(c) {}
  bool connected() const override { return connected_; }
  void connect() override {
    ++c_.connects;
    connected_ = true;
  }
  void disconnect() override {
    ++c_.disconnects;
    connected_ = false;
    window_.clear();
  }
  void publish(notify::amqp::Message message) override {
    c_.published.push_back(std::move(message));
    std::string answer = "acked";
    if (!c_.answers.empty()) {
      answer = c_.answers.front();
      c_.answers.pop_front();
    }
    if (answer == "lost") {
      connected_ = false;
      window_.clear();
      throw notify::amqp::Error("connection lost");
    }
    window_.push_back(answer == "returned"      ? Result::kReturned
                      : answer == "nacked"      ? Result::kNacked
                      : answer == "unconfirmed" ? Result::kUnconfirmed
                                                : Result::kAcked);
  }
  std::vector<Result> await_confirms() override {
    c_.windows.push_back(window_.size());
    return std::exchange(window_, {});
  }

 private:
  Copies& c_;
  bool connected_ = false;
  std::vector<Result> window_;
};

struct Transport {
  std::vector<notify::Posting> sent;
  std::function<SendResult(const notify::Posting&)> answer = [](const notify::Posting&) {
    return SendResult{SendStatus::kSent, 250, "250 ok"};
  };
};

class FakeSender final : public ChannelSender {
 public:
  explicit FakeSender(Transport& t) : t_(t) {}
  SendResult send(const notify::Posting& p) override {
    t_.sent.push_back(p);
    return t_.answer(p);
  }

 private:
  Transport& t_;
};

class FakeClock final : public notify::Clock {
 public:
  notify::TimePoint now() const override { return now_; }
  notify::TimePoint now_ = kNoon;
};

// Sleeping moves time forward at once and is written down.
class FakeSteady final : public SteadyClock {
 public:
  TimePoint now() const override { return now_; }
  void sleep_for(std::chrono::milliseconds d) override {
    sleeps.push_back(d);
    now_ += d;
  }
  std::chrono::milliseconds slept() const {
    std::chrono::milliseconds total{0};
    for (auto d : sleeps) total += d;
    return total;
  }
  TimePoint now_{std::chrono::hours(1000)};
  std::vector<std::chrono::milliseconds> sleeps;
};

// The delivery ledger in memory: one entry per posting, "sent" or the holder's name, and the
// calls made, in order. A fault makes the next calls of a kind throw LedgerError.
struct Book {
  std::map<std::string, std::string> entries;
  std::map<std::string, std::chrono::milliseconds> held_for;  // kHeld answers, by posting
  std::vector<std::string> calls;                             // "claim <id>", "mark <id>"...
  int failing_connects = 0;  // reconnects after a failure that throw first
  int failing_claims = 0;
  int failing_marks = 0;
  int failing_releases = 0;
  int failing_pings = 0;
  int pings = 0;
  int round_trips = 0;  // claim() and claim_all() calls: one wait for Redis each
};

class FakeLedger final : public DeliveryLedger {
 public:
  FakeLedger(Book& b, std::string owner) : b_(b), owner_(std::move(owner)) {}
  bool connected() const override { return connected_; }
  void connect() override {
    b_.calls.emplace_back("connect");
    if (failed_ && b_.failing_connects > 0) {
      --b_.failing_connects;
      throw LedgerError("ledger: connection refused");
    }
    connected_ = true;
  }
  void disconnect() override { connected_ = false; }
  Claim claim(std::string_view id, std::chrono::milliseconds lease) override {
    ++b_.round_trips;
    fail_if(b_.failing_claims);
    return claim_one(id, lease);
  }
  std::vector<Claim> claim_all(std::span<const std::string_view> ids,
                               std::chrono::milliseconds lease) override {
    ++b_.round_trips;
    fail_if(b_.failing_claims);
    std::vector<Claim> claims;
    for (const std::string_view id : ids) claims.push_back(claim_one(id, lease));
    return claims;
  }
  void mark_sent(std::string_view id, notify::TimePoint) override {
    b_.calls.push_back("mark " + std::string(id));
    fail_if(b_.failing_marks);
    b_.entries[std::string(id)] = "sent";
  }
  void release(std::string_view id) override {
    b_.calls.push_back("release " + std::string(id));
    fail_if(b_.failing_releases);
    if (b_.entries[std::string(id)] == owner_) b_.entries.erase(std::string(id));
  }
  void ping() override {
    ++b_.pings;
    fail_if(b_.failing_pings);
  }

 private:
  Claim claim_one(std::string_view id, std::chrono::milliseconds) {
    b_.calls.push_back("claim " + std::string(id));
    auto& entry = b_.entries[std::string(id)];
    if (entry.empty() || entry == owner_) {
      entry = owner_;
      return {Claimed::kYes, {}};
    }
    if (entry == "sent") return {Claimed::kAlreadySent, {}};
    return {Claimed::kHeld, b_.held_for[std::string(id)]};
  }
  void fail_if(int& failing) {
    if (failing == 0) return;
    --failing;
    connected_ = false;
    failed_ = true;
    throw LedgerError("ledger: connection lost");
  }
  Book& b_;
  std::string owner_;
  bool connected_ = false;
  bool failed_ = false;
};

notify::Posting posting(const std::string& id = "11111111-2222-5333-8444-555555555555") {
  notify::Posting p;
  p.posting_id = id;
  p.event_id = "e1";
  p.event_type = "user_signed_up";
  p.source = "auth";
  p.event_time = kNoon - 1min;
  p.channel = notify::Channel::kEmail;
  p.template_name = "user_signed_up";
  p.recipient = {"u1", "ann@example.com", "Ann", "Europe/Berlin", "en"};
  p.content = {"Welcome", "Hello Ann.", "<p>Hello Ann.</p>"};
  p.priority = 5;
  p.quiet_hours = notify::QuietHours::kRespect;
  p.expires_at = at("2026-11-25T12:00:00Z");
  return p;
}

notify::amqp::Delivery delivery_of(const notify::Posting& p, std::uint64_t tag,
                                   const notify::amqp::Headers& extra = {}) {
  notify::amqp::Message m = notify::envelope::to_message(p);
  notify::amqp::Delivery d;
  d.delivery_tag = tag;
  d.routing_key = m.routing_key;
  d.body = m.body;
  d.message_id = m.message_id;
  d.priority = m.priority;
  d.headers = m.headers;
  for (auto& [k, v] : extra) d.headers[k] = v;
  return d;
}

// The status events the loop emitted, in order.
class RecordingSink final : public notify::status::Sink {
 public:
  void emit(const notify::status::Event& e) override { events.push_back(e); }
  std::vector<notify::status::Event> events;
};

// One loop over fakes. run() hands out what `queue.waiting` holds and returns.
struct Harness {
  WorkerConfig config;
  Queue queue;
  Copies copies;
  Transport transport;
  FakeClock clock;
  FakeSteady steady;
  std::unique_ptr<Throttle> throttle;
  int randoms = 0;
  double random_value = 0.5;
  notify::Channel channel = notify::Channel::kEmail;
  int index = 0;                          // the loop's number among those of its channel
  std::unique_ptr<ChannelSender> sender;  // instead of the fake transport
  std::optional<Book> book;               // a ledger (LEDGER_URL), none unless set
  RecordingSink status;                   // the status events

  Harness() {
    config.delay_tiers = {10s, 1min, 10min, 1h, 6h};
    config.policy.spread = 0ms;
    config.retry.base = 10s;
    config.retry.max_attempts = 8;
  }

  void run() {
    std::atomic<bool> stop{false};
    queue.stop = &stop;
    DeliveryLoop::Parts parts;
    parts.source = std::make_unique<FakeSource>(queue);
    parts.republisher = std::make_unique<FakeRepublisher>(copies);
    parts.sender = sender ? std::move(sender) : std::make_unique<FakeSender>(transport);
    parts.throttle = throttle.get();
    parts.clock = &clock;
    parts.steady = &steady;
    parts.random01 = [this] {
      ++randoms;
      return random_value;
    };
    if (book) parts.ledger = std::make_unique<FakeLedger>(*book, "email#0");
    parts.status = &status;
    DeliveryLoop loop(config, channel, index, std::move(parts));
    loop.run(stop);
  }

  const notify::status::Event& only_status() const {
    REQUIRE(status.events.size() == 1);
    return status.events.front();
  }

  const notify::amqp::Message& only_copy() const {
    REQUIRE(copies.published.size() == 1);
    return copies.published.front();
  }
};

// The log lines written while it lives, in place of stderr.
class CapturedLog {
 public:
  CapturedLog() {
    notify::log::set_sink([this](const nlohmann::json& line) { lines_.push_back(line); });
  }
  ~CapturedLog() { notify::log::set_sink({}); }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;

  std::vector<nlohmann::json> with_msg(const std::string& msg) const {
    std::vector<nlohmann::json> out;
    for (const auto& line : lines_) {
      if (line.value("msg", "") == msg) out.push_back(line);
    }
    return out;
  }
  const nlohmann::json& only(const std::string& msg) const {
    const auto found = with_msg(msg);
    REQUIRE(found.size() == 1);
    found_ = found.front();
    return found_;
  }

 private:
  std::vector<nlohmann::json> lines_;
  mutable nlohmann::json found_;
};

std::string header(const notify::amqp::Message& m, const std::string& name) {
  const auto it = m.headers.find(name);
  return it == m.headers.end() ? "<absent>" : it->second;
}

}  // namespace

TEST_CASE("loop: a posting the transport accepts is acknowledged, nothing is republished") {
  Harness h;
  h.queue.waiting.push_back(delivery_of(posting(), 7));
  h.run();
  REQUIRE(h.transport.sent.size() == 1);
  CHECK(h.transport.sent[0].posting_id == posting().posting_id);
  CHECK(h.queue.acked == std::vector<std::uint64_t>{7});
  CHECK(h.queue.rejected.empty());
  CHECK(h.copies.published.empty());
}

TEST_CASE("loop: an expired posting is acknowledged and never sent") {
  Harness h;
  auto p = posting();
  p.expires_at = kNoon;  // expires at this very instant
  h.queue.waiting.push_back(delivery_of(p, 3));
  h.run();
  CHECK(h.transport.sent.empty());
  CHECK(h.queue.acked == std::vector<std::uint64_t>{3});
  CHECK(h.copies.published.empty());
}

TEST_CASE("loop: quiet hours defer to the window's end through the fitting delay tier") {
  Harness h;
  h.clock.now_ = at("2026-11-23T22:30:00Z");  // 23:30 in Berlin: quiet until 08:00 = 07:00Z
  h.queue.waiting.push_back(delivery_of(posting(), 9));
  h.run();
  CHECK(h.transport.sent.empty());
  const auto& copy = h.only_copy();
  // 8.5 hours to wait: the largest tier that does not overshoot is 6 h.
  CHECK(copy.routing_key == "notifications.email.delay.6h");
  CHECK(header(copy, "x-deliver-at") == notify::format_iso8601(at("2026-11-24T07:00:00Z")));
  CHECK(header(copy, "x-defer-reason") == "quiet_hours");
  CHECK(header(copy, "x-attempts") == "0");
  CHECK(header(copy, "x-last-error") == "<absent>");
  CHECK(copy.body == delivery_of(posting(), 9).body);
  CHECK(copy.message_id == posting().posting_id);
  // The original goes only once the copy is confirmed.
  CHECK(h.queue.acked == std::vector<std::uint64_t>{9});
}

TEST_CASE("loop: a posting scheduled for later waits in a delay queue") {
  Harness h;
  auto p = posting();
  p.not_before = kNoon + 90s;
  h.queue.waiting.push_back(delivery_of(p, 1));
  h.run();
  CHECK(h.transport.sent.empty());
  const auto& copy = h.only_copy();
  CHECK(copy.routing_key == "notifications.email.delay.1m");
  CHECK(header(copy, "x-defer-reason") == "scheduled");
  CHECK(header(copy, "x-deliver-at") == notify::format_iso8601(kNoon + 90s));
  CHECK(h.queue.acked == std::vector<std::uint64_t>{1});
}

TEST_CASE("loop: a transient failure is retried with backoff and the injected jitter") {
  Harness h;
  h.random_value = 0.5;  // a quarter of the delay is jitter: 10 s + 0.5 · 2.5 s
  h.transport.answer = [](const notify::Posting&) {
    return SendResult{SendStatus::kTransient, 451, "451 4.3.0 try later"};
  };
  h.queue.waiting.push_back(delivery_of(posting(), 4));
  h.run();
  CHECK(h.transport.sent.size() == 1);
  CHECK(h.randoms >= 1);
  const auto& copy = h.only_copy();
  CHECK(copy.routing_key == "notifications.email.delay.10s");
  CHECK(header(copy, "x-defer-reason") == "retry");
  CHECK(header(copy, "x-attempts") == "1");
  CHECK(header(copy, "x-deliver-at") == notify::format_iso8601(kNoon + 11250ms));
  CHECK(header(copy, "x-last-error") == "smtp 451: 451 4.3.0 try later");
  CHECK(h.queue.acked == std::vector<std::uint64_t>{4});
}

TEST_CASE("loop: retries exhausted go to the dead-letter queue with the reason and last error") {
  Harness h;
  h.transport.answer = [](const notify::Posting&) {
    return SendResult{SendStatus::kTransient, 421, "421 bye"};
  };
  // Seven failed sends so far (a redelivery from a delay queue): this is the eighth.
  h.queue.waiting.push_back(delivery_of(posting(), 5, {{"x-attempts", "7"}}));
  h.run();
  const auto& copy = h.only_copy();
  CHECK(copy.routing_key == "notifications.email.dead");
  CHECK(header(copy, "x-dead-reason") == "attempts_exhausted");
  CHECK(header(copy, "x-attempts") == "8");
  CHECK(header(copy, "x-last-error") == "smtp 421: 421 bye");
  CHECK(h.queue.acked == std::vector<std::uint64_t>{5});
}

TEST_CASE("loop: a permanent failure is dead-lettered at once") {
  Harness h;
  h.transport.answer = [](const notify::Posting&) {
    return SendResult{SendStatus::kPermanent, 550, "550 5.1.1 no such user"};
  };
  h.queue.waiting.push_back(delivery_of(posting(), 6));
  h.run();
  const auto& copy = h.only_copy();
  CHECK(copy.routing_key == "notifications.email.dead");
  CHECK(header(copy, "x-dead-reason") == "permanent_failure");
  CHECK(header(copy, "x-attempts") == "1");
  CHECK(header(copy, "x-last-error") == "smtp 550: 550 5.1.1 no such user");
  CHECK(h.queue.acked == std::vector<std::uint64_t>{6});
}

TEST_CASE("loop: an undecodable posting is dead-lettered at once, never sent") {
  Harness h;
  notify::amqp::Delivery d;
  d.delivery_tag = 8;
  d.body = "{not json";
  d.message_id = "m8";
  h.queue.waiting.push_back(d);
  h.run();
  CHECK(h.transport.sent.empty());
  const auto& copy = h.only_copy();
  CHECK(copy.routing_key == "notifications.email.dead");
  CHECK(header(copy, "x-dead-reason").rfind("undecodable: ", 0) == 0);
  CHECK(header(copy, "x-attempts") == "0");
  CHECK(copy.body == "{not json");
  CHECK(h.queue.acked == std::vector<std::uint64_t>{8});
}

TEST_CASE("loop: a sender that throws is retried, then dead-lettered; the loop goes on") {
  Harness h;
  h.transport.answer = [](const notify::Posting& p) -> SendResult {
    if (p.content.subject == "throw") throw std::runtime_error("renderer exploded");
    return SendResult{SendStatus::kSent, 250, "250 ok"};
  };
  auto thrower = posting("t-1");
  thrower.content.subject = "throw";
  h.queue.waiting.push_back(delivery_of(thrower, 1));
  h.queue.waiting.push_back(delivery_of(thrower, 2, {{"x-attempts", "7"}}));
  h.queue.waiting.push_back(delivery_of(posting("fine"), 3));
  h.run();
  REQUIRE(h.copies.published.size() == 2);
  const auto& retry = h.copies.published[0];
  CHECK(header(retry, "x-defer-reason") == "retry");
  CHECK(header(retry, "x-attempts") == "1");
  CHECK(header(retry, "x-last-error") == "exception: renderer exploded");
  const auto& dead = h.copies.published[1];
  CHECK(dead.routing_key == "notifications.email.dead");
  CHECK(header(dead, "x-dead-reason") == "attempts_exhausted");
  CHECK(header(dead, "x-attempts") == "8");
  CHECK(header(dead, "x-last-error") == "exception: renderer exploded");
  CHECK(h.queue.acked == std::vector<std::uint64_t>{1, 2, 3});
  CHECK(h.transport.sent.size() == 3);
}

TEST_CASE("loop: a copy not stored leaves the original in the queue, requeued") {
  for (const char* answer : {"nacked", "returned", "unconfirmed"}) {
    CAPTURE(answer);
    Harness h;
    h.clock.now_ = at("2026-11-23T22:30:00Z");  // quiet hours: a copy is needed
    h.copies.answers = {answer};
    h.queue.waiting.push_back(delivery_of(posting(), 11));
    h.run();
    CHECK(h.copies.published.size() == 1);
    CHECK(h.queue.acked.empty());
    CHECK(h.queue.rejected == std::vector<std::pair<std::uint64_t, bool>>{{11, true}});
    // The loop pauses before the next delivery so a refusing broker is not asked in a loop.
    CHECK(h.steady.slept() >= 500ms);
  }
}

TEST_CASE("loop: the connection lost while moving a copy: original requeued, loop reconnects") {
  Harness h;
  h.clock.now_ = at("2026-11-23T22:30:00Z");
  h.copies.answers = {"lost"};
  h.queue.waiting.push_back(delivery_of(posting(), 12));
  h.queue.waiting.push_back(delivery_of(posting("second"), 13));
  h.run();
  CHECK(h.queue.rejected == std::vector<std::pair<std::uint64_t, bool>>{{12, true}});
  CHECK(h.queue.acked == std::vector<std::uint64_t>{13});  // its copy went through
  CHECK(h.copies.connects == 2);                           // connected again
  CHECK(h.copies.published.size() == 2);
}

TEST_CASE("loop: short throttle waits are slept, long ones postponed through the ladder") {
  SUBCASE("one per second: the second mail waits a second") {
    Harness h;
    h.throttle = std::make_unique<Throttle>(ThrottleOptions{1, 0, 1, 1});
    h.queue.waiting.push_back(delivery_of(posting("a"), 1));
    h.queue.waiting.push_back(delivery_of(posting("b"), 2));
    h.run();
    CHECK(h.transport.sent.size() == 2);
    CHECK(h.steady.sleeps == std::vector<std::chrono::milliseconds>{1000ms});
    CHECK(h.queue.acked == std::vector<std::uint64_t>{1, 2});
    CHECK(h.copies.published.empty());
  }
  SUBCASE("one per hour: the second mail is postponed, throttled") {
    Harness h;
    h.throttle = std::make_unique<Throttle>(ThrottleOptions{0, 1, 0, 1});
    h.queue.waiting.push_back(delivery_of(posting("a"), 1));
    h.queue.waiting.push_back(delivery_of(posting("b"), 2));
    h.run();
    CHECK(h.transport.sent.size() == 1);
    const auto& copy = h.only_copy();
    CHECK(copy.message_id == "b");
    CHECK(copy.routing_key == "notifications.email.delay.1h");
    CHECK(header(copy, "x-defer-reason") == "throttled");
    CHECK(header(copy, "x-deliver-at") == notify::format_iso8601(kNoon + 1h));
    CHECK(h.queue.acked == std::vector<std::uint64_t>{1, 2});
    CHECK(h.steady.sleeps.empty());
  }
}

TEST_CASE("loop: a posting redelivered after a crash carries its attempts and deferral") {
  SUBCASE("redelivered before it was acknowledged: sent again (same Message-ID downstream)") {
    Harness h;
    auto d = delivery_of(posting(), 21, {{"x-attempts", "2"}});
    d.redelivered = true;
    h.queue.waiting.push_back(d);
    h.run();
    CHECK(h.transport.sent.size() == 1);
    CHECK(h.queue.acked == std::vector<std::uint64_t>{21});
  }
  SUBCASE("its earlier failures count: the next failure is attempt three") {
    Harness h;
    h.transport.answer = [](const notify::Posting&) {
      return SendResult{SendStatus::kTransient, 451, "later"};
    };
    auto d = delivery_of(posting(), 22, {{"x-attempts", "2"}, {"x-last-error", "smtp 451: old"}});
    d.redelivered = true;
    h.queue.waiting.push_back(d);
    h.run();
    const auto& copy = h.only_copy();
    CHECK(header(copy, "x-attempts") == "3");
    CHECK(header(copy, "x-last-error") == "smtp 451: later");
    CHECK(header(copy, "x-deliver-at") == notify::format_iso8601(kNoon + 40s + 5000ms));
  }
  SUBCASE("back before its deferral ended: another hop, reason deferred, attempts kept") {
    Harness h;
    const auto until = kNoon + 5min;
    auto d = delivery_of(posting(), 23,
                         {{"x-attempts", "1"},
                          {"x-deliver-at", notify::format_iso8601(until)},
                          {"x-defer-reason", "retry"}});
    d.redelivered = true;
    h.queue.waiting.push_back(d);
    h.run();
    CHECK(h.transport.sent.empty());
    const auto& copy = h.only_copy();
    CHECK(copy.routing_key == "notifications.email.delay.1m");
    CHECK(header(copy, "x-defer-reason") == "deferred");
    CHECK(header(copy, "x-attempts") == "1");
    CHECK(header(copy, "x-deliver-at") == notify::format_iso8601(until));
  }
}

TEST_CASE("loop: RabbitMQ unavailable: reconnects with a doubling backoff") {
  Harness h;
  h.queue.failing_connects = 3;
  h.queue.waiting.push_back(delivery_of(posting(), 1));
  h.run();
  CHECK(h.queue.connects == 4);
  CHECK(h.steady.slept() == 500ms + 1000ms + 2000ms);
  CHECK(h.queue.acked == std::vector<std::uint64_t>{1});
}

TEST_CASE("loop: a webhook outside the allowlist is refused before any request, dead-lettered") {
  Harness h;
  h.channel = notify::Channel::kWebhook;
  h.config.webhook_url_allowlist = {"https://hooks.example.org/"};
  h.sender = make_sender(notify::Channel::kWebhook, h.config);  // the real webhook sender
  auto p = posting();
  p.channel = notify::Channel::kWebhook;
  p.recipient.address = "http://127.0.0.1:1/internal";
  h.queue.waiting.push_back(delivery_of(p, 31));
  h.run();
  const auto& copy = h.only_copy();
  CHECK(copy.routing_key == "notifications.webhook.dead");
  CHECK(header(copy, "x-dead-reason") == "permanent_failure");
  CHECK(header(copy, "x-last-error").find("not allowed by WEBHOOK_URL_ALLOWLIST") !=
        std::string::npos);
  CHECK(h.queue.acked == std::vector<std::uint64_t>{31});
}

TEST_CASE("loop: a missing part is refused when the loop is made") {
  WorkerConfig config;
  FakeClock clock;
  FakeSteady steady;
  DeliveryLoop::Parts parts;
  parts.clock = &clock;
  parts.steady = &steady;
  const auto make = [&] {
    DeliveryLoop loop(config, notify::Channel::kEmail, 0, std::move(parts));
  };
  CHECK_THROWS_AS(make(), std::invalid_argument);
}

TEST_CASE("moves: the copy keeps body, id, priority and headers, drops x-death") {
  notify::amqp::Topology topology;
  topology.delay_tiers = {10s, 1min};
  auto d = delivery_of(posting(), 1, {{"x-death", "..."}, {"x-defer-reason", "quiet_hours"}});
  const auto dead = move_for(d, DeadLetter{DeadReason::kPermanentFailure, 1, "smtp 550: no", {}},
                             kNoon, topology, "email");
  REQUIRE(dead);
  CHECK(dead->copy.headers.count("x-death") == 0);
  CHECK(dead->copy.headers.at("event_id") == "e1");
  CHECK(dead->copy.priority == 5);
  CHECK(!move_for(d, Ack{AckOutcome::kSent}, kNoon, topology, "email"));
  // Below the smallest tier: the smallest tier.
  const auto soon =
      move_for(d, Postpone{kNoon + 1s, DeferReason::kRetry, 1, {}, {}}, kNoon, topology, "email");
  REQUIRE(soon);
  CHECK(soon->tier == 10s);
  CHECK(soon->copy.routing_key == "notifications.email.delay.10s");
}

TEST_CASE("ledger: claimed before the send, marked after it, acknowledged after the mark") {
  Harness h;
  h.book.emplace();
  const auto p = posting();
  h.queue.waiting.push_back(delivery_of(p, 7));
  h.run();
  REQUIRE(h.transport.sent.size() == 1);
  CHECK(h.book->calls ==
        std::vector<std::string>{"connect", "claim " + p.posting_id, "mark " + p.posting_id});
  CHECK(h.book->entries[p.posting_id] == "sent");
  CHECK(h.queue.acked == std::vector<std::uint64_t>{7});
}

TEST_CASE(
    "ledger: a posting already sent is acknowledged without sending, whatever its cause, and "
    "reported a duplicate") {
  Harness h;
  h.book.emplace();
  const auto p = posting();
  h.queue.waiting.push_back(delivery_of(p, 1));
  auto redelivered = delivery_of(p, 2);
  redelivered.redelivered = true;
  h.queue.waiting.push_back(redelivered);
  h.queue.waiting.push_back(delivery_of(p, 3, {{"x-attempts", "1"}}));
  h.queue.waiting.push_back(delivery_of(p, 4));
  h.run();
  CHECK(h.transport.sent.size() == 1);
  CHECK(h.queue.acked == std::vector<std::uint64_t>{1, 2, 3, 4});
  CHECK(h.copies.published.empty());
  CHECK(duplicate_cause(redelivered) == "redelivered");
  CHECK(duplicate_cause(delivery_of(p, 3, {{"x-attempts", "1"}})) == "retry_copy");
  CHECK(duplicate_cause(delivery_of(p, 4)) == "republished");
  // Each reported as a duplicate suppressed, with its cause.
  REQUIRE(h.status.events.size() == 4);
  CHECK(h.status.events[0].status == "sent");
  std::vector<std::string> causes;
  for (std::size_t i = 1; i < 4; ++i) {
    CHECK(h.status.events[i].status == "duplicate_suppressed");
    CHECK(h.status.events[i].posting_id == p.posting_id);
    causes.push_back(h.status.events[i].reason);
  }
  CHECK(causes == std::vector<std::string>{"redelivered", "retry_copy", "republished"});
}

TEST_CASE("ledger: a posting another worker holds waits in a delay queue for its lease") {
  Harness h;
  h.book.emplace();
  const auto p = posting();
  h.book->entries[p.posting_id] = "email#3:another-process";
  h.book->held_for[p.posting_id] = 45s;
  h.queue.waiting.push_back(delivery_of(p, 5));
  h.run();
  CHECK(h.transport.sent.empty());
  const auto& copy = h.only_copy();
  CHECK(header(copy, "x-defer-reason") == "claimed");
  CHECK(header(copy, "x-deliver-at") == notify::format_iso8601(kNoon + 45s));
  CHECK(header(copy, "x-attempts") == "0");
  CHECK(copy.routing_key == "notifications.email.delay.10s");
  CHECK(h.queue.acked == std::vector<std::uint64_t>{5});

  // The holder died: once the lease is over, the copy comes back and is sent.
  Harness later;
  later.book.emplace();
  later.clock.now_ = kNoon + 46s;
  auto back = delivery_of(p, 6, copy.headers);
  later.queue.waiting.push_back(back);
  later.run();
  CHECK(later.transport.sent.size() == 1);
  CHECK(later.book->entries[p.posting_id] == "sent");
}

TEST_CASE("ledger: a transient failure releases the claim for the retry; success marks it") {
  Harness h;
  h.book.emplace();
  const auto p = posting();
  h.transport.answer = [](const notify::Posting&) {
    return SendResult{SendStatus::kTransient, 451, "451 try later"};
  };
  h.queue.waiting.push_back(delivery_of(p, 8));
  h.run();
  CHECK(h.book->calls.back() == "release " + p.posting_id);
  CHECK(h.book->entries.count(p.posting_id) == 0);
  CHECK(header(h.only_copy(), "x-defer-reason") == "retry");
}

TEST_CASE("ledger: a permanent failure releases the claim, so a replay can send it") {
  Harness h;
  h.book.emplace();
  const auto p = posting();
  h.transport.answer = [](const notify::Posting&) {
    return SendResult{SendStatus::kPermanent, 550, "550 no such user"};
  };
  h.queue.waiting.push_back(delivery_of(p, 8));
  h.run();
  CHECK(h.book->entries.count(p.posting_id) == 0);
  CHECK(h.only_copy().routing_key == "notifications.email.dead");
}

TEST_CASE("ledger: a sender that throws releases the claim") {
  Harness h;
  h.book.emplace();
  const auto p = posting();
  h.transport.answer = [](const notify::Posting&) -> SendResult {
    throw std::runtime_error("boom");
  };
  h.queue.waiting.push_back(delivery_of(p, 8));
  h.run();
  CHECK(h.book->entries.count(p.posting_id) == 0);
  CHECK(header(h.only_copy(), "x-defer-reason") == "retry");
}

TEST_CASE("ledger: unreachable at the claim: the delivery goes back unsent, then flows") {
  Harness h;
  h.book.emplace();
  h.book->failing_claims = 1;
  h.book->failing_connects = 2;  // and it stays away for two more tries
  const auto p = posting();
  auto d = delivery_of(p, 4);
  h.queue.waiting.push_back(d);
  // What RabbitMQ does with a rejected delivery: it comes again.
  d.delivery_tag = 5;
  d.redelivered = true;
  h.queue.waiting.push_back(d);
  h.run();
  CHECK(h.queue.rejected == std::vector<std::pair<std::uint64_t, bool>>{{4, true}});
  REQUIRE(h.transport.sent.size() == 1);
  CHECK(h.queue.acked == std::vector<std::uint64_t>{5});
  // Reconnecting backed off: three connects failed or not, sleeps in between.
  CHECK(std::count(h.book->calls.begin(), h.book->calls.end(), "connect") == 4);
  CHECK(h.steady.slept() >= 1500ms);
}

TEST_CASE("ledger: a mark that fails is owed: acknowledged, then recorded before the next one") {
  Harness h;
  h.book.emplace();
  h.book->failing_marks = 1;
  h.book->failing_connects = 1;
  const auto p = posting();
  const auto q = posting("99999999-2222-5333-8444-555555555555");
  h.queue.waiting.push_back(delivery_of(p, 1));
  h.queue.waiting.push_back(delivery_of(q, 2));
  h.run();
  CHECK(h.transport.sent.size() == 2);
  CHECK(h.queue.acked == std::vector<std::uint64_t>{1, 2});
  CHECK(h.book->entries[p.posting_id] == "sent");
  CHECK(h.book->entries[q.posting_id] == "sent");
  // Both claimed with their batch; the owed mark came before the next mark.
  const std::vector<std::string> expected = {"connect",
                                             "claim " + p.posting_id,
                                             "claim " + q.posting_id,
                                             "mark " + p.posting_id,
                                             "connect",
                                             "connect",
                                             "mark " + p.posting_id,
                                             "mark " + q.posting_id};
  std::string calls;
  for (const auto& call : h.book->calls) calls += call + "; ";
  INFO(calls);
  CHECK(h.book->calls == expected);
}

TEST_CASE("ledger: an expired or deferred posting is never claimed") {
  Harness h;
  h.book.emplace();
  auto expired = posting();
  expired.expires_at = kNoon;
  h.queue.waiting.push_back(delivery_of(expired, 1));
  auto later = posting("99999999-2222-5333-8444-555555555555");
  later.not_before = kNoon + 90s;
  h.queue.waiting.push_back(delivery_of(later, 2));
  h.run();
  CHECK(h.book->calls == std::vector<std::string>{"connect"});
}

TEST_CASE("ledger: an idle loop asks the ledger once a second and reconnects when it is gone") {
  Harness h;
  h.book.emplace();
  h.book->failing_pings = 1;
  h.queue.idle_polls = 3;
  h.run();
  // The first idle poll asks (and fails); the loop reconnects; time has not moved since, so the
  // next idle polls do not ask again.
  CHECK(h.book->pings == 1);
  CHECK(std::count(h.book->calls.begin(), h.book->calls.end(), "connect") == 2);
}

TEST_CASE("batch: the claims of a batch go to the ledger in one round trip") {
  Harness h;
  h.book.emplace();
  const auto a = posting("a");
  const auto b = posting("b");
  const auto c = posting("c");
  h.queue.waiting = {delivery_of(a, 1), delivery_of(b, 2), delivery_of(c, 3)};
  h.run();
  CHECK(h.transport.sent.size() == 3);
  CHECK(h.book->round_trips == 1);
  CHECK(h.book->calls == std::vector<std::string>{"connect", "claim a", "claim b", "claim c",
                                                  "mark a", "mark b", "mark c"});
  // Acknowledged together, once all three were marked.
  CHECK(h.queue.settles == std::vector<std::string>{"ack 3 multiple"});
  CHECK(h.queue.acked == std::vector<std::uint64_t>{1, 2, 3});
  CHECK(h.queue.errors.empty());
}

TEST_CASE("batch: a second copy of a posting in the batch is claimed after the first's mark") {
  Harness h;
  h.book.emplace();
  const auto a = posting("a");
  h.queue.waiting = {delivery_of(a, 1), delivery_of(a, 2)};
  h.run();
  CHECK(h.transport.sent.size() == 1);
  CHECK(h.book->calls == std::vector<std::string>{"connect", "claim a", "mark a", "claim a"});
  CHECK(h.queue.settles == std::vector<std::string>{"ack 2 multiple"});
}

TEST_CASE("batch: a multiple ack covers only the settled prefix; a reject in the middle alone") {
  Harness h;
  h.transport.answer = [](const notify::Posting& p) {
    if (p.posting_id == "b") return SendResult{SendStatus::kTransient, 451, "451 later"};
    if (p.posting_id == "e") return SendResult{SendStatus::kPermanent, 550, "550 no such user"};
    return SendResult{SendStatus::kSent, 250, "250 ok"};
  };
  h.copies.answers = {"nacked"};  // b's retry copy is not stored: b stays in the queue
  h.queue.waiting = {delivery_of(posting("a"), 1), delivery_of(posting("b"), 2),
                     delivery_of(posting("c"), 3), delivery_of(posting("d"), 4),
                     delivery_of(posting("e"), 5)};
  h.run();
  CHECK(h.transport.sent.size() == 5);
  // b's and e's copies awaited together, once.
  CHECK(h.copies.windows == std::vector<std::size_t>{2});
  CHECK(h.queue.settles == std::vector<std::string>{"ack 1", "reject 2 requeue", "ack 5 multiple"});
  CHECK(h.queue.acked == std::vector<std::uint64_t>{1, 3, 4, 5});
  CHECK(h.queue.rejected == std::vector<std::pair<std::uint64_t, bool>>{{2, true}});
  CHECK(h.queue.errors.empty());
}

TEST_CASE("batch: deferral copies confirmed once per batch; an unconfirmed copy's original stays") {
  Harness h;
  h.clock.now_ = at("2026-11-23T22:30:00Z");  // quiet hours in Berlin: every posting is parked
  h.copies.answers = {"acked", "unconfirmed", "acked", "returned"};
  h.queue.waiting = {delivery_of(posting("a"), 1), delivery_of(posting("b"), 2),
                     delivery_of(posting("c"), 3), delivery_of(posting("d"), 4)};
  h.run();
  CHECK(h.transport.sent.empty());
  CHECK(h.copies.published.size() == 4);
  CHECK(h.copies.windows == std::vector<std::size_t>{4});
  CHECK(h.queue.settles ==
        std::vector<std::string>{"ack 1", "reject 2 requeue", "ack 3", "reject 4 requeue"});
  CHECK(h.queue.errors.empty());
  CHECK(h.steady.slept() >= 500ms);  // copies refused: the loop pauses before the next batch
}

TEST_CASE("batch: a claim half through its lease is renewed before its mail is sent") {
  Harness h;
  h.book.emplace();
  h.config.ledger_lease = 10s;
  // Each send takes 6 s: by b's turn its claim (taken with the batch) is 6 s old.
  h.transport.answer = [&h](const notify::Posting&) {
    h.steady.now_ += 6s;
    return SendResult{SendStatus::kSent, 250, "250 ok"};
  };
  h.queue.waiting = {delivery_of(posting("a"), 1), delivery_of(posting("b"), 2),
                     delivery_of(posting("c"), 3)};
  h.run();
  CHECK(h.transport.sent.size() == 3);
  CHECK(h.book->calls == std::vector<std::string>{"connect", "claim a", "claim b", "claim c",
                                                  "mark a", "claim b", "mark b", "claim c",
                                                  "mark c"});
  CHECK(h.book->entries["c"] == "sent");
}

TEST_CASE("batch: the loop never waits to fill a batch, and a batch stops at the prefetch") {
  SUBCASE("what arrived is handled; the next delivery only after the batch is settled") {
    Harness h;
    h.queue.waiting = {delivery_of(posting("a"), 1), delivery_of(posting("b"), 2)};
    h.queue.arriving = {delivery_of(posting("c"), 3)};
    h.run();
    CHECK(h.queue.events == std::vector<std::string>{"wait", "received", "received",
                                                     "ack 2 multiple", "wait", "received", "ack 3",
                                                     "wait"});
  }
  SUBCASE("no more than the prefetch in one batch") {
    Harness h;
    h.config.prefetch = 2;
    h.queue.waiting = {delivery_of(posting("a"), 1), delivery_of(posting("b"), 2),
                       delivery_of(posting("c"), 3)};
    h.run();
    CHECK(h.queue.events == std::vector<std::string>{"wait", "received", "ack 2 multiple", "wait",
                                                     "received", "ack 3", "wait"});
  }
}

TEST_CASE("batch: stopping mid-batch sends nothing more; the rest goes back to the queue") {
  Harness h;
  h.book.emplace();
  h.transport.answer = [&h](const notify::Posting&) {
    h.queue.stop->store(true);  // SIGTERM while the first mail is sent
    return SendResult{SendStatus::kSent, 250, "250 ok"};
  };
  h.queue.waiting = {delivery_of(posting("a"), 1), delivery_of(posting("b"), 2),
                     delivery_of(posting("c"), 3)};
  h.run();
  CHECK(h.transport.sent.size() == 1);
  CHECK(h.queue.settles ==
        std::vector<std::string>{"ack 1", "reject 2 requeue", "reject 3 requeue"});
  // Their claims released at once, not left to their lease.
  CHECK(h.book->entries.count("b") == 0);
  CHECK(h.book->entries.count("c") == 0);
  CHECK(h.queue.errors.empty());
}

TEST_CASE("logs: each loop's lines name its channel and loop, retries included") {
  const auto transient = [](const notify::Posting&) {
    return SendResult{SendStatus::kTransient, 451, "451 4.3.0 try later"};
  };
  CapturedLog log;
  Harness email;
  email.index = 1;
  email.transport.answer = transient;
  email.queue.waiting.push_back(delivery_of(posting(), 4));
  email.run();

  Harness webhook;
  webhook.channel = notify::Channel::kWebhook;
  webhook.transport.answer = transient;
  auto p = posting("22222222-2222-5333-8444-555555555555");
  p.channel = notify::Channel::kWebhook;
  p.recipient.address = "https://hooks.example.org/x";
  webhook.queue.waiting.push_back(delivery_of(p, 5));
  webhook.run();

  const auto retries = log.with_msg("posting deferred");
  REQUIRE(retries.size() == 2);
  CHECK(retries[0]["reason"] == "retry");
  CHECK(retries[0]["channel"] == "email");
  CHECK(retries[0]["loop"] == "email#1");
  CHECK(retries[1]["reason"] == "retry");
  CHECK(retries[1]["channel"] == "webhook");
  CHECK(retries[1]["loop"] == "webhook#0");
  for (const char* msg : {"rabbitmq connected"}) {
    const auto lines = log.with_msg(msg);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0]["loop"] == "email#1");
    CHECK(lines[1]["loop"] == "webhook#0");
    CHECK(lines[1]["channel"] == "webhook");
  }
}

TEST_CASE("logs: mail held back by quiet hours is logged at info with its release time") {
  CapturedLog log;
  Harness h;
  h.clock.now_ = at("2026-11-23T22:30:00Z");  // 23:30 in Berlin: quiet until 08:00 = 07:00Z
  h.queue.waiting.push_back(delivery_of(posting(), 9));
  h.run();
  const nlohmann::json& line = log.only("posting deferred");
  CHECK(line["level"] == "info");
  CHECK(line["reason"] == "quiet_hours");
  CHECK(line["until"] == notify::format_iso8601(at("2026-11-24T07:00:00Z")));
  CHECK(line["posting_id"] == posting().posting_id);
  CHECK(line["zone"] == "Europe/Berlin");
  CHECK(line["loop"] == "email#0");
  CHECK(line.find("ann@example.com") == line.end());
  CHECK(line.dump().find("ann@example.com") == std::string::npos);
}

TEST_CASE("logs: a scheduled posting is logged with its time; no zone given reads the default") {
  CapturedLog log;
  Harness h;
  h.config.policy.default_timezone = "America/New_York";
  auto p = posting();
  p.not_before = kNoon + 90s;
  p.recipient.timezone = "";
  h.queue.waiting.push_back(delivery_of(p, 1));
  h.run();
  const nlohmann::json& line = log.only("posting deferred");
  CHECK(line["level"] == "info");
  CHECK(line["reason"] == "scheduled");
  CHECK(line["until"] == notify::format_iso8601(kNoon + 90s));
  CHECK(line["posting_id"] == p.posting_id);
  CHECK(line["zone"] == "America/New_York");
}

TEST_CASE("logs: a retry names no zone, only its time") {
  CapturedLog log;
  Harness h;
  h.transport.answer = [](const notify::Posting&) {
    return SendResult{SendStatus::kTransient, 451, "451 4.3.0 try later"};
  };
  h.queue.waiting.push_back(delivery_of(posting(), 4));
  h.run();
  const nlohmann::json& line = log.only("posting deferred");
  CHECK(line["reason"] == "retry");
  CHECK(line.contains("until"));
  CHECK_FALSE(line.contains("zone"));
}

namespace {

// The status event of posting() with this status at `time`, the identity filled in.
notify::status::Event status_of(const char* what, notify::TimePoint time) {
  const auto p = posting();
  notify::status::Event e;
  e.status = what;
  e.time = time;
  e.service = "worker_notifications";
  e.event_id = p.event_id;
  e.event_type = p.event_type;
  e.posting_id = p.posting_id;
  e.user_id = p.recipient.user_id;
  e.channel = "email";
  e.template_name = p.template_name;
  return e;
}

}  // namespace

TEST_CASE("status: a sent posting reports sent with the transport's reply") {
  Harness h;
  h.transport.answer = [](const notify::Posting&) {
    return SendResult{SendStatus::kSent, 250, "250 2.0.0 Ok: queued as 4F2A <ann@example.com>"};
  };
  h.queue.waiting.push_back(delivery_of(posting(), 7));
  h.run();
  auto expected = status_of("sent", kNoon);
  expected.reply = "smtp 250: 2.0.0 Ok: queued as 4F2A <a***@example.com>";
  CHECK(h.only_status() == expected);
}

TEST_CASE("status: a webhook's reply is its HTTP status") {
  Harness h;
  h.channel = notify::Channel::kWebhook;
  h.transport.answer = [](const notify::Posting&) {
    return SendResult{SendStatus::kSent, 204, "HTTP 204"};
  };
  auto p = posting();
  p.channel = notify::Channel::kWebhook;
  h.queue.waiting.push_back(delivery_of(p, 7));
  h.run();
  auto expected = status_of("sent", kNoon);
  expected.channel = "webhook";
  expected.reply = "http 204";
  CHECK(h.only_status() == expected);
}

TEST_CASE("status: quiet hours report deferred until the window's end, in the recipient's zone") {
  Harness h;
  h.clock.now_ = at("2026-11-23T22:30:00Z");  // 23:30 in Berlin
  h.queue.waiting.push_back(delivery_of(posting(), 9));
  h.run();
  auto expected = status_of("deferred", at("2026-11-23T22:30:00Z"));
  expected.reason = "quiet_hours";
  expected.until = at("2026-11-24T07:00:00Z");
  expected.zone = "Europe/Berlin";
  CHECK(h.only_status() == expected);
}

TEST_CASE("status: a schedule reports deferred with its reason and time") {
  Harness h;
  auto p = posting();
  p.not_before = kNoon + 90s;
  h.queue.waiting.push_back(delivery_of(p, 1));
  h.run();
  const auto& e = h.only_status();
  CHECK(e.status == "deferred");
  CHECK(e.reason == "scheduled");
  CHECK(e.until == std::optional<notify::TimePoint>(kNoon + 90s));
  CHECK_FALSE(e.attempts.has_value());
  CHECK(e.last_error.empty());
}

TEST_CASE("status: a retry reports deferred with its attempts and the masked last error") {
  Harness h;
  h.transport.answer = [](const notify::Posting&) {
    return SendResult{SendStatus::kTransient, 451, "451 4.3.0 <ann@example.com> try later"};
  };
  h.queue.waiting.push_back(delivery_of(posting(), 4));
  h.run();
  auto expected = status_of("deferred", kNoon);
  expected.reason = "retry";
  expected.until = kNoon + 11250ms;
  expected.attempts = 1;
  expected.last_error = "smtp 451: 451 4.3.0 <a***@example.com> try later";
  CHECK(h.only_status() == expected);
}

TEST_CASE("status: expired postings report expired with the kind of expiry") {
  SUBCASE("past its expiry") {
    Harness h;
    auto p = posting();
    p.expires_at = kNoon;
    h.queue.waiting.push_back(delivery_of(p, 3));
    h.run();
    auto expected = status_of("expired", kNoon);
    expected.reason = "expired";
    CHECK(h.only_status() == expected);
  }
  SUBCASE("its deferral ends after its expiry") {
    Harness h;
    auto p = posting();
    p.expires_at = kNoon + 1h;
    h.queue.waiting.push_back(
        delivery_of(p, 3, {{"x-deliver-at", notify::format_iso8601(kNoon + 2h)}}));
    h.run();
    auto expected = status_of("expired", kNoon);
    expected.reason = "expired_before_window";
    CHECK(h.only_status() == expected);
  }
}

TEST_CASE("status: dead letters report the reason, attempts and masked last error") {
  SUBCASE("a permanent failure") {
    Harness h;
    h.transport.answer = [](const notify::Posting&) {
      return SendResult{SendStatus::kPermanent, 550, "550 5.1.1 <ann@example.com>: no such user"};
    };
    h.queue.waiting.push_back(delivery_of(posting(), 6));
    h.run();
    auto expected = status_of("dead_lettered", kNoon);
    expected.reason = "permanent_failure";
    expected.attempts = 1;
    expected.last_error = "smtp 550: 550 5.1.1 <a***@example.com>: no such user";
    CHECK(h.only_status() == expected);
  }
  SUBCASE("attempts exhausted") {
    Harness h;
    h.transport.answer = [](const notify::Posting&) {
      return SendResult{SendStatus::kTransient, 421, "421 bye"};
    };
    h.queue.waiting.push_back(delivery_of(posting(), 5, {{"x-attempts", "7"}}));
    h.run();
    auto expected = status_of("dead_lettered", kNoon);
    expected.reason = "attempts_exhausted";
    expected.attempts = 8;
    expected.last_error = "smtp 421: 421 bye";
    CHECK(h.only_status() == expected);
  }
  SUBCASE("undecodable: the identity the envelope carries") {
    Harness h;
    notify::amqp::Delivery d;
    d.delivery_tag = 8;
    d.body = "{not json";
    d.message_id = "m8";
    d.headers = {{"event_id", "notify_events/0/8"}, {"template", "user_signed_up"}};
    h.queue.waiting.push_back(d);
    h.run();
    const auto& e = h.only_status();
    CHECK(e.status == "dead_lettered");
    CHECK(e.reason.rfind("undecodable: ", 0) == 0);
    CHECK(e.attempts == std::optional<int>(0));
    CHECK(e.event_id == "notify_events/0/8");
    CHECK(e.posting_id == "m8");
    CHECK(e.template_name == "user_signed_up");
    CHECK(e.channel == "email");
    CHECK(e.user_id.empty());
  }
}

TEST_CASE("status: a later hop of a deferral reports nothing; its first deferral did") {
  Harness h;
  h.queue.waiting.push_back(delivery_of(posting(), 23,
                                        {{"x-attempts", "1"},
                                         {"x-deliver-at", notify::format_iso8601(kNoon + 5min)},
                                         {"x-defer-reason", "retry"}}));
  h.run();
  CHECK(h.copies.published.size() == 1);  // hopped on
  CHECK(h.status.events.empty());
}

TEST_CASE("status: a posting left in the queue reports nothing until it is handled again") {
  Harness h;
  h.clock.now_ = at("2026-11-23T22:30:00Z");
  h.copies.answers = {"nacked"};  // the first copy not stored: original requeued
  h.queue.waiting.push_back(delivery_of(posting(), 11));
  h.queue.arriving.push_back(delivery_of(posting(), 12));  // RabbitMQ hands it out again
  h.run();
  CHECK(h.queue.rejected == std::vector<std::pair<std::uint64_t, bool>>{{11, true}});
  CHECK(h.queue.acked == std::vector<std::uint64_t>{12});
  const auto& e = h.only_status();
  CHECK(e.status == "deferred");
  CHECK(e.reason == "quiet_hours");
}

TEST_CASE("status: a batch reports each settled posting once, in the batch's order") {
  Harness h;
  h.transport.answer = [](const notify::Posting& p) {
    if (p.posting_id == "fails") return SendResult{SendStatus::kPermanent, 550, "550 no"};
    return SendResult{SendStatus::kSent, 250, "250 ok"};
  };
  auto expired = posting("expired");
  expired.expires_at = kNoon - 1s;
  auto later = posting("later");
  later.not_before = kNoon + 1h;
  h.queue.waiting.push_back(delivery_of(posting("sent"), 1));
  h.queue.waiting.push_back(delivery_of(expired, 2));
  h.queue.waiting.push_back(delivery_of(later, 3));
  h.queue.waiting.push_back(delivery_of(posting("fails"), 4));
  h.run();
  std::vector<std::string> seen;
  for (const auto& e : h.status.events) seen.push_back(e.posting_id + " " + e.status);
  CHECK(seen == std::vector<std::string>{"sent sent", "expired expired", "later deferred",
                                         "fails dead_lettered"});
}
