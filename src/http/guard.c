/* guard.c: the connection limits, header deadline, in-flight limits and Host / Origin checks of
 * sasp-server (guard.h). One mutex guards a hash table of client addresses (connections open and
 * requests in flight of each; API keys share the table under their own keys) and the list of open
 * connections that a thread scans for the header deadline.
 *
 * The connection limits are checked in libmicrohttpd's accept callback, but a connection is counted
 * only when libmicrohttpd announces it (MHD_CONNECTION_NOTIFY_STARTED), a moment later. Each thread of
 * the HTTP pool accepts on its own, so two accepts could both pass the check before either was counted
 * and the limit let one connection too many through (seen: 7 of 8 extra connections refused under
 * the sanitizer build). The accept therefore *reserves* its place under the same lock as the check, and
 * the announcement turns the reservation into a count. libmicrohttpd may still drop a connection between
 * the two (its own per-thread limit, no memory), so a reservation that no announcement claimed within
 * RESERVATION_NS is void: the announcement follows the accept in the same call chain, microseconds
 * later. */
#include "http/guard.h"
#include "http/forwarded.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define N_BUCKETS 4096
#define RESERVATION_NS 1000000000LL /* an accepted connection is announced long before this */

/* Connections accepted but not yet announced: counted against the limits until then. */
typedef struct {
    int n;
    int64_t at; /* when the last one was made */
} reservations;

typedef struct peer {
    uint64_t key;
    int conns, inflight;
    reservations held;
    struct peer *next;
} peer;

/* One open connection (libmicrohttpd's socket context). */
typedef struct gconn {
    int fd;
    uint64_t peer_key;
    int64_t armed; /* when its header deadline started; 0 while a request runs */
    int reaped;
    struct gconn *prev, *next;
} gconn;

static struct {
    const guard_options *o;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    peer *buckets[N_BUCKETS];
    gconn *conns;
    int open, peak, quit, started;
    reservations held; /* of all clients together */
    pthread_t thread;
    uint64_t refused_ip, refused_total, header_timeouts;
    uint64_t refused_host, refused_origin, refused_inflight_client, refused_inflight_key;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* --- client addresses --- */

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* The table key of an address's 16 bytes (forwarded.h). */
static uint64_t bytes_key(const unsigned char b[16])
{
    return fnv(b, 16, 0xcbf29ce484222325ULL) | 1; /* odd: never 0, never an API key's (even) */
}

static uint64_t addr_key(const struct sockaddr *sa)
{
    unsigned char b[16];
    forwarded_addr_bytes(sa, b);
    return bytes_key(b);
}

/* Under g.mu: the entry of key, made when create is set (NULL when out of memory or absent). */
static peer *peer_get(uint64_t key, int create)
{
    peer **pp = &g.buckets[key % N_BUCKETS];
    for (peer *p = *pp; p; p = p->next)
        if (p->key == key) return p;
    if (!create) return NULL;
    peer *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->key = key;
    p->next = *pp;
    *pp = p;
    return p;
}

/* Under g.mu: the reservations still pending at now (void ones dropped). */
static int reservations_live(reservations *r, int64_t now)
{
    if (r->n && now - r->at > RESERVATION_NS) r->n = 0;
    return r->n;
}

static void reserve(reservations *r, int64_t now)
{
    r->n++;
    r->at = now;
}

static void claim(reservations *r)
{
    if (r->n > 0) r->n--;
}

/* Under g.mu: drop key's entry once it counts nothing. */
static void peer_trim(uint64_t key)
{
    for (peer **pp = &g.buckets[key % N_BUCKETS]; *pp; pp = &(*pp)->next) {
        peer *p = *pp;
        if (p->key != key) continue;
        if (p->conns == 0 && p->inflight == 0 && reservations_live(&p->held, sasp_now_ns()) == 0) {
            *pp = p->next;
            free(p);
        }
        return;
    }
}

static const struct sockaddr *client_addr(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return ci ? ci->client_addr : NULL;
}

/* The key of the request's client: the TCP peer, or the address X-Forwarded-For gives when the peer is
 * a trusted proxy (forwarded.h). */
static uint64_t client_key(struct MHD_Connection *c)
{
    unsigned char b[16];
    forwarded_client(c, client_addr(c), b);
    return bytes_key(b);
}

uint64_t guard_client_id(struct MHD_Connection *c) { return client_key(c); }

/* --- connection limits and the header deadline --- */

enum MHD_Result guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)cls;
    (void)addrlen;
    uint64_t key = addr_key(addr);
    int64_t now = sasp_now_ns();
    enum MHD_Result ok = MHD_YES;
    pthread_mutex_lock(&g.mu);
    /* a trusted proxy carries many clients: only --max-connections holds for it */
    peer *p = g.o->max_conn_per_ip > 0 && !forwarded_trusted(addr) ? peer_get(key, 1) : NULL;
    if (g.o->max_connections > 0 && g.open + reservations_live(&g.held, now) >= g.o->max_connections) {
        g.refused_total++;
        ok = MHD_NO;
    } else if (p && p->conns + reservations_live(&p->held, now) >= g.o->max_conn_per_ip) {
        g.refused_ip++;
        ok = MHD_NO;
    } else {
        reserve(&g.held, now);
        if (p) reserve(&p->held, now);
    }
    if (p && ok == MHD_NO) peer_trim(key);
    pthread_mutex_unlock(&g.mu);
    return ok;
}

