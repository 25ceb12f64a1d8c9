/* check_kernels.c: every vector kernel against the scalar reference, and the scalar one against float64.
 *
 * For each kernel table this build and CPU can run (sasp_kernels_available: scalar, avx2, avx512 or
 * neon), every kernel is run on fresh random inputs (the seed is printed; SASP_TEST_SEED=N repeats a
 * run) at many sizes, odd and tiny ones included, chosen to hit every tail of every blocking scheme:
 * vector tails of k, row blocks of X (n = 1..9, 16, 33, and 24..36, 61 for the packed prefill path),
 * panel tails of W (m), k-chunk boundaries (k = 256, 257, 300, 513).
 *
 * Every input and output array ends exactly at a PROT_NONE guard page, at two offsets (so pointers are
 * unaligned by one float as well), so a kernel that reads or writes one float past the end crashes and
 * the test fails. Strided calls (ldx > k, ldy > m) check that the gaps in Y are left untouched.
 *
 * Two comparisons per kernel:
 *  - exact: on small-integer inputs every float sum is exact whatever the order of operations, so the
 *    tables must agree with the scalar one bit for bit (matmul, attention, rope, relu, axpy, scale: this
 *    catches any indexing or tail error);
 *  - tolerance: on real-valued inputs (and on integer inputs for the kernels with a division, root or
 *    transcendental) each result is compared with a float64 reference computed here; the vector
 *    matmul and attention against scalar with twice the bound.
 *    Dot products (matmul, attn_scores, attn_accum): |y - ref| <= (8 + 4 sqrt(k)) * 2^-24 *
 *    sum_p |x_p w_p| + |bias| 2^-23, a few times the rounding error a float32 sum of k terms makes in
 *    any order (typical errors are about 2^-24 sum |x w|; the exact test catches what a tolerance may not).
 *    Everything else: |y - ref| <= 2e-5 |ref| + atol (about 170 float ulps; SLEEF's exp and tanh are
 *    within 1 ulp), atol covering what float32 reductions and cancellations lose: about sqrt(n) ulps
 *    for the sums of softmax, rmsnorm and layernorm (and layernorm's x - mean), 1e-7 (1 + |x|) for
 *    gelu's 1 + tanh near -1. A long row in float32 order can be off by 1e-4 relative, so the scalar
 *    reference accumulates those O(n) sums in double. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kernels.h"

static uint64_t seed;
static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}
/* uniform in [-1, 1) */
static float rnd(void) { return (float)((double)(rng_next() >> 11) * (2.0 / 9007199254740992.0) - 1.0); }
/* integer in [-r, r] */
static float rnd_int(int r) { return (float)((int)(rng_next() % (uint64_t)(2 * r + 1)) - r); }

/* ---- arrays that end at a guard page ---- */

typedef struct {
    void *base;
    size_t len;
    float *p;
    size_t n;
} gbuf;

/* n floats whose end is `off` floats before a PROT_NONE page. */
static gbuf galloc(size_t n, int off)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t bytes = (n + off) * sizeof(float);
    size_t data_pages = (bytes + page - 1) / page;
    if (data_pages == 0) data_pages = 1;
    gbuf g;
    g.len = (data_pages + 1) * page;
    g.base = mmap(NULL, g.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_msg(g.base != MAP_FAILED, "mmap failed");
    char *guard = (char *)g.base + data_pages * page;
    ck_assert_int_eq(mprotect(guard, page, PROT_NONE), 0);
    g.p = (float *)guard - off - n;
    g.n = n;
    return g;
}
static void gfree(gbuf *g) { munmap(g->base, g->len); }
static void fill_real(gbuf *g, float lo, float hi)
{
    for (size_t i = 0; i < g->n; i++) g->p[i] = lo + (hi - lo) * 0.5f * (rnd() + 1.0f);
}
static void fill_int(gbuf *g, int r)
{
    for (size_t i = 0; i < g->n; i++) g->p[i] = rnd_int(r);
}
static void copy(gbuf *dst, const gbuf *src) { memcpy(dst->p, src->p, src->n * sizeof(float)); }

