/* kernels_avx2.c: the AVX2 + FMA + F16C primitives and block sizes of the kernels (8 floats per
 * register, 16 registers); the kernels themselves are in kernels_body.h, included at the end, which also
 * says what each primitive must do. Tails are masked loads and stores (vmaskmov) with a mask of the
 * first r lanes, read from a table; the 8- and 16-bit tails (q8_0, bf16) go through a zeroed buffer
 * (k % 16 columns of a row: once per row), the scales' tails are inserted in a register.
 *
 * One file, two tables (Makefile.am builds it once for each):
 *   sasp_kernels_avx2       "avx2"       q8_0: one block of 32 per step, its int8 dot products by
 *                                        vpmaddubsw (unsigned x signed bytes, pairs summed to int16) and
 *                                        vpmaddwd (pairs of int16 summed to int32) with the sign trick
 *   sasp_kernels_avx2_vnni  "avx2-vnni"  + AVX-VNNI (KERNELS_VNNI: Intel since Alder Lake, AMD since Zen
 *                                        5): q8_0 by panels, VEX vpdpbusd of broadcast X against W 16
 *                                        rows a panel, read as two vectors of 8 (the body's
 *                                        KERNELS_Q8_PANELS, as AVX-512 VNNI's with 16 lanes) */
#include <stdint.h>
#include <string.h>

#include <immintrin.h>
#include <sleef.h>

#include "kernels.h"

#ifdef KERNELS_VNNI
#define KERNELS_TABLE sasp_kernels_avx2_vnni
#define KERNELS_ID "avx2-vnni"
#else
#define KERNELS_TABLE sasp_kernels_avx2
#define KERNELS_ID "avx2"
#endif
#define KERNELS_NAME "avx2"

#define VL 8         /* floats per vector */
#define ACCUM_VECS 4 /* attn_accum: 4 vectors of out (dh = 32) per pass */
/* dot-product blocks B(NR rows of X, MR rows of W), largest first: NR*MR accumulators in registers */
#define DOT_BLOCKS(B) B(4, 3) B(2, 4) B(1, 8)
/* q8_0 holds a W vector and its scales per row of the block: fewer rows of W */
#define Q8_DOT_BLOCKS(B) B(4, 2) B(2, 3) B(1, 4)
/* bf16 holds the even and the odd half of each W vector */
#define BF16_DOT_BLOCKS(B) B(4, 2) B(2, 3) B(1, 4)

#define ALWAYS_INLINE static inline __attribute__((always_inline))

typedef __m256 vec;
typedef __m256i vtail;

/* The mask of the first r lanes (0 <= r <= VL) is the VL entries from mask_table + VL - r. */
static const int32_t mask_table[2 * VL] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
ALWAYS_INLINE vtail v_lanes(int left)
{
    int r = left >= VL ? VL : left > 0 ? left
                                       : 0;
    return _mm256_loadu_si256((const __m256i *)(mask_table + VL - r));
}

ALWAYS_INLINE vec v_load(const float *p) { return _mm256_loadu_ps(p); }
ALWAYS_INLINE void v_store(float *p, vec v) { _mm256_storeu_ps(p, v); }
ALWAYS_INLINE vec v_load_tail(const float *p, vtail t) { return _mm256_maskload_ps(p, t); }
ALWAYS_INLINE void v_store_tail(float *p, vtail t, vec v) { _mm256_maskstore_ps(p, t, v); }
ALWAYS_INLINE vec v_keep(vtail t, vec v) { return _mm256_and_ps(v, _mm256_castsi256_ps(t)); }

ALWAYS_INLINE vec v_zero(void) { return _mm256_setzero_ps(); }
ALWAYS_INLINE vec v_set1(float a) { return _mm256_set1_ps(a); }
ALWAYS_INLINE vec v_broadcast(const float *p) { return _mm256_broadcast_ss(p); }

ALWAYS_INLINE vec v_add(vec a, vec b) { return _mm256_add_ps(a, b); }
ALWAYS_INLINE vec v_sub(vec a, vec b) { return _mm256_sub_ps(a, b); }
ALWAYS_INLINE vec v_mul(vec a, vec b) { return _mm256_mul_ps(a, b); }
ALWAYS_INLINE vec v_div(vec a, vec b) { return _mm256_div_ps(a, b); }
ALWAYS_INLINE vec v_max(vec a, vec b) { return _mm256_max_ps(a, b); }
ALWAYS_INLINE vec v_fma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
ALWAYS_INLINE vec v_fnma(vec a, vec b, vec c) { return _mm256_fnmadd_ps(a, b, c); }
ALWAYS_INLINE vec v_abs(vec a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }

/* Horizontal sums, one vector or four into the four lanes of an SSE register, by one tree:
 * ((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7)), two hadds and the halves added. The two must agree
 * bit for bit: which of them sums an accumulator depends on the block it fell in (kernels_body.h). */
ALWAYS_INLINE __m128 half_sum(vec v)
{
    return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
}
ALWAYS_INLINE float v_hsum(vec v)
{
    __m256 h = _mm256_hadd_ps(v, v);
    return _mm_cvtss_f32(half_sum(_mm256_hadd_ps(h, h)));
}
ALWAYS_INLINE void v_hsum4(float *out, vec a, vec b, vec c, vec d)
{
    _mm_storeu_ps(out, half_sum(_mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d))));
}
ALWAYS_INLINE float v_hmax(vec v)
{
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}

ALWAYS_INLINE vec v_exp(vec v) { return Sleef_expf8_u10avx2(v); }
ALWAYS_INLINE vec v_tanh(vec v) { return Sleef_tanhf8_u10avx2(v); }

