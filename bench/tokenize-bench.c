/* tokenize-bench.c: encoding speed of the C tokenizer on one core, in MB/s, and its compression
 * (bytes per token). Usage: bench/tokenize-bench TOKENIZER.json FILE [REPEATS]
 * The file is read once, then encoded REPEATS times (default 5); the best and median pass are
 * reported, and decode(encode(file)) is checked to give the file back. */
#include "text/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER.json FILE [REPEATS]\n", argv[0]);
        return 2;
    }
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    if (reps < 1) reps = 1;
    char err[512];
    double t0 = now();
    sasp_tokenizer *t = sasp_tokenizer_load(argv[1], err, sizeof err);
    if (!t) {
        fprintf(stderr, "tokenize-bench: %s\n", err);
        return 1;
    }
    double load_s = now() - t0;
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    size_t cap = 1 << 20, n = 0, r;
    char *text = malloc(cap);
    while (text && (r = fread(text + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) text = realloc(text, cap *= 2);
    }
    fclose(f);
    if (!text) {
        fprintf(stderr, "tokenize-bench: out of memory\n");
        return 1;
    }
    double *secs = malloc(reps * sizeof *secs);
    int n_ids = 0, *ids = NULL;
    for (int i = 0; i < reps; i++) {
        free(ids);
        double s = now();
        n_ids = sasp_encode(t, text, n, 0, &ids);
        secs[i] = now() - s;
        if (n_ids < 0) {
            fprintf(stderr, "tokenize-bench: encode failed\n");
            return 1;
        }
    }
    size_t dl;
    char *back = sasp_decode(t, ids, n_ids, &dl);
    int same = back && dl == n && memcmp(back, text, n) == 0;
    qsort(secs, reps, sizeof *secs, cmp_double);
    double mb = n / 1e6;
    printf("tokenize-bench: %s (vocab %d, loaded in %.3f s), %s: %.2f MB, %d tokens, %.3f bytes/token\n", argv[1],
           sasp_tokenizer_vocab_size(t), load_s, argv[2], mb, n_ids, n_ids ? (double)n / n_ids : 0.0);
    printf("tokenize-bench: encode, one core, %d passes: best %.2f MB/s, median %.2f MB/s; round trip %s\n", reps,
           mb / secs[0], mb / secs[reps / 2], same ? "exact" : "DIFFERS");
    free(back);
    free(ids);
    free(secs);
    free(text);
    sasp_tokenizer_free(t);
    return same ? 0 : 1;
}
