// End-to-end replay throughput over tcp loopback with real orchard-replay shard processes.
//   build/bin/orchard_bench_replay_e2e [--seconds S]
// Scenarios (each a fresh set of shards):
//  A. 64-byte transitions (obs float32[14] + action int64), batches of 256, one writer and one
//     sampler (batches of 256) at the same time, one shard: inserts/s and samples/s.
//  A2. The sampler alone on a pre-filled shard.
//  B. 40 KiB items, batches of 16, one writer, one shard: bytes/s, against a bare ZeroMQ stream
//     of the same frames with the same flow control (8 un-acked batches, an 8-byte ack each) to a
//     sink thread, measured in the same run.
//  C. Scaling of inserts/s (64-byte transitions): 1, 2, 4 writers on one shard; 4 writers on
//     1, 2, 3 shards.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "orchard/core/clock.h"
#include "orchard/core/net.h"
#include "orchard/core/wire.h"
#include "orchard/replay/client.h"
#include "shard_process.h"

using namespace orchard;
using orchard::bench::Shards;

namespace {

struct Transitions {
  static constexpr uint32_t kBatch = 256;
  std::vector<float> obs = std::vector<float>(kBatch * 14, 0.5f);
  std::vector<int64_t> action = std::vector<int64_t>(kBatch, 1);
  std::vector<core::TensorView> cols() const {
    return {{"obs", core::DType::kFloat32, core::Shape{kBatch, 14}, obs.data()},
            {"action", core::DType::kInt64, core::Shape{kBatch}, action.data()}};
  }
};
constexpr const char* kTransitionSig = "[{name: obs, dtype: float32, shape: [14]}, {name: action, dtype: int64, shape: []}]";

// Writers append until the deadline, then flush; returns items acked per second.
double run_writers(const std::vector<std::string>& endpoints, int writers, double seconds,
                   const std::function<void(replay::ReplayWriter&)>& append_one, uint32_t items_per_append) {
  std::atomic<uint64_t> items{0};
  std::vector<std::thread> threads;
  core::Stopwatch clock;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      replay::ReplayWriterOptions o;
      o.endpoints = endpoints;
      o.actor_id = static_cast<uint64_t>(w);
      replay::ReplayWriter writer(o);
      uint64_t n = 0;
      while (clock.elapsed_s() < seconds) {
        append_one(writer);
        n += items_per_append;
      }
      writer.flush(60000);
      items += n;
    });
  }
  for (auto& t : threads) t.join();
  return static_cast<double>(items.load()) / clock.elapsed_s();
}

