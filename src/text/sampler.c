/* sampler.c: the sampler chain (llama.cpp's samplers in the request's order), the draw, and logprobs.
 * The semantics are documented in sampler.h; this file is the one path that implements them, except
 * DRY (sampler_dry.c). The server's default sampling is sasp_sampling_defaults, here. */
#include "text/sampler.h"

#include <ctype.h>
#include <float.h>
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

/* --- the parameters: names, defaults, DRY's breakers --- */

const char *const sasp_sampler_names[SASP_SMP_COUNT] = {
    "penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature", "infill"};

int sasp_sampler_kind_of(const char *name, size_t len)
{
    static const char letters[] = "edskypmxti"; /* in sasp_sampler_kind's order */
    static const struct {
        const char *alias;
        int kind;
    } aliases[] = {
        {"nucleus", SASP_SMP_TOP_P}, {"temp", SASP_SMP_TEMPERATURE}, {"typ", SASP_SMP_TYPICAL_P}};
    char k[32], canon[32];
    size_t n = 0;
    if (len == 0 || len >= sizeof k) return -1;
    for (size_t i = 0; i < len; i++)
        if (name[i] != '_' && name[i] != '-') k[n++] = (char)tolower((unsigned char)name[i]);
    k[n] = 0;
    if (len == 1) {
        const char *at = k[0] ? strchr(letters, k[0]) : NULL;
        return at ? (int)(at - letters) : k[0] == 'a' ? -2
                                                      : -1;
    }
    if (!strcmp(k, "adaptivep")) return -2;
    for (int kind = 0; kind < SASP_SMP_COUNT; kind++) {
        size_t m = 0;
        for (const char *c = sasp_sampler_names[kind]; *c; c++)
            if (*c != '_') canon[m++] = *c;
        canon[m] = 0;
        if (!strcmp(k, canon)) return kind;
    }
    for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++)
        if (!strcmp(k, aliases[i].alias)) return aliases[i].kind;
    return -1;
}

void sasp_sampling_defaults(sasp_sampling *p)
{
    static const char *const breakers[] = {"\n", ":", "\"", "*"};
    static const size_t breaker_lens[] = {1, 1, 1, 1};
    static const unsigned char chain[] = {SASP_SMP_PENALTIES, SASP_SMP_DRY, SASP_SMP_TOP_N_SIGMA, SASP_SMP_TOP_K,
                                          SASP_SMP_TYPICAL_P, SASP_SMP_TOP_P, SASP_SMP_MIN_P, SASP_SMP_XTC,
                                          SASP_SMP_TEMPERATURE};
    memset(p, 0, sizeof *p);
    p->temperature = 0.8f;
    p->dynatemp_range = 0.0f;
    p->dynatemp_exponent = 1.0f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->typical_p = 1.0f;
    p->top_n_sigma = -1.0f;
    p->xtc_probability = 0.0f;
    p->xtc_threshold = 0.1f;
    p->min_keep = 0;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->frequency_penalty = 0.5f; /* measured: docs/api.md, "The default sampling" */
    p->presence_penalty = 0.0f;
    p->dry_multiplier = 0.8f; /* measured, as frequency_penalty */
    p->dry_base = 1.75f;
    p->dry_allowed_length = 2;
    p->dry_penalty_last_n = -1;
    sasp_sampling_set_breakers(p, breakers, breaker_lens, 4);
    p->n_chain = (int)sizeof chain;
    memcpy(p->chain, chain, sizeof chain);
    p->seed = 0;
}

void sasp_sampling_fim_defaults(sasp_sampling *p)
{
    static const unsigned char chain[] = {SASP_SMP_TOP_K, SASP_SMP_INFILL, SASP_SMP_TEMPERATURE};
    p->n_chain = (int)sizeof chain;
    memcpy(p->chain, chain, sizeof chain);
}

/* --- the sampler --- */

static int in_chain(const sasp_sampling *p, int kind)
{
    for (int i = 0; i < p->n_chain; i++)
        if (p->chain[i] == kind) return 1;
    return 0;
}

