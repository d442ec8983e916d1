#include "orchard/orchestrator/agent.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "orchard/core/error.h"
#include "orchard/core/net.h"
#include "orchard/core/shutdown.h"
#include "orchard/core/wire.h"
#include "orchard/orchestrator/process.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace orchard::orchestrator {

namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// An adopted process (not our child) is gone when its pid no longer exists or is a zombie
// waiting for a parent that does not reap (PID 1 in some containers).
bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return true;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  const size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// Run and process names become path components: keep them to a safe alphabet.
void check_name(const json& r, const char* key) {
  static const std::regex kSafe("[A-Za-z0-9][A-Za-z0-9_.-]{0,63}");
  if (!r.contains(key) || !r[key].is_string())
    throw Error(std::string("field '") + key + "' (string) is required");
  if (!std::regex_match(r[key].get<std::string>(), kSafe))
    throw Error(std::string("field '") + key + "' must be 1-64 of [A-Za-z0-9_.-], got '" + r[key].get<std::string>() +
                "'");
}

std::string epoch_of(const json& r) {
  if (r.contains("epoch") && !r["epoch"].is_string()) throw Error("field 'epoch' must be a string");
  return r.value("epoch", std::string());
}

std::string describe_status(int status) {
  if (status == -1) return "gone";
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

}  // namespace

struct AgentServer::Impl {
  zmq::context_t ctx{1};
  std::unique_ptr<zmq::socket_t> router;
  // start_many with wait_ready_ms: the reply is held (the agent serves other requests
  // meanwhile) until every process it started has said "ready" or exited, or the wait is over.
  struct Held {
    zmq::message_t identity;
    json reply;
    std::string run;
    json reads;  // [{name, offset}]: the started processes and where their output begins
    std::chrono::steady_clock::time_point until;
  };
  std::vector<Held> held;
};

AgentServer::AgentServer(AgentOptions options) : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  if (options_.token.size() < 16)
    throw ConfigError("orchard agent: the token must be at least 16 characters (got " +
                      std::to_string(options_.token.size()) + ")");
  if (options_.state_dir.empty()) throw ConfigError("orchard agent: a state directory is required");
  fs::create_directories(options_.state_dir);
  impl_->router = std::make_unique<zmq::socket_t>(impl_->ctx, zmq::socket_type::router);
  core::SocketOptions so;
  so.max_message_bytes = 64 << 20;
  core::apply_socket_options(*impl_->router, so);
  if (!options_.curve_key_file.empty())
    core::make_curve_server(*impl_->router, core::load_curve_keys(options_.curve_key_file, true));
  try {
    impl_->router->bind(options_.listen);
  } catch (const zmq::error_t& e) {
    throw Error("orchard agent: cannot bind " + options_.listen + ": " + e.what());
  }
  endpoint_ = impl_->router->get(zmq::sockopt::last_endpoint);
  // Re-attach to what a previous incarnation started and is still running.
  std::ifstream in(options_.state_dir + "/procs.json");
  if (in) {
    try {
      json saved = json::parse(in);
      // {"procs": [...], "runs": {run: {epoch, ended}}}; an array alone is the older format.
      if (saved.is_object() && saved.contains("runs") && saved["runs"].is_object())
        for (const auto& [run, st] : saved["runs"].items())
          runs_[run] = RunState{st.value("epoch", std::string()), st.value("ended", false)};
      if (saved.is_object()) saved = saved.value("procs", json::array());
      for (const auto& p : saved) {
        Proc proc;
        proc.run = p.at("run");
        proc.name = p.at("name");
        proc.log = p.at("log");
        proc.pid = p.at("pid");
        proc.started_ms = p.value("started_ms", int64_t{0});
        proc.log_start = p.value("log_start", int64_t{0});
        proc.child = false;
        proc.exited = p.value("exited", false) || process_gone(proc.pid);
        proc.status = p.value("status", -1);
        if (proc.exited && !p.value("exited", false)) proc.status = -1;
        procs_[proc.run + "/" + proc.name] = proc;
        if (!proc.exited) {
          spdlog::info("re-attached to {}/{} (pid {})", proc.run, proc.name, proc.pid);
          contact_[proc.run] = std::chrono::steady_clock::now();  // the lease counts from this start
        }
      }
    } catch (const std::exception& e) {
      spdlog::warn("ignoring unreadable {}/procs.json: {}", options_.state_dir, e.what());
    }
  }
}

AgentServer::~AgentServer() = default;

int64_t AgentServer::clock_ms() const { return wall_ms() + options_.clock_skew_ms; }

std::string AgentServer::run_dir(const std::string& run) const { return options_.state_dir + "/runs/" + run; }

