#include <gtest/gtest.h>

#include "orchard/core/clock.h"

using namespace orchard::core;

TEST(Clock, MonotonicNeverGoesBackwards) {
  int64_t prev = monotonic_ns();
  for (int i = 0; i < 10000; ++i) {
    int64_t now = monotonic_ns();
    ASSERT_GE(now, prev);
    prev = now;
  }
  EXPECT_GT(unix_ns(), int64_t(1'600'000'000) * 1'000'000'000);
}

TEST(Clock, DeadlineReportsRemainingTime) {
  auto never = Deadline::never();
  EXPECT_FALSE(never.expired());
  EXPECT_EQ(never.remaining_ms(), -1);
  auto d = Deadline::after_ms(10'000);
  EXPECT_FALSE(d.expired());
  EXPECT_GT(d.remaining_ms(), 9'000);
  EXPECT_LE(d.remaining_ms(), 10'000);
  auto past = Deadline::after_ms(-1);
  EXPECT_TRUE(past.expired());
  EXPECT_EQ(past.remaining_ms(), 0);
}

TEST(Clock, RateMeterMeasuresOverTheWindowWithSyntheticTime) {
  RateMeter m(/*window_s=*/2.0, /*bucket_s=*/0.1);
  const int64_t s = 1'000'000'000;
  int64_t t0 = 100 * s;
  // 1000 events per second for 5 seconds.
  for (int i = 0; i < 5000; ++i) m.add_at(t0 + int64_t(i) * s / 1000, 1.0);
  EXPECT_NEAR(m.rate_at(t0 + 5 * s), 1000.0, 60.0);
  EXPECT_DOUBLE_EQ(m.total(), 5000.0);
  // Then silence: the window empties.
  EXPECT_NEAR(m.rate_at(t0 + 10 * s), 0.0, 1e-9);
}

TEST(Clock, RateMeterBeforeTheWindowFillsUsesElapsedTime) {
  RateMeter m(10.0, 0.1);
  const int64_t s = 1'000'000'000;
  EXPECT_EQ(m.rate_at(0), 0.0);
  for (int i = 0; i < 100; ++i) m.add_at(s + int64_t(i) * s / 100, 1.0);  // 100/s for 1 s
  EXPECT_NEAR(m.rate_at(2 * s), 100.0, 5.0);  // 100 events over the 1 s observed
  EXPECT_NEAR(m.rate_at(3 * s), 50.0, 5.0);   // ... and over 2 s
}
