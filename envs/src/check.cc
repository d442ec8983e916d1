#include "orchard/envs/check.h"

#include <cmath>
#include <cstring>
#include <sstream>

namespace orchard::envs {

void sample_action(const Space& space, Rng& rng, void* out) {
  if (space.kind == SpaceKind::kDiscrete) {
    int64_t a = static_cast<int64_t>(rng.below(static_cast<uint64_t>(space.n)));
    std::memcpy(out, &a, sizeof(a));
    return;
  }
  if (space.kind == SpaceKind::kMultiDiscrete) {
    for (size_t i = 0; i < space.nvec.size(); ++i) {
      int64_t a = static_cast<int64_t>(rng.below(static_cast<uint64_t>(space.nvec[i])));
      std::memcpy(static_cast<char*>(out) + i * 8, &a, sizeof(a));
    }
    return;
  }
  const size_t n = static_cast<size_t>(space.numel());
  for (size_t i = 0; i < n; ++i) {
    double lo = space.low[i], hi = space.high[i];
    double v = (std::isfinite(lo) && std::isfinite(hi)) ? rng.uniform(lo, hi) : rng.normal();
    if (space.dtype == core::DType::kFloat32) {
      float f = static_cast<float>(v);
      if (std::isfinite(hi) && f > hi) f = static_cast<float>(hi);
      std::memcpy(static_cast<char*>(out) + i * 4, &f, 4);
    } else if (space.dtype == core::DType::kFloat64) {
      std::memcpy(static_cast<char*>(out) + i * 8, &v, 8);
    } else {
      throw EnvError("sample_action: unsupported Box dtype " + std::string(core::dtype_name(space.dtype)));
    }
  }
}

std::string non_finite(const Space& space, const void* obs) {
  const size_t n = static_cast<size_t>(space.numel());
  if (space.dtype == core::DType::kFloat32) {
    const float* f = static_cast<const float*>(obs);
    for (size_t i = 0; i < n; ++i) {
      if (std::isnan(f[i])) return "element " + std::to_string(i) + " is NaN";
      if (std::isinf(f[i])) return "element " + std::to_string(i) + " is infinite";
    }
  } else if (space.dtype == core::DType::kFloat64) {
    const double* f = static_cast<const double*>(obs);
    for (size_t i = 0; i < n; ++i) {
      if (std::isnan(f[i])) return "element " + std::to_string(i) + " is NaN";
      if (std::isinf(f[i])) return "element " + std::to_string(i) + " is infinite";
    }
  }
  return "";
}

namespace {

struct Trace {
  std::vector<uint8_t> bytes;  // observations, rewards and flags, step by step
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes.insert(bytes.end(), b, b + n);
  }
};

// Runs `steps` steps of pre-generated actions from reset(seed), auto-resetting (without seed).
Trace run(Env& env, uint64_t seed, const std::vector<uint8_t>& actions, size_t act_bytes, int64_t steps) {
  Trace t;
  std::vector<uint8_t> obs(env.observation_space().nbytes());
  env.reset(seed, obs.data());
  t.add(obs.data(), obs.size());
  for (int64_t i = 0; i < steps; ++i) {
    StepResult r = env.step(actions.data() + static_cast<size_t>(i) * act_bytes, obs.data());
    t.add(obs.data(), obs.size());
    t.add(&r.reward, sizeof(r.reward));
    uint8_t flags = static_cast<uint8_t>(r.terminated) | static_cast<uint8_t>(r.truncated << 1);
    t.add(&flags, 1);
    if (r.terminated || r.truncated) env.reset(std::nullopt, obs.data());
  }
  return t;
}

}  // namespace

