/* check_sampler.c: the sampler chain against a straightforward float64 reference written here from
 * sampler.h's description (every sampler, random chains in random orders, random parameters, logits
 * and histories, tiny, odd and larger vocabularies), DRY against a naive reference on random histories
 * with sequence breakers tokenised by the fill-in-the-middle test tokenizer, llama.cpp's own DRY test
 * values, the RNG, greedy mode, the logit biases' and the penalties' exact semantics, logprobs and post-sampling
 * probabilities, xtc's coin, the empirical frequencies of the draw, sampler names, and llama.cpp's
 * infill step. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text/sampler.h"
#include "text/tokenizer.h"

#ifndef SASP_SRCDIR
#define SASP_SRCDIR "."
#endif

static double frand(sasp_rng *r, double lo, double hi) { return lo + (hi - lo) * sasp_rng_uniform(r); }
static int irand(sasp_rng *r, int n) { return (int)(sasp_rng_next(r) % (uint64_t)n); }
#define PICK(r, arr) (arr)[irand(r, (int)(sizeof(arr) / sizeof *(arr)))]

static sasp_tokenizer *load_fim_tokenizer(void)
{
    char path[4200], err[256];
    const char *src = getenv("SASP_SRCDIR");
    snprintf(path, sizeof path, "%s/tests/fixtures/tiny-fim/tokenizer.json", src && *src ? src : SASP_SRCDIR);
    sasp_tokenizer *t = sasp_tokenizer_load(path, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    return t;
}

/* --- the reference: each sampler written the obvious way, over full sorts --- */

typedef struct {
    int id;
    double v;
} ref_c;

static int ref_cmp(const void *a, const void *b)
{
    const ref_c *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->id - y->id;
}

static void ref_sort(ref_c *c, int n) { qsort(c, (size_t)n, sizeof *c, ref_cmp); }

static void ref_softmax(const ref_c *c, int n, double *p)
{
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) mx = fmax(mx, c[i].v);
    for (int i = 0; i < n; i++) s += p[i] = exp(c[i].v - mx);
    for (int i = 0; i < n; i++) p[i] /= s;
}

/* A DRY breaker as tokens: its first token, then the ones that must follow. */
typedef struct {
    int ids[24];
    int n;
} ref_breaker;

typedef struct {
    const int *hist;
    int n_hist;
    const int *gen;
    int n_gen;
    const ref_breaker *brk;
    int n_brk;
} ref_ctx;

static void ref_penalties(ref_c *c, int n, const ref_ctx *x, const sasp_sampling *p)
{
    for (int i = 0; i < n; i++) {
        if (p->repeat_penalty != 1.0f && p->repeat_last_n != 0) {
            int w = p->repeat_last_n < 0 || p->repeat_last_n > x->n_hist ? x->n_hist : p->repeat_last_n, seen = 0;
            for (int k = x->n_hist - w; k < x->n_hist; k++) seen |= x->hist[k] == c[i].id;
            if (seen) c[i].v = c[i].v > 0 ? c[i].v / p->repeat_penalty : c[i].v * p->repeat_penalty;
        }
        int cnt = 0;
        for (int k = 0; k < x->n_gen; k++) cnt += x->gen[k] == c[i].id;
        if (cnt) c[i].v -= cnt * (double)p->frequency_penalty + p->presence_penalty;
    }
}

/* DRY, naively: the breaker occurrence whose first token is latest bounds the repeats; then for each
 * earlier position, the repeat that ends there, compared token by token. */
static void ref_dry(ref_c *c, int n, const ref_ctx *x, const sasp_sampling *p)
{
    if (p->dry_multiplier == 0 || p->dry_base < 1 || p->dry_penalty_last_n == 0) return;
    int w = p->dry_penalty_last_n < 0 || p->dry_penalty_last_n > x->n_hist ? x->n_hist : p->dry_penalty_last_n;
    const int *t = x->hist + x->n_hist - w;
    if (w <= p->dry_allowed_length) return;
    int best_at = -1, best_len = -1;
    for (int b = 0; b < x->n_brk; b++) {
        const ref_breaker *br = &x->brk[b];
        for (int at = 0; at + br->n <= w; at++) {
            if (memcmp(t + at, br->ids, (size_t)br->n * sizeof *t)) continue;
            if (at > best_at || (at == best_at && br->n - 1 > best_len)) best_at = at, best_len = br->n - 1;
        }
    }
    int limit = best_at < 0 ? w : w - 1 - best_at - best_len;
    if (limit < p->dry_allowed_length) return;
    for (int i = 0; i < n; i++) {
        int whole = 0, longest = -1;
        for (int b = 0; b < x->n_brk; b++) whole |= x->brk[b].n == 1 && x->brk[b].ids[0] == c[i].id;
        if (whole) continue;
        for (int j = 0; j + 1 < w; j++) {
            if (t[j + 1] != c[i].id) continue;
            int m = 0;
            while (m <= j && t[j - m] == t[w - 1 - m]) m++;
            if (m > limit) m = limit;
            if (m >= p->dry_allowed_length && m > longest) longest = m;
        }
        if (longest < 0) continue;
        int e = longest - p->dry_allowed_length;
        int cap = p->dry_base > 1.000001f ? (int)(88.7228391f / logf(p->dry_base)) : 0;
        if (cap > 0 && e > cap) e = cap;
        c[i].v -= fmin((double)p->dry_multiplier * pow(p->dry_base, e), FLT_MAX);
    }
}

static int ref_keep_at_least(ref_c *c, int n, double floor)
{
    int m = 0;
    for (int i = 0; i < n; i++)
        if (c[i].v >= floor) c[m++] = c[i];
    return m;
}

static int ref_top_n_sigma(ref_c *c, int n, double k)
{
    if (k <= 0 || n <= 1) return n;
    double mx = -INFINITY, mean = 0, var = 0;
    for (int i = 0; i < n; i++) mx = fmax(mx, c[i].v), mean += c[i].v / n;
    for (int i = 0; i < n; i++) var += (c[i].v - mean) * (c[i].v - mean) / n;
    return ref_keep_at_least(c, n, mx - k * sqrt(var));
}

