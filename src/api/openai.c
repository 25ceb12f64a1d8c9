/* openai.c: OpenAI's dialects of a generation request (docs/api.md): /v1/completions (prompts as text,
 * texts, token ids or arrays of them; n, echo, logprobs, suffix) and /v1/chat/completions (messages,
 * logprobs and top_logprobs, n), read with the pieces every dialect shares (read.c, prompt.c, checks.c,
 * truncate.c, infill.c); parse.c calls them. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "base/util.h"

/* --- prompts --- */

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
    json_array_foreach (arr, i, v) {
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
        json_array_foreach (p, i, v)
            if (api_add_text_prompt(r, json_string_value(v), json_string_length(v), lim, e)) return -1;
        return 0;
    }
    if (api_all_of(p, api_is_arr)) {
        json_array_foreach (p, i, v) {
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

/* --- n choices per prompt --- */

/* The healed bytes of fill-in-the-middle prompts, after expand_choices: sequence i*n + c has prompt i's
 * (the arrays hold API_MAX_SEQS entries: infill.c). */
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

/* --- completions and chat completions --- */

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

int api_parse_completions(json_t *root, const api_limits *lim, api_request *r, api_error *e)
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

int api_parse_chat(json_t *root, const api_limits *lim, api_request *r, api_error *e)
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
    if (api_add_chat_prompt(json_object_get(root, "messages"), 0, r, lim, e)) return -1;
    if (api_check_sequences(r, "messages", lim, e) || api_check_json_budget(r, lim, n_stops, e)) return -1;
    return expand_choices(r);
}
