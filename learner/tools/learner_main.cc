// orchard-learner: the learner process of a run. Samples experience from every replay shard
// (ReplaySampler with prefetch), trains PPO or SAC/APT, updates priorities, publishes weights on
// a PUB socket, evaluates the deterministic policy every E updates, writes atomic checkpoints
// and resumes from them, reports metrics to Redis, and ends the run when the budget or the
// target return is reached (writing <run_dir>/result.json).
//
//   orchard-learner --spec runs/quickstart/spec.yaml [--set key=value ...]
//                   [--rank R --sync-address ADDR]    (learner.count > 1)
//
// With learner.count = L > 1, L such processes (ranks) train one model in lockstep: each samples
// its own batches, the gradients are averaged across ranks (GradientSync, Gloo) before every
// optimiser step, and a control round before each update agrees on whether every rank has a
// batch and whether to stop. Rank 0 hosts the rendezvous store, starts every rank from its own
// state (its checkpoint, broadcast), publishes weights, evaluates, checkpoints and writes
// result.json; the others only train and exit 0 when the ranks agree to stop.
//
// The spec must be resolved (endpoints, tables): `orchard run` writes such a spec. SIGINT/SIGTERM:
// finishes the current update, writes a checkpoint, exits 0. Exit status 1: an error (message
// on stderr names it), 0 otherwise; result.json says why the learner stopped.
#include <sched.h>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <regex>

#include "orchard/actors/weights.h"
#include "orchard/core/clock.h"
#include "orchard/core/error.h"
#include "orchard/core/logging.h"
#include "orchard/core/metrics.h"
#include "orchard/core/shutdown.h"
#include "orchard/core/wire.h"
#include "orchard/envs/registry.h"
#include "orchard/learner/gradient_sync.h"
#include "orchard/learner/ppo.h"
#include "orchard/learner/sac.h"
#include "orchard/learner/torch_info.h"
#include "orchard/orchestrator/run_spec.h"
#include "orchard/replay/client.h"

namespace fs = std::filesystem;
using orchard::Error;
using orchard::orchestrator::Algorithm;
using orchard::orchestrator::RunSpec;
using json = nlohmann::json;

namespace {

// Deterministic evaluation on separate env instances: eval_episodes envs, each runs one episode
// from seed base + i; returns the episode returns.
std::vector<double> evaluate(const RunSpec& spec, const std::function<torch::Tensor(const torch::Tensor&)>& policy,
                             uint64_t seed_base) {
  const size_t n = static_cast<size_t>(spec.learner.eval_episodes);
  auto venv = orchard::envs::EnvRegistry::global().make_vector(spec.env.name, n,
                                                               orchard::envs::EnvOptions::parse(spec.eval_env_options()));
  const auto& as = venv->spec().action_space;
  const int64_t od = spec.observation_space.numel();
  const bool box = as.kind == orchard::envs::SpaceKind::kBox;
  venv->reset(seed_base);
  std::vector<double> returns(n, 0.0);
  std::vector<bool> done(n, false);
  size_t finished = 0;
  std::vector<uint8_t> actions(n * as.nbytes());
  torch::NoGradGuard no_grad;
  while (finished < n) {
    const auto obs_type =
        spec.observation_space.dtype == orchard::core::DType::kUInt8 ? torch::kUInt8 : torch::kFloat32;
    auto obs = torch::from_blob(const_cast<void*>(venv->observations()), {static_cast<int64_t>(n), od}, obs_type)
                   .to(torch::kFloat32);
    torch::Tensor a = policy(obs);
    if (box) {
      a = a.to(torch::kFloat32).reshape({static_cast<int64_t>(n), -1});
      auto low = torch::tensor(std::vector<float>(as.low.begin(), as.low.end()));
      auto high = torch::tensor(std::vector<float>(as.high.begin(), as.high.end()));
      a = torch::max(torch::min(a, high), low).contiguous();
    } else {
      a = a.to(torch::kInt64).contiguous();
    }
    std::memcpy(actions.data(), a.data_ptr(), actions.size());
    venv->step(actions.data());
    for (size_t i = 0; i < n; ++i) {
      if (done[i]) continue;
      returns[i] += venv->rewards()[i];
      if (venv->terminated()[i] || venv->truncated()[i]) {
        done[i] = true;
        ++finished;
      }
    }
  }
  return returns;
}

void write_json_atomically(const std::string& path, const json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(2) << "\n";
    out.flush();
    if (!out) throw Error("cannot write '" + tmp + "'");
  }
  fs::rename(tmp, path);
}

// Where the learner's wall time goes, reported with every train metric and in result.json:
// waiting for a batch, turning it into tensors (PPO: GAE), the gradient update, the weight
// broadcast, evaluation, checkpoints.
// Several ranks compare parameter checksums every this many updates (and at the end).
constexpr int64_t kVerifyEvery = 100;

// Several ranks add "sync": the gradient all-reduces inside the update and the control rounds.
enum Phase { kWait, kPrepare, kUpdate, kSync, kPublish, kEval, kCheckpoint, kPhases };
constexpr const char* kPhaseNames[kPhases] = {"wait", "prepare", "update", "sync", "publish", "eval", "checkpoint"};