typedef struct {
    double score;
    int pos;
} ref_rank;

static int rank_cmp(const void *a, const void *b)
{
    const ref_rank *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    return x->pos - y->pos;
}

static int ref_typical(ref_c *c, int n, double typ, int min_keep)
{
    if (typ >= 1) return n;
    ref_sort(c, n);
    double *p = malloc((size_t)n * sizeof *p), h = 0;
    ref_rank *r = malloc((size_t)n * sizeof *r);
    ref_c *copy = malloc((size_t)n * sizeof *copy);
    ref_softmax(c, n, p);
    for (int i = 0; i < n; i++)
        if (p[i] > 0) h -= p[i] * log(p[i]);
    for (int i = 0; i < n; i++) r[i] = (ref_rank){fabs(-log(p[i]) - h), i};
    qsort(r, (size_t)n, sizeof *r, rank_cmp);
    int keep = n;
    double cum = 0;
    for (int i = 0; i < n; i++) {
        cum += p[r[i].pos];
        if (cum > typ && i + 1 >= min_keep) {
            keep = i + 1;
            break;
        }
    }
    memcpy(copy, c, (size_t)n * sizeof *c);
    for (int i = 0; i < keep; i++) c[i] = copy[r[i].pos];
    free(p), free(r), free(copy);
    return keep;
}

static int ref_top_p(ref_c *c, int n, double top_p, int min_keep)
{
    if (top_p >= 1) return n;
    ref_sort(c, n);
    double *p = malloc((size_t)n * sizeof *p), cum = 0;
    ref_softmax(c, n, p);
    int keep = n;
    for (int i = 0; i < n; i++) {
        cum += p[i];
        if (cum >= top_p && i + 1 >= min_keep) {
            keep = i + 1;
            break;
        }
    }
    free(p);
    return keep;
}

static int ref_min_p(ref_c *c, int n, double min_p, int min_keep)
{
    if (min_p <= 0) return n;
    double mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = fmax(mx, c[i].v);
    int pass = 0;
    for (int i = 0; i < n; i++) pass += exp(c[i].v - mx) >= min_p;
    if (pass > 0 && pass >= min_keep) return ref_keep_at_least(c, n, mx + log(min_p));
    ref_sort(c, n);
    return min_keep <= 1 ? 1 : min_keep < n ? min_keep
                                            : n;
}

static int ref_xtc(ref_c *c, int n, const sasp_sampling *p) /* probability 0 or 1 only */
{
    if (p->xtc_probability <= 0 || p->xtc_threshold > 0.5f || n < 2) return n;
    ref_sort(c, n);
    double *pr = malloc((size_t)n * sizeof *pr);
    ref_softmax(c, n, pr);
    int above = 0;
    while (above < n && pr[above] >= p->xtc_threshold) above++;
    free(pr);
    int drop = above - 1;
    if (drop <= 0 || n - drop < p->min_keep) return n;
    memmove(c, c + drop, (size_t)(n - drop) * sizeof *c);
    return n - drop;
}

static int ref_temperature(ref_c *c, int n, const sasp_sampling *p)
{
    double t = p->temperature;
    if (p->dynatemp_range > 0) {
        if (n <= 1) return n;
        double *pr = malloc((size_t)n * sizeof *pr), h = 0;
        ref_softmax(c, n, pr);
        for (int i = 0; i < n; i++)
            if (pr[i] > 0) h -= pr[i] * log(pr[i]);
        free(pr);
        double lo = fmax(0, t - p->dynatemp_range), hi = t + p->dynatemp_range;
        t = lo + (hi - lo) * pow(h / log(n), p->dynatemp_exponent);
    }
    if (t <= 0) {
        ref_sort(c, n);
        return 1;
    }
    for (int i = 0; i < n; i++) c[i].v /= t;
    return n;
}

/* The candidates of logits (finite ones), through p's chain: the final distribution in c (v = p),
 * sorted. Returns its size. */
static int ref_chain(const float *logits, int V, const sasp_sampling *p, const ref_ctx *x, ref_c *c)
{
    int n = 0;
    for (int j = 0; j < V; j++)
        if (isfinite(logits[j])) c[n++] = (ref_c){j, logits[j]};
    for (int k = 0; k < p->n_chain && n > 1; k++) {
        switch (p->chain[k]) {
        case SASP_SMP_PENALTIES: ref_penalties(c, n, x, p); break;
        case SASP_SMP_DRY: ref_dry(c, n, x, p); break;
        case SASP_SMP_TOP_N_SIGMA: n = ref_top_n_sigma(c, n, p->top_n_sigma); break;
        case SASP_SMP_TOP_K:
            if (p->top_k > 0 && p->top_k < n) ref_sort(c, n), n = p->top_k;
            break;
        case SASP_SMP_TYPICAL_P: n = ref_typical(c, n, p->typical_p, p->min_keep); break;
        case SASP_SMP_TOP_P: n = ref_top_p(c, n, p->top_p, p->min_keep); break;
        case SASP_SMP_MIN_P: n = ref_min_p(c, n, p->min_p, p->min_keep); break;
        case SASP_SMP_XTC: n = ref_xtc(c, n, p); break;
        case SASP_SMP_TEMPERATURE: n = ref_temperature(c, n, p); break;
        default: ck_abort_msg("no reference for sampler %d", p->chain[k]);
        }
    }
    ref_sort(c, n);
    double *pr = malloc((size_t)n * sizeof *pr);
    ref_softmax(c, n, pr);
    for (int i = 0; i < n; i++) c[i].v = pr[i];
    free(pr);
    return n;
}

/* The logprob reference: penalties and DRY (when in the chain) over the whole vocabulary. */
static void ref_penalised(const float *logits, int V, const sasp_sampling *p, const ref_ctx *x, double *out)
{
    ref_c *c = malloc((size_t)V * sizeof *c);
    for (int j = 0; j < V; j++) c[j] = (ref_c){j, logits[j]};
    int pen = 0, dry = 0;
    for (int k = 0; k < p->n_chain; k++) pen |= p->chain[k] == SASP_SMP_PENALTIES, dry |= p->chain[k] == SASP_SMP_DRY;
    if (pen) ref_penalties(c, V, x, p);
    if (dry) ref_dry(c, V, x, p);
    for (int j = 0; j < V; j++) out[j] = c[j].v;
    free(c);
}

