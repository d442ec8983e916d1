#include "orchard/orchestrator/scheduler.h"

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "orchard/core/error.h"
#include "orchard/orchestrator/agent.h"
#include "orchard/orchestrator/process.h"

namespace orchard::orchestrator {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

const char* proc_state_name(ProcState s) {
  switch (s) {
    case ProcState::kPending: return "pending";
    case ProcState::kStarting: return "starting";
    case ProcState::kRunning: return "running";
    case ProcState::kBackoff: return "backoff";
    case ProcState::kStopping: return "stopping";
    case ProcState::kExited: return "exited";
  }
  return "?";
}

namespace {
std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}
}  // namespace

namespace {

// The agents are called from one worker thread, so a round (all agents at once, up to one
// timeout) never holds the event loop: a job's completion is posted back to the io_context and
// runs there like any other handler. Jobs run in submission order, so a signal_many queued after
// a start_many for the same process reaches the agent after it. AgentClients are not
// thread-safe: while the worker exists only it calls them (drain() before using them directly).
class AgentRounds {
 public:
  using Done = std::function<void(std::vector<nlohmann::json>)>;
  AgentRounds(boost::asio::io_context& io, std::shared_ptr<bool> alive) : io_(io), alive_(std::move(alive)) {}
  ~AgentRounds() { stop(); }

  void submit(std::vector<AgentClient*> agents, std::vector<nlohmann::json> requests, Done done) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;  // the scheduler is going away
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
    jobs_.push_back({std::move(agents), std::move(requests), std::move(done)});
    ++unfinished_;
    cv_.notify_all();
  }
  // Blocks until every submitted round has been made (completions posted, not yet run).
  void drain() {
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait(lock, [this] { return unfinished_ == 0; });
  }
  // Ends the worker; rounds not yet started are dropped.
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      unfinished_ -= static_cast<int>(jobs_.size());
      jobs_.clear();
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct Job {
    std::vector<AgentClient*> agents;
    std::vector<nlohmann::json> requests;
    Done done;
  };
  void loop() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (stopping_) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      std::vector<nlohmann::json> replies;
      try {
        AgentClient::try_call_each(job.agents, job.requests, &replies);
      } catch (const std::exception&) {
        replies.assign(job.agents.size(), nlohmann::json());  // as if none had answered
      }
      if (job.done)
        boost::asio::post(io_, [alive = alive_, done = std::move(job.done), replies = std::move(replies)]() mutable {
          if (*alive) done(std::move(replies));
        });
      std::lock_guard<std::mutex> lock(mu_);
      if (--unfinished_ == 0) idle_cv_.notify_all();
    }
  }
  boost::asio::io_context& io_;
  std::shared_ptr<bool> alive_;  // false once the scheduler is gone: completions are then dropped
  std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<Job> jobs_;
  int unfinished_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace

struct Scheduler::Impl {
  explicit Impl(boost::asio::io_context& io)
      : io(io), sigchld(io, SIGCHLD), timer(io), alive(std::make_shared<bool>(true)), rounds(io, alive) {}
  boost::asio::io_context& io;
  boost::asio::signal_set sigchld;
  boost::asio::steady_timer timer;
  std::map<std::string, double> restart_at;  // kBackoff: when to start again
  std::set<std::string> gang_failing;        // gangs with a member down, until they restart
  std::map<std::string, double> kill_at;     // kStopping: SIGKILL after this
  std::shared_ptr<bool> alive;
  AgentRounds rounds;
  bool poll_in_flight = false, signals_in_flight = false;
  std::set<std::string> launching;           // remote starts sent, not answered yet
};

Scheduler::Scheduler(boost::asio::io_context& io, SchedulerOptions options)
    : impl_(std::make_unique<Impl>(io)), options_(options) {}

Scheduler::~Scheduler() {
  // The worker first: from here on this thread calls the agents itself.
  *impl_->alive = false;
  impl_->rounds.stop();
  for (auto& [name, p] : procs_) {
    if (p.pid <= 0) {
      // A start in flight (or unanswered) may have happened: kill by name.
      if (!p.spec.host.empty() && (impl_->launching.count(name) || start_unanswered_.count(name)))
        pending_signals_[p.spec.host].emplace_back(name, SIGKILL);
      continue;
    }
    if (!p.spec.host.empty()) {
      send_signal(p, SIGKILL);
      continue;
    }
    signal_tree(p.pid, SIGKILL);
    int status;
    ::waitpid(p.pid, &status, 0);
    kill_leftovers(p.pid);
    p.pid = -1;
  }
  try {
    flush_signals(/*wait=*/true);
  } catch (const std::exception&) {
  }
}

