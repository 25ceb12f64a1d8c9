/* truncate.c: prompts longer than the context, cut the way llama.cpp and Ollama cut them (or
 * refused with the 400 of a prompt beyond the context when the request asks for strict behaviour,
 * "truncate": false). A cut prompt keeps its first n_keep tokens (llama.cpp's n_keep, Ollama's
 * num_keep) and the end next to where the text continues, and is brought down to three quarters of
 * the context, leaving the last quarter for the answer. What goes, goes in whole blocks, so that the
 * kept part's start stays where it is while the text at the cursor grows: the next request then
 * shares its prefix with this one, and the prompt cache serves it. Fill-in-the-middle prompts are cut
 * piece by piece (infill.c) with the same blocks. docs/api.md, "Long prompts", is the manual. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

int api_cut_budget(int n_ctx)
{
    int budget = n_ctx - n_ctx / 4;
    return budget > 0 ? budget : 1;
}

int api_drop_in_blocks(int n, int room, int block)
{
    if (room < 0) room = 0;
    if (n <= room) return 0;
    if (block < 1) block = 1;
    int drop = (n - room + block - 1) / block * block;
    return drop < n ? drop : n;
}

/* The prompt text of r's prompt i again from its ids (after a cut: echo shows what was read). */
static void retext_prompt(api_request *r, int i, const api_limits *lim)
{
    size_t tl;
    char *raw = sasp_decode(lim->tok, r->prompt[i], r->n_prompt[i], &tl);
    char *text = raw ? api_utf8_clean(raw, tl, NULL) : NULL;
    free(raw);
    if (!text) return; /* out of memory: the old text stays */
    free(r->prompt_text[i]);
    r->prompt_text[i] = text;
}

int api_cut_prompt(api_request *r, int i, int n_keep, const api_limits *lim, const char *param, api_error *e)
{
    int n = r->n_prompt[i], budget = api_cut_budget(lim->n_ctx);
    if (n <= lim->n_ctx) return 0;
    if (n_keep < 0 || n_keep > budget / 2) {
        api_error_set(e, 400, "invalid_request_error", "context_length_exceeded", param,
                      "This model's maximum context length is %d tokens, but the prompt has %d tokens, and "
                      "n_keep %d leaves no room to cut it (at most %d may be kept)",
                      lim->n_ctx, n, n_keep, budget / 2);
        return -1;
    }
    int room = budget - n_keep, drop = api_drop_in_blocks(n - n_keep, room, room / 4);
    int *ids = r->prompt[i];
    memmove(ids + n_keep, ids + n_keep + drop, (size_t)(n - n_keep - drop) * sizeof *ids);
    r->n_prompt[i] = n - drop;
    r->n_dropped += drop;
    retext_prompt(r, i, lim);
    return 0;
}

int api_fit_prompts(api_request *r, int truncate, int n_keep, const char *param, const api_limits *lim,
                    api_error *e)
{
    for (int i = 0; i < r->n_seqs; i++) {
        if (r->n_prompt[i] <= lim->n_ctx) continue;
        if (!truncate) {
            api_error_set(e, 400, "invalid_request_error", "context_length_exceeded", param,
                          "This model's maximum context length is %d tokens, but the prompt has %d tokens "
                          "(\"truncate\": true cuts it to fit)",
                          lim->n_ctx, r->n_prompt[i]);
            return -1;
        }
        if (api_cut_prompt(r, i, n_keep, lim, param, e)) return -1;
    }
    return 0;
}
