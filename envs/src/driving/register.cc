#include "driving/highway.h"
#include "orchard/envs/registry.h"

namespace orchard::envs {

namespace {

std::vector<OptionDoc> highway_options() {
  return {
      {"lanes_count", "4", "number of lanes (1..20); lane 0 is the leftmost"},
      {"vehicles_count", "50", "other (IDM/MOBIL) vehicles (0..1000)"},
      {"duration", "40", "episode length in simulated seconds; sets the default max_episode_steps"},
      {"simulation_frequency", "15", "simulation steps per second [Hz] (1..1000)"},
      {"policy_frequency", "1", "decisions per second [Hz] (1..simulation_frequency)"},
      {"observation_vehicles", "5", "observation rows, the ego's included (1..100)"},
      {"ego_spacing", "2", "spacing factor ahead of the ego's initial position (0..100)"},
      {"vehicles_density", "1", "traffic density; spacing between vehicles scales with 1/density (0.01..100)"},
      {"initial_lane_id", "-1", "ego's initial lane, -1 for a random one"},
      {"collision_reward", "-1", "reward weight of a crash"},
      {"right_lane_reward", "0.1", "reward weight of lane / (lanes - 1)"},
      {"high_speed_reward", "0.4", "reward weight of the forward speed mapped from the speed range to [0, 1]"},
      {"reward_speed_low", "20", "forward speed [m/s] that earns no speed reward"},
      {"reward_speed_high", "30", "forward speed [m/s] that earns the full speed reward"},
      {"normalize_reward", "true", "map rewards from [collision, high_speed + right_lane] to [0, 1]"},
      {"offroad_terminal", "false", "also terminate when the ego leaves the road"},
      {"max_episode_steps", "ceil(duration * policy_frequency)", "time limit in decisions (truncation)"},
  };
}

}  // namespace

void register_driving(EnvRegistry& r) {
  add_builtin<driving::Highway>(
      r, "Highway-v0", "driving",
      "Drive fast on the right of a multi-lane highway among IDM/MOBIL traffic; meta-actions (HighwayEnv "
      "highway-v0)",
      highway_options());
  add_builtin<driving::HighwayContinuous>(
      r, "HighwayContinuous-v0", "driving",
      "Highway-v0 with continuous acceleration and steering (HighwayEnv highway-v0, ContinuousAction)",
      highway_options());
}

}  // namespace orchard::envs
