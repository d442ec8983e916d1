#include "orchard/learner/model.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

namespace orchard::learner {
namespace {

constexpr double kLog2Pi = 1.8378770664093453;  // log(2 * pi)

std::string shape_string(c10::IntArrayRef sizes) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < sizes.size(); ++i) s << (i ? ", " : "") << sizes[i];
  s << "]";
  return s.str();
}

// CleanRL layer_init: orthogonal weights with `gain`, zero bias.
torch::nn::Linear layer(int64_t in, int64_t out, double gain) {
  torch::nn::Linear l(in, out);
  torch::NoGradGuard no_grad;
  torch::nn::init::orthogonal_(l->weight, gain);
  torch::nn::init::constant_(l->bias, 0.0);
  return l;
}

torch::nn::Sequential mlp(int64_t in, const std::vector<int64_t>& hidden, int64_t out, double out_gain) {
  torch::nn::Sequential seq;
  int64_t width = in;
  for (int64_t h : hidden) {
    seq->push_back(layer(width, h, std::sqrt(2.0)));
    seq->push_back(torch::nn::Tanh());
    width = h;
  }
  seq->push_back(layer(width, out, out_gain));
  return seq;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// RunningNorm

RunningNorm::RunningNorm(int64_t dim, double clip, double epsilon) : clip_(clip), epsilon_(epsilon) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  mean_ = register_buffer("mean", torch::zeros({dim}, opts));
  var_ = register_buffer("var", torch::ones({dim}, opts));
  count_ = register_buffer("count", torch::full({}, 1e-4, opts));
}

void RunningNorm::update(const torch::Tensor& batch) {
  torch::NoGradGuard no_grad;
  auto x = batch.to(torch::kFloat64).reshape({batch.size(0), -1});
  const double n = static_cast<double>(x.size(0));
  if (n == 0) return;
  update_moments(x.mean(0), x.var(0, /*unbiased=*/false), n);
}

// Chan, Golub & LeVeque's parallel combination of two (count, mean, M2) summaries.
void RunningNorm::update_moments(const torch::Tensor& batch_mean, const torch::Tensor& batch_var, double n) {
  torch::NoGradGuard no_grad;
  if (!(n > 0)) return;
  const double count = count_.item<double>();
  const double total = count + n;
  auto delta = batch_mean.to(torch::kFloat64) - mean_;
  auto m2 = var_ * count + batch_var.to(torch::kFloat64) * n + delta.square() * (count * n / total);
  mean_.add_(delta * (n / total));
  var_.copy_(m2 / total);
  count_.fill_(total);
}

torch::Tensor RunningNorm::normalize(const torch::Tensor& x) const {
  auto mean = mean_.to(x.dtype());
  auto std = (var_ + epsilon_).sqrt().to(x.dtype());
  return ((x - mean) / std).clamp(-clip_, clip_);
}

// ---------------------------------------------------------------------------------------------
// Distributions

torch::Tensor categorical_log_prob(const torch::Tensor& logits, const torch::Tensor& actions) {
  auto logp = torch::log_softmax(logits, -1);
  return logp.gather(-1, actions.to(torch::kInt64).unsqueeze(-1)).squeeze(-1);
}

torch::Tensor categorical_entropy(const torch::Tensor& logits) {
  auto logp = torch::log_softmax(logits, -1);
  return -(logp.exp() * logp).sum(-1);
}

torch::Tensor gaussian_log_prob(const torch::Tensor& mean, const torch::Tensor& log_std, const torch::Tensor& actions) {
  auto z = (actions - mean) * torch::exp(-log_std);
  return (-0.5 * z.square() - log_std - 0.5 * kLog2Pi).sum(-1);
}

torch::Tensor gaussian_entropy(const torch::Tensor& log_std, int64_t batch) {
  auto per_dim = (0.5 + 0.5 * kLog2Pi) + log_std;
  return per_dim.reshape({1, -1}).sum(-1).expand({batch});
}

// ---------------------------------------------------------------------------------------------
// ActorCritic

