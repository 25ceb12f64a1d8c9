/* kernels_scalar.c: the reference kernels, plain C with no vector code.
 *
 * Every other instruction set is tested against these functions, so they favour being obviously
 * correct over being fast: one loop per formula. Dot products accumulate in float in the natural
 * order; the O(n) reductions of softmax and the norms accumulate in double, so that the reference
 * stays accurate for long rows (a float sum of 4096 terms in order can be off by 1e-4 relative).
 * Also here: the typed-weight matmul's semantics (sasp_matmul_w_reference, kernels.h says what it
 * computes), the binary16 / bfloat16 conversions and the q8_0 quantizer of weights. */
#include <math.h>
#include <string.h>

#include "kernels.h"

static void matmul_scalar(float *y, int ldy, const float *x, int ldx, const float *w,
                          const float *bias, int n, int m, int k)
{
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * ldx;
        float *yi = y + (size_t)i * ldy;
        for (int j = 0; j < m; j++) {
            const float *wj = w + (size_t)j * k;
            float s = 0.0f;
            for (int p = 0; p < k; p++) s += xi[p] * wj[p];
            yi[j] = bias ? s + bias[j] : s;
        }
    }
}

/* ---- number formats ---- */

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float sasp_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (e == 0) { /* zero or subnormal: mant * 2^-24 */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    if (e == 31) return float_of(sign | 0x7f800000u | mant << 13); /* inf, NaN */
    return float_of(sign | (e + 112) << 23 | mant << 13);
}

uint16_t sasp_f32_to_f16(float f)
{
    uint32_t u = bits_of(f), sign = (u >> 16) & 0x8000;
    u &= 0x7fffffff;
    if (u > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((u >> 13) & 0x3ff)); /* NaN, quiet */
    if (u >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);                      /* >= 65520: inf */
    if (u < 0x38800000u)                                                         /* below 2^-14: a multiple of 2^-24, rounded (1024 is the smallest normal) */
        return (uint16_t)(sign | (uint32_t)rintf(float_of(u) * 0x1p24f));
    u -= 112u << 23; /* rebias the exponent, then round the 13 dropped bits to nearest even */
    return (uint16_t)(sign | (u + 0xfff + ((u >> 13) & 1)) >> 13);
}

float sasp_bf16_to_f32(uint16_t b) { return float_of((uint32_t)b << 16); }

