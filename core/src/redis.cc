#include "orchard/core/redis.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/time.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstring>
#include <thread>

#include "orchard/core/error.h"

namespace orchard::core {
namespace {

constexpr int kMaxBackoffMs = 5000;
constexpr size_t kMaxCommandNameChars = 32;

timeval to_timeval(int ms) {
  timeval tv{};
  if (ms > 0) {
    tv.tv_sec = ms / 1000;
    tv.tv_usec = static_cast<suseconds_t>(ms % 1000) * 1000;
  }
  return tv;  // {0, 0} disables the socket timeout
}

std::string lower_first(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

// The command name as it appears in error messages: upper case, printable, bounded.
std::string command_name(std::string_view arg) {
  std::string name;
  for (char ch : arg.substr(0, kMaxCommandNameChars)) {
    unsigned char c = static_cast<unsigned char>(ch);
    name += std::isprint(c) ? static_cast<char>(std::toupper(c)) : '?';
  }
  if (arg.size() > kMaxCommandNameChars) name += "...";
  return name.empty() ? std::string("(empty command name)") : name;
}

// Redis error text is one line by protocol; make sure of it, since it goes into what().
std::string one_line(std::string s) {
  std::replace_if(
      s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n'; }, ' ');
  return s;
}

RedisReply convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::Status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::Error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::Integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::String;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::Array;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:  // REDIS_REPLY_NIL
      out.type = RedisReply::Type::Nil;
      break;
  }
  return out;
}

// hiredis writes with write(2), so a peer that has gone away raises SIGPIPE, whose default action
// kills the process. Ignoring SIGPIPE process-wide would change the embedding program's
// behaviour, so instead block it for this thread while hiredis does I/O and discard one raised
// meanwhile (a SIGPIPE from write(2) is directed at the writing thread).
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    blocked_ = pthread_sigmask(SIG_BLOCK, &block, &old_) == 0;
  }
  ~SigpipeBlock() {
    if (!blocked_) return;
    int saved_errno = errno;
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        sigset_t pipe;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        timespec zero{0, 0};
        while (sigtimedwait(&pipe, nullptr, &zero) == -1 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    errno = saved_errno;
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t old_{};
  bool was_pending_ = false;
  bool blocked_ = false;
};

// Appends argv to out as a RESP array of bulk strings (what redisFormatCommandArgv produces).
void append_resp(std::string& out, const std::string_view* argv, size_t argc) {
  char digits[24];
  auto put_number = [&](char prefix, size_t n) {
    out += prefix;
    auto res = std::to_chars(digits, digits + sizeof(digits), n);
    out.append(digits, res.ptr);
    out += "\r\n";
  };
  put_number('*', argc);
  for (size_t i = 0; i < argc; ++i) {
    put_number('$', argv[i].size());
    out.append(argv[i].data(), argv[i].size());
    out += "\r\n";
  }
}

// XADD stream [MAXLEN ~ n] id f v ...; maxlen_text must outlive the returned views.
std::vector<std::string_view> xadd_argv(const std::string& stream,
                                        const std::vector<std::pair<std::string, std::string>>& fields,
                                        size_t maxlen_approx, const std::string& id,
                                        const std::string& maxlen_text) {
  if (fields.empty()) {
    throw RedisError("xadd to stream '" + stream + "': at least one field/value pair is required");
  }
  std::vector<std::string_view> argv;
  argv.reserve(6 + 2 * fields.size());
  argv.push_back("XADD");
  argv.push_back(stream);
  if (maxlen_approx > 0) {
    argv.push_back("MAXLEN");
    argv.push_back("~");
    argv.push_back(maxlen_text);
  }
  argv.push_back(id);
  for (const auto& [field, value] : fields) {
    argv.push_back(field);
    argv.push_back(value);
  }
  return argv;
}

// ---- URL parsing ----

// The URL with its password (or whole user info when there is no ':') replaced by ***.
std::string mask_url(const std::string& url) {
  size_t sep = url.find("://");
  size_t start = sep == std::string::npos ? 0 : sep + 3;
  size_t at = url.rfind('@');
  if (at == std::string::npos || at < start) return url;
  size_t colon = url.find(':', start);
  if (colon != std::string::npos && colon < at) return url.substr(0, colon + 1) + "***" + url.substr(at);
  return url.substr(0, start) + "***" + url.substr(at);
}

bool percent_decode(const std::string& in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return false;
    unsigned value = 0;
    auto res = std::from_chars(in.data() + i + 1, in.data() + i + 3, value, 16);
    if (res.ec != std::errc() || res.ptr != in.data() + i + 3) return false;
    out += static_cast<char>(value);
    i += 2;
  }
  return true;
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

}  // namespace

RedisOptions RedisOptions::from_url(const std::string& url) {
  const std::string shown = mask_url(url);
  auto bad = [&](const std::string& what) -> void {
    throw ConfigError("bad Redis URL '" + shown + "': " + what);
  };
  static const char* kForm = "redis://[[user]:password@]host[:port][/db]";

  RedisOptions options;
  size_t sep = url.find("://");
  if (sep == std::string::npos) bad(std::string("bad scheme (expected ") + kForm + ")");
  std::string scheme = url.substr(0, sep);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (scheme == "rediss") bad("bad scheme 'rediss' (TLS is not supported; use redis://)");
  if (scheme != "redis") bad("bad scheme '" + scheme + "' (expected redis://)");

  std::string rest = url.substr(sep + 3);
  size_t at = rest.rfind('@');
  if (at != std::string::npos) {
    std::string userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    size_t colon = userinfo.find(':');
    bool ok = percent_decode(userinfo.substr(0, colon), options.user);
    if (colon != std::string::npos) ok = ok && percent_decode(userinfo.substr(colon + 1), options.password);
    if (!ok) bad("bad percent-encoding in user or password");
  }
  if (rest.find_first_of("?#") != std::string::npos) bad("query parameters and fragments are not supported");

  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : rest.substr(slash + 1);

  std::string port_text;
  bool has_port = false;
  if (!hostport.empty() && hostport[0] == '[') {
    size_t close = hostport.find(']');
    if (close == std::string::npos) bad("bad host '" + hostport + "' (missing ']')");
    options.host = hostport.substr(1, close - 1);
    std::string after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') bad("bad host '" + hostport + "' (expected ':' after ']')");
      has_port = true;
      port_text = after.substr(1);
    }
  } else {
    size_t colon = hostport.find(':');
    if (colon != std::string::npos && hostport.find(':', colon + 1) != std::string::npos) {
      bad("bad host '" + hostport + "' (put IPv6 addresses in brackets: redis://[::1]:6379)");
    }
    options.host = hostport.substr(0, colon);
    if (colon != std::string::npos) {
      has_port = true;
      port_text = hostport.substr(colon + 1);
    }
  }
  if (options.host.empty()) bad(std::string("missing host (expected ") + kForm + ")");

  if (has_port) {
    unsigned long port = 0;
    if (!all_digits(port_text) || port_text.size() > 5 || (port = std::stoul(port_text)) == 0 ||
        port > 65535) {
      bad("bad port '" + port_text + "' (expected 1-65535)");
    }
    options.port = static_cast<uint16_t>(port);
  }

  if (!path.empty()) {
    long long db = -1;
    if (all_digits(path) && path.size() <= 10) db = std::stoll(path);
    if (db < 0 || db > INT_MAX) bad("bad db '" + path + "' (expected a non-negative integer)");
    options.db = static_cast<int>(db);
  }
  return options;
}

