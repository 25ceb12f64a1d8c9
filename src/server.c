/* server.c: sasp-server, the HTTP daemon. OpenAI-compatible completions and chat completions,
 * Ollama's /api/generate, tokenizer endpoints, Prometheus metrics and static files, on libmicrohttpd
 * (one thread per connection). HTTP threads parse and write JSON only; the model runs on the
 * scheduler's engine thread (scheduler.c), the wire format lives in api.c. docs/api.md is the manual. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "checkpoint.h"
#include "kernels.h"
#include "model.h"
#include "scheduler.h"
#include "tokenizer.h"
#include "util.h"

#define SASP_VERSION "0.1.0"

/* --- options and global state --- */

static struct {
    const char *model_dir, *host, *api_key, *www;
    int port, threads, parallel, ctx, max_queue, chunk, step_delay;
    size_t max_body;
    int timeout; /* seconds a connection may make no progress (a client that stops reading) */
} opt = {"models/sasp-small", "127.0.0.1", NULL, "www", 8080, 0, 4, 0, 64, 128, 0, 1 << 20, 300};

static sasp_model *g_model;
static sasp_tokenizer *g_tok;
static sasp_sched *g_sched;
static api_limits g_lim;
static char g_model_id[256];
static char g_www_real[PATH_MAX];
static int g_have_www;
static long g_started;
static atomic_int g_open_streams;

/* --- request counters for /metrics --- */

static const char *const endpoints[] = {"/v1/completions", "/v1/chat/completions", "/api/generate", "/v1/models",
                                        "/health",         "/metrics",             "/props",        "/tokenize",
                                        "/detokenize",     "/api/tags",            "static",        "other"};
#define N_ENDPOINTS (int)(sizeof endpoints / sizeof *endpoints)
#define MAX_STATUSES 12
static struct {
    pthread_mutex_t mu;
    int status[N_ENDPOINTS][MAX_STATUSES];
    uint64_t count[N_ENDPOINTS][MAX_STATUSES];
} g_req = {PTHREAD_MUTEX_INITIALIZER, {{0}}, {{0}}};

static void count_request(int ep, int status)
{
    pthread_mutex_lock(&g_req.mu);
    for (int i = 0; i < MAX_STATUSES; i++) {
        if (g_req.status[ep][i] == status || g_req.status[ep][i] == 0) {
            g_req.status[ep][i] = status;
            g_req.count[ep][i]++;
            break;
        }
    }
    pthread_mutex_unlock(&g_req.mu);
}

/* The current UTC time as "2026-11-23T01:49:12Z". */
static void utc_stamp(char *buf, size_t size)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* --- routes --- */

typedef enum {
    R_COMPLETIONS, R_CHAT, R_GENERATE, R_MODELS, R_HEALTH, R_METRICS, R_PROPS, R_TOKENIZE, R_DETOKENIZE,
    R_TAGS, R_STATIC, R_NONE
} route_id;
_Static_assert(N_ENDPOINTS == R_NONE + 1, "endpoints[] names every route_id, in order");

static const struct route {
    const char *path;
    route_id id;
    const char *method; /* the one method it takes ("GET" routes also take HEAD) */
    int open;           /* served without the API key */
} routes[] = {
    {"/v1/completions", R_COMPLETIONS, "POST", 0},
    {"/completions", R_COMPLETIONS, "POST", 0},
    {"/v1/chat/completions", R_CHAT, "POST", 0},
    {"/chat/completions", R_CHAT, "POST", 0},
    {"/api/generate", R_GENERATE, "POST", 0},
    {"/v1/models", R_MODELS, "GET", 1},
    {"/models", R_MODELS, "GET", 1},
    {"/api/tags", R_TAGS, "GET", 1},
    {"/health", R_HEALTH, "GET", 1},
    {"/metrics", R_METRICS, "GET", 0},
    {"/props", R_PROPS, "GET", 0},
    {"/tokenize", R_TOKENIZE, "POST", 0},
    {"/detokenize", R_DETOKENIZE, "POST", 0},
};

/* --- one request --- */

typedef struct conn {
    atomic_int refs;        /* the completion callback, and the stream reader while it lives */
    char method[16];
    char *path;
    route_id route;
    int64_t t0;
    int status;
    sasp_buf body;          /* the request body, as far as it fits --max-body */
    int too_big;
    /* streaming */
    struct MHD_Connection *mc;
    sasp_job *job;
    api_out *out;
    char *pend;
    size_t plen, poff;
    int ended;
    int64_t checked; /* when client_gone last looked */
} conn;

static const char *body_text(const conn *k) { return k->body.data ? k->body.data : ""; }

static void conn_release(conn *k)
{
    if (atomic_fetch_sub(&k->refs, 1) != 1) return;
    if (k->job) sasp_job_release(k->job);
    api_out_free(k->out);
    free(k->pend);
    sasp_buf_free(&k->body);
    free(k->path);
    free(k);
}

