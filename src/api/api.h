/* api.h: the wire format of sasp-server, apart from any I/O: JSON request bodies into generation
 * parameters (with every check docs/api.md lists under Errors), and the response bodies, server-sent-event
 * chunks (OpenAI) and NDJSON lines (Ollama) written from the scheduler's events; embeddings requests
 * and answers; the model descriptions of /v1/models, /api/tags, /api/show and /api/ps. Pure functions
 * over memory, so they can be unit-tested and fuzzed without a socket. docs/api.md describes the
 * formats.
 *
 * The files, from the bottom up (README.md draws them): json.c (errors, UTF-8, the field getters and
 * JSON text every parser and writer shares), read.c (the fields several dialects read alike: stops,
 * lengths, response_format / format, logit_bias), sampling.c (the sampling fields), prompt.c (prompts into token ids, the chat
 * template), checks.c (the checks of a whole request, the refusal of what is not supported),
 * truncate.c (prompts cut to fit the context), infill.c (fill-in-the-middle prompts from prefix, suffix
 * and extra context), the dialects openai.c, ollama.c, llama.c (llama.cpp's native /completion and
 * /infill), anthropic.c (Anthropic's messages) and responses.c (OpenAI's responses), parse.c
 * (api_parse: the body to its dialect), tokenize.c (/tokenize, /detokenize), write.c (answers from
 * events), write_llama.c (llama.cpp's answers, /slots and /props objects), write_anthropic.c and
 * write_responses.c (the answers with named events), embed.c (embeddings), models.c (model
 * descriptions). */
#ifndef SASP_API_H
#define SASP_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "text/json_schema.h"
#include "engine/scheduler.h"
#include "text/tokenizer.h"

/* The generation endpoints: OpenAI completions and chat completions, Ollama generate and chat,
 * llama.cpp's /completion and /infill, Anthropic's messages, OpenAI's responses. */
typedef enum {
    API_COMPLETIONS,
    API_CHAT,
    API_GENERATE,
    API_OLLAMA_CHAT,
    API_LLAMA_COMPLETION,
    API_INFILL,
    API_MESSAGES,
    API_RESPONSES
} api_kind;

/* Whether kind answers in Ollama's shapes (NDJSON, {"error": "..."}). */
int api_kind_is_ollama(api_kind kind);
/* Whether kind answers in llama.cpp's native shapes (content, tokens, timings, ...). */
int api_kind_is_llama(api_kind kind);
/* Whether kind streams named server-sent events ("event: NAME" before each "data:"), each a step of
 * one answer object: Anthropic's messages and OpenAI's responses. */
int api_kind_has_named_events(api_kind kind);

/* How every JSON answer is written: compact, and each number with 9 significant digits, enough to read
 * back the float it came from (a logprob, an embedding) bit for bit (%.9g); with fewer, two logprobs that
 * differ could print alike, and the server's promise (docs/api.md: the same request gives the same
 * tokens and logprobs whatever the load) could not be checked from the outside. */
#define API_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))

/* An error with its status: written in OpenAI's shape {"error": {"message", "type", "param", "code"}}
 * (api_error_body) or Ollama's {"error": "message"} (api_error_body_ollama). */
typedef struct api_error {
    int status;
    const char *type; /* "invalid_request_error", "authentication_error", ... */
    const char *code; /* NULL -> null */
    char param[64];   /* "" -> null */
    char message[512];
} api_error;