uint16_t sasp_f32_to_bf16(float f)
{
    uint32_t u = bits_of(f);
    if ((u & 0x7fffffff) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN, quiet */
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

void sasp_quantize_q8_0(int8_t *q, uint16_t *scales, const float *w, int m, int k)
{
    int nb = sasp_q8_0_blocks(k);
    for (int j = 0; j < m; j++)
        for (int b = 0; b < nb; b++) {
            const float *wb = w + (size_t)j * k + b * SASP_Q8_0_BLOCK;
            int8_t *qb = q + (size_t)j * k + b * SASP_Q8_0_BLOCK;
            int len = k - b * SASP_Q8_0_BLOCK < SASP_Q8_0_BLOCK ? k - b * SASP_Q8_0_BLOCK : SASP_Q8_0_BLOCK;
            float amax = 0.0f;
            for (int p = 0; p < len; p++) amax = fabsf(wb[p]) > amax ? fabsf(wb[p]) : amax;
            uint16_t h = sasp_f32_to_f16(amax / 127.0f);
            float d = sasp_f16_to_f32(h);
            scales[(size_t)j * nb + b] = h;
            for (int p = 0; p < len; p++) {
                float v = d > 0.0f ? rintf(wb[p] / d) : 0.0f;
                qb[p] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f
                                                                   : v);
            }
        }
}

void sasp_q8_0_pack_panels(const sasp_weights *w, uint8_t *panels, uint16_t *panel_scales)
{
    int nb = sasp_q8_0_blocks(w->k);
    size_t np = sasp_q8_0_panel_count(w->m);
    const int8_t *q = w->data;
    for (size_t P = 0; P < np; P++)
        for (int b = 0; b < nb; b++) {
            uint8_t *dst = panels + (P * nb + b) * 512;
            uint16_t *sc = panel_scales + (P * nb + b) * 16;
            for (int l = 0; l < SASP_Q8_0_PANEL; l++) {
                size_t row = P * SASP_Q8_0_PANEL + l;
                sc[l] = row < (size_t)w->m ? w->scales[row * nb + b] : 0;
                for (int c = 0; c < SASP_Q8_0_BLOCK; c++) { /* column 32b + c: group c / 4, byte c % 4 */
                    int p = b * SASP_Q8_0_BLOCK + c;
                    int8_t v = row < (size_t)w->m && p < w->k ? q[row * w->k + p] : 0;
                    dst[64 * (c / 4) + 4 * l + c % 4] = (uint8_t)(v + 128);
                }
            }
        }
}

/* ---- typed weights ---- */

/* W[j][p] as a float (kernels.h: the bf16's value, or the q8_0 product rounded to float). */
static float weight_at(const sasp_weights *w, int j, int p)
{
    size_t at = (size_t)j * w->k + p;
    switch (w->type) {
    case SASP_WT_F32: return ((const float *)w->data)[at];
    case SASP_WT_BF16: return sasp_bf16_to_f32(((const uint16_t *)w->data)[at]);
    case SASP_WT_Q8_0:
        return (float)((const int8_t *)w->data)[at] *
               sasp_f16_to_f32(w->scales[(size_t)j * sasp_q8_0_blocks(w->k) + p / SASP_Q8_0_BLOCK]);
    }
    return 0.0f;
}

void sasp_weights_row_f32(const sasp_weights *w, int j, float *out)
{
    for (int p = 0; p < w->k; p++) out[p] = weight_at(w, j, p);
}

/* One block of X, len <= 32 values: dx = amax / 127, qx = rint(x * (127 / amax)). */
static float quantize_x_block_scalar(int8_t *q, const float *x, int len)
{
    float amax = 0.0f;
    for (int p = 0; p < len; p++) amax = fabsf(x[p]) > amax ? fabsf(x[p]) : amax;
    float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int p = 0; p < len; p++) q[p] = (int8_t)rintf(x[p] * id);
    return amax / 127.0f;
}

/* y = sum_b (float)(qx . qw over block b) * (dx_b * dw_b) for one row of X and one of W; each block
 * of X is quantized where it is used (the same values for every j: the vector kernels quantize once). */
static float dot_q8_0(const float *x, const sasp_weights *w, int j)
{
    int k = w->k, nb = sasp_q8_0_blocks(k);
    const int8_t *qw = (const int8_t *)w->data + (size_t)j * k;
    float s = 0.0f;
    for (int b = 0; b < nb; b++) {
        int p0 = b * SASP_Q8_0_BLOCK, len = k - p0 < SASP_Q8_0_BLOCK ? k - p0 : SASP_Q8_0_BLOCK;
        int8_t qx[SASP_Q8_0_BLOCK];
        float dx = quantize_x_block_scalar(qx, x + p0, len);
        int32_t isum = 0;
        for (int p = 0; p < len; p++) isum += qx[p] * qw[p0 + p];
        s += (float)isum * (dx * sasp_f16_to_f32(w->scales[(size_t)j * nb + b]));
    }
    return s;
}

void sasp_matmul_w_reference(float *y, int ldy, const float *x, int ldx, const sasp_weights *w,
                             const float *bias, int n, unsigned semantics)
{
    int q8 = w->type == SASP_WT_Q8_0;
    int bf16_act = w->type == SASP_WT_BF16 && (semantics & SASP_SEM_BF16_ACT);
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * ldx;
        float *yi = y + (size_t)i * ldy;
        for (int j = 0; j < w->m; j++) {
            float s = 0.0f;
            if (q8)
                s = dot_q8_0(xi, w, j);
            else if (bf16_act)
                for (int p = 0; p < w->k; p++) s += sasp_bf16_to_f32(sasp_f32_to_bf16(xi[p])) * weight_at(w, j, p);
            else
                for (int p = 0; p < w->k; p++) s += xi[p] * weight_at(w, j, p);
            yi[j] = bias ? s + bias[j] : s;
        }
    }
}