ALWAYS_INLINE void v_prefetch(const void *p) { _mm_prefetch((const char *)p, _MM_HINT_T0); }
ALWAYS_INLINE vec v_in_register(vec v)
{
    __asm__(""
            : "+x"(v));
    return v;
}

/* ---- weight types ---- */

/* bf16 is the high half of a float32: in a dword of two, the even element is the low half (<< 16 makes
 * it a float), the odd one the high half (the low half masked off). */
typedef __m256i hvec;
ALWAYS_INLINE hvec h_load(const uint16_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
ALWAYS_INLINE hvec h_load_tail(const uint16_t *p, int left)
{
    uint16_t t[2 * VL] = {0};
    if (left > 0) memcpy(t, p, (size_t)(left < 2 * VL ? left : 2 * VL) * sizeof *p);
    return h_load(t);
}
ALWAYS_INLINE void h_split(hvec h, vec *even, vec *odd)
{
    *even = _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
    *odd = _mm256_castsi256_ps(_mm256_and_si256(h, _mm256_set1_epi32((int)0xffff0000u)));
}
ALWAYS_INLINE float f16_to_float(uint16_t h) { return _cvtsh_ss(h); }
ALWAYS_INLINE vec v_load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
/* The first `left` halves inserted one by one (no store to a buffer and load back: that stalls) */
ALWAYS_INLINE vec v_load_f16_tail(const uint16_t *p, int left)
{
    __m128i h = _mm_setzero_si128();
    switch (left < VL ? left : VL) {
    case 8: return v_load_f16(p);
    case 7: h = _mm_insert_epi16(h, p[6], 6); /* fall through */
    case 6: h = _mm_insert_epi16(h, p[5], 5); /* fall through */
    case 5: h = _mm_insert_epi16(h, p[4], 4); /* fall through */
    case 4: h = _mm_insert_epi16(h, p[3], 3); /* fall through */
    case 3: h = _mm_insert_epi16(h, p[2], 2); /* fall through */
    case 2: h = _mm_insert_epi16(h, p[1], 1); /* fall through */
    case 1: h = _mm_insert_epi16(h, p[0], 0); /* fall through */
    default: break;
    }
    return _mm256_cvtph_ps(h);
}

/* VL int8, rounded to nearest even (cvtps2dq under the default MXCSR), packed with saturation. */
ALWAYS_INLINE void v_store_i8(int8_t *p, vec v)
{
    __m256i i32 = _mm256_cvtps_epi32(v);
    __m128i i16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
    _mm_storel_epi64((__m128i *)p, _mm_packs_epi16(i16, i16));
}

#define QSTEP 32 /* one block of q8_0 per step */
typedef __m256i qvec;
ALWAYS_INLINE qvec q_load(const int8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
ALWAYS_INLINE qvec q_load_tail(const int8_t *p, int left)
{
    int8_t t[QSTEP] = {0};
    memcpy(t, p, (size_t)(left < QSTEP ? left : QSTEP));
    return q_load(t);
}
/* The sign trick: vpmaddubsw multiplies unsigned by signed bytes, so it gets |x| and w with the sign of
 * x (|x| is made once per step, whatever the rows of W: GCC keeps it from the first q_dot of the step);
 * w in [-127, 127], so the sign flip does not overflow, and a pair of products is at most
 * 2 * 127 * 128 = 32512: vpmaddubsw does not saturate. vpmaddwd by 1 sums the pairs of int16 into 8 int32
 * lanes of 4 products each. With AVX-VNNI the table takes q8_0 by panels (below), and this is unused. */
ALWAYS_INLINE vec q_dot(qvec x, qvec w)
{
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(w, x));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}
ALWAYS_INLINE vec q_scale_at(const float *group, int b) { return _mm256_broadcast_ss(group + b); }

#ifdef KERNELS_VNNI
/* ---- q8_0 by panels (AVX-VNNI): kernels_body.h's KERNELS_Q8_PANELS, a 16-row panel as two vectors ---- */
#define KERNELS_Q8_PANELS
#define QP_NR 3 /* 16 registers: 3 rows x 2 vectors of int32 and float accumulators, W and X */
/* decode reads two panels at a time here (four with AVX-512); prefetching the next two took a 2-vCPU
 * Zen 5's decode at batch 1 from 0.92-0.97x avx2's to 1.03-1.10x (AVX-512, where it cost 12-40%, does not) */
#define QP_PREFETCH 1
typedef __m256i i32vec;
ALWAYS_INLINE i32vec i32_set1(int32_t a) { return _mm256_set1_epi32(a); }
ALWAYS_INLINE vec i32_to_float(i32vec a) { return _mm256_cvtepi32_ps(a); }
/* the four bytes at p in every 32-bit lane (vpbroadcastd) */
ALWAYS_INLINE qvec qp_bcast(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}
ALWAYS_INLINE void q_store(int8_t *p, qvec v) { _mm256_storeu_si256((__m256i *)p, v); }
ALWAYS_INLINE qvec q_flip_sign(qvec v) { return _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)); }
/* vpdpbusd (VEX): 8 int32 lanes, each + the four products of its unsigned and signed bytes, exact */
ALWAYS_INLINE i32vec qp_dot(i32vec acc, qvec u, qvec s) { return _mm256_dpbusd_avx_epi32(acc, u, s); }
/* r[0..8) as an 8 x 8 matrix of 32-bit elements, transposed: pairs of rows interleaved by 32 then 64
 * bits (vpunpck*), which leaves in each 128-bit half four rows of one column, then the halves swapped
 * (vperm2i128). */
ALWAYS_INLINE void qp_transpose(qvec r[8])
{
    __m256i t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) { /* u[4i + c], 128-bit half H: rows 4i..4i+3 of column 4H + c */
        u[4 * i] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x20);
        r[4 + c] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x31);
    }
}
#endif

#include "kernels_body.h"
