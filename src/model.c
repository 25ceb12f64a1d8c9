/* model.c: the SAS-P / Pre-LN forward pass, scalar-free: every hot loop is a call into the kernel
 * table m->k (simd/kernels.h), and the matrix products and the attention are split across the
 * thread pool.
 *
 * The math is docs/sasp-block.md. sasp_forward is the whole model, top to bottom:
 * embedding, then per layer the norm, one product with the stacked [W_Q; W_K; (W_V); (W1)] matrix,
 * RoPE and the KV-cache write, the (shaped) attention, the output matrix, the MLP and the residual
 * combination, then the final norm and the head for the rows whose logits were asked for.
 * One step carries the new tokens of many sequences: their rows are concatenated so that every
 * weight matrix is read once per step; attention then runs per sequence, head and row.
 * How the work is cut into phases for the pool is described above sasp_forward's helpers. */
#include "model.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATT_TILE 32 /* rows of one sequence whose attention scores are one matrix product */

/* Rows [r0, r1) of one sequence, consecutive positions: one unit of attention work per head. */
struct att_tile {
    int r0, r1, n_keys; /* n_keys: the positions the last row attends to, its cost */
};

/* Activations of one step, grown to the largest step seen (never shrunk). */
struct sasp_scratch {
    int rows, logit_rows; /* capacities */
    float *x;      /* [rows][d]    the residual stream */
    float *z;      /* [rows][d]    normalised input of the current sub-block */
    float *in;     /* [rows][n_in] output of the stacked matrix: q | k | (v) | (mlp hidden) */
    float *att;    /* [rows][d]    attention output, heads concatenated */
    float *att_o;  /* [rows][d]    after W_O */
    float *hid;    /* [rows][d_ff] preln: MLP hidden */
    float *mlp;    /* [rows][d]    MLP output */
    float *cmean;  /* [rows][d]    sasp: centring term, mean of v over positions 0..i */
    float *scores; /* [threads][ATT_TILE][max_seq_len] attention scores, per thread */
    float *keys_h; /* [threads][max_seq_len][d_head] one head's keys, contiguous (in scores' block) */
    struct att_tile *tiles; /* [rows] the step's rows cut into attention tiles */
    int n_tiles;
    float *zf;     /* [logit_rows][d]     final-normed rows that need logits */
    float *logits; /* [logit_rows][vocab] */
    int *row_seq, *row_pos; /* [rows] which sequence and position each row is */
    int *logit_src;         /* [logit_rows] the row each logit row comes from */
    float **logit_dst;      /* [logit_rows] where its logits go (the caller's buffers) */
};

static float *falloc(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes ? bytes : 64);
}

/* ---- loading ---- */

static float *take_layer(sasp_checkpoint *ck, int l, const char *suffix) {
    char name[96];
    snprintf(name, sizeof name, "layers.%d.%s", l, suffix);
    return sasp_checkpoint_take(ck, name);
}

static float scalar_of(sasp_checkpoint *ck, int l, const char *suffix, int *present) {
    char name[96];
    snprintf(name, sizeof name, "layers.%d.%s", l, suffix);
    const sasp_tensor *t = sasp_checkpoint_find(ck, name);
    if (present) *present = t != NULL;
    return t ? t->data[0] : 0.0f;
}

/* Stack W_Q, W_K, (W_V), (W1) into one [n_in][d] matrix and their biases into [n_in] (or NULL). */
static int stack_layer(sasp_model *m, sasp_checkpoint *ck, int l) {
    const sasp_config *c = &m->cfg;
    sasp_layer *L = &m->layers[l];
    size_t d = (size_t)c->d_model, F = (size_t)c->d_ff;
    int sasp = c->arch == SASP_ARCH_SASP;
    float *wq = take_layer(ck, l, "attn.wq.weight"), *wk = take_layer(ck, l, "attn.wk.weight");
    float *wv = take_layer(ck, l, "attn.wv.weight");
    float *bq = take_layer(ck, l, "attn.wq.bias"), *bk = take_layer(ck, l, "attn.wk.bias");
    float *w1 = take_layer(ck, l, "mlp.w1.weight");
    L->has_wv = wv != NULL;
    L->n_in = (int)(2 * d + (wv ? d : 0) + (sasp ? F : 0));
    L->w_in = falloc((size_t)L->n_in * d);
    int ok = L->w_in != NULL;
    if (ok) {
        float *p = L->w_in;
        memcpy(p, wq, d * d * sizeof(float)), p += d * d;
        memcpy(p, wk, d * d * sizeof(float)), p += d * d;
        if (wv) memcpy(p, wv, d * d * sizeof(float)), p += d * d;
        if (sasp) memcpy(p, w1, F * d * sizeof(float));
    }
    if (ok && (bq || bk)) {
        L->b_in = calloc((size_t)L->n_in, sizeof(float));
        ok = L->b_in != NULL;
        if (ok && bq) memcpy(L->b_in, bq, d * sizeof(float));
        if (ok && bk) memcpy(L->b_in + d, bk, d * sizeof(float));
    }
    if (sasp) free(w1);
    else L->w1 = w1;
    free(wq), free(wk), free(wv), free(bq), free(bk);
    return ok ? 0 : -1;
}

