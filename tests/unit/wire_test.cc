#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "orchard/core/error.h"
#include "orchard/core/net.h"
#include "orchard/core/version.h"
#include "orchard/core/wire.h"

using namespace orchard::core;
namespace v1 = orchard::v1;

namespace {

// A connected pair of sockets over a real transport ("inproc" or "tcp" on loopback).
struct Pair {
  zmq::context_t ctx{1};
  zmq::socket_t server{ctx, zmq::socket_type::router};
  zmq::socket_t client{ctx, zmq::socket_type::dealer};

  explicit Pair(const std::string& transport) {
    SocketOptions o;
    apply_socket_options(server, o);
    apply_socket_options(client, o);
    std::string endpoint;
    if (transport == "inproc") {
      endpoint = "inproc://wire-test";
    } else {
      endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
    }
    server.bind(endpoint);
    client.connect(endpoint);
  }
};

MessageBuilder make_insert(size_t items, uint64_t request_id = 1) {
  MessageBuilder m(v1::INSERT, request_id);
  m.envelope().set_sender("actor-0");
  auto* batch = m.envelope().mutable_insert();
  batch->set_table("main");
  batch->set_kind(v1::TRANSITION);
  batch->set_num_items(static_cast<uint32_t>(items));
  std::vector<float> obs(items * 4);
  for (size_t i = 0; i < obs.size(); ++i) obs[i] = static_cast<float>(i) * 0.5f;
  std::vector<int64_t> action(items, 1);
  m.add_tensor("obs", obs, Shape{static_cast<int64_t>(items), 4});
  m.add_tensor("action", action, Shape{static_cast<int64_t>(items)});
  return m;
}

// Sends raw frames (no validation), to play a misbehaving peer.
void send_raw(zmq::socket_t& s, std::vector<std::string> frames) {
  for (size_t i = 0; i < frames.size(); ++i) {
    zmq::message_t m(frames[i].data(), frames[i].size());
    s.send(m, i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

std::string envelope_bytes(const v1::Envelope& env) { return env.SerializeAsString(); }

}  // namespace

class WireTransport : public ::testing::TestWithParam<std::string> {};

TEST_P(WireTransport, MultipartInsertRoundTripsWithTensorFrames) {
  Pair p(GetParam());
  auto m = make_insert(256, 77);
  ASSERT_TRUE(send_message(p.client, m));
  Message got;
  RecvError err;
  ASSERT_EQ(recv_message(p.server, &got, &err, 5000, /*routed=*/true), RecvStatus::kOk) << err.message;
  EXPECT_EQ(got.envelope.protocol_version(), kProtocolVersion);
  EXPECT_EQ(got.envelope.type(), v1::INSERT);
  EXPECT_EQ(got.envelope.request_id(), 77u);
  EXPECT_EQ(got.envelope.sender(), "actor-0");
  EXPECT_EQ(got.envelope.insert().table(), "main");
  EXPECT_GT(got.envelope.sent_unix_ns(), 0);
  ASSERT_EQ(got.routing.size(), 1u);
  ASSERT_EQ(got.tensors.size(), 2u);
  const TensorView* obs = got.find("obs");
  ASSERT_NE(obs, nullptr);
  EXPECT_EQ(obs->shape, (Shape{256, 4}));
  std::vector<float> copy(256 * 4);
  copy_tensor(*obs, copy.data(), copy.size() * sizeof(float));
  EXPECT_FLOAT_EQ(copy[10], 5.0f);
  EXPECT_EQ(got.find("action")->dtype, DType::kInt64);

  // Reply through the routing frames, and the dealer gets it.
  MessageBuilder ack(v1::INSERT_ACK, got.envelope.request_id());
  ack.envelope().mutable_insert_ack()->set_num_items(256);
  ASSERT_TRUE(send_message(p.server, ack, &got.routing));
  Message reply;
  ASSERT_EQ(recv_message(p.client, &reply, &err, 5000), RecvStatus::kOk) << err.message;
  EXPECT_EQ(reply.envelope.type(), v1::INSERT_ACK);
  EXPECT_EQ(reply.envelope.request_id(), 77u);
  EXPECT_EQ(reply.envelope.insert_ack().num_items(), 256u);
}

TEST_P(WireTransport, LargeBorrowedFrameIsSentWithoutCopyAndReleased) {
  Pair p(GetParam());
  auto buffer = std::make_shared<std::vector<double>>(1 << 17, 2.5);  // 1 MiB
  std::weak_ptr<std::vector<double>> watch = buffer;
  {
    MessageBuilder m(v1::WEIGHTS, 5);
    m.envelope().mutable_weights()->set_version(3);
    m.add_tensor_borrowed(TensorView{"w", DType::kFloat64, Shape{1 << 17}, buffer->data()}, buffer);
    buffer.reset();  // the message keeps it alive
    ASSERT_TRUE(send_message(p.client, m));
  }
  {
    Message got;
    RecvError err;
    ASSERT_EQ(recv_message(p.server, &got, &err, 5000, true), RecvStatus::kOk) << err.message;
    EXPECT_EQ(got.tensors[0].nbytes(), size_t(1) << 20);
    EXPECT_EQ(got.tensors[0].as<double>()[12345], 2.5);
    EXPECT_EQ(got.envelope.weights().version(), 3u);
    // inproc hands the sender's buffer itself to the receiver (no copy at all), so it is
    // released when the received message is; tcp releases it once written to the socket.
  }
  // ZeroMQ released the borrowed buffer.
  for (int i = 0; i < 100 && !watch.expired(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(watch.expired());
}

TEST_P(WireTransport, GarbageEnvelopeIsRejectedAndTheSocketKeepsServing) {
  Pair p(GetParam());
  send_raw(p.client, {"\xff\xff\xff garbage", "extra frame"});
  Message got;
  RecvError err;
  ASSERT_EQ(recv_message(p.server, &got, &err, 5000, true), RecvStatus::kInvalid);
  EXPECT_EQ(err.code, v1::MALFORMED);
  EXPECT_NE(err.message.find("not a valid orchard.v1.Envelope"), std::string::npos) << err.message;
  ASSERT_EQ(got.routing.size(), 1u);
  // The error reply reaches the sender.
  ASSERT_TRUE(send_error(p.server, &got.routing, err.request_id, err.code, err.message, "replay-0"));
  Message reply;
  ASSERT_EQ(recv_message(p.client, &reply, &err, 5000), RecvStatus::kOk);
  EXPECT_EQ(reply.envelope.type(), v1::ERROR);
  EXPECT_EQ(reply.envelope.error().code(), v1::MALFORMED);
  // A good message afterwards is received intact (the bad one was fully drained).
  auto m = make_insert(8);
  ASSERT_TRUE(send_message(p.client, m));
  ASSERT_EQ(recv_message(p.server, &got, &err, 5000, true), RecvStatus::kOk) << err.message;
  EXPECT_EQ(got.tensors.size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Transports, WireTransport, ::testing::Values("inproc", "tcp"));

TEST(Wire, VersionMismatchIsRejectedWithBothVersions) {
  Pair p("inproc");
  v1::Envelope env;
  env.set_protocol_version(kProtocolVersion + 1);
  env.set_type(v1::TABLE_INFO);
  env.set_request_id(9);
  env.mutable_table_info();
  send_raw(p.client, {envelope_bytes(env)});
  Message got;
  RecvError err;
  ASSERT_EQ(recv_message(p.server, &got, &err, 5000, true), RecvStatus::kInvalid);
  EXPECT_EQ(err.code, v1::VERSION_MISMATCH);
  EXPECT_EQ(err.request_id, 9u);
  EXPECT_EQ(err.message, "protocol version 2 is not supported (this build speaks version 1)");
}

TEST(Wire, BodyMustMatchTheMessageType) {
  v1::Envelope env;
  env.set_protocol_version(kProtocolVersion);
  env.set_type(v1::SAMPLE);
  env.mutable_insert();
  try {
    validate_envelope(env);
    FAIL() << "expected WireError";
  } catch (const orchard::WireError& e) {
    EXPECT_EQ(e.code(), v1::MALFORMED);
    EXPECT_STREQ(e.what(), "message type SAMPLE is missing its body or carries another");
  }
  env.set_type(static_cast<v1::MessageType>(99));
  EXPECT_THROW(validate_envelope(env), orchard::WireError);
  env.set_type(v1::ERROR);
  env.clear_body();
  EXPECT_NO_THROW(validate_envelope(env));
}

TEST(Wire, MissingAndExtraTensorFramesAreRejected) {
  Pair p("inproc");
  v1::Envelope env;
  env.set_protocol_version(kProtocolVersion);
  env.set_type(v1::INSERT);
  env.mutable_insert()->set_table("main");
  auto* d = env.add_tensors();
  d->set_name("obs");
  d->set_dtype(v1::FLOAT32);
  d->add_shape(2);
  d->set_byte_length(8);
  env.add_tensors()->CopyFrom(*d);
  std::string eight(8, '\0');
  send_raw(p.client, {envelope_bytes(env), eight});  // 2 described, 1 sent
  Message got;
  RecvError err;
  ASSERT_EQ(recv_message(p.server, &got, &err, 5000, true), RecvStatus::kInvalid);
  EXPECT_EQ(err.message, "envelope describes 2 tensors but 1 frames followed");
  send_raw(p.client, {envelope_bytes(env), eight, eight, eight});  // 2 described, 3 sent
  ASSERT_EQ(recv_message(p.server, &got, &err, 5000, true), RecvStatus::kInvalid);
  EXPECT_EQ(err.message, "envelope describes 2 tensors but more frames followed");
  send_raw(p.client, {envelope_bytes(env), eight, std::string(7, '\0')});  // truncated tensor
  ASSERT_EQ(recv_message(p.server, &got, &err, 5000, true), RecvStatus::kInvalid);
  EXPECT_EQ(err.message, "tensor 'obs': frame holds 7 bytes, descriptor says 8");
  // And the socket still serves a good message.
  auto m = make_insert(4);
  ASSERT_TRUE(send_message(p.client, m));
  ASSERT_EQ(recv_message(p.server, &got, &err, 5000, true), RecvStatus::kOk) << err.message;
}

TEST(Wire, TooManyFramesOrOversizedEnvelopeIsRejected) {
  Pair p("inproc");
  v1::Envelope env;
  env.set_protocol_version(kProtocolVersion);
  env.set_type(v1::INSERT);
  env.mutable_insert();
  for (int i = 0; i < 20; ++i) {
    auto* d = env.add_tensors();
    d->set_name("t");
    d->set_dtype(v1::UINT8);
  }
  std::vector<std::string> frames{envelope_bytes(env)};
  for (int i = 0; i < 20; ++i) frames.emplace_back();
  send_raw(p.client, frames);
  RecvLimits limits;
  limits.max_frames = 10;
  Message got;
  RecvError err;
  ASSERT_EQ(recv_message(p.server, &got, &err, 5000, true, limits), RecvStatus::kInvalid);
  EXPECT_EQ(err.code, v1::TOO_LARGE);
  limits.max_envelope_bytes = 16;
  send_raw(p.client, {envelope_bytes(env)});
  ASSERT_EQ(recv_message(p.server, &got, &err, 5000, true, limits), RecvStatus::kInvalid);
  EXPECT_EQ(err.code, v1::TOO_LARGE);
  EXPECT_NE(err.message.find("exceeds the limit of 16"), std::string::npos);
}

TEST(Wire, RecvTimesOutWhenNothingArrives) {
  Pair p("inproc");
  Message got;
  RecvError err;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(recv_message(p.server, &got, &err, 50, true), RecvStatus::kTimeout);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(40));
  EXPECT_EQ(recv_message(p.server, &got, &err, 0, true), RecvStatus::kTimeout);
}

TEST(Wire, SendTimesOutInsteadOfBlockingWhenThePeerIsGone) {
  zmq::context_t ctx(1);
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  SocketOptions o;
  o.send_timeout_ms = 50;
  o.immediate = true;  // queue only to completed connections
  apply_socket_options(dealer, o);
  dealer.connect("tcp://127.0.0.1:" + std::to_string(free_loopback_port()));  // nobody listens
  auto m = make_insert(1);
  EXPECT_FALSE(send_message(dealer, m));  // DEALER with no connected peer blocks: times out
}

TEST(Wire, CurveEncryptedPairTalksAndAWrongServerKeyDoesNot) {
  ASSERT_TRUE(curve_available()) << "Debian's libzmq5 is built with CURVE";
  auto server_keys = generate_curve_keypair();
  auto client_keys = generate_curve_keypair();
  auto other = generate_curve_keypair();
  zmq::context_t ctx(1);
  zmq::socket_t server(ctx, zmq::socket_type::router);
  apply_socket_options(server, {});
  make_curve_server(server, server_keys);
  std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  server.bind(endpoint);

  zmq::socket_t good(ctx, zmq::socket_type::dealer);
  apply_socket_options(good, {});
  make_curve_client(good, client_keys, server_keys.public_key);
  good.connect(endpoint);
  zmq::socket_t bad(ctx, zmq::socket_type::dealer);
  SocketOptions o;
  o.send_timeout_ms = 200;
  apply_socket_options(bad, o);
  make_curve_client(bad, client_keys, other.public_key);  // wrong server key: handshake fails
  bad.connect(endpoint);

  auto from_bad = make_insert(1, 666);
  send_message(bad, from_bad);  // may time out: the handshake never completes
  auto from_good = make_insert(3, 42);
  ASSERT_TRUE(send_message(good, from_good));
  Message got;
  RecvError err;
  ASSERT_EQ(recv_message(server, &got, &err, 5000, true), RecvStatus::kOk) << err.message;
  EXPECT_EQ(got.envelope.request_id(), 42u);
  EXPECT_EQ(recv_message(server, &got, &err, 300, true), RecvStatus::kTimeout);
}

TEST(Wire, CurveKeyFilesRoundTripAndBadFilesAreNamed) {
  std::string dir = ::testing::TempDir();
  auto keys = generate_curve_keypair();
  save_curve_keys(dir + "orchard_server.key", keys);
  auto loaded = load_curve_keys(dir + "orchard_server.key", true);
  EXPECT_EQ(loaded.public_key, keys.public_key);
  EXPECT_EQ(loaded.secret_key, keys.secret_key);
  save_curve_keys(dir + "orchard_server.pub", {keys.public_key, ""});
  EXPECT_TRUE(load_curve_keys(dir + "orchard_server.pub", false).secret_key.empty());
  try {
    load_curve_keys(dir + "orchard_server.pub", true);
    FAIL();
  } catch (const orchard::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("orchard_server.pub: no 'secret' key"), std::string::npos);
  }
  {
    FILE* f = std::fopen((dir + "orchard_bad.key").c_str(), "w");
    std::fputs("public = tooshort\n", f);
    std::fclose(f);
  }
  try {
    load_curve_keys(dir + "orchard_bad.key", false);
    FAIL();
  } catch (const orchard::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("not a 40-character Z85 CURVE key"), std::string::npos);
  }
  EXPECT_THROW(load_curve_keys(dir + "does_not_exist.key", false), orchard::ConfigError);
}
