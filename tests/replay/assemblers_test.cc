// NStepAssembler and SequenceAssembler against hand-computed returns, discounts and segment
// boundaries, plus a randomized check that every step yields exactly one transition.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "orchard/replay/assemblers.h"

using namespace orchard::replay;
using orchard::core::DType;

namespace {

// One env, obs_dim 1, discrete actions; obs of step t is `t` unless given.
NStepOptions nstep_options(uint32_t n, double gamma, size_t num_envs = 1) {
  NStepOptions o;
  o.num_envs = num_envs;
  o.n = n;
  o.gamma = gamma;
  o.layout.obs_shape = {1};
  o.layout.action_dtype = DType::kInt64;
  return o;
}

void push_step(NStepAssembler& a, size_t env, float obs, int64_t action, float reward, bool term, bool trunc,
               float next_obs) {
  a.push(env, &obs, &action, reward, term, trunc, &next_obs);
}

int64_t action_at(const TransitionBatch& b, size_t i) {
  int64_t a;
  std::memcpy(&a, b.action.data() + i * sizeof(int64_t), sizeof(a));
  return a;
}

}  // namespace

TEST(NStepAssembler, EmitsNStepReturnOnceNStepsFollow) {
  NStepAssembler a(nstep_options(3, 0.5));
  // Steps t = 0..4 with reward t + 1, obs t, action 10 + t.
  for (int t = 0; t < 2; ++t) push_step(a, 0, t, 10 + t, t + 1, false, false, t + 1);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(a.pending(0), 2u);
  push_step(a, 0, 2, 12, 3, false, false, 3);
  ASSERT_EQ(a.size(), 1u);
  const auto& b = a.output();
  EXPECT_FLOAT_EQ(b.obs[0], 0.0f);
  EXPECT_EQ(action_at(b, 0), 10);
  EXPECT_FLOAT_EQ(b.reward[0], 1 + 0.5f * 2 + 0.25f * 3);  // 2.75
  EXPECT_FLOAT_EQ(b.discount[0], 0.125f);
  EXPECT_FLOAT_EQ(b.next_obs[0], 3.0f);  // obs_{t+3}
  EXPECT_EQ(b.steps[0], 3u);
  EXPECT_EQ(b.terminated[0], 0);
  EXPECT_EQ(b.truncated[0], 0);
  push_step(a, 0, 3, 13, 4, false, false, 4);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_FLOAT_EQ(b.obs[1], 1.0f);
  EXPECT_FLOAT_EQ(b.reward[1], 2 + 0.5f * 3 + 0.25f * 4);  // 4.5
  EXPECT_FLOAT_EQ(b.next_obs[1], 4.0f);
}

TEST(NStepAssembler, TerminationMidWindowFlushesEveryPendingStepWithZeroDiscount) {
  NStepAssembler a(nstep_options(3, 0.5));
  for (int t = 0; t < 3; ++t) push_step(a, 0, t, t, t + 1, false, false, t + 1);
  ASSERT_EQ(a.size(), 1u);
  // Step 3 terminates with final observation 99: steps 1, 2, 3 are pending.
  push_step(a, 0, 3, 3, 4, /*term=*/true, false, 99);
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a.pending(0), 0u);
  const auto& b = a.output();
  // t = 1: m = 3: 2 + 0.5*3 + 0.25*4
  EXPECT_FLOAT_EQ(b.obs[1], 1.0f);
  EXPECT_FLOAT_EQ(b.reward[1], 4.5f);
  EXPECT_EQ(b.steps[1], 3u);
  // t = 2: m = 2: 3 + 0.5*4
  EXPECT_FLOAT_EQ(b.obs[2], 2.0f);
  EXPECT_FLOAT_EQ(b.reward[2], 5.0f);
  EXPECT_EQ(b.steps[2], 2u);
  // t = 3: m = 1: 4
  EXPECT_FLOAT_EQ(b.obs[3], 3.0f);
  EXPECT_FLOAT_EQ(b.reward[3], 4.0f);
  EXPECT_EQ(b.steps[3], 1u);
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_FLOAT_EQ(b.discount[i], 0.0f) << i;
    EXPECT_FLOAT_EQ(b.next_obs[i], 99.0f) << i;
    EXPECT_EQ(b.terminated[i], 1) << i;
    EXPECT_EQ(b.truncated[i], 0) << i;
  }
  // The next episode starts afresh: nothing from the old one leaks into its windows.
  push_step(a, 0, 100, 0, 10, false, false, 101);
  push_step(a, 0, 101, 0, 20, false, false, 102);
  push_step(a, 0, 102, 0, 30, false, false, 103);
  ASSERT_EQ(a.size(), 5u);
  EXPECT_FLOAT_EQ(b.obs[4], 100.0f);
  EXPECT_FLOAT_EQ(b.reward[4], 10 + 0.5f * 20 + 0.25f * 30);
  EXPECT_FLOAT_EQ(b.next_obs[4], 103.0f);
}

