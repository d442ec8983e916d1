// orchard-actor: the actor process. Steps a VectorEnv with batched inference and streams
// experience to the replay shards, taking new weights from the learner's PUB socket:
// trajectory segments for PPO, n-step transitions (after a random warm-up) for SAC and APT.
//
// From a resolved run spec (what `orchard run` starts):
//   orchard-actor --spec runs/quickstart/spec.yaml --actor-id 1 [--set key=value ...]
// Stand-alone PPO actor from flags (tests, benchmarks):
//   orchard-actor --env CartPole-v1 --num-envs 8 --replay tcp://127.0.0.1:5555 --table segments
//                 [--weights tcp://127.0.0.1:5556] [--segment-length 128] [--actor-id 0]
//                 [--seed 0] [--steps N] [-o key=value ...] [--model-description TEXT]
// SIGINT/SIGTERM: finishes the current step, flushes the writer, exits 0.
#include <ATen/Parallel.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <thread>

#include <spdlog/spdlog.h>

#include "orchard/actors/ppo_actor.h"
#include "orchard/actors/sac_actor.h"
#include "orchard/core/clock.h"
#include "orchard/core/error.h"
#include "orchard/core/logging.h"
#include "orchard/core/metrics.h"
#include "orchard/core/shutdown.h"
#include "orchard/envs/registry.h"
#include "orchard/learner/torch_info.h"
#include "orchard/orchestrator/run_spec.h"

