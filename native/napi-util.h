/* Small Node-API helpers shared by the addon's glue files (napi-util.c): reading arguments, making
 * values, and the CHECK macro that turns a failed Node-API call into a JS exception. */
#ifndef FOPEIFY_NAPI_UTIL_H
#define FOPEIFY_NAPI_UTIL_H

#define NAPI_VERSION 8
#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME fopeify_native
#endif
#include <node_api.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHECK(call)                                                                                        \
  do {                                                                                                     \
    if ((call) != napi_ok) {                                                                               \
      napi_throw_error(env, NULL, "fopeify_native: Node-API call failed: " #call);                        \
      return NULL;                                                                                         \
    }                                                                                                      \
  } while (0)

napi_value make_string(napi_env env, const char *s);
napi_value make_int(napi_env env, int64_t i);
/* An integral number within ±2^53. */
int get_i64(napi_env env, napi_value v, int64_t *out);
int get_f32_array(napi_env env, napi_value v, float **data, size_t *len);
/* A Float32Array of at least `need` elements. */
bool f32_at_least(napi_env env, napi_value v, float **p, size_t need);
int get_f64_array(napi_env env, napi_value v, double **data, size_t *len);
/* Any TypedArray: its data, length in elements and element size in bytes. */
int get_any_array(napi_env env, napi_value v, void **data, size_t *len, size_t *elem);

/* One exported function per entry: registers `count` functions on exports. */
typedef struct {
  const char *name;
  napi_callback fn;
} fopeify_export;
void define_functions(napi_env env, napi_value exports, const fopeify_export *fns, size_t count);

#endif
