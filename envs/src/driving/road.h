// A straight multi-lane highway and the traffic on it: neighbour lookup, the IDM/MOBIL driver of
// the other vehicles, the ego's low-level controllers, integration and collisions.
//
// Reference: Farama HighwayEnv (https://github.com/Farama-Foundation/HighwayEnv),
// `highway_env/road/road.py` (Road.act, Road.step, Road.neighbour_vehicles,
// RoadNetwork.straight_road_network), `road/lane.py` (StraightLane.on_lane, is_reachable_from),
// `vehicle/behavior.py` (IDMVehicle.act, change_lane_policy, mobil). MOBIL after Kesting,
// Treiber & Helbing (2007), "General lane-changing model MOBIL for car-following models",
// Transportation Research Record 1999.
//
// Lanes are StraightLanes along +x, lane i centred on y = 4 i (lane 0 is the leftmost, the
// highest index the rightmost), width 4 m, speed limit 30 m/s. The reference's lanes end at
// x = 10 km (reached after ~250 s at 40 m/s); here they do not end.
//
// Cost: per simulation step the vehicles are re-sorted by x (insertion sort: O(n) on the
// nearly sorted order) and each lane's members are listed in x order, so a front/rear lookup is
// a binary search in one lane, and collisions are tested only between vehicles less than one
// footprint diagonal apart in x. Nothing is allocated by step().
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "driving/vehicle.h"

namespace orchard::envs::driving {

class Road {
 public:
  static constexpr double kLaneWidth = 4.0;
  static constexpr double kSpeedLimit = 30.0;
  // Road.neighbour_vehicles counts a vehicle as on a lane when |lateral| <= width / 2 + 1 and
  // -length <= longitudinal: a vehicle between two lanes is on both.
  static constexpr double kNeighbourMargin = 1.0;
  static constexpr double kFootprintDiagonal = 5.385164807134504;  // sqrt(5^2 + 2^2)

  struct Neighbours {
    int32_t front = -1;  // nearest vehicle with x >= own x on the lane, -1 if none
    int32_t rear = -1;   // nearest vehicle with x < own x on the lane, -1 if none
  };

  // `capacity` vehicles fit without allocation.
  Road(int lanes_count, size_t capacity);

  int lanes_count() const { return lanes_; }
  static double lane_center(int lane) { return lane * kLaneWidth; }
  // RoadNetwork.get_closest_lane_index: the lane whose centre is nearest to y (ties: the lower
  // index).
  int closest_lane(double y) const;
  // StraightLane.is_reachable_from: |lateral| <= 2 widths and longitudinal >= 0.
  bool is_reachable(int lane, const Vehicle& v) const;
  // Vehicle.on_road: inside its own (closest) lane, |lateral| <= 2 m, and x >= -5 m.
  bool on_road(const Vehicle& v) const;

  // Scene construction. add_vehicle() completes cos/sin of the heading, the lane and the target
  // lane (= lane) and returns the new index; the first vehicle added is the ego. Vehicles act in
  // index order. Call refresh() after adding vehicles or moving them by hand.
  void clear();
  int32_t add_vehicle(Vehicle v);
  void refresh();

  size_t size() const { return vehicles_.size(); }
  const Vehicle& vehicle(size_t i) const { return vehicles_[i]; }
  Vehicle& mutable_vehicle(size_t i) { return vehicles_[i]; }
  const std::vector<Vehicle>& vehicles() const { return vehicles_; }

  // Road.neighbour_vehicles(vehicle i, lane): the preceding and following vehicles on `lane`,
  // by x, excluding i itself. Valid for the positions of the last refresh()/step().
  Neighbours neighbours(int32_t i, int lane) const;

  // One simulation step (Road.act then Road.step): every vehicle decides in index order (IDM
  // and MOBIL for traffic, P controllers for the meta-action ego, nothing for the continuous
  // ego), every vehicle moves by `dt`, then overlapping vehicles are marked crashed.
  void step(double dt);

  // Snapshot of the vehicles and their order; load() returns false on a short buffer.
  void save(std::vector<uint8_t>* out) const;
  bool load(const uint8_t*& in, const uint8_t* end);

 private:
  void act_idm(int32_t i);
  void change_lane_policy(int32_t i, double free_acceleration);
  bool mobil(int32_t i, int lane, double free_acceleration) const;
  void detect_collisions();
  void reserve_lanes(size_t capacity);

  int lanes_;
  std::vector<Vehicle> vehicles_;
  std::vector<int32_t> order_;  // vehicle indices by increasing x (ties: previous order)
  // Lane l's members by increasing x are lane_members_[l * stride_ + k], k < lane_size_[l];
  // lane_x_ holds their x for the binary search.
  size_t stride_ = 0;
  std::vector<int32_t> lane_members_;
  std::vector<double> lane_x_;
  std::vector<int32_t> lane_size_;
};

// IDMVehicle.create_random's vehicle at (x, y) heading along +x: it keeps its initial speed as
// desired speed, and its MOBIL timer starts at (x + y) pi mod 1 s, as the reference seeds it.
Vehicle make_idm_vehicle(double x, double y, double speed, double delta = kIdmDelta);

}  // namespace orchard::envs::driving
