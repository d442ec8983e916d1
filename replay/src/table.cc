// Replay table: slot storage, samplers, removers, rate limiter and checkpoints.
//
// Semantics follow DeepMind Reverb (github.com/google-deepmind/reverb): reverb/cc/table.cc
// (insert, sample, max_times_sampled), reverb/cc/rate_limiter.cc (the cursor and its limits),
// reverb/cc/selectors/{uniform,prioritized,fifo,lifo}.cc. Differences are noted where they occur.
//
// Storage: every item lives in a slot in [0, max_size). Column c of slot s is the byte range
// [s * bytes[c], (s + 1) * bytes[c]) of one preallocated array per column. Free slots are a
// stack; occupied slots are kept in a dense array (uniform sampling, swap-remove), in a doubly
// linked list in insertion order (fifo/lifo), and in an open-addressing key -> slot index. Insert,
// evict and sample are O(1), plus O(log max_size) for the trees of the prioritized sampler and the
// lowest_priority remover; nothing allocates per item.
#include "orchard/replay/table.h"

#include "orchard/core/rng.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <istream>
#include <limits>
#include <ostream>
#include <random>
#include <stdexcept>

#include "orchard/core/config.h"
#include "orchard/core/error.h"
#include "orchard/replay/sum_tree.h"

namespace orchard::replay {
namespace {

constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
constexpr int64_t kMaxTableSize = 1'000'000'000;  // also keeps slot numbers below kNone
constexpr uint64_t kMaxItemBytes = 1ull << 30;      // per column, like core::CodecLimits
constexpr char kMagic[8] = {'O', 'R', 'C', 'H', 'T', 'B', 'L', '1'};

// ---------------------------------------------------------------------------------------------
// Random numbers: xoshiro256++ (Blackman and Vigna, https://prng.di.unimi.it/), state filled by
// splitmix64 from one std::random_device draw per table.

using core::Rng;  // portable xoshiro256++ (core/rng.h)

uint64_t device_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

// ---------------------------------------------------------------------------------------------
// key -> slot. Linear probing over a power-of-two array at most half full (sized for max_size
// items up front), Fibonacci hashing (keys are consecutive integers), backward-shift deletion so
// no tombstones build up. Key 0 marks an empty cell.

class KeyIndex {
 public:
  explicit KeyIndex(uint64_t max_items) {
    int bits = 1;
    while ((uint64_t{1} << bits) < 2 * max_items) ++bits;
    shift_ = 64 - bits;
    mask_ = (uint64_t{1} << bits) - 1;
    keys_.assign(mask_ + 1, 0);
    slots_.assign(mask_ + 1, kNone);
  }

  uint32_t find(uint64_t key) const {
    for (uint64_t i = home(key);; i = (i + 1) & mask_) {
      if (keys_[i] == key) return slots_[i];
      if (keys_[i] == 0) return kNone;
    }
  }

  // `key` (non-zero) must be absent.
  void insert(uint64_t key, uint32_t slot) {
    uint64_t i = home(key);
    while (keys_[i] != 0) i = (i + 1) & mask_;
    keys_[i] = key;
    slots_[i] = slot;
  }

  // `key` must be present.
  void erase(uint64_t key) {
    uint64_t i = home(key);
    while (keys_[i] != key) i = (i + 1) & mask_;
    // Pull later entries of the probe run back into the hole when the hole lies between their
    // home cell and where they sit, so that every remaining key stays reachable from its home.
    for (uint64_t j = (i + 1) & mask_; keys_[j] != 0; j = (j + 1) & mask_) {
      const uint64_t h = home(keys_[j]);
      if (((j - h) & mask_) >= ((j - i) & mask_)) {
        keys_[i] = keys_[j];
        slots_[i] = slots_[j];
        i = j;
      }
    }
    keys_[i] = 0;
    slots_[i] = kNone;
  }

 private:
  uint64_t home(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }

  int shift_;
  uint64_t mask_;
  std::vector<uint64_t> keys_;
  std::vector<uint32_t> slots_;
};

// ---------------------------------------------------------------------------------------------
// The lowest_priority remover's tree: a winner tree over slots in which every internal node holds
// the occupied slot with the lowest (priority, key) below it, so ties go to the oldest item
// (keys increase with insertion). A SumTree's min side cannot break ties by age and, holding
// p^alpha, cannot order priorities when alpha = 0.

class LowestPriorityTree {
 public:
  LowestPriorityTree(size_t capacity, const std::vector<double>* priority,
                     const std::vector<uint64_t>* key)
      : priority_(priority), key_(key) {
    leaf0_ = 1;
    while (leaf0_ < capacity) leaf0_ <<= 1;
    win_.assign(2 * leaf0_, kNone);
  }

  // Call after slot's priority changed, it was filled (present) or emptied (!present).
  void update(uint32_t slot, bool present) {
    size_t node = leaf0_ + slot;
    win_[node] = present ? slot : kNone;
    for (node >>= 1; node >= 1; node >>= 1) win_[node] = better(win_[2 * node], win_[2 * node + 1]);
  }
  uint32_t lowest() const { return win_[1]; }  // kNone when empty

 private:
  uint32_t better(uint32_t a, uint32_t b) const {
    if (a == kNone) return b;
    if (b == kNone) return a;
    const double pa = (*priority_)[a], pb = (*priority_)[b];
    if (pb < pa || (pb == pa && (*key_)[b] < (*key_)[a])) return b;
    return a;
  }

  const std::vector<double>* priority_;
  const std::vector<uint64_t>* key_;
  size_t leaf0_;
  std::vector<uint32_t> win_;
};

// ---------------------------------------------------------------------------------------------
// Reverb's RateLimiter (reverb/cc/rate_limiter.cc) without its waiting: the table owns the
// condition variables. The cursor is inserts * spi - samples.

class RateLimiter {
 public:
  explicit RateLimiter(const RateLimiterOptions& o)
      : spi_(o.samples_per_insert), min_size_(o.min_size_to_sample), min_diff_(o.min_diff()),
        max_diff_(o.max_diff()) {}

