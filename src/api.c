/* api.c: request bodies -> parameters, events -> response bytes, for sasp-server's three generation
 * endpoints (OpenAI completions and chat completions, Ollama generate) and /tokenize, /detokenize.
 * See api.h; the user-facing description of every field is docs/api.md. */
#include "api.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

/* --- errors --- */

void api_error_set(api_error *e, int status, const char *type, const char *code, const char *param,
                   const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

static void bad(api_error *e, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void bad(api_error *e, const char *param, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api_error_set(e, 400, "invalid_request_error", NULL, param, "%s", msg);
}

/* jansson refuses strings that are not valid UTF-8; messages can quote user input, so clean them. */
static json_t *json_text(const char *s, size_t n);

char *api_error_body(const api_error *e)
{
    json_t *err = json_object();
    json_object_set_new(err, "message", json_text(e->message, strlen(e->message)));
    json_object_set_new(err, "type", json_string(e->type ? e->type : "invalid_request_error"));
    json_object_set_new(err, "param", e->param[0] ? json_text(e->param, strlen(e->param)) : json_null());
    json_object_set_new(err, "code", e->code ? json_string(e->code) : json_null());
    json_t *root = json_pack("{s:o}", "error", err);
    char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(7));
    json_decref(root);
    return s;
}

/* --- UTF-8 --- */

int api_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int len;
        unsigned cp, min;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (i + (size_t)len > n) return 0;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += (size_t)len;
    }
    return 1;
}

/* s[0..n) with invalid sequences replaced by U+FFFD (the tokenizer's streaming decoder does it). */
static char *utf8_clean(const char *s, size_t n, size_t *out_len)
{
    char *out = malloc(3 * n + 16);
    if (!out) return NULL;
    sasp_utf8_stream st;
    sasp_stream_init(&st);
    size_t w = sasp_stream_push(&st, s, n, out, 3 * n + 8);
    w += sasp_stream_finish(&st, out + w, 12);
    out[w] = 0;
    if (out_len) *out_len = w;
    return out;
}

static json_t *json_text(const char *s, size_t n)
{
    if (api_utf8_valid(s, n)) return json_stringn(s, n);
    size_t m;
    char *c = utf8_clean(s, n, &m);
    json_t *j = c ? json_stringn(c, m) : json_string("");
    free(c);
    return j;
}

/* --- reading fields: 0 absent or null, 1 read, -1 wrong type or range (e filled) --- */

static int get_num(json_t *o, const char *k, double *out, api_error *e)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) {
        bad(e, k, "'%s' must be a number", k);
        return -1;
    }
    *out = json_number_value(v);
    if (!isfinite(*out)) {
        bad(e, k, "'%s' must be finite", k);
        return -1;
    }
    return 1;
}

static int get_int(json_t *o, const char *k, long long *out, api_error *e)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 1;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 9e15) {
            *out = (long long)d;
            return 1;
        }
    }
    bad(e, k, "'%s' must be an integer", k);
    return -1;
}

static int get_bool(json_t *o, const char *k, int *out, api_error *e)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) {
        bad(e, k, "'%s' must be a boolean", k);
        return -1;
    }
    *out = json_is_true(v);
    return 1;
}

static int get_str(json_t *o, const char *k, const char **out, api_error *e)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) {
        bad(e, k, "'%s' must be a string", k);
        return -1;
    }
    *out = json_string_value(v);
    return 1;
}

/* A number field within [lo, hi] (lo_open / hi_open: exclusive). */
static int get_range(json_t *o, const char *k, float *out, double lo, int lo_open, double hi, int hi_open,
                     api_error *e)
{
    double d;
    int r = get_num(o, k, &d, e);
    if (r <= 0) return r;
    if ((lo_open ? d <= lo : d < lo) || (hi_open ? d >= hi : d > hi)) {
        if (hi >= 1e9)
            bad(e, k, "'%s' must be %s %g, got %g", k, lo_open ? ">" : ">=", lo, d);
        else
            bad(e, k, "'%s' must be in %c%g, %g%c, got %g", k, lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']', d);
        return -1;
    }
    *out = (float)d;
    return 1;
}

static json_t *parse_body(const char *body, size_t len, api_error *e)
{
    json_error_t je;
    if (!api_utf8_valid(body, len)) {
        bad(e, NULL, "the request body is not valid UTF-8");
        return NULL;
    }
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        bad(e, NULL, "malformed JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        bad(e, NULL, "the request body must be a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

/* --- sampling and stopping parameters, shared by every endpoint --- */

/* One stop string, copied (0, or -1 when out of memory). */
static int add_stop(sasp_gen_params *g, const char *stop)
{
    char *copy = strdup(stop);
    if (!copy) return -1;
    g->stop[g->n_stop++] = copy;
    return 0;
}

/* "stop" of o: a string or an array of strings; empty ones are ignored. Leaves room for the two the
 * chat template adds. */
static int read_stop(json_t *o, sasp_gen_params *g, api_error *e)
{
    json_t *v = json_object_get(o, "stop");
    if (!v || json_is_null(v)) return 0;
    if (json_is_string(v)) return json_string_length(v) > 0 ? add_stop(g, json_string_value(v)) : 0;
    if (!json_is_array(v)) {
        bad(e, "stop", "'stop' must be a string or an array of strings");
        return -1;
    }
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s)) {
            bad(e, "stop", "'stop' must be a string or an array of strings");
            return -1;
        }
        if (json_string_length(s) == 0) continue;
        if (g->n_stop >= SASP_MAX_STOPS - 2) {
            bad(e, "stop", "at most %d stop strings", SASP_MAX_STOPS - 2);
            return -1;
        }
        if (add_stop(g, json_string_value(s))) return -1;
    }
    return 0;
}