/* --- random cases --- */

static void random_params(sasp_rng *r, int V, sasp_sampling *p)
{
    sasp_sampling_defaults(p);
    static const float temps[] = {0, 0.3f, 0.8f, 1, 1.7f}, ranges[] = {0, 0, 0.5f, 1.5f}, exps[] = {1, 0.5f, 2};
    static const float tps[] = {1, 0.95f, 0.5f, 0.1f, 0}, mps[] = {0, 0.05f, 0.3f, 1}, typs[] = {1, 1, 0.9f, 0.5f, 0};
    static const float sigmas[] = {-1, -1, 0.5f, 1, 2}, xps[] = {0, 0, 1}, xts[] = {0.1f, 0.05f, 0.3f, 0.6f};
    static const float rps[] = {1, 1.1f, 1.5f, 0.8f}, dms[] = {0, 0.8f, 2}, dbs[] = {1.75f, 1.1f, 1.0f, 3, 0.5f};
    static const int rls[] = {64, 0, -1, 3}, mks[] = {0, 0, 1, 3}, das[] = {0, 1, 2, 4}, dls[] = {64, -1, 0, 5, 1};
    p->temperature = PICK(r, temps);
    p->dynatemp_range = PICK(r, ranges);
    p->dynatemp_exponent = PICK(r, exps);
    int ks[] = {0, 1, 2, 5, 40, V, V + 3};
    p->top_k = PICK(r, ks);
    p->top_p = PICK(r, tps);
    p->min_p = PICK(r, mps);
    p->typical_p = PICK(r, typs);
    p->top_n_sigma = PICK(r, sigmas);
    p->xtc_probability = PICK(r, xps);
    p->xtc_threshold = PICK(r, xts);
    p->min_keep = PICK(r, mks);
    p->repeat_penalty = PICK(r, rps);
    p->repeat_last_n = PICK(r, rls);
    p->frequency_penalty = (float)frand(r, -1, 1);
    p->presence_penalty = (float)frand(r, -1, 1);
    p->dry_multiplier = PICK(r, dms);
    p->dry_base = PICK(r, dbs);
    p->dry_allowed_length = PICK(r, das);
    p->dry_penalty_last_n = PICK(r, dls);
    p->seed = sasp_rng_next(r);
    if (irand(r, 4)) { /* a random chain (duplicates allowed); else llama.cpp's default */
        p->n_chain = irand(r, 13);
        for (int i = 0; i < p->n_chain; i++) p->chain[i] = (unsigned char)irand(r, SASP_SMP_INFILL);
    }
}

/* History tokens: from a small alphabet half of the time, so that repeats happen. */
static void random_history(sasp_rng *r, int V, int *hist, int n)
{
    int alphabet = irand(r, 2) ? V : 1 + irand(r, V < 4 ? V : 4);
    for (int i = 0; i < n; i++) hist[i] = irand(r, alphabet);
}

/* Random parameters, chains, history and logits, for every vocabulary size: the sampler's distribution
 * must equal the reference's, candidate for candidate; logprobs and post-sampling probabilities too. */
START_TEST(test_dist_matches_reference)
{
    static const int sizes[] = {1, 2, 3, 7, 64, 101, 1000, 4099};
    sasp_rng r;
    sasp_rng_seed(&r, 1234 + (uint64_t)_i);
    int V = sizes[_i];
    float *logits = malloc((size_t)V * sizeof *logits);
    double *pen = malloc((size_t)V * sizeof *pen);
    ref_c *ref = malloc((size_t)V * sizeof *ref);
    int hist[300];
    for (int trial = 0; trial < 150; trial++) {
        sasp_sampling p;
        random_params(&r, V, &p);
        sasp_sampler *s = sasp_sampler_new(V, &p);
        ck_assert_ptr_nonnull(s);
        int n_prompt = irand(&r, 150), n_gen = irand(&r, 150);
        random_history(&r, V, hist, n_prompt + n_gen);
        for (int i = 0; i < n_prompt + n_gen; i++) sasp_sampler_accept(s, hist[i], i >= n_prompt);
        ref_ctx x = {hist, n_prompt + n_gen, hist + n_prompt, n_gen, NULL, 0};
        double scale = frand(&r, 0.1, 8);
        for (int j = 0; j < V; j++) logits[j] = (float)(scale * (frand(&r, -1, 1) + frand(&r, -1, 1)));
        if (V > 2 && irand(&r, 4) == 0) logits[irand(&r, V)] = -INFINITY; /* a forbidden token */
        int nr = ref_chain(logits, V, &p, &x, ref);
        const sasp_candidate *cand;
        int n = sasp_sampler_dist(s, logits, &cand);
        ck_assert_msg(n == nr, "V %d trial %d: %d candidates, the reference %d", V, trial, n, nr);
        double total = 0;
        for (int i = 0; i < n; i++) {
            ck_assert_int_eq(cand[i].id, ref[i].id);
            ck_assert_msg(fabs(cand[i].p - ref[i].v) < 1e-9, "V %d trial %d cand %d: %g vs %g", V, trial, i, cand[i].p,
                          ref[i].v);
            total += cand[i].p;
        }
        ck_assert(fabs(total - 1) < 1e-9);
        /* the sampled token is one of the candidates; post-sampling probabilities are the distribution */
        int t = sasp_sampler_sample(s, logits), found = -1;
        for (int i = 0; i < nr; i++)
            if (ref[i].id == t) found = i;
        ck_assert_int_ge(found, 0);
        sasp_logprob top[8];
        int n_top = V < 8 ? V : 8, n_post;
        float lp = sasp_sampler_post_probs(s, t, top, n_top, &n_post);
        ck_assert(fabs(exp(lp) - ref[found].v) < 1e-6);
        int positive = 0; /* candidates of probability 0 are not listed (as llama.cpp) */
        for (int i = 0; i < nr; i++) positive += ref[i].v > 0;
        ck_assert_int_eq(n_post, (positive < n_top ? positive : n_top));
        for (int i = 0; i < n_post; i++) ck_assert(top[i].id == ref[i].id && fabs(exp(top[i].logprob) - ref[i].v) < 1e-6);
        /* logprobs: log-softmax of the penalised logits at temperature 1 */
        ref_penalised(logits, V, &p, &x, pen);
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < V; j++) mx = fmax(mx, pen[j]);
        for (int j = 0; j < V; j++) sum += exp(pen[j] - mx);
        double lse = mx + log(sum);
        lp = sasp_sampler_logprobs(s, t, top, n_top); /* float logits: a relative tolerance */
        ck_assert_msg(fabs(lp - (pen[t] - lse)) < 1e-4 * fmax(1, fabs(pen[t] - lse)), "V %d trial %d: logprob %g vs %g",
                      V, trial, lp, pen[t] - lse);
        for (int j = 0; j < V; j++) ref[j] = (ref_c){j, pen[j]};
        ref_sort(ref, V);
        for (int i = 0; i < n_top; i++) {
            double want = ref[i].v - lse;
            ck_assert_int_eq(top[i].id, ref[i].id);
            ck_assert(fabs(top[i].logprob - want) < 1e-4 * fmax(1, fabs(want)) || (isinf(want) && isinf(top[i].logprob)));
        }
        sasp_sampler_free(s);
    }
    free(logits);
    free(pen);
    free(ref);
}
END_TEST

