// The replay client against real `orchard-replay` shard processes on loopback ports: round trips
// byte for byte, globally correct prioritized sampling across three shards (chi-square), priority
// updates routed by key, concurrent writers, a shard killed and restarted under a writer, rate
// limiter timeouts, and the server's fatal errors surfacing with its message.
//
// The shard binary is build/bin/orchard-replay, or $ORCHARD_REPLAY_BIN when set.
#include <gtest/gtest.h>

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "orchard/core/clock.h"
#include "orchard/core/net.h"
#include "orchard/proto/orchard.pb.h"
#include "orchard/replay/client.h"
#include "support/chi_square.h"
#include "support/child_process.h"

using namespace orchard;
using namespace orchard::replay;
using core::DType;
using core::Shape;
using core::TensorView;
using orchard::testing::ChildProcess;

namespace {

std::string replay_bin() {
  const char* env = std::getenv("ORCHARD_REPLAY_BIN");
  return env && *env ? env : orchard::testing::orchard_bin("orchard-replay");
}

std::string make_temp_dir() {
  char tmpl[] = "/tmp/orchard-replay-client-XXXXXX";
  const char* d = ::mkdtemp(tmpl);
  if (!d) throw std::runtime_error("mkdtemp failed");
  return d;
}

// A run spec with one table `main` (obs float32[4], action int64, reward float32) and the given
// extra table keys ("sampler: fifo\n      max_times_sampled: 1").
std::string write_spec(const std::string& dir, const std::string& table_keys) {
  std::string path = dir + "/spec.yaml";
  std::ofstream f(path);
  f << "replay:\n"
       "  tables:\n"
       "    - name: main\n"
       "      "
    << table_keys
    << "\n"
       "      signature:\n"
       "        - {name: obs, dtype: float32, shape: [4]}\n"
       "        - {name: action, dtype: int64, shape: []}\n"
       "        - {name: reward, dtype: float32, shape: []}\n";
  return path;
}

// One orchard-replay process. start() picks a free port (or reuses the last one) and waits for
// the "ready" line.
class Shard {
 public:
  Shard(std::string spec, int index, std::string checkpoint_dir = "")
      : spec_(std::move(spec)), index_(index), checkpoint_dir_(std::move(checkpoint_dir)) {}

  void start(bool same_port = false) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      if (!same_port || port_ == 0) port_ = core::free_loopback_port();
      std::vector<std::string> argv = {replay_bin(), "--config", spec_, "--bind", endpoint(),
                                       "--shard-index", std::to_string(index_), "--log-level", "warn"};
      if (!checkpoint_dir_.empty()) {
        argv.push_back("--checkpoint-dir");
        argv.push_back(checkpoint_dir_);
      }
      proc_ = std::make_unique<ChildProcess>(argv);
      if (proc_->wait_for_output("ready", 15000)) return;
      proc_->signal(SIGKILL);
      proc_->wait(5000);
      // Someone took the port between asking and binding: try another (or wait for the old
      // socket to go away when the port must stay the same).
      if (same_port) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    throw std::runtime_error("orchard-replay did not start: " + (proc_ ? proc_->output() : std::string()));
  }
  void kill() {
    proc_->signal(SIGKILL);
    EXPECT_EQ(proc_->wait(10000), 128 + SIGKILL);
  }
  std::string endpoint() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  std::string output() const { return proc_ ? proc_->output() : ""; }

 private:
  std::string spec_;
  int index_;
  std::string checkpoint_dir_;
  uint16_t port_ = 0;
  std::unique_ptr<ChildProcess> proc_;
};

// Items with deterministic contents: item i of batch b has obs (b, i, b * i, 0.5), action b * 1000 + i,
// reward b + i / 1000.
struct Items {
  std::vector<float> obs, reward;
  std::vector<int64_t> action;
  std::vector<TensorView> views;
  Items(uint32_t batch, uint32_t n) : obs(n * 4), reward(n), action(n) {
    for (uint32_t i = 0; i < n; ++i) {
      obs[i * 4 + 0] = static_cast<float>(batch);
      obs[i * 4 + 1] = static_cast<float>(i);
      obs[i * 4 + 2] = static_cast<float>(batch * i);
      obs[i * 4 + 3] = 0.5f;
      action[i] = static_cast<int64_t>(batch) * 1000 + i;
      reward[i] = static_cast<float>(batch) + static_cast<float>(i) / 1000.0f;
    }
    const auto N = static_cast<int64_t>(n);
    views = {{"obs", DType::kFloat32, Shape{N, 4}, obs.data()},
             {"action", DType::kInt64, Shape{N}, action.data()},
             {"reward", DType::kFloat32, Shape{N}, reward.data()}};
  }
};

class ReplayClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // CMake builds orchard-replay before this binary: a missing one is a broken build, not a skip.
    if (::access(replay_bin().c_str(), X_OK) != 0) FAIL() << replay_bin() << " is not built";
    dir_ = make_temp_dir();
  }
  void TearDown() override {
    shards_.clear();
    if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  // Starts `n` shards serving the same spec.
  std::vector<std::string> start_shards(int n, const std::string& table_keys, bool checkpoints = false) {
    std::string spec = write_spec(dir_, table_keys);
    std::vector<std::string> endpoints;
    for (int i = 0; i < n; ++i) {
      shards_.push_back(std::make_unique<Shard>(spec, i, checkpoints ? dir_ + "/ckpt" : ""));
      shards_.back()->start();
      endpoints.push_back(shards_.back()->endpoint());
    }
    return endpoints;
  }
  ReplayWriterOptions writer_options(const std::vector<std::string>& endpoints, int shard, const std::string& name) {
    ReplayWriterOptions o;
    o.endpoints = endpoints;
    o.shard = shard;
    o.name = name;
    o.collect_keys = true;
    return o;
  }

  std::string dir_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace

TEST_F(ReplayClientTest, OneWriterOneSamplerRoundTripEveryByte) {
  auto endpoints = start_shards(1, "sampler: fifo\n      max_times_sampled: 1");
  const uint32_t kBatches = 20, kItems = 10;
  {
    ReplayWriter w(writer_options(endpoints, -1, "rt-writer"));
    for (uint32_t b = 0; b < kBatches; ++b) {
      Items items(b, kItems);
      w.append(items.views, kItems, nullptr, /*policy_version=*/b);
    }
    w.flush(10000);
    auto keys = w.take_acked_keys();
    EXPECT_EQ(keys.size(), kBatches * kItems);
    EXPECT_EQ(std::set<uint64_t>(keys.begin(), keys.end()).size(), keys.size());
  }
  auto info = table_info(endpoints[0], "main", 5000);
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(info[0].size, kBatches * kItems);
  EXPECT_EQ(info[0].sampler, "fifo");

  ReplaySamplerOptions so;
  so.endpoints = endpoints;
  so.batch_size = kItems;
  so.timeout_ms = 200;
  ReplaySampler sampler(so);
  SampledBatch got;
  // FIFO + max_times_sampled 1: every item exactly once, oldest first.
  for (uint32_t b = 0; b < kBatches; ++b) {
    ASSERT_TRUE(sampler.next(&got, 10000)) << "batch " << b;
    Items want(b, kItems);
    ASSERT_EQ(got.columns.size(), 3u);
    const auto* obs = got.find("obs");
    const auto* action = got.find("action");
    const auto* reward = got.find("reward");
    ASSERT_TRUE(obs && action && reward);
    EXPECT_EQ(obs->shape, (Shape{kItems, 4}));
    EXPECT_EQ(obs->dtype, DType::kFloat32);
    EXPECT_EQ(action->dtype, DType::kInt64);
    ASSERT_EQ(obs->data.size(), want.obs.size() * 4);
    EXPECT_EQ(std::memcmp(obs->data.data(), want.obs.data(), obs->data.size()), 0) << "batch " << b;
    EXPECT_EQ(std::memcmp(action->data.data(), want.action.data(), action->data.size()), 0) << "batch " << b;
    EXPECT_EQ(std::memcmp(reward->data.data(), want.reward.data(), reward->data.size()), 0) << "batch " << b;
    for (uint64_t k : got.keys) EXPECT_EQ(shard_of_key(k), 0u);
  }
  EXPECT_FALSE(sampler.next(&got, 300));  // all consumed
  sampler.stop();
  EXPECT_EQ(table_info(endpoints[0], "main", 5000)[0].size, 0u);
}

TEST_F(ReplayClientTest, PrioritizedSamplingAcrossThreeShardsMatchesGlobalDistribution) {
  auto endpoints = start_shards(3, "sampler: prioritized\n      priority_exponent: 1.0\n      max_size: 1000");
  // Static priorities, different per shard so the shards' weights differ (55, 30, 42.5).
  std::map<uint64_t, double> priority;  // global key -> priority
  const std::vector<std::vector<double>> prios = {
      {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {2, 4, 6, 8, 10}, {0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6, 3.5}};
  double total = 0;
  for (int s = 0; s < 3; ++s) {
    ReplayWriter w(writer_options(endpoints, s, "chi-writer-" + std::to_string(s)));
    const auto n = static_cast<uint32_t>(prios[s].size());
    Items items(s, n);
    w.append(items.views, n, prios[s].data());
    w.flush(10000);
    auto keys = w.take_acked_keys();
    ASSERT_EQ(keys.size(), n);
    for (uint32_t i = 0; i < n; ++i) {
      EXPECT_EQ(shard_of_key(keys[i]), static_cast<uint32_t>(s));
      priority[keys[i]] = prios[s][i];
      total += prios[s][i];
    }
  }
  for (int s = 0; s < 3; ++s) {
    double mass = 0;
    for (double p : prios[s]) mass += p;
    EXPECT_NEAR(table_info(endpoints[s], "main", 5000)[0].priority_mass, mass, 1e-9);
  }

  ReplaySamplerOptions so;
  so.endpoints = endpoints;
  so.batch_size = 128;
  so.seed = 2024;
  ReplaySampler sampler(so);
  std::map<uint64_t, uint64_t> counts;
  SampledBatch b;
  const int kBatches = 300;
  for (int i = 0; i < kBatches; ++i) {
    ASSERT_TRUE(sampler.next(&b, 10000));
    ASSERT_EQ(b.size(), 128u);
    EXPECT_NEAR(b.total_weight, total, 1e-9);
    EXPECT_EQ(b.total_items, priority.size());
    for (size_t r = 0; r < b.size(); ++r) {
      auto it = priority.find(b.keys[r]);
      ASSERT_NE(it, priority.end()) << "unknown key " << b.keys[r];
      // The reported probability is p_i^alpha / (sum over all shards).
      EXPECT_NEAR(b.probabilities[r], it->second / total, 1e-12 + 1e-9 * it->second / total);
      ++counts[b.keys[r]];
    }
  }
  std::vector<uint64_t> observed;
  std::vector<double> expected;
  for (auto& [key, p] : priority) {
    observed.push_back(counts[key]);
    expected.push_back(p / total);
  }
  auto r = orchard::testing::chi_square_test(observed, expected);
  EXPECT_GT(r.p_value, 1e-4) << "chi-square " << r.statistic << " with " << r.df << " degrees of freedom";
  auto st = sampler.stats();
  ASSERT_EQ(st.items_per_shard.size(), 3u);
  // Shard shares follow the shard weights too.
  auto rs = orchard::testing::chi_square_test(st.items_per_shard, {55.0 / total, 30.0 / total, 42.5 / total});
  EXPECT_GT(rs.p_value, 1e-4) << "per-shard chi-square " << rs.statistic;
}

TEST_F(ReplayClientTest, ImportanceWeightsFollowTheFormula) {
  auto endpoints = start_shards(2, "sampler: prioritized\n      priority_exponent: 1.0");
  std::map<uint64_t, double> priority;
  double total = 0;
  for (int s = 0; s < 2; ++s) {
    ReplayWriter w(writer_options(endpoints, s, "iw-writer-" + std::to_string(s)));
    std::vector<double> p = {1.0 + s, 3.0, 0.25, 8.0 - s};
    Items items(s, 4);
    w.append(items.views, 4, p.data());
    w.flush(10000);
    auto keys = w.take_acked_keys();
    for (size_t i = 0; i < keys.size(); ++i) {
      priority[keys[i]] = p[i];
      total += p[i];
    }
  }
  ReplaySamplerOptions so;
  so.endpoints = endpoints;
  so.batch_size = 32;
  so.beta = 0.7;
  ReplaySampler sampler(so);
  SampledBatch b;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(sampler.next(&b, 10000));
    const double N = 8;
    double max_w = 0;
    for (uint64_t k : b.keys) max_w = std::max(max_w, std::pow(N * priority.at(k) / total, -0.7));
    for (size_t r = 0; r < b.size(); ++r) {
      double want = std::pow(N * priority.at(b.keys[r]) / total, -0.7) / max_w;
      EXPECT_NEAR(b.weights[r], want, 1e-9) << "key " << b.keys[r];
    }
  }
}

TEST_F(ReplayClientTest, PriorityUpdatesAreRoutedToTheOwningShard) {
  auto endpoints = start_shards(2, "sampler: prioritized\n      priority_exponent: 1.0");
  std::vector<std::vector<uint64_t>> keys(2);
  for (int s = 0; s < 2; ++s) {
    ReplayWriter w(writer_options(endpoints, s, "upd-writer-" + std::to_string(s)));
    std::vector<double> p(4, 1.0);
    Items items(s, 4);
    w.append(items.views, 4, p.data());
    w.flush(10000);
    keys[s] = w.take_acked_keys();
  }
  ReplaySamplerOptions so;
  so.endpoints = endpoints;
  so.batch_size = 16;
  so.info_refresh_ms = 100;
  ReplaySampler sampler(so);
  SampledBatch b;
  ASSERT_TRUE(sampler.next(&b, 10000));
  EXPECT_NEAR(b.total_weight, 8.0, 1e-12);

  const uint64_t hot = keys[1][2];
  const uint64_t gone = encode_global_key(0, local_key_of(keys[0][0]) + 100000);  // never inserted
  auto r = sampler.update_priorities({hot, gone}, {100.0, 5.0});
  EXPECT_EQ(r.updated, 1u);
  EXPECT_EQ(r.unknown_keys, 1u);
  EXPECT_NEAR(table_info(endpoints[1], "main", 5000)[0].priority_mass, 103.0, 1e-9);
  EXPECT_NEAR(table_info(endpoints[0], "main", 5000)[0].priority_mass, 4.0, 1e-9);

  // Batches drawn after the update report the new global probabilities.
  bool updated_seen = false;
  uint64_t hot_count = 0, rows = 0;
  auto until = core::Deadline::after_ms(10000);
  while (!until.expired() && rows < 2000) {
    ASSERT_TRUE(sampler.next(&b, 10000));
    if (std::abs(b.total_weight - 107.0) > 1e-9) continue;  // prefetched before the update
    updated_seen = true;
    for (size_t i = 0; i < b.size(); ++i) {
      ++rows;
      if (b.keys[i] == hot) {
        ++hot_count;
        EXPECT_NEAR(b.probabilities[i], 100.0 / 107.0, 1e-12);
      } else {
        EXPECT_NEAR(b.probabilities[i], 1.0 / 107.0, 1e-12);
      }
    }
  }
  EXPECT_TRUE(updated_seen);
  ASSERT_GT(rows, 0u);
  EXPECT_NEAR(static_cast<double>(hot_count) / static_cast<double>(rows), 100.0 / 107.0, 0.03);
}

TEST_F(ReplayClientTest, ConcurrentWritersAndSamplerLoseNothing) {
  auto endpoints = start_shards(2, "sampler: prioritized\n      priority_exponent: 0.6\n      max_size: 100000");
  const int kWriters = 4, kBatches = 40;
  const uint32_t kItems = 16;
  std::vector<std::vector<uint64_t>> keys(kWriters);
  std::vector<std::string> errors(kWriters);
  std::atomic<bool> writing{true};
  std::set<uint64_t> sampled;
  std::string sampler_error;
  std::thread sampler_thread([&] {
    try {
      ReplaySamplerOptions so;
      so.endpoints = endpoints;
      so.batch_size = 32;
      so.timeout_ms = 100;
      ReplaySampler sampler(so);
      SampledBatch b;
      while (writing) {
        if (sampler.next(&b, 200)) sampled.insert(b.keys.begin(), b.keys.end());
      }
    } catch (const std::exception& e) {
      sampler_error = e.what();
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      try {
        auto o = writer_options(endpoints, -1, "conc-writer-" + std::to_string(t));
        o.actor_id = static_cast<uint64_t>(t);  // shard t % 2
        o.credits = 4;
        ReplayWriter w(o);
        for (int b = 0; b < kBatches; ++b) {
          Items items(static_cast<uint32_t>(t * 1000 + b), kItems);
          std::vector<double> p(kItems, 1.0 + b % 5);
          w.append(items.views, kItems, p.data());
          auto k = w.take_acked_keys();
          keys[t].insert(keys[t].end(), k.begin(), k.end());
        }
        w.flush(30000);
        auto k = w.take_acked_keys();
        keys[t].insert(keys[t].end(), k.begin(), k.end());
        if (w.stats().batches_acked != static_cast<uint64_t>(kBatches)) errors[t] = "not every batch acked";
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    });
  }
  for (auto& w : writers) w.join();
  writing = false;
  sampler_thread.join();
  for (int t = 0; t < kWriters; ++t) EXPECT_EQ(errors[t], "") << "writer " << t;
  EXPECT_EQ(sampler_error, "");

  std::set<uint64_t> all;
  for (int t = 0; t < kWriters; ++t) {
    EXPECT_EQ(keys[t].size(), static_cast<size_t>(kBatches) * kItems) << "writer " << t;
    for (uint64_t k : keys[t]) {
      EXPECT_EQ(shard_of_key(k), static_cast<uint32_t>(t % 2));
      all.insert(k);
    }
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kWriters * kBatches) * kItems) << "keys are unique";
  uint64_t size = 0, inserts = 0;
  for (const auto& e : endpoints) {
    auto info = table_info(e, "main", 5000);
    size += info[0].size;
    inserts += info[0].inserts;
  }
  EXPECT_EQ(size, all.size());
  EXPECT_EQ(inserts, all.size());
  for (uint64_t k : sampled) EXPECT_TRUE(all.count(k)) << "sampled a key nobody inserted: " << k;
  EXPECT_FALSE(sampled.empty());
}

TEST_F(ReplayClientTest, WriterResendsAcrossAShardKilledAndRestartedOnTheSamePort) {
  auto endpoints = start_shards(1, "sampler: fifo\n      max_times_sampled: 1\n      max_size: 100000",
                                /*checkpoints=*/true);
  const uint32_t kItems = 8;
  auto o = writer_options(endpoints, 0, "restart-writer");
  o.ack_timeout_ms = 1000;
  o.insert_timeout_ms = 200;
  o.credits = 4;
  ReplayWriter w(o);
  for (uint32_t b = 0; b < 10; ++b) {
    Items items(b, kItems);
    w.append(items.views, kItems);
  }
  w.flush(10000);
  // Everything acked so far is made durable, then the shard dies without warning.
  auto ck = checkpoint(endpoints[0], "", 10000);
  EXPECT_EQ(ck.items, 10u * kItems);
  shards_[0]->kill();

  // Batches 10..29 are appended while the shard is down; it comes back on the same port.
  std::string writer_error;
  std::thread writer([&] {
    try {
      for (uint32_t b = 10; b < 30; ++b) {
        Items items(b, kItems);
        w.append(items.views, kItems);
      }
      w.flush(60000);
    } catch (const std::exception& e) {
      writer_error = e.what();
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  shards_[0]->start(/*same_port=*/true);
  writer.join();
  ASSERT_EQ(writer_error, "");
  auto st = w.stats();
  EXPECT_EQ(st.batches_acked, 30u);
  EXPECT_GE(st.reconnects, 1u);
  EXPECT_GE(st.batches_resent, 1u);

  // Read everything back: each item of each batch exactly once (the restored writer state
  // drops duplicates of resent batches).
  auto info = table_info(endpoints[0], "main", 5000);
  EXPECT_EQ(info[0].size, 30u * kItems);
  ReplaySamplerOptions so;
  so.endpoints = endpoints;
  so.batch_size = kItems;
  so.timeout_ms = 200;
  ReplaySampler sampler(so);
  std::map<int64_t, int> seen;  // action = batch * 1000 + item
  SampledBatch b;
  for (uint32_t i = 0; i < 30; ++i) {
    ASSERT_TRUE(sampler.next(&b, 10000)) << "read " << i;
    const auto* action = b.find("action");
    for (size_t r = 0; r < b.size(); ++r) ++seen[action->as<int64_t>()[r]];
  }
  for (uint32_t batch = 0; batch < 30; ++batch) {
    for (uint32_t i = 0; i < kItems; ++i) {
      EXPECT_EQ(seen[static_cast<int64_t>(batch) * 1000 + i], 1) << "batch " << batch << " item " << i;
    }
  }
}

TEST_F(ReplayClientTest, SamplerTimesOutBelowMinSizeToSampleInsteadOfHanging) {
  auto endpoints = start_shards(1, "sampler: uniform\n      min_size_to_sample: 100");
  ReplayWriter w(writer_options(endpoints, 0, "min-writer"));
  Items items(0, 10);
  w.append(items.views, 10);
  w.flush(10000);
  ReplaySamplerOptions so;
  so.endpoints = endpoints;
  so.batch_size = 4;
  so.timeout_ms = 100;
  auto sampler = std::make_unique<ReplaySampler>(so);
  SampledBatch b;
  core::Stopwatch sw;
  EXPECT_FALSE(sampler->next(&b, 500));
  EXPECT_GE(sw.elapsed_s(), 0.45);
  EXPECT_LT(sw.elapsed_s(), 3.0);
  EXPECT_GT(sampler->stats().deadline_retries, 0u);
  sw.restart();
  sampler.reset();  // stops promptly while a request is parked in the rate limiter
  EXPECT_LT(sw.elapsed_s(), 2.0);
}

TEST_F(ReplayClientTest, FatalErrorsSurfaceWithTheServersMessage) {
  auto endpoints = start_shards(1, "sampler: uniform");
  {
    auto o = writer_options(endpoints, 0, "err-writer-table");
    o.table = "nope";
    ReplayWriter w(o);
    Items items(0, 2);
    w.append(items.views, 2);
    try {
      w.flush(10000);
      FAIL() << "no error for an unknown table";
    } catch (const ReplayError& e) {
      EXPECT_EQ(e.code(), v1::NOT_FOUND);
      EXPECT_EQ(e.endpoint(), endpoints[0]);
      EXPECT_NE(e.server_message().find("unknown table 'nope'"), std::string::npos) << e.what();
    }
  }
  {
    ReplayWriter w(writer_options(endpoints, 0, "err-writer-sig"));
    std::vector<float> obs(2 * 3), reward(2);
    std::vector<int64_t> action(2);
    std::vector<TensorView> cols = {{"obs", DType::kFloat32, Shape{2, 3}, obs.data()},
                                    {"action", DType::kInt64, Shape{2}, action.data()},
                                    {"reward", DType::kFloat32, Shape{2}, reward.data()}};
    w.append(cols, 2);
    try {
      w.flush(10000);
      FAIL() << "no error for a wrong signature";
    } catch (const ReplayError& e) {
      EXPECT_EQ(e.code(), v1::SIGNATURE_MISMATCH);
      EXPECT_NE(e.server_message().find("obs"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(endpoints[0]), std::string::npos);
    }
  }
  {
    ReplaySamplerOptions so;
    so.endpoints = endpoints;
    so.table = "nope";
    ReplaySampler sampler(so);
    SampledBatch b;
    try {
      sampler.next(&b, 10000);
      FAIL() << "no error for sampling an unknown table";
    } catch (const ReplayError& e) {
      EXPECT_EQ(e.code(), v1::NOT_FOUND);
      EXPECT_EQ(e.endpoint(), endpoints[0]);
      EXPECT_NE(e.server_message().find("unknown table 'nope'"), std::string::npos) << e.what();
    }
  }
  try {
    table_info(endpoints[0], "nope", 5000);
    FAIL();
  } catch (const ReplayError& e) {
    EXPECT_EQ(e.code(), v1::NOT_FOUND);
  }
  auto info = shard_info(endpoints[0], "", 5000);
  EXPECT_EQ(info.shard, "replay-0");
  EXPECT_GE(info.rejected_messages, 2u);
  ASSERT_EQ(info.tables.size(), 1u);
  ASSERT_EQ(info.tables[0].signature.size(), 3u);
  EXPECT_EQ(info.tables[0].signature[0].to_string(), "obs float32[4]");
}
