/* kernels_avx512.c: the kernels in AVX-512F (16 floats per register, 32 registers).
 *
 * Same functions, same order and same blocking scheme as kernels_avx2.c and kernels_neon.c; only the
 * vector width and the block sizes differ. Tails use masked loads and stores, so no kernel reads or
 * writes past the end of its arrays, and no pointer needs to be aligned.
 *
 * matmul, Y = X W^T with W [m][k] row-major, has two paths:
 *  - few rows of X (decode, batched decode): blocks of dot products. A block of NR rows of X and MR
 *    rows of W keeps NR*MR vector accumulators running along k, so each row of W is read once per NR
 *    rows of X; the accumulators are summed horizontally at the end (four at a time).
 *  - many rows of X (prefill): W is repacked, PANEL rows and KC columns at a time, into a k-major
 *    buffer on the stack; a microkernel then computes MRX rows x PANEL columns of Y with broadcasts of
 *    X and no horizontal sums, reading the packed panel from L1 once per MRX rows of X. */
#include <immintrin.h>
#include <sleef.h>

#include "kernels.h"

#define VL 16             /* floats per vector */
#define PANEL 32          /* rows of W per packed panel: two vectors of Y columns */
#define MRX 12            /* rows of X per microkernel: 24 accumulators */
#define KC 256            /* columns of k per packed panel: 32 KB of stack */
#define GEBP_MIN_ROWS 24  /* from this many rows of X on, packing W pays for itself */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE __mmask16 tail_mask(int r) { return (__mmask16)((1u << r) - 1u); }

