#include "orchard/envs/vector_env.h"

#include <cstring>
#include <utility>

namespace orchard::envs {

VectorEnv::VectorEnv(std::vector<std::unique_ptr<Env>> envs, size_t num_threads) : envs_(std::move(envs)) {
  if (envs_.empty()) throw EnvError("VectorEnv: needs at least one env");
  const EnvSpec& s = envs_[0]->spec();
  for (size_t i = 1; i < envs_.size(); ++i) {
    const EnvSpec& o = envs_[i]->spec();
    if (o.observation_space.to_string() != s.observation_space.to_string() ||
        o.action_space.to_string() != s.action_space.to_string()) {
      throw EnvError("VectorEnv: env " + std::to_string(i) + " (" + o.name + ") has other spaces than env 0 (" +
                     s.name + ")");
    }
  }
  const size_t n = envs_.size();
  obs_bytes_ = s.observation_space.nbytes();
  act_bytes_ = s.action_space.nbytes();
  obs_.assign(n * obs_bytes_, 0);
  final_obs_.assign(n * obs_bytes_, 0);
  rewards_.assign(n, 0.0f);
  running_return_.assign(n, 0.0f);
  episode_returns_.assign(n, 0.0f);
  running_length_.assign(n, 0);
  episode_lengths_.assign(n, 0);
  terminated_.assign(n, 0);
  truncated_.assign(n, 0);

  num_threads = std::max<size_t>(1, std::min(num_threads, n));
  size_t per = n / num_threads, extra = n % num_threads, begin = 0;
  for (size_t t = 0; t < num_threads; ++t) {
    size_t len = per + (t < extra ? 1 : 0);
    chunks_.emplace_back(begin, begin + len);
    begin += len;
  }
  finished_in_chunk_.assign(num_threads, 0);
  chunk_errors_.assign(num_threads, nullptr);
  for (size_t t = 1; t < num_threads; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

VectorEnv::~VectorEnv() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  start_cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void VectorEnv::reset(uint64_t seed) {
  for (size_t i = 0; i < envs_.size(); ++i) {
    envs_[i]->reset(seed + i, obs_.data() + i * obs_bytes_);
    running_return_[i] = 0.0f;
    running_length_[i] = 0;
    rewards_[i] = 0.0f;
    terminated_[i] = truncated_[i] = 0;
  }
}

size_t VectorEnv::chunk_of(size_t begin) const {
  size_t chunk = 0;
  while (chunk + 1 < chunks_.size() && chunks_[chunk].first != begin) ++chunk;
  return chunk;
}

void VectorEnv::step(const void* actions) {
  const auto* a = static_cast<const uint8_t*>(actions);
  const Space& as = spec().action_space;
  // Validate the whole batch before stepping anything.
  if (as.kind == SpaceKind::kDiscrete) {
    for (size_t i = 0; i < envs_.size(); ++i) {
      int64_t v;
      std::memcpy(&v, a + i * act_bytes_, sizeof(v));
      if (v < 0 || v >= as.n) throw EnvError(spec().name + ": env " + std::to_string(i) + ": " + as.violation(&v));
    }
  } else if (as.kind == SpaceKind::kMultiDiscrete) {
    for (size_t i = 0; i < envs_.size(); ++i) {
      std::string why = as.violation(a + i * act_bytes_);
      if (!why.empty()) throw EnvError(spec().name + ": env " + std::to_string(i) + ": action " + why);
    }
  } else {
    const size_t count = static_cast<size_t>(as.numel()) * envs_.size();
    if (as.dtype == core::DType::kFloat32) {
      const float* f = reinterpret_cast<const float*>(a);
      for (size_t k = 0; k < count; ++k) {
        if (f[k] != f[k]) {
          throw EnvError(spec().name + ": env " + std::to_string(k / static_cast<size_t>(as.numel())) +
                         ": action element " + std::to_string(k % static_cast<size_t>(as.numel())) + " is NaN");
        }
      }
    }
  }
  actions_ = a;
  if (workers_.empty()) {
    step_range(0, envs_.size());
    episodes_finished_ += finished_in_chunk_[0];
  } else {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++generation_;
      pending_ = workers_.size();
    }
    start_cv_.notify_all();
    std::exception_ptr mine;
    try {
      step_range(chunks_[0].first, chunks_[0].second);
    } catch (...) {
      mine = std::current_exception();
    }
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [this] { return pending_ == 0; });
    for (auto f : finished_in_chunk_) episodes_finished_ += f;
    if (mine) std::rethrow_exception(mine);
    for (auto& e : chunk_errors_) {
      if (e) std::rethrow_exception(std::exchange(e, nullptr));
    }
  }
  total_steps_ += envs_.size();
}

void VectorEnv::worker_loop(size_t index) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
    }
    try {
      step_range(chunks_[index].first, chunks_[index].second);
    } catch (...) {
      chunk_errors_[index] = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
}

}  // namespace orchard::envs
