// The node agent and multi-host runs. Hosts are network namespaces made by the test (`ip netns`,
// a veth pair to each, one `orchard agent` inside each): separate network stacks on one machine,
// reached only over their own addresses. Where namespaces cannot be created (not root, no
// iproute2) those tests are skipped with the reason; the agent's own protocol tests always run.
#include <gtest/gtest.h>

#include <cstdint>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <fstream>
#include <regex>
#include <set>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "orchard/core/error.h"
#include "orchard/core/net.h"
#include "orchard/core/wire.h"
#include "orchard/orchestrator/agent.h"
#include "orchard/orchestrator/process.h"
#include "orchard/orchestrator/scheduler.h"
#include "support/child_process.h"

namespace fs = std::filesystem;
using orchard::orchestrator::AgentClient;
using orchard::orchestrator::run_command;
using orchard::testing::ChildProcess;
using orchard::testing::orchard_bin;

namespace {

const char* kToken = "0123456789abcdef-test-token";

struct Dir {
  fs::path path;
  explicit Dir(const std::string& name) {
    path = fs::temp_directory_path() / ("orchard-agent-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
    std::ofstream(path / "token") << kToken << "\n";
    std::ofstream(path / "wrong-token") << "not-the-right-token-at-all\n";
  }
  ~Dir() { fs::remove_all(path); }
};

// Two namespaces, each with a veth pair to the root namespace; forwarding on so they reach
// each other through it. Removed (with everything running inside) on destruction.
class NetnsLab {
 public:
  struct Host {
    std::string ns, ip, root_ip;
  };
  NetnsLab() {
    // Subnets from the pid, so tests running at once (ctest -j) do not share one.
    const int k = static_cast<int>(::getpid() % 250) + 1;
    const int second = 100 + static_cast<int>((::getpid() / 250) % 50) * 2;
    const std::string tag = std::to_string(::getpid() % 100000);
    for (int i = 0; i < 2; ++i) {
      Host h;
      h.ns = "orch" + tag + (i ? "b" : "a");
      const std::string net = "10." + std::to_string(second + i) + "." + std::to_string(k) + ".";
      h.ip = net + "2";
      h.root_ip = net + "1";
      const std::string out = "ov" + tag + (i ? "b" : "a"), in = "iv" + tag + (i ? "b" : "a");
      const std::vector<std::vector<std::string>> steps = {
          {"ip", "netns", "add", h.ns},
          {"ip", "link", "add", out, "type", "veth", "peer", "name", in},
          {"ip", "link", "set", in, "netns", h.ns},
          {"ip", "addr", "add", h.root_ip + "/24", "dev", out},
          {"ip", "link", "set", out, "up"},
          {"ip", "netns", "exec", h.ns, "ip", "addr", "add", h.ip + "/24", "dev", in},
          {"ip", "netns", "exec", h.ns, "ip", "link", "set", in, "up"},
          {"ip", "netns", "exec", h.ns, "ip", "link", "set", "lo", "up"},
          {"ip", "netns", "exec", h.ns, "ip", "route", "add", "default", "via", h.root_ip}};
      hosts.push_back(h);
      links.push_back(out);
      for (const auto& s : steps) {
        auto r = run_command(s, 10000);
        if (r.exit_code != 0) {
          error = "`" + join(s) + "` failed: " + r.output;
          return;
        }
      }
    }
    auto fwd = run_command({"sysctl", "-n", "net.ipv4.ip_forward"}, 5000);
    old_forward = fwd.output.empty() ? "0" : fwd.output.substr(0, 1);
    auto r = run_command({"sysctl", "-w", "net.ipv4.ip_forward=1"}, 5000);
    if (r.exit_code != 0) error = "cannot enable IPv4 forwarding: " + r.output;
  }
  ~NetnsLab() {
    for (const auto& h : hosts) {
      // Whatever still runs in a namespace dies with the test.
      auto pids = run_command({"ip", "netns", "pids", h.ns}, 5000);
      std::istringstream in(pids.output);
      for (pid_t p; in >> p;) ::kill(p, SIGKILL);
      run_command({"ip", "netns", "del", h.ns}, 10000);
    }
    for (const auto& l : links) run_command({"ip", "link", "del", l}, 5000);
    if (!old_forward.empty()) run_command({"sysctl", "-w", "net.ipv4.ip_forward=" + old_forward}, 5000);
  }
  std::vector<pid_t> pids_in(const Host& h) {
    auto r = run_command({"ip", "netns", "pids", h.ns}, 5000);
    std::vector<pid_t> out;
    std::istringstream in(r.output);
    for (pid_t p; in >> p;) out.push_back(p);
    return out;
  }
  static std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
    return s;
  }
  std::vector<Host> hosts;
  std::vector<std::string> links;
  std::string error, old_forward;
};

std::unique_ptr<ChildProcess> start_agent(const NetnsLab::Host& h, const fs::path& dir, const std::string& state) {
  auto p = std::make_unique<ChildProcess>(std::vector<std::string>{
      "ip", "netns", "exec", h.ns, orchard_bin("orchard"), "agent", "--listen", "tcp://" + h.ip + ":7070",
      "--token-file", (dir / "token").string(), "--state-dir", (dir / state).string(), "--advertise", h.ip});
  return p;
}

std::string two_host_spec(const fs::path& dir, const NetnsLab& lab, const std::string& name, const std::string& budget) {
  const auto& a = lab.hosts[0];
  const auto& b = lab.hosts[1];
  std::ofstream(dir / "spec.yaml")
      << "name: " << name << "\nseed: 4\nenv: {name: CartPole-v1, num_envs: 4}\nppo: {segment_length: 32}\n"
      << "learner: {eval_every: 10, eval_episodes: 3, checkpoint_every_s: 0.5, report_every_s: 0.5}\n"
      << "actors: {count: 2, report_every_s: 0.5}\nbudget: " << budget << "\n"
      << "run_dir: " << (dir / "run").string() << "\n"
      << "orchestrator_address: " << a.root_ip << "\n"
      << "hosts:\n"
      << "  - {name: a, agent: 'tcp://" << a.ip << ":7070', token_file: " << (dir / "token").string() << "}\n"
      << "  - {name: b, agent: 'tcp://" << b.ip << ":7070', token_file: " << (dir / "token").string() << "}\n"
      << "placement: {replay: [a], learner: a, actors: [b, local]}\n";
  return (dir / "spec.yaml").string();
}

std::vector<std::string> home(const fs::path& dir) { return {"ORCHARD_HOME=" + (dir / "home").string()}; }

// Agents on loopback ports (one per name, state under the test's directory), each answering a
// ping through its client (the given timeout). Use with ASSERT_NO_FATAL_FAILURE.
struct LoopbackAgents {
  std::vector<std::unique_ptr<ChildProcess>> agents;
  std::vector<std::shared_ptr<AgentClient>> clients;
};
// extra_args[i]: more arguments for agent i's command line.
void start_loopback_agents(const Dir& d, const std::vector<std::string>& names, int timeout_ms, LoopbackAgents* out,
                           const std::vector<std::vector<std::string>>& extra_args = {}) {
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string ep = "tcp://127.0.0.1:" + std::to_string(orchard::core::free_loopback_port());
    std::vector<std::string> argv{orchard_bin("orchard"), "agent", "--listen", ep, "--token-file",
                                  (d.path / "token").string(), "--state-dir",
                                  (d.path / ("state" + std::to_string(i))).string()};
    if (i < extra_args.size()) argv.insert(argv.end(), extra_args[i].begin(), extra_args[i].end());
    out->agents.push_back(std::make_unique<ChildProcess>(argv));
    ASSERT_TRUE(out->agents.back()->wait_for_output("ready", 20000)) << out->agents.back()->output();
    out->clients.push_back(std::make_shared<AgentClient>(names[i], ep, kToken, "", timeout_ms));
    ASSERT_TRUE(out->clients.back()->call({{"op", "ping"}}).value("pong", false));  // connected
  }
}

// Each agent asked to stop (SIGTERM) and expected to exit cleanly.
void stop_agents(LoopbackAgents& lab) {
  for (auto& a : lab.agents) {
    a->signal(SIGTERM);
    EXPECT_EQ(a->wait(10000), 0);
  }
}

// A scheduler for run `run` on `io` whose hosts are the lab's agents (by their client names).
std::unique_ptr<orchard::orchestrator::Scheduler> scheduler_on(boost::asio::io_context& io, const std::string& run,
                                                               LoopbackAgents& lab, const std::string& epoch = "") {
  orchard::orchestrator::SchedulerOptions o;
  o.run = run;
  o.run_epoch = epoch;
  o.tick_s = 0.02;
  o.agent_poll_s = 0.1;
  o.stop_timeout_s = 5;
  auto sched = std::make_unique<orchard::orchestrator::Scheduler>(io, o);
  for (auto& c : lab.clients) sched->set_agent(c->name(), c);
  return sched;
}

