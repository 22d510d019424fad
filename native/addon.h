/* The addon's glue files register their functions on the module's exports (addon.c's Init calls each). */
#ifndef FOPEIFY_ADDON_H
#define FOPEIFY_ADDON_H

#include "napi-util.h"

/* Must match ADDON_ABI in src/backend/native.ts; bump both when the JS-visible API changes. */
#define FOPEIFY_ABI_VERSION 11

/* binary, unary, softmaxRows, swiglu, adamw, rmsnorm, rmsnormBackward, sumSquares, copyStrided,
 * crossEntropyRows (addon-passes.c) */
void fopeify_register_passes(napi_env env, napi_value exports);
/* matvec, rotaryOne, rotaryBlocks, attendOne (addon-decode.c) */
void fopeify_register_decode(napi_env env, napi_value exports);
/* attentionForward, attentionBackward (addon-attention.c) */
void fopeify_register_attention(napi_env env, napi_value exports);

#endif
