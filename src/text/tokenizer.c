/* tokenizer.c: byte-level BPE read from a Hugging Face tokenizer.json (jansson), GPT-2
 * pre-tokenisation (PCRE2, UTF + UCP, JIT), merges by rank, decoding and the UTF-8-safe streaming
 * decoder. The reference it must equal id for id is train/bpe.py; docs/tokenizer.md describes both.
 *
 * encode: [special tokens, when allowed] -> [runs of valid UTF-8 | single invalid bytes]
 *         -> GPT-2 regex over each valid run -> bytes -> byte tokens -> merges, lowest rank first. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/tokenizer.h"

#include <jansson.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The GPT-2 pattern with its classes spelt out so that PCRE2 agrees with Python's `regex` module
 * (which train/bpe.py uses) on every code point:
 *  - whitespace is Unicode's White_Space property, as `regex` has it. PCRE2 10.42 also counts
 *    U+180E, which Unicode dropped from White_Space in 6.3.
 *  - letters and digits are \p{L} and \p{N} plus the code points Unicode 15 added to them, which
 *    Debian's python3-regex knows and PCRE2 10.42 (Unicode 14) does not. On a newer PCRE2 they are
 *    redundant and harmless. */
#define WS "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}" \
           "\\x{205F}\\x{3000}"
#define L15 "\\x{1123F}\\x{11240}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}\\x{1342F}"  \
            "\\x{13441}-\\x{13446}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}" \
            "\\x{1E4D0}-\\x{1E4EB}\\x{2B739}\\x{31350}-\\x{323AF}"
#define N15 "\\x{11F50}-\\x{11F59}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}"
static const char PRETOKEN_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d"
    "| ?[\\p{L}" L15 "]+"
    "| ?[\\p{N}" N15 "]+"
    "| ?[^" WS "\\p{L}" L15 "\\p{N}" N15 "]+"
    "|[" WS "]+(?![^" WS "])"
    "|[" WS "]+";
/* The pattern as tokenizer.json files write it (Split pre-tokenizers) and as bpe.py has it. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

enum { SHORT_WORD = 48 }; /* pre-tokens up to this many bytes use the simple O(n^2) merge loop */
enum { CACHE_WORD = 32 }; /* pre-tokens up to this many bytes are cached within one encode call */

typedef struct {
    char *bytes; /* what the token decodes to */
    int len;
    int special;
    char *name; /* its string in tokenizer.json */
} token;

typedef struct {
    uint64_t key;
    int32_t rank, result;
} merge_slot; /* key 0 = empty */

struct sasp_tokenizer {
    int n; /* vocabulary size: ids are 0..n-1 */
    token *tok;
    int byte_id[256];
    int *name_slots; /* open-addressed table of ids by name; -1 = empty */
    size_t name_mask;
    merge_slot *merges;
    size_t merge_mask;
    int *specials; /* ids of the added tokens, recognised with allow_special */
    int n_specials;
    pcre2_code *re;
};

/* ---------------------------------------------------------------------------------------------
 * Small hash tables */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static int name_find(const sasp_tokenizer *t, const char *s, size_t n)
{
    for (size_t i = hash_bytes(s, n) & t->name_mask;; i = (i + 1) & t->name_mask) {
        int id = t->name_slots[i];
        if (id < 0) return -1;
        const char *nm = t->tok[id].name;
        if (strlen(nm) == n && memcmp(nm, s, n) == 0) return id;
    }
}

static void name_insert(sasp_tokenizer *t, int id)
{
    const char *nm = t->tok[id].name;
    size_t i = hash_bytes(nm, strlen(nm)) & t->name_mask;
    while (t->name_slots[i] >= 0) i = (i + 1) & t->name_mask;
    t->name_slots[i] = id;
}

static inline uint64_t pair_key(int a, int b) { return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1; }

static inline const merge_slot *merge_find(const sasp_tokenizer *t, int a, int b)
{
    uint64_t k = pair_key(a, b);
    for (size_t i = mix64(k) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const merge_slot *m = &t->merges[i];
        if (m->key == k) return m;
        if (m->key == 0) return NULL;
    }
}

