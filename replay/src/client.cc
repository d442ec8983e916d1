#include "orchard/replay/client.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "orchard/core/clock.h"
#include "orchard/core/wire.h"

namespace orchard::replay {
namespace {

using core::Message;

constexpr int64_t kNsPerMs = 1'000'000;
// How long loops wait at most before looking at their stop flag / timers again.
constexpr int kPollSliceMs = 50;

int64_t now_ns() { return core::monotonic_ns(); }

std::string code_name(int code) {
  if (v1::ErrorCode_IsValid(code)) return v1::ErrorCode_Name(static_cast<v1::ErrorCode>(code));
  return "error code " + std::to_string(code);
}

ReplayError invalid_option(const std::string& what) { return ReplayError(v1::INVALID_ARGUMENT, "", what); }

// A DEALER connected to one shard. Sends never block (send_timeout 0: a full pipe makes
// send_message() return false and the caller retries); close drops whatever is queued.
std::unique_ptr<zmq::socket_t> connect_dealer(zmq::context_t& ctx, const std::string& endpoint,
                                              const ClientSecurity& security) {
  auto socket = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::dealer);
  core::SocketOptions o;
  o.linger_ms = 0;
  o.send_timeout_ms = 0;
  core::apply_socket_options(*socket, o);
  try {
    if (!security.server_public_key.empty()) {
      core::make_curve_client(*socket, {security.client_public_key, security.client_secret_key},
                              security.server_public_key);
    }
    socket->connect(endpoint);
  } catch (const zmq::error_t& e) {
    throw ReplayError(v1::INVALID_ARGUMENT, endpoint, std::string("cannot connect: ") + e.what());
  }
  return socket;
}

std::vector<core::TensorSpec> specs_from(const google::protobuf::RepeatedPtrField<v1::TensorDesc>& descs) {
  std::vector<core::TensorSpec> out;
  out.reserve(static_cast<size_t>(descs.size()));
  for (const auto& d : descs) {
    out.push_back({d.name(), static_cast<core::DType>(d.dtype()), {d.shape().begin(), d.shape().end()}});
  }
  return out;
}

bool same_signature(const std::vector<core::TensorSpec>& a, const std::vector<core::TensorSpec>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].dtype != b[i].dtype || a[i].shape != b[i].shape) return false;
  }
  return true;
}

std::string describe_signature(const std::vector<core::TensorSpec>& sig) {
  std::string s = "[";
  for (size_t i = 0; i < sig.size(); ++i) s += (i ? ", " : "") + sig[i].to_string();
  return s + "]";
}

ShardTableInfo table_from(const v1::TableInfo& t) {
  ShardTableInfo o;
  o.name = t.name();
  o.size = t.size();
  o.max_size = t.max_size();
  o.inserts = t.inserts();
  o.samples = t.samples();
  o.evictions = t.evictions();
  o.priority_mass = t.priority_mass();
  o.max_priority = t.max_priority();
  o.min_priority = t.min_priority();
  o.min_size_to_sample = t.rate_limiter().min_size_to_sample();
  o.samples_per_insert = t.rate_limiter().samples_per_insert();
  o.min_diff = t.rate_limiter().min_diff();
  o.max_diff = t.rate_limiter().max_diff();
  o.inserts_blocked_ns = t.rate_limiter().inserts_blocked_ns();
  o.samples_blocked_ns = t.rate_limiter().samples_blocked_ns();
  o.signature = specs_from(t.signature());
  o.sampler = t.sampler();
  o.remover = t.remover();
  return o;
}

// Finds `table` in a TABLE_INFO_REPLY; throws NOT_FOUND when the shard does not list it.
const v1::TableInfo& find_table(const v1::TableInfoReply& reply, const std::string& table,
                                const std::string& endpoint) {
  for (const auto& t : reply.tables())
    if (t.name() == table) return t;
  std::string have;
  for (const auto& t : reply.tables()) have += (have.empty() ? "'" : ", '") + t.name() + "'";
  throw ReplayError(v1::NOT_FOUND, endpoint,
                    "no table '" + table + "' on this shard (tables: " + (have.empty() ? "none" : have) + ")");
}

