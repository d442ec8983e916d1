// The Asio scheduler with real child processes (small shell scripts): start order by group,
// readiness from the log, restart with exponential backoff, the restart budget ending the run,
// the stop order, scaling, liveness kills, and no process left behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "orchard/core/error.h"
#include "orchard/orchestrator/scheduler.h"

namespace fs = std::filesystem;
using namespace orchard::orchestrator;

namespace {

struct Harness {
  fs::path dir;
  boost::asio::io_context io;
  std::unique_ptr<Scheduler> sched;
  std::vector<SchedulerEvent> events;
  bool done = false;
  RunOutcome outcome = RunOutcome::kFinished;
  std::string reason;

  explicit Harness(const std::string& name, SchedulerOptions o = {}) {
    dir = fs::temp_directory_path() / ("orchard-sched-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    o.tick_s = 0.01;
    sched = std::make_unique<Scheduler>(io, o);
    sched->on_event = [this](const SchedulerEvent& e) { events.push_back(e); };
    sched->on_done = [this](RunOutcome oc, const std::string& r) {
      done = true;
      outcome = oc;
      reason = r;
      io.stop();
    };
  }
  ~Harness() { fs::remove_all(dir); }

  // A process running `script` in sh; $ORDER is a shared file processes append to.
  ProcessSpec proc(const std::string& name, int group, const std::string& script) {
    ProcessSpec p;
    p.name = name;
    p.role = name.substr(0, name.find('-'));
    p.group = group;
    p.argv = {"/bin/sh", "-c", script};
    p.log_path = (dir / (name + ".log")).string();
    p.env = {"ORDER=" + (dir / "order").string(), "NAME=" + name};
    p.ready_timeout_s = 10;
    return p;
  }
  // Runs the loop until on_done or the timeout (then fails the test).
  void run_for(double seconds) {
    boost::asio::steady_timer guard(io);
    guard.expires_after(std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
    guard.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) io.stop();
    });
    io.run();
    io.restart();
  }
  std::vector<std::string> order() {
    std::ifstream in(dir / "order");
    std::vector<std::string> out;
    std::string line;
    while (std::getline(in, line)) out.push_back(line);
    return out;
  }
  int count(const std::string& kind, const std::string& proc) {
    int n = 0;
    for (const auto& e : events) n += e.kind == kind && e.proc == proc;
    return n;
  }
  std::vector<pid_t> all_pids() {
    std::vector<pid_t> out;
    for (const auto& e : events)
      if (e.kind == "start") out.push_back(static_cast<pid_t>(std::stol(e.detail.substr(4))));
    return out;
  }
};

bool pid_alive(pid_t pid) { return ::kill(pid, 0) == 0; }

// A well-behaved process: records its start, says ready after a delay, runs until SIGTERM,
// records its stop.
std::string service(double ready_delay) {
  return "trap 'echo stop $NAME >> $ORDER; exit 0' TERM; echo start $NAME >> $ORDER; sleep " +
         std::to_string(ready_delay) + "; echo ready; while true; do sleep 0.05; done";
}

}  // namespace

TEST(Scheduler, StartsGroupsInOrderEachReadyBeforeTheNextAndStopsInReverse) {
  Harness h("order");
  h.sched->add(h.proc("actor-0", 2, service(0.0)));
  h.sched->add(h.proc("replay-0", 0, service(0.3)));
  h.sched->add(h.proc("learner-0", 1, service(0.3)));
  h.sched->add(h.proc("actor-1", 2, service(0.0)));
  bool ready = false;
  h.sched->on_ready = [&] {
    ready = true;
    h.sched->stop(RunOutcome::kStopped, "test over");
  };
  h.sched->start();
  h.run_for(30);
  ASSERT_TRUE(ready);
  ASSERT_TRUE(h.done);
  EXPECT_EQ(h.outcome, RunOutcome::kStopped);
  auto o = h.order();
  ASSERT_EQ(o.size(), 8u) << ::testing::PrintToString(o);
  EXPECT_EQ(o[0], "start replay-0");
  EXPECT_EQ(o[1], "start learner-0");  // only after replay-0 said ready
  EXPECT_TRUE((o[2] == "start actor-0" && o[3] == "start actor-1") || (o[2] == "start actor-1" && o[3] == "start actor-0"));
  // Stop: actors first, then the learner, then the shard.
  EXPECT_EQ(o[4].rfind("stop actor-", 0), 0u);
  EXPECT_EQ(o[5].rfind("stop actor-", 0), 0u);
  EXPECT_EQ(o[6], "stop learner-0");
  EXPECT_EQ(o[7], "stop replay-0");
  for (pid_t p : h.all_pids()) EXPECT_FALSE(pid_alive(p)) << p;
}

