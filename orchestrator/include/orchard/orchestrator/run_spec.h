// The run spec: one YAML file that describes a training run — env, algorithm and its
// hyper-parameters, replay, learner, actors, budget, Redis, directories. Every process of a run
// (orchard run, orchard-replay, orchard-learner, orchard-actor) reads the same file.
//
//   RunSpec spec = RunSpec::load("examples/quickstart.yaml", {"budget.env_steps=200000"});
//   spec.resolve();                      // env spaces, replay tables, endpoints filled in
//   write_file(dir + "/spec.yaml", spec.resolved_yaml());
//
// load() validates everything that can be checked without starting anything and throws
// orchard::ConfigError with one line naming the file, the key path and what is allowed (unknown
// keys, ranges, choices; an unknown env; an algorithm that does not fit the env's action space).
// Every key and default is documented in docs/run-spec.md. No LibTorch here: the learner maps
// the algorithm sections onto its own config structs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "orchard/core/config.h"
#include "orchard/core/logging.h"
#include "orchard/core/tensor.h"
#include "orchard/envs/env.h"
#include "orchard/envs/space.h"

namespace orchard::orchestrator {

enum class Algorithm { kPpo, kSac, kApt };
const char* algorithm_name(Algorithm a);  // "ppo", "sac", "apt"

// `ppo:` — CleanRL ppo.py defaults (docs/algorithms.md).
struct PpoSpec {
  double learning_rate = 2.5e-4, gamma = 0.99, gae_lambda = 0.95;
  int64_t num_minibatches = 4, update_epochs = 4;
  bool norm_adv = true, clip_vloss = true, anneal_lr = true;
  double clip_coef = 0.2, ent_coef = 0.01, vf_coef = 0.5, max_grad_norm = 0.5, target_kl = 0.0, rho_bar = 1.0;
  int64_t segment_length = 128;      // T: steps per env per segment
  int64_t segments_per_update = 0;   // segments in one learner batch; 0: actors.count * env.num_envs
  int64_t max_queued_updates = 2;    // the segment queue holds at most this many batches (policy lag bound)
  std::vector<int64_t> hidden = {64, 64};  // tanh MLP widths of actor and critic
  bool normalize_obs = false;
  std::string torso = "auto";        // auto | mlp | conv (conv: MinAtar-style [H, W, C] grids)
  int64_t conv_channels = 16;
};

// `sac:` — used by both `algorithm: sac` and `algorithm: apt`; CleanRL/SB3 SAC defaults.
struct SacSpec {
  double gamma = 0.99, tau = 0.005, actor_lr = 3e-4, critic_lr = 3e-4, alpha_lr = 3e-4;
  int64_t batch_size = 256;
  int64_t learning_starts = 5000;    // transitions in replay before the learner samples
  int64_t random_steps = 5000;       // env steps per actor with uniform random actions (warm-up)
  int64_t policy_frequency = 1, target_frequency = 1;
  bool autotune = true;
  double initial_alpha = 1.0;
  int64_t n_step = 1;
  int64_t buffer_size = 1000000;
  bool prioritized = false;          // prioritized replay with |TD| priorities
  double priority_exponent = 0.6, importance_beta = 0.4;
  double updates_per_step = 1.0;     // update-to-data ratio (learner updates per env step)
  // How far (in env steps) actors may run ahead of the update-to-data schedule before their
  // inserts block. sac: 0 = one writer batch per actor (collect, then update); apt: 0 = 5000.
  int64_t max_steps_ahead = 0;
  int64_t steps_per_batch = 1;       // actor vector steps per writer batch
  int64_t publish_every = 0;         // learner updates between weight broadcasts; 0: sac 1, apt from publish_every_steps
  int64_t publish_every_steps = 1000;  // apt: a new policy reaches actors every this many transitions (M)
  std::vector<int64_t> actor_hidden = {256, 256}, critic_hidden = {256, 256};
};

struct EnvSpec {
  std::string name;                  // registry name (built-in or from `plugin`)
  std::string plugin;                // shared library to load first (path), optional
  std::vector<std::string> options;  // "key=value", from the `options:` map
  int64_t num_envs = 8;              // per actor
};

struct LearnerSpec {
  // Data-parallel ranks: each samples its own batches; gradients are averaged across them
  // (GradientSync) before every optimiser step; rank 0 publishes weights, evaluates, checkpoints.
  int64_t count = 1;
  std::string device = "cpu";        // cpu | cuda
  std::string sync = "gloo";         // the ranks' all-reduce backend: gloo (cpu) | nccl (cuda)
  double sync_timeout_s = 120;       // rendezvous and each collective; a silent rank fails the others
  int64_t torch_threads = 1;
  // OpenBLAS's pool; 0 (auto): 1 for PPO (small layers, where idle BLAS workers only spin), up
  // to 4 of the learner's allowed CPUs for SAC/APT (256-wide layers at batch 256 gain 1.4x),
  // divided among the learner ranks placed on the same host.
  int64_t blas_threads = 0;
  int64_t prefetch = 2;              // batches sampled ahead
  int64_t eval_every = 0;            // learner updates between evaluations; 0: ppo 1, sac/apt 1000
  int64_t eval_episodes = 10;
  std::vector<std::string> eval_options;  // "key=value": env options that differ for evaluation
  double checkpoint_every_s = 60;    // 0: only at the end
  double report_every_s = 5;
  std::vector<int> cpus;             // pin the learner to these CPUs; empty: no pinning
  std::vector<std::string> env;      // extra environment, "NAME=value"
};

struct ActorsSpec {
  int64_t count = 2;
  int64_t torch_threads = 1;
  double report_every_s = 5;
  std::vector<int> cpus;             // pin every actor to these CPUs; empty: no pinning
  std::vector<std::string> env;      // extra environment, "NAME=value"
};

// `hosts:` — machines reached through `orchard agent` (docs/orchestrator.md).
struct HostSpec {
  std::string name;             // used in placement
  std::string agent;            // the agent's endpoint, tcp://10.0.0.2:7070
  std::string address;          // where other hosts reach this one (default: the agent's host)
  std::string token_file;       // file holding the agent's token (first line)
  std::string server_key_file;  // the agent's CURVE public key (orchard keys NAME -> NAME.pub); optional
  std::string bin_dir;          // Orchard executables there; default: the orchestrator's own directory
};

// `placement:` — which host runs what; "local" is the machine running `orchard run`.
struct PlacementSpec {
  std::vector<std::string> replay = {"local"};   // shard i on replay[i % size]
  std::string learner = "local";                 // learner rank 0 (weights, checkpoints, result)
  std::vector<std::string> learners = {"local"}; // learner rank r on learners[r % size]; [0] == learner
  std::vector<std::string> actors = {"local"};   // actor i on actors[i % size]
};

struct BudgetSpec {
  int64_t env_steps = 0;             // stop after this many env steps (all actors); 0: no limit
  double wall_time_s = 0;            // 0: no limit
  double target_return = 0;          // stop once the evaluation mean return reaches it
  bool has_target = false;
  int64_t updates = 0;               // stop after this many learner updates; 0: no limit
};

class RunSpec {
 public:
  // Reads `path`, applies `overrides` ("a.b=value", as `--set`), validates. Throws ConfigError.
  static RunSpec load(const std::string& path, const std::vector<std::string>& overrides = {});
  static RunSpec load_string(const std::string& yaml, const std::string& source,
                             const std::vector<std::string>& overrides = {});

