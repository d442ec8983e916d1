// SAC on LibTorch: networks, update, checkpoints and the in-process trainer. See sac.h for the
// equations; the reference implementation is CleanRL `sac_continuous_action.py`.
#include "orchard/learner/sac.h"

#include "orchard/learner/model.h"

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <deque>
#include <fstream>
#include <random>
#include <sstream>

#include "orchard/envs/registry.h"
#include "orchard/envs/vector_env.h"

namespace orchard::learner {
namespace {

constexpr double kLogStdMin = -5.0;
constexpr double kLogStdMax = 2.0;
constexpr int64_t kCheckpointFormat = 1;

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

std::string shape_str(const std::vector<int64_t>& s) { return shape_str(at::IntArrayRef(s)); }

// First line of a c10::Error message (the rest is a C++ backtrace).
std::string first_line(const char* what) {
  std::string s(what);
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

// Linear layers with ReLU between them; `out` < 0 leaves the last hidden layer as the output.
torch::nn::Sequential make_mlp(int64_t in, const std::vector<int64_t>& hidden, int64_t out) {
  torch::nn::Sequential seq;
  int64_t width = in;
  for (int64_t h : hidden) {
    seq->push_back(torch::nn::Linear(width, h));
    seq->push_back(torch::nn::ReLU());
    width = h;
  }
  if (out > 0) seq->push_back(torch::nn::Linear(width, out));
  return seq;
}

struct ActorImpl : torch::nn::Module {
  ActorImpl(int64_t obs_dim, int64_t act_dim, const std::vector<int64_t>& hidden, const torch::Tensor& scale,
            const torch::Tensor& bias) {
    trunk = register_module("trunk", make_mlp(obs_dim, hidden, -1));
    int64_t width = hidden.empty() ? obs_dim : hidden.back();
    mean = register_module("mean", torch::nn::Linear(width, act_dim));
    log_std = register_module("log_std", torch::nn::Linear(width, act_dim));
    action_scale = register_buffer("action_scale", scale);
    action_bias = register_buffer("action_bias", bias);
  }

  // (mean, bounded log-std) of the pre-squash Gaussian.
  std::pair<torch::Tensor, torch::Tensor> heads(const torch::Tensor& obs) {
    torch::Tensor h = trunk->size() == 0 ? obs : trunk->forward(obs);
    torch::Tensor ls = torch::tanh(log_std->forward(h));
    ls = kLogStdMin + 0.5 * (kLogStdMax - kLogStdMin) * (ls + 1.0);
    return {mean->forward(h), ls};
  }

  // (action in Box units, log pi) with reparameterised noise from `gen`.
  std::pair<torch::Tensor, torch::Tensor> sample(const torch::Tensor& obs, at::Generator& gen) {
    auto [mu, ls] = heads(obs);
    torch::Tensor eps = at::randn(mu.sizes(), gen, mu.options());
    torch::Tensor u = mu + ls.exp() * eps;
    torch::Tensor a = torch::tanh(u) * action_scale + action_bias;
    return {a, tanh_gaussian_log_prob(u, mu, ls, action_scale)};
  }

  torch::Tensor deterministic(const torch::Tensor& obs) {
    auto [mu, ls] = heads(obs);
    return torch::tanh(mu) * action_scale + action_bias;
  }

  torch::nn::Sequential trunk{nullptr};
  torch::nn::Linear mean{nullptr}, log_std{nullptr};
  torch::Tensor action_scale, action_bias;
};
TORCH_MODULE(Actor);

struct CriticImpl : torch::nn::Module {
  CriticImpl(int64_t obs_dim, int64_t act_dim, const std::vector<int64_t>& hidden) {
    q1 = register_module("q1", make_mlp(obs_dim + act_dim, hidden, 1));
    q2 = register_module("q2", make_mlp(obs_dim + act_dim, hidden, 1));
  }
  // (Q1, Q2), each [B].
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& obs, const torch::Tensor& act) {
    torch::Tensor x = torch::cat({obs, act}, 1);
    return {q1->forward(x).squeeze(1), q2->forward(x).squeeze(1)};
  }
  torch::nn::Sequential q1{nullptr}, q2{nullptr};
};
TORCH_MODULE(Critic);

struct AlphaImpl : torch::nn::Module {
  explicit AlphaImpl(double initial) {
    log_alpha = register_parameter("log_alpha", torch::full({1}, std::log(initial)));
  }
  torch::Tensor log_alpha;
};
TORCH_MODULE(Alpha);

NamedTensors module_state(const torch::nn::Module& m) {
  NamedTensors out;
  for (const auto& p : m.named_parameters()) out.emplace_back(p.key(), p.value());
  for (const auto& b : m.named_buffers()) out.emplace_back(b.key(), b.value());
  return out;
}

// Checks `got` against the module's parameters and buffers by name and shape, then copies.
// Nothing is copied unless everything matches. `what` prefixes error messages.
void load_module_state(torch::nn::Module& m, const NamedTensors& got, const std::string& what) {
  NamedTensors want = module_state(m);
  std::vector<const torch::Tensor*> src(want.size(), nullptr);
  for (const auto& [name, t] : got) {
    size_t i = 0;
    while (i < want.size() && want[i].first != name) ++i;
    if (i == want.size()) throw Error(what + ": unexpected tensor '" + name + "'");
    if (src[i]) throw Error(what + ": tensor '" + name + "' given twice");
    if (!t.defined() || t.sizes() != want[i].second.sizes())
      throw Error(what + ": tensor '" + name + "' has shape " + (t.defined() ? shape_str(t.sizes()) : "<undefined>") +
                  ", expected " + shape_str(want[i].second.sizes()));
    if (t.scalar_type() != want[i].second.scalar_type())
      throw Error(what + ": tensor '" + name + "' has dtype " + std::string(c10::toString(t.scalar_type())) +
                  ", expected " + std::string(c10::toString(want[i].second.scalar_type())));
    src[i] = &t;
  }
  for (size_t i = 0; i < want.size(); ++i)
    if (!src[i]) throw Error(what + ": missing tensor '" + want[i].first + "'");
  torch::NoGradGuard ng;
  for (size_t i = 0; i < want.size(); ++i) want[i].second.copy_(*src[i]);
}

void check_dims(const torch::Tensor& t, const char* name, int64_t b, int64_t d) {
  bool ok = t.defined() && t.scalar_type() == torch::kFloat32 &&
            (d < 0 ? (t.dim() == 1 && t.size(0) == b) : (t.dim() == 2 && t.size(0) == b && t.size(1) == d));
  if (!ok) {
    std::string want = d < 0 ? shape_str(std::vector<int64_t>{b}) : shape_str(std::vector<int64_t>{b, d});
    throw Error(std::string("SAC batch: '") + name + "' must be float32 " + want + ", got " +
                (t.defined() ? std::string(c10::toString(t.scalar_type())) + " " + shape_str(t.sizes())
                             : std::string("<undefined>")));
  }
}

}  // namespace

torch::Tensor tanh_gaussian_log_prob(const torch::Tensor& u, const torch::Tensor& mean, const torch::Tensor& log_std,
                                     const torch::Tensor& scale) {
  static const double kHalfLog2Pi = 0.5 * std::log(2.0 * M_PI);
  torch::Tensor z = (u - mean) * torch::exp(-log_std);
  torch::Tensor normal = -0.5 * z * z - log_std - kHalfLog2Pi;
  torch::Tensor y = torch::tanh(u);
  torch::Tensor correction = torch::log(scale * (1.0 - y * y) + 1e-6);
  return (normal - correction).sum(1);
}

// ---------------------------------------------------------------------------------------------
// SacLearner

struct SacLearner::Impl {
  Impl(const envs::Space& obs_space_in, const envs::Space& act_space_in, const SacOptions& o)
      : opt(o), obs_space(obs_space_in), act_space(act_space_in) {
    if (act_space.kind != envs::SpaceKind::kBox)
      throw Error("SAC needs a continuous (Box) action space; got " + act_space.to_string());
    if (act_space.dtype != core::DType::kFloat32)
      throw Error("SAC needs a float32 Box action space; got " + act_space.to_string());
    if (obs_space.kind != envs::SpaceKind::kBox || obs_space.dtype != core::DType::kFloat32)
      throw Error("SAC needs a float32 Box observation space; got " + obs_space.to_string());
    obs_dim = obs_space.numel();
    act_dim = act_space.numel();
    std::vector<float> scale(act_dim), bias(act_dim);
    for (int64_t i = 0; i < act_dim; ++i) {
      double lo = act_space.low[i], hi = act_space.high[i];
      if (!std::isfinite(lo) || !std::isfinite(hi) || !(hi > lo))
        throw Error("SAC needs finite Box bounds to squash actions into; action element " + std::to_string(i) +
                    " has [" + std::to_string(lo) + ", " + std::to_string(hi) + "] in " + act_space.to_string());
      scale[i] = static_cast<float>((hi - lo) / 2.0);
      bias[i] = static_cast<float>((hi + lo) / 2.0);
    }
    if (opt.tau < 0 || opt.tau > 1) throw Error("SAC option tau = " + std::to_string(opt.tau) + " is outside [0, 1]");
    if (opt.policy_frequency < 1 || opt.target_frequency < 1)
      throw Error("SAC options policy_frequency and target_frequency must be >= 1");
    if (!(opt.initial_alpha > 0)) throw Error("SAC option initial_alpha must be > 0");
    target_entropy = opt.target_entropy ? *opt.target_entropy : -static_cast<double>(act_dim);

    // Parameter init uses the global generator (as torch.nn does); seed it for this
    // construction only and give the caller's stream back.
    auto global = at::detail::getDefaultCPUGenerator();
    torch::Tensor saved = global.get_state();
    global.set_current_seed(opt.seed);
    actor = Actor(obs_dim, act_dim, opt.actor_hidden, torch::tensor(scale), torch::tensor(bias));
    critic = Critic(obs_dim, act_dim, opt.critic_hidden);
    target = Critic(obs_dim, act_dim, opt.critic_hidden);
    global.set_state(saved);
    alpha = Alpha(opt.initial_alpha);
    {
      torch::NoGradGuard ng;
      auto src = critic->parameters();
      auto dst = target->parameters();
      for (size_t i = 0; i < src.size(); ++i) {
        dst[i].copy_(src[i]);
        dst[i].set_requires_grad(false);
      }
    }
    actor_opt = std::make_unique<torch::optim::Adam>(actor->parameters(), torch::optim::AdamOptions(opt.actor_lr));
    critic_opt = std::make_unique<torch::optim::Adam>(critic->parameters(), torch::optim::AdamOptions(opt.critic_lr));
    alpha_opt = std::make_unique<torch::optim::Adam>(alpha->parameters(), torch::optim::AdamOptions(opt.alpha_lr));
    gen = at::make_generator<at::CPUGeneratorImpl>(opt.seed + 0x5ac);
  }

