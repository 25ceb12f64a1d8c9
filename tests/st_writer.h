/* st_writer.h: a small safetensors + config.json writer for the C tests.
 *
 * The tests build checkpoints themselves, valid ones with random weights and corrupt ones, so that
 * no fixture hides what is being tested. The header is a jansson object the test may edit (change
 * a dtype, a shape, an offset; drop or add a tensor) before it is written. */
#ifndef SASP_ST_WRITER_H
#define SASP_ST_WRITER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* One tensor to write: float32 data, converted to the file's dtype when written. */
typedef struct tw_tensor {
    char name[80];
    int ndim;
    long shape[4];
    size_t numel;
    float *data; /* owned */
} tw_tensor;

typedef struct tw_model {
    tw_tensor *t;
    int n, cap;
} tw_model;

/* Options of a random model (the optional tensors of the checkpoint format). */
typedef struct tw_options {
    int qk_bias;   /* layers.N.attn.wq.bias / wk.bias */
    int wv_mask;   /* sasp: bit N set = layer N has W_V */
    int wo_mask;   /* sasp: bit N set = layer N has W_O */
    int skip_gain; /* sasp: layers.N.skip_gain */
} tw_options;

/* A config.json object: the given sizes and kinds, the other keys at their defaults. */
json_t *tw_config(const char *arch, const char *norm, const char *position, const char *activation,
                  int vocab, int d_model, int n_layers, int n_heads, int d_ff, int max_seq_len, int tie);

/* Every tensor config implies, random: matrices ~ N(0, 1/fan_in), gains and norm weights uniform
 * in [0.5, 1.5], gamma in [0.2, 1], biases ~ N(0, 0.1^2). Deterministic in seed. */
int tw_random_model(tw_model *m, json_t *config, const tw_options *opt, uint64_t seed);

/* Add a tensor (data copied; NULL data means zeros). */
int tw_add(tw_model *m, const char *name, int ndim, const long *shape, const float *data);
tw_tensor *tw_find(tw_model *m, const char *name);
void tw_remove(tw_model *m, const char *name);
void tw_free(tw_model *m);

/* The header object and the data section for dtype "F32", "F16" or "BF16" (tensors back to back
 * in order). *data is malloc'd. */
json_t *tw_header(const tw_model *m, const char *dtype, unsigned char **data, size_t *data_len);

/* Write a safetensors file from a header object (serialised compactly) and a data section.
 * len_field < 0 writes the true header length; otherwise that value goes in the 8-byte prefix. */
int tw_write_safetensors(const char *path, json_t *header, const unsigned char *data, size_t data_len,
                         long long len_field);
/* Write raw bytes: 8-byte length len_field, then header text, then data. */
int tw_write_raw(const char *path, uint64_t len_field, const char *header, size_t header_len,
                 const unsigned char *data, size_t data_len);

/* Write DIR/config.json and DIR/model.safetensors (F32 or another dtype). mkdir DIR if needed. */
int tw_write_model(const char *dir, json_t *config, const tw_model *m, const char *dtype);

/* Float to half / bfloat16 bits, round to nearest even. */
uint16_t tw_f32_to_f16(float f);
uint16_t tw_f32_to_bf16(float f);

/* A fresh temporary directory (mkdtemp under TMPDIR or /tmp); remove it with tw_rmtree. */
char *tw_tempdir(void);
void tw_rmtree(const char *dir);

/* splitmix64-based random numbers for the tests. */
uint64_t tw_rand_u64(uint64_t *state);
double tw_rand_uniform(uint64_t *state);
double tw_rand_normal(uint64_t *state);

#endif
