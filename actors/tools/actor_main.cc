// orchard-actor: the on-policy (PPO) actor process. Steps a VectorEnv with batched inference and
// streams trajectory segments to a replay shard, taking new weights from the learner's PUB socket.
//   orchard-actor --env CartPole-v1 --num-envs 8 --replay tcp://127.0.0.1:5555 --table segments
//                 [--weights tcp://127.0.0.1:5556] [--segment-length 128] [--actor-id 0]
//                 [--seed 0] [--steps N] [-o key=value ...] [--model-description TEXT]
// SIGINT/SIGTERM: finishes the current step, flushes the writer, exits 0.
#include <ATen/Parallel.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include <spdlog/spdlog.h>

#include "orchard/actors/ppo_actor.h"
#include "orchard/core/clock.h"
#include "orchard/core/error.h"
#include "orchard/core/logging.h"
#include "orchard/core/shutdown.h"

int main(int argc, char** argv) {
  CLI::App app{"orchard-actor: the PPO actor process", "orchard-actor"};
  orchard::actors::PpoActorOptions o;
  std::string replay, level = "info";
  std::vector<std::string> env_options;
  int64_t steps = 0;
  uint64_t actor_id = 0;
  double report_s = 10;
  app.add_option("--env", o.env, "Environment name")->required();
  app.add_option("-o,--option", env_options, "Environment option key=value (repeatable)");
  app.add_option("--num-envs", o.num_envs, "Environments stepped together")->check(CLI::Range(int64_t(1), int64_t(65536)));
  app.add_option("--replay", replay, "Replay shard endpoint")->required();
  app.add_option("--table", o.writer.table, "Replay table for the segments");
  app.add_option("--weights", o.weights_endpoint, "Learner's weights endpoint (PUB)");
  app.add_option("--segment-length", o.segment_length, "Steps per segment (T)")->check(CLI::Range(1u, 100000u));
  app.add_option("--actor-id", actor_id, "Actor id (also picks the shard)");
  app.add_option("--seed", o.seed, "Seed");
  app.add_option("--steps", steps, "Vector steps to run, then exit (0: until signalled)");
  app.add_option("--model-description", o.model_description, "Refuse weights for other models");
  app.add_option("--report-s", report_s, "Seconds between progress lines");
  app.add_option("--log-level", level, "trace|debug|info|warn|error");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    orchard::core::init_logging({"actor-" + std::to_string(actor_id), level});
    orchard::core::Shutdown::install();
    at::set_num_threads(1);
    o.env_options = orchard::envs::EnvOptions::parse(env_options);
    o.writer.endpoints = {replay};
    o.writer.actor_id = actor_id;
    o.seed += actor_id * 1'000'003;  // distinct env seeds per actor
    orchard::actors::PpoActor actor(o);
    std::cout << "ready" << std::endl;
    orchard::core::Stopwatch report;
    int64_t done = 0;
    while (!orchard::core::Shutdown::requested() && (steps == 0 || done < steps)) {
      actor.run(1);
      ++done;
      if (report.elapsed_s() >= report_s) {
        const auto& s = actor.stats();
        spdlog::info("{} env steps, {} segments, {} episodes, mean return {:.1f}, weights v{}", s.env_steps,
                     s.segments, s.episodes, s.mean_return, s.weights_version);
        report.restart();
      }
    }
    actor.flush(30000);
    const auto& s = actor.stats();
    std::cout << "done: " << s.env_steps << " env steps, " << s.segments << " segments, weights v"
              << s.weights_version << std::endl;
    return 0;
  } catch (const orchard::Error& e) {
    std::cerr << "orchard-actor: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "orchard-actor: internal error: " << e.what() << "\n";
    return 1;
  }
}
