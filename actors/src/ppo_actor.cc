#include "orchard/actors/ppo_actor.h"

#include <torch/torch.h>

#include <cerrno>
#include <cstring>

#include "orchard/actors/weights.h"
#include "orchard/core/clock.h"
#include "orchard/envs/registry.h"
#include "orchard/replay/assemblers.h"

namespace orchard::actors {

struct PpoActor::Impl {
  PpoActorOptions opts;
  std::unique_ptr<envs::VectorEnv> venv;
  std::shared_ptr<learner::ActorCritic> model;
  std::unique_ptr<replay::SequenceAssembler> assembler;
  std::unique_ptr<replay::ReplayWriter> writer;
  std::unique_ptr<WeightsSubscriber> weights;
  PpoActorStats stats;
  std::deque<float> returns;  // last 100 episode returns
  int64_t obs_dim = 0;
  size_t act_bytes = 0;
  bool box_actions = false;
  std::vector<float> obs_before, next_obs, logp, value;
  std::vector<uint8_t> actions, clipped;  // clipped: Box actions as the env gets them
  bool uint8_obs = false;  // MinAtar-style grids: converted to float32 as they are copied

  // Copies `count` observation elements from the env's buffer as float32.
  void copy_obs(float* dst, const void* src, size_t count) const {
    if (!uint8_obs) {
      std::memcpy(dst, src, count * sizeof(float));
      return;
    }
    const uint8_t* u = static_cast<const uint8_t*>(src);
    for (size_t i = 0; i < count; ++i) dst[i] = static_cast<float>(u[i]);
  }

