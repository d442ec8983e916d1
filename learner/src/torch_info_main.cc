// orchard-torch-info: prints what LibTorch sees (version, threads, BLAS, CUDA, NCCL) as JSON.
// `orchard doctor` runs it so the orchard CLI itself never loads LibTorch.
#include <cstdio>
#include <cstring>
#include <exception>

#include "orchard/learner/torch_info.h"

int main(int argc, char** argv) {
  bool measure = !(argc > 1 && std::strcmp(argv[1], "--no-measure") == 0);
  try {
    std::printf("%s\n", orchard::learner::to_json(orchard::learner::probe_torch(measure)).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "orchard-torch-info: %s\n", e.what());
    return 1;
  }
  return 0;
}
