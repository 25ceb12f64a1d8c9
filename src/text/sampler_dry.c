/* sampler_dry.c: the DRY sampler ("don't repeat yourself"), with llama.cpp's semantics (sampler.h
 * places it in the chain; docs/api.md is the user's description).
 *
 * Over the window of the last dry_penalty_last_n tokens of the sequence (prompt and generated; -1:
 * all of it), a candidate token x is penalised when, placed after the window, it would extend a
 * sequence that already occurred in the window: for every earlier position j where x followed, let L
 * be the number of tokens before x there that equal the window's last L tokens (the longest such
 * repeat). When the longest L over all such j is at least dry_allowed_length, x's logit loses
 * dry_multiplier * dry_base^(L - dry_allowed_length) (the exponent capped so that the power stays a
 * finite float, and the penalty at FLT_MAX).
 *
 * Sequence breakers cut repeats: L never exceeds the number of tokens since the most recent breaker in
 * the window, and when those are fewer than dry_allowed_length nothing is penalised. A token that
 * contains a whole breaker string is a breaker by itself and is never penalised. A breaker that spans
 * tokens (llama.cpp's rule): a token whose bytes end with the first k bytes of the breaker (k shorter
 * than the breaker) starts it, and it is complete when the next tokens are exactly the tokenisation of
 * the breaker's remaining bytes (at most 20 tokens of it are matched).
 *
 * Repeat lengths come from the Z-function of the reversed window (linear in the window). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "text/sampler_dry.h"

#define DRY_MAX_TAIL 20 /* tokens of a breaker matched after its first token (llama.cpp's limit) */

/* --- the sequence breakers, packed in sasp_sampling --- */

int sasp_sampling_set_breakers(sasp_sampling *p, const char *const *strs, const size_t *lens, int n)
{
    size_t used = 0;
    int count = 0;
    for (int i = 0; i < n; i++) {
        size_t len = lens[i] > SASP_DRY_BREAKER_MAX ? SASP_DRY_BREAKER_MAX : lens[i];
        if (len == 0) continue;
        if (used + 1 + len > sizeof p->dry_breakers) return -1;
        p->dry_breakers[used] = (unsigned char)len;
        memcpy(p->dry_breakers + used + 1, strs[i], len);
        used += 1 + len;
        count++;
    }
    p->n_dry_breakers = count;
    return 0;
}

const char *sasp_sampling_breaker(const sasp_sampling *p, int i, size_t *len)
{
    size_t at = 0;
    for (int k = 0; k < i; k++) at += 1 + p->dry_breakers[at];
    *len = p->dry_breakers[at];
    return (const char *)p->dry_breakers + at + 1;
}


/* A breaker that starts with a token: the tokens that must follow it (none: the token holds all of it). */
typedef struct dry_tail {
    int next; /* the next tail of the same token, or -1 */
    int off, len;
} dry_tail;

struct sasp_dry {
    double multiplier, base;
    int allowed, last_n, vocab;
    int *first_tail;      /* [vocab] its first dry_tail, -1: it starts no breaker */
    unsigned char *whole; /* [vocab] the token contains a whole breaker */
    dry_tail *tails;
    int n_tails, cap_tails;
    int *tail_ids; /* the tails' tokens */
    int n_ids, cap_ids;
    int *longest; /* [vocab] the longest repeat each token would extend, -1: none */
    int *z;       /* the Z-function of the reversed window */
    int cap_z;
};

void sasp_dry_free(sasp_dry *d)
{
    if (!d) return;
    free(d->first_tail);
    free(d->whole);
    free(d->tails);
    free(d->tail_ids);
    free(d->longest);
    free(d->z);
    free(d);
}

/* Whether token tok already starts the tail ids[0..n). */
static int has_tail(const sasp_dry *d, int tok, const int *ids, int n)
{
    for (int t = d->first_tail[tok]; t >= 0; t = d->tails[t].next)
        if (d->tails[t].len == n && (n == 0 || !memcmp(d->tail_ids + d->tails[t].off, ids, (size_t)n * sizeof *ids)))
            return 1;
    return 0;
}

