#include "policy.hpp"

#include <doctest/doctest.h>

#include <string>

#include "notify/config.hpp"
#include "notify/time.hpp"

using namespace std::chrono_literals;
using worker::Decision;
using worker::Defer;
using worker::DeferReason;
using worker::Drop;
using worker::DropReason;
using worker::Send;

namespace {

notify::TimePoint at(const std::string& iso) {
  const auto t = notify::parse_iso8601(iso);
  REQUIRE_MESSAGE(t.has_value(), iso);
  return *t;
}

notify::Posting posting_for(const std::string& zone) {
  notify::Posting p;
  p.posting_id = "p-1";
  p.recipient.address = "ann@example.com";
  p.recipient.timezone = zone;
  p.created_at = at("2026-01-01T00:00:00Z");
  p.expires_at = at("2030-01-01T00:00:00Z");
  return p;
}

worker::PolicyOptions no_spread(const std::string& window = "22:00-08:00") {
  worker::PolicyOptions o;
  o.quiet = worker::parse_quiet_window(window);
  o.spread = 0ms;
  return o;
}

const std::function<double()> kZero = [] { return 0.0; };

Decision decide_at(const std::string& zone, const std::string& now,
                   const worker::PolicyOptions& o = no_spread()) {
  return worker::decide(posting_for(zone), at(now), o, kZero).decision;
}

Decision quiet_until(const std::string& iso) { return Defer{at(iso), DeferReason::kQuietHours}; }

}  // namespace

TEST_CASE("parse_quiet_window accepts HH:MM and HH:MM:SS") {
  CHECK(worker::parse_quiet_window("22:00-08:00") == worker::QuietWindow{22h, 8h});
  CHECK(worker::parse_quiet_window("22:00:00-08:00:30") == worker::QuietWindow{22h, 8h + 30s});
  CHECK(worker::parse_quiet_window(" 7:05 - 09:00 ") == worker::QuietWindow{7h + 5min, 9h});
  CHECK(worker::parse_quiet_window("00:00-00:00") == worker::QuietWindow{0s, 0s});
  CHECK(worker::parse_quiet_window("23:59:59-00:00") == worker::QuietWindow{23h + 59min + 59s, 0s});
}

TEST_CASE("parse_quiet_window rejects malformed text with a clear message") {
  for (const char* bad : {"", "22:00", "22-08", "25:00-08:00", "24:00-08:00", "22:60-08:00",
                          "22:00-08:00:60", "22:00-08:00-09:00", "ab:cd-08:00", "22:0-08:00",
                          "22:00:00:00-08:00", "123:00-08:00", "22:00-", "-08:00", "22:00 08:00"}) {
    CAPTURE(bad);
    try {
      worker::parse_quiet_window(bad);
      FAIL("accepted");
    } catch (const notify::ConfigError& e) {
      const std::string what = e.what();
      CHECK(what.find(std::string("\"") + bad + "\"") != std::string::npos);
      CHECK(what.find("HH:MM") != std::string::npos);
    }
  }
}

TEST_CASE("in_quiet_window: crossing midnight, same day, empty") {
  const worker::QuietWindow night{22h, 8h};
  CHECK_FALSE(worker::in_quiet_window(21h + 59min + 59s, night));
  CHECK(worker::in_quiet_window(22h, night));
  CHECK(worker::in_quiet_window(0s, night));
  CHECK(worker::in_quiet_window(7h + 59min + 59s, night));
  CHECK_FALSE(worker::in_quiet_window(8h, night));
  CHECK_FALSE(worker::in_quiet_window(12h, night));

  const worker::QuietWindow siesta{13h, 15h};
  CHECK_FALSE(worker::in_quiet_window(12h + 59min + 59s, siesta));
  CHECK(worker::in_quiet_window(13h, siesta));
  CHECK(worker::in_quiet_window(14h + 59min + 59s, siesta));
  CHECK_FALSE(worker::in_quiet_window(15h, siesta));
  CHECK_FALSE(worker::in_quiet_window(0s, siesta));

  const worker::QuietWindow none{5h, 5h};
  CHECK_FALSE(worker::in_quiet_window(5h, none));
  CHECK_FALSE(worker::in_quiet_window(0s, none));
}

