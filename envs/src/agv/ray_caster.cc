#include "agv/ray_caster.h"

#include <algorithm>
#include <cmath>

namespace orchard::envs::agv {
namespace {

// Direction components are kept at least this far from 0, so that 1/d stays finite and a box
// edge through the ray's origin gives 0 * large = 0 rather than 0 * inf = NaN. The resulting
// error is below 1e-18 m at 1 km.
constexpr float kTinyDirection = 1e-20f;
constexpr float kNoHit = 3.0e38f;
constexpr int kLanes = RayCaster::kLanes;

// The loops below run over `padded` rays (a multiple of kLanes) in fixed groups of kLanes,
// through restrict-qualified arguments: the form that GCC -O2 vectorises.

// World directions of the rays as inverses (ix, iy), and in `nearest` the distance at which
// each leaves the floor [0, width] x [0, height] (from inside, along each axis the later of the
// two slab crossings is the exit), capped at `range`. The origin is inside the floor in every
// reachable state (the disc collides first); from outside, readings are clamped to 0.
void start_rays(int padded, float c, float s, float px, float py, float width, float height, float range,
                const float* __restrict lx, const float* __restrict ly, float* __restrict ix, float* __restrict iy,
                float* __restrict nearest) {
  const float left = -px, right = width - px, bottom = -py, top = height - py;
  for (int i = 0; i < padded; i += kLanes) {
    const float *gx = lx + i, *gy = ly + i;
    float *gix = ix + i, *giy = iy + i, *gnear = nearest + i;
    for (int k = 0; k < kLanes; ++k) {
      float dx = c * gx[k] - s * gy[k];
      float dy = s * gx[k] + c * gy[k];
      dx = std::copysign(std::max(std::fabs(dx), kTinyDirection), dx);
      dy = std::copysign(std::max(std::fabs(dy), kTinyDirection), dy);
      const float inv_dx = 1.0f / dx, inv_dy = 1.0f / dy;
      gix[k] = inv_dx;
      giy[k] = inv_dy;
      const float exit_x = std::max(left * inv_dx, right * inv_dx);
      const float exit_y = std::max(bottom * inv_dy, top * inv_dy);
      gnear[k] = std::max(std::min(range, std::min(exit_x, exit_y)), 0.0f);
    }
  }
}

// Slab test of one box, relative to the rays' origin, against every ray: the ray is inside the
// x slab for t in [min(ta, tb), max(ta, tb)] and inside the y slab for [min(tc, td), max(tc,
// td)]; it hits the box where both overlap at t >= 0 (at t = 0 when it starts inside).
void hit_box(int padded, float bx0, float by0, float bx1, float by1, const float* __restrict ix,
             const float* __restrict iy, float* __restrict nearest) {
  for (int i = 0; i < padded; i += kLanes) {
    const float *gix = ix + i, *giy = iy + i;
    float* gnear = nearest + i;
    for (int k = 0; k < kLanes; ++k) {
      const float ta = bx0 * gix[k], tb = bx1 * gix[k];
      const float tc = by0 * giy[k], td = by1 * giy[k];
      const float t_near = std::max(std::min(ta, tb), std::min(tc, td));
      const float t_far = std::min(std::max(ta, tb), std::max(tc, td));
      const bool hit = (t_near <= t_far) & (t_far >= 0.0f);
      const float t = hit ? std::max(t_near, 0.0f) : kNoHit;
      gnear[k] = std::min(gnear[k], t);
    }
  }
}

}  // namespace

RayCaster::RayCaster(int num_rays, double max_range)
    : num_rays_(num_rays),
      padded_((num_rays + kLanes - 1) / kLanes * kLanes),
      max_range_(max_range),
      local_x_(static_cast<size_t>(padded_), 1.0f),
      local_y_(static_cast<size_t>(padded_), 0.0f),
      inv_x_(static_cast<size_t>(padded_)),
      inv_y_(static_cast<size_t>(padded_)),
      nearest_(static_cast<size_t>(padded_)) {
  for (int i = 0; i < num_rays_; ++i) {
    const double angle = 2.0 * kPi * i / num_rays_;
    local_x_[static_cast<size_t>(i)] = static_cast<float>(std::cos(angle));
    local_y_[static_cast<size_t>(i)] = static_cast<float>(std::sin(angle));
  }
}

void RayCaster::set_map(const WarehouseMap& map) {
  width_ = static_cast<float>(map.width);
  height_ = static_cast<float>(map.height);
  const size_t n = map.boxes.size();
  x0_.resize(n);
  y0_.resize(n);
  x1_.resize(n);
  y1_.resize(n);
  near_.resize(n);
  for (size_t b = 0; b < n; ++b) {
    x0_[b] = static_cast<float>(map.boxes[b].x0);
    y0_[b] = static_cast<float>(map.boxes[b].y0);
    x1_[b] = static_cast<float>(map.boxes[b].x1);
    y1_[b] = static_cast<float>(map.boxes[b].y1);
  }
}

void RayCaster::cast(double x, double y, double heading, float* out) {
  const float px = static_cast<float>(x), py = static_cast<float>(y);
  const float range = static_cast<float>(max_range_);
  start_rays(padded_, static_cast<float>(std::cos(heading)), static_cast<float>(std::sin(heading)), px, py, width_,
             height_, range, local_x_.data(), local_y_.data(), inv_x_.data(), inv_y_.data(), nearest_.data());

  // Boxes within range: the nearest point of the box is at most `range` away.
  const float range2 = range * range;
  const size_t boxes = x0_.size();
  int count = 0;
  for (size_t b = 0; b < boxes; ++b) {
    const float dx = std::max(std::max(x0_[b] - px, px - x1_[b]), 0.0f);
    const float dy = std::max(std::max(y0_[b] - py, py - y1_[b]), 0.0f);
    near_[static_cast<size_t>(count)] = static_cast<int>(b);
    count += dx * dx + dy * dy <= range2 ? 1 : 0;
  }
  for (int q = 0; q < count; ++q) {
    const size_t b = static_cast<size_t>(near_[static_cast<size_t>(q)]);
    hit_box(padded_, x0_[b] - px, y0_[b] - py, x1_[b] - px, y1_[b] - py, inv_x_.data(), inv_y_.data(),
            nearest_.data());
  }

  for (int i = 0; i < num_rays_; ++i) out[i] = nearest_[static_cast<size_t>(i)] / range;
}

}  // namespace orchard::envs::agv
