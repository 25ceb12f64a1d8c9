/* json.c: JSON in and out, what every parser and writer of the wire format shares (internal.h): errors
 * in OpenAI's and Ollama's shapes, UTF-8 checking and cleaning, the field getters (api_get_*: one field
 * of a JSON object, its type and range checked, named in the error), the body as a JSON object, JSON
 * text of token ids, and the framing of streamed answers (server-sent events, NDJSON lines). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

/* --- errors --- */

void api_error_set(api_error *e, int status, const char *type, const char *code, const char *param,
                   const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

void api_bad(api_error *e, const char *param, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api_error_set(e, 400, "invalid_request_error", NULL, param, "%s", msg);
}


char *api_error_body(const api_error *e)
{
    json_t *err = json_object();
    json_object_set_new(err, "message", api_json_text(e->message, strlen(e->message)));
    json_object_set_new(err, "type", json_string(e->type ? e->type : "invalid_request_error"));
    json_object_set_new(err, "param", e->param[0] ? api_json_text(e->param, strlen(e->param)) : json_null());
    json_object_set_new(err, "code", e->code ? json_string(e->code) : json_null());
    json_t *root = json_pack("{s:o}", "error", err);
    char *s = json_dumps(root, API_JSON_FLAGS);
    json_decref(root);
    return s;
}

char *api_error_body_ollama(const api_error *e)
{
    return api_dump(json_pack("{s:o}", "error", api_json_text(e->message, strlen(e->message))));
}

int api_kind_is_ollama(api_kind kind) { return kind == API_GENERATE || kind == API_OLLAMA_CHAT; }
int api_kind_is_llama(api_kind kind) { return kind == API_LLAMA_COMPLETION || kind == API_INFILL; }
int api_kind_has_named_events(api_kind kind) { return kind == API_MESSAGES || kind == API_RESPONSES; }

/* --- UTF-8 --- */

int api_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int len;
        unsigned cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
            min = 0x10000;
        } else return 0;
        if (i + (size_t)len > n) return 0;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += (size_t)len;
    }
    return 1;
}

/* s[0..n) with invalid sequences replaced by U+FFFD (the tokenizer's streaming decoder does it). */
char *api_utf8_clean(const char *s, size_t n, size_t *out_len)
{
    char *out = malloc(3 * n + 16);
    if (!out) return NULL;
    sasp_utf8_stream st;
    sasp_stream_init(&st);
    size_t w = sasp_stream_push(&st, s, n, out, 3 * n + 8);
    w += sasp_stream_finish(&st, out + w, 12);
    out[w] = 0;
    if (out_len) *out_len = w;
    return out;
}

json_t *api_json_text(const char *s, size_t n)
{
    if (api_utf8_valid(s, n)) return json_stringn(s, n);
    size_t m;
    char *c = api_utf8_clean(s, n, &m);
    json_t *j = c ? json_stringn(c, m) : json_string("");
    free(c);
    return j;
}

/* --- reading fields: 0 absent or null, 1 read, -1 wrong type or range (e filled) --- */

int api_get_num(json_t *o, const char *k, double *out, api_error *e)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) {
        api_bad(e, k, "'%s' must be a number", k);
        return -1;
    }
    *out = json_number_value(v);
    if (!isfinite(*out)) {
        api_bad(e, k, "'%s' must be finite", k);
        return -1;
    }
    return 1;
}

int api_get_int(json_t *o, const char *k, long long *out, api_error *e)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 1;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 9e15) {
            *out = (long long)d;
            return 1;
        }
    }
    api_bad(e, k, "'%s' must be an integer", k);
    return -1;
}

int api_get_bool(json_t *o, const char *k, int *out, api_error *e)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) {
        api_bad(e, k, "'%s' must be a boolean", k);
        return -1;
    }
    *out = json_is_true(v);
    return 1;
}

int api_get_str(json_t *o, const char *k, const char **out, api_error *e)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) {
        api_bad(e, k, "'%s' must be a string", k);
        return -1;
    }
    *out = json_string_value(v);
    return 1;
}