TEST_CASE("exact boundaries in the recipient's zone (Berlin, winter, UTC+1)") {
  const std::string z = "Europe/Berlin";
  CHECK(decide_at(z, "2026-01-15T21:59:59.999+01:00") == Decision{Send{}});
  CHECK(decide_at(z, "2026-01-15T22:00:00+01:00") == quiet_until("2026-01-16T07:00:00Z"));
  CHECK(decide_at(z, "2026-01-16T07:59:59+01:00") == quiet_until("2026-01-16T07:00:00Z"));
  CHECK(decide_at(z, "2026-01-16T08:00:00+01:00") == Decision{Send{}});
  // The same instants are all daytime in UTC: the zone is what matters.
  CHECK(decide_at("UTC", "2026-01-15T22:00:00+01:00") == Decision{Send{}});
}

TEST_CASE("exact boundaries with seconds precision") {
  const auto o = no_spread("22:00:30-08:00:15");
  CHECK(decide_at("UTC", "2026-01-15T22:00:29Z", o) == Decision{Send{}});
  CHECK(decide_at("UTC", "2026-01-15T22:00:30Z", o) == quiet_until("2026-01-16T08:00:15Z"));
  CHECK(decide_at("UTC", "2026-01-16T08:00:14Z", o) == quiet_until("2026-01-16T08:00:15Z"));
  CHECK(decide_at("UTC", "2026-01-16T08:00:15Z", o) == Decision{Send{}});
}

TEST_CASE("a window crossing midnight ends on the right local day") {
  const std::string z = "America/New_York";  // UTC-5 in winter
  SUBCASE("evening half: the end is on the next local day") {
    CHECK(decide_at(z, "2026-01-15T23:30:00-05:00") == quiet_until("2026-01-16T13:00:00Z"));
  }
  SUBCASE("evening half across a month and a year") {
    CHECK(decide_at(z, "2026-12-31T23:30:00-05:00") == quiet_until("2027-01-01T13:00:00Z"));
  }
  SUBCASE("morning half: the end is on the same local day (the UTC date differs)") {
    // 00:30 local on the 16th is 05:30Z on the 16th; 20:00 local on the 15th is 01:00Z on 16th.
    CHECK(decide_at(z, "2026-01-16T00:30:00-05:00") == quiet_until("2026-01-16T13:00:00Z"));
    CHECK(decide_at(z, "2026-01-15T20:00:00-05:00") == Decision{Send{}});
  }
  SUBCASE("a window that does not cross midnight") {
    const auto o = no_spread("13:00-15:00");
    CHECK(decide_at(z, "2026-01-15T14:00:00-05:00", o) == quiet_until("2026-01-15T20:00:00Z"));
    CHECK(decide_at(z, "2026-01-15T23:00:00-05:00", o) == Decision{Send{}});
  }
  SUBCASE("start == end: never quiet") {
    const auto o = no_spread("08:00-08:00");
    CHECK(decide_at(z, "2026-01-15T23:00:00-05:00", o) == Decision{Send{}});
    CHECK(decide_at(z, "2026-01-15T08:00:00-05:00", o) == Decision{Send{}});
  }
}

TEST_CASE("DST: Europe/Berlin spring forward, 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z)") {
  const std::string z = "Europe/Berlin";
  SUBCASE("the default window ends at 08:00 CEST, one hour earlier in UTC than the night before") {
    CHECK(decide_at(z, "2026-03-28T23:00:00+01:00") == quiet_until("2026-03-29T06:00:00Z"));
    CHECK(decide_at(z, "2026-03-29T01:30:00+01:00") == quiet_until("2026-03-29T06:00:00Z"));
    CHECK(decide_at(z, "2026-03-29T03:30:00+02:00") == quiet_until("2026-03-29T06:00:00Z"));
    CHECK(decide_at(z, "2026-03-28T07:00:00+01:00") == quiet_until("2026-03-28T07:00:00Z"));
  }
  SUBCASE("a window ending at 02:30, a local time that does not exist: the jump itself") {
    const auto o = no_spread("22:00-02:30");
    CHECK(decide_at(z, "2026-03-28T23:00:00+01:00", o) == quiet_until("2026-03-29T01:00:00Z"));
    CHECK(decide_at(z, "2026-03-29T01:59:59+01:00", o) == quiet_until("2026-03-29T01:00:00Z"));
    // Just after the jump the clocks show 03:00, past the window.
    CHECK(decide_at(z, "2026-03-29T03:00:00+02:00", o) == Decision{Send{}});
  }
  SUBCASE("a window starting inside the gap is entered at the jump") {
    const auto o = no_spread("02:30-06:00");
    CHECK(decide_at(z, "2026-03-29T01:59:59+01:00", o) == Decision{Send{}});
    CHECK(decide_at(z, "2026-03-29T03:00:00+02:00", o) == quiet_until("2026-03-29T04:00:00Z"));
  }
}