void AgentServer::save_state() {
  json all = json::array();
  for (const auto& [key, p] : procs_)
    all.push_back({{"run", p.run}, {"name", p.name}, {"log", p.log}, {"pid", p.pid}, {"exited", p.exited},
                   {"status", p.status}, {"started_ms", p.started_ms}, {"log_start", p.log_start}});
  json runs = json::object();
  for (const auto& [run, st] : runs_) runs[run] = {{"epoch", st.epoch}, {"ended", st.ended}};
  const std::string path = options_.state_dir + "/procs.json", tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << json{{"procs", all}, {"runs", runs}}.dump();
  }
  fs::rename(tmp, path);
}

void AgentServer::end_orphans() {
  if (options_.orphan_after_s <= 0) return;
  const auto now = std::chrono::steady_clock::now();
  const auto lease = std::chrono::duration<double>(options_.orphan_after_s);
  std::set<std::string> live;
  for (const auto& [key, p] : procs_)
    if (!p.exited) live.insert(p.run);
  for (const auto& run : live) {
    auto c = contact_.find(run);
    if (c == contact_.end()) {
      contact_[run] = now;
      continue;
    }
    if (now - c->second < lease) {
      orphan_term_.erase(run);
      continue;
    }
    auto t = orphan_term_.find(run);
    const bool first = t == orphan_term_.end();
    // SIGKILL for what is left after min(15 s, the lease).
    const bool kill_now = !first && now - t->second > std::min(lease, std::chrono::duration<double>(15));
    if (!first && !kill_now) continue;
    for (const auto& [key, p] : procs_) {
      if (p.run != run || p.exited) continue;
      spdlog::warn("run {}: no orchestrator has driven it here for {:.0f} s; {} {} (pid {})", run,
                   options_.orphan_after_s, kill_now ? "killing" : "stopping", p.name, p.pid);
      signal_tree(p.pid, kill_now ? SIGKILL : SIGTERM);
    }
    if (first) orphan_term_[run] = now;
  }
}

void AgentServer::reap() {
  bool changed = false;
  for (auto& [key, p] : procs_) {
    if (p.exited) continue;
    if (p.child) {
      int status = 0;
      if (::waitpid(p.pid, &status, WNOHANG) == p.pid) {
        kill_leftovers(p.pid);  // what it left running in its process group
        p.exited = true;
        p.status = status;
        changed = true;
      }
    } else if (process_gone(p.pid)) {
      kill_leftovers(p.pid);
      p.exited = true;
      p.status = -1;  // not our child: the status is unknown
      changed = true;
    }
  }
  if (changed) save_state();
}

json AgentServer::op_host() {
  json h = {{"cpus", std::thread::hardware_concurrency()}, {"advertise_host", options_.advertise_host}};
  std::ifstream mem("/proc/meminfo");
  std::string key;
  int64_t value;
  std::string unit;
  while (mem >> key >> value >> unit) {
    if (key == "MemTotal:") h["mem_total_kb"] = value;
    if (key == "MemAvailable:") h["mem_available_kb"] = value;
  }
  std::ifstream load("/proc/loadavg");
  double l1 = 0;
  if (load >> l1) h["load1"] = l1;
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  h["hostname"] = host;
  return h;
}

