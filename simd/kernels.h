/* kernels.h: the interface between the model and its vector kernels.
 *
 * The forward pass (src/model/model.c) spends its time in these functions and nowhere else. There is one table
 * per instruction set and CPU feature set. kernels_scalar.c is the reference, plain C, that every other
 * table is tested against. The vector tables are written once, in kernels_body.h (blocking drivers,
 * microkernels, element-wise kernels, the table), over a small set of primitives (vector type and width,
 * loads and masked tail loads, fma, horizontal sums, exp and tanh, the int8 and bf16 dot products) and
 * block sizes, which each ISA file defines before it includes the body: kernels_avx2.c (AVX2+FMA+F16C),
 * kernels_avx512.c (AVX-512F/VL/BW/DQ; built three times: plain, with VNNI, with VNNI + BF16),
 * kernels_neon.c (ARM64; built three times: plain, with dotprod, with dotprod + bf16). dispatch.c picks
 * a table at run time from CPUID / getauxval, or from SASP_SIMD (a table's id, below).
 *
 * Conventions: activations are row-major float32. Weight matrices are stored as PyTorch's nn.Linear
 * stores them, [out_features][in_features], so y = W x is a dot product of each row of W with x.
 * Pointers need not be aligned. Sizes may be any positive integer (odd and tiny included).
 * Kernels are pure: no allocation, no threads, no global state; the thread pool splits work outside.
 *
 * Typed weights (matmul_w): W [m][k] of one of three storage types, rows contiguous:
 *   SASP_WT_F32   data: float    [m][k]
 *   SASP_WT_BF16  data: uint16_t [m][k], bfloat16 (the upper half of a float32), read as is
 *   SASP_WT_Q8_0  data: int8_t   [m][k], and scales: uint16_t [m][ceil(k/32)], IEEE binary16:
 *                 W[j][p] = data[j][p] * scales[j][p / 32] (the product rounded to float32). A row's
 *                 last block holds k % 32 columns when k is not a multiple of 32; nothing is padded.
 *                 Values in [-127, 127] (what sasp_quantize_q8_0 writes; -128 is not allowed: the AVX2
 *                 kernel flips the sign of w by that of x, and -(-128) does not fit in int8).
 * A q8_0 matrix is two safetensors tensors: I8 [m][k] and F16 [m][ceil(k/32)]. Why this layout and not
 * llama.cpp's interleaved 34-byte blocks: two plain tensors the loader maps as they are, any row slice
 * [lo, hi) of W is a view of both (sasp_weights_rows), 32-byte blocks stay aligned with the rows, and
 * f16 scales cost 6% of the bytes f32 ones would (1.0625 bytes per weight against 1.125); the kernels
 * convert the scales of a row VL blocks at a time, one vector instruction (vcvtph2ps, fcvtl). */
#ifndef SASP_KERNELS_H
#define SASP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* ---- typed weights ---- */

typedef enum sasp_wtype { SASP_WT_F32,
                          SASP_WT_BF16,
                          SASP_WT_Q8_0 } sasp_wtype; /* widest first */

#define SASP_Q8_0_BLOCK 32 /* q8_0: columns per scale */

/* A weight matrix W [m][k] (see the layouts above). */
typedef struct sasp_weights {
    sasp_wtype type;
    int m, k;
    const void *data;       /* float, uint16_t (bf16) or int8_t [m][k] */
    const uint16_t *scales; /* q8_0: [m][sasp_q8_0_blocks(k)] binary16; NULL for the other types */
    /* q8_0, optional: the same matrix as panels (below, sasp_q8_0_pack_panels), which the tables with
     * sasp_kernels.q8_panels read instead of packing W on every call; NULL: not packed. */
    const uint8_t *panels;
    const uint16_t *panel_scales;
} sasp_weights;

static inline int sasp_q8_0_blocks(int k) { return (k + SASP_Q8_0_BLOCK - 1) / SASP_Q8_0_BLOCK; }

/* q8_0 panels: W's rows in groups of SASP_Q8_0_PANEL (the last one zero-padded), each group stored
 * block by block, four columns of each row side by side: panel P's block b is 512 bytes at
 * panels + (P nb + b) 512 (nb = sasp_q8_0_blocks(k)), its 4-column group g (g < 8) at + 64 g, in which
 * bytes 4l .. 4l+3 are W[16P + l][32b + 4g .. 32b + 4g + 3] + 128 as unsigned bytes (128 past k or m);
 * its 16 scales, W's binary16 ones (0 past m), at panel_scales + (P nb + b) 16. The layout vpdpbusd
 * wants with a lane per row of W and one broadcast of four bytes of X (kernels_body.h, "q8_0 by
 * panels"). A row slice starting at a multiple of 16 keeps its panels (sasp_weights_rows); another
 * drops them, and the kernels pack it themselves, to the same bits. */
