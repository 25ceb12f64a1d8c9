/* check_kernels.c: every vector kernel against the scalar reference, and the scalar one against float64.
 *
 * For each kernel table this build and CPU can run (sasp_kernels_available: scalar, avx2, avx2-vnni, avx512,
 * avx512-vnni, avx512-bf16, neon, neon-dotprod, neon-bf16), and for the two stand-ins of the AVX-512
 * tables that run anywhere (vl16-emul, vl16-emul-bf16: the AVX-512 body over generic vectors, its
 * special instructions emulated), every kernel is run on fresh random inputs (the seed is printed;
 * SASP_TEST_SEED=N repeats a run) at many sizes, odd and tiny ones included, chosen to hit every tail
 * of every blocking scheme:
 * vector tails of k, row blocks of X (n = 1..9, 16, 33, and 24..36, 61 across the row groups of the typed
 * products' copies of X),
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
 *    reference accumulates those O(n) sums in double.
 *
 * Typed weights (matmul_w: f32, bf16, q8_0; kernels.h says what each computes), below their section's
 * comment: the conversions exhaustively, the scalar reference against float64 of the dequantized
 * weights with the bound of its activation rounding, and every table against the reference of its
 * semantics with the float32 bound. SASP_EXPECT_TABLES="scalar neon ..." (scripts/check-neon.sh) makes
 * the test check that dispatch offered exactly those tables.
 *
 * SASP_TEST_QUICK=1, for the passes that repeat what a native run has tested, many times slower
 * (scripts/check-sanitizers.sh's ASan build, check-neon.sh's ARMv8.0 pass): each sweep of shapes keeps a
 * quarter of its combinations, every size of every dimension still among them (sweep_keeps), the
 * quarter chosen by the seed; the shapes named one by one all run. */
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
static int quick; /* SASP_TEST_QUICK */

/* Whether a sweep runs its combination of sizes a, b, d (indices into its lists): all of them, or under
 * SASP_TEST_QUICK those whose indices sum to the seed's choice modulo 4, so that each size of each
 * list still meets a quarter of the others'. */
static int sweep_keeps(unsigned a, unsigned b, unsigned d)
{
    return !quick || (a + b + d + seed % 4) % 4 == 0;
}

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

/* n elements of `size` bytes whose end is `off` elements before a PROT_NONE page. */
static gbuf galloc_of(size_t n, size_t size, int off)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t bytes = (n + off) * size;
    size_t data_pages = (bytes + page - 1) / page;
    if (data_pages == 0) data_pages = 1;
    gbuf g;
    g.len = (data_pages + 1) * page;
    g.base = mmap(NULL, g.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_msg(g.base != MAP_FAILED, "mmap failed");
    char *guard = (char *)g.base + data_pages * page;
    ck_assert_int_eq(mprotect(guard, page, PROT_NONE), 0);
    g.p = (float *)(void *)(guard - (off + n) * size);
    g.n = n;
    return g;
}
/* n floats whose end is `off` floats before a PROT_NONE page. */
static gbuf galloc(size_t n, int off) { return galloc_of(n, sizeof(float), off); }
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

/* The vector tables to test against scalar (scalar itself is tested against float64): the available
 * ones, then the stand-ins. */
static const sasp_kernels *tables[SASP_KERNELS_MAX + 2];
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
                                  (unsigned long long)seed, K->id, n, m, k, i, j);
                    continue;
                }
                double mag = 0;
                for (int p = 0; p < k; p++) mag += fabs((double)x.p[(size_t)i * ldx + p] * w.p[(size_t)j * k + p]);
                double tol = integer ? 0 : 2 * (8 + 4 * sqrt((double)k)) * ldexp(1, -24) * mag + (bias ? fabs(bias[j]) : 0) * ldexp(1, -22);
                ck_assert_msg(close_enough(got, ref, 0, tol),
                              "seed %llu: %s matmul n=%d m=%d k=%d ldx=%d ldy=%d off=%d bias=%d %s: "
                              "y[%d][%d]=%.9g, scalar %.9g (tol %.3g)",
                              (unsigned long long)seed, K->id, n, m, k, ldx, ldy, off, with_bias,
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
                if (!sweep_keeps(a, b, d)) continue;
                check_matmul_shape(n, m, k, 1, c % 3 == 0, c % 2, c % 4 != 1);
                check_matmul_shape(n, m, k, 0, c % 3 == 1, (c + 1) % 2, c % 4 != 2);
            }
}
END_TEST