void Scheduler::set_agent(const std::string& host, std::shared_ptr<AgentClient> agent) {
  agents_[host] = std::move(agent);
  agent_last_ok_[host] = steady_seconds();
}

void Scheduler::adopt(const std::string& name, pid_t pid) {
  auto it = procs_.find(name);
  if (it == procs_.end()) throw Error("scheduler: cannot adopt unknown process '" + name + "'");
  it->second.pid = pid;
  it->second.state = ProcState::kRunning;
  it->second.started_at = steady_seconds();
  emit("adopt", name, "pid " + std::to_string(pid) + " on " + it->second.spec.host);
}

void Scheduler::send_signal(ProcInfo& p, int sig) {
  if (p.pid <= 0) return;
  if (p.spec.host.empty()) {
    signal_tree(p.pid, sig);
    return;
  }
  // Remote: queued, and sent by flush_signals() with one signal_many request per agent when the
  // current handler is done (a stopping group of twenty actors is one round, not twenty calls).
  auto& queued = pending_signals_[p.spec.host];
  for (const auto& [name, s] : queued)
    if (name == p.spec.name && s == sig) return;
  queued.emplace_back(p.spec.name, sig);
}

void Scheduler::flush_signals(bool wait) {
  if (pending_signals_.empty() || (impl_->signals_in_flight && !wait)) return;
  std::vector<AgentClient*> agents;
  std::vector<nlohmann::json> requests;
  for (const auto& [host, queued] : pending_signals_) {
    auto it = agents_.find(host);
    if (it == agents_.end()) continue;
    nlohmann::json signals = nlohmann::json::array();
    for (const auto& [name, sig] : queued) signals.push_back({{"name", name}, {"signal", sig}});
    agents.push_back(it->second.get());
    requests.push_back({{"op", "signal_many"}, {"run", options_.run}, {"signals", signals}});
  }
  pending_signals_.clear();
  // An agent that does not answer keeps its processes: they are signalled again (a stop's
  // SIGKILL every tick, a hung process at its next check) or counted as failed once the agent
  // has been silent for agent_lost_s.
  if (wait) {
    std::vector<nlohmann::json> replies;
    AgentClient::try_call_each(agents, requests, &replies);
    return;
  }
  // One signal round at a time: what is queued meanwhile (deduplicated) goes out with the next,
  // so a silent agent cannot pile up rounds behind its timeouts.
  impl_->signals_in_flight = true;
  impl_->rounds.submit(std::move(agents), std::move(requests), [this](std::vector<nlohmann::json>) {
    impl_->signals_in_flight = false;
    flush_signals();
  });
}

// Remote processes: exits come from the agents' `list`; an agent silent for agent_lost_s makes
// its processes count as failed ("agent unreachable").
void Scheduler::poll_agents() {
  // One round, one `list` per agent with live processes, all agents at once: it reports exits,
  // and carries the new log output of the processes still starting there (readiness). A silent
  // agent costs the round one timeout, a suspect one only its short timeout; the round runs on
  // the agents' worker and its replies are handled here when it is done.
  std::vector<std::string> hosts;
  std::vector<AgentClient*> asked;
  std::vector<nlohmann::json> requests;
  std::map<std::string, pid_t> reading;  // name -> the pid its log read is for
  for (auto& [host, agent] : agents_) {
    bool any = false;
    nlohmann::json reads = nlohmann::json::array();
    for (auto& [name, p] : procs_) {
      if (p.spec.host != host || p.pid <= 0) continue;
      any = true;
      if (p.state == ProcState::kStarting) {
        reads.push_back({{"name", name}, {"offset", static_cast<int64_t>(log_offsets_[name])}});
        reading[name] = p.pid;
      }
    }
    if (!any) continue;
    hosts.push_back(host);
    asked.push_back(agent.get());
    // "lease": this poll keeps the run's processes on that host from being ended as orphans.
    nlohmann::json request = {{"op", "list"}, {"run", options_.run}, {"lease", true}};
    if (!reads.empty()) request["reads"] = reads;
    requests.push_back(std::move(request));
  }
  if (asked.empty()) return;
  impl_->poll_in_flight = true;
  impl_->rounds.submit(std::move(asked), std::move(requests),
                       [this, hosts, reading](std::vector<nlohmann::json> replies) {
                         impl_->poll_in_flight = false;
                         if (phase_ == Phase::kDone) return;
                         on_agent_lists(hosts, replies);
                         if (!reading.empty()) on_remote_logs(hosts, reading, replies);
                         flush_signals();
                       });
}

