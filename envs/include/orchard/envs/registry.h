// Named environments: the built-in families and plugins (shared objects, see env_plugin.h).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "orchard/envs/env.h"
#include "orchard/envs/vector_env.h"

namespace orchard::envs {

struct OptionDoc {
  std::string key;
  std::string default_value;
  std::string description;
};

struct EnvEntry {
  std::string name;         // "CartPole-v1"
  std::string family;       // classic | greenhouse | agv | driving | games | plugin
  std::string description;  // one line
  std::string source;       // "builtin" or the plugin's path
  std::vector<OptionDoc> options;
  std::function<std::unique_ptr<Env>(const EnvOptions&)> make;
  // Optional: builds a VectorEnv from envs made by `make` (built-ins use a devirtualised one).
  std::function<std::unique_ptr<VectorEnv>(std::vector<std::unique_ptr<Env>>, size_t)> make_vector = nullptr;
};

class EnvRegistry {
 public:
  EnvRegistry() = default;
  // A registry with every built-in family, plus the plugins found on ORCHARD_PLUGIN_PATH
  // (colon-separated directories of *.so files; a plugin that fails to load is reported on
  // stderr with its path and reason and skipped).
  static EnvRegistry& global();

  // Throws EnvError when the name is taken.
  void add(EnvEntry entry);
  const EnvEntry* find(const std::string& name) const;
  std::vector<const EnvEntry*> list() const;

  // Creates an env. Throws EnvError for an unknown name (with a suggestion), a bad option value,
  // or an option the env does not have.
  std::unique_ptr<Env> make(const std::string& name, const EnvOptions& options = {}) const;
  std::unique_ptr<VectorEnv> make_vector(const std::string& name, size_t num_envs, const EnvOptions& options = {},
                                         size_t num_threads = 1) const;

  // Loads a plugin and adds its envs; returns their names. Throws EnvError naming the path and
  // the reason (dlopen error, missing entry symbol, ABI version mismatch, bad descriptor).
  std::vector<std::string> load_plugin(const std::string& path);
  // Loads every *.so in each directory of a colon-separated list. Returns the errors (one line
  // each, naming the path) instead of throwing, so one bad plugin does not hide the others.
  std::vector<std::string> load_plugin_path(const std::string& dirs);

 private:
  std::vector<EnvEntry> entries_;
};

// Registers one built-in env class: E must be constructible from (const EnvOptions&).
template <class E>
void add_builtin(EnvRegistry& registry, std::string name, std::string family, std::string description,
                 std::vector<OptionDoc> options = {}) {
  registry.add(EnvEntry{std::move(name), std::move(family), std::move(description), "builtin", std::move(options),
                        [](const EnvOptions& o) -> std::unique_ptr<Env> { return std::make_unique<E>(o); },
                        [](std::vector<std::unique_ptr<Env>> envs, size_t threads) {
                          return VectorEnv::typed<E>(std::move(envs), threads);
                        }});
}

// Each built-in family registers its envs here (envs/src/<family>/).
void register_classic(EnvRegistry& registry);
void register_greenhouse(EnvRegistry& registry);
void register_agv(EnvRegistry& registry);
void register_driving(EnvRegistry& registry);
void register_games(EnvRegistry& registry);
void register_builtin_envs(EnvRegistry& registry);

}  // namespace orchard::envs