static int add_tail(sasp_dry *d, int tok, const int *ids, int n)
{
    if (has_tail(d, tok, ids, n)) return 0;
    if (d->n_tails == d->cap_tails) {
        int cap = d->cap_tails ? 2 * d->cap_tails : 64;
        dry_tail *t = realloc(d->tails, (size_t)cap * sizeof *t);
        if (!t) return -1;
        d->tails = t;
        d->cap_tails = cap;
    }
    if (d->n_ids + n > d->cap_ids) {
        int cap = 2 * (d->n_ids + n) + 64;
        int *p = realloc(d->tail_ids, (size_t)cap * sizeof *p);
        if (!p) return -1;
        d->tail_ids = p;
        d->cap_ids = cap;
    }
    if (n) memcpy(d->tail_ids + d->n_ids, ids, (size_t)n * sizeof *ids);
    d->tails[d->n_tails] = (dry_tail){d->first_tail[tok], d->n_ids, n};
    d->first_tail[tok] = d->n_tails++;
    d->n_ids += n;
    if (n == 0) d->whole[tok] = 1;
    return 0;
}

/* The tails breaker b (len bytes) gives each token of tok. tails_of[k]: the tokenisation of b[k..],
 * computed when first needed. */
static int add_breaker(sasp_dry *d, const sasp_tokenizer *tok, const char *b, size_t len)
{
    int *tails_of[SASP_DRY_BREAKER_MAX] = {0}, n_of[SASP_DRY_BREAKER_MAX] = {0}, rc = 0;
    for (int id = 0; id < d->vocab && rc == 0; id++) {
        size_t wl;
        const char *w = sasp_token_bytes(tok, id, &wl);
        if (!w || wl == 0) continue;
        if (memmem(w, wl, b, len)) {
            rc = add_tail(d, id, NULL, 0);
            continue;
        }
        for (size_t k = 1; k < len && k <= wl && rc == 0; k++) { /* w ends with b's first k bytes */
            if (memcmp(w + wl - k, b, k)) continue;
            if (!tails_of[k] && (n_of[k] = sasp_encode(tok, b + k, len - k, 0, &tails_of[k])) < 0) rc = -1;
            else rc = add_tail(d, id, tails_of[k], n_of[k] < DRY_MAX_TAIL ? n_of[k] : DRY_MAX_TAIL);
        }
    }
    for (size_t k = 0; k < SASP_DRY_BREAKER_MAX; k++) free(tails_of[k]);
    return rc;
}

sasp_dry *sasp_dry_new(const sasp_sampling *p, const sasp_tokenizer *tok, int vocab)
{
    sasp_dry *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->multiplier = p->dry_multiplier;
    d->base = p->dry_base;
    d->allowed = p->dry_allowed_length;
    d->last_n = p->dry_penalty_last_n;
    d->vocab = vocab;
    d->first_tail = malloc((size_t)vocab * sizeof *d->first_tail);
    d->whole = calloc((size_t)vocab, 1);
    d->longest = malloc((size_t)vocab * sizeof *d->longest);
    if (!d->first_tail || !d->whole || !d->longest) goto fail;
    for (int j = 0; j < vocab; j++) d->first_tail[j] = d->longest[j] = -1;
    for (int i = 0; tok && i < p->n_dry_breakers; i++) {
        size_t len;
        const char *b = sasp_sampling_breaker(p, i, &len);
        if (add_breaker(d, tok, b, len)) goto fail;
    }
    return d;
fail:
    sasp_dry_free(d);
    return NULL;
}