json AgentServer::op_start(const json& r, bool reuse_running) {
  check_name(r, "run");
  check_name(r, "name");
  if (!r.contains("argv") || !r["argv"].is_array() || r["argv"].empty())
    throw Error("field 'argv' (non-empty array of strings) is required");
  const std::string run = r["run"], name = r["name"], key = run + "/" + name;
  check_open(run, r);
  auto it = procs_.find(key);
  if (it != procs_.end() && !it->second.exited) {
    // start_many is idempotent: a start whose reply was lost (the orchestrator timed out and
    // asks again) gets the process it already started, not a second one or an error.
    if (reuse_running)
      return {{"pid", it->second.pid}, {"log", it->second.log}, {"dir", run_dir(run)},
              {"log_size", it->second.log_start}, {"already_running", true}};
    throw Error("process " + key + " is already running (pid " + std::to_string(it->second.pid) + ")");
  }
  const std::string dir = run_dir(run);
  fs::create_directories(dir + "/logs");
  // Files the process needs (the resolved spec), written before it starts.
  if (r.contains("files")) {
    if (!r["files"].is_object()) throw Error("field 'files' must be an object of name -> content");
    for (const auto& [fname, content] : r["files"].items()) {
      if (fname.empty() || fname.find('/') != std::string::npos || fname[0] == '.')
        throw Error("file name '" + fname + "' must be a plain name");
      if (!content.is_string()) throw Error("file '" + fname + "' content must be a string");
      const std::string path = dir + "/" + fname;
      std::ofstream(path, std::ios::trunc) << content.get<std::string>();
      fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);  // key files among them
    }
  }
  auto subst = [&](std::string s) {
    for (size_t pos; (pos = s.find("{dir}")) != std::string::npos;) s.replace(pos, 5, dir);
    return s;
  };
  std::vector<std::string> argv;
  for (const auto& a : r["argv"]) {
    if (!a.is_string()) throw Error("field 'argv' must hold strings only");
    argv.push_back(subst(a.get<std::string>()));
  }
  const std::string log = dir + "/logs/" + name + ".log";
  std::error_code size_error;
  const auto log_size = fs::exists(log) ? static_cast<int64_t>(fs::file_size(log, size_error)) : int64_t{0};
  SpawnOptions so;
  so.parent_death_signal = 0;  // the processes outlive the agent (it re-attaches after a restart)
  so.new_process_group = true;
  so.cwd = dir;
  so.stdout_path = log;
  so.stderr_path = log;
  if (r.contains("env")) {
    if (!r["env"].is_array()) throw Error("field 'env' must be an array of KEY=value strings");
    for (const auto& e : r["env"]) {
      if (!e.is_string()) throw Error("field 'env' must hold strings only");
      so.extra_env.push_back(subst(e.get<std::string>()));
    }
  }
  if (r.contains("cpus")) {
    if (!r["cpus"].is_array()) throw Error("field 'cpus' must be an array of integers");
    for (const auto& c : r["cpus"]) {
      if (!c.is_number_integer()) throw Error("field 'cpus' must hold integers only");
      so.cpus.push_back(c.get<int>());
    }
  }
  Proc p;
  p.run = run;
  p.name = name;
  p.log = log;
  p.pid = spawn_process(argv, so);
  p.started_ms = wall_ms();
  p.log_start = size_error ? 0 : log_size;
  procs_[key] = p;
  save_state();
  spdlog::info("started {} (pid {})", key, p.pid);
  // log_size: where this start's output begins (earlier starts appended before it).
  return {{"pid", p.pid}, {"log", log}, {"dir", dir}, {"log_size", size_error ? int64_t{0} : log_size}};
}

void AgentServer::check_open(const std::string& run, const json& r) const {
  if (r.contains("epoch") && !r["epoch"].is_string()) throw Error("field 'epoch' must be a string");
  auto it = runs_.find(run);
  if (it == runs_.end()) return;
  const std::string epoch = r.value("epoch", std::string());
  if (!epoch.empty() && !it->second.epoch.empty() && epoch != it->second.epoch)
    throw Error("stale request: run '" + run + "' is at epoch " + it->second.epoch + ", this request is for epoch " +
                epoch + " (an earlier orchestrator of the run)");
  if (it->second.ended)
    throw Error("run '" + run + "' has ended (end_run); reset_run or open_run begins it again");
}

void AgentServer::check_not_expired(const std::string& op, const json& r) const {
  if (op != "start" && op != "start_many" && op != "signal" && op != "signal_many") return;
  if (!r.contains("not_after_ms")) return;
  if (!r["not_after_ms"].is_number_integer()) throw Error("field 'not_after_ms' must be an integer (ms since the epoch)");
  const int64_t now = clock_ms(), not_after = r["not_after_ms"].get<int64_t>();
  if (now > not_after) {
    // Computed without overflow for any not_after (a far-past one is simply very late).
    const int64_t late = not_after < 0 && now > INT64_MAX + not_after ? INT64_MAX : now - not_after;
    throw Error("expired: this request came " + std::to_string(late) +
                " ms after its sender stopped waiting for the answer (this agent was stalled, or the link is slow); "
                "not carried out, as the sender counts it as failed");
  }
}

