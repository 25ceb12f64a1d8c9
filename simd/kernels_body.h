/* kernels_body.h: the vector kernels and their table, written once over the primitives of one ISA.
 *
 * Not a header of its own: kernels_avx2.c, kernels_avx512.c and kernels_neon.c each define the
 * primitives below for their instruction set, then include this file, which turns them into the
 * sasp_kernels table of kernels.h. The scalar reference (kernels_scalar.c) does not use it.
 *
 * What an ISA file defines: the ALWAYS_INLINE macro (static inline, always_inline), and as such
 * functions, all on floats:
 *   vec, VL                      the vector type and how many floats it holds
 *   vtail, v_lanes(left)         the live lanes of a tail: the first min(max(left, 0), VL)
 *   v_load(p), v_store(p, v)     VL floats, any alignment
 *   v_load_tail(p, t), v_store_tail(p, t, v)   the live lanes only: the others load as 0, and nothing
 *                                past them is read or written
 *   v_keep(t, v)                 v with the lanes outside t set to 0
 *   v_zero(), v_set1(a), v_broadcast(p)        0, a, *p in every lane
 *   v_add, v_sub, v_mul, v_div, v_max; v_fma(a, b, c) = a b + c; v_fnma(a, b, c) = c - a b
 *   v_hsum(v), v_hmax(v)         the sum, the max of the lanes
 *   v_hsum4(out, a, b, c, d)     out[0..3] = the sums of a, b, c, d (the ISA's fast form)
 *   v_exp(v), v_tanh(v)          SLEEF's, within 1 ulp
 *   v_prefetch(p)                fetch the cache line of p into L1
 *   v_in_register(v)             v, kept in a register (one load of x, not a memory operand per FMA)
 * and its block sizes:
 *   PANEL, MRX, KC, GEBP_MIN_ROWS   matmul's packed path (below)
 *   DOT_BLOCKS(B)                B(NR, MR) for each register block of matmul's dot-product path
 *                                (NR rows of X, MR of W), largest NR first, ending with NR = 1
 *   ACCUM_VECS                   vectors of out per pass of attn_accum
 *   KERNELS_TABLE, KERNELS_NAME  the table to define and its name
 *
 * Tails use v_load_tail / v_store_tail, so no kernel reads or writes past the end of its arrays, and
 * no pointer needs to be aligned.
 *
 * matmul, Y = X W^T with W [m][k] row-major, has two paths:
 *  - few rows of X (decode, batched decode): blocks of dot products. A block of NR rows of X and MR
 *    rows of W keeps NR*MR vector accumulators running along k, so each row of W is read once per NR
 *    rows of X; the accumulators are summed horizontally at the end (four at a time).
 *  - many rows of X (prefill): W is repacked, PANEL rows and KC columns at a time, into a k-major
 *    buffer on the stack; a microkernel then computes MRX rows x PANEL columns of Y with broadcasts of
 *    X and no horizontal sums, reading the packed panel from L1 once per MRX rows of X.
 *
 * Weight types. matmul reads W only through the weight-access functions (w_row, w_load, w_load_tail,
 * w_get, w_prefetch), which take the storage type WT, a constant after inlining, as their last
 * argument; the drivers pass it through. Float32 (W_F32) is the only type so far. Adding one (bf16,
 * q8_0) is: its "VL weights of a row at column p, as floats" primitive in each ISA file (e.g.
 * v_load_bf16), a case of that type in each weight-access function, and a matmul_<type> entry point
 * like matmul_f32; the drivers stay as they are. A fused instruction (vdpbf16ps, VNNI) is a loop of
 * that type's own in dot_along_k, the rest of the drivers unchanged.
 *
 * Adding an ISA: a kernels_<isa>.c that defines the primitives and block sizes above and includes this
 * file (kernels_neon.c shows an ISA without masked loads), its table declared in kernels.h and offered
 * by dispatch.c, and a library of its own in Makefile.am's simd section, built with its -m flags. */

#define FLOATS_PER_LINE 16 /* a 64-byte cache line */