std::string RedisOptions::describe() const {
  bool ipv6 = host.find(':') != std::string::npos;
  return "redis://" + (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "/" +
         std::to_string(db);
}

// ---- RedisClient ----

// Invariant: ctx is null or a connected, authenticated context with no error set. Any failed
// read/write drops it (hiredis contexts are unusable after an error) and the next call reconnects.
struct RedisClient::Impl {
  RedisOptions options;
  std::string endpoint;  // "redis redis://host:port/db", the prefix of every error
  redisContext* ctx = nullptr;

  explicit Impl(RedisOptions opts) : options(std::move(opts)), endpoint("redis " + options.describe()) {}
  ~Impl() { drop(); }

  [[noreturn]] void fail(const std::string& what) const {
    throw RedisError(endpoint + ": " + one_line(what));
  }

  void drop() {
    if (ctx != nullptr) {
      redisFree(ctx);
      ctx = nullptr;
    }
  }

  int attempts() const { return std::max(1, options.reconnect_attempts); }

  struct IoFailure {
    std::string cause;
    bool retryable;  // the connection broke; a fresh one may succeed
  };

  // Why the last read/write on ctx failed; saved_errno is errno right after the hiredis call.
  IoFailure io_failure(int saved_errno) const {
    if (ctx == nullptr) return {"not connected", true};
    switch (ctx->err) {
      case REDIS_ERR_IO:
        if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK ||
            std::strcmp(ctx->errstr, std::strerror(EAGAIN)) == 0) {
          // SO_RCVTIMEO/SO_SNDTIMEO expired: hiredis reports it as an I/O error with EAGAIN.
          return {"timeout: no reply within " + std::to_string(options.command_timeout_ms) +
                      " ms (command_timeout_ms); the connection was dropped",
                  false};
        }
        return {lower_first(ctx->errstr), true};
      case REDIS_ERR_EOF:
        return {"connection closed by server", true};
      case REDIS_ERR_PROTOCOL:
        return {lower_first(ctx->errstr), false};  // "protocol error, got ..."
      case REDIS_ERR_OOM:
        return {"out of memory in hiredis", false};
      default:
        return {lower_first(ctx->errstr), false};
    }
  }

  // One handshake command on a fresh context. Returns an empty string and the reply in `out`, or
  // the cause of an I/O failure.
  std::string handshake(std::initializer_list<std::string_view> argv, RedisReply& out) {
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    for (std::string_view a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    SigpipeBlock guard;
    errno = 0;
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(ctx, static_cast<int>(ptrs.size()), ptrs.data(), lens.data()));
    int saved_errno = errno;
    if (r == nullptr) {
      std::string cause = io_failure(saved_errno).cause;
      if (ctx->err == REDIS_ERR_IO && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)) {
        cause = "timeout: no reply within " + std::to_string(options.connect_timeout_ms) +
                " ms (connect_timeout_ms)";
      }
      return command_name(*argv.begin()) + " during connect: " + cause;
    }
    out = convert(r);
    freeReplyObject(r);
    return {};
  }

  // Connects and authenticates once. Returns an empty string on success (ctx is then ready), or
  // the one-line cause of the failure (ctx is then null).
  std::string try_connect() {
    drop();
    timeval connect_tv = to_timeval(options.connect_timeout_ms);
    redisContext* c = options.connect_timeout_ms > 0
                          ? redisConnectWithTimeout(options.host.c_str(), options.port, connect_tv)
                          : redisConnect(options.host.c_str(), options.port);
    if (c == nullptr) return "cannot allocate a hiredis context";
    if (c->err != 0) {
      std::string cause = lower_first(c->errstr);
      redisFree(c);
      return cause.empty() ? std::string("connection failed") : cause;
    }
    ctx = c;
    std::string cause = authenticate(connect_tv);
    if (!cause.empty()) {
      drop();
      return cause;
    }
    if (redisSetTimeout(ctx, to_timeval(options.command_timeout_ms)) != REDIS_OK) {
      cause = std::string("cannot set command timeout: ") + ctx->errstr;
      drop();
    }
    return cause;
  }

  std::string authenticate(const timeval& connect_tv) {
    if (redisSetTimeout(ctx, connect_tv) != REDIS_OK) {
      return std::string("cannot set timeout: ") + ctx->errstr;
    }
    RedisReply reply;
    std::string cause;
    if (!options.user.empty() || !options.password.empty()) {
      cause = options.user.empty() ? handshake({"AUTH", options.password}, reply)
                                   : handshake({"AUTH", options.user, options.password}, reply);
      if (!cause.empty()) return cause;
      if (reply.is_error()) return "authentication failed: " + reply.str;
    }
    // AUTH succeeding (or not being needed) does not prove we may run commands: a server with
    // requirepass and no AUTH from us only says NOAUTH at the first command, so ask now.
    cause = handshake({"PING"}, reply);
    if (!cause.empty()) return cause;
    if (reply.is_error()) {
      if (reply.str.rfind("NOAUTH", 0) == 0) {
        return reply.str + " (the server requires a password; none is configured)";
      }
      return "PING during connect: " + reply.str;
    }
    if (options.db != 0) {
      std::string db = std::to_string(options.db);
      cause = handshake({"SELECT", db}, reply);
      if (!cause.empty()) return cause;
      if (reply.is_error()) return "SELECT " + db + ": " + reply.str;
    }
    return {};
  }

  // Drops the connection and connects again, up to `attempts` times, sleeping backoff_ms,
  // 2*backoff_ms, ... (capped) between attempts when `backoff`. Throws after the last failure;
  // `reason` (why we are reconnecting) leads the message when not empty.
  void reconnect(const std::string& reason, int attempts, bool backoff) {
    drop();
    std::string last;
    for (int i = 0; i < attempts; ++i) {
      if (i > 0 && backoff && options.reconnect_backoff_ms > 0) {
        long long ms = static_cast<long long>(options.reconnect_backoff_ms) << std::min(i - 1, 20);
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min<long long>(ms, kMaxBackoffMs)));
      }
      last = try_connect();
      if (last.empty()) return;
    }
    fail((reason.empty() ? std::string() : reason + "; ") + "reconnect failed after " +
         std::to_string(attempts) + (attempts == 1 ? " attempt: " : " attempts: ") + last);
  }

  // Sends argv, reconnecting first if needed and once more after a connection error.
  // Error replies are returned, not thrown; the caller decides.
  RedisReply run(const std::string_view* argv, size_t argc, int attempts, bool backoff) {
    std::vector<const char*> ptrs(argc);
    std::vector<size_t> lens(argc);
    for (size_t i = 0; i < argc; ++i) {
      ptrs[i] = argv[i].data();
      lens[i] = argv[i].size();
    }
    if (argc == 0) fail("empty command: argv has no elements");
    auto name = [&] { return command_name(argv[0]); };
    if (ctx == nullptr) reconnect(name() + ": not connected", attempts, backoff);
    for (int round = 0;; ++round) {
      redisReply* r = nullptr;
      int saved_errno = 0;
      {
        SigpipeBlock guard;
        errno = 0;
        r = static_cast<redisReply*>(redisCommandArgv(ctx, static_cast<int>(argc), ptrs.data(), lens.data()));
        saved_errno = errno;
      }
      if (r != nullptr) {
        RedisReply out = convert(r);
        freeReplyObject(r);
        return out;
      }
      IoFailure failure = io_failure(saved_errno);
      drop();
      if (!failure.retryable || round > 0) fail(name() + ": " + failure.cause);
      reconnect(name() + ": " + failure.cause, attempts, backoff);
      spdlog::warn("{}: {}; reconnected, sending {} again (it may be applied twice)", endpoint, failure.cause,
                   name());
    }
  }
};

