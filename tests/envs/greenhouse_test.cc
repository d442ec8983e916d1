#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "greenhouse/greenhouse.h"
#include "orchard/envs/check.h"
#include "orchard/envs/registry.h"

using namespace orchard::envs;
using namespace orchard::envs::greenhouse;
using orchard::EnvError;

namespace {

EnvOptions opts(const std::vector<std::string>& kv) { return EnvOptions::parse(kv); }

std::map<std::string, double> info_of(const Env& env) {
  std::vector<std::pair<std::string, double>> v;
  env.info(&v);
  return {v.begin(), v.end()};
}

// Writes `text` to a fresh file under the test temp dir and returns its path.
std::string write_file(const std::string& name, const std::string& text) {
  std::string path = testing::TempDir() + "greenhouse_" + name;
  std::ofstream(path) << text;
  return path;
}

// A CSV with the same weather at every row, covering `days` days hourly.
std::string constant_weather(const std::string& name, double radiation, double temperature, double rh, double ppm,
                             int days) {
  std::string text = "time_s,radiation_W_m2,temperature_C,rh_percent,wind_m_s,co2_ppm\n";
  char line[128];
  for (int h = 0; h <= days * 24; ++h) {
    std::snprintf(line, sizeof(line), "%d,%g,%g,%g,3,%g\n", h * 3600, radiation, temperature, rh, ppm);
    text += line;
  }
  return write_file(name, text);
}

std::string expect_env_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const EnvError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected EnvError";
  return "";
}

const std::string kExampleCsv = std::string(ORCHARD_SOURCE_DIR) + "/examples/weather/synthetic_feb_2days_5min.csv";

}  // namespace

// ---------------------------------------------------------------------------------------------
// API

TEST(Greenhouse, PassesConformanceCheck) {
  for (const auto& o : std::vector<std::vector<std::string>>{
           {},
           {"action_mode=absolute", "weather_interpolation=linear", "perturbation=0.3", "perturbation_mode=step",
            "weather_noise=0.1", "scenario=heat_wave"},
           {"weather_file=" + kExampleCsv, "season_days=2", "scenario=cold_snap", "weather_noise=0.05"}}) {
    auto rep = check_env([&] { return EnvRegistry::global().make("Greenhouse-v0", opts(o)); });
    for (const auto& f : rep.failures) ADD_FAILURE() << f;
    EXPECT_TRUE(rep.ok());
  }
}

TEST(Greenhouse, RegisteredWithTheBenchmarkSpaces) {
  const EnvEntry* e = EnvRegistry::global().find("Greenhouse-v0");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->family, "greenhouse");
  auto env = EnvRegistry::global().make("Greenhouse-v0");
  EXPECT_EQ(env->observation_space().numel(), 12);
  EXPECT_EQ(env->action_space().to_string(), Space::box({3}, -1.0, 1.0).to_string());
  EXPECT_EQ(env->spec().max_episode_steps, 1920);
  EXPECT_EQ(EnvRegistry::global().make("Greenhouse-v0", opts({"season_days=10"}))->spec().max_episode_steps, 480);
}

TEST(Greenhouse, BadOptionsAreClearErrors) {
  auto make = [](std::vector<std::string> o) { EnvRegistry::global().make("Greenhouse-v0", opts(o)); };
  EXPECT_NE(expect_env_error([&] { make({"perturbation=0.7"}); })
                .find("perturbation=0.7: expected a number in [0, 0.5]"),
            std::string::npos);
  EXPECT_NE(expect_env_error([&] { make({"scenario=blizzard"}); })
                .find("scenario=blizzard: expected one of normal, cold_snap, heat_wave, overcast"),
            std::string::npos);
  EXPECT_NE(expect_env_error([&] { make({"weather=csv"}); }).find("weather=csv needs weather_file"),
            std::string::npos);
  EXPECT_NE(expect_env_error([&] { make({"weather=generator", "weather_file=x.csv"}); }).find("weather=generator"),
            std::string::npos);
  EXPECT_NE(expect_env_error([&] { make({"max_episode_steps=2000"}); }).find("expected an integer in [1, 1920]"),
            std::string::npos);
  EXPECT_NE(expect_env_error([&] { make({"rk4_substep=4"}); }).find("unknown option 'rk4_substep'"), std::string::npos);
}

TEST(Greenhouse, NominalCoefficientsAreVanHentensWithTheBenchmarkLeak) {
  Greenhouse env(EnvOptions{});
  const Params& p = env.nominal_params();
  EXPECT_EQ(p.c_leak, 0.75e-5);
  EXPECT_EQ(p.c_v1, 9348.0);
  EXPECT_EQ(p.c_cap_q, 3.0e4);
  EXPECT_EQ(p.c_ai_ou, 6.1);
  EXPECT_EQ(p.c_rad_phot, 3.55e-9);
  EXPECT_EQ(p.c_gamma, 5.2e-5);
  EXPECT_EQ(p.c_v_pl_ai, 3.6e-3);
  Greenhouse text(opts({"c_leak=0.75e-4"}));
  EXPECT_EQ(text.nominal_params().c_leak, 0.75e-4);
}

