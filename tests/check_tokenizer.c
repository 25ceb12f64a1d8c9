/* check_tokenizer.c: the C tokenizer against the Python reference (train/bpe.py), round trips,
 * the streaming decoder and malformed tokenizer.json files.
 *
 * The reference ids come from running train/bpe.py on the cases at test time when /usr/bin/python3
 * has the `regex` module, and otherwise from tests/fixtures/tokenizer/expected.txt (a count and a
 * hash of the ids of each fixed case, written by scripts/gen-tokenizer-fixture.sh). Random tests
 * draw a fresh seed each run (printed; set SASP_TEST_SEED to repeat one). SASP_BPE_PYTHON names
 * another Python (a missing one forces the fixture path). */
#include "text/tokenizer.h"

#include <check.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FIXDIR SASP_SRCDIR "/tests/fixtures/tokenizer/"
#define FIXTURE FIXDIR "tokenizer.json"
static const char *PYTHON = "/usr/bin/python3"; /* SASP_BPE_PYTHON overrides (e.g. to test the fallback) */

static uint64_t seed;
static uint64_t rng_state;
static uint64_t rnd(void)
{ /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static uint32_t below(uint32_t n) { return (uint32_t)(rnd() % n); }

static sasp_tokenizer *load_fixture(void)
{
    char err[512];
    sasp_tokenizer *t = sasp_tokenizer_load(FIXTURE, err, sizeof err);
    ck_assert_msg(t != NULL, "loading the fixture: %s", err);
    return t;
}

/* ---------------------------------------------------------------------------------------------
 * Growable byte buffer and an independent UTF-8 encoder, validator and U+FFFD replacer (written
 * from the Unicode tables, not shared with tokenizer.c, so that they check it). */

typedef struct {
    char *p;
    size_t n, cap;
} buf;
static void put(buf *b, const void *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        ck_assert(b->p != NULL);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }
static void put_cp(buf *b, uint32_t c)
{
    unsigned char o[4];
    int n;
    if (c < 0x80) {
        o[0] = (unsigned char)c;
        n = 1;
    } else if (c < 0x800) {
        o[0] = 0xC0 | c >> 6;
        o[1] = 0x80 | (c & 63);
        n = 2;
    } else if (c < 0x10000) {
        o[0] = 0xE0 | c >> 12;
        o[1] = 0x80 | ((c >> 6) & 63);
        o[2] = 0x80 | (c & 63);
        n = 3;
    } else {
        o[0] = 0xF0 | c >> 18;
        o[1] = 0x80 | ((c >> 12) & 63);
        o[2] = 0x80 | ((c >> 6) & 63);
        o[3] = 0x80 | (c & 63);
        n = 4;
    }
    put(b, o, (size_t)n);
}

/* Unicode Table 3-7: for a lead byte, the sequence length and the range of the second byte. */
static int lead_info(unsigned char c, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c == 0xE0) {
        *lo = 0xA0;
        return 3;
    }
    if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return 3;
    if (c == 0xED) {
        *hi = 0x9F;
        return 3;
    }
    if (c == 0xF0) {
        *lo = 0x90;
        return 4;
    }
    if (c >= 0xF1 && c <= 0xF3) return 4;
    if (c == 0xF4) {
        *hi = 0x8F;
        return 4;
    }
    return 0;
}
/* Length of the valid prefix of a sequence at p: its whole length when complete, else -(matched). */
static int seq_at(const unsigned char *p, size_t avail)
{
    if (p[0] < 0x80) return 1;
    unsigned char lo, hi;
    int need = lead_info(p[0], &lo, &hi);
    if (!need) return 0;
    int k = 1;
    for (; k < need && (size_t)k < avail; k++) {
        unsigned char c = p[k];
        if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
    }
    return k == need ? need : -k;
}
static int valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        int k = seq_at((const unsigned char *)s + i, n - i);
        if (k <= 0) return 0;
        i += (size_t)k;
    }
    return 1;
}
/* s with each maximal invalid subpart replaced by U+FFFD (as Python's errors="replace"). */
static buf replace_invalid(const char *s, size_t n)
{
    buf b = {0};
    put(&b, "", 0);
    for (size_t i = 0; i < n;) {
        int k = seq_at((const unsigned char *)s + i, n - i);
        if (k > 0) {
            put(&b, s + i, (size_t)k);
            i += (size_t)k;
        } else {
            put(&b, "\xEF\xBF\xBD", 3);
            i += (size_t)(k < 0 ? -k : 1);
        }
    }
    return b;
}