/* ---- weight access: the only code that reads W ---- */

enum weight_type { W_F32 };

/* Row j of W, rows ldw weights apart. */
ALWAYS_INLINE const void *w_row(const void *w, size_t ldw, int j, const enum weight_type WT)
{
    switch (WT) {
    case W_F32: return (const float *)w + (size_t)j * ldw;
    }
    __builtin_unreachable();
}
/* VL weights of a row from column p, as floats; or only the lanes of t (the others 0). */
ALWAYS_INLINE vec w_load(const void *row, int p, const enum weight_type WT)
{
    switch (WT) {
    case W_F32: return v_load((const float *)row + p);
    }
    __builtin_unreachable();
}
ALWAYS_INLINE vec w_load_tail(const void *row, int p, vtail t, const enum weight_type WT)
{
    switch (WT) {
    case W_F32: return v_load_tail((const float *)row + p, t);
    }
    __builtin_unreachable();
}
/* The weight of a row at column p, as a float (for packing). */
ALWAYS_INLINE float w_get(const void *row, int p, const enum weight_type WT)
{
    switch (WT) {
    case W_F32: return ((const float *)row)[p];
    }
    __builtin_unreachable();
}
ALWAYS_INLINE void w_prefetch(const void *row, int p, const enum weight_type WT)
{
    switch (WT) {
    case W_F32: v_prefetch((const float *)row + p); return;
    }
    __builtin_unreachable();
}

/* ---- matmul, dot-product blocks ---- */

/* sums[i*MR + j] = the horizontal sum of acc[i][j], four at a time. */
ALWAYS_INLINE void sum_block(float *sums, vec acc[8][8], const int NR, const int MR)
{
    const int NS = NR * MR;
#pragma GCC unroll 16
    for (int s = 0; s + 4 <= NS; s += 4)
        v_hsum4(sums + s, acc[s / MR][s % MR], acc[(s + 1) / MR][(s + 1) % MR], acc[(s + 2) / MR][(s + 2) % MR],
                acc[(s + 3) / MR][(s + 3) % MR]);
#pragma GCC unroll 4
    for (int s = NS & ~3; s < NS; s++) sums[s] = v_hsum(acc[s / MR][s % MR]);
}

/* acc[i][j] += dot(X row i, W row j) over columns [0, k), for i < NR, j < MR: each W vector is loaded
 * once for the NR rows of X. A weight type with a fused dot instruction has its own loop here. */
ALWAYS_INLINE void dot_along_k(vec acc[8][8], const float *x, int ldx, const void *w, size_t ldw, int k,
                               const int NR, const int MR, const enum weight_type WT)
{
    int p = 0;
    for (; p + VL <= k; p += VL) {
        vec wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) {
            wv[j] = w_load(w_row(w, ldw, j, WT), p, WT);
            /* the same place in the next block's rows, once a line: W streams from L3 or memory */
            if (VL >= FLOATS_PER_LINE || p % FLOATS_PER_LINE == 0) w_prefetch(w_row(w, ldw, j + MR, WT), p, WT);
        }
#pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            vec xv = v_load(x + (size_t)i * ldx + p);
            if (MR > 1) xv = v_in_register(xv);
#pragma GCC unroll 8
            for (int j = 0; j < MR; j++) acc[i][j] = v_fma(xv, wv[j], acc[i][j]);
        }
    }
    if (p < k) {
        vtail t = v_lanes(k - p);
        vec wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) wv[j] = w_load_tail(w_row(w, ldw, j, WT), p, t, WT);
#pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            vec xv = v_load_tail(x + (size_t)i * ldx + p, t);
#pragma GCC unroll 8
            for (int j = 0; j < MR; j++) acc[i][j] = v_fma(xv, wv[j], acc[i][j]);
        }
    }
}

/* Y[i][j] = alpha * dot(X row i, W row j) (+ bias[j]) for i < NR, j < MR. NR and MR are constants
 * after inlining, so acc[][] lives in registers. */