TEST(Greenhouse, EpisodeIsTheSeasonAndEndsTerminated) {
  Greenhouse env(opts({"season_days=2"}));
  float obs[12];
  env.reset(0, obs);
  EXPECT_EQ(obs[7], 0.0f);
  const float zero[3] = {0, 0, 0};
  StepResult r;
  int steps = 0;
  do {
    r = env.step(zero, obs);
    ++steps;
  } while (!r.terminated && !r.truncated);
  EXPECT_EQ(steps, 96);
  EXPECT_TRUE(r.terminated);
  EXPECT_FALSE(r.truncated);
  EXPECT_EQ(obs[7], 1.0f);

  Greenhouse cut(opts({"season_days=2", "max_episode_steps=10"}));
  cut.reset(0, obs);
  for (int i = 0; i < 9; ++i) ASSERT_FALSE(cut.step(zero, obs).truncated);
  r = cut.step(zero, obs);
  EXPECT_TRUE(r.truncated);
  EXPECT_FALSE(r.terminated);
}

// ---------------------------------------------------------------------------------------------
// Conversions, actions, reward

TEST(Greenhouse, ConversionsMatchHandComputedValues) {
  // 1e6 * 8.3144598 * 293.15 * 1e-3 / (101325 * 0.04401)
  EXPECT_NEAR(units::co2_ppm(20.0, 1e-3), 546.5827928, 1e-6);
  EXPECT_NEAR(units::co2_ppm(12.5, 7e-4), 372.8192473, 1e-6);
  // p_sat(20) = 610.78 exp(17.2694 * 20 / 258.3)
  EXPECT_NEAR(units::saturation_pressure(20.0), 2325.976365, 1e-5);
  // 100 * 8.3144598 * 293.15 * 0.01 / (0.01801528 * p_sat(20))
  EXPECT_NEAR(units::rh_percent(20.0, 0.01), 58.16712819, 1e-6);
  EXPECT_NEAR(units::vapour_density(20.0, 58.16712819), 0.01, 1e-10);
  EXPECT_NEAR(units::co2_density(20.0, 546.5827928), 1e-3, 1e-12);

  // The first observation: the benchmark's x0 and u0.
  Greenhouse env(EnvOptions{});
  float obs[12];
  env.reset(0, obs);
  EXPECT_FLOAT_EQ(obs[0], 3.5f);  // g m-2
  EXPECT_FLOAT_EQ(obs[1], static_cast<float>(units::co2_ppm(15.0, 0.001)));
  EXPECT_FLOAT_EQ(obs[2], 15.0f);
  EXPECT_FLOAT_EQ(obs[3], static_cast<float>(units::rh_percent(15.0, 0.008)));
  EXPECT_FLOAT_EQ(obs[4], 0.0f);
  EXPECT_FLOAT_EQ(obs[5], 0.0f);
  EXPECT_FLOAT_EQ(obs[6], 50.0f);
}

TEST(Greenhouse, DeltaActionRespectsRateLimitsAndBounds) {
  Greenhouse env(EnvOptions{});
  float obs[12];
  env.reset(0, obs);
  const float up[3] = {1, 1, 1}, down[3] = {-1, -1, -1}, half[3] = {0.5f, 0.5f, -0.5f};
  env.step(up, obs);
  EXPECT_DOUBLE_EQ(env.controls().co2, 0.12);
  EXPECT_DOUBLE_EQ(env.controls().vent, 0.75);
  EXPECT_DOUBLE_EQ(env.controls().heat, 65.0);
  EXPECT_FLOAT_EQ(obs[4], 0.12f);
  EXPECT_FLOAT_EQ(obs[6], 65.0f);
  env.step(half, obs);
  EXPECT_DOUBLE_EQ(env.controls().co2, 0.18);
  EXPECT_DOUBLE_EQ(env.controls().vent, 1.125);
  EXPECT_DOUBLE_EQ(env.controls().heat, 57.5);
  for (int i = 0; i < 3; ++i) env.step(down, obs);
  EXPECT_EQ(env.controls().co2, 0.0);  // clipped at the lower bounds
  EXPECT_EQ(env.controls().vent, 0.0);
  EXPECT_DOUBLE_EQ(env.controls().heat, 12.5);
  for (int i = 0; i < 20; ++i) env.step(up, obs);
  EXPECT_EQ(env.controls().co2, 1.2);  // and at the upper bounds
  EXPECT_EQ(env.controls().vent, 7.5);
  EXPECT_EQ(env.controls().heat, 150.0);
  // Actions beyond [-1, 1] count as +-1.
  const float big[3] = {-5, -5, -5};
  env.step(big, obs);
  EXPECT_DOUBLE_EQ(env.controls().heat, 135.0);

  Rng rng(9);
  for (int i = 0; i < 500; ++i) {
    const Controls before = env.controls();
    const float a[3] = {static_cast<float>(rng.uniform(-1, 1)), static_cast<float>(rng.uniform(-1, 1)),
                        static_cast<float>(rng.uniform(-1, 1))};
    if (!env.episode_active()) env.reset(std::nullopt, obs);
    env.step(a, obs);
    const Controls& u = env.controls();
    EXPECT_LE(std::fabs(u.co2 - before.co2), 0.12 + 1e-12);
    EXPECT_LE(std::fabs(u.vent - before.vent), 0.75 + 1e-12);
    EXPECT_LE(std::fabs(u.heat - before.heat), 15.0 + 1e-12);
    EXPECT_TRUE(u.co2 >= 0 && u.co2 <= 1.2 && u.vent >= 0 && u.vent <= 7.5 && u.heat >= 0 && u.heat <= 150);
  }
}

