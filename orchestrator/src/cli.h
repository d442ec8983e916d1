// Subcommands of the `orchard` CLI, each in its own file. Each returns the process exit code.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

namespace orchard::cli {

// A number of seconds in [0, max]; unlike CLI::Range, refuses "nan" too.
inline CLI::Validator seconds_at_most(double max) {
  return CLI::Validator(
      [max](std::string& text) -> std::string {
        double v = -1;
        try {
          v = std::stod(text);
        } catch (const std::exception&) {
        }
        char limit[32];
        std::snprintf(limit, sizeof limit, "%g", max);
        return v >= 0 && v <= max ? "" : "expected seconds in [0, " + std::string(limit) + "], got '" + text + "'";
      },
      "SECONDS");
}

// `orchard selfcheck`: an end-to-end check of the runtime (embedded Redis, ZeroMQ framing,
// tensor codec, flow control, metrics) between two real processes.
void add_selfcheck(CLI::App& app, int* exit_code);

// `orchard replay serve|info|checkpoint`.
void add_replay(CLI::App& app, int* exit_code);

// `orchard env list|check|rollout|bench`.
void add_env(CLI::App& app, int* exit_code);

// `orchard run SPEC` / `orchard up SPEC`: a training run on this machine (shards, learner,
// actors) under the Asio scheduler; `up` detaches.
void add_run(CLI::App& app, int* exit_code);

// `orchard status|top|stop|scale|logs`: inspect and steer runs through Redis.
void add_control(CLI::App& app, int* exit_code);

// `orchard agent`: the node agent daemon for multi-host runs.
void add_agent(CLI::App& app, int* exit_code);
// The first line of a token file (at least 16 characters); throws ConfigError naming the file.
std::string read_token_file(const std::string& path);

}  // namespace orchard::cli
