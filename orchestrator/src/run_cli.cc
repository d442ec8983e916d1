// `orchard run SPEC` (foreground) and `orchard up SPEC` (detached): a run on this machine.
//
// The orchestrator resolves the spec, starts (or connects to) Redis, registers the run, and hands
// the processes to the Scheduler (one Boost.Asio event loop): replay shards, then the learner,
// then the actors, each ready before the next group; failed processes are restarted with backoff
// within a restart budget; a process whose Redis heartbeat expires is killed and restarted. Once a
// second it reads the run's control fields in Redis (`stop_requested`, `desired_actors`, written by
// `orchard stop` / `orchard scale`), mirrors the process table into Redis, and every few seconds
// prints a progress line from the learner's metric stream. When the learner ends the run (budget
// or target) or on SIGINT/SIGTERM/`orchard stop`, it stops actors, learner, shards in that order.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <array>
#include <cctype>
#include <cstring>
#include <pthread.h>
#include <chrono>
#include <map>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <iostream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/fmt/fmt.h>

#include "cli.h"
#include "orchard/core/config.h"
#include "orchard/core/error.h"
#include "orchard/core/logging.h"
#include "orchard/core/shutdown.h"
#include "orchard/core/net.h"
#include "orchard/core/redis.h"
#include "orchard/orchestrator/agent.h"
#include "orchard/orchestrator/embedded_redis.h"
#include "orchard/core/wire.h"
#include "orchard/orchestrator/process.h"
#include "orchard/orchestrator/run_spec.h"
#include "orchard/orchestrator/scheduler.h"
#include "run_registry.h"

namespace fs = std::filesystem;

namespace orchard::cli {
namespace {

using orchestrator::RunOutcome;
using orchestrator::RunSpec;
using orchestrator::steady_seconds;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail(const std::string& s, size_t n) { return s.size() <= n ? s : "..." + s.substr(s.size() - n); }

using Agents = std::map<std::string, std::shared_ptr<orchestrator::AgentClient>>;

// One client per host of the spec, each answering a ping with the right token: an unreachable
// agent or a wrong token is an error before anything starts.
Agents connect_agents(const RunSpec& spec) {
  Agents agents;
  for (const auto& h : spec.hosts) {
    const std::string token = read_token_file(h.token_file);
    std::string server_key;
    if (!h.server_key_file.empty()) server_key = core::load_curve_keys(h.server_key_file, false).public_key;
    agents[h.name] = std::make_shared<orchestrator::AgentClient>(h.name, h.agent, token, server_key, 3000);
  }
  // All pinged at once: start-up pays one round trip to the farthest agent, not one per agent.
  std::vector<orchestrator::AgentClient*> all;
  for (auto& [name, a] : agents) all.push_back(a.get());
  std::vector<nlohmann::json> replies;
  orchestrator::AgentClient::try_call_all(all, {{"op", "ping"}}, &replies);
  for (size_t i = 0; i < all.size(); ++i) {
    const std::string why = all[i]->failure("ping", replies[i]);
    if (!why.empty()) throw Error("host '" + all[i]->name() + "': " + why);
  }
  return agents;
}

// Why directory `dir` cannot be made or written here, or "" when it can: the nearest existing
// ancestor must be a writable directory. Found before the run starts, not as a filesystem
// exception halfway through it.
std::string dir_problem(const std::string& dir) {
  std::error_code ec;
  const fs::path p = fs::absolute(dir, ec);
  if (ec) return ec.message();
  fs::path probe = p;
  while (!fs::exists(probe, ec) && probe.has_parent_path() && probe.parent_path() != probe) probe = probe.parent_path();
  if (!fs::is_directory(probe, ec)) return "'" + probe.string() + "' is not a directory";
  // Tried, not asked (access() says yes to root, also on /proc or a read-only mount).
  std::string tmp = (probe / ".orchard-probe-XXXXXX").string();
  if (::mkdtemp(tmp.data()) == nullptr)
    return "nothing can be made in '" + probe.string() + "' (" + std::strerror(errno) + ")";
  ::rmdir(tmp.c_str());
  return "";
}

// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as the zip format stores it for each
// entry (PKWARE APPNOTE.TXT 4.4.7).
uint32_t crc32_of(const char* data, size_t n, uint32_t crc = 0) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ static_cast<uint8_t>(data[i])) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

// Why `path` is not a whole PyTorch archive, or "" when it is. torch::save writes a zip file
// of stored (uncompressed) entries; following APPNOTE.TXT, the end-of-central-directory record
// must end the file exactly (after its comment), the central directory must be where it says,
// and every stored entry's data must match the CRC-32 recorded for it. A truncated, overwritten
// or bit-flipped checkpoint is found here instead of as a learner that fails (or, for flipped
// bytes inside a tensor, silently resumes from damaged weights).
std::string torch_archive_problem(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "it cannot be read";
  const int64_t size = static_cast<int64_t>(in.tellg());
  if (size < 22) return "it is " + std::to_string(size) + " bytes long";
  auto read_at = [&](int64_t offset, int64_t n) {
    std::string buf(static_cast<size_t>(n), '\0');
    in.clear();
    in.seekg(offset);
    in.read(buf.data(), n);
    if (in.gcount() != n) buf.clear();
    return buf;
  };
  auto u16 = [](const std::string& b, size_t at) {
    return static_cast<uint32_t>(static_cast<uint8_t>(b[at])) | static_cast<uint32_t>(static_cast<uint8_t>(b[at + 1])) << 8;
  };
  auto u32 = [&](const std::string& b, size_t at) { return u16(b, at) | u16(b, at + 2) << 16; };
  if (read_at(0, 4) != std::string("PK\x03\x04", 4)) return "it is not a PyTorch archive";
  // The end-of-central-directory record: 22 bytes plus its comment, ending the file.
  const int64_t tail_len = std::min<int64_t>(size, 22 + 65535);
  const std::string tail = read_at(size - tail_len, tail_len);
  int64_t eocd = -1;
  for (size_t at = tail.rfind(std::string("PK\x05\x06", 4)); at != std::string::npos;
       at = at == 0 ? std::string::npos : tail.rfind(std::string("PK\x05\x06", 4), at - 1)) {
    if (at + 22 <= tail.size() && at + 22 + u16(tail, at + 20) == tail.size()) {
      eocd = static_cast<int64_t>(at);
      break;
    }
  }
  if (eocd < 0) return "the archive is cut short (no end record at its end)";
  const uint32_t entries = u16(tail, static_cast<size_t>(eocd) + 10);
  const uint32_t cd_size = u32(tail, static_cast<size_t>(eocd) + 12), cd_offset = u32(tail, static_cast<size_t>(eocd) + 16);
  if (cd_offset == 0xFFFFFFFFu || cd_size == 0xFFFFFFFFu || entries == 0xFFFFu) return "";  // zip64: not checked further
  if (static_cast<int64_t>(cd_offset) + cd_size > size) return "the archive is cut short (its directory is missing)";
  const std::string cd = read_at(cd_offset, cd_size);
  size_t at = 0;
  for (uint32_t e = 0; e < entries; ++e) {
    if (at + 46 > cd.size() || cd.compare(at, 4, std::string("PK\x01\x02", 4)) != 0)
      return "its directory is damaged (entry " + std::to_string(e) + ")";
    const uint32_t method = u16(cd, at + 10), crc = u32(cd, at + 16), csize = u32(cd, at + 20);
    const uint32_t name_len = u16(cd, at + 28), extra_len = u16(cd, at + 30), comment_len = u16(cd, at + 32);
    const uint32_t local = u32(cd, at + 42);
    const std::string name = cd.substr(at + 46, std::min<size_t>(name_len, cd.size() - std::min(cd.size(), at + 46)));
    at += 46 + name_len + extra_len + comment_len;
    if (method != 0 || csize == 0xFFFFFFFFu || local == 0xFFFFFFFFu) continue;  // compressed or zip64: not checked
    const std::string header = read_at(local, 30);
    if (header.size() != 30 || header.compare(0, 4, std::string("PK\x03\x04", 4)) != 0)
      return "entry '" + name + "' is damaged (no header where the directory says)";
    const int64_t data_at = static_cast<int64_t>(local) + 30 + u16(header, 26) + u16(header, 28);
    if (data_at + csize > size) return "entry '" + name + "' is cut short";
    uint32_t got = 0;
    std::string chunk;
    for (int64_t done = 0; done < csize;) {
      const int64_t n = std::min<int64_t>(csize - done, 1 << 20);
      chunk = read_at(data_at + done, n);
      if (chunk.empty()) return "entry '" + name + "' cannot be read";
      got = crc32_of(chunk.data(), chunk.size(), got);
      done += n;
    }
    if (got != crc) return "entry '" + name + "' does not match its checksum (the data was overwritten)";
  }
  return "";
}

// Actors a host may run: a guard against a typo (actors=2000 for 200) starting more processes
// than the host can schedule. Each actor is a process with its own envs and inference thread.
constexpr int64_t kActorsPerCpu = 16;

// The CPUs of `host`: this machine's, or what its agent reports (asked once per host, kept in
// `cache`); 0 when the agent does not answer (no limit is then applied).
int64_t host_cpus(const std::string& host, Agents& agents, std::map<std::string, int64_t>& cache) {
  if (host == "local") return std::max<int64_t>(1, std::thread::hardware_concurrency());
  if (auto it = cache.find(host); it != cache.end()) return it->second;
  nlohmann::json reply;
  if (!agents.count(host) || !agents.at(host)->try_call({{"op", "host"}}, &reply) || !reply.value("ok", false)) return 0;
  return cache[host] = reply.value("cpus", int64_t{0});
}

// Why `n` actors are too many for `host` with `cpus` CPUs (kActorsPerCpu), or "".
std::string too_many_actors(const std::string& host, int64_t n, int64_t cpus) {
  if (cpus <= 0 || n <= kActorsPerCpu * cpus) return "";
  return std::to_string(n) + " actors on " + (host == "local" ? std::string("this machine") : "host '" + host + "'") +
         ", which has " + std::to_string(cpus) + " CPUs (at most " + std::to_string(kActorsPerCpu) + " actors per CPU)";
}

// How many actors of `total` land on `host` when actor i runs on placement[i % size].
int64_t actors_on(const std::vector<std::string>& placement, const std::string& host, int64_t total) {
  int64_t n = 0;
  for (int64_t i = 0; i < total; ++i) n += placement[static_cast<size_t>(i) % placement.size()] == host;
  return n;
}

// True when a thread of this machine may run on `cpu` (as a process pinned there would).
bool cpu_usable_here(int cpu) {
  bool ok = false;
  std::thread probe([&] {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    ok = ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set) == 0;
  });
  probe.join();
  return ok;
}

