#include "napi-util.h"

#include <stdlib.h>

napi_value make_string(napi_env env, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

napi_value make_int(napi_env env, int64_t i) {
  napi_value v;
  napi_create_int64(env, i, &v);
  return v;
}

int get_i64(napi_env env, napi_value v, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (!(d >= -9007199254740991.0 && d <= 9007199254740991.0) || d != (double)(int64_t)d) return 0;
  *out = (int64_t)d;
  return 1;
}

static int get_typed(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *len) {
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, len, data, &ab, &off) != napi_ok) return 0;
  return type == want;
}

int get_f32_array(napi_env env, napi_value v, float **data, size_t *len) {
  void *p;
  if (!get_typed(env, v, napi_float32_array, &p, len)) return 0;
  *data = (float *)p;
  return 1;
}

int get_f64_array(napi_env env, napi_value v, double **data, size_t *len) {
  void *p;
  if (!get_typed(env, v, napi_float64_array, &p, len)) return 0;
  *data = (double *)p;
  return 1;
}

int get_any_array(napi_env env, napi_value v, void **data, size_t *len, size_t *elem) {
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, len, data, &ab, &off) != napi_ok) return 0;
  switch (type) {
    case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: *elem = 1; break;
    case napi_int16_array: case napi_uint16_array: *elem = 2; break;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: *elem = 4; break;
    case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: *elem = 8; break;
    default: return 0;
  }
  return 1;
}

bool f32_at_least(napi_env env, napi_value v, float **p, size_t need) {
  size_t len;
  return get_f32_array(env, v, p, &len) && len >= need;
}

void define_functions(napi_env env, napi_value exports, const fopeify_export *fns, size_t count) {
  for (size_t i = 0; i < count; i++) {
    napi_property_descriptor d = {fns[i].name, NULL, fns[i].fn, NULL, NULL, NULL, napi_enumerable, NULL};
    napi_define_properties(env, exports, 1, &d);
  }
}
