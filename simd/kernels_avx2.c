/* kernels_avx2.c: the kernels in AVX2 + FMA (8 floats per register, 16 registers).
 *
 * Same functions, same order and same blocking scheme as kernels_avx512.c and kernels_neon.c; only the
 * vector width and the block sizes differ. Tails use masked loads and stores (vmaskmov), so no kernel
 * reads or writes past the end of its arrays, and no pointer needs to be aligned.
 *
 * matmul, Y = X W^T with W [m][k] row-major, has two paths:
 *  - few rows of X (decode, batched decode): blocks of dot products. A block of NR rows of X and MR
 *    rows of W keeps NR*MR vector accumulators running along k, so each row of W is read once per NR
 *    rows of X; the accumulators are summed horizontally at the end (four at a time).
 *  - many rows of X (prefill): W is repacked, PANEL rows and KC columns at a time, into a k-major
 *    buffer on the stack; a microkernel then computes MRX rows x PANEL columns of Y with broadcasts of
 *    X and no horizontal sums, reading the packed panel from L1 once per MRX rows of X. */
#include <stdint.h>

#include <immintrin.h>
#include <sleef.h>

#include "kernels.h"

#define VL 8              /* floats per vector */
#define PANEL 16          /* rows of W per packed panel: two vectors of Y columns */
#define MRX 6             /* rows of X per microkernel: 12 accumulators */
#define KC 256            /* columns of k per packed panel: 16 KB of stack */
#define GEBP_MIN_ROWS 24  /* from this many rows of X on, packing W pays for itself */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* tail_mask(r): the first r lanes set, 0 <= r <= VL. */
static const int32_t mask_table[2 * VL] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
ALWAYS_INLINE __m256i tail_mask(int r) { return _mm256_loadu_si256((const __m256i *)(mask_table + VL - r)); }
ALWAYS_INLINE __m256i lanes(int left) { return tail_mask(left >= VL ? VL : left > 0 ? left : 0); }

/* Horizontal sums: one vector, or four vectors into the four lanes of an SSE register. */
ALWAYS_INLINE __m128 half_sum(__m256 v) { return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); }
ALWAYS_INLINE float hsum(__m256 v)
{
    __m128 h = half_sum(v);
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}
ALWAYS_INLINE __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return half_sum(h);
}
ALWAYS_INLINE float hmax(__m256 v)
{
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}

/* ---- matmul, dot-product blocks ---- */

/* Y[i][j] = alpha * dot(X row i, W row j) (+ bias[j]) for i < NR, j < MR. NR and MR are constants
 * after inlining, so acc[][] lives in registers. */
