/* constrain.c: token healing and JSON masks over a vocabulary (constrain.h). */
#include "text/constrain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sasp_token_table {
    int n;
    const char **bytes; /* the raw bytes of each token */
    int *len;
    unsigned char *usable; /* a normal token with at least one byte (special tokens never are) */
    unsigned char *plain;  /* bytes that any free JSON string takes as they are: no quote, backslash or
                            * control byte, and whole, valid UTF-8 characters */
    int *chars;            /* plain tokens: their characters (a string's maxLength counts them) */
};

/* The characters of valid UTF-8 s[0..n). */
static int utf8_chars(const char *s, int n)
{
    int c = 0;
    for (int i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* Whether s[0..n) is whole, valid UTF-8 holding no '"', '\\' or control byte. */
static int plain_string_bytes(const unsigned char *s, int n)
{
    for (int i = 0; i < n;) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\' || c < 0x20) return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        int need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) need = 2, lo = 0xA0;
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
        else if (c == 0xED) need = 2, hi = 0x9F;
        else if (c == 0xF0) need = 3, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) need = 3, hi = 0x8F;
        else return 0;
        for (int k = 1; k <= need; k++) {
            if (i + k >= n) return 0;
            unsigned char d = s[i + k];
            if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xBF)) return 0;
        }
        i += need + 1;
    }
    return 1;
}

sasp_token_table *sasp_token_table_new(const sasp_tokenizer *tok)
{
    sasp_token_table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->n = sasp_tokenizer_vocab_size(tok);
    t->bytes = calloc((size_t)t->n, sizeof *t->bytes);
    t->len = calloc((size_t)t->n, sizeof *t->len);
    t->usable = calloc((size_t)t->n, 1);
    t->plain = calloc((size_t)t->n, 1);
    t->chars = calloc((size_t)t->n, sizeof *t->chars);
    if (!t->bytes || !t->len || !t->usable || !t->plain || !t->chars) {
        sasp_token_table_free(t);
        return NULL;
    }
    for (int id = 0; id < t->n; id++) {
        size_t len = 0;
        t->bytes[id] = sasp_token_bytes(tok, id, &len);
        t->len[id] = (int)len;
        t->usable[id] = t->bytes[id] && len > 0 && !sasp_tokenizer_is_special(tok, id);
        t->plain[id] = t->usable[id] && plain_string_bytes((const unsigned char *)t->bytes[id], (int)len);
        t->chars[id] = t->plain[id] ? utf8_chars(t->bytes[id], (int)len) : 0;
    }
    return t;
}

void sasp_token_table_free(sasp_token_table *t)
{
    if (!t) return;
    free(t->bytes), free(t->len), free(t->usable), free(t->plain), free(t->chars);
    free(t);
}

/* ---------------------------------------------------------------------------------------------- */

typedef enum { C_HEAL,
               C_JSON } constraint_kind;

struct sasp_constraint {
    constraint_kind kind;
    /* C_HEAL: the bytes still to reproduce */
    char *heal;
    int heal_len;
    /* C_JSON */
    sasp_json_state st;
};

sasp_constraint *sasp_constraint_heal(const char *bytes, size_t len)
{
    if (len == 0) return NULL;
    sasp_constraint *c = calloc(1, sizeof *c);
    if (!c || !(c->heal = malloc(len))) {
        free(c);
        return NULL;
    }
    memcpy(c->heal, bytes, len);
    c->heal_len = (int)len;
    c->kind = C_HEAL;
    return c;
}

int sasp_heal_prompt(const sasp_tokenizer *tok, const int *ids, int n, sasp_constraint **out)
{
    *out = NULL;
    if (n < 2 || sasp_tokenizer_is_special(tok, ids[n - 1])) return n;
    size_t len = 0;
    const char *b = sasp_token_bytes(tok, ids[n - 1], &len);
    if (!b || len == 0) return n;
    *out = sasp_constraint_heal(b, len);
    return *out ? n - 1 : -1;
}

sasp_constraint *sasp_constraint_json(const sasp_json_schema *schema)
{
    sasp_constraint *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->kind = C_JSON;
    js_init(&c->st, schema);
    return c;
}

void sasp_constraint_free(sasp_constraint *c)
{
    if (!c) return;
    free(c->heal);
    free(c);
}

int sasp_constraint_active(const sasp_constraint *c)
{
    return c && (c->kind == C_JSON || c->heal_len > 0);
}

/* A healing token either starts with the bytes left to reproduce or is a prefix of them. */
static int heal_allows(const sasp_constraint *c, const char *b, int len)
{
    int n = len < c->heal_len ? len : c->heal_len;
    return memcmp(b, c->heal, (size_t)n) == 0;
}

/* Feed a token's bytes to a copy of the state (only the frames in use are copied). */
static int json_try(const sasp_json_state *st, const char *b, int len, sasp_json_state *tmp)
{
    tmp->depth = st->depth;
    tmp->done = st->done;
    memcpy(tmp->f, st->f, (size_t)st->depth * sizeof st->f[0]);
    for (int i = 0; i < len; i++)
        if (js_feed(tmp, (unsigned char)b[i])) return -1;
    return 0;
}

static int json_mask(const sasp_constraint *c, const sasp_token_table *t, float *logits, int tokens_left, int eos)
{
    const sasp_json_state *st = &c->st;
    int allowed = 0, budget = tokens_left - 1; /* bytes that may follow this token, at one per token */
    int room = js_free_string_room(st);        /* inside a string: characters it may still take */
    int free_string = room >= 0 && js_min_close(st) <= budget;
    sasp_json_state tmp;
    unsigned char first_ok[256]; /* the bytes that may come next: most tokens fail on their first */
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        first_ok[b] = json_try(st, &c, 1, &tmp) == 0;
    }
    for (int id = 0; id < t->n; id++) {
        int ok;
        if (id == eos) ok = js_complete(st);
        else if (!t->usable[id] || !first_ok[(unsigned char)t->bytes[id][0]]) ok = 0;
        else if (free_string && t->plain[id]) ok = t->chars[id] <= room; /* the common case, with no copy */
        else ok = json_try(st, t->bytes[id], t->len[id], &tmp) == 0 && js_min_close(&tmp) <= budget;
        if (ok) allowed++;
        else logits[id] = -INFINITY;
    }
    return allowed;
}

int sasp_constraint_mask(const sasp_constraint *c, const sasp_token_table *t, float *logits, int tokens_left, int eos)
{
    if (c->kind == C_JSON) return json_mask(c, t, logits, tokens_left, eos);
    if (c->heal_len == 0) return t->n;
    int allowed = 0;
    for (int id = 0; id < t->n; id++) {
        if (t->usable[id] && heal_allows(c, t->bytes[id], t->len[id])) allowed++;
        else logits[id] = -INFINITY;
    }
    return allowed;
}

int sasp_constraint_accept(sasp_constraint *c, const sasp_token_table *t, int id)
{
    if (id < 0 || id >= t->n) return 0;
    if (!t->usable[id]) return c->kind == C_JSON; /* end of sequence */
    const char *b = t->bytes[id];
    int len = t->len[id];
    if (c->kind == C_HEAL) {
        int n = len < c->heal_len ? len : c->heal_len;
        memmove(c->heal, c->heal + n, (size_t)(c->heal_len - n));
        c->heal_len -= n;
        return 0;
    }
    for (int i = 0; i < len && !c->st.done; i++)
        if (js_feed(&c->st, (unsigned char)b[i])) return 1; /* cannot happen after a mask; end rather than go astray */
    return c->st.done;
}
