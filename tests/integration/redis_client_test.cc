// RedisClient against a real redis-server on a loopback port picked at run time.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "orchard/core/error.h"
#include "orchard/core/net.h"
#include "orchard/core/redis.h"
#include "support/redis_server.h"

namespace {

using orchard::ConfigError;
using orchard::RedisError;
using orchard::core::Pipeline;
using orchard::core::RedisClient;
using orchard::core::RedisOptions;
using orchard::core::RedisReply;
using orchard::testing::RedisServer;
using Clock = std::chrono::steady_clock;

// Runs fn, expects a RedisError, returns its message ("" and a test failure otherwise).
template <class Fn>
std::string redis_error_of(Fn&& fn) {
  try {
    fn();
  } catch (const RedisError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected orchard::RedisError, got another exception: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected orchard::RedisError, nothing was thrown";
  return {};
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

bool one_line(const std::string& s) { return !contains(s, "\n") && !contains(s, "\r"); }

std::string endpoint(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

long long elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
}

class RedisClientTest : public ::testing::Test {
 protected:
  RedisOptions options() const { return RedisOptions::from_url(server_.url()); }

  RedisServer server_;
};

TEST_F(RedisClientTest, ConnectsAndPings) {
  RedisClient client(options());
  EXPECT_TRUE(client.connected());
  EXPECT_TRUE(client.ping());
  RedisReply pong = client.command({"PING"});
  EXPECT_TRUE(pong.is_status());
  EXPECT_EQ(pong.str, "PONG");
  EXPECT_EQ(client.options().port, server_.port());
}

TEST_F(RedisClientTest, SetAndGetPreserveEmbeddedNulBytes) {
  RedisClient client(options());
  const std::string key("k\0ey", 4);
  const std::string value("a\0b\r\n\0c\xff", 8);

  RedisReply ok = client.command({"SET", key, value});
  EXPECT_TRUE(ok.is_status());
  EXPECT_EQ(ok.str, "OK");

  RedisReply got = client.command(std::vector<std::string>{"GET", key});
  ASSERT_TRUE(got.is_string());
  EXPECT_EQ(got.str, value);
  EXPECT_EQ(got.str.size(), 8u);

  EXPECT_TRUE(client.command({"GET", std::string("k", 1)}).is_nil());
  EXPECT_EQ(client.command({"STRLEN", key}).integer, 8);
}

TEST_F(RedisClientTest, ErrorReplyThrowsRedisErrorNamingTheCommand) {
  RedisClient client(options());
  client.command({"SET", "plain", "x"});

  std::string wrongtype = redis_error_of([&] { client.command({"lpush", "plain", "y"}); });
  EXPECT_TRUE(contains(wrongtype, "LPUSH")) << wrongtype;
  EXPECT_TRUE(contains(wrongtype, "WRONGTYPE")) << wrongtype;
  EXPECT_TRUE(contains(wrongtype, endpoint(server_.port()))) << wrongtype;
  EXPECT_TRUE(one_line(wrongtype)) << wrongtype;

  std::string unknown = redis_error_of([&] { client.command({"NOSUCHCOMMAND", "a"}); });
  EXPECT_TRUE(contains(unknown, "NOSUCHCOMMAND")) << unknown;
  EXPECT_TRUE(contains(unknown, "unknown command")) << unknown;

  // An empty command is refused before anything is sent.
  EXPECT_THROW(client.command(std::vector<std::string>{}), RedisError);
  EXPECT_THROW(client.pipeline().append(std::vector<std::string>{}), RedisError);

  // An error reply leaves the connection intact.
  EXPECT_TRUE(client.connected());
  EXPECT_EQ(client.command({"GET", "plain"}).str, "x");
}

TEST_F(RedisClientTest, PipelineOf1000IncrsReturnsRepliesInOrder) {
  RedisClient client(options());
  Pipeline pipeline = client.pipeline();
  for (int i = 0; i < 1000; ++i) pipeline.append({"INCR", "counter"});
  EXPECT_EQ(pipeline.size(), 1000u);

  std::vector<RedisReply> replies = pipeline.execute();
  ASSERT_EQ(replies.size(), 1000u);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(replies[i].is_integer()) << "reply " << i;
    ASSERT_EQ(replies[i].integer, i + 1) << "reply " << i;
  }
  EXPECT_TRUE(pipeline.empty());
  EXPECT_EQ(client.command({"GET", "counter"}).str, "1000");

  // The pipeline is reusable after execute().
  pipeline.append(std::vector<std::string>{"INCR", "counter"});
  std::vector<RedisReply> again = pipeline.execute();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].integer, 1001);
  EXPECT_TRUE(pipeline.execute().empty());
}

