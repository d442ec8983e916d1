// Writer-side item assemblers: turn per-step experience from N lock-stepped environments into
// replay items. Pure computation (no sockets, no locks); the output is laid out as replay
// columns ready for ReplayWriter::append().
//
// Layout (k = items emitted, shapes per item after the leading k):
//   obs, next_obs, bootstrap_obs   float32, obs_shape (e.g. [obs_dim])
//   action                         action_dtype (int64 or float32), action_shape ([] for a discrete
//                                  action, [action_dim] for a continuous one)
//   reward, discount, behaviour_logp, value   float32, []
//   terminated, truncated          bool (one byte, 0 or 1), []
// Sequence columns carry an extra [T] axis after k: obs [k, T, *obs_shape], reward [k, T], ...
//
// Steps follow Gymnasium: push() gets (obs_t, a_t, r_t, terminated_t, truncated_t, next_obs),
// where next_obs is the observation after a_t. At an episode end it must be the FINAL observation
// (what an auto-resetting vector env reports separately), not the reset one; the next push() for
// that env then starts the new episode with the reset observation. Not thread-safe; allocation
// happens only while output buffers grow to their working size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "orchard/core/tensor.h"

namespace orchard::replay {

// What one step looks like. obs_shape and action_shape exclude any leading dimension.
struct StepLayout {
  std::vector<int64_t> obs_shape;                 // float32 observation, e.g. {4}
  core::DType action_dtype = core::DType::kInt64; // kInt64 or kFloat32
  std::vector<int64_t> action_shape;              // {} for a discrete action, {d} for continuous

  // Throws std::invalid_argument for another action dtype or negative dims.
  void validate() const;
  size_t obs_elements() const;
  size_t action_bytes() const;
};

// ---------------------------------------------------------------------------------------------
// n-step transitions

struct NStepOptions {
  size_t num_envs = 1;
  uint32_t n = 1;       // >= 1
  double gamma = 0.99;  // in [0, 1]
  StepLayout layout;
};

// Emitted transitions, columns packed [k, ...] (see the file comment). Buffers are reused after
// clear(): they only grow.
struct TransitionBatch {
  std::vector<float> obs;
  std::vector<uint8_t> action;     // raw bytes of action_dtype
  std::vector<float> reward;       // R = sum_{k<m} gamma^k r_{t+k}
  std::vector<float> discount;     // gamma^m * (1 - terminated)
  std::vector<uint8_t> terminated; // the episode terminated within the window
  std::vector<uint8_t> truncated;  // the episode was truncated at the window's end
  std::vector<float> next_obs;     // the observation after the window's last step
  std::vector<uint32_t> steps;     // m: rewards summed (n, or fewer at an episode end)
  std::vector<uint32_t> env;       // the env each transition came from (not a replay column)
  size_t size() const { return reward.size(); }
};

// Per env, keeps the last n steps and emits, for each step t, the transition
//   (obs_t, a_t, R = sum_{k<m} gamma^k r_{t+k}, discount = gamma^m * (1 - terminated), next_obs_{t+m})
// with m = n once n steps followed it, or m < n when the episode ends inside the window: on
// termination discount is 0; on truncation it is gamma^m and next_obs is the final observation,
// so the learner bootstraps from it. At an episode end every pending step is emitted, so each
// step yields exactly one transition. Transitions appear in emission order: for one env, oldest
// first.
class NStepAssembler {
 public:
  // Throws std::invalid_argument for num_envs 0, n 0, gamma outside [0, 1] or a bad layout.
  explicit NStepAssembler(NStepOptions options);

  // One step of one env. obs and next_obs: obs_elements floats; action: one action of the
  // layout. Appends the transitions it completes to output(). terminated wins over truncated.
  void push(size_t env, const float* obs, const void* action, float reward, bool terminated, bool truncated,
            const float* next_obs);
  // One step of every env: obs/next_obs [num_envs, *obs_shape], action [num_envs, *action_shape],
  // reward/terminated/truncated [num_envs].
  void push_all(const float* obs, const void* action, const float* reward, const uint8_t* terminated,
                const uint8_t* truncated, const float* next_obs);

  // Ends env's episode as truncated after its last step (e.g. the actor is stopping): emits the
  // pending steps bootstrapped from the last next_obs. Nothing pending: no-op.
  void truncate(size_t env);
  // Drops env's pending steps (its episode was abandoned).
  void reset(size_t env);
  size_t pending(size_t env) const;

