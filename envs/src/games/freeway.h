// MinAtar Freeway: a chicken crosses 8 lanes of traffic from the bottom row to the top.
//
// Reference: K. Young & T. Tian (2019), "MinAtar: An Atari-Inspired Testbed for Thorough and
// Reproducible Reinforcement Learning Experiments", arXiv:1903.03176; rules reimplemented from
// kenjyoung/MinAtar `minatar/environments/freeway.py` and the sticky-action wrapper in
// `minatar/environment.py` (v1: the minimal action set, as `MinAtar/Freeway-v1`).
//
// Rules: the chicken lives in column 4 and moves one row up or down at most once every 3
// frames. Reaching row 0 gives +1, returns it to row 9 and redraws every car's speed and
// direction. Car i drives along row i + 1 and moves one cell every |speed| + 1 frames
// (|speed| in 1..5), wrapping around at the edges; a car on the chicken's cell sends it back
// to row 9. The episode terminates on frame 2501 (MinAtar's 2500-frame timer running below
// zero). Freeway does not ramp.
#pragma once

#include <cstdint>
#include <type_traits>

#include "orchard/envs/env.h"
#include "orchard/envs/rng.h"

namespace orchard::envs::games {

class Freeway final : public Env {
 public:
  static constexpr int kSize = 10;
  static constexpr int kChannels = 7;
  // Channel kSpeedChannel + |speed| - 1 holds the trail of a car with that |speed| (1..5).
  enum Channel : int { kChickenChannel = 0, kCarChannel = 1, kSpeedChannel = 2 };
  // MinAtar's full action set; the minimal set is {n, u, d}.
  enum Action : uint8_t { kNoop = 0, kLeft = 1, kUp = 2, kRight = 3, kDown = 4, kFire = 5 };
  static constexpr uint8_t kMinimalActions[3] = {kNoop, kUp, kDown};

  static constexpr int kCars = 8;  // car i drives on row i + 1
  static constexpr int kChickenX = 4;
  static constexpr int kPlayerSpeed = 3;  // frames between chicken moves
  static constexpr int kTimeLimit = 2500;
  static constexpr int kMaxCarSpeed = 5;

  struct Car {
    int32_t x;
    int32_t timer;  // the car moves on a frame that starts with timer == 0
    int32_t speed;  // +-1..5: sign is the direction (+ = right), magnitude the move interval
  };

  // Invariant: pos in [0, 9], car x in [0, 9]. No padding, so a snapshot's bytes are a
  // function of the state.
  struct State {
    int32_t pos;              // the chicken's row
    int32_t move_timer;       // the chicken may move when move_timer == 0
    int32_t terminate_timer;  // the episode terminates when this drops below 0
    int32_t last_action;      // sticky-action memory: the last full-set Action taken
    Car cars[kCars];
  };
  static_assert(std::has_unique_object_representations_v<State>, "State must have no padding");

  // Options: sticky_action_prob (0.1), difficulty_ramping (true, no effect in Freeway),
  // full_action_space (false), max_episode_steps (10000; 0 = none). See docs/envs/games.md.
  explicit Freeway(const EnvOptions& options);

  // The game state, for tests and tools; set_state() takes effect on the next step.
  const State& state() const { return state_; }
  void set_state(const State& s) { state_ = s; }
  bool supports_snapshot() const override { return true; }

 protected:
  void do_reset(std::optional<uint64_t> seed, void* obs) override;
  StepResult do_step(const void* action, void* obs) override;
  void do_snapshot(std::vector<uint8_t>* out) const override;
  bool do_restore(const uint8_t*& in, const uint8_t* end) override;

 private:
  StepResult advance(uint8_t action);
  // New speeds and directions for every car; positions are kept unless `place` (then x = 0).
  void randomize_cars(bool place);
  void write_obs(void* obs) const;

  State state_{};
  Rng rng_;
  double sticky_action_prob_;
  bool full_action_space_;
};

}  // namespace orchard::envs::games
