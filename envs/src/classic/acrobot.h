// Acrobot-v1 with Gymnasium's exact dynamics, constants, integration, reward, termination and
// time limit.
//
// Reference: Gymnasium `gymnasium/envs/classic_control/acrobot.py` (v1; from RLPy), after
// Sutton (1996), "Generalization in Reinforcement Learning: Successful Examples Using Sparse
// Coarse Coding", with the dynamics of Sutton & Barto's book ("book", the default; "nips" drops
// one term as the paper did). Two links of length 1, mass 1, centre of mass at 0.5 and moment of
// inertia 1; torque {-1, 0, +1} on the joint between them. One step integrates the equations
// with a single classic Runge-Kutta (RK4) step of dt = 0.2 s, then wraps both angles into
// [-pi, pi] and bounds the angular velocities to [-4pi, 4pi] and [-9pi, 9pi].
//
//   terminated = -cos(theta1) - cos(theta1 + theta2) > 1.0   (the tip above the bar)
//   reward     = terminated ? 0 : -1
//
// Observation (cos t1, sin t1, cos t2, sin t2, dt1, dt2). Truncated after 500 steps.
#pragma once

#include <algorithm>
#include <cmath>

#include "orchard/envs/env.h"
#include "orchard/envs/rng.h"

namespace orchard::envs::classic {

class Acrobot final : public Env {
 public:
  static constexpr double kPi = 3.14159265358979323846;
  static constexpr double kDt = 0.2;
  static constexpr double kLinkLength1 = 1.0;
  static constexpr double kLinkLength2 = 1.0;
  static constexpr double kLinkMass1 = 1.0;
  static constexpr double kLinkMass2 = 1.0;
  static constexpr double kLinkComPos1 = 0.5;
  static constexpr double kLinkComPos2 = 0.5;
  static constexpr double kLinkMoi = 1.0;
  static constexpr double kGravity = 9.8;
  static constexpr double kMaxVel1 = 4 * kPi;
  static constexpr double kMaxVel2 = 9 * kPi;
  static constexpr double kAvailTorque[3] = {-1.0, 0.0, +1.0};

  struct State {
    double theta1, theta2, dtheta1, dtheta2;
  };

  // Options: max_episode_steps (500), book_or_nips ("book"), torque_noise_max (0: uniform noise
  // added to the torque), reset_low (-0.1) and reset_high (0.1): the range of all four state
  // variables at reset (Gymnasium's reset options "low" and "high").
  explicit Acrobot(const EnvOptions& options);

  // Gymnasium's wrap(): shifts x by whole turns of (M - m) until m <= x <= M.
  static inline double wrap(double x, double m, double M) {
    const double diff = M - m;
    // Far outside (only reachable through set_state) the loops below would take forever; fmod
    // brings x within one turn first. Infinity becomes NaN (Gymnasium would never return).
    if (!(std::fabs(x) < 1e6)) x = std::isinf(x) ? std::nan("") : m + std::fmod(x - m, diff);
    while (x > M) x = x - diff;
    while (x < m) x = x + diff;
    return x;
  }
  // Gymnasium's bound(): min(max(x, m), M) with Python's argument order.
  static inline double bound(double x, double m, double M) { return std::min(std::max(x, m), M); }

