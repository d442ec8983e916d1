// The environment API: Gymnasium semantics on caller-owned buffers.
//
//   Env& env = ...;
//   std::vector<float> obs(env.observation_space().numel());
//   env.reset(seed, obs.data());
//   int64_t action = 1;
//   StepResult r = env.step(&action, obs.data());   // r.reward, r.terminated, r.truncated
//
// - reset(seed) reseeds the env's RNG; reset(std::nullopt) continues it (Gymnasium).
// - step() validates the action against the action space and that an episode is running, then
//   advances one step and writes the next observation. No allocation per step.
// - Time limits are truncation: after spec().max_episode_steps steps, truncated = true.
// - After terminated or truncated, the next call must be reset(); step() throws EnvError.
// - snapshot()/restore() capture the full state (physics, RNG, step counter) where supported.
//
// An implementation derives from Env, fills an EnvSpec in its constructor, and implements
// do_reset() and do_step() (and optionally do_snapshot()/do_restore()).
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "orchard/core/error.h"
#include "orchard/envs/rng.h"
#include "orchard/envs/space.h"

namespace orchard::envs {

struct StepResult {
  float reward = 0.0f;
  bool terminated = false;  // the MDP reached a terminal state (no bootstrapping)
  bool truncated = false;   // the episode was cut (time limit): bootstrap from the final obs
};

struct EnvSpec {
  std::string name;               // registry name, e.g. "CartPole-v1"
  Space observation_space;
  Space action_space;
  int64_t max_episode_steps = 0;  // 0: no time limit
  std::string reference;          // what the env reproduces (paper, source, version)
};

// Options given as `-o key=value` on the CLI or under `env.options` in a run spec. Typed getters
// parse and range-check; every getter call records the key, so after construction the registry
// can reject keys nobody asked for ("unknown option 'tmperature' (allowed: ...)").
class EnvOptions {
 public:
  EnvOptions() = default;
  // Parses "key=value" strings. Throws EnvError for an entry without '='.
  static EnvOptions parse(const std::vector<std::string>& assignments);
  void set(const std::string& key, const std::string& value) { values_[key] = value; }
  bool has(const std::string& key) const { return values_.count(key) != 0; }

  // `env` names the environment in error messages.
  double get_double(const std::string& env, const std::string& key, double def, double min = -1e300,
                    double max = 1e300) const;
  int64_t get_int(const std::string& env, const std::string& key, int64_t def, int64_t min = INT64_MIN,
                  int64_t max = INT64_MAX) const;
  bool get_bool(const std::string& env, const std::string& key, bool def) const;
  std::string get_string(const std::string& env, const std::string& key, const std::string& def) const;
  std::string get_choice(const std::string& env, const std::string& key, const std::string& def,
                         const std::vector<std::string>& allowed) const;

  // Throws EnvError naming the first key that no getter asked for, and the keys that were.
  void check_all_used(const std::string& env) const;
  const std::map<std::string, std::string>& values() const { return values_; }

 private:
  std::map<std::string, std::string> values_;
  mutable std::set<std::string> asked_;
};

class Env {
 public:
  virtual ~Env() = default;
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  const EnvSpec& spec() const { return spec_; }
  const std::string& name() const { return spec_.name; }
  const Space& observation_space() const { return spec_.observation_space; }
  const Space& action_space() const { return spec_.action_space; }

  // Starts an episode and writes the first observation into `obs`.
  void reset(std::optional<uint64_t> seed, void* obs);
  // The same with Gymnasium-style per-reset options (e.g. CartPole's "low"/"high" bounds of the
  // initial state). They apply to this episode only. Throws EnvError for an option the env does
  // not take or a bad value; nothing is reset then.
  void reset(std::optional<uint64_t> seed, void* obs, const EnvOptions& reset_options);
  // Validates `action` (action_space().nbytes() bytes) and advances one step. Throws EnvError
  // when no episode is running or the action is outside the action space.
  StepResult step(const void* action, void* obs);
  // step() without validation, for callers that validated a whole batch (VectorEnv).
  StepResult step_unchecked(const void* action, void* obs) {
    StepResult r = do_step(action, obs);
    ++elapsed_;
    if (spec_.max_episode_steps > 0 && elapsed_ >= spec_.max_episode_steps && !r.terminated) r.truncated = true;
    if (r.terminated || r.truncated) active_ = false;
    return r;
  }

  int64_t elapsed_steps() const { return elapsed_; }
  bool episode_active() const { return active_; }

  virtual bool supports_snapshot() const { return false; }
  // The full state as bytes. Throws EnvError when unsupported.
  std::vector<uint8_t> snapshot() const;
  // Restores a snapshot taken from an env of the same name and options. Throws EnvError on a
  // snapshot of another env or size.
  void restore(const std::vector<uint8_t>& snapshot);

  // Named scalars about the last step or episode ("energy_cost_eur", ...). Default: none.
  virtual void info(std::vector<std::pair<std::string, double>>* out) const {}

 protected:
  explicit Env(EnvSpec spec) : spec_(std::move(spec)) {}
  EnvSpec& mutable_spec() { return spec_; }

  virtual void do_reset(std::optional<uint64_t> seed, void* obs) = 0;
  // Reads per-reset options with the EnvOptions getters and stages them for the next
  // do_reset(); called before it. The default takes none. Must not change state on error.
  virtual void apply_reset_options(const EnvOptions& options) {}
  virtual StepResult do_step(const void* action, void* obs) = 0;
  // Appends the env's own state; the base class adds the step counter and episode flag.
  virtual void do_snapshot(std::vector<uint8_t>* out) const {}
  // Reads what do_snapshot wrote; `in` is advanced. Return false on a size mismatch.
  virtual bool do_restore(const uint8_t*& in, const uint8_t* end) { return true; }

  // Throws EnvError("<name>: <what>").
  [[noreturn]] void fail(const std::string& what) const;

 private:
  EnvSpec spec_;
  int64_t elapsed_ = 0;
  bool active_ = false;
};

// Snapshot helpers for trivially copyable state.
template <class T>
void put_pod(std::vector<uint8_t>* out, const T& value) {
  static_assert(std::is_trivially_copyable<T>::value, "snapshot state must be trivially copyable");
  const auto* p = reinterpret_cast<const uint8_t*>(&value);
  out->insert(out->end(), p, p + sizeof(T));
}
template <class T>
bool get_pod(const uint8_t*& in, const uint8_t* end, T* value) {
  static_assert(std::is_trivially_copyable<T>::value, "snapshot state must be trivially copyable");
  if (static_cast<size_t>(end - in) < sizeof(T)) return false;
  std::memcpy(value, in, sizeof(T));
  in += sizeof(T);
  return true;
}

// The common snapshot: a trivially copyable state struct followed by the env's Rng.
template <class State>
void put_state(std::vector<uint8_t>* out, const State& state, const Rng& rng) {
  put_pod(out, state);
  put_pod(out, rng.state());
}
template <class State>
bool get_state(const uint8_t*& in, const uint8_t* end, State* state, Rng* rng) {
  Rng::State rs;
  if (!get_pod(in, end, state) || !get_pod(in, end, &rs)) return false;
  rng->set_state(rs);
  return true;
}

}  // namespace orchard::envs
