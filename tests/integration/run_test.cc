// Whole runs through real processes: `orchard run` starts a replay shard, the learner and two
// actors on loopback (plus its own redis-server), and the learner ends the run at the target.
// Also: a learner killed with SIGKILL comes back from its checkpoint and keeps learning, and
// specs or checkpoints that cannot work are refused with a clear error.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "support/child_process.h"

namespace fs = std::filesystem;
using orchard::testing::ChildProcess;
using orchard::testing::orchard_bin;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("orchard-run-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

std::string example(const std::string& name) { return std::string(ORCHARD_SOURCE_DIR) + "/examples/" + name; }

// Runs register in $ORCHARD_HOME/runs: keep the tests' registrations out of the user's home.
const std::vector<std::string> kEnv = {"ORCHARD_HOME=" + (fs::temp_directory_path() / "orchard-run-tests-home").string()};

}  // namespace

TEST(Run, QuickstartPpoReachesTheTargetThroughRealProcesses) {
  fs::path dir = fresh_dir("quickstart");
  ChildProcess run({orchard_bin("orchard"), "run", example("quickstart.yaml"), "--set", "run_dir=" + dir.string()}, kEnv);
  const int code = run.wait(300000);
  ASSERT_EQ(code, 0) << run.output();
  EXPECT_NE(run.output().find("finished: target_return"), std::string::npos) << run.output();
  auto result = read_json(dir / "result.json");
  EXPECT_EQ(result["reason"], "target_return");
  EXPECT_GE(result["eval_mean"].get<double>(), 475.0);
  EXPECT_TRUE(fs::exists(dir / "checkpoints" / "learner.pt"));
  // Both actors wrote experience and took weights from the learner.
  for (const char* a : {"actor-0.log", "actor-1.log"}) {
    std::ifstream in(dir / "logs" / a);
    std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::smatch m;
    ASSERT_TRUE(std::regex_search(log, m, std::regex("done: (\\d+) env steps, (\\d+) items, weights v(\\d+)"))) << log;
    EXPECT_GT(std::stoll(m[1]), 0);
    EXPECT_GT(std::stoll(m[2]), 0);
    EXPECT_GT(std::stoll(m[3]), 1);
  }
  fs::remove_all(dir);
}

TEST(Run, SacPendulumReachesMinus200ThroughRealProcesses) {
  fs::path dir = fresh_dir("sac");
  ChildProcess run({orchard_bin("orchard"), "run", example("sac-pendulum.yaml"), "--set", "run_dir=" + dir.string()}, kEnv);
  const int code = run.wait(600000);
  ASSERT_EQ(code, 0) << run.output();
  auto result = read_json(dir / "result.json");
  EXPECT_EQ(result["reason"], "target_return") << result.dump();
  EXPECT_GE(result["eval_mean"].get<double>(), -200.0);
  fs::remove_all(dir);
}

TEST(Run, LearnerKilledWithSigkillResumesFromItsCheckpointAndKeepsLearning) {
  fs::path dir = fresh_dir("resume");
  std::ofstream(dir / "spec.yaml") << "name: resume\nseed: 3\nenv: {name: CartPole-v1, num_envs: 8}\n"
                                      "ppo: {segment_length: 32}\n"
                                      "learner: {eval_every: 10, eval_episodes: 5, checkpoint_every_s: 0.2}\n"
                                      "actors: {count: 2}\nbudget: {updates: 80, wall_time_s: 300}\n"
                                      "run_dir: " << dir.string() << "\n";
  ChildProcess run({orchard_bin("orchard"), "run", (dir / "spec.yaml").string()}, kEnv);
  ASSERT_TRUE(run.wait_for_output("all processes ready", 60000)) << run.output();
  std::smatch m;
  std::string out = run.output();
  ASSERT_TRUE(std::regex_search(out, m, std::regex("learner-0: pid (\\d+)"))) << out;
  const pid_t learner = static_cast<pid_t>(std::stol(m[1]));
  // Wait for a checkpoint with some updates in it, then kill the learner without warning.
  int64_t updates_at_kill = 0;
  for (int i = 0; i < 600 && updates_at_kill < 20; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    try {
      if (fs::exists(dir / "checkpoints" / "learner.json"))
        updates_at_kill = read_json(dir / "checkpoints" / "learner.json")["updates"].get<int64_t>();
    } catch (const std::exception&) {
    }
  }
  ASSERT_GE(updates_at_kill, 20) << run.output();
  ASSERT_EQ(::kill(learner, SIGKILL), 0);
  const int code = run.wait(300000);
  ASSERT_EQ(code, 0) << run.output();
  EXPECT_NE(run.output().find("[restart] learner-0"), std::string::npos) << run.output();
  std::ifstream in(dir / "logs" / "learner-0.log");
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(std::regex_search(log, m, std::regex("resumed from .*: (\\d+) updates"))) << log;
  EXPECT_GE(std::stoll(m[1]), updates_at_kill);
  auto result = read_json(dir / "result.json");
  EXPECT_EQ(result["reason"], "updates");
  EXPECT_EQ(result["updates"].get<int64_t>(), 80);  // counted across the restart, not from zero
  EXPECT_GT(result["eval_mean"].get<double>(), 60.0);  // random play scores ~20
  fs::remove_all(dir);
}

