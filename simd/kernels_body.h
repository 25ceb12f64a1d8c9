/* kernels_body.h: the vector kernels and their table, written once over the primitives of one ISA.
 *
 * Not a header of its own: kernels_avx2.c, kernels_avx512.c and kernels_neon.c each define the
 * primitives below for their instruction set, then include this file, which turns them into the
 * sasp_kernels table of kernels.h. The scalar reference (kernels_scalar.c) does not use it.
 *
 * What an ISA file defines: the ALWAYS_INLINE macro (static inline, always_inline), and as such
 * functions, on floats:
 *   vec, VL                      the vector type and how many floats it holds
 *   vtail, v_lanes(left)         the live lanes of a tail: the first min(max(left, 0), VL)
 *   v_load(p), v_store(p, v)     VL floats, any alignment
 *   v_load_tail(p, t), v_store_tail(p, t, v)   the live lanes only: the others load as 0, and nothing
 *                                past them is read or written
 *   v_keep(t, v)                 v with the lanes outside t set to 0
 *   v_zero(), v_set1(a), v_broadcast(p)        0, a, *p in every lane
 *   v_add, v_sub, v_mul, v_div, v_max; v_fma(a, b, c) = a b + c; v_fnma(a, b, c) = c - a b; v_abs
 *   v_hsum(v), v_hmax(v)         the sum, the max of the lanes
 *   v_hsum4(out, a, b, c, d)     out[0..3] = the sums of a, b, c, d (the ISA's fast form)
 *   v_exp(v), v_tanh(v)          SLEEF's, within 1 ulp
 *   v_prefetch(p)                fetch the cache line of p into L1
 *   v_in_register(v)             v, kept in a register (one load of x, not a memory operand per FMA)
 * on the weight types:
 *   hvec, h_load(p), h_load_tail(p, left)      2 VL bfloat16 (uint16_t) as they are; the first `left`
 *                                only, the others 0
 *   h_split(h, even, odd)        the even and the odd elements of h as floats (a shift and a mask)
 *   f16_to_float(h)              one IEEE binary16 as a float
 *   v_load_f16(p), v_load_f16_tail(p, left)    VL binary16 as floats (the q8_0 scales); the first
 *                                `left` only, the other lanes 0 (once per row and VL blocks: better
 *                                without a round trip through memory, whose store forwarding fails)
 *   v_store_i8(p, v)             VL int8 at p: v rounded to nearest even (|v| <= 127.5 here)
 *   QSTEP, qvec                  int8 values per step of the q8_0 loop (32 or 64: one or two blocks of
 *                                32) and the type that holds them
 *   q_load(p), q_load_tail(p, left)  QSTEP int8; the first `left` only, the others 0
 *   q_dot(x, w)                  a vec of partial sums of the products x[t] w[t] (x, w in [-127, 127]),
 *                                exact: the lanes that belong to block c of the step
 *                                (lanes c*VL/QB .. of QB = QSTEP / 32 blocks) add up to that block's dot
 *   q_scale_at(group, b)         a vec whose lanes of block c of the step hold group[b + c] (float32;
 *                                group: the VL scales of a group of blocks, b: the step's first block)
 * and, where the ISA has a fused bf16 dot product (KERNELS_BF16_DOT):
 *   bvec, b_load(p), b_load_tail(p, left)      2 VL bfloat16, any alignment; the first `left` only
 *   v_dot_bf16(acc, a, b)        acc[l] + a[2l] b[2l] + a[2l+1] b[2l+1] (exact products, float sums)
 *   v_store_bf16(p, v)           VL bfloat16 at p: v rounded to nearest even
 * and where the ISA has an int8 dot product of a broadcast (KERNELS_Q8_PANELS: AVX-512 VNNI, AVX-VNNI),
 * for q8_0 by panels (below; QP_NR, the rows of X per microkernel, may be set for fewer registers):
 *   qp_bcast(p)                  a qvec with the four bytes at p in every 32-bit lane
 *   qp_dot(acc, u, s)            acc (VL int32) + in lane l the four products of u's and s's bytes
 *                                4l..4l+3, u unsigned, s signed; exact
 *   qp_transpose(r[VL])          VL qvecs as a VL x VL matrix of 32-bit elements, transposed
 *   q_flip_sign(v)               v's bytes + 128 as unsigned (xor 0x80)
 *   q_store, i32_set1, i32_to_float
 * and its block sizes:
 *   DOT_BLOCKS(B)                B(NR, MR) for each register block of matmul's dot-product path
 *                                (NR rows of X, MR of W), largest NR first, ending with NR = 1
 *   Q8_DOT_BLOCKS(B), BF16_DOT_BLOCKS(B)   the same for q8_0 and for bf16 weights (their loops hold
 *                                more registers per row of W)
 *   ACCUM_VECS                   vectors of out per pass of attn_accum
 *   KERNELS_TABLE, KERNELS_NAME, KERNELS_ID    the table to define, its instruction set and its id
 *
 * Tails use v_load_tail / v_store_tail (and the typed tails), so no kernel reads or writes past the
 * end of its arrays, and no pointer needs to be aligned.
 *
 * matmul, Y = X W^T with W [m][k] row-major, is blocks of dot products, whatever the number of rows of
 * X: a block of NR rows of X and MR rows of W keeps NR*MR vector accumulators running along k, so each
 * row of W is read once per NR rows of X and each row of X once per MR rows of W; the accumulators are
 * summed horizontally at the end, four at a time (v_hsum4, the same tree as v_hsum).
 *
 * One reduction order per output (kernels.h's promise: Y[i][j] is a function of row i of X and row j of
 * W alone). Lane l of acc[i][j] sums the products of the columns p = l (mod VL) of its loop's step, in
 * the order of p, whatever NR and MR are; the lanes are then summed by one fixed tree; k is cut into
 * chunks of X's per-call copy (QCHUNK, PCHUNK) at the same places for every n, each chunk's sum added to
 * Y in order. Nothing in the arithmetic depends on n, m, the block a row falls in, or the column slice
 * a thread was given: the blocking changes which registers hold the accumulators, not what they add.
 * (The packed prefill path that broadcast X against k-major panels of W, one sum per output in the
 * order of k, is gone for that reason: a row gave other bits alone than inside a prefill.)
 *
 * Weight types (matmul_w; kernels.h says what each computes). The dot-product drivers take the weight
 * type WT and the activation type XT, constants after inlining, and read W and X only through
 * w_row / x_row and the loop of that pair of types in dot_along_k:
 *  - f32 X, f32 W: FMA;
 *  - f32 X split by pairs once per call, bf16 W: 2 VL weights a load, their even and their odd elements
 *    as floats by a shift and a mask, two FMAs (the same products as f32: only the order of the sums
 *    differs);
 *  - bf16 X, bf16 W (KERNELS_BF16_DOT): X is rounded to bf16 once per call, v_dot_bf16 (vdpbf16ps,
 *    BFMLAL) does 2 VL multiply-adds per instruction;
 *  - q8_0 X, q8_0 W: X is quantized per block of 32 once per call (quantize_x); per step q_dot gives
 *    the exact int8 dot products (AVX2 vpmaddubsw + vpmaddwd with the sign trick, AVX-512 the same,
 *    NEON sdot, or vmull + vpadal) as floats, scaled by dx * dw of their block and added;
 *    dx * dw is made once per pair of rows and group of QG blocks, vector by vector. The tables with
 *    an int8 dot product of a broadcast (AVX-512 VNNI) take q8_0 by panels instead (below).
 *    The per-call copies of X (bf16, pairs or q8_0) live on the stack, XROWS rows and QCHUNK (PCHUNK)
 *    columns at a time; a prepared X (xprep_init / xprep_rows: the same bytes, whole rows, made once
 *    for many calls) takes their place in matmul_xp, chunk for chunk, so the sums are the same.
 * Adding a type: its loads here and in each ISA file, a case in w_row, a loop in dot_along_k if it has
 * its own arithmetic, and its case in matmul_w.
 *
 * Adding an ISA: a kernels_<isa>.c that defines the primitives and block sizes above and includes this
 * file (kernels_neon.c shows an ISA without masked loads), its table declared in kernels.h and offered
 * by dispatch.c, and a library of its own in Makefile.am's simd section, built with its -m flags. */