  // Takes the newest weights from the learner, if any arrived.
  void poll_weights() {
    if (!weights) return;
    weights->poll([this](const NamedTensors& t) { model->load_named_state(t); });
    stats.weights_version = weights->version();
    stats.learner_finished = weights->learner_finished();
    stats.weights_refused = weights->refused();
    stats.last_refusal = weights->last_refusal();
  }
};

PpoActor::PpoActor(PpoActorOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.opts = std::move(options);
  torch::manual_seed(s.opts.seed);
  s.venv = envs::EnvRegistry::global().make_vector(s.opts.env, static_cast<size_t>(s.opts.num_envs), s.opts.env_options);
  const auto& spec = s.venv->spec();
  s.model = std::make_shared<learner::ActorCritic>(spec.observation_space, spec.action_space, s.opts.model);
  if (spec.observation_space.dtype != core::DType::kFloat32 && spec.observation_space.dtype != core::DType::kUInt8) {
    throw Error(spec.name + ": the PPO actor takes float32 or uint8 observations (streamed as float32); this env's are " +
                core::dtype_name(spec.observation_space.dtype));
  }
  s.uint8_obs = spec.observation_space.dtype == core::DType::kUInt8;
  s.obs_dim = spec.observation_space.numel();
  s.box_actions = spec.action_space.kind == envs::SpaceKind::kBox;
  s.act_bytes = spec.action_space.nbytes();
  replay::SequenceOptions so;
  so.num_envs = static_cast<size_t>(s.opts.num_envs);
  so.length = s.opts.segment_length;
  so.layout.obs_shape = {s.obs_dim};
  so.layout.action_dtype = s.box_actions ? core::DType::kFloat32 : core::DType::kInt64;
  if (spec.action_space.kind != envs::SpaceKind::kDiscrete) so.layout.action_shape = {spec.action_space.numel()};
  s.assembler = std::make_unique<replay::SequenceAssembler>(so);
  // While a full queue holds an append, the weights are still taken in: a finished learner ends
  // the wait at once (nothing will read the batch), and the next steps use the newest policy.
  auto user_interrupt = s.opts.writer.interrupt;
  replay::ReplayWriterOptions wo = s.opts.writer;
  wo.interrupt = [&s, user_interrupt] {
    s.poll_weights();
    return s.stats.learner_finished || (user_interrupt && user_interrupt());
  };
  s.writer = std::make_unique<replay::ReplayWriter>(wo);
  if (!s.opts.weights_endpoint.empty()) {
    s.weights = std::make_unique<WeightsSubscriber>(s.opts.weights_endpoint, s.opts.model_description,
                                                   s.opts.weights_client_keys, s.opts.weights_server_key);
  }
  const size_t n = static_cast<size_t>(s.opts.num_envs);
  s.obs_before.resize(n * static_cast<size_t>(s.obs_dim));
  s.next_obs.resize(s.obs_before.size());
  s.logp.resize(n);
  s.value.resize(n);
  s.actions.resize(n * s.act_bytes);
  s.clipped.resize(s.actions.size());
  s.venv->reset(s.opts.seed);
}

PpoActor::~PpoActor() = default;

void PpoActor::run(int64_t vector_steps) {
  Impl& s = *impl_;
  const size_t n = static_cast<size_t>(s.opts.num_envs);
  const size_t obs_elems = static_cast<size_t>(s.obs_dim);
  const size_t env_obs_bytes = obs_elems * (s.uint8_obs ? 1 : sizeof(float));
  const auto& as = s.venv->spec().action_space;
  for (int64_t step = 0; step < vector_steps; ++step) {
    s.poll_weights();
    s.copy_obs(s.obs_before.data(), s.venv->observations(), n * obs_elems);
    {
      torch::NoGradGuard no_grad;
      auto obs = torch::from_blob(s.obs_before.data(), {static_cast<int64_t>(n), s.obs_dim}, torch::kFloat32);
      auto act = s.model->act(obs);
      torch::Tensor a = act.action.contiguous();
      if (s.box_actions) {
        // Gaussian samples leave the Box; the env gets them clipped (CleanRL's ClipAction), the
        // segment keeps the sampled value its log-prob belongs to.
        a = a.to(torch::kFloat32);
      }
      std::memcpy(s.actions.data(), a.data_ptr(), n * s.act_bytes);
      std::memcpy(s.logp.data(), act.logp.to(torch::kFloat32).contiguous().data_ptr<float>(), n * sizeof(float));
      std::memcpy(s.value.data(), act.value.to(torch::kFloat32).contiguous().data_ptr<float>(), n * sizeof(float));
    }
    if (s.box_actions) {
      std::memcpy(s.clipped.data(), s.actions.data(), s.actions.size());
      float* f = reinterpret_cast<float*>(s.clipped.data());
      for (size_t i = 0; i < n; ++i)
        for (int64_t d = 0; d < as.numel(); ++d) {
          float& x = f[i * static_cast<size_t>(as.numel()) + static_cast<size_t>(d)];
          x = std::min(std::max(x, static_cast<float>(as.low[static_cast<size_t>(d)])),
                       static_cast<float>(as.high[static_cast<size_t>(d)]));
        }
      s.venv->step(s.clipped.data());
    } else {
      s.venv->step(s.actions.data());
    }
    // next_obs: the new observation, or the final one where an episode ended (auto-reset).
    s.copy_obs(s.next_obs.data(), s.venv->observations(), n * obs_elems);
    for (size_t i = 0; i < n; ++i) {
      if (s.venv->terminated()[i] || s.venv->truncated()[i]) {
        s.copy_obs(s.next_obs.data() + i * obs_elems,
                   static_cast<const uint8_t*>(s.venv->final_observations()) + i * env_obs_bytes, obs_elems);
        s.returns.push_back(s.venv->episode_returns()[i]);
        if (s.returns.size() > 100) s.returns.pop_front();
        ++s.stats.episodes;
      }
    }
    s.assembler->push_all(s.obs_before.data(), s.actions.data(), s.venv->rewards(), s.venv->terminated(),
                          s.venv->truncated(), s.logp.data(), s.value.data(), s.next_obs.data());
    s.stats.env_steps += n;
    if (s.assembler->size() > 0) {
      s.writer->append(s.assembler->columns(), static_cast<uint32_t>(s.assembler->size()), nullptr,
                       s.stats.weights_version);
      s.stats.segments += s.assembler->size();
      s.assembler->clear();
    }
    s.writer->poll();
  }
  double sum = 0;
  for (float r : s.returns) sum += r;
  s.stats.mean_return = s.returns.empty() ? 0 : sum / static_cast<double>(s.returns.size());
}

bool PpoActor::wait_for_weights(int timeout_ms) {
  Impl& s = *impl_;
  if (!s.weights) return false;
  s.weights->wait_first([&s](const NamedTensors& t) { s.model->load_named_state(t); }, timeout_ms);
  s.poll_weights();
  return s.stats.weights_version > 0;
}

void PpoActor::flush(int timeout_ms) { impl_->writer->flush(timeout_ms); }
void PpoActor::poll_weights() { impl_->poll_weights(); }

const PpoActorStats& PpoActor::stats() const { return impl_->stats; }

learner::ActorCritic& PpoActor::model() { return *impl_->model; }

std::vector<core::TensorSpec> PpoActor::segment_signature() const {
  const Impl& s = *impl_;
  const int64_t T = s.opts.segment_length;
  const auto& as = s.venv->spec().action_space;
  std::vector<int64_t> act_shape = {T};
  if (as.kind != envs::SpaceKind::kDiscrete) act_shape.push_back(as.numel());
  return {{"obs", core::DType::kFloat32, {T, s.obs_dim}},
          {"action", s.box_actions ? core::DType::kFloat32 : core::DType::kInt64, act_shape},
          {"reward", core::DType::kFloat32, {T}},
          {"terminated", core::DType::kBool, {T}},
          {"truncated", core::DType::kBool, {T}},
          {"behaviour_logp", core::DType::kFloat32, {T}},
          {"value", core::DType::kFloat32, {T}},
          {"bootstrap_obs", core::DType::kFloat32, {s.obs_dim}}};
}

}  // namespace orchard::actors
