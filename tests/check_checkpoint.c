/* check_checkpoint.c: the checkpoint loader against valid and corrupt model directories.
 *
 * Every checkpoint here is written by the test itself (tests/st_writer.c): a valid tiny model, then
 * one corruption per kind the format spec lists (and a few more), each of which must fail with its
 * own message naming the file and the tensor or key, and never crash. F16 and BF16 must load
 * exactly; BF16 matrices stay bf16, views of the file. q8_0 (an I8 matrix and its F16 ".scales") must
 * survive a save and load round trip, and each of its corruptions be refused by name. The tensor schema must agree with the writer's own spelling of the format. A last test
 * flips random header bytes and only asks that the loader survives. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/checkpoint.h"
#include "model/model.h"
#include "st_writer.h"

#define V 11
#define D 8
#define L 2
#define H 2
#define FF 12
#define S 16

static char *tmp;      /* this test's directory */
static json_t *cfg;    /* a valid config */
static tw_model model; /* a valid model for cfg */
static char err[1024];

static void setup(void)
{
    tmp = tw_tempdir();
    ck_assert_ptr_nonnull(tmp);
    cfg = tw_config("sasp", "rmsnorm", "rope", "relu", V, D, L, H, FF, S, 1);
    memset(&model, 0, sizeof model);
    ck_assert_int_eq(tw_random_model(&model, cfg, NULL, 42), 0);
}

static void teardown(void)
{
    tw_free(&model);
    json_decref(cfg);
    tw_rmtree(tmp);
    free(tmp);
}

static void write_config(json_t *c)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", tmp);
    ck_assert_int_eq(json_dump_file(c, path, JSON_INDENT(2)), 0);
}

static char *st_path(void)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    return path;
}

