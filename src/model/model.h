/* model.h: the SAS-P (and Pre-LN baseline) model: loading it, its forward pass, a per-sequence KV-cache.
 *
 * The math is docs/sasp-block.md, and model.c computes exactly that: its sasp_forward reads as the
 * model from token to logits (the embedding, one block function per layer whose lines are the steps of
 * the spec, the final norm and the head). One call of sasp_forward runs one batched step over any
 * number of sequences, each feeding any number of new tokens (a prompt chunk, or one token while
 * decoding): all rows of the step share each pass over the weights (matrix x matrix), which is what
 * makes continuous batching in the server cheap. Prefilling n tokens and then decoding one at a time
 * gives the same logits as one forward over the whole sequence.
 *
 * Callers use a model's cfg, n_params and pool, the functions below, and sasp_model_describe for what
 * the checkpoint held; the weights, their layout and the scratch memory are model.c's. */
#ifndef SASP_MODEL_H
#define SASP_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include "model/checkpoint.h"
#include "kernels.h"
#include "model/threadpool.h"

typedef struct sasp_layer sasp_layer; /* one layer's weights, laid out for the forward pass (model.c) */

typedef struct sasp_model {
    sasp_config cfg;
    size_t n_params; /* parameters in the checkpoint */
    sasp_pool *pool; /* the threads the forward pass runs on */
    /* model.c's own: */
    char *dir;
    const sasp_kernels *kernels; /* the kernel table the forward pass calls */
    sasp_checkpoint *ck;         /* the loaded tensors: the matrices below point into it (or its mapping) */
    sasp_weights tok_emb;        /* [vocab][d], f32, bf16 or q8_0 */
    float *pos_emb;              /* [max_seq_len][d] or NULL */
    sasp_layer *layers;
    float *norm_f_w, *norm_f_b;
    sasp_weights lm_head;         /* [vocab][d]; == tok_emb when tied */
    float *rope_cos, *rope_sin;   /* [max_seq_len][d_head/2] */
    struct sasp_scratch *scratch; /* activations, grown to the largest step seen */
    void *panels;                 /* the q8_0 matrices as panels, for kernels that read them (sasp_kernels.q8_panels) */
} sasp_model;

/* The cache of one sequence: keys after RoPE and values per layer and position, and for sasp the
 * running sum of values that the centring term needs. */
typedef struct sasp_kv {
    int len;           /* positions filled */
    int cap;           /* positions it can hold (<= max_seq_len) */
    float *keys;       /* [n_layers][cap][d] */
    float *values;     /* [n_layers][cap][d] */
    double *value_sum; /* [n_layers][d]: sum of the values over positions [0, len) (sasp only; after
                        * sasp_kv_reset it is stale until the next step, which restarts it at position 0) */
} sasp_kv;

/* Load DIR with n_threads workers (<= 0: one per core) and the active kernels. NULL + err on failure. */
sasp_model *sasp_model_load(const char *dir, int n_threads, char *err, size_t errlen);
/* The same with the matrices converted to WEIGHTS at load: a sasp_wtype; SASP_WEIGHTS_AS_STORED, each
 * in its file's type, as sasp_model_load does; or SASP_WEIGHTS_FAST, the type the active kernel table
 * serves fastest (sasp_kernels.fast_weights), a matrix its file stores narrower staying as it is: what
 * sasp-server and sasp-cli load unless --weights says otherwise. The results are the same for a request
 * alone or among others in every type (simd/kernels.h), so the fast type costs no reproducibility; what
 * it costs in accuracy is models/README.md's "Quality per weight type". */
#define SASP_WEIGHTS_FAST (-100)
sasp_model *sasp_model_load_as(const char *dir, int n_threads, int weights, char *err, size_t errlen);

/* The name of the type ("f32", "bf16", "q8_0") sasp_model_load_as(dir, _, weights) would serve the
 * layers' matrices in, from the file's header alone; NULL when DIR does not load. */
const char *sasp_model_weights_of(const char *dir, int weights);