TEST(Greenhouse, AbsoluteActionSetsTheControls) {
  Greenhouse env(opts({"action_mode=absolute"}));
  float obs[12];
  env.reset(0, obs);
  const float lo[3] = {-1, -1, -1}, mid[3] = {0, 0, 0}, hi[3] = {1, 1, 1};
  env.step(hi, obs);
  EXPECT_DOUBLE_EQ(env.controls().co2, 1.2);
  EXPECT_DOUBLE_EQ(env.controls().vent, 7.5);
  EXPECT_DOUBLE_EQ(env.controls().heat, 150.0);
  env.step(lo, obs);
  EXPECT_EQ(env.controls().co2, 0.0);
  EXPECT_EQ(env.controls().vent, 0.0);
  EXPECT_EQ(env.controls().heat, 0.0);
  env.step(mid, obs);
  EXPECT_DOUBLE_EQ(env.controls().co2, 0.6);
  EXPECT_DOUBLE_EQ(env.controls().vent, 3.75);
  EXPECT_DOUBLE_EQ(env.controls().heat, 75.0);
}

TEST(Greenhouse, EnergyAndCo2CostsAndRewardAccounting) {
  Greenhouse env(EnvOptions{});
  float obs[12];
  env.reset(0, obs);
  const float hold[3] = {0, 0, 0};
  State before = env.state();
  StepResult r = env.step(hold, obs);  // U_q stays at 50 W m-2, no CO2
  auto info = info_of(env);
  EXPECT_DOUBLE_EQ(info.at("energy_cost_eur"), 0.1281 * 50.0 * 1800.0 / 3.6e6);
  EXPECT_DOUBLE_EQ(info.at("co2_cost_eur"), 0.0);
  EXPECT_DOUBLE_EQ(info.at("revenue_eur"), 22.285125 * (env.state().dry_weight - before.dry_weight));
  EXPECT_DOUBLE_EQ(info.at("dry_weight_kg_m2"), env.state().dry_weight);
  const double penalty = info.at("penalty_co2") + info.at("penalty_temperature") + info.at("penalty_humidity");
  EXPECT_DOUBLE_EQ(info.at("penalty_total"), penalty);
  EXPECT_FLOAT_EQ(r.reward, static_cast<float>(info.at("revenue_eur") - info.at("energy_cost_eur") - penalty));

  Greenhouse abs(opts({"action_mode=absolute"}));
  abs.reset(0, obs);
  const float full[3] = {1, -1, -1};  // U_c = 1.2 mg m-2 s-1, no heating
  before = abs.state();
  r = abs.step(full, obs);
  info = info_of(abs);
  EXPECT_DOUBLE_EQ(info.at("energy_cost_eur"), 0.0);
  EXPECT_DOUBLE_EQ(info.at("co2_cost_eur"), 0.1906 * 1.2 * 1e-6 * 1800.0);
  const Accounting a = Greenhouse::account(before, abs.state(), abs.controls());
  EXPECT_FLOAT_EQ(r.reward, static_cast<float>(a.reward()));
  EXPECT_DOUBLE_EQ(a.reward(), a.revenue - a.energy_cost - a.co2_cost - a.penalty());

  // Episode sums.
  r = abs.step(full, obs);
  info = info_of(abs);
  EXPECT_DOUBLE_EQ(info.at("episode_co2_cost_eur"), 2 * 0.1906 * 1.2 * 1e-6 * 1800.0);
}

