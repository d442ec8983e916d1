// Actor-critic networks for PPO, built from an env's observation and action spaces.
//
// Follows CleanRL (https://github.com/vwxyzjn/cleanrl): ppo.py for discrete actions (separate
// tanh MLP actor and critic, orthogonal init with gain sqrt(2) in hidden layers, 0.01 on the
// policy head, 1.0 on the value head, zero biases) and ppo_continuous_action.py for Box actions
// (diagonal Gaussian with a state-independent log-std parameter initialised to 0).
//
// This header includes LibTorch (the classes derive from torch::nn::Module); include it only
// from translation units that need the model.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "orchard/core/error.h"
#include "orchard/envs/space.h"

namespace orchard::learner {

// The model cannot serve an env's spaces, or a named state does not fit the model. The message
// names the space or the tensor and what was expected.
class ModelError : public Error {
 public:
  using Error::Error;
};

// Running mean and variance of observations (per element), merged batch by batch with the
// parallel variance algorithm (Chan et al. 1979), as gymnasium.wrappers.NormalizeObservation.
// Buffers (float64, saved and broadcast with the model): "mean" [D], "var" [D], "count" [].
// Invariant: count > 0 (starts at 1e-4 with mean 0, var 1, like gymnasium's RunningMeanStd).
class RunningNorm : public torch::nn::Module {
 public:
  RunningNorm(int64_t dim, double clip = 10.0, double epsilon = 1e-8);

  // Merges the statistics of `batch` [B, D] (any float dtype). Not differentiable.
  void update(const torch::Tensor& batch);
  // Merges a batch given by its moments: mean [D], population variance [D] and size n > 0.
  void update_moments(const torch::Tensor& batch_mean, const torch::Tensor& batch_var, double n);
  // clamp((x - mean) / sqrt(var + epsilon), -clip, clip), in x's dtype. x: [B, D].
  torch::Tensor normalize(const torch::Tensor& x) const;

  const torch::Tensor& mean() const { return mean_; }
  const torch::Tensor& var() const { return var_; }
  double count() const { return count_.item<double>(); }

 private:
  double clip_, epsilon_;
  torch::Tensor mean_, var_, count_;
};

struct ModelConfig {
  std::vector<int64_t> hidden_sizes{64, 64};  // tanh MLP widths, same for actor and critic
  bool normalize_obs = false;  // RunningNorm in front of both networks (CleanRL continuous: on)
  double obs_clip = 10.0;      // clip of normalised observations
  double init_log_std = 0.0;   // Box actions: initial log standard deviation
  // Observation torso. "mlp": flatten. "conv": for [H, W, C] grids (MinAtar): one 3x3 convolution
  // with conv_channels filters, stride 1, ReLU, flattened, shared by actor and critic (Young &
  // Tian 2019, "MinAtar", arXiv:1903.03176, whose networks use 16 filters then a 128-unit layer).
  // "auto": conv for rank-3 observations, mlp otherwise.
  std::string torso = "auto";
  int64_t conv_channels = 16;
};

struct ActResult {
  torch::Tensor action;  // Discrete: int64 [B]; MultiDiscrete: int64 [B, D]; Box: float [B, D]
  torch::Tensor logp;    // [B], log-probability of `action` under the current policy
  torch::Tensor value;   // [B]
};

struct EvalResult {
  torch::Tensor logp;     // [B]
  torch::Tensor entropy;  // [B]
  torch::Tensor value;    // [B]
};

// A PPO actor-critic. Observations are any Box (float32 or uint8; flattened to D = numel() and
// cast to float32, uint8 unscaled). Actions: Discrete -> one categorical, MultiDiscrete -> one
// categorical per element (logp and entropy summed), Box float32 -> diagonal Gaussian over the
// flattened action (unbounded samples: the caller clips to the bounds before stepping the env).
// Methods run in the caller's grad mode; wrap act() in torch::NoGradGuard when collecting.
class ActorCritic : public torch::nn::Module {
 public:
  // Throws ModelError naming the space when it cannot be served: an observation space that is
  // not a Box, an empty space, an int64 Box observation, a Box action with a dtype other than
  // float32, a Discrete with n < 1 or a MultiDiscrete with an element < 1.
  ActorCritic(const envs::Space& observation_space, const envs::Space& action_space, ModelConfig config = {});