TEST_F(RedisClientTest, PipelineReturnsErrorRepliesInPlace) {
  RedisClient client(options());
  Pipeline pipeline = client.pipeline();
  pipeline.append({"SET", "s", "not-a-number"}).append({"INCR", "s"}).append({"GET", "s"});
  std::vector<RedisReply> replies = pipeline.execute();
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_TRUE(replies[0].is_status());
  EXPECT_TRUE(replies[1].is_error());
  EXPECT_TRUE(contains(replies[1].str, "not an integer")) << replies[1].str;
  EXPECT_EQ(replies[2].str, "not-a-number");
}

TEST_F(RedisClientTest, XaddWithApproximateMaxlenKeepsStreamBounded) {
  RedisClient client(options());
  std::string last_id;
  for (int i = 0; i < 5000; ++i) {
    last_id = client.xadd("metrics", {{"step", std::to_string(i)}, {"loss", "0.5"}}, 100);
    ASSERT_TRUE(contains(last_id, "-")) << last_id;
  }
  long long length = client.command({"XLEN", "metrics"}).integer;
  // MAXLEN ~ trims whole radix-tree nodes (stream-node-max-entries, 100 by default).
  EXPECT_GE(length, 100);
  EXPECT_LE(length, 250);

  RedisReply newest = client.command({"XREVRANGE", "metrics", "+", "-", "COUNT", "1"});
  ASSERT_EQ(newest.elements.size(), 1u);
  EXPECT_EQ(newest.elements[0].elements[0].str, last_id);
  EXPECT_EQ(newest.elements[0].elements[1].elements[1].str, "4999");

  // Explicit ids are passed through, and a non-increasing id is a server error naming XADD.
  EXPECT_EQ(client.xadd("explicit", {{"f", "v"}}, 0, "5-1"), "5-1");
  std::string error = redis_error_of([&] { client.xadd("explicit", {{"f", "v"}}, 0, "4-1"); });
  EXPECT_TRUE(contains(error, "XADD")) << error;
  EXPECT_THROW(client.xadd("explicit", {}), RedisError);
}

TEST_F(RedisClientTest, PipelinedXaddReturnsEntryIdsAndKeepsStreamBounded) {
  RedisClient client(options());
  Pipeline pipeline = client.pipeline();
  for (int i = 0; i < 5000; ++i) pipeline.xadd("batched", {{"step", std::to_string(i)}}, 100);
  std::vector<RedisReply> replies = pipeline.execute();
  ASSERT_EQ(replies.size(), 5000u);
  for (const RedisReply& reply : replies) {
    ASSERT_TRUE(reply.is_string());
    ASSERT_TRUE(contains(reply.str, "-")) << reply.str;
  }
  long long length = client.command({"XLEN", "batched"}).integer;
  EXPECT_GE(length, 100);
  EXPECT_LE(length, 250);
}

TEST_F(RedisClientTest, SelectsConfiguredDatabase) {
  RedisOptions in_db5 = options();
  in_db5.db = 5;
  RedisClient client(in_db5);
  client.command({"SET", "where", "db5"});
  EXPECT_TRUE(contains(client.command({"CLIENT", "INFO"}).str, " db=5 "));

  RedisClient db0(options());
  EXPECT_TRUE(db0.command({"GET", "where"}).is_nil());
}