static void free_layer(sasp_layer *L) {
    free(L->norm_w), free(L->norm_b), free(L->norm2_w), free(L->norm2_b);
    free(L->w_in), free(L->b_in), free(L->wo), free(L->w1), free(L->w2);
    free(L->alpha), free(L->beta), free(L->gamma);
}

static void free_scratch(struct sasp_scratch *s) {
    if (!s) return;
    free(s->x), free(s->z), free(s->in), free(s->att), free(s->att_o), free(s->hid), free(s->mlp);
    free(s->cmean), free(s->scores), free(s->tiles), free(s->zf), free(s->logits);
    free(s->row_seq), free(s->row_pos), free(s->logit_src), free(s->logit_dst);
    free(s);
}

sasp_model *sasp_model_load(const char *dir, int n_threads, char *err, size_t errlen) {
    sasp_checkpoint *ck = sasp_checkpoint_load(dir, err, errlen);
    if (!ck) return NULL;
    sasp_model *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->cfg = ck->config;
    const sasp_config *c = &m->cfg;
    int sasp = c->arch == SASP_ARCH_SASP;
    for (int i = 0; i < ck->n_tensors; i++) m->n_params += ck->tensors[i].numel;
    if (!(m->dir = strdup(dir))) goto oom;
    m->tok_emb = sasp_checkpoint_take(ck, "tok_emb.weight");
    m->pos_emb = sasp_checkpoint_take(ck, "pos_emb.weight");
    if (!(m->layers = calloc((size_t)c->n_layers, sizeof *m->layers))) goto oom;
    for (int l = 0; l < c->n_layers; l++) {
        sasp_layer *L = &m->layers[l];
        L->norm_w = take_layer(ck, l, "norm.weight");
        L->norm_b = take_layer(ck, l, "norm.bias");
        L->norm2_w = take_layer(ck, l, "norm2.weight");
        L->norm2_b = take_layer(ck, l, "norm2.bias");
        if (stack_layer(m, ck, l)) goto oom;
        L->wo = take_layer(ck, l, "attn.wo.weight");
        L->w2 = take_layer(ck, l, "mlp.w2.weight");
        if (sasp) {
            L->alpha = take_layer(ck, l, "attn.alpha");
            L->beta = take_layer(ck, l, "attn.beta");
            L->gamma = take_layer(ck, l, "attn.gamma");
            L->attn_gain = scalar_of(ck, l, "attn_gain", NULL);
            L->mlp_gain = scalar_of(ck, l, "mlp_gain", NULL);
            L->skip_gain = scalar_of(ck, l, "skip_gain", &L->has_skip);
        }
    }
    m->norm_f_w = sasp_checkpoint_take(ck, "norm_f.weight");
    m->norm_f_b = sasp_checkpoint_take(ck, "norm_f.bias");
    m->lm_head = c->tie_embeddings ? m->tok_emb : sasp_checkpoint_take(ck, "lm_head.weight");
    sasp_checkpoint_free(ck);
    ck = NULL;

    if (c->position == SASP_POS_ROPE) {
        /* Angles in double, rounded once to float, as the reference does. */
        int half = c->d_model / c->n_heads / 2;
        size_t n = (size_t)c->max_seq_len * (size_t)half;
        m->rope_cos = falloc(n);
        m->rope_sin = falloc(n);
        if (!m->rope_cos || !m->rope_sin) goto oom;
        for (int p = 0; p < c->max_seq_len; p++)
            for (int k = 0; k < half; k++) {
                double inv_freq = pow((double)c->rope_theta, -2.0 * k / (2.0 * half));
                double a = (double)p * inv_freq;
                m->rope_cos[(size_t)p * half + k] = (float)cos(a);
                m->rope_sin[(size_t)p * half + k] = (float)sin(a);
            }
    }
    m->k = sasp_kernels_active();
    if (!(m->pool = sasp_pool_new(n_threads))) goto oom;
    if (!(m->scratch = calloc(1, sizeof *m->scratch))) goto oom;
    return m;
oom:
    snprintf(err, errlen, "%s: out of memory loading the model", dir);
    sasp_checkpoint_free(ck);
    sasp_model_free(m);
    return NULL;
}

