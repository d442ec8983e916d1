// The orchestrator with real runs: processes killed with SIGKILL mid-run come back and the run
// finishes; actors scaled up and down through `orchard up/scale/status/logs/top/stop`; Redis
// going down and coming back mid-run; invalid specs refused before anything starts; and no
// process left behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "orchard/core/net.h"
#include "orchard/core/redis.h"
#include "orchard/core/wire.h"
#include "orchard/replay/client.h"
#include "support/child_process.h"
#include "support/redis_server.h"

namespace fs = std::filesystem;
using orchard::testing::ChildProcess;
using orchard::testing::orchard_bin;

namespace {

struct Dir {
  fs::path path;
  explicit Dir(const std::string& name) {
    path = fs::temp_directory_path() / ("orchard-orch-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~Dir() { fs::remove_all(path); }
};

// Every "[start] NAME: pid N" line of an orchard run's output.
std::map<pid_t, std::string> started(const std::string& out) {
  std::map<pid_t, std::string> pids;
  std::regex re("\\[start\\] ([a-z]+-[0-9]+): pid ([0-9]+)");
  for (std::sregex_iterator it(out.begin(), out.end(), re), end; it != end; ++it)
    pids[static_cast<pid_t>(std::stol((*it)[2]))] = (*it)[1];
  return pids;
}

void expect_no_orphans(const std::string& out) {
  for (const auto& [pid, name] : started(out)) EXPECT_NE(::kill(pid, 0), 0) << name << " pid " << pid << " still alive";
}

pid_t latest_pid(const std::string& out, const std::string& name) {
  pid_t pid = -1;
  for (const auto& [p, n] : started(out))
    if (n == name) pid = std::max(pid, p);
  return pid;
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

// Updates in the learner's latest checkpoint metadata (0 before the first).
int64_t checkpoint_updates(const fs::path& run_dir) {
  try {
    return read_json(run_dir / "checkpoints" / "learner.json")["updates"].get<int64_t>();
  } catch (const std::exception&) {
    return 0;
  }
}

std::string ppo_spec(const fs::path& dir, const std::string& name, const std::string& budget,
                     const std::string& extra = "") {
  std::ofstream(dir / "spec.yaml") << "name: " << name << "\nseed: 2\nenv: {name: CartPole-v1, num_envs: 4}\n"
                                   << "ppo: {segment_length: 32}\nlearner: {eval_every: 10, eval_episodes: 3, "
                                   << "checkpoint_every_s: 0.3, report_every_s: 0.5}\nactors: {count: 2, report_every_s: 0.5}\n"
                                   << "budget: " << budget << "\nrun_dir: " << (dir / "run").string() << "\n" << extra;
  return (dir / "spec.yaml").string();
}

std::vector<std::string> home_env(const fs::path& dir) { return {"ORCHARD_HOME=" + (dir / "home").string()}; }

bool wait_until(const std::function<bool()>& f, int timeout_ms) {
  for (int i = 0; i < timeout_ms / 50; ++i) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return f();
}

}  // namespace

TEST(Orchestrator, ActorShardAndLearnerKilledMidRunComeBackAndTheRunFinishes) {
  Dir d("kill");
  ChildProcess run({orchard_bin("orchard"), "run", ppo_spec(d.path, "kill", "{updates: 150, wall_time_s: 300}")},
                   home_env(d.path));
  ASSERT_TRUE(run.wait_for_output("all processes ready", 60000)) << run.output();
  auto learner_updates = [&] { return checkpoint_updates(d.path / "run"); };
  ASSERT_TRUE(wait_until([&] { return learner_updates() >= 10; }, 60000)) << run.output();
  ASSERT_EQ(::kill(latest_pid(run.output(), "actor-1"), SIGKILL), 0);
  ASSERT_TRUE(run.wait_for_output("[restart] actor-1", 20000)) << run.output();
  ASSERT_EQ(::kill(latest_pid(run.output(), "replay-0"), SIGKILL), 0);
  ASSERT_TRUE(run.wait_for_output("[restart] replay-0", 20000)) << run.output();
  const int64_t before = learner_updates();
  ASSERT_TRUE(wait_until([&] { return learner_updates() > before + 5; }, 90000)) << run.output();
  ASSERT_EQ(::kill(latest_pid(run.output(), "learner-0"), SIGKILL), 0);
  ASSERT_TRUE(run.wait_for_output("[restart] learner-0", 20000)) << run.output();
  EXPECT_EQ(run.wait(300000), 0) << run.output();
  auto result = read_json(d.path / "run" / "result.json");
  EXPECT_EQ(result["reason"], "updates");
  EXPECT_EQ(result["updates"].get<int64_t>(), 150);
  expect_no_orphans(run.output());
}

TEST(Orchestrator, UpScaleStatusLogsTopStopThroughTheCli) {
  Dir d("cli");
  const auto env = home_env(d.path);
  auto orchard = [&](std::vector<std::string> args, int timeout_ms = 60000) {
    args.insert(args.begin(), orchard_bin("orchard"));
    ChildProcess p(args, env);
    const int code = p.wait(timeout_ms);
    return std::make_pair(code, p.output());
  };
  auto up = orchard({"up", ppo_spec(d.path, "clirun", "{wall_time_s: 240}")}, 120000);
  ASSERT_EQ(up.first, 0) << up.second;
  EXPECT_NE(up.second.find("run clirun is up"), std::string::npos) << up.second;

  auto list = orchard({"status"});
  EXPECT_NE(list.second.find("clirun"), std::string::npos) << list.second;
  EXPECT_NE(list.second.find("running"), std::string::npos) << list.second;
  // A second orchestrator for the same run is refused (it would share the run's files).
  auto twice = orchard({"run", (d.path / "spec.yaml").string()});
  EXPECT_EQ(twice.first, 1) << twice.second;
  EXPECT_NE(twice.second.find("run 'clirun' is already running"), std::string::npos) << twice.second;

  auto scale = orchard({"scale", "clirun", "actors=3"});
  ASSERT_EQ(scale.first, 0) << scale.second;
  std::string status;
  ASSERT_TRUE(wait_until(
      [&] {
        status = orchard({"status", "clirun"}).second;
        return status.find("actor-2     running") != std::string::npos;
      },
      30000))
      << status;
  EXPECT_NE(status.find("[scale] actors: 2 -> 3"), std::string::npos) << status;
  EXPECT_NE(status.find("learner-0   running"), std::string::npos) << status;
  EXPECT_NE(status.find("\n  redis redis://127.0.0.1:"), std::string::npos) << status;  // where redis-cli goes

  auto down = orchard({"scale", "clirun", "actors=1"});
  ASSERT_EQ(down.first, 0) << down.second;
  ASSERT_TRUE(wait_until(
      [&] {
        status = orchard({"status", "clirun"}).second;
        return status.find("actor-2     exited") != std::string::npos &&
               status.find("actor-1     exited") != std::string::npos;
      },
      30000))
      << status;
  EXPECT_NE(status.find("actor-0     running"), std::string::npos) << status;
  // An exited actor has no pid and no current figures.
  EXPECT_TRUE(std::regex_search(status, std::regex("actor-2     exited    -        0        -          -           -         -")))
      << status;
  // The removed actors flushed and exited 0 (scale-down is not a crash: no restart).
  EXPECT_EQ(status.find("[restart]"), std::string::npos) << status;

  // Per host: two actors on this machine (the only host of this run).
  auto local = orchard({"scale", "clirun", "actors@local=2"});
  ASSERT_EQ(local.first, 0) << local.second;
  ASSERT_TRUE(wait_until(
      [&] {
        status = orchard({"status", "clirun"}).second;
        return status.find("actor-3     running") != std::string::npos;
      },
      30000))
      << status;
  EXPECT_NE(status.find("actors 2"), std::string::npos) << status;
  auto nohost = orchard({"scale", "clirun", "actors@gpu-box=2"});
  EXPECT_EQ(nohost.first, 2);
  EXPECT_NE(nohost.second.find("has no host 'gpu-box'"), std::string::npos) << nohost.second;
  // More actors than the machine should run: refused at once, with the limit.
  const int too_many = 16 * static_cast<int>(std::thread::hardware_concurrency()) + 1;
  auto big = orchard({"scale", "clirun", "actors=" + std::to_string(too_many)});
  EXPECT_EQ(big.first, 2);
  EXPECT_NE(big.second.find(std::to_string(too_many) + " actors on this machine"), std::string::npos) << big.second;
  EXPECT_NE(big.second.find("(at most 16 actors per CPU)"), std::string::npos) << big.second;
  // Its only host emptied: refused, the run keeps its actors.
  auto none = orchard({"scale", "clirun", "actors@local=0"});
  EXPECT_EQ(none.first, 2);
  EXPECT_NE(none.second.find("actors@local=0: it would leave the run with no actor"), std::string::npos) << none.second;

  auto top = orchard({"top", "clirun", "--once"});
  EXPECT_EQ(top.first, 0) << top.second;
  EXPECT_NE(top.second.find("PROCESS"), std::string::npos) << top.second;
  EXPECT_NE(top.second.find("updates"), std::string::npos) << top.second;
  // The learner's time split from its train metrics (the update always takes a share).
  EXPECT_TRUE(std::regex_search(top.second, std::regex("time: .*update [0-9]+%"))) << top.second;

  auto logs = orchard({"logs", "clirun", "learner-0", "-n", "5"});
  EXPECT_EQ(logs.first, 0) << logs.second;
  EXPECT_NE(logs.second.find("learner-0"), std::string::npos) << logs.second;
  auto bad = orchard({"scale", "clirun", "actors=lots"});
  EXPECT_EQ(bad.first, 2);  // bad input
  EXPECT_NE(bad.second.find("expected actors=N"), std::string::npos) << bad.second;

  // Following a log ends by itself when the run ends.
  ChildProcess follow({orchard_bin("orchard"), "logs", "clirun", "learner-0", "-f", "-n", "1"}, env);
  auto stop = orchard({"stop", "clirun"}, 120000);
  EXPECT_EQ(stop.first, 0) << stop.second;
  EXPECT_EQ(follow.wait(10000), 0) << follow.output();
  EXPECT_NE(follow.output().find("orchard logs: run clirun has ended (stopped)"), std::string::npos) << follow.output();
  auto after = orchard({"status"});
  EXPECT_NE(after.second.find("stopped"), std::string::npos) << after.second;
  // Its embedded Redis is gone with it: status and top say how it ended from the registry and
  // result.json, stop says it has already ended, scale refuses.
  for (const char* cmd : {"status", "top"}) {
    auto ended = orchard({cmd, "clirun"});
    EXPECT_EQ(ended.first, 0) << cmd << ": " << ended.second;
    EXPECT_NE(ended.second.find("run clirun  status stopped"), std::string::npos) << ended.second;
    EXPECT_NE(ended.second.find("ended: stopped (exit 130)"), std::string::npos) << ended.second;
    EXPECT_NE(ended.second.find("checkpoint " + (d.path / "run" / "checkpoints" / "learner.pt").string()),
              std::string::npos)
        << ended.second;
  }
  auto again = orchard({"stop", "clirun"});
  EXPECT_EQ(again.first, 0) << again.second;
  EXPECT_NE(again.second.find("run clirun has already ended (stopped)"), std::string::npos) << again.second;
  auto late = orchard({"scale", "clirun", "actors=2"});
  EXPECT_EQ(late.first, 1) << late.second;
  EXPECT_NE(late.second.find("run 'clirun' has ended (stopped); only a running run can be scaled"), std::string::npos)
      << late.second;
  // The orchestrator's own log lists every process it started; none is left.
  std::ifstream in(d.path / "run" / "orchard.log");
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  expect_no_orphans(log);
  auto unknown = orchard({"status", "no-such-run"});
  EXPECT_NE(unknown.first, 0);
  EXPECT_NE(unknown.second.find("no run named 'no-such-run'"), std::string::npos) << unknown.second;
}

TEST(Orchestrator, RedisDownAndBackMidRunTheRunKeepsGoingAndMetricsResume) {
  Dir d("redis");
  orchard::testing::RedisServer redis;
  ChildProcess run({orchard_bin("orchard"), "run", ppo_spec(d.path, "redisrun", "{updates: 1500, wall_time_s: 300}"),
                    "--redis", redis.url()},
                   home_env(d.path));
  ASSERT_TRUE(run.wait_for_output("all processes ready", 60000)) << run.output();
  orchard::core::RedisClient c(orchard::core::RedisOptions::from_url(redis.url()));
  ASSERT_TRUE(wait_until([&] { return c.command({"XLEN", "orchard:run:redisrun:metrics:learner"}).integer > 0; }, 30000));
  redis.stop();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  redis.start();  // same port, empty (no persistence)
  orchard::core::RedisClient c2(orchard::core::RedisOptions::from_url(redis.url()));
  ASSERT_TRUE(wait_until([&] { return c2.command({"XLEN", "orchard:run:redisrun:metrics:actor"}).integer > 0; }, 60000))
      << run.output();
  EXPECT_EQ(run.wait(300000), 0) << run.output();
  EXPECT_NE(run.output().find("[redis]"), std::string::npos) << run.output();  // it noticed
  EXPECT_EQ(run.output().find("[restart]"), std::string::npos) << run.output();  // nobody was killed for it
  EXPECT_EQ(c2.command({"HGET", "orchard:run:redisrun", "status"}).str, "finished");
  expect_no_orphans(run.output());
}

// Ctrl-C on `orchard up` before the run is up stops the run it started, in order, rather than
// leaving it running half up.
TEST(Orchestrator, UpInterruptedBeforeTheRunIsUpStopsIt) {
  Dir d("upint");
  ChildProcess up({orchard_bin("orchard"), "up", ppo_spec(d.path, "uprun", "{wall_time_s: 240}")}, home_env(d.path));
  const fs::path entry = d.path / "home" / "runs" / "uprun.json";
  ASSERT_TRUE(wait_until(
      [&] {
        try {
          return read_json(entry).value("status", "") == "starting";
        } catch (const std::exception&) {
          return false;
        }
      },
      60000));
  up.signal(SIGINT);
  EXPECT_EQ(up.wait(120000), 130) << up.output();
  EXPECT_NE(up.output().find("orchard up: interrupted; run uprun was stopped"), std::string::npos) << up.output();
  const auto after = read_json(entry);
  EXPECT_EQ(after.value("status", ""), "stopped") << after.dump();
  EXPECT_NE(::kill(after.value("pid", 0), 0), 0) << "the orchestrator is still running";
  std::ifstream in(d.path / "run" / "orchard.log");
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  expect_no_orphans(log);
}

// A run shorter than every report interval still leaves each process's figures in the user's
// Redis (a last entry at exit), events carry their time, the registry records how the run
// ended, and `orchard status` reads all of it back.
TEST(Orchestrator, AShortRunLeavesEveryStreamAndItsEndInTheUsersRedis) {
  Dir d("short");
  orchard::testing::RedisServer redis;
  std::ofstream(d.path / "spec.yaml") << "name: shortrun\nseed: 3\nenv: {name: CartPole-v1, num_envs: 4}\n"
                                      << "ppo: {segment_length: 32}\nlearner: {report_every_s: 60}\n"
                                      << "actors: {count: 1, report_every_s: 60}\nbudget: {updates: 3, wall_time_s: 120}\n"
                                      << "logging: {json: true, file: all.log}\n"
                                      << "run_dir: " << (d.path / "run").string() << "\n";
  ChildProcess run({orchard_bin("orchard"), "run", (d.path / "spec.yaml").string(), "--redis", redis.url()},
                   home_env(d.path));
  ASSERT_EQ(run.wait(120000), 0) << run.output();
  // The spec's logging section reached every process: JSON lines in each log, and all of them in
  // the shared file (relative to run_dir).
  auto text = [](const fs::path& p) {
    std::ifstream in(p);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  EXPECT_NE(text(d.path / "run" / "logs" / "learner-0.log").find("\"level\":\"info\",\"proc\":\"learner-0\""),
            std::string::npos);
  const std::string all = text(d.path / "run" / "all.log");
  for (const char* proc : {"learner-0", "actor-0", "replay-0"})
    EXPECT_NE(all.find(std::string("\"proc\":\"") + proc + "\""), std::string::npos) << proc << "\n" << all;
  orchard::core::RedisClient c(orchard::core::RedisOptions::from_url(redis.url()));
  auto entries = [&](const std::string& stream) { return c.command({"XRANGE", stream, "-", "+"}).elements; };
  auto has = [](const orchard::core::RedisReply& entry, const std::string& name, const std::string& value = "") {
    const auto& f = entry.elements.at(1).elements;
    for (size_t i = 0; i + 1 < f.size(); i += 2)
      if (f[i].str == name && (value.empty() || f[i + 1].str == value)) return true;
    return false;
  };
  const auto learner = entries("orchard:run:shortrun:metrics:learner");
  ASSERT_FALSE(learner.empty());
  EXPECT_TRUE(has(learner.back(), "kind", "train") && has(learner.back(), "updates", "3") &&
              has(learner.back(), "weights_version"));
  const auto actor = entries("orchard:run:shortrun:metrics:actor");
  ASSERT_FALSE(actor.empty()) << run.output();
  EXPECT_TRUE(has(actor.back(), "actor", "0") && has(actor.back(), "env_steps") && has(actor.back(), "ts_ms"));
  const auto replay = entries("orchard:run:shortrun:metrics:replay");
  ASSERT_FALSE(replay.empty());
  EXPECT_TRUE(has(replay.back(), "shard") && has(replay.back(), "size"));
  const auto events = entries("orchard:run:shortrun:events");
  ASSERT_FALSE(events.empty());
  for (const auto& e : events) EXPECT_TRUE(has(e, "ts_ms") && has(e, "kind") && has(e, "proc"));
  const auto entry = read_json(d.path / "home" / "runs" / "shortrun.json");
  EXPECT_EQ(entry["status"], "finished");
  EXPECT_EQ(entry["exit_code"], 0);
  EXPECT_EQ(entry["reason"], "updates");
  EXPECT_NE(run.output().find("run shortrun finished: updates budget used up"), std::string::npos) << run.output();
  ChildProcess status({orchard_bin("orchard"), "status", "shortrun"}, home_env(d.path));
  ASSERT_EQ(status.wait(30000), 0) << status.output();
  EXPECT_NE(status.output().find("ended: updates (exit 0)"), std::string::npos) << status.output();
  EXPECT_NE(status.output().find("replay    replay-0 table segments size"), std::string::npos) << status.output();
  EXPECT_NE(status.output().find("redis " + redis.url()), std::string::npos) << status.output();
  expect_no_orphans(run.output());
}

// A process's fatal error is a log line like the others: with the spec's logging (JSON, a shared
// file) it is a JSON line at level critical, in its log and in the shared file.
TEST(Orchestrator, AProcessesFatalErrorIsALogLineInTheSpecsFormat) {
  Dir d("fatal");
  std::ofstream(d.path / "spec.yaml") << "name: fatal\nenv: {name: CartPole-v1}\nbudget: {updates: 1}\n"
                                      << "logging: {json: true, file: all.log}\nrun_dir: " << (d.path / "run").string()
                                      << "\n";
  fs::create_directories(d.path / "run");
  // A learner given a spec without the endpoints `orchard run` fills in: it fails after reading
  // the spec's logging section.
  ChildProcess learner({orchard_bin("orchard-learner"), "--spec", (d.path / "spec.yaml").string()});
  EXPECT_EQ(learner.wait(30000), 1);
  EXPECT_TRUE(std::regex_search(learner.output(), std::regex("\\{\"ts\":\"[^\"]+\",\"level\":\"critical\",\"proc\":"
                                                             "\"learner-0\",.*\"msg\":\"orchard-learner: [^\"]*"
                                                             "endpoints.replay and endpoints.weights are required")))
      << learner.output();
  std::ifstream in(d.path / "run" / "all.log");
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(all.find("\"level\":\"critical\""), std::string::npos) << all;
}

// The embedded Redis is the run's own: killed mid-run, it is started again on its port with its
// data (append-only file), so `orchard status` still shows the run's history and `orchard stop`
// still reaches it.
TEST(Orchestrator, AKilledEmbeddedRedisIsStartedAgainWithTheRunsData) {
  Dir d("redisback");
  std::ofstream(d.path / "spec.yaml") << "name: redisback\nenv: {name: CartPole-v1, num_envs: 4}\n"
                                      << "ppo: {segment_length: 32}\nactors: {count: 1, report_every_s: 1}\n"
                                      << "learner: {report_every_s: 1}\nbudget: {wall_time_s: 300}\n"
                                      << "run_dir: " << (d.path / "run").string() << "\n";
  ChildProcess run({orchard_bin("orchard"), "run", (d.path / "spec.yaml").string()}, home_env(d.path));
  ASSERT_TRUE(run.wait_for_output("all processes ready", 60000)) << run.output();
  // The orchestrator's redis-server child.
  pid_t redis_pid = -1;
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::ifstream stat(e.path() / "stat");
    std::string line;
    if (!std::getline(stat, line) || line.find("(redis-server)") == std::string::npos) continue;
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    char state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == run.pid()) redis_pid = std::stoi(e.path().filename().string());
  }
  ASSERT_GT(redis_pid, 0) << "no redis-server child of the orchestrator";
  ASSERT_EQ(::kill(redis_pid, SIGKILL), 0);
  ASSERT_TRUE(run.wait_for_output("[redis] redis-server started again", 30000)) << run.output();
  EXPECT_NE(run.output().find("was killed by signal 9; starting it again"), std::string::npos) << run.output();
  // The history from before the kill is there, and the run carries on reporting.
  ChildProcess status({orchard_bin("orchard"), "status", "redisback"}, home_env(d.path));
  ASSERT_EQ(status.wait(30000), 0) << status.output();
  EXPECT_NE(status.output().find("status running"), std::string::npos) << status.output();
  EXPECT_NE(status.output().find("[ready] actor-0"), std::string::npos) << status.output();
  EXPECT_NE(status.output().find("embedded redis-server was killed by signal 9; started again"), std::string::npos)
      << status.output();
  ChildProcess stop({orchard_bin("orchard"), "stop", "redisback"}, home_env(d.path));
  EXPECT_EQ(stop.wait(60000), 0) << stop.output();
  run.wait_for_output("run redisback stopped", 5000);
  EXPECT_NE(run.output().find("run redisback stopped"), std::string::npos) << run.output();
  EXPECT_EQ(run.wait(120000), 130) << run.output();
  EXPECT_EQ(run.output().find("[hung]"), std::string::npos) << run.output();  // heartbeats were not held against them
  expect_no_orphans(run.output());
}

// `orchard status` against a Redis holding a run's records (written here as the orchestrator
// and processes write them): the policy lag compares an actor's weights with the learner's at
// the moment of the actor's report, interpolated between the learner's reports; exited
// processes show no pid or figures; a password in the URL is not shown.
TEST(Orchestrator, StatusMeasuresPolicyLagAtTheActorsReportTime) {
  Dir d("lag");
  orchard::testing::RedisServer redis("s3cret-pass");
  orchard::core::RedisClient c(orchard::core::RedisOptions::from_url(redis.url()));
  const std::string run = "orchard:run:lagrun";
  c.command({"HSET", run, "status", "running", "algorithm", "ppo", "env", "CartPole-v1", "actors", "3", "run_dir", "/x"});
  c.command({"SADD", run + ":procs", "learner-0", "actor-0", "actor-1", "actor-2", "actor-10"});
  c.command({"HSET", run + ":proc:actor-10", "state", "exited", "pid", "-1", "restarts", "0"});
  c.command({"HSET", run + ":proc:learner-0", "state", "running", "pid", "4242", "restarts", "0"});
  c.command({"HSET", run + ":proc:actor-0", "state", "running", "pid", "4243", "restarts", "0"});
  c.command({"HSET", run + ":proc:actor-1", "state", "running", "pid", "4244", "restarts", "1"});
  c.command({"HSET", run + ":proc:actor-2", "state", "exited", "pid", "-1", "restarts", "0"});
  // The learner at 100 versions a second, reporting at t = 10 s and 15 s; many evaluations after.
  c.xadd(run + ":metrics:learner", {{"ts_ms", "10000"}, {"kind", "train"}, {"updates", "1000"},
                                    {"updates_per_s", "100"}, {"env_steps", "512000"}, {"weights_version", "1000"}});
  c.xadd(run + ":metrics:learner", {{"ts_ms", "15000"}, {"kind", "train"}, {"updates", "1500"},
                                    {"updates_per_s", "100"}, {"env_steps", "768000"}, {"weights_version", "1500"}});
  for (int i = 0; i < 1200; ++i)
    c.xadd(run + ":metrics:learner", {{"ts_ms", "15001"}, {"kind", "eval"}, {"env_steps", "768512"},
                                      {"eval_mean_return", "480"}, {"eval_min_return", "400"}});
  // actor-0 reported at 12 s acting with version 1198: the learner was at 1200, so lag 2 (not
  // 1500 - 1198 = 302). actor-1 reported at 16 s with 1600: the learner, carried on at its rate,
  // was at 1600: lag 0. actor-2 has exited.
  c.xadd(run + ":metrics:actor", {{"ts_ms", "12000"}, {"actor", "0"}, {"env_steps_per_s", "8000"},
                                  {"mean_return", "200"}, {"weights_version", "1198"}});
  c.xadd(run + ":metrics:actor", {{"ts_ms", "16000"}, {"actor", "1"}, {"env_steps_per_s", "9000"},
                                  {"mean_return", "210"}, {"weights_version", "1600"}});
  c.xadd(run + ":metrics:actor", {{"ts_ms", "9000"}, {"actor", "2"}, {"env_steps_per_s", "7000"},
                                  {"mean_return", "190"}, {"weights_version", "800"}});
  ChildProcess status({orchard_bin("orchard"), "status", "lagrun", "--redis", redis.url()}, home_env(d.path));
  ASSERT_EQ(status.wait(30000), 0) << status.output();
  const std::string out = status.output();
  EXPECT_NE(out.find("actor-0     running   4243     0        missing    8000        200.0     2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("actor-1     running   4244     1        missing    9000        210.0     0\n"), std::string::npos) << out;
  EXPECT_NE(out.find("actor-2     exited    -        0        -          -           -         -\n"), std::string::npos) << out;
  EXPECT_LT(out.find("actor-2 "), out.find("actor-10 ")) << out;  // by number
  EXPECT_LT(out.find("actor-10 "), out.find("learner-0 ")) << out;
  // The train report is found behind 1200 evaluations; env steps are the newest (the eval's).
  EXPECT_NE(out.find("updates 1500 (100.0/s)  env steps 768.5k"), std::string::npos) << out;
  EXPECT_NE(out.find("redis redis://:***@127.0.0.1:"), std::string::npos) << out;
  EXPECT_EQ(out.find("s3cret-pass"), std::string::npos) << out;
}

// A process that keeps failing: the actor's simulator (the flaky test plugin) errors on its
// third step, every time. The restart budget runs out, the run stops with the process, its exit
// and its log tail, nothing is left running, and the run's ports are free again: a second run
// on the same endpoints starts and finishes.
TEST(Orchestrator, ACrashLoopingActorEndsTheRunWithItsReasonAndLeavesNothingBehind) {
  Dir d("crashloop");
  const std::string plugin = std::string(ORCHARD_TEST_PLUGIN_DIR) + "/orchard_test_plugin_good.so";
  const std::string endpoints = "endpoints: {replay: ['tcp://127.0.0.1:" +
                                std::to_string(orchard::core::free_loopback_port()) + "'], weights: 'tcp://127.0.0.1:" +
                                std::to_string(orchard::core::free_loopback_port()) + "'}\n";
  std::ofstream(d.path / "crash.yaml") << "name: crashrun\nenv: {name: Flaky-v0, plugin: '" << plugin
                                       << "', num_envs: 2, options: {fail: step}}\nactors: {count: 1}\n"
                                       << "budget: {updates: 5, wall_time_s: 120}\nrun_dir: "
                                       << (d.path / "run").string() << "\n" << endpoints;
  ChildProcess crash({orchard_bin("orchard"), "run", (d.path / "crash.yaml").string(), "--max-restarts", "2"},
                     home_env(d.path));
  EXPECT_EQ(crash.wait(120000), 1) << crash.output();
  const std::string out = crash.output();
  EXPECT_NE(out.find("actor-0 failed 3 times"), std::string::npos) << out;
  EXPECT_NE(out.find("sensor timeout at t=3"), std::string::npos) << out;  // the log tail says why
  EXPECT_EQ(latest_pid(out, "learner-0") > 0, true) << out;
  expect_no_orphans(out);

  std::ofstream(d.path / "good.yaml") << "name: goodrun\nenv: {name: CartPole-v1, num_envs: 4}\nactors: {count: 1}\n"
                                      << "ppo: {segment_length: 32}\nbudget: {updates: 3, wall_time_s: 120}\nrun_dir: "
                                      << (d.path / "run2").string() << "\n" << endpoints;
  ChildProcess good({orchard_bin("orchard"), "run", (d.path / "good.yaml").string()}, home_env(d.path));
  EXPECT_EQ(good.wait(120000), 0) << good.output();
  expect_no_orphans(good.output());
}

TEST(Orchestrator, InvalidSpecsAreRefusedBeforeAnythingStarts) {
  Dir d("invalid");
  auto run = [&](const std::string& spec, std::vector<std::string> extra = {}) {
    std::ofstream(d.path / "bad.yaml") << spec << "run_dir: " << (d.path / "run").string() << "\n";
    std::vector<std::string> argv = {orchard_bin("orchard"), "run", (d.path / "bad.yaml").string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    ChildProcess p(argv, home_env(d.path));
    const int code = p.wait(60000);
    EXPECT_FALSE(fs::exists(d.path / "run" / "logs")) << p.output();
    return std::make_pair(code, p.output());
  };
  auto r = run("name: x\nenv: {name: NoSuchEnv-v0}\nbudget: {updates: 1}\n");
  EXPECT_EQ(r.first, 2);
  EXPECT_NE(r.second.find("unknown env 'NoSuchEnv-v0'"), std::string::npos) << r.second;
  r = run("name: x\nenv: {name: CartPole-v1}\nbudget: {updates: 1}\nredis: 'redis://'\n");
  EXPECT_EQ(r.first, 2);
  EXPECT_NE(r.second.find("redis"), std::string::npos) << r.second;
  // A port that something already listens on.
  zmq::context_t ctx;
  zmq::socket_t taken(ctx, zmq::socket_type::rep);
  const uint16_t port = orchard::core::free_loopback_port();
  taken.bind("tcp://127.0.0.1:" + std::to_string(port));
  r = run("name: x\nenv: {name: CartPole-v1}\nbudget: {updates: 1}\nendpoints: {replay: ['tcp://127.0.0.1:" +
          std::to_string(port) + "'], weights: 'tcp://127.0.0.1:" + std::to_string(orchard::core::free_loopback_port()) +
          "'}\n");
  EXPECT_EQ(r.first, 2);
  EXPECT_NE(r.second.find("endpoints.replay[0]: endpoint tcp://127.0.0.1:" + std::to_string(port) + ": port " +
                          std::to_string(port) + " is already in use"),
            std::string::npos)
      << r.second;
  // A port out of range (ZeroMQ would wrap it around).
  r = run("name: x\nenv: {name: CartPole-v1}\nbudget: {updates: 1}\nendpoints: {replay: ['tcp://127.0.0.1:99999']}\n");
  EXPECT_EQ(r.first, 2);
  EXPECT_NE(r.second.find("endpoints.replay[0]: expected tcp://HOST:PORT with a port of 1-65535, got 'tcp://127.0.0.1:99999'"),
            std::string::npos)
      << r.second;
  // A value from --set is named as such.
  r = run("name: x\nenv: {name: CartPole-v1}\nbudget: {updates: 1}\n", {"--set", "algorithm=sac"});
  EXPECT_EQ(r.first, 2);
  EXPECT_NE(r.second.find("--set algorithm=sac: algorithm: sac needs"), std::string::npos) << r.second;
  // A Redis that is not there.
  r = run("name: x\nenv: {name: CartPole-v1}\nbudget: {updates: 1}\n",
          {"--redis", "redis://127.0.0.1:" + std::to_string(orchard::core::free_loopback_port())});
  EXPECT_EQ(r.first, 1);
  EXPECT_NE(r.second.find("cannot reach Redis"), std::string::npos) << r.second;
  EXPECT_FALSE(fs::exists(d.path / "run")) << "the refused run left its directory behind";
}

// Mistakes that a process used to find only once started (it then failed until its restarts ran
// out) are refused by `orchard run` first, naming the key: exit 2, nothing started.
TEST(Orchestrator, MistakesAProcessWouldFindAreRefusedBeforeItStarts) {
  Dir d("upfront");
  const std::string base = "name: x\nenv: {name: CartPole-v1, num_envs: 4}\nbudget: {updates: 1}\n";
  std::ofstream(d.path / "x.yaml") << base << "run_dir: " << (d.path / "run").string() << "\n";
  auto run = [&](std::vector<std::string> extra, const std::string& spec = "") {
    std::vector<std::string> argv = {orchard_bin("orchard"), "run", spec.empty() ? (d.path / "x.yaml").string() : spec};
    argv.insert(argv.end(), extra.begin(), extra.end());
    ChildProcess p(argv, home_env(d.path));
    const int code = p.wait(60000);
    EXPECT_FALSE(fs::exists(d.path / "run" / "logs")) << p.output();
    return std::make_pair(code, p.output());
  };
  auto expect_refused = [&](const std::pair<int, std::string>& r, const std::string& says) {
    EXPECT_EQ(r.first, 2) << r.second;
    EXPECT_NE(r.second.find(says), std::string::npos) << r.second;
  };
  expect_refused(run({"--set", "learner.eval_options.no_such_option=1"}),
                 "learner.eval_options: CartPole-v1: unknown option 'no_such_option'");
  expect_refused(run({"--set", "actors.cpus=[1023]"}), "actors.cpus: CPU 1023 cannot be used on this machine");
  expect_refused(run({"--set", "ppo.segments_per_update=70000"}),
                 "ppo.segments_per_update: 70000 segments per update is above the replay's 65536-item batch");
  expect_refused(run({"--set", "sac.batch_size=20000", "--set", "algorithm=sac"}), "sac.batch_size: expected an integer in [1, 16384]");
  std::ofstream(d.path / "a-file") << "x";
  expect_refused(run({"--set", "checkpoint_dir=" + (d.path / "a-file" / "ckpt").string()}),
                 "checkpoint directory '" + (d.path / "a-file" / "ckpt").string() + "' cannot be made: '" +
                     (d.path / "a-file").string() + "' is not a directory");
  expect_refused(run({"--set", "run_dir=/proc/orchard-test/run"}),
                 "run_dir: run directory '/proc/orchard-test/run' cannot be made: nothing can be made in '/proc'");
  expect_refused(run({"--set", "endpoints.replay=['tcp://192.0.2.7:5555']", "--set",
                      "endpoints.weights=tcp://127.0.0.1:" + std::to_string(orchard::core::free_loopback_port())}),
                 "endpoints.replay[0]: endpoint tcp://192.0.2.7:5555: 192.0.2.7 is not an address of this machine");
  expect_refused(run({"--set", "logging.level=loud"}), "logging.level: expected one of trace");
  expect_refused(run({"--set", "logging.file=/proc/orchard-test.log"}), "logging.file: log file '/proc/orchard-test.log'");
  const int too_many = 16 * static_cast<int>(std::thread::hardware_concurrency()) + 1;
  expect_refused(run({"--set", "actors.count=" + std::to_string(too_many)}),
                 "actors.count: " + std::to_string(too_many) + " actors on this machine");
  expect_refused(run({"--redis", ""}), "--redis: the URL is empty");
  // Specs that are not YAML files, or give a key twice.
  expect_refused(run({}, d.path.string()), "is a directory, not a config file");
  expect_refused(run({}, "/dev/zero"), "/dev/zero: not a regular file");
  std::ofstream(d.path / "twice.yaml") << base << "ppo:\n  lr: 0.001\n  lr: 0.1\n";
  expect_refused(run({}, (d.path / "twice.yaml").string()), "twice.yaml:6:3: key 'ppo.lr' is given twice (first at line 5)");
  expect_refused(run({}, (d.path / "none.yaml").string()), "run spec '" + (d.path / "none.yaml").string() + "' does not exist");
}

TEST(Orchestrator, PinsAndSetsTheEnvironmentOfProcessesStopsOnSigintAndResumesByName) {
  Dir d("pin");
  std::ofstream(d.path / "spec.yaml") << "name: pinrun\nseed: 2\nenv: {name: CartPole-v1, num_envs: 4}\n"
                                      << "ppo: {segment_length: 32}\n"
                                      << "learner: {cpus: [0], env: {ORCHARD_TEST_MARK: learner-42}, eval_every: 10, "
                                      << "checkpoint_every_s: 0.3}\nactors: {count: 1, cpus: [1]}\n"
                                      << "replay: {cpus: [1], env: {ORCHARD_TEST_MARK: shard}}\n"
                                      << "budget: {updates: 100000, wall_time_s: 300}\nrun_dir: "
                                      << (d.path / "run").string() << "\n";
  ChildProcess run({orchard_bin("orchard"), "run", (d.path / "spec.yaml").string()}, home_env(d.path));
  ASSERT_TRUE(run.wait_for_output("all processes ready", 60000)) << run.output();
  auto status_of = [](pid_t pid, const std::string& key) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);)
      if (line.rfind(key + ":", 0) == 0) return line.substr(key.size() + 1);
    return std::string();
  };
  auto trim = [](std::string s) {
    s.erase(0, s.find_first_not_of(" \t"));
    return s;
  };
  const pid_t learner = latest_pid(run.output(), "learner-0"), actor = latest_pid(run.output(), "actor-0");
  EXPECT_EQ(trim(status_of(learner, "Cpus_allowed_list")), "0");
  EXPECT_EQ(trim(status_of(actor, "Cpus_allowed_list")), "1");
  EXPECT_EQ(trim(status_of(latest_pid(run.output(), "replay-0"), "Cpus_allowed_list")), "1");
  std::ifstream env("/proc/" + std::to_string(learner) + "/environ");
  std::string environ((std::istreambuf_iterator<char>(env)), std::istreambuf_iterator<char>());
  EXPECT_NE(environ.find(std::string("ORCHARD_TEST_MARK=learner-42") + '\0'), std::string::npos);
  // Wait for a checkpoint, then Ctrl-C: an ordered stop, exit 130.
  ASSERT_TRUE(wait_until([&] { return fs::exists(d.path / "run" / "checkpoints" / "learner.json"); }, 60000));
  run.signal(SIGINT);
  EXPECT_EQ(run.wait(120000), 130) << run.output();
  EXPECT_NE(run.output().find("[signal] SIGINT: stopping the run"), std::string::npos) << run.output();
  expect_no_orphans(run.output());
  const int64_t updates = read_json(d.path / "run" / "checkpoints" / "learner.json")["updates"].get<int64_t>();
  // Resume by name, with a budget just above where it stopped.
  ChildProcess resumed({orchard_bin("orchard"), "run", "pinrun", "--resume", "--set",
                        "budget.updates=" + std::to_string(updates + 10)},
                       home_env(d.path));
  EXPECT_EQ(resumed.wait(120000), 0) << resumed.output();
  EXPECT_EQ(read_json(d.path / "run" / "result.json")["updates"].get<int64_t>(), updates + 10);
  EXPECT_NE(resumed.output().find("updates in"), std::string::npos) << resumed.output();
  EXPECT_NE(resumed.output().find("since the run began"), std::string::npos) << resumed.output();
  // A budget the checkpoint has used up is refused before anything starts.
  ChildProcess used({orchard_bin("orchard"), "run", "pinrun", "--resume", "--set",
                     "budget.updates=" + std::to_string(updates + 5)},
                    home_env(d.path));
  EXPECT_EQ(used.wait(30000), 2) << used.output();
  EXPECT_NE(used.output().find("already has " + std::to_string(updates + 10) +
                               " updates (its checkpoint), which uses up budget.updates = " + std::to_string(updates + 5)),
            std::string::npos)
      << used.output();
  EXPECT_EQ(used.output().find("[start]"), std::string::npos) << used.output();
  // `orchard run SPEC --resume RUN`: another spec file (here under another name), continuing
  // pinrun where it is (its run directory comes from the registry).
  std::ofstream(d.path / "more.yaml") << "name: something-else\nseed: 2\nenv: {name: CartPole-v1, num_envs: 4}\n"
                                      << "ppo: {segment_length: 32}\nlearner: {eval_every: 10}\nactors: {count: 1}\n"
                                      << "budget: {updates: " << updates + 20 << "}\n";
  ChildProcess more({orchard_bin("orchard"), "run", (d.path / "more.yaml").string(), "--resume", "pinrun"},
                    home_env(d.path));
  EXPECT_EQ(more.wait(120000), 0) << more.output();
  EXPECT_EQ(read_json(d.path / "run" / "result.json")["updates"].get<int64_t>(), updates + 20);
  EXPECT_NE(more.output().find("run pinrun finished"), std::string::npos) << more.output();
  ChildProcess unknown({orchard_bin("orchard"), "run", "no-such-run", "--resume"}, home_env(d.path));
  EXPECT_EQ(unknown.wait(30000), 1);
  EXPECT_NE(unknown.output().find("no run named 'no-such-run'"), std::string::npos) << unknown.output();
}

TEST(Orchestrator, CurveKeysEncryptTheReplayAndWeightsSocketsOfARun) {
  Dir d("curve");
  for (const char* k : {"server", "client"}) {
    ChildProcess keys({orchard_bin("orchard"), "keys", k, "--dir", d.path.string()});
    ASSERT_EQ(keys.wait(10000), 0) << keys.output();
  }
  std::ofstream(d.path / "spec.yaml") << "name: curverun\nenv: {name: CartPole-v1, num_envs: 4}\nppo: {segment_length: 32}\n"
                                      << "actors: {count: 1}\nbudget: {updates: 100000, wall_time_s: 300}\n"
                                      << "security: {curve_keys: " << d.path.string() << "}\nrun_dir: "
                                      << (d.path / "run").string() << "\n";
  ChildProcess run({orchard_bin("orchard"), "run", (d.path / "spec.yaml").string()}, home_env(d.path));
  ASSERT_TRUE(run.wait_for_output("all processes ready", 60000)) << run.output();
  std::ifstream in(d.path / "run" / "spec.yaml");
  std::string spec((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::smatch m;
  ASSERT_TRUE(std::regex_search(spec, m, std::regex("replay: \\[(tcp://[0-9.:]+)\\]"))) << spec;
  const std::string shard = m[1];
  ASSERT_TRUE(std::regex_search(spec, m, std::regex("weights: (tcp://[0-9.:]+)"))) << spec;
  const std::string weights = m[1];
  // Without the keys the shard does not answer (the CURVE handshake fails)...
  EXPECT_THROW(orchard::replay::shard_info(shard, "", 1500), orchard::replay::ReplayError);
  // ...with them it does, and the run's experience is there.
  auto client = orchard::core::load_curve_keys((d.path / "client.key").string(), true);
  orchard::replay::ClientSecurity sec{orchard::core::load_curve_keys((d.path / "server.key").string(), true).public_key,
                                      client.public_key, client.secret_key};
  auto info = orchard::replay::shard_info(shard, "segments", 5000, sec);
  ASSERT_EQ(info.tables.size(), 1u);
  EXPECT_GT(info.tables[0].inserts, 0u);
  // The weights broadcast: nothing for a plaintext subscriber, WEIGHTS for one with the keys.
  zmq::context_t ctx;
  auto receives = [&](bool with_keys) {
    zmq::socket_t sub(ctx, zmq::socket_type::sub);
    if (with_keys) orchard::core::make_curve_client(sub, client, sec.server_public_key);
    sub.set(zmq::sockopt::subscribe, "");
    sub.connect(weights);
    zmq::pollitem_t item{sub.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(3000));
    return (item.revents & ZMQ_POLLIN) != 0;
  };
  EXPECT_FALSE(receives(false));
  EXPECT_TRUE(receives(true));
  run.signal(SIGINT);
  EXPECT_EQ(run.wait(120000), 130) << run.output();
  expect_no_orphans(run.output());
}

TEST(Orchestrator, MissingCurveKeysAreASpecError) {
  Dir d("nokeys");
  std::ofstream(d.path / "spec.yaml") << "name: nokeys\nenv: {name: CartPole-v1}\nbudget: {updates: 1}\n"
                                      << "security: {curve_keys: " << (d.path / "absent").string() << "}\n";
  ChildProcess run({orchard_bin("orchard"), "run", (d.path / "spec.yaml").string()}, home_env(d.path));
  EXPECT_EQ(run.wait(30000), 2);  // a spec error
  EXPECT_NE(run.output().find("security.curve_keys"), std::string::npos) << run.output();
  EXPECT_NE(run.output().find("orchard keys server --dir"), std::string::npos) << run.output();
}

TEST(Orchestrator, TwoLearnerRanksTrainInLockstepAndRestartTogetherWhenOneIsKilled) {
  Dir d("ranks");
  ChildProcess run({orchard_bin("orchard"), "run", ppo_spec(d.path, "ranks", "{updates: 120, wall_time_s: 300}"),
                    "--set", "learner.count=2"},
                   home_env(d.path));
  ASSERT_TRUE(run.wait_for_output("all processes ready", 60000)) << run.output();
  EXPECT_NE(run.output().find("2 learner ranks (gloo all-reduce)"), std::string::npos) << run.output();
  auto learner_updates = [&] { return checkpoint_updates(d.path / "run"); };
  ASSERT_TRUE(wait_until([&] { return learner_updates() >= 10; }, 60000)) << run.output();
  // The follower dies: rank 0 cannot go on alone, so both are restarted, together.
  ASSERT_EQ(::kill(latest_pid(run.output(), "learner-1"), SIGKILL), 0);
  ASSERT_TRUE(run.wait_for_output("[restart] learner-1", 30000)) << run.output();
  ASSERT_TRUE(run.wait_for_output("[restart] learner-0", 30000)) << run.output();
  EXPECT_EQ(run.wait(300000), 0) << run.output();
  auto result = read_json(d.path / "run" / "result.json");
  EXPECT_EQ(result["reason"], "updates");
  EXPECT_EQ(result["updates"].get<int64_t>(), 120);
  // One synchronous update reads a batch per rank: 2 x (2 actors x 4 envs) segments of 32 steps.
  EXPECT_EQ(result["env_steps"].get<int64_t>() % (2 * 8 * 32), 0);
  EXPECT_GT(result["time_s"]["sync"].get<double>(), 0.0);
  std::ifstream in(d.path / "run" / "logs" / "learner-1.log");
  const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("started from rank 0's state"), std::string::npos) << log;
  EXPECT_NE(log.find("parameters of the 2 ranks agree after 120 updates"), std::string::npos) << log;
  EXPECT_NE(log.find("stopping with the others after 120 updates (updates)"), std::string::npos) << log;
  expect_no_orphans(run.output());
}