void Scheduler::on_agent_lists(const std::vector<std::string>& hosts, const std::vector<nlohmann::json>& replies) {
  const double now = steady_seconds();
  for (size_t i = 0; i < hosts.size(); ++i) {
    const std::string& host = hosts[i];
    const nlohmann::json& reply = replies[i];
    const bool ok = reply.is_object() && reply.value("ok", false);
    if (!ok) {
      if (now - agent_last_ok_[host] > options_.agent_lost_s) {
        for (auto& [name, p] : procs_)
          if (p.spec.host == host && p.pid > 0)
            handle_exit(p, -1, "agent " + host + " unreachable for " +
                                   std::to_string(static_cast<int>(now - agent_last_ok_[host])) + " s");
        agent_last_ok_[host] = now;  // one verdict per silence; restarts will ask again
      }
      continue;
    }
    agent_last_ok_[host] = now;
    if (!reply.contains("procs") || !reply["procs"].is_array()) continue;
    for (const auto& r : reply["procs"]) {
      if (!r.is_object()) continue;
      auto it = procs_.find(r.value("name", ""));
      if (it == procs_.end() || it->second.spec.host != host) continue;
      ProcInfo& p = it->second;
      if (p.pid <= 0 || r.value("pid", -1) != p.pid || r.value("running", true)) continue;
      handle_exit(p, r.value("exit_status", -1), r.value("exit", std::string("gone")));
    }
  }
}

void Scheduler::emit(const std::string& kind, const std::string& proc, const std::string& detail) {
  if (on_event) on_event({kind, proc, detail});
}

int Scheduler::count(const std::string& role) const {
  int n = 0;
  for (const auto& [name, p] : procs_)
    if (p.spec.role == role && !removed_.count(name) && p.state != ProcState::kExited) ++n;
  return n;
}

void Scheduler::add(ProcessSpec spec) {
  if (procs_.count(spec.name)) throw Error("scheduler: a process named '" + spec.name + "' already exists");
  if (spec.argv.empty()) throw Error("scheduler: process '" + spec.name + "' has no command");
  const std::string name = spec.name;
  ProcInfo info;
  info.spec = std::move(spec);
  auto& p = procs_.emplace(name, std::move(info)).first->second;
  if (phase_ == Phase::kRunning) launch_all({&p});  // scaling up: every group is up already
  flush_signals();
}

void Scheduler::remove(const std::string& name, const std::string& why) {
  auto it = procs_.find(name);
  if (it == procs_.end()) throw Error("scheduler: no process named '" + name + "'");
  ProcInfo& p = it->second;
  removed_[name] = true;
  emit("stop", name, why);
  if (p.pid > 0) {
    send_signal(p, SIGTERM);
    p.state = ProcState::kStopping;
    impl_->kill_at[name] = steady_seconds() + options_.stop_timeout_s;
  } else {
    p.state = ProcState::kExited;
  }
  flush_signals();
}

void Scheduler::set_liveness_check(std::function<bool(const ProcInfo&)> alive, double every_s) {
  alive_ = std::move(alive);
  alive_every_s_ = every_s;
  next_alive_check_ = steady_seconds() + every_s;
}

