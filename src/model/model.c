/* model.c: the SAS-P / Pre-LN forward pass of docs/sasp-block.md, the loading of a model's weights,
 * and the per-sequence KV-cache.
 *
 * sasp_forward, at the end of the file, is the model from token to logits: the embedding, then per
 * layer sasp_block or preln_block, then the final norm and the head for the rows whose logits were
 * asked for. A block is the steps of the spec in their order, one call each, with the math in its
 * comments. Each call is a phase: a function of one row (the norms, the residual steps, sasp's output
 * combination) or of one work item (a block of columns of a matrix product, one head of attention
 * over a tile of rows), which for_rows and for_items run across the thread pool; those two helpers are
 * the only code that knows about the pool. The hot loops are calls into the kernel table
 * (simd/kernels.h); what is plain C is O(d) per row: choosing the norm, the reference code's
 * eps-outside rmsnorm, the running sums of the centring term, copies into the cache.
 *
 * What makes it fast, and must stay:
 * - a step carries the new tokens of many sequences, their rows one after another, so every weight
 *   matrix is read once per step for all of them (matrix x matrix); attention runs per sequence;
 * - W_Q, W_K, (W_V) and, for sasp, W1 all read Z: they are one stacked matrix, read in one phase that
 *   also applies RoPE, fills the cache and the centring term and activates the MLP hidden;
 * - sasp's MLP does not wait for the attention: W2 and the attention share one phase;
 * - the items of a phase are numbered biggest first (or, for attention's heads, where their inputs
 *   lie: attention_item) and dealt to the threads in contiguous shares, so that each core streams one
 *   stretch of every matrix; a thread done early takes from the back of the others', so the threads
 *   finish together; a column block goes, as a rule, to the same thread from one step to the next,
 *   and its weights stay in that core's cache;
 * - row phases of a few rows (decode) run on the calling thread: a sasp decode step costs two pool
 *   round trips per layer (three with W_O) and one for the head. A prefill's row phases go to the pool,
 *   four round trips per layer; sasp's output combination could share one with the next block's norm,
 *   but a round trip is a few microseconds against milliseconds of work per layer, and a block whose
 *   last step is its own reads as the spec does.
 * The thresholds behind these choices are named and explained under "how the work is cut". */
#include "model/model.h"

#include <math.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- how the work is cut ---- */

/* A row phase (a norm, a residual step) over at most this many floats of X runs on the calling
 * thread: 32 rows of d = 256, so decode and small batches, where a pool round trip would cost more
 * than it saves. */
#define SERIAL_ROW_FLOATS 8192

/* A matrix product's work item is a block of columns of Y (rows of W) holding about BLOCK_WEIGHTS
 * weights (128 KB of float32: enough work to hide the hand-out, little enough to balance the
 * threads), between BLOCK_COLS_MIN and BLOCK_COLS_MAX columns and a multiple of 16 (whole packed
 * panels of the AVX2 and NEON matmul). */
#define BLOCK_WEIGHTS 32768
#define BLOCK_COLS_MIN 16
#define BLOCK_COLS_MAX 256

/* The stacked product cuts q, k and v by heads (RoPE and the cache work per head) and the MLP hidden
 * into blocks of HIDDEN_BLOCK columns: about one head's width (d_h is 64 in the shipped models), so
 * that its items are of a size. */
#define HIDDEN_BLOCK 64

/* Attention's work item is one head of a tile: up to ATT_TILE consecutive rows of one sequence (the
 * scratch holds ATT_TILE rows of scores per thread). A tile of at least ATT_MATMUL_MIN_ROWS rows
 * computes its scores as one matrix product against a contiguous copy of the head's keys (the cache
 * interleaves the heads), which reads each key once per tile instead of once per row; below that
 * (decode) copying the keys costs more than it saves, and each row reads the cache in place. */
#define ATT_TILE 32
#define ATT_MATMUL_MIN_ROWS 8

/* ---- the model's memory ---- */

/* One layer's weights, as the forward pass uses them: vectors float32, owned by the model; matrices
 * in their type (simd/kernels.h: f32, bf16, q8_0), held by the model's checkpoint (m->ck). */
struct sasp_layer {
    float *norm_w, *norm_b;   /* the block's input norm (N, or N1 for preln); NULL when absent */
    float *norm2_w, *norm2_b; /* preln only: N2 */
    /* The matrices that read the normalised input Z, one stacked [n_in][d] product so one pass
     * computes them all: columns [0,d) W_Q, [d,2d) W_K, then W_V (d columns) when the layer has one,
     * then, for sasp only, W1 (d_ff columns). in[p] is part p (p < 3: q, k, v; in[3]: W1); a work
     * item of the product lies within one part. */
    sasp_weights in[4];
    float *b_in; /* [n_in] biases (zeros where a part has none), or NULL */
    int n_in;
    int has_wv;
    sasp_weights wo;             /* [d][d], .data NULL when absent (identity) */
    sasp_weights w1;             /* preln only: [d_ff][d] */
    sasp_weights w2;             /* [d][d_ff] */
    float *alpha, *beta, *gamma; /* sasp: [n_heads] shaped-attention gains */
    float attn_gain, mlp_gain;   /* sasp: beta_SA, beta_FF */
    float skip_gain;             /* sasp: alpha_skip */
    int has_skip;
};

/* Rows [r0, r1) of one sequence, consecutive positions: attention's unit of work, per head. */
struct att_tile {
    int r0, r1, n_keys; /* n_keys: the positions the last row attends to, its cost */
};

/* Activations of one step, grown to the largest step seen (never shrunk). */
struct sasp_scratch {
    int rows, logit_rows;   /* capacities */
    float *x;               /* [rows][d]    the residual stream X */
    float *z;               /* [rows][d]    normalised input of the current sub-block */
    float *stacked;         /* [rows][n_in] Z times the stacked matrix: q | k | (v) | (sasp: MLP hidden) */
    float *attn;            /* [rows][d]    attention output, heads concatenated */
    float *attn_o;          /* [rows][d]    after W_O */
    float *hidden;          /* [rows][d_ff] preln: MLP hidden */
    float *mlp;             /* [rows][d]    MLP output */
    float *v_mean;          /* [rows][d]    sasp: the centring term, mean of v over positions 0..i */
    float *scores;          /* [threads][ATT_TILE][max_seq_len] attention scores, per thread */
    float *head_keys;       /* [threads][max_seq_len][d_head] one head's keys, contiguous (in scores' block) */
    struct att_tile *tiles; /* [rows] the step's rows cut into attention tiles */
    int n_tiles;
    float *z_final;            /* [logit_rows][d]     final-normed rows that need logits */
    float *logits;             /* [logit_rows][vocab] */
    int *row_seq, *row_pos;    /* [rows] which sequence and position each row is */
    int *logit_src;            /* [logit_rows] the row each logit row comes from */
    float **logit_dst;         /* [logit_rows] where its logits go (the caller's buffers) */
    int *hidden_src;           /* [rows] the rows whose final hidden states were asked for */
    float **hidden_dst;        /* [rows] where each goes (the caller's buffers) */
    struct item_share *shares; /* [threads] the item phases' counters (for_items) */
    sasp_xprep xp;             /* the X of the product in flight, prepared once for its weight type */
    void *xprep_buf;           /* xp's copy of X: sasp_xprep_bytes(rows or logit_rows, max(d_model, d_ff)) */
    size_t xprep_cap;
};

