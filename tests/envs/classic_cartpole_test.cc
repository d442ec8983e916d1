#include <gtest/gtest.h>

#include <cmath>
#include <ctime>
#include <vector>

#include "classic/cartpole.h"
#include "orchard/envs/check.h"
#include "orchard/envs/registry.h"
#include "orchard/envs/vector_env.h"

using namespace orchard::envs;
using orchard::EnvError;

TEST(CartPole, PassesConformanceCheck) {
  auto rep = check_env([] { return EnvRegistry::global().make("CartPole-v1"); });
  for (const auto& f : rep.failures) ADD_FAILURE() << f;
  EXPECT_TRUE(rep.ok());
}

// Gymnasium's equations, written out independently of the implementation.
TEST(CartPole, TrajectoryMatchesThePublishedEquations) {
  classic::CartPole env({});
  float obs[4];
  env.reset(3, obs);
  double x = obs[0], xd = obs[1], th = obs[2], thd = obs[3];
  const double g = 9.8, mc = 1.0, mp = 0.1, l = 0.5, F = 10.0, tau = 0.02, M = mc + mp;
  env.set_state({x, xd, th, thd});
  for (int t = 0; t < 60 && env.episode_active(); ++t) {
    int64_t a = (t * 7 / 3) % 2;
    double f = a ? F : -F;
    double temp = (f + mp * l * thd * thd * std::sin(th)) / M;
    double thacc = (g * std::sin(th) - std::cos(th) * temp) / (l * (4.0 / 3.0 - mp * std::cos(th) * std::cos(th) / M));
    double xacc = temp - mp * l * thacc * std::cos(th) / M;
    x += tau * xd;
    xd += tau * xacc;
    th += tau * thd;
    thd += tau * thacc;
    auto r = env.step(&a, obs);
    EXPECT_EQ(r.reward, 1.0f);
    EXPECT_NEAR(obs[0], x, 1e-6);
    EXPECT_NEAR(obs[1], xd, 1e-6);
    EXPECT_NEAR(obs[2], th, 1e-6);
    EXPECT_NEAR(obs[3], thd, 1e-6);
    bool done = x < -2.4 || x > 2.4 || th < -12 * 2 * M_PI / 360 || th > 12 * 2 * M_PI / 360;
    EXPECT_EQ(r.terminated, done) << "t=" << t;
  }
}

TEST(CartPole, TerminatesWhenThePoleFallsAndTruncatesAt500) {
  classic::CartPole env({});
  float obs[4];
  env.reset(0, obs);
  int64_t push_right = 1;
  int steps = 0;
  StepResult r;
  do {
    r = env.step(&push_right, obs);
    ++steps;
  } while (!r.terminated && !r.truncated);
  EXPECT_TRUE(r.terminated);
  EXPECT_LT(steps, 100);
  // A perfectly balanced pole never falls: the time limit truncates it.
  env.reset(0, obs);
  int64_t a = 0;
  for (int t = 0; t < 499; ++t) {
    env.set_state({0, 0, 0, 0});
    a = 1 - a;
    ASSERT_FALSE(env.step(&a, obs).truncated);
  }
  env.set_state({0, 0, 0, 0});
  r = env.step(&a, obs);
  EXPECT_TRUE(r.truncated);
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(env.elapsed_steps(), 500);
}

TEST(CartPole, BadActionsAndSteppingAfterDoneAreClearErrors) {
  auto env = EnvRegistry::global().make("CartPole-v1");
  float obs[4];
  int64_t a = 0;
  try {
    env->step(&a, obs);
    FAIL();
  } catch (const EnvError& e) {
    EXPECT_STREQ(e.what(), "CartPole-v1: step() before reset()");
  }
  env->reset(0, obs);
  a = 2;
  try {
    env->step(&a, obs);
    FAIL();
  } catch (const EnvError& e) {
    EXPECT_STREQ(e.what(), "CartPole-v1: action 2 is outside Discrete(2) (allowed 0..1)");
  }
}

TEST(CartPole, UnknownEnvAndOptionsAreRejected) {
  try {
    EnvRegistry::global().make("CartPol-v1");
    FAIL();
  } catch (const EnvError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'CartPole-v1'"), std::string::npos) << e.what();
  }
  try {
    EnvRegistry::global().make("CartPole-v1", EnvOptions::parse({"max_steps=10"}));
    FAIL();
  } catch (const EnvError& e) {
    EXPECT_STREQ(e.what(), "CartPole-v1: unknown option 'max_steps' (allowed: max_episode_steps, step_cost_us)");
  }
  try {
    EnvRegistry::global().make("CartPole-v1", EnvOptions::parse({"max_episode_steps=-3"}));
    FAIL();
  } catch (const EnvError& e) {
    EXPECT_NE(std::string(e.what()).find("max_episode_steps=-3: expected an integer in [1,"), std::string::npos)
        << e.what();
  }
  auto short_env = EnvRegistry::global().make("CartPole-v1", EnvOptions::parse({"max_episode_steps=10"}));
  EXPECT_EQ(short_env->spec().max_episode_steps, 10);
}

