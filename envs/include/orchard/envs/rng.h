// The environments' random number generator: orchard::core::Rng (portable xoshiro256++).
#pragma once

#include "orchard/core/rng.h"

namespace orchard::envs {

using Rng = core::Rng;

}  // namespace orchard::envs