/* Load tmp, expect failure, and check that the message holds every given substring. */
static void expect_error(const char *a, const char *b, const char *c)
{
    err[0] = '\0';
    sasp_checkpoint *ck = sasp_checkpoint_load(tmp, err, sizeof err);
    if (ck) sasp_checkpoint_free(ck);
    ck_assert_msg(ck == NULL, "a corrupt checkpoint loaded (expected an error with \"%s\")", a);
    printf("  rejected: %s\n", err);
    const char *want[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (want[i]) ck_assert_msg(strstr(err, want[i]), "error \"%s\" lacks \"%s\"", err, want[i]);
}

/* Write the valid config and a safetensors file whose header the caller may have edited. */
static void write_with_header(json_t *h, const unsigned char *data, size_t len)
{
    write_config(cfg);
    ck_assert_int_eq(tw_write_safetensors(st_path(), h, data, len, -1), 0);
}

START_TEST(valid_f32_loads_exactly)
{
    ck_assert_int_eq(tw_write_model(tmp, cfg, &model, "F32"), 0);
    sasp_checkpoint *ck = sasp_checkpoint_load(tmp, err, sizeof err);
    ck_assert_msg(ck != NULL, "%s", err);
    ck_assert_int_eq(ck->n_tensors, model.n);
    ck_assert_int_eq(ck->config.arch, SASP_ARCH_SASP);
    ck_assert_int_eq(ck->config.vocab_size, V);
    ck_assert_int_eq(ck->config.d_model, D);
    ck_assert_int_eq(ck->config.n_layers, L);
    ck_assert_int_eq(ck->config.n_heads, H);
    ck_assert_int_eq(ck->config.d_ff, FF);
    ck_assert_int_eq(ck->config.max_seq_len, S);
    ck_assert_int_eq(ck->config.norm, SASP_NORM_RMS);
    ck_assert_int_eq(ck->config.position, SASP_POS_ROPE);
    ck_assert(ck->config.tie_embeddings);
    for (int i = 0; i < model.n; i++) {
        const sasp_tensor *t = sasp_checkpoint_find(ck, model.t[i].name);
        ck_assert_msg(t != NULL, "tensor %s not found", model.t[i].name);
        ck_assert_int_eq(t->numel, model.t[i].numel);
        ck_assert_int_eq(t->ndim, model.t[i].ndim);
        ck_assert_int_eq(((uintptr_t)t->data) % 64, 0);
        ck_assert_int_eq(memcmp(t->data, model.t[i].data, t->numel * sizeof(float)), 0);
    }
    ck_assert_ptr_null(sasp_checkpoint_find(ck, "layers.0.attn.wv.weight"));
    float *taken = sasp_checkpoint_take(ck, "tok_emb.weight");
    ck_assert_ptr_nonnull(taken);
    ck_assert_ptr_null(sasp_checkpoint_take(ck, "tok_emb.weight"));
    free(taken);
    sasp_checkpoint_free(ck);
}
END_TEST

START_TEST(every_architecture_and_option_loads)
{
    static const char *archs[] = {"sasp", "preln"}, *norms[] = {"rmsnorm", "layernorm", "none"},
                      *poss[] = {"rope", "learned"};
    for (int a = 0; a < 2; a++)
        for (int n = 0; n < 3; n++)
            for (int p = 0; p < 2; p++)
                for (int tie = 0; tie < 2; tie++) {
                    json_t *c = tw_config(archs[a], norms[n], poss[p], "gelu", V, D, L, H, FF, S, tie);
                    tw_model m = {0};
                    tw_options opt = {.qk_bias = tie, .wv_mask = 1, .wo_mask = 2, .skip_gain = !tie};
                    ck_assert_int_eq(tw_random_model(&m, c, &opt, 7), 0);
                    ck_assert_int_eq(tw_write_model(tmp, c, &m, "F32"), 0);
                    sasp_checkpoint *ck = sasp_checkpoint_load(tmp, err, sizeof err);
                    ck_assert_msg(ck != NULL, "%s/%s/%s tie %d: %s", archs[a], norms[n], poss[p], tie, err);
                    ck_assert_int_eq(ck->n_tensors, m.n);
                    sasp_checkpoint_free(ck);
                    tw_free(&m);
                    json_decref(c);
                }
}
END_TEST

/* The spec of the tensor named NAME in a model of config c, or 0 when the schema has no such name. */
static int spec_named(const sasp_config *c, const char *name, sasp_tensor_spec *out)
{
    for (int kind = 0; kind < SASP_N_TENSOR_KINDS; kind++)
        for (int l = 0; l < (sasp_tensor_per_layer(kind) ? c->n_layers : 1); l++) {
            sasp_tensor_spec_of(c, kind, l, out);
            if (strcmp(out->name, name) == 0) return 1;
        }
    return 0;
}

/* The schema (checkpoint.c) against the writer, which spells the format out on its own: for every
 * architecture and option, a model without optional tensors holds exactly the required ones, and every
 * tensor of a model with all of them is one the schema allows, with its shape. */
START_TEST(tensor_schema_agrees_with_the_writer)
{
    static const char *archs[] = {"sasp", "preln"}, *norms[] = {"rmsnorm", "layernorm", "none"},
                      *poss[] = {"rope", "learned"};
    for (int a = 0; a < 2; a++)
        for (int n = 0; n < 3; n++)
            for (int p = 0; p < 2; p++)
                for (int tie = 0; tie < 2; tie++) {
                    json_t *c = tw_config(archs[a], norms[n], poss[p], "relu", V, D, L, H, FF, S, tie);
                    write_config(c);
                    sasp_config sc;
                    ck_assert_msg(sasp_config_load(tmp, &sc, err, sizeof err) == 0, "%s", err);
                    tw_model bare = {0}, full = {0};
                    tw_options all = {.qk_bias = 1, .wv_mask = ~0, .wo_mask = ~0, .skip_gain = 1};
                    ck_assert_int_eq(tw_random_model(&bare, c, NULL, 1), 0);
                    ck_assert_int_eq(tw_random_model(&full, c, &all, 1), 0);
                    int required = 0;
                    for (int kind = 0; kind < SASP_N_TENSOR_KINDS; kind++)
                        for (int l = 0; l < (sasp_tensor_per_layer(kind) ? L : 1); l++) {
                            sasp_tensor_spec spec;
                            required += sasp_tensor_spec_of(&sc, kind, l, &spec) == SASP_TENSOR_REQUIRED;
                        }
                    ck_assert_int_eq(required, bare.n);
                    sasp_tensor_spec spec;
                    for (int i = 0; i < bare.n; i++) {
                        ck_assert_msg(spec_named(&sc, bare.t[i].name, &spec), "%s: not in the schema", bare.t[i].name);
                        ck_assert_int_eq(spec.presence, SASP_TENSOR_REQUIRED);
                    }
                    for (int i = 0; i < full.n; i++) {
                        const tw_tensor *t = &full.t[i];
                        ck_assert_msg(spec_named(&sc, t->name, &spec) && spec.presence != SASP_TENSOR_ABSENT,
                                      "%s/%s/%s: %s is not allowed", archs[a], norms[n], poss[p], t->name);
                        ck_assert_int_eq(spec.ndim, t->ndim);
                        for (int k = 0; k < t->ndim; k++) ck_assert_int_eq(spec.shape[k], t->shape[k]);
                    }
                    tw_free(&bare), tw_free(&full);
                    json_decref(c);
                }
}
END_TEST

START_TEST(trailing_bytes_after_data_are_fine)
{
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    unsigned char *more = malloc(len + 100);
    memcpy(more, data, len);
    memset(more + len, 0xAB, 100);
    write_with_header(h, more, len + 100);
    sasp_checkpoint *ck = sasp_checkpoint_load(tmp, err, sizeof err);
    ck_assert_msg(ck != NULL, "%s", err);
    sasp_checkpoint_free(ck);
    json_decref(h), free(data), free(more);
}
END_TEST

/* Half-precision values decoded by formula, independently of the loader's bit manipulation. */
static double f16_value(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e == 0x1f ? INFINITY : e == 0 ? ldexp(m, -24)
                                             : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static double bf16_value(uint16_t b)
{
    int s = b >> 15, e = (b >> 7) & 0xff, m = b & 0x7f;
    double v = e == 0xff ? INFINITY : e == 0 ? ldexp(m, -133)
                                             : ldexp(128 + m, e - 134);
    return s ? -v : v;
}

/* Fill every tensor with random finite 16-bit patterns (plus the edge cases), write them with dtype
 * and check each loaded float equals the formula's value exactly. */
static void check_half_exact(const char *dtype)
{
    int f16 = strcmp(dtype, "F16") == 0;
    uint64_t rs = 1234;
    static const uint16_t edge16[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x3c00};
    static const uint16_t edgeb[] = {0x0000, 0x8000, 0x0001, 0x007f, 0x0080, 0x7f7f, 0xff7f, 0x7f80, 0xff80, 0x3f80};
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, dtype, &data, &len);
    /* Overwrite the data section with chosen bit patterns; the header stays valid. */
    uint16_t *bits = malloc(len);
    for (size_t i = 0; i < len / 2; i++) {
        uint16_t b;
        if (i < 10) b = f16 ? edge16[i] : edgeb[i];
        else do
                b = (uint16_t)tw_rand_u64(&rs);
            while (f16 ? ((b & 0x7c00) == 0x7c00) : ((b & 0x7f80) == 0x7f80));
        bits[i] = b;
        data[2 * i] = (unsigned char)b;
        data[2 * i + 1] = (unsigned char)(b >> 8);
    }
    write_with_header(h, data, len);
    /* as float32 (BF16 matrices load as bf16 otherwise: bf16_matrices_stay_bf16) */
    sasp_checkpoint *ck = sasp_checkpoint_load_as(tmp, SASP_WT_F32, err, sizeof err);
    ck_assert_msg(ck != NULL, "%s", err);
    json_t *jv;
    const char *name;
    size_t checked = 0;
    json_object_foreach (h, name, jv) {
        if (strcmp(name, "__metadata__") == 0) continue;
        const sasp_tensor *t = sasp_checkpoint_find(ck, name);
        ck_assert_ptr_nonnull(t);
        size_t begin = (size_t)json_integer_value(json_array_get(json_object_get(jv, "data_offsets"), 0)) / 2;
        for (size_t j = 0; j < t->numel; j++) {
            uint16_t b = bits[begin + j];
            double want = f16 ? f16_value(b) : bf16_value(b);
            ck_assert_msg((double)t->data[j] == want && !signbit(t->data[j]) == !signbit(want),
                          "%s %s[%zu]: bits 0x%04x loaded as %.9g, want %.9g", dtype, name, j, b,
                          (double)t->data[j], want);
            checked++;
        }
    }
    ck_assert_int_eq(checked, len / 2);
    printf("  %s: %zu values loaded exactly\n", dtype, checked);
    sasp_checkpoint_free(ck);
    json_decref(h), free(data), free(bits);
}

START_TEST(f16_loads_exactly) { check_half_exact("F16"); }
END_TEST

START_TEST(bf16_loads_exactly) { check_half_exact("BF16"); }
END_TEST

/* A BF16 checkpoint's matrices are used as stored, the vectors float32: the test writer's file (whose
 * tensors may lie at odd addresses: then copied), then that checkpoint saved (tensors aligned) and
 * loaded again, its matrices views of the file's bits (which the checkpoint keeps mapped). */
static void check_bf16_load(int saved);
START_TEST(bf16_matrices_stay_bf16)
{
    ck_assert_int_eq(tw_write_model(tmp, cfg, &model, "BF16"), 0);
    check_bf16_load(0);
    sasp_checkpoint *ck = sasp_checkpoint_load(tmp, err, sizeof err);
    ck_assert_msg(ck && sasp_checkpoint_save(ck, st_path(), err, sizeof err) == 0, "%s", err);
    sasp_checkpoint_free(ck);
    check_bf16_load(1);
}
END_TEST

static void check_bf16_load(int saved)
{
    sasp_checkpoint *ck = sasp_checkpoint_load(tmp, err, sizeof err);
    ck_assert_msg(ck != NULL, "%s", err);
    if (saved) ck_assert_ptr_nonnull(ck->map);
    int matrices = 0;
    for (int i = 0; i < model.n; i++) {
        const sasp_tensor *t = sasp_checkpoint_find(ck, model.t[i].name);
        ck_assert_ptr_nonnull(t);
        if (t->ndim == 2) {
            ck_assert_int_eq(t->w.type, SASP_WT_BF16);
            ck_assert_ptr_null(t->data);
            ck_assert_int_eq(t->w.m * t->w.k, (int)t->numel);
            const unsigned char *lo = ck->map, *p = t->w.data;
            if (saved) ck_assert(p >= lo && p + 2 * t->numel <= lo + ck->map_size); /* in the mapping */
            for (size_t j = 0; j < t->numel; j++)
                ck_assert_int_eq(((const uint16_t *)t->w.data)[j], tw_f32_to_bf16(model.t[i].data[j]));
            matrices++;
        } else {
            ck_assert_ptr_nonnull(t->data);
            for (size_t j = 0; j < t->numel; j++)
                ck_assert(t->data[j] == sasp_bf16_to_f32(tw_f32_to_bf16(model.t[i].data[j])));
        }
    }
    ck_assert_int_eq(matrices, 1 + 4 * L); /* tok_emb; wq, wk, w1, w2 per layer */
    sasp_checkpoint_free(ck);
}

/* sasp_checkpoint_matrix_type, from the header alone, names the type a full load gives the layers'
 * matrices: files stored as F32, BF16 and q8_0, each asked for as stored, as each type, and at most
 * each type; a file cut short names nothing. */
START_TEST(matrix_type_from_header_matches_load)
{
    const int asks[] = {SASP_WEIGHTS_AS_STORED, SASP_WT_F32, SASP_WT_BF16, SASP_WT_Q8_0,
                        SASP_WEIGHTS_AT_MOST(SASP_WT_F32), SASP_WEIGHTS_AT_MOST(SASP_WT_BF16),
                        SASP_WEIGHTS_AT_MOST(SASP_WT_Q8_0)};
    for (int stored = 0; stored < 3; stored++) {
        ck_assert_int_eq(tw_write_model(tmp, cfg, &model, stored == 1 ? "BF16" : "F32"), 0);
        if (stored == 2) { /* q8_0, as sasp-quantize writes it */
            sasp_checkpoint *q = sasp_checkpoint_load_as(tmp, SASP_WT_Q8_0, err, sizeof err);
            ck_assert_msg(q && sasp_checkpoint_save(q, st_path(), err, sizeof err) == 0, "%s", err);
            sasp_checkpoint_free(q);
        }
        for (size_t a = 0; a < sizeof asks / sizeof asks[0]; a++) {
            int type = sasp_checkpoint_matrix_type(tmp, asks[a], err, sizeof err);
            sasp_checkpoint *ck = sasp_checkpoint_load_as(tmp, asks[a], err, sizeof err);
            ck_assert_msg(ck != NULL, "%s", err);
            const sasp_tensor *w1 = sasp_checkpoint_find_kind(ck, SASP_T_W1, 0);
            ck_assert_msg(type == (int)w1->w.type, "stored %d, asked %d: header says %d, load gives %d", stored,
                          asks[a], type, (int)w1->w.type);
            sasp_checkpoint_free(ck);
        }
    }
    FILE *f = fopen(st_path(), "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(ftruncate(fileno(f), 100), 0);
    fclose(f);
    ck_assert_int_eq(sasp_checkpoint_matrix_type(tmp, SASP_WEIGHTS_AS_STORED, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "model.safetensors"));
}
END_TEST

/* ---- q8_0 ---- */

/* The checkpoint in tmp loaded as q8_0 and saved (sasp_checkpoint_save, what sasp-quantize writes);
 * its header and data section read back. */
static json_t *q8_0_file(unsigned char **data, size_t *len)
{
    ck_assert_int_eq(tw_write_model(tmp, cfg, &model, "F32"), 0);
    sasp_checkpoint *ck = sasp_checkpoint_load_as(tmp, SASP_WT_Q8_0, err, sizeof err);
    ck_assert_msg(ck != NULL, "%s", err);
    ck_assert_msg(sasp_checkpoint_save(ck, st_path(), err, sizeof err) == 0, "%s", err);
    sasp_checkpoint_free(ck);
    FILE *f = fopen(st_path(), "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char len8[8];
    ck_assert_int_eq(fread(len8, 1, 8, f), 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | len8[i];
    ck_assert_int_eq((8 + hl) % 64, 0); /* the data 64-byte aligned */
    char *text = malloc(hl + 1);
    ck_assert_int_eq(fread(text, 1, hl, f), hl);
    text[hl] = 0;
    long at = ftell(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)(ftell(f) - at);
    fseek(f, at, SEEK_SET);
    *data = malloc(*len + 1);
    ck_assert_int_eq(fread(*data, 1, *len, f), *len);
    fclose(f);
    json_t *h = json_loads(text, 0, NULL);
    free(text);
    ck_assert_ptr_nonnull(h);
    return h;
}

/* q8_0 round trip: saved, loaded as stored (views of the I8 and F16 tensors), each weight within half
 * a step (its block's scale) of the f32 one; as f32 again, the dequantized values. */
START_TEST(q8_0_round_trip)
{
    unsigned char *data;
    size_t len;
    json_t *h = q8_0_file(&data, &len);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(h, "layers.0.mlp.w1.weight"), "dtype")), "I8");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(h, "layers.0.mlp.w1.weight.scales"), "dtype")), "F16");
    sasp_checkpoint *ck = sasp_checkpoint_load(tmp, err, sizeof err), *as_f32 = sasp_checkpoint_load_as(tmp, SASP_WT_F32, err, sizeof err);
    ck_assert_msg(ck && as_f32, "%s", err);
    ck_assert_int_eq(ck->n_tensors, model.n); /* the scales are not tensors of their own */
    for (int i = 0; i < model.n; i++) {
        const sasp_tensor *t = sasp_checkpoint_find(ck, model.t[i].name), *f = sasp_checkpoint_find(as_f32, model.t[i].name);
        ck_assert(t && f && f->data);
        if (t->ndim != 2) {
            ck_assert_int_eq(memcmp(t->data, model.t[i].data, t->numel * sizeof(float)), 0);
            continue;
        }
        ck_assert_int_eq(t->w.type, SASP_WT_Q8_0);
        const unsigned char *lo = ck->map, *p = t->w.data;
        ck_assert(p >= lo && p + t->numel <= lo + ck->map_size);
        int k = t->w.k, nb = sasp_q8_0_blocks(k);
        for (size_t j = 0; j < t->numel; j++) {
            float d = sasp_f16_to_f32(t->w.scales[(j / k) * nb + (j % k) / 32]);
            float q = (float)((const int8_t *)t->w.data)[j];
            ck_assert(f->data[j] == q * d);
            ck_assert_msg(fabsf(q * d - model.t[i].data[j]) <= 0.5f * d * 1.001f + fabsf(model.t[i].data[j]) * 1e-3f,
                          "%s[%zu]: %g -> %g", t->name, j, model.t[i].data[j], q * d);
        }
    }
    sasp_checkpoint_free(ck), sasp_checkpoint_free(as_f32);
    json_decref(h), free(data);
}
END_TEST

