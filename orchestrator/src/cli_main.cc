// The `orchard` command-line interface.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "cli.h"
#include "orchard/core/error.h"
#include "orchard/core/logging.h"
#include "orchard/core/version.h"
#include "orchard/core/wire.h"
#include "orchard/orchestrator/doctor.h"
#include "orchard/orchestrator/process.h"

namespace {

std::string version_line() {
  return std::string("orchard ") + orchard::core::orchard_version() + " (" + orchard::core::orchard_git_commit() +
         ", protocol " + std::to_string(orchard::core::kProtocolVersion) + ")";
}

}  // namespace

int main(int argc, char** argv) {
  // A closed stdout (`orchard run ... | head`) must not kill a run half-way with nothing
  // recorded: writes then fail quietly and the run goes on (`orchard status` follows it).
  // Children get the default action back (spawn_process).
  ::signal(SIGPIPE, SIG_IGN);
  // The CLI's own warnings (a Redis reconnect, say) in the line format every Orchard process
  // uses; `orchard run` applies the spec's logging level, `orchard agent` its --log-level.
  orchard::core::init_logging({"orchard"});
  CLI::App app{"Orchard: distributed actor-learner reinforcement learning", "orchard"};
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", version_line());
  int exit_code = 0;

  auto* help = app.add_subcommand("help", "Show this help");
  std::string top_help;  // rendered after every subcommand is added, before parsing
  help->callback([&] { std::cout << top_help; });

  auto* version = app.add_subcommand("version", "Print the version");
  version->callback([] { std::cout << version_line() << "\n"; });

  bool doctor_json = false;
  auto* doctor = app.add_subcommand("doctor", "Check the installation: libraries, BLAS, threads, CUDA, Redis");
  doctor->add_flag("--json", doctor_json, "Print the report as JSON");
  doctor->callback([&] {
    auto report = orchard::orchestrator::run_doctor(orchard::orchestrator::self_dir());
    std::cout << (doctor_json ? orchard::orchestrator::format_json(report) + "\n"
                              : orchard::orchestrator::format_text(report));
    exit_code = report.healthy() ? 0 : 1;
  });

  std::string keys_dir = ".", keys_name;
  auto* keys = app.add_subcommand("keys", "Generate a CURVE key pair: NAME.key (secret, mode 0600) and NAME.pub");
  keys->add_option("name", keys_name, "Key name, e.g. replay or actors")->required();
  keys->add_option("--dir", keys_dir, "Directory to write into (default: current)");
  keys->callback([&] {
    auto pair = orchard::core::generate_curve_keypair();
    std::string base = keys_dir + "/" + keys_name;
    if (::access((base + ".key").c_str(), F_OK) == 0) {
      throw orchard::Error(base + ".key already exists; remove it first (keys are never overwritten)");
    }
    orchard::core::save_curve_keys(base + ".key", pair);
    orchard::core::save_curve_keys(base + ".pub", {pair.public_key, ""});
    std::cout << "wrote " << base << ".key (keep private) and " << base << ".pub (give to peers)\n";
  });

  orchard::cli::add_run(app, &exit_code);
  orchard::cli::add_control(app, &exit_code);
  orchard::cli::add_agent(app, &exit_code);
  orchard::cli::add_env(app, &exit_code);
  orchard::cli::add_replay(app, &exit_code);
  orchard::cli::add_selfcheck(app, &exit_code);
  top_help = app.help();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "orchard: " << e.what() << " (run 'orchard help')\n";
    return 2;
  } catch (const orchard::ConfigError& e) {
    // Bad input (a run spec, --set, an argument): nothing was started.
    std::cerr << "orchard: " << e.what() << "\n";
    return 2;
  } catch (const orchard::Error& e) {
    std::cerr << "orchard: " << e.what() << "\n";
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // A file or directory this machine would not let Orchard make, read or write: not a bug.
    std::cerr << "orchard: " << e.code().message() << ": " << e.path1().string()
              << (e.path2().empty() ? "" : " -> " + e.path2().string()) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "orchard: internal error: " << e.what() << "\n";
    return 1;
  }
  if (app.get_subcommands().empty()) {
    std::cout << top_help;
  }
  return exit_code;
}