  void set_critic_requires_grad(bool on) {
    for (auto& p : critic->parameters()) p.set_requires_grad(on);
  }

  void write(torch::serialize::OutputArchive& ar) const;
  void read(torch::serialize::InputArchive& ar, const std::string& path);

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  SacOptions opt;
  envs::Space obs_space, act_space;
  int64_t obs_dim = 0, act_dim = 0;
  double target_entropy = 0;
  Actor actor{nullptr};
  Critic critic{nullptr}, target{nullptr};
  Alpha alpha{nullptr};
  std::unique_ptr<torch::optim::Adam> actor_opt, critic_opt, alpha_opt;
  at::Generator gen;
  int64_t updates = 0;  // update() calls completed
};

namespace {

void write_module(torch::serialize::OutputArchive& ar, const std::string& prefix, const torch::nn::Module& m) {
  for (const auto& [name, t] : module_state(m)) ar.write(prefix + name, t.detach());
}

// Reads every tensor of `m` under `prefix` into fresh tensors, then load_module_state.
void read_module(torch::serialize::InputArchive& ar, const std::string& prefix, torch::nn::Module& m,
                 const std::string& what) {
  NamedTensors got;
  for (const auto& [name, t] : module_state(m)) {
    torch::Tensor v;
    if (!ar.try_read(prefix + name, v)) throw Error(what + ": missing tensor '" + prefix + name + "'");
    got.emplace_back(name, v);
  }
  load_module_state(m, got, what + " '" + prefix + "'");
}

std::vector<int64_t> read_ints(torch::serialize::InputArchive& ar, const std::string& key, const std::string& what) {
  torch::Tensor t;
  if (!ar.try_read(key, t) || t.scalar_type() != torch::kInt64 || t.dim() != 1)
    throw Error(what + ": missing or malformed '" + key + "' (not an SAC learner checkpoint?)");
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

void write_ints(torch::serialize::OutputArchive& ar, const std::string& key, const std::vector<int64_t>& v) {
  ar.write(key, torch::tensor(v, torch::kInt64));
}

// Adam's state must match the parameter shapes it is attached to (a file whose networks match
// but whose optimiser state does not is corrupt).
void check_adam(torch::optim::Adam& opt, const std::string& what) {
  for (auto& group : opt.param_groups()) {
    for (auto& p : group.params()) {
      auto it = opt.state().find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      if (it == opt.state().end()) continue;
      auto& s = static_cast<torch::optim::AdamParamState&>(*it->second);
      if (s.exp_avg().sizes() != p.sizes() || s.exp_avg_sq().sizes() != p.sizes())
        throw Error(what + ": optimiser state of shape " + shape_str(s.exp_avg().sizes()) +
                    " for a parameter of shape " + shape_str(p.sizes()));
    }
  }
}

}  // namespace

void SacLearner::Impl::write(torch::serialize::OutputArchive& ar) const {
  write_ints(ar, "meta.format", {kCheckpointFormat});
  write_ints(ar, "meta.dims", {obs_dim, act_dim});
  write_ints(ar, "meta.actor_hidden", opt.actor_hidden);
  write_ints(ar, "meta.critic_hidden", opt.critic_hidden);
  write_ints(ar, "meta.updates", {updates});
  write_module(ar, "actor.", *actor);
  write_module(ar, "critic.", *critic);
  write_module(ar, "target.", *target);
  write_module(ar, "alpha.", *alpha);
  torch::serialize::OutputArchive a, c, l;
  actor_opt->save(a);
  critic_opt->save(c);
  alpha_opt->save(l);
  ar.write("optim.actor", a);
  ar.write("optim.critic", c);
  ar.write("optim.alpha", l);
  ar.write("generator", gen.get_state());
}

void SacLearner::Impl::read(torch::serialize::InputArchive& ar, const std::string& path) {
  const std::string what = "SAC checkpoint '" + path + "'";
  auto format = read_ints(ar, "meta.format", what);
  if (format.size() != 1 || format[0] != kCheckpointFormat)
    throw Error(what + ": format " + shape_str(format) + ", this build reads [" + std::to_string(kCheckpointFormat) +
                "]");
  auto expect = [&](const char* key, const std::vector<int64_t>& mine, const char* label) {
    auto theirs = read_ints(ar, key, what);
    if (theirs != mine)
      throw Error(what + ": " + label + " " + shape_str(theirs) + " does not match this learner's " + shape_str(mine));
  };
  expect("meta.dims", {obs_dim, act_dim}, "[obs_dim, act_dim]");
  expect("meta.actor_hidden", opt.actor_hidden, "actor_hidden");
  expect("meta.critic_hidden", opt.critic_hidden, "critic_hidden");
  auto upd = read_ints(ar, "meta.updates", what);
  if (upd.size() != 1 || upd[0] < 0) throw Error(what + ": malformed 'meta.updates'");
  read_module(ar, "actor.", *actor, what);
  read_module(ar, "critic.", *critic, what);
  read_module(ar, "target.", *target, what);
  read_module(ar, "alpha.", *alpha, what);
  const std::pair<const char*, torch::optim::Adam*> opts[] = {
      {"optim.actor", actor_opt.get()}, {"optim.critic", critic_opt.get()}, {"optim.alpha", alpha_opt.get()}};
  for (const auto& [key, o] : opts) {
    torch::serialize::InputArchive sub;
    if (!ar.try_read(key, sub)) throw Error(what + ": missing '" + key + "'");
    o->load(sub);
    check_adam(*o, what + " '" + key + "'");
  }
  torch::Tensor g;
  if (!ar.try_read("generator", g)) throw Error(what + ": missing 'generator'");
  gen.set_state(g);
  updates = upd[0];
}

SacLearner::SacLearner(const envs::Space& observation_space, const envs::Space& action_space, SacOptions options)
    : impl_(std::make_unique<Impl>(observation_space, action_space, options)) {}

SacLearner::~SacLearner() = default;

SacUpdateResult SacLearner::update(const SacBatch& batch) {
  Impl& I = *impl_;
  const int64_t B = batch.obs.defined() && batch.obs.dim() >= 1 ? batch.obs.size(0) : 0;
  if (B == 0) throw Error("SAC batch: 'obs' must be a non-empty float32 [B, " + std::to_string(I.obs_dim) + "]");
  check_dims(batch.obs, "obs", B, I.obs_dim);
  check_dims(batch.action, "action", B, I.act_dim);
  check_dims(batch.reward, "reward", B, -1);
  check_dims(batch.next_obs, "next_obs", B, I.obs_dim);
  check_dims(batch.discount, "discount", B, -1);
  if (batch.weights.defined()) check_dims(batch.weights, "weights", B, -1);

  SacUpdateResult res;
  SacStats& st = res.stats;
  torch::Tensor alpha = I.alpha->log_alpha.detach().exp();  // [1]

  torch::Tensor y;
  {
    torch::NoGradGuard ng;
    auto [next_a, next_logp] = I.actor->sample(batch.next_obs, I.gen);
    auto [t1, t2] = I.target->forward(batch.next_obs, next_a);
    y = batch.reward + batch.discount * (torch::min(t1, t2) - alpha * next_logp);
  }
  auto [q1, q2] = I.critic->forward(batch.obs, batch.action);
  torch::Tensor d1 = q1 - y, d2 = q2 - y;
  torch::Tensor l1, l2;
  if (batch.weights.defined()) {
    l1 = (batch.weights * d1 * d1).mean();
    l2 = (batch.weights * d2 * d2).mean();
  } else {
    l1 = (d1 * d1).mean();
    l2 = (d2 * d2).mean();
  }
  I.critic_opt->zero_grad();
  (l1 + l2).backward();
  if (after_backward_) after_backward_(*I.critic);
  I.critic_opt->step();
  ++I.updates;

  st.q1_loss = l1.item<double>();
  st.q2_loss = l2.item<double>();
  st.q1_mean = q1.detach().mean().item<double>();
  st.q2_mean = q2.detach().mean().item<double>();
  st.target_mean = y.mean().item<double>();
  res.td_abs = ((d1.detach().abs() + d2.detach().abs()) * 0.5).contiguous();

  if (I.updates % I.opt.target_frequency == 0) {
    torch::NoGradGuard ng;
    auto src = I.critic->parameters();
    auto dst = I.target->parameters();
    for (size_t i = 0; i < src.size(); ++i) dst[i].mul_(1.0 - I.opt.tau).add_(src[i], I.opt.tau);
  }

  if (I.updates % I.opt.policy_frequency == 0) {
    auto [a, logp] = I.actor->sample(batch.obs, I.gen);
    torch::Tensor actor_loss;
    {
      // The critics are only a function here: no weight gradients for them.
      struct FrozenCritic {
        Impl& impl;
        explicit FrozenCritic(Impl& i) : impl(i) { impl.set_critic_requires_grad(false); }
        ~FrozenCritic() { impl.set_critic_requires_grad(true); }
      } frozen(I);
      auto [p1, p2] = I.critic->forward(batch.obs, a);
      actor_loss = (alpha * logp - torch::min(p1, p2)).mean();
      I.actor_opt->zero_grad();
      actor_loss.backward();
    }
    if (after_backward_) after_backward_(*I.actor);
    I.actor_opt->step();
    st.actor_loss = actor_loss.item<double>();
    torch::Tensor logp_d = logp.detach();
    st.entropy = -logp_d.mean().item<double>();
    if (I.opt.autotune) {
      torch::Tensor alpha_loss = (-I.alpha->log_alpha.exp() * (logp_d + I.target_entropy)).mean();
      I.alpha_opt->zero_grad();
      alpha_loss.backward();
      if (after_backward_) after_backward_(*I.alpha);
      I.alpha_opt->step();
      st.alpha_loss = alpha_loss.item<double>();
    }
  }
  st.alpha = this->alpha();
  st.updates = I.updates;
  return res;
}

namespace {
torch::Tensor as_batch(const torch::Tensor& obs, int64_t obs_dim, bool* single) {
  *single = obs.dim() == 1;
  torch::Tensor x = *single ? obs.unsqueeze(0) : obs;
  if (x.dim() != 2 || x.size(1) != obs_dim || x.scalar_type() != torch::kFloat32)
    throw Error("SAC: observations must be float32 [B, " + std::to_string(obs_dim) + "] or [" +
                std::to_string(obs_dim) + "], got " + shape_str(obs.sizes()));
  return x;
}
}  // namespace

torch::Tensor SacLearner::deterministic_action(const torch::Tensor& obs) {
  bool single = false;
  torch::Tensor x = as_batch(obs, impl_->obs_dim, &single);
  torch::NoGradGuard ng;
  torch::Tensor a = impl_->actor->deterministic(x);
  return single ? a.squeeze(0) : a;
}

torch::Tensor SacLearner::sample_action(const torch::Tensor& obs) {
  bool single = false;
  torch::Tensor x = as_batch(obs, impl_->obs_dim, &single);
  torch::NoGradGuard ng;
  torch::Tensor a = impl_->actor->sample(x, impl_->gen).first;
  return single ? a.squeeze(0) : a;
}

NamedTensors SacLearner::named_state() const {
  NamedTensors out = module_state(*impl_->actor);
  for (auto& [name, t] : out) t = t.detach().clone();
  return out;
}

void SacLearner::load_named_state(const NamedTensors& state) {
  load_module_state(*impl_->actor, state, "SAC actor weights");
}

void SacLearner::save(const std::string& path) const {
  torch::serialize::OutputArchive ar;
  impl_->write(ar);
  save_archive_atomically(ar, path, "SAC checkpoint '" + path + "'");
}

void SacLearner::load(const std::string& path) {
  const std::string what = "SAC checkpoint '" + path + "'";
  torch::serialize::InputArchive ar;
  load_archive(ar, path, what);
  auto fresh = std::make_unique<Impl>(impl_->obs_space, impl_->act_space, impl_->opt);
  try {
    fresh->read(ar, path);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {  // c10::Error from the unpickler
    throw Error(what + ": unreadable or corrupt: " + first_line(e.what()));
  }
  impl_ = std::move(fresh);
}

torch::Tensor SacLearner::generator_state() const { return impl_->gen.get_state(); }

double SacLearner::alpha() const { return std::exp(impl_->alpha->log_alpha.item<double>()); }
int64_t SacLearner::updates() const { return impl_->updates; }
int64_t SacLearner::obs_dim() const { return impl_->obs_dim; }
int64_t SacLearner::act_dim() const { return impl_->act_dim; }
double SacLearner::target_entropy() const { return impl_->target_entropy; }
const SacOptions& SacLearner::options() const { return impl_->opt; }
torch::nn::Module& SacLearner::actor_module() { return *impl_->actor; }
torch::nn::Module& SacLearner::critic_module() { return *impl_->critic; }
torch::nn::Module& SacLearner::target_critic_module() { return *impl_->target; }
torch::nn::Module& SacLearner::alpha_module() { return *impl_->alpha; }

// ---------------------------------------------------------------------------------------------
// SacTrainer

namespace {

// Uniform replay ring of one-step transitions, float32 rows in flat arrays. Invariant: rows
// [0, size) hold data; `pos` is the next row written (oldest overwritten first once full).
class UniformReplay {
 public:
  UniformReplay(int64_t capacity, int64_t obs_dim, int64_t act_dim)
      : cap_(capacity), od_(obs_dim), ad_(act_dim), obs_(capacity * obs_dim), next_(capacity * obs_dim),
        act_(capacity * act_dim), rew_(capacity), disc_(capacity) {}

  void add(const float* obs, const float* act, float reward, const float* next_obs, float discount) {
    std::memcpy(&obs_[pos_ * od_], obs, od_ * sizeof(float));
    std::memcpy(&next_[pos_ * od_], next_obs, od_ * sizeof(float));
    std::memcpy(&act_[pos_ * ad_], act, ad_ * sizeof(float));
    rew_[pos_] = reward;
    disc_[pos_] = discount;
    pos_ = (pos_ + 1) % cap_;
    if (size_ < cap_) ++size_;
  }

  int64_t size() const { return size_; }

  // Fills the batch tensors (allocated once by the caller) with rows drawn uniformly.
  void sample(std::mt19937_64& rng, SacBatch& b) {
    const int64_t n = b.obs.size(0);
    std::uniform_int_distribution<int64_t> pick(0, size_ - 1);
    float* o = b.obs.data_ptr<float>();
    float* no = b.next_obs.data_ptr<float>();
    float* a = b.action.data_ptr<float>();
    float* r = b.reward.data_ptr<float>();
    float* d = b.discount.data_ptr<float>();
    for (int64_t k = 0; k < n; ++k) {
      int64_t i = pick(rng);
      std::memcpy(o + k * od_, &obs_[i * od_], od_ * sizeof(float));
      std::memcpy(no + k * od_, &next_[i * od_], od_ * sizeof(float));
      std::memcpy(a + k * ad_, &act_[i * ad_], ad_ * sizeof(float));
      r[k] = rew_[i];
      d[k] = disc_[i];
    }
  }

 private:
  int64_t cap_, od_, ad_;
  std::vector<float> obs_, next_, act_, rew_, disc_;
  int64_t pos_ = 0, size_ = 0;
};

}  // namespace

struct SacTrainer::Impl {
  Impl(SacTrainerOptions t, SacOptions s) : topt(std::move(t)), sopt(std::move(s)), rng(topt.seed) {
    if (topt.num_envs < 1) throw Error("SacTrainer: num_envs must be >= 1");
    if (topt.buffer_size < sopt.batch_size)
      throw Error("SacTrainer: buffer_size " + std::to_string(topt.buffer_size) + " is smaller than batch_size " +
                  std::to_string(sopt.batch_size));
    venv = envs::EnvRegistry::global().make_vector(topt.env, topt.num_envs);
    const auto& spec = venv->spec();
    learner = std::make_unique<SacLearner>(spec.observation_space, spec.action_space, sopt);
    replay = std::make_unique<UniformReplay>(topt.buffer_size, learner->obs_dim(), learner->act_dim());
    const int64_t B = sopt.batch_size;
    batch.obs = torch::empty({B, learner->obs_dim()});
    batch.next_obs = torch::empty({B, learner->obs_dim()});
    batch.action = torch::empty({B, learner->act_dim()});
    batch.reward = torch::empty({B});
    batch.discount = torch::empty({B});
  }

  SacTrainerOptions topt;
  SacOptions sopt;
  std::mt19937_64 rng;
  std::unique_ptr<envs::VectorEnv> venv;
  std::unique_ptr<SacLearner> learner;
  std::unique_ptr<UniformReplay> replay;
  SacBatch batch;
};

SacTrainer::SacTrainer(SacTrainerOptions trainer_options, SacOptions sac_options)
    : impl_(std::make_unique<Impl>(std::move(trainer_options), std::move(sac_options))) {}

SacTrainer::~SacTrainer() = default;

SacLearner& SacTrainer::learner() { return *impl_->learner; }

double SacTrainer::evaluate(int episodes, uint64_t seed) {
  SacLearner& L = *impl_->learner;
  auto env = envs::EnvRegistry::global().make(impl_->topt.env);
  torch::Tensor obs = torch::empty({L.obs_dim()});
  torch::Tensor act = torch::empty({L.act_dim()});
  double total = 0;
  for (int e = 0; e < episodes; ++e) {
    env->reset(seed + e, obs.data_ptr<float>());
    double ret = 0;
    for (;;) {
      act.copy_(L.deterministic_action(obs));
      envs::StepResult r = env->step(act.data_ptr<float>(), obs.data_ptr<float>());
      ret += r.reward;
      if (r.terminated || r.truncated) break;
    }
    total += ret;
  }
  return episodes > 0 ? total / episodes : 0.0;
}

std::vector<SacProgress> SacTrainer::run(const std::function<void(const SacProgress&)>& progress) {
  Impl& I = *impl_;
  SacLearner& L = *I.learner;
  envs::VectorEnv& V = *I.venv;
  const int64_t n = static_cast<int64_t>(V.num_envs());
  const int64_t od = L.obs_dim(), ad = L.act_dim();
  const auto& space = V.spec().action_space;
  const float gamma = static_cast<float>(I.sopt.gamma);

  std::vector<SacProgress> curve;
  std::deque<double> recent;  // last 10 training episode returns
  SacStats last;
  torch::Tensor obs = torch::empty({n, od});
  std::vector<float> actions(n * ad);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };

  V.reset(I.topt.seed);
  std::memcpy(obs.data_ptr<float>(), V.observations(), n * od * sizeof(float));
  int64_t steps = 0, next_eval = I.topt.eval_every;
  while (steps < I.topt.total_env_steps) {
    if (steps < I.sopt.learning_starts) {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < ad; ++j)
          actions[i * ad + j] = static_cast<float>(space.low[j] + (space.high[j] - space.low[j]) * unit(I.rng));
    } else {
      torch::Tensor a = L.sample_action(obs).contiguous();
      std::memcpy(actions.data(), a.data_ptr<float>(), n * ad * sizeof(float));
    }
    V.step(actions.data());
    const float* next = V.observations_as<float>();
    const float* final_obs = V.final_observations_as<float>();
    const float* o = obs.data_ptr<float>();
    for (int64_t i = 0; i < n; ++i) {
      const bool term = V.terminated()[i], trunc = V.truncated()[i];
      const float* nx = (term || trunc) ? final_obs + i * od : next + i * od;
      I.replay->add(o + i * od, &actions[i * ad], V.rewards()[i], nx, term ? 0.0f : gamma);
      if (term || trunc) {
        recent.push_back(V.episode_returns()[i]);
        if (recent.size() > 10) recent.pop_front();
      }
    }
    std::memcpy(obs.data_ptr<float>(), next, n * od * sizeof(float));
    steps += n;

    if (steps >= I.sopt.learning_starts && I.replay->size() >= I.sopt.batch_size) {
      for (int64_t u = 0; u < I.topt.updates_per_step; ++u) {
        I.replay->sample(I.rng, I.batch);
        last = L.update(I.batch).stats;
      }
    }

    if (I.topt.eval_every > 0 && (steps >= next_eval || steps >= I.topt.total_env_steps)) {
      next_eval += I.topt.eval_every;
      SacProgress p;
      p.env_steps = steps;
      p.updates = L.updates();
      p.eval_return = evaluate(I.topt.eval_episodes, I.topt.seed + 1000003);
      p.seconds = seconds();
      double sum = 0;
      for (double r : recent) sum += r;
      p.train_return = recent.empty() ? 0.0 : sum / recent.size();
      p.last = last;
      curve.push_back(p);
      if (progress) progress(p);
      if (p.eval_return >= I.topt.stop_at_eval_return) break;
    }
  }
  return curve;
}

}  // namespace orchard::learner
