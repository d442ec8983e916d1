#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "games/part2.h"
#include "games/roguelike.h"
#include "games/seaquest.h"
#include "orchard/envs/check.h"
#include "orchard/envs/registry.h"

using namespace orchard::envs;
using orchard::EnvError;
using games::Roguelike;
using games::Seaquest;

namespace {

void expect_conforms(const std::function<std::unique_ptr<Env>()>& make) {
  CheckOptions opt;
  opt.steps = 5000;
  auto rep = check_env(make, opt);
  for (const auto& f : rep.failures) ADD_FAILURE() << f;
  EXPECT_TRUE(rep.ok());
}

// The message of the EnvError thrown by `f`, or "" when none is thrown.
template <class F>
std::string env_error(F f) {
  try {
    f();
  } catch (const EnvError& e) {
    return e.what();
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// Seaquest

struct SeaquestFixture {
  explicit SeaquestFixture(std::vector<std::string> options = {"sticky_action_prob=0"})
      : env(EnvOptions::parse(options)), obs(Seaquest::kSize * Seaquest::kSize * Seaquest::kChannels) {
    env.reset(0, obs.data());
  }
  // A state with no spawns due for a long time.
  static Seaquest::State quiet() {
    Seaquest::State s = Seaquest::initial_state();
    s.e_spawn_timer = 1000;
    s.d_spawn_timer = 1000;
    return s;
  }
  // A quiet state with the sub submerged at (x, y).
  static Seaquest::State submerged(int x, int y, bool right) {
    Seaquest::State s = quiet();
    s.sub_x = x;
    s.sub_y = y;
    s.sub_right = right;
    s.surface = 0;
    return s;
  }
  StepResult step(int64_t a) { return env.step(&a, obs.data()); }
  uint8_t at(int y, int x, int c) const { return obs[(y * Seaquest::kSize + x) * Seaquest::kChannels + c]; }
  int count(int c) const {
    int n = 0;
    for (int y = 0; y < Seaquest::kSize; ++y)
      for (int x = 0; x < Seaquest::kSize; ++x) n += at(y, x, c);
    return n;
  }

  Seaquest env;
  std::vector<uint8_t> obs;
};

Seaquest::Mover mover(int x, int y, bool right, int move_timer, int shot_timer = 10) {
  return Seaquest::Mover{x, y, right ? 1 : 0, move_timer, shot_timer};
}

TEST(Seaquest, PassesConformanceCheck) {
  expect_conforms([] { return std::make_unique<Seaquest>(EnvOptions{}); });
  expect_conforms([] { return std::make_unique<Seaquest>(EnvOptions::parse({"difficulty_ramping=false"})); });
}

TEST(Seaquest, FirstObservationShowsTheSubAtTheSurfaceWithFullOxygen) {
  SeaquestFixture f;
  EXPECT_EQ(f.at(0, 5, Seaquest::kSubFront), 1);
  EXPECT_EQ(f.at(0, 6, Seaquest::kSubBack), 1);  // facing left: the back is to the right
  EXPECT_EQ(f.count(Seaquest::kSubFront), 1);
  EXPECT_EQ(f.count(Seaquest::kSubBack), 1);
  EXPECT_EQ(f.count(Seaquest::kOxygenGauge), 10);
  for (int x = 0; x < 10; ++x) EXPECT_EQ(f.at(9, x, Seaquest::kOxygenGauge), 1);
  EXPECT_EQ(f.count(Seaquest::kDiverGauge), 0);
  EXPECT_EQ(f.env.observation_space().to_string().find("Box(uint8, [10, 10, 10]"), 0u)
      << f.env.observation_space().to_string();
  EXPECT_EQ(f.env.action_space().n, 6);
}

TEST(Seaquest, OxygenDepletesWhileSubmergedAndRunsOutOneStepAfterZero) {
  SeaquestFixture f;
  // At the surface (before the first dive) oxygen is not used.
  for (int t = 0; t < 5; ++t) ASSERT_FALSE(f.step(Seaquest::kNoop).terminated);
  EXPECT_EQ(f.env.state().oxygen, Seaquest::kMaxOxygen);

  Seaquest::State s = SeaquestFixture::submerged(5, 4, false);
  s.oxygen = 30;
  f.env.set_state(s);
  StepResult r = f.step(Seaquest::kNoop);
  EXPECT_EQ(f.env.state().oxygen, 29);
  EXPECT_EQ(f.count(Seaquest::kOxygenGauge), 1);  // 29 * 10 / 200
  for (int expected = 28; expected >= 0; --expected) {
    r = f.step(Seaquest::kNoop);
    ASSERT_FALSE(r.terminated) << "oxygen " << expected;
    ASSERT_EQ(f.env.state().oxygen, expected);
  }
  EXPECT_EQ(f.count(Seaquest::kOxygenGauge), 0);
  r = f.step(Seaquest::kNoop);  // the step that finds the tank empty
  EXPECT_TRUE(r.terminated);
  EXPECT_EQ(r.reward, 0.0f);
}

TEST(Seaquest, SurfacingWithSixDiversRefillsOxygenScoresAndRamps) {
  SeaquestFixture f;
  Seaquest::State s = SeaquestFixture::submerged(5, 1, false);
  s.diver_count = 6;
  s.oxygen = 150;
  f.env.set_state(s);
  EXPECT_EQ(f.count(Seaquest::kDiverGauge), 0);
  StepResult r = f.step(Seaquest::kUp);
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(r.reward, 7.0f);  // 150 * 10 / 200
  const Seaquest::State& after = f.env.state();
  EXPECT_EQ(after.sub_y, 0);
  EXPECT_EQ(after.oxygen, Seaquest::kMaxOxygen);
  EXPECT_EQ(after.diver_count, -1);  // MinAtar's quirk: emptied, then one more removed
  EXPECT_EQ(after.surface, 1);
  EXPECT_EQ(after.ramp_index, 1);
  EXPECT_EQ(after.e_spawn_speed, Seaquest::kInitSpawnSpeed - 1);
  EXPECT_EQ(after.move_speed, Seaquest::kInitMoveInterval);  // slows every other ramp
  EXPECT_EQ(f.count(Seaquest::kOxygenGauge), 10);
  EXPECT_EQ(f.count(Seaquest::kDiverGauge), 0);
  // Staying at the surface does not surface again.
  r = f.step(Seaquest::kNoop);
  EXPECT_EQ(r.reward, 0.0f);
  EXPECT_EQ(f.env.state().ramp_index, 1);
}

TEST(Seaquest, SurfacingWithSomeDiversRefillsOxygenWithoutReward) {
  SeaquestFixture f;
  Seaquest::State s = SeaquestFixture::submerged(5, 1, false);
  s.diver_count = 3;
  s.oxygen = 40;
  s.ramp_index = 1;
  f.env.set_state(s);
  EXPECT_EQ(f.count(Seaquest::kDiverGauge), 0);  // set_state does not touch the buffer
  StepResult r = f.step(Seaquest::kUp);
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(r.reward, 0.0f);
  EXPECT_EQ(f.env.state().oxygen, Seaquest::kMaxOxygen);
  EXPECT_EQ(f.env.state().diver_count, 2);
  EXPECT_EQ(f.env.state().move_speed, Seaquest::kInitMoveInterval - 1);  // odd ramp index
  EXPECT_EQ(f.count(Seaquest::kDiverGauge), 2);
  EXPECT_EQ(f.at(9, 7, Seaquest::kDiverGauge), 1);
  EXPECT_EQ(f.at(9, 8, Seaquest::kDiverGauge), 1);

  SeaquestFixture flat({"sticky_action_prob=0", "difficulty_ramping=false"});
  flat.env.set_state(s);
  flat.step(Seaquest::kUp);
  EXPECT_EQ(flat.env.state().ramp_index, 1);
  EXPECT_EQ(flat.env.state().e_spawn_speed, Seaquest::kInitSpawnSpeed);
  EXPECT_EQ(flat.env.state().move_speed, Seaquest::kInitMoveInterval);
}

TEST(Seaquest, SurfacingWithoutDiversIsTerminal) {
  SeaquestFixture f;
  Seaquest::State s = SeaquestFixture::submerged(3, 1, true);
  s.diver_count = 0;
  f.env.set_state(s);
  StepResult r = f.step(Seaquest::kUp);
  EXPECT_TRUE(r.terminated);
  EXPECT_EQ(r.reward, 0.0f);
}

TEST(Seaquest, ShootingAFishOrASubScoresOne) {
  SeaquestFixture f;
  Seaquest::State s = SeaquestFixture::submerged(5, 4, true);
  s.fish[s.num_fish++] = mover(6, 4, false, 3);
  f.env.set_state(s);
  StepResult r = f.step(Seaquest::kFire);  // the bullet appears at the sub and flies onto the fish
  EXPECT_EQ(r.reward, 1.0f);
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(f.env.state().num_fish, 0);
  EXPECT_EQ(f.env.state().num_f_bullets, 0);
  EXPECT_EQ(f.env.state().shot_timer, Seaquest::kShotCoolDown - 1);

  // A sub two cells away, moving onto the bullet's cell on the next step.
  s = SeaquestFixture::submerged(2, 6, true);
  s.subs[s.num_subs++] = mover(5, 6, false, 1, 5);
  f.env.set_state(s);
  r = f.step(Seaquest::kFire);  // bullet at 3; the sub waits
  EXPECT_EQ(r.reward, 0.0f);
  EXPECT_EQ(f.at(6, 3, Seaquest::kFriendlyBullet), 1);
  EXPECT_EQ(f.at(6, 5, Seaquest::kEnemySub), 1);
  EXPECT_EQ(f.at(6, 6, Seaquest::kTrail), 1);  // moving left: the trail is to its right
  r = f.step(Seaquest::kNoop);  // bullet to 4, the sub moves to 4: both destroyed
  EXPECT_EQ(r.reward, 1.0f);
  EXPECT_EQ(f.env.state().num_subs, 0);
  EXPECT_EQ(f.env.state().num_f_bullets, 0);
  EXPECT_EQ(f.count(Seaquest::kEnemySub), 0);

  // The gun cools down: a second shot within kShotCoolDown steps does nothing.
  s = SeaquestFixture::submerged(2, 6, true);
  f.env.set_state(s);
  f.step(Seaquest::kFire);
  f.step(Seaquest::kFire);
  EXPECT_EQ(f.env.state().num_f_bullets, 1);
}

TEST(Seaquest, ContactWithAnEnemyOrItsBulletIsTerminal) {
  SeaquestFixture f;
  // A fish swims into the sub.
  Seaquest::State s = SeaquestFixture::submerged(5, 4, false);
  s.fish[s.num_fish++] = mover(6, 4, false, 0);
  f.env.set_state(s);
  EXPECT_TRUE(f.step(Seaquest::kNoop).terminated);

  // The sub moves into a waiting enemy sub.
  f.env.reset(0, f.obs.data());
  s = SeaquestFixture::submerged(5, 4, true);
  s.subs[s.num_subs++] = mover(6, 4, true, 3, 5);
  f.env.set_state(s);
  EXPECT_TRUE(f.step(Seaquest::kRight).terminated);

  // An enemy bullet flies into the sub.
  f.env.reset(0, f.obs.data());
  s = SeaquestFixture::submerged(5, 4, false);
  s.e_bullets[s.num_e_bullets++] = Seaquest::Bullet{7, 4, 0};
  f.env.set_state(s);
  StepResult r = f.step(Seaquest::kNoop);
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(f.at(4, 6, Seaquest::kEnemyBullet), 1);
  EXPECT_TRUE(f.step(Seaquest::kNoop).terminated);

  // An enemy sub fires when its shot timer is due: the bullet starts at the sub and flies on.
  f.env.reset(0, f.obs.data());
  s = SeaquestFixture::submerged(1, 2, false);
  s.subs[s.num_subs++] = mover(8, 7, false, 3, 0);
  f.env.set_state(s);
  r = f.step(Seaquest::kNoop);
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(f.env.state().num_e_bullets, 1);
  EXPECT_EQ(f.at(7, 7, Seaquest::kEnemyBullet), 1);
  EXPECT_EQ(f.env.state().subs[0].shot_timer, Seaquest::kEnemyShotInterval);
}

TEST(Seaquest, TouchingADiverPicksItUp) {
  SeaquestFixture f;
  Seaquest::State s = SeaquestFixture::submerged(5, 4, false);
  s.divers[s.num_divers++] = mover(5, 5, true, 3, 0);
  f.env.set_state(s);
  StepResult r = f.step(Seaquest::kDown);
  EXPECT_EQ(r.reward, 0.0f);
  EXPECT_EQ(f.env.state().diver_count, 1);
  EXPECT_EQ(f.env.state().num_divers, 0);
  EXPECT_EQ(f.at(9, 8, Seaquest::kDiverGauge), 1);
  EXPECT_EQ(f.count(Seaquest::kDiverGauge), 1);
  EXPECT_EQ(f.count(Seaquest::kDiver), 0);

  // A full sub (6 divers) leaves divers in the water.
  s.diver_count = 6;
  f.env.set_state(s);
  f.step(Seaquest::kDown);
  EXPECT_EQ(f.env.state().diver_count, 6);
  EXPECT_EQ(f.env.state().num_divers, 1);
}

TEST(Seaquest, EnemiesAndDiversSpawnWhenTheirTimersRunOut) {
  SeaquestFixture f;
  for (int t = 0; t < Seaquest::kInitSpawnSpeed; ++t) f.step(Seaquest::kNoop);
  EXPECT_EQ(f.env.state().num_fish + f.env.state().num_subs, 0);
  f.step(Seaquest::kNoop);
  EXPECT_EQ(f.env.state().num_fish + f.env.state().num_subs, 1);
  EXPECT_EQ(f.env.state().e_spawn_timer, Seaquest::kInitSpawnSpeed - 1);
  for (int t = Seaquest::kInitSpawnSpeed + 1; t < Seaquest::kDiverSpawnSpeed + 1; ++t) f.step(Seaquest::kNoop);
  EXPECT_EQ(f.env.state().num_divers, 1);
  const Seaquest::Mover& d = f.env.state().divers[0];
  EXPECT_GE(d.y, 1);
  EXPECT_LE(d.y, 8);
  EXPECT_EQ(d.x, d.right ? 0 : 9);
}

TEST(Seaquest, StickyActionsRepeatThePreviousAction) {
  SeaquestFixture always({"sticky_action_prob=1"});
  for (int t = 0; t < 5; ++t) always.step(Seaquest::kDown);
  EXPECT_EQ(always.env.state().sub_y, 0);  // every action replaced by the first no-op

  SeaquestFixture never;
  for (int t = 0; t < 5; ++t) never.step(Seaquest::kDown);
  EXPECT_EQ(never.env.state().sub_y, 5);

  // With the default 0.1 the previous action replaces about 1 in 11 of alternating left/right
  // commands (a repeat only shows when the previous action differs): p = 0.1 * (1 - p).
  SeaquestFixture sometimes(std::vector<std::string>{});
  int replaced = 0;
  for (int t = 0; t < 1000; ++t) {
    const int64_t a = t % 2 ? Seaquest::kLeft : Seaquest::kRight;
    ASSERT_FALSE(sometimes.step(a).terminated);  // at the surface nothing can end the episode
    replaced += sometimes.env.state().sub_right != (a == Seaquest::kRight);
  }
  EXPECT_GT(replaced, 50);
  EXPECT_LT(replaced, 135);
}

TEST(Seaquest, BadOptionsAndActionsAreClearErrors) {
  EnvRegistry r;
  register_games_part2(r);
  EXPECT_NE(r.make("MinAtar-Seaquest-v1"), nullptr);
  std::string e = env_error([&] { r.make("MinAtar-Seaquest-v1", EnvOptions::parse({"bogus=1"})); });
  EXPECT_NE(e.find("unknown option 'bogus'"), std::string::npos) << e;
  e = env_error([&] { r.make("MinAtar-Seaquest-v1", EnvOptions::parse({"sticky_action_prob=1.5"})); });
  EXPECT_EQ(e, "MinAtar-Seaquest-v1: option sticky_action_prob=1.5: expected a number in [0, 1]");
  e = env_error([&] { r.make("MinAtar-Seaquest-v1", EnvOptions::parse({"difficulty_ramping=maybe"})); });
  EXPECT_EQ(e, "MinAtar-Seaquest-v1: option difficulty_ramping=maybe: expected true or false");
  auto env = r.make("MinAtar-Seaquest-v1", EnvOptions::parse({"max_episode_steps=7"}));
  EXPECT_EQ(env->spec().max_episode_steps, 7);
  std::vector<uint8_t> obs(env->observation_space().nbytes());
  env->reset(1, obs.data());
  int64_t a = 6;
  e = env_error([&] { env->step(&a, obs.data()); });
  EXPECT_EQ(e, "MinAtar-Seaquest-v1: action 6 is outside Discrete(6) (allowed 0..5)");
}

// ---------------------------------------------------------------------------------------------
// Roguelike

// Whether the goal can be reached from the player's cell, walking through doors whose key has
// been picked up on the way (keys are taken on arrival); with `use_keys` false no key is taken.
// Written independently of the environment: a BFS over (cell, keys carried).
bool reaches_goal(const Roguelike::State& s, int w, int h, bool use_keys) {
  std::vector<uint8_t> seen(static_cast<size_t>(w * h * 8), 0);
  auto key_bit = [&](int x, int y) -> unsigned {
    const int c = s.at(x, y);
    return use_keys && c >= Roguelike::kKey && c < Roguelike::kKey + 3 ? 1u << (c - Roguelike::kKey) : 0u;
  };
  std::deque<std::array<int, 3>> queue;
  const unsigned m0 = s.keys | key_bit(s.player_x, s.player_y);
  queue.push_back({s.player_x, s.player_y, static_cast<int>(m0)});
  seen[static_cast<size_t>((s.player_y * w + s.player_x) * 8 + static_cast<int>(m0))] = 1;
  const int dx[4] = {0, 1, 0, -1}, dy[4] = {-1, 0, 1, 0};
  while (!queue.empty()) {
    auto [x, y, m] = queue.front();
    queue.pop_front();
    if (s.at(x, y) == Roguelike::kGoal) return true;
    for (int d = 0; d < 4; ++d) {
      const int nx = x + dx[d], ny = y + dy[d];
      if (nx < 0 || nx >= w || ny < 0 || ny >= h) continue;
      const int c = s.at(nx, ny);
      if (c == Roguelike::kWall) continue;
      if (c >= Roguelike::kDoor && c < Roguelike::kDoor + 3 && !(m >> (c - Roguelike::kDoor) & 1)) continue;
      const int nm = m | static_cast<int>(key_bit(nx, ny));
      uint8_t& v = seen[static_cast<size_t>((ny * w + nx) * 8 + nm)];
      if (v) continue;
      v = 1;
      queue.push_back({nx, ny, nm});
    }
  }
  return false;
}

struct RogueFixture {
  explicit RogueFixture(std::vector<std::string> options = {"monsters=0"})
      : env(EnvOptions::parse(options)),
        obs(static_cast<size_t>(env.view_size() * env.view_size() * Roguelike::kNumChannels)) {
    env.reset(0, obs.data());
  }
  // An all-wall map with a floor rectangle [x0, x1] x [y0, y1], the player at (px, py).
  static Roguelike::State room(int x0, int y0, int x1, int y1, int px, int py) {
    Roguelike::State s{};
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) s.at(x, y) = Roguelike::kFloor;
    s.player_x = px;
    s.player_y = py;
    s.hp = Roguelike::kPlayerHp;
    return s;
  }
  StepResult step(int64_t a) { return env.step(&a, obs.data()); }
  // The observation at view offset (dx, dy) from the player.
  uint8_t at(int dx, int dy, int c) const {
    const int half = env.view_size() / 2, v = env.view_size();
    return obs[static_cast<size_t>(((dy + half) * v + dx + half) * Roguelike::kNumChannels + c)];
  }
  int count(int c) const {
    int n = 0;
    const int half = env.view_size() / 2;
    for (int dy = -half; dy <= half; ++dy)
      for (int dx = -half; dx <= half; ++dx) n += at(dx, dy, c);
    return n;
  }

  Roguelike env;
  std::vector<uint8_t> obs;
};

TEST(Roguelike, PassesConformanceCheck) {
  expect_conforms([] { return std::make_unique<Roguelike>(EnvOptions{}); });
  expect_conforms([] {
    return std::make_unique<Roguelike>(
        EnvOptions::parse({"key_colors=3", "monsters=10", "view_size=5", "rooms=9", "width=30", "height=30"}));
  });
}

TEST(Roguelike, GeneratedLevelsAreSolvableAndTheirDoorsMatter) {
  const std::vector<std::vector<std::string>> configs = {
      {},
      {"key_colors=3", "rooms=4", "width=20", "height=12"},
      {"key_colors=3", "rooms=12", "width=40", "height=30", "monsters=16"},
      {"key_colors=1", "rooms=2", "width=10", "height=5"},
      {"key_colors=0", "rooms=5"},
      {"key_colors=3", "rooms=30", "width=64", "height=64"},
  };
  for (const auto& options : configs) {
    Roguelike env(EnvOptions::parse(options));
    std::vector<uint8_t> obs(env.observation_space().nbytes());
    const int w = env.width(), h = env.height();
    int key_colors = 2;
    for (const auto& o : options)
      if (o.rfind("key_colors=", 0) == 0) key_colors = std::stoi(o.substr(11));
    for (uint64_t seed = 0; seed < 200; ++seed) {
      env.reset(seed, obs.data());
      const Roguelike::State& s = env.state();
      SCOPED_TRACE("options " + std::to_string(options.size()) + ", seed " + std::to_string(seed));
      int doors[3] = {0, 0, 0}, keys[3] = {0, 0, 0}, goals = 0;
      for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
          const int c = s.at(x, y);
          if (x == 0 || y == 0 || x == w - 1 || y == h - 1) {
            ASSERT_EQ(c, Roguelike::kWall) << x << "," << y;
          }
          if (c >= Roguelike::kDoor && c < Roguelike::kDoor + 3) ++doors[c - Roguelike::kDoor];
          if (c >= Roguelike::kKey && c < Roguelike::kKey + 3) ++keys[c - Roguelike::kKey];
          goals += c == Roguelike::kGoal;
        }
      }
      ASSERT_EQ(goals, 1);
      for (int k = 0; k < 3; ++k) {
        ASSERT_EQ(doors[k], k < key_colors ? 1 : 0) << "colour " << k;
        ASSERT_EQ(keys[k], doors[k]) << "colour " << k;
      }
      ASSERT_NE(s.at(s.player_x, s.player_y), Roguelike::kWall);
      ASSERT_EQ(s.hp, Roguelike::kPlayerHp);
      ASSERT_TRUE(reaches_goal(s, w, h, true));
      // The doors are on the only way to the goal.
      if (key_colors > 0) {
        ASSERT_FALSE(reaches_goal(s, w, h, false));
      }
      for (int i = 0; i < s.num_monsters; ++i) {
        ASSERT_EQ(s.at(s.monsters[i].x, s.monsters[i].y), Roguelike::kFloor);
        ASSERT_TRUE(s.monsters[i].x != s.player_x || s.monsters[i].y != s.player_y);
      }
    }
  }
}