#define BYTES_PER_LINE 64 /* a cache line */
#define QB 32             /* q8_0: columns per scale */
#define QBS (QSTEP / QB)  /* q8_0 blocks per step */
#define QG VL             /* q8_0 blocks per group: one vector of their scales */
#define XROWS 24          /* rows of X per bf16 / pairs / q8_0 copy */
#define QCHUNK 2048       /* columns of X per bf16 / q8_0 copy: XROWS * QCHUNK on the stack */
#define PCHUNK 1024       /* the same for the f32 copy split by pairs (96 KB) */
_Static_assert(QCHUNK % QSTEP == 0 && QCHUNK % (2 * VL) == 0 && PCHUNK % (2 * VL) == 0 &&
                   QB % VL == 0 && (QG * QB) % QSTEP == 0 && QCHUNK % (QG * QB) == 0,
               "the blocks of q8_0, its groups, the chunks of X and the panels of k must line up");

/* ---- weight and activation access: the only code that reads W and X ---- */

enum weight_type { W_F32,
                   W_BF16,
                   W_Q8 };
enum act_type { X_F32,
                X_F32_PAIRS,
                X_BF16,
                X_Q8 };

/* W or X as the loops read them: rows ld elements apart; q8_0 scales rows lds apart. */
typedef struct {
    const void *p;
    const uint16_t *s; /* W's binary16 scales */
    size_t ld, lds;
} wref;
typedef struct {
    const void *p;
    const float *s; /* X's float32 scales (the per-call q8_0 copy) */
    size_t ld, lds;
} xref;

ALWAYS_INLINE size_t w_size(const enum weight_type WT) { return WT == W_F32 ? 4 : WT == W_BF16 ? 2
                                                                                               : 1; }
ALWAYS_INLINE size_t x_size(const enum act_type XT) { return XT <= X_F32_PAIRS ? 4 : XT == X_BF16 ? 2
                                                                                                  : 1; }

/* W from row j on; row j itself, its scales. */
ALWAYS_INLINE wref w_from(wref w, int j, const enum weight_type WT)
{
    w.p = (const char *)w.p + (size_t)j * w.ld * w_size(WT);
    if (WT == W_Q8) w.s += (size_t)j * w.lds;
    return w;
}
ALWAYS_INLINE const void *w_row(wref w, int j, const enum weight_type WT) { return w_from(w, j, WT).p; }
ALWAYS_INLINE const uint16_t *w_scales(wref w, int j) { return w.s + (size_t)j * w.lds; }
ALWAYS_INLINE xref x_from(xref x, int i, const enum act_type XT)
{
    x.p = (const char *)x.p + (size_t)i * x.ld * x_size(XT);
    if (XT == X_Q8) x.s += (size_t)i * x.lds;
    return x;
}
ALWAYS_INLINE const void *x_row(xref x, int i, const enum act_type XT) { return x_from(x, i, XT).p; }


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

/* f32 X against f32 W: each W vector is loaded once for the NR rows of X. */
ALWAYS_INLINE void dot_loop_f32(vec acc[8][8], xref x, wref w, int k, const int NR, const int MR)
{
    int p = 0;
    for (; p + VL <= k; p += VL) {
        vec wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) {
            wv[j] = v_load((const float *)w_row(w, j, W_F32) + p);
            /* the same place in the next block's rows, once a line: W streams from L3 or memory */
            if (VL >= BYTES_PER_LINE / 4 || p % (BYTES_PER_LINE / 4) == 0)
                v_prefetch((const float *)w_row(w, j + MR, W_F32) + p);
        }
#pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            vec xv = v_load((const float *)x_row(x, i, X_F32) + p);
            if (MR > 1) xv = v_in_register(xv);
#pragma GCC unroll 8
            for (int j = 0; j < MR; j++) acc[i][j] = v_fma(xv, wv[j], acc[i][j]);
        }
    }
    if (p < k) {
        vtail t = v_lanes(k - p);
        vec wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) wv[j] = v_load_tail((const float *)w_row(w, j, W_F32) + p, t);
#pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            vec xv = v_load_tail((const float *)x_row(x, i, X_F32) + p, t);
#pragma GCC unroll 8
            for (int j = 0; j < MR; j++) acc[i][j] = v_fma(xv, wv[j], acc[i][j]);
        }
    }
}

