// The off-policy (SAC/APT) actor loop: N environments in a VectorEnv, one batched sample of the
// current SAC policy per step (uniform random actions in the Box during warm-up), n-step
// transitions (obs, action, reward, discount, next_obs) assembled per env and streamed to a
// replay table, and new policy weights swapped in between steps. The counterpart of PpoActor for
// SacLearner; a learner samples the table and publishes SacLearner::named_state() back.
//
// Episode ends follow VectorEnv's same-step auto-reset: the transition of an episode's last step
// bootstraps from final_observations() (discount gamma^m on truncation, 0 on termination), and
// the next step starts the new episode from the reset observation. Every env step yields exactly
// one transition once it has been emitted: when its n-step window is full, at its episode's end,
// or at finish().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "orchard/core/tensor.h"
#include "orchard/core/wire.h"
#include "orchard/envs/env.h"
#include "orchard/learner/sac.h"
#include "orchard/replay/client.h"

namespace orchard::actors {

struct SacActorOptions {
  std::string env = "Pendulum-v1";
  envs::EnvOptions env_options;
  int64_t num_envs = 1;              // >= 1
  // Env i is reset with seed + i. The policy is built with sac.seed replaced by this seed (its
  // parameter init and sampling generator), and the warm-up RNG (std::mt19937_64) is seeded
  // with it too, so one seed makes an actor's experience reproducible.
  uint64_t seed = 0;
  learner::SacOptions sac;           // network shapes (actor_hidden; critic_hidden unused here)
  uint32_t n_step = 1;               // n of the NStepAssembler, >= 1
  double gamma = 0.99;               // discount of the n-step returns, in [0, 1]
  // Env steps (summed over this actor's envs) with actions drawn uniformly from the Box before
  // the policy acts: a vector step is random while stats().env_steps < random_steps, so the
  // count is rounded up to a multiple of num_envs.
  int64_t random_steps = 0;
  // Vector steps whose emitted transitions go out together as one ReplayWriter::append() batch
  // (>= 1). Larger batches mean fewer round trips; transitions wait for up to this many steps.
  uint32_t steps_per_batch = 1;
  replay::ReplayWriterOptions writer;  // endpoints, table, actor_id, credits, ... (kTransition)
  std::string weights_endpoint;      // SUB socket for WEIGHTS (latest wins); empty: keep the initial weights
  // WEIGHTS whose model description differs are refused (see sac_model_description()). Empty:
  // no description check (names and shapes are still checked by load_named_state()).
  std::string model_description;
  // CURVE for the weights subscription (the learner's public key and this actor's pair, Z85);
  // empty server key: plaintext. The replay writer's own keys are writer.security.
  std::string weights_server_key;
  core::CurveKeyPair weights_client_keys;
};

struct SacActorStats {
  bool learner_finished = false;  // the learner's final broadcast arrived (see poll_weights())
  uint64_t env_steps = 0;    // summed over envs
  uint64_t transitions = 0;  // handed to the writer (append()ed)
  uint64_t episodes = 0;     // finished episodes
  double mean_return = 0;    // over the last 100 finished episodes (0 before the first)
  uint64_t weights_version = 0;  // of the weights acting now; 0: the initial ones
  uint64_t weights_refused = 0;
  std::string last_refusal;  // why the last refused weights were refused
};

// The description learner and actors agree on, e.g. "SacActor obs[3] act[1] hidden[256,256]".
std::string sac_model_description(int64_t obs_dim, int64_t act_dim, const std::vector<int64_t>& actor_hidden);

class SacActor {
 public:
  // Builds the envs, the policy, the assembler and the writer, and resets the envs. Throws
  // orchard::Error naming what does not fit: an unknown env, observations that are not a
  // float32 Box (names the env and dtype), an action space that is not a bounded float32 Box
  // (names the env and the action space), or a bad option (num_envs, n_step, gamma,
  // steps_per_batch, random_steps).
  explicit SacActor(SacActorOptions options);
  ~SacActor();
  SacActor(const SacActor&) = delete;
  SacActor& operator=(const SacActor&) = delete;

  // Runs `vector_steps` steps of all envs. Before each step the newest WEIGHTS waiting on the
  // socket are swapped in (bad ones are counted in stats(), never thrown). Every steps_per_batch
  // vector steps the transitions emitted since the last batch are appended to the writer with
  // policy_version = stats().weights_version at that moment (the writer blocks when its credits
  // are used up, so a slow shard slows the actor). Emitted transitions of a partial batch stay
  // buffered across calls until the batch fills or flush()/finish(). Throws the writer's errors
  // (a fatal reply from the shard names the shard and the reason).
  void run(int64_t vector_steps);
  // Appends the buffered emitted transitions (a partial batch), then waits until every appended
  // batch is acknowledged (ReplayError(DEADLINE_EXCEEDED) after timeout_ms). Steps still inside
  // an n-step window are NOT forced out: they stay pending and are emitted by later steps.
  void flush(int timeout_ms);
  // For a stop: ends every env's pending window as truncated (NStepAssembler::truncate,
  // bootstrapping from the last next_obs), appends what came out, then flush(timeout_ms). After
  // it every env step taken so far has been written exactly once. run() may still be called
  // afterwards (windows then restart mid-episode, which is still correct).
  void finish(int timeout_ms);
  // Takes the newest weights (and the learner's final broadcast) without stepping.
  void poll_weights();

  const SacActorStats& stats() const;
  // The SacLearner whose actor acts (its critics and optimisers are unused here).
  learner::SacLearner& policy();
  // The replay table signature, per item: obs f32 [obs_dim], action f32 [act_dim],
  // reward f32 [], discount f32 [], next_obs f32 [obs_dim].
  std::vector<core::TensorSpec> transition_signature() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace orchard::actors