/* A random valid scalar value, drawn from a mixture that stresses the pre-tokeniser. */
static uint32_t random_cp(void)
{
    static const char ascii[] = "abcXYZ_019 \t\n\r'.,;:!?(){}[]<>|=+-*/#\"\\sdtmlrve ";
    static const uint32_t picks[] = {0x00A0, 0x0085, 0x180E, 0x1680, 0x2000, 0x200B, 0x2028, 0x202F, 0x3000,
                                     0x0301, 0x0308, 0x200D, 0xFE0F, 0x05D0, 0x0627, 0x0661, 0x202E, 0x00BD,
                                     0x00B2, 0x2167, 0x1F600, 0x1F1EB, 0x1F3FD, 0x4E2D, 0xAC00, 0x3042, 0xFFFD,
                                     0x11F05, 0x11F50, 0x31350, 0x1E4D0, 0x10FFFF, 0xE000, 0x0000};
    switch (below(6)) {
    case 0:
    case 1:
    case 2: return (unsigned char)ascii[below(sizeof ascii - 1)];
    case 3: return picks[below(sizeof picks / sizeof *picks)];
    case 4: return 0x80 + below(0x800 - 0x80);
    default: {
        uint32_t c;
        do c = below(0x110000);
        while (c >= 0xD800 && c < 0xE000);
        return c;
    }
    }
}
static buf random_text(int max_cps, int invalid)
{
    buf b = {0};
    put(&b, "", 0);
    int n = (int)below((uint32_t)max_cps + 1);
    for (int i = 0; i < n; i++) {
        if (invalid && below(8) == 0) {
            static const char *bad[] = {"\xFF", "\xC0\xAF", "\xED\xA0\x80", "\xE2\x82", "\x80", "\xF4\x90\x80\x80",
                                        "\xF0\x9F\x98", "\xC3"};
            puts_(&b, bad[below(8)]);
        } else if (below(40) == 0) {
            puts_(&b, "<|endoftext|>");
        } else {
            put_cp(&b, random_cp());
        }
    }
    return b;
}

/* ---------------------------------------------------------------------------------------------
 * The fixed cases and their reference ids */

typedef struct {
    const char *name;
    buf text;
    int allow;
} tcase_t;
static tcase_t cases[64];
static int n_cases;

static void add_case(const char *name, const char *s, size_t n, int allow)
{
    ck_assert_int_lt(n_cases, 64);
    tcase_t *c = &cases[n_cases++];
    c->name = name;
    c->text = (buf){0};
    put(&c->text, s, n);
    c->allow = allow;
}
#define ADD(name, lit, allow) add_case(name, lit, sizeof lit - 1, allow)

static buf read_file(const char *path)
{
    buf b = {0};
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char tmp[65536];
    size_t r;
    put(&b, "", 0);
    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) put(&b, tmp, r);
    fclose(f);
    return b;
}