void Scheduler::launch_all(const std::vector<ProcInfo*>& procs) {
  // Local processes are forked here; remote ones are started with one start_many request per
  // agent, all agents at once (AgentClient::try_call_each), so starting a group costs one round
  // however many processes and hosts it has, and a silent agent one timeout.
  std::string refused;  // the first start that cannot work (bad program, refused by the agent)
  auto refuse = [&](ProcInfo& p, const std::string& why) {
    p.state = ProcState::kExited;
    p.pid = -1;
    emit("failed", p.spec.name, "could not be started: " + why);
    if (refused.empty()) refused = p.spec.name + " could not be started: " + why;
  };
  std::map<std::string, std::vector<ProcInfo*>> by_host;
  for (ProcInfo* p : procs) {
    if (!p->spec.host.empty()) {
      if (agents_.count(p->spec.host))
        by_host[p->spec.host].push_back(p);
      else
        refuse(*p, "no agent for host '" + p->spec.host + "'");
      continue;
    }
    try {
      launch_local(*p);
    } catch (const std::exception& e) {
      refuse(*p, e.what());
    }
  }
  if (!refused.empty()) stop(RunOutcome::kFailed, refused);
  if (by_host.empty() || phase_ == Phase::kStopping || phase_ == Phase::kDone) return;
  std::vector<AgentClient*> agents;
  std::vector<nlohmann::json> requests;
  std::vector<std::vector<std::string>> batches;  // names, in each request's order
  std::vector<std::string> hosts;                 // each request's host
  const double now = steady_seconds();
  for (auto& [host, batch] : by_host) {
    nlohmann::json starts = nlohmann::json::array();
    batches.emplace_back();
    for (ProcInfo* p : batch) {
      nlohmann::json files = nlohmann::json::object();
      for (const auto& [f, content] : p->spec.files) files[f] = content;
      starts.push_back({{"name", p->spec.name},
                        {"argv", p->spec.argv},
                        {"env", p->spec.env},
                        {"cpus", p->spec.cpus},
                        {"files", files}});
      // Starting, without a pid until the agent answers (on_started).
      p->state = ProcState::kStarting;
      p->pid = -1;
      p->started_at = now;
      impl_->launching.insert(p->spec.name);
      batches.back().push_back(p->spec.name);
    }
    agents.push_back(agents_.at(host).get());
    nlohmann::json request = {{"op", "start_many"}, {"run", options_.run}, {"starts", starts}};
    if (!options_.run_epoch.empty()) request["epoch"] = options_.run_epoch;
    // At start-up the agent holds its answer until the group's processes there are ready (or
    // the wait is over), output included: readiness costs no poll round trip of its own. Not
    // while the run goes on, where the worker thread must stay free for the polls and signals.
    if (phase_ == Phase::kStarting && options_.agent_start_wait_ms > 0)
      request["wait_ready_ms"] = options_.agent_start_wait_ms;
    hosts.push_back(host);
    requests.push_back(std::move(request));
  }
  impl_->rounds.submit(std::move(agents), std::move(requests),
                       [this, batches, hosts](std::vector<nlohmann::json> replies) {
                         on_started(batches, replies);
                         // Output that came with the answers (wait_ready_ms): readiness as from a poll.
                         std::map<std::string, pid_t> reading;
                         for (const auto& batch : batches)
                           for (const auto& name : batch) {
                             const ProcInfo& p = procs_.at(name);
                             if (p.pid > 0 && p.state == ProcState::kStarting) reading[name] = p.pid;
                           }
                         if (!reading.empty()) on_remote_logs(hosts, reading, replies);
                         flush_signals();
                       });
}

void Scheduler::on_started(const std::vector<std::vector<std::string>>& batches,
                           const std::vector<nlohmann::json>& replies) {
  std::string refused;  // the first start an agent refused: the run cannot go on without it
  const double now = steady_seconds();
  for (size_t i = 0; i < batches.size(); ++i) {
    const nlohmann::json& reply = replies[i];
    // "expired" in time can only come from a clock that moved under the offset estimate: not a
    // refusal of the start itself, so it is retried like an unanswered one.
    const bool expired = reply.is_object() && !reply.value("ok", false) &&
                         reply.value("error", std::string()).find("expired:") != std::string::npos;
    const bool answered = reply.is_object() && !expired;
    const bool usable = answered && reply.value("ok", false) && reply.contains("started") &&
                        reply["started"].is_array() && reply["started"].size() == batches[i].size();
    for (size_t k = 0; k < batches[i].size(); ++k) {
      const std::string& name = batches[i][k];
      impl_->launching.erase(name);
      ProcInfo& p = procs_.at(name);
      // Still wanted? The run may have begun to stop, the process been scaled away, or its gang
      // gone down while the request was out.
      const bool unwanted = phase_ == Phase::kStopping || phase_ == Phase::kDone || removed_.count(name) ||
                            (!p.spec.gang.empty() && impl_->gang_failing.count(p.spec.gang));
      if (!answered) {
        // The agent may be briefly unreachable: the start counts as a failed one and is tried
        // again after the backoff, within the restart budget. A start that did happen is found
        // then: start_many answers with the process it already runs.
        start_unanswered_.insert(name);
        if (unwanted) pending_signals_[p.spec.host].emplace_back(name, SIGTERM);  // in case it did start
        handle_exit(p, -1, "could not be started: agent " + p.spec.host +
                               (expired ? " refused 'start_many' as expired (has its clock moved?)"
                                        : " did not answer 'start_many' in time"));
        continue;
      }
      const nlohmann::json* e = usable ? &reply["started"][k] : nullptr;
      if (!e || !e->is_object() || e->contains("error") || e->value("pid", -1) <= 0) {
        const std::string why =
            !usable ? "agent " + p.spec.host + ": " + reply.value("error", std::string("a reply without 'started'"))
                    : "on " + p.spec.host + ": " + (e->is_object() ? e->value("error", std::string("no pid")) : "no pid");
        p.state = ProcState::kExited;
        p.pid = -1;
        emit("failed", name, "could not be started: " + why);
        if (refused.empty() && !unwanted) refused = name + " could not be started: " + why;
        continue;
      }
      start_unanswered_.erase(name);
      p.pid = e->value("pid", -1);
      // Readiness is read from the log: skip what earlier incarnations wrote (the agent says where
      // this start's output begins).
      log_offsets_[name] = static_cast<size_t>(e->value("log_size", int64_t{0}));
      log_pending_[name].clear();
      p.state = ProcState::kStarting;
      if (!reply.contains("logs")) p.started_at = now;  // a held answer: counted from the request
      emit("start", name,
           "pid " + std::to_string(p.pid) + " on " + p.spec.host +
               (e->value("already_running", false) ? " (already running)" : ""));
      if (unwanted) {
        send_signal(p, SIGTERM);
        p.state = ProcState::kStopping;
        impl_->kill_at[name] = now + options_.stop_timeout_s;
      }
    }
  }
  if (!refused.empty()) stop(RunOutcome::kFailed, refused);
  if (phase_ == Phase::kStopping) advance_stop();  // it may have been waiting for these answers
}