// Run directory, checkpoint directory, log file and CPU pins, checked where they will be used:
// a mistake here would otherwise show only as a process failing until its restarts run out.
void check_resources(const RunSpec& spec, Agents& agents) {
  if (auto why = dir_problem(spec.run_dir); !why.empty())
    throw ConfigError(spec.node()["run_dir"].where() + ": run directory '" + spec.run_dir + "' cannot be made: " + why);
  if (spec.placement.learner == "local")
    if (auto why = dir_problem(spec.checkpoint_dir); !why.empty())
      throw ConfigError(spec.node()["checkpoint_dir"].where() + ": checkpoint directory '" + spec.checkpoint_dir +
                        "' cannot be made: " + why);
  if (!spec.logging.file.empty() && !spec.multi_host()) {
    const fs::path f = fs::absolute(spec.logging.file);
    std::error_code ec;
    std::string why = fs::is_directory(f, ec) ? "it is a directory" : dir_problem(f.parent_path().string());
    if (why.empty() && fs::exists(f, ec) && ::access(f.c_str(), W_OK) != 0) why = "it is not writable";
    if (!why.empty())
      throw ConfigError(spec.node()["logging"]["file"].where() + ": log file '" + spec.logging.file + "': " + why);
  }
  // Actors per host, within kActorsPerCpu of its CPUs.
  std::map<std::string, int64_t> cpus_cache;
  auto cpus_of = [&](const std::string& host) { return host_cpus(host, agents, cpus_cache); };
  for (const auto& host : std::set<std::string>(spec.placement.actors.begin(), spec.placement.actors.end()))
    if (auto why = too_many_actors(host, actors_on(spec.placement.actors, host, spec.actors.count), cpus_of(host));
        !why.empty())
      throw ConfigError(spec.node()["actors"]["count"].where() + ": " + why);
  // CPU pins: each id must exist on every host its processes are placed on.
  struct Pinned {
    const char* section;
    const std::vector<int>* cpus;
    std::vector<std::string> hosts;
  };
  auto first = [](const std::vector<std::string>& v, int64_t n) {
    return std::vector<std::string>(v.begin(), v.begin() + std::min<int64_t>(n, static_cast<int64_t>(v.size())));
  };
  const std::vector<Pinned> pinned = {
      {"replay", &spec.replay_cpus, first(spec.placement.replay, spec.replay_shards)},
      {"learner", &spec.learner.cpus, first(spec.placement.learners, spec.learner.count)},
      {"actors", &spec.actors.cpus, spec.placement.actors}};
  for (const auto& p : pinned) {
    if (p.cpus->empty()) continue;
    for (const auto& host : p.hosts) {
      for (int c : *p.cpus) {
        std::string why;
        if (host == "local") {
          if (!cpu_usable_here(c))
            why = "CPU " + std::to_string(c) + " cannot be used on this machine (" +
                  std::to_string(std::thread::hardware_concurrency()) + " CPUs, ids from 0)";
        } else {
          const int64_t n = cpus_of(host);
          if (n > 0 && c >= n)
            why = "CPU " + std::to_string(c) + " is beyond host '" + host + "' (" + std::to_string(n) + " CPUs, ids from 0)";
        }
        if (!why.empty()) throw ConfigError(spec.node()[p.section]["cpus"].where() + ": " + why);
      }
    }
  }
}

// The same request to every agent at once; any failure is an error naming the agent.
std::map<std::string, nlohmann::json> call_all_agents(Agents& agents, const nlohmann::json& request) {
  std::vector<orchestrator::AgentClient*> all;
  for (auto& [name, a] : agents) all.push_back(a.get());
  auto replies = orchestrator::AgentClient::call_each(all, std::vector<nlohmann::json>(all.size(), request));
  std::map<std::string, nlohmann::json> out;
  size_t i = 0;
  for (auto& [name, a] : agents) out[name] = std::move(replies[i++]);
  return out;
}

// Multi-host runs: each shard and the learner's weights socket bind on their host's address, on
// a port that host says is free.
void assign_endpoints(RunSpec& spec, Agents& agents) {
  if (!spec.multi_host() || !spec.replay_endpoints.empty()) return;
  // Which host each endpoint binds on: the shards', the learner's weights socket, rank 0's
  // rendezvous store. Every remote host is asked for all of its ports in one request, all hosts
  // at once.
  std::vector<std::string> on;
  for (int64_t i = 0; i < spec.replay_shards; ++i)
    on.push_back(spec.placement.replay[static_cast<size_t>(i) % spec.placement.replay.size()]);
  on.push_back(spec.placement.learner);
  if (spec.learner.count > 1) on.push_back(spec.placement.learner);
  std::map<std::string, int64_t> wanted;
  for (const auto& host : on)
    if (host != "local") ++wanted[host];
  std::vector<orchestrator::AgentClient*> asked;
  std::vector<nlohmann::json> requests;
  for (const auto& [host, n] : wanted) {
    asked.push_back(agents.at(host).get());
    requests.push_back({{"op", "free_port"}, {"count", n}});
  }
  const auto replies = orchestrator::AgentClient::call_each(asked, requests);
  std::map<std::string, std::vector<int>> ports;
  size_t k = 0;
  for (const auto& [host, n] : wanted) {
    const auto& r = replies[k++];
    if (!r.contains("ports") || !r["ports"].is_array() || static_cast<int64_t>(r["ports"].size()) != n)
      throw Error("host '" + host + "': agent answered free_port without " + std::to_string(n) +
                  " ports (an older `orchard agent`? update it)");
    for (const auto& p : r["ports"]) ports[host].push_back(p.get<int>());
  }
  std::vector<std::string> endpoints;
  std::set<uint16_t> picked;  // distinct local ports
  for (const auto& host : on) {
    if (host == "local") {
      uint16_t port = core::free_loopback_port();
      while (!picked.insert(port).second) port = core::free_loopback_port();
      endpoints.push_back("tcp://" + spec.orchestrator_address + ":" + std::to_string(port));
      continue;
    }
    endpoints.push_back("tcp://" + spec.host(host)->address + ":" + std::to_string(ports[host].front()));
    ports[host].erase(ports[host].begin());
  }
  std::vector<std::string> replay(endpoints.begin(), endpoints.begin() + spec.replay_shards);
  const std::string weights = endpoints[static_cast<size_t>(spec.replay_shards)];
  spec.set_endpoints(replay, weights, spec.learner.count > 1 ? endpoints.back() : "");
}

