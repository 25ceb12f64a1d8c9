/* write_responses.c: the answers of OpenAI's Responses API, written from the scheduler's events: the
 * response object (status "completed", or "incomplete" with incomplete_details.reason
 * "max_output_tokens"; one message item whose content is one output_text part; usage) and, streamed,
 * its named events, each with a sequence_number: response.created, response.in_progress,
 * response.output_item.added, response.content_part.added, response.output_text.delta ...,
 * response.output_text.done, response.content_part.done, response.output_item.done, then
 * response.completed or response.incomplete (response.failed when the engine fails). The request side
 * is responses.c's; docs/api.md, "POST /v1/responses". */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"

/* The id of the response's one message item: msg_ and the response's own number. */
static json_t *item_id(const api_out *o)
{
    char id[64];
    snprintf(id, sizeof id, "msg_%s", o->id + strlen("resp_"));
    return json_string(id);
}

static json_t *text_part(const char *text, size_t len)
{
    return json_pack("{s:s,s:o,s:[],s:[]}", "type", "output_text", "text", api_json_text(text ? text : "", len),
                     "annotations", "logprobs");
}

static json_t *message_item(const api_out *o, const char *status, json_t *content)
{
    return json_pack("{s:o,s:s,s:s,s:s,s:o}", "id", item_id(o), "type", "message", "status", status, "role",
                     "assistant", "content", content);
}

static json_t *usage_json(const api_choice *c)
{
    return json_pack("{s:i,s:{s:i},s:i,s:{s:i},s:i}", "input_tokens", c->prompt_tokens, "input_tokens_details",
                     "cached_tokens", c->cached_tokens, "output_tokens", c->completion_tokens, "output_tokens_details",
                     "reasoning_tokens", 0, "total_tokens", c->prompt_tokens + c->completion_tokens);
}

/* The response object in state status with output and usage (both taken; usage NULL: null). */
static json_t *response_json(const api_out *o, const char *status, json_t *output, json_t *usage)
{
    json_t *j = json_pack("{s:s,s:s,s:I,s:s,s:n,s:n,s:s,s:o,s:b,s:n,s:{s:n,s:n},s:b,s:s,s:[],s:s,s:o}", "id", o->id,
                          "object", "response", "created_at", (json_int_t)o->created, "status", status, "error",
                          "incomplete_details", "model", o->model, "output", output, "parallel_tool_calls", 0,
                          "previous_response_id", "reasoning", "effort", "summary", "store", 0, "tool_choice", "none",
                          "tools", "truncation", "disabled", "usage", usage ? usage : json_null());
    if (j && o->repeats) json_object_update(j, o->repeats);
    return j;
}

/* Whether c ended at its length limit (or the context's end): the response is incomplete. */
static int cut_short(const api_choice *c) { return c->finish && !strcmp(c->finish, "length"); }

/* The finished response of choice c, with its text. */
static json_t *final_response(const api_out *o, const api_choice *c)
{
    const char *status = cut_short(c) ? "incomplete" : "completed";
    json_t *item = message_item(o, status, json_pack("[o]", text_part(c->text.data, c->text.len)));
    json_t *j = response_json(o, status, json_pack("[o]", item), usage_json(c));
    if (j && cut_short(c))
        json_object_set_new(j, "incomplete_details", json_pack("{s:s}", "reason", "max_output_tokens"));
    return j;
}

/* One event: its type, its sequence_number, then fields (taken). */
static void emit(api_out *o, sasp_buf *b, const char *type, json_t *fields)
{
    json_t *j = json_pack("{s:s,s:i}", "type", type, "sequence_number", o->seq_no++);
    if (j && fields) json_object_update(j, fields);
    json_decref(fields);
    api_emit_named(b, type, j);
}

/* The fields that place an event in the message item's one text part. */
static json_t *at_part(const api_out *o)
{
    return json_pack("{s:o,s:i,s:i}", "item_id", item_id(o), "output_index", 0, "content_index", 0);
}

void api_responses_start(api_out *o, sasp_buf *b)
{
    emit(o, b, "response.created", json_pack("{s:o}", "response", response_json(o, "in_progress", json_array(), NULL)));
    emit(o, b, "response.in_progress",
         json_pack("{s:o}", "response", response_json(o, "in_progress", json_array(), NULL)));
    emit(o, b, "response.output_item.added",
         json_pack("{s:i,s:o}", "output_index", 0, "item", message_item(o, "in_progress", json_array())));
    json_t *added = at_part(o);
    json_object_set_new(added, "part", text_part("", 0));
    emit(o, b, "response.content_part.added", added);
}

void api_responses_event(api_out *o, api_choice *c, const sasp_event *ev, const char *text, size_t tl, sasp_buf *b)
{
    if (tl) {
        sasp_buf_append(&c->text, text, tl);
        json_t *delta = at_part(o);
        json_object_set_new(delta, "delta", api_json_text(text, tl));
        json_object_set_new(delta, "logprobs", json_array());
        emit(o, b, "response.output_text.delta", delta);
    }
    if (!ev->done) return;
    const char *status = cut_short(c) ? "incomplete" : "completed";
    json_t *done = at_part(o);
    json_object_set_new(done, "text", api_json_text(c->text.data ? c->text.data : "", c->text.len));
    json_object_set_new(done, "logprobs", json_array());
    emit(o, b, "response.output_text.done", done);
    json_t *part = at_part(o);
    json_object_set_new(part, "part", text_part(c->text.data, c->text.len));
    emit(o, b, "response.content_part.done", part);
    emit(o, b, "response.output_item.done",
         json_pack("{s:i,s:o}", "output_index", 0, "item",
                   message_item(o, status, json_pack("[o]", text_part(c->text.data, c->text.len)))));
    emit(o, b, cut_short(c) ? "response.incomplete" : "response.completed",
         json_pack("{s:o}", "response", final_response(o, c)));
}

void api_responses_failure(api_out *o, const char *message, sasp_buf *b)
{
    json_t *r = response_json(o, "failed", json_array(), NULL);
    json_object_set_new(r, "error", json_pack("{s:s,s:o}", "code", "server_error", "message", api_json_text(message, strlen(message))));
    emit(o, b, "response.failed", json_pack("{s:o}", "response", r));
}

json_t *api_responses_answer(api_out *o) { return final_response(o, &o->ch[0]); }