static float *falloc(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes ? bytes : 64);
}

/* ---- loading ---- */

/* The value of a [1] tensor, 0 when the checkpoint has none; *present (when asked) says which. */
static float scalar_of(const sasp_checkpoint *ck, sasp_tensor_kind kind, int l, int *present)
{
    const sasp_tensor *t = sasp_checkpoint_find_kind(ck, kind, l);
    if (present) *present = t != NULL;
    return t ? t->data[0] : 0.0f;
}

/* Matrix KIND of layer L, or an empty one (.data NULL) when the checkpoint has none. */
static sasp_weights weights_of(const sasp_checkpoint *ck, sasp_tensor_kind kind, int l)
{
    const sasp_weights *w = sasp_checkpoint_weights_kind(ck, kind, l);
    return w ? *w : (sasp_weights){0};
}

/* The parts of the stacked product: W_Q, W_K, (W_V), (sasp: W1), and their biases stacked into [n_in]
 * (or NULL). */
static int stack_layer(sasp_model *m, sasp_checkpoint *ck, int l)
{
    const sasp_config *c = &m->cfg;
    sasp_layer *L = &m->layers[l];
    size_t d = (size_t)c->d_model, F = (size_t)c->d_ff;
    int sasp = c->arch == SASP_ARCH_SASP;
    float *bq = sasp_checkpoint_take_kind(ck, SASP_T_BQ, l), *bk = sasp_checkpoint_take_kind(ck, SASP_T_BK, l);
    L->in[0] = weights_of(ck, SASP_T_WQ, l), L->in[1] = weights_of(ck, SASP_T_WK, l);
    L->in[2] = weights_of(ck, SASP_T_WV, l);
    L->has_wv = L->in[2].data != NULL;
    if (sasp) L->in[3] = weights_of(ck, SASP_T_W1, l);
    else L->w1 = weights_of(ck, SASP_T_W1, l);
    L->n_in = (int)(2 * d + (L->has_wv ? d : 0) + (sasp ? F : 0));
    int ok = 1;
    if (bq || bk) {
        L->b_in = calloc((size_t)L->n_in, sizeof(float));
        ok = L->b_in != NULL;
        if (ok && bq) memcpy(L->b_in, bq, d * sizeof(float));
        if (ok && bk) memcpy(L->b_in + d, bk, d * sizeof(float));
    }
    free(bq), free(bk);
    return ok ? 0 : -1;
}

static int load_layer(sasp_model *m, sasp_checkpoint *ck, int l)
{
    sasp_layer *L = &m->layers[l];
    L->norm_w = sasp_checkpoint_take_kind(ck, SASP_T_NORM_W, l);
    L->norm_b = sasp_checkpoint_take_kind(ck, SASP_T_NORM_B, l);
    L->norm2_w = sasp_checkpoint_take_kind(ck, SASP_T_NORM2_W, l);
    L->norm2_b = sasp_checkpoint_take_kind(ck, SASP_T_NORM2_B, l);
    if (stack_layer(m, ck, l)) return -1;
    L->wo = weights_of(ck, SASP_T_WO, l);
    L->w2 = weights_of(ck, SASP_T_W2, l);
    if (m->cfg.arch == SASP_ARCH_SASP) {
        L->alpha = sasp_checkpoint_take_kind(ck, SASP_T_ALPHA, l);
        L->beta = sasp_checkpoint_take_kind(ck, SASP_T_BETA, l);
        L->gamma = sasp_checkpoint_take_kind(ck, SASP_T_GAMMA, l);
        L->attn_gain = scalar_of(ck, SASP_T_ATTN_GAIN, l, NULL);
        L->mlp_gain = scalar_of(ck, SASP_T_MLP_GAIN, l, NULL);
        L->skip_gain = scalar_of(ck, SASP_T_SKIP_GAIN, l, &L->has_skip);
    }
    return 0;
}

/* cos and sin of p theta_i for every position p and frequency i < d_h / 2: angles in double, rounded
 * once to float, as the reference does. */
static int rope_tables(sasp_model *m)
{
    const sasp_config *c = &m->cfg;
    int half = c->d_model / c->n_heads / 2;
    size_t n = (size_t)c->max_seq_len * (size_t)half;
    m->rope_cos = falloc(n);
    m->rope_sin = falloc(n);
    if (!m->rope_cos || !m->rope_sin) return -1;
    for (int p = 0; p < c->max_seq_len; p++)
        for (int i = 0; i < half; i++) {
            double theta_i = pow((double)c->rope_theta, -2.0 * i / (2.0 * half));
            double angle = (double)p * theta_i;
            m->rope_cos[(size_t)p * half + i] = (float)cos(angle);
            m->rope_sin[(size_t)p * half + i] = (float)sin(angle);
        }
    return 0;
}

/* Every matrix the forward pass multiplies by, once (a tied head is the embedding's copy): up to
 * 4 + 3 per layer and the head. */
static int product_matrices(const sasp_model *m, const sasp_weights **out)
{
    int n = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const sasp_layer *L = &m->layers[l];
        const sasp_weights *mine[] = {&L->in[0], &L->in[1], &L->in[2], &L->in[3], &L->wo, &L->w1, &L->w2};
        for (size_t i = 0; i < sizeof mine / sizeof *mine; i++)
            if (mine[i]->data) out[n++] = mine[i];
    }
    out[n++] = &m->lm_head;
    return n;
}

/* The q8_0 matrices as panels (simd/kernels.h), in one allocation the model owns: what a table with
 * q8_panels reads instead of packing W on every call (the same bits: only speed depends on it, so a
 * failure to allocate is no error). */
static void pack_panels(sasp_model *m)
{
    if (m->panels) return;
    const sasp_weights **all = malloc(sizeof *all * (7 * (size_t)m->cfg.n_layers + 1));
    if (!all) return;
    int n = product_matrices(m, all);
    size_t bytes = 0;
    for (int i = 0; i < n; i++)
        if (all[i]->type == SASP_WT_Q8_0)
            bytes += sasp_q8_0_panels_bytes(all[i]->m, all[i]->k) + 2 * sasp_q8_0_panel_scale_count(all[i]->m, all[i]->k);
    if (bytes > 0 && (m->panels = aligned_alloc(64, (bytes + 63) & ~(size_t)63))) {
        unsigned char *at = m->panels;
        for (int i = 0; i < n; i++) {
            sasp_weights *w = (sasp_weights *)all[i]; /* the model's own */
            if (w->type != SASP_WT_Q8_0) continue;
            uint8_t *p = at;
            uint16_t *s = (uint16_t *)(void *)(at + sasp_q8_0_panels_bytes(w->m, w->k));
            sasp_q8_0_pack_panels(w, p, s);
            w->panels = p, w->panel_scales = s;
            at += sasp_q8_0_panels_bytes(w->m, w->k) + 2 * sasp_q8_0_panel_scale_count(w->m, w->k);
        }
    }
    free(all);
}

sasp_model *sasp_model_load(const char *dir, int n_threads, char *err, size_t errlen)
{
    return sasp_model_load_as(dir, n_threads, SASP_WEIGHTS_AS_STORED, err, errlen);
}

