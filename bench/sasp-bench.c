/* sasp-bench: how fast the engine runs a model, next to what this machine can do at most.
 *
 * For a model directory (-m), or without one for random-weight models of the shapes A and B of
 * docs/performance.md, it measures with the engine's own forward pass (sasp_forward):
 *   prefill   tokens/s for a 512-token prompt (and 256, the peers' prompt), logits of the last token;
 *   decode    tokens/s at batch 1 (greedy, after a 32-token prompt) and for batched decode of 4 and 8
 *             sequences (one step feeds one token of each);
 *   GFLOP/s   achieved: 2 x (matrix multiply-adds + attention's 2 n_ctx d per layer) per token.
 * In the same run it measures the machine's ceilings: peak FMA throughput (a register-only FMA loop on
 * every thread, widest vector ISA), memory bandwidth (a STREAM-triad loop on arrays much larger than
 * the L3, every thread) and the read bandwidth at the model's own footprint (a read loop over as many
 * bytes as the weights: the L3 bandwidth when they fit in it). From them the roofline bounds: decode at
 * batch 1 reads every weight once per token, so tokens/s <= bandwidth / weight bytes (and <= peak /
 * flops); prefill tokens/s <= peak / flops per token.
 *
 * Every figure is the median of --reps runs (default 5). --isa all (or a list) repeats the model
 * measurements with each kernel table; SASP_SIMD picks the default one. --weights f32,bf16,q8_0 (or
 * all) loads the model once per weight type and measures each. --vs-preln measures a Pre-LN model of
 * the same width, depth, MLP width and vocabulary beside each SAS-P one, with the ratio. The runs of all
 * these configurations are interleaved (run r of each before run r + 1 of any), so on a shared, noisy
 * machine the side-by-side ratios are fairer than the absolute figures (ratios against the first are
 * printed).
 * The decode roofline counts the bytes of the weights in their type (q8_0: 1.0625 a weight, bf16 2,
 * f32 4) and the KV-cache; "b1/roof" is decode at batch 1 over min(bandwidth / bytes, peak / flops),
 * the peak being the f32 FMA loop's (bf16 and int8 dot products do more per instruction, but decode at
 * batch 1 is bound by the bytes).
 * A table goes to stdout, and with --json FILE everything to FILE. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

#include "kernels.h"
#include "model/model.h"
#include "text/sampler.h"
#include "base/paths.h"
#include "st_writer.h"
#include "model/threadpool.h"
#include "base/util.h"

#define MAX_ISAS SASP_KERNELS_MAX
#define MAX_WEIGHTS 3

typedef struct {
    const char *model_dir;
    int threads, reps, decode_tokens, prompt_decode;
    int vs_preln;
    const char *shape;    /* "A", "B" or NULL for both */
    const char *isa_list; /* NULL: the active table; "all"; or "scalar,avx2" */
    const char *json_path;
    long bw_mb;               /* size of the triad arrays in total; 0: 4 x L3 (at least 256 MB) */
    int weights[MAX_WEIGHTS]; /* --weights: the types the matrices are converted to at load, or as stored */
    int n_weights;
} options;

static double now(void) { return (double)sasp_now_ns() * 1e-9; }

/* CPU time of the whole process (every thread): the work done, which a busy machine changes far less
 * than the wall-clock time. */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- the machine's ceilings ---- */

/* Peak FMA: each thread runs `iters` rounds of 24 independent FMA chains on registers (enough chains
 * to cover 2 FMA ports x 4 cycles of latency, with room). Returns floating-point operations done. */
#define FMA_CHAINS 24
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static double fma_loop_avx512(long iters)
{
    __m512 a[FMA_CHAINS];
    for (int c = 0; c < FMA_CHAINS; c++) a[c] = _mm512_set1_ps(1.0f + 0.01f * c);
    __m512 m = _mm512_set1_ps(0.9999f), d = _mm512_set1_ps(1e-4f);
    for (long r = 0; r < iters; r++) {
#pragma GCC unroll 24
        for (int c = 0; c < FMA_CHAINS; c++) a[c] = _mm512_fmadd_ps(a[c], m, d);
        __asm__ volatile(""
                         : "+v"(m));
    }
    __m512 s = a[0];
    for (int c = 1; c < FMA_CHAINS; c++) s = _mm512_add_ps(s, a[c]);
    __asm__ volatile("" ::"v"(s));
    return 2.0 * 16 * FMA_CHAINS * iters;
}
__attribute__((target("avx2,fma"))) static double fma_loop_avx2(long iters)
{
    /* 12 chains: AVX2 has 16 registers */
    __m256 a[12];
    for (int c = 0; c < 12; c++) a[c] = _mm256_set1_ps(1.0f + 0.01f * c);
    __m256 m = _mm256_set1_ps(0.9999f), d = _mm256_set1_ps(1e-4f);
    for (long r = 0; r < iters; r++) {
#pragma GCC unroll 12
        for (int c = 0; c < 12; c++) a[c] = _mm256_fmadd_ps(a[c], m, d);
        __asm__ volatile(""
                         : "+x"(m));
    }
    __m256 s = a[0];
    for (int c = 1; c < 12; c++) s = _mm256_add_ps(s, a[c]);
    __asm__ volatile("" ::"x"(s));
    return 2.0 * 8 * 12 * iters;
}
#endif
#if defined(__aarch64__)
static double fma_loop_neon(long iters)
{
    float32x4_t a[FMA_CHAINS];
    for (int c = 0; c < FMA_CHAINS; c++) a[c] = vdupq_n_f32(1.0f + 0.01f * c);
    float32x4_t m = vdupq_n_f32(0.9999f), d = vdupq_n_f32(1e-4f);
    for (long r = 0; r < iters; r++) {
#pragma GCC unroll 24
        for (int c = 0; c < FMA_CHAINS; c++) a[c] = vfmaq_f32(d, a[c], m);
        __asm__ volatile(""
                         : "+w"(m));
    }
    float32x4_t s = a[0];
    for (int c = 1; c < FMA_CHAINS; c++) s = vaddq_f32(s, a[c]);
    __asm__ volatile("" ::"w"(s));
    return 2.0 * 4 * FMA_CHAINS * iters;
}
#endif
static double fma_loop_scalar(long iters)
{
    float a[8];
    for (int c = 0; c < 8; c++) a[c] = 1.0f + 0.01f * c;
    volatile float mv = 0.9999f;
    float m = mv;
    for (long r = 0; r < iters; r++)
        for (int c = 0; c < 8; c++) a[c] = fmaf(a[c], m, 1e-4f);
    volatile float sink = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
    (void)sink;
    return 2.0 * 8 * iters;
}