/* The vector tables to test against scalar (scalar itself is tested against float64). */
static const sasp_kernels *tables[4];
static int n_tables;

static const int ELEM_SIZES[] = {1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 257, 1000, 4097};
#define N_ELEM (int)(sizeof ELEM_SIZES / sizeof ELEM_SIZES[0])

static int close_enough(double got, double ref, double rtol, double atol)
{
    return fabs(got - ref) <= rtol * fabs(ref) + atol; /* false for NaN */
}

/* ---- matmul ---- */

/* Runs matmul of every table on one shape; exact (integer inputs) or toleranced against float64. */
static void check_matmul_shape(int n, int m, int k, int integer, int strided, int off, int with_bias)
{
    int ldx = strided ? k + 3 : k, ldy = strided ? m + 5 : m;
    gbuf x = galloc((size_t)(n - 1) * ldx + k, off), w = galloc((size_t)m * k, off);
    gbuf b = galloc((size_t)m, off);
    size_t ny = (size_t)(n - 1) * ldy + m;
    gbuf y0 = galloc(ny, off), y = galloc(ny, off);
    if (integer) {
        fill_int(&x, 3), fill_int(&w, 3), fill_int(&b, 5);
    } else {
        fill_real(&x, -1, 1), fill_real(&w, -1, 1), fill_real(&b, -1, 1);
    }
    const float *bias = with_bias ? b.p : NULL;
    const float SENT = -12345.5f;
    for (size_t i = 0; i < ny; i++) y0.p[i] = SENT;
    sasp_kernels_scalar.matmul(y0.p, ldy, x.p, ldx, w.p, bias, n, m, k);

    if (!integer) { /* scalar against float64 */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++) {
                double s = 0, mag = 0;
                for (int p = 0; p < k; p++) {
                    double t = (double)x.p[(size_t)i * ldx + p] * w.p[(size_t)j * k + p];
                    s += t, mag += fabs(t);
                }
                double bj = bias ? bias[j] : 0.0;
                double tol = (8 + 4 * sqrt((double)k)) * ldexp(1, -24) * mag + fabs(bj) * ldexp(1, -23);
                float got = y0.p[(size_t)i * ldy + j];
                ck_assert_msg(close_enough(got, s + bj, 0, tol),
                              "seed %llu: scalar matmul n=%d m=%d k=%d y[%d][%d]=%.9g, float64 %.9g (tol %.3g)",
                              (unsigned long long)seed, n, m, k, i, j, got, s + bj, tol);
            }
    }
    for (int t = 1; t < n_tables; t++) {
        const sasp_kernels *K = tables[t];
        for (size_t i = 0; i < ny; i++) y.p[i] = SENT;
        K->matmul(y.p, ldy, x.p, ldx, w.p, bias, n, m, k);
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < ldy && (size_t)i * ldy + j < ny; j++) {
                size_t at = (size_t)i * ldy + j;
                float got = y.p[at], ref = y0.p[at];
                if (j >= m) {
                    ck_assert_msg(got == SENT, "seed %llu: %s matmul n=%d m=%d k=%d wrote the gap y[%d][%d]",
                                  (unsigned long long)seed, K->name, n, m, k, i, j);
                    continue;
                }
                double mag = 0;
                for (int p = 0; p < k; p++) mag += fabs((double)x.p[(size_t)i * ldx + p] * w.p[(size_t)j * k + p]);
                double tol = integer ? 0 : 2 * (8 + 4 * sqrt((double)k)) * ldexp(1, -24) * mag +
                                               (bias ? fabs(bias[j]) : 0) * ldexp(1, -22);
                ck_assert_msg(close_enough(got, ref, 0, tol),
                              "seed %llu: %s matmul n=%d m=%d k=%d ldx=%d ldy=%d off=%d bias=%d %s: "
                              "y[%d][%d]=%.9g, scalar %.9g (tol %.3g)",
                              (unsigned long long)seed, K->name, n, m, k, ldx, ldy, off, with_bias,
                              integer ? "exact" : "real", i, j, got, ref, tol);
            }
        }
    }
    gfree(&x), gfree(&w), gfree(&b), gfree(&y0), gfree(&y);
}

