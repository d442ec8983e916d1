// MinAtar Breakout: a paddle on the bottom row bounces a diagonal ball into 3 rows of bricks.
//
// Reference: K. Young & T. Tian (2019), "MinAtar: An Atari-Inspired Testbed for Thorough and
// Reproducible Reinforcement Learning Experiments", arXiv:1903.03176; rules reimplemented from
// kenjyoung/MinAtar `minatar/environments/breakout.py` and the sticky-action wrapper in
// `minatar/environment.py` (v1: the minimal action set, as `MinAtar/Breakout-v1`).
//
// Rules: the ball moves one cell along a diagonal per step and is reflected by the side walls,
// the top wall and bricks. A brick hit gives +1, removes the brick and sends the ball back to
// its row; a brick hit on the step right after another one passes into the brick's cell
// without breaking it (MinAtar's `strike` flag). At the bottom row the ball bounces off the
// paddle (straight back up when the paddle is under the ball's old column, back the way it came
// when it is under the new one); otherwise the episode terminates. When no brick is left, the
// 3 rows are refilled the next time the ball reaches the bottom row. Breakout does not ramp.
#pragma once

#include <cstdint>
#include <type_traits>

#include "orchard/envs/env.h"
#include "orchard/envs/rng.h"

namespace orchard::envs::games {

class Breakout final : public Env {
 public:
  static constexpr int kSize = 10;  // the grid is kSize x kSize
  static constexpr int kChannels = 4;
  enum Channel : int { kPaddleChannel = 0, kBallChannel = 1, kTrailChannel = 2, kBrickChannel = 3 };
  // MinAtar's full action set; the minimal set is {n, l, r}.
  enum Action : uint8_t { kNoop = 0, kLeft = 1, kUp = 2, kRight = 3, kDown = 4, kFire = 5 };
  static constexpr uint8_t kMinimalActions[3] = {kNoop, kLeft, kRight};

  static constexpr int kPaddleRow = 9;
  static constexpr int kBrickRowFirst = 1;  // bricks fill rows [kBrickRowFirst, kBrickRowLast]
  static constexpr int kBrickRowLast = 3;
  static constexpr int kBallStartRow = 3;
  static constexpr int kPaddleStart = 4;
  static constexpr uint16_t kFullRow = (1u << kSize) - 1;

  // Ball directions, in MinAtar's numbering.
  enum Direction : uint8_t { kUpLeft = 0, kUpRight = 1, kDownRight = 2, kDownLeft = 3 };

  // Invariant while an episode runs: ball_y in [0, 8], all cells inside the grid. No padding, so
  // a snapshot's bytes are a function of the state.
  struct State {
    int8_t ball_x, ball_y;  // the ball's cell
    int8_t last_x, last_y;  // the ball's previous cell (the trail channel)
    uint8_t ball_dir;       // Direction
    int8_t paddle_x;        // the paddle's column on kPaddleRow
    bool strike;            // a brick was hit on the previous step
    uint8_t last_action;    // sticky-action memory: the last full-set Action taken
    uint16_t bricks[kSize];  // bit c of bricks[r]: a brick at row r, column c
  };

  static_assert(std::has_unique_object_representations_v<State>, "State must have no padding");

  // Options: sticky_action_prob (0.1), difficulty_ramping (true, no effect in Breakout),
  // full_action_space (false), max_episode_steps (10000; 0 = none). See docs/envs/games.md.
  explicit Breakout(const EnvOptions& options);

  // The game state, for tests and tools; set_state() takes effect on the next step (the
  // observation buffer is only written by reset() and step()).
  const State& state() const { return state_; }
  void set_state(const State& s) { state_ = s; }
  bool supports_snapshot() const override { return true; }

 protected:
  void do_reset(std::optional<uint64_t> seed, void* obs) override;
  StepResult do_step(const void* action, void* obs) override;
  void do_snapshot(std::vector<uint8_t>* out) const override;
  bool do_restore(const uint8_t*& in, const uint8_t* end) override;

 private:
  // One frame of the game's rules for a full-set action (after the sticky-action draw).
  StepResult advance(uint8_t action);
  void write_obs(void* obs) const;

  State state_{};
  Rng rng_;
  double sticky_action_prob_;
  bool full_action_space_;
};

}  // namespace orchard::envs::games
