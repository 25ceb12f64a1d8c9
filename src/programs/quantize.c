/* quantize.c: sasp-quantize, which writes a model directory with its weight matrices in another type.
 *
 *   sasp-quantize IN_DIR OUT_DIR --type f32|bf16|q8_0
 *
 * IN_DIR is loaded with every matrix converted to the type (sasp_checkpoint_load_as: q8_0 quantizes
 * with sasp_quantize_q8_0, bf16 rounds to nearest even, f32 dequantizes), OUT_DIR/model.safetensors is
 * written in the format docs/checkpoint-format.md describes (vectors stay F32), and the other files
 * of IN_DIR (config.json, tokenizer.json, ...) are copied beside it. */
#include <errno.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/checkpoint.h"

static int usage(FILE *out, int rc)
{
    fprintf(out, "usage: sasp-quantize IN_DIR OUT_DIR --type f32|bf16|q8_0\n"
                 "Writes OUT_DIR/model.safetensors with IN_DIR's weight matrices in that type (q8_0: int8 in\n"
                 "blocks of 32 columns with one binary16 scale each; docs/checkpoint-format.md) and copies\n"
                 "IN_DIR's other files (config.json, tokenizer.json, ...) beside it.\n");
    return rc;
}

/* Copy IN/NAME to OUT/NAME. */
static int copy_file(const char *in, const char *out, const char *name)
{
    char src[PATH_MAX], dst[PATH_MAX], buf[65536];
    snprintf(src, sizeof src, "%s/%s", in, name);
    snprintf(dst, sizeof dst, "%s/%s", out, name);
    FILE *a = fopen(src, "rb"), *b = a ? fopen(dst, "wb") : NULL;
    int ok = a && b;
    for (size_t n; ok && (n = fread(buf, 1, sizeof buf, a)) > 0;) ok = fwrite(buf, 1, n, b) == n;
    ok = ok && !ferror(a);
    if (b && fclose(b)) ok = 0;
    if (a) fclose(a);
    if (!ok) fprintf(stderr, "sasp-quantize: cannot copy %s to %s: %s\n", src, dst, strerror(errno));
    return ok ? 0 : -1;
}

/* Every regular file of IN but model.safetensors, into OUT. */
static int copy_others(const char *in, const char *out)
{
    DIR *d = opendir(in);
    if (!d) return -1;
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        char p[PATH_MAX];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", in, e->d_name);
        if (strcmp(e->d_name, "model.safetensors") != 0 && stat(p, &st) == 0 && S_ISREG(st.st_mode))
            rc = copy_file(in, out, e->d_name);
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *type = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return usage(stdout, 0);
        if (strcmp(argv[i], "--type") == 0 && i + 1 < argc) type = argv[++i];
        else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else return usage(stderr, 2);
    }
    int t = type ? sasp_wtype_parse(type) : -1;
    if (!in || !out || t < 0) return usage(stderr, 2);
    char rin[PATH_MAX], rout[PATH_MAX];
    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "sasp-quantize: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    if (realpath(in, rin) && realpath(out, rout) && strcmp(rin, rout) == 0) {
        fprintf(stderr, "sasp-quantize: OUT_DIR must differ from IN_DIR (its model.safetensors is read while writing)\n");
        return 2;
    }
    char err[1024], path[PATH_MAX];
    sasp_checkpoint *ck = sasp_checkpoint_load_as(in, t, err, sizeof err);
    if (!ck) {
        fprintf(stderr, "sasp-quantize: %s\n", err);
        return 1;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    int rc = sasp_checkpoint_save(ck, path, err, sizeof err);
    if (rc) fprintf(stderr, "sasp-quantize: %s\n", err);
    sasp_checkpoint_free(ck);
    if (rc == 0) rc = copy_others(in, out);
    if (rc == 0) printf("sasp-quantize: %s -> %s (%s)\n", in, path, type);
    return rc ? 1 : 0;
}
