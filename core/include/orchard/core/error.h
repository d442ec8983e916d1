// Typed errors raised at Orchard's boundaries (config, wire, Redis, CLI, plugins).
//
// Each carries one line a user can act on: what was wrong, where, and what is allowed. Code
// inside a module trusts data that has been validated at its boundary and does not throw these.
#pragma once

#include <stdexcept>
#include <string>

namespace orchard {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A run spec or other YAML document is malformed or fails validation. The message names the
// file, the key path ("replay.tables[0].max_size") and the allowed values.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// A message from a peer cannot be used: malformed frames, wrong protocol version, sizes or
// dtypes that do not add up. `code` is the orchard.v1.ErrorCode to send back.
class WireError : public Error {
 public:
  WireError(int code, const std::string& message) : Error(message), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

// An environment was misused or misconfigured: unknown env or option, action outside the
// action space, stepping a finished episode, malformed data file, or a failing plugin. The
// message names the env (and plugin path), the field and the allowed range.
class EnvError : public Error {
 public:
  using Error::Error;
};

// Redis is unreachable, refused a command, or answered with an error.
class RedisError : public Error {
 public:
  using Error::Error;
};

}  // namespace orchard
