/* api.c: generation request bodies -> parameters: the pieces every dialect shares (sampling, stop
 * strings, prompts, the chat template, lengths and the checks of a whole request), OpenAI's
 * completions and chat completions, api_parse over every dialect (Ollama's are in api_ollama.c), and
 * /tokenize, /detokenize. See api.h; the user-facing description of every field is docs/api.md. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "util.h"

/* --- sampling and stopping parameters, shared by every endpoint --- */

/* One stop string, copied (0, or -1 when out of memory). */
int api_add_stop(sasp_gen_params *g, const char *stop)
{
    char *copy = strdup(stop);
    if (!copy) return -1;
    g->stop[g->n_stop++] = copy;
    return 0;
}

/* "stop" of o: a string or an array of strings; empty ones are ignored. Leaves room for the two the
 * chat template adds. */
int api_read_stop(json_t *o, sasp_gen_params *g, api_error *e)
{
    json_t *v = json_object_get(o, "stop");
    if (!v || json_is_null(v)) return 0;
    if (json_is_string(v)) return json_string_length(v) > 0 ? api_add_stop(g, json_string_value(v)) : 0;
    if (!json_is_array(v)) {
        api_bad(e, "stop", "'stop' must be a string or an array of strings");
        return -1;
    }
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s)) {
            api_bad(e, "stop", "'stop' must be a string or an array of strings");
            return -1;
        }
        if (json_string_length(s) == 0) continue;
        if (g->n_stop >= SASP_MAX_STOPS - 2) {
            api_bad(e, "stop", "at most %d stop strings", SASP_MAX_STOPS - 2);
            return -1;
        }
        if (api_add_stop(g, json_string_value(s))) return -1;
    }
    return 0;
}

/* The sampling fields of o (the request, or Ollama's options), OpenAI and llama.cpp names; *seed is
 * set only when o names one (-1, as in llama.cpp, means random: the seed already there stays). */
int api_read_sampling(json_t *o, sasp_sampling *p, uint64_t *seed, api_error *e)
{
    long long k;
    int r;
    if (api_get_range(o, "temperature", &p->temperature, 0, 0, 1e9, 0, e) < 0) return -1;
    if (api_get_range(o, "top_p", &p->top_p, 0, 1, 1, 0, e) < 0) return -1;
    if (api_get_range(o, "min_p", &p->min_p, 0, 0, 1, 0, e) < 0) return -1;
    if ((r = api_get_int(o, "top_k", &k, e)) < 0) return -1;
    if (r) {
        if (k < 0) {
            api_bad(e, "top_k", "'top_k' must be >= 0 (0 = off), got %lld", k);
            return -1;
        }
        p->top_k = k > 1 << 30 ? 1 << 30 : (int)k;
    }
    if (api_get_range(o, "repetition_penalty", &p->repeat_penalty, 0, 1, 1e9, 0, e) < 0) return -1;
    if (api_get_range(o, "repeat_penalty", &p->repeat_penalty, 0, 1, 1e9, 0, e) < 0) return -1;
    if ((r = api_get_int(o, "repeat_last_n", &k, e)) < 0) return -1;
    if (r) {
        if (k < -1) {
            api_bad(e, "repeat_last_n", "'repeat_last_n' must be >= -1 (-1 = whole sequence)");
            return -1;
        }
        p->repeat_last_n = k > 1 << 30 ? 1 << 30 : (int)k;
    }
    if (api_get_range(o, "frequency_penalty", &p->frequency_penalty, -2, 0, 2, 0, e) < 0) return -1;
    if (api_get_range(o, "presence_penalty", &p->presence_penalty, -2, 0, 2, 0, e) < 0) return -1;
    if ((r = api_get_int(o, "seed", &k, e)) < 0) return -1;
    if (r && k != -1) *seed = (uint64_t)k;
    return 0;
}

/* --- prompts: each becomes a sequence's token ids and its text --- */

int api_push_prompt(api_request *r, int *ids, int n, char *text)
{
    int i = r->n_seqs;
    int **p = realloc(r->prompt, (size_t)(i + 1) * sizeof *p);
    if (p) r->prompt = p;
    int *np = realloc(r->n_prompt, (size_t)(i + 1) * sizeof *np);
    if (np) r->n_prompt = np;
    char **t = realloc(r->prompt_text, (size_t)(i + 1) * sizeof *t);
    if (t) r->prompt_text = t;
    if (!p || !np || !t) {
        free(ids);
        free(text);
        return -1;
    }
    r->prompt[i] = ids;
    r->n_prompt[i] = n;
    r->prompt_text[i] = text;
    r->n_seqs++;
    return 0;
}

