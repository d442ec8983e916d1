// SacLearner::update at batch 256 against a plain LibTorch loop doing the same math (twin Q with
// Polyak targets, tanh-Gaussian actor with CleanRL's log-std squashing, entropy tuning, Adam), in
// the same run, Pendulum-sized (obs 3, action 1), 256-256 networks, one torch thread.
//   build/bin/orchard_bench_sac_overhead [UPDATES=300]
// Target (issue 5): the learner's overhead over the plain loop <= 10 %.
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "orchard/envs/space.h"
#include "orchard/learner/sac.h"

namespace {

constexpr int64_t kObs = 3, kAct = 1, kBatch = 256, kHidden = 256;

torch::nn::Sequential mlp(int64_t in, int64_t out) {
  return torch::nn::Sequential(torch::nn::Linear(in, kHidden), torch::nn::ReLU(), torch::nn::Linear(kHidden, kHidden),
                               torch::nn::ReLU(), torch::nn::Linear(kHidden, out));
}

// The same update, written plainly.
struct PlainSac {
  torch::nn::Sequential actor = mlp(kObs, 2 * kAct), q1 = mlp(kObs + kAct, 1), q2 = mlp(kObs + kAct, 1),
                        q1t = mlp(kObs + kAct, 1), q2t = mlp(kObs + kAct, 1);
  torch::Tensor log_alpha = torch::zeros({1}, torch::requires_grad());
  std::unique_ptr<torch::optim::Adam> qopt, aopt, alphaopt;
  const double target_entropy = -static_cast<double>(kAct), tau = 0.005, scale = 2.0;

  PlainSac() {
    torch::NoGradGuard g;
    for (size_t i = 0; i < q1->parameters().size(); ++i) {
      q1t->parameters()[i].copy_(q1->parameters()[i]);
      q2t->parameters()[i].copy_(q2->parameters()[i]);
    }
    auto qp = q1->parameters();
    for (auto& p : q2->parameters()) qp.push_back(p);
    qopt = std::make_unique<torch::optim::Adam>(qp, torch::optim::AdamOptions(3e-4));
    aopt = std::make_unique<torch::optim::Adam>(actor->parameters(), torch::optim::AdamOptions(3e-4));
    alphaopt = std::make_unique<torch::optim::Adam>(std::vector<torch::Tensor>{log_alpha}, torch::optim::AdamOptions(3e-4));
  }
  std::pair<torch::Tensor, torch::Tensor> sample(const torch::Tensor& obs) {
    auto out = actor->forward(obs);
    auto mean = out.slice(1, 0, kAct);
    auto log_std = torch::tanh(out.slice(1, kAct, 2 * kAct));
    log_std = -5.0 + 0.5 * (2.0 - -5.0) * (log_std + 1);
    auto std = log_std.exp();
    auto x = mean + std * torch::randn_like(mean);
    auto y = torch::tanh(x);
    auto logp = (-0.5 * ((x - mean) / std).pow(2) - log_std - 0.5 * std::log(2 * M_PI)) -
                torch::log(scale * (1 - y.pow(2)) + 1e-6);
    return {y * scale, logp.sum(1)};
  }
  void update(const orchard::learner::SacBatch& b) {
    const auto alpha = log_alpha.exp().detach();
    torch::Tensor target;
    {
      torch::NoGradGuard g;
      auto [na, nlogp] = sample(b.next_obs);
      auto sa = torch::cat({b.next_obs, na}, 1);
      auto qn = torch::min(q1t->forward(sa), q2t->forward(sa)).squeeze(1) - alpha * nlogp;
      target = b.reward + b.discount * qn;
    }
    auto sa = torch::cat({b.obs, b.action}, 1);
    auto qloss = (q1->forward(sa).squeeze(1) - target).pow(2).mean() + (q2->forward(sa).squeeze(1) - target).pow(2).mean();
    qopt->zero_grad();
    qloss.backward();
    qopt->step();
    {
      torch::NoGradGuard g;
      for (size_t i = 0; i < q1->parameters().size(); ++i) {
        q1t->parameters()[i].mul_(1 - tau).add_(q1->parameters()[i], tau);
        q2t->parameters()[i].mul_(1 - tau).add_(q2->parameters()[i], tau);
      }
    }
    auto [pa, plogp] = sample(b.obs);
    auto spa = torch::cat({b.obs, pa}, 1);
    auto aloss = (alpha * plogp - torch::min(q1->forward(spa), q2->forward(spa)).squeeze(1)).mean();
    aopt->zero_grad();
    aloss.backward();
    aopt->step();
    auto alpha_loss = -(log_alpha * (plogp.detach() + target_entropy)).mean();
    alphaopt->zero_grad();
    alpha_loss.backward();
    alphaopt->step();
  }
};

template <class F>
double updates_per_s(int n, F&& step) {
  for (int i = 0; i < 10; ++i) step();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) step();
  return n / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  torch::set_num_threads(1);
  const int n = argc > 1 ? std::atoi(argv[1]) : 300;
  torch::manual_seed(0);
  orchard::learner::SacBatch b;
  b.obs = torch::randn({kBatch, kObs});
  b.action = torch::rand({kBatch, kAct}) * 4 - 2;
  b.reward = torch::randn({kBatch});
  b.next_obs = torch::randn({kBatch, kObs});
  b.discount = torch::full({kBatch}, 0.99);
  orchard::learner::SacOptions o;
  orchard::learner::SacLearner learner(orchard::envs::Space::box({kObs}, -8.0, 8.0),
                                       orchard::envs::Space::box({kAct}, -2.0, 2.0), o);
  PlainSac plain;
  // Interleave two rounds each, so machine noise hits both alike.
  double l1 = updates_per_s(n, [&] { learner.update(b); });
  double p1 = updates_per_s(n, [&] { plain.update(b); });
  double l2 = updates_per_s(n, [&] { learner.update(b); });
  double p2 = updates_per_s(n, [&] { plain.update(b); });
  double l = std::max(l1, l2), p = std::max(p1, p2);
  std::printf("SAC update, batch 256, 256-256 nets, 1 thread: SacLearner %.0f updates/s, plain LibTorch loop %.0f "
              "updates/s; learner overhead %.1f %%\n",
              l, p, (p / l - 1) * 100);
  return 0;
}
