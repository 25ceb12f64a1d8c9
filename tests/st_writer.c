/* st_writer.c: the safetensors + config.json writer the C tests build their checkpoints with. */
#include "st_writer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <ftw.h>
#include <unistd.h>

uint64_t tw_rand_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double tw_rand_uniform(uint64_t *s) { return (double)(tw_rand_u64(s) >> 11) * 0x1.0p-53; }

double tw_rand_normal(uint64_t *s)
{
    double u1 = tw_rand_uniform(s), u2 = tw_rand_uniform(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

json_t *tw_config(const char *arch, const char *norm, const char *position, const char *activation,
                  int vocab, int d_model, int n_layers, int n_heads, int d_ff, int max_seq_len, int tie)
{
    return json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:s, s:s, s:f, s:b, s:i, s:i}",
                     "architecture", arch, "vocab_size", vocab, "d_model", d_model, "n_layers", n_layers,
                     "n_heads", n_heads, "d_ff", d_ff, "max_seq_len", max_seq_len, "norm", norm, "norm_eps",
                     1e-5, "activation", activation, "position", position, "rope_theta", 10000.0,
                     "tie_embeddings", tie, "bos_token_id", 0, "eos_token_id", 0);
}

int tw_add(tw_model *m, const char *name, int ndim, const long *shape, const float *data)
{
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 32;
        tw_tensor *t = realloc(m->t, (size_t)cap * sizeof *t);
        if (!t) return -1;
        m->t = t;
        m->cap = cap;
    }
    tw_tensor *t = &m->t[m->n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= (size_t)shape[i];
    }
    t->data = calloc(t->numel ? t->numel : 1, sizeof(float));
    if (!t->data) return -1;
    if (data) memcpy(t->data, data, t->numel * sizeof(float));
    m->n++;
    return 0;
}

tw_tensor *tw_find(tw_model *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->t[i].name, name) == 0) return &m->t[i];
    return NULL;
}

void tw_remove(tw_model *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->t[i].name, name) == 0) {
            free(m->t[i].data);
            memmove(&m->t[i], &m->t[i + 1], (size_t)(m->n - i - 1) * sizeof *m->t);
            m->n--;
            return;
        }
}

void tw_free(tw_model *m)
{
    for (int i = 0; i < m->n; i++) free(m->t[i].data);
    free(m->t);
    memset(m, 0, sizeof *m);
}

/* kind: 0 matrix N(0, 1/fan_in), 1 uniform [lo, hi], 2 N(0, 0.1^2) */
static int add_random(tw_model *m, uint64_t *rs, const char *name, int ndim, long s0, long s1, int kind,
                      double lo, double hi)
{
    long shape[2] = {s0, s1};
    if (tw_add(m, name, ndim, shape, NULL)) return -1;
    tw_tensor *t = &m->t[m->n - 1];
    for (size_t i = 0; i < t->numel; i++) {
        double v = kind == 0   ? tw_rand_normal(rs) / sqrt((double)(ndim == 2 ? s1 : s0))
                   : kind == 1 ? lo + (hi - lo) * tw_rand_uniform(rs)
                               : 0.1 * tw_rand_normal(rs);
        t->data[i] = (float)v;
    }
    return 0;
}

int tw_random_model(tw_model *m, json_t *c, const tw_options *opt, uint64_t seed)
{
    static const tw_options none_opt = {0};
    if (!opt) opt = &none_opt;
    uint64_t rs = seed;
    const char *arch = json_string_value(json_object_get(c, "architecture"));
    const char *norm = json_string_value(json_object_get(c, "norm"));
    const char *pos = json_string_value(json_object_get(c, "position"));
    long V = json_integer_value(json_object_get(c, "vocab_size"));
    long d = json_integer_value(json_object_get(c, "d_model"));
    long L = json_integer_value(json_object_get(c, "n_layers"));
    long H = json_integer_value(json_object_get(c, "n_heads"));
    long F = json_integer_value(json_object_get(c, "d_ff"));
    long S = json_integer_value(json_object_get(c, "max_seq_len"));
    json_t *tie = json_object_get(c, "tie_embeddings");
    int sasp = strcmp(arch, "sasp") == 0, ln = strcmp(norm, "layernorm") == 0, nonorm = strcmp(norm, "none") == 0;
    int r = 0;
    char n[96];
    r |= add_random(m, &rs, "tok_emb.weight", 2, V, d, 0, 0, 0);
    if (strcmp(pos, "learned") == 0) r |= add_random(m, &rs, "pos_emb.weight", 2, S, d, 0, 0, 0);
    for (long l = 0; l < L && !r; l++) {
#define R(suffix, nd, a, b, kind, lo, hi) \
    (snprintf(n, sizeof n, "layers.%ld.%s", l, suffix), add_random(m, &rs, n, nd, a, b, kind, lo, hi))
        int first = nonorm && l == 0;
        if (!nonorm || first) r |= R("norm.weight", 1, d, 0, 1, 0.5, 1.5);
        if (ln || first) r |= R("norm.bias", 1, d, 0, 2, 0, 0);
        r |= R("attn.wq.weight", 2, d, d, 0, 0, 0);
        if (opt->qk_bias) r |= R("attn.wq.bias", 1, d, 0, 2, 0, 0);
        r |= R("attn.wk.weight", 2, d, d, 0, 0, 0);
        if (opt->qk_bias) r |= R("attn.wk.bias", 1, d, 0, 2, 0, 0);
        if (!sasp || (opt->wv_mask >> l & 1)) r |= R("attn.wv.weight", 2, d, d, 0, 0, 0);
        if (!sasp || (opt->wo_mask >> l & 1)) r |= R("attn.wo.weight", 2, d, d, 0, 0, 0);
        if (sasp) {
            r |= R("attn.alpha", 1, H, 0, 1, 0.5, 1.5);
            r |= R("attn.beta", 1, H, 0, 1, 0.5, 1.5);
            r |= R("attn.gamma", 1, H, 0, 1, 0.2, 1.0);
            r |= R("attn_gain", 1, 1, 0, 1, 0.5, 1.5);
            r |= R("mlp_gain", 1, 1, 0, 1, 0.5, 1.5);
            if (opt->skip_gain) r |= R("skip_gain", 1, 1, 0, 1, 0.5, 1.5);
        } else {
            if (!nonorm) r |= R("norm2.weight", 1, d, 0, 1, 0.5, 1.5);
            if (ln) r |= R("norm2.bias", 1, d, 0, 2, 0, 0);
        }
        r |= R("mlp.w1.weight", 2, F, d, 0, 0, 0);
        r |= R("mlp.w2.weight", 2, d, F, 0, 0, 0);
#undef R
    }
    r |= add_random(m, &rs, "norm_f.weight", 1, d, 0, 1, 0.5, 1.5);
    if (ln || nonorm) r |= add_random(m, &rs, "norm_f.bias", 1, d, 0, 2, 0, 0);
    if (tie && json_is_false(tie)) r |= add_random(m, &rs, "lm_head.weight", 2, V, d, 0, 0, 0);
    return r ? -1 : 0;
}

