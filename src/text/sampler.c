/* sampler.c: penalties, temperature, top-k / top-p / min-p truncation, the infill step, the draw,
 * and logprobs.
 * The semantics are documented in sampler.h; this file is the one path that implements them. */
#include "text/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* --- random numbers: splitmix64 to seed, xoshiro256** to draw --- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void sasp_rng_seed(sasp_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t sasp_rng_next(sasp_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double sasp_rng_uniform(sasp_rng *r) { return (double)(sasp_rng_next(r) >> 11) * 0x1.0p-53; }

/* --- the sampler --- */

void sasp_sampling_defaults(sasp_sampling *p)
{
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->frequency_penalty = 0.0f;
    p->presence_penalty = 0.0f;
    p->infill = 0;
    p->seed = 0;
}

sasp_sampler *sasp_sampler_new(int vocab, const sasp_sampling *p)
{
    sasp_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->vocab = vocab;
    sasp_rng_seed(&s->rng, p->seed);
    s->generated_count = calloc((size_t)vocab, sizeof *s->generated_count);
    s->work = malloc((size_t)vocab * sizeof *s->work);
    s->cand = malloc((size_t)vocab * sizeof *s->cand);
    s->seen = calloc((size_t)vocab, 1);
    if (!s->generated_count || !s->work || !s->cand || !s->seen) {
        sasp_sampler_free(s);
        return NULL;
    }
    return s;
}

void sasp_sampler_free(sasp_sampler *s)
{
    if (!s) return;
    free(s->generated_count);
    free(s->history);
    free(s->work);
    free(s->cand);
    free(s->seen);
    free(s);
}

int sasp_sampler_accept(sasp_sampler *s, int token, int generated)
{
    if (token < 0 || token >= s->vocab) return -1;
    if (s->n_history == s->cap_history) {
        int cap = s->cap_history ? 2 * s->cap_history : 256;
        int *h = realloc(s->history, (size_t)cap * sizeof *h);
        if (!h) return -1;
        s->history = h;
        s->cap_history = cap;
    }
    s->history[s->n_history++] = token;
    if (generated) s->generated_count[token]++;
    return 0;
}

void sasp_sampler_set_logit_bias(sasp_sampler *s, const sasp_logit_bias *bias, int n)
{
    s->bias = bias;
    s->n_bias = n;
}

const float *sasp_sampler_penalize(sasp_sampler *s, const float *logits)
{
    const sasp_sampling *p = &s->p;
    float *w = s->work;
    memcpy(w, logits, (size_t)s->vocab * sizeof *w);
    for (int k = 0; k < s->n_bias; k++) w[s->bias[k].id] += s->bias[k].bias;

    if (p->repeat_penalty != 1.0f && p->repeat_last_n != 0) {
        int n = p->repeat_last_n < 0 || p->repeat_last_n > s->n_history ? s->n_history : p->repeat_last_n;
        const int *last = s->history + s->n_history - n;
        for (int i = 0; i < n; i++) {
            int t = last[i];
            if (s->seen[t]) continue;
            s->seen[t] = 1;
            w[t] = w[t] > 0 ? w[t] / p->repeat_penalty : w[t] * p->repeat_penalty;
        }
        for (int i = 0; i < n; i++) s->seen[last[i]] = 0;
    }
    if (p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f) {
        for (int j = 0; j < s->vocab; j++) {
            int c = s->generated_count[j];
            if (c) w[j] -= (float)c * p->frequency_penalty + p->presence_penalty;
        }
    }
    return w;
}

/* a ranks before b: higher value, then lower id. */
static inline int before(float va, int ia, float vb, int ib) { return va > vb || (va == vb && ia < ib); }

static int cmp_cand(const void *a, const void *b)
{
    const sasp_candidate *x = a, *y = b;
    if (before(x->p, x->id, y->p, y->id)) return -1;
    if (before(y->p, y->id, x->p, x->id)) return 1;
    return 0;
}

