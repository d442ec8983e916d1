// MinAtar Seaquest (MinAtar-Seaquest-v1): a submarine on a 10x10 grid of boolean channels.
//
// Reference: K. Young & T. Tian (2019), "MinAtar: An Atari-Inspired Testbed for Thorough and
// Reproducible Reinforcement Learning Experiments", and kenjyoung/MinAtar
// `minatar/environments/seaquest.py` with the sticky-action wrapper of `minatar/environment.py`
// and the v1 (minimal, here all 6) action set of `minatar/gym.py`. Reimplemented from the rules,
// in the reference's update order:
//
//   sticky action -> spawn enemy / diver when their timers are 0 -> player action (move or fire)
//   -> friendly bullets -> divers -> enemy subs (and their shots) -> enemy bullets -> enemy fish
//   -> timers, oxygen, surfacing.
//
// Rules: the player sub (front and back cell, facing left or right) moves in rows 0..8 and fires
// bullets every kShotCoolDown steps. Enemy fish and subs (subs shoot) cross rows 1..8; shooting
// one gives +1. Divers cross the same rows and are picked up (up to 6) by touching them. Oxygen
// falls by 1 per submerged step; the episode terminates on the step after it reaches 0, on
// contact with a fish, sub or enemy bullet, or on surfacing (returning to row 0) with no divers.
// Surfacing with 6 divers scores oxygen * 10 / kMaxOxygen; any surfacing refills oxygen, removes
// one diver and (with difficulty ramping) speeds up enemy spawning and movement.
//
// Reproduced quirk of the reference: surfacing with 6 divers sets the count to 0 and then removes
// one more, leaving -1; the next surfacing is then not terminal and 7 pick-ups refill the gauge.
//
// Observation: uint8 Box [10, 10, 10] in {0, 1}, indexed [row][column][channel], channels
// kSubFront .. kDiver below. Actions: Discrete(6): 0 no-op, 1 left, 2 up, 3 right, 4 down, 5 fire.
#pragma once

#include <cstdint>
#include <type_traits>

#include "orchard/envs/env.h"
#include "orchard/envs/rng.h"

namespace orchard::envs::games {

class Seaquest final : public Env {
 public:
  static constexpr int kSize = 10;  // the grid is kSize x kSize
  static constexpr int kMaxOxygen = 200;
  static constexpr int kInitSpawnSpeed = 20;
  static constexpr int kDiverSpawnSpeed = 30;
  static constexpr int kInitMoveInterval = 5;
  static constexpr int kShotCoolDown = 5;
  static constexpr int kEnemyShotInterval = 10;
  static constexpr int kDiverMoveInterval = 5;
  static constexpr int kMaxDivers = 6;  // divers the sub can carry

  // Channels of the observation.
  static constexpr int kSubFront = 0, kSubBack = 1, kFriendlyBullet = 2, kTrail = 3, kEnemyBullet = 4,
                       kEnemyFish = 5, kEnemySub = 6, kOxygenGauge = 7, kDiverGauge = 8, kDiver = 9;
  static constexpr int kChannels = 10;

  enum Action : int64_t { kNoop = 0, kLeft = 1, kUp = 2, kRight = 3, kDown = 4, kFire = 5 };
  static constexpr int kNumActions = 6;

  // Capacities of the entity lists. Enemies spawn at most once per step and leave the grid within
  // about 10 * (move interval + 1) <= 33 steps, so these bounds are never reached; a spawn that
  // would overflow is dropped.
  static constexpr int kMaxEnemies = 64;        // fish, and separately subs
  static constexpr int kMaxEnemyBullets = 128;  // at most about one in flight per sub
  static constexpr int kMaxFriendlyBullets = 8;  // at most 2 in flight (cool-down 5, range 10)
  static constexpr int kMaxDiverEntities = 8;    // at most 2 in flight (every 30 steps, 60 to cross)

  struct Bullet {
    int32_t x, y;
    int32_t right;  // 1: moves right, 0: moves left
  };
  // A fish, sub or diver. `move_timer` counts down to the next move (it moves when it is 0);
  // `shot_timer` (subs only) counts down to the next shot.
  struct Mover {
    int32_t x, y;
    int32_t right;
    int32_t move_timer;
    int32_t shot_timer;
  };

  // The full game state; lists are in spawn order, entries [0, num_*) are live.
  struct State {
    int32_t sub_x, sub_y;
    int32_t sub_right;    // the sub faces right (its back is at sub_x - 1)
    int32_t oxygen;       // kMaxOxygen when full; terminal on the step after it reaches 0
    int32_t diver_count;  // divers aboard, 0..6 (-1 after surfacing with 6, as the reference)
    int32_t e_spawn_speed, e_spawn_timer, d_spawn_timer;
    int32_t move_speed;  // enemies move every move_speed + 1 steps
    int32_t ramp_index;  // surfacings that raised the difficulty
    int32_t shot_timer;  // steps until the player may fire again
    int32_t surface;     // 1 while the sub stays at the surface after surfacing (or at the start)
    int32_t last_action;  // for sticky actions
    int32_t num_f_bullets, num_e_bullets, num_fish, num_subs, num_divers;
    Bullet f_bullets[kMaxFriendlyBullets];
    Bullet e_bullets[kMaxEnemyBullets];
    Mover fish[kMaxEnemies];
    Mover subs[kMaxEnemies];
    Mover divers[kMaxDiverEntities];
  };
  static_assert(std::has_unique_object_representations_v<State>, "State must have no padding");

  // Options: sticky_action_prob (0.1), difficulty_ramping (true), full_action_space (false; no
  // effect: Seaquest's minimal set is all 6 actions), max_episode_steps (10000; 0 = none).
  explicit Seaquest(const EnvOptions& options);

  // The state at the start of an episode (the sub at the surface, column 5, facing left).
  static State initial_state();
  const State& state() const { return state_; }
  // For tests and tools: replaces the game state; it takes effect on the next step (the
  // observation buffer is only written by reset() and step()). The caller keeps positions on the
  // grid and counts within the capacities.
  void set_state(const State& s) { state_ = s; }
  bool supports_snapshot() const override { return true; }
  // Writes the observation of `s` into `obs` (kSize * kSize * kChannels bytes).
  static void render(const State& s, uint8_t* obs);

 protected:
  void do_reset(std::optional<uint64_t> seed, void* obs) override;
  StepResult do_step(const void* action, void* obs) override;
  void do_snapshot(std::vector<uint8_t>* out) const override;
  bool do_restore(const uint8_t*& in, const uint8_t* end) override;

 private:
  void spawn_enemy();
  void spawn_diver();
  int surface();  // returns the reward of surfacing

  double sticky_action_prob_;
  bool difficulty_ramping_;
  State state_{};
  Rng rng_;
};

}  // namespace orchard::envs::games
