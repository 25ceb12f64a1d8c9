/* checkpoint.c: load a model directory (config.json + model.safetensors), and write a safetensors file.
 *
 * The format is docs/checkpoint-format.md. The order:
 * config.json is parsed and checked (sasp_config_load); the tensors it allows (name, shape, required
 * or optional) come from the tensor schema, the one table of names and shapes and the one function of
 * presence rules, which model.c takes its weights by as well; model.safetensors is mmapped, its header
 * parsed and every entry checked against those tensors and against the data section (check_header);
 * and q8_0's I8 matrices paired with their F16 ".scales" (pair_scales); then each tensor is made
 * (make_tensors): vectors, and F32 / F16 matrices, copied out as float32 (converted exactly) into
 * 64-byte-aligned memory; BF16 and q8_0 matrices left in the mapping as the kernels read them (the
 * checkpoint then keeps the file mapped), or every matrix converted to the one type asked for.
 * sasp_checkpoint_save writes what was loaded back out (sasp-quantize). Each failure is a single
 * message naming the file and the tensor or key. */
#include "model/checkpoint.h"

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

static void format_error(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *path_join(const char *dir, const char *file)
{
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
                   char *err, size_t errlen)
{
    json_t *v = json_object_get(root, key);
    if (!v) {
        format_error(err, errlen, "%s: required key \"%s\" is missing", path, key);
        return -1;
    }
    if (!json_is_integer(v)) {
        format_error(err, errlen, "%s: key \"%s\" must be an integer", path, key);
        return -1;
    }
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        if (lo == 1)
            format_error(err, errlen, "%s: key \"%s\" is %lld; it must be positive and at most %ld", path, key,
                         (long long)x, hi);
        else
            format_error(err, errlen, "%s: key \"%s\" is %lld; it must be in [%ld, %ld]", path, key,
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
                    int *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, key);
    if (!v) {
        format_error(err, errlen, "%s: required key \"%s\" is missing", path, key);
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
        format_error(err, errlen, "%s: key \"%s\" is \"%s\"; it must be one of %s", path, key, s, set);
    else
        format_error(err, errlen, "%s: key \"%s\" must be a string, one of %s", path, key, set);
    return -1;
}

static int get_real(json_t *root, const char *path, const char *key, int required, double dflt,
                    double *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, key);
    if (!v) {
        if (required) {
            format_error(err, errlen, "%s: required key \"%s\" is missing", path, key);
            return -1;
        }
        *out = dflt;
        return 0;
    }
    if (!json_is_number(v)) {
        format_error(err, errlen, "%s: key \"%s\" must be a number", path, key);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

int sasp_config_load(const char *dir, sasp_config *cfg, char *err, size_t errlen)
{
    char *path = path_join(dir, "config.json");
    if (!path) {
        format_error(err, errlen, "%s/config.json: out of memory", dir);
        return -1;
    }
    int rc = -1;
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (access(path, R_OK) != 0)
            format_error(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        else
            format_error(err, errlen, "%s: not valid JSON: %s (line %d, column %d)", path, jerr.text, jerr.line,
                         jerr.column);
        free(path);
        return -1;
    }
    if (!json_is_object(root)) {
        format_error(err, errlen, "%s: the top level must be a JSON object", path);
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
        format_error(err, errlen, "%s: key \"norm_eps\" is %g; it must be in (0, 1)", path, eps);
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
        format_error(err, errlen, "%s: key \"rmsnorm_eps_outside\" must be true or false", path);
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
        format_error(err, errlen, "%s: key \"rope_theta\" is %g; it must be a positive number", path, theta);
        goto out;
    }
    cfg->rope_theta = (float)theta;
    cfg->tie_embeddings = true;
    json_t *tie = json_object_get(root, "tie_embeddings");
    if (tie && !json_is_boolean(tie)) {
        format_error(err, errlen, "%s: key \"tie_embeddings\" must be true or false", path);
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
        format_error(err, errlen, "%s: key \"d_model\" (%d) is not divisible by key \"n_heads\" (%d)", path,
                     cfg->d_model, cfg->n_heads);
        goto out;
    }
    if (cfg->position == SASP_POS_ROPE && (cfg->d_model / cfg->n_heads) % 2 != 0) {
        format_error(err, errlen,
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

/* ---- the tensor schema (docs/checkpoint-format.md, "Tensors") ---- */

/* Name and shape of each kind. A shape is spelled in the letters of the format's table: V vocab_size,
 * d d_model, F d_ff, H n_heads, S max_seq_len, and 1. */
static const struct {
    const char *name; /* after "layers.N." for the per-layer kinds */
    const char *shape;
} schema[SASP_N_TENSOR_KINDS] = {
    [SASP_T_TOK_EMB] = {"tok_emb.weight", "Vd"},
    [SASP_T_POS_EMB] = {"pos_emb.weight", "Sd"},
    [SASP_T_NORM_W] = {"norm.weight", "d"},
    [SASP_T_NORM_B] = {"norm.bias", "d"},
    [SASP_T_WQ] = {"attn.wq.weight", "dd"},
    [SASP_T_BQ] = {"attn.wq.bias", "d"},
    [SASP_T_WK] = {"attn.wk.weight", "dd"},
    [SASP_T_BK] = {"attn.wk.bias", "d"},
    [SASP_T_WV] = {"attn.wv.weight", "dd"},
    [SASP_T_WO] = {"attn.wo.weight", "dd"},
    [SASP_T_ALPHA] = {"attn.alpha", "H"},
    [SASP_T_BETA] = {"attn.beta", "H"},
    [SASP_T_GAMMA] = {"attn.gamma", "H"},
    [SASP_T_ATTN_GAIN] = {"attn_gain", "1"},
    [SASP_T_MLP_GAIN] = {"mlp_gain", "1"},
    [SASP_T_SKIP_GAIN] = {"skip_gain", "1"},
    [SASP_T_NORM2_W] = {"norm2.weight", "d"},
    [SASP_T_NORM2_B] = {"norm2.bias", "d"},
    [SASP_T_W1] = {"mlp.w1.weight", "Fd"},
    [SASP_T_W2] = {"mlp.w2.weight", "dF"},
    [SASP_T_NORM_F_W] = {"norm_f.weight", "d"},
    [SASP_T_NORM_F_B] = {"norm_f.bias", "d"},
    [SASP_T_LM_HEAD] = {"lm_head.weight", "Vd"},
};

/* The column "present" of the table. */
static sasp_presence presence(const sasp_config *c, sasp_tensor_kind kind, int layer)
{
    const sasp_presence NO = SASP_TENSOR_ABSENT, MAY = SASP_TENSOR_OPTIONAL, MUST = SASP_TENSOR_REQUIRED;
    int sasp = c->arch == SASP_ARCH_SASP, layernorm = c->norm == SASP_NORM_LAYER, none = c->norm == SASP_NORM_NONE;
    int first_ln = none && layer == 0; /* "none" keeps a layernorm on layer 0's input */
    switch (kind) {
    case SASP_T_TOK_EMB: return MUST;
    case SASP_T_POS_EMB: return c->position == SASP_POS_LEARNED ? MUST : NO;
    case SASP_T_NORM_W: return !none || first_ln ? MUST : NO;
    case SASP_T_NORM_B: return layernorm || first_ln ? MUST : NO;
    case SASP_T_WQ:
    case SASP_T_WK: return MUST;
    case SASP_T_BQ:
    case SASP_T_BK: return MAY;
    case SASP_T_WV:
    case SASP_T_WO: return sasp ? MAY : MUST; /* sasp: absent means V = Z, W_O = identity */
    case SASP_T_ALPHA:
    case SASP_T_BETA:
    case SASP_T_GAMMA: return sasp ? MUST : NO;
    case SASP_T_ATTN_GAIN:
    case SASP_T_MLP_GAIN: return sasp ? MUST : NO;
    case SASP_T_SKIP_GAIN: return sasp ? MAY : NO;
    case SASP_T_NORM2_W: return !sasp && !none ? MUST : NO;
    case SASP_T_NORM2_B: return !sasp && layernorm ? MUST : NO;
    case SASP_T_W1:
    case SASP_T_W2: return MUST;
    case SASP_T_NORM_F_W: return MUST;
    case SASP_T_NORM_F_B: return c->norm_f == SASP_NORM_LAYER ? MUST : NO;
    case SASP_T_LM_HEAD: return c->tie_embeddings ? NO : MUST;
    case SASP_N_TENSOR_KINDS: break;
    }
    return NO;
}

static long dim_size(const sasp_config *c, char letter)
{
    switch (letter) {
    case 'V': return c->vocab_size;
    case 'd': return c->d_model;
    case 'F': return c->d_ff;
    case 'H': return c->n_heads;
    case 'S': return c->max_seq_len;
    default: return 1;
    }
}

bool sasp_tensor_per_layer(sasp_tensor_kind kind) { return kind >= SASP_T_NORM_W && kind <= SASP_T_W2; }

bool sasp_tensor_is_matrix(sasp_tensor_kind kind)
{
    switch (kind) {
    case SASP_T_TOK_EMB:
    case SASP_T_WQ:
    case SASP_T_WK:
    case SASP_T_WV:
    case SASP_T_WO:
    case SASP_T_W1:
    case SASP_T_W2:
    case SASP_T_LM_HEAD: return true;
    default: return false;
    }
}

static const char *const wtype_names[] = {[SASP_WT_F32] = "f32", [SASP_WT_BF16] = "bf16", [SASP_WT_Q8_0] = "q8_0"};

const char *sasp_wtype_name(sasp_wtype t) { return (unsigned)t < 3 ? wtype_names[t] : "?"; }

int sasp_wtype_parse(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, wtype_names[i]) == 0) return i;
    return -1;
}

static void tensor_name(char *buf, size_t len, sasp_tensor_kind kind, int layer)
{
    if (sasp_tensor_per_layer(kind)) snprintf(buf, len, "layers.%d.%s", layer, schema[kind].name);
    else snprintf(buf, len, "%s", schema[kind].name);
}

sasp_presence sasp_tensor_spec_of(const sasp_config *c, sasp_tensor_kind kind, int layer, sasp_tensor_spec *spec)
{
    tensor_name(spec->name, sizeof spec->name, kind, layer);
    spec->ndim = (int)strlen(schema[kind].shape);
    spec->shape[1] = 0;
    for (int i = 0; i < spec->ndim; i++) spec->shape[i] = dim_size(c, schema[kind].shape[i]);
    return spec->presence = presence(c, kind, layer);
}

/* ---- the tensors a config allows, for checking a file's header against ---- */

typedef struct {
    sasp_tensor_spec spec;
    sasp_tensor_kind kind;
    int entry;  /* the header entry of this tensor, -1 when the file has none */
    int scales; /* the entry "<name>.scales" (q8_0), -1 when none */
} expected_tensor;

typedef struct {
    expected_tensor *v;
    int n;
} expected_list;

static int cmp_expected(const void *a, const void *b)
{
    return strcmp(((const expected_tensor *)a)->spec.name, ((const expected_tensor *)b)->spec.name);
}

/* Every tensor the config allows, required or optional, sorted by name. */
static int expected_tensors(const sasp_config *c, expected_list *l)
{
    size_t cap = 0;
    for (int kind = 0; kind < SASP_N_TENSOR_KINDS; kind++) cap += sasp_tensor_per_layer(kind) ? (size_t)c->n_layers : 1;
    l->n = 0;
    if (!(l->v = calloc(cap, sizeof *l->v))) return -1;
    for (int kind = 0; kind < SASP_N_TENSOR_KINDS; kind++)
        for (int layer = 0; layer < (sasp_tensor_per_layer(kind) ? c->n_layers : 1); layer++)
            if (sasp_tensor_spec_of(c, kind, layer, &l->v[l->n].spec) != SASP_TENSOR_ABSENT) {
                l->v[l->n].kind = (sasp_tensor_kind)kind;
                l->v[l->n].entry = l->v[l->n].scales = -1;
                l->n++;
            }
    qsort(l->v, (size_t)l->n, sizeof *l->v, cmp_expected);
    return 0;
}

/* ---- model.safetensors ---- */

typedef enum { DT_F32,
               DT_F16,
               DT_BF16,
               DT_I8 } dtype;
static const char *const dtype_names[] = {"F32", "F16", "BF16", "I8"};
static const size_t dtype_sizes[] = {4, 2, 2, 1};

typedef struct {
    const char *name; /* points into the parsed header */
    dtype dt;
    int ndim;
    long shape[4];
    size_t numel;
    uint64_t begin, end;
    int is_scales; /* "<matrix>.scales": a q8_0 matrix's scales, not a tensor of its own */
    int scales;    /* an I8 matrix: the index of its scales entry (-1 before they are paired) */
    sasp_tensor_kind kind;
} entry;

static int cmp_entry_begin(const void *a, const void *b)
{
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static void shape_str(char *buf, size_t len, int ndim, const long *shape)
{
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, i ? ", %ld" : "%ld", shape[i]);
    if (n < len) snprintf(buf + n, len - n, "]");
}

static uint64_t read_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Parse one header entry into e. Returns 0 or -1 with a message. */
static int parse_entry(const char *path, const char *name, json_t *v, uint64_t data_size, entry *e,
                       char *err, size_t errlen)
{
    e->name = name;
    if (!json_is_object(v)) {
        format_error(err, errlen, "%s: tensor \"%s\": header entry is not a JSON object", path, name);
        return -1;
    }
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    const char *ds = json_string_value(jd);
    if (!ds) {
        format_error(err, errlen, "%s: tensor \"%s\": missing or non-string \"dtype\"", path, name);
        return -1;
    }
    int dt = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(ds, dtype_names[i]) == 0) dt = i;
    if (dt < 0) {
        format_error(err, errlen, "%s: tensor \"%s\": unknown dtype \"%s\" (F32, F16, BF16 or I8 are supported)", path,
                     name, ds);
        return -1;
    }
    e->dt = (dtype)dt;
    size_t esize = dtype_sizes[dt];
    if (!json_is_array(js)) {
        format_error(err, errlen, "%s: tensor \"%s\": missing or non-array \"shape\"", path, name);
        return -1;
    }
    size_t nd = json_array_size(js);
    if (nd > 4) {
        format_error(err, errlen, "%s: tensor \"%s\": shape has %zu dimensions (at most 4 are supported)", path,
                     name, nd);
        return -1;
    }
    e->ndim = (int)nd;
    e->numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *x = json_array_get(js, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0) {
            format_error(err, errlen, "%s: tensor \"%s\": shape entries must be non-negative integers", path, name);
            return -1;
        }
        json_int_t s = json_integer_value(x);
        if (s > (json_int_t)1 << 40 || (s && e->numel > ((size_t)1 << 40) / (size_t)s)) {
            format_error(err, errlen, "%s: tensor \"%s\": shape is implausibly large", path, name);
            return -1;
        }
        e->shape[i] = (long)s;
        e->numel *= (size_t)s;
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1))) {
        format_error(err, errlen, "%s: tensor \"%s\": \"data_offsets\" must be an array of two integers", path,
                     name);
        return -1;
    }
    json_int_t b = json_integer_value(json_array_get(jo, 0)), en = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || en < b || (uint64_t)en > data_size) {
        format_error(err, errlen,
                     "%s: tensor \"%s\": data offsets [%lld, %lld) lie outside the data section (%llu bytes)", path,
                     name, (long long)b, (long long)en, (unsigned long long)data_size);
        return -1;
    }
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    if (e->end - e->begin != e->numel * esize) {
        format_error(err, errlen,
                     "%s: tensor \"%s\": data offsets span %llu bytes but shape and dtype %s need %zu", path, name,
                     (unsigned long long)(e->end - e->begin), ds, e->numel * esize);
        return -1;
    }
    return 0;
}