void sasp_model_free(sasp_model *m) {
    if (!m) return;
    if (m->layers)
        for (int l = 0; l < m->cfg.n_layers; l++) free_layer(&m->layers[l]);
    free(m->layers);
    if (m->lm_head != m->tok_emb) free(m->lm_head);
    free(m->tok_emb), free(m->pos_emb), free(m->norm_f_w), free(m->norm_f_b);
    free(m->rope_cos), free(m->rope_sin);
    sasp_pool_free(m->pool);
    free_scratch(m->scratch);
    free(m->dir);
    free(m);
}

void sasp_model_set_kernels(sasp_model *m, const sasp_kernels *k) { m->k = k; }

/* ---- KV-cache ---- */

sasp_kv *sasp_kv_new(const sasp_model *m, int cap) {
    const sasp_config *c = &m->cfg;
    if (cap <= 0 || cap > c->max_seq_len) cap = c->max_seq_len;
    sasp_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return NULL;
    size_t n = (size_t)c->n_layers * (size_t)cap * (size_t)c->d_model;
    kv->cap = cap;
    kv->k = falloc(n);
    kv->v = falloc(n);
    if (c->arch == SASP_ARCH_SASP) kv->vsum = calloc((size_t)c->n_layers * c->d_model, sizeof(double));
    if (!kv->k || !kv->v || (c->arch == SASP_ARCH_SASP && !kv->vsum)) {
        sasp_kv_free(kv);
        return NULL;
    }
    return kv;
}

void sasp_kv_reset(sasp_kv *kv) {
    kv->len = 0;
    /* vsum is [n_layers][d]; its size is not stored, so it is cleared lazily: see sasp_forward,
     * which zeroes a layer's running sum whenever a sequence starts at position 0. */
}

void sasp_kv_free(sasp_kv *kv) {
    if (!kv) return;
    free(kv->k), free(kv->v), free(kv->vsum);
    free(kv);
}

/* ---- the phases of a step ----
 *
 * A step runs as a short sequence of phases, each one sasp_pool_run (a round trip of well under a
 * microsecond on idle cores, with the spinning pool), with no O(d)-per-row work left serial between:
 *   rows:    X = the previous layer's output, Z = N(X)            (split by rows; inline when small)
 *   stacked: [q | k | (v) | h] = Z W_in^T, then in the same pass RoPE, the cache writes, the
 *            centring term and the MLP activation                (split by heads / column blocks)
 *   attend:  attention per (rows, head), and for sasp W2 of the MLP, which does not wait for it
 *   matmul:  W_O, and for preln W1 and W2                         (split by column blocks)
 *   logits:  the head for the rows that asked, written straight to each sequence's buffer
 * Work is handed out dynamically from an atomic counter, biggest items first, so a thread that the
 * OS preempts holds up at most one item. Which thread computes a block never changes its value. */

typedef struct {
    sasp_model *m;
    sasp_step *steps;
    int rows, lrows, layer;
    atomic_int next;          /* the next work item of the current phase */
    /* rows phase: fold `finish` (a layer's output) or `add` into X, then `out` = N(X) */
    const sasp_layer *finish;
    const float *add;
    const float *norm_w, *norm_b;
    float *out;
    int n_out;
    const int *src;           /* row of X for each output row, or NULL for the identity */
    /* matmul phase: Y = X W^T (+ bias), then act (if act_on) on the new columns */
    float *y;
    const float *x, *w, *bias;
    int ldy, ldx, n, mcols, kdim, block, act_on;
} pass;

static int grab(pass *p) { return atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed); }

