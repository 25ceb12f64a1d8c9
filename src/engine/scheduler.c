/* scheduler.c: the engine thread of sasp-server: continuous batching, sampling, streaming text out.
 * See scheduler.h for the contract. Locks: e->mu guards an engine's list of schedulers and its wake
 * counter; s->mu guards a scheduler's queue, slot table and stats; job->mu guards a job's event list and
 * reference count. They nest in that order only (e->mu, then s->mu, then job->mu), and sasp_sched_submit
 * is the one place that holds two (job->mu inside s->mu). A sequence's own fields belong to the engine
 * thread from submission on. */
#include "engine/scheduler.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text/constrain.h"
#include "engine/prompt_cache.h"
#include "base/util.h"

/* --- jobs and their events --- */

typedef struct ev_node {
    sasp_event ev;
    struct ev_node *next;
} ev_node;

typedef struct seq {
    sasp_job *job;
    int index;
    int *prompt;
    int n_prompt, n_fed;
    sasp_gen_params p;
    sasp_sampler *smp;
    sasp_utf8_stream utf8;
    sasp_buf pend; /* decoded text not yet released (could start a stop string) */
    int n_gen;
    int next_tok; /* sampled, to be fed next step */
    int *ev_ids;  /* tokens since the last event */
    sasp_token_info *ev_info;
    int ev_n, ev_cap;
    float *plogits;         /* prompt_logprobs: the logits of every row of a prompt chunk */
    sasp_token_info *pinfo; /* prompt_logprobs: [n_prompt - 1], filled while the prompt is read */
    sasp_candidate *pscratch;
    sasp_logit_bias *bias; /* the sequence's own copy of p.logit_bias */
    sasp_constraint *cons; /* token healing or a JSON document, while it restricts anything */
    size_t strip;          /* healing: bytes of the backed-off token the text must not repeat */
    char *heal;            /* the sequence's own copy of p.heal_text */
    int slot;              /* the slot it holds, -1 before */
    int n_cached;          /* prompt tokens reused from a cache */
    int end;               /* SASP_END_*, set before its last event */
    const char *stop_word; /* SASP_END_WORD: which of p.stop */
    double *pool;          /* pooling: the running sum (mean) or the last hidden state, [n_pool] */
    float *hid;            /* pooling: the final hidden states of a prompt chunk, [chunk][n_pool] */
    int n_pool;            /* pooling: d_model */
    int64_t t_start, t_first, t_prev;
    struct seq *qnext;
} seq;

struct sasp_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    int n_seq;
    int n_done_posted, n_done_read;
    seq *seqs;
    ev_node *head, *tail;
    atomic_int cancelled;
    int64_t t_submit;
    sasp_json_schema *schema; /* adopted: what the sequences' p.json point to */
    uint64_t client;          /* who sent it: the queue shares slots out between clients */
    struct {                  /* a slot action's (sasp_job_new_slot_action); kind 0: a generation */
        int kind, slot;
        sasp_kv *kv; /* restore: the state to put in; save: the copy taken out */
        int *ids;
        struct sasp_job *next; /* the scheduler's list of actions waiting */
    } action;
};

void sasp_event_clear(sasp_event *ev)
{
    free(ev->text);
    free(ev->ids);
    free(ev->info);
    free(ev->prompt_info);
    free(ev->embedding);
    free(ev->stop_word);
    memset(ev, 0, sizeof *ev);
}

sasp_job *sasp_job_new(int n_seq)
{
    if (n_seq < 1) return NULL;
    sasp_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->seqs = calloc((size_t)n_seq, sizeof *j->seqs);
    if (!j->seqs) {
        free(j);
        return NULL;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&j->mu, NULL);
    j->refs = 1;
    j->n_seq = n_seq;
    atomic_init(&j->cancelled, 0);
    return j;
}

static void seq_free_work(seq *q)
{
    sasp_sampler_free(q->smp);
    q->smp = NULL;
    sasp_buf_free(&q->pend);
    free(q->ev_ids);
    q->ev_ids = NULL;
    free(q->ev_info);
    q->ev_info = NULL;
    free(q->plogits);
    q->plogits = NULL;
    free(q->pinfo);
    q->pinfo = NULL;
    free(q->pscratch);
    q->pscratch = NULL;
    sasp_constraint_free(q->cons);
    q->cons = NULL;
    free(q->pool);
    q->pool = NULL;
    free(q->hid);
    q->hid = NULL;
    q->ev_n = q->ev_cap = 0;
}

int sasp_job_set(sasp_job *job, int i, const int *prompt, int n, const sasp_gen_params *p)
{
    if (i < 0 || i >= job->n_seq || n < 1 || p->n_stop > SASP_MAX_STOPS) return -1;
    seq *q = &job->seqs[i];
    q->job = job;
    q->index = i;
    q->prompt = malloc((size_t)n * sizeof *q->prompt);
    if (!q->prompt) return -1;
    memcpy(q->prompt, prompt, (size_t)n * sizeof *q->prompt);
    q->n_prompt = n;
    q->p = *p;
    if (q->p.top_logprobs > SASP_MAX_TOP_LOGPROBS) q->p.top_logprobs = SASP_MAX_TOP_LOGPROBS;
    if (q->p.top_logprobs < 0) q->p.top_logprobs = 0;
    q->p.n_stop = 0; /* counts the copies made, which are the job's to free */
    for (int k = 0; k < p->n_stop; k++) {
        char *copy = strdup(p->stop[k]);
        if (!copy) return -1;
        q->p.stop[q->p.n_stop++] = copy;
    }
    q->slot = -1;
    q->p.heal_text = NULL;
    if (p->heal_text && p->heal_len) {
        if (!(q->heal = malloc(p->heal_len))) return -1;
        memcpy(q->heal, p->heal_text, p->heal_len);
        q->p.heal_text = q->heal;
    }
    q->p.logit_bias = NULL;
    q->p.n_logit_bias = 0;
    if (p->n_logit_bias > 0) {
        q->bias = malloc((size_t)p->n_logit_bias * sizeof *q->bias);
        if (!q->bias) return -1;
        memcpy(q->bias, p->logit_bias, (size_t)p->n_logit_bias * sizeof *q->bias);
        q->p.logit_bias = q->bias;
        q->p.n_logit_bias = p->n_logit_bias;
    }
    return 0;
}

void sasp_job_adopt_schema(sasp_job *job, sasp_json_schema *schema)
{
    sasp_json_schema_free(job->schema);
    job->schema = schema;
}

static void job_free(sasp_job *j)
{
    for (ev_node *e = j->head, *nx; e; e = nx) {
        nx = e->next;
        sasp_event_clear(&e->ev);
        free(e);
    }
    for (int i = 0; i < j->n_seq; i++) {
        seq *q = &j->seqs[i];
        seq_free_work(q);
        free(q->prompt);
        free(q->bias);
        free(q->heal);
        for (int k = 0; k < q->p.n_stop; k++) free(q->p.stop[k]);
    }
    free(j->seqs);
    sasp_json_schema_free(j->schema);
    sasp_kv_free(j->action.kv);
    free(j->action.ids);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

void sasp_job_release(sasp_job *job)
{
    if (!job) return;
    pthread_mutex_lock(&job->mu);
    int left = --job->refs;
    pthread_mutex_unlock(&job->mu);
    if (left == 0) job_free(job);
}

void sasp_job_cancel(sasp_job *job) { atomic_store(&job->cancelled, 1); }

int sasp_job_next(sasp_job *job, sasp_event *ev, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&job->mu);
    while (!job->head && job->n_done_read < job->n_seq) {
        if (pthread_cond_timedwait(&job->cv, &job->mu, &until) == ETIMEDOUT) break;
    }
    int r;
    if (job->head) {
        ev_node *e = job->head;
        job->head = e->next;
        if (!job->head) job->tail = NULL;
        *ev = e->ev;
        free(e);
        if (ev->done) job->n_done_read++;
        r = 1;
    } else {
        r = job->n_done_read >= job->n_seq ? -1 : 0;
    }
    pthread_mutex_unlock(&job->mu);
    return r;
}