TEST_F(RedisClientTest, MovedClientAndItsPipelineKeepWorking) {
  RedisClient original(options());
  Pipeline pipeline = original.pipeline();
  RedisClient moved(std::move(original));
  EXPECT_FALSE(original.connected());  // NOLINT(bugprone-use-after-move): documented state
  pipeline.append({"INCR", "n"});
  EXPECT_EQ(pipeline.execute().at(0).integer, 1);
  EXPECT_EQ(moved.command({"GET", "n"}).str, "1");
}

TEST_F(RedisClientTest, ReconnectsAfterServerRestartWithoutNewClient) {
  RedisClient client(options());
  client.command({"SET", "before", "1"});

  server_.stop();
  server_.start();  // same port, empty dataset

  RedisReply ok = client.command({"SET", "after", "2"});
  EXPECT_EQ(ok.str, "OK");
  EXPECT_TRUE(client.connected());
  EXPECT_TRUE(client.command({"GET", "before"}).is_nil());
  EXPECT_EQ(client.command({"GET", "after"}).str, "2");
}

TEST_F(RedisClientTest, PingIsFalseWhileServerIsDownAndTrueAfterRestart) {
  RedisClient client(options());
  server_.stop();
  Clock::time_point start = Clock::now();
  EXPECT_FALSE(client.ping());
  EXPECT_LT(elapsed_ms(start), 2000);
  EXPECT_FALSE(client.connected());
  server_.start();
  EXPECT_TRUE(client.ping());
  EXPECT_TRUE(client.connected());
}

TEST_F(RedisClientTest, CommandThrowsWhenReconnectAttemptsAreExhaustedThenRecovers) {
  RedisOptions opts = options();
  opts.reconnect_attempts = 2;
  opts.reconnect_backoff_ms = 10;
  RedisClient client(opts);
  server_.stop();

  std::string error = redis_error_of([&] { client.command({"GET", "k"}); });
  EXPECT_TRUE(contains(error, "reconnect failed after 2 attempts")) << error;
  EXPECT_TRUE(contains(error, "connection refused")) << error;
  EXPECT_TRUE(contains(error, endpoint(server_.port()))) << error;
  EXPECT_TRUE(one_line(error)) << error;

  server_.start();
  EXPECT_TRUE(client.command({"GET", "k"}).is_nil());
}

TEST_F(RedisClientTest, PipelineIsNotRetriedOnConnectionLossAndClientReconnectsOnNextCall) {
  RedisClient client(options());
  server_.stop();
  server_.start();  // the client's connection is now stale

  Pipeline pipeline = client.pipeline();
  pipeline.append({"INCR", "n"});
  std::string error = redis_error_of([&] { pipeline.execute(); });
  EXPECT_TRUE(contains(error, "pipeline of 1 command:")) << error;
  EXPECT_TRUE(one_line(error)) << error;
  EXPECT_TRUE(pipeline.empty());
  EXPECT_FALSE(client.connected());

  pipeline.append({"INCR", "n"});
  EXPECT_EQ(pipeline.execute().at(0).integer, 1);
}

TEST_F(RedisClientTest, WritingToClosedConnectionThrowsInsteadOfRaisingSigpipe) {
  RedisOptions opts = options();
  opts.reconnect_attempts = 1;
  RedisClient client(opts);
  server_.stop();
  // Larger than the socket buffers, so hiredis keeps writing after the peer reset the connection.
  const std::string big(32 << 20, 'x');
  EXPECT_THROW(client.command({"SET", "big", big}), RedisError);
  Pipeline pipeline = client.pipeline();
  pipeline.append({"SET", "big", big});
  EXPECT_THROW(pipeline.execute(), RedisError);
}

