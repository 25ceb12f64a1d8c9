/* checkpoint.h: reading a model directory (config.json + model.safetensors) into memory.
 *
 * The format is docs/checkpoint-format.md.
 * The loader mmaps model.safetensors, parses and validates its JSON header and config.json with
 * jansson, then copies every tensor into memory it owns as float32 (F16 and BF16 are converted) and
 * unmaps the file: a model directory deleted or truncated while the server runs cannot hurt it.
 * Every failure is one message naming the file and the problem, returned in err. */
#ifndef SASP_CHECKPOINT_H
#define SASP_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { SASP_ARCH_SASP, SASP_ARCH_PRELN } sasp_arch;
typedef enum { SASP_NORM_RMS, SASP_NORM_LAYER, SASP_NORM_NONE } sasp_norm;
typedef enum { SASP_ACT_RELU, SASP_ACT_GELU, SASP_ACT_SILU } sasp_act;
typedef enum { SASP_POS_ROPE, SASP_POS_LEARNED } sasp_pos;

/* The config.json spellings of the enums above, indexed by value ("sasp", "rmsnorm", "relu", "rope"). */
extern const char *const sasp_arch_names[2];
extern const char *const sasp_norm_names[3];
extern const char *const sasp_act_names[3];
extern const char *const sasp_pos_names[2];

typedef struct sasp_config {
    sasp_arch arch;
    int vocab_size, d_model, n_layers, n_heads, d_ff, max_seq_len;
    sasp_norm norm;
    float norm_eps;
    /* Two optional keys for checkpoints imported from the paper's reference code
     * (scripts/import-reference.py, docs/importing-reference-checkpoints.md):
     * "norm_f": the kind of the final norm (default: rmsnorm with "norm": "rmsnorm", else layernorm);
     * "rmsnorm_eps_outside": rmsnorm is y = g * x / (sqrt(mean(x^2)) + eps) instead of the spec's
     * g * x / sqrt(mean(x^2) + eps) (default false). */
    sasp_norm norm_f; /* SASP_NORM_RMS or SASP_NORM_LAYER */
    bool rmsnorm_eps_outside;
    sasp_act activation;
    sasp_pos position;
    float rope_theta;
    bool tie_embeddings;
    int bos_token_id, eos_token_id;
} sasp_config;

typedef struct sasp_tensor {
    char *name;
    int ndim;
    long shape[4];
    size_t numel;
    float *data; /* owned, float32, 64-byte aligned */
} sasp_tensor;

typedef struct sasp_checkpoint {
    char *dir;
    sasp_config config;
    sasp_tensor *tensors;
    int n_tensors;
    size_t file_bytes; /* size of model.safetensors */
} sasp_checkpoint;

/* Parse and validate DIR/config.json alone. Returns 0, or -1 with a message in err. */
int sasp_config_load(const char *dir, sasp_config *cfg, char *err, size_t errlen);

/* Open DIR (config.json + model.safetensors), validate everything the spec lists and load the tensors.
 * Returns NULL with a message in err on any failure. */
sasp_checkpoint *sasp_checkpoint_load(const char *dir, char *err, size_t errlen);

/* The tensor named NAME, or NULL when the checkpoint has none (optional tensors). */
const sasp_tensor *sasp_checkpoint_find(const sasp_checkpoint *ck, const char *name);

/* Hand a tensor's data to the caller (who frees it with free()); the checkpoint forgets it. */
float *sasp_checkpoint_take(sasp_checkpoint *ck, const char *name);

void sasp_checkpoint_free(sasp_checkpoint *ck);

#endif
