/* llama.c: llama.cpp's native generation requests, as its server's README defines them: POST
 * /completion (prompt as text, token ids or both mixed) and POST /infill (input_prefix, input_suffix,
 * input_extra, prompt), with their fields: n_predict, the sampling fields and "samplers", stop,
 * n_indent, t_max_predict_ms, cache_prompt, n_keep, n_probs and post_sampling_probs, return_tokens,
 * response_fields, logit_bias in both of llama.cpp's forms, json_schema (the sampling fields are
 * api_sampling.c's). Fields of what is not implemented (mirostat, n_discard) are accepted at the value
 * that turns it off and refused otherwise; fields that would only place the work
 * (id_slot, t_max_prompt_ms, ...) are accepted and listed in X-Sasp-Ignored-Options. docs/api.md and
 * docs/editor.md are the manual. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "base/util.h"

void api_note_ignored(api_request *r, const char *field)
{
    size_t used = strlen(r->ignored);
    snprintf(r->ignored + used, sizeof r->ignored - used, "%s%s", used ? ", " : "", field);
}

/* --- samplers that are off here, and fields without effect --- */

/* Fields of what sasp does not implement: accepted at the value that turns it off, refused by name
 * otherwise. */
static int check_off_fields(json_t *root, api_error *e)
{
    static const struct {
        const char *name;
        const char *why;
    } off[] = {
        {"mirostat", ""}, {"n_discard", ": the context is never shifted"}};
    for (size_t i = 0; i < sizeof off / sizeof *off; i++) {
        json_t *v = json_object_get(root, off[i].name);
        if (!v || json_is_null(v)) continue;
        double d = json_is_number(v) ? json_number_value(v) : json_is_boolean(v) ? json_is_true(v)
                                                                                 : NAN;
        if (d == 0) continue;
        api_bad(e, off[i].name, "'%s' is not supported (only 0, which is off, is accepted)%s", off[i].name, off[i].why);
        return -1;
    }
    return 0;
}

/* What a text model without grammars, adapters or images cannot do. */
static int refuse_llama_extras(json_t *root, api_error *e)
{
    json_t *g = json_object_get(root, "grammar");
    if (json_is_string(g) && json_string_length(g) > 0) {
        api_bad(e, "grammar", "'grammar' (GBNF) is not supported: give a JSON schema in 'json_schema'");
        return -1;
    }
    static const char *const lists[] = {"lora", "image_data", "multimodal_data"};
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++)
        if (json_array_size(json_object_get(root, lists[i])) > 0) {
            api_bad(e, lists[i], "'%s' is not supported: sasp models read text only, without adapters", lists[i]);
            return -1;
        }
    long long n = 1;
    if (api_get_int(root, "n_cmpl", &n, e) < 0 || (n == 1 && api_get_int(root, "n", &n, e) < 0)) return -1;
    if (n != 1) {
        api_bad(e, "n_cmpl", "one completion per request here ('n_cmpl' 1); /v1/completions takes 'n'");
        return -1;
    }
    return 0;
}

/* Fields that only place or pace the work: accepted, no effect, listed in r->ignored. */
static void note_placement_fields(json_t *root, api_request *r)
{
    static const char *const names[] = {"id_slot", "t_max_prompt_ms", "n_cache_reuse", "return_progress",
                                        "sse_ping_interval", "timings_per_token"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        json_t *v = json_object_get(root, names[i]);
        int asks = v && !json_is_null(v) && !json_is_false(v) &&
                   !(json_is_number(v) && (json_number_value(v) == 0 || json_number_value(v) == -1));
        if (asks) api_note_ignored(r, names[i]);
    }
}

/* --- logit_bias: {"id": bias} (OpenAI's), or llama.cpp's [[id or text, bias or false], ...] --- */

/* One [token, bias] pair into bias (a text token stands for each of its tokens: *n grows). */
static int read_bias_pair(json_t *pair, const api_limits *lim, sasp_logit_bias *bias, int *n, api_error *e)
{
    json_t *t = json_array_get(pair, 0), *b = json_array_get(pair, 1);
    float value = json_is_false(b) ? -INFINITY : json_is_number(b) ? (float)json_number_value(b)
                                                                   : NAN;
    if (json_array_size(pair) != 2 || isnan(value) || (!json_is_integer(t) && !json_is_string(t))) {
        api_bad(e, "logit_bias", "'logit_bias' pairs are [token id or text, bias or false]");
        return -1;
    }
    int one = json_is_integer(t) ? (int)json_integer_value(t) : -1, *ids = &one, k = 1;
    if (json_is_integer(t) && (json_integer_value(t) < 0 || json_integer_value(t) >= lim->vocab)) {
        api_bad(e, "logit_bias", "'logit_bias' token ids must be in [0, %d)", lim->vocab);
        return -1;
    }
    if (json_is_string(t) && (k = sasp_encode(lim->tok, json_string_value(t), json_string_length(t), 0, &ids)) < 0)
        return -1;
    for (int i = 0; i < k && *n < API_MAX_LOGIT_BIAS; i++) bias[(*n)++] = (sasp_logit_bias){ids[i], value};
    if (ids != &one) free(ids);
    return 0;
}

