#include "driving/highway.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace orchard::envs::driving {
namespace {

constexpr const char* kMetaName = "Highway-v0";
constexpr const char* kContinuousName = "HighwayContinuous-v0";

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

// utils.lmap: v from [x0, x1] to [y0, y1].
double lmap(double v, double x0, double x1, double y0, double y1) { return y0 + (v - x0) * (y1 - y0) / (x1 - x0); }

// MDPVehicle.speed_to_index: the nearest target speed's index (numpy rounds halves to even).
int speed_to_index(double speed) {
  constexpr int n = 3;
  const double lo = HighwayEnv::kEgoTargetSpeeds[0], hi = HighwayEnv::kEgoTargetSpeeds[n - 1];
  const double i = std::nearbyint((speed - lo) / (hi - lo) * (n - 1));
  return static_cast<int>(clip(i, 0.0, n - 1.0));
}

EnvSpec highway_spec(const std::string& name, const HighwayConfig& c, bool continuous) {
  EnvSpec s;
  s.name = name;
  s.observation_space = Space::box({c.observation_vehicles, HighwayEnv::kFeatures}, -1.0, 1.0);
  s.action_space = continuous ? Space::box({2}, -1.0, 1.0) : Space::discrete(5);
  s.max_episode_steps = c.max_episode_steps;
  s.reference = std::string("Farama HighwayEnv highway-v0 (") +
                (continuous ? "ContinuousAction" : "DiscreteMetaAction") +
                ", KinematicObservation; IDM + MOBIL traffic)";
  return s;
}

}  // namespace

