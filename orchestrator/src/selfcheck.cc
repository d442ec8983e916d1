// `orchard selfcheck`: an end-to-end check of Orchard's runtime between two real processes.
//
// The parent plays a replay shard: a ROUTER socket on tcp loopback that validates every
// experience batch against a table signature, verifies its contents and acknowledges it with
// credits. A child process (this executable again, `selfcheck --producer`) plays an actor: it
// streams INSERT batches with at most `credits` unacknowledged, and also sends one malformed
// message that must come back as an ERROR reply. Both report metrics to Redis streams (the
// embedded redis-server unless --redis is given). Ctrl-C stops both cleanly.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "cli.h"
#include "orchard/core/clock.h"
#include "orchard/core/error.h"
#include "orchard/core/logging.h"
#include "orchard/core/net.h"
#include "orchard/core/redis.h"
#include "orchard/core/shutdown.h"
#include "orchard/core/version.h"
#include "orchard/core/wire.h"
#include "orchard/orchestrator/embedded_redis.h"
#include "orchard/orchestrator/process.h"

namespace orchard::cli {
namespace {

namespace v1 = orchard::v1;
using core::DType;
using core::Shape;

struct SelfcheckOptions {
  int batches = 20000;
  int items = 256;
  int credits = 8;
  std::string redis_url;
  std::string endpoint;  // producer only
  std::string run_id;    // producer only
  bool producer = false;
};

constexpr int kObsDim = 4;

// Deterministic contents, so the consumer can verify every byte that crossed the wire.
float obs_value(uint64_t batch, int item, int d) {
  return static_cast<float>((batch * 131 + static_cast<uint64_t>(item) * 7 + static_cast<uint64_t>(d)) % 1000) * 0.25f;
}

std::vector<core::TensorSpec> table_signature() {
  return {{"obs", DType::kFloat32, {kObsDim}},
          {"action", DType::kInt64, {}},
          {"reward", DType::kFloat32, {}},
          {"discount", DType::kFloat32, {}},
          {"next_obs", DType::kFloat32, {kObsDim}}};
}

std::string metrics_stream(const std::string& run_id, const std::string& role) {
  return "orchard:selfcheck:" + run_id + ":metrics:" + role;
}

std::string fmt_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

core::SocketOptions socket_options() {
  core::SocketOptions o;
  o.linger_ms = 1000;
  return o;
}

// ---------------------------------------------------------------------------------------------
// The producer (actor) process.

int run_producer(const SelfcheckOptions& o) {
  core::init_logging({"selfcheck-actor"});
  core::Shutdown::install();
  core::RedisClient redis(core::RedisOptions::from_url(o.redis_url));
  zmq::context_t ctx(1);
  zmq::socket_t sock(ctx, zmq::socket_type::dealer);
  auto sopts = socket_options();
  sopts.routing_id = "actor-0";
  core::apply_socket_options(sock, sopts);
  sock.connect(o.endpoint);

  const int64_t n = o.items;
  std::vector<float> obs(n * kObsDim), next_obs(n * kObsDim), reward(n), discount(n, 0.99f);
  std::vector<int64_t> action(n);
  core::Stopwatch clock;
  core::RateMeter rate(5.0);
  int in_flight = 0, credits = o.credits, acked = 0, errors_seen = 0;
  uint64_t sent = 0;
  core::Message reply;
  core::RecvError rerr;
  auto pipeline = redis.pipeline();

  // One malformed message first: it describes two tensors and carries one frame.
  {
    v1::Envelope bad;
    bad.set_protocol_version(core::kProtocolVersion);
    bad.set_type(v1::INSERT);
    bad.set_request_id(0);
    bad.mutable_insert()->set_table("main");
    auto* d = bad.add_tensors();
    d->set_name("obs");
    d->set_dtype(v1::FLOAT32);
    d->add_shape(1);
    d->set_byte_length(4);
    bad.add_tensors()->CopyFrom(*d);
    std::string head = bad.SerializeAsString();
    zmq::message_t f0(head.data(), head.size()), f1(4);
    sock.send(f0, zmq::send_flags::sndmore);
    sock.send(f1, zmq::send_flags::none);
    ++in_flight;
  }

  while ((acked < o.batches || in_flight > 0) && !core::Shutdown::requested()) {
    while (sent < static_cast<uint64_t>(o.batches) && in_flight < credits && !core::Shutdown::requested()) {
      ++sent;
      for (int64_t i = 0; i < n; ++i) {
        for (int d = 0; d < kObsDim; ++d) {
          obs[i * kObsDim + d] = obs_value(sent, static_cast<int>(i), d);
          next_obs[i * kObsDim + d] = obs_value(sent, static_cast<int>(i), d) + 1.0f;
        }
        action[i] = static_cast<int64_t>((sent + static_cast<uint64_t>(i)) % 2);
        reward[i] = 1.0f;
      }
      core::MessageBuilder m(v1::INSERT, sent);
      m.envelope().set_sender("actor-0");
      auto* b = m.envelope().mutable_insert();
      b->set_table("main");
      b->set_kind(v1::TRANSITION);
      b->set_num_items(static_cast<uint32_t>(n));
      b->set_actor_id(0);
      b->set_batch_seq(sent);
      m.add_tensor("obs", obs, Shape{n, kObsDim});
      m.add_tensor("action", action, Shape{n});
      m.add_tensor("reward", reward, Shape{n});
      m.add_tensor("discount", discount, Shape{n});
      m.add_tensor("next_obs", next_obs, Shape{n, kObsDim});
      if (!core::send_message(sock, m)) throw Error("selfcheck actor: send to " + o.endpoint + " failed");
      ++in_flight;
    }
    auto st = core::recv_message(sock, &reply, &rerr, 200);
    if (st == core::RecvStatus::kTimeout) continue;
    if (st == core::RecvStatus::kInvalid) throw Error("selfcheck actor: bad reply: " + rerr.message);
    --in_flight;
    if (reply.envelope.type() == v1::ERROR) {
      ++errors_seen;
      spdlog::info("shard rejected the malformed batch as expected: {}", reply.envelope.error().message());
      continue;
    }
    if (reply.envelope.type() != v1::INSERT_ACK) throw Error("selfcheck actor: unexpected reply type");
    ++acked;
    credits = static_cast<int>(reply.envelope.insert_ack().credits());
    rate.add(static_cast<double>(n));
    if (acked % 100 == 0 || acked == o.batches) {
      pipeline.xadd(metrics_stream(o.run_id, "actor"),
                    {{"batches_acked", std::to_string(acked)},
                     {"transitions_per_s", fmt_double(rate.rate())},
                     {"in_flight", std::to_string(in_flight)}},
                    1000);
      if (pipeline.size() >= 4 || acked == o.batches) pipeline.execute();
    }
  }
  if (!pipeline.empty()) pipeline.execute();
  std::printf("actor: sent %" PRIu64 " batches, %d acknowledged, %d error replies, %.0f transitions/s\n", sent,
              acked, errors_seen, static_cast<double>(acked) * n / clock.elapsed_s());
  std::fflush(stdout);
  if (core::Shutdown::requested()) return 0;
  return (acked == o.batches && errors_seen == 1) ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// The consumer (shard) process, which also owns the run.

int run_consumer(const SelfcheckOptions& o) {
  core::init_logging({"selfcheck"});
  core::Shutdown::install();
  std::unique_ptr<orchestrator::EmbeddedRedis> embedded;
  std::string redis_url = o.redis_url;
  if (redis_url.empty()) {
    embedded = std::make_unique<orchestrator::EmbeddedRedis>();
    redis_url = embedded->url();
    spdlog::info("started embedded redis-server on 127.0.0.1:{} (pid {})", embedded->port(), embedded->pid());
  }
  core::RedisClient redis(core::RedisOptions::from_url(redis_url));
  std::string run_id = std::to_string(::getpid());

  zmq::context_t ctx(1);
  zmq::socket_t sock(ctx, zmq::socket_type::router);
  core::apply_socket_options(sock, socket_options());
  std::string endpoint = "tcp://127.0.0.1:" + std::to_string(core::free_loopback_port());
  sock.bind(endpoint);
  spdlog::info("shard listening on {}", endpoint);

  std::string self = orchestrator::self_dir() + "/orchard";
  std::vector<std::string> args = {self,
                                   "selfcheck",
                                   "--producer",
                                   "--endpoint",
                                   endpoint,
                                   "--redis",
                                   redis_url,
                                   "--run-id",
                                   run_id,
                                   "--batches",
                                   std::to_string(o.batches),
                                   "--items",
                                   std::to_string(o.items),
                                   "--credits",
                                   std::to_string(o.credits)};
  pid_t child = orchestrator::spawn_process(args);

  const auto signature = table_signature();
  std::optional<core::Stopwatch> clock;  // starts at the first batch
  core::RateMeter rate(5.0);
  uint64_t batches = 0, transitions = 0, bytes = 0, rejected = 0, corrupt = 0;
  core::Message msg;
  core::RecvError err;
  std::vector<float> obs(static_cast<size_t>(o.items) * kObsDim);
  auto pipeline = redis.pipeline();
  int child_status = -1;
  bool child_done = false;

  while (!core::Shutdown::requested()) {
    auto st = core::recv_message(sock, &msg, &err, 100, /*routed=*/true);
    if (st == core::RecvStatus::kTimeout) {
      int status;
      if (!child_done && ::waitpid(child, &status, WNOHANG) == child) {
        child_done = true;
        child_status = status;
      }
      if (child_done) break;
      continue;
    }
    if (st == core::RecvStatus::kInvalid) {
      ++rejected;
      spdlog::warn("rejected a message: {}", err.message);
      core::send_error(sock, &msg.routing, err.request_id, err.code, err.message, "selfcheck-shard");
      continue;
    }
    try {
      const auto& b = msg.envelope.insert();
      if (b.table() != "main") throw WireError(v1::NOT_FOUND, "unknown table '" + b.table() + "'");
      if (msg.tensors.size() != signature.size()) {
        throw WireError(v1::SIGNATURE_MISMATCH, "expected " + std::to_string(signature.size()) + " columns");
      }
      for (size_t c = 0; c < signature.size(); ++c) core::check_tensor(msg.tensors[c], signature[c], b.num_items());
    } catch (const WireError& e) {
      ++rejected;
      core::send_error(sock, &msg.routing, msg.envelope.request_id(), static_cast<v1::ErrorCode>(e.code()), e.what());
      continue;
    }
    if (!clock) clock.emplace();
    // Verify every observation byte against what the producer must have sent.
    const uint64_t seq = msg.envelope.insert().batch_seq();
    const int items = static_cast<int>(msg.envelope.insert().num_items());
    obs.resize(static_cast<size_t>(items) * kObsDim);
    core::copy_tensor(msg.tensors[0], obs.data(), obs.size() * sizeof(float));
    for (int i = 0; i < items; ++i)
      for (int d = 0; d < kObsDim; ++d)
        if (obs[static_cast<size_t>(i) * kObsDim + d] != obs_value(seq, i, d)) ++corrupt;
    ++batches;
    transitions += static_cast<uint64_t>(items);
    for (const auto& t : msg.tensors) bytes += t.nbytes();
    rate.add(items);

    core::MessageBuilder ack(v1::INSERT_ACK, msg.envelope.request_id());
    ack.envelope().set_sender("selfcheck-shard");
    auto* a = ack.envelope().mutable_insert_ack();
    a->set_batch_seq(seq);
    a->set_num_items(static_cast<uint32_t>(items));
    a->set_credits(static_cast<uint32_t>(o.credits));
    core::send_message(sock, ack, &msg.routing);
    if (batches % 100 == 0) {
      pipeline.xadd(metrics_stream(run_id, "replay"),
                    {{"batches", std::to_string(batches)},
                     {"transitions_per_s", fmt_double(rate.rate())},
                     {"rejected", std::to_string(rejected)}},
                    1000);
      if (pipeline.size() >= 4) pipeline.execute();
    }
  }
  if (!pipeline.empty()) pipeline.execute();
  bool interrupted = core::Shutdown::requested();
  if (!child_done) {
    if (interrupted) ::kill(child, SIGTERM);
    child_status = orchestrator::wait_or_kill(child, 10'000);
  }
  double secs = clock ? std::max(clock->elapsed_s(), 1e-9) : 1e-9;
  long long actor_entries = redis.command({"XLEN", metrics_stream(run_id, "actor")}).integer;
  long long shard_entries = redis.command({"XLEN", metrics_stream(run_id, "replay")}).integer;
  bool child_ok = WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0;

  std::printf(
      "selfcheck: %" PRIu64 " batches, %" PRIu64 " transitions (%.1f MB) over tcp loopback in %.2f s: "
      "%.0f transitions/s, %.0f MB/s\n",
      batches, transitions, static_cast<double>(bytes) / 1e6, secs, static_cast<double>(transitions) / secs,
      static_cast<double>(bytes) / 1e6 / secs);
  std::printf("selfcheck: %" PRIu64 " malformed message(s) rejected with an error reply, %" PRIu64
              " corrupt values, metrics in Redis: %lld actor + %lld shard stream entries (%s)\n",
              rejected, corrupt, actor_entries, shard_entries, redis.options().describe().c_str());
  if (interrupted) {
    std::printf("selfcheck: interrupted, stopped cleanly\n");
    return 0;
  }
  bool ok = child_ok && batches == static_cast<uint64_t>(o.batches) && rejected == 1 && corrupt == 0 &&
            actor_entries > 0 && shard_entries > 0;
  std::printf("selfcheck: %s\n", ok ? "PASSED" : "FAILED");
  return ok ? 0 : 1;
}

}  // namespace

void add_selfcheck(CLI::App& app, int* exit_code) {
  auto opts = std::make_shared<SelfcheckOptions>();
  auto* cmd = app.add_subcommand(
      "selfcheck", "End-to-end check of the runtime: two processes stream experience over ZeroMQ, metrics to Redis");
  cmd->add_option("--batches", opts->batches, "Experience batches to stream")->check(CLI::Range(1, 1'000'000'000));
  cmd->add_option("--items", opts->items, "Transitions per batch")->check(CLI::Range(1, 65536));
  cmd->add_option("--credits", opts->credits, "Unacknowledged batches allowed in flight")->check(CLI::Range(1, 1024));
  cmd->add_option("--redis", opts->redis_url, "Redis URL (default: start an embedded redis-server)");
  cmd->add_flag("--producer", opts->producer)->group("");  // internal: the child process
  cmd->add_option("--endpoint", opts->endpoint)->group("");
  cmd->add_option("--run-id", opts->run_id)->group("");
  cmd->callback([opts, exit_code] {
    *exit_code = opts->producer ? run_producer(*opts) : run_consumer(*opts);
  });
}

}  // namespace orchard::cli
