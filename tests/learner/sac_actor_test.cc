// The SAC actor loop against a real orchard-replay shard: n-step transitions arrive with the table
// signature, every env step is there exactly once after finish(), discounts follow the episode
// ends, and weights published over PUB/SUB are swapped in (other models refused, stale ignored).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <unistd.h>

#include "orchard/actors/sac_actor.h"
#include "orchard/actors/weights.h"
#include "orchard/core/net.h"
#include "orchard/core/wire.h"
#include "orchard/envs/registry.h"
#include "orchard/replay/table.h"
#include "support/child_process.h"

using namespace orchard;
namespace fs = std::filesystem;

namespace {

bool same_state(const learner::NamedTensors& got, const learner::NamedTensors& want) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < want.size(); ++i)
    if (got[i].first != want[i].first || !torch::equal(got[i].second, want[i].second)) return false;
  return true;
}

}  // namespace

TEST(SacActor, ModelDescriptionNamesShapes) {
  EXPECT_EQ(actors::sac_model_description(3, 1, {256, 256}), "SacActor obs[3] act[1] hidden[256,256]");
  EXPECT_EQ(actors::sac_model_description(17, 6, {64}), "SacActor obs[17] act[6] hidden[64]");
}

TEST(SacActor, WritesNStepTransitionsToARealShard) {
  const std::string weights_ep = "tcp://127.0.0.1:" + std::to_string(core::free_loopback_port());
  const std::string shard_ep = "tcp://127.0.0.1:" + std::to_string(core::free_loopback_port());
  const std::vector<int64_t> hidden = {32, 32};
  actors::SacActorOptions o;
  o.env = "Pendulum-v1";
  o.env_options.set("max_episode_steps", "30");  // episode ends at steps 30, 60, 90 of each env
  o.num_envs = 2;
  o.seed = 5;
  o.sac.actor_hidden = hidden;
  o.sac.critic_hidden = hidden;
  o.n_step = 3;
  o.gamma = 0.99;
  o.random_steps = 50;
  o.steps_per_batch = 4;
  o.writer.endpoints = {shard_ep};
  o.writer.table = "transitions";
  o.weights_endpoint = weights_ep;
  o.model_description = actors::sac_model_description(3, 1, hidden);
  actors::SacActor actor(o);
  EXPECT_EQ(actor.policy().obs_dim(), 3);
  EXPECT_EQ(actor.policy().act_dim(), 1);

  fs::path dir = fs::temp_directory_path() / ("orchard-sac-actor-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "spec.yaml") << "replay:\n  tables:\n    - name: transitions\n      sampler: fifo\n"
                                      "      max_times_sampled: 1\n      max_size: 10000\n      signature: "
                                   << replay::signature_yaml(actor.transition_signature()) << "\n";
  orchard::testing::ChildProcess shard({orchard::testing::orchard_bin("orchard-replay"), "--config",
                                        (dir / "spec.yaml").string(), "--bind", shard_ep});
  ASSERT_TRUE(shard.wait_for_output("ready ", 20000)) << shard.output();

  actor.run(100);
  // Before finish(): each env holds its last n - 1 = 2 steps in the window.
  actor.flush(10000);
  EXPECT_EQ(actor.stats().env_steps, 200u);
  EXPECT_EQ(actor.stats().transitions, 196u);
  actor.finish(10000);
  EXPECT_EQ(actor.stats().transitions, 200u);  // every env step exactly once
  EXPECT_EQ(actor.stats().episodes, 6u);       // 3 truncations per env
  EXPECT_LT(actor.stats().mean_return, 0.0);   // Pendulum pays <= 0
  auto info = replay::shard_info(shard_ep, "transitions", 5000);
  ASSERT_EQ(info.tables.size(), 1u);
  EXPECT_EQ(info.tables[0].size, 200u);
  EXPECT_EQ(info.tables[0].inserts, 200u);

  // Read them all back (fifo, in insertion order) and check the n-step discounts: per env, 3
  // truncations emit gamma^3, gamma^2, gamma^1 for their last three steps, finish() emits gamma^2
  // and gamma^1 for the last two steps, every other step has a full window (gamma^3).
  replay::ReplaySamplerOptions so;
  so.endpoints = {shard_ep};
  so.table = "transitions";
  so.batch_size = 200;
  replay::ReplaySampler sampler(so);
  replay::SampledBatch b;
  ASSERT_TRUE(sampler.next(&b, 10000));
  sampler.stop();
  ASSERT_EQ(b.size(), 200u);
  const auto *obs = b.find("obs"), *action = b.find("action"), *reward = b.find("reward"),
             *discount = b.find("discount"), *next_obs = b.find("next_obs");
  ASSERT_TRUE(obs && action && reward && discount && next_obs);
  EXPECT_EQ(obs->shape, (core::Shape{200, 3}));
  EXPECT_EQ(action->shape, (core::Shape{200, 1}));
  EXPECT_EQ(reward->shape, (core::Shape{200}));
  EXPECT_EQ(next_obs->shape, (core::Shape{200, 3}));
  int count[4] = {0, 0, 0, 0};
  for (int i = 0; i < 200; ++i) {
    const float d = discount->as<float>()[i];
    int m = 0;
    for (int k = 1; k <= 3; ++k)
      if (std::abs(d - static_cast<float>(std::pow(0.99, k))) < 1e-6f) m = k;
    ASSERT_NE(m, 0) << "item " << i << " discount " << d;
    ++count[m];
    EXPECT_LE(reward->as<float>()[i], 0.0f);
    const float a = action->as<float>()[i];
    EXPECT_TRUE(a >= -2.0f && a <= 2.0f) << a;
    for (int j = 0; j < 2; ++j) {  // cos, sin
      EXPECT_LE(std::abs(obs->as<float>()[i * 3 + j]), 1.0f + 1e-6f);
      EXPECT_LE(std::abs(next_obs->as<float>()[i * 3 + j]), 1.0f + 1e-6f);
    }
  }
  EXPECT_EQ(count[3], 184);
  EXPECT_EQ(count[2], 8);
  EXPECT_EQ(count[1], 8);
  // next_obs is some later step's obs, except where a window ended an episode (3 transitions per
  // truncation bootstrap from the FINAL observation, which no transition starts from: the env
  // was reset) or reaches past the last step taken (per env: the full window of step 98 and the
  // two windows finish() cut, all ending at the observation after step 100).
  std::set<std::array<float, 3>> starts;
  for (int i = 0; i < 200; ++i) {
    const float* x = obs->as<float>() + i * 3;
    starts.insert({x[0], x[1], x[2]});
  }
  int continuing = 0;
  for (int i = 0; i < 200; ++i) {
    const float* x = next_obs->as<float>() + i * 3;
    continuing += starts.count({x[0], x[1], x[2]}) ? 1 : 0;
  }
  EXPECT_EQ(continuing, 200 - 6 * 3 - 2 * 3);

  // Weights: other models are refused, the right model is swapped in, stale versions ignored.
  const auto spec = envs::EnvRegistry::global().make("Pendulum-v1")->spec();
  learner::SacOptions lo;
  lo.actor_hidden = hidden;
  lo.critic_hidden = hidden;
  lo.seed = 42;
  learner::SacLearner trained(spec.observation_space, spec.action_space, lo);
  ASSERT_FALSE(same_state(actor.policy().named_state(), trained.named_state()));
  zmq::context_t ctx(1);
  zmq::socket_t pub(ctx, zmq::socket_type::pub);
  core::apply_socket_options(pub, {});
  pub.bind(weights_ep);
  const std::string other_model = actors::sac_model_description(3, 1, {64, 64});
  for (int i = 0; i < 300 && actor.stats().weights_refused == 0; ++i) {
    auto m = actors::encode_weights(trained.named_state(), 9, 100, other_model);
    core::send_message(pub, m);
    actor.run(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // the SUB connects within ~100 ms
  }
  EXPECT_GT(actor.stats().weights_refused, 0u);
  EXPECT_NE(actor.stats().last_refusal.find("hidden[64,64]"), std::string::npos) << actor.stats().last_refusal;
  EXPECT_EQ(actor.stats().weights_version, 0u);

  for (int i = 0; i < 300 && actor.stats().weights_version != 3; ++i) {
    auto m = actors::encode_weights(trained.named_state(), 3, 100, o.model_description);
    core::send_message(pub, m);
    actor.run(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(actor.stats().weights_version, 3u) << "refused: " << actor.stats().weights_refused << " "
                                               << actor.stats().last_refusal;
  EXPECT_TRUE(same_state(actor.policy().named_state(), trained.named_state()));

  // An older version (other weights) arriving later does not replace the newer one.
  lo.seed = 43;
  learner::SacLearner older(spec.observation_space, spec.action_space, lo);
  const uint64_t refused = actor.stats().weights_refused;
  for (int i = 0; i < 20; ++i) {
    auto m = actors::encode_weights(older.named_state(), 2, 50, o.model_description);
    core::send_message(pub, m);
    actor.run(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(actor.stats().weights_version, 3u);
  EXPECT_EQ(actor.stats().weights_refused, refused);
  EXPECT_TRUE(same_state(actor.policy().named_state(), trained.named_state()));

  actor.finish(10000);
  EXPECT_EQ(actor.stats().transitions, actor.stats().env_steps);
  EXPECT_EQ(replay::shard_info(shard_ep, "transitions", 5000).tables[0].inserts, actor.stats().env_steps);
  fs::remove_all(dir);
}

TEST(SacActor, RefusesADiscreteActionSpace) {
  actors::SacActorOptions o;
  o.env = "CartPole-v1";
  o.writer.endpoints = {"tcp://127.0.0.1:1"};  // never used
  try {
    actors::SacActor actor(o);
    FAIL() << "constructed a SacActor on CartPole-v1";
  } catch (const orchard::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("action space"), std::string::npos) << what;
    EXPECT_NE(what.find("Discrete(2)"), std::string::npos) << what;
    EXPECT_NE(what.find("CartPole-v1"), std::string::npos) << what;
  }
}

TEST(SacActor, RefusesBadOptions) {
  actors::SacActorOptions o;
  o.writer.endpoints = {"tcp://127.0.0.1:1"};  // never used
  o.n_step = 0;
  EXPECT_THROW(actors::SacActor{o}, orchard::Error);
  o.n_step = 1;
  o.steps_per_batch = 0;
  EXPECT_THROW(actors::SacActor{o}, orchard::Error);
  o.steps_per_batch = 1;
  o.gamma = 1.5;
  EXPECT_THROW(actors::SacActor{o}, orchard::Error);
}

TEST(SacActor, RunsWithoutAShardWhileNoBatchIsDue) {
  actors::SacActorOptions o;
  o.num_envs = 3;
  o.sac.actor_hidden = {16};
  o.sac.critic_hidden = {16};
  o.random_steps = 6;                           // two random vector steps, then the policy
  o.steps_per_batch = 1000;                     // nothing is appended
  o.writer.endpoints = {"tcp://127.0.0.1:1"};  // never used
  actors::SacActor actor(o);
  actor.run(20);
  EXPECT_EQ(actor.stats().env_steps, 60u);
  EXPECT_EQ(actor.stats().transitions, 0u);
  EXPECT_EQ(actor.transition_signature().size(), 5u);
}

TEST(SacActor, OneSeedMakesTheExperienceReproducible) {
  auto mean_return = [](uint64_t seed, int64_t random_steps) {
    actors::SacActorOptions o;
    o.env_options.set("max_episode_steps", "5");
    o.num_envs = 2;
    o.seed = seed;
    o.sac.actor_hidden = {16};
    o.sac.critic_hidden = {16};
    o.random_steps = random_steps;
    o.steps_per_batch = 1000;                     // nothing is appended
    o.writer.endpoints = {"tcp://127.0.0.1:1"};  // never used
    actors::SacActor actor(o);
    actor.run(20);
    EXPECT_EQ(actor.stats().episodes, 8u);
    return actor.stats().mean_return;
  };
  // Warm-up actions and policy samples alike depend on the seed only.
  EXPECT_EQ(mean_return(7, 10), mean_return(7, 10));
  EXPECT_NE(mean_return(7, 10), mean_return(8, 10));
  EXPECT_EQ(mean_return(7, 0), mean_return(7, 0));
  EXPECT_NE(mean_return(7, 0), mean_return(7, 40));
}