ALWAYS_INLINE void dot_block(float *y, int ldy, const float *x, int ldx, const void *w, size_t ldw,
                             const float *bias, float alpha, int k, const int NR, const int MR,
                             const enum weight_type WT)
{
    vec acc[8][8];
#pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) acc[i][j] = v_zero();
    dot_along_k(acc, x, ldx, w, ldw, k, NR, MR, WT);
    float sums[64];
    sum_block(sums, acc, NR, MR);
#pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++)
            y[(size_t)i * ldy + j] = alpha * sums[i * MR + j] + (bias ? bias[j] : 0.0f);
}

/* All m columns of Y for NR rows of X: blocks of MR rows of W, then one row at a time. */
ALWAYS_INLINE void dot_rows(float *y, int ldy, const float *x, int ldx, const void *w, size_t ldw,
                            const float *bias, float alpha, int m, int k, const int NR, const int MR,
                            const enum weight_type WT)
{
    int j = 0;
    for (; j + MR <= m; j += MR)
        dot_block(y + j, ldy, x, ldx, w_row(w, ldw, j, WT), ldw, bias ? bias + j : NULL, alpha, k, NR, MR, WT);
    for (; j < m; j++)
        dot_block(y + j, ldy, x, ldx, w_row(w, ldw, j, WT), ldw, bias ? bias + j : NULL, alpha, k, NR, 1, WT);
}

/* Y = alpha X W^T (+ bias): rows of X in the blocks of DOT_BLOCKS, largest first (a block of NR rows
 * reads W once for all NR). */
ALWAYS_INLINE void matmul_dot(float *y, int ldy, const float *x, int ldx, const void *w, size_t ldw,
                              const float *bias, float alpha, int n, int m, int k, const enum weight_type WT)
{
    int i = 0;
#define DOT_ROWS_OF(NR, MR)                                                                               \
    for (; i + (NR) <= n; i += (NR))                                                                     \
        dot_rows(y + (size_t)i * ldy, ldy, x + (size_t)i * ldx, ldx, w, ldw, bias, alpha, m, k, NR, MR, WT);
    DOT_BLOCKS(DOT_ROWS_OF)
#undef DOT_ROWS_OF
}

/* ---- matmul, packed panels ---- */

/* wp[p][r] = W[r][pc + p] as floats, for p < kc, r < PANEL, W from its panel's first row; rows
 * r >= mw are zero. */
ALWAYS_INLINE void pack_panel(float *wp, const void *w, size_t ldw, int mw, int pc, int kc,
                              const enum weight_type WT)
{
    for (int p = 0; p < kc; p++) {
        float *dst = wp + (size_t)p * PANEL;
        for (int r = 0; r < mw; r++) dst[r] = w_get(w_row(w, ldw, r, WT), pc + p, WT);
        for (int r = mw; r < PANEL; r++) dst[r] = 0.0f;
    }
}

/* Y[i][0..mw) (+)= sum_p X[i][p] wp[p][..] for i < NR; first: start from bias (or 0), else from Y. */
ALWAYS_INLINE void micro(float *y, int ldy, const float *x, int ldx, const float *wp, int kc,
                         const float *bias, int first, int mw, const int NR)
{
    enum { NV = PANEL / VL }; /* vectors of Y columns */
    vtail t[NV];
    vec acc[MRX][NV], b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) {
        t[v] = v_lanes(mw - v * VL);
        b[v] = first && bias ? v_load_tail(bias + v * VL, t[v]) : v_zero();
    }
#pragma GCC unroll 12
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[i][v] = first ? b[v] : v_load_tail(y + (size_t)i * ldy + v * VL, t[v]);
    for (int p = 0; p < kc; p++) {
        vec wv[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) wv[v] = v_load(wp + (size_t)p * PANEL + v * VL);
#pragma GCC unroll 12
        for (int i = 0; i < NR; i++) {
            vec a = v_broadcast(x + (size_t)i * ldx + p);
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) acc[i][v] = v_fma(a, wv[v], acc[i][v]);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) v_store_tail(y + (size_t)i * ldy + v * VL, t[v], acc[i][v]);
}

