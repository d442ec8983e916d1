// Greenhouse-v0: lettuce greenhouse climate control after the Van Henten model.
//
// References: E.J. van Henten (1994), PhD thesis, Wageningen University; E.J. van Henten (2003),
// Biosystems Engineering 85(3):355-364 (model, coefficients); the RL benchmark built on it
// (public `lettuce-greenhouse-gym`: 40-day season from 9 February, 30-minute control step,
// prices and penalties); Zhang et al. (ACML 2021, arXiv 2108.11645) for the robustness
// evaluation (coefficient perturbation, extreme weather). Full description, options and
// defaults: docs/envs/greenhouse.md.
//
// Per step (1800 s): the action in [-1, 1]^3 moves the controls (delta mode: by at most the
// rate limits, inside the bounds; absolute mode: sets them), the model is integrated with
// fixed-step RK4 under the outdoor weather of the interval, the state is clamped to its
// physical box, and the reward is revenue from dry-weight growth minus heating and CO2 costs
// minus climate penalties. The episode terminates at the end of the season.
//
// Observation (12 float32): dry weight [g m-2], CO2 [ppm], temperature [degC], RH [%], the
// controls just applied U_c [mg m-2 s-1], U_v [mm s-1], U_q [W m-2], season progress [0..1],
// outdoor weather at the current time: radiation [W m-2], CO2 [ppm], temperature [degC], RH [%].
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "greenhouse/van_henten.h"
#include "greenhouse/weather.h"
#include "orchard/envs/env.h"
#include "orchard/envs/rng.h"

namespace orchard::envs::greenhouse {

// The env's options, parsed and validated (defaults are the RL benchmark preset).
struct GreenhouseConfig {
  enum class ActionMode { kDelta, kAbsolute };
  enum class Interpolation { kHold, kLinear };
  enum class PerturbationMode { kEpisode, kStep };

  ActionMode action_mode = ActionMode::kDelta;
  bool weather_from_file = false;         // weather=csv
  std::string weather_file;               // the CSV (WeatherFile layout)
  double weather_offset_s = 0.0;          // time in the file at which the season starts
  Scenario scenario = Scenario::kNormal;  // applied to the weather, generated or from the file
  double scenario_start_day = 0.0;        // day of the season the scenario starts
  double scenario_days = 7.0;             // its length in days
  double c_leak = 0.75e-5;                // m s-1; van Henten's text has 0.75e-4
  int rk4_substeps = 6;                   // RK4 steps per 1800 s control interval (300 s each)
  Interpolation interpolation = Interpolation::kHold;
  double perturbation = 0.0;  // h in [0, 0.5]: every coefficient x (1 + U(-h, h))
  PerturbationMode perturbation_mode = PerturbationMode::kEpisode;
  double weather_noise = 0.0;    // relative level (see add_weather_noise)
  int64_t weather_seed = -1;     // >= 0: the same generated weather every episode
  int season_days = 40;          // season length; 48 steps per day
  int start_day_of_year = 40;    // 9 February
  int64_t max_episode_steps = 0; // 0: the season's length (48 * season_days)

  // Reads and range-checks every option; throws EnvError naming the option.
  static GreenhouseConfig from_options(const EnvOptions& options);
};

// Money and penalties of one step (or summed over the episode).
struct Accounting {
  double revenue = 0;              // EUR m-2, 22.285125 EUR/kg * dX_d
  double energy_cost = 0;          // EUR m-2, 0.1281 EUR/kWh * U_q * dt / 3.6e6
  double co2_cost = 0;             // EUR m-2, 0.1906 EUR/kg * U_c * 1e-6 * dt
  double penalty_co2 = 0;          // 5e-5 per ppm outside [500, 1600]
  double penalty_temperature = 0;  // 3e-3 per degC below 10, 5e-3 per degC above 20
  double penalty_humidity = 0;     // 7e-4 per % RH above 80
  double penalty() const { return penalty_co2 + penalty_temperature + penalty_humidity; }
  double profit() const { return revenue - energy_cost - co2_cost; }
  double reward() const { return profit() - penalty(); }
  void add(const Accounting& o);
};

class Greenhouse final : public Env {
 public:
  static constexpr const char* kName = "Greenhouse-v0";
  static constexpr double kDt = 1800.0;  // control interval [s]
  static constexpr int kStepsPerDay = 48;
  static constexpr int kObsSize = 12;