TEST_CASE("DST: Europe/Berlin fall back, 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z)") {
  const std::string z = "Europe/Berlin";
  SUBCASE("the default window ends at 08:00 CET, one hour later in UTC than the night before") {
    CHECK(decide_at(z, "2026-10-24T23:00:00+02:00") == quiet_until("2026-10-25T07:00:00Z"));
    CHECK(decide_at(z, "2026-10-24T07:00:00+02:00") == quiet_until("2026-10-24T06:00:00Z"));
  }
  SUBCASE("a window ending on the repeated hour: the earlier 02:30 (CEST)") {
    const auto o = no_spread("22:00-02:30");
    CHECK(decide_at(z, "2026-10-24T22:00:00+02:00", o) == quiet_until("2026-10-25T00:30:00Z"));
    CHECK(decide_at(z, "2026-10-25T02:15:00+02:00", o) == quiet_until("2026-10-25T00:30:00Z"));
    CHECK(decide_at(z, "2026-10-25T02:45:00+02:00", o) == Decision{Send{}});
  }
  SUBCASE("inside the window on the second pass of the hour: the later 02:30 (CET)") {
    // The clocks show 02:15 again; the earlier 02:30 is already past.
    const auto o = no_spread("22:00-02:30");
    CHECK(decide_at(z, "2026-10-25T02:15:00+01:00", o) == quiet_until("2026-10-25T01:30:00Z"));
  }
}

TEST_CASE("DST: America/New_York, 2026-03-08 and 2026-11-01") {
  const std::string z = "America/New_York";
  SUBCASE("spring forward: 02:00 EST -> 03:00 EDT (07:00Z); 02:30 does not exist") {
    const auto o = no_spread("22:00-02:30");
    CHECK(decide_at(z, "2026-03-07T23:00:00-05:00", o) == quiet_until("2026-03-08T07:00:00Z"));
    CHECK(decide_at(z, "2026-03-07T23:00:00-05:00") == quiet_until("2026-03-08T12:00:00Z"));
  }
  SUBCASE("fall back: 02:00 EDT -> 01:00 EST (06:00Z); 01:30 happens twice") {
    const auto o = no_spread("22:00-01:30");
    CHECK(decide_at(z, "2026-10-31T23:00:00-04:00", o) == quiet_until("2026-11-01T05:30:00Z"));
    CHECK(decide_at(z, "2026-11-01T01:10:00-05:00", o) == quiet_until("2026-11-01T06:30:00Z"));
    CHECK(decide_at(z, "2026-10-31T23:00:00-04:00") == quiet_until("2026-11-01T13:00:00Z"));
  }
}

TEST_CASE("a zone with a non-hour offset: Asia/Kathmandu (+05:45)") {
  const std::string z = "Asia/Kathmandu";
  CHECK(decide_at(z, "2026-06-01T21:59:59+05:45") == Decision{Send{}});
  CHECK(decide_at(z, "2026-06-01T22:00:00+05:45") == quiet_until("2026-06-02T02:15:00Z"));
  CHECK(decide_at(z, "2026-06-02T07:59:59+05:45") == quiet_until("2026-06-02T02:15:00Z"));
  CHECK(decide_at(z, "2026-06-02T08:00:00+05:45") == Decision{Send{}});
}

