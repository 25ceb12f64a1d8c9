/* kernels_neon.c: the ARM64 Advanced SIMD (NEON) primitives and block sizes of the kernels (4 floats
 * per register, 32 registers); the kernels themselves are in kernels_body.h, included at the end, which
 * also says what each primitive must do. NEON has no masked loads, so a tail is its count of live lanes
 * and goes through a small zero-padded buffer.
 *
 * One file, three tables (Makefile.am builds it once for each):
 *   sasp_kernels_neon          "neon"          ARMv8-A: q8_0 by vmull_s8 + vpadal (int16 products
 *                                              summed in pairs into int32)
 *   sasp_kernels_neon_dotprod  "neon-dotprod"  + FEAT_DotProd (KERNELS_DOTPROD, -march=armv8.2-a+dotprod):
 *                                              q8_0 by sdot (4 products into each int32 lane)
 *   sasp_kernels_neon_bf16     "neon-bf16"     + FEAT_BF16 (KERNELS_BF16 as well): bf16 decode by
 *                                              BFMLALB / BFMLALT on X rounded to bf16 (BFCVTN)
 * q8_0 is one block of 32 per step, two registers of 16 bytes. */
#include <arm_neon.h>
#include <sleef.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#if defined(KERNELS_BF16)
#define KERNELS_TABLE sasp_kernels_neon_bf16
#define KERNELS_ID "neon-bf16"
#define KERNELS_BF16_DOT /* the body's bf16 x bf16 loop */
#elif defined(KERNELS_DOTPROD)
#define KERNELS_TABLE sasp_kernels_neon_dotprod
#define KERNELS_ID "neon-dotprod"
#else
#define KERNELS_TABLE sasp_kernels_neon
#define KERNELS_ID "neon"
#endif
#define KERNELS_NAME "neon"

#define VL 4         /* floats per vector */
#define ACCUM_VECS 8 /* attn_accum: 8 vectors of out (dh = 32) per pass */
/* dot-product blocks B(NR rows of X, MR rows of W), largest first: NR*MR accumulators in registers */
#define DOT_BLOCKS(B) B(8, 3) B(4, 6) B(3, 8) B(2, 8) B(1, 8)
/* q8_0 holds two registers of W and a vector of scales per row of the block */
#define Q8_DOT_BLOCKS(B) B(4, 3) B(2, 4) B(1, 6)
/* bf16 holds the even and the odd half of each W vector */
#define BF16_DOT_BLOCKS(B) B(8, 2) B(4, 4) B(2, 6) B(1, 8)

#define ALWAYS_INLINE static inline __attribute__((always_inline))

typedef float32x4_t vec;
typedef int vtail; /* live lanes: <= 0 none, >= VL all */

ALWAYS_INLINE vtail v_lanes(int left) { return left; }

ALWAYS_INLINE vec v_load(const float *p) { return vld1q_f32(p); }
ALWAYS_INLINE void v_store(float *p, vec v) { vst1q_f32(p, v); }
ALWAYS_INLINE vec v_load_tail(const float *p, vtail r)
{
    if (r >= VL) return vld1q_f32(p);
    float t[VL] = {0};
    if (r > 0) memcpy(t, p, (size_t)r * sizeof(float));
    return vld1q_f32(t);
}
ALWAYS_INLINE void v_store_tail(float *p, vtail r, vec v)
{
    if (r >= VL) {
        vst1q_f32(p, v);
        return;
    }
    float t[VL];
    vst1q_f32(t, v);
    if (r > 0) memcpy(p, t, (size_t)r * sizeof(float));
}
ALWAYS_INLINE vec v_keep(vtail r, vec v)
{
    static const int32_t lane[VL] = {0, 1, 2, 3};
    uint32x4_t live = vcltq_s32(vld1q_s32(lane), vdupq_n_s32(r));
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(v), live));
}

ALWAYS_INLINE vec v_zero(void) { return vdupq_n_f32(0.0f); }
ALWAYS_INLINE vec v_set1(float a) { return vdupq_n_f32(a); }
ALWAYS_INLINE vec v_broadcast(const float *p) { return vld1q_dup_f32(p); }

ALWAYS_INLINE vec v_add(vec a, vec b) { return vaddq_f32(a, b); }
ALWAYS_INLINE vec v_sub(vec a, vec b) { return vsubq_f32(a, b); }
ALWAYS_INLINE vec v_mul(vec a, vec b) { return vmulq_f32(a, b); }
ALWAYS_INLINE vec v_div(vec a, vec b) { return vdivq_f32(a, b); }
ALWAYS_INLINE vec v_max(vec a, vec b) { return vmaxq_f32(a, b); }
ALWAYS_INLINE vec v_fma(vec a, vec b, vec c) { return vfmaq_f32(c, a, b); }
ALWAYS_INLINE vec v_fnma(vec a, vec b, vec c) { return vfmsq_f32(c, a, b); }
ALWAYS_INLINE vec v_abs(vec a) { return vabsq_f32(a); }

/* Horizontal sums, one vector or four into the four lanes of one, by one tree: (v0 + v1) + (v2 + v3),
 * pairwise adds (FADDP). The two must agree bit for bit (kernels_body.h). */
ALWAYS_INLINE float v_hsum(vec v)
{
    float32x4_t h = vpaddq_f32(v, v);
    return vgetq_lane_f32(vpaddq_f32(h, h), 0);
}
ALWAYS_INLINE float v_hmax(vec v) { return vmaxvq_f32(v); }
ALWAYS_INLINE void v_hsum4(float *out, vec a, vec b, vec c, vec d)
{
    vst1q_f32(out, vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d)));
}

