#include "orchard/core/shutdown.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>

namespace orchard::core {
namespace {

std::atomic<bool> g_requested{false};
std::atomic<int> g_signal{0};
std::atomic<int> g_signal_count{0};
int g_eventfd = -1;
std::once_flag g_once;

void wake() {
  if (g_eventfd >= 0) {
    uint64_t one = 1;
    // write(2) on an eventfd is async-signal-safe.
    [[maybe_unused]] ssize_t n = ::write(g_eventfd, &one, sizeof(one));
  }
}

extern "C" void orchard_on_signal(int sig) {
  if (g_signal_count.fetch_add(1) > 0) {
    // Second signal while shutting down: fall back to the default action.
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    return;
  }
  g_signal.store(sig);
  g_requested.store(true);
  wake();
}

void ensure_fd() {
  std::call_once(g_once, [] { g_eventfd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); });
}

}  // namespace

void Shutdown::install() {
  ensure_fd();
  struct sigaction sa {};
  sa.sa_handler = orchard_on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

bool Shutdown::requested() { return g_requested.load(std::memory_order_relaxed); }

int Shutdown::signal_number() { return g_signal.load(); }

void Shutdown::request() {
  ensure_fd();
  if (!g_requested.exchange(true)) wake();
}

int Shutdown::fd() {
  ensure_fd();
  return g_eventfd;
}

bool Shutdown::wait_for(std::chrono::milliseconds timeout) {
  if (requested()) return true;
  pollfd p{fd(), POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (rc < 0 && errno == EINTR && !requested());
  return requested();
}

void Shutdown::reset_for_testing() {
  ensure_fd();
  uint64_t v;
  while (::read(g_eventfd, &v, sizeof(v)) > 0) {
  }
  g_signal.store(0);
  g_signal_count.store(0);
  g_requested.store(false);
}

}  // namespace orchard::core
