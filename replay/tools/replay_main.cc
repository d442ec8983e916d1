// orchard-replay: one replay shard (also `orchard replay serve`).
//   orchard-replay --config run.yaml --bind tcp://127.0.0.1:5555 [--shard-index 0]
//                  [--checkpoint-dir DIR] [--name replay-0] [--log-level info] [--json-logs]
// Tables and server settings come from the spec's `replay:` section (docs/replay.md).
#include <CLI/CLI.hpp>
#include <atomic>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <thread>

#include "orchard/core/config.h"
#include "orchard/core/error.h"
#include "orchard/core/logging.h"
#include "orchard/core/metrics.h"
#include "orchard/core/shutdown.h"
#include "orchard/replay/server.h"

int main(int argc, char** argv) {
  CLI::App app{"orchard-replay: one shard of Orchard's prioritized replay service", "orchard-replay"};
  std::string config, bind, checkpoint_dir, name, level = "info";
  int shard_index = 0;
  bool json = false;
  std::vector<std::string> overrides;
  app.add_option("--config", config, "Run spec (YAML) with a replay: section")->required();
  app.add_option("--bind", bind, "Endpoint to bind, e.g. tcp://127.0.0.1:5555")->required();
  app.add_option("--shard-index", shard_index, "Index of this shard")->check(CLI::Range(0, 4095));
  app.add_option("--checkpoint-dir", checkpoint_dir, "Overrides replay.checkpoint_dir");
  app.add_option("--name", name, "Process name (default replay-<index>)");
  app.add_option("--set", overrides, "Override a spec key: key.path=value (repeatable)");
  auto* level_opt = app.add_option("--log-level", level, "trace|debug|info|warn|error (default: the spec's logging.level)");
  auto* json_opt = app.add_flag("--json-logs", json, "Log JSON lines (default: the spec's logging.json)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (name.empty()) name = "replay-" + std::to_string(shard_index);
    orchard::core::init_logging({name, level, json, "", true});
    orchard::core::Shutdown::install();
    auto spec = orchard::core::ConfigNode::load_file(config);
    for (const auto& o : overrides) spec.apply_override(o);
    {
      // The spec's logging: section (a relative file is under its run_dir, as RunSpec takes it);
      // --log-level and --json-logs win.
      orchard::core::LogOptions lo = orchard::core::parse_log_options(spec["logging"], {name, level, json, "", true});
      if (!lo.file.empty() && lo.file.front() != '/') {
        const std::string run_dir = spec["run_dir"].defined() ? spec.get_string("run_dir")
                                    : spec["name"].defined() ? "runs/" + spec.get_string("name")
                                                             : ".";
        lo.file = run_dir + "/" + lo.file;
      }
      if (level_opt->count() > 0) lo.level = level;
      if (json_opt->count() > 0) lo.json = json;
      orchard::core::init_logging(lo);
    }
    auto options = orchard::replay::ServerOptions::parse(spec["replay"]);
    options.bind = bind;
    std::vector<std::string> options_tables;
    for (const auto& t : options.tables) options_tables.push_back(t.name);
    options.name = name;
    if (!checkpoint_dir.empty()) options.checkpoint_dir = checkpoint_dir;
    orchard::replay::ShardServer server(std::move(options));
    std::cout << "ready " << server.endpoint() << std::endl;
    // In a run (the spec names the run and its Redis): a heartbeat for the orchestrator and
    // the tables' fill in the metrics:replay stream, from a side thread while run() serves.
    std::mutex mu;
    std::condition_variable cv;
    bool stop_reporting = false;
    std::thread reporter;
    const std::string redis_url = spec["redis"].defined() ? spec.get_string("redis") : "";
    const std::string run_name = spec["name"].defined() ? spec.get_string("name") : "";
    if (!redis_url.empty() && !run_name.empty()) {
      reporter = std::thread([&, redis_url, run_name] {
        orchard::core::MetricsOptions mo;
        mo.url = redis_url;
        mo.stream = "orchard:run:" + run_name + ":metrics:replay";
        mo.heartbeat_key = "orchard:run:" + run_name + ":proc:" + name + ":heartbeat";
        orchard::core::MetricsReporter metrics(mo);
        auto report_tables = [&] {
          for (const auto& t : options_tables) {
            auto* table = server.table(t);
            if (!table) continue;
            metrics.report({{"shard", name}, {"table", t}, {"size", std::to_string(table->size())}});
          }
        };
        std::unique_lock<std::mutex> lock(mu);
        int ticks = 0;
        while (!stop_reporting) {
          lock.unlock();
          metrics.heartbeat();
          if (ticks++ % 5 == 0) report_tables();  // at the start, then every 5 s
          lock.lock();
          cv.wait_for(lock, std::chrono::seconds(1), [&] { return stop_reporting; });
        }
        lock.unlock();
        report_tables();  // the fill at the end, for runs shorter than the interval too
      });
    }
    server.run();
    if (reporter.joinable()) {
      {
        std::lock_guard<std::mutex> g(mu);
        stop_reporting = true;
      }
      cv.notify_all();
      reporter.join();
    }
    return 0;
  } catch (const orchard::Error& e) {
    orchard::core::log_fatal(std::string("orchard-replay: ") + e.what());
    return 1;
  } catch (const std::exception& e) {
    orchard::core::log_fatal(std::string("orchard-replay: internal error: ") + e.what());
    return 1;
  }
}
