/* sampler.h: turning one row of logits into the next token, per request: llama.cpp's sampler chain.
 *
 * Step 0: the request's logit biases (OpenAI's logit_bias, llama.cpp's; sasp_sampler_set_logit_bias)
 * are added to the logits as they come (those of a constrained sequence come masked: constrain.h).
 * The candidates are every token whose logit is then finite (logit_bias false and a JSON schema's mask
 * remove tokens by making their logit -inf; such a token is never a candidate). The samplers of the
 * request's chain (sasp_sampling.chain, llama.cpp's "samplers") run in its order, each on what the one
 * before left; a sampler may appear several times, one that is not in the chain does not run. Then
 * the softmax of the logits left is the final distribution, and the draw takes a token from it.
 * Default order, llama.cpp's: penalties, dry, top_n_sigma, top_k, typ_p, top_p, min_p, xtc, temperature.
 *   penalties    repetition penalty (llama.cpp): a candidate among the last repeat_last_n tokens of the
 *                sequence (prompt and generated; -1 = all) has its logit divided by repeat_penalty when
 *                positive, multiplied when negative (1 = off); frequency and presence penalties (OpenAI
 *                semantics): logit -= c * frequency_penalty + (c > 0) * presence_penalty, c the times
 *                the token was generated so far in this request (prompt tokens are not counted).
 *   dry          "don't repeat yourself" (sampler_dry.c): a candidate that would extend a sequence
 *                already seen in the last dry_penalty_last_n tokens by more than dry_allowed_length
 *                tokens loses dry_multiplier * dry_base^(length - dry_allowed_length) of its logit.
 *   top_n_sigma  keep the candidates whose logit is at least max - top_n_sigma * (standard deviation of
 *                the logits) (<= 0 = off).
 *   top_k        keep the k largest logits (<= 0 = off).
 *   typ_p        locally typical sampling: order by |-log p - entropy| and keep the shortest prefix whose
 *                mass exceeds typical_p (>= 1 = off).
 *   top_p        keep the shortest most-likely prefix whose mass reaches top_p (>= 1 = off).
 *   min_p        keep the candidates with p >= min_p * p(most likely) (<= 0 = off).
 *   xtc          "exclude top choices": with chance xtc_probability, remove every candidate with
 *                p >= xtc_threshold except the least likely of them (off: probability 0, threshold > 0.5).
 *   temperature  divide the logits by temperature; <= 0 keeps only the largest (greedy). With
 *                dynatemp_range > 0 the temperature is temperature - range + 2 * range *
 *                (entropy / log(candidates))^dynatemp_exponent (its low end at least 0).
 *   infill       llama.cpp's fill-in-the-middle step (sasp_sampler_set_tokenizer): when the end of
 *                the middle holds enough of the probability only it may come; otherwise a candidate
 *                whose bytes begin another's takes its probability, and unlikely ones go.
 * Probabilities (p) are always the softmax of the candidates left at that point. min_keep > 0 makes
 * top_p, min_p, typ_p and xtc keep at least that many candidates, as in llama.cpp.
 *
 * Logprobs (sasp_sampler_logprobs) are the log-softmax over the whole vocabulary of the logits with the biases,
 * penalties and DRY applied (as if they ran first), at temperature 1, before any truncation: they do
 * not depend on temperature, top_k, top_p, min_p and the rest (as OpenAI's logprobs).
 * sasp_sampler_post_probs gives the final distribution instead (llama.cpp's post_sampling_probs).
 *
 * Each request has its own random generators (xoshiro256**, seeded through splitmix64; one for the
 * draw, one for xtc), so the same seed gives the same tokens whatever else the server is doing. */
#ifndef SASP_SAMPLER_H
#define SASP_SAMPLER_H

#include <stddef.h>
#include <stdint.h>
#include "text/sampling.h"
#include "text/sampler_dry.h"
#include "text/tokenizer.h"

typedef struct sasp_rng {
    uint64_t s[4];
} sasp_rng;

void sasp_rng_seed(sasp_rng *r, uint64_t seed);
uint64_t sasp_rng_next(sasp_rng *r);
/* Uniform in [0, 1), 53 random bits. */
double sasp_rng_uniform(sasp_rng *r);

/* A token and its log-probability. */
typedef struct sasp_logprob {
    int id;
    float logprob;
} sasp_logprob;

