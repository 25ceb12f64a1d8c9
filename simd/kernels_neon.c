/* kernels_neon.c: the kernels in ARM64 Advanced SIMD (NEON: 4 floats per register, 32 registers).
 *
 * Same functions, same order and same blocking scheme as kernels_avx2.c and kernels_avx512.c; only the
 * vector width and the block sizes differ. NEON has no masked loads, so tails go through a small
 * zero-padded buffer (load_part / store_part): no kernel reads or writes past the end of its arrays,
 * and no pointer needs to be aligned.
 *
 * matmul, Y = X W^T with W [m][k] row-major, has two paths:
 *  - few rows of X (decode, batched decode): blocks of dot products. A block of NR rows of X and MR
 *    rows of W keeps NR*MR vector accumulators running along k, so each row of W is read once per NR
 *    rows of X; the accumulators are summed horizontally at the end (four at a time).
 *  - many rows of X (prefill): W is repacked, PANEL rows and KC columns at a time, into a k-major
 *    buffer on the stack; a microkernel then computes MRX rows x PANEL columns of Y with broadcasts of
 *    X and no horizontal sums, reading the packed panel from L1 once per MRX rows of X. */
#include <arm_neon.h>
#include <sleef.h>
#include <string.h>

#include "kernels.h"

#define VL 4              /* floats per vector */
#define PANEL 16          /* rows of W per packed panel: four vectors of Y columns */
#define NV (PANEL / VL)
#define MRX 6             /* rows of X per microkernel: 24 accumulators */
#define KC 256            /* columns of k per packed panel: 16 KB of stack */
#define GEBP_MIN_ROWS 24  /* from this many rows of X on, packing W pays for itself */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* The first r (0 <= r <= VL) floats of p, zero-padded; and the first r lanes of v stored to p. */
ALWAYS_INLINE float32x4_t load_part(const float *p, int r)
{
    if (r >= VL) return vld1q_f32(p);
    float t[VL] = {0};
    if (r > 0) memcpy(t, p, (size_t)r * sizeof(float));
    return vld1q_f32(t);
}
ALWAYS_INLINE void store_part(float *p, int r, float32x4_t v)
{
    if (r >= VL) {
        vst1q_f32(p, v);
        return;
    }
    float t[VL];
    vst1q_f32(t, v);
    if (r > 0) memcpy(p, t, (size_t)r * sizeof(float));
}

/* Horizontal sums: one vector, or four vectors into the four lanes of one. */
ALWAYS_INLINE float hsum(float32x4_t v) { return vaddvq_f32(v); }
ALWAYS_INLINE float32x4_t hsum4(float32x4_t a, float32x4_t b, float32x4_t c, float32x4_t d)
{
    return vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d));
}

/* ---- matmul, dot-product blocks ---- */

/* Y[i][j] = alpha * dot(X row i, W row j) (+ bias[j]) for i < NR, j < MR. NR and MR are constants
 * after inlining, so acc[][] lives in registers. */
ALWAYS_INLINE void dot_block(float *y, int ldy, const float *x, int ldx, const float *w, int ldw,
                             const float *bias, float alpha, int k, const int NR, const int MR)
{
    float32x4_t acc[8][8];
#pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) acc[i][j] = vdupq_n_f32(0.0f);
    int p = 0;
    for (; p + VL <= k; p += VL) {
        float32x4_t wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) {
            wv[j] = vld1q_f32(w + (size_t)j * ldw + p);
            /* the same place in the next block's rows: W streams from L3 or memory */
            if ((p & 15) == 0) __builtin_prefetch(w + (size_t)(j + MR) * ldw + p);
        }
#pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            float32x4_t xv = vld1q_f32(x + (size_t)i * ldx + p);
#pragma GCC unroll 8
            for (int j = 0; j < MR; j++) acc[i][j] = vfmaq_f32(acc[i][j], xv, wv[j]);
        }
    }
    if (p < k) {
        float32x4_t wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) wv[j] = load_part(w + (size_t)j * ldw + p, k - p);
#pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            float32x4_t xv = load_part(x + (size_t)i * ldx + p, k - p);
#pragma GCC unroll 8
            for (int j = 0; j < MR; j++) acc[i][j] = vfmaq_f32(acc[i][j], xv, wv[j]);
        }
    }
    /* Horizontal sums four accumulators at a time, in row-major order of the block. */
    float sums[64];
    const int NS = NR * MR;
#pragma GCC unroll 16
    for (int s = 0; s + 4 <= NS; s += 4)
        vst1q_f32(sums + s, hsum4(acc[s / MR][s % MR], acc[(s + 1) / MR][(s + 1) % MR],
                                  acc[(s + 2) / MR][(s + 2) % MR], acc[(s + 3) / MR][(s + 3) % MR]));
#pragma GCC unroll 4
    for (int s = NS & ~3; s < NS; s++) sums[s] = hsum(acc[s / MR][s % MR]);
#pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++)
            y[(size_t)i * ldy + j] = alpha * sums[i * MR + j] + (bias ? bias[j] : 0.0f);
}

/* All m columns of Y for NR rows of X: blocks of MR rows of W, then one row at a time. */
ALWAYS_INLINE void dot_rows(float *y, int ldy, const float *x, int ldx, const float *w, int ldw,
                            const float *bias, float alpha, int m, int k, const int NR, const int MR)
{
    int j = 0;
    for (; j + MR <= m; j += MR)
        dot_block(y + j, ldy, x, ldx, w + (size_t)j * ldw, ldw, bias ? bias + j : NULL, alpha, k, NR, MR);
    for (; j < m; j++)
        dot_block(y + j, ldy, x, ldx, w + (size_t)j * ldw, ldw, bias ? bias + j : NULL, alpha, k, NR, 1);
}

/* Rows of X in blocks of 8 (W read once per 8 rows), then 4, then 1..3. */
static void matmul_dot(float *y, int ldy, const float *x, int ldx, const float *w, int ldw,
                       const float *bias, float alpha, int n, int m, int k)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        dot_rows(y + (size_t)i * ldy, ldy, x + (size_t)i * ldx, ldx, w, ldw, bias, alpha, m, k, 8, 3);
    if (i + 4 <= n) {
        dot_rows(y + (size_t)i * ldy, ldy, x + (size_t)i * ldx, ldx, w, ldw, bias, alpha, m, k, 4, 6);
        i += 4;
    }
    float *yi = y + (size_t)i * ldy;
    const float *xi = x + (size_t)i * ldx;
    switch (n - i) {
    case 3: dot_rows(yi, ldy, xi, ldx, w, ldw, bias, alpha, m, k, 3, 8); break;
    case 2: dot_rows(yi, ldy, xi, ldx, w, ldw, bias, alpha, m, k, 2, 8); break;
    case 1: dot_rows(yi, ldy, xi, ldx, w, ldw, bias, alpha, m, k, 1, 8); break;
    default: break;
    }
}

/* ---- matmul, packed panels ---- */

/* wp[p][r] = W[r][p] for p < kc, r < PANEL; rows r >= mw are zero. */
static void pack_panel(float *wp, const float *w, int k, int mw, int kc)
{
    for (int p = 0; p < kc; p++) {
        float *dst = wp + (size_t)p * PANEL;
        for (int r = 0; r < mw; r++) dst[r] = w[(size_t)r * k + p];
        for (int r = mw; r < PANEL; r++) dst[r] = 0.0f;
    }
}

