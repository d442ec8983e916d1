#include "greenhouse/weather.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "orchard/core/error.h"

namespace orchard::envs::greenhouse {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kDay = 86400.0;

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

bool parse_number(const std::string& s, double* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  *v = std::strtod(s.c_str(), &end);
  return *end == '\0' && errno != ERANGE && std::isfinite(*v);
}

std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

double lerp(double a, double b, double f) { return a + f * (b - a); }

}  // namespace

WeatherSample clamp_to_range(const WeatherSample& s) {
  using R = WeatherRange;
  return {std::clamp(s.radiation, R::kRadiationMin, R::kRadiationMax), std::clamp(s.co2_ppm, R::kCo2Min, R::kCo2Max),
          std::clamp(s.temperature, R::kTemperatureMin, R::kTemperatureMax), std::clamp(s.rh, R::kRhMin, R::kRhMax)};
}

Weather to_model_units(const WeatherSample& s) {
  return {s.radiation, units::co2_density(s.temperature, s.co2_ppm), s.temperature,
          units::vapour_density(s.temperature, s.rh)};
}

// ---------------------------------------------------------------------------------------------
// WeatherFile

const char* const WeatherFile::kColumnNames[kColumns] = {"time_s",  "radiation_W_m2", "temperature_C",
                                                         "rh_percent", "wind_m_s",    "co2_ppm"};

WeatherFile WeatherFile::load(const std::string& path, const std::string& env) {
  const std::string where = env + ": weather file '" + path + "'";
  std::ifstream in(path);
  if (!in) throw EnvError(where + ": cannot open: " + std::strerror(errno));

  using R = WeatherRange;
  // Accepted range per column (wind only needs to be a non-negative number).
  const double lo[kColumns] = {-1e300, R::kRadiationMin, R::kTemperatureMin, R::kRhMin, 0.0, R::kCo2Min};
  const double hi[kColumns] = {1e300, R::kRadiationMax, R::kTemperatureMax, R::kRhMax, 1e300, R::kCo2Max};

  WeatherFile f;
  f.path_ = path;
  std::string line;
  size_t line_no = 0;
  bool seen_content = false;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;

    std::vector<std::string> fields;
    std::stringstream ss(t);
    std::string field;
    while (std::getline(ss, field, ',')) fields.push_back(trim(field));
    if (t.back() == ',') fields.emplace_back();

    double first;
    if (!seen_content && !parse_number(fields[0], &first)) {
      seen_content = true;  // a header line
      continue;
    }
    seen_content = true;
    const std::string at = where + " line " + std::to_string(line_no);
    if (fields.size() != kColumns) {
      std::string cols;
      for (int c = 0; c < kColumns; ++c) cols += std::string(c ? ", " : "") + kColumnNames[c];
      throw EnvError(at + ": expected " + std::to_string(kColumns) + " columns (" + cols + "), found " +
                     std::to_string(fields.size()));
    }
    double v[kColumns];
    for (int c = 0; c < kColumns; ++c) {
      const std::string col = ", column " + std::to_string(c + 1) + " (" + kColumnNames[c] + ")";
      if (!parse_number(fields[c], &v[c])) throw EnvError(at + col + ": '" + fields[c] + "' is not a number");
      if (v[c] < lo[c] || v[c] > hi[c]) {
        throw EnvError(at + col + ": " + fields[c] + " is outside [" + num(lo[c]) + ", " + num(hi[c]) + "]");
      }
    }
    if (!f.times_.empty() && !(v[0] > f.times_.back())) {
      throw EnvError(at + ", column 1 (time_s): time " + fields[0] + " is not after the previous row's " +
                     num(f.times_.back()) + " (times must increase strictly)");
    }
    f.times_.push_back(v[0]);
    f.values_.push_back({v[1], v[5], v[2], v[3]});
  }
  if (f.times_.size() < 2) {
    throw EnvError(where + ": needs at least 2 data rows, found " + std::to_string(f.times_.size()));
  }
  return f;
}

void WeatherFile::sample(double t0, double dt, size_t n, WeatherSample* out) const {
  size_t i = 0;  // times_[i] <= t < times_[i + 1], moved forward as t grows
  for (size_t j = 0; j < n; ++j) {
    const double t = t0 + static_cast<double>(j) * dt;
    while (i + 2 < times_.size() && times_[i + 1] <= t) ++i;
    const double f = std::clamp((t - times_[i]) / (times_[i + 1] - times_[i]), 0.0, 1.0);
    const WeatherSample& a = values_[i];
    const WeatherSample& b = values_[i + 1];
    out[j] = {lerp(a.radiation, b.radiation, f), lerp(a.co2_ppm, b.co2_ppm, f), lerp(a.temperature, b.temperature, f),
              lerp(a.rh, b.rh, f)};
  }
}

// ---------------------------------------------------------------------------------------------
// WeatherGenerator

