// Graceful SIGINT/SIGTERM handling.
//
// Every Orchard process installs this once at start. A signal sets a flag and wakes a file
// descriptor; the process's loops poll requested() (or wait on fd()) between units of work, then
// finish in-flight work, flush, and exit 0. A second signal of the same kind while shutting down
// restores the default action, so a stuck process can still be killed with a second Ctrl-C.
#pragma once

#include <chrono>

namespace orchard::core {

class Shutdown {
 public:
  // Installs handlers for SIGINT and SIGTERM (and ignores SIGPIPE). Idempotent.
  static void install();
  // True once a signal arrived or request() was called. Async-signal-safe to read.
  static bool requested();
  // The signal number that asked for shutdown (0 for request()).
  static int signal_number();
  // Asks for shutdown from inside the process (e.g. `orchard stop` over a control socket).
  static void request();
  // A file descriptor that becomes readable once shutdown is requested (for poll/epoll/zmq_poll).
  static int fd();
  // Blocks until shutdown is requested or the timeout passes; true if requested.
  static bool wait_for(std::chrono::milliseconds timeout);
  // Clears the flag; for tests that install the handler more than once in a process.
  static void reset_for_testing();
};

}  // namespace orchard::core
