#include "agv/agv.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace orchard::envs::agv {
namespace {

// A step moves the disc less than its radius, so it cannot pass through a wall between two
// collision checks; and a target is never closer to a wall than the vehicle's radius, so the
// vehicle can always stand on it.
static_assert(kMaxSpeed * kDt < kRadius, "the vehicle could tunnel through thin walls");
static_assert(kTargetClearance >= kRadius && kReachDistance <= kTargetClearance, "targets must be reachable");
static_assert(kMinLeg > kMaxSpeed * kDt, "a moving target must not finish a leg more than once per step");

constexpr int64_t kMaxNumRays = 1024;
constexpr double kMinMaxRange = 0.1, kMaxMaxRange = 1000.0;
constexpr int kMaxLegsPerStep = 4;
constexpr size_t kReservedBoxes = 256;  // procedural layouts have well under 100

AgvConfig read_config(const std::string& env, bool dynamic, int64_t default_steps, const EnvOptions& o) {
  AgvConfig c;
  c.num_rays = static_cast<int>(o.get_int(env, "num_rays", kDefaultNumRays, 1, kMaxNumRays));
  c.max_range = o.get_double(env, "max_range", kDefaultMaxRange, kMinMaxRange, kMaxMaxRange);
  c.map_file = o.get_string(env, "map_file", "");
  c.layout_seed = o.get_int(env, "layout_seed", -1, -1, INT64_MAX);
  c.dense_shaping = o.get_bool(env, "dense_shaping", false);
  if (dynamic) c.target_speed = o.get_double(env, "target_speed", kDefaultTargetSpeed, 0.0, kMaxSpeed);
  c.max_episode_steps = o.get_int(env, "max_episode_steps", default_steps, 1, 1'000'000'000);
  if (!c.map_file.empty() && c.layout_seed != -1) {
    throw EnvError(env + ": options map_file and layout_seed=" + std::to_string(c.layout_seed) +
                   " exclude each other (layout_seed picks a procedural layout; leave it at -1 with a map file)");
  }
  return c;
}

EnvSpec make_spec(Scene scene, const AgvConfig& c) {
  EnvSpec s;
  s.name = scene_name(scene);
  const int64_t n = c.num_rays;
  std::vector<double> low(static_cast<size_t>(n + 5), 0.0), high(static_cast<size_t>(n + 5), 1.0);
  const size_t k = static_cast<size_t>(n);
  low[k + 1] = low[k + 2] = -1.0;  // bearing cos, sin
  low[k + 3] = kMinSpeed / kMaxSpeed;
  low[k + 4] = -1.0;
  s.observation_space = Space::box({n + 5}, low, high);
  s.action_space = Space::box({2}, -1.0, 1.0);
  s.max_episode_steps = c.max_episode_steps;
  s.reference = std::string("Yin et al. 2024, Random Network Distillation Based Deep Reinforcement Learning for AGV "
                            "Path Planning (arXiv:2404.12594), ") +
                (scene == Scene::kSimpleStatic    ? "simple static"
                 : scene == Scene::kSimpleDynamic ? "simple dynamic"
                 : scene == Scene::kComplexStatic ? "complex static"
                                                  : "complex dynamic") +
                " scene; Orchard's own simulator";
  return s;
}

double wrap_angle(double a) {
  if (a > kPi) return a - 2.0 * kPi;
  if (a <= -kPi) return a + 2.0 * kPi;
  return a;
}

std::string point(double x, double y) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "(%g, %g)", x, y);
  return buf;
}

}  // namespace

template <Scene kScene>
Agv<kScene>::Agv(const EnvOptions& options)
    : Agv(FromConfig{}, read_config(scene_name(kScene), kDynamic, scene_max_steps(kScene), options)) {}

template <Scene kScene>
Agv<kScene>::Agv(FromConfig, AgvConfig config)
    : Env(make_spec(kScene, config)),
      config_(std::move(config)),
      source_(!config_.map_file.empty()    ? LayoutSource::kFile
              : config_.layout_seed >= 0 ? LayoutSource::kFixed
                                         : LayoutSource::kPerEpisode),
      caster_(config_.num_rays, config_.max_range),
      time_penalty_(1.0 / static_cast<double>(config_.max_episode_steps)) {
  const Layout layout = kComplex ? Layout::kComplex : Layout::kSimple;
  if (source_ == LayoutSource::kFile) {
    map_ = load_map_file(name(), config_.map_file);
    const std::string file = "map file '" + config_.map_file + "'";
    if (map_.has_start && map_.clearance(map_.start_x, map_.start_y) < kRadius) {
      fail(file + " line " + std::to_string(map_.start_line) + ": start " + point(map_.start_x, map_.start_y) +
           " is closer than the vehicle's radius (0.4 m) to a box or the border");
    }
    if (map_.has_target && !map_.segment_clear(map_.target_x, map_.target_y, map_.target_x, map_.target_y,
                                               kTargetClearance)) {
      fail(file + " line " + std::to_string(map_.target_line) + ": target " + point(map_.target_x, map_.target_y) +
           " is closer than 0.5 m to a box or the border");
    }
  } else if (source_ == LayoutSource::kFixed) {
    Rng layout_rng(static_cast<uint64_t>(config_.layout_seed));
    generate_layout(layout, layout_rng, &map_);
  } else {
    map_.boxes.reserve(kReservedBoxes);
    Rng probe(0);
    generate_layout(layout, probe, &map_);  // replaced at every reset
  }
  caster_.set_map(map_);
  diagonal_ = map_.diagonal();
  if (source_ == LayoutSource::kFile) {
    // Fail here rather than at the first reset when the file leaves no room for random poses.
    Rng probe(0);
    if (!place(probe)) {
      fail("map file '" + config_.map_file + "': found no free place for the start and target in " +
           std::to_string(kPlacementTries) +
           " tries (a random start needs 0.6 m to every box and the border; a random target 0.5 m, and a quarter "
           "of the map's diagonal from the start)");
    }
  }
}

