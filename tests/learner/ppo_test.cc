// PPO on LibTorch: GAE, the loss, the distributions, named state, and learning CartPole.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "orchard/learner/model.h"
#include "orchard/learner/ppo.h"

namespace orchard::learner {
namespace {

constexpr double kLog2Pi = 1.8378770664093453;

envs::Space cartpole_obs() { return envs::Space::box({4}, -5.0, 5.0); }

class PpoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    at::set_num_threads(1);
    torch::manual_seed(0);
  }
};

std::vector<float> to_vector(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat32).contiguous().reshape({-1});
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

void expect_near(const torch::Tensor& actual, const std::vector<float>& expected, double tol = 1e-5) {
  auto a = to_vector(actual);
  ASSERT_EQ(a.size(), expected.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], expected[i], tol) << "element " << i;
}

// ---------------------------------------------------------------------------------------------
// GAE

TEST_F(PpoTest, GaeMatchesHandComputedWindowWithTerminationAndTruncation) {
  // Env 0: terminates after step 1, is truncated after step 2 (final obs value 2.0).
  // Env 1: no episode end; reward only at the last step.
  auto rewards = torch::tensor({1.f, 0.f, 1.f, 0.f, 1.f, 0.f, 1.f, 1.f}).reshape({4, 2});
  auto values = torch::tensor({0.5f, 0.f, 0.6f, 0.f, 0.7f, 0.f, 0.8f, 0.f}).reshape({4, 2});
  auto terminated = torch::tensor({0.f, 0.f, 1.f, 0.f, 0.f, 0.f, 0.f, 0.f}).reshape({4, 2});
  auto truncated = torch::tensor({0.f, 0.f, 0.f, 0.f, 1.f, 0.f, 0.f, 0.f}).reshape({4, 2});
  auto final_values = torch::tensor({9.f, 9.f, 9.f, 9.f, 2.f, 9.f, 9.f, 9.f}).reshape({4, 2});
  auto last_value = torch::tensor({0.9f, 1.0f});
  GaeResult g = compute_gae(rewards, values, terminated, truncated, final_values, last_value, 0.9, 0.5);
  // Env 0, gamma 0.9, lambda 0.5:
  //   t=3: delta = 1 + 0.9 * 0.9 - 0.8 = 1.01                 A = 1.01
  //   t=2: truncated, delta = 1 + 0.9 * 2.0 - 0.7 = 2.1        A = 2.1   (no carry past the end)
  //   t=1: terminated, delta = 1 - 0.6 = 0.4                   A = 0.4
  //   t=0: delta = 1 + 0.9 * 0.6 - 0.5 = 1.04                  A = 1.04 + 0.45 * 0.4 = 1.22
  // Env 1: t=3: 1 + 0.9 * 1.0 = 1.9; then A_t = 0.45 * A_{t+1}: 0.855, 0.38475, 0.1731375.
  expect_near(g.advantages, {1.22f, 0.1731375f, 0.4f, 0.38475f, 2.1f, 0.855f, 1.01f, 1.9f});
  expect_near(g.returns, {1.72f, 0.1731375f, 1.0f, 0.38475f, 2.8f, 0.855f, 1.81f, 1.9f});
}

TEST_F(PpoTest, GaeTerminationWinsOverTruncationOnTheSameStep) {
  auto one = torch::ones({1, 1});
  auto g = compute_gae(one, torch::zeros({1, 1}), one, one, torch::full({1, 1}, 5.0f), torch::full({1}, 3.0f), 0.9,
                       0.95);
  expect_near(g.advantages, {1.0f});
}

// ---------------------------------------------------------------------------------------------
// Loss

PpoLossInputs two_sample_inputs() {
  PpoLossInputs in;
  in.new_logp = torch::tensor({std::log(1.5f), std::log(0.5f)}).requires_grad_(true);
  in.old_logp = torch::zeros({2});
  in.advantages = torch::tensor({1.0f, -1.0f});
  in.new_values = torch::tensor({0.5f, 0.9f}).requires_grad_(true);
  in.old_values = torch::tensor({0.0f, 1.0f});
  in.returns = torch::tensor({1.0f, 0.0f});
  in.entropy = torch::tensor({1.0f, 2.0f});
  return in;
}