WeatherGenerator::WeatherGenerator(int start_day_of_year, double dt, size_t n)
    : dt_(dt), n_(n), clear_sky_(n), normal_t_(n), diurnal_(n) {
  const double lat = kLatitudeDeg * kPi / 180.0;
  for (size_t j = 0; j < n; ++j) {
    const double t = static_cast<double>(j) * dt;
    const double doy = start_day_of_year + t / kDay;
    const double hour = std::fmod(t, kDay) / 3600.0;
    // Solar declination (Cooper 1969) and elevation; solar time.
    const double decl = 23.44 * kPi / 180.0 * std::sin(2.0 * kPi * (284.0 + doy) / 365.0);
    const double omega = (hour - 12.0) * kPi / 12.0;
    const double sin_e = std::sin(lat) * std::sin(decl) + std::cos(lat) * std::cos(decl) * std::cos(omega);
    // Haurwitz (1945) clear-sky global horizontal irradiance.
    clear_sky_[j] = sin_e > 0.0 ? 1098.0 * sin_e * std::exp(-0.057 / sin_e) : 0.0;
    // Dutch daily mean temperature normals: about 3.4 degC late January, 17.2 degC late July.
    normal_t_[j] = 10.3 - 6.9 * std::cos(2.0 * kPi * (doy - 22.0) / 365.0);
    diurnal_[j] = std::cos(2.0 * kPi * (hour - 14.5) / 24.0);
  }
}

void WeatherGenerator::generate(uint64_t seed, WeatherSample* out) const {
  Rng r(seed);
  // Day-to-day processes, one value per day centred at noon; index 0 is the day before the first.
  const size_t days = static_cast<size_t>(std::ceil(static_cast<double>(n_) * dt_ / kDay)) + 2;
  std::vector<double> clear(days), anomaly(days);
  double z = r.normal();
  double a = 3.0 * r.normal();
  for (size_t d = 0; d < days; ++d) {
    clear[d] = std::clamp(0.5 + 0.25 * z, 0.08, 0.95);  // cloud transmittance of the day
    anomaly[d] = a;                                       // temperature anomaly, degC
    z = 0.6 * z + 0.8 * r.normal();
    a = 0.7 * a + std::sqrt(1.0 - 0.49) * 3.0 * r.normal();
  }
  // Per-sample AR(1) noises with unit variance. Their innovations are uniform with unit variance
  // (a Gaussian draw per sample would dominate the cost of a reset); the processes still come
  // out close to Gaussian, summing many innovations.
  double nc = r.normal(), nt = r.normal(), nh = r.normal(), nco2 = r.normal();
  constexpr double kSqrt3 = 1.7320508075688772;
  constexpr double kRhoCloud = 0.8, kInnovCloud = 0.6 * kSqrt3;  // sqrt(1 - rho^2) * sqrt(3)
  constexpr double kRhoSlow = 0.9, kInnovSlow = 0.4358898943540674 * kSqrt3;
  auto innovation = [&r] { return r.uniform(-1.0, 1.0); };
  const double inv_day = 1.0 / kDay;
  for (size_t j = 0; j < n_; ++j) {
    const double t = static_cast<double>(j) * dt_;
    const double u = (t - 0.5 * kDay) * inv_day + 1.0;  // >= 0.5
    const size_t i = static_cast<size_t>(u);
    const double f = u - static_cast<double>(i);
    const double k = lerp(clear[i], clear[i + 1], f);
    const double anom = lerp(anomaly[i], anomaly[i + 1], f);
    const double d01 = 0.5 * (diurnal_[j] + 1.0);  // 1 mid-afternoon, 0 at night
    WeatherSample s;
    s.radiation = clear_sky_[j] * std::clamp(k + 0.1 * nc, 0.03, 1.0);
    s.temperature = normal_t_[j] + anom + (1.0 + 3.0 * k) * diurnal_[j] + 0.4 * nt;
    s.rh = 84.0 + 6.0 * (1.0 - k) - 18.0 * k * d01 + 3.0 * nh;
    s.co2_ppm = 415.0 + 12.0 * (1.0 - d01) + 4.0 * nco2;
    out[j] = clamp_to_range(s);
    nc = kRhoCloud * nc + kInnovCloud * innovation();
    nt = kRhoSlow * nt + kInnovSlow * innovation();
    nh = kRhoSlow * nh + kInnovSlow * innovation();
    nco2 = kRhoSlow * nco2 + kInnovSlow * innovation();
  }
}

// ---------------------------------------------------------------------------------------------
// Scenarios and noise

void apply_scenario(Scenario scenario, double start_day, double days, double dt, WeatherSample* s, size_t n) {
  if (scenario == Scenario::kNormal || days <= 0.0) return;
  const double begin = start_day * kDay, end = (start_day + days) * kDay;
  const double ramp = std::min(0.5 * kDay, 0.5 * (end - begin));
  for (size_t j = 0; j < n; ++j) {
    const double t = static_cast<double>(j) * dt;
    if (t < begin || t > end) continue;
    const double w = std::min({1.0, (t - begin) / ramp, (end - t) / ramp});  // trapezoid weight
    WeatherSample& x = s[j];
    switch (scenario) {
      case Scenario::kColdSnap:
        x.temperature -= 10.0 * w;
        break;
      case Scenario::kHeatWave:
        x.temperature += 12.0 * w;
        x.rh -= 20.0 * w;
        break;
      case Scenario::kOvercast:
        x.radiation *= 1.0 - 0.8 * w;
        x.rh += 8.0 * w;
        break;
      case Scenario::kNormal:
        break;
    }
    x = clamp_to_range(x);
  }
}

void add_weather_noise(Rng& rng, double level, WeatherSample* s, size_t n) {
  if (level <= 0.0) return;
  for (size_t j = 0; j < n; ++j) {
    WeatherSample& x = s[j];
    x.radiation *= 1.0 + level * rng.normal();
    x.co2_ppm *= 1.0 + level * rng.normal();
    x.temperature += 10.0 * level * rng.normal();
    x.rh *= 1.0 + level * rng.normal();
    x = clamp_to_range(x);
  }
}

}  // namespace orchard::envs::greenhouse