#define SASP_Q8_0_PANEL 16
static inline size_t sasp_q8_0_panel_count(int m)
{
    return (size_t)(m + SASP_Q8_0_PANEL - 1) / SASP_Q8_0_PANEL;
}
/* bytes of panels, and binary16 scales of panel_scales, for a q8_0 matrix of m x k */
static inline size_t sasp_q8_0_panels_bytes(int m, int k) { return sasp_q8_0_panel_count(m) * sasp_q8_0_blocks(k) * 512; }
static inline size_t sasp_q8_0_panel_scale_count(int m, int k) { return sasp_q8_0_panel_count(m) * sasp_q8_0_blocks(k) * 16; }

/* Rows [lo, hi) of W as a matrix of its own (the columns [lo, hi) of Y = X W^T). */
static inline sasp_weights sasp_weights_rows(const sasp_weights *w, int lo, int hi)
{
    sasp_weights r = *w;
    size_t elem = w->type == SASP_WT_F32 ? 4 : w->type == SASP_WT_BF16 ? 2
                                                                       : 1;
    r.m = hi - lo;
    r.data = (const char *)w->data + (size_t)lo * w->k * elem;
    if (w->type == SASP_WT_Q8_0) r.scales = w->scales + (size_t)lo * sasp_q8_0_blocks(w->k);
    if (w->panels && lo % SASP_Q8_0_PANEL == 0) {
        size_t at = (size_t)(lo / SASP_Q8_0_PANEL) * sasp_q8_0_blocks(w->k);
        r.panels = w->panels + at * 512, r.panel_scales = w->panel_scales + at * 16;
    } else {
        r.panels = NULL, r.panel_scales = NULL;
    }
    return r;
}

/* The bytes one pass over W reads (data and scales). */
static inline size_t sasp_weights_bytes(const sasp_weights *w)
{
    size_t n = (size_t)w->m * w->k;
    switch (w->type) {
    case SASP_WT_F32: return 4 * n;
    case SASP_WT_BF16: return 2 * n;
    case SASP_WT_Q8_0: return n + 2 * (size_t)w->m * sasp_q8_0_blocks(w->k);
    }
    return 0;
}

/* matmul_w: Y = X W^T (+ bias), what it computes, the same whatever the number n of rows of X:
 *    f32, and bf16 in a table without SASP_SEM_BF16_ACT: y[i][j] = sum_p x[i][p] * W[j][p] + bias[j] in
 *      float32 arithmetic, W[j][p] as above (the f32 value of the bf16);
 *    bf16 in a table with SASP_SEM_BF16_ACT (AVX512_BF16's vdpbf16ps, ARM's bf16 BFMLAL): each x[i][p]
 *      is first rounded to bfloat16 (to nearest even; denormals may be flushed to 0), a relative error of
 *      at most 2^-8; the products of two bf16 are exact, the sums float32. The result moves by up to
 *      2^-8 sum_p |x w| (typically 1e-3 of |y|): the price of a fused instruction that does twice
 *      the multiply-adds of an f32 FMA;
 *    q8_0: each row of X is quantized per block of 32 columns, as the weights are: amax = max |x| over
 *      the block, dx = amax / 127, qx = rint(x * (127 / amax)) (0 when amax = 0), in [-127, 127];
 *      then y[i][j] = sum_b (float)(sum_{p in b} qx[p] qw[j][p]) * (dx_b * dw_jb) + bias[j], the inner
 *      sums exact in int32, the rest float32. |x - qx dx| <= dx / 2, so the result is within
 *      sum_b (dx_b / 2) sum_{p in b} |W[j][p]| of the f32 product (typically a few 1e-3 relative).
 * Every table equals kernels_scalar.c's sasp_matmul_w_reference within float32 rounding (the order of
 * the sums differs); the activations are quantized / rounded identically (bit for bit) in all tables.
 *
 * Batch invariance, the promise of every table and both products (matmul, matmul_w): Y[i][j] is a
 * function of row i of X, row j of W and bias[j] alone, bit for bit. It does not depend on n, on the
 * other rows of X, on m or the column slice (sasp_weights_rows) a call was given, on ldx or ldy: each
 * output is summed in one order, fixed by k and the table, whatever the blocking. So a sequence's logits
 * are the same decoded alone, next to others, in a prefill of any length, after a prompt-cache hit and
 * under any number of threads (the model splits its products by columns only, never along k). The order
 * differs between tables (vector widths, instructions): a table is reproducible against itself.
 * attn_scores(q, keys, ..., scale) is, bit for bit, matmul's row of q against the keys times scale. */