/* The sampling fields of o (the request, or Ollama's options), OpenAI and llama.cpp names; *seed is
 * set only when o names one (-1, as in llama.cpp, means random: the seed already there stays). */
static int read_sampling(json_t *o, sasp_sampling *p, uint64_t *seed, api_error *e)
{
    long long k;
    int r;
    if (get_range(o, "temperature", &p->temperature, 0, 0, 1e9, 0, e) < 0) return -1;
    if (get_range(o, "top_p", &p->top_p, 0, 1, 1, 0, e) < 0) return -1;
    if (get_range(o, "min_p", &p->min_p, 0, 0, 1, 0, e) < 0) return -1;
    if ((r = get_int(o, "top_k", &k, e)) < 0) return -1;
    if (r) {
        if (k < 0) {
            bad(e, "top_k", "'top_k' must be >= 0 (0 = off), got %lld", k);
            return -1;
        }
        p->top_k = k > 1 << 30 ? 1 << 30 : (int)k;
    }
    if (get_range(o, "repetition_penalty", &p->repeat_penalty, 0, 1, 1e9, 0, e) < 0) return -1;
    if (get_range(o, "repeat_penalty", &p->repeat_penalty, 0, 1, 1e9, 0, e) < 0) return -1;
    if ((r = get_int(o, "repeat_last_n", &k, e)) < 0) return -1;
    if (r) {
        if (k < -1) {
            bad(e, "repeat_last_n", "'repeat_last_n' must be >= -1 (-1 = whole sequence)");
            return -1;
        }
        p->repeat_last_n = k > 1 << 30 ? 1 << 30 : (int)k;
    }
    if (get_range(o, "frequency_penalty", &p->frequency_penalty, -2, 0, 2, 0, e) < 0) return -1;
    if (get_range(o, "presence_penalty", &p->presence_penalty, -2, 0, 2, 0, e) < 0) return -1;
    if ((r = get_int(o, "seed", &k, e)) < 0) return -1;
    if (r && k != -1) *seed = (uint64_t)k;
    return 0;
}

/* --- prompts: each becomes a sequence's token ids and its text --- */

static int push_prompt(api_request *r, int *ids, int n, char *text)
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
static int add_text_prompt(api_request *r, const char *s, size_t len, const api_limits *lim, api_error *e)
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
    return push_prompt(r, ids, n, text);
}

static int add_token_prompt(api_request *r, json_t *arr, const api_limits *lim, api_error *e)
{
    size_t n = json_array_size(arr), i;
    if (n == 0) {
        bad(e, "prompt", "a token prompt must not be empty");
        return -1;
    }
    int *ids = malloc(n * sizeof *ids);
    if (!ids) return -1;
    json_t *v;
    json_array_foreach(arr, i, v) {
        long long id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (!json_is_integer(v) || id < 0 || id >= lim->vocab) {
            free(ids);
            bad(e, "prompt", "token ids must be integers in [0, %d)", lim->vocab);
            return -1;
        }
        ids[i] = (int)id;
    }
    size_t tl;
    char *raw = sasp_decode(lim->tok, ids, (int)n, &tl);
    char *text = raw ? utf8_clean(raw, tl, NULL) : strdup("");
    free(raw);
    return push_prompt(r, ids, (int)n, text);
}

static int all_of(json_t *arr, int (*pred)(const json_t *))
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (!pred(v)) return 0;
    return 1;
}
static int is_int(const json_t *v) { return json_is_integer(v); }
static int is_str(const json_t *v) { return json_is_string(v); }
static int is_arr(const json_t *v) { return json_is_array(v); }

/* Completions' prompt: a string, strings, token ids, or arrays of token ids; one sequence each. */
static int read_completion_prompt(json_t *p, api_request *r, const api_limits *lim, api_error *e)
{
    if (!p || json_is_null(p)) {
        bad(e, "prompt", "'prompt' is required");
        return -1;
    }
    if (json_is_string(p)) return add_text_prompt(r, json_string_value(p), json_string_length(p), lim, e);
    if (!json_is_array(p) || json_array_size(p) == 0) {
        bad(e, "prompt", "'prompt' must be a string, an array of strings, an array of token ids or an "
                         "array of arrays of token ids, and not empty");
        return -1;
    }
    if (json_array_size(p) > API_MAX_SEQS && !all_of(p, is_int)) {
        bad(e, "prompt", "at most %d prompts per request", API_MAX_SEQS);
        return -1;
    }
    if (all_of(p, is_int)) return add_token_prompt(r, p, lim, e);
    size_t i;
    json_t *v;
    if (all_of(p, is_str)) {
        json_array_foreach(p, i, v) if (add_text_prompt(r, json_string_value(v), json_string_length(v), lim, e)) return -1;
        return 0;
    }
    if (all_of(p, is_arr)) {
        json_array_foreach(p, i, v) {
            if (!all_of(v, is_int)) {
                bad(e, "prompt", "each array in 'prompt' must hold token ids (integers)");
                return -1;
            }
            if (add_token_prompt(r, v, lim, e)) return -1;
        }
        return 0;
    }
    bad(e, "prompt", "'prompt' mixes types: use a string, strings, token ids or arrays of token ids");
    return -1;
}

/* --- the chat template --- */

/* The stop strings the template adds to what the request asks, so the model does not write the
 * next turn. */
static const char *const chat_stops[] = {"\nUser:", "\nSystem:", NULL};

