/* WaterTank-v0: an out-of-tree Orchard environment plugin, in plain C.
 *
 * Copy this folder to start your own plugin. It depends on nothing but Orchard's
 * env_plugin.h (found through find_package(Orchard)); build it with
 *   cmake -S . -B build -DOrchard_DIR=<orchard>/build && cmake --build build
 * and run it with
 *   ORCHARD_PLUGIN_PATH=$PWD/build orchard env check WaterTank-v0
 *
 * The env: keep the level of a cylindrical tank at a target by opening an inflow valve.
 * Outflow follows Torricelli's law, q_out = k_out * sqrt(h), so
 *   dh/dt = (k_in * u - k_out * sqrt(h)) / area
 * integrated with explicit Euler over dt. Observation: [level, target, previous valve
 * opening]; action: valve opening in [0, 1] (clipped); reward: -(level - target)^2.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchard/envs/env_plugin.h"

enum { kObsDim = 3 };
static const double kArea = 1.0;     /* m^2 */
static const double kInflow = 0.2;   /* m^3/s at a fully open valve */
static const double kOutflow = 0.1;  /* m^2.5/s */
static const double kDt = 0.5;       /* s */
static const double kMaxLevel = 2.0; /* m: the tank overflows above this */

typedef struct {
  double level, target, valve;
  double noise;
  uint64_t rng;
  double obs_low[kObsDim], obs_high[kObsDim], act_low[1], act_high[1];
  char error[256];
} Tank;

/* splitmix64: a tiny portable generator, enough for the start level. */
static double uniform01(uint64_t* s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static int parse_number(const char* text, double lo, double hi, double* out) {
  char* end = NULL;
  double v = strtod(text, &end);
  if (end == text || *end != '\0' || !(v >= lo && v <= hi)) return -1;
  *out = v;
  return 0;
}

static void* tank_create(const orchard_env_option* options, size_t n, char* err, size_t err_size) {
  Tank* t = (Tank*)calloc(1, sizeof(Tank));
  if (!t) return NULL;
  t->target = 0.5;
  for (size_t i = 0; i < n; ++i) {
    if (strcmp(options[i].key, "target") == 0) {
      if (parse_number(options[i].value, 0.05, kMaxLevel - 0.05, &t->target) != 0) {
        snprintf(err, err_size, "option target=%s: expected a number in [0.05, 1.95]", options[i].value);
        free(t);
        return NULL;
      }
    } else if (strcmp(options[i].key, "noise") == 0) {
      if (parse_number(options[i].value, 0.0, 0.1, &t->noise) != 0) {
        snprintf(err, err_size, "option noise=%s: expected a number in [0, 0.1]", options[i].value);
        free(t);
        return NULL;
      }
    } else {
      snprintf(err, err_size, "unknown option '%s' (allowed: target, noise, max_episode_steps)", options[i].key);
      free(t);
      return NULL;
    }
  }
  t->obs_low[0] = 0; t->obs_high[0] = kMaxLevel;
  t->obs_low[1] = 0; t->obs_high[1] = kMaxLevel;
  t->obs_low[2] = 0; t->obs_high[2] = 1;
  t->act_low[0] = 0; t->act_high[0] = 1;
  return t;
}

static void tank_destroy(void* env) { free(env); }

static int tank_spaces(void* env, orchard_space* obs, orchard_space* act) {
  Tank* t = (Tank*)env;
  memset(obs, 0, sizeof(*obs));
  obs->kind = ORCHARD_SPACE_BOX;
  obs->dtype = ORCHARD_DTYPE_FLOAT32;
  obs->rank = 1;
  obs->shape[0] = kObsDim;
  obs->low = t->obs_low;
  obs->high = t->obs_high;
  memset(act, 0, sizeof(*act));
  act->kind = ORCHARD_SPACE_BOX;
  act->dtype = ORCHARD_DTYPE_FLOAT32;
  act->rank = 1;
  act->shape[0] = 1;
  act->low = t->act_low;
  act->high = t->act_high;
  return 0;
}

static void write_obs(const Tank* t, void* obs) {
  float* o = (float*)obs;
  o[0] = (float)t->level;
  o[1] = (float)t->target;
  o[2] = (float)t->valve;
}

static int tank_reset(void* env, uint64_t seed, int32_t has_seed, void* obs) {
  Tank* t = (Tank*)env;
  if (has_seed) t->rng = seed;
  t->level = 0.1 + 1.4 * uniform01(&t->rng);
  t->valve = 0;
  write_obs(t, obs);
  return 0;
}

static int tank_step(void* env, const void* action, void* obs, orchard_step_result* result) {
  Tank* t = (Tank*)env;
  float u = *(const float*)action;
  if (isnan(u)) {
    snprintf(t->error, sizeof(t->error), "valve opening is NaN");
    return 1;
  }
  t->valve = u < 0 ? 0 : (u > 1 ? 1 : u);
  double dh = (kInflow * t->valve - kOutflow * sqrt(t->level)) / kArea;
  t->level += kDt * dh + t->noise * (uniform01(&t->rng) - 0.5);
  if (t->level < 0) t->level = 0;
  int overflow = t->level > kMaxLevel;
  if (overflow) t->level = kMaxLevel;
  write_obs(t, obs);
  double err = t->level - t->target;
  result->reward = (float)(overflow ? -10.0 : -err * err);
  result->terminated = overflow;
  result->truncated = 0;
  return 0;
}

static int tank_snapshot_size(void* env, size_t* size) {
  (void)env;
  *size = 3 * sizeof(double) + sizeof(uint64_t);
  return 0;
}

static int tank_snapshot(void* env, void* out, size_t size) {
  Tank* t = (Tank*)env;
  if (size != 3 * sizeof(double) + sizeof(uint64_t)) return 1;
  double s[3] = {t->level, t->target, t->valve};
  memcpy(out, s, sizeof(s));
  memcpy((char*)out + sizeof(s), &t->rng, sizeof(t->rng));
  return 0;
}

static int tank_restore(void* env, const void* in, size_t size) {
  Tank* t = (Tank*)env;
  if (size != 3 * sizeof(double) + sizeof(uint64_t)) {
    snprintf(t->error, sizeof(t->error), "snapshot of %zu bytes, expected %zu", size,
             3 * sizeof(double) + sizeof(uint64_t));
    return 1;
  }
  double s[3];
  memcpy(s, in, sizeof(s));
  t->level = s[0];
  t->target = s[1];
  t->valve = s[2];
  memcpy(&t->rng, (const char*)in + sizeof(s), sizeof(t->rng));
  return 0;
}

static const char* tank_last_error(void* env) { return ((Tank*)env)->error; }

static const orchard_env_vtable kEnvs[] = {{
    sizeof(orchard_env_vtable),
    "WaterTank-v0",
    "Keep a tank's water level at a target with an inflow valve (example plugin)",
    200,
    tank_create,
    tank_destroy,
    tank_spaces,
    tank_reset,
    tank_step,
    tank_snapshot_size,
    tank_snapshot,
    tank_restore,
    tank_last_error,
}};

static const orchard_env_plugin kPlugin = {ORCHARD_ENV_ABI_VERSION, 1, kEnvs};

__attribute__((visibility("default"))) const orchard_env_plugin* orchard_env_plugin_v1(uint32_t host_abi_version) {
  return host_abi_version == ORCHARD_ENV_ABI_VERSION ? &kPlugin : NULL;
}