TEST(NStepAssembler, TruncationMidWindowBootstrapsFromFinalObservation) {
  NStepAssembler a(nstep_options(3, 0.5));
  for (int t = 0; t < 3; ++t) push_step(a, 0, t, t, t + 1, false, false, t + 1);
  push_step(a, 0, 3, 3, 4, false, /*trunc=*/true, 99);
  ASSERT_EQ(a.size(), 4u);
  const auto& b = a.output();
  const float expected_r[] = {4.5f, 5.0f, 4.0f};
  const float expected_d[] = {0.125f, 0.25f, 0.5f};  // gamma^m for m = 3, 2, 1
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_FLOAT_EQ(b.reward[i], expected_r[i - 1]) << i;
    EXPECT_FLOAT_EQ(b.discount[i], expected_d[i - 1]) << i;
    EXPECT_FLOAT_EQ(b.next_obs[i], 99.0f) << i;
    EXPECT_EQ(b.terminated[i], 0) << i;
    EXPECT_EQ(b.truncated[i], 1) << i;
  }
}

TEST(NStepAssembler, EpisodeShorterThanNAndTerminatedWinsOverTruncated) {
  NStepAssembler a(nstep_options(5, 0.9));
  push_step(a, 0, 0, 0, 1.0f, false, false, 1);
  push_step(a, 0, 1, 1, 2.0f, /*term=*/true, /*trunc=*/true, 7);
  ASSERT_EQ(a.size(), 2u);
  const auto& b = a.output();
  EXPECT_FLOAT_EQ(b.reward[0], 1.0f + 0.9f * 2.0f);
  EXPECT_FLOAT_EQ(b.reward[1], 2.0f);
  EXPECT_FLOAT_EQ(b.discount[0], 0.0f);
  EXPECT_FLOAT_EQ(b.discount[1], 0.0f);
  EXPECT_EQ(b.terminated[0], 1);
  EXPECT_EQ(b.truncated[0], 0);
}

TEST(NStepAssembler, OneStepIsTheOrdinaryTransition) {
  NStepAssembler a(nstep_options(1, 0.99));
  push_step(a, 0, 5, 2, 1.5f, false, false, 6);
  push_step(a, 0, 6, 3, -1.0f, true, false, 7);
  ASSERT_EQ(a.size(), 2u);
  const auto& b = a.output();
  EXPECT_FLOAT_EQ(b.reward[0], 1.5f);
  EXPECT_FLOAT_EQ(b.discount[0], 0.99f);
  EXPECT_FLOAT_EQ(b.next_obs[0], 6.0f);
  EXPECT_FLOAT_EQ(b.discount[1], 0.0f);
  EXPECT_EQ(action_at(b, 1), 3);
}

TEST(NStepAssembler, TruncateAtShutdownEmitsPendingStepsBootstrapped) {
  NStepAssembler a(nstep_options(4, 0.5));
  push_step(a, 0, 0, 0, 1, false, false, 1);
  push_step(a, 0, 1, 0, 1, false, false, 2);
  EXPECT_EQ(a.size(), 0u);
  a.truncate(0);
  ASSERT_EQ(a.size(), 2u);
  const auto& b = a.output();
  EXPECT_FLOAT_EQ(b.reward[0], 1.5f);
  EXPECT_FLOAT_EQ(b.discount[0], 0.25f);
  EXPECT_FLOAT_EQ(b.next_obs[0], 2.0f);
  EXPECT_FLOAT_EQ(b.discount[1], 0.5f);
  EXPECT_EQ(b.truncated[1], 1);
  a.truncate(0);  // nothing pending: no-op
  EXPECT_EQ(a.size(), 2u);
  a.reset(0);
  EXPECT_EQ(a.pending(0), 0u);
}

