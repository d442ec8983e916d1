#include "orchard/orchestrator/doctor.h"

#include <google/protobuf/stubs/common.h>
#include <hiredis/hiredis.h>
#include <spdlog/version.h>
#include <unistd.h>
#include <zmq.h>

#include <boost/version.hpp>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "orchard/core/version.h"
#include "orchard/core/wire.h"
#include "orchard/orchestrator/process.h"

namespace orchard::orchestrator {
namespace {

std::string first_line(const std::string& s) {
  auto end = s.find('\n');
  return s.substr(0, end);
}

void add(DoctorReport& r, std::string name, std::string value, std::string status = "ok", std::string hint = "") {
  r.checks.push_back({std::move(name), std::move(value), std::move(status), std::move(hint)});
}

void check_torch(DoctorReport& r, const std::string& bin_dir) {
  std::string probe = bin_dir + "/orchard-torch-info";
  if (::access(probe.c_str(), X_OK) != 0) {
    add(r, "LibTorch", "probe " + probe + " not found", "fail", "build Orchard first: make -C <checkout> build");
    return;
  }
  CommandResult res = run_command({probe}, 60'000, /*merge_stderr=*/false);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(res.output);
  } catch (const std::exception&) {
    add(r, "LibTorch", "probe failed (exit " + std::to_string(res.exit_code) + "): " + first_line(res.output),
        "fail", "run " + probe + " to see the error");
    return;
  }
  if (res.exit_code != 0) {
    add(r, "LibTorch", "probe exited with " + std::to_string(res.exit_code), "fail");
    return;
  }
  add(r, "LibTorch", j.value("torch_version", "?"));
  std::ostringstream threads;
  threads << "intra-op " << j.value("intra_op_threads", 0) << ", inter-op " << j.value("inter_op_threads", 0)
          << " (" << j.value("parallel_backend", "") << ")";
  const char* omp = std::getenv("OMP_NUM_THREADS");
  threads << "; OMP_NUM_THREADS=" << (omp ? omp : "unset") << "; cores " << std::thread::hardware_concurrency();
  add(r, "LibTorch threads", threads.str());

  std::string kind = j.value("blas_kind", "unknown");
  std::ostringstream blas;
  blas << kind << " " << j.value("blas_library", "");
  if (!j.value("blas_config", "").empty()) blas << " [" << j.value("blas_config", "") << "]";
  if (j.value("blas_threads", 0) > 0) blas << ", " << j.value("blas_threads", 0) << " threads";
  char mlp[96];
  std::snprintf(mlp, sizeof(mlp), "; 64x64 MLP forward, batch 256: %.0f us", j.value("mlp_forward_us", 0.0));
  blas << mlp;
  if (kind == "openblas" || kind == "mkl" || kind == "blis") {
    add(r, "BLAS", blas.str());
  } else {
    add(r, "BLAS", blas.str(), "warn",
        "LibTorch is not using OpenBLAS (5-6x slower here); run deploy/install-deps.sh, or: "
        "sudo update-alternatives --set libblas.so.3-x86_64-linux-gnu "
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3");
  }
  bool built = j.value("cuda_built", false);
  bool avail = j.value("cuda_available", false);
  std::string cuda = built ? (avail ? "available, " + std::to_string(j.value("cuda_devices", 0)) + " device(s)"
                                    : "built with CUDA, no device visible")
                           : "not in this build (CPU LibTorch); learners use Gloo";
  add(r, "CUDA", cuda, built && !avail ? "warn" : "ok");
  std::string nccl = j.value("nccl_version", "");
  add(r, "NCCL", nccl.empty() ? "not found (libnccl.so.2); GPU all-reduce unavailable" : nccl);
}

}  // namespace

bool DoctorReport::healthy() const {
  for (const auto& c : checks)
    if (c.status == "fail") return false;
  return true;
}

DoctorReport run_doctor(const std::string& bin_dir) {
  DoctorReport r;
  add(r, "Orchard",
      std::string(core::orchard_version()) + " (" + core::orchard_git_commit() + ", " + core::orchard_build_type() +
          ", " + core::orchard_compiler() + ")");
  check_torch(r, bin_dir);

  bool curve = core::curve_available();
  add(r, "ZeroMQ", core::zmq_version_string() + (curve ? ", CURVE available" : ", no CURVE"), curve ? "ok" : "warn",
      curve ? "" : "libzmq was built without CURVE; encrypted sockets are unavailable");
  add(r, "Protobuf", google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION));
  add(r, "hiredis", std::to_string(HIREDIS_MAJOR) + "." + std::to_string(HIREDIS_MINOR) + "." +
                        std::to_string(HIREDIS_PATCH));
  std::string boost = BOOST_LIB_VERSION;
  for (auto& c : boost)
    if (c == '_') c = '.';
  add(r, "Boost", boost);
  add(r, "spdlog", std::to_string(SPDLOG_VER_MAJOR) + "." + std::to_string(SPDLOG_VER_MINOR) + "." +
                       std::to_string(SPDLOG_VER_PATCH));

  std::string redis = find_on_path("redis-server");
  if (redis.empty()) {
    add(r, "redis-server", "not found", "fail",
        "the embedded Redis default needs it: sudo apt-get install redis-server (or deploy/install-deps.sh)");
  } else {
    CommandResult v = run_command({redis, "--version"}, 5000);
    add(r, "redis-server", redis + ": " + first_line(v.output), v.exit_code == 0 ? "ok" : "fail");
  }
  return r;
}

std::string format_text(const DoctorReport& report) {
  std::ostringstream os;
  size_t width = 0;
  for (const auto& c : report.checks) width = std::max(width, c.name.size());
  for (const auto& c : report.checks) {
    std::string mark = c.status == "ok" ? "ok  " : c.status == "warn" ? "WARN" : "FAIL";
    os << mark << "  " << c.name << std::string(width - c.name.size() + 2, ' ') << c.value << "\n";
    if (!c.hint.empty()) os << "      " << std::string(width + 2, ' ') << "-> " << c.hint << "\n";
  }
  os << (report.healthy() ? "doctor: all required checks passed\n" : "doctor: some checks FAILED\n");
  return os.str();
}

std::string format_json(const DoctorReport& report) {
  nlohmann::json j;
  j["healthy"] = report.healthy();
  j["checks"] = nlohmann::json::array();
  for (const auto& c : report.checks) {
    j["checks"].push_back({{"name", c.name}, {"value", c.value}, {"status", c.status}, {"hint", c.hint}});
  }
  return j.dump(2);
}

}  // namespace orchard::orchestrator
