// The run spec: defaults, derived replay tables, and the errors a user gets for specs that
// cannot work (each names the key and what is allowed).
#include <gtest/gtest.h>

#include <filesystem>

#include "orchard/core/config.h"
#include "orchard/core/error.h"
#include "orchard/orchestrator/run_spec.h"
#include "orchard/replay/server.h"

using orchard::ConfigError;
using orchard::orchestrator::Algorithm;
using orchard::orchestrator::RunSpec;

namespace {

std::string error_of(const std::string& yaml, bool resolve = true) {
  try {
    RunSpec s = RunSpec::load_string(yaml, "run.yaml");
    if (resolve) s.resolve();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

const char* kPpo = "name: t\nenv: {name: CartPole-v1, num_envs: 4}\nbudget: {env_steps: 1000}\n";

}  // namespace

TEST(RunSpec, MinimalPpoSpecGetsDefaultsAndADerivedQueueTable) {
  RunSpec s = RunSpec::load_string(kPpo, "run.yaml");
  EXPECT_EQ(s.algorithm, Algorithm::kPpo);
  EXPECT_EQ(s.actors.count, 2);
  EXPECT_EQ(s.ppo.segment_length, 128);
  EXPECT_EQ(s.ppo_segments_per_update(), 8);  // 2 actors x 4 envs
  EXPECT_EQ(s.run_dir, "runs/t");
  EXPECT_EQ(s.checkpoint_dir, "runs/t/checkpoints");
  s.resolve();
  ASSERT_EQ(s.replay_endpoints.size(), 1u);
  EXPECT_EQ(s.replay_endpoints[0].rfind("tcp://127.0.0.1:", 0), 0u);
  EXPECT_FALSE(s.weights_endpoint.empty());
  ASSERT_EQ(s.item_signature.size(), 8u);
  EXPECT_EQ(s.item_signature[0].shape, (std::vector<int64_t>{128, 4}));
  EXPECT_EQ(s.item_signature[1].dtype, orchard::core::DType::kInt64);
  EXPECT_EQ(s.model_description(), "ppo ActorCritic obs " + s.observation_space.to_string() + " act " +
                                       s.action_space.to_string() + " hidden [64, 64]");

  // What the shards read back from the resolved file.
  RunSpec again = RunSpec::load_string(s.resolved_yaml(), "resolved.yaml");
  auto server = orchard::replay::ServerOptions::parse(again.node()["replay"]);
  ASSERT_EQ(server.tables.size(), 1u);
  const auto& t = server.tables[0];
  EXPECT_EQ(t.name, "segments");
  EXPECT_EQ(t.max_times_sampled, 1u);
  EXPECT_EQ(t.max_size, 16u);  // 2 queued updates of 8 segments
  EXPECT_DOUBLE_EQ(t.rate_limiter.samples_per_insert, 1.0);
  EXPECT_EQ(t.signature.size(), 8u);
  EXPECT_EQ(again.replay_endpoints, s.replay_endpoints);
  EXPECT_EQ(again.weights_endpoint, s.weights_endpoint);
  again.resolve();  // idempotent: keeps the endpoints
  EXPECT_EQ(again.replay_endpoints, s.replay_endpoints);
}

TEST(RunSpec, SacTableFixesTheUpdateToDataRatio) {
  RunSpec s = RunSpec::load_string(
      "name: s\nalgorithm: sac\nenv: {name: Pendulum-v1, num_envs: 2}\n"
      "sac: {batch_size: 64, learning_starts: 500, updates_per_step: 2, prioritized: true}\n"
      "budget: {target_return: -200}\n",
      "run.yaml");
  s.resolve();
  auto server = orchard::replay::ServerOptions::parse(s.node()["replay"]);
  const auto& t = server.tables.at(0);
  EXPECT_EQ(t.name, "transitions");
  EXPECT_DOUBLE_EQ(t.rate_limiter.samples_per_insert, 128.0);  // 2 updates x 64 items per env step
  EXPECT_EQ(t.rate_limiter.min_size_to_sample, 500u);
  EXPECT_EQ(t.sampler, orchard::replay::Sampler::kPrioritized);
  // sac: actors may run one writer batch (2 envs x 1 step) ahead; apt: 5000 steps.
  EXPECT_DOUBLE_EQ(t.rate_limiter.error_buffer, 128.0 * 2 + 64);
  EXPECT_EQ(s.sac_publish_every(), 1);
  RunSpec apt = RunSpec::load_string(
      "name: a\nalgorithm: apt\nenv: {name: Pendulum-v1}\nsac: {publish_every_steps: 300, updates_per_step: 0.5}\n"
      "budget: {env_steps: 1000}\n",
      "run.yaml");
  EXPECT_EQ(apt.sac_max_steps_ahead(), 5000);
  EXPECT_EQ(apt.sac_publish_every(), 150);
}

TEST(RunSpec, AlgorithmThatDoesNotFitTheActionSpaceIsAnError) {
  std::string e = error_of("name: t\nalgorithm: sac\nenv: {name: CartPole-v1}\nbudget: {env_steps: 10}\n");
  EXPECT_NE(e.find("algorithm"), std::string::npos) << e;
  EXPECT_NE(e.find("sac needs a bounded float32 Box action space"), std::string::npos) << e;
  EXPECT_NE(e.find("Discrete(2)"), std::string::npos) << e;
  EXPECT_NE(e.find("use algorithm: ppo"), std::string::npos) << e;
}

TEST(RunSpec, UnknownEnvSuggestsTheClosestName) {
  std::string e = error_of("name: t\nenv: {name: CartPole-v2}\nbudget: {env_steps: 10}\n");
  EXPECT_NE(e.find("env.name"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown env 'CartPole-v2'"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'CartPole-v1'"), std::string::npos) << e;
}

TEST(RunSpec, TyposAndRangesNameTheKey) {
  std::string e = error_of("name: t\nenv: {name: CartPole-v1}\nbudget: {env_steps: 10}\nppo: {learning_rat: 1}\n", false);
  EXPECT_NE(e.find("learning_rat"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'learning_rate'"), std::string::npos) << e;
  e = error_of("name: t\nenv: {name: CartPole-v1}\nbudget: {env_steps: 10}\nactors: {count: 0}\n", false);
  EXPECT_NE(e.find("actors.count"), std::string::npos) << e;
  e = error_of("name: t\nenv: {name: CartPole-v1}\nbudget: {env_steps: 10}\nalgorithm: dqn\n", false);
  EXPECT_NE(e.find("expected one of ppo, sac, apt"), std::string::npos) << e;
  e = error_of("name: 'my run'\nenv: {name: CartPole-v1}\nbudget: {env_steps: 10}\n", false);
  EXPECT_NE(e.find("run name"), std::string::npos) << e;
  e = error_of("name: t\nenv: {name: CartPole-v1}\n", false);
  EXPECT_NE(e.find("budget"), std::string::npos) << e;
  e = error_of("name: t\nenv: {name: CartPole-v1}\nbudget: {env_steps: 10}\nlearner: {device: cuda}\n", false);
  EXPECT_NE(e.find("learner.device: cuda is not implemented by orchard-learner yet"), std::string::npos) << e;
  e = error_of("name: t\nenv: {name: CartPole-v1}\nbudget: {env_steps: 10}\nlearner: {count: 2, sync: nccl}\n", false);
  EXPECT_NE(e.find("learner.sync"), std::string::npos) << e;
  EXPECT_NE(e.find("with learner.device: cpu use gloo"), std::string::npos) << e;
  e = error_of("name: t\nenv: {name: CartPole-v1}\nbudget: {env_steps: 10}\nlearner: {count: 2}\n"
               "placement: {learner: [local, local, local]}\n", false);
  EXPECT_NE(e.find("3 hosts for learner.count = 2"), std::string::npos) << e;
  e = error_of("name: t\nenv: {name: CartPole-v1}\nbudget: {env_steps: 10}\nendpoints: {learner_sync: 'x:1'}\n", false);
  EXPECT_NE(e.find("endpoints.learner_sync"), std::string::npos) << e;
  e = error_of("name: t\nenv: {name: CartPole-v1}\nbudget: {env_steps: 10}\nlearner: {blas_threads: -1}\n", false);
  EXPECT_NE(e.find("learner.blas_threads"), std::string::npos) << e;
  EXPECT_EQ(RunSpec::load_string(kPpo, "run.yaml").learner.blas_threads, 0);  // auto
  EXPECT_EQ(RunSpec::load_string(kPpo, "run.yaml", {"learner.blas_threads=2"}).learner.blas_threads, 2);
  e = error_of("name: t\nenv: {name: CartPole-v1}\nbudget: {env_steps: 10}\nredis: 'http://x'\n", false);
  EXPECT_NE(e.find("redis"), std::string::npos) << e;
  e = error_of("name: t\nalgorithm: sac\nenv: {name: Pendulum-v1}\nbudget: {env_steps: 10}\n"
               "sac: {batch_size: 256, learning_starts: 100}\n", false);
  EXPECT_NE(e.find("sac.learning_starts"), std::string::npos) << e;
}

TEST(RunSpec, SeveralLearnerRanksGetARendezvousEndpointAndScaleTheReplayTables) {
  RunSpec one = RunSpec::load_string(kPpo, "run.yaml");
  one.resolve();
  EXPECT_TRUE(one.learner_sync_endpoint.empty());
  RunSpec two = RunSpec::load_string(kPpo, "run.yaml", {"learner.count=2"});
  EXPECT_EQ(two.learner.sync, "gloo");
  EXPECT_EQ(two.learner.sync_timeout_s, 120);
  two.resolve();
  EXPECT_EQ(two.learner_sync_endpoint.rfind("tcp://127.0.0.1:", 0), 0u) << two.learner_sync_endpoint;
  EXPECT_EQ(two.learner_address(1), "127.0.0.1");
  // The queue holds max_queued_updates synchronous updates of both ranks' batches.
  const std::string y1 = one.resolved_yaml(), y2 = two.resolved_yaml();
  const int64_t batch = one.ppo_segments_per_update() * one.ppo.max_queued_updates;
  EXPECT_NE(y1.find("max_size: " + std::to_string(batch)), std::string::npos) << y1;
  EXPECT_NE(y2.find("max_size: " + std::to_string(2 * batch)), std::string::npos) << y2;
  // What the processes read back keeps the endpoint.
  RunSpec again = RunSpec::load_string(y2, "spec.yaml");
  EXPECT_EQ(again.learner_sync_endpoint, two.learner_sync_endpoint);
}

TEST(RunSpec, PpoBatchMustSplitIntoMinibatches) {
  std::string e = error_of(
      "name: t\nenv: {name: CartPole-v1, num_envs: 1}\nactors: {count: 1}\nppo: {segment_length: 5, "
      "num_minibatches: 4}\nbudget: {env_steps: 10}\n");
  EXPECT_NE(e.find("not divisible by ppo.num_minibatches = 4"), std::string::npos) << e;
}

TEST(RunSpec, UserTableMustMatchWhatTheActorsWrite) {
  std::string e = error_of(
      "name: t\nenv: {name: CartPole-v1, num_envs: 1}\nactors: {count: 1}\nppo: {segment_length: 4, "
      "num_minibatches: 1}\nbudget: {env_steps: 10}\nreplay:\n  tables:\n    - name: segments\n      signature: "
      "[{name: obs, dtype: float32, shape: [4, 3]}, {name: action, dtype: int64, shape: [4]}, {name: reward, dtype: "
      "float32, shape: [4]}, {name: terminated, dtype: bool, shape: [4]}, {name: truncated, dtype: bool, shape: [4]}, "
      "{name: behaviour_logp, dtype: float32, shape: [4]}, {name: value, dtype: float32, shape: [4]}, {name: "
      "bootstrap_obs, dtype: float32, shape: [4]}]\n");
  EXPECT_NE(e.find("column 0"), std::string::npos) << e;
  EXPECT_NE(e.find("[4, 4]"), std::string::npos) << e;
  e = error_of(
      "name: t\nenv: {name: CartPole-v1}\nbudget: {env_steps: 10}\nreplay:\n  tables:\n    - name: main\n      "
      "signature: [{name: x, dtype: float32, shape: [1]}]\n");
  EXPECT_NE(e.find("writes to a table named 'segments'"), std::string::npos) << e;
}

TEST(RunSpec, OverridesApplyBeforeValidation) {
  RunSpec s = RunSpec::load_string(kPpo, "run.yaml", {"actors.count=3", "ppo.hidden=[32]"});
  EXPECT_EQ(s.actors.count, 3);
  EXPECT_EQ(s.ppo.hidden, (std::vector<int64_t>{32}));
  EXPECT_THROW(RunSpec::load_string(kPpo, "run.yaml", {"actors.count=-1"}), ConfigError);
}

TEST(RunSpec, EveryExampleSpecLoadsAndResolves) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(ORCHARD_SOURCE_DIR) + "/examples")) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    RunSpec s = RunSpec::load(entry.path().string());
    EXPECT_NO_THROW(s.resolve());
    ++n;
  }
  EXPECT_GE(n, 2);
}