TEST(NStepAssembler, EnvsAreIndependentInPushAll) {
  NStepAssembler a(nstep_options(2, 0.5, 2));
  // env 0 terminates at its 2nd step, env 1 runs on.
  float obs[2] = {0, 100}, next[2] = {1, 101}, rew[2] = {1, 10};
  int64_t act[2] = {7, 8};
  uint8_t term[2] = {0, 0}, trunc[2] = {0, 0};
  a.push_all(obs, act, rew, term, trunc, next);
  EXPECT_EQ(a.size(), 0u);
  float obs2[2] = {1, 101}, next2[2] = {50, 102}, rew2[2] = {2, 20};
  uint8_t term2[2] = {1, 0};
  a.push_all(obs2, act, rew2, term2, trunc, next2);
  // env 0: two terminal transitions; env 1: one full 2-step transition.
  ASSERT_EQ(a.size(), 3u);
  const auto& b = a.output();
  EXPECT_EQ(b.env[0], 0u);
  EXPECT_EQ(b.env[1], 0u);
  EXPECT_EQ(b.env[2], 1u);
  EXPECT_FLOAT_EQ(b.reward[0], 1 + 0.5f * 2);
  EXPECT_FLOAT_EQ(b.reward[2], 10 + 0.5f * 20);
  EXPECT_FLOAT_EQ(b.next_obs[2], 102.0f);
  EXPECT_FLOAT_EQ(b.discount[2], 0.25f);
  EXPECT_EQ(action_at(b, 2), 8);
}

TEST(NStepAssembler, ColumnsHaveReplayShapesAndContinuousActionsCopy) {
  NStepOptions o;
  o.num_envs = 1;
  o.n = 1;
  o.gamma = 0.9;
  o.layout.obs_shape = {3};
  o.layout.action_dtype = DType::kFloat32;
  o.layout.action_shape = {2};
  NStepAssembler a(o);
  float obs[3] = {1, 2, 3}, next[3] = {4, 5, 6}, act[2] = {0.25f, -0.5f};
  a.push(0, obs, act, 1.0f, false, false, next);
  a.push(0, next, act, 1.0f, false, false, obs);
  auto cols = a.columns({"obs", "action", "reward", "discount", "terminated", "truncated", "next_obs"});
  ASSERT_EQ(cols.size(), 7u);
  EXPECT_EQ(cols[0].name, "obs");
  EXPECT_EQ(cols[0].shape, (orchard::core::Shape{2, 3}));
  EXPECT_EQ(cols[1].dtype, DType::kFloat32);
  EXPECT_EQ(cols[1].shape, (orchard::core::Shape{2, 2}));
  EXPECT_FLOAT_EQ(cols[1].as<float>()[1], -0.5f);
  EXPECT_EQ(cols[2].shape, (orchard::core::Shape{2}));
  EXPECT_EQ(cols[4].dtype, DType::kBool);
  EXPECT_FLOAT_EQ(cols[6].as<float>()[3], 1.0f);  // next_obs of item 1 = obs
  EXPECT_THROW(a.columns({"nope"}), std::invalid_argument);
  a.clear();
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(a.columns()[0].shape, (orchard::core::Shape{0, 3}));
}

TEST(NStepAssembler, RejectsBadOptions) {
  EXPECT_THROW(NStepAssembler(nstep_options(0, 0.9)), std::invalid_argument);
  EXPECT_THROW(NStepAssembler(nstep_options(3, 1.5)), std::invalid_argument);
  auto o = nstep_options(3, 0.9);
  o.layout.action_dtype = DType::kInt32;
  EXPECT_THROW(NStepAssembler{o}, std::invalid_argument);
  NStepAssembler a(nstep_options(3, 0.9, 2));
  EXPECT_THROW(a.pending(2), std::invalid_argument);
}

