#include "games/part2.h"
#include "orchard/envs/registry.h"

namespace orchard::envs {

void register_games(EnvRegistry& r) { register_games_part2(r); }

}  // namespace orchard::envs
