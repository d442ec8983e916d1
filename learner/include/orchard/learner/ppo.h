// Proximal Policy Optimization (Schulman et al. 2017, https://arxiv.org/abs/1707.06347), with
// the implementation details of CleanRL's ppo.py / ppo_continuous_action.py
// (https://github.com/vwxyzjn/cleanrl, "The 37 Implementation Details of PPO", ICLR blog 2022),
// plus an APPO-style truncated importance weight for data collected by a lagging policy.
//
//   PpoLearner learner(model, PpoConfig{});
//   Rollout batch = ...;                       // flattened [B, ...] tensors, GAE already done
//   PpoUpdateStats s = learner.update(batch, 1.0 - iteration / num_iterations);
//
// PpoTrainer runs the whole loop in-process on a VectorEnv (tests, benchmarks, examples).
// Documentation of every option: docs/algorithms.md, section "PPO".
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "orchard/envs/vector_env.h"
#include "orchard/learner/flat_adam.h"
#include "orchard/learner/model.h"

namespace orchard::learner {

struct PpoConfig {
  double learning_rate = 2.5e-4;  // Adam, eps 1e-5 (CleanRL)
  double gamma = 0.99;            // discount
  double gae_lambda = 0.95;       // GAE lambda
  int64_t num_minibatches = 4;    // minibatches per epoch; batch size must be divisible
  int64_t update_epochs = 4;      // passes over the batch per update
  bool norm_adv = true;           // normalise advantages per minibatch (mean 0, std 1)
  double clip_coef = 0.2;         // surrogate clipping epsilon
  bool clip_vloss = true;         // clip the value update around the old value by clip_coef
  double ent_coef = 0.01;         // entropy bonus weight
  double vf_coef = 0.5;           // value loss weight
  double max_grad_norm = 0.5;     // global gradient-norm clip; <= 0 disables
  bool anneal_lr = true;          // lr = learning_rate * remaining fraction (see update())
  double target_kl = 0.0;         // > 0: stop the epochs early once approx-KL exceeds it
  // Truncated importance weight for policy lag: each sample's surrogate is multiplied by
  // rho = min(rho_bar, pi_old(a|s) / mu(a|s)), where mu is the behaviour policy that acted and
  // pi_old the learner's policy at the start of the update. rho = 1 for on-policy data.
  // <= 0 disables it (the ratio is then taken against mu directly, as CleanRL).
  double rho_bar = 1.0;
};

struct GaeResult {
  torch::Tensor advantages;  // [T, N]
  torch::Tensor returns;     // advantages + values, [T, N]
};

// Generalised advantage estimation (Schulman et al. 2016) over a [T, N] window from a VectorEnv
// with same-step auto-reset. Row t holds values[t] = V(s_t), the reward and the end flags of
// the step taken from s_t. `terminated`/`truncated` are 0/1 (any dtype). On a termination the
// bootstrap is 0; on a truncation it is final_values[t] = V(final observation of that episode)
// (ignored elsewhere); otherwise V(s_{t+1}), with `last_value` [N] = V(s_T) after the window.
// delta_t = r_t + gamma * next_t - V(s_t); A_t = delta_t + gamma * lambda * (1 - done_t) A_{t+1}.
GaeResult compute_gae(const torch::Tensor& rewards, const torch::Tensor& values, const torch::Tensor& terminated,
                      const torch::Tensor& truncated, const torch::Tensor& final_values, const torch::Tensor& last_value,
                      double gamma, double gae_lambda);

struct PpoLossInputs {
  torch::Tensor new_logp;    // [B], under the policy being optimised (differentiable)
  torch::Tensor old_logp;    // [B], denominator of the ratio (constant)
  torch::Tensor advantages;  // [B], already normalised if wanted
  torch::Tensor new_values;  // [B] (differentiable)
  torch::Tensor old_values;  // [B], values at collection, centre of the value clip
  torch::Tensor returns;     // [B]
  torch::Tensor entropy;     // [B] (differentiable)
  torch::Tensor weights;     // [B] importance weights rho, or undefined for all ones
  // Compute approx_kl and old_approx_kl (PpoLearner asks only on an epoch's last minibatch, the
  // one CleanRL reports and checks target_kl on).
  bool kl_stats = true;
};

struct PpoLoss {
  torch::Tensor loss;      // pg_loss - ent_coef * entropy + vf_coef * v_loss (differentiable)
  torch::Tensor pg_loss;   // -mean(rho * min(r A, clip(r, 1 - eps, 1 + eps) A))
  torch::Tensor v_loss;    // 0.5 * mean(max((V - R)^2, (V_clipped - R)^2)), or unclipped
  torch::Tensor entropy;   // mean entropy
  double approx_kl = 0.0;  // mean((r - 1) - log r) (Schulman's k3 estimator); 0 without kl_stats
  double old_approx_kl = 0.0;  // mean(-log r); 0 without kl_stats
  double clipfrac = 0.0;   // fraction of samples with |r - 1| > clip_coef
};

// The PPO objective for one minibatch (uses clip_coef, clip_vloss, ent_coef, vf_coef).
PpoLoss ppo_loss(const PpoLossInputs& in, const PpoConfig& config);

// One batch for PpoLearner::update, flattened over time and envs: B = T * N rows.
struct Rollout {
  torch::Tensor obs;             // [B, ...] as the model takes it
  torch::Tensor actions;         // as ActorCritic::act returns them, B rows
  torch::Tensor behaviour_logp;  // [B], logp of the acting (possibly stale) policy
  torch::Tensor values;          // [B], values at collection
  torch::Tensor advantages;      // [B]
  torch::Tensor returns;         // [B]
};

struct PpoUpdateStats {
  double learning_rate = 0.0;
  double pg_loss = 0.0, v_loss = 0.0, entropy = 0.0;  // means over minibatches
  double approx_kl = 0.0, old_approx_kl = 0.0;        // of the last minibatch, as CleanRL
  double clipfrac = 0.0;                              // mean over minibatches
  double explained_variance = 0.0;                    // 1 - Var[R - V] / Var[R] at collection
  double mean_rho = 1.0, rho_clipped_fraction = 0.0;  // importance weights of the batch
  int64_t minibatches = 0;                            // gradient steps taken
  bool stopped_early = false;                         // target_kl reached
};

// Owns the optimisation of one ActorCritic: Adam (eps 1e-5) over its parameters.
class PpoLearner {
 public:
  // Throws orchard::Error for an invalid config (names the option and the allowed range).
  PpoLearner(std::shared_ptr<ActorCritic> model, PpoConfig config);

