// Monotonic clocks, deadlines and rate meters.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <utility>

namespace orchard::core {

using SteadyClock = std::chrono::steady_clock;

// Nanoseconds on the monotonic clock (CLOCK_MONOTONIC); only differences are meaningful.
int64_t monotonic_ns();
// Nanoseconds since the Unix epoch (CLOCK_REALTIME), for timestamps that cross processes.
int64_t unix_ns();

// Measures elapsed time from construction or the last restart().
class Stopwatch {
 public:
  Stopwatch() : start_(monotonic_ns()) {}
  void restart() { start_ = monotonic_ns(); }
  int64_t elapsed_ns() const { return monotonic_ns() - start_; }
  double elapsed_s() const { return static_cast<double>(elapsed_ns()) * 1e-9; }

 private:
  int64_t start_;
};

// A point in time after which a blocking call gives up. Deadline::never() never expires.
class Deadline {
 public:
  static Deadline after_ms(int64_t ms) { return Deadline(monotonic_ns() + ms * 1'000'000); }
  static Deadline never() { return Deadline(INT64_MAX); }
  bool expired() const { return at_ns_ != INT64_MAX && monotonic_ns() >= at_ns_; }
  // Milliseconds left, clamped to [0, INT32_MAX]; -1 for never (the ZeroMQ/poll convention).
  int remaining_ms() const;
  int64_t at_ns() const { return at_ns_; }

 private:
  explicit Deadline(int64_t at_ns) : at_ns_(at_ns) {}
  int64_t at_ns_;
};

// Events per second over a sliding window. add() is O(1) amortised and allocation-free once
// the window has filled (the bucket deque is bounded by window / bucket). Not thread-safe.
class RateMeter {
 public:
  // window_s: how far back rate() looks; bucket_s: resolution of the window.
  explicit RateMeter(double window_s = 10.0, double bucket_s = 0.25);

  void add(double count = 1.0) { add_at(monotonic_ns(), count); }
  void add_at(int64_t now_ns, double count);
  // Rate over the window ending now (or at now_ns). 0 until something was added.
  double rate() const { return rate_at(monotonic_ns()); }
  double rate_at(int64_t now_ns) const;
  // Total ever added.
  double total() const { return total_; }

 private:
  void expire(int64_t now_ns) const;

  int64_t window_ns_;
  int64_t bucket_ns_;
  int64_t first_ns_ = -1;
  double total_ = 0;
  // (bucket start, count), oldest first; mutable so rate() can drop expired buckets.
  mutable std::deque<std::pair<int64_t, double>> buckets_;
  mutable double in_window_ = 0;
};

}  // namespace orchard::core