/* Insert unless present (the first, lowest-ranked merge of a pair wins). */
static void merge_insert(sasp_tokenizer *t, int a, int b, int rank, int result)
{
    uint64_t k = pair_key(a, b);
    size_t i = mix64(k) & t->merge_mask;
    while (t->merges[i].key != 0) {
        if (t->merges[i].key == k) return;
        i = (i + 1) & t->merge_mask;
    }
    t->merges[i] = (merge_slot){k, rank, result};
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* ---------------------------------------------------------------------------------------------
 * Byte-level alphabet (GPT-2's bytes_to_unicode) */

typedef struct {
    int byte_of_char[324]; /* code point -> byte, or -1 */
    int char_of_byte[256];
} alphabet;

static void init_alphabet(alphabet *a)
{
    int *byte_of_char = a->byte_of_char, *char_of_byte = a->char_of_byte;
    int n = 0;
    for (int c = 0; c < 324; c++) byte_of_char[c] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        int c = printable ? b : 256 + n++;
        char_of_byte[b] = c;
        byte_of_char[c] = b;
    }
}

/* Decode the byte-level spelling s into raw bytes (out has room for strlen(s) bytes). Returns the
 * number of bytes, or -1 when s holds a character outside the alphabet or is not valid UTF-8. */
static int byte_level_decode(const alphabet *al, const char *s, char *out)
{
    const int *byte_of_char = al->byte_of_char;
    const unsigned char *p = (const unsigned char *)s;
    int n = 0;
    while (*p) {
        int c;
        if (p[0] < 0x80) c = *p++;
        else if ((p[0] & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) {
            c = (p[0] & 0x1F) << 6 | (p[1] & 0x3F);
            p += 2;
        } else return -1; /* the alphabet lies below U+0144: two bytes at most */
        if (c >= 324 || byte_of_char[c] < 0) return -1;
        out[n++] = (char)byte_of_char[c];
    }
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * Loading */

static void set_err(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
    if (!err || !errlen) return;
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s: %s", path, msg);
}

void sasp_tokenizer_free(sasp_tokenizer *t)
{
    if (!t) return;
    if (t->tok)
        for (int i = 0; i < t->n; i++) {
            free(t->tok[i].bytes);
            free(t->tok[i].name);
        }
    free(t->tok);
    free(t->name_slots);
    free(t->merges);
    free(t->specials);
    if (t->re) pcre2_code_free(t->re);
    free(t);
}

/* Whether the pre_tokenizer (and normalizer) are what this file implements: GPT-2's byte level. */
static const char *check_pipeline(json_t *root)
{
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) return "a normalizer is not supported (sasp's byte-level BPE has none)";
    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (!json_is_object(pre)) return "pre_tokenizer is missing (expected ByteLevel)";
    const char *type = json_string_value(json_object_get(pre, "type"));
    if (type && strcmp(type, "ByteLevel") == 0) {
        if (json_is_true(json_object_get(pre, "add_prefix_space")))
            return "pre_tokenizer ByteLevel with add_prefix_space is not supported";
        if (json_is_false(json_object_get(pre, "use_regex")))
            return "pre_tokenizer ByteLevel without use_regex is not supported";
        return NULL;
    }
    if (type && strcmp(type, "Sequence") == 0) { /* Split(GPT-2 regex) then ByteLevel(use_regex false) */
        json_t *seq = json_object_get(pre, "pretokenizers");
        if (json_is_array(seq) && json_array_size(seq) == 2) {
            json_t *sp = json_array_get(seq, 0), *bl = json_array_get(seq, 1);
            const char *rx = json_string_value(json_object_get(json_object_get(sp, "pattern"), "Regex"));
            const char *t0 = json_string_value(json_object_get(sp, "type"));
            const char *t1 = json_string_value(json_object_get(bl, "type"));
            if (t0 && t1 && rx && !strcmp(t0, "Split") && !strcmp(t1, "ByteLevel") && !strcmp(rx, GPT2_PATTERN) &&
                !json_is_true(json_object_get(bl, "add_prefix_space")))
                return NULL;
        }
        return "pre_tokenizer Sequence is supported only as Split(GPT-2 pattern) + ByteLevel";
    }
    return "pre_tokenizer must be ByteLevel (GPT-2 byte-level pre-tokenisation)";
}

/* Give id its token; fail when the id is already taken by another token. */
static int assign(sasp_tokenizer *t, json_int_t id, const char *name, const char *bytes, int len, int special,
                  const char *path, char *err, size_t errlen)
{
    token *k = &t->tok[id];
    if (k->name) {
        set_err(err, errlen, path, "id %lld is used by both \"%s\" and \"%s\"", (long long)id, k->name, name);
        return -1;
    }
    k->name = strdup(name);
    k->bytes = malloc(len + 1);
    if (!k->name || !k->bytes) {
        set_err(err, errlen, path, "out of memory");
        return -1;
    }
    memcpy(k->bytes, bytes, len);
    k->bytes[len] = 0;
    k->len = len;
    k->special = special;
    return 0;
}

/* The parts of tokenizer.json the loader reads, checked for shape: model (BPE, no byte fallback),
 * model.vocab, model.merges, added_tokens (optional) and the pipeline. */
typedef struct {
    json_t *vocab, *merges, *added;
} tokenizer_json;

static int check_document(json_t *root, tokenizer_json *doc, const char *path, char *err, size_t errlen)
{
    const char *why = NULL;
    json_t *model = json_is_object(root) ? json_object_get(root, "model") : NULL;
    json_t *mtype = json_object_get(model, "type");
    if (!json_is_object(root)) why = "the top level is not a JSON object";
    else if (!json_is_object(model)) why = "\"model\" is missing or not an object";
    else if (mtype && (!json_is_string(mtype) || strcmp(json_string_value(mtype), "BPE") != 0))
        why = "model type is not BPE";
    else if (json_is_true(json_object_get(model, "byte_fallback")))
        why = "model byte_fallback is not supported (byte-level BPE needs none)";
    else if (!json_is_object(doc->vocab = json_object_get(model, "vocab")))
        why = "model.vocab is missing or not an object";
    else if (!json_is_array(doc->merges = json_object_get(model, "merges")))
        why = "model.merges is missing or not an array";
    else if ((doc->added = json_object_get(root, "added_tokens")) && !json_is_null(doc->added) &&
             !json_is_array(doc->added))
        why = "added_tokens is not an array";
    else why = check_pipeline(root);
    if (why) set_err(err, errlen, path, "%s", why);
    return why ? -1 : 0;
}

/* The vocabulary's size (the largest id + 1, which must not exceed the number of entries: ids cover
 * 0..n-1 exactly) and the token and name tables for it. */
static int size_vocabulary(sasp_tokenizer *t, const tokenizer_json *doc, const char *path, char *err,
                           size_t errlen)
{
    json_int_t maxid = -1;
    size_t n_added = doc->added ? json_array_size(doc->added) : 0;
    size_t n_entries = json_object_size(doc->vocab) + n_added;
    const char *key;
    json_t *val;
    json_object_foreach (doc->vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= (1 << 24)) {
            set_err(err, errlen, path, "model.vocab: the id of \"%s\" is not an integer in 0..16777215", key);
            return -1;
        }
        if (json_integer_value(val) > maxid) maxid = json_integer_value(val);
    }
    size_t i;
    json_t *at;
    json_array_foreach (doc->added, i, at) {
        json_t *id = json_object_get(at, "id"), *content = json_object_get(at, "content");
        if (!json_is_object(at) || !json_is_integer(id) || !json_is_string(content) ||
            json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 24) || json_string_length(content) == 0) {
            set_err(err, errlen, path, "added_tokens[%zu] needs an integer \"id\" in 0..16777215 and a non-empty \"content\"", i);
            return -1;
        }
        if (json_integer_value(id) > maxid) maxid = json_integer_value(id);
    }
    if (maxid < 0 || (size_t)maxid >= n_entries) {
        set_err(err, errlen, path, maxid < 0 ? "model.vocab is empty" : "ids are not contiguous: the largest id is %lld but there are only %zu tokens", (long long)maxid, n_entries);
        return -1;
    }
    t->n = (int)maxid + 1;
    t->tok = calloc(t->n, sizeof *t->tok);
    t->name_mask = pow2_at_least(2 * (size_t)t->n) - 1;
    t->name_slots = malloc((t->name_mask + 1) * sizeof *t->name_slots);
    t->specials = malloc(n_added * sizeof(int) + 1);
    if (!t->tok || !t->name_slots || !t->specials) {
        set_err(err, errlen, path, "out of memory");
        return -1;
    }
    memset(t->name_slots, 0xff, (t->name_mask + 1) * sizeof *t->name_slots);
    return 0;
}