/* Y[i][0..mw) (+)= sum_p X[i][p] wp[p][..] for i < NR; first: start from bias (or 0), else from Y. */
ALWAYS_INLINE void micro(float *y, int ldy, const float *x, int ldx, const float *wp, int kc,
                         const float *bias, int first, int mw, const int NR)
{
    float32x4_t acc[MRX][NV], b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
        b[v] = first && bias ? load_part(bias + v * VL, mw - v * VL) : vdupq_n_f32(0.0f);
#pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[i][v] = first ? b[v] : load_part(y + (size_t)i * ldy + v * VL, mw - v * VL);
    for (int p = 0; p < kc; p++) {
        float32x4_t wv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) wv[v] = vld1q_f32(wp + (size_t)p * PANEL + v * VL);
#pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            float32x4_t a = vld1q_dup_f32(x + (size_t)i * ldx + p);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[i][v] = vfmaq_f32(acc[i][v], a, wv[v]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) store_part(y + (size_t)i * ldy + v * VL, mw - v * VL, acc[i][v]);
}

static void matmul_packed(float *y, int ldy, const float *x, int ldx, const float *w,
                          const float *bias, int n, int m, int k)
{
    float wp[KC * PANEL] __attribute__((aligned(64)));
    for (int j = 0; j < m; j += PANEL) {
        int mw = m - j < PANEL ? m - j : PANEL;
        for (int pc = 0; pc < k; pc += KC) {
            int kc = k - pc < KC ? k - pc : KC;
            pack_panel(wp, w + (size_t)j * k + pc, k, mw, kc);
            const float *bj = bias ? bias + j : NULL;
            int first = pc == 0, i = 0;
            for (; i + MRX <= n; i += MRX)
                micro(y + (size_t)i * ldy + j, ldy, x + (size_t)i * ldx + pc, ldx, wp, kc, bj, first, mw, MRX);
            float *yi = y + (size_t)i * ldy + j;
            const float *xi = x + (size_t)i * ldx + pc;
            switch (n - i) {
            case 5: micro(yi, ldy, xi, ldx, wp, kc, bj, first, mw, 5); break;
            case 4: micro(yi, ldy, xi, ldx, wp, kc, bj, first, mw, 4); break;
            case 3: micro(yi, ldy, xi, ldx, wp, kc, bj, first, mw, 3); break;
            case 2: micro(yi, ldy, xi, ldx, wp, kc, bj, first, mw, 2); break;
            case 1: micro(yi, ldy, xi, ldx, wp, kc, bj, first, mw, 1); break;
            default: break;
            }
        }
    }
}

static void matmul_neon(float *y, int ldy, const float *x, int ldx, const float *w,
                        const float *bias, int n, int m, int k)
{
    if (n >= GEBP_MIN_ROWS)
        matmul_packed(y, ldy, x, ldx, w, bias, n, m, k);
    else
        matmul_dot(y, ldy, x, ldx, w, k, bias, 1.0f, n, m, k);
}

/* ---- attention ---- */

static void attn_scores_neon(float *scores, const float *q, const float *keys, int stride, int n,
                             int dh, float scale)
{
    /* One row of "X" (the query) against n rows of "W" (the keys). */
    matmul_dot(scores, 0, q, 0, keys, stride, NULL, scale, 1, n, dh);
}

static void attn_accum_neon(float *out, const float *p, const float *vals, int stride, int n, int dh)
{
    /* Eight vectors of out at a time (dh = 32 in one pass), two keys per step on separate sums. */
    for (int c = 0; c < dh; c += 8 * VL) {
        int r[8];
        float32x4_t a[8], b[8];
        for (int v = 0; v < 8; v++) {
            r[v] = dh - c - v * VL;
            a[v] = load_part(out + c + v * VL, r[v]);
            b[v] = vdupq_n_f32(0.0f);
        }
        int full = dh - c >= 8 * VL;
        int j = 0;
        for (; j + 2 <= n; j += 2) {
            float32x4_t p0 = vdupq_n_f32(p[j]), p1 = vdupq_n_f32(p[j + 1]);
            const float *v0 = vals + (size_t)j * stride + c, *v1 = v0 + stride;
            if (full) {
#pragma GCC unroll 8
                for (int v = 0; v < 8; v++) {
                    a[v] = vfmaq_f32(a[v], p0, vld1q_f32(v0 + v * VL));
                    b[v] = vfmaq_f32(b[v], p1, vld1q_f32(v1 + v * VL));
                }
            } else {
                for (int v = 0; v < 8; v++) {
                    a[v] = vfmaq_f32(a[v], p0, load_part(v0 + v * VL, r[v]));
                    b[v] = vfmaq_f32(b[v], p1, load_part(v1 + v * VL, r[v]));
                }
            }
        }
        if (j < n) {
            float32x4_t p0 = vdupq_n_f32(p[j]);
            const float *v0 = vals + (size_t)j * stride + c;
            for (int v = 0; v < 8; v++) a[v] = vfmaq_f32(a[v], p0, load_part(v0 + v * VL, r[v]));
        }
        for (int v = 0; v < 8; v++) store_part(out + c + v * VL, r[v], vaddq_f32(a[v], b[v]));
    }
}

