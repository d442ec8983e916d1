#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/child_process.h"

using orchard::testing::ChildProcess;
using orchard::testing::orchard_bin;

namespace {

struct Run {
  int code;
  std::string output;
};

Run orchard_env(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv = {orchard_bin("orchard"), "env"};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess p(argv, env);
  int code = p.wait(120000);
  return {code, p.output()};
}

std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

std::string test_plugin_dir() { return std::string(ORCHARD_BIN_DIR) + "/../test-plugins"; }

}  // namespace

TEST(EnvCli, ListShowsBuiltinsWithSpacesAndOptions) {
  auto r = orchard_env({"list"});
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("CartPole-v1  [classic]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("action:      Discrete(2)"), std::string::npos);
  auto j = orchard_env({"list", "--json"});
  ASSERT_EQ(j.code, 0);
  auto list = nlohmann::json::parse(j.output);
  bool found = false;
  for (const auto& e : list) {
    EXPECT_FALSE(e.contains("error")) << e.dump();
    if (e["name"] == "CartPole-v1") {
      found = true;
      EXPECT_EQ(e["max_episode_steps"], 500);
      EXPECT_EQ(e["options"][0]["key"], "max_episode_steps");
    }
  }
  EXPECT_TRUE(found);
}

TEST(EnvCli, CheckPassesForEveryBuiltin) {
  auto list = nlohmann::json::parse(orchard_env({"list", "--json"}).output);
  ASSERT_GE(list.size(), 1u);
  for (const auto& e : list) {
    auto r = orchard_env({"check", e["name"].get<std::string>(), "--steps", "500"});
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("all checks passed"), std::string::npos) << r.output;
  }
}

TEST(EnvCli, UnknownEnvAndBadOptionsAreOneLineErrors) {
  auto r = orchard_env({"check", "CartPoel-v1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.output, "orchard: unknown env 'CartPoel-v1'; did you mean 'CartPole-v1'? (run 'orchard env list')\n");
  r = orchard_env({"rollout", "CartPole-v1", "--steps", "3", "-o", "max_episode_steps=abc"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("CartPole-v1: option max_episode_steps=abc: expected an integer"), std::string::npos)
      << r.output;
  r = orchard_env({"rollout", "CartPole-v1", "--steps", "3", "-o", "novalue"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("expected key=value"), std::string::npos) << r.output;
}

TEST(EnvCli, RolloutPrintsOneJsonObjectPerStepDeterministically) {
  auto a = orchard_env({"rollout", "CartPole-v1", "--seed", "3", "--steps", "40"});
  ASSERT_EQ(a.code, 0) << a.output;
  auto lines = json_lines(a.output);
  ASSERT_GE(lines.size(), 41u);
  EXPECT_TRUE(lines[0]["reset"].get<bool>());
  EXPECT_EQ(lines[0]["obs"].size(), 4u);
  for (const char* key : {"t", "action", "reward", "terminated", "truncated", "obs"}) {
    EXPECT_TRUE(lines[1].contains(key)) << key;
  }
  EXPECT_EQ(orchard_env({"rollout", "CartPole-v1", "--seed", "3", "--steps", "40"}).output, a.output);
  EXPECT_NE(orchard_env({"rollout", "CartPole-v1", "--seed", "4", "--steps", "40"}).output, a.output);
  auto zero = json_lines(orchard_env({"rollout", "CartPole-v1", "--steps", "5", "--policy", "zero"}).output);
  EXPECT_EQ(zero[1]["action"], 0);
}

TEST(EnvCli, RolloutReplaysAnActionFileAndNamesBadLines) {
  std::string path = ::testing::TempDir() + "orchard_actions.jsonl";
  {
    std::ofstream(path) << "1\n0\n\n1\n";
  }
  auto r = orchard_env({"rollout", "CartPole-v1", "--steps", "10", "--policy", path});
  ASSERT_EQ(r.code, 0) << r.output;
  auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 4u);  // reset + 3 actions (the file ends)
  EXPECT_EQ(lines[1]["action"], 1);
  EXPECT_EQ(lines[2]["action"], 0);
  {
    std::ofstream(path) << "1\n[0, 1]\n";
  }
  r = orchard_env({"rollout", "CartPole-v1", "--steps", "10", "--policy", path});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find(path + ":2: expected 1 value(s) for Discrete(2), got 2"), std::string::npos) << r.output;
  {
    std::ofstream(path) << "7\n";
  }
  r = orchard_env({"rollout", "CartPole-v1", "--steps", "10", "--policy", path});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("action 7 is outside Discrete(2)"), std::string::npos) << r.output;
}

TEST(EnvCli, BenchReportsStepsPerSecond) {
  auto r = orchard_env({"bench", "CartPole-v1", "--num-envs", "1", "8", "--seconds", "0.05", "--json"});
  ASSERT_EQ(r.code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[1]["num_envs"], 8);
  EXPECT_GT(j[1]["steps_per_s"].get<double>(), 1e5);
}

TEST(EnvCli, PluginsFromThePluginPathAppearAndBadOnesAreReported) {
  auto r = orchard_env({"list"}, {"ORCHARD_PLUGIN_PATH=" + test_plugin_dir()});
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("Flaky-v0  [plugin]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ABI version 99"), std::string::npos) << r.output;  // reported, not fatal
  auto check = orchard_env({"check", "Flaky-v0"}, {"ORCHARD_PLUGIN_PATH=" + test_plugin_dir()});
  EXPECT_EQ(check.code, 0) << check.output;
  auto failing = orchard_env({"rollout", "Flaky-v0", "--steps", "10", "-o", "fail=throw", "--plugin",
                              test_plugin_dir() + "/orchard_test_plugin_good.so"});
  EXPECT_EQ(failing.code, 1);
  EXPECT_NE(failing.output.find("step threw an exception across the plugin boundary: simulator crashed"),
            std::string::npos)
      << failing.output;
}
