/* check_checkpoint.c: the checkpoint loader against valid and corrupt model directories.
 *
 * Every checkpoint here is written by the test itself (tests/st_writer.c): a valid tiny model, then
 * one corruption per kind the format spec lists (and a few more), each of which must fail with its
 * own message naming the file and the tensor or key, and never crash. F16 and BF16 must load
 * exactly. A last test flips random header bytes and only asks that the loader survives. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "st_writer.h"

#define V 11
#define D 8
#define L 2
#define H 2
#define FF 12
#define S 16

static char *tmp;     /* this test's directory */
static json_t *cfg;   /* a valid config */
static tw_model model; /* a valid model for cfg */
static char err[1024];

static void setup(void) {
    tmp = tw_tempdir();
    ck_assert_ptr_nonnull(tmp);
    cfg = tw_config("sasp", "rmsnorm", "rope", "relu", V, D, L, H, FF, S, 1);
    memset(&model, 0, sizeof model);
    ck_assert_int_eq(tw_random_model(&model, cfg, NULL, 42), 0);
}

static void teardown(void) {
    tw_free(&model);
    json_decref(cfg);
    tw_rmtree(tmp);
    free(tmp);
}

static void write_config(json_t *c) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", tmp);
    ck_assert_int_eq(json_dump_file(c, path, JSON_INDENT(2)), 0);
}

static char *st_path(void) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    return path;
}

/* Load tmp, expect failure, and check that the message holds every given substring. */
static void expect_error(const char *a, const char *b, const char *c) {
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
static void write_with_header(json_t *h, const unsigned char *data, size_t len) {
    write_config(cfg);
    ck_assert_int_eq(tw_write_safetensors(st_path(), h, data, len, -1), 0);
}

START_TEST(valid_f32_loads_exactly) {
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

START_TEST(every_architecture_and_option_loads) {
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

START_TEST(trailing_bytes_after_data_are_fine) {
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
static double f16_value(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e == 0x1f ? INFINITY : e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static double bf16_value(uint16_t b) {
    int s = b >> 15, e = (b >> 7) & 0xff, m = b & 0x7f;
    double v = e == 0xff ? INFINITY : e == 0 ? ldexp(m, -133) : ldexp(128 + m, e - 134);
    return s ? -v : v;
}

/* Fill every tensor with random finite 16-bit patterns (plus the edge cases), write them with dtype
 * and check each loaded float equals the formula's value exactly. */
static void check_half_exact(const char *dtype) {
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
        else do b = (uint16_t)tw_rand_u64(&rs); while (f16 ? ((b & 0x7c00) == 0x7c00) : ((b & 0x7f80) == 0x7f80));
        bits[i] = b;
        data[2 * i] = (unsigned char)b;
        data[2 * i + 1] = (unsigned char)(b >> 8);
    }
    write_with_header(h, data, len);
    sasp_checkpoint *ck = sasp_checkpoint_load(tmp, err, sizeof err);
    ck_assert_msg(ck != NULL, "%s", err);
    json_t *jv;
    const char *name;
    size_t checked = 0;
    json_object_foreach(h, name, jv) {
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

START_TEST(missing_safetensors) {
    write_config(cfg);
    expect_error("model.safetensors", "cannot open", NULL);
}
END_TEST

START_TEST(file_too_short) {
    write_config(cfg);
    FILE *f = fopen(st_path(), "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    expect_error("model.safetensors", "too short", NULL);
}
END_TEST

START_TEST(header_longer_than_file) {
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

START_TEST(header_over_100mb) {
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    write_config(cfg);
    ck_assert_int_eq(tw_write_safetensors(st_path(), h, data, len, 100000001LL), 0);
    expect_error("model.safetensors", "100 MB", NULL);
    json_decref(h), free(data);
}
END_TEST

START_TEST(header_not_json) {
    write_config(cfg);
    const char *bad = "{\"tok_emb.weight\": {\"dtype\": \"F32\", ";
    ck_assert_int_eq(tw_write_raw(st_path(), strlen(bad), bad, strlen(bad), NULL, 0), 0);
    expect_error("model.safetensors", "not valid JSON", NULL);
}
END_TEST

START_TEST(header_not_object) {
    write_config(cfg);
    const char *bad = "[1, 2, 3]";
    ck_assert_int_eq(tw_write_raw(st_path(), strlen(bad), bad, strlen(bad), NULL, 0), 0);
    expect_error("model.safetensors", "must be a JSON object", NULL);
}
END_TEST

START_TEST(unknown_dtype) {
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    json_object_set_new(json_object_get(h, "layers.1.mlp.w1.weight"), "dtype", json_string("F64"));
    write_with_header(h, data, len);
    expect_error("layers.1.mlp.w1.weight", "unknown dtype \"F64\"", "model.safetensors");
    json_decref(h), free(data);
}
END_TEST

START_TEST(shape_disagrees_with_config) {
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

START_TEST(shape_wrong_rank) {
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

START_TEST(shape_not_integers) {
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

START_TEST(byte_size_disagrees_with_shape) {
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

START_TEST(offsets_outside_data) {
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

START_TEST(overlapping_extents) {
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

START_TEST(missing_required_tensor) {
    tw_remove(&model, "layers.1.mlp.w2.weight");
    unsigned char *data;
    size_t len;
    json_t *h = tw_header(&model, "F32", &data, &len);
    write_with_header(h, data, len);
    expect_error("required tensor \"layers.1.mlp.w2.weight\" is missing", "model.safetensors", NULL);
    json_decref(h), free(data);
}
END_TEST

START_TEST(unknown_tensor_name) {
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

START_TEST(metadata_is_ignored) {
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

static void expect_config_error(json_t *c, const char *a, const char *b) {
    ck_assert_int_eq(tw_write_model(tmp, cfg, &model, "F32"), 0);
    write_config(c);
    expect_error("config.json", a, b);
    sasp_config sc;
    ck_assert_int_eq(sasp_config_load(tmp, &sc, err, sizeof err), -1);
}

START_TEST(config_missing_key) {
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

START_TEST(config_value_outside_set) {
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

START_TEST(config_non_positive_sizes) {
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

START_TEST(config_heads_do_not_divide) {
    json_t *c = json_deep_copy(cfg);
    json_object_set_new(c, "n_heads", json_integer(3));
    expect_config_error(c, "\"d_model\" (8) is not divisible by key \"n_heads\" (3)", NULL);
    json_decref(c);
}
END_TEST

START_TEST(config_odd_head_with_rope) {
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

START_TEST(config_not_json) {
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
START_TEST(random_header_corruption_never_crashes) {
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

static Suite *suite(void) {
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("loader");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, valid_f32_loads_exactly);
    tcase_add_test(tc, every_architecture_and_option_loads);
    tcase_add_test(tc, trailing_bytes_after_data_are_fine);
    tcase_add_test(tc, f16_loads_exactly);
    tcase_add_test(tc, bf16_loads_exactly);
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
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