static int dry_on(const sasp_sampling *p)
{
    return in_chain(p, SASP_SMP_DRY) && p->dry_multiplier != 0.0f && p->dry_base >= 1.0f && p->dry_penalty_last_n != 0;
}

static uint64_t xtc_seed(uint64_t seed) { return seed ^ 0x5854435f53454544ULL; /* "XTC_SEED" */ }

sasp_sampler *sasp_sampler_new(int vocab, const sasp_sampling *p)
{
    sasp_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->vocab = vocab;
    s->eog = -1;
    sasp_rng_seed(&s->rng, p->seed);
    sasp_rng_seed(&s->xtc_rng, xtc_seed(p->seed));
    s->generated_count = calloc((size_t)vocab, sizeof *s->generated_count);
    s->raw = malloc((size_t)vocab * sizeof *s->raw);
    s->work = malloc((size_t)vocab * sizeof *s->work);
    s->cand = malloc((size_t)vocab * sizeof *s->cand);
    s->scratch = malloc((size_t)vocab * sizeof *s->scratch);
    s->row = malloc((size_t)vocab * sizeof *s->row);
    s->changed = calloc((size_t)vocab, 1);
    s->changed_ids = malloc((size_t)vocab * sizeof *s->changed_ids);
    s->gen_ids = malloc((size_t)vocab * sizeof *s->gen_ids);
    s->seen = calloc((size_t)vocab, 1);
    if (!s->generated_count || !s->raw || !s->work || !s->cand || !s->scratch || !s->row || !s->changed ||
        !s->changed_ids || !s->gen_ids || !s->seen ||
        (dry_on(p) && !(s->dry = sasp_dry_new(p, NULL, vocab)))) {
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
    free(s->raw);
    free(s->work);
    free(s->cand);
    free(s->scratch);
    free(s->row);
    free(s->changed);
    free(s->changed_ids);
    free(s->gen_ids);
    free(s->seen);
    sasp_dry_free(s->dry);
    free(s);
}

int sasp_sampler_set_tokenizer(sasp_sampler *s, const sasp_tokenizer *tok, int eog)
{
    s->tok = tok;
    s->eog = eog;
    if (!s->dry) return 0;
    sasp_dry *d = sasp_dry_new(&s->p, tok, s->vocab);
    if (!d) return -1;
    sasp_dry_free(s->dry);
    s->dry = d;
    return 0;
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
    if (generated && s->generated_count[token]++ == 0) s->gen_ids[s->n_gen_ids++] = token;
    return 0;
}

void sasp_sampler_set_logit_bias(sasp_sampler *s, const sasp_logit_bias *bias, int n)
{
    s->bias = bias;
    s->n_bias = n;
}

/* The logits of this step into s->raw, the request's logit biases added (step 0). */
static void take_logits(sasp_sampler *s, const float *logits)
{
    memcpy(s->raw, logits, (size_t)s->vocab * sizeof *s->raw);
    for (int k = 0; k < s->n_bias; k++) s->raw[s->bias[k].id] += s->bias[k].bias;
}

/* --- candidates: order, selection, softmax --- */

/* a ranks before b: larger logit, then lower id. */
static inline int before(const sasp_candidate *a, const sasp_candidate *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_cand(const void *a, const void *b)
{
    const sasp_candidate *x = a, *y = b;
    return before(x, y) ? -1 : before(y, x) ? 1
                                            : 0;
}

/* Sift c[i] down the heap c[0..size) whose root is its worst member (no child ranks after its parent). */
static void sift_worst(sasp_candidate *c, int size, int i)
{
    sasp_candidate x = c[i];
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        const sasp_candidate *worst = &x;
        if (l < size && before(worst, &c[l])) worst = &c[w = l];
        if (r < size && before(worst, &c[r])) worst = &c[w = r];
        if (w == i) break;
        c[i] = c[w];
        i = w;
    }
    c[i] = x;
}

static void heapify_worst(sasp_candidate *c, int size)
{
    for (int i = size / 2 - 1; i >= 0; i--) sift_worst(c, size, i);
}

void sasp_cand_keep_best(sasp_candidate *c, int n, int k)
{
    if (k > n) k = n;
    if (k <= 0) return;
    if (k < n) { /* a heap of the k best so far, the worst of them at its root; the others end up behind */
        heapify_worst(c, k);
        for (int j = k; j < n; j++) {
            if (!before(&c[j], &c[0])) continue;
            sasp_candidate t = c[0];
            c[0] = c[j];
            c[j] = t;
            sift_worst(c, k, 0);
        }
    }
    qsort(c, (size_t)k, sizeof *c, cmp_cand);
}

/* The k-th largest of a[0..n) (1 <= k <= n, no NaN), a reordered: quickselect, Hoare's partition. */
static float kth_largest(float *a, int n, int k)
{
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) { /* a[lo..i) >= pivot >= a(j..hi] */
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return pivot; /* a(j..i) all equal the pivot */
    }
    return a[lo];
}

