// `orchard status|stop|scale|logs|top`: inspect and steer running runs through Redis (the run
// registry in $ORCHARD_HOME/runs says where each run's Redis is; --redis overrides).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <regex>
#include <sstream>
#include <thread>

#include "cli.h"
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
  auto replay = latest_per(c, metrics_key(run, "replay"), "shard", 50);
  for (const auto& f : replay)
    out << "replay    " << field(f, "shard") << " table " << field(f, "table") << " size " << fmt_num(field(f, "size"), 0)
        << "\n";

  out << "\n" << std::left << std::setw(12) << "PROCESS" << std::setw(10) << "STATE" << std::setw(9) << "PID"
      << std::setw(9) << "RESTARTS" << std::setw(11) << "HEARTBEAT" << std::setw(12) << "STEPS/S" << "RETURN\n";
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
    std::string sps = "-", ret = "-";
    if (name.rfind("actor-", 0) == 0) {
      for (const auto& a : actors)
        if ("actor-" + field(a, "actor") == name) {
          sps = fmt_num(field(a, "env_steps_per_s"), 0);
          ret = fmt_num(field(a, "mean_return"), 1);
        }
    }
    out << std::left << std::setw(12) << name << std::setw(10) << field(p, "state", "?") << std::setw(9)
        << field(p, "pid", "-") << std::setw(9) << field(p, "restarts", "0") << std::setw(11) << hb << std::setw(12)
        << sps << ret << "\n";
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

  auto* scale = app.add_subcommand("scale", "Change the number of actors of a running run: orchard scale RUN actors=N");
  scale->add_option("run", a->run, "Run name")->required();
  scale->add_option("assignment", a->assignment, "actors=N")->required();
  scale->add_option("--redis", a->redis, "Redis URL of the run");
  scale->add_option("--timeout", a->timeout, "Seconds to wait for the orchestrator to apply it");
  scale->callback([a, exit_code] {
    std::smatch m;
    if (!std::regex_match(a->assignment, m, std::regex("actors=([0-9]{1,6})")) || std::stoll(m[1]) < 1)
      throw Error("scale: expected actors=N with N >= 1, got '" + a->assignment + "'");
    const std::string n = m[1];
    auto c = connect_run(a->run, a->redis);
    Fields h = hgetall(*c, run_key(a->run));
    if (h.empty()) throw Error("run '" + a->run + "' is not in this Redis");
    if (!run_active(field(h, "status"))) throw Error("run '" + a->run + "' is " + field(h, "status") + ", not running");
    c->command({"HSET", run_key(a->run), "desired_actors", n});
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(a->timeout);
    while (std::chrono::steady_clock::now() < until) {
      if (field(hgetall(*c, run_key(a->run)), "actors") == n) {
        std::cout << "run " << a->run << ": actors=" << n << "\n";
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
    const std::string logs_dir = dir + "/logs";
    std::vector<std::string> files;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(logs_dir, ec))
      if (e.path().extension() == ".log" && (a->proc.empty() || e.path().stem() == a->proc))
        files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    if (files.empty())
      throw Error("run '" + a->run + "': no log " + (a->proc.empty() ? "files" : "for '" + a->proc + "'") + " in " +
                  logs_dir);
    const bool prefix = files.size() > 1;
    std::vector<size_t> offsets(files.size(), 0);
    for (size_t i = 0; i < files.size(); ++i) {
      std::ifstream in(files[i]);
      std::vector<std::string> lines;
      std::string line;
      while (std::getline(in, line)) lines.push_back(line);
      const std::string name = fs::path(files[i]).stem().string();
      for (size_t k = lines.size() > static_cast<size_t>(a->lines) ? lines.size() - a->lines : 0; k < lines.size(); ++k)
        std::cout << (prefix ? "[" + name + "] " : "") << lines[k] << "\n";
      offsets[i] = static_cast<size_t>(fs::file_size(files[i], ec));
    }
    if (!a->follow) return;
    core::Shutdown::install();
    std::vector<std::string> partial(files.size());
    while (!core::Shutdown::requested()) {
      for (size_t i = 0; i < files.size(); ++i) {
        std::ifstream in(files[i], std::ios::binary);
        in.seekg(static_cast<std::streamoff>(offsets[i]));
        std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        offsets[i] += chunk.size();
        partial[i] += chunk;
        size_t nl;
        const std::string name = fs::path(files[i]).stem().string();
        while ((nl = partial[i].find('\n')) != std::string::npos) {
          std::cout << (prefix ? "[" + name + "] " : "") << partial[i].substr(0, nl) << "\n";
          partial[i].erase(0, nl + 1);
        }
      }
      std::cout << std::flush;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
}

}  // namespace orchard::cli
