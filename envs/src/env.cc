#include "orchard/envs/env.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace orchard::envs {

// ---------------------------------------------------------------------------------------------
// EnvOptions

EnvOptions EnvOptions::parse(const std::vector<std::string>& assignments) {
  EnvOptions o;
  for (const auto& a : assignments) {
    auto eq = a.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw EnvError("env option '" + a + "': expected key=value");
    }
    o.set(a.substr(0, eq), a.substr(eq + 1));
  }
  return o;
}

namespace {

[[noreturn]] void bad_option(const std::string& env, const std::string& key, const std::string& value,
                             const std::string& expected) {
  throw EnvError(env + ": option " + key + "=" + value + ": expected " + expected);
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

}  // namespace

double EnvOptions::get_double(const std::string& env, const std::string& key, double def, double min,
                              double max) const {
  asked_.insert(key);
  auto it = values_.find(key);
  if (it == values_.end()) return def;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(it->second.c_str(), &end);
  if (it->second.empty() || *end != '\0' || errno == ERANGE || std::isnan(v)) {
    bad_option(env, key, it->second, "a number");
  }
  if (v < min || v > max) bad_option(env, key, it->second, "a number in [" + fmt(min) + ", " + fmt(max) + "]");
  return v;
}

int64_t EnvOptions::get_int(const std::string& env, const std::string& key, int64_t def, int64_t min,
                            int64_t max) const {
  asked_.insert(key);
  auto it = values_.find(key);
  if (it == values_.end()) return def;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (it->second.empty() || *end != '\0' || errno == ERANGE) bad_option(env, key, it->second, "an integer");
  if (v < min || v > max) {
    bad_option(env, key, it->second, "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return v;
}

bool EnvOptions::get_bool(const std::string& env, const std::string& key, bool def) const {
  asked_.insert(key);
  auto it = values_.find(key);
  if (it == values_.end()) return def;
  const std::string& v = it->second;
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  bad_option(env, key, v, "true or false");
}

std::string EnvOptions::get_string(const std::string& env, const std::string& key, const std::string& def) const {
  asked_.insert(key);
  auto it = values_.find(key);
  return it == values_.end() ? def : it->second;
}

std::string EnvOptions::get_choice(const std::string& env, const std::string& key, const std::string& def,
                                   const std::vector<std::string>& allowed) const {
  std::string v = get_string(env, key, def);
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    bad_option(env, key, v, "one of " + list);
  }
  return v;
}

void EnvOptions::check_all_used(const std::string& env) const {
  for (const auto& kv : values_) {
    if (asked_.count(kv.first)) continue;
    std::string allowed;
    for (const auto& a : asked_) allowed += (allowed.empty() ? "" : ", ") + a;
    throw EnvError(env + ": unknown option '" + kv.first + "' (allowed: " + (allowed.empty() ? "none" : allowed) +
                   ")");
  }
}

// ---------------------------------------------------------------------------------------------
// Env

void Env::fail(const std::string& what) const { throw EnvError(spec_.name + ": " + what); }

void Env::reset(std::optional<uint64_t> seed, void* obs) {
  elapsed_ = 0;
  do_reset(seed, obs);
  active_ = true;
}

void Env::reset(std::optional<uint64_t> seed, void* obs, const EnvOptions& reset_options) {
  apply_reset_options(reset_options);
  try {
    reset_options.check_all_used(spec_.name + " reset");
  } catch (const EnvError&) {
    apply_reset_options(EnvOptions{});  // unstage
    throw;
  }
  reset(seed, obs);
  apply_reset_options(EnvOptions{});  // per-episode only
}

StepResult Env::step(const void* action, void* obs) {
  if (!active_) {
    fail(elapsed_ == 0 ? "step() before reset()"
                       : "step() on a finished episode (terminated or truncated); call reset() first");
  }
  const Space& as = spec_.action_space;
  if (as.kind == SpaceKind::kDiscrete) {
    int64_t a;
    std::memcpy(&a, action, sizeof(a));
    if (a < 0 || a >= as.n) fail(as.violation(action));
  } else {
    std::string why = as.violation(action);
    // Box actions outside the bounds are the env's to clip where its reference does; only NaN
    // and (Multi)Discrete violations are errors.
    if (!why.empty() && (as.kind != SpaceKind::kBox || why.find("NaN") != std::string::npos)) {
      fail("action " + why);
    }
  }
  return step_unchecked(action, obs);
}

std::vector<uint8_t> Env::snapshot() const {
  if (!supports_snapshot()) fail("snapshot() is not supported");
  std::vector<uint8_t> out;
  put_pod(&out, static_cast<uint32_t>(spec_.name.size()));
  out.insert(out.end(), spec_.name.begin(), spec_.name.end());
  put_pod(&out, elapsed_);
  put_pod(&out, active_);
  do_snapshot(&out);
  return out;
}

void Env::restore(const std::vector<uint8_t>& snapshot) {
  if (!supports_snapshot()) fail("restore() is not supported");
  const uint8_t* in = snapshot.data();
  const uint8_t* end = in + snapshot.size();
  uint32_t name_len = 0;
  if (!get_pod(in, end, &name_len) || static_cast<size_t>(end - in) < name_len) fail("restore(): truncated snapshot");
  std::string name(reinterpret_cast<const char*>(in), name_len);
  in += name_len;
  if (name != spec_.name) fail("restore(): snapshot is of env '" + name + "'");
  int64_t elapsed;
  bool active;
  if (!get_pod(in, end, &elapsed) || !get_pod(in, end, &active) || !do_restore(in, end) || in != end) {
    fail("restore(): snapshot size does not match this env's state (different options?)");
  }
  elapsed_ = elapsed;
  active_ = active;
}

}  // namespace orchard::envs