/* Shapes of prefills: every remainder of the row blocks, and k across 256. */
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
                if (!sweep_keeps(a, b, d)) continue;
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
                          (unsigned long long)seed, K->id, n, dh, stride, off, j, s.p[j], s0.p[j]);
        }
        copy(&o, &oinit);
        K->attn_accum(o.p, p.p, keys.p, stride, n, dh);
        for (int c = 0; c < dh; c++) {
            double mag = fabs(oinit.p[c]);
            for (int j = 0; j < n; j++) mag += fabs((double)p.p[j] * keys.p[(size_t)j * stride + c]);
            double tol = integer ? 0 : 2 * (8 + 4 * sqrt((double)n)) * ldexp(1, -24) * mag;
            ck_assert_msg(close_enough(o.p[c], o0.p[c], 0, tol),
                          "seed %llu: %s attn_accum n=%d dh=%d stride=%d off=%d: [%d] %.9g, scalar %.9g",
                          (unsigned long long)seed, K->id, n, dh, stride, off, c, o.p[c], o0.p[c]);
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

enum { K_SOFTMAX,
       K_RMSNORM,
       K_LAYERNORM,
       K_LAYERNORM_NOBIAS,
       K_ROPE,
       K_RELU,
       K_GELU,
       K_SILU,
       K_AXPY,
       K_SCALE,
       K_COUNT };
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
                              (unsigned long long)seed, tables[t]->id, KNAME[which], n, off, i, out.p[i],
                              out0.p[i]);
        } else {
            expect_close(KNAME[which], tables[t]->id, nx, off, out.p, ref, rtol, atol);
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
                ck_assert_msg(y[i] >= 0 && y[i] <= 1, "%s softmax n=%d gave %g", tables[t]->id, n, y[i]);
                sum += y[i];
            }
            ck_assert_msg(fabs(sum - 1) < 1e-5, "%s softmax n=%d sums to %.9g", tables[t]->id, n, sum);
            for (int i = 0; i < n; i++) x[i] = 3.0f;
            tables[t]->softmax(x, n);
            for (int i = 0; i < n; i++)
                ck_assert_msg(fabsf(x[i] - 1.0f / n) < 1e-6f, "%s softmax of equal values", tables[t]->id);
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
                              tables[t]->id, n, i, x[i]);
                sum += x[i];
            }
            ck_assert_msg(fabs(sum - 1) < 1e-5, "%s softmax n=%d of values near -200 sums to %.9g",
                          tables[t]->id, n, sum);
        }
    }
}
END_TEST

/* ---- dispatch ---- */

/* ---- typed weights: conversions ---- */

/* binary16 by its definition, in double. */
static double f16_value(uint16_t h)
{
    int e = (h >> 10) & 0x1f, mant = h & 0x3ff;
    double v = e == 0 ? ldexp(mant, -24) : e == 31 ? (mant ? NAN : INFINITY)
                                                   : ldexp(1024 + mant, e - 25);
    return h & 0x8000 ? -v : v;
}

/* Every binary16 and bfloat16 to float and back; random floats round to the nearest, ties to even. */
START_TEST(test_conversions)
{
    for (uint32_t h = 0; h < 65536; h++) {
        double v = f16_value((uint16_t)h);
        float f = sasp_f16_to_f32((uint16_t)h);
        if (isnan(v)) {
            ck_assert_msg(isnan(f) && isnan(sasp_bf16_to_f32(sasp_f32_to_bf16(f))), "f16 NaN %04x", h);
            ck_assert(isnan(f16_value(sasp_f32_to_f16(f))));
            continue;
        }
        ck_assert_msg((double)f == v && sasp_f32_to_f16(f) == h, "f16 %04x: %.9g, want %.9g", h, f, v);
        uint32_t u = h << 16;
        float bf;
        memcpy(&bf, &u, sizeof bf);
        ck_assert_msg(sasp_bf16_to_f32((uint16_t)h) == bf || isnan(bf), "bf16 %04x", h);
        if (!isnan(bf)) ck_assert_msg(sasp_f32_to_bf16(bf) == h, "bf16 %04x round trip", h);
    }
    for (int t = 0; t < 200000; t++) {
        float f = ldexpf(rnd(), (int)(rng_next() % 50) - 30); /* 2^-30 .. 2^20: subnormal, normal, inf f16 */
        uint16_t h = sasp_f32_to_f16(f);
        if ((h & 0x7fff) == 0x7c00) { /* overflow: from halfway past the largest finite value, 65520 */
            ck_assert_msg(fabsf(f) >= 65520.0f, "f16 of %.9g is inf", f);
            continue;
        }
        ck_assert_msg(fabsf(f) < 65520.0f, "f16 of %.9g is not inf", f);
        double e = fabs(f16_value(h) - f);
        for (int d = -1; d <= 1; d += 2) { /* no neighbour is nearer; at a tie the even one wins */
            uint16_t nb = (uint16_t)(h + d);
            if (((nb ^ h) & 0x8000) || isnan(f16_value(nb))) continue;
            double en = fabs(f16_value(nb) - f);
            ck_assert_msg(e < en || (e == en && !(h & 1)), "f16 of %.9g: %04x (%.9g), %04x is nearer", f, h,
                          f16_value(h), nb);
        }
        uint16_t b = sasp_f32_to_bf16(f);
        double eb = fabs((double)sasp_bf16_to_f32(b) - f);
        for (int d = -1; d <= 1; d += 2) {
            uint16_t nb = (uint16_t)(b + d);
            if ((nb ^ b) & 0x8000) continue;
            double en = fabs((double)sasp_bf16_to_f32(nb) - f);
            ck_assert_msg(eb < en || (eb == en && !(b & 1)), "bf16 of %.9g: %04x, %04x is nearer", f, b, nb);
        }
    }
}
END_TEST

/* sasp_quantize_q8_0: values in [-127, 127], scales amax / 127 as binary16, each weight within half a
 * step of its value (the steps are the binary16 scale; at the block's max the clamp costs up to one
 * rounding of the scale more). */
