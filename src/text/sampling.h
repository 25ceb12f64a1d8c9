/* sampling.h: what a request asks of the sampler: the samplers a chain is made of (llama.cpp's
 * names), the parameters of one request (sasp_sampling, with the server's defaults), a logit bias,
 * and a candidate token. Types only, below sampler.h (the chain, sampler.c) and sampler_dry.h (DRY,
 * sampler_dry.c), which both read them; sampler.h says what each parameter does. */
#ifndef SASP_SAMPLING_H
#define SASP_SAMPLING_H

#include <stddef.h>
#include <stdint.h>

/* The samplers a chain is made of. */
typedef enum sasp_sampler_kind {
    SASP_SMP_PENALTIES,
    SASP_SMP_DRY,
    SASP_SMP_TOP_N_SIGMA,
    SASP_SMP_TOP_K,
    SASP_SMP_TYPICAL_P,
    SASP_SMP_TOP_P,
    SASP_SMP_MIN_P,
    SASP_SMP_XTC,
    SASP_SMP_TEMPERATURE,
    SASP_SMP_INFILL,
    SASP_SMP_COUNT
} sasp_sampler_kind;

/* llama.cpp's canonical name of each kind ("penalties", "dry", "top_n_sigma", "top_k", "typ_p",
 * "top_p", "min_p", "xtc", "temperature", "infill"). */
extern const char *const sasp_sampler_names[SASP_SMP_COUNT];

/* The kind a name stands for: llama.cpp's names and aliases in any case, with '_', '-' or neither
 * ("top_k", "Top-K", "topk", "nucleus", "temp", "typ", ...), or its one-letter code (llama.cpp's: e d s
 * k y p m x t i). -1 when unknown, -2 for llama.cpp's adaptive_p (a, not implemented here). */
int sasp_sampler_kind_of(const char *name, size_t len);

#define SASP_MAX_CHAIN 32
#define SASP_DRY_BREAKER_MAX 40     /* bytes of one breaker (longer ones are cut, as in llama.cpp) */
#define SASP_DRY_BREAKERS_BYTES 512 /* room for all the breakers of a request */

/* The sampling parameters of one request. */
typedef struct sasp_sampling {
    float temperature;    /* >= 0; <= 0 = greedy */
    float dynatemp_range; /* >= 0; 0 = off */
    float dynatemp_exponent;
    int top_k;               /* >= 0; 0 = off */
    float top_p;             /* [0, 1]; 1 = off */
    float min_p;             /* [0, 1]; 0 = off */
    float typical_p;         /* [0, 1]; 1 = off */
    float top_n_sigma;       /* <= 0 = off */
    float xtc_probability;   /* [0, 1]; 0 = off */
    float xtc_threshold;     /* [0, 1]; > 0.5 = off */
    int min_keep;            /* >= 0 */
    float repeat_penalty;    /* > 0; 1 = off */
    int repeat_last_n;       /* tokens the repetition penalty looks back over; 0 = off, -1 = all */
    float frequency_penalty; /* [-2, 2]; 0 = off */
    float presence_penalty;  /* [-2, 2]; 0 = off */
    float dry_multiplier;    /* >= 0; 0 = off */
    float dry_base;          /* >= 1 */
    int dry_allowed_length;  /* >= 0 */
    int dry_penalty_last_n;  /* tokens DRY looks back over; 0 = off, -1 = all (the context) */
    int n_dry_breakers;      /* the sequence breakers: each a length byte then its bytes */
    unsigned char dry_breakers[SASP_DRY_BREAKERS_BYTES];
    int n_chain; /* the samplers, in order (sasp_sampler_kind) */
    unsigned char chain[SASP_MAX_CHAIN];
    uint64_t seed;
} sasp_sampling;

/* The server's defaults (defined in this one function; docs/api.md states them and the measurement
 * that chose them): llama.cpp's server defaults (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05,
 * llama.cpp's default chain and DRY sequence breakers "\n", ":", "\"", "*") with two samplers on
 * against loops: frequency_penalty 0.5 and DRY (multiplier 0.8, base 1.75, allowed length 2, over the
 * whole sequence). */
void sasp_sampling_defaults(sasp_sampling *p);
/* What fill in the middle (/infill) starts from instead of the default chain: top_k, llama.cpp's infill
 * sampler, then temperature (so that temperature 0 is greedy there too); measured, as the defaults. */
void sasp_sampling_fim_defaults(sasp_sampling *p);

/* A token's logit bias: added to its logit before everything else the sampler does. */
typedef struct sasp_logit_bias {
    int id;
    float bias;
} sasp_logit_bias;

/* One candidate: its token, logit and (where the sampler says so) probability. */
typedef struct sasp_candidate {
    int id;
    double logit;
    double p;
} sasp_candidate;

#endif