TEST(Greenhouse, PenaltiesAsSpecified) {
  const Controls u{0, 0, 0};
  auto climate = [](double t, double ppm, double rh) {
    return State{0.01, units::co2_density(t, ppm), t, units::vapour_density(t, rh)};
  };
  // Inside every band: no penalty.
  Accounting a = Greenhouse::account(climate(15, 800, 70), climate(15, 800, 70), u);
  EXPECT_EQ(a.penalty(), 0.0);
  a = Greenhouse::account(climate(15, 800, 70), climate(8, 400, 90), u);
  EXPECT_NEAR(a.penalty_co2, 5e-5 * 100, 1e-12);
  EXPECT_NEAR(a.penalty_temperature, 3e-3 * 2, 1e-12);
  EXPECT_NEAR(a.penalty_humidity, 7e-4 * 10, 1e-12);
  a = Greenhouse::account(climate(15, 800, 70), climate(23, 1700, 50), u);
  EXPECT_NEAR(a.penalty_co2, 5e-5 * 100, 1e-12);
  EXPECT_NEAR(a.penalty_temperature, 5e-3 * 3, 1e-12);
  EXPECT_EQ(a.penalty_humidity, 0.0);
}

// ---------------------------------------------------------------------------------------------
// Physics

TEST(Greenhouse, UnheatedClosedHouseAtNightRelaxesToTheOutdoorTemperature) {
  // Dark, 8 degC outside; no heating, vents closed, no CO2: the only heat flow is through the
  // cover, so X_t - V_t decays as exp(-c_ai_ou t / c_cap_q).
  const std::string csv = constant_weather("night.csv", 0, 8, 85, 420, 2);
  Greenhouse env(opts({"weather_file=" + csv, "season_days=1", "action_mode=absolute"}));
  float obs[12];
  env.reset(0, obs);
  env.set_state({0.05, 0.0008, 25.0, 0.01});
  const float off[3] = {-1, -1, -1};
  double gap = 17.0;
  for (int k = 1; k <= 24; ++k) {
    env.step(off, obs);
    const double now = env.state().temperature - 8.0;
    EXPECT_GT(now, 0.0);
    EXPECT_LT(now, gap);
    gap = now;
    EXPECT_NEAR(now, 17.0 * std::exp(-6.1 * 1800.0 * k / 3.0e4), 1e-6) << "step " << k;
  }
  // And the other way round from a cold start: it warms towards 8 degC... the box floor is 5.
  env.set_state({0.05, 0.0008, 5.0, 0.005});
  env.step(off, obs);
  EXPECT_GT(env.state().temperature, 5.0);
  EXPECT_LT(env.state().temperature, 8.0);
  // Without light the crop only respires: dry weight falls, CO2 rises.
  const State before = env.state();
  env.step(off, obs);
  EXPECT_LT(env.state().dry_weight, before.dry_weight);
  EXPECT_GT(env.state().co2, before.co2);
}

TEST(Greenhouse, LettuceGrowsOverADayWithLightAndCo2) {
  Greenhouse env(opts({"action_mode=absolute"}));
  float obs[12];
  env.reset(1, obs);
  const float grow[3] = {1, -1, 0};  // full CO2 dosing, vents closed, 75 W m-2 heating
  double max_radiation = 0;
  for (int k = 0; k < 48; ++k) {
    max_radiation = std::max(max_radiation, env.weather()[k].radiation);
    env.step(grow, obs);
  }
  EXPECT_GT(max_radiation, 50.0);
  EXPECT_GT(env.state().dry_weight, Greenhouse::kInitialState.dry_weight * 1.01);
  EXPECT_GT(info_of(env).at("episode_revenue_eur"), 0.0);
  // More CO2 means more growth under the same light.
  Greenhouse lean(opts({"action_mode=absolute"}));
  lean.reset(1, obs);
  const float no_co2[3] = {-1, -1, 0};
  for (int k = 0; k < 48; ++k) lean.step(no_co2, obs);
  EXPECT_GT(env.state().dry_weight, lean.state().dry_weight);
}

