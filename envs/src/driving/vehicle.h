// Vehicles of the highway env: kinematic bicycle model, low-level lane/speed controllers, the
// Intelligent Driver Model, and oriented-rectangle collision by the separating axis theorem.
//
// Reference: Farama HighwayEnv (https://github.com/Farama-Foundation/HighwayEnv),
// `highway_env/vehicle/kinematics.py` (Vehicle.step, clip_actions), `vehicle/controller.py`
// (ControlledVehicle.steering_control, speed_control; MDPVehicle target speeds),
// `vehicle/behavior.py` (IDMVehicle.acceleration, desired_gap), `vehicle/objects.py` and
// `utils.py` (polygon collision). Reimplemented from the published equations:
//   IDM: Treiber, Hennecke & Helbing (2000), "Congested traffic states in empirical
//        observations and microscopic simulations", Phys. Rev. E 62.
//   Kinematic bicycle: Polack et al. (2017), "The kinematic bicycle model: a consistent model
//        for planning feasible trajectories for autonomous vehicles?", IEEE IV.
#pragma once

#include <cmath>
#include <cstdint>

namespace orchard::envs::driving {

constexpr double kPi = 3.14159265358979323846;

// Every vehicle is a 5 m x 2 m rectangle centred on (x, y).
constexpr double kVehicleLength = 5.0;
constexpr double kVehicleWidth = 2.0;
constexpr double kMaxSpeed = 40.0;   // clip_actions keeps |speed| <= 40 m/s
constexpr double kMinSpeed = -40.0;

// Low-level controllers (ControlledVehicle): P controllers with these time constants.
constexpr double kTauAcceleration = 0.6;  // [s]
constexpr double kTauHeading = 0.2;       // [s]
constexpr double kTauLateral = 0.6;       // [s]
constexpr double kKpAcceleration = 1.0 / kTauAcceleration;
constexpr double kKpHeading = 1.0 / kTauHeading;
constexpr double kKpLateral = 1.0 / kTauLateral;
constexpr double kMaxSteeringAngle = kPi / 3.0;
constexpr double kTanMaxSteeringAngle = 1.7320508075688772;  // tan(pi/3)

// IDM (IDMVehicle) longitudinal parameters.
constexpr double kIdmAccMax = 6.0;            // the command is clipped to [-6, 6] m/s^2
constexpr double kIdmComfortAccMax = 3.0;     // a: desired maximum acceleration [m/s^2]
constexpr double kIdmComfortAccMin = -5.0;    // -b: desired maximum deceleration [m/s^2]
constexpr double kIdmDistanceWanted = 5.0 + kVehicleLength;  // s0: jam distance [m]
constexpr double kIdmTimeWanted = 1.5;        // T: desired time gap [s]
constexpr double kIdmDelta = 4.0;             // velocity exponent
constexpr double kIdmDeltaLow = 3.5;          // randomize_behavior draws delta in [3.5, 4.5]
constexpr double kIdmDeltaHigh = 4.5;

// MOBIL (IDMVehicle) lateral parameters.
constexpr double kMobilPoliteness = 0.0;
constexpr double kMobilMinAccGain = 0.2;          // [m/s^2]
constexpr double kMobilMaxBrakingImposed = 2.0;   // [m/s^2]
constexpr double kMobilDecisionPeriod = 1.0;      // LANE_CHANGE_DELAY [s]

// Python's utils.not_zero: keeps |x| >= 1e-2, preserving the sign (0 maps to +1e-2).
inline double not_zero(double x) {
  constexpr double kEps = 1e-2;
  if (std::fabs(x) > kEps) return x;
  return x >= 0 ? kEps : -kEps;
}

inline double clip(double x, double lo, double hi) { return x < lo ? lo : (x > hi ? hi : x); }

// ((x + pi) mod 2 pi) - pi with a floored modulo, as utils.wrap_to_pi; in [-pi, pi).
inline double wrap_to_pi(double x) {
  if (x >= -kPi && x < kPi) return x;
  return x - 2 * kPi * std::floor((x + kPi) / (2 * kPi));
}

struct Vehicle {
  enum class Kind : uint8_t {
    kIdm,            // IDMVehicle: IDM acceleration, MOBIL lane changes
    kMetaEgo,        // MDPVehicle: target lane and speed set by meta-actions, P controllers
    kContinuousEgo,  // Vehicle: acceleration and steering held from the last action
  };

