// `orchard agent`: the node agent daemon (orchestrator/include/orchard/orchestrator/agent.h).
//   orchard agent --listen tcp://10.0.0.2:7070 --token-file /etc/orchard/agent.token
//                 [--state-dir /var/lib/orchard] [--curve-key-file agent.key] [--advertise 10.0.0.2]
//   orchard agent --new-token FILE        writes a random token (mode 0600) and exits
#include <sys/stat.h>

#include <fstream>
#include <iostream>
#include <random>

#include "cli.h"
#include "orchard/core/error.h"
#include "orchard/core/logging.h"
#include "orchard/core/net.h"
#include "orchard/core/shutdown.h"
#include "orchard/orchestrator/agent.h"

namespace orchard::cli {

std::string read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("token file '" + path + "' cannot be read");
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.size() < 16) throw ConfigError("token file '" + path + "': the token must be at least 16 characters");
  return token;
}

void add_agent(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<orchestrator::AgentOptions>();
  auto token_file = std::make_shared<std::string>();
  auto new_token = std::make_shared<std::string>();
  auto level = std::make_shared<std::string>("info");
  auto* cmd = app.add_subcommand("agent", "The node agent: starts and supervises a run's processes on this host "
                                          "for a remote orchestrator");
  cmd->add_option("--listen", o->listen, "Endpoint to bind (default tcp://0.0.0.0:7070)");
  cmd->add_option("--token-file", *token_file, "File whose first line is the token clients must send");
  cmd->add_option("--state-dir", o->state_dir, "Run files, logs and the process table (default ~/.orchard/agent)");
  cmd->add_option("--curve-key-file", o->curve_key_file, "CURVE key pair (orchard keys NAME): encrypts the channel");
  cmd->add_option("--advertise", o->advertise_host, "Address other hosts reach this one at (reported by `host`)");
  cmd->add_option("--new-token", *new_token, "Write a new random token to this file (mode 0600) and exit");
  cmd->add_option("--log-level", *level, "trace|debug|info|warn|error");
  cmd->add_option("--orphan-after-s", o->orphan_after_s,
                  "Stop a run's processes once no orchestrator has driven the run here for this long (0: never)")
      ->capture_default_str()
      ->check(seconds_at_most(1e7));
  cmd->add_option("--clock-skew-ms", o->clock_skew_ms,
                  "Testing: act as if this host's clock were off by this many ms (deadlines still hold)")
      ->group("");  // hidden from --help
  cmd->callback([o, token_file, new_token, level, exit_code] {
    if (!new_token->empty()) {
      std::random_device rd;
      static const char* hex = "0123456789abcdef";
      std::string t;
      for (int i = 0; i < 48; ++i) t += hex[rd() % 16];
      {
        std::ofstream out(*new_token, std::ios::trunc);
        out << t << "\n";
        if (!out) throw Error("cannot write '" + *new_token + "'");
      }
      ::chmod(new_token->c_str(), 0600);
      std::cout << "wrote a new agent token to " << *new_token << "\n";
      return;
    }
    {
      std::string host;
      uint16_t port = 0;
      if (!core::parse_tcp_endpoint(o->listen, &host, &port))
        throw ConfigError("orchard agent: --listen: expected tcp://HOST:PORT with a port of 1-65535, got '" + o->listen +
                          "'");
      if (host != "*" && !core::is_ipv4_literal(host))
        throw ConfigError("orchard agent: --listen " + o->listen + ": '" + host +
                          "' is not an IPv4 address (or *); ZeroMQ binds addresses, not host names");
      // An address this machine does not have, or a port in use: said before anything else.
      if (new_token->empty())
        if (const auto why = core::tcp_bind_problem(host, port); !why.empty())
          throw ConfigError("orchard agent: --listen " + o->listen + ": " + why);
    }
    if (token_file->empty()) throw ConfigError("orchard agent: --token-file is required (orchard agent --new-token FILE makes one)");
    o->token = read_token_file(*token_file);
    if (o->state_dir.empty()) {
      const char* home = std::getenv("HOME");
      o->state_dir = std::string(home ? home : "/tmp") + "/.orchard/agent";
    }
    core::init_logging({"agent", *level});
    core::Shutdown::install();
    orchestrator::AgentServer server(*o);
    std::cout << "ready " << server.endpoint() << std::endl;
    server.run();
  });
}

}  // namespace orchard::cli
