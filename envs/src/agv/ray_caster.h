// Range sensor of the AGV environments: rays from the vehicle's centre against a WarehouseMap.
//
// Ray i leaves at angle heading + 2*pi*i/num_rays (ray 0 straight ahead, counter-clockwise) and
// reads the distance to the first box or floor border it meets, divided by max_range; 1 when
// nothing lies within max_range.
//
// How it is fast: the rays' directions in the vehicle frame are precomputed; per cast, the boxes
// farther than max_range are culled, and each remaining box is slab-tested against all rays at
// once in float32 structure-of-arrays loops of fixed width kLanes, which the compiler
// vectorises. A cast allocates nothing.
#pragma once

#include <cstddef>
#include <vector>

#include "agv/warehouse_map.h"

namespace orchard::envs::agv {

class RayCaster {
 public:
  static constexpr int kLanes = 8;  // rays are processed in groups of kLanes (padded)

  RayCaster(int num_rays, double max_range);

  int num_rays() const { return num_rays_; }
  double max_range() const { return max_range_; }

  // Copies the map's size and boxes. Call whenever the map changes; allocates only when the
  // map has more boxes than any map before it.
  void set_map(const WarehouseMap& map);

  // Writes num_rays() readings in [0, 1] to `out` for rays from (x, y) at `heading` (radians).
  // Allocates nothing.
  void cast(double x, double y, double heading, float* out);

 private:
  int num_rays_;
  int padded_;  // num_rays_ rounded up to a multiple of kLanes
  double max_range_;
  float width_ = 0, height_ = 0;
  // Ray directions in the vehicle frame, padded_ entries each.
  std::vector<float> local_x_, local_y_;
  // Per-cast scratch, padded_ entries each: inverse world directions and the nearest hit so far.
  std::vector<float> inv_x_, inv_y_, nearest_;
  // The map's boxes as structure of arrays, and the indices of those within range of a cast.
  std::vector<float> x0_, y0_, x1_, y1_;
  std::vector<int> near_;
};

}  // namespace orchard::envs::agv