/* The largest of x[0..n), -inf when there is none (x > m is false for NaN): eight running maxima, one
 * chain of dependent comparisons each, which the compiler makes vector instructions of. */
static float block_max(const float *x, int n)
{
    float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) m[l] = x[j + l] > m[l] ? x[j + l] : m[l];
    for (; j < n; j++) m[0] = x[j] > m[0] ? x[j] : m[0];
    for (int l = 1; l < 8; l++) m[0] = m[l] > m[0] ? m[l] : m[0];
    return m[0];
}

/* A row is cut into blocks of BAR_BLOCK values or more (a power of two times it), at least two per
 * wanted candidate where the row allows, at most BAR_BLOCKS of them. */
#define BAR_BLOCK 16
#define BAR_BLOCKS 1024

int sasp_row_above_bar(const float *x, int n, int k, sasp_candidate *c)
{
    if (k < 1) return 0;
    int b = BAR_BLOCK;
    while (b < 64 && n / (2 * b) >= 2 * k) b *= 2;
    while ((n + b - 1) / b > BAR_BLOCKS) b *= 2;
    int nb = (n + b - 1) / b;
    float mx[BAR_BLOCKS], sel[BAR_BLOCKS];
    for (int i = 0; i < nb; i++) mx[i] = sel[i] = block_max(x + i * b, (i + 1) * b < n ? b : n - i * b);
    float bar = k > nb ? -INFINITY : kth_largest(sel, nb, k);
    int m = 0;
    for (int i = 0; i < nb; i++) {
        if (!(mx[i] >= bar) || mx[i] == -INFINITY) continue; /* no value of the block reaches the bar */
        int hi = (i + 1) * b < n ? (i + 1) * b : n;
        for (int j = i * b; j < hi; j++)
            if (x[j] >= bar && x[j] > -INFINITY) c[m++] = (sasp_candidate){j, x[j], 0};
    }
    return m;
}

/* p = softmax(logits) over c[0..n). */
static void softmax(sasp_candidate *c, int n)
{
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) mx = fmax(mx, c[i].logit);
    for (int i = 0; i < n; i++) sum += c[i].p = exp(c[i].logit - mx);
    for (int i = 0; i < n; i++) c[i].p /= sum;
}

/* What the steps share: the candidates, how many, whether they are sorted (best first). */
typedef struct chain {
    sasp_sampler *s;
    sasp_candidate *c;
    int n;
    int sorted;
} chain;

static void sort_all(chain *ch)
{
    if (!ch->sorted) qsort(ch->c, (size_t)ch->n, sizeof *ch->c, cmp_cand);
    ch->sorted = 1;
}

/* Keep the candidates whose logit is at least floor, in their order. */
static void filter_logit_at_least(chain *ch, double floor)
{
    int m = 0;
    for (int i = 0; i < ch->n; i++)
        if (ch->c[i].logit >= floor) ch->c[m++] = ch->c[i];
    ch->n = m;
}