/* The q8_0 file with one change to its header (edit) or data, then the error expected. */
static void q8_0_corrupt(void (*edit)(json_t *h, unsigned char *data), const char *a, const char *b)
{
    unsigned char *data;
    size_t len;
    json_t *h = q8_0_file(&data, &len);
    edit(h, data);
    write_with_header(h, data, len);
    expect_error(a, b, NULL);
    json_decref(h), free(data);
}
static size_t begin_of(json_t *h, const char *name)
{
    return (size_t)json_integer_value(json_array_get(json_object_get(json_object_get(h, name), "data_offsets"), 0));
}
static void drop_scales(json_t *h, unsigned char *d) { (void)d, json_object_del(h, "layers.1.attn.wk.weight.scales"); }
static void scales_f32(json_t *h, unsigned char *d)
{
    (void)d;
    json_t *e = json_object_get(h, "layers.0.attn.wq.weight.scales");
    json_object_set_new(e, "dtype", json_string("BF16"));
}
static void scales_shape(json_t *h, unsigned char *d)
{
    (void)d;
    json_t *e = json_object_get(h, "layers.0.mlp.w2.weight.scales"); /* [8, 1]: claim [4, 2] */
    json_object_set_new(e, "shape", json_pack("[ii]", 4, 2));
}
static void scales_of_vector(json_t *h, unsigned char *d)
{
    (void)d;
    json_object_set(h, "layers.0.norm.weight.scales", json_object_get(h, "layers.0.mlp.w2.weight.scales"));
}
static void vector_i8(json_t *h, unsigned char *d)
{
    (void)d; /* norm_f.weight [8] as I8: the first 8 of its bytes */
    json_t *e = json_object_get(h, "norm_f.weight");
    size_t b = begin_of(h, "norm_f.weight");
    json_object_set_new(e, "dtype", json_string("I8"));
    json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)b, (json_int_t)b + D));
}
static void value_minus_128(json_t *h, unsigned char *d) { d[begin_of(h, "layers.1.mlp.w1.weight") + 13] = 0x80; }
static void scale_inf(json_t *h, unsigned char *d)
{
    size_t b = begin_of(h, "layers.0.attn.wk.weight.scales") + 2 * 3;
    d[b] = 0x00, d[b + 1] = 0x7c; /* +inf */
}
static void unknown_scales(json_t *h, unsigned char *d)
{
    (void)d;
    json_object_set(h, "layers.9.attn.wk.weight.scales", json_object_get(h, "layers.0.attn.wk.weight.scales"));
}

