#include "orchard/learner/torch_info.h"

#include <dlfcn.h>
#include <link.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <vector>

namespace orchard::learner {
namespace {

int collect_blas(struct dl_phdr_info* info, size_t, void* out) {
  std::string name = info->dlpi_name ? info->dlpi_name : "";
  if (name.find("libblas") != std::string::npos || name.find("openblas") != std::string::npos ||
      name.find("libmkl") != std::string::npos || name.find("libblis") != std::string::npos) {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
  }
  return 0;
}

std::string resolve(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf)) return buf;
  return path;
}

}  // namespace

TorchInfo probe_torch(bool measure) {
  TorchInfo info;
  info.torch_version = TORCH_VERSION;
  info.intra_op_threads = at::get_num_threads();
  info.inter_op_threads = at::get_num_interop_threads();
  std::string parallel = at::get_parallel_info();
  for (const char* key : {"ATen parallel backend", "OpenMP", "MKL", "MKLDNN"}) {
    auto pos = parallel.find(key);
    if (pos == std::string::npos) continue;
    auto end = parallel.find('\n', pos);
    if (!info.parallel_backend.empty()) info.parallel_backend += "; ";
    info.parallel_backend += parallel.substr(pos, end - pos);
  }

  // A 64-64-64 MLP forward at batch 256: the shape the NOTES measured for reference vs OpenBLAS.
  at::manual_seed(0);
  auto x = at::randn({256, 64});
  auto w1 = at::randn({64, 64}), w2 = at::randn({64, 64}), w3 = at::randn({64, 64});
  auto b = at::zeros({64});
  auto forward = [&] { return at::addmm(b, at::tanh(at::addmm(b, at::tanh(at::addmm(b, x, w1)), w2)), w3); };
  forward();  // loads and initialises the BLAS
  if (measure) {
    std::vector<double> us;
    for (int i = 0; i < 5; ++i) forward();
    for (int i = 0; i < 51; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      auto y = forward();
      (void)y.data_ptr<float>();
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    std::nth_element(us.begin(), us.begin() + us.size() / 2, us.end());
    info.mlp_forward_us = us[us.size() / 2];
  }

  std::vector<std::string> libs;
  dl_iterate_phdr(&collect_blas, &libs);
  std::string blas_path;
  for (const auto& l : libs) {
    if (l.find("libblas.so") != std::string::npos) blas_path = resolve(l);
  }
  if (blas_path.empty() && !libs.empty()) blas_path = resolve(libs.front());
  info.blas_library = blas_path;

  using ConfigFn = char* (*)();
  using ThreadsFn = int (*)();
  auto get_config = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
  auto get_threads = reinterpret_cast<ThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  // OpenBLAS also exports its symbols when only linked indirectly (libtorch -> liblapack ->
  // libopenblas), so decide the kind by which file serves libblas.so.3, not by symbol presence.
  if (blas_path.find("openblas") != std::string::npos) {
    info.blas_kind = "openblas";
    if (get_config) info.blas_config = get_config();
    if (get_threads) info.blas_threads = get_threads();
  } else if (blas_path.find("mkl") != std::string::npos) {
    info.blas_kind = "mkl";
  } else if (blas_path.find("blis") != std::string::npos) {
    info.blas_kind = "blis";
  } else if (blas_path.find("atlas") != std::string::npos) {
    info.blas_kind = "atlas";
  } else if (blas_path.find("/blas/") != std::string::npos) {
    info.blas_kind = "reference";
  } else {
    info.blas_kind = blas_path.empty() ? "none" : "unknown";
  }

#ifdef ORCHARD_WITH_CUDA
  info.cuda_built = true;
#endif
  info.cuda_available = torch::cuda::is_available();
  info.cuda_devices = static_cast<int>(torch::cuda::device_count());

  if (void* nccl = dlopen("libnccl.so.2", RTLD_LAZY | RTLD_LOCAL)) {
    using VersionFn = int (*)(int*);
    if (auto fn = reinterpret_cast<VersionFn>(dlsym(nccl, "ncclGetVersion"))) {
      int v = 0;
      if (fn(&v) == 0) {
        // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
        info.nccl_version = std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." +
                            std::to_string(v % 100);
      }
    }
    dlclose(nccl);
  }
  return info;
}

void set_compute_threads(int threads, int blas_threads) {
  at::set_num_threads(threads);
  if (blas_threads <= 0) blas_threads = threads;
  using SetThreadsFn = void (*)(int);
  // Exported by OpenBLAS whether libtorch links it directly or through liblapack/libblas; absent
  // under the reference BLAS, MKL or BLIS, where there is nothing to size.
  if (auto set = reinterpret_cast<SetThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(blas_threads);
}

std::string to_json(const TorchInfo& i) {
  nlohmann::json j = {
      {"torch_version", i.torch_version},   {"intra_op_threads", i.intra_op_threads},
      {"inter_op_threads", i.inter_op_threads}, {"parallel_backend", i.parallel_backend},
      {"blas_kind", i.blas_kind},           {"blas_library", i.blas_library},
      {"blas_config", i.blas_config},       {"blas_threads", i.blas_threads},
      {"mlp_forward_us", i.mlp_forward_us}, {"cuda_built", i.cuda_built},
      {"cuda_available", i.cuda_available}, {"cuda_devices", i.cuda_devices},
      {"nccl_version", i.nccl_version},
  };
  return j.dump();
}

}  // namespace orchard::learner