struct RunOptions {
  bool quiet = false;
  int max_restarts = 5;
  bool resume = false;
  std::string spec_path;          // what the user gave, for `orchard run NAME --resume`
  std::vector<std::string> sets;  // the --set overrides given with it
  double heartbeat_grace_s = 30;  // a process without a heartbeat for this long is hung
  std::string epoch;              // this incarnation on the agents (reset_run/open_run)
  double prior_learner_s = 0;     // a resumed run's learner time so far (its checkpoint's)
};

class LocalRun {
 public:
  LocalRun(RunSpec spec, RunOptions options, Agents agents)
      : spec_(std::move(spec)), opts_(options), agents_(std::move(agents)) {}
  int run();

 private:
  void redis_call(const std::function<void(core::RedisClient&)>& f);
  void on_event(const orchestrator::SchedulerEvent& e);
  void control();
  void progress();
  // An actor on `host` ("local", an agent's name, or "" for round-robin over placement.actors).
  orchestrator::ProcessSpec actor_spec(int64_t id, const std::string& host = "") const;
  void scale_actors(core::RedisClient& c, const std::string& host, int64_t want);
  // Fills host, argv, log and files for a process placed on `host` ("local" or an agent's).
  void place(orchestrator::ProcessSpec& p, const std::string& host, std::vector<std::string> args) const;
  void register_run(const std::string& status, const nlohmann::json& extra = nlohmann::json::object());

  RunSpec spec_;
  RunOptions opts_;
  std::string spec_file_, logs_, bin_;
  std::string remote_spec_yaml_;  // the spec as remote processes read it (run_dir: their agent's)
  std::map<std::string, std::string> remote_files_;  // key files shipped with it
  Agents agents_;
  std::unique_ptr<orchestrator::EmbeddedRedis> redis_;
  std::unique_ptr<core::RedisClient> client_;
  bool redis_down_reported_ = false;
  std::vector<std::string> run_fields_;  // the run's Redis entry (besides status and actors)
  std::string run_status_ = "starting";   // what the entry's status should say while running
  double redis_back_at_ = -1e9;         // when Redis was last reachable again after an outage
  bool redis_restart_reported_ = false;  // the embedded server could not be started again (said once)
  void keep_embedded_redis_up();
  std::string actor_limit_problem(const std::string& host, int64_t want);
  int64_t actors_elsewhere(const std::string& host) const;
  std::map<std::string, int64_t> host_cpus_;  // remote hosts' CPU counts, asked when scaling
  std::unique_ptr<orchestrator::Scheduler> sched_;
  double started_ = 0, next_progress_ = 0;
  int64_t next_actor_id_ = 0;
  RunOutcome outcome_ = RunOutcome::kFinished;
  std::string reason_;
};

// An entry of the run's event stream (docs/redis.md): kind, proc, detail and the wall clock.
void add_event(core::RedisClient& c, const std::string& run, const std::string& kind, const std::string& proc,
               const std::string& detail) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  c.xadd(events_key(run), {{"ts_ms", std::to_string(ms)}, {"kind", kind}, {"proc", proc}, {"detail", detail}}, 10000);
}

void LocalRun::redis_call(const std::function<void(core::RedisClient&)>& f) {
  try {
    f(*client_);
    if (redis_down_reported_) {
      std::cout << "[redis] reachable again" << std::endl;
      redis_down_reported_ = false;
      redis_back_at_ = steady_seconds();
    }
  } catch (const Error& e) {
    // The run goes on without Redis: processes buffer their metrics, we retry next tick.
    if (!redis_down_reported_) std::cout << "[redis] " << e.what() << " (the run continues; retrying)" << std::endl;
    redis_down_reported_ = true;
  }
}

void LocalRun::register_run(const std::string& status, const nlohmann::json& extra) {
  nlohmann::json entry = {{"name", spec_.name},
                          {"redis", spec_.redis_url},
                          {"run_dir", fs::absolute(spec_.run_dir).string()},
                          {"checkpoint_dir", fs::absolute(spec_.checkpoint_dir).string()},
                          {"pid", ::getpid()},
                          {"status", status},
                          {"algorithm", orchestrator::algorithm_name(spec_.algorithm)},
                          {"env", spec_.env.name},
                          {"spec_path", opts_.spec_path},
                          {"sets", opts_.sets}};
  if (redis_) {
    entry["embedded_redis_port"] = redis_->port();
    entry["embedded_redis_password"] = redis_->password();
  }
  for (const auto& [k, v] : extra.items()) entry[k] = v;
  write_registry(spec_.name, entry);
}

void LocalRun::on_event(const orchestrator::SchedulerEvent& e) {
  if (!opts_.quiet || e.kind != "ready")
    std::cout << "[" << e.kind << "] " << e.proc << (e.detail.empty() ? "" : ": " + e.detail) << std::endl;
  redis_call([&](core::RedisClient& c) {
    add_event(c, spec_.name, e.kind, e.proc, e.detail);
    if (e.proc == "run") return;
    const auto& procs = sched_->processes();
    auto it = procs.find(e.proc);
    if (it == procs.end()) return;
    const auto& p = it->second;
    c.command({"SADD", procs_key(spec_.name), e.proc});
    c.command({"HSET", proc_key(spec_.name, e.proc), "role", p.spec.role, "host",
               p.spec.host.empty() ? std::string("localhost") : p.spec.host, "pid",
               std::to_string(p.pid), "state", orchestrator::proc_state_name(p.state), "restarts",
               std::to_string(p.restarts), "last_exit", p.last_exit, "log", p.spec.log_path});
  });
}

void LocalRun::place(orchestrator::ProcessSpec& p, const std::string& host, std::vector<std::string> args) const {
  const std::string program = args.front();
  args.erase(args.begin());
  if (host == "local") {
    p.argv = {bin_ + "/" + program};
    for (auto& a : args) p.argv.push_back(a == "{spec}" ? spec_file_ : a == "{dir}" ? spec_.run_dir : a);
    p.log_path = logs_ + "/" + p.name + ".log";
    return;
  }
  const auto* h = spec_.host(host);
  p.host = host;
  p.argv = {(h->bin_dir.empty() ? bin_ : h->bin_dir) + "/" + program};
  for (auto& a : args) p.argv.push_back(a == "{spec}" ? "{dir}/spec.yaml" : a);
  p.files = remote_files_;
  p.files["spec.yaml"] = remote_spec_yaml_;
  p.log_path = "(on " + host + ") " + p.name + ".log";
}

orchestrator::ProcessSpec LocalRun::actor_spec(int64_t id, const std::string& host) const {
  orchestrator::ProcessSpec p;
  p.name = "actor-" + std::to_string(id);
  p.role = "actor";
  p.group = 2;
  place(p, !host.empty() ? host : spec_.placement.actors[static_cast<size_t>(id) % spec_.placement.actors.size()],
        {"orchard-actor", "--spec", "{spec}", "--actor-id", std::to_string(id)});
  p.cpus = spec_.actors.cpus;
  p.env = spec_.actors.env;
  return p;
}