/* ---- softmax and norms ---- */

static void softmax_neon(float *x, int n)
{
    float32x4_t mx = vdupq_n_f32(-__builtin_inff());
    int i = 0;
    for (; i + VL <= n; i += VL) mx = vmaxq_f32(mx, vld1q_f32(x + i));
    float m = vmaxvq_f32(mx);
    for (int t = i; t < n; t++) m = x[t] > m ? x[t] : m;
    float32x4_t vmax = vdupq_n_f32(m);
    float32x4_t sum = vdupq_n_f32(0.0f);
    for (i = 0; i + VL <= n; i += VL) {
        float32x4_t e = Sleef_expf4_u10advsimd(vsubq_f32(vld1q_f32(x + i), vmax));
        vst1q_f32(x + i, e);
        sum = vaddq_f32(sum, e);
    }
    if (i < n) {
        /* pad with the max, whose exp is 1, and leave it out of the sum */
        float t[VL] = {m, m, m, m};
        memcpy(t, x + i, (size_t)(n - i) * sizeof(float));
        vst1q_f32(t, Sleef_expf4_u10advsimd(vsubq_f32(vld1q_f32(t), vmax)));
        float s = hsum(sum);
        for (int u = 0; u < n - i; u++) s += x[i + u] = t[u];
        sum = vsetq_lane_f32(s, vdupq_n_f32(0.0f), 0);
    }
    float32x4_t inv = vdupq_n_f32(1.0f / hsum(sum));
    for (i = 0; i + VL <= n; i += VL) vst1q_f32(x + i, vmulq_f32(vld1q_f32(x + i), inv));
    if (i < n) store_part(x + i, n - i, vmulq_f32(load_part(x + i, n - i), inv));
}

static void rmsnorm_neon(float *y, const float *x, const float *g, int n, float eps)
{
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        float32x4_t a = vld1q_f32(x + i), b = vld1q_f32(x + i + VL);
        s0 = vfmaq_f32(s0, a, a);
        s1 = vfmaq_f32(s1, b, b);
    }
    for (; i < n; i += VL) {
        float32x4_t a = load_part(x + i, n - i);
        s0 = vfmaq_f32(s0, a, a);
    }
    float32x4_t r = vdupq_n_f32(1.0f / __builtin_sqrtf(hsum(vaddq_f32(s0, s1)) / n + eps));
    for (i = 0; i < n; i += VL) {
        float32x4_t v = vmulq_f32(load_part(x + i, n - i), r);
        store_part(y + i, n - i, vmulq_f32(load_part(g + i, n - i), v));
    }
}

static void layernorm_neon(float *y, const float *x, const float *g, const float *b, int n, float eps)
{
    float32x4_t s = vdupq_n_f32(0.0f);
    for (int i = 0; i < n; i += VL) s = vaddq_f32(s, load_part(x + i, n - i));
    float mean = hsum(s) / n;
    float32x4_t vm = vdupq_n_f32(mean), v = vdupq_n_f32(0.0f);
    for (int i = 0; i < n; i += VL) {
        int r = n - i;
        float32x4_t d = vsubq_f32(load_part(x + i, r), vm);
        if (r < VL) d = vmulq_f32(d, load_part((const float[]){1, 1, 1, 1}, r)); /* zero the padding */
        v = vfmaq_f32(v, d, d);
    }
    float32x4_t rs = vdupq_n_f32(1.0f / __builtin_sqrtf(hsum(v) / n + eps));
    for (int i = 0; i < n; i += VL) {
        int r = n - i;
        float32x4_t t = vmulq_f32(load_part(g + i, r), vmulq_f32(vsubq_f32(load_part(x + i, r), vm), rs));
        if (b) t = vaddq_f32(t, load_part(b + i, r));
        store_part(y + i, r, t);
    }
}