int sasp_weights_parse(const char *name)
{
    if (!name) return SASP_WEIGHTS_UNKNOWN;
    if (!strcmp(name, "auto")) return SASP_WEIGHTS_FAST;
    if (!strcmp(name, "stored")) return SASP_WEIGHTS_AS_STORED;
    int t = sasp_wtype_parse(name);
    return t < 0 ? SASP_WEIGHTS_UNKNOWN : t;
}

static int resolve_weights(int weights)
{
    return weights == SASP_WEIGHTS_FAST ? SASP_WEIGHTS_AT_MOST(sasp_kernels_active()->fast_weights) : weights;
}

const char *sasp_model_weights_of(const char *dir, int weights)
{
    char err[256];
    int t = sasp_checkpoint_matrix_type(dir, resolve_weights(weights), err, sizeof err);
    return t < 0 ? NULL : sasp_wtype_name((sasp_wtype)t);
}

sasp_model *sasp_model_load_as(const char *dir, int n_threads, int weights, char *err, size_t errlen)
{
    weights = resolve_weights(weights);
    sasp_checkpoint *ck = sasp_checkpoint_load_as(dir, weights, err, errlen);
    if (!ck) return NULL;
    sasp_model *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->cfg = ck->config;
    const sasp_config *c = &m->cfg;
    for (int i = 0; i < ck->n_tensors; i++) m->n_params += ck->tensors[i].numel;
    if (!(m->dir = strdup(dir))) goto oom;
    m->tok_emb = weights_of(ck, SASP_T_TOK_EMB, 0);
    m->pos_emb = sasp_checkpoint_take_kind(ck, SASP_T_POS_EMB, 0);
    if (!(m->layers = calloc((size_t)c->n_layers, sizeof *m->layers))) goto oom;
    for (int l = 0; l < c->n_layers; l++)
        if (load_layer(m, ck, l)) goto oom;
    m->norm_f_w = sasp_checkpoint_take_kind(ck, SASP_T_NORM_F_W, 0);
    m->norm_f_b = sasp_checkpoint_take_kind(ck, SASP_T_NORM_F_B, 0);
    m->lm_head = c->tie_embeddings ? m->tok_emb : weights_of(ck, SASP_T_LM_HEAD, 0);
    m->ck = ck; /* it holds the matrices */
    ck = NULL;

    if (c->position == SASP_POS_ROPE && rope_tables(m)) goto oom;
    m->kernels = sasp_kernels_active();
    if (m->kernels->q8_panels) pack_panels(m);
    if (!(m->pool = sasp_pool_new(n_threads))) goto oom;
    if (!(m->scratch = calloc(1, sizeof *m->scratch))) goto oom;
    return m;
oom:
    snprintf(err, errlen, "%s: out of memory loading the model", dir);
    sasp_checkpoint_free(ck);
    sasp_model_free(m);
    return NULL;
}

static void free_layer(sasp_layer *L)
{
    free(L->norm_w), free(L->norm_b), free(L->norm2_w), free(L->norm2_b);
    free(L->b_in);
    free(L->alpha), free(L->beta), free(L->gamma);
}

static void free_row_buffers(struct sasp_scratch *s)
{
    free(s->x), free(s->z), free(s->stacked), free(s->attn), free(s->attn_o), free(s->hidden), free(s->mlp);
    free(s->v_mean), free(s->row_seq), free(s->row_pos), free(s->tiles), free(s->hidden_src), free(s->hidden_dst);
}

static void free_logit_buffers(struct sasp_scratch *s)
{
    free(s->z_final), free(s->logits), free(s->logit_src), free(s->logit_dst);
}

void sasp_model_free(sasp_model *m)
{
    if (!m) return;
    if (m->layers)
        for (int l = 0; l < m->cfg.n_layers; l++) free_layer(&m->layers[l]);
    free(m->layers);
    sasp_checkpoint_free(m->ck);
    free(m->pos_emb), free(m->norm_f_w), free(m->norm_f_b);
    free(m->rope_cos), free(m->rope_sin), free(m->panels);
    sasp_pool_free(m->pool);
    if (m->scratch) {
        free_row_buffers(m->scratch), free_logit_buffers(m->scratch);
        free(m->scratch->scores), free(m->scratch->shares), free(m->scratch->xprep_buf), free(m->scratch);
    }
    free(m->dir);
    free(m);
}

void sasp_model_set_kernels(sasp_model *m, const sasp_kernels *kernels)
{
    m->kernels = kernels;
    if (kernels->q8_panels) pack_panels(m);
}

sasp_model_info sasp_model_describe(const sasp_model *m)
{
    sasp_model_info info = {.dir = m->dir, .n_params = m->n_params, .kernels = m->kernels->name, .threads = sasp_pool_size(m->pool)};
    if (m->cfg.n_layers > 0) info.weights = sasp_wtype_name(m->layers[0].in[0].type);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const sasp_layer *L = &m->layers[l];
        info.layers_with_wv += L->has_wv;
        info.layers_with_wo += L->wo.data != NULL;
        info.layers_with_skip += L->has_skip;
        info.qk_bias |= L->b_in != NULL;
    }
    return info;
}

/* ---- KV-cache ---- */

sasp_kv *sasp_kv_new(const sasp_model *m, int cap)
{
    const sasp_config *c = &m->cfg;
    if (cap <= 0 || cap > c->max_seq_len) cap = c->max_seq_len;
    sasp_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return NULL;
    size_t n = (size_t)c->n_layers * (size_t)cap * (size_t)c->d_model;
    int sasp = c->arch == SASP_ARCH_SASP;
    kv->cap = cap;
    kv->keys = falloc(n);
    kv->values = falloc(n);
    if (sasp) kv->value_sum = calloc((size_t)c->n_layers * c->d_model, sizeof(double));
    if (!kv->keys || !kv->values || (sasp && !kv->value_sum)) {
        sasp_kv_free(kv);
        return NULL;
    }
    return kv;
}

void sasp_kv_reset(sasp_kv *kv)
{
    kv->len = 0;
    /* value_sum is [n_layers][d]; its size is not stored, so it is cleared lazily: centre_cols zeroes
     * a layer's running sum whenever a sequence starts at position 0. */
}

void sasp_kv_truncate(const sasp_model *m, sasp_kv *kv, int len)
{
    const sasp_config *c = &m->cfg;
    size_t d = (size_t)c->d_model;
    if (len < 0) len = 0;
    if (len > kv->len) len = kv->len;
    kv->len = len;
    if (!kv->value_sum) return;
    for (int l = 0; l < c->n_layers; l++) {
        double *sum = kv->value_sum + (size_t)l * d;
        const float *v = kv->values + (size_t)l * kv->cap * d;
        for (size_t i = 0; i < d; i++) sum[i] = 0;
        for (int p = 0; p < len; p++) /* position by position, as centre_cols added them */
            for (size_t i = 0; i < d; i++) sum[i] += v[(size_t)p * d + i];
    }
}

int sasp_kv_copy(const sasp_model *m, sasp_kv *dst, const sasp_kv *src, int len)
{
    const sasp_config *c = &m->cfg;
    size_t d = (size_t)c->d_model;
    if (len > src->len) len = src->len;
    if (len < 0 || len > dst->cap) return -1;
    for (int l = 0; l < c->n_layers; l++) {
        size_t at_src = (size_t)l * src->cap * d, at_dst = (size_t)l * dst->cap * d;
        memcpy(dst->keys + at_dst, src->keys + at_src, (size_t)len * d * sizeof(float));
        memcpy(dst->values + at_dst, src->values + at_src, (size_t)len * d * sizeof(float));
    }
    dst->len = len;
    sasp_kv_truncate(m, dst, len); /* the centring sums of exactly these positions */
    return 0;
}