START_TEST(test_matmul_small_n)
{
    static const int NS[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 33};
    static const int MS[] = {1, 2, 3, 7, 17, 33, 65};
    static const int KS[] = {1, 2, 3, 7, 15, 17, 31, 33, 63, 65, 257};
    int c = 0;
    for (unsigned a = 0; a < sizeof NS / sizeof *NS; a++)
        for (unsigned b = 0; b < sizeof MS / sizeof *MS; b++)
            for (unsigned d = 0; d < sizeof KS / sizeof *KS; d++, c++) {
                int n = NS[a], m = MS[b], k = KS[d];
                check_matmul_shape(n, m, k, 1, c % 3 == 0, c % 2, c % 4 != 1);
                check_matmul_shape(n, m, k, 0, c % 3 == 1, (c + 1) % 2, c % 4 != 2);
            }
}
END_TEST

/* Shapes of the packed (prefill) path: every remainder of the row blocks and the panel width, and
 * k across the KC = 256 chunk boundary. */
START_TEST(test_matmul_large_n)
{
    static const int NS[] = {24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 61};
    static const int MS[] = {1, 17, 31, 32, 33, 65, 100};
    static const int KS[] = {1, 17, 256, 257, 300, 513};
    int c = 0;
    for (unsigned a = 0; a < sizeof NS / sizeof *NS; a++)
        for (unsigned b = 0; b < sizeof MS / sizeof *MS; b++)
            for (unsigned d = 0; d < sizeof KS / sizeof *KS; d++, c++) {
                int n = NS[a], m = MS[b], k = KS[d];
                if ((c % 3) == 0) check_matmul_shape(n, m, k, 1, c % 2, c % 4 == 0, c % 5 != 0);
                if ((c % 3) == 1) check_matmul_shape(n, m, k, 0, c % 2, c % 4 == 1, c % 5 != 1);
            }
    /* one shape of the real size, both ways */
    check_matmul_shape(130, 96, 256, 1, 0, 1, 1);
    check_matmul_shape(130, 96, 256, 0, 1, 0, 1);
}
END_TEST

/* ---- attention ---- */