/* Post an event; returns 1 when it was the job's last. The final event of a sequence must arrive,
 * so an allocation failure is waited out rather than dropped. */
static int job_post(sasp_job *j, sasp_event *ev)
{
    ev_node *e;
    while (!(e = malloc(sizeof *e))) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    e->ev = *ev;
    e->next = NULL;
    pthread_mutex_lock(&j->mu);
    if (j->tail) j->tail->next = e;
    else j->head = e;
    j->tail = e;
    if (ev->done) j->n_done_posted++;
    int last = j->n_done_posted == j->n_seq;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return last;
}

/* --- the scheduler --- */

typedef struct slot {
    sasp_kv *kv;
    int *ids;           /* the tokens kv holds: ids[0 .. kv->len) */
    uint64_t last_used; /* s->clock when a sequence last took it */
    uint64_t task;      /* the number of that sequence */
    int n_reused;       /* of its prompt, the tokens taken from a cache */
    seq *q;
    sasp_slot_info info; /* snapshot for /props and /slots, updated under s->mu */
} slot;

struct sasp_sched {
    sasp_model *m;
    const sasp_tokenizer *tok;
    sasp_token_table *table; /* what the constraints' masks know of each token */
    int n_slots, max_queue, chunk, vocab, eos;
    slot *slots;
    sasp_slot_view *views; /* [n_slots]: what slot choice sees (prompt_cache.h) */
    sasp_host_cache *host; /* evicted prefixes, or NULL */
    uint64_t clock;        /* counts slot takings: the slots' least-recently-used order */
    float *logits;         /* [n_slots][vocab] */
    sasp_step *steps;      /* [n_slots] */
    int *step_slot, *step_fed;
    int *step_tok;  /* [n_slots]: the token each step drew (draw_all), -1 for none */
    int *draw_step; /* [n_slots]: the steps that draw, n_draw of them */
    int n_draw;
    atomic_int next_draw; /* the next of them a thread takes */

    pthread_mutex_t mu;
    seq *qhead, *qtail;
    int n_queued, active;
    int stopping;
    atomic_int step_delay_ms;
    sasp_sched_stats st;
    sasp_job *actions;   /* slot actions waiting (sasp_job_new_slot_action), in order of arrival */
    sasp_engine *engine; /* the thread that steps it */
    int own_engine;      /* made by sasp_sched_new, freed with it */
    sasp_sched *next;    /* the engine's list */
};

/* The engine thread and the schedulers it steps. e->mu guards the list, the wake counter and
 * `current`; it is taken before a scheduler's mu, never after. */
struct sasp_engine {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* wakes the engine (new work, quit) and sasp_sched_free (current done) */
    sasp_sched *list;
    sasp_sched *current; /* the scheduler being stepped */
    unsigned long wakes; /* bumped by every submit and shutdown */
    int quit;
    pthread_t thread;
};

static const double ttft_le[SASP_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                  0.5, 1, 2.5, 5, 10, 30};
static const double tok_le[SASP_HIST_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                 0.05, 0.1, 0.25, 0.5, 1, 2.5};

static void hist_observe(sasp_hist *h, double v)
{
    for (int i = 0; i < SASP_HIST_BUCKETS; i++)
        if (v <= h->le[i]) {
            h->count[i]++;
            break;
        }
    h->n++;
    h->sum += v;
}

int sasp_stop_scan(const char *buf, size_t n, char *const *stops, int n_stops, size_t *cut)
{
    size_t best = n, hold = 0;
    int found = 0;
    for (int k = 0; k < n_stops; k++) {
        size_t ls = strlen(stops[k]);
        if (ls == 0) continue;
        const char *hit = memmem(buf, n, stops[k], ls);
        if (hit && (size_t)(hit - buf) < best) {
            best = (size_t)(hit - buf);
            found = 1;
        }
        /* the longest proper prefix of the stop string that ends buf */
        size_t max = ls - 1 < n ? ls - 1 : n;
        for (size_t h = max; h > hold; h--) {
            if (memcmp(buf + n - h, stops[k], h) == 0) {
                hold = h;
                break;
            }
        }
    }
    *cut = found ? best : n - hold;
    return found;
}

/* q's decoded text not yet released. */
static const char *pend_text(const seq *q) { return q->pend.data ? q->pend.data : ""; }

/* q's embedding: its pooled hidden state (the sum of every token's, or the last one's), L2-normalised.
 * NULL when out of memory. */
static float *pooled_embedding(const seq *q)
{
    float *e = malloc((size_t)q->n_pool * sizeof *e);
    if (!e) return NULL;
    double norm = 0;
    for (int j = 0; j < q->n_pool; j++) norm += q->pool[j] * q->pool[j];
    double inv = norm > 0 ? 1.0 / sqrt(norm) : 0.0;
    for (int j = 0; j < q->n_pool; j++) e[j] = (float)(q->pool[j] * inv);
    return e;
}

/* Post the event of q that releases text[0..len) and the tokens gathered since its last one; reason
 * non-NULL makes it the final event. Returns 1 if the job has delivered everything (caller drops
 * the engine's reference). */
static int seq_emit(seq *q, const char *text, size_t len, const char *reason, int error)
{
    if (!reason && len == 0 && !(q->p.each_token && q->ev_n > 0)) return 0;
    sasp_event ev = {0};
    ev.index = q->index;
    ev.slot = q->slot;
    ev.prompt_tokens = q->n_prompt;
    ev.text = malloc(len + 1);
    if (ev.text) {
        memcpy(ev.text, text, len);
        ev.text[len] = 0;
        ev.len = len;
    }
    ev.ids = q->ev_ids;
    ev.info = q->ev_info;
    ev.n_ids = q->ev_n;
    q->ev_ids = NULL;
    q->ev_info = NULL;
    q->ev_n = q->ev_cap = 0;
    if (reason) {
        int64_t t = sasp_now_ns();
        ev.done = 1;
        ev.finish_reason = reason;
        ev.error = error;
        ev.prompt_tokens = q->n_prompt;
        ev.completion_tokens = q->n_gen;
        ev.end = q->end;
        ev.stop_word = q->stop_word ? strdup(q->stop_word) : NULL;
        ev.cached_tokens = q->n_cached;
        ev.dropped_tokens = q->p.n_dropped;
        ev.total_ns = t - q->job->t_submit;
        if (q->pool && !error) {
            ev.embedding = pooled_embedding(q);
            ev.n_embedding = q->n_pool;
        }
        if (q->t_start) {
            int64_t first = q->t_first ? q->t_first : t;
            ev.prompt_ns = first - q->t_start;
            ev.eval_ns = t - first;
        }
    }
    return job_post(q->job, &ev);
}

/* End q (in slot si, or -1 when it never got one): post its final event, free its slot. */
static void seq_finish(sasp_sched *s, seq *q, int si, const char *reason, int error, const char *text,
                       size_t len)
{
    sasp_job *job = q->job;
    int last = seq_emit(q, text, len, reason, error);
    seq_free_work(q);
    pthread_mutex_lock(&s->mu);
    if (si >= 0) {
        s->slots[si].q = NULL;
        s->active--;
    }
    s->st.sequences_done++;
    pthread_mutex_unlock(&s->mu);
    if (last) sasp_job_release(job);
}