TEST(Greenhouse, Rk4ConvergesAndLinearInterpolationMatchesHoldUnderConstantWeather) {
  Greenhouse fine(opts({"rk4_substeps=200"})), coarse(EnvOptions{});
  float obs[12];
  fine.reset(4, obs);
  coarse.reset(4, obs);
  Rng rng(4);
  for (int k = 0; k < 96; ++k) {
    const float a[3] = {static_cast<float>(rng.uniform(-1, 1)), static_cast<float>(rng.uniform(-1, 1)),
                        static_cast<float>(rng.uniform(-1, 1))};
    fine.step(a, obs);
    coarse.step(a, obs);
  }
  EXPECT_NEAR(coarse.state().dry_weight / fine.state().dry_weight, 1.0, 1e-4);
  EXPECT_NEAR(coarse.state().temperature, fine.state().temperature, 1e-3);
  EXPECT_NEAR(coarse.state().humidity / fine.state().humidity, 1.0, 1e-3);
  EXPECT_NEAR(coarse.state().co2 / fine.state().co2, 1.0, 1e-3);

  const std::string csv = constant_weather("const.csv", 120, 6, 80, 410, 1);
  Greenhouse hold(opts({"weather_file=" + csv, "season_days=1"}));
  Greenhouse lin(opts({"weather_file=" + csv, "season_days=1", "weather_interpolation=linear"}));
  float o1[12], o2[12];
  hold.reset(0, o1);
  lin.reset(0, o2);
  const float a[3] = {0.5f, 0.1f, 0.2f};
  for (int k = 0; k < 48; ++k) {
    hold.step(a, o1);
    lin.step(a, o2);
    ASSERT_EQ(0, std::memcmp(o1, o2, sizeof(o1)));
  }
  // With changing weather they differ.
  Greenhouse h2(EnvOptions{}), l2(opts({"weather_interpolation=linear"}));
  h2.reset(0, o1);
  l2.reset(0, o2);
  for (int k = 0; k < 30; ++k) {
    h2.step(a, o1);
    l2.step(a, o2);
  }
  EXPECT_NE(h2.state().temperature, l2.state().temperature);
}

// ---------------------------------------------------------------------------------------------
// Weather

TEST(Greenhouse, CsvWeatherIsSampledEveryStep) {
  Greenhouse env(opts({"weather_file=" + kExampleCsv, "season_days=2"}));
  // Rows every 300 s, steps every 1800 s: step k reads data row 6k.
  std::ifstream in(kExampleCsv);
  std::vector<std::vector<double>> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line[0] == 't') continue;
    std::vector<double> v;
    size_t pos = 0;
    for (int c = 0; c < 6; ++c) {
      size_t next = line.find(',', pos);
      v.push_back(std::stod(line.substr(pos, next - pos)));
      pos = next + 1;
    }
    rows.push_back(v);
  }
  ASSERT_EQ(rows.size(), 577u);
  float obs[12];
  env.reset(0, obs);
  const float a[3] = {0, 0, 0};
  for (int k = 0; k <= 96; ++k) {
    const auto& r = rows[static_cast<size_t>(6 * k)];
    EXPECT_FLOAT_EQ(obs[8], static_cast<float>(r[1])) << k;
    EXPECT_FLOAT_EQ(obs[9], static_cast<float>(r[5])) << k;
    EXPECT_FLOAT_EQ(obs[10], static_cast<float>(r[2])) << k;
    EXPECT_FLOAT_EQ(obs[11], static_cast<float>(r[3])) << k;
    if (k < 96) env.step(a, obs);
  }
  // The model sees the same weather in its units.
  const WeatherSample& w = env.weather()[10];
  const Weather m = to_model_units(w);
  EXPECT_DOUBLE_EQ(m.co2, units::co2_density(w.temperature, w.co2_ppm));
  EXPECT_DOUBLE_EQ(m.vapour, units::vapour_density(w.temperature, w.rh));
}

TEST(Greenhouse, CsvInterpolatesBetweenRowsAndHonoursTheOffset) {
  const std::string csv = write_file("ramp.csv",
                                     "# a ramp\n"
                                     "0, 0, 0, 50, 1, 400\n"
                                     "7200, 100, 20, 90, 1, 500\n"
                                     "200000, 100, 20, 90, 1, 500\n");
  Greenhouse env(opts({"weather_file=" + csv, "season_days=1", "weather_offset_s=1800"}));
  float obs[12];
  env.reset(0, obs);
  EXPECT_NEAR(obs[8], 25.0f, 1e-4);  // t = 1800 s: a quarter of the way
  EXPECT_NEAR(obs[10], 5.0f, 1e-5);
  EXPECT_NEAR(obs[11], 60.0f, 1e-4);
  EXPECT_NEAR(obs[9], 425.0f, 1e-3);
}

