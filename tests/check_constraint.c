/* check_constraint.c: constrained decoding (src/text/json_schema.c, src/text/constrain.c).
 *
 * The JSON automaton against hand-written documents (accepted and rejected byte by byte), the schema
 * compiler's refusals, and the property that matters to clients: whatever the model prefers, the
 * output parses (jansson) and validates against its schema (a small validator of the supported subset,
 * written here) and is finished within the budget. "Whatever the model prefers" is played by random
 * choices among the allowed bytes and by random logits over a real vocabulary
 * (tests/fixtures/tokenizer). Then token healing: the mask keeps exactly the tokens that continue the
 * removed bytes. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text/constrain.h"
#include "text/json_schema.h"
#include "text/tokenizer.h"

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t next_rand(void)
{
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return rng_state;
}

static sasp_json_schema *compile_text(const char *text, char *err, size_t errlen)
{
    err[0] = 0;
    if (!text) return sasp_json_schema_compile(NULL, err, errlen);
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    ck_assert_msg(j != NULL, "bad test schema: %s", je.text);
    sasp_json_schema *s = sasp_json_schema_compile(j, err, errlen);
    json_decref(j);
    return s;
}

/* Whether doc (text) is accepted whole by the schema's automaton. */
static int accepts(const sasp_json_schema *s, const char *doc)
{
    sasp_json_state st;
    js_init(&st, s);
    for (const char *p = doc; *p; p++)
        if (js_feed(&st, (unsigned char)*p)) return 0;
    return js_complete(&st);
}

/* ---- a validator of the supported subset ---- */

static int validate(json_t *v, json_t *schema, json_t *root);