void sasp_kv_free(sasp_kv *kv)
{
    if (!kv) return;
    free(kv->keys), free(kv->values), free(kv->value_sum);
    free(kv);
}

/* ---- the two ways a phase runs on the pool ---- */

/* One step in flight: what every phase reads. */
struct batch {
    const sasp_model *m;
    const sasp_kernels *kern;
    struct sasp_scratch *s;
    sasp_step *steps; /* the sequences */
    int n_steps;
    int rows, logit_rows; /* rows of X (the step's new tokens), and of them the rows that need logits */
    int d, dh;            /* d_model, head size */
    int layer;            /* the layer being computed */
};

typedef void row_fn(const struct batch *b, const void *arg, int i);
typedef void item_fn(const struct batch *b, const void *arg, int item, int ith);

struct row_run {
    const struct batch *b;
    row_fn *fn;
    const void *arg;
    int n;
};

static void row_worker(void *p, int ith, int nth)
{
    const struct row_run *run = p;
    int lo, hi;
    sasp_split(run->n, ith, nth, &lo, &hi);
    for (int i = lo; i < hi; i++) run->fn(run->b, run->arg, i);
}

/* fn(b, arg, i) for each row i < n: on the calling thread when that is SERIAL_ROW_FLOATS or fewer
 * floats of X, else in contiguous shares on the pool (rows cost the same). */
static void for_rows(const struct batch *b, int n, row_fn *fn, const void *arg)
{
    struct row_run run = {b, fn, arg, n};
    if ((size_t)n * (size_t)b->d <= SERIAL_ROW_FLOATS) row_worker(&run, 0, 1);
    else sasp_pool_run(b->m->pool, row_worker, &run);
}

/* A thread's share of an item phase: one contiguous run of the items, [front, back), in one word on a
 * cache line of its own. Its owner takes items from the front, so it streams through one stretch of each
 * matrix in order; a thread whose own share is done takes from the back of the others', so the threads
 * still finish together when one of them is slowed, and the owner's stream goes on unbroken. Both take
 * an item by a compare-and-swap on the share's word.
 * Measured on the 2-vCPU Zen 5 VM of docs/performance.md, q8_0, against the earlier shares (items ith,
 * ith + nth, ...: each thread's reads of a matrix came in pieces of a few KB with the other's between,
 * which the cores' prefetchers overran), alternated in one process: decode at batch 1 on two threads
 * 1.11x (A) and 1.18x (B), batch 8 1.15x (A), prefill 1.03x (A); the same on one thread. One counter
 * for all (the way before those) moved its cache line between the cores at every item. */
struct item_share {
    alignas(64) _Atomic uint64_t range; /* front << 32 | back */
};

struct item_run {
    const struct batch *b;
    item_fn *fn;
    const void *arg;
    struct item_share *shares; /* [threads] */
};

/* The front item of a share (its owner's next) or its back one (a thief's), or -1 when it is empty. */
static int claim(struct item_share *share, int from_back)
{
    uint64_t r = atomic_load_explicit(&share->range, memory_order_relaxed);
    for (;;) {
        uint32_t front = (uint32_t)(r >> 32), back = (uint32_t)r;
        if (front >= back) return -1;
        uint64_t rest = from_back ? r - 1 : r + ((uint64_t)1 << 32);
        if (atomic_compare_exchange_weak_explicit(&share->range, &r, rest, memory_order_relaxed, memory_order_relaxed))
            return (int)(from_back ? back - 1 : front);
    }
}

static void item_worker(void *p, int ith, int nth)
{
    struct item_run *run = p;
    for (int j = 0; j < nth; j++) /* its own share first, then the others' */
        for (int it; (it = claim(&run->shares[(ith + j) % nth], j > 0)) >= 0;)
            run->fn(run->b, run->arg, it, ith);
}

/* fn(b, arg, item, ith) for each item < n on the pool, each thread's share a contiguous run of them;
 * callers number their items biggest first (unless where the data lies decides: attention_item), so
 * the phase ends on small items (a share's back) with every thread busy. ith is the thread's index,
 * for its share of the scratch. */
static void for_items(const struct batch *b, int n, item_fn *fn, const void *arg)
{
    struct item_run run = {.b = b, .fn = fn, .arg = arg, .shares = b->s->shares};
    for (int t = 0, nth = sasp_pool_size(b->m->pool); t < nth; t++) { /* published by the pool's release */
        int lo, hi;
        sasp_split(n, t, nth, &lo, &hi);
        atomic_store_explicit(&run.shares[t].range, (uint64_t)lo << 32 | (uint32_t)hi, memory_order_relaxed);
    }
    sasp_pool_run_claimed(b->m->pool, item_worker, &run); /* item_worker on the caller takes what is left */
}

/* ---- row phases ---- */

/* y = N(x) with the norm a layer stores: none (w == NULL: a copy), layernorm (with a bias) or rmsnorm.
 * With eps_outside ("rmsnorm_eps_outside", the reference code's RMSNorm) rmsnorm is
 * y = w x / (sqrt(mean(x^2)) + eps), in plain C: no kernel computes that form. */
static void norm_row(const sasp_kernels *kern, float *y, const float *x, const float *w, const float *bias, int d,
                     float eps, int eps_outside)
{
    if (!w) memcpy(y, x, (size_t)d * sizeof *y);
    else if (bias) kern->layernorm(y, x, w, bias, d, eps);
    else if (eps_outside) {
        double ss = 0;
        for (int i = 0; i < d; i++) ss += (double)x[i] * x[i];
        float inv = (float)(1.0 / (sqrt(ss / d) + eps));
        for (int i = 0; i < d; i++) y[i] = w[i] * (x[i] * inv);
    } else kern->rmsnorm(y, x, w, d, eps);
}

/* For row r = src[i] (or i without src): X[r] += add[r] when add is set, then out[i] = N(X[r]) when
 * out is set. */
struct residual {
    const float *add;
    const float *norm_w, *norm_b;
    float *out;
    const int *src;
};

static void residual_row(const struct batch *b, const void *arg, int i)
{
    const struct residual *res = arg;
    const sasp_config *c = &b->m->cfg;
    int r = res->src ? res->src[i] : i;
    float *x = b->s->x + (size_t)r * b->d;
    if (res->add) b->kern->axpy(x, 1.0f, res->add + (size_t)r * b->d, b->d);
    if (res->out)
        norm_row(b->kern, res->out + (size_t)i * b->d, x, res->norm_w, res->norm_b, b->d, c->norm_eps,
                 c->rmsnorm_eps_outside);
}

/* out = N(X), every row */
static void norm_rows(const struct batch *b, const float *norm_w, const float *norm_b, float *out)
{
    for_rows(b, b->rows, residual_row, &(struct residual){.norm_w = norm_w, .norm_b = norm_b, .out = out});
}

/* X += add, then out = N(X), every row */
static void add_norm_rows(const struct batch *b, const float *add, const float *norm_w, const float *norm_b,
                          float *out)
{
    for_rows(b, b->rows, residual_row,
             &(struct residual){.add = add, .norm_w = norm_w, .norm_b = norm_b, .out = out});
}

