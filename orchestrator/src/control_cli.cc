// `orchard status|stop|scale|logs|top`: inspect and steer running runs through Redis (the run
// registry in $ORCHARD_HOME/runs says where each run's Redis is; --redis overrides).
#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cmath>
#include <functional>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
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

// The run's Redis URL: --redis, else the registry's.
std::string run_url(const std::string& run, const std::string& redis_url) {
  if (!redis_url.empty()) return redis_url;
  try {
    return read_registry(run).value("redis", "");
  } catch (const Error&) {
    return "";
  }
}

// Single keys from the terminal for `top`: while it lives, a terminal on stdin is in
// non-canonical, no-echo mode (Ctrl-C still signals), restored when it goes. Does nothing when
// stdin is not a terminal.
class KeyReader {
 public:
  KeyReader() {
    if (!::isatty(STDIN_FILENO) || ::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~KeyReader() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  KeyReader(const KeyReader&) = delete;
  KeyReader& operator=(const KeyReader&) = delete;
  bool active() const { return active_; }
  // Whether one of `keys` was typed since the last call (other keys are discarded).
  bool pressed(const char* keys) {
    if (!active_) return false;
    pollfd p{STDIN_FILENO, POLLIN, 0};
    while (::poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) {
      char ch = 0;
      if (::read(STDIN_FILENO, &ch, 1) != 1) return false;
      if (ch && std::strchr(keys, ch)) return true;
    }
    return false;
  }

 private:
  termios saved_{};
  bool active_ = false;
};

double to_double(const std::string& s, double def) {
  try {
    return s.empty() ? def : std::stod(s);
  } catch (const std::exception&) {
    return def;
  }
}

// The learner's weights version at wall-clock time `ts_ms`, from its newest train entries (newest
// first): interpolated between the two entries around it, or carried on from the newest at the
// rate of the newest two. -1 when there is none. Actors and the learner report at different
// moments, so comparing their latest versions directly would count the updates made in between
// as lag.
double learner_version_at(const std::vector<Fields>& train_newest_first, double ts_ms) {
  std::vector<std::pair<double, double>> pts;  // (ts_ms, version), newest first
  for (const auto& f : train_newest_first) {
    const double t = to_double(field(f, "ts_ms"), -1), v = to_double(field(f, "weights_version"), -1);
    if (t >= 0 && v >= 0) pts.emplace_back(t, v);
  }
  if (pts.empty()) return -1;
  if (ts_ms >= pts[0].first) {
    if (pts.size() < 2 || pts[0].first <= pts[1].first) return pts[0].second;
    const double rate = (pts[0].second - pts[1].second) / (pts[0].first - pts[1].first);
    return pts[0].second + std::max(0.0, rate) * (ts_ms - pts[0].first);
  }
  for (size_t i = 1; i < pts.size(); ++i) {
    const auto& [t, v] = pts[i];
    const auto& [t2, v2] = pts[i - 1];
    if (t <= ts_ms) return t2 > t ? v + (v2 - v) * (ts_ms - t) / (t2 - t) : v2;
  }
  return -1;  // older than every entry we have: unknown
}

// The status view shared by `status RUN` and `top RUN`.
// `gone`: the orchestrator is known to be dead while Redis still says the run is going.
std::string render_run(core::RedisClient& c, const std::string& run, const std::string& url, bool gone) {
  std::ostringstream out;
  Fields h = hgetall(c, run_key(run));
  if (h.empty()) throw Error("run '" + run + "' is not in this Redis (no key " + run_key(run) + ")");
  const std::string status =
      gone ? "dead (its orchestrator, pid " + field(h, "orchestrator_pid") + ", is gone; states below are its last)"
           : field(h, "status", "?");
  out << "run " << run << "  status " << status << "  " << field(h, "algorithm") << " on "
      << field(h, "env") << "  actors " << field(h, "actors") << "\n  run dir " << field(h, "run_dir")
      << "\n  redis " << shown_url(url) << "\n";
  if (!field(h, "reason").empty()) out << "  ended: " << field(h, "reason") << " (exit " << field(h, "exit_code") << ")\n";

  // Evaluations can be far more frequent than train reports: look back until both are found.
  auto learner = latest_of(c, metrics_key(run, "learner"), "kind", {"train", "eval"}, 5000);
  std::vector<Fields> trains = recent_entries(c, metrics_key(run, "learner"), "kind", "train", 3, 5000);
  Fields train = learner[0], eval = learner[1];
  const std::string steps = to_double(field(eval, "env_steps"), -1) > to_double(field(train, "env_steps"), -1)
                                ? field(eval, "env_steps")
                                : field(train, "env_steps");
  out << "\nlearner   updates " << fmt_num(field(train, "updates"), 0) << " (" << fmt_num(field(train, "updates_per_s"))
      << "/s)  env steps " << fmt_num(steps, 0) << " ("
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
  auto names = c.command({"SMEMBERS", procs_key(run)});
  std::vector<std::string> procs;
  for (const auto& e : names.elements) procs.push_back(e.str);
  // By role, then by number: actor-2 before actor-10.
  auto by_number = [](const std::string& a, const std::string& b) {
    const size_t da = a.find_last_not_of("0123456789") + 1, db = b.find_last_not_of("0123456789") + 1;
    if (a.compare(0, da, b, 0, db) != 0 || da == a.size() || db == b.size()) return a < b;
    return std::stoull(a.substr(da)) < std::stoull(b.substr(db));
  };
  std::sort(procs.begin(), procs.end(), by_number);
  auto actors = latest_per(c, metrics_key(run, "actor"), "actor", 200);
  for (const auto& name : procs) {
    Fields p = hgetall(c, proc_key(run, name));
    auto ttl = c.command({"TTL", heartbeat_key(run, name)});
    const std::string state = field(p, "state", "?");
    const bool live = state == "running" || state == "starting" || state == "stopping";
    const std::string hb = !live ? "-" : ttl.integer > 0 ? "ok" : "missing";
    std::string pid = field(p, "pid", "-");
    if (!live || to_double(pid, -1) <= 0) pid = "-";
    std::string sps = "-", ret = "-", lag = "-";
    if (name.rfind("actor-", 0) == 0 && state == "running") {  // an exited actor's last figures are not current
      for (const auto& a : actors)
        if ("actor-" + field(a, "actor") == name) {
          sps = fmt_num(field(a, "env_steps_per_s"), 0);
          ret = fmt_num(field(a, "mean_return"), 1);
          // Weight versions the actor's policy is behind the learner's at the actor's report.
          const double lv = learner_version_at(trains, to_double(field(a, "ts_ms"), 0));
          const double av = to_double(field(a, "weights_version"), -1);
          if (lv >= 0 && av >= 0) lag = std::to_string(static_cast<long long>(std::max(0.0, std::round(lv - av))));
        }
    }
    out << std::left << std::setw(12) << name << std::setw(10) << state << std::setw(9) << pid << std::setw(9)
        << field(p, "restarts", "0") << std::setw(11) << hb << std::setw(12) << sps << std::setw(10) << ret << lag
        << (field(p, "host", "localhost") != "localhost" ? "  on " + field(p, "host") : "") << "\n";
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

// Whether the run's orchestrator, as its registry entry on this machine names it, is gone
// although the entry still says the run is starting or running (killed, or its machine
// rebooted). False when the entry is missing.
bool orchestrator_gone(const std::string& run) {
  try {
    auto e = read_registry(run);
    const int pid = e.value("pid", 0);
    return run_active(e.value("status", "")) && pid > 0 && !process_alive(pid);
  } catch (const Error&) {
    return false;
  }
}

// A run this machine knows to have ended: its final state from the registry entry and the
// learner's result.json (its embedded Redis stopped with it). Nothing when the run is not known
// here or is still going.
struct EndedRun {
  std::string status;  // finished, stopped, budget_exhausted, failed, or dead
  std::string view;    // what `status RUN` prints
};
std::optional<EndedRun> ended_run(const std::string& run) {
  nlohmann::json e;
  try {
    e = read_registry(run);
  } catch (const Error&) {
    return std::nullopt;
  }
  EndedRun r;
  r.status = e.value("status", "?");
  if (run_active(r.status)) {
    if (!orchestrator_gone(run)) return std::nullopt;
    r.status = "dead";
  }
  std::ostringstream out;
  const std::string dir = e.value("run_dir", "");
  out << "run " << run << "  status " << r.status << "  " << e.value("algorithm", "") << " on " << e.value("env", "")
      << "\n  run dir " << dir << "\n";
  if (e.contains("reason"))
    out << "  ended: " << e.value("reason", "") << " (exit " << e.value("exit_code", -1) << ")\n";
  else if (r.status == "dead")
    out << "  its orchestrator (pid " << e.value("pid", 0) << ") is gone without recording an end; `orchard run "
        << run << " --resume` continues it from its checkpoints\n";
  nlohmann::json result;
  try {
    std::ifstream in(dir + "/result.json");
    if (in) result = nlohmann::json::parse(in);
  } catch (const std::exception&) {
  }
  if (result.is_object()) {
    if (result.contains("eval_mean") && result["eval_mean"].is_number())
      out << "  last evaluation mean return " << fmt_num(std::to_string(result["eval_mean"].get<double>()), 2)
          << " (min " << fmt_num(std::to_string(result.value("eval_min", 0.0)), 2) << ")\n";
    out << "  " << result.value("env_steps", int64_t{0}) << " env steps, " << result.value("updates", int64_t{0})
        << " updates; checkpoint " << result.value("checkpoint", std::string("none")) << "\n";
  }
  out << "  (from " << registry_path(run) << (result.is_object() ? " and the learner's result.json" : "")
      << ": its embedded Redis stopped with the run)\n";
  r.view = out.str();
  return r;
}

// The run's Redis; or, when it cannot be reached and the registry shows that the run has ended
// (its embedded Redis stopped with it), nullptr and its ended state in *ended. Otherwise throws
// connect_run's error.
std::unique_ptr<core::RedisClient> connect_or_ended(const std::string& run, const std::string& redis_url,
                                                    std::optional<EndedRun>* ended) {
  try {
    return connect_run(run, redis_url);
  } catch (const Error&) {
    if (redis_url.empty()) *ended = ended_run(run);
    if (!*ended) throw;
    return nullptr;
  }
}

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
        if (orchestrator_gone(r)) st = "dead";
        std::cout << std::left << std::setw(24) << r << std::setw(18) << st << std::setw(8) << e.value("algorithm", "")
                  << std::setw(22) << e.value("env", "") << e.value("run_dir", "") << "\n";
      }
      return;
    }
    std::optional<EndedRun> ended;
    auto c = connect_or_ended(a->run, a->redis, &ended);
    if (!c) {
      std::cout << ended->view;
      return;
    }
    std::cout << render_run(*c, a->run, run_url(a->run, a->redis), orchestrator_gone(a->run));
  });

  auto* top = app.add_subcommand("top", "A live terminal dashboard of a run, refreshed from Redis (q or Ctrl-C quits)");
  top->add_option("run", a->run, "Run name")->required();
  top->add_option("--redis", a->redis, "Redis URL of the run");
  top->add_option("--interval", a->interval, "Seconds between refreshes")->check(CLI::Range(0.1, 3600.0));
  top->add_flag("--once", a->once, "Print one frame and exit");
  top->callback([a, exit_code] {
    std::optional<EndedRun> ended;
    auto c = connect_or_ended(a->run, a->redis, &ended);
    if (!c) {
      std::cout << ended->view;  // nothing left to refresh
      return;
    }
    const std::string url = run_url(a->run, a->redis);
    core::Shutdown::install();
    KeyReader keys;  // q quits (the terminal is put into single-key mode while top runs)
    for (;;) {
      std::string frame;
      try {
        frame = render_run(*c, a->run, url, orchestrator_gone(a->run));
      } catch (const RedisError& e) {
        frame = "Redis: " + std::string(e.what()) + "\n";
      }
      if (a->once) {
        std::cout << frame;
        return;
      }
      std::cout << "\x1b[H\x1b[2J" << frame << "\n(refreshing every " << a->interval << " s; "
                << (keys.active() ? "q or " : "") << "Ctrl-C quits)" << std::flush;
      const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(a->interval);
      while (std::chrono::steady_clock::now() < until) {
        if (core::Shutdown::requested() || keys.pressed("qQ")) {
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
  const CLI::Validator seconds = seconds_at_most(86400);
  stop->add_option("--timeout", a->timeout, "Seconds to wait for the run to end")->check(seconds);
  stop->callback([a, exit_code] {
    std::optional<EndedRun> ended;
    auto c = connect_or_ended(a->run, a->redis, &ended);
    if (!c) {
      std::cout << "run " << a->run << " has already ended (" << ended->status << ")\n";
      return;
    }
    Fields h = hgetall(*c, run_key(a->run));
    if (h.empty()) throw Error("run '" + a->run + "' is not in this Redis");
    if (!run_active(field(h, "status"))) {
      std::cout << "run " << a->run << " has already ended (" << field(h, "status") << ")\n";
      return;
    }
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
        // Its embedded Redis went away with it: the orchestrator wrote its end to the registry.
        try {
          st = read_registry(a->run).value("status", std::string());
        } catch (const Error&) {
          st = "";
        }
      }
      const bool gone = pid > 0 && !process_alive(pid);
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
  scale->add_option("--timeout", a->timeout, "Seconds to wait for the orchestrator to apply it")->check(seconds);
  scale->callback([a, exit_code] {
    std::smatch m;
    if (!std::regex_match(a->assignment, m, std::regex("actors(@[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?=([0-9]{1,6})")) ||
        (!m[1].matched && std::stoll(m[2]) < 1))
      throw ConfigError("scale: expected actors=N (N >= 1) or actors@HOST=N (N >= 0), got '" + a->assignment + "'");
    const std::string host = m[1].matched ? std::string(m[1]).substr(1) : "";
    const std::string n = m[2];
    const std::string confirm = host.empty() ? "actors" : "actors@" + host;
    std::optional<EndedRun> ended;
    auto c = connect_or_ended(a->run, a->redis, &ended);
    if (!c) throw Error("run '" + a->run + "' has ended (" + ended->status + "); only a running run can be scaled");
    Fields h = hgetall(*c, run_key(a->run));
    if (h.empty()) throw Error("run '" + a->run + "' is not in this Redis");
    if (!run_active(field(h, "status")) || orchestrator_gone(a->run))
      throw Error("run '" + a->run + "' is " + (orchestrator_gone(a->run) ? "dead" : field(h, "status")) +
                  "; only a running run can be scaled");
    if (!host.empty() && host != "local") {
      // The host must be one of the run's (its resolved spec lists them).
      auto spec = orchestrator::RunSpec::load(field(h, "run_dir") + "/spec.yaml");
      if (!spec.host(host)) throw ConfigError("scale: run '" + a->run + "' has no host '" + host + "'");
    }
    if (!host.empty()) c->command({"HDEL", run_key(a->run), confirm});  // wait for a fresh confirmation
    c->command({"HDEL", run_key(a->run), "refused_" + confirm});
    c->command({"HSET", run_key(a->run), "desired_" + confirm, n});
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(a->timeout);
    while (std::chrono::steady_clock::now() < until) {
      const Fields now = hgetall(*c, run_key(a->run));
      if (field(now, confirm) == n) {
        std::cout << "run " << a->run << ": " << confirm << "=" << n << "\n";
        return;
      }
      // The orchestrator's answer to a request it will not carry out: "N: why".
      if (const std::string why = field(now, "refused_" + confirm); !why.empty())
        throw ConfigError("run '" + a->run + "': " + confirm + "=" + why);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    throw Error("run '" + a->run + "': the orchestrator did not apply actors=" + n + " within " +
                std::to_string(static_cast<int>(a->timeout)) + " s");
  });

  auto* logs = app.add_subcommand("logs", "Show a run's process logs (all, or one process); -f follows them");
  logs->add_option("run", a->run, "Run name")->required();
  logs->add_option("proc", a->proc, "Process: replay-0, learner-0, actor-1, ... (default: all)");
  logs->add_flag("-f,--follow", a->follow, "Keep printing new lines until the run ends (Ctrl-C quits)");
  logs->add_option("-n,--lines", a->lines, "Lines from the end of each log to start with")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000000));
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
          // The process by its name, or by the label these lines carry (actor-0@vm1).
          if (!a->proc.empty() && name != a->proc && name + "@" + h.name != a->proc) continue;
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
    auto next_check = std::chrono::steady_clock::now();
    bool last_round = false;  // the run has ended: one more read of everything, then stop
    std::string ended_status;
    while (!core::Shutdown::requested()) {
      if (!last_round && std::chrono::steady_clock::now() >= next_check) {
        next_check += std::chrono::seconds(1);
        if (auto ended = ended_run(a->run)) {
          last_round = true;
          ended_status = ended->status;
          std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the last lines reach the files
        }
      }
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
      if (last_round) {
        for (size_t i = 0; i < sources.size(); ++i)
          if (!partial[i].empty()) std::cout << (prefix ? "[" + sources[i].name + "] " : "") << partial[i] << "\n";
        std::cout << std::flush;
        std::cerr << "orchard logs: run " << a->run << " has ended (" << ended_status << ")\n";
        return;
      }
      std::cout << std::flush;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
}

}  // namespace orchard::cli
