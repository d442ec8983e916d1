// The node agent: `orchard agent` runs on every host of a multi-host run and starts, signals and
// lists the run's processes there on behalf of the orchestrator, and reports the host's CPUs and
// memory. Processes are the agent's children (not the orchestrator's), so they keep running when
// the orchestrator stops or restarts; a resumed orchestrator finds them with `list` and adopts
// them. The agent records what it started in <state_dir>/procs.json, so an agent that was itself
// restarted re-attaches to the processes that are still alive (watching their pids).
//
// Transport: one ZeroMQ ROUTER socket; each request is one frame of JSON
//   {"token": "...", "op": "ping|host|start|start_many|signal|signal_many|list|logs|logs_many|read_file|
//   reset_run|open_run|end_run|free_port", ...}
// A run has an epoch (a string the orchestrator picks for each incarnation: reset_run for a new
// run, open_run for a resumed one). Starts that carry another epoch are refused as stale, and
// end_run kills what still runs of the run and refuses its later starts, so a request that
// waited in a frozen agent's queue past the run's end cannot bring a process of it back.
// Every reply carries the agent's clock (now_ms); a start or signal may carry not_after_ms (the
// sender's deadline, in that clock) and is refused as expired after it. A start_many with
// wait_ready_ms is answered once its processes have printed "ready" or exited (or the wait,
// bounded by not_after_ms, is over), their output since the start in "logs"; the agent serves
// other requests meanwhile.
// answered by {"ok": true, ...} or {"ok": false, "error": "..."}. Every request must carry the
// agent's token (compared in constant time); CURVE encrypts the channel when the agent has a key
// pair (its public key is then required by clients). Bad requests — unparsable JSON, a wrong
// token, an unknown op, missing or mistyped fields — get an error reply naming the problem and
// are counted; the agent keeps serving.
#pragma once

#include <algorithm>
#include <vector>

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace zmq {
class message_t;
}

namespace orchard::orchestrator {

struct AgentOptions {
  std::string listen = "tcp://0.0.0.0:7070";
  std::string token;             // required, >= 16 characters
  std::string state_dir;         // run files, logs and procs.json live under it (created)
  std::string curve_key_file;    // server key pair (orchard keys); empty: no encryption
  std::string advertise_host;    // the address other hosts reach this one at (reported by `host`)
  // Added to this host's wall clock wherever the agent reads it for the protocol (now_ms,
  // deadlines): fault injection, so tests can show hosts whose clocks disagree by minutes.
  int64_t clock_skew_ms = 0;
  // A run's processes outlive its orchestrator for this long (seconds; 0: for ever): when no
  // orchestrator has driven the run here for that time (starts, signals, open_run, or the
  // scheduler's polls, which carry "lease": true), the agent stops them (SIGTERM, then SIGKILL after
  // min(15 s, this)), so an orchestrator that died, or an end_run missed while this agent was down, does
  // not leave them running. A restarted agent counts from its start.
  double orphan_after_s = 600;
};

class AgentServer {
 public:
  // Binds; restores procs.json (processes still alive are watched again). Throws orchard::Error
  // for a short token or a bind failure (naming the endpoint).
  explicit AgentServer(AgentOptions options);
  ~AgentServer();
  // Serves until stop() or a shutdown signal (core::Shutdown). Children keep running.
  void run();
  void stop() { stop_ = true; }
  const std::string& endpoint() const { return endpoint_; }
  uint64_t rejected() const { return rejected_; }

  // One request (the JSON text of a frame) -> the reply; public for tests.
  nlohmann::json handle(const std::string& request);

 private:
  struct Proc {
    std::string run, name, log;
    pid_t pid = -1;
    bool child = true;     // our child (waitpid) or adopted after an agent restart (kill(pid, 0))
    bool exited = false;
    int status = 0;        // wait status; for adopted processes only "gone" is known (-1)
    int64_t started_ms = 0;
    int64_t log_start = 0;  // the log's size when this start began (its output follows)
  };
  // reuse_running: a process of that name still running is the answer (start_many), not an error.
  nlohmann::json op_start(const nlohmann::json& r, bool reuse_running = false);
  nlohmann::json op_signal(const nlohmann::json& r);
  nlohmann::json op_end_run(const nlohmann::json& r);
  // Throws for a start of an ended run or one carrying an epoch other than the run's.
  void check_open(const std::string& run, const nlohmann::json& r) const;
  // Throws for a start or signal whose not_after_ms (the sender's deadline, in this clock) has passed.
  void check_not_expired(const std::string& op, const nlohmann::json& r) const;
  int64_t clock_ms() const;  // the clock requests' deadlines and now_ms are in
  nlohmann::json op_list(const nlohmann::json& r);
  nlohmann::json op_logs(const nlohmann::json& r);
  nlohmann::json read_logs(const nlohmann::json& r);  // r["reads"] as logs_many answers them
  nlohmann::json op_read_file(const nlohmann::json& r);
  nlohmann::json op_host();
  void reap();
  void save_state();
  // Stops the processes of runs no orchestrator has driven for orphan_after_s (see AgentOptions).
  void end_orphans();
  // Held start_many replies (wait_ready_ms): see run().
  bool started_and_settled(const std::string& run, const nlohmann::json& reads);
  void release_held(bool all);
  bool wants_wait(const nlohmann::json& request, const nlohmann::json& reply,
                  std::chrono::steady_clock::time_point* until, nlohmann::json* reads) const;
  void send_reply(zmq::message_t& identity, const nlohmann::json& reply);
  std::string run_dir(const std::string& run) const;