/* Flush everything decoded and still held, then finish. */
static void seq_finish_flush(sasp_sched *s, seq *q, int si, const char *reason)
{
    char tail[16];
    size_t nt = sasp_stream_finish(&q->utf8, tail, sizeof tail);
    sasp_buf_append(&q->pend, tail, nt);
    seq_finish(s, q, si, reason, 0, pend_text(q), q->pend.len);
}

/* The constraint q generates under: token healing of its prompt (which backs off the prompt's last
 * token and remembers its bytes, not to be repeated in the text; or the bytes its caller backed off),
 * or a JSON document. */
static int seq_constrain(sasp_sched *s, seq *q)
{
    if (q->p.json) {
        q->cons = sasp_constraint_json(q->p.json);
        return q->cons ? 0 : -1;
    }
    if (q->p.heal_text) { /* backed off by the caller (the token before an infill's cursor) */
        q->cons = sasp_constraint_heal(q->p.heal_text, q->p.heal_len);
        q->strip = q->p.heal_len;
        return q->cons ? 0 : -1;
    }
    if (!q->p.token_healing) return 0;
    int last = q->prompt[q->n_prompt - 1];
    int keep = sasp_heal_prompt(s->tok, q->prompt, q->n_prompt, &q->cons);
    if (keep < 0) return -1;
    if (!q->cons) return 0;
    size_t nb = 0;
    sasp_token_bytes(s->tok, last, &nb);
    q->strip = nb;
    q->n_prompt = keep;
    return 0;
}

/* The longest prefix of ids[0..n) that a slot other than own holds: its length in *common, the slot
 * returned (-1: none). */
static int best_donor(const sasp_sched *s, int own, const int *ids, int n, int *common)
{
    int best = -1;
    *common = 0;
    for (int j = 0; j < s->n_slots; j++) {
        if (j == own) continue;
        int c = sasp_common_prefix(s->slots[j].ids, s->slots[j].kv->len, ids, n);
        if (c > *common) {
            *common = c;
            best = j;
        }
    }
    return best;
}

/* Before slot sl keeps only its first keep positions: when what goes is long and no other slot holds
 * the slot's tokens whole, a copy goes to the host cache. */
static void keep_evicted(sasp_sched *s, slot *sl, int keep)
{
    enum { WORTH_KEEPING = 16 }; /* positions: below, recomputing is as cheap as finding it again */
    int n = sl->kv->len, held;
    if (!s->host || n - keep < WORTH_KEEPING) return;
    best_donor(s, (int)(sl - s->slots), sl->ids, n, &held);
    if (held == n || !sasp_host_cache_save(s->host, sl->kv, sl->ids, n)) return;
    pthread_mutex_lock(&s->mu);
    s->st.host_saves++;
    sasp_host_cache_usage(s->host, &s->st.host_entries, &s->st.host_bytes);
    pthread_mutex_unlock(&s->mu);
}

/* Copy the first len positions of the prefix's holder into slot sl: another slot, or the host cache
 * entry (donor < 0: entry -1 - donor). 0, or -1 when the copy failed (sl is then truncated to 0). */
static int copy_prefix(sasp_sched *s, slot *sl, int donor, int len)
{
    int rc = donor >= 0 ? sasp_kv_copy(s->m, sl->kv, s->slots[donor].kv, len)
                        : sasp_host_cache_restore(s->host, -1 - donor, sl->kv, sl->ids, len);
    if (rc != 0) {
        sasp_kv_truncate(s->m, sl->kv, 0);
        return -1;
    }
    if (donor >= 0) memcpy(sl->ids, s->slots[donor].ids, (size_t)len * sizeof *sl->ids);
    return 0;
}

/* Slot q->slot before q reads its prompt: the longest prefix of the prompt that this slot, another
 * slot or the host cache holds (at most all but the last prompt token, whose logits q needs) is kept
 * or copied in, the rest of the slot's cache dropped (a long evicted part kept in the host cache
 * first), and q feeds only what follows. Nothing is reused when q asks for none (no_cache), scores
 * its prompt (every row's logits) or pools it. */
static void seq_reuse_prefix(sasp_sched *s, seq *q)
{
    slot *sl = &s->slots[q->slot];
    int want = q->n_prompt - 1;
    int may = !q->p.no_cache && !q->p.prompt_logprobs && !q->p.pooling && want > 0;
    int own = may ? sasp_common_prefix(sl->ids, sl->kv->len, q->prompt, want) : 0;
    keep_evicted(s, sl, own); /* first: saving may reorder the host cache's entries */
    int in_slot = 0, in_host = 0;
    int donor = may ? best_donor(s, q->slot, q->prompt, want, &in_slot) : -1;
    int entry = may ? sasp_host_cache_find(s->host, q->prompt, want, &in_host) : -1;
    int reused = own, copied = 0, host_hit = 0;
    if (entry >= 0 && in_host > own && in_host > in_slot) {
        host_hit = copy_prefix(s, sl, -1 - entry, in_host) == 0;
        reused = copied = host_hit ? in_host : 0;
    } else if (donor >= 0 && in_slot > own) {
        reused = copied = copy_prefix(s, sl, donor, in_slot) == 0 ? in_slot : 0;
    } else if (own < sl->kv->len) { /* at its length a cache's centring sums are already exact */
        sasp_kv_truncate(s->m, sl->kv, own);
    }
    q->n_fed = q->n_cached = sl->n_reused = reused;
    pthread_mutex_lock(&s->mu);
    s->st.cached_tokens += (uint64_t)reused;
    s->st.copied_tokens += (uint64_t)copied;
    s->st.host_hits += (uint64_t)host_hit;
    s->st.dropped_tokens += (uint64_t)(q->p.n_dropped > 0 ? q->p.n_dropped : 0);
    pthread_mutex_unlock(&s->mu);
}

static int seq_start(sasp_sched *s, seq *q)
{
    if (seq_constrain(s, q) != 0) return -1;
    q->smp = sasp_sampler_new(s->vocab, &q->p.sampling);
    if (!q->smp || sasp_sampler_set_tokenizer(q->smp, s->tok, s->eos)) return -1;
    sasp_sampler_set_logit_bias(q->smp, q->p.logit_bias, q->p.n_logit_bias);
    seq_reuse_prefix(s, q);
    if (q->p.prompt_logprobs) {
        int rows = q->n_prompt < s->chunk ? q->n_prompt : s->chunk;
        q->plogits = malloc((size_t)rows * (size_t)s->vocab * sizeof *q->plogits);
        q->pinfo = calloc((size_t)q->n_prompt, sizeof *q->pinfo);
        q->pscratch = malloc((size_t)s->vocab * sizeof *q->pscratch);
        if (!q->plogits || !q->pinfo || !q->pscratch) return -1;
    }
    if (q->p.pooling) {
        q->n_pool = s->m->cfg.d_model;
        q->pool = calloc((size_t)q->n_pool, sizeof *q->pool);
        q->hid = malloc((size_t)s->chunk * (size_t)q->n_pool * sizeof *q->hid);
        if (!q->pool || !q->hid) return -1;
    }
    for (int i = 0; i < q->n_prompt; i++) sasp_sampler_accept(q->smp, q->prompt[i], 0);
    sasp_stream_init(&q->utf8);
    q->t_start = sasp_now_ns();
    return 0;
}

