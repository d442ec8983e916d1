#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "orchard/envs/check.h"
#include "orchard/envs/registry.h"
#include "support/child_process.h"

using namespace orchard::envs;
using orchard::EnvError;

namespace {

std::string plugin(const std::string& variant) {
  return std::string(ORCHARD_TEST_PLUGIN_DIR) + "/orchard_test_plugin_" + variant + ".so";
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const EnvError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an EnvError";
  return "";
}

// Steps a Flaky-v0 env with the given failure mode until it throws; returns the message.
std::string run_until_error(EnvRegistry& r, const std::string& fail) {
  auto env = r.make("Flaky-v0", EnvOptions::parse({"fail=" + fail}));
  float obs[2];
  env->reset(0, obs);
  int64_t a = 1;
  return error_of([&] {
    for (int i = 0; i < 10; ++i) env->step(&a, obs);
  });
}

}  // namespace

TEST(Plugins, GoodPluginLoadsAndPassesConformance) {
  EnvRegistry r;
  auto names = r.load_plugin(plugin("good"));
  ASSERT_EQ(names, std::vector<std::string>{"Flaky-v0"});
  EXPECT_EQ(r.find("Flaky-v0")->family, "plugin");
  EXPECT_EQ(r.find("Flaky-v0")->source, plugin("good"));
  auto rep = check_env([&] { return r.make("Flaky-v0"); });
  for (const auto& f : rep.failures) ADD_FAILURE() << f;
}

TEST(Plugins, WrongAbiVersionIsRefusedWithPathAndVersions) {
  EnvRegistry r;
  std::string msg = error_of([&] { r.load_plugin(plugin("wrong_abi")); });
  EXPECT_EQ(msg, "plugin " + plugin("wrong_abi") +
                     ": built for env ABI version 99, this Orchard speaks version 1 (rebuild it against this "
                     "Orchard's env_plugin.h)");
  EXPECT_EQ(r.find("Flaky-v0"), nullptr);
}

TEST(Plugins, MissingEntrySymbolIsRefused) {
  EnvRegistry r;
  std::string msg = error_of([&] { r.load_plugin(plugin("no_entry")); });
  EXPECT_NE(msg.find("missing symbol 'orchard_env_plugin_v1'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(plugin("no_entry")), std::string::npos) << msg;
}

TEST(Plugins, MissingRequiredFunctionIsRefused) {
  EnvRegistry r;
  std::string msg = error_of([&] { r.load_plugin(plugin("no_step")); });
  EXPECT_NE(msg.find("env 'Flaky-v0': lacks the required function 'step'"), std::string::npos) << msg;
}

TEST(Plugins, NonexistentOrNonElfFileIsAClearError) {
  EnvRegistry r;
  std::string msg = error_of([&] { r.load_plugin("/nonexistent/plugin.so"); });
  EXPECT_EQ(msg.rfind("plugin /nonexistent/plugin.so: cannot load: ", 0), 0u) << msg;
  msg = error_of([&] { r.load_plugin(std::string(ORCHARD_SOURCE_DIR) + "/README.md"); });
  EXPECT_NE(msg.find("cannot load"), std::string::npos) << msg;
}

TEST(Plugins, FailingPluginsAreReportedAndTheHostSurvives) {
  EnvRegistry r;
  r.load_plugin(plugin("good"));
  EXPECT_EQ(error_of([&] { r.make("Flaky-v0", EnvOptions::parse({"fail=create"})); }),
            "plugin " + plugin("good") + " env 'Flaky-v0': create failed: the hardware dongle is missing");
  EXPECT_EQ(run_until_error(r, "step"),
            "plugin " + plugin("good") + " env 'Flaky-v0': step failed: sensor timeout at t=3");
  EXPECT_EQ(run_until_error(r, "nan"),
            "plugin " + plugin("good") + " env 'Flaky-v0': step wrote an invalid observation: element 1 is NaN");
  EXPECT_EQ(run_until_error(r, "throw"), "plugin " + plugin("good") +
                                             " env 'Flaky-v0': step threw an exception across the plugin boundary: "
                                             "simulator crashed");
  // The host is still fine: a fresh env works.
  auto env = r.make("Flaky-v0");
  float obs[2];
  env->reset(1, obs);
  int64_t a = 2;
  EXPECT_EQ(env->step(&a, obs).reward, 1.0f);
  // Discrete action validation applies to plugins too.
  a = 3;
  EXPECT_NE(error_of([&] { env->step(&a, obs); }).find("action 3 is outside Discrete(3)"), std::string::npos);
}

TEST(Plugins, PluginPathLoadsGoodOnesAndReportsBadOnes) {
  EnvRegistry r;
  auto errors = r.load_plugin_path(std::string(ORCHARD_TEST_PLUGIN_DIR) + ":/nonexistent-dir");
  EXPECT_NE(r.find("Flaky-v0"), nullptr);
  // wrong_abi, no_entry and no_step fail; the missing directory is reported too.
  ASSERT_EQ(errors.size(), 4u);
  int abi = 0, entry = 0, step = 0, dir = 0;
  for (const auto& e : errors) {
    abi += e.find("ABI version 99") != std::string::npos;
    entry += e.find("missing symbol") != std::string::npos;
    step += e.find("lacks the required function 'step'") != std::string::npos;
    dir += e.find("cannot open directory /nonexistent-dir") != std::string::npos;
  }
  EXPECT_EQ(abi + entry + step + dir, 4) << ::testing::PrintToString(errors);
}

// The example plugin builds out of tree against the exported SDK and runs.
TEST(Plugins, ExamplePluginBuildsOutOfTreeAndLoads) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("orchard-plugin-build-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  std::string src = std::string(ORCHARD_SOURCE_DIR) + "/examples/plugin-env";
  orchard::testing::ChildProcess configure(
      {"cmake", "-S", src, "-B", dir.string(), std::string("-DOrchard_DIR=") + ORCHARD_BUILD_DIR});
  ASSERT_EQ(configure.wait(120000), 0) << configure.output();
  orchard::testing::ChildProcess build({"cmake", "--build", dir.string()});
  ASSERT_EQ(build.wait(120000), 0) << build.output();
  EnvRegistry r;
  auto names = r.load_plugin((dir / "orchard_water_tank.so").string());
  ASSERT_EQ(names, std::vector<std::string>{"WaterTank-v0"});
  auto rep = check_env([&] { return r.make("WaterTank-v0", EnvOptions::parse({"target=0.8"})); });
  for (const auto& f : rep.failures) ADD_FAILURE() << f;
  EXPECT_EQ(r.make("WaterTank-v0")->spec().max_episode_steps, 200);
  EXPECT_NE(error_of([&] { r.make("WaterTank-v0", EnvOptions::parse({"target=9"})); }).find("target=9"),
            std::string::npos);
  // A proportional controller holds the level near the target: the env really simulates.
  auto env = r.make("WaterTank-v0", EnvOptions::parse({"target=0.8", "max_episode_steps=400"}));
  float obs[3];
  env->reset(5, obs);
  for (int t = 0; t < 300; ++t) {
    float u = std::min(1.0f, std::max(0.0f, 0.45f + 2.0f * (obs[1] - obs[0])));
    env->step(&u, obs);
  }
  EXPECT_NEAR(obs[0], 0.8, 0.1);
  fs::remove_all(dir);
}
