/* server.c: sasp-server, the HTTP daemon. OpenAI-compatible completions, chat completions, models and
 * embeddings, Ollama's API (generate, chat, embed, tags, show, ps, version), llama.cpp's /completion,
 * /infill, /slots and /props, tokenizer endpoints, Prometheus metrics and static files, on
 * libmicrohttpd with a few epoll threads for every connection (an idle connection costs memory, not a
 * thread; a request waiting on the engine is suspended, server_wait.c). Before a request runs,
 * http_guard.c checks its Host and Origin and the per-client limits. HTTP threads parse and write JSON
 * only; the models run on one engine thread (scheduler.c), the wire format lives in api*.c, the models
 * in server_models.c, Ollama's model endpoints in server_ollama.c, embeddings in server_embed.c, /props
 * and /slots in server_slots.c. docs/api.md is the manual. */
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "checkpoint.h"
#include "kernels.h"
#include "model.h"
#include "scheduler.h"
#include "server.h"
#include "server_models.h"
#include "tokenizer.h"
#include "notify.h"
#include "paths.h"
#include "util.h"

/* --- options and global state --- */

static struct {
    const char *model_dir, *host, *api_key, *www;
    int port, threads, parallel, ctx, max_queue, chunk, step_delay;
    size_t max_body;
    int timeout; /* seconds a connection may make no progress (a client that stops reading) */
    const char *model_dirs[SERVER_MAX_MODELS]; /* every -m, in order (model_dir is the first) */
    int n_model_dirs;
    int cache_ram; /* MiB of evicted prompt prefixes kept per model (--cache-ram) */
} opt = {NULL, "127.0.0.1", NULL, NULL, 8080, 0, 4, 0, 64, 128, 0, 1 << 20, 300, {0}, 0, 64};

/* the HTTP layer: its epoll threads and the guard's limits (http_guard.h); max_inflight_client < 0:
 * --parallel plus half of --max-queue, set once the options are read */
static int g_http_threads = 4;
static int g_weights = SASP_WEIGHTS_FAST; /* --weights */
static const char *g_api_keys[GUARD_MAX_LIST]; /* every --api-key (opt.api_key is the first) */
static int g_n_api_keys;
static guard_options g_guard = {.max_conn_per_ip = 128, .max_connections = 8192, .header_timeout = 10,
                                .max_inflight_client = -1, .max_inflight_key = 0};

static char g_www_real[PATH_MAX];
static int g_have_www;
static atomic_int g_open_streams;

/* --- request counters for /metrics --- */

static const char *const endpoints[] = {
    "/v1/completions", "/v1/chat/completions", "/api/generate", "/v1/models", "/health", "/metrics", "/props",
    "/tokenize", "/detokenize", "/api/tags", "/api/chat", "/api/show", "/api/version", "/api/ps", "/v1/embeddings",
    "/api/embed", "/api/embeddings", "/v1/models/{id}", "/api/pull etc.", "/completion", "/infill", "/slots",
    "static", "other"};
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
    R_TAGS, R_OLLAMA_CHAT, R_SHOW, R_VERSION, R_PS, R_EMBEDDINGS, R_EMBED, R_EMBED_LEGACY, R_MODEL, R_MANAGE,
    R_LLAMA_COMPLETION, R_INFILL, R_SLOTS, R_STATIC, R_NONE
} route_id;
_Static_assert(N_ENDPOINTS == R_NONE + 1, "endpoints[] names every route_id, in order");

static const struct route {
    const char *path;
    route_id id;
    const char *method; /* the one method it takes ("GET" routes also take HEAD) */
    int open;           /* served without the API key */
    int prefix;         /* path is a prefix (/v1/models/{id}, /api/blobs/{digest}) */
} routes[] = {
    {"/v1/completions", R_COMPLETIONS, "POST", 0, 0},
    {"/completions", R_COMPLETIONS, "POST", 0, 0},
    {"/v1/chat/completions", R_CHAT, "POST", 0, 0},
    {"/chat/completions", R_CHAT, "POST", 0, 0},
    {"/api/generate", R_GENERATE, "POST", 0, 0},
    {"/completion", R_LLAMA_COMPLETION, "POST", 0, 0},
    {"/infill", R_INFILL, "POST", 0, 0},
    {"/slots", R_SLOTS, "GET", 0, 0},
    {"/v1/models", R_MODELS, "GET", 0, 0},
    {"/models", R_MODELS, "GET", 0, 0},
    {"/api/tags", R_TAGS, "GET", 0, 0},
    {"/health", R_HEALTH, "GET", 1, 0},
    {"/metrics", R_METRICS, "GET", 0, 0},
    {"/props", R_PROPS, "GET", 0, 0},
    {"/tokenize", R_TOKENIZE, "POST", 0, 0},
    {"/detokenize", R_DETOKENIZE, "POST", 0, 0},
    {"/api/chat", R_OLLAMA_CHAT, "POST", 0, 0},
    {"/api/show", R_SHOW, "POST", 0, 0},
    {"/api/version", R_VERSION, "GET", 0, 0},
    {"/api/ps", R_PS, "GET", 0, 0},
    {"/v1/embeddings", R_EMBEDDINGS, "POST", 0, 0},
    {"/embeddings", R_EMBEDDINGS, "POST", 0, 0},
    {"/api/embed", R_EMBED, "POST", 0, 0},
    {"/api/embeddings", R_EMBED_LEGACY, "POST", 0, 0},
    {"/v1/models/", R_MODEL, "GET", 0, 1},
    {"/models/", R_MODEL, "GET", 0, 1},
    {"/api/pull", R_MANAGE, "POST", 0, 0},
    {"/api/push", R_MANAGE, "POST", 0, 0},
    {"/api/create", R_MANAGE, "POST", 0, 0},
    {"/api/copy", R_MANAGE, "POST", 0, 0},
    {"/api/delete", R_MANAGE, "DELETE", 0, 0},
    {"/api/blobs/", R_MANAGE, "POST", 0, 1},
};