TEST(Run, AlgorithmThatDoesNotFitTheEnvIsRefusedBeforeAnythingStarts) {
  fs::path dir = fresh_dir("bad");
  std::ofstream(dir / "spec.yaml") << "name: bad\nalgorithm: sac\nenv: {name: CartPole-v1}\nbudget: {env_steps: 10}\n"
                                      "run_dir: " << dir.string() << "/run\n";
  ChildProcess run({orchard_bin("orchard"), "run", (dir / "spec.yaml").string()}, kEnv);
  EXPECT_EQ(run.wait(60000), 2);  // a spec error
  EXPECT_NE(run.output().find("sac needs a bounded float32 Box action space"), std::string::npos) << run.output();
  EXPECT_FALSE(fs::exists(dir / "run" / "logs"));  // nothing was started
  fs::remove_all(dir);
}

// `orchard run NAME --resume` from another directory: relative run_dir and checkpoint_dir are
// where the run was started, not under the new working directory; and a directory named like
// the run (runs/<name> is the default run directory) does not shadow the name.
TEST(Run, ResumeByNameFromAnotherDirectoryFindsItsRelativeDirectories) {
  fs::path dir = fresh_dir("reldirs");
  fs::create_directories(dir / "first");
  fs::create_directories(dir / "second" / "relrun");
  std::ofstream(dir / "first" / "spec.yaml") << "name: relrun\nenv: {name: CartPole-v1, num_envs: 4}\n"
                                             << "ppo: {segment_length: 16}\nactors: {count: 1}\nbudget: {updates: 3}\n";
  auto in_dir = [&](const fs::path& cwd, const std::string& args) {
    return std::vector<std::string>{"/bin/sh", "-c", "cd '" + cwd.string() + "' && exec '" + orchard_bin("orchard") + "' " + args};
  };
  ChildProcess first(in_dir(dir / "first", "run spec.yaml --set run_dir=rel/r --set checkpoint_dir=ck"), kEnv);
  ASSERT_EQ(first.wait(120000), 0) << first.output();
  ASSERT_TRUE(fs::exists(dir / "first" / "ck" / "learner.pt"));
  ChildProcess again(in_dir(dir / "second", "run relrun --resume --set budget.updates=6"), kEnv);
  ASSERT_EQ(again.wait(120000), 0) << again.output();
  EXPECT_NE(again.output().find("checkpoint " + (dir / "first" / "ck" / "learner.pt").string()), std::string::npos)
      << again.output();
  EXPECT_EQ(read_json(dir / "first" / "rel" / "r" / "result.json")["updates"].get<int64_t>(), 6);
  EXPECT_FALSE(fs::exists(dir / "second" / "rel"));
  fs::remove_all(dir);
}

