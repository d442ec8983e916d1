#include "classic/cartpole.h"

#include <chrono>
#include <cmath>
#include <limits>

namespace orchard::envs::classic {
namespace {

EnvSpec cartpole_spec(const EnvOptions& o) {
  const double inf = std::numeric_limits<double>::infinity();
  EnvSpec s;
  s.name = "CartPole-v1";
  // Observation bounds as Gymnasium: x and theta at twice their thresholds.
  s.observation_space = Space::box({4}, {-2 * CartPole::kXThreshold, -inf, -2 * CartPole::kThetaThreshold, -inf},
                                   {2 * CartPole::kXThreshold, inf, 2 * CartPole::kThetaThreshold, inf});
  s.action_space = Space::discrete(2);
  s.max_episode_steps = o.get_int("CartPole-v1", "max_episode_steps", 500, 1, 1'000'000'000);
  s.reference = "Gymnasium CartPole-v1 (Barto, Sutton & Anderson 1983)";
  return s;
}

}  // namespace

CartPole::CartPole(const EnvOptions& options)
    : Env(cartpole_spec(options)),
      step_cost_ns_(options.get_int("CartPole-v1", "step_cost_us", 0, 0, 10'000'000) * 1000) {}

void CartPole::burn_cpu() const {
  const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(step_cost_ns_);
  while (std::chrono::steady_clock::now() < until) {
  }
}

void CartPole::do_reset(std::optional<uint64_t> seed, void* obs) {
  if (seed) rng_.seed(*seed);
  state_ = {rng_.uniform(reset_low_, reset_high_), rng_.uniform(reset_low_, reset_high_),
            rng_.uniform(reset_low_, reset_high_), rng_.uniform(reset_low_, reset_high_)};
  write_obs(obs);
}

void CartPole::apply_reset_options(const EnvOptions& options) {
  // Like Gymnasium's maybe_parse_reset_bounds: bounds within [-1, 1], low <= high.
  double low = options.get_double(name() + " reset", "low", -0.05, -1.0, 1.0);
  double high = options.get_double(name() + " reset", "high", 0.05, -1.0, 1.0);
  if (low > high) fail("reset option low=" + std::to_string(low) + " is above high=" + std::to_string(high));
  reset_low_ = low;
  reset_high_ = high;
}

void CartPole::do_snapshot(std::vector<uint8_t>* out) const {
  put_state(out, state_, rng_);
}

bool CartPole::do_restore(const uint8_t*& in, const uint8_t* end) {
  return get_state(in, end, &state_, &rng_);
}

}  // namespace orchard::envs::classic