/* A scratch byte buffer that grows. */
typedef struct {
    char *p;
    size_t cap;
} scratch;

static int scratch_fit(scratch *b, size_t need)
{
    if (need <= b->cap) return 0;
    char *p = realloc(b->p, need);
    if (!p) return -1;
    b->p = p;
    b->cap = need;
    return 0;
}

/* Added tokens first (every one is recognised, only, with allow_special, whatever its "special"
 * flag says); then model.vocab, whose entries for added tokens must be their raw text and whose
 * others are byte-level spellings. */
static int load_tokens(sasp_tokenizer *t, const alphabet *al, const tokenizer_json *doc, scratch *buf,
                       const char *path, char *err, size_t errlen)
{
    size_t i;
    json_t *at;
    json_array_foreach (doc->added, i, at) {
        json_int_t id = json_integer_value(json_object_get(at, "id"));
        const char *content = json_string_value(json_object_get(at, "content"));
        if (t->tok[id].name) {
            set_err(err, errlen, path, "added_tokens: id %lld appears twice", (long long)id);
            return -1;
        }
        if (assign(t, id, content, content, (int)strlen(content), 1, path, err, errlen)) return -1;
        t->specials[t->n_specials++] = (int)id;
    }
    const char *key;
    json_t *val;
    json_object_foreach (doc->vocab, key, val) {
        json_int_t id = json_integer_value(val);
        token *tk = &t->tok[id];
        if (tk->special) {
            if (strcmp(tk->name, key) == 0) continue;
            set_err(err, errlen, path, "id %lld is used by both \"%s\" and \"%s\"", (long long)id, tk->name, key);
            return -1;
        }
        if (scratch_fit(buf, strlen(key) + 1)) {
            set_err(err, errlen, path, "out of memory");
            return -1;
        }
        int len = byte_level_decode(al, key, buf->p);
        if (len <= 0) {
            set_err(err, errlen, path, "model.vocab: \"%s\" is not a byte-level token (and not an added token)", key);
            return -1;
        }
        if (assign(t, id, key, buf->p, len, 0, path, err, errlen)) return -1;
    }
    return 0;
}