/* Tokenize text into a prompt (empty text -> the BOS token alone). */
int api_add_text_prompt(api_request *r, const char *s, size_t len, const api_limits *lim, api_error *e)
{
    int *ids = NULL;
    int n = sasp_encode(lim->tok, s, len, 1, &ids);
    if (n < 0) {
        api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    if (n == 0) {
        free(ids);
        ids = malloc(sizeof *ids);
        if (!ids) return -1;
        ids[0] = lim->bos;
        n = 1;
    }
    char *text = strndup(s, len);
    r->text_prompt = 1;
    return api_push_prompt(r, ids, n, text);
}

static int add_token_prompt(api_request *r, json_t *arr, const api_limits *lim, api_error *e)
{
    size_t n = json_array_size(arr), i;
    if (n == 0) {
        api_bad(e, "prompt", "a token prompt must not be empty");
        return -1;
    }
    int *ids = malloc(n * sizeof *ids);
    if (!ids) return -1;
    json_t *v;
    json_array_foreach(arr, i, v) {
        long long id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (!json_is_integer(v) || id < 0 || id >= lim->vocab) {
            free(ids);
            api_bad(e, "prompt", "token ids must be integers in [0, %d)", lim->vocab);
            return -1;
        }
        ids[i] = (int)id;
    }
    size_t tl;
    char *raw = sasp_decode(lim->tok, ids, (int)n, &tl);
    char *text = raw ? api_utf8_clean(raw, tl, NULL) : strdup("");
    free(raw);
    return api_push_prompt(r, ids, (int)n, text);
}

/* Completions' prompt: a string, strings, token ids, or arrays of token ids; one sequence each. */
static int read_completion_prompt(json_t *p, api_request *r, const api_limits *lim, api_error *e)
{
    if (!p || json_is_null(p)) {
        api_bad(e, "prompt", "'prompt' is required");
        return -1;
    }
    if (json_is_string(p)) return api_add_text_prompt(r, json_string_value(p), json_string_length(p), lim, e);
    if (!json_is_array(p) || json_array_size(p) == 0) {
        api_bad(e, "prompt", "'prompt' must be a string, an array of strings, an array of token ids or an "
                         "array of arrays of token ids, and not empty");
        return -1;
    }
    if (json_array_size(p) > API_MAX_SEQS && !api_all_of(p, api_is_int)) {
        api_bad(e, "prompt", "at most %d prompts per request", API_MAX_SEQS);
        return -1;
    }
    if (api_all_of(p, api_is_int)) return add_token_prompt(r, p, lim, e);
    size_t i;
    json_t *v;
    if (api_all_of(p, api_is_str)) {
        json_array_foreach(p, i, v) if (api_add_text_prompt(r, json_string_value(v), json_string_length(v), lim, e)) return -1;
        return 0;
    }
    if (api_all_of(p, api_is_arr)) {
        json_array_foreach(p, i, v) {
            if (!api_all_of(v, api_is_int)) {
                api_bad(e, "prompt", "each array in 'prompt' must hold token ids (integers)");
                return -1;
            }
            if (add_token_prompt(r, v, lim, e)) return -1;
        }
        return 0;
    }
    api_bad(e, "prompt", "'prompt' mixes types: use a string, strings, token ids or arrays of token ids");
    return -1;
}

/* --- the chat template, shared by OpenAI's and Ollama's chat --- */

/* The stop strings the template adds to what the request asks, so the model does not write the
 * next turn. */
static const char *const chat_stops[] = {"\nUser:", "\nSystem:", NULL};

int api_add_chat_stops(sasp_gen_params *g)
{
    for (int i = 0; chat_stops[i]; i++)
        if (api_add_stop(g, chat_stops[i])) return -1;
    return 0;
}

/* The label of a message's role, or NULL + e. */
static const char *chat_label(json_t *m, size_t i, api_error *e)
{
    json_t *role = json_object_get(m, "role");
    if (!json_is_object(m) || !json_is_string(role)) {
        api_bad(e, "messages", "messages[%zu] must be an object with a string 'role'", i);
        return NULL;
    }
    const char *r = json_string_value(role);
    if (!strcmp(r, "system") || !strcmp(r, "developer")) return "System: ";
    if (!strcmp(r, "user")) return "User: ";
    if (!strcmp(r, "assistant")) return "Assistant: ";
    if (!strcmp(r, "tool")) return "Tool: ";
    api_bad(e, "messages", "messages[%zu].role must be system, developer, user, assistant or tool", i);
    return NULL;
}

/* What a message carries besides text, which a text model cannot take: images (Ollama's "images",
 * OpenAI's image parts are refused where the content is read) and calls of tools. */
static int chat_refuse_extras(json_t *m, size_t i, api_error *e)
{
    json_t *images = json_object_get(m, "images"), *calls = json_object_get(m, "tool_calls");
    if (json_array_size(images) > 0 || (images && !json_is_null(images) && !json_is_array(images))) {
        api_bad(e, "messages", "messages[%zu].images: images are not supported (sasp models read text only)", i);
        return -1;
    }
    if (json_array_size(calls) > 0 || (calls && !json_is_null(calls) && !json_is_array(calls)) ||
        json_object_get(m, "function_call")) {
        api_bad(e, "messages", "messages[%zu].tool_calls: tool calls are not supported (see 'tools')", i);
        return -1;
    }
    return 0;
}

/* A message's content into out: a string or null; OpenAI also takes an array of text parts. */
static int chat_content(json_t *content, api_kind kind, size_t i, sasp_buf *out, api_error *e)
{
    if (json_is_string(content)) return sasp_buf_append(out, json_string_value(content), json_string_length(content));
    if (!content || json_is_null(content)) return 0;
    if (kind == API_CHAT && json_is_array(content)) {
        size_t k;
        json_t *part;
        json_array_foreach(content, k, part) {
            json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
            if (!json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text)) {
                api_bad(e, "messages", "messages[%zu].content[%zu]: only {\"type\": \"text\", \"text\": ...} parts "
                                       "are supported (sasp models read text only)", i, k);
                return -1;
            }
            sasp_buf_append(out, json_string_value(text), json_string_length(text));
        }
        return 0;
    }
    api_bad(e, "messages", kind == API_CHAT ? "messages[%zu].content must be a string, an array of text parts or null"
                                            : "messages[%zu].content must be a string", i);
    return -1;
}

