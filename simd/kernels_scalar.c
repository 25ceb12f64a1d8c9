/* kernels_scalar.c: the reference kernels, plain C with no vector code.
 *
 * Every other instruction set is tested against these functions, so they favour being obviously
 * correct over being fast: one loop per formula. Dot products accumulate in float in the natural
 * order; the O(n) reductions of softmax and the norms accumulate in double, so that the reference
 * stays accurate for long rows (a float sum of 4096 terms in order can be off by 1e-4 relative). */
#include <math.h>

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

static void attn_scores_scalar(float *scores, const float *q, const float *keys, int stride, int n,
                               int dh, float scale)
{
    for (int j = 0; j < n; j++) {
        const float *kj = keys + (size_t)j * stride;
        float s = 0.0f;
        for (int c = 0; c < dh; c++) s += q[c] * kj[c];
        scores[j] = scale * s;
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

const sasp_kernels sasp_kernels_scalar = {
    .name = "scalar",
    .matmul = matmul_scalar,
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
