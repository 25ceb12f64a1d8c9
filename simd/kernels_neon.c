/* kernels_neon.c: the ARM64 Advanced SIMD (NEON) primitives and block sizes of the kernels (4 floats
 * per register, 32 registers); the kernels themselves are in kernels_body.h, included at the end, which
 * also says what each primitive must do. NEON has no masked loads, so a tail is its count of live lanes
 * and goes through a small zero-padded buffer. */
#include <arm_neon.h>
#include <sleef.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#define KERNELS_TABLE sasp_kernels_neon
#define KERNELS_NAME "neon"

#define VL 4              /* floats per vector */
#define PANEL 16          /* rows of W per packed panel: four vectors of Y columns */
#define MRX 6             /* rows of X per microkernel: 24 accumulators */
#define KC 256            /* columns of k per packed panel: 16 KB of stack */
#define GEBP_MIN_ROWS 24  /* from this many rows of X on, packing W pays for itself */
#define ACCUM_VECS 8      /* attn_accum: 8 vectors of out (dh = 32) per pass */
/* dot-product blocks B(NR rows of X, MR rows of W), largest first: NR*MR accumulators in registers */
#define DOT_BLOCKS(B) B(8, 3) B(4, 6) B(3, 8) B(2, 8) B(1, 8)

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

/* Horizontal sums: one vector, or four vectors into the four lanes of one (pairwise adds). */
ALWAYS_INLINE float v_hsum(vec v) { return vaddvq_f32(v); }
ALWAYS_INLINE float v_hmax(vec v) { return vmaxvq_f32(v); }
ALWAYS_INLINE void v_hsum4(float *out, vec a, vec b, vec c, vec d)
{
    vst1q_f32(out, vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d)));
}

ALWAYS_INLINE vec v_exp(vec v) { return Sleef_expf4_u10advsimd(v); }
ALWAYS_INLINE vec v_tanh(vec v) { return Sleef_tanhf4_u10advsimd(v); }

ALWAYS_INLINE void v_prefetch(const void *p) { __builtin_prefetch(p); }
ALWAYS_INLINE vec v_in_register(vec v) { return v; } /* loads are never FMA operands here */

#include "kernels_body.h"