START_TEST(test_quantize_q8_0)
{
    static const int KS[] = {1, 5, 31, 32, 33, 64, 100};
    for (unsigned a = 0; a < sizeof KS / sizeof *KS; a++) {
        int m = 7, k = KS[a], nb = sasp_q8_0_blocks(k);
        float *w = malloc(sizeof(float) * m * k);
        int8_t *q = malloc((size_t)m * k);
        uint16_t *sc = malloc(sizeof(uint16_t) * m * nb);
        for (int i = 0; i < m * k; i++) w[i] = rnd() * (i % 7 == 3 ? 10.0f : 1.0f);
        for (int i = 0; i < k; i++) w[i] = 0.0f; /* an all-zero row */
        sasp_quantize_q8_0(q, sc, w, m, k);
        for (int j = 0; j < m; j++)
            for (int p = 0; p < k; p++) {
                double d = f16_value(sc[j * nb + p / 32]), v = q[j * k + p] * d, x = w[j * k + p];
                ck_assert_int_ge(q[j * k + p], -127);
                ck_assert_msg(fabs(v - x) <= 0.5 * d * (1 + 1e-6) + fabs(x) * ldexp(1, -10),
                              "q8_0 w[%d][%d] = %.9g -> %d * %.9g", j, p, x, q[j * k + p], d);
            }
        free(w), free(q), free(sc);
    }
}
END_TEST

/* ---- typed weights: matmul_w ---- */

/* The kinds of W a shape is tried with: q8_0 from sasp_quantize_q8_0, and raw random bytes with random
 * scales (the whole range allowed, [-127, 127], its ends often). */
enum { WK_F32,
       WK_BF16,
       WK_Q8,
       WK_Q8_RAW,
       WK_COUNT };
static const char *const WK_NAME[WK_COUNT] = {"f32", "bf16", "q8_0", "q8_0(raw)"};

typedef struct {
    sasp_weights w;
    sasp_weights wp; /* q8_0: w with its panels (sasp_q8_0_pack_panels), as the model gives them; else w */
    gbuf data, scales, panels, panel_scales;
    double *deq; /* W[j][p] as a double: the value the reference multiplies by */
} typed_w;

static typed_w make_weights(int kind, int m, int k, int off)
{
    typed_w t;
    int nb = sasp_q8_0_blocks(k);
    size_t size = kind == WK_F32 ? 4 : kind == WK_BF16 ? 2
                                                       : 1;
    t.data = galloc_of((size_t)m * k, size, off);
    t.scales = galloc_of(kind >= WK_Q8 ? (size_t)m * nb : 1, 2, off);
    t.deq = malloc(sizeof(double) * (size_t)m * k);
    t.w = (sasp_weights){.type = kind == WK_F32 ? SASP_WT_F32 : kind == WK_BF16 ? SASP_WT_BF16
                                                                                : SASP_WT_Q8_0,
                         .m = m,
                         .k = k,
                         .data = t.data.p,
                         .scales = kind >= WK_Q8 ? (uint16_t *)(void *)t.scales.p : NULL};
    float *f = malloc(sizeof(float) * ((size_t)m * k + 1));
    for (size_t i = 0; i < (size_t)m * k; i++) f[i] = rnd();
    uint16_t *s16 = (uint16_t *)(void *)t.scales.p;
    if (kind == WK_F32) memcpy(t.data.p, f, sizeof(float) * m * k);
    if (kind == WK_BF16)
        for (size_t i = 0; i < (size_t)m * k; i++) ((uint16_t *)(void *)t.data.p)[i] = sasp_f32_to_bf16(f[i]);
    if (kind == WK_Q8) sasp_quantize_q8_0((int8_t *)(void *)t.data.p, s16, f, m, k);
    if (kind == WK_Q8_RAW) {
        for (size_t i = 0; i < (size_t)m * k; i++) {
            int v = (int)(rng_next() % 300) - 150; /* a tenth of them at -127 or 127 */
            ((int8_t *)(void *)t.data.p)[i] = (int8_t)(v < -127 ? -127 : v > 127 ? 127
                                                                                 : v);
        }
        for (size_t i = 0; i < (size_t)m * nb; i++)
            s16[i] = sasp_f32_to_f16(ldexpf(1.0f + rnd(), -(int)(rng_next() % 12)));
    }
    for (int j = 0; j < m; j++)
        for (int p = 0; p < k; p++) {
            size_t at = (size_t)j * k + p;
            t.deq[at] = kind == WK_F32    ? f[at]
                        : kind == WK_BF16 ? sasp_bf16_to_f32(((uint16_t *)(void *)t.data.p)[at])
                                          : (double)(float)(((int8_t *)(void *)t.data.p)[at] *
                                                            (float)f16_value(s16[(size_t)j * nb + p / 32]));
        }
    free(f);
    t.wp = t.w;
    int q8 = kind >= WK_Q8;
    t.panels = galloc_of(q8 ? sasp_q8_0_panels_bytes(m, k) : 1, 1, off);
    t.panel_scales = galloc_of(q8 ? sasp_q8_0_panel_scale_count(m, k) : 1, 2, off);
    if (q8) {
        sasp_q8_0_pack_panels(&t.w, (uint8_t *)(void *)t.panels.p, (uint16_t *)(void *)t.panel_scales.p);
        t.wp.panels = (const uint8_t *)(void *)t.panels.p, t.wp.panel_scales = (const uint16_t *)(void *)t.panel_scales.p;
    }
    return t;
}
static void free_weights(typed_w *t)
{
    gfree(&t->data), gfree(&t->scales), gfree(&t->panels), gfree(&t->panel_scales), free(t->deq);
}

/* What bounds the error of row i, column j: sum |x w|, and the activation rounding's bound. */
typedef struct {
    double exact, mag, act; /* float64 of the dequantized W; sum |x w|; the bound of X's rounding */
} bound;

