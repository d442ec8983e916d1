// Replay table: options parsing, samplers, removers, max_times_sampled, the rate limiter across
// threads, priority updates and checkpoints.
#include "orchard/replay/table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "orchard/core/config.h"
#include "orchard/core/error.h"

using orchard::ConfigError;
using orchard::core::ConfigNode;
using orchard::core::Deadline;
using orchard::core::DType;
using orchard::core::TensorView;
using namespace orchard::replay;

namespace {

// Items of the test tables: obs float32[2] = {id, -id} and id int64 (a scalar), where id is the
// order in which the test inserted the item (0, 1, ...).
TableOptions options(Sampler sampler = Sampler::kUniform, Remover remover = Remover::kFifo, uint64_t max_size = 100) {
  TableOptions o;
  o.name = "test";
  o.signature = {{"obs", DType::kFloat32, {2}}, {"id", DType::kInt64, {}}};
  o.sampler = sampler;
  o.remover = remover;
  o.max_size = max_size;
  return o;
}

// Inserts `n` items with ids first_id, first_id + 1, ...; priorities may be null.
Status insert_items(Table& table, int64_t first_id, size_t n, const double* priorities = nullptr,
                    Deadline deadline = Deadline::never(), std::vector<uint64_t>* keys = nullptr,
                    size_t* inserted = nullptr) {
  std::vector<float> obs;
  std::vector<int64_t> ids;
  for (size_t i = 0; i < n; ++i) {
    const int64_t id = first_id + static_cast<int64_t>(i);
    obs.push_back(static_cast<float>(id));
    obs.push_back(-static_cast<float>(id));
    ids.push_back(id);
  }
  // Shapes are validated by the caller in production (against the signature); the table only
  // reads the bytes, so the views carry name, dtype and data.
  std::vector<TensorView> columns(2);
  columns[0].name = "obs";
  columns[0].dtype = DType::kFloat32;
  columns[0].data = obs.data();
  columns[1].name = "id";
  columns[1].dtype = DType::kInt64;
  columns[1].data = ids.data();
  std::vector<uint64_t> local_keys;
  size_t local_inserted = 0;
  return table.insert(columns, n, priorities, deadline, keys ? keys : &local_keys,
                      inserted ? inserted : &local_inserted);
}

int64_t id_of(const SampleBatch& b, size_t i) {
  int64_t id;
  std::memcpy(&id, b.columns[1].data() + i * sizeof(int64_t), sizeof(id));
  return id;
}

std::pair<float, float> obs_of(const SampleBatch& b, size_t i) {
  float o[2];
  std::memcpy(o, b.columns[0].data() + i * 2 * sizeof(float), sizeof(o));
  return {o[0], o[1]};
}

// Every sampled row must be the item it claims to be: with ids inserted from 0, key = id + 1.
void expect_rows_consistent(const SampleBatch& b) {
  for (size_t i = 0; i < b.keys.size(); ++i) {
    const int64_t id = id_of(b, i);
    EXPECT_EQ(b.keys[i], static_cast<uint64_t>(id + 1));
    EXPECT_EQ(obs_of(b, i), std::make_pair(static_cast<float>(id), -static_cast<float>(id)));
  }
}

std::vector<uint64_t> sample_keys(Table& table, size_t batch) {
  SampleBatch b;
  EXPECT_EQ(table.sample(batch, Deadline::never(), &b), Status::kOk);
  return b.keys;
}

// Whether `key` is in the table, probed by re-setting its (known) priority.
bool present(Table& table, uint64_t key, double priority = 1.0) {
  return table.update_priorities(&key, &priority, 1) == 1;
}

template <class Fn>
std::string config_error(Fn fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError";
  return "";
}

// Waits (up to 5 s) until pred() holds.
template <class Pred>
bool eventually(Pred pred) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

// Regularised upper incomplete gamma Q(a, x) (series below a + 1, Lentz's continued fraction
// above), for the chi-square tail: P(X > x) = Q(df / 2, x / 2).
double gamma_q(double a, double x) {
  if (x <= 0) return 1.0;
  const double log_prefix = -x + a * std::log(x) - std::lgamma(a);
  if (x < a + 1) {
    double term = 1.0 / a, sum = term;
    for (int n = 1; n < 1000 && std::fabs(term) > std::fabs(sum) * 1e-16; ++n) {
      term *= x / (a + n);
      sum += term;
    }
    return 1.0 - sum * std::exp(log_prefix);
  }
  constexpr double kTiny = 1e-300;
  double b = x + 1 - a, c = 1 / kTiny, d = 1 / b, h = d;
  for (int i = 1; i < 1000; ++i) {
    const double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = b + an / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    const double delta = d * c;
    h *= delta;
    if (std::fabs(delta - 1) < 1e-16) break;
  }
  return std::exp(log_prefix) * h;
}

// The x with P(chi-square(df) > x) = significance, by bisection.
double chi_square_critical(int df, double significance) {
  double lo = 0, hi = df + 100 * std::sqrt(2.0 * df) + 100;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (gamma_q(df / 2.0, mid / 2.0) > significance ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Options

TEST(TableOptions, ParsesEveryKey) {
  auto spec = ConfigNode::load_string(R"(
replay:
  tables:
    - name: per
      signature:
        - {name: obs, dtype: float32, shape: [4, 3]}
        - {name: action, dtype: i64}
        - {name: done, dtype: bool, shape: []}
      sampler: prioritized
      priority_exponent: 0.7
      remover: lowest_priority
      max_size: 1e5
      max_times_sampled: 8
      min_size_to_sample: 1000
      samples_per_insert: 4
      error_buffer: 400
)", "run.yaml");
  const TableOptions o = TableOptions::parse(spec["replay"]["tables"].elements()[0]);
  EXPECT_EQ(o.name, "per");
  ASSERT_EQ(o.signature.size(), 3u);
  EXPECT_EQ(o.signature[0].name, "obs");
  EXPECT_EQ(o.signature[0].dtype, DType::kFloat32);
  EXPECT_EQ(o.signature[0].shape, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(o.signature[1].dtype, DType::kInt64);
  EXPECT_TRUE(o.signature[1].shape.empty());
  EXPECT_EQ(o.signature[2].dtype, DType::kBool);
  EXPECT_EQ(o.sampler, Sampler::kPrioritized);
  EXPECT_DOUBLE_EQ(o.priority_exponent, 0.7);
  EXPECT_EQ(o.remover, Remover::kLowestPriority);
  EXPECT_EQ(o.max_size, 100'000u);
  EXPECT_EQ(o.max_times_sampled, 8u);
  EXPECT_EQ(o.rate_limiter.min_size_to_sample, 1000u);
  EXPECT_DOUBLE_EQ(o.rate_limiter.samples_per_insert, 4);
  EXPECT_DOUBLE_EQ(o.rate_limiter.error_buffer, 400);
  EXPECT_DOUBLE_EQ(o.rate_limiter.min_diff(), 4 * 1000 - 400);
  EXPECT_DOUBLE_EQ(o.rate_limiter.max_diff(), 4 * 1000 + 400);
}

TEST(TableOptions, DefaultsNeedOnlyASignature) {
  auto spec = ConfigNode::load_string("signature: [{name: x, dtype: float32, shape: [1]}]\n");
  const TableOptions o = TableOptions::parse(spec);
  const TableOptions d;
  EXPECT_EQ(o.name, "main");
  EXPECT_EQ(o.sampler, Sampler::kUniform);
  EXPECT_EQ(o.remover, Remover::kFifo);
  EXPECT_EQ(o.max_size, d.max_size);
  EXPECT_EQ(o.max_times_sampled, 0u);
  EXPECT_DOUBLE_EQ(o.priority_exponent, 0.6);
  EXPECT_EQ(o.rate_limiter.min_size_to_sample, 1u);
  EXPECT_EQ(o.rate_limiter.samples_per_insert, 0);
  EXPECT_EQ(o.rate_limiter.error_buffer, 100);
  EXPECT_EQ(o.rate_limiter.min_diff(), -INFINITY);  // no ratio: no limits
  EXPECT_EQ(o.rate_limiter.max_diff(), INFINITY);
}

TEST(TableOptions, RejectsBadTablesNamingTheKey) {
  const std::string sig = "signature: [{name: x, dtype: float32, shape: [4]}]\n";
  struct Case {
    std::string yaml, key, words;
  };
  const std::vector<Case> cases = {
      {sig + "sampelr: fifo\n", "sampelr", "did you mean 'sampler'"},
      {sig + "sampler: prioritised\n", "replay.tables[0].sampler", "prioritized"},
      {sig + "remover: oldest\n", "replay.tables[0].remover", "lowest_priority"},
      {"name: t\n", "replay.tables[0].signature", "is required"},
      {"signature: []\n", "replay.tables[0].signature", "at least one column"},
      {"signature: [{name: x, dtype: flaot32, shape: [4]}]\n", "replay.tables[0].signature[0].dtype", "float32"},
      {"signature: [{name: x, dtype: float32, shape: [-1, 4]}]\n", "replay.tables[0].signature[0].shape", "-1"},
      {"signature: [{name: x, dtype: float32, shap: [4]}]\n", "replay.tables[0].signature[0].shap", "did you mean 'shape'"},
      {"signature: [{name: x, dtype: float32}, {name: x, dtype: int64}]\n", "replay.tables[0].signature[1].name",
       "duplicate"},
      {"signature: [{name: '', dtype: float32}]\n", "replay.tables[0].signature[0].name", "empty"},
      {sig + "name: ''\n", "replay.tables[0].name", "empty"},
      {sig + "max_size: 0\n", "replay.tables[0].max_size", "[1, 1000000000]"},
      {sig + "priority_exponent: 11\n", "replay.tables[0].priority_exponent", "[0, 10]"},
      {sig + "max_size: 10\nmin_size_to_sample: 11\n", "replay.tables[0].min_size_to_sample", "max_size"},
      {sig + "samples_per_insert: -1\n", "replay.tables[0].samples_per_insert", "-1"},
      {sig + "error_buffer: -1\n", "replay.tables[0].error_buffer", "-1"},
      {sig + "samples_per_insert: 8\nerror_buffer: 4\n", "replay.tables[0].error_buffer", "block"},
      {sig + "samples_per_insert: 0.5\nerror_buffer: 0.5\n", "replay.tables[0].error_buffer", "max(1, samples_per_insert)"},
      {sig + "max_times_sampled: many\n", "replay.tables[0].max_times_sampled", "integer"},
  };
  for (const auto& c : cases) {
    // Indent the table under replay.tables[0] so the error names the full key path.
    std::string indented;
    std::istringstream lines(c.yaml);
    for (std::string line; std::getline(lines, line);) indented += "      " + line + "\n";
    indented[4] = '-';
    const std::string doc = "replay:\n  tables:\n" + indented;
    const std::string msg = config_error([&] {
      auto spec = ConfigNode::load_string(doc, "run.yaml");
      TableOptions::parse(spec["replay"]["tables"].elements()[0]);
    });
    EXPECT_NE(msg.find(c.key), std::string::npos) << "yaml:\n" << doc << "error: " << msg;
    EXPECT_NE(msg.find(c.words), std::string::npos) << "yaml:\n" << doc << "error: " << msg;
    EXPECT_EQ(msg.rfind("run.yaml", 0), 0u) << msg;
  }
}

TEST(TableOptions, ErrorBufferEqualToMaxOfOneAndRatioIsAccepted) {
  auto spec = ConfigNode::load_string(
      "signature: [{name: x, dtype: uint8}]\nsamples_per_insert: 0.25\nerror_buffer: 1\n");
  EXPECT_NO_THROW(TableOptions::parse(spec));
  spec = ConfigNode::load_string("signature: [{name: x, dtype: uint8}]\nsamples_per_insert: 32\nerror_buffer: 32\n");
  EXPECT_NO_THROW(TableOptions::parse(spec));
}

TEST(TableOptions, DescribeIsOneLineWithEverySetting) {
  TableOptions o = options(Sampler::kPrioritized, Remover::kLowestPriority, 500);
  o.max_times_sampled = 3;
  o.rate_limiter = {10, 2, 20};
  const std::string d = o.describe();
  EXPECT_EQ(d.find('\n'), std::string::npos);
  for (const char* part : {"'test'", "obs float32[2]", "id int64[]", "prioritized", "0.6", "lowest_priority", "500",
                           "max_times_sampled 3", "min_size_to_sample 10", "samples_per_insert 2", "error_buffer 20"})
    EXPECT_NE(d.find(part), std::string::npos) << part << " not in: " << d;
}

TEST(TableOptions, NamesOfSamplersAndRemovers) {
  EXPECT_STREQ(sampler_name(Sampler::kUniform), "uniform");
  EXPECT_STREQ(sampler_name(Sampler::kPrioritized), "prioritized");
  EXPECT_STREQ(sampler_name(Sampler::kFifo), "fifo");
  EXPECT_STREQ(sampler_name(Sampler::kLifo), "lifo");
  EXPECT_STREQ(remover_name(Remover::kFifo), "fifo");
  EXPECT_STREQ(remover_name(Remover::kLifo), "lifo");
  EXPECT_STREQ(remover_name(Remover::kLowestPriority), "lowest_priority");
}

TEST(Table, ConstructorRejectsInvalidOptions) {
  TableOptions o = options();
  o.signature[1].shape = {-1};
  EXPECT_THROW(Table{o}, std::invalid_argument);
  o = options();
  o.rate_limiter = {1, 4, 2};  // error_buffer below samples_per_insert
  EXPECT_THROW(Table{o}, std::invalid_argument);
  o = options();
  o.signature[1].name = "obs";
  EXPECT_THROW(Table{o}, std::invalid_argument);
  EXPECT_NO_THROW(Table{options()});
}

// ------------------------------------------------------------------------------------------------
// Inserting and sampling

TEST(Table, InsertAssignsIncreasingKeysFromOneAndSamplesReturnTheItemsBytes) {
  Table table(options());
  std::vector<uint64_t> keys;
  size_t inserted = 0;
  ASSERT_EQ(insert_items(table, 0, 10, nullptr, Deadline::never(), &keys, &inserted), Status::kOk);
  EXPECT_EQ(inserted, 10u);
  ASSERT_EQ(keys.size(), 10u);
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(keys[i], i + 1);
  SampleBatch b;
  for (int round = 0; round < 20; ++round) {
    ASSERT_EQ(table.sample(16, Deadline::never(), &b), Status::kOk);
    ASSERT_EQ(b.keys.size(), 16u);
    ASSERT_EQ(b.columns.size(), 2u);
    EXPECT_EQ(b.columns[0].size(), 16 * 2 * sizeof(float));
    EXPECT_EQ(b.columns[1].size(), 16 * sizeof(int64_t));
    expect_rows_consistent(b);
    EXPECT_EQ(b.table_size, 10u);
  }
  const TableStats s = table.stats();
  EXPECT_EQ(s.size, 10u);
  EXPECT_EQ(s.max_size, 100u);
  EXPECT_EQ(s.inserts, 10u);
  EXPECT_EQ(s.samples, 20u * 16);
}

TEST(Table, SampleBufferIsReusedWithoutShrinkingItsCapacity) {
  Table table(options());
  ASSERT_EQ(insert_items(table, 0, 50), Status::kOk);
  SampleBatch b;
  ASSERT_EQ(table.sample(64, Deadline::never(), &b), Status::kOk);
  const uint8_t* obs = b.columns[0].data();
  const uint64_t* keys = b.keys.data();
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(table.sample(i % 2 ? 64 : 32, Deadline::never(), &b), Status::kOk);
    EXPECT_EQ(b.columns[0].data(), obs);  // no reallocation
    EXPECT_EQ(b.keys.data(), keys);
    expect_rows_consistent(b);
  }
}

TEST(Table, UniformSamplerHasProbabilityOneOverSizeAndCoversEveryItem) {
  Table table(options(Sampler::kUniform));
  ASSERT_EQ(insert_items(table, 0, 20), Status::kOk);
  std::map<uint64_t, int> count;
  SampleBatch b;
  for (int round = 0; round < 200; ++round) {
    ASSERT_EQ(table.sample(100, Deadline::never(), &b), Status::kOk);
    for (size_t i = 0; i < b.keys.size(); ++i) {
      EXPECT_DOUBLE_EQ(b.probabilities[i], 1.0 / 20);
      ++count[b.keys[i]];
    }
  }
  ASSERT_EQ(count.size(), 20u);
  for (const auto& [key, n] : count) EXPECT_NEAR(n, 1000, 200) << key;  // 20k draws, sd ~31
}

TEST(Table, PrioritizedSamplingFitsPriorityToTheAlphaOverTheSum) {
  constexpr int kItems = 50;
  constexpr int kDraws = 250'000;
  TableOptions o = options(Sampler::kPrioritized);
  o.priority_exponent = 0.7;
  Table table(o);
  std::vector<double> priority(kItems);
  for (int i = 0; i < kItems; ++i) priority[i] = 0.05 + 0.4 * i + (i % 7) * 0.9;  // varied, 0.05 .. 23
  ASSERT_EQ(insert_items(table, 0, kItems, priority.data()), Status::kOk);

  double mass = 0;
  for (double p : priority) mass += std::pow(p, o.priority_exponent);
  std::vector<double> expected_probability(kItems);
  for (int i = 0; i < kItems; ++i) expected_probability[i] = std::pow(priority[i], o.priority_exponent) / mass;

  std::vector<int64_t> count(kItems, 0);
  SampleBatch b;
  for (int round = 0; round < kDraws / 250; ++round) {
    ASSERT_EQ(table.sample(250, Deadline::never(), &b), Status::kOk);
    EXPECT_NEAR(b.priority_mass, mass, 1e-9 * mass);
    for (size_t i = 0; i < b.keys.size(); ++i) {
      const size_t item = b.keys[i] - 1;
      ASSERT_LT(item, static_cast<size_t>(kItems));
      // The reported probability is the formula's, to rounding.
      ASSERT_NEAR(b.probabilities[i], expected_probability[item], 1e-12);
      ++count[item];
    }
  }
  double chi2 = 0;
  for (int i = 0; i < kItems; ++i) {
    const double e = kDraws * expected_probability[i];
    ASSERT_GT(e, 5);  // the test's own validity condition
    chi2 += (count[i] - e) * (count[i] - e) / e;
  }
  const double critical = chi_square_critical(kItems - 1, 1e-4);
  EXPECT_GT(critical, 90);  // about 94.4 for 49 degrees of freedom
  EXPECT_LT(critical, 100);
  EXPECT_LT(chi2, critical) << "chi-square " << chi2 << " with " << kItems - 1 << " degrees of freedom";
  EXPECT_NEAR(table.stats().priority_mass, mass, 1e-9 * mass);
}

TEST(Table, ChiSquareCriticalValueMatchesClosedFormForTwoDegreesOfFreedom) {
  // For df = 2 the tail is exp(-x / 2), so the critical value is -2 ln(significance).
  EXPECT_NEAR(chi_square_critical(2, 1e-4), -2 * std::log(1e-4), 1e-6);
  EXPECT_NEAR(chi_square_critical(2, 0.05), -2 * std::log(0.05), 1e-6);
  EXPECT_NEAR(chi_square_critical(1, 0.05), 3.841458820694124, 1e-6);  // 1.96^2
}

TEST(Table, ZeroPriorityItemsAreNeverSampledAndAllZeroFallsBackToUniform) {
  Table table(options(Sampler::kPrioritized));
  const double priorities[] = {0.0, 2.0, 0.0, 1.0};
  ASSERT_EQ(insert_items(table, 0, 4, priorities), Status::kOk);
  SampleBatch b;
  for (int round = 0; round < 100; ++round) {
    ASSERT_EQ(table.sample(50, Deadline::never(), &b), Status::kOk);
    for (uint64_t key : b.keys) EXPECT_TRUE(key == 2 || key == 4) << key;
  }
  const uint64_t keys[] = {2, 4};
  const double zeros[] = {0.0, 0.0};
  ASSERT_EQ(table.update_priorities(keys, zeros, 2), 2u);
  std::set<uint64_t> seen;
  for (int round = 0; round < 20; ++round) {
    ASSERT_EQ(table.sample(50, Deadline::never(), &b), Status::kOk);
    for (size_t i = 0; i < b.keys.size(); ++i) {
      seen.insert(b.keys[i]);
      EXPECT_DOUBLE_EQ(b.probabilities[i], 0.25);
    }
  }
  EXPECT_EQ(seen.size(), 4u);
}

TEST(Table, ItemsWithoutPriorityGetTheLargestPrioritySoFar) {
  Table table(options(Sampler::kPrioritized));
  ASSERT_EQ(insert_items(table, 0, 1), Status::kOk);  // empty table: 1.0
  EXPECT_EQ(table.stats().max_priority, 1.0);
  const double p = 3.0;
  ASSERT_EQ(insert_items(table, 1, 1, &p), Status::kOk);
  ASSERT_EQ(insert_items(table, 2, 1), Status::kOk);  // gets 3.0
  const TableStats s = table.stats();
  EXPECT_EQ(s.max_priority, 3.0);
  EXPECT_EQ(s.min_priority, 1.0);
  EXPECT_NEAR(s.priority_mass, 1.0 + 2 * std::pow(3.0, 0.6), 1e-12);
  const uint64_t key = 1;
  const double higher = 8.0;
  ASSERT_EQ(table.update_priorities(&key, &higher, 1), 1u);  // updates count too
  EXPECT_EQ(table.stats().max_priority, 8.0);
}

TEST(Table, FifoSamplerReturnsTheOldestDistinctItemsInOrder) {
  Table table(options(Sampler::kFifo));
  ASSERT_EQ(insert_items(table, 0, 10), Status::kOk);
  SampleBatch b;
  ASSERT_EQ(table.sample(4, Deadline::never(), &b), Status::kOk);
  EXPECT_EQ(b.keys, (std::vector<uint64_t>{1, 2, 3, 4}));
  expect_rows_consistent(b);
  for (double p : b.probabilities) EXPECT_EQ(p, 1.0);
  // Without max_times_sampled nothing is removed: the same oldest items again.
  ASSERT_EQ(table.sample(3, Deadline::never(), &b), Status::kOk);
  EXPECT_EQ(b.keys, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(b.times_sampled, (std::vector<uint32_t>{2, 2, 2}));
}

TEST(Table, LifoSamplerReturnsTheNewestDistinctItemsInOrder) {
  Table table(options(Sampler::kLifo));
  ASSERT_EQ(insert_items(table, 0, 10), Status::kOk);
  EXPECT_EQ(sample_keys(table, 4), (std::vector<uint64_t>{10, 9, 8, 7}));
  ASSERT_EQ(insert_items(table, 10, 1), Status::kOk);
  EXPECT_EQ(sample_keys(table, 2), (std::vector<uint64_t>{11, 10}));
}

TEST(Table, FifoAndLifoWaitForBatchItems) {
  for (Sampler sampler : {Sampler::kFifo, Sampler::kLifo}) {
    Table table(options(sampler));
    ASSERT_EQ(insert_items(table, 0, 3), Status::kOk);
    SampleBatch b;
    EXPECT_EQ(table.sample(4, Deadline::after_ms(30), &b), Status::kDeadlineExceeded);
    EXPECT_TRUE(b.keys.empty());  // nothing taken, nothing counted
    EXPECT_EQ(table.stats().samples, 0u);
    ASSERT_EQ(insert_items(table, 3, 1), Status::kOk);
    EXPECT_EQ(table.sample(4, Deadline::after_ms(1000), &b), Status::kOk);
    EXPECT_EQ(b.keys.size(), 4u);
    EXPECT_THROW(table.sample(101, Deadline::never(), &b), std::invalid_argument);  // > max_size
  }
}

TEST(Table, FifoQueueWithMaxTimesSampledShowsEachItemKTimes) {
  TableOptions o = options(Sampler::kFifo);
  o.max_times_sampled = 3;  // e.g. PPO epochs
  Table table(o);
  ASSERT_EQ(insert_items(table, 0, 10), Status::kOk);
  std::vector<std::vector<uint64_t>> batches;
  SampleBatch b;
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(table.sample(5, Deadline::never(), &b), Status::kOk);
    expect_rows_consistent(b);
    batches.push_back(b.keys);
    EXPECT_EQ(b.times_sampled, std::vector<uint32_t>(5, static_cast<uint32_t>(i % 3 + 1)));
  }
  const std::vector<uint64_t> first{1, 2, 3, 4, 5}, second{6, 7, 8, 9, 10};
  EXPECT_EQ(batches, (std::vector<std::vector<uint64_t>>{first, first, first, second, second, second}));
  const TableStats s = table.stats();
  EXPECT_EQ(s.size, 0u);
  EXPECT_EQ(s.removed_by_max_times_sampled, 10u);
  EXPECT_EQ(s.samples, 30u);
  EXPECT_EQ(table.sample(1, Deadline::after_ms(10), &b), Status::kDeadlineExceeded);
}

TEST(Table, MaxTimesSampledRemovesItemsEvenInsideOneBatch) {
  TableOptions o = options(Sampler::kUniform);
  o.max_times_sampled = 2;
  Table table(o);
  ASSERT_EQ(insert_items(table, 0, 30), Status::kOk);
  std::map<uint64_t, int> count;
  SampleBatch b;
  while (table.stats().size > 0) {
    ASSERT_EQ(table.sample(1 + count.size() % 7, Deadline::after_ms(1000), &b), Status::kOk);
    for (size_t i = 0; i < b.keys.size(); ++i) {
      ++count[b.keys[i]];
      EXPECT_EQ(b.times_sampled[i], static_cast<uint32_t>(count[b.keys[i]]));
    }
    expect_rows_consistent(b);
    if (table.stats().size < 7) break;
  }
  for (const auto& [key, n] : count) EXPECT_LE(n, 2) << key;
  EXPECT_EQ(table.stats().removed_by_max_times_sampled, table.stats().inserts - table.stats().size);
}

// ------------------------------------------------------------------------------------------------
// Removers

TEST(Table, FifoRemoverEvictsTheOldestItem) {
  Table table(options(Sampler::kUniform, Remover::kFifo, 5));
  ASSERT_EQ(insert_items(table, 0, 5), Status::kOk);
  ASSERT_EQ(insert_items(table, 5, 2), Status::kOk);
  EXPECT_FALSE(present(table, 1));
  EXPECT_FALSE(present(table, 2));
  for (uint64_t k = 3; k <= 7; ++k) EXPECT_TRUE(present(table, k)) << k;
  EXPECT_EQ(table.stats().evictions, 2u);
  EXPECT_EQ(table.stats().size, 5u);
}

TEST(Table, LifoRemoverEvictsTheNewestItem) {
  Table table(options(Sampler::kUniform, Remover::kLifo, 5));
  ASSERT_EQ(insert_items(table, 0, 5), Status::kOk);
  ASSERT_EQ(insert_items(table, 5, 1), Status::kOk);  // evicts 5, then 6 goes in
  EXPECT_FALSE(present(table, 5));
  for (uint64_t k : {1, 2, 3, 4, 6}) EXPECT_TRUE(present(table, k)) << k;
  ASSERT_EQ(insert_items(table, 6, 1), Status::kOk);  // evicts 6
  EXPECT_FALSE(present(table, 6));
  EXPECT_TRUE(present(table, 7));
  EXPECT_EQ(table.stats().evictions, 2u);
}

TEST(Table, LowestPriorityRemoverEvictsTheLowestPriorityAndTheOldestOnTies) {
  Table table(options(Sampler::kPrioritized, Remover::kLowestPriority, 5));
  const double p[] = {3.0, 0.5, 2.0, 0.5, 4.0};  // keys 1..5
  ASSERT_EQ(insert_items(table, 0, 5, p), Status::kOk);
  EXPECT_EQ(table.stats().min_priority, 0.5);
  const double p6 = 1.0;
  ASSERT_EQ(insert_items(table, 5, 1, &p6), Status::kOk);  // evicts key 2 (0.5, older than key 4)
  const std::map<uint64_t, double> now{{1, 3.0}, {3, 2.0}, {4, 0.5}, {5, 4.0}, {6, 1.0}};
  for (const auto& [k, prio] : now) EXPECT_TRUE(present(table, k, prio)) << k;
  EXPECT_FALSE(present(table, 2, 0.5));
  ASSERT_EQ(insert_items(table, 6, 1, &p6), Status::kOk);  // evicts key 4 (0.5)
  EXPECT_FALSE(present(table, 4, 0.5));
  // Priority updates move items: make key 5 the lowest.
  const uint64_t k5 = 5;
  const double low = 0.1;
  ASSERT_EQ(table.update_priorities(&k5, &low, 1), 1u);
  EXPECT_EQ(table.stats().min_priority, 0.1);
  ASSERT_EQ(insert_items(table, 7, 1, &p6), Status::kOk);  // evicts key 5
  EXPECT_FALSE(present(table, 5, 0.1));
  // Ties among 1.0: keys 6, 7, 8 -> 6 goes first.
  const double p_high = 9.0;
  ASSERT_EQ(insert_items(table, 8, 1, &p_high), Status::kOk);
  EXPECT_FALSE(present(table, 6, 1.0));
  EXPECT_TRUE(present(table, 7, 1.0));
  EXPECT_TRUE(present(table, 8, 1.0));
  EXPECT_EQ(table.stats().evictions, 4u);
}

TEST(Table, LowestPriorityRemoverWorksWithAlphaZero) {
  TableOptions o = options(Sampler::kPrioritized, Remover::kLowestPriority, 3);
  o.priority_exponent = 0;  // every positive priority samples alike, but eviction still orders them
  Table table(o);
  const double p[] = {5.0, 1.0, 3.0, 4.0};
  ASSERT_EQ(insert_items(table, 0, 4, p), Status::kOk);
  EXPECT_FALSE(present(table, 2, 1.0));
  EXPECT_TRUE(present(table, 1, 5.0));
}

// ------------------------------------------------------------------------------------------------
// Rate limiter

TEST(RateLimiter, InsertBlockedBySamplesPerInsertIsReleasedByASample) {
  TableOptions o = options();
  o.rate_limiter = {/*min_size_to_sample=*/1, /*samples_per_insert=*/1, /*error_buffer=*/1};  // max_diff 2
  Table table(o);
  std::vector<uint64_t> keys;
  size_t inserted = 0;
  // Items one at a time as allowed: the third would put the cursor at 3 > max_diff.
  EXPECT_EQ(insert_items(table, 0, 3, nullptr, Deadline::after_ms(20), &keys, &inserted), Status::kDeadlineExceeded);
  EXPECT_EQ(inserted, 2u);
  EXPECT_EQ(keys, (std::vector<uint64_t>{1, 2}));

  Status status = Status::kClosed;
  std::thread inserter([&] { status = insert_items(table, 2, 1); });
  ASSERT_TRUE(eventually([&] { return table.stats().waiting_inserters == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  SampleBatch b;
  ASSERT_EQ(table.sample(1, Deadline::after_ms(1000), &b), Status::kOk);
  inserter.join();
  EXPECT_EQ(status, Status::kOk);
  const TableStats s = table.stats();
  EXPECT_EQ(s.inserts, 3u);
  EXPECT_EQ(s.waiting_inserters, 0u);
  EXPECT_GE(s.inserts_blocked_ns, 20'000'000u);  // the deadline wait plus the thread's wait
}

TEST(RateLimiter, SampleBlockedByMinSizeIsReleasedByAnInsert) {
  TableOptions o = options();
  o.rate_limiter.min_size_to_sample = 5;
  Table table(o);
  ASSERT_EQ(insert_items(table, 0, 4), Status::kOk);
  SampleBatch blocked;
  EXPECT_EQ(table.sample(1, Deadline::after_ms(10), &blocked), Status::kDeadlineExceeded);

  SampleBatch b;
  Status status = Status::kClosed;
  std::thread sampler([&] { status = table.sample(2, Deadline::never(), &b); });
  ASSERT_TRUE(eventually([&] { return table.stats().waiting_samplers == 1; }));
  ASSERT_EQ(insert_items(table, 4, 1), Status::kOk);
  sampler.join();
  EXPECT_EQ(status, Status::kOk);
  EXPECT_EQ(b.keys.size(), 2u);
  EXPECT_GT(table.stats().samples_blocked_ns, 0u);
}

TEST(RateLimiter, SampleBlockedByTheRatioIsReleasedByAnInsert) {
  TableOptions o = options();
  o.rate_limiter = {1, 1, 1};  // min_diff 0: at most one sample per insert (plus the buffer)
  Table table(o);
  ASSERT_EQ(insert_items(table, 0, 1), Status::kOk);  // cursor 1
  SampleBatch b;
  ASSERT_EQ(table.sample(1, Deadline::after_ms(100), &b), Status::kOk);  // cursor 0
  EXPECT_EQ(table.sample(1, Deadline::after_ms(10), &b), Status::kDeadlineExceeded);

  Status status = Status::kClosed;
  std::thread sampler([&] { status = table.sample(1, Deadline::never(), &b); });
  ASSERT_TRUE(eventually([&] { return table.stats().waiting_samplers == 1; }));
  ASSERT_EQ(insert_items(table, 1, 1), Status::kOk);
  sampler.join();
  EXPECT_EQ(status, Status::kOk);
  EXPECT_EQ(table.stats().samples, 2u);
}

TEST(RateLimiter, BatchesLargerThanTheErrorBufferCompleteAsInsertsArrive) {
  TableOptions o = options(Sampler::kUniform, Remover::kFifo, 1000);
  o.rate_limiter = {1, 2, 2};  // a window of a few items, batches of 64
  Table table(o);
  std::atomic<bool> stop{false};
  std::thread inserter([&] {
    for (int64_t id = 0; !stop; ++id) {
      if (insert_items(table, id, 1, nullptr, Deadline::after_ms(50)) == Status::kClosed) return;
    }
  });
  SampleBatch b;
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(table.sample(64, Deadline::after_ms(5000), &b), Status::kOk);
    EXPECT_EQ(b.keys.size(), 64u);
  }
  stop = true;
  inserter.join();
  // The ratio held throughout: inserts * 2 - samples stayed within [min_diff, max_diff] = [0, 4].
  const TableStats s = table.stats();
  const double cursor = 2.0 * static_cast<double>(s.inserts) - static_cast<double>(s.samples);
  EXPECT_GE(cursor, 0);
  EXPECT_LE(cursor, 4);
}

// Samples a batch of 9 from 9 items under a ratio that allows only 8 samples, inserts two more
// items (keys 10 and 11, one more sample's worth) while the sampler waits, and returns the keys
// it got.
std::vector<uint64_t> batch_across_a_wait(Sampler sampler, Remover remover, uint32_t max_times_sampled) {
  TableOptions o = options(sampler, remover, 9);
  o.max_times_sampled = max_times_sampled;
  o.rate_limiter = {1, 0.5, 4};  // min_diff -3.5: 9 inserts allow 8 samples
  Table table(o);
  EXPECT_EQ(insert_items(table, 0, 9), Status::kOk);
  SampleBatch b;
  Status status = Status::kClosed;
  std::thread t([&] { status = table.sample(9, Deadline::after_ms(5000), &b); });
  EXPECT_TRUE(eventually([&] { return table.stats().waiting_samplers == 1; }));
  EXPECT_EQ(table.stats().samples, 8u);
  EXPECT_EQ(insert_items(table, 9, 2), Status::kOk);
  t.join();
  EXPECT_EQ(status, Status::kOk);
  expect_rows_consistent(b);
  return b.keys;
}

TEST(RateLimiter, FifoAndLifoBatchesContinueInOrderAfterAWait) {
  const std::vector<uint64_t> oldest{1, 2, 3, 4, 5, 6, 7, 8, 9};
  EXPECT_EQ(batch_across_a_wait(Sampler::kFifo, Remover::kFifo, 0), oldest);
  EXPECT_EQ(batch_across_a_wait(Sampler::kFifo, Remover::kFifo, 1), oldest);  // queue
  // The lifo remover evicts key 9, the item the sample would have taken next, then key 10: it
  // goes on with the oldest item newer than the last one it took.
  EXPECT_EQ(batch_across_a_wait(Sampler::kFifo, Remover::kLifo, 0),
            (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 11}));
  // Lifo goes on with the newest item not in the batch yet: key 11, inserted during the wait,
  // whether the remover evicted keys 9 and 10 (lifo), keys 1 and 2 (fifo) or nothing (queue).
  const std::vector<uint64_t> newest{9, 8, 7, 6, 5, 4, 3, 2, 11};
  EXPECT_EQ(batch_across_a_wait(Sampler::kLifo, Remover::kLifo, 0), newest);
  EXPECT_EQ(batch_across_a_wait(Sampler::kLifo, Remover::kFifo, 0), newest);
  EXPECT_EQ(batch_across_a_wait(Sampler::kLifo, Remover::kFifo, 1), newest);
}

TEST(RateLimiter, DeadlinesReturnDeadlineExceededInAboutTheDeadline) {
  TableOptions o = options();
  o.rate_limiter = {1, 1, 1};
  Table table(o);
  SampleBatch b;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(table.sample(1, Deadline::after_ms(100), &b), Status::kDeadlineExceeded);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(ms, 99);
  EXPECT_LT(ms, 400);

  ASSERT_EQ(insert_items(table, 0, 2), Status::kOk);  // cursor 2 = max_diff
  t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(insert_items(table, 2, 1, nullptr, Deadline::after_ms(100)), Status::kDeadlineExceeded);
  ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(ms, 99);
  EXPECT_LT(ms, 400);

  // An expired deadline still succeeds when nothing needs to wait.
  EXPECT_EQ(table.sample(1, Deadline::after_ms(0), &b), Status::kOk);
}

TEST(RateLimiter, CloseReleasesEveryWaiterAndLaterCallsReturnClosed) {
  TableOptions o = options();
  o.rate_limiter = {1, 1, 1};  // max_diff 2
  Table full(o);
  ASSERT_EQ(insert_items(full, 0, 2), Status::kOk);  // cursor 2: further inserts wait
  Table empty(options());                             // min_size_to_sample 1: samples wait
  std::atomic<int> closed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] {
      if (insert_items(full, 100, 1) == Status::kClosed) ++closed;
    });
    threads.emplace_back([&] {
      SampleBatch b;
      if (empty.sample(1, Deadline::never(), &b) == Status::kClosed) ++closed;
    });
  }
  ASSERT_TRUE(eventually([&] { return full.stats().waiting_inserters == 2 && empty.stats().waiting_samplers == 2; }));
  full.close();
  empty.close();
  for (auto& t : threads) t.join();
  EXPECT_EQ(closed.load(), 4);
  EXPECT_EQ(full.stats().waiting_inserters, 0u);
  EXPECT_EQ(empty.stats().waiting_samplers, 0u);
  // Later calls return kClosed at once, even when they would not have to wait.
  SampleBatch b;
  EXPECT_EQ(full.sample(1, Deadline::never(), &b), Status::kClosed);
  EXPECT_TRUE(b.keys.empty());
  EXPECT_EQ(insert_items(empty, 0, 1), Status::kClosed);
  EXPECT_EQ(empty.stats().inserts, 0u);
}

// ------------------------------------------------------------------------------------------------
// Priority updates

TEST(Table, UpdatePrioritiesIgnoresAndCountsUnknownKeys) {
  Table table(options(Sampler::kPrioritized, Remover::kFifo, 3));
  ASSERT_EQ(insert_items(table, 0, 5), Status::kOk);  // keys 1, 2 evicted
  const uint64_t keys[] = {1, 3, 2, 5, 999};
  const double priorities[] = {7, 2, 7, 4, 7};
  EXPECT_EQ(table.update_priorities(keys, priorities, 5), 2u);
  const TableStats s = table.stats();
  EXPECT_EQ(s.unknown_key_updates, 3u);
  EXPECT_NEAR(s.priority_mass, std::pow(2.0, 0.6) + 1.0 + std::pow(4.0, 0.6), 1e-12);
  EXPECT_EQ(s.min_priority, 1.0);
  // The new priorities drive the reported probabilities.
  SampleBatch b;
  ASSERT_EQ(table.sample(100, Deadline::never(), &b), Status::kOk);
  for (size_t i = 0; i < b.keys.size(); ++i) {
    const double p = b.keys[i] == 3 ? 2.0 : b.keys[i] == 4 ? 1.0 : 4.0;
    EXPECT_NEAR(b.probabilities[i], std::pow(p, 0.6) / s.priority_mass, 1e-12);
  }
}

// ------------------------------------------------------------------------------------------------
// Checkpoints

TEST(Checkpoint, RoundTripRestoresItemsCountersAndBytes) {
  TableOptions o = options(Sampler::kPrioritized, Remover::kLowestPriority, 50);
  o.max_times_sampled = 100;
  Table table(o);
  std::vector<double> p;
  for (int i = 0; i < 40; ++i) p.push_back(0.5 + i % 5);
  ASSERT_EQ(insert_items(table, 0, 40, p.data()), Status::kOk);
  ASSERT_EQ(insert_items(table, 40, 20, p.data()), Status::kOk);  // 10 evictions by priority
  SampleBatch b;
  ASSERT_EQ(table.sample(30, Deadline::never(), &b), Status::kOk);
  const uint64_t gone = 1;
  const double any = 1;
  table.update_priorities(&gone, &any, 1);
  std::map<uint64_t, uint32_t> times;
  for (size_t i = 0; i < b.keys.size(); ++i) times[b.keys[i]] = b.times_sampled[i];

  std::stringstream stream;
  table.save(stream);
  Table restored(o);
  std::string warning = "stale";
  restored.load(stream, &warning);
  EXPECT_EQ(warning, "");

  const TableStats a = table.stats(), r = restored.stats();
  EXPECT_EQ(r.size, a.size);
  EXPECT_EQ(r.inserts, a.inserts);
  EXPECT_EQ(r.samples, a.samples);
  EXPECT_EQ(r.evictions, a.evictions);
  EXPECT_EQ(r.unknown_key_updates, a.unknown_key_updates);
  EXPECT_EQ(r.max_priority, a.max_priority);
  EXPECT_EQ(r.min_priority, a.min_priority);
  EXPECT_NEAR(r.priority_mass, a.priority_mass, 1e-12 * a.priority_mass);

  // The same keys carry the same bytes and continue their sample counts.
  for (int round = 0; round < 20; ++round) {
    ASSERT_EQ(restored.sample(50, Deadline::never(), &b), Status::kOk);
    expect_rows_consistent(b);
    for (size_t i = 0; i < b.keys.size(); ++i) {
      uint32_t& t = times[b.keys[i]];
      EXPECT_EQ(b.times_sampled[i], t + 1) << "key " << b.keys[i];
      t = b.times_sampled[i];
    }
  }
  // New keys continue after the checkpoint's.
  std::vector<uint64_t> keys;
  ASSERT_EQ(insert_items(restored, 60, 1, nullptr, Deadline::never(), &keys), Status::kOk);
  EXPECT_EQ(keys, (std::vector<uint64_t>{61}));
}

TEST(Checkpoint, RestoresTheRateLimiterCursor) {
  TableOptions o = options();
  o.rate_limiter = {1, 1, 1};  // max_diff 2
  Table table(o);
  ASSERT_EQ(insert_items(table, 0, 2), Status::kOk);
  std::stringstream stream;
  table.save(stream);
  Table restored(o);
  restored.load(stream, nullptr);
  EXPECT_EQ(insert_items(restored, 2, 1, nullptr, Deadline::after_ms(10)), Status::kDeadlineExceeded);
  SampleBatch b;
  ASSERT_EQ(restored.sample(1, Deadline::after_ms(100), &b), Status::kOk);
  EXPECT_EQ(insert_items(restored, 2, 1, nullptr, Deadline::after_ms(100)), Status::kOk);
}

TEST(Checkpoint, FifoOrderSurvivesARestore) {
  Table table(options(Sampler::kFifo));
  ASSERT_EQ(insert_items(table, 0, 8), Status::kOk);
  std::stringstream stream;
  table.save(stream);
  Table restored(options(Sampler::kFifo));
  restored.load(stream, nullptr);
  EXPECT_EQ(sample_keys(restored, 8), (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST(Checkpoint, SmallerTableKeepsTheNewestItemsAndWarns) {
  Table table(options(Sampler::kFifo, Remover::kFifo, 100));
  ASSERT_EQ(insert_items(table, 0, 20), Status::kOk);
  std::stringstream stream;
  table.save(stream);
  Table small(options(Sampler::kFifo, Remover::kFifo, 5));
  std::string warning;
  small.load(stream, &warning);
  EXPECT_NE(warning.find("max_size 100 -> 5"), std::string::npos) << warning;
  EXPECT_NE(warning.find("newest 5 of 20"), std::string::npos) << warning;
  EXPECT_EQ(small.stats().size, 5u);
  SampleBatch b;
  ASSERT_EQ(small.sample(5, Deadline::never(), &b), Status::kOk);
  EXPECT_EQ(b.keys, (std::vector<uint64_t>{16, 17, 18, 19, 20}));
  expect_rows_consistent(b);
}

TEST(Checkpoint, DifferentSettingsAreAWarningNotAnError) {
  Table table(options(Sampler::kUniform, Remover::kFifo, 100));
  ASSERT_EQ(insert_items(table, 0, 3), Status::kOk);
  std::stringstream stream;
  table.save(stream);
  TableOptions o = options(Sampler::kPrioritized, Remover::kLifo, 100);
  o.rate_limiter.min_size_to_sample = 2;
  Table other(o);
  std::string warning;
  other.load(stream, &warning);
  for (const char* part : {"sampler uniform -> prioritized", "remover fifo -> lifo", "min_size_to_sample 1 -> 2"})
    EXPECT_NE(warning.find(part), std::string::npos) << part << " not in: " << warning;
  EXPECT_EQ(other.stats().size, 3u);
  EXPECT_EQ(other.options().sampler, Sampler::kPrioritized);  // the run spec wins
}

TEST(Checkpoint, DifferentSignatureThrowsNamingTheColumn) {
  Table table(options());
  ASSERT_EQ(insert_items(table, 0, 3), Status::kOk);
  std::stringstream stream;
  table.save(stream);
  const std::string bytes = stream.str();

  TableOptions o = options();
  o.signature[0].shape = {3};
  Table other(o);
  std::istringstream in(bytes);
  try {
    other.load(in, nullptr);
    ADD_FAILURE() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("obs"), std::string::npos) << e.what();
  }
  o = options();
  o.signature.push_back({"reward", DType::kFloat32, {}});
  Table wider(o);
  std::istringstream in2(bytes);
  try {
    wider.load(in2, nullptr);
    ADD_FAILURE() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("reward"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, TruncatedOrForeignStreamThrowsAndLeavesTheTableUnchanged) {
  Table table(options());
  ASSERT_EQ(insert_items(table, 0, 10), Status::kOk);
  std::stringstream stream;
  table.save(stream);
  const std::string bytes = stream.str();

  Table target(options());
  ASSERT_EQ(insert_items(target, 0, 2), Status::kOk);
  for (size_t cut : {size_t{0}, size_t{4}, size_t{20}, bytes.size() / 2, bytes.size() - 1}) {
    std::istringstream in(bytes.substr(0, cut));
    EXPECT_THROW(target.load(in, nullptr), std::runtime_error) << "cut at " << cut;
    EXPECT_EQ(target.stats().size, 2u);
    EXPECT_EQ(target.stats().inserts, 2u);
  }
  std::istringstream foreign("this is not a checkpoint at all, just some text");
  EXPECT_THROW(target.load(foreign, nullptr), std::runtime_error);
  std::istringstream whole(bytes);
  EXPECT_NO_THROW(target.load(whole, nullptr));
  EXPECT_EQ(target.stats().size, 10u);
}

// ------------------------------------------------------------------------------------------------
// Concurrency

TEST(Table, ConcurrentInsertersSamplersAndUpdatersKeepTheCountsConsistent) {
  TableOptions o = options(Sampler::kPrioritized, Remover::kFifo, 200);
  o.rate_limiter = {10, 2, 50};
  Table table(o);
  std::atomic<uint64_t> inserted{0}, sampled{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int64_t id = t * 1'000'000; !stop; id += 8) {
        size_t n = 0;
        std::vector<uint64_t> keys;
        insert_items(table, id, 8, nullptr, Deadline::after_ms(20), &keys, &n);
        inserted += n;
      }
    });
    threads.emplace_back([&] {
      SampleBatch b;
      while (!stop) {
        table.sample(16, Deadline::after_ms(20), &b);
        sampled += b.keys.size();
        std::vector<double> p(b.keys.size(), 2.0);
        table.update_priorities(b.keys.data(), p.data(), b.keys.size());
        for (size_t i = 0; i < b.keys.size(); ++i) {
          int64_t id;
          std::memcpy(&id, b.columns[1].data() + i * 8, 8);
          ASSERT_EQ(obs_of(b, i).first, static_cast<float>(id));
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  for (auto& t : threads) t.join();
  const TableStats s = table.stats();
  EXPECT_EQ(s.inserts, inserted.load());
  EXPECT_EQ(s.samples, sampled.load());
  EXPECT_EQ(s.size, std::min<uint64_t>(s.inserts, 200));
  EXPECT_EQ(s.evictions, s.inserts - s.size);
  EXPECT_GT(s.samples, 0u);
}