/* The last rows (fewer than MRX) as one microkernel of exactly that many rows. The cases of MRX rows
 * or more cannot occur and compile to nothing. */
_Static_assert(MRX <= 16, "micro_tail has cases for up to 15 rows");
ALWAYS_INLINE void micro_tail(float *y, int ldy, const float *x, int ldx, const float *wp, int kc,
                              const float *bias, int first, int mw, int rows)
{
#define MICRO_ROWS(R)                                                                                    \
    case R:                                                                                              \
        if (R < MRX) micro(y, ldy, x, ldx, wp, kc, bias, first, mw, R < MRX ? R : 1);                    \
        break;
    switch (rows) {
        MICRO_ROWS(15) MICRO_ROWS(14) MICRO_ROWS(13) MICRO_ROWS(12) MICRO_ROWS(11) MICRO_ROWS(10)
        MICRO_ROWS(9) MICRO_ROWS(8) MICRO_ROWS(7) MICRO_ROWS(6) MICRO_ROWS(5) MICRO_ROWS(4)
        MICRO_ROWS(3) MICRO_ROWS(2) MICRO_ROWS(1)
    default: break;
    }
#undef MICRO_ROWS
}

ALWAYS_INLINE void matmul_packed(float *y, int ldy, const float *x, int ldx, const void *w,
                                 const float *bias, int n, int m, int k, const enum weight_type WT)
{
    float wp[KC * PANEL] __attribute__((aligned(64)));
    for (int j = 0; j < m; j += PANEL) {
        int mw = m - j < PANEL ? m - j : PANEL;
        for (int pc = 0; pc < k; pc += KC) {
            int kc = k - pc < KC ? k - pc : KC;
            pack_panel(wp, w_row(w, k, j, WT), k, mw, pc, kc, WT);
            const float *bj = bias ? bias + j : NULL;
            int first = pc == 0, i = 0;
            for (; i + MRX <= n; i += MRX)
                micro(y + (size_t)i * ldy + j, ldy, x + (size_t)i * ldx + pc, ldx, wp, kc, bj, first, mw, MRX);
            float *yi = y + (size_t)i * ldy + j;
            const float *xi = x + (size_t)i * ldx + pc;
            micro_tail(yi, ldy, xi, ldx, wp, kc, bj, first, mw, n - i);
        }
    }
}

/* ---- matmul entry points, one per weight type ---- */

/* Also the attention scores, whose "W" is the float32 key cache. */
static void matmul_dot_f32(float *y, int ldy, const float *x, int ldx, const float *w, int ldw,
                           const float *bias, float alpha, int n, int m, int k)
{
    matmul_dot(y, ldy, x, ldx, w, ldw, bias, alpha, n, m, k, W_F32);
}

static void matmul_f32(float *y, int ldy, const float *x, int ldx, const float *w, const float *bias,
                       int n, int m, int k)
{
    if (n >= GEBP_MIN_ROWS)
        matmul_packed(y, ldy, x, ldx, w, bias, n, m, k, W_F32);
    else
        matmul_dot_f32(y, ldy, x, ldx, w, k, bias, 1.0f, n, m, k);
}

/* ---- attention ---- */

static void attn_scores(float *scores, const float *q, const float *keys, int stride, int n, int dh,
                        float scale)
{
    /* One row of "X" (the query) against n rows of "W" (the keys). */
    matmul_dot_f32(scores, 0, q, 0, keys, stride, NULL, scale, 1, n, dh);
}

/* out[0 .. ACCUM_VECS*VL) (its first `left` floats) += sum_j p[j] vals[j*stride + ..], two keys per
 * step on separate sums; FULL: all ACCUM_VECS vectors are whole, so no tail loads. */
