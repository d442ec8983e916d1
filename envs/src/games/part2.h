// The games family is written in two parts: register.cc (Breakout, Asterix, Freeway,
// SpaceInvaders) calls register_games_part2() (Seaquest and the roguelike) from part2.cc.
#pragma once

#include "orchard/envs/registry.h"

namespace orchard::envs {

void register_games_part2(EnvRegistry& registry);

}  // namespace orchard::envs