static void free_tensors(sasp_tensor *t, int n)
{
    for (int i = 0; i < n; i++) {
        free(t[i].name);
        free(t[i].data);
        free(t[i].owned);
    }
    free(t);
}

/* model.safetensors, mapped read-only, with its header parsed and its data section located. */
typedef struct {
    char *path;
    void *map; /* MAP_FAILED when not mapped */
    size_t map_size;
    json_t *header;
    const unsigned char *data;
    uint64_t data_size;
} st_file;

static void st_close(st_file *f)
{
    if (f->map != MAP_FAILED) munmap(f->map, f->map_size);
    json_decref(f->header);
}

/* Map f->path and parse its header (the 8-byte length, then a JSON object). 0, or -1 with a message;
 * either way st_close releases what it took. */
static int st_open(st_file *f, char *err, size_t errlen)
{
    f->map = MAP_FAILED;
    f->header = NULL;
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        format_error(err, errlen, "%s: cannot open: %s", f->path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 8) {
        if (!S_ISREG(st.st_mode)) format_error(err, errlen, "%s: not a regular file", f->path);
        else
            format_error(err, errlen, "%s: file is %lld bytes, too short for the 8-byte header length", f->path,
                         (long long)st.st_size);
        close(fd);
        return -1;
    }
    f->map_size = (size_t)st.st_size;
    f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int mmap_errno = errno;
    close(fd); /* the mapping outlives the descriptor */
    if (f->map == MAP_FAILED) {
        format_error(err, errlen, "%s: cannot mmap: %s", f->path, strerror(mmap_errno));
        return -1;
    }
    const unsigned char *bytes = f->map;
    uint64_t hlen = read_le64(bytes);
    if (hlen > MAX_HEADER_BYTES) {
        format_error(err, errlen, "%s: header length %llu is over the 100 MB limit", f->path, (unsigned long long)hlen);
        return -1;
    }
    if (hlen > f->map_size - 8) {
        format_error(err, errlen, "%s: header length %llu runs past the end of the file (%zu bytes)", f->path,
                     (unsigned long long)hlen, f->map_size);
        return -1;
    }
    f->data = bytes + 8 + hlen;
    f->data_size = f->map_size - 8 - hlen;
    json_error_t jerr;
    f->header = json_loadb((const char *)bytes + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!f->header) {
        format_error(err, errlen, "%s: header is not valid JSON: %s (at byte %d)", f->path, jerr.text, jerr.position);
        return -1;
    }
    if (!json_is_object(f->header)) {
        format_error(err, errlen, "%s: header must be a JSON object", f->path);
        return -1;
    }
    return 0;
}