TEST(Roguelike, LevelsAreAFunctionOfTheSeed) {
  Roguelike a({}), b({});
  std::vector<uint8_t> oa(a.observation_space().nbytes()), ob(oa.size());
  a.reset(5, oa.data());
  b.reset(6, ob.data());
  b.reset(5, ob.data());
  EXPECT_EQ(0, std::memcmp(&a.state(), &b.state(), sizeof(Roguelike::State)));
  b.reset(6, ob.data());
  EXPECT_NE(0, std::memcmp(&a.state(), &b.state(), sizeof(Roguelike::State)));
}

TEST(Roguelike, ALockedDoorBlocksWithoutItsKeyAndOpensWithIt) {
  RogueFixture f;
  // A corridor (1..6, 1): the red key at 1, the player at 2, a red door at 4.
  Roguelike::State s = RogueFixture::room(1, 1, 6, 1, 2, 1);
  s.at(1, 1) = Roguelike::kKey + 0;
  s.at(4, 1) = Roguelike::kDoor + 0;
  f.env.set_state(s);
  f.step(Roguelike::kEast);
  EXPECT_EQ(f.env.state().player_x, 3);
  f.step(Roguelike::kEast);  // the door blocks
  EXPECT_EQ(f.env.state().player_x, 3);
  EXPECT_EQ(f.at(1, 0, Roguelike::kDoorChannel + 0), 1);
  f.step(Roguelike::kInteract);  // no key: nothing happens
  EXPECT_EQ(f.env.state().at(4, 1), Roguelike::kDoor + 0);

  // A key of another colour does not open it.
  Roguelike::State green = f.env.state();
  green.keys = 1u << 1;
  f.env.set_state(green);
  f.step(Roguelike::kInteract);
  EXPECT_EQ(f.env.state().at(4, 1), Roguelike::kDoor + 0);
  green.keys = 0;
  f.env.set_state(green);

  // Fetch the red key: walking over it does not take it; interact does.
  f.step(Roguelike::kWest);
  f.step(Roguelike::kWest);
  EXPECT_EQ(f.env.state().player_x, 1);
  EXPECT_EQ(f.env.state().keys, 0u);
  EXPECT_EQ(f.at(0, 0, Roguelike::kKeyChannel + 0), 1);
  f.step(Roguelike::kInteract);
  EXPECT_EQ(f.env.state().keys, 1u);
  EXPECT_EQ(f.env.state().at(1, 1), Roguelike::kFloor);
  EXPECT_EQ(f.count(Roguelike::kKeyChannel + 0), 0);
  EXPECT_EQ(f.count(Roguelike::kCarriedKeyChannel + 0), 49);
  for (int t = 0; t < 2; ++t) f.step(Roguelike::kEast);
  f.step(Roguelike::kEast);
  EXPECT_EQ(f.env.state().player_x, 3);  // still locked until used
  f.step(Roguelike::kInteract);
  EXPECT_EQ(f.env.state().at(4, 1), Roguelike::kFloor);
  EXPECT_EQ(f.at(1, 0, Roguelike::kDoorChannel + 0), 0);
  EXPECT_EQ(f.at(1, 0, Roguelike::kFloorChannel), 1);
  f.step(Roguelike::kEast);
  EXPECT_EQ(f.env.state().player_x, 4);
  EXPECT_EQ(f.env.state().keys, 1u);  // the key is kept
}

