/* write.c: the answers of the generation endpoints, written from the scheduler's events: OpenAI's
 * server-sent-event chunks and whole completions (with usage, its cached prompt tokens, and logprobs),
 * Ollama's NDJSON lines and final objects (generate's "response" and "context", chat's "message");
 * llama.cpp's shapes are write_llama.c's; and Ollama's answer to a request that only loads or unloads
 * the model. See api.h. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/internal.h"
#include "base/util.h"

/* What llama.cpp's answers need of the request: its settings, return_tokens, n_probs, response_fields. */
static int llama_parts(api_out *o, const api_request *r)
{
    o->settings = api_llama_settings(r);
    o->return_tokens = r->return_tokens;
    o->n_probs = r->n_probs;
    o->post_sampling_probs = r->gen.post_sampling_probs;
    if (r->n_response_fields) {
        o->fields = calloc((size_t)r->n_response_fields, sizeof *o->fields);
        if (!o->fields) return -1;
        for (int i = 0; i < r->n_response_fields; i++)
            if (!(o->fields[o->n_fields++] = strdup(r->response_fields[i]))) return -1;
    }
    return o->settings ? 0 : -1;
}

api_out *api_out_new(const api_request *r, const char *model, const sasp_tokenizer *tok, long created)
{
    static unsigned long counter;
    api_out *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->kind = r->kind;
    o->stream = r->stream;
    o->include_usage = r->include_usage;
    o->echo = r->echo;
    o->logprobs = r->gen.logprobs;
    o->n_choices_per_prompt = r->n_choices > 0 ? r->n_choices : 1;
    o->model = strdup(model);
    o->created = created;
    o->tok = tok;
    unsigned long c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    const char *prefix = r->kind == API_CHAT ? "chatcmpl-" : r->kind == API_MESSAGES ? "msg_"
                                                         : r->kind == API_RESPONSES  ? "resp_"
                                                                                     : "cmpl-";
    snprintf(o->id, sizeof o->id, "%s%lx%06lx", prefix, (unsigned long)created, c & 0xffffff);
    o->repeats = json_incref(r->repeats);
    o->ch = calloc((size_t)(r->n_seqs > 0 ? r->n_seqs : 1), sizeof *o->ch);
    o->prompt_text = calloc((size_t)(r->n_seqs > 0 ? r->n_seqs : 1), sizeof *o->prompt_text);
    if (!o->model || !o->ch || !o->prompt_text) {
        api_out_free(o);
        return NULL;
    }
    o->n = r->n_seqs;
    o->n_dropped = r->n_dropped;
    for (int i = 0; i < r->n_seqs; i++) {
        o->prompt_text[i] = strdup(r->prompt_text[i] ? r->prompt_text[i] : "");
        if (!o->prompt_text[i]) {
            api_out_free(o);
            return NULL;
        }
        o->ch[i].prompt_tokens = r->n_prompt[i];
        o->ch[i].slot = -1;
    }
    if (api_kind_is_llama(r->kind) && llama_parts(o, r)) {
        api_out_free(o);
        return NULL;
    }
    if (r->context) {
        o->n_context = r->n_prompt[0];
        o->context = malloc((size_t)o->n_context * sizeof *o->context);
        if (o->context) memcpy(o->context, r->context, (size_t)o->n_context * sizeof *o->context);
        else o->n_context = 0;
    }
    return o;
}

void api_out_free(api_out *o)
{
    if (!o) return;
    for (int i = 0; i < o->n; i++) {
        sasp_buf_free(&o->ch[i].text);
        json_decref(o->ch[i].lp);
        free(o->ch[i].ids);
        free(o->ch[i].stop_word);
        free(o->prompt_text[i]);
    }
    for (int i = 0; i < o->n_fields; i++) free(o->fields[i]);
    free(o->fields);
    json_decref(o->settings);
    json_decref(o->repeats);
    free(o->ch);
    free(o->prompt_text);
    free(o->context);
    free(o->model);
    free(o->error);
    free(o);
}

void api_out_usage(const api_out *o, int *prompt_tokens, int *completion_tokens)
{
    int p = 0, c = 0;
    for (int i = 0; i < o->n; i++) {
        if (i % o->n_choices_per_prompt == 0) p += o->ch[i].prompt_tokens; /* a prompt's n choices share it */
        c += o->ch[i].completion_tokens;
    }
    *prompt_tokens = p;
    *completion_tokens = c;
}

int api_out_failed(const api_out *o) { return o->failed; }

