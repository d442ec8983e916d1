// Tensor codec throughput against a plain memcpy of the same bytes, measured in the same run.
//   build/bin/orchard_bench_core --benchmark_filter='Codec|Memcpy'
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "orchard/core/tensor.h"
#include "orchard/core/wire.h"

using namespace orchard::core;
namespace v1 = orchard::v1;

namespace {

// The baseline: copying the bytes once, which is what encoding with a copy must at least do.
void BM_Memcpy(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  std::vector<char> src(n, 1), dst(n);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), n);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}

// Encode with a copy: descriptor + a new ZeroMQ frame + memcpy of the payload.
void BM_CodecEncodeCopy(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  std::vector<float> src(n / sizeof(float), 1.0f);
  TensorView view{"obs", DType::kFloat32, Shape{static_cast<int64_t>(src.size())}, src.data()};
  for (auto _ : state) {
    MessageBuilder m(v1::INSERT, 1);
    m.add_tensor_copy(view);
    benchmark::DoNotOptimize(m.frames().data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}

// Encode without a copy: the frame borrows the caller's buffer.
void BM_CodecEncodeBorrowed(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  auto src = std::make_shared<std::vector<float>>(n / sizeof(float), 1.0f);
  TensorView view{"obs", DType::kFloat32, Shape{static_cast<int64_t>(src->size())}, src->data()};
  for (auto _ : state) {
    MessageBuilder m(v1::INSERT, 1);
    m.add_tensor_borrowed(view, src);
    benchmark::DoNotOptimize(m.frames().data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}

// Decode: validate the descriptor against the frame and copy into a caller-owned buffer (what a
// replay table or a learner batch does with received bytes).
void BM_CodecDecodeCopy(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  std::vector<float> src(n / sizeof(float), 1.0f), dst(src.size());
  TensorView view{"obs", DType::kFloat32, Shape{static_cast<int64_t>(src.size())}, src.data()};
  v1::TensorDesc desc;
  encode_desc(view, &desc);
  for (auto _ : state) {
    TensorView v = decode_desc(desc, src.data(), n);
    copy_tensor(v, dst.data(), n);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}

// Decode to a zero-copy view only: the fixed cost of validation.
void BM_CodecDecodeView(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  std::vector<float> src(n / sizeof(float), 1.0f);
  TensorView view{"obs", DType::kFloat32, Shape{static_cast<int64_t>(src.size())}, src.data()};
  v1::TensorDesc desc;
  encode_desc(view, &desc);
  for (auto _ : state) {
    TensorView v = decode_desc(desc, src.data(), n);
    benchmark::DoNotOptimize(v.data);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}

// A whole experience envelope (5 columns, 256 CartPole transitions) serialised and parsed.
void BM_CodecEnvelopeInsert256(benchmark::State& state) {
  const int64_t items = 256;
  std::vector<float> obs(items * 4), next_obs(items * 4), reward(items), discount(items);
  std::vector<int64_t> action(items);
  std::string bytes;
  for (auto _ : state) {
    MessageBuilder m(v1::INSERT, 1);
    auto* b = m.envelope().mutable_insert();
    b->set_table("main");
    b->set_num_items(items);
    m.add_tensor_borrowed({"obs", DType::kFloat32, Shape{items, 4}, obs.data()}, nullptr);
    m.add_tensor_borrowed({"action", DType::kInt64, Shape{items}, action.data()}, nullptr);
    m.add_tensor_borrowed({"reward", DType::kFloat32, Shape{items}, reward.data()}, nullptr);
    m.add_tensor_borrowed({"discount", DType::kFloat32, Shape{items}, discount.data()}, nullptr);
    m.add_tensor_borrowed({"next_obs", DType::kFloat32, Shape{items, 4}, next_obs.data()}, nullptr);
    m.envelope().SerializeToString(&bytes);
    v1::Envelope parsed;
    parsed.ParseFromString(bytes);
    benchmark::DoNotOptimize(parsed.tensors_size());
  }
  state.SetItemsProcessed(state.iterations() * items);
}

}  // namespace

#define SIZES ->Arg(4 << 10)->Arg(64 << 10)->Arg(1 << 20)->Arg(16 << 20)
BENCHMARK(BM_Memcpy) SIZES;
BENCHMARK(BM_CodecEncodeCopy) SIZES;
BENCHMARK(BM_CodecEncodeBorrowed) SIZES;
BENCHMARK(BM_CodecDecodeCopy) SIZES;
BENCHMARK(BM_CodecDecodeView) SIZES;
BENCHMARK(BM_CodecEnvelopeInsert256);
