// Sum/min tree. Same idea as Reverb's PrioritizedSelector sum tree
// (reverb/cc/selectors/prioritized.cc), laid out as a heap over a power-of-two number of leaves
// so that the parent of node n is n / 2 and a leaf's path never depends on the tree's fill.
#include "orchard/replay/sum_tree.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>

namespace orchard::replay {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

size_t leaf_base(size_t capacity) {
  size_t n = 1;
  while (n < capacity) n <<= 1;
  return n;
}

}  // namespace

SumTree::SumTree(size_t capacity, uint64_t rebuild_interval)
    : capacity_(capacity),
      leaf0_(leaf_base(capacity)),
      sum_(2 * leaf0_, 0.0),
      min_(2 * leaf0_, kInf),
      rebuild_interval_(rebuild_interval) {}

// Each ancestor is recomputed from its two children instead of adding a delta, so an internal
// node always equals the rounded sum of its children and a subtree of empty leaves sums to
// exactly 0 (find() relies on that). The periodic rebuild() then only guards against anything
// that could break that invariant; it costs O(capacity) every rebuild_interval updates.
void SumTree::fix_up(size_t node) {
  for (; node >= 1; node >>= 1) {
    const size_t l = 2 * node;
    sum_[node] = sum_[l] + sum_[l + 1];
    min_[node] = std::min(min_[l], min_[l + 1]);
  }
  count_updates(1);
}

void SumTree::count_updates(uint64_t n) {
  updates_ += n;
  if (rebuild_interval_ != 0 && updates_ >= rebuild_interval_) {
    updates_ = 0;
    rebuild();
  }
}

void SumTree::set(size_t i, double value) {
  assert(i < capacity_ && value >= 0);
  sum_[leaf0_ + i] = value;
  min_[leaf0_ + i] = value;
  fix_up((leaf0_ + i) >> 1);
}

void SumTree::clear(size_t i) {
  assert(i < capacity_);
  sum_[leaf0_ + i] = 0;
  min_[leaf0_ + i] = kInf;
  fix_up((leaf0_ + i) >> 1);
}

void SumTree::set_batch(const size_t* indices, const double* values, size_t n) {
  if (n == 0) return;
  for (size_t k = 0; k < n; ++k) {
    assert(indices[k] < capacity_ && values[k] >= 0);
    sum_[leaf0_ + indices[k]] = values[k];
    min_[leaf0_ + indices[k]] = values[k];
  }
  // Level by level: the distinct parents of the touched nodes, each recomputed once. Sorted
  // node numbers stay sorted after halving, so one sort at the leaves suffices.
  std::vector<size_t>& level = scratch_;  // grows to the largest batch, then reused
  level.resize(n);
  for (size_t k = 0; k < n; ++k) level[k] = (leaf0_ + indices[k]) >> 1;
  std::sort(level.begin(), level.end());
  level.erase(std::unique(level.begin(), level.end()), level.end());
  while (!level.empty() && level[0] >= 1) {
    size_t out = 0;
    for (size_t node : level) {
      const size_t l = 2 * node;
      sum_[node] = sum_[l] + sum_[l + 1];
      min_[node] = std::min(min_[l], min_[l + 1]);
      const size_t parent = node >> 1;
      if (out == 0 || level[out - 1] != parent) level[out++] = parent;
    }
    level.resize(out);
  }
  count_updates(n);
}

size_t SumTree::argmin() const {
  if (!(min_[1] < kInf)) return capacity_;
  size_t node = 1;
  while (node < leaf0_) {
    const size_t l = 2 * node;
    node = min_[l] <= min_[l + 1] ? l : l + 1;  // ties: the lower index
  }
  return node - leaf0_;
}

size_t SumTree::find(double u) const {
  if (!(sum_[1] > 0)) return capacity_;
  if (!(u >= 0)) u = 0;  // also catches NaN
  size_t node = 1;
  while (node < leaf0_) {
    const size_t l = 2 * node;
    const double left = sum_[l];
    // Go right only into a subtree with mass; go left only into one with mass. A node with
    // mass has at least one child with mass, so this never ends on a zero leaf, even when u
    // was at or past the total (rounding) and is effectively clamped to the last positive leaf.
    if (u < left || !(sum_[l + 1] > 0)) {
      node = l;
    } else {
      u -= left;
      node = l + 1;
    }
  }
  return node - leaf0_;
}

void SumTree::rebuild() {
  for (size_t node = leaf0_ - 1; node >= 1; --node) {
    const size_t l = 2 * node;
    sum_[node] = sum_[l] + sum_[l + 1];
    min_[node] = std::min(min_[l], min_[l + 1]);
  }
}

}  // namespace orchard::replay