json_t *api_created_at(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char buf[64];
    size_t w = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + w, sizeof buf - w, ".%09ldZ", ts.tv_nsec);
    return json_string(buf);
}

/* Completions' top_logprobs entry: {token text: logprob} for a token's alternatives. */
static json_t *top_object(const sasp_tokenizer *tok, const sasp_token_info *ti)
{
    json_t *top = json_object();
    for (int k = 0; k < ti->n_top; k++) {
        json_t *s = api_token_string(tok, ti->top[k].id, 0);
        json_object_set_new(top, json_string_value(s), json_real(ti->top[k].logprob));
        json_decref(s);
    }
    return top;
}

static json_t *completion_logprobs_new(void)
{
    return json_pack("{s:[],s:[],s:[],s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

/* Logprobs of ev's tokens: completions' {tokens, token_logprobs, top_logprobs, text_offset} or chat's
 * {content: [...]}; appended to acc when acc is given, else returned fresh. */
static json_t *logprobs_json(api_out *o, api_choice *c, const sasp_event *ev, json_t *acc)
{
    if (!o->logprobs || !ev->info) return acc;
    if (o->kind == API_CHAT) {
        json_t *lp = acc ? acc : json_pack("{s:[]}", "content");
        json_t *content = json_object_get(lp, "content");
        for (int i = 0; i < ev->n_ids; i++) {
            const sasp_token_info *ti = &ev->info[i];
            json_t *top = json_array();
            for (int k = 0; k < ti->n_top; k++)
                json_array_append_new(top, json_pack("{s:o,s:f,s:o}", "token", api_token_string(o->tok, ti->top[k].id, 0),
                                                     "logprob", (double)ti->top[k].logprob, "bytes",
                                                     api_token_bytes(o->tok, ti->top[k].id, 0)));
            json_array_append_new(content, json_pack("{s:o,s:f,s:o,s:o}", "token", api_token_string(o->tok, ti->id, ti->skip),
                                                     "logprob", (double)ti->logprob, "bytes",
                                                     api_token_bytes(o->tok, ti->id, ti->skip), "top_logprobs", top));
        }
        return lp;
    }
    json_t *lp = acc ? acc : completion_logprobs_new();
    json_t *toks = json_object_get(lp, "tokens"), *lps = json_object_get(lp, "token_logprobs"),
           *tops = json_object_get(lp, "top_logprobs"), *offs = json_object_get(lp, "text_offset");
    for (int i = 0; i < ev->n_ids; i++) {
        const sasp_token_info *ti = &ev->info[i];
        json_array_append_new(toks, api_token_string(o->tok, ti->id, ti->skip));
        json_array_append_new(lps, json_real(ti->logprob));
        json_array_append_new(tops, top_object(o->tok, ti));
        json_array_append_new(offs, json_integer((json_int_t)c->offset));
        size_t nb = 0;
        sasp_token_bytes(o->tok, ti->id, &nb);
        c->offset += nb - ((size_t)ti->skip < nb ? (size_t)ti->skip : nb);
    }
    return lp;
}

/* The prompt's logprobs in the completions shape (echo with logprobs): the first token has none. */
static json_t *prompt_logprobs_json(api_out *o, const sasp_event *ev, json_t *acc)
{
    json_t *lp = acc ? acc : completion_logprobs_new();
    json_t *toks = json_object_get(lp, "tokens"), *lps = json_object_get(lp, "token_logprobs"),
           *tops = json_object_get(lp, "top_logprobs"), *offs = json_object_get(lp, "text_offset");
    size_t offset = 0;
    for (int i = 0; i < ev->n_ids; i++) {
        json_array_append_new(toks, api_token_string(o->tok, ev->ids[i], 0));
        json_array_append_new(offs, json_integer((json_int_t)offset));
        size_t nb = 0;
        sasp_token_bytes(o->tok, ev->ids[i], &nb);
        offset += nb;
        if (i == 0) {
            json_array_append_new(lps, json_null());
            json_array_append_new(tops, json_null());
            continue;
        }
        const sasp_token_info *ti = &ev->prompt_info[i - 1];
        json_array_append_new(lps, json_real(ti->logprob));
        json_array_append_new(tops, top_object(o->tok, ti));
    }
    return lp;
}

/* The bytes gathered in b, handed to the caller, or NULL when there are none. */
static char *take(sasp_buf *b, size_t *len)
{
    if (b->len == 0) {
        sasp_buf_free(b);
        *len = 0;
        return NULL;
    }
    return sasp_buf_take(b, len);
}

static json_t *chunk_head(api_out *o)
{
    return json_pack("{s:s,s:s,s:I,s:s}", "id", o->id, "object",
                     o->kind == API_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)o->created, "model", o->model);
}

/* OpenAI's usage, with prompt_tokens_details.cached_tokens (the prompt cache) and, when prompts were
 * cut to fit the context, prompt_tokens_dropped. */
static json_t *usage_json(api_out *o)
{
    int p, c, cached = 0, dropped = o->n_dropped;
    api_out_usage(o, &p, &c);
    for (int i = 0; i < o->n; i += o->n_choices_per_prompt) cached += o->ch[i].cached_tokens;
    json_t *u = json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", p, "completion_tokens", c, "total_tokens", p + c,
                          "prompt_tokens_details", "cached_tokens", cached);
    if (dropped) json_object_set_new(u, "prompt_tokens_dropped", json_integer(dropped));
    return u;
}