// Brings the number of live actors (on `host`, or everywhere when `host` is empty) to `want`:
// new actors are placed on `host` (or round-robin over placement.actors); the newest are
// removed first, flushing their writers as they exit. Recorded as an event.
// Live actors of the run on hosts other than `host`.
int64_t LocalRun::actors_elsewhere(const std::string& host) const {
  int64_t n = 0;
  for (const auto& [name, p] : sched_->processes())
    n += p.spec.role == "actor" && (p.spec.host.empty() ? std::string("local") : p.spec.host) != host &&
         p.state != orchestrator::ProcState::kExited && p.state != orchestrator::ProcState::kStopping;
  return n;
}

// Why `want` actors (on `host`, or in all when empty) would be more than the hosts can run
// (kActorsPerCpu), or "".
std::string LocalRun::actor_limit_problem(const std::string& host, int64_t want) {
  std::map<std::string, int64_t> per_host;  // the actors each host would have
  if (host.empty()) {
    for (const auto& h : spec_.placement.actors) per_host[h] = actors_on(spec_.placement.actors, h, want);
  } else {
    per_host[host] = want;
  }
  for (const auto& [h, n] : per_host)
    if (auto why = too_many_actors(h, n, host_cpus(h, agents_, host_cpus_)); !why.empty()) return why;
  return "";
}

void LocalRun::scale_actors(core::RedisClient& c, const std::string& host, int64_t want) {
  auto on_host = [&](const orchestrator::ProcInfo& p) {
    return host.empty() || (p.spec.host.empty() ? std::string("local") : p.spec.host) == host;
  };
  std::vector<std::string> live;
  for (const auto& [name, p] : sched_->processes())
    if (p.spec.role == "actor" && on_host(p) && p.state != orchestrator::ProcState::kExited &&
        p.state != orchestrator::ProcState::kStopping)
      live.push_back(name);
  const int64_t have = static_cast<int64_t>(live.size());
  const std::string what = host.empty() ? "actors" : "actors@" + host;
  if (want != have) {
    std::cout << "[scale] " << what << ": " << have << " -> " << want << std::endl;
    add_event(c, spec_.name, "scale", what, std::to_string(have) + " -> " + std::to_string(want));
  }
  for (int64_t i = have; i < want; ++i) sched_->add(actor_spec(next_actor_id_++, host));
  std::sort(live.begin(), live.end(),
            [](const std::string& a, const std::string& b) { return std::stoll(a.substr(6)) > std::stoll(b.substr(6)); });
  for (int64_t i = 0; i < have - want; ++i) sched_->remove(live[static_cast<size_t>(i)], "scaled down");
  // What the CLI waits for: the total, and the count on the host asked about.
  c.command({"HSET", run_key(spec_.name), "actors", std::to_string(sched_->count("actor"))});
  if (!host.empty()) c.command({"HSET", run_key(spec_.name), what, std::to_string(want)});
}

// The embedded Redis is the run's: if it dies mid-run (killed, out of memory), it is started
// again on the same port with the same password, and reloads its data (append-only file in
// <run_dir>/redis). Processes reconnect to it as to any Redis that was down.
void LocalRun::keep_embedded_redis_up() {
  if (!redis_) return;
  const std::string how = redis_->reap_if_exited();
  if (!how.empty())
    std::cout << "[redis] the run's redis-server (port " << redis_->port() << ") " << how << "; starting it again"
              << std::endl;
  if (redis_->running()) return;
  try {
    redis_->start();
    redis_restart_reported_ = false;
    redis_back_at_ = steady_seconds();
    std::cout << "[redis] redis-server started again (pid " << redis_->pid() << ")" << std::endl;
    redis_call([&](core::RedisClient& c) {
      add_event(c, spec_.name, "redis", "redis", "embedded redis-server " + (how.empty() ? std::string("was down") : how) +
                                                     "; started again");
    });
  } catch (const Error& e) {
    if (!redis_restart_reported_) std::cout << "[redis] " << e.what() << " (retrying every second)" << std::endl;
    redis_restart_reported_ = true;
  }
}

void LocalRun::control() {
  keep_embedded_redis_up();
  redis_call([&](core::RedisClient& c) {
    auto fields = hgetall(c, run_key(spec_.name));
    if (field(fields, "algorithm").empty()) {
      // The run's entry is gone (a Redis that restarted without its data, or was flushed):
      // written again, so status/stop/scale still find the run.
      std::vector<std::string> hset = {"HSET", run_key(spec_.name), "status", run_status_, "actors",
                                       std::to_string(sched_->count("actor"))};
      hset.insert(hset.end(), run_fields_.begin(), run_fields_.end());
      c.command(hset);
      c.command({"SADD", "orchard:runs", spec_.name});
    } else if (field(fields, "status") != run_status_) {
      c.command({"HSET", run_key(spec_.name), "status", run_status_});  // a write lost in an outage
    }
    if (field(fields, "stop_requested") == "1" && !sched_->stopping()) {
      outcome_ = RunOutcome::kStopped;
      sched_->stop(RunOutcome::kStopped, "orchard stop");
    }
    if (sched_->running()) {
      // desired_actors = N (everywhere) and desired_actors@HOST = N: requests, removed once handled.
      for (const auto& [key, value] : fields) {
        if (key.rfind("desired_actors", 0) != 0) continue;
        c.command({"HDEL", run_key(spec_.name), key});
        const std::string host = key.size() > 15 && key[14] == '@' ? key.substr(15) : "";
        int64_t want = -1;
        try {
          want = std::stoll(value);
        } catch (const std::exception&) {
        }
        const bool known_host = host.empty() || host == "local" || spec_.host(host);
        std::string refused;
        if (want < 0 || want > 100000 || (host.empty() && want < 1)) refused = "not a valid actor count";
        else if (!known_host) refused = "the run has no host '" + host + "'";
        else if (!host.empty() && want == 0 && actors_elsewhere(host) == 0)
          refused = "it would leave the run with no actor (it has none on its other hosts)";
        else refused = actor_limit_problem(host, want);
        if (!refused.empty()) {
          // The CLI waits for this answer (refused_actors[@HOST]) as for the confirmation.
          add_event(c, spec_.name, "error", key, "refused " + value + ": " + refused);
          c.command({"HSET", run_key(spec_.name), "refused_" + key.substr(8), value + ": " + refused});
          std::cout << "[scale] " << key.substr(8) << "=" << value << " refused: " << refused << std::endl;
          continue;
        }
        scale_actors(c, host, want);
      }
    }
    // Mirror process states (restarts and states change without events too).
    for (const auto& [name, p] : sched_->processes())
      c.command({"HSET", proc_key(spec_.name, name), "state", orchestrator::proc_state_name(p.state), "pid",
                 std::to_string(p.pid), "restarts", std::to_string(p.restarts)});
  });
  if (steady_seconds() >= next_progress_) {
    progress();
    next_progress_ = steady_seconds() + 5;
  }
}

