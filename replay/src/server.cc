#include "orchard/replay/server.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "orchard/core/config.h"
#include "orchard/core/error.h"
#include "orchard/core/shutdown.h"

namespace orchard::replay {
namespace {

namespace v1 = orchard::v1;

constexpr char kCheckpointMagic[8] = {'O', 'R', 'C', 'H', 'C', 'K', 'P', '1'};

// A bounded queue of requests for one worker pool; close() wakes everyone.
class WorkQueue {
 public:
  explicit WorkQueue(size_t capacity) : capacity_(capacity) {}
  bool push(core::Message&& m) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || items_.size() >= capacity_) return false;
    items_.push_back(std::move(m));
    cv_.notify_one();
    return true;
  }
  // False once closed and empty.
  bool pop(core::Message* out) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return closed_ || !items_.empty(); });
    if (items_.empty()) return false;
    *out = std::move(items_.front());
    items_.pop_front();
    return true;
  }
  void close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<core::Message> items_;
  size_t capacity_;
  bool closed_ = false;
};

// Per-writer progress: for each recent batch_seq, how many of its items are in the table.
// Resent batches skip what is already in, so a resend never duplicates items.
class DedupState {
 public:
  static constexpr size_t kWindow = 1024;  // recent batches remembered per sender

  uint32_t done(const std::string& sender, uint64_t seq) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = senders_.find(sender);
    if (it == senders_.end()) return 0;
    auto jt = it->second.find(seq);
    return jt == it->second.end() ? 0 : jt->second;
  }
  void set(const std::string& sender, uint64_t seq, uint32_t done) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& m = senders_[sender];
    m[seq] = done;
    while (m.size() > kWindow) m.erase(m.begin());
  }
  void save(std::ostream& out) {
    std::lock_guard<std::mutex> lock(mu_);
    write_u32(out, static_cast<uint32_t>(senders_.size()));
    for (const auto& [sender, m] : senders_) {
      write_str(out, sender);
      write_u32(out, static_cast<uint32_t>(m.size()));
      for (const auto& [seq, done] : m) {
        out.write(reinterpret_cast<const char*>(&seq), sizeof(seq));
        write_u32(out, done);
      }
    }
  }
  bool load(std::istream& in) {
    std::lock_guard<std::mutex> lock(mu_);
    senders_.clear();
    uint32_t n;
    if (!read_u32(in, &n)) return false;
    for (uint32_t i = 0; i < n; ++i) {
      std::string sender;
      uint32_t count;
      if (!read_str(in, &sender) || !read_u32(in, &count)) return false;
      auto& m = senders_[sender];
      for (uint32_t j = 0; j < count; ++j) {
        uint64_t seq;
        uint32_t done;
        if (!in.read(reinterpret_cast<char*>(&seq), sizeof(seq)) || !read_u32(in, &done)) return false;
        m[seq] = done;
      }
    }
    return true;
  }

  static void write_u32(std::ostream& out, uint32_t v) { out.write(reinterpret_cast<const char*>(&v), sizeof(v)); }
  static bool read_u32(std::istream& in, uint32_t* v) {
    return static_cast<bool>(in.read(reinterpret_cast<char*>(v), sizeof(*v)));
  }
  static void write_str(std::ostream& out, const std::string& s) {
    write_u32(out, static_cast<uint32_t>(s.size()));
    out.write(s.data(), static_cast<std::streamsize>(s.size()));
  }
  static bool read_str(std::istream& in, std::string* s) {
    uint32_t n;
    if (!read_u32(in, &n) || n > (1u << 20)) return false;
    s->resize(n);
    return static_cast<bool>(in.read(s->data(), n));
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::map<uint64_t, uint32_t>> senders_;
};

bool finite_nonneg(double p) { return std::isfinite(p) && p >= 0; }

