// Child process for the signal-handling tests. Installs orchard's shutdown handler, prints
// "ready", then does units of work until shutdown is requested, then prints what it flushed
// and exits 0. With argument "stuck" it never checks the flag (to test the second-signal escape).
#include <cstdio>
#include <cstring>
#include <thread>

#include "orchard/core/shutdown.h"

int main(int argc, char** argv) {
  using orchard::core::Shutdown;
  bool stuck = argc > 1 && std::strcmp(argv[1], "stuck") == 0;
  Shutdown::install();
  std::printf("ready\n");
  std::fflush(stdout);
  long units = 0;
  for (;;) {
    if (!stuck && Shutdown::requested()) break;
    ++units;  // one unit of "work"
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::printf("signal %d: finished in-flight work, flushed %ld units\n", Shutdown::signal_number(), units);
  std::fflush(stdout);
  return 0;
}
