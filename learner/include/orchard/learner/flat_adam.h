// Adam over every parameter of a network packed into one contiguous buffer.
//
// The update is Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization",
// arXiv:1412.6980, Algorithm 1) in the form torch::optim::Adam computes it (no weight decay, no
// amsgrad):
//   m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// The difference is cost, not maths: the parameters and their gradients become views into two
// flat tensors, so zeroing the gradients, the global gradient-norm clip and the Adam step are a
// handful of LibTorch ops on one buffer instead of several per parameter tensor. On the small
// networks RL uses, LibTorch's per-op cost dominates: for the quickstart's PPO minibatch this
// cut the optimiser step and clip from 215 us to about 40 us (docs/benchmarks.md, "Learner update").
// Used by PPO; SAC's 256-wide networks ran slower with it in whole runs (docs/algorithms.md).
//
//   FlatAdam opt(model->parameters(), FlatAdam::Options{.lr = 2.5e-4, .eps = 1e-5});
//   opt.zero_grad(); loss.backward(); opt.clip_grad_norm(0.5); opt.step();
//
// The parameters keep their identity (same tensors, now backed by the buffer), so modules,
// named_state() and load_named_state() work as before. A gradient that something else replaced
// or reset (Module::zero_grad(set_to_none)) is copied back into the buffer before it is used.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace orchard::learner {

// Copies `params` (float32, one device) into one new contiguous buffer, in order, and makes each
// parameter a view of it (same tensor object, new storage); returns the buffer. Two modules of the
// same architecture packed this way have the same layout.
torch::Tensor pack_parameters(const std::vector<torch::Tensor>& params);

class FlatAdam {
 public:
  struct Options {
    double lr = 1e-3;
    double beta1 = 0.9, beta2 = 0.999;
    double eps = 1e-8;
  };

  // All parameters must be float32, on one device, require grad and be distinct. Throws
  // orchard::Error naming the offending parameter otherwise.
  FlatAdam(std::vector<torch::Tensor> params, Options options);

  void zero_grad();
  // Scales the gradients so that their global L2 norm is at most max_norm (as
  // torch::nn::utils::clip_grad_norm_ with norm type 2); returns the norm before clipping.
  double clip_grad_norm(double max_norm);
  void step();

  double lr() const { return options_.lr; }
  void set_lr(double lr) { options_.lr = lr; }
  int64_t steps() const { return step_; }
  int64_t numel() const { return flat_params_.numel(); }

  // The packed parameters and gradients (e.g. to all-reduce the gradients of several learner
  // ranks in one call). Writing into them writes the parameters / gradients.
  const torch::Tensor& flat_params() const { return flat_params_; }
  torch::Tensor& flat_grads();

  // State: the two moment buffers and the step count, under `prefix` + "exp_avg" etc. load()
  // refuses a state of another size (naming both) and then changes nothing.
  void save(torch::serialize::OutputArchive& archive, const std::string& prefix) const;
  void load(torch::serialize::InputArchive& archive, const std::string& prefix);

 private:
  void sync_grads();

  Options options_;
  std::vector<torch::Tensor> params_;
  std::vector<torch::Tensor> grad_views_;
  torch::Tensor flat_params_, flat_grads_, exp_avg_, exp_avg_sq_;
  int64_t step_ = 0;
};

}  // namespace orchard::learner
