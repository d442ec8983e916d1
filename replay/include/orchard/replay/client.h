// Client side of the replay service: a writer that streams experience batches to one shard with
// credit-based flow control and at-least-once delivery, a sampler that draws globally correct
// prioritized samples across every shard on a background thread, and admin requests
// (TABLE_INFO, CHECKPOINT) used by `orchard replay info|checkpoint`.
//
// The protocol is docs/protocol.md: one DEALER socket per shard, every message an
// orchard.v1.Envelope plus raw tensor frames (core/wire.h), replies matched by request_id.
// No LibTorch; ZeroMQ and protobuf stay behind the pimpl.
//
// Keys. A shard's keys are local to it. Keys handed to users are GLOBAL:
//   global = (shard_index << 48) | local_key
// so a priority update can be routed back to the shard that owns the item. Local keys must be
// below 2^48 and there can be at most 2^16 shards.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "orchard/core/error.h"
#include "orchard/core/tensor.h"

namespace orchard::replay {

// ---------------------------------------------------------------------------------------------
// Errors

// A request to a shard failed: the shard answered ERROR (code and message are the shard's), or
// the client gave up waiting (code DEADLINE_EXCEEDED, message says what was outstanding).
// what() is "replay shard <endpoint>: <CODE>: <message>".
class ReplayError : public orchard::Error {
 public:
  ReplayError(int code, std::string endpoint, std::string message);
  int code() const { return code_; }                        // an orchard.v1.ErrorCode value
  const std::string& endpoint() const { return endpoint_; }
  const std::string& server_message() const { return message_; }

