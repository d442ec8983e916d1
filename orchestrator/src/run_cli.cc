// `orchard run SPEC`: starts a run on this machine — replay shards, then the learner, then the
// actors, each a real process with its log in <run_dir>/logs — supervises them (restarting a
// process that fails, with exponential backoff and a restart budget), prints progress from the
// metric streams, and stops everything (actors, learner, shards, Redis) when the learner ends the
// run (budget or target return) or on SIGINT/SIGTERM.
//
// This is the local launcher; the Asio scheduler with remote agents (docs/run-spec.md) builds
// on the same run directory layout and process arguments.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "orchard/core/error.h"
#include "orchard/core/redis.h"
#include "orchard/core/shutdown.h"
#include "orchard/orchestrator/embedded_redis.h"
#include "orchard/orchestrator/process.h"
#include "orchard/orchestrator/run_spec.h"

namespace fs = std::filesystem;

namespace orchard::cli {
namespace {

using orchestrator::RunSpec;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail(const std::string& s, size_t n) { return s.size() <= n ? s : "..." + s.substr(s.size() - n); }

// One supervised process.
struct Proc {
  std::string name;  // replay-0, learner-0, actor-1
  std::string role;  // replay | learner | actor
  std::vector<std::string> argv;
  std::string log;
  pid_t pid = -1;
  int restarts = 0;
  double restart_at = 0;  // > 0: waiting to be restarted at this time
  int last_status = 0;
  bool done = false;      // exited and not to be restarted
};

class LocalRun {
 public:
  LocalRun(RunSpec spec, bool quiet, int max_restarts)
      : spec_(std::move(spec)), quiet_(quiet), max_restarts_(max_restarts) {}
  ~LocalRun() { stop_all(); }

  int run();

 private:
  void event(const std::string& kind, const std::string& proc, const std::string& detail);
  void start(Proc& p);
  // Waits until `p`'s log shows a line starting with "ready"; throws when it exits or times out.
  void await_ready(Proc& p, double timeout_s);
  void stop_group(const std::string& role, int timeout_ms);
  void stop_all();
  void progress();