TEST(Roguelike, EgocentricViewMatchesTheHandBuiltLevel) {
  RogueFixture f;
  Roguelike::State s = RogueFixture::room(3, 3, 8, 8, 5, 5);
  s.at(2, 5) = Roguelike::kDoor + 2;  // blue door 3 west
  s.at(6, 4) = Roguelike::kKey + 1;   // green key 1 east, 1 north
  s.at(8, 8) = Roguelike::kGoal;      // 3 east, 3 south
  s.monsters[s.num_monsters++] = Roguelike::Monster{5, 7};  // 2 south
  s.keys = 1u << 0;
  s.hp = 3;
  f.env.set_state(s);
  f.env.render(f.obs.data());

  EXPECT_EQ(f.at(0, 0, Roguelike::kFloorChannel), 1);
  EXPECT_EQ(f.at(-3, 0, Roguelike::kDoorChannel + 2), 1);
  EXPECT_EQ(f.at(-3, 0, Roguelike::kFloorChannel), 0);
  EXPECT_EQ(f.at(-3, -1, Roguelike::kWallChannel), 1);
  EXPECT_EQ(f.at(1, -1, Roguelike::kKeyChannel + 1), 1);
  EXPECT_EQ(f.at(1, -1, Roguelike::kFloorChannel), 1);
  EXPECT_EQ(f.at(3, 3, Roguelike::kGoalChannel), 1);
  EXPECT_EQ(f.at(0, 2, Roguelike::kMonsterChannel), 1);
  EXPECT_EQ(f.at(0, 2, Roguelike::kFloorChannel), 1);
  // Walls: column x = 2 (dx = -3) except the door, row y = 2 (dy = -3); the room is 6 x 6.
  EXPECT_EQ(f.count(Roguelike::kWallChannel), 7 + 7 - 1 - 1);
  EXPECT_EQ(f.count(Roguelike::kFloorChannel), 6 * 6);
  EXPECT_EQ(f.count(Roguelike::kDoorChannel + 2), 1);
  EXPECT_EQ(f.count(Roguelike::kKeyChannel + 1), 1);
  EXPECT_EQ(f.count(Roguelike::kMonsterChannel), 1);
  EXPECT_EQ(f.count(Roguelike::kGoalChannel), 1);
  EXPECT_EQ(f.count(Roguelike::kCarriedKeyChannel + 0), 49);
  EXPECT_EQ(f.count(Roguelike::kCarriedKeyChannel + 1), 0);
  // Health: the first hp cells of the plane, row-major.
  EXPECT_EQ(f.count(Roguelike::kHealthChannel), 3);
  for (int dx = -3; dx <= -1; ++dx) EXPECT_EQ(f.at(dx, -3, Roguelike::kHealthChannel), 1);
  // Every cell lights exactly one terrain channel (wall, floor or a door).
  for (int dy = -3; dy <= 3; ++dy) {
    for (int dx = -3; dx <= 3; ++dx) {
      int terrain = f.at(dx, dy, Roguelike::kWallChannel) + f.at(dx, dy, Roguelike::kFloorChannel);
      for (int k = 0; k < 3; ++k) terrain += f.at(dx, dy, Roguelike::kDoorChannel + k);
      EXPECT_EQ(terrain, 1) << dx << "," << dy;
    }
  }

  // Near the map's corner, cells off the map read as wall.
  s = RogueFixture::room(0, 0, 3, 3, 0, 0);
  f.env.set_state(s);
  f.env.render(f.obs.data());
  EXPECT_EQ(f.at(-1, 0, Roguelike::kWallChannel), 1);
  EXPECT_EQ(f.at(0, -3, Roguelike::kWallChannel), 1);
  EXPECT_EQ(f.at(3, 3, Roguelike::kFloorChannel), 1);
  EXPECT_EQ(f.count(Roguelike::kFloorChannel), 16);
  EXPECT_EQ(f.count(Roguelike::kWallChannel), 49 - 16);

  // The view moves with the player.
  s = RogueFixture::room(3, 3, 8, 8, 5, 5);
  s.at(8, 8) = Roguelike::kGoal;
  f.env.set_state(s);
  f.step(Roguelike::kSouth);
  EXPECT_EQ(f.at(3, 2, Roguelike::kGoalChannel), 1);
}