  // Makes the spec self-contained for the processes of a run: loads the env (and plugin) to get
  // its spaces, checks that the algorithm fits them, fills in the replay tables (signature and
  // rate limiter derived from the algorithm) unless given, and endpoints not given (free
  // loopback ports). Idempotent. Throws ConfigError / EnvError naming what does not fit.
  void resolve();
  // The full spec as YAML, with everything resolve() filled in; what orchard run writes to the
  // run directory and hands to every process.
  std::string resolved_yaml() const;
  // Fixes the endpoints before resolve() (multi-host runs: addresses and ports from the agents).
  void set_endpoints(const std::vector<std::string>& replay, const std::string& weights,
                     const std::string& learner_sync = "");

  std::string name;
  uint64_t seed = 1;
  Algorithm algorithm = Algorithm::kPpo;
  EnvSpec env;
  PpoSpec ppo;
  SacSpec sac;
  LearnerSpec learner;
  ActorsSpec actors;
  BudgetSpec budget;
  std::string redis_url;              // empty: no Redis (orchard run starts its own)
  std::string run_dir;                // default runs/<name>
  std::string checkpoint_dir;         // default <run_dir>/checkpoints
  // `logging:` (level, json, file) for every process of the run; a relative file is under
  // run_dir. `process` is left for each process to fill in.
  core::LogOptions logging;
  std::vector<HostSpec> hosts;
  PlacementSpec placement;
  std::string orchestrator_address;   // where other hosts reach this machine (Redis); needed with hosts
  // `security.curve_keys`: a directory with server.key and client.key (`orchard keys server|client
  // --dir DIR`). Set: every ZeroMQ socket of the run (replay, weights) uses CURVE — shards and the
  // learner's weights socket are servers with server.key, the other ends clients with client.key.
  std::string curve_keys;
  bool multi_host() const { return !hosts.empty(); }
  const HostSpec* host(const std::string& name) const;  // nullptr for "local" or unknown
  int64_t replay_shards = 1;
  std::vector<int> replay_cpus;           // replay.cpus: pin the shards to these CPUs
  std::vector<std::string> replay_env;    // replay.env: extra environment of the shards
  std::vector<std::string> replay_endpoints;  // one per shard (resolved)
  std::string weights_endpoint;               // learner rank 0 PUB (resolved)
  // learner.count > 1: rank 0's rendezvous store, tcp://HOST:PORT (resolved); empty otherwise.
  std::string learner_sync_endpoint;
  // The address learner rank `rank` uses for its Gloo connections: its host's address, or
  // 127.0.0.1 (orchestrator_address in a multi-host run) for "local".
  std::string learner_address(int64_t rank) const;
  std::string table;                  // the experience table's name: "segments" or "transitions"

  // Filled by resolve():
  envs::Space observation_space, action_space;
  std::vector<core::TensorSpec> item_signature;  // per item of `table`
  bool resolved = false;

  const core::ConfigNode& node() const { return node_; }  // the document (with overrides)

  // Resolved defaults that depend on other sections:
  int64_t ppo_segments_per_update() const;     // resolved segments_per_update
  int64_t eval_every() const;                  // resolved learner.eval_every
  int64_t sac_publish_every() const;           // resolved learner updates between broadcasts
  int64_t sac_max_steps_ahead() const;         // resolved max_steps_ahead
  // What learner and actors agree the policy network is (WEIGHTS for another are refused), e.g.
  // "ppo ActorCritic obs Box(4) act Discrete(2) hidden [64, 64]". Needs resolve().
  std::string model_description() const;
  bool ppo_conv() const;  // the PPO model uses the conv torso (needs resolve())
  // env.options with learner.eval_options applied on top ("key=value" strings).
  std::vector<std::string> eval_env_options() const;

 private:
  explicit RunSpec(core::ConfigNode node);
  void parse();
  void fill_replay_section();

  core::ConfigNode node_;
};

}  // namespace orchard::orchestrator
