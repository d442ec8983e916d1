#include "orchard/envs/registry.h"

#include <cstdio>
#include <cstdlib>

#include "orchard/core/config.h"

namespace orchard::envs {

void EnvRegistry::add(EnvEntry entry) {
  if (find(entry.name)) {
    throw EnvError("env '" + entry.name + "' is already registered (by " + find(entry.name)->source + ")");
  }
  entries_.push_back(std::move(entry));
}

const EnvEntry* EnvRegistry::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

std::vector<const EnvEntry*> EnvRegistry::list() const {
  std::vector<const EnvEntry*> out;
  for (const auto& e : entries_) out.push_back(&e);
  return out;
}

std::unique_ptr<Env> EnvRegistry::make(const std::string& name, const EnvOptions& options) const {
  const EnvEntry* e = find(name);
  if (!e) {
    std::vector<std::string_view> names;
    for (const auto& x : entries_) names.push_back(x.name);
    std::string msg = "unknown env '" + name + "'";
    if (auto s = core::closest_match(name, names)) msg += "; did you mean '" + *s + "'?";
    msg += " (run 'orchard env list')";
    throw EnvError(msg);
  }
  auto env = e->make(options);
  options.check_all_used(name);
  return env;
}

std::unique_ptr<VectorEnv> EnvRegistry::make_vector(const std::string& name, size_t num_envs,
                                                    const EnvOptions& options, size_t num_threads) const {
  if (num_envs == 0) throw EnvError(name + ": num_envs must be at least 1");
  std::vector<std::unique_ptr<Env>> envs;
  envs.reserve(num_envs);
  for (size_t i = 0; i < num_envs; ++i) envs.push_back(make(name, options));
  const EnvEntry* e = find(name);
  if (e->make_vector) return e->make_vector(std::move(envs), num_threads);
  return std::make_unique<VectorEnv>(std::move(envs), num_threads);
}

}  // namespace orchard::envs