/* --- DRY --- */

/* The breakers of strs as the reference reads llama.cpp's rule: a token holding a whole breaker is one
 * by itself; a token whose bytes end with the breaker's first k bytes (k shorter than the breaker)
 * starts it, followed by the tokenisation of the rest (at most 20 tokens). */
static int ref_breakers(const sasp_tokenizer *tok, const char *const *strs, int n_strs, ref_breaker *out, int cap)
{
    int n = 0, V = sasp_tokenizer_vocab_size(tok);
    for (int s = 0; s < n_strs; s++) {
        size_t L = strlen(strs[s]) > 40 ? 40 : strlen(strs[s]);
        for (int id = 0; id < V; id++) {
            size_t wl;
            const char *w = sasp_token_bytes(tok, id, &wl);
            int whole = 0;
            for (size_t i = 0; i + L <= wl && !whole; i++) whole = !memcmp(w + i, strs[s], L);
            if (whole) {
                ck_assert_int_lt(n, cap);
                out[n++] = (ref_breaker){{id}, 1};
                continue;
            }
            for (size_t k = 1; k < L && k <= wl; k++) {
                if (memcmp(w + wl - k, strs[s], k)) continue;
                int *ids = NULL, m = sasp_encode(tok, strs[s] + k, L - k, 0, &ids);
                ck_assert_int_lt(n, cap);
                out[n] = (ref_breaker){{id}, 1};
                for (int i = 0; i < m && i < 20; i++) out[n].ids[out[n].n++] = ids[i];
                n++;
                free(ids);
            }
        }
    }
    return n;
}

static void set_breakers(sasp_sampling *p, const char *const *strs, int n)
{
    size_t lens[16];
    for (int i = 0; i < n; i++) lens[i] = strlen(strs[i]);
    ck_assert_int_eq(sasp_sampling_set_breakers(p, strs, lens, n), 0);
}

/* DRY alone, on histories made of pieces of code and of the breakers, with breakers of one token and of
 * several (tokenised by the test tokenizer): the penalised logits equal the naive reference's. */
START_TEST(test_dry_matches_reference)
{
    sasp_tokenizer *tok = load_fim_tokenizer();
    int V = sasp_tokenizer_vocab_size(tok);
    static const char *const pieces[] = {"def f(x):\n", "    return x\n", "self.a = b", " + 1", "if x:", "\"\"\"",
                                         "(self, a)", " # note", "x = [1, 2]", "**kw", "\n\n"};
    static const char *const breaker_sets[][4] = {{"\n", ":", "\"", "*"}, {"return", "f(x", NULL}, {"(self", "\n    ", "= b", NULL}, {"self.a = b + 1 and more than forty bytes of it", NULL}, {NULL}};
    sasp_rng r;
    sasp_rng_seed(&r, 99);
    float *logits = malloc((size_t)V * sizeof *logits);
    double *want = malloc((size_t)V * sizeof *want);
    ref_breaker brk[2048];
    int hist[400];
    for (int trial = 0; trial < 300; trial++) {
        sasp_sampling p;
        random_params(&r, V, &p);
        static const float mults[] = {0.8f, 2, 1e30f};
        p.dry_multiplier = PICK(&r, mults);
        p.n_chain = 1;
        p.chain[0] = SASP_SMP_DRY;
        const char *const *set = breaker_sets[irand(&r, 5)];
        int n_set = 0;
        while (n_set < 4 && set[n_set]) n_set++;
        set_breakers(&p, set, n_set);
        int n_brk = ref_breakers(tok, set, n_set, brk, 2048);
        int n = 0;
        while (n < 300) { /* pieces and breakers, tokenised */
            const char *piece = irand(&r, 3) || !n_set ? PICK(&r, pieces) : set[irand(&r, n_set)];
            int *ids = NULL, m = sasp_encode(tok, piece, strlen(piece), 0, &ids);
            for (int i = 0; i < m && n < 300; i++) hist[n++] = ids[i];
            free(ids);
        }
        n = 1 + irand(&r, n);
        sasp_sampler *s = sasp_sampler_new(V, &p);
        ck_assert_ptr_nonnull(s);
        ck_assert_int_eq(sasp_sampler_set_tokenizer(s, tok, 0), 0);
        for (int i = 0; i < n; i++) sasp_sampler_accept(s, hist[i], 1);
        for (int j = 0; j < V; j++) logits[j] = (float)frand(&r, -4, 4);
        ref_ctx x = {hist, n, hist, n, brk, n_brk};
        ref_penalised(logits, V, &p, &x, want);
        const float *got = sasp_sampler_penalize(s, logits); /* DRY on the whole row */
        for (int j = 0; j < V; j++)
            ck_assert_msg(fabs(got[j] - (float)want[j]) <= 1e-6 * fmax(1, fabs(want[j])),
                          "trial %d token %d: %g, the reference %g", trial, j, (double)got[j], want[j]);
        sasp_sampler_free(s);
        /* and on candidates, after a step that is off (top_n_sigma -1): the distribution */
        p.n_chain = 2, p.chain[0] = SASP_SMP_TOP_N_SIGMA, p.chain[1] = SASP_SMP_DRY, p.top_n_sigma = -1;
        s = sasp_sampler_new(V, &p);
        ck_assert_int_eq(sasp_sampler_set_tokenizer(s, tok, 0), 0);
        for (int i = 0; i < n; i++) sasp_sampler_accept(s, hist[i], 1);
        const sasp_candidate *c;
        ck_assert_int_eq(sasp_sampler_dist(s, logits, &c), V);
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < V; j++) mx = fmax(mx, want[j]);
        for (int j = 0; j < V; j++) sum += exp(want[j] - mx);
        for (int i = 0; i < V; i++) ck_assert(fabs(c[i].p - exp(want[c[i].id] - mx) / sum) < 1e-9);
        sasp_sampler_free(s);
    }
    free(logits);
    free(want);
    sasp_tokenizer_free(tok);
}
END_TEST