ALWAYS_INLINE void accum_pass(float *out, const float *p, const float *vals, int stride, int n, int left,
                              const int FULL)
{
    vtail t[ACCUM_VECS];
    vec a[ACCUM_VECS], b[ACCUM_VECS];
#pragma GCC unroll 8
    for (int v = 0; v < ACCUM_VECS; v++) {
        t[v] = v_lanes(left - v * VL);
        a[v] = FULL ? v_load(out + v * VL) : v_load_tail(out + v * VL, t[v]);
        b[v] = v_zero();
    }
    int j = 0;
    for (; j + 2 <= n; j += 2) {
        vec p0 = v_set1(p[j]), p1 = v_set1(p[j + 1]);
        const float *v0 = vals + (size_t)j * stride, *v1 = v0 + stride;
#pragma GCC unroll 8
        for (int v = 0; v < ACCUM_VECS; v++) {
            a[v] = v_fma(p0, FULL ? v_load(v0 + v * VL) : v_load_tail(v0 + v * VL, t[v]), a[v]);
            b[v] = v_fma(p1, FULL ? v_load(v1 + v * VL) : v_load_tail(v1 + v * VL, t[v]), b[v]);
        }
    }
    if (j < n) {
        vec p0 = v_set1(p[j]);
        const float *v0 = vals + (size_t)j * stride;
#pragma GCC unroll 8
        for (int v = 0; v < ACCUM_VECS; v++)
            a[v] = v_fma(p0, FULL ? v_load(v0 + v * VL) : v_load_tail(v0 + v * VL, t[v]), a[v]);
    }
#pragma GCC unroll 8
    for (int v = 0; v < ACCUM_VECS; v++) {
        if (FULL)
            v_store(out + v * VL, v_add(a[v], b[v]));
        else
            v_store_tail(out + v * VL, t[v], v_add(a[v], b[v]));
    }
}

static void attn_accum(float *out, const float *p, const float *vals, int stride, int n, int dh)
{
    for (int c = 0; c < dh; c += ACCUM_VECS * VL) {
        if (dh - c >= ACCUM_VECS * VL)
            accum_pass(out + c, p, vals + c, stride, n, dh - c, 1);
        else
            accum_pass(out + c, p, vals + c, stride, n, dh - c, 0);
    }
}

/* ---- softmax and norms ---- */

static void softmax(float *x, int n)
{
    vec mx = v_set1(-__builtin_inff());
    int i = 0;
    for (; i + VL <= n; i += VL) mx = v_max(mx, v_load(x + i));
    float m = v_hmax(mx);
    for (int t = i; t < n; t++) m = x[t] > m ? x[t] : m;
    vec vmax = v_set1(m), sum = v_zero();
    for (i = 0; i + VL <= n; i += VL) {
        vec e = v_exp(v_sub(v_load(x + i), vmax));
        v_store(x + i, e);
        sum = v_add(sum, e);
    }
    if (i < n) {
        vtail t = v_lanes(n - i);
        vec e = v_exp(v_sub(v_load_tail(x + i, t), vmax));
        v_store_tail(x + i, t, e);
        sum = v_add(sum, v_keep(t, e));
    }
    vec inv = v_set1(1.0f / v_hsum(sum));
    for (i = 0; i + VL <= n; i += VL) v_store(x + i, v_mul(v_load(x + i), inv));
    if (i < n) {
        vtail t = v_lanes(n - i);
        v_store_tail(x + i, t, v_mul(v_load_tail(x + i, t), inv));
    }
}

static void rmsnorm(float *y, const float *x, const float *g, int n, float eps)
{
    vec s0 = v_zero(), s1 = v_zero();
    int i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        vec a = v_load(x + i), b = v_load(x + i + VL);
        s0 = v_fma(a, a, s0);
        s1 = v_fma(b, b, s1);
    }
    for (; i < n; i += VL) {
        vec a = v_load_tail(x + i, v_lanes(n - i));
        s0 = v_fma(a, a, s0);
    }
    vec r = v_set1(1.0f / __builtin_sqrtf(v_hsum(v_add(s0, s1)) / n + eps));
    for (i = 0; i < n; i += VL) {
        vtail t = v_lanes(n - i);
        vec v = v_mul(v_load_tail(x + i, t), r);
        v_store_tail(y + i, t, v_mul(v_load_tail(g + i, t), v));
    }
}

