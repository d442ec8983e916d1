#include "games/seaquest.h"

#include "games/minatar.h"

#include <algorithm>
#include <cstring>

namespace orchard::envs::games {
namespace {

constexpr const char* kName = "MinAtar-Seaquest-v1";
constexpr int kLast = Seaquest::kSize - 1;
constexpr int kLowestRow = Seaquest::kSize - 2;  // the sub cannot enter the gauge row

EnvSpec seaquest_spec(const EnvOptions& o) {
  // Seaquest's minimal action set is MinAtar's full set, so full_action_space changes nothing.
  return minatar_spec(kName, Seaquest::kChannels, Seaquest::kNumActions, o,
                      "MinAtar Seaquest (Young & Tian 2019, kenjyoung/MinAtar seaquest.py), sticky actions");
}

int step_of(int32_t right) { return right ? 1 : -1; }
bool on_grid(int x) { return x >= 0 && x <= kLast; }

// Removes entry i of the first n, keeping the order of the rest (the reference's lists).
template <class T, size_t N>
void erase_at(T (&items)[N], int32_t& n, int i) {
  for (int j = i; j + 1 < n; ++j) items[j] = items[j + 1];
  --n;
}

// The first of the first n entries at (x, y), or -1.
template <class T, size_t N>
int find_at(const T (&items)[N], int32_t n, int x, int y) {
  for (int i = 0; i < n; ++i)
    if (items[i].x == x && items[i].y == y) return i;
  return -1;
}

}  // namespace

Seaquest::Seaquest(const EnvOptions& options)
    : Env(seaquest_spec(options)),
      sticky_action_prob_(options.get_double(kName, "sticky_action_prob", 0.1, 0.0, 1.0)),
      difficulty_ramping_(options.get_bool(kName, "difficulty_ramping", true)) {}

Seaquest::State Seaquest::initial_state() {
  State s{};
  s.sub_x = 5;
  s.sub_y = 0;
  s.sub_right = 0;
  s.oxygen = kMaxOxygen;
  s.diver_count = 0;
  s.e_spawn_speed = kInitSpawnSpeed;
  s.e_spawn_timer = kInitSpawnSpeed;
  s.d_spawn_timer = kDiverSpawnSpeed;
  s.move_speed = kInitMoveInterval;
  s.ramp_index = 0;
  s.shot_timer = 0;
  s.surface = 1;
  s.last_action = kNoop;
  return s;
}

void Seaquest::do_reset(std::optional<uint64_t> seed, void* obs) {
  if (seed) rng_.seed(*seed);
  state_ = initial_state();
  render(state_, static_cast<uint8_t*>(obs));
}

// An enemy enters at the left or right edge of a random row 1..8 and crosses it; the spawn is
// skipped when an enemy already in that row moves the other way (they could not pass).
void Seaquest::spawn_enemy() {
  State& s = state_;
  const bool right = rng_.uniform() < 0.5;
  const bool is_sub = rng_.uniform() < 1.0 / 3.0;
  const int y = 1 + static_cast<int>(rng_.below(8));
  for (int i = 0; i < s.num_fish; ++i)
    if (s.fish[i].y == y && (s.fish[i].right != 0) != right) return;
  for (int i = 0; i < s.num_subs; ++i)
    if (s.subs[i].y == y && (s.subs[i].right != 0) != right) return;
  const Mover m{right ? 0 : kLast, y, right ? 1 : 0, s.move_speed, kEnemyShotInterval};
  if (is_sub) {
    if (s.num_subs < kMaxEnemies) s.subs[s.num_subs++] = m;
  } else {
    if (s.num_fish < kMaxEnemies) s.fish[s.num_fish++] = m;
  }
}

void Seaquest::spawn_diver() {
  State& s = state_;
  const bool right = rng_.uniform() < 0.5;
  const int y = 1 + static_cast<int>(rng_.below(8));
  if (s.num_divers < kMaxDiverEntities) s.divers[s.num_divers++] = Mover{right ? 0 : kLast, y, right ? 1 : 0,
                                                                          kDiverMoveInterval, 0};
}

// Surfacing with divers: a full load (6) scores the remaining oxygen in tenths; every surfacing
// refills oxygen, drops one diver and ramps the difficulty.
int Seaquest::surface() {
  State& s = state_;
  s.surface = 1;
  int reward = 0;
  if (s.diver_count == kMaxDivers) {
    s.diver_count = 0;
    reward = s.oxygen * 10 / kMaxOxygen;
  }
  s.oxygen = kMaxOxygen;
  s.diver_count -= 1;  // after a full load this leaves -1, as the reference
  if (difficulty_ramping_ && (s.e_spawn_speed > 1 || s.move_speed > 2)) {
    if (s.move_speed > 2 && s.ramp_index % 2 == 1) --s.move_speed;
    if (s.e_spawn_speed > 1) --s.e_spawn_speed;
    ++s.ramp_index;
  }
  return reward;
}

StepResult Seaquest::do_step(const void* action, void* obs) {
  int64_t a;
  std::memcpy(&a, action, sizeof(a));
  State& s = state_;
  if (sticky_action_prob_ > 0 && rng_.uniform() < sticky_action_prob_) a = s.last_action;
  s.last_action = static_cast<int32_t>(a);
  int reward = 0;
  bool terminal = false;

  if (s.e_spawn_timer == 0) {
    spawn_enemy();
    s.e_spawn_timer = s.e_spawn_speed;
  }
  if (s.d_spawn_timer == 0) {
    spawn_diver();
    s.d_spawn_timer = kDiverSpawnSpeed;
  }

  // The player: fire (when the gun is ready) or move; moving sideways turns the sub.
  if (a == kFire && s.shot_timer == 0) {
    if (s.num_f_bullets < kMaxFriendlyBullets) s.f_bullets[s.num_f_bullets++] = Bullet{s.sub_x, s.sub_y, s.sub_right};
    s.shot_timer = kShotCoolDown;
  } else if (a == kLeft) {
    s.sub_x = std::max(0, s.sub_x - 1);
    s.sub_right = 0;
  } else if (a == kRight) {
    s.sub_x = std::min(kLast, s.sub_x + 1);
    s.sub_right = 1;
  } else if (a == kUp) {
    s.sub_y = std::max(0, s.sub_y - 1);
  } else if (a == kDown) {
    s.sub_y = std::min(kLowestRow, s.sub_y + 1);
  }
  const int px = s.sub_x, py = s.sub_y;

  // Friendly bullets fly one cell and destroy the first fish, else the first sub, they land on.
  for (int i = s.num_f_bullets - 1; i >= 0; --i) {
    Bullet& b = s.f_bullets[i];
    b.x += step_of(b.right);
    if (!on_grid(b.x)) {
      erase_at(s.f_bullets, s.num_f_bullets, i);
      continue;
    }
    if (int f = find_at(s.fish, s.num_fish, b.x, b.y); f >= 0) {
      erase_at(s.fish, s.num_fish, f);
      erase_at(s.f_bullets, s.num_f_bullets, i);
      ++reward;
    } else if (int e = find_at(s.subs, s.num_subs, b.x, b.y); e >= 0) {
      erase_at(s.subs, s.num_subs, e);
      erase_at(s.f_bullets, s.num_f_bullets, i);
      ++reward;
    }
  }

  // Divers are picked up when the sub is on them (before or after they move), while it has room.
  for (int i = s.num_divers - 1; i >= 0; --i) {
    Mover& d = s.divers[i];
    if (d.x == px && d.y == py && s.diver_count < kMaxDivers) {
      erase_at(s.divers, s.num_divers, i);
      ++s.diver_count;
      continue;
    }
    if (d.move_timer > 0) {
      --d.move_timer;
      continue;
    }
    d.move_timer = kDiverMoveInterval;
    d.x += step_of(d.right);
    if (!on_grid(d.x)) {
      erase_at(s.divers, s.num_divers, i);
    } else if (d.x == px && d.y == py && s.diver_count < kMaxDivers) {
      erase_at(s.divers, s.num_divers, i);
      ++s.diver_count;
    }
  }

  // Enemy subs: contact is terminal; moving onto a friendly bullet destroys both (+1). A sub fires
  // when its shot timer is due, even on the step it is destroyed (as the reference).
  for (int i = s.num_subs - 1; i >= 0; --i) {
    Mover& e = s.subs[i];
    bool removed = false;
    if (e.x == px && e.y == py) terminal = true;
    if (e.move_timer == 0) {
      e.move_timer = s.move_speed;
      e.x += step_of(e.right);
      if (!on_grid(e.x)) {
        removed = true;
      } else if (e.x == px && e.y == py) {
        terminal = true;
      } else if (int b = find_at(s.f_bullets, s.num_f_bullets, e.x, e.y); b >= 0) {
        erase_at(s.f_bullets, s.num_f_bullets, b);
        removed = true;
        ++reward;
      }
    } else {
      --e.move_timer;
    }
    if (e.shot_timer == 0) {
      e.shot_timer = kEnemyShotInterval;
      // A shot from beyond the edge would leave the grid at once; the reference drops it then.
      if (on_grid(e.x) && s.num_e_bullets < kMaxEnemyBullets) s.e_bullets[s.num_e_bullets++] = Bullet{e.x, e.y, e.right};
    } else {
      --e.shot_timer;
    }
    if (removed) erase_at(s.subs, s.num_subs, i);
  }

  // Enemy bullets hit the sub where they are and where they land.
  for (int i = s.num_e_bullets - 1; i >= 0; --i) {
    Bullet& b = s.e_bullets[i];
    if (b.x == px && b.y == py) terminal = true;
    b.x += step_of(b.right);
    if (!on_grid(b.x)) {
      erase_at(s.e_bullets, s.num_e_bullets, i);
    } else if (b.x == px && b.y == py) {
      terminal = true;
    }
  }

  // Enemy fish: as subs, without shooting.
  for (int i = s.num_fish - 1; i >= 0; --i) {
    Mover& f = s.fish[i];
    if (f.x == px && f.y == py) terminal = true;
    if (f.move_timer > 0) {
      --f.move_timer;
      continue;
    }
    f.move_timer = s.move_speed;
    f.x += step_of(f.right);
    if (!on_grid(f.x)) {
      erase_at(s.fish, s.num_fish, i);
    } else if (f.x == px && f.y == py) {
      terminal = true;
    } else if (int b = find_at(s.f_bullets, s.num_f_bullets, f.x, f.y); b >= 0) {
      erase_at(s.f_bullets, s.num_f_bullets, b);
      erase_at(s.fish, s.num_fish, i);
      ++reward;
    }
  }

  if (s.e_spawn_timer > 0) --s.e_spawn_timer;
  if (s.d_spawn_timer > 0) --s.d_spawn_timer;
  if (s.shot_timer > 0) --s.shot_timer;

  // Oxygen runs out one step after the gauge reaches 0; it is only used while submerged.
  if (s.oxygen <= 0) terminal = true;
  if (s.sub_y > 0) {
    --s.oxygen;
    s.surface = 0;
  } else if (!s.surface) {
    if (s.diver_count == 0) {
      terminal = true;
    } else {
      reward += surface();
    }
  }

  render(s, static_cast<uint8_t*>(obs));
  return {static_cast<float>(reward), terminal, false};
}

void Seaquest::render(const State& s, uint8_t* obs) {
  std::memset(obs, 0, static_cast<size_t>(kSize * kSize * kChannels));
  auto set = [obs](int y, int x, int c) { obs[(y * kSize + x) * kChannels + c] = 1; };
  // Entities leave a trail in the cell behind them, showing their direction.
  auto set_with_trail = [&set](const Mover& m, int c) {
    set(m.y, m.x, c);
    const int back = m.x - step_of(m.right);
    if (on_grid(back)) set(m.y, back, kTrail);
  };
  set(s.sub_y, s.sub_x, kSubFront);
  const int back = s.sub_x - step_of(s.sub_right);
  if (on_grid(back)) set(s.sub_y, back, kSubBack);
  const int oxygen_cells = std::min(kSize, std::max(0, s.oxygen) * 10 / kMaxOxygen);
  for (int x = 0; x < oxygen_cells; ++x) set(kLast, x, kOxygenGauge);
  for (int x = std::max(0, kLast - s.diver_count); x < kLast; ++x) set(kLast, x, kDiverGauge);
  for (int i = 0; i < s.num_f_bullets; ++i) set(s.f_bullets[i].y, s.f_bullets[i].x, kFriendlyBullet);
  for (int i = 0; i < s.num_e_bullets; ++i) set(s.e_bullets[i].y, s.e_bullets[i].x, kEnemyBullet);
  for (int i = 0; i < s.num_fish; ++i) set_with_trail(s.fish[i], kEnemyFish);
  for (int i = 0; i < s.num_subs; ++i) set_with_trail(s.subs[i], kEnemySub);
  for (int i = 0; i < s.num_divers; ++i) set_with_trail(s.divers[i], kDiver);
}

void Seaquest::do_snapshot(std::vector<uint8_t>* out) const {
  put_state(out, state_, rng_);
}

bool Seaquest::do_restore(const uint8_t*& in, const uint8_t* end) {
  return get_state(in, end, &state_, &rng_);
}

}  // namespace orchard::envs::games
