#include "greenhouse/greenhouse.h"
#include "orchard/envs/registry.h"

namespace orchard::envs {

void register_greenhouse(EnvRegistry& r) {
  add_builtin<greenhouse::Greenhouse>(
      r, "Greenhouse-v0", "greenhouse",
      "Lettuce greenhouse climate control (Van Henten model): heat, ventilate and dose CO2 for profit",
      {{"action_mode", "delta", "delta: the action moves the controls by up to the rate limits; absolute: sets them"},
       {"weather", "generator", "generator (built-in, seeded) or csv (needs weather_file); csv if weather_file is set"},
       {"weather_file", "",
        "outdoor weather CSV: time_s, radiation_W_m2, temperature_C, rh_percent, wind_m_s, co2_ppm"},
       {"weather_offset_s", "0", "time in the weather file at which the season starts [s]"},
       {"weather_seed", "-1", ">= 0: the same generated weather every episode; -1: new weather per episode"},
       {"weather_noise", "0", "relative weather noise level in [0, 1] (10 degC per unit for temperature)"},
       {"weather_interpolation", "hold", "hold: weather constant over a step; linear: interpolated between steps"},
       {"scenario", "normal", "normal | cold_snap (-10 degC) | heat_wave (+12 degC, -20 % RH) | overcast (x0.2 light)"},
       {"scenario_start_day", "0", "day of the season the scenario starts"},
       {"scenario_days", "7", "scenario length in days (half-day ramps inside each end)"},
       {"c_leak", "0.75e-5", "leakage [m/s]; the RL benchmark's value (van Henten's text has 0.75e-4)"},
       {"rk4_substeps", "6", "RK4 steps per 30-minute control interval (6: stable for every admissible perturbation)"},
       {"perturbation", "0", "h in [0, 0.5]: every model coefficient x (1 + U(-h, h))"},
       {"perturbation_mode", "episode", "episode: drawn at reset; step: drawn every step"},
       {"season_days", "40", "season length in days (48 steps per day)"},
       {"start_day_of_year", "40", "first day of the season for the weather generator (40 = 9 February)"},
       {"max_episode_steps", "1920", "time limit (truncation); default and maximum 48 * season_days"}});
}

}  // namespace orchard::envs