static void build_cases(void)
{
    if (n_cases) return;
    ADD("empty", "", 0);
    ADD("empty-special", "", 1);
    ADD("space", " ", 0);
    ADD("whitespace-only", "   \t\t \n\n\r\n  \x0b\x0c  ", 0);
    ADD("unicode-whitespace", "\xC2\xA0\xE3\x80\x80 \xE2\x80\xA8\xE1\xA0\x8E\xC2\x85\xE2\x80\x8B \xE2\x80\x83x", 0);
    ADD("tabs-spaces-crlf", "def f(x):\r\n\tif x:\r\n\t    return 1  \t\r\n\r\n    \n  \t \n\treturn  x\r", 0);
    ADD("emoji", "\xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD hi \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9"
                 "\xE2\x80\x8D\xF0\x9F\x91\xA7 \xF0\x9F\x87\xAB\xF0\x9F\x87\xB7\xE2\x9C\x93\xEF\xB8\x8F!",
        0);
    ADD("cjk", "\xE6\xBC\xA2\xE5\xAD\x97\xE3\x81\x8B\xE3\x81\xAA \xE3\x82\xAB\xE3\x83\x8A \xED\x95\x9C\xEA\xB5\xAD"
               "\xEC\x96\xB4\xEF\xBC\x8C\xE4\xB8\xAD\xE6\x96\x87\xE3\x80\x82 x=\xE5\x80\xBC",
        0);
    ADD("combining", "e\xCC\x81 n\xCC\x83 a\xCC\x88\xCC\xA3 Z\xCC\xA4\xCD\x94\xCD\xA7 \xCC\x81\xCC\x81 1\xCC\x81 ."
                     "\xCC\x81 \xE0\xA4\xA8\xE0\xA4\xBF",
        0);
    ADD("rtl", "\xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D \xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 \xE2\x80\xAE"
               "abc"
               "\xE2\x80\xAC 123 \xD9\xA1\xD9\xA2\xD9\xA3 \xD8\x9F",
        0);
    ADD("invalid-bytes", "\xFF\xFE abc \xC0\xAF \xED\xA0\x80 \xE2\x82 x \xF4\x90\x80\x80 \x80\x80 \xF0\x9F\x98"
                         "y\xC3 \xC3\xA9\xE2\x82",
        0);
    ADD("nul-bytes", "a\0b\0\0 c \0", 0);
    ADD("contractions", "don't I'll we've they're she's I'd I'm 'S 'T ''s 's's", 0);
    ADD("numbers", "3.14159 1,000,000 0x1F 1e-9 \xC2\xBD \xC2\xB2 \xD9\xA1\xD9\xA2 \xE2\x85\xA7 12345678901234", 0);
    ADD("endoftext-not-allowed", "Hello<|endoftext|>World <|endoftext|><|endoftext|> x<|endoftext", 0);
    ADD("endoftext-allowed", "Hello<|endoftext|>World <|endoftext|><|endoftext|> x<|endoftext", 1);
    ADD("endoftext-alone", "<|endoftext|>", 1);

    buf b = {0};
    for (int i = 0; i < 10000; i++) puts_(&b, " ");
    puts_(&b, "x");
    for (int i = 0; i < 3000; i++) puts_(&b, "\n");
    for (int i = 0; i < 300; i++) puts_(&b, "#");
    add_case("long-runs", b.p, b.n, 0);
    b.n = 0;

    /* A 1 MB line with no spaces: one long word (the O(n log n) merge path), then mixed classes. */
    rng_state = 12345;
    while (b.n < (1 << 20)) {
        char c = "etaoinshrdlucmfw"[below(16)];
        put(&b, &c, 1);
    }
    add_case("1MB-identifier", b.p, b.n, 0);
    b.n = 0;
    while (b.n < (1 << 20)) {
        char c = "abcdefghijklmnopqrstuvwxyz0123456789_.,()[]=+-*/<>:'\"#"[below(53)];
        put(&b, &c, 1);
    }
    add_case("1MB-mixed", b.p, b.n, 0);
    b.n = 0;

    /* Every code point of planes 0-3 and 14, in contexts that tell letters, digits, whitespace
     * and the rest apart: "x" c "5" "!" c "!". */
    for (uint32_t c = 0; c < 0xE1000; c++) {
        if (c == 0x40000) c = 0xE0000;
        if (c >= 0xD800 && c < 0xE000) continue;
        puts_(&b, "x");
        put_cp(&b, c);
        puts_(&b, "5!");
        put_cp(&b, c);
        puts_(&b, "!");
    }
    add_case("all-code-points", b.p, b.n, 0);
    free(b.p);

    buf h = read_file(FIXDIR "heldout.txt");
    add_case("heldout", h.p, h.n, 0);
    add_case("heldout-special", h.p, h.n, 1);
    free(h.p);
}

static int have_python(void)
{
    static int have = -1;
    if (have < 0) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "%s -c 'import regex' >/dev/null 2>&1", PYTHON);
        have = system(cmd) == 0;
    }
    return have;
}

/* Run train/bpe.py on texts[]; returns a JSON array (one array of ids per text, or with pieces,
 * of the end offsets of its pre-tokens). */
static json_t *python_encode(const char *tokenizer, tcase_t *cs, int n, int pieces)
{
    char in[] = "/tmp/sasp-tok-in-XXXXXX", out[] = "/tmp/sasp-tok-out-XXXXXX";
    int fd = mkstemp(in), fd2 = mkstemp(out);
    ck_assert(fd >= 0 && fd2 >= 0);
    close(fd2);
    FILE *f = fdopen(fd, "w");
    ck_assert(f != NULL);
    for (int i = 0; i < n; i++) {
        fputs(cs[i].allow ? "S " : "N ", f);
        for (size_t k = 0; k < cs[i].text.n; k++) fprintf(f, "%02x", (unsigned char)cs[i].text.p[k]);
        fputc('\n', f);
    }
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s/train/bpe.py encode --tokenizer %s --hex-lines%s < %s > %s", PYTHON,
             SASP_SRCDIR, tokenizer, pieces ? " --pieces" : "", in, out);
    int rc = system(cmd);
    ck_assert_msg(rc == 0, "the Python encoder failed: %s", cmd);
    buf o = read_file(out);
    unlink(in);
    unlink(out);
    json_t *all = json_array();
    char *line = o.p;
    for (int i = 0; i < n; i++) {
        char *nl = strchr(line, '\n');
        ck_assert_msg(nl != NULL, "the Python encoder gave %d lines for %d cases", i, n);
        json_error_t e;
        json_t *ids = json_loadb(line, (size_t)(nl - line), 0, &e);
        ck_assert_msg(json_is_array(ids), "bad Python output line %d: %s", i, e.text);
        json_array_append_new(all, ids);
        line = nl + 1;
    }
    free(o.p);
    return all;
}

