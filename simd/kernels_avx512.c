/* kernels_avx512.c: the AVX-512 primitives and block sizes of the kernels (16 floats per register, 32
 * registers); the kernels themselves are in kernels_body.h, included at the end, which also says what
 * each primitive must do. Tails are masked loads and stores with a mask of the first r lanes.
 *
 * One file, five tables (Makefile.am builds it once for each):
 *   sasp_kernels_avx512          "avx512"          AVX-512F/VL/BW/DQ: q8_0 by vpmaddubsw + vpmaddwd
 *   sasp_kernels_avx512_vnni     "avx512-vnni"     + AVX512_VNNI (KERNELS_VNNI): q8_0 by panels, vpdpbusd
 *                                                  of broadcast X against W 16 rows a panel (the body's
 *                                                  KERNELS_Q8_PANELS)
 *   sasp_kernels_avx512_bf16     "avx512-bf16"     + AVX512_BF16 (KERNELS_BF16, with KERNELS_VNNI):
 *                                                  bf16 products by vdpbf16ps on X rounded to bf16
 *   sasp_kernels_vl16_emul       "vl16-emul"       KERNELS_EMUL: the stand-ins of the first and the
 *   sasp_kernels_vl16_emul_bf16  "vl16-emul-bf16"  third, for the tests, on any CPU (below)
 *
 * The stand-in (KERNELS_EMUL) is the same body with the same vector width and block sizes over GCC
 * generic vectors (vector_size(64)), every instruction written out in plain C next to the intrinsic it
 * stands for: each primitive below is an #if pair, real first. Where it is an ordinary operation the
 * stand-in is its obvious loop (v_fma is a * b + c unfused there: the tests allow float rounding);
 * the instructions the typed kernels are made of (vpabsb, vpmovb2m, masked vpsubb, vpmaddubsw,
 * vpmaddwd, vpdpbusd, vdpbf16ps, vcvtneps2bf16, the masked byte and word loads) follow Intel's pseudo
 * code exactly, saturation, denormal flushing and order of the two roundings included. So check_kernels
 * runs this file's logic (two q8_0 blocks per step and their scales, the 64-byte tails, the bf16 loop)
 * on every machine, and only the intrinsics themselves need a CPU that has them. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef KERNELS_EMUL
#include <immintrin.h>
#include <sleef.h>
#endif

#include "kernels.h"

#if defined(KERNELS_EMUL) && defined(KERNELS_BF16)
#define KERNELS_TABLE sasp_kernels_vl16_emul_bf16
#define KERNELS_NAME "vl16-emul"
#define KERNELS_ID "vl16-emul-bf16"
#elif defined(KERNELS_EMUL)
#define KERNELS_TABLE sasp_kernels_vl16_emul
#define KERNELS_NAME "vl16-emul"
#define KERNELS_ID "vl16-emul"
#elif defined(KERNELS_BF16)
#define KERNELS_TABLE sasp_kernels_avx512_bf16
#define KERNELS_NAME "avx512"
#define KERNELS_ID "avx512-bf16"
#elif defined(KERNELS_VNNI)
#define KERNELS_TABLE sasp_kernels_avx512_vnni
#define KERNELS_NAME "avx512"
#define KERNELS_ID "avx512-vnni"
#else
#define KERNELS_TABLE sasp_kernels_avx512
#define KERNELS_NAME "avx512"
#define KERNELS_ID "avx512"
#endif
#ifdef KERNELS_BF16
#define KERNELS_BF16_DOT /* the body's bf16 x bf16 loop */
#endif

