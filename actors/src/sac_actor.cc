#include "orchard/actors/sac_actor.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <exception>
#include <random>
#include <stdexcept>

#include "orchard/actors/weights.h"
#include "orchard/core/error.h"
#include "orchard/core/wire.h"
#include "orchard/envs/registry.h"
#include "orchard/replay/assemblers.h"

namespace orchard::actors {

std::string sac_model_description(int64_t obs_dim, int64_t act_dim, const std::vector<int64_t>& actor_hidden) {
  std::string s = "SacActor obs[" + std::to_string(obs_dim) + "] act[" + std::to_string(act_dim) + "] hidden[";
  for (size_t i = 0; i < actor_hidden.size(); ++i) s += (i ? "," : "") + std::to_string(actor_hidden[i]);
  return s + "]";
}

struct SacActor::Impl {
  SacActorOptions opts;
  std::unique_ptr<envs::VectorEnv> venv;
  std::unique_ptr<learner::SacLearner> policy;
  std::unique_ptr<replay::NStepAssembler> assembler;
  std::unique_ptr<replay::ReplayWriter> writer;
  std::unique_ptr<WeightsSubscriber> weights;
  SacActorStats stats;
  std::deque<float> returns;  // last 100 episode returns
  std::mt19937_64 rng;        // warm-up actions
  int64_t obs_dim = 0, act_dim = 0;
  std::vector<float> low, high;            // action Box bounds
  std::vector<float> obs_before, next_obs;  // [n, obs_dim]
  std::vector<float> actions;               // [n, act_dim], as stepped
  torch::Tensor obs_tensor;                 // a view of obs_before
  uint32_t steps_in_batch = 0;              // vector steps since the last batch went out

  // Takes the newest weights from the learner, if any arrived (bad ones are counted, never thrown).
  void poll_weights() {
    if (!weights) return;
    weights->poll([this](const NamedTensors& t) { policy->load_named_state(t); });
    stats.weights_version = weights->version();
    stats.learner_finished = weights->learner_finished();
    stats.weights_refused = weights->refused();
    stats.last_refusal = weights->last_refusal();
  }

  // Appends the transitions emitted since the last batch (if any) as one writer batch.
  void send_batch() {
    steps_in_batch = 0;
    if (assembler->size() == 0) return;
    const auto k = static_cast<uint32_t>(assembler->size());
    writer->append(assembler->columns(), k, nullptr, stats.weights_version);  // throws: output kept
    stats.transitions += k;
    assembler->clear();
  }

