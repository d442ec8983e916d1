#include "orchard/orchestrator/embedded_redis.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "orchard/core/error.h"
#include "orchard/core/net.h"

namespace orchard::orchestrator {
namespace {

// "exited with status 1", "was killed by signal 9": how redis-server ended (a wait status).
std::string describe_exit(int status) {
  return WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                           : "was killed by signal " + std::to_string(WTERMSIG(status));
}

constexpr int kStartAttempts = 5;
constexpr auto kReadyTimeout = std::chrono::seconds(10);
constexpr auto kStopTimeout = std::chrono::seconds(5);
constexpr auto kPollInterval = std::chrono::milliseconds(10);
constexpr const char* kReadyLine = "Ready to accept connections";

bool executable(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

std::string find_redis_server() {
  if (const char* path = std::getenv("PATH")) {
    std::stringstream dirs(path);
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
      if (dir.empty()) continue;
      std::string candidate = dir + "/redis-server";
      if (executable(candidate)) return candidate;
    }
  }
  for (const char* candidate : {"/usr/bin/redis-server", "/usr/local/bin/redis-server"}) {
    if (executable(candidate)) return candidate;
  }
  throw Error(
      "embedded redis: redis-server not found on PATH or at /usr/bin/redis-server; install it "
      "(apt-get install redis-server)");
}

std::string make_temp_dir() {
  std::string base = std::filesystem::temp_directory_path().string() + "/orchard-redis-XXXXXX";
  std::vector<char> templ(base.begin(), base.end());
  templ.push_back('\0');
  if (::mkdtemp(templ.data()) == nullptr) {
    throw Error("embedded redis: mkdtemp " + base + ": " + std::strerror(errno));
  }
  return templ.data();
}

uintmax_t file_size_or_zero(const std::string& path) {
  std::error_code ec;
  uintmax_t size = std::filesystem::file_size(path, ec);
  return ec ? 0 : size;
}

// True when the log, from byte `offset` on, contains `needle`.
bool log_contains_since(const std::string& path, uintmax_t offset, const char* needle) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  in.seekg(static_cast<std::streamoff>(offset));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text.find(needle) != std::string::npos;
}

}  // namespace

EmbeddedRedis::EmbeddedRedis(EmbeddedRedisOptions options)
    : binary_(find_redis_server()), password_(std::move(options.password)), persist_(options.persist), extra_bind_(options.extra_bind) {
  if (options.data_dir.empty()) {
    dir_ = make_temp_dir();
    owns_dir_ = true;
  } else {
    dir_ = options.data_dir;
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) throw Error("embedded redis: cannot create data dir " + dir_ + ": " + ec.message());
  }
  log_path_ = dir_ + "/redis.log";
  std::string why;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    port_ = options.port ? options.port : core::free_loopback_port();
    bool exited = false;
    why = launch(exited);
    if (why.empty()) return;
    if (!exited || options.port) break;  // hung, or a fixed port: a new port will not help
  }
  std::string message = "embedded redis: " + why + "; log " + log_path_ + ":\n" + log_tail();
  std::error_code ec;
  if (owns_dir_) std::filesystem::remove_all(dir_, ec);
  throw Error(message);
}

EmbeddedRedis::~EmbeddedRedis() {
  stop();
  std::error_code ec;
  if (owns_dir_) std::filesystem::remove_all(dir_, ec);
}

void EmbeddedRedis::start() {
  if (running()) return;
  bool exited = false;
  std::string why = launch(exited);
  if (!why.empty()) throw Error("embedded redis: " + why + "; log " + log_path_ + ":\n" + log_tail());
}

std::string EmbeddedRedis::launch(bool& exited) {
  exited = false;
  const std::string port = std::to_string(port_);
  // Loopback only, no persistence, in the foreground, logging to stdout (the log file).
  // clang-format off
  std::vector<std::string> args = {binary_,
                                   "--port", port,
                                   "--bind", "127.0.0.1",
                                   "--save", "",
                                   "--appendonly", persist_ ? "yes" : "no",
                                   "--daemonize", "no",
                                   "--dir", dir_,
                                   "--logfile", ""};
  // clang-format on
  // After "--bind", "127.0.0.1"; loopback itself is bound already (twice would fail).
  if (!extra_bind_.empty() && extra_bind_ != "127.0.0.1" && extra_bind_ != "localhost")
    args.insert(args.begin() + 5, extra_bind_);
  if (!password_.empty()) {
    args.push_back("--requirepass");
    args.push_back(password_);
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const uintmax_t log_offset = file_size_or_zero(log_path_);
  int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return "open " + log_path_ + ": " + std::strerror(errno);
  const pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(log_fd);
    return std::string("fork: ") + std::strerror(err);
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    // Its own process group: a terminal's Ctrl-C goes to the orchestrator, which stops the run
    // in order and stops Redis last, not to Redis at once.
    ::setpgid(0, 0);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(log_fd);
  pid_ = pid;

  const auto deadline = std::chrono::steady_clock::now() + kReadyTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      pid_ = -1;
      exited = true;
      const std::string how = describe_exit(status);
      return "redis-server on port " + port + " " + how + " during startup";
    }
    if (log_contains_since(log_path_, log_offset, kReadyLine)) return "";
    std::this_thread::sleep_for(kPollInterval);
  }
  stop();
  return "redis-server on port " + port + " not ready after " +
         std::to_string(std::chrono::duration_cast<std::chrono::seconds>(kReadyTimeout).count()) + " s";
}

void EmbeddedRedis::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + kStopTimeout;
  while (true) {
    int status = 0;
    pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_ || (done < 0 && errno == ECHILD)) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  pid_ = -1;
}

std::string EmbeddedRedis::reap_if_exited() {
  if (pid_ <= 0) return "";
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) != pid_) return "";
  pid_ = -1;
  return describe_exit(status);
}

std::string EmbeddedRedis::url() const { return url_for("127.0.0.1"); }

std::string EmbeddedRedis::url_for(const std::string& host) const {
  std::string auth = password_.empty() ? "" : ":" + password_ + "@";
  return "redis://" + auth + host + ":" + std::to_string(port_) + "/0";
}

std::string EmbeddedRedis::log_tail(size_t max_bytes) const {
  std::ifstream in(log_path_, std::ios::binary);
  if (!in) return "(no log)";
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text.size() > max_bytes ? text.substr(text.size() - max_bytes) : text;
}

}  // namespace orchard::orchestrator
