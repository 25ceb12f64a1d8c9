/* scheduler.c: the engine thread of sasp-server: continuous batching, sampling, streaming text out.
 * See scheduler.h for the contract. Locks: s->mu guards the queue, the slot table and the stats;
 * job->mu guards a job's event list and reference count. Only sasp_sched_submit holds both (job->mu
 * inside s->mu); nothing takes them in the other order. A sequence's own fields belong to the engine
 * thread from submission on. */
#include "scheduler.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

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
    sasp_buf pend;         /* decoded text not yet released (could start a stop string) */
    int n_gen;
    int next_tok;          /* sampled, to be fed next step */
    int *ev_ids;           /* tokens since the last event */
    sasp_token_info *ev_info;
    int ev_n, ev_cap;
    float *plogits;        /* prompt_logprobs: the logits of every row of a prompt chunk */
    sasp_token_info *pinfo; /* prompt_logprobs: [n_prompt - 1], filled while the prompt is read */
    sasp_candidate *pscratch;
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
};

void sasp_event_clear(sasp_event *ev)
{
    free(ev->text);
    free(ev->ids);
    free(ev->info);
    free(ev->prompt_info);
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
    return 0;
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
        for (int k = 0; k < q->p.n_stop; k++) free(q->p.stop[k]);
    }
    free(j->seqs);
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
    seq *q;
    sasp_slot_info info; /* snapshot for /props, updated under s->mu */
} slot;

struct sasp_sched {
    sasp_model *m;
    const sasp_tokenizer *tok;
    int n_slots, max_queue, chunk, vocab, eos;
    slot *slots;
    float *logits;         /* [n_slots][vocab] */
    sasp_step *steps;      /* [n_slots] */
    int *step_slot, *step_fed;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    seq *qhead, *qtail;
    int n_queued, active;
    int stopping, quit;
    atomic_int step_delay_ms;
    sasp_sched_stats st;
    pthread_t thread;
};

static const double ttft_le[SASP_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                  0.5,   1,    2.5,   5,    10,  30};
static const double tok_le[SASP_HIST_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                 0.05,   0.1,   0.25,   0.5,   1,    2.5};

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

/* Post the event of q that releases text[0..len) and the tokens gathered since its last one; reason
 * non-NULL makes it the final event. Returns 1 if the job has delivered everything (caller drops
 * the engine's reference). */
static int seq_emit(seq *q, const char *text, size_t len, const char *reason, int error)
{
    if (!reason && len == 0) return 0;
    sasp_event ev = {0};
    ev.index = q->index;
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
        ev.total_ns = t - q->job->t_submit;
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

static int seq_start(sasp_sched *s, seq *q)
{
    q->smp = sasp_sampler_new(s->vocab, &q->p.sampling);
    if (!q->smp) return -1;
    if (q->p.prompt_logprobs) {
        int rows = q->n_prompt < s->chunk ? q->n_prompt : s->chunk;
        q->plogits = malloc((size_t)rows * (size_t)s->vocab * sizeof *q->plogits);
        q->pinfo = calloc((size_t)q->n_prompt, sizeof *q->pinfo);
        q->pscratch = malloc((size_t)s->vocab * sizeof *q->pscratch);
        if (!q->plogits || !q->pinfo || !q->pscratch) return -1;
    }
    for (int i = 0; i < q->n_prompt; i++) sasp_sampler_accept(q->smp, q->prompt[i], 0);
    sasp_stream_init(&q->utf8);
    q->t_start = sasp_now_ns();
    return 0;
}

/* Keep tok, and its logprobs when they were asked, for q's next event. */
static void record_token(seq *q, int tok)
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
        ti->id = tok;
        ti->n_top = q->p.top_logprobs;
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
    char small[512];
    size_t cap = 3 * nb + 8;
    char *out = cap <= sizeof small ? small : malloc(cap);
    if (!out) return;
    size_t w = sasp_stream_push(&q->utf8, b, nb, out, cap);
    sasp_buf_append(&q->pend, out, w);
    if (out != small) free(out);
}