void api_error_set(api_error *e, int status, const char *type, const char *code, const char *param,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The JSON body of e, malloc'd. */
char *api_error_body(const api_error *e);
char *api_error_body_ollama(const api_error *e);
/* Anthropic's shape {"type": "error", "error": {"type", "message"}}, the type following the status as
 * Anthropic's does (anthropic.c). */
char *api_error_body_anthropic(const api_error *e);

/* What parsing needs to know about the model. */
typedef struct api_limits {
    const sasp_tokenizer *tok;
    int n_ctx; /* positions per sequence */
    int vocab;
    int bos;              /* fed alone when a prompt is empty */
    const char *model_id; /* named in messages (tools not supported by ...); may be NULL */
} api_limits;

#define API_MAX_SEQS 64 /* prompts x n per request */
#define API_MAX_LOGIT_BIAS 300

/* A parsed generation request: n_seqs sequences (prompts x n), each with its token ids. */
typedef struct api_request {
    api_kind kind;
    int stream;
    int include_usage; /* stream_options.include_usage */
    int echo;          /* completions: prepend the prompt to the text */
    int n_seqs;
    int n_choices;            /* n: sequences per prompt (prompt i is sequences i*n .. i*n+n-1) */
    int **prompt;             /* [n_seqs] token ids */
    int *n_prompt;            /* [n_seqs] */
    char **prompt_text;       /* [n_seqs] the prompt as valid UTF-8 text (for echo) */
    int text_prompt;          /* the prompts are text (not token ids): token healing may apply */
    int *context;             /* generate: the prompt's ids, returned as "context" (one sequence) */
    int empty;                /* Ollama: no prompt (or messages): answer done at once ("load" / "unload") */
    int unload;               /* Ollama: keep_alive 0 with no prompt: done_reason "unload" */
    sasp_gen_params gen;      /* stop strings, logit_bias and the schema owned (freed by api_request_free) */
    sasp_json_schema *schema; /* response_format / format: the schema gen.json points to */
    uint64_t seed_base;       /* sequence k uses seed_base + k */
    char ignored[256];        /* Ollama options that only place the work (num_thread, ...) and llama.cpp
                            * fields without effect here (id_slot, t_max_prompt_ms, ...): accepted, no
                            * effect, listed here for the X-Sasp-Ignored-Options header */
    int n_dropped;            /* prompt tokens cut to fit the context, every prompt together */
    char **heal_text;         /* [n_seqs] fill in the middle: the bytes backed off before the cursor (the
                            * output starts with them; sasp_gen_params.heal_text), or NULL */
    size_t *heal_len;         /* [n_seqs] */
    int infill;               /* the prompts are fill-in-the-middle prompts (/infill, or a suffix) */
    /* llama.cpp's answers */
    int return_tokens;      /* the generated ids in "tokens" */
    int n_probs;            /* completion_probabilities with this many alternatives (0: none) */
    char **response_fields; /* the fields of the final answer ("timings/prompt_n", ...), or NULL: all */
    int n_response_fields;
    json_t *repeats; /* Anthropic's and the Responses API's answers: what they repeat of the request
                            * (stop_sequences; instructions, metadata, text, ...), or NULL */
} api_request;

/* Parse body (len bytes) for endpoint kind. Returns 0, or -1 with e filled (status 400 and what was
 * wrong, naming the field; 500 when out of memory). r must be freed with api_request_free in both
 * cases. random_seed is used when the request names no seed. */
int api_parse(api_kind kind, const char *body, size_t len, const api_limits *lim, uint64_t random_seed,
              api_request *r, api_error *e);
void api_request_free(api_request *r);

/* The model a request body names, before it is parsed (the server picks the model whose limits
 * parse it): "model" (or Ollama's older "name" when with_name), copied into out. 1 named, 0 absent
 * (or not a string, or the body not JSON: api_parse then says what is wrong). */
int api_requested_model(const char *body, size_t len, int with_name, char *out, size_t outlen);

/* /tokenize and /detokenize: the response JSON text (malloc'd), or NULL + e. */
char *api_tokenize(const char *body, size_t len, const api_limits *lim, api_error *e);
char *api_detokenize(const char *body, size_t len, const api_limits *lim, api_error *e);
/* Anthropic's /v1/messages/count_tokens: {"input_tokens": n} (malloc'd), or NULL + e (tokenize.c). */
char *api_count_message_tokens(const char *body, size_t len, const api_limits *lim, api_error *e);

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
/* Ollama's answer to a request with no prompt: {"done": true, "done_reason": "load" or "unload"}. */
char *api_ollama_empty_answer(const api_request *r, const char *model);

/* Whether the model's tokenizer has the fill-in-the-middle tokens /infill needs (infill.c). */
int api_has_fim_tokens(const api_limits *lim);

/* llama.cpp's /slots entry of a slot (with what its prompt cache holds), and the
 * default_generation_settings of /props (write_llama.c). */
json_t *api_slot_json(const sasp_slot_info *s);
json_t *api_llama_default_settings(int n_ctx);

/* llama.cpp's slot actions (slots.c): the "filename" of a save or restore body into name (a file name
 * only: empty, "/", "\\", ".." or a control character is a 400 "Invalid filename"), 0 or -1 + e; the
 * answer of an action (SASP_SLOT_*): n_tokens saved, restored or erased, bytes written or read, ms. */
int api_slot_filename(const char *body, size_t len, char *name, size_t size, api_error *e);
char *api_slot_action_answer(int action, int id_slot, const char *filename, int n_tokens, long long bytes, double ms);
/* POST /apply-template: {"messages": [...]} through the chat template of /v1/chat/completions, as
 * {"prompt": "..."} (slots.c). */
char *api_apply_template(const char *body, size_t len, api_error *e);

/* --- embeddings (embed.c) --- */

/* OpenAI's /v1/embeddings, Ollama's /api/embed and its older /api/embeddings. */
typedef enum { API_EMBED_OPENAI,
               API_EMBED_OLLAMA,
               API_EMBED_OLLAMA_LEGACY } api_embed_kind;

typedef struct api_embed_request {
    api_embed_kind kind;
    int n_inputs;
    int **ids; /* [n_inputs] token ids */
    int *n_ids;
    int pooling; /* SASP_POOL_MEAN or SASP_POOL_LAST */
    int base64;  /* OpenAI encoding_format "base64" */
} api_embed_request;

int api_embed_parse(api_embed_kind kind, const char *body, size_t len, const api_limits *lim, int d_model,
                    api_embed_request *r, api_error *e);
void api_embed_request_free(api_embed_request *r);
/* The answer: vectors[i] (dim floats each) for input i; duration in nanoseconds (Ollama). */
char *api_embed_answer(const api_embed_request *r, const char *model, float *const *vectors, int dim,
                       int64_t total_ns);

/* Ollama's keep_alive in body (a duration, "5m", or seconds), read before the model is loaded: 1 with
 * *ns (-1: for ever), 0 when it has none (or is no JSON object: its parser says so), -1 with e when it
 * is no duration. *empty: the request asks for nothing to be generated (/api/generate without prompt
 * or context, /api/chat (chat nonzero) without messages): it only loads or unloads the model. */
int api_ollama_keep_alive(const char *body, size_t len, int chat, int64_t *ns, int *empty, api_error *e);
/* A keep_alive text (a Go duration, "5m", "1h30m", "0", or whole seconds, "300"; negative: for ever)
 * into *ns (-1: for ever). 0, or -1 when it is none (--keep-alive too). */
int api_parse_keep_alive(const char *s, int64_t *ns);

/* --- model descriptions (models.c) --- */

typedef struct api_model_info {
    const char *id;   /* the directory's name */
    const char *path; /* the directory */
    const sasp_config *cfg;
    size_t n_params;
    int n_ctx;            /* positions per sequence as served */
    long long file_size;  /* bytes of model.safetensors */
    long long modified;   /* its modification time, unix seconds */
    const char *digest;   /* sha256 of model.safetensors, hex */
    long created;         /* when the server found it, unix seconds */
    long long expires_at; /* /api/ps: when it unloads, unix seconds (0: never) */
    const char *weights;  /* the matrices' type in memory: "f32", "bf16", "q8_0" (NULL: not loaded yet) */
} api_model_info;

/* Anthropic's model object ({"type": "model", "id", "display_name", "created_at"}), answered by
 * /v1/models and /v1/models/{id} to a request with an anthropic-version header (its SDK's models.list
 * and models.retrieve), and its list ({"data", "has_more": false, "first_id", "last_id"}; takes
 * models, an array of those). */
json_t *api_anthropic_model(const api_model_info *m);
json_t *api_anthropic_model_list(json_t *models);
/* OpenAI's model object (/v1/models lists them; /v1/models/{id} is one). */
json_t *api_openai_model(const api_model_info *m);
/* Ollama's /api/tags entry, and /api/ps's (with expires_at, size_vram) for a loaded one. */
json_t *api_ollama_tag(const api_model_info *m, int running);
/* Ollama's /api/show answer. */
json_t *api_ollama_show(const api_model_info *m);
/* Whether name is m's id as Ollama clients write it ("id", "id:latest"). */
int api_ollama_name_matches(const api_model_info *m, const char *name);

/* Whether s[0..n) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
int api_utf8_valid(const char *s, size_t n);

#endif