/* Keep tok, and its logprobs when they were asked, for q's next event. */
static void record_token(const sasp_sched *s, seq *q, int tok)
{
    if (q->ev_n == q->ev_cap) {
        int cap = q->ev_cap ? 2 * q->ev_cap : 8;
        int *ids = realloc(q->ev_ids, (size_t)cap * sizeof *ids);
        if (ids) q->ev_ids = ids;
        sasp_token_info *info = q->p.logprobs ? realloc(q->ev_info, (size_t)cap * sizeof *info) : NULL;
        if (info) q->ev_info = info;
        if (ids && (!q->p.logprobs || info)) q->ev_cap = cap;
    }
    if (q->ev_n == q->ev_cap) return; /* out of memory: the event lacks this id */
    q->ev_ids[q->ev_n] = tok;
    if (q->p.logprobs) {
        sasp_token_info *ti = &q->ev_info[q->ev_n];
        size_t nb = 0;
        if (q->strip && !sasp_tokenizer_is_special(s->tok, tok)) sasp_token_bytes(s->tok, tok, &nb);
        ti->id = tok;
        ti->skip = (int)(q->strip < nb ? q->strip : nb); /* decode_token strips as much from the text */
        ti->n_top = q->p.top_logprobs;
        if (q->p.post_sampling_probs)
            ti->logprob = sasp_sampler_post_probs(q->smp, tok, ti->top, q->p.top_logprobs, &ti->n_top);
        else
            ti->logprob = sasp_sampler_logprobs(q->smp, tok, ti->top, ti->n_top);
    }
    q->ev_n++;
}

/* Count a token sampled at time t: the first one in the time-to-first-token histogram, the others in
 * the token-latency one. */
static void observe_token(sasp_sched *s, seq *q, int64_t t)
{
    pthread_mutex_lock(&s->mu);
    s->st.generated_tokens++;
    if (!q->t_first) hist_observe(&s->st.ttft, (double)(t - q->job->t_submit) * 1e-9);
    else hist_observe(&s->st.token_latency, (double)(t - q->t_prev) * 1e-9);
    pthread_mutex_unlock(&s->mu);
    if (!q->t_first) q->t_first = t;
    q->t_prev = t;
}

/* tok's bytes into q's pending text, as whole UTF-8 characters (a partial one waits in q->utf8).
 * Special tokens have no text. */
static void decode_token(sasp_sched *s, seq *q, int tok)
{
    if (sasp_tokenizer_is_special(s->tok, tok)) return;
    size_t nb;
    const char *b = sasp_token_bytes(s->tok, tok, &nb);
    if (!b || !nb) return;
    size_t skip = q->strip < nb ? q->strip : nb; /* healing: the prompt already holds these bytes */
    q->strip -= skip;
    b += skip;
    nb -= skip;
    if (!nb) return;
    char small[512];
    size_t cap = 3 * nb + 8;
    char *out = cap <= sizeof small ? small : malloc(cap);
    if (!out) return;
    size_t w = sasp_stream_push(&q->utf8, b, nb, out, cap);
    sasp_buf_append(&q->pend, out, w);
    if (out != small) free(out);
}

/* The positions q may fill in slot si: the slot's, or fewer when the request said so (num_ctx). */
static int seq_capacity(const sasp_sched *s, int si, const seq *q)
{
    int cap = s->slots[si].kv->cap;
    return q->p.n_ctx > 0 && q->p.n_ctx < cap ? q->p.n_ctx : cap;
}

/* The tokens q may still generate, the one about to be sampled included: what max_tokens leaves, and
 * what the context leaves (the last token sampled when the cache is full is never fed). */
static int seq_tokens_left(const sasp_sched *s, int si, const seq *q)
{
    int by_length = q->p.max_tokens - q->n_gen;
    int by_context = seq_capacity(s, si, q) - s->slots[si].kv->len + 1;
    return by_length < by_context ? by_length : by_context;
}

/* Before sampling: the constraint's mask (the sampler adds the logit biases). Returns the number of
 * tokens still allowed (0: the constraint cannot go on within the tokens left). */
static int seq_mask_logits(sasp_sched *s, int si, seq *q, float *logits)
{
    if (!q->cons) return s->vocab;
    int64_t t0 = sasp_now_ns();
    int allowed = sasp_constraint_mask(q->cons, s->table, logits, seq_tokens_left(s, si, q), s->eos);
    double dt = (double)(sasp_now_ns() - t0) * 1e-9;
    pthread_mutex_lock(&s->mu);
    s->st.constraint_seconds += dt;
    s->st.constrained_tokens++;
    pthread_mutex_unlock(&s->mu);
    return allowed;
}

/* After sampling tok: advance the constraint; returns 1 when its document is complete. A spent
 * healing constraint is dropped. */
static int seq_advance_constraint(sasp_sched *s, seq *q, int tok)
{
    if (!q->cons) return 0;
    int complete = sasp_constraint_accept(q->cons, s->table, tok);
    if (!sasp_constraint_active(q->cons)) {
        sasp_constraint_free(q->cons);
        q->cons = NULL;
    }
    return complete;
}

/* Which of q's stop strings begins at buf[cut] (the one sasp_stop_scan found). */
static const char *stop_word_at(const seq *q, const char *buf, size_t n, size_t cut)
{
    for (int k = 0; k < q->p.n_stop; k++) {
        size_t ls = strlen(q->p.stop[k]);
        if (ls && cut + ls <= n && !memcmp(buf + cut, q->p.stop[k], ls)) return q->p.stop[k];
    }
    return NULL;
}

int sasp_indent_scan(const char *buf, size_t n, int n_indent, size_t *cut)
{
    *cut = n;
    if (n_indent <= 0) return 0;
    for (size_t i = 0; i < n; i++) {
        if (buf[i] != '\n') continue;
        size_t j = i + 1;
        while (j < n && (buf[j] == ' ' || buf[j] == '\t')) j++;
        if (j == n) {
            *cut = i;
            return 0;
        }
        if (buf[j] != '\n' && (int)(j - i - 1) < n_indent) {
            *cut = i + 1;
            return 1;
        }
    }
    return 0;
}

/* After a token's text joined q's pending text: end q where a stop string or an under-indented line
 * begins (whichever comes first), else *cut is how much of the text may be released. Returns 1 when q
 * has ended. */
static int seq_text_ends(sasp_sched *s, int si, seq *q, size_t *cut)
{
    size_t at_stop, at_indent;
    int stop = sasp_stop_scan(pend_text(q), q->pend.len, q->p.stop, q->p.n_stop, &at_stop);
    int indent = sasp_indent_scan(pend_text(q), q->pend.len, q->p.n_indent, &at_indent);
    if (stop && (!indent || at_stop <= at_indent)) {
        q->end = SASP_END_WORD;
        q->stop_word = stop_word_at(q, pend_text(q), q->pend.len, at_stop);
        seq_finish(s, q, si, "stop", 0, pend_text(q), at_stop);
        return 1;
    }
    if (indent) {
        q->end = SASP_END_LIMIT;
        seq_finish(s, q, si, "length", 0, pend_text(q), at_indent);
        return 1;
    }
    *cut = at_stop < at_indent ? at_stop : at_indent;
    return 0;
}

/* The limits checked once a token is taken: the complete document, max_tokens, the context, and
 * t_max_predict_ms (at a newline, newline set). Returns 1 when q has ended. */
