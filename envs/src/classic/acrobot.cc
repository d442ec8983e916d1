#include "classic/acrobot.h"

#include <cstdio>

namespace orchard::envs::classic {
namespace {

constexpr const char* kName = "Acrobot-v1";

EnvSpec acrobot_spec(const EnvOptions& o) {
  EnvSpec s;
  s.name = kName;
  // Gymnasium's bounds are a float32 array: keep their float32 values.
  const double v1 = static_cast<float>(Acrobot::kMaxVel1), v2 = static_cast<float>(Acrobot::kMaxVel2);
  s.observation_space = Space::box({6}, {-1.0, -1.0, -1.0, -1.0, -v1, -v2}, {1.0, 1.0, 1.0, 1.0, v1, v2});
  s.action_space = Space::discrete(3);
  s.max_episode_steps = o.get_int(kName, "max_episode_steps", 500, 1, 1'000'000'000);
  s.reference = "Gymnasium Acrobot-v1 (classic_control/acrobot.py; Sutton 1996, Sutton & Barto book dynamics)";
  return s;
}

}  // namespace

Acrobot::Acrobot(const EnvOptions& options) : Env(acrobot_spec(options)) {
  nips_ = options.get_choice(kName, "book_or_nips", "book", {"book", "nips"}) == "nips";
  torque_noise_max_ = options.get_double(kName, "torque_noise_max", 0.0, 0.0, 10.0);
  // Wider ranges would put the first observation's velocities outside the observation space.
  reset_low_ = options.get_double(kName, "reset_low", -0.1, -kPi, kPi);
  reset_high_ = options.get_double(kName, "reset_high", 0.1, -kPi, kPi);
  if (reset_low_ > reset_high_) {
    char buf[128];
    std::snprintf(buf, sizeof(buf), "option reset_low=%g must not exceed reset_high=%g", reset_low_, reset_high_);
    fail(buf);
  }
}

void Acrobot::write_obs(void* obs) const {
  float* o = static_cast<float*>(obs);
  o[0] = static_cast<float>(std::cos(state_.theta1));
  o[1] = static_cast<float>(std::sin(state_.theta1));
  o[2] = static_cast<float>(std::cos(state_.theta2));
  o[3] = static_cast<float>(std::sin(state_.theta2));
  o[4] = static_cast<float>(state_.dtheta1);
  o[5] = static_cast<float>(state_.dtheta2);
}

void Acrobot::do_reset(std::optional<uint64_t> seed, void* obs) {
  if (seed) rng_.seed(*seed);
  // Gymnasium: uniform(low, high, size=(4,)).astype(np.float32); the steps then run in float64.
  double v[4];
  for (double& x : v) x = static_cast<float>(rng_.uniform(reset_low_, reset_high_));
  state_ = {v[0], v[1], v[2], v[3]};
  write_obs(obs);
}

StepResult Acrobot::do_step(const void* action, void* obs) {
  int64_t a;
  std::memcpy(&a, action, sizeof(a));
  double torque = kAvailTorque[a];
  if (torque_noise_max_ > 0) torque += rng_.uniform(-torque_noise_max_, torque_noise_max_);
  const bool terminated = advance(state_, torque, nips_);
  write_obs(obs);
  return {terminated ? 0.0f : -1.0f, terminated, false};
}

void Acrobot::do_snapshot(std::vector<uint8_t>* out) const {
  put_state(out, state_, rng_);
}

bool Acrobot::do_restore(const uint8_t*& in, const uint8_t* end) {
  return get_state(in, end, &state_, &rng_);
}

}  // namespace orchard::envs::classic
