/* kernels_avx512.c: the AVX-512F primitives and block sizes of the kernels (16 floats per register, 32
 * registers); the kernels themselves are in kernels_body.h, included at the end, which also says what
 * each primitive must do. Tails are masked loads and stores with a __mmask16 of the first r lanes. */
#include <immintrin.h>
#include <sleef.h>

#include "kernels.h"

#define KERNELS_TABLE sasp_kernels_avx512
#define KERNELS_NAME "avx512"

#define VL 16             /* floats per vector */
#define PANEL 32          /* rows of W per packed panel: two vectors of Y columns */
#define MRX 12            /* rows of X per microkernel: 24 accumulators */
#define KC 256            /* columns of k per packed panel: 32 KB of stack */
#define GEBP_MIN_ROWS 24  /* from this many rows of X on, packing W pays for itself */
#define ACCUM_VECS 4      /* attn_accum: 4 vectors of out (dh = 64) per pass */
/* dot-product blocks B(NR rows of X, MR rows of W), largest first: NR*MR accumulators in registers */
#define DOT_BLOCKS(B) B(8, 3) B(4, 6) B(3, 8) B(2, 8) B(1, 8)

#define ALWAYS_INLINE static inline __attribute__((always_inline))

typedef __m512 vec;
typedef __mmask16 vtail;

ALWAYS_INLINE vtail v_lanes(int left)
{
    return left >= VL ? 0xffff : left > 0 ? (__mmask16)((1u << left) - 1u) : 0;
}

ALWAYS_INLINE vec v_load(const float *p) { return _mm512_loadu_ps(p); }
ALWAYS_INLINE void v_store(float *p, vec v) { _mm512_storeu_ps(p, v); }
ALWAYS_INLINE vec v_load_tail(const float *p, vtail t) { return _mm512_maskz_loadu_ps(t, p); }
ALWAYS_INLINE void v_store_tail(float *p, vtail t, vec v) { _mm512_mask_storeu_ps(p, t, v); }
ALWAYS_INLINE vec v_keep(vtail t, vec v) { return _mm512_maskz_mov_ps(t, v); }

ALWAYS_INLINE vec v_zero(void) { return _mm512_setzero_ps(); }
ALWAYS_INLINE vec v_set1(float a) { return _mm512_set1_ps(a); }
ALWAYS_INLINE vec v_broadcast(const float *p) { return _mm512_set1_ps(*p); }

ALWAYS_INLINE vec v_add(vec a, vec b) { return _mm512_add_ps(a, b); }
ALWAYS_INLINE vec v_sub(vec a, vec b) { return _mm512_sub_ps(a, b); }
ALWAYS_INLINE vec v_mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
ALWAYS_INLINE vec v_div(vec a, vec b) { return _mm512_div_ps(a, b); }
ALWAYS_INLINE vec v_max(vec a, vec b) { return _mm512_max_ps(a, b); }
ALWAYS_INLINE vec v_fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
ALWAYS_INLINE vec v_fnma(vec a, vec b, vec c) { return _mm512_fnmadd_ps(a, b, c); }

/* Horizontal sums: one vector, or four vectors (halves added, then AVX's hadd) into an SSE register. */
ALWAYS_INLINE float v_hsum(vec v) { return _mm512_reduce_add_ps(v); }
ALWAYS_INLINE float v_hmax(vec v) { return _mm512_reduce_max_ps(v); }
ALWAYS_INLINE __m256 half_sum(vec v)
{
    return _mm256_add_ps(_mm512_castps512_ps256(v),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
ALWAYS_INLINE void v_hsum4(float *out, vec a, vec b, vec c, vec d)
{
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(half_sum(a), half_sum(b)),
                              _mm256_hadd_ps(half_sum(c), half_sum(d)));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

ALWAYS_INLINE vec v_exp(vec v) { return Sleef_expf16_u10avx512f(v); }
ALWAYS_INLINE vec v_tanh(vec v) { return Sleef_tanhf16_u10avx512f(v); }

ALWAYS_INLINE void v_prefetch(const void *p) { _mm_prefetch((const char *)p, _MM_HINT_T0); }
ALWAYS_INLINE vec v_in_register(vec v)
{
    __asm__("" : "+v"(v));
    return v;
}

#include "kernels_body.h"