static void run_phase(pass *p, sasp_pool_fn fn) {
    atomic_store_explicit(&p->next, 0, memory_order_relaxed); /* published by the pool's release */
    sasp_pool_run(p->m->pool, fn, p);
}

/* The norm a layer stores: none (w == NULL: copy), layernorm (has a bias) or rmsnorm. With
 * eps_outside ("rmsnorm_eps_outside", the reference code's RMSNorm) rmsnorm is
 * y = w * x / (sqrt(mean(x^2)) + eps); O(d), so plain C. */
static void norm_row(const sasp_kernels *k, float *y, const float *x, const float *w, const float *b,
                     int d, float eps, int eps_outside) {
    if (!w) memcpy(y, x, (size_t)d * sizeof *y);
    else if (b) k->layernorm(y, x, w, b, d, eps);
    else if (eps_outside) {
        double ss = 0;
        for (int i = 0; i < d; i++) ss += (double)x[i] * x[i];
        float inv = (float)(1.0 / (sqrt(ss / d) + eps));
        for (int i = 0; i < d; i++) y[i] = w[i] * (x[i] * inv);
    } else k->rmsnorm(y, x, w, d, eps);
}

static void activate(const sasp_kernels *k, sasp_act act, float *x, int n) {
    if (act == SASP_ACT_RELU) k->relu(x, n);
    else if (act == SASP_ACT_GELU) k->gelu(x, n);
    else k->silu(x, n);
}

/* Row r of X at the end of layer L: sasp Y = beta_FF mlp + beta_SA attn (+ alpha_skip X), with attn
 * after W_O when the layer has one; preln X += mlp. */
static void finish_row(const sasp_model *m, const sasp_layer *L, int r) {
    const sasp_kernels *k = m->k;
    const struct sasp_scratch *s = m->scratch;
    size_t d = (size_t)m->cfg.d_model;
    float *x = s->x + r * d, *y = s->mlp + r * d;
    if (m->cfg.arch == SASP_ARCH_SASP) {
        k->scale(y, L->mlp_gain, (int)d);
        k->axpy(y, L->attn_gain, (L->wo ? s->att_o : s->att) + r * d, (int)d);
        if (L->has_skip) k->axpy(y, L->skip_gain, x, (int)d);
        memcpy(x, y, d * sizeof *x);
    } else k->axpy(x, 1.0f, y, (int)d);
}

/* Phase rows: each of n_out rows (row src[i] of X) gets the pending residual update, then the norm. */
static void rows_worker(void *arg, int ith, int nth) {
    pass *p = arg;
    const sasp_model *m = p->m;
    const sasp_config *c = &m->cfg;
    size_t d = (size_t)c->d_model;
    int lo, hi;
    sasp_split(p->n_out, ith, nth, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        int r = p->src ? p->src[i] : i;
        float *x = m->scratch->x + r * d;
        if (p->finish) finish_row(m, p->finish, r);
        if (p->add) m->k->axpy(x, 1.0f, p->add + r * d, (int)d);
        norm_row(m->k, p->out + i * d, x, p->norm_w, p->norm_b, (int)d, c->norm_eps, c->rmsnorm_eps_outside);
    }
}

/* A rows phase is O(rows d): for a few rows (decode) the caller does it alone, saving a round trip. */
static void run_rows(pass *p) {
    if ((size_t)p->n_out * (size_t)p->m->cfg.d_model <= 8192) rows_worker(p, 0, 1);
    else run_phase(p, rows_worker);
}

/* Columns [lo, hi) of Y = X W^T (+ bias) for all n rows, then the activation on them. */
static void matmul_cols(const pass *p, int lo, int hi) {
    const sasp_model *m = p->m;
    m->k->matmul(p->y + lo, p->ldy, p->x, p->ldx, p->w + (size_t)lo * p->kdim, p->bias ? p->bias + lo : NULL,
                 p->n, hi - lo, p->kdim);
    if (p->act_on)
        for (int r = 0; r < p->n; r++) activate(m->k, m->cfg.activation, p->y + (size_t)r * p->ldy + lo, hi - lo);
}

/* Phase matmul: the columns in blocks of p->block, one block per grab. */
static void matmul_worker(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    pass *p = arg;
    int blocks = (p->mcols + p->block - 1) / p->block;
    for (int b = grab(p); b < blocks; b = grab(p))
        matmul_cols(p, b * p->block, b * p->block + p->block < p->mcols ? b * p->block + p->block : p->mcols);
}

