// orchard-replay as a real process, driven with raw protocol messages: every bad input gets an
// ERROR reply and the shard keeps serving; checkpoints survive kill -9 and torn files.
#include <gtest/gtest.h>
#include <signal.h>

#include <cmath>
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "orchard/core/net.h"
#include "orchard/core/version.h"
#include "orchard/core/wire.h"
#include "support/child_process.h"

using namespace orchard::core;
using orchard::testing::ChildProcess;
using orchard::testing::orchard_bin;
namespace v1 = orchard::v1;
namespace fs = std::filesystem;

namespace {

constexpr const char* kSpec = R"(
replay:
  checkpoint_interval_s: 0
  tables:
    - name: main
      sampler: uniform
      max_size: 1000
      signature:
        - {name: obs, dtype: float32, shape: [4]}
        - {name: action, dtype: int64, shape: []}
)";

// A shard process on a free loopback port with its own temp dir.
struct Shard {
  fs::path dir;
  std::string endpoint;
  std::unique_ptr<ChildProcess> proc;

  explicit Shard(const std::string& spec = kSpec, fs::path existing_dir = {}) {
    dir = existing_dir.empty() ? fs::temp_directory_path() / ("orchard-shard-" + std::to_string(::getpid()) + "-" +
                                                               std::to_string(counter()++))
                               : existing_dir;
    fs::create_directories(dir);
    std::ofstream(dir / "spec.yaml") << spec;
    endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
    start();
  }
  void start() {
    proc = std::make_unique<ChildProcess>(std::vector<std::string>{
        orchard_bin("orchard-replay"), "--config", (dir / "spec.yaml").string(), "--bind", endpoint,
        "--checkpoint-dir", (dir / "ckpt").string()});
    if (!proc->wait_for_output("ready ", 20000)) ADD_FAILURE() << "shard did not start: " << proc->output();
  }
  ~Shard() {
    proc.reset();
    fs::remove_all(dir);
  }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

struct Conn {
  zmq::context_t ctx{1};
  zmq::socket_t sock{ctx, zmq::socket_type::dealer};
  uint64_t next_id = 1;
  explicit Conn(const std::string& endpoint) {
    apply_socket_options(sock, {});
    sock.connect(endpoint);
  }
  Message request(MessageBuilder& m, int timeout_ms = 10000) {
    m.envelope().set_request_id(next_id++);
    m.envelope().set_sender("test-writer");
    EXPECT_TRUE(send_message(sock, m));
    return receive(timeout_ms);
  }
  Message receive(int timeout_ms = 10000) {
    Message reply;
    RecvError err;
    EXPECT_EQ(recv_message(sock, &reply, &err, timeout_ms), RecvStatus::kOk) << err.message;
    return reply;
  }
  void send_raw(const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      zmq::message_t f(frames[i].data(), frames[i].size());
      sock.send(f, i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
};

MessageBuilder insert(uint64_t seq, int n, float base = 0.f, std::string table = "main") {
  MessageBuilder m(v1::INSERT);
  auto* b = m.envelope().mutable_insert();
  b->set_table(table);
  b->set_kind(v1::TRANSITION);
  b->set_num_items(static_cast<uint32_t>(n));
  b->set_batch_seq(seq);
  std::vector<float> obs(static_cast<size_t>(n) * 4);
  for (size_t i = 0; i < obs.size(); ++i) obs[i] = base + static_cast<float>(i);
  std::vector<int64_t> action(static_cast<size_t>(n), 1);
  m.add_tensor("obs", obs, Shape{n, 4});
  m.add_tensor("action", action, Shape{n});
  return m;
}

uint64_t table_size(Conn& c) {
  MessageBuilder m(v1::TABLE_INFO);
  m.envelope().mutable_table_info();
  Message r = c.request(m);
  EXPECT_EQ(r.envelope.type(), v1::TABLE_INFO_REPLY);
  return r.envelope.table_info_reply().tables(0).size();
}

void expect_error(const Message& r, v1::ErrorCode code, const std::string& text) {
  ASSERT_EQ(r.envelope.type(), v1::ERROR) << r.envelope.DebugString();
  EXPECT_EQ(r.envelope.error().code(), code) << r.envelope.error().message();
  EXPECT_NE(r.envelope.error().message().find(text), std::string::npos) << r.envelope.error().message();
}

}  // namespace

TEST(ReplayServer, InsertSampleAndTableInfoRoundTrip) {
  Shard shard;
  Conn c(shard.endpoint);
  auto ins = insert(1, 10, 100.f);
  Message ack = c.request(ins);
  ASSERT_EQ(ack.envelope.type(), v1::INSERT_ACK) << ack.envelope.DebugString();
  EXPECT_EQ(ack.envelope.insert_ack().num_items(), 10u);
  EXPECT_EQ(ack.envelope.insert_ack().keys_size(), 10);
  EXPECT_GT(ack.envelope.insert_ack().credits(), 0u);
  MessageBuilder s(v1::SAMPLE);
  s.envelope().mutable_sample()->set_table("main");
  s.envelope().mutable_sample()->set_batch_size(5);
  s.envelope().mutable_sample()->set_timeout_ms(1000);
  Message r = c.request(s);
  ASSERT_EQ(r.envelope.type(), v1::SAMPLE_REPLY) << r.envelope.DebugString();
  EXPECT_EQ(r.envelope.sample_reply().keys_size(), 5);
  EXPECT_DOUBLE_EQ(r.envelope.sample_reply().probabilities(0), 0.1);
  EXPECT_EQ(r.envelope.sample_reply().table_size(), 10u);
  ASSERT_EQ(r.tensors.size(), 2u);
  EXPECT_EQ(r.tensors[0].shape, (Shape{5, 4}));
  // Every sampled row is one of the inserted rows (obs = 100 + 4*item + j).
  std::vector<float> obs(20);
  copy_tensor(r.tensors[0], obs.data(), obs.size() * 4);
  for (int i = 0; i < 5; ++i) {
    float first = obs[static_cast<size_t>(i) * 4];
    EXPECT_EQ(static_cast<int>(first - 100.f) % 4, 0);
    EXPECT_EQ(obs[static_cast<size_t>(i) * 4 + 3], first + 3);
  }
  EXPECT_EQ(table_size(c), 10u);
}

TEST(ReplayServer, ResentBatchIsAcknowledgedButNotDuplicated) {
  Shard shard;
  Conn c(shard.endpoint);
  auto a = insert(7, 10);
  ASSERT_EQ(c.request(a).envelope.type(), v1::INSERT_ACK);
  auto again = insert(7, 10);
  Message r = c.request(again);
  ASSERT_EQ(r.envelope.type(), v1::INSERT_ACK);
  EXPECT_TRUE(r.envelope.insert_ack().duplicate());
  EXPECT_EQ(table_size(c), 10u);
}

TEST(ReplayServer, BadInputGetsAnErrorReplyAndTheShardKeepsServing) {
  Shard shard;
  Conn c(shard.endpoint);
  // Unknown table.
  auto unknown = insert(1, 2, 0, "mian");
  expect_error(c.request(unknown), v1::NOT_FOUND, "unknown table 'mian' (tables: main)");
  // Wrong dtype.
  MessageBuilder wrong(v1::INSERT);
  wrong.envelope().mutable_insert()->set_table("main");
  wrong.envelope().mutable_insert()->set_num_items(2);
  wrong.add_tensor("obs", std::vector<double>(8, 0.0), Shape{2, 4});
  wrong.add_tensor("action", std::vector<int64_t>(2, 0), Shape{2});
  expect_error(c.request(wrong), v1::SIGNATURE_MISMATCH, "dtype float64 does not match the signature's float32");
  // Wrong shape / item count.
  MessageBuilder shape(v1::INSERT);
  shape.envelope().mutable_insert()->set_table("main");
  shape.envelope().mutable_insert()->set_num_items(2);
  shape.add_tensor("obs", std::vector<float>(6, 0.f), Shape{2, 3});
  shape.add_tensor("action", std::vector<int64_t>(2, 0), Shape{2});
  expect_error(c.request(shape), v1::SIGNATURE_MISMATCH, "tensor 'obs': shape [2, 3]");
  // NaN priority.
  auto nan = insert(2, 2);
  nan.envelope().mutable_insert()->add_priorities(1.0);
  nan.envelope().mutable_insert()->add_priorities(std::nan(""));
  expect_error(c.request(nan), v1::INVALID_ARGUMENT, "priority 1 is nan");
  // Negative priority update and unknown keys.
  MessageBuilder up(v1::UPDATE_PRIORITIES);
  up.envelope().mutable_update_priorities()->set_table("main");
  up.envelope().mutable_update_priorities()->add_keys(12345);
  up.envelope().mutable_update_priorities()->add_priorities(-1);
  expect_error(c.request(up), v1::INVALID_ARGUMENT, "must be finite and >= 0");
  MessageBuilder up2(v1::UPDATE_PRIORITIES);
  up2.envelope().mutable_update_priorities()->set_table("main");
  up2.envelope().mutable_update_priorities()->add_keys(12345);
  up2.envelope().mutable_update_priorities()->add_priorities(2);
  Message ack = c.request(up2);
  ASSERT_EQ(ack.envelope.type(), v1::UPDATE_PRIORITIES_ACK);
  EXPECT_EQ(ack.envelope.update_priorities_ack().unknown_keys(), 1u);
  // Garbage bytes, a truncated tensor frame, a wrong protocol version.
  c.send_raw({"\x01\x02garbage"});
  expect_error(c.receive(), v1::MALFORMED, "not a valid orchard.v1.Envelope");
  auto trunc = insert(3, 2);
  v1::Envelope env = trunc.envelope();
  env.set_protocol_version(kProtocolVersion);
  c.send_raw({env.SerializeAsString(), std::string(32, '\0'), std::string(8, '\0')});  // action frame short
  expect_error(c.receive(), v1::MALFORMED, "tensor 'action': frame holds 8 bytes, descriptor says 16");
  env.set_protocol_version(99);
  c.send_raw({env.SerializeAsString()});
  expect_error(c.receive(), v1::VERSION_MISMATCH, "protocol version 99");
  // A type a shard does not serve.
  MessageBuilder hb(v1::HEARTBEAT);
  hb.envelope().mutable_heartbeat()->set_process("x");
  expect_error(c.request(hb), v1::INVALID_ARGUMENT, "does not accept HEARTBEAT");
  // Sampling an empty table times out with DEADLINE_EXCEEDED instead of hanging.
  MessageBuilder s(v1::SAMPLE);
  s.envelope().mutable_sample()->set_table("main");
  s.envelope().mutable_sample()->set_batch_size(1);
  s.envelope().mutable_sample()->set_timeout_ms(200);
  expect_error(c.request(s), v1::DEADLINE_EXCEEDED, "rate limiter blocked the sample");
  // Still serving: a good insert works and the counters saw the rejects.
  auto good = insert(4, 3);
  ASSERT_EQ(c.request(good).envelope.type(), v1::INSERT_ACK);
  MessageBuilder info(v1::TABLE_INFO);
  info.envelope().mutable_table_info();
  Message r = c.request(info);
  EXPECT_EQ(r.envelope.table_info_reply().tables(0).size(), 3u);
  EXPECT_GE(r.envelope.table_info_reply().rejected_messages(), 8u);
}

TEST(ReplayServer, CheckpointSurvivesKill9AndATornNewerFile) {
  Shard shard;
  auto ckpt_dir = shard.dir / "ckpt" / "replay-0";
  {
    Conn c(shard.endpoint);
    auto a = insert(1, 20);
    ASSERT_EQ(c.request(a).envelope.type(), v1::INSERT_ACK);
    MessageBuilder cp(v1::CHECKPOINT);
    cp.envelope().mutable_checkpoint();
    Message r = c.request(cp);
    ASSERT_EQ(r.envelope.type(), v1::CHECKPOINT_REPLY) << r.envelope.DebugString();
    EXPECT_EQ(r.envelope.checkpoint_reply().items(), 20u);
    EXPECT_TRUE(fs::exists(r.envelope.checkpoint_reply().path()));
    auto b = insert(2, 5);  // after the checkpoint: lost by kill -9
    ASSERT_EQ(c.request(b).envelope.type(), v1::INSERT_ACK);
  }
  shard.proc->signal(SIGKILL);
  shard.proc->wait(10000);
  // A torn newer checkpoint (as if killed mid-write without the rename) must be ignored.
  {
    std::ofstream(ckpt_dir / "ckpt-0000000099.orchk") << "ORCHCKP1 this file was cut short";
  }
  shard.start();
  Conn c(shard.endpoint);
  EXPECT_EQ(table_size(c), 20u);
  EXPECT_NE(shard.proc->output().find("is not usable"), std::string::npos) << shard.proc->output();
  // A resend of batch 2 (never checkpointed) is inserted again; batch 1 is a duplicate.
  auto b = insert(2, 5);
  ASSERT_EQ(c.request(b).envelope.type(), v1::INSERT_ACK);
  auto a = insert(1, 20);
  EXPECT_TRUE(c.request(a).envelope.insert_ack().duplicate());
  EXPECT_EQ(table_size(c), 25u);
}

TEST(ReplayServer, SigtermWritesAFinalCheckpointAndExitsZero) {
  Shard shard;
  {
    Conn c(shard.endpoint);
    auto a = insert(1, 12);
    ASSERT_EQ(c.request(a).envelope.type(), v1::INSERT_ACK);
  }
  shard.proc->signal(SIGTERM);
  EXPECT_EQ(shard.proc->wait(20000), 0) << shard.proc->output();
  EXPECT_NE(shard.proc->output().find("final checkpoint"), std::string::npos) << shard.proc->output();
  shard.start();
  Conn c(shard.endpoint);
  EXPECT_EQ(table_size(c), 12u);
}

TEST(ReplayServer, BadConfigIsAOneLineErrorBeforeServing) {
  fs::path dir = fs::temp_directory_path() / ("orchard-badspec-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "spec.yaml") << "replay:\n  tables:\n    - name: main\n      sampler: prioritised\n"
                                       "      signature: [{name: obs, dtype: float32, shape: [4]}]\n";
  ChildProcess p({orchard_bin("orchard-replay"), "--config", (dir / "spec.yaml").string(), "--bind",
                  "tcp://127.0.0.1:" + std::to_string(free_loopback_port())});
  EXPECT_EQ(p.wait(20000), 1);
  EXPECT_NE(p.output().find("replay.tables[0].sampler: expected one of"), std::string::npos) << p.output();
  EXPECT_NE(p.output().find("did you mean 'prioritized'"), std::string::npos) << p.output();
  std::ofstream(dir / "spec.yaml") << "replay:\n  tables:\n    - name: main\n";
  ChildProcess q({orchard_bin("orchard-replay"), "--config", (dir / "spec.yaml").string(), "--bind",
                  "tcp://127.0.0.1:" + std::to_string(free_loopback_port())});
  EXPECT_EQ(q.wait(20000), 1);
  EXPECT_NE(q.output().find("replay.tables[0].signature: is required"), std::string::npos) << q.output();
  fs::remove_all(dir);
}

TEST(ReplayServer, OversizedFrameIsRefusedAndOtherClientsAreStillServed) {
  std::string spec = std::string(kSpec);
  spec.replace(spec.find("replay:\n"), 8, "replay:\n  max_message_mb: 1\n");
  Shard shard(spec);
  {
    // A 2 MiB frame is over the 1 MiB limit: ZeroMQ drops that connection; nothing is inserted.
    Conn big(shard.endpoint);
    MessageBuilder m(v1::INSERT);
    m.envelope().mutable_insert()->set_table("main");
    m.envelope().mutable_insert()->set_num_items(131072);
    m.add_tensor("obs", std::vector<float>(131072 * 4, 0.f), Shape{131072, 4});
    m.add_tensor("action", std::vector<int64_t>(131072, 0), Shape{131072});
    m.envelope().set_request_id(1);
    ASSERT_TRUE(send_message(big.sock, m));
    Message reply;
    RecvError err;
    EXPECT_EQ(recv_message(big.sock, &reply, &err, 1000), RecvStatus::kTimeout);
  }
  Conn c(shard.endpoint);
  auto good = insert(1, 4);
  ASSERT_EQ(c.request(good).envelope.type(), v1::INSERT_ACK);
  EXPECT_EQ(table_size(c), 4u);
}

TEST(ReplayCli, InfoAndCheckpointTalkToAShardAndUnreachableIsOneLine) {
  Shard shard;
  {
    Conn c(shard.endpoint);
    auto a = insert(1, 6);
    ASSERT_EQ(c.request(a).envelope.type(), v1::INSERT_ACK);
  }
  ChildProcess info({orchard_bin("orchard"), "replay", "info", "--addr", shard.endpoint});
  ASSERT_EQ(info.wait(20000), 0) << info.output();
  EXPECT_NE(info.output().find("\"size\": 6"), std::string::npos) << info.output();
  EXPECT_NE(info.output().find("\"sampler\": \"uniform\""), std::string::npos) << info.output();
  ChildProcess cp({orchard_bin("orchard"), "replay", "checkpoint", "--addr", shard.endpoint});
  ASSERT_EQ(cp.wait(20000), 0) << cp.output();
  EXPECT_NE(cp.output().find("\"items\": 6"), std::string::npos) << cp.output();
  std::string dead = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  ChildProcess none({orchard_bin("orchard"), "replay", "info", "--addr", dead, "--timeout-ms", "300"});
  EXPECT_EQ(none.wait(20000), 1);
  EXPECT_EQ(std::count(none.output().begin(), none.output().end(), '\n'), 1) << none.output();
  EXPECT_NE(none.output().find(dead), std::string::npos) << none.output();
}

TEST(ReplayServer, CurveSecuredShardServesOnlyClientsThatKnowItsKey) {
  fs::path keys = fs::temp_directory_path() / ("orchard-curve-" + std::to_string(::getpid()));
  fs::create_directories(keys);
  auto server_keys = generate_curve_keypair();
  save_curve_keys((keys / "replay.key").string(), server_keys);
  std::string spec = std::string(kSpec);
  spec.replace(spec.find("replay:\n"), 8, "replay:\n  curve_key_file: " + (keys / "replay.key").string() + "\n");
  Shard shard(spec);
  auto client_keys = generate_curve_keypair();
  {
    Conn good(shard.endpoint);
    good.sock.close();
    good.sock = zmq::socket_t(good.ctx, zmq::socket_type::dealer);
    apply_socket_options(good.sock, {});
    make_curve_client(good.sock, client_keys, server_keys.public_key);
    good.sock.connect(shard.endpoint);
    auto a = insert(1, 3);
    ASSERT_EQ(good.request(a).envelope.type(), v1::INSERT_ACK);
  }
  {
    // Wrong server key: the handshake fails, nothing is delivered.
    zmq::context_t ctx(1);
    zmq::socket_t bad(ctx, zmq::socket_type::dealer);
    SocketOptions o;
    o.send_timeout_ms = 200;
    apply_socket_options(bad, o);
    make_curve_client(bad, client_keys, generate_curve_keypair().public_key);
    bad.connect(shard.endpoint);
    auto b = insert(2, 5);
    send_message(bad, b);
    Message reply;
    RecvError err;
    EXPECT_EQ(recv_message(bad, &reply, &err, 500), RecvStatus::kTimeout);
    // Plain (unencrypted) clients are refused too.
    Conn plain(shard.endpoint);
    auto c = insert(3, 5);
    send_message(plain.sock, c);
    EXPECT_EQ(recv_message(plain.sock, &reply, &err, 500), RecvStatus::kTimeout);
  }
  Conn check(shard.endpoint);
  check.sock.close();
  check.sock = zmq::socket_t(check.ctx, zmq::socket_type::dealer);
  apply_socket_options(check.sock, {});
  make_curve_client(check.sock, client_keys, server_keys.public_key);
  check.sock.connect(shard.endpoint);
  EXPECT_EQ(table_size(check), 3u);
  fs::remove_all(keys);
}
