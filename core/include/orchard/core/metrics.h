// Metric streams in Redis: each process appends one entry per report interval to
// orchard:run:<run>:metrics:<role> (XADD ... MAXLEN ~ n), never one per env step.
//
// Redis is optional and may go away: with no URL the reporter does nothing; when Redis is
// unreachable, entries wait in a bounded buffer (the oldest are dropped beyond max_buffered and
// counted, with a warning) and are sent, in order, once a reconnect succeeds. report() never
// throws for Redis trouble and never blocks longer than the client's timeouts.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace orchard::core {

class RedisClient;

using MetricFields = std::vector<std::pair<std::string, std::string>>;

struct MetricsOptions {
  std::string url;               // redis://...; empty: disabled
  std::string stream;            // e.g. "orchard:run:quickstart:metrics:learner"
  size_t max_buffered = 1000;    // entries held while Redis is unreachable
  int64_t maxlen = 100000;       // XADD MAXLEN ~ for the stream
  int retry_interval_ms = 2000;  // after a failure, no reconnect attempt before this
  // Liveness for the orchestrator: heartbeat() sets this key (value: wall-clock ms) with a TTL.
  std::string heartbeat_key;     // e.g. "orchard:run:quickstart:proc:actor-1:heartbeat"; empty: none
  int heartbeat_ttl_s = 20;
  double heartbeat_every_s = 1;  // heartbeat() writes at most this often
};

class MetricsReporter {
 public:
  explicit MetricsReporter(MetricsOptions options);
  ~MetricsReporter();
  MetricsReporter(const MetricsReporter&) = delete;
  MetricsReporter& operator=(const MetricsReporter&) = delete;

  // Queues one entry (a "ts_ms" field is added first) and sends everything queued in one
  // pipeline when Redis is reachable.
  void report(MetricFields fields);
  // Tries to send what is buffered now (e.g. before exit).
  void flush();
  // Cheap to call every loop iteration: refreshes the heartbeat key when heartbeat_every_s has
  // passed since the last write. Never throws; Redis trouble is retried later.
  void heartbeat();

  bool enabled() const { return !options_.url.empty(); }
  uint64_t sent() const { return sent_; }
  uint64_t dropped() const { return dropped_; }
  size_t buffered() const { return pending_.size(); }

 private:
  void send();

  MetricsOptions options_;
  std::unique_ptr<RedisClient> client_;
  std::deque<MetricFields> pending_;
  uint64_t sent_ = 0, dropped_ = 0;
  int64_t retry_after_ms_ = 0;  // steady-clock ms before which no connection is attempted
  int64_t next_heartbeat_ms_ = 0;
  bool connect();
};

// One field value: numbers in the shortest round-trip form ("0.1", "475", "nan").
std::string metric_value(double v);

}  // namespace orchard::core