TEST_F(RedisClientTest, CommandTimeoutThrowsAndClientIsUsableAfterwards) {
  RedisOptions opts = options();
  opts.command_timeout_ms = 300;
  RedisClient client(opts);

  Clock::time_point start = Clock::now();
  std::string error = redis_error_of([&] { client.command({"BLPOP", "somekey", "5"}); });
  long long took = elapsed_ms(start);
  EXPECT_TRUE(contains(error, "timeout")) << error;
  EXPECT_TRUE(contains(error, "BLPOP")) << error;
  EXPECT_TRUE(one_line(error)) << error;
  EXPECT_GE(took, 250);
  EXPECT_LT(took, 2000);

  client.command({"SET", "k", "v"});
  EXPECT_EQ(client.command({"GET", "k"}).str, "v");
  EXPECT_TRUE(client.ping());
}

TEST(RedisAuthTest, CorrectPasswordAuthenticates) {
  RedisServer server("correct-horse");
  RedisClient client(RedisOptions::from_url(server.url()));
  client.command({"SET", "k", "v"});
  EXPECT_EQ(client.command({"GET", "k"}).str, "v");
}

TEST(RedisAuthTest, WrongPasswordThrowsOneLineAuthenticationError) {
  RedisServer server("correct-horse");
  RedisOptions options = RedisOptions::from_url(server.url());
  options.password = "battery-staple";
  std::string error = redis_error_of([&] { RedisClient client(options); });
  EXPECT_TRUE(contains(error, "authentication failed")) << error;
  EXPECT_TRUE(contains(error, "WRONGPASS")) << error;
  EXPECT_TRUE(contains(error, endpoint(server.port()))) << error;
  EXPECT_FALSE(contains(error, "battery-staple")) << error;
  EXPECT_FALSE(contains(error, "correct-horse")) << error;
  EXPECT_TRUE(one_line(error)) << error;
}

TEST(RedisAuthTest, MissingPasswordAgainstProtectedServerThrowsNoauthAtConnect) {
  RedisServer server("correct-horse");
  RedisOptions options = RedisOptions::from_url(server.url());
  options.password.clear();
  std::string error = redis_error_of([&] { RedisClient client(options); });
  EXPECT_TRUE(contains(error, "NOAUTH")) << error;
  EXPECT_TRUE(contains(error, "Authentication required")) << error;
  EXPECT_TRUE(contains(error, "password")) << error;
  EXPECT_TRUE(one_line(error)) << error;
}