HighwayConfig HighwayConfig::parse(const std::string& env, const EnvOptions& o) {
  HighwayConfig c;
  c.lanes_count = static_cast<int>(o.get_int(env, "lanes_count", c.lanes_count, 1, 20));
  c.vehicles_count = static_cast<int>(o.get_int(env, "vehicles_count", c.vehicles_count, 0, 1000));
  c.duration = o.get_double(env, "duration", c.duration, 0.001, 1e6);
  c.simulation_frequency = static_cast<int>(o.get_int(env, "simulation_frequency", c.simulation_frequency, 1, 1000));
  c.policy_frequency =
      static_cast<int>(o.get_int(env, "policy_frequency", c.policy_frequency, 1, c.simulation_frequency));
  c.observation_vehicles = static_cast<int>(o.get_int(env, "observation_vehicles", c.observation_vehicles, 1, 100));
  c.ego_spacing = o.get_double(env, "ego_spacing", c.ego_spacing, 0.0, 100.0);
  c.vehicles_density = o.get_double(env, "vehicles_density", c.vehicles_density, 0.01, 100.0);
  c.initial_lane_id = static_cast<int>(o.get_int(env, "initial_lane_id", c.initial_lane_id, -1, c.lanes_count - 1));
  c.collision_reward = o.get_double(env, "collision_reward", c.collision_reward, -1e6, 1e6);
  c.right_lane_reward = o.get_double(env, "right_lane_reward", c.right_lane_reward, -1e6, 1e6);
  c.high_speed_reward = o.get_double(env, "high_speed_reward", c.high_speed_reward, -1e6, 1e6);
  c.reward_speed_low = o.get_double(env, "reward_speed_low", c.reward_speed_low, -kMaxSpeed, kMaxSpeed);
  c.reward_speed_high = o.get_double(env, "reward_speed_high", c.reward_speed_high, -kMaxSpeed, kMaxSpeed);
  c.normalize_reward = o.get_bool(env, "normalize_reward", c.normalize_reward);
  c.offroad_terminal = o.get_bool(env, "offroad_terminal", c.offroad_terminal);
  // The reference truncates once time >= duration, time advancing 1 / policy_frequency a step.
  const auto steps = static_cast<int64_t>(std::ceil(c.duration * c.policy_frequency - 1e-9));
  c.max_episode_steps = o.get_int(env, "max_episode_steps", std::max<int64_t>(steps, 1), 1, 1'000'000'000);

  if (!(c.reward_speed_high > c.reward_speed_low)) {
    throw EnvError(env + ": option reward_speed_high=" + number(c.reward_speed_high) +
                   ": expected a number greater than reward_speed_low (" + number(c.reward_speed_low) + ")");
  }
  if (c.normalize_reward && !(c.collision_reward < c.high_speed_reward + c.right_lane_reward)) {
    throw EnvError(env + ": option collision_reward=" + number(c.collision_reward) +
                   ": with normalize_reward=true expected a number less than high_speed_reward + "
                   "right_lane_reward (" +
                   number(c.high_speed_reward + c.right_lane_reward) + ")");
  }
  return c;
}

HighwayEnv::HighwayEnv(const std::string& name, const EnvOptions& options, Control control)
    : HighwayEnv(name, HighwayConfig::parse(name, options), control) {}

HighwayEnv::HighwayEnv(const std::string& name, const HighwayConfig& config, Control control)
    : Env(highway_spec(name, config, control == Control::kContinuous)),
      config_(config),
      control_(control),
      frames_per_action_(config.simulation_frequency / config.policy_frequency),
      dt_(1.0 / config.simulation_frequency),
      road_(config.lanes_count, static_cast<size_t>(config.vehicles_count) + 1),
      nearest_(static_cast<size_t>(config.observation_vehicles), -1) {}

Highway::Highway(const EnvOptions& options) : HighwayEnv(kMetaName, options, Control::kMetaActions) {}

HighwayContinuous::HighwayContinuous(const EnvOptions& options)
    : HighwayEnv(kContinuousName, options, Control::kContinuous) {}

void HighwayEnv::populate() {
  // Vehicle.create_random: each vehicle is placed ahead of the furthest one so far, by a spacing
  // that grows with its speed and shrinks with the number of lanes.
  const int lanes = config_.lanes_count;
  const double lane_factor = std::exp(-5.0 / 40.0 * lanes);
  road_.clear();

  Vehicle ego;
  ego.kind = control_ == Control::kContinuous ? Vehicle::Kind::kContinuousEgo : Vehicle::Kind::kMetaEgo;
  const int ego_lane = config_.initial_lane_id >= 0 ? config_.initial_lane_id : static_cast<int>(rng_.below(lanes));
  const double ego_offset = config_.ego_spacing * (12.0 + kEgoInitialSpeed) * lane_factor;
  ego.x = 3.0 * ego_offset + ego_offset * rng_.uniform(0.9, 1.1);
  ego.y = Road::lane_center(ego_lane);
  ego.speed = kEgoInitialSpeed;
  // The MDPVehicle snaps its set-point to the nearest target speed; a plain Vehicle has none
  // (IDM drivers reasoning about it then read a desired speed of 0, as in the reference).
  ego.target_speed = control_ == Control::kMetaActions ? kEgoTargetSpeeds[speed_to_index(ego.speed)] : 0.0;
  road_.add_vehicle(ego);

  double front_x = ego.x;
  for (int k = 0; k < config_.vehicles_count; ++k) {
    const int lane = static_cast<int>(rng_.below(lanes));
    const double speed = rng_.uniform(kTrafficSpeedLow, kTrafficSpeedHigh);
    const double offset = (1.0 / config_.vehicles_density) * (12.0 + speed) * lane_factor;
    const double x = front_x + offset * rng_.uniform(0.9, 1.1);
    const double delta = rng_.uniform(kIdmDeltaLow, kIdmDeltaHigh);  // randomize_behavior
    road_.add_vehicle(make_idm_vehicle(x, Road::lane_center(lane), speed, delta));
    front_x = std::max(front_x, x);
  }
  road_.refresh();
}

void HighwayEnv::do_reset(std::optional<uint64_t> seed, void* obs) {
  if (seed) rng_.seed(*seed);
  populate();
  observe(static_cast<float*>(obs));
}

void HighwayEnv::apply_meta_action(int64_t action) {
  Vehicle& ego = road_.mutable_vehicle(0);
  const int last_lane = road_.lanes_count() - 1;
  switch (action) {
    case Highway::kLaneLeft:
    case Highway::kLaneRight: {
      const int step = action == Highway::kLaneLeft ? -1 : 1;
      const int lane = std::clamp(ego.target_lane + step, 0, last_lane);
      if (road_.is_reachable(lane, ego)) ego.target_lane = lane;
      break;
    }
    case Highway::kFaster:
    case Highway::kSlower: {
      // MDPVehicle: one target speed up or down from the one nearest the current speed.
      const int step = action == Highway::kFaster ? 1 : -1;
      ego.target_speed = kEgoTargetSpeeds[std::clamp(speed_to_index(ego.speed) + step, 0, 2)];
      break;
    }
    default:  // kIdle
      break;
  }
}

void HighwayEnv::apply_continuous_action(const float* action) {
  // ContinuousAction clips to [-1, 1], then maps linearly to the physical ranges.
  Vehicle& ego = road_.mutable_vehicle(0);
  const double throttle = clip(static_cast<double>(action[0]), -1.0, 1.0);
  const double steer = clip(static_cast<double>(action[1]), -1.0, 1.0);
  ego.acceleration = lmap(throttle, -1.0, 1.0, -kContinuousAccelerationRange, kContinuousAccelerationRange);
  ego.steering_tan = std::tan(lmap(steer, -1.0, 1.0, -kContinuousSteeringRange, kContinuousSteeringRange));
}

StepResult HighwayEnv::do_step(const void* action, void* obs) {
  if (control_ == Control::kMetaActions) {
    int64_t a;
    std::memcpy(&a, action, sizeof(a));
    apply_meta_action(a);
  } else {
    float a[2];
    std::memcpy(a, action, sizeof(a));
    apply_continuous_action(a);
  }
  for (int f = 0; f < frames_per_action_; ++f) road_.step(dt_);
  observe(static_cast<float*>(obs));
  return {reward(), terminal(), false};
}

void HighwayEnv::observe(float* obs) const {
  const int rows = config_.observation_vehicles;
  const Vehicle& ego = road_.vehicle(0);
  const double x_range = kPerceptionDistance;                        // x in [-200, 200] m
  const double y_range = Road::kLaneWidth * road_.lanes_count();     // y in [-4 lanes, 4 lanes] m
  const double v_range = 2.0 * kMaxSpeed;                            // vx, vy in [-80, 80] m/s
  auto write = [&](int row, double x, double y, double vx, double vy) {
    float* o = obs + row * kFeatures;
    o[0] = 1.0f;
    o[1] = static_cast<float>(clip(lmap(x, -x_range, x_range, -1.0, 1.0), -1.0, 1.0));
    o[2] = static_cast<float>(clip(lmap(y, -y_range, y_range, -1.0, 1.0), -1.0, 1.0));
    o[3] = static_cast<float>(clip(lmap(vx, -v_range, v_range, -1.0, 1.0), -1.0, 1.0));
    o[4] = static_cast<float>(clip(lmap(vy, -v_range, v_range, -1.0, 1.0), -1.0, 1.0));
  };
  // The ego's row is absolute; the others are relative to the ego.
  write(0, ego.x, ego.y, ego.vx(), ego.vy());

  // Road.close_vehicles_to(see_behind=False): closer than 200 m, not more than 2 lengths behind,
  // the nearest rows - 1 by longitudinal distance (ties: vehicle order, as Python's stable sort).
  const int wanted = rows - 1;
  int found = 0;
  const auto& vehicles = road_.vehicles();
  for (size_t i = 1; wanted > 0 && i < vehicles.size(); ++i) {
    const Vehicle& v = vehicles[i];
    const double dx = v.x - ego.x, dy = v.y - ego.y;
    if (!(std::sqrt(dx * dx + dy * dy) < kPerceptionDistance) || !(dx > -2.0 * kVehicleLength)) continue;
    const double key = std::fabs(dx);
    if (found == wanted && !(key < std::fabs(vehicles[static_cast<size_t>(nearest_[found - 1])].x - ego.x))) continue;
    int k = found < wanted ? found++ : wanted - 1;
    while (k > 0 && key < std::fabs(vehicles[static_cast<size_t>(nearest_[k - 1])].x - ego.x)) {
      nearest_[k] = nearest_[k - 1];
      --k;
    }
    nearest_[k] = static_cast<int32_t>(i);
  }
  for (int k = 0; k < found; ++k) {
    const Vehicle& v = vehicles[static_cast<size_t>(nearest_[k])];
    write(k + 1, v.x - ego.x, v.y - ego.y, v.vx() - ego.vx(), v.vy() - ego.vy());
  }
  std::fill(obs + (found + 1) * kFeatures, obs + rows * kFeatures, 0.0f);
}

int HighwayEnv::reward_lane() const {
  // The meta-action ego is rewarded for its target lane, the continuous one for its lane.
  const Vehicle& ego = road_.vehicle(0);
  return control_ == Control::kMetaActions ? ego.target_lane : ego.lane;
}

float HighwayEnv::reward() const {
  const Vehicle& ego = road_.vehicle(0);
  const double right_lane = static_cast<double>(reward_lane()) / std::max(road_.lanes_count() - 1, 1);
  // Forward speed (speed cos(heading)), as the reference since its issue #268.
  const double scaled_speed = lmap(ego.speed * ego.cos_h, config_.reward_speed_low, config_.reward_speed_high, 0, 1);
  double r = config_.collision_reward * (ego.crashed ? 1.0 : 0.0) + config_.right_lane_reward * right_lane +
             config_.high_speed_reward * clip(scaled_speed, 0.0, 1.0);
  if (config_.normalize_reward) {
    r = lmap(r, config_.collision_reward, config_.high_speed_reward + config_.right_lane_reward, 0.0, 1.0);
  }
  return static_cast<float>(road_.on_road(ego) ? r : 0.0);
}

bool HighwayEnv::terminal() const {
  const Vehicle& ego = road_.vehicle(0);
  return ego.crashed || (config_.offroad_terminal && !road_.on_road(ego));
}

void HighwayEnv::info(std::vector<std::pair<std::string, double>>* out) const {
  if (road_.size() == 0) return;
  const Vehicle& ego = road_.vehicle(0);
  out->emplace_back("speed", ego.speed);
  out->emplace_back("crashed", ego.crashed ? 1.0 : 0.0);
  out->emplace_back("on_road", road_.on_road(ego) ? 1.0 : 0.0);
  out->emplace_back("lane", reward_lane());
}

void HighwayEnv::do_snapshot(std::vector<uint8_t>* out) const {
  road_.save(out);
  put_pod(out, rng_.state());
}

bool HighwayEnv::do_restore(const uint8_t*& in, const uint8_t* end) {
  // Check the whole size first so that a bad snapshot leaves the scene untouched.
  uint32_t n = 0;
  const uint8_t* peek = in;
  if (!get_pod(peek, end, &n) || n == 0 ||
      static_cast<size_t>(end - peek) != n * (sizeof(Vehicle) + sizeof(int32_t)) + sizeof(Rng::State)) {
    return false;
  }
  Rng::State rs;
  if (!road_.load(in, end) || !get_pod(in, end, &rs)) return false;
  rng_.set_state(rs);
  return true;
}

}  // namespace orchard::envs::driving
