/* responses.c: OpenAI's Responses API, the request side: POST /v1/responses bodies into generation
 * parameters (instructions and input, a string or message items, through the chat template of
 * /v1/chat/completions; max_output_tokens; the sampling fields; text.format through the JSON constraint
 * of response_format), the fields the response object repeats, and what a stateless server without
 * tools refuses by name (previous_response_id, conversation, store: true, background, tools, prompt,
 * reasoning, include). The answers are write_responses.c's; docs/api.md, "POST /v1/responses". */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"

/* --- what is refused --- */

static int refuse(api_error *e, const char *field, const char *why)
{
    api_bad(e, field, "'%s' is not supported: %s", field, why);
    return -1;
}

/* tool_choice without tools: "none" and "auto" ask for nothing. */
static int asks_for_a_tool(json_t *v)
{
    const char *s = json_string_value(v);
    return api_asks(v) && !(s && (!strcmp(s, "none") || !strcmp(s, "auto")));
}

/* reasoning: an effort other than "none", or a summary. */
static int asks_for_reasoning(json_t *v)
{
    const char *effort = json_string_value(json_object_get(v, "effort"));
    return api_asks(v) && ((effort && strcmp(effort, "none")) || api_asks(json_object_get(v, "summary")) ||
                           !json_is_object(v));
}

static int refuse_unsupported(json_t *root, const api_limits *lim, api_error *e)
{
    static const char *const state = "sasp-server keeps no responses or conversations (it is stateless): send "
                                     "the whole conversation in 'input'";
    const char *truncation = json_string_value(json_object_get(root, "truncation"));
    long long top = 0;
    char why[160];
    snprintf(why, sizeof why, "%s does not call tools", lim->model_id ? lim->model_id : "this model");
    if (api_asks(json_object_get(root, "previous_response_id"))) return refuse(e, "previous_response_id", state);
    if (api_asks(json_object_get(root, "conversation"))) return refuse(e, "conversation", state);
    if (json_is_true(json_object_get(root, "store")))
        return refuse(e, "store", "sasp-server keeps no responses; leave 'store' out or send false");
    if (json_is_true(json_object_get(root, "background")))
        return refuse(e, "background", "a response is generated while its request is open (stream it to see it grow)");
    if (api_asks(json_object_get(root, "tools"))) return refuse(e, "tools", why);
    if (asks_for_a_tool(json_object_get(root, "tool_choice"))) return refuse(e, "tool_choice", why);
    if (api_asks(json_object_get(root, "prompt"))) return refuse(e, "prompt", "there are no stored prompt templates");
    if (asks_for_reasoning(json_object_get(root, "reasoning")))
        return refuse(e, "reasoning", "the model answers without reasoning first");
    if (api_asks(json_object_get(root, "include"))) return refuse(e, "include", "there is nothing to include");
    if (api_asks(json_object_get(root, "context_management")))
        return refuse(e, "context_management", "a prompt beyond the context is refused, not compacted");
    if (truncation && !strcmp(truncation, "auto"))
        return refuse(e, "truncation", "\"auto\": a prompt beyond the context is refused (\"disabled\")");
    if (api_get_int(root, "top_logprobs", &top, e) < 0) return -1;
    if (top > 0) return refuse(e, "top_logprobs", "the responses carry no logprobs (use /v1/chat/completions)");
    return 0;
}

/* --- input --- */

static const char *const text_parts[] = {"input_text", "output_text", NULL};

/* One input message item into msgs (the chat template's input). */
static int push_item(json_t *msgs, json_t *item, size_t i, api_error *e)
{
    const char *type = json_string_value(json_object_get(item, "type"));
    const char *role = json_string_value(json_object_get(item, "role"));
    char param[64];
    snprintf(param, sizeof param, "input[%zu].content", i);
    if (!json_is_object(item) || (type && strcmp(type, "message"))) {
        api_bad(e, "input", "input[%zu]: items of type '%s' are not supported: only messages (sasp models call no "
                            "tools and do not reason)",
                i, type ? type : "?");
        return -1;
    }
    if (!role || (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system") &&
                  strcmp(role, "developer"))) {
        api_bad(e, "input", "input[%zu].role must be user, assistant, system or developer", i);
        return -1;
    }
    sasp_buf text = {0};
    int rc = api_content_text(json_object_get(item, "content"), text_parts, param, &text, e);
    json_t *m = rc ? NULL : json_pack("{s:s,s:s%}", "role", role, "content", text.data ? text.data : "", text.len);
    sasp_buf_free(&text);
    return m ? json_array_append_new(msgs, m) : -1;
}