static int seq_limits_end(sasp_sched *s, int si, seq *q, int complete, int newline, int64_t t)
{
    if (complete) { /* the JSON document is closed: nothing may follow */
        q->end = SASP_END_DOCUMENT;
        seq_finish_flush(s, q, si, "stop");
        return 1;
    }
    int full = s->slots[si].kv->len >= seq_capacity(s, si, q);
    int slow = newline && q->p.t_max_predict_ms > 0 && t - q->t_first > q->p.t_max_predict_ms * 1000000;
    if (q->n_gen >= q->p.max_tokens || full || slow) {
        q->end = full && q->n_gen < q->p.max_tokens ? SASP_END_CONTEXT : SASP_END_LIMIT;
        seq_finish_flush(s, q, si, "length");
        return 1;
    }
    return 0;
}

/* Draw q's next token from the logits of slot si: the constraint's mask, the sampler, the token's
 * logprobs. It touches q alone (the token table and tokenizer it reads are shared and read-only, the
 * statistics are taken under s->mu), so the sequences of a step draw side by side (draw_all). Returns
 * the token, or -1 when only the prompt was asked for or nothing may follow. */
static int seq_draw(sasp_sched *s, int si, seq *q, float *logits)
{
    if (q->p.max_tokens == 0 || seq_mask_logits(s, si, q, logits) == 0) return -1;
    int tok = sasp_sampler_sample(q->smp, logits);
    record_token(s, q, tok);
    sasp_sampler_accept(q->smp, tok, 1);
    return tok;
}

/* The token seq_draw drew for slot si (-1: none): stream its text, decide whether q is finished. */
static void seq_on_token(sasp_sched *s, int si, seq *q, int tok)
{
    int64_t t = sasp_now_ns();
    if (tok < 0) {
        q->end = SASP_END_LIMIT;
        seq_finish_flush(s, q, si, "length");
        return;
    }
    q->n_gen++;
    observe_token(s, q, t);
    int complete = seq_advance_constraint(s, q, tok);

    if (tok == s->eos && !q->p.ignore_eos) {
        q->end = SASP_END_EOS;
        seq_finish_flush(s, q, si, "stop");
        return;
    }
    size_t before = q->pend.len, cut = 0;
    decode_token(s, q, tok);
    int newline = memchr(pend_text(q) + before, '\n', q->pend.len - before) != NULL;
    if (seq_text_ends(s, si, q, &cut) || seq_limits_end(s, si, q, complete, newline, t)) return;
    if (cut > 0 || q->p.each_token) /* release what can no longer be part of a stop string or a cut line */
        seq_emit(q, pend_text(q), cut, NULL, 0);
    if (cut > 0) {
        memmove(q->pend.data, q->pend.data + cut, q->pend.len - cut + 1);
        q->pend.len -= cut;
    }
    q->next_tok = tok;
}

/* prompt_logprobs: score prompt tokens [from + 1, from + n] from the n rows of logits just computed
 * for positions [from, from + n); once the whole prompt is read, post them as the first event. */
static void seq_score_prompt(sasp_sched *s, seq *q, int from, int n)
{
    int k = q->p.top_logprobs;
    for (int t = 0; t < n && from + t + 1 < q->n_prompt; t++) {
        sasp_token_info *ti = &q->pinfo[from + t];
        ti->id = q->prompt[from + t + 1];
        ti->n_top = k;
        ti->logprob = sasp_log_softmax_top(q->plogits + (size_t)t * s->vocab, s->vocab, ti->id, ti->top, k,
                                           q->pscratch);
    }
    if (from + n < q->n_prompt) return;
    sasp_event ev = {0};
    ev.index = q->index;
    ev.text = calloc(1, 1);
    ev.ids = malloc((size_t)q->n_prompt * sizeof *ev.ids);
    if (ev.ids) memcpy(ev.ids, q->prompt, (size_t)q->n_prompt * sizeof *ev.ids);
    ev.n_ids = ev.ids ? q->n_prompt : 0;
    ev.prompt_info = q->pinfo;
    q->pinfo = NULL;
    job_post(q->job, &ev);
}

/* Under s->mu, for /props: what every slot is doing. */
static void snapshot_slots(sasp_sched *s)
{
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        seq *q = sl->q;
        sl->info.id = i;
        sl->info.state = !q ? "idle" : q->n_fed < q->n_prompt ? "prefill"
                                                              : "generating";
        sl->info.n_prompt = q ? q->n_prompt : 0;
        sl->info.n_past = q ? sl->kv->len : 0;
        sl->info.n_generated = q ? q->n_gen : 0;
        sl->info.n_ctx = sl->kv->cap;
        sl->info.n_cached = sl->kv->len;
        sl->info.n_reused = sl->n_reused;
        sl->info.task = sl->task;
        if (q) {
            sl->info.max_tokens = q->p.max_tokens;
            sl->info.sampling = q->p.sampling;
        }
    }
}

/* --- slot actions (llama.cpp's /slots/{id}?action=...) --- */

sasp_job *sasp_job_new_slot_action(int action, int slot, sasp_kv *kv, int *ids)
{
    sasp_job *j = sasp_job_new(1);
    if (!j) return NULL;
    j->seqs[0].job = j;
    j->seqs[0].slot = -1;
    j->action.kind = action;
    j->action.slot = slot;
    j->action.kv = kv;
    j->action.ids = ids;
    return j;
}

sasp_kv *sasp_job_take_saved(sasp_job *job, int **ids)
{
    pthread_mutex_lock(&job->mu); /* the engine filled them before it posted the event */
    sasp_kv *kv = job->action.kind == SASP_SLOT_SAVE ? job->action.kv : NULL;
    *ids = kv ? job->action.ids : NULL;
    if (kv) job->action.kv = NULL, job->action.ids = NULL;
    pthread_mutex_unlock(&job->mu);
    return kv;
}

/* Under s->mu: queue a slot action (it takes a reference). */
static void submit_action(sasp_sched *s, sasp_job *job)
{
    pthread_mutex_lock(&job->mu);
    job->refs++;
    pthread_mutex_unlock(&job->mu);
    job->t_submit = sasp_now_ns();
    job->action.next = NULL;
    sasp_job **pp = &s->actions;
    while (*pp) pp = &(*pp)->action.next;
    *pp = job;
}

/* The one event of a slot action: n tokens, or the error err; then the engine's reference goes. */
static void action_done(sasp_job *j, int n, const char *err)
{
    sasp_event ev = {0};
    ev.done = 1;
    ev.finish_reason = "stop";
    ev.end = SASP_END_STOPPED;
    ev.slot = j->action.slot;
    ev.prompt_tokens = n;
    ev.total_ns = sasp_now_ns() - j->t_submit;
    if (err) {
        ev.error = 1;
        ev.text = strdup(err);
        ev.len = ev.text ? strlen(ev.text) : 0;
    }
    job_post(j, &ev);
    sasp_job_release(j);
}

/* Save: a copy of the slot's cache into the job. The number of tokens, or -1 when out of memory. */
static int slot_save(sasp_sched *s, slot *sl, sasp_job *j)
{
    int n = sl->kv->len;
    if (n == 0) return 0;
    sasp_kv *kv = sasp_kv_new(s->m, n);
    int *ids = malloc((size_t)n * sizeof *ids);
    if (!kv || !ids || sasp_kv_copy(s->m, kv, sl->kv, n) != 0) {
        sasp_kv_free(kv);
        free(ids);
        return -1;
    }
    memcpy(ids, sl->ids, (size_t)n * sizeof *ids);
    pthread_mutex_lock(&j->mu);
    j->action.kv = kv;
    j->action.ids = ids;
    pthread_mutex_unlock(&j->mu);
    return n;
}