#define VL 16        /* floats per vector */
#define ACCUM_VECS 4 /* attn_accum: 4 vectors of out (dh = 64) per pass */
/* dot-product blocks B(NR rows of X, MR rows of W), largest first: NR*MR accumulators in registers */
#define DOT_BLOCKS(B) B(8, 3) B(4, 6) B(3, 8) B(2, 8) B(1, 8)
/* q8_0 also holds per row of W its vector, |w|, the mask of its signs and its scales */
#define Q8_DOT_BLOCKS(B) B(8, 2) B(4, 3) B(2, 4) B(1, 4)
/* bf16 holds the even and the odd half of each W vector */
#define BF16_DOT_BLOCKS(B) B(8, 2) B(4, 4) B(2, 6) B(1, 8)

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#ifdef KERNELS_EMUL
/* The stand-in's loops stay out of line: inlined into the unrolled kernels they take minutes to compile. */
#define EMUL_FN static __attribute__((noinline, unused))
#endif

/* ---- types ---- */

#ifndef KERNELS_EMUL
typedef __m512 vec;     /* 16 float */
typedef __m512i qvec;   /* 64 int8 */
typedef __m512i i16vec; /* 32 int16 */
typedef __m512i i32vec; /* 16 int32 */
typedef __m512i bvec;   /* 32 bf16 */
typedef __m512i hvec;   /* 32 bf16 as uint16 */
typedef __mmask16 vtail;
typedef __mmask64 bmask; /* one bit per byte */
#else
typedef float vec __attribute__((vector_size(64)));
typedef int8_t qvec __attribute__((vector_size(64)));
typedef int16_t i16vec __attribute__((vector_size(64)));
typedef int32_t i32vec __attribute__((vector_size(64)));
typedef uint16_t bvec __attribute__((vector_size(64)));
typedef uint16_t hvec __attribute__((vector_size(64)));
typedef uint32_t u32vec __attribute__((vector_size(64)));
typedef uint16_t vtail;
typedef uint64_t bmask;
#endif

ALWAYS_INLINE vtail v_lanes(int left)
{
    return left >= VL ? 0xffff : left > 0 ? (vtail)((1u << left) - 1u)
                                          : 0;
}

/* ---- loads and stores ---- */

#ifndef KERNELS_EMUL
ALWAYS_INLINE vec v_load(const float *p)
{
    return _mm512_loadu_ps(p);
}
ALWAYS_INLINE void v_store(float *p, vec v) { _mm512_storeu_ps(p, v); }
ALWAYS_INLINE vec v_load_tail(const float *p, vtail t) { return _mm512_maskz_loadu_ps(t, p); }
ALWAYS_INLINE void v_store_tail(float *p, vtail t, vec v) { _mm512_mask_storeu_ps(p, t, v); }
ALWAYS_INLINE vec v_keep(vtail t, vec v) { return _mm512_maskz_mov_ps(t, v); }
#else
ALWAYS_INLINE vec v_load(const float *p)
{
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}
ALWAYS_INLINE void v_store(float *p, vec v) { memcpy(p, &v, sizeof v); }
EMUL_FN vec v_load_tail(const float *p, vtail t) /* the masked-off lanes are not read */
{
    vec v = {0};
    for (int l = 0; l < VL; l++)
        if (t >> l & 1) v[l] = p[l];
    return v;
}
EMUL_FN void v_store_tail(float *p, vtail t, vec v)
{
    for (int l = 0; l < VL; l++)
        if (t >> l & 1) p[l] = v[l];
}
EMUL_FN vec v_keep(vtail t, vec v)
{
    for (int l = 0; l < VL; l++)
        if (!(t >> l & 1)) v[l] = 0.0f;
    return v;
}
#endif

/* ---- arithmetic ---- */