static bound bound_of(const float *x, const typed_w *t, int j, unsigned sem)
{
    int k = t->w.k;
    const double *w = t->deq + (size_t)j * k;
    bound b = {0, 0, 0};
    for (int p = 0; p < k; p++) b.exact += (double)x[p] * w[p], b.mag += fabs((double)x[p] * w[p]);
    if (t->w.type == SASP_WT_BF16 && (sem & SASP_SEM_BF16_ACT))
        b.act = ldexp(1, -8) * b.mag; /* |bf16(x) - x| <= 2^-8 |x| */
    if (t->w.type == SASP_WT_Q8_0)
        for (int b0 = 0; b0 < k; b0 += 32) { /* |qx dx - x| <= dx / 2 (+ the roundings of x * id and dx) */
            double amax = 0, sw = 0;
            for (int p = b0; p < k && p < b0 + 32; p++) amax = fmax(amax, fabs(x[p])), sw += fabs(w[p]);
            b.act += 0.5 * amax / 127 * sw * (1 + 1e-6);
        }
    if (b.act > 0) b.act += ldexp(1, -21) * b.mag;
    return b;
}
/* The activation rounding's cost, reference against float64 (rms of the error over rms of y), per kind
 * of W and path, printed at the end: what kernels.h promises as "typically". */
enum { ST_BF16,
       ST_BF16_ACT,
       ST_Q8,
       ST_COUNT };
static double stat_err2[ST_COUNT], stat_y2[ST_COUNT];

/* The reference of one semantics against float64; y0 gets the reference. stats: add to the rms errors. */
static void check_reference(float *y0, int ldy, const gbuf *x, int ldx, const typed_w *t, const float *bias, int n,
                            unsigned sem, int stats)
{
    int m = t->w.m, k = t->w.k;
    sasp_matmul_w_reference(y0, ldy, x->p, ldx, &t->w, bias, n, sem);
    int st = t->w.type == SASP_WT_Q8_0 ? ST_Q8 : t->w.type == SASP_WT_BF16 ? (sem ? ST_BF16_ACT : ST_BF16)
                                                                           : -1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            bound b = bound_of(x->p + (size_t)i * ldx, t, j, sem);
            double bj = bias ? bias[j] : 0.0, want = b.exact + bj, got = y0[(size_t)i * ldy + j];
            double tol = b.act + (8 + 4 * sqrt((double)k)) * ldexp(1, -24) * (b.mag + b.act) + fabs(bj) * ldexp(1, -23);
            ck_assert_msg(close_enough(got, want, 0, tol),
                          "seed %llu: reference %s sem=%u n=%d m=%d k=%d y[%d][%d]=%.9g, float64 %.9g (tol %.3g)",
                          (unsigned long long)seed,
                          t->w.type == SASP_WT_F32 ? "f32" : t->w.type == SASP_WT_BF16 ? "bf16"
                                                                                       : "q8_0",
                          sem, n, m, k,
                          i, j, got, want, tol);
            if (st >= 0 && stats) stat_err2[st] += (got - want) * (got - want), stat_y2[st] += want * want;
        }
}

/* matmul_w of table K against y0 (the reference of K's semantics), on W whole or in three column
 * slices (sasp_weights_rows: y + lo, bias + lo), the gaps of a strided Y untouched. */
static void check_table_w(const sasp_kernels *K, const float *y0, gbuf *y, int ldy, const gbuf *x, int ldx,
                          const typed_w *t, const sasp_weights *tw, const float *bias, int n, int sliced,
                          const char *kind, int off)
{
    int m = t->w.m, k = t->w.k;
    const float SENT = -12345.5f;
    for (size_t i = 0; i < y->n; i++) y->p[i] = SENT;
    if (sliced && m >= 3) {
        int cut[4] = {0, m / 3, m - m / 4, m};
        for (int c = 0; c < 3; c++) {
            sasp_weights part = sasp_weights_rows(tw, cut[c], cut[c + 1]);
            K->matmul_w(y->p + cut[c], ldy, x->p, ldx, &part, bias ? bias + cut[c] : NULL, n);
        }
    } else {
        K->matmul_w(y->p, ldy, x->p, ldx, tw, bias, n);
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < ldy && (size_t)i * ldy + j < y->n; j++) {
            size_t at = (size_t)i * ldy + j;
            if (j >= m) {
                ck_assert_msg(y->p[at] == SENT, "seed %llu: %s matmul_w %s n=%d m=%d k=%d wrote the gap y[%d][%d]",
                              (unsigned long long)seed, K->id, kind, n, m, k, i, j);
                continue;
            }
            /* the bias is in every partial sum of the packed path (its accumulators start from it) */
            bound b = bound_of(x->p + (size_t)i * ldx, t, j, K->semantics);
            double tol = 2 * (8 + 4 * sqrt((double)k)) * ldexp(1, -24) * (b.mag + b.act + (bias ? fabs(bias[j]) : 0));
            ck_assert_msg(close_enough(y->p[at], y0[at], 0, tol),
                          "seed %llu: %s matmul_w %s n=%d m=%d k=%d ldx=%d ldy=%d off=%d sliced=%d: "
                          "y[%d][%d]=%.9g, reference %.9g (tol %.3g)",
                          (unsigned long long)seed, K->id, kind, n, m, k, ldx, ldy, off, sliced, i, j, y->p[at],
                          y0[at], tol);
        }
}

/* One shape and kind of W, X uniform in [-1, 1]; stress: rows of three magnitudes and an outlier in
 * every other block (the per-block scales of q8_0 must follow it), else the rms errors are gathered. */
