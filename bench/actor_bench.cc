// Actor throughput: env steps/s of the PPO actor loop (CartPole-v1, 64 envs, batched LibTorch
// inference, segments of 128 streamed to a real orchard-replay shard) against the bare VectorEnv
// with pre-generated random actions, in the same run.   build/bin/orchard_bench_actor [SECONDS]
#include <ATen/Parallel.h>

#include <cstdio>
#include <cstdlib>

#include "orchard/actors/ppo_actor.h"
#include "orchard/core/clock.h"
#include "orchard/envs/registry.h"
#include "shard_process.h"

using namespace orchard;

int main(int argc, char** argv) {
  at::set_num_threads(1);
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  const int64_t kEnvs = 64;

  // Bare VectorEnv: the limit.
  auto venv = envs::EnvRegistry::global().make_vector("CartPole-v1", kEnvs);
  venv->reset(0);
  std::vector<int64_t> actions(64 * kEnvs);
  envs::Rng rng(1);
  for (auto& a : actions) a = static_cast<int64_t>(rng.below(2));
  core::Stopwatch clock;
  uint64_t bare_steps = 0;
  for (size_t k = 0; clock.elapsed_s() < seconds; ++k) {
    venv->step(actions.data() + (k % 64) * kEnvs);
    bare_steps += kEnvs;
  }
  const double bare = static_cast<double>(bare_steps) / clock.elapsed_s();

  actors::PpoActorOptions o;
  o.num_envs = kEnvs;
  o.segment_length = 128;
  o.writer.table = "segments";
  o.writer.endpoints = {"tcp://127.0.0.1:1"};  // the probe never writes (ZeroMQ connects lazily)
  actors::PpoActor probe(o);                    // to learn the segment signature
  std::string sig = "[";
  for (const auto& c : probe.segment_signature()) {
    sig += (sig.size() > 1 ? ", " : "") + std::string("{name: ") + c.name + ", dtype: " + core::dtype_name(c.dtype) +
           ", shape: [";
    for (size_t d = 0; d < c.shape.size(); ++d) sig += (d ? ", " : "") + std::to_string(c.shape[d]);
    sig += "]}";
  }
  sig += "]";
  bench::Shards shards(1, "    - name: segments\n      sampler: fifo\n      max_size: 2000\n      signature: " + sig + "\n");
  o.writer.endpoints = shards.endpoints;
  actors::PpoActor actor(o);
  actor.run(10);  // warm up
  clock.restart();
  uint64_t before = actor.stats().env_steps;
  while (clock.elapsed_s() < seconds) actor.run(16);
  actor.flush(60000);
  const double with_inference = static_cast<double>(actor.stats().env_steps - before) / clock.elapsed_s();
  std::printf("CartPole-v1, 64 envs: bare VectorEnv %.2f M steps/s; PPO actor (inference + segments to a shard) "
              "%.0f k steps/s; ratio %.3f\n",
              bare / 1e6, with_inference / 1e3, with_inference / bare);
  return 0;
}