static int type_ok(json_t *v, const char *t)
{
    if (!strcmp(t, "object")) return json_is_object(v);
    if (!strcmp(t, "array")) return json_is_array(v);
    if (!strcmp(t, "string")) return json_is_string(v);
    if (!strcmp(t, "integer")) return json_is_integer(v);
    if (!strcmp(t, "number")) return json_is_number(v);
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    if (!strcmp(t, "null")) return json_is_null(v);
    return 0;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static int validate_object(json_t *v, json_t *schema, json_t *root)
{
    json_t *props = json_object_get(schema, "properties"), *req = json_object_get(schema, "required");
    size_t i;
    json_t *r;
    json_array_foreach (req, i, r)
        if (!json_object_get(v, json_string_value(r))) return 0;
    const char *k;
    json_t *x;
    json_object_foreach (v, k, x) {
        json_t *ps = json_object_get(props, k);
        if (props && !ps) return 0; /* we never write keys the schema does not list */
        if (ps && !validate(x, ps, root)) return 0;
    }
    return 1;
}

static int validate(json_t *v, json_t *schema, json_t *root)
{
    json_t *ref = json_object_get(schema, "$ref");
    if (ref) return validate(v, json_object_get(json_object_get(root, "$defs"), json_string_value(ref) + 8), root);
    json_t *en = json_object_get(schema, "enum"), *any = json_object_get(schema, "anyOf");
    if (en) {
        size_t i;
        json_t *e;
        json_array_foreach (en, i, e)
            if (json_equal(e, v)) return 1;
        return 0;
    }
    if (any) {
        size_t i;
        json_t *a;
        json_array_foreach (any, i, a)
            if (validate(v, a, root)) return 1;
        return 0;
    }
    if (json_is_null(v) && json_is_true(json_object_get(schema, "nullable"))) return 1;
    json_t *type = json_object_get(schema, "type");
    if (json_is_string(type) && !type_ok(v, json_string_value(type))) return 0;
    if (json_is_array(type)) {
        int ok = 0;
        size_t i;
        json_t *t;
        json_array_foreach (type, i, t) ok |= type_ok(v, json_string_value(t));
        if (!ok) return 0;
    }
    if (json_is_object(v)) return validate_object(v, schema, root);
    if (json_is_array(v)) {
        json_t *items = json_object_get(schema, "items"), *mn = json_object_get(schema, "minItems"),
               *mx = json_object_get(schema, "maxItems");
        if (mn && json_array_size(v) < (size_t)json_integer_value(mn)) return 0;
        if (mx && json_array_size(v) > (size_t)json_integer_value(mx)) return 0;
        size_t i;
        json_t *x;
        json_array_foreach (v, i, x)
            if (items && !validate(x, items, root)) return 0;
    }
    if (json_is_string(v)) {
        json_t *mn = json_object_get(schema, "minLength"), *mx = json_object_get(schema, "maxLength");
        size_t n = utf8_chars(json_string_value(v));
        if ((mn && n < (size_t)json_integer_value(mn)) || (mx && n > (size_t)json_integer_value(mx))) return 0;
    }
    return 1;
}

/* ---- the automaton ---- */

START_TEST(test_any_object)
{
    char err[256];
    sasp_json_schema *s = compile_text(NULL, err, sizeof err);
    ck_assert_ptr_nonnull(s);
    const char *good[] = {"{}", "{\"a\":1}", "{ \"a\" : [1, 2.5, -3e+2, true, null, \"x\\u00e9\\n\"] }",
                          "{\"k\":{\"n\":{\"m\":[]}},\"z\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}", "\n{\"a\":0}",
                          "{\"a\":-0.5}", "{\"\":false}"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) ck_assert_msg(accepts(s, good[i]), "rejected %s", good[i]);
    const char *bad[] = {"[]", "1", "{\"a\"}", "{\"a\":01}", "{\"a\":1,}", "{,}", "{\"a\":tru}", "{\"a\":\"\x01\"}",
                         "{\"a\":\"\\x\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\xc0\x80\"}", "{\"a\":\"\xed\xa0\x80\"}",
                         "{'a':1}", "{\"a\":1}x", "{\"a\":.5}", "{\"a\":1.}", "{\"a\":-}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) ck_assert_msg(!accepts(s, bad[i]), "accepted %s", bad[i]);
    sasp_json_schema_free(s);
}
END_TEST

static const char *SCHEMA_PERSON =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":8},"
    "\"age\":{\"type\":\"integer\"},\"email\":{\"type\":[\"string\",\"null\"]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"bb\",\"ccc\"]},\"minItems\":1,\"maxItems\":3},"
    "\"kind\":{\"enum\":[\"cat\",\"dog\",1,true,null]},\"ok\":{\"type\":\"boolean\"},"
    "\"pos\":{\"$ref\":\"#/$defs/point\"}},"
    "\"required\":[\"name\",\"tags\",\"pos\"],\"additionalProperties\":false,"
    "\"$defs\":{\"point\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"},"
    "\"y\":{\"type\":\"number\",\"description\":\"up\"}},\"required\":[\"x\",\"y\"]}}}";

START_TEST(test_schema_documents)
{
    char err[256];
    sasp_json_schema *s = compile_text(SCHEMA_PERSON, err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    const char *good[] = {
        "{\"name\":\"Ann\",\"tags\":[\"a\"],\"pos\":{\"x\":1,\"y\":2}}",
        "{\"name\":\"Bob\",\"age\":42,\"email\":null,\"tags\":[\"bb\",\"ccc\",\"a\"],\"kind\":true,\"ok\":false,"
        "\"pos\":{\"x\":-1.5e3,\"y\":0}}",
        "{ \"name\" : \"\\u00e9\" , \"email\" : \"a@b\", \"tags\" : [ \"a\" ], \"kind\": null, \"pos\": {\"x\": 0, \"y\": 0} }",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) ck_assert_msg(accepts(s, good[i]), "rejected %s", good[i]);
    const char *bad[] = {
        "{\"tags\":[\"a\"],\"name\":\"Ann\",\"pos\":{\"x\":1,\"y\":2}}",                 /* out of order */
        "{\"name\":\"Ann\",\"pos\":{\"x\":1,\"y\":2}}",                                  /* tags missing */
        "{\"name\":\"\",\"tags\":[\"a\"],\"pos\":{\"x\":1,\"y\":2}}",                    /* minLength */
        "{\"name\":\"123456789\",\"tags\":[\"a\"],\"pos\":{\"x\":1,\"y\":2}}",           /* maxLength */
        "{\"name\":\"A\",\"tags\":[],\"pos\":{\"x\":1,\"y\":2}}",                        /* minItems */
        "{\"name\":\"A\",\"tags\":[\"a\",\"a\",\"a\",\"a\"],\"pos\":{\"x\":1,\"y\":2}}", /* maxItems */
        "{\"name\":\"A\",\"tags\":[\"d\"],\"pos\":{\"x\":1,\"y\":2}}",                   /* enum */
        "{\"name\":\"A\",\"age\":1.5,\"tags\":[\"a\"],\"pos\":{\"x\":1,\"y\":2}}",       /* integer */
        "{\"name\":\"A\",\"tags\":[\"a\"],\"pos\":{\"x\":1}}",                           /* y required */
        "{\"name\":\"A\",\"tags\":[\"a\"],\"pos\":{\"x\":1,\"y\":2},\"extra\":1}",       /* not listed */
        "{\"name\":\"A\",\"kind\":\"cow\",\"tags\":[\"a\"],\"pos\":{\"x\":1,\"y\":2}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) ck_assert_msg(!accepts(s, bad[i]), "accepted %s", bad[i]);
    /* the shortest document is what min_len says */
    const char *shortest = "{\"name\":\"?\",\"tags\":[\"a\"],\"pos\":{\"x\":0,\"y\":0}}";
    ck_assert_int_eq(sasp_json_schema_min_len(s), (int)strlen(shortest));
    sasp_json_schema_free(s);
}
END_TEST

/* Numeric bounds: those the automaton keeps to (minimum 0; the safe-integer range zod sends) */
START_TEST(test_number_bounds)
{
    char err[256];
    sasp_json_schema *s = compile_text("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":0,"
                                       "\"maximum\":9007199254740991},\"x\":{\"type\":\"number\",\"minimum\":"
                                       "-9007199254740991,\"maximum\":9007199254740991}},\"required\":[\"n\",\"x\"]}",
                                       err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    ck_assert(accepts(s, "{\"n\":5,\"x\":-1.5}"));
    ck_assert(accepts(s, "{\"n\":0,\"x\":999999999999999.5}"));
    ck_assert(!accepts(s, "{\"n\":-1,\"x\":0}"));   /* below the minimum */
    ck_assert(!accepts(s, "{\"n\":1,\"x\":1e99}")); /* an exponent could pass the maximum */
    sasp_json_schema_free(s);
}
END_TEST

START_TEST(test_scalar_roots_and_unions)
{
    char err[256];
    sasp_json_schema *s = compile_text("{\"type\":\"integer\"}", err, sizeof err);
    ck_assert(accepts(s, "12") && accepts(s, "-3") && !accepts(s, "1.5") && !accepts(s, "\"1\""));
    sasp_json_schema_free(s);
    s = compile_text("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"array\",\"items\":{\"type\":\"integer\"}},{\"type\":\"null\"}]}",
                     err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    ck_assert(accepts(s, "\"x\"") && accepts(s, "[1,2]") && accepts(s, "null") && !accepts(s, "1"));
    sasp_json_schema_free(s);
    s = compile_text("{\"type\":\"string\",\"nullable\":true}", err, sizeof err);
    ck_assert(accepts(s, "\"x\"") && accepts(s, "null") && !accepts(s, "0"));
    sasp_json_schema_free(s);
    s = compile_text("{\"description\":\"anything\"}", err, sizeof err);
    ck_assert(accepts(s, "[{\"a\":[true]}]") && accepts(s, "\"s\"") && accepts(s, "3.25"));
    sasp_json_schema_free(s);
}
END_TEST

START_TEST(test_refusals_name_the_keyword)
{
    struct {
        const char *schema, *needle;
    } cases[] = {
        {"{\"type\":\"string\",\"pattern\":\"^a\"}", "\"pattern\""},
        {"{\"type\":\"integer\",\"minimum\":3}", "\"minimum\""},
        {"{\"type\":\"number\",\"exclusiveMinimum\":0}", "\"exclusiveMinimum\""},
        {"{\"type\":\"integer\",\"maximum\":100}", "\"maximum\""},
        {"{\"allOf\":[{\"type\":\"string\"}]}", "\"allOf\""},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"format\":\"email\",\"maxLength\":2,\"x-y\":1}}}", "\"x-y\""},
        {"{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}", "required property b"},
        {"{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", "differ in their JSON type"},
        {"{\"type\":\"array\",\"items\":[{\"type\":\"string\"}]}", "prefixItems"},
        {"{\"$ref\":\"#/$defs/a\",\"$defs\":{\"a\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/a\"}}}}", "recursive"},
        {"{\"type\":\"strung\"}", "unknown type"},
    };
    char err[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sasp_json_schema *s = compile_text(cases[i].schema, err, sizeof err);
        ck_assert_msg(s == NULL, "accepted %s", cases[i].schema);
        ck_assert_msg(strstr(err, cases[i].needle) != NULL, "%s: %s", cases[i].schema, err);
    }
}
END_TEST

/* ---- whatever the model prefers: random walks over the allowed bytes ---- */

/* Write a document byte by byte, each byte chosen at random (biased to some bytes, as a model is)
 * among those the automaton accepts and that leave it closable within the budget. */
static char *random_document(const sasp_json_schema *s, int budget, int bias)
{
    sasp_json_state st, tmp;
    js_init(&st, s);
    char *out = calloc((size_t)budget + 1, 1);
    int n = 0;
    while (!js_complete(&st) || (st.done == 0 && next_rand() % 4 == 0)) {
        if (st.done) break;
        ck_assert_msg(n < budget, "budget of %d bytes passed: %s", budget, out);
        unsigned char ok[256];
        int n_ok = 0;
        for (int b = 0; b < 256; b++) {
            tmp = st;
            if (js_feed(&tmp, (unsigned char)b) == 0 && js_min_close(&tmp) <= budget - n - 1) ok[n_ok++] = (unsigned char)b;
        }
        if (n_ok == 0) {
            ck_assert_msg(js_complete(&st), "stuck after %s", out);
            break;
        }
        unsigned char pick = ok[next_rand() % (unsigned)n_ok];
        if (bias && next_rand() % 3 == 0) /* a model that likes to go on: digits, letters, spaces */
            for (int i = 0; i < n_ok; i++)
                if (ok[i] == ' ' || ok[i] == 'a' || ok[i] == '7' || ok[i] == ',') pick = ok[i];
        ck_assert_int_eq(js_feed(&st, pick), 0);
        out[n++] = (char)pick;
    }
    return out;
}

static void check_random_documents(const char *schema_text, int budget)
{
    char err[256];
    sasp_json_schema *s = compile_text(schema_text, err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    json_t *schema = schema_text ? json_loads(schema_text, 0, NULL) : json_pack("{s:s}", "type", "object");
    for (int rep = 0; rep < 300; rep++) {
        char *doc = random_document(s, budget, rep % 2);
        json_error_t je;
        json_t *v = json_loads(doc, JSON_DECODE_ANY, &je);
        ck_assert_msg(v != NULL, "does not parse (%s): %s", je.text, doc);
        ck_assert_msg(validate(v, schema, schema), "does not validate: %s", doc);
        json_decref(v);
        free(doc);
    }
    json_decref(schema);
    sasp_json_schema_free(s);
}

START_TEST(test_random_walks_parse_and_validate)
{
    check_random_documents(NULL, 60);
    check_random_documents(SCHEMA_PERSON, 120);
    check_random_documents("{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":[\"number\",\"null\"]}},"
                           "\"required\":[\"v\"]},\"minItems\":2}",
                           50);
    check_random_documents("{\"type\":\"string\",\"minLength\":3}", 12);
}
END_TEST

/* From every state on a random walk, some byte brings the document one byte closer to its end:
 * js_min_close is exact, so a budget of js_min_close bytes always suffices. */
START_TEST(test_min_close_is_reachable)
{
    char err[256];
    sasp_json_schema *s = compile_text(SCHEMA_PERSON, err, sizeof err);
    for (int rep = 0; rep < 200; rep++) {
        sasp_json_state st, tmp;
        js_init(&st, s);
        int steps = (int)(next_rand() % 40);
        for (int k = 0; k < steps && !js_complete(&st); k++) {
            unsigned char ok[256];
            int n_ok = 0;
            for (int b = 0; b < 256; b++) {
                tmp = st;
                if (js_feed(&tmp, (unsigned char)b) == 0) ok[n_ok++] = (unsigned char)b;
            }
            ck_assert_int_gt(n_ok, 0);
            ck_assert_int_eq(js_feed(&st, ok[next_rand() % (unsigned)n_ok]), 0);
        }
        /* follow the shortest way out */
        int left = js_min_close(&st);
        while (left > 0 && !js_complete(&st)) {
            int found = 0;
            for (int b = 0; b < 256 && !found; b++) {
                tmp = st;
                if (js_feed(&tmp, (unsigned char)b) == 0 && js_min_close(&tmp) == left - 1) st = tmp, found = 1;
            }
            ck_assert_msg(found, "no byte brings min_close from %d to %d", left, left - 1);
            left--;
        }
        ck_assert(js_complete(&st) || left == 0);
    }
    sasp_json_schema_free(s);
}
END_TEST

/* ---- over a vocabulary ---- */

static sasp_tokenizer *load_tok(void)
{
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer/tokenizer.json", SASP_SRCDIR);
    sasp_tokenizer *t = sasp_tokenizer_load(path, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    return t;
}

START_TEST(test_token_masks_keep_documents_valid)
{
    sasp_tokenizer *tok = load_tok();
    sasp_token_table *tt = sasp_token_table_new(tok);
    int V = sasp_tokenizer_vocab_size(tok), eos = 0;
    float *logits = malloc((size_t)V * sizeof *logits);
    const char *schemas[] = {NULL, SCHEMA_PERSON};
    char err[256];
    for (int si = 0; si < 2; si++) {
        sasp_json_schema *s = compile_text(schemas[si], err, sizeof err);
        json_t *schema = schemas[si] ? json_loads(schemas[si], 0, NULL) : json_pack("{s:s}", "type", "object");
        for (int rep = 0; rep < 40; rep++) {
            int max_tokens = sasp_json_schema_min_len(s) + (int)(next_rand() % 40);
            sasp_constraint *c = sasp_constraint_json(s);
            char out[4096] = "";
            size_t n = 0;
            int ended = 0;
            for (int step = 0; step < max_tokens && !ended; step++) {
                for (int i = 0; i < V; i++) logits[i] = (float)(next_rand() % 1000) / 100.0f;
                int allowed = sasp_constraint_mask(c, tt, logits, max_tokens - step, eos);
                ck_assert_int_gt(allowed, 0);
                int best = 0;
                for (int i = 1; i < V; i++)
                    if (logits[i] > logits[best]) best = i;
                ck_assert(isfinite(logits[best]));
                if (best == eos) break;
                size_t len;
                const char *b = sasp_token_bytes(tok, best, &len);
                memcpy(out + n, b, len);
                n += len;
                ended = sasp_constraint_accept(c, tt, best);
            }
            json_error_t je;
            json_t *v = json_loads(out, JSON_DECODE_ANY, &je);
            ck_assert_msg(v != NULL, "max_tokens %d: does not parse (%s): %s", max_tokens, je.text, out);
            ck_assert_msg(validate(v, schema, schema), "does not validate: %s", out);
            json_decref(v);
            sasp_constraint_free(c);
        }
        json_decref(schema);
        sasp_json_schema_free(s);
    }
    free(logits);
    sasp_token_table_free(tt);
    sasp_tokenizer_free(tok);
}
END_TEST

START_TEST(test_token_healing)
{
    sasp_tokenizer *tok = load_tok();
    sasp_token_table *tt = sasp_token_table_new(tok);
    int V = sasp_tokenizer_vocab_size(tok);
    const char *prompts[] = {"def f(x):\n", "import os\nx = os.pa", "    retu", "a = [1, 2"};
    for (size_t pi = 0; pi < sizeof prompts / sizeof *prompts; pi++) {
        int *ids;
        int n = sasp_encode(tok, prompts[pi], strlen(prompts[pi]), 0, &ids);
        sasp_constraint *c;
        int keep = sasp_heal_prompt(tok, ids, n, &c);
        ck_assert_int_eq(keep, n - 1);
        ck_assert_ptr_nonnull(c);
        size_t rlen;
        const char *removed = sasp_token_bytes(tok, ids[n - 1], &rlen);
        float *logits = calloc((size_t)V, sizeof *logits);
        int allowed = sasp_constraint_mask(c, tt, logits, 16, 0);
        int count = 0;
        for (int id = 0; id < V; id++) {
            size_t len;
            const char *b = sasp_token_bytes(tok, id, &len);
            size_t m = len < rlen ? len : rlen;
            int want = len > 0 && !sasp_tokenizer_is_special(tok, id) && memcmp(b, removed, m) == 0;
            ck_assert_msg(want == isfinite(logits[id]), "prompt %zu, token %d", pi, id);
            count += want;
        }
        ck_assert_int_eq(allowed, count);
        ck_assert(isfinite(logits[ids[n - 1]])); /* the token itself is always allowed */
        /* a token that is a proper prefix of the removed bytes leaves the rest to reproduce */
        ck_assert(sasp_constraint_active(c));
        sasp_constraint_accept(c, tt, ids[n - 1]);
        ck_assert(!sasp_constraint_active(c));
        free(logits);
        sasp_constraint_free(c);
        free(ids);
    }
    /* not healed: a single token, or a special token at the end */
    int one[1] = {5}, special[2] = {5, 0};
    sasp_constraint *c;
    ck_assert_int_eq(sasp_heal_prompt(tok, one, 1, &c), 1);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(sasp_heal_prompt(tok, special, 2, &c), 2);
    ck_assert_ptr_null(c);
    sasp_token_table_free(tt);
    sasp_tokenizer_free(tok);
}
END_TEST

int main(void)
{
    const char *seed = getenv("SASP_TEST_SEED");
    rng_state = seed ? strtoull(seed, NULL, 10) : (uint64_t)time(NULL) * 2654435761u + 1;
    printf("check_constraint: seed %llu (SASP_TEST_SEED=%llu repeats it)\n", (unsigned long long)rng_state,
           (unsigned long long)rng_state);
    Suite *s = suite_create("constraint");
    TCase *tc = tcase_create("json");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_any_object);
    tcase_add_test(tc, test_schema_documents);
    tcase_add_test(tc, test_scalar_roots_and_unions);
    tcase_add_test(tc, test_number_bounds);
    tcase_add_test(tc, test_refusals_name_the_keyword);
    tcase_add_test(tc, test_random_walks_parse_and_validate);
    tcase_add_test(tc, test_min_close_is_reachable);
    tcase_add_test(tc, test_token_masks_keep_documents_valid);
    tcase_add_test(tc, test_token_healing);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
