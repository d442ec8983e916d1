// Running helper programs and finding Orchard's own executables.
#pragma once

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

// Full path of `name` on PATH, or "" if absent.
std::string find_on_path(const std::string& name);

// Directory holding the running executable (/proc/self/exe).
std::string self_dir();

}  // namespace orchard::orchestrator
