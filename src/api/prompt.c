/* prompt.c: prompts into the token ids of a request's sequences (internal.h): text tokenized (an
 * empty one is the BOS token alone), and the messages of a chat through the plain chat template
 * (docs/api.md) that OpenAI's and Ollama's chat share, with the template's stop strings. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "base/util.h"

/* --- prompts: each becomes a sequence's token ids and its text --- */

int api_push_prompt(api_request *r, int *ids, int n, char *text)
{
    int i = r->n_seqs;
    int **p = realloc(r->prompt, (size_t)(i + 1) * sizeof *p);
    if (p) r->prompt = p;
    int *np = realloc(r->n_prompt, (size_t)(i + 1) * sizeof *np);
    if (np) r->n_prompt = np;
    char **t = realloc(r->prompt_text, (size_t)(i + 1) * sizeof *t);
    if (t) r->prompt_text = t;
    if (!p || !np || !t) {
        free(ids);
        free(text);
        return -1;
    }
    r->prompt[i] = ids;
    r->n_prompt[i] = n;
    r->prompt_text[i] = text;
    r->n_seqs++;
    return 0;
}

/* Tokenize text into a prompt (empty text -> the BOS token alone). */
int api_add_text_prompt(api_request *r, const char *s, size_t len, const api_limits *lim, api_error *e)
{
    int *ids = NULL;
    int n = sasp_encode(lim->tok, s, len, 1, &ids);
    if (n < 0) {
        api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    if (n == 0) {
        free(ids);
        ids = malloc(sizeof *ids);
        if (!ids) return -1;
        ids[0] = lim->bos;
        n = 1;
    }
    char *text = strndup(s, len);
    r->text_prompt = 1;
    return api_push_prompt(r, ids, n, text);
}

/* --- the chat template, shared by OpenAI's and Ollama's chat --- */

/* The stop strings the template adds to what the request asks, so the model does not write the
 * next turn. */
static const char *const chat_stops[] = {"\nUser:", "\nSystem:", NULL};

int api_add_chat_stops(sasp_gen_params *g)
{
    for (int i = 0; chat_stops[i]; i++)
        if (api_add_stop(g, chat_stops[i])) return -1;
    return 0;
}

/* The label of a message's role, or NULL + e. */
static const char *chat_label(json_t *m, size_t i, api_error *e)
{
    json_t *role = json_object_get(m, "role");
    if (!json_is_object(m) || !json_is_string(role)) {
        api_bad(e, "messages", "messages[%zu] must be an object with a string 'role'", i);
        return NULL;
    }
    const char *r = json_string_value(role);
    if (!strcmp(r, "system") || !strcmp(r, "developer")) return "System: ";
    if (!strcmp(r, "user")) return "User: ";
    if (!strcmp(r, "assistant")) return "Assistant: ";
    if (!strcmp(r, "tool")) return "Tool: ";
    api_bad(e, "messages", "messages[%zu].role must be system, developer, user, assistant or tool", i);
    return NULL;
}

/* What a message carries besides text, which a text model cannot take: images (Ollama's "images",
 * OpenAI's image parts are refused where the content is read) and calls of tools. */
static int chat_refuse_extras(json_t *m, size_t i, api_error *e)
{
    json_t *images = json_object_get(m, "images"), *calls = json_object_get(m, "tool_calls");
    if (json_array_size(images) > 0 || (images && !json_is_null(images) && !json_is_array(images))) {
        api_bad(e, "messages", "messages[%zu].images: images are not supported (sasp models read text only)", i);
        return -1;
    }
    if (json_array_size(calls) > 0 || (calls && !json_is_null(calls) && !json_is_array(calls)) ||
        json_object_get(m, "function_call")) {
        api_bad(e, "messages", "messages[%zu].tool_calls: tool calls are not supported (see 'tools')", i);
        return -1;
    }
    return 0;
}

/* A message's content into out: a string or null; OpenAI also takes an array of text parts. */
static int chat_content(json_t *content, api_kind kind, size_t i, sasp_buf *out, api_error *e)
{
    if (json_is_string(content)) return sasp_buf_append(out, json_string_value(content), json_string_length(content));
    if (!content || json_is_null(content)) return 0;
    if (kind == API_CHAT && json_is_array(content)) {
        size_t k;
        json_t *part;
        json_array_foreach (content, k, part) {
            json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
            if (!json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text)) {
                api_bad(e, "messages", "messages[%zu].content[%zu]: only {\"type\": \"text\", \"text\": ...} parts "
                                       "are supported (sasp models read text only)",
                        i, k);
                return -1;
            }
            sasp_buf_append(out, json_string_value(text), json_string_length(text));
        }
        return 0;
    }
    api_bad(e, "messages", kind == API_CHAT ? "messages[%zu].content must be a string, an array of text parts or null" : "messages[%zu].content must be a string", i);
    return -1;
}

