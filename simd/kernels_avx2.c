/* kernels_avx2.c: the AVX2 + FMA primitives and block sizes of the kernels (8 floats per register, 16
 * registers); the kernels themselves are in kernels_body.h, included at the end, which also says what
 * each primitive must do. Tails are masked loads and stores (vmaskmov) with a mask of the first r
 * lanes, read from a table. */
#include <stdint.h>

#include <immintrin.h>
#include <sleef.h>

#include "kernels.h"

#define KERNELS_TABLE sasp_kernels_avx2
#define KERNELS_NAME "avx2"

#define VL 8              /* floats per vector */
#define PANEL 16          /* rows of W per packed panel: two vectors of Y columns */
#define MRX 6             /* rows of X per microkernel: 12 accumulators */
#define KC 256            /* columns of k per packed panel: 16 KB of stack */
#define GEBP_MIN_ROWS 24  /* from this many rows of X on, packing W pays for itself */
#define ACCUM_VECS 4      /* attn_accum: 4 vectors of out (dh = 32) per pass */
/* dot-product blocks B(NR rows of X, MR rows of W), largest first: NR*MR accumulators in registers */
#define DOT_BLOCKS(B) B(4, 3) B(2, 4) B(1, 8)

#define ALWAYS_INLINE static inline __attribute__((always_inline))

typedef __m256 vec;
typedef __m256i vtail;

/* The mask of the first r lanes (0 <= r <= VL) is the VL entries from mask_table + VL - r. */
static const int32_t mask_table[2 * VL] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
ALWAYS_INLINE vtail v_lanes(int left)
{
    int r = left >= VL ? VL : left > 0 ? left : 0;
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

/* Horizontal sums: one vector, or four vectors into the four lanes of an SSE register. */
ALWAYS_INLINE __m128 half_sum(vec v)
{
    return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
}
ALWAYS_INLINE float v_hsum(vec v)
{
    __m128 h = half_sum(v);
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
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
    __asm__("" : "+x"(v));
    return v;
}

#include "kernels_body.h"