  // Whether one more item may be inserted into a table holding `size` items. As in Reverb,
  // inserts are never refused while the table is below min_size_to_sample: otherwise items
  // removed by max_times_sampled could leave both inserts and samples blocked forever.
  bool can_insert(uint64_t size) const {
    if (spi_ == 0 || size + 1 <= min_size_) return true;
    return static_cast<double>(inserts + 1) * spi_ - static_cast<double>(samples) <= max_diff_;
  }
  // Whether one more item may be sampled from a table holding `size` items.
  bool can_sample(uint64_t size) const {
    if (size < min_size_) return false;
    if (spi_ == 0) return true;
    return static_cast<double>(inserts) * spi_ - static_cast<double>(samples + 1) >= min_diff_;
  }
  void inserted() { ++inserts; }
  void sampled() { ++samples; }

  uint64_t inserts = 0, samples = 0;  // items, since the table was created (or its checkpoint)

 private:
  double spi_;
  uint64_t min_size_;
  double min_diff_, max_diff_;
};

// ---------------------------------------------------------------------------------------------
// Formatting and validation shared by parse(), the constructor, describe() and load().

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.10g", v);
  return buf;
}

std::string dims_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string spec_text(const core::TensorSpec& spec) {
  return spec.name + " " + core::dtype_name(spec.dtype) + dims_text(spec.shape);
}

const char* const kDTypeNames = "float32, float64, float16, bfloat16, int8, int16, int32, int64, uint8, bool";

// A problem with a set of options: the key it concerns (relative to the table's YAML node;
// `column` >= 0 for a key inside signature[column]) and a message a user can act on.
struct Problem {
  std::string key;
  int column = -1;
  std::string message;
};

bool find_problem(const TableOptions& o, Problem* p) {
  auto fail = [&](std::string key, std::string message, int column = -1) {
    *p = Problem{std::move(key), column, std::move(message)};
    return true;
  };
  if (o.name.empty()) return fail("name", "must not be empty");
  if (o.signature.empty()) return fail("signature", "needs at least one column ({name, dtype, shape})");
  for (size_t c = 0; c < o.signature.size(); ++c) {
    const auto& spec = o.signature[c];
    const int col = static_cast<int>(c);
    if (spec.name.empty()) return fail("name", "column name must not be empty", col);
    for (size_t d = 0; d < c; ++d) {
      if (o.signature[d].name == spec.name)
        return fail("name", "duplicate column name '" + spec.name + "' (also column " + std::to_string(d) + ")", col);
    }
    if (core::dtype_size(spec.dtype) == 0) return fail("dtype", "invalid dtype", col);
    if (spec.shape.size() > static_cast<size_t>(core::kMaxRank))
      return fail("shape", "rank " + std::to_string(spec.shape.size()) + " exceeds the maximum of " +
                               std::to_string(core::kMaxRank), col);
    uint64_t bytes = core::dtype_size(spec.dtype);
    for (int64_t d : spec.shape) {
      if (d < 0)
        return fail("shape", "dimension " + std::to_string(d) + " in " + dims_text(spec.shape) +
                                 " is not allowed: a table's shapes are per item and fully specified "
                                 "(no -1, no batch dimension)", col);
      if (d != 0 && bytes > kMaxItemBytes / static_cast<uint64_t>(d))
        return fail("shape", dims_text(spec.shape) + " is over " + std::to_string(kMaxItemBytes) + " bytes per item", col);
      bytes *= static_cast<uint64_t>(d);
    }
    if (bytes > kMaxItemBytes)
      return fail("shape", dims_text(spec.shape) + " is over " + std::to_string(kMaxItemBytes) + " bytes per item", col);
  }
  if (o.max_size < 1 || o.max_size > static_cast<uint64_t>(kMaxTableSize))
    return fail("max_size", "expected an integer in [1, " + std::to_string(kMaxTableSize) + "], got " +
                                std::to_string(o.max_size));
  if (!(o.priority_exponent >= 0 && o.priority_exponent <= 10))
    return fail("priority_exponent", "expected a number in [0, 10], got " + number(o.priority_exponent));
  const auto& rl = o.rate_limiter;
  if (rl.min_size_to_sample < 1 || rl.min_size_to_sample > o.max_size)
    return fail("min_size_to_sample", "expected an integer in [1, max_size = " + std::to_string(o.max_size) +
                                          "], got " + std::to_string(rl.min_size_to_sample) +
                                          " (a table never holds more than max_size items)");
  if (!(rl.samples_per_insert >= 0 && std::isfinite(rl.samples_per_insert)))
    return fail("samples_per_insert", "expected a finite number >= 0, got " + number(rl.samples_per_insert));
  if (!(rl.error_buffer >= 0 && std::isfinite(rl.error_buffer)))
    return fail("error_buffer", "expected a finite number >= 0, got " + number(rl.error_buffer));
  if (rl.samples_per_insert > 0 && rl.error_buffer < std::max(1.0, rl.samples_per_insert))
    return fail("error_buffer", "must be at least max(1, samples_per_insert) = " +
                                    number(std::max(1.0, rl.samples_per_insert)) + ", got " +
                                    number(rl.error_buffer) +
                                    ": a smaller buffer lets the rate limiter block inserts and samples forever");
  return false;
}

// ---------------------------------------------------------------------------------------------
// Little-endian binary checkpoint I/O (the host is little-endian: see core/tensor.h).

class Writer {
 public:
  explicit Writer(std::ostream& out) : out_(out) {}
  template <class T> void put(T v) { out_.write(reinterpret_cast<const char*>(&v), sizeof(T)); }
  void bytes(const void* p, size_t n) { out_.write(static_cast<const char*>(p), static_cast<std::streamsize>(n)); }
  void str(const std::string& s) {
    put<uint32_t>(static_cast<uint32_t>(s.size()));
    bytes(s.data(), s.size());
  }