char *api_render_chat(json_t *msgs, api_kind kind, int continue_last, api_error *e)
{
    if (!msgs || json_is_null(msgs)) {
        api_bad(e, "messages", "'messages' is required");
        return NULL;
    }
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        api_bad(e, "messages", "'messages' must be a non-empty array of {role, content} objects");
        return NULL;
    }
    sasp_buf out = {0};
    size_t i;
    json_t *m;
    json_array_foreach (msgs, i, m) {
        const char *label = chat_label(m, i, e);
        if (!label || chat_refuse_extras(m, i, e)) goto fail;
        sasp_buf_puts(&out, label);
        if (chat_content(json_object_get(m, "content"), kind, i, &out, e) < 0) goto fail;
        if (!(continue_last && i + 1 == json_array_size(msgs))) sasp_buf_puts(&out, "\n");
    }
    if (!continue_last) sasp_buf_puts(&out, "Assistant:");
    char *text = sasp_buf_take(&out, NULL);
    if (!text) api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    return text;
fail:
    sasp_buf_free(&out);
    return NULL;
}

/* msgs through the chat template, as one prompt, and the template's stop strings. */
int api_add_chat_prompt(json_t *msgs, int continue_last, api_request *r, const api_limits *lim, api_error *e)
{
    char *text = api_render_chat(msgs, r->kind, continue_last, e);
    if (!text) return -1;
    int failed = api_add_text_prompt(r, text, strlen(text), lim, e);
    free(text);
    if (failed) return -1;
    r->text_prompt = 0; /* a template's text: never healed */
    return api_add_chat_stops(&r->gen);
}

/* --- message contents of Anthropic's and the Responses API --- */

int api_content_text(json_t *content, const char *const *text_types, const char *param, sasp_buf *out,
                     api_error *e)
{
    if (json_is_string(content)) return sasp_buf_append(out, json_string_value(content), json_string_length(content));
    if (!json_is_array(content)) {
        api_bad(e, param, "'%s' must be a string or an array of content blocks", param);
        return -1;
    }
    size_t k;
    json_t *part;
    json_array_foreach (content, k, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        json_t *text = json_object_get(part, "text");
        int is_text = 0;
        for (int t = 0; type && text_types[t]; t++) is_text |= !strcmp(type, text_types[t]);
        if (!type) {
            api_bad(e, param, "'%s[%zu]' must be an object with a string 'type'", param, k);
            return -1;
        }
        if (!is_text) {
            api_bad(e, param, "'%s[%zu]': content of type '%s' is not supported: sasp models read text only and call "
                              "no tools ('%s' parts only)",
                    param, k, type, text_types[0]);
            return -1;
        }
        if (!json_is_string(text)) {
            api_bad(e, param, "'%s[%zu].text' must be a string", param, k);
            return -1;
        }
        sasp_buf_append(out, json_string_value(text), json_string_length(text));
    }
    return 0;
}
