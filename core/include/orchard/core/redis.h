// A synchronous Redis client: one TCP connection, commands, pipelines and stream appends.
//
// Orchard uses Redis for run metadata, metrics streams and coordination, never on a hot path.
// The client is a thin layer over hiredis that adds what every caller needs: options parsed from
// a redis:// URL, AUTH/SELECT on every (re)connect, bounded reconnects, command timeouts, and
// errors that are one line naming the endpoint, the command and the cause.
//
// Delivery: a command that fails with a connection error (reset, EOF) is retried once on a fresh
// connection. The server may have applied it before the connection broke, so a retried command
// can take effect twice (at-least-once). Commands that must not repeat (INCR used as a sequence,
// XADD with "*") should be made idempotent by the caller when a duplicate matters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace orchard::core {

// Where Redis is and how patient to be with it.
struct RedisOptions {
  std::string host = "127.0.0.1";  // name or address; IPv6 literals without brackets
  uint16_t port = 6379;
  std::string user;                // Redis 6+ ACL user; empty = the default user
  std::string password;            // empty = no AUTH (unless user is set, then AUTH user "")
  int db = 0;                      // SELECT db after connecting when != 0
  int connect_timeout_ms = 2000;   // TCP connect and handshake (AUTH/PING/SELECT); <= 0 = none
  int command_timeout_ms = 2000;   // wait for one reply (or one pipeline reply); <= 0 = none
  int reconnect_attempts = 3;      // connect attempts after a connection is lost (min 1)
  int reconnect_backoff_ms = 100;  // sleep before the 2nd attempt; doubles per attempt, max 5 s

  // Parses redis://[[user]:password@]host[:port][/db]. Port defaults to 6379, db to 0; user and
  // password may be percent-encoded; IPv6 hosts are bracketed ("redis://[::1]:6380/2").
  // Timeouts and reconnect settings keep their defaults. Throws orchard::ConfigError with one
  // line naming the URL (password shown as ***) and what is wrong: scheme, host, port or db.
  static RedisOptions from_url(const std::string& url);

  // "redis://host:port/db", never the user or password; used in every error message.
  std::string describe() const;
};

// One reply, deep-copied out of hiredis so it owns its memory and outlives the connection.
struct RedisReply {
  enum class Type { Nil, Status, Error, Integer, String, Array };

  Type type = Type::Nil;
  long long integer = 0;             // Integer replies
  std::string str;                   // Status, Error and String replies (binary-safe)
  std::vector<RedisReply> elements;  // Array replies

  bool is_nil() const { return type == Type::Nil; }
  bool is_status() const { return type == Type::Status; }
  bool is_error() const { return type == Type::Error; }
  bool is_integer() const { return type == Type::Integer; }
  bool is_string() const { return type == Type::String; }
  bool is_array() const { return type == Type::Array; }
};

class Pipeline;

// A connection to one Redis server.
//
// Not thread-safe: use one client per thread. Movable, not copyable; a moved-from client may only
// be destroyed or assigned to. Every call blocks the calling thread: connecting for up to
// connect_timeout_ms per attempt, a command for up to command_timeout_ms per reply, plus the
// reconnect backoff when the connection has to be re-established.
//
// All errors are orchard::RedisError with one line: "redis <describe()>: <what>: <cause>".
class RedisClient {
 public:
  // Connects, sets the command timeout, sends AUTH (ACL form "AUTH user password" when a user is
  // set), PING (so a server that needs a password we lack fails here with NOAUTH, not at the
  // first command) and SELECT db when db != 0. One attempt, no retries. Throws RedisError when
  // the server is unreachable, the handshake times out, or authentication or SELECT is refused.
  explicit RedisClient(RedisOptions options);
  ~RedisClient();
  RedisClient(RedisClient&&) noexcept;
  RedisClient& operator=(RedisClient&&) noexcept;
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Sends one command and waits for its reply. Arguments are binary-safe. Returns Nil, Status,
  // Integer, String and Array replies; throws RedisError when the reply is an error (message has
  // the command name and the server's text), on timeout, and on connection errors that persist
  // after reconnecting. If the connection had been lost it is re-established first (up to
  // reconnect_attempts with backoff); a command that fails with a connection error is sent once
  // more on a fresh connection (at-least-once, see the top of this file). A timeout is not
  // retried: the connection is dropped (the server may still run the command) and the next call
  // reconnects. Blocking commands (BLPOP, XREAD BLOCK) need command_timeout_ms above their own
  // timeout, or <= 0. An empty argv throws RedisError without sending anything.
  RedisReply command(const std::vector<std::string>& argv);
  RedisReply command(std::initializer_list<std::string_view> argv);

  // A pipeline that sends its queued commands in one write when executed. It borrows this
  // client's connection: it must not outlive the client (moving the client is fine).
  Pipeline pipeline();

  // XADD stream [MAXLEN ~ maxlen_approx] id field value ...; returns the entry id. maxlen_approx
  // == 0 means unbounded. With MAXLEN ~ Redis trims whole macro nodes, so the stream may hold
  // somewhat more than maxlen_approx entries (up to about one node, 100 entries by default).
  // Throws like command(); also throws RedisError when fields is empty.
  std::string xadd(const std::string& stream, const std::vector<std::pair<std::string, std::string>>& fields,
                   size_t maxlen_approx = 0, const std::string& id = "*");

  // True when PING gets PONG. Never throws; reconnects (one attempt, no backoff) when the
  // connection had been lost. Blocks for at most about connect_timeout_ms + command_timeout_ms.
  bool ping() noexcept;

  // Whether a connection is currently held. It is dropped after an I/O error or timeout and
  // re-established by the next call; a true here does not prove the server is still there.
  bool connected() const;

  // Drops the connection and connects again (with backoff, up to reconnect_attempts), including
  // AUTH and SELECT. Throws RedisError when every attempt fails.
  void reconnect();

  const RedisOptions& options() const;

 private:
  friend class Pipeline;
  struct Impl;

  // command() for argv views; throws on error replies.
  RedisReply command_views(const std::string_view* argv, size_t argc);

  std::unique_ptr<Impl> impl_;
};

// Commands queued on a client and sent together: one write, then one reply per command, in
// order. Build with append()/xadd(), run with execute(); a Pipeline can be reused after execute.
// Not thread-safe; belongs to the thread that owns the client.
class Pipeline {
 public:
  // Queues a command (binary-safe arguments). Nothing is sent until execute(). An empty argv
  // throws RedisError.
  Pipeline& append(const std::vector<std::string>& argv);
  Pipeline& append(std::initializer_list<std::string_view> argv);

  // Queues XADD with the same arguments as RedisClient::xadd; its reply is the entry id (String)
  // or an Error. Throws RedisError when fields is empty.
  Pipeline& xadd(const std::string& stream, const std::vector<std::pair<std::string, std::string>>& fields,
                 size_t maxlen_approx = 0, const std::string& id = "*");

  // Sends every queued command and returns one reply per command, in order. Error replies are
  // returned in place, not thrown. Connects first if the client's connection had been lost.
  // Throws RedisError on timeout or connection loss: the pipeline is not retried (some commands
  // may have been applied), the connection is dropped and the client reconnects on its next
  // call. Always leaves the pipeline empty.
  std::vector<RedisReply> execute();

  size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  void clear();

 private:
  friend class RedisClient;
  explicit Pipeline(RedisClient::Impl* client) : client_(client) {}

  RedisClient::Impl* client_;
  std::string buffer_;  // queued commands, already encoded as RESP arrays of bulk strings
  size_t count_ = 0;
};

}  // namespace orchard::core
