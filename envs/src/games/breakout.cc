#include "games/breakout.h"

#include "games/minatar.h"

#include <algorithm>
#include <cstring>

namespace orchard::envs::games {
namespace {

constexpr const char* kName = "MinAtar-Breakout-v1";

// Per Direction: the step, and the direction after a reflection.
constexpr int kDx[4] = {-1, +1, +1, -1};
constexpr int kDy[4] = {-1, -1, +1, +1};
constexpr uint8_t kReflectX[4] = {1, 0, 3, 2};  // off a side wall
constexpr uint8_t kReflectY[4] = {3, 2, 1, 0};  // off the top wall, a brick, or the paddle's centre
constexpr uint8_t kReverse[4] = {2, 3, 0, 1};   // off the paddle's edge: back the way it came

EnvSpec breakout_spec(const EnvOptions& o) {
  return minatar_spec(kName, Breakout::kChannels, 3, o,
                      "MinAtar Breakout (Young & Tian 2019, kenjyoung/MinAtar breakout.py), minimal action set");
}

}  // namespace

Breakout::Breakout(const EnvOptions& options)
    : Env(breakout_spec(options)),
      sticky_action_prob_(options.get_double(kName, "sticky_action_prob", 0.1, 0.0, 1.0)),
      full_action_space_(action_space().n == 6) {
  // Accepted for a uniform MinAtar interface; Breakout has no difficulty ramp (as MinAtar).
  options.get_bool(kName, "difficulty_ramping", true);
}

void Breakout::do_reset(std::optional<uint64_t> seed, void* obs) {
  if (seed) rng_.seed(*seed);
  State s{};
  s.ball_y = kBallStartRow;
  // The ball starts in the left column heading down-right, or the right one heading down-left.
  if (rng_.bernoulli(0.5)) {
    s.ball_x = kSize - 1;
    s.ball_dir = kDownLeft;
  } else {
    s.ball_x = 0;
    s.ball_dir = kDownRight;
  }
  s.last_x = s.ball_x;
  s.last_y = s.ball_y;
  s.paddle_x = kPaddleStart;
  for (int r = kBrickRowFirst; r <= kBrickRowLast; ++r) s.bricks[r] = kFullRow;
  s.strike = false;
  s.last_action = kNoop;
  state_ = s;
  write_obs(obs);
}

StepResult Breakout::advance(uint8_t action) {
  State& s = state_;
  StepResult out;
  if (action == kLeft) s.paddle_x = static_cast<int8_t>(std::max(0, s.paddle_x - 1));
  if (action == kRight) s.paddle_x = static_cast<int8_t>(std::min(kSize - 1, s.paddle_x + 1));

  s.last_x = s.ball_x;
  s.last_y = s.ball_y;
  int nx = s.ball_x + kDx[s.ball_dir];
  int ny = s.ball_y + kDy[s.ball_dir];
  bool hit_brick = false;
  if (nx < 0 || nx > kSize - 1) {
    nx = std::clamp(nx, 0, kSize - 1);
    s.ball_dir = kReflectX[s.ball_dir];
  }
  if (ny < 0) {
    ny = 0;
    s.ball_dir = kReflectY[s.ball_dir];
  } else if (s.bricks[ny] >> nx & 1u) {
    hit_brick = true;
    if (!s.strike) {
      out.reward = 1.0f;
      s.strike = true;
      s.bricks[ny] = static_cast<uint16_t>(s.bricks[ny] & ~(1u << nx));
      ny = s.last_y;
      s.ball_dir = kReflectY[s.ball_dir];
    }
  } else if (ny == kPaddleRow) {
    bool cleared = true;
    for (uint16_t row : s.bricks) cleared = cleared && row == 0;
    if (cleared) {
      for (int r = kBrickRowFirst; r <= kBrickRowLast; ++r) s.bricks[r] = kFullRow;
    }
    if (s.ball_x == s.paddle_x) {
      s.ball_dir = kReflectY[s.ball_dir];
      ny = s.last_y;
    } else if (nx == s.paddle_x) {
      s.ball_dir = kReverse[s.ball_dir];
      ny = s.last_y;
    } else {
      out.terminated = true;
    }
  }
  if (!hit_brick) s.strike = false;
  s.ball_x = static_cast<int8_t>(nx);
  s.ball_y = static_cast<int8_t>(ny);
  return out;
}

StepResult Breakout::do_step(const void* action, void* obs) {
  int64_t a;
  std::memcpy(&a, action, sizeof(a));
  const uint8_t full =
      sticky_full_action(a, full_action_space_, kMinimalActions, sticky_action_prob_, rng_, &state_.last_action);
  StepResult r = advance(full);
  write_obs(obs);
  return r;
}

void Breakout::write_obs(void* obs) const {
  uint8_t* o = static_cast<uint8_t*>(obs);
  std::memset(o, 0, kSize * kSize * kChannels);
  auto set = [o](int row, int col, int ch) { o[(row * kSize + col) * kChannels + ch] = 1; };
  set(state_.ball_y, state_.ball_x, kBallChannel);
  set(kPaddleRow, state_.paddle_x, kPaddleChannel);
  set(state_.last_y, state_.last_x, kTrailChannel);
  for (int r = 0; r < kSize; ++r) {
    for (unsigned bits = state_.bricks[r]; bits != 0; bits &= bits - 1) set(r, __builtin_ctz(bits), kBrickChannel);
  }
}

void Breakout::do_snapshot(std::vector<uint8_t>* out) const {
  put_state(out, state_, rng_);
}

bool Breakout::do_restore(const uint8_t*& in, const uint8_t* end) {
  return get_state(in, end, &state_, &rng_);
}

}  // namespace orchard::envs::games