/* ---- RoPE ---- */

static void rope_neon(float *x, const float *cos, const float *sin, int half)
{
    for (int k = 0; k < half; k += VL) {
        int r = half - k;
        float32x4_t a = load_part(x + k, r), b = load_part(x + k + half, r);
        float32x4_t c = load_part(cos + k, r), s = load_part(sin + k, r);
        store_part(x + k, r, vfmsq_f32(vmulq_f32(a, c), b, s));
        store_part(x + k + half, r, vfmaq_f32(vmulq_f32(b, c), a, s));
    }
}

/* ---- activations and vector arithmetic ---- */

static void relu_neon(float *x, int n)
{
    float32x4_t z = vdupq_n_f32(0.0f);
    for (int i = 0; i < n; i += VL) store_part(x + i, n - i, vmaxq_f32(load_part(x + i, n - i), z));
}

static void gelu_neon(float *x, int n)
{
    const float32x4_t c = vdupq_n_f32(0.7978845608028654f), c3 = vdupq_n_f32(0.044715f);
    const float32x4_t half = vdupq_n_f32(0.5f), one = vdupq_n_f32(1.0f);
    for (int i = 0; i < n; i += VL) {
        float32x4_t v = load_part(x + i, n - i);
        float32x4_t u = vmulq_f32(c, vfmaq_f32(v, vmulq_f32(c3, v), vmulq_f32(v, v)));
        float32x4_t t = Sleef_tanhf4_u10advsimd(u);
        store_part(x + i, n - i, vmulq_f32(vmulq_f32(half, v), vaddq_f32(one, t)));
    }
}

static void silu_neon(float *x, int n)
{
    const float32x4_t one = vdupq_n_f32(1.0f);
    for (int i = 0; i < n; i += VL) {
        float32x4_t v = load_part(x + i, n - i);
        float32x4_t e = Sleef_expf4_u10advsimd(vnegq_f32(v));
        store_part(x + i, n - i, vdivq_f32(v, vaddq_f32(one, e)));
    }
}

static void axpy_neon(float *y, float a, const float *x, int n)
{
    float32x4_t va = vdupq_n_f32(a);
    int i = 0;
    for (; i + VL <= n; i += VL) vst1q_f32(y + i, vfmaq_f32(vld1q_f32(y + i), va, vld1q_f32(x + i)));
    if (i < n) store_part(y + i, n - i, vfmaq_f32(load_part(y + i, n - i), va, load_part(x + i, n - i)));
}

static void scale_neon(float *y, float a, int n)
{
    float32x4_t va = vdupq_n_f32(a);
    int i = 0;
    for (; i + VL <= n; i += VL) vst1q_f32(y + i, vmulq_f32(va, vld1q_f32(y + i)));
    if (i < n) store_part(y + i, n - i, vmulq_f32(va, load_part(y + i, n - i)));
}

const sasp_kernels sasp_kernels_neon = {
    .name = "neon",
    .matmul = matmul_neon,
    .attn_scores = attn_scores_neon,
    .attn_accum = attn_accum_neon,
    .softmax = softmax_neon,
    .rmsnorm = rmsnorm_neon,
    .layernorm = layernorm_neon,
    .rope = rope_neon,
    .relu = relu_neon,
    .gelu = gelu_neon,
    .silu = silu_neon,
    .axpy = axpy_neon,
    .scale = scale_neon,
};