/* Every id has a token, every name is unique (then indexed), and every byte has its token. */
static int index_tokens(sasp_tokenizer *t, const alphabet *al, const char *path, char *err, size_t errlen)
{
    for (int id = 0; id < t->n; id++) {
        if (!t->tok[id].name) {
            set_err(err, errlen, path, "ids are not contiguous: no token has id %d", id);
            return -1;
        }
        if (name_find(t, t->tok[id].name, strlen(t->tok[id].name)) >= 0) {
            set_err(err, errlen, path, "the token \"%s\" appears twice", t->tok[id].name);
            return -1;
        }
        name_insert(t, id);
    }
    for (int b = 0; b < 256; b++) {
        char nm[3] = {0};
        int c = al->char_of_byte[b];
        if (c < 0x80) nm[0] = (char)c;
        else {
            nm[0] = (char)(0xC0 | c >> 6);
            nm[1] = (char)(0x80 | (c & 0x3F));
        }
        t->byte_id[b] = name_find(t, nm, strlen(nm));
        if (t->byte_id[b] < 0 || t->tok[t->byte_id[b]].special) {
            set_err(err, errlen, path, "model.vocab lacks the token for byte 0x%02X (\"%s\")", b, nm);
            return -1;
        }
    }
    return 0;
}

/* Merge i's two token names: "a b" strings (classic) or ["a", "b"] pairs (newer files). */
static int merge_names(json_t *m, size_t i, const char **a, size_t *la, const char **b, size_t *lb,
                       const char *path, char *err, size_t errlen)
{
    if (json_is_string(m)) {
        *a = json_string_value(m);
        const char *space = strchr(*a, ' ');
        if (!space || strchr(space + 1, ' ') || space == *a || space[1] == 0) {
            set_err(err, errlen, path, "model.merges[%zu] \"%s\" is not two tokens separated by one space", i, *a);
            return -1;
        }
        *la = (size_t)(space - *a);
        *b = space + 1;
        *lb = strlen(*b);
        return 0;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        *la = strlen(*a);
        *lb = strlen(*b);
        return 0;
    }
    set_err(err, errlen, path, "model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", i);
    return -1;
}

/* The merges, by rank: both halves and their concatenation must be normal tokens of the vocabulary. */
static int load_merges(sasp_tokenizer *t, json_t *merges, scratch *buf, const char *path, char *err,
                       size_t errlen)
{
    size_t nm = json_array_size(merges);
    if (nm > (size_t)1 << 24) {
        set_err(err, errlen, path, "model.merges has too many entries");
        return -1;
    }
    t->merge_mask = pow2_at_least(2 * nm + 2) - 1;
    t->merges = calloc(t->merge_mask + 1, sizeof *t->merges);
    if (!t->merges) {
        set_err(err, errlen, path, "out of memory");
        return -1;
    }
    size_t i;
    json_t *m;
    json_array_foreach (merges, i, m) {
        const char *a, *b;
        size_t la, lb;
        if (merge_names(m, i, &a, &la, &b, &lb, path, err, errlen)) return -1;
        int ia = name_find(t, a, la), ib = name_find(t, b, lb);
        if (ia < 0 || ib < 0 || t->tok[ia].special || t->tok[ib].special) {
            int first_bad = ia < 0 || t->tok[ia].special;
            set_err(err, errlen, path, "model.merges[%zu] refers to a token not in model.vocab: \"%.*s\"", i,
                    (int)(first_bad ? la : lb), first_bad ? a : b);
            return -1;
        }
        if (scratch_fit(buf, la + lb + 1)) {
            set_err(err, errlen, path, "out of memory");
            return -1;
        }
        memcpy(buf->p, a, la);
        memcpy(buf->p + la, b, lb);
        int ic = name_find(t, buf->p, la + lb);
        if (ic < 0 || t->tok[ic].special) {
            set_err(err, errlen, path, "model.merges[%zu]: the merged token \"%.*s\" is not in model.vocab", i,
                    (int)(la + lb), buf->p);
            return -1;
        }
        merge_insert(t, ia, ib, (int)i, ic);
    }
    return 0;
}

