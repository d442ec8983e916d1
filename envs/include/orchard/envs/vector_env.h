// N environments stepped in lock-step, writing one batch buffer.
//
// Auto-reset is "same step" (Gymnasium <= 0.29, Stable-Baselines3): when env i's episode ends in
// step(), rewards()/terminated()/truncated() describe that last step, final_observations() row i
// holds the episode's last observation (bootstrap from it on truncation), episode_returns() and
// episode_lengths() row i hold the finished episode's statistics, and observations() row i
// already holds the first observation of the next episode (reset without reseeding, so the
// env's RNG stream continues).
//
// Single-threaded by default; with num_threads > 1 the envs are split into contiguous chunks
// stepped by a fixed pool of worker threads (worth it for expensive envs only). No allocation
// per step in either mode.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "orchard/envs/env.h"

namespace orchard::envs {

class VectorEnv {
 public:
  // All envs must have the same spaces. Throws EnvError otherwise or when envs is empty.
  explicit VectorEnv(std::vector<std::unique_ptr<Env>> envs, size_t num_threads = 1);
  // The same, with the step loop compiled for the concrete env type E (a `final` class): calls
  // to E's do_step/do_reset are direct, not virtual. Every env must be an E.
  template <class E>
  static std::unique_ptr<VectorEnv> typed(std::vector<std::unique_ptr<Env>> envs, size_t num_threads = 1) {
    auto v = std::make_unique<VectorEnv>(std::move(envs), num_threads);
    for (auto& e : v->envs_) {
      if (!dynamic_cast<E*>(e.get())) throw EnvError("VectorEnv::typed: env " + e->name() + " has another type");
    }
    v->step_fn_ = &VectorEnv::step_range_as<E>;
    return v;
  }
  virtual ~VectorEnv();
  VectorEnv(const VectorEnv&) = delete;
  VectorEnv& operator=(const VectorEnv&) = delete;

  size_t num_envs() const { return envs_.size(); }
  size_t num_threads() const { return workers_.size() + 1; }
  const EnvSpec& spec() const { return envs_[0]->spec(); }
  Env& env(size_t i) { return *envs_[i]; }

  // Resets every env, env i with seed + i, and writes observations().
  void reset(uint64_t seed);
  // `actions`: num_envs() actions back to back (action_space().nbytes() each). Validates all of
  // them first (throws EnvError naming the env index; nothing is stepped then), steps every env,
  // auto-resets finished ones.
  void step(const void* actions);

  const void* observations() const { return obs_.data(); }
  const void* final_observations() const { return final_obs_.data(); }
  const float* rewards() const { return rewards_.data(); }
  const uint8_t* terminated() const { return terminated_.data(); }
  const uint8_t* truncated() const { return truncated_.data(); }
  const float* episode_returns() const { return episode_returns_.data(); }
  const int64_t* episode_lengths() const { return episode_lengths_.data(); }
  template <class T> const T* observations_as() const { return reinterpret_cast<const T*>(obs_.data()); }
  template <class T> const T* final_observations_as() const { return reinterpret_cast<const T*>(final_obs_.data()); }

  uint64_t total_steps() const { return total_steps_; }          // env steps, summed over envs
  uint64_t episodes_finished() const { return episodes_finished_; }

 private:
  void step_range(size_t begin, size_t end) { (this->*step_fn_)(begin, end); }
  void worker_loop(size_t index);
  size_t chunk_of(size_t begin) const;

  // The step loop. E is the static env type: for a `final` E the compiler calls E's overrides
  // directly (devirtualised and inlined) through step_unchecked() and reset().
  template <class E>
  void step_range_as(size_t begin, size_t end) {
    uint64_t finished = 0;
    for (size_t i = begin; i < end; ++i) {
      E& e = static_cast<E&>(*envs_[i]);
      uint8_t* obs = obs_.data() + i * obs_bytes_;
      StepResult r = e.step_unchecked(actions_ + i * act_bytes_, obs);
      rewards_[i] = r.reward;
      terminated_[i] = r.terminated;
      truncated_[i] = r.truncated;
      running_return_[i] += r.reward;
      ++running_length_[i];
      if (r.terminated || r.truncated) {
        std::memcpy(final_obs_.data() + i * obs_bytes_, obs, obs_bytes_);
        episode_returns_[i] = running_return_[i];
        episode_lengths_[i] = running_length_[i];
        running_return_[i] = 0.0f;
        running_length_[i] = 0;
        e.reset(std::nullopt, obs);
        ++finished;
      }
    }
    finished_in_chunk_[chunk_of(begin)] = finished;
  }

  using StepFn = void (VectorEnv::*)(size_t, size_t);
  StepFn step_fn_ = &VectorEnv::step_range_as<Env>;

  std::vector<std::unique_ptr<Env>> envs_;
  size_t obs_bytes_, act_bytes_;
  std::vector<uint8_t> obs_, final_obs_;
  std::vector<float> rewards_, running_return_, episode_returns_;
  std::vector<int64_t> running_length_, episode_lengths_;
  std::vector<uint8_t> terminated_, truncated_;
  const uint8_t* actions_ = nullptr;
  uint64_t total_steps_ = 0;
  uint64_t episodes_finished_ = 0;

  // Thread pool: worker w steps chunk w + 1; the calling thread steps chunk 0.
  std::vector<std::thread> workers_;
  std::vector<std::pair<size_t, size_t>> chunks_;
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  uint64_t generation_ = 0;
  size_t pending_ = 0;
  bool stopping_ = false;
  std::vector<uint64_t> finished_in_chunk_;
  std::vector<std::exception_ptr> chunk_errors_;  // an env that threw on a worker thread
};

}  // namespace orchard::envs