// Sends `request` and waits for the reply with its request_id on a fresh socket.
Message admin_request(const std::string& endpoint, core::MessageBuilder& request, v1::MessageType reply_type,
                      int timeout_ms, const ClientSecurity& security) {
  zmq::context_t ctx(1);
  auto socket = connect_dealer(ctx, endpoint, security);
  const uint64_t id = request.envelope().request_id();
  auto deadline = timeout_ms < 0 ? core::Deadline::never() : core::Deadline::after_ms(timeout_ms);
  // The pipe exists from connect() on (ZMQ_IMMEDIATE off), so the send queues even before the
  // connection completes; a refusal can only mean a full pipe.
  while (!core::send_message(*socket, request)) {
    if (deadline.expired()) throw ReplayError(v1::DEADLINE_EXCEEDED, endpoint, "could not send the request");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  Message reply;
  core::RecvError error;
  for (;;) {
    int wait = deadline.remaining_ms();
    auto status = core::recv_message(*socket, &reply, &error, wait < 0 ? kPollSliceMs : std::min(wait, kPollSliceMs));
    if (status == core::RecvStatus::kInvalid) {
      throw ReplayError(error.code, endpoint, "invalid reply: " + error.message);
    }
    if (status == core::RecvStatus::kOk && reply.envelope.request_id() == id) {
      if (reply.envelope.type() == v1::ERROR) {
        throw ReplayError(reply.envelope.error().code(), endpoint, reply.envelope.error().message());
      }
      if (reply.envelope.type() != reply_type) {
        throw ReplayError(v1::MALFORMED, endpoint,
                          "expected " + v1::MessageType_Name(reply_type) + ", got " +
                              v1::MessageType_Name(reply.envelope.type()));
      }
      return reply;
    }
    if (deadline.expired()) {
      throw ReplayError(v1::DEADLINE_EXCEEDED, endpoint,
                        "no reply to " + v1::MessageType_Name(request.envelope().type()) + " within " +
                            std::to_string(timeout_ms) + " ms");
    }
  }
}

std::string default_writer_name(uint64_t actor_id) {
  std::random_device rd;
  char buf[80];
  std::snprintf(buf, sizeof(buf), "writer-%llu-%d-%08x", static_cast<unsigned long long>(actor_id),
                static_cast<int>(::getpid()), rd());
  return buf;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Errors and arithmetic

ReplayError::ReplayError(int code, std::string endpoint, std::string message)
    : orchard::Error((endpoint.empty() ? std::string("replay client") : "replay shard " + endpoint) + ": " +
                     code_name(code) + ": " + message),
      code_(code),
      endpoint_(std::move(endpoint)),
      message_(std::move(message)) {}

bool is_retryable(int code) {
  return code == v1::DEADLINE_EXCEEDED || code == v1::RESOURCE_EXHAUSTED || code == v1::UNAVAILABLE;
}

uint64_t encode_global_key(uint32_t shard, uint64_t local_key) {
  if (local_key > kLocalKeyMask || shard >= kMaxShards) {
    throw ReplayError(v1::INTERNAL, "",
                      "key " + std::to_string(local_key) + " of shard " + std::to_string(shard) +
                          " does not fit a global key (local keys < 2^48, shards < 65536)");
  }
  return (static_cast<uint64_t>(shard) << kShardKeyShift) | local_key;
}

void split_across_shards(const std::vector<double>& weights, uint32_t batch, std::mt19937_64& rng,
                         std::vector<uint32_t>* counts) {
  counts->assign(weights.size(), 0);
  double total = 0;
  for (double w : weights) total += w;
  if (!(total > 0)) throw std::invalid_argument("split_across_shards: the shard weights sum to zero");
  // The last shard with positive weight takes any rounding leftover, so a zero-weight shard is
  // never picked.
  size_t last_positive = 0;
  for (size_t k = 0; k < weights.size(); ++k)
    if (weights[k] > 0) last_positive = k;
  std::uniform_real_distribution<double> uniform(0.0, total);
  for (uint32_t i = 0; i < batch; ++i) {
    double u = uniform(rng);
    size_t s = 0;
    for (; s < last_positive; ++s) {  // linear scan: a handful of shards
      if (weights[s] > 0 && u < weights[s]) break;
      u -= weights[s];
    }
    ++(*counts)[s];
  }
}

void importance_weights(const double* probabilities, size_t n, uint64_t total_items, double beta, double* out) {
  double max_w = 0;
  const double N = static_cast<double>(total_items);
  for (size_t i = 0; i < n; ++i) {
    double np = N * probabilities[i];
    out[i] = np > 0 ? std::pow(np, -beta) : 1.0;
    max_w = std::max(max_w, out[i]);
  }
  if (max_w > 0)
    for (size_t i = 0; i < n; ++i) out[i] /= max_w;
}

const SampledColumn* SampledBatch::find(std::string_view name) const {
  for (const auto& c : columns)
    if (c.name == name) return &c;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Writer

struct ReplayWriter::Impl {
  // One batch held until acknowledged. Column bytes are shared with ZeroMQ while a send is in
  // progress (add_tensor_borrowed), and never change after the copy in append().
  struct Column {
    std::string name;
    core::DType dtype;
    core::Shape shape;
    std::shared_ptr<std::vector<uint8_t>> bytes;
  };
  struct Batch {
    uint64_t seq = 0;
    uint32_t n = 0;
    uint64_t policy_version = 0;
    std::vector<double> priorities;
    std::vector<Column> columns;
    uint32_t attempts = 0;      // sends so far
    bool needs_send = true;     // not sent yet, or to be sent again
    int64_t not_before_ns = 0;  // when needs_send: earliest time to send
    int64_t sent_ns = 0;        // last send
  };

  ReplayWriterOptions options;
  uint32_t shard_index = 0;
  std::string endpoint;
  zmq::context_t ctx{1};
  std::unique_ptr<zmq::socket_t> socket;
  // Invariant: pending.size() <= credits in force when each was admitted; ordered by seq.
  std::deque<Batch> pending;
  uint64_t next_seq = 1;
  uint32_t announced_credits = 0;  // 0: the shard has not announced any yet
  WriterStats stats;
  std::vector<uint64_t> acked_keys;
  // Column buffers of acked batches that ZeroMQ no longer holds, reused by append().
  std::vector<std::shared_ptr<std::vector<uint8_t>>> spare;
  Message reply;
  core::RecvError recv_error;
  // A shard's error received after append() took its batch, thrown by the next call instead so
  // that an append() that throws never took its batch.
  std::exception_ptr deferred;

  void rethrow_deferred() {
    if (!deferred) return;
    std::exception_ptr e = std::move(deferred);
    deferred = nullptr;
    std::rethrow_exception(e);
  }

  uint32_t credits() const {
    uint32_t c = options.credits;
    if (announced_credits > 0) c = std::min(c, announced_credits);
    return std::max<uint32_t>(c, 1);
  }

  std::shared_ptr<std::vector<uint8_t>> buffer(size_t bytes) {
    std::shared_ptr<std::vector<uint8_t>> b;
    if (!spare.empty()) {
      b = std::move(spare.back());
      spare.pop_back();
    } else {
      b = std::make_shared<std::vector<uint8_t>>();
    }
    b->resize(bytes);
    return b;
  }

  void recycle(Batch& b) {
    for (auto& c : b.columns) {
      // use_count 1: ZeroMQ released its references (it can only drop them, never add).
      if (c.bytes.use_count() == 1 && spare.size() < 4 * options.credits * b.columns.size()) {
        spare.push_back(std::move(c.bytes));
      }
    }
  }

  // Sends one batch; false when the socket's pipe is full (nothing was sent).
  bool send(Batch& b) {
    core::MessageBuilder m(v1::INSERT, (b.seq << 16) | (b.attempts & 0xffff));
    auto& env = m.envelope();
    env.set_sender(options.name);
    auto* x = env.mutable_insert();
    x->set_table(options.table);
    x->set_kind(static_cast<v1::ItemKind>(options.kind));
    x->set_num_items(b.n);
    x->set_actor_id(options.actor_id);
    x->set_policy_version(b.policy_version);
    x->set_batch_seq(b.seq);
    for (double p : b.priorities) x->add_priorities(p);
    x->set_sequence_length(options.sequence_length);
    x->set_timeout_ms(options.insert_timeout_ms);
    for (const auto& c : b.columns) {
      m.add_tensor_borrowed({c.name, c.dtype, c.shape, c.bytes->data()}, c.bytes);
    }
    if (!core::send_message(*socket, m)) return false;
    if (b.attempts > 0) ++stats.batches_resent;
    else ++stats.batches_sent;
    ++b.attempts;
    b.needs_send = false;
    b.sent_ns = now_ns();
    return true;
  }

  // Sends every batch that is due, in seq order. Returns the time of the next timer (a batch
  // waiting for its backoff, or the ack deadline of the oldest sent batch), INT64_MAX for none.
  int64_t send_due() {
    int64_t now = now_ns();
    int64_t next_event = INT64_MAX;
    for (auto& b : pending) {
      if (!b.needs_send) continue;
      if (b.not_before_ns > now) {
        next_event = std::min(next_event, b.not_before_ns);
        continue;
      }
      if (!send(b)) {
        next_event = std::min(next_event, now + 5 * kNsPerMs);  // pipe full: try again soon
        break;  // keep the order
      }
    }
    for (const auto& b : pending) {
      if (!b.needs_send) next_event = std::min(next_event, b.sent_ns + options.ack_timeout_ms * kNsPerMs);
    }
    return next_event;
  }

  // The oldest sent batch has waited ack_timeout_ms: presume the shard restarted. A fresh socket
  // drops whatever the old pipe still queued, then every un-acked batch goes again in order.
  void check_ack_timeout() {
    int64_t now = now_ns();
    bool overdue = false;
    for (const auto& b : pending) {
      if (!b.needs_send && now - b.sent_ns >= options.ack_timeout_ms * kNsPerMs) overdue = true;
    }
    if (!overdue) return;
    ++stats.reconnects;
    socket = connect_dealer(ctx, endpoint, options.security);
    for (auto& b : pending) {
      b.needs_send = true;
      b.not_before_ns = 0;
    }
  }

  Batch* find(uint64_t seq) {
    for (auto& b : pending)
      if (b.seq == seq) return &b;
    return nullptr;
  }

  void erase(uint64_t seq) {
    for (auto it = pending.begin(); it != pending.end(); ++it) {
      if (it->seq == seq) {
        recycle(*it);
        pending.erase(it);
        return;
      }
    }
  }

  void handle(const Message& m) {
    const auto& env = m.envelope;
    if (env.type() == v1::INSERT_ACK) {
      const auto& ack = env.insert_ack();
      if (ack.credits() > 0) announced_credits = ack.credits();
      Batch* b = find(ack.batch_seq());
      if (!b) return;  // an ack for an earlier send of a batch already acked
      ++stats.batches_acked;
      stats.items_acked += b->n;
      if (ack.duplicate()) ++stats.duplicates;
      if (options.collect_keys) {
        for (uint64_t k : ack.keys()) acked_keys.push_back(encode_global_key(shard_index, k));
      }
      erase(ack.batch_seq());
      return;
    }
    if (env.type() == v1::ERROR) {
      const int code = env.error().code();
      const uint64_t seq = env.request_id() >> 16;
      Batch* b = find(seq);
      if (is_retryable(code)) {
        if (!b) return;
        ++stats.retryable_errors;
        b->needs_send = true;
        b->not_before_ns = now_ns() + options.retry_backoff_ms * kNsPerMs;
        return;
      }
      if (!b && env.request_id() != 0) return;  // about a send of a batch that was acked since
      if (b) erase(seq);
      throw ReplayError(code, endpoint,
                        env.error().message() + " (table '" + options.table + "', writer '" + options.name +
                            "', batch_seq " + std::to_string(seq) + ")");
    }
    // Anything else is not for a writer: ignore it.
  }

  // Receives replies for up to wait_ms (then drains what else is queued) and fires timers.
  void pump(int wait_ms) {
    auto status = core::recv_message(*socket, &reply, &recv_error, wait_ms);
    while (status != core::RecvStatus::kTimeout) {
      if (status == core::RecvStatus::kInvalid) {
        throw ReplayError(recv_error.code, endpoint, "invalid reply from the shard: " + recv_error.message);
      }
      handle(reply);
      status = core::recv_message(*socket, &reply, &recv_error, 0);
    }
    check_ack_timeout();
  }

  // One round: send what is due, then wait for replies until `deadline_ns` or the next timer.
  void step(int64_t deadline_ns) {
    int64_t next_event = send_due();
    int64_t until = std::min(deadline_ns, next_event);
    int64_t wait_ns = std::clamp<int64_t>(until - now_ns(), 0, 1000 * kNsPerMs);
    int wait_ms = static_cast<int>((wait_ns + kNsPerMs - 1) / kNsPerMs);
    pump(wait_ms);
  }
};

ReplayWriter::ReplayWriter(ReplayWriterOptions options) : impl_(std::make_unique<Impl>()) {
  auto& o = options;
  if (o.endpoints.empty()) throw invalid_option("writer: no shard endpoints");
  if (o.endpoints.size() > kMaxShards) throw invalid_option("writer: more than 65536 shards");
  if (o.shard >= static_cast<int>(o.endpoints.size())) {
    throw invalid_option("writer: shard " + std::to_string(o.shard) + " is out of range (there are " +
                         std::to_string(o.endpoints.size()) + " shards)");
  }
  if (o.credits == 0) throw invalid_option("writer: credits must be >= 1");
  if (o.ack_timeout_ms <= 0 || static_cast<int64_t>(o.ack_timeout_ms) <= static_cast<int64_t>(o.insert_timeout_ms)) {
    throw invalid_option("writer: ack_timeout_ms (" + std::to_string(o.ack_timeout_ms) +
                         ") must exceed insert_timeout_ms (" + std::to_string(o.insert_timeout_ms) + ")");
  }
  if (o.table.empty()) throw invalid_option("writer: no table name");
  if (o.kind == ItemKind::kSequence && o.sequence_length == 0) {
    throw invalid_option("writer: sequence items need sequence_length > 0");
  }
  if (o.name.empty()) o.name = default_writer_name(o.actor_id);
  impl_->shard_index = o.shard >= 0 ? static_cast<uint32_t>(o.shard)
                                    : static_cast<uint32_t>(o.actor_id % o.endpoints.size());
  impl_->endpoint = o.endpoints[impl_->shard_index];
  impl_->options = std::move(options);
  impl_->socket = connect_dealer(impl_->ctx, impl_->endpoint, impl_->options.security);
}

ReplayWriter::~ReplayWriter() = default;

void ReplayWriter::append(const std::vector<core::TensorView>& columns, uint32_t n, const double* priorities,
                          uint64_t policy_version) {
  if (n == 0) throw std::invalid_argument("ReplayWriter::append: no items");
  if (columns.empty()) throw std::invalid_argument("ReplayWriter::append: no columns");
  for (const auto& c : columns) {
    if (c.shape.rank() == 0 || c.shape[0] != static_cast<int64_t>(n)) {
      throw std::invalid_argument("ReplayWriter::append: column '" + std::string(c.name) + "' has shape " +
                                  c.shape.to_string() + ", expected a leading dimension of " + std::to_string(n));
    }
  }
  if (priorities) {
    for (uint32_t i = 0; i < n; ++i) {
      if (!std::isfinite(priorities[i]) || priorities[i] < 0) {
        throw std::invalid_argument("ReplayWriter::append: priority " + std::to_string(i) + " is " +
                                    std::to_string(priorities[i]) + " (must be finite and >= 0)");
      }
    }
  }
  auto& I = *impl_;
  I.rethrow_deferred();
  // Wait for a credit before copying, so at most credits() batches are ever held.
  const int64_t deadline = I.options.block_timeout_ms < 0
                               ? INT64_MAX
                               : now_ns() + static_cast<int64_t>(I.options.block_timeout_ms) * kNsPerMs;
  const int64_t every_ns = std::max(1, I.options.interrupt_every_ms) * kNsPerMs;
  const int64_t waiting_since = now_ns();
  int64_t next_interrupt_check = waiting_since + every_ns;
  while (I.pending.size() >= I.credits()) {
    const int64_t now = now_ns();
    if (now >= deadline) {
      throw ReplayError(v1::DEADLINE_EXCEEDED, I.endpoint,
                        "append blocked for " + std::to_string(I.options.block_timeout_ms) + " ms: " +
                            std::to_string(I.pending.size()) + " batches un-acknowledged (credits " +
                            std::to_string(I.credits()) + ", writer '" + I.options.name + "')");
    }
    if (I.options.interrupt && now >= next_interrupt_check) {
      next_interrupt_check = now + every_ns;
      if (I.options.interrupt())
        throw ReplayError(v1::DEADLINE_EXCEEDED, I.endpoint,
                          "append interrupted after " + std::to_string((now - waiting_since) / kNsPerMs) +
                              " ms of waiting for a credit (" + std::to_string(I.pending.size()) +
                              " batches un-acknowledged, writer '" + I.options.name + "')");
    }
    I.step(I.options.interrupt ? std::min(deadline, next_interrupt_check) : deadline);
  }
  Impl::Batch b;
  b.seq = I.next_seq++;
  b.n = n;
  b.policy_version = policy_version;
  if (priorities) b.priorities.assign(priorities, priorities + n);
  b.columns.reserve(columns.size());
  for (const auto& c : columns) {
    auto bytes = I.buffer(c.nbytes());
    core::copy_tensor(c, bytes->data(), bytes->size());
    b.columns.push_back({std::string(c.name), c.dtype, c.shape, std::move(bytes)});
  }
  I.pending.push_back(std::move(b));
  I.stats.items_appended += n;
  try {
    I.send_due();
    I.pump(0);
  } catch (const ReplayError&) {
    I.deferred = std::current_exception();
  }
}

void ReplayWriter::poll() {
  impl_->rethrow_deferred();
  impl_->send_due();
  impl_->pump(0);
}

void ReplayWriter::flush(int timeout_ms) {
  auto& I = *impl_;
  I.rethrow_deferred();
  const int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ns() + static_cast<int64_t>(timeout_ms) * kNsPerMs;
  while (!I.pending.empty()) {
    if (now_ns() >= deadline) {
      throw ReplayError(v1::DEADLINE_EXCEEDED, I.endpoint,
                        "flush: " + std::to_string(I.pending.size()) + " batches still un-acknowledged after " +
                            std::to_string(timeout_ms) + " ms (oldest batch_seq " +
                            std::to_string(I.pending.front().seq) + ", writer '" + I.options.name + "')");
    }
    I.step(deadline);
  }
}

size_t ReplayWriter::in_flight() const { return impl_->pending.size(); }
uint32_t ReplayWriter::credits() const { return impl_->credits(); }
const std::string& ReplayWriter::endpoint() const { return impl_->endpoint; }
const std::string& ReplayWriter::name() const { return impl_->options.name; }
WriterStats ReplayWriter::stats() const { return impl_->stats; }
std::vector<uint64_t> ReplayWriter::take_acked_keys() {
  std::vector<uint64_t> out;
  out.swap(impl_->acked_keys);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Sampler

struct ReplaySampler::Impl {
  // A request to one shard awaiting its reply. id 0: none.
  struct Outstanding {
    uint64_t id = 0;
    int64_t sent_ns = 0;
    uint32_t count = 0;  // SAMPLE: items asked for
  };
  // What the sampling thread knows about one shard. Thread-owned.
  struct Shard {
    std::string endpoint;
    std::unique_ptr<zmq::socket_t> socket;
    double weight = 0;           // latest sampling weight
    uint64_t size = 0;           // latest item count
    bool known = false;          // a TABLE_INFO or SAMPLE_REPLY has been seen
    int64_t weight_ns = 0;       // when `weight` was reported
    Outstanding info;            // TABLE_INFO in flight
    Outstanding sample;          // SAMPLE in flight (this round)
    uint32_t wanted = 0;         // items still to get this round (beyond `sample`)
    int64_t retry_at_ns = 0;     // a retryable error: send the sample again at this time
    std::vector<Message> replies;  // this round's SAMPLE_REPLYs
  };

  ReplaySamplerOptions options;
  zmq::context_t ctx{1};

  // --- owned by the sampling thread
  std::vector<Shard> shards;
  std::vector<core::TensorSpec> signature;
  std::string signature_from;  // endpoint that reported `signature`
  std::mt19937_64 rng;
  bool ordered = false;             // the table is fifo/lifo: one batch per round, rows in order
  SampledBatch round;               // one round trip's items, dealt into batches
  std::vector<SampledBatch> parts;
  std::vector<size_t> order;
  uint64_t next_id = 1;
  std::vector<uint32_t> counts;
  std::vector<double> draw_weights;
  Message msg;
  core::RecvError recv_error;
  std::vector<zmq::pollitem_t> poll_items;

  // --- shared, guarded by mu
  mutable std::mutex mu;
  std::condition_variable ready_cv;  // a batch, an error or the end
  std::condition_variable space_cv;  // room in the queue, or stop
  std::deque<SampledBatch> ready;    // size <= options.prefetch
  std::vector<SampledBatch> spare;   // recycled buffers
  std::exception_ptr error;
  bool finished = false;             // the thread has ended
  SamplerStats stats;
  std::vector<double> published_weights;

  std::atomic<bool> stopping{false};
  std::thread thread;

  // --- owned by update_priorities() callers (one at a time)
  std::mutex update_mu;
  std::vector<std::unique_ptr<zmq::socket_t>> update_sockets;
  uint64_t update_next_id = 1;

  // ------------------------------------------------------------------------------------------
  // Sampling thread

  void run() {
    try {
      initial_info();
      while (!stopping.load()) {
        {
          std::unique_lock<std::mutex> lock(mu);
          space_cv.wait(lock, [&] { return stopping.load() || ready.size() < options.prefetch; });
          if (stopping.load()) break;
        }
        if (!sample_round(&round)) break;
        deal(round, &parts);
        std::lock_guard<std::mutex> lock(mu);
        for (auto& batch : parts) {
          stats.batches += 1;
          stats.items += batch.size();
          ready.push_back(std::move(batch));
        }
        parts.clear();
        ready_cv.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mu);
    finished = true;
    ready_cv.notify_all();
  }

  // Shuffles the rows of a round and deals them into batches of options.batch_size, each with
  // importance weights normalised over its own rows. Shuffling makes every batch an i.i.d. draw
  // (a round's rows come grouped by shard).
  void deal(const SampledBatch& all, std::vector<SampledBatch>* out) {
    const size_t B = options.batch_size, rows = all.size();
    order.resize(rows);
    for (size_t i = 0; i < rows; ++i) order[i] = i;
    if (!ordered) std::shuffle(order.begin(), order.end(), rng);
    for (size_t start = 0; start < rows; start += B) {
      const size_t n = std::min(B, rows - start);
      SampledBatch b;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!spare.empty()) {
          b = std::move(spare.back());
          spare.pop_back();
        }
      }
      b.keys.resize(n);
      b.probabilities.resize(n);
      b.times_sampled.resize(n);
      b.shard_counts.assign(all.shard_counts.size(), 0);
      b.shard_weights = all.shard_weights;
      b.total_items = all.total_items;
      b.total_weight = all.total_weight;
      b.columns.resize(all.columns.size());
      for (size_t c = 0; c < all.columns.size(); ++c) {
        const auto& src = all.columns[c];
        auto& dst = b.columns[c];
        dst.name = src.name;
        dst.dtype = src.dtype;
        dst.shape = src.shape;
        dst.shape[0] = static_cast<int64_t>(n);
        dst.data.resize(src.data.size() / std::max<size_t>(rows, 1) * n);
      }
      for (size_t i = 0; i < n; ++i) {
        const size_t r = order[start + i];
        b.keys[i] = all.keys[r];
        b.probabilities[i] = all.probabilities[r];
        b.times_sampled[i] = all.times_sampled[r];
        ++b.shard_counts[shard_of_key(all.keys[r])];
        for (size_t c = 0; c < all.columns.size(); ++c) {
          const size_t rb = all.columns[c].data.size() / rows;
          std::memcpy(b.columns[c].data.data() + i * rb, all.columns[c].data.data() + r * rb, rb);
        }
      }
      b.weights.resize(n);
      importance_weights(b.probabilities.data(), n, b.total_items, options.beta, b.weights.data());
      out->push_back(std::move(b));
    }
  }

  void publish_weights() {
    std::lock_guard<std::mutex> lock(mu);
    for (size_t s = 0; s < shards.size(); ++s) published_weights[s] = shards[s].weight;
  }

  void send_info(Shard& sh) {
    core::MessageBuilder m(v1::TABLE_INFO, next_id++);
    m.envelope().set_sender(options.name);
    m.envelope().mutable_table_info()->set_table(options.table);
    uint64_t id = m.envelope().request_id();
    if (core::send_message(*sh.socket, m)) sh.info = {id, now_ns(), 0};
  }

  void send_sample(Shard& sh, uint32_t count) {
    core::MessageBuilder m(v1::SAMPLE, next_id++);
    m.envelope().set_sender(options.name);
    auto* r = m.envelope().mutable_sample();
    r->set_table(options.table);
    r->set_batch_size(count);
    r->set_timeout_ms(options.timeout_ms);
    uint64_t id = m.envelope().request_id();
    if (core::send_message(*sh.socket, m)) {
      sh.sample = {id, now_ns(), count};
    } else {
      sh.wanted += count;  // pipe full: try again on the next pass
      sh.retry_at_ns = now_ns() + 5 * kNsPerMs;
    }
  }

  // Asks every shard for its weight, and waits (up to reply_grace_ms) until all have answered so
  // the first batches are drawn with every shard's weight.
  void initial_info() {
    for (auto& sh : shards) send_info(sh);
    const int64_t until = now_ns() + options.reply_grace_ms * kNsPerMs;
    while (!stopping.load() && now_ns() < until) {
      bool all = true;
      for (const auto& sh : shards) all = all && sh.known;
      if (all) return;
      wait_and_handle(kPollSliceMs);
    }
  }

  // Sends TABLE_INFO to shards whose weight is stale: older than info_refresh_ms, or (while it is
  // zero, so the shard cannot be picked and will not report by itself) older than 100 ms. A
  // request unanswered for reply_grace_ms is sent again on a fresh socket.
  void refresh_info() {
    const int64_t now = now_ns();
    for (auto& sh : shards) {
      if (sh.info.id != 0) {
        if (now - sh.info.sent_ns > options.reply_grace_ms * kNsPerMs) {
          reconnect(sh);
          send_info(sh);
        }
        continue;
      }
      int64_t max_age = (sh.weight > 0 ? options.info_refresh_ms : std::min(options.info_refresh_ms, 100)) * kNsPerMs;
      if (!sh.known || now - sh.weight_ns >= max_age) {
        send_info(sh);
        std::lock_guard<std::mutex> lock(mu);
        ++stats.info_refreshes;
      }
    }
  }

  // A fresh socket: drops the old pipe (and any reply still to come on it). Both outstanding
  // requests are lost with it; callers resend what they need.
  void reconnect(Shard& sh) {
    sh.socket = connect_dealer(ctx, sh.endpoint, options.security);
    sh.info.id = 0;
    if (sh.sample.id != 0) {
      sh.wanted += sh.sample.count;
      sh.sample.id = 0;
    }
  }

  void handle_info(Shard& sh, const Message& m) {
    if (m.envelope.type() == v1::ERROR) {
      const auto& e = m.envelope.error();
      if (!is_retryable(e.code())) throw ReplayError(e.code(), sh.endpoint, e.message());
      return;  // try again at the next refresh
    }
    if (m.envelope.type() != v1::TABLE_INFO_REPLY) {
      throw ReplayError(v1::MALFORMED, sh.endpoint,
                        "expected TABLE_INFO_REPLY, got " + v1::MessageType_Name(m.envelope.type()));
    }
    const auto& t = find_table(m.envelope.table_info_reply(), options.table, sh.endpoint);
    auto sig = specs_from(t.signature());
    if (signature.empty() && signature_from.empty()) {
      signature = std::move(sig);
      signature_from = sh.endpoint;
    } else if (!same_signature(signature, sig)) {
      throw ReplayError(v1::SIGNATURE_MISMATCH, sh.endpoint,
                        "table '" + options.table + "' has signature " + describe_signature(sig) + " here but " +
                            describe_signature(signature) + " on " + signature_from);
    }
    // Order matters for fifo/lifo tables (queues), and a round must not wait for more items than
    // one batch there: deal batches only from uniform/prioritized tables.
    ordered = t.sampler() == "fifo" || t.sampler() == "lifo";
    set_weight(sh, t.priority_mass(), t.size());
  }

  uint32_t per_request() const { return ordered ? 1 : options.batches_per_request; }

  void set_weight(Shard& sh, double weight, uint64_t size) {
    if (!std::isfinite(weight) || weight < 0) {
      throw ReplayError(v1::MALFORMED, sh.endpoint, "sampling weight " + std::to_string(weight) + " is not finite and >= 0");
    }
    sh.weight = weight;
    sh.size = size;
    sh.known = true;
    sh.weight_ns = now_ns();
    publish_weights();
  }

  void check_sample_reply(Shard& sh, const Message& m) {
    const auto& r = m.envelope.sample_reply();
    const size_t count = sh.sample.count;
    auto bad = [&](const std::string& what) {
      throw ReplayError(v1::MALFORMED, sh.endpoint, "SAMPLE_REPLY for " + std::to_string(count) + " items: " + what);
    };
    if (static_cast<size_t>(r.keys_size()) != count) bad(std::to_string(r.keys_size()) + " keys");
    if (static_cast<size_t>(r.probabilities_size()) != count) bad(std::to_string(r.probabilities_size()) + " probabilities");
    if (r.times_sampled_size() != 0 && static_cast<size_t>(r.times_sampled_size()) != count) {
      bad(std::to_string(r.times_sampled_size()) + " times_sampled");
    }
    for (double p : r.probabilities()) {
      if (!std::isfinite(p) || p < 0 || p > 1) bad("probability " + std::to_string(p) + " is outside [0, 1]");
    }
    if (m.tensors.size() != signature.size()) {
      bad(std::to_string(m.tensors.size()) + " columns, the table signature has " + std::to_string(signature.size()));
    }
    try {
      for (size_t c = 0; c < signature.size(); ++c) core::check_tensor(m.tensors[c], signature[c], static_cast<int64_t>(count));
    } catch (const WireError& e) {
      throw ReplayError(e.code(), sh.endpoint, e.what());
    }
  }

  void handle_sample(Shard& sh, Message&& m) {
    if (m.envelope.type() == v1::ERROR) {
      const auto& e = m.envelope.error();
      if (!is_retryable(e.code())) throw ReplayError(e.code(), sh.endpoint, e.message());
      {
        std::lock_guard<std::mutex> lock(mu);
        ++stats.deadline_retries;
      }
      sh.wanted += sh.sample.count;
      sh.sample.id = 0;
      // A DEADLINE_EXCEEDED already waited timeout_ms in the shard (unless that is ~0); the
      // others back off a little.
      const bool waited = e.code() == v1::DEADLINE_EXCEEDED && options.timeout_ms >= 10;
      sh.retry_at_ns = now_ns() + (waited ? 0 : 10 * kNsPerMs);
      return;
    }
    if (m.envelope.type() != v1::SAMPLE_REPLY) {
      throw ReplayError(v1::MALFORMED, sh.endpoint,
                        "expected SAMPLE_REPLY, got " + v1::MessageType_Name(m.envelope.type()));
    }
    check_sample_reply(sh, m);
    set_weight(sh, m.envelope.sample_reply().priority_mass(), m.envelope.sample_reply().table_size());
    sh.sample.id = 0;
    sh.replies.push_back(std::move(m));
  }

  // Receives replies on every shard socket for up to wait_ms and dispatches them by request id;
  // replies to requests that were given up are dropped.
  void wait_and_handle(int wait_ms) {
    poll_items.resize(shards.size());
    for (size_t s = 0; s < shards.size(); ++s) {
      poll_items[s] = {static_cast<void*>(*shards[s].socket), 0, ZMQ_POLLIN, 0};
    }
    try {
      zmq::poll(poll_items.data(), poll_items.size(), std::chrono::milliseconds(wait_ms));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
      return;
    }
    for (size_t s = 0; s < shards.size(); ++s) {
      if (!(poll_items[s].revents & ZMQ_POLLIN)) continue;
      Shard& sh = shards[s];
      for (;;) {
        auto status = core::recv_message(*sh.socket, &msg, &recv_error, 0);
        if (status == core::RecvStatus::kTimeout) break;
        if (status == core::RecvStatus::kInvalid) {
          throw ReplayError(recv_error.code, sh.endpoint, "invalid reply from the shard: " + recv_error.message);
        }
        const uint64_t id = msg.envelope.request_id();
        if (id != 0 && id == sh.info.id) {
          sh.info.id = 0;
          handle_info(sh, msg);
        } else if (id != 0 && id == sh.sample.id) {
          handle_sample(sh, std::move(msg));
          msg = Message();
        }
      }
    }
  }

  // Draws the shards of a batch, gets the items from each (in parallel), and assembles them.
  // False when stopped.
  bool sample_round(SampledBatch* out) {
    for (auto& sh : shards) {
      sh.replies.clear();
      sh.wanted = 0;
      sh.sample.id = 0;
    }
    // Draw: wait for some weight to draw with.
    for (;;) {
      if (stopping.load()) return false;
      refresh_info();
      draw_weights.resize(shards.size());
      double total = 0;
      for (size_t s = 0; s < shards.size(); ++s) total += (draw_weights[s] = shards[s].weight);
      if (total > 0) break;
      wait_and_handle(kPollSliceMs);
    }
    split_across_shards(draw_weights, options.batch_size * per_request(), rng, &counts);
    for (size_t s = 0; s < shards.size(); ++s) shards[s].wanted = counts[s];

    // Collect. A shard answering DEADLINE_EXCEEDED is asked again (its weight says it has
    // items; the rate limiter will let them out), so the draw above stays the one that counts.
    for (;;) {
      if (stopping.load()) return false;
      const int64_t now = now_ns();
      bool done = true;
      int64_t next_timer = now + kPollSliceMs * kNsPerMs;
      for (auto& sh : shards) {
        if (sh.sample.id != 0 &&
            now - sh.sample.sent_ns > (static_cast<int64_t>(options.timeout_ms) + options.reply_grace_ms) * kNsPerMs) {
          reconnect(sh);  // no reply: the shard may have restarted
          std::lock_guard<std::mutex> lock(mu);
          ++stats.lost_replies;
        }
        if (sh.sample.id == 0 && sh.wanted > 0 && sh.known && sh.weight == 0) redistribute(sh);
        if (sh.sample.id == 0 && sh.wanted > 0) {
          if (sh.retry_at_ns <= now) {
            uint32_t n = sh.wanted;
            sh.wanted = 0;
            send_sample(sh, n);
          } else {
            next_timer = std::min(next_timer, sh.retry_at_ns);
          }
        }
        if (sh.sample.id != 0 || sh.wanted > 0) done = false;
      }
      if (done) break;
      refresh_info();
      int wait_ms = static_cast<int>(std::max<int64_t>(0, (next_timer - now + kNsPerMs - 1) / kNsPerMs));
      wait_and_handle(std::min(wait_ms, kPollSliceMs));
    }
    assemble(out);
    return true;
  }

  // A shard that could not serve its share (rate limited) and now reports weight 0 (emptied,
  // e.g. restarted without a checkpoint) hands its share to the others, drawn by their weights.
  // With no other weight either, it keeps its share and is asked again.
  void redistribute(Shard& from) {
    draw_weights.resize(shards.size());
    double total = 0;
    for (size_t s = 0; s < shards.size(); ++s) {
      draw_weights[s] = &shards[s] == &from ? 0.0 : shards[s].weight;
      total += draw_weights[s];
    }
    if (!(total > 0)) return;
    split_across_shards(draw_weights, from.wanted, rng, &counts);
    from.wanted = 0;
    for (size_t s = 0; s < shards.size(); ++s) shards[s].wanted += counts[s];
  }

  void assemble(SampledBatch* out) {
    const size_t S = shards.size();
    const uint32_t B = options.batch_size * per_request();
    // Each shard's weight for this batch: the one its (last) reply reported, else the latest.
    out->shard_weights.assign(S, 0.0);
    out->shard_counts.assign(S, 0);
    out->total_items = 0;
    double total = 0;
    for (size_t s = 0; s < S; ++s) {
      const auto& sh = shards[s];
      double w = sh.weight;
      uint64_t size = sh.size;
      if (!sh.replies.empty()) {
        w = sh.replies.back().envelope.sample_reply().priority_mass();
        size = sh.replies.back().envelope.sample_reply().table_size();
      }
      out->shard_weights[s] = w;
      out->total_items += size;
      total += w;
    }
    out->total_weight = total;

    out->keys.resize(B);
    out->probabilities.resize(B);
    out->weights.resize(B);
    out->times_sampled.assign(B, 0);
    out->columns.resize(signature.size());
    // Per-item shape from the first reply (a -1 in the signature matches any size; every shard
    // must then agree, which check_tensor does not ensure, so it is compared here).
    const Message* first = nullptr;
    for (const auto& sh : shards)
      if (!sh.replies.empty() && !first) first = &sh.replies.front();
    std::vector<size_t> row_bytes(signature.size());
    for (size_t c = 0; c < signature.size(); ++c) {
      auto& col = out->columns[c];
      const auto& v = first->tensors[c];
      col.name = signature[c].name;
      col.dtype = signature[c].dtype;
      col.shape = v.shape;
      col.shape[0] = B;
      row_bytes[c] = static_cast<size_t>(v.shape.num_elements() / std::max<int64_t>(v.shape[0], 1)) *
                     core::dtype_size(v.dtype);
      col.data.resize(row_bytes[c] * B);
    }
    size_t row = 0;
    for (size_t s = 0; s < S; ++s) {
      const auto& sh = shards[s];
      for (const auto& m : sh.replies) {
        const auto& r = m.envelope.sample_reply();
        const double mass = r.priority_mass();
        // Other shards as of this batch, this shard as of this reply.
        const double W = total - out->shard_weights[s] + mass;
        const size_t n = static_cast<size_t>(r.keys_size());
        for (size_t i = 0; i < n; ++i) {
          out->keys[row + i] = encode_global_key(static_cast<uint32_t>(s), r.keys(static_cast<int>(i)));
          out->probabilities[row + i] = global_probability(r.probabilities(static_cast<int>(i)), mass, W);
          if (r.times_sampled_size()) out->times_sampled[row + i] = r.times_sampled(static_cast<int>(i));
        }
        for (size_t c = 0; c < signature.size(); ++c) {
          const auto& v = m.tensors[c];
          for (size_t d = 1; d < v.shape.rank(); ++d) {
            if (v.shape[d] != out->columns[c].shape[d]) {
              throw ReplayError(v1::SIGNATURE_MISMATCH, sh.endpoint,
                                "column '" + signature[c].name + "' has shape " + v.shape.to_string() +
                                    ", other shards returned rows of " + out->columns[c].shape.to_string());
            }
          }
          core::copy_tensor(v, out->columns[c].data.data() + row * row_bytes[c], row_bytes[c] * n);
        }
        out->shard_counts[s] += static_cast<uint32_t>(n);
        row += n;
      }
    }
    importance_weights(out->probabilities.data(), B, out->total_items, options.beta, out->weights.data());
    std::lock_guard<std::mutex> lock(mu);
    for (size_t s = 0; s < S; ++s) stats.items_per_shard[s] += out->shard_counts[s];
  }
};

ReplaySampler::ReplaySampler(ReplaySamplerOptions options) : impl_(std::make_unique<Impl>()) {
  const auto& o = options;
  if (o.endpoints.empty()) throw invalid_option("sampler: no shard endpoints");
  if (o.endpoints.size() > kMaxShards) throw invalid_option("sampler: more than 65536 shards");
  if (o.batch_size == 0) throw invalid_option("sampler: batch_size must be >= 1");
  if (o.prefetch == 0) throw invalid_option("sampler: prefetch must be >= 1");
  if (o.batches_per_request == 0) throw invalid_option("sampler: batches_per_request must be >= 1");
  if (static_cast<uint64_t>(o.batch_size) * o.batches_per_request > 65536) {
    throw invalid_option("sampler: batch_size * batches_per_request must be <= 65536 (a shard's max_batch)");
  }
  if (o.table.empty()) throw invalid_option("sampler: no table name");
  if (!(o.beta >= 0) || !std::isfinite(o.beta)) throw invalid_option("sampler: beta must be finite and >= 0");
  if (o.info_refresh_ms <= 0 || o.reply_grace_ms <= 0) {
    throw invalid_option("sampler: info_refresh_ms and reply_grace_ms must be > 0");
  }
  auto& I = *impl_;
  I.options = std::move(options);
  I.rng.seed(I.options.seed ? I.options.seed : (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}());
  I.shards.resize(I.options.endpoints.size());
  for (size_t s = 0; s < I.shards.size(); ++s) {
    I.shards[s].endpoint = I.options.endpoints[s];
    I.shards[s].socket = connect_dealer(I.ctx, I.shards[s].endpoint, I.options.security);
  }
  I.update_sockets.resize(I.shards.size());
  I.published_weights.assign(I.shards.size(), 0.0);
  I.stats.items_per_shard.assign(I.shards.size(), 0);
  I.thread = std::thread([this] { impl_->run(); });
}

ReplaySampler::~ReplaySampler() { stop(); }

void ReplaySampler::stop() {
  auto& I = *impl_;
  {
    std::lock_guard<std::mutex> lock(I.mu);
    I.stopping.store(true);
    I.space_cv.notify_all();
    I.ready_cv.notify_all();
  }
  if (I.thread.joinable()) I.thread.join();
}

bool ReplaySampler::next(SampledBatch* out, int timeout_ms) {
  auto& I = *impl_;
  std::unique_lock<std::mutex> lock(I.mu);
  auto ready = [&] { return !I.ready.empty() || I.finished || I.stopping.load(); };
  if (timeout_ms < 0) {
    I.ready_cv.wait(lock, ready);
  } else {
    I.ready_cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), ready);
  }
  if (!I.ready.empty()) {
    std::swap(*out, I.ready.front());
    I.spare.push_back(std::move(I.ready.front()));
    I.ready.pop_front();
    I.space_cv.notify_all();
    return true;
  }
  if (I.error) std::rethrow_exception(I.error);
  return false;
}

PriorityUpdateResult ReplaySampler::update_priorities(const std::vector<uint64_t>& keys,
                                                      const std::vector<double>& priorities, int timeout_ms) {
  if (keys.size() != priorities.size()) {
    throw std::invalid_argument("update_priorities: " + std::to_string(keys.size()) + " keys but " +
                                std::to_string(priorities.size()) + " priorities");
  }
  return update_priorities(keys.data(), priorities.data(), keys.size(), timeout_ms);
}

PriorityUpdateResult ReplaySampler::update_priorities(const uint64_t* keys, const double* priorities, size_t n,
                                                      int timeout_ms) {
  auto& I = *impl_;
  const size_t S = I.shards.size();
  for (size_t i = 0; i < n; ++i) {
    if (shard_of_key(keys[i]) >= S) {
      throw std::invalid_argument("update_priorities: key " + std::to_string(keys[i]) + " names shard " +
                                  std::to_string(shard_of_key(keys[i])) + ", there are " + std::to_string(S));
    }
    if (!std::isfinite(priorities[i]) || priorities[i] < 0) {
      throw std::invalid_argument("update_priorities: priority " + std::to_string(priorities[i]) + " of key " +
                                  std::to_string(keys[i]) + " is not finite and >= 0");
    }
  }
  std::lock_guard<std::mutex> guard(I.update_mu);
  // One request per shard that owns some of the keys.
  std::vector<v1::UpdatePriorities> bodies;
  std::vector<size_t> shard_of_request;
  std::vector<int> request_of_shard(S, -1);
  for (size_t i = 0; i < n; ++i) {
    size_t s = shard_of_key(keys[i]);
    if (request_of_shard[s] < 0) {
      request_of_shard[s] = static_cast<int>(bodies.size());
      bodies.emplace_back();
      bodies.back().set_table(I.options.table);
      shard_of_request.push_back(s);
    }
    auto& u = bodies[static_cast<size_t>(request_of_shard[s])];
    u.add_keys(local_key_of(keys[i]));
    u.add_priorities(priorities[i]);
  }
  PriorityUpdateResult result;
  const size_t R = bodies.size();
  if (R == 0) return result;

  const int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ns() + static_cast<int64_t>(timeout_ms) * kNsPerMs;
  // A request answered with a retryable error is sent again as a new request (priority updates
  // are idempotent).
  std::vector<bool> done(R, false), need_send(R, true);
  std::vector<uint64_t> ids(R, 0);
  Message reply;
  core::RecvError rerr;
  size_t remaining = R;
  while (remaining > 0) {
    for (size_t r = 0; r < R; ++r) {
      if (done[r] || !need_send[r]) continue;
      size_t s = shard_of_request[r];
      if (!I.update_sockets[s]) I.update_sockets[s] = connect_dealer(I.ctx, I.shards[s].endpoint, I.options.security);
      const uint64_t id = I.update_next_id++;
      core::MessageBuilder m(v1::UPDATE_PRIORITIES, id);
      m.envelope().set_sender(I.options.name);
      *m.envelope().mutable_update_priorities() = bodies[r];
      if (core::send_message(*I.update_sockets[s], m)) {
        ids[r] = id;
        need_send[r] = false;
      }
    }
    if (now_ns() >= deadline) {
      std::string which;
      for (size_t r = 0; r < R; ++r) {
        if (done[r]) continue;
        size_t s = shard_of_request[r];
        which += (which.empty() ? "" : ", ") + I.shards[s].endpoint;
        I.update_sockets[s].reset();  // drop late replies with the socket
      }
      throw ReplayError(v1::DEADLINE_EXCEEDED, which,
                        "UPDATE_PRIORITIES not acknowledged within " + std::to_string(timeout_ms) + " ms");
    }
    std::vector<zmq::pollitem_t> items;
    std::vector<size_t> item_request;
    for (size_t r = 0; r < R; ++r) {
      if (done[r] || need_send[r]) continue;
      items.push_back({static_cast<void*>(*I.update_sockets[shard_of_request[r]]), 0, ZMQ_POLLIN, 0});
      item_request.push_back(r);
    }
    int64_t wait_ns = std::min<int64_t>(deadline - now_ns(), kPollSliceMs * kNsPerMs);
    if (items.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    try {
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(std::max<int64_t>(0, wait_ns / kNsPerMs)));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
      continue;
    }
    for (size_t k = 0; k < items.size(); ++k) {
      if (!(items[k].revents & ZMQ_POLLIN)) continue;
      size_t r = item_request[k];
      size_t s = shard_of_request[r];
      const std::string& endpoint = I.shards[s].endpoint;
      while (!done[r]) {
        auto status = core::recv_message(*I.update_sockets[s], &reply, &rerr, 0);
        if (status == core::RecvStatus::kTimeout) break;
        if (status == core::RecvStatus::kInvalid) {
          throw ReplayError(rerr.code, endpoint, "invalid reply from the shard: " + rerr.message);
        }
        if (reply.envelope.request_id() != ids[r]) continue;  // late reply to an earlier call
        if (reply.envelope.type() == v1::ERROR) {
          const auto& e = reply.envelope.error();
          if (is_retryable(e.code())) {
            need_send[r] = true;
            break;
          }
          throw ReplayError(e.code(), endpoint, e.message());
        }
        if (reply.envelope.type() != v1::UPDATE_PRIORITIES_ACK) {
          throw ReplayError(v1::MALFORMED, endpoint,
                            "expected UPDATE_PRIORITIES_ACK, got " + v1::MessageType_Name(reply.envelope.type()));
        }
        result.updated += reply.envelope.update_priorities_ack().updated();
        result.unknown_keys += reply.envelope.update_priorities_ack().unknown_keys();
        done[r] = true;
        --remaining;
      }
    }
  }
  return result;
}

size_t ReplaySampler::num_shards() const { return impl_->shards.size(); }

std::vector<double> ReplaySampler::shard_weights() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->published_weights;
}

