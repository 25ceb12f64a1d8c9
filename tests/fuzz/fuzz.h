/* fuzz.h: what the fuzz targets of tests/fuzz/ share: where the fixtures are, and the entry
 * point every target defines. A target is built two ways: with clang -fsanitize=fuzzer (make fuzz,
 * libFuzzer's main) and with the project's compiler against tests/fuzz/replay.c (make check), which
 * feeds it every file of tests/fuzz/regressions/<target>/ and tests/fuzz/corpus/<target>/. */
#ifndef SASP_FUZZ_H
#define SASP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "text/tokenizer.h"

#ifndef SASP_SRCDIR
#define SASP_SRCDIR "."
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* SASP_SRCDIR from the environment (make check sets it), else the directory compiled in. */
static inline const char *fuzz_srcdir(void)
{
    const char *s = getenv("SASP_SRCDIR");
    return s && *s ? s : SASP_SRCDIR;
}

/* The tokenizer at REL (a path under the source tree), loaded once by a target's setup; a fixture
 * that does not load is a broken test set-up, so it aborts naming the target. */
static inline sasp_tokenizer *fuzz_load_tokenizer(const char *rel, const char *target)
{
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_srcdir(), rel);
    sasp_tokenizer *t = sasp_tokenizer_load(path, err, sizeof err);
    if (!t) {
        fprintf(stderr, "%s: %s\n", target, err);
        abort();
    }
    return t;
}

/* A broken invariant: print it and abort, so that libFuzzer and the replay driver both report it. */
#define FUZZ_CHECK(cond)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#endif
