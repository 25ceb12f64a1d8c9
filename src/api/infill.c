/* infill.c: fill-in-the-middle prompts, in the order the trainer wrote them (train/train.py,
 * fim_window: prefix-suffix-middle):
 *
 *     [extra] <|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|> middle
 *
 * and the model writes the rest of the middle, ending it with <|endoftext|>. prefix is the text before
 * the cursor, middle llama.cpp's "prompt" (the start of the cursor's line in llama.vim and
 * llama.vscode; may be empty), suffix the text after the cursor. The model has no repository or file
 * separator tokens, so each extra chunk (input_extra: other files) is written as a document of its own,
 * its text then <|endoftext|>, as documents follow one another in training; filenames are not used.
 * The user's text is tokenised with special tokens as text.
 *
 * Token healing: the token right before the cursor (the middle's last, or the prefix's last when the
 * middle is empty) is backed off and the output made to start with its bytes, which the answer does
 * not repeat. The trainer cut its documents between tokens of the whole document, so a middle always
 * began at a token boundary of the joint text; an editor's prefix ends wherever the cursor is ("ret",
 * "\n    "), mid-token of that text.
 *
 * Too long (more than three quarters of the context, truncate.c): first the extra chunks go from
 * their start (the farthest from the cursor), then the suffix is kept to its first quarter of the
 * budget and the middle to its last quarter, then the prefix loses whole blocks (a quarter of the
 * budget) from its start; the text next to the cursor always stays. While the user types, the prefix
 * and middle grow a few tokens per request and the cut moves only when they cross a block boundary
 * (a line of about 10 tokens crosses one of 48 once in five lines): then the request reads its whole
 * prompt again; the others share all of it up to the cursor's line with the one before. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "base/util.h"

static const char *const fim_names[3] = {"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"};

int api_has_fim_tokens(const api_limits *lim)
{
    for (int k = 0; k < 3; k++)
        if (sasp_tokenizer_lookup(lim->tok, fim_names[k]) < 0) return 0;
    return 1;
}

int api_check_fim_tokens(const api_limits *lim, const char *param, api_error *e)
{
    char missing[64] = "";
    for (int k = 0; k < 3; k++)
        if (sasp_tokenizer_lookup(lim->tok, fim_names[k]) < 0) {
            size_t n = strlen(missing);
            snprintf(missing + n, sizeof missing - n, "%s%s", n ? ", " : "", fim_names[k]);
        }
    if (!missing[0]) return 0;
    api_bad(e, param, "filling in the middle ('%s') is not supported by %s: its tokenizer has no %s token "
                      "(it needs a model trained with them)",
            param, lim->model_id ? lim->model_id : "this model", missing);
    return -1;
}

/* A growable list of token ids. */
typedef struct ids {
    int *v;
    int n, cap;
} ids;

static int ids_push(ids *a, const int *v, int n)
{
    if (a->n + n > a->cap) {
        int cap = (a->n + n) * 2 + 16;
        int *p = realloc(a->v, (size_t)cap * sizeof *p);
        if (!p) return -1;
        a->v = p;
        a->cap = cap;
    }
    if (n) memcpy(a->v + a->n, v, (size_t)n * sizeof *v);
    a->n += n;
    return 0;
}

static int ids_text(ids *a, const api_limits *lim, const char *s, size_t len)
{
    int *v = NULL;
    int n = sasp_encode(lim->tok, s, len, 0, &v);
    int rc = n < 0 ? -1 : ids_push(a, v, n);
    free(v);
    return rc;
}

/* The pieces of a prompt as token ids: the extra chunks (each ending with <|endoftext|>), prefix,
 * middle, suffix. */
typedef struct fim_parts {
    ids extra, prefix, middle, suffix;
} fim_parts;

static void parts_free(fim_parts *p)
{
    free(p->extra.v), free(p->prefix.v), free(p->middle.v), free(p->suffix.v);
}