  RunSpec spec_;
  bool quiet_;
  int max_restarts_;
  std::string spec_file_, logs_;
  std::unique_ptr<orchestrator::EmbeddedRedis> redis_;
  std::unique_ptr<core::RedisClient> client_;
  std::vector<Proc> procs_;
  std::string bin_;
  double started_ = 0;
};

void LocalRun::event(const std::string& kind, const std::string& proc, const std::string& detail) {
  if (!quiet_ || kind != "start") std::cout << "[" << kind << "] " << proc << (detail.empty() ? "" : ": " + detail) << std::endl;
  if (!client_) return;
  try {
    client_->xadd("orchard:run:" + spec_.name + ":events", {{"kind", kind}, {"proc", proc}, {"detail", detail}}, 10000);
  } catch (const Error& e) {
    std::cerr << "orchard run: Redis: " << e.what() << "\n";
  }
}

void LocalRun::start(Proc& p) {
  orchestrator::SpawnOptions so;
  so.stdout_path = p.log;
  so.stderr_path = p.log;
  so.new_process_group = true;  // a Ctrl-C at the terminal reaches orchard run only; it stops the run in order
  p.pid = orchestrator::spawn_process(p.argv, so);
  p.restart_at = 0;
  event("start", p.name, "pid " + std::to_string(p.pid));
  if (client_) {
    try {
      client_->command({"HSET", "orchard:run:" + spec_.name + ":proc:" + p.name, "role", p.role, "pid",
                        std::to_string(p.pid), "host", "localhost", "state", "running", "restarts",
                        std::to_string(p.restarts)});
    } catch (const Error&) {
    }
  }
}

void LocalRun::await_ready(Proc& p, double timeout_s) {
  const double deadline = now_s() + timeout_s;
  size_t offset = 0;
  std::string pending;
  for (;;) {
    std::ifstream in(p.log);
    in.seekg(static_cast<std::streamoff>(offset));
    std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    offset += chunk.size();
    pending += chunk;
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      if (pending.compare(0, 5, "ready") == 0) return;
      pending.erase(0, nl + 1);
    }
    int status = 0;
    if (::waitpid(p.pid, &status, WNOHANG) == p.pid) {
      p.pid = -1;
      throw Error(p.name + " exited before it was ready (" +
                  (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                     : "signal " + std::to_string(WTERMSIG(status))) +
                  "); its log " + p.log + " ends:\n" + tail(read_file(p.log), 1500));
    }
    if (now_s() > deadline)
      throw Error(p.name + " was not ready within " + std::to_string(static_cast<int>(timeout_s)) + " s; log " + p.log);
    if (core::Shutdown::requested()) throw Error("interrupted while starting " + p.name);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void LocalRun::stop_group(const std::string& role, int timeout_ms) {
  for (auto& p : procs_)
    if (p.role == role && p.pid > 0) ::kill(p.pid, SIGTERM);
  for (auto& p : procs_) {
    if (p.role != role || p.pid <= 0) continue;
    int status = orchestrator::wait_or_kill(p.pid, timeout_ms);
    p.pid = -1;
    p.done = true;
    event("exit", p.name, status >= 0 && WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status)) : "killed");
  }
}

void LocalRun::stop_all() {
  stop_group("actor", 15000);
  stop_group("learner", 30000);
  stop_group("replay", 30000);
  if (client_) {
    try {
      client_->command({"HSET", "orchard:run:" + spec_.name, "status", "stopped"});
    } catch (const Error&) {
    }
    client_.reset();
  }
  if (redis_) redis_->stop();
}

void LocalRun::progress() {
  if (!client_) return;
  try {
    auto r = client_->command({"XREVRANGE", "orchard:run:" + spec_.name + ":metrics:learner", "+", "-", "COUNT", "20"});
    std::string steps, sps, eval;
    for (const auto& entry : r.elements) {
      if (entry.elements.size() < 2) continue;
      const auto& f = entry.elements[1].elements;
      for (size_t i = 0; i + 1 < f.size(); i += 2) {
        if (f[i].str == "env_steps" && steps.empty()) steps = f[i + 1].str;
        if (f[i].str == "env_steps_per_s" && sps.empty()) sps = f[i + 1].str;
        if (f[i].str == "eval_mean_return" && eval.empty()) eval = f[i + 1].str;
      }
    }
    if (steps.empty()) return;
    std::string line = "[progress] " + std::to_string(static_cast<int>(now_s() - started_)) + " s, env steps " + steps;
    if (!sps.empty()) line += " (" + sps + "/s)";
    if (!eval.empty()) line += ", eval return " + eval;
    if (spec_.budget.env_steps > 0 && !sps.empty()) {
      const double left = static_cast<double>(spec_.budget.env_steps) - std::stod(steps), rate = std::stod(sps);
      if (rate > 0 && left > 0) line += ", ETA " + std::to_string(static_cast<int>(left / rate)) + " s";
    }
    std::cout << line << std::endl;
  } catch (const std::exception&) {
  }
}

int LocalRun::run() {
  started_ = now_s();
  bin_ = orchestrator::self_dir();
  fs::create_directories(spec_.run_dir);
  logs_ = spec_.run_dir + "/logs";
  fs::create_directories(logs_);
  fs::remove(spec_.run_dir + "/result.json");

  if (spec_.redis_url.empty()) {
    orchestrator::EmbeddedRedisOptions ro;
    ro.data_dir = fs::absolute(spec_.run_dir + "/redis").string();
    fs::create_directories(ro.data_dir);
    redis_ = std::make_unique<orchestrator::EmbeddedRedis>(ro);
    spec_.redis_url = redis_->url();
  }
  try {
    client_ = std::make_unique<core::RedisClient>(core::RedisOptions::from_url(spec_.redis_url));
    client_->command({"SADD", "orchard:runs", spec_.name});
    client_->command({"HSET", "orchard:run:" + spec_.name, "status", "starting", "algorithm",
                      orchestrator::algorithm_name(spec_.algorithm), "env", spec_.env.name, "run_dir",
                      fs::absolute(spec_.run_dir).string()});
  } catch (const Error& e) {
    throw Error("run '" + spec_.name + "': cannot reach Redis: " + e.what());
  }
  // Every process reads this file: endpoints, tables and the Redis URL are filled in.
  spec_file_ = spec_.run_dir + "/spec.yaml";
  {
    std::string yaml = spec_.resolved_yaml();
    std::ofstream(spec_file_) << yaml;
    auto with_redis = RunSpec::load(spec_file_, {"redis=" + spec_.redis_url});
    std::ofstream(spec_file_, std::ios::trunc) << with_redis.node().dump() << "\n";
  }
  std::cout << "run " << spec_.name << ": " << orchestrator::algorithm_name(spec_.algorithm) << " on "
            << spec_.env.name << ", " << spec_.replay_shards << " shard(s), 1 learner, " << spec_.actors.count
            << " actor(s) x " << spec_.env.num_envs << " envs; run dir " << spec_.run_dir << "; redis "
            << spec_.redis_url << std::endl;

  for (int64_t i = 0; i < spec_.replay_shards; ++i) {
    Proc p;
    p.name = "replay-" + std::to_string(i);
    p.role = "replay";
    p.argv = {bin_ + "/orchard-replay", "--config", spec_file_, "--bind", spec_.replay_endpoints[i], "--shard-index",
              std::to_string(i), "--name", p.name, "--checkpoint-dir", spec_.run_dir + "/replay"};
    p.log = logs_ + "/" + p.name + ".log";
    procs_.push_back(p);
  }
  {
    Proc p;
    p.name = "learner-0";
    p.role = "learner";
    p.argv = {bin_ + "/orchard-learner", "--spec", spec_file_};
    p.log = logs_ + "/learner-0.log";
    procs_.push_back(p);
  }
  for (int64_t i = 0; i < spec_.actors.count; ++i) {
    Proc p;
    p.name = "actor-" + std::to_string(i);
    p.role = "actor";
    p.argv = {bin_ + "/orchard-actor", "--spec", spec_file_, "--actor-id", std::to_string(i)};
    p.log = logs_ + "/" + p.name + ".log";
    procs_.push_back(p);
  }
  // Start order: shards, then the learner, then the actors; each group ready before the next.
  for (const char* role : {"replay", "learner", "actor"}) {
    for (auto& p : procs_)
      if (p.role == role) start(p);
    for (auto& p : procs_)
      if (p.role == role) await_ready(p, 60);
  }
  client_->command({"HSET", "orchard:run:" + spec_.name, "status", "running"});
  const double ready_s = now_s() - started_;
  std::cout << "all processes ready after " << ready_s << " s" << std::endl;

  std::string outcome;
  double next_progress = now_s() + 2;
  while (outcome.empty()) {
    if (core::Shutdown::requested()) {
      outcome = "stopped";
      break;
    }
    for (auto& p : procs_) {
      if (p.pid > 0) {
        int status = 0;
        if (::waitpid(p.pid, &status, WNOHANG) != p.pid) continue;
        p.pid = -1;
        p.last_status = status;
        const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        const std::string how =
            WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status)) : "signal " + std::to_string(WTERMSIG(status));
        if (p.role == "learner" && clean) {
          event("exit", p.name, how + " (the learner ended the run)");
          p.done = true;
          outcome = "finished";
          break;
        }
        if (p.restarts >= max_restarts_) {
          event("failed", p.name, how + "; restart budget of " + std::to_string(max_restarts_) + " used up");
          outcome = p.name + " failed " + std::to_string(p.restarts + 1) + " times (last: " + how + "); log " + p.log +
                    " ends:\n" + tail(read_file(p.log), 1500);
          break;
        }
        const double backoff = std::min(30.0, 0.5 * static_cast<double>(1 << std::min(p.restarts, 6)));
        p.restart_at = now_s() + backoff;
        event("exit", p.name, how + "; restarting in " + std::to_string(backoff).substr(0, 4) + " s");
      } else if (p.restart_at > 0 && now_s() >= p.restart_at && !p.done) {
        ++p.restarts;
        start(p);
        event("restart", p.name, "restart " + std::to_string(p.restarts));
      }
    }
    if (!outcome.empty()) break;
    if (now_s() >= next_progress) {
      progress();
      next_progress = now_s() + 5;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  const bool stopped_by_user = outcome == "stopped";
  stop_group("actor", 15000);
  stop_group("learner", 60000);
  stop_group("replay", 30000);
  nlohmann::json result;
  const std::string result_path = spec_.run_dir + "/result.json";
  if (fs::exists(result_path)) {
    try {
      result = nlohmann::json::parse(read_file(result_path));
    } catch (const std::exception&) {
    }
  }
  int code = 0;
  std::cout << "\nrun " << spec_.name << " ";
  if (outcome == "finished" || (stopped_by_user && result.is_object())) {
    const std::string reason = result.value("reason", "unknown");
    std::cout << (stopped_by_user ? "stopped" : "finished") << ": " << reason;
    if (result.contains("eval_mean") && result["eval_mean"].is_number())
      std::cout << "; final evaluation mean return " << result["eval_mean"].get<double>() << " (min "
                << result["eval_min"].get<double>() << ")";
    const double secs = now_s() - started_;
    const int64_t steps = result.value("env_steps", int64_t{0});
    std::cout << "\n  " << steps << " env steps, " << result.value("updates", int64_t{0}) << " updates in " << secs
              << " s (" << static_cast<int64_t>(static_cast<double>(steps) / std::max(1e-9, secs)) << " env steps/s)"
              << "\n  checkpoint " << result.value("checkpoint", std::string("none")) << "\n  logs " << logs_ << std::endl;
    if (spec_.budget.has_target && reason != "target_return") {
      std::cout << "  target return " << spec_.budget.target_return << " not reached" << std::endl;
      code = stopped_by_user ? 130 : 3;
    } else if (stopped_by_user) {
      code = 130;
    }
  } else if (stopped_by_user) {
    std::cout << "stopped before the learner reported a result" << std::endl;
    code = 130;
  } else {
    std::cout << "failed: " << outcome << std::endl;
    code = 1;
  }
  if (client_) {
    try {
      client_->command({"HSET", "orchard:run:" + spec_.name, "status", code == 0 ? "finished" : "failed", "exit_code",
                        std::to_string(code)});
    } catch (const Error&) {
    }
  }
  client_.reset();
  if (redis_) redis_->stop();
  return code;
}

}  // namespace

