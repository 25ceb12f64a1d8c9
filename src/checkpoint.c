/* checkpoint.c: load a model directory (config.json + model.safetensors) into owned float32 memory.
 *
 * The format is docs/checkpoint-format.md. The order:
 * config.json is parsed and checked; the expected tensor table (name, shape, required) is derived
 * from it; model.safetensors is mmapped, its header parsed and every entry checked against that
 * table and against the data section; then each tensor is copied out as float32 (F16 and BF16
 * converted exactly) into 64-byte-aligned memory and the file is unmapped. Each failure is a single
 * message naming the file and the tensor or key. */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER_BYTES (100u * 1000u * 1000u)

static void fail(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *path_join(const char *dir, const char *file) {
    size_t a = strlen(dir), b = strlen(file);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (n == 0 || p[n - 1] != '/') p[n++] = '/';
    memcpy(p + n, file, b + 1);
    return p;
}

/* ---- config.json ---- */

static int get_int(json_t *root, const char *path, const char *key, long lo, long hi, int *out,
                   char *err, size_t errlen) {
    json_t *v = json_object_get(root, key);
    if (!v) {
        fail(err, errlen, "%s: required key \"%s\" is missing", path, key);
        return -1;
    }
    if (!json_is_integer(v)) {
        fail(err, errlen, "%s: key \"%s\" must be an integer", path, key);
        return -1;
    }
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        if (lo == 1)
            fail(err, errlen, "%s: key \"%s\" is %lld; it must be positive and at most %ld", path, key,
                 (long long)x, hi);
        else
            fail(err, errlen, "%s: key \"%s\" is %lld; it must be in [%ld, %ld]", path, key,
                 (long long)x, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

const char *const sasp_arch_names[2] = {"sasp", "preln"};
const char *const sasp_norm_names[3] = {"rmsnorm", "layernorm", "none"};
const char *const sasp_act_names[3] = {"relu", "gelu", "silu"};
const char *const sasp_pos_names[2] = {"rope", "learned"};

/* A string key whose value must be one of names[]; its index goes in *out. */
static int get_enum(json_t *root, const char *path, const char *key, const char *const *names, int n,
                    int *out, char *err, size_t errlen) {
    json_t *v = json_object_get(root, key);
    if (!v) {
        fail(err, errlen, "%s: required key \"%s\" is missing", path, key);
        return -1;
    }
    const char *s = json_string_value(v);
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    char set[256] = "";
    for (int i = 0; i < n; i++) {
        strncat(set, i ? ", \"" : "\"", sizeof set - strlen(set) - 1);
        strncat(set, names[i], sizeof set - strlen(set) - 1);
        strncat(set, "\"", sizeof set - strlen(set) - 1);
    }
    if (s)
        fail(err, errlen, "%s: key \"%s\" is \"%s\"; it must be one of %s", path, key, s, set);
    else
        fail(err, errlen, "%s: key \"%s\" must be a string, one of %s", path, key, set);
    return -1;
}

static int get_real(json_t *root, const char *path, const char *key, int required, double dflt,
                    double *out, char *err, size_t errlen) {
    json_t *v = json_object_get(root, key);
    if (!v) {
        if (required) {
            fail(err, errlen, "%s: required key \"%s\" is missing", path, key);
            return -1;
        }
        *out = dflt;
        return 0;
    }
    if (!json_is_number(v)) {
        fail(err, errlen, "%s: key \"%s\" must be a number", path, key);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

int sasp_config_load(const char *dir, sasp_config *cfg, char *err, size_t errlen) {
    char *path = path_join(dir, "config.json");
    if (!path) {
        fail(err, errlen, "%s/config.json: out of memory", dir);
        return -1;
    }
    int rc = -1;
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (access(path, R_OK) != 0)
            fail(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        else
            fail(err, errlen, "%s: not valid JSON: %s (line %d, column %d)", path, jerr.text, jerr.line,
                 jerr.column);
        free(path);
        return -1;
    }
    if (!json_is_object(root)) {
        fail(err, errlen, "%s: the top level must be a JSON object", path);
        goto out;
    }
    memset(cfg, 0, sizeof *cfg);
    int e;
    if (get_enum(root, path, "architecture", sasp_arch_names, 2, &e, err, errlen)) goto out;
    cfg->arch = (sasp_arch)e;
    /* Upper bounds keep every product below (vocab x d) within 64-bit sizes and int indices. */
    if (get_int(root, path, "vocab_size", 1, 1 << 24, &cfg->vocab_size, err, errlen)) goto out;
    if (get_int(root, path, "d_model", 1, 1 << 16, &cfg->d_model, err, errlen)) goto out;
    if (get_int(root, path, "n_layers", 1, 4096, &cfg->n_layers, err, errlen)) goto out;
    if (get_int(root, path, "n_heads", 1, 1 << 16, &cfg->n_heads, err, errlen)) goto out;
    if (get_int(root, path, "d_ff", 1, 1 << 20, &cfg->d_ff, err, errlen)) goto out;
    if (get_int(root, path, "max_seq_len", 1, 1 << 20, &cfg->max_seq_len, err, errlen)) goto out;
    if (get_enum(root, path, "norm", sasp_norm_names, 3, &e, err, errlen)) goto out;
    cfg->norm = (sasp_norm)e;
    /* The rest are optional, with the defaults of train/sasp_model.py's ModelConfig. */
    double eps;
    if (get_real(root, path, "norm_eps", 0, 1e-6, &eps, err, errlen)) goto out;
    if (!(eps > 0 && eps < 1)) {
        fail(err, errlen, "%s: key \"norm_eps\" is %g; it must be in (0, 1)", path, eps);
        goto out;
    }
    cfg->norm_eps = (float)eps;
    /* Optional, for checkpoints from the paper's reference code (see checkpoint.h). */
    cfg->norm_f = cfg->norm == SASP_NORM_RMS ? SASP_NORM_RMS : SASP_NORM_LAYER;
    if (json_object_get(root, "norm_f")) {
        if (get_enum(root, path, "norm_f", sasp_norm_names, 2, &e, err, errlen)) goto out;
        cfg->norm_f = (sasp_norm)e;
    }
    json_t *outside = json_object_get(root, "rmsnorm_eps_outside");
    if (outside && !json_is_boolean(outside)) {
        fail(err, errlen, "%s: key \"rmsnorm_eps_outside\" must be true or false", path);
        goto out;
    }
    cfg->rmsnorm_eps_outside = outside && json_is_true(outside);
    if (get_enum(root, path, "activation", sasp_act_names, 3, &e, err, errlen)) goto out;
    cfg->activation = (sasp_act)e;
    if (get_enum(root, path, "position", sasp_pos_names, 2, &e, err, errlen)) goto out;
    cfg->position = (sasp_pos)e;
    double theta;
    if (get_real(root, path, "rope_theta", 0, 10000.0, &theta, err, errlen)) goto out;
    if (!(theta > 0 && theta < 1e30)) {
        fail(err, errlen, "%s: key \"rope_theta\" is %g; it must be a positive number", path, theta);
        goto out;
    }
    cfg->rope_theta = (float)theta;
    cfg->tie_embeddings = true;
    json_t *tie = json_object_get(root, "tie_embeddings");
    if (tie && !json_is_boolean(tie)) {
        fail(err, errlen, "%s: key \"tie_embeddings\" must be true or false", path);
        goto out;
    }
    if (tie) cfg->tie_embeddings = json_is_true(tie);
    cfg->bos_token_id = cfg->eos_token_id = 0;
    if (json_object_get(root, "bos_token_id") &&
        get_int(root, path, "bos_token_id", 0, cfg->vocab_size - 1, &cfg->bos_token_id, err, errlen))
        goto out;
    if (json_object_get(root, "eos_token_id") &&
        get_int(root, path, "eos_token_id", 0, cfg->vocab_size - 1, &cfg->eos_token_id, err, errlen))
        goto out;
    if (cfg->d_model % cfg->n_heads != 0) {
        fail(err, errlen, "%s: key \"d_model\" (%d) is not divisible by key \"n_heads\" (%d)", path,
             cfg->d_model, cfg->n_heads);
        goto out;
    }
    if (cfg->position == SASP_POS_ROPE && (cfg->d_model / cfg->n_heads) % 2 != 0) {
        fail(err, errlen,
             "%s: key \"position\" is \"rope\" but the head size d_model/n_heads = %d is odd (RoPE "
             "rotates pairs)",
             path, cfg->d_model / cfg->n_heads);
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    free(path);
    return rc;
}

/* ---- the tensor table a config implies ---- */

typedef struct {
    char name[64];
    int ndim;
    long shape[2];
    int required;
    int seen;
} expected_tensor;

typedef struct {
    expected_tensor *v;
    int n, cap;
} expected_list;

static int expect(expected_list *l, const char *name, int required, int ndim, long s0, long s1) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        expected_tensor *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    expected_tensor *t = &l->v[l->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = s0;
    t->shape[1] = s1;
    t->required = required;
    t->seen = 0;
    return 0;
}

static int cmp_expected(const void *a, const void *b) {
    return strcmp(((const expected_tensor *)a)->name, ((const expected_tensor *)b)->name);
}

/* Every tensor name the config allows, with its shape and whether it must be present. */
static int expected_tensors(const sasp_config *c, expected_list *l) {
    long V = c->vocab_size, d = c->d_model, F = c->d_ff, H = c->n_heads;
    int sasp = c->arch == SASP_ARCH_SASP, ln = c->norm == SASP_NORM_LAYER, none = c->norm == SASP_NORM_NONE;
    int r = 0;
    r |= expect(l, "tok_emb.weight", 1, 2, V, d);
    if (c->position == SASP_POS_LEARNED) r |= expect(l, "pos_emb.weight", 1, 2, c->max_seq_len, d);
    for (int i = 0; i < c->n_layers && r == 0; i++) {
        char n[64];
#define E(suffix, req, nd, a, b) (snprintf(n, sizeof n, "layers.%d.%s", i, suffix), expect(l, n, req, nd, a, b))
        int first_ln = none && i == 0; /* "none" keeps a layernorm on layer 0's input */
        if (!none || first_ln) r |= E("norm.weight", 1, 1, d, 0);
        if (ln || first_ln) r |= E("norm.bias", 1, 1, d, 0);
        r |= E("attn.wq.weight", 1, 2, d, d);
        r |= E("attn.wq.bias", 0, 1, d, 0);
        r |= E("attn.wk.weight", 1, 2, d, d);
        r |= E("attn.wk.bias", 0, 1, d, 0);
        r |= E("attn.wv.weight", !sasp, 2, d, d);
        r |= E("attn.wo.weight", !sasp, 2, d, d);
        if (sasp) {
            r |= E("attn.alpha", 1, 1, H, 0);
            r |= E("attn.beta", 1, 1, H, 0);
            r |= E("attn.gamma", 1, 1, H, 0);
            r |= E("attn_gain", 1, 1, 1, 0);
            r |= E("mlp_gain", 1, 1, 1, 0);
            r |= E("skip_gain", 0, 1, 1, 0);
        } else {
            if (!none) r |= E("norm2.weight", 1, 1, d, 0);
            if (ln) r |= E("norm2.bias", 1, 1, d, 0);
        }
        r |= E("mlp.w1.weight", 1, 2, F, d);
        r |= E("mlp.w2.weight", 1, 2, d, F);
#undef E
    }
    r |= expect(l, "norm_f.weight", 1, 1, d, 0);
    if (c->norm_f == SASP_NORM_LAYER) r |= expect(l, "norm_f.bias", 1, 1, d, 0);
    if (!c->tie_embeddings) r |= expect(l, "lm_head.weight", 1, 2, V, d);
    if (r) return -1;
    qsort(l->v, (size_t)l->n, sizeof *l->v, cmp_expected);
    return 0;
}

/* ---- dtype conversion (exact) ---- */

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf / nan */
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: man * 2^-24, exactly representable in float32 */
            float f = ldexpf((float)man, -24);
            memcpy(&bits, &f, 4);
            bits |= sign;
        }
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* ---- model.safetensors ---- */

typedef enum { DT_F32, DT_F16, DT_BF16 } dtype;

typedef struct {
    const char *name; /* points into the parsed header */
    dtype dt;
    int ndim;
    long shape[4];
    size_t numel;
    uint64_t begin, end;
} entry;

static int cmp_entry_begin(const void *a, const void *b) {
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static void shape_str(char *buf, size_t len, int ndim, const long *shape) {
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, i ? ", %ld" : "%ld", shape[i]);
    if (n < len) snprintf(buf + n, len - n, "]");
}

static uint64_t read_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Parse one header entry into e. Returns 0 or -1 with a message. */
static int parse_entry(const char *path, const char *name, json_t *v, uint64_t data_size, entry *e,
                       char *err, size_t errlen) {
    e->name = name;
    if (!json_is_object(v)) {
        fail(err, errlen, "%s: tensor \"%s\": header entry is not a JSON object", path, name);
        return -1;
    }
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    const char *ds = json_string_value(jd);
    if (!ds) {
        fail(err, errlen, "%s: tensor \"%s\": missing or non-string \"dtype\"", path, name);
        return -1;
    }
    size_t esize;
    if (strcmp(ds, "F32") == 0) e->dt = DT_F32, esize = 4;
    else if (strcmp(ds, "F16") == 0) e->dt = DT_F16, esize = 2;
    else if (strcmp(ds, "BF16") == 0) e->dt = DT_BF16, esize = 2;
    else {
        fail(err, errlen, "%s: tensor \"%s\": unknown dtype \"%s\" (F32, F16 or BF16 are supported)", path,
             name, ds);
        return -1;
    }
    if (!json_is_array(js)) {
        fail(err, errlen, "%s: tensor \"%s\": missing or non-array \"shape\"", path, name);
        return -1;
    }
    size_t nd = json_array_size(js);
    if (nd > 4) {
        fail(err, errlen, "%s: tensor \"%s\": shape has %zu dimensions (at most 4 are supported)", path,
             name, nd);
        return -1;
    }
    e->ndim = (int)nd;
    e->numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *x = json_array_get(js, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0) {
            fail(err, errlen, "%s: tensor \"%s\": shape entries must be non-negative integers", path, name);
            return -1;
        }
        json_int_t s = json_integer_value(x);
        if (s > (json_int_t)1 << 40 || (s && e->numel > ((size_t)1 << 40) / (size_t)s)) {
            fail(err, errlen, "%s: tensor \"%s\": shape is implausibly large", path, name);
            return -1;
        }
        e->shape[i] = (long)s;
        e->numel *= (size_t)s;
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1))) {
        fail(err, errlen, "%s: tensor \"%s\": \"data_offsets\" must be an array of two integers", path,
             name);
        return -1;
    }
    json_int_t b = json_integer_value(json_array_get(jo, 0)), en = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || en < b || (uint64_t)en > data_size) {
        fail(err, errlen,
             "%s: tensor \"%s\": data offsets [%lld, %lld) lie outside the data section (%llu bytes)", path,
             name, (long long)b, (long long)en, (unsigned long long)data_size);
        return -1;
    }
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    if (e->end - e->begin != e->numel * esize) {
        fail(err, errlen,
             "%s: tensor \"%s\": data offsets span %llu bytes but shape and dtype %s need %zu", path, name,
             (unsigned long long)(e->end - e->begin), ds, e->numel * esize);
        return -1;
    }
    return 0;
}

static void free_tensors(sasp_tensor *t, int n) {
    for (int i = 0; i < n; i++) {
        free(t[i].name);
        free(t[i].data);
    }
    free(t);
}

sasp_checkpoint *sasp_checkpoint_load(const char *dir, char *err, size_t errlen) {
    sasp_config cfg;
    if (sasp_config_load(dir, &cfg, err, errlen)) return NULL;

    sasp_checkpoint *ck = NULL;
    expected_list exp = {0};
    entry *entries = NULL, **order = NULL;
    json_t *root = NULL;
    void *map = MAP_FAILED;
    size_t map_size = 0;
    int fd = -1;
    char *path = path_join(dir, "model.safetensors");
    if (!path || expected_tensors(&cfg, &exp)) {
        fail(err, errlen, "%s: out of memory", dir);
        goto out;
    }

    fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        fail(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    if (st.st_size < 8) {
        fail(err, errlen, "%s: file is %lld bytes, too short for the 8-byte header length", path,
             (long long)st.st_size);
        goto out;
    }
    map_size = (size_t)st.st_size;
    map = mmap(NULL, map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        fail(err, errlen, "%s: cannot mmap: %s", path, strerror(errno));
        goto out;
    }
    const unsigned char *bytes = map;
    uint64_t hlen = read_le64(bytes);
    if (hlen > MAX_HEADER_BYTES) {
        fail(err, errlen, "%s: header length %llu is over the 100 MB limit", path, (unsigned long long)hlen);
        goto out;
    }
    if (hlen > map_size - 8) {
        fail(err, errlen, "%s: header length %llu runs past the end of the file (%zu bytes)", path,
             (unsigned long long)hlen, map_size);
        goto out;
    }
    const unsigned char *data = bytes + 8 + hlen;
    uint64_t data_size = map_size - 8 - hlen;

    json_error_t jerr;
    root = json_loadb((const char *)bytes + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        fail(err, errlen, "%s: header is not valid JSON: %s (at byte %d)", path, jerr.text, jerr.position);
        goto out;
    }
    if (!json_is_object(root)) {
        fail(err, errlen, "%s: header must be a JSON object", path);
        goto out;
    }

    size_t n_keys = json_object_size(root);
    entries = calloc(n_keys ? n_keys : 1, sizeof *entries);
    order = calloc(n_keys ? n_keys : 1, sizeof *order);
    if (!entries || !order) {
        fail(err, errlen, "%s: out of memory", path);
        goto out;
    }
    int n = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue; /* free-form strings; nothing we need */
        entry *e = &entries[n];
        if (parse_entry(path, key, val, data_size, e, err, errlen)) goto out;
        expected_tensor probe;
        snprintf(probe.name, sizeof probe.name, "%s", key);
        expected_tensor *x = strlen(key) < sizeof probe.name
                                 ? bsearch(&probe, exp.v, (size_t)exp.n, sizeof *exp.v, cmp_expected)
                                 : NULL;
        if (!x) {
            fail(err, errlen,
                 "%s: tensor \"%s\": unknown tensor name (not part of a %s model with norm %s, position "
                 "%s, %s embeddings and %d layers)",
                 path, key, cfg.arch == SASP_ARCH_SASP ? "sasp" : "preln",
                 cfg.norm == SASP_NORM_RMS ? "rmsnorm" : cfg.norm == SASP_NORM_LAYER ? "layernorm" : "none",
                 cfg.position == SASP_POS_ROPE ? "rope" : "learned", cfg.tie_embeddings ? "tied" : "untied",
                 cfg.n_layers);
            goto out;
        }
        if (e->ndim != x->ndim || e->shape[0] != x->shape[0] || (x->ndim == 2 && e->shape[1] != x->shape[1])) {
            char got[96], want[96];
            shape_str(got, sizeof got, e->ndim, e->shape);
            shape_str(want, sizeof want, x->ndim, x->shape);
            fail(err, errlen, "%s: tensor \"%s\": shape %s disagrees with config.json, which implies %s", path,
                 key, got, want);
            goto out;
        }
        x->seen = 1;
        order[n] = e;
        n++;
    }
    for (int i = 0; i < exp.n; i++)
        if (exp.v[i].required && !exp.v[i].seen) {
            fail(err, errlen, "%s: required tensor \"%s\" is missing", path, exp.v[i].name);
            goto out;
        }
    /* Extents must not overlap (empty extents cannot, and every expected tensor is non-empty). */
    qsort(order, (size_t)n, sizeof *order, cmp_entry_begin);
    for (int i = 1; i < n; i++)
        if (order[i]->begin < order[i - 1]->end) {
            fail(err, errlen, "%s: tensor \"%s\": data [%llu, %llu) overlaps tensor \"%s\" [%llu, %llu)", path,
                 order[i]->name, (unsigned long long)order[i]->begin, (unsigned long long)order[i]->end,
                 order[i - 1]->name, (unsigned long long)order[i - 1]->begin,
                 (unsigned long long)order[i - 1]->end);
            goto out;
        }

    ck = calloc(1, sizeof *ck);
    if (!ck || !(ck->dir = strdup(dir)) || !(ck->tensors = calloc((size_t)(n ? n : 1), sizeof *ck->tensors))) {
        fail(err, errlen, "%s: out of memory", path);
        goto fail_ck;
    }
    ck->config = cfg;
    ck->file_bytes = map_size;
    for (int i = 0; i < n; i++) {
        const entry *e = &entries[i];
        sasp_tensor *t = &ck->tensors[i];
        ck->n_tensors = i + 1;
        t->name = strdup(e->name);
        t->ndim = e->ndim;
        memcpy(t->shape, e->shape, sizeof t->shape);
        t->numel = e->numel;
        size_t bytes_out = (e->numel * sizeof(float) + 63) & ~(size_t)63;
        t->data = aligned_alloc(64, bytes_out ? bytes_out : 64);
        if (!t->name || !t->data) {
            fail(err, errlen, "%s: tensor \"%s\": out of memory (%zu bytes)", path, e->name, bytes_out);
            goto fail_ck;
        }
        const unsigned char *src = data + e->begin;
        if (e->dt == DT_F32) {
            memcpy(t->data, src, e->numel * 4);
        } else {
            for (size_t j = 0; j < e->numel; j++) {
                uint16_t h = (uint16_t)(src[2 * j] | (src[2 * j + 1] << 8));
                t->data[j] = e->dt == DT_F16 ? f16_to_f32(h) : bf16_to_f32(h);
            }
        }
    }
    goto out;

fail_ck:
    sasp_checkpoint_free(ck);
    ck = NULL;
out:
    if (map != MAP_FAILED) munmap(map, map_size);
    if (fd >= 0) close(fd);
    json_decref(root);
    free(entries);
    free(order);
    free(exp.v);
    free(path);
    return ck;
}

const sasp_tensor *sasp_checkpoint_find(const sasp_checkpoint *ck, const char *name) {
    for (int i = 0; i < ck->n_tensors; i++)
        if (ck->tensors[i].name && strcmp(ck->tensors[i].name, name) == 0) return &ck->tensors[i];
    return NULL;
}

float *sasp_checkpoint_take(sasp_checkpoint *ck, const char *name) {
    for (int i = 0; i < ck->n_tensors; i++)
        if (ck->tensors[i].name && strcmp(ck->tensors[i].name, name) == 0) {
            float *d = ck->tensors[i].data;
            ck->tensors[i].data = NULL;
            return d;
        }
    return NULL;
}

void sasp_checkpoint_free(sasp_checkpoint *ck) {
    if (!ck) return;
    free_tensors(ck->tensors, ck->n_tensors);
    free(ck->dir);
    free(ck);
}