json AgentServer::op_end_run(const json& r) {
  check_name(r, "run");
  if (r.contains("epoch") && !r["epoch"].is_string()) throw Error("field 'epoch' must be a string");
  const std::string run = r["run"], epoch = r.value("epoch", std::string());
  RunState& st = runs_[run];
  // An end_run of an earlier incarnation (delivered late) must not end the one now running.
  if (!epoch.empty() && !st.epoch.empty() && epoch != st.epoch)
    return {{"ended", false}, {"stale", true}, {"epoch", st.epoch}, {"killed", json::array()}};
  st.ended = true;
  json killed = json::array();
  std::vector<pid_t> pids;
  for (const auto& [key, p] : procs_) {
    if (p.run != run || p.exited) continue;
    signal_tree(p.pid, SIGKILL);
    pids.push_back(p.pid);
    killed.push_back({{"name", p.name}, {"pid", p.pid}});
    spdlog::warn("end of run {}: killed {} (pid {}), which was still running", run, p.name, p.pid);
  }
  save_state();
  // SIGKILL is not refused: wait (briefly) until they are reaped, so the answer is the truth.
  for (int i = 0; i < 200; ++i) {
    reap();
    bool left = false;
    for (const auto& [key, p] : procs_) left = left || (p.run == run && !p.exited);
    if (!left) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return {{"ended", true}, {"killed", killed}};
}

json AgentServer::op_signal(const json& r) {
  check_name(r, "run");
  check_name(r, "name");
  const int sig = r.value("signal", SIGTERM);
  if (sig != SIGTERM && sig != SIGKILL && sig != SIGINT) throw Error("field 'signal' must be 2, 9 or 15");
  auto it = procs_.find(r["run"].get<std::string>() + "/" + r["name"].get<std::string>());
  if (it == procs_.end()) throw Error("no process " + r["run"].get<std::string>() + "/" + r["name"].get<std::string>());
  if (!it->second.exited) signal_tree(it->second.pid, sig);
  return {{"pid", it->second.pid}, {"exited", it->second.exited}};
}

json AgentServer::op_list(const json& r) {
  const std::string run = r.contains("run") && r["run"].is_string() ? r["run"].get<std::string>() : "";
  json out = json::array();
  for (const auto& [key, p] : procs_) {
    if (!run.empty() && p.run != run) continue;
    out.push_back({{"run", p.run},
                   {"name", p.name},
                   {"pid", p.pid},
                   {"running", !p.exited},
                   {"exit", p.exited ? describe_status(p.status) : ""},
                   {"exit_status", p.status},
                   {"adopted", !p.child},
                   {"started_ms", p.started_ms}});
  }
  return {{"procs", out}};
}

json AgentServer::op_logs(const json& r) {
  check_name(r, "run");
  check_name(r, "name");
  auto it = procs_.find(r["run"].get<std::string>() + "/" + r["name"].get<std::string>());
  if (it == procs_.end()) throw Error("no process " + r["run"].get<std::string>() + "/" + r["name"].get<std::string>());
  const int64_t offset = r.value("offset", int64_t{0});
  const int64_t max = std::min<int64_t>(r.value("max_bytes", int64_t{1} << 20), int64_t{8} << 20);
  std::ifstream in(it->second.log, std::ios::binary);
  std::string data;
  if (in) {
    in.seekg(0, std::ios::end);
    const int64_t size = static_cast<int64_t>(in.tellg());
    const int64_t from = offset < 0 ? std::max<int64_t>(0, size + offset) : std::min(offset, size);
    in.seekg(from);
    data.resize(static_cast<size_t>(std::min(max, size - from)));
    in.read(data.data(), static_cast<std::streamsize>(data.size()));
    return {{"data", data}, {"offset", from + static_cast<int64_t>(data.size())}, {"size", size}};
  }
  return {{"data", ""}, {"offset", 0}, {"size", 0}};
}

json AgentServer::read_logs(const json& r) {
  if (!r.contains("reads") || !r["reads"].is_array()) throw Error("field 'reads' (array of {name, offset}) is required");
  json logs = json::array();
  for (const auto& rd : r["reads"]) {
    if (!rd.is_object()) throw Error("field 'reads' must hold objects {name, offset}");
    json one = rd;
    one["run"] = r["run"];
    if (r.contains("max_bytes")) one["max_bytes"] = r["max_bytes"];
    json entry;
    try {
      entry = op_logs(one);
    } catch (const Error& e) {
      entry = {{"error", e.what()}};
    }
    entry["name"] = rd.value("name", "");
    logs.push_back(std::move(entry));
  }
  return logs;
}

json AgentServer::op_read_file(const json& r) {
  check_name(r, "run");
  if (!r.contains("path") || !r["path"].is_string()) throw Error("field 'path' (string) is required");
  const std::string rel = r["path"];
  if (rel.empty() || rel[0] == '/' || rel.find("..") != std::string::npos)
    throw Error("path '" + rel + "' must be relative to the run directory, without '..'");
  const std::string path = run_dir(r["run"]) + "/" + rel;
  std::ifstream in(path, std::ios::binary);
  if (!in) return {{"exists", false}};
  std::stringstream ss;
  ss << in.rdbuf();
  return {{"exists", true}, {"data", ss.str()}};
}

namespace {
// A request's op, or `def` when it has none or it is not a string.
std::string op_name(const json& request, const std::string& def = "") {
  return request.is_object() && request.contains("op") && request["op"].is_string() ? request["op"].get<std::string>()
                                                                                     : def;
}

// The type every request field must have, checked before any is read, so a field of the wrong
// type is refused by name (and never reaches a JSON accessor that would throw mid-request).
void check_field_types(const json& obj, const std::string& where) {
  static const char* kStrings[] = {"op", "run", "name", "path", "epoch"};
  static const char* kIntegers[] = {"count", "offset", "signal", "max_bytes", "not_after_ms", "wait_ready_ms"};
  static const char* kArrays[] = {"argv", "env", "cpus", "starts", "signals", "reads"};
  auto name = [&](const char* f) { return "field '" + where + f + "'"; };
  for (const char* f : kStrings)
    if (obj.contains(f) && !obj[f].is_string()) throw Error(name(f) + " must be a string");
  for (const char* f : kIntegers)
    if (obj.contains(f) && !obj[f].is_number_integer()) throw Error(name(f) + " must be an integer");
  for (const char* f : kArrays)
    if (obj.contains(f) && !obj[f].is_array()) throw Error(name(f) + " must be an array");
  if (obj.contains("files") && !obj["files"].is_object()) throw Error(name("files") + " must be an object");
  if (obj.contains("max_bytes") && obj["max_bytes"].get<int64_t>() < 0) throw Error(name("max_bytes") + " must be >= 0");
  for (const char* list : {"starts", "signals", "reads"}) {
    if (!obj.contains(list)) continue;
    for (size_t i = 0; i < obj[list].size(); ++i)
      if (obj[list][i].is_object()) check_field_types(obj[list][i], where + list + "[" + std::to_string(i) + "].");
  }
}
}  // namespace

json AgentServer::handle(const std::string& text) {
  json r;
  try {
    r = json::parse(text);
  } catch (const std::exception& e) {
    ++rejected_;
    return {{"ok", false}, {"error", std::string("request is not valid JSON: ") + e.what()}};
  }
  if (!r.is_object()) {
    ++rejected_;
    return {{"ok", false}, {"error", "request must be a JSON object"}};
  }
  if (!r.contains("token") || !r["token"].is_string() || !constant_time_equal(r["token"], options_.token)) {
    ++rejected_;
    spdlog::warn("refused a request with a wrong or missing token");
    return {{"ok", false}, {"error", "unauthorized: wrong or missing token"}};
  }
  if (r.contains("op") && !r["op"].is_string()) {
    ++rejected_;
    return {{"ok", false}, {"error", "field 'op' must be a string"}, {"now_ms", clock_ms()}};
  }
  const std::string op = r.value("op", "");
  try {
    check_field_types(r, "");
    // An orchestrator driving a run renews its lease (AgentOptions::orphan_after_s); a CLI
    // reading logs or listing does not.
    if (r.contains("run") && r["run"].is_string() &&
        (op == "start" || op == "start_many" || op == "signal" || op == "signal_many" || op == "open_run" ||
         op == "reset_run" || (op == "list" && r.contains("lease") && r["lease"] == true)))
      contact_[r["run"].get<std::string>()] = std::chrono::steady_clock::now();
    reap();
    check_not_expired(op, r);
    json out;
    if (op == "ping") {
      out = {{"pong", true}};
    } else if (op == "host") {
      out = op_host();
    } else if (op == "start") {
      out = op_start(r);
    } else if (op == "signal") {
      out = op_signal(r);
    } else if (op == "start_many" || op == "signal_many") {
      // Several processes of one run in one request (the scheduler starts a group, or signals
      // what it stops, with one request per agent): {"run", "starts": [{name, argv, env, cpus,
      // files}...]} -> {"started": [{name, pid, log, dir, log_size[, already_running]} or
      // {name, error}]}; {"run", "signals": [{name, signal}...]} -> {"signaled": [{name, pid,
      // exited} or {name, error}]}, in order. One bad entry fails only itself.
      const bool starting = op == "start_many";
      const char* list = starting ? "starts" : "signals";
      check_name(r, "run");
      if (starting) check_open(r["run"], r);  // a stale or ended run refuses the whole request
      if (!r.contains(list) || !r[list].is_array())
        throw Error(std::string("field '") + list + "' (array of objects with a 'name') is required");
      json results = json::array();
      for (const auto& one : r[list]) {
        if (!one.is_object()) throw Error(std::string("field '") + list + "' must hold objects");
        json q = one;
        q["run"] = r["run"];
        if (r.contains("epoch")) q["epoch"] = r["epoch"];
        json entry;
        try {
          entry = starting ? op_start(q, true) : op_signal(q);
        } catch (const std::exception& e) {
          entry = {{"error", e.what()}};
        }
        entry["name"] = one.contains("name") && one["name"].is_string() ? one["name"].get<std::string>() : "";
        results.push_back(std::move(entry));
      }
      out = {{starting ? "started" : "signaled", results}};
    } else if (op == "list") {
      // With "reads" (as logs_many), the logs come along: the scheduler's one poll per round
      // both sees exits and reads the output of the processes still starting.
      out = op_list(r);
      if (r.contains("reads")) {
        check_name(r, "run");
        out["logs"] = read_logs(r);
      }
    } else if (op == "logs") {
      out = op_logs(r);
    } else if (op == "logs_many") {
      // Several processes' logs of one run in one request: {"run", "reads": [{"name", "offset"}...],
      // "max_bytes"} -> {"logs": [{"name", "data", "offset", "size"} or {"name", "error"}]}, in order.
      check_name(r, "run");
      out = {{"logs", read_logs(r)}};
    } else if (op == "read_file") {
      out = op_read_file(r);
    } else if (op == "reset_run") {
      // A fresh run of this name: forget its processes and files, unless some still run.
      check_name(r, "run");
      const std::string run = r["run"];
      for (const auto& [key, p] : procs_)
        if (p.run == run && !p.exited)
          throw Error("run '" + run + "' still has a running process (" + p.name + ", pid " + std::to_string(p.pid) + ")");
      for (auto it = procs_.begin(); it != procs_.end();) it = it->second.run == run ? procs_.erase(it) : std::next(it);
      fs::remove_all(run_dir(run));
      runs_[run] = RunState{epoch_of(r), false};
      save_state();
      out = {{"reset", run}};
    } else if (op == "open_run") {
      // A resumed run: a new epoch, processes and files kept (they are adopted).
      check_name(r, "run");
      runs_[r["run"]] = RunState{epoch_of(r), false};
      save_state();
      out = {{"opened", r["run"]}};
    } else if (op == "end_run") {
      // The run is over: what still runs of it is killed, and later starts of it are refused
      // (a start that waited in a frozen agent's queue cannot bring the run back).
      out = op_end_run(r);
    } else if (op == "free_port") {
      // {"count": n} (1-64, default 1): n distinct free ports in one request.
      const int64_t count = r.value("count", int64_t{1});
      if (count < 1 || count > 64) throw Error("field 'count' must be 1-64");
      json ports = json::array();
      std::set<int> seen;
      while (static_cast<int64_t>(ports.size()) < count) {
        const int port = core::free_loopback_port();
        if (seen.insert(port).second) ports.push_back(port);
      }
      out = {{"port", ports[0]}, {"ports", ports}};
    } else {
      ++rejected_;
      return {{"ok", false}, {"error", "unknown op '" + op +
                                         "' (ping, host, start, start_many, signal, signal_many, list, logs, "
                                         "logs_many, read_file, reset_run, open_run, end_run, free_port)"}};
    }
    out["ok"] = true;
    out["now_ms"] = clock_ms();  // the client estimates the offset between its clock and this one
    return out;
  } catch (const std::exception& e) {
    ++rejected_;
    spdlog::warn("refused '{}': {}", op, e.what());
    return {{"ok", false}, {"error", op + ": " + e.what()}, {"now_ms", clock_ms()}};
  }
}

bool AgentServer::started_and_settled(const std::string& run, const json& reads) {
  for (const auto& rd : reads) {
    auto it = procs_.find(run + "/" + rd.value("name", std::string()));
    if (it == procs_.end() || it->second.exited) continue;  // gone: nothing to wait for
    // Ready: a line of this start's output begins with "ready" (as the scheduler reads it).
    std::ifstream in(it->second.log, std::ios::binary);
    if (!in) return false;
    in.seekg(rd.value("offset", int64_t{0}));
    std::string line;
    bool ready = false;
    while (!ready && std::getline(in, line)) ready = line.rfind("ready", 0) == 0 && !in.eof();
    if (!ready) return false;
  }
  return true;
}

void AgentServer::send_reply(zmq::message_t& identity, const json& reply) {
  zmq::socket_t& s = *impl_->router;
  s.send(std::move(identity), zmq::send_flags::sndmore);
  s.send(zmq::message_t(), zmq::send_flags::sndmore);
  s.send(zmq::buffer(reply.dump()), zmq::send_flags::none);
}

void AgentServer::release_held(bool all) {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = impl_->held.begin(); it != impl_->held.end();) {
    if (!all && now < it->until && !started_and_settled(it->run, it->reads)) {
      ++it;
      continue;
    }
    // The output so far comes along: the scheduler reads readiness from it, as from `list`.
    it->reply["logs"] = read_logs({{"run", it->run}, {"reads", it->reads}});
    it->reply["now_ms"] = clock_ms();
    send_reply(it->identity, it->reply);
    it = impl_->held.erase(it);
  }
}