START_TEST(q8_0_corrupt_is_refused)
{
    q8_0_corrupt(drop_scales, "layers.1.attn.wk.weight", "without its scales tensor");
    q8_0_corrupt(scales_f32, "layers.0.attn.wq.weight.scales", "are F16 [8, 1]");
    q8_0_corrupt(scales_shape, "layers.0.mlp.w2.weight.scales", "[4, 2], but the q8_0 scales of a 8 x 12 matrix");
    q8_0_corrupt(scales_of_vector, "layers.0.norm.weight.scales", "not I8");
    q8_0_corrupt(vector_i8, "norm_f.weight", "only allowed for the weight matrices");
    q8_0_corrupt(value_minus_128, "layers.1.mlp.w1.weight", "value -128 at [1, 5]");
    q8_0_corrupt(scale_inf, "layers.0.attn.wk.weight.scales", "scale 3 is not finite");
    q8_0_corrupt(unknown_scales, "layers.9.attn.wk.weight.scales", "unknown tensor name");
}
END_TEST

/* Logits of tokens [0, n) of a fixed sequence, one step from an empty cache. */
static float *logits_of(sasp_model *m, int n)
{
    int nv = m->cfg.vocab_size, *tok = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) tok[i] = (i * 7 + 3) % nv;
    float *lg = malloc(sizeof(float) * (size_t)n * nv);
    sasp_kv *kv = sasp_kv_new(m, 0);
    sasp_step st = {.kv = kv, .tokens = tok, .n_tokens = n, .n_logits = n, .logits = lg};
    ck_assert_msg(sasp_forward(m, &st, 1, err, sizeof err) == 0, "%s", err);
    sasp_kv_free(kv), free(tok);
    return lg;
}