// Everything the two algorithms share: sampler, weights socket, evaluation bookkeeping,
// checkpoint metadata, budget checks, metrics.
class LearnerProcess {
 public:
  LearnerProcess(RunSpec spec, int rank, const std::string& sync_address)
      : spec_(std::move(spec)), rank_(rank), world_(static_cast<int>(spec_.learner.count)) {
    fs::create_directories(spec_.checkpoint_dir);
    fs::create_directories(spec_.run_dir);
    meta_path_ = spec_.checkpoint_dir + "/learner.json";
    model_path_ = spec_.checkpoint_dir + "/learner.pt";
    const std::string proc = "learner-" + std::to_string(rank_);
    orchard::core::MetricsOptions mo;
    mo.url = spec_.redis_url;
    mo.stream = "orchard:run:" + spec_.name + ":metrics:" + (rank_ == 0 ? std::string("learner") : proc);
    mo.heartbeat_key = "orchard:run:" + spec_.name + ":proc:" + proc + ":heartbeat";
    metrics_ = std::make_unique<orchard::core::MetricsReporter>(mo);
    if (world_ > 1) {
      static const std::regex kTcp("tcp://([^:/]+):([0-9]{1,5})");
      std::smatch m;
      if (!std::regex_match(spec_.learner_sync_endpoint, m, kTcp))
        throw orchard::ConfigError("learner.count = " + std::to_string(world_) +
                                   " needs endpoints.learner_sync (tcp://HOST:PORT; `orchard run` sets it), got '" +
                                   spec_.learner_sync_endpoint + "'");
      orchard::learner::GradientSyncOptions so;
      so.rank = rank_;
      so.world_size = world_;
      so.store_host = m[1];
      so.store_port = std::stoi(m[2]);
      so.address = sync_address;
      so.timeout_s = spec_.learner.sync_timeout_s;
      so.backend = spec_.learner.sync;
      spdlog::info("rank {} of {}: rendezvous at {} (this rank's address {})", rank_, world_,
                   spec_.learner_sync_endpoint, sync_address);
      sync_ = std::make_unique<orchard::learner::GradientSync>(so);
    }
    if (rank_ != 0) return;  // only rank 0 publishes weights
    pub_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::pub);
    orchard::core::SocketOptions so;
    so.send_hwm = 4;
    orchard::core::apply_socket_options(*pub_, so);
    if (!spec_.curve_keys.empty())
      orchard::core::make_curve_server(*pub_, orchard::core::load_curve_keys(spec_.curve_keys + "/server.key", true));
    try {
      pub_->bind(spec_.weights_endpoint);
    } catch (const zmq::error_t& e) {
      throw Error("learner: cannot bind the weights endpoint " + spec_.weights_endpoint + ": " + e.what());
    }
  }

  bool leader() const { return rank_ == 0; }

  // Rank 0's state on every rank: its checkpoint file (model, optimiser, counters, generator)
  // broadcast as bytes and loaded, and its run counters. Called once, after rank 0 resumed.
  template <class Save, class Load>
  void start_from_rank0(Save&& save, Load&& load) {
    if (world_ == 1) return;
    const std::string tmp = spec_.checkpoint_dir + "/.rank-" + std::to_string(rank_) + "-state.pt";
    std::string bytes;
    if (leader()) {
      save(tmp);
      std::ifstream in(tmp, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      if (!in.good() && !in.eof()) throw Error("cannot read back '" + tmp + "'");
    }
    bytes = sync_->broadcast_bytes(bytes);
    if (!leader()) {
      {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        if (!out) throw Error("cannot write '" + tmp + "'");
      }
      load(tmp);
    }
    fs::remove(tmp);
    auto c = sync_->sum({leader() ? static_cast<double>(env_steps_) : 0.0, leader() ? static_cast<double>(version_) : 0.0,
                         leader() ? previous_seconds_ : 0.0});
    env_steps_ = static_cast<int64_t>(c[0]);
    version_ = static_cast<uint64_t>(c[1]);
    previous_seconds_ = c[2];
    spdlog::info("rank {} of {}: started from rank 0's state ({} bytes, {} env steps)", rank_, world_, bytes.size(),
                 env_steps_);
  }

  // Several ranks: the control round before an update. Every rank says whether it holds a batch;
  // rank 0 says why to stop ("" to go on: `leader_reason`), the others whether a signal asks them
  // to; all learn rank 0's env-step count. Returns the agreed decision; on kStop, `*reason` is
  // rank 0's reason, or "stopped" when another rank was signalled.
  enum class Round { kUpdate, kWaitMore, kStop };
  Round control_round(bool have_batch, const std::string& leader_reason, std::string* reason) {
    static const char* kReasons[] = {"", "target_return", "env_steps", "updates", "wall_time", "stopped"};
    double code = 0;
    if (leader()) {
      for (int i = 1; i < 6; ++i)
        if (leader_reason == kReasons[i]) code = i;
    }
    const bool signalled = !leader() && orchard::core::Shutdown::requested();
    enter(kSync);
    auto c = sync_->sum({have_batch ? 1.0 : 0.0, signalled ? 1.0 : 0.0, code,
                         leader() ? static_cast<double>(env_steps_) : 0.0});
    enter(kWait);
    if (!leader()) env_steps_ = static_cast<int64_t>(c[3]);
    if (c[1] > 0 || c[2] > 0) {
      const int k = static_cast<int>(c[2]);
      *reason = k >= 1 && k <= 5 ? kReasons[k] : "stopped";
      return Round::kStop;
    }
    return c[0] >= world_ ? Round::kUpdate : Round::kWaitMore;
  }

  // Several ranks: every rank compares a checksum of its parameters with rank 0's; a difference
  // (which lockstep training must never produce) is an error on every rank, naming the update,
  // so the gang restarts from rank 0's checkpoint instead of training diverged copies.
  void verify_in_sync(double checksum, int64_t updates, bool final = false) {
    if (!sync_) return;
    const Phase before = phase_;
    enter(kSync);
    std::vector<torch::Tensor> t{torch::tensor({checksum}, torch::kFloat64)};
    sync_->broadcast(t);
    const double rank0 = t[0].item<double>();
    const double differing = sync_->sum(std::vector<double>{rank0 == checksum ? 0.0 : 1.0})[0];
    enter(before);
    if (differing > 0)
      throw Error(fmt::format("learner ranks diverged by update {}: {} rank(s) differ from rank 0 (this rank's "
                              "parameter checksum {:.17g}, rank 0's {:.17g})",
                              updates, differing, checksum, rank0));
    if (final)
      spdlog::info("parameters of the {} ranks agree after {} updates (checksum {:.17g})", world_, updates, checksum);
    else
      spdlog::debug("parameters of the {} ranks agree at update {} (checksum {:.17g})", world_, updates, checksum);
  }

  // Moves the time the all-reduces inside an update took from "update" to "sync".
  void account_sync(double sync_seconds_before) {
    if (!sync_) return;
    const double dt = sync_->seconds() - sync_seconds_before;
    phase_total_s_[kUpdate] -= dt;
    phase_report_s_[kUpdate] -= dt;
    phase_total_s_[kSync] += dt;
    phase_report_s_[kSync] += dt;
  }
  double sync_seconds() const { return sync_ ? sync_->seconds() : 0.0; }

  // Reads learner.json when a checkpoint exists; refuses one from another run.
  bool read_metadata() {
    if (!fs::exists(model_path_)) return false;
    if (!fs::exists(meta_path_))
      throw Error("checkpoint '" + model_path_ + "' has no metadata file '" + meta_path_ +
                  "'; refusing to resume from it (move it away to start afresh)");
    json m;
    try {
      std::ifstream in(meta_path_);
      in >> m;
    } catch (const std::exception& e) {
      throw Error("checkpoint metadata '" + meta_path_ + "' is unreadable: " + e.what());
    }
    const std::string run = m.value("run", ""), algo = m.value("algorithm", ""), env = m.value("env", "");
    const std::string model = m.value("model", "");
    if (run != spec_.name || algo != orchard::orchestrator::algorithm_name(spec_.algorithm) || env != spec_.env.name ||
        model != spec_.model_description())
      throw Error("checkpoint '" + model_path_ + "' belongs to run '" + run + "' (" + algo + " on " + env + ", " +
                  model + "), not to this run '" + spec_.name + "' (" +
                  orchard::orchestrator::algorithm_name(spec_.algorithm) + " on " + spec_.env.name + ", " +
                  spec_.model_description() + "); refusing to resume from it");
    env_steps_ = m.value("env_steps", int64_t{0});
    previous_seconds_ = m.value("seconds", 0.0);
    version_ = m.value("weights_version", uint64_t{0});
    if (m.contains("eval_mean") && m["eval_mean"].is_number()) last_eval_mean_ = m["eval_mean"].get<double>();
    if (m.contains("eval_min") && m["eval_min"].is_number()) last_eval_min_ = m["eval_min"].get<double>();
    return true;
  }

  void write_metadata(int64_t updates) {
    json m = {{"run", spec_.name},
              {"algorithm", orchard::orchestrator::algorithm_name(spec_.algorithm)},
              {"env", spec_.env.name},
              {"model", spec_.model_description()},
              {"updates", updates},
              {"env_steps", env_steps_},
              {"weights_version", version_},
              {"seconds", seconds()},
              {"eval_mean", last_eval_mean_ ? json(*last_eval_mean_) : json(nullptr)},
              {"eval_min", last_eval_min_ ? json(*last_eval_min_) : json(nullptr)}};
    write_json_atomically(meta_path_, m);
  }

  // `final`: the last broadcast of a learner that has finished; actors stop stepping and stop
  // waiting for inserts nobody will sample. The socket then lingers so it gets out before exit.
  void publish(const orchard::actors::NamedTensors& named, int64_t updates, bool final = false) {
    if (!pub_) return;
    ++version_;
    auto msg = orchard::actors::encode_weights(named, version_, static_cast<uint64_t>(updates),
                                               spec_.model_description(), final);
    orchard::core::send_message(*pub_, msg);
    if (final) pub_->set(zmq::sockopt::linger, 1000);
  }

  // Records an evaluation; true when it reaches the target.
  bool record_eval(const std::vector<double>& returns, int64_t updates) {
    double sum = 0, mn = returns.empty() ? 0 : returns[0];
    for (double r : returns) {
      sum += r;
      mn = std::min(mn, r);
    }
    last_eval_mean_ = returns.empty() ? 0 : sum / static_cast<double>(returns.size());
    last_eval_min_ = mn;
    spdlog::info("evaluation after {} updates, {} env steps: mean return {:.2f}, min {:.2f} over {} episodes", updates,
                 env_steps_, *last_eval_mean_, mn, returns.size());
    metrics_->report({{"kind", "eval"},
                      {"updates", std::to_string(updates)},
                      {"env_steps", std::to_string(env_steps_)},
                      {"eval_mean_return", orchard::core::metric_value(*last_eval_mean_)},
                      {"eval_min_return", orchard::core::metric_value(mn)}});
    return spec_.budget.has_target && *last_eval_mean_ >= spec_.budget.target_return;
  }

  // Why the run should end now, or "" to go on.
  std::string budget_reason(int64_t updates) const {
    if (orchard::core::Shutdown::requested()) return "stopped";
    if (spec_.budget.env_steps > 0 && env_steps_ >= spec_.budget.env_steps) return "env_steps";
    if (spec_.budget.updates > 0 && updates >= spec_.budget.updates) return "updates";
    if (spec_.budget.wall_time_s > 0 && seconds() >= spec_.budget.wall_time_s) return "wall_time";
    return "";
  }

  void write_result(const std::string& reason, int64_t updates) {
    json r = {{"run", spec_.name},
              {"reason", reason},
              {"target_reached", reason == "target_return"},
              {"updates", updates},
              {"env_steps", env_steps_},
              {"seconds", seconds()},
              {"eval_mean", last_eval_mean_ ? json(*last_eval_mean_) : json(nullptr)},
              {"eval_min", last_eval_min_ ? json(*last_eval_min_) : json(nullptr)},
              {"checkpoint", model_path_},
              {"first_update_unix_ms", first_update_ms_}};
    enter(phase_);
    for (int p = 0; p < kPhases; ++p) r["time_s"][kPhaseNames[p]] = phase_total_s_[p];
    write_json_atomically(spec_.run_dir + "/result.json", r);
    std::cout << "done reason=" << reason << " updates=" << updates << " env_steps=" << env_steps_ << " eval_mean="
              << (last_eval_mean_ ? std::to_string(*last_eval_mean_) : "none") << std::endl;
  }

  double seconds() const { return previous_seconds_ + clock_.elapsed_s(); }

  // Ends the phase that began at the last call and starts the next one.
  void enter(Phase next) {
    const double dt = phase_clock_.elapsed_s();
    phase_clock_.restart();
    phase_total_s_[phase_] += dt;
    phase_report_s_[phase_] += dt;
    phase_ = next;
  }

  // Every report_every_s: one log line (the algorithm's `losses` text appended) and one metrics
  // entry (`losses` fields appended) with update and env-step rates since the last report.
  void maybe_report(int64_t updates, const std::string& losses, const orchard::core::MetricFields& loss_fields) {
    if (since_report_.elapsed_s() < spec_.learner.report_every_s) return;
    report(updates, losses, loss_fields);
  }

  // The report itself (maybe_report's, and a last one at the end of the run).
  void report(int64_t updates, const std::string& losses, const orchard::core::MetricFields& loss_fields) {
    const double dt = std::max(1e-9, since_report_.elapsed_s());
    const double ups = static_cast<double>(updates - updates_at_report_) / dt;
    const double sps = static_cast<double>(env_steps_ - steps_at_report_) / dt;
    enter(phase_);
    std::string split;
    orchard::core::MetricFields f = {{"kind", "train"},
                                     {"updates", std::to_string(updates)},
                                     {"env_steps", std::to_string(env_steps_)},
                                     {"updates_per_s", orchard::core::metric_value(ups)},
                                     {"env_steps_per_s", orchard::core::metric_value(sps)}};
    for (int p = 0; p < kPhases; ++p) {
      const double frac = phase_report_s_[p] / dt;
      if (frac >= 0.005) split += fmt::format("{}{} {:.0f}%", split.empty() ? "" : " ", kPhaseNames[p], 100 * frac);
      f.emplace_back(std::string("time_") + kPhaseNames[p], orchard::core::metric_value(frac));
      phase_report_s_[p] = 0;
    }
    spdlog::info("{} updates ({:.2f}/s), {} env steps ({:.0f}/s), {}; time: {}", updates, ups, env_steps_, sps, losses,
                 split);
    f.insert(f.end(), loss_fields.begin(), loss_fields.end());
    f.emplace_back("weights_version", std::to_string(version_));
    metrics_->report(std::move(f));
    since_report_.restart();
    updates_at_report_ = updates;
    steps_at_report_ = env_steps_;
  }

  // Every checkpoint_every_s: the learner's checkpoint (`save(path)`) and learner.json.
  template <class Save>
  void maybe_checkpoint(Save&& save, int64_t updates) {
    if (spec_.learner.checkpoint_every_s <= 0 || since_ckpt_.elapsed_s() < spec_.learner.checkpoint_every_s) return;
    const Phase before = phase_;
    enter(kCheckpoint);
    save(model_path_);
    write_metadata(updates);
    enter(before);
    since_ckpt_.restart();
  }

  // The end of the run: final checkpoint, metrics flushed, result.json.
  template <class Save>
  int finish(Save&& save, int64_t updates, const std::string& reason) {
    // A last train entry: the totals at the end, also for runs shorter than report_every_s.
    if (updates > updates_at_report_) report(updates, "final", {});
    enter(kCheckpoint);
    save(model_path_);
    write_metadata(updates);
    metrics_->flush();
    write_result(reason, updates);
    return 0;
  }

  // A rank other than 0 at the end: nothing to write (rank 0 checkpoints the shared state).
  int finish_follower(int64_t updates, const std::string& reason) {
    enter(kCheckpoint);
    metrics_->flush();
    spdlog::info("rank {} of {}: stopping with the others after {} updates ({}); time in all-reduces {:.1f} s",
                 rank_, world_, updates, reason, sync_seconds());
    std::cout << "done rank=" << rank_ << " reason=" << reason << " updates=" << updates << std::endl;
    return 0;
  }

  // Called once the learner's counters are final after a resume.
  void start_reporting(int64_t updates) {
    updates_at_report_ = updates;
    steps_at_report_ = env_steps_;
  }
  // Wall-clock ms of this process's first gradient update (0 before it), for the orchestrator
  // overhead benchmark (time from `orchard run` to the first gradient step).
  void mark_update() {
    if (first_update_ms_ == 0)
      first_update_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  }
  int64_t first_update_ms_ = 0;

  RunSpec spec_;
  int rank_ = 0, world_ = 1;
  std::unique_ptr<orchard::learner::GradientSync> sync_;
  zmq::context_t ctx_{1};
  std::unique_ptr<zmq::socket_t> pub_;
  std::unique_ptr<orchard::core::MetricsReporter> metrics_;
  std::string meta_path_, model_path_;
  int64_t env_steps_ = 0;
  uint64_t version_ = 0;
  double previous_seconds_ = 0;
  std::optional<double> last_eval_mean_, last_eval_min_;
  orchard::core::Stopwatch clock_, since_report_, since_ckpt_;
  int64_t updates_at_report_ = 0, steps_at_report_ = 0;
  Phase phase_ = kWait;
  orchard::core::Stopwatch phase_clock_;
  double phase_total_s_[kPhases] = {}, phase_report_s_[kPhases] = {};
};

