// Highway-v0 and HighwayContinuous-v0: an ego vehicle on a straight multi-lane highway among
// IDM/MOBIL traffic, rewarded for speed and the right-most lanes, ended by a crash.
//
// Reference: Farama HighwayEnv `highway-v0` (https://github.com/Farama-Foundation/HighwayEnv),
// `highway_env/envs/highway_env.py` (scene, reward, termination), `envs/common/abstract.py`
// (simulation/policy frequencies), `envs/common/action.py` (DiscreteMetaAction,
// ContinuousAction), `envs/common/observation.py` (KinematicObservation), `vehicle/*.py`.
// Reimplemented from the published source's semantics and default constants; see
// docs/envs/driving.md for the differences.
//
// One env step is one decision: the action is applied, then simulation_frequency /
// policy_frequency simulation steps of 1 / simulation_frequency s run (15 by default).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "driving/road.h"
#include "orchard/envs/env.h"
#include "orchard/envs/rng.h"

namespace orchard::envs::driving {

// The options of both envs, with highway-v0's defaults.
struct HighwayConfig {
  int lanes_count = 4;
  int vehicles_count = 50;           // other vehicles
  double duration = 40.0;            // [s] of simulated time before truncation
  int simulation_frequency = 15;     // [Hz]
  int policy_frequency = 1;          // [Hz], at most simulation_frequency
  int observation_vehicles = 5;      // rows of the observation, the ego included
  double ego_spacing = 2.0;          // spacing factor in front of the ego's initial position
  double vehicles_density = 1.0;     // traffic spacing factor is 1 / density
  int initial_lane_id = -1;          // ego's initial lane, -1: random
  double collision_reward = -1.0;
  double right_lane_reward = 0.1;    // x lane / (lanes - 1)
  double high_speed_reward = 0.4;    // x forward speed mapped from the speed range to [0, 1]
  double reward_speed_low = 20.0;    // [m/s]
  double reward_speed_high = 30.0;   // [m/s]
  bool normalize_reward = true;      // map [collision, high_speed + right_lane] to [0, 1]
  bool offroad_terminal = false;
  int64_t max_episode_steps = 40;    // default ceil(duration * policy_frequency)

  // Reads every option; throws EnvError naming `env`, the option and its allowed range.
  static HighwayConfig parse(const std::string& env, const EnvOptions& options);
};

// The shared simulation of both envs; Highway and HighwayContinuous pick the action type.
class HighwayEnv : public Env {
 public:
  static constexpr double kEgoInitialSpeed = 25.0;
  static constexpr double kEgoTargetSpeeds[3] = {20.0, 25.0, 30.0};  // MDPVehicle defaults
  static constexpr double kTrafficSpeedLow = 0.7 * Road::kSpeedLimit;   // initial speeds
  static constexpr double kTrafficSpeedHigh = 0.8 * Road::kSpeedLimit;
  static constexpr double kPerceptionDistance = 5.0 * kMaxSpeed;  // 200 m
  static constexpr double kContinuousAccelerationRange = 5.0;   // [-5, 5] m/s^2
  static constexpr double kContinuousSteeringRange = kPi / 4;   // [-pi/4, pi/4] rad
  static constexpr int kFeatures = 5;  // presence, x, y, vx, vy

  const HighwayConfig& config() const { return config_; }
  int frames_per_action() const { return frames_per_action_; }

  // The scene, for tests and tools: vehicle 0 is the ego. After editing it by hand, call
  // road().refresh().
  Road& road() { return road_; }
  const Road& road() const { return road_; }
  const Vehicle& ego() const { return road_.vehicle(0); }

  // KinematicObservation of the current scene into `obs` (observation_vehicles x 5 floats).
  void observe(float* obs) const;
  // The reward of the current scene (HighwayEnv._reward).
  float reward() const;
  // HighwayEnv._is_terminated: the ego crashed (or left the road, with offroad_terminal).
  bool terminal() const;

  bool supports_snapshot() const override { return true; }
  // speed [m/s], crashed, on_road, lane (the reward's lane) of the ego.
  void info(std::vector<std::pair<std::string, double>>* out) const override;

 protected:
  enum class Control { kMetaActions, kContinuous };
  HighwayEnv(const std::string& name, const EnvOptions& options, Control control);

  void do_reset(std::optional<uint64_t> seed, void* obs) override;
  StepResult do_step(const void* action, void* obs) override;
  void do_snapshot(std::vector<uint8_t>* out) const override;
  bool do_restore(const uint8_t*& in, const uint8_t* end) override;

 private:
  HighwayEnv(const std::string& name, const HighwayConfig& config, Control control);
  void populate();
  void apply_meta_action(int64_t action);
  void apply_continuous_action(const float* action);
  int reward_lane() const;

  HighwayConfig config_;
  Control control_;
  int frames_per_action_;
  double dt_;
  Road road_;
  Rng rng_;
  mutable std::vector<int32_t> nearest_;  // observe() scratch: observed vehicles, nearest first
};

// highway-v0 with DiscreteMetaAction: the ego (MDPVehicle) tracks a target lane and one of the
// target speeds 20, 25, 30 m/s.
class Highway final : public HighwayEnv {
 public:
  enum Action : int64_t { kLaneLeft = 0, kIdle = 1, kLaneRight = 2, kFaster = 3, kSlower = 4 };
  explicit Highway(const EnvOptions& options);
};

// highway-v0 with ContinuousAction: Box [-1, 1]^2 mapped to acceleration [-5, 5] m/s^2 and
// front-wheel angle [-pi/4, pi/4], held for the whole decision.
class HighwayContinuous final : public HighwayEnv {
 public:
  explicit HighwayContinuous(const EnvOptions& options);
};

}  // namespace orchard::envs::driving