typedef struct {
    const char *isa;
    long iters;
    double flops[1024];
} fma_job;

static void fma_worker(void *arg, int ith, int nth)
{
    fma_job *j = arg;
    (void)nth;
    double f = 0;
#if defined(__x86_64__)
    if (!strcmp(j->isa, "avx512")) f = fma_loop_avx512(j->iters);
    else if (!strcmp(j->isa, "avx2")) f = fma_loop_avx2(j->iters);
#elif defined(__aarch64__)
    if (!strcmp(j->isa, "neon")) f = fma_loop_neon(j->iters);
#endif
    if (f == 0) f = fma_loop_scalar(j->iters);
    if (ith < 1024) j->flops[ith] = f;
}

/* GFLOP/s of the FMA loop of `isa` on every thread of the pool: best of several runs. */
static double peak_gflops(sasp_pool *pool, const char *isa, int reps)
{
    fma_job j = {isa, 1000, {0}};
    /* size the run to about 0.2 s */
    for (;;) {
        double t = now();
        sasp_pool_run(pool, fma_worker, &j);
        t = now() - t;
        if (t > 0.05 || j.iters > (1L << 40)) {
            j.iters = (long)(j.iters * 0.2 / (t > 1e-6 ? t : 1e-6)) + 1;
            break;
        }
        j.iters *= 4;
    }
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t = now();
        sasp_pool_run(pool, fma_worker, &j);
        t = now() - t;
        double f = 0;
        for (int i = 0; i < sasp_pool_size(pool) && i < 1024; i++) f += j.flops[i];
        if (f / t / 1e9 > best) best = f / t / 1e9;
    }
    return best;
}

/* Bandwidth loops over each thread's share of the arrays. */
typedef struct {
    float *a, *b, *c;
    size_t n;
    int triad; /* 1: a = b + s c; 0: read a only (sum) */
    double sink[1024];
} bw_job;

#if defined(__x86_64__)
__attribute__((target("avx2"))) static float read_sum_avx2(const float *p, size_t n)
{
    /* software prefetch 4 KB ahead, as the matrix-vector kernels do, so this bound is not below them */
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch((const char *)(p + i + 1024), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + i + 1040), _MM_HINT_T0);
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(p + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(p + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(p + i + 24));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    float t[8], r = 0;
    _mm256_storeu_ps(t, s);
    for (int k = 0; k < 8; k++) r += t[k];
    for (; i < n; i++) r += p[i];
    return r;
}
#endif
#if !defined(__aarch64__)
/* Eight independent sums: what any compiler vectorises, for CPUs without a hand-written loop. */
static float read_sum_portable(const float *p, size_t n)
{
    float r[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) r[k] += p[i + k];
    for (; i < n; i++) r[0] += p[i];
    return r[0] + r[1] + r[2] + r[3] + r[4] + r[5] + r[6] + r[7];
}
#endif

static float read_sum(const float *p, size_t n)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) return read_sum_avx2(p, n);
    return read_sum_portable(p, n);
#elif defined(__aarch64__)
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __builtin_prefetch(p + i + 1024);
        s0 = vaddq_f32(s0, vld1q_f32(p + i));
        s1 = vaddq_f32(s1, vld1q_f32(p + i + 4));
        s2 = vaddq_f32(s2, vld1q_f32(p + i + 8));
        s3 = vaddq_f32(s3, vld1q_f32(p + i + 12));
    }
    float r = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) r += p[i];
    return r;
#else
    return read_sum_portable(p, n);
#endif
}

static void triad(float *restrict a, const float *restrict b, const float *restrict c, size_t n, float s)
{
    for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
}

static void bw_worker(void *arg, int ith, int nth)
{
    bw_job *j = arg;
    size_t lo = j->n * ith / nth, hi = j->n * (ith + 1) / nth;
    lo &= ~(size_t)15, hi = ith == nth - 1 ? j->n : hi & ~(size_t)15;
    if (j->triad) triad(j->a + lo, j->b + lo, j->c + lo, hi - lo, 0.5f);
    else if (ith < 1024) j->sink[ith] = read_sum(j->a + lo, hi - lo);
}

/* GB/s (1e9 bytes) of the triad on three arrays of bytes/3 each, or of reading `bytes` once. Best of
 * reps passes, after one pass that faults the pages in (and, when the data fits, warms the cache). */
