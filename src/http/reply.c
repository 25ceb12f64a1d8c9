/* reply.c: the ways to answer a request (reply.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/reply.h"

/* Every answer's headers: CORS for an allowed Origin (the origin echoed, or "*" when --allow-origin *
 * says so; with the headers a page may read), the server, the request's id. */
static void add_common_headers(struct MHD_Response *r, const conn *k)
{
    MHD_add_response_header(r, "Vary", "Origin");
    if (k->res.acao) MHD_add_response_header(r, "Access-Control-Allow-Origin", k->res.acao);
    MHD_add_response_header(r, "Access-Control-Expose-Headers",
                            "Retry-After, X-Request-Id, X-Sasp-Ignored-Options, X-Sasp-Prompt-Tokens-Dropped, "
                            "WWW-Authenticate");
    MHD_add_response_header(r, "Server", "sasp-server/" SASP_VERSION);
    if (k->req.id[0]) MHD_add_response_header(r, "X-Request-Id", k->req.id);
    if (k->res.ignored_options[0]) MHD_add_response_header(r, "X-Sasp-Ignored-Options", k->res.ignored_options);
    if (k->res.prompt_tokens_dropped > 0) {
        char n[16];
        snprintf(n, sizeof n, "%d", k->res.prompt_tokens_dropped);
        MHD_add_response_header(r, "X-Sasp-Prompt-Tokens-Dropped", n);
    }
}

enum MHD_Result reply_queue_stream(struct MHD_Connection *c, conn *k, int status, struct MHD_Response *r)
{
    add_common_headers(r, k);
    k->res.status = status;
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result reply_queue(struct MHD_Connection *c, conn *k, int status, struct MHD_Response *r)
{
    conn_answered(k); /* before the client can have it */
    return reply_queue_stream(c, k, status, r);
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

enum MHD_Result reply_buf(struct MHD_Connection *c, conn *k, int status, const char *type, char *buf,
                          size_t len)
{
    struct MHD_Response *r = buffer_response(buf, len, type);
    return r ? reply_queue(c, k, status, r) : MHD_NO;
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

enum MHD_Result reply_json(struct MHD_Connection *c, conn *k, int status, char *json)
{
    struct MHD_Response *r = json_response(json);
    return r ? reply_queue(c, k, status, r) : MHD_NO;
}

enum MHD_Result reply_jval(struct MHD_Connection *c, conn *k, int status, json_t *j)
{
    char *s = json_dumps(j, API_JSON_FLAGS);
    json_decref(j);
    return reply_json(c, k, status, s);
}

/* Whether the request's path is Ollama's (/api/...), whose errors are {"error": "..."}. */
static int ollama_path(const conn *k) { return k->req.path && !strncmp(k->req.path, "/api/", 5); }
/* Whether it is Anthropic's (/v1/messages and under), whose errors are {"type": "error", "error": ...}. */
static int anthropic_path(const conn *k)
{
    const char *p = k->req.path;
    return p && !strncmp(p, "/v1/messages", 12) && (p[12] == 0 || p[12] == '/');
}

enum MHD_Result reply_error(struct MHD_Connection *c, conn *k, const api_error *e, const char *hname, const char *hval)
{
    struct MHD_Response *r = json_response(ollama_path(k)      ? api_error_body_ollama(e)
                                           : anthropic_path(k) ? api_error_body_anthropic(e)
                                                               : api_error_body(e));
    if (!r) return MHD_NO;
    if (hname) MHD_add_response_header(r, hname, hval);
    if (e->status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"sasp-server\"");
    return reply_queue(c, k, e->status, r);
}

enum MHD_Result reply_errorf(struct MHD_Connection *c, conn *k, int status, const char *type, const char *code,
                             const char *fmt, const char *arg)
{
    api_error e;
    api_error_set(&e, status, type, code, NULL, fmt, arg);
    return reply_error(c, k, &e, NULL, NULL);
}
