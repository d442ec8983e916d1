// What the MinAtar games share (after kenjyoung/MinAtar's environment.py): the 10x10 uint8
// observation with the game's channels, the option set, and sticky actions.
#pragma once

#include <cstdint>

#include "orchard/envs/env.h"
#include "orchard/envs/rng.h"

namespace orchard::envs::games {

constexpr int kMinAtarSize = 10;
constexpr int64_t kMinAtarFullActions = 6;  // MinAtar's full set: n, l, u, r, d, f

// The spec of a MinAtar game: observation Box(uint8, [10, 10, channels]), Discrete actions (the
// game's minimal set, or the full 6 with option full_action_space=true), a time limit of
// max_episode_steps (default 10000; 0 = none, as MinAtar).
inline EnvSpec minatar_spec(const char* name, int channels, int64_t minimal_actions, const EnvOptions& o,
                            const char* reference) {
  EnvSpec s;
  s.name = name;
  s.observation_space = Space::box({kMinAtarSize, kMinAtarSize, channels}, 0.0, 1.0, core::DType::kUInt8);
  s.action_space = Space::discrete(o.get_bool(name, "full_action_space", false) ? kMinAtarFullActions : minimal_actions);
  s.max_episode_steps = o.get_int(name, "max_episode_steps", 10000, 0, 1'000'000'000);
  s.reference = reference;
  return s;
}

// Maps the agent's action to MinAtar's full set (through `minimal_to_full` unless the env uses
// the full set) and applies sticky actions: with probability p the previous full action is
// repeated instead. Records the action taken in *last and returns it.
template <class Last>
inline uint8_t sticky_full_action(int64_t action, bool full_action_space, const uint8_t* minimal_to_full, double p,
                                  Rng& rng, Last* last) {
  uint8_t full = full_action_space ? static_cast<uint8_t>(action) : minimal_to_full[action];
  if (p > 0.0 && rng.uniform() < p) full = static_cast<uint8_t>(*last);
  *last = static_cast<Last>(full);
  return full;
}

}  // namespace orchard::envs::games