/* -(sum p log p) of the candidates (p already set). */
static double entropy(const sasp_candidate *c, int n)
{
    double h = 0;
    for (int i = 0; i < n; i++)
        if (c[i].p > 0) h -= c[i].p * log(c[i].p);
    return h;
}

/* --- the steps --- */

/* The penalties: the repetition window's tokens are marked in s->seen (1) while they apply. */
static int penalties_on(const sasp_sampling *p)
{
    return (p->repeat_penalty != 1.0f && p->repeat_last_n != 0) || p->frequency_penalty != 0.0f ||
           p->presence_penalty != 0.0f;
}

/* Mark the repetition window (none when the repetition penalty is off); its length, its start in *last. */
static int mark_window(sasp_sampler *s, const int **last)
{
    const sasp_sampling *p = &s->p;
    int n = p->repeat_penalty == 1.0f || p->repeat_last_n == 0        ? 0
            : p->repeat_last_n < 0 || p->repeat_last_n > s->n_history ? s->n_history
                                                                      : p->repeat_last_n;
    *last = s->history + s->n_history - n;
    for (int i = 0; i < n; i++) s->seen[(*last)[i]] = 1;
    return n;
}

static void unmark_window(sasp_sampler *s, const int *last, int n)
{
    for (int i = 0; i < n; i++) s->seen[last[i]] = 0;
}

/* Token id's logit x with the penalties. */
static double penalised(const sasp_sampler *s, int id, double x)
{
    const sasp_sampling *p = &s->p;
    if (s->seen[id]) x = x > 0 ? x / p->repeat_penalty : x * p->repeat_penalty;
    int k = s->generated_count[id];
    if (k) x -= (double)k * p->frequency_penalty + p->presence_penalty;
    return x;
}

static void step_penalties(chain *ch)
{
    sasp_sampler *s = ch->s;
    if (!penalties_on(&s->p)) return;
    const int *last;
    int n = mark_window(s, &last);
    for (int i = 0; i < ch->n; i++) ch->c[i].logit = penalised(s, ch->c[i].id, ch->c[i].logit);
    unmark_window(s, last, n);
    ch->sorted = 0;
}

/* --- the row: the logits by token before the chain cut any (the leading penalties and DRY change a
 * few tokens; the others keep raw's value) --- */

static inline double row_get(const sasp_sampler *s, int j) { return s->changed[j] ? s->row[j] : s->raw[j]; }

static void row_set(sasp_sampler *s, int j, double v)
{
    if (!s->changed[j]) s->changed[j] = 1, s->changed_ids[s->n_changed++] = j;
    s->row[j] = v;
}

static void row_clear(sasp_sampler *s)
{
    for (int i = 0; i < s->n_changed; i++) s->changed[s->changed_ids[i]] = 0;
    s->n_changed = 0;
}

/* The penalties on the row: the tokens of the window and the generated ones. */
static void row_penalties(sasp_sampler *s)
{
    if (!penalties_on(&s->p)) return;
    const int *last;
    int n = mark_window(s, &last);
    for (int i = 0; i < n; i++) {
        if (s->seen[last[i]] != 1) continue;
        row_set(s, last[i], penalised(s, last[i], row_get(s, last[i])));
        s->seen[last[i]] = 2; /* done */
    }
    for (int i = 0; i < s->n_gen_ids; i++) {
        int id = s->gen_ids[i];
        if (s->seen[id] != 2) row_set(s, id, penalised(s, id, row_get(s, id)));
    }
    unmark_window(s, last, n);
}

static void row_dry(sasp_sampler *s)
{
    int n = s->dry ? sasp_dry_penalties(s->dry, s->history, s->n_history, s->scratch) : 0;
    for (int i = 0; i < n; i++) row_set(s, s->scratch[i].id, row_get(s, s->scratch[i].id) - s->scratch[i].logit);
}

