/* kernel-bench.c: the typed matrix products alone (matmul_w), against the machine's read bandwidth.
 *
 *   simd/kernel-bench [-k TABLE] [-s SECONDS] [-n N,N,...] [-t f32,bf16,q8_0] [--shape A|B|all]
 *
 * For each weight type, matrix shape of the benchmark models (A: 1024x256, 256x1024, 8192x256; B:
 * 2048x512, 512x2048) and number of rows of X, one thread runs matmul_w over enough copies of the
 * matrix to fill the model's footprint in that type (A: 6.03 M weights, B: 25.2 M; decode reads every
 * weight once per token, so this is the cache level a decode step streams its weights from), and
 * prints the weights' GB/s (data and scales, 1e9 bytes), GFLOP/s (2 n m k) and, for decode (n < 24),
 * the fraction of the read bandwidth at the same footprint: a loop that only sums the same number of
 * bytes, best of several passes. Prefill rows (n >= 24) reuse one matrix (they are compute bound).
 * Each figure is the best of three runs of about SECONDS (default 0.2) of the thread's CPU time each. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"

#define PREFILL_ROWS 24 /* from this many rows of X on, a product is compute bound: one matrix is reused */

/* This thread's CPU time: on a shared machine wall-clock time measures the other processes as much as
 * this one; the bandwidth probe is timed the same way, so their ratio stays fair. */
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static float rnd(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}

/* ---- the read bandwidth ---- */

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint64_t *p, size_t n)
{
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm_prefetch((const char *)(p + i) + 1024, _MM_HINT_T0);
        a = _mm256_add_epi64(a, _mm256_loadu_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_loadu_si256((const __m256i *)(p + i + 4)));
        c = _mm256_add_epi64(c, _mm256_loadu_si256((const __m256i *)(p + i + 8)));
        d = _mm256_add_epi64(d, _mm256_loadu_si256((const __m256i *)(p + i + 12)));
    }
    uint64_t r[4];
    _mm256_storeu_si256((__m256i *)r, _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
    return r[0] + r[1] + r[2] + r[3];
}
#endif

static uint64_t read_sum(const uint64_t *p, size_t n)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) return read_avx2(p, n);
#endif
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= n; i += 4) a += p[i], b += p[i + 1], c += p[i + 2], d += p[i + 3];
    return a + b + c + d;
}

/* GB/s of reading `bytes` once, best of passes over about 0.3 s after a warm-up pass. */
static double read_gbs(size_t bytes)
{
    size_t n = bytes / 8;
    uint64_t *p = aligned_alloc(64, (n * 8 + 63) / 64 * 64), sink = 0;
    if (!p) return 0;
    memset(p, 1, n * 8);
    double best = 0, t_end = now() + 0.3;
    sink += read_sum(p, n);
    while (now() < t_end) {
        double t = now();
        sink += read_sum(p, n);
        t = now() - t;
        if (bytes / t / 1e9 > best) best = bytes / t / 1e9;
    }
    free(p);
    if (sink == 42) printf(" ");
    return best;
}

/* ---- the matrices ---- */

typedef struct {
    sasp_weights *w; /* copies */
    int copies;
    void *data;
    uint16_t *scales;
    uint8_t *panels; /* q8_0 for a table that reads panels: each copy's, packed as the model packs them */
    uint16_t *panel_scales;
} matrices;

static matrices make(sasp_wtype type, int m, int k, int copies, int panels)
{
    matrices r = {calloc((size_t)copies, sizeof(sasp_weights)), copies, NULL, NULL, NULL, NULL};
    sasp_weights w0 = {.type = type, .m = m, .k = k};
    size_t per = (size_t)m * k, nb = (size_t)m * sasp_q8_0_blocks(k);
    size_t elem = type == SASP_WT_F32 ? 4 : type == SASP_WT_BF16 ? 2
                                                                 : 1;
    r.data = aligned_alloc(64, (per * elem * copies + 63) / 64 * 64);
    r.scales = type == SASP_WT_Q8_0 ? malloc(nb * 2 * copies) : NULL;
    float *f = malloc(per * sizeof(float));
    if (!r.w || !r.data || !f || (type == SASP_WT_Q8_0 && !r.scales)) exit(1);
    for (int c = 0; c < copies; c++) {
        for (size_t i = 0; i < per; i++) f[i] = rnd() * 0.1f;
        r.w[c] = w0;
        r.w[c].data = (char *)r.data + c * per * elem;
        if (type == SASP_WT_F32) memcpy((char *)r.data + c * per * 4, f, per * 4);
        if (type == SASP_WT_BF16)
            for (size_t i = 0; i < per; i++) ((uint16_t *)r.data)[c * per + i] = sasp_f32_to_bf16(f[i]);
        if (type == SASP_WT_Q8_0) {
            r.w[c].scales = r.scales + c * nb;
            sasp_quantize_q8_0((int8_t *)r.data + c * per, r.scales + c * nb, f, m, k);
        }
    }
    free(f);
    if (type == SASP_WT_Q8_0 && panels) {
        size_t pb = sasp_q8_0_panels_bytes(m, k), ps = sasp_q8_0_panel_scale_count(m, k);
        r.panels = aligned_alloc(64, (pb * copies + 63) / 64 * 64);
        r.panel_scales = malloc(ps * copies * sizeof *r.panel_scales);
        if (!r.panels || !r.panel_scales) exit(1);
        for (int c = 0; c < copies; c++) {
            sasp_q8_0_pack_panels(&r.w[c], r.panels + c * pb, r.panel_scales + c * ps);
            r.w[c].panels = r.panels + c * pb, r.w[c].panel_scales = r.panel_scales + c * ps;
        }
    }
    return r;
}