// A remote process that says ready and runs until SIGTERM (then exits 0).
orchard::orchestrator::ProcessSpec remote_worker(const std::string& name, const std::string& host,
                                                 const std::string& shell = "/bin/sh") {
  orchard::orchestrator::ProcessSpec p;
  p.name = name;
  p.role = "worker";
  p.host = host;
  p.argv = {shell, "-c", "trap 'exit 0' TERM; echo ready; while true; do sleep 0.05; done"};
  p.ready_timeout_s = 20;
  return p;
}

// Starts `sched` and runs `io` until something stops it, or for guard_s at most.
void run_scheduler(boost::asio::io_context& io, orchard::orchestrator::Scheduler& sched, int guard_s = 20) {
  boost::asio::steady_timer guard(io);
  guard.expires_after(std::chrono::seconds(guard_s));
  guard.async_wait([&](const boost::system::error_code& ec) {
    if (!ec) io.stop();
  });
  sched.start();
  io.run();
}

}  // namespace

TEST(Agent, RefusesWrongTokensAndBadRequestsAndKeepsServing) {
  Dir d("proto");
  const std::string ep = "tcp://127.0.0.1:" + std::to_string(orchard::core::free_loopback_port());
  ChildProcess agent({orchard_bin("orchard"), "agent", "--listen", ep, "--token-file", (d.path / "token").string(),
                      "--state-dir", (d.path / "state").string()});
  ASSERT_TRUE(agent.wait_for_output("ready", 20000)) << agent.output();

  // Command-line mistakes: exit 2, named.
  ChildProcess port({orchard_bin("orchard"), "agent", "--listen", "tcp://0.0.0.0:99999", "--token-file",
                     (d.path / "token").string()});
  EXPECT_EQ(port.wait(10000), 2);
  EXPECT_NE(port.output().find("--listen: expected tcp://HOST:PORT with a port of 1-65535, got 'tcp://0.0.0.0:99999'"),
            std::string::npos)
      << port.output();
  ChildProcess elsewhere({orchard_bin("orchard"), "agent", "--listen", "tcp://192.0.2.7:7070", "--token-file",
                          (d.path / "token").string()});
  EXPECT_EQ(elsewhere.wait(10000), 2);
  EXPECT_NE(elsewhere.output().find("--listen tcp://192.0.2.7:7070: 192.0.2.7 is not an address of this machine"),
            std::string::npos)
      << elsewhere.output();
  ChildProcess taken({orchard_bin("orchard"), "agent", "--listen", ep, "--token-file", (d.path / "token").string()});
  EXPECT_EQ(taken.wait(10000), 2);
  EXPECT_NE(taken.output().find("is already in use"), std::string::npos) << taken.output();
  ChildProcess lease({orchard_bin("orchard"), "agent", "--orphan-after-s", "-1", "--token-file", (d.path / "token").string()});
  EXPECT_EQ(lease.wait(10000), 2);
  EXPECT_NE(lease.output().find("--orphan-after-s"), std::string::npos) << lease.output();

  AgentClient wrong("x", ep, "not-the-right-token-at-all");
  try {
    wrong.call({{"op", "ping"}});
    FAIL() << "a wrong token was accepted";
  } catch (const orchard::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unauthorized"), std::string::npos) << e.what();
  }
  // Garbage on the wire: an error reply, and the agent still answers afterwards.
  zmq::context_t ctx;
  zmq::socket_t raw(ctx, zmq::socket_type::req);
  raw.connect(ep);
  raw.send(zmq::str_buffer("{not json"), zmq::send_flags::none);
  zmq::message_t reply;
  ASSERT_TRUE(raw.recv(reply));
  EXPECT_NE(reply.to_string().find("not valid JSON"), std::string::npos) << reply.to_string();

  AgentClient c("x", ep, kToken);
  EXPECT_TRUE(c.call({{"op", "ping"}}).value("pong", false));
  auto host = c.call({{"op", "host"}});
  EXPECT_GT(host.value("cpus", 0), 0);
  EXPECT_GT(host.value("mem_total_kb", int64_t{0}), 0);
  for (const auto& [req, needle] : std::vector<std::pair<nlohmann::json, std::string>>{
           {{{"op", "reboot"}}, "unknown op 'reboot'"},
           {{{"op", "start"}, {"run", "../etc"}, {"name", "x"}, {"argv", {"/bin/true"}}}, "field 'run'"},
           {{{"op", "start"}, {"run", "r"}, {"name", "x"}, {"argv", "true"}}, "field 'argv'"},
           {{{"op", "read_file"}, {"run", "r"}, {"path", "../../token"}}, "without '..'"},
           {{{"op", "signal"}, {"run", "r"}, {"name", "nobody"}}, "no process r/nobody"},
           {{{"op", "logs_many"}, {"run", "r"}, {"reads", "p"}}, "field 'reads'"},
           {{{"op", "free_port"}, {"count", 0}}, "field 'count' must be 1-64"},
           // Fields of the wrong type are refused by name (the agent keeps serving: see below).
           {{{"op", 5}}, "field 'op' must be a string"},
           {{{"op", "free_port"}, {"count", "3"}}, "field 'count' must be an integer"},
           {{{"op", "logs"}, {"run", "r"}, {"name", "p"}, {"offset", "x"}}, "field 'offset' must be an integer"},
           {{{"op", "logs"}, {"run", "r"}, {"name", "p"}, {"max_bytes", -5}}, "field 'max_bytes' must be >= 0"},
           {{{"op", "signal"}, {"run", "r"}, {"name", "p"}, {"signal", "9"}}, "field 'signal' must be an integer"},
           {{{"op", "start_many"}, {"run", "r"}, {"starts", {{{"name", 7}}}}}, "field 'starts[0].name' must be a string"},
           {{{"op", "start"}, {"run", "r"}, {"name", "x"}, {"argv", {"/bin/true"}}, {"not_after_ms", INT64_MIN}},
            "expired"}}) {
    try {
      c.call(req);
      ADD_FAILURE() << req.dump() << " was accepted";
    } catch (const orchard::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
  // Several free ports in one request (a run's endpoints on one host), all distinct.
  const auto ports = c.call({{"op", "free_port"}, {"count", 3}})["ports"];
  ASSERT_EQ(ports.size(), 3u);
  EXPECT_EQ(std::set<int>({ports[0].get<int>(), ports[1].get<int>(), ports[2].get<int>()}).size(), 3u);
  // A real process: started, listed, its log read, signalled, reaped.
  auto started = c.call({{"op", "start"}, {"run", "r"}, {"name", "p"},
                         {"argv", {"/bin/sh", "-c", "echo ready; cat {dir}/note.txt; sleep 30"}},
                         {"files", {{"note.txt", "hello from the orchestrator"}}}});
  const int pid = started.value("pid", -1);
  ASSERT_GT(pid, 0);
  std::string log;
  for (int i = 0; i < 100 && log.find("hello") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    log = c.call({{"op", "logs"}, {"run", "r"}, {"name", "p"}, {"offset", 0}}).value("data", std::string());
  }
  EXPECT_NE(log.find("ready\nhello from the orchestrator"), std::string::npos) << log;
  EXPECT_EQ(started.value("log_size", int64_t{-1}), 0);  // a first start: its output begins at 0
  // Several logs in one request (readiness polling): each entry its data or its own error.
  auto many = c.call({{"op", "logs_many"}, {"run", "r"}, {"reads", {{{"name", "p"}, {"offset", 6}}, {{"name", "ghost"}}}}});
  ASSERT_EQ(many["logs"].size(), 2u) << many.dump();
  EXPECT_EQ(many["logs"][0].value("name", ""), "p");
  EXPECT_EQ(many["logs"][0].value("data", std::string()).rfind("hello from the orchestrator", 0), 0u) << many.dump();
  EXPECT_EQ(many["logs"][1].value("name", ""), "ghost");
  EXPECT_NE(many["logs"][1].value("error", std::string()).find("no process r/ghost"), std::string::npos) << many.dump();
  // A list carrying reads (the scheduler's poll round): the processes and their new output.
  const auto polled = c.call({{"op", "list"}, {"run", "r"}, {"reads", {{{"name", "p"}, {"offset", 6}}}}});
  ASSERT_EQ(polled["logs"].size(), 1u) << polled.dump();
  EXPECT_EQ(polled["logs"][0].value("data", std::string()).rfind("hello from the orchestrator", 0), 0u) << polled.dump();
  EXPECT_TRUE(polled["procs"][0].value("running", false)) << polled.dump();
  c.call({{"op", "signal"}, {"run", "r"}, {"name", "p"}, {"signal", 15}});
  bool exited = false;
  for (int i = 0; i < 100 && !exited; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto p = c.call({{"op", "list"}, {"run", "r"}})["procs"][0];
    exited = !p.value("running", true);
    if (exited) {
      EXPECT_EQ(p.value("exit", std::string()), "signal 15");
    }
  }
  EXPECT_TRUE(exited);
  EXPECT_NE(::kill(pid, 0), 0);

  // Batches (a group's starts, a handler's signals): each entry gets its own result, and one bad
  // entry fails only itself.
  auto batch = c.call({{"op", "start_many"},
                       {"run", "r"},
                       {"starts",
                        {{{"name", "m1"}, {"argv", {"/bin/sh", "-c", "echo ready; sleep 30"}}},
                         {{"name", "m2"}, {"argv", {"/nonexistent/program"}}},
                         {{"name", "../m3"}, {"argv", {"/bin/true"}}}}}});
  ASSERT_EQ(batch["started"].size(), 3u) << batch.dump();
  const int m1 = batch["started"][0].value("pid", -1);
  EXPECT_GT(m1, 0) << batch.dump();
  EXPECT_EQ(batch["started"][0].value("name", ""), "m1");
  EXPECT_EQ(batch["started"][0].value("log_size", int64_t{-1}), 0);
  EXPECT_NE(batch["started"][1].value("error", std::string()).find("/nonexistent/program"), std::string::npos)
      << batch.dump();
  EXPECT_NE(batch["started"][2].value("error", std::string()).find("field 'name'"), std::string::npos) << batch.dump();
  // Asked again (its reply was lost): the process already running is the answer, not a second.
  auto again = c.call({{"op", "start_many"}, {"run", "r"}, {"starts", {{{"name", "m1"}, {"argv", {"/bin/false"}}}}}});
  EXPECT_EQ(again["started"][0].value("pid", -1), m1) << again.dump();
  EXPECT_TRUE(again["started"][0].value("already_running", false)) << again.dump();
  auto signalled = c.call({{"op", "signal_many"},
                           {"run", "r"},
                           {"signals", {{{"name", "m1"}, {"signal", 9}}, {{"name", "ghost"}, {"signal", 15}},
                                        {{"name", "m1"}, {"signal", 1}}}}});
  ASSERT_EQ(signalled["signaled"].size(), 3u) << signalled.dump();
  EXPECT_EQ(signalled["signaled"][0].value("pid", -1), m1) << signalled.dump();
  EXPECT_NE(signalled["signaled"][1].value("error", std::string()).find("no process r/ghost"), std::string::npos);
  EXPECT_NE(signalled["signaled"][2].value("error", std::string()).find("field 'signal'"), std::string::npos);
  std::string m1_exit;
  for (int i = 0; i < 100 && m1_exit.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto listed = c.call({{"op", "list"}, {"run", "r"}});
    for (const auto& p : listed["procs"])
      if (p.value("name", "") == "m1" && !p.value("running", true)) m1_exit = p.value("exit", std::string());
  }
  EXPECT_EQ(m1_exit, "signal 9") << c.call({{"op", "list"}, {"run", "r"}}).dump();
  for (const auto& [req, needle] : std::vector<std::pair<nlohmann::json, std::string>>{
           {{{"op", "start_many"}, {"run", "r"}, {"starts", "m1"}}, "field 'starts'"},
           {{{"op", "signal_many"}, {"run", "r"}, {"signals", {1, 2}}}, "must hold objects"},
           {{{"op", "signal_many"}, {"signals", nlohmann::json::array()}}, "field 'run'"}}) {
    try {
      c.call(req);
      ADD_FAILURE() << req.dump() << " was accepted";
    } catch (const orchard::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
  agent.signal(SIGTERM);
  EXPECT_EQ(agent.wait(10000), 0);
}

// A hung agent (a real one, SIGSTOPped: its VM froze) must not hold the scheduler: the periodic
// `list` goes to every agent at once, so two silent agents cost one timeout, not two; a silent
// agent becomes suspect and is then given only a short deadline until it answers again.
TEST(Agent, SilentAgentsCostOneTimeoutPerRoundAndThenOnlyAShortOne) {
  Dir d("silent");
  LoopbackAgents lab;
  ASSERT_NO_FATAL_FAILURE(start_loopback_agents(d, {"h0", "h1", "h2"}, 1500, &lab));
  auto& agents = lab.agents;
  auto& clients = lab.clients;
  ::kill(agents[1]->pid(), SIGSTOP);
  ::kill(agents[2]->pid(), SIGSTOP);
  std::vector<AgentClient*> all{clients[0].get(), clients[1].get(), clients[2].get()};
  std::vector<nlohmann::json> replies;
  auto t0 = std::chrono::steady_clock::now();
  AgentClient::try_call_all(all, {{"op", "list"}, {"run", "r"}}, &replies);
  const double round_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_TRUE(replies[0].value("ok", false)) << replies[0].dump();
  EXPECT_TRUE(replies[1].is_null());
  EXPECT_TRUE(replies[2].is_null());
  EXPECT_GE(round_s, 1.4);  // it did wait for the silent ones
  EXPECT_LT(round_s, 2.9) << "the two silent agents were waited for one after the other";
  EXPECT_FALSE(clients[0]->suspect());
  EXPECT_TRUE(clients[1]->suspect());
  EXPECT_TRUE(clients[2]->suspect());

  // Suspect: a short deadline (250 ms by default), well under the 1.5 s timeout.
  nlohmann::json reply;
  t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(clients[1]->try_call({{"op", "ping"}}, &reply));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.2);

  // The agent wakes up: its next answer clears the suspicion.
  ::kill(agents[1]->pid(), SIGCONT);
  bool answered = false;
  for (int i = 0; i < 40 && !answered; ++i) answered = clients[1]->try_call({{"op", "ping"}}, &reply);
  EXPECT_TRUE(answered);
  EXPECT_FALSE(clients[1]->suspect());
  ::kill(agents[2]->pid(), SIGCONT);
  stop_agents(lab);
}

// The scheduler starts a group spread over agents with one start_many request per agent, all
// agents at once, and stops it with one signal_many per agent. Agent b is frozen (SIGSTOP: its
// VM hangs) when the group starts: its three starts cost the round one timeout together (one
// after the other they would cost three), count as failed starts, and are tried again after the
// backoff; once b wakes up they start, each exactly once on b, and the run stops cleanly. The
// event loop is never held by the round. Then the end-of-run sweep, and a start the agent refuses.
TEST(Agent, AGroupOnSeveralAgentsStartsInOneRoundAndAFrozenAgentCostsItOneTimeout) {
  namespace oo = orchard::orchestrator;
  Dir d("batch");
  LoopbackAgents lab;
  ASSERT_NO_FATAL_FAILURE(start_loopback_agents(d, {"a", "b"}, 1000, &lab));
  auto& agents = lab.agents;
  auto& clients = lab.clients;
  boost::asio::io_context io;
  auto sched_ptr = scheduler_on(io, "batch", lab);
  oo::Scheduler& sched = *sched_ptr;
  for (int i = 0; i < 6; ++i) sched.add(remote_worker("worker-" + std::to_string(i), i < 3 ? "a" : "b"));
  struct Timed {
    double t;
    oo::SchedulerEvent e;
  };
  std::vector<Timed> events;
  double t0 = 0, ready_at = -1;
  bool done = false;
  oo::RunOutcome outcome = oo::RunOutcome::kFailed;
  sched.on_event = [&](const oo::SchedulerEvent& e) { events.push_back({oo::steady_seconds() - t0, e}); };
  sched.on_ready = [&] {
    ready_at = oo::steady_seconds() - t0;
    sched.stop(oo::RunOutcome::kStopped, "test over");
  };
  sched.on_done = [&](oo::RunOutcome oc, const std::string&) {
    done = true;
    outcome = oc;
    io.stop();
  };
  ::kill(agents[1]->pid(), SIGSTOP);
  boost::asio::steady_timer wake(io), guard(io);
  wake.expires_after(std::chrono::milliseconds(1500));
  wake.async_wait([&](const boost::system::error_code&) { ::kill(agents[1]->pid(), SIGCONT); });
  guard.expires_after(std::chrono::seconds(40));
  guard.async_wait([&](const boost::system::error_code& ec) {
    if (!ec) io.stop();
  });
  // The event loop keeps turning while the round waits for the frozen agent (the agents are
  // called from the scheduler's worker thread): a 50 ms timer fires all along.
  boost::asio::steady_timer beat(io);
  int beats_before_answer = 0;
  std::function<void()> arm_beat = [&] {
    beat.expires_after(std::chrono::milliseconds(50));
    beat.async_wait([&](const boost::system::error_code& ec) {
      if (ec || done) return;
      if (oo::steady_seconds() - t0 < 0.9) ++beats_before_answer;
      arm_beat();
    });
  };
  t0 = oo::steady_seconds();
  sched.start();
  arm_beat();
  io.run();
  beat.cancel();
  ::kill(agents[1]->pid(), SIGCONT);
  std::string timeline;
  for (const auto& [t, e] : events) timeline += std::to_string(t) + " " + e.kind + " " + e.proc + " " + e.detail + "\n";
  SCOPED_TRACE(timeline);
  ASSERT_TRUE(done) << "the run did not end";
  EXPECT_EQ(outcome, oo::RunOutcome::kStopped);
  EXPECT_GT(ready_at, 1.0);

  // The first round: a's three starts and b's three failures, all after one 1 s timeout.
  int failed_starts = 0;
  std::map<std::string, std::string> last_start;  // name -> detail of its latest start event
  for (const auto& [t, e] : events) {
    if (e.kind == "exit" && e.detail.find("agent b did not answer 'start_many'") != std::string::npos) {
      if (failed_starts++ < 3) {
        EXPECT_GE(t, 0.9) << e.proc;
        EXPECT_LT(t, 1.8) << e.proc << ": the frozen agent's starts were waited for one after the other";
      }
    }
    if (e.kind == "start") {
      last_start[e.proc] = e.detail;
      if (e.proc < "worker-3") {
        EXPECT_LT(t, 1.8) << e.proc;
      }
    }
  }
  EXPECT_GE(failed_starts, 3);
  EXPECT_GE(beats_before_answer, 10) << "the event loop was held while the agents were called";
  ASSERT_EQ(last_start.size(), 6u);
  // Each worker runs once on its agent, with the pid the scheduler knew; none is left running.
  for (int i = 0; i < 2; ++i) {
    auto procs = clients[i]->call({{"op", "list"}, {"run", "batch"}})["procs"];
    EXPECT_EQ(procs.size(), 3u) << procs.dump();
    for (const auto& p : procs) {
      const std::string name = p.value("name", "");
      EXPECT_FALSE(p.value("running", true)) << name;
      EXPECT_EQ(p.value("exit", std::string()), "exit 0") << name;
      EXPECT_EQ(last_start[name].rfind("pid " + std::to_string(p.value("pid", -1)) + " on ", 0), 0u)
          << name << ": " << last_start[name];
      EXPECT_NE(::kill(p.value("pid", -1), 0), 0) << name;
    }
  }

  // The sweep at the end of a run (end_run on every agent): a process the scheduler does not
  // supervise (started under the run's name behind its back) is killed, and is all it kills;
  // a later start of the ended run is refused.
  const int stray = clients[0]->call({{"op", "start"}, {"run", "batch"}, {"name", "stray"},
                                      {"argv", {"/bin/sh", "-c", "sleep 60"}}}).value("pid", -1);
  ASSERT_GT(stray, 0);
  const auto swept = sched.sweep_remote();
  ASSERT_EQ(swept.size(), 1u);
  EXPECT_EQ(swept[0], "stray@a (pid " + std::to_string(stray) + ")");
  std::string stray_exit;
  const auto listed = clients[0]->call({{"op", "list"}, {"run", "batch"}});
  for (const auto& p : listed["procs"])
    if (p.value("name", "") == "stray") stray_exit = p.value("exit", std::string());
  EXPECT_EQ(stray_exit, "signal 9") << listed.dump();  // end_run answers once the killed are reaped
  EXPECT_TRUE(sched.sweep_remote().empty());
  try {
    clients[1]->call({{"op", "start_many"}, {"run", "batch"}, {"starts", {{{"name", "late"}, {"argv", {"/bin/true"}}}}}});
    ADD_FAILURE() << "a start of an ended run was accepted";
  } catch (const orchard::Error& e) {
    EXPECT_NE(std::string(e.what()).find("run 'batch' has ended"), std::string::npos) << e.what();
  }

  // A start the agent refuses (no such program there) stops the run at once with its reason;
  // what did start is stopped.
  io.restart();
  auto refused_ptr = scheduler_on(io, "refused", lab);
  oo::Scheduler& refused = *refused_ptr;
  refused.add(remote_worker("good-0", "a"));
  refused.add(remote_worker("bad-0", "b", "/nonexistent/orchard-actor"));
  std::string reason;
  done = false;
  refused.on_done = [&](oo::RunOutcome oc, const std::string& why) {
    done = true;
    outcome = oc;
    reason = why;
    io.stop();
  };
  run_scheduler(io, refused);
  ASSERT_TRUE(done);
  EXPECT_EQ(outcome, oo::RunOutcome::kFailed);
  EXPECT_NE(reason.find("bad-0 could not be started: on b: /nonexistent/orchard-actor: program not found"),
            std::string::npos)
      << reason;
  const auto good = clients[0]->call({{"op", "list"}, {"run", "refused"}})["procs"].at(0);
  EXPECT_FALSE(good.value("running", true)) << good.dump();
  stop_agents(lab);
}

namespace {

// Four workers over agents a and b of `lab`, b frozen (SIGSTOP) as they start; the run is
// stopped 300 ms in, while b's starts are still out: the stop waits for that round and the
// unanswered starts are signalled by name. Returns when the scheduler is done (b is still frozen
// then); *done_at: seconds from start() to done.
void stop_while_b_is_frozen(LoopbackAgents& lab, boost::asio::io_context& io, orchard::orchestrator::Scheduler& sched,
                            double* done_at) {
  namespace oo = orchard::orchestrator;
  for (int i = 0; i < 4; ++i) sched.add(remote_worker("worker-" + std::to_string(i), i % 2 ? "b" : "a"));
  bool done = false;
  oo::RunOutcome outcome = oo::RunOutcome::kFinished;
  const double t0 = oo::steady_seconds();
  sched.on_done = [&](oo::RunOutcome oc, const std::string&) {
    done = true;
    outcome = oc;
    *done_at = oo::steady_seconds() - t0;
    io.stop();
  };
  ::kill(lab.agents[1]->pid(), SIGSTOP);
  boost::asio::steady_timer stop_timer(io);
  stop_timer.expires_after(std::chrono::milliseconds(300));
  stop_timer.async_wait([&](const boost::system::error_code& ec) {
    if (!ec) sched.stop(oo::RunOutcome::kStopped, "stopped while starting");
  });
  run_scheduler(io, sched);
  ASSERT_TRUE(done);
  EXPECT_EQ(outcome, oo::RunOutcome::kStopped);
}

// Nothing of `run` runs on any agent of the lab (waits up to 2.5 s for it).
void expect_nothing_running(LoopbackAgents& lab, const std::string& run) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    bool running = false;
    for (const auto& c : lab.clients) {
      const auto listed = c->call({{"op", "list"}, {"run", run}});
      for (const auto& p : listed["procs"]) running = running || p.value("running", false);
    }
    if (!running) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "a process of the stopped run is still running on an agent";
}

}  // namespace

// The agent wakes before the run's end, with the stale start in its queue: whatever it does with
// it, after the sweep (as `orchard run` does at the end) nothing of the run runs there.
TEST(Agent, AStopWhileStartsAreOutLeavesNothingBehind) {
  Dir d("stopout");
  LoopbackAgents lab;
  ASSERT_NO_FATAL_FAILURE(start_loopback_agents(d, {"a", "b"}, 1000, &lab));
  boost::asio::io_context io;
  auto sched = scheduler_on(io, "stopout", lab);
  double done_at = 0;
  stop_while_b_is_frozen(lab, io, *sched, &done_at);
  ::kill(lab.agents[1]->pid(), SIGCONT);
  EXPECT_GE(done_at, 0.9);  // it waited for the round that was out
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  // b refuses the stale start (it came after the scheduler stopped waiting); were it carried
  // out, the sweep's end_run would kill it.
  const auto swept = sched->sweep_remote();
  SCOPED_TRACE(::testing::PrintToString(swept));
  expect_nothing_running(lab, "stopout");
  stop_agents(lab);
}

// The agent stays frozen past the run's end, sweep included: when it wakes, the stale start and
// the end_run wait in its queue. Whichever it takes first, nothing of the run is left running:
// the start is refused (the run has ended) or the end_run kills what it started. Then a new run
// of the same name (a new epoch) is not touched by anything of the old one.
TEST(Agent, AnAgentFrozenPastTheRunsEndDoesNotBringItBack) {
  Dir d("frozenend");
  LoopbackAgents lab;
  ASSERT_NO_FATAL_FAILURE(start_loopback_agents(d, {"a", "b"}, 1000, &lab));
  for (auto& c : lab.clients) c->call({{"op", "reset_run"}, {"run", "frozenend"}, {"epoch", "e1"}});
  boost::asio::io_context io;
  auto sched = scheduler_on(io, "frozenend", lab, "e1");
  double done_at = 0;
  stop_while_b_is_frozen(lab, io, *sched, &done_at);
  const auto swept = sched->sweep_remote();  // b does not answer
  EXPECT_TRUE(swept.empty()) << ::testing::PrintToString(swept);
  ::kill(lab.agents[1]->pid(), SIGCONT);
  // b works through its queue. The start came with the moment the scheduler stopped waiting for
  // it (in b's clock), long past now: b refuses it as expired, or, when the sweep's end_run
  // (also queued, on another connection) is taken first, as a start of an ended run.
  EXPECT_TRUE(lab.agents[1]->wait_for_output("refused 'start_many'", 5000)) << lab.agents[1]->output();
  const std::string b_log = lab.agents[1]->output();
  EXPECT_TRUE(b_log.find("refused 'start_many': expired: this request came") != std::string::npos ||
              b_log.find("refused 'start_many': run 'frozenend' has ended") != std::string::npos)
      << b_log;
  expect_nothing_running(lab, "frozenend");
  EXPECT_TRUE(lab.clients[1]->call({{"op", "list"}, {"run", "frozenend"}})["procs"].empty());
  // A start carried out late but in time for its answer is not refused (the margin is the round
  // trip plus 25 ms): a plain start_many through the same client works (for another run: this
  // one may have ended on b already).
  lab.clients[1]->call({{"op", "reset_run"}, {"run", "frozenend-late"}, {"epoch", "e1"}});
  const auto fresh = lab.clients[1]->call({{"op", "start_many"}, {"run", "frozenend-late"}, {"epoch", "e1"},
                                           {"starts", {{{"name", "late"}, {"argv", {"/bin/true"}}}}}});
  EXPECT_FALSE(fresh["started"][0].contains("error")) << fresh.dump();
  // Whether or not the sweep's end_run reached b, ending the run there (again) holds, and a start
  // of the ended run (even one in time) is refused.
  EXPECT_TRUE(lab.clients[1]->call({{"op", "end_run"}, {"run", "frozenend"}, {"epoch", "e1"}}).value("ended", false));
  EXPECT_THROW(lab.clients[1]->call({{"op", "start_many"}, {"run", "frozenend"}, {"epoch", "e1"},
                                     {"starts", {{{"name", "later"}, {"argv", {"/bin/true"}}}}}}),
               orchard::Error);
  stop_agents(lab);
}

// Deadlines are sent in each agent's own clock (the client estimates the offset from the
// replies), so hosts whose clocks are minutes apart start a run normally, and a stale start is
// still refused on a host whose clock is behind.
TEST(Agent, HostsWhoseClocksDisagreeByMinutesStartNormallyAndStillRefuseStaleStarts) {
  namespace oo = orchard::orchestrator;
  Dir d("skew");
  LoopbackAgents lab;
  ASSERT_NO_FATAL_FAILURE(start_loopback_agents(d, {"a", "b"}, 1000, &lab,
                                                {{"--clock-skew-ms", "120000"}, {"--clock-skew-ms", "-120000"}}));
  boost::asio::io_context io;
  auto sched = scheduler_on(io, "skew", lab);
  for (int i = 0; i < 4; ++i) sched->add(remote_worker("worker-" + std::to_string(i), i % 2 ? "b" : "a"));
  bool ready = false, done = false;
  std::vector<std::string> failures;
  sched->on_event = [&](const oo::SchedulerEvent& e) {
    if (e.kind == "failed" || e.kind == "exit") failures.push_back(e.proc + ": " + e.detail);
  };
  sched->on_ready = [&] {
    ready = true;
    sched->stop(oo::RunOutcome::kStopped, "test over");
  };
  sched->on_done = [&](oo::RunOutcome, const std::string&) {
    done = true;
    io.stop();
  };
  run_scheduler(io, *sched);
  EXPECT_TRUE(ready);
  EXPECT_TRUE(done);
  // Exits only at the stop (exit 0 each), no failed or refused starts.
  for (const auto& f : failures) EXPECT_NE(f.find("exit 0"), std::string::npos) << f;
  // b (two minutes behind) is frozen while a start is out; it wakes after the client gave up.
  ::kill(lab.agents[1]->pid(), SIGSTOP);
  nlohmann::json reply;
  EXPECT_FALSE(lab.clients[1]->try_call(
      {{"op", "start_many"}, {"run", "skew"}, {"starts", {{{"name", "stale"}, {"argv", {"/bin/sh", "-c", "sleep 60"}}}}}},
      &reply));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ::kill(lab.agents[1]->pid(), SIGCONT);
  EXPECT_TRUE(lab.agents[1]->wait_for_output("refused 'start_many': expired", 5000)) << lab.agents[1]->output();
  const auto listed = lab.clients[1]->call({{"op", "list"}, {"run", "skew"}});
  for (const auto& p : listed["procs"]) EXPECT_NE(p.value("name", ""), "stale") << listed.dump();
  stop_agents(lab);
}

// The agent's clock jumps a minute ahead (here: the agent restarts with another clock) between
// two replies, and the next start goes out on the old estimate: the agent refuses it as
// expired, in time. The scheduler takes that as a start to try again (not a refusal that stops
// the run); the refusal's own reply corrects the estimate, and the retry starts the process.
TEST(Agent, AStartRefusedAsExpiredBecauseTheAgentsClockJumpedIsTriedAgain) {
  namespace oo = orchard::orchestrator;
  Dir d("jump");
  LoopbackAgents lab;
  ASSERT_NO_FATAL_FAILURE(start_loopback_agents(d, {"a"}, 2000, &lab));
  boost::asio::io_context io;
  oo::SchedulerOptions o;
  o.run = "jump";
  o.tick_s = 0.02;
  o.agent_poll_s = 60;  // no poll between the jump and the start: the start uses the old estimate
  o.stop_timeout_s = 5;
  o.backoff_initial_s = 0.2;
  oo::Scheduler sched(io, o);
  sched.set_agent("a", lab.clients[0]);
  sched.add(remote_worker("worker-0", "a"));
  std::vector<std::string> events;
  sched.on_event = [&](const oo::SchedulerEvent& e) { events.push_back(e.kind + " " + e.proc + " " + e.detail); };
  bool done = false, jumped = false;
  oo::RunOutcome outcome = oo::RunOutcome::kFailed;
  sched.on_ready = [&] {
    // The agent goes down and comes back with its clock a minute ahead; worker-0 keeps running
    // (re-attached), and a second worker is added (scaling) before any poll.
    lab.agents[0]->signal(SIGTERM);
    EXPECT_EQ(lab.agents[0]->wait(10000), 0);
    lab.agents[0] = std::make_unique<ChildProcess>(std::vector<std::string>{
        orchard_bin("orchard"), "agent", "--listen", lab.clients[0]->endpoint(), "--token-file",
        (d.path / "token").string(), "--state-dir", (d.path / "state0").string(), "--clock-skew-ms", "60000"});
    EXPECT_TRUE(lab.agents[0]->wait_for_output("ready", 20000));
    jumped = true;
    sched.add(remote_worker("worker-1", "a"));
  };
  sched.on_done = [&](oo::RunOutcome oc, const std::string&) {
    done = true;
    outcome = oc;
    io.stop();
  };
  boost::asio::steady_timer check(io);
  std::function<void()> arm = [&] {
    check.expires_after(std::chrono::milliseconds(50));
    check.async_wait([&](const boost::system::error_code& ec) {
      if (ec || done) return;
      if (jumped && sched.processes().at("worker-1").state == oo::ProcState::kRunning)
        sched.stop(oo::RunOutcome::kStopped, "worker-1 is running");
      else
        arm();
    });
  };
  arm();
  run_scheduler(io, sched);
  SCOPED_TRACE(::testing::PrintToString(events));
  ASSERT_TRUE(done);
  EXPECT_EQ(outcome, oo::RunOutcome::kStopped);
  bool refused_expired = false;
  for (const auto& e : events)
    refused_expired = refused_expired || e.find("worker-1 could not be started: agent a refused 'start_many' as "
                                                "expired (has its clock moved?)") != std::string::npos;
  EXPECT_TRUE(refused_expired);
  stop_agents(lab);
}

// Run epochs, end_run and expired requests on one agent, across a restart of the agent.
TEST(Agent, EpochsEndRunAndDeadlinesRefuseStaleRequestsAcrossAgentRestarts) {
  Dir d("epochs");
  const std::string ep = "tcp://127.0.0.1:" + std::to_string(orchard::core::free_loopback_port());
  auto start_agent_here = [&] {
    auto a = std::make_unique<ChildProcess>(std::vector<std::string>{orchard_bin("orchard"), "agent", "--listen", ep,
                                                                     "--token-file", (d.path / "token").string(),
                                                                     "--state-dir", (d.path / "state").string()});
    EXPECT_TRUE(a->wait_for_output("ready", 20000)) << a->output();
    return a;
  };
  auto agent = start_agent_here();
  AgentClient c("h", ep, kToken, "", 3000);
  auto start = [&](const std::string& epoch, const std::string& name, const std::string& cmd = "sleep 60") {
    nlohmann::json r = {{"op", "start_many"}, {"run", "ep"}, {"starts", nlohmann::json::array()}};
    r["starts"].push_back({{"name", name}, {"argv", {"/bin/sh", "-c", cmd}}});
    if (!epoch.empty()) r["epoch"] = epoch;
    return c.call(r)["started"][0];
  };
  auto refused = [&](const std::string& epoch, const std::string& name) {
    try {
      start(epoch, name);
      return std::string("accepted");
    } catch (const orchard::Error& e) {
      return std::string(e.what());
    }
  };
  c.call({{"op", "reset_run"}, {"run", "ep"}, {"epoch", "e1"}});
  const int p1 = start("e1", "w1").value("pid", -1);
  ASSERT_GT(p1, 0);
  // An end_run of another epoch ends nothing.
  auto stale_end = c.call({{"op", "end_run"}, {"run", "ep"}, {"epoch", "e0"}});
  EXPECT_TRUE(stale_end.value("stale", false)) << stale_end.dump();
  EXPECT_EQ(::kill(p1, 0), 0);
  // end_run of this epoch kills what runs and answers once it is gone.
  auto ended = c.call({{"op", "end_run"}, {"run", "ep"}, {"epoch", "e1"}});
  ASSERT_EQ(ended["killed"].size(), 1u) << ended.dump();
  EXPECT_EQ(ended["killed"][0].value("pid", -1), p1);
  EXPECT_NE(::kill(p1, 0), 0);
  EXPECT_NE(refused("e1", "w2").find("run 'ep' has ended"), std::string::npos);
  EXPECT_NE(refused("", "w2").find("run 'ep' has ended"), std::string::npos);
  // A new incarnation: starts of the old epoch are stale.
  c.call({{"op", "reset_run"}, {"run", "ep"}, {"epoch", "e2"}});
  EXPECT_NE(refused("e1", "w2").find("stale request: run 'ep' is at epoch e2, this request is for epoch e1"),
            std::string::npos)
      << refused("e1", "w2");
  const int p2 = start("e2", "w2").value("pid", -1);
  ASSERT_GT(p2, 0);
  // A resumed run (open_run): a new epoch, the process kept.
  c.call({{"op", "open_run"}, {"run", "ep"}, {"epoch", "e3"}});
  EXPECT_EQ(::kill(p2, 0), 0);
  EXPECT_NE(refused("e2", "w3").find("stale request"), std::string::npos);
  // All of it is in procs.json: a restarted agent refuses the same.
  agent->signal(SIGTERM);
  EXPECT_EQ(agent->wait(10000), 0);
  agent = start_agent_here();
  EXPECT_NE(refused("e2", "w3").find("stale request"), std::string::npos);
  EXPECT_TRUE(c.call({{"op", "end_run"}, {"run", "ep"}, {"epoch", "e3"}}).value("ended", false));
  // The adopted process, killed too (a zombie until its new parent reaps it).
  std::ifstream stat("/proc/" + std::to_string(p2) + "/stat");
  std::string stat_line;
  if (std::getline(stat, stat_line)) {
    EXPECT_EQ(stat_line.substr(stat_line.rfind(')') + 2, 1), "Z") << stat_line;
  }
  agent->signal(SIGTERM);
  EXPECT_EQ(agent->wait(10000), 0);
  agent = start_agent_here();
  EXPECT_NE(refused("e3", "w3").find("has ended"), std::string::npos);
  // Deadlines: a start or signal past its not_after_ms is refused; a bad one is named.
  c.call({{"op", "reset_run"}, {"run", "ep"}, {"epoch", "e4"}});
  nlohmann::json late = {{"op", "start_many"}, {"run", "ep"}, {"epoch", "e4"}, {"not_after_ms", 1000},
                         {"starts", nlohmann::json::array({{{"name", "w4"}, {"argv", {"/bin/true"}}}})}};
  try {
    c.call(late);
    ADD_FAILURE() << "an expired start was carried out";
  } catch (const orchard::Error& e) {
    EXPECT_NE(std::string(e.what()).find("expired: this request came"), std::string::npos) << e.what();
  }
  late["not_after_ms"] = "soon";
  EXPECT_THROW(c.call(late), orchard::Error);
  EXPECT_TRUE(c.call({{"op", "list"}, {"run", "ep"}})["procs"].empty());
  // The client's own deadline (its clock offset is known from the replies so far) is in time.
  EXPECT_GT(start("e4", "w4", "true").value("pid", -1), 0);
  agent->signal(SIGTERM);
  EXPECT_EQ(agent->wait(10000), 0);
}

// A run no orchestrator drives any more (it died; or its end_run was missed while the agent was
// down) does not keep its processes for ever: after --orphan-after-s without a start, signal or
// leased poll, the agent stops them (SIGTERM, then SIGKILL), also after the agent restarted.
TEST(Agent, ARunNoOrchestratorDrivesIsStoppedOnceItsLeaseRunsOut) {
  Dir d("lease");
  const std::string ep = "tcp://127.0.0.1:" + std::to_string(orchard::core::free_loopback_port());
  auto start_agent_here = [&] {
    auto a = std::make_unique<ChildProcess>(std::vector<std::string>{
        orchard_bin("orchard"), "agent", "--listen", ep, "--token-file", (d.path / "token").string(), "--state-dir",
        (d.path / "state").string(), "--orphan-after-s", "2"});
    EXPECT_TRUE(a->wait_for_output("ready", 20000)) << a->output();
    return a;
  };
  // Gone, or a zombie its new parent has not reaped yet.
  auto gone = [](int pid) {
    if (::kill(pid, 0) != 0) return true;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    return !std::getline(stat, line) || line.substr(line.rfind(')') + 2, 1) == "Z";
  };
  auto agent = start_agent_here();
  AgentClient c("h", ep, kToken, "", 3000);
  c.call({{"op", "reset_run"}, {"run", "orph"}, {"epoch", "e1"}});
  nlohmann::json starts = nlohmann::json::array();
  starts.push_back({{"name", "polite"}, {"argv", {"/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.05; done"}}});
  starts.push_back({{"name", "stubborn"}, {"argv", {"/bin/sh", "-c", "trap '' TERM; while true; do sleep 0.05; done"}}});
  auto started = c.call({{"op", "start_many"}, {"run", "orph"}, {"epoch", "e1"}, {"starts", starts}})["started"];
  const int polite = started[0].value("pid", -1), stubborn = started[1].value("pid", -1);
  ASSERT_GT(polite, 0);
  ASSERT_GT(stubborn, 0);
  // Leased polls (as the scheduler's) keep the run going well past the lease.
  for (int i = 0; i < 8; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    c.call({{"op", "list"}, {"run", "orph"}, {"lease", true}});
  }
  const auto last_contact = std::chrono::steady_clock::now();
  EXPECT_FALSE(gone(polite));
  EXPECT_FALSE(gone(stubborn));
  // Reading it (as `orchard logs` does) is not driving it: the lease runs out.
  auto wait_gone = [&](int pid) {
    for (int i = 0; i < 200 && !gone(pid); ++i) {
      c.call({{"op", "list"}, {"run", "orph"}});
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return gone(pid);
  };
  EXPECT_TRUE(wait_gone(polite));
  EXPECT_GE(std::chrono::steady_clock::now() - last_contact, std::chrono::milliseconds(1800));
  EXPECT_TRUE(wait_gone(stubborn));  // SIGKILL, min(15 s, the lease) after the SIGTERM
  auto listed = c.call({{"op", "list"}, {"run", "orph"}})["procs"];
  ASSERT_EQ(listed.size(), 2u) << listed.dump();
  for (const auto& p : listed) EXPECT_FALSE(p.value("running", true)) << listed.dump();
  EXPECT_TRUE(agent->wait_for_output("no orchestrator has driven it here", 5000)) << agent->output();

  // An agent killed outright and started again: the re-attached process gets the lease anew from
  // the agent's start, and is stopped when nothing drives the run.
  c.call({{"op", "reset_run"}, {"run", "orph2"}, {"epoch", "e1"}});
  nlohmann::json one = nlohmann::json::array();
  one.push_back(starts[0]);
  const int kept = c.call({{"op", "start_many"}, {"run", "orph2"}, {"epoch", "e1"}, {"starts", one}})["started"][0].value("pid", -1);
  ASSERT_GT(kept, 0);
  agent->signal(SIGKILL);
  agent->wait(5000);
  std::this_thread::sleep_for(std::chrono::seconds(3));  // longer than the lease, with no agent
  EXPECT_FALSE(gone(kept));
  agent = start_agent_here();
  EXPECT_NE(agent->output().find("re-attached to orph2/polite"), std::string::npos) << agent->output();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_FALSE(gone(kept));  // not at once: the lease counts from the agent's start
  EXPECT_TRUE(wait_gone(kept));
  agent->signal(SIGTERM);
  EXPECT_EQ(agent->wait(10000), 0);
}

// start_many with wait_ready_ms: the agent holds the answer until the processes it started are
// ready (or have exited, or the wait or the request's deadline is over), with their output, and
// serves other requests meanwhile.
TEST(Agent, AHeldStartAnswersOnceItsProcessesAreReadyAndTheAgentServesMeanwhile) {
  Dir d("held");
  LoopbackAgents lab;
  ASSERT_NO_FATAL_FAILURE(start_loopback_agents(d, {"a"}, 5000, &lab));
  AgentClient other("a2", lab.clients[0]->endpoint(), kToken, "", 5000);
  using Clock = std::chrono::steady_clock;
  auto secs = [](Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); };

  // Two processes, ready after 0.1 s and 0.6 s: one answer, after the later one.
  auto t0 = Clock::now();
  nlohmann::json reply;
  std::thread t([&] {
    reply = lab.clients[0]->call({{"op", "start_many"}, {"run", "held"}, {"wait_ready_ms", 3000},
                                  {"starts", {{{"name", "fast"}, {"argv", {"/bin/sh", "-c", "sleep 0.1; echo ready; sleep 60"}}},
                                              {{"name", "slow"}, {"argv", {"/bin/sh", "-c", "echo starting; sleep 0.6; echo ready now; sleep 60"}}}}}});
  });
  // Meanwhile the agent answers others at once.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto p0 = Clock::now();
  EXPECT_TRUE(other.call({{"op", "ping"}}).value("pong", false));
  EXPECT_LT(secs(p0), 0.1);
  t.join();
  const double took = secs(t0);
  EXPECT_GE(took, 0.55);
  EXPECT_LT(took, 2.0);
  ASSERT_EQ(reply["logs"].size(), 2u) << reply.dump();
  EXPECT_EQ(reply["logs"][0].value("data", std::string()), "ready\n");
  EXPECT_EQ(reply["logs"][1].value("data", std::string()), "starting\nready now\n");
  EXPECT_GT(reply["started"][1].value("pid", -1), 0);

  // Never ready: answered when the wait is over, with what it wrote so far.
  t0 = Clock::now();
  auto never = lab.clients[0]->call({{"op", "start_many"}, {"run", "held"}, {"wait_ready_ms", 400},
                                     {"starts", {{{"name", "never"}, {"argv", {"/bin/sh", "-c", "echo warming up; sleep 60"}}}}}});
  EXPECT_GE(secs(t0), 0.38);
  EXPECT_LT(secs(t0), 1.5);
  EXPECT_EQ(never["logs"][0].value("data", std::string()), "warming up\n");
  // Exits at once: answered at once, not at the end of the wait.
  t0 = Clock::now();
  auto dies = lab.clients[0]->call({{"op", "start_many"}, {"run", "held"}, {"wait_ready_ms", 3000},
                                    {"starts", {{{"name", "dies"}, {"argv", {"/bin/sh", "-c", "echo oops; exit 3"}}}}}});
  EXPECT_LT(secs(t0), 1.5);
  EXPECT_EQ(dies["logs"][0].value("data", std::string()), "oops\n");
  // The request's deadline bounds the wait: not_after_ms 300 ms from now (this clock is the agent's).
  const int64_t wall_now = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch()).count();
  t0 = Clock::now();
  auto bounded = lab.clients[0]->call({{"op", "start_many"}, {"run", "held"}, {"wait_ready_ms", 5000},
                                       {"not_after_ms", wall_now + 300},
                                       {"starts", {{{"name", "bounded"}, {"argv", {"/bin/sh", "-c", "sleep 60"}}}}}});
  EXPECT_LT(secs(t0), 1.0);
  EXPECT_GT(bounded["started"][0].value("pid", -1), 0);
  // Already running (a retried start): answered at once.
  t0 = Clock::now();
  auto again = lab.clients[0]->call({{"op", "start_many"}, {"run", "held"}, {"wait_ready_ms", 3000},
                                     {"starts", {{{"name", "fast"}, {"argv", {"/bin/true"}}}}}});
  EXPECT_TRUE(again["started"][0].value("already_running", false)) << again.dump();
  EXPECT_LT(secs(t0), 0.5);
  EXPECT_EQ(again["logs"][0].value("data", std::string()), "ready\n");
  lab.clients[0]->call({{"op", "end_run"}, {"run", "held"}});
  stop_agents(lab);
}

TEST(Agent, AnUnreachableAgentIsAClearErrorBeforeAnythingStarts) {
  Dir d("unreach");
  std::ofstream(d.path / "spec.yaml")
      << "name: unreach\nenv: {name: CartPole-v1}\nbudget: {updates: 1}\nrun_dir: " << (d.path / "run").string()
      << "\norchestrator_address: 127.0.0.1\nhosts:\n  - {name: far, agent: 'tcp://127.0.0.1:"
      << orchard::core::free_loopback_port() << "', token_file: " << (d.path / "token").string()
      << "}\nplacement: {actors: [far]}\n";
  ChildProcess run({orchard_bin("orchard"), "run", (d.path / "spec.yaml").string()}, home(d.path));
  EXPECT_EQ(run.wait(60000), 1);
  EXPECT_NE(run.output().find("host 'far': agent far"), std::string::npos) << run.output();
  EXPECT_NE(run.output().find("no reply to 'ping'"), std::string::npos) << run.output();
  EXPECT_FALSE(fs::exists(d.path / "run" / "logs"));
  // Placement naming a host the spec does not define.
  std::ofstream(d.path / "spec2.yaml") << "name: x\nenv: {name: CartPole-v1}\nbudget: {updates: 1}\n"
                                       << "placement: {learner: gpu-box}\n";
  ChildProcess bad({orchard_bin("orchard"), "run", (d.path / "spec2.yaml").string()}, home(d.path));
  EXPECT_EQ(bad.wait(60000), 2);  // a spec error
  EXPECT_NE(bad.output().find("unknown host 'gpu-box'"), std::string::npos) << bad.output();
}

TEST(Agent, RunAcrossTwoHostsInNetworkNamespaces) {
  NetnsLab lab;
  if (!lab.error.empty()) GTEST_SKIP() << "network namespaces unavailable here: " << lab.error;
  Dir d("netns");
  auto a = start_agent(lab.hosts[0], d.path, "state-a");
  auto b = start_agent(lab.hosts[1], d.path, "state-b");
  ASSERT_TRUE(a->wait_for_output("ready", 20000)) << a->output();
  ASSERT_TRUE(b->wait_for_output("ready", 20000)) << b->output();
  // With CURVE on every data socket: the key files travel to the hosts with the spec.
  fs::create_directories(d.path / "keys");
  for (const char* k : {"server", "client"}) {
    ChildProcess keys({orchard_bin("orchard"), "keys", k, "--dir", (d.path / "keys").string()});
    ASSERT_EQ(keys.wait(10000), 0) << keys.output();
  }
  const std::string spec = two_host_spec(d.path, lab, "twohost", "{updates: 40, wall_time_s: 240}");
  std::ofstream(spec, std::ios::app) << "security: {curve_keys: " << (d.path / "keys").string() << "}\n";
  ChildProcess run({orchard_bin("orchard"), "run", spec}, home(d.path));
  EXPECT_EQ(run.wait(300000), 0) << run.output();
  const std::string out = run.output();
  EXPECT_NE(out.find("replay-0: pid"), std::string::npos) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("\\[start\\] replay-0: pid \\d+ on a"))) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("\\[start\\] learner-0: pid \\d+ on a"))) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("\\[start\\] actor-0: pid \\d+ on b"))) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("\\[start\\] actor-1: pid \\d+\\n"))) << out;  // local
  // The embedded Redis's generated password is in the registry entry, not on the screen.
  std::ifstream entry(d.path / "home" / "runs" / "twohost.json");
  const std::string password = nlohmann::json::parse(entry).value("embedded_redis_password", std::string());
  ASSERT_FALSE(password.empty());
  EXPECT_EQ(out.find(password), std::string::npos) << out;
  EXPECT_NE(out.find("; redis redis://:***@"), std::string::npos) << out;
  std::ifstream in(d.path / "run" / "result.json");  // fetched from host a
  ASSERT_TRUE(in) << out;
  auto result = nlohmann::json::parse(in);
  EXPECT_EQ(result["updates"].get<int64_t>(), 40);
  // The remote actor's log lives on host b and shows it took weights from the learner on a.
  std::ifstream alog(d.path / "state-b" / "runs" / "twohost" / "logs" / "actor-0.log");
  std::string log((std::istreambuf_iterator<char>(alog)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(std::regex_search(log, std::regex("weights v[1-9]"))) << log;
  EXPECT_TRUE(fs::exists(d.path / "state-b" / "runs" / "twohost" / "client.key"));
  EXPECT_EQ(fs::status(d.path / "state-b" / "runs" / "twohost" / "client.key").permissions() & fs::perms::others_read,
            fs::perms::none);
  // `orchard logs` reaches it through the agent.
  ChildProcess logs({orchard_bin("orchard"), "logs", "twohost", "actor-0", "-n", "3"}, home(d.path));
  EXPECT_EQ(logs.wait(30000), 0) << logs.output();
  EXPECT_NE(logs.output().find("done: "), std::string::npos) << logs.output();
  // Also by the label its lines carry (process@host).
  ChildProcess labelled({orchard_bin("orchard"), "logs", "twohost", "actor-0@b", "-n", "3"}, home(d.path));
  EXPECT_EQ(labelled.wait(30000), 0) << labelled.output();
  EXPECT_NE(labelled.output().find("done: "), std::string::npos) << labelled.output();
  // Nothing of the run is left in either namespace: only the agents.
  EXPECT_EQ(lab.pids_in(lab.hosts[0]).size(), 1u);
  EXPECT_EQ(lab.pids_in(lab.hosts[1]).size(), 1u);
}

TEST(Agent, TwoLearnerRanksOnTwoHostsAllReduceAcrossTheNamespaces) {
  NetnsLab lab;
  if (!lab.error.empty()) GTEST_SKIP() << "network namespaces unavailable here: " << lab.error;
  Dir d("netns-ranks");
  auto a = start_agent(lab.hosts[0], d.path, "state-a");
  auto b = start_agent(lab.hosts[1], d.path, "state-b");
  ASSERT_TRUE(a->wait_for_output("ready", 20000)) << a->output();
  ASSERT_TRUE(b->wait_for_output("ready", 20000)) << b->output();
  const std::string spec = two_host_spec(d.path, lab, "ranks", "{updates: 30, wall_time_s: 240}");
  // Rank 0 on a (with the shard), rank 1 on b; the rendezvous store listens on a's address.
  ChildProcess run({orchard_bin("orchard"), "run", spec, "--set", "learner.count=2", "--set",
                    "placement.learner=[a, b]"},
                   home(d.path));
  EXPECT_EQ(run.wait(300000), 0) << run.output();
  const std::string out = run.output();
  EXPECT_TRUE(std::regex_search(out, std::regex("\\[start\\] learner-0: pid \\d+ on a"))) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("\\[start\\] learner-1: pid \\d+ on b"))) << out;
  std::ifstream in(d.path / "run" / "result.json");  // fetched from host a
  ASSERT_TRUE(in) << out;
  EXPECT_EQ(nlohmann::json::parse(in)["updates"].get<int64_t>(), 30);
  std::ifstream llog(d.path / "state-b" / "runs" / "ranks" / "logs" / "learner-1.log");
  std::string log((std::istreambuf_iterator<char>(llog)), std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("rendezvous at tcp://" + lab.hosts[0].ip + ":"), std::string::npos) << log;
  EXPECT_NE(log.find("this rank's address " + lab.hosts[1].ip + ")"), std::string::npos) << log;
  EXPECT_NE(log.find("parameters of the 2 ranks agree after 30 updates"), std::string::npos) << log;
  EXPECT_EQ(lab.pids_in(lab.hosts[0]).size(), 1u);
  EXPECT_EQ(lab.pids_in(lab.hosts[1]).size(), 1u);
}