  Kind kind = Kind::kIdm;
  double x = 0, y = 0;   // centre [m]; lanes run along +x, lane i is centred on y = 4 i
  double heading = 0;    // [rad], not wrapped (as the reference)
  double speed = 0;      // [m/s] along the heading
  double cos_h = 1, sin_h = 0;  // cos and sin of heading; kept in sync by set_heading()
  // The action held until the next act(): acceleration [m/s^2] and tan(front-wheel angle).
  // Storing the tangent makes the bicycle model and the steering controller free of
  // atan/tan pairs; the steering angle itself is atan(steering_tan).
  double acceleration = 0;
  double steering_tan = 0;
  double target_speed = 0;  // IDM desired speed v0 or the ego's cruise set-point; 0 for kContinuousEgo
  double delta = kIdmDelta; // IDM exponent this driver uses for everyone it reasons about
  double timer = 0;         // seconds since the last MOBIL decision
  int32_t lane = 0;         // closest lane (updated after every step)
  int32_t target_lane = 0;  // lane the lateral controller steers to
  bool crashed = false;

  void set_heading(double h) {
    heading = h;
    cos_h = std::cos(h);
    sin_h = std::sin(h);
  }
  double steering() const { return std::atan(steering_tan); }
  double vx() const { return speed * cos_h; }
  double vy() const { return speed * sin_h; }
  // ControlledVehicle subclasses (IDM and meta-action ego) take part in the MOBIL abort rule.
  bool is_controlled() const { return kind != Kind::kContinuousEgo; }
};

// Vehicle.clip_actions then one explicit-Euler step of the kinematic bicycle model:
//   beta = atan(tan(delta_f) / 2)          (slip angle at the centre, lr = lf = L/2)
//   x += v cos(psi + beta) dt,  y += v sin(psi + beta) dt
//   psi += v sin(beta) / (L/2) dt,  v += a dt
// A crashed vehicle steers straight and brakes with a = -v. Above kMaxSpeed (below kMinSpeed)
// the acceleration is limited to bring the speed back; the clipped command is stored, as the
// reference stores it. Does not update `lane` (the road does).
void integrate(Vehicle& v, double dt);

// ControlledVehicle.steering_control towards a lane centred on y = lane_y, heading along +x:
// lateral P control -> lateral speed -> heading reference (clipped to +-pi/4) -> heading rate
// P control -> slip angle -> front-wheel angle, clipped to +-pi/3. Returns tan(angle).
double steering_control_tan(const Vehicle& v, double lane_y);

// ControlledVehicle.speed_control: a = (target - v) / tau_acc.
inline double speed_control(const Vehicle& v, double target_speed) {
  return kKpAcceleration * (target_speed - v.speed);
}

// IDM free-road term a (1 - (max(v, 0) / v0)^delta), v0 = target clipped to [0, speed_limit]
// (and kept away from 0 by not_zero).
inline double idm_free_acceleration(double speed, double target_speed, double delta, double speed_limit) {
  const double v0 = clip(target_speed, 0.0, speed_limit);
  const double ratio = (speed > 0 ? speed : 0.0) / std::fabs(not_zero(v0));
  // ratio^delta as exp(delta log ratio): about twice as fast as std::pow, within a few ulp.
  return kIdmComfortAccMax * (1.0 - std::exp(delta * std::log(ratio)));
}

// IDM desired gap s* = s0 + v T + v dv / (2 sqrt(a b)), dv the closing speed projected on the
// follower's heading.
inline double idm_desired_gap(const Vehicle& ego, const Vehicle& front) {
  constexpr double kTwoSqrtAb = 7.745966692414834;  // 2 sqrt(3 * 5)
  const double dv = ego.speed - front.speed * (front.cos_h * ego.cos_h + front.sin_h * ego.sin_h);
  return kIdmDistanceWanted + ego.speed * kIdmTimeWanted + ego.speed * dv / kTwoSqrtAb;
}

// IDM interaction term a (s* / d)^2, d the longitudinal distance between the centres.
inline double idm_interaction(const Vehicle& ego, const Vehicle& front) {
  const double ratio = idm_desired_gap(ego, front) / not_zero(front.x - ego.x);
  return kIdmComfortAccMax * ratio * ratio;
}

// IDMVehicle.acceleration: the IDM acceleration of `ego` behind `front` (nullptr: free road),
// as judged by a driver whose exponent is `delta`. 0 when ego is nullptr. Not clipped.
inline double idm_acceleration(const Vehicle* ego, const Vehicle* front, double delta, double speed_limit) {
  if (ego == nullptr) return 0.0;
  double a = idm_free_acceleration(ego->speed, ego->target_speed, delta, speed_limit);
  if (front != nullptr) a -= idm_interaction(*ego, *front);
  return a;
}

// An oriented rectangle: centre, unit heading (cos, sin), half length along the heading and
// half width across it.
struct OrientedRect {
  double cx, cy, cos_h, sin_h, half_length, half_width;
};

inline OrientedRect footprint(const Vehicle& v) {
  return {v.x, v.y, v.cos_h, v.sin_h, kVehicleLength / 2, kVehicleWidth / 2};
}

// True when the rectangles overlap with positive area, by the separating axis theorem on the
// four edge normals. Rectangles that only touch (penetration <= 1e-9 m on some axis) do not
// overlap.
bool rectangles_overlap(const OrientedRect& a, const OrientedRect& b);

}  // namespace orchard::envs::driving