RedisClient::RedisClient(RedisOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  std::string cause = impl_->try_connect();
  if (!cause.empty()) impl_->fail(cause);
}

RedisClient::~RedisClient() = default;
RedisClient::RedisClient(RedisClient&&) noexcept = default;
RedisClient& RedisClient::operator=(RedisClient&&) noexcept = default;

RedisReply RedisClient::command(const std::vector<std::string>& argv) {
  std::vector<std::string_view> views(argv.begin(), argv.end());
  return command_views(views.data(), views.size());
}

RedisReply RedisClient::command(std::initializer_list<std::string_view> argv) {
  return command_views(argv.begin(), argv.size());
}

RedisReply RedisClient::command_views(const std::string_view* argv, size_t argc) {
  RedisReply reply = impl_->run(argv, argc, impl_->attempts(), true);
  if (reply.is_error()) {
    impl_->fail(command_name(argv[0]) + ": " + reply.str);  // run() rejected argc == 0
  }
  return reply;
}

Pipeline RedisClient::pipeline() { return Pipeline(impl_.get()); }

std::string RedisClient::xadd(const std::string& stream,
                              const std::vector<std::pair<std::string, std::string>>& fields,
                              size_t maxlen_approx, const std::string& id) {
  const std::string maxlen_text = std::to_string(maxlen_approx);
  std::vector<std::string_view> argv = xadd_argv(stream, fields, maxlen_approx, id, maxlen_text);
  RedisReply reply = command_views(argv.data(), argv.size());
  if (!reply.is_string()) impl_->fail("XADD " + stream + ": expected an entry id, got a non-string reply");
  return reply.str;
}

