/* checkpoint.h: reading a model directory (config.json + model.safetensors) into memory, and the
 * tensor schema (which tensors a config calls for) that the loader and the model share.
 *
 * The format is docs/checkpoint-format.md.
 * The loader mmaps model.safetensors, parses and validates its JSON header and config.json with
 * jansson. Vectors, and matrices stored as F32 or F16, are copied into memory it owns as float32; the
 * matrices stored in a type the kernels run natively (BF16, and q8_0: an I8 tensor with an F16
 * "<name>.scales" tensor) are used from the mapping as they are, which the checkpoint keeps while it
 * lives. sasp_checkpoint_load_as converts every matrix to one type instead (sasp-cli --weights).
 * Every failure is one message naming the file and the problem, returned in err. */
#ifndef SASP_CHECKPOINT_H
#define SASP_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels.h"

typedef enum { SASP_ARCH_SASP,
               SASP_ARCH_PRELN } sasp_arch;
typedef enum { SASP_NORM_RMS,
               SASP_NORM_LAYER,
               SASP_NORM_NONE } sasp_norm;
typedef enum { SASP_ACT_RELU,
               SASP_ACT_GELU,
               SASP_ACT_SILU } sasp_act;
typedef enum { SASP_POS_ROPE,
               SASP_POS_LEARNED } sasp_pos;

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
    float *data;    /* owned, float32, 64-byte aligned; NULL for a matrix held in another type (w) */
    sasp_weights w; /* the matrices (sasp_tensor_is_matrix): as the kernels read them; an f32 one is
                     * data, the others a view of the mapping or owned (converted at load) */
    void *owned;    /* w's storage when it was converted at load (data, then the q8_0 scales) */
} sasp_tensor;

typedef struct sasp_checkpoint {
    sasp_config config;
    sasp_tensor *tensors;
    int n_tensors;
    void *map; /* model.safetensors, mapped read-only while a tensor's w views it; else NULL */
    size_t map_size;
} sasp_checkpoint;

/* The weight types by name ("f32", "bf16", "q8_0"), and back: -1 for an unknown name. */
const char *sasp_wtype_name(sasp_wtype t);
int sasp_wtype_parse(const char *name);
#define SASP_WEIGHTS_AS_STORED (-1) /* sasp_checkpoint_load_as: each matrix in its file's type */
/* sasp_checkpoint_load_as: each matrix in type t, unless its file stores it in a narrower one (q8_0 is
 * narrower than bf16, bf16 than f32, F16 counts as f32): widening would cost memory and bring nothing
 * back of what the narrower type lost. */
#define SASP_WEIGHTS_AT_MOST(t) (-2 - (int)(t))

/* The tensor schema: every tensor a model can have, in the order of the table "Tensors" of
 * docs/checkpoint-format.md. The loader checks a file against it and the model takes its weights by it,
 * so the names, shapes and presence rules are written once, in checkpoint.c. The kinds from
 * SASP_T_NORM_W to SASP_T_W2 exist once per layer ("layers.N.<name>"); the others once. */
typedef enum {
    SASP_T_TOK_EMB,
    SASP_T_POS_EMB,
    SASP_T_NORM_W,
    SASP_T_NORM_B,
    SASP_T_WQ,
    SASP_T_BQ,
    SASP_T_WK,
    SASP_T_BK,
    SASP_T_WV,
    SASP_T_WO,
    SASP_T_ALPHA,
    SASP_T_BETA,
    SASP_T_GAMMA,
    SASP_T_ATTN_GAIN,
    SASP_T_MLP_GAIN,
    SASP_T_SKIP_GAIN,
    SASP_T_NORM2_W,
    SASP_T_NORM2_B,
    SASP_T_W1,
    SASP_T_W2,
    SASP_T_NORM_F_W,
    SASP_T_NORM_F_B,
    SASP_T_LM_HEAD,
    SASP_N_TENSOR_KINDS
} sasp_tensor_kind;