static void set_matmul(pass *p, float *y, int ldy, const float *x, int ldx, const float *w, const float *bias,
                       int n, int mcols, int kdim, int act_on) {
    p->y = y, p->ldy = ldy, p->x = x, p->ldx = ldx, p->w = w, p->bias = bias;
    p->n = n, p->mcols = mcols, p->kdim = kdim, p->act_on = act_on;
    /* Blocks of about 32K weights: enough to hide the grab, small enough to balance. */
    p->block = (int)(32768 / (kdim > 0 ? kdim : 1));
    p->block = p->block < 16 ? 16 : p->block > 256 ? 256 : p->block & ~15;
}

/* sasp: for columns [c0, c1) of v, the running sum over positions (double, in position order) and
 * the centring term cmean[r] = sum / (pos + 1). Rows of a sequence come in position order. */
static void centre_cols(const pass *p, int c0, int c1) {
    const sasp_model *m = p->m;
    struct sasp_scratch *s = m->scratch;
    size_t d = (size_t)m->cfg.d_model;
    for (int r = 0; r < p->rows; r++) {
        int pos = s->row_pos[r];
        const sasp_kv *kv = p->steps[s->row_seq[r]].kv;
        double *sum = kv->vsum + (size_t)p->layer * d;
        const float *v = kv->v + ((size_t)p->layer * kv->cap + (size_t)pos) * d;
        float *cm = s->cmean + r * d;
        if (pos == 0)
            for (int i = c0; i < c1; i++) sum[i] = 0;
        for (int i = c0; i < c1; i++) {
            sum[i] += v[i];
            cm[i] = (float)(sum[i] / (pos + 1));
        }
    }
}

/* Phase stacked: one item per head of q, of k and of v (when the layer has W_V), then blocks of the
 * MLP hidden. Each item computes its columns of [q | k | (v) | h] and finishes them: RoPE on q and k,
 * k and v into the cache (v = Z when the layer has no W_V; the k item of head h writes it), the
 * centring term for sasp, the activation on h. */
static void stacked_worker(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    pass *p = arg;
    const sasp_model *m = p->m;
    const sasp_config *c = &m->cfg;
    const sasp_layer *L = &m->layers[p->layer];
    struct sasp_scratch *s = m->scratch;
    int d = c->d_model, H = c->n_heads, dh = d / H, n_in = L->n_in, l = p->layer;
    int n_heads = (L->has_wv ? 3 : 2) * H, off = (L->has_wv ? 3 : 2) * d; /* head items, then h */
    int hblock = 64;
    int items = n_heads + (n_in - off + hblock - 1) / hblock;
    for (int it = grab(p); it < items; it = grab(p)) {
        int lo = it < n_heads ? it * dh : off + (it - n_heads) * hblock;
        int hi = it < n_heads ? lo + dh : (lo + hblock < n_in ? lo + hblock : n_in);
        m->k->matmul(s->in + lo, n_in, s->z, d, L->w_in + (size_t)lo * d, L->b_in ? L->b_in + lo : NULL, p->rows,
                     hi - lo, d);
        if (it >= n_heads) { /* MLP hidden */
            for (int r = 0; r < p->rows; r++) activate(m->k, c->activation, s->in + (size_t)r * n_in + lo, hi - lo);
            continue;
        }
        int part = lo / d, h0 = lo - part * d; /* 0: q, 1: k, 2: v; h0 = first column of the head */
        int v_here = part == 2 || (part == 1 && !L->has_wv);
        for (int r = 0; r < p->rows; r++) {
            int pos = s->row_pos[r];
            sasp_kv *kv = p->steps[s->row_seq[r]].kv;
            float *col = s->in + (size_t)r * n_in + lo;
            size_t at = ((size_t)l * kv->cap + (size_t)pos) * d + h0;
            if (part < 2 && m->rope_cos) {
                int half = dh / 2;
                m->k->rope(col, m->rope_cos + (size_t)pos * half, m->rope_sin + (size_t)pos * half, half);
            }
            if (part == 1) memcpy(kv->k + at, col, (size_t)dh * sizeof(float));
            if (v_here) {
                const float *v = part == 2 ? col : s->z + (size_t)r * d + h0;
                memcpy(kv->v + at, v, (size_t)dh * sizeof(float));
            }
        }
        if (v_here && c->arch == SASP_ARCH_SASP) centre_cols(p, h0, h0 + dh);
    }
}

