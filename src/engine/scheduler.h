/* scheduler.h: the engine loop of sasp-server, continuous batching over --parallel slots.
 *
 * HTTP threads never run the model. They hand a job (one or more sequences: a prompt each and the
 * generation parameters) to sasp_sched_submit and read its events with sasp_job_next. One engine
 * thread owns the model: every step it gathers one decode token from every generating slot and prompt
 * chunks (up to `chunk` tokens in all) from the slots still prefilling, runs them in one sasp_forward
 * call (so the weights are read once per step whatever the number of sequences), samples, decodes
 * text (never splitting a UTF-8 character), holds back text that could begin a stop string, and posts
 * events to the jobs. A job cancelled by its client (disconnect, Stop button) loses its slot at the
 * start of the next step. Jobs beyond the free slots wait in a queue of at most max_queue sequences;
 * beyond that sasp_sched_submit refuses them (the server answers 429). A free slot goes to the waiting
 * sequence whose client (sasp_job_set_client) holds the fewest slots, the earliest among those: one
 * client's many long requests take turns with another's short one instead of all running first.
 *
 * Per sequence, before sampling: the mask of its constraint (constrain.h): token healing of a text
 * prompt (the last token backed off, the output made to start with its bytes, which the text does not
 * repeat) or a JSON document of a schema (ended as soon as it is complete); then its sampler (sampler.h:
 * the request's logit biases, penalties, truncation, the draw). A sequence with max_tokens 0 only reads (or scores) its prompt. Several schedulers
 * (one per model) may share one engine thread (sasp_engine), which steps them in turn.
 *
 * The prompt cache (prompt_cache.h): a slot's KV-cache outlives its sequence; a new sequence takes the
 * free slot whose cached tokens share the longest prefix with its prompt and feeds only the rest
 * (copying a longer prefix from another slot or from the host cache of evicted prefixes when one
 * holds it), unless it asks not to (no_cache) or needs every row (prompt scoring). */
#ifndef SASP_SCHEDULER_H
#define SASP_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>
#include "text/json_schema.h"
#include "model/model.h"
#include "text/sampler.h"
#include "text/tokenizer.h"

#define SASP_MAX_TOP_LOGPROBS 20
#define SASP_MAX_STOPS 16


/* How an embedding pools the final hidden states of its tokens (then L2-normalised). */
enum { SASP_POOL_NONE,
       SASP_POOL_MEAN,
       SASP_POOL_LAST };

/* What a sequence generates, and how. */
typedef struct sasp_gen_params {
    sasp_sampling sampling;
    int max_tokens;             /* >= 1; generation also ends when the context is full. 0 only with
                              * prompt_logprobs: the prompt is scored and nothing generated */
    char *stop[SASP_MAX_STOPS]; /* stop strings (owned by whoever fills this; copied on submit) */
    int n_stop;
    int logprobs;                      /* nonzero: report the chosen token's logprob */
    int top_logprobs;                  /* and this many alternatives (0 .. SASP_MAX_TOP_LOGPROBS) */
    int post_sampling_probs;           /* nonzero: those from the final distribution (sasp_sampler_post_probs),
                              * not the model's (sasp_sampler_logprobs) */
    int ignore_eos;                    /* nonzero: the end-of-sequence token does not stop generation */
    int prompt_logprobs;               /* nonzero: also score the prompt (echo with logprobs), see sasp_event */
    const sasp_json_schema *json;      /* non-NULL: the output is a document of this schema, enforced at
                              * every step (constrain.h); it ends when the document is complete. The
                              * schema must outlive the job (sasp_job_adopt_schema) */
    int token_healing;                 /* back off the prompt's last token and make the output start with its
                              * bytes, which are then not repeated in the text (constrain.h) */
    const sasp_logit_bias *logit_bias; /* n_logit_bias entries (sampler.h), copied by sasp_job_set */
    int n_logit_bias;
    int n_ctx;                /* 0, or fewer positions than the slot has (Ollama's num_ctx) */
    int pooling;              /* SASP_POOL_MEAN / _LAST: an embedding of the prompt, nothing generated */
    int no_cache;             /* nonzero (cache_prompt: false): reuse no cached prefix, feed the whole prompt */
    int n_indent;             /* > 0: end before a generated line (after the first one) that starts with
                              * fewer spaces or tabs (llama.cpp's n_indent); blank lines do not count */
    int64_t t_max_predict_ms; /* > 0: end at a newline once generating has taken longer (llama.cpp's) */
    const char *heal_text;    /* bytes the caller backed off the prompt itself (fill in the middle: the
                              * token before the cursor): the output starts with them and the text does
                              * not repeat them; copied by sasp_job_set */
    size_t heal_len;
    int n_dropped;  /* prompt tokens the caller cut to fit the context: reported, counted */
    int each_token; /* an event for every sampled token, even one whose text is held back
                              * (llama.cpp's streams: a chunk per token) */
} sasp_gen_params;

