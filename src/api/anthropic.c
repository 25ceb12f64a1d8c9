/* anthropic.c: Anthropic's Messages API, the request side: POST /v1/messages bodies into generation
 * parameters (system and messages through the chat template OpenAI's and Ollama's chat use, a last
 * assistant message continued as Anthropic's prefill, max_tokens, stop_sequences, sampling,
 * output_config.format through the JSON constraint), the prompt that count_tokens counts, Anthropic's error
 * shape, and what is refused by name (tools, image and document blocks, thinking). The answers are
 * write_anthropic.c's; docs/api.md, "POST /v1/messages", is the manual. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

/* --- errors --- */

/* Anthropic's error type for an HTTP status (its errors page): 400 and any other 4xx
 * invalid_request_error, 401 authentication_error, 403 permission_error, 404 not_found_error, 413
 * request_too_large, 429 rate_limit_error, 500 api_error, 529 (here 503 too) overloaded_error. */
static const char *anthropic_error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503:
    case 529: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

char *api_error_body_anthropic(const api_error *e)
{
    return api_dump(json_pack("{s:s,s:{s:s,s:o}}", "type", "error", "error", "type", anthropic_error_type(e->status),
                              "message", api_json_text(e->message, strlen(e->message))));
}

static const char *const text_blocks[] = {"text", NULL};

/* {"role": role, "content": text of content} appended to msgs (the chat template's input). */
static int push_message(json_t *msgs, const char *role, json_t *content, const char *param, api_error *e)
{
    sasp_buf text = {0};
    if (api_content_text(content, text_blocks, param, &text, e)) {
        sasp_buf_free(&text);
        return -1;
    }
    json_t *m = json_pack("{s:s,s:s%}", "role", role, "content", text.data ? text.data : "", text.len);
    sasp_buf_free(&text);
    return m ? json_array_append_new(msgs, m) : -1;
}

/* system, then messages (user and assistant turns) through the chat template as r's prompt; a last
 * assistant message is the answer's beginning, continued (prefill). */
static int read_messages_prompt(json_t *root, api_request *r, const api_limits *lim, api_error *e)
{
    json_t *system = json_object_get(root, "system"), *messages = json_object_get(root, "messages");
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        api_bad(e, "messages", "'messages' (a non-empty array of {role, content}) is required");
        return -1;
    }
    json_t *msgs = json_array();
    int rc = 0;
    if (system && !json_is_null(system)) rc = push_message(msgs, "system", system, "system", e);
    size_t i;
    json_t *m;
    const char *role = NULL;
    json_array_foreach (messages, i, m) {
        if (rc) break;
        role = json_string_value(json_object_get(m, "role"));
        char param[64];
        snprintf(param, sizeof param, "messages[%zu].content", i);
        if (!role || (strcmp(role, "user") && strcmp(role, "assistant"))) {
            api_bad(e, "messages", "messages[%zu].role must be \"user\" or \"assistant\" (the system prompt is the "
                                   "top-level 'system')",
                    i);
            rc = -1;
        } else {
            rc = push_message(msgs, role, json_object_get(m, "content"), param, e);
        }
    }
    if (!rc) rc = api_add_chat_prompt(msgs, !strcmp(role, "assistant"), r, lim, e);
    json_decref(msgs);
    return rc;
}

/* --- the other fields --- */

/* What Anthropic's API offers and a text model without tools cannot do, refused by name. */
static int refuse_unsupported(json_t *root, const api_limits *lim, api_error *e)
{
    const char *m = lim->model_id ? lim->model_id : "this model";
    json_t *choice = json_object_get(root, "tool_choice"), *thinking = json_object_get(root, "thinking");
    const char *choice_type = json_string_value(json_object_get(choice, "type"));
    const char *thinking_type = json_string_value(json_object_get(thinking, "type"));
    if (api_asks(json_object_get(root, "tools"))) {
        api_bad(e, "tools", "'tools' is not supported: %s does not call tools", m);
        return -1;
    }
    if (api_asks(choice) && !(choice_type && (!strcmp(choice_type, "auto") || !strcmp(choice_type, "none")))) {
        api_bad(e, "tool_choice", "'tool_choice' is not supported: %s does not call tools", m);
        return -1;
    }
    if (api_asks(thinking) && !(thinking_type && !strcmp(thinking_type, "disabled"))) {
        api_bad(e, "thinking", "'thinking' is not supported: %s does not think before answering", m);
        return -1;
    }
    static const char *const servers[] = {"mcp_servers", "container", "context_management"};
    for (size_t i = 0; i < sizeof servers / sizeof *servers; i++)
        if (api_asks(json_object_get(root, servers[i]))) {
            api_bad(e, servers[i], "'%s' is not supported: sasp-server runs no tools, containers or servers",
                    servers[i]);
            return -1;
        }
    return 0;
}

