/* generate.c: the generation endpoints (OpenAI's completions and chat completions, Ollama's generate
 * and chat, llama.cpp's /completion and /infill): the model the request names, its body parsed in its
 * dialect (api/api.h), a job handed to that model's scheduler (the HTTP thread never runs the model),
 * and the answer, streamed as the events come (server-sent events, or NDJSON for Ollama) or written
 * whole once the job has ended; while the job has nothing new the connection is suspended
 * (http/wait.h). */
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "http/reply.h"
#include "http/route.h"
#include "http/wait.h"
#include "server/handlers.h"
#include "server/models.h"

/* The next event of a streamed job as text in k->stream.pend: 1, 0 when none is there yet, -1 at the end
 * (k->stream.pend then holds the stream's last bytes). Never waits. */
static int next_event(conn *k)
{
    sasp_event ev;
    int r;
    if (k->wait.have_ev) { /* taken by the waiter while the connection was suspended */
        ev = k->wait.ev;
        memset(&k->wait.ev, 0, sizeof k->wait.ev);
        k->wait.have_ev = 0;
        r = 1;
    } else {
        r = sasp_job_next(k->run.job, &ev, 0);
    }
    if (r == 1) {
        if (!ev.prompt_info) k->run.sent_tokens += ev.n_ids;
        k->stream.pend = api_out_event(k->run.out, &ev, &k->stream.len);
        sasp_event_clear(&ev);
    } else if (r < 0) {
        k->stream.pend = api_out_finish(k->run.out, &k->stream.len);
        k->stream.ended = 1;
        conn_answered(k); /* before the client can have the last bytes */
    }
    return r;
}