#ifndef KERNELS_EMUL
ALWAYS_INLINE vec v_zero(void)
{
    return _mm512_setzero_ps();
}
ALWAYS_INLINE vec v_set1(float a) { return _mm512_set1_ps(a); }
ALWAYS_INLINE vec v_broadcast(const float *p) { return _mm512_set1_ps(*p); }
ALWAYS_INLINE vec v_add(vec a, vec b) { return _mm512_add_ps(a, b); }
ALWAYS_INLINE vec v_sub(vec a, vec b) { return _mm512_sub_ps(a, b); }
ALWAYS_INLINE vec v_mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
ALWAYS_INLINE vec v_div(vec a, vec b) { return _mm512_div_ps(a, b); }
ALWAYS_INLINE vec v_max(vec a, vec b) { return _mm512_max_ps(a, b); }
ALWAYS_INLINE vec v_fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
ALWAYS_INLINE vec v_fnma(vec a, vec b, vec c) { return _mm512_fnmadd_ps(a, b, c); }
ALWAYS_INLINE vec v_abs(vec a) { return _mm512_abs_ps(a); }
#else
ALWAYS_INLINE vec v_zero(void)
{
    return (vec){0};
}
ALWAYS_INLINE vec v_set1(float a) { return (vec){0} + a; }
ALWAYS_INLINE vec v_broadcast(const float *p) { return v_set1(*p); }
ALWAYS_INLINE vec v_add(vec a, vec b) { return a + b; }
ALWAYS_INLINE vec v_sub(vec a, vec b) { return a - b; }
ALWAYS_INLINE vec v_mul(vec a, vec b) { return a * b; }
ALWAYS_INLINE vec v_div(vec a, vec b) { return a / b; }
EMUL_FN vec v_max(vec a, vec b) /* vmaxps: a when a > b, else b (also when either is NaN) */
{
    for (int l = 0; l < VL; l++) a[l] = a[l] > b[l] ? a[l] : b[l];
    return a;
}
ALWAYS_INLINE vec v_fma(vec a, vec b, vec c) { return a * b + c; } /* unfused: within the tests' rounding */
ALWAYS_INLINE vec v_fnma(vec a, vec b, vec c) { return c - a * b; }
EMUL_FN vec v_abs(vec a)
{
    u32vec u;
    memcpy(&u, &a, sizeof u);
    u &= 0x7fffffffu;
    memcpy(&a, &u, sizeof a);
    return a;
}
#endif

/* ---- horizontal sums ---- */

/* One tree for a vector's sum, whether alone (v_hsum) or four at once (v_hsum4), which must agree bit
 * for bit (kernels_body.h): h_l = v_l + v_{l+8}, then ((h0 + h1) + (h2 + h3)) + ((h4 + h5) + (h6 + h7)),
 * the halves added, then two of AVX's hadds and their 128-bit halves added. */
#ifndef KERNELS_EMUL
ALWAYS_INLINE float v_hmax(vec v)
{
    return _mm512_reduce_max_ps(v);
}
ALWAYS_INLINE __m256 half_sum(vec v)
{
    return _mm256_add_ps(_mm512_castps512_ps256(v),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
ALWAYS_INLINE __m128 quarter_sum(__m256 h) { return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)); }
ALWAYS_INLINE float v_hsum(vec v)
{
    __m256 h = _mm256_hadd_ps(half_sum(v), half_sum(v));
    return _mm_cvtss_f32(quarter_sum(_mm256_hadd_ps(h, h)));
}
ALWAYS_INLINE void v_hsum4(float *out, vec a, vec b, vec c, vec d)
{
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(half_sum(a), half_sum(b)),
                              _mm256_hadd_ps(half_sum(c), half_sum(d)));
    _mm_storeu_ps(out, quarter_sum(h));
}
#else
EMUL_FN float v_hsum(vec v)
{
    float h[VL / 2];
    for (int l = 0; l < VL / 2; l++) h[l] = v[l] + v[l + VL / 2];
    return ((h[0] + h[1]) + (h[2] + h[3])) + ((h[4] + h[5]) + (h[6] + h[7]));
}
EMUL_FN float v_hmax(vec v)
{
    float m = v[0];
    for (int l = 1; l < VL; l++) m = v[l] > m ? v[l] : m;
    return m;
}
EMUL_FN void v_hsum4(float *out, vec a, vec b, vec c, vec d)
{
    out[0] = v_hsum(a), out[1] = v_hsum(b), out[2] = v_hsum(c), out[3] = v_hsum(d);
}
#endif