  void record_return(float r) {
    returns.push_back(r);
    if (returns.size() > 100) returns.pop_front();
    double sum = 0;
    for (float x : returns) sum += x;
    stats.mean_return = sum / static_cast<double>(returns.size());
    ++stats.episodes;
  }
};

SacActor::SacActor(SacActorOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.opts = std::move(options);
  const SacActorOptions& o = s.opts;
  if (o.num_envs < 1) throw Error("SacActor: num_envs must be >= 1, got " + std::to_string(o.num_envs));
  if (o.n_step < 1) throw Error("SacActor: n_step must be >= 1, got " + std::to_string(o.n_step));
  if (!(o.gamma >= 0.0 && o.gamma <= 1.0))
    throw Error("SacActor: gamma must be in [0, 1], got " + std::to_string(o.gamma));
  if (o.steps_per_batch < 1) throw Error("SacActor: steps_per_batch must be >= 1, got 0");
  if (o.random_steps < 0)
    throw Error("SacActor: random_steps must be >= 0, got " + std::to_string(o.random_steps));

  s.venv = envs::EnvRegistry::global().make_vector(o.env, static_cast<size_t>(o.num_envs), o.env_options);
  const auto& spec = s.venv->spec();
  const envs::Space& os = spec.observation_space;
  const envs::Space& as = spec.action_space;
  if (os.kind != envs::SpaceKind::kBox || os.dtype != core::DType::kFloat32) {
    throw Error("SacActor: env '" + spec.name + "' has " + core::dtype_name(os.dtype) + " observations (" +
                os.to_string() + "); the SAC actor streams float32 Box observations");
  }
  if (as.kind != envs::SpaceKind::kBox || as.dtype != core::DType::kFloat32) {
    throw Error("SacActor: env '" + spec.name + "' has action space " + as.to_string() +
                "; SAC needs a bounded float32 Box action space");
  }
  learner::SacOptions so = o.sac;
  so.seed = o.seed;
  try {
    s.policy = std::make_unique<learner::SacLearner>(os, as, so);
  } catch (const Error& e) {  // e.g. unbounded Box: name the env too
    throw Error("SacActor: env '" + spec.name + "': " + e.what());
  }
  s.obs_dim = s.policy->obs_dim();
  s.act_dim = s.policy->act_dim();
  s.low.resize(static_cast<size_t>(s.act_dim));
  s.high.resize(s.low.size());
  for (size_t d = 0; d < s.low.size(); ++d) {
    s.low[d] = static_cast<float>(as.low[d]);
    s.high[d] = static_cast<float>(as.high[d]);
  }
  s.rng.seed(o.seed);

  replay::NStepOptions no;
  no.num_envs = static_cast<size_t>(o.num_envs);
  no.n = o.n_step;
  no.gamma = o.gamma;
  no.layout.obs_shape = {s.obs_dim};
  no.layout.action_dtype = core::DType::kFloat32;
  no.layout.action_shape = {s.act_dim};
  try {
    s.assembler = std::make_unique<replay::NStepAssembler>(no);
  } catch (const std::invalid_argument& e) {
    throw Error(std::string("SacActor: ") + e.what());
  }
  replay::ReplayWriterOptions wo = o.writer;
  wo.kind = replay::ItemKind::kTransition;
  // While the rate limiter holds an append, the weights are still taken in: a finished learner
  // ends the wait at once (nothing will read the batch), and the next steps use the newest policy.
  wo.interrupt = [&s, user_interrupt = o.writer.interrupt] {
    s.poll_weights();
    return s.stats.learner_finished || (user_interrupt && user_interrupt());
  };
  s.writer = std::make_unique<replay::ReplayWriter>(wo);
  if (!o.weights_endpoint.empty()) {
    s.weights = std::make_unique<WeightsSubscriber>(o.weights_endpoint, o.model_description, o.weights_client_keys,
                                                   o.weights_server_key);
  }
  const size_t n = static_cast<size_t>(o.num_envs);
  s.obs_before.resize(n * static_cast<size_t>(s.obs_dim));
  s.next_obs.resize(s.obs_before.size());
  s.actions.resize(n * static_cast<size_t>(s.act_dim));
  s.obs_tensor = torch::from_blob(s.obs_before.data(), {static_cast<int64_t>(n), s.obs_dim}, torch::kFloat32);
  s.venv->reset(o.seed);
}

SacActor::~SacActor() = default;

void SacActor::run(int64_t vector_steps) {
  Impl& s = *impl_;
  const size_t n = static_cast<size_t>(s.opts.num_envs);
  const size_t od = static_cast<size_t>(s.obs_dim), ad = static_cast<size_t>(s.act_dim);
  const size_t obs_bytes = od * sizeof(float);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int64_t step = 0; step < vector_steps; ++step) {
    s.poll_weights();
    std::memcpy(s.obs_before.data(), s.venv->observations(), n * obs_bytes);
    if (s.stats.env_steps < static_cast<uint64_t>(s.opts.random_steps)) {
      for (size_t i = 0; i < n; ++i)
        for (size_t d = 0; d < ad; ++d)
          s.actions[i * ad + d] =
              static_cast<float>(s.low[d] + (static_cast<double>(s.high[d]) - s.low[d]) * unit(s.rng));
    } else {
      torch::NoGradGuard no_grad;
      torch::Tensor a = s.policy->sample_action(s.obs_tensor).to(torch::kFloat32).contiguous();
      std::memcpy(s.actions.data(), a.data_ptr<float>(), n * ad * sizeof(float));
      // tanh * scale + bias lies in the Box up to rounding; step (and store) exactly in-bounds values.
      for (size_t i = 0; i < n; ++i)
        for (size_t d = 0; d < ad; ++d) {
          float& x = s.actions[i * ad + d];
          x = std::min(std::max(x, s.low[d]), s.high[d]);
        }
    }
    s.venv->step(s.actions.data());
    // next_obs: the new observation, or the final one where an episode ended (auto-reset).
    std::memcpy(s.next_obs.data(), s.venv->observations(), n * obs_bytes);
    const uint8_t* term = s.venv->terminated();
    const uint8_t* trunc = s.venv->truncated();
    for (size_t i = 0; i < n; ++i) {
      if (term[i] || trunc[i]) {
        std::memcpy(s.next_obs.data() + i * od, s.venv->final_observations_as<float>() + i * od, obs_bytes);
        s.record_return(s.venv->episode_returns()[i]);
      }
    }
    s.assembler->push_all(s.obs_before.data(), s.actions.data(), s.venv->rewards(), term, trunc, s.next_obs.data());
    s.stats.env_steps += n;
    if (++s.steps_in_batch >= s.opts.steps_per_batch) s.send_batch();
    s.writer->poll();
  }
}

void SacActor::flush(int timeout_ms) {
  impl_->send_batch();
  impl_->writer->flush(timeout_ms);
}

void SacActor::poll_weights() { impl_->poll_weights(); }

void SacActor::finish(int timeout_ms) {
  Impl& s = *impl_;
  for (size_t i = 0; i < static_cast<size_t>(s.opts.num_envs); ++i) s.assembler->truncate(i);
  flush(timeout_ms);
}

const SacActorStats& SacActor::stats() const { return impl_->stats; }

learner::SacLearner& SacActor::policy() { return *impl_->policy; }

std::vector<core::TensorSpec> SacActor::transition_signature() const {
  const Impl& s = *impl_;
  return {{"obs", core::DType::kFloat32, {s.obs_dim}},
          {"action", core::DType::kFloat32, {s.act_dim}},
          {"reward", core::DType::kFloat32, {}},
          {"discount", core::DType::kFloat32, {}},
          {"next_obs", core::DType::kFloat32, {s.obs_dim}}};
}

}  // namespace orchard::actors
