/* write_anthropic.c: the answers of Anthropic's Messages API, written from the scheduler's events:
 * the message object ({"type": "message", "content": [{"type": "text", "text"}], "stop_reason",
 * "stop_sequence", "usage"}) and, streamed, Anthropic's named events (message_start,
 * content_block_start, ping, content_block_delta with text_delta, content_block_stop, message_delta with
 * the stop reason and usage, message_stop; error when the engine fails). The request side is
 * anthropic.c's; docs/api.md, "POST /v1/messages". */
#include <jansson.h>
#include <string.h>

#include "api/internal.h"

/* Whether word is one of the request's stop_sequences (not one of the chat template's own stops). */
static int asked_stop(const api_out *o, const char *word)
{
    json_t *asked = json_object_get(o->repeats, "stop_sequences"), *s;
    size_t i;
    json_array_foreach (asked, i, s)
        if (!strcmp(json_string_value(s), word)) return 1;
    return 0;
}

/* Why c ended, in Anthropic's words, and the stop sequence when one did (else NULL). */
static const char *stop_reason(const api_out *o, const api_choice *c, const char **sequence)
{
    *sequence = NULL;
    if (c->end == SASP_END_WORD && c->stop_word && asked_stop(o, c->stop_word)) {
        *sequence = c->stop_word;
        return "stop_sequence";
    }
    if (c->end == SASP_END_CONTEXT) return "model_context_window_exceeded";
    if (c->finish && !strcmp(c->finish, "length")) return "max_tokens";
    return "end_turn"; /* the end of text, a stop of the template (the next turn), a complete JSON document */
}

static json_t *usage_json(const api_choice *c)
{
    return json_pack("{s:i,s:i}", "input_tokens", c->prompt_tokens, "output_tokens", c->completion_tokens);
}

/* The message object with content (taken), its stop reason (NULL: null, while streaming) and usage. */
static json_t *message_json(const api_out *o, json_t *content, const char *reason, const char *sequence,
                            json_t *usage)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o}", "id", o->id, "type", "message", "role", "assistant",
                     "model", o->model, "content", content, "stop_reason", reason ? json_string(reason) : json_null(),
                     "stop_sequence", sequence ? api_json_text(sequence, strlen(sequence)) : json_null(), "usage",
                     usage);
}

void api_messages_start(api_out *o, sasp_buf *b)
{
    json_t *usage = json_pack("{s:i,s:i}", "input_tokens", o->n ? o->ch[0].prompt_tokens : 0, "output_tokens", 0);
    api_emit_named(b, "message_start", json_pack("{s:s,s:o}", "type", "message_start", "message", message_json(o, json_array(), NULL, NULL, usage)));
    api_emit_named(b, "content_block_start", json_pack("{s:s,s:i,s:{s:s,s:s}}", "type", "content_block_start", "index", 0, "content_block", "type", "text", "text", ""));
    api_emit_named(b, "ping", json_pack("{s:s}", "type", "ping"));
}

void api_messages_event(api_out *o, api_choice *c, const sasp_event *ev, const char *text, size_t tl, sasp_buf *b)
{
    if (tl)
        api_emit_named(b, "content_block_delta", json_pack("{s:s,s:i,s:{s:s,s:o}}", "type", "content_block_delta", "index", 0, "delta", "type", "text_delta", "text", api_json_text(text, tl)));
    if (!ev->done) return;
    const char *sequence, *reason = stop_reason(o, c, &sequence);
    api_emit_named(b, "content_block_stop", json_pack("{s:s,s:i}", "type", "content_block_stop", "index", 0));
    api_emit_named(b, "message_delta",
                   json_pack("{s:s,s:{s:s,s:o},s:o}", "type", "message_delta", "delta", "stop_reason", reason,
                             "stop_sequence", sequence ? api_json_text(sequence, strlen(sequence)) : json_null(),
                             "usage", usage_json(c)));
    api_emit_named(b, "message_stop", json_pack("{s:s}", "type", "message_stop"));
}

void api_messages_failure(api_out *o, const char *message, sasp_buf *b)
{
    (void)o;
    api_emit_named(b, "error", json_pack("{s:s,s:{s:s,s:o}}", "type", "error", "error", "type", "api_error", "message", api_json_text(message, strlen(message))));
}

json_t *api_messages_answer(api_out *o)
{
    api_choice *c = &o->ch[0];
    const char *sequence, *reason = stop_reason(o, c, &sequence);
    json_t *block = json_pack("{s:s,s:o}", "type", "text", "text",
                              api_json_text(c->text.data ? c->text.data : "", c->text.len));
    return message_json(o, json_pack("[o]", block), reason, sequence, usage_json(c));
}