static void check_attn_shape(int n, int dh, int integer, int off)
{
    int stride = dh + (n % 3) * 7; /* keys of one head inside rows of all heads */
    gbuf q = galloc(dh, off), keys = galloc((size_t)(n - 1) * stride + dh, off);
    gbuf s0 = galloc(n, off), s = galloc(n, off);
    gbuf p = galloc(n, off), o0 = galloc(dh, off), o = galloc(dh, off), oinit = galloc(dh, off);
    float scale = integer ? 0.5f : 1.0f / sqrtf((float)dh);
    if (integer) {
        fill_int(&q, 3), fill_int(&keys, 3), fill_int(&p, 3), fill_int(&oinit, 9);
    } else {
        fill_real(&q, -1, 1), fill_real(&keys, -1, 1), fill_real(&p, 0, 1), fill_real(&oinit, -1, 1);
    }
    sasp_kernels_scalar.attn_scores(s0.p, q.p, keys.p, stride, n, dh, scale);
    copy(&o0, &oinit);
    sasp_kernels_scalar.attn_accum(o0.p, p.p, keys.p, stride, n, dh);
    if (!integer) {
        for (int j = 0; j < n; j++) {
            double d = 0, mag = 0;
            for (int c = 0; c < dh; c++) {
                double t = (double)q.p[c] * keys.p[(size_t)j * stride + c];
                d += t, mag += fabs(t);
            }
            double tol = (8 + 4 * sqrt((double)dh)) * ldexp(1, -24) * mag * scale;
            ck_assert_msg(close_enough(s0.p[j], d * scale, 0, tol), "seed %llu: scalar attn_scores n=%d dh=%d [%d]",
                          (unsigned long long)seed, n, dh, j);
        }
        for (int c = 0; c < dh; c++) {
            double a = oinit.p[c], mag = fabs(oinit.p[c]);
            for (int j = 0; j < n; j++) {
                double t = (double)p.p[j] * keys.p[(size_t)j * stride + c];
                a += t, mag += fabs(t);
            }
            double tol = (8 + 4 * sqrt((double)n)) * ldexp(1, -24) * mag;
            ck_assert_msg(close_enough(o0.p[c], a, 0, tol), "seed %llu: scalar attn_accum n=%d dh=%d [%d]",
                          (unsigned long long)seed, n, dh, c);
        }
    }
    for (int t = 1; t < n_tables; t++) {
        const sasp_kernels *K = tables[t];
        K->attn_scores(s.p, q.p, keys.p, stride, n, dh, scale);
        for (int j = 0; j < n; j++) {
            double mag = 0;
            for (int c = 0; c < dh; c++) mag += fabs((double)q.p[c] * keys.p[(size_t)j * stride + c]);
            double tol = integer ? 0 : 2 * (8 + 4 * sqrt((double)dh)) * ldexp(1, -24) * mag * scale;
            ck_assert_msg(close_enough(s.p[j], s0.p[j], 0, tol),
                          "seed %llu: %s attn_scores n=%d dh=%d stride=%d off=%d: [%d] %.9g, scalar %.9g",
                          (unsigned long long)seed, K->name, n, dh, stride, off, j, s.p[j], s0.p[j]);
        }
        copy(&o, &oinit);
        K->attn_accum(o.p, p.p, keys.p, stride, n, dh);
        for (int c = 0; c < dh; c++) {
            double mag = fabs(oinit.p[c]);
            for (int j = 0; j < n; j++) mag += fabs((double)p.p[j] * keys.p[(size_t)j * stride + c]);
            double tol = integer ? 0 : 2 * (8 + 4 * sqrt((double)n)) * ldexp(1, -24) * mag;
            ck_assert_msg(close_enough(o.p[c], o0.p[c], 0, tol),
                          "seed %llu: %s attn_accum n=%d dh=%d stride=%d off=%d: [%d] %.9g, scalar %.9g",
                          (unsigned long long)seed, K->name, n, dh, stride, off, c, o.p[c], o0.p[c]);
        }
    }
    gfree(&q), gfree(&keys), gfree(&s0), gfree(&s), gfree(&p), gfree(&o0), gfree(&o), gfree(&oinit);
}

START_TEST(test_attention)
{
    static const int NS[] = {1, 2, 3, 7, 15, 17, 31, 33, 64, 65, 257};
    static const int DHS[] = {1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 80, 128, 130};
    int c = 0;
    for (unsigned a = 0; a < sizeof NS / sizeof *NS; a++)
        for (unsigned b = 0; b < sizeof DHS / sizeof *DHS; b++, c++) {
            check_attn_shape(NS[a], DHS[b], 1, c % 2);
            check_attn_shape(NS[a], DHS[b], 0, (c + 1) % 2);
        }
}
END_TEST

/* ---- element-wise kernels ---- */

/* Float64 references of the element-wise kernels. */
static void ref_softmax(double *r, const float *x, int n)
{
    double mx = x[0], s = 0;
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++) s += r[i] = exp((double)x[i] - mx);
    for (int i = 0; i < n; i++) r[i] /= s;
}
static double ref_gelu(double v) { return 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))); }
static double ref_silu(double v) { return v / (1 + exp(-v)); }

/* Compares got[0..n) to ref (float32 table output or float64 reference) elementwise. */
static void expect_close(const char *what, const char *isa, int n, int off, const float *got, const double *ref,
                         double rtol, const double *atol)
{
    for (int i = 0; i < n; i++)
        ck_assert_msg(close_enough(got[i], ref[i], rtol, atol[i]),
                      "seed %llu: %s %s n=%d off=%d: [%d] = %.9g, float64 %.9g (rtol %.2g atol %.2g)",
                      (unsigned long long)seed, isa, what, n, off, i, got[i], ref[i], rtol, atol[i]);
}

