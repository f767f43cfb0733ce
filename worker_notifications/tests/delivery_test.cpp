#include <doctest/doctest.h>

#include "delivery.hpp"
#include "notify/time.hpp"

using namespace worker;
using namespace std::chrono_literals;

namespace {
notify::TimePoint at(const char* iso) { return *notify::parse_iso8601(iso); }

notify::Posting posting(notify::QuietHours quiet = notify::QuietHours::kRespect) {
  notify::Posting p;
  p.posting_id = "11111111-2222-5333-8444-555555555555";
  p.recipient = {"u1", "ann@example.com", "Ann", "Europe/Berlin", "en"};
  p.priority = 5;
  p.quiet_hours = quiet;
  p.expires_at = at("2026-11-24T12:00:00Z");
  return p;
}

const std::function<double()> kNoJitter = [] { return 0.0; };

PolicyOptions policy() {
  PolicyOptions o;
  o.spread = 0ms;
  return o;
}

template <typename T>
T as(const std::variant<std::monostate, Action>& v) {
  REQUIRE(std::holds_alternative<Action>(v));
  REQUIRE(std::holds_alternative<T>(std::get<Action>(v)));
  return std::get<T>(std::get<Action>(v));
}
}  // namespace

TEST_CASE("before sending: daytime sends, quiet hours defer to the window's end") {
  // 12:00 UTC is 13:00 in Berlin: send.
  CHECK(std::holds_alternative<std::monostate>(
      before_send(posting(), std::nullopt, 0, at("2026-11-23T12:00:00Z"), policy(), kNoJitter)));
  // 22:30 UTC is 23:30 in Berlin: deferred to 08:00 Berlin = 07:00 UTC.
  const auto p = as<Postpone>(
      before_send(posting(), std::nullopt, 0, at("2026-11-23T22:30:00Z"), policy(), kNoJitter));
  CHECK(p.until == at("2026-11-24T07:00:00Z"));
  CHECK(p.reason == DeferReason::kQuietHours);
  // A security notice bypasses quiet hours.
  CHECK(std::holds_alternative<std::monostate>(
      before_send(posting(notify::QuietHours::kBypass), std::nullopt, 0, at("2026-11-23T22:30:00Z"),
                  policy(), kNoJitter)));
}

TEST_CASE("before sending: expired postings are dropped, never sent") {
  CHECK(as<Ack>(before_send(posting(), std::nullopt, 0, at("2026-11-24T12:00:00Z"), policy(),
                            kNoJitter))
            .outcome == AckOutcome::kExpired);
  auto p = posting();
  p.expires_at = at("2026-11-24T06:00:00Z");  // before the quiet window ends
  CHECK(as<Ack>(before_send(p, std::nullopt, 0, at("2026-11-23T22:30:00Z"), policy(), kNoJitter))
            .outcome == AckOutcome::kExpiredBeforeWindow);
}

TEST_CASE("before sending: back from a delay queue early, the posting goes round again") {
  const auto p = as<Postpone>(before_send(posting(), at("2026-11-23T12:05:00Z"), 3,
                                          at("2026-11-23T12:00:00Z"), policy(), kNoJitter));
  CHECK(p.until == at("2026-11-23T12:05:00Z"));
  CHECK(p.attempts == 3);
  // Its time has come: the policy decides (daytime: send).
  CHECK(std::holds_alternative<std::monostate>(before_send(
      posting(), at("2026-11-23T11:59:00Z"), 3, at("2026-11-23T12:00:00Z"), policy(), kNoJitter)));
}

