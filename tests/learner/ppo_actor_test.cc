// The PPO actor loop against a real orchard-replay shard: segments arrive with the table
// signature, every step is there once, and weights published over PUB/SUB are swapped in.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <signal.h>

#include <thread>

#include "orchard/actors/ppo_actor.h"
#include "orchard/actors/weights.h"
#include "orchard/core/net.h"
#include "orchard/replay/table.h"
#include "support/child_process.h"

using namespace orchard;
namespace fs = std::filesystem;

namespace {

}  // namespace

TEST(PpoActor, StreamsSegmentsToARealShardAndSwapsInPublishedWeights) {
  const std::string weights_ep = "tcp://127.0.0.1:" + std::to_string(core::free_loopback_port());
  const std::string shard_ep = "tcp://127.0.0.1:" + std::to_string(core::free_loopback_port());
  actors::PpoActorOptions o;
  o.env = "CartPole-v1";
  o.num_envs = 2;
  o.segment_length = 16;
  o.seed = 3;
  o.writer.endpoints = {shard_ep};
  o.writer.table = "segments";
  o.weights_endpoint = weights_ep;
  o.model_description = "ActorCritic CartPole-v1 [64, 64]";
  actors::PpoActor actor(o);

  fs::path dir = fs::temp_directory_path() / ("orchard-actor-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "spec.yaml") << "replay:\n  tables:\n    - name: segments\n      sampler: fifo\n"
                                      "      max_times_sampled: 1\n      max_size: 1000\n      signature: "
                                   << replay::signature_yaml(actor.segment_signature()) << "\n";
  orchard::testing::ChildProcess shard({orchard::testing::orchard_bin("orchard-replay"), "--config", (dir / "spec.yaml").string(),
                               "--bind", shard_ep});
  ASSERT_TRUE(shard.wait_for_output("ready ", 20000)) << shard.output();

  actor.run(64);  // 2 envs x 64 steps = 8 segments of 16
  actor.flush(10000);
  EXPECT_EQ(actor.stats().env_steps, 128u);
  EXPECT_EQ(actor.stats().segments, 8u);
  auto info = replay::table_info(shard_ep, "segments", 5000);
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(info[0].size, 8u);

  replay::ReplaySamplerOptions so;
  so.endpoints = {shard_ep};
  so.table = "segments";
  so.batch_size = 8;
  replay::ReplaySampler sampler(so);
  replay::SampledBatch b;
  ASSERT_TRUE(sampler.next(&b, 10000));
  const auto* obs = b.find("obs");
  const auto* reward = b.find("reward");
  const auto* logp = b.find("behaviour_logp");
  ASSERT_TRUE(obs && reward && logp);
  EXPECT_EQ(obs->shape, (core::Shape{8, 16, 4}));
  for (int i = 0; i < 8 * 16; ++i) {
    EXPECT_EQ(reward->as<float>()[i], 1.0f);  // CartPole pays 1 per step
    EXPECT_LE(logp->as<float>()[i], 0.0f);
    EXPECT_GT(logp->as<float>()[i], std::log(0.5f) - 5.0f);
  }
  sampler.stop();

  // Weights from a differently initialised learner reach the actor.
  torch::manual_seed(42);
  learner::ActorCritic trained(envs::Space::box({4}, -5.0, 5.0), envs::Space::discrete(2));
  zmq::context_t ctx(1);
  zmq::socket_t pub(ctx, zmq::socket_type::pub);
  core::apply_socket_options(pub, {});
  pub.bind(weights_ep);
  for (int i = 0; i < 200 && actor.stats().weights_version != 5; ++i) {
    auto m = actors::encode_weights(trained.named_state(), 5, 100, o.model_description);
    core::send_message(pub, m);
    actor.run(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // the SUB connects within ~100 ms
  }
  ASSERT_EQ(actor.stats().weights_version, 5u) << "refused: " << actor.stats().weights_refused << " " << actor.stats().last_refusal;
  auto got = actor.model().named_state(), want = trained.named_state();
  for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(torch::equal(got[i].second, want[i].second)) << want[i].first;
  // Weights for another model are refused and counted; acting goes on.
  auto wrong = actors::encode_weights(trained.named_state(), 6, 101, "something else");
  core::send_message(pub, wrong);
  for (int i = 0; i < 200 && actor.stats().weights_refused == 0; ++i) {
    actor.run(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(actor.stats().weights_refused, 1u);
  EXPECT_EQ(actor.stats().weights_version, 5u);
  actor.flush(10000);
  fs::remove_all(dir);
}

TEST(PpoActorProcess, FillsAShardAndStopsCleanlyOnSigterm) {
  // The segment signature for CartPole-v1 with T = 16.
  actors::PpoActorOptions probe_o;
  probe_o.segment_length = 16;
  probe_o.num_envs = 1;
  probe_o.writer.endpoints = {"tcp://127.0.0.1:1"};  // never written to
  actors::PpoActor probe(probe_o);
  const std::string shard_ep = "tcp://127.0.0.1:" + std::to_string(core::free_loopback_port());
  fs::path dir = fs::temp_directory_path() / ("orchard-actor-proc-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "spec.yaml") << "replay:\n  tables:\n    - name: segments\n      sampler: fifo\n"
                                      "      max_size: 100000\n      signature: "
                                   << replay::signature_yaml(probe.segment_signature()) << "\n";
  orchard::testing::ChildProcess shard({orchard::testing::orchard_bin("orchard-replay"), "--config",
                                        (dir / "spec.yaml").string(), "--bind", shard_ep});
  ASSERT_TRUE(shard.wait_for_output("ready ", 20000)) << shard.output();

  // A bounded run: 4 envs x 64 steps = 16 segments.
  orchard::testing::ChildProcess a({orchard::testing::orchard_bin("orchard-actor"), "--env", "CartPole-v1",
                                    "--num-envs", "4", "--segment-length", "16", "--replay", shard_ep, "--table",
                                    "segments", "--steps", "64"});
  EXPECT_EQ(a.wait(60000), 0) << a.output();
  EXPECT_NE(a.output().find("done: 256 env steps, 16 items"), std::string::npos) << a.output();
  EXPECT_EQ(replay::table_info(shard_ep, "segments", 5000)[0].size, 16u);

  // An open-ended run stopped by SIGTERM flushes what it wrote and exits 0.
  orchard::testing::ChildProcess b({orchard::testing::orchard_bin("orchard-actor"), "--env", "CartPole-v1",
                                    "--num-envs", "4", "--segment-length", "16", "--replay", shard_ep, "--table",
                                    "segments", "--actor-id", "1"});
  ASSERT_TRUE(b.wait_for_output("ready", 30000)) << b.output();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  b.signal(SIGTERM);
  EXPECT_EQ(b.wait(30000), 0) << b.output();
  auto pos = b.output().find(" items, weights");
  ASSERT_NE(pos, std::string::npos) << b.output();
  EXPECT_GT(replay::table_info(shard_ep, "segments", 5000)[0].size, 16u);

  // Bad input: an unknown env is one line naming it.
  orchard::testing::ChildProcess c({orchard::testing::orchard_bin("orchard-actor"), "--env", "CartPol-v1",
                                    "--replay", shard_ep});
  EXPECT_EQ(c.wait(30000), 1);
  EXPECT_NE(c.output().find("unknown env 'CartPol-v1'"), std::string::npos) << c.output();
  fs::remove_all(dir);
}

TEST(PpoActor, ContinuousActionsStepTheEnvsThroughTheClipBuffer) {
  actors::PpoActorOptions o;
  o.env = "Pendulum-v1";
  o.num_envs = 2;
  o.segment_length = 1000;                      // no segment completes: nothing is written
  o.writer.endpoints = {"tcp://127.0.0.1:1"};  // never used
  o.model.init_log_std = 2.0;                   // wide Gaussian: samples far outside [-2, 2]
  actors::PpoActor actor(o);
  actor.run(20);  // the Box path: samples copied into the preallocated clip buffer and stepped
  EXPECT_EQ(actor.stats().env_steps, 40u);
  EXPECT_EQ(actor.stats().segments, 0u);
}
