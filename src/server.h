/* server.h: what the files of sasp-server share (server.c: HTTP, routes, generation, main;
 * server_ollama.c: Ollama's model endpoints; server_embed.c: embeddings; server_slots.c: /props and
 * /slots; server_models.c: the models; server_anthropic.c: /v1/messages/count_tokens):
 * one request being answered and the ways to answer it. Errors are written in the shape of the
 * path's API: Ollama's {"error": "..."} under /api/, Anthropic's under /v1/messages, OpenAI's
 * elsewhere. */
#ifndef SASP_SERVER_H
#define SASP_SERVER_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdint.h>
#include "api.h"
#include "http_guard.h"
#include "scheduler.h"
#include "util.h"

typedef struct conn {
    atomic_int refs;        /* the completion callback, and the stream reader while it lives */
    char method[16];
    char *path;
    int route;              /* server.c's route id */
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
    guard_ticket ticket;    /* its place in the in-flight limits (http_guard.h) */
    int sent_tokens;        /* completion tokens handed to the client: the log line of a cancelled stream */
    /* suspended while the job has nothing new (server_wait.c); the waiter's fields */
    int whole;              /* a non-streamed answer: the waiter reads every event into out */
    int gone;               /* the client left, or the server stops: end at once */
    int wait_end;           /* the job has delivered its last event */
    int have_ev;            /* ev holds an event the waiter took for the stream */
    int wgot;               /* its job has sent an event: it runs, the waiter's best one to wait on */
    sasp_event ev;
    int64_t wchecked;       /* when the waiter last looked at the socket */
    struct conn *wnext;
    struct embed_work *emb; /* an embeddings request (server_embed.c), or NULL */
} conn;

const char *body_text(const conn *k);
/* Queue r as the answer with status (the headers every answer has added) and let it go. */
enum MHD_Result queue_response(struct MHD_Connection *c, conn *k, int status, struct MHD_Response *r);
/* JSON text (malloc'd, taken) with a newline, or j (consumed) so written. */
enum MHD_Result send_json(struct MHD_Connection *c, conn *k, int status, char *json);
enum MHD_Result send_jval(struct MHD_Connection *c, conn *k, int status, json_t *j);
/* e in the path's error shape, with one extra header when hname is given. */
enum MHD_Result send_error(struct MHD_Connection *c, conn *k, const api_error *e, const char *hname, const char *hval);
enum MHD_Result fail(struct MHD_Connection *c, conn *k, int status, const char *type, const char *code,
                     const char *fmt, const char *arg);
/* The answer to a job sasp_sched_submit refused (rc < 0). */
enum MHD_Result send_refusal(struct MHD_Connection *c, conn *k, int rc);
/* Whether the client has closed its end (checked while it waits). */
int client_gone(struct MHD_Connection *c);

/* Connections waiting on the engine (server_wait.c). wait_suspend suspends k->mc (call it from the
 * access handler or the content reader only) until k's job has an event (k->have_ev) or has ended
 * (k->wait_end), or the client left (k->gone); -1, not suspended, once the server stops.
 * wait_resume_all resumes every suspended connection (k->gone set) before the daemon stops. */
int wait_start(void);
int wait_suspend(conn *k);
void wait_resume_all(void);
void wait_stop(void);

/* Ollama's model endpoints (server_ollama.c). */
enum MHD_Result handle_tags(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_ps(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_show(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_version(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_model_management(struct MHD_Connection *c, conn *k);
/* 404 model "X" not found, as Ollama answers. */
enum MHD_Result send_model_not_found(struct MHD_Connection *c, conn *k, const char *name);

/* Anthropic's /v1/messages/count_tokens (server_anthropic.c). */
enum MHD_Result handle_count_tokens(struct MHD_Connection *c, conn *k);

/* llama.cpp's state endpoints, /props and /slots (server_slots.c). */
enum MHD_Result handle_props(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_slots(struct MHD_Connection *c, conn *k);

/* The embeddings endpoints (server_embed.c). */
enum MHD_Result handle_embeddings(struct MHD_Connection *c, conn *k, api_embed_kind kind);
/* An embeddings request's part in the waiter (server_wait.c) and the access handler: take one event of
 * its job; answer (or run the next batch) when the waiter resumed it; free its work with the conn. */
typedef struct embed_work embed_work;
void embed_take(conn *k, sasp_event *ev);
enum MHD_Result embed_resume(struct MHD_Connection *c, conn *k);
void embed_release(conn *k);
/* Count k in the in-flight limits of its client and API key (http_guard.h), or answer 429 into *sent
 * and return -1. */
int take_inflight(struct MHD_Connection *c, conn *k, enum MHD_Result *sent);
/* Suspend k until its job k->job has ended (the waiter reads its events; the access handler is called
 * again then): the first time, and again after a resume that came early. */
enum MHD_Result suspend_whole(struct MHD_Connection *c, conn *k);
enum MHD_Result resuspend_whole(conn *k);

#endif