/* --- one request --- */


const char *body_text(const conn *k) { return k->body.data ? k->body.data : ""; }

static void conn_release(conn *k)
{
    if (atomic_fetch_sub(&k->refs, 1) != 1) return;
    guard_inflight_put(&k->ticket);
    if (k->have_ev) sasp_event_clear(&k->ev);
    if (k->job) sasp_job_release(k->job);
    embed_release(k);
    api_out_free(k->out);
    free(k->pend);
    sasp_buf_free(&k->body);
    free(k->path);
    free(k);
}

/* Every answer's headers: CORS for an allowed Origin (the origin echoed, or "*" when --allow-origin *
 * says so; with the headers a page may read), the server, the request's id. */
static void add_common_headers(struct MHD_Response *r, const conn *k)
{
    MHD_add_response_header(r, "Vary", "Origin");
    if (k->acao) MHD_add_response_header(r, "Access-Control-Allow-Origin", k->acao);
    MHD_add_response_header(r, "Access-Control-Expose-Headers",
                            "Retry-After, X-Request-Id, X-Sasp-Ignored-Options, X-Sasp-Prompt-Tokens-Dropped, "
                            "WWW-Authenticate");
    MHD_add_response_header(r, "Server", "sasp-server/" SASP_VERSION);
    if (k->request_id[0]) MHD_add_response_header(r, "X-Request-Id", k->request_id);
    if (k->ignored_options[0]) MHD_add_response_header(r, "X-Sasp-Ignored-Options", k->ignored_options);
    if (k->prompt_tokens_dropped > 0) {
        char n[16];
        snprintf(n, sizeof n, "%d", k->prompt_tokens_dropped);
        MHD_add_response_header(r, "X-Sasp-Prompt-Tokens-Dropped", n);
    }
}

/* The client's X-Request-Id when it is short and printable, else a fresh random one. */
static void set_request_id(struct MHD_Connection *c, conn *k)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
    int ok = h && h[0] && strlen(h) < sizeof k->request_id;
    for (const char *p = h; ok && *p; p++) ok = *p > 0x20 && *p < 0x7f;
    if (ok) {
        snprintf(k->request_id, sizeof k->request_id, "%s", h);
        return;
    }
    uint64_t r[2];
    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) r[0] = (uint64_t)sasp_now_ns(), r[1] = (uint64_t)(uintptr_t)k;
    snprintf(k->request_id, sizeof k->request_id, "req-%016llx%016llx", (unsigned long long)r[0], (unsigned long long)r[1]);
}

