// The Van Henten lettuce greenhouse model: coefficients, dynamics, RK4 integration, unit
// conversions. Pure functions on plain doubles; the environment (greenhouse.h) drives them.
//
// References: E.J. van Henten (1994), "Greenhouse climate management: an optimal control
// approach", PhD thesis, Wageningen University; E.J. van Henten (2003), "Sensitivity analysis of
// an optimal control problem in greenhouse climate management", Biosystems Engineering
// 85(3):355-364. Coefficients, equations and conversions as in docs/envs/greenhouse.md.
//
// Units (per m2 of floor): state X_d [kg m-2], X_c [kg m-3], X_t [degC], X_h [kg m-3];
// controls in actuator units U_c [mg m-2 s-1], U_v [mm s-1], U_q [W m-2]; weather V_i [W m-2],
// V_c [kg m-3], V_t [degC], V_h [kg m-3].
#pragma once

#include <algorithm>
#include <array>
#include <cmath>

namespace orchard::envs::greenhouse {

// The model's coefficients (van Henten 2003, Table 1). Every one of them is subject to the
// robustness perturbation (each multiplied by 1 + U(-h, h)).
struct Params {
  double c_v1 = 9348.0;          // J m-3            saturation vapour density
  double c_v2 = 17.4;            // -
  double c_v3 = 239.0;           // degC
  double c_R = 8314.0;           // J K-1 kmol-1
  double c_T = 273.15;           // K
  double c_leak = 0.75e-5;       // m s-1  the RL benchmark's value; van Henten's text has 0.75e-4
  double c_cap_c = 4.1;          // m                CO2 capacity of the air
  double c_cap_h = 4.1;          // m                vapour capacity of the air
  double c_cap_q = 3.0e4;        // J m-2 degC-1     heat capacity of the greenhouse air
  double c_cap_q_v = 1290.0;     // J m-3 degC-1     heat capacity per volume of air
  double c_ai_ou = 6.1;          // W m-2 degC-1     heat transmission through the cover
  double c_rad_q = 0.2;          // -                radiation to heat
  double c_alpha_beta = 0.544;   // -                yield factor
  double c_resp_d = 2.65e-7;     // s-1              maintenance respiration (dry weight)
  double c_resp_c = 4.87e-7;     // s-1              maintenance respiration (CO2)
  double c_pl_d = 53.0;          // m2 kg-1          effective canopy surface
  double c_rad_phot = 3.55e-9;   // kg J-1           light use efficiency
  double c_co2_1 = 5.11e-6;      // m s-1 degC-2     temperature dependence of CO2 conductance
  double c_co2_2 = 2.3e-4;       // m s-1 degC-1
  double c_co2_3 = 6.29e-4;      // m s-1
  double c_gamma = 5.2e-5;       // kg m-3           CO2 compensation point
  double c_v_pl_ai = 3.6e-3;     // m s-1            canopy transpiration mass transfer