void Scheduler::launch_local(ProcInfo& p) {
  SpawnOptions so;
  so.stdout_path = p.spec.log_path;
  so.stderr_path = p.spec.log_path;
  so.new_process_group = true;  // a terminal's Ctrl-C reaches the scheduler only; it stops the run in order
  so.parent_death_signal = options_.parent_death_signal;
  so.extra_env = p.spec.env;
  so.cpus = p.spec.cpus;
  // Readiness is read from the log: skip what earlier incarnations wrote.
  {
    std::ifstream in(p.spec.log_path, std::ios::ate | std::ios::binary);
    log_offsets_[p.spec.name] = in ? static_cast<size_t>(in.tellg()) : 0;
    log_pending_[p.spec.name].clear();
  }
  p.pid = spawn_process(p.spec.argv, so);
  p.state = ProcState::kStarting;
  p.started_at = steady_seconds();
  emit("start", p.spec.name, "pid " + std::to_string(p.pid));
}

void Scheduler::on_remote_logs(const std::vector<std::string>& hosts, const std::map<std::string, pid_t>& asked,
                               const std::vector<nlohmann::json>& replies) {
  const double now = steady_seconds();
  bool became_ready = false;
  for (size_t i = 0; i < replies.size(); ++i) {
    if (replies[i].is_null() || !replies[i].value("ok", false) || !replies[i].contains("logs")) continue;
    for (const auto& entry : replies[i]["logs"]) {
      const std::string name = entry.value("name", "");
      auto it = procs_.find(name);
      auto was = asked.find(name);
      if (it == procs_.end() || it->second.spec.host != hosts[i] || entry.contains("error") || was == asked.end())
        continue;
      ProcInfo& p = it->second;
      if (p.pid != was->second || p.state != ProcState::kStarting) continue;  // restarted or changed meanwhile
      log_offsets_[name] = static_cast<size_t>(entry.value("offset", static_cast<int64_t>(log_offsets_[name])));
      const std::string chunk = entry.value("data", std::string());
      if (log_shows_ready(p, &chunk)) {
        p.state = ProcState::kRunning;
        emit("ready", name, "after " + std::to_string(static_cast<int>((now - p.started_at) * 1000)) + " ms");
        became_ready = true;
      }
    }
  }
  if (became_ready && phase_ == Phase::kStarting) advance_start();
}

