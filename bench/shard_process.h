// Benchmarks' helper: real orchard-replay shard processes on free loopback ports, killed at the end.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "orchard/core/net.h"

namespace orchard::bench {

inline std::string bin_dir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  std::string p(buf, static_cast<size_t>(n > 0 ? n : 0));
  return p.substr(0, p.rfind('/'));
}

// Starts `count` shards with one table of the given signature; kills them on destruction.
struct Shards {
  std::vector<pid_t> pids;
  std::vector<std::string> endpoints;
  std::string dir;
  // One table "main" (uniform sampler) with the given signature (YAML list) and size.
  Shards(int count, const std::string& signature_yaml, uint64_t max_size)
      : Shards(count, "    - name: main\n      sampler: uniform\n      max_size: " + std::to_string(max_size) +
                          "\n      signature: " + signature_yaml + "\n") {}
  // `tables_yaml`: the entries of replay.tables, indented by four spaces.
  Shards(int count, const std::string& tables_yaml) {
    dir = "/tmp/orchard-bench-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    ::mkdir(dir.c_str(), 0755);
    std::ofstream(dir + "/spec.yaml") << "replay:\n  insert_workers: 1\n  sample_workers: 1\n  tables:\n"
                                      << tables_yaml;
    for (int i = 0; i < count; ++i) {
      std::string ep = "tcp://127.0.0.1:" + std::to_string(core::free_loopback_port());
      endpoints.push_back(ep);
      pid_t pid = ::fork();
      if (pid == 0) {
        int devnull = ::open("/dev/null", O_WRONLY);
        ::dup2(devnull, 1);
        ::dup2(devnull, 2);
        std::string exe = bin_dir() + "/orchard-replay";
        std::string cfg = dir + "/spec.yaml", idx = std::to_string(i);
        ::execl(exe.c_str(), exe.c_str(), "--config", cfg.c_str(), "--bind", ep.c_str(), "--shard-index",
                idx.c_str(), static_cast<char*>(nullptr));
        _exit(127);
      }
      pids.push_back(pid);
    }
    for (const auto& ep : endpoints) {
      auto port = static_cast<uint16_t>(std::stoi(ep.substr(ep.rfind(':') + 1)));
      for (int t = 0; t < 200 && !core::tcp_port_open("127.0.0.1", port, 50); ++t) ::usleep(20000);
    }
  }
  ~Shards() {
    for (pid_t p : pids) ::kill(p, SIGKILL);
    for (pid_t p : pids) ::waitpid(p, nullptr, 0);
    std::string cmd = "rm -rf " + dir;
    (void)!std::system(cmd.c_str());
  }
  static inline int counter = 0;
};


}  // namespace orchard::bench