static int parts_encode(fim_parts *p, const api_fim_input *in, const api_limits *lim)
{
    int eot = lim->bos; /* <|endoftext|> separates documents (bos and eos are that one token) */
    for (int k = 0; k < in->n_extra; k++)
        if (ids_text(&p->extra, lim, in->extra[k].text, in->extra[k].len) || ids_push(&p->extra, &eot, 1)) return -1;
    if (ids_text(&p->prefix, lim, in->prefix, in->prefix_len)) return -1;
    if (ids_text(&p->middle, lim, in->middle, in->middle_len)) return -1;
    return ids_text(&p->suffix, lim, in->suffix, in->suffix_len);
}

/* Token healing: the token before the cursor leaves the prompt; its bytes (malloc'd) go to *heal. */
static int heal_cursor(fim_parts *p, const api_limits *lim, char **heal, size_t *heal_len)
{
    ids *side = p->middle.n ? &p->middle : &p->prefix;
    *heal = NULL;
    *heal_len = 0;
    if (!side->n || sasp_tokenizer_is_special(lim->tok, side->v[side->n - 1])) return 0;
    size_t len = 0;
    const char *b = sasp_token_bytes(lim->tok, side->v[side->n - 1], &len);
    if (!b || !len) return 0;
    if (!(*heal = malloc(len))) return -1;
    memcpy(*heal, b, len);
    *heal_len = len;
    side->n--;
    return 0;
}

/* How much of each piece to drop so that the whole fits budget (see the file's comment). */
typedef struct fim_cut {
    int extra, prefix, middle, suffix; /* dropped: extra and prefix from their start, the middle from its
                                        * start, the suffix from its end */
} fim_cut;

static fim_cut plan_cut(const fim_parts *p, int budget)
{
    fim_cut c = {0, 0, 0, 0};
    int core = 3 + p->prefix.n + p->middle.n + p->suffix.n;
    c.extra = api_drop_in_blocks(p->extra.n, budget - core, budget / 8);
    if (core <= budget) return c;
    int share = budget / 4;
    if (p->middle.n > share) c.middle = p->middle.n - share;
    int suffix_room = share - 3 > 0 ? share - 3 : 0;
    if (p->suffix.n > suffix_room) c.suffix = p->suffix.n - suffix_room;
    int room = budget - 3 - (p->middle.n - c.middle) - (p->suffix.n - c.suffix);
    c.prefix = api_drop_in_blocks(p->prefix.n, room, budget / 4); /* blocks of a size that typing does
                                                                   * not change, as room does */
    return c;
}

/* The prompt's ids: [extra] PRE prefix SUF suffix MID middle, less what c drops. */
static int assemble(ids *out, const fim_parts *p, const fim_cut *c, const api_limits *lim)
{
    int pre = sasp_tokenizer_lookup(lim->tok, fim_names[0]), suf = sasp_tokenizer_lookup(lim->tok, fim_names[1]),
        mid = sasp_tokenizer_lookup(lim->tok, fim_names[2]);
    return ids_push(out, p->extra.v + c->extra, p->extra.n - c->extra) || ids_push(out, &pre, 1) ||
           ids_push(out, p->prefix.v + c->prefix, p->prefix.n - c->prefix) || ids_push(out, &suf, 1) ||
           ids_push(out, p->suffix.v, p->suffix.n - c->suffix) || ids_push(out, &mid, 1) ||
           ids_push(out, p->middle.v + c->middle, p->middle.n - c->middle);
}

/* The healed bytes of r's last sequence. The arrays hold API_MAX_SEQS entries (no request has more
 * prompts), zero where nothing is healed. */
static int set_heal(api_request *r, char *heal, size_t len)
{
    if (!r->heal_text) r->heal_text = calloc(API_MAX_SEQS, sizeof *r->heal_text);
    if (!r->heal_len) r->heal_len = calloc(API_MAX_SEQS, sizeof *r->heal_len);
    if (!r->heal_text || !r->heal_len || r->n_seqs > API_MAX_SEQS) {
        free(heal);
        return -1;
    }
    r->heal_text[r->n_seqs - 1] = heal;
    r->heal_len[r->n_seqs - 1] = len;
    return 0;
}