static void add_common_headers(struct MHD_Response *r)
{
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    MHD_add_response_header(r, "Server", "sasp-server/" SASP_VERSION);
}

/* Queue r as the answer with status (the headers every answer has added) and let it go. */
static enum MHD_Result queue(struct MHD_Connection *c, conn *k, int status, struct MHD_Response *r)
{
    add_common_headers(r);
    k->status = status;
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* A response of buf (len bytes, malloc'd: taken, freed on failure too) with its Content-Type. */
static struct MHD_Response *buffer_response(char *buf, size_t len, const char *type)
{
    struct MHD_Response *r = buf ? MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!r) {
        free(buf);
        return NULL;
    }
    if (type) MHD_add_response_header(r, "Content-Type", type);
    return r;
}

static enum MHD_Result send_buf(struct MHD_Connection *c, conn *k, int status, const char *type, char *buf,
                                size_t len)
{
    struct MHD_Response *r = buffer_response(buf, len, type);
    return r ? queue(c, k, status, r) : MHD_NO;
}

/* JSON text (malloc'd, taken) as one line: a newline is added. */
static struct MHD_Response *json_response(char *json)
{
    if (!json) return NULL;
    size_t n = strlen(json);
    char *b = realloc(json, n + 2);
    if (b) {
        b[n++] = '\n';
        b[n] = 0;
        json = b;
    }
    return buffer_response(json, n, "application/json");
}

static enum MHD_Result send_json(struct MHD_Connection *c, conn *k, int status, char *json)
{
    struct MHD_Response *r = json_response(json);
    return r ? queue(c, k, status, r) : MHD_NO;
}

static enum MHD_Result send_jval(struct MHD_Connection *c, conn *k, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(7));
    json_decref(j);
    return send_json(c, k, status, s);
}

/* e as OpenAI shapes errors, with one extra header when hname is given. */
static enum MHD_Result send_error(struct MHD_Connection *c, conn *k, const api_error *e, const char *hname,
                                  const char *hval)
{
    struct MHD_Response *r = json_response(api_error_body(e));
    if (!r) return MHD_NO;
    if (hname) MHD_add_response_header(r, hname, hval);
    return queue(c, k, e->status, r);
}

static enum MHD_Result fail(struct MHD_Connection *c, conn *k, int status, const char *type, const char *code,
                            const char *fmt, const char *arg)
{
    api_error e;
    api_error_set(&e, status, type, code, NULL, fmt, arg);
    return send_error(c, k, &e, NULL, NULL);
}