// A start_many asking to wait (wait_ready_ms, bounded by its not_after_ms and by 10 s) whose
// reply is ok: returns the wait's end and the processes to wait for; false: answer now.
bool AgentServer::wants_wait(const json& request, const json& reply, std::chrono::steady_clock::time_point* until,
                             json* reads) const {
  if (!reply.value("ok", false) || !request.is_object() || op_name(request) != "start_many") return false;
  if (!request.contains("wait_ready_ms") || !request["wait_ready_ms"].is_number_integer()) return false;
  int64_t wait_ms = std::min<int64_t>(request["wait_ready_ms"].get<int64_t>(), 10000);
  if (request.contains("not_after_ms") && request["not_after_ms"].is_number_integer())
    wait_ms = std::min(wait_ms, request["not_after_ms"].get<int64_t>() - clock_ms());
  if (wait_ms <= 0) return false;
  *reads = json::array();
  for (const auto& e : reply["started"])
    if (e.contains("pid") && !e.contains("error"))
      reads->push_back({{"name", e.value("name", std::string())}, {"offset", e.value("log_size", int64_t{0})}});
  if (reads->empty()) return false;
  *until = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  return true;
}

void AgentServer::run() {
  zmq::socket_t& s = *impl_->router;
  while (!stop_ && !core::Shutdown::requested()) {
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    try {
      // While replies are held, look at their processes' output every 5 ms.
      zmq::poll(&item, 1, std::chrono::milliseconds(impl_->held.empty() ? 200 : 5));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;  // a signal (SIGTERM: the loop condition ends the loop)
      throw;
    }
    reap();
    end_orphans();
    release_held(false);
    if (!(item.revents & ZMQ_POLLIN)) continue;
    // [identity][empty][request] from REQ clients; anything else is dropped with a count.
    std::vector<zmq::message_t> parts;
    for (;;) {
      zmq::message_t m;
      if (!s.recv(m, zmq::recv_flags::dontwait)) break;
      const bool more = m.more();
      parts.push_back(std::move(m));
      if (!more || parts.size() > 8) break;
    }
    if (parts.size() != 3 || parts[1].size() != 0) {
      ++rejected_;
      continue;
    }
    const std::string text = parts[2].to_string();
    json reply = handle(text);
    std::chrono::steady_clock::time_point until;
    json reads;
    if (wants_wait(json::parse(text, nullptr, false), reply, &until, &reads)) {
      impl_->held.push_back({std::move(parts[0]), std::move(reply), json::parse(text)["run"], std::move(reads), until});
      release_held(false);  // already settled (e.g. every process already running): answer now
      continue;
    }
    send_reply(parts[0], reply);
  }
  release_held(true);
}

