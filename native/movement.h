/* Data movement on the tensors' bytes (movement.c): the strided copy behind Transpose, Slice, SplitV,
 * PadV2 and Concat on the cpu backend, threaded. */
#ifndef FOPEIFY_MOVEMENT_H
#define FOPEIFY_MOVEMENT_H

#include <stddef.h>
#include <stdint.h>

/* dst[dOff + Σ i_d·dStride_d] = src[sOff + Σ i_d·sStride_d] over `shape`, in elements of `elem` bytes;
 * geom = [nd, sOff, dOff, shape[nd], sStride[nd], dStride[nd]] (nd ≤ 16, strides ≥ 0), lengths in
 * elements. Every element it would touch is checked to lie in its array, and the arrays must not
 * overlap. Returns NULL, or why the geometry is refused (nothing copied then). */
const char *fopeify_copy_strided(const void *src, size_t src_len, void *dst, size_t dst_len, size_t elem, const double *geom,
                                 size_t glen);

#endif