/* The distribution of probabilities probs[0..n) after DRY with the given history and settings. */
static void dry_case(const double *probs, int n, const int *hist, int n_hist, float mult, float base, int allowed,
                     int last_n, const double *want)
{
    sasp_sampling p;
    sasp_sampling_defaults(&p);
    p.dry_multiplier = mult, p.dry_base = base, p.dry_allowed_length = allowed, p.dry_penalty_last_n = last_n;
    p.n_chain = 1;
    p.chain[0] = SASP_SMP_DRY;
    sasp_sampler *s = sasp_sampler_new(n, &p);
    for (int i = 0; i < n_hist; i++) sasp_sampler_accept(s, hist[i], 1);
    float logits[8];
    for (int i = 0; i < n; i++) logits[i] = (float)log(probs[i]);
    const sasp_candidate *c;
    ck_assert_int_eq(sasp_sampler_dist(s, logits, &c), n);
    for (int i = 0; i < n; i++) ck_assert_msg(fabs(c[i].p - want[c[i].id]) < 1e-5, "token %d: %g, want %g", c[i].id,
                                              c[i].p, want[c[i].id]);
    sasp_sampler_free(s);
}

/* Worked cases: "0 1" repeated, the token that followed it (2) loses multiplier * base^0 (llama.cpp's
 * test-sampling.cpp gives the same 0.296923 / 0.109232); a longer repeat costs base times more per
 * token; the allowed length not reached, or the window too short: nothing. */
START_TEST(test_dry_worked_cases)
{
    const double u4[] = {0.25, 0.25, 0.25, 0.25}, u5[] = {0.2, 0.2, 0.2, 0.2, 0.2};
    const int h1[] = {0, 1, 2, 0, 1}, h2[] = {0, 1, 2, 3, 0, 1, 2}, h3[] = {0, 1, 2, 3, 4, 0, 1};
    double w1[4] = {0.296923, 0.296923, 0.109232, 0.296923};
    dry_case(u4, 4, h1, 5, 1.0f, 1.1f, 2, 5, w1);
    double e = exp(-2.0 * 1.1), z = 4 + e; /* "0 1 2" repeated: 3 follows, length 3, 2 * 1.1^1 */
    double w2[5] = {1 / z, 1 / z, 1 / z, e / z, 1 / z};
    dry_case(u5, 5, h2, 7, 2.0f, 1.1f, 2, -1, w2);
    dry_case(u5, 5, h3, 7, 1.0f, 1.1f, 4, 7, u5); /* a repeat of 2 < 4 */
    dry_case(u4, 4, h1, 5, 1.0f, 1.1f, 2, 2, u4); /* the window (2) <= allowed length */
    dry_case(u4, 4, h1, 5, 0.0f, 1.1f, 2, 5, u4); /* multiplier 0: off */
    dry_case(u4, 4, h1, 5, 1.0f, 0.9f, 2, 5, u4); /* base < 1: off */
}
END_TEST

/* A breaker bounds the repeat: with ":" between the two "x y", the repeat after it is "x y" (2), not
 * the longer one that spans the breaker; a token that contains a breaker is never penalised. */
START_TEST(test_dry_breaker_semantics)
{
    sasp_tokenizer *tok = load_fim_tokenizer();
    int V = sasp_tokenizer_vocab_size(tok);
    int *ids = NULL, n = sasp_encode(tok, "ab:cd ab:cd ab", 14, 0, &ids);
    sasp_sampling p;
    sasp_sampling_defaults(&p);
    p.dry_multiplier = 1, p.dry_base = 2, p.dry_allowed_length = 1, p.dry_penalty_last_n = -1;
    p.n_chain = 1;
    p.chain[0] = SASP_SMP_DRY;
    float *logits = calloc((size_t)V, sizeof *logits);
    for (int with_breaker = 0; with_breaker < 2; with_breaker++) {
        const char *b = ":";
        set_breakers(&p, &b, with_breaker);
        sasp_sampler *s = sasp_sampler_new(V, &p);
        sasp_sampler_set_tokenizer(s, tok, 0);
        for (int i = 0; i < n; i++) sasp_sampler_accept(s, ids[i], 1);
        const float *w = sasp_sampler_penalize(s, logits);
        int colon = -1, *cid = NULL;
        ck_assert_int_eq(sasp_encode(tok, ":", 1, 0, &cid), 1);
        colon = cid[0];
        free(cid);
        /* ":" follows "ab" twice: penalised, unless it is a breaker (then nothing is) */
        if (with_breaker) ck_assert(w[colon] == 0);
        else ck_assert_float_lt(w[colon], -1.0f);
        for (int j = 0; j < V; j++) ck_assert(j == colon || w[j] == 0);
        sasp_sampler_free(s);
    }
    free(ids);
    free(logits);
    sasp_tokenizer_free(tok);
}
END_TEST

/* --- the rest --- */