static void conn_started(struct MHD_Connection *c, void **socket_context)
{
    gconn *k = calloc(1, sizeof *k);
    *socket_context = k;
    if (!k) return;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    k->fd = ci ? ci->connect_fd : -1;
    k->peer_key = addr_key(client_addr(c));
    k->armed = sasp_now_ns();
    pthread_mutex_lock(&g.mu);
    peer *p = peer_get(k->peer_key, 1);
    if (p) {
        p->conns++;
        claim(&p->held);
    } else {
        k->peer_key = 0;
    }
    claim(&g.held);
    k->next = g.conns;
    if (g.conns) g.conns->prev = k;
    g.conns = k;
    if (++g.open > g.peak) g.peak = g.open;
    pthread_mutex_unlock(&g.mu);
}

static void conn_closed(gconn *k)
{
    pthread_mutex_lock(&g.mu);
    if (k->peer_key) {
        peer *p = peer_get(k->peer_key, 0);
        if (p) p->conns--;
        peer_trim(k->peer_key);
    }
    if (k->prev) k->prev->next = k->next;
    else g.conns = k->next;
    if (k->next) k->next->prev = k->prev;
    g.open--;
    pthread_mutex_unlock(&g.mu);
    free(k);
}

void guard_notify(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) conn_started(c, socket_context);
    else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        conn_closed(*socket_context);
        *socket_context = NULL;
    }
}

static void arm(struct MHD_Connection *c, int64_t t)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    gconn *k = ci ? ci->socket_context : NULL;
    if (!k) return;
    pthread_mutex_lock(&g.mu);
    k->armed = t;
    pthread_mutex_unlock(&g.mu);
}

void guard_headers_done(struct MHD_Connection *c) { arm(c, 0); }
void guard_request_done(struct MHD_Connection *c) { arm(c, sasp_now_ns()); }

/* The header deadline: a connection that has not finished its request's headers in time is shut
 * down (libmicrohttpd then sees the end of the stream and closes it). Checked 4 times a second. */
static void *reaper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g.mu);
    while (!g.quit) {
        int64_t now = sasp_now_ns(), limit = (int64_t)g.o->header_timeout * 1000000000LL;
        for (gconn *k = g.conns; k; k = k->next) {
            if (!k->armed || k->reaped || now - k->armed < limit || k->fd < 0) continue;
            shutdown(k->fd, SHUT_RDWR);
            k->reaped = 1;
            g.header_timeouts++;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250000000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&g.cv, &g.mu, &ts);
    }
    pthread_mutex_unlock(&g.mu);
    return NULL;
}

int guard_start(const guard_options *o)
{
    g.o = o;
    g.quit = 0;
    if (forwarded_init(o->trusted_proxies, o->n_trusted_proxies) != 0) return -1;
    if (o->header_timeout <= 0) return 0;
    if (pthread_create(&g.thread, NULL, reaper_main, NULL) != 0) {
        fprintf(stderr, "sasp-server: cannot start the header-deadline thread\n");
        return -1;
    }
    g.started = 1;
    return 0;
}

