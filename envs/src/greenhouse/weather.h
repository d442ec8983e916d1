// Outdoor weather for the greenhouse: a measured trace from a CSV file, or a seeded generator of
// Dutch winter/spring weather, plus extreme-weather scenarios and noise. Everything here runs at
// construction or reset, never per step: the environment samples the weather once per control
// step into a flat array.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "greenhouse/van_henten.h"
#include "orchard/envs/rng.h"

namespace orchard::envs::greenhouse {

// One weather sample in the units of the CSV and of the observation.
struct WeatherSample {
  double radiation;    // global radiation [W m-2]
  double co2_ppm;      // outdoor CO2 [ppm]
  double temperature;  // outdoor temperature [degC]
  double rh;           // outdoor relative humidity [%]
};

// The valid range of each weather variable; samples are clamped to it after scenarios and noise,
// and the observation space uses it as bounds. CSV values outside it are errors.
struct WeatherRange {
  static constexpr double kRadiationMin = 0.0, kRadiationMax = 2000.0;
  static constexpr double kCo2Min = 100.0, kCo2Max = 5000.0;
  static constexpr double kTemperatureMin = -50.0, kTemperatureMax = 60.0;
  static constexpr double kRhMin = 0.0, kRhMax = 100.0;
};

WeatherSample clamp_to_range(const WeatherSample& s);
// Model units (CO2 and vapour densities at the outdoor temperature).
Weather to_model_units(const WeatherSample& s);

// A measured outdoor trace in the layout of the RL benchmark's 5-minute data: six comma-separated
// columns
//   time_s, radiation_W_m2, temperature_C, rh_percent, wind_m_s, co2_ppm
// with strictly increasing times (seconds from the start of the trace; any spacing). An optional
// header line (first field not a number) and lines starting with '#' are skipped. Wind is read and
// checked but not used by the model.
class WeatherFile {
 public:
  static constexpr int kColumns = 6;
  static const char* const kColumnNames[kColumns];

  // Reads and validates `path`. Throws EnvError("<env>: weather file '<path>' line L, column C
  // (<name>): <problem>") on the first malformed value, wrong column count, out-of-range value
  // or non-increasing time; or naming the file when it cannot be opened or has < 2 rows.
  static WeatherFile load(const std::string& path, const std::string& env);

  const std::string& path() const { return path_; }
  double first_time() const { return times_.front(); }
  double last_time() const { return times_.back(); }
  size_t rows() const { return times_.size(); }

  // Samples at times t0, t0 + dt, ..., t0 + (n - 1) dt (ascending), linearly interpolated
  // between rows. The caller checks that the times lie in [first_time(), last_time()].
  void sample(double t0, double dt, size_t n, WeatherSample* out) const;

 private:
  std::string path_;
  std::vector<double> times_;
  std::vector<WeatherSample> values_;
};

// A seeded generator of outdoor weather at latitude 52 N (the Westland greenhouse area): clear-sky
// radiation from solar geometry (Haurwitz model) scaled by a day-to-day cloudiness process and
// intra-day cloud noise; temperature as a seasonal normal plus a day-to-day anomaly (AR(1)) plus a
// diurnal cycle whose amplitude grows with clear skies, plus noise; relative humidity high (about
// 85-90 % in winter) and lowest in sunny afternoons; CO2 around 415 ppm, higher at night.
// The deterministic part (solar geometry, seasonal normals) is computed once at construction.
class WeatherGenerator {
 public:
  // Samples at t = 0, dt, ..., (n - 1) dt seconds after 00:00 (solar time) of `start_day_of_year`
  // (1 = 1 January).
  WeatherGenerator(int start_day_of_year, double dt, size_t n);
  // Fills `out` (n samples). Same seed, same weather.
  void generate(uint64_t seed, WeatherSample* out) const;

  static constexpr double kLatitudeDeg = 52.0;

 private:
  double dt_;
  size_t n_;
  std::vector<double> clear_sky_;   // W m-2
  std::vector<double> normal_t_;    // seasonal normal temperature, degC
  std::vector<double> diurnal_;     // cos(2 pi (hour - 14.5) / 24): +1 mid-afternoon, -1 at night
};

enum class Scenario { kNormal, kColdSnap, kHeatWave, kOvercast };

// Applies an extreme-weather episode to samples taken every `dt` seconds from the season start,
// over days [start_day, start_day + days) with half-day linear ramps inside each end:
//   cold_snap: temperature - 10 degC
//   heat_wave: temperature + 12 degC, relative humidity - 20 points
//   overcast:  radiation x 0.2, relative humidity + 8 points
// and clamps the changed samples to WeatherRange.
void apply_scenario(Scenario scenario, double start_day, double days, double dt, WeatherSample* s, size_t n);

// Independent Gaussian noise per sample, relative level `level`: radiation, CO2 and relative
// humidity are multiplied by (1 + level N(0,1)), temperature gets + 10 degC * level N(0,1).
void add_weather_noise(Rng& rng, double level, WeatherSample* s, size_t n);

}  // namespace orchard::envs::greenhouse
