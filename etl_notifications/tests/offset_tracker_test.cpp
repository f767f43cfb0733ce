#include <doctest/doctest.h>

#include "offset_tracker.hpp"

using etl::OffsetTracker;
using notify::kafka::TopicPartition;

TEST_CASE("only the contiguous finished prefix of a partition advances") {
  OffsetTracker t;
  const TopicPartition p0{"notify_events", 0};
  const TopicPartition p1{"notify_events", 1};
  for (int o = 10; o < 14; ++o) t.begin(p0, o);
  t.begin(p1, 5);
  CHECK(t.in_flight() == 5);

  CHECK_FALSE(t.finish(p0, 12).has_value());  // 10 and 11 still out
  CHECK_FALSE(t.finish(p0, 11).has_value());
  CHECK(t.finish(p0, 10) == 13);  // 10, 11, 12 done: the next to read is 13
  CHECK(t.finish(p1, 5) == 6);    // partitions are independent
  CHECK(t.finish(p0, 13) == 14);
  CHECK(t.in_flight() == 0);
}

TEST_CASE("finishing twice, or an unknown offset, changes nothing") {
  OffsetTracker t;
  const TopicPartition p{"t", 0};
  t.begin(p, 1);
  t.begin(p, 2);
  CHECK(t.finish(p, 1) == 2);
  CHECK_FALSE(t.finish(p, 1).has_value());
  CHECK_FALSE(t.finish(p, 7).has_value());
  CHECK_FALSE(t.finish(TopicPartition{"other", 0}, 2).has_value());
  CHECK(t.in_flight() == 1);
}

TEST_CASE("revoked partitions are forgotten: late confirms of them store nothing") {
  OffsetTracker t;
  const TopicPartition p{"t", 3};
  t.begin(p, 100);
  t.forget({p});
  CHECK(t.in_flight() == 0);
  CHECK_FALSE(t.finish(p, 100).has_value());
}