bool RedisClient::ping() noexcept {
  if (!impl_) return false;
  try {
    std::string_view argv[] = {"PING"};
    RedisReply reply = impl_->run(argv, 1, 1, false);
    return reply.is_status() && reply.str == "PONG";
  } catch (...) {
    return false;
  }
}

bool RedisClient::connected() const { return impl_ && impl_->ctx != nullptr; }

void RedisClient::reconnect() { impl_->reconnect("", impl_->attempts(), true); }

const RedisOptions& RedisClient::options() const { return impl_->options; }

// ---- Pipeline ----

Pipeline& Pipeline::append(const std::vector<std::string>& argv) {
  if (argv.empty()) client_->fail("pipeline: empty command: argv has no elements");
  std::vector<std::string_view> views(argv.begin(), argv.end());
  append_resp(buffer_, views.data(), views.size());
  ++count_;
  return *this;
}

Pipeline& Pipeline::append(std::initializer_list<std::string_view> argv) {
  if (argv.size() == 0) client_->fail("pipeline: empty command: argv has no elements");
  append_resp(buffer_, argv.begin(), argv.size());
  ++count_;
  return *this;
}

Pipeline& Pipeline::xadd(const std::string& stream,
                         const std::vector<std::pair<std::string, std::string>>& fields, size_t maxlen_approx,
                         const std::string& id) {
  const std::string maxlen_text = std::to_string(maxlen_approx);
  std::vector<std::string_view> argv = xadd_argv(stream, fields, maxlen_approx, id, maxlen_text);
  append_resp(buffer_, argv.data(), argv.size());
  ++count_;
  return *this;
}