TEST(Greenhouse, MalformedCsvFilesNameTheFileLineAndColumn) {
  const std::string header = "time_s,radiation_W_m2,temperature_C,rh_percent,wind_m_s,co2_ppm\n";
  auto load = [](const std::string& path) {
    return expect_env_error([&] { Greenhouse(opts({"weather_file=" + path, "season_days=1"})); });
  };
  std::string path = write_file("bad_number.csv", header + "0,0,5,80,2,400\n1800,0,abc,80,2,400\n");
  std::string msg = load(path);
  EXPECT_NE(msg.find("Greenhouse-v0: weather file '" + path +
                     "' line 3, column 3 (temperature_C): 'abc' is not a number"),
            std::string::npos)
      << msg;

  path = write_file("missing_column.csv", header + "0,0,5,80,2,400\n1800,0,5,80,400\n");
  msg = load(path);
  EXPECT_NE(msg.find("'" + path + "' line 3: expected 6 columns (time_s, radiation_W_m2, temperature_C, rh_percent, "
                     "wind_m_s, co2_ppm), found 5"),
            std::string::npos)
      << msg;

  path = write_file("time_backwards.csv", header + "0,0,5,80,2,400\n1800,0,5,80,2,400\n1800,0,5,80,2,400\n");
  msg = load(path);
  EXPECT_NE(msg.find("'" + path + "' line 4, column 1 (time_s): time 1800 is not after the previous row's 1800"),
            std::string::npos)
      << msg;

  path = write_file("out_of_range.csv", header + "0,0,5,180,2,400\n1800,0,5,80,2,400\n");
  msg = load(path);
  EXPECT_NE(msg.find("line 2, column 4 (rh_percent): 180 is outside [0, 100]"), std::string::npos) << msg;

  path = write_file("empty_field.csv", header + "0,0,5,80,2,\n");
  msg = load(path);
  EXPECT_NE(msg.find("line 2, column 6 (co2_ppm): '' is not a number"), std::string::npos) << msg;

  path = write_file("short.csv", header + "0,0,5,80,2,400\n86000,0,5,80,2,400\n");
  msg = load(path);
  EXPECT_NE(msg.find("covers t = 0 .. 86000 s, but the season needs t = 0 .. 86400 s"), std::string::npos) << msg;

  msg = load(testing::TempDir() + "greenhouse_no_such_file.csv");
  EXPECT_NE(msg.find("no_such_file.csv': cannot open"), std::string::npos) << msg;
}

TEST(Greenhouse, GeneratedWeatherLooksLikeADutchFebruary) {
  Greenhouse env(EnvOptions{});
  float obs[12];
  env.reset(123, obs);
  const auto& w = env.weather();
  ASSERT_EQ(w.size(), 1921u);
  double t_sum = 0, rad_sum = 0;
  for (size_t k = 0; k < w.size(); ++k) {
    const double hour = static_cast<double>(k % 48) / 2.0;
    if (hour < 6.0 || hour > 18.5) {
      EXPECT_EQ(w[k].radiation, 0.0) << k;  // night
    }
    EXPECT_LE(w[k].radiation, 900.0);
    EXPECT_GE(w[k].rh, 40.0);
    EXPECT_LE(w[k].rh, 100.0);
    EXPECT_NEAR(w[k].co2_ppm, 420.0, 40.0);
    t_sum += w[k].temperature;
    rad_sum += w[k].radiation;
  }
  const double t_mean = t_sum / w.size();
  EXPECT_GT(t_mean, -4.0);
  EXPECT_LT(t_mean, 12.0);
  // Daily radiation sum in MJ m-2: a few in February/March.
  const double mj_per_day = rad_sum * 1800.0 / 1e6 / 40.0;
  EXPECT_GT(mj_per_day, 1.5);
  EXPECT_LT(mj_per_day, 12.0);

  // New weather each episode, unless weather_seed fixes it.
  const std::vector<WeatherSample> first = w;
  env.reset(std::nullopt, obs);
  EXPECT_NE(first[24].temperature, env.weather()[24].temperature);
  Greenhouse fixed_a(opts({"weather_seed=7"})), fixed_b(opts({"weather_seed=7"}));
  fixed_a.reset(1, obs);
  fixed_b.reset(2, obs);
  EXPECT_EQ(0, std::memcmp(fixed_a.weather().data(), fixed_b.weather().data(), 1921 * sizeof(WeatherSample)));
  fixed_a.reset(std::nullopt, obs);
  EXPECT_EQ(0, std::memcmp(fixed_a.weather().data(), fixed_b.weather().data(), 1921 * sizeof(WeatherSample)));
}

TEST(Greenhouse, ClearSkyRadiationClimbsThroughTheSeason) {
  // Averaged over many generated seasons, noon radiation at the end is higher than at the start.
  Greenhouse env(EnvOptions{});
  float obs[12];
  double early = 0, late = 0;
  for (uint64_t s = 0; s < 20; ++s) {
    env.reset(s, obs);
    for (int d = 0; d < 5; ++d) early += env.weather()[static_cast<size_t>(d * 48 + 24)].radiation;
    for (int d = 35; d < 40; ++d) late += env.weather()[static_cast<size_t>(d * 48 + 24)].radiation;
  }
  EXPECT_GT(late, 1.2 * early);
}