static void check_matmul_w_case(int kind, int n, int m, int k, int strided, int off, int with_bias, int stress)
{
    int ldx = strided ? k + 3 : k, ldy = strided ? m + 5 : m;
    typed_w t = make_weights(kind, m, k, off);
    gbuf x = galloc((size_t)(n - 1) * ldx + k, off), b = galloc((size_t)m, off);
    size_t ny = (size_t)(n - 1) * ldy + m;
    gbuf y0 = galloc(ny, off), y = galloc(ny, off);
    fill_real(&x, -1, 1), fill_real(&b, -1, 1);
    for (int i = 0; i < n && stress; i++)
        for (int p = 0; p < k; p++) {
            float *v = x.p + (size_t)i * ldx + p;
            *v *= i % 3 == 0 ? 1.0f : i % 3 == 1 ? 0.01f
                                                 : 30.0f;
            if (p % 64 == 17) *v *= 9.0f;
        }
    const float *bias = with_bias ? b.p : NULL;
    unsigned done = ~0u;
    for (int ti = 0; ti < n_tables; ti++) {
        const sasp_kernels *K = tables[ti];
        if (K->semantics != done) check_reference(y0.p, ldy, &x, ldx, &t, bias, n, K->semantics, !stress);
        done = K->semantics;
        check_table_w(K, y0.p, &y, ldy, &x, ldx, &t, &t.w, bias, n, (n + m + k) % 4 == 1, WK_NAME[kind], off);
        if (t.wp.panels) /* and with its panels, whole or in three slices (which may drop them) */
            check_table_w(K, y0.p, &y, ldy, &x, ldx, &t, &t.wp, bias, n, (n + m + k) % 2 == 1, "q8_0 panels", off);
    }
    free_weights(&t);
    gfree(&x), gfree(&b), gfree(&y0), gfree(&y);
}
static void check_matmul_w_shape(int kind, int n, int m, int k, int strided, int off, int with_bias)
{
    check_matmul_w_case(kind, n, m, k, strided, off, with_bias, (n + m + k + off) % 2);
}

START_TEST(test_matmul_w_decode)
{
    int kind = _i;
    static const int NS[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 23};
    static const int MS[] = {1, 2, 3, 7, 17, 33};
    static const int KS[] = {1, 2, 5, 17, 31, 32, 33, 63, 64, 65, 100, 257};
    int c = 0;
    for (unsigned a = 0; a < sizeof NS / sizeof *NS; a++)
        for (unsigned bb = 0; bb < sizeof MS / sizeof *MS; bb++)
            for (unsigned d = 0; d < sizeof KS / sizeof *KS; d++, c++)
                if (sweep_keeps(a, bb, d))
                    check_matmul_w_shape(kind, NS[a], MS[bb], KS[d], c % 3 == 0, c % 2, c % 4 != 1);
    /* k beyond one chunk of X's per-call copy (2048 columns) */
    check_matmul_w_shape(kind, 1, 5, 2049, 0, 0, 1);
    check_matmul_w_shape(kind, 3, 7, 4133, 1, 1, 1);
    check_matmul_w_shape(kind, 23, 9, 2100, 0, 1, 0);
}
END_TEST

START_TEST(test_matmul_w_prefill)
{
    int kind = _i;
    static const int NS[] = {24, 25, 30, 37, 61};
    static const int MS[] = {1, 17, 33, 65};
    static const int KS[] = {1, 17, 32, 33, 256, 257, 300};
    int c = 0;
    for (unsigned a = 0; a < sizeof NS / sizeof *NS; a++)
        for (unsigned bb = 0; bb < sizeof MS / sizeof *MS; bb++)
            for (unsigned d = 0; d < sizeof KS / sizeof *KS; d++, c++)
                if (sweep_keeps(a, bb, d))
                    check_matmul_w_shape(kind, NS[a], MS[bb], KS[d], c % 3 == 0, c % 2, c % 4 != 1);
    check_matmul_w_shape(kind, 25, 9, 2100, 1, 0, 1);
}
END_TEST

/* The rms errors of the activation rounding on X and W uniform in [-1, 1] (q8_0 W quantized from them),
 * measured on a shape of the models, printed. */
START_TEST(test_matmul_w_report)
{
    memset(stat_err2, 0, sizeof stat_err2), memset(stat_y2, 0, sizeof stat_y2);
    for (int kind = WK_BF16; kind <= WK_Q8; kind++)
        for (int n = 1; n <= 25; n += 24) check_matmul_w_case(kind, n, 256, 1024, 0, 0, 0, 0);
    static const char *const NAME[ST_COUNT] = {"bf16 (f32 activations)", "bf16 (bf16 activations)",
                                               "q8_0 (q8_0 activations)"};
    for (int s = 0; s < ST_COUNT; s++)
        if (stat_y2[s] > 0)
            printf("check_kernels: reference against float64 of the dequantized W, %s: rms error / rms y = %.3g\n",
                   NAME[s], sqrt(stat_err2[s] / stat_y2[s]));
}
END_TEST

/* ---- batch invariance: a row's outputs do not depend on the rest of the call (kernels.h) ---- */

