#include "support/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "orchard/core/clock.h"

extern char** environ;

namespace orchard::testing {

std::string orchard_bin(const std::string& name) { return std::string(ORCHARD_BIN_DIR) + "/" + name; }

ChildProcess::ChildProcess(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  for (const auto& e : extra_env) env.push_back(e);
  std::vector<char*> args, envp;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::setpgid(0, 0);
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    if (argv[0].find('/') != std::string::npos) {
      ::execve(argv[0].c_str(), args.data(), envp.data());
    } else {
      ::execvpe(argv[0].c_str(), args.data(), envp.data());
    }
    std::fprintf(stderr, "exec %s: %s\n", argv[0].c_str(), std::strerror(errno));
    _exit(127);
  }
  ::close(fds[1]);
  out_fd_ = fds[0];
}

ChildProcess::~ChildProcess() {
  // The child leads its own process group: kill whatever it left behind too.
  if (pid_ > 0) ::kill(-pid_, SIGKILL);
  if (pid_ > 0 && !exited_) {
    ::kill(pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
  }
  if (out_fd_ >= 0) ::close(out_fd_);
}

void ChildProcess::pump(int timeout_ms) {
  if (out_fd_ < 0) return;
  pollfd p{out_fd_, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return;
  char buf[4096];
  ssize_t n = ::read(out_fd_, buf, sizeof(buf));
  if (n > 0) {
    output_.append(buf, static_cast<size_t>(n));
  } else if (n == 0) {
    ::close(out_fd_);
    out_fd_ = -1;
  }
}

bool ChildProcess::wait_for_output(const std::string& needle, int timeout_ms) {
  auto deadline = core::Deadline::after_ms(timeout_ms);
  while (output_.find(needle) == std::string::npos) {
    if (deadline.expired() || out_fd_ < 0) return output_.find(needle) != std::string::npos;
    pump(std::min(deadline.remaining_ms(), 50));
  }
  return true;
}

void ChildProcess::signal(int sig) {
  if (pid_ > 0 && !exited_) ::kill(pid_, sig);
}

bool ChildProcess::running() {
  if (exited_) return false;
  int st;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    exited_ = true;
    status_ = st;
    return false;
  }
  return true;
}

int ChildProcess::wait(int timeout_ms) {
  auto deadline = core::Deadline::after_ms(timeout_ms);
  while (running()) {
    if (deadline.expired()) return -1;
    pump(10);
  }
  // Collect what it printed last; a grandchild may hold the pipe open, so stay bounded.
  while (out_fd_ >= 0 && !deadline.expired()) pump(std::min(100, std::max(1, deadline.remaining_ms())));
  if (WIFEXITED(status_)) return WEXITSTATUS(status_);
  if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
  return -1;
}

}  // namespace orchard::testing