/* X += add, every row */
static void add_rows(const struct batch *b, const float *add)
{
    for_rows(b, b->rows, residual_row, &(struct residual){.add = add});
}

/* sasp's output for row r: X = beta_SA attn + beta_FF mlp (+ alpha_skip X), summed in mlp's row. */
static void sasp_output_row(const struct batch *b, const void *attn_out, int r)
{
    const sasp_layer *L = &b->m->layers[b->layer];
    const sasp_kernels *kern = b->kern;
    int d = b->d;
    float *x = b->s->x + (size_t)r * d, *y = b->s->mlp + (size_t)r * d;
    kern->scale(y, L->mlp_gain, d);
    kern->axpy(y, L->attn_gain, (const float *)attn_out + (size_t)r * d, d);
    if (L->has_skip) kern->axpy(y, L->skip_gain, x, d);
    memcpy(x, y, (size_t)d * sizeof *x);
}

/* ---- item phases: matrix products ---- */

static void activate(const struct batch *b, float *x, int n)
{
    sasp_act act = b->m->cfg.activation;
    if (act == SASP_ACT_RELU) b->kern->relu(x, n);
    else if (act == SASP_ACT_GELU) b->kern->gelu(x, n);
    else b->kern->silu(x, n);
}

/* Y = X W^T, then act(Y) when act is set: Y is n x cols (row stride ldy), X is n x n_inner (prepared
 * for W's type: prepare below), W is cols x n_inner (W->m x W->k, of any weight type); work items are
 * blocks of `block` columns. */
struct matmul {
    float *y;
    int ldy;
    const sasp_xprep *xp;
    const sasp_weights *w;
    int n, cols, n_inner, act;
    int block;
};

static struct matmul matmul_of(float *y, int ldy, const sasp_xprep *xp, const sasp_weights *w, int act)
{
    int block = BLOCK_WEIGHTS / (w->k > 0 ? w->k : 1);
    block = block < BLOCK_COLS_MIN ? BLOCK_COLS_MIN : block > BLOCK_COLS_MAX ? BLOCK_COLS_MAX
                                                                             : block & ~15;
    return (struct matmul){y, ldy, xp, w, xp->n, w->m, w->k, act, block};
}

static int matmul_items(const struct matmul *mm) { return (mm->cols + mm->block - 1) / mm->block; }

/* Columns [lo, hi) of block `item`. */
static void block_cols(const struct matmul *mm, int item, int *lo, int *hi)
{
    *lo = item * mm->block;
    *hi = *lo + mm->block < mm->cols ? *lo + mm->block : mm->cols;
}

static void matmul_block(const struct batch *b, const struct matmul *mm, int item)
{
    int lo, hi;
    block_cols(mm, item, &lo, &hi);
    sasp_weights cols = sasp_weights_rows(mm->w, lo, hi);
    b->kern->matmul_xp(mm->y + lo, mm->ldy, mm->xp, &cols, NULL);
    if (mm->act)
        for (int r = 0; r < mm->n; r++) activate(b, mm->y + (size_t)r * mm->ldy + lo, hi - lo);
}

static void matmul_item(const struct batch *b, const void *mm, int item, int ith)
{
    (void)ith;
    matmul_block(b, mm, item);
}

static void prepare_row(const struct batch *b, const void *xp, int i)
{
    b->kern->xprep_rows(xp, i, i + 1);
}

/* s->xp = the first n rows of X (row stride ldx, k columns) prepared for products with weights of
 * `type` (rounded to bf16 or quantized once, not once per work item: kernels.h, sasp_xprep). */
static const sasp_xprep *prepare(const struct batch *b, sasp_wtype type, const float *x, int ldx, int n, int k)
{
    sasp_xprep *xp = &b->s->xp;
    b->kern->xprep_init(xp, b->s->xprep_buf, type, x, ldx, n, k);
    if (type != SASP_WT_F32) for_rows(b, n, prepare_row, xp);
    return xp;
}

/* Y = X W^T (then act(Y) when act), for every row. */
static void matmul(const struct batch *b, float *y, int ldy, const float *x, int ldx, const sasp_weights *w, int act)
{
    struct matmul mm = matmul_of(y, ldy, prepare(b, w->type, x, ldx, b->rows, w->k), w, act);
    for_items(b, matmul_items(&mm), matmul_item, &mm);
}

/* The head, one block of vocabulary columns per item, each copied to the sequences' buffers. */
static void logits_item(const struct batch *b, const void *head, int item, int ith)
{
    (void)ith;
    const struct matmul *mm = head;
    int lo, hi;
    matmul_block(b, mm, item);
    block_cols(mm, item, &lo, &hi);
    for (int i = 0; i < mm->n; i++)
        memcpy(b->s->logit_dst[i] + lo, mm->y + (size_t)i * mm->ldy + lo, (size_t)(hi - lo) * sizeof(float));
}

/* ---- item phase: the stacked product ---- */

/* q and k, and v when the layer has W_V: the parts of the stacked product cut by heads. */
static int head_parts(const sasp_layer *L) { return L->has_wv ? 3 : 2; }

/* sasp: for columns [c0, c1) of v, the running sum over positions (double, in position order) and
 * the centring term v_mean[r] = sum / (pos + 1). Rows of a sequence come in position order. */
static void centre_cols(const struct batch *b, int c0, int c1)
{
    const struct sasp_scratch *s = b->s;
    size_t d = (size_t)b->d;
    for (int r = 0; r < b->rows; r++) {
        int pos = s->row_pos[r];
        const sasp_kv *kv = b->steps[s->row_seq[r]].kv;
        double *sum = kv->value_sum + (size_t)b->layer * d;
        const float *v = kv->values + ((size_t)b->layer * kv->cap + (size_t)pos) * d;
        float *mean = s->v_mean + (size_t)r * d;
        if (pos == 0)
            for (int i = c0; i < c1; i++) sum[i] = 0;
        for (int i = c0; i < c1; i++) {
            sum[i] += v[i];
            mean[i] = (float)(sum[i] / (pos + 1));
        }
    }
}

/* Head columns [col0, col0 + d_h) of part 0 (q), 1 (k) or 2 (v) are computed: RoPE on q and k, k into
 * the cache, and v (Z itself when the layer has no W_V, written by the k item) into the cache with,
 * for sasp, its running mean. */
static void finish_head(const struct batch *b, const sasp_layer *L, int part, int col0)
{
    const sasp_model *m = b->m;
    const struct sasp_scratch *s = b->s;
    int d = b->d, dh = b->dh, half = dh / 2;
    int writes_v = part == 2 || (part == 1 && !L->has_wv);
    for (int r = 0; r < b->rows; r++) {
        int pos = s->row_pos[r];
        sasp_kv *kv = b->steps[s->row_seq[r]].kv;
        float *col = s->stacked + (size_t)r * L->n_in + (size_t)part * d + col0;
        size_t at = ((size_t)b->layer * kv->cap + (size_t)pos) * d + col0;
        if (part < 2 && m->rope_cos)
            b->kern->rope(col, m->rope_cos + (size_t)pos * half, m->rope_sin + (size_t)pos * half, half);
        if (part == 1) memcpy(kv->keys + at, col, (size_t)dh * sizeof(float));
        if (writes_v) memcpy(kv->values + at, part == 2 ? col : s->z + (size_t)r * d + col0, (size_t)dh * sizeof(float));
    }
    if (writes_v && m->cfg.arch == SASP_ARCH_SASP) centre_cols(b, col0, col0 + dh);
}

