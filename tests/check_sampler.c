/* check_sampler.c: the sampler against straightforward float64 reference computations on fresh
 * random logits (tiny, odd and larger vocabularies), plus the RNG, greedy mode, the logit biases' and
 * the penalties' exact semantics, logprobs, the empirical frequencies of the draw, and llama.cpp's
 * infill step on the tokens of the fill-in-the-middle test tokenizer. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/sampler.h"
#include "text/tokenizer.h"

#ifndef SASP_SRCDIR
#define SASP_SRCDIR "."
#endif

static double frand(sasp_rng *r, double lo, double hi) { return lo + (hi - lo) * sasp_rng_uniform(r); }

/* --- reference --- */

typedef struct { int id; double v; } ref_c;

static int ref_cmp(const void *a, const void *b)
{
    const ref_c *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->id - y->id;
}

/* Penalties as sampler.h documents them, written the obvious way. */
static void ref_penalize(const float *logits, int V, const int *hist, int n_hist, const int *gen, int n_gen,
                         const sasp_sampling *p, float *out)
{
    for (int j = 0; j < V; j++) out[j] = logits[j];
    if (p->repeat_penalty != 1.0f && p->repeat_last_n != 0) {
        int n = p->repeat_last_n < 0 || p->repeat_last_n > n_hist ? n_hist : p->repeat_last_n;
        for (int j = 0; j < V; j++) {
            int present = 0;
            for (int i = n_hist - n; i < n_hist; i++) present |= hist[i] == j;
            if (present) out[j] = out[j] > 0 ? out[j] / p->repeat_penalty : out[j] * p->repeat_penalty;
        }
    }
    for (int j = 0; j < V; j++) {
        int c = 0;
        for (int i = 0; i < n_gen; i++) c += gen[i] == j;
        if (c) out[j] -= (float)c * p->frequency_penalty + p->presence_penalty;
    }
}