/* The plain chat template (docs/api.md): for each message "Role: content\n" with Role one of
 * System, User, Assistant, Tool, then "Assistant:". Returns malloc'd text, or NULL + e. */
static char *chat_render(json_t *msgs, api_error *e)
{
    if (!msgs || json_is_null(msgs)) {
        bad(e, "messages", "'messages' is required");
        return NULL;
    }
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        bad(e, "messages", "'messages' must be a non-empty array of {role, content} objects");
        return NULL;
    }
    sasp_buf out = {0};
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_object(m) || !json_is_string(role)) {
            bad(e, "messages", "messages[%zu] must be an object with a string 'role'", i);
            goto fail;
        }
        const char *r = json_string_value(role), *label;
        if (!strcmp(r, "system") || !strcmp(r, "developer")) label = "System: ";
        else if (!strcmp(r, "user")) label = "User: ";
        else if (!strcmp(r, "assistant")) label = "Assistant: ";
        else if (!strcmp(r, "tool")) label = "Tool: ";
        else {
            bad(e, "messages", "messages[%zu].role must be system, developer, user, assistant or tool", i);
            goto fail;
        }
        sasp_buf_puts(&out, label);
        if (json_is_string(content)) {
            sasp_buf_append(&out, json_string_value(content), json_string_length(content));
        } else if (json_is_array(content)) {
            size_t k;
            json_t *part;
            json_array_foreach(content, k, part) {
                json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
                if (!json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text)) {
                    bad(e, "messages", "messages[%zu].content[%zu]: only {\"type\": \"text\", \"text\": ...} parts "
                                       "are supported", i, k);
                    goto fail;
                }
                sasp_buf_append(&out, json_string_value(text), json_string_length(text));
            }
        } else if (content && !json_is_null(content)) {
            bad(e, "messages", "messages[%zu].content must be a string, an array of text parts or null", i);
            goto fail;
        }
        sasp_buf_puts(&out, "\n");
    }
    sasp_buf_puts(&out, "Assistant:");
    char *text = sasp_buf_take(&out, NULL);
    if (!text) api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    return text;
fail:
    sasp_buf_free(&out);
    return NULL;
}

/* --- api_parse: the fields the dialects share, each read and checked once, then one function per
 * dialect (OpenAI completions, OpenAI chat, Ollama generate) that reads them in its own order --- */

/* model and user are checked and ignored (the loaded model answers), then stream and the sampling
 * fields of the top level. */
static int read_common(json_t *root, api_request *r, api_error *e)
{
    const char *ignored;
    if (get_str(root, "model", &ignored, e) < 0 || get_str(root, "user", &ignored, e) < 0 ||
        get_bool(root, "stream", &r->stream, e) < 0)
        return -1;
    return read_sampling(root, &r->gen.sampling, &r->seed_base, e);
}

/* The length limit in field `name` of o: 1 .. the context; with until_full (Ollama's num_predict),
 * a value <= 0 means until the context is full. 0 absent, 1 read, -1 bad (e filled). */
static int read_max_tokens(json_t *o, const char *name, int until_full, const api_limits *lim, int *out,
                           api_error *e)
{
    long long k;
    int got = get_int(o, name, &k, e);
    if (got <= 0) return got;
    if (until_full && k <= 0) k = lim->n_ctx;
    if (k <= 0 || k > lim->n_ctx) {
        api_error_set(e, 400, "invalid_request_error", NULL, name,
                      "'%s' must be between 1 and the context size %d, got %lld", name, lim->n_ctx, k);
        return -1;
    }
    *out = (int)k;
    return 1;
}

/* A number of alternative tokens to report, 0 .. SASP_MAX_TOP_LOGPROBS. 0 absent, 1 read, -1 bad. */
static int read_top_count(json_t *o, const char *name, int *out, api_error *e)
{
    long long k;
    int got = get_int(o, name, &k, e);
    if (got <= 0) return got;
    if (k < 0 || k > SASP_MAX_TOP_LOGPROBS) {
        bad(e, name, "'%s' must be between 0 and %d", name, SASP_MAX_TOP_LOGPROBS);
        return -1;
    }
    *out = (int)k;
    return 1;
}

/* OpenAI's n (choices per prompt) and stream_options.include_usage. */
static int read_choices_and_usage(json_t *root, api_request *r, api_error *e)
{
    long long k;
    int got = get_int(root, "n", &k, e);
    if (got < 0) return -1;
    if (got && (k < 1 || k > 16)) {
        bad(e, "n", "'n' must be between 1 and 16");
        return -1;
    }
    if (got) r->n_choices = (int)k;
    json_t *so = json_object_get(root, "stream_options");
    if (!so || json_is_null(so)) return 0;
    if (!json_is_object(so)) {
        bad(e, "stream_options", "'stream_options' must be an object");
        return -1;
    }
    return get_bool(so, "include_usage", &r->include_usage, e) < 0 ? -1 : 0;
}

/* Every prompt within the context, and at most API_MAX_SEQS sequences counting each prompt's n
 * choices. prompt_param names the field a too long prompt came from. */
static int check_sequences(const api_request *r, const char *prompt_param, const api_limits *lim, api_error *e)
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
        bad(e, "n", "at most %d sequences (prompts x n) per request", API_MAX_SEQS);
        return -1;
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
    if (get_bool(root, "echo", &r->echo, e) < 0) return -1;
    r->gen.prompt_logprobs = r->echo && r->gen.logprobs;
    return 0;
}