/* Horizontal sums: one vector, or four vectors into the four lanes of an SSE register. */
ALWAYS_INLINE float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }
ALWAYS_INLINE __m256 half_sum(__m512 v)
{
    return _mm256_add_ps(_mm512_castps512_ps256(v),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
ALWAYS_INLINE __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d)
{
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(half_sum(a), half_sum(b)),
                              _mm256_hadd_ps(half_sum(c), half_sum(d)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* ---- matmul, dot-product blocks ---- */

/* Y[i][j] = alpha * dot(X row i, W row j) (+ bias[j]) for i < NR, j < MR. NR and MR are constants
 * after inlining, so acc[][] lives in registers. */
ALWAYS_INLINE void dot_block(float *y, int ldy, const float *x, int ldx, const float *w, int ldw,
                             const float *bias, float alpha, int k, const int NR, const int MR)
{
    __m512 acc[8][8];
#pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) acc[i][j] = _mm512_setzero_ps();
    int p = 0;
    for (; p + VL <= k; p += VL) {
        __m512 wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) {
            wv[j] = _mm512_loadu_ps(w + (size_t)j * ldw + p);
            /* the same place in the next block's rows: W streams from L3 or memory */
            _mm_prefetch((const char *)(w + (size_t)(j + MR) * ldw + p), _MM_HINT_T0);
        }
#pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)i * ldx + p);
            __asm__("" : "+v"(xv)); /* one load, not one per FMA */
#pragma GCC unroll 8
            for (int j = 0; j < MR; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    if (p < k) {
        __mmask16 mk = tail_mask(k - p);
        __m512 wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) wv[j] = _mm512_maskz_loadu_ps(mk, w + (size_t)j * ldw + p);
#pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(mk, x + (size_t)i * ldx + p);
#pragma GCC unroll 8
            for (int j = 0; j < MR; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
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
    __mmask16 m0 = mw >= VL ? 0xffff : tail_mask(mw);
    __mmask16 m1 = mw >= 2 * VL ? 0xffff : mw > VL ? tail_mask(mw - VL) : 0;
    __m512 acc[MRX][2];
    __m512 b0 = first && bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 b1 = first && bias ? _mm512_maskz_loadu_ps(m1, bias + VL) : _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int i = 0; i < NR; i++) {
        acc[i][0] = first ? b0 : _mm512_maskz_loadu_ps(m0, y + (size_t)i * ldy);
        acc[i][1] = first ? b1 : _mm512_maskz_loadu_ps(m1, y + (size_t)i * ldy + VL);
    }
    for (int p = 0; p < kc; p++) {
        __m512 w0 = _mm512_load_ps(wp + (size_t)p * PANEL);
        __m512 w1 = _mm512_load_ps(wp + (size_t)p * PANEL + VL);
#pragma GCC unroll 12
        for (int i = 0; i < NR; i++) {
            __m512 a = _mm512_set1_ps(x[(size_t)i * ldx + p]);
            acc[i][0] = _mm512_fmadd_ps(a, w0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, w1, acc[i][1]);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < NR; i++) {
        _mm512_mask_storeu_ps(y + (size_t)i * ldy, m0, acc[i][0]);
        _mm512_mask_storeu_ps(y + (size_t)i * ldy + VL, m1, acc[i][1]);
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
            case 11: micro(yi, ldy, xi, ldx, wp, kc, bj, first, mw, 11); break;
            case 10: micro(yi, ldy, xi, ldx, wp, kc, bj, first, mw, 10); break;
            case 9: micro(yi, ldy, xi, ldx, wp, kc, bj, first, mw, 9); break;
            case 8: micro(yi, ldy, xi, ldx, wp, kc, bj, first, mw, 8); break;
            case 7: micro(yi, ldy, xi, ldx, wp, kc, bj, first, mw, 7); break;
            case 6: micro(yi, ldy, xi, ldx, wp, kc, bj, first, mw, 6); break;
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

static void matmul_avx512(float *y, int ldy, const float *x, int ldx, const float *w,
                          const float *bias, int n, int m, int k)
{
    if (n >= GEBP_MIN_ROWS)
        matmul_packed(y, ldy, x, ldx, w, bias, n, m, k);
    else
        matmul_dot(y, ldy, x, ldx, w, k, bias, 1.0f, n, m, k);
}

/* ---- attention ---- */

static void attn_scores_avx512(float *scores, const float *q, const float *keys, int stride, int n,
                               int dh, float scale)
{
    /* One row of "X" (the query) against n rows of "W" (the keys). */
    matmul_dot(scores, 0, q, 0, keys, stride, NULL, scale, 1, n, dh);
}

static void attn_accum_avx512(float *out, const float *p, const float *vals, int stride, int n, int dh)
{
    /* Four vectors of out at a time (dh = 64 in one pass), two keys per step on separate sums. */
    for (int c = 0; c < dh; c += 4 * VL) {
        __mmask16 mk[4];
        __m512 a[4], b[4];
        for (int v = 0; v < 4; v++) {
            int left = dh - c - v * VL;
            mk[v] = left >= VL ? 0xffff : left > 0 ? tail_mask(left) : 0;
            a[v] = _mm512_maskz_loadu_ps(mk[v], out + c + v * VL);
            b[v] = _mm512_setzero_ps();
        }
        int j = 0;
        for (; j + 2 <= n; j += 2) {
            __m512 p0 = _mm512_set1_ps(p[j]), p1 = _mm512_set1_ps(p[j + 1]);
            const float *v0 = vals + (size_t)j * stride + c, *v1 = v0 + stride;
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                a[v] = _mm512_fmadd_ps(p0, _mm512_maskz_loadu_ps(mk[v], v0 + v * VL), a[v]);
                b[v] = _mm512_fmadd_ps(p1, _mm512_maskz_loadu_ps(mk[v], v1 + v * VL), b[v]);
            }
        }
        if (j < n) {
            __m512 p0 = _mm512_set1_ps(p[j]);
            const float *v0 = vals + (size_t)j * stride + c;
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                a[v] = _mm512_fmadd_ps(p0, _mm512_maskz_loadu_ps(mk[v], v0 + v * VL), a[v]);
        }
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) _mm512_mask_storeu_ps(out + c + v * VL, mk[v], _mm512_add_ps(a[v], b[v]));
    }
}

/* ---- softmax and norms ---- */

static void softmax_avx512(float *x, int n)
{
    __m512 mx = _mm512_set1_ps(-__builtin_inff());
    int i = 0;
    for (; i + VL <= n; i += VL) mx = _mm512_max_ps(mx, _mm512_loadu_ps(x + i));
    if (i < n) mx = _mm512_mask_max_ps(mx, tail_mask(n - i), mx, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
    __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (i = 0; i + VL <= n; i += VL) {
        __m512 e = Sleef_expf16_u10avx512f(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmax));
        _mm512_storeu_ps(x + i, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        __m512 e = Sleef_expf16_u10avx512f(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vmax));
        _mm512_mask_storeu_ps(x + i, mk, e);
        sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(mk, e));
    }
    __m512 inv = _mm512_set1_ps(1.0f / hsum(sum));
    for (i = 0; i + VL <= n; i += VL) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), inv));
    }
}

static void rmsnorm_avx512(float *y, const float *x, const float *g, int n, float eps)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + VL);
        s0 = _mm512_fmadd_ps(a, a, s0);
        s1 = _mm512_fmadd_ps(b, b, s1);
    }
    for (; i < n; i += VL) {
        __m512 a = _mm512_maskz_loadu_ps(n - i >= VL ? 0xffff : tail_mask(n - i), x + i);
        s0 = _mm512_fmadd_ps(a, a, s0);
    }
    __m512 r = _mm512_set1_ps(1.0f / _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(hsum(_mm512_add_ps(s0, s1)) / n + eps))));
    for (i = 0; i < n; i += VL) {
        __mmask16 mk = n - i >= VL ? 0xffff : tail_mask(n - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), r);
        _mm512_mask_storeu_ps(y + i, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, g + i), v));
    }
}

