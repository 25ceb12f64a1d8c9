/* check_model.c: the C forward pass against the PyTorch reference, and its KV-cache against itself.
 *
 * Parity: for each architecture (sasp, preln) x norm (rmsnorm, layernorm, none) x position (rope,
 * learned), at two sizes (one odd: d=96, 3 heads, d_ff=200, vocab 301), on sequences longer than 64
 * tokens, the logits at every position must match the reference within 1e-4 relative
 * (max |C - ref| / max |ref|), with every kernel table this CPU runs. When torch is available
 * (HAVE_TORCH=1, TORCH_PYTHON) the models are made fresh by train/make_test_model.py with a new
 * random seed each run (printed, and settable with SASP_PARITY_SEED); otherwise the committed
 * fixtures in tests/fixtures/parity/ (scripts/gen-fixtures.sh) are used.
 *
 * Batch invariance (simd/kernels.h's promise, carried through the forward pass), bit for bit with
 * memcmp, for each weight type (f32, bf16, q8_0: the F32 files converted at load), every kernel table
 * this CPU runs and 1, 2 and 3 threads: prefill(n) then decode one at a time, or in chunks of other
 * sizes, equals one forward over everything; a sequence inside batched steps (with others of other
 * lengths, prefill chunks and single tokens mixed) equals it alone; after a prompt-cache hit
 * (sasp_kv_copy, sasp_kv_truncate) the rest equals a cold prefill; 2 and 3 threads equal 1. On random
 * models written by the test (tests/st_writer.c) with every optional tensor, at odd sizes.
 * sasp_model_describe reports the optional tensors a checkpoint held. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "model/model.h"
#include "st_writer.h"

#ifndef SASP_SRCDIR
#define SASP_SRCDIR "."
#endif
#ifndef SASP_TORCH_PYTHON
#define SASP_TORCH_PYTHON "/usr/bin/python3"
#endif
#ifndef SASP_HAVE_TORCH
#define SASP_HAVE_TORCH 0
#endif

#define PARITY_TOL 1e-4
/* a bf16 model under a table that rounds the activations to bf16 too (SASP_SEM_BF16_ACT): each product
 * is off by up to 2^-8 relative, which the logits show at about 1e-3 */
#define PARITY_TOL_BF16_ACT 2e-2

static char err[1024];

/* max |a - b| / max |b| over n values */
static double rel_err(const float *a, const double *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= num)) num = e; /* NaN counts as the worst */
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    return den > 0 ? num / den : num;
}

static double rel_err_f(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= num)) num = e;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return den > 0 ? num / den : num;
}

/* a and b bit for bit; the message names the first difference and the largest relative one. */
#define expect_same(a, b, n, ...)                                                                          \
    do {                                                                                                   \
        const float *a_ = (a), *b_ = (b);                                                                  \
        size_t n_ = (n), at_ = 0;                                                                          \
        if (memcmp(a_, b_, n_ * sizeof(float)) != 0) {                                                     \
            while (at_ < n_ && memcmp(a_ + at_, b_ + at_, sizeof(float)) == 0) at_++;                      \
            char what_[512];                                                                               \
            snprintf(what_, sizeof what_, __VA_ARGS__);                                                    \
            ck_abort_msg("%s: not bit for bit: first at [%zu] %.9g vs %.9g, max relative difference %.3g", \
                         what_, at_, a_[at_], b_[at_], rel_err_f(a_, b_, n_));                             \
        }                                                                                                  \
    } while (0)

