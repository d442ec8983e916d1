#include "orchard/orchestrator/run_spec.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <regex>
#include <set>

#include "orchard/core/error.h"
#include "orchard/core/net.h"
#include "orchard/core/redis.h"
#include "orchard/core/wire.h"
#include "orchard/envs/registry.h"
#include "orchard/replay/server.h"
#include "orchard/replay/table.h"

namespace orchard::orchestrator {

namespace {

const std::vector<std::string_view> kTopKeys = {"name",   "seed",     "env",    "algorithm", "ppo",
                                                "sac",    "replay",   "learner", "actors",   "budget",
                                                "redis",  "run_dir",  "checkpoint_dir", "endpoints", "logging",
                                                "hosts",  "placement", "orchestrator_address", "security"};

std::string list_yaml(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::string strings_yaml(const std::vector<std::string>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::string("'") + v[i] + "'";
  return s + "]";
}

std::vector<int> cpu_list(const core::ConfigNode& n) {
  std::vector<int> out;
  for (int64_t c : n.get_int_list("cpus", {})) {
    if (c < 0 || c >= 1024) throw ConfigError(n["cpus"].where() + ": CPU ids are in [0, 1023], got " + std::to_string(c));
    out.push_back(static_cast<int>(c));
  }
  return out;
}

std::vector<std::string> env_vars(const core::ConfigNode& n) {
  std::vector<std::string> out;
  core::ConfigNode e = n["env"];
  if (!e.defined()) return out;
  e.expect_map();
  static const std::regex kVar("[A-Za-z_][A-Za-z0-9_]*");
  for (const auto& k : e.keys()) {
    if (!std::regex_match(k, kVar))
      throw ConfigError(e.where() + ": '" + k + "' is not an environment variable name");
    out.push_back(k + "=" + e.get_string(k));
  }
  return out;
}

std::vector<int64_t> positive_list(const core::ConfigNode& n, const std::string& key, std::vector<int64_t> def) {
  auto v = n.get_int_list(key, def);
  if (v.empty() || v.size() > 8)
    throw ConfigError(n[key].where() + ": expected 1 to 8 layer widths, got " + std::to_string(v.size()));
  for (int64_t w : v)
    if (w < 1 || w > 65536)
      throw ConfigError(n[key].where() + ": layer widths must be in [1, 65536], got " + std::to_string(w));
  return v;
}

}  // namespace

const char* algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::kPpo: return "ppo";
    case Algorithm::kSac: return "sac";
    case Algorithm::kApt: return "apt";
  }
  return "?";
}

RunSpec::RunSpec(core::ConfigNode node) : node_(std::move(node)) {}

RunSpec RunSpec::load(const std::string& path, const std::vector<std::string>& overrides) {
  core::ConfigNode n = core::ConfigNode::load_file(path);
  for (const auto& o : overrides) n.apply_override(o);
  RunSpec s(std::move(n));
  s.parse();
  return s;
}

RunSpec RunSpec::load_string(const std::string& yaml, const std::string& source,
                             const std::vector<std::string>& overrides) {
  core::ConfigNode n = core::ConfigNode::load_string(yaml, source);
  for (const auto& o : overrides) n.apply_override(o);
  RunSpec s(std::move(n));
  s.parse();
  return s;
}