ActorCritic::ActorCritic(const envs::Space& observation_space, const envs::Space& action_space, ModelConfig config)
    : obs_space_(observation_space), act_space_(action_space), config_(std::move(config)) {
  if (obs_space_.kind != envs::SpaceKind::kBox) {
    throw ModelError("ActorCritic: observation space " + obs_space_.to_string() +
                     " is not supported (only Box observations, float32 or uint8)");
  }
  if (obs_space_.dtype != core::DType::kFloat32 && obs_space_.dtype != core::DType::kUInt8) {
    throw ModelError("ActorCritic: observation space " + obs_space_.to_string() +
                     " has an unsupported dtype (allowed: float32, uint8)");
  }
  obs_dim_ = obs_space_.numel();
  if (obs_dim_ < 1) throw ModelError("ActorCritic: observation space " + obs_space_.to_string() + " is empty");
  for (int64_t h : config_.hidden_sizes) {
    if (h < 1) throw ModelError("ActorCritic: hidden size " + std::to_string(h) + " must be >= 1");
  }

  switch (act_space_.kind) {
    case envs::SpaceKind::kDiscrete:
      if (act_space_.n < 1) throw ModelError("ActorCritic: action space " + act_space_.to_string() + " has no actions");
      nvec_ = {act_space_.n};
      act_dim_ = act_space_.n;
      break;
    case envs::SpaceKind::kMultiDiscrete:
      if (act_space_.nvec.empty()) {
        throw ModelError("ActorCritic: action space " + act_space_.to_string() + " is empty");
      }
      for (int64_t k : act_space_.nvec) {
        if (k < 1) throw ModelError("ActorCritic: action space " + act_space_.to_string() + " has an element with no choices");
        act_dim_ += k;
      }
      nvec_ = act_space_.nvec;
      break;
    case envs::SpaceKind::kBox:
      if (act_space_.dtype != core::DType::kFloat32) {
        throw ModelError("ActorCritic: action space " + act_space_.to_string() +
                         " is not supported (Box actions must be float32)");
      }
      act_dim_ = act_space_.numel();
      if (act_dim_ < 1) throw ModelError("ActorCritic: action space " + act_space_.to_string() + " is empty");
      break;
  }

  if (config_.torso != "auto" && config_.torso != "mlp" && config_.torso != "conv")
    throw ModelError("ActorCritic: torso '" + config_.torso + "' (allowed: auto, mlp, conv)");
  const bool grid = obs_space_.shape.size() == 3;
  const bool conv = config_.torso == "conv" || (config_.torso == "auto" && grid);
  feature_dim_ = obs_dim_;
  if (conv) {
    if (!grid)
      throw ModelError("ActorCritic: the conv torso needs [H, W, C] observations, got " + obs_space_.to_string());
    const int64_t h = obs_space_.shape[0], w = obs_space_.shape[1], c = obs_space_.shape[2];
    if (h < 3 || w < 3) throw ModelError("ActorCritic: the conv torso needs H, W >= 3, got " + obs_space_.to_string());
    if (config_.conv_channels < 1) throw ModelError("ActorCritic: conv_channels must be >= 1");
    if (config_.normalize_obs) throw ModelError("ActorCritic: normalize_obs is for the mlp torso");
    conv_ = register_module("conv", torch::nn::Sequential(
                                        torch::nn::Conv2d(torch::nn::Conv2dOptions(c, config_.conv_channels, 3)),
                                        torch::nn::ReLU(), torch::nn::Flatten()));
    feature_dim_ = config_.conv_channels * (h - 2) * (w - 2);
  }
  if (config_.normalize_obs) obs_norm_ = register_module("obs_norm", std::make_shared<RunningNorm>(obs_dim_, config_.obs_clip));
  critic_ = register_module("critic", mlp(feature_dim_, config_.hidden_sizes, 1, 1.0));
  actor_ = register_module("actor", mlp(feature_dim_, config_.hidden_sizes, act_dim_, 0.01));
  if (act_space_.kind == envs::SpaceKind::kBox) {
    log_std_ = register_parameter("log_std", torch::full({1, act_dim_}, config_.init_log_std));
  }
}

