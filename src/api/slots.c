/* slots.c: the bodies and answers of llama.cpp's slot actions (POST /slots/{id}?action=save|restore|
 * erase: the file name, which must name a file inside --slot-save-path, and the answers with id_slot,
 * filename, n_saved / n_restored / n_erased, n_written / n_read and timings) and of POST
 * /apply-template (messages through the chat template of /v1/chat/completions, the prompt back).
 * docs/api.md is the manual. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

/* Whether name may be a file of --slot-save-path: not empty, not "." or "..", no "/" or "\", no ".."
 * anywhere, no control character, at most 255 bytes, valid UTF-8. */
static int filename_ok(const char *name, size_t n)
{
    if (n == 0 || n > 255 || !api_utf8_valid(name, n) || strstr(name, "..") || strlen(name) != n) return 0;
    if (!strcmp(name, ".")) return 0;
    for (size_t i = 0; i < n; i++)
        if (name[i] == '/' || name[i] == '\\' || (unsigned char)name[i] < 0x20 || name[i] == 0x7f) return 0;
    return 1;
}

int api_slot_filename(const char *body, size_t len, char *name, size_t size, api_error *e)
{
    json_t *root = api_parse_body(body, len, e);
    if (!root) return -1;
    const char *s;
    int got = api_get_str(root, "filename", &s, e), rc = -1;
    if (got == 0) api_bad(e, "filename", "'filename' (a string) is required");
    if (got > 0) {
        size_t n = json_string_length(json_object_get(root, "filename"));
        if (!filename_ok(s, n) || n >= size) api_bad(e, "filename", "Invalid filename");
        else memcpy(name, s, n + 1), rc = 0;
    }
    json_decref(root);
    return rc;
}

char *api_slot_action_answer(int action, int id_slot, const char *filename, int n_tokens, long long bytes, double ms)
{
    if (action == SASP_SLOT_ERASE) return api_dump(json_pack("{s:i,s:i}", "id_slot", id_slot, "n_erased", n_tokens));
    int save = action == SASP_SLOT_SAVE;
    return api_dump(json_pack("{s:i,s:s,s:i,s:I,s:{s:f}}", "id_slot", id_slot, "filename", filename,
                              save ? "n_saved" : "n_restored", n_tokens, save ? "n_written" : "n_read",
                              (json_int_t)bytes, "timings", save ? "save_ms" : "restore_ms", ms));
}

char *api_apply_template(const char *body, size_t len, api_error *e)
{
    json_t *root = api_parse_body(body, len, e);
    if (!root) return NULL;
    char *prompt = api_render_chat(json_object_get(root, "messages"), API_CHAT, 0, e), *out = NULL;
    if (prompt) out = api_dump(json_pack("{s:s}", "prompt", prompt));
    free(prompt);
    json_decref(root);
    return out;
}
