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

/* What a handler that suspends a non-streamed answer (wait.c, wait_suspend_whole) leaves for the waiter and
 * the access handler (conn.wait): where each event of its job goes, and what answers when the waiter
 * resumed the connection (the job ended, or the client left). */
typedef void (*conn_take_fn)(conn *k, sasp_event *ev);
typedef enum MHD_Result (*conn_resume_fn)(struct MHD_Connection *c, conn *k);

struct conn {
    atomic_int refs;           /* the completion callback, and the stream reader while it lives */
    struct MHD_Connection *mc; /* its connection, once it streams or waits */
    struct {                   /* the request */
        char method[16];
        char *path;
        char id[72];                    /* X-Request-Id: the client's, or one made here */
        sasp_buf body;                  /* the request body, as far as it fits --max-body */
        int too_big;                    /* the body is larger than --max-body */
        int64_t t0;                     /* when it came */
        const struct http_route *route; /* the route it took (route.c), or NULL */
        int counter;                    /* its endpoint among /metrics' request counters (route.c); -1: "other" */
    } req;
    struct {                       /* the answer: its status, and what the headers every answer carries say */
        int status;                /* 0 until it is queued */
        const char *acao;          /* Access-Control-Allow-Origin to answer with (an allowed Origin), or NULL */
        char ignored_options[256]; /* options accepted without effect: X-Sasp-Ignored-Options */
        int prompt_tokens_dropped; /* prompt tokens cut to fit the context: X-Sasp-Prompt-Tokens-Dropped */
    } res;
    struct { /* the work it runs on the engine */
        sasp_job *job;
        api_out *out;                  /* the answer written from the job's events */
        guard_ticket ticket;           /* its place in the in-flight limits (guard.h) */
        int prompt_tokens;             /* for the log line */
        int sent_tokens;               /* completion tokens handed to the client: the log line of a cancelled stream */
        void *work;                    /* a handler's own state (embeddings: server/embed.c), or NULL */
        void (*free_work)(void *work); /* frees it with the conn */
        void *hold;                    /* what the request holds while it lives (the model it runs on: server/models.c), */
        void (*unhold)(void *hold);    /* given back with the conn, after everything above is freed */
        void (*answered)(void *hold);  /* told once that the answer is complete (conn_answered), then NULL */
    } run;
    struct {             /* a stream, sent by its content reader (server/generate.c) */
        char *pend;      /* bytes to send */
        size_t len, off; /* their length, and how many are sent */
        int ended;       /* the job delivered its last event: pend holds the stream's last bytes */
        int64_t checked; /* when conn_client_gone last looked */
    } stream;
    struct {         /* suspended while the job has nothing new: the waiter's (wait.c) */
        int whole;   /* a non-streamed answer: the waiter hands every event to take */
        int gone;    /* the client left, or the server stops: end at once */
        int end;     /* the job has delivered its last event */
        int have_ev; /* ev holds an event the waiter took for the stream */
        int got;     /* its job has sent an event: it runs, the waiter's best one to wait on */
        sasp_event ev;
        int64_t checked;              /* when the waiter last looked at the socket */
        conn *next;                   /* the waiter's list */
        conn_take_fn take;            /* a non-streamed answer: where the waiter puts each event */
        conn_resume_fn resume;        /* and who answers when it resumes the connection */
        int (*ready)(const void *on); /* wait_suspend_until: waits, without a job, until ready(on) */
        const void *on;
        int after_ready; /* resumed from wait_suspend_until: the access handler calls resume */
    } wait;
};

/* The conn of a request at the access handler's first call (with its X-Request-Id), or NULL when out
 * of memory. */
conn *conn_new(struct MHD_Connection *c, const char *url, const char *method);
/* Give up one reference; the last one frees k and what it holds (its job, answer, in-flight place). */
void conn_release(conn *k);
/* The answer is complete: queued whole (reply_queue), or a stream's last bytes made. What the request
 * holds is told once (run.answered), at the latest when the conn is freed: the client may have the
 * answer before the conn goes, and a model whose requests are answered is no longer in use for the
 * choice of the one to unload (server/loader.c). */
void conn_answered(conn *k);
/* The request body as text ("" when there is none). */
const char *conn_body(const conn *k);
/* Whether the client has closed its end (checked while it waits). */
int conn_client_gone(struct MHD_Connection *c);

#endif