/* The sampled logits of slot si: choose the token, stream its text, decide whether q is finished. */
static void seq_on_logits(sasp_sched *s, int si, seq *q, const float *logits)
{
    int64_t t = sasp_now_ns();
    int tok = sasp_sampler_sample(q->smp, logits);
    record_token(q, tok);
    sasp_sampler_accept(q->smp, tok, 1);
    q->n_gen++;
    observe_token(s, q, t);

    if (tok == s->eos && !q->p.ignore_eos) {
        seq_finish_flush(s, q, si, "stop");
        return;
    }
    decode_token(s, q, tok);
    size_t cut = 0;
    if (sasp_stop_scan(pend_text(q), q->pend.len, q->p.stop, q->p.n_stop, &cut)) {
        seq_finish(s, q, si, "stop", 0, pend_text(q), cut);
        return;
    }
    if (q->n_gen >= q->p.max_tokens || s->slots[si].kv->len >= s->slots[si].kv->cap) {
        seq_finish_flush(s, q, si, "length");
        return;
    }
    if (cut > 0) { /* release what can no longer be part of a stop string */
        seq_emit(q, q->pend.data, cut, NULL, 0);
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
        sl->info.state = !q ? "idle" : q->n_fed < q->n_prompt ? "prefill" : "generating";
        sl->info.n_prompt = q ? q->n_prompt : 0;
        sl->info.n_past = q ? sl->kv->len : 0;
        sl->info.n_generated = q ? q->n_gen : 0;
    }
}

/* --- the engine loop: admit, gather a step, run it, deliver --- */

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

/* Under s->mu: move queued sequences into the free slots, first come first served. */
static void fill_slots(sasp_sched *s)
{
    for (int i = 0; i < s->n_slots && s->qhead; i++) {
        if (s->slots[i].q) continue;
        seq *q = s->qhead;
        s->qhead = q->qnext;
        if (!s->qhead) s->qtail = NULL;
        s->n_queued--;
        q->qnext = NULL;
        s->slots[i].q = q;
        sasp_kv_reset(s->slots[i].kv);
        s->active++;
    }
}

/* Wait until there is work, then end the queued sequences that will never run and fill the free
 * slots. Returns 0 with *stopping set (sasp_sched_shutdown was called), or -1 when the engine quits. */
static int admit(sasp_sched *s, int *stopping)
{
    pthread_mutex_lock(&s->mu);
    while (!s->quit && s->active == 0 && !s->qhead) pthread_cond_wait(&s->cv, &s->mu);
    if (s->quit) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    *stopping = s->stopping;
    seq *drop = unqueue_dropped(s, *stopping);
    fill_slots(s);
    pthread_mutex_unlock(&s->mu);
    while (drop) { /* seq_finish takes s->mu itself */
        seq *q = drop;
        drop = q->qnext;
        seq_finish(s, q, -1, "stop", 0, "", 0);
    }
    return 0;
}

/* Plan what slot i feeds as step n: its next prompt chunk, as far as *budget (the prompt tokens left
 * for this step) allows, or the token it sampled last. Returns 1, or 0 when it feeds nothing now. */
