// A deliberately misbehaving env plugin for the loader tests, compiled several times:
//   ORCHARD_TEST_WRONG_ABI   reports ABI version 99
//   ORCHARD_TEST_NO_ENTRY    exports no entry symbol
//   ORCHARD_TEST_NO_STEP     leaves the required step function NULL
// Otherwise it is a working "Flaky-v0" env whose option `fail` picks a failure at run time:
//   fail=create (create returns NULL), fail=step (step returns an error), fail=nan (step writes
//   NaN into the observation), fail=throw (step throws a C++ exception across the boundary).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "orchard/envs/env_plugin.h"

namespace {

struct Flaky {
  std::string fail;
  int t = 0;
  double low[2] = {-10, -10}, high[2] = {10, 10};
  char error[128] = {0};
};

void* create(const orchard_env_option* o, size_t n, char* err, size_t err_size) {
  auto* f = new Flaky();
  for (size_t i = 0; i < n; ++i) {
    if (std::strcmp(o[i].key, "fail") == 0) f->fail = o[i].value;
  }
  if (f->fail == "create") {
    std::snprintf(err, err_size, "the hardware dongle is missing");
    delete f;
    return nullptr;
  }
  return f;
}

void destroy(void* e) { delete static_cast<Flaky*>(e); }

int spaces(void* e, orchard_space* obs, orchard_space* act) {
  auto* f = static_cast<Flaky*>(e);
  std::memset(obs, 0, sizeof(*obs));
  obs->kind = ORCHARD_SPACE_BOX;
  obs->dtype = ORCHARD_DTYPE_FLOAT32;
  obs->rank = 1;
  obs->shape[0] = 2;
  obs->low = f->low;
  obs->high = f->high;
  std::memset(act, 0, sizeof(*act));
  act->kind = ORCHARD_SPACE_DISCRETE;
  act->dtype = ORCHARD_DTYPE_INT64;
  act->n = 3;
  return 0;
}

int reset(void* e, uint64_t, int32_t, void* obs) {
  static_cast<Flaky*>(e)->t = 0;
  float* o = static_cast<float*>(obs);
  o[0] = o[1] = 0.f;
  return 0;
}

[[maybe_unused]] int step(void* e, const void* action, void* obs, orchard_step_result* r) {
  auto* f = static_cast<Flaky*>(e);
  float* o = static_cast<float*>(obs);
  ++f->t;
  if (f->fail == "step" && f->t == 3) {
    std::snprintf(f->error, sizeof(f->error), "sensor timeout at t=%d", f->t);
    return 7;
  }
  if (f->fail == "throw" && f->t == 2) throw std::runtime_error("simulator crashed");
  o[0] = static_cast<float>(f->t % 5);
  o[1] = (f->fail == "nan" && f->t == 4) ? std::nanf("") : static_cast<float>(*static_cast<const int64_t*>(action));
  r->reward = 1.0f;
  r->terminated = f->t >= 20;
  r->truncated = 0;
  return 0;
}

const char* last_error(void* e) { return static_cast<Flaky*>(e)->error; }

const orchard_env_vtable kEnvs[] = {{sizeof(orchard_env_vtable), "Flaky-v0", "test plugin", 0, create, destroy, spaces,
                                     reset,
#ifdef ORCHARD_TEST_NO_STEP
                                     nullptr,
#else
                                     step,
#endif
                                     nullptr, nullptr, nullptr, last_error}};

#ifdef ORCHARD_TEST_WRONG_ABI
const orchard_env_plugin kPlugin = {99, 1, kEnvs};
#else
const orchard_env_plugin kPlugin = {ORCHARD_ENV_ABI_VERSION, 1, kEnvs};
#endif

}  // namespace

#ifndef ORCHARD_TEST_NO_ENTRY
extern "C" __attribute__((visibility("default"))) const orchard_env_plugin* orchard_env_plugin_v1(uint32_t) {
  return &kPlugin;
}
#else
extern "C" __attribute__((visibility("default"))) int some_other_symbol() { return 0; }
#endif