TEST(Greenhouse, ScenarioPresetsChangeTheWeatherAsDescribed) {
  float obs[12];
  Greenhouse normal(EnvOptions{});
  normal.reset(5, obs);
  const auto& base = normal.weather();
  auto in_core = [](size_t k) { return k >= 24 && k <= 7 * 48 - 24; };  // inside the half-day ramps
  auto after = [](size_t k) { return k > 7 * 48; };

  Greenhouse cold(opts({"scenario=cold_snap"}));
  cold.reset(5, obs);
  double cold_core = 0;
  for (size_t k = 0; k < base.size(); ++k) {
    EXPECT_LE(cold.weather()[k].temperature, base[k].temperature);
    if (in_core(k)) cold_core += base[k].temperature - cold.weather()[k].temperature;
    if (after(k)) { EXPECT_EQ(cold.weather()[k].temperature, base[k].temperature); }
    EXPECT_EQ(cold.weather()[k].radiation, base[k].radiation);
  }
  EXPECT_NEAR(cold_core / (7 * 48 - 47), 10.0, 1e-9);

  Greenhouse heat(opts({"scenario=heat_wave"}));
  heat.reset(5, obs);
  for (size_t k = 0; k < base.size(); ++k) {
    EXPECT_GE(heat.weather()[k].temperature, base[k].temperature);
    EXPECT_LE(heat.weather()[k].rh, base[k].rh);
    if (in_core(k)) { EXPECT_NEAR(heat.weather()[k].temperature - base[k].temperature, 12.0, 1e-9); }
    if (after(k)) { EXPECT_EQ(heat.weather()[k].temperature, base[k].temperature); }
  }

  Greenhouse dull(opts({"scenario=overcast"}));
  dull.reset(5, obs);
  for (size_t k = 0; k < base.size(); ++k) {
    EXPECT_LE(dull.weather()[k].radiation, base[k].radiation);
    EXPECT_GE(dull.weather()[k].rh, base[k].rh);
    if (in_core(k)) { EXPECT_NEAR(dull.weather()[k].radiation, 0.2 * base[k].radiation, 1e-9); }
    if (after(k)) { EXPECT_EQ(dull.weather()[k].radiation, base[k].radiation); }
  }

  // The window is configurable, and the weather drives the climate: a cold snap costs heat.
  Greenhouse late(opts({"scenario=cold_snap", "scenario_start_day=10", "scenario_days=3"}));
  late.reset(5, obs);
  EXPECT_EQ(late.weather()[100].temperature, base[100].temperature);
  EXPECT_NEAR(late.weather()[11 * 48].temperature, base[11 * 48].temperature - 10.0, 1e-9);
  float o1[12], o2[12];
  normal.reset(5, o1);
  cold.reset(5, o2);
  const float a[3] = {0, 0, 0};
  for (int k = 0; k < 96; ++k) {
    normal.step(a, o1);
    cold.step(a, o2);
  }
  EXPECT_LT(cold.state().temperature, normal.state().temperature);
}

TEST(Greenhouse, WeatherNoiseIsDeterministicUnderTheSeed) {
  float obs[12];
  Greenhouse clean(opts({"weather_seed=3"})), noisy(opts({"weather_seed=3", "weather_noise=0.1"})),
      noisy2(opts({"weather_seed=3", "weather_noise=0.1"}));
  clean.reset(1, obs);
  noisy.reset(1, obs);
  noisy2.reset(1, obs);
  EXPECT_EQ(0, std::memcmp(noisy.weather().data(), noisy2.weather().data(), 1921 * sizeof(WeatherSample)));
  double diff = 0;
  for (size_t k = 0; k < 1921; ++k) diff += std::fabs(noisy.weather()[k].temperature - clean.weather()[k].temperature);
  EXPECT_NEAR(diff / 1921, 0.8, 0.2);  // E|N(0, 1 degC)| = 0.80
  noisy2.reset(2, obs);
  EXPECT_NE(noisy.weather()[5].temperature, noisy2.weather()[5].temperature);
}

// ---------------------------------------------------------------------------------------------
// Robustness perturbation

