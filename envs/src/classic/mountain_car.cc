#include "classic/mountain_car.h"

#include <cstdio>
#include <string>

namespace orchard::envs::classic {
namespace {

constexpr const char* kName = "MountainCarContinuous-v0";

EnvSpec mountain_car_spec(const EnvOptions& o) {
  using M = MountainCarContinuous;
  EnvSpec s;
  s.name = kName;
  // Gymnasium's bounds are float32 arrays: keep their float32 values (float(-1.2) < -1.2).
  auto f32 = [](double v) { return static_cast<double>(static_cast<float>(v)); };
  s.observation_space =
      Space::box({2}, {f32(M::kMinPosition), f32(-M::kMaxSpeed)}, {f32(M::kMaxPosition), f32(M::kMaxSpeed)});
  s.action_space = Space::box({1}, M::kMinAction, M::kMaxAction);
  s.max_episode_steps = o.get_int(kName, "max_episode_steps", 999, 1, 1'000'000'000);
  s.reference = "Gymnasium MountainCarContinuous-v0 (classic_control/continuous_mountain_car.py; Moore 1990)";
  return s;
}

}  // namespace

MountainCarContinuous::MountainCarContinuous(const EnvOptions& options) : Env(mountain_car_spec(options)) {
  goal_velocity_ = options.get_double(kName, "goal_velocity", 0.0, -kMaxSpeed, kMaxSpeed);
  reset_low_ = options.get_double(kName, "reset_low", -0.6, kMinPosition, kMaxPosition);
  reset_high_ = options.get_double(kName, "reset_high", -0.4, kMinPosition, kMaxPosition);
  if (reset_low_ > reset_high_) {
    char buf[128];
    std::snprintf(buf, sizeof(buf), "option reset_low=%g must not exceed reset_high=%g", reset_low_, reset_high_);
    fail(buf);
  }
}

void MountainCarContinuous::write_obs(void* obs) const {
  float* o = static_cast<float*>(obs);
  o[0] = static_cast<float>(state_.position);
  o[1] = static_cast<float>(state_.velocity);
}

void MountainCarContinuous::do_reset(std::optional<uint64_t> seed, void* obs) {
  if (seed) rng_.seed(*seed);
  // Gymnasium: np.array([uniform(low, high), 0]), a float64 state until the first step.
  state_ = {rng_.uniform(reset_low_, reset_high_), 0.0};
  write_obs(obs);
}

StepResult MountainCarContinuous::do_step(const void* action, void* obs) {
  float a;
  std::memcpy(&a, action, sizeof(a));
  const Outcome r = advance(state_, a, goal_velocity_);
  write_obs(obs);
  return {static_cast<float>(r.reward), r.terminated, false};
}

void MountainCarContinuous::do_snapshot(std::vector<uint8_t>* out) const {
  put_state(out, state_, rng_);
}

bool MountainCarContinuous::do_restore(const uint8_t*& in, const uint8_t* end) {
  return get_state(in, end, &state_, &rng_);
}

}  // namespace orchard::envs::classic
