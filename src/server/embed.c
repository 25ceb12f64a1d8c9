/* embed.c: the embeddings endpoints (/v1/embeddings, /api/embed, /api/embeddings). The inputs run
 * through the model's engine like prompts, in jobs of at most as many sequences as the model has
 * slots, one after another; each sequence's last event carries its pooled, L2-normalised final hidden
 * state. While a job runs the connection is suspended (http/wait.c hands the events to embed_take),
 * so no HTTP thread waits on the engine. api/embed.c writes the answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/reply.h"
#include "http/route.h"
#include "http/wait.h"
#include "server/handlers.h"
#include "server/models.h"

/* An embeddings request while it runs (its conn's work): its inputs, the batch in flight, the vectors
 * so far. */
typedef struct embed_work {
    api_embed_request r;
    served_model *m;
    char name[256];
    int from, n;     /* the batch in flight: inputs [from, from + n) */
    float **vectors; /* [r.n_inputs] */
    int failed;
    int64_t t0;
} embed_work;

static void embed_work_free(embed_work *w)
{
    if (!w) return;
    for (int i = 0; w->vectors && i < w->r.n_inputs; i++) free(w->vectors[i]);
    free(w->vectors);
    api_embed_request_free(&w->r);
    free(w);
}

/* The waiter hands the events of a batch's job here: the vectors of the inputs as they end. */
static void embed_take(conn *k, sasp_event *ev)
{
    embed_work *w = k->run.work;
    if (ev->done && (ev->error || !ev->embedding)) w->failed = 1;
    if (ev->done && ev->embedding && ev->index >= 0 && ev->index < w->n) {
        w->vectors[w->from + ev->index] = ev->embedding;
        ev->embedding = NULL;
    }
    sasp_event_clear(ev);
}

/* Submit the next batch (at most as many inputs as the model has slots) as k's job. 0, or the
 * scheduler's refusal (< 0), or 1 when out of memory. */
static int submit_batch(conn *k)
{
    embed_work *w = k->run.work;
    sasp_sched_stats st;
    sasp_sched_get_stats(w->m->sched, &st);
    w->from += w->n;
    w->n = w->r.n_inputs - w->from < st.n_slots ? w->r.n_inputs - w->from : st.n_slots;
    sasp_job *job = sasp_job_new(w->n);
    sasp_gen_params g;
    memset(&g, 0, sizeof g);
    sasp_sampling_defaults(&g.sampling);
    g.max_tokens = 1;
    g.pooling = w->r.pooling;
    for (int i = 0; job && i < w->n; i++)
        if (sasp_job_set(job, i, w->r.ids[w->from + i], w->r.n_ids[w->from + i], &g) != 0) {
            sasp_job_release(job);
            job = NULL;
        }
    if (!job) return 1;
    sasp_job_set_client(job, guard_client_id(k->mc));
    int rc = sasp_sched_submit(w->m->sched, job);
    if (rc != 0) {
        sasp_job_release(job);
        return rc;
    }
    if (k->run.job) sasp_job_release(k->run.job);
    k->run.job = job;
    k->wait.end = k->wait.got = 0;
    return 0;
}

/* Submit the next batch and suspend k until it ends, or answer the refusal. */
static enum MHD_Result run_batch(struct MHD_Connection *c, conn *k)
{
    int rc = submit_batch(k);
    if (rc < 0) return served_reply_refused(c, k, rc);
    if (rc > 0) return reply_errorf(c, k, 500, "server_error", NULL, "%s", "out of memory");
    return wait_suspend_whole(c, k);
}

/* The access handler's call when the waiter resumed k: the next batch, or the answer. */
static enum MHD_Result embed_resume(struct MHD_Connection *c, conn *k)
{
    embed_work *w = k->run.work;
    if (k->wait.gone) {
        sasp_job_cancel(k->run.job);
        k->res.status = 499;
        return MHD_NO;
    }
    if (!k->wait.end) return wait_resuspend_whole(k);
    if (w->failed) return reply_errorf(c, k, 500, "server_error", NULL, "%s", "the engine failed to embed the input");
    if (w->from + w->n < w->r.n_inputs) return run_batch(c, k);
    char *body = api_embed_answer(&w->r, w->name, w->vectors, w->m->model->cfg.d_model, sasp_now_ns() - w->t0);
    return reply_json(c, k, 200, body);
}

static void free_work(void *w) { embed_work_free(w); }

static enum MHD_Result handle_embeddings(struct MHD_Connection *c, conn *k, api_embed_kind kind)
{
    char name[256];
    int ollama = kind != API_EMBED_OPENAI, empty;
    enum MHD_Result sent = MHD_NO;
    served_model *m = served_model_pick(c, k, ollama, name, sizeof name, &sent);
    if (!m) return sent;
    api_error e = {0};
    int64_t keep_alive = SERVED_KEEP_DEFAULT; /* Ollama's: how long the model stays loaded after this */
    if (ollama && api_ollama_keep_alive(conn_body(k), k->req.body.len, 0, &keep_alive, &empty, &e) < 0)
        return reply_error(c, k, &e, NULL, NULL);
    if (!(m = served_model_ready(c, k, m, keep_alive, &sent))) return sent;
    embed_work *w = calloc(1, sizeof *w);
    if (!w) return reply_errorf(c, k, 500, "server_error", NULL, "%s", "out of memory");
    if (api_embed_parse(kind, conn_body(k), k->req.body.len, &m->lim, m->model->cfg.d_model, &w->r, &e)) {
        embed_work_free(w);
        return reply_error(c, k, &e, NULL, NULL);
    }
    w->m = m;
    snprintf(w->name, sizeof w->name, "%s", name);
    w->t0 = sasp_now_ns();
    w->vectors = calloc((size_t)(w->r.n_inputs > 0 ? w->r.n_inputs : 1), sizeof *w->vectors);
    k->run.work = w;
    k->run.free_work = free_work;
    if (!w->vectors) return reply_errorf(c, k, 500, "server_error", NULL, "%s", "out of memory");
    for (int i = 0; i < w->r.n_inputs; i++) k->run.prompt_tokens += w->r.n_ids[i];
    if (w->r.n_inputs == 0) { /* /api/embeddings with an empty prompt */
        char *body = api_embed_answer(&w->r, w->name, w->vectors, m->model->cfg.d_model, 0);
        return reply_json(c, k, 200, body);
    }
    if (route_take_inflight(c, k, &sent) != 0) return sent;
    k->mc = c;
    k->wait.take = embed_take;
    k->wait.resume = embed_resume;
    return run_batch(c, k);
}

enum MHD_Result handle_openai_embeddings(struct MHD_Connection *c, conn *k)
{
    return handle_embeddings(c, k, API_EMBED_OPENAI);
}

enum MHD_Result handle_ollama_embed(struct MHD_Connection *c, conn *k)
{
    return handle_embeddings(c, k, API_EMBED_OLLAMA);
}

enum MHD_Result handle_ollama_embeddings(struct MHD_Connection *c, conn *k)
{
    return handle_embeddings(c, k, API_EMBED_OLLAMA_LEGACY);
}