TEST(RunSpec, HostsAndPlacementAreValidated) {
  const std::string base = "name: t\nenv: {name: CartPole-v1}\nbudget: {updates: 1}\n";
  std::string e = error_of(base + "hosts: [{name: a, agent: 'tcp://10.0.0.2:7070', token_file: t}]\n", false);
  EXPECT_NE(e.find("orchestrator_address: required with hosts"), std::string::npos) << e;
  e = error_of(base + "orchestrator_address: 10.0.0.1\nhosts: [{name: a, agent: '10.0.0.2', token_file: t}]\n", false);
  EXPECT_NE(e.find("expected tcp://HOST:PORT"), std::string::npos) << e;
  e = error_of(base + "orchestrator_address: 10.0.0.1\nhosts: [{name: a, agent: 'tcp://10.0.0.5:1', token_file: t}, "
                      "{name: a, agent: 'tcp://10.0.0.5:2', token_file: t}]\n", false);
  EXPECT_NE(e.find("defined twice"), std::string::npos) << e;
  // Addresses that are bound must be IPv4 literals: a host name for the agent needs `address`.
  e = error_of(base + "orchestrator_address: 10.0.0.1\nhosts: [{name: a, agent: 'tcp://vm1.internal:7070', token_file: t}]\n",
               false);
  EXPECT_NE(e.find("host 'a' binds its shards and weights socket on 'vm1.internal', which is not an IPv4 address"),
            std::string::npos)
      << e;
  EXPECT_EQ(RunSpec::load_string(base + "orchestrator_address: 10.0.0.1\nhosts: [{name: a, agent: "
                                        "'tcp://vm1.internal:7070', address: 10.0.0.3, token_file: t}]\n",
                                 "run.yaml")
                .host("a")
                ->address,
            "10.0.0.3");
  e = error_of(base + "orchestrator_address: head.internal\nhosts: [{name: a, agent: 'tcp://10.0.0.5:1', token_file: t}]\n",
               false);
  EXPECT_NE(e.find("orchestrator_address: the run's Redis binds it, so it must be an IPv4 address"), std::string::npos) << e;
  e = error_of(base + "placement: {actors: [vm9]}\n", false);
  EXPECT_NE(e.find("unknown host 'vm9' (hosts: local)"), std::string::npos) << e;
  e = error_of(base + "orchestrator_address: 10.0.0.1\nhosts: [{name: a, agent: 'tcp://10.0.0.5:1', token_file: t}]\n"
                      "placement: {replay: [a, local]}\n", false);
  EXPECT_NE(e.find("2 hosts for replay.shards = 1"), std::string::npos) << e;
  RunSpec s = RunSpec::load_string(base + "orchestrator_address: 10.0.0.1\nhosts: [{name: a, agent: "
                                          "'tcp://10.0.0.2:7070', token_file: t}]\nplacement: {learner: a, actors: [a, local]}\n",
                                   "run.yaml");
  ASSERT_TRUE(s.multi_host());
  EXPECT_EQ(s.host("a")->address, "10.0.0.2");  // from the agent's endpoint
  EXPECT_EQ(s.placement.actors, (std::vector<std::string>{"a", "local"}));
}