/* Entry idx is a tensor the config allows, with the shape it implies, or the scales of one
 * ("<name>.scales", checked once paired: pair_scales); records it in the expected list. */
static int match_expected(const char *path, const sasp_config *cfg, expected_list *exp, entry *entries, int idx,
                          char *err, size_t errlen)
{
    entry *e = &entries[idx];
    size_t len = strlen(e->name), suffix = strlen(".scales");
    e->is_scales = len > suffix && strcmp(e->name + len - suffix, ".scales") == 0;
    e->scales = -1;
    size_t base = e->is_scales ? len - suffix : len;
    expected_tensor probe;
    snprintf(probe.spec.name, sizeof probe.spec.name, "%.*s", (int)(base < 64 ? base : 0), e->name);
    expected_tensor *x = base < sizeof probe.spec.name
                             ? bsearch(&probe, exp->v, (size_t)exp->n, sizeof *exp->v, cmp_expected)
                             : NULL;
    if (!x) {
        format_error(err, errlen,
                     "%s: tensor \"%s\": unknown tensor name (not part of a %s model with norm %s, position %s, %s "
                     "embeddings and %d layers)",
                     path, e->name, sasp_arch_names[cfg->arch], sasp_norm_names[cfg->norm], sasp_pos_names[cfg->position],
                     cfg->tie_embeddings ? "tied" : "untied", cfg->n_layers);
        return -1;
    }
    e->kind = x->kind;
    if (e->is_scales) {
        x->scales = idx;
        return 0;
    }
    const sasp_tensor_spec *want = &x->spec;
    if (e->ndim != want->ndim || e->shape[0] != want->shape[0] || (want->ndim == 2 && e->shape[1] != want->shape[1])) {
        char got[96], implied[96];
        shape_str(got, sizeof got, e->ndim, e->shape);
        shape_str(implied, sizeof implied, want->ndim, want->shape);
        format_error(err, errlen, "%s: tensor \"%s\": shape %s disagrees with config.json, which implies %s", path, e->name,
                     got, implied);
        return -1;
    }
    x->entry = idx;
    return 0;
}