  // update_epochs passes over `batch` in num_minibatches shuffled minibatches (torch's global
  // generator), each: loss, backward, after_backward(model), grad-norm clip, Adam step.
  // `remaining` in (0, 1] scales the learning rate when anneal_lr (CleanRL: 1 - (i - 1) / n for
  // iteration i of n). Throws orchard::Error when B is not divisible by num_minibatches.
  PpoUpdateStats update(const Rollout& batch, double remaining = 1.0);

  // Called between backward() and the optimiser step, e.g. to all-reduce gradients across
  // learner ranks. Default: none.
  std::function<void(torch::nn::Module&)> after_backward;
  // With target_kl: the mean of a number over the learner ranks, so that every rank takes the
  // same early-stop decision (the ranks must take the same number of optimiser steps). Default:
  // none (one rank).
  std::function<double(double)> mean_across_ranks;

  // Checkpoint: the model's parameters and buffers (observation statistics), the Adam state, the
  // update count and torch's default CPU generator (minibatch shuffling), written atomically.
  // load() refuses a corrupt file or another model's (naming the tensor) and then changes nothing.
  void save(const std::string& path);
  void load(const std::string& path);
  int64_t updates() const { return updates_; }

  ActorCritic& model() { return *model_; }
  std::shared_ptr<ActorCritic> model_ptr() const { return model_; }
  FlatAdam& optimizer() { return optimizer_; }
  const PpoConfig& config() const { return config_; }

 private:
  std::shared_ptr<ActorCritic> model_;
  PpoConfig config_;
  FlatAdam optimizer_;  // Adam, eps 1e-5 (CleanRL), over one flat parameter buffer
  int64_t updates_ = 0;  // update() calls
};

struct PpoTrainerConfig {
  std::string env = "CartPole-v1";
  envs::EnvOptions env_options;  // passed to EnvRegistry::make_vector
  int64_t num_envs = 4;          // CleanRL ppo.py: 4
  int64_t num_steps = 128;       // steps per env per rollout (CleanRL: 128)
  int64_t total_timesteps = 500000;  // anneals the lr to 0 at this many env steps
  uint64_t seed = 1;             // torch::manual_seed(seed); env i reset with seed + i
  PpoConfig ppo;
  ModelConfig model;
  size_t episode_window = 20;    // episodes kept for mean_return()
};

struct PpoIterationStats {
  int64_t iteration = 0;      // 1-based
  int64_t global_step = 0;    // env steps so far, all envs
  int64_t episodes = 0;       // episodes finished so far
  double mean_return = 0.0;   // over the last episode_window episodes (0 before any)
  double collect_seconds = 0.0, update_seconds = 0.0;
  PpoUpdateStats update;
};

// In-process PPO: collect num_steps x num_envs from a VectorEnv, GAE, update; repeat.
// Deterministic for a seed, in one process with a fixed number of torch threads.
class PpoTrainer {
 public:
  // Builds the env (EnvRegistry::global()) and the model. Throws EnvError / ModelError / Error.
  explicit PpoTrainer(PpoTrainerConfig config);
  ~PpoTrainer();

  // One rollout and one update.
  PpoIterationStats iterate();
  // Iterates until total_timesteps or until `stop` returns true after an iteration.
  PpoIterationStats train(const std::function<bool(const PpoIterationStats&)>& stop = nullptr);

  double mean_return() const;  // over the last episode_window finished episodes
  const std::deque<float>& recent_returns() const { return recent_returns_; }
  PpoLearner& learner() { return *learner_; }
  ActorCritic& model() { return learner_->model(); }
  envs::VectorEnv& env() { return *env_; }
  const PpoTrainerConfig& config() const { return config_; }

 private:
  torch::Tensor observations_tensor(const void* data) const;
  void write_actions(const torch::Tensor& actions);

  PpoTrainerConfig config_;
  std::unique_ptr<envs::VectorEnv> env_;
  std::unique_ptr<PpoLearner> learner_;
  std::vector<uint8_t> action_buffer_;
  std::deque<float> recent_returns_;
  int64_t iteration_ = 0, global_step_ = 0, episodes_ = 0;
};

}  // namespace orchard::learner
