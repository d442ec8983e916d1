// Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications",
// arXiv:1812.05905) on LibTorch, CPU.
//
// Reproduces CleanRL `sac_continuous_action.py` and Stable-Baselines3 SAC defaults:
//   actor     tanh-squashed Gaussian, MLP trunk (256-256 ReLU) with mean and log-std heads;
//             log_std = -5 + 3.5 * (tanh(raw) + 1), i.e. squashed into [-5, 2] as CleanRL;
//             action = tanh(u) * scale + bias with scale/bias from the Box bounds;
//             log pi(a|s) = sum_i [log N(u_i; mu_i, sigma_i) - log(scale_i (1 - tanh(u_i)^2) + 1e-6)]
//   critics   two Q networks Q(s, a) (MLP 256-256 ReLU), target copies updated by Polyak
//             averaging theta' <- tau theta + (1 - tau) theta' after every critic step
//   target    y = r + discount * (min_j Q'_j(s', a') - alpha log pi(a'|s')),  a' ~ pi(.|s')
//             where `discount` = gamma^n (1 - terminated) comes with the batch (n-step writer)
//   losses    L_Q  = sum_j mean_b( w_b (Q_j(s_b, a_b) - y_b)^2 )         (w = 1 without PER)
//             L_pi = mean_b( alpha log pi(a~_b|s_b) - min_j Q_j(s_b, a~_b) )
//             L_alpha = mean_b( -exp(log_alpha) (log pi(a~_b|s_b) + target_entropy) )
//   order     critic step, Polyak update, actor step, alpha step (one update() call).
//
// Everything here is single-threaded from the caller's view: one owner calls update(); the
// learner holds no locks. The algorithm depends on LibTorch only (no transport, no storage).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "orchard/core/error.h"
#include "orchard/envs/space.h"

namespace orchard::learner {

struct SacOptions {
  std::vector<int64_t> actor_hidden = {256, 256};   // ReLU MLP trunk of the actor
  std::vector<int64_t> critic_hidden = {256, 256};  // ReLU MLP of each Q network
  double gamma = 0.99;           // used by SacTrainer to build `discount`; update() reads discount
  double tau = 0.005;            // Polyak coefficient of the target critics
  double actor_lr = 3e-4;        // Adam, actor
  double critic_lr = 3e-4;       // Adam, both critics (one optimiser)
  double alpha_lr = 3e-4;        // Adam, log_alpha (CleanRL uses the critic's lr)
  int64_t batch_size = 256;      // SacTrainer's sample size
  int64_t learning_starts = 5000;  // SacTrainer: uniform random actions and no updates before this
  int64_t policy_frequency = 1;  // actor and alpha step every this many update() calls
  int64_t target_frequency = 1;  // Polyak update every this many update() calls
  bool autotune = true;          // learn alpha; otherwise alpha stays initial_alpha
  double initial_alpha = 1.0;    // log_alpha starts at log(initial_alpha) (CleanRL/SB3: 1.0)
  std::optional<double> target_entropy;  // default -|A| (number of action elements)
  uint64_t seed = 1;             // parameter init and the learner's sampling generator
};

// One training batch; every tensor is float32 on the CPU with leading dimension B.
struct SacBatch {
  torch::Tensor obs;       // [B, obs_dim]
  torch::Tensor action;    // [B, act_dim], in the env's Box units (as stepped)
  torch::Tensor reward;    // [B]   (n-step discounted sum of rewards)
  torch::Tensor next_obs;  // [B, obs_dim]  (for a truncated episode: the final observation)
  torch::Tensor discount;  // [B]   gamma^n * (1 - terminated)
  torch::Tensor weights;   // [B] importance weights (prioritized replay), or undefined = all 1
};

struct SacStats {
  double q1_loss = 0, q2_loss = 0;  // weighted MSE of each critic (before the step)
  double q1_mean = 0, q2_mean = 0;  // mean Q_j(s, a) over the batch
  double target_mean = 0;           // mean of y
  double actor_loss = 0;            // 0 when the actor did not step this call
  double alpha_loss = 0;
  double alpha = 0;                 // alpha after this update
  double entropy = 0;               // -mean log pi(a~|s) of the actor's sample
  int64_t updates = 0;              // update() calls so far, this one included
};

struct SacUpdateResult {
  SacStats stats;
  // [B] float32: (|Q1 - y| + |Q2 - y|) / 2 per item, for priority updates.
  torch::Tensor td_abs;
};

// Weights as (name, tensor) pairs, e.g. "trunk.0.weight", "mean.bias", "action_scale".
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// log pi(a|s) of a tanh-squashed Gaussian for pre-squash samples u: [B, A] -> [B].
// log_std is the already-bounded log standard deviation; scale is [A] (half the Box width).
torch::Tensor tanh_gaussian_log_prob(const torch::Tensor& u, const torch::Tensor& mean,
                                     const torch::Tensor& log_std, const torch::Tensor& scale);

class SacLearner {
 public:
  // Called between backward() and step() of each optimiser with the module whose gradients are
  // ready: the critics (both Q networks), the actor, then the alpha module (one parameter,
  // "log_alpha", only with autotune). Meant for a gradient all-reduce.
  using GradHook = std::function<void(torch::nn::Module&)>;