 private:
  std::ostream& out_;
};

class Reader {
 public:
  Reader(std::istream& in, std::string table) : in_(in), table_(std::move(table)) {}
  template <class T> T get(const char* what) {
    T v;
    bytes(&v, sizeof(T), what);
    return v;
  }
  void bytes(void* p, size_t n, const char* what) {
    in_.read(static_cast<char*>(p), static_cast<std::streamsize>(n));
    if (static_cast<size_t>(in_.gcount()) != n) corrupt(std::string("truncated while reading ") + what);
  }
  void skip(size_t n, const char* what) {
    in_.ignore(static_cast<std::streamsize>(n));
    if (static_cast<size_t>(in_.gcount()) != n) corrupt(std::string("truncated while reading ") + what);
  }
  std::string str(const char* what) {
    const auto n = get<uint32_t>(what);
    if (n > (1u << 20)) corrupt(std::string(what) + " is " + std::to_string(n) + " bytes long");
    std::string s(n, '\0');
    bytes(s.data(), n, what);
    return s;
  }
  [[noreturn]] void corrupt(const std::string& what) const {
    throw std::runtime_error("replay table '" + table_ + "': corrupt checkpoint: " + what);
  }

 private:
  std::istream& in_;
  std::string table_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Names, limits, parsing, description.

const char* sampler_name(Sampler s) {
  switch (s) {
    case Sampler::kUniform: return "uniform";
    case Sampler::kPrioritized: return "prioritized";
    case Sampler::kFifo: return "fifo";
    case Sampler::kLifo: return "lifo";
  }
  return "invalid";
}

const char* remover_name(Remover r) {
  switch (r) {
    case Remover::kFifo: return "fifo";
    case Remover::kLifo: return "lifo";
    case Remover::kLowestPriority: return "lowest_priority";
  }
  return "invalid";
}

// With the ratio disabled the limits are infinite, so the values read as what the limiter does.
double RateLimiterOptions::min_diff() const {
  if (samples_per_insert == 0) return -std::numeric_limits<double>::infinity();
  return samples_per_insert * static_cast<double>(min_size_to_sample) - error_buffer;
}

double RateLimiterOptions::max_diff() const {
  if (samples_per_insert == 0) return std::numeric_limits<double>::infinity();
  return samples_per_insert * static_cast<double>(min_size_to_sample) + error_buffer;
}

TableOptions TableOptions::parse(const core::ConfigNode& node) {
  node.expect_map();
  node.check_keys({"name", "signature", "sampler", "priority_exponent", "remover", "max_size",
                   "max_times_sampled", "min_size_to_sample", "samples_per_insert", "error_buffer"});
  TableOptions o;
  o.name = node.get_string("name", o.name);

  const core::ConfigNode sig = node["signature"];
  if (!sig.defined()) {
    throw ConfigError(sig.where() + ": is required (a list of {name, dtype, shape}, e.g. "
                      "[{name: obs, dtype: float32, shape: [4]}])");
  }
  const std::vector<core::ConfigNode> columns = sig.elements();
  for (const auto& col : columns) {
    col.expect_map();
    col.check_keys({"name", "dtype", "shape"});
    core::TensorSpec spec;
    spec.name = col.get_string("name");
    const std::string dtype = col.get_string("dtype");
    if (!core::parse_dtype(dtype, &spec.dtype)) {
      throw ConfigError(col["dtype"].where() + ": expected one of " + kDTypeNames + ", got '" + dtype + "'");
    }
    spec.shape = col.get_int_list("shape", {});
    o.signature.push_back(std::move(spec));
  }

  const std::string sampler = node.get_choice("sampler", "uniform", {"uniform", "prioritized", "fifo", "lifo"});
  o.sampler = sampler == "uniform"       ? Sampler::kUniform
              : sampler == "prioritized" ? Sampler::kPrioritized
              : sampler == "fifo"        ? Sampler::kFifo
                                         : Sampler::kLifo;
  o.priority_exponent = node.get_double("priority_exponent", o.priority_exponent, 0, 10);
  const std::string remover = node.get_choice("remover", "fifo", {"fifo", "lifo", "lowest_priority"});
  o.remover = remover == "fifo" ? Remover::kFifo : remover == "lifo" ? Remover::kLifo : Remover::kLowestPriority;
  o.max_size = static_cast<uint64_t>(node.get_int("max_size", static_cast<int64_t>(o.max_size), 1, kMaxTableSize));
  o.max_times_sampled = static_cast<uint32_t>(
      node.get_int("max_times_sampled", 0, 0, std::numeric_limits<uint32_t>::max()));
  o.rate_limiter.min_size_to_sample = static_cast<uint64_t>(node.get_int(
      "min_size_to_sample", static_cast<int64_t>(o.rate_limiter.min_size_to_sample), 1, kMaxTableSize));
  o.rate_limiter.samples_per_insert = node.get_double("samples_per_insert", 0, 0, 1e308);
  o.rate_limiter.error_buffer = node.get_double("error_buffer", o.rate_limiter.error_buffer, 0, 1e308);

  Problem p;
  if (find_problem(o, &p)) {
    const core::ConfigNode at = p.column >= 0 ? columns[static_cast<size_t>(p.column)][p.key] : node[p.key];
    throw ConfigError(at.where() + ": " + p.message);
  }
  return o;
}

std::string signature_yaml(const std::vector<core::TensorSpec>& signature) {
  std::string y = "[";
  for (size_t i = 0; i < signature.size(); ++i) {
    y += (i ? ", " : "") + std::string("{name: ") + signature[i].name + ", dtype: " +
         core::dtype_name(signature[i].dtype) + ", shape: [";
    for (size_t d = 0; d < signature[i].shape.size(); ++d)
      y += (d ? ", " : "") + std::to_string(signature[i].shape[d]);
    y += "]}";
  }
  return y + "]";
}

std::string TableOptions::describe() const {
  std::string s = "table '" + name + "': signature [";
  for (size_t c = 0; c < signature.size(); ++c) s += (c ? ", " : "") + spec_text(signature[c]);
  s += "], sampler ";
  s += sampler_name(sampler);
  if (sampler == Sampler::kPrioritized) s += " (priority_exponent " + number(priority_exponent) + ")";
  s += ", remover ";
  s += remover_name(remover);
  s += ", max_size " + std::to_string(max_size) + ", max_times_sampled " + std::to_string(max_times_sampled) +
       ", min_size_to_sample " + std::to_string(rate_limiter.min_size_to_sample) + ", samples_per_insert " +
       number(rate_limiter.samples_per_insert) + ", error_buffer " + number(rate_limiter.error_buffer);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Store: the items and everything indexed by slot. Not thread-safe; the table's mutex guards it.
// load() builds a fresh Store outside the lock and swaps it in.

namespace {

class Store {
 public:
  explicit Store(const TableOptions& o)
      : limiter(o.rate_limiter), sampler_(o.sampler), remover_(o.remover), alpha_(o.priority_exponent),
        max_size_(o.max_size), max_times_sampled_(o.max_times_sampled), key_(max_size_, 0),
        priority_(max_size_, 0), times_(max_size_, 0), prev_(max_size_, kNone), next_(max_size_, kNone),
        dense_(max_size_, kNone), dense_pos_(max_size_, kNone), free_(max_size_), index_(max_size_) {
    for (const auto& spec : o.signature) {
      size_t bytes = core::dtype_size(spec.dtype);
      for (int64_t d : spec.shape) bytes *= static_cast<size_t>(d);
      bytes_.push_back(bytes);
      // Default-initialised: pages are only backed by memory once items are written to them.
      columns_.emplace_back(new uint8_t[std::max<size_t>(1, bytes * max_size_)]);
    }
    for (size_t i = 0; i < max_size_; ++i) free_[i] = static_cast<uint32_t>(max_size_ - 1 - i);
    if (sampler_ == Sampler::kPrioritized) mass_ = std::make_unique<SumTree>(max_size_);
    if (remover_ == Remover::kLowestPriority)
      lowest_ = std::make_unique<LowestPriorityTree>(max_size_, &priority_, &key_);
  }
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  uint64_t size() const { return size_; }
  bool full() const { return size_ == max_size_; }
  size_t num_columns() const { return bytes_.size(); }
  size_t column_bytes(size_t c) const { return bytes_[c]; }
  const uint8_t* column_data(size_t c, uint32_t slot) const { return columns_[c].get() + slot * bytes_[c]; }
  uint64_t key(uint32_t slot) const { return key_[slot]; }
  double priority(uint32_t slot) const { return priority_[slot]; }
  uint32_t times_sampled(uint32_t slot) const { return times_[slot]; }
  uint32_t oldest() const { return head_; }
  uint32_t newest() const { return tail_; }
  uint32_t older(uint32_t slot) const { return prev_[slot]; }
  uint32_t newer(uint32_t slot) const { return next_[slot]; }
  uint32_t find(uint64_t key) const { return index_.find(key); }
  double priority_mass() const { return mass_ ? mass_->total() : 0; }

  // Priority for an item inserted without one: the largest seen so far, 1.0 before any
  // positive one (Schaul et al., prioritized experience replay).
  double default_priority() const { return max_seen_ > 0 ? max_seen_ : 1.0; }
  void saw_priority(double p) { max_seen_ = std::max(max_seen_, p); }
  double max_priority_seen() const { return max_seen_; }

  // The slot the remover evicts next (kNone when empty).
  uint32_t victim() const {
    switch (remover_) {
      case Remover::kFifo: return head_;
      case Remover::kLifo: return tail_;
      case Remover::kLowestPriority: return lowest_->lowest();
    }
    return kNone;
  }

  // Adds an item (the table must not be full) as the newest; returns its slot. Its column bytes
  // are copied from src(c) for each column c.
  template <class Src>
  uint32_t add(uint64_t key, double priority, uint32_t times_sampled, Src src) {
    assert(size_ < max_size_ && key != 0);
    const uint32_t slot = free_[--free_top_];
    for (size_t c = 0; c < bytes_.size(); ++c) std::memcpy(columns_[c].get() + slot * bytes_[c], src(c), bytes_[c]);
    key_[slot] = key;
    priority_[slot] = priority;
    times_[slot] = times_sampled;
    dense_[size_] = slot;
    dense_pos_[slot] = static_cast<uint32_t>(size_);
    ++size_;
    prev_[slot] = tail_;
    next_[slot] = kNone;
    (tail_ == kNone ? head_ : next_[tail_]) = slot;
    tail_ = slot;
    index_.insert(key, slot);
    if (mass_) mass_->set(slot, weight(priority));
    if (lowest_) lowest_->update(slot, true);
    return slot;
  }

  void remove(uint32_t slot) {
    index_.erase(key_[slot]);
    const uint32_t pos = dense_pos_[slot];
    const uint32_t last = dense_[--size_];
    dense_[pos] = last;
    dense_pos_[last] = pos;
    (prev_[slot] == kNone ? head_ : next_[prev_[slot]]) = next_[slot];
    (next_[slot] == kNone ? tail_ : prev_[next_[slot]]) = prev_[slot];
    key_[slot] = 0;
    if (mass_) mass_->clear(slot);
    if (lowest_) lowest_->update(slot, false);
    free_[free_top_++] = slot;
  }

  // Sets the priorities of the given slots (one tree pass for the prioritized sampler).
  void set_priorities(const uint32_t* slots, const double* priorities, size_t n) {
    for (size_t k = 0; k < n; ++k) {
      priority_[slots[k]] = priorities[k];
      if (lowest_) lowest_->update(slots[k], true);
    }
    if (mass_) {
      tree_slots_.resize(n);
      tree_weights_.resize(n);
      for (size_t k = 0; k < n; ++k) {
        tree_slots_[k] = slots[k];
        tree_weights_[k] = weight(priorities[k]);
      }
      mass_->set_batch(tree_slots_.data(), tree_weights_.data(), n);
    }
  }

  uint32_t count_sample(uint32_t slot) { return ++times_[slot]; }
  bool reached_max_times(uint32_t slot) const {
    return max_times_sampled_ != 0 && times_[slot] >= max_times_sampled_;
  }

  // One item by the uniform or prioritized sampler, with its probability.
  uint32_t pick_random(Rng& rng, double* probability) const {
    if (sampler_ == Sampler::kPrioritized) {
      const double total = mass_->total();
      // As in Reverb, a table whose priorities are all zero is sampled uniformly.
      if (total > 0) {
        const uint32_t slot = static_cast<uint32_t>(mass_->find(rng.uniform() * total));
        *probability = mass_->get(slot) / total;
        return slot;
      }
    }
    *probability = 1.0 / static_cast<double>(size_);
    return dense_[rng.below(size_)];
  }

  double min_priority() const {
    if (size_ == 0) return 0;
    if (lowest_) return priority_[lowest_->lowest()];
    double m = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < size_; ++i) m = std::min(m, priority_[dense_[i]]);
    return m;
  }

  // Counters (checkpointed).
  uint64_t next_key = 1, inserts = 0, samples = 0, evictions = 0, removed_by_max_times_sampled = 0,
           unknown_key_updates = 0;
  RateLimiter limiter;

 private:
  // A priority of zero has zero probability even when alpha = 0 (Reverb's prioritized.cc).
  double weight(double p) const { return p == 0 ? 0 : std::pow(p, alpha_); }

  Sampler sampler_;
  Remover remover_;
  double alpha_;
  uint64_t max_size_;
  uint32_t max_times_sampled_;

  std::vector<size_t> bytes_;                      // per column, one item
  std::vector<std::unique_ptr<uint8_t[]>> columns_;  // per column, max_size items
  std::vector<uint64_t> key_;                      // per slot; 0 = free
  std::vector<double> priority_;
  std::vector<uint32_t> times_;
  std::vector<uint32_t> prev_, next_;  // insertion order: prev_ is older, next_ is newer
  uint32_t head_ = kNone, tail_ = kNone;  // oldest, newest
  // dense_[0, size_) are the occupied slots in no order; dense_pos_[dense_[i]] == i.
  std::vector<uint32_t> dense_, dense_pos_;
  uint64_t size_ = 0;
  std::vector<uint32_t> free_;  // free_[0, free_top_) are the free slots
  size_t free_top_ = free_.size();
  KeyIndex index_;
  std::unique_ptr<SumTree> mass_;                // prioritized: p^alpha per slot
  std::unique_ptr<LowestPriorityTree> lowest_;   // lowest_priority remover
  std::vector<size_t> tree_slots_;
  std::vector<double> tree_weights_;
  double max_seen_ = 0;  // largest priority given to insert() or update_priorities()
};

// Where a fifo/lifo sample continues: the last item taken and the one expected next.
struct OrderCursor {
  uint64_t last_key = 0;  // 0: nothing taken yet
  uint32_t next_slot = kNone;
  uint64_t next_key = 0;
  bool resumed = false;  // the sample has waited since it took its first item
};

}  // namespace

struct Table::Impl {
  explicit Impl(const TableOptions& o) : options(o), rng(device_seed()), store(std::make_unique<Store>(o)) {}