namespace {

using orchard::orchestrator::Algorithm;
using orchard::orchestrator::RunSpec;

struct Progress {
  uint64_t env_steps = 0, items = 0, episodes = 0, weights_version = 0, weights_refused = 0;
  double mean_return = 0;
  bool learner_finished = false;
};

// The loop both actor kinds share: step, report, stop on signal or after `steps` vector steps.
template <class Actor, class Stats>
int drive(Actor& actor, int64_t steps, double report_s, orchard::core::MetricsReporter& metrics, uint64_t actor_id,
          Stats stats) {
  orchard::core::Stopwatch report, total;
  uint64_t steps_at_report = 0;
  int64_t done = 0;
  bool idle = false;
  // One progress line and one metrics entry, rates since the previous one.
  auto report_now = [&] {
    Progress p = stats(actor);
    const double sps = static_cast<double>(p.env_steps - steps_at_report) / std::max(1e-9, report.elapsed_s());
    spdlog::info("{} env steps ({:.0f}/s), {} items, {} episodes, mean return {:.2f}, weights v{}", p.env_steps, sps,
                 p.items, p.episodes, p.mean_return, p.weights_version);
    metrics.report({{"actor", std::to_string(actor_id)},
                    {"env_steps", std::to_string(p.env_steps)},
                    {"env_steps_per_s", orchard::core::metric_value(sps)},
                    {"items", std::to_string(p.items)},
                    {"episodes", std::to_string(p.episodes)},
                    {"mean_return", orchard::core::metric_value(p.mean_return)},
                    {"weights_version", std::to_string(p.weights_version)},
                    {"weights_refused", std::to_string(p.weights_refused)}});
    steps_at_report = p.env_steps;
    report.restart();
  };
  while (!orchard::core::Shutdown::requested() && (steps == 0 || done < steps)) {
    metrics.heartbeat();
    if (stats(actor).learner_finished) {
      // The learner's final broadcast: nothing will sample what this actor makes any more.
      if (!idle) spdlog::info("the learner has finished (final weights v{}); no more steps, waiting to be stopped",
                              stats(actor).weights_version);
      idle = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    try {
      actor.run(1);
    } catch (const orchard::replay::ReplayError& e) {
      // The rate limiter or a full queue held the batch past block_timeout_ms: the learner is
      // behind. The experience stays in the actor's assembler and goes out with the next batch.
      if (!orchard::replay::is_retryable(e.code())) throw;
      actor.poll_weights();  // a finished learner says so while the table holds us back
      continue;
    }
    ++done;
    if (report.elapsed_s() >= report_s) report_now();
  }
  // A last entry, so a run shorter than the report interval has its actors' figures too.
  if (stats(actor).env_steps > steps_at_report) report_now();
  Progress p = stats(actor);
  std::cout << "done: " << p.env_steps << " env steps, " << p.items << " items, weights v" << p.weights_version
            << ", " << static_cast<uint64_t>(static_cast<double>(p.env_steps) / std::max(1e-9, total.elapsed_s()))
            << " env steps/s" << std::endl;
  metrics.flush();
  return 0;
}

// At exit the learner may already be gone (it ends the run): unacknowledged experience is
// reported, not an error. After the learner's final broadcast nothing will sample it, so a table
// that holds it back (a full PPO queue, a rate limiter) is not waited for.
template <class Actor, class F>
void final_flush(Actor& actor, F flush) {
  actor.poll_weights();
  const bool finished = actor.stats().learner_finished;
  try {
    flush(finished ? 50 : 2000);  // finished: acks of what the table takes at once, over a LAN
  } catch (const orchard::Error& e) {
    if (finished)
      spdlog::info("the learner has finished: experience it will not read is left out, as expected at the end of a "
                   "run ({})", e.what());
    else
      spdlog::warn("stopping with experience not acknowledged by the replay shard: {}", e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"orchard-actor: the actor process of a run", "orchard-actor"};
  orchard::actors::PpoActorOptions o;
  std::string spec_path, replay, level = "info";
  std::vector<std::string> env_options, overrides;
  int64_t steps = 0;
  uint64_t actor_id = 0;
  double report_s = 10;
  app.add_option("--spec", spec_path, "Resolved run spec (orchard run writes <run_dir>/spec.yaml)");
  app.add_option("--set", overrides, "Override a spec key: key.path=value (repeatable)");
  app.add_option("--env", o.env, "Environment name (without --spec)");
  app.add_option("-o,--option", env_options, "Environment option key=value (repeatable)");
  app.add_option("--num-envs", o.num_envs, "Environments stepped together")->check(CLI::Range(int64_t(1), int64_t(65536)));
  app.add_option("--replay", replay, "Replay shard endpoint (without --spec)");
  app.add_option("--table", o.writer.table, "Replay table for the segments");
  app.add_option("--weights", o.weights_endpoint, "Learner's weights endpoint (PUB)");
  app.add_option("--segment-length", o.segment_length, "Steps per segment (T)")->check(CLI::Range(1u, 100000u));
  app.add_option("--actor-id", actor_id, "Actor id (also picks the shard)");
  app.add_option("--seed", o.seed, "Seed");
  app.add_option("--steps", steps, "Vector steps to run, then exit (0: until signalled)");
  app.add_option("--model-description", o.model_description, "Refuse weights for other models");
  app.add_option("--report-s", report_s, "Seconds between progress lines (without --spec)");
  auto* level_opt = app.add_option("--log-level", level, "trace|debug|info|warn|error (default: the spec's logging.level)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    orchard::core::init_logging({"actor-" + std::to_string(actor_id), level});
    orchard::core::Shutdown::install();
    orchard::learner::set_compute_threads(1);
    if (spec_path.empty()) {
      if (o.env.empty() || replay.empty()) throw orchard::ConfigError("orchard-actor: give --spec, or --env and --replay");
      o.env_options = orchard::envs::EnvOptions::parse(env_options);
      o.writer.endpoints = {replay};
      o.writer.actor_id = actor_id;
      o.seed += actor_id * 1'000'003;  // distinct env seeds per actor
      orchard::actors::PpoActor actor(o);
      std::cout << "ready" << std::endl;
      orchard::core::MetricsReporter none({});
      const int rc = drive(actor, steps, report_s, none, actor_id, [](orchard::actors::PpoActor& a) {
        const auto& s = a.stats();
        return Progress{s.env_steps,       s.segments,    s.episodes,         s.weights_version,
                        s.weights_refused, s.mean_return, s.learner_finished};
      });
      actor.flush(30000);
      return rc;
    }

    RunSpec spec = RunSpec::load(spec_path, overrides);
    {
      orchard::core::LogOptions lo = spec.logging;  // the spec's logging: section; --log-level wins
      lo.process = "actor-" + std::to_string(actor_id);
      if (level_opt->count() > 0) lo.level = level;
      orchard::core::init_logging(lo);
    }
    if (spec.replay_endpoints.empty() || spec.weights_endpoint.empty())
      throw orchard::ConfigError(spec_path + ": endpoints.replay and endpoints.weights are required by "
                                 "orchard-actor (`orchard run` writes a resolved spec with them)");
    spec.resolve();
    orchard::learner::set_compute_threads(static_cast<int>(spec.actors.torch_threads));
    orchard::core::MetricsOptions mo;
    mo.url = spec.redis_url;
    mo.stream = "orchard:run:" + spec.name + ":metrics:actor";
    mo.heartbeat_key = "orchard:run:" + spec.name + ":proc:actor-" + std::to_string(actor_id) + ":heartbeat";
    orchard::core::MetricsReporter metrics(mo);
    const uint64_t seed = spec.seed * 1000 + actor_id * 1'000'003;
    orchard::replay::ReplayWriterOptions w;
    w.endpoints = spec.replay_endpoints;
    w.actor_id = actor_id;
    w.table = spec.table;
    w.name = "actor-" + std::to_string(actor_id) + "-" + std::to_string(::getpid());
    // SIGTERM (a scale-down, the run's stop) ends a wait for the table at once; so does the
    // learner's final broadcast (the actors add that check).
    w.interrupt = [] { return orchard::core::Shutdown::requested(); };
    orchard::core::CurveKeyPair client_keys;
    std::string server_key;
    if (!spec.curve_keys.empty()) {  // CURVE on the replay and weights sockets
      client_keys = orchard::core::load_curve_keys(spec.curve_keys + "/client.key", true);
      server_key = orchard::core::load_curve_keys(spec.curve_keys + "/server.key", true).public_key;
      w.security = {server_key, client_keys.public_key, client_keys.secret_key};
    }

    if (spec.algorithm == Algorithm::kPpo) {
      o.env = spec.env.name;
      o.env_options = orchard::envs::EnvOptions::parse(spec.env.options);
      o.num_envs = spec.env.num_envs;
      o.seed = seed;
      o.segment_length = static_cast<uint32_t>(spec.ppo.segment_length);
      o.model.hidden_sizes = spec.ppo.hidden;
      o.model.normalize_obs = spec.ppo.normalize_obs;
      o.model.torso = spec.ppo.torso;
      o.model.conv_channels = spec.ppo.conv_channels;
      w.kind = orchard::replay::ItemKind::kSequence;
      w.sequence_length = o.segment_length;
      w.block_timeout_ms = 250;  // a full queue: the learner is behind (drive() heartbeats, waits on)
      o.writer = w;
      o.weights_endpoint = spec.weights_endpoint;
      o.model_description = spec.model_description();
      o.weights_server_key = server_key;
      o.weights_client_keys = client_keys;
      orchard::actors::PpoActor actor(o);
      std::cout << "ready" << std::endl;
      // On-policy data from a policy the learner never had is wasted: wait for its weights.
      while (!orchard::core::Shutdown::requested() && !actor.wait_for_weights(1000)) {
        metrics.heartbeat();
        spdlog::info("waiting for the learner's weights on {}", spec.weights_endpoint);
      }
      const int rc = drive(actor, steps, spec.actors.report_every_s, metrics, actor_id, [](orchard::actors::PpoActor& a) {
        const auto& s = a.stats();
        return Progress{s.env_steps,       s.segments,    s.episodes,         s.weights_version,
                        s.weights_refused, s.mean_return, s.learner_finished};
      });
      final_flush(actor, [&](int ms) { actor.flush(ms); });
      return rc;
    }

    orchard::actors::SacActorOptions so;
    so.env = spec.env.name;
    so.env_options = orchard::envs::EnvOptions::parse(spec.env.options);
    so.num_envs = spec.env.num_envs;
    so.seed = seed;
    so.sac.actor_hidden = spec.sac.actor_hidden;
    so.sac.critic_hidden = spec.sac.critic_hidden;
    so.sac.seed = seed;
    so.n_step = static_cast<uint32_t>(spec.sac.n_step);
    so.gamma = spec.sac.gamma;
    so.random_steps = spec.sac.random_steps;
    so.steps_per_batch = static_cast<uint32_t>(spec.sac.steps_per_batch);
    w.kind = orchard::replay::ItemKind::kTransition;
    w.block_timeout_ms = 250;  // the rate limiter holds inserts while the learner catches up (drive() waits on)
    so.writer = w;
    so.weights_endpoint = spec.weights_endpoint;
    so.model_description = spec.model_description();
    so.weights_server_key = server_key;
    so.weights_client_keys = client_keys;
    orchard::actors::SacActor actor(so);
    std::cout << "ready" << std::endl;
    const int rc = drive(actor, steps, spec.actors.report_every_s, metrics, actor_id, [](orchard::actors::SacActor& a) {
      const auto& s = a.stats();
      return Progress{s.env_steps,       s.transitions, s.episodes,         s.weights_version,
                      s.weights_refused, s.mean_return, s.learner_finished};
    });
    final_flush(actor, [&](int ms) { actor.finish(ms); });
    return rc;
  } catch (const orchard::Error& e) {
    orchard::core::log_fatal(std::string("orchard-actor: ") + e.what());
    return 1;
  } catch (const std::exception& e) {
    orchard::core::log_fatal(std::string("orchard-actor: internal error: ") + e.what());
    return 1;
  }
}