// Random episodes on several envs: every step comes out exactly once, with the return and
// discount a direct computation over the recorded episode gives.
TEST(NStepAssembler, RandomEpisodesLoseAndDuplicateNothing) {
  const uint32_t n = 4;
  const double gamma = 0.8;
  const size_t envs = 3;
  NStepAssembler a(nstep_options(n, gamma, envs));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> reward(-1, 1);
  struct Step {
    float reward;
    bool term, trunc;
    float next_obs;
  };
  std::vector<std::vector<Step>> steps(envs);  // obs of step i of env e is e * 100000 + i
  for (int round = 0; round < 600; ++round) {
    for (size_t e = 0; e < envs; ++e) {
      size_t i = steps[e].size();
      float obs = static_cast<float>(e * 100000 + i);
      Step s{reward(rng), rng() % 13 == 0, false, obs + 0.5f};
      if (!s.term) s.trunc = rng() % 17 == 0;
      steps[e].push_back(s);
      int64_t act = static_cast<int64_t>(i);
      a.push(e, &obs, &act, s.reward, s.term, s.trunc, &s.next_obs);
    }
  }
  for (size_t e = 0; e < envs; ++e) a.truncate(e);
  const auto& b = a.output();
  ASSERT_EQ(b.size(), envs * 600);
  std::vector<std::vector<int>> seen(envs, std::vector<int>(600, 0));
  for (size_t k = 0; k < b.size(); ++k) {
    size_t e = b.env[k];
    size_t i = static_cast<size_t>(b.obs[k]) - e * 100000;
    ASSERT_LT(i, 600u);
    ++seen[e][i];
    EXPECT_EQ(action_at(b, k), static_cast<int64_t>(i));
    // Reference: walk forward from step i up to n steps or the episode's end.
    const auto& st = steps[e];
    double ret = 0, disc = 1;
    size_t m = 0;
    bool term = false, trunc = false;
    float next = 0;
    for (size_t j = i; j < st.size() && m < n; ++j) {
      ret += disc * st[j].reward;
      disc *= gamma;
      ++m;
      next = st[j].next_obs;
      if (st[j].term) {
        term = true;
        break;
      }
      if (st[j].trunc) {
        trunc = true;
        break;
      }
    }
    if (!term && !trunc && m < n) trunc = true;  // the final truncate()
    EXPECT_NEAR(b.reward[k], ret, 1e-5) << "env " << e << " step " << i;
    EXPECT_NEAR(b.discount[k], term ? 0.0 : disc, 1e-6) << "env " << e << " step " << i;
    EXPECT_EQ(b.steps[k], m);
    EXPECT_FLOAT_EQ(b.next_obs[k], next) << "env " << e << " step " << i;
    EXPECT_EQ(b.terminated[k], term ? 1 : 0);
    EXPECT_EQ(b.truncated[k], trunc ? 1 : 0);
  }
  for (size_t e = 0; e < envs; ++e)
    for (size_t i = 0; i < 600; ++i) EXPECT_EQ(seen[e][i], 1) << "env " << e << " step " << i;
}

// ---------------------------------------------------------------------------------------------

namespace {

SequenceOptions seq_options(uint32_t T, uint32_t overlap, size_t envs = 1) {
  SequenceOptions o;
  o.num_envs = envs;
  o.length = T;
  o.overlap = overlap;
  o.layout.obs_shape = {2};
  o.layout.action_dtype = DType::kInt64;
  return o;
}

// Step t of env e: obs (t, e), action t, reward t, logp -t, value 2t, next_obs (t + 1, e).
void push_seq(SequenceAssembler& a, size_t e, int t, bool term = false, bool trunc = false, float final_obs = -1) {
  float obs[2] = {static_cast<float>(t), static_cast<float>(e)};
  float next[2] = {final_obs >= 0 ? final_obs : static_cast<float>(t + 1), static_cast<float>(e)};
  int64_t act = t;
  a.push(e, obs, &act, static_cast<float>(t), term, trunc, -static_cast<float>(t), 2.0f * t, next);
}

}  // namespace

TEST(SequenceAssembler, CutsConsecutiveSegmentsWithBootstrapObservation) {
  SequenceAssembler a(seq_options(4, 0));
  for (int t = 0; t < 3; ++t) push_seq(a, 0, t);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(a.pending(0), 3u);
  push_seq(a, 0, 3);
  ASSERT_EQ(a.size(), 1u);
  for (int t = 4; t < 8; ++t) push_seq(a, 0, t);
  ASSERT_EQ(a.size(), 2u);
  const auto& b = a.output();
  for (int s = 0; s < 2; ++s) {
    for (int t = 0; t < 4; ++t) {
      int step = s * 4 + t;
      EXPECT_FLOAT_EQ(b.obs[(s * 4 + t) * 2], static_cast<float>(step));
      EXPECT_FLOAT_EQ(b.reward[s * 4 + t], static_cast<float>(step));
      EXPECT_FLOAT_EQ(b.behaviour_logp[s * 4 + t], -static_cast<float>(step));
      EXPECT_FLOAT_EQ(b.value[s * 4 + t], 2.0f * step);
      int64_t act;
      std::memcpy(&act, b.action.data() + (s * 4 + t) * 8, 8);
      EXPECT_EQ(act, step);
    }
    EXPECT_FLOAT_EQ(b.bootstrap_obs[s * 2], static_cast<float>(s * 4 + 4));  // obs after the last step
  }
  EXPECT_EQ(a.pending(0), 0u);
}