enum { K_SOFTMAX, K_RMSNORM, K_LAYERNORM, K_LAYERNORM_NOBIAS, K_ROPE, K_RELU, K_GELU, K_SILU, K_AXPY, K_SCALE, K_COUNT };
static const char *const KNAME[K_COUNT] = {"softmax", "rmsnorm", "layernorm", "layernorm(no bias)", "rope",
                                            "relu", "gelu", "silu", "axpy", "scale"};

/* Runs kernel `which` of table K on a copy of the inputs; out gets the result (n floats, 2n for rope). */
static void run_elem(const sasp_kernels *K, int which, gbuf *out, const gbuf *x, const gbuf *g, const gbuf *b,
                     const gbuf *c, const gbuf *s, int n, int in_place)
{
    const float eps = 1e-5f;
    copy(out, x);
    switch (which) {
    case K_SOFTMAX: K->softmax(out->p, n); break;
    case K_RMSNORM: K->rmsnorm(out->p, in_place ? out->p : x->p, g->p, n, eps); break;
    case K_LAYERNORM: K->layernorm(out->p, in_place ? out->p : x->p, g->p, b->p, n, eps); break;
    case K_LAYERNORM_NOBIAS: K->layernorm(out->p, in_place ? out->p : x->p, g->p, NULL, n, eps); break;
    case K_ROPE: K->rope(out->p, c->p, s->p, n); break;
    case K_RELU: K->relu(out->p, n); break;
    case K_GELU: K->gelu(out->p, n); break;
    case K_SILU: K->silu(out->p, n); break;
    case K_AXPY: K->axpy(out->p, 0.75f, g->p, n); break;
    case K_SCALE: K->scale(out->p, -1.25f, n); break;
    }
}

