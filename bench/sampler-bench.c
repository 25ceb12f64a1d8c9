/* sampler-bench.c: the time sasp_sampler_sample takes a token, on Gaussian rows of logits.
 *
 *   bench/sasp-sampler-bench [VOCAB] [CHAIN] [logprobs]
 *       CHAIN: default (the server's: penalties, DRY, top-k 40, top-p, min-p, temperature) or plain (no
 *       DRY, no penalties); logprobs: each token's logprob and the 3 most likely ones too, as a request
 *       with `logprobs: 3` asks (sasp_sampler_logprobs)
 *
 * 20 requests of 256 tokens each, every drawn token accepted (so DRY and the penalties see a history);
 * prints microseconds per token and a checksum of the tokens (the same for any two builds that draw
 * the same tokens). Run two builds alternately to compare them (farm-bench --vs). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text/sampler.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int vocab = argc > 1 ? atoi(argv[1]) : 8192, rows = 64, requests = 20, tokens = 256;
    int plain = argc > 2 && strcmp(argv[2], "plain") == 0, logprobs = argc > 3 && strcmp(argv[3], "logprobs") == 0;
    sasp_logprob top[3];
    if (vocab < 1) {
        fprintf(stderr, "usage: sasp-sampler-bench [VOCAB] [default|plain] [logprobs]\n");
        return 2;
    }
    float *logits = malloc((size_t)vocab * (size_t)rows * sizeof *logits);
    if (!logits) return 1;
    sasp_rng r;
    sasp_rng_seed(&r, 42);
    for (size_t i = 0; i < (size_t)vocab * (size_t)rows; i++) { /* Box-Muller, sigma 3 */
        double u = (sasp_rng_uniform(&r) + 1e-300), v = sasp_rng_uniform(&r);
        logits[i] = (float)(3 * sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
    }
    double spent = 0;
    unsigned long long sum = 0;
    for (int q = 0; q < requests; q++) {
        sasp_sampling p;
        sasp_sampling_defaults(&p);
        p.seed = (uint64_t)q + 1;
        if (plain) p.dry_multiplier = 0, p.frequency_penalty = 0;
        sasp_sampler *s = sasp_sampler_new(vocab, &p);
        if (!s) return 1;
        for (int t = 0; t < tokens; t++) {
            double t0 = now();
            int tok = sasp_sampler_sample(s, logits + (size_t)(t % rows) * (size_t)vocab);
            float lp = logprobs ? sasp_sampler_logprobs(s, tok, top, 3) : 0;
            spent += now() - t0;
            sum = sum * 31 + (unsigned)tok;
            if (logprobs) {
                union {
                    float f;
                    uint32_t u;
                } bits = {lp};
                sum = sum * 31 + bits.u + (unsigned)top[0].id;
            }
            sasp_sampler_accept(s, tok, 1);
        }
        sasp_sampler_free(s);
    }
    printf("sampler (%s chain%s, vocab %d): %.2f us a token; tokens' checksum %llu\n", plain ? "plain" : "default",
           logprobs ? ", logprobs" : "", vocab, spent / (requests * tokens) * 1e6, sum);
    free(logits);
    return 0;
}