/* q8_0 (docs/checkpoint-format.md): an I8 tensor is a matrix, and has an F16 "<name>.scales" of
 * shape [rows, ceil(columns / 32)]; a .scales entry belongs to an I8 matrix. Pairs them (e->scales). */
static int pair_scales(const char *path, const expected_list *exp, entry *entries, char *err, size_t errlen)
{
    for (int i = 0; i < exp->n; i++) {
        const expected_tensor *x = &exp->v[i];
        entry *e = x->entry >= 0 ? &entries[x->entry] : NULL;
        const char *name = x->spec.name;
        if (x->scales >= 0 && (!e || e->dt != DT_I8)) {
            format_error(err, errlen, "%s: tensor \"%s.scales\": scales of a tensor that is %s (q8_0 is an I8 matrix with F16 scales)",
                         path, name, e ? "not I8" : "missing");
            return -1;
        }
        if (!e || e->dt != DT_I8) continue;
        if (!sasp_tensor_is_matrix(x->kind)) {
            format_error(err, errlen, "%s: tensor \"%s\": dtype I8 (q8_0) is only allowed for the weight matrices", path, name);
            return -1;
        }
        if (x->scales < 0) {
            format_error(err, errlen, "%s: tensor \"%s\": I8 (q8_0) matrix without its scales tensor \"%s.scales\"", path, name,
                         name);
            return -1;
        }
        const entry *s = &entries[x->scales];
        long want[2] = {e->shape[0], sasp_q8_0_blocks((int)e->shape[1])};
        if (s->dt != DT_F16 || s->ndim != 2 || s->shape[0] != want[0] || s->shape[1] != want[1]) {
            char got[96], need[96];
            shape_str(got, sizeof got, s->ndim, s->shape);
            shape_str(need, sizeof need, 2, want);
            format_error(err, errlen, "%s: tensor \"%s.scales\": %s %s, but the q8_0 scales of a %ld x %ld matrix are F16 %s",
                         path, name, dtype_names[s->dt], got, e->shape[0], e->shape[1], need);
            return -1;
        }
        e->scales = x->scales;
    }
    return 0;
}

