#include "orchard/core/metrics.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>

#include "orchard/core/error.h"
#include "orchard/core/redis.h"

namespace orchard::core {

namespace {
int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

std::string metric_value(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

MetricsReporter::MetricsReporter(MetricsOptions options) : options_(std::move(options)) {
  if (enabled()) RedisOptions::from_url(options_.url);  // a bad URL is a ConfigError now, not later
}

MetricsReporter::~MetricsReporter() = default;

void MetricsReporter::report(MetricFields fields) {
  if (!enabled()) return;
  fields.insert(fields.begin(), {"ts_ms", std::to_string(wall_ms())});
  pending_.push_back(std::move(fields));
  while (pending_.size() > options_.max_buffered) {
    pending_.pop_front();
    if (dropped_++ % 100 == 0)
      spdlog::warn("metrics for {}: Redis unreachable, buffer full ({} entries): dropped {} oldest so far",
                   options_.stream, options_.max_buffered, dropped_);
  }
  send();
}

void MetricsReporter::flush() {
  if (enabled()) send();
}

bool MetricsReporter::connect() {
  if (client_) return true;
  if (now_ms() < retry_after_ms_) return false;
  try {
    RedisOptions ro = RedisOptions::from_url(options_.url);
    ro.connect_timeout_ms = 500;
    ro.command_timeout_ms = 1000;
    ro.reconnect_attempts = 1;
    client_ = std::make_unique<RedisClient>(ro);
    return true;
  } catch (const Error& e) {
    retry_after_ms_ = now_ms() + options_.retry_interval_ms;
    return false;
  }
}

void MetricsReporter::heartbeat() {
  if (!enabled() || options_.heartbeat_key.empty()) return;
  const int64_t now = now_ms();
  if (now < next_heartbeat_ms_) return;
  next_heartbeat_ms_ = now + static_cast<int64_t>(options_.heartbeat_every_s * 1000);
  if (!connect()) return;
  try {
    client_->command({"SET", options_.heartbeat_key, std::to_string(wall_ms()), "EX",
                      std::to_string(options_.heartbeat_ttl_s)});
  } catch (const Error& e) {
    client_.reset();
    retry_after_ms_ = now_ms() + options_.retry_interval_ms;
  }
}

void MetricsReporter::send() {
  if (pending_.empty() || now_ms() < retry_after_ms_) return;
  if (!connect()) return;
  try {
    Pipeline p = client_->pipeline();
    for (const auto& f : pending_) p.xadd(options_.stream, f, static_cast<size_t>(options_.maxlen));
    p.execute();
    sent_ += pending_.size();
    pending_.clear();
  } catch (const Error& e) {
    if (client_) spdlog::warn("metrics for {}: {} ({} entries buffered)", options_.stream, e.what(), pending_.size());
    client_.reset();
    retry_after_ms_ = now_ms() + options_.retry_interval_ms;
  }
}

}  // namespace orchard::core