  // Samples an action for each row of obs [B, ...] (trailing dims are flattened).
  ActResult act(const torch::Tensor& obs);
  // Log-probability and entropy of `actions` (shaped as act() returns them) and values.
  EvalResult evaluate(const torch::Tensor& obs, const torch::Tensor& actions);
  // The mode: argmax per categorical, the Gaussian mean for Box actions.
  torch::Tensor deterministic_action(const torch::Tensor& obs);
  // V(obs), [B].
  torch::Tensor value(const torch::Tensor& obs);
  // Folds obs [B, ...] into the running observation statistics; no-op without normalize_obs.
  void update_obs_norm(const torch::Tensor& obs);
  // The same over the union of every learner rank's obs: `sum_across_ranks` sums a float64
  // tensor in place over the ranks (GradientSync::sum), so all ranks merge the same moments.
  void update_obs_norm(const torch::Tensor& obs, const std::function<void(torch::Tensor&)>& sum_across_ranks);

  // Every parameter and buffer with its dotted name ("critic.0.weight", "obs_norm.mean", ...),
  // in a fixed order. The tensors share storage with the model.
  std::vector<std::pair<std::string, torch::Tensor>> named_state() const;
  // Copies `state` into the model. Requires exactly the names of named_state() (any order)
  // with equal shapes and dtypes; throws ModelError naming the first missing, unexpected or
  // mis-shaped entry, and then the model is unchanged.
  void load_named_state(const std::vector<std::pair<std::string, torch::Tensor>>& state);

  const envs::Space& observation_space() const { return obs_space_; }
  const envs::Space& action_space() const { return act_space_; }
  int64_t obs_dim() const { return obs_dim_; }
  const ModelConfig& config() const { return config_; }
  bool conv_torso() const { return static_cast<bool>(conv_); }

 private:
  torch::Tensor features(const torch::Tensor& obs) const;  // flatten, cast, normalise
  torch::Tensor head(const torch::Tensor& x);               // logits or Gaussian mean

  envs::Space obs_space_, act_space_;
  ModelConfig config_;
  int64_t obs_dim_ = 0, act_dim_ = 0;  // act_dim_: logits width (sum of nvec) or Box numel
  std::vector<int64_t> nvec_;          // categorical sizes; {n} for Discrete
  torch::nn::Sequential actor_{nullptr}, critic_{nullptr};
  torch::nn::Sequential conv_{nullptr};  // conv torso, or null
  int64_t feature_dim_ = 0;              // width of what actor_ and critic_ take
  torch::Tensor log_std_;  // Box only: [1, act_dim]
  std::shared_ptr<RunningNorm> obs_norm_;
};

// Closed forms used by ActorCritic, exposed for tests. logits [B, K], actions int64 [B].
torch::Tensor categorical_log_prob(const torch::Tensor& logits, const torch::Tensor& actions);
torch::Tensor categorical_entropy(const torch::Tensor& logits);
// mean [B, D], log_std broadcastable to it, actions [B, D]; summed over D -> [B].
torch::Tensor gaussian_log_prob(const torch::Tensor& mean, const torch::Tensor& log_std, const torch::Tensor& actions);
torch::Tensor gaussian_entropy(const torch::Tensor& log_std, int64_t batch);

// Checkpoint files: writes `archive` to `path` through a temp file and a rename, so a crash never
// leaves a torn checkpoint. Throws orchard::Error starting with `what` ("SAC checkpoint 'x'").
void save_archive_atomically(torch::serialize::OutputArchive& archive, const std::string& path,
                             const std::string& what);
// Reads `path` into `archive`; throws orchard::Error (`what`: cannot open / unreadable or corrupt).
void load_archive(torch::serialize::InputArchive& archive, const std::string& path, const std::string& what);

}  // namespace orchard::learner