/* ---- exp, tanh, prefetch ---- */

#ifndef KERNELS_EMUL
ALWAYS_INLINE vec v_exp(vec v)
{
    return Sleef_expf16_u10avx512f(v);
}
ALWAYS_INLINE vec v_tanh(vec v) { return Sleef_tanhf16_u10avx512f(v); }
ALWAYS_INLINE void v_prefetch(const void *p) { _mm_prefetch((const char *)p, _MM_HINT_T0); }
ALWAYS_INLINE vec v_in_register(vec v)
{
    __asm__(""
            : "+v"(v));
    return v;
}
#else
EMUL_FN vec v_exp(vec v)
{
    for (int l = 0; l < VL; l++) v[l] = expf(v[l]);
    return v;
}
EMUL_FN vec v_tanh(vec v)
{
    for (int l = 0; l < VL; l++) v[l] = tanhf(v[l]);
    return v;
}
ALWAYS_INLINE void v_prefetch(const void *p) { __builtin_prefetch(p); }
ALWAYS_INLINE vec v_in_register(vec v) { return v; }
#endif

/* ---- bf16 and f16 as floats ---- */

#ifndef KERNELS_EMUL
/* bf16 is the high half of a float32: in a dword of two, the even element is the low half (<< 16 makes
 * it a float), the odd one the high half (the low half masked off). */
ALWAYS_INLINE hvec h_load(const uint16_t *p) { return _mm512_loadu_si512(p); }
ALWAYS_INLINE hvec h_load_tail(const uint16_t *p, int left) /* vmovdqu16 with a mask: a bit a word */
{
    return _mm512_maskz_loadu_epi16(left >= 2 * VL ? ~(__mmask32)0 : ((__mmask32)1 << left) - 1, p);
}
ALWAYS_INLINE void h_split(hvec h, vec *even, vec *odd)
{
    *even = _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
    *odd = _mm512_castsi512_ps(_mm512_and_si512(h, _mm512_set1_epi32((int)0xffff0000u)));
}
ALWAYS_INLINE float f16_to_float(uint16_t h) { return _cvtsh_ss(h); }
ALWAYS_INLINE vec v_load_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
ALWAYS_INLINE vec v_load_f16_tail(const uint16_t *p, int left)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(v_lanes(left), p));
}
#else
EMUL_FN hvec h_load_tail(const uint16_t *p, int left)
{
    hvec v = {0};
    memcpy(&v, p, (size_t)(left < 2 * VL ? left : 2 * VL) * sizeof *p);
    return v;
}
ALWAYS_INLINE hvec h_load(const uint16_t *p) { return h_load_tail(p, 2 * VL); }
EMUL_FN void h_split(hvec h, vec *even, vec *odd) /* vpslld 16; vpandd 0xffff0000 */
{
    u32vec e, o;
    for (int l = 0; l < VL; l++) e[l] = (uint32_t)h[2 * l] << 16, o[l] = (uint32_t)h[2 * l + 1] << 16;
    memcpy(even, &e, sizeof e);
    memcpy(odd, &o, sizeof o);
}
ALWAYS_INLINE float f16_to_float(uint16_t h) { return sasp_f16_to_f32(h); }
EMUL_FN vec v_load_f16_tail(const uint16_t *p, int left)
{
    vec v = {0};
    for (int l = 0; l < VL && l < left; l++) v[l] = sasp_f16_to_f32(p[l]);
    return v;
}
ALWAYS_INLINE vec v_load_f16(const uint16_t *p) { return v_load_f16_tail(p, VL); }
#endif

/* ---- int8 (q8_0): loads, the instructions of the dot product, their stand-ins ---- */

#define QSTEP 64 /* two blocks of q8_0 per step */