TEST(RedisAuthTest, AclUserAuthenticatesWithUsernameAndPassword) {
  RedisServer server("admin-pw");
  RedisClient admin(RedisOptions::from_url(server.url()));
  admin.command({"ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "&*", "+@all"});

  RedisOptions as_alice =
      RedisOptions::from_url("redis://alice:alice-pw@127.0.0.1:" + std::to_string(server.port()) + "/2");
  RedisClient alice(as_alice);
  EXPECT_EQ(alice.command({"ACL", "WHOAMI"}).str, "alice");
  EXPECT_TRUE(contains(alice.command({"CLIENT", "INFO"}).str, " db=2 "));

  as_alice.password = "not-alice-pw";
  std::string error = redis_error_of([&] { RedisClient wrong(as_alice); });
  EXPECT_TRUE(contains(error, "authentication failed")) << error;
}

TEST(RedisAuthTest, ReconnectReauthenticatesAndReselectsDatabase) {
  RedisServer server("pw");
  RedisOptions options = RedisOptions::from_url(server.url());
  options.db = 3;
  RedisClient client(options);
  client.command({"SET", "k", "before"});

  server.stop();
  server.start();
  client.command({"SET", "k", "after"});  // would fail with NOAUTH without re-AUTH

  RedisOptions db3 = RedisOptions::from_url(server.url());
  db3.db = 3;
  EXPECT_EQ(RedisClient(db3).command({"GET", "k"}).str, "after");
  EXPECT_TRUE(RedisClient(RedisOptions::from_url(server.url())).command({"GET", "k"}).is_nil());
}

TEST(RedisUnreachableTest, ConnectToClosedPortThrowsOneLineErrorNamingHostAndPort) {
  RedisOptions options;
  options.port = orchard::core::free_loopback_port();  // nobody listens here
  Clock::time_point start = Clock::now();
  std::string error = redis_error_of([&] { RedisClient client(options); });
  EXPECT_LT(elapsed_ms(start), 3000);
  EXPECT_TRUE(contains(error, "redis redis://" + endpoint(options.port) + "/0")) << error;
  EXPECT_TRUE(contains(error, "connection refused")) << error;
  EXPECT_TRUE(one_line(error)) << error;
}

TEST(RedisOptionsTest, FromUrlParsesAllParts) {
  RedisOptions full = RedisOptions::from_url("redis://alice:p%40ss:w@example.com:6380/3");
  EXPECT_EQ(full.user, "alice");
  EXPECT_EQ(full.password, "p@ss:w");
  EXPECT_EQ(full.host, "example.com");
  EXPECT_EQ(full.port, 6380);
  EXPECT_EQ(full.db, 3);
  EXPECT_EQ(full.describe(), "redis://example.com:6380/3");

  RedisOptions bare = RedisOptions::from_url("redis://cache.internal");
  EXPECT_EQ(bare.host, "cache.internal");
  EXPECT_EQ(bare.port, 6379);
  EXPECT_EQ(bare.db, 0);
  EXPECT_TRUE(bare.user.empty());
  EXPECT_TRUE(bare.password.empty());
  EXPECT_EQ(bare.connect_timeout_ms, 2000);

  RedisOptions password_only = RedisOptions::from_url("redis://:secret@127.0.0.1:7000/");
  EXPECT_TRUE(password_only.user.empty());
  EXPECT_EQ(password_only.password, "secret");
  EXPECT_EQ(password_only.port, 7000);
  EXPECT_EQ(password_only.db, 0);
  EXPECT_EQ(password_only.describe(), "redis://127.0.0.1:7000/0");

  RedisOptions ipv6 = RedisOptions::from_url("redis://[::1]:6390/2");
  EXPECT_EQ(ipv6.host, "::1");
  EXPECT_EQ(ipv6.port, 6390);
  EXPECT_EQ(ipv6.describe(), "redis://[::1]:6390/2");
}

TEST(RedisOptionsTest, FromUrlRejectsBadUrlsWithOneLineErrorAndMaskedPassword) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"http://127.0.0.1:6379/0", "bad scheme 'http'"},
      {"localhost:6379", "bad scheme"},
      {"rediss://h:6379", "TLS"},
      {"redis://:hunter2@h:99999/0", "bad port '99999'"},
      {"redis://:hunter2@h:0", "bad port '0'"},
      {"redis://h:port/0", "bad port 'port'"},
      {"redis://h:/0", "bad port ''"},
      {"redis://u:hunter2@h:6379/x", "bad db 'x'"},
      {"redis://h:6379/-1", "bad db '-1'"},
      {"redis://h:6379/99999999999", "bad db"},
      {"redis://", "missing host"},
      {"redis://:hunter2@", "missing host"},
      {"redis://::1:6379", "brackets"},
      {"redis://h:6379/0?timeout=1", "query"},
  };
  for (const auto& [url, reason] : cases) {
    try {
      RedisOptions::from_url(url);
      ADD_FAILURE() << url << ": expected ConfigError";
    } catch (const ConfigError& e) {
      std::string message = e.what();
      EXPECT_TRUE(contains(message, reason)) << url << " -> " << message;
      EXPECT_TRUE(contains(message, "bad Redis URL '")) << message;
      EXPECT_FALSE(contains(message, "hunter2")) << message;
      EXPECT_TRUE(one_line(message)) << message;
      if (contains(url, "hunter2")) {
        EXPECT_TRUE(contains(message, ":***@")) << message;
      }
    }
  }
}

}  // namespace
