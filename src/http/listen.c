/* listen.c: sasp-server's HTTP daemon (listen.h). */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "http/listen.h"
#include "http/reply.h"
#include "http/wait.h"

static const http_options *g_o;
static char *g_tls_key, *g_tls_cert; /* the PEM texts of --ssl-key-file and --ssl-cert-file */

/* The current UTC time as "2026-11-23T01:49:12Z". */
static void utc_stamp(char *buf, size_t size)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)cls;
    (void)version;
    conn *k = *con_cls;
    if (!k) {
        k = conn_new(c, url, method);
        if (!k) return MHD_NO;
        *con_cls = k;
        guard_headers_done(c);
        /* A body over the limit is read and dropped, then answered 413 (answering before reading it
         * would reset the connection under the client's feet); a huge one is refused at once. */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
        if (declared > g_o->max_body) k->req.too_big = 1;
        if (declared > g_o->max_body + (64u << 20)) {
            api_error e;
            api_error_set(&e, 413, "invalid_request_error", "request_too_large", NULL,
                          "the request body is larger than the limit of %zu bytes", g_o->max_body);
            return reply_error(c, k, &e, "Connection", "close");
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!k->req.too_big && k->req.body.len + *upload_size > g_o->max_body) {
            k->req.too_big = 1;
            sasp_buf_free(&k->req.body);
        }
        if (!k->req.too_big && sasp_buf_append(&k->req.body, upload, *upload_size) != 0) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    if (k->res.status) return MHD_YES; /* already answered (413 at the first call) */
    if (k->wait.after_ready) {         /* resumed from wait_suspend_until: ready, or the client left */
        k->wait.after_ready = 0;
        wait_count_answer(-1);
        return k->wait.resume(c, k);
    }
    if (k->wait.whole) return k->wait.resume(c, k); /* resumed: the job has ended, or the client left */
    return route_dispatch(c, k, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    conn *k = *con_cls;
    guard_request_done(c);
    if (!k) return;
    *con_cls = NULL;
    if (k->wait.whole) wait_count_answer(-1);
    double ms = (double)(sasp_now_ns() - k->req.t0) * 1e-6;
    int status = k->res.status ? k->res.status : 500;
    route_count(k, status);
    /* the answer's usage; a cancelled one has none yet: then what was read and sent */
    int prompt_tokens = k->run.prompt_tokens, completion_tokens = k->run.sent_tokens, p = 0, g = 0;
    if (k->run.out) api_out_usage(k->run.out, &p, &g);
    if (p > prompt_tokens) prompt_tokens = p;
    if (g > completion_tokens) completion_tokens = g;
    char stamp[32];
    utc_stamp(stamp, sizeof stamp);
    fprintf(stderr, "%s %s %s %d tokens=%d+%d %.1fms%s\n", stamp, k->req.method, k->req.path ? k->req.path : "?", status,
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

/* The whole file at path (what of it is text: a PEM file), malloc'd; NULL after saying why not. */
static char *read_pem(const char *option, const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (size_t got = 1; f && got > 0; n += got) {
        if (n + 4096 + 1 > cap) {
            char *b = realloc(buf, cap = 2 * cap + 4096 + 1);
            if (!b || cap > (1u << 20)) break; /* no PEM key or chain is near 1 MiB */
            buf = b;
        }
        got = fread(buf + n, 1, cap - n - 1, f);
    }
    int err = f ? ferror(f) || !feof(f) : errno;
    if (f) fclose(f);
    if (!f || err || !buf || !strstr((buf[n] = 0, buf), "-----BEGIN ")) {
        fprintf(stderr, "sasp-server: %s %s: %s\n", option, path,
                !f ? strerror(err) : err || !buf ? "cannot read it whole"
                                                 : "not a PEM file (no -----BEGIN line)");
        free(buf);
        return NULL;
    }
    return buf;
}

/* The daemon's TLS options (tls[] ends with MHD_OPTION_END; without a key: nothing else), the PEM texts
 * in *key and *cert (kept while the daemon lives: libmicrohttpd holds them by pointer); 0, or -1 after
 * saying why not. */
static int tls_options(const http_options *o, struct MHD_OptionItem tls[3], char **key, char **cert)
{
    *key = *cert = NULL;
    tls[0] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    if (!o->tls_key_file && !o->tls_cert_file) return 0;
    if (!o->tls_key_file || !o->tls_cert_file) {
        fprintf(stderr, "sasp-server: --ssl-key-file and --ssl-cert-file go together: give both, or neither\n");
        return -1;
    }
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        fprintf(stderr, "sasp-server: this libmicrohttpd was built without TLS (GnuTLS): --ssl-key-file cannot be "
                        "served; put a TLS proxy in front instead (docs/deploy.md)\n");
        return -1;
    }
    if (!(*key = read_pem("--ssl-key-file", o->tls_key_file)) || !(*cert = read_pem("--ssl-cert-file", o->tls_cert_file))) {
        free(*key);
        return -1;
    }
    tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, *key};
    tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, *cert};
    tls[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    return 0;
}

struct MHD_Daemon *listen_start(const http_options *o, int *port, int *ipv6)
{
    if (route_init(o) != 0) return NULL;
    struct MHD_OptionItem tls[3];
    if (tls_options(o, tls, &g_tls_key, &g_tls_cert) != 0) return NULL;
    const char *key = g_tls_key;
    g_o = o;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", o->port);
    int gai = getaddrinfo(o->host, portstr, &hints, &ai);
    if (gai) {
        fprintf(stderr, "sasp-server: cannot resolve --host %s: %s\n", o->host, gai_strerror(gai));
        return NULL;
    }
    /* epoll threads (a connection costs no thread and no select() slot), requests suspended while they
     * wait on the engine; the guard's accept policy enforces the connection limits (MHD's own limit,
     * a little above, never decides) */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
                     (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0) | (key ? MHD_USE_TLS : 0);
    struct MHD_Daemon *d = MHD_start_daemon(flags, (uint16_t)o->port, guard_accept, NULL, on_request, NULL,
                                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, /* first, or MHD logs once itself */
                                            MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED,
                                            on_completed, NULL, MHD_OPTION_NOTIFY_CONNECTION, guard_notify, NULL,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->timeout,
                                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o->threads,
                                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->guard->max_connections + 64,
                                            MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_ARRAY, tls,
                                            MHD_OPTION_END);
    int family = ai->ai_family;
    freeaddrinfo(ai);
    if (!d && key) {
        fprintf(stderr, "sasp-server: cannot serve TLS on %s port %d with --ssl-key-file %s and --ssl-cert-file %s "
                        "(is the key the certificate's, both PEM? the port in use?)\n",
                o->host, o->port, o->tls_key_file, o->tls_cert_file);
        return NULL;
    }
    if (!d) {
        fprintf(stderr, "sasp-server: cannot listen on %s port %d (in use, or not an address of this machine?)\n",
                o->host, o->port);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    *port = di ? di->port : o->port;
    *ipv6 = family == AF_INET6;
    return d;
}