static uint64_t hash_ids(const int *ids, int n)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 4; k++) h = (h ^ ((uint32_t)ids[i] >> (8 * k) & 0xFF)) * 1099511628211ull;
    return h;
}

static uint64_t hash_ends(const size_t *e, int n)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 8; k++) h = (h ^ ((uint64_t)e[i] >> (8 * k) & 0xFF)) * 1099511628211ull;
    return h;
}

/* C's values (ids or pre-token ends) against Python's; what says which. */
static void compare(const char *what, const char *name, const long long *v, int n, json_t *want)
{
    int wn = (int)json_array_size(want);
    int i = 0;
    while (i < n && i < wn && v[i] == (long long)json_integer_value(json_array_get(want, (size_t)i))) i++;
    ck_assert_msg(i == n && i == wn, "case %s (seed %llu): C gives %d %s, Python %d; first difference at %d (C %lld, Python %lld)",
                  name, (unsigned long long)seed, n, what, wn, i, i < n ? v[i] : -1LL,
                  i < wn ? (long long)json_integer_value(json_array_get(want, (size_t)i)) : -1LL);
}

/* Encode and pre-tokenise one case in C and compare both with Python's answers. */
static void compare_case(const sasp_tokenizer *t, const tcase_t *c, json_t *want_ids, json_t *want_ends,
                         int *n_ids, uint64_t *h_ids, int *n_ends, uint64_t *h_ends)
{
    int *ids;
    size_t *ends;
    int n = sasp_encode(t, c->text.p, c->text.n, c->allow, &ids);
    int m = sasp_pretokenize(t, c->text.p, c->text.n, c->allow, &ends);
    ck_assert_msg(n >= 0 && m >= 0, "case %s: encode failed", c->name);
    ck_assert_msg(m == 0 || ends[m - 1] == c->text.n, "case %s: the pre-tokens do not cover the text", c->name);
    long long *v = malloc(((size_t)(n > m ? n : m) + 1) * sizeof *v);
    if (want_ids) {
        for (int i = 0; i < n; i++) v[i] = ids[i];
        compare("ids", c->name, v, n, want_ids);
    }
    if (want_ends) {
        for (int i = 0; i < m; i++) v[i] = (long long)ends[i];
        compare("pre-tokens", c->name, v, m, want_ends);
    }
    *n_ids = n;
    *h_ids = hash_ids(ids, n);
    *n_ends = m;
    *h_ends = hash_ends(ends, m);
    free(v);
    free(ids);
    free(ends);
}