#ifndef KERNELS_EMUL
/* VL int8: vcvtps2dq (nearest even under the default MXCSR), vpmovsdb (saturating). */
ALWAYS_INLINE void v_store_i8(int8_t *p, vec v)
{
    _mm_storeu_si128((__m128i *)p, _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
}
ALWAYS_INLINE qvec q_load(const int8_t *p) { return _mm512_loadu_si512(p); }
ALWAYS_INLINE qvec q_load_tail(const int8_t *p, int left) /* vmovdqu8 with a mask: a bit a byte */
{
    return _mm512_maskz_loadu_epi8(left >= QSTEP ? ~(bmask)0 : ((bmask)1 << left) - 1, p);
}
ALWAYS_INLINE qvec i8_abs(qvec a) { return _mm512_abs_epi8(a); }
ALWAYS_INLINE bmask i8_sign_bits(qvec a) { return _mm512_movepi8_mask(a); }
ALWAYS_INLINE qvec i8_negate_where(qvec a, bmask m) { return _mm512_mask_sub_epi8(a, m, _mm512_setzero_si512(), a); }
ALWAYS_INLINE i16vec u8_s8_madd(qvec u, qvec s) { return _mm512_maddubs_epi16(u, s); }
ALWAYS_INLINE i32vec i16_pairs(i16vec a) { return _mm512_madd_epi16(a, _mm512_set1_epi16(1)); }
ALWAYS_INLINE i32vec i32_set1(int32_t a) { return _mm512_set1_epi32(a); }
#ifdef KERNELS_VNNI
ALWAYS_INLINE i32vec u8_s8_dot4(i32vec acc, qvec u, qvec s)
{
    return _mm512_dpbusd_epi32(acc, u, s);
}
#endif
ALWAYS_INLINE vec i32_to_float(i32vec a)
{
    return _mm512_cvtepi32_ps(a);
}
#else
EMUL_FN void v_store_i8(int8_t *p, vec v)
{
    for (int l = 0; l < VL; l++) {
        float r = rintf(v[l]);
        p[l] = (int8_t)(r > 127.0f ? 127.0f : r < -128.0f ? -128.0f
                                                          : r);
    }
}
EMUL_FN qvec q_load_tail(const int8_t *p, int left)
{
    qvec v = {0};
    memcpy(&v, p, (size_t)(left < QSTEP ? left : QSTEP));
    return v;
}
ALWAYS_INLINE qvec q_load(const int8_t *p) { return q_load_tail(p, QSTEP); }
/* vpabsb: |a| in each byte; -128 stays 0x80 (128 read as unsigned) */
EMUL_FN qvec i8_abs(qvec a)
{
    for (int l = 0; l < QSTEP; l++) a[l] = (int8_t)(uint8_t)(a[l] < 0 ? -(int)a[l] : a[l]);
    return a;
}
/* vpmovb2m: the sign bit of each byte */
EMUL_FN bmask i8_sign_bits(qvec a)
{
    bmask m = 0;
    for (int l = 0; l < QSTEP; l++) m |= (bmask)(a[l] < 0) << l;
    return m;
}
/* vpsubb zero - a where the mask is set (wrapping), a elsewhere */
EMUL_FN qvec i8_negate_where(qvec a, bmask m)
{
    for (int l = 0; l < QSTEP; l++)
        if (m >> l & 1) a[l] = (int8_t)(uint8_t)(0u - (uint8_t)a[l]);
    return a;
}
/* vpmaddubsw: int16 lane l = saturate16(u8(u[2l]) s8(s[2l]) + u8(u[2l+1]) s8(s[2l+1])) */
EMUL_FN i16vec u8_s8_madd(qvec u, qvec s)
{
    i16vec r;
    for (int l = 0; l < QSTEP / 2; l++) {
        int t = (uint8_t)u[2 * l] * s[2 * l] + (uint8_t)u[2 * l + 1] * s[2 * l + 1];
        r[l] = (int16_t)(t > 32767 ? 32767 : t < -32768 ? -32768
                                                        : t);
    }
    return r;
}
/* vpmaddwd by 1: int32 lane l = a[2l] + a[2l+1] */
EMUL_FN i32vec i16_pairs(i16vec a)
{
    i32vec r;
    for (int l = 0; l < VL; l++) r[l] = (int32_t)a[2 * l] + a[2 * l + 1];
    return r;
}
ALWAYS_INLINE i32vec i32_set1(int32_t a) { return (i32vec){0} + a; }
#ifdef KERNELS_VNNI
/* vpdpbusd: int32 lane l = acc[l] + the sum of u8(u[4l+t]) s8(s[4l+t]), t < 4 (no saturation) */
EMUL_FN i32vec u8_s8_dot4(i32vec acc, qvec u, qvec s)
{
    for (int l = 0; l < VL; l++) {
        int32_t t = acc[l];
        for (int b = 0; b < 4; b++) t += (int32_t)(uint8_t)u[4 * l + b] * s[4 * l + b];
        acc[l] = t;
    }
    return acc;
}
#endif
EMUL_FN vec i32_to_float(i32vec a)
{
    vec r;
    for (int l = 0; l < VL; l++) r[l] = (float)a[l];
    return r;
}
#endif

/* The sign trick: |w| as unsigned bytes times x with the sign of w (x in [-127, 127]: no overflow;
 * a pair of products is at most 2 * 128 * 127 = 32512, so vpmaddubsw does not saturate). With VNNI the
 * tables take q8_0 by panels (kernels_body.h), and this is unused. */
ALWAYS_INLINE vec q_dot(qvec x, qvec w)
{
    qvec uw = i8_abs(w), sx = i8_negate_where(x, i8_sign_bits(w));
#ifdef KERNELS_VNNI
    return i32_to_float(u8_s8_dot4(i32_set1(0), uw, sx));
#else
    return i32_to_float(i16_pairs(u8_s8_madd(uw, sx)));
#endif
}

/* Lanes 0-7 are the step's first block (b of the group), 8-15 its second: vpermps from the group's
 * vector of scales. */
#ifndef KERNELS_EMUL
ALWAYS_INLINE vec q_scale_at(const float *group, int b)
{
    __m512i idx = _mm512_add_epi32(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), _mm512_set1_epi32(b));
    return _mm512_permutexvar_ps(idx, _mm512_loadu_ps(group));
}
#else
EMUL_FN vec q_scale_at(const float *group, int b)
{
    vec v;
    for (int l = 0; l < VL; l++) v[l] = group[b + (l >= VL / 2)];
    return v;
}
#endif