static double bandwidth_gbs(sasp_pool *pool, size_t bytes, int is_triad, int reps)
{
    size_t n = bytes / sizeof(float) / (is_triad ? 3 : 1);
    bw_job *j = calloc(1, sizeof *j);
    if (!j) return 0;
    j->n = n, j->triad = is_triad;
    j->a = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    j->b = is_triad ? aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64) : NULL;
    j->c = is_triad ? aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64) : NULL;
    double best = 0;
    if (j->a && (!is_triad || (j->b && j->c))) {
        memset(j->a, 0, n * sizeof(float));
        if (is_triad) memset(j->b, 0, n * sizeof(float)), memset(j->c, 0, n * sizeof(float));
        sasp_pool_run(pool, bw_worker, j);
        for (int r = 0; r < reps; r++) {
            double t = now();
            sasp_pool_run(pool, bw_worker, j);
            t = now() - t;
            double moved = (double)n * sizeof(float) * (is_triad ? 3 : 1);
            if (moved / t / 1e9 > best) best = moved / t / 1e9;
        }
    }
    free(j->a), free(j->b), free(j->c), free(j);
    return best;
}

static long l3_bytes(void)
{
    long v = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
    v = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    if (v <= 0) {
        FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
        if (f) {
            long kb;
            char unit = 'K';
            if (fscanf(f, "%ld%c", &kb, &unit) >= 1) v = unit == 'M' ? kb << 20 : kb << 10;
            fclose(f);
        }
    }
    return v > 0 ? v : 0;
}

typedef struct {
    const char *isa;
    double peak_gflops; /* all threads */
    double triad_gbs;   /* arrays >> L3 */
    size_t triad_bytes;
    long l3;
    double handoff_us; /* one empty run of the pool: what every phase of a step pays to hand out work */
} machine;

/* ---- the model measurements ---- */

typedef struct {
    const char *isa;
    const char *weights;           /* the matrices' type */
    char label[40];                /* "isa weights" */
    double prefill512, prefill256; /* tokens/s */
    double prefill512_gflops, prefill256_gflops;
    double decode[3]; /* batch 1, 4, 8: tokens/s */
    double decode_gflops[3];
    double weight_bytes;                /* read per decoded token (matrices + head) */
    double footprint_gbs;               /* read bandwidth over weight_bytes */
    double decode_bound, prefill_bound; /* roofline tokens/s */
    double decode_bound_dram;
    double of_roofline, b8_over_b1; /* medians of the per-run ratios */
    /* the same from CPU time: tokens per CPU-second (all threads) */
    double cpu_prefill512, cpu_prefill256, cpu_decode[3];
} result;

static const int BATCHES[3] = {1, 4, 8};

/* Multiply-adds of a step over positions [from, to) of one sequence (no head), plus the head for
 * n_logits rows. sasp_model_flops_per_token counts the matrices + head + attention over n_ctx. */
static double step_flops(const sasp_model *m, int from, int to, int n_logits)
{
    double head = (double)m->cfg.d_model * m->cfg.vocab_size;
    double mat = sasp_model_flops_per_token(m, 0) - head;
    double att_per_ctx = sasp_model_flops_per_token(m, 1) - sasp_model_flops_per_token(m, 0);
    double macs = 0;
    for (int p = from; p < to; p++) macs += mat + att_per_ctx * (p + 1);
    return 2.0 * (macs + head * n_logits);
}

/* A loaded model with what measuring it needs: caches for 8 sequences, a prompt, logits. */
typedef struct {
    sasp_model *m;
    sasp_kv *kv[8];
    int *prompt, P, prompt_decode, steps;
    float *logits;
} bench_model;

static int bench_model_init(bench_model *bm, sasp_model *m, const options *o)
{
    int V = m->cfg.vocab_size, ctx = m->cfg.max_seq_len;
    bm->m = m;
    bm->P = 512 < ctx ? 512 : ctx;
    bm->prompt_decode = o->prompt_decode < ctx - 1 ? o->prompt_decode : 1;
    bm->steps = o->decode_tokens;
    if (bm->prompt_decode + bm->steps + 1 > ctx) bm->steps = ctx - bm->prompt_decode - 1;
    bm->prompt = malloc(sizeof(int) * (bm->P + 8));
    bm->logits = malloc(sizeof(float) * (size_t)V * 8);
    if (!bm->prompt || !bm->logits) return -1;
    uint64_t st = 12345;
    for (int i = 0; i < bm->P + 8; i++) bm->prompt[i] = 1 + (int)(tw_rand_u64(&st) % (uint64_t)(V - 1));
    for (int b = 0; b < 8; b++)
        if (!(bm->kv[b] = sasp_kv_new(m, ctx))) return -1;
    return 0;
}

static void bench_model_free(bench_model *bm)
{
    for (int b = 0; b < 8; b++) sasp_kv_free(bm->kv[b]);
    free(bm->prompt), free(bm->logits);
}

/* One prefill of `len` tokens: wall seconds; *cpu gets the process's CPU seconds. */
static double time_prefill(bench_model *bm, int len, double *cpu)
{
    char err[256];
    sasp_kv_reset(bm->kv[0]);
    sasp_step st = {.kv = bm->kv[0], .tokens = bm->prompt, .n_tokens = len, .n_logits = 1, .logits = bm->logits};
    double c = cpu_now(), t = now();
    if (sasp_forward(bm->m, &st, 1, err, sizeof err) != 0) {
        fprintf(stderr, "sasp-bench: prefill failed: %s\n", err);
        exit(1);
    }
    t = now() - t;
    *cpu = cpu_now() - c;
    return t;
}

/* Batched greedy decode: B sequences each prefilled with the decode prompt (not timed), then `steps`
 * steps of one token each. Returns wall seconds for the steps; *cpu gets the process's CPU seconds. */
