#include "classic/acrobot.h"
#include "classic/cartpole.h"
#include "classic/mountain_car.h"
#include "classic/pendulum.h"
#include "orchard/envs/registry.h"

namespace orchard::envs {

void register_classic(EnvRegistry& r) {
  add_builtin<classic::CartPole>(r, "CartPole-v1", "classic", "Balance a pole on a cart (Gymnasium CartPole-v1)",
                                 {{"max_episode_steps", "500", "time limit (truncation)"}});
  add_builtin<classic::Pendulum>(
      r, "Pendulum-v1", "classic", "Swing a pendulum up and hold it with bounded torque (Gymnasium Pendulum-v1)",
      {{"max_episode_steps", "200", "time limit (truncation)"},
       {"g", "10.0", "gravity (m/s^2)"},
       {"x_init", "3.14159", "reset angle drawn from [-x_init, x_init] (rad; default pi)"},
       {"y_init", "1.0", "reset angular velocity drawn from [-y_init, y_init] (rad/s), <= 8"}});
  add_builtin<classic::MountainCarContinuous>(
      r, "MountainCarContinuous-v0", "classic",
      "Drive an underpowered car up a hill with a continuous force (Gymnasium MountainCarContinuous-v0)",
      {{"max_episode_steps", "999", "time limit (truncation)"},
       {"goal_velocity", "0", "velocity the car must have at the goal to terminate"},
       {"reset_low", "-0.6", "reset position drawn from [reset_low, reset_high]"},
       {"reset_high", "-0.4", "reset position drawn from [reset_low, reset_high]"}});
  add_builtin<classic::Acrobot>(
      r, "Acrobot-v1", "classic", "Swing the tip of a two-link underactuated arm above a bar (Gymnasium Acrobot-v1)",
      {{"max_episode_steps", "500", "time limit (truncation)"},
       {"book_or_nips", "book", "dynamics: book (Sutton & Barto) or nips (Sutton 1996, one term fewer)"},
       {"torque_noise_max", "0", "uniform noise in [-x, x] added to the torque"},
       {"reset_low", "-0.1", "all four state variables at reset drawn from [reset_low, reset_high]"},
       {"reset_high", "0.1", "all four state variables at reset drawn from [reset_low, reset_high]"}});
}

}  // namespace orchard::envs
