/* kernels.h: the interface between the model and its vector kernels.
 *
 * The forward pass (src/model.c) spends its time in these functions and nowhere else. There is one table
 * per instruction set. kernels_scalar.c is the reference, plain C, that every other table is tested
 * against. The vector tables are written once, in kernels_body.h (blocking drivers, microkernels,
 * element-wise kernels, the table), over a small set of primitives (vector type and width, loads and
 * masked tail loads, fma, horizontal sums, exp and tanh) and block sizes, which each ISA file defines
 * before it includes the body: kernels_avx2.c (AVX2+FMA), kernels_avx512.c (AVX-512F), kernels_neon.c
 * (ARM64). dispatch.c picks a table at run time from CPUID, or from SASP_SIMD=scalar|avx2|avx512|neon.
 *
 * Conventions: all matrices are row-major float32. Weight matrices are stored as PyTorch's nn.Linear
 * stores them, [out_features][in_features], so y = W x is a dot product of each row of W with x.
 * Pointers need not be aligned. Sizes may be any positive integer (odd and tiny included).
 * Kernels are pure: no allocation, no threads, no global state; the thread pool splits work outside. */
#ifndef SASP_KERNELS_H
#define SASP_KERNELS_H

#include <stddef.h>

typedef struct sasp_kernels {
    const char *name; /* "scalar", "avx2", "avx512", "neon" */

    /* Y[i][j] = sum_k X[i][k] * W[j][k] (+ bias[j] when bias != NULL), for i < n, j < m.
     * X has row stride ldx, Y row stride ldy (so a thread can fill a column slice of Y).
     * n = 1 is matrix x vector (decode); n > 1 is the batched / prefill case. */
    void (*matmul)(float *y, int ldy, const float *x, int ldx, const float *w, const float *bias,
                   int n, int m, int k);

    /* Attention of one query against the keys of one head.
     * scores[j] = scale * dot(q, keys + j*stride, dh) for j < n. */
    void (*attn_scores)(float *scores, const float *q, const float *keys, int stride, int n, int dh,
                        float scale);
    /* out[c] += sum_j p[j] * vals[j*stride + c] for c < dh, j < n. */
    void (*attn_accum)(float *out, const float *p, const float *vals, int stride, int n, int dh);

    /* In place: x = exp(x - max(x)) / sum; n >= 1. */
    void (*softmax)(float *x, int n);

    /* y = g * x / sqrt(mean(x^2) + eps); y may equal x. */
    void (*rmsnorm)(float *y, const float *x, const float *g, int n, float eps);
    /* y = g * (x - mean) / sqrt(var + eps) + b (biased variance); b may be NULL; y may equal x. */
    void (*layernorm)(float *y, const float *x, const float *g, const float *b, int n, float eps);

    /* RoPE, half-split form, on one head vector x[0 .. 2*half): cos/sin hold half entries for the
     * position. x'[k] = x[k] cos - x[k+half] sin; x'[k+half] = x[k] sin + x[k+half] cos. */
    void (*rope)(float *x, const float *cos, const float *sin, int half);

    /* Activations in place. gelu is the tanh form. */
    void (*relu)(float *x, int n);
    void (*gelu)(float *x, int n);
    void (*silu)(float *x, int n);

    /* y = a*x + y;  y = a*y. */
    void (*axpy)(float *y, float a, const float *x, int n);
    void (*scale)(float *y, float a, int n);
} sasp_kernels;

/* The kernel table the process uses: chosen once, on first call, from SASP_SIMD when it is set
 * (an unknown or unsupported value is reported on stderr and falls back to the best available),
 * else from the CPU. Thread-safe. */
const sasp_kernels *sasp_kernels_active(void);

/* A named table ("scalar", "avx2", "avx512", "neon"), or NULL when this build or CPU lacks it. */
const sasp_kernels *sasp_kernels_by_name(const char *name);

/* Every table this build and CPU can run, scalar first; returns the count (at most 4). */
int sasp_kernels_available(const sasp_kernels **out, int max);

/* The per-ISA tables, defined in their files (only those built for this architecture exist). */
extern const sasp_kernels sasp_kernels_scalar;
extern const sasp_kernels sasp_kernels_avx2;
extern const sasp_kernels sasp_kernels_avx512;
extern const sasp_kernels sasp_kernels_neon;

#endif
