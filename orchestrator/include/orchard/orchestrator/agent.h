// The node agent: `orchard agent` runs on every host of a multi-host run and starts, signals and
// lists the run's processes there on behalf of the orchestrator, and reports the host's CPUs and
// memory. Processes are the agent's children (not the orchestrator's), so they keep running when
// the orchestrator stops or restarts; a resumed orchestrator finds them with `list` and adopts
// them. The agent records what it started in <state_dir>/procs.json, so an agent that was itself
// restarted re-attaches to the processes that are still alive (watching their pids).
//
// Transport: one ZeroMQ ROUTER socket; each request is one frame of JSON
//   {"token": "...", "op": "ping|host|start|signal|list|logs|read_file|reset_run|free_port", ...}
// answered by {"ok": true, ...} or {"ok": false, "error": "..."}. Every request must carry the
// agent's token (compared in constant time); CURVE encrypts the channel when the agent has a key
// pair (its public key is then required by clients). Bad requests — unparsable JSON, a wrong
// token, an unknown op, missing or mistyped fields — get an error reply naming the problem and
// are counted; the agent keeps serving.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace orchard::orchestrator {

struct AgentOptions {
  std::string listen = "tcp://0.0.0.0:7070";
  std::string token;             // required, >= 16 characters
  std::string state_dir;         // run files, logs and procs.json live under it (created)
  std::string curve_key_file;    // server key pair (orchard keys); empty: no encryption
  std::string advertise_host;    // the address other hosts reach this one at (reported by `host`)
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
  };
  nlohmann::json op_start(const nlohmann::json& r);
  nlohmann::json op_signal(const nlohmann::json& r);
  nlohmann::json op_list(const nlohmann::json& r);
  nlohmann::json op_logs(const nlohmann::json& r);
  nlohmann::json op_read_file(const nlohmann::json& r);
  nlohmann::json op_host();
  void reap();
  void save_state();
  std::string run_dir(const std::string& run) const;

  AgentOptions options_;
  std::string endpoint_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::map<std::string, Proc> procs_;  // key: run + "/" + name
  std::atomic<bool> stop_{false};
  uint64_t rejected_ = 0;
};

// A client of one agent. Each call is a request with a deadline; on a timeout the socket is
// closed and re-created (so a dead or restarted agent never wedges the client) and the call
// throws orchard::Error naming the agent and the op. An error reply throws too, with the agent's
// message. Not thread-safe.
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

  const std::string& name() const { return name_; }
  const std::string& endpoint() const { return endpoint_; }

 private:
  void connect();
  std::string name_, endpoint_, token_, server_key_;
  int timeout_ms_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace orchard::orchestrator
