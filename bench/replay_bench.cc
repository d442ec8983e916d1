// Replay core, single-threaded, in process: sum-tree update and prefix search at 1M leaves, and a
// table's insert and sample of 256-item batches of 64-byte transitions at 1M items.
//   g++ -O2 ... bench/replay_bench.cc ... -lbenchmark -lbenchmark_main   (see docs/replay.md)
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "orchard/replay/sum_tree.h"
#include "orchard/replay/table.h"

using namespace orchard::replay;
using orchard::core::Deadline;
using orchard::core::DType;
using orchard::core::TensorView;

namespace {

// A cheap generator so the benchmarks measure the tree, not the RNG (xorshift64*).
struct FastRandom {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  size_t below(size_t n) { return static_cast<size_t>((static_cast<unsigned __int128>(next()) * n) >> 64); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

SumTree full_tree(size_t capacity) {
  SumTree tree(capacity);
  std::vector<size_t> idx(capacity);
  std::vector<double> val(capacity);
  FastRandom rng;
  for (size_t i = 0; i < capacity; ++i) {
    idx[i] = i;
    val[i] = 0.1 + rng.uniform();
  }
  tree.set_batch(idx.data(), val.data(), capacity);
  return tree;
}

// set(): one leaf at a random index, its path to the root recomputed.
void BM_SumTreeUpdate(benchmark::State& state) {
  const size_t capacity = static_cast<size_t>(state.range(0));
  SumTree tree = full_tree(capacity);
  FastRandom rng;
  for (auto _ : state) tree.set(rng.below(capacity), 0.1 + rng.uniform());
  benchmark::DoNotOptimize(tree.total());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_SumTreeUpdate)->Arg(1 << 10)->Arg(1'000'000);

// find(): a prefix-sum search for a uniform u.
void BM_SumTreeFind(benchmark::State& state) {
  const size_t capacity = static_cast<size_t>(state.range(0));
  SumTree tree = full_tree(capacity);
  FastRandom rng;
  const double total = tree.total();
  size_t sink = 0;
  for (auto _ : state) sink += tree.find(rng.uniform() * total);
  benchmark::DoNotOptimize(sink);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_SumTreeFind)->Arg(1 << 10)->Arg(1'000'000);

// set_batch(): 256 random leaves per call, as update_priorities does for a learner batch.
void BM_SumTreeSetBatch256(benchmark::State& state) {
  const size_t capacity = static_cast<size_t>(state.range(0));
  SumTree tree = full_tree(capacity);
  FastRandom rng;
  constexpr size_t kBatches = 1024;  // pre-drawn, cycled
  std::vector<size_t> idx(kBatches * 256);
  std::vector<double> val(idx.size());
  for (size_t k = 0; k < idx.size(); ++k) {
    idx[k] = rng.below(capacity);
    val[k] = 0.1 + rng.uniform();
  }
  size_t b = 0;
  for (auto _ : state) {
    tree.set_batch(idx.data() + b * 256, val.data() + b * 256, 256);
    b = (b + 1) % kBatches;
  }
  benchmark::DoNotOptimize(tree.total());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * 256));
}
BENCHMARK(BM_SumTreeSetBatch256)->Arg(1'000'000);

// A 64-byte transition in five columns: obs float32[12], action int32, reward, discount float32,
// done int32.
constexpr size_t kBatch = 256;
constexpr uint64_t kTableSize = 1'000'000;

TableOptions transition_table(Sampler sampler) {
  TableOptions o;
  o.name = "bench";
  o.signature = {{"obs", DType::kFloat32, {12}},
                 {"action", DType::kInt32, {}},
                 {"reward", DType::kFloat32, {}},
                 {"discount", DType::kFloat32, {}},
                 {"done", DType::kInt32, {}}};
  o.sampler = sampler;
  o.max_size = kTableSize;
  return o;
}

struct TransitionBatch {
  TransitionBatch() : obs(kBatch * 12, 0.5f), action(kBatch, 1), reward(kBatch, 1.0f), discount(kBatch, 0.99f),
                      done(kBatch, 0), priority(kBatch, 1.0) {
    const void* data[] = {obs.data(), action.data(), reward.data(), discount.data(), done.data()};
    const char* names[] = {"obs", "action", "reward", "discount", "done"};
    const DType dtypes[] = {DType::kFloat32, DType::kInt32, DType::kFloat32, DType::kFloat32, DType::kInt32};
    for (int c = 0; c < 5; ++c) {
      TensorView v;
      v.name = names[c];
      v.dtype = dtypes[c];
      v.data = data[c];
      columns.push_back(v);
    }
    FastRandom rng;
    for (double& p : priority) p = 0.1 + rng.uniform();
  }
  std::vector<float> obs;
  std::vector<int32_t> action;
  std::vector<float> reward, discount;
  std::vector<int32_t> done;
  std::vector<double> priority;
  std::vector<TensorView> columns;
};

void fill(Table& table, TransitionBatch& batch, const double* priorities) {
  std::vector<uint64_t> keys;
  size_t inserted;
  for (uint64_t n = 0; n < kTableSize; n += kBatch) {
    keys.clear();
    table.insert(batch.columns, kBatch, priorities, Deadline::never(), &keys, &inserted);
  }
}

// insert(): 256 transitions into a full table (each insert also evicts the oldest item).
void BM_TableInsert256(benchmark::State& state) {
  const auto sampler = static_cast<Sampler>(state.range(0));
  Table table(transition_table(sampler));
  TransitionBatch batch;
  const double* priorities = sampler == Sampler::kPrioritized ? batch.priority.data() : nullptr;
  fill(table, batch, priorities);
  std::vector<uint64_t> keys;
  keys.reserve(kBatch);
  size_t inserted = 0;
  for (auto _ : state) {
    keys.clear();
    table.insert(batch.columns, kBatch, priorities, Deadline::never(), &keys, &inserted);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  state.SetLabel(sampler_name(sampler));
}
BENCHMARK(BM_TableInsert256)->Arg(static_cast<int>(Sampler::kUniform))->Arg(static_cast<int>(Sampler::kPrioritized));

// sample(): 256 items (with replacement) from a full table, copied into a reused SampleBatch.
void BM_TableSample256(benchmark::State& state) {
  const auto sampler = static_cast<Sampler>(state.range(0));
  Table table(transition_table(sampler));
  TransitionBatch batch;
  fill(table, batch, sampler == Sampler::kPrioritized ? batch.priority.data() : nullptr);
  SampleBatch out;
  for (auto _ : state) {
    table.sample(kBatch, Deadline::never(), &out);
    benchmark::DoNotOptimize(out.columns[0].data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  state.SetLabel(sampler_name(sampler));
}
BENCHMARK(BM_TableSample256)->Arg(static_cast<int>(Sampler::kUniform))->Arg(static_cast<int>(Sampler::kPrioritized));

// update_priorities(): 256 keys of the last sample, as a learner sends them back.
void BM_TableUpdatePriorities256(benchmark::State& state) {
  Table table(transition_table(Sampler::kPrioritized));
  TransitionBatch batch;
  fill(table, batch, batch.priority.data());
  SampleBatch out;
  table.sample(kBatch, Deadline::never(), &out);
  for (auto _ : state) {
    benchmark::DoNotOptimize(table.update_priorities(out.keys.data(), batch.priority.data(), kBatch));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
}
BENCHMARK(BM_TableUpdatePriorities256);

}  // namespace