TEST_CASE("after sending: accepted, retried with backoff, or dead-lettered with the reply") {
  const auto now = at("2026-11-23T12:00:00Z");
  RetryOptions retry;  // 10 s base, 8 attempts
  const auto p = posting();
  CHECK(std::get<Ack>(after_send({SendStatus::kSent, 250, "ok"}, p, 0, now, retry, kNoJitter))
            .outcome == AckOutcome::kSent);

  const auto first =
      after_send({SendStatus::kTransient, 451, "451 try later"}, p, 0, now, retry, kNoJitter);
  REQUIRE(std::holds_alternative<Postpone>(first));
  CHECK(std::get<Postpone>(first).until == now + 10s);
  CHECK(std::get<Postpone>(first).attempts == 1);
  CHECK(std::get<Postpone>(first).last_error == "smtp 451: 451 try later");
  const auto third = after_send({SendStatus::kTransient, 451, "x"}, p, 2, now, retry, kNoJitter);
  CHECK(std::get<Postpone>(third).until == now + 40s);

  const auto exhausted =
      after_send({SendStatus::kTransient, 421, "bye"}, p, 7, now, retry, kNoJitter);
  REQUIRE(std::holds_alternative<DeadLetter>(exhausted));
  CHECK(std::get<DeadLetter>(exhausted).reason == DeadReason::kAttemptsExhausted);
  CHECK(std::get<DeadLetter>(exhausted).attempts == 8);

  const auto permanent =
      after_send({SendStatus::kPermanent, 550, "550 no such user"}, p, 0, now, retry, kNoJitter);
  REQUIRE(std::holds_alternative<DeadLetter>(permanent));
  CHECK(std::get<DeadLetter>(permanent).reason == DeadReason::kPermanentFailure);
  CHECK(std::get<DeadLetter>(permanent).last_error == "smtp 550: 550 no such user");

  auto soon = posting();
  soon.expires_at = now + 5s;  // the retry would come too late
  CHECK(
      std::get<Ack>(after_send({SendStatus::kTransient, 451, "x"}, soon, 0, now, retry, kNoJitter))
          .outcome == AckOutcome::kExpiredBeforeWindow);
}

TEST_CASE("an exception while handling is a transient failure: retried, then dead-lettered") {
  const auto now = at("2026-11-23T12:00:00Z");
  RetryOptions retry;  // 10 s base, 8 attempts
  const auto p = posting();

  const auto first = after_exception("boom", &p, 0, now, retry, kNoJitter);
  REQUIRE(std::holds_alternative<Postpone>(first));
  CHECK(std::get<Postpone>(first).until == now + 10s);
  CHECK(std::get<Postpone>(first).reason == DeferReason::kRetry);
  CHECK(std::get<Postpone>(first).attempts == 1);
  CHECK(std::get<Postpone>(first).last_error == "exception: boom");

  // It keeps throwing: after RETRY_MAX_ATTEMPTS it goes to the dead-letter queue with the text.
  const auto last = after_exception("std::bad_alloc", &p, 7, now, retry, kNoJitter);
  REQUIRE(std::holds_alternative<DeadLetter>(last));
  CHECK(std::get<DeadLetter>(last).reason == DeadReason::kAttemptsExhausted);
  CHECK(std::get<DeadLetter>(last).attempts == 8);
  CHECK(std::get<DeadLetter>(last).last_error == "exception: std::bad_alloc");

  // Past its expiry it is dropped like any other retry.
  auto soon = posting();
  soon.expires_at = now + 5s;
  CHECK(std::get<Ack>(after_exception("boom", &soon, 0, now, retry, kNoJitter)).outcome ==
        AckOutcome::kExpiredBeforeWindow);

  // No posting (not even decodable): dead-lettered at once, the exception as the reason.
  const auto undecodable = after_exception("bad json", nullptr, 0, now, retry, kNoJitter);
  REQUIRE(std::holds_alternative<DeadLetter>(undecodable));
  CHECK(std::get<DeadLetter>(undecodable).reason == DeadReason::kException);
  CHECK(dead_reason_text(std::get<DeadLetter>(undecodable)) == "exception: bad json");

  // The text is bounded: it travels in a header.
  const std::string huge(100000, 'x');
  const auto bounded = after_exception(huge, &p, 0, now, retry, kNoJitter);
  CHECK(std::get<Postpone>(bounded).last_error.size() < 1100);
  CHECK(std::get<Postpone>(bounded).last_error.ends_with("..."));
}

TEST_CASE("the Message-ID derives from the posting id and the sender's domain") {
  CHECK(message_id_for("abc", "notifications@example.org") == "abc@example.org");
  CHECK(message_id_for("abc", "Notify <n@mail.example.org>") == "abc@mail.example.org");
  CHECK(to_email(posting(), "n@example.org").message_id ==
        "11111111-2222-5333-8444-555555555555@example.org");
}

