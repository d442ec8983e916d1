// The replay client against in-process fake shards (a ROUTER socket on a loopback port and a
// thread that answers by a script): what the writer and sampler put on the wire, how they react
// to lost replies and errors, and that cross-shard sampling reports the right probabilities.
// Tests against the real `orchard-replay` server are in client_test.cc.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "orchard/core/clock.h"
#include "orchard/core/net.h"
#include "orchard/core/wire.h"
#include "orchard/replay/client.h"
#include "support/chi_square.h"

using namespace orchard;
using namespace orchard::replay;
using core::DType;
using core::Message;
using core::MessageBuilder;
using core::Shape;
using core::TensorView;

namespace {

// A scripted shard. The handler runs on the shard's thread with the shard's mutex held; it
// returns the reply to send, or nullptr to drop the request (a lost message).
class FakeShard {
 public:
  using Handler = std::function<std::unique_ptr<MessageBuilder>(const Message&)>;

  explicit FakeShard(Handler handler) : handler_(std::move(handler)) {
    core::SocketOptions o;
    core::apply_socket_options(socket_, o);
    endpoint_ = "tcp://127.0.0.1:" + std::to_string(core::free_loopback_port());
    socket_.bind(endpoint_);
    thread_ = std::thread([this] { run(); });
  }
  ~FakeShard() {
    stop_ = true;
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }
  std::mutex& mu() { return mu_; }
  // Requests received, by type.
  int count(v1::MessageType type) {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_[type];
  }

 private:
  void run() {
    Message m;
    core::RecvError err;
    while (!stop_) {
      auto st = core::recv_message(socket_, &m, &err, 20, /*routed=*/true);
      if (st == core::RecvStatus::kTimeout) continue;
      if (st == core::RecvStatus::kInvalid) {
        core::send_error(socket_, &m.routing, err.request_id, err.code, err.message, "fake");
        continue;
      }
      std::unique_ptr<MessageBuilder> reply;
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++counts_[m.envelope.type()];
        reply = handler_(m);
      }
      if (reply) core::send_message(socket_, *reply, &m.routing);
    }
  }