static int parse_completions(json_t *root, const api_limits *lim, api_request *r, api_error *e)
{
    if (read_common(root, r, e)) return -1;
    if (read_max_tokens(root, "max_tokens", 0, lim, &r->gen.max_tokens, e) < 0) return -1;
    if (read_stop(root, &r->gen, e)) return -1;
    if (read_completion_logprobs(root, r, e)) return -1;
    if (read_choices_and_usage(root, r, e)) return -1;
    if (get_bool(root, "ignore_eos", &r->gen.ignore_eos, e) < 0) return -1;
    if (read_completion_prompt(json_object_get(root, "prompt"), r, lim, e)) return -1;
    if (check_sequences(r, "prompt", lim, e)) return -1;
    return expand_choices(r);
}

/* Chat's logprobs (a boolean) and top_logprobs (alternatives, which need logprobs). */
static int read_chat_logprobs(json_t *root, sasp_gen_params *g, api_error *e)
{
    if (get_bool(root, "logprobs", &g->logprobs, e) < 0) return -1;
    int top = 0, got = read_top_count(root, "top_logprobs", &top, e);
    if (got < 0) return -1;
    if (got && !g->logprobs && top > 0) {
        bad(e, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
        return -1;
    }
    if (got) g->top_logprobs = top;
    return 0;
}

/* The messages through the chat template, as one prompt, and the template's stop strings. */
static int read_chat_prompt(json_t *root, api_request *r, const api_limits *lim, api_error *e)
{
    char *text = chat_render(json_object_get(root, "messages"), e);
    if (!text) return -1;
    int failed = add_text_prompt(r, text, strlen(text), lim, e);
    free(text);
    if (failed) return -1;
    for (int i = 0; chat_stops[i]; i++)
        if (add_stop(&r->gen, chat_stops[i])) return -1;
    return 0;
}

static int parse_chat(json_t *root, const api_limits *lim, api_request *r, api_error *e)
{
    if (read_common(root, r, e)) return -1;
    int got = read_max_tokens(root, "max_tokens", 0, lim, &r->gen.max_tokens, e);
    if (got == 0) got = read_max_tokens(root, "max_completion_tokens", 0, lim, &r->gen.max_tokens, e);
    if (got < 0) return -1;
    if (read_stop(root, &r->gen, e)) return -1;
    if (read_chat_logprobs(root, &r->gen, e)) return -1;
    if (read_choices_and_usage(root, r, e)) return -1;
    if (get_bool(root, "ignore_eos", &r->gen.ignore_eos, e) < 0) return -1;
    if (read_chat_prompt(root, r, lim, e)) return -1;
    if (check_sequences(r, "messages", lim, e)) return -1;
    return expand_choices(r);
}

/* Ollama's context (the ids an earlier answer returned) goes before the prompt's ids; an empty
 * prompt's BOS token is not needed after it. */
static int prepend_context(api_request *r, json_t *ctx, int empty_prompt, const api_limits *lim, api_error *e)
{
    size_t nc = json_array_size(ctx), i;
    int *ids = malloc((nc + (size_t)r->n_prompt[0]) * sizeof *ids);
    if (!ids) return -1;
    json_t *v;
    json_array_foreach(ctx, i, v) {
        long long id = json_integer_value(v);
        if (id < 0 || id >= lim->vocab) {
            free(ids);
            bad(e, "context", "token ids must be in [0, %d)", lim->vocab);
            return -1;
        }
        ids[i] = (int)id;
    }
    int np = empty_prompt ? 0 : r->n_prompt[0];
    memcpy(ids + nc, r->prompt[0], (size_t)np * sizeof *ids);
    free(r->prompt[0]);
    r->prompt[0] = ids;
    r->n_prompt[0] = (int)nc + np;
    return 0;
}

/* Ollama's prompt: "system\n\n" (unless raw) then prompt, after the context's ids. */
static int read_generate_prompt(json_t *root, api_request *r, const api_limits *lim, api_error *e)
{
    const char *prompt = "", *system = NULL;
    int raw = 0;
    if (get_str(root, "prompt", &prompt, e) < 0 || get_str(root, "system", &system, e) < 0 ||
        get_bool(root, "raw", &raw, e) < 0)
        return -1;
    json_t *ctx = json_object_get(root, "context");
    if (ctx && !json_is_null(ctx) && (!json_is_array(ctx) || !all_of(ctx, is_int))) {
        bad(e, "context", "'context' must be an array of token ids");
        return -1;
    }
    r->empty = prompt[0] == 0 && json_array_size(ctx) == 0;
    sasp_buf text = {0};
    if (system && system[0] && !raw) {
        sasp_buf_puts(&text, system);
        sasp_buf_puts(&text, "\n\n");
    }
    sasp_buf_puts(&text, prompt);
    size_t tn;
    char *t = sasp_buf_take(&text, &tn);
    if (!t) return -1;
    int failed = add_text_prompt(r, t, tn, lim, e);
    free(t);
    if (failed) return -1;
    return json_array_size(ctx) ? prepend_context(r, ctx, prompt[0] == 0, lim, e) : 0;
}

/* Ollama: the sampling fields, num_predict and stop may also be in "options" (which win). */
static int parse_generate(json_t *root, const api_limits *lim, api_request *r, api_error *e)
{
    if (read_common(root, r, e)) return -1;
    json_t *opts = json_object_get(root, "options");
    if (opts && json_is_null(opts)) opts = NULL;
    if (opts && !json_is_object(opts)) {
        bad(e, "options", "'options' must be an object");
        return -1;
    }
    if (opts && read_sampling(opts, &r->gen.sampling, &r->seed_base, e)) return -1;
    if (read_max_tokens(opts ? opts : root, "num_predict", 1, lim, &r->gen.max_tokens, e) < 0) return -1;
    if (read_stop(root, &r->gen, e)) return -1;
    if (opts && read_stop(opts, &r->gen, e)) return -1;
    if (get_bool(root, "ignore_eos", &r->gen.ignore_eos, e) < 0) return -1;
    if (read_generate_prompt(root, r, lim, e)) return -1;
    if (check_sequences(r, "prompt", lim, e)) return -1;
    /* the prompt's ids come back in the answer's "context" */
    r->context = malloc((size_t)r->n_prompt[0] * sizeof *r->context);
    if (r->context) memcpy(r->context, r->prompt[0], (size_t)r->n_prompt[0] * sizeof *r->context);
    return 0;
}

int api_parse(api_kind kind, const char *body, size_t len, const api_limits *lim, uint64_t random_seed,
              api_request *r, api_error *e)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->stream = kind == API_GENERATE; /* Ollama streams by default, OpenAI does not */
    r->n_choices = 1;
    r->seed_base = random_seed; /* unless the request names a seed */
    sasp_sampling_defaults(&r->gen.sampling);
    r->gen.max_tokens = kind == API_COMPLETIONS ? 16 : lim->n_ctx;
    json_t *root = parse_body(body, len, e);
    if (!root) return -1;
    int rc = kind == API_COMPLETIONS ? parse_completions(root, lim, r, e)
             : kind == API_CHAT      ? parse_chat(root, lim, r, e)
                                     : parse_generate(root, lim, r, e);
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
    for (int i = 0; i < r->gen.n_stop; i++) free(r->gen.stop[i]);
    memset(r, 0, sizeof *r);
}