// ---------------------------------------------------------------------------------------------

struct AgentClient::Impl {
  zmq::context_t ctx{1};
  std::unique_ptr<zmq::socket_t> req;
};

AgentClient::AgentClient(std::string name, std::string endpoint, std::string token, std::string server_public_key,
                         int timeout_ms)
    : name_(std::move(name)),
      endpoint_(std::move(endpoint)),
      token_(std::move(token)),
      server_key_(std::move(server_public_key)),
      timeout_ms_(timeout_ms),
      impl_(std::make_unique<Impl>()) {
  connect();
}

AgentClient::~AgentClient() = default;

void AgentClient::connect() {
  impl_->req = std::make_unique<zmq::socket_t>(impl_->ctx, zmq::socket_type::req);
  core::SocketOptions so;
  so.max_message_bytes = 64 << 20;
  core::apply_socket_options(*impl_->req, so);
  if (!server_key_.empty()) core::make_curve_client(*impl_->req, core::generate_curve_keypair(), server_key_);
  impl_->req->connect(endpoint_);
}

void AgentClient::send_request(const json& request, int wait_ms) {
  json r = request;
  r["token"] = token_;
  sent_ms_ = wall_ms();
  // A request that changes what runs carries the moment this client stops waiting for its
  // answer, in the agent's clock (offset estimated from earlier replies, less the round trip and
  // a margin for the estimate's error): an agent that gets it later (it was frozen, its link
  // stalled) refuses it, so nothing happens there that the orchestrator has already counted as
  // failed — and, once the orchestrator is gone, nothing at all. (Never less than half the wait:
  // a first estimate slowed by the connection's set-up must not refuse everything.)
  const std::string op = op_name(request);
  if (clock_known_ && !r.contains("not_after_ms") &&
      (op == "start" || op == "start_many" || op == "signal" || op == "signal_many"))
    r["not_after_ms"] = sent_ms_ + clock_offset_ms_ + std::max<int64_t>(wait_ms - clock_rtt_ms_ - 25, wait_ms / 2);
  impl_->req->send(zmq::buffer(r.dump()), zmq::send_flags::none);
}