void LocalRun::progress() {
  if (!sched_->running()) return;
  redis_call([&](core::RedisClient& c) {
    // Evaluations can come far more often than train reports: look back until both are found.
    auto latest = latest_of(c, metrics_key(spec_.name, "learner"), "kind", {"train", "eval"}, 5000);
    const auto& train = latest[0];
    const auto& eval = latest[1];
    // Env steps from whichever is newer (both count up), the rate from the train report.
    int64_t steps = -1;
    for (const auto* f : {&train, &eval}) {
      try {
        if (!field(*f, "env_steps").empty()) steps = std::max<int64_t>(steps, std::stoll(field(*f, "env_steps")));
      } catch (const std::exception&) {
      }
    }
    if (steps < 0) return;
    double rate = -1;
    try {
      if (!field(train, "env_steps_per_s").empty()) rate = std::stod(field(train, "env_steps_per_s"));
    } catch (const std::exception&) {
    }
    const double elapsed = steady_seconds() - started_;
    std::string line = fmt::format("[progress] {:.0f} s, env steps {}", elapsed, steps);
    if (rate >= 0) line += rate >= 100 ? fmt::format(" ({:.0f}/s)", rate) : fmt::format(" ({:.1f}/s)", rate);
    if (!field(eval, "eval_mean_return").empty()) line += ", mean eval return " + field(eval, "eval_mean_return");
    // ETA to whichever budget runs out first: the env steps left at the current rate, or the
    // wall time left (the learner's clock starts a little after the run's, so this errs early).
    double eta = -1;
    std::string which;
    if (spec_.budget.env_steps > 0 && rate > 0) {
      eta = std::max(0.0, static_cast<double>(spec_.budget.env_steps - steps) / rate);
      which = "env-step";
    }
    if (spec_.budget.wall_time_s > 0) {
      const double left = std::max(0.0, spec_.budget.wall_time_s - opts_.prior_learner_s - elapsed);
      if (eta < 0 || left < eta) {
        eta = left;
        which = "wall-time";
      }
    }
    if (eta >= 0) line += fmt::format(", ETA to the {} budget {:.0f} s", which, eta);
    std::cout << line << std::endl;
  });
}