START_TEST(test_fixed_cases_equal_python)
{
    build_cases();
    sasp_tokenizer *t = load_fixture();
    int live = have_python();
    json_t *want_ids = live ? python_encode(FIXTURE, cases, n_cases, 0) : NULL;
    json_t *want_ends = live ? python_encode(FIXTURE, cases, n_cases, 1) : NULL;
    FILE *exp = NULL, *wr = NULL;
    const char *w = getenv("SASP_TOKENIZER_WRITE_EXPECTED");
    if (live && w && *w) {
        wr = fopen(w, "w");
        ck_assert_msg(wr != NULL, "cannot write %s", w);
        fprintf(wr, "# case, ids: count hash, pre-tokens: count hash (written by scripts/gen-tokenizer-fixture.sh)\n");
    }
    if (!live) {
        fprintf(stderr, "check_tokenizer: %s lacks the regex module: comparing with %sexpected.txt\n", PYTHON, FIXDIR);
        exp = fopen(FIXDIR "expected.txt", "r");
        ck_assert_msg(exp != NULL, "cannot open %sexpected.txt", FIXDIR);
    }
    for (int i = 0; i < n_cases; i++) {
        int n, m;
        uint64_t hn, hm;
        compare_case(t, &cases[i], live ? json_array_get(want_ids, (size_t)i) : NULL,
                     live ? json_array_get(want_ends, (size_t)i) : NULL, &n, &hn, &m, &hm);
        if (wr) fprintf(wr, "%s %d %016llx %d %016llx\n", cases[i].name, n, (unsigned long long)hn, m, (unsigned long long)hm);
        if (exp) {
            char line[256], name[128];
            int en, em;
            unsigned long long eh, emh;
            do ck_assert_msg(fgets(line, sizeof line, exp) != NULL, "expected.txt ends before case %s", cases[i].name);
            while (line[0] == '#');
            ck_assert_msg(sscanf(line, "%127s %d %llx %d %llx", name, &en, &eh, &em, &emh) == 5, "bad line in expected.txt: %s", line);
            ck_assert_msg(strcmp(name, cases[i].name) == 0,
                          "expected.txt does not match the cases (%s for %s): run scripts/gen-tokenizer-fixture.sh", name, cases[i].name);
            ck_assert_msg(n == en && hn == eh, "case %s: ids differ from the Python encoder's (%d ids, expected %d)", name, n, en);
            ck_assert_msg(m == em && hm == emh, "case %s: pre-tokens differ from Python's (%d, expected %d)", name, m, em);
        }
    }
    if (wr) fclose(wr);
    if (exp) fclose(exp);
    json_decref(want_ids);
    json_decref(want_ends);
    sasp_tokenizer_free(t);
}
END_TEST

/* Fresh text: the repository's own sources and random strings, when Python can tell the answer. */
START_TEST(test_random_and_repo_text_equal_python)
{
    if (!have_python()) return;
    sasp_tokenizer *t = load_fixture();
    static const char *files[] = {"src/text/tokenizer.c", "src/text/tokenizer.h", "train/bpe.py", "configure.ac", "Makefile.am"};
    enum { NR = 300 };
    tcase_t *cs = calloc(NR + 5, sizeof *cs);
    int n = 0;
    for (int i = 0; i < 5; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", SASP_SRCDIR, files[i]);
        if (access(path, R_OK) != 0) continue;
        cs[n].name = files[i];
        cs[n].text = read_file(path);
        cs[n++].allow = 0;
    }
    rng_state = seed;
    for (int i = 0; i < NR; i++) {
        cs[n].name = "random";
        cs[n].text = random_text(i < 250 ? 40 : 2000, 1);
        cs[n++].allow = (int)below(2);
    }
    json_t *want_ids = python_encode(FIXTURE, cs, n, 0), *want_ends = python_encode(FIXTURE, cs, n, 1);
    for (int i = 0; i < n; i++) {
        int k, m;
        uint64_t hk, hm;
        compare_case(t, &cs[i], json_array_get(want_ids, (size_t)i), json_array_get(want_ends, (size_t)i), &k, &hk, &m, &hm);
        free(cs[i].text.p);
    }
    json_decref(want_ids);
    json_decref(want_ends);
    free(cs);
    sasp_tokenizer_free(t);
}
END_TEST

START_TEST(test_round_trip)
{
    sasp_tokenizer *t = load_fixture();
    rng_state = seed ^ 1;
    for (int it = 0; it < 3000; it++) {
        int invalid = it % 3 == 0;
        buf x = random_text(it % 100 == 0 ? 3000 : 60, invalid);
        int allow = (int)below(2);
        int *ids;
        int n = sasp_encode(t, x.p, x.n, allow, &ids);
        ck_assert_int_ge(n, 0);
        size_t len;
        char *y = sasp_decode(t, ids, n, &len);
        ck_assert_msg(y && len == x.n && memcmp(x.p, y, len) == 0,
                      "decode(encode(x)) != x (seed %llu, iteration %d, %zu bytes, allow_special %d)",
                      (unsigned long long)seed, it, x.n, allow);
        for (int i = 0; i < n; i++)
            ck_assert_msg(allow || !sasp_tokenizer_is_special(t, ids[i]), "special id without allow_special (seed %llu)",
                          (unsigned long long)seed);
        free(y);
        free(ids);
        free(x.p);
    }
    sasp_tokenizer_free(t);
}
END_TEST