static double time_decode(bench_model *bm, int B, int steps, double *cpu)
{
    char err[256];
    int V = bm->m->cfg.vocab_size;
    sasp_step st[8];
    int tok[8];
    for (int b = 0; b < B; b++) {
        sasp_kv_reset(bm->kv[b]);
        st[b] = (sasp_step){.kv = bm->kv[b], .tokens = bm->prompt + b, .n_tokens = bm->prompt_decode, .n_logits = 1, .logits = bm->logits + (size_t)b * V};
    }
    if (sasp_forward(bm->m, st, B, err, sizeof err) != 0) {
        fprintf(stderr, "sasp-bench: decode prompt failed: %s\n", err);
        exit(1);
    }
    double c = cpu_now(), t = now();
    for (int s = 0; s < steps; s++) {
        for (int b = 0; b < B; b++) {
            tok[b] = sasp_argmax(bm->logits + (size_t)b * V, V);
            st[b] = (sasp_step){.kv = bm->kv[b], .tokens = &tok[b], .n_tokens = 1, .n_logits = 1, .logits = bm->logits + (size_t)b * V};
        }
        if (sasp_forward(bm->m, st, B, err, sizeof err) != 0) {
            fprintf(stderr, "sasp-bench: decode failed: %s\n", err);
            exit(1);
        }
    }
    t = now() - t;
    *cpu = cpu_now() - c;
    return t;
}

/* what one decoded token reads: every matrix once, in its type */
static double matrix_weight_bytes(const sasp_model *m) { return sasp_model_weight_bytes(m); }

/* One run of every measurement of one (model, kernels) configuration, into sample: wall seconds of
 * prefill512, prefill256, decode b1 / b4 / b8; the footprint read bandwidth in GB/s; then the CPU
 * seconds of the five timed runs. */
#define N_SAMPLE 11
#define CPU0 6
static void sample_once(bench_model *bm, const sasp_kernels *k, double *sample, int warm_up)
{
    sasp_model_set_kernels(bm->m, k);
    int lens[2] = {bm->P, bm->P < 256 ? bm->P : 256};
    for (int l = 0; l < 2; l++) sample[l] = time_prefill(bm, lens[l], &sample[CPU0 + l]);
    for (int bi = 0; bi < 3; bi++)
        sample[2 + bi] = time_decode(bm, BATCHES[bi], warm_up ? 4 : bm->steps, &sample[CPU0 + 2 + bi]);
    sample[5] = warm_up ? 0 : bandwidth_gbs(bm->m->pool, (size_t)matrix_weight_bytes(bm->m), 0, 2);
}

/* The figures of one configuration from its runs (samples[r][N_SAMPLE]). */
static void summarize(const bench_model *bm, const machine *mc, double (*samples)[N_SAMPLE], int reps, result *r)
{
    const sasp_model *m = bm->m;
    double *v = malloc(sizeof(double) * reps), *ratio_roof = malloc(sizeof(double) * reps),
           *ratio_b8 = malloc(sizeof(double) * reps);
    int lens[2] = {bm->P, bm->P < 256 ? bm->P : 256};
    double med[N_SAMPLE];
    for (int c = 0; c < N_SAMPLE; c++) {
        for (int i = 0; i < reps; i++) v[i] = samples[i][c];
        med[c] = median(v, reps);
    }
    r->cpu_prefill512 = lens[0] / med[CPU0], r->cpu_prefill256 = lens[1] / med[CPU0 + 1];
    for (int bi = 0; bi < 3; bi++) r->cpu_decode[bi] = (double)BATCHES[bi] * bm->steps / med[CPU0 + 2 + bi];
    r->prefill512 = lens[0] / med[0], r->prefill512_gflops = step_flops(m, 0, lens[0], 1) / med[0] / 1e9;
    r->prefill256 = lens[1] / med[1], r->prefill256_gflops = step_flops(m, 0, lens[1], 1) / med[1] / 1e9;
    int pl = bm->prompt_decode, steps = bm->steps;
    for (int bi = 0; bi < 3; bi++) {
        r->decode[bi] = (double)BATCHES[bi] * steps / med[2 + bi];
        r->decode_gflops[bi] = BATCHES[bi] * step_flops(m, pl, pl + steps, 1) / med[2 + bi] / 1e9;
    }
    /* rooflines: decode at batch 1 reads the weights and the KV-cache once per token */
    r->weight_bytes = matrix_weight_bytes(m);
    r->footprint_gbs = med[5];
    double bytes = r->weight_bytes + 2.0 * m->cfg.n_layers * m->cfg.d_model * sizeof(float) * (pl + steps / 2.0);
    double t_fl = step_flops(m, pl, pl + steps, 1) / steps / (mc->peak_gflops * 1e9);
    double t_dram = bytes / (mc->triad_gbs * 1e9);
    r->decode_bound_dram = 1.0 / (t_dram > t_fl ? t_dram : t_fl);
    for (int i = 0; i < reps; i++) {
        double t_mem = bytes / (samples[i][5] * 1e9);
        double bound = 1.0 / (t_mem > t_fl ? t_mem : t_fl);
        ratio_roof[i] = (steps / samples[i][2]) / bound;
        ratio_b8[i] = (8.0 * steps / samples[i][4]) / (steps / samples[i][2]);
    }
    double t_mem = bytes / (r->footprint_gbs * 1e9);
    r->decode_bound = 1.0 / (t_mem > t_fl ? t_mem : t_fl);
    r->prefill_bound = mc->peak_gflops * 1e9 / (step_flops(m, 0, lens[0], 1) / lens[0]);
    r->of_roofline = median(ratio_roof, reps);
    r->b8_over_b1 = median(ratio_b8, reps);
    free(v), free(ratio_roof), free(ratio_b8);
}

