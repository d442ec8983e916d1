// MinAtar SpaceInvaders: a cannon on the bottom row shoots at a descending block of aliens.
//
// Reference: K. Young & T. Tian (2019), "MinAtar: An Atari-Inspired Testbed for Thorough and
// Reproducible Reinforcement Learning Experiments", arXiv:1903.03176; rules reimplemented from
// kenjyoung/MinAtar `minatar/environments/space_invaders.py` and the sticky-action wrapper in
// `minatar/environment.py` (v1: the minimal action set, as `MinAtar/SpaceInvaders-v1`).
//
// Rules: the cannon moves along row 9 and fires (at most once every 5 frames) a bullet that
// rises one row per frame. The 4x6 block of aliens moves one column sideways every
// min(aliens left, move interval) frames; when an alien touches the edge it is heading for,
// the block moves one row down instead and turns around. Every 10 frames the lowest alien of
// the column nearest the cannon drops a bullet that falls one row per frame. A friendly bullet
// on an alien's cell gives +1 and removes both (a bullet and an alien that swap rows pass each
// other, as in MinAtar). An enemy bullet or an alien on the cannon's cell, or a block that must
// descend from row 9, terminates. A cleared wave is replaced by a new one; with difficulty
// ramping each new wave moves one frame faster (move interval 12 down to 6).
#pragma once

#include <cstdint>
#include <type_traits>

#include "orchard/envs/env.h"
#include "orchard/envs/rng.h"

namespace orchard::envs::games {

class SpaceInvaders final : public Env {
 public:
  static constexpr int kSize = 10;
  static constexpr int kChannels = 6;
  enum Channel : int {
    kCannonChannel = 0,
    kAlienChannel = 1,
    kAlienLeftChannel = 2,   // the aliens, while the block heads left
    kAlienRightChannel = 3,  // the aliens, while the block heads right
    kFriendlyBulletChannel = 4,
    kEnemyBulletChannel = 5,
  };
  // MinAtar's full action set; the minimal set is {n, l, r, f}.
  enum Action : uint8_t { kNoop = 0, kLeft = 1, kUp = 2, kRight = 3, kDown = 4, kFire = 5 };
  static constexpr uint8_t kMinimalActions[4] = {kNoop, kLeft, kRight, kFire};

  static constexpr int kCannonRow = 9;
  static constexpr int kCannonStart = 5;
  static constexpr int kShotCoolDown = 5;
  static constexpr int kEnemyMoveInterval = 12;  // the first wave's move interval
  static constexpr int kMinEnemyMoveInterval = 6;
  static constexpr int kEnemyShotInterval = 10;
  static constexpr int kWaveRows = 4;          // a wave fills rows [0, kWaveRows)
  static constexpr uint16_t kWaveRow = 0xFC;   // ... and columns 2..7
  static constexpr uint16_t kFullRow = (1u << kSize) - 1;

  // Grids are bitboards: bit c of row[r] is the cell (r, c).
  // Invariant: cannon_x in [0, 9]; alien_dir is -1 or +1. No padding, so a snapshot's bytes are a
  // function of the state.
  struct State {
    uint16_t aliens[kSize];
    uint16_t friendly_bullets[kSize];
    uint16_t enemy_bullets[kSize];
    int32_t cannon_x;
    int32_t alien_dir;             // -1: left, +1: right
    int32_t enemy_move_interval;   // this wave's move interval (ramps down to 6)
    int32_t alien_move_timer;      // the block moves on a frame that starts with this at 0
    int32_t alien_shot_timer;      // an alien fires on a frame that starts with this at 0
    int32_t shot_timer;            // the cannon may fire when this is 0
    int32_t ramp_index;            // waves that were sped up this episode
    int32_t last_action;           // sticky-action memory: the last full-set Action taken
  };
  static_assert(std::has_unique_object_representations_v<State>, "State must have no padding");

  // Options: sticky_action_prob (0.1), difficulty_ramping (true), full_action_space (false),
  // max_episode_steps (10000; 0 = none). See docs/envs/games.md.
  explicit SpaceInvaders(const EnvOptions& options);

  // The game state, for tests and tools; set_state() takes effect on the next step.
  const State& state() const { return state_; }
  void set_state(const State& s) { state_ = s; }
  // MinAtar's difficulty_ramp(): how many waves were sped up this episode.
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
  void write_obs(void* obs) const;

  State state_{};
  Rng rng_;
  double sticky_action_prob_;
  bool ramping_;
  bool full_action_space_;
};

}  // namespace orchard::envs::games
