#include "games/asterix.h"

#include "games/minatar.h"

#include <algorithm>
#include <cstring>

namespace orchard::envs::games {
namespace {

constexpr const char* kName = "MinAtar-Asterix-v1";

EnvSpec asterix_spec(const EnvOptions& o) {
  return minatar_spec(kName, Asterix::kChannels, 5, o,
                      "MinAtar Asterix (Young & Tian 2019, kenjyoung/MinAtar asterix.py), minimal action set");
}

}  // namespace

Asterix::Asterix(const EnvOptions& options)
    : Env(asterix_spec(options)),
      sticky_action_prob_(options.get_double(kName, "sticky_action_prob", 0.1, 0.0, 1.0)),
      ramping_(options.get_bool(kName, "difficulty_ramping", true)),
      full_action_space_(action_space().n == 6) {}

void Asterix::do_reset(std::optional<uint64_t> seed, void* obs) {
  if (seed) rng_.seed(*seed);
  State s{};
  s.player_x = kPlayerStart;
  s.player_y = kPlayerStart;
  s.spawn_speed = kInitSpawnSpeed;
  s.spawn_timer = s.spawn_speed;
  s.move_speed = kInitMoveSpeed;
  s.move_timer = s.move_speed;
  s.ramp_timer = kRampInterval;
  s.ramp_index = 0;
  s.last_action = kNoop;
  state_ = s;
  write_obs(obs);
}

void Asterix::spawn_entity() {
  // MinAtar draws the side and the kind before looking for a free lane.
  const bool from_left = rng_.bernoulli(0.5);
  const bool gold = rng_.bernoulli(kGoldProb);
  int free = 0;
  for (const Entity& e : state_.lanes) free += !e.alive;
  if (free == 0) return;
  int pick = static_cast<int>(rng_.below(static_cast<uint64_t>(free)));
  for (Entity& e : state_.lanes) {
    if (e.alive) continue;
    if (pick-- == 0) {
      e = Entity{true, from_left, gold, static_cast<int8_t>(from_left ? 0 : kSize - 1)};
      return;
    }
  }
}

void Asterix::touch(Entity& e, StepResult& out) const {
  if (e.gold) {
    e.alive = false;
    out.reward += 1.0f;
  } else {
    out.terminated = true;
  }
}

StepResult Asterix::advance(uint8_t action) {
  State& s = state_;
  StepResult out;
  if (s.spawn_timer == 0) {
    spawn_entity();
    s.spawn_timer = s.spawn_speed;
  }

  if (action == kLeft) s.player_x = std::max(0, s.player_x - 1);
  if (action == kRight) s.player_x = std::min(kSize - 1, s.player_x + 1);
  if (action == kUp) s.player_y = std::max(kPlayerMinRow, s.player_y - 1);
  if (action == kDown) s.player_y = std::min(kPlayerMaxRow, s.player_y + 1);

  // The player may have stepped onto an entity...
  const int lane_of_player = s.player_y - 1;
  Entity& beside = s.lanes[lane_of_player];
  if (beside.alive && beside.x == s.player_x) touch(beside, out);
  // ... and entities move onto the player.
  if (s.move_timer == 0) {
    s.move_timer = s.move_speed;
    for (int i = 0; i < kLanes; ++i) {
      Entity& e = s.lanes[i];
      if (!e.alive) continue;
      e.x = static_cast<int8_t>(e.x + (e.moving_right ? 1 : -1));
      if (e.x < 0 || e.x > kSize - 1) {
        e.alive = false;
      } else if (i == lane_of_player && e.x == s.player_x) {
        touch(e, out);
      }
    }
  }

  --s.spawn_timer;
  --s.move_timer;

  if (ramping_ && (s.spawn_speed > 1 || s.move_speed > 1)) {
    if (s.ramp_timer >= 0) {
      --s.ramp_timer;
    } else {
      if (s.move_speed > 1 && s.ramp_index % 2 == 1) --s.move_speed;
      if (s.spawn_speed > 1) --s.spawn_speed;
      ++s.ramp_index;
      s.ramp_timer = kRampInterval;
    }
  }
  return out;
}

StepResult Asterix::do_step(const void* action, void* obs) {
  int64_t a;
  std::memcpy(&a, action, sizeof(a));
  const uint8_t full =
      sticky_full_action(a, full_action_space_, kMinimalActions, sticky_action_prob_, rng_, &state_.last_action);
  StepResult r = advance(full);
  write_obs(obs);
  return r;
}

void Asterix::write_obs(void* obs) const {
  uint8_t* o = static_cast<uint8_t*>(obs);
  std::memset(o, 0, kSize * kSize * kChannels);
  auto set = [o](int row, int col, int ch) { o[(row * kSize + col) * kChannels + ch] = 1; };
  set(state_.player_y, state_.player_x, kPlayerChannel);
  for (int i = 0; i < kLanes; ++i) {
    const Entity& e = state_.lanes[i];
    if (!e.alive) continue;
    set(i + 1, e.x, e.gold ? kGoldChannel : kEnemyChannel);
    const int back = e.moving_right ? e.x - 1 : e.x + 1;
    if (back >= 0 && back < kSize) set(i + 1, back, kTrailChannel);
  }
}

void Asterix::info(std::vector<std::pair<std::string, double>>* out) const {
  out->emplace_back("difficulty_ramp", static_cast<double>(state_.ramp_index));
}

void Asterix::do_snapshot(std::vector<uint8_t>* out) const {
  put_state(out, state_, rng_);
}

bool Asterix::do_restore(const uint8_t*& in, const uint8_t* end) {
  return get_state(in, end, &state_, &rng_);
}

}  // namespace orchard::envs::games
