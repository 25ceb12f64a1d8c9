/* api.h: the wire format of sasp-server, apart from any I/O: JSON request bodies into generation
 * parameters (with every check docs/api.md lists under Errors), and the response bodies, server-sent-event
 * chunks (OpenAI) and NDJSON lines (Ollama) written from the scheduler's events. Pure functions over
 * memory, so they can be unit-tested and fuzzed without a socket. docs/api.md describes the formats. */
#ifndef SASP_API_H
#define SASP_API_H

#include <stddef.h>
#include <stdint.h>
#include "scheduler.h"
#include "tokenizer.h"

typedef enum { API_COMPLETIONS, API_CHAT, API_GENERATE } api_kind;

/* An error as OpenAI shapes it: {"error": {"message", "type", "param", "code"}}, plus the status. */
typedef struct api_error {
    int status;
    const char *type;  /* "invalid_request_error", "authentication_error", ... */
    const char *code;  /* NULL -> null */
    char param[64];    /* "" -> null */
    char message[512];
} api_error;

void api_error_set(api_error *e, int status, const char *type, const char *code, const char *param,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The JSON body of e, malloc'd. */
char *api_error_body(const api_error *e);

/* What parsing needs to know about the model. */
typedef struct api_limits {
    const sasp_tokenizer *tok;
    int n_ctx;   /* positions per sequence */
    int vocab;
    int bos;     /* fed alone when a prompt is empty */
} api_limits;

#define API_MAX_SEQS 64 /* prompts x n per request */

/* A parsed generation request: n_seqs sequences (prompts x n), each with its token ids. */
typedef struct api_request {
    api_kind kind;
    int stream;
    int include_usage;     /* stream_options.include_usage */
    int echo;              /* completions: prepend the prompt to the text */
    int n_seqs;
    int n_choices;         /* n: sequences per prompt (prompt i is sequences i*n .. i*n+n-1) */
    int **prompt;          /* [n_seqs] token ids */
    int *n_prompt;         /* [n_seqs] */
    char **prompt_text;    /* [n_seqs] the prompt as valid UTF-8 text (for echo) */
    int *context;          /* generate: the prompt's ids, returned as "context" (one sequence) */
    int empty;             /* generate: empty prompt, Ollama answers done at once */
    sasp_gen_params gen;   /* stop strings owned (freed by api_request_free) */
    uint64_t seed_base;    /* sequence k uses seed_base + k */
} api_request;

/* Parse body (len bytes) for endpoint kind. Returns 0, or -1 with e filled (status 400 and what was
 * wrong, naming the field; 500 when out of memory). r must be freed with api_request_free in both
 * cases. random_seed is used when the request names no seed. */
int api_parse(api_kind kind, const char *body, size_t len, const api_limits *lim, uint64_t random_seed,
              api_request *r, api_error *e);
void api_request_free(api_request *r);

/* /tokenize and /detokenize: the response JSON text (malloc'd), or NULL + e. */
char *api_tokenize(const char *body, size_t len, const api_limits *lim, api_error *e);
char *api_detokenize(const char *body, size_t len, const api_limits *lim, api_error *e);

/* Writing a response from events. */
typedef struct api_out api_out;

/* model: the id the server reports; created: unix seconds. */
api_out *api_out_new(const api_request *r, const char *model, const sasp_tokenizer *tok, long created);
void api_out_free(api_out *o);
/* Bytes to send before any event (stream mode: chat role chunks, echoed prompts); may be NULL. */
char *api_out_start(api_out *o, size_t *len);
/* Take one event. In stream mode returns the bytes to send for it (malloc'd, may be NULL); otherwise
 * accumulates and returns NULL. */
char *api_out_event(api_out *o, const sasp_event *ev, size_t *len);
/* After the last event: stream mode, the closing bytes (usage chunk, "data: [DONE]"); otherwise the
 * whole JSON body. */
char *api_out_finish(api_out *o, size_t *len);
/* The token counts of the answer's usage (and the server's log line): each prompt's tokens once,
 * however many choices share it, and the completion tokens of every sequence that has ended. */
void api_out_usage(const api_out *o, int *prompt_tokens, int *completion_tokens);
/* Whether an event reported an engine error (the non-stream answer is then 500). */
int api_out_failed(const api_out *o);

/* Whether s[0..n) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
int api_utf8_valid(const char *s, size_t n);

#endif
