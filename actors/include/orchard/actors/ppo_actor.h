// The on-policy actor loop: N environments in a VectorEnv, one batched forward pass of the
// current policy per step, fixed-length trajectory segments (obs, action, reward, terminated,
// truncated, behaviour log-prob, value, bootstrap observation) streamed to a replay table, and
// new policy weights swapped in between steps. The orchard-actor process wraps this.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "orchard/core/wire.h"
#include "orchard/envs/env.h"
#include "orchard/learner/model.h"
#include "orchard/replay/client.h"

namespace orchard::actors {

struct PpoActorOptions {
  std::string env = "CartPole-v1";
  envs::EnvOptions env_options;
  int64_t num_envs = 8;
  uint64_t seed = 0;                 // env i is reset with seed + i; torch sampling seeded too
  uint32_t segment_length = 128;     // T
  learner::ModelConfig model;
  replay::ReplayWriterOptions writer;  // endpoints, table, actor_id, credits, ...
  std::string weights_endpoint;      // SUB socket for WEIGHTS; empty: keep the initial weights
  std::string model_description;
  // CURVE for the weights subscription (the learner's public key and this actor's pair, Z85);
  // empty server key: plaintext. The replay writer's own keys are writer.security.
  std::string weights_server_key;
  core::CurveKeyPair weights_client_keys;     // WEIGHTS for another model are refused
};

struct PpoActorStats {
  bool learner_finished = false;  // the learner's final broadcast arrived (see poll_weights())
  uint64_t env_steps = 0;
  uint64_t segments = 0;
  uint64_t episodes = 0;
  double mean_return = 0;    // over the last 100 episodes
  uint64_t weights_version = 0;
  uint64_t weights_refused = 0;
  std::string last_refusal;  // why the last refused weights were refused
};

class PpoActor {
 public:
  // Builds the envs and the model; throws orchard::Error naming what does not fit (unknown env,
  // spaces the model cannot serve).
  explicit PpoActor(PpoActorOptions options);
  ~PpoActor();

  // Runs `vector_steps` steps of all envs. Finished segments are appended to the writer (which
  // blocks when its credits are used up, so a slow shard slows the actor). Throws the writer's
  // errors (a fatal reply from the shard names the shard and the reason).
  void run(int64_t vector_steps);
  // Takes weights from the learner until the first WEIGHTS message has been loaded or timeout_ms
  // passed; returns whether weights were loaded (false without a weights endpoint).
  bool wait_for_weights(int timeout_ms);
  // Waits until every written segment is acknowledged.
  void flush(int timeout_ms);
  // Takes the newest weights (and the learner's final broadcast) without stepping.
  void poll_weights();

  const PpoActorStats& stats() const;
  learner::ActorCritic& model();
  // The replay table signature the segments have (per item).
  std::vector<core::TensorSpec> segment_signature() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace orchard::actors