static void layernorm(float *y, const float *x, const float *g, const float *b, int n, float eps)
{
    vec s = v_zero();
    for (int i = 0; i < n; i += VL) s = v_add(s, v_load_tail(x + i, v_lanes(n - i)));
    vec vm = v_set1(v_hsum(s) / n), v = v_zero();
    for (int i = 0; i < n; i += VL) {
        vtail t = v_lanes(n - i);
        vec d = v_keep(t, v_sub(v_load_tail(x + i, t), vm));
        v = v_fma(d, d, v);
    }
    vec r = v_set1(1.0f / __builtin_sqrtf(v_hsum(v) / n + eps));
    for (int i = 0; i < n; i += VL) {
        vtail t = v_lanes(n - i);
        vec o = v_mul(v_load_tail(g + i, t), v_mul(v_sub(v_load_tail(x + i, t), vm), r));
        if (b) o = v_add(o, v_load_tail(b + i, t));
        v_store_tail(y + i, t, o);
    }
}

/* ---- RoPE ---- */

static void rope(float *x, const float *cos, const float *sin, int half)
{
    for (int k = 0; k < half; k += VL) {
        vtail t = v_lanes(half - k);
        vec a = v_load_tail(x + k, t), b = v_load_tail(x + k + half, t);
        vec c = v_load_tail(cos + k, t), s = v_load_tail(sin + k, t);
        v_store_tail(x + k, t, v_fnma(b, s, v_mul(a, c)));
        v_store_tail(x + k + half, t, v_fma(a, s, v_mul(b, c)));
    }
}

/* ---- activations and vector arithmetic ---- */

static void relu(float *x, int n)
{
    for (int i = 0; i < n; i += VL) {
        vtail t = v_lanes(n - i);
        v_store_tail(x + i, t, v_max(v_load_tail(x + i, t), v_zero()));
    }
}

static void gelu(float *x, int n)
{
    const vec c = v_set1(0.7978845608028654f), c3 = v_set1(0.044715f);
    const vec half = v_set1(0.5f), one = v_set1(1.0f);
    for (int i = 0; i < n; i += VL) {
        vtail t = v_lanes(n - i);
        vec v = v_load_tail(x + i, t);
        vec u = v_mul(c, v_fma(v_mul(c3, v), v_mul(v, v), v));
        v_store_tail(x + i, t, v_mul(v_mul(half, v), v_add(one, v_tanh(u))));
    }
}

static void silu(float *x, int n)
{
    const vec one = v_set1(1.0f);
    for (int i = 0; i < n; i += VL) {
        vtail t = v_lanes(n - i);
        vec v = v_load_tail(x + i, t);
        v_store_tail(x + i, t, v_div(v, v_add(one, v_exp(v_sub(v_zero(), v)))));
    }
}

static void axpy(float *y, float a, const float *x, int n)
{
    vec va = v_set1(a);
    int i = 0;
    for (; i + VL <= n; i += VL) v_store(y + i, v_fma(va, v_load(x + i), v_load(y + i)));
    if (i < n) {
        vtail t = v_lanes(n - i);
        v_store_tail(y + i, t, v_fma(va, v_load_tail(x + i, t), v_load_tail(y + i, t)));
    }
}

static void scale(float *y, float a, int n)
{
    vec va = v_set1(a);
    int i = 0;
    for (; i + VL <= n; i += VL) v_store(y + i, v_mul(va, v_load(y + i)));
    if (i < n) {
        vtail t = v_lanes(n - i);
        v_store_tail(y + i, t, v_mul(va, v_load_tail(y + i, t)));
    }
}

const sasp_kernels KERNELS_TABLE = {
    .name = KERNELS_NAME,
    .matmul = matmul_f32,
    .attn_scores = attn_scores,
    .attn_accum = attn_accum,
    .softmax = softmax,
    .rmsnorm = rmsnorm,
    .layernorm = layernorm,
    .rope = rope,
    .relu = relu,
    .gelu = gelu,
    .silu = silu,
    .axpy = axpy,
    .scale = scale,
};