static void completion_chunk(api_out *o, sasp_buf *b, int index, const char *text, size_t len, json_t *lp,
                             const char *finish)
{
    json_t *ch = json_pack("{s:i,s:o,s:o,s:o}", "index", index, "text", api_json_text(text, len), "logprobs",
                           lp ? lp : json_null(), "finish_reason", finish ? json_string(finish) : json_null());
    json_t *j = chunk_head(o);
    json_object_set_new(j, "choices", json_pack("[o]", ch));
    api_emit(b, o->kind, j);
}

static void chat_chunk(api_out *o, sasp_buf *b, int index, json_t *delta, json_t *lp, const char *finish)
{
    json_t *ch = json_pack("{s:i,s:o,s:o,s:o}", "index", index, "delta", delta, "logprobs", lp ? lp : json_null(),
                           "finish_reason", finish ? json_string(finish) : json_null());
    json_t *j = chunk_head(o);
    json_object_set_new(j, "choices", json_pack("[o]", ch));
    api_emit(b, o->kind, j);
}

char *api_out_start(api_out *o, size_t *len)
{
    sasp_buf b = {0};
    for (int i = 0; i < o->n; i++) {
        api_choice *c = &o->ch[i];
        const char *pt = o->prompt_text[i];
        if (o->kind == API_COMPLETIONS && o->echo) {
            c->offset = strlen(pt);
            if (o->stream) completion_chunk(o, &b, i, pt, strlen(pt), NULL, NULL);
            else sasp_buf_puts(&c->text, pt);
        }
        if (o->kind == API_CHAT && o->stream)
            chat_chunk(o, &b, i, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL, NULL);
    }
    if (o->stream && o->kind == API_MESSAGES) api_messages_start(o, &b);
    if (o->stream && o->kind == API_RESPONSES) api_responses_start(o, &b);
    return take(&b, len);
}

/* An Ollama line's head: model, created_at, and the text as generate's "response" or chat's message. */
static json_t *ollama_line(api_out *o, const char *text, size_t len, int done)
{
    json_t *j = json_pack("{s:s,s:o}", "model", o->model, "created_at", api_created_at());
    if (o->kind == API_OLLAMA_CHAT)
        json_object_set_new(j, "message", json_pack("{s:s,s:o}", "role", "assistant", "content", api_json_text(text, len)));
    else
        json_object_set_new(j, "response", api_json_text(text, len));
    json_object_set_new(j, "done", json_boolean(done));
    return j;
}

/* Ollama's last line: the reason, the counts and durations, and for generate the "context": the
 * prompt's ids as the engine read them (a healed prompt's kept ones) and the generated ids. */
static json_t *ollama_final(api_out *o, api_choice *c, const char *text, size_t len)
{
    json_t *j = ollama_line(o, text, len, 1);
    json_object_set_new(j, "done_reason", json_string(c->finish ? c->finish : "stop"));
    if (o->kind == API_GENERATE) {
        json_t *ctx = json_array();
        int kept = c->prompt_tokens < o->n_context ? c->prompt_tokens : o->n_context;
        for (int i = 0; i < kept; i++) json_array_append_new(ctx, json_integer(o->context[i]));
        for (int i = 0; i < c->n_ids; i++) json_array_append_new(ctx, json_integer(c->ids[i]));
        json_object_set_new(j, "context", ctx);
    }
    json_t *counts = json_pack("{s:I,s:I,s:i,s:I,s:i,s:I}", "total_duration", (json_int_t)c->total_ns, "load_duration",
                               (json_int_t)0, "prompt_eval_count", c->prompt_tokens, "prompt_eval_duration",
                               (json_int_t)c->prompt_ns, "eval_count", c->completion_tokens, "eval_duration",
                               (json_int_t)c->eval_ns);
    json_object_update(j, counts);
    json_decref(counts);
    if (c->dropped_tokens) { /* the prompt was cut to fit the context */
        json_object_set_new(j, "truncated", json_true());
        json_object_set_new(j, "prompt_tokens_dropped", json_integer(c->dropped_tokens));
    }
    return j;
}

