// One replay shard: tables served over a ZeroMQ ROUTER socket (docs/replay.md, docs/protocol.md).
//
// Threads: the I/O thread owns the ROUTER socket, validates every message (recv_message), answers
// TABLE_INFO and UPDATE_PRIORITIES itself, and queues INSERTs (per-sender order kept: a sender
// always goes to the same insert worker) and SAMPLEs to worker pools, so an insert blocked by the
// rate limiter never holds up a sample and vice versa. Workers reply through an inproc socket the
// I/O thread forwards. Checkpoints are written by a timer thread, by the I/O thread on a
// CHECKPOINT request (it serves nothing else meanwhile), and at shutdown. Nothing a peer sends can crash the shard: bad messages get an ERROR reply and are
// counted; queues are bounded (RESOURCE_EXHAUSTED beyond).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "orchard/core/wire.h"
#include "orchard/replay/table.h"

namespace orchard::core {
class ConfigNode;
}

namespace orchard::replay {

struct ServerOptions {
  std::string bind;                        // "tcp://127.0.0.1:5555"
  std::string name = "replay-0";           // sender name in replies, checkpoint subdirectory
  std::vector<TableOptions> tables;
  std::string checkpoint_dir;              // empty: no checkpoints
  double checkpoint_interval_s = 300;      // 0: only on request and at shutdown
  int keep_checkpoints = 2;
  int insert_workers = 1;
  int sample_workers = 2;
  uint32_t credits = 8;                    // announced to writers in every INSERT_ACK
  uint32_t default_insert_timeout_ms = 10'000;
  uint32_t max_timeout_ms = 600'000;       // cap on any client deadline
  uint32_t max_batch = 65'536;             // items per INSERT or SAMPLE
  size_t max_queue = 4096;                 // queued requests per pool before RESOURCE_EXHAUSTED
  int64_t max_message_bytes = 256ll << 20; // per frame (ZMQ_MAXMSGSIZE)
  std::string curve_key_file;              // server key pair: enables CURVE when set
  double stats_log_interval_s = 30;        // one log line of table stats; 0: never

  // Reads the run spec's `replay:` section (keys: shards, tables, checkpoint_dir,
  // checkpoint_interval_s, keep_checkpoints, insert_workers, sample_workers, credits,
  // insert_timeout_ms, max_batch, max_message_mb, curve_key_file; `cpus` and `env` are accepted
  // and left to the orchestrator, which starts the shards). Throws ConfigError.
  static ServerOptions parse(const core::ConfigNode& replay_section);
};

struct ServerStats {
  uint64_t messages = 0, rejected = 0, inserts = 0, samples = 0, checkpoints = 0;
};

class ShardServer {
 public:
  // Creates the tables and restores the newest valid checkpoint from checkpoint_dir/name (a
  // corrupt newest one is skipped with a warning). Binds the socket. Throws orchard::Error
  // (bind failure names the endpoint).
  explicit ShardServer(ServerOptions options);
  ~ShardServer();

  // Serves until stop() or a shutdown signal (core::Shutdown); then closes the tables (blocked
  // callers get UNAVAILABLE), drains the workers, writes a final checkpoint and returns.
  void run();
  // Asks run() to return; thread-safe.
  void stop();

  // Writes a checkpoint now (thread-safe); returns its path, or "" without a checkpoint dir.
  std::string checkpoint(const std::string& path_override = "");
  const std::string& endpoint() const;
  ServerStats stats() const;
  Table* table(const std::string& name);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// CRC-32 (IEEE 802.3), for checkpoint integrity.
uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);

}  // namespace orchard::replay
