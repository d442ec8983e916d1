// `orchard env list|check|rollout|bench`: built-in and plugin environments from the command line.
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.h"
#include "orchard/core/clock.h"
#include "orchard/core/error.h"
#include "orchard/envs/check.h"
#include "orchard/envs/registry.h"

namespace orchard::cli {
namespace {

using envs::EnvOptions;
using envs::EnvRegistry;
using envs::Space;
using envs::SpaceKind;

struct EnvArgs {
  std::string name;
  std::vector<std::string> options;  // -o key=value
  std::vector<std::string> plugins;  // --plugin PATH
  bool json = false;
  uint64_t seed = 0;
  int64_t steps = 0;
  std::string policy = "random";
  std::string format = "jsonl";
  std::vector<size_t> num_envs;
  double seconds = 2.0;
  size_t threads = 1;
};

EnvRegistry& registry(const EnvArgs& a) {
  EnvRegistry& r = EnvRegistry::global();
  for (const auto& p : a.plugins) {
    try {
      r.load_plugin(p);
    } catch (const EnvError& e) {
      // Loading the same plugin twice (also on ORCHARD_PLUGIN_PATH) is not an error.
      if (std::string(e.what()).find("already registered") == std::string::npos) throw;
    }
  }
  return r;
}

void add_common(CLI::App* cmd, EnvArgs* a, bool needs_name) {
  if (needs_name) cmd->add_option("name", a->name, "Environment name (see 'orchard env list')")->required();
  cmd->add_option("-o,--option", a->options, "Environment option key=value (repeatable)");
  cmd->add_option("--plugin", a->plugins, "Load an env plugin (.so) first (repeatable)");
}

// Reads one element of a buffer as a JSON number.
nlohmann::json element(const Space& s, const void* buf, size_t i) {
  switch (s.dtype) {
    case core::DType::kFloat32: return static_cast<const float*>(buf)[i];
    case core::DType::kFloat64: return static_cast<const double*>(buf)[i];
    case core::DType::kUInt8: return static_cast<const uint8_t*>(buf)[i];
    case core::DType::kInt64: return static_cast<const int64_t*>(buf)[i];
    default: return nullptr;
  }
}

nlohmann::json to_json(const Space& s, const void* buf) {
  if (s.kind == SpaceKind::kDiscrete) return element(s, buf, 0);
  nlohmann::json arr = nlohmann::json::array();
  for (int64_t i = 0; i < s.numel(); ++i) arr.push_back(element(s, buf, static_cast<size_t>(i)));
  return arr;
}

// Parses one action from JSON text (a number, or an array for Box/MultiDiscrete).
void parse_action(const Space& s, const std::string& text, const std::string& where, void* out) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw Error(where + ": not valid JSON: " + text);
  }
  std::vector<nlohmann::json> values;
  if (j.is_array()) {
    values.assign(j.begin(), j.end());
  } else {
    values.push_back(j);
  }
  if (static_cast<int64_t>(values.size()) != s.numel()) {
    throw Error(where + ": expected " + std::to_string(s.numel()) + " value(s) for " + s.to_string() + ", got " +
                std::to_string(values.size()));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (!values[i].is_number()) throw Error(where + ": element " + std::to_string(i) + " is not a number");
    if (s.dtype == core::DType::kInt64) {
      if (!values[i].is_number_integer()) {
        throw Error(where + ": element " + std::to_string(i) + " must be an integer for " + s.to_string());
      }
      static_cast<int64_t*>(out)[i] = values[i].get<int64_t>();
    } else {
      static_cast<float*>(out)[i] = values[i].get<float>();
    }
  }
}

int env_list(const EnvArgs& a) {
  EnvRegistry& r = registry(a);
  nlohmann::json out = nlohmann::json::array();
  for (const auto* e : r.list()) {
    nlohmann::json j = {{"name", e->name}, {"family", e->family}, {"description", e->description},
                        {"source", e->source}};
    try {
      auto env = r.make(e->name);
      j["observation_space"] = env->observation_space().to_string();
      j["action_space"] = env->action_space().to_string();
      j["max_episode_steps"] = env->spec().max_episode_steps;
    } catch (const std::exception& ex) {
      j["error"] = ex.what();
    }
    nlohmann::json opts = nlohmann::json::array();
    for (const auto& o : e->options) opts.push_back({{"key", o.key}, {"default", o.default_value}, {"help", o.description}});
    j["options"] = opts;
    out.push_back(j);
  }
  if (a.json) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  for (const auto& j : out) {
    std::cout << j["name"].get<std::string>() << "  [" << j["family"].get<std::string>() << "]  "
              << j["description"].get<std::string>() << "\n";
    if (j.contains("error")) {
      std::cout << "    error: " << j["error"].get<std::string>() << "\n";
      continue;
    }
    std::cout << "    observation: " << j["observation_space"].get<std::string>() << "\n"
              << "    action:      " << j["action_space"].get<std::string>() << "\n"
              << "    time limit:  " << j["max_episode_steps"].get<int64_t>() << " steps\n";
    if (j["source"] != "builtin") std::cout << "    plugin:      " << j["source"].get<std::string>() << "\n";
    if (!j["options"].empty()) {
      std::cout << "    options:    ";
      for (const auto& o : j["options"]) std::cout << " " << o["key"].get<std::string>() << "=" << o["default"].get<std::string>();
      std::cout << "\n";
    }
  }
  return 0;
}