TEST(Greenhouse, PerturbationChangesTrajectoriesButIsDeterministicUnderTheSeed) {
  auto run = [](const std::vector<std::string>& o, uint64_t seed, std::vector<float>* trace, Params* params) {
    Greenhouse env(opts(o));
    float obs[12];
    env.reset(seed, obs);
    if (params) *params = env.params();
    Rng rng(11);
    for (int k = 0; k < 200; ++k) {
      const float a[3] = {static_cast<float>(rng.uniform(-1, 1)), static_cast<float>(rng.uniform(-1, 1)),
                          static_cast<float>(rng.uniform(-1, 1))};
      StepResult r = env.step(a, obs);
      trace->insert(trace->end(), obs, obs + 12);
      trace->push_back(r.reward);
    }
  };
  std::vector<float> plain, p1, p2, p3;
  Params params1, params3, nominal;
  run({"weather_seed=1"}, 3, &plain, &nominal);
  run({"weather_seed=1", "perturbation=0.2"}, 3, &p1, &params1);
  run({"weather_seed=1", "perturbation=0.2"}, 3, &p2, nullptr);
  run({"weather_seed=1", "perturbation=0.2"}, 4, &p3, &params3);
  EXPECT_EQ(p1, p2);
  EXPECT_NE(p1, plain);
  EXPECT_NE(p1, p3);
  int changed = 0;
  for (int i = 0; i < Params::kCount; ++i) {
    const auto f = Params::fields()[i];
    const double ratio = params1.*f / (nominal.*f);
    EXPECT_GE(ratio, 0.8) << Params::names()[i];
    EXPECT_LE(ratio, 1.2) << Params::names()[i];
    changed += ratio != 1.0;
    EXPECT_NE(params1.*f, params3.*f) << Params::names()[i];
  }
  EXPECT_EQ(changed, Params::kCount);

  // Per-step mode draws new coefficients every step, still reproducibly.
  Greenhouse env(opts({"perturbation=0.1", "perturbation_mode=step"}));
  float obs[12];
  env.reset(8, obs);
  const float a[3] = {0, 0, 0};
  env.step(a, obs);
  const Params first = env.params();
  env.step(a, obs);
  EXPECT_NE(first.c_cap_q, env.params().c_cap_q);
  std::vector<float> s1, s2;
  run({"perturbation=0.5", "perturbation_mode=step"}, 6, &s1, nullptr);
  run({"perturbation=0.5", "perturbation_mode=step"}, 6, &s2, nullptr);
  EXPECT_EQ(s1, s2);
  for (float v : s1) EXPECT_TRUE(std::isfinite(v));
}

TEST(Greenhouse, LargestPerturbationStaysStableWithTheDefaultSubsteps) {
  // Full ventilation makes the humidity equation stiffest; at h = 0.5 the default 6 RK4 substeps
  // must still track a fine integration.
  for (uint64_t seed = 0; seed < 10; ++seed) {
    Greenhouse coarse(opts({"perturbation=0.5", "action_mode=absolute"}));
    Greenhouse fine(opts({"perturbation=0.5", "action_mode=absolute", "rk4_substeps=100"}));
    float obs[12];
    coarse.reset(seed, obs);
    fine.reset(seed, obs);
    const float a[3] = {0, 1, 0};
    for (int k = 0; k < 96; ++k) {
      coarse.step(a, obs);
      fine.step(a, obs);
      ASSERT_NEAR(coarse.state().humidity, fine.state().humidity, 1e-4) << "seed " << seed << " step " << k;
      ASSERT_NEAR(coarse.state().dry_weight / fine.state().dry_weight, 1.0, 1e-3);
    }
  }
}

TEST(Greenhouse, SnapshotRestoresMidEpisode) {
  Greenhouse env(opts({"perturbation=0.2", "perturbation_mode=step", "weather_noise=0.05"}));
  float obs[12], o1[12], o2[12];
  env.reset(2, obs);
  const float a[3] = {0.3f, -0.2f, 0.1f};
  for (int k = 0; k < 50; ++k) env.step(a, obs);
  auto snap = env.snapshot();
  std::vector<float> first, second;
  for (int k = 0; k < 50; ++k) {
    env.step(a, o1);
    first.insert(first.end(), o1, o1 + 12);
  }
  env.reset(99, obs);  // a different episode and weather in between
  env.restore(snap);
  for (int k = 0; k < 50; ++k) {
    env.step(a, o2);
    second.insert(second.end(), o2, o2 + 12);
  }
  EXPECT_EQ(first, second);
  Greenhouse other(opts({"season_days=3"}));
  EXPECT_NE(expect_env_error([&] { other.restore(snap); }).find("snapshot size does not match"), std::string::npos);
}

TEST(Greenhouse, RunsInAThreadedVectorEnvIdenticallyToOneThread) {
  const auto o = opts({"season_days=1", "perturbation=0.1"});
  auto a = EnvRegistry::global().make_vector("Greenhouse-v0", 6, o, 1);
  auto b = EnvRegistry::global().make_vector("Greenhouse-v0", 6, o, 3);
  a->reset(21);
  b->reset(21);
  Rng rng(2);
  std::vector<float> actions(6 * 3);
  for (int t = 0; t < 120; ++t) {  // past the 48-step season: auto-reset included
    for (auto& x : actions) x = static_cast<float>(rng.uniform(-1, 1));
    a->step(actions.data());
    b->step(actions.data());
    ASSERT_EQ(0, std::memcmp(a->observations(), b->observations(), 6 * 12 * sizeof(float)));
    ASSERT_EQ(0, std::memcmp(a->rewards(), b->rewards(), 6 * sizeof(float)));
  }
  EXPECT_EQ(a->episodes_finished(), 12u);
}