/* The scored prompt (echo with logprobs): it comes before every generated token. */
static char *prompt_event(api_out *o, api_choice *c, const sasp_event *ev, size_t *len)
{
    if (o->kind != API_COMPLETIONS || !o->logprobs) return NULL;
    if (!o->stream) {
        c->lp = prompt_logprobs_json(o, ev, c->lp);
        return NULL;
    }
    sasp_buf b = {0};
    completion_chunk(o, &b, ev->index, "", 0, prompt_logprobs_json(o, ev, NULL), NULL);
    return take(&b, len);
}

/* What an event tells about its choice whatever the format: generate's context ids, and with the last
 * event the finish reason, the counts, the times, and an engine error (whose message is then not
 * text: *text becomes empty). */
static void record_event(api_out *o, api_choice *c, const sasp_event *ev, const char **text, size_t *tl)
{
    if (memchr(*text, '\n', *tl)) c->has_new_line = 1;
    if (ev->prompt_tokens > 0) c->prompt_tokens = ev->prompt_tokens;
    if ((o->kind == API_GENERATE || api_kind_is_llama(o->kind)) && ev->n_ids) {
        if (c->n_ids + ev->n_ids > c->cap_ids) {
            int cap = (c->n_ids + ev->n_ids) * 2;
            int *ids = realloc(c->ids, (size_t)cap * sizeof *ids);
            if (ids) {
                c->ids = ids;
                c->cap_ids = cap;
            }
        }
        if (c->n_ids + ev->n_ids <= c->cap_ids) {
            memcpy(c->ids + c->n_ids, ev->ids, (size_t)ev->n_ids * sizeof *ev->ids);
            c->n_ids += ev->n_ids;
        }
    }
    if (!ev->done) return;
    c->finish = ev->finish_reason ? ev->finish_reason : "stop";
    c->prompt_tokens = ev->prompt_tokens;
    c->completion_tokens = ev->completion_tokens;
    c->total_ns = ev->total_ns;
    c->prompt_ns = ev->prompt_ns;
    c->eval_ns = ev->eval_ns;
    c->cached_tokens = ev->cached_tokens;
    c->dropped_tokens = ev->dropped_tokens;
    c->end = ev->end;
    c->slot = ev->slot;
    free(c->stop_word);
    c->stop_word = ev->stop_word ? strdup(ev->stop_word) : NULL;
    if (ev->error) {
        o->failed = 1;
        free(o->error);
        o->error = strndup(*text, *tl);
        *text = "";
        *tl = 0;
    }
}

/* A streamed engine failure: an error object where the next chunk would have been. */
static void stream_error(api_out *o, sasp_buf *b)
{
    api_error err;
    api_error_set(&err, 500, "server_error", NULL, NULL, "%s", o->error ? o->error : "engine failure");
    if (o->kind == API_MESSAGES) {
        api_messages_failure(o, err.message, b);
        return;
    }
    if (o->kind == API_RESPONSES) {
        api_responses_failure(o, err.message, b);
        return;
    }
    json_t *msg = api_json_text(err.message, strlen(err.message));
    if (api_kind_is_ollama(o->kind)) api_emit(b, o->kind, json_pack("{s:o}", "error", msg));
    else api_emit(b, o->kind, json_pack("{s:{s:o,s:s}}", "error", "message", msg, "type", "server_error"));
}

