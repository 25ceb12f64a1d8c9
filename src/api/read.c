/* read.c: the fields of a generation request that several dialects read alike, each read and checked
 * once (internal.h): model, user, stream and cache_prompt, stop strings, the
 * length limit, n_keep, token healing and truncate; and what shapes the output: a JSON document
 * (OpenAI's response_format, Ollama's format) compiled into the schema the engine enforces token by
 * token, and OpenAI's logit_bias. The user-facing description of every field is docs/api.md. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

/* --- sampling, stopping and lengths --- */

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
    json_array_foreach (v, i, s) {
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

int api_read_common(json_t *root, api_request *r, api_error *e)
{
    const char *ignored;
    int cache_prompt = 1;
    if (api_get_str(root, "model", &ignored, e) < 0 || api_get_str(root, "user", &ignored, e) < 0 ||
        api_get_bool(root, "stream", &r->stream, e) < 0 || api_get_bool(root, "cache_prompt", &cache_prompt, e) < 0)
        return -1;
    r->gen.no_cache = !cache_prompt;
    if (api_read_samplers(root, &r->gen.sampling, e)) return -1;
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

/* token_healing (default on) for a request whose prompts are text, unless something needs the
 * prompt's own tokens (echo) or the output is constrained otherwise (a JSON format). With logprobs,
 * the first token's entry leaves out the bytes the prompt holds (sasp_token_info.skip). */
int api_read_token_healing(json_t *root, api_request *r, api_error *e)
{
    int heal = 1;
    if (api_get_bool(root, "token_healing", &heal, e) < 0) return -1;
    r->gen.token_healing = heal && r->text_prompt && !r->echo && !r->gen.json;
    return 0;
}

int api_read_truncation(json_t *root, int by_default, int *truncate, api_error *e)
{
    *truncate = by_default;
    return api_get_bool(root, "truncate", truncate, e) < 0 ? -1 : 0;
}

/* --- JSON output --- */

/* Compile schema (NULL: any JSON object) into r, naming field in an error. */
int api_set_schema(api_request *r, json_t *schema, const char *field, api_error *e)
{
    char err[256] = "";
    sasp_json_schema *s = sasp_json_schema_compile(schema, err, sizeof err);
    if (!s) {
        api_bad(e, field, "'%s': %s", field, err[0] ? err : "the schema cannot be compiled");
        return -1;
    }
    sasp_json_schema_free(r->schema);
    r->schema = s;
    r->gen.json = s;
    return 0;
}

/* OpenAI's json_schema format: {"name", "schema", "strict", "description"}. */
static int read_json_schema_format(json_t *fmt, api_request *r, api_error *e)
{
    json_t *js = json_object_get(fmt, "json_schema");
    if (!json_is_object(js)) {
        api_bad(e, "response_format", "'response_format.json_schema' must be an object with a 'schema'");
        return -1;
    }
    json_t *schema = json_object_get(js, "schema");
    if (!json_is_object(schema)) {
        api_bad(e, "response_format", "'response_format.json_schema.schema' (a JSON Schema object) is required");
        return -1;
    }
    const char *name;
    int strict;
    if (api_get_str(js, "name", &name, e) < 0 || api_get_bool(js, "strict", &strict, e) < 0) return -1;
    return api_set_schema(r, schema, "response_format", e);
}

int api_read_response_format(json_t *root, api_request *r, api_error *e)
{
    json_t *fmt = json_object_get(root, "response_format");
    if (!fmt || json_is_null(fmt)) return 0;
    const char *type = json_string_value(json_object_get(fmt, "type"));
    if (!json_is_object(fmt) || !type) {
        api_bad(e, "response_format", "'response_format' must be an object with a 'type'");
        return -1;
    }
    if (!strcmp(type, "text")) return 0;
    if (!strcmp(type, "json_object")) return api_set_schema(r, NULL, "response_format", e);
    if (!strcmp(type, "json_schema")) return read_json_schema_format(fmt, r, e);
    api_bad(e, "response_format", "'response_format.type' must be text, json_object or json_schema, got '%s'", type);
    return -1;
}

int api_read_ollama_format(json_t *root, api_request *r, api_error *e)
{
    json_t *fmt = json_object_get(root, "format");
    if (!fmt || json_is_null(fmt) || (json_is_string(fmt) && json_string_length(fmt) == 0)) return 0;
    if (json_is_string(fmt) && !strcmp(json_string_value(fmt), "json")) return api_set_schema(r, NULL, "format", e);
    if (json_is_object(fmt)) return api_set_schema(r, fmt, "format", e);
    api_bad(e, "format", "'format' must be \"json\" or a JSON Schema object");
    return -1;
}

/* --- logit_bias --- */

/* One "id": bias entry into out. */
static int read_bias_entry(const char *key, json_t *v, const api_limits *lim, sasp_logit_bias *out, api_error *e)
{
    char *end;
    long id = strtol(key, &end, 10);
    if (!key[0] || *end || id < 0 || id >= lim->vocab) {
        api_bad(e, "logit_bias", "'logit_bias' keys must be token ids in [0, %d), got '%s'", lim->vocab, key);
        return -1;
    }
    double b = json_is_number(v) ? json_number_value(v) : 1e9;
    if (b < -100 || b > 100) {
        api_bad(e, "logit_bias", "'logit_bias' values must be numbers in [-100, 100] (token %ld)", id);
        return -1;
    }
    out->id = (int)id;
    out->bias = (float)b;
    return 0;
}

int api_read_logit_bias(json_t *root, api_request *r, const api_limits *lim, api_error *e)
{
    json_t *lb = json_object_get(root, "logit_bias");
    if (!lb || json_is_null(lb)) return 0;
    if (!json_is_object(lb)) {
        api_bad(e, "logit_bias", "'logit_bias' must be an object of token id -> bias");
        return -1;
    }
    size_t n = json_object_size(lb);
    if (n > API_MAX_LOGIT_BIAS) {
        api_bad(e, "logit_bias", "at most %d entries in 'logit_bias'", API_MAX_LOGIT_BIAS);
        return -1;
    }
    if (n == 0) return 0;
    sasp_logit_bias *bias = malloc(n * sizeof *bias);
    if (!bias) return -1;
    const char *k;
    json_t *v;
    int i = 0;
    json_object_foreach (lb, k, v) {
        if (read_bias_entry(k, v, lim, &bias[i++], e)) {
            free(bias);
            return -1;
        }
    }
    free((void *)r->gen.logit_bias);
    r->gen.logit_bias = bias;
    r->gen.n_logit_bias = i;
    return 0;
}
