// GradientSync: learner ranks as threads of this process, each with its own c10d Gloo process
// group over real loopback TCP (the rendezvous store on a port picked at run time). Averages,
// sums, broadcasts, the union's observation statistics, lockstep PPO keeping the parameters
// identical, and a rank that goes away making the others fail with an error instead of hanging.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <thread>

#include "orchard/core/error.h"
#include "orchard/core/net.h"
#include "orchard/envs/space.h"
#include "orchard/learner/gradient_sync.h"
#include "orchard/learner/model.h"
#include "orchard/learner/ppo.h"

using orchard::learner::GradientSync;
using orchard::learner::GradientSyncOptions;

namespace {

GradientSyncOptions options(int rank, int world, int port, double timeout_s = 30) {
  GradientSyncOptions o;
  o.rank = rank;
  o.world_size = world;
  o.store_port = port;
  o.timeout_s = timeout_s;
  return o;
}

// Runs body(sync) on `world` ranks, one thread each; rethrows the first failure.
void on_ranks(int world, const std::function<void(GradientSync&)>& body, double timeout_s = 30) {
  const int port = orchard::core::free_loopback_port();
  std::vector<std::future<void>> done;
  for (int r = 0; r < world; ++r)
    done.push_back(std::async(std::launch::async, [=] {
      GradientSync sync(options(r, world, port, timeout_s));
      body(sync);
    }));
  for (auto& f : done) f.get();
}

}  // namespace

TEST(GradientSync, AveragesSumsAndBroadcastsAcrossThreeRanks) {
  on_ranks(3, [](GradientSync& s) {
    const double r = s.rank();
    torch::Tensor t = torch::tensor({r, 10 * r, -r}, torch::kFloat32);
    s.average(t);
    EXPECT_TRUE(torch::allclose(t, torch::tensor({1.0f, 10.0f, -1.0f}))) << t;
    auto sums = s.sum(std::vector<double>{1.0, r, s.rank() == 0 ? 7.0 : 0.0});
    EXPECT_EQ(sums, (std::vector<double>{3.0, 3.0, 7.0}));
    std::vector<torch::Tensor> b{torch::full({4}, r)};
    s.broadcast(b, 2);
    EXPECT_TRUE(torch::equal(b[0], torch::full({4}, 2.0)));
    const std::string bytes = s.broadcast_bytes(s.rank() == 0 ? std::string("state\0bytes", 11) : std::string("x"));
    EXPECT_EQ(bytes, std::string("state\0bytes", 11));
    EXPECT_EQ(s.broadcast_bytes(""), "");
    s.barrier();
    EXPECT_GT(s.calls(), 5);
  });
}

TEST(GradientSync, AveragesAModulesGradientsAndMergesTheUnionsObservationStatistics) {
  orchard::envs::Space obs = orchard::envs::Space::box({3}, -10, 10);
  orchard::envs::Space act = orchard::envs::Space::discrete(2);
  orchard::learner::ModelConfig mc;
  mc.normalize_obs = true;
  // What one process would compute over both ranks' observations.
  torch::manual_seed(5);
  const auto all = torch::randn({40, 3}) * 3 + 1;
  orchard::learner::ActorCritic single(obs, act, mc);
  single.update_obs_norm(all);
  on_ranks(2, [&](GradientSync& s) {
    torch::manual_seed(1);  // same initial weights on both ranks
    orchard::learner::ActorCritic model(obs, act, mc);
    model.update_obs_norm(all.narrow(0, 20 * s.rank(), 20), [&](torch::Tensor& t) { s.sum(t); });
    for (const auto& [name, t] : model.named_state())
      if (name.rfind("obs_norm.", 0) == 0) {
        torch::Tensor expect;
        for (const auto& [n2, t2] : single.named_state())
          if (n2 == name) expect = t2;
        EXPECT_TRUE(torch::allclose(t, expect, 1e-9, 1e-9)) << name << " " << t << " vs " << expect;
      }
    // Gradients of a loss that differs per rank: each parameter's gradient becomes the mean.
    auto loss = model.value(torch::full({1, 3}, static_cast<float>(s.rank() + 1))).sum();
    loss.backward();
    std::vector<torch::Tensor> mine;
    for (auto& p : model.parameters())
      if (p.grad().defined()) mine.push_back(p.grad().clone());
    std::vector<torch::Tensor> expected;
    for (auto& g : mine) {
      torch::Tensor t = g.clone();
      s.sum(t);  // checked on its own above
      expected.push_back(t / 2);
    }
    s.average_gradients(model);
    size_t i = 0, changed = 0;
    for (auto& p : model.parameters()) {
      if (!p.grad().defined()) continue;
      EXPECT_TRUE(torch::allclose(p.grad(), expected[i], 1e-6, 1e-7));
      if (!torch::allclose(p.grad(), mine[i], 1e-6, 1e-7)) ++changed;
      ++i;
    }
    EXPECT_GT(changed, 0u) << "the ranks' gradients did not differ: the test proves nothing";
  });
}