static int argmax(const float *w, int n)
{
    int best = 0;
    for (int j = 1; j < n; j++)
        if (w[j] > w[best]) best = j;
    return best;
}

/* The k best of w[0..n) by (value desc, id asc) into c[0..k), sorted; c's p holds the value.
 * A min-heap of the k best seen so far, its root the worst of them. */
static void select_top(const float *w, int n, int k, sasp_candidate *c)
{
    int size = 0;
    for (int j = 0; j < n; j++) {
        if (size == k && !before(w[j], j, c[0].p, c[0].id)) continue;
        int i;
        if (size < k) {
            i = size++; /* sift up from the new leaf */
            while (i > 0) {
                int parent = (i - 1) / 2;
                if (!before(c[parent].p, c[parent].id, w[j], j)) break;
                c[i] = c[parent];
                i = parent;
            }
        } else {
            i = 0; /* replace the root and sift down */
            for (;;) {
                int l = 2 * i + 1, r = l + 1, worst = -1;
                float wv = w[j];
                int wi = j;
                if (l < size && before(wv, wi, c[l].p, c[l].id)) { worst = l; wv = c[l].p; wi = c[l].id; }
                if (r < size && before(wv, wi, c[r].p, c[r].id)) worst = r;
                if (worst < 0) break;
                c[i] = c[worst];
                i = worst;
            }
        }
        c[i].id = j;
        c[i].p = w[j];
    }
    qsort(c, (size_t)size, sizeof *c, cmp_cand);
}

void sasp_sampler_set_infill(sasp_sampler *s, const sasp_tokenizer *tok, int eog)
{
    s->tok = tok;
    s->eog = eog;
}

/* The bytes of candidate id for the infill step: none for special tokens. */
static const char *infill_bytes(const sasp_sampler *s, int id, size_t *len)
{
    *len = 0;
    if (sasp_tokenizer_is_special(s->tok, id)) return NULL;
    const char *b = sasp_token_bytes(s->tok, id, len);
    if (!b) *len = 0;
    return b;
}

/* Keep c[i] when it ends the middle or has probability >= floor (dead ones, p < 0, never); the kept
 * ones renormalised. Returns how many are kept, and their text tokens in *n_text. */
static int infill_keep(const sasp_sampler *s, sasp_candidate *c, int n, double floor, int *n_text)
{
    int m = 0;
    double sum = 0;
    *n_text = 0;
    for (int i = 0; i < n; i++) {
        int end = c[i].id == s->eog;
        if (c[i].p < 0 || (!end && c[i].p < floor)) continue;
        *n_text += !end;
        sum += c[i].p;
        c[m++] = c[i];
    }
    for (int i = 0; i < m && sum > 0; i++) c[i].p = (float)(c[i].p / sum);
    return m;
}

/* A candidate whose bytes begin another's: the less likely of the two goes into the more likely. */
static void infill_merge(const sasp_sampler *s, sasp_candidate *c, int n)
{
    for (int i0 = 0; i0 < n; i0++) {
        for (int i1 = 0; i1 < n && c[i0].p >= 0; i1++) {
            if (i0 == i1 || c[i1].p < 0) continue;
            size_t l0, l1;
            const char *b0 = infill_bytes(s, c[i0].id, &l0), *b1 = infill_bytes(s, c[i1].id, &l1);
            if (!l0 || l0 > l1 || memcmp(b0, b1, l0)) continue;
            int dst = c[i1].p > c[i0].p ? i1 : i0, src = dst == i1 ? i0 : i1;
            c[dst].p += c[src].p;
            c[src].p = -1;
        }
    }
}