uint16_t tw_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int exp = (int)((x >> 23) & 0xff);
    uint32_t man = x & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    int e = exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) { /* subnormal or zero */
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - e;
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; /* may carry into the exponent: fine */
    return (uint16_t)(sign | half);
}

uint16_t tw_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    uint32_t rounding = 0x7fff + ((x >> 16) & 1);
    return (uint16_t)((x + rounding) >> 16);
}

json_t *tw_header(const tw_model *m, const char *dtype, unsigned char **data, size_t *data_len)
{
    size_t esize = strcmp(dtype, "F32") == 0 ? 4 : 2, total = 0;
    for (int i = 0; i < m->n; i++) total += m->t[i].numel * esize;
    unsigned char *buf = malloc(total ? total : 1);
    json_t *h = json_object();
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    size_t off = 0;
    for (int i = 0; i < m->n; i++) {
        const tw_tensor *t = &m->t[i];
        json_t *shape = json_array();
        for (int j = 0; j < t->ndim; j++) json_array_append_new(shape, json_integer(t->shape[j]));
        size_t bytes = t->numel * esize;
        json_object_set_new(h, t->name,
                            json_pack("{s:s, s:o, s:[I, I]}", "dtype", dtype, "shape", shape, "data_offsets",
                                      (json_int_t)off, (json_int_t)(off + bytes)));
        for (size_t j = 0; j < t->numel; j++) {
            unsigned char *p = buf + off + j * esize;
            if (esize == 4) {
                uint32_t x;
                memcpy(&x, &t->data[j], 4);
                for (int b = 0; b < 4; b++) p[b] = (unsigned char)(x >> (8 * b));
            } else {
                uint16_t x = strcmp(dtype, "F16") == 0 ? tw_f32_to_f16(t->data[j]) : tw_f32_to_bf16(t->data[j]);
                p[0] = (unsigned char)x;
                p[1] = (unsigned char)(x >> 8);
            }
        }
        off += bytes;
    }
    *data = buf;
    *data_len = total;
    return h;
}

int tw_write_raw(const char *path, uint64_t len_field, const char *header, size_t header_len,
                 const unsigned char *data, size_t data_len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(len_field >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(header, 1, header_len, f) == header_len &&
             (data_len == 0 || fwrite(data, 1, data_len, f) == data_len);
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int tw_write_safetensors(const char *path, json_t *header, const unsigned char *data, size_t data_len,
                         long long len_field)
{
    char *text = json_dumps(header, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text) return -1;
    size_t n = strlen(text);
    int rc = tw_write_raw(path, len_field < 0 ? (uint64_t)n : (uint64_t)len_field, text, n, data, data_len);
    free(text);
    return rc;
}

int tw_write_model(const char *dir, json_t *config, const tw_model *m, const char *dtype)
{
    char path[4096];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (json_dump_file(config, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) return -1;
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(m, dtype, &data, &len);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int rc = tw_write_safetensors(path, h, data, len, -1);
    json_decref(h);
    free(data);
    return rc;
}

char *tw_tempdir(void)
{
    const char *tmp = getenv("TMPDIR");
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/sasp-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(buf)) return NULL;
    return strdup(buf);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void tw_rmtree(const char *dir)
{
    if (dir) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