TEST_CASE("outcomes are written with the strings headers, logs and metrics use") {
  CHECK(to_string(AckOutcome::kSent) == "sent");
  CHECK(to_string(AckOutcome::kExpired) == "expired");
  CHECK(to_string(AckOutcome::kExpiredBeforeWindow) == "expired_before_window");
  CHECK(dead_reason_text({DeadReason::kPermanentFailure, 1, "smtp 550: no", {}}) ==
        "permanent_failure");
  CHECK(dead_reason_text({DeadReason::kAttemptsExhausted, 8, "smtp 451: later", {}}) ==
        "attempts_exhausted");
  CHECK(dead_reason_text({DeadReason::kUndecodable, 0, {}, "posting: not JSON"}) ==
        "undecodable: posting: not JSON");
  CHECK(dead_reason_text({DeadReason::kException, 1, {}, "boom"}) == "exception: boom");
}

TEST_CASE("a bulk e-mail without a usable unsubscribe link is dead-lettered, never sent") {
  const auto noon = at("2026-11-23T12:00:00Z");
  auto bulk = posting();
  bulk.category = notify::Category::kBulk;
  auto dead = as<DeadLetter>(before_send(bulk, std::nullopt, 2, noon, policy(), kNoJitter));
  CHECK(dead.reason == DeadReason::kPermanentFailure);
  CHECK(dead.attempts == 2);
  CHECK(dead_reason_text(dead) ==
        "permanent_failure: bulk e-mail without unsubscribe.url: never sent without "
        "List-Unsubscribe");
  // Even when it has expired or waits for quiet hours: it could never go out as it is.
  CHECK(std::holds_alternative<DeadLetter>(std::get<Action>(
      before_send(bulk, std::nullopt, 0, at("2026-11-25T12:00:00Z"), policy(), kNoJitter))));

  bulk.unsubscribe.url = "https://example.org/u?token=T\r\nBcc: evil@example.com";
  dead = as<DeadLetter>(before_send(bulk, std::nullopt, 0, noon, policy(), kNoJitter));
  CHECK(dead.detail.rfind("bulk e-mail whose unsubscribe links List-Unsubscribe cannot carry", 0) ==
        0);
  bulk.unsubscribe.url = "https://example.org/u?token=T";
  bulk.unsubscribe.mailto = "unsubscribe@example.org";  // not a mailto: URI
  CHECK(std::holds_alternative<DeadLetter>(
      std::get<Action>(before_send(bulk, std::nullopt, 0, noon, policy(), kNoJitter))));

  bulk.unsubscribe.mailto = "mailto:unsubscribe@example.org?subject=unsubscribe%20T";
  CHECK(std::holds_alternative<std::monostate>(
      before_send(bulk, std::nullopt, 0, noon, policy(), kNoJitter)));
  CHECK_FALSE(unsendable(bulk));
  // Transactional mail needs no link; a bulk webhook has no headers to carry one.
  CHECK_FALSE(unsendable(posting()));
  auto hook = posting();
  hook.category = notify::Category::kBulk;
  hook.channel = notify::Channel::kWebhook;
  CHECK_FALSE(unsendable(hook));
}

TEST_CASE("the e-mail of a bulk posting carries its unsubscribe links; transactional none") {
  auto bulk = posting();
  bulk.category = notify::Category::kBulk;
  bulk.unsubscribe = {"https://example.org/u?token=T", "mailto:u@example.org?subject=T"};
  const Email e = to_email(bulk, "n@example.org");
  CHECK(e.list_unsubscribe_url == "https://example.org/u?token=T");
  CHECK(e.list_unsubscribe_mailto == "mailto:u@example.org?subject=T");

  auto transactional = bulk;
  transactional.category = notify::Category::kTransactional;
  const Email t = to_email(transactional, "n@example.org");
  CHECK(t.list_unsubscribe_url.empty());
  CHECK(t.list_unsubscribe_mailto.empty());
}
