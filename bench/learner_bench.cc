// The PPO learner's update on the quickstart's batch shape (CartPole-v1, 2 actors x 8 envs x
// T=32 = 512 rows, 4 epochs x 4 minibatches), whole and in parts, single-threaded as
// orchard-learner runs it (learner.torch_threads: 1). docs/benchmarks.md, "Learner update".
// Also: the same update on 2 learner ranks (threads of this process, each with its own Gloo
// process group over loopback TCP, as orchard-learner ranks run it) and the all-reduce alone.
//   build/bin/orchard_bench_learner --benchmark_repetitions=3
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <thread>

#include "orchard/core/net.h"
#include "orchard/envs/registry.h"
#include "orchard/learner/gradient_sync.h"
#include "orchard/learner/ppo.h"
#include "orchard/learner/torch_info.h"

namespace {

using orchard::learner::ActorCritic;
using orchard::learner::PpoConfig;
using orchard::learner::PpoLearner;
using orchard::learner::Rollout;

constexpr int64_t kRows = 512;

std::shared_ptr<ActorCritic> cartpole_model() {
  auto env = orchard::envs::EnvRegistry::global().make_vector("CartPole-v1", 1, {});
  return std::make_shared<ActorCritic>(env->spec().observation_space, env->spec().action_space,
                                       orchard::learner::ModelConfig{});
}

Rollout cartpole_batch(ActorCritic& model) {
  Rollout r;
  r.obs = torch::randn({kRows, 4});
  torch::NoGradGuard ng;
  auto a = model.act(r.obs);
  r.actions = a.action;
  r.behaviour_logp = a.logp;
  r.values = a.value;
  r.advantages = torch::randn({kRows});
  r.returns = r.values + r.advantages;
  return r;
}

void BM_PpoUpdate(benchmark::State& state) {
  orchard::learner::set_compute_threads(1);
  torch::manual_seed(1);
  auto model = cartpole_model();
  PpoConfig cfg;
  cfg.update_epochs = state.range(0);
  cfg.num_minibatches = state.range(1);
  PpoLearner learner(model, cfg);
  Rollout r = cartpole_batch(*model);
  for (auto _ : state) benchmark::DoNotOptimize(learner.update(r, 1.0));
  state.counters["rows_per_s"] = benchmark::Counter(static_cast<double>(kRows * state.iterations()),
                                                    benchmark::Counter::kIsRate);
  state.counters["minibatches"] = static_cast<double>(cfg.update_epochs * cfg.num_minibatches);
}
BENCHMARK(BM_PpoUpdate)->Args({4, 4})->Args({1, 1})->Unit(benchmark::kMillisecond);

// One minibatch of 128 rows, in parts: forward + loss, backward, then the gradient-norm clip and
// the Adam step as PpoLearner does them (FlatAdam, one buffer) and as torch::optim::Adam and
// torch::nn::utils::clip_grad_norm_ do them per parameter tensor (what PpoLearner used before).
enum Part { kForward, kBackward, kFlatClip, kFlatAdam, kTorchClip, kTorchAdam };
void BM_PpoMinibatchPart(benchmark::State& state) {
  orchard::learner::set_compute_threads(1);
  torch::manual_seed(1);
  const auto part = static_cast<Part>(state.range(0));
  auto model = cartpole_model();
  PpoLearner learner(model, PpoConfig{});
  auto torch_model = cartpole_model();  // plain parameters for the per-tensor optimiser
  torch::optim::Adam torch_adam(torch_model->parameters(), torch::optim::AdamOptions(2.5e-4).eps(1e-5));
  const bool flat = part == kFlatClip || part == kFlatAdam || part < kFlatClip;
  ActorCritic& m = flat ? *model : *torch_model;
  Rollout r = cartpole_batch(m);
  auto idx = torch::randperm(kRows).slice(0, 0, kRows / 4);
  auto loss = [&] {
    auto ev = m.evaluate(r.obs.index_select(0, idx), r.actions.index_select(0, idx));
    orchard::learner::PpoLossInputs in;
    in.new_logp = ev.logp;
    in.old_logp = r.behaviour_logp.index_select(0, idx);
    in.advantages = r.advantages.index_select(0, idx);
    in.new_values = ev.value;
    in.old_values = r.values.index_select(0, idx);
    in.returns = r.returns.index_select(0, idx);
    in.entropy = ev.entropy;
    return orchard::learner::ppo_loss(in, learner.config()).loss;
  };
  torch::Tensor l;
  for (auto _ : state) {
    if (part == kForward) {
      benchmark::DoNotOptimize(loss());
      continue;
    }
    state.PauseTiming();  // everything before the part measured
    l = loss();
    if (flat) learner.optimizer().zero_grad(); else torch_adam.zero_grad();
    if (part != kBackward) l.backward();
    if (part == kFlatAdam) learner.optimizer().clip_grad_norm(0.5);
    if (part == kTorchAdam) torch::nn::utils::clip_grad_norm_(torch_model->parameters(), 0.5);
    state.ResumeTiming();
    switch (part) {
      case kBackward: l.backward(); break;
      case kFlatClip: learner.optimizer().clip_grad_norm(0.5); break;
      case kFlatAdam: learner.optimizer().step(); break;
      case kTorchClip: torch::nn::utils::clip_grad_norm_(torch_model->parameters(), 0.5); break;
      case kTorchAdam: torch_adam.step(); break;
      default: break;
    }
  }
}
BENCHMARK(BM_PpoMinibatchPart)->ArgName("part")->DenseRange(0, 5)->Unit(benchmark::kMicrosecond);

// The update as rank 0 of `world` lockstep ranks: the other ranks are threads running the same
// number of updates; the flat gradients are averaged after every backward (learner.count > 1).
constexpr int kRankIterations = 30;
void BM_PpoUpdateRanks(benchmark::State& state) {
  orchard::learner::set_compute_threads(1);
  const int world = static_cast<int>(state.range(0));
  const int port = orchard::core::free_loopback_port();
  auto rank_loop = [port, world](int rank, benchmark::State* st) {
    orchard::learner::GradientSyncOptions o;
    o.rank = rank;
    o.world_size = world;
    o.store_port = port;
    orchard::learner::GradientSync sync(o);
    auto model = cartpole_model();
    PpoLearner learner(model, PpoConfig{});
    learner.after_backward = [&](torch::nn::Module&) { sync.average(learner.optimizer().flat_grads()); };
    Rollout r = cartpole_batch(*model);
    learner.update(r, 1.0);  // warm-up, in step with the others
    if (st) {
      for (auto _ : *st) benchmark::DoNotOptimize(learner.update(r, 1.0));
      st->counters["allreduce_ms_per_update"] = sync.seconds() * 1e3 / static_cast<double>(st->iterations() + 1);
    } else {
      for (int i = 0; i < kRankIterations; ++i) learner.update(r, 1.0);
    }
  };
  std::vector<std::thread> others;
  for (int r = 1; r < world; ++r) others.emplace_back(rank_loop, r, nullptr);
  rank_loop(0, &state);
  for (auto& t : others) t.join();
}
BENCHMARK(BM_PpoUpdateRanks)->Arg(2)->Iterations(kRankIterations)->Unit(benchmark::kMillisecond)->UseRealTime();

// One all-reduce (mean) of n floats between 2 ranks: n = the quickstart model's parameters
// (9 155) and a 256-256 SAC critic pair on Pendulum (134 658).
constexpr int kAllReduceIterations = 300;
void BM_AllReduce(benchmark::State& state) {
  const int64_t n = state.range(0);
  const int port = orchard::core::free_loopback_port();
  auto rank_loop = [port, n](int rank, benchmark::State* st) {
    orchard::learner::GradientSyncOptions o;
    o.rank = rank;
    o.world_size = 2;
    o.store_port = port;
    orchard::learner::GradientSync sync(o);
    torch::Tensor t = torch::ones({n});
    sync.average(t);
    if (st) {
      for (auto _ : *st) sync.average(t);
    } else {
      for (int i = 0; i < kAllReduceIterations; ++i) sync.average(t);
    }
  };
  std::thread other(rank_loop, 1, nullptr);
  rank_loop(0, &state);
  other.join();
}
BENCHMARK(BM_AllReduce)->Arg(9155)->Arg(134658)->Iterations(kAllReduceIterations)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
