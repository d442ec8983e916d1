// ZeroMQ round trips over tcp loopback: Orchard's framing (envelope + validated tensor frame,
// ack envelope back) against a bare zmq send/recv of the same payload bytes, in the same run.
//   build/bin/orchard_bench_core --benchmark_filter=RoundTrip
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "orchard/core/net.h"
#include "orchard/core/wire.h"

using namespace orchard::core;
namespace v1 = orchard::v1;

namespace {

// A ROUTER echo server on its own thread: replies to every message with a small ack.
class EchoServer {
 public:
  EchoServer(zmq::context_t& ctx, bool orchard_framing) : socket_(ctx, zmq::socket_type::router) {
    apply_socket_options(socket_, {});
    endpoint_ = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
    socket_.bind(endpoint_);
    thread_ = std::thread([this, orchard_framing] { orchard_framing ? serve_orchard() : serve_bare(); });
  }
  ~EchoServer() {
    stop_ = true;
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }

 private:
  void serve_orchard() {
    Message msg;
    RecvError err;
    while (!stop_) {
      if (recv_message(socket_, &msg, &err, 50, true) != RecvStatus::kOk) continue;
      MessageBuilder ack(v1::INSERT_ACK, msg.envelope.request_id());
      ack.envelope().mutable_insert_ack()->set_num_items(msg.envelope.insert().num_items());
      send_message(socket_, ack, &msg.routing);
    }
  }
  void serve_bare() {
    zmq::pollitem_t item{static_cast<void*>(socket_), 0, ZMQ_POLLIN, 0};
    while (!stop_) {
      if (zmq::poll(&item, 1, std::chrono::milliseconds(50)) == 0) continue;
      zmq::message_t id, payload;
      (void)socket_.recv(id);
      (void)socket_.recv(payload);
      zmq::message_t ack(8);
      socket_.send(id, zmq::send_flags::sndmore);
      socket_.send(ack, zmq::send_flags::none);
    }
  }

  zmq::socket_t socket_;
  std::string endpoint_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

void BM_RoundTripBareZmq(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  zmq::context_t ctx(1);
  EchoServer server(ctx, false);
  zmq::socket_t client(ctx, zmq::socket_type::dealer);
  apply_socket_options(client, {});
  client.connect(server.endpoint());
  std::vector<char> payload(n, 7);
  for (auto _ : state) {
    zmq::message_t m(payload.data(), n);
    client.send(m, zmq::send_flags::none);
    zmq::message_t ack;
    (void)client.recv(ack);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}

void BM_RoundTripOrchard(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  zmq::context_t ctx(1);
  EchoServer server(ctx, true);
  zmq::socket_t client(ctx, zmq::socket_type::dealer);
  apply_socket_options(client, {});
  client.connect(server.endpoint());
  std::vector<char> payload(n, 7);
  uint64_t id = 0;
  Message reply;
  RecvError err;
  for (auto _ : state) {
    MessageBuilder m(v1::INSERT, ++id);
    m.envelope().set_sender("actor-0");
    auto* b = m.envelope().mutable_insert();
    b->set_table("main");
    b->set_num_items(1);
    m.add_tensor_copy({"obs", DType::kUInt8, Shape{1, static_cast<int64_t>(n)}, payload.data()});
    send_message(client, m);
    if (recv_message(client, &reply, &err, 5000) != RecvStatus::kOk) state.SkipWithError("no reply");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}

}  // namespace

BENCHMARK(BM_RoundTripBareZmq)->Arg(64)->Arg(1 << 20)->UseRealTime();
BENCHMARK(BM_RoundTripOrchard)->Arg(64)->Arg(1 << 20)->UseRealTime();
