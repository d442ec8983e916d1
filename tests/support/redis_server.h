// A real redis-server child process for tests, on a loopback port picked at run time: the
// orchestrator's embedded Redis with a private temp dir and no persistence. If redis-server is
// missing the constructor throws, so tests fail rather than skip (CI installs it).
#pragma once

#include <string>

#include "orchard/orchestrator/embedded_redis.h"

namespace orchard::testing {

class RedisServer : public orchestrator::EmbeddedRedis {
 public:
  explicit RedisServer(std::string password = "")
      : orchestrator::EmbeddedRedis(orchestrator::EmbeddedRedisOptions{std::move(password)}) {}
};

}  // namespace orchard::testing
