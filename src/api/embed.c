/* embed.c: the embeddings endpoints' wire format: OpenAI's /v1/embeddings (input as text, texts,
 * token ids or arrays of them; encoding_format float or base64; usage) and Ollama's /api/embed
 * (input, truncate) and older /api/embeddings (prompt). The vectors themselves come from the engine
 * (engine/scheduler.h, pooling): pooled final hidden states, L2-normalised. See docs/api.md. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

#define API_MAX_EMBED_INPUTS 2048 /* OpenAI's limit of inputs per request */

/* Add one input of n ids (taken), cut to the context when truncate, else refused when longer. */
static int push_input(api_embed_request *r, int *ids, int n, const api_limits *lim, int truncate, api_error *e)
{
    if (n > lim->n_ctx && !truncate) {
        free(ids);
        api_error_set(e, 400, "invalid_request_error", "context_length_exceeded", "input",
                      "This model's maximum context length is %d tokens, but input %d has %d tokens", lim->n_ctx,
                      r->n_inputs, n);
        return -1;
    }
    int **p = realloc(r->ids, (size_t)(r->n_inputs + 1) * sizeof *p);
    if (p) r->ids = p;
    int *np = realloc(r->n_ids, (size_t)(r->n_inputs + 1) * sizeof *np);
    if (np) r->n_ids = np;
    if (!p || !np) {
        free(ids);
        return -1;
    }
    r->ids[r->n_inputs] = ids;
    r->n_ids[r->n_inputs++] = n > lim->n_ctx ? lim->n_ctx : n;
    return 0;
}

static int push_text(api_embed_request *r, json_t *s, const api_limits *lim, int truncate, api_error *e)
{
    if (json_string_length(s) == 0) {
        api_bad(e, "input", "input %d is empty: an embedding needs at least one token", r->n_inputs);
        return -1;
    }
    int *ids = NULL;
    int n = sasp_encode(lim->tok, json_string_value(s), json_string_length(s), 1, &ids);
    if (n < 0) return -1;
    return push_input(r, ids, n, lim, truncate, e);
}

static int push_token_ids(api_embed_request *r, json_t *arr, const api_limits *lim, int truncate, api_error *e)
{
    size_t n = json_array_size(arr), i;
    json_t *v;
    if (n == 0) {
        api_bad(e, "input", "input %d is empty: an embedding needs at least one token", r->n_inputs);
        return -1;
    }
    int *ids = malloc(n * sizeof *ids);
    if (!ids) return -1;
    json_array_foreach (arr, i, v) {
        long long id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= lim->vocab) {
            free(ids);
            api_bad(e, "input", "token ids must be integers in [0, %d)", lim->vocab);
            return -1;
        }
        ids[i] = (int)id;
    }
    return push_input(r, ids, (int)n, lim, truncate, e);
}

/* The inputs: a string, strings, and for OpenAI token ids or arrays of them. */
static int read_inputs(json_t *in, const char *field, api_embed_request *r, const api_limits *lim, int truncate,
                       api_error *e)
{
    int openai = r->kind == API_EMBED_OPENAI;
    if (json_is_string(in)) return push_text(r, in, lim, truncate, e);
    if (!json_is_array(in) || json_array_size(in) == 0 || json_array_size(in) > API_MAX_EMBED_INPUTS) {
        api_bad(e, field, "'%s' must be a string or a non-empty array of at most %d strings%s", field,
                API_MAX_EMBED_INPUTS, openai ? " (or token ids, or arrays of token ids)" : "");
        return -1;
    }
    if (openai && api_all_of(in, api_is_int)) return push_token_ids(r, in, lim, truncate, e);
    size_t i;
    json_t *v;
    json_array_foreach (in, i, v) {
        int rc = json_is_string(v)            ? push_text(r, v, lim, truncate, e)
                 : openai && json_is_array(v) ? push_token_ids(r, v, lim, truncate, e)
                                              : (api_bad(e, field, "'%s' mixes types: give strings%s", field,
                                                         openai ? ", token ids or arrays of token ids" : ""),
                                                 -1);
        if (rc) return -1;
    }
    return 0;
}

/* OpenAI's encoding_format and dimensions; our pooling ("mean", the default, or "last"). */
static int read_embed_options(json_t *root, api_embed_request *r, int d_model, api_error *e)
{
    const char *fmt = NULL, *pool = NULL;
    long long dims;
    int got;
    if (api_get_str(root, "encoding_format", &fmt, e) < 0 || api_get_str(root, "pooling", &pool, e) < 0) return -1;
    if (fmt && strcmp(fmt, "float") && strcmp(fmt, "base64")) {
        api_bad(e, "encoding_format", "'encoding_format' must be float or base64, got '%s'", fmt);
        return -1;
    }
    r->base64 = fmt && !strcmp(fmt, "base64");
    if (pool && strcmp(pool, "mean") && strcmp(pool, "last")) {
        api_bad(e, "pooling", "'pooling' must be mean or last, got '%s'", pool);
        return -1;
    }
    r->pooling = pool && !strcmp(pool, "last") ? SASP_POOL_LAST : SASP_POOL_MEAN;
    if ((got = api_get_int(root, "dimensions", &dims, e)) < 0) return -1;
    if (got && dims != d_model) {
        api_bad(e, "dimensions", "'dimensions' must be this model's %d (its embeddings are not shortened)", d_model);
        return -1;
    }
    return 0;
}