 private:
  int code_;
  std::string endpoint_;
  std::string message_;
};

// True for the ERROR codes that mean "send it again later": DEADLINE_EXCEEDED (the rate limiter
// held it past its timeout), RESOURCE_EXHAUSTED and UNAVAILABLE (shard shutting down). Every
// other code is fatal for the request.
bool is_retryable(int code);

// CURVE settings for client sockets (keys in Z85, as `orchard keys` writes them; see
// core::load_curve_keys). Empty server_public_key: plaintext.
struct ClientSecurity {
  std::string server_public_key;  // the shards' public key
  std::string client_public_key;  // this client's pair; required when server_public_key is set
  std::string client_secret_key;
};

// ---------------------------------------------------------------------------------------------
// Keys and sampling arithmetic (pure; exposed for tests and for callers that route keys).

constexpr int kShardKeyShift = 48;
constexpr uint64_t kLocalKeyMask = (uint64_t{1} << kShardKeyShift) - 1;
constexpr uint32_t kMaxShards = 1u << (64 - kShardKeyShift);

// (shard << 48) | local_key. Throws ReplayError(INTERNAL) when local_key >= 2^48 or
// shard >= kMaxShards (a shard handing out such keys cannot be addressed).
uint64_t encode_global_key(uint32_t shard, uint64_t local_key);
inline uint32_t shard_of_key(uint64_t global_key) { return static_cast<uint32_t>(global_key >> kShardKeyShift); }
inline uint64_t local_key_of(uint64_t global_key) { return global_key & kLocalKeyMask; }

// Draws, for each of `batch` items independently, a shard with probability
// weights[s] / sum(weights), and writes how many items each shard got to counts (resized to
// weights.size()). Weights must be finite and >= 0 with a positive sum.
void split_across_shards(const std::vector<double>& weights, uint32_t batch, std::mt19937_64& rng,
                         std::vector<uint32_t>* counts);

// The probability of an item across all shards: local_probability * shard_weight / total_weight.
inline double global_probability(double local_probability, double shard_weight, double total_weight) {
  return total_weight > 0 ? local_probability * shard_weight / total_weight : 0.0;
}

// Importance weights w_i = (N * P_i)^(-beta) / max_j w_j over the n items (so max w = 1).
// N = total_items across all shards. An item with P_i <= 0 (cannot happen for a sampled item)
// gets weight 1 before normalisation.
void importance_weights(const double* probabilities, size_t n, uint64_t total_items, double beta,
                        double* out);

// ---------------------------------------------------------------------------------------------
// Writer

enum class ItemKind { kTransition = 1, kSequence = 2 };  // values equal orchard.v1.ItemKind

struct ReplayWriterOptions {
  std::vector<std::string> endpoints;  // every shard, in shard-index order ("tcp://host:port")
  int shard = -1;                      // -1: actor_id % endpoints.size()
  uint64_t actor_id = 0;
  std::string table = "main";
  // Envelope sender; the shard de-duplicates resent batches by (name, batch_seq), and batch_seq
  // restarts at 1 with every writer, so a name must not be reused by a later writer on the same
  // shard (its batches would be taken for duplicates). Empty: "writer-<actor_id>-<pid>-<random>".
  std::string name;
  ItemKind kind = ItemKind::kTransition;
  uint32_t sequence_length = 0;        // T, for kSequence
  uint32_t credits = 8;                // max un-acked batches; the shard's announced credits lower it
  // No ack for the oldest un-acked batch within this long: the shard is presumed restarted, the
  // socket is re-created and every un-acked batch is sent again in order. Must exceed
  // insert_timeout_ms (a rate-limited insert is answered only after that).
  int ack_timeout_ms = 5000;
  uint32_t insert_timeout_ms = 1000;   // ExperienceBatch.timeout_ms: how long the shard may block it
  int block_timeout_ms = 60000;        // append() waiting for a credit gives up after this; < 0: never
  // While append() waits for a credit it calls this every interrupt_every_ms; true ends the wait
  // at once as if block_timeout_ms had passed (DEADLINE_EXCEEDED, the batch is not appended). An
  // actor ends its wait when the learner has finished or the process is asked to stop. Empty: none.
  std::function<bool()> interrupt;
  int interrupt_every_ms = 20;
  int retry_backoff_ms = 20;           // wait before resending a batch the shard asked to resend
  // Keep the keys from acks for take_acked_keys() (they accumulate until taken).
  bool collect_keys = false;
  ClientSecurity security;
};

struct WriterStats {
  uint64_t batches_sent = 0;      // distinct batches sent at least once
  uint64_t batches_acked = 0;
  uint64_t batches_resent = 0;    // resend count (ack timeouts and retryable errors)
  uint64_t duplicates = 0;        // acks with duplicate = true
  uint64_t retryable_errors = 0;  // DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED / UNAVAILABLE replies
  uint64_t reconnects = 0;        // ack timeouts (socket re-created)
  uint64_t items_appended = 0;
  uint64_t items_acked = 0;
};

// Streams batches of items to one shard. At most `credits` batches are un-acknowledged (and so
// held in memory) at any time; each is kept until its INSERT_ACK and resent as needed, so every
// appended item reaches the table at least once (the shard drops duplicates). Not thread-safe:
// one writer per thread. Errors the shard reports as fatal for a batch (NOT_FOUND,
// SIGNATURE_MISMATCH, INVALID_ARGUMENT, ...) are thrown as ReplayError by the first append(),
// flush() or poll() after the reply arrived, naming the shard, the batch_seq and carrying the
// shard's message; that batch is dropped, the others are unaffected.
class ReplayWriter {
 public:
  // Connects (ZeroMQ connects lazily; nothing blocks). Throws ReplayError(INVALID_ARGUMENT) for
  // bad options (no endpoints, shard out of range, credits 0, ack_timeout <= insert_timeout).
  explicit ReplayWriter(ReplayWriterOptions options);
  // Un-acked batches are dropped: call flush() first to be sure they arrived.
  ~ReplayWriter();
  ReplayWriter(const ReplayWriter&) = delete;
  ReplayWriter& operator=(const ReplayWriter&) = delete;

  // Copies `n` items into an owned batch and sends it. `columns` are the table's columns in
  // signature order, each [n, *item_shape] (the shard checks the signature). `priorities`: n
  // values, finite and >= 0, or nullptr (the table assigns them). Blocks, receiving acks, while
  // `credits` batches are un-acked; throws ReplayError(DEADLINE_EXCEEDED) naming the shard after
  // block_timeout_ms. Throws std::invalid_argument for n == 0, a column whose leading dimension
  // is not n, or a bad priority, and ReplayError for an earlier batch the shard refused (see the
  // class comment). When it throws, the batch was not taken.
  void append(const std::vector<core::TensorView>& columns, uint32_t n, const double* priorities = nullptr,
              uint64_t policy_version = 0);