static void drop(matrices *r) { free(r->w), free(r->data), free(r->scales), free(r->panels), free(r->panel_scales); }

/* Seconds per pass over the copies: the best of three runs of about `secs`. */
static double time_passes(const sasp_kernels *K, const matrices *mm, float *y, const float *x, int n, double secs)
{
    double best = 1e30;
    for (int run = 0; run < 3; run++) {
        int passes = 0;
        double t0 = now(), t;
        do {
            for (int c = 0; c < mm->copies; c++) K->matmul_w(y, mm->w[c].m, x, mm->w[c].k, &mm->w[c], NULL, n);
            passes++;
            t = now() - t0;
        } while (t < secs);
        if (t / passes < best) best = t / passes;
    }
    return best;
}

/* ---- main ---- */

typedef struct {
    const char *model;
    int m, k;
    double footprint; /* the model's weights */
} shape;

static const shape SHAPES[] = {
    {"A", 1024, 256, 6.03e6},
    {"A", 256, 1024, 6.03e6},
    {"A", 8192, 256, 6.03e6},
    {"B", 2048, 512, 25.2e6},
    {"B", 512, 2048, 25.2e6},
};

static const char *type_name(sasp_wtype t) { return t == SASP_WT_F32 ? "f32" : t == SASP_WT_BF16 ? "bf16"
                                                                                                 : "q8_0"; }

int main(int argc, char **argv)
{
    const char *table = NULL, *only_shape = "all";
    double secs = 0.2;
    int ns[16] = {1, 4, 8, 256, 512}, n_ns = 5, types = 7;
    static const struct option opts[] = {
        {"shape", required_argument, 0, 'S'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "k:s:n:t:h", opts, NULL)) != -1;) {
        if (c == 'k') table = optarg;
        else if (c == 's') secs = atof(optarg);
        else if (c == 'S') only_shape = optarg;
        else if (c == 'n') {
            n_ns = 0;
            for (char *tok = strtok(optarg, ","); tok && n_ns < 16; tok = strtok(NULL, ",")) ns[n_ns++] = atoi(tok);
        } else if (c == 't') {
            types = (strstr(optarg, "f32") ? 1 : 0) | (strstr(optarg, "bf16") ? 2 : 0) | (strstr(optarg, "q8") ? 4 : 0);
        } else {
            printf("usage: %s [-k TABLE] [-s SECONDS] [-n N,N,...] [-t f32,bf16,q8_0] [--shape A|B|all]\n", argv[0]);
            return c == 'h' ? 0 : 2;
        }
    }
    const sasp_kernels *K = table ? sasp_kernels_by_name(table) : sasp_kernels_active();
    if (!K) {
        fprintf(stderr, "kernel-bench: no table %s on this build or CPU\n", table);
        return 1;
    }
    printf("table %s, 1 thread, best of 3 runs of %.2f CPU-s\n", K->id, secs);
    printf("%-5s %-3s %-10s %4s %9s %8s %9s %9s %6s\n", "type", "mdl", "m x k", "n", "MB", "GB/s", "GFLOP/s",
           "read GB/s", "b/w %");
    for (unsigned s = 0; s < sizeof SHAPES / sizeof *SHAPES; s++) {
        const shape *sh = &SHAPES[s];
        if (strcmp(only_shape, "all") && strcmp(only_shape, sh->model)) continue;
        for (sasp_wtype t = SASP_WT_F32; t <= SASP_WT_Q8_0; t++) {
            if (!(types >> t & 1)) continue;
            sasp_weights one = {.type = t, .m = sh->m, .k = sh->k};
            double bytes1 = (double)sasp_weights_bytes(&one);
            int copies = (int)(sh->footprint / ((double)sh->m * sh->k) + 0.999);
            matrices mm = make(t, sh->m, sh->k, copies, K->q8_panels);
            double bw = read_gbs((size_t)(bytes1 * copies));
            for (int a = 0; a < n_ns; a++) {
                int n = ns[a];
                float *x = malloc(sizeof(float) * n * sh->k), *y = malloc(sizeof(float) * n * sh->m);
                for (int i = 0; i < n * sh->k; i++) x[i] = rnd();
                matrices use = mm;
                if (n >= PREFILL_ROWS) use.copies = 1;
                double sec = time_passes(K, &use, y, x, n, secs);
                double gbs = bytes1 * use.copies / sec / 1e9;
                double gflops = 2.0 * n * sh->m * sh->k * use.copies / sec / 1e9;
                printf("%-5s %-3s %4dx%-5d %4d %9.1f %8.1f %9.1f", type_name(t), sh->model, sh->m, sh->k, n,
                       bytes1 * use.copies / 1e6, gbs, gflops);
                if (n < PREFILL_ROWS)
                    printf(" %9.1f %5.0f%%\n", bw, 100 * gbs / bw);
                else
                    printf(" %9s %6s\n", "", "");
                fflush(stdout);
                free(x), free(y);
            }
            drop(&mm);
        }
    }
    return 0;
}