/* The final distribution, returns its size. */
static int ref_dist(const float *pen, int V, const sasp_sampling *p, ref_c *c)
{
    for (int j = 0; j < V; j++) {
        c[j].id = j;
        c[j].v = pen[j];
    }
    qsort(c, (size_t)V, sizeof *c, ref_cmp);
    if (p->temperature == 0 || p->top_k == 1) {
        c[0].v = 1;
        return 1;
    }
    int n = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    double mx = c[0].v, s = 0;
    for (int i = 0; i < n; i++) s += exp((c[i].v - mx) / p->temperature);
    for (int i = 0; i < n; i++) c[i].v = exp((c[i].v - mx) / p->temperature) / s;
    if (p->top_p < 1) {
        double cum = 0;
        for (int i = 0; i < n; i++) {
            cum += c[i].v;
            if (cum >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0) {
        int k = 1;
        while (k < n && c[k].v >= p->min_p * c[0].v) k++;
        n = k;
    }
    s = 0;
    for (int i = 0; i < n; i++) s += c[i].v;
    for (int i = 0; i < n; i++) c[i].v /= s;
    return n;
}

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

/* Random parameters, history and logits, for every vocabulary size: the sampler's distribution must
 * equal the reference's, candidate for candidate. */
START_TEST(test_dist_matches_reference)
{
    static const int sizes[] = {1, 2, 3, 7, 64, 101, 1000, 4099};
    sasp_rng r;
    sasp_rng_seed(&r, 1234 + (uint64_t)_i);
    int V = sizes[_i];
    float *logits = malloc((size_t)V * sizeof *logits), *pen = malloc((size_t)V * sizeof *pen);
    ref_c *ref = malloc((size_t)V * sizeof *ref);
    int hist[200], gen[100];
    for (int trial = 0; trial < 60; trial++) {
        sasp_sampling p;
        sasp_sampling_defaults(&p);
        static const float temps[] = {0, 0.3f, 0.8f, 1, 1.7f};
        p.temperature = temps[sasp_rng_next(&r) % 5];
        int ks[] = {0, 1, 2, 5, 40, V, V + 3};
        p.top_k = ks[sasp_rng_next(&r) % 7];
        static const float tps[] = {1, 0.95f, 0.5f, 0.1f};
        p.top_p = tps[sasp_rng_next(&r) % 4];
        static const float mps[] = {0, 0.05f, 0.3f};
        p.min_p = mps[sasp_rng_next(&r) % 3];
        static const float rps[] = {1, 1.1f, 1.5f, 0.8f};
        p.repeat_penalty = rps[sasp_rng_next(&r) % 4];
        static const int rls[] = {64, 0, -1, 3};
        p.repeat_last_n = rls[sasp_rng_next(&r) % 4];
        p.frequency_penalty = (float)frand(&r, -1, 1);
        p.presence_penalty = (float)frand(&r, -1, 1);
        p.seed = sasp_rng_next(&r);
        sasp_sampler *s = sasp_sampler_new(V, &p);
        ck_assert_ptr_nonnull(s);
        int n_prompt = (int)(sasp_rng_next(&r) % 100), n_gen = (int)(sasp_rng_next(&r) % 100);
        for (int i = 0; i < n_prompt; i++) {
            hist[i] = (int)(sasp_rng_next(&r) % (uint64_t)V);
            sasp_sampler_accept(s, hist[i], 0);
        }
        for (int i = 0; i < n_gen; i++) {
            gen[i] = hist[n_prompt + i] = (int)(sasp_rng_next(&r) % (uint64_t)V);
            sasp_sampler_accept(s, gen[i], 1);
        }
        double scale = frand(&r, 0.1, 8);
        for (int j = 0; j < V; j++) logits[j] = (float)(scale * (frand(&r, -1, 1) + frand(&r, -1, 1)));
        ref_penalize(logits, V, hist, n_prompt + n_gen, gen, n_gen, &p, pen);
        int nr = ref_dist(pen, V, &p, ref);
        const sasp_candidate *cand;
        int n = sasp_sampler_dist(s, logits, &cand);
        ck_assert_int_eq(n, nr);
        double total = 0;
        for (int i = 0; i < n; i++) {
            ck_assert_int_eq(cand[i].id, ref[i].id);
            ck_assert_msg(fabs(cand[i].p - ref[i].v) < 1e-5, "V %d trial %d cand %d: %g vs %g", V, trial, i,
                          (double)cand[i].p, ref[i].v);
            total += cand[i].p;
        }
        ck_assert(fabs(total - 1) < 1e-5);
        /* the sampled token is one of the candidates */
        int t = sasp_sampler_sample(s, logits);
        int found = 0;
        for (int i = 0; i < nr; i++) found |= ref[i].id == t;
        ck_assert(found);
        /* logprobs: log-softmax of the penalised logits at temperature 1 */
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < V; j++) mx = fmax(mx, pen[j]);
        for (int j = 0; j < V; j++) sum += exp(pen[j] - mx);
        double lse = mx + log(sum);
        sasp_logprob top[8];
        int n_top = V < 8 ? V : 8;
        float lp = sasp_sampler_logprobs(s, t, top, n_top);
        ck_assert(fabs(lp - (pen[t] - lse)) < 1e-4);
        for (int j = 0; j < V; j++) {
            ref[j].id = j;
            ref[j].v = pen[j];
        }
        qsort(ref, (size_t)V, sizeof *ref, ref_cmp);
        for (int i = 0; i < n_top; i++) {
            ck_assert_int_eq(top[i].id, ref[i].id);
            ck_assert(fabs(top[i].logprob - (ref[i].v - lse)) < 1e-4);
        }
        sasp_sampler_free(s);
    }
    free(logits);
    free(pen);
    free(ref);
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
    ck_assert_float_eq_tol(w[1], -2.0f - 0.5f - 0.25f, 1e-6);       /* generated once, not in the window */
    ck_assert_float_eq_tol(w[2], 1.0f, 1e-6);                       /* untouched */
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
    ck_assert(isinf(w[4]) && w[4] < 0); /* masked stays masked */
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
    int a[64], b[64], c[64];
    for (int run = 0; run < 3; run++) {
        p.seed = run < 2 ? 99 : 100;
        s = sasp_sampler_new(V, &p);
        int *out = run == 0 ? a : run == 1 ? b : c;
        for (int i = 0; i < 64; i++) out[i] = sasp_sampler_sample(s, logits);
        sasp_sampler_free(s);
    }
    ck_assert_mem_eq(a, b, sizeof a);
    ck_assert(memcmp(a, c, sizeof a) != 0);
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
    char path[4200], err[256];
    const char *src = getenv("SASP_SRCDIR");
    snprintf(path, sizeof path, "%s/tests/fixtures/tiny-fim/tokenizer.json", src && *src ? src : SASP_SRCDIR);
    sasp_tokenizer *t = sasp_tokenizer_load(path, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    int V = sasp_tokenizer_vocab_size(t), a, b, c, eos = 0;
    find_prefix_pair(t, &a, &b, &c);
    sasp_sampling p;
    sasp_sampling_defaults(&p);
    p.temperature = 1, p.top_k = 10, p.top_p = 1, p.min_p = 0, p.infill = 1;
    sasp_sampler *s = sasp_sampler_new(V, &p);
    sasp_sampler_set_infill(s, t, eos);
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
    ck_assert(n == 1 && d[0].id == eos && d[0].p == 1.0f);
    /* no text token reaches 0.2: the end */
    int flat_ids[8];
    double flat_p[8];
    for (int i = 0; i < 8; i++) flat_ids[i] = c + i + 1 < V - 3 ? c + i + 1 : c - i - 1, flat_p[i] = 0.125;
    n = infill_dist(s, V, flat_ids, flat_p, 8, &d);
    ck_assert(n == 1 && d[0].id == eos);
    /* off: the plain distribution */
    sasp_sampler_free(s);
    p.infill = 0;
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
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_rng);
    tcase_add_loop_test(tc, test_dist_matches_reference, 0, 8);
    tcase_add_test(tc, test_penalty_semantics);
    tcase_add_test(tc, test_logit_bias_first);
    tcase_add_test(tc, test_greedy_and_seed);
    tcase_add_test(tc, test_frequencies);
    tcase_add_test(tc, test_infill_step);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
