// What LibTorch sees at run time: version, threads, the BLAS library actually loaded, CUDA and
// NCCL. Used by `orchard doctor` (through the orchard-torch-info probe) and logged by learners
// and actors at start-up.
#pragma once

#include <string>

namespace orchard::learner {

struct TorchInfo {
  std::string torch_version;      // "1.13.1"
  int intra_op_threads = 0;       // at::get_num_threads()
  int inter_op_threads = 0;       // at::get_num_interop_threads()
  std::string parallel_backend;   // first lines of at::get_parallel_info()
  std::string blas_kind;          // openblas | reference | mkl | blis | atlas | unknown
  std::string blas_library;       // resolved path of the loaded libblas
  std::string blas_config;        // openblas_get_config() when OpenBLAS is loaded
  int blas_threads = 0;           // openblas_get_num_threads(), 0 if unknown
  double mlp_forward_us = 0;      // median time of a 64-64-64 MLP forward at batch 256
  bool cuda_built = false;        // LibTorch compiled with CUDA
  bool cuda_available = false;    // a CUDA device is usable now
  int cuda_devices = 0;
  std::string nccl_version;       // from libnccl.so.2 when loadable, else ""
};

// Loads BLAS through a real matmul first, so the library reported is the one LibTorch uses.
TorchInfo probe_torch(bool measure = true);

// Sets LibTorch's intra-op threads and, when OpenBLAS serves the matmuls, OpenBLAS's own thread
// pool to `threads`. at::set_num_threads() does not reach OpenBLAS (it sizes itself to the
// machine's cores), and an idle OpenBLAS worker spins in sched_yield: with the pthread build on
// two cores the learner's worker burned most of a core in system time, taken from the actors
// (docs/benchmarks.md, orchestrator overhead).
// `blas_threads` sizes OpenBLAS apart (0: the same as `threads`).
void set_compute_threads(int threads, int blas_threads = 0);

// One JSON object with the fields above.
std::string to_json(const TorchInfo& info);

}  // namespace orchard::learner