CheckReport check_env(const std::function<std::unique_ptr<Env>()>& make, const CheckOptions& opt) {
  CheckReport rep;
  auto fail = [&](const std::string& check, const std::string& what) { rep.failures.push_back(check + ": " + what); };
  std::unique_ptr<Env> env;
  try {
    env = make();
  } catch (const std::exception& e) {
    fail("create", e.what());
    return rep;
  }
  const Space& os = env->observation_space();
  const Space& as = env->action_space();
  const std::string name = env->name();

  // spaces
  if (os.kind != SpaceKind::kBox || os.numel() <= 0) {
    fail("spaces", "observation space must be a non-empty Box, got " + os.to_string());
    return rep;
  }
  if ((as.kind == SpaceKind::kDiscrete && as.n <= 0) || (as.kind == SpaceKind::kBox && as.numel() <= 0)) {
    fail("spaces", "invalid action space " + as.to_string());
    return rep;
  }
  rep.passed.push_back("spaces: observation " + os.to_string() + ", action " + as.to_string());

  Rng rng(opt.seed ^ 0x5eedull);
  const size_t act_bytes = as.nbytes();
  std::vector<uint8_t> actions(static_cast<size_t>(opt.steps) * act_bytes);
  for (int64_t i = 0; i < opt.steps; ++i) sample_action(as, rng, actions.data() + static_cast<size_t>(i) * act_bytes);

  try {
    // reset
    std::vector<uint8_t> obs(os.nbytes());
    env->reset(opt.seed, obs.data());
    std::string bad = non_finite(os, obs.data());
    if (bad.empty()) bad = os.violation(obs.data());
    if (!bad.empty()) {
      fail("reset", "first observation " + bad);
    } else {
      rep.passed.push_back("reset: first observation lies in the observation space");
    }

    // random steps
    int64_t episodes = 0, longest = 0, current = 0, range_errors = 0;
    double reward_sum = 0;
    std::string first_error;
    for (int64_t i = 0; i < opt.steps; ++i) {
      StepResult r = env->step(actions.data() + static_cast<size_t>(i) * act_bytes, obs.data());
      ++current;
      std::string why = non_finite(os, obs.data());
      if (why.empty()) why = os.violation(obs.data());
      if (why.empty() && !std::isfinite(r.reward)) why = "reward is not finite";
      if (!why.empty()) {
        if (first_error.empty()) first_error = "step " + std::to_string(i) + ": " + why;
        ++range_errors;
      }
      reward_sum += r.reward;
      if (r.terminated || r.truncated) {
        ++episodes;
        longest = std::max(longest, current);
        current = 0;
        if (i == 0 || episodes == 1) {
          // done protocol: stepping a finished episode must throw
          bool threw = false;
          try {
            env->step(actions.data(), obs.data());
          } catch (const EnvError&) {
            threw = true;
          }
          if (!threw) fail("done protocol", "step() after the episode ended did not throw");
        }
        env->reset(std::nullopt, obs.data());
      }
    }
    longest = std::max(longest, current);
    int64_t limit = env->spec().max_episode_steps;
    if (range_errors) {
      fail("random steps", std::to_string(range_errors) + " bad steps; first at " + first_error);
    } else {
      std::ostringstream os_msg;
      os_msg << "random steps: " << opt.steps << " steps, " << episodes << " episodes, mean reward/step "
             << reward_sum / static_cast<double>(std::max<int64_t>(1, opt.steps)) << ", all observations in range";
      rep.passed.push_back(os_msg.str());
    }
    if (limit > 0 && longest > limit) {
      fail("time limit", "an episode ran " + std::to_string(longest) + " steps, over max_episode_steps " +
                             std::to_string(limit));
    }
    if (episodes > 0) rep.passed.push_back("done protocol: step() after the end throws; reset() starts anew");
    else rep.notes.push_back("no episode ended within " + std::to_string(opt.steps) + " random steps");

    // invalid action
    if (as.kind != SpaceKind::kBox) {
      env->reset(opt.seed, obs.data());
      std::vector<uint8_t> bad_action(act_bytes, 0);
      int64_t out_of_range = as.kind == SpaceKind::kDiscrete ? as.n : as.nvec[0];
      std::memcpy(bad_action.data(), &out_of_range, 8);
      bool threw = false;
      try {
        env->step(bad_action.data(), obs.data());
      } catch (const EnvError&) {
        threw = true;
      }
      if (threw) {
        rep.passed.push_back("invalid action: out-of-range action rejected");
      } else {
        fail("invalid action", "action " + std::to_string(out_of_range) + " was accepted by " + as.to_string());
      }
    }

    // determinism
    auto a = make();
    auto b = make();
    int64_t det_steps = std::min<int64_t>(opt.steps, 1000);
    Trace ta = run(*a, opt.seed + 17, actions, act_bytes, det_steps);
    Trace tb = run(*b, opt.seed + 17, actions, act_bytes, det_steps);
    if (ta.bytes != tb.bytes) {
      fail("determinism", "same seed and actions gave different trajectories");
    } else {
      rep.passed.push_back("determinism: same seed and actions give identical trajectories");
    }
    std::vector<uint8_t> o1(os.nbytes()), o2(os.nbytes());
    a->reset(1, o1.data());
    a->reset(2, o2.data());
    if (o1 == o2) rep.notes.push_back("seeds 1 and 2 give the same first observation (deterministic reset?)");

    // snapshot/restore
    if (env->supports_snapshot()) {
      env->reset(opt.seed + 3, obs.data());
      int64_t warm = std::min<int64_t>(5, opt.steps);
      for (int64_t i = 0; i < warm && env->episode_active(); ++i) {
        env->step(actions.data() + static_cast<size_t>(i) * act_bytes, obs.data());
      }
      if (!env->episode_active()) env->reset(opt.seed + 4, obs.data());
      auto snap = env->snapshot();
      auto replay = [&] {
        Trace t;
        std::vector<uint8_t> o(os.nbytes());
        for (int64_t i = 0; i < std::min<int64_t>(50, opt.steps) && env->episode_active(); ++i) {
          StepResult r = env->step(actions.data() + static_cast<size_t>(i) * act_bytes, o.data());
          t.add(o.data(), o.size());
          t.add(&r.reward, sizeof(r.reward));
        }
        return t;
      };
      Trace first = replay();
      env->restore(snap);
      Trace second = replay();
      if (first.bytes != second.bytes) {
        fail("snapshot/restore", "replaying from a restored snapshot diverged");
      } else {
        rep.passed.push_back("snapshot/restore: a restored snapshot replays identically");
      }
    } else {
      rep.notes.push_back("snapshot/restore not supported");
    }
  } catch (const std::exception& e) {
    fail("exception", e.what());
  }
  return rep;
}

}  // namespace orchard::envs