START_TEST(test_rng)
{
    sasp_rng a, b, c;
    sasp_rng_seed(&a, 42);
    sasp_rng_seed(&b, 42);
    sasp_rng_seed(&c, 43);
    int differ = 0;
    double sum = 0;
    for (int i = 0; i < 100000; i++) {
        uint64_t x = sasp_rng_next(&a), y = sasp_rng_next(&b), z = sasp_rng_next(&c);
        ck_assert_uint_eq(x, y);
        differ += x != z;
        double u = sasp_rng_uniform(&a);
        sasp_rng_uniform(&b);
        sasp_rng_uniform(&c);
        ck_assert(u >= 0 && u < 1);
        sum += u;
    }
    ck_assert_int_gt(differ, 99000);
    ck_assert(fabs(sum / 100000 - 0.5) < 0.01);
}
END_TEST

START_TEST(test_penalty_semantics)
{
    sasp_sampling p;
    sasp_sampling_defaults(&p);
    p.repeat_penalty = 2;
    p.repeat_last_n = 2;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    sasp_sampler *s = sasp_sampler_new(5, &p);
    float logits[5] = {2, -2, 1, 3, 4};
    sasp_sampler_accept(s, 4, 0); /* prompt, outside the last 2: no repetition penalty */
    sasp_sampler_accept(s, 0, 1);
    sasp_sampler_accept(s, 1, 1);
    sasp_sampler_accept(s, 3, 1); /* generated long ago: frequency and presence only */
    sasp_sampler_accept(s, 0, 1); /* the last two: 3 and 0 */
    const float *w = sasp_sampler_penalize(s, logits);
    ck_assert_float_eq_tol(w[0], 2.0f / 2 - 2 * 0.5f - 0.25f, 1e-6); /* repeated, generated twice */
    ck_assert_float_eq_tol(w[1], -2.0f - 0.5f - 0.25f, 1e-6);        /* generated once, not in the window */
    ck_assert_float_eq_tol(w[2], 1.0f, 1e-6);                        /* untouched */
    ck_assert_float_eq_tol(w[3], 3.0f / 2 - 0.5f - 0.25f, 1e-6);
    ck_assert_float_eq_tol(w[4], 4.0f, 1e-6); /* prompt tokens do not count for frequency/presence */
    sasp_sampler_free(s);
}
END_TEST

/* Logit biases are step 0: added to the logits before the penalties, masked (-inf) tokens stay masked,
 * and the logprobs see them. */
START_TEST(test_logit_bias_first)
{
    sasp_sampling p;
    sasp_sampling_defaults(&p);
    p.repeat_penalty = 2;
    p.repeat_last_n = -1;
    p.temperature = 0;
    sasp_sampler *s = sasp_sampler_new(5, &p);
    sasp_logit_bias bias[3] = {{0, 1.0f}, {2, 5.0f}, {4, 100.0f}};
    sasp_sampler_set_logit_bias(s, bias, 3);
    float logits[5] = {1, -2, 0.5f, 3, -INFINITY};
    sasp_sampler_accept(s, 0, 0);
    const float *w = sasp_sampler_penalize(s, logits);
    ck_assert_float_eq_tol(w[0], (1.0f + 1.0f) / 2, 1e-6); /* biased, then the repetition penalty */
    ck_assert_float_eq_tol(w[1], -2.0f, 1e-6);
    ck_assert_float_eq_tol(w[2], 5.5f, 1e-6);
    ck_assert_float_eq_tol(w[3], 3.0f, 1e-6);
    ck_assert(isinf(w[4]) && w[4] < 0);                  /* masked stays masked */
    ck_assert_int_eq(sasp_sampler_sample(s, logits), 2); /* greedy on the biased logits */
    double lse = log(exp(1.0) + exp(-2.0) + exp(5.5) + exp(3.0));
    ck_assert_float_eq_tol(sasp_sampler_logprobs(s, 2, NULL, 0), 5.5 - lse, 1e-5);
    sasp_sampler_free(s);
}
END_TEST

START_TEST(test_greedy_and_seed)
{
    enum { V = 300 };
    float logits[V];
    sasp_rng r;
    sasp_rng_seed(&r, 7);
    for (int j = 0; j < V; j++) logits[j] = (float)frand(&r, -3, 3);
    logits[123] = 10;
    sasp_sampling p;
    sasp_sampling_defaults(&p);
    p.temperature = 0;
    for (uint64_t seed = 0; seed < 5; seed++) {
        p.seed = seed;
        sasp_sampler *s = sasp_sampler_new(V, &p);
        ck_assert_int_eq(sasp_sampler_sample(s, logits), 123);
        sasp_sampler_free(s);
    }
    /* ties go to the lowest id */
    logits[7] = 10;
    sasp_sampler *s = sasp_sampler_new(V, &p);
    ck_assert_int_eq(sasp_sampler_sample(s, logits), 7);
    sasp_sampler_free(s);
    /* the same seed gives the same sequence, another seed another */
    for (int j = 0; j < V; j++) logits[j] = (float)frand(&r, -1, 1);
    p.temperature = 1;
    p.top_k = 0;
    p.top_p = 1;
    p.min_p = 0;
    p.xtc_probability = 0.5f; /* xtc's coin has a generator of its own */
    int a[64], b[64], c[64];
    for (int run = 0; run < 3; run++) {
        p.seed = run < 2 ? 99 : 100;
        s = sasp_sampler_new(V, &p);
        int *out = run == 0 ? a : run == 1 ? b
                                           : c;
        for (int i = 0; i < 64; i++) out[i] = sasp_sampler_sample(s, logits);
        sasp_sampler_free(s);
    }
    ck_assert_mem_eq(a, b, sizeof a);
    ck_assert(memcmp(a, c, sizeof a) != 0);
}
END_TEST

/* sasp_argmax is the first largest logit: against the plain loop on fresh random rows of every size
 * from 1 to 300, with values from a few levels so that ties are common, and -inf among them. */
