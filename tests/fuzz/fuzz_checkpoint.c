/* fuzz_checkpoint.c: fuzz target of the loaders: src/model/checkpoint.c (config.json, the safetensors
 * header and file) and sasp_tokenizer_load (tokenizer.json). Each input is written into a model
 * directory of its own (a temp dir made once per process) and loaded as the server would load it.
 * Input byte 0 picks what the rest is:
 *   0  config.json, read by sasp_config_load;
 *   1  model.safetensors, whole, next to the config.json of tests/fixtures/tiny-model;
 *   2  the safetensors JSON header alone: written with its 8-byte length in front and followed by the
 *      tensor bytes of tests/fixtures/tiny-model (so mutated offsets, shapes and dtypes meet real data);
 *   3  tokenizer.json; when it loads, a few strings are encoded and decoded with it.
 * A load either succeeds, with tensors that lie inside what was loaded, or fails with a message. The seeds
 * include the tiny model as sasp-quantize writes it in bf16 and q8_0 (I8 matrices with F16 ".scales"),
 * so mutations reach the typed loader as well. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include "model/checkpoint.h"
#include "fuzz.h"
#include "text/tokenizer.h"

static char dir[256];
static char *tiny_config, *tiny_data; /* the fixture's config.json and tensor bytes */
static size_t tiny_config_len, tiny_data_len;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_checkpoint: cannot read %s\n", path);
        abort();
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) abort();
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void cleanup(void)
{
    const char *names[] = {"config.json", "model.safetensors", "tokenizer.json"};
    char p[512];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/sasp-fuzz-ckpt-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) abort();
    atexit(cleanup);
    char p[4096];
    snprintf(p, sizeof p, "%s/tests/fixtures/tiny-model/config.json", fuzz_srcdir());
    tiny_config = slurp(p, &tiny_config_len);
    snprintf(p, sizeof p, "%s/tests/fixtures/tiny-model/model.safetensors", fuzz_srcdir());
    size_t n;
    char *st = slurp(p, &n);
    uint64_t hl = 0;
    memcpy(&hl, st, 8); /* little-endian host */
    tiny_data_len = n - 8 - (size_t)hl;
    tiny_data = malloc(tiny_data_len);
    memcpy(tiny_data, st + 8 + hl, tiny_data_len);
    free(st);
}

static void put(const char *name, const void *a, size_t an, const void *b, size_t bn, const void *c, size_t cn)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) abort();
    if ((an && write(fd, a, an) != (ssize_t)an) || (bn && write(fd, b, bn) != (ssize_t)bn) ||
        (cn && write(fd, c, cn) != (ssize_t)cn))
        abort();
    close(fd);
}

static void check_loaded(sasp_checkpoint *ck)
{
    FUZZ_CHECK(ck->n_tensors >= 0);
    for (int i = 0; i < ck->n_tensors; i++) {
        const sasp_tensor *t = &ck->tensors[i];
        FUZZ_CHECK(t->name && t->ndim >= 0 && t->ndim <= 4);
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
        FUZZ_CHECK(numel == t->numel);
        volatile float sum = 0; /* every element readable: ASan checks the allocation */
        if (t->data)
            for (size_t k = 0; k < t->numel; k++) sum += t->data[k];
        else { /* a bf16 or q8_0 matrix (in the mapping or owned): every row readable */
            FUZZ_CHECK(t->ndim == 2 && t->w.data && (size_t)t->w.m * (size_t)t->w.k == t->numel);
            float row[4096];
            for (int j = 0; j < t->w.m && t->w.k <= 4096; j++) {
                sasp_weights_row_f32(&t->w, j, row);
                sum += row[t->w.k - 1];
            }
        }
        (void)sum;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) setup();
    if (size < 1) return 0;
    int mode = data[0] % 4;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    char err[512];
    err[0] = 0;
    if (mode == 0) {
        put("config.json", d, n, NULL, 0, NULL, 0);
        sasp_config cfg;
        if (sasp_config_load(dir, &cfg, err, sizeof err) == 0) {
            FUZZ_CHECK(cfg.vocab_size > 0 && cfg.d_model > 0 && cfg.n_layers > 0 && cfg.n_heads > 0);
            FUZZ_CHECK(cfg.max_seq_len > 0 && cfg.d_ff > 0);
        } else {
            FUZZ_CHECK(err[0] != 0);
        }
        return 0;
    }
    if (mode == 1 || mode == 2) {
        put("config.json", tiny_config, tiny_config_len, NULL, 0, NULL, 0);
        if (mode == 1) {
            put("model.safetensors", d, n, NULL, 0, NULL, 0);
        } else {
            uint64_t hl = n;
            unsigned char len8[8];
            for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hl >> (8 * i));
            put("model.safetensors", len8, 8, d, n, tiny_data, tiny_data_len);
        }
        sasp_checkpoint *ck = sasp_checkpoint_load(dir, err, sizeof err);
        if (ck) {
            check_loaded(ck);
            sasp_checkpoint_free(ck);
        } else {
            FUZZ_CHECK(err[0] != 0);
        }
        return 0;
    }
    put("tokenizer.json", d, n, NULL, 0, NULL, 0);
    char p[512];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    sasp_tokenizer *t = sasp_tokenizer_load(p, err, sizeof err);
    if (!t) {
        FUZZ_CHECK(err[0] != 0);
        return 0;
    }
    int vocab = sasp_tokenizer_vocab_size(t);
    FUZZ_CHECK(vocab > 0);
    const char *texts[] = {"Hello, world! 123", "  indented\n\tline <|endoftext|>", "\xc3\xa9\xe2\x82\xac\xff"};
    for (int i = 0; i < 3; i++) {
        int *ids = NULL;
        int k = sasp_encode(t, texts[i], strlen(texts[i]), i & 1, &ids);
        FUZZ_CHECK(k >= 0);
        for (int j = 0; j < k; j++) FUZZ_CHECK(ids[j] >= 0 && ids[j] < vocab);
        size_t dl;
        char *dec = sasp_decode(t, ids, k, &dl);
        free(dec);
        free(ids);
    }
    for (int id = -1; id <= vocab; id += 1 + vocab / 64) {
        size_t nb;
        sasp_token_bytes(t, id, &nb);
    }
    sasp_tokenizer_free(t);
    return 0;
}