  // Waits on `cv` until ready() (returns kOk), close() (kClosed) or the deadline
  // (kDeadlineExceeded), counting the caller in *waiting and its blocked time in *blocked_ns.
  template <class Ready>
  Status await(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, uint64_t* waiting,
               uint64_t* blocked_ns, core::Deadline deadline, Ready ready) {
    if (closed) return Status::kClosed;
    if (ready()) return Status::kOk;
    const int64_t start = core::monotonic_ns();
    const auto until = core::SteadyClock::time_point(std::chrono::nanoseconds(deadline.at_ns()));
    const bool forever = deadline.at_ns() == core::Deadline::never().at_ns();
    ++*waiting;
    Status status = Status::kOk;
    for (;;) {
      bool timed_out = false;
      if (forever) {
        cv.wait(lock);
      } else {
        timed_out = cv.wait_until(lock, until) == std::cv_status::timeout;
      }
      if (closed) {
        status = Status::kClosed;
        break;
      }
      if (ready()) break;
      if (timed_out || deadline.expired()) {
        status = Status::kDeadlineExceeded;
        break;
      }
    }
    --*waiting;
    *blocked_ns += static_cast<uint64_t>(core::monotonic_ns() - start);
    return status;
  }

  // The next item of a fifo/lifo sample that has taken batch_keys[0, taken): the oldest (fifo)
  // or newest (lifo) item not in the batch yet; kNone when there is none (yet).
  uint32_t next_in_order(const OrderCursor& cursor, const uint64_t* batch_keys, size_t taken) const {
    const Store& s = *store;
    const bool cursor_valid = cursor.next_slot != kNone && s.key(cursor.next_slot) == cursor.next_key;
    if (options.sampler == Sampler::kFifo) {
      if (cursor.last_key == 0) return s.oldest();
      if (cursor_valid) return cursor.next_slot;
      // The expected item went away while the sample waited (or there was none): every item of
      // the batch is at most last_key, so take the oldest newer one. O(items skipped).
      uint32_t slot = s.newest();
      if (slot == kNone || s.key(slot) <= cursor.last_key) return kNone;
      while (s.older(slot) != kNone && s.key(s.older(slot)) > cursor.last_key) slot = s.older(slot);
      return slot;
    }
    if (cursor.last_key == 0) return s.newest();
    if (!cursor.resumed && cursor_valid) return cursor.next_slot;
    // After a wait, items inserted meanwhile are the newest; walk down from the newest, skipping
    // the batch. O(taken^2) at worst, and only after a wait in the middle of a batch.
    for (uint32_t slot = s.newest(); slot != kNone; slot = s.older(slot)) {
      if (std::find(batch_keys, batch_keys + taken, s.key(slot)) == batch_keys + taken) return slot;
    }
    return kNone;
  }

