/* conn.c: one request while it is answered (conn.h): made at the access handler's first call, freed
 * with its last reference; its X-Request-Id; whether its client is still there. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "http/conn.h"

const char *conn_body(const conn *k) { return k->req.body.data ? k->req.body.data : ""; }

void conn_answered(conn *k)
{
    void (*answered)(void *hold) = k->run.answered;
    k->run.answered = NULL; /* once */
    if (answered) answered(k->run.hold);
}

void conn_release(conn *k)
{
    if (atomic_fetch_sub(&k->refs, 1) != 1) return;
    guard_inflight_put(&k->run.ticket);
    if (k->wait.have_ev) sasp_event_clear(&k->wait.ev);
    if (k->run.job) sasp_job_release(k->run.job);
    if (k->run.free_work) k->run.free_work(k->run.work);
    api_out_free(k->run.out);
    /* a request that ends without an answer (an error, a client gone) is answered here */
    conn_answered(k);
    if (k->run.unhold) k->run.unhold(k->run.hold); /* last: the answer and the job may use what it holds */
    free(k->stream.pend);
    sasp_buf_free(&k->req.body);
    free(k->req.path);
    free(k);
}

/* The client's X-Request-Id when it is short and printable, else a fresh random one. */
static void set_request_id(struct MHD_Connection *c, conn *k)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
    int ok = h && h[0] && strlen(h) < sizeof k->req.id;
    for (const char *p = h; ok && *p; p++) ok = *p > 0x20 && *p < 0x7f;
    if (ok) {
        snprintf(k->req.id, sizeof k->req.id, "%s", h);
        return;
    }
    uint64_t r[2];
    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) r[0] = (uint64_t)sasp_now_ns(), r[1] = (uint64_t)(uintptr_t)k;
    snprintf(k->req.id, sizeof k->req.id, "req-%016llx%016llx", (unsigned long long)r[0], (unsigned long long)r[1]);
}

conn *conn_new(struct MHD_Connection *c, const char *url, const char *method)
{
    conn *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    atomic_init(&k->refs, 1);
    k->req.t0 = sasp_now_ns();
    k->req.counter = -1;
    snprintf(k->req.method, sizeof k->req.method, "%s", method);
    k->req.path = strdup(url);
    if (!k->req.path) {
        free(k);
        return NULL;
    }
    set_request_id(c, k);
    return k;
}

int conn_client_gone(struct MHD_Connection *c)
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