/* f32 X, its columns split by pairs (the per-call copy, pair_x: per 2 VL columns, the even ones, then
 * the odd ones; zero-padded), against bf16 W: 2 VL weights a load, their even and odd elements as
 * floats by a shift and a mask (h_split), two FMAs. The typed loops prefetch 2 (bf16) or 4 (q8_0)
 * blocks of rows ahead: as many bytes ahead as f32's one block. */
ALWAYS_INLINE void dot_loop_bf16_pairs(vec acc[8][8], xref x, wref w, int k, const int NR, const int MR)
{
    enum { STEP = 2 * VL,
           PER_LINE = BYTES_PER_LINE / 2 };
    for (int p = 0; p < k; p += STEP) {
        vec we[8], wo[8];
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) {
            const uint16_t *row = (const uint16_t *)w_row(w, j, W_BF16) + p;
            h_split(p + STEP <= k ? h_load(row) : h_load_tail(row, k - p), &we[j], &wo[j]);
            if (STEP >= PER_LINE || p % PER_LINE == 0) v_prefetch((const uint16_t *)w_row(w, j + 2 * MR, W_BF16) + p);
        }
#pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            const float *xi = (const float *)x_row(x, i, X_F32_PAIRS) + p;
            vec xe = v_load(xi), xo = v_load(xi + VL);
            if (MR > 1) xe = v_in_register(xe), xo = v_in_register(xo);
#pragma GCC unroll 8
            for (int j = 0; j < MR; j++) acc[i][j] = v_fma(xo, wo[j], v_fma(xe, we[j], acc[i][j]));
        }
    }
}

#ifdef KERNELS_BF16_DOT
/* bf16 X (the per-call copy, zero-padded to whole vectors) against bf16 W: 2 VL columns a step. */
ALWAYS_INLINE void dot_loop_bf16(vec acc[8][8], xref x, wref w, int k, const int NR, const int MR)
{
    enum { STEP = 2 * VL,
           PER_LINE = BYTES_PER_LINE / 2 };
    int p = 0;
    for (; p + STEP <= k; p += STEP) {
        bvec wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) {
            wv[j] = b_load((const uint16_t *)w_row(w, j, W_BF16) + p);
            if (STEP >= PER_LINE || p % PER_LINE == 0) v_prefetch((const uint16_t *)w_row(w, j + 2 * MR, W_BF16) + p);
        }
#pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            bvec xv = b_load((const uint16_t *)x_row(x, i, X_BF16) + p);
#pragma GCC unroll 8
            for (int j = 0; j < MR; j++) acc[i][j] = v_dot_bf16(acc[i][j], xv, wv[j]);
        }
    }
    if (p < k) {
        bvec wv[8];
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) wv[j] = b_load_tail((const uint16_t *)w_row(w, j, W_BF16) + p, k - p);
#pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            bvec xv = b_load((const uint16_t *)x_row(x, i, X_BF16) + p);
#pragma GCC unroll 8
            for (int j = 0; j < MR; j++) acc[i][j] = v_dot_bf16(acc[i][j], xv, wv[j]);
        }
    }
}
#endif

/* q8_0 X (the per-call copy: rows zero-padded to whole steps, scales to whole groups) against q8_0 W.
 * Per group of QG = VL blocks the scales of W are converted (one vector) and multiplied by those of X,
 * d[i][j][b] = dx_ib dw_jb, once per pair of rows; then per step of QSTEP columns
 * acc += q_dot(x, w) * d of the step's blocks (a broadcast load, or a permute of the group's vector). */
ALWAYS_INLINE void dot_loop_q8(vec acc[8][8], xref x, wref w, int k, const int NR, const int MR)
{
    float d[8][8][QG] __attribute__((aligned(64)));
    _Static_assert(QG == VL, "a group's scales are one vector");
    for (int g = 0; g < k; g += QG * QB) {
        int b0 = g / QB, nb = (k - g + QB - 1) / QB, end = k - g < QG * QB ? k : g + QG * QB;
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) {
            const uint16_t *sj = w_scales(w, j) + b0;
            vec sw = nb >= QG ? v_load_f16(sj) : v_load_f16_tail(sj, nb);
#pragma GCC unroll 8
            for (int i = 0; i < NR; i++) v_store(d[i][j], v_mul(v_load(x_from(x, i, X_Q8).s + b0), sw));
        }
        int p = g;
        for (; p + QSTEP <= end; p += QSTEP) {
            qvec wq[8];
#pragma GCC unroll 8
            for (int j = 0; j < MR; j++) {
                wq[j] = q_load((const int8_t *)w_row(w, j, W_Q8) + p);
                if (QSTEP >= BYTES_PER_LINE || p % BYTES_PER_LINE == 0)
                    v_prefetch((const int8_t *)w_row(w, j + 4 * MR, W_Q8) + p);
            }
#pragma GCC unroll 8
            for (int i = 0; i < NR; i++) {
                qvec xq = q_load((const int8_t *)x_row(x, i, X_Q8) + p);
#pragma GCC unroll 8
                for (int j = 0; j < MR; j++)
                    acc[i][j] = v_fma(q_dot(xq, wq[j]), q_scale_at(d[i][j], (p - g) / QB), acc[i][j]);
            }
        }
        if (p < end) { /* the last step of the row, k - p < QSTEP columns */
            qvec wq[8];
#pragma GCC unroll 8
            for (int j = 0; j < MR; j++) wq[j] = q_load_tail((const int8_t *)w_row(w, j, W_Q8) + p, k - p);
#pragma GCC unroll 8
            for (int i = 0; i < NR; i++) {
                qvec xq = q_load((const int8_t *)x_row(x, i, X_Q8) + p);
#pragma GCC unroll 8
                for (int j = 0; j < MR; j++)
                    acc[i][j] = v_fma(q_dot(xq, wq[j]), q_scale_at(d[i][j], (p - g) / QB), acc[i][j]);
            }
        }
    }
}