char *api_out_event(api_out *o, const sasp_event *ev, size_t *len)
{
    *len = 0;
    if (ev->index < 0 || ev->index >= o->n) return NULL;
    api_choice *c = &o->ch[ev->index];
    if (ev->prompt_info) return prompt_event(o, c, ev, len);
    const char *text = ev->text ? ev->text : "";
    size_t tl = ev->text ? ev->len : 0;
    record_event(o, c, ev, &text, &tl);
    if (!o->stream) {
        sasp_buf_append(&c->text, text, tl);
        c->lp = api_kind_is_llama(o->kind) ? api_llama_probs(o, ev, c->lp) : logprobs_json(o, c, ev, c->lp);
        return NULL;
    }
    sasp_buf b = {0};
    json_t *lp = api_kind_is_llama(o->kind) ? NULL : logprobs_json(o, c, ev, NULL);
    if (ev->done && ev->error) {
        json_decref(lp);
        stream_error(o, &b);
        return take(&b, len);
    }
    switch (o->kind) {
    case API_COMPLETIONS:
        if (tl || lp || ev->done) completion_chunk(o, &b, ev->index, text, tl, lp, ev->done ? c->finish : NULL);
        break;
    case API_CHAT:
        if (tl || lp) chat_chunk(o, &b, ev->index, json_pack("{s:o}", "content", api_json_text(text, tl)), lp, NULL);
        if (ev->done) chat_chunk(o, &b, ev->index, json_object(), NULL, c->finish);
        break;
    case API_GENERATE:
    case API_OLLAMA_CHAT:
        json_decref(lp);
        if (tl) api_emit(&b, o->kind, ollama_line(o, text, tl, 0));
        if (ev->done) api_emit(&b, o->kind, ollama_final(o, c, "", 0));
        break;
    case API_LLAMA_COMPLETION:
    case API_INFILL:
        api_llama_event(o, c, ev, text, tl, &b);
        break;
    case API_MESSAGES:
        api_messages_event(o, c, ev, text, tl, &b);
        break;
    case API_RESPONSES:
        api_responses_event(o, c, ev, text, tl, &b);
        break;
    }
    return take(&b, len);
}

/* The non-streamed answer: Ollama's one final object, or OpenAI's whole completion with usage. */
static json_t *whole_answer(api_out *o)
{
    if (api_kind_is_llama(o->kind)) return api_llama_answer(o);
    if (o->kind == API_MESSAGES) return api_messages_answer(o);
    if (o->kind == API_RESPONSES) return api_responses_answer(o);
    if (api_kind_is_ollama(o->kind)) {
        api_choice *c = &o->ch[0];
        return ollama_final(o, c, c->text.data ? c->text.data : "", c->text.len);
    }
    json_t *choices = json_array();
    for (int i = 0; i < o->n; i++) {
        api_choice *c = &o->ch[i];
        json_t *text = api_json_text(c->text.data ? c->text.data : "", c->text.len);
        json_t *lp = c->lp ? json_incref(c->lp) : json_null();
        json_t *fin = json_string(c->finish ? c->finish : "stop");
        if (o->kind == API_CHAT)
            json_array_append_new(choices, json_pack("{s:i,s:{s:s,s:o},s:o,s:o}", "index", i, "message", "role",
                                                     "assistant", "content", text, "logprobs", lp, "finish_reason",
                                                     fin));
        else
            json_array_append_new(choices, json_pack("{s:i,s:o,s:o,s:o}", "index", i, "text", text, "logprobs", lp,
                                                     "finish_reason", fin));
    }
    return json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", o->id, "object",
                     o->kind == API_CHAT ? "chat.completion" : "text_completion", "created", (json_int_t)o->created,
                     "model", o->model, "choices", choices, "usage", usage_json(o));
}

char *api_out_finish(api_out *o, size_t *len)
{
    sasp_buf b = {0};
    if (o->stream) {
        /* llama.cpp's streams end without [DONE]; the named events' with their own last event */
        if (!api_kind_is_ollama(o->kind) && !api_kind_is_llama(o->kind) && !api_kind_has_named_events(o->kind)) {
            if (o->include_usage) {
                json_t *j = chunk_head(o);
                json_object_set_new(j, "choices", json_array());
                json_object_set_new(j, "usage", usage_json(o));
                api_emit(&b, o->kind, j);
            }
            sasp_buf_puts(&b, "data: [DONE]\n\n");
        }
        return take(&b, len);
    }
    char *s = api_dump(whole_answer(o));
    if (s) {
        sasp_buf_puts(&b, s);
        sasp_buf_puts(&b, "\n");
        free(s);
    }
    return take(&b, len);
}

char *api_ollama_empty_answer(const api_request *r, const char *model)
{
    json_t *j = json_pack("{s:s,s:o}", "model", model, "created_at", api_created_at());
    if (r->kind == API_OLLAMA_CHAT)
        json_object_set_new(j, "message", json_pack("{s:s,s:s}", "role", "assistant", "content", ""));
    else
        json_object_set_new(j, "response", json_string(""));
    json_object_set_new(j, "done", json_true());
    json_object_set_new(j, "done_reason", json_string(r->unload ? "unload" : "load"));
    return api_dump(j);
}
