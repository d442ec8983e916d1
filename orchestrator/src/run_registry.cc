#include "run_registry.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>

#include "orchard/core/error.h"

namespace fs = std::filesystem;

namespace orchard::cli {

std::string orchard_home() {
  if (const char* h = std::getenv("ORCHARD_HOME"); h && *h) return h;
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.orchard";
  return "/tmp/orchard-home";
}

bool process_alive(int pid) {
  if (pid <= 0 || (::kill(pid, 0) != 0 && errno == ESRCH)) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t close = line.rfind(')');
  return !(close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z');
}

std::string shown_url(const std::string& url) {
  static const std::regex with_password("(redis://[^:@/]*:)[^@/]+@(.*)");
  return std::regex_replace(url, with_password, "$1***@$2");
}

std::string registry_path(const std::string& run) { return orchard_home() + "/runs/" + run + ".json"; }

void write_registry(const std::string& run, const nlohmann::json& entry) {
  fs::create_directories(orchard_home() + "/runs");
  const std::string path = registry_path(run), tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << entry.dump(2) << "\n";
    if (!out) throw Error("cannot write " + tmp);
  }
  fs::rename(tmp, path);
}

nlohmann::json read_registry(const std::string& run) {
  const std::string path = registry_path(run);
  std::ifstream in(path);
  if (!in)
    throw Error("no run named '" + run + "' on this machine (looked for " + path +
                "); `orchard status` lists the runs, --redis URL reaches a run's Redis directly");
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw Error(path + ": unreadable run entry: " + e.what());
  }
}

std::vector<std::string> registry_runs() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(orchard_home() + "/runs", ec))
    if (e.path().extension() == ".json") out.push_back(e.path().stem().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::unique_ptr<core::RedisClient> connect_run(const std::string& run, const std::string& redis_url) {
  nlohmann::json entry = nlohmann::json::object();
  try {
    entry = read_registry(run);
  } catch (const Error&) {
    if (redis_url.empty()) throw;
  }
  std::string url = redis_url;
  if (url.empty()) url = entry.value("redis", "");
  if (url.empty()) throw Error("run '" + run + "': no Redis URL known; pass --redis URL");
  auto o = core::RedisOptions::from_url(url);
  o.connect_timeout_ms = 1000;
  o.reconnect_attempts = 1;
  // While the run's orchestrator is alive, a Redis that does not answer is down for a moment
  // (the orchestrator starts its embedded one again within a second or two): keep trying.
  const std::string status = entry.value("status", std::string());
  const int pid = entry.value("pid", 0);
  const bool orchestrator_alive = (status == "starting" || status == "running") && process_alive(pid);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(orchestrator_alive ? 15 : 0);
  for (;;) {
    try {
      return std::make_unique<core::RedisClient>(o);
    } catch (const Error& e) {
      if (std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
        continue;
      }
      if (orchestrator_alive)
        throw Error("run '" + run + "': its Redis is not reachable (" + e.what() + ") although its orchestrator (pid " +
                    std::to_string(pid) + ") is running; try again in a moment");
      throw Error("run '" + run + "': its Redis is not reachable (" + e.what() +
                  "); the run has probably ended (its embedded Redis stops with it)");
    }
  }
}

std::vector<std::pair<std::string, std::string>> hgetall(core::RedisClient& c, const std::string& key) {
  auto r = c.command({"HGETALL", key});
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i + 1 < r.elements.size(); i += 2) out.emplace_back(r.elements[i].str, r.elements[i + 1].str);
  return out;
}

namespace {
std::vector<std::pair<std::string, std::string>> entry_fields(const core::RedisReply& entry) {
  std::vector<std::pair<std::string, std::string>> out;
  if (entry.elements.size() < 2) return out;
  const auto& f = entry.elements[1].elements;
  for (size_t i = 0; i + 1 < f.size(); i += 2) out.emplace_back(f[i].str, f[i + 1].str);
  return out;
}
}  // namespace

std::vector<std::pair<std::string, std::string>> latest_entry(core::RedisClient& c, const std::string& stream) {
  auto r = c.command({"XREVRANGE", stream, "+", "-", "COUNT", "1"});
  if (r.elements.empty()) return {};
  return entry_fields(r.elements[0]);
}

std::vector<std::vector<std::pair<std::string, std::string>>> latest_per(core::RedisClient& c,
                                                                         const std::string& stream,
                                                                         const std::string& group_field, int scan) {
  auto r = c.command({"XREVRANGE", stream, "+", "-", "COUNT", std::to_string(scan)});
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> newest;
  for (const auto& e : r.elements) {
    auto f = entry_fields(e);
    const std::string key = field(f, group_field);
    if (!newest.count(key)) newest[key] = f;
  }
  std::vector<std::vector<std::pair<std::string, std::string>>> out;
  for (auto& [k, v] : newest) out.push_back(v);
  return out;
}

namespace {
// Walks the stream from the newest entry back, a page at a time, until `visit` returns false or
// `max_scan` entries were seen.
void scan_back(core::RedisClient& c, const std::string& stream, int max_scan,
               const std::function<bool(const std::vector<std::pair<std::string, std::string>>&)>& visit) {
  std::string end = "+";
  int seen = 0;
  while (seen < max_scan) {
    const int page = std::min(500, max_scan - seen);
    auto r = c.command({"XREVRANGE", stream, end, "-", "COUNT", std::to_string(page)});
    for (const auto& e : r.elements) {
      if (!visit(entry_fields(e))) return;
      if (!e.elements.empty()) end = "(" + e.elements[0].str;  // exclusive: the next page starts before it
    }
    seen += static_cast<int>(r.elements.size());
    if (static_cast<int>(r.elements.size()) < page) return;
  }
}
}  // namespace

std::vector<std::vector<std::pair<std::string, std::string>>> latest_of(core::RedisClient& c,
                                                                        const std::string& stream,
                                                                        const std::string& group_field,
                                                                        const std::vector<std::string>& values,
                                                                        int max_scan) {
  std::vector<std::vector<std::pair<std::string, std::string>>> out(values.size());
  size_t found = 0;
  scan_back(c, stream, max_scan, [&](const std::vector<std::pair<std::string, std::string>>& f) {
    const std::string v = field(f, group_field);
    for (size_t i = 0; i < values.size(); ++i)
      if (values[i] == v && out[i].empty()) {
        out[i] = f;
        ++found;
      }
    return found < values.size();
  });
  return out;
}

std::vector<std::vector<std::pair<std::string, std::string>>> recent_entries(core::RedisClient& c,
                                                                            const std::string& stream,
                                                                            const std::string& group_field,
                                                                            const std::string& value, size_t n,
                                                                            int max_scan) {
  std::vector<std::vector<std::pair<std::string, std::string>>> out;
  if (n == 0) return out;
  scan_back(c, stream, max_scan, [&](const std::vector<std::pair<std::string, std::string>>& f) {
    if (field(f, group_field) == value) out.push_back(f);
    return out.size() < n;
  });
  return out;
}

std::string field(const std::vector<std::pair<std::string, std::string>>& fields, const std::string& name,
                  const std::string& def) {
  for (const auto& [k, v] : fields)
    if (k == name) return v;
  return def;
}

}  // namespace orchard::cli