TEST(RunSpec, EvaluationOptionsOverrideTheEnvOptions) {
  RunSpec s = RunSpec::load_string(
      "name: t\nalgorithm: sac\nenv: {name: Pendulum-v1, options: {g: 9.81, step_delay_us: 5000}}\n"
      "learner: {eval_options: {step_delay_us: 0}}\nbudget: {updates: 1}\n",
      "run.yaml");
  auto o = s.eval_env_options();
  EXPECT_EQ(o, (std::vector<std::string>{"g=9.81", "step_delay_us=0"}));
}

TEST(RunSpec, ReplaySectionWithoutTablesGetsThemDerivedAndTypos) {
  RunSpec s = RunSpec::load_string("name: t\nenv: {name: CartPole-v1}\nbudget: {updates: 1}\n"
                                   "replay: {cpus: [0], env: {A: b}, checkpoint_interval_s: 5}\n",
                                   "run.yaml");
  EXPECT_EQ(s.replay_cpus, (std::vector<int>{0}));
  EXPECT_EQ(s.replay_env, (std::vector<std::string>{"A=b"}));
  s.resolve();
  auto server = orchard::replay::ServerOptions::parse(s.node()["replay"]);
  EXPECT_EQ(server.tables.at(0).name, "segments");
  EXPECT_DOUBLE_EQ(server.checkpoint_interval_s, 5.0);
  std::string e = error_of("name: t\nenv: {name: CartPole-v1}\nbudget: {updates: 1}\nreplay: {checkpoint_intervl_s: 5}\n");
  EXPECT_NE(e.find("checkpoint_intervl_s"), std::string::npos) << e;
}
