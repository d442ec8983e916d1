// A real redis-server child process for tests, on a loopback port picked at run time.
//
// Persistence is off (--save "" --appendonly no), so data lives only as long as the process.
// The server writes its log and working files to a private temporary directory that the
// destructor removes. The child is killed with SIGKILL if the thread that started it dies
// (PR_SET_PDEATHSIG), so a crashing test does not leave servers behind.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace orchard::testing {

class RedisServer {
 public:
  // Starts redis-server on 127.0.0.1 with requirepass when `password` is not empty. Retries on a
  // fresh port when the server exits during startup (another process took the port). Blocks until
  // the server logs that it accepts connections, at most 10 s. Throws orchard::Error when
  // redis-server is not installed (not on PATH, not /usr/bin/redis-server) or never becomes ready;
  // the message includes the tail of the server log. Tests must fail, not skip, on that error.
  explicit RedisServer(std::string password = "");
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Starts the server again on the same port after stop(), e.g. to test reconnects. No port
  // retry: throws orchard::Error if it cannot bind or does not become ready within 10 s.
  void start();

  // SIGTERM, then SIGKILL if the process has not exited within 5 s; reaps it. Idempotent.
  void stop();

  bool running() const { return pid_ > 0; }
  uint16_t port() const { return port_; }
  const std::string& password() const { return password_; }
  // "redis://127.0.0.1:<port>/0", with ":<password>@" when a password is set.
  std::string url() const;
  // The last `max_bytes` of the server log, for failure messages.
  std::string log_tail(size_t max_bytes = 2000) const;

 private:
  // Spawns redis-server on port_ and waits until it is ready. Returns "" when ready, otherwise
  // why not; `exited` tells whether the process exited (so a new port may help).
  std::string launch(bool& exited);

  std::string binary_;
  std::string password_;
  std::string dir_;       // private temporary directory; removed by the destructor
  std::string log_path_;  // dir_/redis.log, appended to by every start
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace orchard::testing