TEST_CASE("a missing or unknown zone falls back to the default and says so") {
  auto o = no_spread();
  o.default_timezone = "America/New_York";
  const auto now = at("2026-01-16T03:00:00Z");  // 22:00 in New York, 03:00 in UTC

  for (const std::string zone : {"", "Mars/Olympus_Mons", "not a zone"}) {
    CAPTURE(zone);
    const auto e = worker::decide(posting_for(zone), now, o, kZero);
    CHECK(e.zone_fallback);
    CHECK(e.zone == "America/New_York");
    CHECK(e.decision == quiet_until("2026-01-16T13:00:00Z"));
  }

  const auto known = worker::decide(posting_for("Europe/Berlin"), now, o, kZero);
  CHECK_FALSE(known.zone_fallback);
  CHECK(known.zone == "Europe/Berlin");
  CHECK(known.decision == quiet_until("2026-01-16T07:00:00Z"));

  const auto utc = worker::decide(posting_for(""), now, no_spread(), kZero);
  CHECK(utc.zone_fallback);
  CHECK(utc.zone == "UTC");
  CHECK(utc.decision == quiet_until("2026-01-16T08:00:00Z"));
}

TEST_CASE("an unknown default zone is a configuration error") {
  auto o = no_spread();
  o.default_timezone = "Nowhere/Special";
  CHECK_THROWS_AS(worker::decide(posting_for(""), at("2026-01-16T12:00:00Z"), o, kZero),
                  notify::ConfigError);
  CHECK(worker::is_known_timezone("Europe/Berlin"));
  CHECK(worker::is_known_timezone("UTC"));
  CHECK_FALSE(worker::is_known_timezone("Nowhere/Special"));
  CHECK_FALSE(worker::is_known_timezone(""));
}

TEST_CASE("bypass goes at once, even in the middle of the night") {
  auto p = posting_for("Europe/Berlin");
  p.quiet_hours = notify::QuietHours::kBypass;
  const auto e = worker::decide(p, at("2026-01-16T03:00:00+01:00"), no_spread(), kZero);
  CHECK(e.decision == Decision{Send{}});
}

TEST_CASE("expired postings are dropped before anything else") {
  auto p = posting_for("Europe/Berlin");
  p.expires_at = at("2026-01-16T12:00:00Z");
  p.not_before = at("2026-01-17T12:00:00Z");
  const auto o = no_spread();
  CHECK(worker::decide(p, at("2026-01-16T12:00:00Z"), o, kZero).decision ==
        Decision{Drop{DropReason::kExpired}});
  CHECK(worker::decide(p, at("2026-01-16T23:00:00Z"), o, kZero).decision ==
        Decision{Drop{DropReason::kExpired}});
  p.quiet_hours = notify::QuietHours::kBypass;
  CHECK(worker::decide(p, at("2026-01-16T12:00:00.001Z"), o, kZero).decision ==
        Decision{Drop{DropReason::kExpired}});
}

TEST_CASE("scheduled sends") {
  auto p = posting_for("Europe/Berlin");
  p.not_before = at("2026-01-16T15:00:00Z");
  p.expires_at = at("2026-01-20T00:00:00Z");
  const auto o = no_spread();

  SUBCASE("before not_before: deferred until then") {
    CHECK(worker::decide(p, at("2026-01-16T10:00:00Z"), o, kZero).decision ==
          Decision{Defer{at("2026-01-16T15:00:00Z"), DeferReason::kScheduled}});
  }
  SUBCASE("a schedule is kept even for bypass postings") {
    p.quiet_hours = notify::QuietHours::kBypass;
    CHECK(worker::decide(p, at("2026-01-16T10:00:00Z"), o, kZero).decision ==
          Decision{Defer{at("2026-01-16T15:00:00Z"), DeferReason::kScheduled}});
  }
  SUBCASE("at or after not_before: sent (daytime)") {
    CHECK(worker::decide(p, at("2026-01-16T15:00:00Z"), o, kZero).decision == Decision{Send{}});
  }
  SUBCASE("scheduled into quiet hours: the quiet hours apply once the time has come") {
    p.not_before = at("2026-01-16T23:00:00+01:00");
    CHECK(worker::decide(p, at("2026-01-16T23:00:00+01:00"), o, kZero).decision ==
          quiet_until("2026-01-17T07:00:00Z"));
  }
  SUBCASE("a schedule at or past the expiry can never be met") {
    p.expires_at = at("2026-01-16T15:00:00Z");
    CHECK(worker::decide(p, at("2026-01-16T10:00:00Z"), o, kZero).decision ==
          Decision{Drop{DropReason::kExpiredBeforeWindow}});
    p.expires_at = at("2026-01-16T15:00:00.001Z");
    CHECK(worker::decide(p, at("2026-01-16T10:00:00Z"), o, kZero).decision ==
          Decision{Defer{at("2026-01-16T15:00:00Z"), DeferReason::kScheduled}});
  }
}

