/* sampler_dry.h: the DRY sampler ("don't repeat yourself", llama.cpp's semantics; sampler.h places it
 * in the chain and sampler_dry.c says how it works) and its sequence breakers, which a request's
 * sasp_sampling carries. */
#ifndef SASP_SAMPLER_DRY_H
#define SASP_SAMPLER_DRY_H

#include <stddef.h>
#include "text/sampling.h"
#include "text/tokenizer.h"

/* Replace the DRY sequence breakers with n strings (lens[i] bytes each; empty ones are skipped, longer
 * than SASP_DRY_BREAKER_MAX are cut). -1 when they do not fit in SASP_DRY_BREAKERS_BYTES. */
int sasp_sampling_set_breakers(sasp_sampling *p, const char *const *strs, const size_t *lens, int n);
/* Breaker i of p (0 .. n_dry_breakers-1): its bytes, length in *len. */
const char *sasp_sampling_breaker(const sasp_sampling *p, int i, size_t *len);

typedef struct sasp_dry sasp_dry;

/* sasp_dry_new: the state for p's DRY settings, the breakers tokenised with tok
 * (NULL: no breakers); NULL when out of memory. */
sasp_dry *sasp_dry_new(const sasp_sampling *p, const sasp_tokenizer *tok, int vocab);
void sasp_dry_free(sasp_dry *d);
/* Lower the logits of the candidates c[0..n) that would extend a repeat of the last tokens of
 * history[0..n_history). */
void sasp_dry_apply(sasp_dry *d, const int *history, int n_history, sasp_candidate *c, int n);
/* The same as a list: every token that would lose logit, once, with what it loses in .logit, in out
 * (room for the vocabulary); returns how many. */
int sasp_dry_penalties(sasp_dry *d, const int *history, int n_history, sasp_candidate *out);

#endif
