#include "games/space_invaders.h"

#include "games/minatar.h"

#include <algorithm>
#include <cstring>

namespace orchard::envs::games {
namespace {

constexpr const char* kName = "MinAtar-SpaceInvaders-v1";

EnvSpec space_invaders_spec(const EnvOptions& o) {
  return minatar_spec(kName, SpaceInvaders::kChannels, 4, o,
                      "MinAtar SpaceInvaders (Young & Tian 2019, kenjyoung/MinAtar space_invaders.py), minimal action set");
}

int count(const uint16_t (&grid)[SpaceInvaders::kSize]) {
  int n = 0;
  for (uint16_t row : grid) n += __builtin_popcount(row);
  return n;
}

uint16_t occupied_columns(const uint16_t (&grid)[SpaceInvaders::kSize]) {
  uint16_t cols = 0;
  for (uint16_t row : grid) cols = static_cast<uint16_t>(cols | row);
  return cols;
}

}  // namespace

SpaceInvaders::SpaceInvaders(const EnvOptions& options)
    : Env(space_invaders_spec(options)),
      sticky_action_prob_(options.get_double(kName, "sticky_action_prob", 0.1, 0.0, 1.0)),
      ramping_(options.get_bool(kName, "difficulty_ramping", true)),
      full_action_space_(action_space().n == 6) {}

void SpaceInvaders::do_reset(std::optional<uint64_t> seed, void* obs) {
  if (seed) rng_.seed(*seed);
  State s{};
  for (int r = 0; r < kWaveRows; ++r) s.aliens[r] = kWaveRow;
  s.cannon_x = kCannonStart;
  s.alien_dir = -1;
  s.enemy_move_interval = kEnemyMoveInterval;
  s.alien_move_timer = s.enemy_move_interval;
  s.alien_shot_timer = kEnemyShotInterval;
  s.shot_timer = 0;
  s.ramp_index = 0;
  s.last_action = kNoop;
  state_ = s;
  write_obs(obs);
}

StepResult SpaceInvaders::advance(uint8_t action) {
  State& s = state_;
  StepResult out;
  if (action == kFire && s.shot_timer == 0) {
    s.friendly_bullets[kCannonRow] = static_cast<uint16_t>(s.friendly_bullets[kCannonRow] | 1u << s.cannon_x);
    s.shot_timer = kShotCoolDown;
  } else if (action == kLeft) {
    s.cannon_x = std::max(0, s.cannon_x - 1);
  } else if (action == kRight) {
    s.cannon_x = std::min(kSize - 1, s.cannon_x + 1);
  }
  const uint16_t cannon = static_cast<uint16_t>(1u << s.cannon_x);

  // Friendly bullets rise (and leave through the top); enemy bullets fall (and leave at the bottom).
  for (int r = 0; r < kSize - 1; ++r) s.friendly_bullets[r] = s.friendly_bullets[r + 1];
  s.friendly_bullets[kSize - 1] = 0;
  for (int r = kSize - 1; r > 0; --r) s.enemy_bullets[r] = s.enemy_bullets[r - 1];
  s.enemy_bullets[0] = 0;
  if (s.enemy_bullets[kCannonRow] & cannon) out.terminated = true;

  if (s.aliens[kCannonRow] & cannon) out.terminated = true;
  if (s.alien_move_timer == 0) {
    s.alien_move_timer = std::min(count(s.aliens), s.enemy_move_interval);
    const uint16_t cols = occupied_columns(s.aliens);
    if ((cols & 1u && s.alien_dir < 0) || (cols >> (kSize - 1) & 1u && s.alien_dir > 0)) {
      s.alien_dir = -s.alien_dir;
      if (s.aliens[kSize - 1] != 0) out.terminated = true;
      // MinAtar rolls the grid: the bottom row wraps to the top (the episode ends anyway).
      const uint16_t bottom = s.aliens[kSize - 1];
      for (int r = kSize - 1; r > 0; --r) s.aliens[r] = s.aliens[r - 1];
      s.aliens[0] = bottom;
    } else {
      // The edge test above guarantees no alien leaves the grid sideways.
      for (uint16_t& row : s.aliens) {
        row = static_cast<uint16_t>((s.alien_dir < 0 ? row >> 1 : row << 1) & kFullRow);
      }
    }
    if (s.aliens[kCannonRow] & cannon) out.terminated = true;
  }

  if (s.alien_shot_timer == 0) {
    s.alien_shot_timer = kEnemyShotInterval;
    // The shooter: the lowest alien in the occupied column nearest the cannon, left before right.
    const uint16_t cols = occupied_columns(s.aliens);
    int col = -1;
    for (int d = 0; d < kSize && col < 0; ++d) {
      if (s.cannon_x - d >= 0 && (cols >> (s.cannon_x - d) & 1u)) col = s.cannon_x - d;
      else if (d > 0 && s.cannon_x + d < kSize && (cols >> (s.cannon_x + d) & 1u)) col = s.cannon_x + d;
    }
    if (col >= 0) {
      int row = kSize - 1;
      while (!(s.aliens[row] >> col & 1u)) --row;
      s.enemy_bullets[row] = static_cast<uint16_t>(s.enemy_bullets[row] | 1u << col);
    }
  }

  for (int r = 0; r < kSize; ++r) {
    const uint16_t kills = s.aliens[r] & s.friendly_bullets[r];
    if (kills == 0) continue;
    out.reward += static_cast<float>(__builtin_popcount(kills));
    s.aliens[r] = static_cast<uint16_t>(s.aliens[r] & ~kills);
    s.friendly_bullets[r] = static_cast<uint16_t>(s.friendly_bullets[r] & ~kills);
  }

  if (s.shot_timer > 0) --s.shot_timer;
  --s.alien_move_timer;
  --s.alien_shot_timer;
  if (count(s.aliens) == 0) {
    if (ramping_ && s.enemy_move_interval > kMinEnemyMoveInterval) {
      --s.enemy_move_interval;
      ++s.ramp_index;
    }
    for (int r = 0; r < kWaveRows; ++r) s.aliens[r] = kWaveRow;
  }
  return out;
}

StepResult SpaceInvaders::do_step(const void* action, void* obs) {
  int64_t a;
  std::memcpy(&a, action, sizeof(a));
  const uint8_t full =
      sticky_full_action(a, full_action_space_, kMinimalActions, sticky_action_prob_, rng_, &state_.last_action);
  StepResult r = advance(full);
  write_obs(obs);
  return r;
}

void SpaceInvaders::write_obs(void* obs) const {
  uint8_t* o = static_cast<uint8_t*>(obs);
  std::memset(o, 0, kSize * kSize * kChannels);
  auto set_grid = [o](const uint16_t(&grid)[kSize], int ch) {
    for (int r = 0; r < kSize; ++r) {
      for (unsigned bits = grid[r]; bits != 0; bits &= bits - 1) {
        o[(r * kSize + __builtin_ctz(bits)) * kChannels + ch] = 1;
      }
    }
  };
  o[(kCannonRow * kSize + state_.cannon_x) * kChannels + kCannonChannel] = 1;
  set_grid(state_.aliens, kAlienChannel);
  set_grid(state_.aliens, state_.alien_dir < 0 ? kAlienLeftChannel : kAlienRightChannel);
  set_grid(state_.friendly_bullets, kFriendlyBulletChannel);
  set_grid(state_.enemy_bullets, kEnemyBulletChannel);
}

void SpaceInvaders::info(std::vector<std::pair<std::string, double>>* out) const {
  out->emplace_back("difficulty_ramp", static_cast<double>(state_.ramp_index));
}

void SpaceInvaders::do_snapshot(std::vector<uint8_t>* out) const {
  put_state(out, state_, rng_);
}

bool SpaceInvaders::do_restore(const uint8_t*& in, const uint8_t* end) {
  return get_state(in, end, &state_, &rng_);
}

}  // namespace orchard::envs::games
