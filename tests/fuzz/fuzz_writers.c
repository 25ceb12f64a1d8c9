/* fuzz_writers.c: fuzz target of the response writers of src/api/: the SSE chunks (OpenAI), the
 * NDJSON lines (Ollama) and the non-streamed bodies, written from a sequence of scheduler events.
 * Bytes 0-1 pick the request (endpoint, stream, logprobs, echo, include_usage, n, top_logprobs), which
 * is parsed by api_parse as the server does; the rest is read as events in the scheduler's contract
 * (scheduler.h: valid UTF-8 text, ids in the vocabulary, finite log-probabilities, a prompt event
 * first when the prompt is scored, one last event with done per sequence) with arbitrary contents,
 * order, sizes, finish reasons and engine errors. Every byte written must frame correctly: SSE is
 * "data: <JSON object>\n\n" blocks ending with "data: [DONE]\n\n", NDJSON one JSON object per line
 * ending with done:true (or an error), a non-streamed answer one JSON object. Byte 0's top bits pick
 * Anthropic's messages or OpenAI's responses instead, whose streams are named events ("event: NAME\n
 * data: <JSON object whose type is NAME>\n\n", the responses' numbered from 0) ending with
 * message_stop or error, response.completed, response.incomplete or response.failed. */
#include <jansson.h>
#include <string.h>
#include "api/api.h"
#include "fuzz.h"

static sasp_tokenizer *tok;
static api_limits lim;

static void setup(void)
{
    tok = fuzz_load_tokenizer("tests/fixtures/tiny-model/tokenizer.json", "fuzz_writers");
    lim = (api_limits){tok, 256, sasp_tokenizer_vocab_size(tok), 0, "tiny-model"};
}

typedef struct {
    const uint8_t *p;
    size_t n;
} reader;

static int rd(reader *r)
{
    if (!r->n) return -1;
    r->n--;
    return *r->p++;
}

/* Output collected over the whole response. */
typedef struct {
    char *b;
    size_t n, cap;
} sink;

static void put(sink *s, char *bytes, size_t len)
{
    if (!bytes) {
        FUZZ_CHECK(len == 0);
        return;
    }
    if (s->n + len + 1 > s->cap) {
        s->cap = (s->n + len + 1) * 2;
        s->b = realloc(s->b, s->cap);
    }
    memcpy(s->b + s->n, bytes, len);
    s->n += len;
    s->b[s->n] = 0;
    free(bytes);
}

static json_t *parse_obj(const char *s, size_t n)
{
    json_error_t je;
    json_t *j = json_loadb(s, n, JSON_ALLOW_NUL, &je); /* "\u0000" is valid JSON */
    FUZZ_CHECK(j != NULL);
    FUZZ_CHECK(json_is_object(j));
    return j;
}

/* Named events (Anthropic's messages, OpenAI's responses) and the last one's name. */
static void check_named_events(const api_request *req, const char *p, const char *end)
{
    char last[64] = "";
    for (long seq = 0; p < end; seq++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        FUZZ_CHECK(nl != NULL && nl - p > 7 && nl - p < 64 && memcmp(p, "event: ", 7) == 0);
        snprintf(last, sizeof last, "%.*s", (int)(nl - p - 7), p + 7);
        p = nl + 1;
        const char *sep = memmem(p, (size_t)(end - p), "\n\n", 2);
        FUZZ_CHECK(sep != NULL && sep - p > 6 && memcmp(p, "data: ", 6) == 0);
        json_t *j = parse_obj(p + 6, (size_t)(sep - p - 6));
        FUZZ_CHECK(json_is_string(json_object_get(j, "type")) && !strcmp(json_string_value(json_object_get(j, "type")), last));
        if (req->kind == API_RESPONSES) FUZZ_CHECK(json_integer_value(json_object_get(j, "sequence_number")) == seq);
        json_decref(j);
        p = sep + 2;
    }
    if (req->kind == API_MESSAGES) FUZZ_CHECK(!strcmp(last, "message_stop") || !strcmp(last, "error"));
    else FUZZ_CHECK(!strcmp(last, "response.completed") || !strcmp(last, "response.incomplete") ||
                    !strcmp(last, "response.failed"));
}