/* Feed ids one at a time; every chunk must be whole valid UTF-8, and the whole the U+FFFD form. */
static void check_stream(const sasp_tokenizer *t, const int *ids, int n, const char *what)
{
    sasp_utf8_stream s;
    sasp_stream_init(&s);
    buf all = {0};
    put(&all, "", 0);
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *b = sasp_token_bytes(t, ids[i], &len);
        ck_assert(b != NULL);
        size_t cap = 3 * len + 8;
        char *out = malloc(cap);
        size_t k = sasp_stream_push(&s, b, len, out, cap);
        ck_assert_msg(k <= cap && valid_utf8(out, k), "%s: chunk %d is not whole UTF-8 (seed %llu)", what, i,
                      (unsigned long long)seed);
        put(&all, out, k);
        free(out);
        ck_assert(s.n_held >= 0 && s.n_held <= 3);
    }
    char fin[12];
    size_t k = sasp_stream_finish(&s, fin, sizeof fin);
    ck_assert(valid_utf8(fin, k));
    put(&all, fin, k);
    size_t dl;
    char *d = sasp_decode(t, ids, n, &dl);
    buf want = replace_invalid(d, dl);
    if (valid_utf8(d, dl)) ck_assert(want.n == dl && memcmp(want.p, d, dl) == 0);
    ck_assert_msg(all.n == want.n && memcmp(all.p, want.p, all.n) == 0,
                  "%s: the streamed text differs from decode(all ids) (seed %llu)", what, (unsigned long long)seed);
    free(d);
    free(want.p);
    free(all.p);
}

START_TEST(test_stream_decoder)
{
    sasp_tokenizer *t = load_fixture();
    int byte_id[256];
    for (int b = 0; b < 256; b++) { /* the token of each single byte */
        char c = (char)b;
        int *ids;
        ck_assert_int_eq(sasp_encode(t, &c, 1, 0, &ids), 1);
        byte_id[b] = ids[0];
        size_t len;
        const char *bytes = sasp_token_bytes(t, ids[0], &len);
        ck_assert(len == 1 && (unsigned char)bytes[0] == b);
        free(ids);
    }
    /* hand-made: a euro sign split over three tokens; a truncated one at the end; an interrupted one */
    int euro[] = {byte_id[0xE2], byte_id[0x82], byte_id[0xAC], byte_id['!']};
    check_stream(t, euro, 4, "euro");
    sasp_utf8_stream s;
    sasp_stream_init(&s);
    char out[64], fin[12];
    ck_assert_uint_eq(sasp_stream_push(&s, "\xE2", 1, out, sizeof out), 0);
    ck_assert_uint_eq(sasp_stream_push(&s, "\x82", 1, out, sizeof out), 0);
    ck_assert_uint_eq(sasp_stream_push(&s, "\xAC", 1, out, sizeof out), 3);
    ck_assert(memcmp(out, "\xE2\x82\xAC", 3) == 0);
    ck_assert_uint_eq(sasp_stream_push(&s, "\xF0\x9F", 2, out, sizeof out), 0);
    ck_assert_uint_eq(sasp_stream_finish(&s, fin, sizeof fin), 3);
    ck_assert(memcmp(fin, "\xEF\xBF\xBD", 3) == 0);
    ck_assert_uint_eq(sasp_stream_finish(&s, fin, sizeof fin), 0);
    ck_assert_uint_eq(sasp_stream_push(&s, "\xE2\x82"
                                           "A\xFF\xED\xA0",
                                       6, out, sizeof out),
                      13);
    ck_assert(memcmp(out, "\xEF\xBF\xBD"
                          "A\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD",
                     13) == 0);

    rng_state = seed ^ 2;
    for (int it = 0; it < 2000; it++) {
        buf x = random_text(50, it % 2);
        int *ids;
        int n = sasp_encode(t, x.p, x.n, (int)below(2), &ids);
        check_stream(t, ids, n, "encoded text");
        /* the same bytes as single-byte tokens, so that every character is split */
        int *bids = malloc((x.n + 32) * sizeof *bids);
        for (size_t i = 0; i < x.n; i++) bids[i] = byte_id[(unsigned char)x.p[i]];
        check_stream(t, bids, (int)x.n, "byte tokens");
        /* random ids of any kind */
        int m = (int)below(30);
        for (int i = 0; i < m; i++) bids[i] = (int)below((uint32_t)sasp_tokenizer_vocab_size(t));
        check_stream(t, bids, m, "random ids");
        free(bids);
        free(ids);
        free(x.p);
    }
    sasp_tokenizer_free(t);
}
END_TEST