sasp_tokenizer *sasp_tokenizer_load(const char *path, char *err, size_t errlen)
{
    alphabet al;
    init_alphabet(&al);
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        set_err(err, errlen, path, "not valid JSON (line %d, column %d): %s", jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    sasp_tokenizer *t = calloc(1, sizeof *t);
    scratch buf = {0};
    tokenizer_json doc = {0};
    int ok = t != NULL;
    if (!ok) set_err(err, errlen, path, "out of memory");
    ok = ok && check_document(root, &doc, path, err, errlen) == 0;
    ok = ok && size_vocabulary(t, &doc, path, err, errlen) == 0;
    ok = ok && load_tokens(t, &al, &doc, &buf, path, err, errlen) == 0;
    ok = ok && index_tokens(t, &al, path, err, errlen) == 0;
    ok = ok && load_merges(t, doc.merges, &buf, path, err, errlen) == 0;
    if (ok) {
        int rc;
        PCRE2_SIZE off;
        t->re = pcre2_compile((PCRE2_SPTR)PRETOKEN_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &rc, &off,
                              NULL);
        if (!t->re) {
            set_err(err, errlen, path, "internal error: the pre-tokeniser pattern does not compile (%d)", rc);
            ok = 0;
        } else
            pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE); /* without JIT (unsupported CPU) matching still works */
    }
    free(buf.p);
    json_decref(root);
    if (ok) return t;
    sasp_tokenizer_free(t);
    return NULL;
}

int sasp_tokenizer_vocab_size(const sasp_tokenizer *t) { return t->n; }

int sasp_tokenizer_lookup(const sasp_tokenizer *t, const char *s) { return name_find(t, s, strlen(s)); }

int sasp_tokenizer_is_special(const sasp_tokenizer *t, int id)
{
    return id >= 0 && id < t->n && t->tok[id].special;
}

const char *sasp_token_bytes(const sasp_tokenizer *t, int id, size_t *len)
{
    if (id < 0 || id >= t->n) return NULL;
    if (len) *len = (size_t)t->tok[id].len;
    return t->tok[id].bytes;
}

/* ---------------------------------------------------------------------------------------------
 * Encoding */

typedef struct {
    int *ids;
    size_t n, cap;
    size_t *ends; /* sasp_pretokenize: record where pieces end instead of encoding them */
    const unsigned char *base;
    /* scratch for BPE of one word */
    int *sym, *nxt, *prv;
    size_t scap;
    struct heap_item {
        int32_t rank, pos;
    } * heap;
    size_t hn;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    /* cache of the ids of pre-tokens seen earlier in this call (text repeats its words) */
    struct cache_ent {
        const unsigned char *w;
        uint32_t wlen, off, n;
    } * cache;
    size_t cache_mask, cache_used, text_len;
    int *pool;
    size_t pool_n, pool_cap;
    int oom;
} enc_state;

static struct cache_ent *cache_slot(enc_state *e, const unsigned char *w, size_t n)
{
    if (!e->cache) {
        size_t want = e->text_len / 16;
        e->cache_mask = pow2_at_least(want < 256 ? 256 : want > (1 << 16) ? (1 << 16)
                                                                          : want) -
                        1;
        e->cache = calloc(e->cache_mask + 1, sizeof *e->cache);
        if (!e->cache) return NULL;
    }
    for (size_t i = hash_bytes((const char *)w, n) & e->cache_mask;; i = (i + 1) & e->cache_mask) {
        struct cache_ent *c = &e->cache[i];
        if (!c->w || (c->wlen == n && memcmp(c->w, w, n) == 0)) return c;
    }
}

