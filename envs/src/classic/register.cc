#include "classic/cartpole.h"
#include "orchard/envs/registry.h"

namespace orchard::envs {

void register_classic(EnvRegistry& r) {
  add_builtin<classic::CartPole>(r, "CartPole-v1", "classic", "Balance a pole on a cart (Gymnasium CartPole-v1)",
                                 {{"max_episode_steps", "500", "time limit (truncation)"}});
}

}  // namespace orchard::envs
