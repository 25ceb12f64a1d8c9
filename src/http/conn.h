/* conn.h: one HTTP request of sasp-server while it is answered, from the access handler's first call
 * (listen.c) to the completion callback: what was asked, the job it runs on the engine and the answer
 * written from its events, the stream being sent, and its part in the waiter of suspended
 * connections (wait.c). Reference-counted: the completion callback holds one reference, a stream's
 * content reader another while it lives. */
#ifndef SASP_HTTP_CONN_H
#define SASP_HTTP_CONN_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdint.h>
#include "api/api.h"
#include "base/util.h"
#include "engine/scheduler.h"
#include "http/guard.h"

struct http_route;
typedef struct conn conn;

/* What a handler that suspends a non-streamed answer (wait.c, suspend_whole) leaves for the waiter and
 * the access handler: where each event of its job goes, and what answers when the waiter resumed the
 * connection (the job ended, or the client left). */
typedef void (*conn_take_fn)(conn *k, sasp_event *ev);
typedef enum MHD_Result (*conn_resume_fn)(struct MHD_Connection *c, conn *k);

struct conn {
    atomic_int refs;        /* the completion callback, and the stream reader while it lives */
    char method[16];
    char *path;
    const struct http_route *route; /* the route it took (route.c), or NULL */
    int counter;            /* its endpoint among /metrics' request counters (route.c); -1: "other" */
    int64_t t0;
    int status;
    char request_id[72];    /* X-Request-Id: the client's, or one made here */
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
    int prompt_tokens;      /* embeddings: for the log line */
    char ignored_options[256]; /* Ollama options accepted without effect: X-Sasp-Ignored-Options */
    int prompt_tokens_dropped; /* prompt tokens cut to fit the context: X-Sasp-Prompt-Tokens-Dropped */
    const char *acao;       /* Access-Control-Allow-Origin to answer with (an allowed Origin), or NULL */
    guard_ticket ticket;    /* its place in the in-flight limits (guard.h) */
    int sent_tokens;        /* completion tokens handed to the client: the log line of a cancelled stream */
    /* suspended while the job has nothing new (wait.c); the waiter's fields */
    int whole;              /* a non-streamed answer: the waiter reads every event into out */
    int gone;               /* the client left, or the server stops: end at once */
    int wait_end;           /* the job has delivered its last event */
    int have_ev;            /* ev holds an event the waiter took for the stream */
    int wgot;               /* its job has sent an event: it runs, the waiter's best one to wait on */
    sasp_event ev;
    int64_t wchecked;       /* when the waiter last looked at the socket */
    struct conn *wnext;
    conn_take_fn take;      /* a non-streamed answer: where the waiter puts each event */
    conn_resume_fn resume;  /* and who answers when it resumes the connection */
    void *work;             /* a handler's own state (embeddings: server/embed.c), or NULL */
    void (*free_work)(void *work); /* frees it with the conn */
};

/* The conn of a request at the access handler's first call (with its X-Request-Id), or NULL when out
 * of memory. */
conn *conn_new(struct MHD_Connection *c, const char *url, const char *method);
/* Give up one reference; the last one frees k and what it holds (its job, answer, in-flight place). */
void conn_release(conn *k);
/* The request body as text ("" when there is none). */
const char *body_text(const conn *k);
/* Whether the client has closed its end (checked while it waits). */
int client_gone(struct MHD_Connection *c);

#endif