TEST(Scheduler, RestartsACrashedProcessWithGrowingBackoff) {
  SchedulerOptions o;
  o.backoff_initial_s = 0.2;
  o.max_restarts = 5;
  Harness h("restart", o);
  // Crashes twice (exit 3) after being ready, then stays up.
  const std::string crashy =
      "echo start >> $ORDER; n=$(grep -c start $ORDER); echo ready; sleep 0.1; if [ $n -le 2 ]; then exit 3; fi; "
      "trap 'exit 0' TERM; while true; do sleep 0.05; done";
  h.sched->add(h.proc("actor-0", 0, crashy));
  h.sched->start();
  auto t0 = std::chrono::steady_clock::now();
  while (h.count("restart", "actor-0") < 2 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20))
    h.run_for(0.1);
  h.run_for(0.5);
  EXPECT_EQ(h.count("restart", "actor-0"), 2);
  EXPECT_EQ(h.sched->processes().at("actor-0").state, ProcState::kRunning);
  EXPECT_EQ(h.sched->processes().at("actor-0").last_exit, "exit 3");
  // The backoffs were 0.2 s, then 0.4 s.
  std::vector<std::string> exits;
  for (const auto& e : h.events)
    if (e.kind == "exit") exits.push_back(e.detail);
  ASSERT_EQ(exits.size(), 2u);
  EXPECT_NE(exits[0].find("restarting in 0.2 s"), std::string::npos) << exits[0];
  EXPECT_NE(exits[1].find("restarting in 0.4 s"), std::string::npos) << exits[1];
  h.sched->stop(RunOutcome::kStopped, "done");
  h.run_for(10);
  EXPECT_TRUE(h.done);
  for (pid_t p : h.all_pids()) EXPECT_FALSE(pid_alive(p));
}

TEST(Scheduler, ACrashLoopUsesUpTheRestartBudgetAndStopsTheRunWithAReason) {
  SchedulerOptions o;
  o.backoff_initial_s = 0.05;
  o.max_restarts = 3;
  Harness h("budget", o);
  h.sched->add(h.proc("replay-0", 0, service(0.0)));
  h.sched->add(h.proc("learner-0", 1, "echo ready; echo boom >&2; exit 7"));
  h.sched->start();
  h.run_for(30);
  ASSERT_TRUE(h.done);
  EXPECT_EQ(h.outcome, RunOutcome::kFailed);
  EXPECT_NE(h.reason.find("learner-0 failed 4 times (last: exit 7)"), std::string::npos) << h.reason;
  EXPECT_EQ(h.count("restart", "learner-0"), 3);
  EXPECT_EQ(h.count("failed", "learner-0"), 1);
  for (pid_t p : h.all_pids()) EXPECT_FALSE(pid_alive(p)) << p;  // the shard was stopped too
}