TEST(Run, CheckpointOfAnotherRunOrACorruptOneIsRefused) {
  fs::path dir = fresh_dir("ckpt");
  auto spec = [&](const std::string& name) {
    std::ofstream(dir / (name + ".yaml")) << "name: " << name << "\nenv: {name: CartPole-v1, num_envs: 4}\n"
                                          << "ppo: {segment_length: 16}\nactors: {count: 1}\n"
                                          << "budget: {updates: 3}\nrun_dir: " << dir.string() << "/run\n";
    return (dir / (name + ".yaml")).string();
  };
  ChildProcess first({orchard_bin("orchard"), "run", spec("alpha")}, kEnv);
  ASSERT_EQ(first.wait(120000), 0) << first.output();
  // Same directory, another run: refused before anything starts, as the learner would refuse it.
  ChildProcess other({orchard_bin("orchard"), "run", spec("beta"), "--resume", "--max-restarts", "0"}, kEnv);
  EXPECT_EQ(other.wait(120000), 2);
  EXPECT_NE(other.output().find("belongs to run 'alpha'"), std::string::npos) << other.output();
  EXPECT_EQ(other.output().find("ready"), std::string::npos) << other.output();  // nothing was started
  // Another model for the same run (wider layers): refused the same way, naming both models.
  ChildProcess wider({orchard_bin("orchard"), "run", spec("alpha"), "--resume", "--set", "ppo.hidden=[32, 32]",
                      "--set", "budget.updates=6"},
                     kEnv);
  EXPECT_EQ(wider.wait(120000), 2);
  EXPECT_NE(wider.output().find("hidden [32, 32]"), std::string::npos) << wider.output();
  // Without --resume an existing checkpoint is never silently replaced.
  ChildProcess again({orchard_bin("orchard"), "run", spec("alpha")}, kEnv);
  EXPECT_EQ(again.wait(60000), 2);  // refused: nothing started
  EXPECT_NE(again.output().find("use --resume"), std::string::npos) << again.output();
  // Damaged checkpoint files, each refused before anything starts: bytes overwritten inside a
  // tensor (the zip entry's CRC-32 no longer matches), one byte cut off the end, a torn file.
  const fs::path pt = dir / "run" / "checkpoints" / "learner.pt";
  fs::copy_file(pt, dir / "good.pt");
  const auto size = fs::file_size(pt);
  auto resume_damaged = [&] {
    ChildProcess r({orchard_bin("orchard"), "run", spec("alpha"), "--resume", "--set", "budget.updates=6"}, kEnv);
    EXPECT_EQ(r.wait(120000), 1);
    EXPECT_EQ(r.output().find("ready"), std::string::npos) << r.output();
    return r.output();
  };
  {
    std::fstream f(pt, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(size / 2));
    f.write("XXXXXXXX", 8);
  }
  EXPECT_NE(resume_damaged().find("is damaged: "), std::string::npos);  // a checksum, or a header it hit
  fs::copy_file(dir / "good.pt", pt, fs::copy_options::overwrite_existing);
  fs::resize_file(pt, size - 1);
  EXPECT_NE(resume_damaged().find("is damaged: the archive is cut short"), std::string::npos);
  // A torn checkpoint file: a clear error, no silent reinitialisation.
  fs::resize_file(dir / "run" / "checkpoints" / "learner.pt", 100);
  ChildProcess torn({orchard_bin("orchard"), "run", spec("alpha"), "--resume", "--max-restarts", "0", "--set",
                     "budget.updates=6"},
                    kEnv);
  EXPECT_EQ(torn.wait(120000), 1);
  EXPECT_NE(torn.output().find("learner.pt' is damaged: the archive is cut short"), std::string::npos) << torn.output();
  EXPECT_EQ(torn.output().find("ready"), std::string::npos) << torn.output();
  // Unreadable metadata: named, before anything starts.
  std::ofstream(dir / "run" / "checkpoints" / "learner.json", std::ios::trunc) << "{\"run\": ";
  ChildProcess garbled({orchard_bin("orchard"), "run", spec("alpha"), "--resume", "--set", "budget.updates=6"}, kEnv);
  EXPECT_EQ(garbled.wait(120000), 1);
  EXPECT_NE(garbled.output().find("learner.json' is unreadable"), std::string::npos) << garbled.output();
  fs::remove_all(dir);
}
