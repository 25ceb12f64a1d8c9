/* scheduler.h: the engine loop of sasp-server, continuous batching over --parallel slots.
 *
 * HTTP threads never run the model. They hand a job (one or more sequences: a prompt each and the
 * generation parameters) to sasp_sched_submit and read its events with sasp_job_next. One engine
 * thread owns the model: every step it gathers one decode token from every generating slot and prompt
 * chunks (up to `chunk` tokens in all) from the slots still prefilling, runs them in one sasp_forward
 * call (so the weights are read once per step whatever the number of sequences), samples, decodes
 * text (never splitting a UTF-8 character), holds back text that could begin a stop string, and posts
 * events to the jobs. A job cancelled by its client (disconnect, Stop button) loses its slot at the
 * start of the next step. Jobs beyond the free slots wait in a FIFO queue of at most max_queue
 * sequences; beyond that sasp_sched_submit refuses them (the server answers 429). */
#ifndef SASP_SCHEDULER_H
#define SASP_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>
#include "model.h"
#include "sampler.h"
#include "tokenizer.h"

#define SASP_MAX_TOP_LOGPROBS 20
#define SASP_MAX_STOPS 16

/* What a sequence generates, and how. */
typedef struct sasp_gen_params {
    sasp_sampling sampling;
    int max_tokens;          /* >= 1; generation also ends when the context is full */
    char *stop[SASP_MAX_STOPS]; /* stop strings (owned by whoever fills this; copied on submit) */
    int n_stop;
    int logprobs;            /* nonzero: report the chosen token's logprob */
    int top_logprobs;        /* and this many alternatives (0 .. SASP_MAX_TOP_LOGPROBS) */
    int ignore_eos;          /* nonzero: the end-of-sequence token does not stop generation */
    int prompt_logprobs;     /* nonzero: also score the prompt (echo with logprobs), see sasp_event */
} sasp_gen_params;

typedef struct sasp_token_info {
    int id;
    float logprob;
    int n_top;
    sasp_logprob top[SASP_MAX_TOP_LOGPROBS];
} sasp_token_info;

/* One event of one sequence. text is valid UTF-8 and never contains (a piece of) a stop string
 * that was matched. ids are the tokens sampled since the previous event of that sequence (text may
 * lag them while it could still be a stop string's prefix). The last event of a sequence has done set.
 * With prompt_logprobs, one event comes first, when the prompt has been read: prompt_info set, ids the
 * prompt's n_ids tokens, and prompt_info[k] the log-probability (log-softmax of the model's logits,
 * no penalties) and alternatives of prompt token k + 1 given the tokens before it (n_ids - 1 entries). */
typedef struct sasp_event {
    int index;               /* the sequence, 0 .. n_seq-1 */
    char *text;
    size_t len;
    int *ids;
    sasp_token_info *info;   /* [n_ids] when logprobs were asked, else NULL */
    sasp_token_info *prompt_info; /* the prompt event only: [n_ids - 1] */
    int n_ids;
    int done;
    const char *finish_reason; /* when done: "stop" or "length" (static string) */
    int error;               /* when done: nonzero if the engine failed (message in text) */
    int prompt_tokens, completion_tokens;
    int64_t total_ns, prompt_ns, eval_ns; /* submit to end; prefill; first token to end */
} sasp_event;

void sasp_event_clear(sasp_event *ev);

typedef struct sasp_job sasp_job;

/* A job of n_seq sequences; reference-counted (the creator holds one reference). */
sasp_job *sasp_job_new(int n_seq);
/* Set sequence i: its prompt (n >= 1 token ids, copied) and parameters (stop strings copied). */
int sasp_job_set(sasp_job *job, int i, const int *prompt, int n, const sasp_gen_params *p);
/* Wait up to timeout_ms for the next event. Returns 1 with *ev filled (clear it after use), 0 on
 * timeout, -1 when every sequence has delivered its last event. */
int sasp_job_next(sasp_job *job, sasp_event *ev, int timeout_ms);
/* The client is gone: free the job's slots at the next step. */
void sasp_job_cancel(sasp_job *job);
void sasp_job_release(sasp_job *job);

/* Latency histograms (Prometheus buckets, seconds). */
#define SASP_HIST_BUCKETS 12
typedef struct sasp_hist {
    double le[SASP_HIST_BUCKETS];     /* upper bounds */
    uint64_t count[SASP_HIST_BUCKETS]; /* per bucket (not cumulative) */
    uint64_t n;                        /* all observations (the +Inf bucket) */
    double sum;
} sasp_hist;

typedef struct sasp_sched_stats {
    int n_slots, active, queued;
    uint64_t prompt_tokens, generated_tokens, cancelled, sequences_done, steps;
    double forward_seconds; /* time spent inside sasp_forward */
    sasp_hist ttft, token_latency;
} sasp_sched_stats;

typedef struct sasp_slot_info {
    int id;
    const char *state; /* "idle", "prefill", "generating" */
    int n_prompt, n_past, n_generated;
} sasp_slot_info;

typedef struct sasp_sched sasp_sched;

/* n_slots sequences at once, each with a cache of n_ctx positions (<= 0 or beyond the model's
 * max_seq_len: max_seq_len); at most max_queue waiting; at most chunk prompt tokens per step. Starts
 * the engine thread. NULL + err on failure. */
sasp_sched *sasp_sched_new(sasp_model *m, const sasp_tokenizer *tok, int n_slots, int n_ctx,
                           int max_queue, int chunk, char *err, size_t errlen);
/* Sleep ms milliseconds after every engine step (0 = never): slows generation down on purpose, for
 * tests of disconnects and queueing and for demonstrating streaming with a tiny model. */
void sasp_sched_set_step_delay(sasp_sched *s, int ms);
/* 0 on success (the scheduler takes a reference); -1 when the job's sequences do not fit in the free
 * slots and queue places left (the server answers 429); -2 when shutting down; -3 when the job has
 * more sequences than slots and queue places together (it never could fit). */
int sasp_sched_submit(sasp_sched *s, sasp_job *job);
/* Finish every open sequence at the engine's next step (finish_reason "stop": a running one with its
 * text so far flushed, a queued one empty) and refuse new jobs from now on. */
void sasp_sched_shutdown(sasp_sched *s);
/* Shut down as sasp_sched_shutdown does, wait until the engine has ended every open sequence, stop its
 * thread and free everything. Jobs still referenced by their readers stay valid until released. */
void sasp_sched_free(sasp_sched *s);

void sasp_sched_get_stats(sasp_sched *s, sasp_sched_stats *out);
/* Fill up to max slot descriptions (a snapshot taken after every engine step); returns the number of
 * slots. */
int sasp_sched_slots(sasp_sched *s, sasp_slot_info *out, int max);

/* Stop-string scan over not-yet-released text buf[0..n). Returns 1 when a stop string occurs, with
 * *cut at its first byte (the earliest occurrence of any); otherwise 0 with *cut = the length that can
 * be released now, holding back the longest tail that is a proper prefix of some stop string. */
int sasp_stop_scan(const char *buf, size_t n, char *const *stops, int n_stops, size_t *cut);

#endif
