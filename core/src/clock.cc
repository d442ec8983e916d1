#include "orchard/core/clock.h"

#include <time.h>

#include <algorithm>
#include <climits>

namespace orchard::core {

int64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int64_t unix_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int Deadline::remaining_ms() const {
  if (at_ns_ == INT64_MAX) return -1;
  int64_t left = (at_ns_ - monotonic_ns() + 999'999) / 1'000'000;
  return static_cast<int>(std::clamp<int64_t>(left, 0, INT_MAX));
}

RateMeter::RateMeter(double window_s, double bucket_s)
    : window_ns_(static_cast<int64_t>(window_s * 1e9)),
      bucket_ns_(std::max<int64_t>(1, static_cast<int64_t>(bucket_s * 1e9))) {}

void RateMeter::expire(int64_t now_ns) const {
  while (!buckets_.empty() && buckets_.front().first + bucket_ns_ <= now_ns - window_ns_) {
    in_window_ -= buckets_.front().second;
    buckets_.pop_front();
  }
}

void RateMeter::add_at(int64_t now_ns, double count) {
  if (first_ns_ < 0) first_ns_ = now_ns;
  int64_t bucket = now_ns - (now_ns % bucket_ns_);
  if (buckets_.empty() || buckets_.back().first != bucket) {
    buckets_.emplace_back(bucket, 0.0);
  }
  buckets_.back().second += count;
  in_window_ += count;
  total_ += count;
  expire(now_ns);
}

double RateMeter::rate_at(int64_t now_ns) const {
  if (first_ns_ < 0) return 0.0;
  expire(now_ns);
  // Before the window has filled, divide by the time actually observed.
  int64_t span = std::min<int64_t>(window_ns_, now_ns - first_ns_);
  span = std::max<int64_t>(span, bucket_ns_);
  return in_window_ / (static_cast<double>(span) * 1e-9);
}

}  // namespace orchard::core