int api_embed_parse(api_embed_kind kind, const char *body, size_t len, const api_limits *lim, int d_model,
                    api_embed_request *r, api_error *e)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->pooling = SASP_POOL_MEAN;
    json_t *root = api_parse_body(body, len, e);
    if (!root) return -1;
    int truncate = kind == API_EMBED_OLLAMA, rc = -1;
    const char *ignored, *field = kind == API_EMBED_OLLAMA_LEGACY ? "prompt" : "input";
    json_t *in = json_object_get(root, field), *opts = json_object_get(root, "options");
    if (api_get_str(root, "model", &ignored, e) < 0 || api_get_str(root, "user", &ignored, e) < 0 ||
        api_get_bool(root, "truncate", &truncate, e) < 0 || read_embed_options(root, r, d_model, e))
        goto done;
    if (opts && !json_is_null(opts) && !json_is_object(opts)) {
        api_bad(e, "options", "'options' must be an object");
        goto done;
    }
    if (kind == API_EMBED_OLLAMA_LEGACY && (json_is_null(in) || (json_is_string(in) && json_string_length(in) == 0))) {
        rc = 0; /* Ollama answers an empty prompt with an empty embedding */
        goto done;
    }
    if (!in || json_is_null(in)) {
        api_bad(e, field, "'%s' is required", field);
        goto done;
    }
    rc = kind == API_EMBED_OLLAMA_LEGACY && !json_is_string(in)
             ? (api_bad(e, field, "'prompt' must be a string"), -1)
             : read_inputs(in, field, r, lim, truncate, e);
done:
    json_decref(root);
    if (rc && e->status == 0) api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    return rc;
}

void api_embed_request_free(api_embed_request *r)
{
    for (int i = 0; i < r->n_inputs; i++) free(r->ids[i]);
    free(r->ids);
    free(r->n_ids);
    memset(r, 0, sizeof *r);
}

/* --- answers --- */

static json_t *float_array(const float *v, int dim)
{
    json_t *a = json_array();
    for (int k = 0; v && k < dim; k++) json_array_append_new(a, json_real(v[k]));
    return a;
}

/* The vector as base64 of its little-endian float32 bytes (OpenAI's encoding_format base64). */
static json_t *base64_floats(const float *v, int dim)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = (size_t)dim * 4, w = 0;
    unsigned char *b = malloc(n + 1);
    char *out = malloc(4 * (n + 2) / 3 + 4);
    if (!b || !out) {
        free(b);
        free(out);
        return json_string("");
    }
    for (int k = 0; k < dim; k++) {
        uint32_t u;
        memcpy(&u, &v[k], 4);
        for (int j = 0; j < 4; j++) b[4 * k + j] = (unsigned char)(u >> (8 * j));
    }
    for (size_t i = 0; i < n; i += 3) {
        uint32_t t = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
        out[w++] = tab[t >> 18 & 63];
        out[w++] = tab[t >> 12 & 63];
        out[w++] = i + 1 < n ? tab[t >> 6 & 63] : '=';
        out[w++] = i + 2 < n ? tab[t & 63] : '=';
    }
    json_t *s = json_stringn(out, w);
    free(b);
    free(out);
    return s;
}

static int total_tokens(const api_embed_request *r)
{
    int t = 0;
    for (int i = 0; i < r->n_inputs; i++) t += r->n_ids[i];
    return t;
}

char *api_embed_answer(const api_embed_request *r, const char *model, float *const *vectors, int dim,
                       int64_t total_ns)
{
    if (r->kind == API_EMBED_OLLAMA_LEGACY)
        return api_dump(json_pack("{s:o}", "embedding", float_array(r->n_inputs ? vectors[0] : NULL, dim)));
    json_t *list = json_array();
    for (int i = 0; i < r->n_inputs; i++) {
        if (r->kind == API_EMBED_OLLAMA) {
            json_array_append_new(list, float_array(vectors[i], dim));
            continue;
        }
        json_array_append_new(list, json_pack("{s:s,s:i,s:o}", "object", "embedding", "index", i, "embedding",
                                              r->base64 ? base64_floats(vectors[i], dim) : float_array(vectors[i], dim)));
    }
    int tokens = total_tokens(r);
    if (r->kind == API_EMBED_OLLAMA)
        return api_dump(json_pack("{s:s,s:o,s:I,s:I,s:i}", "model", model, "embeddings", list, "total_duration",
                                  (json_int_t)total_ns, "load_duration", (json_int_t)0, "prompt_eval_count", tokens));
    return api_dump(json_pack("{s:s,s:o,s:s,s:{s:i,s:i}}", "object", "list", "data", list, "model", model, "usage",
                              "prompt_tokens", tokens, "total_tokens", tokens));
}
