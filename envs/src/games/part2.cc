#include "games/part2.h"

namespace orchard::envs {

void register_games_part2(EnvRegistry& r) {}

}  // namespace orchard::envs