  // Waits until every appended batch is acknowledged (resending as needed). Throws
  // ReplayError(DEADLINE_EXCEEDED) naming the shard and how many batches are outstanding when
  // timeout_ms passes (< 0: no limit).
  void flush(int timeout_ms);

  // Receives whatever acks have arrived and resends overdue batches, without blocking.
  void poll();

  size_t in_flight() const;        // un-acked batches held
  uint32_t credits() const;        // min(options.credits, last credits announced by the shard)
  const std::string& endpoint() const;
  const std::string& name() const;
  WriterStats stats() const;
  // With options.collect_keys: the GLOBAL keys the shard gave the items of acked batches, in ack
  // order (a duplicate ack carries no keys), since the last call. Empty otherwise.
  std::vector<uint64_t> take_acked_keys();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// Sampler

struct ReplaySamplerOptions {
  std::vector<std::string> endpoints;  // every shard, in shard-index order
  std::string table = "main";
  uint32_t batch_size = 256;
  // Each round trip fetches batches_per_request * batch_size items (drawn at once from the same
  // shard weights, so every item's global probability stays exact), shuffles the rows and deals
  // them into batches: round trips, not the shards, limit a sampler otherwise. Rows of a batch are
  // in random order. fifo/lifo tables (queues) are read one batch per round, rows in order.
  uint32_t batches_per_request = 4;
  // SampleRequest.timeout_ms: how long a shard may hold a request in its rate limiter. A request
  // answered DEADLINE_EXCEEDED is sent again (so next() simply times out while a table is below
  // min_size_to_sample).
  uint32_t timeout_ms = 1000;
  size_t prefetch = 2;                 // batches sampled ahead (bounded queue), >= 1
  double beta = 0.4;                   // importance-weight exponent
  uint64_t seed = 0;                   // shard draws; 0: from std::random_device
  // Shard weights are refreshed with TABLE_INFO when a shard has not reported its weight (in a
  // SAMPLE_REPLY) for this long, so a shard that was empty starts being sampled once it fills.
  int info_refresh_ms = 1000;
  // A request with no reply within timeout_ms + reply_grace_ms is sent again on a new socket
  // (the shard may have restarted). At start, sampling waits up to this long for every shard's
  // first TABLE_INFO reply; a shard that has not answered is not drawn from until it does.
  int reply_grace_ms = 5000;
  std::string name = "sampler";        // Envelope sender
  ClientSecurity security;
};

// One column of a sampled batch: [batch, *item_shape], contiguous, 16-byte aligned.
struct SampledColumn {
  std::string name;
  core::DType dtype = core::DType::kFloat32;
  core::Shape shape;
  std::vector<uint8_t> data;

  core::TensorView view() const { return {name, dtype, shape, data.data()}; }
  template <class T> const T* as() const { return reinterpret_cast<const T*>(data.data()); }
};

// A batch drawn across all shards. Rows are grouped by shard in shard-index order (shard 0's
// items first, in the order that shard returned them); they are not shuffled, which does not
// matter because each row's shard was drawn independently.
struct SampledBatch {
  std::vector<uint64_t> keys;            // GLOBAL keys (see encode_global_key)
  std::vector<double> probabilities;     // global: local_p * weight_s / sum_s weight_s
  std::vector<double> weights;           // importance weights, max 1
  std::vector<uint32_t> times_sampled;   // as reported by the shard (including this sample)
  std::vector<SampledColumn> columns;    // in table signature order
  std::vector<uint32_t> shard_counts;    // rows from each shard
  std::vector<double> shard_weights;     // the weights used for `probabilities`
  uint64_t total_items = 0;              // N, summed over shards
  double total_weight = 0;               // sum of shard_weights

