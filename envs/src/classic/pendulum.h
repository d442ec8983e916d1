// Pendulum-v1 with Gymnasium's exact dynamics, constants, reward and time limit.
//
// Reference: Gymnasium `gymnasium/envs/classic_control/pendulum.py` (v1). The inverted pendulum
// swing-up: a rigid rod of mass m = 1 and length l = 1 hinged at one end, torque u at the hinge,
// theta = 0 pointing up. One step of dt = 0.05 s (semi-implicit Euler):
//
//   u         = clip(action, -2, 2)
//   cost      = angle_normalize(theta)^2 + 0.1 * theta_dot^2 + 0.001 * u^2    (old state)
//   theta_dot = clip(theta_dot + (3g / (2l) * sin(theta) + 3 / (m l^2) * u) * dt, -8, 8)
//   theta     = theta + theta_dot * dt                                        (new velocity)
//   reward    = -cost
//
// Observation (cos theta, sin theta, theta_dot); theta itself is never wrapped (as Gymnasium).
// Never terminates; truncated after 200 steps.
#pragma once

#include <cmath>

#include "orchard/envs/env.h"
#include "orchard/envs/rng.h"

namespace orchard::envs::classic {

class Pendulum final : public Env {
 public:
  static constexpr double kPi = 3.14159265358979323846;
  static constexpr double kMaxSpeed = 8.0;
  static constexpr double kMaxTorque = 2.0;
  static constexpr double kDt = 0.05;
  static constexpr double kMass = 1.0;
  static constexpr double kLength = 1.0;
  static constexpr double kDefaultGravity = 10.0;

  struct State {
    double theta, theta_dot;
  };

  // Options: max_episode_steps (200), g (10.0), x_init (pi) and y_init (1.0): reset draws
  // theta in [-x_init, x_init] and theta_dot in [-y_init, y_init] (Gymnasium's reset options).
  explicit Pendulum(const EnvOptions& options);

  // Gymnasium's angle_normalize: ((x + pi) mod 2pi) - pi with NumPy's floored modulo, so the
  // result lies in [-pi, pi).
  static inline double angle_normalize(double x) {
    const double two_pi = 2.0 * kPi;
    double m = std::fmod(x + kPi, two_pi);
    // np.remainder: the result takes the sign of the divisor; an exact zero is +0.
    if (m != 0.0) {
      if (m < 0.0) m += two_pi;
    } else {
      m = 0.0;
    }
    return m - kPi;
  }

  // One step of the equations, shared with benchmarks. `action` is the raw float32 action as
  // the action buffer holds it; it is clipped here. Returns the reward.
  static inline double advance(State& s, float action, double g = kDefaultGravity) {
    // np.clip of the float32 action (the bounds are exact in float32); the arithmetic below is in
    // double, as NumPy 1.x promotes it.
    const float max_torque = static_cast<float>(kMaxTorque);
    const double u = action < -max_torque ? -max_torque : action > max_torque ? max_torque : action;
    const double th = s.theta, thdot = s.theta_dot;
    const double an = angle_normalize(th);
    const double costs = an * an + 0.1 * (thdot * thdot) + 0.001 * (u * u);
    double newthdot =
        thdot + (3.0 * g / (2.0 * kLength) * std::sin(th) + 3.0 / (kMass * (kLength * kLength)) * u) * kDt;
    newthdot = newthdot < -kMaxSpeed ? -kMaxSpeed : newthdot > kMaxSpeed ? kMaxSpeed : newthdot;
    s.theta = th + newthdot * kDt;
    s.theta_dot = newthdot;
    return -costs;
  }

  const State& state() const { return state_; }
  void set_state(const State& s) { state_ = s; }
  double gravity() const { return g_; }
  bool supports_snapshot() const override { return true; }

 protected:
  void do_reset(std::optional<uint64_t> seed, void* obs) override;
  StepResult do_step(const void* action, void* obs) override;
  void do_snapshot(std::vector<uint8_t>* out) const override;
  bool do_restore(const uint8_t*& in, const uint8_t* end) override;

 private:
  void write_obs(void* obs) const;

  double g_ = kDefaultGravity;
  double x_init_ = kPi;
  double y_init_ = 1.0;
  int64_t step_delay_us_ = 0;
  State state_{};
  Rng rng_;
};

}  // namespace orchard::envs::classic