/* Why a sequence ended (sasp_event.end). */
enum {
    SASP_END_STOPPED, /* cancelled, shut down, or failed */
    SASP_END_EOS,     /* the end-of-text token */
    SASP_END_WORD,    /* a stop string (sasp_event.stop_word) */
    SASP_END_LIMIT,   /* max_tokens, n_indent, t_max_predict_ms, or a constraint that cannot go on */
    SASP_END_CONTEXT, /* the context is full */
    SASP_END_DOCUMENT /* the JSON document is complete */
};

typedef struct sasp_token_info {
    int id;
    int skip; /* token healing: leading bytes of the token that the prompt already holds (the
                              * text of the event leaves them out; the token's logprob entry should too) */
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
    int index; /* the sequence, 0 .. n_seq-1 */
    char *text;
    size_t len;
    int *ids;
    sasp_token_info *info;        /* [n_ids] when logprobs were asked, else NULL */
    sasp_token_info *prompt_info; /* the prompt event only: [n_ids - 1] */
    int n_ids;
    int done;
    const char *finish_reason; /* when done: "stop" or "length" (static string) */
    int error;                 /* when done: nonzero if the engine failed (message in text) */
    int prompt_tokens, completion_tokens;
    int64_t total_ns, prompt_ns, eval_ns; /* submit to end; prefill; first token to end */
    float *embedding;                     /* pooling: the last event carries the L2-normalised embedding */
    int n_embedding;                      /* its dimension (d_model) */
    int end;                              /* when done: SASP_END_* */
    char *stop_word;                      /* SASP_END_WORD: the stop string that matched */
    int cached_tokens;                    /* when done: prompt tokens reused from a cache (not computed) */
    int dropped_tokens;                   /* when done: the caller's n_dropped */
    int slot;                             /* when done: the slot it ran in (-1: none) */
} sasp_event;

void sasp_event_clear(sasp_event *ev);

typedef struct sasp_job sasp_job;

/* A job of n_seq sequences; reference-counted (the creator holds one reference). */
sasp_job *sasp_job_new(int n_seq);
/* Set sequence i: its prompt (n >= 1 token ids, copied) and parameters (stop strings and logit biases
 * copied). */
int sasp_job_set(sasp_job *job, int i, const int *prompt, int n, const sasp_gen_params *p);
/* The job owns schema from now on (its sequences' json point to it) and frees it with itself. */
void sasp_job_adopt_schema(sasp_job *job, sasp_json_schema *schema);
/* Name the client the job comes from (any number; 0, the default, is a client too): free slots are
 * shared out between clients in turn. Call before sasp_sched_submit. */
void sasp_job_set_client(sasp_job *job, uint64_t client);
/* Wait up to timeout_ms for the next event. Returns 1 with *ev filled (clear it after use), 0 on
 * timeout, -1 when every sequence has delivered its last event. */
int sasp_job_next(sasp_job *job, sasp_event *ev, int timeout_ms);
/* The client is gone: free the job's slots at the next step. */
void sasp_job_cancel(sasp_job *job);
void sasp_job_release(sasp_job *job);

/* Latency histograms (Prometheus buckets, seconds). */
#define SASP_HIST_BUCKETS 12
typedef struct sasp_hist {
    double le[SASP_HIST_BUCKETS];      /* upper bounds */
    uint64_t count[SASP_HIST_BUCKETS]; /* per bucket (not cumulative) */
    uint64_t n;                        /* all observations (the +Inf bucket) */
    double sum;
} sasp_hist;

typedef struct sasp_sched_stats {
    int n_slots, active, queued;
    uint64_t prompt_tokens, generated_tokens, cancelled, sequences_done, steps;
    double forward_seconds;         /* time spent inside sasp_forward */
    double constraint_seconds;      /* time spent masking logits for constraints (constrain.h) */
    uint64_t constrained_tokens;    /* tokens sampled under a constraint's mask */
    uint64_t cached_tokens;         /* prompt tokens served from a cache instead of computed */
    uint64_t copied_tokens;         /* of those, the ones copied from another slot or the host cache */
    uint64_t host_hits, host_saves; /* prefixes restored from / kept in the host cache */
    int host_entries;               /* what the host cache holds now */
    size_t host_bytes;
    uint64_t dropped_tokens; /* prompt tokens the callers cut to fit the context */
    sasp_hist ttft, token_latency;
} sasp_sched_stats;

