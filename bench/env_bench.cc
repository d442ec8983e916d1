// CartPole through VectorEnv against a bare C++ loop of the same equations, in the same run.
//   build/bin/orchard_bench_envs
// The bare loop is the limit: N cart-poles as plain structs, the shared CartPole::advance()
// equations, the same pre-generated actions, auto-reset with the same RNG, observations, rewards
// and done flags written to batch buffers; nothing else. VectorEnv adds validation of the action
// batch, the virtual step, the time limit and episode statistics.
#include <benchmark/benchmark.h>

#include <vector>

#include "classic/cartpole.h"
#include "orchard/envs/registry.h"
#include "orchard/envs/rng.h"

using namespace orchard::envs;

namespace {

constexpr size_t kRing = 64;

std::vector<int64_t> make_actions(size_t n) {
  Rng rng(1);
  std::vector<int64_t> a(kRing * n);
  for (auto& x : a) x = static_cast<int64_t>(rng.below(2));
  return a;
}

void BM_CartPoleBareLoop(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  auto actions = make_actions(n);
  std::vector<classic::CartPole::State> s(n);
  std::vector<Rng> rngs;
  for (size_t i = 0; i < n; ++i) rngs.emplace_back(i);
  std::vector<float> obs(n * 4), rewards(n);
  std::vector<uint8_t> done(n);
  std::vector<int32_t> steps(n, 0);
  auto reset = [&](size_t i) {
    s[i] = {rngs[i].uniform(-0.05, 0.05), rngs[i].uniform(-0.05, 0.05), rngs[i].uniform(-0.05, 0.05),
            rngs[i].uniform(-0.05, 0.05)};
    steps[i] = 0;
  };
  for (size_t i = 0; i < n; ++i) reset(i);
  size_t k = 0;
  for (auto _ : state) {
    const int64_t* a = actions.data() + (k++ % kRing) * n;
    for (size_t i = 0; i < n; ++i) {
      bool term = classic::CartPole::advance(s[i], a[i]);
      bool trunc = ++steps[i] >= 500;
      rewards[i] = 1.0f;
      done[i] = term || trunc;
      if (done[i]) reset(i);
      float* o = obs.data() + i * 4;
      o[0] = static_cast<float>(s[i].x);
      o[1] = static_cast<float>(s[i].x_dot);
      o[2] = static_cast<float>(s[i].theta);
      o[3] = static_cast<float>(s[i].theta_dot);
    }
    benchmark::DoNotOptimize(obs.data());
    benchmark::DoNotOptimize(done.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
}

void BM_CartPoleVectorEnv(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  auto actions = make_actions(n);
  EnvRegistry r;
  register_classic(r);
  auto venv = r.make_vector("CartPole-v1", n);
  venv->reset(0);
  size_t k = 0;
  for (auto _ : state) {
    venv->step(actions.data() + (k++ % kRing) * n);
    benchmark::DoNotOptimize(venv->observations());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
}

}  // namespace

BENCHMARK(BM_CartPoleBareLoop)->Arg(1)->Arg(16)->Arg(256);
BENCHMARK(BM_CartPoleVectorEnv)->Arg(1)->Arg(16)->Arg(256);
