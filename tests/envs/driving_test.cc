#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "driving/highway.h"
#include "driving/road.h"
#include "driving/vehicle.h"
#include "orchard/envs/check.h"
#include "orchard/envs/registry.h"

using namespace orchard::envs;
using namespace orchard::envs::driving;
using orchard::EnvError;

namespace {

constexpr double kDt = 1.0 / 15.0;

EnvOptions opts(const std::vector<std::string>& kv) { return EnvOptions::parse(kv); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const EnvError& e) {
    return e.what();
  }
  return "(no error)";
}

Vehicle ego_vehicle(Vehicle::Kind kind, double x, double y, double speed, double target_speed) {
  Vehicle v;
  v.kind = kind;
  v.x = x;
  v.y = y;
  v.speed = speed;
  v.target_speed = target_speed;
  return v;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Conformance

TEST(Highway, PassesConformanceCheck) {
  auto rep = check_env([] { return std::make_unique<Highway>(EnvOptions{}); });
  for (const auto& f : rep.failures) ADD_FAILURE() << f;
  EXPECT_TRUE(rep.ok());
}

TEST(HighwayContinuous, PassesConformanceCheck) {
  auto rep = check_env([] { return std::make_unique<HighwayContinuous>(EnvOptions{}); });
  for (const auto& f : rep.failures) ADD_FAILURE() << f;
  EXPECT_TRUE(rep.ok());
}

TEST(Highway, SpacesMatchHighwayV0) {
  Highway env({});
  EXPECT_EQ(env.observation_space().to_string(), Space::box({5, 5}, -1.0, 1.0).to_string());
  EXPECT_EQ(env.action_space().kind, SpaceKind::kDiscrete);
  EXPECT_EQ(env.action_space().n, 5);
  EXPECT_EQ(env.spec().max_episode_steps, 40);
  EXPECT_EQ(env.frames_per_action(), 15);
  HighwayContinuous cont({});
  EXPECT_EQ(cont.action_space().to_string(), Space::box({2}, -1.0, 1.0).to_string());
}

// ---------------------------------------------------------------------------------------------
// IDM

TEST(Idm, FreeRoadAccelerationIsAOneMinusSpeedRatioToTheDelta) {
  // a (1 - (v / v0)^delta), a = 3 m/s^2, v0 clipped to the 30 m/s speed limit.
  EXPECT_NEAR(idm_free_acceleration(10.0, 25.0, 4.0, 30.0), 3.0 * (1.0 - std::pow(10.0 / 25.0, 4.0)), 1e-12);
  EXPECT_NEAR(idm_free_acceleration(12.0, 20.0, 3.7, 30.0), 3.0 * (1.0 - std::pow(12.0 / 20.0, 3.7)), 1e-12);
  EXPECT_NEAR(idm_free_acceleration(20.0, 45.0, 4.0, 30.0), 3.0 * (1.0 - std::pow(20.0 / 30.0, 4.0)), 1e-12);
  EXPECT_NEAR(idm_free_acceleration(-3.0, 25.0, 4.0, 30.0), 3.0, 1e-12);  // max(v, 0)
  EXPECT_NEAR(idm_free_acceleration(25.0, 25.0, 4.0, 30.0), 0.0, 1e-12);

  // One simulation step of a lone IDM vehicle applies exactly that acceleration.
  Road road(1, 1);
  Vehicle v = make_idm_vehicle(100.0, 0.0, 10.0, 4.0);
  v.target_speed = 25.0;
  road.add_vehicle(v);
  road.refresh();
  road.step(kDt);
  const double a = 3.0 * (1.0 - std::pow(10.0 / 25.0, 4.0));
  EXPECT_NEAR(road.vehicle(0).acceleration, a, 1e-12);
  EXPECT_NEAR(road.vehicle(0).speed, 10.0 + a * kDt, 1e-12);
  EXPECT_NEAR(road.vehicle(0).x, 100.0 + 10.0 * kDt, 1e-12);
  EXPECT_NEAR(road.vehicle(0).y, 0.0, 1e-12);
}

TEST(Idm, DesiredGapIsJamDistancePlusTimeGapPlusApproachTerm) {
  Vehicle ego = make_idm_vehicle(0, 0, 20.0);
  Vehicle front = make_idm_vehicle(50, 0, 15.0);
  // s* = s0 + v T + v dv / (2 sqrt(a b)), s0 = 10 m, T = 1.5 s, a = 3, b = 5.
  EXPECT_NEAR(idm_desired_gap(ego, front), 10.0 + 20.0 * 1.5 + 20.0 * 5.0 / (2 * std::sqrt(15.0)), 1e-12);
  EXPECT_NEAR(idm_acceleration(&ego, &front, 4.0, 30.0),
              3.0 * (1 - std::pow(20.0 / 20.0, 4.0)) - 3.0 * std::pow(idm_desired_gap(ego, front) / 50.0, 2), 1e-12);
  EXPECT_EQ(idm_acceleration(nullptr, &front, 4.0, 30.0), 0.0);
}

TEST(Idm, FollowerConvergesToLeaderSpeedAtTheEquilibriumGap) {
  Road road(1, 2);
  road.add_vehicle(make_idm_vehicle(100.0, 0.0, 20.0, 4.0));  // leader: desired speed 20 m/s
  Vehicle follower = make_idm_vehicle(40.0, 0.0, 26.0, 4.0);
  follower.target_speed = 30.0;
  road.add_vehicle(follower);
  road.refresh();
  for (int t = 0; t < 15 * 150; ++t) road.step(kDt);
  const Vehicle& lead = road.vehicle(0);
  const Vehicle& fol = road.vehicle(1);
  EXPECT_FALSE(lead.crashed || fol.crashed);
  EXPECT_NEAR(lead.speed, 20.0, 1e-9);
  EXPECT_NEAR(fol.speed, 20.0, 1e-3);
  // At equal speeds s* = s0 + v T = 40 m; the IDM equilibrium is a (1 - (v/v0)^4) = a (s*/d)^2,
  // i.e. d = s* / sqrt(1 - (20/30)^4) = 44.65 m, close to s*.
  const double s_star = 10.0 + 20.0 * 1.5;
  const double d_eq = s_star / std::sqrt(1.0 - std::pow(20.0 / 30.0, 4.0));
  const double gap = lead.x - fol.x;
  EXPECT_NEAR(gap, d_eq, 0.05);
  EXPECT_NEAR(gap, s_star, 0.15 * s_star);
}

// ---------------------------------------------------------------------------------------------
// MOBIL

namespace {

// A (vehicle 0) cruises at its desired 25 m/s in lane 0 behind B, `gap` m ahead at the same
// speed; lane 1 is empty unless a follower is given. Returns the road after one step.
Road mobil_scene(double gap, double new_follower_x = -1) {
  Road road(2, 3);
  Vehicle a = make_idm_vehicle(100.0, 0.0, 25.0, 4.0);
  a.timer = 1.5;  // a MOBIL decision is due
  road.add_vehicle(a);
  Vehicle b = make_idm_vehicle(100.0 + gap, 0.0, 25.0, 4.0);
  b.timer = 0.0;
  road.add_vehicle(b);
  if (new_follower_x >= 0) {
    Vehicle c = make_idm_vehicle(new_follower_x, 4.0, 25.0, 4.0);
    c.timer = 0.0;
    road.add_vehicle(c);
  }
  road.refresh();
  road.step(kDt);
  return road;
}

}  // namespace

TEST(Mobil, ChangesLaneWhenTheAccelerationGainExceedsTheThreshold) {
  // Gain = a_new - a_old = 0 - (-3 (s*/d)^2) with s* = 10 + 25 * 1.5 = 47.5 m: 0.221 at d = 175.
  const double gain = 3.0 * std::pow(47.5 / 175.0, 2);
  ASSERT_GT(gain, 0.2);
  Road road = mobil_scene(175.0);
  EXPECT_EQ(road.vehicle(0).target_lane, 1);
  EXPECT_EQ(road.vehicle(0).timer, kDt);  // reset at the decision, then advanced by the step
  for (int t = 0; t < 15 * 6; ++t) road.step(kDt);
  EXPECT_EQ(road.vehicle(0).lane, 1);
  EXPECT_NEAR(road.vehicle(0).y, 4.0, 0.05);
  EXPECT_NEAR(road.vehicle(0).heading, 0.0, 0.01);
}

TEST(Mobil, KeepsLaneWhenTheGainIsBelowTheThreshold) {
  const double gain = 3.0 * std::pow(47.5 / 195.0, 2);  // 0.178
  ASSERT_LT(gain, 0.2);
  Road road = mobil_scene(195.0);
  EXPECT_EQ(road.vehicle(0).target_lane, 0);
  for (int t = 0; t < 15 * 3; ++t) road.step(kDt);
  EXPECT_EQ(road.vehicle(0).lane, 0);
}

TEST(Mobil, RefusesAChangeThatForcesTheNewFollowerToBrakeHard) {
  // Large gain (d = 100), but the new follower, 10 m behind in lane 1, would have to brake at
  // 3 (47.5 / 10)^2 m/s^2 > 2 m/s^2.
  Road road = mobil_scene(100.0, 90.0);
  EXPECT_EQ(road.vehicle(0).target_lane, 0);
  // Without that follower the same change happens.
  EXPECT_EQ(mobil_scene(100.0).vehicle(0).target_lane, 1);
}

TEST(Mobil, DecidesOnlyOncePerSecond) {
  Road road(2, 2);
  Vehicle a = make_idm_vehicle(100.0, 0.0, 25.0, 4.0);
  a.timer = 0.5;
  road.add_vehicle(a);
  Vehicle b = make_idm_vehicle(160.0, 0.0, 25.0, 4.0);
  b.timer = 0.0;
  road.add_vehicle(b);
  road.refresh();
  int first_change = -1;
  for (int t = 0; t < 15 && first_change < 0; ++t) {
    road.step(kDt);
    if (road.vehicle(0).target_lane == 1) first_change = t;
  }
  // The timer passes 1 s after 8 steps (0.5 + 8/15 > 1); the decision is taken at the next act.
  EXPECT_EQ(first_change, 8);
}

// ---------------------------------------------------------------------------------------------
// Collisions (separating axis theorem)

namespace {

OrientedRect car(double x, double y, double heading) {
  return {x, y, std::cos(heading), std::sin(heading), 2.5, 1.0};
}

// Area of the intersection of two oriented rectangles by Sutherland-Hodgman clipping: an
// independent check of the SAT.
double intersection_area(const OrientedRect& a, const OrientedRect& b) {
  auto corners = [](const OrientedRect& r) {
    std::vector<std::pair<double, double>> p;
    const double sx[4] = {1, -1, -1, 1}, sy[4] = {1, 1, -1, -1};
    for (int k = 0; k < 4; ++k) {
      const double u = sx[k] * r.half_length, w = sy[k] * r.half_width;
      p.emplace_back(r.cx + u * r.cos_h - w * r.sin_h, r.cy + u * r.sin_h + w * r.cos_h);
    }
    return p;  // counter-clockwise
  };
  auto poly = corners(a);
  const auto clipper = corners(b);
  for (size_t e = 0; e < 4 && !poly.empty(); ++e) {
    const auto p1 = clipper[e], p2 = clipper[(e + 1) % 4];
    auto inside = [&](const std::pair<double, double>& q) {
      return (p2.first - p1.first) * (q.second - p1.second) - (p2.second - p1.second) * (q.first - p1.first) >= 0;
    };
    std::vector<std::pair<double, double>> out;
    for (size_t k = 0; k < poly.size(); ++k) {
      const auto cur = poly[k], prev = poly[(k + poly.size() - 1) % poly.size()];
      auto cross_point = [&]() {
        const double x1 = prev.first, y1 = prev.second, x2 = cur.first, y2 = cur.second;
        const double x3 = p1.first, y3 = p1.second, x4 = p2.first, y4 = p2.second;
        const double den = (x1 - x2) * (y3 - y4) - (y1 - y2) * (x3 - x4);
        const double t = ((x1 - x3) * (y3 - y4) - (y1 - y3) * (x3 - x4)) / den;
        return std::make_pair(x1 + t * (x2 - x1), y1 + t * (y2 - y1));
      };
      if (inside(cur)) {
        if (!inside(prev)) out.push_back(cross_point());
        out.push_back(cur);
      } else if (inside(prev)) {
        out.push_back(cross_point());
      }
    }
    poly = out;
  }
  double area = 0;
  for (size_t k = 0; k < poly.size(); ++k) {
    const auto p = poly[k], q = poly[(k + 1) % poly.size()];
    area += p.first * q.second - q.first * p.second;
  }
  return std::fabs(area) / 2;
}

}  // namespace

TEST(Collision, AxisAlignedOverlapAndTouching) {
  EXPECT_TRUE(rectangles_overlap(car(0, 0, 0), car(4.0, 0, 0)));
  EXPECT_TRUE(rectangles_overlap(car(0, 0, 0), car(4.999, 0, 0)));
  EXPECT_FALSE(rectangles_overlap(car(0, 0, 0), car(5.0, 0, 0)));  // bumpers touch
  EXPECT_FALSE(rectangles_overlap(car(0, 0, 0), car(5.001, 0, 0)));
  EXPECT_TRUE(rectangles_overlap(car(0, 0, 0), car(1.0, 1.99, 0)));
  EXPECT_FALSE(rectangles_overlap(car(0, 0, 0), car(1.0, 2.0, 0)));  // sides touch
  EXPECT_FALSE(rectangles_overlap(car(0, 0, 0), car(0, 4.0, 0)));    // adjacent lanes
  EXPECT_TRUE(rectangles_overlap(car(0, 0, 0), car(0, 0, 0)));
}

TEST(Collision, RotatedRectangles) {
  const double c45 = std::sqrt(0.5);
  // Perpendicular: B spans x in [cx - 1, cx + 1]; touching at cx = 3.5.
  EXPECT_TRUE(rectangles_overlap(car(0, 0, 0), car(3.4, 0, M_PI / 2)));
  EXPECT_FALSE(rectangles_overlap(car(0, 0, 0), car(3.5, 0, M_PI / 2)));
  EXPECT_FALSE(rectangles_overlap(car(0, 0, M_PI / 2), car(0, 3.5, 0)));
  // At 45 degrees B's corners reach 3.5 cos 45 = 2.475 m along x; its left corner sits at
  // y = -1.5 cos 45 = -1.06, just outside A, so the overlap starts a little later than 4.975.
  EXPECT_FALSE(rectangles_overlap(car(0, 0, 0), car(2.5 + 3.5 * c45, 0, M_PI / 4)));
  EXPECT_TRUE(rectangles_overlap(car(0, 0, 0), car(4.9, 0, M_PI / 4)));
  EXPECT_FALSE(rectangles_overlap(car(0, 0, 0), car(5.0, 0, M_PI / 4)));
  // B at -45 degrees with its long side facing A's corner (2.5, 1), g m away along the side's
  // normal w = (cos 45, sin 45): the axis-aligned bounding boxes overlap either way, but for
  // g > 0 the axis w separates the cars.
  auto facing_corner = [&](double g) { return car(2.5 + (1 + g) * c45, 1 + (1 + g) * c45, -M_PI / 4); };
  EXPECT_FALSE(rectangles_overlap(car(0, 0, 0), facing_corner(0.1)));
  EXPECT_FALSE(rectangles_overlap(car(0, 0, 0), facing_corner(0.0)));
  EXPECT_TRUE(rectangles_overlap(car(0, 0, 0), facing_corner(-0.1)));
  // Symmetric in its arguments.
  EXPECT_EQ(rectangles_overlap(car(0, 0, 0.3), car(3.0, 2.0, -0.7)),
            rectangles_overlap(car(3.0, 2.0, -0.7), car(0, 0, 0.3)));
}

TEST(Collision, SatAgreesWithPolygonClippingOnRandomPairs) {
  Rng rng(11);
  int overlapping = 0, separate = 0, boxes_overlap_but_separate = 0;
  for (int k = 0; k < 20000; ++k) {
    const OrientedRect a = car(0, 0, rng.uniform(-M_PI, M_PI));
    const OrientedRect b = car(rng.uniform(-6, 6), rng.uniform(-6, 6), rng.uniform(-M_PI, M_PI));
    const double area = intersection_area(a, b);
    // A corner poking in by p has an area ~p^2: tiny overlaps are too close to call.
    if (area > 0 && area < 1e-3) continue;
    const bool sat = rectangles_overlap(a, b);
    ASSERT_EQ(sat, area > 0) << "b at (" << b.cx << ", " << b.cy << "), area " << area;
    if (sat) {
      ++overlapping;
    } else {
      ++separate;
      auto extent = [](const OrientedRect& r, bool along_x) {
        const double c = std::fabs(r.cos_h), s = std::fabs(r.sin_h);
        return along_x ? r.half_length * c + r.half_width * s : r.half_length * s + r.half_width * c;
      };
      if (std::fabs(b.cx - a.cx) < extent(a, true) + extent(b, true) &&
          std::fabs(b.cy - a.cy) < extent(a, false) + extent(b, false)) {
        ++boxes_overlap_but_separate;
      }
    }
  }
  EXPECT_GT(overlapping, 1000);
  EXPECT_GT(separate, 1000);
  EXPECT_GT(boxes_overlap_but_separate, 100);
}

TEST(Collision, OverlappingVehiclesAreMarkedCrashedAndBrake) {
  Road road(2, 4);
  Vehicle a = make_idm_vehicle(100.0, 0.0, 20.0, 4.0);
  Vehicle b = make_idm_vehicle(104.0, 0.0, 20.0, 4.0);  // 4 m apart: overlapping
  Vehicle c = make_idm_vehicle(300.0, 4.0, 20.0, 4.0);
  Vehicle d = make_idm_vehicle(305.01, 4.0, 20.0, 4.0);  // just not touching
  d.target_speed = 20.0;
  for (const Vehicle& v : {a, b, c, d}) road.add_vehicle(v);
  road.refresh();
  road.step(kDt);
  EXPECT_TRUE(road.vehicle(0).crashed);
  EXPECT_TRUE(road.vehicle(1).crashed);
  EXPECT_FALSE(road.vehicle(2).crashed);
  EXPECT_FALSE(road.vehicle(3).crashed);
  // A crashed vehicle steers straight and brakes with a = -v.
  const double v0 = road.vehicle(0).speed;
  road.step(kDt);
  EXPECT_NEAR(road.vehicle(0).speed, v0 - v0 * kDt, 1e-12);
  EXPECT_EQ(road.vehicle(0).steering_tan, 0.0);
}

// ---------------------------------------------------------------------------------------------
// Neighbour lookup

TEST(Road, NeighboursMatchABruteForceSearch) {
  Rng rng(5);
  const int lanes = 4;
  Road road(lanes, 60);
  for (int k = 0; k < 60; ++k) {
    Vehicle v = make_idm_vehicle(rng.uniform(-20, 400), rng.uniform(-4, 4 * lanes), 20.0);
    road.add_vehicle(v);
  }
  road.refresh();
  for (int32_t i = 0; i < 60; ++i) {
    const Vehicle& me = road.vehicle(static_cast<size_t>(i));
    for (int lane = 0; lane < lanes; ++lane) {
      // Road.neighbour_vehicles: on the lane with margin 1, front = nearest with s >= own s,
      // rear = nearest with s < own s.
      int32_t front = -1, rear = -1;
      for (int32_t j = 0; j < 60; ++j) {
        const Vehicle& v = road.vehicle(static_cast<size_t>(j));
        if (j == i || std::fabs(v.y - 4.0 * lane) > 3.0 || v.x < -5.0) continue;
        if (v.x >= me.x && (front < 0 || v.x <= road.vehicle(static_cast<size_t>(front)).x)) front = j;
        if (v.x < me.x && (rear < 0 || v.x > road.vehicle(static_cast<size_t>(rear)).x)) rear = j;
      }
      const Road::Neighbours n = road.neighbours(i, lane);
      EXPECT_EQ(n.front, front) << "vehicle " << i << " lane " << lane;
      EXPECT_EQ(n.rear, rear) << "vehicle " << i << " lane " << lane;
    }
  }
}

TEST(Road, ClosestLaneAndReachability) {
  Road road(4, 1);
  EXPECT_EQ(road.closest_lane(-7.0), 0);
  EXPECT_EQ(road.closest_lane(1.9), 0);
  EXPECT_EQ(road.closest_lane(2.0), 0);  // tie: the lower index, as numpy's argmin
  EXPECT_EQ(road.closest_lane(2.1), 1);
  EXPECT_EQ(road.closest_lane(11.0), 3);
  EXPECT_EQ(road.closest_lane(40.0), 3);
  Vehicle v = make_idm_vehicle(10.0, 0.5, 20.0);
  EXPECT_TRUE(road.is_reachable(2, v));   // |0.5 - 8| <= 8
  EXPECT_FALSE(road.is_reachable(3, v));  // |0.5 - 12| > 8
  v.x = -0.1;
  EXPECT_FALSE(road.is_reachable(1, v));
}

// ---------------------------------------------------------------------------------------------
// The env

TEST(Highway, InitialSceneFollowsCreateRandom) {
  Highway env({});
  std::vector<float> obs(25);
  env.reset(3, obs.data());
  const Road& road = env.road();
  ASSERT_EQ(road.size(), 51u);
  const Vehicle& ego = env.ego();
  EXPECT_EQ(ego.kind, Vehicle::Kind::kMetaEgo);
  EXPECT_EQ(ego.speed, 25.0);
  EXPECT_EQ(ego.target_speed, 25.0);
  const double lane_factor = std::exp(-5.0 / 40.0 * 4);
  const double ego_offset = 2.0 * 37.0 * lane_factor;
  EXPECT_GE(ego.x, 3.9 * ego_offset - 1e-9);
  EXPECT_LE(ego.x, 4.1 * ego_offset + 1e-9);
  double prev_x = ego.x;
  std::set<int> lanes;
  for (size_t i = 1; i < road.size(); ++i) {
    const Vehicle& v = road.vehicle(i);
    EXPECT_EQ(v.kind, Vehicle::Kind::kIdm);
    EXPECT_GE(v.speed, 21.0);
    EXPECT_LT(v.speed, 24.0);
    EXPECT_EQ(v.target_speed, v.speed);
    EXPECT_GE(v.delta, 3.5);
    EXPECT_LT(v.delta, 4.5);
    EXPECT_EQ(v.y, 4.0 * v.lane);
    const double offset = (12.0 + v.speed) * lane_factor;
    EXPECT_GE(v.x - prev_x, 0.9 * offset - 1e-9);
    EXPECT_LE(v.x - prev_x, 1.1 * offset + 1e-9);
    prev_x = v.x;
    lanes.insert(v.lane);
  }
  EXPECT_EQ(lanes.size(), 4u);
  // The same seed gives the same scene; another seed another one.
  Highway again({});
  std::vector<float> obs2(25);
  again.reset(3, obs2.data());
  EXPECT_EQ(obs, obs2);
  EXPECT_EQ(again.road().vehicle(50).x, road.vehicle(50).x);
  again.reset(4, obs2.data());
  EXPECT_NE(again.road().vehicle(50).x, road.vehicle(50).x);
}

TEST(Highway, ObservationOfAHandBuiltSceneIsNormalisedRelativeToTheEgo) {
  Highway env(opts({"vehicles_count=7"}));
  std::vector<float> obs(25);
  env.reset(0, obs.data());
  Road& road = env.road();
  road.clear();
  road.add_vehicle(ego_vehicle(Vehicle::Kind::kMetaEgo, 500.0, 4.0, 25.0, 25.0));
  auto add = [&](double x, double y, double speed, double heading) {
    Vehicle v = make_idm_vehicle(x, y, speed);
    v.heading = heading;
    road.add_vehicle(v);
  };
  add(650.0, 12.0, 22.0, 0.0);  // E: dx 150, fifth nearest: left out
  add(700.0, 4.0, 25.0, 0.0);   // D: 200 m away, not closer than the perception distance
  add(480.0, 4.0, 25.0, 0.0);   // C: 20 m behind, more than 2 lengths: not seen
  add(530.0, 8.0, 20.0, 0.0);   // A: dx 30
  add(560.0, 0.0, 39.0, 0.0);   // G: dx 60
  add(520.0, 12.0, 24.0, 0.1);  // F: dx 20, heading 0.1
  add(495.0, 0.0, 30.0, 0.0);   // B: dx -5, within 2 lengths behind
  road.refresh();
  env.observe(obs.data());
  const double ego_vx = 25.0;
  const std::vector<std::vector<double>> expected = {
      {1, 1.0, 4.0 / 16, 25.0 / 80, 0},  // ego row: absolute; x = 500 / 200 clipped to 1
      {1, -5.0 / 200, -4.0 / 16, (30.0 - ego_vx) / 80, 0},                                         // B
      {1, 20.0 / 200, 8.0 / 16, (24.0 * std::cos(0.1) - ego_vx) / 80, 24.0 * std::sin(0.1) / 80},  // F
      {1, 30.0 / 200, 4.0 / 16, (20.0 - ego_vx) / 80, 0},                                          // A
      {1, 60.0 / 200, -4.0 / 16, (39.0 - ego_vx) / 80, 0},                                         // G
  };
  for (int r = 0; r < 5; ++r) {
    for (int f = 0; f < 5; ++f) EXPECT_NEAR(obs[r * 5 + f], expected[r][f], 1e-6) << "row " << r << " feature " << f;
  }

  // Fewer visible vehicles: the remaining rows are zero. Values beyond the ranges are clipped.
  road.clear();
  road.add_vehicle(ego_vehicle(Vehicle::Kind::kMetaEgo, 100.0, 0.0, 25.0, 25.0));
  add(190.0, 12.0, -70.0, 0.0);
  road.refresh();
  std::fill(obs.begin(), obs.end(), 7.0f);
  env.observe(obs.data());
  const std::vector<double> second = {1, 90.0 / 200, 12.0 / 16, -1.0, 0};
  for (int f = 0; f < 5; ++f) EXPECT_NEAR(obs[5 + f], second[f], 1e-6);
  EXPECT_NEAR(obs[1], 0.5, 1e-6);  // ego x 100 / 200
  for (int k = 10; k < 25; ++k) EXPECT_EQ(obs[k], 0.0f);
}

TEST(Highway, EgoCrashTerminatesWithTheCollisionReward) {
  // Only the collision term: the reward of the crash is exactly collision_reward.
  Highway env(opts({"normalize_reward=false", "right_lane_reward=0", "high_speed_reward=0", "collision_reward=-2.5"}));
  std::vector<float> obs(25);
  env.reset(0, obs.data());
  Road& road = env.road();
  road.clear();
  road.add_vehicle(ego_vehicle(Vehicle::Kind::kMetaEgo, 100.0, 0.0, 25.0, 25.0));
  Vehicle wreck = make_idm_vehicle(115.0, 0.0, 0.0);
  wreck.crashed = true;  // stays put
  road.add_vehicle(wreck);
  road.refresh();
  int64_t idle = Highway::kIdle;
  StepResult r = env.step(&idle, obs.data());
  EXPECT_TRUE(r.terminated);
  EXPECT_FALSE(r.truncated);
  EXPECT_TRUE(env.ego().crashed);
  EXPECT_FLOAT_EQ(r.reward, -2.5f);
  EXPECT_FALSE(env.episode_active());

  // Default weights, normalised: lmap(-1 + 0.1 lane/3 + 0.4 speed_term, [-1, 0.5], [0, 1]).
  Highway normal({});
  normal.reset(0, obs.data());
  Road& road2 = normal.road();
  road2.clear();
  road2.add_vehicle(ego_vehicle(Vehicle::Kind::kMetaEgo, 100.0, 8.0, 25.0, 25.0));
  road2.add_vehicle(wreck);
  road2.mutable_vehicle(1).y = 8.0;
  road2.refresh();
  r = normal.step(&idle, obs.data());
  ASSERT_TRUE(r.terminated);
  const Vehicle& ego = normal.ego();
  const double speed_term = std::clamp((ego.speed * std::cos(ego.heading) - 20.0) / 10.0, 0.0, 1.0);
  const double raw = -1.0 + 0.1 * 2.0 / 3.0 + 0.4 * speed_term;
  EXPECT_NEAR(r.reward, (raw + 1.0) / 1.5, 1e-6);
}

TEST(Highway, RewardFavoursHighSpeedOnTheRightmostLane) {
  Highway env(opts({"vehicles_count=0", "initial_lane_id=3"}));
  std::vector<float> obs(25);
  env.reset(0, obs.data());
  int64_t faster = Highway::kFaster;
  StepResult r{};
  for (int t = 0; t < 8; ++t) r = env.step(&faster, obs.data());
  EXPECT_NEAR(env.ego().speed, 30.0, 1e-3);
  EXPECT_NEAR(r.reward, 1.0, 1e-4);  // (0.1 + 0.4 + 1) / 1.5
  int64_t left = Highway::kLaneLeft;
  r = env.step(&left, obs.data());  // rewarded on the target lane at once: 2/3
  const Vehicle& ego = env.ego();
  const double speed_term = std::clamp((ego.speed * std::cos(ego.heading) - 20.0) / 10.0, 0.0, 1.0);
  EXPECT_GT(speed_term, 0.99);
  EXPECT_NEAR(r.reward, (0.1 * 2.0 / 3.0 + 0.4 * speed_term + 1.0) / 1.5, 1e-6);
}

TEST(Highway, MetaActionsSetTheTargetLaneAndSpeed) {
  Highway env(opts({"vehicles_count=0", "initial_lane_id=0"}));
  std::vector<float> obs(25);
  env.reset(1, obs.data());
  int64_t a = Highway::kLaneLeft;
  env.step(&a, obs.data());
  EXPECT_EQ(env.ego().target_lane, 0);  // no lane left of lane 0
  a = Highway::kLaneRight;
  env.step(&a, obs.data());
  EXPECT_EQ(env.ego().target_lane, 1);
  a = Highway::kIdle;
  for (int t = 0; t < 3; ++t) env.step(&a, obs.data());
  EXPECT_EQ(env.ego().lane, 1);
  EXPECT_NEAR(env.ego().y, 4.0, 0.05);
  a = Highway::kFaster;
  env.step(&a, obs.data());
  EXPECT_EQ(env.ego().target_speed, 30.0);
  a = Highway::kIdle;
  for (int t = 0; t < 5; ++t) env.step(&a, obs.data());
  EXPECT_NEAR(env.ego().speed, 30.0, 0.01);
  a = Highway::kFaster;
  env.step(&a, obs.data());
  EXPECT_EQ(env.ego().target_speed, 30.0);  // the top speed
  a = Highway::kSlower;
  env.step(&a, obs.data());
  EXPECT_EQ(env.ego().target_speed, 25.0);  // one below the speed nearest to 30
  // The speed controller: a = (target - v) / 0.6, one frame from a known state.
  Road& road = env.road();
  Vehicle& ego = road.mutable_vehicle(0);
  ego.speed = 22.0;
  ego.target_speed = 25.0;
  road.refresh();
  road.step(kDt);
  EXPECT_NEAR(road.vehicle(0).acceleration, (25.0 - 22.0) / 0.6, 1e-12);
}

TEST(Highway, TruncatesAfterTheDuration) {
  Highway env(opts({"vehicles_count=0"}));
  std::vector<float> obs(25);
  env.reset(0, obs.data());
  int64_t idle = Highway::kIdle;
  StepResult r{};
  for (int t = 0; t < 40; ++t) {
    ASSERT_FALSE(r.truncated) << t;
    r = env.step(&idle, obs.data());
  }
  EXPECT_TRUE(r.truncated);
  EXPECT_FALSE(r.terminated);
  EXPECT_EQ(env.elapsed_steps(), 40);
  EXPECT_EQ(Highway(opts({"duration=10", "policy_frequency=5"})).spec().max_episode_steps, 50);
  EXPECT_EQ(Highway(opts({"duration=10", "policy_frequency=5"})).frames_per_action(), 3);
  EXPECT_EQ(Highway(opts({"max_episode_steps=7"})).spec().max_episode_steps, 7);
}

TEST(HighwayContinuous, OneSimulationStepFollowsTheKinematicBicycleEquations) {
  HighwayContinuous env(opts({"vehicles_count=0", "simulation_frequency=15", "policy_frequency=15"}));
  std::vector<float> obs(25);
  env.reset(0, obs.data());
  Road& road = env.road();
  Vehicle& ego = road.mutable_vehicle(0);
  ego.x = 100.0;
  ego.y = 4.0;
  ego.set_heading(0.05);
  ego.speed = 20.0;
  road.refresh();
  const float action[2] = {0.5f, 0.3f};
  env.step(action, obs.data());
  const double a = 5.0 * 0.5, delta = static_cast<double>(0.3f) * M_PI / 4;
  const double beta = std::atan(0.5 * std::tan(delta));
  const double x = 100.0 + 20.0 * std::cos(0.05 + beta) * kDt;
  const double y = 4.0 + 20.0 * std::sin(0.05 + beta) * kDt;
  const double h = 0.05 + 20.0 * std::sin(beta) / 2.5 * kDt;
  const Vehicle& v = env.ego();
  EXPECT_NEAR(v.steering(), delta, 1e-7);
  EXPECT_NEAR(v.acceleration, a, 1e-7);
  EXPECT_NEAR(v.x, x, 1e-9);
  EXPECT_NEAR(v.y, y, 1e-9);
  EXPECT_NEAR(v.heading, h, 1e-9);
  EXPECT_NEAR(v.speed, 20.0 + a * kDt, 1e-6);
}

TEST(HighwayContinuous, ActionsOutsideTheBoxAreClippedAsTheReference) {
  HighwayContinuous a(opts({"vehicles_count=5"})), b(opts({"vehicles_count=5"}));
  std::vector<float> oa(25), ob(25);
  a.reset(9, oa.data());
  b.reset(9, ob.data());
  const float wild[2] = {3.0f, -7.0f}, edge[2] = {1.0f, -1.0f};
  a.step(wild, oa.data());
  b.step(edge, ob.data());
  EXPECT_EQ(oa, ob);
  EXPECT_EQ(a.ego().x, b.ego().x);
  const float nan_action[2] = {NAN, 0.0f};
  EXPECT_NE(error_of([&] { a.step(nan_action, oa.data()); }).find("NaN"), std::string::npos);
}

TEST(HighwayContinuous, SpeedIsLimitedTo40) {
  HighwayContinuous env(opts({"vehicles_count=0"}));
  std::vector<float> obs(25);
  env.reset(0, obs.data());
  const float full[2] = {1.0f, 0.0f};
  for (int t = 0; t < 10; ++t) env.step(full, obs.data());
  EXPECT_LE(env.ego().speed, 40.0 + 5.0 / 15.0 + 1e-9);
  EXPECT_GT(env.ego().speed, 39.0);
}

// ---------------------------------------------------------------------------------------------
// Registration and bad input

TEST(Driving, RegistersBothEnvsWithDocumentedOptions) {
  EnvRegistry r;
  register_driving(r);
  for (const char* name : {"Highway-v0", "HighwayContinuous-v0"}) {
    auto env = r.make(name);
    EXPECT_EQ(env->name(), name);
    const EnvEntry* entry = r.find(name);
    ASSERT_NE(entry, nullptr);
    EXPECT_EQ(entry->family, "driving");
    const std::string err = error_of([&] { r.make(name, opts({"bogus=1"})); });
    EXPECT_NE(err.find("unknown option 'bogus'"), std::string::npos) << err;
    // Every option the env reads is documented, and nothing else.
    std::set<std::string> documented, asked;
    for (const auto& o : entry->options) documented.insert(o.key);
    const std::string list = err.substr(err.find("allowed: ") + 9);
    std::stringstream ss(list.substr(0, list.size() - 1));
    for (std::string key; std::getline(ss, key, ',');) asked.insert(key.substr(key.find_first_not_of(' ')));
    EXPECT_EQ(documented, asked) << err;
    auto small = r.make(name, opts({"lanes_count=2", "vehicles_count=3", "observation_vehicles=3"}));
    EXPECT_EQ(small->observation_space().shape, (std::vector<int64_t>{3, 5}));
  }
}

TEST(Driving, BadOptionsAreClearErrors) {
  EnvRegistry r;
  register_driving(r);
  auto err = [&](std::vector<std::string> kv) { return error_of([&] { r.make("Highway-v0", opts(kv)); }); };
  EXPECT_EQ(err({"lanes_count=0"}), "Highway-v0: option lanes_count=0: expected an integer in [1, 20]");
  EXPECT_EQ(err({"policy_frequency=20"}), "Highway-v0: option policy_frequency=20: expected an integer in [1, 15]");
  EXPECT_EQ(err({"lanes_count=3", "initial_lane_id=3"}),
            "Highway-v0: option initial_lane_id=3: expected an integer in [-1, 2]");
  EXPECT_EQ(err({"vehicles_density=0"}),
            "Highway-v0: option vehicles_density=0: expected a number in [0.01, 100]");
  EXPECT_EQ(err({"normalize_reward=maybe"}), "Highway-v0: option normalize_reward=maybe: expected true or false");
  EXPECT_EQ(err({"reward_speed_high=20"}),
            "Highway-v0: option reward_speed_high=20: expected a number greater than reward_speed_low (20)");
  EXPECT_NE(err({"collision_reward=1"}).find("option collision_reward=1: with normalize_reward=true expected a "
                                             "number less than high_speed_reward + right_lane_reward (0.5)"),
            std::string::npos);
  EXPECT_EQ(err({"collision_reward=1", "normalize_reward=false"}), "(no error)");
  EXPECT_NE(error_of([&] { r.make("HighwayContinuous-v0", opts({"duration=-1"})); })
                .find("HighwayContinuous-v0: option duration=-1: expected a number in"),
            std::string::npos);
}

TEST(Driving, BadDiscreteActionIsAClearError) {
  Highway env({});
  std::vector<float> obs(25);
  env.reset(0, obs.data());
  int64_t a = 5;
  EXPECT_EQ(error_of([&] { env.step(&a, obs.data()); }),
            "Highway-v0: action 5 is outside Discrete(5) (allowed 0..4)");
  a = -1;
  EXPECT_NE(error_of([&] { env.step(&a, obs.data()); }).find("outside Discrete(5)"), std::string::npos);
}

TEST(Driving, SnapshotOfAHandBuiltSceneRestoresIt) {
  Highway env(opts({"vehicles_count=4"}));
  std::vector<float> obs(25), o1(25), o2(25);
  env.reset(2, obs.data());
  int64_t a = Highway::kFaster;
  env.step(&a, obs.data());
  const auto snap = env.snapshot();
  a = Highway::kLaneRight;
  const StepResult r1 = env.step(&a, o1.data());
  env.restore(snap);
  const StepResult r2 = env.step(&a, o2.data());
  EXPECT_EQ(o1, o2);
  EXPECT_EQ(r1.reward, r2.reward);
  auto truncated = snap;
  truncated.resize(truncated.size() - 10);
  EXPECT_THROW(env.restore(truncated), EnvError);
}