#define SASP_SEM_BF16_ACT 1u /* sasp_kernels.semantics: bf16 products round X to bf16 */

/* X prepared for typed products (matmul_xp): what matmul_w does to X on every call (rounds it to
 * bf16, splits it by pairs, or quantizes it to q8_0) done once, for an X that many calls multiply: the
 * model's products are split by columns into work items, and each item used to make the whole copy
 * again (at shape B's prefill, 48 copies of X per layer: most of q8_0's time went there). The same bytes
 * as the per-call copy, so matmul_xp gives matmul_w's results bit for bit. xprep_init lays it out in a
 * buffer of sasp_xprep_bytes(n, k) bytes, xprep_rows fills rows (any thread, any split of the rows),
 * matmul_xp reads it. Weights of another type than the one prepared for (and f32 weights, and every
 * type in the scalar table) are multiplied by X itself, as matmul_w does. */
typedef struct sasp_xprep {
    sasp_wtype type; /* the weight type it is prepared for */
    int n, k;        /* rows and columns of X */
    const float *x;  /* X itself, rows ldx apart */
    int ldx;
    void *data;    /* bf16: [n][ld] X rounded to bfloat16, or split by pairs (floats); q8_0: int8; else NULL */
    size_t ld;     /* a multiple of 64, zero-padded */
    float *scales; /* q8_0: [n][lds] dx per block of 32 (0 past the blocks) */
    int32_t *sums; /* q8_0, tables that read panels: [n][lds] -128 times the sum of the block's bytes */
    size_t lds;    /* a multiple of 16 */
} sasp_xprep;

/* A prepared row's elements (ld) and q8_0 scales (lds), padded; and the bytes of buffer a prepared X
 * of n x k needs, in any table and for any type (4-byte elements at most, 64 for the alignment). */
static inline size_t sasp_xprep_ld(int k) { return ((size_t)k + 63) / 64 * 64; }
static inline size_t sasp_xprep_lds(int k) { return ((size_t)sasp_q8_0_blocks(k) + 15) / 16 * 16; }
static inline size_t sasp_xprep_bytes(int n, int k)
{
    return (size_t)n * (4 * sasp_xprep_ld(k) + 8 * sasp_xprep_lds(k)) + 64;
}