void AgentClient::update_clock(const json& reply, int64_t received_ms) {
  if (!reply.is_object() || !reply.contains("now_ms") || !reply["now_ms"].is_number_integer()) return;
  const int64_t rtt = std::max<int64_t>(0, received_ms - sent_ms_);
  // Cristian's estimate: the agent read its clock about half way through the round trip, so the
  // offset is known to within rtt / 2. A sample much slower than the best seen is noisier: kept
  // out while it agrees with the estimate within both their errors. One that does not means the
  // agent's clock has moved (stepped, or a restarted agent): it is taken at once.
  const int64_t sample = reply["now_ms"].get<int64_t>() - (sent_ms_ + received_ms) / 2;
  const bool agrees = std::llabs(sample - clock_offset_ms_) <= (rtt + clock_rtt_ms_) / 2 + 1;
  if (clock_known_ && rtt > 2 * best_rtt_ms_ + 2 && agrees) return;
  clock_offset_ms_ = sample;
  clock_rtt_ms_ = rtt;
  best_rtt_ms_ = clock_known_ && agrees ? std::min(best_rtt_ms_, rtt) : rtt;
  clock_known_ = true;
}

bool AgentClient::take_reply(bool readable, json* reply, int64_t received_ms) {
  if (!readable) {
    connect();  // a REQ socket without its reply is stuck: start over (lazy pirate)
    suspect_ = true;
    return false;
  }
  suspect_ = false;
  zmq::message_t m;
  (void)impl_->req->recv(m, zmq::recv_flags::none);
  try {
    *reply = json::parse(m.to_string());
  } catch (const std::exception& e) {
    throw Error("agent " + name_ + " (" + endpoint_ + "): unreadable reply: " + e.what());
  }
  update_clock(*reply, received_ms);
  return true;
}

