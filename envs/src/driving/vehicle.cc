#include "driving/vehicle.h"

namespace orchard::envs::driving {

void integrate(Vehicle& v, double dt) {
  if (v.crashed) {
    v.steering_tan = 0.0;
    v.acceleration = -1.0 * v.speed;
  }
  if (v.speed > kMaxSpeed) {
    v.acceleration = std::fmin(v.acceleration, 1.0 * (kMaxSpeed - v.speed));
  } else if (v.speed < kMinSpeed) {
    v.acceleration = std::fmax(v.acceleration, 1.0 * (kMinSpeed - v.speed));
  }
  // beta = atan(tan(delta_f) / 2): with t = tan(beta), cos(beta) = 1 / sqrt(1 + t^2) and
  // sin(beta) = t cos(beta); cos/sin(psi + beta) follow from the cached cos/sin(psi).
  const double tan_beta = 0.5 * v.steering_tan;
  const double cos_beta = 1.0 / std::sqrt(1.0 + tan_beta * tan_beta);
  const double sin_beta = tan_beta * cos_beta;
  v.x += v.speed * (v.cos_h * cos_beta - v.sin_h * sin_beta) * dt;
  v.y += v.speed * (v.sin_h * cos_beta + v.cos_h * sin_beta) * dt;
  const double heading = v.heading + v.speed * sin_beta / (kVehicleLength / 2) * dt;
  if (heading != v.heading) v.set_heading(heading);  // straight driving keeps cos/sin as they are
  v.speed += v.acceleration * dt;
}

double steering_control_tan(const Vehicle& v, double lane_y) {
  const double lateral = v.y - lane_y;
  const double speed = not_zero(v.speed);
  // Lateral position -> lateral speed command -> heading command (the lane heads along +x).
  const double lateral_speed_command = -kKpLateral * lateral;
  const double heading_command = std::asin(clip(lateral_speed_command / speed, -1.0, 1.0));
  const double heading_ref = clip(heading_command, -kPi / 4, kPi / 4);
  // Heading -> heading rate command -> sine of the slip angle.
  const double heading_rate_command = kKpHeading * wrap_to_pi(heading_ref - v.heading);
  const double sin_slip = clip(kVehicleLength / 2 / speed * heading_rate_command, -1.0, 1.0);
  // steering = atan(2 tan(slip)) with tan(asin(s)) = s / sqrt(1 - s^2); clip to +-pi/3.
  if (std::fabs(sin_slip) >= 1.0) return sin_slip > 0 ? kTanMaxSteeringAngle : -kTanMaxSteeringAngle;
  const double tan_steering = 2.0 * sin_slip / std::sqrt(1.0 - sin_slip * sin_slip);
  return clip(tan_steering, -kTanMaxSteeringAngle, kTanMaxSteeringAngle);
}

bool rectangles_overlap(const OrientedRect& a, const OrientedRect& b) {
  constexpr double kTouching = 1e-9;
  const double dx = b.cx - a.cx, dy = b.cy - a.cy;
  // Candidate separating axes: each rectangle's heading and its normal.
  const double axes[4][2] = {{a.cos_h, a.sin_h}, {-a.sin_h, a.cos_h}, {b.cos_h, b.sin_h}, {-b.sin_h, b.cos_h}};
  for (const auto& n : axes) {
    // Projection radius of a rectangle on n: half_length |u.n| + half_width |w.n|.
    const double ra = a.half_length * std::fabs(a.cos_h * n[0] + a.sin_h * n[1]) +
                      a.half_width * std::fabs(-a.sin_h * n[0] + a.cos_h * n[1]);
    const double rb = b.half_length * std::fabs(b.cos_h * n[0] + b.sin_h * n[1]) +
                      b.half_width * std::fabs(-b.sin_h * n[0] + b.cos_h * n[1]);
    const double distance = std::fabs(dx * n[0] + dy * n[1]);
    if (ra + rb - distance <= kTouching) return false;
  }
  return true;
}

}  // namespace orchard::envs::driving