/* One forward over tokens[0..n) from an empty cache; logits for every position. */
static float *full_forward(sasp_model *m, const int *tokens, int n)
{
    float *logits = malloc((size_t)n * m->cfg.vocab_size * sizeof(float));
    sasp_kv *kv = sasp_kv_new(m, 0);
    ck_assert(logits && kv);
    sasp_step st = {.kv = kv, .tokens = tokens, .n_tokens = n, .n_logits = n, .logits = logits};
    ck_assert_msg(sasp_forward(m, &st, 1, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(kv->len, n);
    sasp_kv_free(kv);
    return logits;
}

/* ---- parity with the PyTorch reference ---- */

typedef struct {
    int *tokens;
    int n;
    double *logits; /* [n][vocab] */
    int vocab;
} reference;

static int load_reference(const char *dir, reference *r)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return -1;
    json_t *toks = json_object_get(root, "tokens"), *lg = json_object_get(root, "logits");
    r->n = (int)json_array_size(toks);
    r->vocab = (int)json_array_size(json_array_get(lg, 0));
    r->tokens = malloc((size_t)r->n * sizeof(int));
    r->logits = malloc((size_t)r->n * r->vocab * sizeof(double));
    ck_assert_int_eq(json_array_size(lg), r->n);
    for (int i = 0; i < r->n; i++) {
        r->tokens[i] = (int)json_integer_value(json_array_get(toks, (size_t)i));
        json_t *row = json_array_get(lg, (size_t)i);
        ck_assert_int_eq(json_array_size(row), r->vocab);
        for (int j = 0; j < r->vocab; j++) r->logits[(size_t)i * r->vocab + j] = json_number_value(json_array_get(row, (size_t)j));
    }
    json_decref(root);
    return 0;
}

/* Check one model directory against its reference.json with every kernel table; returns the worst
 * relative error. */
static unsigned covered; /* bits: arch, norm and position values the parity models exercised */

static double parity_one(const char *dir, const char *label)
{
    reference ref;
    ck_assert_msg(load_reference(dir, &ref) == 0, "%s: cannot read reference.json", dir);
    ck_assert_int_gt(ref.n, 64);
    sasp_model *m = sasp_model_load(dir, 1, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_int_eq(m->cfg.vocab_size, ref.vocab);
    covered |= 1u << m->cfg.arch | 1u << (2 + m->cfg.norm) | 1u << (5 + m->cfg.position);
    const sasp_kernels *ks[SASP_KERNELS_MAX];
    int nk = sasp_kernels_available(ks, SASP_KERNELS_MAX);
    int bf16 = strcmp(sasp_model_describe(m).weights, "bf16") == 0;
    double worst = 0;
    for (int i = 0; i < nk; i++) {
        sasp_model_set_kernels(m, ks[i]);
        float *logits = full_forward(m, ref.tokens, ref.n);
        double e = rel_err(logits, ref.logits, (size_t)ref.n * ref.vocab);
        double tol = bf16 && (ks[i]->semantics & SASP_SEM_BF16_ACT) ? PARITY_TOL_BF16_ACT : PARITY_TOL;
        printf("  parity %-46s %-11s %d tokens: max|C-ref|/max|ref| = %.3g\n", label, ks[i]->id, ref.n, e);
        ck_assert_msg(e < tol, "%s (%s): relative error %.3g >= %g", label, ks[i]->id, e, tol);
        if (e > worst && tol == PARITY_TOL) worst = e;
        free(logits);
    }
    sasp_model_free(m);
    free(ref.tokens), free(ref.logits);
    return worst;
}

static int have_torch(void)
{
    const char *env = getenv("HAVE_TORCH");
    if (env) return strcmp(env, "1") == 0;
    return SASP_HAVE_TORCH;
}

static const char *torch_python(void)
{
    const char *env = getenv("TORCH_PYTHON");
    return env && *env ? env : SASP_TORCH_PYTHON;
}

static const char *srcdir(void)
{
    const char *env = getenv("SASP_SRCDIR");
    return env && *env ? env : SASP_SRCDIR;
}

START_TEST(parity_with_pytorch)
{
    static const char *archs[] = {"sasp", "preln"}, *norms[] = {"rmsnorm", "layernorm", "none"},
                      *poss[] = {"rope", "learned"}, *acts[] = {"relu", "gelu", "silu"};
    double worst = 0;
    int models = 0;
    if (have_torch()) {
        unsigned long seed;
        const char *s = getenv("SASP_PARITY_SEED");
        if (s && *s) seed = strtoul(s, NULL, 10);
        else seed = ((unsigned long)time(NULL) ^ ((unsigned long)getpid() << 16)) % 1000000000ul;
        printf("  parity: fresh models from train/make_test_model.py, seed %lu (SASP_PARITY_SEED=%lu repeats)\n",
               seed, seed);
        char *tmp = tw_tempdir();
        ck_assert_ptr_nonnull(tmp);
        /* One python process writes every model (torch imports once): one argument line per model. */
        char listpath[4200], cmd[8192];
        snprintf(listpath, sizeof listpath, "%s/args.txt", tmp);
        FILE *f = fopen(listpath, "w");
        ck_assert_ptr_nonnull(f);
        char labels[40][96];
        int n = 0;
        uint64_t rs = seed;
        for (int size = 0; size < 2; size++)
            for (int a = 0; a < 2; a++)
                for (int no = 0; no < 3; no++)
                    for (int p = 0; p < 2; p++, n++) {
                        /* size 0: d=64, 4 heads; size 1 (odd): d=96, 3 heads, d_ff=200, vocab 301 */
                        int d = size ? 96 : 64, h = size ? 3 : 4, ff = size ? 200 : 160, vocab = size ? 301 : 256;
                        int layers = size ? 2 : 3;
                        const char *act = acts[tw_rand_u64(&rs) % 3];
                        int opts = (int)(tw_rand_u64(&rs) % 32);
                        char extra[200] = "";
                        if (opts & 1) strcat(extra, " --qk-bias");
                        if (opts & 2) strcat(extra, " --untied");
                        if (a == 0) {
                            if (opts & 4) strcat(extra, " --value-layers 0");
                            if (opts & 8) strcat(extra, " --out-layers 1");
                            if (opts & 16) strcat(extra, " --skip-gain");
                        }
                        snprintf(labels[n], sizeof labels[n], "%s-%s-%s d%d %s%s", archs[a], norms[no], poss[p], d,
                                 act, extra);
                        fprintf(f,
                                "--arch %s --norm %s --position %s --activation %s --d-model %d --n-heads %d "
                                "--d-ff %d --vocab %d --n-layers %d --max-seq-len 128 --n-tokens %d --seed %lu%s "
                                "--out %s/m%d\n",
                                archs[a], norms[no], poss[p], act, d, h, ff, vocab, layers, 65 + (int)(tw_rand_u64(&rs) % 40),
                                seed + (unsigned long)n, extra, tmp, n);
                    }
        /* and the two half-precision dtypes, which the reference rounds to before its forward */
        for (int i = 0; i < 2; i++, n++) {
            snprintf(labels[n], sizeof labels[n], "sasp-rmsnorm-rope d96 %s", i ? "BF16" : "F16");
            fprintf(f, "--arch sasp --norm rmsnorm --position rope --dtype %s --value-layers 0 --out-layers 1 "
                       "--n-tokens 70 --seed %lu --out %s/m%d\n",
                    i ? "BF16" : "F16", seed + (unsigned long)n, tmp, n);
        }
        fclose(f);
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && '%s' -c \"import sys; sys.path.insert(0, 'train'); import make_test_model as mt; "
                 "[mt.main(l.split()) for l in open(sys.argv[1]) if l.strip()]\" '%s' >/dev/null",
                 srcdir(), torch_python(), listpath);
        int rc = system(cmd);
        ck_assert_msg(rc == 0, "make_test_model.py failed (%d): %s", rc, cmd);
        for (int i = 0; i < n; i++) {
            char dir[4200];
            snprintf(dir, sizeof dir, "%s/m%d", tmp, i);
            double e = parity_one(dir, labels[i]);
            if (e > worst) worst = e;
            models++;
        }
        tw_rmtree(tmp);
        free(tmp);
    } else {
        char root[4096];
        snprintf(root, sizeof root, "%s/tests/fixtures/parity", srcdir());
        printf("  parity: no torch; committed fixtures in %s\n", root);
        DIR *dh = opendir(root);
        ck_assert_msg(dh != NULL, "%s: cannot open the parity fixtures", root);
        struct dirent *de;
        while ((de = readdir(dh))) {
            if (de->d_name[0] == '.') continue;
            char dir[4400], refp[4500];
            snprintf(dir, sizeof dir, "%s/%s", root, de->d_name);
            snprintf(refp, sizeof refp, "%s/reference.json", dir);
            if (access(refp, R_OK) != 0) continue;
            double e = parity_one(dir, de->d_name);
            if (e > worst) worst = e;
            models++;
        }
        closedir(dh);
    }
    printf("  parity: %d models, worst relative error %.3g (tolerance %g)\n", models, worst, PARITY_TOL);
    /* fresh models cover all 12 combinations; the fixtures at least every value of each */
    ck_assert_int_ge(models, have_torch() ? 12 : 1);
    ck_assert_msg(covered == 0x7f, "the parity models miss an architecture, norm or position (mask 0x%x)", covered);
}
END_TEST

/* ---- KV-cache and batching, on models the test writes ---- */

typedef struct {
    const char *arch, *norm, *pos, *act;
    int vocab, d, layers, heads, ff, seq, tie;
    tw_options opt;
} model_spec;

static const model_spec specs[] = {
    {"sasp", "rmsnorm", "rope", "relu", 301, 96, 2, 3, 200, 128, 1, {1, 1, 2, 1}},
    {"sasp", "layernorm", "learned", "gelu", 37, 12, 3, 3, 7, 96, 0, {0, 5, 0, 0}},
    {"sasp", "none", "rope", "silu", 50, 16, 2, 4, 33, 80, 1, {1, 0, 3, 1}},
    {"preln", "rmsnorm", "rope", "gelu", 64, 24, 2, 2, 40, 100, 0, {1, 0, 0, 0}},
    {"preln", "layernorm", "learned", "relu", 29, 6, 2, 2, 5, 90, 1, {0, 0, 0, 0}}, /* head size 3 */
    {"preln", "none", "rope", "silu", 40, 8, 3, 1, 16, 72, 1, {0, 0, 0, 0}},
};
#define N_SPECS ((int)(sizeof specs / sizeof *specs))

static char *kv_dir[N_SPECS];

static void kv_setup(void)
{
    for (int i = 0; i < N_SPECS; i++) {
        const model_spec *s = &specs[i];
        kv_dir[i] = tw_tempdir();
        ck_assert_ptr_nonnull(kv_dir[i]);
        json_t *c = tw_config(s->arch, s->norm, s->pos, s->act, s->vocab, s->d, s->layers, s->heads, s->ff, s->seq, s->tie);
        tw_model m = {0};
        ck_assert_int_eq(tw_random_model(&m, c, &s->opt, 1000 + (uint64_t)i), 0);
        ck_assert_int_eq(tw_write_model(kv_dir[i], c, &m, "F32"), 0);
        tw_free(&m);
        json_decref(c);
    }
}

static void kv_teardown(void)
{
    for (int i = 0; i < N_SPECS; i++) {
        tw_rmtree(kv_dir[i]);
        free(kv_dir[i]);
    }
}

static int *random_tokens(int n, int vocab, uint64_t seed)
{
    int *t = malloc((size_t)n * sizeof *t);
    for (int i = 0; i < n; i++) t[i] = (int)(tw_rand_u64(&seed) % (uint64_t)vocab);
    return t;
}

/* The weight types the invariance tests load the F32 files as. */
static const sasp_wtype WTYPES[] = {SASP_WT_F32, SASP_WT_BF16, SASP_WT_Q8_0};
#define N_WTYPES 3

/* What a loop test's index _i stands for: spec, weight type, then threads 1..3. */
typedef struct {
    int spec, threads;
    sasp_wtype wt;
    char label[96];
} case_of;

static case_of case_at(int i, int with_threads)
{
    case_of c = {.spec = i % N_SPECS, .wt = WTYPES[(i / N_SPECS) % N_WTYPES], .threads = with_threads ? 1 + i / (N_SPECS * N_WTYPES) : 2};
    const model_spec *s = &specs[c.spec];
    snprintf(c.label, sizeof c.label, "%s-%s-%s d%d %s threads %d", s->arch, s->norm, s->pos, s->d,
             sasp_wtype_name(c.wt), c.threads);
    return c;
}

static sasp_model *load_case(const case_of *c, int threads)
{
    sasp_model *m = sasp_model_load_as(kv_dir[c->spec], threads, (int)c->wt, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_str_eq(sasp_model_describe(m).weights, sasp_wtype_name(c->wt));
    return m;
}

/* prefill(n) then decode the rest one at a time == one forward, bit for bit, for several n; also with
 * chunks of 3, 7 and 24 after the prefill, and again after sasp_kv_reset on the same cache. With 2 or 3
 * threads, the forward also equals the 1-thread one. Every kernel table, every weight type. */
START_TEST(kv_cache_prefill_then_decode)
{
    case_of c = case_at(_i, 1);
    sasp_model *m = load_case(&c, c.threads), *m1 = c.threads > 1 ? load_case(&c, 1) : NULL;
    int V = m->cfg.vocab_size, N = m->cfg.max_seq_len < 75 ? m->cfg.max_seq_len : 75;
    int *tokens = random_tokens(N, V, 77 + (uint64_t)c.spec);
    const sasp_kernels *ks[SASP_KERNELS_MAX];
    int nk = sasp_kernels_available(ks, SASP_KERNELS_MAX);
    for (int ki = 0; ki < nk; ki++) {
        sasp_model_set_kernels(m, ks[ki]);
        float *full = full_forward(m, tokens, N);
        if (m1) {
            sasp_model_set_kernels(m1, ks[ki]);
            float *one = full_forward(m1, tokens, N);
            expect_same(full, one, (size_t)N * V, "%s %s: %d threads against 1", c.label, ks[ki]->id, c.threads);
            free(one);
        }
        float *row = malloc((size_t)N * V * sizeof(float));
        sasp_kv *kv = sasp_kv_new(m, 0);
        static const int splits[] = {1, 2, 7, 24, 33, 64, 74};
        for (size_t si = 0; si < sizeof splits / sizeof *splits; si++) {
            int n = splits[si] < N ? splits[si] : N - 1;
            sasp_kv_reset(kv); /* the same cache each time: reset must really reset */
            sasp_step st = {.kv = kv, .tokens = tokens, .n_tokens = n, .n_logits = n, .logits = row};
            ck_assert_msg(sasp_forward(m, &st, 1, err, sizeof err) == 0, "%s", err);
            expect_same(row, full, (size_t)n * V, "%s %s: a prefill of %d", c.label, ks[ki]->id, n);
            int chunk = si % 4 == 1 ? 3 : si % 4 == 2 ? 7
                                      : si % 4 == 3   ? 24
                                                      : 1;
            for (int at = n; at < N; at += chunk) {
                int len = N - at < chunk ? N - at : chunk;
                sasp_step d1 = {.kv = kv, .tokens = tokens + at, .n_tokens = len, .n_logits = len, .logits = row};
                ck_assert_msg(sasp_forward(m, &d1, 1, err, sizeof err) == 0, "%s", err);
                expect_same(row, full + (size_t)at * V, (size_t)len * V, "%s %s: prefill %d, then rows [%d, %d)",
                            c.label, ks[ki]->id, n, at, at + len);
            }
            ck_assert_int_eq(kv->len, N);
        }
        sasp_kv_free(kv);
        free(full), free(row);
    }
    printf("  kv-cache %s: prefills and decodes of %d tokens bit for bit, %d tables\n", c.label, N, nk);
    free(tokens);
    sasp_model_free(m), sasp_model_free(m1);
}
END_TEST

/* sasp_kv_truncate restores the cache of a prefix exactly: prefill p tokens and keep a copy of the
 * cache, feed more, truncate back to p: keys, values and centring sums are bit for bit the copy's,
 * and feeding the rest again (a prompt-cache hit) gives the logits of a cold prefill of everything,
 * bit for bit; sasp_kv_copy gives another sequence the same state and the same logits. Every weight
 * type, the active table. */
START_TEST(kv_truncate_restores_the_prefix)
{
    case_of c = case_at(_i, 0);
    sasp_model *m = load_case(&c, c.threads);
    const sasp_config *cfg = &m->cfg;
    int V = cfg->vocab_size, N = cfg->max_seq_len < 60 ? cfg->max_seq_len : 60, d = cfg->d_model;
    int *tokens = random_tokens(N, V, 501 + (uint64_t)c.spec);
    float *full = full_forward(m, tokens, N), *row = malloc((size_t)N * V * sizeof(float));
    static const int prefixes[] = {0, 1, 5, 31};
    for (size_t pi = 0; pi < sizeof prefixes / sizeof *prefixes; pi++) {
        int p = prefixes[pi];
        sasp_kv *kv = sasp_kv_new(m, 0), *saved = sasp_kv_new(m, 0), *twin = sasp_kv_new(m, 0);
        if (p > 0) {
            sasp_step st = {.kv = kv, .tokens = tokens, .n_tokens = p};
            ck_assert_msg(sasp_forward(m, &st, 1, err, sizeof err) == 0, "%s", err);
        }
        ck_assert_int_eq(sasp_kv_copy(m, saved, kv, p), 0);
        sasp_step more = {.kv = kv, .tokens = tokens + p, .n_tokens = N - p};
        ck_assert_msg(sasp_forward(m, &more, 1, err, sizeof err) == 0, "%s", err);
        sasp_kv_truncate(m, kv, p);
        ck_assert_int_eq(kv->len, p);
        for (int l = 0; l < cfg->n_layers; l++) {
            size_t at = (size_t)l * kv->cap * d, n = (size_t)p * d;
            ck_assert(memcmp(kv->keys + at, saved->keys + at, n * sizeof(float)) == 0);
            ck_assert(memcmp(kv->values + at, saved->values + at, n * sizeof(float)) == 0);
            if (kv->value_sum && p > 0)
                ck_assert_msg(memcmp(kv->value_sum + (size_t)l * d, saved->value_sum + (size_t)l * d, d * sizeof(double)) == 0,
                              "centring sum of layer %d after truncating to %d", l, p);
        }
        /* the rest again, on the truncated cache and on a copy of it: a cold prefill's logits */
        ck_assert_int_eq(sasp_kv_copy(m, twin, kv, p), 0);
        float *row2 = malloc((size_t)N * V * sizeof(float));
        sasp_step again = {.kv = kv, .tokens = tokens + p, .n_tokens = N - p, .n_logits = N - p, .logits = row};
        sasp_step twin_step = {.kv = twin, .tokens = tokens + p, .n_tokens = N - p, .n_logits = N - p, .logits = row2};
        ck_assert_msg(sasp_forward(m, &again, 1, err, sizeof err) == 0, "%s", err);
        ck_assert_msg(sasp_forward(m, &twin_step, 1, err, sizeof err) == 0, "%s", err);
        expect_same(row, row2, (size_t)(N - p) * V, "%s: prefix %d, truncated cache against its copy", c.label, p);
        expect_same(row, full + (size_t)p * V, (size_t)(N - p) * V, "%s: prefix %d reused against a cold prefill",
                    c.label, p);
        free(row2);
        sasp_kv_free(kv), sasp_kv_free(saved), sasp_kv_free(twin);
    }
    sasp_kv *small = sasp_kv_new(m, 4), *big = sasp_kv_new(m, 0);
    ck_assert_int_eq(sasp_kv_copy(m, small, big, 0), 0);
    sasp_kv_free(small), sasp_kv_free(big);
    free(tokens), free(full), free(row);
    sasp_model_free(m);
}
END_TEST

/* The final hidden states: hidden W_head^T is the logits (the head is one product on them), and a
 * sequence's hidden states do not depend on the rows asked for or on what else is in the step. */
START_TEST(hidden_states_feed_the_head)
{
    int spec = _i % N_SPECS;
    sasp_model *m = sasp_model_load(kv_dir[spec], 1, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    int V = m->cfg.vocab_size, d = m->cfg.d_model, N = 20;
    int *tokens = random_tokens(N, V, 909 + (uint64_t)spec);
    float *logits = malloc((size_t)N * V * sizeof(float)), *hidden = malloc((size_t)N * d * sizeof(float));
    sasp_kv *kv = sasp_kv_new(m, 0);
    sasp_step st = {.kv = kv, .tokens = tokens, .n_tokens = N, .n_logits = N, .logits = logits, .n_hidden = N, .hidden = hidden};
    ck_assert_msg(sasp_forward(m, &st, 1, err, sizeof err) == 0, "%s", err);
    const float *head = m->lm_head.data; /* f32: the fixtures are F32 */
    double worst = 0, scale = 0;
    for (int t = 0; t < N; t++)
        for (int v = 0; v < V; v++) {
            double dot = 0;
            for (int i = 0; i < d; i++) dot += (double)hidden[(size_t)t * d + i] * head[(size_t)v * d + i];
            double e = fabs(dot - logits[(size_t)t * V + v]);
            if (e > worst) worst = e;
            if (fabs(dot) > scale) scale = fabs(dot);
        }
    ck_assert_msg(worst <= 1e-4 * scale, "hidden W^T differs from the logits by %.3g (scale %.3g)", worst, scale);
    /* the last 3 rows alone, next to another sequence, without logits */
    float *last = malloc(3 * (size_t)d * sizeof(float));
    sasp_kv *kv2 = sasp_kv_new(m, 0), *other = sasp_kv_new(m, 0);
    sasp_step two[2] = {{.kv = other, .tokens = tokens + 3, .n_tokens = 9},
                        {.kv = kv2, .tokens = tokens, .n_tokens = N, .n_hidden = 3, .hidden = last}};
    ck_assert_msg(sasp_forward(m, two, 2, err, sizeof err) == 0, "%s", err);
    expect_same(last, hidden + (size_t)(N - 3) * d, 3 * (size_t)d, "hidden states next to another sequence");
    sasp_step bad = {.kv = kv2, .tokens = tokens, .n_tokens = 1, .n_logits = 0, .logits = NULL, .n_hidden = 2, .hidden = last};
    ck_assert_int_eq(sasp_forward(m, &bad, 1, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "hidden states"));
    free(tokens), free(logits), free(hidden), free(last);
    sasp_kv_free(kv), sasp_kv_free(kv2), sasp_kv_free(other);
    sasp_model_free(m);
}
END_TEST

/* Several sequences in one step (different lengths, prefill chunks and single tokens mixed, logits
 * for all, some or none of the rows, sometimes sitting a step out) == each sequence run alone, bit for
 * bit. Every kernel table, every weight type, threads 1, 2, 3. */
START_TEST(batched_step_equals_alone)
{
    case_of c = case_at(_i, 1);
    sasp_model *m = load_case(&c, c.threads);
    int V = m->cfg.vocab_size;
    enum { NS = 5 };
    const sasp_kernels *ks[SASP_KERNELS_MAX];
    int nk = sasp_kernels_available(ks, SASP_KERNELS_MAX), steps_run = 0;
    for (int ki = 0; ki < nk; ki++) {
        sasp_model_set_kernels(m, ks[ki]);
        int len[NS] = {70, 3, 41, 66, 1};
        int *toks[NS];
        float *alone[NS], *out[NS];
        sasp_kv *kv[NS];
        for (int s = 0; s < NS; s++) {
            if (len[s] > m->cfg.max_seq_len) len[s] = m->cfg.max_seq_len;
            toks[s] = random_tokens(len[s], V, 500 + (uint64_t)s * 31 + (uint64_t)c.spec);
            alone[s] = full_forward(m, toks[s], len[s]);
            kv[s] = sasp_kv_new(m, len[s] + 2); /* small caches: capacity below max_seq_len */
            out[s] = malloc((size_t)len[s] * V * sizeof(float));
        }
        uint64_t rs = 9 + (uint64_t)c.spec + 7 * (uint64_t)ki;
        for (;;) {
            sasp_step st[NS];
            int idx[NS], ns = 0;
            for (int s = 0; s < NS; s++) {
                int left = len[s] - kv[s]->len;
                if (left == 0 || tw_rand_u64(&rs) % 4 == 0) continue;                  /* sometimes sits a step out */
                int n = kv[s]->len == 0 ? 1 + (int)(tw_rand_u64(&rs) % (uint64_t)left) /* a prefill chunk */
                                        : (tw_rand_u64(&rs) % 3 ? 1 : 1 + (int)(tw_rand_u64(&rs) % (uint64_t)left));
                int nl = (int)(tw_rand_u64(&rs) % 3);
                nl = nl == 0 ? 0 : nl == 1 ? 1
                                           : n;
                st[ns] = (sasp_step){.kv = kv[s], .tokens = toks[s] + kv[s]->len, .n_tokens = n, .n_logits = nl, .logits = out[s] + (size_t)(kv[s]->len + n - nl) * V};
                idx[ns++] = s;
            }
            int done = 1;
            for (int s = 0; s < NS; s++) done &= kv[s]->len == len[s];
            if (done) break;
            if (ns == 0) continue;
            int before[NS];
            for (int j = 0; j < ns; j++) before[j] = kv[idx[j]]->len;
            ck_assert_msg(sasp_forward(m, st, ns, err, sizeof err) == 0, "%s", err);
            steps_run++;
            for (int j = 0; j < ns; j++) {
                int s = idx[j], first = before[j] + st[j].n_tokens - st[j].n_logits;
                ck_assert_int_eq(kv[s]->len, before[j] + st[j].n_tokens);
                expect_same(out[s] + (size_t)first * V, alone[s] + (size_t)first * V, (size_t)st[j].n_logits * V,
                            "%s %s: sequence %d rows [%d, %d) in a step of %d sequences against alone", c.label,
                            ks[ki]->id, s, first, kv[s]->len, ns);
            }
        }
        for (int s = 0; s < NS; s++) free(toks[s]), free(alone[s]), free(out[s]), sasp_kv_free(kv[s]);
    }
    printf("  batched %s: %d steps of up to %d sequences bit for bit, %d tables\n", c.label, steps_run, NS, nk);
    sasp_model_free(m);
}
END_TEST

/* Bad steps are refused with a message and change nothing. */
START_TEST(bad_steps_change_nothing)
{
    sasp_model *m = sasp_model_load(kv_dir[0], 2, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    int V = m->cfg.vocab_size;
    sasp_kv *a = sasp_kv_new(m, 8), *b = sasp_kv_new(m, 0);
    ck_assert_int_eq(a->cap, 8);
    ck_assert_int_eq(b->cap, m->cfg.max_seq_len);
    int good[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, bad[2] = {3, V};
    float *logits = malloc(10 * (size_t)V * sizeof(float));
    sasp_step st[2] = {{.kv = a, .tokens = good, .n_tokens = 3, .n_logits = 1, .logits = logits}, {.kv = b, .tokens = bad, .n_tokens = 2, .n_logits = 1, .logits = logits + V}};
    ck_assert_int_eq(sasp_forward(m, st, 2, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "outside the vocabulary"), "%s", err);
    ck_assert_int_eq(a->len, 0);
    ck_assert_int_eq(b->len, 0);
    bad[1] = -1;
    ck_assert_int_eq(sasp_forward(m, st, 2, err, sizeof err), -1);
    st[1].tokens = good;
    st[0].n_tokens = 9; /* over a's capacity of 8 */
    ck_assert_int_eq(sasp_forward(m, st, 2, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "exceed its context"), "%s", err);
    st[0].n_tokens = 3;
    st[1].kv = a; /* one cache twice */
    ck_assert_int_eq(sasp_forward(m, st, 2, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "share one cache"), "%s", err);
    ck_assert_int_eq(a->len, 0);
    st[1].kv = b;
    ck_assert_msg(sasp_forward(m, st, 2, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(a->len, 3);
    ck_assert_int_eq(b->len, 2);
    free(logits);
    sasp_kv_free(a), sasp_kv_free(b);
    sasp_model_free(m);
}
END_TEST

/* sasp_model_describe reports what the checkpoint held: specs[0] is sasp with 2 layers, W_V in layer 0
 * (wv_mask 1), W_O in layer 1 (wo_mask 2), skip gains and q/k biases; specs[3] is preln (W_V and W_O in
 * every layer) with q/k biases. */
START_TEST(describe_reports_the_checkpoint)
{
    sasp_model *m = sasp_model_load(kv_dir[0], 2, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    sasp_model_info info = sasp_model_describe(m);
    ck_assert_str_eq(info.dir, kv_dir[0]);
    ck_assert_int_eq(info.layers_with_wv, 1);
    ck_assert_int_eq(info.layers_with_wo, 1);
    ck_assert_int_eq(info.layers_with_skip, 2);
    ck_assert(info.qk_bias);
    ck_assert_int_eq(info.threads, 2);
    ck_assert_str_eq(info.kernels, sasp_kernels_active()->name);
    size_t d = 96, F = 200, layer = d + 2 * (d * d + d) + 3 * 3 + 3 + 2 * F * d;
    ck_assert_uint_eq(info.n_params, 301 * d + 2 * layer + 2 * d * d + d);
    sasp_model_free(m);

    m = sasp_model_load(kv_dir[3], 1, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    info = sasp_model_describe(m);
    ck_assert_int_eq(info.layers_with_wv, 2);
    ck_assert_int_eq(info.layers_with_wo, 2);
    ck_assert_int_eq(info.layers_with_skip, 0);
    ck_assert(info.qk_bias);
    ck_assert_int_eq(info.threads, 1);
    sasp_model_free(m);
}
END_TEST

START_TEST(threadpool_covers_every_item)
{
    for (int nth = 1; nth <= 5; nth++) {
        sasp_pool *p = sasp_pool_new(nth);
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(sasp_pool_size(p), nth);
        for (int n = 0; n < 40; n += 3) {
            int seen = 0, prev_hi = 0;
            for (int i = 0; i < nth; i++) {
                int lo, hi;
                sasp_split(n, i, nth, &lo, &hi);
                ck_assert_int_eq(lo, prev_hi);
                ck_assert_int_ge(hi, lo);
                ck_assert_int_le(hi - lo, n / nth + 1);
                seen += hi - lo;
                prev_hi = hi;
            }
            ck_assert_int_eq(seen, n);
        }
        sasp_pool_free(p);
    }
}
END_TEST

static int counts[8];
static void count_fn(void *arg, int ith, int nth)
{
    (void)arg;
    ck_assert_int_lt(ith, nth);
    __atomic_add_fetch(&counts[ith], 1, __ATOMIC_RELAXED);
}

START_TEST(threadpool_runs_each_thread_once_per_run)
{
    sasp_pool *p = sasp_pool_new(4);
    memset(counts, 0, sizeof counts);
    for (int r = 0; r < 1000; r++) sasp_pool_run(p, count_fn, NULL);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(counts[i], 1000);
    sasp_pool_free(p);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("model");
    TCase *tp = tcase_create("parity");
    tcase_set_timeout(tp, 900);
    tcase_add_test(tp, parity_with_pytorch);
    suite_add_tcase(s, tp);
    TCase *tk = tcase_create("kv-cache");
    tcase_set_timeout(tk, 600);
    tcase_add_unchecked_fixture(tk, kv_setup, kv_teardown);
    tcase_add_loop_test(tk, kv_cache_prefill_then_decode, 0, 3 * N_WTYPES * N_SPECS);
    tcase_add_loop_test(tk, batched_step_equals_alone, 0, 3 * N_WTYPES * N_SPECS);
    tcase_add_loop_test(tk, kv_truncate_restores_the_prefix, 0, N_WTYPES * N_SPECS);
    tcase_add_loop_test(tk, hidden_states_feed_the_head, 0, N_SPECS);
    tcase_add_test(tk, bad_steps_change_nothing);
    tcase_add_test(tk, describe_reports_the_checkpoint);
    suite_add_tcase(s, tk);
    TCase *tt = tcase_create("threadpool");
    tcase_add_test(tt, threadpool_covers_every_item);
    tcase_add_test(tt, threadpool_runs_each_thread_once_per_run);
    suite_add_tcase(s, tt);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