static int read_llama_logit_bias(json_t *root, api_request *r, const api_limits *lim, api_error *e)
{
    json_t *lb = json_object_get(root, "logit_bias");
    if (!json_is_array(lb)) return api_read_logit_bias(root, r, lim, e);
    sasp_logit_bias *bias = malloc(API_MAX_LOGIT_BIAS * sizeof *bias);
    if (!bias) return -1;
    int n = 0;
    size_t i;
    json_t *pair;
    json_array_foreach (lb, i, pair) {
        if (read_bias_pair(pair, lim, bias, &n, e)) {
            free(bias);
            return -1;
        }
    }
    free((void *)r->gen.logit_bias);
    r->gen.logit_bias = bias;
    r->gen.n_logit_bias = n;
    return 0;
}

/* --- lengths, limits and what the answer carries --- */

/* n_predict (or max_tokens): -1 (the default) until the context is full, 0 only reads the prompt
 * (into the cache), more than the context stops there. */
static int read_n_predict(json_t *root, const api_limits *lim, int *out, api_error *e)
{
    long long k = -1;
    int got = api_get_int(root, "n_predict", &k, e);
    if (got == 0) got = api_get_int(root, "max_tokens", &k, e);
    if (got < 0) return -1;
    if (k < -1) {
        api_bad(e, "n_predict", "'n_predict' must be -1 (until the context is full), 0 (read the prompt only) "
                                "or a number of tokens, got %lld",
                k);
        return -1;
    }
    *out = k < 0 || k > lim->n_ctx ? lim->n_ctx : (int)k;
    return 0;
}

/* A count field >= 0 (lo: or -1 too, which means off), as an int. */
static int read_count(json_t *root, const char *name, int allow_minus_one, long long *out, api_error *e)
{
    int got = api_get_int(root, name, out, e);
    if (got > 0 && (*out < (allow_minus_one ? -1 : 0))) {
        api_bad(e, name, "'%s' must be >= %d, got %lld", name, allow_minus_one ? -1 : 0, *out);
        return -1;
    }
    if (*out > 1 << 30) *out = 1 << 30;
    return got < 0 ? -1 : 0;
}

/* n_indent, t_max_predict_ms, n_probs (with post_sampling_probs), return_tokens. */
static int read_llama_limits(json_t *root, api_request *r, api_error *e)
{
    long long indent = 0, ms = 0, probs = 0;
    if (read_count(root, "n_indent", 0, &indent, e) || read_count(root, "t_max_predict_ms", 1, &ms, e) ||
        read_count(root, "n_probs", 0, &probs, e))
        return -1;
    if (probs > SASP_MAX_TOP_LOGPROBS) {
        api_bad(e, "n_probs", "'n_probs' must be between 0 and %d", SASP_MAX_TOP_LOGPROBS);
        return -1;
    }
    r->gen.n_indent = (int)indent;
    r->gen.t_max_predict_ms = ms > 0 ? ms : 0;
    r->n_probs = (int)probs;
    r->gen.logprobs = probs > 0;
    r->gen.top_logprobs = (int)probs;
    if (api_get_bool(root, "post_sampling_probs", &r->gen.post_sampling_probs, e) < 0) return -1;
    return api_get_bool(root, "return_tokens", &r->return_tokens, e) < 0 ? -1 : 0;
}

/* response_fields: the final answer's fields to return ("timings/prompt_n": nested, unnested under
 * the path's name). */
static int read_response_fields(json_t *root, api_request *r, api_error *e)
{
    json_t *v = json_object_get(root, "response_fields");
    if (!v || json_is_null(v)) return 0;
    if (!json_is_array(v) || !api_all_of(v, api_is_str) || json_array_size(v) > 64) {
        api_bad(e, "response_fields", "'response_fields' must be an array of at most 64 field names");
        return -1;
    }
    r->response_fields = calloc(json_array_size(v) + 1, sizeof *r->response_fields);
    if (!r->response_fields) return -1;
    size_t i;
    json_t *f;
    json_array_foreach (v, i, f) {
        if (!(r->response_fields[i] = strdup(json_string_value(f)))) return -1;
        r->n_response_fields++;
    }
    return 0;
}

