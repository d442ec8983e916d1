#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include "orchard/core/wire.h"
#include "support/child_process.h"

using orchard::testing::ChildProcess;
using orchard::testing::orchard_bin;

namespace {

struct Run {
  int code;
  std::string output;
};

Run run_orchard(const std::vector<std::string>& args, int timeout_ms = 60000) {
  std::vector<std::string> argv = {orchard_bin("orchard")};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess p(argv);
  int code = p.wait(timeout_ms);
  return {code, p.output()};
}

}  // namespace

TEST(Cli, VersionPrintsVersionAndProtocol) {
  auto r = run_orchard({"--version"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.output.rfind("orchard 0.1.0 (", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("protocol 1"), std::string::npos);
  EXPECT_EQ(run_orchard({"version"}).output, r.output);
}

TEST(Cli, HelpListsTheSubcommands) {
  auto r = run_orchard({"help"});
  EXPECT_EQ(r.code, 0);
  for (const char* cmd : {"doctor", "selfcheck", "version", "help"}) {
    EXPECT_NE(r.output.find(cmd), std::string::npos) << cmd << "\n" << r.output;
  }
}

TEST(Cli, UnknownCommandIsAOneLineErrorWithExitCode2) {
  auto r = run_orchard({"frobnicate"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("frobnicate"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("run 'orchard help'"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

TEST(Cli, BadOptionValueIsRejected) {
  auto r = run_orchard({"selfcheck", "--batches", "zero"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("--batches"), std::string::npos) << r.output;
}

TEST(Cli, DoctorReportsOpenBlasAndAHealthyInstall) {
  auto r = run_orchard({"doctor", "--json"}, 120000);
  ASSERT_EQ(r.code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  EXPECT_TRUE(j["healthy"].get<bool>());
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& c : j["checks"]) by_name[c["name"].get<std::string>()] = c;
  for (const char* name : {"LibTorch", "LibTorch threads", "BLAS", "CUDA", "NCCL", "ZeroMQ", "Protobuf", "hiredis",
                           "Boost", "redis-server"}) {
    EXPECT_TRUE(by_name.count(name)) << name;
  }
  // install-deps.sh selects OpenBLAS; doctor must see it actually loaded by LibTorch.
  EXPECT_EQ(by_name["BLAS"]["status"], "ok") << by_name["BLAS"].dump();
  EXPECT_NE(by_name["BLAS"]["value"].get<std::string>().find("openblas"), std::string::npos);
  EXPECT_NE(by_name["ZeroMQ"]["value"].get<std::string>().find("CURVE available"), std::string::npos);
  auto text = run_orchard({"doctor"}, 120000);
  EXPECT_NE(text.output.find("doctor: all required checks passed"), std::string::npos) << text.output;
}

TEST(Cli, SelfcheckStreamsBetweenTwoProcessesAndPasses) {
  auto r = run_orchard({"selfcheck", "--batches", "300", "--items", "64", "--credits", "4"});
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("selfcheck: 300 batches, 19200 transitions"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1 malformed message(s) rejected with an error reply, 0 corrupt values"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("selfcheck: PASSED"), std::string::npos) << r.output;
}

TEST(Cli, SelfcheckWithUnreachableRedisFailsWithOneLine) {
  auto r = run_orchard({"selfcheck", "--redis", "redis://127.0.0.1:1/0"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("orchard: redis redis://127.0.0.1:1/0: connection refused"), std::string::npos) << r.output;
  auto bad = run_orchard({"selfcheck", "--redis", "http://x"});
  EXPECT_EQ(bad.code, 2);  // bad input
  EXPECT_NE(bad.output.find("http://x"), std::string::npos) << bad.output;
}

TEST(Cli, SelfcheckStopsCleanlyOnSigint) {
  ChildProcess p({orchard_bin("orchard"), "selfcheck", "--batches", "100000000", "--items", "16"});
  ASSERT_TRUE(p.wait_for_output("shard listening", 20000)) << p.output();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(20000), 0) << p.output();
  EXPECT_NE(p.output().find("interrupted, stopped cleanly"), std::string::npos) << p.output();
}

TEST(Cli, KeysWritesALoadableCurvePairAndNeverOverwrites) {
  std::string dir = ::testing::TempDir() + "orchard-keys-" + std::to_string(::getpid());
  std::string mk = "mkdir -p " + dir;
  ASSERT_EQ(std::system(mk.c_str()), 0);
  auto r = run_orchard({"keys", "replay", "--dir", dir});
  ASSERT_EQ(r.code, 0) << r.output;
  auto pair = orchard::core::load_curve_keys(dir + "/replay.key", true);
  auto pub = orchard::core::load_curve_keys(dir + "/replay.pub", false);
  EXPECT_EQ(pair.public_key, pub.public_key);
  EXPECT_TRUE(pub.secret_key.empty());
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/replay.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto again = run_orchard({"keys", "replay", "--dir", dir});
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.output.find("already exists"), std::string::npos) << again.output;
  std::string rm = "rm -rf " + dir;
  (void)!std::system(rm.c_str());
}