  // Control bounds and per-step rate limits (U_c, U_v, U_q).
  static constexpr Controls kControlMin{0.0, 0.0, 0.0};
  static constexpr Controls kControlMax{1.2, 7.5, 150.0};
  static constexpr Controls kRateLimit{0.12, 0.75, 15.0};
  // Initial state and controls of the benchmark.
  static constexpr State kInitialState{0.0035, 0.001, 15.0, 0.008};
  static constexpr Controls kInitialControls{0.0, 0.0, 50.0};

  // Prices and penalty weights.
  static constexpr double kLettucePrice = 22.285125;  // EUR per kg dry weight
  static constexpr double kEnergyPrice = 0.1281;      // EUR per kWh
  static constexpr double kCo2Price = 0.1906;         // EUR per kg
  static constexpr double kCo2Low = 500.0, kCo2High = 1600.0, kCo2Penalty = 5e-5;  // ppm, per ppm
  static constexpr double kTempLow = 10.0, kTempLowPenalty = 3e-3;                // degC, per degC
  static constexpr double kTempHigh = 20.0, kTempHighPenalty = 5e-3;
  static constexpr double kRhHigh = 80.0, kRhPenalty = 7e-4;  // %, per %

  explicit Greenhouse(const EnvOptions& options);
  explicit Greenhouse(GreenhouseConfig config);

  const GreenhouseConfig& config() const { return config_; }
  int64_t season_steps() const { return season_steps_; }
  // Steps taken in the current episode (the index of the current weather sample).
  int64_t step_index() const { return k_; }

  const State& state() const { return x_; }
  void set_state(const State& x) { x_ = x; }
  const Controls& controls() const { return u_; }
  void set_controls(const Controls& u) { u_ = u; }
  // The coefficients in force (perturbed, when a perturbation is set) and the nominal ones.
  const Params& params() const { return params_; }
  const Params& nominal_params() const { return nominal_; }
  // The episode's outdoor weather, one sample per step boundary (season_steps() + 1 samples).
  const std::vector<WeatherSample>& weather() const { return weather_; }
  // The last step's money and penalties, and their sums over the episode so far.
  const Accounting& last_step() const { return last_; }
  const Accounting& episode_totals() const { return total_; }

  // The reward of a transition: revenue from dry-weight growth minus the costs of `u` over one
  // interval minus the penalties of the climate `after` (ppm and RH at its temperature).
  static Accounting account(const State& before, const State& after, const Controls& u);
  // The same with the CO2 [ppm] and RH [%] of `after` already computed.
  static Accounting account(const State& before, const State& after, const Controls& u, double ppm, double rh);

  bool supports_snapshot() const override { return true; }
  // revenue_eur, energy_cost_eur, co2_cost_eur, penalty_co2, penalty_temperature, penalty_humidity,
  // penalty_total, profit_eur (last step), the same summed as episode_*, and the climate:
  // dry_weight_kg_m2, co2_ppm, temperature_c, rh_percent.
  void info(std::vector<std::pair<std::string, double>>* out) const override;

 protected:
  void do_reset(std::optional<uint64_t> seed, void* obs) override;
  StepResult do_step(const void* action, void* obs) override;
  void do_snapshot(std::vector<uint8_t>* out) const override;
  bool do_restore(const uint8_t*& in, const uint8_t* end) override;

 private:
  void draw_params();
  void convert_weather();
  // ppm and rh: the CO2 and RH of the current state.
  void write_obs(float* o, double ppm, double rh) const;

  GreenhouseConfig config_;
  int64_t season_steps_;
  Params nominal_;
  std::unique_ptr<WeatherGenerator> generator_;  // weather=generator
  std::vector<WeatherSample> file_weather_;      // weather=csv: sampled once, scenario applied

  // Episode state. Invariant: weather_ and model_weather_ hold season_steps_ + 1 samples and
  // model_weather_[i] == to_model_units(weather_[i]); k_ <= season_steps_.
  std::vector<WeatherSample> weather_;
  std::vector<Weather> model_weather_;
  // What weather_ holds, so that a reset which would recompute the same weather (a fixed
  // weather_seed or a file, without noise) skips the work: valid only when no noise is set.
  bool weather_cached_ = false;
  uint64_t cached_weather_seed_ = 0;
  Params params_;
  Derived derived_{};
  State x_ = kInitialState;
  Controls u_ = kInitialControls;
  int64_t k_ = 0;
  Accounting last_, total_;
  Rng rng_;
};

}  // namespace orchard::envs::greenhouse