/* Whether the client has closed its end (checked while it waits for tokens). */
static int client_gone(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    int fd = ci->connect_fd;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return 1;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* --- generation --- */

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    conn *k = cls;
    for (;;) {
        if (k->poff < k->plen) {
            size_t n = k->plen - k->poff < max ? k->plen - k->poff : max;
            memcpy(buf, k->pend + k->poff, n);
            k->poff += n;
            return (ssize_t)n;
        }
        free(k->pend);
        k->pend = NULL;
        k->plen = k->poff = 0;
        if (k->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        sasp_event ev;
        int r = sasp_job_next(k->job, &ev, 50);
        if (r == 1) {
            k->pend = api_out_event(k->out, &ev, &k->plen);
            sasp_event_clear(&ev);
        } else if (r < 0) {
            k->pend = api_out_finish(k->out, &k->plen);
            k->ended = 1;
        }
        if (r != 0 && sasp_now_ns() - k->checked < 50000000) continue;
        k->checked = sasp_now_ns();
        if (!k->ended && client_gone(k->mc)) {
            sasp_job_cancel(k->job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void stream_free(void *cls)
{
    conn *k = cls;
    if (!k->ended) sasp_job_cancel(k->job); /* the client went away mid-stream */
    atomic_fetch_sub(&g_open_streams, 1);
    conn_release(k);
}

static uint64_t random_seed(void)
{
    uint64_t s;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s)
        s = (uint64_t)sasp_now_ns() * 0x9e3779b97f4a7c15ULL;
    return s;
}

/* A job of r's sequences (sequence i uses seed_base + i), or NULL when out of memory. */
static sasp_job *job_of(const api_request *r)
{
    sasp_job *job = sasp_job_new(r->n_seqs);
    for (int i = 0; job && i < r->n_seqs; i++) {
        sasp_gen_params g = r->gen;
        g.sampling.seed = r->seed_base + (uint64_t)i;
        if (sasp_job_set(job, i, r->prompt[i], r->n_prompt[i], &g) != 0) {
            sasp_job_release(job);
            job = NULL;
        }
    }
    return job;
}

/* The answer to a job sasp_sched_submit refused (rc < 0). */
static enum MHD_Result send_refusal(struct MHD_Connection *c, conn *k, int rc)
{
    api_error e;
    if (rc == -1) {
        api_error_set(&e, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
                      "the server is busy: all %d slots and %d queue places are taken; retry later", opt.parallel,
                      opt.max_queue);
        return send_error(c, k, &e, "Retry-After", "1");
    }
    if (rc == -2) return fail(c, k, 503, "unavailable_error", NULL, "%s", "the server is shutting down");
    api_error_set(&e, 400, "invalid_request_error", NULL, "n",
                  "the request asks for more sequences (prompts x n) than this server's %d slots and %d "
                  "queue places together", opt.parallel, opt.max_queue);
    return send_error(c, k, &e, NULL, NULL);
}

/* Not streamed: wait for every event (noticing a client that leaves), then answer in one body. */
static enum MHD_Result answer_whole(struct MHD_Connection *c, conn *k)
{
    size_t n;
    free(api_out_start(k->out, &n)); /* echo: the prompt opens each choice's text */
    int64_t checked = sasp_now_ns();
    for (;;) {
        sasp_event ev;
        int got = sasp_job_next(k->job, &ev, 50);
        if (got == 1) {
            free(api_out_event(k->out, &ev, &n));
            sasp_event_clear(&ev);
        } else if (got < 0) {
            break;
        }
        if (got == 1 && sasp_now_ns() - checked < 50000000) continue;
        checked = sasp_now_ns();
        if (client_gone(c)) {
            sasp_job_cancel(k->job);
            k->status = 499; /* nginx's "client closed request", for the log */
            return MHD_NO;
        }
    }
    if (api_out_failed(k->out)) return fail(c, k, 500, "server_error", NULL, "%s", "the engine failed");
    char *body = api_out_finish(k->out, &n);
    return send_buf(c, k, 200, "application/json", body, n);
}

/* Streamed: stream_reader sends the events as they come (SSE, or NDJSON for Ollama). */
static enum MHD_Result answer_stream(struct MHD_Connection *c, conn *k, api_kind kind)
{
    k->mc = c;
    k->pend = api_out_start(k->out, &k->plen);
    atomic_fetch_add(&k->refs, 1);
    atomic_fetch_add(&g_open_streams, 1);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, k, stream_free);
    if (!resp) {
        atomic_fetch_sub(&g_open_streams, 1);
        atomic_fetch_sub(&k->refs, 1);
        sasp_job_cancel(k->job);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", kind == API_GENERATE ? "application/x-ndjson" : "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    return queue(c, k, 200, resp);
}

/* The three generation endpoints: parse, hand the job to the scheduler, answer as asked. */
static enum MHD_Result handle_generate(struct MHD_Connection *c, conn *k, api_kind kind)
{
    api_request r;
    api_error e = {0};
    if (api_parse(kind, body_text(k), k->body.len, &g_lim, random_seed(), &r, &e)) {
        api_request_free(&r);
        return send_error(c, k, &e, NULL, NULL);
    }
    if (kind == API_GENERATE && r.empty) { /* Ollama: an empty prompt only loads the model */
        api_request_free(&r);
        char stamp[32];
        utc_stamp(stamp, sizeof stamp);
        return send_jval(c, k, 200, json_pack("{s:s,s:s,s:s,s:b,s:s}", "model", g_model_id, "created_at", stamp,
                                              "response", "", "done", 1, "done_reason", "load"));
    }
    k->out = api_out_new(&r, g_model_id, g_tok, (long)time(NULL));
    k->job = k->out ? job_of(&r) : NULL;
    int stream = r.stream;
    api_request_free(&r);
    if (!k->job) return fail(c, k, 500, "server_error", NULL, "%s", "out of memory");
    int rc = sasp_sched_submit(g_sched, k->job);
    if (rc != 0) return send_refusal(c, k, rc);
    return stream ? answer_stream(c, k, kind) : answer_whole(c, k);
}

/* --- information endpoints --- */

static json_t *config_json(void)
{
    const sasp_config *cfg = &g_model->cfg;
    return json_pack("{s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:s}", "architecture", sasp_arch_names[cfg->arch], "vocab_size",
                     cfg->vocab_size, "d_model", cfg->d_model, "n_layers", cfg->n_layers, "n_heads", cfg->n_heads,
                     "d_ff", cfg->d_ff, "max_seq_len", cfg->max_seq_len, "position", sasp_pos_names[cfg->position],
                     "norm", sasp_norm_names[cfg->norm]);
}

static enum MHD_Result handle_models(struct MHD_Connection *c, conn *k)
{
    json_t *meta = config_json();
    json_object_set_new(meta, "n_params", json_integer((json_int_t)g_model->n_params));
    json_object_set_new(meta, "n_ctx", json_integer(g_lim.n_ctx));
    json_t *m = json_pack("{s:s,s:s,s:I,s:s,s:o}", "id", g_model_id, "object", "model", "created", (json_int_t)g_started,
                          "owned_by", "sasp", "meta", meta);
    return send_jval(c, k, 200, json_pack("{s:s,s:[o]}", "object", "list", "data", m));
}

static enum MHD_Result handle_tags(struct MHD_Connection *c, conn *k)
{
    json_t *m = json_pack("{s:s,s:s,s:I,s:{s:s,s:s}}", "name", g_model_id, "model", g_model_id, "size",
                          (json_int_t)(g_model->n_params * 4), "details", "format", "safetensors", "family", "sasp");
    return send_jval(c, k, 200, json_pack("{s:[o]}", "models", m));
}

static enum MHD_Result handle_props(struct MHD_Connection *c, conn *k)
{
    sasp_slot_info info[256];
    int n = sasp_sched_slots(g_sched, info, 256);
    json_t *slots = json_array();
    for (int i = 0; i < n && i < 256; i++)
        json_array_append_new(slots, json_pack("{s:i,s:s,s:i,s:i,s:i}", "id", info[i].id, "state", info[i].state,
                                               "n_prompt", info[i].n_prompt, "n_past", info[i].n_past,
                                               "n_generated", info[i].n_generated));
    sasp_sampling d;
    sasp_sampling_defaults(&d);
    json_t *j = json_pack("{s:s,s:s,s:I,s:i,s:s,s:i,s:i,s:i,s:o,s:o,s:s,s:s}", "model", g_model_id, "model_path",
                          opt.model_dir, "n_params", (json_int_t)g_model->n_params, "n_ctx", g_lim.n_ctx, "simd",
                          sasp_kernels_active()->name, "threads", sasp_pool_size(g_model->pool), "total_slots", n,
                          "max_queue", opt.max_queue, "config", config_json(), "slots", slots, "chat_template",
                          "System: {system}\\nUser: {user}\\nAssistant: {assistant}\\n...Assistant:", "version",
                          SASP_VERSION);
    json_object_set_new(j, "default_generation_settings",
                        json_pack("{s:f,s:i,s:f,s:f,s:f,s:i,s:i}", "temperature", (double)d.temperature, "top_k", d.top_k,
                                  "top_p", (double)d.top_p, "min_p", (double)d.min_p, "repeat_penalty",
                                  (double)d.repeat_penalty, "repeat_last_n", d.repeat_last_n, "max_tokens", 16));
    return send_jval(c, k, 200, j);
}

static void hist_text(sasp_buf *b, const char *name, const char *help, const sasp_hist *h)
{
    sasp_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < SASP_HIST_BUCKETS; i++) {
        cum += h->count[i];
        sasp_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->le[i], (unsigned long long)cum);
    }
    sasp_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name, (unsigned long long)h->n,
                    name, h->sum, name, (unsigned long long)h->n);
}

static enum MHD_Result handle_metrics(struct MHD_Connection *c, conn *k)
{
    sasp_sched_stats st;
    sasp_sched_get_stats(g_sched, &st);
    sasp_buf b = {0};
    sasp_buf_puts(&b, "# HELP sasp_requests_total HTTP requests answered, by endpoint and status.\n"
                      "# TYPE sasp_requests_total counter\n");
    pthread_mutex_lock(&g_req.mu);
    for (int e = 0; e < N_ENDPOINTS; e++)
        for (int i = 0; i < MAX_STATUSES && g_req.status[e][i]; i++)
            sasp_buf_printf(&b, "sasp_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", endpoints[e],
                            g_req.status[e][i], (unsigned long long)g_req.count[e][i]);
    pthread_mutex_unlock(&g_req.mu);
    sasp_buf_printf(&b,
            "# HELP sasp_prompt_tokens_total Prompt tokens processed.\n# TYPE sasp_prompt_tokens_total counter\n"
            "sasp_prompt_tokens_total %llu\n"
            "# HELP sasp_generated_tokens_total Tokens generated.\n# TYPE sasp_generated_tokens_total counter\n"
            "sasp_generated_tokens_total %llu\n"
            "# HELP sasp_requests_cancelled_total Sequences cancelled by their client (disconnect) before the end.\n"
            "# TYPE sasp_requests_cancelled_total counter\nsasp_requests_cancelled_total %llu\n"
            "# HELP sasp_sequences_finished_total Sequences that left the scheduler.\n"
            "# TYPE sasp_sequences_finished_total counter\nsasp_sequences_finished_total %llu\n"
            "# HELP sasp_slots_active Slots holding a sequence.\n# TYPE sasp_slots_active gauge\nsasp_slots_active %d\n"
            "# HELP sasp_slots_total Slots (--parallel).\n# TYPE sasp_slots_total gauge\nsasp_slots_total %d\n"
            "# HELP sasp_queue_depth Sequences waiting for a slot.\n# TYPE sasp_queue_depth gauge\nsasp_queue_depth %d\n"
            "# HELP sasp_engine_steps_total Batched forward steps.\n# TYPE sasp_engine_steps_total counter\n"
            "sasp_engine_steps_total %llu\n"
            "# HELP sasp_engine_forward_seconds_total Time inside the batched forward pass.\n"
            "# TYPE sasp_engine_forward_seconds_total counter\nsasp_engine_forward_seconds_total %.6f\n",
            (unsigned long long)st.prompt_tokens, (unsigned long long)st.generated_tokens,
            (unsigned long long)st.cancelled, (unsigned long long)st.sequences_done, st.active, st.n_slots, st.queued,
            (unsigned long long)st.steps, st.forward_seconds);
    hist_text(&b, "sasp_time_to_first_token_seconds", "From request to its first sampled token.", &st.ttft);
    hist_text(&b, "sasp_token_latency_seconds", "Between consecutive tokens of a sequence.", &st.token_latency);
    size_t n;
    char *text = sasp_buf_take(&b, &n);
    if (!text) return MHD_NO;
    return send_buf(c, k, 200, "text/plain; version=0.0.4", text, n);
}

static enum MHD_Result handle_tok(struct MHD_Connection *c, conn *k, int de)
{
    api_error e = {0};
    char *s = de ? api_detokenize(body_text(k), k->body.len, &g_lim, &e)
                 : api_tokenize(body_text(k), k->body.len, &g_lim, &e);
    if (!s) return send_error(c, k, &e, NULL, NULL);
    return send_json(c, k, 200, s);
}

/* --- static files --- */

static const char *content_type(const char *path)
{
    static const char *const map[][2] = {
        {".html", "text/html; charset=utf-8"}, {".htm", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"}, {".json", "application/json"},
        {".svg", "image/svg+xml"},             {".png", "image/png"},
        {".jpg", "image/jpeg"},                {".jpeg", "image/jpeg"},
        {".gif", "image/gif"},                 {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"}, {".md", "text/markdown; charset=utf-8"},
        {".wasm", "application/wasm"},         {".map", "application/json"},
        {".woff2", "font/woff2"},              {".webp", "image/webp"},
    };
    const char *dot = strrchr(path, '.');
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof map / sizeof *map; i++)
            if (!strcasecmp(dot, map[i][0])) return map[i][1];
    return "application/octet-stream";
}

static enum MHD_Result handle_static(struct MHD_Connection *c, conn *k, const char *url)
{
    /* refuse any ".." segment, backslashes and NULs before touching the file system */
    int bad_path = url[0] != '/' || strchr(url, '\\') != NULL;
    for (const char *p = url; *p && !bad_path; p++)
        if (p[0] == '.' && p[1] == '.' && (p == url || p[-1] == '/') && (p[2] == '/' || p[2] == 0)) bad_path = 1;
    if (bad_path) return fail(c, k, 404, "not_found_error", NULL, "%s", "no such file");
    if (!g_have_www) return fail(c, k, 404, "not_found_error", NULL, "no static files: %s does not exist", opt.www);
    char path[PATH_MAX], real[PATH_MAX];
    int w = snprintf(path, sizeof path, "%s%s", g_www_real, url);
    if (w < 0 || (size_t)w >= sizeof path - 16) return fail(c, k, 404, "not_found_error", NULL, "%s", "no such file");
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) strcat(path, path[w - 1] == '/' ? "index.html" : "/index.html");
    if (!realpath(path, real)) return fail(c, k, 404, "not_found_error", NULL, "no such file: %s", url);
    size_t rl = strlen(g_www_real);
    if (strncmp(real, g_www_real, rl) != 0 || real[rl] != '/')
        return fail(c, k, 404, "not_found_error", NULL, "%s", "no such file");
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        if (fd >= 0) close(fd);
        return fail(c, k, 404, "not_found_error", NULL, "no such file: %s", url);
    }
    struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)sb.st_size, fd);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", content_type(real));
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    return queue(c, k, 200, r);
}