TEST_CASE("quiet hours ending after the expiry: expired_before_window") {
  auto p = posting_for("Europe/Berlin");
  const auto now = at("2026-01-16T02:00:00+01:00");  // the window ends at 07:00Z
  const auto o = no_spread();

  p.expires_at = at("2026-01-16T06:30:00Z");
  CHECK(worker::decide(p, now, o, kZero).decision ==
        Decision{Drop{DropReason::kExpiredBeforeWindow}});
  p.expires_at = at("2026-01-16T07:00:00Z");
  CHECK(worker::decide(p, now, o, kZero).decision ==
        Decision{Drop{DropReason::kExpiredBeforeWindow}});
  p.expires_at = at("2026-01-16T07:00:00.001Z");
  CHECK(worker::decide(p, now, o, kZero).decision == quiet_until("2026-01-16T07:00:00Z"));

  SUBCASE("the spread counts: a wake-up past the expiry is a drop") {
    auto spread = o;
    spread.spread = 15min;
    p.expires_at = at("2026-01-16T07:10:00Z");
    CHECK(worker::decide(p, now, spread, [] { return 0.8; }).decision ==
          Decision{Drop{DropReason::kExpiredBeforeWindow}});
    CHECK(worker::decide(p, now, spread, [] { return 0.1; }).decision ==
          quiet_until("2026-01-16T07:01:30Z"));
  }
}

TEST_CASE("the spread lands in [end, end + spread)") {
  const auto p = posting_for("UTC");
  const auto now = at("2026-01-16T23:00:00Z");
  const auto end = at("2026-01-17T08:00:00Z");
  worker::PolicyOptions o;  // defaults: 22:00-08:00, spread 15 min
  REQUIRE(o.spread == 15min);

  const auto until = [&](double r) {
    const auto d = worker::decide(p, now, o, [r] { return r; }).decision;
    REQUIRE(std::holds_alternative<Defer>(d));
    return std::get<Defer>(d).until;
  };
  CHECK(until(0.0) == end);
  CHECK(until(0.5) == end + 7min + 30s);
  CHECK(until(0.999) == end + 899100ms);
  CHECK(until(0.999) < end + 15min);
  // A misbehaving source still stays inside the range.
  CHECK(until(1.0) == end + 15min - 1ms);
  CHECK(until(-0.5) == end);

  SUBCASE("spread 0: exactly the end, and the random source is not consulted") {
    o.spread = 0ms;
    int calls = 0;
    const auto d = worker::decide(p, now, o, [&] {
                     ++calls;
                     return 0.9;
                   }).decision;
    CHECK(d == Decision{Defer{end, DeferReason::kQuietHours}});
    CHECK(calls == 0);
  }
  SUBCASE("no random source: no spread") {
    CHECK(worker::decide(p, now, o, {}).decision == Decision{Defer{end, DeferReason::kQuietHours}});
  }
}

TEST_CASE("decisions print readably") {
  CHECK(worker::to_string(Send{}) == "send");
  CHECK(worker::to_string(Defer{at("2026-01-17T08:00:00Z"), DeferReason::kQuietHours}) ==
        "defer quiet_hours until " + notify::format_iso8601(at("2026-01-17T08:00:00Z")));
  CHECK(worker::to_string(Drop{DropReason::kExpired}) == "drop expired");
}

TEST_CASE("reasons are written with the strings headers, logs and docs use") {
  CHECK(worker::to_string(DeferReason::kQuietHours) == "quiet_hours");
  CHECK(worker::to_string(DeferReason::kScheduled) == "scheduled");
  CHECK(worker::to_string(DeferReason::kRetry) == "retry");
  CHECK(worker::to_string(DeferReason::kThrottled) == "throttled");
  CHECK(worker::to_string(DeferReason::kDeferred) == "deferred");
  CHECK(worker::to_string(DropReason::kExpired) == "expired");
  CHECK(worker::to_string(DropReason::kExpiredBeforeWindow) == "expired_before_window");
}