static int push_end(enc_state *e, const unsigned char *end)
{
    if (e->n == e->cap) {
        size_t nc = e->cap ? e->cap * 2 : 256;
        size_t *ne = realloc(e->ends, nc * sizeof *ne);
        if (!ne) return e->oom = -1;
        e->ends = ne;
        e->cap = nc;
    }
    e->ends[e->n++] = (size_t)(end - e->base);
    return 0;
}

static int push_id(enc_state *e, int id)
{
    if (e->n == e->cap) {
        size_t nc = e->cap ? e->cap * 2 : 256;
        int *ni = realloc(e->ids, nc * sizeof *ni);
        if (!ni) return e->oom = -1;
        e->ids = ni;
        e->cap = nc;
    }
    e->ids[e->n++] = id;
    return 0;
}

static int reserve_scratch(enc_state *e, size_t n)
{
    if (n <= e->scap) return 0;
    size_t c = n < 1024 ? 1024 : n;
    free(e->sym);
    free(e->nxt);
    free(e->prv);
    free(e->heap);
    e->sym = malloc(c * sizeof(int));
    e->nxt = malloc(c * sizeof(int));
    e->prv = malloc(c * sizeof(int));
    e->heap = malloc(c * 3 * sizeof *e->heap); /* n - 1 pairs + 2 per merge */
    if (!e->sym || !e->nxt || !e->prv || !e->heap) {
        e->scap = 0;
        return e->oom = -1;
    }
    e->scap = c;
    return 0;
}

