// `orchard status|stop|scale|logs|top`: inspect and steer running runs through Redis (the run
// registry in $ORCHARD_HOME/runs says where each run's Redis is; --redis overrides).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <regex>
#include <sstream>
#include <thread>

#include "cli.h"
#include "orchard/core/wire.h"
#include "orchard/orchestrator/agent.h"
#include "orchard/orchestrator/run_spec.h"
#include "orchard/core/error.h"
#include "orchard/core/shutdown.h"
#include "run_registry.h"

namespace fs = std::filesystem;

namespace orchard::cli {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

std::string fmt_num(const std::string& s, int precision = 1) {
  if (s.empty()) return "-";
  try {
    double v = std::stod(s);
    std::ostringstream o;
    if (std::abs(v) >= 1e6) {
      o << std::fixed << std::setprecision(2) << v / 1e6 << "M";
    } else if (std::abs(v) >= 1e4) {
      o << std::fixed << std::setprecision(1) << v / 1e3 << "k";
    } else {
      o << std::fixed << std::setprecision(precision) << v;
    }
    return o.str();
  } catch (const std::exception&) {
    return s;
  }
}

// The status view shared by `status RUN` and `top RUN`.
std::string render_run(core::RedisClient& c, const std::string& run) {
  std::ostringstream out;
  Fields h = hgetall(c, run_key(run));
  if (h.empty()) throw Error("run '" + run + "' is not in this Redis (no key " + run_key(run) + ")");
  out << "run " << run << "  status " << field(h, "status", "?") << "  " << field(h, "algorithm") << " on "
      << field(h, "env") << "  actors " << field(h, "actors") << "\n  run dir " << field(h, "run_dir") << "\n";
  if (!field(h, "reason").empty()) out << "  ended: " << field(h, "reason") << " (exit " << field(h, "exit_code") << ")\n";

  auto learner = latest_per(c, metrics_key(run, "learner"), "kind", 50);
  Fields train, eval;
  for (const auto& f : learner) (field(f, "kind") == "eval" ? eval : train) = f;
  out << "\nlearner   updates " << fmt_num(field(train, "updates"), 0) << " (" << fmt_num(field(train, "updates_per_s"))
      << "/s)  env steps " << fmt_num(field(train, "env_steps", field(eval, "env_steps")), 0) << " ("
      << fmt_num(field(train, "env_steps_per_s"), 0) << "/s)  eval return " << fmt_num(field(eval, "eval_mean_return"), 2)
      << " (min " << fmt_num(field(eval, "eval_min_return"), 2) << ")  weights v" << field(train, "weights_version", "-")
      << "\n";
  // Where the learner's time went since its previous report (time_* fields, shares of wall time).
  std::string split;
  for (const char* phase : {"wait", "prepare", "update", "sync", "publish", "eval", "checkpoint"}) {
    const std::string v = field(train, std::string("time_") + phase);
    if (v.empty()) continue;
    try {
      const double share = std::stod(v);
      if (share >= 0.005) split += std::string(split.empty() ? "" : "  ") + phase + " " + fmt_num(std::to_string(share * 100), 0) + "%";
    } catch (const std::exception&) {
    }
  }
  if (!split.empty()) out << "          time: " << split << "\n";
  auto replay = latest_per(c, metrics_key(run, "replay"), "shard", 50);
  for (const auto& f : replay)
    out << "replay    " << field(f, "shard") << " table " << field(f, "table") << " size " << fmt_num(field(f, "size"), 0)
        << "\n";

  out << "\n" << std::left << std::setw(12) << "PROCESS" << std::setw(10) << "STATE" << std::setw(9) << "PID"
      << std::setw(9) << "RESTARTS" << std::setw(11) << "HEARTBEAT" << std::setw(12) << "STEPS/S" << std::setw(10)
      << "RETURN" << "POLICY LAG\n";
  long long learner_version = -1;
  try {
    learner_version = std::stoll(field(train, "weights_version", "-1"));
  } catch (const std::exception&) {
  }
  auto names = c.command({"SMEMBERS", procs_key(run)});
  std::vector<std::string> procs;
  for (const auto& e : names.elements) procs.push_back(e.str);
  std::sort(procs.begin(), procs.end());
  auto actors = latest_per(c, metrics_key(run, "actor"), "actor", 200);
  for (const auto& name : procs) {
    Fields p = hgetall(c, proc_key(run, name));
    auto ttl = c.command({"TTL", heartbeat_key(run, name)});
    const std::string state = field(p, "state", "?");
    const std::string hb = state == "exited" ? "-" : ttl.integer > 0 ? "ok" : "missing";
    std::string sps = "-", ret = "-", lag = "-";
    if (name.rfind("actor-", 0) == 0) {
      for (const auto& a : actors)
        if ("actor-" + field(a, "actor") == name) {
          sps = fmt_num(field(a, "env_steps_per_s"), 0);
          ret = fmt_num(field(a, "mean_return"), 1);
          // Weight versions the actor is behind the learner (as of their latest reports).
          try {
            if (learner_version >= 0)
              lag = std::to_string(std::max(0LL, learner_version - std::stoll(field(a, "weights_version", "0"))));
          } catch (const std::exception&) {
          }
        }
    }
    out << std::left << std::setw(12) << name << std::setw(10) << field(p, "state", "?") << std::setw(9)
        << field(p, "pid", "-") << std::setw(9) << field(p, "restarts", "0") << std::setw(11) << hb << std::setw(12)
        << sps << std::setw(10) << ret << lag << (field(p, "host", "localhost") != "localhost" ? "  on " + field(p, "host") : "")
        << "\n";
    (void)state;
  }
  auto ev = c.command({"XREVRANGE", events_key(run), "+", "-", "COUNT", "5"});
  if (!ev.elements.empty()) {
    out << "\nrecent events\n";
    for (auto it = ev.elements.rbegin(); it != ev.elements.rend(); ++it) {
      const auto& f = it->elements.size() > 1 ? it->elements[1].elements : std::vector<core::RedisReply>{};
      std::string kind, proc, detail;
      for (size_t i = 0; i + 1 < f.size(); i += 2) {
        if (f[i].str == "kind") kind = f[i + 1].str;
        if (f[i].str == "proc") proc = f[i + 1].str;
        if (f[i].str == "detail") detail = f[i + 1].str;
      }
      out << "  [" << kind << "] " << proc << (detail.empty() ? "" : ": " + detail) << "\n";
    }
  }
  return out.str();
}

bool run_active(const std::string& status) { return status == "starting" || status == "running"; }

}  // namespace