  // Throws orchard::Error when the action space is not a bounded float32 Box or the
  // observation space is not a float32 Box, naming the space it got.
  SacLearner(const envs::Space& observation_space, const envs::Space& action_space, SacOptions options = {});
  ~SacLearner();
  SacLearner(const SacLearner&) = delete;
  SacLearner& operator=(const SacLearner&) = delete;

  // One gradient step of the critics, then (every policy_frequency calls) the actor and alpha.
  // Samples a'~pi(.|s') then a~~pi(.|s) from the learner's generator, in that order, each as
  // one randn of shape [B, act_dim]. Throws orchard::Error for a batch of the wrong shape.
  SacUpdateResult update(const SacBatch& batch);

  void set_after_backward(GradHook hook) { after_backward_ = std::move(hook); }

  // Actions for obs [B, obs_dim] or [obs_dim] (same leading shape out), in Box units.
  torch::Tensor deterministic_action(const torch::Tensor& obs);  // tanh(mean) * scale + bias
  torch::Tensor sample_action(const torch::Tensor& obs);         // uses the learner's generator

  // The actor's parameters and buffers (cloned on the way out, copied on the way in).
  // load_named_state checks every name and shape before copying anything and throws
  // orchard::Error naming the first missing, unexpected or mis-shaped entry.
  NamedTensors named_state() const;
  void load_named_state(const NamedTensors& state);

  // Full checkpoint: actor, critics, targets, three optimisers, log_alpha, counters and the
  // generator state. save() writes `path + ".tmp"` and renames it over `path`. load() reads
  // everything into a fresh learner and swaps it in only when all of it fits, so on any error
  // (unreadable, truncated, other network shapes or spaces) it throws orchard::Error naming
  // the path and the first problem, and this learner is unchanged. After a successful load the
  // modules are new objects: references from *_module() taken before it are invalid.
  void save(const std::string& path) const;
  void load(const std::string& path);

  // The sampling generator's state (CPUGeneratorImpl::get_state()), so a test can replay the
  // noise that the next update() or sample_action() will draw.
  torch::Tensor generator_state() const;

  double alpha() const;
  int64_t updates() const;
  int64_t obs_dim() const;
  int64_t act_dim() const;
  double target_entropy() const;
  const SacOptions& options() const;

  // The modules, for tests and tools (set weights by hand, inspect gradients).
  torch::nn::Module& actor_module();
  torch::nn::Module& critic_module();         // "q1.*", "q2.*"
  torch::nn::Module& target_critic_module();  // same names
  torch::nn::Module& alpha_module();          // "log_alpha"

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  GradHook after_backward_;
};

struct SacTrainerOptions {
  std::string env = "Pendulum-v1";
  size_t num_envs = 1;             // a VectorEnv of this many copies (same-step auto-reset)
  int64_t total_env_steps = 100000;  // transitions collected, summed over envs
  int64_t updates_per_step = 1;    // update() calls per vector step, once learning has started
  int64_t buffer_size = 1000000;   // uniform replay ring capacity (transitions)
  uint64_t seed = 1;               // env seeds seed..seed+n-1, replay sampling, learner
  int64_t eval_every = 0;          // env steps between deterministic evaluations; 0 = never
  int eval_episodes = 5;
  // run() returns after the first evaluation whose mean return is >= this (default: never).
  double stop_at_eval_return = std::numeric_limits<double>::infinity();
};

// A point of the learning curve.
struct SacProgress {
  int64_t env_steps = 0;
  int64_t updates = 0;
  double seconds = 0;             // wall time since run() started
  double eval_return = 0;         // mean deterministic return over eval_episodes
  double train_return = 0;        // mean return of the last 10 finished training episodes
  SacStats last;                  // stats of the latest update
};

// An in-process SAC loop for tests and benchmarks: VectorEnv, uniform replay ring in memory,
// one-step discount = gamma * (1 - terminated), bootstrap from final_observations() on
// truncation. Not the distributed path (actors, replay service) — just the same learner.
class SacTrainer {
 public:
  // Throws orchard::Error (or EnvError) for an unknown env or a non-Box action space.
  SacTrainer(SacTrainerOptions trainer_options, SacOptions sac_options);
  ~SacTrainer();

  // Collects total_env_steps transitions (or stops early at stop_at_eval_return), training as
  // configured; calls `progress` after every evaluation. Returns the curve.
  std::vector<SacProgress> run(const std::function<void(const SacProgress&)>& progress = nullptr);

  // Mean return of `episodes` episodes with deterministic actions on a fresh env seeded
  // seed, seed+1, ...
  double evaluate(int episodes, uint64_t seed);

  SacLearner& learner();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace orchard::learner
