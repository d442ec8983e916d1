// GradientSync on a c10d ProcessGroupGloo (LibTorch's own Gloo backend, the one
// torch.distributed uses on CPUs) with a c10d TCPStore for the rendezvous.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1  // ProcessGroupGloo.hpp declares its class only with this set
#endif
#include "orchard/learner/gradient_sync.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstring>

#include "orchard/core/error.h"

namespace orchard::learner {

struct GradientSync::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

namespace {

std::string where(const GradientSyncOptions& o) {
  return "learner sync (rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size) + ", store " +
         o.store_host + ":" + std::to_string(o.store_port) + ")";
}

// c10d's messages carry a C++ backtrace after the first line; keep the first line.
std::string first_line(const std::string& s) {
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace

GradientSync::GradientSync(GradientSyncOptions options) : options_(std::move(options)), impl_(new Impl) {
  const auto& o = options_;
  if (o.world_size < 1) throw Error(where(o) + ": world size must be >= 1, got " + std::to_string(o.world_size));
  if (o.rank < 0 || o.rank >= o.world_size)
    throw Error(where(o) + ": rank must be in [0, " + std::to_string(o.world_size - 1) + "], got " +
                std::to_string(o.rank));
  if (o.backend != "gloo")
    throw Error(where(o) + ": backend '" + o.backend + "' is not available to CPU learners; use gloo");
  if (o.store_port < 1 || o.store_port > 65535)
    throw Error(where(o) + ": store port must be in [1, 65535], got " + std::to_string(o.store_port));
  if (!(o.timeout_s > 0)) throw Error(where(o) + ": timeout must be > 0 s");
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(o.store_port);
    so.isServer = o.rank == 0;
    so.numWorkers = static_cast<size_t>(o.world_size);
    so.waitWorkers = false;
    so.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(o.store_host, so);
    impl_->store = c10::make_intrusive<c10d::PrefixStore>("orchard/learners", tcp);
    auto pgo = c10d::ProcessGroupGloo::Options::create(timeout);
    pgo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(o.address));
    pgo->threads = 1;
    impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, o.rank, o.world_size, pgo);
  } catch (const std::exception& e) {
    throw Error(where(o) + ": rendezvous failed (this rank's address " + o.address + "): " + first_line(e.what()));
  }
}

GradientSync::~GradientSync() = default;

void GradientSync::run(const char* what, const std::function<void()>& op) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    op();
  } catch (const std::exception& e) {
    throw Error(where(options_) + ": " + what + " failed (another learner rank exited or stalled?): " +
                first_line(e.what()));
  }
  ++calls_;
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void GradientSync::sum(torch::Tensor& t) {
  if (options_.world_size == 1) return;
  run("all-reduce", [&] {
    std::vector<at::Tensor> v{t};
    c10d::AllreduceOptions ao;
    ao.reduceOp = c10d::ReduceOp::SUM;
    impl_->group->allreduce(v, ao)->wait();
  });
}

void GradientSync::average(torch::Tensor& t) {
  if (options_.world_size == 1) return;
  sum(t);
  t.div_(static_cast<double>(options_.world_size));
}

void GradientSync::average_gradients(torch::nn::Module& module) {
  if (options_.world_size == 1) return;
  std::vector<torch::Tensor> grads;
  for (auto& p : module.parameters())
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return;
  std::vector<torch::Tensor> flat_views;
  flat_views.reserve(grads.size());
  for (auto& g : grads) flat_views.push_back(g.reshape({-1}));
  torch::Tensor flat = torch::cat(flat_views);
  average(flat);
  int64_t at = 0;
  for (auto& g : grads) {
    const int64_t n = g.numel();
    g.view({-1}).copy_(flat.narrow(0, at, n));
    at += n;
  }
}

std::vector<double> GradientSync::sum(const std::vector<double>& values) {
  if (options_.world_size == 1 || values.empty()) return values;
  torch::Tensor t = torch::tensor(values, torch::kFloat64);
  sum(t);
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

void GradientSync::broadcast(std::vector<torch::Tensor>& tensors, int root) {
  if (options_.world_size == 1 || tensors.empty()) return;
  run("broadcast", [&] {
    for (auto& t : tensors) {
      std::vector<at::Tensor> v{t};
      c10d::BroadcastOptions bo;
      bo.rootRank = root;
      impl_->group->broadcast(v, bo)->wait();
    }
  });
}

std::string GradientSync::broadcast_bytes(const std::string& bytes, int root) {
  if (options_.world_size == 1) return bytes;
  std::vector<torch::Tensor> size{torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kInt64)};
  broadcast(size, root);
  const int64_t n = size[0].item<int64_t>();
  if (n == 0) return std::string();
  std::vector<torch::Tensor> data{torch::empty({n}, torch::kUInt8)};
  if (options_.rank == root) std::memcpy(data[0].data_ptr<uint8_t>(), bytes.data(), bytes.size());
  broadcast(data, root);
  return std::string(reinterpret_cast<const char*>(data[0].data_ptr<uint8_t>()), static_cast<size_t>(n));
}

void GradientSync::barrier() {
  if (options_.world_size == 1) return;
  run("barrier", [&] { impl_->group->barrier()->wait(); });
}

}  // namespace orchard::learner