/* acc[i][j] += dot(X row i, W row j) over columns [0, k), for i < NR, j < MR: the loop of the types. */
ALWAYS_INLINE void dot_along_k(vec acc[8][8], xref x, wref w, int k, const int NR, const int MR,
                               const enum weight_type WT, const enum act_type XT)
{
    if (XT == X_F32 && WT == W_F32) {
        dot_loop_f32(acc, x, w, k, NR, MR);
    } else if (XT == X_F32_PAIRS && WT == W_BF16) {
        dot_loop_bf16_pairs(acc, x, w, k, NR, MR);
    } else if (XT == X_Q8 && WT == W_Q8) {
        dot_loop_q8(acc, x, w, k, NR, MR);
    } else if (XT == X_BF16 && WT == W_BF16) {
#ifdef KERNELS_BF16_DOT
        dot_loop_bf16(acc, x, w, k, NR, MR);
#else
        __builtin_unreachable();
#endif
    }
}

/* Y[i][j] = alpha * dot(X row i, W row j) (+ bias[j]), or Y[i][j] += alpha * dot when accumulate, for
 * i < NR, j < MR. NR and MR are constants after inlining, so acc[][] lives in registers. */
ALWAYS_INLINE void dot_block(float *y, int ldy, xref x, wref w, const float *bias, float alpha, int k,
                             int accumulate, const int NR, const int MR, const enum weight_type WT,
                             const enum act_type XT)
{
    vec acc[8][8];
#pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) acc[i][j] = v_zero();
    dot_along_k(acc, x, w, k, NR, MR, WT, XT);
    float sums[64];
    sum_block(sums, acc, NR, MR);
#pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < MR; j++) {
            float *yij = y + (size_t)i * ldy + j;
            float v = alpha * sums[i * MR + j];
            *yij = accumulate ? *yij + v : bias ? v + bias[j]
                                                : v;
        }
}

/* All m columns of Y for NR rows of X: blocks of MR rows of W, then one row at a time. */
ALWAYS_INLINE void dot_rows(float *y, int ldy, xref x, wref w, const float *bias, float alpha, int m, int k,
                            int accumulate, const int NR, const int MR, const enum weight_type WT,
                            const enum act_type XT)
{
    int j = 0;
    for (; j + MR <= m; j += MR)
        dot_block(y + j, ldy, x, w_from(w, j, WT), bias ? bias + j : NULL, alpha, k, accumulate, NR, MR, WT, XT);
    for (; j < m; j++)
        dot_block(y + j, ldy, x, w_from(w, j, WT), bias ? bias + j : NULL, alpha, k, accumulate, NR, 1, WT, XT);
}

/* Y = alpha X W^T (+ bias), or Y += alpha X W^T: rows of X in the blocks of DOT_BLOCKS (Q8_DOT_BLOCKS
 * for q8_0), largest first (a block of NR rows reads W once for all NR). */
#define DOT_ROWS_OF(NR, MR)          \
    for (; i + (NR) <= n; i += (NR)) \
        dot_rows(y + (size_t)i * ldy, ldy, x_from(x, i, XT), w, bias, alpha, m, k, accumulate, NR, MR, WT, XT);
ALWAYS_INLINE void matmul_dot(float *y, int ldy, xref x, wref w, const float *bias, float alpha, int n, int m,
                              int k, int accumulate, const enum weight_type WT, const enum act_type XT)
{
    int i = 0;
    DOT_BLOCKS(DOT_ROWS_OF)
}
ALWAYS_INLINE void matmul_dot_q8(float *y, int ldy, xref x, wref w, const float *bias, float alpha, int n, int m,
                                 int k, int accumulate)
{
    const enum weight_type WT = W_Q8;
    const enum act_type XT = X_Q8;
    int i = 0;
    Q8_DOT_BLOCKS(DOT_ROWS_OF)
}
ALWAYS_INLINE void matmul_dot_bf16_pairs(float *y, int ldy, xref x, wref w, const float *bias, float alpha, int n,
                                         int m, int k, int accumulate)
{
    const enum weight_type WT = W_BF16;
    const enum act_type XT = X_F32_PAIRS;
    int i = 0;
    BF16_DOT_BLOCKS(DOT_ROWS_OF)
}
#undef DOT_ROWS_OF

/* ---- the per-call copies of X for the typed dot products ---- */

/* One block of X (len <= QB values) to q8_0, bit for bit as kernels_scalar.c's quantize_x_block_scalar:
 * dx = amax / 127, q = rint(x * (127 / amax)); all QB bytes of q are written (0 past len). */
ALWAYS_INLINE float quantize_x_block(int8_t *q, const float *x, int len)
{
    enum { NV = QB / VL };
    vec v[NV], mx = v_zero();
#pragma GCC unroll 8
    for (int c = 0; c < NV; c++) {
        v[c] = len >= QB ? v_load(x + c * VL) : v_load_tail(x + c * VL, v_lanes(len - c * VL));
        mx = v_max(mx, v_abs(v[c]));
    }
    float amax = v_hmax(mx);
    vec id = v_set1(amax > 0.0f ? 127.0f / amax : 0.0f);
#pragma GCC unroll 8
    for (int c = 0; c < NV; c++) v_store_i8(q + c * VL, v_mul(v[c], id));
    return amax / 127.0f;
}

/* Columns [0, kc) of n rows of X to q8_0: rows of ldq bytes and lds scales, zero-padded to them. */
static void quantize_x(int8_t *xq, size_t ldq, float *xs, size_t lds, const float *x, int ldx, int n, int kc)
{
    int nb = (kc + QB - 1) / QB;
    for (int i = 0; i < n; i++) {
        int8_t *q = xq + (size_t)i * ldq;
        float *s = xs + (size_t)i * lds;
        for (int b = 0; b < nb; b++)
            s[b] = quantize_x_block(q + b * QB, x + (size_t)i * ldx + b * QB, kc - b * QB);
        memset(q + (size_t)nb * QB, 0, ldq - (size_t)nb * QB);
        for (size_t b = nb; b < lds; b++) s[b] = 0.0f;
    }
}

#ifndef KERNELS_BF16_DOT
/* Columns [0, kc) of n rows of X split by pairs for dot_loop_bf16_pairs: per 2 VL columns, the VL even
 * ones then the VL odd ones; rows of ld floats, zero-padded. */