void RunSpec::parse() {
  const core::ConfigNode& r = node_;
  r.expect_map();
  r.check_keys(kTopKeys);

  name = r.get_string("name");
  static const std::regex kName("[A-Za-z0-9][A-Za-z0-9_.-]{0,63}");
  if (!std::regex_match(name, kName))
    throw ConfigError(r["name"].where() + ": a run name is 1-64 characters of letters, digits, '_', '.', '-' "
                      "starting with a letter or digit, got '" + name + "'");
  seed = static_cast<uint64_t>(r.get_int("seed", 1, 0, INT64_MAX));
  const std::string algo = r.get_choice("algorithm", "ppo", {"ppo", "sac", "apt"});
  algorithm = algo == "ppo" ? Algorithm::kPpo : algo == "sac" ? Algorithm::kSac : Algorithm::kApt;

  // env
  core::ConfigNode e = r["env"];
  if (!e.defined()) throw ConfigError(r.source() + ": env: is required (env: {name: CartPole-v1})");
  e.expect_map();
  e.check_keys({"name", "plugin", "options", "num_envs"});
  env.name = e.get_string("name");
  env.plugin = e.get_string("plugin", "");
  env.num_envs = e.get_int("num_envs", 8, 1, 65536);
  env.options.clear();
  core::ConfigNode opts = e["options"];
  if (opts.defined()) {
    opts.expect_map();
    for (const auto& k : opts.keys()) env.options.push_back(k + "=" + opts.get_string(k));
  }

  // ppo
  core::ConfigNode p = r["ppo"];
  if (p.defined()) {
    p.expect_map();
    p.check_keys({"learning_rate", "gamma", "gae_lambda", "num_minibatches", "update_epochs", "norm_adv",
                  "clip_vloss", "anneal_lr", "clip_coef", "ent_coef", "vf_coef", "max_grad_norm", "target_kl",
                  "rho_bar", "segment_length", "segments_per_update", "max_queued_updates", "hidden",
                  "normalize_obs", "torso", "conv_channels"});
  }
  PpoSpec pd;
  ppo.learning_rate = p.get_double("learning_rate", pd.learning_rate, 1e-12, 10);
  ppo.gamma = p.get_double("gamma", pd.gamma, 0, 1);
  ppo.gae_lambda = p.get_double("gae_lambda", pd.gae_lambda, 0, 1);
  ppo.num_minibatches = p.get_int("num_minibatches", pd.num_minibatches, 1, 1 << 20);
  ppo.update_epochs = p.get_int("update_epochs", pd.update_epochs, 1, 1000);
  ppo.norm_adv = p.get_bool("norm_adv", pd.norm_adv);
  ppo.clip_vloss = p.get_bool("clip_vloss", pd.clip_vloss);
  ppo.anneal_lr = p.get_bool("anneal_lr", pd.anneal_lr);
  ppo.clip_coef = p.get_double("clip_coef", pd.clip_coef, 0, 10);
  ppo.ent_coef = p.get_double("ent_coef", pd.ent_coef, 0, 100);
  ppo.vf_coef = p.get_double("vf_coef", pd.vf_coef, 0, 100);
  ppo.max_grad_norm = p.get_double("max_grad_norm", pd.max_grad_norm, 0, 1e6);
  ppo.target_kl = p.get_double("target_kl", pd.target_kl, 0, 100);
  ppo.rho_bar = p.get_double("rho_bar", pd.rho_bar, 0, 1e6);
  ppo.segment_length = p.get_int("segment_length", pd.segment_length, 1, 100000);
  ppo.segments_per_update = p.get_int("segments_per_update", 0, 0, 1 << 20);
  ppo.max_queued_updates = p.get_int("max_queued_updates", pd.max_queued_updates, 1, 1000);
  ppo.hidden = positive_list(p, "hidden", pd.hidden);
  ppo.normalize_obs = p.get_bool("normalize_obs", pd.normalize_obs);
  ppo.torso = p.get_choice("torso", pd.torso, {"auto", "mlp", "conv"});
  ppo.conv_channels = p.get_int("conv_channels", pd.conv_channels, 1, 1024);

  // sac
  core::ConfigNode s = r["sac"];
  if (s.defined()) {
    s.expect_map();
    s.check_keys({"gamma", "tau", "actor_lr", "critic_lr", "alpha_lr", "batch_size", "learning_starts",
                  "random_steps", "policy_frequency", "target_frequency", "autotune", "initial_alpha", "n_step",
                  "buffer_size", "prioritized", "priority_exponent", "importance_beta", "updates_per_step",
                  "max_steps_ahead", "steps_per_batch", "publish_every", "publish_every_steps", "actor_hidden",
                  "critic_hidden"});
  }
  SacSpec sd;
  sac.gamma = s.get_double("gamma", sd.gamma, 0, 1);
  sac.tau = s.get_double("tau", sd.tau, 0, 1);
  sac.actor_lr = s.get_double("actor_lr", sd.actor_lr, 1e-12, 10);
  sac.critic_lr = s.get_double("critic_lr", sd.critic_lr, 1e-12, 10);
  sac.alpha_lr = s.get_double("alpha_lr", sd.alpha_lr, 1e-12, 10);
  // The learner asks a shard for 4 batches at once, and a shard answers at most 65536 items.
  sac.batch_size = s.get_int("batch_size", sd.batch_size, 1, 16384);
  sac.learning_starts = s.get_int("learning_starts", sd.learning_starts, 1, 1'000'000'000);
  sac.random_steps = s.get_int("random_steps", sd.random_steps, 0, 1'000'000'000);
  sac.policy_frequency = s.get_int("policy_frequency", sd.policy_frequency, 1, 1000);
  sac.target_frequency = s.get_int("target_frequency", sd.target_frequency, 1, 1000);
  sac.autotune = s.get_bool("autotune", sd.autotune);
  sac.initial_alpha = s.get_double("initial_alpha", sd.initial_alpha, 1e-12, 1e6);
  sac.n_step = s.get_int("n_step", sd.n_step, 1, 1000);
  sac.buffer_size = s.get_int("buffer_size", sd.buffer_size, 1, 1'000'000'000);
  sac.prioritized = s.get_bool("prioritized", sd.prioritized);
  sac.priority_exponent = s.get_double("priority_exponent", sd.priority_exponent, 0, 10);
  sac.importance_beta = s.get_double("importance_beta", sd.importance_beta, 0, 1);
  sac.updates_per_step = s.get_double("updates_per_step", sd.updates_per_step, 1e-6, 1e4);
  sac.max_steps_ahead = s.get_int("max_steps_ahead", 0, 0, 1'000'000'000);
  sac.steps_per_batch = s.get_int("steps_per_batch", sd.steps_per_batch, 1, 100000);
  sac.publish_every = s.get_int("publish_every", 0, 0, 1'000'000'000);
  sac.publish_every_steps = s.get_int("publish_every_steps", sd.publish_every_steps, 1, 1'000'000'000);
  sac.actor_hidden = positive_list(s, "actor_hidden", sd.actor_hidden);
  sac.critic_hidden = positive_list(s, "critic_hidden", sd.critic_hidden);
  if (sac.learning_starts < sac.batch_size)
    throw ConfigError(s["learning_starts"].where() + ": must be >= sac.batch_size (" +
                      std::to_string(sac.batch_size) + "), got " + std::to_string(sac.learning_starts));
  if (sac.learning_starts > sac.buffer_size)
    throw ConfigError(s["learning_starts"].where() + ": must be <= sac.buffer_size (" +
                      std::to_string(sac.buffer_size) + "), got " + std::to_string(sac.learning_starts));

  // learner
  core::ConfigNode l = r["learner"];
  if (l.defined()) {
    l.expect_map();
    l.check_keys({"count", "device", "sync", "sync_timeout_s", "torch_threads", "blas_threads", "prefetch", "eval_every", "eval_episodes", "eval_options",
                  "checkpoint_every_s", "report_every_s", "cpus", "env"});
  }
  learner.count = l.get_int("count", 1, 1, 1024);
  learner.device = l.get_choice("device", "cpu", {"cpu", "cuda"});
  if (learner.device == "cuda")  // refused here, before anything starts, not by a crash-looping learner
    throw ConfigError(l["device"].where() + ": cuda is not implemented by orchard-learner yet (it trains on the "
                      "CPU; several CPU ranks: learner.count); use cpu");
  learner.sync = l.get_choice("sync", learner.device == "cuda" ? "nccl" : "gloo", {"gloo", "nccl"});
  if (learner.sync == "nccl" && learner.device != "cuda")
    throw ConfigError(l["sync"].where() + ": nccl all-reduces CUDA tensors; with learner.device: cpu use gloo");
  learner.sync_timeout_s = l.get_double("sync_timeout_s", 120, 1, 86400);
  learner.torch_threads = l.get_int("torch_threads", 1, 1, 1024);
  learner.blas_threads = l.get_int("blas_threads", 0, 0, 1024);
  learner.prefetch = l.get_int("prefetch", 2, 1, 64);
  learner.eval_every = l.get_int("eval_every", 0, 0, INT64_MAX);
  learner.eval_episodes = l.get_int("eval_episodes", 10, 1, 100000);
  learner.eval_options.clear();
  core::ConfigNode eo = l["eval_options"];
  if (eo.defined()) {
    eo.expect_map();
    for (const auto& k : eo.keys()) learner.eval_options.push_back(k + "=" + eo.get_string(k));
  }
  learner.checkpoint_every_s = l.get_double("checkpoint_every_s", 60, 0, 1e9);
  learner.report_every_s = l.get_double("report_every_s", 5, 0.01, 1e6);
  learner.cpus = cpu_list(l);
  learner.env = env_vars(l);

  // actors
  core::ConfigNode a = r["actors"];
  if (a.defined()) {
    a.expect_map();
    a.check_keys({"count", "torch_threads", "report_every_s", "cpus", "env"});
  }
  actors.count = a.get_int("count", 2, 1, 100000);
  actors.torch_threads = a.get_int("torch_threads", 1, 1, 1024);
  actors.report_every_s = a.get_double("report_every_s", 5, 0.01, 1e6);
  actors.cpus = cpu_list(a);
  actors.env = env_vars(a);

  // budget
  core::ConfigNode b = r["budget"];
  if (b.defined()) {
    b.expect_map();
    b.check_keys({"env_steps", "wall_time_s", "target_return", "updates"});
  }
  budget.env_steps = b.get_int("env_steps", 0, 0, INT64_MAX);
  budget.wall_time_s = b.get_double("wall_time_s", 0, 0, 1e9);
  budget.has_target = b.has("target_return");
  budget.target_return = b.get_double("target_return", 0);
  budget.updates = b.get_int("updates", 0, 0, INT64_MAX);
  if (budget.env_steps == 0 && budget.wall_time_s == 0 && !budget.has_target && budget.updates == 0)
    throw ConfigError(r.source() + ": budget: give at least one of env_steps, wall_time_s, target_return, updates "
                      "(a run needs a way to end)");

  // redis, directories
  redis_url = r.get_string("redis", "");
  if (!redis_url.empty()) {
    try {
      core::RedisOptions::from_url(redis_url);
    } catch (const ConfigError& err) {
      throw ConfigError(r["redis"].where() + ": " + err.what());
    }
  }
  run_dir = r.get_string("run_dir", "runs/" + name);
  checkpoint_dir = r.get_string("checkpoint_dir", run_dir + "/checkpoints");
  logging = core::parse_log_options(r["logging"]);
  if (!logging.file.empty() && logging.file.front() != '/') logging.file = run_dir + "/" + logging.file;

  // replay: the shard options are the replay service's own (validated by ServerOptions::parse).
  core::ConfigNode rp = r["replay"];
  replay_shards = rp.get_int("shards", 1, 1, 1024);
  replay_cpus = cpu_list(rp);
  replay_env = env_vars(rp);
  table = algorithm == Algorithm::kPpo ? "segments" : "transitions";
  if (rp.defined() && rp.has("tables")) {  // without tables, resolve() derives them and parses then
    auto server = replay::ServerOptions::parse(rp);
    if (!server.tables.empty()) {
      bool found = false;
      for (const auto& t : server.tables) found = found || t.name == table;
      if (!found)
        throw ConfigError(rp["tables"].where() + ": " + algorithm_name(algorithm) + " writes to a table named '" +
                          table + "', which the spec does not define (leave replay.tables out to have it made)");
    }
  }

  // hosts and placement
  hosts.clear();
  for (const auto& h : r["hosts"].elements()) {
    h.expect_map();
    h.check_keys({"name", "agent", "address", "token_file", "server_key_file", "bin_dir"});
    HostSpec hs;
    hs.name = h.get_string("name");
    if (hs.name == "local" || !std::regex_match(hs.name, kName))
      throw ConfigError(h["name"].where() + ": a host name is 1-64 of [A-Za-z0-9_.-] and not 'local', got '" +
                        hs.name + "'");
    for (const auto& other : hosts)
      if (other.name == hs.name) throw ConfigError(h["name"].where() + ": host '" + hs.name + "' is defined twice");
    hs.agent = h.get_string("agent");
    std::string agent_host;
    uint16_t agent_port = 0;
    if (!core::parse_tcp_endpoint(hs.agent, &agent_host, &agent_port))
      throw ConfigError(h["agent"].where() + ": expected tcp://HOST:PORT with a port of 1-65535, got '" + hs.agent + "'");
    hs.address = h.get_string("address", agent_host);
    if (!core::is_ipv4_literal(hs.address))
      throw ConfigError((h["address"].defined() ? h["address"].where() : h["agent"].where()) + ": host '" + hs.name +
                        "' binds its shards and weights socket on '" + hs.address +
                        "', which is not an IPv4 address; give it as address: (e.g. address: 10.0.0.2)");
    hs.token_file = h.get_string("token_file");
    hs.server_key_file = h.get_string("server_key_file", "");
    hs.bin_dir = h.get_string("bin_dir", "");
    hosts.push_back(hs);
  }
  core::ConfigNode pl = r["placement"];
  if (pl.defined()) {
    pl.expect_map();
    pl.check_keys({"replay", "learner", "actors"});
  }
  placement.replay = pl.get_string_list("replay", {"local"});
  // A host, or a list of hosts for the learner ranks (rank r on learners[r % size]).
  if (pl["learner"].defined() && pl["learner"].is_list()) {
    placement.learners = pl.get_string_list("learner", {"local"});
    if (placement.learners.empty())
      throw ConfigError(pl["learner"].where() + ": needs at least one host");
  } else {
    placement.learners = {pl.get_string("learner", "local")};
  }
  placement.learner = placement.learners[0];
  placement.actors = pl.get_string_list("actors", {"local"});
  auto check_host = [&](const std::string& key, const std::string& h) {
    if (h == "local" || host(h)) return;
    std::string known = "local";
    for (const auto& x : hosts) known += ", " + x.name;
    throw ConfigError(pl[key].where() + ": unknown host '" + h + "' (hosts: " + known + ")");
  };
  if (placement.replay.empty() || placement.actors.empty())
    throw ConfigError(pl.where() + ": placement.replay and placement.actors need at least one host");
  for (const auto& h : placement.replay) check_host("replay", h);
  for (const auto& h : placement.actors) check_host("actors", h);
  for (const auto& h : placement.learners) check_host("learner", h);
  if (static_cast<int64_t>(placement.learners.size()) > learner.count)
    throw ConfigError(pl["learner"].where() + ": " + std::to_string(placement.learners.size()) +
                      " hosts for learner.count = " + std::to_string(learner.count) +
                      " (one rank per listed host at least)");
  if (static_cast<int64_t>(placement.replay.size()) > r["replay"].get_int("shards", 1, 1, 1024))
    throw ConfigError(pl["replay"].where() + ": " + std::to_string(placement.replay.size()) +
                      " hosts for replay.shards = " + std::to_string(r["replay"].get_int("shards", 1, 1, 1024)) +
                      " (one shard per listed host at least)");
  orchestrator_address = r.get_string("orchestrator_address", "");
  if (!orchestrator_address.empty() && !core::is_ipv4_literal(orchestrator_address))
    throw ConfigError(r["orchestrator_address"].where() + ": the run's Redis binds it, so it must be an IPv4 address, got '" +
                      orchestrator_address + "'");
  if (!hosts.empty() && orchestrator_address.empty())
    throw ConfigError(r.source() + ": orchestrator_address: required with hosts (the address the other hosts reach "
                      "this machine at, for the run's Redis)");

  // security
  core::ConfigNode sec = r["security"];
  if (sec.defined()) {
    sec.expect_map();
    sec.check_keys({"curve_keys"});
  }
  curve_keys = sec.get_string("curve_keys", "");
  if (!curve_keys.empty()) {
    for (const char* f : {"server.key", "client.key"}) {
      try {
        core::load_curve_keys(curve_keys + "/" + f, true);
      } catch (const Error& e) {
        throw ConfigError(sec["curve_keys"].where() + ": " + e.what() + " (make them with `orchard keys server --dir " +
                          curve_keys + "` and `orchard keys client --dir " + curve_keys + "`)");
      }
    }
    if (!core::curve_available())
      throw ConfigError(sec["curve_keys"].where() + ": this ZeroMQ was built without CURVE");
  }

  // endpoints
  core::ConfigNode ep = r["endpoints"];
  if (ep.defined()) {
    ep.expect_map();
    ep.check_keys({"replay", "weights", "learner_sync"});
  }
  replay_endpoints = ep.get_string_list("replay", {});
  weights_endpoint = ep.get_string("weights", "");
  learner_sync_endpoint = ep.get_string("learner_sync", "");
  auto check_tcp = [](const std::string& endpoint, const std::string& where) {
    std::string host;
    uint16_t port = 0;
    if (!core::parse_tcp_endpoint(endpoint, &host, &port))
      throw ConfigError(where + ": expected tcp://HOST:PORT with a port of 1-65535, got '" + endpoint + "'");
    if (!core::is_ipv4_literal(host))
      throw ConfigError(where + ": '" + host + "' is not an IPv4 address (the endpoint is bound, and ZeroMQ "
                        "binds addresses, not host names), in '" + endpoint + "'");
  };
  if (!learner_sync_endpoint.empty()) check_tcp(learner_sync_endpoint, ep["learner_sync"].where());
  if (!weights_endpoint.empty()) check_tcp(weights_endpoint, ep["weights"].where());
  for (size_t i = 0; i < replay_endpoints.size(); ++i)
    check_tcp(replay_endpoints[i], ep["replay"].elements()[i].where());
  if (!replay_endpoints.empty() && static_cast<int64_t>(replay_endpoints.size()) != replay_shards)
    throw ConfigError(ep["replay"].where() + ": " + std::to_string(replay_endpoints.size()) +
                      " endpoints for replay.shards = " + std::to_string(replay_shards));
  resolved = false;
}

const HostSpec* RunSpec::host(const std::string& name) const {
  for (const auto& h : hosts)
    if (h.name == name) return &h;
  return nullptr;
}

int64_t RunSpec::ppo_segments_per_update() const {
  return ppo.segments_per_update > 0 ? ppo.segments_per_update : actors.count * env.num_envs;
}

int64_t RunSpec::eval_every() const {
  if (learner.eval_every > 0) return learner.eval_every;
  return algorithm == Algorithm::kPpo ? 1 : 1000;
}

int64_t RunSpec::sac_publish_every() const {
  if (sac.publish_every > 0) return sac.publish_every;
  if (algorithm == Algorithm::kApt)
    return std::max<int64_t>(1, std::llround(static_cast<double>(sac.publish_every_steps) * sac.updates_per_step));
  return 1;
}

int64_t RunSpec::sac_max_steps_ahead() const {
  if (sac.max_steps_ahead > 0) return sac.max_steps_ahead;
  if (algorithm == Algorithm::kApt) return 5000;
  return env.num_envs * sac.steps_per_batch;  // one writer batch per actor
}

bool RunSpec::ppo_conv() const {
  return ppo.torso == "conv" || (ppo.torso == "auto" && observation_space.shape.size() == 3);
}

std::vector<std::string> RunSpec::eval_env_options() const {
  std::vector<std::string> out;
  auto key = [](const std::string& kv) { return kv.substr(0, kv.find('=')); };
  for (const auto& kv : env.options) {
    bool overridden = false;
    for (const auto& e : learner.eval_options) overridden = overridden || key(e) == key(kv);
    if (!overridden) out.push_back(kv);
  }
  out.insert(out.end(), learner.eval_options.begin(), learner.eval_options.end());
  return out;
}

std::string RunSpec::model_description() const {
  if (algorithm == Algorithm::kPpo)
    return "ppo ActorCritic obs " + observation_space.to_string() + " act " + action_space.to_string() + " hidden " +
           list_yaml(ppo.hidden) + (ppo.normalize_obs ? " normalized" : "") +
           (ppo_conv() ? " conv " + std::to_string(ppo.conv_channels) : "");
  return "sac actor obs " + observation_space.to_string() + " act " + action_space.to_string() + " hidden " +
         list_yaml(sac.actor_hidden);
}

void RunSpec::resolve() {
  if (resolved) return;
  auto& registry = envs::EnvRegistry::global();
  if (!env.plugin.empty()) {
    try {
      registry.load_plugin(env.plugin);
    } catch (const Error& err) {
      throw ConfigError(node_["env"]["plugin"].where() + ": " + err.what());
    }
  }
  if (!registry.find(env.name)) {
    std::vector<std::string> names;
    for (const auto* entry : registry.list()) names.push_back(entry->name);
    std::vector<std::string_view> views(names.begin(), names.end());
    std::string msg = node_["env"]["name"].where() + ": unknown env '" + env.name + "'";
    if (auto near = core::closest_match(env.name, views)) msg += "; did you mean '" + *near + "'?";
    msg += " (`orchard env list` shows them all; plugins via env.plugin)";
    throw ConfigError(msg);
  }
  std::unique_ptr<envs::Env> probe;
  try {
    probe = registry.make(env.name, envs::EnvOptions::parse(env.options));
  } catch (const Error& err) {
    throw ConfigError(node_["env"].where() + ": " + err.what());
  }
  observation_space = probe->spec().observation_space;
  action_space = probe->spec().action_space;
  probe.reset();
  if (!learner.eval_options.empty()) {
    // The learner's evaluation env: options it does not know, or spaces that differ from the
    // training env's, would fail the learner only at its first evaluation.
    const std::string where = node_["learner"]["eval_options"].where();
    std::unique_ptr<envs::Env> eval;
    try {
      eval = registry.make(env.name, envs::EnvOptions::parse(eval_env_options()));
    } catch (const Error& err) {
      throw ConfigError(where + ": " + err.what());
    }
    if (eval->spec().observation_space.to_string() != observation_space.to_string() ||
        eval->spec().action_space.to_string() != action_space.to_string())
      throw ConfigError(where + ": the evaluation env observes " + eval->spec().observation_space.to_string() +
                        " and acts in " + eval->spec().action_space.to_string() + "; the training env: " +
                        observation_space.to_string() + " and " + action_space.to_string());
  }

  const std::string algo = algorithm_name(algorithm);
  const bool float_obs = observation_space.kind == envs::SpaceKind::kBox && observation_space.dtype == core::DType::kFloat32;
  const bool byte_obs = observation_space.kind == envs::SpaceKind::kBox && observation_space.dtype == core::DType::kUInt8;
  if (!float_obs && !(byte_obs && algorithm == Algorithm::kPpo))
    throw ConfigError(node_["env"]["name"].where() + ": " + env.name + " observes " + observation_space.to_string() +
                      "; " + algo + " needs float32 Box observations" +
                      (algorithm == Algorithm::kPpo ? " (or uint8, as MinAtar's)" : ""));
  const int64_t obs_dim = observation_space.numel();
  if (algorithm == Algorithm::kPpo) {
    if (action_space.kind == envs::SpaceKind::kBox && action_space.dtype != core::DType::kFloat32)
      throw ConfigError(node_["algorithm"].where() + ": ppo needs float32 Box or (Multi)Discrete actions; " +
                        env.name + " has " + action_space.to_string());
    if (ppo.torso == "conv" && observation_space.shape.size() != 3)
      throw ConfigError(node_["ppo"]["torso"].where() + ": conv needs [H, W, C] observations; " + env.name +
                        " observes " + observation_space.to_string());
    if (ppo_conv() && ppo.normalize_obs)
      throw ConfigError(node_["ppo"]["normalize_obs"].where() + ": observation normalisation is for the mlp torso");
    const int64_t T = ppo.segment_length;
    std::vector<int64_t> act_shape = {T};
    if (action_space.kind != envs::SpaceKind::kDiscrete) act_shape.push_back(action_space.numel());
    const bool box = action_space.kind == envs::SpaceKind::kBox;
    item_signature = {{"obs", core::DType::kFloat32, {T, obs_dim}},
                      {"action", box ? core::DType::kFloat32 : core::DType::kInt64, act_shape},
                      {"reward", core::DType::kFloat32, {T}},
                      {"terminated", core::DType::kBool, {T}},
                      {"truncated", core::DType::kBool, {T}},
                      {"behaviour_logp", core::DType::kFloat32, {T}},
                      {"value", core::DType::kFloat32, {T}},
                      {"bootstrap_obs", core::DType::kFloat32, {obs_dim}}};
    const int64_t batch = ppo_segments_per_update();
    if (batch > 65536)  // one sample request per update; a shard answers at most 65536 items
      throw ConfigError((ppo.segments_per_update > 0 ? node_["ppo"]["segments_per_update"].where()
                                                     : node_.source() + ": ppo.segments_per_update (actors.count x env.num_envs)") +
                        ": " + std::to_string(batch) + " segments per update is above the replay's 65536-item batch");
    if ((batch * T) % ppo.num_minibatches != 0)
      throw ConfigError(node_.source() + ": ppo: a batch of " + std::to_string(batch) + " segments x " +
                        std::to_string(T) + " steps = " + std::to_string(batch * T) +
                        " is not divisible by ppo.num_minibatches = " + std::to_string(ppo.num_minibatches));
  } else {
    const bool bounded_box = action_space.kind == envs::SpaceKind::kBox &&
                             action_space.dtype == core::DType::kFloat32 &&
                             std::all_of(action_space.low.begin(), action_space.low.end(),
                                         [](double x) { return std::isfinite(x); }) &&
                             std::all_of(action_space.high.begin(), action_space.high.end(),
                                         [](double x) { return std::isfinite(x); });
    if (!bounded_box)
      throw ConfigError(node_["algorithm"].where() + ": " + algo + " needs a bounded float32 Box action space; " +
                        env.name + " has " + action_space.to_string() +
                        (action_space.kind == envs::SpaceKind::kBox ? "" : " (use algorithm: ppo)"));
    const int64_t A = action_space.numel();
    item_signature = {{"obs", core::DType::kFloat32, {obs_dim}},
                      {"action", core::DType::kFloat32, {A}},
                      {"reward", core::DType::kFloat32, {}},
                      {"discount", core::DType::kFloat32, {}},
                      {"next_obs", core::DType::kFloat32, {obs_dim}}};
  }
  fill_replay_section();
  if (!curve_keys.empty() && node_["replay"].get_string("curve_key_file", "").empty())
    node_.apply_override("replay.curve_key_file='" + curve_keys + "/server.key'");

  // Each picked port is free now, and distinct from the others picked here (the kernel may hand
  // the same ephemeral port out twice once it was closed again).
  std::set<uint16_t> picked;
  auto free_port = [&picked] {
    for (;;) {
      const uint16_t p = core::free_loopback_port();
      if (picked.insert(p).second) return p;
    }
  };
  if (replay_endpoints.empty()) {
    std::vector<std::string> eps;
    for (int64_t i = 0; i < replay_shards; ++i)
      eps.push_back("tcp://127.0.0.1:" + std::to_string(free_port()));
    replay_endpoints = eps;
    node_.apply_override("endpoints.replay=" + strings_yaml(eps));
  }
  if (weights_endpoint.empty()) {
    weights_endpoint = "tcp://127.0.0.1:" + std::to_string(free_port());
    node_.apply_override("endpoints.weights='" + weights_endpoint + "'");
  }
  if (learner.count > 1 && learner_sync_endpoint.empty()) {
    learner_sync_endpoint = "tcp://127.0.0.1:" + std::to_string(free_port());
    node_.apply_override("endpoints.learner_sync='" + learner_sync_endpoint + "'");
  }
  resolved = true;
}

void RunSpec::fill_replay_section() {
  core::ConfigNode rp = node_["replay"];
  if (rp.defined() && rp.has("tables")) {
    // Given by the user: the experience table must carry the signature the actors write.
    auto server = replay::ServerOptions::parse(rp);
    for (const auto& t : server.tables) {
      if (t.name != table) continue;
      if (!t.signature.empty() && t.signature.size() != item_signature.size())
        throw ConfigError(rp["tables"].where() + ": table '" + table + "' has " +
                          std::to_string(t.signature.size()) + " columns; " + algorithm_name(algorithm) +
                          " actors write " + std::to_string(item_signature.size()));
      for (size_t c = 0; c < t.signature.size(); ++c)
        if (t.signature[c].name != item_signature[c].name || t.signature[c].dtype != item_signature[c].dtype ||
            t.signature[c].shape != item_signature[c].shape)
          throw ConfigError(rp["tables"].where() + ": table '" + table + "' column " + std::to_string(c) + " is " +
                            t.signature[c].to_string() + "; the actors write " + item_signature[c].to_string());
    }
    return;
  }
  const std::string sig = replay::signature_yaml(item_signature);
  std::string t;
  if (algorithm == Algorithm::kPpo) {
    // A queue: each segment is read once (the learner runs the epochs over its batch in memory),
    // oldest first; actors block (instead of items being evicted) once max_queued_updates
    // batches are waiting, which bounds the policy lag.
    // One synchronous update of L learner ranks reads L batches.
    const int64_t batch = ppo_segments_per_update() * learner.count;
    const int64_t cap = batch * ppo.max_queued_updates;
    t = "{name: segments, sampler: fifo, remover: fifo, max_times_sampled: 1, max_size: " + std::to_string(cap) +
        ", min_size_to_sample: 1, samples_per_insert: 1, error_buffer: " + std::to_string(cap - 1) +
        ", signature: " + sig + "}";
  } else {
    // Samples per insert = updates_per_step * batch_size fixes the update-to-data ratio; the error
    // buffer says how many env steps actors may run ahead (sac: a batch, apt: thousands).
    // L learner ranks take one optimiser step together from L batches.
    const double spi = sac.updates_per_step * static_cast<double>(sac.batch_size * learner.count);
    const double buffer = spi * static_cast<double>(std::max<int64_t>(sac_max_steps_ahead(), 1)) +
                          static_cast<double>(sac.batch_size);
    char num[64];
    std::snprintf(num, sizeof num, "%.17g", spi);
    std::string spi_s = num;
    std::snprintf(num, sizeof num, "%.17g", buffer);
    t = "{name: transitions, sampler: " + std::string(sac.prioritized ? "prioritized" : "uniform") +
        ", priority_exponent: " + std::to_string(sac.priority_exponent) + ", remover: fifo, max_size: " +
        std::to_string(sac.buffer_size) + ", min_size_to_sample: " + std::to_string(sac.learning_starts) +
        ", samples_per_insert: " + spi_s + ", error_buffer: " + num + ", signature: " + sig + "}";
  }
  node_.apply_override("replay.tables=[" + t + "]");
  replay::ServerOptions::parse(node_["replay"]);  // what the shards will read must parse
}

std::string RunSpec::resolved_yaml() const { return node_.dump() + "\n"; }

std::string RunSpec::learner_address(int64_t rank) const {
  const std::string& h = placement.learners[static_cast<size_t>(rank) % placement.learners.size()];
  if (const HostSpec* hs = host(h)) return hs->address;
  return multi_host() && !orchestrator_address.empty() ? orchestrator_address : "127.0.0.1";
}

void RunSpec::set_endpoints(const std::vector<std::string>& replay, const std::string& weights,
                            const std::string& learner_sync) {
  if (static_cast<int64_t>(replay.size()) != replay_shards)
    throw ConfigError("endpoints: " + std::to_string(replay.size()) + " replay endpoints for " +
                      std::to_string(replay_shards) + " shards");
  replay_endpoints = replay;
  weights_endpoint = weights;
  node_.apply_override("endpoints.replay=" + strings_yaml(replay));
  node_.apply_override("endpoints.weights='" + weights + "'");
  if (!learner_sync.empty()) {
    learner_sync_endpoint = learner_sync;
    node_.apply_override("endpoints.learner_sync='" + learner_sync + "'");
  }
}

}  // namespace orchard::orchestrator