/* Attention of tile t's rows for head h, into att (heads concatenated). With several rows the scores
 * are one matrix product against a contiguous copy of the head's keys (the cache interleaves the
 * heads), which reads each key once per block of rows instead of once per row. */
static void attend(const pass *p, int ith, const struct att_tile *t, int h) {
    const sasp_model *m = p->m;
    const sasp_kernels *k = m->k;
    const struct sasp_scratch *s = m->scratch;
    const sasp_layer *L = &m->layers[p->layer];
    int d = m->cfg.d_model, dh = d / m->cfg.n_heads, ctx = m->cfg.max_seq_len;
    float scale = 1.0f / sqrtf((float)dh);
    const sasp_kv *kv = p->steps[s->row_seq[t->r0]].kv;
    size_t base = (size_t)p->layer * kv->cap * d;
    const float *keys = kv->k + base + (size_t)h * dh, *vals = kv->v + base + (size_t)h * dh;
    float *scores = s->scores + (size_t)ith * ATT_TILE * ctx;
    int tiled = t->r1 - t->r0 >= 8;
    if (tiled) {
        float *kh = s->keys_h + (size_t)ith * ctx * dh;
        for (int j = 0; j < t->n_keys; j++) memcpy(kh + (size_t)j * dh, keys + (size_t)j * d, (size_t)dh * sizeof *kh);
        k->matmul(scores, ctx, s->in + (size_t)t->r0 * L->n_in + (size_t)h * dh, L->n_in, kh, NULL, t->r1 - t->r0,
                  t->n_keys, dh);
    }
    for (int r = t->r0; r < t->r1; r++) {
        int pos = s->row_pos[r];
        float *sc = scores + (size_t)(r - t->r0) * ctx;
        float *o = s->att + (size_t)r * d + (size_t)h * dh;
        if (tiled) k->scale(sc, scale, pos + 1);
        else k->attn_scores(sc, s->in + (size_t)r * L->n_in + (size_t)h * dh, keys, d, pos + 1, dh, scale);
        k->softmax(sc, pos + 1);
        memset(o, 0, (size_t)dh * sizeof *o);
        k->attn_accum(o, sc, vals, d, pos + 1, dh);
        if (m->cfg.arch == SASP_ARCH_SASP) {
            /* o = alpha v_i + beta P v - gamma mean_{j<=i} v_j */
            k->scale(o, L->beta[h], dh);
            k->axpy(o, L->alpha[h], vals + (size_t)pos * d, dh);
            k->axpy(o, -L->gamma[h], s->cmean + (size_t)r * d + (size_t)h * dh, dh);
        }
    }
}

/* Phase attend: for sasp first the blocks of mlp = h W2^T (the biggest items), then one item per
 * (tile, head), tiles sorted longest context first. */
static void attend_worker(void *arg, int ith, int nth) {
    (void)nth;
    pass *p = arg;
    const struct sasp_scratch *s = p->m->scratch;
    int H = p->m->cfg.n_heads;
    int mm_blocks = p->w ? (p->mcols + p->block - 1) / p->block : 0;
    for (int it = grab(p); it < mm_blocks + s->n_tiles * H; it = grab(p)) {
        if (it < mm_blocks) {
            int lo = it * p->block;
            matmul_cols(p, lo, lo + p->block < p->mcols ? lo + p->block : p->mcols);
        } else attend(p, ith, &s->tiles[(it - mm_blocks) / H], (it - mm_blocks) % H);
    }
}

/* Cut the step's rows into tiles of up to ATT_TILE rows of one sequence, longest context first. */
static int by_keys_desc(const void *a, const void *b) {
    int ka = ((const struct att_tile *)a)->n_keys, kb = ((const struct att_tile *)b)->n_keys;
    return (ka < kb) - (ka > kb);
}
static void make_tiles(struct sasp_scratch *s, int rows) {
    s->n_tiles = 0;
    for (int r = 0; r < rows;) {
        int r1 = r + 1;
        while (r1 < rows && r1 - r < ATT_TILE && s->row_seq[r1] == s->row_seq[r]) r1++;
        s->tiles[s->n_tiles++] = (struct att_tile){r, r1, s->row_pos[r1 - 1] + 1};
        r = r1;
    }
    qsort(s->tiles, (size_t)s->n_tiles, sizeof *s->tiles, by_keys_desc);
}