static void pair_x(float *xp, size_t ld, const float *x, int ldx, int n, int kc)
{
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * ldx;
        float *d = xp + (size_t)i * ld;
        for (size_t p = 0; p < ld; p += 2 * VL)
            for (int l = 0; l < VL; l++) {
                size_t e = p + 2 * (size_t)l;
                d[p + l] = e < (size_t)kc ? xi[e] : 0.0f;
                d[p + VL + l] = e + 1 < (size_t)kc ? xi[e + 1] : 0.0f;
            }
    }
}
#else
/* Columns [0, kc) of n rows of X to bf16, rows of ldb values, zero-padded. */
static void round_x_bf16(uint16_t *xb, size_t ldb, const float *x, int ldx, int n, int kc)
{
    for (int i = 0; i < n; i++) {
        uint16_t *b = xb + (size_t)i * ldb;
        const float *xi = x + (size_t)i * ldx;
        int p = 0;
        for (; p + VL <= kc; p += VL) v_store_bf16(b + p, v_load(xi + p));
        if (p < kc) v_store_bf16(b + p, v_load_tail(xi + p, v_lanes(kc - p))), p += VL;
        memset(b + p, 0, (ldb - (size_t)p) * sizeof *b);
    }
}
#endif

#ifdef KERNELS_Q8_PANELS
/* ---- q8_0 by panels: int8 dot products of broadcast X, for every number of rows ----
 *
 * The order of this path's sums (kernels.h's q8_0, summed its own way): for each output, acc = 0, then
 * for each block b of 32 columns in order acc = fma((float)I_b, dx_b * dw_b, acc), I_b the block's
 * exact int32 dot product of the quantized X and W; y = acc (+ bias). A lane of a vector is a column of
 * Y: W comes as kernels.h's panels (16 rows k-major, four bytes of each row a 32-bit lane, + 128 so
 * that vpdpbusd takes them as unsigned; a panel's group is one vector of 16 lanes, or two of 8),
 * packed once at load (sasp_weights.panels) or here per call (pack_q8_panels, VL rows at a time by
 * qp_transpose), the same bytes either way. X's copy keeps its signed bytes and adds per row and block
 * -128 times their sum (the correction of W's 128s), which starts the block's int32 accumulators.
 * q8_panels_micro multiplies NR rows of X, four bytes broadcast at a time, by NP vectors of columns:
 * per block and pair of a row and a vector, 8 vpdpbusd (16 lanes: 512 multiply-adds) and three float
 * instructions, where the dot-product blocks spend four instructions per 64. Decode and
 * prefill run this same code, only the number of rows differs, so a row's result does not depend on
 * its company; k is cut into chunks of QP_KC at the same places for every n, the float accumulators
 * going through Y between them unchanged. */
#define QP_NP 4 /* vectors of columns per step of the driver: 4 VL columns of Y */
#ifndef QP_NR
#define QP_NR 6 /* rows of X per microkernel: 12 int32 and 12 float accumulators (the ISA may say fewer) */
#endif
#ifndef QP_PREFETCH
#define QP_PREFETCH 0 /* the ISA's choice: decode prefetches the panels of the next columns of its slice */
#endif
#define QP_KC 1024                          /* columns per chunk of X's copy (and of W's, packed here): 48 + 32 KB of stack */
#define QP_XR 48                            /* rows of X per chunk */
#define QP_GROUPS (QB / 4)                  /* four-byte groups per block */
#define QP_LANES SASP_Q8_0_PANEL            /* rows of W in a panel: 16 */
#define QP_SUB (QP_LANES / VL)              /* vectors a panel's group fills: 1 (16 lanes), 2 (8 lanes: AVX2) */
#define QP_BLOCK (QP_GROUPS * 4 * QP_LANES) /* bytes of a panel's block: 512 */
_Static_assert(QP_LANES % VL == 0 && QSTEP == 4 * VL && QP_KC % QSTEP == 0 && QP_XR % QP_NR == 0,
               "a panel is whole vectors, transposed VL groups at a time");

/* Vector v of VL columns (v = 0, 1, ... from a panel's start) lies in panel v / QP_SUB, lanes
 * (v % QP_SUB) VL on: where its group g of block b is (blocks pstride apart per panel), and its scales. */
ALWAYS_INLINE size_t qp_at(int v, size_t pstride, int b, int g)
{
    return (((size_t)(v / QP_SUB) * pstride + (size_t)b) * QP_GROUPS + (size_t)g) * 4 * QP_LANES + (size_t)(v % QP_SUB) * 4 * VL;
}
ALWAYS_INLINE size_t qp_scales_at(int v, size_t pstride, int b)
{
    return ((size_t)(v / QP_SUB) * pstride + (size_t)b) * QP_LANES + (size_t)(v % QP_SUB) * VL;
}

/* Panels of rows [j0, j0 + rows) of W (rows <= QP_NP VL; the lanes past them as zero rows), columns
 * [pc, pc + kc) (kc <= QP_KC), in kernels.h's layout with nbc = the blocks of kc: panel P's block b
 * at pw + (P nbc + b) QP_BLOCK, its scales at ps + (P nbc + b) QP_LANES; VL rows (a vector) at a time. */
static void pack_q8_panels(uint8_t *pw, uint16_t *ps, const sasp_weights *w, int j0, int rows, int pc, int kc)
{
    int nb = sasp_q8_0_blocks(w->k), nbc = (kc + QB - 1) / QB;
    const int8_t *data = (const int8_t *)w->data;
    for (int p = 0; p < QP_NP && p * VL < rows; p++) {
        for (int t = 0; t < kc; t += QSTEP) {
            qvec r[VL];
            for (int l = 0; l < VL; l++) {
                int row = p * VL + l;
                const int8_t *at = data + (size_t)(j0 + row) * w->k + pc + t;
                r[l] = row < rows ? q_load_tail(at, kc - t) : q_load_tail(data, 0);
                v_prefetch(at + (size_t)QP_NP * VL * w->k); /* the same place in the next panels: W streams */
            }
            qp_transpose(r); /* r[g]: group t / 4 + g of every lane */
            for (int g = 0; g < VL && (t / 4 + g) / QP_GROUPS < nbc; g++) {
                int G = t / 4 + g;
                q_store((int8_t *)pw + qp_at(p, (size_t)nbc, G / QP_GROUPS, G % QP_GROUPS), q_flip_sign(r[g]));
            }
        }
        for (int l = 0; l < VL; l++) {
            int row = p * VL + l;
            const uint16_t *s = w->scales + (size_t)(j0 + row) * nb + pc / QB;
            for (int b = 0; b < nbc; b++) ps[qp_scales_at(p, (size_t)nbc, b) + l] = row < rows ? s[b] : 0;
        }
    }
}