/* --- dispatch --- */

static int authorized(struct MHD_Connection *c)
{
    if (!opt.api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    while (*h == ' ') h++;
    size_t a = strlen(h), b = strlen(opt.api_key);
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < a; i++) diff |= (unsigned char)h[i] ^ (unsigned char)opt.api_key[i % (b ? b : 1)];
    return diff == 0;
}

/* OPTIONS on any path: the CORS preflight, which allows every origin, our methods and the headers
 * asked for. */
static enum MHD_Result answer_preflight(struct MHD_Connection *c, conn *k)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    const char *req = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
    MHD_add_response_header(r, "Access-Control-Allow-Headers", req ? req : "Authorization, Content-Type");
    MHD_add_response_header(r, "Access-Control-Max-Age", "86400");
    return queue(c, k, 204, r);
}

static enum MHD_Result dispatch(struct MHD_Connection *c, conn *k, const char *url, const char *method)
{
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (!strcmp(method, "OPTIONS")) return answer_preflight(c, k);
    const struct route *rt = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
        if (!strcmp(url, routes[i].path)) rt = &routes[i];
    if (!rt) {
        k->route = R_STATIC;
        if (is_get && strncmp(url, "/v1/", 4) != 0 && strncmp(url, "/api/", 5) != 0) return handle_static(c, k, url);
        k->route = R_NONE;
        return fail(c, k, 404, "not_found_error", NULL, "unknown endpoint: %s", url);
    }
    k->route = rt->id;
    int method_ok = !strcmp(rt->method, "GET") ? is_get : !strcmp(method, rt->method);
    if (!method_ok) {
        api_error e;
        api_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL, "%s takes %s, not %s", url,
                      rt->method, method);
        return send_error(c, k, &e, "Allow", !strcmp(rt->method, "GET") ? "GET, HEAD, OPTIONS" : "POST, OPTIONS");
    }
    if (!rt->open && !authorized(c))
        return fail(c, k, 401, "authentication_error", "invalid_api_key", "%s",
                    "missing or wrong API key: send the header 'Authorization: Bearer <key>'");
    if (k->too_big) {
        api_error e;
        api_error_set(&e, 413, "invalid_request_error", "request_too_large", NULL,
                      "the request body is larger than the limit of %zu bytes", opt.max_body);
        return send_error(c, k, &e, "Connection", "close");
    }
    switch (rt->id) {
    case R_COMPLETIONS: return handle_generate(c, k, API_COMPLETIONS);
    case R_CHAT: return handle_generate(c, k, API_CHAT);
    case R_GENERATE: return handle_generate(c, k, API_GENERATE);
    case R_MODELS: return handle_models(c, k);
    case R_TAGS: return handle_tags(c, k);
    case R_HEALTH: return send_jval(c, k, 200, json_pack("{s:s}", "status", "ok"));
    case R_METRICS: return handle_metrics(c, k);
    case R_PROPS: return handle_props(c, k);
    case R_TOKENIZE: return handle_tok(c, k, 0);
    case R_DETOKENIZE: return handle_tok(c, k, 1);
    default: return fail(c, k, 404, "not_found_error", NULL, "unknown endpoint: %s", url);
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)cls;
    (void)version;
    conn *k = *con_cls;
    if (!k) {
        k = calloc(1, sizeof *k);
        if (!k) return MHD_NO;
        atomic_init(&k->refs, 1);
        k->t0 = sasp_now_ns();
        k->route = R_NONE;
        snprintf(k->method, sizeof k->method, "%s", method);
        k->path = strdup(url);
        *con_cls = k;
        /* A body over the limit is read and dropped, then answered 413 (answering before reading it
         * would reset the connection under the client's feet); a huge one is refused at once. */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
        if (declared > opt.max_body) k->too_big = 1;
        if (declared > opt.max_body + (64u << 20)) {
            api_error e;
            api_error_set(&e, 413, "invalid_request_error", "request_too_large", NULL,
                          "the request body is larger than the limit of %zu bytes", opt.max_body);
            return send_error(c, k, &e, "Connection", "close");
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!k->too_big && k->body.len + *upload_size > opt.max_body) {
            k->too_big = 1;
            sasp_buf_free(&k->body);
        }
        if (!k->too_big && sasp_buf_append(&k->body, upload, *upload_size) != 0) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    if (k->status) return MHD_YES; /* already answered (413 at the first call) */
    return dispatch(c, k, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    conn *k = *con_cls;
    if (!k) return;
    *con_cls = NULL;
    double ms = (double)(sasp_now_ns() - k->t0) * 1e-6;
    int status = k->status ? k->status : 500;
    count_request((int)k->route, status); /* route ids index `endpoints` (R_NONE is "other") */
    int prompt_tokens = 0, completion_tokens = 0;
    if (k->out) api_out_usage(k->out, &prompt_tokens, &completion_tokens);
    char stamp[32];
    utc_stamp(stamp, sizeof stamp);
    fprintf(stderr, "%s %s %s %d tokens=%d+%d %.1fms%s\n", stamp, k->method, k->path ? k->path : "?", status,
            prompt_tokens, completion_tokens, ms,
            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)");
    conn_release(k);
}

/* libmicrohttpd's own messages (mostly clients that hung up mid-answer), marked as its. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = 0;
    fprintf(stderr, "sasp-server: libmicrohttpd: %s\n", msg);
}

/* --- main --- */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: sasp-server [options]\n"
            "Serve a SAS-P model over HTTP: OpenAI-compatible /v1/completions and /v1/chat/completions,\n"
            "Ollama's /api/generate, /tokenize, /detokenize, /v1/models, /health, /metrics, /props, and\n"
            "the files of --www at /. docs/api.md describes every endpoint.\n\n"
            "Options:\n"
            "  -m, --model DIR      model directory (config.json, model.safetensors, tokenizer.json)\n"
            "                       [default: models/sasp-small]\n"
            "      --host ADDR      address to listen on (an IPv4 or IPv6 address or a host name)\n"
            "                       [default: 127.0.0.1]\n"
            "      --port N         TCP port; 0 picks a free one (the URL printed at start says which)\n"
            "                       [default: 8080]\n"
            "  -t, --threads N      threads of the forward pass [default: one per core]\n"
            "      --parallel N     sequences decoded at once (slots, each with its own KV-cache) [default: 4]\n"
            "      --ctx N          context of each slot in tokens [default: the model's max_seq_len]\n"
            "      --api-key KEY    require 'Authorization: Bearer KEY' (all but /health, /v1/models and files)\n"
            "      --www DIR        directory of static files served at / [default: www]\n"
            "      --max-queue N    requests waiting for a slot beyond which the server answers 429\n"
            "                       [default: 64]\n"
            "      --chunk N        prompt tokens fed per engine step, shared by prefilling slots [default: 128]\n"
            "      --max-body N     largest request body in bytes; larger gets 413 [default: 1048576]\n"
            "      --step-delay MS  sleep MS milliseconds after every engine step, to slow generation down\n"
            "                       on purpose (tests, demos of streaming with a tiny model) [default: 0]\n"
            "      --timeout S      close a connection that makes no progress for S seconds (a client that\n"
            "                       stops reading its stream, or sends nothing) [default: 300]\n"
            "  -h, --help           show this help and exit\n"
            "      --version        print the version and exit\n");
}