char *api_render_chat(json_t *msgs, api_kind kind, int continue_last, api_error *e)
{
    if (!msgs || json_is_null(msgs)) {
        api_bad(e, "messages", "'messages' is required");
        return NULL;
    }
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        api_bad(e, "messages", "'messages' must be a non-empty array of {role, content} objects");
        return NULL;
    }
    sasp_buf out = {0};
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *label = chat_label(m, i, e);
        if (!label || chat_refuse_extras(m, i, e)) goto fail;
        sasp_buf_puts(&out, label);
        if (chat_content(json_object_get(m, "content"), kind, i, &out, e) < 0) goto fail;
        if (!(continue_last && i + 1 == json_array_size(msgs))) sasp_buf_puts(&out, "\n");
    }
    if (!continue_last) sasp_buf_puts(&out, "Assistant:");
    char *text = sasp_buf_take(&out, NULL);
    if (!text) api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    return text;
fail:
    sasp_buf_free(&out);
    return NULL;
}

/* --- lengths and the checks of a whole request --- */

int api_read_max_tokens(json_t *o, const char *name, int mode, const api_limits *lim, int *out, api_error *e)
{
    long long k;
    int got = api_get_int(o, name, &k, e);
    if (got <= 0) return got;
    if (mode == API_UNTIL_FULL && k <= 0) k = lim->n_ctx;
    if ((k < 0 || (k == 0 && mode != API_ZERO_SCORES)) || k > lim->n_ctx) {
        api_error_set(e, 400, "invalid_request_error", NULL, name,
                      "'%s' must be between 1 and the context size %d, got %lld%s", name, lim->n_ctx, k,
                      k == 0 ? " (0 only with echo and logprobs, which scores the prompt)" : "");
        return -1;
    }
    *out = (int)k;
    return 1;
}