  // Whether the sampler can supply the next item of a batch.
  bool sampler_ready(size_t batch, size_t taken, const OrderCursor& cursor, const uint64_t* batch_keys) const {
    const Store& s = *store;
    if (s.size() == 0) return false;
    if (options.sampler == Sampler::kUniform || options.sampler == Sampler::kPrioritized) return true;
    if (taken == 0) return s.size() >= batch;
    return next_in_order(cursor, batch_keys, taken) != kNone;
  }

  const TableOptions& options;
  std::mutex mu;
  std::condition_variable can_insert, can_sample;
  bool closed = false;
  uint64_t waiting_inserters = 0, waiting_samplers = 0;
  uint64_t inserts_blocked_ns = 0, samples_blocked_ns = 0;
  Rng rng;
  std::unique_ptr<Store> store;
  std::vector<uint32_t> update_slots;  // update_priorities' scratch, reused
  std::vector<double> update_values;
};

// ---------------------------------------------------------------------------------------------
// Table.

Table::Table(TableOptions options) : options_(std::move(options)) {
  Problem p;
  if (find_problem(options_, &p)) {
    std::string key = p.key;
    if (p.column >= 0) key = "signature[" + std::to_string(p.column) + "]." + key;
    throw std::invalid_argument("replay table '" + options_.name + "': " + key + ": " + p.message);
  }
  impl_ = std::make_unique<Impl>(options_);
}

// Callers must have stopped calling (close() and join their threads) before destruction.
Table::~Table() = default;

Status Table::insert(const std::vector<core::TensorView>& columns, size_t n, const double* priorities,
                     core::Deadline deadline, std::vector<uint64_t>* keys, size_t* inserted) {
  assert(columns.size() == options_.signature.size());
  Impl& m = *impl_;
  std::unique_lock<std::mutex> lock(m.mu);
  size_t i = 0;
  Status status = m.closed ? Status::kClosed : Status::kOk;
  while (status == Status::kOk && i < n) {
    status = m.await(lock, m.can_insert, &m.waiting_inserters, &m.inserts_blocked_ns, deadline,
                     [&] { return m.store->limiter.can_insert(m.store->size()); });
    if (status != Status::kOk) break;
    Store& s = *m.store;
    // Insert as many as the limiter allows now, one at a time (Reverb: the remover evicts before
    // the insert is counted; here it evicts first so a full table never exceeds max_size).
    do {
      if (s.full()) {
        s.remove(s.victim());
        ++s.evictions;
      }
      double priority;
      if (priorities != nullptr) {
        priority = priorities[i];
        s.saw_priority(priority);
      } else {
        priority = s.default_priority();
      }
      const uint64_t key = s.next_key++;
      s.add(key, priority, 0, [&](size_t c) {
        return static_cast<const uint8_t*>(columns[c].data) + i * s.column_bytes(c);
      });
      s.limiter.inserted();
      ++s.inserts;
      if (keys != nullptr) keys->push_back(key);
      ++i;
    } while (i < n && s.limiter.can_insert(s.size()));
    if (m.waiting_samplers > 0) m.can_sample.notify_all();
  }
  if (inserted != nullptr) *inserted = i;
  return status;
}

// Items are taken one at a time as the limiter allows (Reverb samples item by item, so a batch
// larger than the limiter's window still completes while inserts keep coming). Uniform and
// prioritized draws are independent (with replacement); fifo/lifo take distinct items, oldest
// (newest) first, and wait for `batch` items before the first one. An item that reaches
// max_times_sampled is removed at once, so a later draw in the same batch cannot return it
// (as in Reverb's Table::SampleInternal).
Status Table::sample(size_t batch, core::Deadline deadline, SampleBatch* out) {
  const bool ordered = options_.sampler == Sampler::kFifo || options_.sampler == Sampler::kLifo;
  if (ordered && batch > options_.max_size) {
    throw std::invalid_argument("replay table '" + options_.name + "': a " + sampler_name(options_.sampler) +
                                " sample of " + std::to_string(batch) + " distinct items can never be served by a "
                                "table of max_size " + std::to_string(options_.max_size));
  }
  Impl& m = *impl_;
  const size_t ncols = options_.signature.size();
  std::unique_lock<std::mutex> lock(m.mu);
  // Output buffers only grow: resize() to a size already reached does not allocate.
  out->keys.resize(batch);
  out->probabilities.resize(batch);
  out->times_sampled.resize(batch);
  out->columns.resize(ncols);
  for (size_t c = 0; c < ncols; ++c) out->columns[c].resize(batch * m.store->column_bytes(c));
  out->priority_mass = m.store->priority_mass();

  size_t taken = 0;
  OrderCursor cursor;
  Status status = m.closed ? Status::kClosed : Status::kOk;
  while (status == Status::kOk && taken < batch) {
    auto ready = [&] {
      return m.store->limiter.can_sample(m.store->size()) &&
             m.sampler_ready(batch, taken, cursor, out->keys.data());
    };
    cursor.resumed = taken > 0;  // the do-loop below stopped short: this call waits
    status = m.await(lock, m.can_sample, &m.waiting_samplers, &m.samples_blocked_ns, deadline, ready);
    if (status != Status::kOk) break;
    Store& s = *m.store;
    if (taken == 0) out->priority_mass = s.priority_mass();
    do {
      uint32_t slot;
      double probability = 1.0;  // fifo and lifo are deterministic (Reverb's FifoSelector)
      if (ordered) {
        slot = m.next_in_order(cursor, out->keys.data(), taken);
        cursor.last_key = s.key(slot);
        cursor.next_slot = options_.sampler == Sampler::kFifo ? s.newer(slot) : s.older(slot);
        cursor.next_key = cursor.next_slot == kNone ? 0 : s.key(cursor.next_slot);
      } else {
        slot = s.pick_random(m.rng, &probability);
      }
      for (size_t c = 0; c < ncols; ++c) {
        const size_t bytes = s.column_bytes(c);
        std::memcpy(out->columns[c].data() + taken * bytes, s.column_data(c, slot), bytes);
      }
      out->keys[taken] = s.key(slot);
      out->probabilities[taken] = probability;
      out->times_sampled[taken] = s.count_sample(slot);
      s.limiter.sampled();
      ++s.samples;
      ++taken;
      if (s.reached_max_times(slot)) {
        s.remove(slot);
        ++s.removed_by_max_times_sampled;
      }
    } while (taken < batch && ready());
    if (m.waiting_inserters > 0) m.can_insert.notify_all();
  }
  if (taken < batch) {  // gave up: keep what was taken (it has been counted), drop the rest
    out->keys.resize(taken);
    out->probabilities.resize(taken);
    out->times_sampled.resize(taken);
    for (size_t c = 0; c < ncols; ++c) out->columns[c].resize(taken * m.store->column_bytes(c));
  }
  out->table_size = m.store->size();
  return status;
}

size_t Table::update_priorities(const uint64_t* keys, const double* priorities, size_t n) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mu);
  Store& s = *m.store;
  m.update_slots.clear();
  m.update_values.clear();
  for (size_t k = 0; k < n; ++k) {
    const uint32_t slot = s.find(keys[k]);
    if (slot == kNone) {
      ++s.unknown_key_updates;
      continue;
    }
    m.update_slots.push_back(slot);
    m.update_values.push_back(priorities[k]);
    s.saw_priority(priorities[k]);
  }
  s.set_priorities(m.update_slots.data(), m.update_values.data(), m.update_slots.size());
  return m.update_slots.size();
}