/* ---- models ---- */

typedef struct {
    const char *name;
    int vocab, d, layers, heads, d_ff, ctx;
} shape;

static const shape SHAPES[2] = {
    {"A", 8192, 256, 6, 4, 1024, 1024},
    {"B", 8192, 512, 8, 8, 2048, 1024},
};

/* A random-weight model of shape s and architecture arch in a temporary directory. */
static char *random_model(const shape *s, const char *arch)
{
    char *dir = tw_tempdir();
    if (!dir) return NULL;
    json_t *cfg = tw_config(arch, "rmsnorm", "rope", "relu", s->vocab, s->d, s->layers, s->heads, s->d_ff,
                            s->ctx, 1);
    tw_model tm = {0};
    tw_options opt = {0};
    int rc = tw_random_model(&tm, cfg, &opt, 42) == 0 && tw_write_model(dir, cfg, &tm, "F32") == 0 ? 0 : -1;
    tw_free(&tm);
    json_decref(cfg);
    if (rc != 0) {
        tw_rmtree(dir);
        free(dir);
        return NULL;
    }
    return dir;
}

/* ---- output ---- */

static json_t *result_json(const result *r)
{
    json_t *j = json_object();
    json_object_set_new(j, "isa", json_string(r->isa));
    json_object_set_new(j, "weights", json_string(r->weights));
#define NUM(key, v) json_object_set_new(j, key, json_real(v))
    NUM("prefill512_tok_s", r->prefill512);
    NUM("prefill512_gflops", r->prefill512_gflops);
    NUM("prefill256_tok_s", r->prefill256);
    NUM("prefill256_gflops", r->prefill256_gflops);
    NUM("decode_b1_tok_s", r->decode[0]);
    NUM("decode_b4_tok_s", r->decode[1]);
    NUM("decode_b8_tok_s", r->decode[2]);
    NUM("decode_b1_gflops", r->decode_gflops[0]);
    NUM("decode_b4_gflops", r->decode_gflops[1]);
    NUM("decode_b8_gflops", r->decode_gflops[2]);
    NUM("weight_bytes_per_token", r->weight_bytes);
    NUM("footprint_read_gbs", r->footprint_gbs);
    NUM("roofline_decode_b1_tok_s", r->decode_bound);
    NUM("roofline_decode_b1_dram_tok_s", r->decode_bound_dram);
    NUM("roofline_prefill_tok_s", r->prefill_bound);
    NUM("decode_b1_of_roofline", r->of_roofline);
    NUM("prefill512_of_peak", r->prefill512 / r->prefill_bound);
    NUM("decode_b8_over_b1", r->b8_over_b1);
    NUM("cpu_prefill512_tok_per_cpu_s", r->cpu_prefill512);
    NUM("cpu_prefill256_tok_per_cpu_s", r->cpu_prefill256);
    NUM("cpu_decode_b1_tok_per_cpu_s", r->cpu_decode[0]);
    NUM("cpu_decode_b4_tok_per_cpu_s", r->cpu_decode[1]);
    NUM("cpu_decode_b8_tok_per_cpu_s", r->cpu_decode[2]);
#undef NUM
    return j;
}