torch::Tensor ActorCritic::features(const torch::Tensor& obs) const {
  if (conv_) {
    const auto& sh = obs_space_.shape;  // [B, H, W, C] -> [B, C, H, W]
    auto g = obs.reshape({obs.size(0), sh[0], sh[1], sh[2]}).to(torch::kFloat32).permute({0, 3, 1, 2});
    return const_cast<torch::nn::SequentialImpl&>(*conv_).forward(g);  // forward() is not const in LibTorch
  }
  auto x = obs.reshape({obs.size(0), obs_dim_});
  if (x.scalar_type() != torch::kFloat32) x = x.to(torch::kFloat32);
  if (obs_norm_) x = obs_norm_->normalize(x);
  return x;
}

torch::Tensor ActorCritic::head(const torch::Tensor& x) { return actor_->forward(x); }

torch::Tensor ActorCritic::value(const torch::Tensor& obs) { return critic_->forward(features(obs)).squeeze(-1); }

void ActorCritic::update_obs_norm(const torch::Tensor& obs) {
  if (obs_norm_) obs_norm_->update(obs.reshape({obs.size(0), obs_dim_}));
}

void ActorCritic::update_obs_norm(const torch::Tensor& obs,
                                  const std::function<void(torch::Tensor&)>& sum_across_ranks) {
  if (!obs_norm_) return;
  if (!sum_across_ranks) return update_obs_norm(obs);
  torch::NoGradGuard no_grad;
  auto x = obs.to(torch::kFloat64).reshape({obs.size(0), obs_dim_});
  // [n, sum x (D), sum x^2 (D)] summed over the ranks, then the union's mean and variance.
  auto stats = torch::cat({torch::full({1}, static_cast<double>(x.size(0)), torch::kFloat64), x.sum(0),
                           x.square().sum(0)});
  sum_across_ranks(stats);
  const double n = stats[0].item<double>();
  if (!(n > 0)) return;
  auto mean = stats.narrow(0, 1, obs_dim_) / n;
  auto var = (stats.narrow(0, 1 + obs_dim_, obs_dim_) / n - mean.square()).clamp_min(0.0);
  obs_norm_->update_moments(mean, var, n);
}

ActResult ActorCritic::act(const torch::Tensor& obs) {
  auto x = features(obs);
  auto out = head(x);
  ActResult r;
  r.value = critic_->forward(x).squeeze(-1);
  const int64_t batch = x.size(0);
  if (act_space_.kind == envs::SpaceKind::kBox) {
    auto std = log_std_.exp().expand_as(out);
    r.action = out + std * torch::randn_like(out);
    r.logp = gaussian_log_prob(out, log_std_, r.action);
    return r;
  }
  if (nvec_.size() == 1) {
    auto probs = torch::softmax(out, -1);
    r.action = torch::multinomial(probs, 1).squeeze(-1);
    r.logp = categorical_log_prob(out, r.action);
    if (act_space_.kind == envs::SpaceKind::kMultiDiscrete) r.action = r.action.unsqueeze(-1);
    return r;
  }
  auto parts = out.split_with_sizes(nvec_, -1);
  std::vector<torch::Tensor> actions;
  r.logp = torch::zeros({batch}, out.options());
  for (const auto& logits : parts) {
    auto a = torch::multinomial(torch::softmax(logits, -1), 1).squeeze(-1);
    r.logp = r.logp + categorical_log_prob(logits, a);
    actions.push_back(a);
  }
  r.action = torch::stack(actions, -1);
  return r;
}