uint64_t Table::size() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->store->size();
}

TableStats Table::stats() const {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mu);
  const Store& s = *m.store;
  TableStats t;
  t.size = s.size();
  t.max_size = options_.max_size;
  t.inserts = s.inserts;
  t.samples = s.samples;
  t.evictions = s.evictions;
  t.removed_by_max_times_sampled = s.removed_by_max_times_sampled;
  t.unknown_key_updates = s.unknown_key_updates;
  t.priority_mass = s.priority_mass();
  t.max_priority = s.default_priority();
  t.min_priority = s.min_priority();
  t.inserts_blocked_ns = m.inserts_blocked_ns;
  t.samples_blocked_ns = m.samples_blocked_ns;
  t.waiting_inserters = m.waiting_inserters;
  t.waiting_samplers = m.waiting_samplers;
  return t;
}

void Table::close() {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mu);
  m.closed = true;
  m.can_insert.notify_all();
  m.can_sample.notify_all();
}

// ---------------------------------------------------------------------------------------------
// Checkpoint format, version 1 (little-endian; str = u32 length + bytes):
//   "ORCHTBL1"
//   str   describe() of the writing table (for people reading the file)
//   options: str name; u32 columns; per column {str name; u8 dtype; u8 rank; i64 dims[rank]};
//            u8 sampler; f64 priority_exponent; u8 remover; u64 max_size; u32 max_times_sampled;
//            u64 min_size_to_sample; f64 samples_per_insert; f64 error_buffer
//   counters: u64 next_key, inserts, samples, evictions, removed_by_max_times_sampled,
//             unknown_key_updates; f64 max_priority_seen
//   rate limiter: u64 inserts, samples
//   u64 items, then per item, oldest first: u64 key; f64 priority; u32 times_sampled;
//             u64 insertion order (0 = oldest); the item's bytes of each column in signature order