/* Every prompt within the context, and at most API_MAX_SEQS sequences counting each prompt's n
 * choices. prompt_param names the field a too long prompt came from. */
int api_check_sequences(const api_request *r, const char *prompt_param, const api_limits *lim, api_error *e)
{
    for (int i = 0; i < r->n_seqs; i++) {
        if (r->n_prompt[i] > lim->n_ctx) {
            api_error_set(e, 400, "invalid_request_error", "context_length_exceeded", prompt_param,
                          "This model's maximum context length is %d tokens, but the prompt has %d tokens",
                          lim->n_ctx, r->n_prompt[i]);
            return -1;
        }
    }
    if (r->n_seqs * r->n_choices > API_MAX_SEQS) {
        api_bad(e, "n", "at most %d sequences (prompts x n) per request", API_MAX_SEQS);
        return -1;
    }
    return 0;
}

/* The healed bytes of fill-in-the-middle prompts, after expand_choices: sequence i*n + c has prompt i's
 * (the arrays hold API_MAX_SEQS entries: api_infill.c). */
static int expand_heal(api_request *r, int np, int n)
{
    if (!r->heal_text) return 0;
    for (int i = np - 1; i >= 0; i--) {
        char *h = r->heal_text[i];
        size_t len = r->heal_len[i];
        for (int c = n - 1; c >= 0; c--) {
            int j = i * n + c;
            r->heal_text[j] = c == 0 ? h : (h && len ? malloc(len) : NULL);
            if (c && h && len && !r->heal_text[j]) return -1;
            if (c && r->heal_text[j]) memcpy(r->heal_text[j], h, len);
            r->heal_len[j] = len;
        }
    }
    return 0;
}

/* n choices per prompt: prompt i becomes sequences i*n .. i*n+n-1, each with its own copy. */
static int expand_choices(api_request *r)
{
    int n = r->n_choices, np = r->n_seqs;
    if (n <= 1) return 0;
    int **p = calloc((size_t)(np * n), sizeof *p);
    int *npr = calloc((size_t)(np * n), sizeof *npr);
    char **pt = calloc((size_t)(np * n), sizeof *pt);
    if (!p || !npr || !pt) {
        free(p);
        free(npr);
        free(pt);
        return -1;
    }
    for (int i = 0; i < np; i++)
        for (int c = 0; c < n; c++) {
            int j = i * n + c;
            npr[j] = r->n_prompt[i];
            p[j] = c == 0 ? r->prompt[i] : malloc((size_t)npr[j] * sizeof **p);
            if (p[j] && c) memcpy(p[j], r->prompt[i], (size_t)npr[j] * sizeof **p);
            pt[j] = c == 0 ? r->prompt_text[i] : strdup(r->prompt_text[i] ? r->prompt_text[i] : "");
        }
    free(r->prompt);
    free(r->n_prompt);
    free(r->prompt_text);
    r->prompt = p;
    r->n_prompt = npr;
    r->prompt_text = pt;
    r->n_seqs = np * n;
    for (int j = 0; j < r->n_seqs; j++)
        if (!p[j] || !pt[j]) return -1;
    return expand_heal(r, np, n);
}

/* --- api_parse: the fields the dialects share, each read and checked once, then one function per
 * dialect (OpenAI completions and chat here, Ollama's generate and chat in api_ollama.c) that reads
 * them in its own order --- */

int api_read_common(json_t *root, api_request *r, api_error *e)
{
    const char *ignored;
    int cache_prompt = 1;
    if (api_get_str(root, "model", &ignored, e) < 0 || api_get_str(root, "user", &ignored, e) < 0 ||
        api_get_bool(root, "stream", &r->stream, e) < 0 || api_get_bool(root, "cache_prompt", &cache_prompt, e) < 0)
        return -1;
    r->gen.no_cache = !cache_prompt;
    return api_read_sampling(root, &r->gen.sampling, &r->seed_base, e);
}

int api_read_n_keep(json_t *o, const char *name, int *out, api_error *e)
{
    long long k;
    int got = api_get_int(o, name, &k, e);
    if (got <= 0) return got;
    if (k < -1) {
        api_bad(e, name, "'%s' must be >= -1 (-1: keep the whole prompt), got %lld", name, k);
        return -1;
    }
    *out = k > 1 << 30 ? 1 << 30 : (int)k;
    return 1;
}