TEST(GradientSync, LockstepPpoKeepsTheRanksParametersIdentical) {
  orchard::envs::Space obs = orchard::envs::Space::box({4}, -10, 10);
  orchard::envs::Space act = orchard::envs::Space::discrete(2);
  std::vector<torch::Tensor> finals(2);
  on_ranks(2, [&](GradientSync& s) {
    torch::manual_seed(3);
    auto model = std::make_shared<orchard::learner::ActorCritic>(obs, act);
    orchard::learner::PpoConfig cfg;
    cfg.num_minibatches = 2;
    cfg.update_epochs = 2;
    cfg.target_kl = 1e-9;  // early stop: taken from the ranks' mean KL, the same on both
    orchard::learner::PpoLearner learner(model, cfg);
    // Threads share torch's global generator, so the initial weights differ: start from rank 0's,
    // as orchard-learner does.
    std::vector<torch::Tensor> start{learner.optimizer().flat_params()};
    s.broadcast(start);
    learner.after_backward = [&](torch::nn::Module&) { s.average(learner.optimizer().flat_grads()); };
    learner.mean_across_ranks = [&](double x) { return s.sum(std::vector<double>{x})[0] / s.world_size(); };
    const auto t0 = learner.optimizer().flat_params().clone();
    for (int u = 0; u < 3; ++u) {
      orchard::learner::Rollout r;
      r.obs = torch::randn({16, 4});
      r.actions = torch::randint(0, 2, {16}, torch::kInt64);
      r.behaviour_logp = torch::full({16}, std::log(0.5f));
      r.values = torch::randn({16});
      r.advantages = torch::randn({16});
      r.returns = torch::randn({16});
      learner.update(r);
    }
    EXPECT_FALSE(torch::equal(t0, learner.optimizer().flat_params()));
    finals[static_cast<size_t>(s.rank())] = learner.optimizer().flat_params().clone();
  });
  EXPECT_TRUE(torch::equal(finals[0], finals[1]));
}

TEST(GradientSync, ARankThatLeavesMakesTheOthersFailWithAnErrorNotAHang) {
  const int port = orchard::core::free_loopback_port();
  std::promise<void> left;
  auto leaver = std::async(std::launch::async, [&] {
    GradientSync s(options(1, 2, port, 20));
    s.barrier();
    // Destroyed here: its connections close, as when the process dies.
  });
  GradientSync s(options(0, 2, port, 20));
  s.barrier();
  leaver.get();
  const auto t0 = std::chrono::steady_clock::now();
  torch::Tensor t = torch::ones({8});
  try {
    for (int i = 0; i < 3; ++i) s.sum(t);
    FAIL() << "the all-reduce went through with rank 1 gone";
  } catch (const orchard::Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 0 of 2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("all-reduce failed"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 15.0);
}

TEST(GradientSync, BadOptionsAndAMissingStoreAreClearErrors) {
  auto expect_error = [](GradientSyncOptions o, const std::string& what) {
    try {
      GradientSync s(o);
      FAIL() << "accepted: " << what;
    } catch (const orchard::Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error(options(2, 2, 5000), "rank must be in [0, 1], got 2");
  expect_error(options(0, 2, 0), "store port must be in [1, 65535], got 0");
  auto nccl = options(0, 2, 5000);
  nccl.backend = "nccl";
  expect_error(nccl, "backend 'nccl' is not available to CPU learners");
  // Rank 1 with nobody serving the store: fails after the timeout, naming the store.
  const int port = orchard::core::free_loopback_port();
  expect_error(options(1, 2, port, 2), "rendezvous failed");
}

TEST(GradientSync, ARankThatStaysSilentFailsTheOthersAfterTheTimeout) {
  const int port = orchard::core::free_loopback_port();
  std::promise<void> release;
  auto silent = std::async(std::launch::async, [&, f = release.get_future()]() mutable {
    GradientSync s(options(1, 2, port, 2));
    s.barrier();
    f.wait();  // alive, connected, but never joins the next collective (as a stopped process)
  });
  GradientSync s(options(0, 2, port, 2));
  s.barrier();
  const auto t0 = std::chrono::steady_clock::now();
  torch::Tensor t = torch::ones({8});
  EXPECT_THROW(s.sum(t), orchard::Error);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(waited, 1.5);
  EXPECT_LT(waited, 10.0);
  release.set_value();
  silent.get();
}