/* Per row and block of the quantized X (n rows of ldq bytes, kc columns), -128 times the sum of its
 * bytes (rows of lds): what q8_0 by panels starts a block's accumulators from. */
static void q8_sums(int32_t *xc, size_t lds, const int8_t *xq, size_t ldq, int n, int kc)
{
    int nbc = (kc + QB - 1) / QB;
    for (int i = 0; i < n; i++)
        for (int b = 0; b < nbc; b++) {
            const int8_t *q = xq + (size_t)i * ldq + b * QB;
            int32_t sum = 0;
            for (int c = 0; c < QB; c++) sum += q[c];
            xc[(size_t)i * lds + b] = -128 * sum;
        }
}

/* Columns [0, kc) of n rows of X for the panels: the q8_0 bytes (signed, rows of ldq, zero-padded), and
 * per row and block (rows of lds) dx and -128 times the sum of the block's bytes. */
static void quantize_x_panels(int8_t *xq, size_t ldq, float *xs, int32_t *xc, size_t lds, const float *x, int ldx,
                              int n, int kc)
{
    quantize_x(xq, ldq, xs, lds, x, ldx, n, kc);
    q8_sums(xc, lds, xq, ldq, n, kc);
}

/* Y[i][0..cols) for i < NR, the product over blocks [0, nbc) of the chunk: W's vector p of columns,
 * block b at pw + qp_at(p, pstride, b, 0) (scales: ps + qp_scales_at(p, pstride, b)). Y holds the
 * accumulators of the chunks before (unless first); last: add the bias and leave the result. With
 * QP_PREFETCH, one or two rows (decode) and `ahead`, each line read is prefetched in the panels NP
 * vectors on, the next call's. */