typedef struct sasp_sampler {
    sasp_sampling p;
    sasp_rng rng;     /* the draw */
    sasp_rng xtc_rng; /* xtc's coin */
    int vocab;
    int *generated_count; /* [vocab]: times each token was generated (frequency/presence) */
    int *gen_ids;         /* the tokens generated so far, each once */
    int n_gen_ids;
    int *history; /* every token of the sequence so far, prompt first */
    int n_history, cap_history;
    float *raw;             /* [vocab] the logits of the last draw (for logprobs) */
    float *work;            /* [vocab] penalised logits (sasp_sampler_penalize) */
    double *row;            /* [vocab] the logits the penalties and DRY changed before the chain cut any */
    unsigned char *changed; /* [vocab] which (the others are raw's) */
    int *changed_ids;       /* [vocab] */
    int n_changed;
    sasp_candidate *cand; /* [vocab] the chain's candidates; after a draw, the final distribution */
    int n_cand, cand_sorted;
    sasp_candidate *scratch;     /* [vocab] */
    unsigned char *seen;         /* [vocab] scratch for the repetition penalty */
    sasp_dry *dry;               /* DRY's state: NULL when no DRY is in the chain or it is off */
    const sasp_tokenizer *tok;   /* the tokens' bytes (infill, DRY's breakers) */
    int eog;                     /* infill: the end-of-generation token */
    const sasp_logit_bias *bias; /* step 0 (sasp_sampler_set_logit_bias), n_bias of them */
    int n_bias;
} sasp_sampler;

/* NULL on OOM. */
sasp_sampler *sasp_sampler_new(int vocab, const sasp_sampling *p);
void sasp_sampler_free(sasp_sampler *s);

/* The tokenizer (its tokens' bytes) and the token that ends a fill-in-the-middle. The infill step
 * needs them, and DRY needs the tokenizer to turn its breaker strings into tokens: without it no
 * breaker applies. -1 when out of memory. */
int sasp_sampler_set_tokenizer(sasp_sampler *s, const sasp_tokenizer *tok, int eog);

/* The infill step (llama.cpp's algorithm): when 3 * P(end) * (candidates) > P(text), only the end may
 * come; otherwise a candidate whose bytes begin another's takes that one's probability (into the more
 * likely of the two), candidates below 0.2 go, then those below 1 / (kept + 1); when no text token is
 * left, the end. It runs over at most SASP_INFILL_MAX candidates (the most likely ones). The
 * probabilities it leaves become the candidates' logits (log p). */
#define SASP_INFILL_MAX 512

/* The request's logit biases (n of them, kept by pointer: they must outlive the sampler). */
void sasp_sampler_set_logit_bias(sasp_sampler *s, const sasp_logit_bias *bias, int n);

/* Record a token of the sequence: prompt tokens with generated = 0, sampled ones with 1. */
int sasp_sampler_accept(sasp_sampler *s, int token, int generated);

/* The logit biases, the penalties and DRY applied to the whole row of logits, into s->work, returned. */
const float *sasp_sampler_penalize(sasp_sampler *s, const float *logits);

/* The final distribution for logits (the chain, then the softmax): candidates sorted by decreasing
 * probability (then increasing id), summing to 1, in *out (points into the sampler; valid until the
 * next call). Returns their count (>= 1). Advances xtc's generator when xtc runs. */
int sasp_sampler_dist(sasp_sampler *s, const float *logits, const sasp_candidate **out);

/* Sample the next token (does not accept it). A distribution of one token draws no random number. */
int sasp_sampler_sample(sasp_sampler *s, const float *logits);

/* Greedy decoding without a chain: the id of the largest of logits[0..n), the first of equals (0 when
 * none is larger than logits[0]). The running maximum is kept in a register: comparing with
 * logits[best], a load that waits for the last comparison, took 30 us a row of 8,192 logits on the
 * Zen 5 VM of docs/performance.md (written by another core, as a forward pass on two threads leaves
 * them), as long as a third of a decode step; this takes 6. */
int sasp_argmax(const float *logits, int n);

/* Log-probabilities (see above) of token `chosen` and of the n_top most likely tokens (sorted,
 * written to top; n_top may be 0), for the logits of the last sasp_sampler_sample or
 * sasp_sampler_dist call. Returns the log-probability of `chosen`. */
float sasp_sampler_logprobs(sasp_sampler *s, int chosen, sasp_logprob *top, int n_top);

/* The same from the final distribution of the last draw (llama.cpp's post_sampling_probs), as
 * log(p): `chosen` (-inf when it was not a candidate) and the n_top most likely candidates; fewer
 * when fewer are left (*n_out). Returns the log-probability of `chosen`. */
float sasp_sampler_post_probs(sasp_sampler *s, int chosen, sasp_logprob *top, int n_top, int *n_out);

/* The same for any row of logits w[0..vocab) as they are (no penalties): returns log_softmax(w)[chosen]
 * and writes the n_top most likely tokens to top; scratch holds at least vocab candidates. */
float sasp_log_softmax_top(const float *w, int vocab, int chosen, sasp_logprob *top, int n_top,
                           sasp_candidate *scratch);

/* --- a step the chain's samplers share --- */

/* Keep the k best of c[0..n) (largest logit, then lowest id) in c[0..k), sorted. */
void sasp_cand_keep_best(sasp_candidate *c, int n, int k);

/* The finite values of x[0..n) that may be among its k best, as candidates c (room for n), in id order;
 * returns how many: every value at or above a bar, the k-th largest of the maxima of blocks of x. At
 * least k values reach it (those k maxima) where x has k finite ones, so its k best all do; only the
 * blocks whose maximum reaches the bar are read again, and a few times k values are kept, as a rule. */
int sasp_row_above_bar(const float *x, int n, int k, sasp_candidate *c);

#endif
