/* slot_file.c: the files of llama.cpp's slot save and restore (slot_file.h). */
#include "engine/slot_file.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SLOT_MAGIC "SASPSLOT"
#define SLOT_VERSION 1u
#define HEADER_BYTES (8 + 6 * 4 + 64 + 8)

typedef struct header {
    uint32_t version, arch, n_layers, d_model, vocab, n_tokens;
    char model[64];
    uint64_t checksum;
} header;

/* FNV-1a over n bytes, continuing from h. */
static uint64_t checksum_add(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static void header_pack(const header *h, unsigned char out[HEADER_BYTES])
{
    uint32_t u[6] = {h->version, h->arch, h->n_layers, h->d_model, h->vocab, h->n_tokens};
    memcpy(out, SLOT_MAGIC, 8);
    memcpy(out + 8, u, sizeof u);
    memcpy(out + 32, h->model, 64);
    memcpy(out + 96, &h->checksum, 8);
}

static void header_unpack(const unsigned char in[HEADER_BYTES], header *h)
{
    uint32_t u[6];
    memcpy(u, in + 8, sizeof u);
    h->version = u[0], h->arch = u[1], h->n_layers = u[2], h->d_model = u[3], h->vocab = u[4], h->n_tokens = u[5];
    memcpy(h->model, in + 32, 64);
    memcpy(&h->checksum, in + 96, 8);
}

/* The bytes after the header for n tokens of model m. */
static long long payload_bytes(const sasp_model *m, long long n)
{
    return n * 4 + 2 * (long long)m->cfg.n_layers * n * m->cfg.d_model * 4;
}

/* The checksum of the payload: ids, then every layer's keys, then every layer's values (n rows each). */
static uint64_t payload_checksum(const sasp_model *m, const sasp_kv *kv, const int *ids, int n)
{
    size_t d = (size_t)m->cfg.d_model, row = (size_t)n * d * sizeof(float);
    uint64_t h = checksum_add(0xcbf29ce484222325ULL, ids, (size_t)n * sizeof *ids);
    for (int pass = 0; pass < 2 && n > 0; pass++)
        for (int l = 0; l < m->cfg.n_layers; l++)
            h = checksum_add(h, (pass ? kv->values : kv->keys) + (size_t)l * kv->cap * d, row);
    return h;
}

long long sasp_slot_file_write(const char *path, const sasp_model *m, const char *digest, const sasp_kv *kv,
                               const int *ids, int n, char *err, size_t errlen)
{
    header h = {SLOT_VERSION, (uint32_t)m->cfg.arch, (uint32_t)m->cfg.n_layers, (uint32_t)m->cfg.d_model, (uint32_t)m->cfg.vocab_size, (uint32_t)n, {0}, 0};
    memcpy(h.model, digest, strnlen(digest, 64));
    h.checksum = payload_checksum(m, kv, ids, n);
    unsigned char head[HEADER_BYTES];
    header_pack(&h, head);
    char tmp[4096 + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t d = (size_t)m->cfg.d_model;
    int ok = fwrite(head, 1, sizeof head, f) == sizeof head && fwrite(ids, sizeof *ids, (size_t)n, f) == (size_t)n;
    for (int pass = 0; ok && pass < 2 && n > 0; pass++)
        for (int l = 0; ok && l < m->cfg.n_layers; l++) {
            const float *rows = (pass ? kv->values : kv->keys) + (size_t)l * kv->cap * d;
            ok = fwrite(rows, sizeof(float) * d, (size_t)n, f) == (size_t)n;
        }
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return HEADER_BYTES + payload_bytes(m, n);
}

/* The header of f checked against model m (identity digest) and the file's size; 0, or -1 with err. */
static int header_check(FILE *f, const sasp_model *m, const char *digest, long long size, header *h, char *err,
                        size_t errlen)
{
    unsigned char head[HEADER_BYTES];
    if (size < HEADER_BYTES || fread(head, 1, sizeof head, f) != sizeof head || memcmp(head, SLOT_MAGIC, 8)) {
        snprintf(err, errlen, "%s", "not a sasp slot file");
        return -1;
    }
    header_unpack(head, h);
    if (h->version != SLOT_VERSION) {
        snprintf(err, errlen, "slot file version %u is not supported (this server reads version %u)", h->version,
                 SLOT_VERSION);
        return -1;
    }
    char want[64] = {0};
    memcpy(want, digest, strnlen(digest, 64));
    if (h->arch != (uint32_t)m->cfg.arch || h->n_layers != (uint32_t)m->cfg.n_layers ||
        h->d_model != (uint32_t)m->cfg.d_model || h->vocab != (uint32_t)m->cfg.vocab_size || memcmp(h->model, want, 64)) {
        snprintf(err, errlen, "%s", "the slot file was saved from another model");
        return -1;
    }
    if (h->n_tokens > (uint32_t)m->cfg.max_seq_len || size != HEADER_BYTES + payload_bytes(m, h->n_tokens)) {
        snprintf(err, errlen, "the slot file is truncated or damaged (%lld bytes for %u tokens)", size, h->n_tokens);
        return -1;
    }
    return 0;
}

/* The payload of a file whose header h is checked: ids and a cache of h->n_tokens positions. */
static int payload_read(FILE *f, const sasp_model *m, const header *h, sasp_kv **kvp, int **idsp, char *err,
                        size_t errlen)
{
    int n = (int)h->n_tokens;
    size_t d = (size_t)m->cfg.d_model;
    int *ids = malloc(((size_t)n + 1) * sizeof *ids);
    sasp_kv *kv = n > 0 ? sasp_kv_new(m, n) : NULL;
    if (!ids || (n > 0 && !kv)) {
        snprintf(err, errlen, "out of memory reading a slot file of %d tokens", n);
        goto fail;
    }
    int ok = fread(ids, sizeof *ids, (size_t)n, f) == (size_t)n;
    for (int pass = 0; ok && pass < 2 && n > 0; pass++)
        for (int l = 0; ok && l < m->cfg.n_layers; l++)
            ok = fread((pass ? kv->values : kv->keys) + (size_t)l * kv->cap * d, sizeof(float) * d, (size_t)n, f) == (size_t)n;
    if (!ok) {
        snprintf(err, errlen, "%s", "the slot file could not be read whole");
        goto fail;
    }
    if (kv) kv->len = n;
    if (payload_checksum(m, kv, ids, n) != h->checksum) {
        snprintf(err, errlen, "%s", "the slot file is damaged (its checksum does not match)");
        goto fail;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size) {
            snprintf(err, errlen, "the slot file holds token id %d, outside the vocabulary", ids[i]);
            goto fail;
        }
    *kvp = kv;
    *idsp = ids;
    return 0;
fail:
    sasp_kv_free(kv);
    free(ids);
    return -1;
}

int sasp_slot_file_read(const char *path, const sasp_model *m, const char *digest, sasp_kv **kv, int **ids,
                        long long *bytes, char *err, size_t errlen)
{
    *kv = NULL;
    *ids = NULL;
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "cannot read %s: %s", path, f ? "not a regular file" : strerror(errno));
        if (f) fclose(f);
        return -1;
    }
    header h;
    int rc = header_check(f, m, digest, (long long)st.st_size, &h, err, errlen);
    if (rc == 0) rc = payload_read(f, m, &h, kv, ids, err, errlen);
    fclose(f);
    *bytes = (long long)st.st_size;
    return rc;
}
