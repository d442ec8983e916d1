// Warehouse AGV path planning: a differential-drive vehicle with a ring of range sensors must
// reach a static or moving target among shelf rows, under a sparse reward.
//
// Reference: H. Yin, S. Su, Y. Lin, P. Zhen, K. Festl, D. Watzenig, "Random Network Distillation
// Based Deep Reinforcement Learning for AGV Path Planning", arXiv:2404.12594 (2024). It has four
// scenes, simple or complex warehouse x static or moving target, with continuous positions and
// actions, step limits 2000/2000/3000/4000, +1 for reaching the target and -1 for a collision.
// Its simulator is not public: this is Orchard's own version, built from the paper's description
// (docs/envs/agv.md lists every choice made where the paper is silent).
//
// Per step (dt = 0.1 s), with the action a in [-1, 1]^2 (clipped):
//   v     <- clamp(v + kMaxAccel * a0 * dt, kMinSpeed, kMaxSpeed)
//   omega <- kMaxYawRate * a1
//   theta <- wrap(theta + omega * dt)
//   x     <- x + v cos(theta) dt,   y <- y + v sin(theta) dt       (semi-implicit Euler)
//   the target moves target_speed * dt along its waypoint legs (moving-target scenes);
//   collision (the vehicle's disc touches a box or the border): reward -1, terminated;
//   else reached (centre within kReachDistance of the target):  reward +1, terminated;
//   else reward -1 / max_episode_steps;
//   plus, with dense_shaping, (previous distance - distance to the target) / map diagonal.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "agv/ray_caster.h"
#include "agv/warehouse_map.h"
#include "orchard/envs/env.h"
#include "orchard/envs/rng.h"

namespace orchard::envs::agv {

constexpr double kDt = 0.1;                    // s per step
constexpr double kRadius = 0.4;                // vehicle disc, m
constexpr double kMaxSpeed = 2.0;              // m/s forward; 0.2 m per step < kRadius: no tunnelling
constexpr double kMinSpeed = -0.5;             // m/s (reversing)
constexpr double kMaxAccel = 1.0;              // m/s^2 at a0 = +-1
constexpr double kMaxYawRate = kPi / 2.0;      // rad/s at a1 = +-1
constexpr double kReachDistance = 0.5;         // m, vehicle centre to target
constexpr double kStartClearance = 0.6;        // m, random start centre to any box or wall
constexpr double kTargetClearance = 0.5;       // m, target to any box or wall (>= kRadius)
constexpr double kMinTargetSeparation = 0.25;  // random target's distance from the start / diagonal
constexpr double kDefaultTargetSpeed = 0.5;    // m/s, a quarter of the vehicle's top speed
constexpr double kMinLeg = 2.0;                // m, a moving target's straight legs between
constexpr double kMaxLeg = 12.0;               //   waypoints
constexpr int kPlacementTries = 1000;          // rejection sampling of start and target
constexpr int kWaypointTries = 64;             // before a moving target turns back
constexpr double kDefaultMaxRange = 10.0;      // m
constexpr int64_t kDefaultNumRays = 32;

enum class Scene { kSimpleStatic, kSimpleDynamic, kComplexStatic, kComplexDynamic };

constexpr const char* scene_name(Scene s) {
  return s == Scene::kSimpleStatic    ? "AGV-SimpleStatic-v0"
         : s == Scene::kSimpleDynamic ? "AGV-SimpleDynamic-v0"
         : s == Scene::kComplexStatic ? "AGV-ComplexStatic-v0"
                                      : "AGV-ComplexDynamic-v0";
}
// The paper's step limits.
constexpr int64_t scene_max_steps(Scene s) {
  return s == Scene::kComplexStatic ? 3000 : s == Scene::kComplexDynamic ? 4000 : 2000;
}

// Unicycle model of the differential-drive vehicle.
struct Vehicle {
  double x, y;     // centre, m
  double heading;  // rad in (-pi, pi], counter-clockwise from +x
  double v;        // forward speed, m/s, in [kMinSpeed, kMaxSpeed]
  double omega;    // yaw rate, rad/s
};

struct AgvState {
  Vehicle vehicle;
  double target_x, target_y;
  // Moving target: it travels in a straight line from the leg's start to the waypoint, and the
  // whole leg keeps kTargetClearance from boxes and walls.
  double leg_x, leg_y, waypoint_x, waypoint_y;
  double distance;  // vehicle centre to target after the last reset/step, m
  bool reached, collided;
};

// The options, read and range-checked at construction (docs/envs/agv.md).
struct AgvConfig {
  int num_rays = static_cast<int>(kDefaultNumRays);
  double max_range = kDefaultMaxRange;
  std::string map_file;      // empty: procedural layouts
  int64_t layout_seed = -1;  // -1: a new layout each episode; else one fixed layout
  bool dense_shaping = false;
  double target_speed = 0.0;  // moving-target scenes only
  int64_t max_episode_steps = 0;
};

// Observation (float32, num_rays + 5): num_rays range readings / max_range in [0, 1], then the
// distance to the target / map diagonal, the target's bearing in the vehicle frame as cos and
// sin, v / kMaxSpeed and omega / kMaxYawRate. Action: Box([-1, 1]^2), acceleration and yaw rate.
template <Scene kScene>
class Agv final : public Env {
 public:
  static constexpr bool kComplex = kScene == Scene::kComplexStatic || kScene == Scene::kComplexDynamic;
  static constexpr bool kDynamic = kScene == Scene::kSimpleDynamic || kScene == Scene::kComplexDynamic;

