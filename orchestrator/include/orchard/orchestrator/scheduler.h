// The run scheduler: starts a run's processes in groups (replay shards, then learners, then
// actors), waits for each to report ready, supervises them (exit status via SIGCHLD, optional
// liveness checks such as Redis heartbeats), restarts a failed process with exponential backoff
// within a restart budget, adds and removes processes while running (scaling), and stops the
// run in reverse group order. Its state lives on one Boost.Asio io_context (signals, timers and
// completions), no locks. Remote processes are started, signalled, listed and polled for
// readiness with one request per agent per round, all agents at once; the rounds are made by a
// worker thread, the only one that calls the agents while the scheduler exists, and their
// answers come back to the io_context as completions, so a silent agent never holds the loop.
//
// Processes are launched by the local backend (fork/exec in their own process group, stdout and
// stderr appended to a per-process log file). A process is ready when its log shows a line that
// starts with "ready".
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>

#include <nlohmann/json_fwd.hpp>
#include <set>
#include <memory>
#include <string>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace orchard::orchestrator {

struct ProcessSpec {
  std::string name;                 // unique: "replay-0", "learner-0", "actor-3"
  std::string role;                 // "replay", "learner", "actor" (free text, for events)
  std::vector<std::string> argv;    // argv[0] absolute or on PATH
  std::string log_path;             // stdout and stderr, appended
  int group = 0;                    // started in ascending order, each group ready before the next
  double ready_timeout_s = 60;      // a start that is not ready in time counts as a failure
  // A clean exit (status 0) of this process ends the run (the learner, when its budget is done).
  bool clean_exit_ends_run = false;
  // A clean exit (status 0) means this process has finished its part: it is not restarted.
  bool clean_exit_is_done = false;
  // Processes of one gang (e.g. learner ranks that all-reduce in lockstep) live and die
  // together: when one fails, the others still running get SIGTERM (SIGKILL after
  // stop_timeout_s), and once none is left running all of them start again together after the
  // backoff. Each member's restart counts against its own budget. Empty: no gang.
  std::string gang;
  std::vector<int> cpus;            // pin to these CPUs (sched_setaffinity); empty: no pinning
  std::vector<std::string> env;     // extra "KEY=value" environment entries
  // Remote processes: the agent (set_agent) that runs it; empty: this machine. For a remote
  // process `log_path` is ignored (the agent keeps the log in its run directory), `{dir}` in argv
  // and env stands for that directory, and `files` (name -> content) are written there first.
  std::string host;
  std::map<std::string, std::string> files;
};

struct SchedulerOptions {
  int max_restarts = 5;             // per process; one more failure stops the run (kFailed)
  double backoff_initial_s = 0.5;   // first restart delay, doubled per restart of that process
  double backoff_max_s = 30;
  double stop_timeout_s = 20;       // SIGTERM, then SIGKILL after this long (per group)
  double tick_s = 0.05;             // readiness polling and restart timers
  int parent_death_signal = 15;     // SIGTERM to the children if the scheduler's process dies
  std::string run = "run";          // run name (agents keep processes per run)
  // This incarnation of the run on the agents (reset_run/open_run gave it): starts carry it, so
  // an agent refuses one left over from an earlier orchestrator; empty: not checked.
  std::string run_epoch;
  double agent_poll_s = 0.25;       // remote processes: exit and readiness polling interval
  double agent_lost_s = 10;         // an agent silent this long: its processes count as failed
  // At start-up, a start_many asks its agent to hold the answer up to this long (and within the
  // request's deadline) until the processes it started are ready; 0: answer at once.
  int agent_start_wait_ms = 1500;
};

enum class ProcState { kPending, kStarting, kRunning, kBackoff, kStopping, kExited };
const char* proc_state_name(ProcState s);

struct ProcInfo {
  ProcessSpec spec;
  ProcState state = ProcState::kPending;
  pid_t pid = -1;
  int restarts = 0;
  double started_at = 0;            // steady seconds of the latest start
  std::string last_exit;            // "exit 1", "signal 9", ""
};

enum class RunOutcome { kFinished, kStopped, kFailed };

struct SchedulerEvent {
  std::string kind;    // start, ready, exit, restart, failed, stop, scale
  std::string proc;
  std::string detail;
};

class AgentClient;