/* No two entries' byte ranges overlap (empty ranges cannot, and every expected tensor is non-empty). */
static int check_no_overlap(const char *path, entry *entries, int n, char *err, size_t errlen)
{
    entry **order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) {
        format_error(err, errlen, "%s: out of memory", path);
        return -1;
    }
    for (int i = 0; i < n; i++) order[i] = &entries[i];
    qsort(order, (size_t)n, sizeof *order, cmp_entry_begin);
    int rc = 0;
    for (int i = 1; i < n && rc == 0; i++)
        if (order[i]->begin < order[i - 1]->end) {
            format_error(err, errlen, "%s: tensor \"%s\": data [%llu, %llu) overlaps tensor \"%s\" [%llu, %llu)", path,
                         order[i]->name, (unsigned long long)order[i]->begin, (unsigned long long)order[i]->end,
                         order[i - 1]->name, (unsigned long long)order[i - 1]->begin, (unsigned long long)order[i - 1]->end);
            rc = -1;
        }
    free(order);
    return rc;
}

/* Parse and check every entry of the header into entries[] (*n of them): each a tensor the config
 * allows, every required one present, no two overlapping. */
static int check_header(const st_file *f, const sasp_config *cfg, entry *entries, int *n, char *err, size_t errlen)
{
    expected_list exp;
    if (expected_tensors(cfg, &exp)) {
        format_error(err, errlen, "%s: out of memory", f->path);
        return -1;
    }
    int rc = -1;
    const char *key;
    json_t *val;
    *n = 0;
    json_object_foreach (f->header, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue; /* free-form strings; nothing we need */
        entry *e = &entries[*n];
        if (parse_entry(f->path, key, val, f->data_size, e, err, errlen)) goto out;
        if (match_expected(f->path, cfg, &exp, entries, *n, err, errlen)) goto out;
        ++*n;
    }
    for (int i = 0; i < exp.n; i++)
        if (exp.v[i].spec.presence == SASP_TENSOR_REQUIRED && exp.v[i].entry < 0) {
            format_error(err, errlen, "%s: required tensor \"%s\" is missing", f->path, exp.v[i].spec.name);
            goto out;
        }
    if (pair_scales(f->path, &exp, entries, err, errlen)) goto out;
    rc = check_no_overlap(f->path, entries, *n, err, errlen);
out:
    free(exp.v);
    return rc;
}

/* ---- the tensors, from the checked entries ---- */

static uint16_t read_le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

static void *alloc64(size_t bytes)
{
    size_t r = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, r ? r : 64);
}

/* A q8_0 matrix's values are in [-127, 127] (kernels.h: -128 would overflow the AVX2 sign trick) and
 * its scales are finite. */
static int check_q8_0(const char *path, const entry *e, const entry *sc, const unsigned char *data, char *err,
                      size_t errlen)
{
    const int8_t *q = (const int8_t *)(data + e->begin);
    for (size_t i = 0; i < e->numel; i++)
        if (q[i] == -128) {
            format_error(err, errlen, "%s: tensor \"%s\": q8_0 value -128 at [%zu, %zu] (values are in [-127, 127])", path,
                         e->name, i / (size_t)e->shape[1], i % (size_t)e->shape[1]);
            return -1;
        }
    for (size_t i = 0; i < sc->numel; i++)
        if (!isfinite(sasp_f16_to_f32(read_le16(data + sc->begin + 2 * i)))) {
            format_error(err, errlen, "%s: tensor \"%s.scales\": scale %zu is not finite", path, e->name, i);
            return -1;
        }
    return 0;
}