/* llama.cpp's json_schema: the output is a document of it (docs/api.md, JSON output). */
static int read_json_schema(json_t *root, api_request *r, api_error *e)
{
    json_t *js = json_object_get(root, "json_schema");
    if (!js || json_is_null(js)) return api_read_response_format(root, r, e);
    if (!json_is_object(js)) {
        api_bad(e, "json_schema", "'json_schema' must be a JSON Schema object");
        return -1;
    }
    char err[256] = "";
    sasp_json_schema *s = sasp_json_schema_compile(json_object_size(js) ? js : NULL, err, sizeof err);
    if (!s) {
        api_bad(e, "json_schema", "'json_schema': %s", err[0] ? err : "the schema cannot be compiled");
        return -1;
    }
    sasp_json_schema_free(r->schema);
    r->schema = s;
    r->gen.json = s;
    return 0;
}

/* Every field /completion and /infill share, before the prompt. */
static int read_llama_common(json_t *root, const api_limits *lim, api_request *r, api_error *e)
{
    if (api_read_common(root, r, e) || check_off_fields(root, e) || refuse_llama_extras(root, e)) return -1;
    note_placement_fields(root, r);
    r->gen.each_token = r->stream; /* llama.cpp streams a chunk per token */
    if (read_n_predict(root, lim, &r->gen.max_tokens, e)) return -1;
    if (api_read_stop(root, &r->gen, e) || api_get_bool(root, "ignore_eos", &r->gen.ignore_eos, e) < 0) return -1;
    if (read_llama_logit_bias(root, r, lim, e) || read_llama_limits(root, r, e)) return -1;
    return read_response_fields(root, r, e) || read_json_schema(root, r, e) ? -1 : 0;
}

/* --- the prompts --- */

/* Room for n more ids in *ids (*cap of them, *len used). */
static int grow_ids(int **ids, int *cap, int len, int n)
{
    if (len + n <= *cap) return 0;
    int c = 2 * (len + n) + 8;
    int *p = realloc(*ids, (size_t)c * sizeof *p);
    if (!p) return -1;
    *ids = p;
    *cap = c;
    return 0;
}

/* A mixed prompt [12, "text", 34]: ids as they are, text tokenised (special tokens recognised). */
static int add_mixed_prompt(json_t *arr, api_request *r, const api_limits *lim, api_error *e)
{
    int *ids = NULL, n = 0, cap = 0;
    size_t i;
    json_t *v;
    json_array_foreach (arr, i, v) {
        long long id = json_is_integer(v) ? json_integer_value(v) : 0;
        if ((!json_is_integer(v) && !json_is_string(v)) || id < 0 || id >= lim->vocab) {
            api_bad(e, "prompt", "a prompt holds token ids (integers in [0, %d)) and strings", lim->vocab);
            free(ids);
            return -1;
        }
        int one = (int)id, *piece = NULL, k = 1;
        if (json_is_string(v)) k = sasp_encode(lim->tok, json_string_value(v), json_string_length(v), 1, &piece);
        if (k < 0 || grow_ids(&ids, &cap, n, k)) {
            free(piece);
            free(ids);
            return -1;
        }
        if (k) memcpy(ids + n, piece ? piece : &one, (size_t)k * sizeof *ids);
        n += k;
        free(piece);
    }
    if (n == 0) {
        free(ids);
        api_bad(e, "prompt", "the prompt must not be empty");
        return -1;
    }
    size_t tl;
    char *raw = sasp_decode(lim->tok, ids, n, &tl), *text = raw ? api_utf8_clean(raw, tl, NULL) : NULL;
    free(raw);
    if (!text) {
        free(ids);
        return -1;
    }
    return api_push_prompt(r, ids, n, text);
}