/* Item `item`: one head of q, of k or of v (items [0, head_parts * H)), else a block of HIDDEN_BLOCK
 * columns of the MLP hidden. It computes its columns of Z W_in^T (+ b_in) for every row and finishes
 * them: finish_head, or the activation. */
static void stacked_item(const struct batch *b, const void *arg, int item, int ith)
{
    (void)arg, (void)ith;
    const sasp_layer *L = &b->m->layers[b->layer];
    const struct sasp_scratch *s = b->s;
    int d = b->d, n_in = L->n_in, head_items = head_parts(L) * b->m->cfg.n_heads;
    int lo = item < head_items ? item * b->dh : head_parts(L) * d + (item - head_items) * HIDDEN_BLOCK;
    int hi = item < head_items ? lo + b->dh : (lo + HIDDEN_BLOCK < n_in ? lo + HIDDEN_BLOCK : n_in);
    /* the part the columns lie in, a head of q, k or v, or the block of W1 (after the heads' parts) */
    int part = item < head_items ? lo / d : 3, p0 = item < head_items ? part * d : head_parts(L) * d;
    sasp_weights cols = sasp_weights_rows(&L->in[part], lo - p0, hi - p0);
    b->kern->matmul_xp(s->stacked + lo, n_in, &s->xp, &cols, L->b_in ? L->b_in + lo : NULL);
    if (item < head_items) finish_head(b, L, lo / d, lo % d);
    else
        for (int r = 0; r < b->rows; r++) activate(b, s->stacked + (size_t)r * n_in + lo, hi - lo);
}

/* stacked = Z W_in^T (+ b_in), and each head and block finished, for every row. */
static void stacked_product(const struct batch *b)
{
    const sasp_layer *L = &b->m->layers[b->layer];
    int hidden = L->n_in - head_parts(L) * b->d;
    prepare(b, L->in[0].type, b->s->z, b->d, b->rows, b->d); /* a part of another type reads Z itself */
    for_items(b, head_parts(L) * b->m->cfg.n_heads + (hidden + HIDDEN_BLOCK - 1) / HIDDEN_BLOCK, stacked_item, NULL);
}

/* ---- item phase: attention (and sasp's W2 beside it) ---- */

/* Head h of tile t's rows, into attn: P = softmax(q k^T / sqrt(d_h) + M), then o = P v, and for sasp
 * o = alpha_h v_i + beta_h P v - gamma_h mean_{j<=i} v_j. Keys and values come from the cache, which
 * holds this step's rows too. */
static void attend(const struct batch *b, int ith, const struct att_tile *t, int h)
{
    const sasp_layer *L = &b->m->layers[b->layer];
    const sasp_kernels *kern = b->kern;
    const struct sasp_scratch *s = b->s;
    int d = b->d, dh = b->dh, ctx = b->m->cfg.max_seq_len, n_in = L->n_in;
    float scale = 1.0f / sqrtf((float)dh);
    const sasp_kv *kv = b->steps[s->row_seq[t->r0]].kv;
    size_t base = (size_t)b->layer * kv->cap * d + (size_t)h * dh;
    const float *keys = kv->keys + base, *values = kv->values + base;
    const float *q = s->stacked + (size_t)h * dh; /* row r's query is q + r n_in */
    float *scores = s->scores + (size_t)ith * ATT_TILE * ctx;
    int as_matmul = t->r1 - t->r0 >= ATT_MATMUL_MIN_ROWS;
    if (as_matmul) {
        float *kh = s->head_keys + (size_t)ith * ctx * dh;
        for (int j = 0; j < t->n_keys; j++) memcpy(kh + (size_t)j * dh, keys + (size_t)j * d, (size_t)dh * sizeof *kh);
        kern->matmul(scores, ctx, q + (size_t)t->r0 * n_in, n_in, kh, NULL, t->r1 - t->r0, t->n_keys, dh);
    }
    for (int r = t->r0; r < t->r1; r++) {
        int pos = s->row_pos[r];
        float *sc = scores + (size_t)(r - t->r0) * ctx;
        float *o = s->attn + (size_t)r * d + (size_t)h * dh;
        if (as_matmul) kern->scale(sc, scale, pos + 1);
        else kern->attn_scores(sc, q + (size_t)r * n_in, keys, d, pos + 1, dh, scale);
        kern->softmax(sc, pos + 1);
        memset(o, 0, (size_t)dh * sizeof *o);
        kern->attn_accum(o, sc, values, d, pos + 1, dh);
        if (b->m->cfg.arch == SASP_ARCH_SASP) {
            kern->scale(o, L->beta[h], dh);
            kern->axpy(o, L->alpha[h], values + (size_t)pos * d, dh);
            kern->axpy(o, -L->gamma[h], s->v_mean + (size_t)r * d + (size_t)h * dh, dh);
        }
    }
}

/* Items: one per (tile, head), the tiles longest context first, then W2's blocks when there is a w2.
 * The heads go first for where their inputs are: the stacked product's first items (q and k, and the
 * cache's new row) fell to the first thread's share, and the first items here fall to it again, so
 * that it reads them from its own cache rather than across the cores. In prefill the tiles are also
 * the biggest items. Measured against W2's blocks first (alternated in one process, q8_0, 2 threads,
 * old time over new): decode b1 A 1.06-1.09x, B 1.05x; b8 A 0.97x, B 1.07x; prefill 1.01-1.02x. */
static void attention_item(const struct batch *b, const void *w2, int item, int ith)
{
    int H = b->m->cfg.n_heads, heads = b->s->n_tiles * H;
    if (item < heads) attend(b, ith, &b->s->tiles[item / H], item % H);
    else matmul_block(b, w2, item - heads);
}

/* attn for every row and head; with w2 (sasp), mlp = h W2^T in the same phase. */
static void attention(const struct batch *b, const struct matmul *w2)
{
    for_items(b, (w2 ? matmul_items(w2) : 0) + b->s->n_tiles * b->m->cfg.n_heads, attention_item, w2);
}

static int by_keys_desc(const void *a, const void *b)
{
    int ka = ((const struct att_tile *)a)->n_keys, kb = ((const struct att_tile *)b)->n_keys;
    return (ka < kb) - (ka > kb);
}

/* Cut the step's rows into tiles of up to ATT_TILE rows of one sequence, longest context first. */
static void make_tiles(const struct batch *b)
{
    struct sasp_scratch *s = b->s;
    s->n_tiles = 0;
    for (int r = 0; r < b->rows;) {
        int r1 = r + 1;
        while (r1 < b->rows && r1 - r < ATT_TILE && s->row_seq[r1] == s->row_seq[r]) r1++;
        s->tiles[s->n_tiles++] = (struct att_tile){r, r1, s->row_pos[r1 - 1] + 1};
        r = r1;
    }
    qsort(s->tiles, (size_t)s->n_tiles, sizeof *s->tiles, by_keys_desc);
}

/* ---- the blocks ---- */

/* One SAS-P block (docs/sasp-block.md, "SAS-P: simplified attention sub-block, parallel"), on every
 * row of the step: X becomes the block's output Y. */
