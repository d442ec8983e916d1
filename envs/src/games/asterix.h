// MinAtar Asterix: dodge enemies and collect gold that cross the screen on 8 lanes.
//
// Reference: K. Young & T. Tian (2019), "MinAtar: An Atari-Inspired Testbed for Thorough and
// Reproducible Reinforcement Learning Experiments", arXiv:1903.03176; rules reimplemented from
// kenjyoung/MinAtar `minatar/environments/asterix.py` and the sticky-action wrapper in
// `minatar/environment.py` (v1: the minimal action set, as `MinAtar/Asterix-v1`).
//
// Rules: the player moves one cell in the 4 directions (rows 1..8). Every `spawn_speed` frames
// an entity (gold with probability 1/3, else an enemy) spawns at the left or right edge of a
// random free lane (lane i is row i + 1) and every `move_speed` frames all entities move one
// cell away from their edge, leaving the screen at the far one. Touching gold gives +1 and
// removes it; touching an enemy terminates. With difficulty ramping, every 102 frames the spawn
// interval shrinks by 1 and, every second time, the move interval too, until both are 1.
#pragma once

#include <cstdint>
#include <type_traits>

#include "orchard/envs/env.h"
#include "orchard/envs/rng.h"

namespace orchard::envs::games {

class Asterix final : public Env {
 public:
  static constexpr int kSize = 10;
  static constexpr int kChannels = 4;
  enum Channel : int { kPlayerChannel = 0, kEnemyChannel = 1, kTrailChannel = 2, kGoldChannel = 3 };
  // MinAtar's full action set; the minimal set is {n, l, u, r, d}.
  enum Action : uint8_t { kNoop = 0, kLeft = 1, kUp = 2, kRight = 3, kDown = 4, kFire = 5 };
  static constexpr uint8_t kMinimalActions[5] = {kNoop, kLeft, kUp, kRight, kDown};

  static constexpr int kLanes = 8;  // lane i is row i + 1
  static constexpr int kPlayerMinRow = 1;
  static constexpr int kPlayerMaxRow = 8;
  static constexpr int kPlayerStart = 5;  // column and row
  static constexpr int kRampInterval = 100;
  static constexpr int kInitSpawnSpeed = 10;
  static constexpr int kInitMoveSpeed = 5;
  static constexpr double kGoldProb = 1.0 / 3.0;

  struct Entity {
    bool alive;
    bool moving_right;  // spawned at column 0 (else at column 9, moving left)
    bool gold;          // gold (+1 when touched) or enemy (terminal when touched)
    int8_t x;
  };

  // Invariant while an episode runs: player_y in [kPlayerMinRow, kPlayerMaxRow], x in [0, 9].
  // No padding, so a snapshot's bytes are a function of the state.
  struct State {
    int32_t player_x, player_y;
    int32_t spawn_speed, spawn_timer;  // an entity spawns on a frame that starts with spawn_timer == 0
    int32_t move_speed, move_timer;    // entities move on a frame that starts with move_timer == 0
    int32_t ramp_timer, ramp_index;    // ramp_index: how many times the difficulty was raised
    int32_t last_action;               // sticky-action memory: the last full-set Action taken
    Entity lanes[kLanes];
  };

  static_assert(std::has_unique_object_representations_v<State>, "State must have no padding");

  // Options: sticky_action_prob (0.1), difficulty_ramping (true), full_action_space (false),
  // max_episode_steps (10000; 0 = none). See docs/envs/games.md.
  explicit Asterix(const EnvOptions& options);

  // The game state, for tests and tools; set_state() takes effect on the next step.
  const State& state() const { return state_; }
  void set_state(const State& s) { state_ = s; }
  // MinAtar's difficulty_ramp(): how many times the difficulty was raised this episode.
  int difficulty_ramp() const { return state_.ramp_index; }
  bool supports_snapshot() const override { return true; }
  void info(std::vector<std::pair<std::string, double>>* out) const override;

 protected:
  void do_reset(std::optional<uint64_t> seed, void* obs) override;
  StepResult do_step(const void* action, void* obs) override;
  void do_snapshot(std::vector<uint8_t>* out) const override;
  bool do_restore(const uint8_t*& in, const uint8_t* end) override;

 private:
  StepResult advance(uint8_t action);
  void spawn_entity();
  // Gold on the player's cell is collected (+1); an enemy there ends the episode.
  void touch(Entity& e, StepResult& out) const;
  void write_obs(void* obs) const;

  State state_{};
  Rng rng_;
  double sticky_action_prob_;
  bool ramping_;
  bool full_action_space_;
};

}  // namespace orchard::envs::games