START_TEST(test_api_basics)
{
    sasp_tokenizer *t = load_fixture();
    ck_assert_int_eq(sasp_tokenizer_lookup(t, "<|endoftext|>"), 0);
    ck_assert(sasp_tokenizer_is_special(t, 0));
    ck_assert(!sasp_tokenizer_is_special(t, 1));
    ck_assert(!sasp_tokenizer_is_special(t, -1));
    ck_assert(!sasp_tokenizer_is_special(t, sasp_tokenizer_vocab_size(t)));
    ck_assert_int_eq(sasp_tokenizer_lookup(t, "no such token at all"), -1);
    int sp = sasp_tokenizer_lookup(t, "\xC4\xA0"); /* the byte-level spelling of " " */
    ck_assert_int_ge(sp, 0);
    size_t len;
    const char *b = sasp_token_bytes(t, sp, &len);
    ck_assert(len == 1 && b[0] == ' ');
    ck_assert_ptr_null(sasp_token_bytes(t, -1, &len));
    ck_assert_ptr_null(sasp_token_bytes(t, 1 << 30, &len));
    int ids[] = {-5, 0, 1 << 30};
    char *d = sasp_decode(t, ids, 3, &len);
    ck_assert_str_eq(d, "<|endoftext|>");
    free(d);
    int *out;
    ck_assert_int_eq(sasp_encode(t, "<|endoftext|>", 13, 1, &out), 1);
    ck_assert_int_eq(out[0], 0);
    free(out);
    ck_assert_int_gt(sasp_encode(t, "<|endoftext|>", 13, 0, &out), 1);
    free(out);
    sasp_tokenizer_free(t);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Malformed files */

static char tmpdir[64];

static char *write_tmp(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert(f != NULL);
    fputs(text, f);
    fclose(f);
    return path;
}

static void expect_error(const char *name, json_t *doc, const char *needle)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    char *path = write_tmp(name, text);
    free(text);
    char err[512] = "";
    sasp_tokenizer *t = sasp_tokenizer_load(path, err, sizeof err);
    ck_assert_msg(t == NULL, "%s: loaded a malformed file", name);
    ck_assert_msg(strstr(err, path) != NULL, "%s: the error does not name the file: %s", name, err);
    ck_assert_msg(strstr(err, needle) != NULL, "%s: the error \"%s\" does not say \"%s\"", name, err, needle);
    unlink(path);
}