static void sasp_block(const struct batch *b)
{
    const sasp_layer *L = &b->m->layers[b->layer];
    struct sasp_scratch *s = b->s;
    int d = b->d, F = b->m->cfg.d_ff, n_in = L->n_in;

    /* 1. Z = N(X), one norm for both branches */
    norm_rows(b, L->norm_w, L->norm_b, s->z);
    /* 2., 3. and the first half of 5., in one pass over the stacked matrix:
     *    [q | k | (v) | h] = Z [W_Q; W_K; (W_V); W1]^T (+ b_Q, b_K), RoPE on q and k, k and v into the
     *    cache (v = Z when the layer has no W_V) with v's running mean for the centring term, h = act(h) */
    stacked_product(b);
    /* 4. attn = concat_h (alpha_h v_i + beta_h P v - gamma_h mean_{j<=i} v_j),
     *    P = softmax(q_h k_h^T / sqrt(d_h) + M); beside it, since it does not wait for attn, the second
     *    half of 5.: mlp = h W2^T */
    struct matmul w2 = matmul_of(s->mlp, d, prepare(b, L->w2.type, s->stacked + (n_in - F), n_in, b->rows, F), &L->w2, 0);
    attention(b, &w2);
    /*    attn = attn W_O^T, when the checkpoint has an output matrix */
    const float *attn = s->attn;
    if (L->wo.data) {
        matmul(b, s->attn_o, d, s->attn, d, &L->wo, 0);
        attn = s->attn_o;
    }
    /* 6. Y = beta_SA attn + beta_FF mlp (+ alpha_skip X when the checkpoint has a skip gain) */
    for_rows(b, b->rows, sasp_output_row, attn);
}

/* One Pre-LN block (docs/sasp-block.md, "The standard block it simplifies"), on every row: X becomes
 * X' + mlp. W_V and W_O are always there. */
static void preln_block(const struct batch *b)
{
    const sasp_layer *L = &b->m->layers[b->layer];
    struct sasp_scratch *s = b->s;
    int d = b->d, F = b->m->cfg.d_ff;

    /* Z = N1(X) */
    norm_rows(b, L->norm_w, L->norm_b, s->z);
    /* [q | k | v] = Z [W_Q; W_K; W_V]^T (+ b_Q, b_K), RoPE on q and k, k and v into the cache */
    stacked_product(b);
    /* attn = concat_h softmax(q_h k_h^T / sqrt(d_h) + M) v_h, then attn W_O^T */
    attention(b, NULL);
    matmul(b, s->attn_o, d, s->attn, d, &L->wo, 0);
    /* X' = X + attn; Z = N2(X') */
    add_norm_rows(b, s->attn_o, L->norm2_w, L->norm2_b, s->z);
    /* mlp = act(Z W1^T) W2^T */
    matmul(b, s->hidden, F, s->z, d, &L->w1, 1);
    matmul(b, s->mlp, d, s->hidden, F, &L->w2, 0);
    /* Y = X' + mlp */
    add_rows(b, s->mlp);
}

/* ---- the step ---- */

/* Every sequence has a cache, tokens in the vocabulary and room for them, and no cache comes twice.
 * *rows and *logit_rows get the step's totals. */
static int check_steps(const sasp_model *m, const sasp_step *steps, int n_steps, int *rows, int *logit_rows, char *err,
                       size_t errlen)
{
    int V = m->cfg.vocab_size;
    *rows = *logit_rows = 0;
    for (int i = 0; i < n_steps; i++) {
        const sasp_step *st = &steps[i];
        if (!st->kv || st->n_tokens < 1 || !st->tokens) {
            snprintf(err, errlen, "sequence %d: no cache or no tokens", i);
            return -1;
        }
        if (st->n_logits < 0 || st->n_logits > st->n_tokens || (st->n_logits > 0 && !st->logits)) {
            snprintf(err, errlen, "sequence %d: asks for %d logits of %d tokens", i, st->n_logits, st->n_tokens);
            return -1;
        }
        if (st->n_hidden < 0 || st->n_hidden > st->n_tokens || (st->n_hidden > 0 && !st->hidden)) {
            snprintf(err, errlen, "sequence %d: asks for %d hidden states of %d tokens", i, st->n_hidden,
                     st->n_tokens);
            return -1;
        }
        if (st->n_tokens > st->kv->cap - st->kv->len) {
            snprintf(err, errlen, "sequence %d: %d + %d tokens exceed its context of %d", i, st->kv->len,
                     st->n_tokens, st->kv->cap);
            return -1;
        }
        for (int t = 0; t < st->n_tokens; t++)
            if (st->tokens[t] < 0 || st->tokens[t] >= V) {
                snprintf(err, errlen, "sequence %d: token id %d is outside the vocabulary [0, %d)", i,
                         st->tokens[t], V);
                return -1;
            }
        for (int j = 0; j < i; j++)
            if (steps[j].kv == st->kv) {
                snprintf(err, errlen, "sequences %d and %d share one cache", j, i);
                return -1;
            }
        *rows += st->n_tokens;
        *logit_rows += st->n_logits;
    }
    return 0;
}

static int reserve_rows(sasp_model *m, int rows)
{
    const sasp_config *c = &m->cfg;
    struct sasp_scratch *s = m->scratch;
    size_t R = (size_t)rows, d = (size_t)c->d_model;
    int n_in = 0;
    for (int l = 0; l < c->n_layers; l++)
        if (m->layers[l].n_in > n_in) n_in = m->layers[l].n_in;
    free_row_buffers(s);
    s->x = falloc(R * d), s->z = falloc(R * d), s->stacked = falloc(R * (size_t)n_in);
    s->attn = falloc(R * d), s->attn_o = falloc(R * d), s->mlp = falloc(R * d);
    s->hidden = c->arch == SASP_ARCH_PRELN ? falloc(R * (size_t)c->d_ff) : NULL;
    s->v_mean = falloc(R * d);
    s->row_seq = malloc(R * sizeof(int)), s->row_pos = malloc(R * sizeof(int));
    s->tiles = malloc(R * sizeof *s->tiles);
    s->hidden_src = malloc(R * sizeof(int)), s->hidden_dst = malloc(R * sizeof(float *));
    s->rows = rows;
    if (!s->x || !s->z || !s->stacked || !s->attn || !s->attn_o || !s->mlp ||
        (c->arch == SASP_ARCH_PRELN && !s->hidden) || !s->v_mean || !s->row_seq || !s->row_pos || !s->tiles ||
        !s->hidden_src || !s->hidden_dst) {
        s->rows = 0;
        return -1;
    }
    return 0;
}

static int reserve_logit_rows(sasp_model *m, int logit_rows)
{
    struct sasp_scratch *s = m->scratch;
    free_logit_buffers(s);
    s->z_final = falloc((size_t)logit_rows * (size_t)m->cfg.d_model);
    s->logits = falloc((size_t)logit_rows * (size_t)m->cfg.vocab_size);
    s->logit_src = malloc((size_t)logit_rows * sizeof(int));
    s->logit_dst = malloc((size_t)logit_rows * sizeof(float *));
    s->logit_rows = logit_rows;
    if (!s->z_final || !s->logits || !s->logit_src || !s->logit_dst) {
        s->logit_rows = 0;
        return -1;
    }
    return 0;
}