enum MHD_Result queue_response(struct MHD_Connection *c, conn *k, int status, struct MHD_Response *r)
{
    add_common_headers(r, k);
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
    return r ? queue_response(c, k, status, r) : MHD_NO;
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

enum MHD_Result send_json(struct MHD_Connection *c, conn *k, int status, char *json)
{
    struct MHD_Response *r = json_response(json);
    return r ? queue_response(c, k, status, r) : MHD_NO;
}

enum MHD_Result send_jval(struct MHD_Connection *c, conn *k, int status, json_t *j)
{
    char *s = json_dumps(j, API_JSON_FLAGS);
    json_decref(j);
    return send_json(c, k, status, s);
}

/* Whether the request's path is Ollama's (/api/...), whose errors are {"error": "..."}. */
static int ollama_path(const conn *k) { return k->path && !strncmp(k->path, "/api/", 5); }

enum MHD_Result send_error(struct MHD_Connection *c, conn *k, const api_error *e, const char *hname, const char *hval)
{
    struct MHD_Response *r = json_response(ollama_path(k) ? api_error_body_ollama(e) : api_error_body(e));
    if (!r) return MHD_NO;
    if (hname) MHD_add_response_header(r, hname, hval);
    if (e->status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"sasp-server\"");
    return queue_response(c, k, e->status, r);
}

enum MHD_Result fail(struct MHD_Connection *c, conn *k, int status, const char *type, const char *code,
                     const char *fmt, const char *arg)
{
    api_error e;
    api_error_set(&e, status, type, code, NULL, fmt, arg);
    return send_error(c, k, &e, NULL, NULL);
}

int client_gone(struct MHD_Connection *c)
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

/* The next event of a streamed job as text in k->pend: 1, 0 when none is there yet, -1 at the end
 * (k->pend then holds the stream's last bytes). Never waits. */
static int next_event(conn *k)
{
    sasp_event ev;
    int r;
    if (k->have_ev) { /* taken by the waiter while the connection was suspended */
        ev = k->ev;
        memset(&k->ev, 0, sizeof k->ev);
        k->have_ev = 0;
        r = 1;
    } else {
        r = sasp_job_next(k->job, &ev, 0);
    }
    if (r == 1) {
        if (!ev.prompt_info) k->sent_tokens += ev.n_ids;
        k->pend = api_out_event(k->out, &ev, &k->plen);
        sasp_event_clear(&ev);
    } else if (r < 0) {
        k->pend = api_out_finish(k->out, &k->plen);
        k->ended = 1;
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
        int gone = k->gone;
        if (!gone && sasp_now_ns() - k->checked >= 50000000) { /* also while events keep coming */
            k->checked = sasp_now_ns();
            gone = client_gone(k->mc);
        }
        if (gone) {
            sasp_job_cancel(k->job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (next_event(k) != 0) continue;
        if (wait_suspend(k) != 0) { /* the server is stopping */
            sasp_job_cancel(k->job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        return 0;
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

enum MHD_Result send_refusal(struct MHD_Connection *c, conn *k, int rc)
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

/* Not streamed: the connection is suspended while the waiter reads every event into k->out (noticing a
 * client that leaves); finish_whole answers in one body when it is resumed. */
static enum MHD_Result answer_whole(struct MHD_Connection *c, conn *k)
{
    size_t n;
    free(api_out_start(k->out, &n)); /* echo: the prompt opens each choice's text */
    return suspend_whole(c, k);
}

enum MHD_Result suspend_whole(struct MHD_Connection *c, conn *k)
{
    k->mc = c;
    if (!k->whole) atomic_fetch_add(&g_open_streams, 1);
    k->whole = 1;
    if (wait_suspend(k) != 0) {
        sasp_job_cancel(k->job);
        return fail(c, k, 503, "unavailable_error", NULL, "%s", "the server is shutting down");
    }
    return MHD_YES;
}

enum MHD_Result resuspend_whole(conn *k) { return wait_suspend(k) == 0 ? MHD_YES : MHD_NO; }

/* The access handler's call after the waiter resumed a non-streamed answer. */
static enum MHD_Result finish_whole(struct MHD_Connection *c, conn *k)
{
    if (k->emb) return embed_resume(c, k);
    if (k->gone) {
        sasp_job_cancel(k->job);
        k->status = 499; /* nginx's "client closed request", for the log */
        return MHD_NO;
    }
    if (!k->wait_end) return resuspend_whole(k);
    if (api_out_failed(k->out)) return fail(c, k, 500, "server_error", NULL, "%s", "the engine failed");
    size_t n;
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
    MHD_add_response_header(resp, "Content-Type", api_kind_is_ollama(kind) ? "application/x-ndjson" : "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    return queue_response(c, k, 200, resp);
}

/* The model a request names. OpenAI's endpoints: an id picks that model, any other name (or none)
 * the first one; Ollama's: a name that is no model's id is 404, as Ollama answers (no name: the first
 * model). NULL when the answer was sent. *name gets the name Ollama's answers echo. */
static served_model *pick_model(struct MHD_Connection *c, conn *k, int ollama, char *name, size_t size,
                                enum MHD_Result *sent)
{
    int named = api_requested_model(body_text(k), k->body.len, ollama, name, size);
    served_model *m = named ? served_model_find(name) : NULL;
    if (!m && named && ollama) {
        *sent = send_model_not_found(c, k, name);
        return NULL;
    }
    if (!m) m = served_model_at(0);
    if (!named || !ollama) snprintf(name, size, "%s", m->id);
    return m;
}

/* The token of the request's "Authorization: Bearer" header, or NULL. */
static const char *bearer_token(struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return NULL;
    for (h += 7; *h == ' ';) h++;
    return h;
}

/* 429 for a client (1) or an API key (2) at its limit of requests in flight. */
static enum MHD_Result send_inflight_refusal(struct MHD_Connection *c, conn *k, int which)
{
    api_error e;
    if (which == 1)
        api_error_set(&e, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
                      "this client already has %d requests in flight (--max-inflight-per-client); retry when "
                      "one has ended", g_guard.max_inflight_client);
    else
        api_error_set(&e, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
                      "this API key already has %d requests in flight (--max-inflight-per-key); retry when one "
                      "has ended", g_guard.max_inflight_key);
    return send_error(c, k, &e, "Retry-After", "1");
}

int take_inflight(struct MHD_Connection *c, conn *k, enum MHD_Result *sent)
{
    int lim = guard_inflight_take(c, opt.api_key ? bearer_token(c) : NULL, &k->ticket);
    if (lim) *sent = send_inflight_refusal(c, k, lim);
    return lim ? -1 : 0;
}

/* The generation endpoints: pick the model, parse, hand the job to its scheduler, answer as asked. */
static enum MHD_Result handle_generate(struct MHD_Connection *c, conn *k, api_kind kind)
{
    char name[256];
    enum MHD_Result sent = MHD_NO;
    served_model *m = pick_model(c, k, api_kind_is_ollama(kind), name, sizeof name, &sent);
    if (!m) return sent;
    api_request r;
    api_error e = {0};
    if (api_parse(kind, body_text(k), k->body.len, &m->lim, random_seed(), &r, &e)) {
        api_request_free(&r);
        return send_error(c, k, &e, NULL, NULL);
    }
    snprintf(k->ignored_options, sizeof k->ignored_options, "%s", r.ignored);
    k->prompt_tokens_dropped = r.n_dropped;
    if (r.empty) { /* Ollama: no prompt (or no messages) only loads the model */
        char *body = api_ollama_empty_answer(&r, name);
        api_request_free(&r);
        return send_json(c, k, 200, body);
    }
    k->out = api_out_new(&r, name, m->tok, (long)time(NULL));
    k->job = k->out ? job_of(&r) : NULL;
    int stream = r.stream;
    for (int i = 0; i < r.n_seqs; i += r.n_choices > 0 ? r.n_choices : 1) k->prompt_tokens += r.n_prompt[i];
    api_request_free(&r);
    if (!k->job) return fail(c, k, 500, "server_error", NULL, "%s", "out of memory");
    if (take_inflight(c, k, &sent) != 0) return sent;
    sasp_job_set_client(k->job, guard_client_id(c));
    int rc = sasp_sched_submit(m->sched, k->job);
    if (rc != 0) return send_refusal(c, k, rc);
    return stream ? answer_stream(c, k, kind) : answer_whole(c, k);
}

/* --- information endpoints --- */

/* GET /v1/models: every model; GET /v1/models/{id}: one, or 404 as OpenAI answers an unknown id. */
static enum MHD_Result handle_models(struct MHD_Connection *c, conn *k)
{
    json_t *data = json_array();
    for (int i = 0; i < served_models_count(); i++) json_array_append_new(data, api_openai_model(&served_model_at(i)->info));
    return send_jval(c, k, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

static enum MHD_Result handle_model(struct MHD_Connection *c, conn *k, const char *id)
{
    for (int i = 0; i < served_models_count(); i++)
        if (!strcmp(served_model_at(i)->id, id)) return send_jval(c, k, 200, api_openai_model(&served_model_at(i)->info));
    api_error e;
    api_error_set(&e, 404, "invalid_request_error", "model_not_found", "model", "The model '%s' does not exist", id);
    return send_error(c, k, &e, NULL, NULL);
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

static void hist_add(sasp_hist *to, const sasp_hist *h)
{
    for (int i = 0; i < SASP_HIST_BUCKETS; i++) to->count[i] += h->count[i];
    to->n += h->n;
    to->sum += h->sum;
}

/* The stats of every model's scheduler, added up. */
static void all_stats(sasp_sched_stats *st)
{
    sasp_sched_get_stats(served_model_at(0)->sched, st);
    for (int i = 1; i < served_models_count(); i++) {
        sasp_sched_stats o;
        sasp_sched_get_stats(served_model_at(i)->sched, &o);
        st->n_slots += o.n_slots, st->active += o.active, st->queued += o.queued;
        st->prompt_tokens += o.prompt_tokens, st->generated_tokens += o.generated_tokens;
        st->cancelled += o.cancelled, st->sequences_done += o.sequences_done, st->steps += o.steps;
        st->forward_seconds += o.forward_seconds, st->constraint_seconds += o.constraint_seconds;
        st->constrained_tokens += o.constrained_tokens;
        st->cached_tokens += o.cached_tokens, st->copied_tokens += o.copied_tokens;
        st->host_hits += o.host_hits, st->host_saves += o.host_saves, st->dropped_tokens += o.dropped_tokens;
        st->host_entries += o.host_entries, st->host_bytes += o.host_bytes;
        hist_add(&st->ttft, &o.ttft);
        hist_add(&st->token_latency, &o.token_latency);
    }
}

/* The prompt cache's series: prompt tokens served from it (and copied between caches), the host
 * cache of evicted prefixes, and the prompt tokens cut to fit the context. */
static void cache_metrics_text(sasp_buf *b, const sasp_sched_stats *st)
{
    sasp_buf_printf(b,
            "# HELP sasp_prompt_tokens_cached_total Prompt tokens served from a prompt cache instead of computed.\n"
            "# TYPE sasp_prompt_tokens_cached_total counter\nsasp_prompt_tokens_cached_total %llu\n"
            "# HELP sasp_prompt_cache_copied_tokens_total Cached prompt tokens copied from another slot or the host cache.\n"
            "# TYPE sasp_prompt_cache_copied_tokens_total counter\nsasp_prompt_cache_copied_tokens_total %llu\n"
            "# HELP sasp_prompt_cache_host_hits_total Prefixes restored from the host cache (--cache-ram).\n"
            "# TYPE sasp_prompt_cache_host_hits_total counter\nsasp_prompt_cache_host_hits_total %llu\n"
            "# HELP sasp_prompt_cache_host_saves_total Evicted prefixes kept in the host cache.\n"
            "# TYPE sasp_prompt_cache_host_saves_total counter\nsasp_prompt_cache_host_saves_total %llu\n"
            "# HELP sasp_prompt_cache_host_entries Prefixes the host cache holds.\n"
            "# TYPE sasp_prompt_cache_host_entries gauge\nsasp_prompt_cache_host_entries %d\n"
            "# HELP sasp_prompt_cache_host_bytes Memory the host cache holds.\n"
            "# TYPE sasp_prompt_cache_host_bytes gauge\nsasp_prompt_cache_host_bytes %zu\n"
            "# HELP sasp_prompt_tokens_dropped_total Prompt tokens cut to fit the context.\n"
            "# TYPE sasp_prompt_tokens_dropped_total counter\nsasp_prompt_tokens_dropped_total %llu\n",
            (unsigned long long)st->cached_tokens, (unsigned long long)st->copied_tokens,
            (unsigned long long)st->host_hits, (unsigned long long)st->host_saves, st->host_entries, st->host_bytes,
            (unsigned long long)st->dropped_tokens);
}

static enum MHD_Result handle_metrics(struct MHD_Connection *c, conn *k)
{
    sasp_sched_stats st;
    all_stats(&st);
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
            "# TYPE sasp_engine_forward_seconds_total counter\nsasp_engine_forward_seconds_total %.6f\n"
            "# HELP sasp_constraint_seconds_total Time spent masking logits for JSON output and token healing.\n"
            "# TYPE sasp_constraint_seconds_total counter\nsasp_constraint_seconds_total %.6f\n"
            "# HELP sasp_constrained_tokens_total Tokens sampled under a constraint's mask.\n"
            "# TYPE sasp_constrained_tokens_total counter\nsasp_constrained_tokens_total %llu\n",
            (unsigned long long)st.prompt_tokens, (unsigned long long)st.generated_tokens,
            (unsigned long long)st.cancelled, (unsigned long long)st.sequences_done, st.active, st.n_slots, st.queued,
            (unsigned long long)st.steps, st.forward_seconds, st.constraint_seconds,
            (unsigned long long)st.constrained_tokens);
    cache_metrics_text(&b, &st);
    guard_metrics_text(&b);
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
    char name[256];
    served_model *m = api_requested_model(body_text(k), k->body.len, 0, name, sizeof name) ? served_model_find(name)
                                                                                         : NULL;
    const api_limits *lim = &(m ? m : served_model_at(0))->lim;
    char *s = de ? api_detokenize(body_text(k), k->body.len, lim, &e) : api_tokenize(body_text(k), k->body.len, lim, &e);
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
    return queue_response(c, k, 200, r);
}

/* --- dispatch --- */

/* Whether the request's bearer token is one of the --api-key keys (each compared in constant time). */
static int authorized(struct MHD_Connection *c)
{
    if (!opt.api_key) return 1;
    const char *h = bearer_token(c);
    if (!h) return 0;
    int ok = 0;
    for (int k = 0; k < g_n_api_keys; k++) {
        const char *key = g_api_keys[k];
        size_t a = strlen(h), b = strlen(key);
        unsigned diff = (unsigned)(a ^ b);
        for (size_t i = 0; i < a; i++) diff |= (unsigned char)h[i] ^ (unsigned char)key[i % (b ? b : 1)];
        ok |= diff == 0;
    }
    return ok;
}

/* OPTIONS on any path: the CORS preflight of an allowed origin (a refused one got 403 before): our
 * methods, the headers asked for, and Private Network Access when the browser asks for it. */
static enum MHD_Result answer_preflight(struct MHD_Connection *c, conn *k)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    const char *req = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
    MHD_add_response_header(r, "Access-Control-Allow-Headers", req ? req : "Authorization, Content-Type");
    MHD_add_response_header(r, "Access-Control-Max-Age", "86400");
    if (k->acao && MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Private-Network"))
        MHD_add_response_header(r, "Access-Control-Allow-Private-Network", "true");
    return queue_response(c, k, 204, r);
}

/* Before anything runs: a Host that does not name this server (DNS rebinding) and an Origin that is
 * not allowed (another web page) get 403. MHD_YES to go on, else *sent is the answer. */
static int guard_request(struct MHD_Connection *c, conn *k, enum MHD_Result *sent)
{
    api_error e;
    if (!guard_host_ok(c)) {
        guard_count_refusal("host");
        api_error_set(&e, 403, "permission_error", "host_not_allowed", NULL,
                      "the Host header '%s' does not name this server; start it with --allow-host NAME to "
                      "serve that name", MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host"));
        *sent = send_error(c, k, &e, NULL, NULL);
        return 0;
    }
    const char *acao = NULL;
    if (guard_origin(c, &acao) < 0) {
        guard_count_refusal("origin");
        const char *o = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
        api_error_set(&e, 403, "permission_error", "origin_not_allowed", NULL,
                      "requests from pages of the origin '%s' are not allowed; start the server with "
                      "--allow-origin '%s' to allow them", o, o);
        *sent = send_error(c, k, &e, NULL, NULL);
        return 0;
    }
    k->acao = acao;
    return 1;
}

/* The route of url: an exact path, or a prefix route (/v1/models/{id}); NULL for none. */
static const struct route *find_route(const char *url)
{
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        const struct route *rt = &routes[i];
        if (rt->prefix ? !strncmp(url, rt->path, strlen(rt->path)) && url[strlen(rt->path)] : !strcmp(url, rt->path))
            return rt;
    }
    return NULL;
}

/* The handler of a route that passed the method, key and size checks. */
static enum MHD_Result route_to_handler(struct MHD_Connection *c, conn *k, const struct route *rt, const char *url)
{
    switch (rt->id) {
    case R_COMPLETIONS: return handle_generate(c, k, API_COMPLETIONS);
    case R_CHAT: return handle_generate(c, k, API_CHAT);
    case R_GENERATE: return handle_generate(c, k, API_GENERATE);
    case R_OLLAMA_CHAT: return handle_generate(c, k, API_OLLAMA_CHAT);
    case R_MODELS: return handle_models(c, k);
    case R_MODEL: return handle_model(c, k, url + strlen(rt->path));
    case R_TAGS: return handle_tags(c, k);
    case R_SHOW: return handle_show(c, k);
    case R_VERSION: return handle_version(c, k);
    case R_PS: return handle_ps(c, k);
    case R_MANAGE: return handle_model_management(c, k);
    case R_EMBEDDINGS: return handle_embeddings(c, k, API_EMBED_OPENAI);
    case R_EMBED: return handle_embeddings(c, k, API_EMBED_OLLAMA);
    case R_EMBED_LEGACY: return handle_embeddings(c, k, API_EMBED_OLLAMA_LEGACY);
    case R_HEALTH: return send_jval(c, k, 200, json_pack("{s:s}", "status", "ok"));
    case R_METRICS: return handle_metrics(c, k);
    case R_PROPS: return handle_props(c, k);
    case R_SLOTS: return handle_slots(c, k);
    case R_LLAMA_COMPLETION: return handle_generate(c, k, API_LLAMA_COMPLETION);
    case R_INFILL: return handle_generate(c, k, API_INFILL);
    case R_TOKENIZE: return handle_tok(c, k, 0);
    case R_DETOKENIZE: return handle_tok(c, k, 1);
    default: return fail(c, k, 404, "not_found_error", NULL, "unknown endpoint: %s", url);
    }
}

static enum MHD_Result dispatch(struct MHD_Connection *c, conn *k, const char *url, const char *method)
{
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    enum MHD_Result sent;
    if (!guard_request(c, k, &sent)) return sent;
    if (!strcmp(method, "OPTIONS")) return answer_preflight(c, k);
    const struct route *rt = find_route(url);
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
        char allow[32];
        snprintf(allow, sizeof allow, "%s, OPTIONS", !strcmp(rt->method, "GET") ? "GET, HEAD" : rt->method);
        api_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL, "%s takes %s, not %s", url,
                      rt->method, method);
        return send_error(c, k, &e, "Allow", allow);
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
    return route_to_handler(c, k, rt, url);
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
        set_request_id(c, k);
        *con_cls = k;
        guard_headers_done(c);
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
    if (k->whole) return finish_whole(c, k); /* resumed: the job has ended, or the client left */
    return dispatch(c, k, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    conn *k = *con_cls;
    guard_request_done(c);
    if (!k) return;
    *con_cls = NULL;
    if (k->whole) atomic_fetch_sub(&g_open_streams, 1);
    double ms = (double)(sasp_now_ns() - k->t0) * 1e-6;
    int status = k->status ? k->status : 500;
    count_request((int)k->route, status); /* route ids index `endpoints` (R_NONE is "other") */
    /* the answer's usage; a cancelled one has none yet: then what was read and sent */
    int prompt_tokens = k->prompt_tokens, completion_tokens = k->sent_tokens, p = 0, g = 0;
    if (k->out) api_out_usage(k->out, &p, &g);
    if (p > prompt_tokens) prompt_tokens = p;
    if (g > completion_tokens) completion_tokens = g;
    char stamp[32];
    utc_stamp(stamp, sizeof stamp);
    fprintf(stderr, "%s %s %s %d tokens=%d+%d %.1fms%s\n", stamp, k->method, k->path ? k->path : "?", status,
            prompt_tokens, completion_tokens, ms,
            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)");
    conn_release(k);
}

/* libmicrohttpd's own messages, marked as its; those of a client that went away (mid-answer, or while
 * sasp cancelled its stream) are expected and not printed: the request's log line says 499 or
 * "(connection closed early)". */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    static const char *const expected[] = {
        "Failed to send the chunked response body", "Failed to send the response body",
        "Failed to send the response headers", "Failed to send the footers", "Failed to send data in request",
        "Socket has been disconnected", "Closing connection (application reported error generating data)",
        "Closing connection (application error generating response)",
        "Application reported internal error, closing connection"};
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    for (size_t i = 0; i < sizeof expected / sizeof *expected; i++)
        if (!strncmp(msg, expected[i], strlen(expected[i]))) return;
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = 0;
    fprintf(stderr, "sasp-server: libmicrohttpd: %s\n", msg);
}

/* --- main --- */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: sasp-server [options]\n"
            "Serve SAS-P models over HTTP: OpenAI-compatible /v1/completions, /v1/chat/completions,\n"
            "/v1/embeddings and /v1/models, Ollama's /api/generate, /api/chat, /api/embed, /api/tags,\n"
            "/api/show, /api/ps and /api/version, llama.cpp's /completion, /infill, /slots and /props,\n"
            "/tokenize, /detokenize, /health, /metrics, and the files of --www at /. docs/api.md describes\n"
            "every endpoint; docs/editor.md the set-up of code editors.\n\n"
            "Options:\n"
            "  -m, --model DIR      model directory (config.json, model.safetensors, tokenizer.json), or a\n"
            "                       directory of model directories; may be given up to 16 times, and a\n"
            "                       request's \"model\" picks one (the first is the default)\n"
            "                       [default: " SASP_SOURCE_MODEL_DIR " if the current directory has it,\n"
            "                       else " SASP_INSTALLED_MODEL_DIR "]\n"
            "      --host ADDR      address to listen on (an IPv4 or IPv6 address or a host name)\n"
            "                       [default: 127.0.0.1]\n"
            "      --port N         TCP port; 0 picks a free one (the URL printed at start says which)\n"
            "                       [default: 8080]\n"
            "  -t, --threads N      threads of the forward pass [default: one per core]\n"
            "      --weights TYPE   the weight matrices' type in memory: f32, bf16 or q8_0 (converted at\n"
            "                       load), stored (as the checkpoint stores them), or auto: the type this\n"
            "                       CPU's kernels run fastest, q8_0 with SIMD, f32 on the scalar reference\n"
            "                       (a file stored narrower stays as it is). Every type gives a request the\n"
            "                       same tokens alone or under load [default: auto]\n"
            "      --parallel N     sequences decoded at once (slots, each with its own KV-cache) [default: 4]\n"
            "      --ctx N          context of each slot in tokens [default: the model's max_seq_len]\n"
            "      --api-key KEY    require 'Authorization: Bearer KEY' (all but /health, /v1/models and files);\n"
            "                       may be repeated: any of the keys is accepted, each with its own\n"
            "                       --max-inflight-per-key\n"
            "      --www DIR        directory of static files served at / [default: " SASP_SOURCE_WWW_DIR "\n"
            "                       if the current directory has it, else " SASP_INSTALLED_WWW_DIR "]\n"
            "      --max-queue N    requests waiting for a slot beyond which the server answers 429\n"
            "                       [default: 64]\n"
            "      --chunk N        prompt tokens fed per engine step, shared by prefilling slots [default: 128]\n"
            "      --cache-ram MIB  memory per model for prompt prefixes evicted from the slots' caches, kept\n"
            "                       for requests that share them (0: none) [default: 64]\n"
            "      --max-body N     largest request body in bytes; larger gets 413 [default: 1048576]\n"
            "      --step-delay MS  sleep MS milliseconds after every engine step, to slow generation down\n"
            "                       on purpose (tests, demos of streaming with a tiny model) [default: 0]\n"
            "      --timeout S      close a connection that makes no progress for S seconds (a client that\n"
            "                       stops reading its stream, or sends nothing) [default: 300]\n"
            "\nWho may connect (docs/api.md, \"Origins, hosts and limits\"):\n"
            "      --allow-origin O web pages of origin O (scheme://host:port, scheme://host:* for any port,\n"
            "                       or * for every page) may call the server; may be repeated. Pages on\n"
            "                       http://localhost:*, http://127.0.0.1:*, http://[::1]:* and the server's\n"
            "                       own may always; a request with another Origin gets 403\n"
            "      --allow-host N   answer requests whose Host header is N (a name, *.domain, or *); may be\n"
            "                       repeated. Loopback names and addresses, the listening address and\n"
            "                       --host always pass; another Host gets 403 (DNS rebinding)\n"
            "      --max-conn-per-ip N  connections one client address may hold open; more are closed at\n"
            "                       once (0: no limit) [default: 128]\n"
            "      --max-connections N  connections of all clients together [default: 8192]\n"
            "      --header-timeout S  close a connection that has not sent its request headers S seconds\n"
            "                       after it opened or after its last answer [default: 10]\n"
            "      --max-inflight-per-client N  generation requests (running or queued) one client address\n"
            "                       may have at once; more get 429 (0: no limit) [default: --parallel +\n"
            "                       half of --max-queue, or none when that is all of them]\n"
            "      --max-inflight-per-key N  the same for all the requests of one API key (0: no limit)\n"
            "                       [default: 0]\n"
            "      --http-threads N threads of the HTTP layer (epoll; each serves many connections)\n"
            "                       [default: 4]\n"
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

/* Append v to a list of at most GUARD_MAX_LIST entries (--allow-origin, --allow-host). */
static int add_to_list(const char *name, const char **list, int *n, const char *v)
{
    if (*n == GUARD_MAX_LIST || !v[0]) {
        fprintf(stderr, "sasp-server: %s takes a non-empty value, at most %d times\n", name, GUARD_MAX_LIST);
        return -1;
    }
    list[(*n)++] = v;
    return 0;
}

/* Read the command line into opt. Returns -1 to go on, or the status to exit with (--help, --version,
 * a bad option). */
static int parse_options(int argc, char **argv)
{
    enum { O_HOST = 256, O_PORT, O_PARALLEL, O_CTX, O_KEY, O_WWW, O_QUEUE, O_CHUNK, O_BODY, O_DELAY, O_TIMEOUT, O_VERSION,
           O_CACHE_RAM, O_ORIGIN, O_ALLOW_HOST, O_CONN_IP, O_CONNS, O_HDR_TIMEOUT, O_INFL_CLIENT, O_INFL_KEY,
           O_HTTP_THREADS, O_WEIGHTS };
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},    {"host", required_argument, 0, O_HOST},
        {"port", required_argument, 0, O_PORT},  {"threads", required_argument, 0, 't'},
        {"parallel", required_argument, 0, O_PARALLEL}, {"ctx", required_argument, 0, O_CTX},
        {"api-key", required_argument, 0, O_KEY}, {"www", required_argument, 0, O_WWW},
        {"max-queue", required_argument, 0, O_QUEUE}, {"chunk", required_argument, 0, O_CHUNK},
        {"max-body", required_argument, 0, O_BODY}, {"step-delay", required_argument, 0, O_DELAY},
        {"timeout", required_argument, 0, O_TIMEOUT}, {"cache-ram", required_argument, 0, O_CACHE_RAM},
        {"allow-origin", required_argument, 0, O_ORIGIN}, {"allow-host", required_argument, 0, O_ALLOW_HOST},
        {"max-conn-per-ip", required_argument, 0, O_CONN_IP}, {"max-connections", required_argument, 0, O_CONNS},
        {"header-timeout", required_argument, 0, O_HDR_TIMEOUT},
        {"max-inflight-per-client", required_argument, 0, O_INFL_CLIENT},
        {"max-inflight-per-key", required_argument, 0, O_INFL_KEY},
        {"http-threads", required_argument, 0, O_HTTP_THREADS},
        {"weights", required_argument, 0, O_WEIGHTS},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, O_VERSION},  {0, 0, 0, 0}};
    int ch, body = 0;
    while ((ch = getopt_long(argc, argv, "m:t:h", lo, NULL)) != -1) {
        int bad = 0;
        switch (ch) {
        case 'm':
            if (opt.n_model_dirs == SERVER_MAX_MODELS) {
                fprintf(stderr, "sasp-server: at most %d -m options\n", SERVER_MAX_MODELS);
                return 2;
            }
            opt.model_dirs[opt.n_model_dirs++] = optarg;
            opt.model_dir = opt.model_dirs[0];
            break;
        case O_HOST: opt.host = optarg; break;
        case O_PORT: bad = parse_int("--port", optarg, 0, 65535, &opt.port); break;
        case 't': bad = parse_int("--threads", optarg, 0, 1024, &opt.threads); break;
        case O_PARALLEL: bad = parse_int("--parallel", optarg, 1, 256, &opt.parallel); break;
        case O_CTX: bad = parse_int("--ctx", optarg, 1, 1 << 20, &opt.ctx); break;
        case O_KEY:
            if (optarg[0]) bad = add_to_list("--api-key", g_api_keys, &g_n_api_keys, optarg);
            opt.api_key = g_n_api_keys ? g_api_keys[0] : NULL;
            break;
        case O_WWW: opt.www = optarg; break;
        case O_QUEUE: bad = parse_int("--max-queue", optarg, 0, 1 << 20, &opt.max_queue); break;
        case O_CHUNK: bad = parse_int("--chunk", optarg, 1, 1 << 16, &opt.chunk); break;
        case O_BODY: bad = parse_int("--max-body", optarg, 1, INT_MAX, &body); opt.max_body = (size_t)body; break;
        case O_DELAY: bad = parse_int("--step-delay", optarg, 0, 60000, &opt.step_delay); break;
        case O_TIMEOUT: bad = parse_int("--timeout", optarg, 1, 86400, &opt.timeout); break;
        case O_CACHE_RAM: bad = parse_int("--cache-ram", optarg, 0, 1 << 20, &opt.cache_ram); break;
        case O_ORIGIN: bad = add_to_list("--allow-origin", g_guard.origins, &g_guard.n_origins, optarg); break;
        case O_ALLOW_HOST: bad = add_to_list("--allow-host", g_guard.hosts, &g_guard.n_hosts, optarg); break;
        case O_CONN_IP: bad = parse_int("--max-conn-per-ip", optarg, 0, 1 << 20, &g_guard.max_conn_per_ip); break;
        case O_CONNS: bad = parse_int("--max-connections", optarg, 1, 1 << 20, &g_guard.max_connections); break;
        case O_HDR_TIMEOUT: bad = parse_int("--header-timeout", optarg, 1, 86400, &g_guard.header_timeout); break;
        case O_INFL_CLIENT:
            bad = parse_int("--max-inflight-per-client", optarg, 0, 1 << 20, &g_guard.max_inflight_client);
            break;
        case O_INFL_KEY: bad = parse_int("--max-inflight-per-key", optarg, 0, 1 << 20, &g_guard.max_inflight_key); break;
        case O_HTTP_THREADS: bad = parse_int("--http-threads", optarg, 1, 64, &g_http_threads); break;
        case O_WEIGHTS:
            if ((bad = (g_weights = sasp_weights_parse(optarg)) == SASP_WEIGHTS_UNKNOWN))
                fprintf(stderr, "sasp-server: --weights takes " SASP_WEIGHTS_HELP ", not '%s'\n", optarg);
            break;
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
    if (g_guard.max_inflight_client < 0) { /* no lower than the slots and queue: their own 429 says it */
        int d = opt.parallel + (opt.max_queue + 1) / 2;
        g_guard.max_inflight_client = d < opt.parallel + opt.max_queue ? d : 0;
    }
    g_guard.listen_host = opt.host;
    if (!opt.model_dir) opt.model_dir = sasp_default_model_dir();
    if (!opt.www) opt.www = sasp_default_www_dir();
    return -1;
}

/* Load the models and their tokenizers, start their schedulers on one engine thread, find --www.
 * 0, or -1 after saying why. */
static int load_engine(void)
{
    if (opt.n_model_dirs == 0) opt.model_dirs[opt.n_model_dirs++] = opt.model_dir;
    serve_options so = {opt.threads, opt.parallel, opt.ctx, opt.max_queue, opt.chunk, opt.step_delay,
                        (size_t)opt.cache_ram << 20, g_weights};
    if (served_models_load(opt.model_dirs, opt.n_model_dirs, &so) != 0) return -1;
    g_have_www = realpath(opt.www, g_www_real) != NULL;
    if (!g_have_www) fprintf(stderr, "sasp-server: note: --www %s does not exist; / will answer 404\n", opt.www);
    return 0;
}

/* Raise the soft limit of open files to what --max-connections needs (and the models and the log a few
 * more), as far as the hard limit allows; lower --max-connections to fit when it cannot, saying so. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t want = (rlim_t)g_guard.max_connections + 256, before = rl.rlim_cur;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want) {
        int fit = rl.rlim_cur > 320 ? (int)(rl.rlim_cur - 256) : 64;
        fprintf(stderr, "sasp-server: note: open files limited to %llu (hard limit); --max-connections lowered "
                "from %d to %d\n", (unsigned long long)rl.rlim_cur, g_guard.max_connections, fit);
        g_guard.max_connections = fit;
    }
    printf("sasp-server: open files limit %llu (was %llu) for up to %d connections\n",
           (unsigned long long)rl.rlim_cur, (unsigned long long)before, g_guard.max_connections);
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
    /* epoll threads (a connection costs no thread and no select() slot), requests suspended while they
     * wait on the engine; the guard's accept policy enforces the connection limits (MHD's own limit,
     * a little above, never decides) */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
                     (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(flags, (uint16_t)opt.port, guard_accept, NULL, on_request, NULL,
                                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, /* first, or MHD logs once itself */
                                            MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED,
                                            on_completed, NULL, MHD_OPTION_NOTIFY_CONNECTION, guard_notify, NULL,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opt.timeout,
                                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)g_http_threads,
                                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)g_guard.max_connections + 64,
                                            MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    int family = ai->ai_family;
    freeaddrinfo(ai);
    if (!d) {
        fprintf(stderr, "sasp-server: cannot listen on %s port %d (in use, or not an address of this machine?)\n",
                opt.host, opt.port);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? di->port : opt.port;
    for (int i = 0; i < served_models_count(); i++) {
        served_model *m = served_model_at(i);
        sasp_model_info info = sasp_model_describe(m->model);
        printf("sasp-server: %s (%zu parameters, %s weights%s, context %d, %d slots, %s kernels (%s), %d threads)\n",
               m->id, m->model->n_params, info.weights, g_weights == SASP_WEIGHTS_FAST ? " (auto: the kernels' fastest)" : "",
               m->lim.n_ctx, opt.parallel, info.kernels, m->model->kernels->id, info.threads);
    }
    printf("sasp-server: HTTP: %d epoll threads, at most %d connections (%d per client address), headers "
           "within %d s, %d generation requests in flight per client (0: no limit)\n", g_http_threads,
           g_guard.max_connections, g_guard.max_conn_per_ip, g_guard.header_timeout, g_guard.max_inflight_client);
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
    served_models_shutdown();
    for (int i = 0; i < 500 && atomic_load(&g_open_streams) > 0; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    wait_stop(); /* libmicrohttpd stops only with no connection suspended */
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    MHD_stop_daemon(d);
    guard_stop();
    served_models_free();
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
    raise_nofile();
    if (guard_start(&g_guard) != 0 || wait_start() != 0) return 1;
    struct MHD_Daemon *d = start_listening();
    if (!d) return 1;
    sasp_notify("READY=1\nSTATUS=model loaded, listening"); /* a Type=notify unit is started */
    int sig = 0;
    sigwait(&sigs, &sig);
    sasp_notify("STOPPING=1");
    stop_gracefully(d, sig);
    return 0;
}