template <Scene kScene>
bool Agv<kScene>::place(Rng& rng) {
  AgvState& s = state_;
  s = AgvState{};
  Vehicle& car = s.vehicle;
  if (map_.has_start) {
    car.x = map_.start_x;
    car.y = map_.start_y;
    car.heading = map_.start_heading;
  } else {
    for (int tries = 0;; ++tries) {
      if (tries == kPlacementTries) return false;
      car.x = rng.uniform(kStartClearance, map_.width - kStartClearance);
      car.y = rng.uniform(kStartClearance, map_.height - kStartClearance);
      if (map_.clearance(car.x, car.y) >= kStartClearance) break;
    }
    car.heading = rng.uniform(-kPi, kPi);
  }
  if (map_.has_target) {
    s.target_x = map_.target_x;
    s.target_y = map_.target_y;
  } else {
    const double min_separation = kMinTargetSeparation * diagonal_;
    for (int tries = 0;; ++tries) {
      if (tries == kPlacementTries) return false;
      s.target_x = rng.uniform(kTargetClearance, map_.width - kTargetClearance);
      s.target_y = rng.uniform(kTargetClearance, map_.height - kTargetClearance);
      if (std::hypot(s.target_x - car.x, s.target_y - car.y) >= min_separation &&
          map_.segment_clear(s.target_x, s.target_y, s.target_x, s.target_y, kTargetClearance)) {
        break;
      }
    }
  }
  s.leg_x = s.waypoint_x = s.target_x;
  s.leg_y = s.waypoint_y = s.target_y;
  if constexpr (kDynamic) pick_waypoint(rng);
  s.distance = std::hypot(s.target_x - car.x, s.target_y - car.y);
  return true;
}

template <Scene kScene>
void Agv<kScene>::pick_waypoint(Rng& rng) {
  AgvState& s = state_;
  for (int i = 0; i < kWaypointTries; ++i) {
    const double angle = rng.uniform(-kPi, kPi), length = rng.uniform(kMinLeg, kMaxLeg);
    const double wx = s.target_x + length * std::cos(angle), wy = s.target_y + length * std::sin(angle);
    if (map_.segment_clear(s.target_x, s.target_y, wx, wy, kTargetClearance)) {
      s.leg_x = s.target_x;
      s.leg_y = s.target_y;
      s.waypoint_x = wx;
      s.waypoint_y = wy;
      return;
    }
  }
  // No clear leg found: back along the last leg (a zero leg, i.e. wait, before the first one).
  const double back_x = s.leg_x, back_y = s.leg_y;
  s.leg_x = s.target_x;
  s.leg_y = s.target_y;
  s.waypoint_x = back_x;
  s.waypoint_y = back_y;
}

template <Scene kScene>
void Agv<kScene>::move_target() {
  AgvState& s = state_;
  double remaining = config_.target_speed * kDt;
  for (int legs = 0; legs < kMaxLegsPerStep && remaining > 0.0; ++legs) {
    const double dx = s.waypoint_x - s.target_x, dy = s.waypoint_y - s.target_y;
    const double d = std::sqrt(dx * dx + dy * dy);
    if (d > remaining) {
      s.target_x += dx * (remaining / d);
      s.target_y += dy * (remaining / d);
      return;
    }
    // Reached the waypoint within this step: the rest of the step goes along the next leg.
    s.target_x = s.waypoint_x;
    s.target_y = s.waypoint_y;
    remaining -= d;
    pick_waypoint(rng_);
    if (s.waypoint_x == s.target_x && s.waypoint_y == s.target_y) return;  // nowhere to go: wait
  }
}

