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

/* A broken invariant: print it and abort, so that libFuzzer and the replay driver both report it. */
#define FUZZ_CHECK(cond)                                                                     \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#endif