/* ---- q8_0 by panels (VNNI): kernels_body.h's KERNELS_Q8_PANELS ---- */

#ifdef KERNELS_VNNI
#define KERNELS_Q8_PANELS /* q8_0 by panels of W against broadcast X */
#ifndef KERNELS_EMUL
/* the four bytes at p in every 32-bit lane (vpbroadcastd) */
ALWAYS_INLINE qvec qp_bcast(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}
ALWAYS_INLINE void q_store(int8_t *p, qvec v) { _mm512_storeu_si512(p, v); }
ALWAYS_INLINE qvec q_flip_sign(qvec v) { return _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80)); }
/* r[0..16) as a 16 x 16 matrix of 32-bit elements, transposed: afterwards r[g] lane l holds what
 * r[l] lane g held. Pairs of rows interleaved by 32 then 64 bits (vpunpck*), which leaves in each
 * 128-bit lane four rows of one column, then the 128-bit lanes transposed (vshufi32x4 twice). */
ALWAYS_INLINE void qp_transpose(qvec r[16])
{
    __m512i t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* u[4i + c], 128-bit lane L: rows 4i..4i+3 of column 4L + c */
        u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44), v1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xee);
        __m512i v2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44), v3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xee);
        r[c] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        r[4 + c] = _mm512_shuffle_i32x4(v0, v2, 0xdd);
        r[8 + c] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(v1, v3, 0xdd);
    }
}
#else
EMUL_FN qvec qp_bcast(const uint8_t *p)
{
    qvec v;
    for (int l = 0; l < QSTEP; l++) v[l] = (int8_t)p[l % 4];
    return v;
}
ALWAYS_INLINE void q_store(int8_t *p, qvec v) { memcpy(p, &v, sizeof v); }
ALWAYS_INLINE qvec q_flip_sign(qvec v) { return v ^ (int8_t)0x80; }
EMUL_FN void qp_transpose(qvec r[16])
{
    int32_t a[16][16], b[16][16];
    for (int l = 0; l < 16; l++) memcpy(a[l], &r[l], sizeof a[l]);
    for (int l = 0; l < 16; l++)
        for (int g = 0; g < 16; g++) b[g][l] = a[l][g];
    for (int g = 0; g < 16; g++) memcpy(&r[g], b[g], sizeof b[g]);
}
#endif
ALWAYS_INLINE i32vec qp_dot(i32vec acc, qvec u, qvec s)
{
    return u8_s8_dot4(acc, u, s);
}
#endif