TEST_F(PpoTest, PpoLossClippedSurrogateAndValueLossMatchHandComputedNumbers) {
  PpoConfig c;  // clip 0.2, ent 0.01, vf 0.5, clip_vloss
  auto in = two_sample_inputs();
  PpoLoss l = ppo_loss(in, c);
  // Surrogate: ratio 1.5, A = 1 -> min(1.5, 1.2) = 1.2; ratio 0.5, A = -1 -> min(-0.5, -0.8) = -0.8.
  EXPECT_NEAR(l.pg_loss.item<double>(), -(1.2 - 0.8) / 2, 1e-6);
  // Values clipped to old +- 0.2: [0.2, 0.9]; squared errors unclipped [0.25, 0.81], clipped [0.64, 0.81].
  EXPECT_NEAR(l.v_loss.item<double>(), 0.5 * (0.64 + 0.81) / 2, 1e-6);
  EXPECT_NEAR(l.entropy.item<double>(), 1.5, 1e-6);
  EXPECT_NEAR(l.loss.item<double>(), -0.2 - 0.01 * 1.5 + 0.5 * 0.3625, 1e-6);
  EXPECT_NEAR(l.clipfrac, 1.0, 1e-9);
  EXPECT_NEAR(l.approx_kl, ((0.5 - std::log(1.5)) + (-0.5 - std::log(0.5))) / 2, 1e-6);
  EXPECT_NEAR(l.old_approx_kl, (-std::log(1.5) - std::log(0.5)) / 2, 1e-6);

  // Both samples are clipped: no policy gradient flows through new_logp.
  l.pg_loss.backward();
  expect_near(in.new_logp.grad(), {0.0f, 0.0f});
}

TEST_F(PpoTest, PpoLossUnclippedValueLossAndImportanceWeights) {
  PpoConfig c;
  c.clip_vloss = false;
  auto in = two_sample_inputs();
  in.weights = torch::tensor({1.0f, 0.5f});
  PpoLoss l = ppo_loss(in, c);
  EXPECT_NEAR(l.v_loss.item<double>(), 0.5 * (0.25 + 0.81) / 2, 1e-6);
  EXPECT_NEAR(l.pg_loss.item<double>(), -(1.2 - 0.5 * 0.8) / 2, 1e-6);
}

TEST_F(PpoTest, PpoLossInsideTheClipRangeHasTheRatioGradient) {
  PpoConfig c;
  PpoLossInputs in = two_sample_inputs();
  in.new_logp = torch::tensor({std::log(1.1f), std::log(0.9f)}).requires_grad_(true);
  PpoLoss l = ppo_loss(in, c);
  EXPECT_NEAR(l.pg_loss.item<double>(), -(1.1 - 0.9) / 2, 1e-6);
  EXPECT_NEAR(l.clipfrac, 0.0, 1e-9);
  l.pg_loss.backward();
  // d/dlogp of -mean(r A) = -r A / 2.
  expect_near(in.new_logp.grad(), {-1.1f / 2, 0.9f / 2});
}

// ---------------------------------------------------------------------------------------------
// Distributions

TEST_F(PpoTest, CategoricalLogProbAndEntropyMatchClosedForms) {
  auto logits = torch::tensor({std::log(0.2f), std::log(0.3f), std::log(0.5f)}).reshape({1, 3}) + 7.0;
  expect_near(categorical_log_prob(logits, torch::tensor({int64_t{2}})), {std::log(0.5f)});
  expect_near(categorical_log_prob(logits, torch::tensor({int64_t{0}})), {std::log(0.2f)});
  const float h = -(0.2f * std::log(0.2f) + 0.3f * std::log(0.3f) + 0.5f * std::log(0.5f));
  expect_near(categorical_entropy(logits), {h});
}

