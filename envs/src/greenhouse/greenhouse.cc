#include "greenhouse/greenhouse.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

namespace orchard::envs::greenhouse {

// ---------------------------------------------------------------------------------------------
// Params

const std::array<double Params::*, Params::kCount>& Params::fields() {
  static const std::array<double Params::*, kCount> f = {
      &Params::c_v1,      &Params::c_v2,    &Params::c_v3,         &Params::c_R,        &Params::c_T,
      &Params::c_leak,    &Params::c_cap_c, &Params::c_cap_h,      &Params::c_cap_q,    &Params::c_cap_q_v,
      &Params::c_ai_ou,   &Params::c_rad_q, &Params::c_alpha_beta, &Params::c_resp_d,   &Params::c_resp_c,
      &Params::c_pl_d,    &Params::c_rad_phot, &Params::c_co2_1,   &Params::c_co2_2,    &Params::c_co2_3,
      &Params::c_gamma,   &Params::c_v_pl_ai};
  return f;
}

const std::array<const char*, Params::kCount>& Params::names() {
  static const std::array<const char*, kCount> n = {
      "c_v1",    "c_v2",    "c_v3",         "c_R",      "c_T",      "c_leak",  "c_cap_c", "c_cap_h",
      "c_cap_q", "c_cap_q_v", "c_ai_ou",    "c_rad_q",  "c_alpha_beta", "c_resp_d", "c_resp_c", "c_pl_d",
      "c_rad_phot", "c_co2_1", "c_co2_2",   "c_co2_3",  "c_gamma",  "c_v_pl_ai"};
  return n;
}

// ---------------------------------------------------------------------------------------------
// Options

GreenhouseConfig GreenhouseConfig::from_options(const EnvOptions& o) {
  const std::string env = Greenhouse::kName;
  GreenhouseConfig c;
  c.action_mode = o.get_choice(env, "action_mode", "delta", {"delta", "absolute"}) == "absolute"
                      ? ActionMode::kAbsolute
                      : ActionMode::kDelta;
  c.weather_file = o.get_string(env, "weather_file", "");
  const std::string weather =
      o.get_choice(env, "weather", c.weather_file.empty() ? "generator" : "csv", {"generator", "csv"});
  c.weather_from_file = weather == "csv";
  if (c.weather_from_file && c.weather_file.empty()) {
    throw EnvError(env + ": option weather=csv needs weather_file=<path to the CSV>");
  }
  if (!c.weather_from_file && !c.weather_file.empty()) {
    throw EnvError(env + ": option weather_file='" + c.weather_file +
                   "' is set but weather=generator (use weather=csv, or drop weather_file)");
  }
  c.weather_offset_s = o.get_double(env, "weather_offset_s", 0.0, -1e12, 1e12);
  const std::string scenario =
      o.get_choice(env, "scenario", "normal", {"normal", "cold_snap", "heat_wave", "overcast"});
  c.scenario = scenario == "cold_snap"   ? Scenario::kColdSnap
               : scenario == "heat_wave" ? Scenario::kHeatWave
               : scenario == "overcast"  ? Scenario::kOvercast
                                         : Scenario::kNormal;
  c.scenario_start_day = o.get_double(env, "scenario_start_day", 0.0, 0.0, 366.0);
  c.scenario_days = o.get_double(env, "scenario_days", 7.0, 0.0, 366.0);
  c.c_leak = o.get_double(env, "c_leak", 0.75e-5, 0.0, 1e-2);
  c.rk4_substeps = static_cast<int>(o.get_int(env, "rk4_substeps", 6, 1, 1000));
  c.interpolation = o.get_choice(env, "weather_interpolation", "hold", {"hold", "linear"}) == "linear"
                        ? Interpolation::kLinear
                        : Interpolation::kHold;
  c.perturbation = o.get_double(env, "perturbation", 0.0, 0.0, 0.5);
  c.perturbation_mode = o.get_choice(env, "perturbation_mode", "episode", {"episode", "step"}) == "step"
                            ? PerturbationMode::kStep
                            : PerturbationMode::kEpisode;
  c.weather_noise = o.get_double(env, "weather_noise", 0.0, 0.0, 1.0);
  c.weather_seed = o.get_int(env, "weather_seed", -1, -1);
  c.season_days = static_cast<int>(o.get_int(env, "season_days", 40, 1, 365));
  c.start_day_of_year = static_cast<int>(o.get_int(env, "start_day_of_year", 40, 1, 365));
  const int64_t season_steps = int64_t{Greenhouse::kStepsPerDay} * c.season_days;
  c.max_episode_steps = o.get_int(env, "max_episode_steps", season_steps, 1, season_steps);
  return c;
}

namespace {

EnvSpec greenhouse_spec(const GreenhouseConfig& c) {
  using G = Greenhouse;
  using B = StateBox;
  using W = WeatherRange;
  // Largest ppm (warmest air) and RH (coldest air) the state box allows, with a little margin
  // for float rounding.
  const double ppm_max = units::co2_ppm(B::kTemperatureMax, B::kCo2Max) * 1.001;
  const double rh_max = units::rh_percent(B::kTemperatureMin, B::kHumidityMax) * 1.001;
  EnvSpec s;
  s.name = G::kName;
  s.observation_space = Space::box(
      {G::kObsSize},
      {B::kDryWeightMin * 1e3, 0.0, B::kTemperatureMin, 0.0, G::kControlMin.co2, G::kControlMin.vent,
       G::kControlMin.heat, 0.0, W::kRadiationMin, W::kCo2Min, W::kTemperatureMin, W::kRhMin},
      {B::kDryWeightMax * 1e3, ppm_max, B::kTemperatureMax, rh_max, G::kControlMax.co2, G::kControlMax.vent,
       G::kControlMax.heat, 1.0, W::kRadiationMax, W::kCo2Max, W::kTemperatureMax, W::kRhMax});
  s.action_space = Space::box({3}, -1.0, 1.0);
  s.max_episode_steps = c.max_episode_steps;
  s.reference =
      "Van Henten (1994, 2003) lettuce greenhouse model; RL benchmark preset of lettuce-greenhouse-gym "
      "(40 days from 9 February, 30-minute steps)";
  return s;
}

}  // namespace

void Accounting::add(const Accounting& o) {
  revenue += o.revenue;
  energy_cost += o.energy_cost;
  co2_cost += o.co2_cost;
  penalty_co2 += o.penalty_co2;
  penalty_temperature += o.penalty_temperature;
  penalty_humidity += o.penalty_humidity;
}

// ---------------------------------------------------------------------------------------------
// Greenhouse

Greenhouse::Greenhouse(const EnvOptions& options) : Greenhouse(GreenhouseConfig::from_options(options)) {}

Greenhouse::Greenhouse(GreenhouseConfig config)
    : Env(greenhouse_spec(config)),
      config_(std::move(config)),
      season_steps_(int64_t{kStepsPerDay} * config_.season_days),
      weather_(static_cast<size_t>(season_steps_) + 1),
      model_weather_(static_cast<size_t>(season_steps_) + 1) {
  nominal_.c_leak = config_.c_leak;
  params_ = nominal_;
  derived_ = Derived::of(params_);
  const size_t n = weather_.size();
  if (config_.weather_from_file) {
    WeatherFile file = WeatherFile::load(config_.weather_file, kName);
    const double t0 = config_.weather_offset_s;
    const double t1 = t0 + static_cast<double>(season_steps_) * kDt;
    if (t0 < file.first_time() || t1 > file.last_time()) {
      std::ostringstream os;
      os << kName << ": weather file '" << file.path() << "' covers t = " << file.first_time() << " .. "
         << file.last_time() << " s, but the season needs t = " << t0 << " .. " << t1 << " s (season_days="
         << config_.season_days << ", weather_offset_s=" << t0 << "); use a longer file or fewer season_days";
      throw EnvError(os.str());
    }
    file_weather_.resize(n);
    file.sample(t0, kDt, n, file_weather_.data());
    apply_scenario(config_.scenario, config_.scenario_start_day, config_.scenario_days, kDt, file_weather_.data(), n);
  } else {
    generator_ = std::make_unique<WeatherGenerator>(config_.start_day_of_year, kDt, n);
  }
}

void Greenhouse::draw_params() {
  const double h = config_.perturbation;
  for (auto field : Params::fields()) params_.*field = nominal_.*field * (1.0 + rng_.uniform(-h, h));
  derived_ = Derived::of(params_);
}

void Greenhouse::convert_weather() {
  for (size_t i = 0; i < weather_.size(); ++i) model_weather_[i] = to_model_units(weather_[i]);
}

void Greenhouse::do_reset(std::optional<uint64_t> seed, void* obs) {
  if (seed) rng_.seed(*seed);
  // Weather and noise get their own streams, so their number of draws never shifts the others.
  const uint64_t weather_seed =
      config_.weather_seed >= 0 ? static_cast<uint64_t>(config_.weather_seed) : rng_.next();
  const uint64_t noise_seed = rng_.next();
  const size_t n = weather_.size();
  const bool same_weather = weather_cached_ && (!generator_ || cached_weather_seed_ == weather_seed);
  if (!same_weather) {
    if (generator_) {
      generator_->generate(weather_seed, weather_.data());
      apply_scenario(config_.scenario, config_.scenario_start_day, config_.scenario_days, kDt, weather_.data(), n);
    } else {
      std::copy(file_weather_.begin(), file_weather_.end(), weather_.begin());
    }
    if (config_.weather_noise > 0.0) {
      Rng noise(noise_seed);
      add_weather_noise(noise, config_.weather_noise, weather_.data(), n);
    }
    convert_weather();
    weather_cached_ = config_.weather_noise == 0.0;
    cached_weather_seed_ = weather_seed;
  }

  if (config_.perturbation > 0.0) {
    draw_params();
  } else {
    params_ = nominal_;
    derived_ = Derived::of(params_);
  }
  x_ = kInitialState;
  u_ = kInitialControls;
  k_ = 0;
  last_ = {};
  total_ = {};
  write_obs(static_cast<float*>(obs), units::co2_ppm(x_.temperature, x_.co2),
            units::rh_percent(x_.temperature, x_.humidity));
}

Accounting Greenhouse::account(const State& before, const State& after, const Controls& u) {
  return account(before, after, u, units::co2_ppm(after.temperature, after.co2),
                 units::rh_percent(after.temperature, after.humidity));
}

Accounting Greenhouse::account(const State& before, const State& after, const Controls& u, double ppm, double rh) {
  Accounting a;
  a.revenue = kLettucePrice * (after.dry_weight - before.dry_weight);
  a.energy_cost = kEnergyPrice * u.heat * kDt / 3.6e6;
  a.co2_cost = kCo2Price * u.co2 * 1e-6 * kDt;
  a.penalty_co2 = kCo2Penalty * (ppm < kCo2Low ? kCo2Low - ppm : ppm > kCo2High ? ppm - kCo2High : 0.0);
  a.penalty_temperature = after.temperature < kTempLow    ? kTempLowPenalty * (kTempLow - after.temperature)
                          : after.temperature > kTempHigh ? kTempHighPenalty * (after.temperature - kTempHigh)
                                                          : 0.0;
  a.penalty_humidity = rh > kRhHigh ? kRhPenalty * (rh - kRhHigh) : 0.0;
  return a;
}

StepResult Greenhouse::do_step(const void* action, void* obs) {
  float a[3];
  std::memcpy(a, action, sizeof(a));
  double act[3];
  for (int i = 0; i < 3; ++i) act[i] = std::clamp(static_cast<double>(a[i]), -1.0, 1.0);
  if (config_.action_mode == GreenhouseConfig::ActionMode::kDelta) {
    u_.co2 = std::clamp(u_.co2 + act[0] * kRateLimit.co2, kControlMin.co2, kControlMax.co2);
    u_.vent = std::clamp(u_.vent + act[1] * kRateLimit.vent, kControlMin.vent, kControlMax.vent);
    u_.heat = std::clamp(u_.heat + act[2] * kRateLimit.heat, kControlMin.heat, kControlMax.heat);
  } else {
    u_.co2 = kControlMin.co2 + 0.5 * (act[0] + 1.0) * (kControlMax.co2 - kControlMin.co2);
    u_.vent = kControlMin.vent + 0.5 * (act[1] + 1.0) * (kControlMax.vent - kControlMin.vent);
    u_.heat = kControlMin.heat + 0.5 * (act[2] + 1.0) * (kControlMax.heat - kControlMin.heat);
  }
  if (config_.perturbation > 0.0 && config_.perturbation_mode == GreenhouseConfig::PerturbationMode::kStep) {
    draw_params();
  }

  const State before = x_;
  const Weather& w0 = model_weather_[static_cast<size_t>(k_)];
  const State next =
      config_.interpolation == GreenhouseConfig::Interpolation::kHold
          ? integrate_hold(params_, derived_, u_, w0, x_, kDt, config_.rk4_substeps)
          : integrate_linear(params_, derived_, u_, w0, model_weather_[static_cast<size_t>(k_) + 1], x_, kDt,
                             config_.rk4_substeps);
  x_ = clamp_to_box(next);
  ++k_;

  const double ppm = units::co2_ppm(x_.temperature, x_.co2);
  const double rh = units::rh_percent(x_.temperature, x_.humidity);
  last_ = account(before, x_, u_, ppm, rh);
  total_.add(last_);
  write_obs(static_cast<float*>(obs), ppm, rh);
  return {static_cast<float>(last_.reward()), k_ >= season_steps_, false};
}

void Greenhouse::write_obs(float* o, double ppm, double rh) const {
  o[0] = static_cast<float>(x_.dry_weight * 1e3);
  o[1] = static_cast<float>(ppm);
  o[2] = static_cast<float>(x_.temperature);
  o[3] = static_cast<float>(rh);
  o[4] = static_cast<float>(u_.co2);
  o[5] = static_cast<float>(u_.vent);
  o[6] = static_cast<float>(u_.heat);
  o[7] = static_cast<float>(static_cast<double>(k_) / static_cast<double>(season_steps_));
  const WeatherSample& w = weather_[static_cast<size_t>(k_)];
  o[8] = static_cast<float>(w.radiation);
  o[9] = static_cast<float>(w.co2_ppm);
  o[10] = static_cast<float>(w.temperature);
  o[11] = static_cast<float>(w.rh);
}

void Greenhouse::info(std::vector<std::pair<std::string, double>>* out) const {
  auto add = [out](const std::string& prefix, const Accounting& a) {
    out->emplace_back(prefix + "revenue_eur", a.revenue);
    out->emplace_back(prefix + "energy_cost_eur", a.energy_cost);
    out->emplace_back(prefix + "co2_cost_eur", a.co2_cost);
    out->emplace_back(prefix + "penalty_co2", a.penalty_co2);
    out->emplace_back(prefix + "penalty_temperature", a.penalty_temperature);
    out->emplace_back(prefix + "penalty_humidity", a.penalty_humidity);
    out->emplace_back(prefix + "penalty_total", a.penalty());
    out->emplace_back(prefix + "profit_eur", a.profit());
  };
  add("", last_);
  add("episode_", total_);
  out->emplace_back("dry_weight_kg_m2", x_.dry_weight);
  out->emplace_back("co2_ppm", units::co2_ppm(x_.temperature, x_.co2));
  out->emplace_back("temperature_c", x_.temperature);
  out->emplace_back("rh_percent", units::rh_percent(x_.temperature, x_.humidity));
}

// ---------------------------------------------------------------------------------------------
// Snapshot: state, controls, step, coefficients in force, accounting, RNG and the episode's
// weather (the weather in model units is recomputed from it).

void Greenhouse::do_snapshot(std::vector<uint8_t>* out) const {
  put_pod(out, x_);
  put_pod(out, u_);
  put_pod(out, k_);
  put_pod(out, params_);
  put_pod(out, last_);
  put_pod(out, total_);
  put_pod(out, rng_.state());
  put_pod(out, static_cast<uint64_t>(weather_.size()));
  const auto* p = reinterpret_cast<const uint8_t*>(weather_.data());
  out->insert(out->end(), p, p + weather_.size() * sizeof(WeatherSample));
}

bool Greenhouse::do_restore(const uint8_t*& in, const uint8_t* end) {
  State x;
  Controls u;
  int64_t k;
  Params params;
  Accounting last, total;
  Rng::State rs;
  uint64_t n;
  if (!get_pod(in, end, &x) || !get_pod(in, end, &u) || !get_pod(in, end, &k) || !get_pod(in, end, &params) ||
      !get_pod(in, end, &last) || !get_pod(in, end, &total) || !get_pod(in, end, &rs) || !get_pod(in, end, &n)) {
    return false;
  }
  const size_t bytes = weather_.size() * sizeof(WeatherSample);
  if (n != weather_.size() || static_cast<size_t>(end - in) < bytes || k < 0 || k > season_steps_) return false;
  std::memcpy(weather_.data(), in, bytes);
  in += bytes;
  convert_weather();
  weather_cached_ = false;
  x_ = x;
  u_ = u;
  k_ = k;
  params_ = params;
  derived_ = Derived::of(params_);
  last_ = last;
  total_ = total;
  rng_.set_state(rs);
  return true;
}

}  // namespace orchard::envs::greenhouse