int env_check(const EnvArgs& a) {
  EnvRegistry& r = registry(a);
  EnvOptions opts = EnvOptions::parse(a.options);
  r.make(a.name, opts);  // fail fast on a bad name or option, with the registry's message
  envs::CheckOptions co;
  co.steps = a.steps > 0 ? a.steps : 2000;
  co.seed = a.seed;
  auto rep = envs::check_env([&] { return r.make(a.name, opts); }, co);
  if (a.json) {
    std::cout << nlohmann::json({{"env", a.name}, {"ok", rep.ok()}, {"passed", rep.passed},
                                 {"failures", rep.failures}, {"notes", rep.notes}})
                     .dump(2)
              << "\n";
  } else {
    for (const auto& p : rep.passed) std::cout << "ok    " << p << "\n";
    for (const auto& n : rep.notes) std::cout << "note  " << n << "\n";
    for (const auto& f : rep.failures) std::cout << "FAIL  " << f << "\n";
    std::cout << a.name << ": " << (rep.ok() ? "all checks passed" : "conformance checks FAILED") << "\n";
  }
  return rep.ok() ? 0 : 1;
}

int env_rollout(const EnvArgs& a) {
  if (a.format != "jsonl") throw Error("--format " + a.format + ": only jsonl is supported");
  EnvRegistry& r = registry(a);
  auto env = r.make(a.name, EnvOptions::parse(a.options));
  const Space& os = env->observation_space();
  const Space& as = env->action_space();
  std::vector<uint8_t> obs(os.nbytes()), action(as.nbytes());
  envs::Rng rng(a.seed ^ 0xac710ull);
  std::ifstream actions_file;
  int64_t line_no = 0;
  if (a.policy != "random" && a.policy != "zero") {
    actions_file.open(a.policy);
    if (!actions_file) throw Error("--policy " + a.policy + ": not 'random', 'zero' or a readable action file");
  }
  auto next_action = [&]() -> bool {
    if (a.policy == "random") {
      envs::sample_action(as, rng, action.data());
    } else if (a.policy == "zero") {
      std::fill(action.begin(), action.end(), 0);
      if (as.kind == SpaceKind::kBox) {
        // Zero clipped into the bounds.
        float* f = reinterpret_cast<float*>(action.data());
        for (int64_t i = 0; i < as.numel(); ++i) f[i] = static_cast<float>(std::clamp(0.0, as.low[i], as.high[i]));
      }
    } else {
      std::string line;
      do {
        if (!std::getline(actions_file, line)) return false;
        ++line_no;
      } while (line.find_first_not_of(" \t\r") == std::string::npos);
      parse_action(as, line, a.policy + ":" + std::to_string(line_no), action.data());
    }
    return true;
  };
  env->reset(a.seed, obs.data());
  std::cout << nlohmann::json({{"t", 0}, {"episode", 0}, {"reset", true}, {"obs", to_json(os, obs.data())}}).dump()
            << "\n";
  int64_t episode = 0;
  for (int64_t t = 1; t <= a.steps; ++t) {
    if (!next_action()) break;
    auto res = env->step(action.data(), obs.data());
    std::cout << nlohmann::json({{"t", t},
                                 {"episode", episode},
                                 {"action", to_json(as, action.data())},
                                 {"reward", res.reward},
                                 {"terminated", res.terminated},
                                 {"truncated", res.truncated},
                                 {"obs", to_json(os, obs.data())}})
                     .dump()
              << "\n";
    if (res.terminated || res.truncated) {
      ++episode;
      env->reset(std::nullopt, obs.data());
      std::cout << nlohmann::json({{"t", t}, {"episode", episode}, {"reset", true}, {"obs", to_json(os, obs.data())}})
                       .dump()
                << "\n";
    }
  }
  return 0;
}

