// Policy weights on the wire: a WEIGHTS envelope (version, learner updates, model description)
// whose tensor frames are the model's named parameters and buffers (ActorCritic::named_state(),
// SacLearner::named_state()). Learner rank 0 publishes them; actors swap them in between batches.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "orchard/core/wire.h"

namespace orchard::actors {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Builds the WEIGHTS message. Tensors are made contiguous CPU copies held by the message (sent
// without a further copy). `model` describes the architecture (e.g. "ActorCritic obs[4] act
// Discrete(2) hidden[64,64]") so a receiver can refuse weights for another model.
// `final`: the learner's last broadcast (it has finished and will not sample again).
core::MessageBuilder encode_weights(const NamedTensors& named, uint64_t version, uint64_t learner_updates,
                                    const std::string& model, bool final = false);

struct DecodedWeights {
  uint64_t version = 0;
  uint64_t learner_updates = 0;
  std::string model;
  bool final = false;    // the learner's last broadcast
  NamedTensors tensors;  // CPU tensors owning copies of the frames' bytes
};

// Decodes a received WEIGHTS message. Throws orchard::WireError naming the problem when it is not
// a WEIGHTS message, was made for another model (`expected_model`, when not empty), or holds a
// dtype LibTorch cannot represent. Shapes and names are checked by the model's load_named_state().
DecodedWeights decode_weights(const core::Message& message, const std::string& expected_model);

// An actor's subscription to the learner's weights: a SUB socket (receive high-water mark 4, so a
// slow actor skips old broadcasts) from which poll() takes the newest WEIGHTS message. Weights
// made for another model, of the wrong shapes or older than the current ones are never loaded:
// they are counted (refused()) and the actor keeps acting with what it has. Not thread-safe.
class WeightsSubscriber {
 public:
  using Loader = std::function<void(const NamedTensors&)>;  // throws to refuse (e.g. a shape)
  // With a CURVE key pair and the learner's public key (both Z85) the subscription is encrypted
  // and authenticated; empty: plaintext.
  WeightsSubscriber(const std::string& endpoint, std::string expected_model, const core::CurveKeyPair& client = {},
                    const std::string& server_public_key = "");
  ~WeightsSubscriber();

  // Drains the socket without blocking; loads the newest message if it is newer than version().
  // Returns whether new weights were loaded.
  bool poll(const Loader& load);
  // Polls until weights were loaded at least once or timeout_ms passed (or a signal interrupted
  // the wait); returns whether version() > 0.
  bool wait_first(const Loader& load, int timeout_ms);

  uint64_t version() const { return version_; }  // 0: none loaded yet
  // The learner sent its final broadcast: it has finished and will not sample again.
  bool learner_finished() const { return learner_finished_; }
  uint64_t refused() const { return refused_; }
  const std::string& last_refusal() const { return last_refusal_; }

 private:
  std::string expected_model_;
  std::unique_ptr<zmq::context_t> ctx_;
  std::unique_ptr<zmq::socket_t> socket_;
  core::Message newest_, incoming_;
  core::RecvError err_;
  uint64_t version_ = 0, refused_ = 0;
  bool learner_finished_ = false;
  std::string last_refusal_;
};

// torch <-> wire dtypes; throws WireError for dtypes without a counterpart.
core::DType to_wire_dtype(torch::ScalarType t);
torch::ScalarType to_torch_dtype(core::DType t);

}  // namespace orchard::actors