/* Whether a step of the chain is off (changes nothing) at p's settings. */
static int step_off(const sasp_sampling *p, int kind)
{
    switch (kind) {
    case SASP_SMP_TOP_N_SIGMA: return p->top_n_sigma <= 0;
    case SASP_SMP_TOP_K: return p->top_k <= 0;
    case SASP_SMP_TYPICAL_P: return p->typical_p >= 1;
    case SASP_SMP_TOP_P: return p->top_p >= 1;
    case SASP_SMP_MIN_P: return p->min_p <= 0;
    case SASP_SMP_XTC: return p->xtc_probability <= 0 || p->xtc_threshold > 0.5f;
    default: return 0;
    }
}

/* The chain's leading steps that change logits token by token (penalties, DRY), on the row, and the
 * ones that are off; returns the index of the first other step. */
static int row_prefix(sasp_sampler *s)
{
    int i = 0;
    for (; i < s->p.n_chain; i++) {
        if (s->p.chain[i] == SASP_SMP_PENALTIES) row_penalties(s);
        else if (s->p.chain[i] == SASP_SMP_DRY) row_dry(s);
        else if (!step_off(&s->p, s->p.chain[i])) break;
    }
    return i;
}

/* The k best finite tokens of the row as candidates c, sorted; returns how many (fewer than k when
 * fewer are finite). The unchanged tokens are read straight from raw (the changed ones hidden there
 * meanwhile), those at sasp_row_above_bar's bar or above; the changed ones are added after: the k best
 * of the row are among the k best unchanged ones and the changed ones. */
static int row_best(sasp_sampler *s, int k, sasp_candidate *c)
{
    for (int i = 0; i < s->n_changed; i++) { /* hidden, their raw values kept in work meanwhile */
        s->work[s->changed_ids[i]] = s->raw[s->changed_ids[i]];
        s->raw[s->changed_ids[i]] = -INFINITY;
    }
    int n = sasp_row_above_bar(s->raw, s->vocab, k, c);
    for (int i = 0; i < s->n_changed; i++) {
        int id = s->changed_ids[i];
        s->raw[id] = s->work[id]; /* put back */
        if (s->row[id] > -INFINITY) c[n++] = (sasp_candidate){id, s->row[id], 0};
    }
    sasp_cand_keep_best(c, n, k);
    return n < k ? n : k;
}

static void step_top_n_sigma(chain *ch, double n_sigma)
{
    if (n_sigma <= 0 || ch->n <= 1) return;
    double mx = -INFINITY, sum = 0, acc = 0;
    for (int i = 0; i < ch->n; i++) mx = fmax(mx, ch->c[i].logit), sum += ch->c[i].logit;
    double mean = sum / ch->n;
    for (int i = 0; i < ch->n; i++) acc += (ch->c[i].logit - mean) * (ch->c[i].logit - mean);
    filter_logit_at_least(ch, mx - n_sigma * sqrt(acc / ch->n));
}

static void step_top_k(chain *ch, int k)
{
    if (k <= 0 || k >= ch->n) return;
    if (!ch->sorted) sasp_cand_keep_best(ch->c, ch->n, k);
    ch->n = k;
    ch->sorted = 1;
}

/* Locally typical: the candidates by |-log p - entropy|, the shortest prefix whose mass exceeds typ. */
static void step_typical(chain *ch, double typ, int min_keep)
{
    if (typ >= 1) return;
    sort_all(ch);
    softmax(ch->c, ch->n);
    double h = entropy(ch->c, ch->n);
    sasp_candidate *rank = ch->s->scratch; /* id: the candidate's index, logit: its distance */
    for (int i = 0; i < ch->n; i++) rank[i] = (sasp_candidate){i, -fabs(-log(ch->c[i].p) - h), 0};
    qsort(rank, (size_t)ch->n, sizeof *rank, cmp_cand); /* nearest first, then in the order of p */
    int keep = ch->n;
    double cum = 0;
    for (int i = 0; i < ch->n; i++) {
        cum += ch->c[rank[i].id].p;
        if (cum > typ && (min_keep == 0 || i >= min_keep - 1)) {
            keep = i + 1;
            break;
        }
    }
    for (int i = 0; i < keep; i++) rank[i] = ch->c[rank[i].id];
    memcpy(ch->c, rank, (size_t)keep * sizeof *rank);
    ch->n = keep;
    ch->sorted = 0;
}

