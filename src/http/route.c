/* route.c: which handler answers a request, and what it must pass first (route.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/reply.h"
#include "http/route.h"

static const http_options *g_o;

/* --- the requests answered, by endpoint and status, for /metrics --- */

#define MAX_ENDPOINTS 64
#define MAX_STATUSES 12
static struct {
    pthread_mutex_t mu;
    const char *endpoint[MAX_ENDPOINTS]; /* the routes' endpoints in the order of the table, then "static"
                                          * (the fallback) and "other" (no route) */
    int n;
    int status[MAX_ENDPOINTS][MAX_STATUSES];
    uint64_t count[MAX_ENDPOINTS][MAX_STATUSES];
} g_req = {PTHREAD_MUTEX_INITIALIZER, {0}, 0, {{0}}, {{0}}};

/* The counter of an endpoint; "other" (the last one) for none. */
static int counter_of(const char *endpoint)
{
    for (int i = 0; i < g_req.n; i++)
        if (!strcmp(g_req.endpoint[i], endpoint)) return i;
    return g_req.n - 1;
}

int route_init(const http_options *o)
{
    g_o = o;
    g_req.n = 0;
    for (int i = 0; i < o->n_routes + 2; i++) {
        const char *ep = i < o->n_routes ? o->routes[i].endpoint : i == o->n_routes ? "static"
                                                                                    : "other";
        int known = 0;
        for (int j = 0; j < g_req.n; j++) known |= !strcmp(g_req.endpoint[j], ep);
        if (known) continue;
        if (g_req.n == MAX_ENDPOINTS) {
            fprintf(stderr, "sasp-server: more than %d endpoints to count\n", MAX_ENDPOINTS);
            return -1;
        }
        g_req.endpoint[g_req.n++] = ep;
    }
    return 0;
}

void route_count(const conn *k, int status)
{
    int ep = k->req.counter >= 0 ? k->req.counter : g_req.n - 1;
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

void route_metrics_text(sasp_buf *b)
{
    sasp_buf_puts(b, "# HELP sasp_requests_total HTTP requests answered, by endpoint and status.\n"
                     "# TYPE sasp_requests_total counter\n");
    pthread_mutex_lock(&g_req.mu);
    for (int e = 0; e < g_req.n; e++)
        for (int i = 0; i < MAX_STATUSES && g_req.status[e][i]; i++)
            sasp_buf_printf(b, "sasp_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", g_req.endpoint[e],
                            g_req.status[e][i], (unsigned long long)g_req.count[e][i]);
    pthread_mutex_unlock(&g_req.mu);
}

/* --- what a request must pass --- */

/* The API key the request carries: its "Authorization: Bearer" token, else its "x-api-key" header
 * (Anthropic's clients), or NULL. */
static const char *bearer_token(struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
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
                      "one has ended",
                      g_o->guard->max_inflight_client);
    else
        api_error_set(&e, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
                      "this API key already has %d requests in flight (--max-inflight-per-key); retry when one "
                      "has ended",
                      g_o->guard->max_inflight_key);
    return reply_error(c, k, &e, "Retry-After", "1");
}

int route_take_inflight(struct MHD_Connection *c, conn *k, enum MHD_Result *sent)
{
    int lim = guard_inflight_take(c, g_o->n_api_keys ? bearer_token(c) : NULL, &k->run.ticket);
    if (lim) *sent = send_inflight_refusal(c, k, lim);
    return lim ? -1 : 0;
}

/* Whether the request's bearer token is one of the --api-key keys (each compared in constant time). */
static int authorized(struct MHD_Connection *c)
{
    if (!g_o->n_api_keys) return 1;
    const char *h = bearer_token(c);
    if (!h) return 0;
    int ok = 0;
    for (int k = 0; k < g_o->n_api_keys; k++) {
        const char *key = g_o->api_keys[k];
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
    if (k->res.acao && MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Private-Network"))
        MHD_add_response_header(r, "Access-Control-Allow-Private-Network", "true");
    return reply_queue(c, k, 204, r);
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
                      "serve that name",
                      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host"));
        *sent = reply_error(c, k, &e, NULL, NULL);
        return 0;
    }
    const char *acao = NULL;
    if (guard_origin(c, &acao) < 0) {
        guard_count_refusal("origin");
        const char *o = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
        api_error_set(&e, 403, "permission_error", "origin_not_allowed", NULL,
                      "requests from pages of the origin '%s' are not allowed; start the server with "
                      "--allow-origin '%s' to allow them",
                      o, o);
        *sent = reply_error(c, k, &e, NULL, NULL);
        return 0;
    }
    k->res.acao = acao;
    return 1;
}

/* The route of url: an exact path, or a prefix route (/v1/models/{id}); NULL for none. */
static const http_route *find_route(const char *url)
{
    for (int i = 0; i < g_o->n_routes; i++) {
        const http_route *rt = &g_o->routes[i];
        if (rt->flags & ROUTE_PREFIX ? !strncmp(url, rt->path, strlen(rt->path)) && url[strlen(rt->path)]
                                     : !strcmp(url, rt->path))
            return rt;
    }
    return NULL;
}

enum MHD_Result route_dispatch(struct MHD_Connection *c, conn *k, const char *url, const char *method)
{
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    enum MHD_Result sent;
    if (!guard_request(c, k, &sent)) return sent;
    if (!strcmp(method, "OPTIONS")) return answer_preflight(c, k);
    const http_route *rt = find_route(url);
    if (!rt) {
        if (is_get && strncmp(url, "/v1/", 4) != 0 && strncmp(url, "/api/", 5) != 0) {
            k->req.counter = counter_of("static");
            return g_o->fallback(c, k);
        }
        return reply_errorf(c, k, 404, "not_found_error", NULL, "unknown endpoint: %s", url);
    }
    k->req.route = rt;
    k->req.counter = counter_of(rt->endpoint);
    int method_ok = !strcmp(rt->method, "GET") ? is_get : !strcmp(method, rt->method);
    if (!method_ok) {
        api_error e;
        char allow[32];
        snprintf(allow, sizeof allow, "%s, OPTIONS", !strcmp(rt->method, "GET") ? "GET, HEAD" : rt->method);
        api_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL, "%s takes %s, not %s", url,
                      rt->method, method);
        return reply_error(c, k, &e, "Allow", allow);
    }
    if (!(rt->flags & ROUTE_OPEN) && !authorized(c))
        return reply_errorf(c, k, 401, "authentication_error", "invalid_api_key", "%s",
                            "missing or wrong API key: send the header 'Authorization: Bearer <key>' (or 'x-api-key: <key>')");
    if (k->req.too_big) {
        api_error e;
        api_error_set(&e, 413, "invalid_request_error", "request_too_large", NULL,
                      "the request body is larger than the limit of %zu bytes", g_o->max_body);
        return reply_error(c, k, &e, "Connection", "close");
    }
    return rt->handler(c, k);
}