  // Throws EnvError for an option out of range or a malformed map file.
  explicit Agv(const EnvOptions& options);

  const AgvState& state() const { return state_; }
  // Replaces the state mid-episode (tests place the vehicle and target with it); the next step
  // continues from it.
  void set_state(const AgvState& s) { state_ = s; }
  const WarehouseMap& map() const { return map_; }
  const AgvConfig& config() const { return config_; }

  bool supports_snapshot() const override { return true; }
  // reached_target and collided (0/1) and target_distance_m, after the last step.
  void info(std::vector<std::pair<std::string, double>>* out) const override;

 protected:
  void do_reset(std::optional<uint64_t> seed, void* obs) override;
  StepResult do_step(const void* action, void* obs) override;
  void do_snapshot(std::vector<uint8_t>* out) const override;
  bool do_restore(const uint8_t*& in, const uint8_t* end) override;

 private:
  enum class LayoutSource : uint8_t { kPerEpisode, kFixed, kFile };

  struct FromConfig {};  // keeps Agv({}) unambiguous
  Agv(FromConfig, AgvConfig config);
  // Draws the start, target (and first waypoint) on map_ into state_. False when rejection
  // sampling finds no place (only possible on a map file with too little free space).
  bool place(Rng& rng);
  // Next leg of the moving target from where it stands: a random clear leg, else back along the
  // last leg (clear by construction), else (first leg) stay.
  void pick_waypoint(Rng& rng);
  void move_target();
  void write_obs(void* obs);

  AgvConfig config_;
  LayoutSource source_;
  WarehouseMap map_;
  RayCaster caster_;
  double diagonal_ = 1.0;  // of map_
  double time_penalty_;    // 1 / max_episode_steps
  AgvState state_{};
  Rng rng_;
};

extern template class Agv<Scene::kSimpleStatic>;
extern template class Agv<Scene::kSimpleDynamic>;
extern template class Agv<Scene::kComplexStatic>;
extern template class Agv<Scene::kComplexDynamic>;

using SimpleStatic = Agv<Scene::kSimpleStatic>;
using SimpleDynamic = Agv<Scene::kSimpleDynamic>;
using ComplexStatic = Agv<Scene::kComplexStatic>;
using ComplexDynamic = Agv<Scene::kComplexDynamic>;

}  // namespace orchard::envs::agv