/* The shortest most-likely prefix whose mass reaches top_p. Unsorted, the 256 best are sorted first and
 * the rest only when their mass is not enough. */
static void step_top_p(chain *ch, double top_p, int min_keep)
{
    if (top_p >= 1) return;
    softmax(ch->c, ch->n);
    int sorted_upto = ch->sorted ? ch->n : ch->n < 256 ? ch->n
                                                       : 256;
    if (!ch->sorted) sasp_cand_keep_best(ch->c, ch->n, sorted_upto);
    double cum = 0;
    for (int i = 0; i < ch->n; i++) {
        if (i == sorted_upto) {
            qsort(ch->c + i, (size_t)(ch->n - i), sizeof *ch->c, cmp_cand);
            sorted_upto = ch->n;
        }
        cum += ch->c[i].p;
        if (cum >= top_p && i + 1 >= min_keep) {
            ch->n = i + 1;
            break;
        }
    }
    ch->sorted = 1;
}

/* p >= min_p * p(most likely), that is logit >= max + log(min_p); at least min_keep. */
static void step_min_p(chain *ch, double min_p, int min_keep)
{
    if (min_p <= 0 || ch->n == 0) return;
    double mx = -INFINITY;
    for (int i = 0; i < ch->n; i++) mx = fmax(mx, ch->c[i].logit);
    double floor = mx + log(min_p);
    int pass = 0;
    for (int i = 0; i < ch->n; i++) pass += ch->c[i].logit >= floor;
    if (pass > 0 && pass >= min_keep) {
        filter_logit_at_least(ch, floor);
    } else { /* the min_keep best (at least one) */
        sort_all(ch);
        ch->n = min_keep <= 1 ? 1 : min_keep < ch->n ? min_keep
                                                     : ch->n;
    }
}

/* With chance xtc_probability: drop every candidate with p >= threshold but the least likely of them. */
static void step_xtc(chain *ch, double prob, double threshold, int min_keep)
{
    if (prob <= 0 || threshold > 0.5 || ch->n < 2) return;
    if (sasp_rng_uniform(&ch->s->xtc_rng) > prob) return;
    sort_all(ch);
    softmax(ch->c, ch->n);
    int last_above = 0;
    while (last_above + 1 < ch->n && ch->c[last_above + 1].p >= threshold) last_above++;
    if (last_above > 0 && ch->n - last_above >= min_keep) {
        memmove(ch->c, ch->c + last_above, (size_t)(ch->n - last_above) * sizeof *ch->c);
        ch->n -= last_above;
    }
}

/* Temperature (dynamic with dynatemp_range > 0); <= 0 keeps the largest logit alone. */
static void step_temperature(chain *ch, const sasp_sampling *p)
{
    double t = p->temperature;
    if (p->dynatemp_range > 0) {
        if (ch->n <= 1) return;
        double lo = fmax(0.0, t - p->dynatemp_range), hi = t + p->dynatemp_range;
        softmax(ch->c, ch->n);
        double norm = entropy(ch->c, ch->n) / log((double)ch->n);
        t = lo + (hi - lo) * pow(norm, p->dynatemp_exponent);
    }
    if (t <= 0) {
        int best = 0;
        for (int i = 1; i < ch->n; i++)
            if (before(&ch->c[i], &ch->c[best])) best = i;
        ch->c[0] = ch->c[best];
        ch->n = ch->n > 0;
        ch->sorted = 1;
        return;
    }
    for (int i = 0; i < ch->n; i++) ch->c[i].logit /= t;
}

/* --- the infill step (llama.cpp's infill sampler) --- */

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
    for (int i = 0; i < m && sum > 0; i++) c[i].p /= sum;
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

