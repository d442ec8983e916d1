// CartPole-v1 with Gymnasium's exact dynamics, constants, termination and time limit.
//
// Reference: Gymnasium `gymnasium/envs/classic_control/cartpole.py` (v1), itself after Barto,
// Sutton & Anderson (1983), "Neuronlike adaptive elements that can solve difficult learning
// control problems". Reimplemented from the published equations (semi-implicit dynamics of the
// cart-pole with explicit Euler integration, tau = 0.02 s).
#pragma once

#include <cmath>
#include <cstring>

#include "orchard/envs/env.h"
#include "orchard/envs/rng.h"

namespace orchard::envs::classic {

class CartPole final : public Env {
 public:
  static constexpr double kGravity = 9.8;
  static constexpr double kMassCart = 1.0;
  static constexpr double kMassPole = 0.1;
  static constexpr double kTotalMass = kMassCart + kMassPole;
  static constexpr double kLength = 0.5;  // half the pole's length
  static constexpr double kPoleMassLength = kMassPole * kLength;
  static constexpr double kForceMag = 10.0;
  static constexpr double kTau = 0.02;
  static constexpr double kThetaThreshold = 12.0 * 2.0 * 3.14159265358979323846 / 360.0;
  static constexpr double kXThreshold = 2.4;

  struct State {
    double x, x_dot, theta, theta_dot;
  };

  explicit CartPole(const EnvOptions& options);

  // One step of the equations, shared with the benchmark's bare loop. Returns true if terminal.
  static inline bool advance(State& s, int64_t action) {
    const double force = action == 1 ? kForceMag : -kForceMag;
    const double costheta = std::cos(s.theta);
    const double sintheta = std::sin(s.theta);
    const double temp = (force + kPoleMassLength * s.theta_dot * s.theta_dot * sintheta) / kTotalMass;
    const double thetaacc =
        (kGravity * sintheta - costheta * temp) /
        (kLength * (4.0 / 3.0 - kMassPole * costheta * costheta / kTotalMass));
    const double xacc = temp - kPoleMassLength * thetaacc * costheta / kTotalMass;
    // Gymnasium's default "euler" integrator: positions use the old velocities.
    s.x += kTau * s.x_dot;
    s.x_dot += kTau * xacc;
    s.theta += kTau * s.theta_dot;
    s.theta_dot += kTau * thetaacc;
    return s.x < -kXThreshold || s.x > kXThreshold || s.theta < -kThetaThreshold || s.theta > kThetaThreshold;
  }

  const State& state() const { return state_; }
  void set_state(const State& s) { state_ = s; }
  bool supports_snapshot() const override { return true; }

 protected:
  void do_reset(std::optional<uint64_t> seed, void* obs) override;
  // Gymnasium's reset options: the initial state is drawn from U(low, high), default +-0.05.
  void apply_reset_options(const EnvOptions& options) override;
  // Inline so VectorEnv's typed step loop can inline it (CartPole is the speed reference).
  StepResult do_step(const void* action, void* obs) override {
    int64_t a;
    std::memcpy(&a, action, sizeof(a));
    const bool terminated = advance(state_, a);
    write_obs(obs);
    if (step_cost_ns_ > 0) burn_cpu();
    // Gymnasium gives reward 1 on every step, the terminating one included.
    return {1.0f, terminated, false};
  }
  void do_snapshot(std::vector<uint8_t>* out) const override;
  bool do_restore(const uint8_t*& in, const uint8_t* end) override;

 private:
  void write_obs(void* obs) const {
    float* o = static_cast<float*>(obs);
    o[0] = static_cast<float>(state_.x);
    o[1] = static_cast<float>(state_.x_dot);
    o[2] = static_cast<float>(state_.theta);
    o[3] = static_cast<float>(state_.theta_dot);
  }

  // Option step_cost_us: each step also keeps the CPU busy this long, a stand-in for a simulator
  // whose physics costs CPU time on the actor's core (benchmarks; Pendulum's step_delay_us
  // sleeps instead).
  void burn_cpu() const;

  State state_{};
  int64_t step_cost_ns_ = 0;
  Rng rng_;
  double reset_low_ = -0.05, reset_high_ = 0.05;
  // Gymnasium's steps_beyond_terminated bookkeeping is replaced by Env's "step after done" error.
};

}  // namespace orchard::envs::classic