TEST(Agent, AnAgentKilledMidRunReattachesToItsProcessesWhenRestarted) {
  NetnsLab lab;
  if (!lab.error.empty()) GTEST_SKIP() << "network namespaces unavailable here: " << lab.error;
  Dir d("reattach");
  auto a = start_agent(lab.hosts[0], d.path, "state-a");
  auto b = start_agent(lab.hosts[1], d.path, "state-b");
  ASSERT_TRUE(a->wait_for_output("ready", 20000)) << a->output();
  ASSERT_TRUE(b->wait_for_output("ready", 20000)) << b->output();
  ChildProcess run({orchard_bin("orchard"), "run", two_host_spec(d.path, lab, "reattach", "{updates: 150, wall_time_s: 240}")},
                   home(d.path));
  ASSERT_TRUE(run.wait_for_output("all processes ready", 90000)) << run.output();
  // Kill agent b outright; its actor keeps running without it.
  std::vector<pid_t> before = lab.pids_in(lab.hosts[1]);
  ASSERT_EQ(before.size(), 2u);  // the agent and actor-0
  b->signal(SIGKILL);
  b->wait(5000);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(lab.pids_in(lab.hosts[1]).size(), 1u);  // actor-0 survived the agent
  b = start_agent(lab.hosts[1], d.path, "state-b");
  ASSERT_TRUE(b->wait_for_output("ready", 20000)) << b->output();
  EXPECT_NE(b->output().find("re-attached to reattach/actor-0"), std::string::npos) << b->output();
  EXPECT_EQ(run.wait(300000), 0) << run.output();
  EXPECT_EQ(run.output().find("[restart] actor-0"), std::string::npos) << run.output();
  EXPECT_EQ(lab.pids_in(lab.hosts[0]).size(), 1u);
  EXPECT_EQ(lab.pids_in(lab.hosts[1]).size(), 1u);
}

