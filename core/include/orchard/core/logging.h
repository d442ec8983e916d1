// Process-wide logging set-up on spdlog.
//
// Every Orchard process calls init_logging() once, naming itself ("replay-0", "actor-3"), so
// interleaved logs from a run can be told apart. Text lines look like
//   2026-11-21 10:00:00.123 I actor-3 [pid 4242] connected to replay-0
// and JSON lines (one object per line, for log shippers) like
//   {"ts":"2026-11-21T10:00:00.123Z","level":"info","proc":"actor-3","pid":4242,"msg":"..."}
#pragma once

#include <string>

#include <spdlog/spdlog.h>

namespace orchard::core {

class ConfigNode;

struct LogOptions {
  std::string process = "orchard";  // name shown on every line
  std::string level = "info";       // trace | debug | info | warn | error | critical | off
  bool json = false;                // one JSON object per line instead of text
  std::string file;                 // also append to this file when set
  bool to_stderr = true;            // write to stderr (the console)
};

// Reads a `logging:` section (keys: level, json, file) over `defaults`. Throws ConfigError.
LogOptions parse_log_options(const ConfigNode& node, LogOptions defaults = {});

// Replaces the default spdlog logger. Throws orchard::ConfigError for an unknown level or a file
// that cannot be opened. Safe to call again (tests, log level changes).
void init_logging(const LogOptions& options);

// A process's last word before it exits with an error: logged at `critical` through the current
// logger (so it is in the JSON lines and the shared log file like every other line) and flushed;
// written to stderr as plain text instead when the logger is off.
void log_fatal(const std::string& message);

// Maps "warn" etc. to a level; throws ConfigError naming the allowed values.
spdlog::level::level_enum parse_log_level(const std::string& level);

// Escapes a string for inclusion inside a JSON string literal.
std::string json_escape(const std::string& s);

}  // namespace orchard::core