/* stop_sequences: an array of strings (empty ones ignored), added to r's stops and kept in repeats (the
 * answer tells a stop sequence from the template's own stops). */
static int read_stop_sequences(json_t *root, api_request *r, json_t *repeats, api_error *e)
{
    json_t *v = json_object_get(root, "stop_sequences"), *s;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_array(v) || !api_all_of(v, api_is_str)) {
        api_bad(e, "stop_sequences", "'stop_sequences' must be an array of strings");
        return -1;
    }
    size_t i;
    json_array_foreach (v, i, s) {
        if (json_string_length(s) == 0) continue;
        if (r->gen.n_stop >= SASP_MAX_STOPS - 2) {
            api_bad(e, "stop_sequences", "at most %d stop sequences", SASP_MAX_STOPS - 2);
            return -1;
        }
        if (api_add_stop(&r->gen, json_string_value(s))) return -1;
    }
    return json_object_set(repeats, "stop_sequences", v);
}

/* output_config: its format ({"type": "json_schema", "schema"}) through the JSON constraint, as the beta
 * output_format before it; effort (how hard a model thinks) has no effect here and is listed in the
 * X-Sasp-Ignored-Options header. */
static int read_output_config(json_t *root, api_request *r, api_error *e)
{
    json_t *config = json_object_get(root, "output_config"), *fmt = json_object_get(config, "format");
    const char *field = "output_config.format";
    if (config && !json_is_null(config) && !json_is_object(config)) {
        api_bad(e, "output_config", "'output_config' must be an object");
        return -1;
    }
    if (api_asks(json_object_get(config, "effort"))) api_note_ignored(r, "output_config.effort");
    if (!fmt || json_is_null(fmt)) fmt = json_object_get(root, "output_format"), field = "output_format";
    if (!fmt || json_is_null(fmt)) return 0;
    const char *type = json_string_value(json_object_get(fmt, "type"));
    json_t *schema = json_object_get(fmt, "schema");
    if (!type || strcmp(type, "json_schema") || !json_is_object(schema)) {
        api_bad(e, field, "'%s' must be {\"type\": \"json_schema\", \"schema\": {...}}", field);
        return -1;
    }
    return api_set_schema(r, schema, field, e);
}

/* metadata: an object whose user_id is a string or null; no effect. */
static int read_metadata(json_t *root, api_error *e)
{
    json_t *md = json_object_get(root, "metadata");
    const char *user;
    if (!md || json_is_null(md)) return 0;
    if (!json_is_object(md)) {
        api_bad(e, "metadata", "'metadata' must be an object");
        return -1;
    }
    return api_get_str(md, "user_id", &user, e) < 0 ? -1 : 0;
}

/* model, a string, is required (the server picked the model from it already). */
static int read_model(json_t *root, api_error *e)
{
    const char *model;
    int got = api_get_str(root, "model", &model, e);
    if (got == 0) api_bad(e, "model", "'model' is required");
    return got == 1 ? 0 : -1;
}

int api_parse_messages(json_t *root, const api_limits *lim, api_request *r, api_error *e)
{
    float t;
    if (refuse_unsupported(root, lim, e) || read_model(root, e)) return -1;
    /* Anthropic's temperature is within [0, 1]; then the sampling fields as everywhere */
    if (api_get_range(root, "temperature", &t, 0, 0, 1, 0, e) < 0 || api_read_common(root, r, e)) return -1;
    int got = api_read_max_tokens(root, "max_tokens", API_ZERO_SCORES, lim, &r->gen.max_tokens, e);
    if (got == 0) api_bad(e, "max_tokens", "'max_tokens' is required");
    if (got <= 0) return -1;
    r->repeats = json_object();
    if (!r->repeats || read_stop_sequences(root, r, r->repeats, e) || read_metadata(root, e)) return -1;
    int n_asked = r->gen.n_stop;
    if (read_output_config(root, r, e) || read_messages_prompt(root, r, lim, e)) return -1;
    if (r->gen.json && n_asked) {
        api_bad(e, "stop_sequences", "'stop_sequences' cannot be combined with a JSON output format: a stop "
                                     "sequence could cut the document");
        return -1;
    }
    return api_check_sequences(r, "messages", lim, e) || api_check_json_budget(r, lim, 0, e) ? -1 : 0;
}

int api_read_message_prompt(json_t *root, api_request *r, const api_limits *lim, api_error *e)
{
    r->kind = API_MESSAGES;
    return refuse_unsupported(root, lim, e) || read_model(root, e) || read_messages_prompt(root, r, lim, e) ? -1 : 0;
}
