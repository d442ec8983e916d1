#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agv/agv.h"
#include "agv/ray_caster.h"
#include "agv/warehouse_map.h"
#include "orchard/envs/check.h"
#include "orchard/envs/registry.h"

using namespace orchard::envs;
using orchard::EnvError;

namespace {

// Writes `text` to a file in the test's temporary directory and returns its path.
std::string write_map(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "agv_test_" + std::to_string(::getpid()) + "_" + name + ".map";
  std::ofstream(path) << text;
  return path;
}

EnvOptions options(const std::vector<std::string>& assignments) { return EnvOptions::parse(assignments); }

// The message of the EnvError that `f` throws ("" when it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const EnvError& e) {
    return e.what();
  }
  return "";
}

void expect_conformant(const std::function<std::unique_ptr<Env>()>& make) {
  CheckReport rep = check_env(make);
  for (const auto& f : rep.failures) ADD_FAILURE() << f;
  EXPECT_TRUE(rep.ok());
}

// Ray casting written independently of RayCaster: intersect the ray with every edge (segment)
// of every box and of the floor's border; the nearest t >= 0, or `range`.
double reference_distance(const agv::WarehouseMap& m, double x, double y, double angle, double range) {
  const double dx = std::cos(angle), dy = std::sin(angle);
  double best = range;
  auto edge = [&](double ax, double ay, double bx, double by) {
    // x + t d = a + u (b - a): t = (w x e) / (d x e), u = (w x d) / (d x e) with w = a - x.
    const double ex = bx - ax, ey = by - ay, wx = ax - x, wy = ay - y;
    const double den = dx * ey - dy * ex;
    if (std::fabs(den) < 1e-15) return;
    const double t = (wx * ey - wy * ex) / den, u = (wx * dy - wy * dx) / den;
    if (t >= 0 && u >= 0 && u <= 1) best = std::min(best, t);
  };
  auto box = [&](double x0, double y0, double x1, double y1) {
    edge(x0, y0, x1, y0);
    edge(x1, y0, x1, y1);
    edge(x1, y1, x0, y1);
    edge(x0, y1, x0, y0);
  };
  box(0, 0, m.width, m.height);
  for (const auto& b : m.boxes) box(b.x0, b.y0, b.x1, b.y1);
  return best;
}

agv::WarehouseMap hand_built_map() {
  agv::WarehouseMap m;
  m.width = 10;
  m.height = 10;
  m.boxes = {{6, 4, 8, 7}, {5, 6.5, 5.5, 9}};
  return m;
}