TEST(Roguelike, MonstersChaseDamageAndKillThePlayer) {
  RogueFixture f;
  Roguelike::State s = RogueFixture::room(1, 1, 12, 12, 5, 5);
  s.monsters[s.num_monsters++] = Roguelike::Monster{5, 8};
  s.hp = 2;
  f.env.set_state(s);
  StepResult r = f.step(Roguelike::kWait);  // 3 away: steps closer
  EXPECT_EQ(f.env.state().monsters[0].y, 7);
  EXPECT_EQ(r.reward, 0.0f);
  r = f.step(Roguelike::kWait);  // steps next to the player; no attack on the same turn
  EXPECT_EQ(f.env.state().monsters[0].y, 6);
  EXPECT_EQ(f.env.state().hp, 2);
  EXPECT_EQ(f.at(0, 1, Roguelike::kMonsterChannel), 1);
  r = f.step(Roguelike::kWait);  // attacks
  EXPECT_EQ(f.env.state().hp, 1);
  EXPECT_FLOAT_EQ(r.reward, -Roguelike::kDamagePenalty);
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(f.count(Roguelike::kHealthChannel), 1);
  r = f.step(Roguelike::kWest);  // out of reach: the monster follows instead of striking
  EXPECT_EQ(f.env.state().player_x, 4);
  EXPECT_EQ(f.env.state().hp, 1);
  EXPECT_EQ(f.env.state().monsters[0].x, 4);
  EXPECT_EQ(f.env.state().monsters[0].y, 6);
  r = f.step(Roguelike::kWait);
  EXPECT_EQ(f.env.state().hp, 0);
  EXPECT_TRUE(r.terminated);
  EXPECT_FLOAT_EQ(r.reward, -Roguelike::kDamagePenalty);

  // Two adjacent monsters hit in the same step.
  f.env.reset(0, f.obs.data());
  s = RogueFixture::room(1, 1, 12, 12, 5, 5);
  s.monsters[s.num_monsters++] = Roguelike::Monster{6, 5};
  s.monsters[s.num_monsters++] = Roguelike::Monster{5, 4};
  f.env.set_state(s);
  r = f.step(Roguelike::kWait);
  EXPECT_FLOAT_EQ(r.reward, -2 * Roguelike::kDamagePenalty);
  EXPECT_EQ(f.env.state().hp, Roguelike::kPlayerHp - 2);

  // Bumping a monster kills it before it can strike.
  r = f.step(Roguelike::kEast);
  EXPECT_EQ(f.env.state().num_monsters, 1);
  EXPECT_EQ(f.env.state().player_x, 5);
  EXPECT_FLOAT_EQ(r.reward, -Roguelike::kDamagePenalty);  // the other one still hits
  r = f.step(Roguelike::kNorth);
  EXPECT_EQ(f.env.state().num_monsters, 0);
  EXPECT_EQ(r.reward, 0.0f);
  EXPECT_EQ(f.env.state().hp, Roguelike::kPlayerHp - 3);

  // Monsters do not pass walls or doors.
  f.env.reset(0, f.obs.data());
  s = RogueFixture::room(1, 1, 8, 1, 2, 1);
  s.at(4, 1) = Roguelike::kDoor + 1;
  s.monsters[s.num_monsters++] = Roguelike::Monster{5, 1};
  f.env.set_state(s);
  for (int t = 0; t < 20; ++t) ASSERT_FALSE(f.step(Roguelike::kWait).terminated);
  EXPECT_EQ(f.env.state().hp, Roguelike::kPlayerHp);
  EXPECT_GE(f.env.state().monsters[0].x, 5);
}