int LocalRun::run() {
  {
    // The orchestrator's own log lines (warnings on stderr) at the spec's level; its progress
    // and summary are plain stdout lines for the user, not log lines.
    core::LogOptions lo;
    lo.process = "orchard";
    lo.level = spec_.logging.level;
    core::init_logging(lo);
  }
  started_ = steady_seconds();
  bin_ = orchestrator::self_dir();
  const bool made_run_dir = !fs::exists(spec_.run_dir);
  fs::create_directories(spec_.run_dir);
  logs_ = spec_.run_dir + "/logs";
  fs::remove(spec_.run_dir + "/result.json");

  if (spec_.redis_url.empty()) {
    orchestrator::EmbeddedRedisOptions ro;
    ro.data_dir = fs::absolute(spec_.run_dir + "/redis").string();
    // Append-only: a server that dies mid-run comes back with the run's streams and tables
    // (keep_embedded_redis_up). A fresh run starts from an empty one; --resume keeps the history.
    ro.persist = true;
    if (!opts_.resume) {
      std::error_code ec;
      fs::remove_all(ro.data_dir + "/appendonlydir", ec);
      fs::remove(ro.data_dir + "/appendonly.aof", ec);
    }
    fs::create_directories(ro.data_dir);
    if (spec_.multi_host()) {
      // Other hosts reach this Redis: listen on the orchestrator's address too, with a password.
      ro.extra_bind = spec_.orchestrator_address;
      ro.password = core::generate_curve_keypair().public_key.substr(0, 32);
      for (char& ch : ro.password)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = 'x';
    }
    if (opts_.resume && spec_.multi_host()) {
      // Processes still running on other hosts report to the Redis they were given: bring it
      // back on the same port with the same password.
      try {
        auto entry = read_registry(spec_.name);
        ro.port = static_cast<uint16_t>(entry.value("embedded_redis_port", 0));
        ro.password = entry.value("embedded_redis_password", ro.password);
      } catch (const Error&) {
      }
    }
    redis_ = std::make_unique<orchestrator::EmbeddedRedis>(ro);
    spec_.redis_url = spec_.multi_host() ? redis_->url_for(spec_.orchestrator_address) : redis_->url();
  }
  {
    auto ro = core::RedisOptions::from_url(spec_.redis_url);
    ro.connect_timeout_ms = 1000;
    ro.command_timeout_ms = 2000;
    ro.reconnect_attempts = 1;
    try {
      client_ = std::make_unique<core::RedisClient>(ro);
      client_->command({"SADD", "orchard:runs", spec_.name});
      client_->command({"DEL", run_key(spec_.name), procs_key(spec_.name)});
      run_fields_ = {"algorithm", orchestrator::algorithm_name(spec_.algorithm), "env", spec_.env.name, "run_dir",
                     fs::absolute(spec_.run_dir).string(), "orchestrator_pid", std::to_string(::getpid()), "host",
                     "localhost", "budget_env_steps", std::to_string(spec_.budget.env_steps), "started_ms",
                     std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count()),
                     "spec", spec_.resolved_yaml()};
      std::vector<std::string> hset = {"HSET", run_key(spec_.name), "status", run_status_, "actors",
                                       std::to_string(spec_.actors.count)};
      hset.insert(hset.end(), run_fields_.begin(), run_fields_.end());
      client_->command(hset);
    } catch (const Error& e) {
      client_.reset();
      if (redis_) redis_->stop();
      std::error_code ec;
      if (made_run_dir) fs::remove_all(spec_.run_dir, ec);  // nothing of this run was kept
      throw Error("run '" + spec_.name + "': cannot reach Redis at the start: " + e.what());
    }
  }
  fs::create_directories(logs_);
  // Every process reads this file: endpoints, tables and the Redis URL are filled in.
  spec_file_ = spec_.run_dir + "/spec.yaml";
  std::ofstream(spec_file_) << spec_.resolved_yaml();
  auto with_redis = RunSpec::load(spec_file_, {"redis=" + spec_.redis_url});
  std::ofstream(spec_file_, std::ios::trunc) << with_redis.node().dump() << "\n";
  if (spec_.multi_host()) {
    std::vector<std::string> remote = {"run_dir=.", "checkpoint_dir=checkpoints"};
    if (!spec_.curve_keys.empty()) {
      // The key files travel with the spec; on the host they sit next to it.
      remote.push_back("security.curve_keys=.");
      remote.push_back("replay.curve_key_file=server.key");
      for (const char* f : {"server.key", "client.key"})
        remote_files_[f] = read_file(spec_.curve_keys + "/" + f);
    }
    // Paths as the host sees them; not validated here (they name files on the host).
    core::ConfigNode node = core::ConfigNode::load_string(with_redis.node().dump(), "spec.yaml");
    for (const auto& o : remote) node.apply_override(o);
    remote_spec_yaml_ = node.dump() + "\n";
  }
  register_run("starting");
  std::cout << "run " << spec_.name << ": " << orchestrator::algorithm_name(spec_.algorithm) << " on "
            << spec_.env.name << ", " << spec_.replay_shards << " shard(s), " << spec_.learner.count
            << (spec_.learner.count > 1 ? " learner ranks (" + spec_.learner.sync + " all-reduce), " : " learner, ")
            << spec_.actors.count
            << " actor(s) x " << spec_.env.num_envs << " envs; run dir " << fs::absolute(spec_.run_dir).string() << "; redis "
            << shown_url(spec_.redis_url) << std::endl;

  boost::asio::io_context io;
  orchestrator::SchedulerOptions so;
  so.max_restarts = opts_.max_restarts;
  so.run = spec_.name;
  so.run_epoch = opts_.epoch;
  sched_ = std::make_unique<orchestrator::Scheduler>(io, so);
  for (auto& [host, agent] : agents_) sched_->set_agent(host, agent);
  sched_->on_event = [this](const orchestrator::SchedulerEvent& e) { on_event(e); };
  for (int64_t i = 0; i < spec_.replay_shards; ++i) {
    orchestrator::ProcessSpec p;
    p.name = "replay-" + std::to_string(i);
    p.role = "replay";
    p.group = 0;
    const std::string host = spec_.placement.replay[static_cast<size_t>(i) % spec_.placement.replay.size()];
    place(p, host,
          {"orchard-replay", "--config", "{spec}", "--bind", spec_.replay_endpoints[i], "--shard-index",
           std::to_string(i), "--name", p.name, "--checkpoint-dir",
           host == "local" ? spec_.run_dir + "/replay" : std::string("{dir}/replay")});
    p.cpus = spec_.replay_cpus;
    p.env = spec_.replay_env;
    sched_->add(p);
  }
  for (int64_t r = 0; r < spec_.learner.count; ++r) {
    // Several ranks form a gang: they all-reduce in lockstep, so when one fails the others are
    // stopped and all restart together (from rank 0's checkpoint). Rank 0 ends the run; another
    // rank exits 0 only once the ranks agreed to stop, and is then done.
    orchestrator::ProcessSpec p;
    p.name = "learner-" + std::to_string(r);
    p.role = "learner";
    p.group = 1;
    std::vector<std::string> args = {"orchard-learner", "--spec", "{spec}"};
    if (spec_.learner.count > 1) {
      args.insert(args.end(), {"--rank", std::to_string(r), "--sync-address", spec_.learner_address(r)});
      p.gang = "learners";
    }
    place(p, spec_.placement.learners[static_cast<size_t>(r) % spec_.placement.learners.size()], args);
    p.cpus = spec_.learner.cpus;
    p.env = spec_.learner.env;
    p.clean_exit_ends_run = r == 0;
    p.clean_exit_is_done = r > 0;
    sched_->add(p);
  }
  for (int64_t i = 0; i < spec_.actors.count; ++i) sched_->add(actor_spec(next_actor_id_++));
  // A resumed run: processes the agents still run for it are taken over, not started again.
  for (auto& [host, listed] : call_all_agents(agents_, {{"op", "list"}, {"run", spec_.name}})) {
    for (const auto& r : listed["procs"]) {
      const std::string name = r.value("name", "");
      auto it = sched_->processes().find(name);
      if (r.value("running", false) && it != sched_->processes().end() && it->second.spec.host == host)
        sched_->adopt(name, r.value("pid", -1));
    }
  }

  double ready_at = 0;
  sched_->on_ready = [&] {
    ready_at = steady_seconds() - started_;
    std::cout << "all processes ready after " << fmt::format("{:.2f}", ready_at) << " s" << std::endl;
    run_status_ = "running";
    redis_call([&](core::RedisClient& c) { c.command({"HSET", run_key(spec_.name), "status", run_status_}); });
    register_run("running");
  };
  bool done = false;
  sched_->on_done = [&](RunOutcome o, const std::string& why) {
    outcome_ = o;
    reason_ = why;
    done = true;
    io.stop();
  };
  // Heartbeats: a process that has been running for the grace period without a live key is hung.
  sched_->set_liveness_check(
      [this](const orchestrator::ProcInfo& p) {
        if (steady_seconds() - p.started_at < opts_.heartbeat_grace_s) return true;
        // After a Redis outage, processes need a moment to reconnect and beat again.
        if (steady_seconds() - redis_back_at_ < opts_.heartbeat_grace_s) return true;
        bool alive = true;
        try {
          alive = client_->command({"EXISTS", heartbeat_key(spec_.name, p.spec.name)}).integer == 1;
        } catch (const Error&) {
          alive = true;  // Redis is down: no evidence against the process
        }
        return alive;
      },
      5.0);

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  std::function<void()> arm_signals = [&] {
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      std::cout << "\n[signal] " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << ": stopping the run" << std::endl;
      outcome_ = RunOutcome::kStopped;
      sched_->stop(RunOutcome::kStopped, "signal");
      arm_signals();
    });
  };
  arm_signals();
  boost::asio::steady_timer control_timer(io);
  std::function<void()> arm_control = [&] {
    control_timer.expires_after(std::chrono::seconds(1));
    control_timer.async_wait([&](const boost::system::error_code& ec) {
      if (ec || done) return;
      control();
      arm_control();
    });
  };
  next_progress_ = steady_seconds() + 5;
  arm_control();
  sched_->start();
  io.run();
  signals.cancel();
  control_timer.cancel();
  // Nothing left behind on the hosts: a remote process the scheduler lost track of is killed.
  for (const auto& left : sched_->sweep_remote())
    std::cout << "[sweep] " << left << " was still running after the run ended; killed" << std::endl;

  nlohmann::json result;
  const std::string result_path = spec_.run_dir + "/result.json";
  if (spec_.placement.learner != "local") {
    // The learner wrote its result on its host: fetch it through the agent.
    try {
      auto r = agents_.at(spec_.placement.learner)->call({{"op", "read_file"}, {"run", spec_.name}, {"path", "result.json"}});
      if (r.value("exists", false)) std::ofstream(result_path, std::ios::trunc) << r.value("data", std::string());
    } catch (const Error& e) {
      std::cout << "[result] " << e.what() << std::endl;
    }
  }
  if (fs::exists(result_path)) {
    try {
      result = nlohmann::json::parse(read_file(result_path));
    } catch (const std::exception&) {
    }
  }
  int code = 0;
  const bool stopped = outcome_ == RunOutcome::kStopped;
  std::cout << "\nrun " << spec_.name << " ";
  if ((outcome_ == RunOutcome::kFinished || stopped) && result.is_object()) {
    const std::string reason = result.value("reason", "unknown");
    const bool reached = reason == "target_return";
    if (stopped) {
      code = 130;
    } else if (spec_.budget.has_target && !reached) {
      code = 3;
    }
    // What ended it: the target, a budget (env_steps, updates, wall_time), or a stop.
    if (stopped)
      std::cout << "stopped" << (reason == "stopped" ? "" : " (" + reason + ")");
    else if (reached)
      std::cout << "finished: target_return";
    else
      std::cout << (code == 3 ? "ended: " : "finished: ") << reason << " budget used up";
    if (result.contains("eval_mean") && result["eval_mean"].is_number())
      std::cout << "; last evaluation mean return " << result["eval_mean"].get<double>() << " (min "
                << result["eval_min"].get<double>() << ")";
    const double secs = steady_seconds() - started_;
    const int64_t steps = result.value("env_steps", int64_t{0});
    // The learner's own clock (summed over restarts and resumes) and, apart, this command's
    // time: start-up and the ordered stop (actors flushing, shards checkpointing) around it.
    const double learner_s = result.value("seconds", 0.0);
    std::cout << "\n  " << steps << " env steps, " << result.value("updates", int64_t{0}) << " updates in "
              << fmt::format("{:.1f}", learner_s) << " s of learning ("
              << static_cast<int64_t>(static_cast<double>(steps) / std::max(1e-9, learner_s)) << " env steps/s)"
              << (opts_.resume ? ", since the run began" : "") << "; " << fmt::format("{:.1f}", secs) << " s in all"
              << (opts_.resume ? " this time" : "") << ", "
              << (ready_at > 0 ? "processes ready after " + fmt::format("{:.2f}", ready_at) + " s"
                               : std::string("ended before every process was ready"))
              << "\n  checkpoint " << result.value("checkpoint", std::string("none")) << "\n  logs "
              << fs::absolute(logs_).string() << std::endl;
    if (spec_.budget.has_target && !reached)
      std::cout << "  target return " << spec_.budget.target_return << " not reached" << std::endl;
  } else if (stopped) {
    std::cout << "stopped before the learner reported a result" << std::endl;
    code = 130;
  } else {
    std::cout << "failed: " << reason_;
    for (const auto& [name, p] : sched_->processes()) {
      if (reason_.rfind(name + " ", 0) == 0)
        std::cout << "\n  " << p.spec.log_path << " ends:\n" << tail(read_file(p.spec.log_path), 1500);
    }
    std::cout << std::endl;
    code = 1;
  }
  const std::string status = code == 0 ? "finished" : stopped ? "stopped" : code == 3 ? "budget_exhausted" : "failed";
  redis_call([&](core::RedisClient& c) {
    c.command({"HSET", run_key(spec_.name), "status", status, "exit_code", std::to_string(code), "reason",
               result.is_object() ? result.value("reason", reason_) : reason_});
  });
  register_run(status, {{"exit_code", code},
                        {"reason", result.is_object() ? result.value("reason", reason_) : reason_},
                        {"ended_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count()}});
  sched_.reset();
  client_.reset();
  if (redis_) redis_->stop();
  return code;
}

// `--resume` of a run that used a Redis of the user's (not an embedded one): keep reporting
// there unless --redis names another.
void keep_external_redis(const nlohmann::json& entry, std::string& redis) {
  if (redis.empty() && !entry.contains("embedded_redis_port")) redis = entry.value("redis", std::string());
}

}  // namespace

void add_run(CLI::App& app, int* exit_code) {
  struct Args {
    std::string spec;
    std::vector<std::string> sets;
    std::string redis;
    bool resume = false, quiet = false;
    std::string resume_run;                  // --resume RUN
    std::vector<CLI::Option*> resume_opts;   // one per subcommand (run, up)
    std::vector<CLI::Option*> redis_opts;    // likewise, for --redis
    int max_restarts = 5;
    double prior_learner_s = 0;              // set by prepare() for --resume
  };
  auto args = std::make_shared<Args>();
  auto common = [args](CLI::App* cmd) {
    cmd->add_option("spec", args->spec, "Run spec (YAML); with --resume also the name of a run on this machine");
    cmd->add_option("--set", args->sets, "Override a spec key: key.path=value (repeatable)");
    args->redis_opts.push_back(
        cmd->add_option("--redis", args->redis, "Redis URL (default: the spec's, else an embedded redis-server)"));
    args->resume_opts.push_back(
        cmd->add_option("--resume", args->resume_run,
                        "Continue the run from its checkpoints; --resume RUN continues run RUN with this spec "
                        "(e.g. a larger budget)")
            ->expected(0, 1));
    cmd->add_flag("-q,--quiet", args->quiet, "Fewer lines: no per-process ready lines");
    cmd->add_option("--max-restarts", args->max_restarts, "Restarts allowed per process before the run fails")
        ->check(CLI::Range(0, 1000));
  };
  auto agents = std::make_shared<Agents>();
  auto prepare = [args, agents]() {
    for (auto* o : args->resume_opts) args->resume = args->resume || o->count() > 0;
    for (auto* o : args->redis_opts)
      if (o->count() > 0 && args->redis.empty())
        throw ConfigError("--redis: the URL is empty (leave --redis out for the spec's Redis or an embedded one)");
    if (args->spec.empty()) {
      // `orchard run --resume NAME`: CLI11 gave the name to --resume.
      if (args->resume_run.empty()) throw ConfigError("run: a run spec is required (or --resume NAME)");
      args->spec = args->resume_run;
      args->resume_run.clear();
    }
    if (!args->resume_run.empty()) {
      // `orchard run SPEC --resume RUN`: this spec, continuing RUN (its name, and its run
      // directory when this machine knows the run).
      if (!fs::exists(args->spec)) throw ConfigError("run spec '" + args->spec + "' does not exist");
      args->sets.push_back("name=" + args->resume_run);
      try {
        const auto entry = read_registry(args->resume_run);
        const std::string dir = entry.value("run_dir", std::string());
        if (!dir.empty()) args->sets.push_back("run_dir=" + dir);
        keep_external_redis(entry, args->redis);
      } catch (const Error&) {
        // Not registered here: the spec's run_dir for that name (the checkpoint check below says
        // when there is nothing to resume).
      }
      args->resume_run.clear();
    }
    // `orchard run NAME --resume` names a run, even when a directory of that name is here (the
    // default run directory is runs/<name>).
    const bool named_run = args->resume && !fs::is_regular_file(args->spec) && fs::exists(registry_path(args->spec));
    if (!fs::exists(args->spec) || named_run) {
      if (!args->resume) throw ConfigError("run spec '" + args->spec + "' does not exist");
      // `orchard run NAME --resume`: the spec and overrides the run was started with, and its
      // directories where they were (relative ones were relative to where it was started).
      auto entry = read_registry(args->spec);
      keep_external_redis(entry, args->redis);
      std::vector<std::string> earlier = entry.value("sets", std::vector<std::string>{});
      for (const char* dir : {"run_dir", "checkpoint_dir"})
        if (entry.contains(dir) && entry[dir].is_string()) {
          std::string quoted;  // a YAML single-quoted scalar: any path, taken as text
          for (char ch : entry[dir].get<std::string>()) quoted += ch == '\'' ? std::string("''") : std::string(1, ch);
          earlier.push_back(std::string(dir) + "='" + quoted + "'");
        }
      args->sets.insert(args->sets.begin(), earlier.begin(), earlier.end());
      args->spec = entry.value("spec_path", std::string());
      if (args->spec.empty() || !fs::exists(args->spec))
        throw Error("run '" + entry.value("name", std::string()) + "': its spec '" + args->spec + "' is gone");
    }
    args->spec = fs::absolute(args->spec).string();
    std::vector<std::string> sets = args->sets;
    if (!args->redis.empty()) sets.push_back("redis=" + args->redis);
    RunSpec spec = [&] {
      try {
        return RunSpec::load(args->spec, sets);
      } catch (const EnvError& e) {
        throw ConfigError(e.what());  // the spec's env (unknown, bad options, a plugin that will not load)
      }
    }();
    // One orchestrator per run: a second would share its directory, checkpoint and registry entry.
    if (fs::exists(registry_path(spec.name))) {
      const auto entry = read_registry(spec.name);
      const int pid = entry.value("pid", 0);
      const std::string st = entry.value("status", "");
      std::ifstream cmdline("/proc/" + std::to_string(pid) + "/cmdline");
      std::string argv0;
      std::getline(cmdline, argv0, '\0');
      if ((st == "starting" || st == "running") && pid > 0 && pid != ::getpid() && process_alive(pid) &&
          fs::path(argv0).filename() == "orchard")
        throw Error("run '" + spec.name + "' is already running (orchestrator pid " + std::to_string(pid) +
                    "); `orchard stop " + spec.name + "` first, or give this one another name (--set name=...)");
    }
    *agents = connect_agents(spec);
    const std::string previous = spec.run_dir + "/spec.yaml";
    if (args->resume && spec.multi_host() && fs::exists(previous)) {
      // Processes still running on other hosts listen and connect where they did: keep the
      // endpoints of the run being resumed.
      RunSpec before = RunSpec::load(previous);
      if (!before.replay_endpoints.empty() && static_cast<int64_t>(before.replay_endpoints.size()) == spec.replay_shards)
        spec.set_endpoints(before.replay_endpoints, before.weights_endpoint, before.learner_sync_endpoint);
    }
    assign_endpoints(spec, *agents);
    spec.resolve();
    check_resources(spec, *agents);
    std::string ckpt = spec.checkpoint_dir + "/learner.pt";
    bool has_ckpt = fs::exists(ckpt);
    if (spec.placement.learner != "local") {
      ckpt = "checkpoints/learner.pt on host " + spec.placement.learner;
      has_ckpt = agents->at(spec.placement.learner)
                     ->call({{"op", "read_file"}, {"run", spec.name}, {"path", "checkpoints/learner.json"}})
                     .value("exists", false);
    }
    if (!args->resume && has_ckpt)
      throw ConfigError("run '" + spec.name + "' already has a checkpoint (" + ckpt + "); use --resume to continue it, or "
                  "another name (--set name=...) or run_dir to start afresh");
    if (args->resume && !has_ckpt) throw Error("--resume: run '" + spec.name + "' has no checkpoint at " + ckpt);
    if (args->resume) {
      // The checkpoint is checked as the learner would check it, so a damaged or foreign one is
      // refused now rather than by a learner failing until its restarts run out.
      const bool local = spec.placement.learner == "local";
      const std::string meta_path = local ? spec.checkpoint_dir + "/learner.json"
                                          : "checkpoints/learner.json on host " + spec.placement.learner;
      std::string meta_text;
      if (local) {
        if (!fs::exists(spec.checkpoint_dir + "/learner.json"))
          throw Error("--resume: checkpoint '" + ckpt + "' has no metadata file '" + meta_path +
                      "'; refusing to resume from it (move it away to start afresh)");
        meta_text = read_file(spec.checkpoint_dir + "/learner.json");
      } else {
        meta_text = agents->at(spec.placement.learner)
                        ->call({{"op", "read_file"}, {"run", spec.name}, {"path", "checkpoints/learner.json"}})
                        .value("data", std::string("{}"));
      }
      nlohmann::json meta;
      try {
        meta = nlohmann::json::parse(meta_text);
        if (!meta.is_object()) throw Error("not a JSON object");
      } catch (const std::exception& e) {
        throw Error("--resume: checkpoint metadata '" + meta_path + "' is unreadable: " + e.what());
      }
      const std::string m_run = meta.value("run", ""), m_algo = meta.value("algorithm", ""),
                        m_env = meta.value("env", ""), m_model = meta.value("model", "");
      const std::string algo = orchestrator::algorithm_name(spec.algorithm);
      if (m_run != spec.name || m_algo != algo || m_env != spec.env.name || m_model != spec.model_description())
        throw ConfigError("--resume: checkpoint '" + ckpt + "' belongs to run '" + m_run + "' (" + m_algo + " on " +
                          m_env + ", " + m_model + "), not to this run '" + spec.name + "' (" + algo + " on " +
                          spec.env.name + ", " + spec.model_description() + "); refusing to resume from it");
      if (local)
        if (auto why = torch_archive_problem(ckpt); !why.empty())
          throw Error("--resume: checkpoint '" + ckpt + "' is damaged: " + why +
                      "; move it away to start afresh, or restore it");
      // A budget the checkpoint has already used up would end the run as soon as it started.
      int64_t steps = 0, updates = 0;
      double secs = 0;
      try {
        steps = meta.value("env_steps", int64_t{0});
        updates = meta.value("updates", int64_t{0});
        secs = meta.value("seconds", 0.0);
      } catch (const std::exception&) {
        throw Error("--resume: checkpoint metadata '" + meta_path +
                    "': env_steps, updates and seconds must be numbers; refusing to resume from it");
      }
      args->prior_learner_s = secs;
      auto used_up = [&](const std::string& what, const std::string& have, const std::string& budget) {
        throw ConfigError("--resume: run '" + spec.name + "' already has " + have + " (its checkpoint), which uses up " +
                          what + " = " + budget + "; raise it to continue (--set " + what + "=...)");
      };
      if (spec.budget.env_steps > 0 && steps >= spec.budget.env_steps)
        used_up("budget.env_steps", std::to_string(steps) + " env steps", std::to_string(spec.budget.env_steps));
      if (spec.budget.updates > 0 && updates >= spec.budget.updates)
        used_up("budget.updates", std::to_string(updates) + " updates", std::to_string(spec.budget.updates));
      if (spec.budget.wall_time_s > 0 && secs >= spec.budget.wall_time_s)
        used_up("budget.wall_time_s", fmt::format("{:.0f} s of learning", secs), fmt::format("{:g}", spec.budget.wall_time_s));
    }
    // Port clashes are found now, not as a shard that cannot bind later; named by their key
    // (or the --set that gave it) when the spec gave the endpoint, by role when it was picked.
    std::vector<std::pair<std::string, std::string>> endpoints;  // (endpoint, where)
    const core::ConfigNode ep_node = spec.node()["endpoints"];
    auto where = [&](const char* key, int64_t i) {
      core::ConfigNode n = ep_node[key];
      if (i >= 0) {
        const auto items = n.elements();
        if (static_cast<size_t>(i) < items.size()) return items[static_cast<size_t>(i)].where();
        return std::string("endpoints.") + key + "[" + std::to_string(i) + "] (picked)";
      }
      return n.defined() ? n.where() : std::string("endpoints.") + key + " (picked)";
    };
    for (size_t i = 0; i < spec.replay_endpoints.size(); ++i)
      endpoints.emplace_back(spec.replay_endpoints[i], where("replay", static_cast<int64_t>(i)));
    endpoints.emplace_back(spec.weights_endpoint, where("weights", -1));
    if (!spec.learner_sync_endpoint.empty()) endpoints.emplace_back(spec.learner_sync_endpoint, where("learner_sync", -1));
    std::map<std::string, std::string> seen;
    for (const auto& [ep, at] : spec.multi_host() ? decltype(endpoints){} : endpoints) {
      if (!seen.emplace(ep, at).second)
        throw ConfigError(at + ": endpoint " + ep + " is used twice (also " + seen[ep] + ")");
      std::string host;
      uint16_t port = 0;
      if (!core::parse_tcp_endpoint(ep, &host, &port)) continue;
      // Probed by binding, not connecting: a connection would disturb whatever listens there.
      const std::string problem = core::tcp_bind_problem(host, port);
      if (!problem.empty())
        throw ConfigError(at + ": endpoint " + ep + ": " + problem + " (leave endpoints out to have free ports picked)");
    }
    return spec;
  };

  auto* run = app.add_subcommand("run", "Run a training job on this machine from a run spec (docs/run-spec.md)");
  common(run);
  run->callback([args, exit_code, prepare, agents] {
    RunSpec spec = prepare();
    // Each incarnation of the run has its own epoch on the agents: a start or end_run left over
    // from an earlier orchestrator of this run is refused there (docs/orchestrator.md).
    std::random_device rd;
    char epoch_hex[17];
    std::snprintf(epoch_hex, sizeof epoch_hex, "%08x%08x", rd(), rd());
    const std::string epoch = epoch_hex;
    if (!args->resume) fs::remove_all(spec.run_dir + "/replay");  // no stale replay checkpoints
    if (!agents->empty())
      call_all_agents(*agents, {{"op", args->resume ? "open_run" : "reset_run"}, {"run", spec.name}, {"epoch", epoch}});
    RunOptions ro;
    ro.epoch = epoch;
    ro.quiet = args->quiet;
    ro.max_restarts = args->max_restarts;
    ro.spec_path = args->spec;
    ro.resume = args->resume;
    ro.sets = args->sets;
    ro.prior_learner_s = args->prior_learner_s;
    LocalRun r(std::move(spec), ro, *agents);
    *exit_code = r.run();
  });

  auto* up = app.add_subcommand("up", "Start a run in the background (like run, detached); prints its name");
  common(up);
  up->callback([args, exit_code, prepare] {
    RunSpec spec = prepare();  // every spec error is reported here, before anything starts
    fs::create_directories(spec.run_dir);
    const std::string log = spec.run_dir + "/orchard.log";
    std::vector<std::string> argv = {orchestrator::self_dir() + "/orchard", "run", args->spec, "-q", "--max-restarts",
                                     std::to_string(args->max_restarts)};
    for (const auto& s : args->sets) argv.insert(argv.end(), {"--set", s});
    if (!args->redis.empty()) argv.insert(argv.end(), {"--redis", args->redis});
    if (args->resume) argv.push_back("--resume");
    // A new session, no parent-death signal: the run outlives this command and the terminal.
    orchestrator::SpawnOptions so;
    so.parent_death_signal = 0;
    so.new_process_group = true;
    so.stdout_path = log;
    so.stderr_path = log;
    fs::remove(registry_path(spec.name));
    const pid_t pid = orchestrator::spawn_process(argv, so);
    // Wait until the run is up (registry says running) or the orchestrator gave up. Ctrl-C
    // meanwhile stops the run it started (in order), rather than leaving it half up.
    core::Shutdown::install();
    for (int i = 0; i < 1200; ++i) {
      if (core::Shutdown::requested()) {
        ::kill(pid, SIGTERM);
        int status = 0;
        for (int k = 0; k < 1200 && ::waitpid(pid, &status, WNOHANG) != pid; ++k)
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        std::cerr << "orchard up: interrupted; run " << spec.name << " was stopped (" << log << ")\n";
        *exit_code = 130;
        return;
      }
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        std::cerr << "orchard up: the run exited during start-up; " << log << " ends:\n"
                  << tail(read_file(log), 2000) << "\n";
        *exit_code = 1;
        return;
      }
      try {
        if (read_registry(spec.name).value("status", "") == "running") {
          std::cout << "run " << spec.name << " is up (orchestrator pid " << pid << ", log " << log << ")\n"
                    << "  orchard status " << spec.name << " | orchard top " << spec.name << " | orchard logs "
                    << spec.name << " -f | orchard scale " << spec.name << " actors=N | orchard stop " << spec.name
                    << "\n";
          return;
        }
      } catch (const Error&) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::cerr << "orchard up: the run did not come up within 120 s; see " << log << "\n";
    *exit_code = 1;
  });
}

}  // namespace orchard::cli
