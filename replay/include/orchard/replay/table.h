// A replay table: items (rows of typed columns) with a sampler, a remover, a size limit, a
// limit on how often an item is sampled, and a rate limiter. Thread-safe; inserts and samples
// block (with a deadline) when the rate limiter says so. No LibTorch, no ZeroMQ.
//
// Semantics follow DeepMind Reverb (reverb/cc/table.h, rate_limiter.h, selectors/):
//  - insert(): each item gets a key (per table, increasing) and a priority (given, or the
//    largest priority seen so far). When the table is full the remover evicts first.
//  - sample(): picks `batch` items by the sampler, counts the sample, removes items that reached
//    max_times_sampled, and returns copies of their columns plus key, probability, times sampled.
//  - Rate limiter: with spi = samples_per_insert, the cursor is inserts * spi - samples. Inserts
//    wait while the cursor after the insert would exceed max_diff (but never while the table
//    holds fewer than min_size_to_sample items, as in Reverb); samples wait while the table
//    holds fewer than min_size_to_sample items or the cursor after the sample would fall below
//    min_diff. (samples_per_insert = 0 disables the ratio: only min_size_to_sample applies.)
#pragma once

#include <condition_variable>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "orchard/core/clock.h"
#include "orchard/core/tensor.h"

namespace orchard::core {
class ConfigNode;
}

namespace orchard::replay {

enum class Sampler { kUniform, kPrioritized, kFifo, kLifo };
enum class Remover { kFifo, kLifo, kLowestPriority };

const char* sampler_name(Sampler s);  // "uniform", "prioritized", "fifo", "lifo"
const char* remover_name(Remover r);  // "fifo", "lifo", "lowest_priority"

struct RateLimiterOptions {
  uint64_t min_size_to_sample = 1;
  double samples_per_insert = 0;  // 0: no ratio limit
  // Reverb's SampleToInsertRatio: min_diff = spi * min_size - error_buffer, max_diff =
  // spi * min_size + error_buffer. Ignored when samples_per_insert == 0.
  double error_buffer = 100;
  double min_diff() const;
  double max_diff() const;
};

struct TableOptions {
  std::string name = "main";
  std::vector<core::TensorSpec> signature;  // per item (no leading batch dimension)
  Sampler sampler = Sampler::kUniform;
  double priority_exponent = 0.6;           // alpha, prioritized sampler only
  Remover remover = Remover::kFifo;
  uint64_t max_size = 1'000'000;
  uint32_t max_times_sampled = 0;           // 0: unlimited
  RateLimiterOptions rate_limiter;

  // Reads one entry of `replay.tables` (keys: name, signature, sampler, priority_exponent,
  // remover, max_size, max_times_sampled, min_size_to_sample, samples_per_insert,
  // error_buffer). Throws orchard::ConfigError naming the key.
  static TableOptions parse(const core::ConfigNode& node);
  std::string describe() const;  // one line, for logs and checkpoint mismatch warnings
};

// A signature as the YAML flow list `replay.tables[].signature` takes, e.g.
// "[{name: obs, dtype: float32, shape: [4]}, {name: reward, dtype: float32, shape: []}]";
// TableOptions::parse reads it back.
std::string signature_yaml(const std::vector<core::TensorSpec>& signature);

// The outcome of a blocking call.
enum class Status { kOk, kDeadlineExceeded, kClosed };

// Sampled items, columns packed as [batch, *shape]. Reused across calls: buffers only grow.
struct SampleBatch {
  std::vector<uint64_t> keys;
  std::vector<double> probabilities;  // of each item under the sampler at sampling time
  std::vector<uint32_t> times_sampled;  // including this sample
  std::vector<std::vector<uint8_t>> columns;  // one per signature column
  uint64_t table_size = 0;                    // after the sample (and any removals)
  double priority_mass = 0;                   // sum of p^alpha before the sample
};

struct TableStats {
  uint64_t size = 0, max_size = 0, inserts = 0, samples = 0, evictions = 0;
  uint64_t removed_by_max_times_sampled = 0, unknown_key_updates = 0;
  double priority_mass = 0, max_priority = 0, min_priority = 0;
  uint64_t inserts_blocked_ns = 0, samples_blocked_ns = 0;
  uint64_t waiting_inserters = 0, waiting_samplers = 0;
};

class Table {
 public:
  // Throws std::invalid_argument (options are validated by parse()).
  explicit Table(TableOptions options);
  ~Table();
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;

  const TableOptions& options() const { return options_; }

  // Inserts `n` items. `columns` follow the signature's order, each [n, *shape] (validated by
  // the caller against the signature). `priorities`: n finite values >= 0, or nullptr for the
  // maximum priority so far (1.0 for an empty table). Blocks while the rate limiter refuses the
  // inserts, until `deadline`; items are inserted one at a time as the limiter allows, so on
  // kDeadlineExceeded the first `*inserted` items are in. Appends the new keys to `keys`.
  Status insert(const std::vector<core::TensorView>& columns, size_t n, const double* priorities,
                core::Deadline deadline, std::vector<uint64_t>* keys, size_t* inserted);

  // Samples `batch` items (with replacement for uniform/prioritized; distinct oldest/newest
  // items for fifo/lifo, which need `batch` items present). Blocks while the rate limiter
  // refuses, until `deadline`; items are sampled one at a time as the limiter allows, so on
  // kDeadlineExceeded or kClosed `out` holds the (counted) items sampled before the call gave up.
  Status sample(size_t batch, core::Deadline deadline, SampleBatch* out);

  // Sets priorities of existing keys; unknown (evicted) keys are ignored and counted.
  // Returns the number updated. Priorities must be finite and >= 0 (validated by the caller).
  size_t update_priorities(const uint64_t* keys, const double* priorities, size_t n);

  // Every counter; O(size) when min_priority has to be found by a scan (not with the
  // lowest_priority remover). For the item count alone use size(), O(1).
  TableStats stats() const;
  uint64_t size() const;

  // Wakes every blocked caller with kClosed; later calls return kClosed at once.
  void close();

  // Checkpoint: the items (keys, priorities, times sampled, column bytes), counters, rate
  // limiter state and the options they were written with. load() replaces the contents;
  // settings are this table's (the current run spec wins), and `warning` gets a one-line
  // description of any difference from the saved settings. If the table is now smaller than
  // the checkpoint, the newest items are kept. Throws std::runtime_error on a corrupt or
  // mismatched (different signature) stream.
  void save(std::ostream& out) const;
  void load(std::istream& in, std::string* warning);

 private:
  struct Impl;
  TableOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace orchard::replay