static void print_results(const char *title, const sasp_model *m, const result *r, int n, const result *base,
                          const char *base_name)
{
    const sasp_config *c = &m->cfg;
    printf("\n%s: %s, vocab %d, d_model %d, %d layers, %d heads, d_ff %d; %.1f M weights read per token, "
           "%d threads\n",
           title, c->arch == SASP_ARCH_SASP ? "SAS-P" : "Pre-LN", c->vocab_size, c->d_model, c->n_layers, c->n_heads,
           c->d_ff, sasp_model_flops_per_token(m, 0) / 1e6, sasp_pool_size(m->pool));
    printf("  %-12s %12s %12s %12s %12s %12s %10s %10s %10s\n", "kernels", "prefill512", "prefill256", "decode b1",
           "decode b4", "decode b8", "b8/b1", "b1/roof", "pf/peak");
    printf("  %-12s %12s %12s %12s %12s %12s %10s %10s %10s\n", "weights", "tok/s", "tok/s", "tok/s", "tok/s", "tok/s",
           "", "", "");
    for (int i = 0; i < n; i++) {
        printf("  %-12s %12.0f %12.0f %12.0f %12.0f %12.0f %9.2fx %9.0f%% %9.0f%%\n", r[i].label, r[i].prefill512,
               r[i].prefill256, r[i].decode[0], r[i].decode[1], r[i].decode[2], r[i].b8_over_b1,
               100 * r[i].of_roofline, 100 * r[i].prefill512 / r[i].prefill_bound);
        printf("  %-12s %9.1f GF %9.1f GF %9.1f GF %9.1f GF %9.1f GF\n", "", r[i].prefill512_gflops,
               r[i].prefill256_gflops, r[i].decode_gflops[0], r[i].decode_gflops[1], r[i].decode_gflops[2]);
        printf("  %-12s %12.0f %12.0f %12.0f %12.0f %12.0f %9.2fx   tokens per CPU-second\n", "cpu",
               r[i].cpu_prefill512, r[i].cpu_prefill256, r[i].cpu_decode[0], r[i].cpu_decode[1], r[i].cpu_decode[2],
               r[i].cpu_decode[2] / r[i].cpu_decode[0]);
        if (base)
            printf("  %-12s %11.2fx %11.2fx %11.2fx %11.2fx %11.2fx   (%s / %s)\n", "ratio", r[i].prefill512 / base[i].prefill512,
                   r[i].prefill256 / base[i].prefill256, r[i].decode[0] / base[i].decode[0],
                   r[i].decode[1] / base[i].decode[1], r[i].decode[2] / base[i].decode[2], "this", base_name);
        else if (i > 0)
            printf("  %-12s %11.2fx %11.2fx %11.2fx %11.2fx %11.2fx   (against %s, side by side)\n", "ratio",
                   r[i].prefill512 / r[0].prefill512, r[i].prefill256 / r[0].prefill256, r[i].decode[0] / r[0].decode[0],
                   r[i].decode[1] / r[0].decode[1], r[i].decode[2] / r[0].decode[2], r[0].label);
    }
    for (int i = 0; i < n; i++)
        printf("  roofline %s: decode b1 <= %.0f tok/s (%.1f MB of weights at the footprint read bandwidth %.1f GB/s; "
               "%.0f tok/s at the DRAM triad bandwidth), prefill <= %.0f tok/s (peak f32 FMA)\n",
               r[i].label, r[i].decode_bound, r[i].weight_bytes / 1e6, r[i].footprint_gbs, r[i].decode_bound_dram,
               r[i].prefill_bound);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sasp-bench [-m MODEL_DIR] [-t N] [--json FILE] [--vs-preln] [--shape A|B] [--isa LIST]\n"
            "                  [--reps N] [--decode-tokens N] [--bw-mb MB]\n"
            "  -m DIR           a model directory (default: random-weight models of shapes A and B)\n"
            "  -t N             threads (default: every core)\n"
            "  --json FILE      write every figure as JSON to FILE\n"
            "  --vs-preln       also a Pre-LN model of the same sizes (random weights), with the ratio\n"
            "  --shape A|B      only that shape of docs/performance.md (without -m)\n"
            "  --isa LIST       kernel tables to measure: all, or e.g. scalar,avx2,avx512 (default: the active\n"
            "                   one, which SASP_SIMD=scalar|avx2|avx512|neon picks)\n"
            "  --reps N         runs per figure, the median is reported (default 5)\n"
            "  --decode-tokens N  tokens per decode run after a 32-token prompt (default 128)\n"
            "  --bw-mb MB       total size of the triad arrays (default: 4 x L3, at least 256)\n"
            "  --weights LIST   the matrices' types to measure, side by side: all, or e.g. f32,q8_0 (each\n"
            "                   converted at load), stored, auto (default: stored)\n"
            "  --version        print the version and exit\n");
}

/* --weights: "all" or a comma-separated list of sasp_weights_parse's names into o. 0, or -1. */
static int parse_weights(const char *list, options *o)
{
    if (!strcmp(list, "all")) list = "f32,bf16,q8_0";
    char *copy = strdup(list), *save = NULL;
    o->n_weights = 0;
    int bad = !copy;
    for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok; tok = strtok_r(NULL, ",", &save)) {
        int w = sasp_weights_parse(tok);
        if (w == SASP_WEIGHTS_UNKNOWN || o->n_weights == MAX_WEIGHTS) bad = 1;
        else o->weights[o->n_weights++] = w;
    }
    free(copy);
    return bad || o->n_weights == 0 ? -1 : 0;
}

/* The options into *o. Returns 0; 1 after printing the usage for --help (or the version for --version);
 * 2 after printing the usage for bad arguments. */
