// Weights travel learner -> actor as a WEIGHTS message over real PUB/SUB sockets and load into a
// freshly initialised model bit-identically; a wrong model, shape or name is refused.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>

#include "orchard/actors/weights.h"
#include "orchard/core/error.h"
#include "orchard/learner/model.h"

using namespace orchard;
using learner::ActorCritic;

namespace {

envs::Space obs_space() { return envs::Space::box({4}, -10.0, 10.0); }

}  // namespace

TEST(Weights, RoundTripOverPubSubLoadsBitIdenticalParameters) {
  torch::manual_seed(1);
  ActorCritic source(obs_space(), envs::Space::discrete(2));
  torch::manual_seed(2);
  ActorCritic target(obs_space(), envs::Space::discrete(2));
  auto named = source.named_state();
  auto m = actors::encode_weights(named, /*version=*/7, /*updates=*/1234, "ActorCritic cartpole");
  zmq::context_t ctx(1);
  zmq::socket_t pub(ctx, zmq::socket_type::pub), sub(ctx, zmq::socket_type::sub);
  core::apply_socket_options(pub, {});
  core::apply_socket_options(sub, {});
  pub.bind("inproc://weights");
  sub.set(zmq::sockopt::subscribe, "");
  sub.connect("inproc://weights");
  ASSERT_TRUE(core::send_message(pub, m));  // inproc subscription is in place after connect
  core::Message got;
  core::RecvError err;
  ASSERT_EQ(core::recv_message(sub, &got, &err, 5000), core::RecvStatus::kOk) << err.message;
  auto decoded = actors::decode_weights(got, "ActorCritic cartpole");
  EXPECT_EQ(decoded.version, 7u);
  EXPECT_EQ(decoded.learner_updates, 1234u);
  ASSERT_EQ(decoded.tensors.size(), named.size());
  target.load_named_state(decoded.tensors);
  auto after = target.named_state();
  for (size_t i = 0; i < named.size(); ++i) {
    EXPECT_EQ(after[i].first, named[i].first);
    EXPECT_TRUE(torch::equal(after[i].second, named[i].second)) << named[i].first;
  }
  // The actor now acts exactly like the learner's model.
  auto obs = torch::randn({8, 4});
  EXPECT_TRUE(torch::equal(source.deterministic_action(obs), target.deterministic_action(obs)));
}

TEST(Weights, WeightsForAnotherModelOrShapeAreRefusedNotLoaded) {
  torch::manual_seed(3);
  ActorCritic small(obs_space(), envs::Space::discrete(2), learner::ModelConfig{{32, 32}});
  ActorCritic big(obs_space(), envs::Space::discrete(2));
  auto m = actors::encode_weights(small.named_state(), 1, 0, "ActorCritic small");
  zmq::context_t ctx(1);
  zmq::socket_t pub(ctx, zmq::socket_type::pub), sub(ctx, zmq::socket_type::sub);
  pub.bind("inproc://w2");
  sub.set(zmq::sockopt::subscribe, "");
  sub.connect("inproc://w2");
  ASSERT_TRUE(core::send_message(pub, m));
  core::Message got;
  core::RecvError err;
  ASSERT_EQ(core::recv_message(sub, &got, &err, 5000), core::RecvStatus::kOk);
  try {
    actors::decode_weights(got, "ActorCritic big");
    FAIL();
  } catch (const WireError& e) {
    EXPECT_STREQ(e.what(), "weights version 1 are for model 'ActorCritic small', this process runs 'ActorCritic big'");
  }
  auto decoded = actors::decode_weights(got, "");
  auto before = big.named_state()[0].second.clone();
  EXPECT_THROW(big.load_named_state(decoded.tensors), learner::ModelError);
  EXPECT_TRUE(torch::equal(big.named_state()[0].second, before)) << "a refused load changes nothing";
}

TEST(Weights, DTypesMapBothWays) {
  for (auto t : {torch::kFloat32, torch::kFloat64, torch::kInt64, torch::kUInt8, torch::kBool}) {
    EXPECT_EQ(actors::to_torch_dtype(actors::to_wire_dtype(t)), t);
  }
  EXPECT_THROW(actors::to_wire_dtype(torch::kComplexFloat), WireError);
}

// The learner's final broadcast (it has finished) reaches a WeightsSubscriber over tcp, is loaded
// like any weights and says so; ordinary broadcasts never do.
TEST(Weights, TheFinalBroadcastTellsSubscribersTheLearnerHasFinished) {
  torch::manual_seed(4);
  ActorCritic source(obs_space(), envs::Space::discrete(2));
  ActorCritic target(obs_space(), envs::Space::discrete(2));
  EXPECT_FALSE(actors::decode_weights(
                   [&] {
                     core::Message m;
                     auto b = actors::encode_weights(source.named_state(), 1, 0, "m");
                     m.envelope = b.envelope();
                     return m;
                   }(),
                   "")
                   .final);
  zmq::context_t ctx(1);
  zmq::socket_t pub(ctx, zmq::socket_type::pub);
  pub.bind("tcp://127.0.0.1:*");
  const std::string ep = pub.get(zmq::sockopt::last_endpoint);
  actors::WeightsSubscriber sub(ep, "m");
  auto load = [&](const actors::NamedTensors& t) { target.load_named_state(t); };
  // Publish until the (asynchronous) tcp subscription is in place and the first weights land.
  uint64_t version = 0;
  for (int i = 0; i < 200 && sub.version() == 0; ++i) {
    auto m = actors::encode_weights(source.named_state(), ++version, 0, "m");
    core::send_message(pub, m);
    sub.wait_first(load, 20);
  }
  ASSERT_GT(sub.version(), 0u);
  EXPECT_FALSE(sub.learner_finished());
  auto last = actors::encode_weights(source.named_state(), ++version, 5, "m", /*final=*/true);
  core::send_message(pub, last);
  for (int i = 0; i < 100 && !sub.learner_finished(); ++i) {
    sub.poll(load);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(sub.learner_finished());
  EXPECT_EQ(sub.version(), version);
}