namespace {

// Polls `items` until every one is readable or `deadline` passes; EINTR waits on. (*ready_ms)[i]:
// the wall-clock ms at which item i was seen readable.
void poll_until(std::vector<zmq::pollitem_t>& items, std::chrono::steady_clock::time_point deadline,
                std::vector<int64_t>* ready_ms) {
  std::vector<bool> done(items.size(), false);
  ready_ms->assign(items.size(), 0);
  for (;;) {
    std::vector<zmq::pollitem_t> waiting;
    std::vector<size_t> index;
    for (size_t i = 0; i < items.size(); ++i)
      if (!done[i]) {
        waiting.push_back(items[i]);
        index.push_back(i);
      }
    if (waiting.empty()) return;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return;
    try {
      zmq::poll(waiting.data(), waiting.size(), left);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;  // interrupted by a signal: wait for the rest of the time
      continue;
    }
    const int64_t now = wall_ms();
    for (size_t k = 0; k < waiting.size(); ++k)
      if (waiting[k].revents & ZMQ_POLLIN) {
        done[index[k]] = true;
        items[index[k]].revents = ZMQ_POLLIN;
        (*ready_ms)[index[k]] = now;
      }
  }
}

}  // namespace

bool AgentClient::try_call(const json& request, json* reply) {
  const int wait_ms = effective_timeout_ms();
  send_request(request, wait_ms);
  std::vector<zmq::pollitem_t> items{{impl_->req->handle(), 0, ZMQ_POLLIN, 0}};
  std::vector<int64_t> ready_ms;
  poll_until(items, std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms), &ready_ms);
  return take_reply(items[0].revents & ZMQ_POLLIN, reply, ready_ms[0]);
}

void AgentClient::try_call_all(const std::vector<AgentClient*>& agents, const json& request,
                               std::vector<json>* replies) {
  try_call_each(agents, std::vector<json>(agents.size(), request), replies);
}

void AgentClient::try_call_each(const std::vector<AgentClient*>& agents, const std::vector<json>& requests,
                                std::vector<json>* replies) {
  replies->assign(agents.size(), json());
  std::vector<zmq::pollitem_t> items;
  int longest = 0;
  for (auto* a : agents) longest = std::max(longest, a->effective_timeout_ms());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(longest);
  for (size_t i = 0; i < agents.size(); ++i) {
    auto* a = agents[i];
    a->send_request(requests[i], longest);  // every answer counts until the round's deadline
    items.push_back({a->impl_->req->handle(), 0, ZMQ_POLLIN, 0});
  }
  std::vector<int64_t> ready_ms;
  poll_until(items, deadline, &ready_ms);
  for (size_t i = 0; i < agents.size(); ++i) {
    json r;
    try {
      if (agents[i]->take_reply(items[i].revents & ZMQ_POLLIN, &r, ready_ms[i])) (*replies)[i] = std::move(r);
    } catch (const Error& e) {  // an unreadable reply: no answer from this agent, the others count
      spdlog::warn("{}", e.what());
    }
  }
}

std::string AgentClient::failure(const std::string& op, const json& reply) const {
  if (!reply.is_object())
    return "agent " + name_ + " (" + endpoint_ + "): no reply to '" + op + "' within " + std::to_string(timeout_ms_) +
           " ms (is `orchard agent` running there and reachable?)";
  if (!reply.value("ok", false)) return "agent " + name_ + " (" + endpoint_ + "): " + reply.value("error", std::string("error"));
  return "";
}

std::vector<json> AgentClient::call_each(const std::vector<AgentClient*>& agents, const std::vector<json>& requests) {
  std::vector<json> replies;
  try_call_each(agents, requests, &replies);
  for (size_t i = 0; i < agents.size(); ++i) {
    const std::string why = agents[i]->failure(op_name(requests[i], "?"), replies[i]);
    if (!why.empty()) throw Error(why);
  }
  return replies;
}

json AgentClient::call(json request) {
  const std::string op = op_name(request, "?");
  json reply;
  if (!try_call(request, &reply)) reply = json();
  const std::string why = failure(op, reply);
  if (!why.empty()) throw Error(why);
  return reply;
}

}  // namespace orchard::orchestrator