typedef enum { SASP_TENSOR_ABSENT,
               SASP_TENSOR_OPTIONAL,
               SASP_TENSOR_REQUIRED } sasp_presence;

/* One tensor as a config implies it. */
typedef struct sasp_tensor_spec {
    char name[64]; /* e.g. "layers.3.attn.wq.weight" */
    int ndim;      /* 1 or 2 */
    long shape[2]; /* shape[1] is 0 when ndim is 1 */
    sasp_presence presence;
} sasp_tensor_spec;

/* Whether tensor KIND exists once per layer. */
bool sasp_tensor_per_layer(sasp_tensor_kind kind);

/* Whether tensor KIND is a matrix the forward pass multiplies by (its w may be bf16 or q8_0): the
 * embedding, the head and the layers' W_Q, W_K, W_V, W_O, W1, W2; not pos_emb nor the vectors. */
bool sasp_tensor_is_matrix(sasp_tensor_kind kind);

/* Tensor KIND of layer LAYER (ignored for the kinds that are not per layer) in a model of config C:
 * its name, its shape and whether the model must, may or cannot have it. Returns spec->presence. */
sasp_presence sasp_tensor_spec_of(const sasp_config *c, sasp_tensor_kind kind, int layer, sasp_tensor_spec *spec);

/* Parse and validate DIR/config.json alone. Returns 0, or -1 with a message in err. */
int sasp_config_load(const char *dir, sasp_config *cfg, char *err, size_t errlen);

/* Open DIR (config.json + model.safetensors), validate everything the spec lists and load the tensors.
 * Returns NULL with a message in err on any failure. */
sasp_checkpoint *sasp_checkpoint_load(const char *dir, char *err, size_t errlen);

/* The same with every matrix converted to WEIGHTS (a sasp_wtype: f32 dequantizes or widens, bf16
 * rounds to nearest even, q8_0 quantizes with sasp_quantize_q8_0), or each left in its file's type
 * (SASP_WEIGHTS_AS_STORED, what sasp_checkpoint_load does: F32 and F16 as f32, BF16, q8_0), or
 * SASP_WEIGHTS_AT_MOST(t). */
sasp_checkpoint *sasp_checkpoint_load_as(const char *dir, int weights, char *err, size_t errlen);
/* The sasp_wtype the layers' matrices of DIR would be loaded in with WEIGHTS (as above), from the
 * checked header alone, without reading the data: what a listing says of a model not loaded. -1 + err
 * when DIR does not load. */
int sasp_checkpoint_matrix_type(const char *dir, int weights, char *err, size_t errlen);

/* Write ck's tensors to PATH as a safetensors file in the format the loader reads: vectors F32,
 * matrices in the type of their w (q8_0 as its two tensors), each 64-byte aligned. 0, or -1 + err. */
int sasp_checkpoint_save(const sasp_checkpoint *ck, const char *path, char *err, size_t errlen);

/* The tensor named NAME, or NULL when the checkpoint has none (optional tensors). */
const sasp_tensor *sasp_checkpoint_find(const sasp_checkpoint *ck, const char *name);

/* Hand a tensor's data to the caller (who frees it with free()); the checkpoint forgets it. */
float *sasp_checkpoint_take(sasp_checkpoint *ck, const char *name);

/* The two above by kind: tensor KIND of layer LAYER, or NULL when the checkpoint has none. */
const sasp_tensor *sasp_checkpoint_find_kind(const sasp_checkpoint *ck, sasp_tensor_kind kind, int layer);
float *sasp_checkpoint_take_kind(sasp_checkpoint *ck, sasp_tensor_kind kind, int layer);
/* Matrix KIND of layer LAYER as the kernels read it (valid while ck lives), or NULL when absent. */
const sasp_weights *sasp_checkpoint_weights_kind(const sasp_checkpoint *ck, sasp_tensor_kind kind, int layer);

void sasp_checkpoint_free(sasp_checkpoint *ck);

#endif
