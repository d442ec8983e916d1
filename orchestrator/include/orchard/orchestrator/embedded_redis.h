// The embedded Redis default: a real redis-server child process on a loopback port picked at
// run time, used when a run spec names no Redis (and by the test suite).
//
// The child is killed with SIGKILL if the thread that started it dies (PR_SET_PDEATHSIG), so a
// crashed orchestrator or test does not leave servers behind.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace orchard::orchestrator {

struct EmbeddedRedisOptions {
  std::string password;  // requirepass when not empty
  std::string data_dir;  // working dir (log, AOF); empty: a private temp dir removed at the end
  uint16_t port = 0;     // 0: a free loopback port, retried on a fresh one if the race is lost
  bool persist = false;  // appendonly yes (survives a restart of the server in the same dir)
  // Also listen on this address (multi-host runs: other hosts reach the run's Redis there;
  // set a password then). Empty: loopback only.
  std::string extra_bind;
};

class EmbeddedRedis {
 public:
  // Starts redis-server bound to 127.0.0.1. Blocks until the server logs that it accepts
  // connections, at most 10 s. Throws orchard::Error when redis-server is not installed (not on
  // PATH, not /usr/bin/redis-server) or never becomes ready; the message has the log's tail.
  explicit EmbeddedRedis(EmbeddedRedisOptions options = {});
  ~EmbeddedRedis();
  EmbeddedRedis(const EmbeddedRedis&) = delete;
  EmbeddedRedis& operator=(const EmbeddedRedis&) = delete;

  // Starts the server again on the same port after stop() (reconnect tests, restarts). No port
  // retry: throws orchard::Error if it cannot bind or does not become ready within 10 s.
  void start();

  // SIGTERM, then SIGKILL if the process has not exited within 5 s; reaps it. Idempotent.
  void stop();

  // When the server has exited on its own (killed, crashed), reaps it and says how ("was killed
  // by signal 9"); "" while it runs or after stop(). running() is false afterwards, and start()
  // brings it back on the same port (with persist, with its data).
  std::string reap_if_exited();

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  const std::string& password() const { return password_; }
  const std::string& data_dir() const { return dir_; }
  // "redis://127.0.0.1:<port>/0", with ":<password>@" when a password is set.
  std::string url() const;
  // The same URL with `host` instead of 127.0.0.1 (for processes on other hosts).
  std::string url_for(const std::string& host) const;
  // The last `max_bytes` of the server log, for failure messages.
  std::string log_tail(size_t max_bytes = 2000) const;

 private:
  // Spawns redis-server on port_ and waits until it is ready. Returns "" when ready, otherwise
  // why not; `exited` tells whether the process exited (so a new port may help).
  std::string launch(bool& exited);

  std::string binary_;
  std::string password_;
  bool persist_ = false;
  std::string extra_bind_;
  std::string dir_;
  bool owns_dir_ = false;
  std::string log_path_;  // dir_/redis.log, appended to by every start
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace orchard::orchestrator