template <Scene kScene>
void Agv<kScene>::write_obs(void* obs) {
  float* o = static_cast<float*>(obs);
  const Vehicle& car = state_.vehicle;
  caster_.cast(car.x, car.y, car.heading, o);
  const size_t n = static_cast<size_t>(config_.num_rays);
  const double rx = state_.target_x - car.x, ry = state_.target_y - car.y;
  const double d = std::sqrt(rx * rx + ry * ry);
  const double c = std::cos(car.heading), s = std::sin(car.heading);
  o[n] = static_cast<float>(std::min(d / diagonal_, 1.0));
  // The target's direction in the vehicle frame (x ahead, y to the left).
  o[n + 1] = d > 0.0 ? static_cast<float>((c * rx + s * ry) / d) : 1.0f;
  o[n + 2] = d > 0.0 ? static_cast<float>((c * ry - s * rx) / d) : 0.0f;
  o[n + 3] = static_cast<float>(car.v / kMaxSpeed);
  o[n + 4] = static_cast<float>(car.omega / kMaxYawRate);
}

template <Scene kScene>
void Agv<kScene>::do_reset(std::optional<uint64_t> seed, void* obs) {
  if (seed) rng_.seed(*seed);
  if (source_ == LayoutSource::kPerEpisode) {
    generate_layout(kComplex ? Layout::kComplex : Layout::kSimple, rng_, &map_);
    caster_.set_map(map_);
    diagonal_ = map_.diagonal();
  }
  if (!place(rng_)) {
    fail("found no free place for the start and target in " + std::to_string(kPlacementTries) + " tries");
  }
  write_obs(obs);
}

template <Scene kScene>
StepResult Agv<kScene>::do_step(const void* action, void* obs) {
  float a[2];
  std::memcpy(a, action, sizeof(a));
  // Commands beyond the actuators' limits saturate: the action is clipped to [-1, 1].
  const double accel = kMaxAccel * std::clamp(static_cast<double>(a[0]), -1.0, 1.0);
  const double yaw_rate = kMaxYawRate * std::clamp(static_cast<double>(a[1]), -1.0, 1.0);

  Vehicle& car = state_.vehicle;
  car.v = std::clamp(car.v + accel * kDt, kMinSpeed, kMaxSpeed);
  car.omega = yaw_rate;
  car.heading = wrap_angle(car.heading + car.omega * kDt);
  car.x += car.v * std::cos(car.heading) * kDt;
  car.y += car.v * std::sin(car.heading) * kDt;
  if constexpr (kDynamic) move_target();

  const double dx = state_.target_x - car.x, dy = state_.target_y - car.y;
  const double distance = std::sqrt(dx * dx + dy * dy);
  state_.collided = map_.clearance(car.x, car.y) < kRadius;
  state_.reached = !state_.collided && distance <= kReachDistance;
  double reward = state_.collided ? -1.0 : state_.reached ? 1.0 : -time_penalty_;
  if (config_.dense_shaping) reward += (state_.distance - distance) / diagonal_;
  state_.distance = distance;
  write_obs(obs);
  return {static_cast<float>(reward), state_.collided || state_.reached, false};
}

template <Scene kScene>
void Agv<kScene>::info(std::vector<std::pair<std::string, double>>* out) const {
  out->emplace_back("reached_target", state_.reached ? 1.0 : 0.0);
  out->emplace_back("collided", state_.collided ? 1.0 : 0.0);
  out->emplace_back("target_distance_m", state_.distance);
}

template <Scene kScene>
void Agv<kScene>::do_snapshot(std::vector<uint8_t>* out) const {
  put_pod(out, state_);
  put_pod(out, rng_.state());
  // The layout changes every episode unless fixed; it is small, so it is always included.
  put_pod(out, map_.width);
  put_pod(out, map_.height);
  put_pod(out, static_cast<uint64_t>(map_.boxes.size()));
  for (const Box& b : map_.boxes) put_pod(out, b);
}

template <Scene kScene>
bool Agv<kScene>::do_restore(const uint8_t*& in, const uint8_t* end) {
  AgvState state;
  Rng::State rng_state;
  double width, height;
  uint64_t boxes;
  if (!get_pod(in, end, &state) || !get_pod(in, end, &rng_state) || !get_pod(in, end, &width) ||
      !get_pod(in, end, &height) || !get_pod(in, end, &boxes) ||
      boxes > static_cast<uint64_t>(end - in) / sizeof(Box)) {
    return false;
  }
  map_.width = width;
  map_.height = height;
  map_.boxes.resize(static_cast<size_t>(boxes));
  for (Box& b : map_.boxes) get_pod(in, end, &b);
  caster_.set_map(map_);
  diagonal_ = map_.diagonal();
  state_ = state;
  rng_.set_state(rng_state);
  return true;
}

template class Agv<Scene::kSimpleStatic>;
template class Agv<Scene::kSimpleDynamic>;
template class Agv<Scene::kComplexStatic>;
template class Agv<Scene::kComplexDynamic>;

}  // namespace orchard::envs::agv