TEST(VectorEnv, AutoResetsAndReportsFinalObservationsAndEpisodeStats) {
  for (size_t threads : {1u, 3u}) {
    auto venv = EnvRegistry::global().make_vector("CartPole-v1", 8, EnvOptions::parse({"max_episode_steps=20"}),
                                                  threads);
    venv->reset(42);
    std::vector<int64_t> actions(8, 1);
    uint64_t finished = 0;
    for (int t = 0; t < 100; ++t) {
      venv->step(actions.data());
      for (size_t i = 0; i < 8; ++i) {
        if (venv->terminated()[i] || venv->truncated()[i]) {
          ++finished;
          EXPECT_GT(venv->episode_lengths()[i], 0);
          EXPECT_LE(venv->episode_lengths()[i], 20);
          EXPECT_FLOAT_EQ(venv->episode_returns()[i], static_cast<float>(venv->episode_lengths()[i]));
          // The final observation differs from the fresh one after auto-reset.
          EXPECT_NE(venv->final_observations_as<float>()[i * 4 + 2], venv->observations_as<float>()[i * 4 + 2]);
          EXPECT_LT(std::fabs(venv->observations_as<float>()[i * 4]), 0.051f);
        }
      }
    }
    EXPECT_EQ(finished, venv->episodes_finished());
    EXPECT_GT(finished, 8u);
    EXPECT_EQ(venv->total_steps(), 800u);
  }
}

TEST(VectorEnv, ThreadedAndSingleThreadedGiveIdenticalResults) {
  auto a = EnvRegistry::global().make_vector("CartPole-v1", 16, {}, 1);
  auto b = EnvRegistry::global().make_vector("CartPole-v1", 16, {}, 4);
  a->reset(7);
  b->reset(7);
  Rng rng(1);
  std::vector<int64_t> actions(16);
  for (int t = 0; t < 300; ++t) {
    for (auto& x : actions) x = static_cast<int64_t>(rng.below(2));
    a->step(actions.data());
    b->step(actions.data());
    ASSERT_EQ(0, std::memcmp(a->observations(), b->observations(), 16 * 4 * sizeof(float)));
    ASSERT_EQ(0, std::memcmp(a->rewards(), b->rewards(), 16 * sizeof(float)));
  }
  EXPECT_EQ(a->episodes_finished(), b->episodes_finished());
}

TEST(VectorEnv, InvalidActionNamesTheEnvIndexAndStepsNothing) {
  auto v = EnvRegistry::global().make_vector("CartPole-v1", 4);
  v->reset(0);
  std::vector<int64_t> actions = {0, 1, 5, 0};
  try {
    v->step(actions.data());
    FAIL();
  } catch (const EnvError& e) {
    EXPECT_STREQ(e.what(), "CartPole-v1: env 2: action 5 is outside Discrete(2) (allowed 0..1)");
  }
  EXPECT_EQ(v->total_steps(), 0u);
  EXPECT_EQ(v->env(0).elapsed_steps(), 0);
}

TEST(CartPole, ResetOptionsSetTheInitialStateRangeForOneEpisode) {
  auto env = EnvRegistry::global().make("CartPole-v1");
  float obs[4];
  env->reset(1, obs, EnvOptions::parse({"low=0.2", "high=0.3"}));
  for (float v : obs) {
    EXPECT_GE(v, 0.2f);
    EXPECT_LE(v, 0.3f);
  }
  env->reset(std::nullopt, obs);  // the next plain reset is back to +-0.05
  for (float v : obs) EXPECT_LE(std::fabs(v), 0.05f);
  try {
    env->reset(1, obs, EnvOptions::parse({"lo=0.2"}));
    FAIL();
  } catch (const EnvError& e) {
    EXPECT_STREQ(e.what(), "CartPole-v1 reset: unknown option 'lo' (allowed: high, low)");
  }
  try {
    env->reset(1, obs, EnvOptions::parse({"low=0.5", "high=0.1"}));
    FAIL();
  } catch (const EnvError& e) {
    EXPECT_NE(std::string(e.what()).find("is above high"), std::string::npos) << e.what();
  }
  // Envs without reset options reject any.
  auto g = EnvRegistry::global().make("MinAtar-Breakout-v1");
  std::vector<uint8_t> o(g->observation_space().nbytes());
  EXPECT_THROW(g->reset(1, o.data(), EnvOptions::parse({"low=0"})), EnvError);
}

namespace orchard::envs {
namespace {

// step_cost_us burns CPU time in each step (a benchmarking stand-in) and changes nothing else:
// the same trajectory, and at least the given CPU time per step.
TEST(CartPole, StepCostBurnsCpuTimeAndLeavesTheDynamicsAlone) {
  auto plain = EnvRegistry::global().make("CartPole-v1");
  auto costly = EnvRegistry::global().make("CartPole-v1", EnvOptions::parse({"step_cost_us=300"}));
  std::vector<float> a(4), b(4);
  plain->reset(7, a.data());
  costly->reset(7, b.data());
  auto cpu_ns = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  };
  const int64_t t0 = cpu_ns();
  for (int i = 0; i < 10; ++i) {
    int64_t action = i % 2;
    auto ra = plain->step(&action, a.data());
    auto rb = costly->step(&action, b.data());
    EXPECT_EQ(a, b) << "step " << i;
    EXPECT_EQ(ra.reward, rb.reward);
    EXPECT_EQ(ra.terminated, rb.terminated);
  }
  EXPECT_GE(cpu_ns() - t0, 10 * 300'000 * 9 / 10) << "each step should keep the CPU busy for 300 us";
}

}  // namespace
}  // namespace orchard::envs
