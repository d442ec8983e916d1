// Where the CLI finds runs: a small JSON file per run in $ORCHARD_HOME/runs (default
// ~/.orchard/runs) written by `orchard run` — name, Redis URL, run directory, orchestrator pid,
// status — so `orchard status|stop|scale|logs|top RUN` work without being told where Redis is.
// Everything else about a run lives in Redis (docs/redis.md).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "orchard/core/redis.h"

namespace orchard::cli {

std::string orchard_home();
std::string registry_path(const std::string& run);
// Atomic write (temp + rename).
void write_registry(const std::string& run, const nlohmann::json& entry);
// Throws orchard::Error naming the run and where it looked when there is no entry.
nlohmann::json read_registry(const std::string& run);
std::vector<std::string> registry_runs();

// A Redis client for `run`: `redis_url` when given, else the URL from the registry entry.
std::unique_ptr<core::RedisClient> connect_run(const std::string& run, const std::string& redis_url);

// True while process `pid` exists and has not exited (a zombie its parent has not reaped yet
// counts as exited).
bool process_alive(int pid);

// A Redis URL for display: a password is replaced by "***" (it is in the run's registry entry).
std::string shown_url(const std::string& url);

// Redis keys (docs/redis.md).
inline std::string run_key(const std::string& run) { return "orchard:run:" + run; }
inline std::string procs_key(const std::string& run) { return "orchard:run:" + run + ":procs"; }
inline std::string proc_key(const std::string& run, const std::string& proc) {
  return "orchard:run:" + run + ":proc:" + proc;
}
inline std::string heartbeat_key(const std::string& run, const std::string& proc) {
  return proc_key(run, proc) + ":heartbeat";
}
inline std::string events_key(const std::string& run) { return "orchard:run:" + run + ":events"; }
inline std::string metrics_key(const std::string& run, const std::string& role) {
  return "orchard:run:" + run + ":metrics:" + role;
}

// HGETALL as (field, value) pairs, in the server's order.
std::vector<std::pair<std::string, std::string>> hgetall(core::RedisClient& c, const std::string& key);
// The newest entry's fields of a stream (empty when there is none), and the newest entry per
// value of `group_field` among the last `scan` entries.
std::vector<std::pair<std::string, std::string>> latest_entry(core::RedisClient& c, const std::string& stream);
std::vector<std::vector<std::pair<std::string, std::string>>> latest_per(core::RedisClient& c,
                                                                         const std::string& stream,
                                                                         const std::string& group_field, int scan);
// The newest entry for each of `values` of `group_field` (an empty one where none is found),
// looking back through at most `max_scan` entries, newest first, a page at a time.
std::vector<std::vector<std::pair<std::string, std::string>>> latest_of(core::RedisClient& c,
                                                                        const std::string& stream,
                                                                        const std::string& group_field,
                                                                        const std::vector<std::string>& values,
                                                                        int max_scan);
// The newest `n` entries whose `group_field` is `value`, newest first (same look-back bound).
std::vector<std::vector<std::pair<std::string, std::string>>> recent_entries(core::RedisClient& c,
                                                                            const std::string& stream,
                                                                            const std::string& group_field,
                                                                            const std::string& value, size_t n,
                                                                            int max_scan);
std::string field(const std::vector<std::pair<std::string, std::string>>& fields, const std::string& name,
                  const std::string& def = "");

}  // namespace orchard::cli
