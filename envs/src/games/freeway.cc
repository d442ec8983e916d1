#include "games/freeway.h"

#include "games/minatar.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace orchard::envs::games {
namespace {

constexpr const char* kName = "MinAtar-Freeway-v1";

EnvSpec freeway_spec(const EnvOptions& o) {
  return minatar_spec(kName, Freeway::kChannels, 3, o,
                      "MinAtar Freeway (Young & Tian 2019, kenjyoung/MinAtar freeway.py), minimal action set");
}

}  // namespace

Freeway::Freeway(const EnvOptions& options)
    : Env(freeway_spec(options)),
      sticky_action_prob_(options.get_double(kName, "sticky_action_prob", 0.1, 0.0, 1.0)),
      full_action_space_(action_space().n == 6) {
  // Accepted for a uniform MinAtar interface; Freeway has no difficulty ramp (as MinAtar).
  options.get_bool(kName, "difficulty_ramping", true);
}

void Freeway::randomize_cars(bool place) {
  for (Car& car : state_.cars) {
    const int32_t speed = 1 + static_cast<int32_t>(rng_.below(kMaxCarSpeed));
    car.speed = rng_.bernoulli(0.5) ? speed : -speed;
    car.timer = speed;
    if (place) car.x = 0;
  }
}

void Freeway::do_reset(std::optional<uint64_t> seed, void* obs) {
  if (seed) rng_.seed(*seed);
  state_ = State{};
  randomize_cars(true);
  state_.pos = kSize - 1;
  state_.move_timer = kPlayerSpeed;
  state_.terminate_timer = kTimeLimit;
  state_.last_action = kNoop;
  write_obs(obs);
}

StepResult Freeway::advance(uint8_t action) {
  State& s = state_;
  StepResult out;
  if (action == kUp && s.move_timer == 0) {
    s.move_timer = kPlayerSpeed;
    s.pos = std::max(0, s.pos - 1);
  } else if (action == kDown && s.move_timer == 0) {
    s.move_timer = kPlayerSpeed;
    s.pos = std::min(kSize - 1, s.pos + 1);
  }

  if (s.pos == 0) {
    out.reward = 1.0f;
    randomize_cars(false);
    s.pos = kSize - 1;
  }

  for (int i = 0; i < kCars; ++i) {
    Car& car = s.cars[i];
    const int row = i + 1;
    if (car.x == kChickenX && row == s.pos) s.pos = kSize - 1;
    if (car.timer == 0) {
      car.timer = std::abs(car.speed);
      car.x += car.speed > 0 ? 1 : -1;
      if (car.x < 0) car.x = kSize - 1;
      if (car.x > kSize - 1) car.x = 0;
      if (car.x == kChickenX && row == s.pos) s.pos = kSize - 1;
    } else {
      --car.timer;
    }
  }

  if (s.move_timer > 0) --s.move_timer;
  if (--s.terminate_timer < 0) out.terminated = true;
  return out;
}

StepResult Freeway::do_step(const void* action, void* obs) {
  int64_t a;
  std::memcpy(&a, action, sizeof(a));
  const uint8_t full =
      sticky_full_action(a, full_action_space_, kMinimalActions, sticky_action_prob_, rng_, &state_.last_action);
  StepResult r = advance(full);
  write_obs(obs);
  return r;
}

void Freeway::write_obs(void* obs) const {
  uint8_t* o = static_cast<uint8_t*>(obs);
  std::memset(o, 0, kSize * kSize * kChannels);
  auto set = [o](int row, int col, int ch) { o[(row * kSize + col) * kChannels + ch] = 1; };
  set(state_.pos, kChickenX, kChickenChannel);
  for (int i = 0; i < kCars; ++i) {
    const Car& car = state_.cars[i];
    set(i + 1, car.x, kCarChannel);
    int back = car.speed > 0 ? car.x - 1 : car.x + 1;
    if (back < 0) back = kSize - 1;
    if (back > kSize - 1) back = 0;
    set(i + 1, back, kSpeedChannel + std::abs(car.speed) - 1);
  }
}

void Freeway::do_snapshot(std::vector<uint8_t>* out) const {
  put_state(out, state_, rng_);
}

bool Freeway::do_restore(const uint8_t*& in, const uint8_t* end) {
  return get_state(in, end, &state_, &rng_);
}

}  // namespace orchard::envs::games