/* --- /tokenize, /detokenize --- */

static char *dump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(7));
    json_decref(j);
    return s;
}

/* A token's text for JSON: itself when valid UTF-8, else "bytes:\xNN..." as OpenAI writes it. */
static json_t *token_string(const sasp_tokenizer *tok, int id)
{
    size_t n = 0;
    const char *b = sasp_token_bytes(tok, id, &n);
    if (!b) return json_string("");
    if (api_utf8_valid(b, n)) return json_stringn(b, n);
    char buf[6 + 4 * 64 + 1];
    size_t w = (size_t)snprintf(buf, sizeof buf, "bytes:");
    for (size_t i = 0; i < n && w + 4 < sizeof buf; i++)
        w += (size_t)snprintf(buf + w, sizeof buf - w, "\\x%02x", (unsigned char)b[i]);
    return json_string(buf);
}

static json_t *token_bytes(const sasp_tokenizer *tok, int id)
{
    size_t n = 0;
    const unsigned char *b = (const unsigned char *)sasp_token_bytes(tok, id, &n);
    json_t *a = json_array();
    for (size_t i = 0; b && i < n; i++) json_array_append_new(a, json_integer(b[i]));
    return a;
}

char *api_tokenize(const char *body, size_t len, const api_limits *lim, api_error *e)
{
    json_t *root = parse_body(body, len, e);
    if (!root) return NULL;
    char *out = NULL;
    const char *content;
    int special = 1, pieces = 0, add_special = 0;
    int got = get_str(root, "content", &content, e);
    if (got == 0) bad(e, "content", "'content' (a string) is required");
    if (got <= 0 || get_bool(root, "parse_special", &special, e) < 0 || get_bool(root, "with_pieces", &pieces, e) < 0 ||
        get_bool(root, "add_special", &add_special, e) < 0)
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
            json_t *piece = b && api_utf8_valid(b, nb) ? json_stringn(b, nb) : token_bytes(lim->tok, ids[i]);
            json_array_append_new(arr, json_pack("{s:i,s:o}", "id", ids[i], "piece", piece));
        } else {
            json_array_append_new(arr, json_integer(ids[i]));
        }
    }
    free(ids);
    out = dump(json_pack("{s:o}", "tokens", arr));
done:
    json_decref(root);
    return out;
}

