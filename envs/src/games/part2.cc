#include "games/part2.h"

#include "games/roguelike.h"
#include "games/seaquest.h"

namespace orchard::envs {

void register_games_part2(EnvRegistry& r) {
  add_builtin<games::Seaquest>(
      r, "MinAtar-Seaquest-v1", "games",
      "MinAtar Seaquest: shoot enemies, rescue divers and surface before the oxygen runs out (actions n,l,u,r,d,f)",
      {{"sticky_action_prob", "0.1", "probability in [0, 1] that the previous action is repeated (MinAtar)"},
       {"difficulty_ramping", "true", "each surfacing speeds up enemy spawning and movement, as MinAtar"},
       {"full_action_space", "false", "accepted for MinAtar compatibility; Seaquest's minimal set is all 6 actions"},
       {"max_episode_steps", "10000", "time limit (truncation) in [0, 1e9]; 0: none, as MinAtar"}});
  add_builtin<games::Roguelike>(
      r, "Roguelike-v0", "games",
      "Procedural dungeon: fetch keys, open locked doors, avoid or kill monsters and reach the stairs",
      {{"width", "24", "map width in cells, in [5, 64]"},
       {"height", "18", "map height in cells, in [5, 64]"},
       {"rooms", "6", "rooms per level, in [2, 144]; each needs a grid cell of at least 5x5"},
       {"view_size", "7", "side of the egocentric view, odd, in [3, 31]"},
       {"monsters", "3", "monsters per level, in [0, 16] (fewer when the rooms are full)"},
       {"key_colors", "2", "locked doors (one per colour) with their keys, in [0, 3]; needs rooms > key_colors"},
       {"max_episode_steps", "500", "time limit (truncation) in [0, 1e9]; 0: none"}});
}

}  // namespace orchard::envs