/* A number field within [lo, hi] (lo_open / hi_open: exclusive). */
int api_get_range(json_t *o, const char *k, float *out, double lo, int lo_open, double hi, int hi_open,
                  api_error *e)
{
    double d;
    int r = api_get_num(o, k, &d, e);
    if (r <= 0) return r;
    if ((lo_open ? d <= lo : d < lo) || (hi_open ? d >= hi : d > hi)) {
        if (hi >= 1e9)
            api_bad(e, k, "'%s' must be %s %g, got %g", k, lo_open ? ">" : ">=", lo, d);
        else
            api_bad(e, k, "'%s' must be in %c%g, %g%c, got %g", k, lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']', d);
        return -1;
    }
    *out = (float)d;
    return 1;
}

json_t *api_parse_body(const char *body, size_t len, api_error *e)
{
    json_error_t je;
    if (!api_utf8_valid(body, len)) {
        api_bad(e, NULL, "the request body is not valid UTF-8");
        return NULL;
    }
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        api_bad(e, NULL, "malformed JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        api_bad(e, NULL, "the request body must be a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

char *api_dump(json_t *j)
{
    char *s = json_dumps(j, API_JSON_FLAGS);
    json_decref(j);
    return s;
}

/* A token's text for JSON: itself when valid UTF-8, else "bytes:\xNN..." as OpenAI writes it. */
/* Token id's bytes without the first skip of them, in *n. */
static const char *token_tail(const sasp_tokenizer *tok, int id, int skip, size_t *n)
{
    *n = 0;
    const char *b = sasp_token_bytes(tok, id, n);
    size_t k = skip > 0 ? (size_t)skip : 0;
    if (!b) return NULL;
    if (k > *n) k = *n;
    *n -= k;
    return b + k;
}

json_t *api_token_string(const sasp_tokenizer *tok, int id, int skip)
{
    size_t n;
    const char *b = token_tail(tok, id, skip, &n);
    if (!b) return json_string("");
    if (api_utf8_valid(b, n)) return json_stringn(b, n);
    char buf[6 + 4 * 64 + 1];
    size_t w = (size_t)snprintf(buf, sizeof buf, "bytes:");
    for (size_t i = 0; i < n && w + 4 < sizeof buf; i++)
        w += (size_t)snprintf(buf + w, sizeof buf - w, "\\x%02x", (unsigned char)b[i]);
    return json_string(buf);
}

json_t *api_token_bytes(const sasp_tokenizer *tok, int id, int skip)
{
    size_t n;
    const unsigned char *b = (const unsigned char *)token_tail(tok, id, skip, &n);
    json_t *a = json_array();
    for (size_t i = 0; b && i < n; i++) json_array_append_new(a, json_integer(b[i]));
    return a;
}

int api_all_of(json_t *arr, int (*pred)(const json_t *))
{
    size_t i;
    json_t *v;
    json_array_foreach (arr, i, v)
        if (!pred(v)) return 0;
    return 1;
}
int api_is_int(const json_t *v) { return json_is_integer(v); }
int api_is_str(const json_t *v) { return json_is_string(v); }
int api_is_arr(const json_t *v) { return json_is_array(v); }

/* --- answers: server-sent events and NDJSON lines --- */

void api_emit(sasp_buf *b, api_kind kind, json_t *j)
{
    char *s = api_dump(j);
    if (!s) return;
    if (!api_kind_is_ollama(kind)) sasp_buf_puts(b, "data: ");
    sasp_buf_puts(b, s);
    sasp_buf_puts(b, api_kind_is_ollama(kind) ? "\n" : "\n\n");
    free(s);
}

void api_emit_named(sasp_buf *b, const char *name, json_t *j)
{
    char *s = api_dump(j);
    if (!s) return;
    sasp_buf_printf(b, "event: %s\ndata: %s\n\n", name, s);
    free(s);
}
