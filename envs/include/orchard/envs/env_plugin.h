/* Orchard environment plugin ABI, version 1.
 *
 * A plugin is a shared object (.so) that exports one C function, ORCHARD_ENV_PLUGIN_ENTRY,
 * returning a table of environments. Only C types cross the boundary, so a plugin can be built
 * with any compiler (C or C++) and loaded with dlopen by any Orchard build of the same ABI
 * version. Orchard finds plugins on ORCHARD_PLUGIN_PATH (colon-separated directories) or by an
 * explicit path in the run spec or on the command line.
 *
 * Contract:
 *  - Every function returning int returns 0 on success and non-zero on failure; then
 *    last_error(env) returns a message (owned by the env, valid until its next call).
 *  - create() returns NULL on failure after writing a message into err (err_size bytes).
 *  - Observation buffers are observation.nbytes = numel * sizeof(dtype) bytes, action buffers
 *    action-sized (Discrete: one int64; MultiDiscrete: shape[0] int64s; Box: numel floats).
 *  - Pointers in orchard_space (low, high, nvec) stay valid for the env's lifetime.
 *  - A C++ plugin must not let exceptions escape; the host catches them anyway and reports the
 *    plugin and env, but the env is then unusable.
 *  - Calls on one env handle come from one thread at a time; different handles may be used
 *    from different threads concurrently.
 */
#ifndef ORCHARD_ENV_PLUGIN_H_
#define ORCHARD_ENV_PLUGIN_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ORCHARD_ENV_ABI_VERSION 1u
#define ORCHARD_ENV_PLUGIN_ENTRY "orchard_env_plugin_v1"
#define ORCHARD_MAX_RANK 8

enum orchard_space_kind {
  ORCHARD_SPACE_BOX = 0,
  ORCHARD_SPACE_DISCRETE = 1,
  ORCHARD_SPACE_MULTI_DISCRETE = 2
};

/* Same values as orchard.v1.DType. Observations: FLOAT32, FLOAT64 or UINT8; Box actions:
 * FLOAT32; (Multi)Discrete actions: INT64. */
enum orchard_dtype {
  ORCHARD_DTYPE_FLOAT32 = 1,
  ORCHARD_DTYPE_FLOAT64 = 2,
  ORCHARD_DTYPE_INT64 = 8,
  ORCHARD_DTYPE_UINT8 = 9
};

typedef struct orchard_space {
  int32_t kind;                      /* enum orchard_space_kind */
  int32_t dtype;                     /* enum orchard_dtype */
  int32_t rank;                      /* Box: number of dims; MultiDiscrete: 1; Discrete: 0 */
  int64_t shape[ORCHARD_MAX_RANK];
  const double* low;                 /* Box: one bound per element */
  const double* high;
  int64_t n;                         /* Discrete: actions 0..n-1 */
  const int64_t* nvec;               /* MultiDiscrete: shape[0] entries */
} orchard_space;

typedef struct orchard_step_result {
  float reward;
  int32_t terminated;
  int32_t truncated;                 /* the env's own truncation; the host adds time limits */
} orchard_step_result;

typedef struct orchard_env_option {
  const char* key;
  const char* value;
} orchard_env_option;

typedef struct orchard_env_vtable {
  uint32_t struct_size;              /* sizeof(orchard_env_vtable) as the plugin saw it */
  const char* name;                  /* registry name, e.g. "WaterTank-v0" */
  const char* description;           /* one line */
  int64_t max_episode_steps;         /* time limit the host applies; 0 = none */

  void* (*create)(const orchard_env_option* options, size_t num_options, char* err, size_t err_size);
  void (*destroy)(void* env);
  int (*spaces)(void* env, orchard_space* observation, orchard_space* action);
  /* has_seed == 0: continue the env's random stream (Gymnasium reset() without a seed). */
  int (*reset)(void* env, uint64_t seed, int32_t has_seed, void* obs);
  int (*step)(void* env, const void* action, void* obs, orchard_step_result* result);
  /* Optional, all three or none (NULL): the full state as bytes. */
  int (*snapshot_size)(void* env, size_t* size);
  int (*snapshot)(void* env, void* out, size_t size);
  int (*restore)(void* env, const void* in, size_t size);
  const char* (*last_error)(void* env);
} orchard_env_vtable;

typedef struct orchard_env_plugin {
  uint32_t abi_version;              /* ORCHARD_ENV_ABI_VERSION the plugin was built with */
  uint32_t num_envs;
  const orchard_env_vtable* envs;
} orchard_env_plugin;

/* The exported entry point. The host passes its ABI version; a plugin returns NULL (or a table
 * of another abi_version) when it cannot serve that version. */
typedef const orchard_env_plugin* (*orchard_env_plugin_entry_fn)(uint32_t host_abi_version);

#ifdef __cplusplus
}
#endif

#endif /* ORCHARD_ENV_PLUGIN_H_ */