void Table::save(std::ostream& out) const {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mu);
  const Store& s = *m.store;
  const TableOptions& o = options_;
  Writer w(out);
  w.bytes(kMagic, sizeof(kMagic));
  w.str(o.describe());
  w.str(o.name);
  w.put<uint32_t>(static_cast<uint32_t>(o.signature.size()));
  for (const auto& spec : o.signature) {
    w.str(spec.name);
    w.put<uint8_t>(static_cast<uint8_t>(spec.dtype));
    w.put<uint8_t>(static_cast<uint8_t>(spec.shape.size()));
    for (int64_t d : spec.shape) w.put<int64_t>(d);
  }
  w.put<uint8_t>(static_cast<uint8_t>(o.sampler));
  w.put<double>(o.priority_exponent);
  w.put<uint8_t>(static_cast<uint8_t>(o.remover));
  w.put<uint64_t>(o.max_size);
  w.put<uint32_t>(o.max_times_sampled);
  w.put<uint64_t>(o.rate_limiter.min_size_to_sample);
  w.put<double>(o.rate_limiter.samples_per_insert);
  w.put<double>(o.rate_limiter.error_buffer);

  for (uint64_t v : {s.next_key, s.inserts, s.samples, s.evictions, s.removed_by_max_times_sampled,
                     s.unknown_key_updates})
    w.put<uint64_t>(v);
  w.put<double>(s.max_priority_seen());
  w.put<uint64_t>(s.limiter.inserts);
  w.put<uint64_t>(s.limiter.samples);

  w.put<uint64_t>(s.size());
  uint64_t order = 0;
  for (uint32_t slot = s.oldest(); slot != kNone; slot = s.newer(slot)) {
    w.put<uint64_t>(s.key(slot));
    w.put<double>(s.priority(slot));
    w.put<uint32_t>(s.times_sampled(slot));
    w.put<uint64_t>(order++);
    for (size_t c = 0; c < s.num_columns(); ++c) w.bytes(s.column_data(c, slot), s.column_bytes(c));
  }
  out.flush();
  if (!out) throw std::runtime_error("replay table '" + o.name + "': writing the checkpoint failed");
}