  Handler handler_;
  zmq::context_t ctx_{1};
  zmq::socket_t socket_{ctx_, zmq::socket_type::router};
  std::string endpoint_;
  std::mutex mu_;
  std::map<int, int> counts_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::unique_ptr<MessageBuilder> error_reply(const Message& req, v1::ErrorCode code, const std::string& message) {
  auto r = std::make_unique<MessageBuilder>(v1::ERROR, req.envelope.request_id());
  r->envelope().mutable_error()->set_code(code);
  r->envelope().mutable_error()->set_message(message);
  return r;
}

std::unique_ptr<MessageBuilder> ack_reply(const Message& req, uint32_t credits = 8, bool duplicate = false) {
  const auto& b = req.envelope.insert();
  auto r = std::make_unique<MessageBuilder>(v1::INSERT_ACK, req.envelope.request_id());
  auto* a = r->envelope().mutable_insert_ack();
  a->set_batch_seq(b.batch_seq());
  a->set_num_items(b.num_items());
  a->set_credits(credits);
  a->set_duplicate(duplicate);
  for (uint32_t i = 0; i < b.num_items(); ++i) a->add_keys(b.batch_seq() * 1000 + i);
  return r;
}

// Columns of a small transition batch: obs float32 [n, 4], action int64 [n].
struct Batch {
  std::vector<float> obs;
  std::vector<int64_t> action;
  std::vector<TensorView> views;
  explicit Batch(uint32_t n, float base = 0) : obs(n * 4), action(n) {
    for (size_t i = 0; i < obs.size(); ++i) obs[i] = base + static_cast<float>(i);
    for (uint32_t i = 0; i < n; ++i) action[i] = static_cast<int64_t>(base) + i;
    views = {{"obs", DType::kFloat32, Shape{static_cast<int64_t>(n), 4}, obs.data()},
             {"action", DType::kInt64, Shape{static_cast<int64_t>(n)}, action.data()}};
  }
};

ReplayWriterOptions writer_options(const std::string& endpoint) {
  ReplayWriterOptions o;
  o.endpoints = {endpoint};
  o.table = "main";
  o.name = "writer-test";
  return o;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Pure pieces

TEST(ReplayKeys, GlobalKeyCarriesShardInTopBits) {
  uint64_t k = encode_global_key(3, 123456789);
  EXPECT_EQ(k, (uint64_t{3} << 48) | 123456789u);
  EXPECT_EQ(shard_of_key(k), 3u);
  EXPECT_EQ(local_key_of(k), 123456789u);
  EXPECT_EQ(local_key_of(encode_global_key(0, kLocalKeyMask)), kLocalKeyMask);
  EXPECT_THROW(encode_global_key(0, kLocalKeyMask + 1), ReplayError);
  EXPECT_THROW(encode_global_key(kMaxShards, 0), ReplayError);
}

TEST(ReplaySplit, CountsSumToBatchAndFollowWeights) {
  std::mt19937_64 rng(42);
  const std::vector<double> w = {1.0, 0.0, 3.0, 6.0};
  std::vector<uint64_t> total(w.size(), 0);
  std::vector<uint32_t> counts;
  for (int round = 0; round < 400; ++round) {
    split_across_shards(w, 100, rng, &counts);
    ASSERT_EQ(counts.size(), w.size());
    uint32_t sum = 0;
    for (size_t s = 0; s < counts.size(); ++s) {
      sum += counts[s];
      total[s] += counts[s];
    }
    EXPECT_EQ(sum, 100u);
    EXPECT_EQ(counts[1], 0u);  // zero weight: never picked
  }
  auto r = orchard::testing::chi_square_test({total[0], total[2], total[3]}, {0.1, 0.3, 0.6});
  EXPECT_GT(r.p_value, 1e-4) << "chi2 " << r.statistic;
  EXPECT_THROW(split_across_shards({0.0, 0.0}, 1, rng, &counts), std::invalid_argument);
}

TEST(ReplayImportanceWeights, MatchFormulaNormalisedByMax) {
  const double p[] = {0.1, 0.02, 0.5};
  double w[3];
  importance_weights(p, 3, 50, 0.4, w);
  double raw[3], mx = 0;
  for (int i = 0; i < 3; ++i) mx = std::max(mx, raw[i] = std::pow(50 * p[i], -0.4));
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(w[i], raw[i] / mx, 1e-12);
  EXPECT_DOUBLE_EQ(w[1], 1.0);  // the least likely item has the largest weight
  importance_weights(p, 3, 50, 0.0, w);
  for (double x : w) EXPECT_DOUBLE_EQ(x, 1.0);
}

TEST(ReplayErrorText, NamesShardCodeAndServerMessage) {
  ReplayError e(v1::NOT_FOUND, "tcp://127.0.0.1:1", "unknown table 'x'");
  EXPECT_STREQ(e.what(), "replay shard tcp://127.0.0.1:1: NOT_FOUND: unknown table 'x'");
  EXPECT_EQ(e.server_message(), "unknown table 'x'");
  EXPECT_TRUE(is_retryable(v1::DEADLINE_EXCEEDED));
  EXPECT_TRUE(is_retryable(v1::RESOURCE_EXHAUSTED));
  EXPECT_FALSE(is_retryable(v1::SIGNATURE_MISMATCH));
}

// ---------------------------------------------------------------------------------------------
// Writer

TEST(ReplayWriterProtocol, InsertCarriesBatchFieldsAndColumnBytes) {
  std::vector<v1::Envelope> seen;
  std::vector<std::vector<float>> seen_obs;
  FakeShard shard([&](const Message& m) {
    seen.push_back(m.envelope);
    std::vector<float> obs(m.tensors[0].shape.num_elements());
    core::copy_tensor(m.tensors[0], obs.data(), obs.size() * 4);
    seen_obs.push_back(obs);
    return ack_reply(m);
  });
  auto o = writer_options(shard.endpoint());
  o.actor_id = 17;
  o.insert_timeout_ms = 750;
  o.collect_keys = true;
  ReplayWriter w(o);
  Batch b(3, 10);
  const double prio[] = {1.0, 2.0, 0.5};
  w.append(b.views, 3, prio, /*policy_version=*/42);
  Batch b2(2, 20);
  w.append(b2.views, 2);
  w.flush(5000);

  std::lock_guard<std::mutex> lock(shard.mu());
  ASSERT_EQ(seen.size(), 2u);
  const auto& env = seen[0];
  EXPECT_EQ(env.type(), v1::INSERT);
  EXPECT_EQ(env.sender(), "writer-test");
  const auto& x = env.insert();
  EXPECT_EQ(x.table(), "main");
  EXPECT_EQ(x.kind(), v1::TRANSITION);
  EXPECT_EQ(x.num_items(), 3u);
  EXPECT_EQ(x.actor_id(), 17u);
  EXPECT_EQ(x.policy_version(), 42u);
  EXPECT_EQ(x.batch_seq(), 1u);
  EXPECT_EQ(x.timeout_ms(), 750u);
  ASSERT_EQ(x.priorities_size(), 3);
  EXPECT_DOUBLE_EQ(x.priorities(1), 2.0);
  ASSERT_EQ(env.tensors_size(), 2);
  EXPECT_EQ(env.tensors(0).name(), "obs");
  EXPECT_EQ(env.tensors(1).name(), "action");
  EXPECT_EQ(env.tensors(1).dtype(), v1::INT64);
  EXPECT_EQ(seen_obs[0], b.obs);
  EXPECT_EQ(seen[1].insert().batch_seq(), 2u);
  EXPECT_EQ(seen[1].insert().priorities_size(), 0);  // the table assigns them
  EXPECT_NE(seen[0].request_id(), seen[1].request_id());

  auto st = w.stats();
  EXPECT_EQ(st.batches_sent, 2u);
  EXPECT_EQ(st.batches_acked, 2u);
  EXPECT_EQ(st.items_acked, 5u);
  EXPECT_EQ(st.batches_resent, 0u);
  auto keys = w.take_acked_keys();
  ASSERT_EQ(keys.size(), 5u);
  EXPECT_EQ(keys[0], 1000u);  // shard 0: global key = local key
  EXPECT_EQ(keys[3], 2000u);
}

TEST(ReplayWriterProtocol, ShardIsActorIdModuloShardsUnlessSet) {
  ReplayWriterOptions o;
  o.endpoints = {"tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "tcp://127.0.0.1:3"};
  o.actor_id = 5;
  EXPECT_EQ(ReplayWriter(o).endpoint(), "tcp://127.0.0.1:3");
  o.shard = 0;
  EXPECT_EQ(ReplayWriter(o).endpoint(), "tcp://127.0.0.1:1");
  o.shard = 3;
  EXPECT_THROW(ReplayWriter{o}, ReplayError);
  o.shard = -1;
  o.ack_timeout_ms = 500;
  o.insert_timeout_ms = 500;
  EXPECT_THROW(ReplayWriter{o}, ReplayError);  // acks could never beat the insert timeout
  o.endpoints.clear();
  EXPECT_THROW(ReplayWriter{o}, ReplayError);
}

TEST(ReplayWriterProtocol, BlocksAtCreditsThenTimesOutNamingShard) {
  std::atomic<bool> answer{false};
  std::vector<std::unique_ptr<MessageBuilder>> held;
  FakeShard shard([&](const Message& m) -> std::unique_ptr<MessageBuilder> {
    if (!answer) return nullptr;
    return ack_reply(m, /*credits=*/2);
  });
  auto o = writer_options(shard.endpoint());
  o.credits = 3;
  o.block_timeout_ms = 300;
  o.insert_timeout_ms = 100;
  o.ack_timeout_ms = 60000;
  ReplayWriter w(o);
  Batch b(1);
  for (int i = 0; i < 3; ++i) w.append(b.views, 1);
  EXPECT_EQ(w.in_flight(), 3u);
  core::Stopwatch sw;
  try {
    w.append(b.views, 1);
    FAIL() << "append did not block at the credit limit";
  } catch (const ReplayError& e) {
    EXPECT_EQ(e.code(), v1::DEADLINE_EXCEEDED);
    EXPECT_EQ(e.endpoint(), shard.endpoint());
    EXPECT_NE(std::string(e.what()).find("3 batches un-acknowledged"), std::string::npos) << e.what();
  }
  EXPECT_GE(sw.elapsed_s(), 0.25);
  EXPECT_EQ(w.in_flight(), 3u);  // the refused batch was not taken
  // The shard answers from now on (its announced credits lower the writer's).
  answer = true;
  o.ack_timeout_ms = 300;
  ReplayWriter w2(o);
  w2.append(b.views, 1);
  w2.flush(5000);
  EXPECT_EQ(w2.credits(), 2u);
}

// An actor whose learner has finished (or that is asked to stop) must not sit out the whole block
// timeout: the interrupt, asked every interrupt_every_ms while append waits, ends the wait.
TEST(ReplayWriterProtocol, AnInterruptEndsTheWaitForACreditEarly) {
  FakeShard shard([&](const Message&) -> std::unique_ptr<MessageBuilder> { return nullptr; });  // never acks
  auto o = writer_options(shard.endpoint());
  o.credits = 2;
  o.block_timeout_ms = 5000;
  o.insert_timeout_ms = 100;
  o.ack_timeout_ms = 60000;
  int asked = 0;
  o.interrupt = [&asked] { return ++asked >= 5; };
  o.interrupt_every_ms = 20;
  ReplayWriter w(o);
  Batch b(1);
  w.append(b.views, 1);
  w.append(b.views, 1);
  EXPECT_EQ(asked, 0);  // not asked while credits are free
  core::Stopwatch sw;
  try {
    w.append(b.views, 1);
    FAIL() << "append did not block at the credit limit";
  } catch (const ReplayError& e) {
    EXPECT_EQ(e.code(), v1::DEADLINE_EXCEEDED);  // retryable, like the block timeout
    EXPECT_NE(std::string(e.what()).find("append interrupted after"), std::string::npos) << e.what();
  }
  EXPECT_EQ(asked, 5);
  EXPECT_GE(sw.elapsed_s(), 0.08);  // asked every 20 ms, not in a busy loop
  EXPECT_LT(sw.elapsed_s(), 2.0);   // far from the 5 s block timeout
  EXPECT_EQ(w.in_flight(), 2u);     // the interrupted batch was not taken
}

TEST(ReplayWriterProtocol, LostAcksMakeItResendEveryUnackedBatchInOrder) {
  // The shard "restarts" after the first two batches: it never answers their first delivery.
  std::vector<uint64_t> order;
  std::map<uint64_t, int> deliveries;
  FakeShard shard([&](const Message& m) -> std::unique_ptr<MessageBuilder> {
    uint64_t seq = m.envelope.insert().batch_seq();
    order.push_back(seq);
    if (++deliveries[seq] == 1 && seq <= 2) return nullptr;
    return ack_reply(m, 8, /*duplicate=*/deliveries[seq] > 1 && seq > 2);
  });
  auto o = writer_options(shard.endpoint());
  o.ack_timeout_ms = 400;
  o.insert_timeout_ms = 100;
  ReplayWriter w(o);
  Batch b(2);
  w.append(b.views, 2);
  w.append(b.views, 2);
  w.append(b.views, 2);  // acked at once
  w.flush(10000);
  auto st = w.stats();
  EXPECT_EQ(st.batches_acked, 3u);
  EXPECT_EQ(st.items_acked, 6u);
  EXPECT_GE(st.reconnects, 1u);
  EXPECT_GE(st.batches_resent, 2u);
  std::lock_guard<std::mutex> lock(shard.mu());
  EXPECT_GE(deliveries[1], 2);
  EXPECT_GE(deliveries[2], 2);
  // The resend round goes in seq order: 1 before 2.
  auto second_of = [&](uint64_t seq) {
    int seen = 0;
    for (size_t i = 0; i < order.size(); ++i)
      if (order[i] == seq && ++seen == 2) return i;
    return order.size();
  };
  EXPECT_LT(second_of(1), second_of(2));
}

TEST(ReplayWriterProtocol, RetryableErrorsAreResent) {
  std::map<uint64_t, int> deliveries;
  FakeShard shard([&](const Message& m) -> std::unique_ptr<MessageBuilder> {
    uint64_t seq = m.envelope.insert().batch_seq();
    int k = ++deliveries[seq];
    if (k == 1) return error_reply(m, v1::DEADLINE_EXCEEDED, "rate limiter: insert blocked for 100 ms");
    if (k == 2) return error_reply(m, v1::RESOURCE_EXHAUSTED, "out of credits");
    return ack_reply(m);
  });
  ReplayWriter w(writer_options(shard.endpoint()));
  Batch b(4);
  w.append(b.views, 4);
  w.flush(5000);
  auto st = w.stats();
  EXPECT_EQ(st.retryable_errors, 2u);
  EXPECT_EQ(st.batches_resent, 2u);
  EXPECT_EQ(st.batches_acked, 1u);
}

TEST(ReplayWriterProtocol, FatalErrorSurfacesWithServerMessageAndDropsOnlyThatBatch) {
  FakeShard shard([&](const Message& m) -> std::unique_ptr<MessageBuilder> {
    if (m.envelope.insert().batch_seq() == 1) {
      return error_reply(m, v1::SIGNATURE_MISMATCH, "tensor 'obs': shape [2, 4] does not match the signature obs float32[3]");
    }
    return ack_reply(m);
  });
  ReplayWriter w(writer_options(shard.endpoint()));
  Batch b(2);
  w.append(b.views, 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // The refusal of batch 1 arrives during this append, which has taken batch 2 by then: the
  // error waits for the next call, so a throwing append never took its batch.
  EXPECT_NO_THROW(w.append(b.views, 2));
  try {
    w.flush(5000);
    FAIL() << "flush did not surface the shard's error";
  } catch (const ReplayError& e) {
    EXPECT_EQ(e.code(), v1::SIGNATURE_MISMATCH);
    EXPECT_EQ(e.endpoint(), shard.endpoint());
    EXPECT_NE(std::string(e.what()).find("does not match the signature obs float32[3]"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("batch_seq 1"), std::string::npos) << e.what();
  }
  w.flush(5000);  // batch 2 was kept and goes through
  EXPECT_EQ(w.in_flight(), 0u);
  EXPECT_EQ(w.stats().batches_acked, 1u);
  w.append(b.views, 2);
  w.flush(5000);
  EXPECT_EQ(w.stats().batches_acked, 2u);
}

TEST(ReplayWriterProtocol, FlushTimeoutNamesOutstandingBatchesAndShard) {
  FakeShard shard([&](const Message&) -> std::unique_ptr<MessageBuilder> { return nullptr; });
  auto o = writer_options(shard.endpoint());
  o.ack_timeout_ms = 100000;
  ReplayWriter w(o);
  Batch b(1);
  w.append(b.views, 1);
  w.append(b.views, 1);
  try {
    w.flush(200);
    FAIL();
  } catch (const ReplayError& e) {
    EXPECT_EQ(e.code(), v1::DEADLINE_EXCEEDED);
    EXPECT_NE(std::string(e.what()).find(shard.endpoint()), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("2 batches still un-acknowledged"), std::string::npos) << e.what();
  }
  EXPECT_THROW(w.append({b.views[0]}, 2), std::invalid_argument);  // leading dim 1 != 2
}

// ---------------------------------------------------------------------------------------------
// Sampler

namespace {

// A prioritized table as a shard would keep it: items (key, priority), sampling with
// probability p^alpha / sum p^alpha. Column "id" int64 = shard * 1000 + key, "obs" float32 [2].
struct FakeTable {
  uint32_t shard = 0;
  double alpha = 1.0;
  std::map<uint64_t, double> items;
  std::mt19937_64 rng;
  uint32_t min_size = 0;  // below: answer DEADLINE_EXCEEDED
  std::vector<std::pair<uint64_t, double>> updates;

  double mass() const {
    double m = 0;
    for (auto& [k, p] : items) m += std::pow(p, alpha);
    return m;
  }

  std::unique_ptr<MessageBuilder> handle(const Message& m) {
    const auto& env = m.envelope;
    if (env.type() == v1::TABLE_INFO) {
      if (!env.table_info().table().empty() && env.table_info().table() != "main") {
        return error_reply(m, v1::NOT_FOUND, "unknown table '" + env.table_info().table() + "'");
      }
      auto r = std::make_unique<MessageBuilder>(v1::TABLE_INFO_REPLY, env.request_id());
      auto* reply = r->envelope().mutable_table_info_reply();
      reply->set_shard("fake-" + std::to_string(shard));
      auto* t = reply->add_tables();
      t->set_name("main");
      t->set_size(items.size());
      t->set_priority_mass(mass());
      t->set_sampler("prioritized");
      auto* d = t->add_signature();
      d->set_name("id");
      d->set_dtype(v1::INT64);
      d = t->add_signature();
      d->set_name("obs");
      d->set_dtype(v1::FLOAT32);
      d->add_shape(2);
      return r;
    }
    if (env.type() == v1::SAMPLE) {
      if (env.sample().table() != "main") return error_reply(m, v1::NOT_FOUND, "unknown table '" + env.sample().table() + "'");
      if (items.size() < std::max<uint32_t>(min_size, 1)) {
        return error_reply(m, v1::DEADLINE_EXCEEDED, "table 'main' has fewer items than min_size_to_sample");
      }
      const uint32_t n = env.sample().batch_size();
      const double total = mass();
      auto r = std::make_unique<MessageBuilder>(v1::SAMPLE_REPLY, env.request_id());
      auto* s = r->envelope().mutable_sample_reply();
      s->set_table("main");
      s->set_table_size(items.size());
      s->set_priority_mass(total);
      std::vector<int64_t> ids;
      std::vector<float> obs;
      std::uniform_real_distribution<double> u(0, total);
      for (uint32_t i = 0; i < n; ++i) {
        double x = u(rng);
        auto it = items.begin();
        for (; std::next(it) != items.end(); ++it) {
          double w = std::pow(it->second, alpha);
          if (x < w) break;
          x -= w;
        }
        s->add_keys(it->first);
        s->add_probabilities(std::pow(it->second, alpha) / total);
        s->add_times_sampled(1);
        ids.push_back(static_cast<int64_t>(shard * 1000 + it->first));
        obs.push_back(static_cast<float>(shard));
        obs.push_back(static_cast<float>(it->first));
      }
      r->add_tensor("id", ids, Shape{static_cast<int64_t>(n)});
      r->add_tensor("obs", obs, Shape{static_cast<int64_t>(n), 2});
      return r;
    }
    if (env.type() == v1::UPDATE_PRIORITIES) {
      const auto& u = env.update_priorities();
      uint32_t updated = 0, unknown = 0;
      for (int i = 0; i < u.keys_size(); ++i) {
        updates.emplace_back(u.keys(i), u.priorities(i));
        auto it = items.find(u.keys(i));
        if (it == items.end()) {
          ++unknown;
        } else {
          it->second = u.priorities(i);
          ++updated;
        }
      }
      auto r = std::make_unique<MessageBuilder>(v1::UPDATE_PRIORITIES_ACK, env.request_id());
      r->envelope().mutable_update_priorities_ack()->set_updated(updated);
      r->envelope().mutable_update_priorities_ack()->set_unknown_keys(unknown);
      return r;
    }
    if (env.type() == v1::CHECKPOINT) {
      auto r = std::make_unique<MessageBuilder>(v1::CHECKPOINT_REPLY, env.request_id());
      r->envelope().mutable_checkpoint_reply()->set_path(env.checkpoint().path() + "/shard.ckpt");
      r->envelope().mutable_checkpoint_reply()->set_items(items.size());
      r->envelope().mutable_checkpoint_reply()->set_bytes(1234);
      return r;
    }
    return error_reply(m, v1::INVALID_ARGUMENT, "unexpected message");
  }
};

// Three shards with static priorities.
struct ThreeShards {
  FakeTable tables[3];
  std::unique_ptr<FakeShard> shards[3];
  ThreeShards() {
    tables[0].items = {{0, 1.0}, {1, 2.0}, {2, 3.0}, {3, 4.0}};
    tables[1].items = {{0, 10.0}, {1, 0.5}};
    tables[2].items = {{0, 1.5}, {1, 1.5}, {2, 6.0}, {3, 0.25}, {4, 2.0}};
    for (uint32_t s = 0; s < 3; ++s) {
      tables[s].shard = s;
      tables[s].rng.seed(100 + s);
      shards[s] = std::make_unique<FakeShard>([this, s](const Message& m) { return tables[s].handle(m); });
    }
  }
  std::vector<std::string> endpoints() const {
    return {shards[0]->endpoint(), shards[1]->endpoint(), shards[2]->endpoint()};
  }
};

}  // namespace

TEST(ReplaySamplerProtocol, GlobalProbabilitiesKeysAndWeightsAcrossThreeShards) {
  ThreeShards fx;
  double total_mass = 0;
  std::vector<uint64_t> global_keys;
  std::vector<double> expected_p;
  for (uint32_t s = 0; s < 3; ++s) {
    total_mass += fx.tables[s].mass();
    for (auto& [k, p] : fx.tables[s].items) global_keys.push_back(encode_global_key(s, k));
  }
  for (uint32_t s = 0; s < 3; ++s)
    for (auto& [k, p] : fx.tables[s].items) expected_p.push_back(p / total_mass);

  ReplaySamplerOptions o;
  o.endpoints = fx.endpoints();
  o.batch_size = 64;
  o.beta = 0.6;
  o.seed = 9;
  ReplaySampler sampler(o);
  std::map<uint64_t, uint64_t> counts;
  SampledBatch b;
  const int kBatches = 300;
  for (int i = 0; i < kBatches; ++i) {
    ASSERT_TRUE(sampler.next(&b, 10000)) << "batch " << i;
    ASSERT_EQ(b.size(), 64u);
    ASSERT_EQ(b.columns.size(), 2u);
    const auto* id = b.find("id");
    const auto* obs = b.find("obs");
    ASSERT_TRUE(id && obs);
    EXPECT_EQ(obs->shape, (Shape{64, 2}));
    EXPECT_EQ(b.total_items, 11u);
    EXPECT_NEAR(b.total_weight, total_mass, 1e-9);
    std::vector<uint32_t> rows_per_shard(3, 0);
    for (size_t r = 0; r < b.size(); ++r) {
      uint64_t key = b.keys[r];
      uint32_t s = shard_of_key(key);
      uint64_t local = local_key_of(key);
      ASSERT_LT(s, 3u);
      ++rows_per_shard[s];
      // The row's columns are that item's.
      EXPECT_EQ(id->as<int64_t>()[r], static_cast<int64_t>(s * 1000 + local));
      EXPECT_FLOAT_EQ(obs->as<float>()[2 * r], static_cast<float>(s));
      // Reported probability: the item's global probability.
      EXPECT_NEAR(b.probabilities[r], fx.tables[s].items.at(local) / total_mass, 1e-12);
      ++counts[key];
    }
    EXPECT_EQ(rows_per_shard, b.shard_counts);
    // Importance weights: (N P_i)^-beta / max_j.
    double mx = 0;
    for (double p : b.probabilities) mx = std::max(mx, std::pow(11 * p, -0.6));
    for (size_t r = 0; r < b.size(); ++r) EXPECT_NEAR(b.weights[r], std::pow(11 * b.probabilities[r], -0.6) / mx, 1e-12);
  }
  std::vector<uint64_t> observed;
  for (uint64_t k : global_keys) observed.push_back(counts[k]);
  auto r = orchard::testing::chi_square_test(observed, expected_p);
  EXPECT_GT(r.p_value, 1e-4) << "chi2 " << r.statistic << " df " << r.df;
  auto st = sampler.stats();
  EXPECT_GE(st.batches, static_cast<uint64_t>(kBatches));
  EXPECT_EQ(sampler.num_shards(), 3u);
  auto w = sampler.shard_weights();
  EXPECT_NEAR(w[1], 10.5, 1e-12);
}

TEST(ReplaySamplerProtocol, RateLimitedShardIsRetriedAndNextTimesOut) {
  FakeTable table;
  table.items = {{0, 1.0}, {1, 1.0}};
  table.min_size = 5;  // always DEADLINE_EXCEEDED
  FakeShard shard([&](const Message& m) { return table.handle(m); });
  ReplaySamplerOptions o;
  o.endpoints = {shard.endpoint()};
  o.batch_size = 4;
  o.timeout_ms = 50;
  ReplaySampler sampler(o);
  SampledBatch b;
  core::Stopwatch sw;
  EXPECT_FALSE(sampler.next(&b, 400));
  EXPECT_GE(sw.elapsed_s(), 0.35);
  EXPECT_LT(sw.elapsed_s(), 2.0);
  EXPECT_GT(sampler.stats().deadline_retries, 0u);
  // Once the table is big enough the waiting request goes through.
  {
    std::lock_guard<std::mutex> lock(shard.mu());
    table.min_size = 0;
  }
  EXPECT_TRUE(sampler.next(&b, 5000));
  sampler.stop();
  sampler.stop();  // idempotent
}

TEST(ReplaySamplerProtocol, UnknownTableSurfacesFromNextNamingShard) {
  FakeTable table;
  table.items = {{0, 1.0}};
  FakeShard shard([&](const Message& m) { return table.handle(m); });
  ReplaySamplerOptions o;
  o.endpoints = {shard.endpoint()};
  o.table = "nope";
  ReplaySampler sampler(o);
  SampledBatch b;
  try {
    sampler.next(&b, 5000);
    FAIL() << "next() did not throw";
  } catch (const ReplayError& e) {
    EXPECT_EQ(e.code(), v1::NOT_FOUND);
    EXPECT_EQ(e.endpoint(), shard.endpoint());
    EXPECT_EQ(e.server_message(), "unknown table 'nope'");
  }
  EXPECT_THROW(sampler.next(&b, 100), ReplayError);  // and stays failed
}

TEST(ReplaySamplerProtocol, EmptyShardsArePickedUpOnceTheyFill) {
  FakeTable t0, t1;
  t1.shard = 1;
  FakeShard s0([&](const Message& m) { return t0.handle(m); });
  FakeShard s1([&](const Message& m) { return t1.handle(m); });
  ReplaySamplerOptions o;
  o.endpoints = {s0.endpoint(), s1.endpoint()};
  o.batch_size = 8;
  o.info_refresh_ms = 100;
  ReplaySampler sampler(o);
  SampledBatch b;
  EXPECT_FALSE(sampler.next(&b, 300));  // nothing anywhere
  {
    std::lock_guard<std::mutex> lock(s1.mu());
    t1.items = {{7, 1.0}};
  }
  ASSERT_TRUE(sampler.next(&b, 5000));
  for (uint64_t k : b.keys) EXPECT_EQ(k, encode_global_key(1, 7));
  EXPECT_DOUBLE_EQ(b.probabilities[0], 1.0);
  {
    std::lock_guard<std::mutex> lock(s0.mu());
    t0.items = {{3, 1.0}};
  }
  // Shard 0 is found by the periodic TABLE_INFO refresh.
  bool saw_shard0 = false;
  auto until = core::Deadline::after_ms(5000);
  while (!saw_shard0 && !until.expired()) {
    ASSERT_TRUE(sampler.next(&b, 5000));
    for (uint64_t k : b.keys) saw_shard0 = saw_shard0 || shard_of_key(k) == 0;
  }
  EXPECT_TRUE(saw_shard0);
}

TEST(ReplaySamplerProtocol, PriorityUpdatesGoToTheOwningShard) {
  ThreeShards fx;
  ReplaySamplerOptions o;
  o.endpoints = fx.endpoints();
  o.batch_size = 4;
  ReplaySampler sampler(o);
  std::vector<uint64_t> keys = {encode_global_key(2, 4), encode_global_key(0, 1), encode_global_key(2, 0),
                                encode_global_key(1, 99)};
  std::vector<double> prios = {5.0, 7.0, 0.0, 1.0};
  auto r = sampler.update_priorities(keys, prios);
  EXPECT_EQ(r.updated, 3u);
  EXPECT_EQ(r.unknown_keys, 1u);  // key 99 is not in shard 1
  {
    std::lock_guard<std::mutex> l0(fx.shards[0]->mu()), l1(fx.shards[1]->mu()), l2(fx.shards[2]->mu());
    ASSERT_EQ(fx.tables[0].updates.size(), 1u);
    EXPECT_EQ(fx.tables[0].updates[0], (std::pair<uint64_t, double>(1, 7.0)));
    ASSERT_EQ(fx.tables[1].updates.size(), 1u);
    EXPECT_EQ(fx.tables[1].updates[0].first, 99u);
    ASSERT_EQ(fx.tables[2].updates.size(), 2u);
    EXPECT_EQ(fx.tables[2].updates[0], (std::pair<uint64_t, double>(4, 5.0)));
    EXPECT_EQ(fx.tables[2].updates[1], (std::pair<uint64_t, double>(0, 0.0)));
  }
  EXPECT_EQ(fx.shards[0]->count(v1::UPDATE_PRIORITIES), 1);
  EXPECT_THROW(sampler.update_priorities({encode_global_key(0, 1)}, {-1.0}), std::invalid_argument);
  EXPECT_THROW(sampler.update_priorities({encode_global_key(5, 1)}, {1.0}), std::invalid_argument);
  EXPECT_THROW(sampler.update_priorities({encode_global_key(0, 1)}, {NAN}), std::invalid_argument);
  // Later samples see the new priorities: shard 0 item 1 now has 7 / (1 + 7 + 3 + 4).
  SampledBatch b;
  bool seen = false;
  for (int i = 0; i < 100 && !seen; ++i) {
    ASSERT_TRUE(sampler.next(&b, 5000));
    for (size_t k = 0; k < b.size(); ++k) {
      if (b.keys[k] == encode_global_key(0, 1) && std::abs(b.total_weight - (15.0 + 10.5 + 12.75)) < 1e-9) {
        EXPECT_NEAR(b.probabilities[k], 7.0 / b.total_weight, 1e-12);
        seen = true;
      }
    }
  }
  EXPECT_TRUE(seen);
}

TEST(ReplayAdminProtocol, TableInfoAndCheckpoint) {
  FakeTable table;
  table.items = {{0, 2.0}, {1, 3.0}};
  FakeShard shard([&](const Message& m) { return table.handle(m); });
  auto info = shard_info(shard.endpoint(), "main", 5000);
  EXPECT_EQ(info.shard, "fake-0");
  ASSERT_EQ(info.tables.size(), 1u);
  EXPECT_EQ(info.tables[0].size, 2u);
  EXPECT_DOUBLE_EQ(info.tables[0].priority_mass, 5.0);
  ASSERT_EQ(info.tables[0].signature.size(), 2u);
  EXPECT_EQ(info.tables[0].signature[1].to_string(), "obs float32[2]");
  EXPECT_EQ(table_info(shard.endpoint(), "", 5000).size(), 1u);
  try {
    table_info(shard.endpoint(), "other", 5000);
    FAIL();
  } catch (const ReplayError& e) {
    EXPECT_EQ(e.code(), v1::NOT_FOUND);
    EXPECT_EQ(e.server_message(), "unknown table 'other'");
  }
  auto ck = checkpoint(shard.endpoint(), "/tmp/x", 5000);
  EXPECT_EQ(ck.path, "/tmp/x/shard.ckpt");
  EXPECT_EQ(ck.items, 2u);
  EXPECT_EQ(ck.bytes, 1234u);
  // Nobody listening: a timeout naming the endpoint.
  std::string dead = "tcp://127.0.0.1:" + std::to_string(core::free_loopback_port());
  try {
    shard_info(dead, "main", 200);
    FAIL();
  } catch (const ReplayError& e) {
    EXPECT_EQ(e.code(), v1::DEADLINE_EXCEEDED);
    EXPECT_EQ(e.endpoint(), dead);
  }
}