EvalResult ActorCritic::evaluate(const torch::Tensor& obs, const torch::Tensor& actions) {
  auto x = features(obs);
  auto out = head(x);
  EvalResult r;
  r.value = critic_->forward(x).squeeze(-1);
  const int64_t batch = x.size(0);
  if (act_space_.kind == envs::SpaceKind::kBox) {
    r.logp = gaussian_log_prob(out, log_std_, actions.reshape({batch, act_dim_}).to(out.dtype()));
    r.entropy = gaussian_entropy(log_std_, batch);
    return r;
  }
  if (act_space_.kind == envs::SpaceKind::kDiscrete) {
    // One log_softmax for both (the same maths as categorical_log_prob / categorical_entropy).
    auto logp_all = torch::log_softmax(out, -1);
    r.logp = logp_all.gather(-1, actions.reshape({batch}).to(torch::kInt64).unsqueeze(-1)).squeeze(-1);
    r.entropy = -(logp_all.exp() * logp_all).sum(-1);
    return r;
  }
  auto acts = actions.reshape({batch, static_cast<int64_t>(nvec_.size())});
  auto parts = out.split_with_sizes(nvec_, -1);
  r.logp = torch::zeros({batch}, out.options());
  r.entropy = torch::zeros({batch}, out.options());
  for (size_t i = 0; i < parts.size(); ++i) {
    r.logp = r.logp + categorical_log_prob(parts[i], acts.select(1, static_cast<int64_t>(i)));
    r.entropy = r.entropy + categorical_entropy(parts[i]);
  }
  return r;
}

torch::Tensor ActorCritic::deterministic_action(const torch::Tensor& obs) {
  auto out = head(features(obs));
  if (act_space_.kind == envs::SpaceKind::kBox) return out;
  if (act_space_.kind == envs::SpaceKind::kDiscrete) return out.argmax(-1);
  std::vector<torch::Tensor> actions;
  for (const auto& logits : out.split_with_sizes(nvec_, -1)) actions.push_back(logits.argmax(-1));
  return torch::stack(actions, -1);
}

std::vector<std::pair<std::string, torch::Tensor>> ActorCritic::named_state() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : named_buffers(/*recurse=*/true)) out.emplace_back(b.key(), b.value());
  return out;
}

void ActorCritic::load_named_state(const std::vector<std::pair<std::string, torch::Tensor>>& state) {
  auto own = named_state();
  std::map<std::string, const torch::Tensor*> given;
  for (const auto& [name, tensor] : state) {
    if (!given.emplace(name, &tensor).second) {
      throw ModelError("load_named_state: tensor '" + name + "' appears twice");
    }
  }
  // Validate everything before copying anything, so a failed load leaves the model unchanged.
  for (const auto& [name, tensor] : own) {
    auto it = given.find(name);
    if (it == given.end()) throw ModelError("load_named_state: tensor '" + name + "' is missing");
    const torch::Tensor& t = *it->second;
    if (!t.defined()) throw ModelError("load_named_state: tensor '" + name + "' is undefined");
    if (t.sizes() != tensor.sizes()) {
      throw ModelError("load_named_state: tensor '" + name + "' has shape " + shape_string(t.sizes()) +
                       ", the model expects " + shape_string(tensor.sizes()));
    }
    if (t.scalar_type() != tensor.scalar_type()) {
      throw ModelError("load_named_state: tensor '" + name + "' has dtype " + std::string(c10::toString(t.scalar_type())) +
                       ", the model expects " + std::string(c10::toString(tensor.scalar_type())));
    }
  }
  if (given.size() != own.size()) {
    std::map<std::string, bool> known;
    for (const auto& kv : own) known[kv.first] = true;
    for (const auto& [name, tensor] : state) {
      if (!known.count(name)) throw ModelError("load_named_state: tensor '" + name + "' is not in the model");
    }
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : own) tensor.copy_(*given.at(name));
}

namespace {

std::string first_line_of(const char* what) {
  std::string s = what;
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace

void save_archive_atomically(torch::serialize::OutputArchive& archive, const std::string& path,
                             const std::string& what) {
  const std::string tmp = path + ".tmp";
  try {
    archive.save_to(tmp);
  } catch (const c10::Error& e) {
    std::remove(tmp.c_str());
    throw Error(what + ": cannot write: " + first_line_of(e.what()));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(what + ": cannot rename " + tmp + " over it: " + std::strerror(errno));
  }
}

void load_archive(torch::serialize::InputArchive& archive, const std::string& path, const std::string& what) {
  if (!std::ifstream(path, std::ios::binary).good()) throw Error(what + ": cannot open the file");
  try {
    archive.load_from(path);
  } catch (const std::exception& e) {  // c10::Error from the zip reader
    throw Error(what + ": unreadable or corrupt: " + first_line_of(e.what()));
  }
}

}  // namespace orchard::learner