static double rms_rel(const float *a, const float *ref, size_t n)
{
    double e = 0, r = 0;
    for (size_t i = 0; i < n; i++) e += (a[i] - (double)ref[i]) * (a[i] - (double)ref[i]), r += (double)ref[i] * ref[i];
    return sqrt(e / r);
}

/* A model quantized with sasp_checkpoint_save (sasp-quantize) and loaded as stored gives the logits of
 * the same conversion done at load (--weights), bit for bit, and logits close to f32's, for steps of
 * 20 and 30 rows (one row group of the typed products' copies of X, and more than one; q8_0 on quantized
 * activations in both). The bounds are about 3x the rms errors measured
 * (printed): bf16 rounds each weight by up to 2^-9 relative (rms about 2^-10), q8_0 by up to half of
 * amax / 127 per block of 32 (rms about 0.2% of amax), plus its activations rounded the same way. */
START_TEST(typed_weights_give_logits_close_to_f32)
{
    json_t *c = tw_config("sasp", "rmsnorm", "rope", "relu", 64, 64, 2, 2, 128, 32, 1);
    tw_model big = {0};
    ck_assert_int_eq(tw_random_model(&big, c, NULL, 99), 0);
    ck_assert_int_eq(tw_write_model(tmp, c, &big, "F32"), 0);
    sasp_model *f32 = sasp_model_load(tmp, 1, err, sizeof err);
    ck_assert_msg(f32 != NULL, "%s", err);
    static const double bound[2] = {1e-2, 4e-2}; /* bf16, q8_0 */
    for (int t = SASP_WT_BF16; t <= SASP_WT_Q8_0; t++) {
        sasp_model *conv = sasp_model_load_as(tmp, 1, t, err, sizeof err);
        ck_assert_msg(conv != NULL, "%s", err);
        char qdir[2048], path[4096];
        snprintf(qdir, sizeof qdir, "%s/q", tmp);
        mkdir(qdir, 0700);
        snprintf(path, sizeof path, "%s/model.safetensors", qdir);
        sasp_checkpoint *q = sasp_checkpoint_load_as(tmp, t, err, sizeof err); /* what sasp-quantize does */
        ck_assert_msg(q && sasp_checkpoint_save(q, path, err, sizeof err) == 0, "%s", err);
        sasp_checkpoint_free(q);
        snprintf(path, sizeof path, "%s/config.json", qdir);
        ck_assert_int_eq(json_dump_file(c, path, 0), 0);
        sasp_model *native = sasp_model_load(qdir, 1, err, sizeof err);
        ck_assert_msg(native != NULL, "%s", err);
        ck_assert_str_eq(sasp_model_describe(native).weights, sasp_wtype_name(t));
        for (int n = 20; n <= 30; n += 10) {
            float *a = logits_of(f32, n), *b = logits_of(conv, n), *q = logits_of(native, n);
            size_t len = (size_t)n * 64;
            ck_assert_int_eq(memcmp(b, q, len * sizeof(float)), 0);
            double e = rms_rel(b, a, len);
            printf("  %s, %d rows: rms logit error / rms logit = %.3g (bound %.3g)\n", sasp_wtype_name(t), n, e, bound[t - 1]);
            ck_assert(e > 0 && e < bound[t - 1]);
            free(a), free(b), free(q);
        }
        sasp_model_free(native), sasp_model_free(conv);
    }
    sasp_model_free(f32);
    tw_free(&big);
    json_decref(c);
}
END_TEST

/* The type each matrix is loaded in: SASP_WEIGHTS_AT_MOST(t) converts to t unless the file stores a
 * narrower type; sasp_weights_parse reads --weights; SASP_WEIGHTS_FAST is the active table's type. */
static sasp_wtype matrices_type(int weights)
{
    sasp_checkpoint *ck = sasp_checkpoint_load_as(tmp, weights, err, sizeof err);
    ck_assert_msg(ck != NULL, "%s", err);
    int type = -1;
    for (int i = 0; i < ck->n_tensors; i++)
        if (ck->tensors[i].ndim == 2) {
            ck_assert(type < 0 || type == (int)ck->tensors[i].w.type); /* every matrix alike */
            type = (int)ck->tensors[i].w.type;
        }
    sasp_checkpoint_free(ck);
    ck_assert_int_ge(type, 0);
    return (sasp_wtype)type;
}