/* Entry e's values as float32 (F16 and BF16 exactly, q8_0 dequantized as the kernels see them). */
static void values_f32(float *out, const entry *e, const entry *sc, const unsigned char *data)
{
    const unsigned char *src = data + e->begin;
    if (e->dt == DT_F32) {
        memcpy(out, src, e->numel * 4);
    } else if (e->dt == DT_I8) {
        sasp_weights w = {.type = SASP_WT_Q8_0, .m = (int)e->shape[0], .k = (int)e->shape[1], .data = src};
        uint16_t *s = malloc(sc->numel * sizeof *s);
        if (!s) abort(); /* a few KB per matrix */
        for (size_t i = 0; i < sc->numel; i++) s[i] = read_le16(data + sc->begin + 2 * i);
        w.scales = s;
        for (int j = 0; j < w.m; j++) sasp_weights_row_f32(&w, j, out + (size_t)j * w.k);
        free(s);
    } else {
        for (size_t j = 0; j < e->numel; j++) {
            uint16_t h = read_le16(src + 2 * j);
            out[j] = e->dt == DT_F16 ? sasp_f16_to_f32(h) : sasp_bf16_to_f32(h);
        }
    }
}

/* Matrix entry e as bf16 or q8_0 (want) in t->w: a view of the mapping when the file holds that type
 * at an aligned offset, else converted into t->owned. *viewed: whether it is a view. */
static int typed_matrix(sasp_tensor *t, const entry *e, const entry *sc, const unsigned char *data, sasp_wtype want,
                        int *viewed)
{
    int m = (int)e->shape[0], k = (int)e->shape[1], nb = sasp_q8_0_blocks(k);
    const unsigned char *src = data + e->begin;
    t->w = (sasp_weights){.type = want, .m = m, .k = k, .data = src, .scales = want == SASP_WT_Q8_0 && sc ? (const uint16_t *)(data + sc->begin) : NULL};
    int stored = (want == SASP_WT_BF16 && e->dt == DT_BF16) || (want == SASP_WT_Q8_0 && e->dt == DT_I8);
    uintptr_t half = (uintptr_t)(want == SASP_WT_BF16 ? (const void *)src : (const void *)t->w.scales);
    if (stored && half % 2 == 0 && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) {
        *viewed = 1;
        return 0;
    }
    size_t n = (size_t)m * k, bytes = want == SASP_WT_BF16 ? 2 * n : n + 2 * (size_t)m * nb;
    if (!(t->owned = alloc64(bytes))) return -1;
    t->w.data = t->owned;
    if (want == SASP_WT_Q8_0) t->w.scales = (uint16_t *)(void *)((char *)t->owned + ((n + 1) & ~(size_t)1));
    if (stored && want == SASP_WT_BF16) {
        for (size_t i = 0; i < n; i++) ((uint16_t *)t->owned)[i] = read_le16(src + 2 * i);
        return 0;
    }
    if (stored) { /* q8_0 whose scales are misaligned in the file */
        memcpy(t->owned, src, n);
        for (int i = 0; i < m * nb; i++) ((uint16_t *)t->w.scales)[i] = read_le16(data + sc->begin + 2 * (size_t)i);
        return 0;
    }
    float *f = alloc64(n * sizeof *f);
    if (!f) return -1;
    values_f32(f, e, sc, data);
    if (want == SASP_WT_BF16)
        for (size_t i = 0; i < n; i++) ((uint16_t *)t->owned)[i] = sasp_f32_to_bf16(f[i]);
    else
        sasp_quantize_q8_0(t->owned, (uint16_t *)t->w.scales, f, m, k);
    free(f);
    return 0;
}

/* The type matrix entry e is used in: WEIGHTS, the file's own (F32 and F16 as f32), or the narrower of
 * the two (SASP_WEIGHTS_AT_MOST; the types' order, f32 > bf16 > q8_0, is sasp_wtype's). */
static sasp_wtype type_for(const entry *e, int weights)
{
    sasp_wtype stored = e->dt == DT_BF16 ? SASP_WT_BF16 : e->dt == DT_I8 ? SASP_WT_Q8_0
                                                                         : SASP_WT_F32;
    if (weights == SASP_WEIGHTS_AS_STORED) return stored;
    if (weights <= SASP_WEIGHTS_AT_MOST(SASP_WT_F32) && weights >= SASP_WEIGHTS_AT_MOST(SASP_WT_Q8_0)) {
        sasp_wtype cap = (sasp_wtype)(-2 - weights);
        return stored > cap ? stored : cap;
    }
    return (sasp_wtype)weights;
}

/* Tensor t from entry e (sc: its q8_0 scales): float32 in t->data, or a matrix in the type it is used
 * in (t->w). *viewed is set when t views the mapping. */
static int make_tensor(sasp_tensor *t, const entry *e, const entry *sc, const unsigned char *data, int weights,
                       int *viewed)
{
    t->name = strdup(e->name);
    t->ndim = e->ndim;
    memcpy(t->shape, e->shape, sizeof t->shape);
    t->numel = e->numel;
    if (!t->name) return -1;
    int matrix = sasp_tensor_is_matrix(e->kind);
    sasp_wtype want = matrix ? type_for(e, weights) : SASP_WT_F32;
    if (want != SASP_WT_F32) return typed_matrix(t, e, sc, data, want, viewed);
    if (!(t->data = alloc64(e->numel * sizeof(float)))) return -1;
    values_f32(t->data, e, sc, data);
    if (matrix) t->w = (sasp_weights){.type = SASP_WT_F32, .m = (int)e->shape[0], .k = (int)e->shape[1], .data = t->data};
    return 0;
}