void add_control(CLI::App& app, int* exit_code) {
  struct Args {
    std::string run, redis, proc, assignment;
    bool follow = false, once = false;
    double interval = 1.0, timeout = 120;
    int lines = 40;
  };
  auto a = std::make_shared<Args>();

  auto* status = app.add_subcommand("status", "Runs on this machine, or one run's processes, health and progress");
  status->add_option("run", a->run, "Run name");
  status->add_option("--redis", a->redis, "Redis URL of the run (default: from the run registry)");
  status->callback([a, exit_code] {
    if (a->run.empty()) {
      auto runs = registry_runs();
      if (runs.empty()) {
        std::cout << "no runs registered in " << orchard_home() << "/runs\n";
        return;
      }
      std::cout << std::left << std::setw(24) << "RUN" << std::setw(18) << "STATUS" << std::setw(8) << "ALGO"
                << std::setw(22) << "ENV" << "RUN DIR\n";
      for (const auto& r : runs) {
        auto e = read_registry(r);
        std::string st = e.value("status", "?");
        if (run_active(st) && ::kill(e.value("pid", 0), 0) != 0) st = "dead";  // the orchestrator is gone
        std::cout << std::left << std::setw(24) << r << std::setw(18) << st << std::setw(8) << e.value("algorithm", "")
                  << std::setw(22) << e.value("env", "") << e.value("run_dir", "") << "\n";
      }
      return;
    }
    auto c = connect_run(a->run, a->redis);
    std::cout << render_run(*c, a->run);
  });

  auto* top = app.add_subcommand("top", "A live terminal dashboard of a run, refreshed from Redis (q or Ctrl-C quits)");
  top->add_option("run", a->run, "Run name")->required();
  top->add_option("--redis", a->redis, "Redis URL of the run");
  top->add_option("--interval", a->interval, "Seconds between refreshes")->check(CLI::Range(0.1, 3600.0));
  top->add_flag("--once", a->once, "Print one frame and exit");
  top->callback([a, exit_code] {
    auto c = connect_run(a->run, a->redis);
    core::Shutdown::install();
    for (;;) {
      std::string frame;
      try {
        frame = render_run(*c, a->run);
      } catch (const RedisError& e) {
        frame = "Redis: " + std::string(e.what()) + "\n";
      }
      if (a->once) {
        std::cout << frame;
        return;
      }
      std::cout << "\x1b[H\x1b[2J" << frame << "\n(refreshing every " << a->interval << " s; Ctrl-C quits)"
                << std::flush;
      const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(a->interval);
      while (std::chrono::steady_clock::now() < until) {
        if (core::Shutdown::requested()) {
          std::cout << "\n";
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  });

  auto* stop = app.add_subcommand("stop", "Stop a run: actors, then the learner (final checkpoint), then the shards");
  stop->add_option("run", a->run, "Run name")->required();
  stop->add_option("--redis", a->redis, "Redis URL of the run");
  stop->add_option("--timeout", a->timeout, "Seconds to wait for the run to end")->check(CLI::Range(0.0, 86400.0));
  stop->callback([a, exit_code] {
    auto c = connect_run(a->run, a->redis);
    if (hgetall(*c, run_key(a->run)).empty()) throw Error("run '" + a->run + "' is not in this Redis");
    c->command({"HSET", run_key(a->run), "stop_requested", "1"});
    std::cout << "stop requested for " << a->run << std::flush;
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(a->timeout);
    int pid = 0;
    try {
      pid = read_registry(a->run).value("pid", 0);
    } catch (const Error&) {
    }
    while (std::chrono::steady_clock::now() < until) {
      std::string st;
      try {
        st = field(hgetall(*c, run_key(a->run)), "status");
      } catch (const Error&) {
        st = "";  // its embedded Redis went away with it
      }
      const bool gone = pid > 0 && ::kill(pid, 0) != 0;
      if ((!st.empty() && !run_active(st)) || gone) {
        std::cout << "\nrun " << a->run << " " << (st.empty() ? "ended" : st) << "\n";
        return;
      }
      std::cout << "." << std::flush;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    std::cout << "\n";
    throw Error("run '" + a->run + "' did not stop within " + std::to_string(static_cast<int>(a->timeout)) + " s");
  });

  auto* scale = app.add_subcommand("scale", "Change the number of actors of a running run: orchard scale RUN actors=N, "
                                            "or on one host: actors@HOST=N");
  scale->add_option("run", a->run, "Run name")->required();
  scale->add_option("assignment", a->assignment, "actors=N or actors@HOST=N (HOST: local or a host of the spec)")
      ->required();
  scale->add_option("--redis", a->redis, "Redis URL of the run");
  scale->add_option("--timeout", a->timeout, "Seconds to wait for the orchestrator to apply it");
  scale->callback([a, exit_code] {
    std::smatch m;
    if (!std::regex_match(a->assignment, m, std::regex("actors(@[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?=([0-9]{1,6})")) ||
        (!m[1].matched && std::stoll(m[2]) < 1))
      throw Error("scale: expected actors=N (N >= 1) or actors@HOST=N, got '" + a->assignment + "'");
    const std::string host = m[1].matched ? std::string(m[1]).substr(1) : "";
    const std::string n = m[2];
    const std::string confirm = host.empty() ? "actors" : "actors@" + host;
    auto c = connect_run(a->run, a->redis);
    Fields h = hgetall(*c, run_key(a->run));
    if (h.empty()) throw Error("run '" + a->run + "' is not in this Redis");
    if (!run_active(field(h, "status"))) throw Error("run '" + a->run + "' is " + field(h, "status") + ", not running");
    if (!host.empty() && host != "local") {
      // The host must be one of the run's (its resolved spec lists them).
      auto spec = orchestrator::RunSpec::load(field(h, "run_dir") + "/spec.yaml");
      if (!spec.host(host)) throw Error("scale: run '" + a->run + "' has no host '" + host + "'");
    }
    if (!host.empty()) c->command({"HDEL", run_key(a->run), confirm});  // wait for a fresh confirmation
    c->command({"HSET", run_key(a->run), "desired_" + confirm, n});
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(a->timeout);
    while (std::chrono::steady_clock::now() < until) {
      if (field(hgetall(*c, run_key(a->run)), confirm) == n) {
        std::cout << "run " << a->run << ": " << confirm << "=" << n << "\n";
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    throw Error("run '" + a->run + "': the orchestrator did not apply actors=" + n + " within " +
                std::to_string(static_cast<int>(a->timeout)) + " s");
  });

  auto* logs = app.add_subcommand("logs", "Show a run's process logs (all, or one process); -f follows them");
  logs->add_option("run", a->run, "Run name")->required();
  logs->add_option("proc", a->proc, "Process: replay-0, learner-0, actor-1, ... (default: all)");
  logs->add_flag("-f,--follow", a->follow, "Keep printing new lines (Ctrl-C quits)");
  logs->add_option("-n,--lines", a->lines, "Lines from the end of each log to start with");
  logs->callback([a, exit_code] {
    std::string dir;
    try {
      dir = read_registry(a->run).value("run_dir", "");
    } catch (const Error&) {
      if (a->redis.empty()) throw;
      auto c = connect_run(a->run, a->redis);
      dir = field(hgetall(*c, run_key(a->run)), "run_dir");
    }
    // A log source: a local file, or a process log kept by an agent (multi-host runs).
    struct Source {
      std::string name;
      std::function<std::string(int64_t*)> read;  // new bytes from *offset on; advances it
    };
    std::vector<Source> sources;
    const std::string logs_dir = dir + "/logs";
    std::error_code ec;
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(logs_dir, ec))
      if (e.path().extension() == ".log" && (a->proc.empty() || e.path().stem() == a->proc))
        files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      sources.push_back({fs::path(f).stem().string(), [f](int64_t* offset) {
                           std::ifstream in(f, std::ios::binary);
                           in.seekg(0, std::ios::end);
                           const int64_t size = static_cast<int64_t>(in.tellg());
                           if (*offset < 0) *offset = std::max<int64_t>(0, size + *offset);
                           in.seekg(*offset);
                           std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
                           *offset += static_cast<int64_t>(chunk.size());
                           return chunk;
                         }});
    }
    // Processes on other hosts: ask their agents (hosts and tokens from the run's spec).
    const std::string spec_path = dir + "/spec.yaml";
    if (fs::exists(spec_path)) {
      auto spec = orchestrator::RunSpec::load(spec_path);
      for (const auto& h : spec.hosts) {
        std::string key;
        if (!h.server_key_file.empty()) key = core::load_curve_keys(h.server_key_file, false).public_key;
        auto agent = std::make_shared<orchestrator::AgentClient>(h.name, h.agent, read_token_file(h.token_file), key, 3000);
        nlohmann::json listed;
        try {
          listed = agent->call({{"op", "list"}, {"run", a->run}});
        } catch (const Error& e) {
          std::cerr << "orchard logs: " << e.what() << "\n";
          continue;
        }
        for (const auto& p : listed["procs"]) {
          const std::string name = p.value("name", "");
          if (!a->proc.empty() && name != a->proc) continue;
          const std::string run = a->run;
          sources.push_back({name + "@" + h.name, [agent, run, name](int64_t* offset) {
                               auto r = agent->call({{"op", "logs"}, {"run", run}, {"name", name}, {"offset", *offset}});
                               *offset = r.value("offset", *offset);
                               return r.value("data", std::string());
                             }});
        }
      }
    }
    if (sources.empty())
      throw Error("run '" + a->run + "': no log " + (a->proc.empty() ? "files" : "for '" + a->proc + "'") + " in " +
                  logs_dir + " or on the run's hosts");
    const bool prefix = sources.size() > 1;
    std::vector<int64_t> offsets(sources.size());
    std::vector<std::string> partial(sources.size());
    for (size_t i = 0; i < sources.size(); ++i) {
      int64_t off = -(int64_t{1} << 20);  // the tail: at most the last MiB
      std::istringstream in(sources[i].read(&off));
      offsets[i] = off;
      std::vector<std::string> lines;
      for (std::string line; std::getline(in, line);) lines.push_back(line);
      for (size_t k = lines.size() > static_cast<size_t>(a->lines) ? lines.size() - a->lines : 0; k < lines.size(); ++k)
        std::cout << (prefix ? "[" + sources[i].name + "] " : "") << lines[k] << "\n";
    }
    if (!a->follow) return;
    core::Shutdown::install();
    while (!core::Shutdown::requested()) {
      for (size_t i = 0; i < sources.size(); ++i) {
        try {
          partial[i] += sources[i].read(&offsets[i]);
        } catch (const Error&) {
          continue;  // an agent that does not answer now may answer later
        }
        size_t nl;
        while ((nl = partial[i].find('\n')) != std::string::npos) {
          std::cout << (prefix ? "[" + sources[i].name + "] " : "") << partial[i].substr(0, nl) << "\n";
          partial[i].erase(0, nl + 1);
        }
      }
      std::cout << std::flush;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
}

}  // namespace orchard::cli