/* Grow the scratch to hold a step of `rows` rows and `logit_rows` logit rows; the first time, also
 * the attention scores and one head's keys per thread, for the longest context. */
static int scratch_reserve(sasp_model *m, int rows, int logit_rows)
{
    const sasp_config *c = &m->cfg;
    struct sasp_scratch *s = m->scratch;
    if (!s->scores) {
        size_t threads = (size_t)sasp_pool_size(m->pool), ctx = (size_t)c->max_seq_len;
        s->scores = falloc(threads * ctx * (size_t)(ATT_TILE + c->d_model / c->n_heads));
        if (!s->scores) return -1;
        s->head_keys = s->scores + threads * ATT_TILE * ctx;
    }
    if (!s->shares && !(s->shares = aligned_alloc(64, (size_t)sasp_pool_size(m->pool) * sizeof *s->shares))) return -1;
    if (rows > s->rows && reserve_rows(m, rows)) return -1;
    if (logit_rows > s->logit_rows && reserve_logit_rows(m, logit_rows)) return -1;
    size_t xprep = sasp_xprep_bytes(s->rows > s->logit_rows ? s->rows : s->logit_rows,
                                    c->d_ff > c->d_model ? c->d_ff : c->d_model);
    if (xprep > s->xprep_cap) {
        free(s->xprep_buf);
        s->xprep_cap = (s->xprep_buf = malloc(xprep)) ? xprep : 0;
        if (!s->xprep_buf) return -1;
    }
    return 0;
}

/* X_0 = E[token] (+ P_pos[position]): one row per new token, the sequences one after another; and
 * which sequence and position each row is. */
static void embed(const struct batch *b)
{
    const sasp_model *m = b->m;
    struct sasp_scratch *s = b->s;
    int d = b->d;
    for (int i = 0, r = 0; i < b->n_steps; i++)
        for (int t = 0; t < b->steps[i].n_tokens; t++, r++) {
            int pos = b->steps[i].kv->len + t;
            float *x = s->x + (size_t)r * d;
            s->row_seq[r] = i;
            s->row_pos[r] = pos;
            sasp_weights_row_f32(&m->tok_emb, b->steps[i].tokens[t], x);
            if (m->pos_emb) b->kern->axpy(x, 1.0f, m->pos_emb + (size_t)pos * d, d);
        }
}

/* logits = N_f(X) W_head^T (W_head = E when tied) for the last n_logits rows of each sequence, into
 * the sequences' buffers. */
static void head(const struct batch *b)
{
    const sasp_model *m = b->m;
    struct sasp_scratch *s = b->s;
    int V = m->cfg.vocab_size;
    for (int i = 0, r0 = 0, lr = 0; i < b->n_steps; r0 += b->steps[i].n_tokens, i++) {
        const sasp_step *st = &b->steps[i];
        for (int t = st->n_tokens - st->n_logits; t < st->n_tokens; t++, lr++) {
            s->logit_src[lr] = r0 + t;
            s->logit_dst[lr] = st->logits + (size_t)(t - (st->n_tokens - st->n_logits)) * V;
        }
    }
    for_rows(b, b->logit_rows, residual_row,
             &(struct residual){.norm_w = m->norm_f_w, .norm_b = m->norm_f_b, .out = s->z_final, .src = s->logit_src});
    const sasp_xprep *xp = prepare(b, m->lm_head.type, s->z_final, b->d, b->logit_rows, b->d);
    struct matmul mm = matmul_of(s->logits, V, xp, &m->lm_head, 0);
    for_items(b, matmul_items(&mm), logits_item, &mm);
}

/* The final hidden state N_f(X_L) of hidden_src[i], into hidden_dst[i]. */
static void hidden_row(const struct batch *b, const void *arg, int i)
{
    (void)arg;
    const sasp_model *m = b->m;
    const float *x = b->s->x + (size_t)b->s->hidden_src[i] * b->d;
    norm_row(b->kern, b->s->hidden_dst[i], x, m->norm_f_w, m->norm_f_b, b->d, m->cfg.norm_eps,
             m->cfg.rmsnorm_eps_outside);
}

/* hidden = N_f(X) for the last n_hidden rows of each sequence, into the sequences' buffers. */
static void final_hidden(const struct batch *b)
{
    struct sasp_scratch *s = b->s;
    int n = 0;
    for (int i = 0, r0 = 0; i < b->n_steps; r0 += b->steps[i].n_tokens, i++) {
        const sasp_step *st = &b->steps[i];
        for (int t = st->n_tokens - st->n_hidden; t < st->n_tokens; t++, n++) {
            s->hidden_src[n] = r0 + t;
            s->hidden_dst[n] = st->hidden + (size_t)(t - (st->n_tokens - st->n_hidden)) * b->d;
        }
    }
    if (n > 0) for_rows(b, n, hidden_row, NULL);
}

int sasp_forward(sasp_model *m, sasp_step *steps, int n_steps, char *err, size_t errlen)
{
    const sasp_config *c = &m->cfg;
    int rows, logit_rows;
    if (check_steps(m, steps, n_steps, &rows, &logit_rows, err, errlen)) return -1;
    if (rows == 0) return 0;
    if (scratch_reserve(m, rows, logit_rows)) {
        snprintf(err, errlen, "out of memory for a step of %d tokens", rows);
        return -1;
    }
    struct batch b = {.m = m, .kern = m->kernels, .s = m->scratch, .steps = steps, .n_steps = n_steps, .rows = rows, .logit_rows = logit_rows, .d = c->d_model, .dh = c->d_model / c->n_heads};

    /* X = E[token] (+ P_pos[position]), one row per new token */
    embed(&b);
    make_tiles(&b); /* the rows cut into attention tiles, longest context first */
    /* X = block_l(X) for each layer l */
    for (b.layer = 0; b.layer < c->n_layers; b.layer++) {
        if (c->arch == SASP_ARCH_SASP) sasp_block(&b);
        else preln_block(&b);
    }
    /* logits = N_f(X) W_head^T, for the rows whose logits were asked for */
    if (logit_rows > 0) head(&b);
    /* and N_f(X) itself for the rows whose hidden states were asked for (embeddings) */
    final_hidden(&b);

    for (int i = 0; i < n_steps; i++) steps[i].kv->len += steps[i].n_tokens;
    return 0;
}

double sasp_model_weight_bytes(const sasp_model *m)
{
    const sasp_weights **all = malloc(sizeof *all * (7 * (size_t)m->cfg.n_layers + 1));
    double bytes = 0;
    if (!all) return 0;
    for (int i = 0, n = product_matrices(m, all); i < n; i++) bytes += (double)sasp_weights_bytes(all[i]);
    free(all);
    return bytes;
}

double sasp_model_flops_per_token(const sasp_model *m, int n_ctx)
{
    const sasp_config *c = &m->cfg;
    double d = c->d_model, F = c->d_ff, macs = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const sasp_layer *L = &m->layers[l];
        macs += (double)L->n_in * d;   /* W_Q, W_K, (W_V), (W1 for sasp) */
        if (L->w1.data) macs += F * d; /* preln W1 */
        if (L->wo.data) macs += d * d;
        macs += d * F;                             /* W2 */
        macs += 2.0 * (n_ctx > 0 ? n_ctx : 0) * d; /* Q K^T and P V over the context */
    }
    macs += d * c->vocab_size; /* head */
    return macs;
}
