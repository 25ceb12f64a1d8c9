/* batch-bench.c: decode throughput of the engine alone, the baseline for bench/server-bench.py.
 * For each batch size B, B sequences are prefilled with the same prompt length, then decoded for T
 * steps together, one batched sasp_forward per step and a greedy arg-max per sequence (what the
 * server's scheduler does, without HTTP, JSON, the tokenizer or the sampler's sorting).
 *
 *   bench/sasp-batch-bench MODEL_DIR [-t THREADS] [-p PROMPT] [-n STEPS] [-b 1,4,8] [-r REPEATS]
 * prints one line per B: aggregate decode tokens/s and ms per step (wall clock), and the process's CPU
 * time per generated token (all threads), each the best of REPEATS runs. On a shared machine wall
 * time depends on what else runs; CPU time per token measures the work itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model.h"

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(stderr, "usage: %s MODEL_DIR [-t THREADS] [-p PROMPT_TOKENS] [-n STEPS] [-b 1,4,8] [-r REPEATS]\n",
                argv[0]);
        return argc < 2 ? 2 : 0;
    }
    int threads = 0, prompt = 32, steps = 64, repeats = 3;
    char batches[128] = "1,4,8";
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-p")) prompt = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-n")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-r")) repeats = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-b")) snprintf(batches, sizeof batches, "%s", argv[i + 1]);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    char err[512];
    sasp_model *m = sasp_model_load(argv[1], threads, err, sizeof err);
    if (!m) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int V = m->cfg.vocab_size;
    if (prompt < 1) prompt = 1;
    if (prompt + steps > m->cfg.max_seq_len) steps = m->cfg.max_seq_len - prompt;
    printf("model %s, %d threads, %s kernels, prompt %d, %d decode steps\n", argv[1], sasp_pool_size(m->pool),
           m->kernels->name, prompt, steps);
    /* the caches and buffers of the largest batch, allocated once as the server allocates its slots */
    int maxB = 0;
    char list[128];
    snprintf(list, sizeof list, "%s", batches);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ","))
        if (atoi(tok) > maxB) maxB = atoi(tok);
    if (maxB < 1) return 2;
    sasp_kv **kv = calloc((size_t)maxB, sizeof *kv);
    sasp_step *st = calloc((size_t)maxB, sizeof *st);
    float *logits = malloc((size_t)maxB * V * sizeof *logits);
    int *ids = malloc((size_t)maxB * prompt * sizeof *ids), *next = malloc((size_t)maxB * sizeof *next);
    for (int b = 0; b < maxB; b++)
        if (!(kv[b] = sasp_kv_new(m, 0))) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
    for (char *tok = strtok(batches, ","); tok; tok = strtok(NULL, ",")) {
        int B = atoi(tok);
        if (B < 1) continue;
        double best = 1e30, best_cpu = 1e30;
        for (int rep = 0; rep < (repeats > 0 ? repeats : 1); rep++) {
            for (int b = 0; b < B; b++) {
                sasp_kv_reset(kv[b]);
                for (int i = 0; i < prompt; i++) ids[b * prompt + i] = (i * 31 + b * 7 + 1) % V;
                st[b] = (sasp_step){.kv = kv[b], .tokens = ids + b * prompt, .n_tokens = prompt, .n_logits = 1, .logits = logits + (size_t)b * V};
            }
            if (sasp_forward(m, st, B, err, sizeof err)) {
                fprintf(stderr, "%s\n", err);
                return 1;
            }
            double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
            for (int s = 0; s < steps; s++) {
                for (int b = 0; b < B; b++) {
                    const float *l = logits + (size_t)b * V;
                    int top = 0;
                    for (int j = 1; j < V; j++)
                        if (l[j] > l[top]) top = j;
                    next[b] = top;
                    st[b] = (sasp_step){.kv = kv[b], .tokens = next + b, .n_tokens = 1, .n_logits = 1, .logits = logits + (size_t)b * V};
                }
                if (sasp_forward(m, st, B, err, sizeof err)) {
                    fprintf(stderr, "%s\n", err);
                    return 1;
                }
            }
            double dt = clock_s(CLOCK_MONOTONIC) - t0, dc = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
            if (dt < best) best = dt;
            if (dc < best_cpu) best_cpu = dc;
        }
        double dt = best;
        printf("batch %d: %.1f tokens/s aggregate, %.2f ms per step, %.3f CPU ms per token\n", B, B * steps / dt,
               dt * 1e3 / steps, best_cpu * 1e3 / ((double)B * steps));
        fflush(stdout);
    }
    for (int b = 0; b < maxB; b++) sasp_kv_free(kv[b]);
    free(kv);
    free(st);
    free(logits);
    free(ids);
    free(next);
    sasp_model_free(m);
    return 0;
}
