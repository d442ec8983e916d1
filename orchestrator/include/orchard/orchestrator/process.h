// Running helper programs and finding Orchard's own executables.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <string>
#include <vector>

namespace orchard::orchestrator {

struct CommandResult {
  int exit_code = -1;   // -1: could not start, 128+N: killed by signal N
  std::string output;   // stdout (and stderr when merged)
};

// Runs argv[0] (searched on PATH) with arguments, no shell, waits at most timeout_ms, and
// returns its exit code and output (capped at max_output bytes). A program still running at the
// timeout is killed and reported with exit code 124.
CommandResult run_command(const std::vector<std::string>& argv, int timeout_ms, bool merge_stderr = true,
                          size_t max_output = 1 << 20);

struct SpawnOptions {
  int parent_death_signal = SIGTERM;  // delivered to the child if this process dies; 0: none
  bool new_process_group = false;     // setpgid(0, 0) in the child
  std::string stdout_path;            // redirect stdout (append) when set
  std::string stderr_path;            // redirect stderr (append) when set
  std::vector<std::string> extra_env; // "KEY=value" added to (or replacing in) the inherited environment
  std::vector<int> cpus;              // sched_setaffinity to these CPUs in the child; empty: inherit
  std::string cwd;                    // working directory of the child; empty: inherit
};

// Starts argv[0] (absolute, or searched on PATH) with fork/exec, no shell. Closes the race in
// which a signal sent to the child between fork() and exec() would be swallowed by this
// process's handlers: SIGINT/SIGTERM are blocked around fork, and the child restores default
// handlers before unblocking them. Throws orchard::Error naming the program when it cannot start.
pid_t spawn_process(const std::vector<std::string>& argv, const SpawnOptions& options = {});

// Sends `sig` to the process and everything in its process group when it leads one (started
// with new_process_group): a shell or a simulator's children go with it. Otherwise to the
// process alone.
void signal_tree(pid_t pid, int sig);

// After a group leader (started with new_process_group) has exited: SIGKILL whatever of its
// group is still running (children it left behind), so nothing of a run outlives it. A pid
// cannot be reused while a group of that id has members, so this reaches only that group.
void kill_leftovers(pid_t leader);

// Waits up to timeout_ms for `pid` to exit; then SIGKILLs it and reaps it. Returns the raw wait
// status (or -1 if it could not be reaped).
int wait_or_kill(pid_t pid, int timeout_ms);

// Full path of `name` on PATH, or "" if absent.
std::string find_on_path(const std::string& name);

// Directory holding the running executable (/proc/self/exe).
std::string self_dir();

}  // namespace orchard::orchestrator
