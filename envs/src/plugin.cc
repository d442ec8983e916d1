// Loading environment plugins (env_plugin.h) and adapting them to the Env API.
#include <dirent.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "orchard/envs/check.h"
#include "orchard/envs/env_plugin.h"
#include "orchard/envs/registry.h"

namespace orchard::envs {
namespace {

using Library = std::shared_ptr<void>;

// An Env backed by a plugin's function table. Every call into the plugin is guarded: a non-zero
// return, an exception escaping the plugin, or NaN/Inf in what it wrote becomes an EnvError that
// names the plugin's path and env; the host process carries on.
class PluginEnv final : public Env {
 public:
  PluginEnv(Library lib, std::string path, const orchard_env_vtable* vt, EnvSpec spec, void* handle)
      : Env(std::move(spec)), lib_(std::move(lib)), path_(std::move(path)), vt_(vt), handle_(handle) {}

  ~PluginEnv() override {
    try {
      vt_->destroy(handle_);
    } catch (...) {
      // Nothing sensible to do: the plugin broke its contract while being destroyed.
    }
  }

  bool supports_snapshot() const override { return vt_->snapshot_size != nullptr; }

 protected:
  void do_reset(std::optional<uint64_t> seed, void* obs) override {
    call("reset", [&] { return vt_->reset(handle_, seed.value_or(0), seed.has_value() ? 1 : 0, obs); });
    std::string bad = non_finite(observation_space(), obs);
    if (!bad.empty()) fail_plugin("reset wrote an invalid observation: " + bad);
  }

  StepResult do_step(const void* action, void* obs) override {
    orchard_step_result r{};
    call("step", [&] { return vt_->step(handle_, action, obs, &r); });
    std::string bad = non_finite(observation_space(), obs);
    if (!bad.empty()) fail_plugin("step wrote an invalid observation: " + bad);
    if (!std::isfinite(r.reward)) fail_plugin("step returned a non-finite reward");
    return {r.reward, r.terminated != 0, r.truncated != 0};
  }

  void do_snapshot(std::vector<uint8_t>* out) const override {
    size_t size = 0;
    call("snapshot_size", [&] { return vt_->snapshot_size(handle_, &size); });
    size_t at = out->size();
    put_pod(out, static_cast<uint64_t>(size));
    out->resize(at + sizeof(uint64_t) + size);
    call("snapshot", [&] { return vt_->snapshot(handle_, out->data() + at + sizeof(uint64_t), size); });
  }

  bool do_restore(const uint8_t*& in, const uint8_t* end) override {
    uint64_t size = 0;
    if (!get_pod(in, end, &size) || static_cast<uint64_t>(end - in) < size) return false;
    call("restore", [&] { return vt_->restore(handle_, in, static_cast<size_t>(size)); });
    in += size;
    return true;
  }

 private:
  [[noreturn]] void fail_plugin(const std::string& what) const {
    throw EnvError("plugin " + path_ + " env '" + name() + "': " + what);
  }

  template <class F>
  void call(const char* what, F f) const {
    int rc;
    try {
      rc = f();
    } catch (const std::exception& e) {
      fail_plugin(std::string(what) + " threw an exception across the plugin boundary: " + e.what());
    } catch (...) {
      fail_plugin(std::string(what) + " threw an unknown exception across the plugin boundary");
    }
    if (rc != 0) {
      const char* msg = nullptr;
      try {
        msg = vt_->last_error(handle_);
      } catch (...) {
      }
      fail_plugin(std::string(what) + " failed: " + (msg && *msg ? msg : "(no message)"));
    }
  }