int env_bench(const EnvArgs& a) {
  EnvRegistry& r = registry(a);
  EnvOptions opts = EnvOptions::parse(a.options);
  std::vector<size_t> sizes = a.num_envs.empty() ? std::vector<size_t>{1, 16, 256} : a.num_envs;
  nlohmann::json results = nlohmann::json::array();
  for (size_t n : sizes) {
    auto venv = r.make_vector(a.name, n, opts, a.threads);
    const Space& as = venv->spec().action_space;
    // Pre-generated random actions (a ring of batches), so the loop measures the envs only.
    const size_t ring = std::max<size_t>(1, std::min<size_t>(64, (1u << 20) / (n * as.nbytes())));
    std::vector<uint8_t> actions(ring * n * as.nbytes());
    envs::Rng rng(a.seed);
    for (size_t k = 0; k < ring * n; ++k) envs::sample_action(as, rng, actions.data() + k * as.nbytes());
    venv->reset(a.seed);
    // Warm up, then run for the requested time in blocks.
    for (size_t k = 0; k < 10; ++k) venv->step(actions.data() + (k % ring) * n * as.nbytes());
    core::Stopwatch clock;
    uint64_t steps = 0, k = 0;
    const uint64_t block = std::max<uint64_t>(1, 65536 / n);
    while (clock.elapsed_s() < a.seconds) {
      for (uint64_t b = 0; b < block; ++b, ++k) venv->step(actions.data() + (k % ring) * n * as.nbytes());
      steps += block * n;
    }
    double secs = clock.elapsed_s();
    double rate = static_cast<double>(steps) / secs;
    results.push_back({{"env", a.name}, {"num_envs", n}, {"threads", venv->num_threads()}, {"steps", steps},
                       {"seconds", secs}, {"steps_per_s", rate}, {"steps_per_s_per_core", rate / venv->num_threads()},
                       {"episodes", venv->episodes_finished()}});
    if (!a.json) {
      std::printf("%-28s N=%-5zu threads=%zu  %12.0f steps/s  (%.0f per core, %" PRIu64 " episodes)\n", a.name.c_str(),
                  n, venv->num_threads(), rate, rate / venv->num_threads(), venv->episodes_finished());
      std::fflush(stdout);
    }
  }
  if (a.json) std::cout << results.dump(2) << "\n";
  return 0;
}

}  // namespace

void add_env(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<EnvArgs>();
  auto* env = app.add_subcommand("env", "Environments: list, check, rollout, bench (built-ins and plugins)");
  env->require_subcommand(1);

  auto* list = env->add_subcommand("list", "List environments with their spaces and options");
  list->add_option("--plugin", a->plugins, "Load an env plugin (.so) first (repeatable)");
  list->add_flag("--json", a->json, "JSON output");
  list->callback([a, exit_code] { *exit_code = env_list(*a); });

  auto* check = env->add_subcommand("check", "API conformance checks for an environment");
  add_common(check, a.get(), true);
  check->add_option("--steps", a->steps, "Random-action steps (default 2000)")->check(CLI::Range(int64_t(1), int64_t(100'000'000)));
  check->add_option("--seed", a->seed, "Seed");
  check->add_flag("--json", a->json, "JSON output");
  check->callback([a, exit_code] { *exit_code = env_check(*a); });

  auto* rollout = env->add_subcommand("rollout", "Run a policy and print one JSON object per step");
  add_common(rollout, a.get(), true);
  rollout->add_option("--seed", a->seed, "Seed")->default_val(0);
  rollout->add_option("--steps", a->steps, "Steps to run")->required()->check(CLI::Range(int64_t(1), int64_t(1'000'000'000)));
  rollout->add_option("--policy", a->policy, "random, zero, or a file with one JSON action per line")->default_val("random");
  rollout->add_option("--format", a->format, "Output format (jsonl)")->default_val("jsonl");
  rollout->callback([a, exit_code] { *exit_code = env_rollout(*a); });

  auto* bench = env->add_subcommand("bench", "Steps per second through VectorEnv (random actions)");
  add_common(bench, a.get(), true);
  bench->add_option("--num-envs", a->num_envs, "VectorEnv sizes (default 1 16 256)")->check(CLI::Range(size_t(1), size_t(1 << 20)));
  bench->add_option("--seconds", a->seconds, "Seconds per size")->default_val(2.0)->check(CLI::Range(0.01, 3600.0));
  bench->add_option("--threads", a->threads, "Worker threads in the VectorEnv")->default_val(1)->check(CLI::Range(size_t(1), size_t(256)));
  bench->add_option("--seed", a->seed, "Seed")->default_val(0);
  bench->add_flag("--json", a->json, "JSON output");
  bench->callback([a, exit_code] { *exit_code = env_bench(*a); });
}

}  // namespace orchard::cli