/* Run action j on its slot, which no sequence holds; the event says how it went. */
static void slot_action_run(sasp_sched *s, sasp_job *j)
{
    char err[160];
    slot *sl = &s->slots[j->action.slot];
    int n = 0;
    if (j->action.kind == SASP_SLOT_SAVE) {
        if ((n = slot_save(s, sl, j)) < 0) {
            action_done(j, 0, "out of memory copying the slot's cache");
            return;
        }
    } else if (j->action.kind == SASP_SLOT_RESTORE) {
        n = j->action.kv ? j->action.kv->len : 0;
        if (n > sl->kv->cap) {
            snprintf(err, sizeof err, "the saved state holds %d tokens, more than the slot's context of %d", n,
                     sl->kv->cap);
            action_done(j, 0, err);
            return;
        }
        keep_evicted(s, sl, 0); /* what the slot held may still serve a prompt: the host cache keeps it */
        if (n > 0 && sasp_kv_copy(s->m, sl->kv, j->action.kv, n) == 0) memcpy(sl->ids, j->action.ids, (size_t)n * sizeof *sl->ids);
        else sasp_kv_truncate(s->m, sl->kv, 0);
    } else {
        n = sl->kv->len;
        sasp_kv_truncate(s->m, sl->kv, 0);
    }
    sl->n_reused = 0;
    action_done(j, n, NULL);
}

/* Before admission: every waiting slot action whose slot no sequence holds runs now; the others wait
 * for their slot (a cancelled one, or every one when stopping, ends at once). */
static void run_slot_actions(sasp_sched *s)
{
    pthread_mutex_lock(&s->mu);
    sasp_job *ready = NULL, **tail = &ready;
    for (sasp_job **pp = &s->actions; *pp;) {
        sasp_job *j = *pp;
        int id = j->action.slot, bad = id < 0 || id >= s->n_slots;
        if (bad || s->stopping || atomic_load(&j->cancelled) || !s->slots[id].q) {
            *pp = j->action.next;
            j->action.next = NULL;
            *tail = j;
            tail = &j->action.next;
        } else {
            pp = &j->action.next;
        }
    }
    int stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    while (ready) { /* outside s->mu: keep_evicted and the copies take it or take long */
        sasp_job *j = ready;
        ready = j->action.next;
        int id = j->action.slot;
        if (id < 0 || id >= s->n_slots) action_done(j, 0, "Invalid slot ID");
        else if (stopping) action_done(j, 0, "the server is shutting down");
        else if (atomic_load(&j->cancelled)) action_done(j, 0, "cancelled");
        else slot_action_run(s, j);
    }
}

/* --- the engine loop: admit, start and end sequences, plan a step, run it, deliver --- */

/* Under s->mu: take the queued sequences that will never run (cancelled ones, or all of them when
 * stopping) out of the queue; returns them as a list through qnext. */
static seq *unqueue_dropped(sasp_sched *s, int stopping)
{
    seq *drop = NULL;
    for (seq **pp = &s->qhead; *pp;) {
        seq *q = *pp;
        if (stopping || atomic_load(&q->job->cancelled)) {
            *pp = q->qnext;
            q->qnext = drop;
            drop = q;
            s->n_queued--;
            if (!stopping) s->st.cancelled++;
            continue;
        }
        pp = &q->qnext;
    }
    s->qtail = NULL;
    for (seq *q = s->qhead; q; q = q->qnext) s->qtail = q;
    return drop;
}

/* The slot the first queued sequence takes: among the free ones, the cache sharing the longest prefix
 * with its prompt (prompt_cache.h); -1 when none is free. */
static int choose_slot(sasp_sched *s, const seq *q)
{
    for (int i = 0; i < s->n_slots; i++) {
        const slot *sl = &s->slots[i];
        s->views[i] = (sasp_slot_view){sl->ids, sl->kv->len, sl->q == NULL, sl->last_used};
    }
    int reuse = !q->p.no_cache && !q->p.prompt_logprobs && !q->p.pooling;
    return sasp_pick_slot(s->views, s->n_slots, q->prompt, q->n_prompt, reuse);
}

/* Under s->mu: the link to the queued sequence that takes the next free slot: the first one (in order of
 * arrival) of a client holding the fewest slots now, so that clients take turns. */
static seq **fair_next(sasp_sched *s)
{
    seq **best = NULL;
    int best_held = 0;
    for (seq **pp = &s->qhead; *pp; pp = &(*pp)->qnext) {
        uint64_t client = (*pp)->job->client;
        int held = 0;
        for (int i = 0; i < s->n_slots; i++)
            if (s->slots[i].q && s->slots[i].q->job->client == client) held++;
        if (!best || held < best_held) best = pp, best_held = held;
        if (held == 0) break; /* nobody holds fewer */
    }
    return best;
}

void sasp_job_set_client(sasp_job *job, uint64_t client) { job->client = client; }

/* Under s->mu: move queued sequences into the free slots, clients in turn (fair_next). */
static void fill_slots(sasp_sched *s)
{
    int i;
    seq **pp;
    while ((pp = fair_next(s)) && (i = choose_slot(s, *pp)) >= 0) {
        seq *q = *pp;
        *pp = q->qnext;
        if (s->qtail == q) { /* the last one left: the tail is the one before it */
            s->qtail = NULL;
            for (seq *t = s->qhead; t; t = t->qnext) s->qtail = t;
        }
        s->n_queued--;
        q->qnext = NULL;
        q->slot = i;
        s->slots[i].q = q;
        s->slots[i].last_used = s->slots[i].task = ++s->clock;
        s->active++;
    }
}

/* Whether s has a sequence in a slot or waiting for one. */
static int sched_busy(sasp_sched *s)
{
    pthread_mutex_lock(&s->mu);
    int busy = s->active > 0 || s->qhead != NULL || s->actions != NULL;
    pthread_mutex_unlock(&s->mu);
    return busy;
}

/* End the queued sequences that will never run and fill the free slots; *stopping tells whether
 * sasp_sched_shutdown was called. */
static void admit(sasp_sched *s, int *stopping)
{
    pthread_mutex_lock(&s->mu);
    *stopping = s->stopping;
    seq *drop = unqueue_dropped(s, *stopping);
    fill_slots(s);
    pthread_mutex_unlock(&s->mu);
    while (drop) { /* seq_finish takes s->mu itself */
        seq *q = drop;
        drop = q->qnext;
        seq_finish(s, q, -1, "stop", 0, "", 0);
    }
}

/* Plan what slot i feeds as step n: its next prompt chunk, as far as *budget (the prompt tokens left
 * for this step) allows, or the token it sampled last. Returns 1, or 0 when it feeds nothing now. */
static int plan_slot(sasp_sched *s, int i, int n, int *budget)
{
    seq *q = s->slots[i].q;
    sasp_step *st = &s->steps[n];
    st->kv = s->slots[i].kv;
    st->logits = s->logits + (size_t)i * s->vocab;
    st->n_hidden = 0;
    st->hidden = NULL;
    if (q->n_fed < q->n_prompt) {
        if (*budget <= 0) return 0;
        int take = q->n_prompt - q->n_fed < *budget ? q->n_prompt - q->n_fed : *budget;
        *budget -= take;
        st->tokens = q->prompt + q->n_fed;
        st->n_tokens = take;
        st->n_logits = q->n_fed + take == q->n_prompt ? 1 : 0; /* the last row predicts the first token */
        if (q->p.prompt_logprobs) {                            /* every row's logits: they score the prompt */
            st->n_logits = take;
            st->logits = q->plogits;
        }
        if (q->p.pooling) { /* the hidden states it pools, and no logits */
            st->n_logits = 0;
            st->n_hidden = q->p.pooling == SASP_POOL_LAST ? (q->n_fed + take == q->n_prompt) : take;
            st->hidden = q->hid;
        }
        s->step_fed[n] = take;
    } else {
        st->tokens = &q->next_tok;
        st->n_tokens = 1;
        st->n_logits = 1;
        s->step_fed[n] = 0;
    }
    s->step_slot[n] = i;
    return 1;
}

