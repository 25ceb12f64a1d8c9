/* tokenize.c: llama.cpp's /tokenize (text into token ids, with their pieces when asked) and /detokenize
 * (token ids into text) bodies and answers, and Anthropic's /v1/messages/count_tokens (the tokens of
 * a messages body's prompt) (api.h, docs/api.md). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

char *api_tokenize(const char *body, size_t len, const api_limits *lim, api_error *e)
{
    json_t *root = api_parse_body(body, len, e);
    if (!root) return NULL;
    char *out = NULL;
    const char *content;
    int special = 1, pieces = 0, add_special = 0;
    int got = api_get_str(root, "content", &content, e);
    if (got == 0) api_bad(e, "content", "'content' (a string) is required");
    if (got <= 0 || api_get_bool(root, "parse_special", &special, e) < 0 || api_get_bool(root, "with_pieces", &pieces, e) < 0 ||
        api_get_bool(root, "add_special", &add_special, e) < 0)
        goto done;
    int *ids = NULL;
    int n = sasp_encode(lim->tok, content, json_string_length(json_object_get(root, "content")), special, &ids);
    if (n < 0) {
        api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        goto done;
    }
    json_t *arr = json_array();
    if (add_special) json_array_append_new(arr, json_integer(lim->bos));
    for (int i = 0; i < n; i++) {
        if (pieces) {
            size_t nb = 0;
            const char *b = sasp_token_bytes(lim->tok, ids[i], &nb);
            json_t *piece = b && api_utf8_valid(b, nb) ? json_stringn(b, nb) : api_token_bytes(lim->tok, ids[i], 0);
            json_array_append_new(arr, json_pack("{s:i,s:o}", "id", ids[i], "piece", piece));
        } else {
            json_array_append_new(arr, json_integer(ids[i]));
        }
    }
    free(ids);
    out = api_dump(json_pack("{s:o}", "tokens", arr));
done:
    json_decref(root);
    return out;
}

char *api_detokenize(const char *body, size_t len, const api_limits *lim, api_error *e)
{
    json_t *root = api_parse_body(body, len, e);
    if (!root) return NULL;
    char *out = NULL;
    json_t *t = json_object_get(root, "tokens");
    if (!json_is_array(t) || !api_all_of(t, api_is_int)) {
        api_bad(e, "tokens", "'tokens' must be an array of token ids");
        goto done;
    }
    size_t n = json_array_size(t), i;
    int *ids = malloc((n + 1) * sizeof *ids);
    json_t *v;
    json_array_foreach (t, i, v) {
        long long id = json_integer_value(v);
        if (id < 0 || id >= lim->vocab) {
            free(ids);
            api_bad(e, "tokens", "token ids must be in [0, %d), got %lld", lim->vocab, id);
            goto done;
        }
        ids[i] = (int)id;
    }
    size_t tl = 0;
    char *text = sasp_decode(lim->tok, ids, (int)n, &tl);
    free(ids);
    if (!text) {
        api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        goto done;
    }
    out = api_dump(json_pack("{s:o}", "content", api_json_text(text, tl)));
    free(text);
done:
    json_decref(root);
    return out;
}

char *api_count_message_tokens(const char *body, size_t len, const api_limits *lim, api_error *e)
{
    json_t *root = api_parse_body(body, len, e);
    if (!root) return NULL;
    api_request r;
    memset(&r, 0, sizeof r);
    char *out = NULL;
    if (!api_read_message_prompt(root, &r, lim, e)) out = api_dump(json_pack("{s:i}", "input_tokens", r.n_prompt[0]));
    api_request_free(&r);
    json_decref(root);
    if (!out && e->status == 0) api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    return out;
}