/* llama.cpp's infill sampler (sampler.h) over the most likely SASP_INFILL_MAX candidates; what it
 * leaves has logit log(p). */
static void step_infill(chain *ch)
{
    const sasp_sampler *s = ch->s;
    if (!s->tok) return;
    sasp_candidate *c = ch->c;
    sort_all(ch);
    softmax(c, ch->n);
    int n = ch->n < SASP_INFILL_MAX ? ch->n : SASP_INFILL_MAX, n_text, m;
    double p_end = 0, p_text = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].id == s->eog) p_end += c[i].p;
        else p_text += c[i].p;
    }
    if (3 * p_end * n > p_text) {
        m = infill_keep(s, c, n, 2.0, &n_text); /* the end alone */
    } else {
        infill_merge(s, c, n);
        m = infill_keep(s, c, n, 0.2, &n_text);
        if (n_text == 0) {
            c[0] = (sasp_candidate){s->eog, 0, 1};
            m = 1;
        } else {
            m = infill_keep(s, c, m, 1.0 / (n_text + 1), &n_text);
        }
    }
    int kept = 0;
    for (int i = 0; i < m; i++) {
        if (c[i].p <= 0) continue; /* too unlikely to be drawn */
        c[kept] = c[i];
        c[kept++].logit = log(c[i].p);
    }
    if (kept == 0) c[kept++] = (sasp_candidate){s->eog, 0, 1};
    ch->n = kept;
    ch->sorted = 0;
}

/* --- the chain, the draw, logprobs --- */

static void run_step(chain *ch, int kind)
{
    const sasp_sampling *p = &ch->s->p;
    switch (kind) {
    case SASP_SMP_PENALTIES: step_penalties(ch); break;
    case SASP_SMP_DRY:
        if (ch->s->dry) sasp_dry_apply(ch->s->dry, ch->s->history, ch->s->n_history, ch->c, ch->n), ch->sorted = 0;
        break;
    case SASP_SMP_TOP_N_SIGMA: step_top_n_sigma(ch, p->top_n_sigma); break;
    case SASP_SMP_TOP_K: step_top_k(ch, p->top_k); break;
    case SASP_SMP_TYPICAL_P: step_typical(ch, p->typical_p, p->min_keep); break;
    case SASP_SMP_TOP_P: step_top_p(ch, p->top_p, p->min_keep); break;
    case SASP_SMP_MIN_P: step_min_p(ch, p->min_p, p->min_keep); break;
    case SASP_SMP_XTC: step_xtc(ch, p->xtc_probability, p->xtc_threshold, p->min_keep); break;
    case SASP_SMP_TEMPERATURE: step_temperature(ch, p); break;
    case SASP_SMP_INFILL: step_infill(ch); break;
    default: break;
    }
}

/* The chain on logits: the final distribution in s->cand[0..s->n_cand), p set, in no particular order
 * (s->cand_sorted says whether it is sorted). */
static void run_chain(sasp_sampler *s, const float *logits)
{
    chain ch = {s, s->cand, 0, 0};
    take_logits(s, logits);
    int i = row_prefix(s);
    if (i < s->p.n_chain && s->p.chain[i] == SASP_SMP_TOP_K && s->p.top_k > 0 && s->p.top_k < s->vocab) {
        ch.n = row_best(s, s->p.top_k, ch.c); /* the common case: no array of the whole vocabulary */
        ch.sorted = 1;
        i++;
    } else {
        for (int j = 0; j < s->vocab; j++) { /* a forbidden token (-inf) is no candidate */
            double v = row_get(s, j);
            if (v > -INFINITY) ch.c[ch.n++] = (sasp_candidate){j, v, 0};
        }
    }
    row_clear(s);
    if (ch.n == 0) ch.c[ch.n++] = (sasp_candidate){0, 0, 0}; /* nothing allowed: token 0, as an arg-max would */
    for (; i < s->p.n_chain && ch.n > 1; i++) run_step(&ch, s->p.chain[i]);
    softmax(ch.c, ch.n);
    s->n_cand = ch.n;
    s->cand_sorted = ch.sorted;
}