/* --weights: "auto" (SASP_WEIGHTS_FAST), "stored" (SASP_WEIGHTS_AS_STORED), "f32", "bf16", "q8_0";
 * SASP_WEIGHTS_UNKNOWN for anything else. */
#define SASP_WEIGHTS_UNKNOWN (-1000)
int sasp_weights_parse(const char *name);
#define SASP_WEIGHTS_HELP "f32, bf16, q8_0, auto or stored"
void sasp_model_free(sasp_model *m);

/* Use this kernel table from now on (tests and benchmarks compare ISAs on one loaded model); a table
 * that reads q8_0 panels gets them packed now if they were not. */
void sasp_model_set_kernels(sasp_model *m, const sasp_kernels *kernels);

/* What a loaded model is beyond its config (sasp-cli --info prints it). */
typedef struct sasp_model_info {
    const char *dir;      /* the directory it was loaded from */
    size_t n_params;      /* parameters in the checkpoint */
    int layers_with_wv;   /* layers with a value matrix W_V (preln: every layer) */
    int layers_with_wo;   /* layers with an output matrix W_O (preln: every layer) */
    int layers_with_skip; /* sasp layers with a skip gain alpha_skip */
    bool qk_bias;         /* some layer has a query or key bias */
    const char *kernels;  /* the kernel table in use: "scalar", "avx2", ... */
    const char *weights;  /* the type of the layers' matrices: "f32", "bf16", "q8_0" */
    int threads;          /* of the pool, the calling thread included */
} sasp_model_info;

sasp_model_info sasp_model_describe(const sasp_model *m);

/* A cache for up to cap positions (cap <= 0 or > max_seq_len means max_seq_len). NULL on OOM. */
sasp_kv *sasp_kv_new(const sasp_model *m, int cap);
void sasp_kv_reset(sasp_kv *kv);
void sasp_kv_free(sasp_kv *kv);
/* Keep the first len positions (0 <= len <= kv->len) and forget the rest: the centring sums are
 * summed again over exactly those positions, in the order the steps summed them, so the next step
 * continues bit for bit as if only they had been fed (a prompt cache reusing a shared prefix). */
void sasp_kv_truncate(const sasp_model *m, sasp_kv *kv, int len);
/* dst = the first len positions of src (len <= src->len), for another sequence of the same model.
 * Returns 0, or -1 when dst holds fewer than len positions. */
int sasp_kv_copy(const sasp_model *m, sasp_kv *dst, const sasp_kv *src, int len);

/* What one sequence feeds in one step. */
typedef struct sasp_step {
    sasp_kv *kv;       /* its cache: tokens go at positions kv->len, kv->len + 1, ... */
    const int *tokens; /* n_tokens ids, each in [0, vocab) */
    int n_tokens;      /* >= 1 */
    int n_logits;      /* logits for the last n_logits of these tokens, 0 ... n_tokens */
    float *logits;     /* [n_logits][vocab], written by sasp_forward */
    int n_hidden;      /* final hidden states N_f(X_L) of the last n_hidden tokens, 0 ... n_tokens */
    float *hidden;     /* [n_hidden][d_model], written by sasp_forward (embeddings) */
} sasp_step;

/* Run one step over n_steps sequences (each kv at most once). On success every kv->len has grown by
 * its n_tokens and 0 is returned. Returns -1 with a message in err, changing nothing, when a token id
 * is out of range or a sequence would pass its cache's capacity. One call at a time per model: a step
 * runs on the model's scratch memory and thread pool. */
int sasp_forward(sasp_model *m, sasp_step *steps, int n_steps, char *err, size_t errlen);

/* Multiply-adds per token: the matrices, plus attention over n_ctx positions of context (scores and
 * weighted sum, 2 n_ctx d per layer); n_ctx = 0 gives the matrices alone. For GFLOP/s. */
double sasp_model_flops_per_token(const sasp_model *m, int n_ctx);
/* The bytes of the matrices one decoded token reads, in their type (q8_0's scales included): the
 * weight traffic of decode at batch 1 (the embedding is one row; a tied head is counted once). */
double sasp_model_weight_bytes(const sasp_model *m);

#endif