// Bare ZeroMQ: the same frames, 8 un-acked at most, an 8-byte ack each from a sink thread.
double bare_zmq_bytes_per_s(size_t frame_bytes, double seconds) {
  zmq::context_t ctx(1);
  std::string ep = "tcp://127.0.0.1:" + std::to_string(core::free_loopback_port());
  zmq::socket_t sink(ctx, zmq::socket_type::router);
  sink.bind(ep);
  std::atomic<bool> stop{false};
  std::thread t([&] {
    zmq::pollitem_t item{static_cast<void*>(sink), 0, ZMQ_POLLIN, 0};
    while (!stop) {
      if (zmq::poll(&item, 1, std::chrono::milliseconds(50)) == 0) continue;
      zmq::message_t id, payload, ack(8);
      (void)sink.recv(id);
      (void)sink.recv(payload);
      sink.send(id, zmq::send_flags::sndmore);
      sink.send(ack, zmq::send_flags::none);
    }
  });
  zmq::socket_t src(ctx, zmq::socket_type::dealer);
  src.connect(ep);
  std::vector<char> payload(frame_bytes, 3);
  core::Stopwatch clock;
  uint64_t sent = 0, acked = 0;
  while (clock.elapsed_s() < seconds) {
    while (sent - acked < 8) {
      zmq::message_t m(payload.data(), payload.size());
      src.send(m, zmq::send_flags::none);
      ++sent;
    }
    zmq::message_t ack;
    (void)src.recv(ack);
    ++acked;
  }
  while (acked < sent) {
    zmq::message_t ack;
    (void)src.recv(ack);
    ++acked;
  }
  double rate = static_cast<double>(acked * frame_bytes) / clock.elapsed_s();
  stop = true;
  t.join();
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 3;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atof(argv[i + 1]);

  // A. One writer and one sampler at once, one shard.
  {
    Shards shards(1, kTransitionSig, 1'000'000);
    Transitions data;
    std::atomic<bool> done{false};
    std::atomic<uint64_t> sampled{0};
    std::thread sampler_thread([&] {
      replay::ReplaySamplerOptions so;
      so.endpoints = shards.endpoints;
      so.batch_size = 256;
      so.prefetch = 4;
      replay::ReplaySampler sampler(so);
      replay::SampledBatch b;
      while (!done) {
        if (sampler.next(&b, 200)) sampled += b.size();
      }
    });
    core::Stopwatch clock;
    double ins = run_writers(shards.endpoints, 1, seconds, [&](replay::ReplayWriter& w) { w.append(data.cols(), 256); }, 256);
    done = true;
    double smp = static_cast<double>(sampled.load()) / clock.elapsed_s();
    sampler_thread.join();
    std::printf("A  64 B transitions, batches of 256, 1 writer + 1 sampler, 1 shard: %.2f M inserts/s, %.2f M samples/s\n",
                ins / 1e6, smp / 1e6);
  }
  // A2. The sampler alone, on a pre-filled shard (its capacity without a writer competing for the
  // two cores).
  {
    Shards shards(1, kTransitionSig, 1'000'000);
    Transitions data;
    run_writers(shards.endpoints, 1, 0.5, [&](replay::ReplayWriter& w) { w.append(data.cols(), 256); }, 256);
    replay::ReplaySamplerOptions so;
    so.endpoints = shards.endpoints;
    so.batch_size = 256;
    so.prefetch = 4;
    replay::ReplaySampler sampler(so);
    replay::SampledBatch b;
    sampler.next(&b, 5000);  // warm up
    core::Stopwatch clock;
    uint64_t n = 0;
    while (clock.elapsed_s() < seconds) {
      if (sampler.next(&b, 1000)) n += b.size();
    }
    std::printf("A2 64 B transitions, batches of 256, 1 sampler alone, 1 shard: %.2f M samples/s\n",
                static_cast<double>(n) / clock.elapsed_s() / 1e6);
  }
  // B. 40 KiB items against bare ZeroMQ.
  {
    constexpr uint32_t kItems = 16;
    constexpr int64_t kItemBytes = 40 * 1024;
    Shards shards(1, "[{name: obs, dtype: uint8, shape: [40960]}]", 4096);
    std::vector<uint8_t> obs(kItems * kItemBytes, 7);
    std::vector<core::TensorView> cols = {{"obs", core::DType::kUInt8, core::Shape{kItems, kItemBytes}, obs.data()}};
    double items_per_s =
        run_writers(shards.endpoints, 1, seconds, [&](replay::ReplayWriter& w) { w.append(cols, kItems); }, kItems);
    double orchard_bps = items_per_s * kItemBytes;
    double bare_bps = bare_zmq_bytes_per_s(kItems * kItemBytes, seconds);
    std::printf("B  40 KiB items, batches of 16, 1 writer, 1 shard: %.0f MB/s; bare ZeroMQ same frames: %.0f MB/s; ratio %.2f\n",
                orchard_bps / 1e6, bare_bps / 1e6, orchard_bps / bare_bps);
  }
  // C. Scaling.
  Transitions data;
  auto append = [&](replay::ReplayWriter& w) { w.append(data.cols(), 256); };
  for (int writers : {1, 2, 4}) {
    Shards shards(1, kTransitionSig, 1'000'000);
    double r = run_writers(shards.endpoints, writers, seconds, append, 256);
    std::printf("C  %d writer(s), 1 shard: %.2f M inserts/s\n", writers, r / 1e6);
  }
  for (int n : {2, 3}) {
    Shards shards(n, kTransitionSig, 1'000'000);
    double r = run_writers(shards.endpoints, 4, seconds, append, 256);
    std::printf("C  4 writers, %d shards: %.2f M inserts/s\n", n, r / 1e6);
  }
  return 0;
}