TEST(Scheduler, ACleanExitOfTheRunEndingProcessFinishesTheRun) {
  Harness h("finish");
  h.sched->add(h.proc("replay-0", 0, service(0.0)));
  auto learner = h.proc("learner-0", 1, "echo ready; sleep 0.3; exit 0");
  learner.clean_exit_ends_run = true;
  h.sched->add(learner);
  h.sched->add(h.proc("actor-0", 2, service(0.0)));
  h.sched->start();
  h.run_for(30);
  ASSERT_TRUE(h.done);
  EXPECT_EQ(h.outcome, RunOutcome::kFinished);
  EXPECT_EQ(h.count("restart", "learner-0"), 0);
  for (pid_t p : h.all_pids()) EXPECT_FALSE(pid_alive(p));
}

TEST(Scheduler, ANeverReadyProcessIsKilledAtItsTimeoutAndCountsAsAFailure) {
  SchedulerOptions o;
  o.max_restarts = 1;
  o.backoff_initial_s = 0.05;
  Harness h("timeout", o);
  auto p = h.proc("replay-0", 0, "sleep 100");
  p.ready_timeout_s = 0.3;
  h.sched->add(p);
  h.sched->start();
  h.run_for(30);
  ASSERT_TRUE(h.done);
  EXPECT_EQ(h.outcome, RunOutcome::kFailed);
  EXPECT_EQ(h.count("timeout", "replay-0"), 2);
  EXPECT_NE(h.reason.find("signal 9"), std::string::npos) << h.reason;
  for (pid_t pid : h.all_pids()) EXPECT_FALSE(pid_alive(pid));
}

TEST(Scheduler, ScalingAddsAndRemovesProcessesWithoutTouchingTheOthers) {
  Harness h("scale");
  h.sched->add(h.proc("learner-0", 0, service(0.0)));
  h.sched->add(h.proc("actor-0", 1, service(0.0)));
  bool ready = false;
  h.sched->on_ready = [&] { ready = true; };
  h.sched->start();
  while (!ready) h.run_for(0.05);
  const pid_t learner = h.sched->processes().at("learner-0").pid;
  h.sched->add(h.proc("actor-1", 1, service(0.0)));
  h.sched->add(h.proc("actor-2", 1, service(0.0)));
  h.run_for(1.0);
  EXPECT_EQ(h.sched->count("actor"), 3);
  EXPECT_EQ(h.sched->processes().at("actor-2").state, ProcState::kRunning);
  h.sched->remove("actor-2", "scaled down");
  h.sched->remove("actor-1", "scaled down");
  h.run_for(1.0);
  EXPECT_EQ(h.sched->count("actor"), 1);
  EXPECT_EQ(h.sched->processes().at("actor-1").state, ProcState::kExited);
  EXPECT_EQ(h.count("restart", "actor-1"), 0);  // removed processes are not restarted
  EXPECT_EQ(h.sched->processes().at("learner-0").pid, learner);
  EXPECT_EQ(h.sched->processes().at("learner-0").restarts, 0);
  EXPECT_THROW(h.sched->add(h.proc("actor-0", 1, "true")), orchard::Error);
  h.sched->stop(RunOutcome::kStopped, "done");
  h.run_for(10);
  EXPECT_TRUE(h.done);
  for (pid_t p : h.all_pids()) EXPECT_FALSE(pid_alive(p));
}

TEST(Scheduler, AProcessFailingItsLivenessCheckIsKilledAndRestarted) {
  SchedulerOptions o;
  o.backoff_initial_s = 0.05;
  Harness h("liveness", o);
  h.sched->add(h.proc("actor-0", 0, service(0.0)));
  int checks = 0;
  h.sched->set_liveness_check([&](const ProcInfo& p) { return ++checks > 1 || p.restarts > 0; }, 0.1);
  h.sched->start();
  auto t0 = std::chrono::steady_clock::now();
  while (h.count("restart", "actor-0") < 1 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10))
    h.run_for(0.1);
  EXPECT_EQ(h.count("hung", "actor-0"), 1);
  EXPECT_EQ(h.count("restart", "actor-0"), 1);
  h.sched->stop(RunOutcome::kStopped, "done");
  h.run_for(10);
  for (pid_t p : h.all_pids()) EXPECT_FALSE(pid_alive(p));
}