  static constexpr int kCount = 22;
  // Every coefficient, in declaration order (for the perturbation and for tests).
  static const std::array<double Params::*, kCount>& fields();
  static const std::array<const char*, kCount>& names();
};

struct State {
  double dry_weight;   // X_d [kg m-2]
  double co2;          // X_c [kg m-3]
  double temperature;  // X_t [degC]
  double humidity;     // X_h [kg m-3] vapour density
};

struct Controls {
  double co2;   // U_c [mg m-2 s-1]
  double vent;  // U_v [mm s-1]
  double heat;  // U_q [W m-2]
};

// Outdoor weather in model units.
struct Weather {
  double radiation;    // V_i [W m-2]
  double co2;          // V_c [kg m-3]
  double temperature;  // V_t [degC]
  double vapour;       // V_h [kg m-3]
};

// The physical box the state is clamped to after each control interval.
struct StateBox {
  static constexpr double kDryWeightMin = 0.002, kDryWeightMax = 0.6;
  static constexpr double kCo2Min = 0.0, kCo2Max = 0.004;
  static constexpr double kTemperatureMin = 5.0, kTemperatureMax = 40.0;
  static constexpr double kHumidityMin = 0.0, kHumidityMax = 0.051;
};

inline State clamp_to_box(const State& x) {
  using B = StateBox;
  return {std::clamp(x.dry_weight, B::kDryWeightMin, B::kDryWeightMax), std::clamp(x.co2, B::kCo2Min, B::kCo2Max),
          std::clamp(x.temperature, B::kTemperatureMin, B::kTemperatureMax),
          std::clamp(x.humidity, B::kHumidityMin, B::kHumidityMax)};
}

// ---------------------------------------------------------------------------------------------
// Conversions (observations, penalties and weather input).

namespace units {
constexpr double kR = 8.3144598;        // J mol-1 K-1
constexpr double kP = 101325.0;         // Pa
constexpr double kMCo2 = 0.04401;       // kg mol-1
constexpr double kMWater = 0.01801528;  // kg mol-1
constexpr double kKelvin = 273.15;

// Saturation vapour pressure [Pa] at temperature T [degC].
inline double saturation_pressure(double t) { return 610.78 * std::exp(17.2694 * t / (t + 238.3)); }
// CO2 density [kg m-3] -> [ppm] at T [degC].
inline double co2_ppm(double t, double density) { return 1e6 * kR * (t + kKelvin) * density / (kP * kMCo2); }
inline double co2_density(double t, double ppm) { return ppm * 1e-6 * kP * kMCo2 / (kR * (t + kKelvin)); }
// Vapour density [kg m-3] -> relative humidity [%] at T [degC].
inline double rh_percent(double t, double vapour) {
  return 100.0 * kR * (t + kKelvin) * vapour / (kMWater * saturation_pressure(t));
}
inline double vapour_density(double t, double rh) {
  return rh / 100.0 * kMWater * saturation_pressure(t) / (kR * (t + kKelvin));
}
}  // namespace units

// ---------------------------------------------------------------------------------------------
// Dynamics

// Everything in the right-hand side that depends on the controls and the weather only, in SI
// units (U_c in kg, U_v in m s-1), so a derivative evaluation touches the state and nothing else.
struct Forcing {
  double light;    // c_rad_phot * V_i
  double vent;     // U_v + c_leak
  double co2_in;   // U_c + vent * V_c
  double k_heat;   // c_cap_q_v * U_v + c_ai_ou
  double heat_in;  // U_q + c_rad_q * V_i + k_heat * V_t
  double hum_in;   // vent * V_h
};

inline Forcing make_forcing(const Params& p, const Controls& u, const Weather& w) {
  Forcing f;
  const double uv = u.vent * 1e-3;
  f.light = p.c_rad_phot * w.radiation;
  f.vent = uv + p.c_leak;
  f.co2_in = u.co2 * 1e-6 + f.vent * w.co2;
  f.k_heat = p.c_cap_q_v * uv + p.c_ai_ou;
  f.heat_in = u.heat + p.c_rad_q * w.radiation + f.k_heat * w.temperature;
  f.hum_in = f.vent * w.vapour;
  return f;
}

// Reciprocals of the capacities, computed once per parameter set.
struct Derived {
  double inv_cap_c, inv_cap_q, inv_cap_h;
  static Derived of(const Params& p) { return {1.0 / p.c_cap_c, 1.0 / p.c_cap_q, 1.0 / p.c_cap_h}; }
};

// Canopy photosynthesis phi_phot [kg m-2 s-1]: van Henten's rectangular hyperbola of the
// light-limited rate c_rad_phot V_i and the CO2-limited rate eps = g(X_t) (X_c - c_gamma).
// eps is taken as max(eps, 0). Inside the model's domain (X_c >= c_gamma, and g > 0, which holds
// for the nominal coefficients on the whole [5, 40] degC box) that changes nothing; outside it,
// below the compensation point or where a perturbed g(T) turns negative, the hyperbola has a pole
// at c_rad_phot V_i = -eps and would drain the crop in one step. Gross photosynthesis stops
// there instead. With no light and eps = 0 the rate is 0 (not 0/0).
inline double photosynthesis(const Params& p, double closure, double light, double xc, double t) {
  const double g = (-p.c_co2_1 * t + p.c_co2_2) * t - p.c_co2_3;
  const double eps = std::max(g * (xc - p.c_gamma), 0.0);
  const double den = light + eps;
  return den > 0.0 ? closure * light * eps / den : 0.0;
}

// dx/dt of the four states.
inline State derivative(const Params& p, const Derived& d, const Forcing& f, const State& x) {
  const double t = x.temperature;
  // 1 - exp(-c_pl_d X_d) as written: with X_d >= 0.002 the argument is >= 0.1, so there is no
  // cancellation for expm1 (much slower in glibc) to save.
  const double closure = 1.0 - std::exp(-p.c_pl_d * x.dry_weight);
  const double phot = photosynthesis(p, closure, f.light, x.co2, t);
  const double maint = x.dry_weight * std::exp2(0.1 * t - 2.5);  // X_d * 2^(0.1 X_t - 2.5)
  const double sat = p.c_v1 * std::exp(p.c_v2 * t / (t + p.c_v3)) / (p.c_R * (t + p.c_T));
  State dx;
  dx.dry_weight = p.c_alpha_beta * phot - p.c_resp_d * maint;
  dx.co2 = (-phot + p.c_resp_c * maint + f.co2_in - f.vent * x.co2) * d.inv_cap_c;
  dx.temperature = (f.heat_in - f.k_heat * t) * d.inv_cap_q;
  dx.humidity = (closure * p.c_v_pl_ai * (sat - x.humidity) + f.hum_in - f.vent * x.humidity) * d.inv_cap_h;
  return dx;
}

inline State axpy(const State& x, double a, const State& k) {
  return {x.dry_weight + a * k.dry_weight, x.co2 + a * k.co2, x.temperature + a * k.temperature,
          x.humidity + a * k.humidity};
}

// Integrates `dt` seconds with `substeps` classical RK4 steps, the weather held at `w0` over the
// whole interval. Returns the state before clamping.
inline State integrate_hold(const Params& p, const Derived& d, const Controls& u, const Weather& w0, State x,
                            double dt, int substeps) {
  const Forcing f = make_forcing(p, u, w0);
  const double h = dt / substeps;
  for (int i = 0; i < substeps; ++i) {
    const State k1 = derivative(p, d, f, x);
    const State k2 = derivative(p, d, f, axpy(x, 0.5 * h, k1));
    const State k3 = derivative(p, d, f, axpy(x, 0.5 * h, k2));
    const State k4 = derivative(p, d, f, axpy(x, h, k3));
    const double h6 = h / 6.0;
    x.dry_weight += h6 * (k1.dry_weight + 2.0 * (k2.dry_weight + k3.dry_weight) + k4.dry_weight);
    x.co2 += h6 * (k1.co2 + 2.0 * (k2.co2 + k3.co2) + k4.co2);
    x.temperature += h6 * (k1.temperature + 2.0 * (k2.temperature + k3.temperature) + k4.temperature);
    x.humidity += h6 * (k1.humidity + 2.0 * (k2.humidity + k3.humidity) + k4.humidity);
  }
  return x;
}

// As integrate_hold, with the weather interpolated linearly from `w0` (start of the interval)
// to `w1` (its end) at each RK4 stage time.
inline State integrate_linear(const Params& p, const Derived& d, const Controls& u, const Weather& w0,
                              const Weather& w1, State x, double dt, int substeps) {
  const Forcing f0 = make_forcing(p, u, w0);
  const Forcing f1 = make_forcing(p, u, w1);
  // Forcing is affine in the weather, so interpolating it equals forcing the interpolated weather.
  auto at = [&](double s) {  // s in [0, 1]
    return Forcing{f0.light + s * (f1.light - f0.light),     f0.vent,
                   f0.co2_in + s * (f1.co2_in - f0.co2_in),  f0.k_heat,
                   f0.heat_in + s * (f1.heat_in - f0.heat_in), f0.hum_in + s * (f1.hum_in - f0.hum_in)};
  };
  const double h = dt / substeps;
  const double inv_n = 1.0 / substeps;
  for (int i = 0; i < substeps; ++i) {
    const double s0 = i * inv_n, sm = (i + 0.5) * inv_n, s1 = (i + 1) * inv_n;
    const Forcing fa = at(s0), fm = at(sm), fb = at(s1);
    const State k1 = derivative(p, d, fa, x);
    const State k2 = derivative(p, d, fm, axpy(x, 0.5 * h, k1));
    const State k3 = derivative(p, d, fm, axpy(x, 0.5 * h, k2));
    const State k4 = derivative(p, d, fb, axpy(x, h, k3));
    const double h6 = h / 6.0;
    x.dry_weight += h6 * (k1.dry_weight + 2.0 * (k2.dry_weight + k3.dry_weight) + k4.dry_weight);
    x.co2 += h6 * (k1.co2 + 2.0 * (k2.co2 + k3.co2) + k4.co2);
    x.temperature += h6 * (k1.temperature + 2.0 * (k2.temperature + k3.temperature) + k4.temperature);
    x.humidity += h6 * (k1.humidity + 2.0 * (k2.humidity + k3.humidity) + k4.humidity);
  }
  return x;
}

}  // namespace orchard::envs::greenhouse