std::vector<float> cast(agv::RayCaster& caster, double x, double y, double heading) {
  std::vector<float> out(static_cast<size_t>(caster.num_rays()));
  caster.cast(x, y, heading, out.data());
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Conformance

TEST(Agv, AllFourScenesPassTheConformanceCheck) {
  expect_conformant([] { return std::make_unique<agv::SimpleStatic>(EnvOptions{}); });
  expect_conformant([] { return std::make_unique<agv::SimpleDynamic>(EnvOptions{}); });
  expect_conformant([] { return std::make_unique<agv::ComplexStatic>(EnvOptions{}); });
  expect_conformant([] { return std::make_unique<agv::ComplexDynamic>(EnvOptions{}); });
}

TEST(Agv, NonDefaultOptionsAndMapFilesPassTheConformanceCheck) {
  expect_conformant([] {
    return std::make_unique<agv::ComplexDynamic>(
        options({"num_rays=7", "max_range=25", "layout_seed=3", "dense_shaping=true", "target_speed=1.5"}));
  });
  const std::string path = write_map("conformance", "size 12 8\nshelf 3 2 9 3.2\nshelf 3 5 9 6.2\n");
  expect_conformant([path] { return std::make_unique<agv::SimpleDynamic>(options({"map_file=" + path})); });
}

// ---------------------------------------------------------------------------------------------
// Ray casting

TEST(AgvRays, ReadingsEqualTheAnalyticDistancesToBoxesAndWalls) {
  agv::RayCaster caster(8, 20.0);
  caster.set_map(hand_built_map());
  // From (3, 5) facing +x, rays every 45 degrees: east hits the first box's face x = 6;
  // north-east enters the second box through its face x = 5 at y = 7; north, west and south hit
  // the border; north-west and south-west hit the west border at y = 8 and y = 2; south-east
  // passes below the first box down to y = 0.
  std::vector<float> r = cast(caster, 3, 5, 0);
  const double s2 = std::sqrt(2.0);
  const double expected[8] = {3.0, 2 * s2, 5.0, 3 * s2, 3.0, 3 * s2, 5.0, 5 * s2};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(r[static_cast<size_t>(i)] * 20.0, expected[i], 1e-5) << "ray " << i;

  // Turned to face +y, ray 0 points north and the readings rotate by two rays.
  r = cast(caster, 3, 5, agv::kPi / 2);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(r[static_cast<size_t>(i)] * 20.0, expected[(i + 2) % 8], 1e-5) << i;
}

TEST(AgvRays, NothingWithinMaxRangeReadsOne) {
  agv::RayCaster caster(4, 4.0);
  caster.set_map(hand_built_map());
  std::vector<float> r = cast(caster, 3, 5, 0);
  EXPECT_FLOAT_EQ(r[0], 0.75f);  // box at 3 m
  EXPECT_FLOAT_EQ(r[1], 1.0f);   // border at 5 m > 4 m: a miss
  EXPECT_FLOAT_EQ(r[2], 0.75f);  // border at 3 m
  EXPECT_FLOAT_EQ(r[3], 1.0f);
  // An empty floor larger than the range: every ray misses.
  agv::WarehouseMap empty;
  empty.width = empty.height = 100;
  caster.set_map(empty);
  for (float v : cast(caster, 50, 50, 0.3)) EXPECT_EQ(v, 1.0f);
}

TEST(AgvRays, AgreeWithEdgeIntersectionAtRandomPoses) {
  agv::WarehouseMap m = hand_built_map();
  m.boxes.push_back({1, 1, 2.5, 1.5});
  m.boxes.push_back({7, 0.5, 9.5, 2});
  for (int num_rays : {1, 5, 32, 37, 360}) {
    for (double range : {3.0, 20.0}) {
      agv::RayCaster caster(num_rays, range);
      caster.set_map(m);
      Rng rng(static_cast<uint64_t>(num_rays));
      for (int pose = 0; pose < 50; ++pose) {
        double x, y;
        do {
          x = rng.uniform(0, 10);
          y = rng.uniform(0, 10);
        } while (m.clearance(x, y) < 0.05);
        const double heading = rng.uniform(-agv::kPi, agv::kPi);
        std::vector<float> r = cast(caster, x, y, heading);
        for (int i = 0; i < num_rays; ++i) {
          const double want = reference_distance(m, x, y, heading + 2 * agv::kPi * i / num_rays, range);
          ASSERT_NEAR(r[static_cast<size_t>(i)] * range, want, 1e-4)
              << "rays " << num_rays << " ray " << i << " from (" << x << ", " << y << ") heading " << heading;
        }
      }
    }
  }
}

TEST(AgvRays, ARayStartingInsideABoxReadsZero) {
  agv::RayCaster caster(6, 10.0);
  caster.set_map(hand_built_map());
  for (float v : cast(caster, 7, 5, 1.0)) EXPECT_EQ(v, 0.0f);
}

TEST(AgvRays, TheEnvObservationStartsWithTheReadingsAtTheStartPose) {
  const std::string path = write_map("rays", "size 10 10\nbox 6 4 8 7\nbox 5 6.5 5.5 9\nstart 3 5 0\ntarget 1 9\n");
  agv::SimpleStatic env(options({"map_file=" + path, "num_rays=8", "max_range=20"}));
  std::vector<float> obs(13);
  env.reset(0, obs.data());
  const double s2 = std::sqrt(2.0);
  const double expected[8] = {3.0, 2 * s2, 5.0, 3 * s2, 3.0, 3 * s2, 5.0, 5 * s2};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(obs[static_cast<size_t>(i)] * 20.0, expected[i], 1e-5) << "ray " << i;
}

// ---------------------------------------------------------------------------------------------
// Dynamics, rewards and termination

TEST(Agv, ObservationHoldsTargetDistanceBearingSpeedAndYawRate) {
  const std::string path = write_map("obs", "size 12 6\nstart 2 3 90\ntarget 6 3\n");
  agv::SimpleStatic env(options({"map_file=" + path, "num_rays=4"}));
  ASSERT_EQ(env.observation_space().shape, std::vector<int64_t>{9});
  std::vector<float> obs(9);
  env.reset(0, obs.data());
  const double diagonal = std::hypot(12.0, 6.0);
  EXPECT_NEAR(obs[4], 4.0 / diagonal, 1e-6);
  // Facing +y with the target due east: it lies to the right, bearing -90 degrees.
  EXPECT_NEAR(obs[5], 0.0, 1e-6);
  EXPECT_NEAR(obs[6], -1.0, 1e-6);
  EXPECT_EQ(obs[7], 0.0f);
  EXPECT_EQ(obs[8], 0.0f);
  float action[2] = {1.0f, 0.5f};
  env.step(action, obs.data());
  EXPECT_NEAR(obs[7], 0.1 / agv::kMaxSpeed, 1e-6);  // v = a0 * 1 m/s^2 * 0.1 s
  EXPECT_NEAR(obs[8], 0.5, 1e-6);                   // omega = a1 * kMaxYawRate
  EXPECT_NEAR(env.state().vehicle.heading, agv::kPi / 2 + 0.5 * agv::kMaxYawRate * agv::kDt, 1e-12);
}

TEST(Agv, CollisionWithAShelfTerminatesWithMinusOne) {
  const std::string path = write_map("collision", "size 12 6\nshelf 8 0 9 6\nstart 2 3 0\ntarget 2 5\n");
  agv::SimpleStatic env(options({"map_file=" + path}));
  std::vector<float> obs(37);
  env.reset(0, obs.data());
  float full_ahead[2] = {1.0f, 0.0f};
  double x = 2.0, v = 0.0;
  for (int t = 1; t < 200; ++t) {
    v = std::min(v + 0.1, 2.0);
    x += v * 0.1;
    const bool touching = 8.0 - x < agv::kRadius;  // the disc reaches the shelf's face x = 8
    StepResult r = env.step(full_ahead, obs.data());
    ASSERT_NEAR(env.state().vehicle.x, x, 1e-9);
    ASSERT_EQ(r.terminated, touching) << "t=" << t;
    if (touching) {
      EXPECT_EQ(r.reward, -1.0f);
      EXPECT_FALSE(r.truncated);
      EXPECT_TRUE(env.state().collided);
      EXPECT_FALSE(env.state().reached);
      std::vector<std::pair<std::string, double>> info;
      env.info(&info);
      EXPECT_EQ(info[1], (std::pair<std::string, double>("collided", 1.0)));
      return;
    }
    EXPECT_EQ(r.reward, static_cast<float>(-1.0 / 2000));
  }
  FAIL() << "never collided";
}

TEST(Agv, CollisionIsTheDiscAgainstBoxesAndTheBorder) {
  const std::string path = write_map("disc", "size 12 12\nbox 4 4 6 6\nstart 9 9 0\ntarget 1 11\n");
  agv::SimpleStatic env(options({"map_file=" + path}));
  std::vector<float> obs(37);
  float stand[2] = {0.0f, 0.0f};
  auto collides_at = [&](double x, double y) {
    env.reset(0, obs.data());
    agv::AgvState s = env.state();
    s.vehicle = {x, y, 0.0, 0.0, 0.0};
    env.set_state(s);
    StepResult r = env.step(stand, obs.data());
    EXPECT_EQ(r.terminated, r.reward == -1.0f);
    return r.terminated;
  };
  // Diagonally off the corner (6, 6): the disc touches at distance < 0.4, i.e. 0.28 < 0.4 but
  // 0.42 > 0.4 (a square margin would call both collisions).
  EXPECT_TRUE(collides_at(6.2, 6.2));
  EXPECT_FALSE(collides_at(6.3, 6.3));
  EXPECT_TRUE(collides_at(5.0, 6.39));   // 0.39 above the top face
  EXPECT_FALSE(collides_at(5.0, 6.41));
  EXPECT_TRUE(collides_at(0.39, 9.0));   // the border
  EXPECT_FALSE(collides_at(0.41, 9.0));
  EXPECT_TRUE(collides_at(9.0, 11.7));
  // The map's clearance is the Euclidean distance to the nearest solid point.
  EXPECT_NEAR(env.map().clearance(7, 5), 1.0, 1e-12);  // the box's face x = 6
  EXPECT_NEAR(env.map().clearance(6.3, 6.4), std::hypot(0.3, 0.4), 1e-12);
  EXPECT_EQ(env.map().clearance(5, 5), 0.0);
}

TEST(Agv, ReachingTheTargetTerminatesWithPlusOne) {
  const std::string path = write_map("reach", "size 12 6\nstart 2 3 0\ntarget 6 3\n");
  agv::SimpleStatic env(options({"map_file=" + path}));
  std::vector<float> obs(37);
  env.reset(0, obs.data());
  float full_ahead[2] = {1.0f, 0.0f};
  double x = 2.0, v = 0.0;
  for (int t = 1; t < 200; ++t) {
    v = std::min(v + 0.1, 2.0);
    x += v * 0.1;
    const bool reached = 6.0 - x <= agv::kReachDistance;
    StepResult r = env.step(full_ahead, obs.data());
    ASSERT_EQ(r.terminated, reached) << "t=" << t;
    if (reached) {
      EXPECT_EQ(r.reward, 1.0f);
      EXPECT_TRUE(env.state().reached);
      EXPECT_FALSE(env.state().collided);
      return;
    }
    EXPECT_EQ(r.reward, static_cast<float>(-1.0 / 2000));
  }
  FAIL() << "never reached the target";
}

TEST(Agv, TimePenaltyIsMinusOneOverMaxStepsAndTheLimitTruncates) {
  const std::string path = write_map("penalty", "size 12 6\nstart 2 3 0\ntarget 10 3\n");
  for (int64_t limit : {int64_t{50}, int64_t{3000}}) {
    agv::ComplexStatic env(options({"map_file=" + path, "max_episode_steps=" + std::to_string(limit)}));
    EXPECT_EQ(env.spec().max_episode_steps, limit);
    std::vector<float> obs(37);
    env.reset(0, obs.data());
    float stand[2] = {0.0f, 0.0f};
    StepResult r;
    double total = 0;
    for (int64_t t = 0; t < limit; ++t) {
      r = env.step(stand, obs.data());
      ASSERT_EQ(r.reward, static_cast<float>(-1.0 / static_cast<double>(limit)));
      ASSERT_FALSE(r.terminated);
      ASSERT_EQ(r.truncated, t == limit - 1);
      total += r.reward;
    }
    EXPECT_NEAR(total, -1.0, 1e-4);
  }
}

TEST(Agv, DenseShapingAddsProgressOverTheDiagonal) {
  const std::string path = write_map("shaping", "size 12 6\nstart 2 3 0\ntarget 10 3\n");
  agv::SimpleStatic env(options({"map_file=" + path, "dense_shaping=true"}));
  std::vector<float> obs(37);
  env.reset(0, obs.data());
  const double diagonal = std::hypot(12.0, 6.0);
  double x = 2.0, v = 0.0;
  float full_ahead[2] = {1.0f, 0.0f};
  for (int t = 0; t < 20; ++t) {
    const double before = 10.0 - x;
    v = std::min(v + 0.1, 2.0);
    x += v * 0.1;
    StepResult r = env.step(full_ahead, obs.data());
    EXPECT_NEAR(r.reward, -1.0 / 2000 + (before - (10.0 - x)) / diagonal, 1e-7);
  }
}

TEST(Agv, ActionsAreClippedAndNaNIsRejected) {
  auto run = [](float a0, float a1) {
    agv::SimpleStatic env(EnvOptions{});
    std::vector<float> obs(37);
    env.reset(4, obs.data());
    float a[2] = {a0, a1};
    for (int t = 0; t < 5 && env.episode_active(); ++t) env.step(a, obs.data());
    return obs;
  };
  EXPECT_EQ(run(7.0f, -3.0f), run(1.0f, -1.0f));
  agv::SimpleStatic env(EnvOptions{});
  std::vector<float> obs(37);
  env.reset(0, obs.data());
  float bad[2] = {std::nanf(""), 0.0f};
  EXPECT_NE(error_of([&] { env.step(bad, obs.data()); }).find("AGV-SimpleStatic-v0: action"), std::string::npos);
}

TEST(Agv, SpeedIsLimitedAndHeadingWraps) {
  const std::string path = write_map("limits", "size 100 100\nstart 10 50 170\ntarget 90 90\n");
  agv::SimpleStatic env(options({"map_file=" + path}));
  std::vector<float> obs(37);
  env.reset(0, obs.data());
  float turn_left_fast[2] = {1.0f, 1.0f};
  for (int t = 0; t < 40 && env.episode_active(); ++t) {
    env.step(turn_left_fast, obs.data());
    EXPECT_LE(env.state().vehicle.v, agv::kMaxSpeed);
    EXPECT_GT(env.state().vehicle.heading, -agv::kPi);
    EXPECT_LE(env.state().vehicle.heading, agv::kPi);
  }
  float reverse[2] = {-1.0f, 0.0f};
  for (int t = 0; t < 60 && env.episode_active(); ++t) env.step(reverse, obs.data());
  EXPECT_DOUBLE_EQ(env.state().vehicle.v, agv::kMinSpeed);
}

// ---------------------------------------------------------------------------------------------
// Moving target

TEST(Agv, MovingTargetFollowsClearWaypointLegsAtTheConfiguredSpeed) {
  for (double speed : {0.5, 1.3}) {
    agv::ComplexDynamic env(options({"target_speed=" + std::to_string(speed)}));
    std::vector<float> obs(37);
    env.reset(11, obs.data());
    float stand[2] = {0.0f, 0.0f};
    int steps = 0, full_speed_steps = 0;
    for (int t = 0; t < 4000; ++t) {
      const agv::AgvState before = env.state();
      StepResult r = env.step(stand, obs.data());
      const agv::AgvState& s = env.state();
      // Always in free space: at least kTargetClearance from every box and the border.
      ASSERT_GE(env.map().clearance(s.target_x, s.target_y), agv::kTargetClearance - 1e-9) << "t=" << t;
      // On the current leg, which is clear as a whole.
      const double lx = s.waypoint_x - s.leg_x, ly = s.waypoint_y - s.leg_y;
      const double cross = lx * (s.target_y - s.leg_y) - ly * (s.target_x - s.leg_x);
      ASSERT_NEAR(cross, 0.0, 1e-9 * (1.0 + std::hypot(lx, ly)));
      ASSERT_TRUE(env.map().segment_clear(s.leg_x, s.leg_y, s.waypoint_x, s.waypoint_y, agv::kTargetClearance));
      // Never faster than the speed; exactly at it except in steps that turn at a waypoint.
      const double moved = std::hypot(s.target_x - before.target_x, s.target_y - before.target_y);
      ASSERT_LE(moved, speed * agv::kDt + 1e-9);
      ++steps;
      if (std::fabs(moved - speed * agv::kDt) < 1e-9) ++full_speed_steps;
      if (r.terminated || r.truncated) env.reset(std::nullopt, obs.data());
    }
    EXPECT_GT(full_speed_steps, steps * 9 / 10) << "speed " << speed;
  }
}

TEST(Agv, TargetSpeedZeroAndStaticScenesKeepTheTargetStill) {
  agv::SimpleDynamic still(options({"target_speed=0"}));
  agv::SimpleStatic fixed(EnvOptions{});
  std::vector<float> obs(37);
  for (Env* env : std::vector<Env*>{&still, &fixed}) {
    env->reset(5, obs.data());
    auto target = [&] {
      const auto& s = env == &still ? still.state() : fixed.state();
      return std::make_pair(s.target_x, s.target_y);
    };
    const auto start = target();
    float stand[2] = {0.0f, 0.0f};
    for (int t = 0; t < 100; ++t) env->step(stand, obs.data());
    EXPECT_EQ(target(), start);
  }
}

// ---------------------------------------------------------------------------------------------
// Layouts

TEST(AgvLayouts, FreeSpaceIsOneConnectedRegionAndPosesLieInIt) {
  for (agv::Layout layout : {agv::Layout::kSimple, agv::Layout::kComplex}) {
    for (uint64_t seed = 0; seed < 30; ++seed) {
      Rng rng(seed);
      agv::WarehouseMap m;
      agv::generate_layout(layout, rng, &m);
      // Cells of 0.2 m where the vehicle's centre may stand, 4-connected flood fill.
      const double cell = 0.2;
      const int nx = static_cast<int>(m.width / cell), ny = static_cast<int>(m.height / cell);
      std::vector<char> passable(static_cast<size_t>(nx * ny)), seen(passable.size(), 0);
      int free_cells = 0, first = -1;
      for (int j = 0; j < ny; ++j) {
        for (int i = 0; i < nx; ++i) {
          const bool f = m.clearance((i + 0.5) * cell, (j + 0.5) * cell) >= agv::kRadius;
          passable[static_cast<size_t>(j * nx + i)] = f;
          free_cells += f;
          if (f && first < 0) first = j * nx + i;
        }
      }
      ASSERT_GT(free_cells, nx * ny / 3);
      std::deque<int> queue = {first};
      seen[static_cast<size_t>(first)] = 1;
      int reached = 0;
      while (!queue.empty()) {
        const int c = queue.front();
        queue.pop_front();
        ++reached;
        const int i = c % nx, j = c / nx;
        const int next[4][2] = {{i + 1, j}, {i - 1, j}, {i, j + 1}, {i, j - 1}};
        for (const auto& n : next) {
          if (n[0] < 0 || n[0] >= nx || n[1] < 0 || n[1] >= ny) continue;
          const size_t k = static_cast<size_t>(n[1] * nx + n[0]);
          if (passable[k] && !seen[k]) {
            seen[k] = 1;
            queue.push_back(static_cast<int>(k));
          }
        }
      }
      EXPECT_EQ(reached, free_cells) << (layout == agv::Layout::kSimple ? "simple" : "complex") << " seed " << seed;
      for (const auto& b : m.boxes) {
        EXPECT_TRUE(b.x0 >= 0 && b.y0 >= 0 && b.x1 <= m.width && b.y1 <= m.height && b.x0 < b.x1 && b.y0 < b.y1);
      }
    }
  }
}

TEST(AgvLayouts, SizesBoxCountsAndStartTargetPlacement) {
  agv::SimpleStatic simple(EnvOptions{});
  agv::ComplexStatic complex(EnvOptions{});
  std::vector<float> obs(37);
  for (uint64_t seed = 0; seed < 50; ++seed) {
    simple.reset(seed, obs.data());
    complex.reset(seed, obs.data());
    EXPECT_EQ(simple.map().width, 20.0);
    EXPECT_EQ(simple.map().height, 20.0);
    EXPECT_EQ(complex.map().width, 40.0);
    EXPECT_EQ(complex.map().height, 30.0);
    EXPECT_GE(simple.map().boxes.size(), 4u);
    EXPECT_GE(complex.map().boxes.size(), 12u);
    for (auto* s : {&simple.state(), &complex.state()}) {
      const auto& m = s == &simple.state() ? simple.map() : complex.map();
      EXPECT_GE(m.clearance(s->vehicle.x, s->vehicle.y), agv::kStartClearance);
      EXPECT_GE(m.clearance(s->target_x, s->target_y), agv::kTargetClearance);
      EXPECT_GE(s->distance, agv::kMinTargetSeparation * m.diagonal());
    }
  }
}

TEST(AgvLayouts, EachEpisodeDrawsALayoutUnlessLayoutSeedFixesIt) {
  auto boxes_after_reset = [](Env& env, uint64_t seed, const agv::WarehouseMap& m) {
    std::vector<float> obs(37);
    env.reset(seed, obs.data());
    std::vector<double> flat;
    for (const auto& b : m.boxes) flat.insert(flat.end(), {b.x0, b.y0, b.x1, b.y1});
    return flat;
  };
  agv::ComplexStatic per_episode(EnvOptions{});
  EXPECT_NE(boxes_after_reset(per_episode, 1, per_episode.map()), boxes_after_reset(per_episode, 2, per_episode.map()));
  EXPECT_EQ(boxes_after_reset(per_episode, 1, per_episode.map()), boxes_after_reset(per_episode, 1, per_episode.map()));
  agv::ComplexStatic fixed(options({"layout_seed=9"}));
  const auto a = boxes_after_reset(fixed, 1, fixed.map());
  EXPECT_EQ(a, boxes_after_reset(fixed, 2, fixed.map()));
  agv::ComplexStatic other(options({"layout_seed=10"}));
  EXPECT_NE(a, boxes_after_reset(other, 1, other.map()));
}

TEST(AgvLayouts, SnapshotCarriesTheEpisodesLayout) {
  agv::ComplexDynamic env(EnvOptions{});
  std::vector<float> obs(37), replay(37);
  env.reset(1, obs.data());
  float a[2] = {0.3f, 0.2f};
  env.step(a, obs.data());
  const auto snap = env.snapshot();
  const auto boxes = env.map().boxes.size();
  const double first_x0 = env.map().boxes[0].x0;
  std::vector<float> expected;
  for (int t = 0; t < 20 && env.episode_active(); ++t) {
    env.step(a, obs.data());
    expected.insert(expected.end(), obs.begin(), obs.end());
  }
  env.reset(2, obs.data());  // another layout
  env.restore(snap);
  EXPECT_EQ(env.map().boxes.size(), boxes);
  EXPECT_EQ(env.map().boxes[0].x0, first_x0);
  std::vector<float> got;
  for (int t = 0; t < 20 && env.episode_active(); ++t) {
    env.step(a, replay.data());
    got.insert(got.end(), replay.begin(), replay.end());
  }
  EXPECT_EQ(got, expected);
}

// ---------------------------------------------------------------------------------------------
// Map files

TEST(AgvMapFile, ParsesEveryEntryCommentsAndSynonyms) {
  const std::string path = write_map("good",
                                     "# a test floor\n"
                                     "\n"
                                     "size 12.5 8   # metres\n"
                                     "box 1 1 2 2\n"
                                     "  shelf 3 0.5 9 1.5\n"
                                     "wall 11 0 12.5 3\n"
                                     "start 1.5 4 -90\n"
                                     "target 6 7\n");
  agv::WarehouseMap m = agv::load_map_file("X", path);
  EXPECT_EQ(m.width, 12.5);
  EXPECT_EQ(m.height, 8.0);
  ASSERT_EQ(m.boxes.size(), 3u);
  EXPECT_EQ(m.boxes[1].x0, 3.0);
  EXPECT_EQ(m.boxes[1].y0, 0.5);
  EXPECT_EQ(m.boxes[1].x1, 9.0);
  EXPECT_EQ(m.boxes[1].y1, 1.5);
  EXPECT_TRUE(m.has_start);
  EXPECT_EQ(m.start_x, 1.5);
  EXPECT_NEAR(m.start_heading, -agv::kPi / 2, 1e-12);
  EXPECT_EQ(m.start_line, 7);
  EXPECT_TRUE(m.has_target);
  EXPECT_EQ(m.target_y, 7.0);

  agv::SimpleStatic env(options({"map_file=" + path}));
  std::vector<float> obs(37);
  env.reset(0, obs.data());
  EXPECT_EQ(env.state().vehicle.x, 1.5);
  EXPECT_EQ(env.state().target_x, 6.0);
}

TEST(AgvMapFile, MalformedFilesNameTheFileLineAndProblem) {
  struct Case {
    const char* name;
    const char* text;
    const char* problem;  // after "<env>: map file '<path>'"
  };
  const Case cases[] = {
      {"before_size", "box 1 1 2 2\nsize 10 10\n", " line 1: 'box' before 'size' (the first entry must be 'size WIDTH HEIGHT')"},
      {"count", "size 10 10\nbox 1 1 2\n", " line 2: expected 'box X0 Y0 X1 Y1' (4 numbers), got 3"},
      {"number", "size 10 10\n\nshelf 1 1 two 2\n", " line 3: 'two' is not a number (expected 'shelf X0 Y0 X1 Y1')"},
      {"empty_box", "size 10 10\nbox 3 1 2 2\n", " line 2: box [3, 2] x [1, 2] is empty (need X0 < X1 and Y0 < Y1)"},
      {"outside", "size 10 10\nwall 8 8 11 9\n",
       " line 2: wall [8, 11] x [8, 9] extends outside the floor [0, 10] x [0, 10]"},
      {"second_size", "size 10 10\nsize 5 5\n", " line 2: second 'size' entry (the first is on line 1)"},
      {"bad_size", "size 0 10\n", " line 1: size 0 x 10: width and height must be in (0, 1000] metres"},
      {"unknown", "size 10 10\nrack 1 1 2 2\n",
       " line 2: unknown entry 'rack' (expected size, box, shelf, wall, start or target)"},
      {"no_size", "# nothing here\n", ": no 'size WIDTH HEIGHT' entry"},
      {"start_outside", "size 10 10\nstart 11 5 0\n", " line 2: start (11, 5) is outside the floor [0, 10] x [0, 10]"},
      {"second_target", "size 10 10\ntarget 5 5\ntarget 6 6\n", " line 3: second 'target' entry (the first is on line 2)"},
      {"nan", "size 10 nan\n", " line 1: 'nan' is not a number (expected 'size WIDTH HEIGHT')"},
      {"start_in_box", "size 10 10\nbox 4 4 6 6\nstart 3.8 5 0\n",
       " line 3: start (3.8, 5) is closer than the vehicle's radius (0.4 m) to a box or the border"},
      {"target_at_wall", "size 10 10\ntarget 0.3 5\n", " line 2: target (0.3, 5) is closer than 0.5 m to a box or the border"},
      {"no_room", "size 1 1\n", ": found no free place for the start and target in 1000 tries"},
  };
  EnvRegistry r;
  register_agv(r);
  for (const Case& c : cases) {
    const std::string path = write_map(c.name, c.text);
    const std::string msg =
        error_of([&] { r.make("AGV-ComplexDynamic-v0", options({"map_file=" + path})); });
    const std::string want = "AGV-ComplexDynamic-v0: map file '" + path + "'" + c.problem;
    EXPECT_EQ(msg.substr(0, want.size()), want) << c.name;
  }
  const std::string missing = ::testing::TempDir() + "agv_test_does_not_exist.map";
  EXPECT_EQ(error_of([&] { r.make("AGV-SimpleStatic-v0", options({"map_file=" + missing})); }),
            "AGV-SimpleStatic-v0: map file '" + missing + "': cannot open (No such file or directory)");
}

TEST(AgvMapFile, TheExampleMapsLoad) {
  // The repository root, from this file's path (tests/envs/agv_test.cc).
  std::string root = __FILE__;
  root = root.substr(0, root.size() - std::string("tests/envs/agv_test.cc").size());
  for (const char* name : {"agv_two_rows.map", "agv_small_warehouse.map"}) {
    const std::string path = root + "examples/maps/" + name;
    expect_conformant([path] { return std::make_unique<agv::SimpleDynamic>(options({"map_file=" + path})); });
  }
}

// ---------------------------------------------------------------------------------------------
// Registration and options

TEST(Agv, RegistersFourEnvsWithThePapersStepLimits) {
  EnvRegistry r;
  register_agv(r);
  const std::pair<const char*, int64_t> envs[] = {{"AGV-SimpleStatic-v0", 2000},
                                                  {"AGV-SimpleDynamic-v0", 2000},
                                                  {"AGV-ComplexStatic-v0", 3000},
                                                  {"AGV-ComplexDynamic-v0", 4000}};
  for (const auto& entry : envs) {
    const std::string name = entry.first;
    const int64_t steps = entry.second;
    auto env = r.make(name);
    EXPECT_EQ(env->name(), name);
    EXPECT_EQ(env->spec().max_episode_steps, steps);
    EXPECT_EQ(env->observation_space().shape, std::vector<int64_t>{37});
    EXPECT_EQ(env->action_space().to_string(), Space::box({2}, -1.0, 1.0).to_string());
    EXPECT_EQ(r.find(name)->family, "agv");
    EXPECT_NE(error_of([&] { r.make(name, options({"bogus=1"})); }).find("unknown option 'bogus'"), std::string::npos);
    auto custom = r.make(name, options({"num_rays=16", "max_episode_steps=77"}));
    EXPECT_EQ(custom->observation_space().shape, std::vector<int64_t>{21});
    EXPECT_EQ(custom->spec().max_episode_steps, 77);
  }
  // Every option the env reads is documented.
  for (const char* name : {"AGV-SimpleStatic-v0", "AGV-ComplexDynamic-v0"}) {
    std::string docs;
    for (const auto& o : r.find(name)->options) docs += o.key + ",";
    const std::string allowed = error_of([&] { r.make(name, options({"zzz=1"})); });
    for (const auto& o : r.find(name)->options) EXPECT_NE(allowed.find(o.key), std::string::npos) << o.key;
    EXPECT_EQ(docs.find("target_speed") != std::string::npos, std::string(name) == "AGV-ComplexDynamic-v0");
  }
}

TEST(Agv, BadOptionValuesAreClearErrors) {
  EnvRegistry r;
  register_agv(r);
  auto msg = [&](const char* env, const std::string& o) { return error_of([&] { r.make(env, options({o})); }); };
  EXPECT_EQ(msg("AGV-SimpleStatic-v0", "num_rays=0"),
            "AGV-SimpleStatic-v0: option num_rays=0: expected an integer in [1, 1024]");
  EXPECT_EQ(msg("AGV-SimpleStatic-v0", "max_range=-1"),
            "AGV-SimpleStatic-v0: option max_range=-1: expected a number in [0.1, 1000]");
  EXPECT_EQ(msg("AGV-SimpleDynamic-v0", "target_speed=5"),
            "AGV-SimpleDynamic-v0: option target_speed=5: expected a number in [0, 2]");
  EXPECT_EQ(msg("AGV-ComplexStatic-v0", "dense_shaping=maybe"),
            "AGV-ComplexStatic-v0: option dense_shaping=maybe: expected true or false");
  EXPECT_NE(msg("AGV-ComplexStatic-v0", "max_episode_steps=0").find("max_episode_steps=0: expected an integer in [1,"),
            std::string::npos);
  EXPECT_NE(msg("AGV-ComplexStatic-v0", "layout_seed=-2").find("layout_seed=-2: expected an integer in [-1,"),
            std::string::npos);
  // A static scene has no moving target to set the speed of.
  EXPECT_NE(msg("AGV-SimpleStatic-v0", "target_speed=1").find("unknown option 'target_speed'"), std::string::npos);
  EXPECT_EQ(error_of([&] { r.make("AGV-SimpleStatic-v0", options({"map_file=x.map", "layout_seed=3"})); }),
            "AGV-SimpleStatic-v0: options map_file and layout_seed=3 exclude each other (layout_seed picks a "
            "procedural layout; leave it at -1 with a map file)");
}