/* Every tensor of the checked entries into ck (the scales go with their matrices). */
static int make_tensors(sasp_checkpoint *ck, const st_file *f, const entry *entries, int n, int weights, int *viewed,
                        char *err, size_t errlen)
{
    for (int i = 0; i < n; i++) {
        const entry *e = &entries[i], *sc = e->scales >= 0 ? &entries[e->scales] : NULL;
        if (e->is_scales) continue;
        if (sc && check_q8_0(f->path, e, sc, f->data, err, errlen)) return -1;
        if (make_tensor(&ck->tensors[ck->n_tensors++], e, sc, f->data, weights, viewed)) {
            format_error(err, errlen, "%s: tensor \"%s\": out of memory (%zu bytes)", f->path, e->name, e->numel * sizeof(float));
            return -1;
        }
    }
    return 0;
}

sasp_checkpoint *sasp_checkpoint_load(const char *dir, char *err, size_t errlen)
{
    return sasp_checkpoint_load_as(dir, SASP_WEIGHTS_AS_STORED, err, errlen);
}

/* DIR's config into *cfg, its model.safetensors opened into *f and its header checked into the entries
 * returned (*n of them); NULL with err. Either way close_checked(f, entries) releases what it took. */
static entry *open_checked(const char *dir, sasp_config *cfg, st_file *f, int *n, char *err, size_t errlen)
{
    *f = (st_file){.map = MAP_FAILED};
    *n = 0;
    if (sasp_config_load(dir, cfg, err, errlen)) return NULL;
    if (!(f->path = path_join(dir, "model.safetensors"))) {
        format_error(err, errlen, "%s: out of memory", dir);
        return NULL;
    }
    if (st_open(f, err, errlen)) return NULL;
    size_t n_keys = json_object_size(f->header);
    entry *entries = calloc(n_keys ? n_keys : 1, sizeof *entries);
    if (!entries) {
        format_error(err, errlen, "%s: out of memory", f->path);
        return NULL;
    }
    if (check_header(f, cfg, entries, n, err, errlen)) {
        free(entries);
        return NULL;
    }
    return entries;
}

static void close_checked(st_file *f, entry *entries)
{
    st_close(f);
    free(entries);
    free(f->path);
}

sasp_checkpoint *sasp_checkpoint_load_as(const char *dir, int weights, char *err, size_t errlen)
{
    sasp_config cfg;
    st_file f;
    int n, viewed = 0;
    entry *entries = open_checked(dir, &cfg, &f, &n, err, errlen);
    if (!entries) {
        close_checked(&f, entries);
        return NULL;
    }
    sasp_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck || !(ck->tensors = calloc((size_t)(n ? n : 1), sizeof *ck->tensors))) {
        format_error(err, errlen, "%s: out of memory", f.path);
        goto fail;
    }
    ck->config = cfg;
    if (make_tensors(ck, &f, entries, n, weights, &viewed, err, errlen)) goto fail;
    if (viewed) { /* the checkpoint keeps the mapping its matrices view */
        ck->map = f.map, ck->map_size = f.map_size;
        f.map = MAP_FAILED;
    }
    close_checked(&f, entries);
    return ck;
fail:
    sasp_checkpoint_free(ck);
    close_checked(&f, entries);
    return NULL;
}

int sasp_checkpoint_matrix_type(const char *dir, int weights, char *err, size_t errlen)
{
    sasp_config cfg;
    st_file f;
    int n, type = -1;
    entry *entries = open_checked(dir, &cfg, &f, &n, err, errlen);
    for (int i = 0; entries && i < n && type < 0; i++)
        if (!entries[i].is_scales && sasp_tensor_is_matrix(entries[i].kind) && sasp_tensor_per_layer(entries[i].kind))
            type = (int)type_for(&entries[i], weights);
    if (entries && type < 0) format_error(err, errlen, "%s: no layer matrix", f.path);
    close_checked(&f, entries);
    return type;
}

/* ---- writing (sasp-quantize) ---- */

/* One tensor of the file being written: its header entry and where its bytes come from. */
typedef struct {
    const void *bytes;
    size_t len;
    uint64_t begin;
} out_tensor;

static int add_entry(json_t *h, const char *name, const char *dtype, long s0, long s1, int ndim, out_tensor *o,
                     const void *bytes, size_t len, uint64_t *at)
{
    json_t *shape = json_array();
    json_array_append_new(shape, json_integer(s0));
    if (ndim > 1) json_array_append_new(shape, json_integer(s1));
    *o = (out_tensor){bytes, len, *at};
    json_t *offs = json_pack("[II]", (json_int_t)*at, (json_int_t)(*at + len));
    *at = (*at + len + 63) & ~(uint64_t)63; /* every tensor 64-byte aligned */
    return json_object_set_new(h, name, json_pack("{s:s, s:o, s:o}", "dtype", dtype, "shape", shape, "data_offsets", offs));
}