typedef struct sasp_kernels {
    const char *name;   /* the instruction set: "scalar", "avx2", "avx512", "neon" */
    const char *id;     /* this table (SASP_SIMD): the name, or "avx2-vnni", "avx512-vnni", "avx512-bf16"
                       * (VNNI + BF16), "neon-dotprod", "neon-bf16" (dotprod + bf16) */
    unsigned semantics; /* SASP_SEM_* flags: where matmul_w's results differ by design (above) */
    /* The weight type this table serves a model fastest in, decode and prefill taken together, which
     * sasp-server and sasp-cli load by default (model.h: SASP_WEIGHTS_FAST). The rule: q8_0 in every
     * vector table (int8 dot products, 1.06 bytes a weight: decode reads half of bf16's bytes and a
     * quarter of f32's, and prefill runs on the integer units: VNNI, dotprod, vpmaddubsw); f32 in the
     * scalar reference, which is there to be right, not fast. docs/performance.md has the figures. */
    sasp_wtype fast_weights;
    /* Whether its q8_0 product reads panels (sasp_weights.panels) when a matrix has them: give them to
     * it (sasp_q8_0_pack_panels, once at load) and decode does not pack W on every call. */
    int q8_panels;

    /* Y[i][j] = sum_k X[i][k] * W[j][k] (+ bias[j] when bias != NULL), for i < n, j < m.
     * X has row stride ldx, Y row stride ldy (so a thread can fill a column slice of Y).
     * n = 1 is matrix x vector (decode); n > 1 is the batched / prefill case: the same sums (above). */
    void (*matmul)(float *y, int ldy, const float *x, int ldx, const float *w, const float *bias,
                   int n, int m, int k);
    /* The same for a typed weight matrix (above): Y[i][j] for i < n, j < w->m, X n x w->k. A column
     * slice of Y is a call on sasp_weights_rows(w, lo, hi) with y + lo and bias + lo. A bf16 or q8_0
     * call first copies X (split into even and odd columns, rounded to bf16, or quantized: n * k
     * values, 24 rows and 1024 or 2048 columns at a time, at most 96 KB of stack): a caller that
     * cuts one product into many column slices prepares X once instead (xprep_init, matmul_xp). */
    void (*matmul_w)(float *y, int ldy, const float *x, int ldx, const sasp_weights *w, const float *bias,
                     int n);
    /* X prepared once (sasp_xprep above): p laid out for weights of `type` in buf (sasp_xprep_bytes(n, k)
     * bytes, any alignment), reading X [n][k] (row stride ldx) when its rows are filled; rows [r0, r1)
     * filled from X; and matmul_w's product of all n rows of the prepared X, bit for bit. */
    void (*xprep_init)(sasp_xprep *p, void *buf, sasp_wtype type, const float *x, int ldx, int n, int k);
    void (*xprep_rows)(const sasp_xprep *p, int r0, int r1);
    void (*matmul_xp)(float *y, int ldy, const sasp_xprep *p, const sasp_weights *w, const float *bias);

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

/* The kernel table the process uses: chosen once, on first call, from SASP_SIMD when it is set (a
 * table's id, or an instruction set's name for its best table; an unknown or unsupported value is
 * reported on stderr and falls back to the best available), else from the CPU. Thread-safe. */
const sasp_kernels *sasp_kernels_active(void);

/* The table of that id ("scalar", "avx2", "avx2-vnni", "avx512", "avx512-vnni", "avx512-bf16", "neon",
 * "neon-dotprod", "neon-bf16"), or NULL when this build or CPU lacks it. */
const sasp_kernels *sasp_kernels_by_name(const char *id);

/* Every table this build and CPU can run, scalar first, best last; returns the count (at most
 * SASP_KERNELS_MAX). */
#define SASP_KERNELS_MAX 8
int sasp_kernels_available(const sasp_kernels **out, int max);

/* The tables, defined in their files (only those built for this architecture and compiler exist). */
extern const sasp_kernels sasp_kernels_scalar;
extern const sasp_kernels sasp_kernels_avx2, sasp_kernels_avx2_vnni;
extern const sasp_kernels sasp_kernels_avx512, sasp_kernels_avx512_vnni, sasp_kernels_avx512_bf16;
extern const sasp_kernels sasp_kernels_neon, sasp_kernels_neon_dotprod, sasp_kernels_neon_bf16;

/* For the tests only (libsasp_emul.a, linked by tests/check_kernels, never offered by dispatch): the
 * AVX-512 body (16 floats a vector, its block sizes) over GCC generic vectors, with vpdpbusd and
 * vdpbf16ps emulated by plain code (kernels_avx512.c), runnable on any CPU: "vl16-emul" (plain
 * AVX-512's int8 path) and "vl16-emul-bf16" (VNNI and BF16). */
extern const sasp_kernels sasp_kernels_vl16_emul, sasp_kernels_vl16_emul_bf16;

/* ---- the scalar reference and conversions (kernels_scalar.c) ---- */

/* matmul_w's semantics in plain C (SASP_SEM_* flags as a table's). */
void sasp_matmul_w_reference(float *y, int ldy, const float *x, int ldx, const sasp_weights *w,
                             const float *bias, int n, unsigned semantics);

/* binary16 and bfloat16 to and from float32, rounding to nearest even (NaN stays NaN). */
float sasp_f16_to_f32(uint16_t h);
uint16_t sasp_f32_to_f16(float f);
float sasp_bf16_to_f32(uint16_t b);
uint16_t sasp_f32_to_bf16(float f);

/* Row j of W as float32 (out: W->k floats): the embedding of a token whose table is typed. */
void sasp_weights_row_f32(const sasp_weights *w, int j, float *out);

/* q8_0 W as panels (the layout above): panels has sasp_q8_0_panels_bytes(w->m, w->k) bytes,
 * panel_scales sasp_q8_0_panel_scale_count(w->m, w->k) entries. */
void sasp_q8_0_pack_panels(const sasp_weights *w, uint8_t *panels, uint16_t *panel_scales);

/* W [m][k] float32 to q8_0: per row and block of 32, d = amax / 127 rounded to binary16 and
 * q = rint(w / d) clamped to [-127, 127] (0 where d = 0). */
void sasp_quantize_q8_0(int8_t *q, uint16_t *scales, const float *w, int m, int k);

#endif