static void check_elem(int which, int n, int off, int integer)
{
    int nx = which == K_ROPE ? 2 * n : n;
    gbuf x = galloc(nx, off), g = galloc(n, off), b = galloc(n, off), c = galloc(n, off), s = galloc(n, off);
    gbuf out0 = galloc(nx, off), out = galloc(nx, off);
    double *ref = malloc(sizeof(double) * nx), *atol = malloc(sizeof(double) * nx);
    /* inputs: integers where the kernel is exact on them, reals of a realistic range otherwise */
    if (integer) {
        fill_int(&x, 4), fill_int(&g, 4), fill_int(&b, 4), fill_int(&c, 2), fill_int(&s, 2);
    } else {
        fill_real(&x, -6, 6), fill_real(&g, 0.5f, 1.5f), fill_real(&b, -1, 1);
        for (int i = 0; i < n; i++) {
            float th = 3 * rnd();
            c.p[i] = cosf(th), s.p[i] = sinf(th);
        }
        if (which == K_LAYERNORM || which == K_LAYERNORM_NOBIAS)
            for (int i = 0; i < n; i++) x.p[i] += 3; /* a mean far from 0 */
    }
    int in_place = (n + off) % 2;
    run_elem(&sasp_kernels_scalar, which, &out0, &x, &g, &b, &c, &s, n, in_place);

    /* float64 reference and tolerance */
    double rtol = 2e-5;
    for (int i = 0; i < nx; i++) atol[i] = 0;
    switch (which) {
    case K_SOFTMAX:
        ref_softmax(ref, x.p, n);
        for (int i = 0; i < n; i++) atol[i] = 1e-9 + 1e-7 * sqrt((double)n) * ref[i];
        break;
    case K_RMSNORM: {
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x.p[i] * x.p[i];
        double r = 1 / sqrt(ss / n + 1e-5);
        /* a float32 sum of squares is off by up to about sqrt(n) ulps */
        for (int i = 0; i < n; i++) ref[i] = g.p[i] * x.p[i] * r, atol[i] = 1e-6 * sqrt((double)n) * fabs(ref[i]);
        break;
    }
    case K_LAYERNORM:
    case K_LAYERNORM_NOBIAS: {
        double mean = 0, var = 0;
        for (int i = 0; i < n; i++) mean += x.p[i];
        mean /= n;
        for (int i = 0; i < n; i++) var += (x.p[i] - mean) * (x.p[i] - mean);
        var /= n;
        double r = 1 / sqrt(var + 1e-5);
        for (int i = 0; i < n; i++) {
            ref[i] = g.p[i] * (x.p[i] - mean) * r + (which == K_LAYERNORM ? b.p[i] : 0);
            /* the float32 mean is off by about sqrt(n) ulps of |mean|, an error scaled by g r; the
             * float32 variance by about sqrt(n) ulps too */
            atol[i] = 1e-6 * (1 + sqrt((double)n)) * ((fabs(mean) + 1) * fabs(g.p[i]) * r + fabs(ref[i]));
        }
        break;
    }
    case K_ROPE:
        for (int k = 0; k < n; k++) {
            double a = x.p[k], bb = x.p[k + n];
            ref[k] = a * c.p[k] - bb * s.p[k];
            ref[k + n] = a * s.p[k] + bb * c.p[k];
            atol[k] = atol[k + n] = 1e-7 * (fabs(a) + fabs(bb));
        }
        break;
    case K_RELU:
        for (int i = 0; i < n; i++) ref[i] = x.p[i] > 0 ? x.p[i] : 0;
        break;
    case K_GELU:
        for (int i = 0; i < n; i++) ref[i] = ref_gelu(x.p[i]), atol[i] = 1e-7 * (1 + fabs(x.p[i]));
        break;
    case K_SILU:
        for (int i = 0; i < n; i++) ref[i] = ref_silu(x.p[i]), atol[i] = 1e-30;
        break;
    case K_AXPY:
        for (int i = 0; i < n; i++) ref[i] = (double)x.p[i] + 0.75 * g.p[i], atol[i] = 1e-7 * fabs(x.p[i]);
        break;
    case K_SCALE:
        for (int i = 0; i < n; i++) ref[i] = -1.25 * x.p[i];
        break;
    }
    /* Exact on integers: kernels whose formula has no division, root or transcendental; there every
     * table must equal scalar bit for bit. Everything else is compared with the float64 reference. */
    int exact = integer && (which == K_ROPE || which == K_RELU || which == K_AXPY || which == K_SCALE);
    if (!exact) expect_close(KNAME[which], "scalar", nx, off, out0.p, ref, rtol, atol);
    for (int t = 1; t < n_tables; t++) {
        run_elem(tables[t], which, &out, &x, &g, &b, &c, &s, n, in_place);
        if (exact) {
            for (int i = 0; i < nx; i++)
                ck_assert_msg(out.p[i] == out0.p[i], "seed %llu: %s %s n=%d off=%d exact: [%d] = %.9g, scalar %.9g",
                              (unsigned long long)seed, tables[t]->name, KNAME[which], n, off, i, out.p[i],
                              out0.p[i]);
        } else {
            expect_close(KNAME[which], tables[t]->name, nx, off, out.p, ref, rtol, atol);
        }
    }
    free(ref), free(atol);
    gfree(&x), gfree(&g), gfree(&b), gfree(&c), gfree(&s), gfree(&out0), gfree(&out);
}

START_TEST(test_elementwise)
{
    int which = _i;
    for (int a = 0; a < N_ELEM; a++)
        for (int off = 0; off < 2; off++) {
            check_elem(which, ELEM_SIZES[a], off, 0);
            check_elem(which, ELEM_SIZES[a], off, 1);
        }
}
END_TEST

/* Softmax of extreme inputs: huge spread (most terms underflow to 0) and all equal. */
START_TEST(test_softmax_extremes)
{
    for (int t = 0; t < n_tables; t++) {
        for (int n = 1; n <= 40; n += 3) {
            float x[40], y[40];
            for (int i = 0; i < n; i++) x[i] = (i % 5 == 2) ? 80.0f : -80.0f + i;
            memcpy(y, x, sizeof x);
            tables[t]->softmax(y, n);
            double sum = 0;
            for (int i = 0; i < n; i++) {
                ck_assert_msg(y[i] >= 0 && y[i] <= 1, "%s softmax n=%d gave %g", tables[t]->name, n, y[i]);
                sum += y[i];
            }
            ck_assert_msg(fabs(sum - 1) < 1e-5, "%s softmax n=%d sums to %.9g", tables[t]->name, n, sum);
            for (int i = 0; i < n; i++) x[i] = 3.0f;
            tables[t]->softmax(x, n);
            for (int i = 0; i < n; i++)
                ck_assert_msg(fabsf(x[i] - 1.0f / n) < 1e-6f, "%s softmax of equal values", tables[t]->name);
        }
    }
}
END_TEST