/* llama.cpp's infill sampler (sampler.h) over the n candidates left, sorted best first on return. */
static int infill_step(const sasp_sampler *s, sasp_candidate *c, int n)
{
    if (n > SASP_INFILL_MAX) n = SASP_INFILL_MAX;
    double p_end = 0, p_text = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].id == s->eog) p_end += c[i].p;
        else p_text += c[i].p;
    }
    int n_text;
    if (3 * p_end * n > p_text) return infill_keep(s, c, n, 2.0, &n_text); /* the end alone */
    infill_merge(s, c, n);
    int m = infill_keep(s, c, n, 0.2, &n_text);
    if (n_text == 0) {
        c[0].id = s->eog;
        c[0].p = 1.0f;
        return 1;
    }
    m = infill_keep(s, c, m, 1.0 / (n_text + 1), &n_text);
    qsort(c, (size_t)m, sizeof *c, cmp_cand);
    return m;
}

int sasp_sampler_dist(sasp_sampler *s, const float *logits, const sasp_candidate **out)
{
    const sasp_sampling *p = &s->p;
    const float *w = sasp_sampler_penalize(s, logits);
    sasp_candidate *c = s->cand;
    int n = s->vocab;
    *out = c;

    if (p->temperature <= 0.0f || p->top_k == 1) {
        c[0].id = argmax(w, n);
        c[0].p = 1.0f;
        return 1;
    }
    /* top_k on the logits (temperature does not change the order), sorted best first */
    if (p->top_k > 0 && p->top_k < n) {
        select_top(w, n, p->top_k, c);
        n = p->top_k;
    } else {
        for (int j = 0; j < n; j++) {
            c[j].id = j;
            c[j].p = w[j];
        }
        qsort(c, (size_t)n, sizeof *c, cmp_cand);
    }
    /* softmax of logits / temperature over what is left */
    double inv_t = 1.0 / p->temperature, mx = c[0].p, sum = 0;
    for (int i = 0; i < n; i++) sum += exp(((double)c[i].p - mx) * inv_t);
    for (int i = 0; i < n; i++) c[i].p = (float)(exp(((double)c[i].p - mx) * inv_t) / sum);
    /* top_p: the shortest prefix whose mass reaches top_p */
    if (p->top_p < 1.0f) {
        double cum = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += c[i].p;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    /* min_p: relative to the most likely token */
    if (p->min_p > 0.0f) {
        float floor_p = p->min_p * c[0].p;
        int keep = 1;
        while (keep < n && c[keep].p >= floor_p) keep++;
        n = keep;
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += c[i].p;
    for (int i = 0; i < n; i++) c[i].p = (float)(c[i].p / total);
    if (p->infill && s->tok) n = infill_step(s, c, n);
    return n;
}

int sasp_sampler_sample(sasp_sampler *s, const float *logits)
{
    const sasp_candidate *c;
    int n = sasp_sampler_dist(s, logits, &c);
    if (n == 1) return c[0].id;
    double r = sasp_rng_uniform(&s->rng), cum = 0;
    for (int i = 0; i < n; i++) {
        cum += c[i].p;
        if (r < cum) return c[i].id;
    }
    return c[n - 1].id; /* rounding left r just above the total */
}

float sasp_log_softmax_top(const float *w, int vocab, int chosen, sasp_logprob *top, int n_top,
                           sasp_candidate *scratch)
{
    double mx = w[argmax(w, vocab)], sum = 0;
    for (int j = 0; j < vocab; j++) sum += exp((double)w[j] - mx);
    double lse = mx + log(sum);
    if (n_top > vocab) n_top = vocab;
    if (n_top > 0) {
        select_top(w, vocab, n_top, scratch);
        for (int i = 0; i < n_top; i++) {
            top[i].id = scratch[i].id;
            top[i].logprob = (float)((double)w[top[i].id] - lse);
        }
    }
    return (float)((double)w[chosen] - lse);
}

float sasp_sampler_logprobs(sasp_sampler *s, int chosen, sasp_logprob *top, int n_top)
{
    return sasp_log_softmax_top(s->work, s->vocab, chosen, top, n_top, s->cand);
}