TEST_F(PpoTest, GaussianLogProbAndEntropyMatchClosedForms) {
  auto mean = torch::tensor({1.0f, -1.0f}).reshape({1, 2});
  auto log_std = torch::tensor({std::log(2.0f), 0.0f}).reshape({1, 2});
  auto action = torch::tensor({3.0f, -1.5f}).reshape({1, 2});
  // N(3; 1, 2): -0.5 * 1 - log 2 - 0.5 log 2pi; N(-1.5; -1, 1): -0.5 * 0.25 - 0 - 0.5 log 2pi.
  const double lp = (-0.5 - std::log(2.0) - 0.5 * kLog2Pi) + (-0.125 - 0.5 * kLog2Pi);
  expect_near(gaussian_log_prob(mean, log_std, action), {static_cast<float>(lp)});
  const double h = 2 * (0.5 + 0.5 * kLog2Pi) + std::log(2.0);
  expect_near(gaussian_entropy(log_std, 3), {float(h), float(h), float(h)});
}

TEST_F(PpoTest, ActorCriticDiscreteActEvaluateAgree) {
  ActorCritic m(cartpole_obs(), envs::Space::discrete(2));
  auto obs = torch::randn({16, 4});
  torch::NoGradGuard g;
  auto a = m.act(obs);
  ASSERT_EQ(a.action.sizes(), (std::vector<int64_t>{16}));
  EXPECT_EQ(a.action.scalar_type(), torch::kInt64);
  auto e = m.evaluate(obs, a.action);
  EXPECT_TRUE(torch::allclose(a.logp, e.logp, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(a.value, e.value));
  // Policy head gain 0.01: the initial policy is nearly uniform.
  EXPECT_NEAR(e.entropy.mean().item<double>(), std::log(2.0), 1e-3);
  EXPECT_EQ(m.deterministic_action(obs).sizes(), (std::vector<int64_t>{16}));
}

TEST_F(PpoTest, ActorCriticMultiDiscreteSumsPerDimensionTerms) {
  ActorCritic m(cartpole_obs(), envs::Space::multi_discrete({3, 2}));
  auto obs = torch::randn({8, 4});
  torch::NoGradGuard g;
  auto a = m.act(obs);
  ASSERT_EQ(a.action.sizes(), (std::vector<int64_t>{8, 2}));
  EXPECT_TRUE((a.action.select(1, 0) < 3).all().item<bool>());
  EXPECT_TRUE((a.action.select(1, 1) < 2).all().item<bool>());
  auto e = m.evaluate(obs, a.action);
  EXPECT_TRUE(torch::allclose(a.logp, e.logp, 1e-5, 1e-6));
  EXPECT_NEAR(e.entropy.mean().item<double>(), std::log(3.0) + std::log(2.0), 1e-3);
  EXPECT_EQ(m.deterministic_action(obs).sizes(), (std::vector<int64_t>{8, 2}));
}

TEST_F(PpoTest, ActorCriticGaussianHasStateIndependentLogStd) {
  ActorCritic m(cartpole_obs(), envs::Space::box({2}, -1.0, 1.0));
  auto obs = torch::randn({8, 4});
  torch::NoGradGuard g;
  auto a = m.act(obs);
  ASSERT_EQ(a.action.sizes(), (std::vector<int64_t>{8, 2}));
  auto e = m.evaluate(obs, a.action);
  EXPECT_TRUE(torch::allclose(a.logp, e.logp, 1e-5, 1e-5));
  // log_std = 0: entropy of two unit Gaussians.
  EXPECT_NEAR(e.entropy[0].item<double>(), 2 * (0.5 + 0.5 * kLog2Pi), 1e-5);
  bool found = false;
  for (auto& [name, t] : m.named_state()) found |= name == "log_std";
  EXPECT_TRUE(found);
}

TEST_F(PpoTest, ActorCriticFlattensUint8ImageObservations) {
  ActorCritic m(envs::Space::box({10, 10, 4}, 0, 1, core::DType::kUInt8), envs::Space::discrete(6));
  auto obs = torch::randint(0, 2, {3, 10, 10, 4}, torch::kUInt8);
  torch::NoGradGuard g;
  EXPECT_EQ(m.act(obs).action.sizes(), (std::vector<int64_t>{3}));
  EXPECT_EQ(m.obs_dim(), 400);
}

TEST_F(PpoTest, ActorCriticRejectsSpacesItCannotServe) {
  auto expect_error = [](const envs::Space& obs, const envs::Space& act, const std::string& needle) {
    try {
      ActorCritic m(obs, act);
      ADD_FAILURE() << "no error for " << obs.to_string() << " / " << act.to_string();
    } catch (const ModelError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(envs::Space::discrete(3), envs::Space::discrete(2), "Discrete(3)");
  expect_error(cartpole_obs(), envs::Space::box({2}, 0, 1, core::DType::kInt64), "float32");
  expect_error(envs::Space::box({0}, 0, 1), envs::Space::discrete(2), "empty");
}

TEST_F(PpoTest, RunningNormMergesBatchesLikeOnePass) {
  RunningNorm norm(3);
  auto a = torch::randn({100, 3}) * 2 + 1, b = torch::randn({50, 3}) * 0.5 - 3;
  norm.update(a);
  norm.update(b);
  auto all = torch::cat({a, b}).to(torch::kFloat64);
  EXPECT_TRUE(torch::allclose(norm.mean(), all.mean(0), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(norm.var(), all.var(0, false), 1e-3, 1e-4));
  EXPECT_NEAR(norm.count(), 150.0001, 1e-6);
  auto z = norm.normalize(all.to(torch::kFloat32));
  EXPECT_NEAR(z.mean().item<double>(), 0.0, 1e-3);
  EXPECT_LE(norm.normalize(torch::full({1, 3}, 1e6f)).max().item<double>(), 10.0);
}

// ---------------------------------------------------------------------------------------------
// Named state

TEST_F(PpoTest, NamedStateRoundTripsIncludingObservationStatistics) {
  ModelConfig mc;
  mc.normalize_obs = true;
  torch::manual_seed(1);
  ActorCritic a(cartpole_obs(), envs::Space::discrete(2), mc);
  a.update_obs_norm(torch::randn({32, 4}) * 3);
  torch::manual_seed(2);
  ActorCritic b(cartpole_obs(), envs::Space::discrete(2), mc);
  auto obs = torch::randn({5, 4});
  torch::NoGradGuard g;
  EXPECT_FALSE(torch::allclose(a.evaluate(obs, torch::zeros({5}, torch::kInt64)).logp,
                               b.evaluate(obs, torch::zeros({5}, torch::kInt64)).logp));
  b.load_named_state(a.named_state());
  auto ea = a.evaluate(obs, torch::zeros({5}, torch::kInt64));
  auto eb = b.evaluate(obs, torch::zeros({5}, torch::kInt64));
  EXPECT_TRUE(torch::equal(ea.logp, eb.logp));
  EXPECT_TRUE(torch::equal(ea.value, eb.value));
  std::vector<std::string> names;
  for (auto& [name, t] : a.named_state()) names.push_back(name);
  EXPECT_NE(std::find(names.begin(), names.end(), "obs_norm.mean"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "critic.0.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "actor.4.bias"), names.end());
}

TEST_F(PpoTest, LoadNamedStateNamesTheFirstMismatchAndLeavesTheModelUnchanged) {
  ActorCritic target(cartpole_obs(), envs::Space::discrete(2));
  auto before = target.named_state();
  std::vector<torch::Tensor> copies;
  for (auto& [n, t] : before) copies.push_back(t.clone());

  auto expect_error = [&](const std::vector<std::pair<std::string, torch::Tensor>>& state, const std::string& needle) {
    try {
      target.load_named_state(state);
      ADD_FAILURE() << "no error, expected: " << needle;
    } catch (const ModelError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    auto now = target.named_state();
    for (size_t i = 0; i < now.size(); ++i) EXPECT_TRUE(torch::equal(now[i].second, copies[i])) << now[i].first;
  };

  ModelConfig wide;
  wide.hidden_sizes = {32, 64};
  ActorCritic other(cartpole_obs(), envs::Space::discrete(2), wide);
  expect_error(other.named_state(), "'critic.0.weight' has shape [32, 4], the model expects [64, 4]");

  auto missing = target.named_state();
  for (auto& kv : missing) kv.second = kv.second.clone().fill_(1.0);
  missing.pop_back();
  expect_error(missing, "is missing");

  auto extra = target.named_state();
  for (auto& kv : extra) kv.second = kv.second.clone().fill_(1.0);
  extra.emplace_back("actor.9.weight", torch::zeros({2}));
  expect_error(extra, "'actor.9.weight' is not in the model");

  auto wrong_dtype = target.named_state();
  wrong_dtype[0].second = wrong_dtype[0].second.to(torch::kFloat64);
  expect_error(wrong_dtype, "dtype");
}

// ---------------------------------------------------------------------------------------------
// Learner and trainer

TEST_F(PpoTest, LearnerCallsAfterBackwardOncePerMinibatchWithGradients) {
  auto model = std::make_shared<ActorCritic>(cartpole_obs(), envs::Space::discrete(2));
  PpoConfig c;
  PpoLearner learner(model, c);
  int calls = 0;
  learner.after_backward = [&](torch::nn::Module& m) {
    ++calls;
    for (auto& p : m.parameters()) ASSERT_TRUE(p.grad().defined());
  };
  Rollout r;
  r.obs = torch::randn({64, 4});
  {
    torch::NoGradGuard g;
    auto a = model->act(r.obs);
    r.actions = a.action;
    r.behaviour_logp = a.logp;
    r.values = a.value;
  }
  r.advantages = torch::randn({64});
  r.returns = r.values + r.advantages;
  auto s = learner.update(r, 0.5);
  EXPECT_EQ(calls, 16);
  EXPECT_EQ(s.minibatches, 16);
  EXPECT_NEAR(s.learning_rate, 1.25e-4, 1e-12);
  EXPECT_NEAR(s.mean_rho, 1.0, 1e-4);

  r.obs = torch::randn({63, 4});
  EXPECT_THROW(learner.update(r), Error);
}

TEST_F(PpoTest, TrainerIsDeterministicForASeed) {
  PpoTrainerConfig c;
  c.num_steps = 32;
  auto run = [&] {
    PpoTrainer t(c);
    t.iterate();
    auto s = t.iterate();
    return std::make_pair(s, t.model().named_state()[0].second.clone());
  };
  auto [s1, w1] = run();
  auto [s2, w2] = run();
  EXPECT_EQ(s1.global_step, 256);
  EXPECT_EQ(s1.episodes, s2.episodes);
  EXPECT_EQ(s1.update.pg_loss, s2.update.pg_loss);
  EXPECT_TRUE(torch::equal(w1, w2));
}

TEST_F(PpoTest, TrainerServesBoxActionsWithTruncationAndObservationNormalisation) {
  PpoTrainerConfig c;
  c.env = "Pendulum-v1";  // truncated at 200 steps, never terminates
  c.num_envs = 2;
  c.num_steps = 256;
  c.ppo.num_minibatches = 8;
  c.model.normalize_obs = true;
  PpoTrainer t(c);
  auto s = t.iterate();
  EXPECT_EQ(s.global_step, 512);
  EXPECT_EQ(s.episodes, 2);  // one truncation per env
  EXPECT_TRUE(std::isfinite(s.update.pg_loss) && std::isfinite(s.update.v_loss));
  EXPECT_EQ(s.update.minibatches, 32);
  bool saw_count = false;
  for (auto& [name, tensor] : t.model().named_state()) {
    if (name == "obs_norm.count") {
      saw_count = true;
      EXPECT_NEAR(tensor.item<double>(), 512.0001, 1e-6);
    }
  }
  EXPECT_TRUE(saw_count);
}

TEST_F(PpoTest, TrainerServesUint8GridObservations) {
  PpoTrainerConfig c;
  c.env = "MinAtar-Breakout-v1";
  c.num_steps = 16;
  PpoTrainer t(c);
  auto s = t.iterate();
  EXPECT_EQ(s.global_step, 64);
  EXPECT_TRUE(std::isfinite(s.update.pg_loss));
}

TEST_F(PpoTest, PpoSolvesCartPole) {
  PpoTrainerConfig c;  // CleanRL ppo.py: 4 envs x 128 steps, 4 epochs x 4 minibatches
  c.total_timesteps = 500000;
  c.seed = 1;
  const int64_t budget = 300000;
  const double wall_budget_s = 100.0;
  PpoTrainer trainer(c);
  auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  PpoIterationStats s;
  int64_t next_report = 0;
  while (true) {
    s = trainer.iterate();
    if (s.global_step >= next_report) {
      std::printf("[ppo cartpole] step %7lld  episodes %5lld  mean_return(20) %6.1f  %.1f s\n",
                  static_cast<long long>(s.global_step), static_cast<long long>(s.episodes), s.mean_return, elapsed());
      next_report += 20000;
    }
    if (trainer.recent_returns().size() >= 20 && s.mean_return >= 475.0) break;
    if (s.global_step >= budget || elapsed() > wall_budget_s) break;
  }
  std::printf("[ppo cartpole] final: step %lld, mean_return(20) %.1f, %.1f s\n", static_cast<long long>(s.global_step),
              s.mean_return, elapsed());
  EXPECT_GE(s.mean_return, 475.0) << "after " << s.global_step << " steps, " << elapsed() << " s";
  EXPECT_LE(s.global_step, budget);
}

}  // namespace
}  // namespace orchard::learner

namespace orchard::learner {

TEST(PpoCheckpoint, RoundTripIsBitIdenticalAndContinuesIdentically) {
  const auto obs_space = orchard::envs::Space::box({4}, -5.0, 5.0);
  const auto act_space = orchard::envs::Space::discrete(2);
  torch::manual_seed(11);
  auto model = std::make_shared<ActorCritic>(obs_space, act_space);
  PpoLearner learner(model, PpoConfig{});
  Rollout r;
  r.obs = torch::randn({64, 4});
  {
    torch::NoGradGuard no_grad;
    auto act = model->act(r.obs);
    r.actions = act.action;
    r.behaviour_logp = act.logp;
    r.values = act.value;
  }
  r.advantages = torch::randn({64});
  r.returns = torch::randn({64});
  learner.update(r);
  const std::string path = ::testing::TempDir() + "orchard_ppo_ckpt.pt";
  learner.save(path);
  const auto generator = at::detail::getDefaultCPUGenerator().get_state();

  torch::manual_seed(99);  // a differently initialised learner
  auto model2 = std::make_shared<ActorCritic>(obs_space, act_space);
  PpoLearner learner2(model2, PpoConfig{});
  learner2.load(path);
  EXPECT_EQ(learner2.updates(), 1);
  auto a = model->named_state(), b = model2->named_state();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  // Same data, same generator state: the next update is identical (Adam moments restored too).
  learner2.update(r);
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  gen.set_state(generator);
  learner.update(r);
  a = model->named_state();
  b = model2->named_state();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;

  // A checkpoint of another model, or a corrupt file, is refused and changes nothing.
  auto small = std::make_shared<ActorCritic>(obs_space, act_space, ModelConfig{{32, 32}});
  PpoLearner small_learner(small, PpoConfig{});
  const std::string other = ::testing::TempDir() + "orchard_ppo_other.pt";
  small_learner.save(other);
  auto before = model2->named_state()[0].second.clone();
  try {
    learner2.load(other);
    FAIL();
  } catch (const orchard::Error& e) {
    EXPECT_NE(std::string(e.what()).find("PPO checkpoint '" + other + "'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("shape"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(torch::equal(model2->named_state()[0].second, before));
  {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << "not a checkpoint";
  }
  try {
    learner2.load(path);
    FAIL();
  } catch (const orchard::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unreadable or corrupt"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(torch::equal(model2->named_state()[0].second, before));
  std::remove(path.c_str());
  std::remove(other.c_str());
}

}  // namespace orchard::learner

namespace orchard::learner {

TEST(PpoModel, ConvTorsoForGridObservations) {
  // MinAtar Breakout's observation: [10, 10, 4] uint8; a 3x3 convolution with 16 filters leaves
  // 16 x 8 x 8 = 1024 features for the actor and critic MLPs (MinAtar's network shape).
  envs::Space obs = envs::Space::box({10, 10, 4}, 0.0, 1.0, core::DType::kUInt8);
  envs::Space act = envs::Space::discrete(3);
  torch::manual_seed(0);
  ActorCritic auto_model(obs, act, ModelConfig{});
  EXPECT_TRUE(auto_model.conv_torso());
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, t] : auto_model.named_state()) shapes[name] = t.sizes().vec();
  EXPECT_EQ(shapes.at("conv.0.weight"), (std::vector<int64_t>{16, 4, 3, 3}));
  EXPECT_EQ(shapes.at("actor.0.weight"), (std::vector<int64_t>{64, 1024}));
  auto grid = torch::randint(0, 2, {5, 10, 10, 4}, torch::kUInt8);
  auto r = auto_model.act(grid);
  EXPECT_EQ(r.action.sizes(), (std::vector<int64_t>{5}));
  auto e = auto_model.evaluate(grid.to(torch::kFloat32), r.action);  // float input gives the same
  EXPECT_TRUE(torch::allclose(e.logp, r.logp, 1e-5, 1e-6));
  // The conv sees the grid's spatial layout: moving one cell changes the output.
  auto moved = grid.clone();
  moved.index_put_({0, 0, 0, 0}, 1 - moved.index({0, 0, 0, 0}));
  EXPECT_FALSE(torch::equal(auto_model.value(grid)[0], auto_model.value(moved)[0]));

  ModelConfig mlp;
  mlp.torso = "mlp";
  EXPECT_FALSE(ActorCritic(obs, act, mlp).conv_torso());
  ModelConfig conv;
  conv.torso = "conv";
  EXPECT_THROW(ActorCritic(envs::Space::box({4}, -1.0, 1.0), act, conv), ModelError);
  ModelConfig bad;
  bad.torso = "resnet";
  EXPECT_THROW(ActorCritic(obs, act, bad), ModelError);
}

}  // namespace orchard::learner

namespace orchard::learner {

// FlatAdam must be torch::optim::Adam + clip_grad_norm_ up to float rounding: same parameters
// after many steps from the same gradients, same norm returned.
TEST(FlatAdam, MatchesTorchAdamAndClipGradNormStepForStep) {
  at::set_num_threads(1);
  const auto obs_space = orchard::envs::Space::box({4}, -5.0, 5.0);
  const auto act_space = orchard::envs::Space::box({2}, -1.0, 1.0);  // log_std is a parameter too
  torch::manual_seed(3);
  auto a = std::make_shared<ActorCritic>(obs_space, act_space);
  torch::manual_seed(3);
  auto b = std::make_shared<ActorCritic>(obs_space, act_space);
  torch::optim::Adam reference(a->parameters(), torch::optim::AdamOptions(3e-3).eps(1e-5));
  FlatAdam flat(b->parameters(), FlatAdam::Options{3e-3, 0.9, 0.999, 1e-5});
  EXPECT_EQ(flat.numel(), [&] {
    int64_t n = 0;
    for (const auto& p : a->parameters()) n += p.numel();
    return n;
  }());
  for (int step = 0; step < 30; ++step) {
    auto obs = torch::randn({32, 4}) * 3;
    auto actions = torch::randn({32, 2});
    auto loss = [&](ActorCritic& m) {
      auto ev = m.evaluate(obs, actions);
      return -(ev.logp.mean()) + ev.value.square().mean() * (step % 3 + 1);
    };
    reference.zero_grad();
    loss(*a).backward();
    const double ref_norm = torch::nn::utils::clip_grad_norm_(a->parameters(), 0.5);
    reference.step();
    flat.zero_grad();
    loss(*b).backward();
    const double norm = flat.clip_grad_norm(0.5);
    flat.step();
    EXPECT_NEAR(norm, ref_norm, 1e-4 * std::max(1.0, ref_norm)) << "step " << step;
  }
  auto sa = a->named_state(), sb = b->named_state();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].first, sb[i].first);
    EXPECT_TRUE(torch::allclose(sa[i].second, sb[i].second, 1e-5, 1e-6)) << sa[i].first;
  }
  // The parameters are still the model's: loading a state writes through into the buffer.
  b->load_named_state(sa);
  for (const auto& p : b->parameters())
    EXPECT_EQ(p.storage().data(), flat.flat_params().storage().data()) << "parameter detached from the buffer";
}

TEST(FlatAdam, UsesGradientsReplacedOrResetFromOutside) {
  torch::manual_seed(4);
  auto w = torch::zeros({3}, torch::requires_grad());
  auto v = torch::zeros({2}, torch::requires_grad());
  FlatAdam opt({w, v}, FlatAdam::Options{0.1, 0.9, 0.999, 1e-8});
  w.mutable_grad() = torch::ones({3});  // a fresh tensor, not the buffer's view
  v.mutable_grad().reset();             // as Module::zero_grad(set_to_none) would
  opt.step();
  // First Adam step: p -= lr * sign(g) for g != 0 (m / sqrt(v) = g / |g| after bias correction).
  EXPECT_TRUE(torch::allclose(w.detach(), torch::full({3}, -0.1)));
  EXPECT_TRUE(torch::allclose(v.detach(), torch::zeros({2})));
  EXPECT_EQ(w.grad().data_ptr(), opt.flat_grads().data_ptr()) << "the gradient is the buffer's view again";
  // Backward now accumulates into the buffer.
  opt.zero_grad();
  (w.sum() * 2).backward();
  EXPECT_TRUE(torch::allclose(opt.flat_grads().slice(0, 0, 3), torch::full({3}, 2.0)));
  EXPECT_NEAR(opt.clip_grad_norm(1.0), std::sqrt(12.0), 1e-5);
  EXPECT_NEAR(opt.flat_grads().norm().item<double>(), 1.0, 1e-5);
}

TEST(FlatAdam, RejectsBadParametersAndStateOfAnotherSize) {
  auto d = torch::zeros({2}, torch::dtype(torch::kFloat64).requires_grad(true));
  auto f = torch::zeros({2}, torch::requires_grad());
  auto nograd = torch::zeros({2});
  auto message = [](const std::function<void()>& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { FlatAdam({f, d}, {}); }).find("parameter 1 must be a float32"), std::string::npos);
  EXPECT_NE(message([&] { FlatAdam({nograd}, {}); }).find("requires grad"), std::string::npos);
  EXPECT_NE(message([&] { FlatAdam({f, f}, {}); }).find("listed twice"), std::string::npos);
  EXPECT_NE(message([&] { FlatAdam({}, {}); }).find("no parameters"), std::string::npos);

  auto g = torch::zeros({5}, torch::requires_grad());
  FlatAdam small({f}, {}), big({g}, {});
  g.mutable_grad().fill_(1.0);
  big.step();
  torch::serialize::OutputArchive out;
  big.save(out, "opt/");
  std::stringstream bytes;
  out.save_to(bytes);
  torch::serialize::InputArchive in;
  in.load_from(bytes);
  EXPECT_NE(message([&] { small.load(in, "opt/"); }).find("5 values does not fit 2 parameters"), std::string::npos);
  EXPECT_EQ(small.steps(), 0);
}

}  // namespace orchard::learner
