#include "driving/road.h"

#include <algorithm>
#include <cmath>

#include "orchard/envs/env.h"

namespace orchard::envs::driving {

Vehicle make_idm_vehicle(double x, double y, double speed, double delta) {
  Vehicle v;
  v.kind = Vehicle::Kind::kIdm;
  v.x = x;
  v.y = y;
  v.speed = speed;
  v.target_speed = speed;
  v.delta = delta;
  const double t = (x + y) * kPi;
  v.timer = t - std::floor(t / kMobilDecisionPeriod) * kMobilDecisionPeriod;
  return v;
}

Road::Road(int lanes_count, size_t capacity) : lanes_(lanes_count), lane_size_(static_cast<size_t>(lanes_count), 0) {
  vehicles_.reserve(capacity);
  order_.reserve(capacity);
  reserve_lanes(capacity);
}

void Road::reserve_lanes(size_t capacity) {
  if (capacity <= stride_ && stride_ > 0) return;
  stride_ = std::max<size_t>(capacity, 1);
  lane_members_.assign(static_cast<size_t>(lanes_) * stride_, -1);
  lane_x_.assign(static_cast<size_t>(lanes_) * stride_, 0.0);
}

int Road::closest_lane(double y) const {
  // argmin_i |y - 4 i| with ties to the lower index: ceil(y / 4 - 1/2), clamped.
  const double i = std::ceil(y / kLaneWidth - 0.5);
  if (!(i > 0)) return 0;
  if (i >= lanes_ - 1) return lanes_ - 1;
  return static_cast<int>(i);
}

bool Road::is_reachable(int lane, const Vehicle& v) const {
  return std::fabs(v.y - lane_center(lane)) <= 2 * kLaneWidth && v.x >= 0.0;
}

bool Road::on_road(const Vehicle& v) const {
  return std::fabs(v.y - lane_center(v.lane)) <= kLaneWidth / 2 && v.x >= -kVehicleLength;
}

void Road::clear() {
  vehicles_.clear();
  order_.clear();
  std::fill(lane_size_.begin(), lane_size_.end(), 0);
}

int32_t Road::add_vehicle(Vehicle v) {
  v.set_heading(v.heading);
  v.lane = closest_lane(v.y);
  v.target_lane = v.lane;
  const auto index = static_cast<int32_t>(vehicles_.size());
  vehicles_.push_back(v);
  order_.push_back(index);
  reserve_lanes(vehicles_.size());
  return index;
}

void Road::refresh() {
  // Insertion sort: the order of the previous step is nearly sorted.
  for (size_t k = 1; k < order_.size(); ++k) {
    const int32_t id = order_[k];
    const double x = vehicles_[static_cast<size_t>(id)].x;
    size_t j = k;
    while (j > 0 && vehicles_[static_cast<size_t>(order_[j - 1])].x > x) {
      order_[j] = order_[j - 1];
      --j;
    }
    order_[j] = id;
  }
  std::fill(lane_size_.begin(), lane_size_.end(), 0);
  const double reach = kLaneWidth / 2 + kNeighbourMargin;
  for (int32_t id : order_) {
    const Vehicle& v = vehicles_[static_cast<size_t>(id)];
    if (v.x < -kVehicleLength) continue;
    const double lo = std::max(0.0, std::floor((v.y - reach) / kLaneWidth));
    const double hi = std::min(static_cast<double>(lanes_ - 1), std::ceil((v.y + reach) / kLaneWidth));
    for (int l = static_cast<int>(lo); l <= static_cast<int>(hi); ++l) {
      if (std::fabs(v.y - lane_center(l)) > reach) continue;
      const size_t slot = static_cast<size_t>(l) * stride_ + static_cast<size_t>(lane_size_[static_cast<size_t>(l)]++);
      lane_members_[slot] = id;
      lane_x_[slot] = v.x;
    }
  }
}

Road::Neighbours Road::neighbours(int32_t i, int lane) const {
  const size_t base = static_cast<size_t>(lane) * stride_;
  const double* xs = lane_x_.data() + base;
  const int32_t* members = lane_members_.data() + base;
  const int32_t n = lane_size_[static_cast<size_t>(lane)];
  const double s = vehicles_[static_cast<size_t>(i)].x;
  const auto k = static_cast<int32_t>(std::lower_bound(xs, xs + n, s) - xs);
  Neighbours out;
  if (k > 0) out.rear = members[k - 1];
  for (int32_t j = k; j < n; ++j) {
    if (members[j] != i) {
      out.front = members[j];
      break;
    }
  }
  return out;
}

void Road::step(double dt) {
  for (size_t i = 0; i < vehicles_.size(); ++i) {
    Vehicle& v = vehicles_[i];
    switch (v.kind) {
      case Vehicle::Kind::kIdm:
        act_idm(static_cast<int32_t>(i));
        break;
      case Vehicle::Kind::kMetaEgo:  // ControlledVehicle.act() without a new meta-action
        v.steering_tan = steering_control_tan(v, lane_center(v.target_lane));
        v.acceleration = speed_control(v, v.target_speed);
        break;
      case Vehicle::Kind::kContinuousEgo:  // Vehicle.act(None) keeps the last action
        break;
    }
  }
  for (Vehicle& v : vehicles_) {
    if (v.kind == Vehicle::Kind::kIdm) v.timer += dt;
    integrate(v, dt);
    v.lane = closest_lane(v.y);
  }
  refresh();
  detect_collisions();
}

void Road::act_idm(int32_t i) {
  Vehicle& v = vehicles_[static_cast<size_t>(i)];
  if (v.crashed) return;  // the last command stays; integrate() brakes a crashed vehicle
  // The free-road term depends on this vehicle only: shared by MOBIL and the command below.
  const double free_acceleration = idm_free_acceleration(v.speed, v.target_speed, v.delta, kSpeedLimit);
  change_lane_policy(i, free_acceleration);
  v.steering_tan = steering_control_tan(v, lane_center(v.target_lane));

  const Neighbours own = neighbours(i, v.lane);
  double acceleration = free_acceleration;
  if (own.front >= 0) acceleration -= idm_interaction(v, vehicles_[static_cast<size_t>(own.front)]);
  // While changing lane, also keep a safe gap to the leader on the target lane.
  if (v.lane != v.target_lane) {
    const Neighbours target = neighbours(i, v.target_lane);
    double target_acceleration = free_acceleration;
    if (target.front >= 0) target_acceleration -= idm_interaction(v, vehicles_[static_cast<size_t>(target.front)]);
    acceleration = std::min(acceleration, target_acceleration);
  }
  v.acceleration = clip(acceleration, -kIdmAccMax, kIdmAccMax);
}

void Road::change_lane_policy(int32_t i, double free_acceleration) {
  Vehicle& v = vehicles_[static_cast<size_t>(i)];
  if (v.lane != v.target_lane) {
    // A lane change is under way: abort it when a controlled vehicle ahead, within the desired
    // gap, is changing into the same lane.
    for (size_t j = 0; j < vehicles_.size(); ++j) {
      const Vehicle& other = vehicles_[j];
      if (static_cast<int32_t>(j) == i || other.lane == v.target_lane || !other.is_controlled() ||
          other.target_lane != v.target_lane) {
        continue;
      }
      const double d = other.x - v.x;
      if (0 < d && d < idm_desired_gap(v, other)) {
        v.target_lane = v.lane;
        break;
      }
    }
    return;
  }
  if (!(kMobilDecisionPeriod < v.timer)) return;
  v.timer = 0;
  // Left candidate first, then right: when both qualify the right lane wins, as the reference.
  for (int lane : {v.lane - 1, v.lane + 1}) {
    if (lane < 0 || lane >= lanes_ || !is_reachable(lane, v)) continue;
    if (std::fabs(v.speed) < 1) continue;
    if (mobil(i, lane, free_acceleration)) v.target_lane = lane;
  }
}

bool Road::mobil(int32_t i, int lane, double free_acceleration) const {
  const Vehicle& v = vehicles_[static_cast<size_t>(i)];
  auto at = [this](int32_t j) { return j >= 0 ? &vehicles_[static_cast<size_t>(j)] : nullptr; };
  // Is the manoeuvre unsafe for the new follower?
  const Neighbours next = neighbours(i, lane);
  const Vehicle* new_preceding = at(next.front);
  const Vehicle* new_following = at(next.rear);
  const double new_following_pred_a = idm_acceleration(new_following, &v, v.delta, kSpeedLimit);
  if (new_following_pred_a < -kMobilMaxBrakingImposed) return false;
  // Is there an acceleration advantage for me (and, with politeness, my followers)?
  const Neighbours now = neighbours(i, v.lane);
  const Vehicle* old_preceding = at(now.front);
  const double self_pred_a =
      free_acceleration - (new_preceding != nullptr ? idm_interaction(v, *new_preceding) : 0.0);
  const double self_a = free_acceleration - (old_preceding != nullptr ? idm_interaction(v, *old_preceding) : 0.0);
  double gain = self_pred_a - self_a;
  if (kMobilPoliteness != 0.0) {  // with the reference's politeness 0 the followers' terms vanish
    const Vehicle* old_following = at(now.rear);
    const double new_following_a = idm_acceleration(new_following, new_preceding, v.delta, kSpeedLimit);
    const double old_following_a = idm_acceleration(old_following, &v, v.delta, kSpeedLimit);
    const double old_following_pred_a = idm_acceleration(old_following, old_preceding, v.delta, kSpeedLimit);
    gain += kMobilPoliteness *
            (new_following_pred_a - new_following_a + old_following_pred_a - old_following_a);
  }
  return !(gain < kMobilMinAccGain);
}

void Road::detect_collisions() {
  const size_t n = order_.size();
  constexpr double kReach2 = kFootprintDiagonal * kFootprintDiagonal;
  for (size_t a = 0; a < n; ++a) {
    Vehicle& va = vehicles_[static_cast<size_t>(order_[a])];
    for (size_t b = a + 1; b < n; ++b) {
      Vehicle& vb = vehicles_[static_cast<size_t>(order_[b])];
      const double dx = vb.x - va.x;
      if (dx > kFootprintDiagonal) break;  // sorted by x: nobody further can touch va
      const double dy = vb.y - va.y;
      if (dx * dx + dy * dy > kReach2) continue;  // circumscribed circles apart
      if (rectangles_overlap(footprint(va), footprint(vb))) {
        va.crashed = true;
        vb.crashed = true;
      }
    }
  }
}

void Road::save(std::vector<uint8_t>* out) const {
  put_pod(out, static_cast<uint32_t>(vehicles_.size()));
  for (const Vehicle& v : vehicles_) put_pod(out, v);
  for (int32_t id : order_) put_pod(out, id);
}

bool Road::load(const uint8_t*& in, const uint8_t* end) {
  uint32_t n = 0;
  if (!get_pod(in, end, &n)) return false;
  if (static_cast<size_t>(end - in) < static_cast<size_t>(n) * (sizeof(Vehicle) + sizeof(int32_t))) return false;
  vehicles_.resize(n);
  order_.resize(n);
  for (Vehicle& v : vehicles_) get_pod(in, end, &v);
  for (int32_t& id : order_) {
    get_pod(in, end, &id);
    if (id < 0 || static_cast<uint32_t>(id) >= n) return false;
  }
  reserve_lanes(n);
  refresh();
  return true;
}

}  // namespace orchard::envs::driving