/* Softmax of rows whose every value is far below 0: the lanes past the end of a vector tail load as
 * 0, and exp(0 - max) overflows to inf there, so a tail that is not left out of the sum turns the
 * whole row into zeros (or NaN). */
START_TEST(test_softmax_negative)
{
    for (int t = 0; t < n_tables; t++) {
        for (int n = 1; n <= 70; n++) {
            float x[70];
            for (int i = 0; i < n; i++) x[i] = -200.0f - (float)(i % 7);
            tables[t]->softmax(x, n);
            double sum = 0;
            for (int i = 0; i < n; i++) {
                ck_assert_msg(x[i] > 0 && x[i] <= 1, "%s softmax n=%d of values near -200 gave [%d] = %g",
                              tables[t]->name, n, i, x[i]);
                sum += x[i];
            }
            ck_assert_msg(fabs(sum - 1) < 1e-5, "%s softmax n=%d of values near -200 sums to %.9g",
                          tables[t]->name, n, sum);
        }
    }
}
END_TEST

/* ---- dispatch ---- */

START_TEST(test_dispatch)
{
    const sasp_kernels *all[4];
    int n = sasp_kernels_available(all, 4);
    ck_assert_int_ge(n, 1);
    ck_assert_str_eq(all[0]->name, "scalar");
    ck_assert_ptr_eq(sasp_kernels_by_name("scalar"), &sasp_kernels_scalar);
    ck_assert_ptr_null(sasp_kernels_by_name("no-such-isa"));
    ck_assert_ptr_null(sasp_kernels_by_name(NULL));
    const sasp_kernels *active = sasp_kernels_active();
    int found = 0;
    for (int i = 0; i < n; i++) {
        ck_assert_ptr_eq(sasp_kernels_by_name(all[i]->name), all[i]);
        found |= all[i] == active;
        /* every entry of every table is filled in */
        const sasp_kernels *k = all[i];
        ck_assert(k->matmul && k->attn_scores && k->attn_accum && k->softmax && k->rmsnorm && k->layernorm &&
                  k->rope && k->relu && k->gelu && k->silu && k->axpy && k->scale);
    }
    ck_assert_msg(found, "the active table is not among the available ones");
    const char *want = getenv("SASP_SIMD");
    if (want && sasp_kernels_by_name(want)) ck_assert_str_eq(active->name, want);
#if defined(__x86_64__)
    ck_assert_ptr_null(sasp_kernels_by_name("neon"));
#elif defined(__aarch64__)
    ck_assert_ptr_nonnull(sasp_kernels_by_name("neon"));
    ck_assert_ptr_null(sasp_kernels_by_name("avx2"));
#endif
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_dispatch);
    tcase_add_test(tc, test_matmul_small_n);
    tcase_add_test(tc, test_matmul_large_n);
    tcase_add_test(tc, test_attention);
    tcase_add_loop_test(tc, test_elementwise, 0, K_COUNT);
    tcase_add_test(tc, test_softmax_extremes);
    tcase_add_test(tc, test_softmax_negative);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *env = getenv("SASP_TEST_SEED");
    seed = env && *env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    if (seed == 0) seed = 1;
    rng_state = seed;
    n_tables = sasp_kernels_available(tables, 4);
    printf("check_kernels: seed %llu (SASP_TEST_SEED=%llu repeats it); tables:", (unsigned long long)seed,
           (unsigned long long)seed);
    for (int i = 0; i < n_tables; i++) printf(" %s", tables[i]->name);
    printf("\n");
    fflush(stdout);
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