/* ---- bf16 dot products (AVX512_BF16) ---- */

#ifdef KERNELS_BF16
#ifndef KERNELS_EMUL
ALWAYS_INLINE bvec b_load(const uint16_t *p)
{
    return _mm512_loadu_si512(p);
}
ALWAYS_INLINE bvec b_load_tail(const uint16_t *p, int left)
{
    return _mm512_maskz_loadu_epi16(left >= 2 * VL ? ~(__mmask32)0 : ((__mmask32)1 << left) - 1, p);
}
ALWAYS_INLINE vec v_dot_bf16(vec acc, bvec a, bvec b) { return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b); }
ALWAYS_INLINE void v_store_bf16(uint16_t *p, vec v)
{
    _mm256_storeu_si256((__m256i *)p, (__m256i)_mm512_cvtneps_pbh(v));
}
#else
EMUL_FN bvec b_load_tail(const uint16_t *p, int left)
{
    bvec v = {0};
    memcpy(&v, p, (size_t)(left < 2 * VL ? left : 2 * VL) * sizeof *p);
    return v;
}
ALWAYS_INLINE bvec b_load(const uint16_t *p) { return b_load_tail(p, 2 * VL); }
/* denormals in, denormals out: treated as / flushed to signed zero */
static inline float daz(float f) { return fpclassify(f) == FP_SUBNORMAL ? copysignf(0.0f, f) : f; }
static inline float bf16_value(uint16_t h) { return daz(sasp_bf16_to_f32(h)); }
/* vdpbf16ps: per float lane, two FMAs (exact product, one rounding to nearest even each), the odd
 * pair first, denormals treated as zero and flushed */
EMUL_FN vec v_dot_bf16(vec acc, bvec a, bvec b)
{
    for (int l = 0; l < VL; l++) {
        float s = daz(acc[l]);
        s = daz(fmaf(bf16_value(a[2 * l + 1]), bf16_value(b[2 * l + 1]), s));
        acc[l] = daz(fmaf(bf16_value(a[2 * l]), bf16_value(b[2 * l]), s));
    }
    return acc;
}
/* vcvtneps2bf16: zero and denormals to signed zero, inf as is, NaN quieted, else to nearest even */
EMUL_FN void v_store_bf16(uint16_t *p, vec v)
{
    for (int l = 0; l < VL; l++) {
        uint32_t u;
        memcpy(&u, &v[l], sizeof u);
        if ((u & 0x7f800000u) == 0) p[l] = (uint16_t)((u >> 16) & 0x8000);
        else if ((u & 0x7fffffffu) == 0x7f800000u) p[l] = (uint16_t)(u >> 16);
        else if ((u & 0x7fffffffu) > 0x7f800000u) p[l] = (uint16_t)((u >> 16) | 0x40);
        else p[l] = (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
    }
}
#endif
#endif

#include "kernels_body.h"
