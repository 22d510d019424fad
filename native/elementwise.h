/* Elementwise arithmetic with tfjs-cpu's exact results (elementwise.c). Runs on the calling (JS)
 * thread, large binary ops also on the addon's team (parallel.c), which takes the caller's MXCSR: so
 * denormals behave as in JS. */
#ifndef FOPEIFY_ELEMENTWISE_H
#define FOPEIFY_ELEMENTWISE_H

#include <stddef.h>

enum { OP_ADD = 0, OP_SUB = 1, OP_MUL = 2, OP_DIV = 3, OP_SQDIFF = 4 };
enum { UOP_NEG = 0, UOP_SQUARE = 1, UOP_SQRT = 2, UOP_RSQRT = 3, UOP_RELU = 4, UOP_ABS = 5 };

/* out = A op B over the collapsed broadcast geometry geom = [nd, shape[nd], strideA[nd], strideB[nd]]
 * (the output's dims and each input's element strides, 0 = broadcast). Returns NULL, or why the op
 * or geometry is refused (nothing written then). */
const char *fopeify_binary(int op, const float *A, size_t lenA, const float *B, size_t lenB, float *O, size_t lenO,
                           const double *geom, size_t glen);

/* out[i] = f(X[i]) for i < n, with JS's formula in double precision; op must be a UOP_*. */
void fopeify_unary(int op, const float *X, float *O, size_t n);

#endif