/* Min-heap on (rank, pos): the lowest rank first, leftmost first among equals. */
static inline int heap_less(struct heap_item x, struct heap_item y)
{
    return x.rank < y.rank || (x.rank == y.rank && x.pos < y.pos);
}
static void heap_push(enc_state *e, struct heap_item it)
{
    size_t i = e->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(it, e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = it;
}
static struct heap_item heap_pop(enc_state *e)
{
    struct heap_item top = e->heap[0], last = e->heap[--e->hn];
    size_t i = 0, n = e->hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(e->heap[c + 1], e->heap[c])) c++;
        if (!heap_less(e->heap[c], last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    e->heap[i] = last;
    return top;
}

static void bpe_merge(const sasp_tokenizer *t, enc_state *e, const unsigned char *w, size_t n);

/* BPE of one pre-token: append its ids. */
static void bpe_word(const sasp_tokenizer *t, enc_state *e, const unsigned char *w, size_t n)
{
    if (e->ends) {
        push_end(e, w + n);
        return;
    }
    if (n == 1) {
        push_id(e, t->byte_id[w[0]]);
        return;
    }
    struct cache_ent *c = n <= CACHE_WORD ? cache_slot(e, w, n) : NULL;
    if (c && c->w) {
        for (uint32_t i = 0; i < c->n; i++) push_id(e, e->pool[c->off + i]);
        return;
    }
    size_t first = e->n;
    bpe_merge(t, e, w, n);
    if (c && !e->oom && e->cache_used < e->cache_mask / 2) {
        size_t k = e->n - first;
        if (e->pool_n + k > e->pool_cap) {
            size_t nc = (e->pool_n + k) * 2 + 256;
            int *np = realloc(e->pool, nc * sizeof *np);
            if (!np) return;
            e->pool = np;
            e->pool_cap = nc;
        }
        memcpy(e->pool + e->pool_n, e->ids + first, k * sizeof *e->pool);
        *c = (struct cache_ent){w, (uint32_t)n, (uint32_t)e->pool_n, (uint32_t)k};
        e->pool_n += k;
        e->cache_used++;
    }
}

/* The merges of one pre-token of n >= 2 bytes: append its ids. */
static void bpe_merge(const sasp_tokenizer *t, enc_state *e, const unsigned char *w, size_t n)
{
    if (reserve_scratch(e, n)) return;
    int *sym = e->sym;
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[w[i]];
    if (n <= SHORT_WORD) {
        /* Find the lowest-ranked pair; merge all its occurrences left to right; repeat. */
        int len = (int)n;
        for (;;) {
            int best = INT32_MAX, a = 0, b = 0, c = 0;
            for (int i = 0; i + 1 < len; i++) {
                const merge_slot *m = merge_find(t, sym[i], sym[i + 1]);
                if (m && m->rank < best) {
                    best = m->rank;
                    a = sym[i];
                    b = sym[i + 1];
                    c = m->result;
                }
            }
            if (best == INT32_MAX) break;
            int o = 0;
            for (int i = 0; i < len;) {
                if (i + 1 < len && sym[i] == a && sym[i + 1] == b) {
                    sym[o++] = c;
                    i += 2;
                } else sym[o++] = sym[i++];
            }
            len = o;
            if (len == 1) break;
        }
        for (int i = 0; i < len; i++) push_id(e, sym[i]);
        return;
    }
    /* Long words: the same merges in O(n log n) with a linked list and a heap of (rank, position).
     * A heap entry is stale when its pair has changed since; it is then skipped. */
    int *nxt = e->nxt, *prv = e->prv, N = (int)n;
    e->hn = 0;
    for (int i = 0; i < N; i++) {
        nxt[i] = i + 1;
        prv[i] = i - 1;
    }
    for (int i = 0; i + 1 < N; i++) {
        const merge_slot *m = merge_find(t, sym[i], sym[i + 1]);
        if (m) heap_push(e, (struct heap_item){m->rank, i});
    }
    while (e->hn) {
        struct heap_item it = heap_pop(e);
        int i = it.pos;
        if (sym[i] < 0) continue;
        int j = nxt[i];
        if (j >= N) continue;
        const merge_slot *m = merge_find(t, sym[i], sym[j]);
        if (!m || m->rank != it.rank) continue;
        sym[i] = m->result;
        sym[j] = -1;
        nxt[i] = nxt[j];
        if (nxt[i] < N) prv[nxt[i]] = i;
        if (prv[i] >= 0) {
            const merge_slot *l = merge_find(t, sym[prv[i]], sym[i]);
            if (l) heap_push(e, (struct heap_item){l->rank, prv[i]});
        }
        if (nxt[i] < N) {
            const merge_slot *r = merge_find(t, sym[i], sym[nxt[i]]);
            if (r) heap_push(e, (struct heap_item){r->rank, i});
        }
    }
    for (int i = 0; i < N; i = nxt[i]) push_id(e, sym[i]);
}

/* Length of the well-formed UTF-8 sequence at p (1..4), or 0 when the byte at p is invalid. */
static inline int utf8_seq_len(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return avail >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (avail < 3) return 0;
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c < 0xF5) {
        if (avail < 4) return 0;
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/* Pre-tokenise a valid UTF-8 run with the pattern and BPE each piece. */
static void encode_run(const sasp_tokenizer *t, enc_state *e, const unsigned char *s, size_t n)
{
    size_t off = 0;
    while (off < n && !e->oom) {
        int rc = pcre2_match(t->re, s, n, off, PCRE2_NO_UTF_CHECK, e->md, e->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !e->jstack) {
            /* A very long run of one class: give the JIT a larger stack and retry. */
            e->jstack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
            e->mctx = pcre2_match_context_create(NULL);
            if (!e->jstack || !e->mctx) {
                e->oom = -1;
                return;
            }
            pcre2_jit_stack_assign(e->mctx, NULL, e->jstack);
            continue;
        }
        if (rc < 0) { /* cannot happen (every character matches some branch); keep the bytes anyway */
            for (size_t i = off; i < n; i++) bpe_word(t, e, s + i, 1);
            return;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        for (size_t i = off; i < ov[0]; i++) bpe_word(t, e, s + i, 1); /* (never: no gaps) */
        bpe_word(t, e, s + ov[0], ov[1] - ov[0]);
        off = ov[1];
    }
}

/* Encode text holding no special tokens: valid runs through the pattern, invalid bytes alone. */
static void encode_ordinary(const sasp_tokenizer *t, enc_state *e, const unsigned char *s, size_t n)
{
    size_t i = 0, start = 0;
    while (i < n) {
        int l = utf8_seq_len(s + i, n - i);
        if (l) {
            i += (size_t)l;
            continue;
        }
        if (i > start) encode_run(t, e, s + start, i - start);
        bpe_word(t, e, s + i, 1);
        start = ++i;
    }
    if (n > start) encode_run(t, e, s + start, n - start);
}

/* Encode (ends_mode 0) or pre-tokenise (1) text; the result is in e. Returns 0, or -1 when out of memory. */
static int run(const sasp_tokenizer *t, enc_state *e_, const char *text, size_t len, int allow_special, int ends_mode)
{
    enc_state e = {0};
    e.base = (const unsigned char *)text;
    e.text_len = len;
    if (ends_mode && !(e.ends = malloc(256 * sizeof *e.ends))) return -1;
    if (ends_mode) e.cap = 256;
    e.md = pcre2_match_data_create(1, NULL);
    if (!e.md) {
        free(e.ends);
        return -1;
    }
    const unsigned char *s = (const unsigned char *)text;
    size_t pos = 0;
    while (allow_special && t->n_specials && pos < len && !e.oom) {
        /* leftmost special token, the longest at one position */
        size_t best = len, blen = 0;
        int bid = -1;
        for (int k = 0; k < t->n_specials; k++) {
            const token *sp = &t->tok[t->specials[k]];
            const char *hit = memmem(text + pos, len - pos, sp->bytes, (size_t)sp->len);
            if (!hit) continue;
            size_t at = (size_t)(hit - text);
            if (at < best || (at == best && (size_t)sp->len > blen)) {
                best = at;
                blen = (size_t)sp->len;
                bid = t->specials[k];
            }
        }
        if (bid < 0) break;
        encode_ordinary(t, &e, s + pos, best - pos);
        if (ends_mode) push_end(&e, s + best + blen);
        else push_id(&e, bid);
        pos = best + blen;
    }
    if (!e.oom && pos < len) encode_ordinary(t, &e, s + pos, len - pos);
    pcre2_match_data_free(e.md);
    if (e.mctx) pcre2_match_context_free(e.mctx);
    if (e.jstack) pcre2_jit_stack_free(e.jstack);
    free(e.sym);
    free(e.nxt);
    free(e.prv);
    free(e.heap);
    free(e.cache);
    free(e.pool);
    if (e.oom || e.n > INT32_MAX) {
        free(e.ids);
        free(e.ends);
        return -1;
    }
    *e_ = e;
    return 0;
}

int sasp_encode(const sasp_tokenizer *t, const char *text, size_t len, int allow_special, int **ids)
{
    enc_state e;
    *ids = NULL;
    if (run(t, &e, text, len, allow_special, 0)) return -1;
    if (!e.ids) e.ids = malloc(sizeof(int)); /* a valid pointer even for no ids */
    if (!e.ids) return -1;
    *ids = e.ids;
    return (int)e.n;
}

int sasp_pretokenize(const sasp_tokenizer *t, const char *text, size_t len, int allow_special, size_t **ends)
{
    enc_state e;
    *ends = NULL;
    if (run(t, &e, text, len, allow_special, 1)) return -1;
    *ends = e.ends;
    return (int)e.n;
}

/* ---------------------------------------------------------------------------------------------
 * Decoding */

char *sasp_decode(const sasp_tokenizer *t, const int *ids, int n, size_t *len)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < t->n) total += (size_t)t->tok[ids[i]].len;
    char *out = malloc(total + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < t->n) {
            memcpy(out + o, t->tok[ids[i]].bytes, (size_t)t->tok[ids[i]].len);
            o += (size_t)t->tok[ids[i]].len;
        }
    out[o] = 0;
    if (len) *len = o;
    return out;
}

/* Streaming decoder. held[] is always a proper prefix of some well-formed sequence. */

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

void sasp_stream_init(sasp_utf8_stream *s) { s->n_held = 0; }

/* How many bytes the sequence led by c has (2..4), or 0 when c cannot lead one. */
static int utf8_need(unsigned char c)
{
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Whether c may follow the bytes held so far. */
static int utf8_continues(const sasp_utf8_stream *s, unsigned char c)
{
    if (s->n_held == 1) {
        unsigned char l = s->held[0];
        unsigned lo = l == 0xE0 ? 0xA0 : l == 0xF0 ? 0x90
                                                   : 0x80;
        unsigned hi = l == 0xED ? 0x9F : l == 0xF4 ? 0x8F
                                                   : 0xBF;
        return c >= lo && c <= hi;
    }
    return (c & 0xC0) == 0x80;
}

size_t sasp_stream_push(sasp_utf8_stream *s, const char *bytes, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    (void)cap; /* at most 3 bytes out per byte in, plus 3 for a held prefix replaced: < 3n + 8 */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if (s->n_held) {
            if (utf8_continues(s, c)) {
                s->held[s->n_held++] = c;
                if (s->n_held == utf8_need(s->held[0])) {
                    memcpy(out + o, s->held, (size_t)s->n_held);
                    o += (size_t)s->n_held;
                    s->n_held = 0;
                }
                continue;
            }
            memcpy(out + o, REPLACEMENT, 3); /* the held prefix can never complete */
            o += 3;
            s->n_held = 0;
        }
        if (c < 0x80) out[o++] = (char)c;
        else if (utf8_need(c)) s->held[s->n_held++] = c;
        else {
            memcpy(out + o, REPLACEMENT, 3);
            o += 3;
        }
    }
    return o;
}

size_t sasp_stream_finish(sasp_utf8_stream *s, char *out, size_t cap)
{
    (void)cap;
    if (!s->n_held) return 0;
    s->n_held = 0;
    memcpy(out, REPLACEMENT, 3);
    return 3;
}