/* Phase logits: blocks of vocabulary rows of the head, each copied to the sequences' buffers. */
static void logits_worker(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    pass *p = arg;
    const struct sasp_scratch *s = p->m->scratch;
    int V = p->mcols, blocks = (V + p->block - 1) / p->block;
    for (int b = grab(p); b < blocks; b = grab(p)) {
        int lo = b * p->block, hi = lo + p->block < V ? lo + p->block : V;
        matmul_cols(p, lo, hi);
        for (int i = 0; i < p->lrows; i++)
            memcpy(s->logit_dst[i] + lo, s->logits + (size_t)i * V + lo, (size_t)(hi - lo) * sizeof(float));
    }
}

/* Grow the scratch buffers to hold a step of `rows` rows and `lrows` logit rows. */
static int scratch_reserve(sasp_model *m, int rows, int lrows) {
    struct sasp_scratch *s = m->scratch;
    const sasp_config *c = &m->cfg;
    size_t d = (size_t)c->d_model;
    if (!s->scores) { /* attention scores and one head's keys per thread, for the longest context */
        size_t per_thread = (size_t)c->max_seq_len * (size_t)(ATT_TILE + c->d_model / c->n_heads);
        s->scores = falloc((size_t)sasp_pool_size(m->pool) * per_thread);
        s->keys_h = s->scores + (size_t)sasp_pool_size(m->pool) * ATT_TILE * c->max_seq_len;
        if (!s->scores) return -1;
    }
    if (rows > s->rows) {
        int n_in = 0;
        for (int l = 0; l < c->n_layers; l++)
            if (m->layers[l].n_in > n_in) n_in = m->layers[l].n_in;
        size_t R = (size_t)rows;
        free(s->x), free(s->z), free(s->in), free(s->att), free(s->att_o), free(s->hid), free(s->mlp);
        free(s->cmean), free(s->row_seq), free(s->row_pos), free(s->tiles);
        s->x = falloc(R * d), s->z = falloc(R * d), s->in = falloc(R * (size_t)n_in);
        s->att = falloc(R * d), s->att_o = falloc(R * d), s->mlp = falloc(R * d);
        s->hid = c->arch == SASP_ARCH_PRELN ? falloc(R * (size_t)c->d_ff) : NULL;
        s->cmean = falloc(R * d);
        s->row_seq = malloc(R * sizeof(int)), s->row_pos = malloc(R * sizeof(int));
        s->tiles = malloc(R * sizeof *s->tiles);
        s->rows = rows;
        if (!s->x || !s->z || !s->in || !s->att || !s->att_o || !s->mlp ||
            (c->arch == SASP_ARCH_PRELN && !s->hid) || !s->cmean || !s->row_seq || !s->row_pos || !s->tiles) {
            s->rows = 0;
            return -1;
        }
    }
    if (lrows > s->logit_rows) {
        free(s->zf), free(s->logits), free(s->logit_src), free(s->logit_dst);
        s->zf = falloc((size_t)lrows * d);
        s->logits = falloc((size_t)lrows * (size_t)c->vocab_size);
        s->logit_src = malloc((size_t)lrows * sizeof(int));
        s->logit_dst = malloc((size_t)lrows * sizeof(float *));
        s->logit_rows = lrows;
        if (!s->zf || !s->logits || !s->logit_src || !s->logit_dst) {
            s->logit_rows = 0;
            return -1;
        }
    }
    return 0;
}

/* ---- the forward pass ---- */

