#include "classic/pendulum.h"

#include <chrono>
#include <thread>

namespace orchard::envs::classic {
namespace {

EnvSpec pendulum_spec(const EnvOptions& o) {
  EnvSpec s;
  s.name = "Pendulum-v1";
  s.observation_space = Space::box({3}, {-1.0, -1.0, -Pendulum::kMaxSpeed}, {1.0, 1.0, Pendulum::kMaxSpeed});
  s.action_space = Space::box({1}, -Pendulum::kMaxTorque, Pendulum::kMaxTorque);
  s.max_episode_steps = o.get_int("Pendulum-v1", "max_episode_steps", 200, 1, 1'000'000'000);
  s.reference = "Gymnasium Pendulum-v1 (classic_control/pendulum.py)";
  return s;
}

}  // namespace

Pendulum::Pendulum(const EnvOptions& options) : Env(pendulum_spec(options)) {
  g_ = options.get_double(name(), "g", kDefaultGravity, 0.0, 1000.0);
  x_init_ = options.get_double(name(), "x_init", kPi, 0.0, 1000.0);
  // Larger starting speeds would put the first observation outside the observation space.
  y_init_ = options.get_double(name(), "y_init", 1.0, 0.0, kMaxSpeed);
  // Benchmarking knob: each step also waits this long, standing in for a simulator whose time is
  // spent elsewhere (a remote or hardware-in-the-loop simulator), so actor scaling shows on a
  // small machine. Not part of Gymnasium's Pendulum; 0 (default) adds nothing.
  step_delay_us_ = options.get_int(name(), "step_delay_us", 0, 0, 10'000'000);
}

void Pendulum::write_obs(void* obs) const {
  float* o = static_cast<float*>(obs);
  o[0] = static_cast<float>(std::cos(state_.theta));
  o[1] = static_cast<float>(std::sin(state_.theta));
  o[2] = static_cast<float>(state_.theta_dot);
}

void Pendulum::do_reset(std::optional<uint64_t> seed, void* obs) {
  if (seed) rng_.seed(*seed);
  // Gymnasium: uniform(low=[-x_init, -y_init], high=[x_init, y_init]), theta first.
  const double theta = rng_.uniform(-x_init_, x_init_);
  const double theta_dot = rng_.uniform(-y_init_, y_init_);
  state_ = {theta, theta_dot};
  write_obs(obs);
}

StepResult Pendulum::do_step(const void* action, void* obs) {
  float u;
  std::memcpy(&u, action, sizeof(u));
  const double reward = advance(state_, u, g_);
  write_obs(obs);
  if (step_delay_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(step_delay_us_));
  return {static_cast<float>(reward), false, false};
}

void Pendulum::do_snapshot(std::vector<uint8_t>* out) const {
  put_state(out, state_, rng_);
}

bool Pendulum::do_restore(const uint8_t*& in, const uint8_t* end) {
  return get_state(in, end, &state_, &rng_);
}

}  // namespace orchard::envs::classic
