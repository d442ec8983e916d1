// SumTree against a brute-force array: totals, minima, prefix search, batch updates, drift.
#include "orchard/replay/sum_tree.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

using orchard::replay::SumTree;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The brute-force model: leaf values, NaN for an empty leaf.
struct Model {
  explicit Model(size_t n) : value(n, std::nan("")) {}
  bool empty(size_t i) const { return std::isnan(value[i]); }
  double get(size_t i) const { return empty(i) ? 0 : value[i]; }
  long double total() const {
    long double t = 0;
    for (size_t i = 0; i < value.size(); ++i) t += get(i);
    return t;
  }
  // Minimum over non-empty leaves and the lowest index holding it.
  std::pair<double, size_t> min() const {
    double m = kInf;
    size_t at = value.size();
    for (size_t i = 0; i < value.size(); ++i) {
      if (!empty(i) && value[i] < m) {
        m = value[i];
        at = i;
      }
    }
    return {m, at};
  }
  long double prefix(size_t i) const {
    long double p = 0;
    for (size_t k = 0; k < i; ++k) p += get(k);
    return p;
  }
  std::vector<double> value;
};

// find(u) must return a non-empty leaf with positive value whose [prefix, prefix + value)
// contains u, up to rounding of the tree's partial sums.
void expect_find_consistent(const SumTree& tree, const Model& model, double u) {
  const size_t i = tree.find(u);
  ASSERT_LT(i, tree.capacity()) << "u=" << u;
  ASSERT_FALSE(model.empty(i)) << "find returned an empty leaf for u=" << u;
  ASSERT_GT(model.get(i), 0) << "find returned a zero leaf for u=" << u;
  const long double tol = 1e-9L * (model.total() + 1);
  const long double lo = model.prefix(i);
  EXPECT_LE(lo, u + tol) << "leaf " << i << " starts after u=" << u;
  EXPECT_GT(lo + model.get(i) + tol, u) << "leaf " << i << " ends before u=" << u;
}

}  // namespace

TEST(SumTree, EmptyTreeHasZeroTotalInfiniteMinAndNoLeaves) {
  SumTree tree(100);
  EXPECT_EQ(tree.capacity(), 100u);
  EXPECT_EQ(tree.total(), 0);
  EXPECT_EQ(tree.min(), kInf);
  EXPECT_EQ(tree.argmin(), tree.capacity());
  EXPECT_EQ(tree.find(0.0), tree.capacity());
}

TEST(SumTree, SingleLeafTree) {
  SumTree tree(1);
  tree.set(0, 2.5);
  EXPECT_EQ(tree.total(), 2.5);
  EXPECT_EQ(tree.min(), 2.5);
  EXPECT_EQ(tree.argmin(), 0u);
  EXPECT_EQ(tree.find(0.0), 0u);
  EXPECT_EQ(tree.find(2.4), 0u);
  tree.clear(0);
  EXPECT_EQ(tree.total(), 0);
  EXPECT_EQ(tree.min(), kInf);
}

TEST(SumTree, ZeroLeafCountsForMinButNeverForFind) {
  SumTree tree(8);
  tree.set(3, 0.0);
  tree.set(5, 1.0);
  EXPECT_EQ(tree.min(), 0.0);
  EXPECT_EQ(tree.argmin(), 3u);
  for (double u : {0.0, 0.5, 0.999999, 1.0, 5.0, -1.0}) EXPECT_EQ(tree.find(u), 5u) << u;
}

TEST(SumTree, FindClampsUAtOrBeyondTheTotalToTheLastPositiveLeaf) {
  SumTree tree(1000);
  tree.set(10, 1.0);
  tree.set(500, 2.0);
  tree.set(700, 0.0);  // non-empty but zero: must never be found
  EXPECT_EQ(tree.find(tree.total()), 500u);
  EXPECT_EQ(tree.find(std::nextafter(tree.total(), 0.0)), 500u);
  EXPECT_EQ(tree.find(1e300), 500u);
  EXPECT_EQ(tree.find(std::nan("")), 10u);
  EXPECT_EQ(tree.find(0.0), 10u);
  EXPECT_EQ(tree.find(0.999), 10u);
  EXPECT_EQ(tree.find(1.0), 500u);
}