TEST(Agent, AResumedOrchestratorAdoptsTheProcessesTheAgentsKeptRunning) {
  NetnsLab lab;
  if (!lab.error.empty()) GTEST_SKIP() << "network namespaces unavailable here: " << lab.error;
  Dir d("adopt");
  auto a = start_agent(lab.hosts[0], d.path, "state-a");
  auto b = start_agent(lab.hosts[1], d.path, "state-b");
  ASSERT_TRUE(a->wait_for_output("ready", 20000)) << a->output();
  ASSERT_TRUE(b->wait_for_output("ready", 20000)) << b->output();
  std::string spec = two_host_spec(d.path, lab, "adopt", "{updates: 600, wall_time_s: 240}");
  {  // everything on the agents: nothing dies with the orchestrator
    std::ifstream in(spec);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    text = std::regex_replace(text, std::regex("actors: \\[b, local\\]"), "actors: [b, b]");
    std::ofstream(spec, std::ios::trunc) << text;
  }
  auto first = std::make_unique<ChildProcess>(std::vector<std::string>{orchard_bin("orchard"), "run", spec}, home(d.path));
  ASSERT_TRUE(first->wait_for_output("all processes ready", 90000)) << first->output();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  first->signal(SIGKILL);  // the orchestrator dies; its Redis with it
  first->wait(5000);
  const std::string first_out = first->output();
  first.reset();
  EXPECT_EQ(lab.pids_in(lab.hosts[0]).size(), 3u);  // agent, replay-0, learner-0 still running
  EXPECT_EQ(lab.pids_in(lab.hosts[1]).size(), 3u);  // agent, actor-0, actor-1
  ChildProcess resumed({orchard_bin("orchard"), "run", "adopt", "--resume"}, home(d.path));
  EXPECT_EQ(resumed.wait(300000), 0) << resumed.output();
  const std::string out = resumed.output();
  for (const char* p : {"replay-0", "learner-0", "actor-0", "actor-1"}) {
    EXPECT_NE(out.find(std::string("[adopt] ") + p), std::string::npos) << p << "\n" << out;
    EXPECT_EQ(out.find(std::string("[start] ") + p), std::string::npos) << p << "\n" << out;
  }
  std::ifstream in(d.path / "run" / "result.json");
  ASSERT_TRUE(in) << out;
  EXPECT_EQ(nlohmann::json::parse(in)["updates"].get<int64_t>(), 600);
  EXPECT_EQ(lab.pids_in(lab.hosts[0]).size(), 1u);
  EXPECT_EQ(lab.pids_in(lab.hosts[1]).size(), 1u);
}