TEST(SequenceAssembler, ConsecutiveSegmentsOverlap) {
  SequenceAssembler a(seq_options(4, 2));
  for (int t = 0; t < 8; ++t) push_seq(a, 0, t);
  // Segments start at 0, 2, 4: emitted after steps 3, 5, 7.
  ASSERT_EQ(a.size(), 3u);
  const auto& b = a.output();
  const int starts[] = {0, 2, 4};
  for (int s = 0; s < 3; ++s) {
    for (int t = 0; t < 4; ++t) EXPECT_FLOAT_EQ(b.reward[s * 4 + t], static_cast<float>(starts[s] + t)) << s;
    EXPECT_FLOAT_EQ(b.bootstrap_obs[s * 2], static_cast<float>(starts[s] + 4));
  }
  EXPECT_EQ(a.pending(0), 2u);  // steps 6, 7 start the next segment
}

TEST(SequenceAssembler, SegmentsCrossEpisodeBoundariesWithFlags) {
  SequenceAssembler a(seq_options(4, 0));
  push_seq(a, 0, 0);
  push_seq(a, 0, 1, /*term=*/true, false, /*final_obs=*/50);
  // New episode: the reset observation is 10.
  push_seq(a, 0, 10);
  push_seq(a, 0, 11, false, /*trunc=*/true, /*final_obs=*/60);
  ASSERT_EQ(a.size(), 1u);
  const auto& b = a.output();
  const uint8_t term[] = {0, 1, 0, 0}, trunc[] = {0, 0, 0, 1};
  for (int t = 0; t < 4; ++t) {
    EXPECT_EQ(b.terminated[t], term[t]) << t;
    EXPECT_EQ(b.truncated[t], trunc[t]) << t;
  }
  EXPECT_FLOAT_EQ(b.obs[2 * 2], 10.0f);  // the step after the end is the new episode's first
  // The last step ended the episode: bootstrap from its final observation.
  EXPECT_FLOAT_EQ(b.bootstrap_obs[0], 60.0f);
}

TEST(SequenceAssembler, ColumnsAndEnvsInPushAll) {
  SequenceAssembler a(seq_options(2, 1, 2));
  for (int t = 0; t < 3; ++t) {
    float obs[4] = {float(t), 0, float(t), 1}, next[4] = {float(t + 1), 0, float(t + 1), 1};
    int64_t act[2] = {t, t};
    float rew[2] = {float(t), float(t) + 100}, logp[2] = {0, 0}, val[2] = {0, 0};
    uint8_t term[2] = {0, 0}, trunc[2] = {0, 0};
    a.push_all(obs, act, rew, term, trunc, logp, val, next);
  }
  // Each env: segments [0, 1] and [1, 2].
  ASSERT_EQ(a.size(), 4u);
  const auto& b = a.output();
  EXPECT_EQ(b.env[0], 0u);
  EXPECT_EQ(b.env[1], 1u);
  EXPECT_FLOAT_EQ(b.reward[1 * 2 + 1], 101.0f);
  auto cols = a.columns();
  ASSERT_EQ(cols.size(), 8u);
  EXPECT_EQ(cols[0].shape, (orchard::core::Shape{4, 2, 2}));
  EXPECT_EQ(cols[1].shape, (orchard::core::Shape{4, 2}));
  EXPECT_EQ(cols[3].dtype, DType::kBool);
  EXPECT_EQ(cols[7].name, "bootstrap_obs");
  EXPECT_EQ(cols[7].shape, (orchard::core::Shape{4, 2}));
  a.clear();
  EXPECT_EQ(a.size(), 0u);
  a.reset(0);
  EXPECT_EQ(a.pending(0), 0u);
  EXPECT_EQ(a.pending(1), 1u);
}

TEST(SequenceAssembler, RejectsOverlapNotBelowLength) {
  EXPECT_THROW(SequenceAssembler(seq_options(4, 4)), std::invalid_argument);
  EXPECT_THROW(SequenceAssembler(seq_options(0, 0)), std::invalid_argument);
}
