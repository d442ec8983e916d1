// Data-parallel learner ranks: the collectives that keep L learner processes in lockstep.
//
// Every rank samples its own batches, computes gradients, and averages them with the others
// before the optimiser step (synchronous data parallelism, as torch DistributedDataParallel and
// Horovod do it), so the parameters stay identical on every rank without being sent. The
// collectives are Gloo's (TCP pairs between every two ranks) on the CPU; NCCL, for CUDA
// learners, is not implemented by orchard-learner yet. Rank 0 hosts the rendezvous store (a
// c10d TCPStore on `store_host:store_port`); the others connect to it.
//
// A rank that dies closes its TCP pairs, so the others' next collective fails at once with an
// orchard::Error instead of hanging; a rank that is alive but silent makes them fail after
// `timeout_s`. The orchestrator then restarts the learner ranks together (docs/orchestrator.md).
//
// Not thread-safe: one thread per rank issues the collectives, in the same order on every rank.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace orchard::learner {

struct GradientSyncOptions {
  int rank = 0;
  int world_size = 1;
  std::string store_host = "127.0.0.1";  // rank 0's address: it listens there
  int store_port = 0;                    // 1..65535
  std::string address = "127.0.0.1";     // this rank's address for Gloo's connections
  double timeout_s = 120;                // rendezvous and every collective
  std::string backend = "gloo";          // gloo (nccl needs a CUDA learner)
};

class GradientSync {
 public:
  // Rendezvous with the other world_size - 1 ranks. Throws orchard::Error naming the store, the
  // rank and what failed (bad options, store unreachable, a rank missing after timeout_s).
  explicit GradientSync(GradientSyncOptions options);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }

  // In place: `t` (float32 or float64, CPU) becomes the element-wise mean over the ranks.
  void average(torch::Tensor& t);
  // In place: the element-wise sum over the ranks.
  void sum(torch::Tensor& t);
  // The gradients of `module`'s parameters (those that have one) averaged across ranks, as one
  // flat all-reduce. Every rank must pass a module of the same architecture.
  void average_gradients(torch::nn::Module& module);
  // Element-wise sums of a few numbers (float64), e.g. a control round.
  std::vector<double> sum(const std::vector<double>& values);
  // Root's tensors copied into every rank's (same shapes and dtypes on every rank).
  void broadcast(std::vector<torch::Tensor>& tensors, int root = 0);
  // Root's bytes on every rank (others pass anything; their argument is ignored).
  std::string broadcast_bytes(const std::string& bytes, int root = 0);
  void barrier();

  // Collectives issued and their total wall time, for the learner's time split.
  int64_t calls() const { return calls_; }
  double seconds() const { return seconds_; }

 private:
  struct Impl;
  void run(const char* what, const std::function<void()>& op);

  GradientSyncOptions options_;
  std::unique_ptr<Impl> impl_;
  int64_t calls_ = 0;
  double seconds_ = 0;
};

}  // namespace orchard::learner
