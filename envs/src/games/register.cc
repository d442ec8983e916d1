#include "games/asterix.h"
#include "games/breakout.h"
#include "games/freeway.h"
#include "games/part2.h"
#include "games/space_invaders.h"
#include "orchard/envs/registry.h"

namespace orchard::envs {
namespace {

// The options every MinAtar game takes (docs/envs/games.md); `ramps` says whether
// difficulty_ramping changes anything in that game.
std::vector<OptionDoc> minatar_options(bool ramps) {
  return {
      {"sticky_action_prob", "0.1", "probability in [0, 1] that the previous action is repeated (MinAtar)"},
      {"difficulty_ramping", "true",
       ramps ? "speed the game up over time, as MinAtar"
             : "accepted for MinAtar compatibility; this game does not ramp"},
      {"full_action_space", "false", "use MinAtar's 6 actions n,l,u,r,d,f instead of the game's minimal set"},
      {"max_episode_steps", "10000", "time limit (truncation) in [0, 1e9]; 0: none, as MinAtar"},
  };
}

}  // namespace

void register_games(EnvRegistry& r) {
  add_builtin<games::Breakout>(r, "MinAtar-Breakout-v1", "games",
                               "MinAtar Breakout: bounce a ball off a paddle into rows of bricks (actions n,l,r)",
                               minatar_options(false));
  add_builtin<games::Asterix>(r, "MinAtar-Asterix-v1", "games",
                              "MinAtar Asterix: collect gold and dodge enemies crossing 8 lanes (actions n,l,u,r,d)",
                              minatar_options(true));
  add_builtin<games::Freeway>(r, "MinAtar-Freeway-v1", "games",
                              "MinAtar Freeway: cross 8 lanes of traffic within 2500 frames (actions n,u,d)",
                              minatar_options(false));
  add_builtin<games::SpaceInvaders>(r, "MinAtar-SpaceInvaders-v1", "games",
                                    "MinAtar SpaceInvaders: shoot down waves of descending aliens (actions n,l,r,f)",
                                    minatar_options(true));
  register_games_part2(r);
}

}  // namespace orchard::envs
