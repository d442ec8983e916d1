// PPO on CartPole-v1 (in process): env steps and wall-clock to a mean return >= 475 over the last
// 20 episodes, per seed.   build/bin/orchard_bench_ppo_cartpole [SEEDS=5] [NUM_ENVS=4]
// Reference points: Stable-Baselines3 zoo reaches 500 at 100 k steps; CleanRL ppo.py 490 +- 6 at
// 500 k steps (CleanRL's defaults are this trainer's defaults).
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "orchard/learner/ppo.h"

using namespace orchard::learner;

int main(int argc, char** argv) {
  at::set_num_threads(1);
  const int seeds = argc > 1 ? std::atoi(argv[1]) : 5;
  const int envs = argc > 2 ? std::atoi(argv[2]) : 4;
  const long long budget = 300'000;
  for (int seed = 1; seed <= seeds; ++seed) {
    PpoTrainerConfig c;
    c.seed = static_cast<uint64_t>(seed);
    c.num_envs = envs;
    c.total_timesteps = 500'000;
    PpoTrainer trainer(c);
    const auto t0 = std::chrono::steady_clock::now();
    PpoIterationStats s;
    long long steps_to_target = -1;
    double seconds = 0, collect = 0, update = 0;
    while (s.global_step < budget) {
      s = trainer.iterate();
      collect += s.collect_seconds;
      update += s.update_seconds;
      if (trainer.recent_returns().size() >= 20 && s.mean_return >= 475) {
        steps_to_target = static_cast<long long>(s.global_step);
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        break;
      }
    }
    std::printf("seed %d, %d envs: steps to 475: %lld, %.1f s (collect %.1f s, update %.1f s), last mean %.1f\n", seed,
                envs, steps_to_target, seconds, collect, update, s.mean_return);
    std::fflush(stdout);
  }
  return 0;
}