/* The 400 of a prompt beyond the context, when the request forbids cutting. */
static int too_long(const api_limits *lim, int n, const char *param, api_error *e)
{
    api_error_set(e, 400, "invalid_request_error", "context_length_exceeded", param,
                  "This model's maximum context length is %d tokens, but the fill-in-the-middle prompt has %d "
                  "tokens (\"truncate\": true cuts it to fit)",
                  lim->n_ctx, n);
    return -1;
}

int api_add_fim_prompt(api_request *r, const api_fim_input *in, const api_limits *lim, const char *param,
                       api_error *e)
{
    fim_parts p;
    memset(&p, 0, sizeof p);
    ids out = {0};
    char *heal = NULL;
    size_t heal_len = 0;
    int rc = -1;
    if (parts_encode(&p, in, lim) || (in->heal && heal_cursor(&p, lim, &heal, &heal_len))) goto done;
    int total = p.extra.n + 3 + p.prefix.n + p.middle.n + p.suffix.n;
    fim_cut c = {0, 0, 0, 0};
    if (!in->truncate && total > lim->n_ctx) {
        rc = too_long(lim, total, param, e);
        goto done;
    }
    if (in->truncate && total > api_cut_budget(lim->n_ctx)) c = plan_cut(&p, api_cut_budget(lim->n_ctx));
    if (assemble(&out, &p, &c, lim)) goto done;
    size_t tl;
    char *raw = sasp_decode(lim->tok, out.v, out.n, &tl), *text = raw ? api_utf8_clean(raw, tl, NULL) : NULL;
    free(raw);
    if (!text || api_push_prompt(r, out.v, out.n, text)) goto done;
    out.v = NULL;
    r->n_dropped += c.extra + c.prefix + c.middle + c.suffix;
    r->infill = 1;
    rc = set_heal(r, heal, heal_len);
    heal = NULL;
done:
    free(heal);
    free(out.v);
    parts_free(&p);
    if (rc && e->status == 0) api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    return rc;
}

int api_apply_suffix(json_t *root, api_request *r, const api_limits *lim, int truncate, api_error *e)
{
    const char *suffix = NULL;
    int got = api_get_str(root, "suffix", &suffix, e);
    if (got <= 0 || !suffix[0]) return got;
    if (api_check_fim_tokens(lim, "suffix", e)) return -1;
    if (!r->text_prompt || json_array_size(json_object_get(root, "context")) > 0) {
        api_bad(e, "suffix", "'suffix' needs a text prompt (not token ids or a context), which becomes the "
                             "text before the middle");
        return -1;
    }
    if (r->echo) {
        api_bad(e, "echo", "'echo' cannot be combined with 'suffix': the answer is the middle alone");
        return -1;
    }
    api_fim_input in = {.middle = "", .suffix = suffix, .suffix_len = json_string_length(json_object_get(root, "suffix")), .heal = r->gen.token_healing, .truncate = truncate};
    int n = r->n_seqs, rc = 0;
    char **texts = r->prompt_text;
    for (int i = 0; i < n; i++) free(r->prompt[i]);
    free(r->prompt);
    free(r->n_prompt);
    r->prompt = NULL, r->n_prompt = NULL, r->prompt_text = NULL, r->n_seqs = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        in.prefix = texts[i] ? texts[i] : "";
        in.prefix_len = strlen(in.prefix);
        rc = api_add_fim_prompt(r, &in, lim, "prompt", e);
    }
    for (int i = 0; i < n; i++) free(texts[i]);
    free(texts);
    r->gen.token_healing = 0; /* healed here, at the cursor */
    r->text_prompt = 0;
    return rc;
}