int sasp_sampler_dist(sasp_sampler *s, const float *logits, const sasp_candidate **out)
{
    run_chain(s, logits);
    if (!s->cand_sorted) qsort(s->cand, (size_t)s->n_cand, sizeof *s->cand, cmp_cand);
    s->cand_sorted = 1;
    *out = s->cand;
    return s->n_cand;
}

int sasp_argmax(const float *logits, int n)
{
    int best = 0;
    float max = n > 0 ? logits[0] : 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > max) max = logits[i], best = i;
    return best;
}

/* The draw walks the candidates in the order the chain left them (sorting them would cost more than
 * the draw, and the same seed gives the same token either way). */
int sasp_sampler_sample(sasp_sampler *s, const float *logits)
{
    run_chain(s, logits);
    const sasp_candidate *c = s->cand;
    int n = s->n_cand;
    if (n == 1) return c[0].id;
    double r = sasp_rng_uniform(&s->rng), cum = 0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].p <= 0) continue;
        cum += c[i].p;
        last = i;
        if (r < cum) return c[i].id;
    }
    return c[last].id; /* rounding left r just above the total */
}

const float *sasp_sampler_penalize(sasp_sampler *s, const float *logits)
{
    if (logits != s->raw) take_logits(s, logits);
    memcpy(s->work, s->raw, (size_t)s->vocab * sizeof *s->work);
    if (in_chain(&s->p, SASP_SMP_PENALTIES)) row_penalties(s);
    row_dry(s);
    for (int i = 0; i < s->n_changed; i++) s->work[s->changed_ids[i]] = (float)s->row[s->changed_ids[i]];
    row_clear(s);
    return s->work;
}

float sasp_log_softmax_top(const float *w, int vocab, int chosen, sasp_logprob *top, int n_top,
                           sasp_candidate *scratch)
{
    double mx = block_max(w, vocab), sum = 0; /* fmax's value, NaN passed over, without a call a logit */
    for (int j = 0; j < vocab; j++) sum += exp((double)w[j] - mx);
    double lse = mx + log(sum);
    if (n_top > vocab) n_top = vocab;
    if (n_top > 0) {
        int n = sasp_row_above_bar(w, vocab, n_top, scratch);
        if (n < n_top) /* fewer finite ones than asked for: the forbidden ones (-inf) too, by id */
            for (n = 0; n < vocab; n++) scratch[n] = (sasp_candidate){n, w[n], 0};
        sasp_cand_keep_best(scratch, n, n_top);
        for (int i = 0; i < n_top; i++) top[i] = (sasp_logprob){scratch[i].id, (float)(scratch[i].logit - lse)};
    }
    return (float)((double)w[chosen] - lse);
}

float sasp_sampler_logprobs(sasp_sampler *s, int chosen, sasp_logprob *top, int n_top)
{
    const float *w = sasp_sampler_penalize(s, s->raw);
    return sasp_log_softmax_top(w, s->vocab, chosen, top, n_top, s->scratch);
}

float sasp_sampler_post_probs(sasp_sampler *s, int chosen, sasp_logprob *top, int n_top, int *n_out)
{
    float lp = -INFINITY;
    for (int i = 0; i < s->n_cand; i++)
        if (s->cand[i].id == chosen && s->cand[i].p > 0) lp = (float)log(s->cand[i].p);
    if (n_top > s->n_cand) n_top = s->n_cand;
    memcpy(s->scratch, s->cand, (size_t)s->n_cand * sizeof *s->cand);
    sasp_cand_keep_best(s->scratch, s->n_cand, n_top);
    int k = 0;
    while (k < n_top && s->scratch[k].p > 0) top[k] = (sasp_logprob){s->scratch[k].id, (float)log(s->scratch[k].p)}, k++;
    *n_out = k;
    return lp;
}
