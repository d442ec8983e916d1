#include "orchard/orchestrator/process.h"

#include <fcntl.h>
#include <sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include <sys/prctl.h>

#include <thread>

#include "orchard/core/clock.h"
#include "orchard/core/error.h"

extern char** environ;

namespace orchard::orchestrator {

std::string find_on_path(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  dirs += ":/usr/sbin:/sbin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    struct stat st;
    if (end > start && ::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  return "";
}

std::string self_dir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

pid_t spawn_process(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty()) throw Error("spawn_process: empty command");
  std::string exe = argv[0].find('/') != std::string::npos ? argv[0] : find_on_path(argv[0]);
  if (exe.empty() || ::access(exe.c_str(), X_OK) != 0) throw Error(argv[0] + ": program not found or not executable");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // The environment is built before fork: the child may only make async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string entry = *e;
    const std::string key = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& x : options.extra_env) replaced = replaced || x.substr(0, x.find('=')) == key;
    if (!replaced) env_strings.push_back(entry);
  }
  for (const auto& x : options.extra_env) {
    if (x.find('=') == std::string::npos || x.front() == '=')
      throw Error(argv[0] + ": environment entry '" + x + "' is not KEY=value");
    env_strings.push_back(x);
  }
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  for (int c : options.cpus) {
    if (c < 0 || c >= CPU_SETSIZE) throw Error(argv[0] + ": CPU " + std::to_string(c) + " out of range");
    CPU_SET(c, &cpus);
  }
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &block, &old);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    // Child: async-signal-safe calls only until exec.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGINT, &dfl, nullptr);
    ::sigaction(SIGTERM, &dfl, nullptr);
    ::sigaction(SIGPIPE, &dfl, nullptr);
    if (options.parent_death_signal) {
      ::prctl(PR_SET_PDEATHSIG, options.parent_death_signal);
      if (::getppid() != parent) _exit(127);  // the parent already died
    }
    if (options.new_process_group) ::setpgid(0, 0);
    if (!options.stdout_path.empty()) {
      int fd = ::open(options.stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) ::dup2(fd, STDOUT_FILENO);
    }
    if (!options.stderr_path.empty()) {
      int fd = ::open(options.stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) ::dup2(fd, STDERR_FILENO);
    }
    if (!options.cpus.empty() && ::sched_setaffinity(0, sizeof cpus, &cpus) != 0) _exit(126);
    if (!options.cwd.empty() && ::chdir(options.cwd.c_str()) != 0) _exit(126);
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    ::execve(exe.c_str(), args.data(), envp.data());
    _exit(127);
  }
  int err = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) throw Error(argv[0] + ": fork failed: " + std::strerror(err));
  return pid;
}

void signal_tree(pid_t pid, int sig) {
  if (pid <= 0) return;
  if (::getpgid(pid) == pid && ::kill(-pid, sig) == 0) return;
  ::kill(pid, sig);
}

void kill_leftovers(pid_t leader) {
  if (leader > 0) ::kill(-leader, SIGKILL);  // ESRCH when the group is empty: nothing left
}

int wait_or_kill(pid_t pid, int timeout_ms) {
  auto deadline = core::Deadline::after_ms(timeout_ms);
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return -1;
    if (deadline.expired()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

CommandResult run_command(const std::vector<std::string>& argv, int timeout_ms, bool merge_stderr,
                          size_t max_output) {
  CommandResult result;
  if (argv.empty()) return result;
  std::string exe = find_on_path(argv[0]);
  if (exe.empty()) {
    result.output = argv[0] + ": not found";
    return result;
  }
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    result.output = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    result.output = std::string("fork: ") + std::strerror(errno);
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    return result;
  }
  if (pid == 0) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGPIPE, &dfl, nullptr);  // `orchard` ignores it; the command gets the default
    ::dup2(pipefd[1], STDOUT_FILENO);
    if (merge_stderr) {
      ::dup2(pipefd[1], STDERR_FILENO);
    } else {
      int devnull = ::open("/dev/null", O_WRONLY);
      if (devnull >= 0) ::dup2(devnull, STDERR_FILENO);
    }
    ::execv(exe.c_str(), args.data());
    _exit(127);
  }
  ::close(pipefd[1]);
  auto deadline = core::Deadline::after_ms(timeout_ms);
  bool timed_out = false;
  char buf[4096];
  for (;;) {
    pollfd p{pipefd[0], POLLIN, 0};
    int rc = ::poll(&p, 1, deadline.remaining_ms());
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) {
      timed_out = true;
      break;
    }
    ssize_t n = ::read(pipefd[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (result.output.size() < max_output) {
      result.output.append(buf, std::min(static_cast<size_t>(n), max_output - result.output.size()));
    }
  }
  ::close(pipefd[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    result.exit_code = 124;
  } else if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exit_code = 128 + WTERMSIG(status);
  }
  return result;
}

}  // namespace orchard::orchestrator