/* A number of alternative tokens to report, 0 .. SASP_MAX_TOP_LOGPROBS. 0 absent, 1 read, -1 bad. */
static int read_top_count(json_t *o, const char *name, int *out, api_error *e)
{
    long long k;
    int got = api_get_int(o, name, &k, e);
    if (got <= 0) return got;
    if (k < 0 || k > SASP_MAX_TOP_LOGPROBS) {
        api_bad(e, name, "'%s' must be between 0 and %d", name, SASP_MAX_TOP_LOGPROBS);
        return -1;
    }
    *out = (int)k;
    return 1;
}

/* OpenAI's n (choices per prompt) and stream_options.include_usage. */
static int read_choices_and_usage(json_t *root, api_request *r, api_error *e)
{
    long long k;
    int got = api_get_int(root, "n", &k, e);
    if (got < 0) return -1;
    if (got && (k < 1 || k > 16)) {
        api_bad(e, "n", "'n' must be between 1 and 16");
        return -1;
    }
    if (got) r->n_choices = (int)k;
    json_t *so = json_object_get(root, "stream_options");
    if (!so || json_is_null(so)) return 0;
    if (!json_is_object(so)) {
        api_bad(e, "stream_options", "'stream_options' must be an object");
        return -1;
    }
    return api_get_bool(so, "include_usage", &r->include_usage, e) < 0 ? -1 : 0;
}

/* token_healing (default on) for a request whose prompts are text, unless something needs the
 * prompt's own tokens (echo, logprobs) or the output is constrained otherwise (a JSON format). */
int api_read_token_healing(json_t *root, api_request *r, api_error *e)
{
    int heal = 1;
    if (api_get_bool(root, "token_healing", &heal, e) < 0) return -1;
    r->gen.token_healing = heal && r->text_prompt && !r->echo && !r->gen.logprobs && !r->gen.json;
    return 0;
}

/* Completions' logprobs (a boolean, or how many alternatives) and echo, which with logprobs scores
 * the prompt too, as OpenAI does. */
static int read_completion_logprobs(json_t *root, api_request *r, api_error *e)
{
    json_t *lp = json_object_get(root, "logprobs");
    int got;
    if (json_is_boolean(lp)) {
        r->gen.logprobs = json_is_true(lp);
    } else if ((got = read_top_count(root, "logprobs", &r->gen.top_logprobs, e)) < 0) {
        return -1;
    } else if (got) {
        r->gen.logprobs = 1;
    }
    if (api_get_bool(root, "echo", &r->echo, e) < 0) return -1;
    r->gen.prompt_logprobs = r->echo && r->gen.logprobs;
    return 0;
}

/* What the output must be beyond sampling: response_format, logit_bias; what is refused. */
static int read_output_shape(json_t *root, api_request *r, const api_limits *lim, api_error *e)
{
    if (api_refuse_unsupported(root, r->kind, lim, e)) return -1;
    if (api_read_response_format(root, r, e)) return -1;
    return api_read_logit_bias(root, r, lim, e);
}

static int parse_completions(json_t *root, const api_limits *lim, api_request *r, api_error *e)
{
    if (api_read_common(root, r, e) || read_output_shape(root, r, lim, e)) return -1;
    if (read_completion_logprobs(root, r, e)) return -1;
    int zero = r->gen.prompt_logprobs ? API_ZERO_SCORES : API_AT_LEAST_ONE;
    if (api_read_max_tokens(root, "max_tokens", zero, lim, &r->gen.max_tokens, e) < 0) return -1;
    if (api_read_stop(root, &r->gen, e)) return -1;
    int n_stops = r->gen.n_stop;
    if (read_choices_and_usage(root, r, e)) return -1;
    if (api_get_bool(root, "ignore_eos", &r->gen.ignore_eos, e) < 0) return -1;
    if (read_completion_prompt(json_object_get(root, "prompt"), r, lim, e)) return -1;
    if (api_read_token_healing(root, r, e)) return -1;
    /* a plain prompt beyond the context is OpenAI's 400 unless "truncate": true; a fill-in-the-middle
     * one (suffix) is cut as /infill cuts it unless "truncate": false */
    int fim = json_is_string(json_object_get(root, "suffix")) && json_string_length(json_object_get(root, "suffix"));
    int truncate, n_keep = 0;
    if (api_read_truncation(root, fim, &truncate, e) || api_read_n_keep(root, "n_keep", &n_keep, e) < 0) return -1;
    if (api_apply_suffix(root, r, lim, truncate, e) < 0) return -1;
    if (!r->infill && api_fit_prompts(r, truncate, n_keep, "prompt", lim, e)) return -1;
    if (api_check_sequences(r, "prompt", lim, e) || api_check_json_budget(r, lim, n_stops, e)) return -1;
    return expand_choices(r);
}