void add_run(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("run", "Run a training job on this machine from a run spec (docs/run-spec.md)");
  struct Args {
    std::string spec;
    std::vector<std::string> sets;
    std::string redis;
    bool resume = false, quiet = false;
    int max_restarts = 5;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("spec", args->spec, "Run spec (YAML)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--set", args->sets, "Override a spec key: key.path=value (repeatable)");
  cmd->add_option("--redis", args->redis, "Redis URL (default: the spec's, else an embedded redis-server)");
  cmd->add_flag("--resume", args->resume, "Continue the run from its checkpoints in the run directory");
  cmd->add_flag("-q,--quiet", args->quiet, "Fewer lines: no per-process start lines");
  cmd->add_option("--max-restarts", args->max_restarts, "Restarts allowed per process before the run fails")
      ->check(CLI::Range(0, 1000));
  cmd->callback([args, exit_code] {
    std::vector<std::string> sets = args->sets;
    if (!args->redis.empty()) sets.push_back("redis=" + args->redis);
    RunSpec spec = RunSpec::load(args->spec, sets);
    spec.resolve();
    const std::string ckpt = spec.checkpoint_dir + "/learner.pt";
    if (!args->resume && fs::exists(ckpt))
      throw Error("run '" + spec.name + "' already has a checkpoint (" + ckpt + "); use --resume to continue it, or "
                  "another name (--set name=...) or run_dir to start afresh");
    if (args->resume && !fs::exists(ckpt))
      throw Error("--resume: run '" + spec.name + "' has no checkpoint at " + ckpt);
    if (!args->resume) fs::remove_all(spec.run_dir + "/replay");  // no stale replay checkpoints
    core::Shutdown::install();
    LocalRun run(std::move(spec), args->quiet, args->max_restarts);
    *exit_code = run.run();
  });
}

}  // namespace orchard::cli