ALWAYS_INLINE void dot_block(float *y, int ldy, const float *x, int ldx, const float *w, int ldw,
                             const float *bias, float alpha, int k, const int NR, const int MR)
{
    __m256 acc[8][8];
#pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) acc[i][j] = _mm256_setzero_ps();
    int p = 0;
    for (; p + VL <= k; p += VL) {
        __m256 wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) {
            wv[j] = _mm256_loadu_ps(w + (size_t)j * ldw + p);
            /* the same place in the next block's rows: W streams from L3 or memory */
            if ((p & 15) == 0) _mm_prefetch((const char *)(w + (size_t)(j + MR) * ldw + p), _MM_HINT_T0);
        }
#pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            __m256 xv = _mm256_loadu_ps(x + (size_t)i * ldx + p);
            if (MR > 1) __asm__("" : "+x"(xv)); /* one load, not one per FMA */
#pragma GCC unroll 8
            for (int j = 0; j < MR; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    if (p < k) {
        __m256i mk = tail_mask(k - p);
        __m256 wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) wv[j] = _mm256_maskload_ps(w + (size_t)j * ldw + p, mk);
#pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            __m256 xv = _mm256_maskload_ps(x + (size_t)i * ldx + p, mk);
#pragma GCC unroll 8
            for (int j = 0; j < MR; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    /* Horizontal sums four accumulators at a time, in row-major order of the block. */
    float sums[64];
    const int NS = NR * MR;
#pragma GCC unroll 16
    for (int s = 0; s + 4 <= NS; s += 4)
        _mm_storeu_ps(sums + s, hsum4(acc[s / MR][s % MR], acc[(s + 1) / MR][(s + 1) % MR],
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

/* Rows of X in blocks of 4 (W read once per 4 rows), then 2, then 1. */
static void matmul_dot(float *y, int ldy, const float *x, int ldx, const float *w, int ldw,
                       const float *bias, float alpha, int n, int m, int k)
{
    int i = 0;
    for (; i + 4 <= n; i += 4)
        dot_rows(y + (size_t)i * ldy, ldy, x + (size_t)i * ldx, ldx, w, ldw, bias, alpha, m, k, 4, 3);
    if (i + 2 <= n) {
        dot_rows(y + (size_t)i * ldy, ldy, x + (size_t)i * ldx, ldx, w, ldw, bias, alpha, m, k, 2, 4);
        i += 2;
    }
    if (i < n) dot_rows(y + (size_t)i * ldy, ldy, x + (size_t)i * ldx, ldx, w, ldw, bias, alpha, m, k, 1, 8);
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
    __m256i m0 = lanes(mw), m1 = lanes(mw - VL);
    __m256 acc[MRX][2];
    __m256 b0 = first && bias ? _mm256_maskload_ps(bias, m0) : _mm256_setzero_ps();
    __m256 b1 = first && bias ? _mm256_maskload_ps(bias + VL, m1) : _mm256_setzero_ps();
#pragma GCC unroll 12
    for (int i = 0; i < NR; i++) {
        acc[i][0] = first ? b0 : _mm256_maskload_ps(y + (size_t)i * ldy, m0);
        acc[i][1] = first ? b1 : _mm256_maskload_ps(y + (size_t)i * ldy + VL, m1);
    }
    for (int p = 0; p < kc; p++) {
        __m256 w0 = _mm256_load_ps(wp + (size_t)p * PANEL);
        __m256 w1 = _mm256_load_ps(wp + (size_t)p * PANEL + VL);
#pragma GCC unroll 12
        for (int i = 0; i < NR; i++) {
            __m256 a = _mm256_broadcast_ss(x + (size_t)i * ldx + p);
            acc[i][0] = _mm256_fmadd_ps(a, w0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(a, w1, acc[i][1]);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < NR; i++) {
        _mm256_maskstore_ps(y + (size_t)i * ldy, m0, acc[i][0]);
        _mm256_maskstore_ps(y + (size_t)i * ldy + VL, m1, acc[i][1]);
    }
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

static void matmul_avx2(float *y, int ldy, const float *x, int ldx, const float *w,
                        const float *bias, int n, int m, int k)
{
    if (n >= GEBP_MIN_ROWS)
        matmul_packed(y, ldy, x, ldx, w, bias, n, m, k);
    else
        matmul_dot(y, ldy, x, ldx, w, k, bias, 1.0f, n, m, k);
}

/* ---- attention ---- */

static void attn_scores_avx2(float *scores, const float *q, const float *keys, int stride, int n,
                             int dh, float scale)
{
    /* One row of "X" (the query) against n rows of "W" (the keys). */
    matmul_dot(scores, 0, q, 0, keys, stride, NULL, scale, 1, n, dh);
}

static void attn_accum_avx2(float *out, const float *p, const float *vals, int stride, int n, int dh)
{
    /* Four vectors of out at a time, two keys per step on separate sums. */
    for (int c = 0; c < dh; c += 4 * VL) {
        __m256i mk[4];
        __m256 a[4], b[4];
        for (int v = 0; v < 4; v++) {
            mk[v] = lanes(dh - c - v * VL);
            a[v] = _mm256_maskload_ps(out + c + v * VL, mk[v]);
            b[v] = _mm256_setzero_ps();
        }
        int j = 0;
        for (; j + 2 <= n; j += 2) {
            __m256 p0 = _mm256_set1_ps(p[j]), p1 = _mm256_set1_ps(p[j + 1]);
            const float *v0 = vals + (size_t)j * stride + c, *v1 = v0 + stride;
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                a[v] = _mm256_fmadd_ps(p0, _mm256_maskload_ps(v0 + v * VL, mk[v]), a[v]);
                b[v] = _mm256_fmadd_ps(p1, _mm256_maskload_ps(v1 + v * VL, mk[v]), b[v]);
            }
        }
        if (j < n) {
            __m256 p0 = _mm256_set1_ps(p[j]);
            const float *v0 = vals + (size_t)j * stride + c;
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                a[v] = _mm256_fmadd_ps(p0, _mm256_maskload_ps(v0 + v * VL, mk[v]), a[v]);
        }
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) _mm256_maskstore_ps(out + c + v * VL, mk[v], _mm256_add_ps(a[v], b[v]));
    }
}

/* ---- softmax and norms ---- */

static void softmax_avx2(float *x, int n)
{
    __m256 mx = _mm256_set1_ps(-__builtin_inff());
    int i = 0;
    for (; i + VL <= n; i += VL) mx = _mm256_max_ps(mx, _mm256_loadu_ps(x + i));
    float m = hmax(mx);
    for (int t = i; t < n; t++) m = x[t] > m ? x[t] : m;
    __m256 vmax = _mm256_set1_ps(m);
    __m256 sum = _mm256_setzero_ps();
    for (i = 0; i + VL <= n; i += VL) {
        __m256 e = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        _mm256_storeu_ps(x + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        __m256 e = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vmax));
        _mm256_maskstore_ps(x + i, mk, e);
        sum = _mm256_add_ps(sum, _mm256_and_ps(e, _mm256_castsi256_ps(mk)));
    }
    __m256 inv = _mm256_set1_ps(1.0f / hsum(sum));
    for (i = 0; i + VL <= n; i += VL) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        _mm256_maskstore_ps(x + i, mk, _mm256_mul_ps(_mm256_maskload_ps(x + i, mk), inv));
    }
}

static void rmsnorm_avx2(float *y, const float *x, const float *g, int n, float eps)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + VL);
        s0 = _mm256_fmadd_ps(a, a, s0);
        s1 = _mm256_fmadd_ps(b, b, s1);
    }
    for (; i < n; i += VL) {
        __m256 a = _mm256_maskload_ps(x + i, lanes(n - i));
        s0 = _mm256_fmadd_ps(a, a, s0);
    }
    __m256 r = _mm256_set1_ps(1.0f / _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(hsum(_mm256_add_ps(s0, s1)) / n + eps))));
    for (i = 0; i < n; i += VL) {
        __m256i mk = lanes(n - i);
        __m256 v = _mm256_mul_ps(_mm256_maskload_ps(x + i, mk), r);
        _mm256_maskstore_ps(y + i, mk, _mm256_mul_ps(_mm256_maskload_ps(g + i, mk), v));
    }
}