SamplerStats ReplaySampler::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}

// ---------------------------------------------------------------------------------------------
// Admin

ShardInfo shard_info(const std::string& endpoint, const std::string& table, int timeout_ms,
                     const ClientSecurity& security) {
  core::MessageBuilder m(v1::TABLE_INFO, 1);
  m.envelope().set_sender("orchard-admin");
  m.envelope().mutable_table_info()->set_table(table);
  Message reply = admin_request(endpoint, m, v1::TABLE_INFO_REPLY, timeout_ms, security);
  const auto& r = reply.envelope.table_info_reply();
  ShardInfo info;
  info.endpoint = endpoint;
  info.shard = r.shard();
  info.rejected_messages = r.rejected_messages();
  if (!table.empty()) {
    info.tables.push_back(table_from(find_table(r, table, endpoint)));
  } else {
    for (const auto& t : r.tables()) info.tables.push_back(table_from(t));
  }
  return info;
}

std::vector<ShardTableInfo> table_info(const std::string& endpoint, const std::string& table, int timeout_ms,
                                       const ClientSecurity& security) {
  return shard_info(endpoint, table, timeout_ms, security).tables;
}

CheckpointResult checkpoint(const std::string& endpoint, const std::string& path, int timeout_ms,
                            const ClientSecurity& security) {
  core::MessageBuilder m(v1::CHECKPOINT, 1);
  m.envelope().set_sender("orchard-admin");
  m.envelope().mutable_checkpoint()->set_path(path);
  Message reply = admin_request(endpoint, m, v1::CHECKPOINT_REPLY, timeout_ms, security);
  const auto& r = reply.envelope.checkpoint_reply();
  return {r.path(), r.items(), r.bytes()};
}

}  // namespace orchard::replay