TEST(Roguelike, ReachingTheGoalScoresOneAndTerminates) {
  RogueFixture f;
  Roguelike::State s = RogueFixture::room(1, 1, 5, 1, 1, 1);
  s.at(3, 1) = Roguelike::kGoal;
  f.env.set_state(s);
  StepResult r = f.step(Roguelike::kEast);
  EXPECT_EQ(r.reward, 0.0f);
  EXPECT_FALSE(r.terminated);
  r = f.step(Roguelike::kEast);
  EXPECT_EQ(r.reward, Roguelike::kGoalReward);
  EXPECT_TRUE(r.terminated);
  EXPECT_FALSE(f.env.episode_active());
}

TEST(Roguelike, BadOptionsAndActionsAreClearErrors) {
  EnvRegistry r;
  register_games_part2(r);
  auto env = r.make("Roguelike-v0");
  ASSERT_NE(env, nullptr);
  EXPECT_EQ(env->observation_space().shape, (std::vector<int64_t>{7, 7, Roguelike::kNumChannels}));
  std::string e = env_error([&] { r.make("Roguelike-v0", EnvOptions::parse({"bogus=1"})); });
  EXPECT_NE(e.find("unknown option 'bogus'"), std::string::npos) << e;
  e = env_error([&] { r.make("Roguelike-v0", EnvOptions::parse({"view_size=6"})); });
  EXPECT_EQ(e, "Roguelike-v0: option view_size=6: expected an odd integer in [3, 31]");
  e = env_error([&] { r.make("Roguelike-v0", EnvOptions::parse({"monsters=17"})); });
  EXPECT_EQ(e, "Roguelike-v0: option monsters=17: expected an integer in [0, 16]");
  e = env_error([&] { r.make("Roguelike-v0", EnvOptions::parse({"key_colors=4"})); });
  EXPECT_EQ(e, "Roguelike-v0: option key_colors=4: expected an integer in [0, 3]");
  e = env_error([&] { r.make("Roguelike-v0", EnvOptions::parse({"width=70"})); });
  EXPECT_EQ(e, "Roguelike-v0: option width=70: expected an integer in [5, 64]");
  e = env_error([&] { r.make("Roguelike-v0", EnvOptions::parse({"rooms=5", "width=10", "height=10"})); });
  EXPECT_EQ(e,
            "Roguelike-v0: option rooms=5: a 10x10 map holds at most 4 rooms (grid cells of at least 5x5); lower "
            "rooms or raise width/height");
  e = env_error([&] { r.make("Roguelike-v0", EnvOptions::parse({"rooms=3", "key_colors=3"})); });
  EXPECT_EQ(e,
            "Roguelike-v0: option key_colors=3 needs rooms >= 4 (each locked door leads into another room); got "
            "rooms=3");
  auto small = r.make("Roguelike-v0", EnvOptions::parse({"view_size=3", "max_episode_steps=9"}));
  EXPECT_EQ(small->spec().max_episode_steps, 9);
  EXPECT_EQ(small->observation_space().shape, (std::vector<int64_t>{3, 3, Roguelike::kNumChannels}));
  std::vector<uint8_t> obs(env->observation_space().nbytes());
  env->reset(0, obs.data());
  int64_t a = 6;
  e = env_error([&] { env->step(&a, obs.data()); });
  EXPECT_EQ(e, "Roguelike-v0: action 6 is outside Discrete(6) (allowed 0..5)");
}

}  // namespace
