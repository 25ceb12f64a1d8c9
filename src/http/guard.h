/* guard.h: what sasp-server checks before a request runs, so that no client or web page can lock
 * out or drive the backend: connections per client address and in all (refused at accept: the socket
 * is closed), a deadline for a connection to finish sending its request headers (then closed), requests
 * in flight per client address and per API key (429), the Host header (403 unless a loopback name, the
 * listening address or an --allow-host name: DNS rebinding gets nothing) and the Origin header (403
 * unless a loopback origin, the server's own page or an --allow-origin). The counters go to /metrics.
 * docs/api.md ("Origins, hosts and limits") is the manual, docs/reliability.md the measurements. */
#ifndef SASP_HTTP_GUARD_H
#define SASP_HTTP_GUARD_H

#include <microhttpd.h>
#include <stdint.h>
#include <sys/socket.h>
#include "base/util.h"

#define GUARD_MAX_LIST 32

typedef struct guard_options {
    const char *origins[GUARD_MAX_LIST]; /* --allow-origin: exact origins, "scheme://host:*", or "*" */
    int n_origins;
    const char *hosts[GUARD_MAX_LIST]; /* --allow-host: names (or "*") a Host header may carry */
    int n_hosts;
    const char *listen_host;                     /* --host: its name is allowed too */
    int max_conn_per_ip;                         /* --max-conn-per-ip (0: no limit) */
    int max_connections;                         /* --max-connections: all clients together */
    int header_timeout;                          /* --header-timeout: seconds to finish a request's headers */
    int max_inflight_client;                     /* --max-inflight-per-client (0: no limit) */
    int max_inflight_key;                        /* --max-inflight-per-key (0: no limit) */
    const char *trusted_proxies[GUARD_MAX_LIST]; /* --trusted-proxy: ADDR or ADDR/BITS (forwarded.h) */
    int n_trusted_proxies;
} guard_options;

/* Take the options (kept by pointer: they must outlive the daemon) and start the thread that closes
 * connections past the header deadline. 0, or -1 after saying why. */
int guard_start(const guard_options *o);
void guard_stop(void);

/* libmicrohttpd's accept policy (MHD_OPTION_ACCEPT_POLICY_CALLBACK) and connection notifications
 * (MHD_OPTION_NOTIFY_CONNECTION): the connection limits and the header deadline. */
enum MHD_Result guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);
void guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                  enum MHD_ConnectionNotificationCode code);
/* The request's headers are in (the access handler's first call): the header deadline is off. */
void guard_headers_done(struct MHD_Connection *c);
/* Its answer ended: the connection has --header-timeout seconds for the next request's headers. */
void guard_request_done(struct MHD_Connection *c);

/* Whether the Host header names this server (a loopback name or address, the connection's own
 * address, --host, an --allow-host); a request without one (HTTP/1.0) passes. */
int guard_host_ok(struct MHD_Connection *c);
/* The request's Origin: 0 when it sent none, 1 allowed (*acao: the Access-Control-Allow-Origin value
 * to answer with, the origin itself or "*"), -1 refused. */
int guard_origin(struct MHD_Connection *c, const char **acao);

/* Requests in flight (generations, embeddings) of the connection's client address and of the API key
 * it sent (NULL: none). Take one: 0, or 1 when the client's limit is reached, 2 when the key's is
 * (nothing is taken then). *ticket is what guard_inflight_put gives back. */
typedef struct guard_ticket {
    uint64_t client, key; /* table keys (0: not taken) */
} guard_ticket;
int guard_inflight_take(struct MHD_Connection *c, const char *api_key, guard_ticket *ticket);
void guard_inflight_put(guard_ticket *ticket);
/* A number naming the request's client address (the scheduler's fair share is per client): the TCP
 * peer, or behind a --trusted-proxy the address of X-Forwarded-For (forwarded.h), as the in-flight
 * limits count it. The connection limits count TCP peers, and leave a trusted proxy's out of
 * --max-conn-per-ip. */
uint64_t guard_client_id(struct MHD_Connection *c);

/* Counts for /metrics: connections open, refused at accept, closed at the header deadline, requests
 * refused by Host, Origin and the in-flight limits. */
void guard_metrics_text(sasp_buf *b);
/* The note of a client-side 4xx the guard gave (counted): "host", "origin", "inflight_client",
 * "inflight_key". */
void guard_count_refusal(const char *what);

#endif