/* Chat's logprobs (a boolean) and top_logprobs (alternatives, which need logprobs). */
static int read_chat_logprobs(json_t *root, sasp_gen_params *g, api_error *e)
{
    if (api_get_bool(root, "logprobs", &g->logprobs, e) < 0) return -1;
    int top = 0, got = read_top_count(root, "top_logprobs", &top, e);
    if (got < 0) return -1;
    if (got && !g->logprobs && top > 0) {
        api_bad(e, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
        return -1;
    }
    if (got) g->top_logprobs = top;
    return 0;
}

/* msgs through the chat template, as one prompt, and the template's stop strings. */
int api_add_chat_prompt(json_t *msgs, int continue_last, api_request *r, const api_limits *lim, api_error *e)
{
    char *text = api_render_chat(msgs, r->kind, continue_last, e);
    if (!text) return -1;
    int failed = api_add_text_prompt(r, text, strlen(text), lim, e);
    free(text);
    if (failed) return -1;
    r->text_prompt = 0; /* a template's text: never healed */
    return api_add_chat_stops(&r->gen);
}

int api_read_chat_prompt(json_t *root, api_request *r, const api_limits *lim, api_error *e)
{
    return api_add_chat_prompt(json_object_get(root, "messages"), 0, r, lim, e);
}

static int parse_chat(json_t *root, const api_limits *lim, api_request *r, api_error *e)
{
    if (api_read_common(root, r, e) || read_output_shape(root, r, lim, e)) return -1;
    int got = api_read_max_tokens(root, "max_tokens", API_AT_LEAST_ONE, lim, &r->gen.max_tokens, e);
    if (got == 0) got = api_read_max_tokens(root, "max_completion_tokens", API_AT_LEAST_ONE, lim, &r->gen.max_tokens, e);
    if (got < 0) return -1;
    if (api_read_stop(root, &r->gen, e)) return -1;
    int n_stops = r->gen.n_stop;
    if (read_chat_logprobs(root, &r->gen, e)) return -1;
    if (read_choices_and_usage(root, r, e)) return -1;
    if (api_get_bool(root, "ignore_eos", &r->gen.ignore_eos, e) < 0) return -1;
    if (api_read_chat_prompt(root, r, lim, e)) return -1;
    if (api_check_sequences(r, "messages", lim, e) || api_check_json_budget(r, lim, n_stops, e)) return -1;
    return expand_choices(r);
}

int api_parse(api_kind kind, const char *body, size_t len, const api_limits *lim, uint64_t random_seed,
              api_request *r, api_error *e)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->stream = api_kind_is_ollama(kind); /* Ollama streams by default, OpenAI does not */
    r->n_choices = 1;
    r->seed_base = random_seed; /* unless the request names a seed */
    sasp_sampling_defaults(&r->gen.sampling);
    r->gen.max_tokens = kind == API_COMPLETIONS ? 16 : lim->n_ctx;
    json_t *root = api_parse_body(body, len, e);
    if (!root) return -1;
    int rc = kind == API_COMPLETIONS        ? parse_completions(root, lim, r, e)
             : kind == API_CHAT             ? parse_chat(root, lim, r, e)
             : kind == API_GENERATE         ? api_parse_generate(root, lim, r, e)
             : kind == API_OLLAMA_CHAT      ? api_parse_ollama_chat(root, lim, r, e)
             : kind == API_LLAMA_COMPLETION ? api_parse_llama_completion(root, lim, r, e)
             : kind == API_MESSAGES         ? api_parse_messages(root, lim, r, e)
             : kind == API_RESPONSES        ? api_parse_responses(root, lim, r, e)
                                            : api_parse_infill(root, lim, r, e);
    json_decref(root);
    if (rc) {
        if (e->status == 0) api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    r->gen.sampling.seed = r->seed_base;
    return 0;
}

void api_request_free(api_request *r)
{
    for (int i = 0; i < r->n_seqs; i++) {
        free(r->prompt[i]);
        free(r->prompt_text[i]);
    }
    free(r->prompt);
    free(r->n_prompt);
    free(r->prompt_text);
    free(r->context);
    for (int i = 0; r->heal_text && i < API_MAX_SEQS; i++) free(r->heal_text[i]);
    free(r->heal_text);
    free(r->heal_len);
    for (int i = 0; i < r->n_response_fields; i++) free(r->response_fields[i]);
    free(r->response_fields);
    for (int i = 0; i < r->gen.n_stop; i++) free(r->gen.stop[i]);
    free((void *)r->gen.logit_bias);
    sasp_json_schema_free(r->schema);
    json_decref(r->repeats);
    memset(r, 0, sizeof *r);
}

int api_requested_model(const char *body, size_t len, int with_name, char *out, size_t outlen)
{
    out[0] = 0;
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *m = json_object_get(root, "model");
    if (!json_is_string(m) && with_name) m = json_object_get(root, "name");
    int named = json_is_string(m) && json_string_length(m) > 0;
    if (named) snprintf(out, outlen, "%s", json_string_value(m));
    json_decref(root);
    return named;
}

/* --- /tokenize, /detokenize --- */

char *api_tokenize(const char *body, size_t len, const api_limits *lim, api_error *e)
{
    json_t *root = api_parse_body(body, len, e);
    if (!root) return NULL;
    char *out = NULL;
    const char *content;
    int special = 1, pieces = 0, add_special = 0;
    int got = api_get_str(root, "content", &content, e);
    if (got == 0) api_bad(e, "content", "'content' (a string) is required");
    if (got <= 0 || api_get_bool(root, "parse_special", &special, e) < 0 || api_get_bool(root, "with_pieces", &pieces, e) < 0 ||
        api_get_bool(root, "add_special", &add_special, e) < 0)
        goto done;
    int *ids = NULL;
    int n = sasp_encode(lim->tok, content, json_string_length(json_object_get(root, "content")), special, &ids);
    if (n < 0) {
        api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        goto done;
    }
    json_t *arr = json_array();
    if (add_special) json_array_append_new(arr, json_integer(lim->bos));
    for (int i = 0; i < n; i++) {
        if (pieces) {
            size_t nb = 0;
            const char *b = sasp_token_bytes(lim->tok, ids[i], &nb);
            json_t *piece = b && api_utf8_valid(b, nb) ? json_stringn(b, nb) : api_token_bytes(lim->tok, ids[i]);
            json_array_append_new(arr, json_pack("{s:i,s:o}", "id", ids[i], "piece", piece));
        } else {
            json_array_append_new(arr, json_integer(ids[i]));
        }
    }
    free(ids);
    out = api_dump(json_pack("{s:o}", "tokens", arr));
done:
    json_decref(root);
    return out;
}

char *api_detokenize(const char *body, size_t len, const api_limits *lim, api_error *e)
{
    json_t *root = api_parse_body(body, len, e);
    if (!root) return NULL;
    char *out = NULL;
    json_t *t = json_object_get(root, "tokens");
    if (!json_is_array(t) || !api_all_of(t, api_is_int)) {
        api_bad(e, "tokens", "'tokens' must be an array of token ids");
        goto done;
    }
    size_t n = json_array_size(t), i;
    int *ids = malloc((n + 1) * sizeof *ids);
    json_t *v;
    json_array_foreach(t, i, v) {
        long long id = json_integer_value(v);
        if (id < 0 || id >= lim->vocab) {
            free(ids);
            api_bad(e, "tokens", "token ids must be in [0, %d), got %lld", lim->vocab, id);
            goto done;
        }
        ids[i] = (int)id;
    }
    size_t tl = 0;
    char *text = sasp_decode(lim->tok, ids, (int)n, &tl);
    free(ids);
    if (!text) {
        api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        goto done;
    }
    out = api_dump(json_pack("{s:o}", "content", api_json_text(text, tl)));
    free(text);
done:
    json_decref(root);
    return out;
}
