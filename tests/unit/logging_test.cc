#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "orchard/core/error.h"
#include "orchard/core/logging.h"

using namespace orchard::core;

namespace {
std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

TEST(Logging, JsonLinesEscapeTheMessageAndNameTheProcess) {
  std::string path = ::testing::TempDir() + "orchard_log_test.jsonl";
  std::remove(path.c_str());
  init_logging({"actor-3", "info", /*json=*/true, path, /*to_stderr=*/false});
  spdlog::info("quote \" backslash \\ newline \n tab \t done");
  spdlog::debug("below the level");
  spdlog::default_logger()->flush();
  std::string text = read_file(path);
  EXPECT_NE(text.find("\"proc\":\"actor-3\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"level\":\"info\""), std::string::npos) << text;
  EXPECT_NE(text.find(R"("msg":"quote \" backslash \\ newline \n tab \t done")"), std::string::npos) << text;
  EXPECT_EQ(text.find("below the level"), std::string::npos);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
  init_logging({});
}

TEST(Logging, TextLinesCarryTheProcessNameAndPid) {
  std::string path = ::testing::TempDir() + "orchard_log_test.txt";
  std::remove(path.c_str());
  init_logging({"replay-0", "debug", false, path, false});
  spdlog::debug("hello {}", 42);
  spdlog::default_logger()->flush();
  std::string text = read_file(path);
  EXPECT_NE(text.find(" D replay-0 [pid "), std::string::npos) << text;
  EXPECT_NE(text.find("hello 42"), std::string::npos) << text;
  init_logging({});
}

TEST(Logging, BadLevelOrFileIsAConfigError) {
  EXPECT_THROW(init_logging({"x", "verbose", false, "", true}), orchard::ConfigError);
  EXPECT_THROW(init_logging({"x", "info", false, "/proc/version/x.log", true}), orchard::ConfigError);
  try {
    parse_log_level("loud");
  } catch (const orchard::ConfigError& e) {
    EXPECT_STREQ(e.what(), "log level 'loud' is not one of trace, debug, info, warn, error, critical, off");
  }
}

TEST(Logging, JsonEscapeHandlesControlCharacters) {
  EXPECT_EQ(json_escape(std::string("a\x01" "b", 3)), "a\\u0001b");
  EXPECT_EQ(json_escape("plain"), "plain");
}