  AgentOptions options_;
  std::string endpoint_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::map<std::string, Proc> procs_;  // key: run + "/" + name
  struct RunState {
    std::string epoch;  // empty: none given (requests without an epoch are not checked)
    bool ended = false;
  };
  std::map<std::string, RunState> runs_;
  // Per run: when an orchestrator last drove it here, and when its orphans were sent SIGTERM.
  std::map<std::string, std::chrono::steady_clock::time_point> contact_, orphan_term_;
  std::atomic<bool> stop_{false};
  uint64_t rejected_ = 0;
};

// A client of one agent. Each call is a request with a deadline; on a timeout the socket is
// closed and re-created (so a dead or restarted agent never wedges the client) and the call
// throws orchard::Error naming the agent and the op. An error reply throws too, with the agent's
// message. Not thread-safe. A silent agent becomes suspect (see suspect()).
class AgentClient {
 public:
  AgentClient(std::string name, std::string endpoint, std::string token, std::string server_public_key = "",
              int timeout_ms = 3000);
  ~AgentClient();
  AgentClient(const AgentClient&) = delete;
  AgentClient& operator=(const AgentClient&) = delete;

  nlohmann::json call(nlohmann::json request);
  // Like call() but returns false instead of throwing when the agent does not answer in time.
  bool try_call(const nlohmann::json& request, nlohmann::json* reply);
  // The same request to several agents at once: all are sent, then all sockets are polled
  // together until each has answered or the longest of their deadlines has passed, so one silent
  // agent delays the round by one timeout, not one per agent. (*replies)[i] is the reply of
  // agents[i] or null when it did not answer in time.
  static void try_call_all(const std::vector<AgentClient*>& agents, const nlohmann::json& request,
                           std::vector<nlohmann::json>* replies);
  // The same with a request of its own for each agent (requests[i] to agents[i]).
  static void try_call_each(const std::vector<AgentClient*>& agents, const std::vector<nlohmann::json>& requests,
                            std::vector<nlohmann::json>* replies);

  // Like try_call_each, but every agent must answer ok: the first that does not (in order) is
  // thrown as orchard::Error, worded as call() words it.
  static std::vector<nlohmann::json> call_each(const std::vector<AgentClient*>& agents,
                                               const std::vector<nlohmann::json>& requests);
  // Why `reply` (null: none came) to `op` is not a success, in call()'s words; empty if it is.
  std::string failure(const std::string& op, const nlohmann::json& reply) const;

  // An agent that missed its last deadline is suspect: until it answers again, calls to it wait
  // at most suspect_timeout_ms (default 250) instead of the full timeout, so a dead VM cannot
  // hold the scheduler's event loop for seconds at every call.
  bool suspect() const { return suspect_; }
  void set_suspect_timeout_ms(int ms) { suspect_timeout_ms_ = ms; }

  const std::string& name() const { return name_; }
  const std::string& endpoint() const { return endpoint_; }

 private:
  void connect();
  // wait_ms: how long this client waits for the answer (a start or signal carries its end, in
  // the agent's clock, as not_after_ms once the clock offset is known).
  void send_request(const nlohmann::json& request, int wait_ms);
  // After send_request: the reply if it is there (received_ms: when it was seen, wall clock),
  // else marks the client suspect and resets it.
  bool take_reply(bool readable, nlohmann::json* reply, int64_t received_ms);
  void update_clock(const nlohmann::json& reply, int64_t received_ms);
  int effective_timeout_ms() const { return suspect_ ? std::min(timeout_ms_, suspect_timeout_ms_) : timeout_ms_; }
  std::string name_, endpoint_, token_, server_key_;
  int timeout_ms_;
  int suspect_timeout_ms_ = 250;
  bool suspect_ = false;
  // The agent's clock minus ours, from its replies' now_ms (Cristian's algorithm).
  bool clock_known_ = false;
  int64_t clock_offset_ms_ = 0, clock_rtt_ms_ = 0, best_rtt_ms_ = 0, sent_ms_ = 0;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace orchard::orchestrator