static void layernorm_avx2(float *y, const float *x, const float *g, const float *b, int n, float eps)
{
    __m256 s = _mm256_setzero_ps();
    for (int i = 0; i < n; i += VL) s = _mm256_add_ps(s, _mm256_maskload_ps(x + i, lanes(n - i)));
    float mean = hsum(s) / n;
    __m256 vm = _mm256_set1_ps(mean), v = _mm256_setzero_ps();
    for (int i = 0; i < n; i += VL) {
        __m256i mk = lanes(n - i);
        __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm), _mm256_castsi256_ps(mk));
        v = _mm256_fmadd_ps(d, d, v);
    }
    __m256 r = _mm256_set1_ps(1.0f / _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(hsum(v) / n + eps))));
    for (int i = 0; i < n; i += VL) {
        __m256i mk = lanes(n - i);
        __m256 t = _mm256_mul_ps(_mm256_maskload_ps(g + i, mk),
                                 _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm), r));
        if (b) t = _mm256_add_ps(t, _mm256_maskload_ps(b + i, mk));
        _mm256_maskstore_ps(y + i, mk, t);
    }
}

/* ---- RoPE ---- */

static void rope_avx2(float *x, const float *cos, const float *sin, int half)
{
    for (int k = 0; k < half; k += VL) {
        __m256i mk = lanes(half - k);
        __m256 a = _mm256_maskload_ps(x + k, mk), b = _mm256_maskload_ps(x + k + half, mk);
        __m256 c = _mm256_maskload_ps(cos + k, mk), s = _mm256_maskload_ps(sin + k, mk);
        _mm256_maskstore_ps(x + k, mk, _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)));
        _mm256_maskstore_ps(x + k + half, mk, _mm256_fmadd_ps(a, s, _mm256_mul_ps(b, c)));
    }
}

/* ---- activations and vector arithmetic ---- */

static void relu_avx2(float *x, int n)
{
    __m256 z = _mm256_setzero_ps();
    for (int i = 0; i < n; i += VL) {
        __m256i mk = lanes(n - i);
        _mm256_maskstore_ps(x + i, mk, _mm256_max_ps(_mm256_maskload_ps(x + i, mk), z));
    }
}

static void gelu_avx2(float *x, int n)
{
    const __m256 c = _mm256_set1_ps(0.7978845608028654f), c3 = _mm256_set1_ps(0.044715f);
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (int i = 0; i < n; i += VL) {
        __m256i mk = lanes(n - i);
        __m256 v = _mm256_maskload_ps(x + i, mk);
        __m256 u = _mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_mul_ps(c3, v), _mm256_mul_ps(v, v), v));
        __m256 t = Sleef_tanhf8_u10avx2(u);
        _mm256_maskstore_ps(x + i, mk, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, t)));
    }
}

static void silu_avx2(float *x, int n)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int i = 0; i < n; i += VL) {
        __m256i mk = lanes(n - i);
        __m256 v = _mm256_maskload_ps(x + i, mk);
        __m256 e = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_setzero_ps(), v));
        _mm256_maskstore_ps(x + i, mk, _mm256_div_ps(v, _mm256_add_ps(one, e)));
    }
}

static void axpy_avx2(float *y, float a, const float *x, int n)
{
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + VL <= n; i += VL)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        _mm256_maskstore_ps(y + i, mk, _mm256_fmadd_ps(va, _mm256_maskload_ps(x + i, mk),
                                                       _mm256_maskload_ps(y + i, mk)));
    }
}

static void scale_avx2(float *y, float a, int n)
{
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + VL <= n; i += VL) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        _mm256_maskstore_ps(y + i, mk, _mm256_mul_ps(va, _mm256_maskload_ps(y + i, mk)));
    }
}

const sasp_kernels sasp_kernels_avx2 = {
    .name = "avx2",
    .matmul = matmul_avx2,
    .attn_scores = attn_scores_avx2,
    .attn_accum = attn_accum_avx2,
    .softmax = softmax_avx2,
    .rmsnorm = rmsnorm_avx2,
    .layernorm = layernorm_avx2,
    .rope = rope_avx2,
    .relu = relu_avx2,
    .gelu = gelu_avx2,
    .silu = silu_avx2,
    .axpy = axpy_avx2,
    .scale = scale_avx2,
};