/* Rows [i0, i1) of Y against the same rows of y_all (row stride ldy, m columns): bit for bit. */
static void expect_same_rows(const char *what, const sasp_kernels *K, const float *y_all, const float *y, int ldy,
                             int i0, int i1, int n, int m, int k)
{
    for (int i = i0; i < i1; i++)
        for (int j = 0; j < m; j++) {
            float a = y_all[(size_t)i * ldy + j], b = y[(size_t)i * ldy + j];
            ck_assert_msg(memcmp(&a, &b, sizeof a) == 0,
                          "seed %llu: %s %s n=%d m=%d k=%d: y[%d][%d] = %.9g inside a call of %d rows, %.9g "
                          "in another grouping of rows and columns",
                          (unsigned long long)seed, K->id, what, n, m, k, i, j, a, n, b);
        }
}

/* X prepared once (xprep_init, then xprep_rows over random groups of rows, as the model's threads fill
 * it), then multiplied in random column slices by matmul_xp: every output bit for bit matmul_w's
 * (y_all). Also prepared for each other weight type, which matmul_xp multiplies by X itself. */
static void check_prepared(const sasp_kernels *K, const char *what, const sasp_weights *W, const gbuf *x, int ldx,
                           const float *bias, const float *y_all, gbuf *y, int ldy, int n)
{
    int m = W->m, k = W->k;
    size_t bytes = sasp_xprep_bytes(n, k);
    gbuf buf = galloc_of(bytes, 1, (int)(rng_next() % 2));
    for (int t = 0; t < 3; t++) {
        sasp_wtype type = (sasp_wtype)((W->type + t) % 3);
        sasp_xprep xp;
        memset(buf.p, 0xa5, bytes); /* what the kernel does not write must not matter */
        memset(y->p, 0, (size_t)n * ldy * sizeof(float));
        K->xprep_init(&xp, buf.p, type, x->p, ldx, n, k);
        for (int i = 0; i < n;) {
            int rows = 1 + (int)(rng_next() % (uint64_t)(n - i));
            K->xprep_rows(&xp, i, i + rows);
            i += rows;
        }
        for (int lo = 0; lo < m;) {
            int hi = lo + 1 + (int)(rng_next() % (uint64_t)(m - lo));
            if (rng_next() % 2) hi = lo + 16 < m ? lo + 16 : m;
            sasp_weights cols = sasp_weights_rows(W, lo, hi);
            K->matmul_xp(y->p + lo, ldy, &xp, &cols, bias ? bias + lo : NULL);
            lo = hi;
        }
        char label[64];
        snprintf(label, sizeof label, "%s, X prepared for %s", what, WK_NAME[type]);
        expect_same_rows(label, K, y_all, y->p, ldy, 0, n, n, m, k);
    }
    gfree(&buf);
}

/* Y = X W^T of kind `kind` (WK_*; -1: the f32 matmul entry) for n rows at once, then again one row at
 * a time (the decode path), and again cut into random groups of rows and random slices of columns
 * (a batch of other sizes, the threads' column blocks): every output bit for bit the same, in every
 * table and stand-in. X has rows of three magnitudes and outliers (q8_0's per-block scales). */
static void check_invariance_shape(int kind, int n, int m, int k, int off)
{
    int wk = kind < 0 ? WK_F32 : kind, ldx = k + n % 3, ldy = m + 2 * (n % 2);
    typed_w t = make_weights(wk, m, k, off);
    gbuf x = galloc((size_t)(n - 1) * ldx + k, off), b = galloc((size_t)m, off);
    gbuf y_all = galloc((size_t)n * ldy, off), y = galloc((size_t)n * ldy, off);
    fill_real(&x, -1, 1), fill_real(&b, -1, 1);
    for (int i = 0; i < n; i++)
        for (int p = 0; p < k; p++) {
            float *v = x.p + (size_t)i * ldx + p;
            *v *= i % 3 == 0 ? 1.0f : i % 3 == 1 ? 0.01f
                                                 : 30.0f;
            if (p % 37 == 5) *v *= 9.0f;
        }
    const float *bias = (n + m) % 3 ? b.p : NULL;
    const char *what = kind < 0 ? "matmul" : WK_NAME[kind];
    for (int ti = 0; ti < n_tables; ti++) {
        const sasp_kernels *K = tables[ti];
#define PRODUCT(Y, X, W, BIAS, ROWS)                                                               \
    (kind < 0 ? K->matmul((Y), ldy, (X), ldx, (const float *)(W)->data, (BIAS), (ROWS), (W)->m, k) \
              : K->matmul_w((Y), ldy, (X), ldx, (W), (BIAS), (ROWS)))
        PRODUCT(y_all.p, x.p, &t.w, bias, n);
        /* q8_0 also with its panels: the same bits as W packed by the kernel, whole or sliced (slices
         * at a multiple of 16 keep the panels, others drop them) */
        for (int v = 0; v < (t.wp.panels ? 2 : 1); v++) {
            const sasp_weights *W = v ? &t.wp : &t.w;
            if (v) {
                PRODUCT(y.p, x.p, W, bias, n);
                expect_same_rows("q8_0 panels", K, y_all.p, y.p, ldy, 0, n, n, m, k);
            }
            for (int i = 0; i < n; i++) /* decode: one row at a time */
                PRODUCT(y.p + (size_t)i * ldy, x.p + (size_t)i * ldx, W, bias, 1);
            expect_same_rows(what, K, y_all.p, y.p, ldy, 0, n, n, m, k);
            for (int i = 0; i < n;) { /* random groups of rows, each in random column slices */
                int rows = 1 + (int)(rng_next() % (uint64_t)(n - i));
                for (int lo = 0; lo < m;) {
                    int hi = lo + 1 + (int)(rng_next() % (uint64_t)(m - lo));
                    if (v && rng_next() % 2) hi = lo + 16 < m ? lo + 16 : m; /* panel-aligned slices too */
                    sasp_weights cols = sasp_weights_rows(W, lo, hi);
                    PRODUCT(y.p + (size_t)i * ldy + lo, x.p + (size_t)i * ldx, &cols, bias ? bias + lo : NULL, rows);
                    lo = hi;
                }
                expect_same_rows(what, K, y_all.p, y.p, ldy, i, i + rows, n, m, k);
                i += rows;
            }
            if (kind >= 0) check_prepared(K, what, W, &x, ldx, bias, y_all.p, &y, ldy, n);
        }
#undef PRODUCT
    }
    free_weights(&t);
    gfree(&x), gfree(&b), gfree(&y_all), gfree(&y);
}

