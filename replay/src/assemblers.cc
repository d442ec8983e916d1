#include "orchard/replay/assemblers.h"

#include <cstring>
#include <stdexcept>

namespace orchard::replay {
namespace {

template <class T>
void append(std::vector<T>& dst, const T* src, size_t n) {
  dst.insert(dst.end(), src, src + n);
}

core::Shape with_leading(std::initializer_list<int64_t> leading, const std::vector<int64_t>& rest) {
  std::vector<int64_t> dims(leading);
  dims.insert(dims.end(), rest.begin(), rest.end());
  return core::Shape::from(dims);
}

[[noreturn]] void unknown_column(const std::string& name, const char* allowed) {
  throw std::invalid_argument("unknown column '" + name + "' (allowed: " + allowed + ")");
}

void check_env(size_t env, size_t num_envs) {
  if (env >= num_envs) {
    throw std::invalid_argument("env " + std::to_string(env) + " is out of range (num_envs " +
                                std::to_string(num_envs) + ")");
  }
}

}  // namespace

void StepLayout::validate() const {
  if (action_dtype != core::DType::kInt64 && action_dtype != core::DType::kFloat32) {
    throw std::invalid_argument(std::string("action dtype must be int64 or float32, got ") +
                                core::dtype_name(action_dtype));
  }
  for (int64_t d : obs_shape)
    if (d < 0) throw std::invalid_argument("negative dimension in obs_shape");
  for (int64_t d : action_shape)
    if (d < 0) throw std::invalid_argument("negative dimension in action_shape");
  if (obs_shape.size() + 2 > static_cast<size_t>(core::kMaxRank) ||
      action_shape.size() + 2 > static_cast<size_t>(core::kMaxRank)) {
    throw std::invalid_argument("obs_shape/action_shape rank too large");
  }
}

size_t StepLayout::obs_elements() const {
  size_t n = 1;
  for (int64_t d : obs_shape) n *= static_cast<size_t>(d);
  return n;
}

size_t StepLayout::action_bytes() const {
  size_t n = core::dtype_size(action_dtype);
  for (int64_t d : action_shape) n *= static_cast<size_t>(d);
  return n;
}

// ---------------------------------------------------------------------------------------------
// NStepAssembler

NStepAssembler::NStepAssembler(NStepOptions options) : options_(std::move(options)) {
  if (options_.num_envs == 0) throw std::invalid_argument("NStepAssembler: num_envs must be >= 1");
  if (options_.n == 0) throw std::invalid_argument("NStepAssembler: n must be >= 1");
  if (!(options_.gamma >= 0 && options_.gamma <= 1)) {
    throw std::invalid_argument("NStepAssembler: gamma must be in [0, 1]");
  }
  options_.layout.validate();
  obs_elems_ = options_.layout.obs_elements();
  action_bytes_ = options_.layout.action_bytes();
  gamma_pow_.resize(options_.n + 1);
  gamma_pow_[0] = 1.0;
  for (size_t k = 1; k <= options_.n; ++k) gamma_pow_[k] = gamma_pow_[k - 1] * options_.gamma;
  envs_.resize(options_.num_envs);
  for (auto& e : envs_) {
    e.obs.resize(options_.n * obs_elems_);
    e.action.resize(options_.n * action_bytes_);
    e.reward.resize(options_.n);
    e.last_next_obs.resize(obs_elems_);
  }
}

void NStepAssembler::emit_oldest(size_t env, Env& e, size_t m, bool terminated, bool truncated,
                                 const float* next_obs) {
  const size_t n = options_.n;
  const size_t slot = e.head;
  double ret = 0;
  for (size_t k = 0; k < m; ++k) ret += gamma_pow_[k] * e.reward[(slot + k) % n];
  append(out_.obs, e.obs.data() + slot * obs_elems_, obs_elems_);
  append(out_.action, e.action.data() + slot * action_bytes_, action_bytes_);
  out_.reward.push_back(static_cast<float>(ret));
  out_.discount.push_back(terminated ? 0.0f : static_cast<float>(gamma_pow_[m]));
  out_.terminated.push_back(terminated ? 1 : 0);
  out_.truncated.push_back(truncated ? 1 : 0);
  append(out_.next_obs, next_obs, obs_elems_);
  out_.steps.push_back(static_cast<uint32_t>(m));
  out_.env.push_back(static_cast<uint32_t>(env));
  e.head = (e.head + 1) % n;
  --e.count;
}

void NStepAssembler::push(size_t env, const float* obs, const void* action, float reward, bool terminated,
                          bool truncated, const float* next_obs) {
  check_env(env, envs_.size());
  Env& e = envs_[env];
  const size_t n = options_.n;
  const size_t slot = (e.head + e.count) % n;
  std::memcpy(e.obs.data() + slot * obs_elems_, obs, obs_elems_ * sizeof(float));
  std::memcpy(e.action.data() + slot * action_bytes_, action, action_bytes_);
  e.reward[slot] = reward;
  ++e.count;
  if (terminated || truncated) {
    // Every pending step ends its window here.
    while (e.count > 0) emit_oldest(env, e, e.count, terminated, !terminated, next_obs);
    e.head = 0;
    return;
  }
  std::memcpy(e.last_next_obs.data(), next_obs, obs_elems_ * sizeof(float));
  if (e.count == n) emit_oldest(env, e, n, false, false, next_obs);
}

void NStepAssembler::push_all(const float* obs, const void* action, const float* reward, const uint8_t* terminated,
                              const uint8_t* truncated, const float* next_obs) {
  const auto* a = static_cast<const uint8_t*>(action);
  for (size_t i = 0; i < envs_.size(); ++i) {
    push(i, obs + i * obs_elems_, a + i * action_bytes_, reward[i], terminated[i] != 0, truncated[i] != 0,
         next_obs + i * obs_elems_);
  }
}

void NStepAssembler::truncate(size_t env) {
  check_env(env, envs_.size());
  Env& e = envs_[env];
  while (e.count > 0) emit_oldest(env, e, e.count, false, true, e.last_next_obs.data());
  e.head = 0;
}

void NStepAssembler::reset(size_t env) {
  check_env(env, envs_.size());
  envs_[env].count = 0;
  envs_[env].head = 0;
}

size_t NStepAssembler::pending(size_t env) const {
  check_env(env, envs_.size());
  return envs_[env].count;
}

void NStepAssembler::clear() {
  out_.obs.clear();
  out_.action.clear();
  out_.reward.clear();
  out_.discount.clear();
  out_.terminated.clear();
  out_.truncated.clear();
  out_.next_obs.clear();
  out_.steps.clear();
  out_.env.clear();
}

std::vector<core::TensorView> NStepAssembler::columns(const std::vector<std::string>& names) const {
  const int64_t k = static_cast<int64_t>(out_.size());
  const auto& L = options_.layout;
  std::vector<core::TensorView> views;
  views.reserve(names.size());
  for (const auto& name : names) {
    if (name == "obs") {
      views.push_back({"obs", core::DType::kFloat32, with_leading({k}, L.obs_shape), out_.obs.data()});
    } else if (name == "action") {
      views.push_back({"action", L.action_dtype, with_leading({k}, L.action_shape), out_.action.data()});
    } else if (name == "reward") {
      views.push_back({"reward", core::DType::kFloat32, core::Shape{k}, out_.reward.data()});
    } else if (name == "discount") {
      views.push_back({"discount", core::DType::kFloat32, core::Shape{k}, out_.discount.data()});
    } else if (name == "terminated") {
      views.push_back({"terminated", core::DType::kBool, core::Shape{k}, out_.terminated.data()});
    } else if (name == "truncated") {
      views.push_back({"truncated", core::DType::kBool, core::Shape{k}, out_.truncated.data()});
    } else if (name == "next_obs") {
      views.push_back({"next_obs", core::DType::kFloat32, with_leading({k}, L.obs_shape), out_.next_obs.data()});
    } else {
      unknown_column(name, "obs, action, reward, discount, terminated, truncated, next_obs");
    }
  }
  return views;
}

// ---------------------------------------------------------------------------------------------
// SequenceAssembler

SequenceAssembler::SequenceAssembler(SequenceOptions options) : options_(std::move(options)) {
  if (options_.num_envs == 0) throw std::invalid_argument("SequenceAssembler: num_envs must be >= 1");
  if (options_.length == 0) throw std::invalid_argument("SequenceAssembler: length must be >= 1");
  if (options_.overlap >= options_.length) {
    throw std::invalid_argument("SequenceAssembler: overlap (" + std::to_string(options_.overlap) +
                                ") must be smaller than length (" + std::to_string(options_.length) + ")");
  }
  options_.layout.validate();
  obs_elems_ = options_.layout.obs_elements();
  action_bytes_ = options_.layout.action_bytes();
  const size_t T = options_.length;
  envs_.resize(options_.num_envs);
  for (auto& e : envs_) {
    e.obs.resize(T * obs_elems_);
    e.action.resize(T * action_bytes_);
    e.reward.resize(T);
    e.behaviour_logp.resize(T);
    e.value.resize(T);
    e.terminated.resize(T);
    e.truncated.resize(T);
  }
}

void SequenceAssembler::emit(size_t env, Env& e, const float* next_obs) {
  const size_t T = options_.length;
  append(out_.obs, e.obs.data(), T * obs_elems_);
  append(out_.action, e.action.data(), T * action_bytes_);
  append(out_.reward, e.reward.data(), T);
  append(out_.terminated, e.terminated.data(), T);
  append(out_.truncated, e.truncated.data(), T);
  append(out_.behaviour_logp, e.behaviour_logp.data(), T);
  append(out_.value, e.value.data(), T);
  append(out_.bootstrap_obs, next_obs, obs_elems_);
  out_.env.push_back(static_cast<uint32_t>(env));
  ++out_.count;
  // Keep the last `overlap` steps as the start of the next segment.
  const size_t keep = options_.overlap, from = T - keep;
  if (keep > 0) {
    std::memmove(e.obs.data(), e.obs.data() + from * obs_elems_, keep * obs_elems_ * sizeof(float));
    std::memmove(e.action.data(), e.action.data() + from * action_bytes_, keep * action_bytes_);
    std::memmove(e.reward.data(), e.reward.data() + from, keep * sizeof(float));
    std::memmove(e.behaviour_logp.data(), e.behaviour_logp.data() + from, keep * sizeof(float));
    std::memmove(e.value.data(), e.value.data() + from, keep * sizeof(float));
    std::memmove(e.terminated.data(), e.terminated.data() + from, keep);
    std::memmove(e.truncated.data(), e.truncated.data() + from, keep);
  }
  e.count = keep;
}

void SequenceAssembler::push(size_t env, const float* obs, const void* action, float reward, bool terminated,
                             bool truncated, float behaviour_logp, float value, const float* next_obs) {
  check_env(env, envs_.size());
  Env& e = envs_[env];
  const size_t t = e.count;
  std::memcpy(e.obs.data() + t * obs_elems_, obs, obs_elems_ * sizeof(float));
  std::memcpy(e.action.data() + t * action_bytes_, action, action_bytes_);
  e.reward[t] = reward;
  e.terminated[t] = terminated ? 1 : 0;
  e.truncated[t] = truncated ? 1 : 0;
  e.behaviour_logp[t] = behaviour_logp;
  e.value[t] = value;
  e.count = t + 1;
  if (e.count == options_.length) emit(env, e, next_obs);
}

void SequenceAssembler::push_all(const float* obs, const void* action, const float* reward,
                                 const uint8_t* terminated, const uint8_t* truncated, const float* behaviour_logp,
                                 const float* value, const float* next_obs) {
  const auto* a = static_cast<const uint8_t*>(action);
  for (size_t i = 0; i < envs_.size(); ++i) {
    push(i, obs + i * obs_elems_, a + i * action_bytes_, reward[i], terminated[i] != 0, truncated[i] != 0,
         behaviour_logp[i], value[i], next_obs + i * obs_elems_);
  }
}

void SequenceAssembler::reset(size_t env) {
  check_env(env, envs_.size());
  envs_[env].count = 0;
}

size_t SequenceAssembler::pending(size_t env) const {
  check_env(env, envs_.size());
  return envs_[env].count;
}

void SequenceAssembler::clear() {
  out_.obs.clear();
  out_.action.clear();
  out_.reward.clear();
  out_.terminated.clear();
  out_.truncated.clear();
  out_.behaviour_logp.clear();
  out_.value.clear();
  out_.bootstrap_obs.clear();
  out_.env.clear();
  out_.count = 0;
}

std::vector<core::TensorView> SequenceAssembler::columns(const std::vector<std::string>& names) const {
  const int64_t k = static_cast<int64_t>(out_.count);
  const int64_t T = options_.length;
  const auto& L = options_.layout;
  std::vector<core::TensorView> views;
  views.reserve(names.size());
  for (const auto& name : names) {
    if (name == "obs") {
      views.push_back({"obs", core::DType::kFloat32, with_leading({k, T}, L.obs_shape), out_.obs.data()});
    } else if (name == "action") {
      views.push_back({"action", L.action_dtype, with_leading({k, T}, L.action_shape), out_.action.data()});
    } else if (name == "reward") {
      views.push_back({"reward", core::DType::kFloat32, core::Shape{k, T}, out_.reward.data()});
    } else if (name == "terminated") {
      views.push_back({"terminated", core::DType::kBool, core::Shape{k, T}, out_.terminated.data()});
    } else if (name == "truncated") {
      views.push_back({"truncated", core::DType::kBool, core::Shape{k, T}, out_.truncated.data()});
    } else if (name == "behaviour_logp") {
      views.push_back({"behaviour_logp", core::DType::kFloat32, core::Shape{k, T}, out_.behaviour_logp.data()});
    } else if (name == "value") {
      views.push_back({"value", core::DType::kFloat32, core::Shape{k, T}, out_.value.data()});
    } else if (name == "bootstrap_obs") {
      views.push_back(
          {"bootstrap_obs", core::DType::kFloat32, with_leading({k}, L.obs_shape), out_.bootstrap_obs.data()});
    } else {
      unknown_column(name, "obs, action, reward, terminated, truncated, behaviour_logp, value, bootstrap_obs");
    }
  }
  return views;
}

}  // namespace orchard::replay