/* /completion's prompt: one string, token ids, or both mixed. Several prompts are refused. */
static int read_llama_prompt(json_t *p, api_request *r, const api_limits *lim, api_error *e)
{
    if (!p || json_is_null(p)) {
        api_bad(e, "prompt", "'prompt' is required");
        return -1;
    }
    if (json_is_array(p) && json_array_size(p) == 1 && !json_is_integer(json_array_get(p, 0)))
        p = json_array_get(p, 0); /* ["text"] or [[ids]]: one prompt */
    if (json_is_string(p)) return api_add_text_prompt(r, json_string_value(p), json_string_length(p), lim, e);
    int several = json_is_array(p) && (api_all_of(p, api_is_arr) || (json_array_size(p) > 1 && api_all_of(p, api_is_str)));
    if (!json_is_array(p) || several || json_array_size(p) == 0) {
        api_bad(e, "prompt", several ? "one prompt per request on /completion (/v1/completions takes several)" : "'prompt' must be a string, token ids, or token ids and strings mixed");
        return -1;
    }
    return add_mixed_prompt(p, r, lim, e);
}

int api_parse_llama_completion(json_t *root, const api_limits *lim, api_request *r, api_error *e)
{
    if (read_llama_common(root, lim, r, e)) return -1;
    int n_stops = r->gen.n_stop, truncate, n_keep = 0;
    if (read_llama_prompt(json_object_get(root, "prompt"), r, lim, e) || api_read_token_healing(root, r, e)) return -1;
    if (api_read_truncation(root, 1, &truncate, e) || api_read_n_keep(root, "n_keep", &n_keep, e) < 0) return -1;
    if (api_fit_prompts(r, truncate, n_keep, "prompt", lim, e)) return -1;
    return api_check_sequences(r, "prompt", lim, e) || api_check_json_budget(r, lim, n_stops, e) ? -1 : 0;
}

/* /infill's input_extra: [{"text": string, "filename": string}, ...] into *out (n of them). */
static int read_extra(json_t *root, api_fim_chunk **out, int *n, api_error *e)
{
    json_t *v = json_object_get(root, "input_extra");
    *out = NULL;
    *n = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_array(v)) {
        api_bad(e, "input_extra", "'input_extra' must be an array of {\"filename\": string, \"text\": string}");
        return -1;
    }
    *out = calloc(json_array_size(v) + 1, sizeof **out);
    if (!*out) return -1;
    size_t i;
    json_t *c;
    json_array_foreach (v, i, c) {
        json_t *text = json_object_get(c, "text"), *name = json_object_get(c, "filename");
        if (!json_is_string(text) || (name && !json_is_null(name) && !json_is_string(name))) {
            api_bad(e, "input_extra", "input_extra[%zu] must have a string \"text\" (and may have a string "
                                      "\"filename\")",
                    i);
            return -1;
        }
        (*out)[(*n)++] = (api_fim_chunk){json_string_value(text), json_string_length(text)};
    }
    return 0;
}

/* A required string field of /infill (input_prefix, input_suffix) or the optional prompt. */
static int read_fim_text(json_t *root, const char *name, int required, const char **s, size_t *len, api_error *e)
{
    int got = api_get_str(root, name, s, e);
    if (got == 0 && required) api_bad(e, name, "'%s' (a string) is required", name);
    if (got < 0 || (got == 0 && required)) return -1;
    if (got == 0) *s = "";
    *len = got ? json_string_length(json_object_get(root, name)) : 0;
    return 0;
}

int api_parse_infill(json_t *root, const api_limits *lim, api_request *r, api_error *e)
{
    if (api_check_fim_tokens(lim, "input_prefix", e)) return -1;
    sasp_sampling_fim_defaults(&r->gen.sampling); /* before the request's own "samplers" */
    if (read_llama_common(root, lim, r, e)) return -1;
    int n_stops = r->gen.n_stop, heal = 1, truncate;
    api_fim_input in;
    memset(&in, 0, sizeof in);
    if (read_fim_text(root, "input_prefix", 1, &in.prefix, &in.prefix_len, e) ||
        read_fim_text(root, "input_suffix", 1, &in.suffix, &in.suffix_len, e) ||
        read_fim_text(root, "prompt", 0, &in.middle, &in.middle_len, e))
        return -1;
    if (api_get_bool(root, "token_healing", &heal, e) < 0 || api_read_truncation(root, 1, &truncate, e)) return -1;
    api_fim_chunk *extra;
    if (read_extra(root, &extra, &in.n_extra, e)) {
        free(extra);
        return -1;
    }
    in.extra = extra;
    in.heal = heal && !r->gen.json;
    in.truncate = truncate;
    int rc = api_add_fim_prompt(r, &in, lim, "input_prefix", e);
    free(extra);
    if (rc) return -1;
    return api_check_sequences(r, "input_prefix", lim, e) || api_check_json_budget(r, lim, n_stops, e) ? -1 : 0;
}