/* How many tokens at the end of t[0..n) come after the most recent complete breaker (n if none). */
static int since_breaker(const sasp_dry *d, const int *t, int n)
{
    for (int back = 0; back < n; back++) { /* the breaker's first token is back tokens from the end */
        int at = n - 1 - back, longest = -1;
        for (int k = d->first_tail[t[at]]; k >= 0; k = d->tails[k].next) {
            const dry_tail *tl = &d->tails[k];
            if (tl->len > longest && tl->len <= back &&
                (tl->len == 0 || !memcmp(d->tail_ids + tl->off, t + at + 1, (size_t)tl->len * sizeof *t)))
                longest = tl->len;
        }
        if (longest >= 0) return back - longest;
    }
    return n;
}

/* z[k] (1 <= k < n): how many tokens before the end of t[0..n - k) equal the last ones of t[0..n),
 * the Z-function of the window read backwards. */
static void reverse_z(const int *t, int n, int *z)
{
#define REV(i) t[n - 1 - (i)]
    int lo = 0, hi = 0; /* the rightmost match found: REV[lo..hi) == REV[0..hi - lo) */
    for (int k = 1; k < n; k++) {
        int m = k < hi ? (hi - k < z[k - lo] ? hi - k : z[k - lo]) : 0;
        while (k + m < n && REV(m) == REV(k + m)) m++;
        z[k] = m;
        if (k + m > hi) lo = k, hi = k + m;
    }
#undef REV
}

/* The longest repeat each token would extend, in d->longest (the window's tokens only; the others
 * stay -1); 0 when no token is penalised. *t and *w: the window. */
static int find_repeats(sasp_dry *d, const int *history, int n_history, const int **t, int *w)
{
    if (d->multiplier == 0 || d->base < 1 || d->last_n == 0) return 0;
    *w = d->last_n < 0 || d->last_n > n_history ? n_history : d->last_n;
    *t = history + n_history - *w;
    if (*w <= d->allowed) return 0;
    int limit = since_breaker(d, *t, *w);
    if (limit < d->allowed) return 0;
    if (*w > d->cap_z) {
        int *z = realloc(d->z, (size_t)*w * sizeof *z);
        if (!z) return 0; /* out of memory: no penalty this time */
        d->z = z;
        d->cap_z = *w;
    }
    reverse_z(*t, *w, d->z);
    for (int j = 0; j + 1 < *w; j++) { /* the repeat that ends at t[j] would go on with t[j + 1] */
        int len = d->z[*w - 1 - j] < limit ? d->z[*w - 1 - j] : limit;
        if (len >= d->allowed && len > d->longest[(*t)[j + 1]]) d->longest[(*t)[j + 1]] = len;
    }
    return 1;
}

/* What token id loses (0: nothing). */
static double penalty(const sasp_dry *d, int id)
{
    int len = d->longest[id];
    if (len < 0 || d->whole[id]) return 0;
    int e = len - d->allowed;
    int max_exponent = d->base > 1.000001 ? (int)(88.7228391f / logf((float)d->base)) : 0;
    if (max_exponent > 0 && e > max_exponent) e = max_exponent;
    double p = d->multiplier * pow(d->base, e);
    return p < FLT_MAX ? p : FLT_MAX;
}

void sasp_dry_apply(sasp_dry *d, const int *history, int n_history, sasp_candidate *c, int n)
{
    const int *t;
    int w;
    if (!find_repeats(d, history, n_history, &t, &w)) return;
    for (int i = 0; i < n; i++) c[i].logit -= penalty(d, c[i].id);
    for (int j = 0; j + 1 < w; j++) d->longest[t[j + 1]] = -1;
}

int sasp_dry_penalties(sasp_dry *d, const int *history, int n_history, sasp_candidate *out)
{
    const int *t;
    int w, n = 0;
    if (!find_repeats(d, history, n_history, &t, &w)) return 0;
    for (int j = 0; j + 1 < w; j++) {
        int id = t[j + 1];
        if (d->longest[id] < 0) continue;
        double p = penalty(d, id);
        if (p != 0) out[n++] = (sasp_candidate){id, p, 0};
        d->longest[id] = -1; /* once per token */
    }
    return n;
}