char *api_detokenize(const char *body, size_t len, const api_limits *lim, api_error *e)
{
    json_t *root = parse_body(body, len, e);
    if (!root) return NULL;
    char *out = NULL;
    json_t *t = json_object_get(root, "tokens");
    if (!json_is_array(t) || !all_of(t, is_int)) {
        bad(e, "tokens", "'tokens' must be an array of token ids");
        goto done;
    }
    size_t n = json_array_size(t), i;
    int *ids = malloc((n + 1) * sizeof *ids);
    json_t *v;
    json_array_foreach(t, i, v) {
        long long id = json_integer_value(v);
        if (id < 0 || id >= lim->vocab) {
            free(ids);
            bad(e, "tokens", "token ids must be in [0, %d), got %lld", lim->vocab, id);
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
    out = dump(json_pack("{s:o}", "content", json_text(text, tl)));
    free(text);
done:
    json_decref(root);
    return out;
}

/* --- writing responses --- */

typedef struct choice {
    sasp_buf text;       /* non-stream: the text so far */
    const char *finish;
    json_t *lp;          /* accumulated logprobs (non-stream) */
    size_t offset;       /* completions text_offset: bytes of token text so far */
    int prompt_tokens, completion_tokens;
    int64_t total_ns, prompt_ns, eval_ns;
    int *ids;            /* generate: generated ids for "context" */
    int n_ids, cap_ids;
} choice;

struct api_out {
    api_kind kind;
    int stream, include_usage, echo, logprobs, n_choices_per_prompt;
    char id[48];
    char *model;
    long created;
    const sasp_tokenizer *tok;
    int n;
    choice *ch;
    char **prompt_text;
    int *context, n_context;
    int failed;
    char *error;
};

api_out *api_out_new(const api_request *r, const char *model, const sasp_tokenizer *tok, long created)
{
    static unsigned long counter;
    api_out *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->kind = r->kind;
    o->stream = r->stream;
    o->include_usage = r->include_usage;
    o->echo = r->echo;
    o->logprobs = r->gen.logprobs;
    o->n_choices_per_prompt = r->n_choices > 0 ? r->n_choices : 1;
    o->model = strdup(model);
    o->created = created;
    o->tok = tok;
    unsigned long c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    snprintf(o->id, sizeof o->id, "%s-%lx%06lx", r->kind == API_CHAT ? "chatcmpl" : "cmpl", (unsigned long)created,
             c & 0xffffff);
    o->ch = calloc((size_t)(r->n_seqs > 0 ? r->n_seqs : 1), sizeof *o->ch);
    o->prompt_text = calloc((size_t)(r->n_seqs > 0 ? r->n_seqs : 1), sizeof *o->prompt_text);
    if (!o->model || !o->ch || !o->prompt_text) {
        api_out_free(o);
        return NULL;
    }
    o->n = r->n_seqs;
    for (int i = 0; i < r->n_seqs; i++) {
        o->prompt_text[i] = strdup(r->prompt_text[i] ? r->prompt_text[i] : "");
        if (!o->prompt_text[i]) {
            api_out_free(o);
            return NULL;
        }
        o->ch[i].prompt_tokens = r->n_prompt[i];
    }
    if (r->context) {
        o->n_context = r->n_prompt[0];
        o->context = malloc((size_t)o->n_context * sizeof *o->context);
        if (o->context) memcpy(o->context, r->context, (size_t)o->n_context * sizeof *o->context);
        else o->n_context = 0;
    }
    return o;
}

void api_out_free(api_out *o)
{
    if (!o) return;
    for (int i = 0; i < o->n; i++) {
        sasp_buf_free(&o->ch[i].text);
        json_decref(o->ch[i].lp);
        free(o->ch[i].ids);
        free(o->prompt_text[i]);
    }
    free(o->ch);
    free(o->prompt_text);
    free(o->context);
    free(o->model);
    free(o->error);
    free(o);
}

void api_out_usage(const api_out *o, int *prompt_tokens, int *completion_tokens)
{
    int p = 0, c = 0;
    for (int i = 0; i < o->n; i++) {
        if (i % o->n_choices_per_prompt == 0) p += o->ch[i].prompt_tokens; /* a prompt's n choices share it */
        c += o->ch[i].completion_tokens;
    }
    *prompt_tokens = p;
    *completion_tokens = c;
}

int api_out_failed(const api_out *o) { return o->failed; }

/* RFC 3339 UTC with nanoseconds, as Ollama writes created_at. */
static json_t *created_at(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char buf[64];
    size_t w = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + w, sizeof buf - w, ".%09ldZ", ts.tv_nsec);
    return json_string(buf);
}

/* Completions' top_logprobs entry: {token text: logprob} for a token's alternatives. */
static json_t *top_object(const sasp_tokenizer *tok, const sasp_token_info *ti)
{
    json_t *top = json_object();
    for (int k = 0; k < ti->n_top; k++) {
        json_t *s = token_string(tok, ti->top[k].id);
        json_object_set_new(top, json_string_value(s), json_real(ti->top[k].logprob));
        json_decref(s);
    }
    return top;
}

static json_t *completion_logprobs_new(void)
{
    return json_pack("{s:[],s:[],s:[],s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

/* Logprobs of ev's tokens: completions' {tokens, token_logprobs, top_logprobs, text_offset} or chat's
 * {content: [...]}; appended to acc when acc is given, else returned fresh. */
static json_t *logprobs_json(api_out *o, choice *c, const sasp_event *ev, json_t *acc)
{
    if (!o->logprobs || !ev->info) return acc;
    if (o->kind == API_CHAT) {
        json_t *lp = acc ? acc : json_pack("{s:[]}", "content");
        json_t *content = json_object_get(lp, "content");
        for (int i = 0; i < ev->n_ids; i++) {
            const sasp_token_info *ti = &ev->info[i];
            json_t *top = json_array();
            for (int k = 0; k < ti->n_top; k++)
                json_array_append_new(top, json_pack("{s:o,s:f,s:o}", "token", token_string(o->tok, ti->top[k].id),
                                                     "logprob", (double)ti->top[k].logprob, "bytes",
                                                     token_bytes(o->tok, ti->top[k].id)));
            json_array_append_new(content, json_pack("{s:o,s:f,s:o,s:o}", "token", token_string(o->tok, ti->id),
                                                      "logprob", (double)ti->logprob, "bytes",
                                                      token_bytes(o->tok, ti->id), "top_logprobs", top));
        }
        return lp;
    }
    json_t *lp = acc ? acc : completion_logprobs_new();
    json_t *toks = json_object_get(lp, "tokens"), *lps = json_object_get(lp, "token_logprobs"),
           *tops = json_object_get(lp, "top_logprobs"), *offs = json_object_get(lp, "text_offset");
    for (int i = 0; i < ev->n_ids; i++) {
        const sasp_token_info *ti = &ev->info[i];
        json_array_append_new(toks, token_string(o->tok, ti->id));
        json_array_append_new(lps, json_real(ti->logprob));
        json_array_append_new(tops, top_object(o->tok, ti));
        json_array_append_new(offs, json_integer((json_int_t)c->offset));
        size_t nb = 0;
        sasp_token_bytes(o->tok, ti->id, &nb);
        c->offset += nb;
    }
    return lp;
}

/* The prompt's logprobs in the completions shape (echo with logprobs): the first token has none. */
static json_t *prompt_logprobs_json(api_out *o, const sasp_event *ev, json_t *acc)
{
    json_t *lp = acc ? acc : completion_logprobs_new();
    json_t *toks = json_object_get(lp, "tokens"), *lps = json_object_get(lp, "token_logprobs"),
           *tops = json_object_get(lp, "top_logprobs"), *offs = json_object_get(lp, "text_offset");
    size_t offset = 0;
    for (int i = 0; i < ev->n_ids; i++) {
        json_array_append_new(toks, token_string(o->tok, ev->ids[i]));
        json_array_append_new(offs, json_integer((json_int_t)offset));
        size_t nb = 0;
        sasp_token_bytes(o->tok, ev->ids[i], &nb);
        offset += nb;
        if (i == 0) {
            json_array_append_new(lps, json_null());
            json_array_append_new(tops, json_null());
            continue;
        }
        const sasp_token_info *ti = &ev->prompt_info[i - 1];
        json_array_append_new(lps, json_real(ti->logprob));
        json_array_append_new(tops, top_object(o->tok, ti));
    }
    return lp;
}

/* The bytes gathered in b, handed to the caller, or NULL when there are none. */
static char *take(sasp_buf *b, size_t *len)
{
    if (b->len == 0) {
        sasp_buf_free(b);
        *len = 0;
        return NULL;
    }
    return sasp_buf_take(b, len);
}

/* "data: <json>\n\n" (SSE) or "<json>\n" (NDJSON), appended to b; j is consumed. */
static void emit(sasp_buf *b, api_kind kind, json_t *j)
{
    char *s = dump(j);
    if (!s) return;
    if (kind != API_GENERATE) sasp_buf_puts(b, "data: ");
    sasp_buf_puts(b, s);
    sasp_buf_puts(b, kind == API_GENERATE ? "\n" : "\n\n");
    free(s);
}

static json_t *chunk_head(api_out *o)
{
    return json_pack("{s:s,s:s,s:I,s:s}", "id", o->id, "object",
                     o->kind == API_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)o->created, "model", o->model);
}

static json_t *usage_json(api_out *o)
{
    int p, c;
    api_out_usage(o, &p, &c);
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", p, "completion_tokens", c, "total_tokens", p + c);
}

static void completion_chunk(api_out *o, sasp_buf *b, int index, const char *text, size_t len, json_t *lp,
                             const char *finish)
{
    json_t *ch = json_pack("{s:i,s:o,s:o,s:o}", "index", index, "text", json_text(text, len), "logprobs",
                           lp ? lp : json_null(), "finish_reason", finish ? json_string(finish) : json_null());
    json_t *j = chunk_head(o);
    json_object_set_new(j, "choices", json_pack("[o]", ch));
    emit(b, o->kind, j);
}

static void chat_chunk(api_out *o, sasp_buf *b, int index, json_t *delta, json_t *lp, const char *finish)
{
    json_t *ch = json_pack("{s:i,s:o,s:o,s:o}", "index", index, "delta", delta, "logprobs", lp ? lp : json_null(),
                           "finish_reason", finish ? json_string(finish) : json_null());
    json_t *j = chunk_head(o);
    json_object_set_new(j, "choices", json_pack("[o]", ch));
    emit(b, o->kind, j);
}

char *api_out_start(api_out *o, size_t *len)
{
    sasp_buf b = {0};
    for (int i = 0; i < o->n; i++) {
        choice *c = &o->ch[i];
        const char *pt = o->prompt_text[i];
        if (o->kind == API_COMPLETIONS && o->echo) {
            c->offset = strlen(pt);
            if (o->stream) completion_chunk(o, &b, i, pt, strlen(pt), NULL, NULL);
            else sasp_buf_puts(&c->text, pt);
        }
        if (o->kind == API_CHAT && o->stream)
            chat_chunk(o, &b, i, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL, NULL);
    }
    return take(&b, len);
}

static json_t *generate_final(api_out *o, choice *c, const char *text, size_t len)
{
    json_t *ctx = json_array();
    for (int i = 0; i < o->n_context; i++) json_array_append_new(ctx, json_integer(o->context[i]));
    for (int i = 0; i < c->n_ids; i++) json_array_append_new(ctx, json_integer(c->ids[i]));
    json_t *j = json_pack("{s:s,s:o,s:o,s:b,s:s,s:o,s:I,s:I,s:i,s:I,s:i,s:I}", "model", o->model, "created_at",
                          created_at(), "response", json_text(text, len), "done", 1, "done_reason",
                          c->finish ? c->finish : "stop", "context", ctx, "total_duration", (json_int_t)c->total_ns,
                          "load_duration", (json_int_t)0, "prompt_eval_count", c->prompt_tokens,
                          "prompt_eval_duration", (json_int_t)c->prompt_ns, "eval_count", c->completion_tokens,
                          "eval_duration", (json_int_t)c->eval_ns);
    return j;
}

/* The scored prompt (echo with logprobs): it comes before every generated token. */
static char *prompt_event(api_out *o, choice *c, const sasp_event *ev, size_t *len)
{
    if (o->kind != API_COMPLETIONS || !o->logprobs) return NULL;
    if (!o->stream) {
        c->lp = prompt_logprobs_json(o, ev, c->lp);
        return NULL;
    }
    sasp_buf b = {0};
    completion_chunk(o, &b, ev->index, "", 0, prompt_logprobs_json(o, ev, NULL), NULL);
    return take(&b, len);
}

/* What an event tells about its choice whatever the format: generate's context ids, and with the last
 * event the finish reason, the counts, the times, and an engine error (whose message is then not
 * text: *text becomes empty). */
static void record_event(api_out *o, choice *c, const sasp_event *ev, const char **text, size_t *tl)
{
    if (o->kind == API_GENERATE && ev->n_ids) {
        if (c->n_ids + ev->n_ids > c->cap_ids) {
            int cap = (c->n_ids + ev->n_ids) * 2;
            int *ids = realloc(c->ids, (size_t)cap * sizeof *ids);
            if (ids) {
                c->ids = ids;
                c->cap_ids = cap;
            }
        }
        if (c->n_ids + ev->n_ids <= c->cap_ids) {
            memcpy(c->ids + c->n_ids, ev->ids, (size_t)ev->n_ids * sizeof *ev->ids);
            c->n_ids += ev->n_ids;
        }
    }
    if (!ev->done) return;
    c->finish = ev->finish_reason ? ev->finish_reason : "stop";
    c->prompt_tokens = ev->prompt_tokens;
    c->completion_tokens = ev->completion_tokens;
    c->total_ns = ev->total_ns;
    c->prompt_ns = ev->prompt_ns;
    c->eval_ns = ev->eval_ns;
    if (ev->error) {
        o->failed = 1;
        free(o->error);
        o->error = strndup(*text, *tl);
        *text = "";
        *tl = 0;
    }
}

/* A streamed engine failure: an error object where the next chunk would have been. */
static void stream_error(api_out *o, sasp_buf *b)
{
    api_error err;
    api_error_set(&err, 500, "server_error", NULL, NULL, "%s", o->error ? o->error : "engine failure");
    json_t *msg = json_text(err.message, strlen(err.message));
    if (o->kind == API_GENERATE) emit(b, o->kind, json_pack("{s:o}", "error", msg));
    else emit(b, o->kind, json_pack("{s:{s:o,s:s}}", "error", "message", msg, "type", "server_error"));
}

char *api_out_event(api_out *o, const sasp_event *ev, size_t *len)
{
    *len = 0;
    if (ev->index < 0 || ev->index >= o->n) return NULL;
    choice *c = &o->ch[ev->index];
    if (ev->prompt_info) return prompt_event(o, c, ev, len);
    const char *text = ev->text ? ev->text : "";
    size_t tl = ev->text ? ev->len : 0;
    record_event(o, c, ev, &text, &tl);
    if (!o->stream) {
        sasp_buf_append(&c->text, text, tl);
        c->lp = logprobs_json(o, c, ev, c->lp);
        return NULL;
    }
    sasp_buf b = {0};
    json_t *lp = logprobs_json(o, c, ev, NULL);
    if (ev->done && ev->error) {
        json_decref(lp);
        stream_error(o, &b);
        return take(&b, len);
    }
    switch (o->kind) {
    case API_COMPLETIONS:
        if (tl || lp || ev->done) completion_chunk(o, &b, ev->index, text, tl, lp, ev->done ? c->finish : NULL);
        break;
    case API_CHAT:
        if (tl || lp) chat_chunk(o, &b, ev->index, json_pack("{s:o}", "content", json_text(text, tl)), lp, NULL);
        if (ev->done) chat_chunk(o, &b, ev->index, json_object(), NULL, c->finish);
        break;
    case API_GENERATE:
        json_decref(lp);
        if (tl) emit(&b, o->kind, json_pack("{s:s,s:o,s:o,s:b}", "model", o->model, "created_at", created_at(),
                                            "response", json_text(text, tl), "done", 0));
        if (ev->done) emit(&b, o->kind, generate_final(o, c, "", 0));
        break;
    }
    return take(&b, len);
}

/* The non-streamed answer: Ollama's one final object, or OpenAI's whole completion with usage. */
static json_t *whole_answer(api_out *o)
{
    if (o->kind == API_GENERATE) {
        choice *c = &o->ch[0];
        return generate_final(o, c, c->text.data ? c->text.data : "", c->text.len);
    }
    json_t *choices = json_array();
    for (int i = 0; i < o->n; i++) {
        choice *c = &o->ch[i];
        json_t *text = json_text(c->text.data ? c->text.data : "", c->text.len);
        json_t *lp = c->lp ? json_incref(c->lp) : json_null();
        json_t *fin = json_string(c->finish ? c->finish : "stop");
        if (o->kind == API_CHAT)
            json_array_append_new(choices, json_pack("{s:i,s:{s:s,s:o},s:o,s:o}", "index", i, "message", "role",
                                                     "assistant", "content", text, "logprobs", lp, "finish_reason",
                                                     fin));
        else
            json_array_append_new(choices, json_pack("{s:i,s:o,s:o,s:o}", "index", i, "text", text, "logprobs", lp,
                                                     "finish_reason", fin));
    }
    return json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", o->id, "object",
                     o->kind == API_CHAT ? "chat.completion" : "text_completion", "created", (json_int_t)o->created,
                     "model", o->model, "choices", choices, "usage", usage_json(o));
}

char *api_out_finish(api_out *o, size_t *len)
{
    sasp_buf b = {0};
    if (o->stream) {
        if (o->kind != API_GENERATE) {
            if (o->include_usage) {
                json_t *j = chunk_head(o);
                json_object_set_new(j, "choices", json_array());
                json_object_set_new(j, "usage", usage_json(o));
                emit(&b, o->kind, j);
            }
            sasp_buf_puts(&b, "data: [DONE]\n\n");
        }
        return take(&b, len);
    }
    char *s = dump(whole_answer(o));
    if (s) {
        sasp_buf_puts(&b, s);
        sasp_buf_puts(&b, "\n");
        free(s);
    }
    return take(&b, len);
}
