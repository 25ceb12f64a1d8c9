/* api_options.c: what a request asks of its output beyond sampling: a JSON document (OpenAI's
 * response_format, Ollama's format) compiled into the schema the engine enforces token by token,
 * logit_bias, and the fields this server does not implement, each refused with a 400 that names it
 * rather than ignored (docs/api.md lists them). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

/* --- JSON output --- */

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

int api_check_json_budget(const api_request *r, const api_limits *lim, int n_stops_asked, api_error *e)
{
    if (!r->gen.json) return 0;
    if (n_stops_asked > 0) {
        api_bad(e, "stop", "'stop' cannot be combined with a JSON format: a stop string could cut the document");
        return -1;
    }
    int need = sasp_json_schema_min_len(r->schema);
    for (int i = 0; i < r->n_seqs; i++) {
        int context_left = lim->n_ctx - r->n_prompt[i] + 1, allowed = r->gen.max_tokens;
        if (context_left < allowed) allowed = context_left;
        if (allowed < need) {
            api_bad(e, api_kind_is_ollama(r->kind)    ? "num_predict"
                       : r->kind == API_RESPONSES ? "max_output_tokens"
                                                  : "max_tokens",
                    "the shortest JSON document of this format takes %d tokens, but the request leaves room for "
                    "%d (the length limit %d, the context left after the prompt %d)",
                    need, allowed, r->gen.max_tokens, context_left);
            return -1;
        }
    }
    return 0;
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
    json_object_foreach(lb, k, v) {
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

/* --- what is refused --- */

int api_asks(json_t *v)
{
    if (!v || json_is_null(v) || json_is_false(v)) return 0;
    if (json_is_string(v)) return json_string_length(v) > 0;
    if (json_is_array(v)) return json_array_size(v) > 0;
    return 1;
}

/* tool_choice / function_call without tools: "none" and "auto" ask for nothing. */
static int asks_for_a_call(json_t *v)
{
    const char *s = json_string_value(v);
    return api_asks(v) && !(s && (!strcmp(s, "none") || !strcmp(s, "auto")));
}

static int refuse(api_error *e, const char *field, const char *why, const char *model)
{
    api_bad(e, field, "'%s' is not supported: %s%s", field, model ? model : "", why);
    return -1;
}

int api_refuse_unsupported(json_t *root, api_kind kind, const api_limits *lim, api_error *e)
{
    const char *m = lim->model_id ? lim->model_id : "this model";
    if (kind == API_CHAT || kind == API_OLLAMA_CHAT) {
        if (api_asks(json_object_get(root, "tools"))) return refuse(e, "tools", " does not support tools (function calling)", m);
        if (api_asks(json_object_get(root, "functions")))
            return refuse(e, "functions", " does not support tools (function calling)", m);
        if (asks_for_a_call(json_object_get(root, "tool_choice")))
            return refuse(e, "tool_choice", " does not support tools (function calling)", m);
        if (asks_for_a_call(json_object_get(root, "function_call")))
            return refuse(e, "function_call", " does not support tools (function calling)", m);
    }
    if (kind == API_CHAT) {
        if (api_asks(json_object_get(root, "audio"))) return refuse(e, "audio", " reads and writes text only", m);
        json_t *mod = json_object_get(root, "modalities");
        const char *first = json_string_value(json_array_get(mod, 0));
        if (api_asks(mod) && !(json_array_size(mod) == 1 && first && !strcmp(first, "text")))
            return refuse(e, "modalities", " reads and writes text only", m);
        if (api_asks(json_object_get(root, "prediction"))) return refuse(e, "prediction", "predicted outputs are not implemented", NULL);
    }
    if (kind == API_COMPLETIONS) {
        json_t *b = json_object_get(root, "best_of");
        if (json_is_integer(b) && json_integer_value(b) > 1)
            return refuse(e, "best_of", "ask for n choices and rank them yourself", NULL);
    }
    if (kind == API_GENERATE && api_asks(json_object_get(root, "images"))) return refuse(e, "images", " reads text only", m);
    if (kind == API_GENERATE && api_asks(json_object_get(root, "template")))
        return refuse(e, "template", "the prompt is used as written (see 'raw')", NULL);
    if (api_kind_is_ollama(kind) && json_is_true(json_object_get(root, "think")))
        return refuse(e, "think", " does not think before answering", m);
    return 0;
}