// CURVE for the learner's replay clients, when the run has keys (security.curve_keys).
orchard::replay::ClientSecurity client_security(const RunSpec& spec) {
  orchard::replay::ClientSecurity sec;
  if (spec.curve_keys.empty()) return sec;
  auto client = orchard::core::load_curve_keys(spec.curve_keys + "/client.key", true);
  sec.server_public_key = orchard::core::load_curve_keys(spec.curve_keys + "/server.key", true).public_key;
  sec.client_public_key = client.public_key;
  sec.client_secret_key = client.secret_key;
  return sec;
}

orchard::replay::ReplaySamplerOptions sampler_options(const RunSpec& spec, int rank, uint32_t batch,
                                                      uint32_t per_request) {
  orchard::replay::ReplaySamplerOptions o;
  o.security = client_security(spec);
  o.endpoints = spec.replay_endpoints;
  o.table = spec.table;
  o.batch_size = batch;
  o.batches_per_request = per_request;
  o.prefetch = static_cast<size_t>(spec.learner.prefetch);
  o.beta = spec.sac.importance_beta;
  o.seed = spec.seed * 7919 + 1 + static_cast<uint64_t>(rank) * 104729;  // ranks sample apart
  o.name = "learner-" + std::to_string(rank);
  return o;
}

torch::Tensor column(const orchard::replay::SampledBatch& b, const char* name) {
  const auto* c = b.find(name);
  if (!c) throw Error(std::string("sampled batch has no column '") + name + "'");
  std::vector<int64_t> shape = c->shape.to_vector();
  torch::ScalarType t = orchard::actors::to_torch_dtype(c->dtype);
  return torch::from_blob(const_cast<uint8_t*>(c->data.data()), shape, t).clone();
}