/* The header of ck's tensors (o: their bytes, at most 2 per tensor; *n of them). */
static json_t *save_header(const sasp_checkpoint *ck, out_tensor *o, int *n)
{
    json_t *h = json_object();
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    uint64_t at = 0;
    int r = 0;
    *n = 0;
    for (int i = 0; i < ck->n_tensors; i++) {
        const sasp_tensor *t = &ck->tensors[i];
        const sasp_weights *w = &t->w;
        long s0 = t->shape[0], s1 = t->ndim > 1 ? t->shape[1] : 0;
        if (!t->data && !w->data) { /* taken (sasp_checkpoint_take): nothing to write */
            json_decref(h);
            return NULL;
        }
        if (!w->data || w->type == SASP_WT_F32) {
            r |= add_entry(h, t->name, "F32", s0, s1, t->ndim, &o[(*n)++], t->data, t->numel * 4, &at);
        } else if (w->type == SASP_WT_BF16) {
            r |= add_entry(h, t->name, "BF16", s0, s1, 2, &o[(*n)++], w->data, t->numel * 2, &at);
        } else {
            char sname[80];
            snprintf(sname, sizeof sname, "%s.scales", t->name);
            long nb = sasp_q8_0_blocks(w->k);
            r |= add_entry(h, t->name, "I8", s0, s1, 2, &o[(*n)++], w->data, t->numel, &at);
            r |= add_entry(h, sname, "F16", s0, nb, 2, &o[(*n)++], w->scales, (size_t)s0 * nb * 2, &at);
        }
    }
    if (r) json_decref(h);
    return r ? NULL : h;
}

/* The 8-byte length, the header padded with spaces so that the data starts 64-byte aligned, the data. */
static int write_file(FILE *fp, const char *text, const out_tensor *o, int n)
{
    size_t hlen = strlen(text), padded = ((8 + hlen + 63) & ~(size_t)63) - 8;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(text, 1, hlen, fp) == hlen;
    for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    uint64_t at = 0;
    static const char zeros[64];
    for (int i = 0; ok && i < n; i++) {
        ok = fwrite(zeros, 1, (size_t)(o[i].begin - at), fp) == o[i].begin - at &&
             fwrite(o[i].bytes, 1, o[i].len, fp) == o[i].len;
        at = o[i].begin + o[i].len;
    }
    return ok ? 0 : -1;
}

int sasp_checkpoint_save(const sasp_checkpoint *ck, const char *path, char *err, size_t errlen)
{
    out_tensor *o = malloc(sizeof *o * 2 * (size_t)(ck->n_tensors + 1));
    int n = 0, rc = -1;
    json_t *h = o ? save_header(ck, o, &n) : NULL;
    char *text = h ? json_dumps(h, JSON_COMPACT) : NULL;
    FILE *fp = NULL;
    if (!text) format_error(err, errlen, "%s: out of memory, or a tensor was taken from the checkpoint", path);
    else if (!(fp = fopen(path, "wb"))) format_error(err, errlen, "%s: cannot create: %s", path, strerror(errno));
    else if (write_file(fp, text, o, n) || fflush(fp) || ferror(fp)) format_error(err, errlen, "%s: write failed: %s", path, strerror(errno));
    else rc = 0;
    if (fp && fclose(fp) && rc == 0) {
        format_error(err, errlen, "%s: write failed: %s", path, strerror(errno));
        rc = -1;
    }
    free(text), json_decref(h), free(o);
    return rc;
}

const sasp_tensor *sasp_checkpoint_find(const sasp_checkpoint *ck, const char *name)
{
    for (int i = 0; i < ck->n_tensors; i++)
        if (ck->tensors[i].name && strcmp(ck->tensors[i].name, name) == 0) return &ck->tensors[i];
    return NULL;
}

float *sasp_checkpoint_take(sasp_checkpoint *ck, const char *name)
{
    for (int i = 0; i < ck->n_tensors; i++)
        if (ck->tensors[i].name && strcmp(ck->tensors[i].name, name) == 0) {
            float *d = ck->tensors[i].data;
            ck->tensors[i].data = NULL;
            return d;
        }
    return NULL;
}

const sasp_tensor *sasp_checkpoint_find_kind(const sasp_checkpoint *ck, sasp_tensor_kind kind, int layer)
{
    char name[64];
    tensor_name(name, sizeof name, kind, layer);
    return sasp_checkpoint_find(ck, name);
}

float *sasp_checkpoint_take_kind(sasp_checkpoint *ck, sasp_tensor_kind kind, int layer)
{
    char name[64];
    tensor_name(name, sizeof name, kind, layer);
    return sasp_checkpoint_take(ck, name);
}

const sasp_weights *sasp_checkpoint_weights_kind(const sasp_checkpoint *ck, sasp_tensor_kind kind, int layer)
{
    const sasp_tensor *t = sasp_checkpoint_find_kind(ck, kind, layer);
    return t && sasp_tensor_is_matrix(kind) && t->w.data ? &t->w : NULL;
}

void sasp_checkpoint_free(sasp_checkpoint *ck)
{
    if (!ck) return;
    free_tensors(ck->tensors, ck->n_tensors);
    if (ck->map) munmap(ck->map, ck->map_size);
    free(ck);
}