typedef struct sasp_slot_info {
    int id;
    const char *state; /* "idle", "prefill", "generating" */
    int n_prompt, n_past, n_generated;
    int n_ctx;      /* positions of its cache */
    int n_cached;   /* tokens its cache holds (what a next sequence may reuse) */
    int n_reused;   /* of the current (or last) sequence's prompt, the tokens taken from a cache */
    int max_tokens; /* the current (or last) sequence's parameters */
    sasp_sampling sampling;
    uint64_t task; /* the number of the sequence it holds or last held (1, 2, ...; 0: none yet) */
} sasp_slot_info;

typedef struct sasp_sched sasp_sched;

/* One engine thread for several schedulers (one per model): it steps every scheduler that has work in
 * turn, one batched step each per round, so each model gets its share of the machine and the thread
 * pools of the models are never busy at the same time. */
typedef struct sasp_engine sasp_engine;

sasp_engine *sasp_engine_new(char *err, size_t errlen);
/* Stop the thread; every scheduler on it must have been freed first. */
void sasp_engine_free(sasp_engine *e);

/* As sasp_sched_new, on engine e's thread (shared with the other schedulers on it). */
sasp_sched *sasp_sched_new_on(sasp_engine *e, sasp_model *m, const sasp_tokenizer *tok, int n_slots, int n_ctx,
                              int max_queue, int chunk, char *err, size_t errlen);

/* n_slots sequences at once, each with a cache of n_ctx positions (<= 0 or beyond the model's
 * max_seq_len: max_seq_len); at most max_queue waiting; at most chunk prompt tokens per step. Starts
 * an engine thread of its own. NULL + err on failure. */
sasp_sched *sasp_sched_new(sasp_model *m, const sasp_tokenizer *tok, int n_slots, int n_ctx,
                           int max_queue, int chunk, char *err, size_t errlen);
/* Keep copies of evicted prefixes in at most bytes of memory (0: none, the default); call before the
 * first job. */
void sasp_sched_set_cache_ram(sasp_sched *s, size_t bytes);
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
/* Stats of no scheduler: every count 0, the histograms' bounds set (to add schedulers' stats to). */
void sasp_sched_stats_empty(sasp_sched_stats *out);
/* Fill up to max slot descriptions (a snapshot taken after every engine step); returns the number of
 * slots. */
int sasp_sched_slots(sasp_sched *s, sasp_slot_info *out, int max);

/* llama.cpp's slot actions (POST /slots/{id}?action=save|restore|erase), run on the engine thread,
 * which owns the slots' caches: between two steps, once no sequence holds the slot (until then the
 * action waits, as llama.cpp defers it), and before queued sequences are admitted. save copies the
 * slot's cache out (its tokens and their keys and values), restore puts a cache in (the slot's tokens
 * become those; the next prompt that starts with them reuses them), erase empties it. */
enum { SASP_SLOT_SAVE = 1,
       SASP_SLOT_RESTORE,
       SASP_SLOT_ERASE };
/* A job of one action on slot `slot`; restore takes kv (its kv->len positions) and ids (as many
 * tokens), which the job owns from now on. Submitted with sasp_sched_submit (never refused for a full
 * queue). Its one event (done): error with the text when it failed (no such slot; a state longer
 * than the slot's context); prompt_tokens the tokens saved, restored or erased; slot; total_ns from
 * submission to the end. NULL when out of memory. */
sasp_job *sasp_job_new_slot_action(int action, int slot, sasp_kv *kv, int *ids);
/* After a save's event: the copy of the slot's cache (NULL when it held nothing), with its tokens in
 * *ids (kv->len of them); the caller frees both (sasp_kv_free, free). */
sasp_kv *sasp_job_take_saved(sasp_job *job, int **ids);

/* Stop-string scan over not-yet-released text buf[0..n). Returns 1 when a stop string occurs, with
 * *cut at its first byte (the earliest occurrence of any); otherwise 0 with *cut = the length that can
 * be released now, holding back the longest tail that is a proper prefix of some stop string. */
int sasp_stop_scan(const char *buf, size_t n, char *const *stops, int n_stops, size_t *cut);

/* n_indent over not-yet-released text buf[0..n): returns 1 when a line after a newline starts with
 * fewer than n_indent spaces or tabs before its first other character, with *cut just after that
 * newline (the line is not part of the output); otherwise 0 with *cut the bytes that may be released
 * now (a newline whose line holds only blanks so far is held back with what follows). Blank lines do
 * not count; the text before the first newline (the rest of the cursor's line) is never checked. */
int sasp_indent_scan(const char *buf, size_t n, int n_indent, size_t *cut);

#endif