ALWAYS_INLINE vec v_exp(vec v) { return Sleef_expf4_u10advsimd(v); }
ALWAYS_INLINE vec v_tanh(vec v) { return Sleef_tanhf4_u10advsimd(v); }

ALWAYS_INLINE void v_prefetch(const void *p) { __builtin_prefetch(p); }
ALWAYS_INLINE vec v_in_register(vec v) { return v; } /* loads are never FMA operands here */

/* ---- weight types ---- */

/* bf16 is the high half of a float32: in a word of two, the even element is the low half (<< 16 makes
 * it a float), the odd one the high half (the low half masked off). */
typedef uint16x8_t hvec;
ALWAYS_INLINE hvec h_load(const uint16_t *p) { return vld1q_u16(p); }
ALWAYS_INLINE hvec h_load_tail(const uint16_t *p, int left)
{
    uint16_t t[2 * VL] = {0};
    if (left > 0) memcpy(t, p, (size_t)(left < 2 * VL ? left : 2 * VL) * sizeof *p);
    return h_load(t);
}
ALWAYS_INLINE void h_split(hvec h, vec *even, vec *odd)
{
    uint32x4_t u = vreinterpretq_u32_u16(h);
    *even = vreinterpretq_f32_u32(vshlq_n_u32(u, 16));
    *odd = vreinterpretq_f32_u32(vandq_u32(u, vdupq_n_u32(0xffff0000u)));
}
ALWAYS_INLINE float f16_to_float(uint16_t h)
{
    float16x4_t v = vreinterpret_f16_u16(vdup_n_u16(h));
    return vgetq_lane_f32(vcvt_f32_f16(v), 0);
}
ALWAYS_INLINE vec v_load_f16(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
ALWAYS_INLINE vec v_load_f16_tail(const uint16_t *p, int left)
{
    uint16_t t[VL] = {0};
    if (left > 0) memcpy(t, p, (size_t)(left < VL ? left : VL) * sizeof *p);
    return v_load_f16(t);
}

/* VL int8: fcvtns (nearest even), then two saturating narrows. */
ALWAYS_INLINE void v_store_i8(int8_t *p, vec v)
{
    int16x4_t h = vqmovn_s32(vcvtnq_s32_f32(v));
    int8x8_t b = vqmovn_s16(vcombine_s16(h, h));
    int32_t t = vget_lane_s32(vreinterpret_s32_s8(b), 0);
    memcpy(p, &t, sizeof t);
}

#define QSTEP 32 /* one block of q8_0 per step, in two registers */
typedef int8x16x2_t qvec;
ALWAYS_INLINE qvec q_load(const int8_t *p)
{
    qvec q = {{vld1q_s8(p), vld1q_s8(p + 16)}};
    return q;
}
ALWAYS_INLINE qvec q_load_tail(const int8_t *p, int left)
{
    int8_t t[QSTEP] = {0};
    memcpy(t, p, (size_t)(left < QSTEP ? left : QSTEP));
    return q_load(t);
}
#ifdef KERNELS_DOTPROD
/* sdot: each int32 lane += the 4 products of its bytes */
ALWAYS_INLINE vec q_dot(qvec x, qvec w)
{
    int32x4_t s = vdotq_s32(vdupq_n_s32(0), x.val[0], w.val[0]);
    return vcvtq_f32_s32(vdotq_s32(s, x.val[1], w.val[1]));
}
#else
/* smull / smull2: int16 products (|x w| <= 127 * 128 fits), sadalp: pairs of them added into int32 */
ALWAYS_INLINE vec q_dot(qvec x, qvec w)
{
    int32x4_t s = vpaddlq_s16(vmull_s8(vget_low_s8(x.val[0]), vget_low_s8(w.val[0])));
    s = vpadalq_s16(s, vmull_high_s8(x.val[0], w.val[0]));
    s = vpadalq_s16(s, vmull_s8(vget_low_s8(x.val[1]), vget_low_s8(w.val[1])));
    s = vpadalq_s16(s, vmull_high_s8(x.val[1], w.val[1]));
    return vcvtq_f32_s32(s);
}
#endif
ALWAYS_INLINE vec q_scale_at(const float *group, int b)
{
    return vld1q_dup_f32(group + b);
}

#ifdef KERNELS_BF16
/* ---- bf16 dot products (FEAT_BF16) ---- */

typedef bfloat16x8_t bvec;
ALWAYS_INLINE bvec b_load(const uint16_t *p) { return vreinterpretq_bf16_u16(vld1q_u16(p)); }
ALWAYS_INLINE bvec b_load_tail(const uint16_t *p, int left)
{
    uint16_t t[2 * VL] = {0};
    memcpy(t, p, (size_t)(left < 2 * VL ? left : 2 * VL) * sizeof *p);
    return b_load(t);
}
/* BFMLALB / BFMLALT: fused multiply-adds of the even and of the odd bf16 pairs (no intermediate
 * rounding, as an FMA; BFDOT would round its sum of two products differently). */
ALWAYS_INLINE vec v_dot_bf16(vec acc, bvec a, bvec b) { return vbfmlaltq_f32(vbfmlalbq_f32(acc, a, b), a, b); }
/* BFCVTN: to nearest even (FPCR's default rounding) */
ALWAYS_INLINE void v_store_bf16(uint16_t *p, vec v) { vst1_u16(p, vreinterpret_u16_bf16(vcvt_bf16_f32(v))); }
#endif

#include "kernels_body.h"
