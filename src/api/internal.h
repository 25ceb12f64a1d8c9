/* internal.h: what the files of src/api/ share and nothing else includes, file by file from the bottom
 * up: json.c (errors, field getters, JSON text), read.c (the fields several dialects read alike),
 * prompt.c, checks.c, truncate.c, infill.c, the dialects (openai.c, ollama.c, llama.c: parse.c picks
 * one), and what the writers (write.c, write_llama.c) share. */
#ifndef SASP_API_INTERNAL_H
#define SASP_API_INTERNAL_H

#include <jansson.h>
#include "api/api.h"
#include "base/util.h"

/* --- json.c: errors, the field getters, JSON text --- */

/* A 400 invalid_request_error naming param. */
void api_bad(api_error *e, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The readers: 0 absent or null, 1 read, -1 wrong type or range (e filled). */
int api_get_num(json_t *o, const char *k, double *out, api_error *e);
int api_get_int(json_t *o, const char *k, long long *out, api_error *e);
int api_get_bool(json_t *o, const char *k, int *out, api_error *e);
int api_get_str(json_t *o, const char *k, const char **out, api_error *e);
/* A number within [lo, hi] (lo_open / hi_open: exclusive; hi >= 1e9: no upper bound). */
int api_get_range(json_t *o, const char *k, float *out, double lo, int lo_open, double hi, int hi_open,
                  api_error *e);

/* The body as a JSON object, or NULL + e (not UTF-8, malformed, not an object, duplicate keys). */
json_t *api_parse_body(const char *body, size_t len, api_error *e);

/* s[0..n) with invalid UTF-8 replaced by U+FFFD, malloc'd (length in *out_len when given). */
char *api_utf8_clean(const char *s, size_t n, size_t *out_len);
/* A JSON string of s[0..n), cleaned when it is not valid UTF-8. */
json_t *api_json_text(const char *s, size_t n);
/* Compact JSON text of j (consumed), malloc'd. */
char *api_dump(json_t *j);

/* A token's text for JSON (itself when valid UTF-8, else "bytes:\xNN..."), and its bytes as an array,
 * each without its first skip bytes (token healing: those the prompt already holds). */
json_t *api_token_string(const sasp_tokenizer *tok, int id, int skip);
json_t *api_token_bytes(const sasp_tokenizer *tok, int id, int skip);

/* Whether every element of arr satisfies pred. */
int api_all_of(json_t *arr, int (*pred)(const json_t *));
int api_is_int(const json_t *v);
int api_is_str(const json_t *v);
int api_is_arr(const json_t *v);

/* "data: <json>\n\n" (SSE) or "<json>\n" (NDJSON), appended to b; j is consumed. */
void api_emit(sasp_buf *b, api_kind kind, json_t *j);
/* "event: <name>\ndata: <json>\n\n", appended to b; j is consumed. */
void api_emit_named(sasp_buf *b, const char *name, json_t *j);

/* --- read.c: the fields several dialects read alike --- */

/* One stop string, copied; "stop" of o (a string or an array of strings). */
int api_add_stop(sasp_gen_params *g, const char *stop);
int api_read_stop(json_t *o, sasp_gen_params *g, api_error *e);
/* sampling.c: the sampling fields of o (the request, or Ollama's options), OpenAI and llama.cpp
 * names, DRY's; *seed is set only when o names one (-1, as in llama.cpp, means random: the seed
 * already there stays). */
int api_read_sampling(json_t *o, sasp_sampling *p, uint64_t *seed, api_error *e);
/* llama.cpp's "samplers" of root (names or a string of letters): the chain, in that order. */
int api_read_samplers(json_t *root, sasp_sampling *p, api_error *e);
/* model and user are checked and ignored (the server picked the model already), then stream and the
 * sampling fields of the top level. */
int api_read_common(json_t *root, api_request *r, api_error *e);
/* llama.cpp's n_keep (Ollama's num_keep) in field name of o: >= -1. 0 absent, 1 read, -1 bad. */
int api_read_n_keep(json_t *o, const char *name, int *out, api_error *e);
/* The length limit in field name of o, 1 .. the context; API_UNTIL_FULL (Ollama's num_predict): a
 * value <= 0 means until the context is full; API_ZERO_SCORES: 0 is allowed (echo + logprobs scores
 * the prompt and generates nothing). 0 absent, 1 read, -1 bad. */
enum { API_AT_LEAST_ONE,
       API_UNTIL_FULL,
       API_ZERO_SCORES };
int api_read_max_tokens(json_t *o, const char *name, int mode, const api_limits *lim, int *out, api_error *e);
/* token_healing (default on) for text prompts, unless echo or a JSON format need otherwise. */
int api_read_token_healing(json_t *root, api_request *r, api_error *e);
/* "truncate" (a boolean; by_default when absent). */
int api_read_truncation(json_t *root, int by_default, int *truncate, api_error *e);

/* Compile schema (NULL: any JSON object) into r->schema and r->gen.json, naming field in an error. */
int api_set_schema(api_request *r, json_t *schema, const char *field, api_error *e);
/* OpenAI's response_format, or Ollama's format ("json" or a schema): r->schema and r->gen.json. */
int api_read_response_format(json_t *root, api_request *r, api_error *e);
int api_read_ollama_format(json_t *root, api_request *r, api_error *e);
/* OpenAI's logit_bias {"token id": bias in [-100, 100]}. */
int api_read_logit_bias(json_t *root, api_request *r, const api_limits *lim, api_error *e);

/* --- prompt.c: prompts, the chat template --- */

/* Add a prompt to r: ids (n of them) and its text, both malloc'd and taken (freed on failure too). */
int api_push_prompt(api_request *r, int *ids, int n, char *text);
/* Text into a prompt of r (empty text -> the BOS token alone); marks r's prompts as text. */
int api_add_text_prompt(api_request *r, const char *s, size_t len, const api_limits *lim, api_error *e);
/* The plain chat template (docs/api.md) over messages, malloc'd, or NULL + e; kind says whose
 * message shapes are taken (OpenAI's content parts, Ollama's strings). continue_last: the last message
 * is the beginning of the answer, which the model continues (Anthropic's prefill): it stays open (no
 * newline after it, no "Assistant:" line). */
char *api_render_chat(json_t *msgs, api_kind kind, int continue_last, api_error *e);
/* msgs through the template as r's one prompt, and the template's stop strings. */
int api_add_chat_prompt(json_t *msgs, int continue_last, api_request *r, const api_limits *lim, api_error *e);
/* The chat template's stop strings (so that the model does not write the next turn). */
int api_add_chat_stops(sasp_gen_params *g);
/* A message content of Anthropic or of the Responses API, a string or an array of blocks / parts,
 * as its text, appended to out: parts whose "type" is one of text_types (NULL-terminated) give their
 * "text"; any other part is refused, naming param (its index) and the part's type. */
int api_content_text(json_t *content, const char *const *text_types, const char *param, sasp_buf *out,
                     api_error *e);

/* --- checks.c: the checks of a whole request --- */

/* Every prompt within the context, and at most API_MAX_SEQS sequences. */
int api_check_sequences(const api_request *r, const char *prompt_param, const api_limits *lim, api_error *e);

/* With a JSON constraint: the document must fit the tokens the request allows (min_tokens: the
 * fewest it can be written in), and no stop string may cut it. */
int api_check_json_budget(const api_request *r, const api_limits *lim, int n_stops_asked, api_error *e);

/* Whether field v asks for something: present and not null, false, "" or an empty array. */
int api_asks(json_t *v);
/* The fields we do not implement, each refused by name when it asks for something: tools, functions,
 * images, ... (see docs/api.md). */
int api_refuse_unsupported(json_t *root, api_kind kind, const api_limits *lim, api_error *e);

/* --- truncate.c: prompts cut to fit the context --- */

/* What a cut prompt is brought down to: three quarters of the context (the rest is the answer's). */
int api_cut_budget(int n_ctx);
/* How many of n tokens to drop from the far side so that at most room stay, in whole blocks of block
 * tokens: the kept part's start moves only when a block boundary is crossed. */
int api_drop_in_blocks(int n, int room, int block);
/* Cut r's prompt i when it is longer than the context: its first n_keep tokens stay, then whole blocks
 * right after them go until it fits api_cut_budget (r->n_dropped counts them, the prompt text is
 * remade). -1 + e (the 400 of a prompt beyond the context, naming param) when n_keep leaves no room. */
int api_cut_prompt(api_request *r, int i, int n_keep, const api_limits *lim, const char *param, api_error *e);
/* Every prompt of r within the context: cut (truncate) or refused. */
int api_fit_prompts(api_request *r, int truncate, int n_keep, const char *param, const api_limits *lim,
                    api_error *e);

/* --- infill.c: fill-in-the-middle prompts --- */

/* One file chunk of input_extra. */
typedef struct api_fim_chunk {
    const char *text;
    size_t len;
} api_fim_chunk;

/* What a fill-in-the-middle prompt is made of: the text before the cursor (prefix, then the start of
 * the cursor's line: llama.cpp's "prompt", which may be empty), the text after it, and extra context
 * (other files) that goes first. */
typedef struct api_fim_input {
    const char *prefix, *middle, *suffix;
    size_t prefix_len, middle_len, suffix_len;
    const api_fim_chunk *extra;
    int n_extra;
    int heal;     /* back off the token before the cursor (token healing) */
    int truncate; /* cut to fit (else a prompt beyond the context is a 400) */
} api_fim_input;

/* 400 naming param when the model's tokenizer has no <|fim_prefix|>, <|fim_suffix|>, <|fim_middle|>. */
int api_check_fim_tokens(const api_limits *lim, const char *param, api_error *e);
/* The prompt of in as r's next sequence (with its healed bytes, r->n_dropped counting what was cut). */
int api_add_fim_prompt(api_request *r, const api_fim_input *in, const api_limits *lim, const char *param,
                       api_error *e);
/* The suffix of /v1/completions and /api/generate: each text prompt of r becomes the prefix of a
 * fill-in-the-middle prompt with that suffix. */
int api_apply_suffix(json_t *root, api_request *r, const api_limits *lim, int truncate, api_error *e);

/* --- the dialects (parse.c picks one): openai.c, ollama.c, llama.c, anthropic.c, responses.c --- */

/* OpenAI's /v1/completions and /v1/chat/completions. */
int api_parse_completions(json_t *root, const api_limits *lim, api_request *r, api_error *e);
int api_parse_chat(json_t *root, const api_limits *lim, api_request *r, api_error *e);
/* Ollama's /api/generate and /api/chat. */
int api_parse_generate(json_t *root, const api_limits *lim, api_request *r, api_error *e);
int api_parse_ollama_chat(json_t *root, const api_limits *lim, api_request *r, api_error *e);
/* llama.cpp's /completion and /infill. */
int api_parse_llama_completion(json_t *root, const api_limits *lim, api_request *r, api_error *e);
int api_parse_infill(json_t *root, const api_limits *lim, api_request *r, api_error *e);
/* Note a field accepted without effect in r->ignored (the X-Sasp-Ignored-Options header). */
void api_note_ignored(api_request *r, const char *field);
/* Anthropic's /v1/messages and OpenAI's /v1/responses. */
int api_parse_messages(json_t *root, const api_limits *lim, api_request *r, api_error *e);
int api_parse_responses(json_t *root, const api_limits *lim, api_request *r, api_error *e);
/* The prompt of an Anthropic messages body (model, system, messages; what is refused refused) as r's
 * one sequence, without the generation fields: what count_tokens counts (anthropic.c). */
int api_read_message_prompt(json_t *root, api_request *r, const api_limits *lim, api_error *e);

/* --- write.c and write_llama.c: an answer being written --- */

/* RFC 3339 UTC with nanoseconds, as Ollama writes created_at. */
json_t *api_created_at(void);

/* One sequence's part of the answer. */
typedef struct api_choice {
    sasp_buf text; /* non-stream: the text so far */
    const char *finish;
    json_t *lp;    /* accumulated logprobs (non-stream): OpenAI's, or llama.cpp's probabilities */
    size_t offset; /* completions text_offset: bytes of token text so far */
    int prompt_tokens, completion_tokens;
    int cached_tokens, dropped_tokens; /* of the prompt: reused from a cache; cut to fit */
    int end, slot;                     /* SASP_END_*, the slot it ran in */
    char *stop_word;                   /* the stop string that ended it */
    int has_new_line;                  /* the text has a newline */
    int64_t total_ns, prompt_ns, eval_ns;
    int *ids; /* generate, llama.cpp: the generated ids ("context", "tokens") */
    int n_ids, cap_ids;
} api_choice;

struct api_out {
    api_kind kind;
    json_t *repeats; /* Anthropic, responses: the request's fields the answer repeats (api_request) */
    int seq_no;      /* responses: the next event's sequence_number */
    int stream, include_usage, echo, logprobs, n_choices_per_prompt;
    char id[48];
    char *model;
    long created;
    const sasp_tokenizer *tok;
    int n;
    api_choice *ch;
    char **prompt_text;
    int *context, n_context;
    int failed;
    char *error;
    int n_dropped; /* prompt tokens cut to fit the context, every prompt together */
    /* llama.cpp's answers */
    json_t *settings; /* generation_settings */
    int return_tokens, n_probs;
    int post_sampling_probs; /* n_probs as "prob" / "top_probs" from the final distribution */
    char **fields;           /* response_fields, or NULL */
    int n_fields;
};

/* The JSON of ev's tokens' logprobs in llama.cpp's shape, appended to acc when given. */
json_t *api_llama_probs(api_out *o, const sasp_event *ev, json_t *acc);
/* llama.cpp's generation_settings of r. */
json_t *api_llama_settings(const api_request *r);
/* Streamed: the chunk(s) for one event (text, then the final object when it is the last one). */
void api_llama_event(api_out *o, api_choice *c, const sasp_event *ev, const char *text, size_t tl, sasp_buf *b);
/* Not streamed: the whole answer. */
json_t *api_llama_answer(api_out *o);

/* The answers with named events, Anthropic's messages (write_anthropic.c) and OpenAI's responses
 * (write_responses.c): streamed, the events before the first token (start), those of one event
 * (text appended to c->text; the closing ones with the last), and those of an engine failure (message);
 * not streamed, the whole answer. */
void api_messages_start(api_out *o, sasp_buf *b);
void api_messages_event(api_out *o, api_choice *c, const sasp_event *ev, const char *text, size_t tl, sasp_buf *b);
void api_messages_failure(api_out *o, const char *message, sasp_buf *b);
json_t *api_messages_answer(api_out *o);
void api_responses_start(api_out *o, sasp_buf *b);
void api_responses_event(api_out *o, api_choice *c, const sasp_event *ev, const char *text, size_t tl, sasp_buf *b);
void api_responses_failure(api_out *o, const char *message, sasp_buf *b);
json_t *api_responses_answer(api_out *o);

#endif
