// A real child process for integration tests: started with fork/exec, stdout (and stderr) read
// through a pipe, signalled, waited for with a timeout, and killed on destruction.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace orchard::testing {

class ChildProcess {
 public:
  // Starts argv[0] (absolute path or on PATH) with the given environment additions.
  explicit ChildProcess(const std::vector<std::string>& argv,
                        const std::vector<std::string>& extra_env = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Reads until a line containing `needle` appears or timeout; true if it did.
  bool wait_for_output(const std::string& needle, int timeout_ms);
  // Everything read so far.
  const std::string& output() const { return output_; }
  void signal(int sig);
  // Waits for exit; returns the exit code, 128+N for signal N, or -1 on timeout.
  int wait(int timeout_ms);
  bool running();

 private:
  void pump(int timeout_ms);

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int status_ = -1;
  bool exited_ = false;
  std::string output_;
};

// Path of an Orchard executable in the build tree (build/bin/NAME).
std::string orchard_bin(const std::string& name);

}  // namespace orchard::testing
