// `orchard replay serve|info|checkpoint`.
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "orchard/core/error.h"
#include "orchard/replay/client.h"
#include "orchard/orchestrator/process.h"

namespace orchard::cli {
namespace {

struct ReplayArgs {
  std::string addr;
  std::string table;
  std::string path;
  int timeout_ms = 5000;
  std::vector<std::string> serve_args;
};

int replay_info(const ReplayArgs& a) {
  replay::ShardInfo info = replay::shard_info(a.addr, a.table, a.timeout_ms);
  nlohmann::json out = {{"shard", info.shard}, {"address", a.addr}, {"rejected_messages", info.rejected_messages}};
  out["tables"] = nlohmann::json::array();
  for (const auto& t : info.tables) {
    nlohmann::json sig = nlohmann::json::array();
    for (const auto& c : t.signature) {
      sig.push_back({{"name", c.name}, {"dtype", core::dtype_name(c.dtype)}, {"shape", c.shape}});
    }
    out["tables"].push_back({{"name", t.name},
                             {"size", t.size},
                             {"max_size", t.max_size},
                             {"inserts", t.inserts},
                             {"samples", t.samples},
                             {"evictions", t.evictions},
                             {"sampler", t.sampler},
                             {"remover", t.remover},
                             {"sampling_weight", t.priority_mass},
                             {"max_priority", t.max_priority},
                             {"min_priority", t.min_priority},
                             {"rate_limiter",
                              {{"min_size_to_sample", t.min_size_to_sample},
                               {"samples_per_insert", t.samples_per_insert},
                               {"min_diff", t.min_diff},
                               {"max_diff", t.max_diff},
                               {"inserts_blocked_s", t.inserts_blocked_ns * 1e-9},
                               {"samples_blocked_s", t.samples_blocked_ns * 1e-9}}},
                             {"signature", sig}});
  }
  std::cout << out.dump(2) << "\n";
  return 0;
}

int replay_checkpoint(const ReplayArgs& a) {
  replay::CheckpointResult c = replay::checkpoint(a.addr, a.path, a.timeout_ms);
  std::cout << nlohmann::json({{"path", c.path}, {"items", c.items}, {"bytes", c.bytes}}).dump(2) << "\n";
  return 0;
}

}  // namespace

void add_replay(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<ReplayArgs>();
  auto* replay = app.add_subcommand("replay", "Replay shards: serve, info, checkpoint");
  replay->require_subcommand(1);

  auto* serve = replay->add_subcommand("serve", "Run one replay shard (same as orchard-replay)");
  serve->allow_extras();
  serve->prefix_command();
  serve->callback([serve, exit_code] {
    std::vector<std::string> argv = {orchestrator::self_dir() + "/orchard-replay"};
    for (const auto& x : serve->remaining()) argv.push_back(x);
    std::vector<char*> args;
    for (auto& s : argv) args.push_back(s.data());
    args.push_back(nullptr);
    ::execv(argv[0].c_str(), args.data());
    throw Error(argv[0] + ": cannot run: " + std::strerror(errno));
  });

  auto* info = replay->add_subcommand("info", "Table statistics of one shard, as JSON");
  info->add_option("--addr", a->addr, "Shard endpoint, e.g. tcp://127.0.0.1:5555")->required();
  info->add_option("--table", a->table, "Only this table");
  info->add_option("--timeout-ms", a->timeout_ms, "Reply deadline")->check(CLI::Range(1, 3'600'000));
  info->callback([a, exit_code] { *exit_code = replay_info(*a); });

  auto* checkpoint = replay->add_subcommand("checkpoint", "Ask a shard to write a checkpoint now");
  checkpoint->add_option("--addr", a->addr, "Shard endpoint")->required();
  checkpoint->add_option("--path", a->path, "Write here instead of the shard's checkpoint directory");
  checkpoint->add_option("--timeout-ms", a->timeout_ms, "Reply deadline")->check(CLI::Range(1, 3'600'000));
  checkpoint->callback([a, exit_code] { *exit_code = replay_checkpoint(*a); });
}

}  // namespace orchard::cli