void Pipeline::clear() {
  buffer_.clear();  // keeps capacity for the next batch
  count_ = 0;
}

std::vector<RedisReply> Pipeline::execute() {
  std::vector<RedisReply> replies;
  if (count_ == 0) return replies;
  const size_t n = count_;
  RedisClient::Impl& client = *client_;
  const std::string what = "pipeline of " + std::to_string(n) + (n == 1 ? " command" : " commands");
  if (client.ctx == nullptr) {
    try {
      client.reconnect(what + ": not connected", client.attempts(), true);
    } catch (...) {
      clear();
      throw;
    }
  }
  replies.reserve(n);
  SigpipeBlock guard;
  if (redisAppendFormattedCommand(client.ctx, buffer_.data(), buffer_.size()) != REDIS_OK) {
    clear();
    client.drop();
    client.fail(what + ": cannot queue commands in hiredis (out of memory)");
  }
  clear();
  for (size_t i = 0; i < n; ++i) {
    void* raw = nullptr;
    errno = 0;
    int rc = redisGetReply(client.ctx, &raw);
    int saved_errno = errno;
    if (rc != REDIS_OK || raw == nullptr) {
      std::string cause = client.io_failure(saved_errno).cause;
      client.drop();
      client.fail(what + ": " + cause + " after " + std::to_string(i) + " of " + std::to_string(n) +
                  " replies (the remaining commands may or may not have been applied)");
    }
    auto* r = static_cast<redisReply*>(raw);
    replies.push_back(convert(r));
    freeReplyObject(r);
  }
  return replies;
}

}  // namespace orchard::core