static int plan_slot(sasp_sched *s, int i, int n, int *budget)
{
    seq *q = s->slots[i].q;
    sasp_step *st = &s->steps[n];
    st->kv = s->slots[i].kv;
    st->logits = s->logits + (size_t)i * s->vocab;
    if (q->n_fed < q->n_prompt) {
        if (*budget <= 0) return 0;
        int take = q->n_prompt - q->n_fed < *budget ? q->n_prompt - q->n_fed : *budget;
        *budget -= take;
        st->tokens = q->prompt + q->n_fed;
        st->n_tokens = take;
        st->n_logits = q->n_fed + take == q->n_prompt ? 1 : 0; /* the last row predicts the first token */
        if (q->p.prompt_logprobs) { /* every row's logits: they score the prompt */
            st->n_logits = take;
            st->logits = q->plogits;
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

/* One step over the slots: start the sequences just admitted, end the cancelled ones (every one when
 * stopping), plan what each other one feeds. Returns the number of planned steps. */
static int gather_step(sasp_sched *s, int stopping)
{
    int n = 0, budget = s->chunk;
    for (int i = 0; i < s->n_slots; i++) {
        seq *q = s->slots[i].q;
        if (!q) continue;
        if (!q->smp && seq_start(s, q) != 0) {
            seq_finish(s, q, i, "stop", 1, "out of memory", 13);
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
            continue;
        }
        n += plan_slot(s, i, n, &budget);
    }
    return n;
}

/* After a successful forward pass, step k (slot i, sequence q): count the prompt tokens it fed, score
 * them when asked, and sample once the logits of its next token are there. */
static void deliver(sasp_sched *s, int k, int i, seq *q)
{
    int fed = s->step_fed[k];
    q->n_fed += fed;
    if (fed && q->p.prompt_logprobs) {
        seq_score_prompt(s, q, q->n_fed - fed, fed);
        if (q->n_fed == q->n_prompt) seq_on_logits(s, i, q, q->plogits + (size_t)(fed - 1) * s->vocab);
    } else if (s->steps[k].n_logits) {
        seq_on_logits(s, i, q, s->steps[k].logits);
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
    for (int k = 0; k < n; k++) {
        int i = s->step_slot[k];
        if (rc != 0) seq_finish(s, s->slots[i].q, i, "stop", 1, err, strlen(err));
        else deliver(s, k, i, s->slots[i].q);
    }
}

static void *engine_main(void *arg)
{
    sasp_sched *s = arg;
    int stopping;
    while (admit(s, &stopping) == 0) {
        int n = gather_step(s, stopping);
        if (n > 0) run_step(s, n);
        pthread_mutex_lock(&s->mu);
        snapshot_slots(s);
        pthread_mutex_unlock(&s->mu);
        int delay = atomic_load(&s->step_delay_ms);
        if (n > 0 && delay > 0) {
            struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

sasp_sched *sasp_sched_new(sasp_model *m, const sasp_tokenizer *tok, int n_slots, int n_ctx,
                           int max_queue, int chunk, char *err, size_t errlen)
{
    if (n_slots < 1 || chunk < 1 || max_queue < 0) {
        snprintf(err, errlen, "bad scheduler sizes (parallel %d, chunk %d, max-queue %d)", n_slots, chunk,
                 max_queue);
        return NULL;
    }
    if (n_ctx <= 0 || n_ctx > m->cfg.max_seq_len) n_ctx = m->cfg.max_seq_len;
    sasp_sched *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->m = m;
    s->tok = tok;
    s->n_slots = n_slots;
    s->max_queue = max_queue;
    s->chunk = chunk;
    s->vocab = m->cfg.vocab_size;
    s->eos = m->cfg.eos_token_id;
    s->slots = calloc((size_t)n_slots, sizeof *s->slots);
    s->logits = malloc((size_t)n_slots * (size_t)s->vocab * sizeof *s->logits);
    s->steps = calloc((size_t)n_slots, sizeof *s->steps);
    s->step_slot = calloc((size_t)n_slots, sizeof *s->step_slot);
    s->step_fed = calloc((size_t)n_slots, sizeof *s->step_fed);
    if (!s->slots || !s->logits || !s->steps || !s->step_slot || !s->step_fed) goto oom;
    for (int i = 0; i < n_slots; i++) {
        s->slots[i].kv = sasp_kv_new(m, n_ctx);
        if (!s->slots[i].kv) goto oom;
    }
    s->st.n_slots = n_slots;
    memcpy(s->st.ttft.le, ttft_le, sizeof ttft_le);
    memcpy(s->st.token_latency.le, tok_le, sizeof tok_le);
    snapshot_slots(s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, engine_main, s) != 0) {
        snprintf(err, errlen, "cannot start the engine thread");
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        s->thread = 0;
        goto fail;
    }
    return s;
oom:
    snprintf(err, errlen, "out of memory allocating %d slots of %d positions", n_slots, n_ctx);
fail:
    if (s) {
        for (int i = 0; s->slots && i < n_slots; i++) sasp_kv_free(s->slots[i].kv);
        free(s->slots);
        free(s->logits);
        free(s->steps);
        free(s->step_slot);
        free(s->step_fed);
        free(s);
    }
    return NULL;
}

int sasp_sched_submit(sasp_sched *s, sasp_job *job)
{
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return -2;
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
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void sasp_sched_shutdown(sasp_sched *s)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sasp_sched_free(sasp_sched *s)
{
    if (!s) return;
    sasp_sched_shutdown(s);
    /* let the engine end what is open, then stop it */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int busy = s->active > 0 || s->qhead;
        if (!busy) {
            s->quit = 1;
            pthread_cond_signal(&s->cv);
        }
        pthread_mutex_unlock(&s->mu);
        if (!busy) break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    pthread_join(s->thread, NULL);
    for (int i = 0; i < s->n_slots; i++) sasp_kv_free(s->slots[i].kv);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->slots);
    free(s->logits);
    free(s->steps);
    free(s->step_slot);
    free(s->step_fed);
    free(s);
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

void sasp_sched_set_step_delay(sasp_sched *s, int ms) { atomic_store(&s->step_delay_ms, ms < 0 ? 0 : ms); }