int sasp_forward(sasp_model *m, sasp_step *steps, int n_steps, char *err, size_t errlen) {
    const sasp_config *c = &m->cfg;
    const sasp_kernels *k = m->k;
    struct sasp_scratch *s = m->scratch;
    int d = c->d_model, V = c->vocab_size, F = c->d_ff;
    int sasp = c->arch == SASP_ARCH_SASP;

    /* Validate everything before touching any cache. */
    int rows = 0, lrows = 0;
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
        rows += st->n_tokens;
        lrows += st->n_logits;
    }
    if (rows == 0) return 0;
    if (scratch_reserve(m, rows, lrows)) {
        snprintf(err, errlen, "out of memory for a step of %d tokens", rows);
        return -1;
    }

    /* Embedding: one row per new token, sequences one after another. */
    for (int i = 0, r = 0; i < n_steps; i++)
        for (int t = 0; t < steps[i].n_tokens; t++, r++) {
            int pos = steps[i].kv->len + t;
            s->row_seq[r] = i;
            s->row_pos[r] = pos;
            memcpy(s->x + (size_t)r * d, m->tok_emb + (size_t)steps[i].tokens[t] * d, (size_t)d * sizeof(float));
            if (m->pos_emb) k->axpy(s->x + (size_t)r * d, 1.0f, m->pos_emb + (size_t)pos * d, d);
        }

    make_tiles(s, rows);

    pass p = {.m = m, .steps = steps, .rows = rows, .lrows = lrows};
    for (int l = 0; l < c->n_layers; l++) {
        const sasp_layer *L = &m->layers[l];
        p.layer = l;

        /* X = the previous layer's output; Z = N(X). */
        p.finish = l > 0 ? &m->layers[l - 1] : NULL, p.add = NULL;
        p.norm_w = L->norm_w, p.norm_b = L->norm_b, p.out = s->z, p.n_out = rows, p.src = NULL;
        run_rows(&p);

        /* [q | k | (v) | (mlp hidden)] = Z [W_Q; W_K; (W_V); (W1)]^T (+ biases), RoPE, cache, act. */
        run_phase(&p, stacked_worker);

        /* Attention per (rows, head) into att; sasp: with mlp = act(Z W1) W2^T alongside. */
        if (sasp) set_matmul(&p, s->mlp, d, s->in + (L->n_in - F), L->n_in, L->w2, NULL, rows, d, F, 0);
        else p.w = NULL;
        run_phase(&p, attend_worker);
        if (L->wo) {
            set_matmul(&p, s->att_o, d, s->att, d, L->wo, NULL, rows, d, d, 0);
            run_phase(&p, matmul_worker);
        }

        if (!sasp) {
            /* X' = X + attn; Z = N2(X'); mlp = act(Z W1^T) W2^T (X' + mlp happens in the next rows phase) */
            p.finish = NULL, p.add = L->wo ? s->att_o : s->att;
            p.norm_w = L->norm2_w, p.norm_b = L->norm2_b, p.out = s->z, p.n_out = rows, p.src = NULL;
            run_rows(&p);
            set_matmul(&p, s->hid, F, s->z, d, L->w1, NULL, rows, F, d, 1);
            run_phase(&p, matmul_worker);
            set_matmul(&p, s->mlp, d, s->hid, F, L->w2, NULL, rows, d, F, 0);
            run_phase(&p, matmul_worker);
        }
    }

    /* The last layer's output, the final norm and the head, only for the rows whose logits were asked. */
    for (int i = 0, r0 = 0, lr = 0; i < n_steps; r0 += steps[i].n_tokens, i++)
        for (int t = steps[i].n_tokens - steps[i].n_logits; t < steps[i].n_tokens; t++, lr++) {
            s->logit_src[lr] = r0 + t;
            s->logit_dst[lr] = steps[i].logits + (size_t)(t - (steps[i].n_tokens - steps[i].n_logits)) * V;
        }
    if (lrows > 0) {
        p.finish = &m->layers[c->n_layers - 1], p.add = NULL;
        p.norm_w = m->norm_f_w, p.norm_b = m->norm_f_b, p.out = s->zf, p.n_out = lrows, p.src = s->logit_src;
        run_rows(&p);
        set_matmul(&p, s->logits, V, s->zf, d, m->lm_head, NULL, lrows, V, d, 0);
        run_phase(&p, logits_worker);
    }
    for (int i = 0; i < n_steps; i++) steps[i].kv->len += steps[i].n_tokens;
    return 0;
}

double sasp_model_flops_per_token(const sasp_model *m, int n_ctx) {
    const sasp_config *c = &m->cfg;
    double d = c->d_model, F = c->d_ff, macs = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const sasp_layer *L = &m->layers[l];
        macs += (double)L->n_in * d;             /* W_Q, W_K, (W_V), (W1 for sasp) */
        if (L->w1) macs += F * d;                /* preln W1 */
        if (L->wo) macs += d * d;
        macs += d * F;                           /* W2 */
        macs += 2.0 * (n_ctx > 0 ? n_ctx : 0) * d; /* Q K^T and P V over the context */
    }
    macs += d * c->vocab_size;                   /* head */
    return macs;
}
