// API conformance checks for an environment (`orchard env check NAME`), also run by every env's
// tests.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "orchard/envs/env.h"
#include "orchard/envs/rng.h"

namespace orchard::envs {

struct CheckReport {
  std::vector<std::string> passed;    // one line per check that passed
  std::vector<std::string> failures;  // one line per failure, naming the check and what happened
  std::vector<std::string> notes;     // observations that are not failures
  bool ok() const { return failures.empty(); }
};

struct CheckOptions {
  int64_t steps = 2000;  // random-action steps for the range/NaN checks
  uint64_t seed = 0;
};

// Runs, on envs made by `make` (each call must return a fresh env with the same options):
//  spaces            observation space is a non-empty Box; action space is valid
//  reset             the first observation lies in the observation space, no NaN/Inf
//  random steps      `steps` random actions: observations in the space, finite rewards,
//                    auto-reset after terminated/truncated, episodes never exceed the time limit
//  done protocol     step() after the end of an episode throws EnvError; reset() recovers
//  invalid action    a Discrete/MultiDiscrete action outside the space throws EnvError
//  determinism       same seed + same actions -> identical observations, rewards and flags
//  snapshot/restore  (when supported) restoring a mid-episode snapshot replays identically
CheckReport check_env(const std::function<std::unique_ptr<Env>()>& make, const CheckOptions& options = {});

// Writes one uniformly random action of `space` into `out` (space.nbytes() bytes). Box bounds
// that are infinite are sampled from a standard normal.
void sample_action(const Space& space, Rng& rng, void* out);

// NaN/Inf in an observation buffer of `space`: empty when finite, else "element i is NaN".
std::string non_finite(const Space& space, const void* obs);

}  // namespace orchard::envs