static void matmul_w_scalar(float *y, int ldy, const float *x, int ldx, const sasp_weights *w,
                            const float *bias, int n)
{
    sasp_matmul_w_reference(y, ldy, x, ldx, w, bias, n, 0);
}

/* ---- attention ---- */

static void attn_scores_scalar(float *scores, const float *q, const float *keys, int stride, int n,
                               int dh, float factor)
{
    for (int j = 0; j < n; j++) {
        const float *kj = keys + (size_t)j * stride;
        float s = 0.0f;
        for (int c = 0; c < dh; c++) s += q[c] * kj[c];
        scores[j] = factor * s;
    }
}

static void attn_accum_scalar(float *out, const float *p, const float *vals, int stride, int n, int dh)
{
    for (int j = 0; j < n; j++) {
        const float *vj = vals + (size_t)j * stride;
        for (int c = 0; c < dh; c++) out[c] += p[j] * vj[c];
    }
}

static void softmax_scalar(float *x, int n)
{
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

static void rmsnorm_scalar(float *y, const float *x, const float *g, int n, float eps)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) y[i] = g[i] * (x[i] * r);
}

static void layernorm_scalar(float *y, const float *x, const float *g, const float *b, int n, float eps)
{
    double mean = 0.0;
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= n;
    double var = 0.0;
    for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= n;
    float r = (float)(1.0 / sqrt(var + eps)), fmean = (float)mean;
    for (int i = 0; i < n; i++) {
        float v = g[i] * ((x[i] - fmean) * r);
        y[i] = b ? v + b[i] : v;
    }
}

static void rope_scalar(float *x, const float *cos, const float *sin, int half)
{
    for (int k = 0; k < half; k++) {
        float a = x[k], b = x[k + half];
        x[k] = a * cos[k] - b * sin[k];
        x[k + half] = a * sin[k] + b * cos[k];
    }
}

static void relu_scalar(float *x, int n)
{
    for (int i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
static void gelu_scalar(float *x, int n)
{
    const float c = 0.7978845608028654f;
    for (int i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(c * (v + 0.044715f * v * v * v)));
    }
}

static void silu_scalar(float *x, int n)
{
    for (int i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}

static void axpy_scalar(float *y, float a, const float *x, int n)
{
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void scale_scalar(float *y, float a, int n)
{
    for (int i = 0; i < n; i++) y[i] *= a;
}

/* The reference prepares nothing: its products read X itself (kernels.h, sasp_xprep). */
static void xprep_init_scalar(sasp_xprep *p, void *buf, sasp_wtype type, const float *x, int ldx, int n, int k)
{
    (void)buf;
    *p = (sasp_xprep){.type = type, .n = n, .k = k, .x = x, .ldx = ldx};
}

static void xprep_rows_scalar(const sasp_xprep *p, int r0, int r1) { (void)p, (void)r0, (void)r1; }

static void matmul_xp_scalar(float *y, int ldy, const sasp_xprep *p, const sasp_weights *w, const float *bias)
{
    matmul_w_scalar(y, ldy, p->x, p->ldx, w, bias, p->n);
}

const sasp_kernels sasp_kernels_scalar = {
    .name = "scalar",
    .id = "scalar",
    .fast_weights = SASP_WT_F32,
    .matmul = matmul_scalar,
    .matmul_w = matmul_w_scalar,
    .xprep_init = xprep_init_scalar,
    .xprep_rows = xprep_rows_scalar,
    .matmul_xp = matmul_xp_scalar,
    .attn_scores = attn_scores_scalar,
    .attn_accum = attn_accum_scalar,
    .softmax = softmax_scalar,
    .rmsnorm = rmsnorm_scalar,
    .layernorm = layernorm_scalar,
    .rope = rope_scalar,
    .relu = relu_scalar,
    .gelu = gelu_scalar,
    .silu = silu_scalar,
    .axpy = axpy_scalar,
    .scale = scale_scalar,
};
