// Sum and min trees over float64 priorities: O(log n) update, prefix-sum search and min, for
// prioritized sampling and lowest-priority removal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace orchard::replay {

// A complete binary tree over `capacity` leaves (rounded up to a power of two) storing, in each
// internal node, the sum and the minimum of its children. Empty leaves hold 0 for the sum and
// +inf for the min. Floating-point drift from many incremental updates is bounded by rebuilding
// the internal nodes from the leaves every `rebuild_interval` updates.
class SumTree {
 public:
  explicit SumTree(size_t capacity, uint64_t rebuild_interval = 1u << 20);

  size_t capacity() const { return capacity_; }
  // Sets leaf i (value >= 0). O(log n).
  void set(size_t i, double value);
  // Marks leaf i empty (sum 0, min +inf).
  void clear(size_t i);
  // Sets many leaves, then fixes each touched path once.
  void set_batch(const size_t* indices, const double* values, size_t n);
  double get(size_t i) const { return sum_[leaf0_ + i]; }
  double total() const { return sum_[1]; }
  // Minimum over non-empty leaves (+inf when empty) and its index.
  double min() const { return min_[1]; }
  size_t argmin() const;
  // The leaf i such that prefix(i) <= u < prefix(i) + value(i), for u in [0, total()); never an
  // empty leaf while total() > 0 (u is clamped).
  size_t find(double u) const;
  // Recomputes every internal node from the leaves.
  void rebuild();

 private:
  void fix_up(size_t node);
  void count_updates(uint64_t n);  // rebuilds every rebuild_interval_ updates

  size_t capacity_;
  size_t leaf0_;  // index of leaf 0 in the arrays (a power of two)
  std::vector<double> sum_, min_;
  uint64_t updates_ = 0, rebuild_interval_;
  std::vector<size_t> scratch_;  // set_batch's node lists, reused
};

}  // namespace orchard::replay