/* Start the sequences just admitted to a slot, and end the cancelled ones (every one when stopping). */
static void start_and_end_sequences(sasp_sched *s, int stopping)
{
    static const char oom[] = "out of memory";
    for (int i = 0; i < s->n_slots; i++) {
        seq *q = s->slots[i].q;
        if (!q) continue;
        if (!q->smp && seq_start(s, q) != 0) {
            seq_finish(s, q, i, "stop", 1, oom, sizeof oom - 1);
            continue;
        }
        if (stopping) {
            seq_finish_flush(s, q, i, "stop");
            continue;
        }
        if (atomic_load(&q->job->cancelled)) {
            pthread_mutex_lock(&s->mu);
            s->st.cancelled++;
            pthread_mutex_unlock(&s->mu);
            seq_finish(s, q, i, "stop", 0, "", 0);
        }
    }
}

/* Plan what each slot that holds a sequence feeds this step, in slot order within the step's budget of
 * prompt tokens. Returns the number of planned steps. */
static int plan_step(sasp_sched *s)
{
    int n = 0, budget = s->chunk;
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].q) n += plan_slot(s, i, n, &budget);
    return n;
}

/* Pool the n hidden states a step returned into q->pool: add them up (mean), or keep the last. */
static void seq_pool(seq *q, int n)
{
    for (int r = 0; r < n; r++) {
        const float *h = q->hid + (size_t)r * q->n_pool;
        for (int j = 0; j < q->n_pool; j++)
            q->pool[j] = q->p.pooling == SASP_POOL_LAST ? h[j] : q->pool[j] + h[j];
    }
}

/* Whether step k of sequence q draws a token in draw_all: it has logits, and neither pools nor scores
 * its prompt (deliver draws after scoring). */
static int step_draws(const sasp_sched *s, int k, const seq *q)
{
    return s->steps[k].n_logits && !q->p.pooling && !(s->step_fed[k] && q->p.prompt_logprobs);
}

/* A thread of draw_all: takes the next step that draws until none is left. */
static void draw_some(void *arg, int ith, int nth)
{
    sasp_sched *s = arg;
    (void)ith, (void)nth;
    for (int d; (d = atomic_fetch_add_explicit(&s->next_draw, 1, memory_order_relaxed)) < s->n_draw;) {
        int k = s->draw_step[d], i = s->step_slot[k];
        s->step_tok[k] = seq_draw(s, i, s->slots[i].q, s->steps[k].logits);
    }
}

/* Draw the tokens of the n steps just run, on the model's threads when more than one draws: with a
 * small model the draws of a batch are a large share of its step (at batch 8 with logprobs, eight
 * log-softmaxes over the vocabulary: docs/performance.md). */
static void draw_all(sasp_sched *s, int n)
{
    s->n_draw = 0;
    for (int k = 0; k < n; k++)
        if (step_draws(s, k, s->slots[s->step_slot[k]].q)) s->draw_step[s->n_draw++] = k;
    atomic_store_explicit(&s->next_draw, 0, memory_order_relaxed);
    if (s->n_draw > 1 && sasp_pool_size(s->m->pool) > 1) sasp_pool_run_claimed(s->m->pool, draw_some, s);
    else draw_some(s, 0, 1);
}

/* After a successful forward pass, step k (slot i, sequence q): count the prompt tokens it fed, score
 * them when asked, and take the token draw_all drew (a prompt scored is drawn from here, after). */
static void deliver(sasp_sched *s, int k, int i, seq *q)
{
    int fed = s->step_fed[k];
    q->n_fed += fed;
    if (q->p.pooling) {
        seq_pool(q, s->steps[k].n_hidden);
        if (q->n_fed == q->n_prompt) seq_finish(s, q, i, "stop", 0, "", 0);
    } else if (fed && q->p.prompt_logprobs) {
        seq_score_prompt(s, q, q->n_fed - fed, fed);
        if (q->n_fed < q->n_prompt) return;
        if (q->p.max_tokens == 0) seq_finish_flush(s, q, i, "length"); /* scoring only */
        else seq_on_token(s, i, q, seq_draw(s, i, q, q->plogits + (size_t)(fed - 1) * s->vocab));
    } else if (step_draws(s, k, q)) {
        seq_on_token(s, i, q, s->step_tok[k]);
    }
}

/* After a successful pass: the tokens each of the n steps fed are in its slot's cache now. */
static void remember_fed(sasp_sched *s, int n)
{
    for (int k = 0; k < n; k++) {
        slot *sl = &s->slots[s->step_slot[k]];
        const sasp_step *st = &s->steps[k];
        memcpy(sl->ids + sl->kv->len - st->n_tokens, st->tokens, (size_t)st->n_tokens * sizeof *sl->ids);
    }
}

/* Run the n planned steps in one forward pass and deliver them; a failed pass ends their sequences
 * with the error. */
static void run_step(sasp_sched *s, int n)
{
    char err[256];
    int64_t t0 = sasp_now_ns();
    int rc = sasp_forward(s->m, s->steps, n, err, sizeof err);
    int64_t t1 = sasp_now_ns();
    uint64_t fed = 0;
    for (int k = 0; k < n; k++) fed += (uint64_t)s->step_fed[k];
    pthread_mutex_lock(&s->mu);
    s->st.steps++;
    s->st.forward_seconds += (double)(t1 - t0) * 1e-9;
    if (rc == 0) s->st.prompt_tokens += fed;
    pthread_mutex_unlock(&s->mu);
    if (rc != 0) fprintf(stderr, "sasp-server: engine step failed: %s\n", err);
    else remember_fed(s, n), draw_all(s, n);
    for (int k = 0; k < n; k++) {
        int i = s->step_slot[k];
        if (rc != 0) seq_finish(s, s->slots[i].q, i, "stop", 1, err, strlen(err));
        else deliver(s, k, i, s->slots[i].q);
    }
}

/* One step of s when it has work: admit, start and end sequences, plan, run, deliver, then the step
 * delay. Returns whether there was work. */
