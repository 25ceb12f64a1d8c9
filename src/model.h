/* model.h: the SAS-P (and Pre-LN baseline) forward pass with a per-sequence KV-cache.
 *
 * The math is docs/sasp-block.md; model.c computes exactly that, in one function a reader
 * can follow from token to logits. One call of sasp_forward runs one batched step over any number of
 * sequences, each feeding any number of new tokens (a prompt chunk, or one token while decoding): all
 * rows of the step share each pass over the weights (matrix x matrix), which is what makes continuous
 * batching in the server cheap. Prefilling n tokens and then decoding one at a time gives the same
 * logits as one forward over the whole sequence. */
#ifndef SASP_MODEL_H
#define SASP_MODEL_H

#include <stddef.h>
#include "checkpoint.h"
#include "kernels.h"
#include "threadpool.h"

/* One layer's weights, as the forward pass uses them (all float32, owned by the model). */
typedef struct sasp_layer {
    float *norm_w, *norm_b;   /* the block's input norm (N, or N1 for preln); NULL when absent */
    float *norm2_w, *norm2_b; /* preln only: N2 */
    /* The matrices that read the normalised input Z, stacked into one [n_in][d] matrix so one pass
     * computes them all: rows [0,d) W_Q, [d,2d) W_K, then W_V (d rows) when the layer has one,
     * then, for sasp only, W1 (d_ff rows). */
    float *w_in;
    float *b_in;              /* [n_in] biases (zeros where a part has none), or NULL */
    int n_in;
    int has_wv;
    float *wo;                /* [d][d] or NULL (identity) */
    float *w1;                /* preln only: [d_ff][d] */
    float *w2;                /* [d][d_ff] */
    float *alpha, *beta, *gamma; /* sasp: [n_heads] shaped-attention gains */
    float attn_gain, mlp_gain;   /* sasp: beta_SA, beta_FF */
    float skip_gain;             /* sasp: alpha_skip */
    int has_skip;
} sasp_layer;

typedef struct sasp_model {
    sasp_config cfg;
    char *dir;
    float *tok_emb;   /* [vocab][d] */
    float *pos_emb;   /* [max_seq_len][d] or NULL */
    sasp_layer *layers;
    float *norm_f_w, *norm_f_b;
    float *lm_head;   /* [vocab][d]; == tok_emb when tied */
    float *rope_cos, *rope_sin; /* [max_seq_len][d_head/2] */
    size_t n_params;  /* parameters in the checkpoint */
    const sasp_kernels *k;
    sasp_pool *pool;
    struct sasp_scratch *scratch; /* activations, grown to the largest step seen */
} sasp_model;

/* The cache of one sequence: keys after RoPE and values per layer and position, and for sasp the
 * running sum of values that the centring term needs. */
typedef struct sasp_kv {
    int len;      /* positions filled */
    int cap;      /* positions it can hold (<= max_seq_len) */
    float *k;     /* [n_layers][cap][d] */
    float *v;     /* [n_layers][cap][d] */
    double *vsum; /* [n_layers][d]: sum of v over positions [0, len) (sasp only; after sasp_kv_reset
                   * it is stale until the next step, which restarts it at position 0) */
} sasp_kv;

/* Load DIR with n_threads workers (<= 0: one per core) and the active kernels. NULL + err on failure. */
sasp_model *sasp_model_load(const char *dir, int n_threads, char *err, size_t errlen);
void sasp_model_free(sasp_model *m);

/* Use kernel table K from now on (tests and benchmarks compare ISAs on one loaded model). */
void sasp_model_set_kernels(sasp_model *m, const sasp_kernels *k);

/* A cache for up to cap positions (cap <= 0 or > max_seq_len means max_seq_len). NULL on OOM. */
sasp_kv *sasp_kv_new(const sasp_model *m, int cap);
void sasp_kv_reset(sasp_kv *kv);
void sasp_kv_free(sasp_kv *kv);

/* What one sequence feeds in one step. */
typedef struct sasp_step {
    sasp_kv *kv;        /* its cache: tokens go at positions kv->len, kv->len + 1, ... */
    const int *tokens;  /* n_tokens ids, each in [0, vocab) */
    int n_tokens;       /* >= 1 */
    int n_logits;       /* logits for the last n_logits of these tokens: 0, 1 or n_tokens */
    float *logits;      /* [n_logits][vocab], written by sasp_forward */
} sasp_step;

/* Run one step over n_steps sequences (each kv at most once). On success every kv->len has grown by
 * its n_tokens and 0 is returned. Returns -1 with a message in err, changing nothing, when a token id
 * is out of range or a sequence would pass its cache's capacity. */
int sasp_forward(sasp_model *m, sasp_step *steps, int n_steps, char *err, size_t errlen);

/* Multiply-adds per token: the matrices, plus attention over n_ctx positions of context (scores and
 * weighted sum, 2 n_ctx d per layer); n_ctx = 0 gives the matrices alone. For GFLOP/s. */
double sasp_model_flops_per_token(const sasp_model *m, int n_ctx);

#endif