static int parse_int(const char *name, const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "sasp-server: %s must be an integer in [%d, %d], got '%s'\n", name, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Read the command line into opt. Returns -1 to go on, or the status to exit with (--help, --version,
 * a bad option). */
static int parse_options(int argc, char **argv)
{
    enum { O_HOST = 256, O_PORT, O_PARALLEL, O_CTX, O_KEY, O_WWW, O_QUEUE, O_CHUNK, O_BODY, O_DELAY, O_TIMEOUT, O_VERSION };
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},    {"host", required_argument, 0, O_HOST},
        {"port", required_argument, 0, O_PORT},  {"threads", required_argument, 0, 't'},
        {"parallel", required_argument, 0, O_PARALLEL}, {"ctx", required_argument, 0, O_CTX},
        {"api-key", required_argument, 0, O_KEY}, {"www", required_argument, 0, O_WWW},
        {"max-queue", required_argument, 0, O_QUEUE}, {"chunk", required_argument, 0, O_CHUNK},
        {"max-body", required_argument, 0, O_BODY}, {"step-delay", required_argument, 0, O_DELAY},
        {"timeout", required_argument, 0, O_TIMEOUT}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, O_VERSION},  {0, 0, 0, 0}};
    int ch, body = 0;
    while ((ch = getopt_long(argc, argv, "m:t:h", lo, NULL)) != -1) {
        int bad = 0;
        switch (ch) {
        case 'm': opt.model_dir = optarg; break;
        case O_HOST: opt.host = optarg; break;
        case O_PORT: bad = parse_int("--port", optarg, 0, 65535, &opt.port); break;
        case 't': bad = parse_int("--threads", optarg, 0, 1024, &opt.threads); break;
        case O_PARALLEL: bad = parse_int("--parallel", optarg, 1, 256, &opt.parallel); break;
        case O_CTX: bad = parse_int("--ctx", optarg, 1, 1 << 20, &opt.ctx); break;
        case O_KEY: opt.api_key = optarg; break;
        case O_WWW: opt.www = optarg; break;
        case O_QUEUE: bad = parse_int("--max-queue", optarg, 0, 1 << 20, &opt.max_queue); break;
        case O_CHUNK: bad = parse_int("--chunk", optarg, 1, 1 << 16, &opt.chunk); break;
        case O_BODY: bad = parse_int("--max-body", optarg, 1, INT_MAX, &body); opt.max_body = (size_t)body; break;
        case O_DELAY: bad = parse_int("--step-delay", optarg, 0, 60000, &opt.step_delay); break;
        case O_TIMEOUT: bad = parse_int("--timeout", optarg, 1, 86400, &opt.timeout); break;
        case 'h': usage(stdout); return 0;
        case O_VERSION: printf("sasp-server %s\n", SASP_VERSION); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "sasp-server: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (opt.api_key && !opt.api_key[0]) opt.api_key = NULL;
    return -1;
}

/* The model's id: the last component of its directory. */
static void set_model_id(const char *dir)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dir);
    size_t l = strlen(tmp);
    while (l > 1 && tmp[l - 1] == '/') tmp[--l] = 0;
    const char *base = strrchr(tmp, '/');
    snprintf(g_model_id, sizeof g_model_id, "%s", base ? base + 1 : tmp);
}