  // The time derivative of (theta1, theta2, dtheta1, dtheta2) under torque y[4] (_dsdt).
  static inline void dsdt(const double y[5], double out[4], bool nips) {
    constexpr double m1 = kLinkMass1, m2 = kLinkMass2, l1 = kLinkLength1, lc1 = kLinkComPos1, lc2 = kLinkComPos2,
                     I1 = kLinkMoi, I2 = kLinkMoi, g = kGravity;
    const double theta1 = y[0], theta2 = y[1], dtheta1 = y[2], dtheta2 = y[3], a = y[4];
    const double c2 = std::cos(theta2), s2 = std::sin(theta2);
    // Term by term and in Python's evaluation order, so the rounding matches.
    const double d1 = m1 * (lc1 * lc1) + m2 * (l1 * l1 + lc2 * lc2 + 2 * l1 * lc2 * c2) + I1 + I2;
    const double d2 = m2 * (lc2 * lc2 + l1 * lc2 * c2) + I2;
    const double phi2 = m2 * lc2 * g * std::cos(theta1 + theta2 - kPi / 2.0);
    const double phi1 = -m2 * l1 * lc2 * (dtheta2 * dtheta2) * s2 - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * s2 +
                        (m1 * lc1 + m2 * l1) * g * std::cos(theta1 - kPi / 2) + phi2;
    double ddtheta2;
    if (nips) {
      ddtheta2 = (a + d2 / d1 * phi1 - phi2) / (m2 * (lc2 * lc2) + I2 - (d2 * d2) / d1);
    } else {
      ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * (dtheta1 * dtheta1) * s2 - phi2) /
                 (m2 * (lc2 * lc2) + I2 - (d2 * d2) / d1);
    }
    const double ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
    out[0] = dtheta1;
    out[1] = dtheta2;
    out[2] = ddtheta1;
    out[3] = ddtheta2;
  }

  // One RK4 step over [0, dt] of the state augmented with the (constant) torque, as
  // Gymnasium's rk4(): y0 + dt/6 * (k1 + 2 k2 + 2 k3 + k4).
  static inline State rk4(const State& s, double torque, bool nips) {
    const double y0[5] = {s.theta1, s.theta2, s.dtheta1, s.dtheta2, torque};
    const double dt = kDt - 0.0;  // t[1] - t[0]
    const double dt2 = dt / 2.0;
    double k1[4], k2[4], k3[4], k4[4], y[5];
    // The torque's derivative is 0, so y[4] stays y0[4] (+ dt2 * 0.0) in every stage.
    y[4] = y0[4];
    dsdt(y0, k1, nips);
    for (int i = 0; i < 4; ++i) y[i] = y0[i] + dt2 * k1[i];
    dsdt(y, k2, nips);
    for (int i = 0; i < 4; ++i) y[i] = y0[i] + dt2 * k2[i];
    dsdt(y, k3, nips);
    for (int i = 0; i < 4; ++i) y[i] = y0[i] + dt * k3[i];
    dsdt(y, k4, nips);
    double out[4];
    for (int i = 0; i < 4; ++i) out[i] = y0[i] + dt / 6.0 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]);
    return {out[0], out[1], out[2], out[3]};
  }

  static inline bool is_terminal(const State& s) { return -std::cos(s.theta1) - std::cos(s.theta2 + s.theta1) > 1.0; }

  // One step of the equations under `torque` (kAvailTorque[action], plus any noise), shared with
  // benchmarks. Returns true if terminal.
  static inline bool advance(State& s, double torque, bool nips = false) {
    State ns = rk4(s, torque, nips);
    ns.theta1 = wrap(ns.theta1, -kPi, kPi);
    ns.theta2 = wrap(ns.theta2, -kPi, kPi);
    ns.dtheta1 = bound(ns.dtheta1, -kMaxVel1, kMaxVel1);
    ns.dtheta2 = bound(ns.dtheta2, -kMaxVel2, kMaxVel2);
    s = ns;
    return is_terminal(s);
  }

  const State& state() const { return state_; }
  void set_state(const State& s) { state_ = s; }
  bool nips() const { return nips_; }
  bool supports_snapshot() const override { return true; }

 protected:
  void do_reset(std::optional<uint64_t> seed, void* obs) override;
  StepResult do_step(const void* action, void* obs) override;
  void do_snapshot(std::vector<uint8_t>* out) const override;
  bool do_restore(const uint8_t*& in, const uint8_t* end) override;

 private:
  void write_obs(void* obs) const;

  bool nips_ = false;
  double torque_noise_max_ = 0.0;
  double reset_low_ = -0.1;
  double reset_high_ = 0.1;
  State state_{};
  Rng rng_;
};

}  // namespace orchard::envs::classic
