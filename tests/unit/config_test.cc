#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "orchard/core/config.h"
#include "orchard/core/error.h"
#include "orchard/core/logging.h"

using orchard::ConfigError;
using orchard::core::ConfigNode;

namespace {

constexpr const char* kGoodSpec = R"(
name: cartpole-ppo
seed: 7
learning_rate: 2.5e-4
anneal: yes
logging:
  level: debug
  json: true
replay:
  shards: 2
  tables:
    - name: main
      max_size: 1000000
      sampler: prioritized
    - name: model
      max_size: 1e5
      sampler: uniform
hidden: [64, 64]
)";

// Runs `fn` and returns the ConfigError message it throws (fails the test if none).
template <class Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError";
  return "";
}

}  // namespace

TEST(Config, ReadsTypedValuesFromAGoodSpec) {
  auto spec = ConfigNode::load_string(kGoodSpec, "spec.yaml");
  EXPECT_EQ(spec.get_string("name"), "cartpole-ppo");
  EXPECT_EQ(spec.get_int("seed"), 7);
  EXPECT_DOUBLE_EQ(spec.get_double("learning_rate"), 2.5e-4);
  EXPECT_TRUE(spec.get_bool("anneal"));
  EXPECT_EQ(spec.get_int_list("hidden"), (std::vector<int64_t>{64, 64}));
  auto tables = spec["replay"]["tables"].elements();
  ASSERT_EQ(tables.size(), 2u);
  EXPECT_EQ(tables[0].get_int("max_size", 0, 1, 1'000'000'000), 1'000'000);
  EXPECT_EQ(tables[1].get_int("max_size", 0, 1, 1'000'000'000), 100'000);  // 1e5 is a whole number
  EXPECT_EQ(tables[1].get_choice("sampler", "uniform", {"uniform", "prioritized", "fifo", "lifo"}), "uniform");
  EXPECT_EQ(spec.get_int("missing_with_default", 42), 42);
  EXPECT_EQ(tables[1].path(), "replay.tables[1]");
}

TEST(Config, ParsesTheLoggingSection) {
  auto spec = ConfigNode::load_string(kGoodSpec, "spec.yaml");
  auto log = orchard::core::parse_log_options(spec["logging"]);
  EXPECT_EQ(log.level, "debug");
  EXPECT_TRUE(log.json);
  auto bad = ConfigNode::load_string("logging: {level: loud}", "spec.yaml");
  std::string msg = error_of([&] { orchard::core::parse_log_options(bad["logging"]); });
  EXPECT_NE(msg.find("logging.level"), std::string::npos) << msg;
  EXPECT_NE(msg.find("warn"), std::string::npos) << msg;
}

TEST(Config, MalformedYamlNamesFileAndLine) {
  std::string msg = error_of([] { ConfigNode::load_string("a: 1\nb: [1, 2\nc: 3\n", "broken.yaml"); });
  EXPECT_EQ(msg.rfind("broken.yaml:", 0), 0u) << msg;
  EXPECT_NE(msg.find("YAML syntax error"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
}

TEST(Config, UnknownKeyIsRejectedWithSuggestion) {
  auto spec = ConfigNode::load_string("replay:\n  shards: 1\n  tabels: []\n", "run.yaml");
  std::string msg = error_of([&] { spec["replay"].check_keys({"shards", "tables"}); });
  EXPECT_NE(msg.find("run.yaml:3:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key 'replay.tabels'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'tables'"), std::string::npos) << msg;
}

TEST(Config, WrongTypesNameTheKeyAndTheValue) {
  auto spec = ConfigNode::load_string("seed: seven\nrate: fast\nflag: maybe\nname: [a]\nlist: 3\n", "s.yaml");
  std::string msg = error_of([&] { spec.get_int("seed"); });
  EXPECT_NE(msg.find("s.yaml:1:7: seed: expected an integer, got 'seven'"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { spec.get_double("rate"); }).find("expected a number"), std::string::npos);
  EXPECT_NE(error_of([&] { spec.get_bool("flag"); }).find("expected true or false"), std::string::npos);
  EXPECT_NE(error_of([&] { spec.get_string("name"); }).find("expected a string, got a list"), std::string::npos);
  EXPECT_NE(error_of([&] { spec.get_int_list("list"); }).find("expected a list"), std::string::npos);
}

TEST(Config, OutOfRangeAndBadChoiceListTheAllowedValues) {
  auto spec = ConfigNode::load_string("shards: 0\nsampler: prioritised\ngamma: 1.5\n", "s.yaml");
  std::string msg = error_of([&] { spec.get_int("shards", 1, 1, 64); });
  EXPECT_NE(msg.find("shards: expected an integer in [1, 64], got 0"), std::string::npos) << msg;
  msg = error_of([&] { spec.get_choice("sampler", "uniform", {"uniform", "prioritized"}); });
  EXPECT_NE(msg.find("expected one of uniform, prioritized, got 'prioritised'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'prioritized'"), std::string::npos) << msg;
  msg = error_of([&] { spec.get_double("gamma", 0.99, 0.0, 1.0); });
  EXPECT_NE(msg.find("gamma: expected a number in [0, 1], got 1.5"), std::string::npos) << msg;
}

TEST(Config, MissingRequiredKeyNamesThePath) {
  auto spec = ConfigNode::load_string("env: {}\n", "s.yaml");
  std::string msg = error_of([&] { spec["env"].get_string("name"); });
  EXPECT_NE(msg.find("env.name: is required"), std::string::npos) << msg;
  msg = error_of([&] { spec["learner"]["optimizer"].get_double("lr"); });
  EXPECT_NE(msg.find("learner.optimizer.lr: is required"), std::string::npos) << msg;
}

TEST(Config, SectionThatIsNotAMapIsAnError) {
  auto spec = ConfigNode::load_string("replay: 3\n", "s.yaml");
  std::string msg = error_of([&] { spec["replay"].check_keys({"shards"}); });
  EXPECT_NE(msg.find("replay: expected a map"), std::string::npos) << msg;
  msg = error_of([&] { spec["replay"]["shards"]; });
  EXPECT_NE(msg.find("expected a map with key 'shards'"), std::string::npos) << msg;
}

TEST(Config, MissingFileIsAClearError) {
  std::string msg = error_of([] { ConfigNode::load_file("/nonexistent/run.yaml"); });
  EXPECT_EQ(msg, "/nonexistent/run.yaml: cannot open config file");
}

TEST(Config, AKeyGivenTwiceIsRefusedWithBothLines) {
  // yaml-cpp would answer with the first and drop the second without a word.
  EXPECT_EQ(error_of([] { ConfigNode::load_string("a: 1\nb:\n  c: 1\n  c: 2\n", "s.yaml"); }),
            "s.yaml:4:3: key 'b.c' is given twice (first at line 3)");
  EXPECT_EQ(error_of([] { ConfigNode::load_string("hosts:\n  - {name: a, name: b}\n", "s.yaml"); }),
            "s.yaml:2:15: key 'hosts[0].name' is given twice (first at line 2)");
  EXPECT_EQ(error_of([] { ConfigNode::load_string("x: 1\nx: 1\n", "s.yaml"); }),
            "s.yaml:2:1: key 'x' is given twice (first at line 1)");
  // The same key in different maps is fine.
  EXPECT_NO_THROW(ConfigNode::load_string("a: {k: 1}\nb: {k: 2}\nl: [{k: 1}, {k: 2}]\n", "s.yaml"));
}

TEST(Config, OnlyARegularFileOfSaneSizeIsLoaded) {
  EXPECT_EQ(error_of([] { ConfigNode::load_file("/tmp"); }), "/tmp: is a directory, not a config file");
  EXPECT_EQ(error_of([] { ConfigNode::load_file("/dev/zero"); }), "/dev/zero: not a regular file (a config file is YAML text)");
  std::string path = ::testing::TempDir() + "orchard_config_big.yaml";
  {
    std::ofstream out(path);
    out << "x: 1\n";
  }
  std::filesystem::resize_file(path, 17u << 20);
  EXPECT_NE(error_of([&] { ConfigNode::load_file(path); }).find("17825792 bytes is too large for a config file"), std::string::npos);
  std::remove(path.c_str());
}

TEST(Config, LoadsAFileAndReportsItsName) {
  std::string path = ::testing::TempDir() + "orchard_config_test.yaml";
  {
    std::ofstream(path) << "seed: x\n";
  }
  auto spec = ConfigNode::load_file(path);
  EXPECT_NE(error_of([&] { spec.get_int("seed"); }).find(path + ":1:7"), std::string::npos);
  std::remove(path.c_str());
}

TEST(Config, OverridesSetNestedKeysWithYamlTypes) {
  auto spec = ConfigNode::load_string(kGoodSpec, "spec.yaml");
  spec.apply_override("replay.shards=4");
  spec.apply_override("replay.tables[1].sampler=fifo");
  spec.apply_override("learner.device=cuda");  // creates missing maps
  spec.apply_override("hidden=[256, 256, 128]");
  EXPECT_EQ(spec["replay"].get_int("shards"), 4);
  EXPECT_EQ(spec["replay"]["tables"].elements()[1].get_string("sampler"), "fifo");
  EXPECT_EQ(spec["learner"].get_string("device"), "cuda");
  EXPECT_EQ(spec.get_int_list("hidden"), (std::vector<int64_t>{256, 256, 128}));
  EXPECT_NE(error_of([&] { spec.apply_override("replay.tables[5].name=x"); }).find("no element [5]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { spec.apply_override("novalue"); }).find("expected key.path=value"), std::string::npos);
  EXPECT_NE(error_of([&] { spec.apply_override("name.sub=1"); }).find("'name' is not a map"), std::string::npos);
  EXPECT_NE(error_of([&] { spec.apply_override("seed="); }).find("--set seed=: empty value"), std::string::npos);
  EXPECT_NE(error_of([&] { spec.apply_override("replay..shards=3"); }).find("empty key between dots"), std::string::npos);
  EXPECT_NE(error_of([&] { spec.apply_override(".seed=3"); }).find("empty key between dots"), std::string::npos);
  EXPECT_EQ(spec["replay"].get_int("shards"), 4);  // none of them changed anything
}

// An error about a value that came from --set names the --set, not a line of the file (where
// the value is not); values from the file keep their file:line:col.
TEST(Config, ErrorsAboutOverriddenValuesNameTheSetTheyCameFrom) {
  auto spec = ConfigNode::load_string(kGoodSpec, "spec.yaml");
  spec.apply_override("replay.shards=many");
  spec.apply_override("env={name: 7, options: {x: y}}");
  spec.apply_override("replay.tables[1].sampler=fifo");
  EXPECT_NE(error_of([&] { spec["replay"].get_int("shards"); }).find("--set replay.shards=many: replay.shards"),
            std::string::npos)
      << error_of([&] { spec["replay"].get_int("shards"); });
  // Under a map that --set replaced.
  EXPECT_NE(error_of([&] { spec["env"]["options"].get_int("x"); }).find("--set env={name: 7, options: {x: y}}: env.options.x"),
            std::string::npos)
      << error_of([&] { spec["env"]["options"].get_int("x"); });
  EXPECT_NE(spec["replay"]["tables"].elements()[1]["sampler"].where().find("--set replay.tables[1].sampler=fifo"),
            std::string::npos)
      << spec["replay"]["tables"].elements()[1]["sampler"].where();
  // Neighbours that the file set still point into the file.
  EXPECT_EQ(spec["replay"]["tables"].elements()[0].where().rfind("spec.yaml:", 0), 0u)
      << spec["replay"]["tables"].elements()[0].where();
  EXPECT_EQ(spec["seed"].where().rfind("spec.yaml:", 0), 0u) << spec["seed"].where();
  // The latest --set of a key wins.
  spec.apply_override("replay.shards=lots");
  EXPECT_NE(error_of([&] { spec["replay"].get_int("shards"); }).find("--set replay.shards=lots"), std::string::npos);
}

TEST(Config, EditDistanceSuggestsOnlyCloseWords) {
  EXPECT_EQ(orchard::core::edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(orchard::core::closest_match("shrads", {"shards", "tables"}).value_or(""), "shards");
  EXPECT_FALSE(orchard::core::closest_match("zzzzzz", {"shards", "tables"}).has_value());
}
