// GradientSync on Gloo's own algorithms (AllreduceRing, BroadcastOneToAll, BarrierAllToAll)
// over a full mesh of Gloo TCP pairs, with LibTorch's c10d TCPStore for the rendezvous.
//
// Not c10d's ProcessGroupGloo: on the 2-core test machine its all-reduce of the quickstart's
// 9 155 floats took 1.5 ms, against 0.12 ms for gloo::AllreduceRing on the same pairs
// (docs/benchmarks.md, "Learner ranks"). ProcessGroupGloo runs each collective on a worker
// thread and the newer gloo::allreduce() on the transport's loop thread; the ring algorithm
// with preallocated buffers does the sends and receives from the calling thread. An algorithm
// is built once per buffer size and reused (its buffers are registered with the pairs).
#include "orchard/learner/gradient_sync.h"

#include <gloo/allreduce_ring.h>
#include <gloo/barrier_all_to_all.h>
#include <gloo/broadcast_one_to_all.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstring>
#include <map>

#include "orchard/core/error.h"

namespace orchard::learner {

namespace {

// Gloo's rendezvous reads and writes keys through this; the keys live in rank 0's TCPStore.
class TcpStoreAdapter : public ::gloo::rendezvous::Store {
 public:
  TcpStoreAdapter(c10::intrusive_ptr<c10d::Store> store, std::chrono::milliseconds timeout)
      : store_(std::move(store)), timeout_(timeout) {}
  void set(const std::string& key, const std::vector<char>& value) override {
    store_->set(key, std::vector<uint8_t>(value.begin(), value.end()));
  }
  std::vector<char> get(const std::string& key) override {
    auto v = store_->get(key);
    return std::vector<char>(v.begin(), v.end());
  }
  void wait(const std::vector<std::string>& keys) override { store_->wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    store_->wait(keys, timeout);
  }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  std::chrono::milliseconds timeout_;
};

// A reusable collective on a staging buffer of fixed size.
template <class T>
struct Staged {
  std::vector<T> buffer;
  std::unique_ptr<::gloo::Algorithm> algorithm;
};

}  // namespace

struct GradientSync::Impl {
  c10::intrusive_ptr<c10d::Store> tcp;
  std::unique_ptr<TcpStoreAdapter> store;
  std::shared_ptr<::gloo::rendezvous::Context> context;
  std::map<int64_t, Staged<float>> sum_f32;
  std::map<int64_t, Staged<double>> sum_f64;
  std::map<std::pair<int, int64_t>, Staged<uint8_t>> bcast;
  std::unique_ptr<::gloo::Algorithm> barrier;

  template <class T>
  Staged<T>& reducer(std::map<int64_t, Staged<T>>& cache, int64_t n) {
    auto& s = cache[n];
    if (!s.algorithm) {
      s.buffer.assign(static_cast<size_t>(n), T(0));
      s.algorithm = std::make_unique<::gloo::AllreduceRing<T>>(context, std::vector<T*>{s.buffer.data()},
                                                              static_cast<int>(n));
    }
    return s;
  }
  Staged<uint8_t>& broadcaster(int root, int64_t n) {
    auto& s = bcast[{root, n}];
    if (!s.algorithm) {
      s.buffer.assign(static_cast<size_t>(n), 0);
      s.algorithm = std::make_unique<::gloo::BroadcastOneToAll<uint8_t>>(
          context, std::vector<uint8_t*>{s.buffer.data()}, static_cast<int>(n), root);
    }
    return s;
  }
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
    impl_->tcp = c10::make_intrusive<c10d::TCPStore>(o.store_host, so);
    impl_->store = std::make_unique<TcpStoreAdapter>(impl_->tcp, timeout);
    ::gloo::rendezvous::PrefixStore prefixed("orchard/learners", *impl_->store);
    ::gloo::transport::tcp::attr attr;
    attr.hostname = o.address;
    auto device = ::gloo::transport::tcp::CreateDevice(attr);
    impl_->context = std::make_shared<::gloo::rendezvous::Context>(o.rank, o.world_size);
    impl_->context->setTimeout(timeout);
    impl_->context->connectFullMesh(prefixed, device);
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
  if (options_.world_size == 1 || t.numel() == 0) return;
  run("all-reduce", [&] {
    auto reduce = [&](auto& cache, auto* data) {
      auto& st = impl_->reducer(cache, t.numel());
      std::memcpy(st.buffer.data(), data, st.buffer.size() * sizeof(st.buffer[0]));
      st.algorithm->run();
      std::memcpy(data, st.buffer.data(), st.buffer.size() * sizeof(st.buffer[0]));
    };
    torch::Tensor c = t.is_contiguous() ? t : t.contiguous();
    if (c.scalar_type() == torch::kFloat32)
      reduce(impl_->sum_f32, c.data_ptr<float>());
    else if (c.scalar_type() == torch::kFloat64)
      reduce(impl_->sum_f64, c.data_ptr<double>());
    else
      throw std::runtime_error(std::string("only float32 and float64 tensors are summed, got ") +
                               c10::toString(c.scalar_type()));
    if (!c.is_same(t)) t.copy_(c);
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
      torch::Tensor c = t.is_contiguous() ? t : t.contiguous();
      const int64_t n = c.numel() * static_cast<int64_t>(c.element_size());
      if (n == 0) continue;
      auto& st = impl_->broadcaster(root, n);
      auto* data = static_cast<uint8_t*>(c.data_ptr());
      if (options_.rank == root) std::memcpy(st.buffer.data(), data, static_cast<size_t>(n));
      st.algorithm->run();
      if (options_.rank != root) {
        std::memcpy(data, st.buffer.data(), static_cast<size_t>(n));
        if (!c.is_same(t)) t.copy_(c);
      }
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
  run("barrier", [&] {
    if (!impl_->barrier) impl_->barrier = std::make_unique<::gloo::BarrierAllToAll>(impl_->context);
    impl_->barrier->run();
  });
}

}  // namespace orchard::learner