START_TEST(test_malformed_files)
{
    ck_assert(mkdtemp(strcpy(tmpdir, "/tmp/sasp-tok-XXXXXX")) != NULL);
    json_error_t e;
    json_t *base = json_load_file(FIXTURE, 0, &e);
    ck_assert_msg(base != NULL, "%s", e.text);
    json_t *d;
    char err[512];

    /* the fixture with merges as ["a", "b"] pairs loads and encodes the same */
    d = json_deep_copy(base);
    json_t *merges = json_object_get(json_object_get(d, "model"), "merges");
    for (size_t i = 0; i < json_array_size(merges); i++) {
        const char *m = json_string_value(json_array_get(merges, i));
        const char *sp = strchr(m, ' ');
        json_t *pair = json_pack("[s#s]", m, (int)(sp - m), sp + 1);
        json_array_set_new(merges, i, pair);
    }
    char *text = json_dumps(d, 0);
    char *path = write_tmp("pairs.json", text);
    free(text);
    sasp_tokenizer *t1 = sasp_tokenizer_load(path, err, sizeof err), *t0 = load_fixture();
    ck_assert_msg(t1 != NULL, "%s", err);
    buf h = read_file(FIXDIR "heldout.txt");
    int *a, *b;
    int na = sasp_encode(t0, h.p, h.n, 0, &a), nb = sasp_encode(t1, h.p, h.n, 0, &b);
    ck_assert(na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0);
    free(a);
    free(b);
    free(h.p);
    sasp_tokenizer_free(t0);
    sasp_tokenizer_free(t1);
    unlink(path);
    json_decref(d);

    /* not JSON, empty, missing file */
    const char *raw[][2] = {{"empty.json", ""}, {"trunc.json", "{\"model\": {\"vocab\": {"}, {"array.json", "[1, 2]"}, {"dupkey.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"a\": 1}, \"merges\": []}}"}};
    for (int i = 0; i < 4; i++) {
        path = write_tmp(raw[i][0], raw[i][1]);
        ck_assert_msg(sasp_tokenizer_load(path, err, sizeof err) == NULL, "%s loaded", raw[i][0]);
        ck_assert_msg(strstr(err, path) != NULL, "%s: %s", raw[i][0], err);
        unlink(path);
    }
    ck_assert(sasp_tokenizer_load("/nonexistent/tokenizer.json", err, sizeof err) == NULL);
    ck_assert(strstr(err, "/nonexistent/tokenizer.json") != NULL);

#define MUTATE(name, needle, stmt)                       \
    do {                                                 \
        d = json_deep_copy(base);                        \
        json_t *model = json_object_get(d, "model");     \
        json_t *vocab = json_object_get(model, "vocab"); \
        json_t *mg = json_object_get(model, "merges");   \
        (void)vocab;                                     \
        (void)mg;                                        \
        stmt;                                            \
        expect_error(name, d, needle);                   \
        json_decref(d);                                  \
    } while (0)
    MUTATE("no-model", "model", json_object_del(d, "model"));
    MUTATE("model-string", "model", json_object_set_new(d, "model", json_string("BPE")));
    MUTATE("not-bpe", "BPE", json_object_set_new(model, "type", json_string("WordPiece")));
    MUTATE("no-vocab", "vocab", json_object_del(model, "vocab"));
    MUTATE("no-merges", "merges", json_object_del(model, "merges"));
    MUTATE("merges-object", "merges", json_object_set_new(model, "merges", json_object()));
    MUTATE("unknown-merge", "not in model.vocab", json_array_append_new(mg, json_string("zzqq xx")));
    MUTATE("merge-result-missing", "merged token", json_array_append_new(mg, json_string("\xC4\x80 \xC4\x81")));
    MUTATE("merge-one-part", "two tokens", json_array_set_new(mg, 0, json_string("abc")));
    MUTATE("merge-three-parts", "two tokens", json_array_set_new(mg, 0, json_string("a b c")));
    MUTATE("merge-number", "merges[0]", json_array_set_new(mg, 0, json_integer(3)));
    MUTATE("merge-pair-short", "merges[1]", json_array_set_new(mg, 1, json_pack("[s]", "a")));
    MUTATE("id-negative", "id", json_object_set_new(vocab, "a", json_integer(-1)));
    MUTATE("id-huge", "id", json_object_set_new(vocab, "a", json_integer(1LL << 40)));
    MUTATE("id-string", "id", json_object_set_new(vocab, "a", json_string("7")));
    MUTATE("id-duplicate", "id", json_object_set_new(vocab, "a", json_integer(json_integer_value(json_object_get(vocab, "b")))));
    MUTATE("id-gap", "contiguous", json_object_set_new(vocab, "a", json_integer(json_object_size(vocab) + 5)));
    MUTATE("byte-missing", "byte 0x61", json_t *ida = json_incref(json_object_get(vocab, "a"));
           json_object_del(vocab, "a"); json_object_set_new(vocab, "qqqqqqqqqqqqqq", ida));
    MUTATE("not-byte-level", "byte-level", json_object_set_new(vocab, "\xE6\xBC\xA2", json_integer(json_object_size(vocab))));
    MUTATE("added-no-content", "added_tokens[0]", json_object_del(json_array_get(json_object_get(d, "added_tokens"), 0), "content"));
    MUTATE("added-clash", "id 0", json_object_set_new(json_array_get(json_object_get(d, "added_tokens"), 0), "content", json_string("<|other|>")));
    MUTATE("added-not-array", "added_tokens", json_object_set_new(d, "added_tokens", json_string("x")));
    MUTATE("pretok-missing", "pre_tokenizer", json_object_del(d, "pre_tokenizer"));
    MUTATE("pretok-other", "pre_tokenizer", json_object_set_new(d, "pre_tokenizer", json_pack("{ss}", "type", "Whitespace")));
    MUTATE("prefix-space", "add_prefix_space", json_object_set_new(json_object_get(d, "pre_tokenizer"), "add_prefix_space", json_true()));
    MUTATE("normalizer", "normalizer", json_object_set_new(d, "normalizer", json_pack("{ss}", "type", "NFC")));
    json_decref(base);
    rmdir(tmpdir);
}
END_TEST

int main(void)
{
    const char *s = getenv("SASP_TEST_SEED"), *py = getenv("SASP_BPE_PYTHON");
    if (py && *py) PYTHON = py;
    seed = s && *s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    printf("check_tokenizer: seed %llu (SASP_TEST_SEED=%llu repeats it); Python reference: %s\n",
           (unsigned long long)seed, (unsigned long long)seed, have_python() ? "live" : "the committed fixture");
    Suite *su = suite_create("tokenizer");
    TCase *tc = tcase_create("tokenizer");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_api_basics);
    tcase_add_test(tc, test_fixed_cases_equal_python);
    tcase_add_test(tc, test_random_and_repo_text_equal_python);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_stream_decoder);
    tcase_add_test(tc, test_malformed_files);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