class Scheduler {
 public:
  Scheduler(boost::asio::io_context& io, SchedulerOptions options);
  ~Scheduler();  // kills what is still running (SIGKILL) and reaps it
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Before start(): adds to the plan. While running: starts it now (scaling up) once every
  // earlier group is up. Throws orchard::Error for a duplicate name.
  void add(ProcessSpec spec);
  // Stops one process for good (scaling down): SIGTERM, SIGKILL after stop_timeout_s; it is not
  // restarted. Unknown names throw orchard::Error.
  void remove(const std::string& name, const std::string& why);
  // Starts group by group. on_ready fires once every process of every group is ready.
  void start();
  // Stops the run: the highest group first (actors), each group given stop_timeout_s to exit
  // after SIGTERM, then SIGKILL; on_done(outcome, reason) fires when all have exited.
  void stop(RunOutcome outcome, const std::string& reason);
  // Liveness: called every `every_s` for each running (ready) process; returning false means the
  // process is hung — it is killed (SIGKILL) and handled like a crash.
  void set_liveness_check(std::function<bool(const ProcInfo&)> alive, double every_s);
  // The agent that runs processes whose spec.host is `host`. Every round of calls (a group's
  // starts, the signals of one handler, the periodic `list`, readiness) goes to all agents at
  // once from the scheduler's worker thread and takes at most the longest of their timeouts, or
  // the short suspect timeout of an agent that has missed a deadline (AgentClient::try_call_each);
  // the loop goes on meanwhile. Do not call these clients yourself while the scheduler runs
  // (sweep_remote() and the destructor wait for the worker first).
  void set_agent(const std::string& host, std::shared_ptr<AgentClient> agent);
  // After the run is done: ends the run on every agent (end_run with run_epoch, all at once):
  // each kills (SIGKILL) what still runs of it there — a start whose reply was lost while the run
  // ended — and refuses later starts of this epoch, so a start still queued in an agent that is
  // frozen now is refused when it wakes. Returns the killed as "name@host (pid N)"; empty when
  // nothing was left behind.
  std::vector<std::string> sweep_remote();
  // A process already running under an agent (found by `list` when a run resumes): taken over
  // as running instead of being started again. Call before start().
  void adopt(const std::string& name, pid_t pid);

  std::function<void(const SchedulerEvent&)> on_event;
  std::function<void()> on_ready;
  std::function<void(RunOutcome, const std::string&)> on_done;

  const std::map<std::string, ProcInfo>& processes() const { return procs_; }
  bool running() const { return phase_ == Phase::kRunning; }
  bool stopping() const { return phase_ == Phase::kStopping || phase_ == Phase::kDone; }
  int count(const std::string& role) const;  // processes of a role not stopped for good

 private:
  enum class Phase { kIdle, kStarting, kRunning, kStopping, kDone };
  struct Impl;
  // Starts these processes: local ones forked one by one, remote ones with one start_many
  // request per agent, all agents at once. A remote start the agent refuses stops the run
  // (kFailed); one it does not answer counts as a failed start (backoff, restart budget).
  void launch_all(const std::vector<ProcInfo*>& procs);
  void launch_local(ProcInfo& p);
  // The answers of a start_many round (names in each request's order).
  void on_started(const std::vector<std::vector<std::string>>& batches, const std::vector<nlohmann::json>& replies);
  // Sends the queued remote signals: one signal_many request per agent, all agents at once, on
  // the agents' worker (wait: from this thread, when the worker is stopped or idle). Called at
  // the end of every handler and public entry point.
  void flush_signals(bool wait = false);
  void on_agent_lists(const std::vector<std::string>& hosts, const std::vector<nlohmann::json>& replies);
  void on_remote_logs(const std::vector<std::string>& hosts, const std::map<std::string, pid_t>& asked,
                      const std::vector<nlohmann::json>& replies);
  void tick();
  void on_sigchld();
  void handle_exit(ProcInfo& p, int status, const std::string& how_override = "");
  void send_signal(ProcInfo& p, int sig);
  void poll_agents();
  void emit(const std::string& kind, const std::string& proc, const std::string& detail);
  void advance_start();
  void advance_stop();
  // A local process's log is read here; a remote one's new output comes in `remote_chunk`
  // (with the poll round: poll_agents -> on_remote_logs).
  bool log_shows_ready(ProcInfo& p, const std::string* remote_chunk = nullptr);

  std::unique_ptr<Impl> impl_;
  SchedulerOptions options_;
  std::map<std::string, ProcInfo> procs_;
  std::map<std::string, size_t> log_offsets_;
  std::map<std::string, std::string> log_pending_;
  std::map<std::string, bool> removed_;  // stopped for good (scale down)
  Phase phase_ = Phase::kIdle;
  int starting_group_ = 0;
  int stopping_group_ = 0;
  double group_stop_deadline_ = 0;
  RunOutcome outcome_ = RunOutcome::kFinished;
  std::string reason_;
  std::function<bool(const ProcInfo&)> alive_;
  double alive_every_s_ = 0, next_alive_check_ = 0;
  std::map<std::string, std::shared_ptr<AgentClient>> agents_;
  std::map<std::string, double> agent_last_ok_;
  std::map<std::string, std::vector<std::pair<std::string, int>>> pending_signals_;  // host -> (name, signal)
  std::set<std::string> start_unanswered_;  // remote processes whose latest start got no reply
  double next_agent_poll_ = 0;
};

double steady_seconds();

}  // namespace orchard::orchestrator