TEST(SumTree, MatchesBruteForceUnder100kRandomSetAndClearOperations) {
  constexpr size_t kCapacity = 777;  // not a power of two
  SumTree tree(kCapacity, /*rebuild_interval=*/4096);
  Model model(kCapacity);
  std::mt19937_64 rng(12345);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::uniform_int_distribution<size_t> leaf(0, kCapacity - 1);
  for (int op = 0; op < 100'000; ++op) {
    const size_t i = leaf(rng);
    const double r = unit(rng);
    if (r < 0.3) {
      tree.clear(i);
      model.value[i] = std::nan("");
    } else {
      // Mostly ordinary values, some zeros and some tiny/huge ones to stress rounding.
      double v = r < 0.35 ? 0.0 : r < 0.4 ? unit(rng) * 1e-6 : r < 0.45 ? unit(rng) * 1e6 : unit(rng) * 10;
      tree.set(i, v);
      model.value[i] = v;
    }
    ASSERT_EQ(tree.get(i), model.get(i));
    const long double total = model.total();
    ASSERT_NEAR(static_cast<double>(total), tree.total(), 1e-10 * static_cast<double>(total) + 1e-300) << "op " << op;
    const auto [min, argmin] = model.min();
    ASSERT_EQ(tree.min(), min) << "op " << op;
    ASSERT_EQ(tree.argmin(), min == kInf ? tree.capacity() : argmin) << "op " << op;
    if (tree.total() > 0 && op % 10 == 0) {
      expect_find_consistent(tree, model, unit(rng) * tree.total());
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

TEST(SumTree, SetBatchGivesTheSameTreeAsSingleSets) {
  constexpr size_t kCapacity = 5000;
  SumTree single(kCapacity), batched(kCapacity);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::uniform_int_distribution<size_t> leaf(0, kCapacity - 1);
  for (int round = 0; round < 200; ++round) {
    std::vector<size_t> idx(1 + round % 300);
    std::vector<double> val(idx.size());
    for (size_t k = 0; k < idx.size(); ++k) {
      idx[k] = leaf(rng);  // duplicates allowed: the last value wins
      val[k] = unit(rng) * 5;
      single.set(idx[k], val[k]);
    }
    batched.set_batch(idx.data(), val.data(), idx.size());
    ASSERT_EQ(single.total(), batched.total());
    ASSERT_EQ(single.min(), batched.min());
    ASSERT_EQ(single.argmin(), batched.argmin());
    for (int q = 0; q < 20; ++q) {
      const double u = unit(rng) * single.total();
      ASSERT_EQ(single.find(u), batched.find(u));
    }
  }
  for (size_t i = 0; i < kCapacity; ++i) ASSERT_EQ(single.get(i), batched.get(i));
}

TEST(SumTree, DriftStaysBoundedAfter10MillionUpdates) {
  constexpr size_t kCapacity = 4096;
  SumTree tree(kCapacity);  // default rebuild interval
  std::vector<double> value(kCapacity, 0.0);
  std::mt19937_64 rng(99);
  std::uniform_int_distribution<size_t> leaf(0, kCapacity - 1);
  std::uniform_real_distribution<double> exponent(-6.0, 6.0);
  for (int op = 0; op < 10'000'000; ++op) {
    const size_t i = leaf(rng);
    const double v = std::pow(10.0, exponent(rng));  // twelve orders of magnitude
    tree.set(i, v);
    value[i] = v;
  }
  long double exact = 0;
  for (double v : value) exact += v;
  const double rel = std::fabs(static_cast<double>((tree.total() - exact) / exact));
  EXPECT_LT(rel, 1e-12) << "total " << tree.total() << " vs " << static_cast<double>(exact);
  const double before = tree.total();
  tree.rebuild();
  EXPECT_EQ(tree.total(), before) << "internal nodes were not consistent with the leaves";
  double min = kInf;
  for (double v : value) min = std::min(min, v);
  EXPECT_EQ(tree.min(), min);
}
