#include <cstdio>
#include <cstdlib>

#include "orchard/envs/registry.h"

namespace orchard::envs {

EnvRegistry& EnvRegistry::global() {
  static EnvRegistry* registry = [] {
    auto* r = new EnvRegistry();
    register_builtin_envs(*r);
    if (const char* path = std::getenv("ORCHARD_PLUGIN_PATH")) {
      for (const auto& err : r->load_plugin_path(path)) std::fprintf(stderr, "orchard: %s\n", err.c_str());
    }
    return r;
  }();
  return *registry;
}

void register_builtin_envs(EnvRegistry& registry) {
  register_classic(registry);
  register_greenhouse(registry);
  register_agv(registry);
  register_driving(registry);
  register_games(registry);
}

}  // namespace orchard::envs
