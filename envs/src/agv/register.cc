#include "agv/agv.h"
#include "orchard/envs/registry.h"

namespace orchard::envs {
namespace {

std::vector<OptionDoc> agv_options(agv::Scene scene, bool dynamic) {
  std::vector<OptionDoc> docs = {
      {"num_rays", "32", "range-sensor rays, evenly spread over 360 degrees from the heading [1, 1024]"},
      {"max_range", "10", "sensor range in metres; readings are distance / max_range [0.1, 1000]"},
      {"map_file", "", "text map file (size/box/start/target lines, docs/envs/agv.md); empty: procedural layouts"},
      {"layout_seed", "-1", "-1: a new procedural layout every episode, from the episode's seed; >= 0: one fixed "
                            "layout generated from this seed"},
      {"dense_shaping", "false", "add progress toward the target / map diagonal to every reward"},
  };
  if (dynamic) docs.push_back({"target_speed", "0.5", "moving target's speed along its waypoints, m/s [0, 2]"});
  docs.push_back({"max_episode_steps", std::to_string(agv::scene_max_steps(scene)),
                  "time limit (truncation); the time penalty is -1/max_episode_steps per step"});
  return docs;
}

}  // namespace

void register_agv(EnvRegistry& r) {
  using agv::Scene;
  add_builtin<agv::SimpleStatic>(r, agv::scene_name(Scene::kSimpleStatic), "agv",
                                 "Warehouse AGV reaches a fixed target among shelf rows, 20 m x 20 m (Yin et al. 2024)",
                                 agv_options(Scene::kSimpleStatic, false));
  add_builtin<agv::SimpleDynamic>(r, agv::scene_name(Scene::kSimpleDynamic), "agv",
                                  "Warehouse AGV reaches a moving target among shelf rows, 20 m x 20 m (Yin et al. 2024)",
                                  agv_options(Scene::kSimpleDynamic, true));
  add_builtin<agv::ComplexStatic>(r, agv::scene_name(Scene::kComplexStatic), "agv",
                                  "Warehouse AGV reaches a fixed target in a two-hall warehouse, 40 m x 30 m "
                                  "(Yin et al. 2024)",
                                  agv_options(Scene::kComplexStatic, false));
  add_builtin<agv::ComplexDynamic>(r, agv::scene_name(Scene::kComplexDynamic), "agv",
                                   "Warehouse AGV reaches a moving target in a two-hall warehouse, 40 m x 30 m "
                                   "(Yin et al. 2024)",
                                   agv_options(Scene::kComplexDynamic, true));
}

}  // namespace orchard::envs