/* instructions (a system message first), then input: a string (one user message) or message items. */
static int read_input(json_t *root, json_t *msgs, api_error *e)
{
    json_t *input = json_object_get(root, "input"), *item;
    const char *instructions;
    int got = api_get_str(root, "instructions", &instructions, e);
    if (got < 0) return -1;
    if (got && json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", instructions)))
        return -1;
    if (json_is_string(input))
        return json_array_append_new(msgs, json_pack("{s:s,s:O}", "role", "user", "content", input));
    if (!json_is_array(input) || json_array_size(input) == 0) {
        api_bad(e, "input", "'input' (a string or a non-empty array of input messages) is required");
        return -1;
    }
    size_t i;
    json_array_foreach (input, i, item)
        if (push_item(msgs, item, i, e)) return -1;
    return 0;
}

/* --- the output's format and what the response repeats --- */

/* text.format: {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "name", "schema",
 * "strict", "description"}, the last two through the JSON constraint. */
static int read_text_format(json_t *root, api_request *r, api_error *e)
{
    json_t *text = json_object_get(root, "text"), *fmt = json_object_get(text, "format");
    if (text && !json_is_null(text) && !json_is_object(text)) {
        api_bad(e, "text", "'text' must be an object");
        return -1;
    }
    if (api_asks(json_object_get(text, "verbosity"))) api_note_ignored(r, "text.verbosity");
    if (!fmt || json_is_null(fmt)) return 0;
    const char *type = json_string_value(json_object_get(fmt, "type")), *name;
    int strict;
    if (!json_is_object(fmt) || !type) {
        api_bad(e, "text.format", "'text.format' must be an object with a 'type'");
        return -1;
    }
    if (!strcmp(type, "text")) return 0;
    if (!strcmp(type, "json_object")) return api_set_schema(r, NULL, "text.format", e);
    if (strcmp(type, "json_schema")) {
        api_bad(e, "text.format", "'text.format.type' must be text, json_object or json_schema, got '%s'", type);
        return -1;
    }
    if (!json_is_object(json_object_get(fmt, "schema"))) {
        api_bad(e, "text.format", "'text.format.schema' (a JSON Schema object) is required");
        return -1;
    }
    if (api_get_str(fmt, "name", &name, e) < 0 || api_get_bool(fmt, "strict", &strict, e) < 0) return -1;
    return api_set_schema(r, json_object_get(fmt, "schema"), "text.format", e);
}

/* metadata: up to 16 string values. */
static int read_metadata(json_t *root, api_error *e)
{
    json_t *md = json_object_get(root, "metadata");
    if (!md || json_is_null(md)) return 0;
    if (!json_is_object(md) || json_object_size(md) > 16) {
        api_bad(e, "metadata", "'metadata' must be an object of at most 16 string values");
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach (md, k, v)
        if (!json_is_string(v)) {
            api_bad(e, "metadata", "'metadata.%s' must be a string", k);
            return -1;
        }
    return 0;
}

/* The request's fields the response object repeats, as the engine uses them. */
static json_t *repeated_fields(json_t *root, const api_request *r, int max_asked)
{
    json_t *md = json_object_get(root, "metadata"), *fmt = json_object_get(json_object_get(root, "text"), "format");
    json_t *instructions = json_object_get(root, "instructions"), *user = json_object_get(root, "user");
    json_t *rep = json_pack("{s:O,s:o,s:o,s:f,s:f,s:{s:o}}", "instructions",
                            json_is_string(instructions) ? instructions : json_null(),
                            "max_output_tokens", max_asked ? json_integer(r->gen.max_tokens) : json_null(), "metadata",
                            json_is_object(md) ? json_deep_copy(md) : json_object(), "temperature",
                            (double)r->gen.sampling.temperature, "top_p", (double)r->gen.sampling.top_p, "text",
                            "format", json_is_object(fmt) ? json_incref(fmt) : json_pack("{s:s}", "type", "text"));
    if (rep && json_is_string(user)) json_object_set(rep, "user", user);
    return rep;
}

int api_parse_responses(json_t *root, const api_limits *lim, api_request *r, api_error *e)
{
    if (refuse_unsupported(root, lim, e) || api_read_common(root, r, e)) return -1;
    int got = api_read_max_tokens(root, "max_output_tokens", API_AT_LEAST_ONE, lim, &r->gen.max_tokens, e);
    if (got < 0 || read_text_format(root, r, e) || read_metadata(root, e)) return -1;
    json_t *msgs = json_array();
    int rc = !msgs || read_input(root, msgs, e) || api_add_chat_prompt(msgs, 0, r, lim, e);
    json_decref(msgs);
    if (rc || api_check_sequences(r, "input", lim, e) || api_check_json_budget(r, lim, 0, e)) return -1;
    r->repeats = repeated_fields(root, r, got);
    return r->repeats ? 0 : -1;
}