static int sched_step(sasp_sched *s)
{
    if (!sched_busy(s)) return 0;
    int stopping;
    run_slot_actions(s);
    admit(s, &stopping);
    start_and_end_sequences(s, stopping);
    int n = plan_step(s);
    if (n > 0) run_step(s, n);
    pthread_mutex_lock(&s->mu);
    snapshot_slots(s);
    pthread_mutex_unlock(&s->mu);
    int delay = atomic_load(&s->step_delay_ms);
    if (n > 0 && delay > 0) {
        struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 1;
}

/* The engine thread: sleep until woken, then rounds of one step of every scheduler with work (in the
 * order they were made), until none has any. */
static void *engine_main(void *arg)
{
    sasp_engine *e = arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->quit && e->wakes == seen) pthread_cond_wait(&e->cv, &e->mu);
        if (e->quit) break;
        seen = e->wakes;
        int worked;
        do {
            worked = 0;
            for (sasp_sched *s = e->list; s; s = s->next) {
                e->current = s;
                pthread_mutex_unlock(&e->mu);
                worked |= sched_step(s);
                pthread_mutex_lock(&e->mu);
                e->current = NULL;
                pthread_cond_broadcast(&e->cv);
            }
        } while (worked && !e->quit);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static void engine_wake(sasp_engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->wakes++;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

sasp_engine *sasp_engine_new(char *err, size_t errlen)
{
    sasp_engine *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        snprintf(err, errlen, "cannot start the engine thread");
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
        free(e);
        return NULL;
    }
    return e;
}

void sasp_engine_free(sasp_engine *e)
{
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->quit = 1;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

/* Put s at the end of e's list (it is stepped from the next round on). */
static void engine_attach(sasp_engine *e, sasp_sched *s)
{
    pthread_mutex_lock(&e->mu);
    sasp_sched **pp = &e->list;
    while (*pp) pp = &(*pp)->next;
    *pp = s;
    s->engine = e;
    pthread_mutex_unlock(&e->mu);
}

/* Take s off e's list once the engine is not stepping it. */
static void engine_detach(sasp_engine *e, sasp_sched *s)
{
    pthread_mutex_lock(&e->mu);
    while (e->current == s) pthread_cond_wait(&e->cv, &e->mu);
    for (sasp_sched **pp = &e->list; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    pthread_mutex_unlock(&e->mu);
}

static void sched_free_memory(sasp_sched *s)
{
    for (int i = 0; s->slots && i < s->n_slots; i++) {
        sasp_kv_free(s->slots[i].kv);
        free(s->slots[i].ids);
    }
    sasp_token_table_free(s->table);
    sasp_host_cache_free(s->host);
    free(s->slots);
    free(s->views);
    free(s->logits);
    free(s->steps);
    free(s->step_slot);
    free(s->step_fed);
    free(s->step_tok);
    free(s->draw_step);
    free(s);
}

/* The scheduler's memory: slots with their caches, the step buffers, the token table. */
static sasp_sched *sched_alloc(sasp_model *m, const sasp_tokenizer *tok, int n_slots, int n_ctx)
{
    sasp_sched *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->m = m;
    s->tok = tok;
    s->n_slots = n_slots;
    s->vocab = m->cfg.vocab_size;
    s->eos = m->cfg.eos_token_id;
    s->slots = calloc((size_t)n_slots, sizeof *s->slots);
    s->logits = malloc((size_t)n_slots * (size_t)s->vocab * sizeof *s->logits);
    s->steps = calloc((size_t)n_slots, sizeof *s->steps);
    s->step_slot = calloc((size_t)n_slots, sizeof *s->step_slot);
    s->step_fed = calloc((size_t)n_slots, sizeof *s->step_fed);
    s->step_tok = calloc((size_t)n_slots, sizeof *s->step_tok);
    s->draw_step = calloc((size_t)n_slots, sizeof *s->draw_step);
    s->views = calloc((size_t)n_slots, sizeof *s->views);
    s->table = sasp_token_table_new(tok);
    int ok = s->slots && s->logits && s->steps && s->step_slot && s->step_fed && s->step_tok && s->draw_step &&
             s->views && s->table;
    for (int i = 0; ok && i < n_slots; i++) {
        ok = (s->slots[i].kv = sasp_kv_new(m, n_ctx)) != NULL;
        ok = ok && (s->slots[i].ids = malloc((size_t)s->slots[i].kv->cap * sizeof *s->slots[i].ids)) != NULL;
    }
    if (!ok) {
        sched_free_memory(s);
        return NULL;
    }
    return s;
}

sasp_sched *sasp_sched_new_on(sasp_engine *e, sasp_model *m, const sasp_tokenizer *tok, int n_slots, int n_ctx,
                              int max_queue, int chunk, char *err, size_t errlen)
{
    if (n_slots < 1 || chunk < 1 || max_queue < 0) {
        snprintf(err, errlen, "bad scheduler sizes (parallel %d, chunk %d, max-queue %d)", n_slots, chunk,
                 max_queue);
        return NULL;
    }
    if (n_ctx <= 0 || n_ctx > m->cfg.max_seq_len) n_ctx = m->cfg.max_seq_len;
    sasp_sched *s = sched_alloc(m, tok, n_slots, n_ctx);
    if (!s) {
        snprintf(err, errlen, "out of memory allocating %d slots of %d positions", n_slots, n_ctx);
        return NULL;
    }
    s->max_queue = max_queue;
    s->chunk = chunk;
    sasp_sched_stats_empty(&s->st);
    s->st.n_slots = n_slots;
    snapshot_slots(s);
    pthread_mutex_init(&s->mu, NULL);
    engine_attach(e, s);
    return s;
}

sasp_sched *sasp_sched_new(sasp_model *m, const sasp_tokenizer *tok, int n_slots, int n_ctx,
                           int max_queue, int chunk, char *err, size_t errlen)
{
    sasp_engine *e = sasp_engine_new(err, errlen);
    if (!e) return NULL;
    sasp_sched *s = sasp_sched_new_on(e, m, tok, n_slots, n_ctx, max_queue, chunk, err, errlen);
    if (!s) {
        sasp_engine_free(e);
        return NULL;
    }
    s->own_engine = 1;
    return s;
}

int sasp_sched_submit(sasp_sched *s, sasp_job *job)
{
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return -2;
    }
    if (job->action.kind) {
        submit_action(s, job);
        pthread_mutex_unlock(&s->mu);
        engine_wake(s->engine);
        return 0;
    }
    if (job->n_seq > s->n_slots + s->max_queue) { /* could never fit, however long one waits */
        pthread_mutex_unlock(&s->mu);
        return -3;
    }
    int free_slots = s->n_slots - s->active;
    if (s->n_queued + job->n_seq > free_slots + s->max_queue) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    pthread_mutex_lock(&job->mu);
    job->refs++;
    pthread_mutex_unlock(&job->mu);
    job->t_submit = sasp_now_ns();
    for (int i = 0; i < job->n_seq; i++) {
        seq *q = &job->seqs[i];
        q->qnext = NULL;
        if (s->qtail) s->qtail->qnext = q;
        else s->qhead = q;
        s->qtail = q;
        s->n_queued++;
    }
    pthread_mutex_unlock(&s->mu);
    engine_wake(s->engine);
    return 0;
}

void sasp_sched_shutdown(sasp_sched *s)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_mutex_unlock(&s->mu);
    engine_wake(s->engine);
}

void sasp_sched_free(sasp_sched *s)
{
    if (!s) return;
    sasp_sched_shutdown(s);
    while (sched_busy(s)) { /* let the engine end what is open */
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    sasp_engine *e = s->engine;
    engine_detach(e, s);
    pthread_mutex_destroy(&s->mu);
    int own = s->own_engine;
    sched_free_memory(s);
    if (own) sasp_engine_free(e);
}

void sasp_sched_stats_empty(sasp_sched_stats *out)
{
    memset(out, 0, sizeof *out);
    memcpy(out->ttft.le, ttft_le, sizeof ttft_le);
    memcpy(out->token_latency.le, tok_le, sizeof tok_le);
}

void sasp_sched_get_stats(sasp_sched *s, sasp_sched_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->active = s->active;
    out->queued = s->n_queued;
    pthread_mutex_unlock(&s->mu);
}

int sasp_sched_slots(sasp_sched *s, sasp_slot_info *out, int max)
{
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_slots && i < max; i++) out[i] = s->slots[i].info;
    pthread_mutex_unlock(&s->mu);
    return s->n_slots;
}

void sasp_sched_set_cache_ram(sasp_sched *s, size_t bytes)
{
    sasp_host_cache_free(s->host);
    s->host = sasp_host_cache_new(s->m, bytes);
}

void sasp_sched_set_step_delay(sasp_sched *s, int ms) { atomic_store(&s->step_delay_ms, ms < 0 ? 0 : ms); }