  size_t size() const { return keys.size(); }
  const SampledColumn* find(std::string_view name) const;
};

struct PriorityUpdateResult {
  uint64_t updated = 0;
  uint64_t unknown_keys = 0;  // items no longer in their table (evicted)
};

struct SamplerStats {
  uint64_t batches = 0;            // batches produced
  uint64_t items = 0;
  uint64_t deadline_retries = 0;   // requests sent again after DEADLINE_EXCEEDED (rate limited),
                                   // RESOURCE_EXHAUSTED or UNAVAILABLE
  uint64_t lost_replies = 0;       // requests sent again after reply_grace_ms without a reply
  uint64_t info_refreshes = 0;
  std::vector<uint64_t> items_per_shard;
};

// Samples batches across shards on a background thread into a bounded prefetch queue.
// Shard s is chosen for each item with probability weight_s / sum weight, where weight_s is the
// shard's sampling weight (sum p^alpha for prioritized tables, the item count otherwise), taken
// from TABLE_INFO at start and then from every SAMPLE_REPLY; each shard is asked for its items in
// parallel. A shard answering DEADLINE_EXCEEDED is asked again for the same items, unless it
// now reports weight 0 (emptied), in which case its share is redrawn over the other shards.
// next() and update_priorities() may be called from different threads; each of them from one
// thread at a time.
class ReplaySampler {
 public:
  // Starts the thread; nothing blocks (shards may come up later). Throws
  // ReplayError(INVALID_ARGUMENT) for bad options.
  explicit ReplaySampler(ReplaySamplerOptions options);
  ~ReplaySampler();  // stop()
  ReplaySampler(const ReplaySampler&) = delete;
  ReplaySampler& operator=(const ReplaySampler&) = delete;

  // Pops the next batch into *out (its old buffers are recycled). False when nothing arrived
  // within timeout_ms (< 0: wait for ever) or after stop(). Throws the ReplayError that ended the
  // sampling thread (a shard answered other than DEADLINE_EXCEEDED: unknown table, ...), naming
  // the shard, once the batches sampled before it have been taken; every later call throws too.
  bool next(SampledBatch* out, int timeout_ms);

  // Sets priorities of items by GLOBAL key: one UPDATE_PRIORITIES per shard owning some of the
  // keys, sent in parallel from the caller's thread, waiting for every ack. Throws
  // std::invalid_argument for a priority that is not finite and >= 0 or a key of an unknown
  // shard, and ReplayError for a shard's ERROR reply or DEADLINE_EXCEEDED after timeout_ms.
  PriorityUpdateResult update_priorities(const uint64_t* keys, const double* priorities, size_t n,
                                         int timeout_ms = 5000);
  PriorityUpdateResult update_priorities(const std::vector<uint64_t>& keys, const std::vector<double>& priorities,
                                         int timeout_ms = 5000);

  // Ends the thread (waits for it); batches already queued can still be taken. Idempotent.
  void stop();

  size_t num_shards() const;
  // The latest sampling weight known for every shard (0 before the first TABLE_INFO reply).
  std::vector<double> shard_weights() const;
  SamplerStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// Admin requests (one short-lived socket per call; for CLIs and tests)

struct ShardTableInfo {
  std::string name;
  uint64_t size = 0, max_size = 0, inserts = 0, samples = 0, evictions = 0;
  double priority_mass = 0;  // the sampling weight: sum p^alpha (prioritized) or the item count
  double max_priority = 0, min_priority = 0;
  uint64_t min_size_to_sample = 0;
  double samples_per_insert = 0, min_diff = 0, max_diff = 0;
  uint64_t inserts_blocked_ns = 0, samples_blocked_ns = 0;
  std::vector<core::TensorSpec> signature;  // per item (no leading dimension)
  std::string sampler, remover;
};

struct ShardInfo {
  std::string endpoint;
  std::string shard;               // the shard's own name ("replay-0")
  uint64_t rejected_messages = 0;  // invalid messages the shard answered with ERROR
  std::vector<ShardTableInfo> tables;
};

struct CheckpointResult {
  std::string path;
  uint64_t items = 0;
  uint64_t bytes = 0;
};

// TABLE_INFO for `table` (empty: every table). Throws ReplayError with the shard's code and
// message (NOT_FOUND for an unknown table, including a reply that lists no such table), or
// DEADLINE_EXCEEDED when no reply came within timeout_ms.
ShardInfo shard_info(const std::string& endpoint, const std::string& table, int timeout_ms,
                     const ClientSecurity& security = {});
std::vector<ShardTableInfo> table_info(const std::string& endpoint, const std::string& table, int timeout_ms,
                                       const ClientSecurity& security = {});

// CHECKPOINT: the shard writes its tables to `path` (empty: its configured checkpoint directory)
// and replies with where, how many items and bytes. Errors as for shard_info().
CheckpointResult checkpoint(const std::string& endpoint, const std::string& path, int timeout_ms,
                            const ClientSecurity& security = {});

}  // namespace orchard::replay