/* Load the model and its tokenizer, start the scheduler, fill the globals the handlers read.
 * 0, or -1 after saying why. */
static int load_engine(void)
{
    char err[512];
    g_model = sasp_model_load(opt.model_dir, opt.threads, err, sizeof err);
    if (!g_model) {
        fprintf(stderr, "sasp-server: cannot load the model: %s\n", err);
        return -1;
    }
    char tokpath[PATH_MAX];
    snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", opt.model_dir);
    g_tok = sasp_tokenizer_load(tokpath, err, sizeof err);
    if (!g_tok) {
        fprintf(stderr, "sasp-server: cannot load the tokenizer: %s\n", err);
        return -1;
    }
    if (sasp_tokenizer_vocab_size(g_tok) > g_model->cfg.vocab_size) {
        fprintf(stderr, "sasp-server: %s has %d tokens but the model only %d\n", tokpath,
                sasp_tokenizer_vocab_size(g_tok), g_model->cfg.vocab_size);
        return -1;
    }
    int n_ctx = opt.ctx > 0 && opt.ctx < g_model->cfg.max_seq_len ? opt.ctx : g_model->cfg.max_seq_len;
    if (opt.ctx > g_model->cfg.max_seq_len)
        fprintf(stderr, "sasp-server: --ctx %d is beyond the model's %d positions; using %d\n", opt.ctx,
                g_model->cfg.max_seq_len, n_ctx);
    g_sched = sasp_sched_new(g_model, g_tok, opt.parallel, n_ctx, opt.max_queue, opt.chunk, err, sizeof err);
    if (!g_sched) {
        fprintf(stderr, "sasp-server: %s\n", err);
        return -1;
    }
    sasp_sched_set_step_delay(g_sched, opt.step_delay);
    g_lim = (api_limits){g_tok, n_ctx, g_model->cfg.vocab_size, g_model->cfg.bos_token_id};
    set_model_id(opt.model_dir);
    g_have_www = realpath(opt.www, g_www_real) != NULL;
    if (!g_have_www) fprintf(stderr, "sasp-server: note: --www %s does not exist; / will answer 404\n", opt.www);
    g_started = (long)time(NULL);
    return 0;
}