  Library lib_;  // keeps the shared object loaded while the env lives
  std::string path_;
  const orchard_env_vtable* vt_;
  void* handle_;
};

Space convert_space(const orchard_space& s, const std::string& where, const char* which) {
  auto bad = [&](const std::string& what) -> Space {
    throw EnvError(where + ": " + which + " space: " + what);
  };
  if (s.rank < 0 || s.rank > ORCHARD_MAX_RANK) return bad("rank " + std::to_string(s.rank) + " is outside [0, 8]");
  std::vector<int64_t> shape(s.shape, s.shape + s.rank);
  for (auto d : shape)
    if (d <= 0) return bad("dimension " + std::to_string(d) + " is not positive");
  switch (s.kind) {
    case ORCHARD_SPACE_DISCRETE:
      if (s.n <= 0) return bad("Discrete n = " + std::to_string(s.n) + " must be positive");
      return Space::discrete(s.n);
    case ORCHARD_SPACE_MULTI_DISCRETE: {
      if (s.rank != 1 || !s.nvec) return bad("MultiDiscrete needs rank 1 and nvec");
      std::vector<int64_t> nvec(s.nvec, s.nvec + s.shape[0]);
      for (auto n : nvec)
        if (n <= 0) return bad("MultiDiscrete nvec entries must be positive");
      return Space::multi_discrete(nvec);
    }
    case ORCHARD_SPACE_BOX: {
      core::DType dt;
      if (s.dtype == ORCHARD_DTYPE_FLOAT32) dt = core::DType::kFloat32;
      else if (s.dtype == ORCHARD_DTYPE_FLOAT64) dt = core::DType::kFloat64;
      else if (s.dtype == ORCHARD_DTYPE_UINT8) dt = core::DType::kUInt8;
      else return bad("Box dtype " + std::to_string(s.dtype) + " is not float32 (1), float64 (2) or uint8 (9)");
      if (!s.low || !s.high) return bad("Box needs low and high bounds");
      int64_t n = 1;
      for (auto d : shape) n *= d;
      if (n > (int64_t(1) << 28)) return bad("Box has too many elements");
      std::vector<double> low(s.low, s.low + n), high(s.high, s.high + n);
      for (int64_t i = 0; i < n; ++i) {
        if (std::isnan(low[i]) || std::isnan(high[i]) || low[i] > high[i]) {
          return bad("Box bound " + std::to_string(i) + " is NaN or low > high");
        }
      }
      return Space::box(shape, std::move(low), std::move(high), dt);
    }
    default:
      return bad("unknown kind " + std::to_string(s.kind));
  }
}

std::unique_ptr<Env> make_plugin_env(const Library& lib, const std::string& path, const orchard_env_vtable* vt,
                                     const EnvOptions& options) {
  const std::string where = "plugin " + path + " env '" + vt->name + "'";
  // max_episode_steps is the host's (time limits are applied by Env); the rest go to the plugin.
  int64_t limit = options.get_int(vt->name, "max_episode_steps", vt->max_episode_steps, 0, INT64_MAX);
  std::vector<std::pair<std::string, std::string>> kv;
  for (const auto& [k, v] : options.values()) {
    if (k == "max_episode_steps") continue;
    options.get_string(vt->name, k, "");  // the plugin validates its own options
    kv.emplace_back(k, v);
  }
  std::vector<orchard_env_option> c_options;
  for (const auto& [k, v] : kv) c_options.push_back({k.c_str(), v.c_str()});
  char err[512] = {0};
  void* handle = nullptr;
  try {
    handle = vt->create(c_options.data(), c_options.size(), err, sizeof(err));
  } catch (const std::exception& e) {
    throw EnvError(where + ": create threw an exception across the plugin boundary: " + e.what());
  } catch (...) {
    throw EnvError(where + ": create threw an unknown exception across the plugin boundary");
  }
  err[sizeof(err) - 1] = '\0';
  if (!handle) throw EnvError(where + ": create failed: " + (err[0] ? err : "(no message)"));
  orchard_space obs{}, act{};
  int rc = -1;
  try {
    rc = vt->spaces(handle, &obs, &act);
  } catch (...) {
  }
  EnvSpec spec;
  try {
    if (rc != 0) throw EnvError(where + ": spaces failed: " + std::string(vt->last_error(handle) ? vt->last_error(handle) : ""));
    spec.name = vt->name;
    spec.observation_space = convert_space(obs, where, "observation");
    spec.action_space = convert_space(act, where, "action");
    if (spec.observation_space.kind != SpaceKind::kBox) throw EnvError(where + ": observation space must be a Box");
    if (spec.action_space.kind == SpaceKind::kBox && spec.action_space.dtype != core::DType::kFloat32) {
      throw EnvError(where + ": Box action spaces must be float32");
    }
    spec.max_episode_steps = limit;
    spec.reference = std::string("plugin ") + path + (vt->description ? std::string(": ") + vt->description : "");
  } catch (...) {
    vt->destroy(handle);
    throw;
  }
  return std::make_unique<PluginEnv>(lib, path, vt, std::move(spec), handle);
}

}  // namespace

std::vector<std::string> EnvRegistry::load_plugin(const std::string& path) {
  const std::string where = "plugin " + path;
  dlerror();
  void* raw = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!raw) {
    const char* e = dlerror();
    throw EnvError(where + ": cannot load: " + (e ? e : "unknown dlopen error"));
  }
  Library lib(raw, [](void* h) { ::dlclose(h); });
  auto entry = reinterpret_cast<orchard_env_plugin_entry_fn>(::dlsym(raw, ORCHARD_ENV_PLUGIN_ENTRY));
  if (!entry) {
    throw EnvError(where + ": missing symbol '" ORCHARD_ENV_PLUGIN_ENTRY
                   "' (not an Orchard env plugin, or built against another ABI)");
  }
  const orchard_env_plugin* table = nullptr;
  try {
    table = entry(ORCHARD_ENV_ABI_VERSION);
  } catch (...) {
    throw EnvError(where + ": its entry point threw an exception");
  }
  if (!table) {
    throw EnvError(where + ": returned no env table for ABI version " + std::to_string(ORCHARD_ENV_ABI_VERSION));
  }
  if (table->abi_version != ORCHARD_ENV_ABI_VERSION) {
    throw EnvError(where + ": built for env ABI version " + std::to_string(table->abi_version) +
                   ", this Orchard speaks version " + std::to_string(ORCHARD_ENV_ABI_VERSION) +
                   " (rebuild it against this Orchard's env_plugin.h)");
  }
  if (table->num_envs == 0 || !table->envs) throw EnvError(where + ": its table lists no envs");
  std::vector<const orchard_env_vtable*> vts;
  for (uint32_t i = 0; i < table->num_envs; ++i) {
    const orchard_env_vtable* vt = &table->envs[i];
    std::string label = where + " env #" + std::to_string(i);
    if (vt->struct_size < sizeof(orchard_env_vtable)) {
      throw EnvError(label + ": function table of " + std::to_string(vt->struct_size) + " bytes is smaller than " +
                     std::to_string(sizeof(orchard_env_vtable)));
    }
    if (!vt->name || !*vt->name) throw EnvError(label + ": has no name");
    label = where + " env '" + vt->name + "'";
    struct Required {
      const char* name;
      bool present;
    };
    for (const Required& r : {Required{"create", vt->create != nullptr}, Required{"destroy", vt->destroy != nullptr},
                              Required{"spaces", vt->spaces != nullptr}, Required{"reset", vt->reset != nullptr},
                              Required{"step", vt->step != nullptr},
                              Required{"last_error", vt->last_error != nullptr}}) {
      if (!r.present) throw EnvError(label + ": lacks the required function '" + r.name + "'");
    }
    int snap = (vt->snapshot_size != nullptr) + (vt->snapshot != nullptr) + (vt->restore != nullptr);
    if (snap != 0 && snap != 3) throw EnvError(label + ": snapshot_size, snapshot and restore must be all set or none");
    if (find(vt->name)) throw EnvError(label + ": the name is already registered (by " + find(vt->name)->source + ")");
    vts.push_back(vt);
  }
  std::vector<std::string> names;
  for (const orchard_env_vtable* vt : vts) {
    add(EnvEntry{vt->name, "plugin", vt->description ? vt->description : "", path,
                 {{"max_episode_steps", std::to_string(vt->max_episode_steps), "time limit applied by Orchard"}},
                 [lib, path, vt](const EnvOptions& o) { return make_plugin_env(lib, path, vt, o); },
                 nullptr});
    names.push_back(vt->name);
  }
  return names;
}

std::vector<std::string> EnvRegistry::load_plugin_path(const std::string& dirs) {
  std::vector<std::string> errors;
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    start = end + 1;
    if (dir.empty()) continue;
    DIR* d = ::opendir(dir.c_str());
    if (!d) {
      errors.push_back("ORCHARD_PLUGIN_PATH: cannot open directory " + dir + ": " + std::strerror(errno));
      continue;
    }
    std::vector<std::string> files;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 3 && n.compare(n.size() - 3, 3, ".so") == 0) files.push_back(dir + "/" + n);
    }
    ::closedir(d);
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      try {
        load_plugin(f);
      } catch (const EnvError& e) {
        errors.push_back(e.what());
      }
    }
  }
  return errors;
}

}  // namespace orchard::envs