// ---------------------------------------------------------------------------------------------
// PPO

int run_ppo(LearnerProcess& P) {
  const RunSpec& spec = P.spec_;
  orchard::learner::PpoConfig cfg;
  cfg.learning_rate = spec.ppo.learning_rate;
  cfg.gamma = spec.ppo.gamma;
  cfg.gae_lambda = spec.ppo.gae_lambda;
  cfg.num_minibatches = spec.ppo.num_minibatches;
  cfg.update_epochs = spec.ppo.update_epochs;
  cfg.norm_adv = spec.ppo.norm_adv;
  cfg.clip_coef = spec.ppo.clip_coef;
  cfg.clip_vloss = spec.ppo.clip_vloss;
  cfg.ent_coef = spec.ppo.ent_coef;
  cfg.vf_coef = spec.ppo.vf_coef;
  cfg.max_grad_norm = spec.ppo.max_grad_norm;
  cfg.anneal_lr = spec.ppo.anneal_lr;
  cfg.target_kl = spec.ppo.target_kl;
  cfg.rho_bar = spec.ppo.rho_bar;
  orchard::learner::ModelConfig mc;
  mc.hidden_sizes = spec.ppo.hidden;
  mc.normalize_obs = spec.ppo.normalize_obs;
  mc.torso = spec.ppo.torso;
  mc.conv_channels = spec.ppo.conv_channels;
  torch::manual_seed(spec.seed);
  auto model = std::make_shared<orchard::learner::ActorCritic>(spec.observation_space, spec.action_space, mc);
  orchard::learner::PpoLearner learner(model, cfg);
  if (P.leader() && P.read_metadata()) {
    learner.load(P.model_path_);
    spdlog::info("resumed from {}: {} updates, {} env steps, weights v{}", P.model_path_, learner.updates(),
                 P.env_steps_, P.version_);
  }
  P.start_from_rank0([&](const std::string& path) { learner.save(path); },
                     [&](const std::string& path) { learner.load(path); });
  auto ppo_checksum = [&] {
    double c = 0;
    for (const auto& [name, t] : model->named_state()) c += t.to(torch::kFloat64).sum().item<double>();
    return c;
  };
  std::function<void(torch::Tensor&)> sum_across_ranks;
  if (P.sync_) {
    auto* sync = P.sync_.get();
    learner.after_backward = [&learner, sync](torch::nn::Module&) { sync->average(learner.optimizer().flat_grads()); };
    learner.mean_across_ranks = [sync](double x) { return sync->sum(std::vector<double>{x})[0] / sync->world_size(); };
    sum_across_ranks = [sync](torch::Tensor& t) { sync->sum(t); };
  }
  const int64_t S = spec.ppo_segments_per_update(), T = spec.ppo.segment_length;
  orchard::replay::ReplaySampler sampler(sampler_options(spec, P.rank_, static_cast<uint32_t>(S), 1));
  P.publish(model->named_state(), learner.updates());  // the initial (or resumed) policy
  std::cout << "ready " << spec.weights_endpoint << std::endl;

  orchard::replay::SampledBatch batch;
  orchard::core::Stopwatch since_publish;
  P.start_reporting(learner.updates());
  auto save = [&](const std::string& path) { learner.save(path); };
  std::string reason;
  bool have_batch = false, target_reached = false;
  for (;;) {
    P.metrics_->heartbeat();
    P.enter(kWait);
    if (!P.sync_ && !(reason = P.budget_reason(learner.updates())).empty()) break;
    if (!have_batch) have_batch = sampler.next(&batch, 500);
    if (P.sync_) {
      const auto round = P.control_round(
          have_batch, target_reached ? std::string("target_return") : P.budget_reason(learner.updates()), &reason);
      if (round == LearnerProcess::Round::kStop) break;
      if (round == LearnerProcess::Round::kWaitMore) {
        if (since_publish.elapsed_s() > 1.0) {
          P.publish(model->named_state(), learner.updates());
          since_publish.restart();
        }
        continue;
      }
    } else if (!have_batch) {
      if (since_publish.elapsed_s() > 1.0) {  // late subscribers (new actors) get the policy
        P.publish(model->named_state(), learner.updates());
        since_publish.restart();
      }
      continue;
    }
    have_batch = false;
    P.enter(kPrepare);
    // [S, T, ...] -> GAE over [T, S]
    torch::Tensor obs = column(batch, "obs"), actions = column(batch, "action"), rewards = column(batch, "reward");
    torch::Tensor term = column(batch, "terminated").to(torch::kFloat32),
                  trunc = column(batch, "truncated").to(torch::kFloat32);
    torch::Tensor logp = column(batch, "behaviour_logp"), values = column(batch, "value");
    torch::Tensor boot = column(batch, "bootstrap_obs");
    const int64_t D = spec.observation_space.numel();
    torch::Tensor flat_obs = obs.reshape({S * T, D});
    model->update_obs_norm(flat_obs, sum_across_ranks);
    torch::Tensor last_value;
    {
      torch::NoGradGuard ng;
      last_value = model->value(boot);  // [S]
    }
    // A truncation inside a segment keeps no final observation: V(s_t) stands in for V(final);
    // at the segment's last step bootstrap_obs is the final observation.
    torch::Tensor final_values = values.clone();
    final_values.select(1, T - 1).copy_(last_value);
    auto gae = orchard::learner::compute_gae(rewards.t(), values.t(), term.t(), trunc.t(), final_values.t(),
                                             last_value, spec.ppo.gamma, spec.ppo.gae_lambda);
    orchard::learner::Rollout r;
    r.obs = flat_obs;
    r.actions = spec.action_space.kind == orchard::envs::SpaceKind::kDiscrete ? actions.reshape({S * T})
                                                                                : actions.reshape({S * T, -1});
    r.behaviour_logp = logp.reshape({S * T});
    r.values = values.reshape({S * T});
    r.advantages = gae.advantages.t().contiguous().reshape({S * T});
    r.returns = gae.returns.t().contiguous().reshape({S * T});
    double remaining = 1.0;
    if (spec.budget.env_steps > 0)
      remaining = std::max(1e-3, 1.0 - static_cast<double>(P.env_steps_) / static_cast<double>(spec.budget.env_steps));
    P.enter(kUpdate);
    const double sync_before = P.sync_seconds();
    auto st = learner.update(r, remaining);
    P.account_sync(sync_before);
    P.mark_update();
    P.env_steps_ += S * T * P.world_;
    if (learner.updates() % kVerifyEvery == 0) P.verify_in_sync(ppo_checksum(), learner.updates());
    if (!P.leader()) continue;  // the rest is rank 0's
    P.enter(kPublish);
    P.publish(model->named_state(), learner.updates());
    since_publish.restart();

    if (learner.updates() % spec.eval_every() == 0) {
      P.enter(kEval);
      auto returns = evaluate(
          spec, [&](const torch::Tensor& o) { return model->deterministic_action(o); },
          spec.seed * 1000003 + static_cast<uint64_t>(learner.updates()));
      if (P.record_eval(returns, learner.updates())) {
        reason = "target_return";
        if (!P.sync_) break;
        target_reached = true;  // the next control round stops every rank
      }
    }
    P.maybe_report(learner.updates(),
                   fmt::format("pg {:.4f} v {:.4f} ent {:.3f} kl {:.4f} rho {:.3f}", st.pg_loss, st.v_loss, st.entropy,
                               st.approx_kl, st.mean_rho),
                   {{"pg_loss", orchard::core::metric_value(st.pg_loss)},
                    {"v_loss", orchard::core::metric_value(st.v_loss)},
                    {"entropy", orchard::core::metric_value(st.entropy)},
                    {"approx_kl", orchard::core::metric_value(st.approx_kl)},
                    {"mean_rho", orchard::core::metric_value(st.mean_rho)}});
    P.maybe_checkpoint(save, learner.updates());
  }
  sampler.stop();
  if (P.sync_) P.verify_in_sync(ppo_checksum(), learner.updates(), /*final=*/true);
  if (!P.leader()) return P.finish_follower(learner.updates(), reason);
  P.publish(model->named_state(), learner.updates(), /*final=*/true);
  return P.finish(save, learner.updates(), reason);
}