START_TEST(weights_at_most_a_type)
{
    static const char *const dtypes[] = {"F32", "F16", "BF16"};
    static const sasp_wtype as_stored[] = {SASP_WT_F32, SASP_WT_F32, SASP_WT_BF16};
    for (int d = 0; d < 3; d++) {
        ck_assert_int_eq(tw_write_model(tmp, cfg, &model, dtypes[d]), 0);
        ck_assert_int_eq(matrices_type(SASP_WEIGHTS_AS_STORED), as_stored[d]);
        for (sasp_wtype t = SASP_WT_F32; t <= SASP_WT_Q8_0; t++) {
            ck_assert_int_eq(matrices_type((int)t), t);
            sasp_wtype want = as_stored[d] > t ? as_stored[d] : t; /* the narrower */
            ck_assert_int_eq(matrices_type(SASP_WEIGHTS_AT_MOST(t)), want);
        }
    }
    /* a q8_0 file stays q8_0 under any cap; asked for by name it widens */
    ck_assert_int_eq(tw_write_model(tmp, cfg, &model, "F32"), 0);
    sasp_checkpoint *q = sasp_checkpoint_load_as(tmp, SASP_WT_Q8_0, err, sizeof err);
    ck_assert_msg(q && sasp_checkpoint_save(q, st_path(), err, sizeof err) == 0, "%s", err);
    sasp_checkpoint_free(q);
    for (sasp_wtype t = SASP_WT_F32; t <= SASP_WT_Q8_0; t++) ck_assert_int_eq(matrices_type(SASP_WEIGHTS_AT_MOST(t)), SASP_WT_Q8_0);
    ck_assert_int_eq(matrices_type(SASP_WT_BF16), SASP_WT_BF16);
    /* --weights */
    ck_assert_int_eq(sasp_weights_parse("auto"), SASP_WEIGHTS_FAST);
    ck_assert_int_eq(sasp_weights_parse("stored"), SASP_WEIGHTS_AS_STORED);
    ck_assert_int_eq(sasp_weights_parse("bf16"), SASP_WT_BF16);
    ck_assert_int_eq(sasp_weights_parse("q8_0"), SASP_WT_Q8_0);
    ck_assert_int_eq(sasp_weights_parse("q4_0"), SASP_WEIGHTS_UNKNOWN);
    ck_assert_int_eq(sasp_weights_parse(NULL), SASP_WEIGHTS_UNKNOWN);
    sasp_model *m = sasp_model_load_as(tmp, 1, SASP_WEIGHTS_FAST, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_str_eq(sasp_model_describe(m).weights, "q8_0"); /* the file's q8_0, whatever the table's type */
    sasp_model_free(m);
    ck_assert_int_eq(tw_write_model(tmp, cfg, &model, "F32"), 0);
    m = sasp_model_load_as(tmp, 1, SASP_WEIGHTS_FAST, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_str_eq(sasp_model_describe(m).weights, sasp_wtype_name(sasp_kernels_active()->fast_weights));
    sasp_model_free(m);
}
END_TEST

START_TEST(missing_safetensors)
{
    write_config(cfg);
    expect_error("model.safetensors", "cannot open", NULL);
}
END_TEST

START_TEST(file_too_short)
{
    write_config(cfg);
    FILE *f = fopen(st_path(), "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    expect_error("model.safetensors", "too short", NULL);
}
END_TEST

START_TEST(header_longer_than_file)
{
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    char *text = json_dumps(h, JSON_COMPACT);
    write_config(cfg);
    ck_assert_int_eq(tw_write_raw(st_path(), strlen(text) + len + 1, text, strlen(text), data, len), 0);
    expect_error("model.safetensors", "runs past the end of the file", NULL);
    free(text), json_decref(h), free(data);
}
END_TEST

START_TEST(header_over_100mb)
{
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    write_config(cfg);
    ck_assert_int_eq(tw_write_safetensors(st_path(), h, data, len, 100000001LL), 0);
    expect_error("model.safetensors", "100 MB", NULL);
    json_decref(h), free(data);
}
END_TEST

START_TEST(header_not_json)
{
    write_config(cfg);
    const char *bad = "{\"tok_emb.weight\": {\"dtype\": \"F32\", ";
    ck_assert_int_eq(tw_write_raw(st_path(), strlen(bad), bad, strlen(bad), NULL, 0), 0);
    expect_error("model.safetensors", "not valid JSON", NULL);
}
END_TEST

START_TEST(header_not_object)
{
    write_config(cfg);
    const char *bad = "[1, 2, 3]";
    ck_assert_int_eq(tw_write_raw(st_path(), strlen(bad), bad, strlen(bad), NULL, 0), 0);
    expect_error("model.safetensors", "must be a JSON object", NULL);
}
END_TEST

START_TEST(unknown_dtype)
{
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    json_object_set_new(json_object_get(h, "layers.1.mlp.w1.weight"), "dtype", json_string("F64"));
    write_with_header(h, data, len);
    expect_error("layers.1.mlp.w1.weight", "unknown dtype \"F64\"", "model.safetensors");
    json_decref(h), free(data);
}
END_TEST

START_TEST(shape_disagrees_with_config)
{
    /* tok_emb with one column too many, data consistent with the wrong shape */
    tw_remove(&model, "tok_emb.weight");
    long shape[2] = {V, D + 1};
    tw_add(&model, "tok_emb.weight", 2, shape, NULL);
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    write_with_header(h, data, len);
    expect_error("tok_emb.weight", "shape [11, 9] disagrees with config.json", "[11, 8]");
    json_decref(h), free(data);
}
END_TEST

START_TEST(shape_wrong_rank)
{
    tw_remove(&model, "layers.0.norm.weight");
    long shape[2] = {1, D};
    tw_add(&model, "layers.0.norm.weight", 2, shape, NULL);
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    write_with_header(h, data, len);
    expect_error("layers.0.norm.weight", "shape [1, 8] disagrees with config.json", "[8]");
    json_decref(h), free(data);
}
END_TEST

START_TEST(shape_not_integers)
{
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    json_object_set_new(json_object_get(h, "norm_f.weight"), "shape", json_pack("[f]", 8.5));
    write_with_header(h, data, len);
    expect_error("norm_f.weight", "shape entries must be non-negative integers", NULL);
    json_object_set_new(json_object_get(h, "norm_f.weight"), "shape", json_pack("[i]", -8));
    write_with_header(h, data, len);
    expect_error("norm_f.weight", "shape entries must be non-negative integers", NULL);
    json_decref(h), free(data);
}
END_TEST

START_TEST(byte_size_disagrees_with_shape)
{
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    json_t *offs = json_object_get(json_object_get(h, "norm_f.weight"), "data_offsets");
    json_int_t b = json_integer_value(json_array_get(offs, 0)), e = json_integer_value(json_array_get(offs, 1));
    json_object_set_new(json_object_get(h, "norm_f.weight"), "data_offsets", json_pack("[I, I]", b, e - 4));
    write_with_header(h, data, len);
    expect_error("norm_f.weight", "span 28 bytes but shape and dtype F32 need 32", NULL);
    json_decref(h), free(data);
}
END_TEST

START_TEST(offsets_outside_data)
{
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    /* the tensor that ends the data section, moved 8 bytes past it */
    const char *last = model.t[model.n - 1].name;
    json_object_set_new(json_object_get(h, last), "data_offsets",
                        json_pack("[I, I]", (json_int_t)(len - model.t[model.n - 1].numel * 4 + 8), (json_int_t)(len + 8)));
    write_with_header(h, data, len);
    expect_error(last, "outside the data section", "model.safetensors");
    json_object_set_new(json_object_get(h, last), "data_offsets", json_pack("[i, i]", -4, 28));
    write_with_header(h, data, len);
    expect_error(last, "outside the data section", NULL);
    json_decref(h), free(data);
}
END_TEST

START_TEST(overlapping_extents)
{
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    json_t *a = json_object_get(json_object_get(h, "layers.0.attn.alpha"), "data_offsets");
    json_object_set(json_object_get(h, "layers.0.attn.beta"), "data_offsets", a);
    write_with_header(h, data, len);
    expect_error("overlaps", "layers.0.attn.alpha", "layers.0.attn.beta");
    /* a partial overlap: shift gamma back by one float into beta's bytes */
    json_decref(h), free(data);
    h = tw_header(&model, "F32", &data, &len);
    json_t *g = json_object_get(json_object_get(h, "layers.0.attn.gamma"), "data_offsets");
    json_int_t gb = json_integer_value(json_array_get(g, 0));
    json_object_set_new(json_object_get(h, "layers.0.attn.gamma"), "data_offsets", json_pack("[I, I]", gb - 4, gb + 4));
    write_with_header(h, data, len);
    expect_error("overlaps", "layers.0.attn.gamma", NULL);
    json_decref(h), free(data);
}
END_TEST

START_TEST(missing_required_tensor)
{
    tw_remove(&model, "layers.1.mlp.w2.weight");
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    write_with_header(h, data, len);
    expect_error("required tensor \"layers.1.mlp.w2.weight\" is missing", "model.safetensors", NULL);
    json_decref(h), free(data);
}
END_TEST

START_TEST(unknown_tensor_name)
{
    static const char *names[] = {"layers.0.attn.foo", "layers.2.norm.weight", "pos_emb.weight", "lm_head.weight",
                                  "layers.0.norm.bias", "layers.01.norm.weight", "norm2.weight"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        tw_model m = {0};
        tw_random_model(&m, cfg, NULL, 3);
        long shape[2] = {D, D};
        tw_add(&m, names[i], 1, shape, NULL);
        unsigned char *data;
        size_t len;
        json_t *h = tw_header(&m, "F32", &data, &len);
        write_with_header(h, data, len);
        expect_error(names[i], "unknown tensor name", "model.safetensors");
        json_decref(h), free(data), tw_free(&m);
    }
}
END_TEST

START_TEST(metadata_is_ignored)
{
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    json_object_set_new(h, "__metadata__", json_pack("{s:s, s:s}", "format", "pt", "step", "1000"));
    write_with_header(h, data, len);
    sasp_checkpoint *ck = sasp_checkpoint_load(tmp, err, sizeof err);
    ck_assert_msg(ck != NULL, "%s", err);
    sasp_checkpoint_free(ck);
    json_decref(h), free(data);
}
END_TEST

/* ---- config.json ---- */

static void expect_config_error(json_t *c, const char *a, const char *b)
{
    ck_assert_int_eq(tw_write_model(tmp, cfg, &model, "F32"), 0);
    write_config(c);
    expect_error("config.json", a, b);
    sasp_config sc;
    ck_assert_int_eq(sasp_config_load(tmp, &sc, err, sizeof err), -1);
}

START_TEST(config_missing_key)
{
    static const char *keys[] = {"architecture", "vocab_size", "d_model", "n_layers", "n_heads", "d_ff",
                                 "max_seq_len", "norm", "activation", "position"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        json_t *c = json_deep_copy(cfg);
        json_object_del(c, keys[i]);
        char want[64];
        snprintf(want, sizeof want, "required key \"%s\" is missing", keys[i]);
        expect_config_error(c, want, NULL);
        json_decref(c);
    }
}
END_TEST

START_TEST(config_value_outside_set)
{
    static const char *keys[] = {"architecture", "norm", "activation", "position"};
    for (size_t i = 0; i < 4; i++) {
        json_t *c = json_deep_copy(cfg);
        json_object_set_new(c, keys[i], json_string("batchnorm"));
        char want[64];
        snprintf(want, sizeof want, "key \"%s\" is \"batchnorm\"; it must be one of", keys[i]);
        expect_config_error(c, want, NULL);
        json_decref(c);
    }
    json_t *c = json_deep_copy(cfg);
    json_object_set_new(c, "tie_embeddings", json_string("yes"));
    expect_config_error(c, "\"tie_embeddings\" must be true or false", NULL);
    json_decref(c);
}
END_TEST

START_TEST(config_non_positive_sizes)
{
    static const char *keys[] = {"vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"};
    for (size_t i = 0; i < 6; i++) {
        for (int v = -1; v <= 0; v++) {
            json_t *c = json_deep_copy(cfg);
            json_object_set_new(c, keys[i], json_integer(v));
            char want[64];
            snprintf(want, sizeof want, "key \"%s\" is %d; it must be positive", keys[i], v);
            expect_config_error(c, want, NULL);
            json_decref(c);
        }
        json_t *c = json_deep_copy(cfg);
        json_object_set_new(c, keys[i], json_real(8.5));
        char want[64];
        snprintf(want, sizeof want, "key \"%s\" must be an integer", keys[i]);
        expect_config_error(c, want, NULL);
        json_decref(c);
    }
    json_t *c = json_deep_copy(cfg);
    json_object_set_new(c, "norm_eps", json_real(-1e-5));
    expect_config_error(c, "\"norm_eps\" is -1e-05", NULL);
    json_decref(c);
    c = json_deep_copy(cfg);
    json_object_set_new(c, "eos_token_id", json_integer(V));
    expect_config_error(c, "\"eos_token_id\" is 11", NULL);
    json_decref(c);
}
END_TEST

START_TEST(config_heads_do_not_divide)
{
    json_t *c = json_deep_copy(cfg);
    json_object_set_new(c, "n_heads", json_integer(3));
    expect_config_error(c, "\"d_model\" (8) is not divisible by key \"n_heads\" (3)", NULL);
    json_decref(c);
}
END_TEST

START_TEST(config_odd_head_with_rope)
{
    json_t *c = json_deep_copy(cfg);
    json_object_set_new(c, "d_model", json_integer(6));
    expect_config_error(c, "head size d_model/n_heads = 3 is odd", NULL);
    /* the same sizes with learned positions are fine */
    json_object_set_new(c, "position", json_string("learned"));
    sasp_config sc;
    write_config(c);
    ck_assert_msg(sasp_config_load(tmp, &sc, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(sc.d_model, 6);
    json_decref(c);
}
END_TEST

START_TEST(config_not_json)
{
    ck_assert_int_eq(tw_write_model(tmp, cfg, &model, "F32"), 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", tmp);
    FILE *f = fopen(path, "w");
    fputs("{\"architecture\": \"sasp\",,}", f);
    fclose(f);
    expect_error("config.json", "not valid JSON", NULL);
    f = fopen(path, "w");
    fputs("[1]", f);
    fclose(f);
    expect_error("config.json", "must be a JSON object", NULL);
    remove(path);
    expect_error("config.json", "cannot read", NULL);
}
END_TEST

/* Random single-byte corruptions of the header: the loader must either load or reject, never crash,
 * and never accept a file whose header it could not have validated. */
START_TEST(random_header_corruption_never_crashes)
{
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    char *text = json_dumps(h, JSON_COMPACT);
    size_t tlen = strlen(text);
    write_config(cfg);
    uint64_t rs = 99;
    int rejected = 0, loaded = 0;
    for (int it = 0; it < 400; it++) {
        char *t = strdup(text);
        int flips = 1 + (int)(tw_rand_u64(&rs) % 3);
        for (int k = 0; k < flips; k++) t[tw_rand_u64(&rs) % tlen] = (char)(tw_rand_u64(&rs) & 0xff);
        ck_assert_int_eq(tw_write_raw(st_path(), tlen, t, tlen, data, len), 0);
        sasp_checkpoint *ck = sasp_checkpoint_load(tmp, err, sizeof err);
        if (ck) loaded++, sasp_checkpoint_free(ck);
        else rejected++, ck_assert(strstr(err, "model.safetensors") != NULL);
        free(t);
    }
    printf("  random corruption: %d rejected, %d still valid\n", rejected, loaded);
    ck_assert_int_gt(rejected, 300);
    free(text), json_decref(h), free(data);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("loader");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, valid_f32_loads_exactly);
    tcase_add_test(tc, every_architecture_and_option_loads);
    tcase_add_test(tc, tensor_schema_agrees_with_the_writer);
    tcase_add_test(tc, trailing_bytes_after_data_are_fine);
    tcase_add_test(tc, f16_loads_exactly);
    tcase_add_test(tc, bf16_loads_exactly);
    tcase_add_test(tc, bf16_matrices_stay_bf16);
    tcase_add_test(tc, q8_0_round_trip);
    tcase_add_test(tc, q8_0_corrupt_is_refused);
    tcase_add_test(tc, typed_weights_give_logits_close_to_f32);
    tcase_add_test(tc, weights_at_most_a_type);
    tcase_add_test(tc, missing_safetensors);
    tcase_add_test(tc, file_too_short);
    tcase_add_test(tc, header_longer_than_file);
    tcase_add_test(tc, header_over_100mb);
    tcase_add_test(tc, header_not_json);
    tcase_add_test(tc, header_not_object);
    tcase_add_test(tc, unknown_dtype);
    tcase_add_test(tc, shape_disagrees_with_config);
    tcase_add_test(tc, shape_wrong_rank);
    tcase_add_test(tc, shape_not_integers);
    tcase_add_test(tc, byte_size_disagrees_with_shape);
    tcase_add_test(tc, offsets_outside_data);
    tcase_add_test(tc, overlapping_extents);
    tcase_add_test(tc, missing_required_tensor);
    tcase_add_test(tc, unknown_tensor_name);
    tcase_add_test(tc, metadata_is_ignored);
    tcase_add_test(tc, config_missing_key);
    tcase_add_test(tc, config_value_outside_set);
    tcase_add_test(tc, config_non_positive_sizes);
    tcase_add_test(tc, config_heads_do_not_divide);
    tcase_add_test(tc, config_odd_head_with_rope);
    tcase_add_test(tc, config_not_json);
    tcase_add_test(tc, random_header_corruption_never_crashes);
    tcase_add_test(tc, matrix_type_from_header_matches_load);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