std::string join_names(const std::vector<TableOptions>& tables) {
  std::string s;
  for (const auto& t : tables) s += (s.empty() ? "" : ", ") + t.name;
  return s;
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

uint32_t crc32(const void* data, size_t size, uint32_t crc) {
  static uint32_t table[256];
  static bool init = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)init;
  crc = ~crc;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

ServerOptions ServerOptions::parse(const core::ConfigNode& r) {
  r.check_keys({"shards", "tables", "checkpoint_dir", "checkpoint_interval_s", "keep_checkpoints", "insert_workers",
                "sample_workers", "credits", "insert_timeout_ms", "max_batch", "max_message_mb", "curve_key_file",
                // how the orchestrator starts the shard processes (run spec), not server settings:
                "cpus", "env"});
  ServerOptions o;
  for (const auto& t : r["tables"].elements()) o.tables.push_back(TableOptions::parse(t));
  if (o.tables.empty()) throw ConfigError(r.where() + ": replay.tables must list at least one table");
  for (size_t i = 0; i < o.tables.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (o.tables[i].name == o.tables[j].name) {
        throw ConfigError(r.where() + ": replay.tables: table name '" + o.tables[i].name + "' is used twice");
      }
    }
  }
  o.checkpoint_dir = r.get_string("checkpoint_dir", "");
  o.checkpoint_interval_s = r.get_double("checkpoint_interval_s", o.checkpoint_interval_s, 0, 1e7);
  o.keep_checkpoints = static_cast<int>(r.get_int("keep_checkpoints", o.keep_checkpoints, 1, 1000));
  o.insert_workers = static_cast<int>(r.get_int("insert_workers", o.insert_workers, 1, 64));
  o.sample_workers = static_cast<int>(r.get_int("sample_workers", o.sample_workers, 1, 64));
  // At most the de-duplication window, so a resend is always recognised.
  o.credits = static_cast<uint32_t>(r.get_int("credits", o.credits, 1, 1024));
  o.default_insert_timeout_ms =
      static_cast<uint32_t>(r.get_int("insert_timeout_ms", o.default_insert_timeout_ms, 1, o.max_timeout_ms));
  o.max_batch = static_cast<uint32_t>(r.get_int("max_batch", o.max_batch, 1, 1 << 24));
  o.max_message_bytes = r.get_int("max_message_mb", o.max_message_bytes >> 20, 1, 1 << 16) << 20;
  o.curve_key_file = r.get_string("curve_key_file", "");
  return o;
}

struct ShardServer::Impl {
  ServerOptions opts;
  zmq::context_t ctx{2};
  zmq::socket_t frontend{ctx, zmq::socket_type::router};
  zmq::socket_t replies{ctx, zmq::socket_type::pull};
  std::string endpoint;
  std::string replies_endpoint;
  std::vector<std::unique_ptr<Table>> tables;
  std::vector<std::unique_ptr<WorkQueue>> insert_queues;
  std::unique_ptr<WorkQueue> sample_queue;
  std::vector<std::thread> workers;
  std::thread checkpointer;
  DedupState dedup;
  std::atomic<bool> stopping{false};
  std::mutex checkpoint_mu;  // one checkpoint at a time
  std::mutex cp_wait_mu;
  std::condition_variable cp_wait_cv;
  uint64_t checkpoint_seq = 0;
  std::atomic<uint64_t> messages{0}, rejected{0}, inserts{0}, samples{0}, checkpoints{0};

  Table* find(const std::string& name) {
    for (auto& t : tables)
      if (t->options().name == name) return t.get();
    return nullptr;
  }

  std::string shard_dir() const { return opts.checkpoint_dir + "/" + opts.name; }

  // ------------------------------------------------------------------------------------------
  // Checkpoints

