#include "orchard/learner/ppo.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>

#include "orchard/envs/registry.h"

namespace orchard::learner {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void check_config(const PpoConfig& c) {
  auto fail = [](const std::string& what) { throw Error("PpoConfig: " + what); };
  if (!(c.learning_rate > 0)) fail("learning_rate must be > 0");
  if (!(c.gamma >= 0 && c.gamma <= 1)) fail("gamma must be in [0, 1]");
  if (!(c.gae_lambda >= 0 && c.gae_lambda <= 1)) fail("gae_lambda must be in [0, 1]");
  if (c.num_minibatches < 1) fail("num_minibatches must be >= 1");
  if (c.update_epochs < 1) fail("update_epochs must be >= 1");
  if (!(c.clip_coef > 0)) fail("clip_coef must be > 0");
  if (c.ent_coef < 0) fail("ent_coef must be >= 0");
  if (c.vf_coef < 0) fail("vf_coef must be >= 0");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// GAE

GaeResult compute_gae(const torch::Tensor& rewards, const torch::Tensor& values, const torch::Tensor& terminated,
                      const torch::Tensor& truncated, const torch::Tensor& final_values, const torch::Tensor& last_value,
                      double gamma, double gae_lambda) {
  torch::NoGradGuard no_grad;
  const int64_t steps = rewards.size(0);
  auto r = rewards.to(torch::kFloat32);
  auto v = values.to(torch::kFloat32);
  auto term = terminated.to(torch::kFloat32);
  auto trunc = truncated.to(torch::kFloat32) * (1.0 - term);  // a termination wins
  auto done = (term + trunc).clamp_max(1.0);
  auto fin = final_values.to(torch::kFloat32);
  auto advantages = torch::zeros_like(v);
  auto last = torch::zeros_like(v[0]);
  for (int64_t t = steps - 1; t >= 0; --t) {
    auto next_value = t + 1 < steps ? v[t + 1] : last_value.to(torch::kFloat32);
    // Bootstrap: V(s_{t+1}) while running, V(final obs) on truncation, 0 on termination.
    auto bootstrap = next_value * (1.0 - done[t]) + fin[t] * trunc[t];
    auto delta = r[t] + gamma * bootstrap - v[t];
    last = delta + gamma * gae_lambda * (1.0 - done[t]) * last;
    advantages[t] = last;
  }
  return {advantages, advantages + v};
}

// ---------------------------------------------------------------------------------------------
// Loss

PpoLoss ppo_loss(const PpoLossInputs& in, const PpoConfig& config) {
  PpoLoss out;
  auto logratio = in.new_logp - in.old_logp;
  auto ratio = logratio.exp();
  const double eps = config.clip_coef;
  auto surrogate = torch::min(ratio * in.advantages, torch::clamp(ratio, 1.0 - eps, 1.0 + eps) * in.advantages);
  if (in.weights.defined()) surrogate = surrogate * in.weights;
  out.pg_loss = -surrogate.mean();

  auto v_unclipped = (in.new_values - in.returns).square();
  if (config.clip_vloss) {
    auto v_clipped = in.old_values + torch::clamp(in.new_values - in.old_values, -eps, eps);
    out.v_loss = 0.5 * torch::max(v_unclipped, (v_clipped - in.returns).square()).mean();
  } else {
    out.v_loss = 0.5 * v_unclipped.mean();
  }
  out.entropy = in.entropy.mean();
  out.loss = out.pg_loss - config.ent_coef * out.entropy + config.vf_coef * out.v_loss;

  torch::NoGradGuard no_grad;
  if (in.kl_stats) {
    out.old_approx_kl = (-logratio).mean().item<double>();
    out.approx_kl = ((ratio - 1.0) - logratio).mean().item<double>();
  }
  out.clipfrac = ((ratio - 1.0).abs() > eps).to(torch::kFloat32).mean().item<double>();
  return out;
}

// ---------------------------------------------------------------------------------------------
// PpoLearner

PpoLearner::PpoLearner(std::shared_ptr<ActorCritic> model, PpoConfig config)
    : model_(std::move(model)),
      config_((check_config(config), config)),
      optimizer_(model_->parameters(), FlatAdam::Options{config.learning_rate, 0.9, 0.999, 1e-5}) {}

namespace {
// 2: Adam state as FlatAdam's two flat moment buffers and step count (1: torch::optim::Adam's).
constexpr int64_t kFormat = 2;
}  // namespace

void PpoLearner::save(const std::string& path) {
  torch::serialize::OutputArchive ar;
  ar.write("orchard.ppo.format", torch::tensor(kFormat));
  for (const auto& [name, tensor] : model_->named_state()) ar.write("model/" + name, tensor);
  optimizer_.save(ar, "optimizer/");
  ar.write("updates", torch::tensor(updates_));
  ar.write("generator", at::detail::getDefaultCPUGenerator().get_state());
  save_archive_atomically(ar, path, "PPO checkpoint '" + path + "'");
}

void PpoLearner::load(const std::string& path) {
  const std::string what = "PPO checkpoint '" + path + "'";
  torch::serialize::InputArchive ar;
  load_archive(ar, path, what);
  std::vector<std::pair<std::string, torch::Tensor>> state, backup;
  torch::Tensor format, updates, generator;
  try {
    ar.read("orchard.ppo.format", format);
    if (format.item<int64_t>() == 1)
      throw Error(what + ": format 1 (per-tensor Adam state, Orchard before the flat optimiser) cannot be resumed "
                         "by this version; start the run afresh");
    if (format.item<int64_t>() != kFormat)
      throw Error(what + ": unknown format " + std::to_string(format.item<int64_t>()));
    for (const auto& [name, tensor] : model_->named_state()) {
      torch::Tensor t;
      ar.read("model/" + name, t);
      state.emplace_back(name, t);
      backup.emplace_back(name, tensor.detach().clone());
    }
    ar.read("updates", updates);
    ar.read("generator", generator);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    throw Error(what + ": not a checkpoint of this model: " + msg.substr(0, msg.find('\n')));
  }
  try {
    model_->load_named_state(state);  // checks every name and shape before copying
  } catch (const Error& e) {
    throw Error(what + ": " + e.what());
  }
  try {
    optimizer_.load(ar, "optimizer/");
  } catch (const std::exception& e) {
    model_->load_named_state(backup);
    std::string msg = e.what();
    throw Error(what + ": optimiser state does not fit this model: " + msg.substr(0, msg.find('\n')));
  }
  updates_ = updates.item<int64_t>();
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  gen.set_state(generator);
}

PpoUpdateStats PpoLearner::update(const Rollout& batch, double remaining) {
  ++updates_;
  PpoUpdateStats stats;
  const int64_t size = batch.obs.size(0);
  if (size % config_.num_minibatches != 0 || size < config_.num_minibatches) {
    throw Error("PpoLearner::update: batch of " + std::to_string(size) + " rows is not divisible into " +
                std::to_string(config_.num_minibatches) + " minibatches (num_minibatches)");
  }
  const int64_t mb = size / config_.num_minibatches;

  stats.learning_rate = config_.learning_rate * (config_.anneal_lr ? std::clamp(remaining, 0.0, 1.0) : 1.0);
  optimizer_.set_lr(stats.learning_rate);

  // The ratio's denominator and the importance weights (see PpoConfig::rho_bar).
  torch::Tensor old_logp = batch.behaviour_logp, weights;
  if (config_.rho_bar > 0) {
    torch::NoGradGuard no_grad;
    old_logp = model_->evaluate(batch.obs, batch.actions).logp;
    auto rho = (old_logp - batch.behaviour_logp).exp();
    weights = rho.clamp_max(config_.rho_bar);
    stats.mean_rho = weights.mean().item<double>();
    stats.rho_clipped_fraction = (rho > config_.rho_bar).to(torch::kFloat32).mean().item<double>();
  }
  {
    torch::NoGradGuard no_grad;
    auto var_y = batch.returns.var().item<double>();
    stats.explained_variance = var_y == 0 ? std::nan("") : 1.0 - (batch.returns - batch.values).var().item<double>() / var_y;
  }

  // The per-row constants side by side, so each minibatch gathers them with one index_select
  // (LibTorch's per-op cost dominates at these sizes): old logp, advantage, value, return, weight.
  std::vector<torch::Tensor> cols = {old_logp, batch.advantages, batch.values, batch.returns};
  if (weights.defined()) cols.push_back(weights);
  for (auto& c : cols) c = c.detach().to(torch::kFloat32).reshape({size});
  const torch::Tensor per_row = torch::stack(cols, 1);

  double pg = 0, vl = 0, ent = 0, cf = 0;
  for (int64_t epoch = 0; epoch < config_.update_epochs && !stats.stopped_early; ++epoch) {
    auto perm = torch::randperm(size, torch::kInt64);
    for (int64_t start = 0; start < size; start += mb) {
      auto idx = perm.slice(0, start, start + mb);
      auto ev = model_->evaluate(batch.obs.index_select(0, idx), batch.actions.index_select(0, idx));
      auto rows = per_row.index_select(0, idx).unbind(1);
      PpoLossInputs in;
      in.new_logp = ev.logp;
      in.old_logp = rows[0];
      in.advantages = rows[1];
      if (config_.norm_adv) in.advantages = (in.advantages - in.advantages.mean()) / (in.advantages.std() + 1e-8);
      in.new_values = ev.value;
      in.old_values = rows[2];
      in.returns = rows[3];
      in.entropy = ev.entropy;
      if (weights.defined()) in.weights = rows[4];
      in.kl_stats = start + mb >= size;  // the epoch's last minibatch
      PpoLoss l = ppo_loss(in, config_);

      optimizer_.zero_grad();
      l.loss.backward();
      if (after_backward) after_backward(*model_);
      if (config_.max_grad_norm > 0) optimizer_.clip_grad_norm(config_.max_grad_norm);
      optimizer_.step();

      pg += l.pg_loss.item<double>();
      vl += l.v_loss.item<double>();
      ent += l.entropy.item<double>();
      cf += l.clipfrac;
      stats.approx_kl = l.approx_kl;
      stats.old_approx_kl = l.old_approx_kl;
      ++stats.minibatches;
    }
    if (config_.target_kl > 0) {
      if (mean_across_ranks) stats.approx_kl = mean_across_ranks(stats.approx_kl);
      if (stats.approx_kl > config_.target_kl) stats.stopped_early = true;
    }
  }
  const double n = static_cast<double>(std::max<int64_t>(stats.minibatches, 1));
  stats.pg_loss = pg / n;
  stats.v_loss = vl / n;
  stats.entropy = ent / n;
  stats.clipfrac = cf / n;
  return stats;
}

// ---------------------------------------------------------------------------------------------
// PpoTrainer

PpoTrainer::PpoTrainer(PpoTrainerConfig config) : config_(std::move(config)) {
  if (config_.num_envs < 1) throw Error("PpoTrainer: num_envs must be >= 1");
  if (config_.num_steps < 1) throw Error("PpoTrainer: num_steps must be >= 1");
  if (config_.episode_window < 1) throw Error("PpoTrainer: episode_window must be >= 1");
  torch::manual_seed(config_.seed);
  env_ = envs::EnvRegistry::global().make_vector(config_.env, static_cast<size_t>(config_.num_envs), config_.env_options);
  const auto& spec = env_->spec();
  auto model = std::make_shared<ActorCritic>(spec.observation_space, spec.action_space, config_.model);
  learner_ = std::make_unique<PpoLearner>(std::move(model), config_.ppo);
  action_buffer_.resize(spec.action_space.nbytes() * static_cast<size_t>(config_.num_envs));
  env_->reset(config_.seed);
}

PpoTrainer::~PpoTrainer() = default;

torch::Tensor PpoTrainer::observations_tensor(const void* data) const {
  const auto& space = env_->spec().observation_space;
  auto dtype = space.dtype == core::DType::kUInt8 ? torch::kUInt8 : torch::kFloat32;
  return torch::from_blob(const_cast<void*>(data), {config_.num_envs, space.numel()}, dtype).clone();
}

void PpoTrainer::write_actions(const torch::Tensor& actions) {
  const auto& space = env_->spec().action_space;
  torch::Tensor a;
  if (space.kind == envs::SpaceKind::kBox) {
    // Clip to the bounds, as gymnasium's ClipAction wrapper in CleanRL's continuous PPO.
    const auto n = space.numel();
    auto low = torch::tensor(std::vector<float>(space.low.begin(), space.low.end())).reshape({1, n});
    auto high = torch::tensor(std::vector<float>(space.high.begin(), space.high.end())).reshape({1, n});
    a = torch::max(torch::min(actions.reshape({config_.num_envs, n}), high), low).to(torch::kFloat32).contiguous();
  } else {
    a = actions.to(torch::kInt64).contiguous();
  }
  std::memcpy(action_buffer_.data(), a.data_ptr(), action_buffer_.size());
}

double PpoTrainer::mean_return() const {
  if (recent_returns_.empty()) return 0.0;
  return std::accumulate(recent_returns_.begin(), recent_returns_.end(), 0.0) / recent_returns_.size();
}

PpoIterationStats PpoTrainer::iterate() {
  const int64_t steps = config_.num_steps, n = config_.num_envs;
  ActorCritic& model = learner_->model();
  const int64_t batch = steps * n;
  const int64_t num_iterations = std::max<int64_t>(1, config_.total_timesteps / batch);
  ++iteration_;
  PpoIterationStats out;
  out.iteration = iteration_;

  auto t0 = std::chrono::steady_clock::now();
  std::vector<torch::Tensor> obs, actions, logps, values;
  auto rewards = torch::zeros({steps, n});
  auto terminated = torch::zeros({steps, n});
  auto truncated = torch::zeros({steps, n});
  auto final_values = torch::zeros({steps, n});
  torch::Tensor last_value;
  {
    torch::NoGradGuard no_grad;
    for (int64_t t = 0; t < steps; ++t) {
      auto o = observations_tensor(env_->observations());
      model.update_obs_norm(o);
      ActResult r = model.act(o);
      obs.push_back(o);
      actions.push_back(r.action);
      logps.push_back(r.logp);
      values.push_back(r.value);
      write_actions(r.action);
      env_->step(action_buffer_.data());
      global_step_ += n;

      std::memcpy(rewards[t].data_ptr<float>(), env_->rewards(), sizeof(float) * n);
      bool any_truncated = false;
      for (int64_t i = 0; i < n; ++i) {
        const bool term = env_->terminated()[i] != 0, trunc = env_->truncated()[i] != 0;
        terminated.data_ptr<float>()[t * n + i] = term ? 1.0f : 0.0f;
        truncated.data_ptr<float>()[t * n + i] = trunc ? 1.0f : 0.0f;
        any_truncated |= trunc && !term;
        if (term || trunc) {
          ++episodes_;
          recent_returns_.push_back(env_->episode_returns()[i]);
          if (recent_returns_.size() > config_.episode_window) recent_returns_.pop_front();
        }
      }
      if (any_truncated) final_values[t] = model.value(observations_tensor(env_->final_observations()));
    }
    last_value = model.value(observations_tensor(env_->observations()));
  }
  out.collect_seconds = seconds_since(t0);

  t0 = std::chrono::steady_clock::now();
  auto values_t = torch::stack(values);
  GaeResult gae = compute_gae(rewards, values_t, terminated, truncated, final_values, last_value, config_.ppo.gamma,
                              config_.ppo.gae_lambda);
  Rollout rollout;
  rollout.obs = torch::cat(obs);
  rollout.actions = torch::cat(actions);
  rollout.behaviour_logp = torch::cat(logps);
  rollout.values = values_t.reshape({batch});
  rollout.advantages = gae.advantages.reshape({batch});
  rollout.returns = gae.returns.reshape({batch});
  const double remaining = 1.0 - static_cast<double>(iteration_ - 1) / static_cast<double>(num_iterations);
  out.update = learner_->update(rollout, remaining);
  out.update_seconds = seconds_since(t0);

  out.global_step = global_step_;
  out.episodes = episodes_;
  out.mean_return = mean_return();
  return out;
}

PpoIterationStats PpoTrainer::train(const std::function<bool(const PpoIterationStats&)>& stop) {
  PpoIterationStats s;
  while (global_step_ < config_.total_timesteps) {
    s = iterate();
    if (stop && stop(s)) break;
  }
  return s;
}

}  // namespace orchard::learner
