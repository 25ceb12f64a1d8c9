/* route.h: which handler answers a request, and what the request must pass first (route.c): the Host
 * and the Origin (guard.h; 403), the CORS preflight, the method (405), the API key (401), the size of
 * the body (413); the in-flight limits that a handler takes when its request is about to run (429);
 * and the requests answered, by endpoint and status, for /metrics. The routes themselves are the
 * server's (server/routes.c): one row per path, naming its method and its handler. */
#ifndef SASP_HTTP_ROUTE_H
#define SASP_HTTP_ROUTE_H

#include <microhttpd.h>
#include <stddef.h>
#include "base/util.h"
#include "http/conn.h"
#include "http/guard.h"

/* A handler answers the request k (its path, body, ...) on connection c. */
typedef enum MHD_Result (*http_handler)(struct MHD_Connection *c, conn *k);

enum {
    ROUTE_OPEN = 1,  /* served without the API key */
    ROUTE_PREFIX = 2 /* path is a prefix: the route takes path + anything (/v1/models/{id}) */
};

/* One route: the one method it takes ("GET" routes also take HEAD), its path, its handler, the
 * endpoint /metrics counts it under (paths that are aliases of one another share one), ROUTE_* flags. */
typedef struct http_route {
    const char *method;
    const char *path;
    http_handler handler;
    const char *endpoint;
    int flags;
} http_route;

/* What the HTTP layer is told at start (the command line's options). */
typedef struct http_options {
    const char *host;            /* --host: the address to listen on */
    int port;                    /* --port (0: a free one) */
    int threads;                 /* --http-threads */
    int timeout;                 /* --timeout: seconds a connection may make no progress */
    size_t max_body;             /* --max-body: bytes of a request body; more is a 413 */
    const char *const *api_keys; /* --api-key: a request to a route that is not ROUTE_OPEN needs one */
    int n_api_keys;              /* (0: none is needed) */
    const guard_options *guard;  /* the connection and in-flight limits, Host and Origin (guard.h) */
    const http_route *routes;    /* the routes, the first that takes a path wins */
    int n_routes;
    http_handler fallback;     /* a GET or HEAD of a path no route takes, outside /v1/ and /api/ */
    const char *tls_key_file;  /* --ssl-key-file and --ssl-cert-file (PEM): HTTPS instead of HTTP */
    const char *tls_cert_file; /* (both or neither) */
} http_options;

/* Take the options (kept by pointer: they must outlive the daemon). 0, or -1 after saying why. */
int route_init(const http_options *o);
/* The access handler's call once the request's body is in: the checks, then its route's handler (or
 * the fallback, or a 404). */
enum MHD_Result route_dispatch(struct MHD_Connection *c, conn *k, const char *url, const char *method);
/* Count k in the in-flight limits of its client and API key (guard.h), or answer 429 into *sent and
 * return -1. */
int route_take_inflight(struct MHD_Connection *c, conn *k, enum MHD_Result *sent);
/* Count k's answer (its status) under its endpoint; /metrics' lines of the counts. */
void route_count(const conn *k, int status);
void route_metrics_text(sasp_buf *b);

#endif