void Table::load(std::istream& in, std::string* warning) {
  const TableOptions& o = options_;
  Reader r(in, o.name);
  char magic[sizeof(kMagic)];
  r.bytes(magic, sizeof(magic), "the header");
  if (std::memcmp(magic, kMagic, sizeof(kMagic)) != 0)
    r.corrupt("not a replay table checkpoint (expected the header ORCHTBL1)");
  r.str("the description");

  // Saved options: the signature must match; other settings may differ (this table's win).
  TableOptions saved;
  saved.name = r.str("the table name");
  const auto ncols = r.get<uint32_t>("the column count");
  if (ncols > 4096) r.corrupt(std::to_string(ncols) + " columns");
  for (uint32_t c = 0; c < ncols; ++c) {
    core::TensorSpec spec;
    spec.name = r.str("a column name");
    const auto dtype = r.get<uint8_t>("a column dtype");
    if (!(dtype >= 1 && dtype <= 10)) r.corrupt("column '" + spec.name + "' has dtype " + std::to_string(dtype));
    spec.dtype = static_cast<core::DType>(dtype);
    const auto rank = r.get<uint8_t>("a column rank");
    if (rank > core::kMaxRank) r.corrupt("column '" + spec.name + "' has rank " + std::to_string(rank));
    for (uint8_t k = 0; k < rank; ++k) spec.shape.push_back(r.get<int64_t>("a column shape"));
    saved.signature.push_back(std::move(spec));
  }
  const auto sampler = r.get<uint8_t>("the sampler");
  saved.priority_exponent = r.get<double>("the priority exponent");
  const auto remover = r.get<uint8_t>("the remover");
  if (sampler > 3 || remover > 2) r.corrupt("unknown sampler or remover");
  saved.sampler = static_cast<Sampler>(sampler);
  saved.remover = static_cast<Remover>(remover);
  saved.max_size = r.get<uint64_t>("max_size");
  saved.max_times_sampled = r.get<uint32_t>("max_times_sampled");
  saved.rate_limiter.min_size_to_sample = r.get<uint64_t>("min_size_to_sample");
  saved.rate_limiter.samples_per_insert = r.get<double>("samples_per_insert");
  saved.rate_limiter.error_buffer = r.get<double>("error_buffer");

  auto mismatch = [&](const std::string& what) {
    throw std::runtime_error("replay table '" + o.name + "': checkpoint signature does not match: " + what);
  };
  for (size_t c = 0; c < std::max(o.signature.size(), saved.signature.size()); ++c) {
    if (c >= saved.signature.size()) mismatch("column '" + o.signature[c].name + "' is not in the checkpoint");
    if (c >= o.signature.size()) mismatch("checkpoint has an extra column '" + saved.signature[c].name + "'");
    const auto& want = o.signature[c];
    const auto& got = saved.signature[c];
    if (want.name != got.name || want.dtype != got.dtype || want.shape != got.shape) {
      mismatch("column " + std::to_string(c) + " is '" + spec_text(got) + "' in the checkpoint, '" +
               spec_text(want) + "' in the table");
    }
  }

  auto fresh = std::make_unique<Store>(o);
  Store& s = *fresh;
  s.next_key = r.get<uint64_t>("the counters");
  s.inserts = r.get<uint64_t>("the counters");
  s.samples = r.get<uint64_t>("the counters");
  s.evictions = r.get<uint64_t>("the counters");
  s.removed_by_max_times_sampled = r.get<uint64_t>("the counters");
  s.unknown_key_updates = r.get<uint64_t>("the counters");
  const double max_seen = r.get<double>("the counters");
  if (!(max_seen >= 0 && std::isfinite(max_seen))) r.corrupt("max priority " + number(max_seen));
  s.saw_priority(max_seen);
  s.limiter.inserts = r.get<uint64_t>("the rate limiter");
  s.limiter.samples = r.get<uint64_t>("the rate limiter");

  const auto items = r.get<uint64_t>("the item count");
  if (items > static_cast<uint64_t>(kMaxTableSize)) r.corrupt(std::to_string(items) + " items");
  // Written oldest first: when this table is smaller, skip the oldest.
  const uint64_t skip = items > o.max_size ? items - o.max_size : 0;
  size_t item_bytes = 0;
  for (size_t c = 0; c < s.num_columns(); ++c) item_bytes += s.column_bytes(c);
  std::vector<std::vector<uint8_t>> buffer(s.num_columns());
  for (size_t c = 0; c < s.num_columns(); ++c) buffer[c].resize(s.column_bytes(c));
  uint64_t last_key = 0, over_max_times = 0;
  for (uint64_t k = 0; k < items; ++k) {
    const auto key = r.get<uint64_t>("an item");
    const auto priority = r.get<double>("an item");
    const auto times = r.get<uint32_t>("an item");
    const auto order = r.get<uint64_t>("an item");
    if (key == 0 || key <= last_key || key >= s.next_key || order != k)
      r.corrupt("item " + std::to_string(k) + " has key " + std::to_string(key) + " and order " + std::to_string(order));
    if (!(priority >= 0 && std::isfinite(priority)))
      r.corrupt("item " + std::to_string(key) + " has priority " + number(priority));
    last_key = key;
    if (k < skip) {
      r.skip(item_bytes, "an item's columns");
      continue;
    }
    for (size_t c = 0; c < s.num_columns(); ++c) r.bytes(buffer[c].data(), buffer[c].size(), "an item's columns");
    if (o.max_times_sampled != 0 && times >= o.max_times_sampled) {
      ++over_max_times;  // already sampled as often as this table allows
      continue;
    }
    s.add(key, priority, times, [&](size_t c) { return buffer[c].data(); });
  }

  std::string diff;
  auto differs = [&](const char* what, const std::string& was, const std::string& now) {
    if (was != now) diff += std::string(diff.empty() ? "" : ", ") + what + " " + was + " -> " + now;
  };
  differs("name", saved.name, o.name);
  differs("sampler", sampler_name(saved.sampler), sampler_name(o.sampler));
  differs("priority_exponent", number(saved.priority_exponent), number(o.priority_exponent));
  differs("remover", remover_name(saved.remover), remover_name(o.remover));
  differs("max_size", std::to_string(saved.max_size), std::to_string(o.max_size));
  differs("max_times_sampled", std::to_string(saved.max_times_sampled), std::to_string(o.max_times_sampled));
  differs("min_size_to_sample", std::to_string(saved.rate_limiter.min_size_to_sample),
          std::to_string(o.rate_limiter.min_size_to_sample));
  differs("samples_per_insert", number(saved.rate_limiter.samples_per_insert), number(o.rate_limiter.samples_per_insert));
  differs("error_buffer", number(saved.rate_limiter.error_buffer), number(o.rate_limiter.error_buffer));
  if (skip > 0) diff += (diff.empty() ? "" : "; ") + std::string("kept the newest ") + std::to_string(o.max_size) +
                        " of " + std::to_string(items) + " items";
  if (over_max_times > 0) diff += (diff.empty() ? "" : "; ") + std::string("dropped ") + std::to_string(over_max_times) +
                                  " items already sampled max_times_sampled times";
  if (warning != nullptr) {
    warning->clear();
    if (!diff.empty()) *warning = "replay table '" + o.name + "': checkpoint settings differ (the run spec wins): " + diff;
  }

  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mu);
  m.store.swap(fresh);
  m.can_insert.notify_all();
  m.can_sample.notify_all();
  // `fresh` (the old contents) is freed after the lock is released.
}

}  // namespace orchard::replay