/* libmicrohttpd's content reader of a stream: the events there are, else the connection is suspended
 * until the next one (0 bytes now). It never blocks an HTTP thread. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    conn *k = cls;
    for (;;) {
        if (k->stream.off < k->stream.len) {
            size_t n = k->stream.len - k->stream.off < max ? k->stream.len - k->stream.off : max;
            memcpy(buf, k->stream.pend + k->stream.off, n);
            k->stream.off += n;
            return (ssize_t)n;
        }
        free(k->stream.pend);
        k->stream.pend = NULL;
        k->stream.len = k->stream.off = 0;
        if (k->stream.ended) return MHD_CONTENT_READER_END_OF_STREAM;
        int gone = k->wait.gone;
        if (!gone && sasp_now_ns() - k->stream.checked >= 50000000) { /* also while events keep coming */
            k->stream.checked = sasp_now_ns();
            gone = conn_client_gone(k->mc);
        }
        if (gone) {
            sasp_job_cancel(k->run.job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (next_event(k) != 0) continue;
        if (wait_suspend(k) != 0) { /* the server is stopping */
            sasp_job_cancel(k->run.job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        return 0;
    }
}

static void stream_free(void *cls)
{
    conn *k = cls;
    if (!k->stream.ended) sasp_job_cancel(k->run.job); /* the client went away mid-stream */
    wait_count_answer(-1);
    conn_release(k);
}

static uint64_t random_seed(void)
{
    uint64_t s;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s)
        s = (uint64_t)sasp_now_ns() * 0x9e3779b97f4a7c15ULL;
    return s;
}

/* A job of r's sequences (sequence i uses seed_base + i), or NULL when out of memory. The job takes
 * r's schema. */
static sasp_job *job_of(api_request *r)
{
    sasp_job *job = sasp_job_new(r->n_seqs);
    for (int i = 0; job && i < r->n_seqs; i++) {
        sasp_gen_params g = r->gen;
        g.sampling.seed = r->seed_base + (uint64_t)i;
        g.heal_text = r->heal_text ? r->heal_text[i] : NULL; /* fill in the middle: the cursor's token */
        g.heal_len = r->heal_text ? r->heal_len[i] : 0;
        g.n_dropped = i == 0 ? r->n_dropped : 0; /* the request's cut, counted once */
        if (sasp_job_set(job, i, r->prompt[i], r->n_prompt[i], &g) != 0) {
            sasp_job_release(job);
            job = NULL;
        }
    }
    if (job && r->schema) {
        sasp_job_adopt_schema(job, r->schema);
        r->schema = NULL;
    }
    return job;
}

/* The waiter's part of a non-streamed answer: each event of its job written into k->run.out. */
static void take_whole_event(conn *k, sasp_event *ev)
{
    size_t n;
    if (!ev->prompt_info) k->run.sent_tokens += ev->n_ids;
    free(api_out_event(k->run.out, ev, &n));
    sasp_event_clear(ev);
}

/* The access handler's call after the waiter resumed a non-streamed answer. */
static enum MHD_Result finish_whole(struct MHD_Connection *c, conn *k)
{
    if (k->wait.gone) {
        sasp_job_cancel(k->run.job);
        k->res.status = 499; /* nginx's "client closed request", for the log */
        return MHD_NO;
    }
    if (!k->wait.end) return wait_resuspend_whole(k);
    if (api_out_failed(k->run.out)) return reply_errorf(c, k, 500, "server_error", NULL, "%s", "the engine failed");
    size_t n;
    char *body = api_out_finish(k->run.out, &n);
    return reply_buf(c, k, 200, "application/json", body, n);
}

/* Not streamed: the connection is suspended while the waiter reads every event into k->run.out (noticing a
 * client that leaves); finish_whole answers in one body when it is resumed. */
static enum MHD_Result answer_whole(struct MHD_Connection *c, conn *k)
{
    size_t n;
    free(api_out_start(k->run.out, &n)); /* echo: the prompt opens each choice's text */
    k->wait.take = take_whole_event;
    k->wait.resume = finish_whole;
    return wait_suspend_whole(c, k);
}

/* Streamed: stream_reader sends the events as they come (SSE, or NDJSON for Ollama). */
static enum MHD_Result answer_stream(struct MHD_Connection *c, conn *k, api_kind kind)
{
    k->mc = c;
    k->stream.pend = api_out_start(k->run.out, &k->stream.len);
    atomic_fetch_add(&k->refs, 1);
    wait_count_answer(1);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, k, stream_free);
    if (!resp) {
        wait_count_answer(-1);
        atomic_fetch_sub(&k->refs, 1);
        sasp_job_cancel(k->run.job);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", api_kind_is_ollama(kind) ? "application/x-ndjson" : "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    return reply_queue_stream(c, k, 200, resp);
}

/* Ollama's keep_alive 0 with nothing to generate: the model is unloaded (after the requests it runs,
 * if any) without being loaded first, and the answer says "unload". */
static enum MHD_Result unload_at_once(struct MHD_Connection *c, conn *k, served_model *m, api_kind kind,
                                      const char *name)
{
    served_model_unload(m);
    api_request r = {.kind = kind, .unload = 1};
    return reply_json(c, k, 200, api_ollama_empty_answer(&r, name));
}

/* The model of a generation request, loaded (NULL: *sent answered, or the request waits for its load
 * and runs again); Ollama's keep_alive honoured. */
static served_model *model_of(struct MHD_Connection *c, conn *k, api_kind kind, char *name, size_t size,
                              enum MHD_Result *sent)
{
    int ollama = api_kind_is_ollama(kind), empty = 0;
    served_model *m = served_model_pick(c, k, ollama || kind == API_MESSAGES, name, size, sent);
    if (!m) return NULL;
    int64_t keep_alive = SERVED_KEEP_DEFAULT;
    api_error e = {0};
    int given = ollama ? api_ollama_keep_alive(conn_body(k), k->req.body.len, kind == API_OLLAMA_CHAT, &keep_alive,
                                               &empty, &e)
                       : 0;
    if (given < 0) {
        *sent = reply_error(c, k, &e, NULL, NULL);
        return NULL;
    }
    if (given && keep_alive == 0 && empty) {
        *sent = unload_at_once(c, k, m, kind, name);
        return NULL;
    }
    return served_model_ready(c, k, m, keep_alive, sent);
}

/* The generation endpoints: pick the model, parse, hand the job to its scheduler, answer as asked. */
static enum MHD_Result handle_generate(struct MHD_Connection *c, conn *k, api_kind kind)
{
    char name[256];
    enum MHD_Result sent = MHD_NO;
    served_model *m = model_of(c, k, kind, name, sizeof name, &sent);
    if (!m) return sent;
    api_request r;
    api_error e = {0};
    if (api_parse(kind, conn_body(k), k->req.body.len, &m->lim, random_seed(), &r, &e)) {
        api_request_free(&r);
        return reply_error(c, k, &e, NULL, NULL);
    }
    snprintf(k->res.ignored_options, sizeof k->res.ignored_options, "%s", r.ignored);
    k->res.prompt_tokens_dropped = r.n_dropped;
    if (r.empty) { /* Ollama: no prompt (or no messages) only loads the model */
        char *body = api_ollama_empty_answer(&r, name);
        api_request_free(&r);
        return reply_json(c, k, 200, body);
    }
    k->run.out = api_out_new(&r, name, m->tok, (long)time(NULL));
    k->run.job = k->run.out ? job_of(&r) : NULL;
    int stream = r.stream;
    int per_prompt = r.n_choices > 0 ? r.n_choices : 1; /* a prompt's n choices read it once */
    for (int i = 0; i < r.n_seqs; i += per_prompt) k->run.prompt_tokens += r.n_prompt[i];
    api_request_free(&r);
    if (!k->run.job) return reply_errorf(c, k, 500, "server_error", NULL, "%s", "out of memory");
    if (route_take_inflight(c, k, &sent) != 0) return sent;
    sasp_job_set_client(k->run.job, guard_client_id(c));
    int rc = sasp_sched_submit(m->sched, k->run.job);
    if (rc != 0) return served_reply_refused(c, k, rc);
    return stream ? answer_stream(c, k, kind) : answer_whole(c, k);
}

enum MHD_Result handle_openai_completions(struct MHD_Connection *c, conn *k)
{
    return handle_generate(c, k, API_COMPLETIONS);
}

enum MHD_Result handle_openai_chat(struct MHD_Connection *c, conn *k)
{
    return handle_generate(c, k, API_CHAT);
}

enum MHD_Result handle_ollama_generate(struct MHD_Connection *c, conn *k)
{
    return handle_generate(c, k, API_GENERATE);
}

enum MHD_Result handle_ollama_chat(struct MHD_Connection *c, conn *k)
{
    return handle_generate(c, k, API_OLLAMA_CHAT);
}

enum MHD_Result handle_llama_completion(struct MHD_Connection *c, conn *k)
{
    return handle_generate(c, k, API_LLAMA_COMPLETION);
}

enum MHD_Result handle_llama_infill(struct MHD_Connection *c, conn *k)
{
    return handle_generate(c, k, API_INFILL);
}

enum MHD_Result handle_anthropic_messages(struct MHD_Connection *c, conn *k)
{
    return handle_generate(c, k, API_MESSAGES);
}

enum MHD_Result handle_openai_responses(struct MHD_Connection *c, conn *k)
{
    return handle_generate(c, k, API_RESPONSES);
}
