#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "games/asterix.h"
#include "games/breakout.h"
#include "games/freeway.h"
#include "games/space_invaders.h"
#include "orchard/envs/check.h"
#include "orchard/envs/registry.h"

using namespace orchard::envs;
using orchard::EnvError;
using games::Asterix;
using games::Breakout;
using games::Freeway;
using games::SpaceInvaders;

namespace {

// Hand-built states are stepped without sticky actions unless a test says otherwise.
EnvOptions no_sticky() { return EnvOptions::parse({"sticky_action_prob=0"}); }

// A grid observation: uint8 [10, 10, channels], channel-last.
struct Grid {
  std::vector<uint8_t> bytes;
  int channels;
  explicit Grid(const Env& env)
      : bytes(env.observation_space().nbytes()), channels(static_cast<int>(env.observation_space().shape[2])) {}
  uint8_t* data() { return bytes.data(); }
  bool at(int row, int col, int ch) const { return bytes[static_cast<size_t>((row * 10 + col) * channels + ch)] != 0; }
  int count(int ch) const {
    int n = 0;
    for (int r = 0; r < 10; ++r) {
      for (int c = 0; c < 10; ++c) n += at(r, c, ch);
    }
    return n;
  }
};

StepResult act(Env& env, int64_t action, Grid& obs) { return env.step(&action, obs.data()); }

template <class E>
void expect_conformant(const std::vector<std::string>& options) {
  auto rep = check_env([&] { return std::make_unique<E>(EnvOptions::parse(options)); });
  for (const auto& f : rep.failures) ADD_FAILURE() << f;
  EXPECT_TRUE(rep.ok());
}

template <class E>
void expect_spaces(int channels, int minimal_actions) {
  E env(EnvOptions{});
  const Space& os = env.observation_space();
  EXPECT_EQ(os.kind, SpaceKind::kBox);
  EXPECT_EQ(os.dtype, orchard::core::DType::kUInt8);
  EXPECT_EQ(os.shape, (std::vector<int64_t>{10, 10, channels}));
  EXPECT_EQ(os.low.front(), 0.0);
  EXPECT_EQ(os.high.front(), 1.0);
  EXPECT_EQ(env.action_space().kind, SpaceKind::kDiscrete);
  EXPECT_EQ(env.action_space().n, minimal_actions);
  EXPECT_EQ(env.spec().max_episode_steps, 10000);
  E full(EnvOptions::parse({"full_action_space=true"}));
  EXPECT_EQ(full.action_space().n, 6);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Conformance and spaces

TEST(Games, AllFourPassTheConformanceCheck) {
  expect_conformant<Breakout>({});
  expect_conformant<Asterix>({});
  expect_conformant<Freeway>({});
  expect_conformant<SpaceInvaders>({});
}

TEST(Games, PassTheConformanceCheckWithTheFullActionSetAndNoStickiness) {
  for (const std::vector<std::string>& o :
       {std::vector<std::string>{"full_action_space=true"}, std::vector<std::string>{"sticky_action_prob=0"},
        std::vector<std::string>{"difficulty_ramping=false", "max_episode_steps=50"}}) {
    expect_conformant<Breakout>(o);
    expect_conformant<Asterix>(o);
    expect_conformant<Freeway>(o);
    expect_conformant<SpaceInvaders>(o);
  }
}

TEST(Games, ObservationsAreMinAtarChannelLastBooleanGridsAndActionsTheMinimalSets) {
  expect_spaces<Breakout>(4, 3);
  expect_spaces<Asterix>(4, 5);
  expect_spaces<Freeway>(7, 3);
  expect_spaces<SpaceInvaders>(6, 4);
}

// ---------------------------------------------------------------------------------------------
// Breakout

namespace {

// A Breakout state with the ball at (x, y) heading `dir`, no bricks, the paddle at `paddle`.
Breakout::State breakout_state(int x, int y, int dir, int paddle) {
  Breakout::State s{};
  s.ball_x = static_cast<int8_t>(x);
  s.ball_y = static_cast<int8_t>(y);
  s.last_x = s.ball_x;
  s.last_y = s.ball_y;
  s.ball_dir = static_cast<uint8_t>(dir);
  s.paddle_x = static_cast<int8_t>(paddle);
  return s;
}

constexpr int64_t kBreakoutNoop = 0, kBreakoutLeft = 1, kBreakoutRight = 2;

}  // namespace

TEST(Breakout, ResetPlacesBallPaddleAndThreeRowsOfBricks) {
  Breakout env(no_sticky());
  Grid obs(env);
  std::set<int> start_columns;
  for (uint64_t seed = 0; seed < 32; ++seed) {
    env.reset(seed, obs.data());
    const auto& s = env.state();
    EXPECT_EQ(s.ball_y, 3);
    EXPECT_TRUE((s.ball_x == 0 && s.ball_dir == Breakout::kDownRight) ||
                (s.ball_x == 9 && s.ball_dir == Breakout::kDownLeft));
    start_columns.insert(s.ball_x);
    EXPECT_TRUE(obs.at(9, 4, Breakout::kPaddleChannel));
    EXPECT_TRUE(obs.at(3, s.ball_x, Breakout::kBallChannel));
    EXPECT_TRUE(obs.at(3, s.ball_x, Breakout::kTrailChannel));
    EXPECT_EQ(obs.count(Breakout::kBrickChannel), 30);
    for (int c = 0; c < 10; ++c) {
      EXPECT_TRUE(obs.at(1, c, Breakout::kBrickChannel) && obs.at(3, c, Breakout::kBrickChannel));
    }
  }
  EXPECT_EQ(start_columns.size(), 2u);
}

TEST(Breakout, BallBouncesOffTheSideAndTopWalls) {
  Breakout env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  // Into the left wall: the ball stays in column 0 for a step and turns right.
  env.set_state(breakout_state(0, 5, Breakout::kUpLeft, 4));
  act(env, kBreakoutNoop, obs);
  EXPECT_EQ(env.state().ball_x, 0);
  EXPECT_EQ(env.state().ball_y, 4);
  EXPECT_EQ(env.state().ball_dir, Breakout::kUpRight);
  EXPECT_TRUE(obs.at(4, 0, Breakout::kBallChannel));
  EXPECT_TRUE(obs.at(5, 0, Breakout::kTrailChannel));
  // Into the right wall, heading down.
  env.set_state(breakout_state(9, 5, Breakout::kDownRight, 4));
  act(env, kBreakoutNoop, obs);
  EXPECT_EQ(env.state().ball_x, 9);
  EXPECT_EQ(env.state().ball_y, 6);
  EXPECT_EQ(env.state().ball_dir, Breakout::kDownLeft);
  // Into the top wall: the ball stays in row 0 and turns down.
  env.set_state(breakout_state(5, 0, Breakout::kUpRight, 4));
  act(env, kBreakoutNoop, obs);
  EXPECT_EQ(env.state().ball_x, 6);
  EXPECT_EQ(env.state().ball_y, 0);
  EXPECT_EQ(env.state().ball_dir, Breakout::kDownRight);
  // Into the corner: both reflections.
  env.set_state(breakout_state(0, 0, Breakout::kUpLeft, 4));
  act(env, kBreakoutNoop, obs);
  EXPECT_EQ(env.state().ball_x, 0);
  EXPECT_EQ(env.state().ball_y, 0);
  EXPECT_EQ(env.state().ball_dir, Breakout::kDownRight);
}

TEST(Breakout, BallBouncesOffThePaddle) {
  Breakout env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  // Paddle under the ball's column: straight reflection, the ball keeps its sideways motion.
  Breakout::State s = breakout_state(4, 8, Breakout::kDownRight, 4);
  s.bricks[1] = 1;  // keep a brick so the rows are not refilled
  env.set_state(s);
  StepResult r = act(env, kBreakoutNoop, obs);
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(env.state().ball_x, 5);
  EXPECT_EQ(env.state().ball_y, 8);
  EXPECT_EQ(env.state().ball_dir, Breakout::kUpRight);
  // Paddle under the ball's next column: it goes back the way it came.
  s = breakout_state(3, 8, Breakout::kDownRight, 4);
  s.bricks[1] = 1;
  env.set_state(s);
  r = act(env, kBreakoutNoop, obs);
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(env.state().ball_x, 4);
  EXPECT_EQ(env.state().ball_y, 8);
  EXPECT_EQ(env.state().ball_dir, Breakout::kUpLeft);
  // The paddle moves first: stepping right under the ball saves it.
  s = breakout_state(6, 8, Breakout::kDownLeft, 4);
  s.bricks[1] = 1;
  env.set_state(s);
  r = act(env, kBreakoutRight, obs);
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(env.state().paddle_x, 5);
  EXPECT_TRUE(obs.at(9, 5, Breakout::kPaddleChannel));
  EXPECT_EQ(env.state().ball_dir, Breakout::kUpRight);
  EXPECT_EQ(env.state().ball_y, 8);
}

TEST(Breakout, BallPassingThePaddleTerminates) {
  Breakout env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  Breakout::State s = breakout_state(0, 8, Breakout::kDownRight, 5);
  s.bricks[1] = 1;
  env.set_state(s);
  StepResult r = act(env, kBreakoutLeft, obs);
  EXPECT_TRUE(r.terminated);
  EXPECT_FALSE(r.truncated);
  EXPECT_EQ(r.reward, 0.0f);
  EXPECT_TRUE(obs.at(9, 1, Breakout::kBallChannel));
  EXPECT_TRUE(obs.at(9, 4, Breakout::kPaddleChannel));
  EXPECT_THROW(act(env, kBreakoutNoop, obs), EnvError);
}

TEST(Breakout, BreakingABrickGivesOneRemovesItAndBouncesTheBall) {
  Breakout env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  Breakout::State s = breakout_state(5, 5, Breakout::kUpRight, 4);
  s.bricks[4] = 1u << 6 | 1u << 0;
  s.bricks[6] = 1u << 7;
  env.set_state(s);
  StepResult r = act(env, kBreakoutNoop, obs);
  EXPECT_EQ(r.reward, 1.0f);
  EXPECT_FALSE(obs.at(4, 6, Breakout::kBrickChannel));
  EXPECT_TRUE(obs.at(4, 0, Breakout::kBrickChannel));
  EXPECT_EQ(env.state().ball_x, 6);
  EXPECT_EQ(env.state().ball_y, 5);  // back to its own row
  EXPECT_EQ(env.state().ball_dir, Breakout::kDownRight);
  EXPECT_TRUE(env.state().strike);
  // MinAtar's strike rule: a brick met on the very next step is entered, not broken.
  r = act(env, kBreakoutNoop, obs);
  EXPECT_EQ(r.reward, 0.0f);
  EXPECT_EQ(env.state().ball_x, 7);
  EXPECT_EQ(env.state().ball_y, 6);
  EXPECT_TRUE(obs.at(6, 7, Breakout::kBrickChannel));
  EXPECT_TRUE(obs.at(6, 7, Breakout::kBallChannel));
  r = act(env, kBreakoutNoop, obs);
  EXPECT_EQ(r.reward, 0.0f);
  EXPECT_FALSE(env.state().strike);
}

TEST(Breakout, ClearedBricksAreRefilledWhenTheBallReachesTheBottom) {
  Breakout env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  env.set_state(breakout_state(2, 6, Breakout::kDownRight, 4));
  act(env, kBreakoutNoop, obs);
  EXPECT_EQ(obs.count(Breakout::kBrickChannel), 0);  // not yet: the ball is in row 7
  act(env, kBreakoutNoop, obs);
  EXPECT_EQ(obs.count(Breakout::kBrickChannel), 0);  // row 8
  StepResult r = act(env, kBreakoutNoop, obs);       // the paddle bounces it back from row 9
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(obs.count(Breakout::kBrickChannel), 30);
  for (int row = 1; row <= 3; ++row) EXPECT_EQ(env.state().bricks[row], Breakout::kFullRow);
  // Refilling happens even when the ball is then lost.
  env.set_state(breakout_state(0, 8, Breakout::kDownRight, 9));
  r = act(env, kBreakoutNoop, obs);
  EXPECT_TRUE(r.terminated);
  EXPECT_EQ(obs.count(Breakout::kBrickChannel), 30);
}

// ---------------------------------------------------------------------------------------------
// Sticky actions and action sets

TEST(StickyActions, WithProbabilityOneThePreviousActionRepeats) {
  Breakout env(EnvOptions::parse({"sticky_action_prob=1"}));
  Grid obs(env);
  env.reset(0, obs.data());
  Breakout::State s = env.state();
  s.last_action = Breakout::kRight;
  env.set_state(s);
  for (int t = 0; t < 4; ++t) act(env, kBreakoutLeft, obs);
  EXPECT_EQ(env.state().paddle_x, 8);  // 4 + 4 steps right, although left was asked
  EXPECT_EQ(env.state().last_action, Breakout::kRight);
  // A new episode starts from the no-op: with p = 1 the paddle then never moves.
  env.reset(0, obs.data());
  for (int t = 0; t < 4; ++t) act(env, kBreakoutRight, obs);
  EXPECT_EQ(env.state().paddle_x, 4);
}

TEST(StickyActions, WithProbabilityZeroTheChosenActionIsTaken) {
  Breakout env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  act(env, kBreakoutRight, obs);
  act(env, kBreakoutRight, obs);
  act(env, kBreakoutLeft, obs);
  EXPECT_EQ(env.state().paddle_x, 5);
}

TEST(StickyActions, RepeatWithTheConfiguredProbability) {
  for (double p : {0.1, 0.5}) {
    Freeway env(EnvOptions::parse({"sticky_action_prob=" + std::to_string(p)}));
    Grid obs(env);
    env.reset(5, obs.data());
    int repeats = 0, steps = 0;
    while (steps < 20000) {
      // Always ask for something other than the last action taken: a repeat is then visible.
      const int32_t last = env.state().last_action;
      const int64_t ask = last == Freeway::kUp ? 2 : 1;  // minimal set: 1 = up, 2 = down
      StepResult r = act(env, ask, obs);
      repeats += env.state().last_action == last;
      ++steps;
      if (r.terminated || r.truncated) env.reset(std::nullopt, obs.data());
    }
    EXPECT_NEAR(static_cast<double>(repeats) / steps, p, 0.015) << "p=" << p;
  }
}

TEST(ActionSets, MinimalActionsMapToMinAtarsFullSet) {
  Breakout b(no_sticky());
  Grid ob(b);
  b.reset(0, ob.data());
  act(b, 2, ob);  // r
  EXPECT_EQ(b.state().last_action, Breakout::kRight);
  Asterix a(no_sticky());
  Grid oa(a);
  a.reset(0, oa.data());
  act(a, 2, oa);  // u
  EXPECT_EQ(a.state().last_action, Asterix::kUp);
  EXPECT_EQ(a.state().player_y, 4);
  act(a, 4, oa);  // d
  EXPECT_EQ(a.state().player_y, 5);
  Freeway f(no_sticky());
  Grid of(f);
  f.reset(0, of.data());
  act(f, 2, of);  // d
  EXPECT_EQ(f.state().last_action, Freeway::kDown);
  SpaceInvaders si(no_sticky());
  Grid os(si);
  si.reset(0, os.data());
  act(si, 3, os);  // f
  EXPECT_EQ(si.state().last_action, SpaceInvaders::kFire);
  EXPECT_TRUE(os.at(8, 5, SpaceInvaders::kFriendlyBulletChannel));
}

TEST(ActionSets, TheFullActionSetIsNLURDF) {
  Breakout env(EnvOptions::parse({"full_action_space=true", "sticky_action_prob=0"}));
  Grid obs(env);
  env.reset(0, obs.data());
  act(env, 3, obs);  // r
  act(env, 3, obs);
  act(env, 5, obs);  // f: nothing in Breakout
  act(env, 2, obs);  // u: nothing in Breakout
  act(env, 1, obs);  // l
  EXPECT_EQ(env.state().paddle_x, 5);
  EXPECT_THROW(act(env, 6, obs), EnvError);
}

TEST(Games, ResetWithASeedReplaysTheEpisodeExactly) {
  Asterix env(EnvOptions{});
  Grid obs(env);
  Rng rng(3);
  std::vector<int64_t> actions(300);
  for (auto& a : actions) a = static_cast<int64_t>(rng.below(5));
  auto run = [&] {
    std::vector<uint8_t> trace;
    env.reset(11, obs.data());
    for (int64_t a : actions) {
      StepResult r = act(env, a, obs);
      trace.insert(trace.end(), obs.bytes.begin(), obs.bytes.end());
      trace.push_back(static_cast<uint8_t>(r.reward));
      if (r.terminated || r.truncated) break;
    }
    return trace;
  };
  auto first = run();
  auto second = run();  // the previous episode's last action does not leak into this one
  EXPECT_EQ(first, second);
}

// ---------------------------------------------------------------------------------------------
// Asterix

namespace {

constexpr int64_t kAsterixNoop = 0, kAsterixLeft = 1, kAsterixUp = 2, kAsterixRight = 3;

Asterix::State asterix_state(Asterix& env, Grid& obs) {
  env.reset(0, obs.data());
  Asterix::State s = env.state();
  s.spawn_timer = 1000;  // no spawns unless a test wants them
  return s;
}

}  // namespace

TEST(Asterix, CollectingGoldGivesOne) {
  Asterix env(no_sticky());
  Grid obs(env);
  // Gold moving onto the player.
  Asterix::State s = asterix_state(env, obs);
  s.move_timer = 0;
  s.lanes[4] = Asterix::Entity{true, false, true, 6};  // row 5, moving left from column 6
  env.set_state(s);
  StepResult r = act(env, kAsterixNoop, obs);
  EXPECT_EQ(r.reward, 1.0f);
  EXPECT_FALSE(r.terminated);
  EXPECT_FALSE(env.state().lanes[4].alive);
  EXPECT_EQ(obs.count(Asterix::kGoldChannel), 0);
  // The player stepping onto gold.
  s = asterix_state(env, obs);
  s.lanes[3] = Asterix::Entity{true, true, true, 5};  // row 4
  env.set_state(s);
  r = act(env, kAsterixUp, obs);
  EXPECT_EQ(r.reward, 1.0f);
  EXPECT_FALSE(r.terminated);
  EXPECT_TRUE(obs.at(4, 5, Asterix::kPlayerChannel));
  EXPECT_EQ(obs.count(Asterix::kGoldChannel), 0);
}

TEST(Asterix, TouchingAnEnemyTerminates) {
  Asterix env(no_sticky());
  Grid obs(env);
  Asterix::State s = asterix_state(env, obs);
  s.move_timer = 0;
  s.lanes[4] = Asterix::Entity{true, true, false, 4};  // row 5, moving right from column 4
  env.set_state(s);
  StepResult r = act(env, kAsterixNoop, obs);
  EXPECT_TRUE(r.terminated);
  EXPECT_TRUE(obs.at(5, 5, Asterix::kEnemyChannel));
  EXPECT_TRUE(obs.at(5, 4, Asterix::kTrailChannel));
  // Stepping onto an enemy between its moves.
  s = asterix_state(env, obs);
  s.lanes[4] = Asterix::Entity{true, false, false, 6};
  env.set_state(s);
  r = act(env, kAsterixRight, obs);
  EXPECT_TRUE(r.terminated);
  // An enemy passing in another lane does nothing.
  s = asterix_state(env, obs);
  s.move_timer = 0;
  s.lanes[5] = Asterix::Entity{true, true, false, 4};
  env.set_state(s);
  r = act(env, kAsterixNoop, obs);
  EXPECT_FALSE(r.terminated);
}

TEST(Asterix, EntitiesMoveEveryMoveSpeedFramesAndLeaveAtTheFarEdge) {
  Asterix env(no_sticky());
  Grid obs(env);
  Asterix::State s = asterix_state(env, obs);
  s.move_timer = 0;
  s.lanes[0] = Asterix::Entity{true, true, false, 8};
  s.lanes[7] = Asterix::Entity{true, false, true, 1};
  env.set_state(s);
  act(env, kAsterixLeft, obs);
  EXPECT_TRUE(obs.at(1, 9, Asterix::kEnemyChannel));
  EXPECT_TRUE(obs.at(8, 0, Asterix::kGoldChannel));
  EXPECT_TRUE(obs.at(8, 1, Asterix::kTrailChannel));
  EXPECT_EQ(obs.count(Asterix::kTrailChannel), 2);
  for (int t = 0; t < 4; ++t) act(env, kAsterixNoop, obs);  // move_speed 5: still in place
  EXPECT_TRUE(obs.at(1, 9, Asterix::kEnemyChannel));
  act(env, kAsterixNoop, obs);
  EXPECT_EQ(obs.count(Asterix::kEnemyChannel) + obs.count(Asterix::kGoldChannel), 0);
  EXPECT_FALSE(env.state().lanes[0].alive || env.state().lanes[7].alive);
}

TEST(Asterix, EntitiesSpawnEverySpawnSpeedFramesAtAnEdgeAndAboutAThirdAreGold) {
  Asterix env(no_sticky());
  Grid obs(env);
  int gold = 0, spawned = 0;
  for (uint64_t seed = 0; seed < 600; ++seed) {
    env.reset(seed, obs.data());
    for (int t = 0; t < 10; ++t) act(env, kAsterixNoop, obs);
    ASSERT_EQ(obs.count(Asterix::kEnemyChannel) + obs.count(Asterix::kGoldChannel), 0);
    act(env, kAsterixNoop, obs);  // frame 11 spawns, and is also a move frame
    int n = 0;
    for (int i = 0; i < Asterix::kLanes; ++i) {
      const auto& e = env.state().lanes[i];
      if (!e.alive) continue;
      ++n;
      EXPECT_EQ(e.x, e.moving_right ? 1 : 8);
      EXPECT_TRUE(obs.at(i + 1, e.x, e.gold ? Asterix::kGoldChannel : Asterix::kEnemyChannel));
      gold += e.gold;
    }
    ASSERT_EQ(n, 1);
    ++spawned;
  }
  EXPECT_NEAR(static_cast<double>(gold) / spawned, 1.0 / 3.0, 0.06);
  // With all 8 lanes taken nothing spawns.
  Asterix::State s = asterix_state(env, obs);
  for (int i = 0; i < Asterix::kLanes; ++i) s.lanes[i] = Asterix::Entity{true, true, true, 2};
  s.spawn_timer = 0;
  s.move_timer = 3;
  s.player_x = 9;
  env.set_state(s);
  act(env, kAsterixNoop, obs);
  EXPECT_EQ(obs.count(Asterix::kGoldChannel), 8);
}

TEST(Asterix, DifficultyRampsEvery102FramesUntilBothIntervalsAreOne) {
  Asterix env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  auto step_clear = [&] {
    // Keep the lanes empty so the player survives.
    Asterix::State s = env.state();
    for (auto& e : s.lanes) e.alive = false;
    env.set_state(s);
    ASSERT_FALSE(act(env, kAsterixNoop, obs).terminated);
  };
  // ramp k (after frame 102 k): spawn 10 - k; move 5, 5, 4, 4, 3, 3, 2, 2, 1.
  const int expected_move[10] = {5, 5, 4, 4, 3, 3, 2, 2, 1, 1};
  for (int k = 1; k <= 9; ++k) {
    for (int t = 0; t < 101; ++t) step_clear();
    EXPECT_EQ(env.difficulty_ramp(), k - 1);
    step_clear();
    EXPECT_EQ(env.difficulty_ramp(), k);
    EXPECT_EQ(env.state().spawn_speed, 10 - k);
    EXPECT_EQ(env.state().move_speed, expected_move[k]);
  }
  for (int t = 0; t < 500; ++t) step_clear();
  EXPECT_EQ(env.difficulty_ramp(), 9);
  EXPECT_EQ(env.state().spawn_speed, 1);
  EXPECT_EQ(env.state().move_speed, 1);
  std::vector<std::pair<std::string, double>> info;
  env.info(&info);
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(info[0].first, "difficulty_ramp");
  EXPECT_EQ(info[0].second, 9.0);

  Asterix flat(EnvOptions::parse({"sticky_action_prob=0", "difficulty_ramping=false"}));
  flat.reset(0, obs.data());
  for (int t = 0; t < 1000; ++t) {
    Asterix::State s = flat.state();
    for (auto& e : s.lanes) e.alive = false;
    flat.set_state(s);
    act(flat, kAsterixNoop, obs);
  }
  EXPECT_EQ(flat.difficulty_ramp(), 0);
  EXPECT_EQ(flat.state().spawn_speed, 10);
  EXPECT_EQ(flat.state().move_speed, 5);
}

// ---------------------------------------------------------------------------------------------
// Freeway

namespace {

constexpr int64_t kFreewayNoop = 0, kFreewayUp = 1, kFreewayDown = 2;

// Every car parked at column 0, moving right once every 6 frames.
Freeway::State freeway_state(int pos) {
  Freeway::State s{};
  s.pos = pos;
  s.terminate_timer = Freeway::kTimeLimit;
  for (auto& car : s.cars) car = Freeway::Car{0, 5, 5};
  return s;
}

}  // namespace

TEST(Freeway, ResetPutsTheChickenAtTheBottomAndCarsAtTheLeftEdge) {
  Freeway env(no_sticky());
  Grid obs(env);
  env.reset(1, obs.data());
  EXPECT_TRUE(obs.at(9, 4, Freeway::kChickenChannel));
  EXPECT_EQ(obs.count(Freeway::kChickenChannel), 1);
  for (int i = 0; i < Freeway::kCars; ++i) {
    const auto& car = env.state().cars[i];
    EXPECT_EQ(car.x, 0);
    EXPECT_GE(std::abs(car.speed), 1);
    EXPECT_LE(std::abs(car.speed), 5);
    EXPECT_EQ(car.timer, std::abs(car.speed));
    EXPECT_TRUE(obs.at(i + 1, 0, Freeway::kCarChannel));
    // The trail sits behind the car (wrapping) in the channel of its speed.
    EXPECT_TRUE(obs.at(i + 1, car.speed > 0 ? 9 : 1, Freeway::kSpeedChannel + std::abs(car.speed) - 1));
  }
}

TEST(Freeway, TheChickenMovesAtMostOnceEveryThreeFrames) {
  Freeway env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  env.set_state(freeway_state(9));
  std::vector<int> rows;
  for (int t = 0; t < 7; ++t) {
    act(env, kFreewayUp, obs);
    rows.push_back(env.state().pos);
  }
  EXPECT_EQ(rows, (std::vector<int>{8, 8, 8, 7, 7, 7, 6}));
  act(env, kFreewayDown, obs);  // the timer is still running
  EXPECT_EQ(env.state().pos, 6);
  act(env, kFreewayNoop, obs);
  act(env, kFreewayDown, obs);
  EXPECT_EQ(env.state().pos, 7);
}

TEST(Freeway, ReachingTheTopGivesOneReturnsToTheBottomAndRedrawsCarSpeeds) {
  Freeway env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  Freeway::State s = freeway_state(1);
  for (auto& car : s.cars) car.timer = 1000;  // frozen until redrawn
  env.set_state(s);
  StepResult r = act(env, kFreewayUp, obs);
  EXPECT_EQ(r.reward, 1.0f);
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(env.state().pos, 9);
  EXPECT_TRUE(obs.at(9, 4, Freeway::kChickenChannel));
  for (const auto& car : env.state().cars) {
    EXPECT_EQ(car.x, 0);                          // positions are kept
    EXPECT_LE(car.timer, std::abs(car.speed));    // timers restart from the new speed
  }
}

TEST(Freeway, BeingHitByACarSendsTheChickenBackToTheBottom) {
  Freeway env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  // A car driving into the chicken's cell.
  Freeway::State s = freeway_state(5);
  s.cars[4] = Freeway::Car{3, 0, 1};  // row 5, moving right, moves this frame
  env.set_state(s);
  StepResult r = act(env, kFreewayNoop, obs);
  EXPECT_EQ(r.reward, 0.0f);
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(env.state().pos, 9);
  EXPECT_TRUE(obs.at(9, 4, Freeway::kChickenChannel));
  // The chicken stepping into a car's cell.
  s = freeway_state(6);
  s.cars[4] = Freeway::Car{4, 3, -3};
  env.set_state(s);
  act(env, kFreewayUp, obs);
  EXPECT_EQ(env.state().pos, 9);
  // Cars wrap around at the edges.
  s = freeway_state(9);
  s.cars[0] = Freeway::Car{0, 0, -2};
  s.cars[1] = Freeway::Car{9, 0, 4};
  env.set_state(s);
  act(env, kFreewayNoop, obs);
  EXPECT_TRUE(obs.at(1, 9, Freeway::kCarChannel));
  EXPECT_TRUE(obs.at(1, 0, Freeway::kSpeedChannel + 1));
  EXPECT_TRUE(obs.at(2, 0, Freeway::kCarChannel));
  EXPECT_TRUE(obs.at(2, 9, Freeway::kSpeedChannel + 3));
}

TEST(Freeway, TerminatesOnFrame2501AsMinAtarsTimer) {
  Freeway env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  for (int t = 1; t <= 2500; ++t) {
    StepResult r = act(env, kFreewayNoop, obs);  // the chicken stays on row 9, below the traffic
    ASSERT_FALSE(r.terminated || r.truncated) << "frame " << t;
  }
  StepResult r = act(env, kFreewayNoop, obs);
  EXPECT_TRUE(r.terminated);
  EXPECT_FALSE(r.truncated);
  EXPECT_EQ(env.elapsed_steps(), 2501);
  // A shorter max_episode_steps truncates first.
  Freeway short_env(EnvOptions::parse({"max_episode_steps=100"}));
  short_env.reset(0, obs.data());
  for (int t = 1; t < 100; ++t) ASSERT_FALSE(act(short_env, kFreewayNoop, obs).truncated);
  r = act(short_env, kFreewayNoop, obs);
  EXPECT_TRUE(r.truncated);
  EXPECT_FALSE(r.terminated);
}

// ---------------------------------------------------------------------------------------------
// SpaceInvaders

namespace {

constexpr int64_t kSiNoop = 0, kSiLeft = 1, kSiRight = 2, kSiFire = 3;

// The cannon at `cannon`, no aliens, timers far from firing or moving.
SpaceInvaders::State si_state(int cannon) {
  SpaceInvaders::State s{};
  s.cannon_x = cannon;
  s.alien_dir = -1;
  s.enemy_move_interval = SpaceInvaders::kEnemyMoveInterval;
  s.alien_move_timer = 1000;
  s.alien_shot_timer = 1000;
  return s;
}

int column_min(const SpaceInvaders::State& s) {
  uint16_t cols = 0;
  for (uint16_t row : s.aliens) cols = static_cast<uint16_t>(cols | row);
  return cols ? __builtin_ctz(cols) : -1;
}

}  // namespace

TEST(SpaceInvaders, ResetShowsTheCannonAndAFourBySixWaveHeadingLeft) {
  SpaceInvaders env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  EXPECT_TRUE(obs.at(9, 5, SpaceInvaders::kCannonChannel));
  EXPECT_EQ(obs.count(SpaceInvaders::kAlienChannel), 24);
  EXPECT_EQ(obs.count(SpaceInvaders::kAlienLeftChannel), 24);
  EXPECT_EQ(obs.count(SpaceInvaders::kAlienRightChannel), 0);
  for (int r = 0; r < 4; ++r) {
    for (int c = 2; c < 8; ++c) EXPECT_TRUE(obs.at(r, c, SpaceInvaders::kAlienChannel));
  }
}

TEST(SpaceInvaders, ShootingAnAlienGivesOne) {
  SpaceInvaders env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  // From the start: the bullet rises one row a frame and hits the lowest alien of column 5.
  StepResult r = act(env, kSiFire, obs);
  EXPECT_TRUE(obs.at(8, 5, SpaceInvaders::kFriendlyBulletChannel));
  float total = r.reward;
  for (int t = 2; t <= 5; ++t) total += act(env, kSiNoop, obs).reward;
  EXPECT_EQ(total, 0.0f);
  EXPECT_TRUE(obs.at(4, 5, SpaceInvaders::kFriendlyBulletChannel));
  r = act(env, kSiNoop, obs);
  EXPECT_EQ(r.reward, 1.0f);
  EXPECT_FALSE(obs.at(3, 5, SpaceInvaders::kAlienChannel));
  EXPECT_EQ(obs.count(SpaceInvaders::kFriendlyBulletChannel), 0);
  EXPECT_EQ(obs.count(SpaceInvaders::kAlienChannel), 23);
  // The cannon fires at most once every 5 frames.
  SpaceInvaders::State s = si_state(2);
  s.aliens[0] = 1u << 9;
  env.set_state(s);
  for (int t = 0; t < 6; ++t) act(env, kSiFire, obs);
  EXPECT_EQ(obs.count(SpaceInvaders::kFriendlyBulletChannel), 2);
  EXPECT_TRUE(obs.at(3, 2, SpaceInvaders::kFriendlyBulletChannel));
  EXPECT_TRUE(obs.at(8, 2, SpaceInvaders::kFriendlyBulletChannel));
}

TEST(SpaceInvaders, AnAlienReachingTheCannonOrTheBottomTerminates) {
  SpaceInvaders env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  // Descending onto the cannon.
  SpaceInvaders::State s = si_state(0);
  s.aliens[8] = 1u << 0;
  s.alien_move_timer = 0;
  env.set_state(s);
  EXPECT_TRUE(act(env, kSiNoop, obs).terminated);
  // Sliding into the cannon along the bottom row.
  env.reset(0, obs.data());
  s = si_state(4);
  s.aliens[9] = 1u << 3;
  s.aliens[0] = 1u << 7;
  s.alien_dir = +1;
  s.alien_move_timer = 0;
  env.set_state(s);
  EXPECT_TRUE(act(env, kSiNoop, obs).terminated);
  // Having to descend from the bottom row, away from the cannon.
  env.reset(0, obs.data());
  s = si_state(7);
  s.aliens[9] = 1u << 0;
  s.alien_move_timer = 0;
  env.set_state(s);
  EXPECT_TRUE(act(env, kSiNoop, obs).terminated);
  // On the bottom row but not yet at the cannon: the game goes on.
  env.reset(0, obs.data());
  s = si_state(7);
  s.aliens[9] = 1u << 3;
  s.alien_move_timer = 0;
  env.set_state(s);
  EXPECT_FALSE(act(env, kSiNoop, obs).terminated);
  EXPECT_TRUE(obs.at(9, 2, SpaceInvaders::kAlienChannel));
}

TEST(SpaceInvaders, AnEnemyBulletHittingTheCannonTerminates) {
  SpaceInvaders env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  SpaceInvaders::State s = si_state(5);
  s.aliens[0] = 1u << 9;
  s.enemy_bullets[8] = 1u << 5;
  env.set_state(s);
  EXPECT_TRUE(act(env, kSiNoop, obs).terminated);
  EXPECT_TRUE(obs.at(9, 5, SpaceInvaders::kEnemyBulletChannel));
  // Dodging it.
  env.reset(0, obs.data());
  env.set_state(s);
  EXPECT_FALSE(act(env, kSiLeft, obs).terminated);
  act(env, kSiNoop, obs);
  EXPECT_EQ(obs.count(SpaceInvaders::kEnemyBulletChannel), 0);  // it left the screen
}

TEST(SpaceInvaders, TheNearestAlienShootsEveryTenFrames) {
  SpaceInvaders env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  SpaceInvaders::State s = si_state(5);
  s.aliens[1] = 1u << 3 | 1u << 7;
  s.aliens[2] = 1u << 3;
  s.alien_shot_timer = 0;
  env.set_state(s);
  act(env, kSiNoop, obs);
  // Columns 3 and 7 are both 2 away: the left one wins, and its lowest alien fires.
  EXPECT_TRUE(obs.at(2, 3, SpaceInvaders::kEnemyBulletChannel));
  EXPECT_EQ(obs.count(SpaceInvaders::kEnemyBulletChannel), 1);
  for (int t = 0; t < 9; ++t) act(env, kSiNoop, obs);
  EXPECT_EQ(obs.count(SpaceInvaders::kEnemyBulletChannel), 0);
  act(env, kSiRight, obs);  // cannon at 6: column 7 is nearer now
  EXPECT_TRUE(obs.at(1, 7, SpaceInvaders::kEnemyBulletChannel));
}

TEST(SpaceInvaders, AliensMoveSidewaysDescendAtTheEdgeAndSpeedUpAsTheyThinOut) {
  SpaceInvaders env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  auto step_safe = [&] {
    // Enemy bullets removed so the cannon survives.
    SpaceInvaders::State s = env.state();
    for (auto& row : s.enemy_bullets) row = 0;
    env.set_state(s);
    ASSERT_FALSE(act(env, kSiNoop, obs).terminated);
  };
  for (int t = 1; t <= 12; ++t) step_safe();
  EXPECT_EQ(column_min(env.state()), 2);
  step_safe();  // frame 13: the first move, one column left
  EXPECT_EQ(column_min(env.state()), 1);
  for (int t = 0; t < 12; ++t) step_safe();  // 24 aliens: every 12 frames
  EXPECT_EQ(column_min(env.state()), 0);
  for (int t = 0; t < 12; ++t) step_safe();  // at the left edge: down a row and turn right
  EXPECT_EQ(column_min(env.state()), 0);
  EXPECT_EQ(env.state().aliens[0], 0);
  EXPECT_NE(env.state().aliens[4], 0);
  EXPECT_EQ(env.state().alien_dir, +1);
  step_safe();
  EXPECT_TRUE(obs.at(4, 0, SpaceInvaders::kAlienRightChannel));
  EXPECT_EQ(obs.count(SpaceInvaders::kAlienLeftChannel), 0);

  // Three aliens left: they move every 3 frames; one alone moves every frame.
  SpaceInvaders::State s = si_state(9);
  s.aliens[2] = 1u << 4 | 1u << 5 | 1u << 6;
  s.alien_move_timer = 0;
  env.set_state(s);
  std::vector<int> columns;
  for (int t = 0; t < 7; ++t) {
    step_safe();
    columns.push_back(column_min(env.state()));
  }
  EXPECT_EQ(columns, (std::vector<int>{3, 3, 3, 2, 2, 2, 1}));
  s = si_state(9);
  s.aliens[2] = 1u << 4;
  s.alien_move_timer = 0;
  env.set_state(s);
  columns.clear();
  for (int t = 0; t < 4; ++t) {
    step_safe();
    columns.push_back(column_min(env.state()));
  }
  EXPECT_EQ(columns, (std::vector<int>{3, 2, 1, 0}));
}

TEST(SpaceInvaders, AClearedWaveIsReplacedByAFasterOne) {
  SpaceInvaders env(no_sticky());
  Grid obs(env);
  env.reset(0, obs.data());
  SpaceInvaders::State s = si_state(5);
  s.aliens[3] = 1u << 5;
  s.friendly_bullets[5] = 1u << 5;
  env.set_state(s);
  StepResult r = act(env, kSiNoop, obs);
  EXPECT_EQ(r.reward, 0.0f);
  EXPECT_EQ(obs.count(SpaceInvaders::kAlienChannel), 1);
  r = act(env, kSiNoop, obs);  // the bullet reaches row 3 on its second frame
  EXPECT_EQ(r.reward, 1.0f);
  EXPECT_EQ(obs.count(SpaceInvaders::kAlienChannel), 24);
  EXPECT_EQ(obs.count(SpaceInvaders::kFriendlyBulletChannel), 0);
  EXPECT_EQ(env.state().enemy_move_interval, 11);
  EXPECT_EQ(env.difficulty_ramp(), 1);
  // The interval stops at 6.
  s = env.state();
  s.enemy_move_interval = 6;
  for (auto& row : s.aliens) row = 0;
  s.aliens[3] = 1u << 5;
  s.friendly_bullets[4] = 1u << 5;
  env.set_state(s);
  act(env, kSiNoop, obs);
  EXPECT_EQ(env.state().enemy_move_interval, 6);
  // Without ramping every wave has the first wave's speed.
  SpaceInvaders flat(EnvOptions::parse({"sticky_action_prob=0", "difficulty_ramping=false"}));
  flat.reset(0, obs.data());
  s = si_state(5);
  s.aliens[3] = 1u << 5;
  s.friendly_bullets[4] = 1u << 5;
  flat.set_state(s);
  EXPECT_EQ(act(flat, kSiNoop, obs).reward, 1.0f);
  EXPECT_EQ(flat.state().enemy_move_interval, 12);
  EXPECT_EQ(flat.difficulty_ramp(), 0);
}

// ---------------------------------------------------------------------------------------------
// Options, errors and registration

TEST(Games, BadOptionValuesAndActionsAreClearErrors) {
  try {
    Breakout env(EnvOptions::parse({"sticky_action_prob=1.5"}));
    FAIL();
  } catch (const EnvError& e) {
    EXPECT_STREQ(e.what(), "MinAtar-Breakout-v1: option sticky_action_prob=1.5: expected a number in [0, 1]");
  }
  try {
    SpaceInvaders env(EnvOptions::parse({"difficulty_ramping=maybe"}));
    FAIL();
  } catch (const EnvError& e) {
    EXPECT_STREQ(e.what(), "MinAtar-SpaceInvaders-v1: option difficulty_ramping=maybe: expected true or false");
  }
  try {
    Asterix env(EnvOptions::parse({"max_episode_steps=-1"}));
    FAIL();
  } catch (const EnvError& e) {
    EXPECT_NE(std::string(e.what()).find("MinAtar-Asterix-v1: option max_episode_steps=-1: expected an integer in [0,"),
              std::string::npos)
        << e.what();
  }
  Freeway env(EnvOptions{});
  Grid obs(env);
  env.reset(0, obs.data());
  try {
    act(env, 3, obs);
    FAIL();
  } catch (const EnvError& e) {
    EXPECT_STREQ(e.what(), "MinAtar-Freeway-v1: action 3 is outside Discrete(3) (allowed 0..2)");
  }
  EXPECT_THROW(act(env, -1, obs), EnvError);
}

TEST(Games, MaxEpisodeStepsZeroMeansNoTimeLimit) {
  Breakout env(EnvOptions::parse({"max_episode_steps=0"}));
  EXPECT_EQ(env.spec().max_episode_steps, 0);
  Breakout short_env(EnvOptions::parse({"max_episode_steps=5"}));
  Grid obs(short_env);
  short_env.reset(0, obs.data());
  StepResult r;
  for (int t = 0; t < 5; ++t) r = act(short_env, kBreakoutNoop, obs);  // the ball needs 6 frames to fall
  EXPECT_TRUE(r.truncated);
  EXPECT_FALSE(r.terminated);
}

TEST(Games, RegisteredUnderTheirNamesWithDocumentedOptions) {
  EnvRegistry r;
  register_games(r);
  for (const char* name :
       {"MinAtar-Breakout-v1", "MinAtar-Asterix-v1", "MinAtar-Freeway-v1", "MinAtar-SpaceInvaders-v1"}) {
    const EnvEntry* entry = r.find(name);
    ASSERT_NE(entry, nullptr) << name;
    EXPECT_EQ(entry->family, "games");
    std::set<std::string> documented;
    for (const auto& o : entry->options) documented.insert(o.key);
    EXPECT_EQ(documented, (std::set<std::string>{"sticky_action_prob", "difficulty_ramping", "full_action_space",
                                                 "max_episode_steps"}))
        << name;
    // Every documented option is accepted.
    auto env = r.make(name, EnvOptions::parse({"sticky_action_prob=0.25", "difficulty_ramping=false",
                                               "full_action_space=true", "max_episode_steps=7"}));
    EXPECT_EQ(env->name(), name);
    EXPECT_EQ(env->action_space().n, 6);
    EXPECT_EQ(env->spec().max_episode_steps, 7);
    try {
      r.make(name, EnvOptions::parse({"bogus=1"}));
      FAIL() << name;
    } catch (const EnvError& e) {
      EXPECT_EQ(std::string(e.what()),
                std::string(name) +
                    ": unknown option 'bogus' (allowed: difficulty_ramping, full_action_space, max_episode_steps, "
                    "sticky_action_prob)");
    }
  }
}