TEST(Scheduler, AGangMemberThatFailsTakesTheGangDownAndTheGangRestartsTogether) {
  SchedulerOptions o;
  o.backoff_initial_s = 0.2;
  Harness h("gang", o);
  // learner-1 crashes once (its first life), 0.4 s after it is ready; learner-0 would run on.
  const std::string crash_once =
      "trap 'exit 0' TERM; echo start $NAME >> $ORDER; echo ready; "
      "if [ $(grep -c 'start learner-1' $ORDER) -le 1 ]; then sleep 0.4; exit 5; fi; while true; do sleep 0.05; done";
  const std::string member = "trap 'echo term $NAME >> $ORDER; exit 1' TERM; echo start $NAME >> $ORDER; echo ready; "
                             "while true; do sleep 0.05; done";
  auto l0 = h.proc("learner-0", 0, member);
  auto l1 = h.proc("learner-1", 0, crash_once);
  auto a0 = h.proc("actor-0", 1, service(0.0));
  l0.gang = l1.gang = "learners";
  h.sched->add(l0);
  h.sched->add(l1);
  h.sched->add(a0);
  h.sched->start();
  h.run_for(3);
  ASSERT_FALSE(h.done) << h.reason;
  // learner-1 failed; learner-0 was stopped for it; both started again; the actor was not touched.
  auto o2 = h.order();
  EXPECT_EQ(std::count(o2.begin(), o2.end(), "start learner-0"), 2) << ::testing::PrintToString(o2);
  EXPECT_EQ(std::count(o2.begin(), o2.end(), "start learner-1"), 2) << ::testing::PrintToString(o2);
  EXPECT_EQ(std::count(o2.begin(), o2.end(), "term learner-0"), 1) << ::testing::PrintToString(o2);
  // learner-0 was stopped before either member started again.
  const auto term = std::find(o2.begin(), o2.end(), "term learner-0") - o2.begin();
  size_t second_start = 0;
  for (size_t i = 0, n = 0; i < o2.size(); ++i)
    if (o2[i].rfind("start learner-", 0) == 0 && ++n == 3) second_start = i;
  EXPECT_LT(term, static_cast<long>(second_start)) << ::testing::PrintToString(o2);
  EXPECT_EQ(h.count("restart", "learner-0"), 1);
  EXPECT_EQ(h.count("restart", "learner-1"), 1);
  EXPECT_EQ(h.count("restart", "actor-0"), 0);
  EXPECT_EQ(h.sched->processes().at("learner-0").state, ProcState::kRunning);
  EXPECT_EQ(h.sched->processes().at("learner-1").state, ProcState::kRunning);
  h.sched->stop(RunOutcome::kStopped, "test over");
  h.run_for(20);
  ASSERT_TRUE(h.done);
  for (pid_t p : h.all_pids()) EXPECT_FALSE(pid_alive(p)) << p;
}

TEST(Scheduler, ACleanExitOfADoneProcessIsNotRestartedAndDoesNotEndTheRun) {
  Harness h("done");
  auto worker = h.proc("learner-1", 0, "echo ready; sleep 0.2; exit 0");
  worker.clean_exit_is_done = true;
  worker.gang = "learners";
  auto leader = h.proc("learner-0", 0, "trap 'exit 0' TERM; echo ready; sleep 0.8; exit 0");
  leader.clean_exit_ends_run = true;
  leader.gang = "learners";
  h.sched->add(worker);
  h.sched->add(leader);
  h.sched->start();
  h.run_for(20);
  ASSERT_TRUE(h.done);
  EXPECT_EQ(h.outcome, RunOutcome::kFinished);
  EXPECT_EQ(h.reason, "learner-0 finished");
  EXPECT_EQ(h.count("restart", "learner-1"), 0);
  EXPECT_EQ(h.count("restart", "learner-0"), 0);
}