void guard_stop(void)
{
    if (!g.started) return;
    pthread_mutex_lock(&g.mu);
    g.quit = 1;
    pthread_cond_signal(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pthread_join(g.thread, NULL);
    g.started = 0;
}

/* --- Host and Origin --- */

/* The host part of a Host header (or of an origin after its scheme) into out, lower case, without
 * the port, the brackets of an IPv6 literal or a trailing dot. 0, or -1 when malformed. */
static int host_part(const char *s, char *out, size_t size)
{
    const char *end;
    if (*s == '[') {
        end = strchr(++s, ']');
        if (!end || (end[1] && end[1] != ':')) return -1;
    } else {
        end = strchr(s, ':');
        if (!end) end = s + strlen(s);
    }
    size_t n = (size_t)(end - s);
    if (n == 0 || n >= size) return -1;
    for (size_t i = 0; i < n; i++) out[i] = (char)tolower((unsigned char)s[i]);
    if (out[n - 1] == '.') n--;
    out[n] = 0;
    return n ? 0 : -1;
}

/* Whether name (lower case) is an IP literal that is a loopback address or the connection's own. */
static int own_address(struct MHD_Connection *c, const char *name)
{
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    const struct sockaddr *sa;
    if (inet_pton(AF_INET, name, &a4.sin_addr) == 1) sa = (const struct sockaddr *)&a4;
    else if (inet_pton(AF_INET6, name, &a6.sin6_addr) == 1) sa = (const struct sockaddr *)&a6;
    else return 0;
    unsigned char b[16], mine[16];
    forwarded_addr_bytes(sa, b);
    static const unsigned char v6_loop[16] = {[15] = 1}, v4_mapped[12] = {[10] = 0xff, [11] = 0xff};
    if (!memcmp(b, v6_loop, 16) || (!memcmp(b, v4_mapped, 12) && b[12] == 127)) return 1;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct sockaddr_storage local;
    socklen_t len = sizeof local;
    if (!ci || getsockname(ci->connect_fd, (struct sockaddr *)&local, &len) != 0) return 0;
    forwarded_addr_bytes((const struct sockaddr *)&local, mine);
    return !memcmp(b, mine, 16);
}

/* name against a list entry: equal, or "*", or "*.suffix" and name ends in ".suffix". */
static int name_matches(const char *name, const char *pat)
{
    if (!strcmp(pat, "*") || !strcasecmp(name, pat)) return 1;
    if (pat[0] != '*' || pat[1] != '.') return 0;
    size_t n = strlen(name), m = strlen(pat + 1);
    return n > m && !strcasecmp(name + n - m, pat + 1);
}

int guard_host_ok(struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    if (!h) return 1;
    char name[256];
    if (host_part(h, name, sizeof name) != 0) return 0;
    size_t n = strlen(name);
    if (!strcmp(name, "localhost") || (n > 10 && !strcmp(name + n - 10, ".localhost"))) return 1;
    if (own_address(c, name)) return 1;
    if (g.o->listen_host && name_matches(name, g.o->listen_host)) return 1;
    for (int i = 0; i < g.o->n_hosts; i++)
        if (name_matches(name, g.o->hosts[i])) return 1;
    return 0;
}

/* origin ("scheme://host[:port]") against a pattern: equal, or "scheme://host:*" (any port, or none). */
static int origin_matches(const char *origin, const char *pat)
{
    size_t m = strlen(pat);
    if (m > 2 && !strcmp(pat + m - 2, ":*")) {
        if (strncasecmp(origin, pat, m - 2) != 0) return 0;
        const char *p = origin + m - 2;
        if (!*p) return 1;
        if (*p++ != ':' || !*p) return 0;
        while (isdigit((unsigned char)*p)) p++;
        return *p == 0;
    }
    return !strcasecmp(origin, pat);
}

static const char *const loopback_origins[] = {"http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"};

int guard_origin(struct MHD_Connection *c, const char **acao)
{
    const char *o = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!o) return 0;
    *acao = o;
    for (int i = 0; i < g.o->n_origins; i++) {
        if (!strcmp(g.o->origins[i], "*")) {
            *acao = "*";
            return 1;
        }
        if (origin_matches(o, g.o->origins[i])) return 1;
    }
    for (size_t i = 0; i < sizeof loopback_origins / sizeof *loopback_origins; i++)
        if (origin_matches(o, loopback_origins[i])) return 1;
    /* the server's own page: the origin is this very Host (checked by guard_host_ok) */
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    const char *rest = !strncasecmp(o, "http://", 7) ? o + 7 : !strncasecmp(o, "https://", 8) ? o + 8
                                                                                              : NULL;
    if (h && rest && !strcasecmp(rest, h)) return 1;
    return -1;
}

