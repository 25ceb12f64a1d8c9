/* checks.c: the checks of a whole generation request once its dialect has read it (internal.h): every
 * prompt within the context and at most API_MAX_SEQS sequences, a JSON format's shortest document
 * within the tokens the request allows, and the fields this server does not implement, each refused
 * with a 400 that names it rather than ignored (docs/api.md lists them). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

/* --- the prompts --- */

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

/* --- JSON output --- */

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
            api_bad(e, api_kind_is_ollama(r->kind) ? "num_predict" : r->kind == API_RESPONSES ? "max_output_tokens"
                                                                                              : "max_tokens",
                    "the shortest JSON document of this format takes %d tokens, but the request leaves room for "
                    "%d (the length limit %d, the context left after the prompt %d)",
                    need, allowed, r->gen.max_tokens, context_left);
            return -1;
        }
    }
    return 0;
}

/* --- what is refused --- */

/* Whether field v asks for something: present and not null, false, "" or an empty array. */
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