  const TransitionBatch& output() const { return out_; }
  size_t size() const { return out_.size(); }
  void clear();
  // Views of the output's columns, in the order named (obs, action, reward, discount, terminated,
  // truncated, next_obs), each [size(), ...], for ReplayWriter::append(). Valid until the next
  // push/clear. Throws std::invalid_argument for another name.
  std::vector<core::TensorView> columns(const std::vector<std::string>& names = {"obs", "action", "reward",
                                                                                  "discount", "next_obs"}) const;

  const NStepOptions& options() const { return options_; }

 private:
  struct Env {
    std::vector<float> obs;       // ring of n observations
    std::vector<uint8_t> action;  // ring of n actions
    std::vector<float> reward;    // ring of n rewards
    std::vector<float> last_next_obs;
    size_t head = 0;              // oldest slot
    size_t count = 0;             // steps held, < n between pushes
  };
  // Emits the transition of the oldest pending step of `e` over m steps, and drops that step.
  void emit_oldest(size_t env, Env& e, size_t m, bool terminated, bool truncated, const float* next_obs);

  NStepOptions options_;
  size_t obs_elems_, action_bytes_;
  std::vector<double> gamma_pow_;  // gamma^0 .. gamma^n
  std::vector<Env> envs_;
  TransitionBatch out_;
};

// ---------------------------------------------------------------------------------------------
// Fixed-length sequences

struct SequenceOptions {
  size_t num_envs = 1;
  uint32_t length = 20;   // T >= 1
  uint32_t overlap = 0;   // steps shared by consecutive segments of one env, < T
  StepLayout layout;
};

// Emitted segments, columns packed [k, T, ...] (bootstrap_obs [k, *obs_shape]).
struct SequenceBatch {
  std::vector<float> obs;
  std::vector<uint8_t> action;
  std::vector<float> reward;
  std::vector<uint8_t> terminated;
  std::vector<uint8_t> truncated;
  std::vector<float> behaviour_logp;
  std::vector<float> value;
  std::vector<float> bootstrap_obs;  // the observation after the segment's last step
  std::vector<uint32_t> env;         // not a replay column
  size_t count = 0;                  // segments
  size_t size() const { return count; }
};

// Per env, cuts the step stream into segments of T consecutive steps. Segments cross episode
// boundaries: terminated/truncated mark the step that ended an episode, and the step after it is
// the new episode's first. Consecutive segments of one env share `overlap` steps (segment k+1
// starts at step (k+1) * (T - overlap)). bootstrap_obs is next_obs of the segment's last step
// (the final observation when that step ended an episode). Steps of a partial segment are
// emitted only once T are there; a truncation in the middle of a segment keeps no final
// observation (learners bootstrap it from `value` or treat it as an end).
class SequenceAssembler {
 public:
  // Throws std::invalid_argument for num_envs 0, length 0, overlap >= length or a bad layout.
  explicit SequenceAssembler(SequenceOptions options);

  void push(size_t env, const float* obs, const void* action, float reward, bool terminated, bool truncated,
            float behaviour_logp, float value, const float* next_obs);
  // Every env at once (arrays [num_envs, ...] as in NStepAssembler::push_all).
  void push_all(const float* obs, const void* action, const float* reward, const uint8_t* terminated,
                const uint8_t* truncated, const float* behaviour_logp, const float* value, const float* next_obs);

  void reset(size_t env);  // drops env's partial segment
  size_t pending(size_t env) const;

  const SequenceBatch& output() const { return out_; }
  size_t size() const { return out_.count; }
  void clear();
  // Views [size(), T, ...] ([size(), *obs_shape] for bootstrap_obs) in the order named: obs,
  // action, reward, terminated, truncated, behaviour_logp, value, bootstrap_obs.
  std::vector<core::TensorView> columns(const std::vector<std::string>& names = {
                                            "obs", "action", "reward", "terminated", "truncated",
                                            "behaviour_logp", "value", "bootstrap_obs"}) const;

  const SequenceOptions& options() const { return options_; }

 private:
  struct Env {
    std::vector<float> obs;  // [T, obs] steps 0..count-1
    std::vector<uint8_t> action;
    std::vector<float> reward, behaviour_logp, value;
    std::vector<uint8_t> terminated, truncated;
    size_t count = 0;
  };
  void emit(size_t env, Env& e, const float* next_obs);

  SequenceOptions options_;
  size_t obs_elems_, action_bytes_;
  std::vector<Env> envs_;
  SequenceBatch out_;
};

}  // namespace orchard::replay