START_TEST(test_batch_invariance)
{
    int kind = _i - 1; /* -1: the f32 matmul entry, then each WK_ kind of matmul_w */
    static const int NS[] = {2, 3, 5, 9, 17, 24, 25, 30, 49, 61, 130};
    static const int MS[] = {1, 3, 7, 17, 33, 70};
    static const int KS[] = {1, 5, 16, 31, 32, 33, 64, 65, 100, 257, 300};
    int c = 0;
    for (unsigned a = 0; a < sizeof NS / sizeof *NS; a++)
        for (unsigned bb = 0; bb < sizeof MS / sizeof *MS; bb++, c++)
            if (sweep_keeps(a, bb, 0))
                check_invariance_shape(kind, NS[a], MS[bb], KS[c % (sizeof KS / sizeof *KS)], c % 2);
    /* k beyond one chunk of X's per-call copies (1024 and 2048 columns) */
    check_invariance_shape(kind, 30, 9, 2100, 1);
    check_invariance_shape(kind, 3, 5, 4133, 0);
    /* m a multiple of the q8_0 panels' 16 rows: two panels, three (a pair and one) */
    check_invariance_shape(kind, 7, 32, 96, 0);
    check_invariance_shape(kind, 13, 48, 1100, 1);
}
END_TEST

/* The q8_0 panels are what a table with q8_panels reads: given W1's bytes and W2's panels it computes
 * W2's product, bit for bit (a table without ignores them: W1's); a row slice from a multiple of 16
 * keeps the panels, any other drops them (sasp_weights_rows). Without this, a table that never read its
 * panels would pass every other test. */
START_TEST(test_q8_panels_are_read)
{
    static const int SHAPES[][3] = {{1, 16, 32}, {5, 37, 70}, {9, 70, 1100}, {30, 48, 33}};
    int readers = 0;
    for (unsigned s = 0; s < sizeof SHAPES / sizeof *SHAPES; s++) {
        int n = SHAPES[s][0], m = SHAPES[s][1], k = SHAPES[s][2];
        typed_w t1 = make_weights(WK_Q8, m, k, 0), t2 = make_weights(WK_Q8, m, k, 1);
        gbuf x = galloc((size_t)n * k, 0), y = galloc((size_t)n * m, 0), want = galloc((size_t)n * m, 0);
        fill_real(&x, -1, 1);
        sasp_weights mixed = t1.w;
        mixed.panels = t2.wp.panels, mixed.panel_scales = t2.wp.panel_scales;
        for (int ti = 0; ti < n_tables; ti++) {
            const sasp_kernels *K = tables[ti];
            readers += K->q8_panels;
            /* slices from 0, 5, 16, 21, 32, 37, ...: every other one at a multiple of 16 */
            for (int lo = 0; lo < m; lo += lo % SASP_Q8_0_PANEL ? SASP_Q8_0_PANEL - lo % SASP_Q8_0_PANEL : 5) {
                int hi = lo + 40 < m ? lo + 40 : m, aligned = lo % SASP_Q8_0_PANEL == 0;
                sasp_weights part = sasp_weights_rows(&mixed, lo, hi);
                ck_assert(aligned ? part.panels != NULL : part.panels == NULL);
                sasp_weights ref = sasp_weights_rows(K->q8_panels && aligned ? &t2.w : &t1.w, lo, hi);
                K->matmul_w(want.p, m, x.p, k, &ref, NULL, n);
                K->matmul_w(y.p, m, x.p, k, &part, NULL, n);
                for (int i = 0; i < n; i++)
                    ck_assert_msg(memcmp(y.p + (size_t)i * m, want.p + (size_t)i * m, sizeof(float) * (hi - lo)) == 0,
                                  "seed %llu: %s q8_panels=%d n=%d m=%d k=%d rows [%d, %d): row %d is not the product of %s",
                                  (unsigned long long)seed, K->id, K->q8_panels, n, m, k, lo, hi, i,
                                  K->q8_panels && aligned ? "the panels" : "the bytes");
            }
        }
        free_weights(&t1), free_weights(&t2);
        gfree(&x), gfree(&y), gfree(&want);
    }
    ck_assert_msg(readers > 0, "no table reads q8_0 panels (vl16-emul-bf16 should, on any CPU)");
}
END_TEST

/* attn_scores(q, keys, scale) is matmul's row of q against the keys, times scale, bit for bit: the model
 * scores a tile of rows as one matmul and a single row with attn_scores (kernels.h). */
