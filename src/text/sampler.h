/* sampler.h: turning one row of logits into the next token, per request.
 *
 * The order of operations, one clear path (sasp_sampler_dist):
 *   0. logit biases (OpenAI's logit_bias, llama.cpp's; sasp_sampler_set_logit_bias) added to the
 *      logits as they come (those of a constrained sequence come masked: constrain.h);
 *   1. penalties on those logits:
 *      - repetition penalty (llama.cpp semantics): for every distinct token among the last
 *        repeat_last_n tokens of the sequence (prompt and generated), a positive logit is divided by
 *        repeat_penalty, a negative one multiplied by it (1.0 = off);
 *      - frequency and presence penalties (OpenAI semantics): logit[j] -= c[j] * frequency_penalty
 *        + (c[j] > 0) * presence_penalty, where c[j] counts the times j was generated so far in this
 *        request (prompt tokens are not counted).
 *   2. temperature == 0 (or top_k == 1): greedy, the arg-max (lowest id on ties); nothing random.
 *   3. otherwise logits / temperature, softmax, then top_k (keep the k most likely; 0 = off), top_p
 *      (keep the smallest most-likely prefix whose mass reaches top_p; 1 = off), min_p (drop tokens
 *      whose probability is below min_p times the most likely one's; 0 = off), renormalise,
 *      then (infill, llama.cpp's "infill" sampler for fill in the middle) favour the end of the
 *      middle and merge tokens that begin another candidate (sasp_sampler_set_infill), draw.
 * Logprobs (sasp_sampler_logprobs) are the log-softmax of the logits after step 1 at temperature 1:
 * the model's own distribution with the biases and penalties applied, before temperature and truncation, so they
 * do not depend on temperature, top_k, top_p or min_p (as OpenAI's logprobs).
 *
 * Each request has its own random generator (xoshiro256**, seeded through splitmix64), so the same
 * seed gives the same tokens whatever else the server is doing. */
#ifndef SASP_SAMPLER_H
#define SASP_SAMPLER_H

#include <stdint.h>
#include "text/tokenizer.h"

typedef struct sasp_rng {
    uint64_t s[4];
} sasp_rng;

void sasp_rng_seed(sasp_rng *r, uint64_t seed);
uint64_t sasp_rng_next(sasp_rng *r);
/* Uniform in [0, 1), 53 random bits. */
double sasp_rng_uniform(sasp_rng *r);

/* The sampling parameters of one request. */
typedef struct sasp_sampling {
    float temperature;       /* >= 0; 0 = greedy */
    int top_k;               /* >= 0; 0 = off */
    float top_p;             /* (0, 1]; 1 = off */
    float min_p;             /* [0, 1]; 0 = off */
    float repeat_penalty;    /* > 0; 1 = off */
    int repeat_last_n;       /* tokens the repetition penalty looks back over; 0 = off, -1 = all */
    float frequency_penalty; /* [-2, 2]; 0 = off */
    float presence_penalty;  /* [-2, 2]; 0 = off */
    int infill;              /* nonzero: llama.cpp's infill step after min_p (needs
                              * sasp_sampler_set_infill) */
    uint64_t seed;
} sasp_sampling;

/* llama.cpp's server defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, no penalties. */
void sasp_sampling_defaults(sasp_sampling *p);

/* A token's logit bias: added to its logit before everything else the sampler does. */
typedef struct sasp_logit_bias {
    int id;
    float bias;
} sasp_logit_bias;

/* One candidate of the final distribution. */
typedef struct sasp_candidate {
    int id;
    float p;
} sasp_candidate;

/* A token and its log-probability. */
typedef struct sasp_logprob {
    int id;
    float logprob;
} sasp_logprob;

typedef struct sasp_sampler {
    sasp_sampling p;
    sasp_rng rng;
    int vocab;
    int *generated_count;  /* [vocab]: times each token was generated (frequency/presence) */
    int *history;          /* every token of the sequence so far, prompt first */
    int n_history, cap_history;
    float *work;           /* [vocab] penalised logits */
    sasp_candidate *cand;  /* [vocab] */
    unsigned char *seen;   /* [vocab] scratch for the repetition penalty */
    const sasp_tokenizer *tok; /* infill: the tokens' bytes */
    int eog;               /* infill: the end-of-generation token */
    const sasp_logit_bias *bias; /* step 0 (sasp_sampler_set_logit_bias), n_bias of them */
    int n_bias;
} sasp_sampler;

/* NULL on OOM. */
sasp_sampler *sasp_sampler_new(int vocab, const sasp_sampling *p);
void sasp_sampler_free(sasp_sampler *s);

/* What the infill step needs: the tokens' bytes (special tokens have none) and the token that ends
 * a middle. llama.cpp's algorithm: when 3 * P(end) * (candidates) > P(text), only the end may come;
 * otherwise a candidate whose bytes begin another's takes that one's probability (into the more
 * likely of the two), candidates below 0.2 go, then those below 1 / (kept + 1); when no text token is
 * left, the end. It runs over at most SASP_INFILL_MAX candidates (the most likely ones: top_k 40, as
 * editors send, keeps it quadratic in 40). */
#define SASP_INFILL_MAX 512
void sasp_sampler_set_infill(sasp_sampler *s, const sasp_tokenizer *tok, int eog);

/* The request's logit biases (n of them, kept by pointer: they must outlive the sampler). */
void sasp_sampler_set_logit_bias(sasp_sampler *s, const sasp_logit_bias *bias, int n);

/* Record a token of the sequence: prompt tokens with generated = 0, sampled ones with 1. */
int sasp_sampler_accept(sasp_sampler *s, int token, int generated);

/* Apply steps 0 and 1 to logits into s->work and return it. */
const float *sasp_sampler_penalize(sasp_sampler *s, const float *logits);

/* The final distribution for logits (steps 0, 1 and 3): candidates sorted by decreasing probability,
 * summing to 1, in *out (points into the sampler; valid until the next call). Returns their count.
 * In greedy mode it is the single arg-max with p = 1. */
int sasp_sampler_dist(sasp_sampler *s, const float *logits, const sasp_candidate **out);

/* Sample the next token (does not accept it). */
int sasp_sampler_sample(sasp_sampler *s, const float *logits);

/* Log-probabilities (see above) of token `chosen` and of the n_top most likely tokens (sorted,
 * written to top; n_top may be 0). Uses the penalised logits of the last sasp_sampler_sample or
 * sasp_sampler_penalize call. Returns the log-probability of `chosen`. */
float sasp_sampler_logprobs(sasp_sampler *s, int chosen, sasp_logprob *top, int n_top);

/* The same for any row of logits w[0..vocab) as they are (no penalties): returns log_softmax(w)[chosen]
 * and writes the n_top most likely tokens to top; scratch holds at least vocab candidates. */
float sasp_log_softmax_top(const float *w, int vocab, int chosen, sasp_logprob *top, int n_top,
                           sasp_candidate *scratch);

#endif