/* The framing of everything written, and what ends it. */
static void check_output(const api_request *req, const sink *s)
{
    FUZZ_CHECK(s->n == 0 || memchr(s->b, 0, s->n) == NULL);
    if (!req->stream) {
        FUZZ_CHECK(s->n > 1 && s->b[s->n - 1] == '\n');
        json_decref(parse_obj(s->b, s->n - 1));
        return;
    }
    const char *p = s->b, *end = s->b + s->n;
    int last_done = 0;
    if (api_kind_has_named_events(req->kind)) {
        check_named_events(req, p, end);
        return;
    }
    if (req->kind == API_GENERATE) {
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            FUZZ_CHECK(nl != NULL);
            json_t *j = parse_obj(p, (size_t)(nl - p));
            last_done = json_is_true(json_object_get(j, "done")) || json_object_get(j, "error") != NULL;
            json_decref(j);
            p = nl + 1;
        }
        FUZZ_CHECK(last_done);
        return;
    }
    for (;;) {
        FUZZ_CHECK(end - p >= 8 && memcmp(p, "data: ", 6) == 0);
        p += 6;
        const char *sep = memmem(p, (size_t)(end - p), "\n\n", 2);
        FUZZ_CHECK(sep != NULL);
        if (sep - p == 6 && memcmp(p, "[DONE]", 6) == 0) {
            FUZZ_CHECK(sep + 2 == end);
            return;
        }
        json_decref(parse_obj(p, (size_t)(sep - p)));
        p = sep + 2;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tok) setup();
    if (size < 2) return 0;
    int kind_i = data[0] % 3, stream = data[0] >> 2 & 1, logprobs = data[0] >> 3 & 1, echo = data[0] >> 4 & 1,
        usage = data[0] >> 5 & 1;
    int n = 1 + data[1] % 3, top = (data[1] >> 2) % 6;
    char body[512];
    api_kind kind = kind_i == 0 ? API_COMPLETIONS : kind_i == 1 ? API_CHAT
                                                                : API_GENERATE;
    if (data[0] >> 6 == 1 || data[0] >> 6 == 2) kind = data[0] >> 6 == 1 ? API_MESSAGES : API_RESPONSES;
    if (kind == API_MESSAGES)
        snprintf(body, sizeof body, "{\"model\":\"m\",\"max_tokens\":%d,\"stream\":%s,\"stop_sequences\":[\"x\"],"
                                    "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
                 n - 1, stream ? "true" : "false");
    else if (kind == API_RESPONSES)
        snprintf(body, sizeof body, "{\"input\":\"Hi \\u00e9\",\"stream\":%s,\"metadata\":{\"k\":\"v\"}}",
                 stream ? "true" : "false");
    else if (kind == API_COMPLETIONS)
        snprintf(body, sizeof body,
                 "{\"prompt\":\"Hi \\u00e9\\u20ac x\",\"stream\":%s,\"echo\":%s,\"n\":%d,%s\"stream_options\":"
                 "{\"include_usage\":%s}}",
                 stream ? "true" : "false", echo ? "true" : "false", n, logprobs ? (top ? "\"logprobs\":3," : "\"logprobs\":0,") : "",
                 usage ? "true" : "false");
    else if (kind == API_CHAT)
        snprintf(body, sizeof body,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"stream\":%s,\"n\":%d,\"logprobs\":%s,"
                 "\"top_logprobs\":%d,\"stream_options\":{\"include_usage\":%s}}",
                 stream ? "true" : "false", n, logprobs ? "true" : "false", logprobs ? top : 0,
                 usage ? "true" : "false");
    else
        snprintf(body, sizeof body, "{\"prompt\":\"Hi \\u00e9\",\"stream\":%s%s}", stream ? "true" : "false",
                 echo ? ",\"context\":[1,2,3]" : "");
    api_request req;
    api_error e;
    FUZZ_CHECK(api_parse(kind, body, strlen(body), &lim, 7, &req, &e) == 0);
    api_out *o = api_out_new(&req, "fuzz-model", tok, 1700000000);
    FUZZ_CHECK(o != NULL);
    sink out = {0};
    size_t len;
    char *b = api_out_start(o, &len);
    put(&out, b, len);

    reader r = {data + 2, size - 2};
    int done[API_MAX_SEQS] = {0}, started[API_MAX_SEQS] = {0};
    char text[96];
    int ids[8];
    sasp_token_info info[8], pinfo[8];
    int c;
    while ((c = rd(&r)) >= 0) {
        sasp_event ev;
        memset(&ev, 0, sizeof ev);
        ev.index = c % req.n_seqs;
        int flags = rd(&r);
        if (flags < 0) break;
        if (done[ev.index]) continue;
        if ((flags & 1) && !started[ev.index] && req.gen.prompt_logprobs) { /* the scored prompt */
            ev.n_ids = req.n_prompt[ev.index];
            if (ev.n_ids > 8) ev.n_ids = 8;
            for (int i = 0; i < ev.n_ids; i++) ids[i] = req.prompt[ev.index][i];
            for (int i = 0; i + 1 < ev.n_ids; i++) {
                pinfo[i].id = ids[i + 1];
                pinfo[i].logprob = -(float)(flags >> 1) / 7;
                pinfo[i].n_top = req.gen.top_logprobs;
                for (int k = 0; k < pinfo[i].n_top; k++) pinfo[i].top[k] = (sasp_logprob){(k * 37 + flags) % lim.vocab, -(float)k};
            }
            ev.ids = ids;
            ev.prompt_info = pinfo;
            started[ev.index] = 1;
            b = api_out_event(o, &ev, &len);
            put(&out, b, len);
            continue;
        }
        started[ev.index] = 1;
        int tl = rd(&r);
        if (tl < 0) break;
        tl %= 24;
        int k = 0;
        for (; k < tl && r.n; k++) text[k] = (char)rd(&r);
        if (!api_utf8_valid(text, (size_t)k)) /* the scheduler only sends whole characters */
            for (int i = 0; i < k; i++)
                if ((unsigned char)text[i] >= 0x80) text[i] = '?';
        ev.text = k || (flags & 2) ? text : NULL;
        ev.len = (size_t)k;
        ev.n_ids = (flags >> 2) % 5;
        for (int i = 0; i < ev.n_ids; i++) {
            ids[i] = (rd(&r) & 0xff) * 2 % lim.vocab;
            info[i].id = ids[i];
            info[i].logprob = -(float)(flags & 0x0f) / 3;
            info[i].n_top = req.gen.top_logprobs;
            for (int t = 0; t < info[i].n_top; t++) info[i].top[t] = (sasp_logprob){(ids[i] + t * 5) % lim.vocab, -(float)t};
        }
        ev.ids = ids;
        ev.info = req.gen.logprobs ? info : NULL;
        ev.completion_tokens = ev.n_ids;
        ev.prompt_tokens = req.n_prompt[ev.index];
        if (flags & 0x80) {
            ev.done = 1;
            ev.finish_reason = flags & 0x40 ? "length" : "stop";
            ev.end = flags & 0x10 ? SASP_END_WORD : flags & 0x40 ? SASP_END_LIMIT
                                                                 : SASP_END_EOS;
            ev.stop_word = flags & 0x10 ? (flags & 0x20 ? "x" : "\nUser:") : NULL; /* the writers copy it */
            ev.error = (flags & 0x60) == 0x60;
            ev.total_ns = flags * 1000;
            done[ev.index] = 1;
        }
        b = api_out_event(o, &ev, &len);
        put(&out, b, len);
    }
    for (int i = 0; i < req.n_seqs; i++) /* every sequence ends */
        if (!done[i]) {
            sasp_event ev;
            memset(&ev, 0, sizeof ev);
            ev.index = i;
            ev.done = 1;
            ev.finish_reason = "length";
            b = api_out_event(o, &ev, &len);
            put(&out, b, len);
        }
    b = api_out_finish(o, &len);
    put(&out, b, len);
    check_output(&req, &out);
    int pt, ct;
    api_out_usage(o, &pt, &ct);
    FUZZ_CHECK(pt >= 0 && ct >= 0);
    free(out.b);
    api_out_free(o);
    api_request_free(&req);
    return 0;
}