// ---------------------------------------------------------------------------------------------
// SAC / APT

int run_sac(LearnerProcess& P) {
  const RunSpec& spec = P.spec_;
  orchard::learner::SacOptions o;
  o.actor_hidden = spec.sac.actor_hidden;
  o.critic_hidden = spec.sac.critic_hidden;
  o.gamma = spec.sac.gamma;
  o.tau = spec.sac.tau;
  o.actor_lr = spec.sac.actor_lr;
  o.critic_lr = spec.sac.critic_lr;
  o.alpha_lr = spec.sac.alpha_lr;
  o.batch_size = spec.sac.batch_size;
  o.learning_starts = spec.sac.learning_starts;
  o.policy_frequency = spec.sac.policy_frequency;
  o.target_frequency = spec.sac.target_frequency;
  o.autotune = spec.sac.autotune;
  o.initial_alpha = spec.sac.initial_alpha;
  o.seed = spec.seed;
  orchard::learner::SacLearner learner(spec.observation_space, spec.action_space, o);
  if (P.leader() && P.read_metadata()) {
    learner.load(P.model_path_);
    spdlog::info("resumed from {}: {} updates, {} env steps, weights v{}", P.model_path_, learner.updates(),
                 P.env_steps_, P.version_);
  }
  P.start_from_rank0([&](const std::string& path) { learner.save(path); },
                     [&](const std::string& path) { learner.load(path); });
  auto sac_checksum = [&] {
    double c = 0;
    for (auto* m : {&learner.actor_module(), &learner.critic_module(), &learner.target_critic_module(),
                    &learner.alpha_module()})
      for (const auto& t : m->parameters()) c += t.to(torch::kFloat64).sum().item<double>();
    return c;
  };
  if (P.sync_) {
    auto* sync = P.sync_.get();
    learner.set_after_backward([sync](torch::nn::Module& m) { sync->average_gradients(m); });
  }
  const int64_t B = spec.sac.batch_size;
  orchard::replay::ReplaySampler sampler(sampler_options(spec, P.rank_, static_cast<uint32_t>(B), 4));
  const int64_t publish_every = spec.sac_publish_every();
  P.publish(learner.named_state(), learner.updates());
  std::cout << "ready " << spec.weights_endpoint << std::endl;

  // Env steps = items inserted into the transition table over all shards (one per env step).
  const auto security = client_security(spec);
  auto count_env_steps = [&] {
    int64_t total = 0;
    for (const auto& ep : spec.replay_endpoints) {
      try {
        auto info = orchard::replay::table_info(ep, spec.table, 2000, security);
        if (!info.empty()) total += static_cast<int64_t>(info[0].inserts);
      } catch (const Error& e) {
        spdlog::warn("table info from {}: {}", ep, e.what());
        return;
      }
    }
    P.env_steps_ = std::max(P.env_steps_, total);
  };

  orchard::replay::SampledBatch batch;
  orchard::core::Stopwatch since_count, since_publish;
  P.start_reporting(learner.updates());
  auto save = [&](const std::string& path) { learner.save(path); };
  orchard::learner::SacStats st;
  std::vector<double> priorities;
  std::string reason;
  bool have_batch = false, target_reached = false;
  for (;;) {
    P.metrics_->heartbeat();
    if (P.leader() && since_count.elapsed_s() >= 0.5) {
      count_env_steps();
      since_count.restart();
    }
    if (!P.sync_ && !(reason = P.budget_reason(learner.updates())).empty()) break;
    P.enter(kWait);
    if (!have_batch) have_batch = sampler.next(&batch, 200);
    bool wait_more = !have_batch;
    if (P.sync_) {
      const auto round = P.control_round(
          have_batch, target_reached ? std::string("target_return") : P.budget_reason(learner.updates()), &reason);
      if (round == LearnerProcess::Round::kStop) break;
      wait_more = round == LearnerProcess::Round::kWaitMore;
    }
    if (wait_more) {
      if (since_publish.elapsed_s() > 1.0) {
        P.publish(learner.named_state(), learner.updates());
        since_publish.restart();
      }
      continue;
    }
    have_batch = false;
    P.enter(kPrepare);
    orchard::learner::SacBatch sb;
    sb.obs = column(batch, "obs");
    sb.action = column(batch, "action");
    sb.reward = column(batch, "reward");
    sb.discount = column(batch, "discount");
    sb.next_obs = column(batch, "next_obs");
    if (spec.sac.prioritized)
      sb.weights = torch::tensor(std::vector<float>(batch.weights.begin(), batch.weights.end()));
    P.enter(kUpdate);
    const double sync_before = P.sync_seconds();
    auto res = learner.update(sb);
    P.account_sync(sync_before);
    P.mark_update();
    st = res.stats;
    if (P.sync_ && learner.updates() % kVerifyEvery == 0) P.verify_in_sync(sac_checksum(), learner.updates());
    if (spec.sac.prioritized) {
      auto td = res.td_abs.contiguous();
      priorities.resize(batch.size());
      for (size_t i = 0; i < batch.size(); ++i) priorities[i] = static_cast<double>(td.data_ptr<float>()[i]) + 1e-6;
      sampler.update_priorities(batch.keys, priorities);
    }
    if (!P.leader()) continue;  // the rest is rank 0's
    if (learner.updates() % publish_every == 0) {
      P.enter(kPublish);
      P.publish(learner.named_state(), learner.updates());
      since_publish.restart();
    }
    if (learner.updates() % spec.eval_every() == 0) {
      P.enter(kEval);
      count_env_steps();
      auto returns = evaluate(
          spec, [&](const torch::Tensor& obs) { return learner.deterministic_action(obs); },
          spec.seed * 1000003 + static_cast<uint64_t>(learner.updates()));
      if (P.record_eval(returns, learner.updates())) {
        reason = "target_return";
        if (!P.sync_) break;
        target_reached = true;  // the next control round stops every rank
      }
    }
    P.maybe_report(learner.updates(),
                   fmt::format("q1 {:.3f} actor {:.3f} alpha {:.4f}", st.q1_loss, st.actor_loss, st.alpha),
                   {{"q1_loss", orchard::core::metric_value(st.q1_loss)},
                    {"actor_loss", orchard::core::metric_value(st.actor_loss)},
                    {"alpha", orchard::core::metric_value(st.alpha)}});
    P.maybe_checkpoint(save, learner.updates());
  }
  sampler.stop();
  if (P.sync_) P.verify_in_sync(sac_checksum(), learner.updates(), /*final=*/true);
  if (!P.leader()) return P.finish_follower(learner.updates(), reason);
  count_env_steps();
  P.publish(learner.named_state(), learner.updates(), /*final=*/true);
  return P.finish(save, learner.updates(), reason);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"orchard-learner: the learner process of a run", "orchard-learner"};
  std::string spec_path, level = "info";
  std::vector<std::string> overrides;
  int rank = 0;
  std::string sync_address = "127.0.0.1";
  app.add_option("--spec", spec_path, "Resolved run spec (orchard run writes <run_dir>/spec.yaml)")->required();
  app.add_option("--set", overrides, "Override a spec key: key.path=value (repeatable)");
  app.add_option("--rank", rank, "This learner's rank, 0..learner.count-1")->check(CLI::Range(0, 1023));
  app.add_option("--sync-address", sync_address,
                 "The address this rank's all-reduce connections use (its host's address on the ranks' network)");
  auto* level_opt = app.add_option("--log-level", level, "trace|debug|info|warn|error (default: the spec's logging.level)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    orchard::core::init_logging({"learner-" + std::to_string(rank), level});
    orchard::core::Shutdown::install();
    RunSpec spec = RunSpec::load(spec_path, overrides);
    {
      orchard::core::LogOptions lo = spec.logging;  // the spec's logging: section; --log-level wins
      lo.process = "learner-" + std::to_string(rank);
      if (level_opt->count() > 0) lo.level = level;
      orchard::core::init_logging(lo);
    }
    if (spec.replay_endpoints.empty() || spec.weights_endpoint.empty())
      throw orchard::ConfigError(spec_path + ": endpoints.replay and endpoints.weights are required by "
                                 "orchard-learner (`orchard run` writes a resolved spec with them)");
    spec.resolve();
    if (rank >= spec.learner.count)
      throw orchard::ConfigError("--rank " + std::to_string(rank) + ": the spec has learner.count = " +
                                 std::to_string(spec.learner.count) + " (ranks 0.." +
                                 std::to_string(spec.learner.count - 1) + ")");
    int blas = static_cast<int>(spec.learner.blas_threads);
    if (blas == 0) {  // auto: see LearnerSpec::blas_threads
      cpu_set_t allowed;
      CPU_ZERO(&allowed);
      const int cpus = sched_getaffinity(0, sizeof(allowed), &allowed) == 0 ? CPU_COUNT(&allowed) : 1;
      // Learner ranks placed on the same host share its CPUs.
      const auto& hosts = spec.placement.learners;
      int sharing = 0;
      for (int64_t r = 0; r < spec.learner.count; ++r)
        sharing += hosts[static_cast<size_t>(r) % hosts.size()] == hosts[static_cast<size_t>(rank) % hosts.size()];
      blas = spec.algorithm == Algorithm::kPpo ? static_cast<int>(spec.learner.torch_threads)
                                               : std::min(4, std::max(1, cpus / std::max(1, sharing)));
    }
    orchard::learner::set_compute_threads(static_cast<int>(spec.learner.torch_threads), blas);
    spdlog::info("compute threads: torch {}, BLAS {}", spec.learner.torch_threads, blas);
    LearnerProcess process(std::move(spec), rank, sync_address);
    return process.spec_.algorithm == Algorithm::kPpo ? run_ppo(process) : run_sac(process);
  } catch (const orchard::Error& e) {
    orchard::core::log_fatal(std::string("orchard-learner: ") + e.what());
    return 1;
  } catch (const std::exception& e) {
    orchard::core::log_fatal(std::string("orchard-learner: internal error: ") + e.what());
    return 1;
  }
}
