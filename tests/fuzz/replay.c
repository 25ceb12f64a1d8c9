/* replay.c: make check's driver of a fuzz target, built with the project's compiler (no clang needed).
 * Runs the target's entry point on every file of tests/fuzz/regressions/<target>/ (the inputs that
 * once crashed it) and tests/fuzz/corpus/<target>/ (the seeds), or on the files named on the command
 * line. A crash or a broken invariant aborts, which fails the test; the sanitizer build catches
 * memory errors too. FUZZ_TARGET is the target's name, defined when compiling. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (!buf) return -1;
    /* an exact-size copy, so that ASan sees a read past the input's end */
    unsigned char *exact = malloc(n ? n : 1);
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every regular file of dir, in name order; returns the count run, -1 on error. */
static int run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0; /* a target may have no regressions yet */
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !strcmp(de->d_name, "README")) continue;
        names = realloc(names, (n + 1) * sizeof *names);
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= sizeof path || run_file(path) < 0)
            count = -1;
        else if (count >= 0) count++;
        free(names[i]);
    }
    free(names);
    return count;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            if (run_file(argv[i]) < 0) return 1;
        printf("%s: %d inputs replayed\n", FUZZ_TARGET, argc - 1);
        return 0;
    }
    char dir[4096];
    int total = 0;
    const char *kinds[] = {"regressions", "corpus"};
    for (int k = 0; k < 2; k++) {
        snprintf(dir, sizeof dir, "%s/tests/fuzz/%s/%s", fuzz_srcdir(), kinds[k], FUZZ_TARGET);
        int c = run_dir(dir);
        if (c < 0) return 1;
        printf("%s: %d %s inputs replayed from %s\n", FUZZ_TARGET, c, kinds[k], dir);
        total += c;
    }
    if (total == 0) {
        fprintf(stderr, "%s: no inputs found under %s/tests/fuzz/\n", FUZZ_TARGET, fuzz_srcdir());
        return 1;
    }
    return 0;
}
