// MountainCarContinuous-v0 with Gymnasium's exact dynamics, constants, reward, termination and
// time limit.
//
// Reference: Gymnasium `gymnasium/envs/classic_control/continuous_mountain_car.py` (v0), after
// Moore (1990), "Efficient Memory-based Learning for Robot Control", and Sutton & Barto's
// mountain car. One step:
//
//   force    = clip(action, -1, 1)
//   velocity = clip(velocity + force * 0.0015 - 0.0025 * cos(3 * position), -0.07, 0.07)
//   position = clip(position + velocity, -1.2, 0.6)
//   if position == -1.2 and velocity < 0: velocity = 0        (inelastic left wall)
//   terminated = position >= 0.45 and velocity >= goal_velocity (0)
//   reward     = (terminated ? 100 : 0) - 0.1 * action^2       (the UNclipped action, as Gymnasium)
//
// Gymnasium keeps the state as float32 after every step (the reset state is float64); so does
// this implementation, with the step's arithmetic in double (NumPy 1.x promotion). Truncated
// after 999 steps.
#pragma once

#include <algorithm>
#include <cmath>

#include "orchard/envs/env.h"
#include "orchard/envs/rng.h"

namespace orchard::envs::classic {

class MountainCarContinuous final : public Env {
 public:
  static constexpr double kMinAction = -1.0;
  static constexpr double kMaxAction = 1.0;
  static constexpr double kMinPosition = -1.2;
  static constexpr double kMaxPosition = 0.6;
  static constexpr double kMaxSpeed = 0.07;
  static constexpr double kGoalPosition = 0.45;
  static constexpr double kPower = 0.0015;

  struct State {
    double position, velocity;
  };

  struct Outcome {
    double reward;
    bool terminated;
  };

  // Options: max_episode_steps (999), goal_velocity (0), reset_low (-0.6) and reset_high (-0.4):
  // the range of the starting position (Gymnasium's reset options "low" and "high").
  explicit MountainCarContinuous(const EnvOptions& options);

  // One step of the equations, shared with benchmarks. `action` is the raw float32 action.
  static inline Outcome advance(State& s, float action, double goal_velocity = 0.0) {
    const double a = action;
    double position = s.position;
    double velocity = s.velocity;
    // Python's min(max(action, -1.0), 1.0).
    const double force = std::min(std::max(a, kMinAction), kMaxAction);
    velocity += force * kPower - 0.0025 * std::cos(3 * position);
    if (velocity > kMaxSpeed) velocity = kMaxSpeed;
    if (velocity < -kMaxSpeed) velocity = -kMaxSpeed;
    position += velocity;
    if (position > kMaxPosition) position = kMaxPosition;
    if (position < kMinPosition) position = kMinPosition;
    if (position == kMinPosition && velocity < 0) velocity = 0;
    const bool terminated = position >= kGoalPosition && velocity >= goal_velocity;
    double reward = terminated ? 100.0 : 0.0;
    reward -= (a * a) * 0.1;
    // self.state = np.array([position, velocity], dtype=np.float32)
    s.position = static_cast<float>(position);
    s.velocity = static_cast<float>(velocity);
    return {reward, terminated};
  }

  const State& state() const { return state_; }
  void set_state(const State& s) { state_ = s; }
  bool supports_snapshot() const override { return true; }

 protected:
  void do_reset(std::optional<uint64_t> seed, void* obs) override;
  StepResult do_step(const void* action, void* obs) override;
  void do_snapshot(std::vector<uint8_t>* out) const override;
  bool do_restore(const uint8_t*& in, const uint8_t* end) override;

 private:
  void write_obs(void* obs) const;

  double goal_velocity_ = 0.0;
  double reset_low_ = -0.6;
  double reset_high_ = -0.4;
  State state_{};
  Rng rng_;
};

}  // namespace orchard::envs::classic