START_TEST(test_argmax)
{
    enum { V = 300 };
    float logits[V];
    sasp_rng r;
    sasp_rng_seed(&r, (uint64_t)time(NULL));
    for (int n = 1; n <= V; n++)
        for (int rep = 0; rep < 8; rep++) {
            int levels = 1 + irand(&r, 6);
            for (int j = 0; j < n; j++) logits[j] = irand(&r, 9) ? (float)irand(&r, levels) - 2.5f : -INFINITY;
            int want = 0;
            for (int j = 1; j < n; j++)
                if (logits[j] > logits[want]) want = j;
            ck_assert_int_eq(sasp_argmax(logits, n), want);
        }
}
END_TEST

/* sasp_row_above_bar then sasp_cand_keep_best give a row's k best finite values (largest, then lowest
 * id), as sorting the whole row does: fresh random rows of every size to 300 and some large ones, with
 * ties, NaN and infinities, for k from 1 past the row's length. */
static int by_rank(const void *a, const void *b)
{
    const sasp_candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

START_TEST(test_row_above_bar)
{
    enum { MAXN = 70001 }; /* past 65,536: blocks of more than 64 (at most 1,024 blocks) */
    static float row[MAXN];
    static sasp_candidate got[MAXN], want[MAXN];
    sasp_rng r;
    sasp_rng_seed(&r, (uint64_t)time(NULL));
    for (int t = 0; t < 1500; t++) {
        int n = t < 1200 ? 1 + t % 300 : (int[]){1023, 1024, 4099, 8192, 20000, 70001}[t % 6];
        int ks[] = {1, 2, 3, 5, 40, 64, n - 1, n, n + 7}, k = ks[irand(&r, 9)];
        int levels = irand(&r, 2) ? 4 : 1 << 20, odd = irand(&r, 3); /* odd: NaN and infinities now and then */
        for (int j = 0; j < n; j++) {
            int u = irand(&r, 64);
            row[j] = odd && u == 0 ? NAN : odd && u == 1             ? -INFINITY
                                       : odd && u == 2 && t % 7 == 0 ? INFINITY
                                                                     : (float)irand(&r, levels) / 16;
        }
        if (k < 1) continue;
        int m = 0;
        for (int j = 0; j < n; j++)
            if (row[j] > -INFINITY) want[m++] = (sasp_candidate){j, row[j], 0};
        qsort(want, (size_t)m, sizeof *want, by_rank);
        int g = sasp_row_above_bar(row, n, k, got);
        ck_assert_int_ge(g, m < k ? m : k);
        sasp_cand_keep_best(got, g, k);
        for (int i = 0; i < (m < k ? m : k); i++)
            ck_assert_msg(got[i].id == want[i].id && got[i].logit == want[i].logit, "n %d k %d: rank %d is %d, not %d",
                          n, k, i, got[i].id, want[i].id);
    }
}
END_TEST

/* The draw follows the distribution: 400k draws over 6 candidates land within 0.005 of each p. */
START_TEST(test_frequencies)
{
    float logits[9] = {1.0f, 0.5f, 0.2f, -0.1f, 0.9f, -3, -0.4f, 0.0f, -9};
    sasp_sampling p;
    sasp_sampling_defaults(&p);
    p.temperature = 0.9f;
    p.top_k = 6;
    p.top_p = 1;
    p.min_p = 0;
    p.seed = 5;
    sasp_sampler *s = sasp_sampler_new(9, &p);
    const sasp_candidate *cand;
    int n = sasp_sampler_dist(s, logits, &cand);
    ck_assert_int_eq(n, 6);
    double want[9] = {0};
    for (int i = 0; i < n; i++) want[cand[i].id] = cand[i].p;
    int count[9] = {0};
    enum { N = 400000 };
    for (int i = 0; i < N; i++) count[sasp_sampler_sample(s, logits)]++;
    for (int j = 0; j < 9; j++) ck_assert_msg(fabs((double)count[j] / N - want[j]) < 0.005, "token %d: %g vs %g", j,
                                              (double)count[j] / N, want[j]);
    ck_assert_int_eq(count[5] + count[8] + count[6], 0); /* outside the top 6 */
    sasp_sampler_free(s);
}
END_TEST

/* xtc's coin: with probability 0.3 the two likely tokens go (all but the least likely of those above
 * the threshold), so the most likely one is drawn in none of those steps. */
START_TEST(test_xtc_coin)
{
    float logits[4] = {3, 2.5f, -1, -1.2f};
    sasp_sampling p;
    sasp_sampling_defaults(&p);
    p.n_chain = 1;
    p.chain[0] = SASP_SMP_XTC;
    p.xtc_probability = 0.3f;
    p.xtc_threshold = 0.1f;
    p.seed = 11;
    sasp_sampler *s = sasp_sampler_new(4, &p);
    int removed = 0;
    enum { N = 100000 };
    for (int i = 0; i < N; i++) {
        const sasp_candidate *c;
        int n = sasp_sampler_dist(s, logits, &c);
        ck_assert(n == 4 || (n == 3 && c[0].id == 1));
        removed += n == 3;
    }
    ck_assert_msg(fabs((double)removed / N - 0.3) < 0.01, "removed %g of the time", (double)removed / N);
    sasp_sampler_free(s);
}
END_TEST

START_TEST(test_sampler_names)
{
    static const struct {
        const char *name;
        int kind;
    } cases[] = {
        {"penalties", SASP_SMP_PENALTIES}, {"dry", SASP_SMP_DRY}, {"top_n_sigma", SASP_SMP_TOP_N_SIGMA}, {"Top-K", SASP_SMP_TOP_K}, {"topk", SASP_SMP_TOP_K}, {"typ_p", SASP_SMP_TYPICAL_P}, {"typ", SASP_SMP_TYPICAL_P}, {"nucleus", SASP_SMP_TOP_P}, {"min-p", SASP_SMP_MIN_P}, {"xtc", SASP_SMP_XTC}, {"temp", SASP_SMP_TEMPERATURE}, {"temperature", SASP_SMP_TEMPERATURE}, {"infill", SASP_SMP_INFILL}, {"e", SASP_SMP_PENALTIES}, {"d", SASP_SMP_DRY}, {"s", SASP_SMP_TOP_N_SIGMA}, {"k", SASP_SMP_TOP_K}, {"y", SASP_SMP_TYPICAL_P}, {"p", SASP_SMP_TOP_P}, {"m", SASP_SMP_MIN_P}, {"x", SASP_SMP_XTC}, {"t", SASP_SMP_TEMPERATURE}, {"i", SASP_SMP_INFILL}, {"a", -2}, {"Adaptive-P", -2}, {"mirostat", -1}, {"", -1}, {"_", -1}, {"a_very_long_name_that_is_no_sampler_at_all", -1}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        ck_assert_msg(sasp_sampler_kind_of(cases[i].name, strlen(cases[i].name)) == cases[i].kind, "%s", cases[i].name);
    for (int k = 0; k < SASP_SMP_COUNT; k++)
        ck_assert_int_eq(sasp_sampler_kind_of(sasp_sampler_names[k], strlen(sasp_sampler_names[k])), k);
}
END_TEST

/* --- the infill step (llama.cpp's infill sampler) --- */

/* Two normal tokens of t, the first's bytes a proper prefix of the second's, and a third that is
 * neither's prefix nor extension. */
static void find_prefix_pair(const sasp_tokenizer *t, int *a, int *b, int *c)
{
    int V = sasp_tokenizer_vocab_size(t);
    *a = *b = *c = -1;
    for (int i = 1; i < V && *b < 0; i++) {
        size_t li, lj;
        const char *bi = sasp_token_bytes(t, i, &li);
        if (sasp_tokenizer_is_special(t, i) || li < 1) continue;
        for (int j = 1; j < V; j++) {
            const char *bj = sasp_token_bytes(t, j, &lj);
            if (j != i && !sasp_tokenizer_is_special(t, j) && lj > li && !memcmp(bi, bj, li)) {
                *a = i, *b = j;
                break;
            }
        }
    }
    for (int k = 1; k < V && *c < 0; k++) {
        size_t lk, la, lb;
        const char *bk = sasp_token_bytes(t, k, &lk), *ba = sasp_token_bytes(t, *a, &la), *bb = sasp_token_bytes(t, *b, &lb);
        int related = !memcmp(bk, ba, lk < la ? lk : la) || !memcmp(bk, bb, lk < lb ? lk : lb);
        if (!sasp_tokenizer_is_special(t, k) && lk > 0 && !related) *c = k;
    }
    ck_assert(*a > 0 && *b > 0 && *c > 0);
}

/* The distribution of logits that give the listed tokens these probabilities (the others ~0). */
static int infill_dist(sasp_sampler *s, int V, const int *ids, const double *p, int n, const sasp_candidate **out)
{
    float *logits = malloc((size_t)V * sizeof *logits);
    for (int j = 0; j < V; j++) logits[j] = -60.0f;
    for (int i = 0; i < n; i++) logits[ids[i]] = (float)log(p[i]);
    int k = sasp_sampler_dist(s, logits, out);
    free(logits);
    return k;
}

START_TEST(test_infill_step)
{
    sasp_tokenizer *t = load_fim_tokenizer();
    int V = sasp_tokenizer_vocab_size(t), a, b, c, eos = 0;
    find_prefix_pair(t, &a, &b, &c);
    sasp_sampling p;
    sasp_sampling_defaults(&p);
    p.top_k = 10;
    static const unsigned char chain[] = {SASP_SMP_TOP_K, SASP_SMP_INFILL};
    p.n_chain = 2;
    memcpy(p.chain, chain, 2);
    sasp_sampler *s = sasp_sampler_new(V, &p);
    sasp_sampler_set_tokenizer(s, t, eos);
    const sasp_candidate *d;
    /* a token that begins another one takes its probability: a 0.30 + b 0.25 against c 0.45 */
    int merge_ids[3] = {a, b, c};
    double merge_p[3] = {0.30, 0.25, 0.45};
    int n = infill_dist(s, V, merge_ids, merge_p, 3, &d);
    ck_assert_int_eq(n, 3); /* a, c, and the end of the middle, kept at any probability (as llama.cpp) */
    ck_assert(d[0].id == a && fabs(d[0].p - 0.55) < 1e-3 && d[1].id == c && fabs(d[1].p - 0.45) < 1e-3);
    ck_assert(d[2].id == eos && d[2].p < 1e-6);
    /* likely enough, the end of the middle comes alone: 3 x 0.2 x 4 candidates > 0.8 */
    int end_ids[4] = {eos, a, c, b};
    double end_p[4] = {0.2, 0.3, 0.3, 0.2};
    n = infill_dist(s, V, end_ids, end_p, 4, &d);
    ck_assert(n == 1 && d[0].id == eos && d[0].p == 1.0);
    /* no text token reaches 0.2: the end */
    int flat_ids[8];
    double flat_p[8];
    for (int i = 0; i < 8; i++) flat_ids[i] = c + i + 1 < V - 3 ? c + i + 1 : c - i - 1, flat_p[i] = 0.125;
    n = infill_dist(s, V, flat_ids, flat_p, 8, &d);
    ck_assert(n == 1 && d[0].id == eos);
    /* off (not in the chain): the plain distribution */
    sasp_sampler_free(s);
    p.n_chain = 1;
    s = sasp_sampler_new(V, &p);
    n = infill_dist(s, V, merge_ids, merge_p, 3, &d);
    ck_assert_int_eq(n, p.top_k);
    ck_assert(d[0].id == c && d[1].id == a && d[2].id == b);
    sasp_sampler_free(s);
    sasp_tokenizer_free(t);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("sampler");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_rng);
    tcase_add_loop_test(tc, test_dist_matches_reference, 0, 8);
    tcase_add_test(tc, test_dry_matches_reference);
    tcase_add_test(tc, test_dry_worked_cases);
    tcase_add_test(tc, test_dry_breaker_semantics);
    tcase_add_test(tc, test_penalty_semantics);
    tcase_add_test(tc, test_logit_bias_first);
    tcase_add_test(tc, test_greedy_and_seed);
    tcase_add_test(tc, test_argmax);
    tcase_add_test(tc, test_row_above_bar);
    tcase_add_test(tc, test_frequencies);
    tcase_add_test(tc, test_xtc_coin);
    tcase_add_test(tc, test_sampler_names);
    tcase_add_test(tc, test_infill_step);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