START_TEST(test_attn_scores_is_matmul)
{
    static const int DHS[] = {1, 3, 8, 16, 17, 32, 64, 65, 128};
    static const int NS[] = {1, 2, 7, 33, 130};
    for (unsigned a = 0; a < sizeof DHS / sizeof *DHS; a++)
        for (unsigned b = 0; b < sizeof NS / sizeof *NS; b++) {
            int dh = DHS[a], nk = NS[b], rows = 1 + (int)(a + b) % 9, stride = dh * 3 + 1;
            float scale = 1.0f / sqrtf((float)dh);
            gbuf q = galloc((size_t)rows * dh, 0), keys = galloc((size_t)(nk - 1) * stride + dh, 0);
            gbuf kc = galloc((size_t)nk * dh, 0), s1 = galloc(nk, 0), s = galloc((size_t)rows * nk, 0);
            fill_real(&q, -2, 2), fill_real(&keys, -2, 2);
            for (int j = 0; j < nk; j++) memcpy(kc.p + (size_t)j * dh, keys.p + (size_t)j * stride, sizeof(float) * dh);
            for (int t = 0; t < n_tables; t++) {
                const sasp_kernels *K = tables[t];
                K->matmul(s.p, nk, q.p, dh, kc.p, NULL, rows, nk, dh);
                for (int r = 0; r < rows; r++) {
                    K->scale(s.p + (size_t)r * nk, scale, nk);
                    K->attn_scores(s1.p, q.p + (size_t)r * dh, keys.p, stride, nk, dh, scale);
                    ck_assert_msg(memcmp(s1.p, s.p + (size_t)r * nk, sizeof(float) * nk) == 0,
                                  "seed %llu: %s attn_scores dh=%d n=%d row %d of %d differs from matmul * scale",
                                  (unsigned long long)seed, K->id, dh, nk, r, rows);
                }
            }
            gfree(&q), gfree(&keys), gfree(&kc), gfree(&s1), gfree(&s);
        }
}
END_TEST

START_TEST(test_dispatch)
{
    const sasp_kernels *all[SASP_KERNELS_MAX];
    int n = sasp_kernels_available(all, SASP_KERNELS_MAX);
    ck_assert_int_ge(n, 1);
    ck_assert_str_eq(all[0]->id, "scalar");
    ck_assert_ptr_eq(sasp_kernels_by_name("scalar"), &sasp_kernels_scalar);
    ck_assert_ptr_null(sasp_kernels_by_name("no-such-isa"));
    ck_assert_ptr_null(sasp_kernels_by_name(NULL));
    ck_assert_ptr_null(sasp_kernels_by_name("vl16-emul")); /* the stand-ins are never offered */
    const sasp_kernels *active = sasp_kernels_active();
    int found = 0;
    char ids[256] = "";
    for (int i = 0; i < n; i++) {
        ck_assert_ptr_eq(sasp_kernels_by_name(all[i]->id), all[i]);
        found |= all[i] == active;
        /* every entry of every table is filled in */
        const sasp_kernels *k = all[i];
        ck_assert(k->name && k->id && k->matmul && k->matmul_w && k->attn_scores && k->attn_accum && k->softmax &&
                  k->rmsnorm && k->layernorm && k->rope && k->relu && k->gelu && k->silu && k->axpy && k->scale);
        /* the id is the instruction set's name, or it with a feature after a dash */
        size_t len = strlen(k->name);
        ck_assert_msg(strncmp(k->id, k->name, len) == 0 && (k->id[len] == 0 || k->id[len] == '-'), "%s / %s",
                      k->name, k->id);
        snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%s", i ? " " : "", k->id);
    }
    ck_assert_msg(found, "the active table is not among the available ones");
    const char *want = getenv("SASP_SIMD");
    if (!want || !*want) ck_assert_ptr_eq(active, all[n - 1]); /* the best: the last offered */
    if (want && sasp_kernels_by_name(want)) ck_assert_str_eq(active->id, want);
    const char *expect = getenv("SASP_EXPECT_TABLES");
    if (expect && *expect)
        ck_assert_msg(strcmp(ids, expect) == 0, "tables offered: \"%s\", expected \"%s\"", ids, expect);
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
    tcase_add_test(tc, test_conversions);
    tcase_add_test(tc, test_quantize_q8_0);
    tcase_add_loop_test(tc, test_matmul_w_decode, 0, WK_COUNT);
    tcase_add_loop_test(tc, test_matmul_w_prefill, 0, WK_COUNT);
    tcase_add_test(tc, test_matmul_w_report);
    tcase_add_loop_test(tc, test_batch_invariance, 0, WK_COUNT + 1);
    tcase_add_test(tc, test_q8_panels_are_read);
    tcase_add_test(tc, test_attn_scores_is_matmul);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *env = getenv("SASP_TEST_SEED");
    seed = env && *env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    if (seed == 0) seed = 1;
    rng_state = seed;
    const char *q = getenv("SASP_TEST_QUICK");
    quick = q && *q && strcmp(q, "0") != 0;
    n_tables = sasp_kernels_available(tables, SASP_KERNELS_MAX);
    printf("check_kernels: seed %llu (SASP_TEST_SEED=%llu repeats it); tables:", (unsigned long long)seed,
           (unsigned long long)seed);
    for (int i = 0; i < n_tables; i++) printf(" %s", tables[i]->id);
    tables[n_tables++] = &sasp_kernels_vl16_emul;
    tables[n_tables++] = &sasp_kernels_vl16_emul_bf16;
    printf("; stand-ins: vl16-emul vl16-emul-bf16\n");
    if (quick) printf("check_kernels: SASP_TEST_QUICK: a quarter of each sweep of shapes (%llu)\n", (unsigned long long)(seed % 4));
    fflush(stdout);
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
