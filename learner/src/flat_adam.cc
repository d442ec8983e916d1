#include "orchard/learner/flat_adam.h"

#include <cmath>
#include <unordered_set>

#include "orchard/core/error.h"

namespace orchard::learner {

torch::Tensor pack_parameters(const std::vector<torch::Tensor>& params) {
  int64_t total = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].defined() || params[i].scalar_type() != torch::kFloat32 || params[i].device() != params[0].device())
      throw Error("pack_parameters: parameter " + std::to_string(i) + " is not a float32 tensor on " +
                  params[0].device().str());
    total += params[i].numel();
  }
  torch::Tensor flat = torch::empty({total}, torch::TensorOptions().dtype(torch::kFloat32).device(
                                                 params.empty() ? torch::Device(torch::kCPU) : params[0].device()));
  torch::NoGradGuard no_grad;
  int64_t offset = 0;
  for (auto p : params) {  // a handle: set_data changes the shared tensor
    const int64_t n = p.numel();
    auto view = flat.slice(0, offset, offset + n).view(p.sizes());
    view.copy_(p.detach());
    p.set_data(view);
    offset += n;
  }
  return flat;
}

FlatAdam::FlatAdam(std::vector<torch::Tensor> params, Options options)
    : options_(options), params_(std::move(params)) {
  if (params_.empty()) throw Error("FlatAdam: no parameters to optimise");
  if (!(options_.lr >= 0) || !(options_.eps >= 0) || !(options_.beta1 >= 0 && options_.beta1 < 1) ||
      !(options_.beta2 >= 0 && options_.beta2 < 1))
    throw Error("FlatAdam: lr and eps must be >= 0 and the betas in [0, 1)");
  int64_t total = 0;
  std::unordered_set<const void*> seen;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    if (!p.defined() || p.scalar_type() != torch::kFloat32 || !p.requires_grad())
      throw Error("FlatAdam: parameter " + std::to_string(i) + " must be a float32 tensor that requires grad");
    if (p.device() != params_[0].device())
      throw Error("FlatAdam: parameter " + std::to_string(i) + " is on " + p.device().str() + ", parameter 0 on " +
                  params_[0].device().str());
    if (!seen.insert(p.unsafeGetTensorImpl()).second)
      throw Error("FlatAdam: parameter " + std::to_string(i) + " is listed twice");
    total += p.numel();
  }
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(params_[0].device());
  flat_params_ = pack_parameters(params_);
  flat_grads_ = torch::zeros({total}, opts);
  exp_avg_ = torch::zeros({total}, opts);
  exp_avg_sq_ = torch::zeros({total}, opts);
  int64_t offset = 0;
  for (auto& p : params_) {
    const int64_t n = p.numel();
    grad_views_.push_back(flat_grads_.slice(0, offset, offset + n).view(p.sizes()));
    p.mutable_grad() = grad_views_.back();
    offset += n;
  }
}

// Autograd accumulates into a defined gradient in place, so our views stay the gradients; only a
// gradient replaced or reset from outside needs copying back.
void FlatAdam::sync_grads() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& g = params_[i].mutable_grad();
    if (g.defined() && g.data_ptr() == grad_views_[i].data_ptr()) continue;
    if (g.defined())
      grad_views_[i].copy_(g);
    else
      grad_views_[i].zero_();
    g = grad_views_[i];
  }
}

torch::Tensor& FlatAdam::flat_grads() {
  sync_grads();
  return flat_grads_;
}

void FlatAdam::zero_grad() {
  sync_grads();
  flat_grads_.zero_();
}

double FlatAdam::clip_grad_norm(double max_norm) {
  sync_grads();
  torch::NoGradGuard no_grad;
  const double norm = flat_grads_.norm().item<double>();
  const double coef = max_norm / (norm + 1e-6);  // torch::nn::utils::clip_grad_norm_'s epsilon
  if (coef < 1) flat_grads_.mul_(coef);
  return norm;
}

void FlatAdam::step() {
  sync_grads();
  torch::NoGradGuard no_grad;
  ++step_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double bias1 = 1 - std::pow(b1, static_cast<double>(step_));
  const double bias2 = 1 - std::pow(b2, static_cast<double>(step_));
  exp_avg_.mul_(b1).add_(flat_grads_, 1 - b1);
  exp_avg_sq_.mul_(b2).addcmul_(flat_grads_, flat_grads_, 1 - b2);
  auto denom = (exp_avg_sq_.sqrt() / std::sqrt(bias2)).add_(options_.eps);
  flat_params_.addcdiv_(exp_avg_, denom, -options_.lr / bias1);
}

void FlatAdam::save(torch::serialize::OutputArchive& archive, const std::string& prefix) const {
  archive.write(prefix + "exp_avg", exp_avg_);
  archive.write(prefix + "exp_avg_sq", exp_avg_sq_);
  archive.write(prefix + "step", torch::tensor(step_));
}

void FlatAdam::load(torch::serialize::InputArchive& archive, const std::string& prefix) {
  torch::Tensor m, v, step;
  archive.read(prefix + "exp_avg", m);
  archive.read(prefix + "exp_avg_sq", v);
  archive.read(prefix + "step", step);
  for (const auto* t : {&m, &v}) {
    if (t->dim() != 1 || t->numel() != exp_avg_.numel() || t->scalar_type() != torch::kFloat32)
      throw Error("optimiser state of " + std::to_string(t->numel()) + " values does not fit " +
                  std::to_string(exp_avg_.numel()) + " parameters");
  }
  if (step.numel() != 1 || step.item<int64_t>() < 0) throw Error("optimiser state has an invalid step count");
  torch::NoGradGuard no_grad;
  exp_avg_.copy_(m);
  exp_avg_sq_.copy_(v);
  step_ = step.item<int64_t>();
}

}  // namespace orchard::learner