  std::string write_checkpoint(const std::string& path_override) {
    std::lock_guard<std::mutex> lock(checkpoint_mu);
    std::string dir = shard_dir();
    std::string path;
    if (!path_override.empty()) {
      path = path_override;
    } else {
      if (opts.checkpoint_dir.empty()) return "";
      ::mkdir(opts.checkpoint_dir.c_str(), 0755);
      ::mkdir(dir.c_str(), 0755);
      char name[64];
      std::snprintf(name, sizeof(name), "/ckpt-%010llu.orchk", static_cast<unsigned long long>(++checkpoint_seq));
      path = dir + name;
    }
    // The dedup state is taken before the tables: a checkpoint may then claim fewer items of a
    // batch than it holds (a resend duplicates a few: at-least-once), never more (no loss).
    std::ostringstream body;
    body.write(kCheckpointMagic, sizeof(kCheckpointMagic));
    body.write(reinterpret_cast<const char*>(&checkpoint_seq), sizeof(checkpoint_seq));
    dedup.save(body);
    DedupState::write_u32(body, static_cast<uint32_t>(tables.size()));
    for (auto& t : tables) {
      std::ostringstream blob;
      t->save(blob);
      std::string b = blob.str();
      DedupState::write_str(body, t->options().name);
      uint64_t n = b.size();
      body.write(reinterpret_cast<const char*>(&n), sizeof(n));
      body.write(b.data(), static_cast<std::streamsize>(b.size()));
    }
    std::string bytes = body.str();
    uint32_t crc = crc32(bytes.data(), bytes.size());
    std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) throw Error(opts.name + ": cannot write checkpoint " + tmp + ": " + std::strerror(errno));
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      out.write(reinterpret_cast<const char*>(&crc), sizeof(crc));
      out.flush();
      if (!out) throw Error(opts.name + ": writing checkpoint " + tmp + " failed");
    }
    fsync_path(tmp);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      throw Error(opts.name + ": cannot rename checkpoint to " + path + ": " + std::strerror(errno));
    }
    fsync_path(path.substr(0, path.rfind('/')));
    ++checkpoints;
    if (path_override.empty()) prune_checkpoints();
    return path;
  }

  std::vector<std::string> list_checkpoints() const {
    std::vector<std::string> files;
    DIR* d = ::opendir(shard_dir().c_str());
    if (!d) return files;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.rfind("ckpt-", 0) == 0 && n.size() > 6 && n.compare(n.size() - 6, 6, ".orchk") == 0) {
        files.push_back(shard_dir() + "/" + n);
      }
    }
    ::closedir(d);
    std::sort(files.begin(), files.end());  // zero-padded sequence numbers: oldest first
    return files;
  }

  void prune_checkpoints() {
    auto files = list_checkpoints();
    while (files.size() > static_cast<size_t>(opts.keep_checkpoints)) {
      ::unlink(files.front().c_str());
      files.erase(files.begin());
    }
  }

  // Loads one checkpoint file; returns "" on success or why it was not usable.
  std::string load_checkpoint(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return "cannot open";
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.size() < sizeof(kCheckpointMagic) + 12) return "truncated";
    uint32_t crc;
    std::memcpy(&crc, bytes.data() + bytes.size() - 4, 4);
    bytes.resize(bytes.size() - 4);
    if (crc32(bytes.data(), bytes.size()) != crc) return "checksum mismatch (torn or corrupt file)";
    if (std::memcmp(bytes.data(), kCheckpointMagic, sizeof(kCheckpointMagic)) != 0) return "not an Orchard checkpoint";
    std::istringstream s(bytes.substr(sizeof(kCheckpointMagic)));
    uint64_t seq;
    s.read(reinterpret_cast<char*>(&seq), sizeof(seq));
    DedupState staged;
    if (!staged.load(s)) return "corrupt writer state";
    uint32_t n_tables;
    if (!DedupState::read_u32(s, &n_tables)) return "truncated";
    std::vector<std::pair<std::string, std::string>> blobs;
    for (uint32_t i = 0; i < n_tables; ++i) {
      std::string name;
      uint64_t n;
      if (!DedupState::read_str(s, &name) || !s.read(reinterpret_cast<char*>(&n), sizeof(n))) return "truncated";
      std::string b(n, '\0');
      if (!s.read(b.data(), static_cast<std::streamsize>(n))) return "truncated";
      blobs.emplace_back(std::move(name), std::move(b));
    }
    for (auto& [name, blob] : blobs) {
      Table* t = find(name);
      if (!t) {
        spdlog::warn("{}: checkpoint {} has table '{}', which the run spec no longer has; skipped", opts.name, path,
                     name);
        continue;
      }
      std::istringstream bs(blob);
      std::string warning;
      try {
        t->load(bs, &warning);
      } catch (const std::exception& e) {
        return "table '" + name + "': " + e.what();
      }
      if (!warning.empty()) {
        spdlog::warn("{}: table '{}': run spec settings differ from checkpoint {}: {} (the run spec wins)", opts.name,
                     name, path, warning);
      }
    }
    std::ostringstream dd;
    staged.save(dd);
    std::istringstream di(dd.str());
    dedup.load(di);
    checkpoint_seq = seq;
    return "";
  }

  void restore_latest() {
    if (opts.checkpoint_dir.empty()) return;
    auto files = list_checkpoints();
    for (auto it = files.rbegin(); it != files.rend(); ++it) {
      std::string why = load_checkpoint(*it);
      if (why.empty()) {
        uint64_t items = 0;
        for (auto& t : tables) items += t->stats().size;
        spdlog::info("{}: restored checkpoint {} ({} items)", opts.name, *it, items);
        // Numbering continues after the newest file, even a corrupt one.
        for (const auto& f : files) {
          unsigned long long n = 0;
          std::sscanf(f.substr(f.rfind('/') + 1).c_str(), "ckpt-%llu", &n);
          checkpoint_seq = std::max<uint64_t>(checkpoint_seq, n);
        }
        return;
      }
      spdlog::warn("{}: checkpoint {} is not usable: {}; trying an older one", opts.name, *it, why);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Requests

  void reply_error(zmq::socket_t& out, const core::Message& m, v1::ErrorCode code, const std::string& msg) {
    core::send_error(out, &m.routing, m.envelope.request_id(), code, msg, opts.name);
  }

  void handle_insert(zmq::socket_t& out, core::Message& m) {
    const auto& b = m.envelope.insert();
    Table* t = find(b.table());
    if (!t) {
      ++rejected;
      return reply_error(out, m, v1::NOT_FOUND, "unknown table '" + b.table() + "' (tables: " + join_names(opts.tables) + ")");
    }
    const auto& sig = t->options().signature;
    const uint32_t n = b.num_items();
    try {
      if (n == 0 || n > opts.max_batch) {
        throw WireError(v1::INVALID_ARGUMENT, "num_items " + std::to_string(n) + " is outside [1, " +
                                                  std::to_string(opts.max_batch) + "]");
      }
      if (m.tensors.size() != sig.size()) {
        throw WireError(v1::SIGNATURE_MISMATCH, "table '" + b.table() + "' has " + std::to_string(sig.size()) +
                                                    " columns, the batch has " + std::to_string(m.tensors.size()));
      }
      for (size_t c = 0; c < sig.size(); ++c) core::check_tensor(m.tensors[c], sig[c], n);
      if (b.priorities_size() != 0 && static_cast<uint32_t>(b.priorities_size()) != n) {
        throw WireError(v1::INVALID_ARGUMENT, std::to_string(b.priorities_size()) + " priorities for " +
                                                  std::to_string(n) + " items");
      }
      for (int i = 0; i < b.priorities_size(); ++i) {
        if (!finite_nonneg(b.priorities(i))) {
          throw WireError(v1::INVALID_ARGUMENT, "priority " + std::to_string(i) + " is " +
                                                    std::to_string(b.priorities(i)) + " (must be finite and >= 0)");
        }
      }
    } catch (const WireError& e) {
      ++rejected;
      return reply_error(out, m, static_cast<v1::ErrorCode>(e.code()), "table '" + b.table() + "': " + e.what());
    }
    const std::string& sender = m.envelope.sender();
    uint32_t done = dedup.done(sender, b.batch_seq());
    std::vector<uint64_t> keys;
    core::MessageBuilder ack(v1::INSERT_ACK, m.envelope.request_id());
    ack.envelope().set_sender(opts.name);
    auto* a = ack.envelope().mutable_insert_ack();
    a->set_batch_seq(b.batch_seq());
    a->set_credits(opts.credits);
    if (done >= n) {
      a->set_num_items(n);
      a->set_duplicate(true);
      core::send_message(out, ack, &m.routing);
      return;
    }
    // Items [done, n) still need inserting: slice the columns.
    std::vector<core::TensorView> cols(m.tensors.begin(), m.tensors.end());
    for (auto& c : cols) {
      size_t row = c.nbytes() / n;
      c.data = static_cast<const uint8_t*>(c.data) + row * done;
      c.shape[0] = n - done;
    }
    uint32_t timeout = b.timeout_ms() ? std::min(b.timeout_ms(), opts.max_timeout_ms) : opts.default_insert_timeout_ms;
    size_t inserted = 0;
    Status st = t->insert(cols, n - done, b.priorities_size() ? b.priorities().data() + done : nullptr,
                          core::Deadline::after_ms(timeout), &keys, &inserted);
    done += static_cast<uint32_t>(inserted);
    dedup.set(sender, b.batch_seq(), done);
    inserts += inserted;
    if (st == Status::kOk) {
      a->set_num_items(n);
      for (uint64_t k : keys) a->add_keys(k);
      core::send_message(out, ack, &m.routing);
    } else if (st == Status::kDeadlineExceeded) {
      reply_error(out, m, v1::DEADLINE_EXCEEDED,
                  "table '" + b.table() + "': the rate limiter kept the insert out for " + std::to_string(timeout) +
                      " ms; " + std::to_string(done) + " of " + std::to_string(n) +
                      " items are in (resend the batch to continue)");
    } else {
      reply_error(out, m, v1::UNAVAILABLE, opts.name + " is shutting down");
    }
  }

  void handle_sample(zmq::socket_t& out, core::Message& m, SampleBatch* sb) {
    const auto& r = m.envelope.sample();
    Table* t = find(r.table());
    if (!t) {
      ++rejected;
      return reply_error(out, m, v1::NOT_FOUND, "unknown table '" + r.table() + "' (tables: " + join_names(opts.tables) + ")");
    }
    if (r.batch_size() == 0 || r.batch_size() > opts.max_batch) {
      ++rejected;
      return reply_error(out, m, v1::INVALID_ARGUMENT,
                         "batch_size " + std::to_string(r.batch_size()) + " is outside [1, " +
                             std::to_string(opts.max_batch) + "]");
    }
    const bool prioritized = t->options().sampler == Sampler::kPrioritized;
    uint64_t size_before = prioritized ? 0 : t->size();
    Status st = t->sample(r.batch_size(), core::Deadline::after_ms(std::min(r.timeout_ms(), opts.max_timeout_ms)), sb);
    // The table takes items one at a time as the rate limiter allows; items already taken were
    // counted (and may have been removed), so a partial batch is returned rather than lost.
    if (st == Status::kDeadlineExceeded && sb->keys.empty()) {
      return reply_error(out, m, v1::DEADLINE_EXCEEDED,
                         "table '" + r.table() + "': the rate limiter blocked the sample for " +
                             std::to_string(r.timeout_ms()) + " ms (size " + std::to_string(t->size()) + ")");
    }
    if (st == Status::kClosed && sb->keys.empty()) {
      return reply_error(out, m, v1::UNAVAILABLE, opts.name + " is shutting down");
    }
    samples += sb->keys.size();
    core::MessageBuilder reply(v1::SAMPLE_REPLY, m.envelope.request_id());
    reply.envelope().set_sender(opts.name);
    auto* body = reply.envelope().mutable_sample_reply();
    body->set_table(r.table());
    body->mutable_keys()->Assign(sb->keys.begin(), sb->keys.end());
    body->mutable_probabilities()->Assign(sb->probabilities.begin(), sb->probabilities.end());
    body->mutable_times_sampled()->Assign(sb->times_sampled.begin(), sb->times_sampled.end());
    body->set_table_size(sb->table_size);
    body->set_priority_mass(prioritized ? sb->priority_mass : static_cast<double>(size_before));
    const auto& sig = t->options().signature;
    const int64_t batch = static_cast<int64_t>(sb->keys.size());
    for (size_t c = 0; c < sig.size(); ++c) {
      std::vector<int64_t> dims{batch};
      dims.insert(dims.end(), sig[c].shape.begin(), sig[c].shape.end());
      reply.add_tensor_copy({sig[c].name, sig[c].dtype, core::Shape::from(dims), sb->columns[c].data()});
    }
    core::send_message(out, reply, &m.routing);
  }

  void handle_update_priorities(zmq::socket_t& out, const core::Message& m) {
    const auto& u = m.envelope.update_priorities();
    Table* t = find(u.table());
    if (!t) {
      ++rejected;
      return reply_error(out, m, v1::NOT_FOUND, "unknown table '" + u.table() + "'");
    }
    if (u.keys_size() != u.priorities_size()) {
      ++rejected;
      return reply_error(out, m, v1::INVALID_ARGUMENT,
                         std::to_string(u.priorities_size()) + " priorities for " + std::to_string(u.keys_size()) +
                             " keys");
    }
    for (int i = 0; i < u.priorities_size(); ++i) {
      if (!finite_nonneg(u.priorities(i))) {
        ++rejected;
        return reply_error(out, m, v1::INVALID_ARGUMENT,
                           "priority " + std::to_string(i) + " is " + std::to_string(u.priorities(i)) +
                               " (must be finite and >= 0); nothing was updated");
      }
    }
    size_t updated = t->update_priorities(u.keys().data(), u.priorities().data(), static_cast<size_t>(u.keys_size()));
    core::MessageBuilder ack(v1::UPDATE_PRIORITIES_ACK, m.envelope.request_id());
    ack.envelope().set_sender(opts.name);
    ack.envelope().mutable_update_priorities_ack()->set_updated(static_cast<uint32_t>(updated));
    ack.envelope().mutable_update_priorities_ack()->set_unknown_keys(static_cast<uint32_t>(u.keys_size() - updated));
    core::send_message(out, ack, &m.routing);
  }

  void fill_info(Table* t, v1::TableInfo* info) {
    TableStats s = t->stats();
    const TableOptions& o = t->options();
    info->set_name(o.name);
    info->set_size(s.size);
    info->set_max_size(s.max_size);
    info->set_inserts(s.inserts);
    info->set_samples(s.samples);
    info->set_evictions(s.evictions);
    info->set_priority_mass(o.sampler == Sampler::kPrioritized ? s.priority_mass : static_cast<double>(s.size));
    info->set_max_priority(s.max_priority);
    info->set_min_priority(s.min_priority);
    info->set_sampler(sampler_name(o.sampler));
    info->set_remover(remover_name(o.remover));
    auto* rl = info->mutable_rate_limiter();
    rl->set_min_size_to_sample(o.rate_limiter.min_size_to_sample);
    rl->set_samples_per_insert(o.rate_limiter.samples_per_insert);
    rl->set_min_diff(o.rate_limiter.min_diff());
    rl->set_max_diff(o.rate_limiter.max_diff());
    rl->set_inserts_blocked_ns(s.inserts_blocked_ns);
    rl->set_samples_blocked_ns(s.samples_blocked_ns);
    for (const auto& c : o.signature) {
      auto* d = info->add_signature();
      d->set_name(c.name);
      d->set_dtype(static_cast<v1::DType>(c.dtype));
      for (auto x : c.shape) d->add_shape(x);
    }
  }

  void handle_table_info(zmq::socket_t& out, const core::Message& m) {
    const std::string& name = m.envelope.table_info().table();
    core::MessageBuilder reply(v1::TABLE_INFO_REPLY, m.envelope.request_id());
    reply.envelope().set_sender(opts.name);
    auto* body = reply.envelope().mutable_table_info_reply();
    body->set_shard(opts.name);
    body->set_rejected_messages(rejected.load());
    if (!name.empty() && !find(name)) {
      return reply_error(out, m, v1::NOT_FOUND, "unknown table '" + name + "' (tables: " + join_names(opts.tables) + ")");
    }
    for (auto& t : tables) {
      if (name.empty() || t->options().name == name) fill_info(t.get(), body->add_tables());
    }
    core::send_message(out, reply, &m.routing);
  }

  void handle_checkpoint(zmq::socket_t& out, const core::Message& m) {
    try {
      if (opts.checkpoint_dir.empty() && m.envelope.checkpoint().path().empty()) {
        return reply_error(out, m, v1::INVALID_ARGUMENT,
                           opts.name + " has no checkpoint_dir; give a path in the request");
      }
      std::string path = write_checkpoint(m.envelope.checkpoint().path());
      core::MessageBuilder reply(v1::CHECKPOINT_REPLY, m.envelope.request_id());
      reply.envelope().set_sender(opts.name);
      auto* body = reply.envelope().mutable_checkpoint_reply();
      body->set_path(path);
      uint64_t items = 0;
      for (auto& t : tables) items += t->size();
      body->set_items(items);
      struct stat st {};
      if (::stat(path.c_str(), &st) == 0) body->set_bytes(static_cast<uint64_t>(st.st_size));
      core::send_message(out, reply, &m.routing);
    } catch (const std::exception& e) {
      reply_error(out, m, v1::INTERNAL, e.what());
    }
  }

  // ------------------------------------------------------------------------------------------
  // Threads

  zmq::socket_t make_reply_socket() {
    zmq::socket_t s(ctx, zmq::socket_type::push);
    core::SocketOptions so;
    so.linger_ms = 0;
    so.send_hwm = 0;  // never drop or block a reply on the inproc hop
    core::apply_socket_options(s, so);
    s.connect(replies_endpoint);
    return s;
  }

  void worker(WorkQueue* q, bool sampler) {
    zmq::socket_t out = make_reply_socket();
    core::Message m;
    SampleBatch sb;
    while (q->pop(&m)) {
      try {
        if (stopping) {
          reply_error(out, m, v1::UNAVAILABLE, opts.name + " is shutting down");
        } else if (sampler) {
          handle_sample(out, m, &sb);
        } else {
          handle_insert(out, m);
        }
      } catch (const std::exception& e) {
        spdlog::error("{}: internal error handling {}: {}", opts.name, v1::MessageType_Name(m.envelope.type()), e.what());
        reply_error(out, m, v1::INTERNAL, e.what());
      }
    }
  }

  void checkpoint_loop() {
    std::unique_lock<std::mutex> lock(cp_wait_mu);
    auto next = core::monotonic_ns() + static_cast<int64_t>(opts.checkpoint_interval_s * 1e9);
    auto next_log = core::monotonic_ns() + static_cast<int64_t>(opts.stats_log_interval_s * 1e9);
    while (!stopping) {
      cp_wait_cv.wait_for(lock, std::chrono::milliseconds(200));
      if (stopping) break;
      int64_t now = core::monotonic_ns();
      if (opts.checkpoint_interval_s > 0 && !opts.checkpoint_dir.empty() && now >= next) {
        lock.unlock();
        try {
          std::string p = write_checkpoint("");
          spdlog::info("{}: wrote checkpoint {}", opts.name, p);
        } catch (const std::exception& e) {
          spdlog::error("{}: checkpoint failed: {}", opts.name, e.what());
        }
        lock.lock();
        next = now + static_cast<int64_t>(opts.checkpoint_interval_s * 1e9);
      }
      if (opts.stats_log_interval_s > 0 && now >= next_log) {
        for (auto& t : tables) {
          TableStats s = t->stats();
          spdlog::info("{}: table '{}': size {}/{}, inserts {}, samples {}, evictions {}, blocked ins {:.1f}s smp {:.1f}s",
                       opts.name, t->options().name, s.size, s.max_size, s.inserts, s.samples, s.evictions,
                       s.inserts_blocked_ns * 1e-9, s.samples_blocked_ns * 1e-9);
        }
        next_log = now + static_cast<int64_t>(opts.stats_log_interval_s * 1e9);
      }
    }
  }

  void forward_replies() {
    // Each reply is [routing..., envelope, tensors...]; forward it to the ROUTER as it is.
    for (;;) {
      zmq::message_t part;
      auto got = replies.recv(part, zmq::recv_flags::dontwait);
      if (!got) return;
      bool more = replies.get(zmq::sockopt::rcvmore);
      frontend.send(part, more ? zmq::send_flags::sndmore : zmq::send_flags::none);
      while (more) {
        (void)replies.recv(part, zmq::recv_flags::none);
        more = replies.get(zmq::sockopt::rcvmore);
        frontend.send(part, more ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
    }
  }
};

ShardServer::ShardServer(ServerOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.opts = std::move(options);
  for (const auto& t : s.opts.tables) s.tables.push_back(std::make_unique<Table>(t));
  s.restore_latest();
  core::SocketOptions so;
  so.linger_ms = 0;
  so.max_message_bytes = s.opts.max_message_bytes;
  so.send_hwm = 100'000;
  so.recv_hwm = 100'000;
  core::apply_socket_options(s.frontend, so);
  s.frontend.set(zmq::sockopt::router_mandatory, false);
  if (!s.opts.curve_key_file.empty()) {
    core::make_curve_server(s.frontend, core::load_curve_keys(s.opts.curve_key_file, true));
  }
  try {
    s.frontend.bind(s.opts.bind);
  } catch (const zmq::error_t& e) {
    throw Error(s.opts.name + ": cannot bind " + s.opts.bind + ": " + e.what());
  }
  s.endpoint = s.frontend.get(zmq::sockopt::last_endpoint);
  s.replies_endpoint = "inproc://replies-" + std::to_string(reinterpret_cast<uintptr_t>(this));
  core::SocketOptions ro;
  ro.recv_hwm = 0;
  core::apply_socket_options(s.replies, ro);
  s.replies.bind(s.replies_endpoint);
  for (int i = 0; i < s.opts.insert_workers; ++i) s.insert_queues.push_back(std::make_unique<WorkQueue>(s.opts.max_queue));
  s.sample_queue = std::make_unique<WorkQueue>(s.opts.max_queue);
  for (auto& q : s.insert_queues) s.workers.emplace_back([&s, q = q.get()] { s.worker(q, false); });
  for (int i = 0; i < s.opts.sample_workers; ++i) s.workers.emplace_back([&s] { s.worker(s.sample_queue.get(), true); });
  s.checkpointer = std::thread([&s] { s.checkpoint_loop(); });
}

ShardServer::~ShardServer() {
  Impl& s = *impl_;
  s.stopping = true;
  for (auto& t : s.tables) t->close();
  for (auto& q : s.insert_queues) q->close();
  if (s.sample_queue) s.sample_queue->close();
  s.cp_wait_cv.notify_all();
  for (auto& w : s.workers)
    if (w.joinable()) w.join();
  if (s.checkpointer.joinable()) s.checkpointer.join();
}

void ShardServer::run() {
  Impl& s = *impl_;
  spdlog::info("{}: serving {} table(s) [{}] on {}", s.opts.name, s.tables.size(), join_names(s.opts.tables), s.endpoint);
  core::Message m;
  core::RecvError err;
  core::RecvLimits limits;
  limits.codec.max_tensor_bytes = static_cast<uint64_t>(s.opts.max_message_bytes);
  std::hash<std::string> hasher;
  while (!s.stopping && !core::Shutdown::requested()) {
    zmq::pollitem_t items[] = {{static_cast<void*>(s.frontend), 0, ZMQ_POLLIN, 0},
                               {static_cast<void*>(s.replies), 0, ZMQ_POLLIN, 0},
                               {nullptr, core::Shutdown::fd(), ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 3, std::chrono::milliseconds(200));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    if (items[1].revents & ZMQ_POLLIN) s.forward_replies();
    if (!(items[0].revents & ZMQ_POLLIN)) continue;
    // Drain what is ready without blocking, then go back to forwarding replies.
    for (int burst = 0; burst < 256; ++burst) {
      auto st = core::recv_message(s.frontend, &m, &err, 0, /*routed=*/true, limits);
      if (st == core::RecvStatus::kTimeout) break;
      ++s.messages;
      if (st == core::RecvStatus::kInvalid) {
        ++s.rejected;
        spdlog::warn("{}: rejected a message: {}", s.opts.name, err.message);
        core::send_error(s.frontend, &m.routing, err.request_id, err.code, err.message, s.opts.name);
        continue;
      }
      switch (m.envelope.type()) {
        case v1::INSERT: {
          size_t w = hasher(m.envelope.sender()) % s.insert_queues.size();
          if (!s.insert_queues[w]->push(std::move(m))) {
            s.reply_error(s.frontend, m, v1::RESOURCE_EXHAUSTED, s.opts.name + ": insert queue is full; resend later");
          }
          break;
        }
        case v1::SAMPLE:
          if (!s.sample_queue->push(std::move(m))) {
            s.reply_error(s.frontend, m, v1::RESOURCE_EXHAUSTED, s.opts.name + ": sample queue is full; retry later");
          }
          break;
        case v1::UPDATE_PRIORITIES:
          s.handle_update_priorities(s.frontend, m);
          break;
        case v1::TABLE_INFO:
          s.handle_table_info(s.frontend, m);
          break;
        case v1::CHECKPOINT:
          s.handle_checkpoint(s.frontend, m);
          break;
        default:
          ++s.rejected;
          s.reply_error(s.frontend, m, v1::INVALID_ARGUMENT,
                        "a replay shard does not accept " + v1::MessageType_Name(m.envelope.type()) + " messages");
      }
    }
  }
  // Shutdown: wake blocked table calls, let workers answer what is queued, forward the last
  // replies, then write the final checkpoint.
  s.stopping = true;
  for (auto& t : s.tables) t->close();
  for (auto& q : s.insert_queues) q->close();
  s.sample_queue->close();
  s.cp_wait_cv.notify_all();
  for (auto& w : s.workers) w.join();
  s.workers.clear();
  s.forward_replies();
  if (s.checkpointer.joinable()) s.checkpointer.join();
  if (!s.opts.checkpoint_dir.empty()) {
    try {
      spdlog::info("{}: final checkpoint {}", s.opts.name, s.write_checkpoint(""));
    } catch (const std::exception& e) {
      spdlog::error("{}: final checkpoint failed: {}", s.opts.name, e.what());
    }
  }
}

void ShardServer::stop() { impl_->stopping = true; }

std::string ShardServer::checkpoint(const std::string& path_override) { return impl_->write_checkpoint(path_override); }

const std::string& ShardServer::endpoint() const { return impl_->endpoint; }

ServerStats ShardServer::stats() const {
  return {impl_->messages.load(), impl_->rejected.load(), impl_->inserts.load(), impl_->samples.load(),
          impl_->checkpoints.load()};
}

Table* ShardServer::table(const std::string& name) { return impl_->find(name); }

}  // namespace orchard::replay