ALWAYS_INLINE void q8_panels_micro(float *y, int ldy, const int8_t *xq, size_t ldq, const float *xs, const int32_t *xc,
                                   size_t lds, const uint8_t *pw, const uint16_t *ps, size_t pstride, int nbc,
                                   int first, int last, const float *bias, int cols, int ahead, const int NR,
                                   const int NP)
{
    vtail t[QP_NP];
    vec acc[QP_NR][QP_NP];
#pragma GCC unroll 4
    for (int p = 0; p < NP; p++) t[p] = v_lanes(cols - p * VL);
#pragma GCC unroll 6
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 4
        for (int p = 0; p < NP; p++) acc[i][p] = first ? v_zero() : v_load_tail(y + (size_t)i * ldy + p * VL, t[p]);
    for (int b = 0; b < nbc; b++) {
        i32vec ia[QP_NR][QP_NP];
#pragma GCC unroll 6
        for (int i = 0; i < NR; i++) {
            i32vec c = i32_set1(xc[(size_t)i * lds + b]);
#pragma GCC unroll 4
            for (int p = 0; p < NP; p++) ia[i][p] = c;
        }
#pragma GCC unroll 8
        for (int g = 0; g < QP_GROUPS; g++) {
            qvec wv[QP_NP];
#pragma GCC unroll 4
            for (int p = 0; p < NP; p++) {
                wv[p] = q_load((const int8_t *)pw + qp_at(p, pstride, b, g));
                if (QP_PREFETCH && NR <= 2 && ahead && p % QP_SUB == 0) v_prefetch(pw + qp_at(p + NP, pstride, b, g));
            }
#pragma GCC unroll 6
            for (int i = 0; i < NR; i++) {
                qvec xb = qp_bcast((const uint8_t *)xq + (size_t)i * ldq + b * QB + 4 * g);
#pragma GCC unroll 4
                for (int p = 0; p < NP; p++) ia[i][p] = qp_dot(ia[i][p], wv[p], xb);
            }
        }
        vec dw[QP_NP];
#pragma GCC unroll 4
        for (int p = 0; p < NP; p++) dw[p] = v_load_f16(ps + qp_scales_at(p, pstride, b));
#pragma GCC unroll 6
        for (int i = 0; i < NR; i++) {
            vec dx = v_set1(xs[(size_t)i * lds + b]);
#pragma GCC unroll 4
            for (int p = 0; p < NP; p++) acc[i][p] = v_fma(i32_to_float(ia[i][p]), v_mul(dw[p], dx), acc[i][p]);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 4
        for (int p = 0; p < NP; p++) {
            vec o = acc[i][p];
            if (last && bias) o = v_add(o, v_load_tail(bias + p * VL, t[p]));
            v_store_tail(y + (size_t)i * ldy + p * VL, t[p], o);
        }
}

/* rows (<= QP_NR) rows of X against up to QP_NP panels (cols columns): the microkernel of that shape.
 * One or two rows (decode) take all four panels at once: four independent streams of W and chains of
 * vpdpbusd per broadcast of X. More rows take them two at a time (registers: 2 x NR x NP accumulators).
 * Each column's sum is the same either way: its lane adds its blocks in order. */
ALWAYS_INLINE void q8_panels_rows(float *y, int ldy, const int8_t *xq, size_t ldq, const float *xs, const int32_t *xc,
                                  size_t lds, const uint8_t *pw, const uint16_t *ps, size_t pstride, int nbc, int first,
                                  int last, const float *bias, int cols, int ahead, int rows)
{
    int np = (cols + VL - 1) / VL;
/* R rows and P vectors, both constants so that the microkernel unrolls for them, from vector P0 (0 or 2:
 * the start of a panel, whether a panel is one vector or two) */
#define QP_MICRO(R, P0, P)                                                                                                    \
    q8_panels_micro(y + (P0)*VL, ldy, xq, ldq, xs, xc, lds, pw + qp_at(P0, pstride, 0, 0), ps + qp_scales_at(P0, pstride, 0), \
                    pstride, nbc, first, last, bias ? bias + (P0)*VL : NULL, cols - (P0)*VL, ahead, R, P)
#define QP_PAIRS(R)                          \
    do {                                     \
        if (np >= 2) QP_MICRO(R, 0, 2);      \
        else QP_MICRO(R, 0, 1);              \
        if (np == 4) QP_MICRO(R, 2, 2);      \
        else if (np == 3) QP_MICRO(R, 2, 1); \
    } while (0)
#define QP_ALL(R)                          \
    do {                                   \
        switch (np) {                      \
        case 4: QP_MICRO(R, 0, 4); break;  \
        case 3: QP_MICRO(R, 0, 3); break;  \
        case 2: QP_MICRO(R, 0, 2); break;  \
        default: QP_MICRO(R, 0, 1); break; \
        }                                  \
    } while (0)
    switch (rows) {
#if QP_NR >= 6
    case 6: QP_PAIRS(6); break;
    case 5: QP_PAIRS(5); break;
    case 4: QP_PAIRS(4); break;
#endif
    case 3: QP_PAIRS(3); break;
    case 2: QP_ALL(2); break;
    case 1: QP_ALL(1); break;
    default: break;
    }
#undef QP_ALL
#undef QP_PAIRS
#undef QP_MICRO
}

/* q8_0 W: QP_XR rows of X at a time, quantized QP_KC columns at a time (or those of the prepared X, p);
 * for each chunk, W's panels (its own, or packed here: the same bytes) by four, multiplied by the rows
 * QP_NR at a time. */
static void matmul_q8_0(float *y, int ldy, const float *x, int ldx, const sasp_xprep *p, const sasp_weights *w,
                        const float *bias, int n)
{
    int m = w->m, k = w->k, nb = sasp_q8_0_blocks(k);
    uint8_t pw[QP_NP * (QP_KC / QB) * QP_BLOCK] __attribute__((aligned(64)));
    uint16_t ps[QP_NP * (QP_KC / QB) * VL];
    int8_t copy_q[QP_XR * QP_KC] __attribute__((aligned(64)));
    float copy_s[QP_XR * (QP_KC / QB)];
    int32_t copy_c[QP_XR * (QP_KC / QB)];
    const size_t ldq = p ? p->ld : QP_KC, lds = p ? p->lds : QP_KC / QB;
    for (int r0 = 0; r0 < n; r0 += QP_XR) {
        int nr = n - r0 < QP_XR ? n - r0 : QP_XR;
        for (int pc = 0; pc < k; pc += QP_KC) {
            int kc = k - pc < QP_KC ? k - pc : QP_KC, nbc = (kc + QB - 1) / QB, last = pc + kc == k;
            const int8_t *xq = copy_q;
            const float *xs = copy_s;
            const int32_t *xc = copy_c;
            if (p) {
                xq = (const int8_t *)p->data + (size_t)r0 * ldq + pc;
                xs = p->scales + (size_t)r0 * lds + pc / QB, xc = p->sums + (size_t)r0 * lds + pc / QB;
            } else {
                quantize_x_panels(copy_q, ldq, copy_s, copy_c, lds, x + (size_t)r0 * ldx + pc, ldx, nr, kc);
            }
            for (int j0 = 0; j0 < m; j0 += QP_NP * VL) {
                int cols = m - j0 < QP_NP * VL ? m - j0 : QP_NP * VL;
                const uint8_t *wp = pw;
                const uint16_t *sp = ps;
                size_t pstride = (size_t)nbc;
                if (w->panels) {
                    size_t at = (size_t)(j0 / QP_LANES) * nb + pc / QB;
                    wp = w->panels + at * QP_BLOCK, sp = w->panel_scales + at * QP_LANES, pstride = (size_t)nb;
                } else {
                    pack_q8_panels(pw, ps, w, j0, cols, pc, kc);
                }
                const float *bj = bias ? bias + j0 : NULL;
                float *yj = y + (size_t)r0 * ldy + j0;
                for (int i = 0; i < nr; i += QP_NR)
                    q8_panels_rows(yj + (size_t)i * ldy, ldy, xq + (size_t)i * ldq, ldq, xs + (size_t)i * lds,
                                   xc + (size_t)i * lds, lds, wp, sp, pstride, nbc, pc == 0, last, bj, cols,
                                   w->panels && j0 + QP_NP * VL < m, nr - i < QP_NR ? nr - i : QP_NR);
            }
        }
    }
}
#endif

/* ---- matmul entry points, one per weight type ---- */

/* Also the attention scores, whose "W" is the float32 key cache. */
static void matmul_dot_f32(float *y, int ldy, const float *x, int ldx, const float *w, int ldw,
                           const float *bias, float alpha, int n, int m, int k)
{
    xref xr = {x, NULL, (size_t)ldx, 0};
    wref wr = {w, NULL, (size_t)ldw, 0};
    matmul_dot(y, ldy, xr, wr, bias, alpha, n, m, k, 0, W_F32, X_F32);
}

static void matmul_f32(float *y, int ldy, const float *x, int ldx, const float *w, const float *bias,
                       int n, int m, int k)
{
    matmul_dot_f32(y, ldy, x, ldx, w, k, bias, 1.0f, n, m, k);
}

/* bf16 W: XROWS rows of X at a time, copied (rounded to bf16, or split by pairs) QCHUNK (PCHUNK)
 * columns at a time, or those of the prepared X (p); each chunk's dot products are added to Y (the
 * first one sets it, with the bias). */
static void matmul_bf16(float *y, int ldy, const float *x, int ldx, const sasp_xprep *p, const sasp_weights *w,
                        const float *bias, int n)
{
    int m = w->m, k = w->k;
#ifdef KERNELS_BF16_DOT
    uint16_t xb[XROWS * QCHUNK] __attribute__((aligned(64)));
    for (int i = 0; i < n; i += XROWS) {
        int nr = n - i < XROWS ? n - i : XROWS;
        for (int pc = 0; pc < k; pc += QCHUNK) {
            int kc = k - pc < QCHUNK ? k - pc : QCHUNK;
            size_t ldb = (size_t)(kc + 2 * VL - 1) / (2 * VL) * (2 * VL);
            xref xr = {xb, NULL, ldb, 0};
            if (p) xr = (xref){(const uint16_t *)p->data + (size_t)i * p->ld + pc, NULL, p->ld, 0};
            else round_x_bf16(xb, ldb, x + (size_t)i * ldx + pc, ldx, nr, kc);
            wref wc = {(const uint16_t *)w->data + pc, NULL, (size_t)k, 0};
            matmul_dot(y + (size_t)i * ldy, ldy, xr, wc, pc ? NULL : bias, 1.0f, nr, m, kc, pc > 0, W_BF16, X_BF16);
        }
    }
#else
    float xp[XROWS * PCHUNK] __attribute__((aligned(64)));
    for (int i = 0; i < n; i += XROWS) {
        int nr = n - i < XROWS ? n - i : XROWS;
        for (int pc = 0; pc < k; pc += PCHUNK) {
            int kc = k - pc < PCHUNK ? k - pc : PCHUNK;
            size_t ld = (size_t)(kc + 2 * VL - 1) / (2 * VL) * (2 * VL);
            xref xr = {xp, NULL, ld, 0};
            if (p) xr = (xref){(const float *)p->data + (size_t)i * p->ld + pc, NULL, p->ld, 0};
            else pair_x(xp, ld, x + (size_t)i * ldx + pc, ldx, nr, kc);
            wref wc = {(const uint16_t *)w->data + pc, NULL, (size_t)k, 0};
            matmul_dot_bf16_pairs(y + (size_t)i * ldy, ldy, xr, wc, pc ? NULL : bias, 1.0f, nr, m, kc, pc > 0);
        }
    }
#endif
}

#ifndef KERNELS_Q8_PANELS
/* q8_0 W: XROWS rows of X at a time, quantized QCHUNK columns at a time (the same blocks of 32 for one
 * row as for many), or those of the prepared X (p); each chunk's dot products are added to Y (the first
 * one sets it, with the bias). */
static void matmul_q8_0(float *y, int ldy, const float *x, int ldx, const sasp_xprep *p, const sasp_weights *w,
                        const float *bias, int n)
{
    int m = w->m, k = w->k, nb = sasp_q8_0_blocks(k);
    int8_t xq[XROWS * QCHUNK] __attribute__((aligned(64)));
    float xs[XROWS * (QCHUNK / QB)];
    for (int i = 0; i < n; i += XROWS) {
        int nr = n - i < XROWS ? n - i : XROWS;
        for (int pc = 0; pc < k; pc += QCHUNK) {
            int kc = k - pc < QCHUNK ? k - pc : QCHUNK;
            size_t ldq = (size_t)(kc + QSTEP - 1) / QSTEP * QSTEP, lds = (size_t)(kc + QG * QB - 1) / (QG * QB) * QG;
            xref xr = {xq, xs, ldq, lds};
            if (p)
                xr = (xref){(const int8_t *)p->data + (size_t)i * p->ld + pc, p->scales + (size_t)i * p->lds + pc / QB,
                            p->ld, p->lds};
            else
                quantize_x(xq, ldq, xs, lds, x + (size_t)i * ldx + pc, ldx, nr, kc);
            wref wc = {(const int8_t *)w->data + pc, w->scales + pc / QB, (size_t)k, (size_t)nb};
            matmul_dot_q8(y + (size_t)i * ldy, ldy, xr, wc, pc ? NULL : bias, 1.0f, nr, m, kc, pc > 0);
        }
    }
}
#endif

/* Y = X W^T (+ bias) of any weight type, X copied per call (p NULL) or prepared for W's type (p). */
static void matmul_typed(float *y, int ldy, const float *x, int ldx, const sasp_xprep *p, const sasp_weights *w,
                         const float *bias, int n)
{
    switch (w->type) {
    case SASP_WT_F32: matmul_f32(y, ldy, x, ldx, w->data, bias, n, w->m, w->k); return;
    case SASP_WT_BF16: matmul_bf16(y, ldy, x, ldx, p, w, bias, n); return;
    case SASP_WT_Q8_0: matmul_q8_0(y, ldy, x, ldx, p, w, bias, n); return;
    }
}

static void matmul_w(float *y, int ldy, const float *x, int ldx, const sasp_weights *w, const float *bias, int n)
{
    matmul_typed(y, ldy, x, ldx, NULL, w, bias, n);
}

/* ---- X prepared once for many products (kernels.h: sasp_xprep): the per-call copies, whole ---- */

static void xprep_init(sasp_xprep *p, void *buf, sasp_wtype type, const float *x, int ldx, int n, int k)
{
    *p = (sasp_xprep){.type = type, .n = n, .k = k, .x = x, .ldx = ldx};
    if (type == SASP_WT_F32) return;
    char *at = (char *)(((uintptr_t)buf + 63) & ~(uintptr_t)63);
    p->data = at, p->ld = sasp_xprep_ld(k);
    if (type != SASP_WT_Q8_0) return;
    p->lds = sasp_xprep_lds(k);
    p->scales = (float *)(at + (size_t)n * p->ld), p->sums = (int32_t *)(p->scales + (size_t)n * p->lds);
}

static void xprep_rows(const sasp_xprep *p, int r0, int r1)
{
    const float *x = p->x + (size_t)r0 * p->ldx;
    int n = r1 - r0;
    if (p->type == SASP_WT_BF16) {
#ifdef KERNELS_BF16_DOT
        round_x_bf16((uint16_t *)p->data + (size_t)r0 * p->ld, p->ld, x, p->ldx, n, p->k);
#else
        pair_x((float *)p->data + (size_t)r0 * p->ld, p->ld, x, p->ldx, n, p->k);
#endif
    } else if (p->type == SASP_WT_Q8_0) {
        int8_t *q = (int8_t *)p->data + (size_t)r0 * p->ld;
        quantize_x(q, p->ld, p->scales + (size_t)r0 * p->lds, p->lds, x, p->ldx, n, p->k);
#ifdef KERNELS_Q8_PANELS
        q8_sums(p->sums + (size_t)r0 * p->lds, p->lds, q, p->ld, n, p->k);
#endif
    }
}

static void matmul_xp(float *y, int ldy, const sasp_xprep *p, const sasp_weights *w, const float *bias)
{
    matmul_typed(y, ldy, p->x, p->ldx, w->type == p->type && p->data ? p : NULL, w, bias, p->n);
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

#ifdef KERNELS_BF16_DOT
#define KERNELS_SEMANTICS SASP_SEM_BF16_ACT
#else
#define KERNELS_SEMANTICS 0u
#endif

const sasp_kernels KERNELS_TABLE = {
    .name = KERNELS_NAME,
    .id = KERNELS_ID,
    .semantics = KERNELS_SEMANTICS,
    .fast_weights = SASP_WT_Q8_0,
#ifdef KERNELS_Q8_PANELS
    .q8_panels = 1,
#endif
    .matmul = matmul_f32,
    .matmul_w = matmul_w,
    .xprep_init = xprep_init,
    .xprep_rows = xprep_rows,
    .matmul_xp = matmul_xp,
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