static void layernorm_avx512(float *y, const float *x, const float *g, const float *b, int n, float eps)
{
    __m512 s = _mm512_setzero_ps();
    for (int i = 0; i < n; i += VL)
        s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(n - i >= VL ? 0xffff : tail_mask(n - i), x + i));
    float mean = hsum(s) / n;
    __m512 vm = _mm512_set1_ps(mean), v = _mm512_setzero_ps();
    for (int i = 0; i < n; i += VL) {
        __mmask16 mk = n - i >= VL ? 0xffff : tail_mask(n - i);
        __m512 d = _mm512_maskz_sub_ps(mk, _mm512_maskz_loadu_ps(mk, x + i), vm);
        v = _mm512_fmadd_ps(d, d, v);
    }
    __m512 r = _mm512_set1_ps(1.0f / _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(hsum(v) / n + eps))));
    for (int i = 0; i < n; i += VL) {
        __mmask16 mk = n - i >= VL ? 0xffff : tail_mask(n - i);
        __m512 t = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, g + i),
                                 _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm), r));
        if (b) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(mk, b + i));
        _mm512_mask_storeu_ps(y + i, mk, t);
    }
}

/* ---- RoPE ---- */

static void rope_avx512(float *x, const float *cos, const float *sin, int half)
{
    for (int k = 0; k < half; k += VL) {
        __mmask16 mk = half - k >= VL ? 0xffff : tail_mask(half - k);
        __m512 a = _mm512_maskz_loadu_ps(mk, x + k), b = _mm512_maskz_loadu_ps(mk, x + k + half);
        __m512 c = _mm512_maskz_loadu_ps(mk, cos + k), s = _mm512_maskz_loadu_ps(mk, sin + k);
        _mm512_mask_storeu_ps(x + k, mk, _mm512_fmsub_ps(a, c, _mm512_mul_ps(b, s)));
        _mm512_mask_storeu_ps(x + k + half, mk, _mm512_fmadd_ps(a, s, _mm512_mul_ps(b, c)));
    }
}

/* ---- activations and vector arithmetic ---- */

static void relu_avx512(float *x, int n)
{
    __m512 z = _mm512_setzero_ps();
    for (int i = 0; i < n; i += VL) {
        __mmask16 mk = n - i >= VL ? 0xffff : tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, mk, _mm512_max_ps(_mm512_maskz_loadu_ps(mk, x + i), z));
    }
}

static void gelu_avx512(float *x, int n)
{
    const __m512 c = _mm512_set1_ps(0.7978845608028654f), c3 = _mm512_set1_ps(0.044715f);
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    for (int i = 0; i < n; i += VL) {
        __mmask16 mk = n - i >= VL ? 0xffff : tail_mask(n - i);
        __m512 v = _mm512_maskz_loadu_ps(mk, x + i);
        __m512 u = _mm512_mul_ps(c, _mm512_fmadd_ps(_mm512_mul_ps(c3, v), _mm512_mul_ps(v, v), v));
        __m512 t = Sleef_tanhf16_u10avx512f(u);
        _mm512_mask_storeu_ps(x + i, mk, _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, t)));
    }
}

static void silu_avx512(float *x, int n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int i = 0; i < n; i += VL) {
        __mmask16 mk = n - i >= VL ? 0xffff : tail_mask(n - i);
        __m512 v = _mm512_maskz_loadu_ps(mk, x + i);
        __m512 e = Sleef_expf16_u10avx512f(_mm512_sub_ps(_mm512_setzero_ps(), v));
        _mm512_mask_storeu_ps(x + i, mk, _mm512_div_ps(v, _mm512_add_ps(one, e)));
    }
}

static void axpy_avx512(float *y, float a, const float *x, int n)
{
    __m512 va = _mm512_set1_ps(a);
    int i = 0;
    for (; i + VL <= n; i += VL)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, mk, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(mk, x + i),
                                                         _mm512_maskz_loadu_ps(mk, y + i)));
    }
}

static void scale_avx512(float *y, float a, int n)
{
    __m512 va = _mm512_set1_ps(a);
    int i = 0;
    for (; i + VL <= n; i += VL) _mm512_storeu_ps(y + i, _mm512_mul_ps(va, _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, mk, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(mk, y + i)));
    }
}

const sasp_kernels sasp_kernels_avx512 = {
    .name = "avx512",
    .matmul = matmul_avx512,
    .attn_scores = attn_scores_avx512,
    .attn_accum = attn_accum_avx512,
    .softmax = softmax_avx512,
    .rmsnorm = rmsnorm_avx512,
    .layernorm = layernorm_avx512,
    .rope = rope_avx512,
    .relu = relu_avx512,
    .gelu = gelu_avx512,
    .silu = silu_avx512,
    .axpy = axpy_avx512,
    .scale = scale_avx512,
};