/* --- requests in flight --- */

int guard_inflight_take(struct MHD_Connection *c, const char *api_key, guard_ticket *t)
{
    t->client = client_key(c);
    t->key = api_key ? fnv(api_key, strlen(api_key), 0x84222325cbf29ce4ULL) & ~1ULL : 0;
    if (t->key == 0 && api_key) t->key = 2;
    int rc = 0;
    pthread_mutex_lock(&g.mu);
    peer *pc = peer_get(t->client, 1), *pk = t->key ? peer_get(t->key, 1) : NULL;
    if (!pc || (t->key && !pk)) rc = 1; /* out of memory: refuse as busy */
    else if (g.o->max_inflight_client > 0 && pc->inflight >= g.o->max_inflight_client) rc = 1;
    else if (pk && g.o->max_inflight_key > 0 && pk->inflight >= g.o->max_inflight_key) rc = 2;
    if (rc == 0) {
        pc->inflight++;
        if (pk) pk->inflight++;
    } else {
        if (rc == 1) g.refused_inflight_client++;
        else g.refused_inflight_key++;
        peer_trim(t->client);
        if (t->key) peer_trim(t->key);
        t->client = t->key = 0;
    }
    pthread_mutex_unlock(&g.mu);
    return rc;
}

void guard_inflight_put(guard_ticket *t)
{
    if (!t->client) return;
    pthread_mutex_lock(&g.mu);
    uint64_t keys[2] = {t->client, t->key};
    for (int i = 0; i < 2; i++) {
        peer *p = keys[i] ? peer_get(keys[i], 0) : NULL;
        if (!p) continue;
        p->inflight--;
        peer_trim(keys[i]);
    }
    pthread_mutex_unlock(&g.mu);
    t->client = t->key = 0;
}

/* --- counters --- */

void guard_count_refusal(const char *what)
{
    pthread_mutex_lock(&g.mu);
    if (!strcmp(what, "host")) g.refused_host++;
    else if (!strcmp(what, "origin")) g.refused_origin++;
    pthread_mutex_unlock(&g.mu);
}

void guard_metrics_text(sasp_buf *b)
{
    pthread_mutex_lock(&g.mu);
    sasp_buf_printf(b,
                    "# HELP sasp_connections_open HTTP connections open now.\n# TYPE sasp_connections_open gauge\n"
                    "sasp_connections_open %d\n"
                    "# HELP sasp_connections_open_peak Most HTTP connections open at once since start.\n"
                    "# TYPE sasp_connections_open_peak gauge\nsasp_connections_open_peak %d\n"
                    "# HELP sasp_connections_refused_total Connections closed at accept, by the limit they hit.\n"
                    "# TYPE sasp_connections_refused_total counter\n"
                    "sasp_connections_refused_total{limit=\"per_ip\"} %llu\n"
                    "sasp_connections_refused_total{limit=\"total\"} %llu\n"
                    "# HELP sasp_connections_header_timeout_total Connections closed for not sending their request "
                    "headers within --header-timeout.\n"
                    "# TYPE sasp_connections_header_timeout_total counter\nsasp_connections_header_timeout_total %llu\n"
                    "# HELP sasp_requests_refused_total Requests refused before they ran, by reason.\n"
                    "# TYPE sasp_requests_refused_total counter\n"
                    "sasp_requests_refused_total{reason=\"host\"} %llu\n"
                    "sasp_requests_refused_total{reason=\"origin\"} %llu\n"
                    "sasp_requests_refused_total{reason=\"inflight_per_client\"} %llu\n"
                    "sasp_requests_refused_total{reason=\"inflight_per_key\"} %llu\n",
                    g.open, g.peak, (unsigned long long)g.refused_ip, (unsigned long long)g.refused_total,
                    (unsigned long long)g.header_timeouts, (unsigned long long)g.refused_host,
                    (unsigned long long)g.refused_origin, (unsigned long long)g.refused_inflight_client,
                    (unsigned long long)g.refused_inflight_key);
    pthread_mutex_unlock(&g.mu);
}