static int parse_options(int argc, char **argv, options *o)
{
    static const struct option longopts[] = {
        {"json", required_argument, 0, 'j'}, {"vs-preln", no_argument, 0, 'p'}, {"shape", required_argument, 0, 's'}, {"isa", required_argument, 0, 'i'}, {"reps", required_argument, 0, 'r'}, {"decode-tokens", required_argument, 0, 'd'}, {"bw-mb", required_argument, 0, 'b'}, {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {"weights", required_argument, 0, 'w'}, {0, 0, 0, 0}};
    *o = (options){NULL, 0, 5, 128, 32, 0, NULL, NULL, NULL, 0, {SASP_WEIGHTS_AS_STORED}, 1};
    int c;
    while ((c = getopt_long(argc, argv, "m:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model_dir = optarg; break;
        case 't': o->threads = atoi(optarg); break;
        case 'j': o->json_path = optarg; break;
        case 'p': o->vs_preln = 1; break;
        case 's': o->shape = optarg; break;
        case 'i': o->isa_list = optarg; break;
        case 'r': o->reps = atoi(optarg); break;
        case 'd': o->decode_tokens = atoi(optarg); break;
        case 'b': o->bw_mb = atol(optarg); break;
        case 'w':
            if (parse_weights(optarg, o)) {
                usage(stderr);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 1;
        case 'V': printf("sasp-bench %s\n", SASP_VERSION); return 1;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || o->reps < 1 || o->reps > 1000 || o->decode_tokens < 1 || o->threads < 0 ||
        (o->shape && strcmp(o->shape, "A") && strcmp(o->shape, "B"))) {
        usage(stderr);
        return 2;
    }
    return 0;
}

/* The kernel tables --isa names (default: the active one) into isas[]; returns their count, or -1
 * after a message when one is not available. */
static int choose_isas(const char *isa_list, const sasp_kernels **isas)
{
    const sasp_kernels *avail[MAX_ISAS];
    int n_avail = sasp_kernels_available(avail, MAX_ISAS), n = 0;
    if (!isa_list) {
        isas[n++] = sasp_kernels_active();
    } else if (!strcmp(isa_list, "all")) {
        for (int i = 0; i < n_avail; i++) isas[n++] = avail[i];
    } else {
        char *list = strdup(isa_list), *save = NULL;
        for (char *tok = strtok_r(list, ",", &save); tok && n < MAX_ISAS; tok = strtok_r(NULL, ",", &save)) {
            const sasp_kernels *k = sasp_kernels_by_name(tok);
            if (!k) {
                fprintf(stderr, "sasp-bench: kernel table '%s' is not available on this build or CPU\n", tok);
                free(list);
                return -1;
            }
            isas[n++] = k;
        }
        free(list);
    }
    return n;
}

static void empty_share(void *arg, int ith, int nth) { (void)arg, (void)ith, (void)nth; }

/* Microseconds per sasp_pool_run of a share that does nothing, the best of `reps` bursts of 20,000: the
 * hand-off of a phase (publish, every thread seeing it, every thread reporting back), which a decode
 * step pays twice a layer. It moves cache lines between the cores: on a VM whose vCPUs sit far apart
 * it is a large part of a small model's decode step. */
static double pool_handoff_us(sasp_pool *pool, int reps)
{
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t = now();
        for (int i = 0; i < 20000; i++) sasp_pool_run(pool, empty_share, NULL);
        t = (now() - t) / 20000 * 1e6;
        if (r == 0 || t < best) best = t;
    }
    return best;
}

/* The machine's ceilings with the widest vector ISA, on a pool of o->threads; printed. -1 when the
 * threads cannot start. */
static int measure_machine(const options *o, machine *mc)
{
    const sasp_kernels *avail[MAX_ISAS];
    int n_avail = sasp_kernels_available(avail, MAX_ISAS);
    sasp_pool *pool = sasp_pool_new(o->threads);
    if (!pool) {
        fprintf(stderr, "sasp-bench: cannot start threads\n");
        return -1;
    }
    *mc = (machine){avail[n_avail - 1]->name, 0, 0, 0, l3_bytes(), 0};
    mc->peak_gflops = peak_gflops(pool, mc->isa, 5);
    size_t tb = o->bw_mb > 0 ? (size_t)o->bw_mb << 20 : (size_t)(4 * mc->l3);
    if (tb < ((size_t)256 << 20)) tb = (size_t)256 << 20;
    mc->triad_bytes = tb;
    mc->triad_gbs = bandwidth_gbs(pool, tb, 1, 5);
    mc->handoff_us = pool_handoff_us(pool, 5);
    printf("machine: %d threads; peak FMA (%s, all threads) %.1f GFLOP/s; STREAM triad (%.0f MB arrays) %.1f GB/s; "
           "L3 %.0f MB; pool hand-off %.2f us\n",
           sasp_pool_size(pool), mc->isa, mc->peak_gflops, tb / 1048576.0, mc->triad_gbs, mc->l3 / 1048576.0,
           mc->handoff_us);
    sasp_pool_free(pool);
    return 0;
}

/* The SAS-P model to measure (o->model_dir, or a random one of shape sh) and, for a = 1, its Pre-LN
 * twin of shape sh, its matrices as `weights` says; NULL after a message on failure. */
static sasp_model *load_bench_model(const options *o, const shape *sh, int a, int weights, const char *title)
{
    static const char *const archs[2] = {"sasp", "preln"};
    char err[512], *tmp = NULL;
    const char *dir = o->model_dir;
    if (!dir || a == 1) {
        fprintf(stderr, "sasp-bench: writing a random %s model of %s...\n", archs[a], title);
        if (!(tmp = random_model(sh, archs[a]))) {
            fprintf(stderr, "sasp-bench: cannot write a temporary model\n");
            return NULL;
        }
        dir = tmp;
    }
    sasp_model *m = sasp_model_load_as(dir, o->threads, weights, err, sizeof err);
    if (tmp) tw_rmtree(tmp), free(tmp);
    if (!m) fprintf(stderr, "sasp-bench: %s\n", err);
    return m;
}

static void print_sasp_vs_preln(const result *sasp, const result *preln, int n_isas)
{
    printf("  SAS-P / Pre-LN (wall-clock tokens/s, then tokens per CPU-second):\n");
    for (int i = 0; i < n_isas; i++) {
        const result *a = &sasp[i], *b = &preln[i];
        printf("  %-12s prefill512 %.2fx  prefill256 %.2fx  decode b1 %.2fx  b4 %.2fx  b8 %.2fx   "
               "(Pre-LN / SAS-P weights read per token %.2fx)\n",
               a->label, a->prefill512 / b->prefill512, a->prefill256 / b->prefill256, a->decode[0] / b->decode[0],
               a->decode[1] / b->decode[1], a->decode[2] / b->decode[2], b->weight_bytes / a->weight_bytes);
        printf("  %-12s prefill512 %.2fx  prefill256 %.2fx  decode b1 %.2fx  b4 %.2fx  b8 %.2fx   (CPU time)\n", "",
               a->cpu_prefill512 / b->cpu_prefill512, a->cpu_prefill256 / b->cpu_prefill256,
               a->cpu_decode[0] / b->cpu_decode[0], a->cpu_decode[1] / b->cpu_decode[1],
               a->cpu_decode[2] / b->cpu_decode[2]);
    }
}

static json_t *model_json(const char *title, const sasp_model *m, const options *o, const result *r, int n_isas)
{
    const sasp_config *cf = &m->cfg;
    json_t *jm = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "model", title, "architecture",
                           sasp_arch_names[cf->arch], "vocab_size", cf->vocab_size, "d_model", cf->d_model, "n_layers",
                           cf->n_layers, "n_heads", cf->n_heads, "d_ff", cf->d_ff, "threads", sasp_pool_size(m->pool),
                           "decode_prompt", o->prompt_decode, "decode_tokens", o->decode_tokens);
    json_t *jr = json_array();
    for (int i = 0; i < n_isas; i++) json_array_append_new(jr, result_json(&r[i]));
    json_object_set_new(jm, "results", jr);
    return jm;
}

/* Every measurement of one shape (or of -m's model), with every weight type and kernel table and, with
 * --vs-preln, its Pre-LN twin: printed, and appended to jmodels. A configuration is (architecture,
 * weight type, kernels); the models are loaded once per architecture and weight type. */
static int bench_shape(const options *o, shape sh, const char *title, const sasp_kernels **isas, int n_isas,
                       const machine *mc, json_t *jmodels)
{
    int n_arch = o->vs_preln ? 2 : 1, n_w = o->n_weights, per_arch = n_w * n_isas;
    result res[2][MAX_WEIGHTS * MAX_ISAS];
    sasp_model *models[2][MAX_WEIGHTS] = {{NULL}};
    bench_model bms[2][MAX_WEIGHTS];
    for (int a = 0; a < n_arch; a++)
        for (int w = 0; w < n_w; w++) {
            if (!(models[a][w] = load_bench_model(o, &sh, a, o->weights[w], title))) return -1;
            if (bench_model_init(&bms[a][w], models[a][w], o) != 0) {
                fprintf(stderr, "sasp-bench: out of memory\n");
                return -1;
            }
        }
    /* Runs interleaved: rep r of every configuration before rep r + 1 of any, so that a burst of load
     * on a shared machine hits all of them alike and ratios stay fair. */
    int n_cfg = n_arch * per_arch;
    double(*samples)[N_SAMPLE] = calloc((size_t)n_cfg * (o->reps + 1), sizeof *samples);
    if (!samples) return -1;
    for (int r = 0; r <= o->reps; r++) { /* r = 0: warm-up */
        fprintf(stderr, "sasp-bench: %s, run %d of %d\n", title, r, o->reps);
        for (int c = 0; c < n_cfg; c++) {
            int a = c / per_arch, w = c % per_arch / n_isas, i = c % n_isas;
            sample_once(&bms[a][w], isas[i], samples[(size_t)c * (o->reps + 1) + r], r == 0);
        }
    }
    for (int c = 0; c < n_cfg; c++) {
        int a = c / per_arch, w = c % per_arch / n_isas, i = c % n_isas;
        result *r = &res[a][c % per_arch];
        r->isa = isas[i]->name;
        r->weights = sasp_model_describe(models[a][w]).weights;
        snprintf(r->label, sizeof r->label, "%s %s", isas[i]->id, r->weights);
        summarize(&bms[a][w], mc, samples + (size_t)c * (o->reps + 1) + 1, o->reps, r);
    }
    free(samples);
    print_results(title, models[0][0], res[0], per_arch, NULL, NULL);
    if (o->vs_preln) {
        print_results(title, models[1][0], res[1], per_arch, NULL, NULL);
        print_sasp_vs_preln(res[0], res[1], per_arch);
    }
    for (int a = 0; a < n_arch; a++) {
        json_array_append_new(jmodels, model_json(title, models[a][0], o, res[a], per_arch));
        for (int w = 0; w < n_w; w++) bench_model_free(&bms[a][w]), sasp_model_free(models[a][w]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;
    const sasp_kernels *isas[MAX_ISAS];
    int n_isas = choose_isas(o.isa_list, isas);
    if (n_isas < 0) return 2;
    machine mc;
    if (measure_machine(&o, &mc)) return 1;

    json_t *out = json_object();
    json_object_set_new(out, "machine",
                        json_pack("{s:s, s:f, s:f, s:f, s:f, s:f}", "peak_isa", mc.isa, "peak_fma_gflops",
                                  mc.peak_gflops, "triad_gbs", mc.triad_gbs, "triad_mb", mc.triad_bytes / 1048576.0,
                                  "l3_mb", mc.l3 / 1048576.0, "pool_handoff_us", mc.handoff_us));
    json_t *jmodels = json_array();
    /* the models: -m, or shapes A and B (each with its Pre-LN twin under --vs-preln) */
    int n_runs = o.model_dir ? 1 : o.shape ? 1
                                           : 2;
    for (int s = 0; s < n_runs; s++) {
        shape sh = o.shape ? SHAPES[o.shape[0] - 'A'] : SHAPES[s];
        char title[300];
        if (o.model_dir) { /* the sizes of the given model, for its Pre-LN twin */
            sasp_config cfg;
            char err[512];
            if (sasp_config_load(o.model_dir, &cfg, err, sizeof err) != 0) {
                fprintf(stderr, "sasp-bench: %s\n", err);
                return 1;
            }
            sh = (shape){"model", cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff, cfg.max_seq_len};
            snprintf(title, sizeof title, "%s", o.model_dir);
        } else {
            snprintf(title, sizeof title, "shape %s", sh.name);
        }
        if (bench_shape(&o, sh, title, isas, n_isas, &mc, jmodels)) return 1;
    }
    json_object_set_new(out, "models", jmodels);
    json_object_set_new(out, "reps", json_integer(o.reps));
    if (o.json_path && json_dump_file(out, o.json_path, JSON_INDENT(2)) != 0) {
        fprintf(stderr, "sasp-bench: cannot write %s: %s\n", o.json_path, strerror(errno));
        return 1;
    }
    json_decref(out);
    return 0;
}