/* Listen on --host and --port and print where; NULL after saying why not. */
static struct MHD_Daemon *start_listening(void)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", opt.port);
    int gai = getaddrinfo(opt.host, portstr, &hints, &ai);
    if (gai) {
        fprintf(stderr, "sasp-server: cannot resolve --host %s: %s\n", opt.host, gai_strerror(gai));
        return NULL;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(flags, (uint16_t)opt.port, NULL, NULL, on_request, NULL,
                                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, /* first, or MHD logs once itself */
                                            MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED,
                                            on_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opt.timeout,
                                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024, MHD_OPTION_END);
    int family = ai->ai_family;
    freeaddrinfo(ai);
    if (!d) {
        fprintf(stderr, "sasp-server: cannot listen on %s port %d (in use, or not an address of this machine?)\n",
                opt.host, opt.port);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? di->port : opt.port;
    printf("sasp-server: %s (%zu parameters, context %d, %d slots, %s kernels, %d threads)\n", g_model_id,
           g_model->n_params, g_lim.n_ctx, opt.parallel, sasp_kernels_active()->name, sasp_pool_size(g_model->pool));
    printf("sasp-server: listening on http://%s%s%s:%d/\n", family == AF_INET6 ? "[" : "", opt.host,
           family == AF_INET6 ? "]" : "", port);
    fflush(stdout);
    return d;
}

/* After SIGINT or SIGTERM: take no new connections, end every open sequence (its stream closes
 * cleanly), give the streams up to 5 s to send their last bytes, free everything. */
static void stop_gracefully(struct MHD_Daemon *d, int sig)
{
    fprintf(stderr, "sasp-server: %s: finishing open requests and stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    MHD_socket ls = MHD_quiesce_daemon(d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    sasp_sched_shutdown(g_sched);
    for (int i = 0; i < 500 && atomic_load(&g_open_streams) > 0; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(d);
    sasp_sched_free(g_sched);
    sasp_tokenizer_free(g_tok);
    sasp_model_free(g_model);
    fprintf(stderr, "sasp-server: stopped\n");
}

int main(int argc, char **argv)
{
    int status = parse_options(argc, argv);
    if (status >= 0) return status;

    /* SIGINT/SIGTERM are taken by sigwait below; every thread started from here on inherits the block */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (load_engine() != 0) return 1;
    struct MHD_Daemon *d = start_listening();
    if (!d) return 1;
    int sig = 0;
    sigwait(&sigs, &sig);
    stop_gracefully(d, sig);
    return 0;
}