bool Scheduler::log_shows_ready(ProcInfo& p, const std::string* remote_chunk) {
  size_t& offset = log_offsets_[p.spec.name];
  std::string chunk;
  if (!p.spec.host.empty()) {
    if (!remote_chunk) return false;
    chunk = *remote_chunk;
  } else {
    std::ifstream in(p.spec.log_path, std::ios::binary);
    if (!in) return false;
    in.seekg(static_cast<std::streamoff>(offset));
    chunk.assign((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    offset += chunk.size();
  }
  std::string& pending = log_pending_[p.spec.name];
  pending += chunk;
  size_t nl;
  bool ready = false;
  while ((nl = pending.find('\n')) != std::string::npos) {
    if (pending.compare(0, 5, "ready") == 0) ready = true;
    pending.erase(0, nl + 1);
  }
  if (pending.size() > 65536) pending.erase(0, pending.size() - 4096);
  return ready;
}

void Scheduler::start() {
  if (phase_ != Phase::kIdle) throw Error("scheduler: start() called twice");
  phase_ = Phase::kStarting;
  impl_->sigchld.async_wait([this](const boost::system::error_code& ec, int) {
    if (!ec) on_sigchld();
  });
  starting_group_ = INT32_MIN;
  advance_start();
  tick();  // flushes the signals queued so far
}

void Scheduler::advance_start() {
  // The lowest group with a pending process starts once every lower group is running.
  for (;;) {
    int next = INT32_MAX;
    bool lower_busy = false;
    for (auto& [name, p] : procs_) {
      if (removed_.count(name)) continue;
      if (p.state == ProcState::kPending) next = std::min(next, p.spec.group);
    }
    if (next == INT32_MAX) {
      bool all_up = true;
      for (auto& [name, p] : procs_)
        if (!removed_.count(name) && p.state != ProcState::kRunning) all_up = false;
      if (all_up && phase_ == Phase::kStarting) {
        phase_ = Phase::kRunning;
        if (on_ready) on_ready();
      }
      return;
    }
    for (auto& [name, p] : procs_)
      if (!removed_.count(name) && p.spec.group < next && p.state != ProcState::kRunning) lower_busy = true;
    if (lower_busy) return;
    starting_group_ = next;
    std::vector<ProcInfo*> group;
    for (auto& [name, p] : procs_)
      if (!removed_.count(name) && p.state == ProcState::kPending && p.spec.group == next) group.push_back(&p);
    launch_all(group);
    return;
  }
}

void Scheduler::on_sigchld() {
  // One SIGCHLD may stand for several exits: reap every known child that has exited.
  for (auto& [name, p] : procs_) {
    if (p.pid <= 0 || !p.spec.host.empty()) continue;
    int status = 0;
    pid_t r = ::waitpid(p.pid, &status, WNOHANG);
    if (r == p.pid) {
      kill_leftovers(p.pid);  // children it left in its process group
      handle_exit(p, status);
    }
  }
  flush_signals();  // a gang member's exit stops the others, remote ones among them
  if (phase_ != Phase::kDone) {
    impl_->sigchld.async_wait([this](const boost::system::error_code& ec, int) {
      if (!ec) on_sigchld();
    });
  }
}

void Scheduler::handle_exit(ProcInfo& p, int status, const std::string& how_override) {
  const std::string how = how_override.empty() ? describe_status(status) : how_override;
  p.pid = -1;
  p.last_exit = how;
  impl_->kill_at.erase(p.spec.name);
  const bool clean = status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (phase_ == Phase::kStopping || phase_ == Phase::kDone || removed_.count(p.spec.name)) {
    p.state = ProcState::kExited;
    emit("exit", p.spec.name, how);
    if (phase_ == Phase::kStopping) advance_stop();
    return;
  }
  const bool gang_failing = !p.spec.gang.empty() && impl_->gang_failing.count(p.spec.gang);
  if (clean && p.spec.clean_exit_ends_run && !gang_failing) {
    p.state = ProcState::kExited;
    emit("exit", p.spec.name, how + " (ends the run)");
    stop(RunOutcome::kFinished, p.spec.name + " finished");
    return;
  }
  if (clean && p.spec.clean_exit_is_done && !gang_failing) {
    p.state = ProcState::kExited;
    emit("exit", p.spec.name, how + " (done)");
    return;
  }
  if (p.restarts >= options_.max_restarts) {
    p.state = ProcState::kExited;
    emit("failed", p.spec.name, how + "; restart budget of " + std::to_string(options_.max_restarts) + " used up");
    stop(RunOutcome::kFailed, p.spec.name + " failed " + std::to_string(p.restarts + 1) + " times (last: " + how +
                                  "); see " + p.spec.log_path);
    return;
  }
  const double backoff =
      std::min(options_.backoff_max_s, options_.backoff_initial_s * std::pow(2.0, static_cast<double>(p.restarts)));
  p.state = ProcState::kBackoff;
  impl_->restart_at[p.spec.name] = steady_seconds() + backoff;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2g", backoff);
  if (p.spec.gang.empty()) {
    emit("exit", p.spec.name, how + "; restarting in " + buf + " s");
    return;
  }
  // The rest of the gang cannot go on without it: stop the members still running; all restart
  // together once none is left (tick()). Members that had finished (done) start again too.
  const bool first = impl_->gang_failing.insert(p.spec.gang).second;
  emit("exit", p.spec.name,
       how + "; restarting gang '" + p.spec.gang + "' in " + buf + " s" + (first ? " (stopping the other members)" : ""));
  const double now = steady_seconds();
  for (auto& [name, q] : procs_) {
    if (q.spec.gang != p.spec.gang || name == p.spec.name || removed_.count(name)) continue;
    if (q.pid > 0 && q.state != ProcState::kStopping) {
      send_signal(q, SIGTERM);
      q.state = ProcState::kStopping;
      impl_->kill_at[name] = now + options_.stop_timeout_s;
    } else if (q.pid <= 0 && q.state == ProcState::kExited) {
      q.state = ProcState::kBackoff;  // done earlier: starts again with the gang
      impl_->restart_at[name] = now + backoff;
    }
  }
}

void Scheduler::stop(RunOutcome outcome, const std::string& reason) {
  if (phase_ == Phase::kStopping || phase_ == Phase::kDone) return;
  outcome_ = outcome;
  reason_ = reason;
  phase_ = Phase::kStopping;
  emit("stop", "run", reason);
  stopping_group_ = INT32_MAX;
  group_stop_deadline_ = 0;
  for (auto& [name, p] : procs_)
    if (p.state == ProcState::kBackoff || p.state == ProcState::kPending) p.state = ProcState::kExited;
  // A remote start whose reply never came may have happened all the same: signal by name (the
  // agent signals whatever runs under it for this run, if anything).
  for (const auto& name : start_unanswered_) {
    const ProcInfo& p = procs_.at(name);
    if (p.pid <= 0 && !p.spec.host.empty()) pending_signals_[p.spec.host].emplace_back(name, SIGTERM);
  }
  advance_stop();
  flush_signals();
}

std::vector<std::string> Scheduler::sweep_remote() {
  std::vector<std::string> killed;
  if (agents_.empty()) return killed;
  impl_->rounds.drain();  // the worker's rounds are made: this thread may call the agents now
  // end_run on every agent at once: each kills what still runs of the run there and refuses
  // later starts of it (of this epoch), so a start still queued in an agent that does not
  // answer now cannot bring a process back after the orchestrator has gone.
  std::vector<std::string> hosts;
  std::vector<AgentClient*> asked;
  for (auto& [host, agent] : agents_) {
    hosts.push_back(host);
    asked.push_back(agent.get());
  }
  nlohmann::json request = {{"op", "end_run"}, {"run", options_.run}};
  if (!options_.run_epoch.empty()) request["epoch"] = options_.run_epoch;
  std::vector<nlohmann::json> replies;
  AgentClient::try_call_all(asked, request, &replies);
  for (size_t i = 0; i < hosts.size(); ++i) {
    if (!replies[i].is_object() || !replies[i].contains("killed") || !replies[i]["killed"].is_array()) continue;
    for (const auto& k : replies[i]["killed"])
      if (k.is_object())
        killed.push_back(k.value("name", std::string("?")) + "@" + hosts[i] + " (pid " +
                         std::to_string(k.value("pid", -1)) + ")");
  }
  return killed;
}

void Scheduler::advance_stop() {
  // Highest group first; the next group gets SIGTERM once the current one has exited.
  for (;;) {
    // A process whose start is still out counts as alive: its answer may bring a pid to stop.
    auto alive = [this](const std::string& name, const ProcInfo& p) { return p.pid > 0 || impl_->launching.count(name); };
    bool current_alive = false;
    for (auto& [name, p] : procs_)
      if (alive(name, p) && p.spec.group == stopping_group_) current_alive = true;
    if (current_alive) return;
    int next = INT32_MIN;
    for (auto& [name, p] : procs_)
      if (alive(name, p) && p.spec.group < stopping_group_) next = std::max(next, p.spec.group);
    if (next == INT32_MIN) {
      // Every process has exited.
      for (auto& [name, p] : procs_)
        if (p.pid <= 0) p.state = ProcState::kExited;
      if (phase_ != Phase::kDone) {
        phase_ = Phase::kDone;
        impl_->timer.cancel();
        impl_->sigchld.cancel();
        if (on_done) on_done(outcome_, reason_);
      }
      return;
    }
    stopping_group_ = next;
    group_stop_deadline_ = steady_seconds() + options_.stop_timeout_s;
    for (auto& [name, p] : procs_) {
      if (p.pid > 0 && p.spec.group == next) {
        send_signal(p, SIGTERM);
        p.state = ProcState::kStopping;
      }
    }
  }
}

void Scheduler::tick() {
  if (phase_ == Phase::kDone) return;
  double now = steady_seconds();
  // Remote processes: a poll round every agent_poll_s, or at every tick while some are starting
  // (their readiness comes with it) or stopping (an ordered stop goes on as soon as a group has
  // exited); one round at a time.
  if (!agents_.empty() && !impl_->poll_in_flight) {
    bool changing = false;
    for (auto& [name, p] : procs_)
      changing = changing || (!p.spec.host.empty() && p.pid > 0 &&
                              (p.state == ProcState::kStarting || p.state == ProcState::kStopping));
    if (changing || now >= next_agent_poll_) {
      next_agent_poll_ = now + options_.agent_poll_s;
      poll_agents();
    }
  }
  // Readiness: local logs are read here, remote ones come with the poll round (on_remote_logs).
  bool became_ready = false;
  for (auto& [name, p] : procs_) {
    if (p.state != ProcState::kStarting) continue;
    if (p.spec.host.empty() && log_shows_ready(p)) {
      p.state = ProcState::kRunning;
      emit("ready", name, "after " + std::to_string(static_cast<int>((now - p.started_at) * 1000)) + " ms");
      became_ready = true;
    } else if (now - p.started_at > p.spec.ready_timeout_s && p.pid > 0) {
      emit("timeout", name, "not ready within " + std::to_string(static_cast<int>(p.spec.ready_timeout_s)) + " s");
      send_signal(p, SIGKILL);  // reaped by on_sigchld, then restarted or failed
    }
  }
  if (became_ready && phase_ == Phase::kStarting) advance_start();
  // Restarts after backoff. A gang starts again only as a whole: once every member is waiting
  // to restart and the earliest of their restart times has come.
  std::vector<std::string> due;
  std::set<std::string> gangs_due;
  for (auto it = impl_->restart_at.begin(); it != impl_->restart_at.end();) {
    ProcInfo& p = procs_.at(it->first);
    if (p.state != ProcState::kBackoff) {
      it = impl_->restart_at.erase(it);
      continue;
    }
    if (p.spec.gang.empty()) {
      if (now >= it->second) due.push_back(it->first);
    } else if (now >= it->second && !gangs_due.count(p.spec.gang)) {
      bool all_waiting = true;
      for (auto& [name, q] : procs_)
        if (q.spec.gang == p.spec.gang && !removed_.count(name) && q.state != ProcState::kBackoff) all_waiting = false;
      if (all_waiting) {
        gangs_due.insert(p.spec.gang);
        for (auto& [name, q] : procs_)
          if (q.spec.gang == p.spec.gang && !removed_.count(name)) due.push_back(name);
      }
    }
    ++it;
  }
  for (const auto& g : gangs_due) impl_->gang_failing.erase(g);
  std::vector<ProcInfo*> restarting;
  for (const auto& name : due) {
    ProcInfo& p = procs_.at(name);
    impl_->restart_at.erase(name);
    if (phase_ == Phase::kStopping || phase_ == Phase::kDone || p.state != ProcState::kBackoff) continue;
    ++p.restarts;
    emit("restart", name, "restart " + std::to_string(p.restarts));
    restarting.push_back(&p);
  }
  launch_all(restarting);
  // Scale-down stops that overran their time.
  for (auto& [name, at] : impl_->kill_at) {
    ProcInfo& p = procs_.at(name);
    if (p.pid > 0 && now >= at) send_signal(p, SIGKILL);
  }
  // Run stop: the current group overran its time.
  if (phase_ == Phase::kStopping && group_stop_deadline_ > 0 && now >= group_stop_deadline_) {
    for (auto& [name, p] : procs_)
      if (p.pid > 0 && p.spec.group == stopping_group_) send_signal(p, SIGKILL);
    group_stop_deadline_ = now + options_.stop_timeout_s;
  }
  // Liveness (heartbeats).
  if (alive_ && phase_ == Phase::kRunning && now >= next_alive_check_) {
    next_alive_check_ = now + alive_every_s_;
    for (auto& [name, p] : procs_) {
      if (p.state != ProcState::kRunning || p.pid <= 0 || removed_.count(name)) continue;
      if (!alive_(p)) {
        emit("hung", name, "no heartbeat; killing it");
        send_signal(p, SIGKILL);
      }
    }
  }
  flush_signals();
  impl_->timer.expires_after(std::chrono::microseconds(static_cast<int64_t>(options_.tick_s * 1e6)));
  impl_->timer.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) tick();
  });
}

}  // namespace orchard::orchestrator
