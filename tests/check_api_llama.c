/* check_api_llama.c: the wire format of the editor-backend endpoints without a socket: llama.cpp's
 * /completion and /infill requests (fields, samplers, logit_bias forms, what is refused by name), the
 * fill-in-the-middle prompt (token order, extra chunks, healing of the token before the cursor, a
 * model without FIM tokens), suffix on /v1/completions and /api/generate, long prompts cut (the part
 * next to the cursor kept, whole blocks dropped so that the kept start stays put, the strict 400),
 * and llama.cpp's answers (stream chunks, the final object, timings, response_fields) and OpenAI's
 * usage with cached tokens, from synthetic events. Uses the tokenizers of tests/fixtures/tiny-fim
 * (with the FIM tokens) and tests/fixtures/tiny-model (without). */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "text/sampler.h"
#include "engine/scheduler.h"
#include "base/util.h"
#include "api_fixture.h"

static sasp_tokenizer *fim_tok, *plain_tok;
static api_limits fim, plain;
static int PRE, SUF, MID;

static void setup(void)
{
    fim_tok = load_tokenizer("tiny-fim");
    plain_tok = load_tokenizer("tiny-model");
    fim = (api_limits){fim_tok, 256, 515, 0, "tiny-fim"};
    plain = (api_limits){plain_tok, 256, 512, 0, "tiny-model"};
    PRE = sasp_tokenizer_lookup(fim_tok, "<|fim_prefix|>");
    SUF = sasp_tokenizer_lookup(fim_tok, "<|fim_suffix|>");
    MID = sasp_tokenizer_lookup(fim_tok, "<|fim_middle|>");
    ck_assert(PRE == 512 && SUF == 513 && MID == 514);
}

static void teardown(void)
{
    sasp_tokenizer_free(fim_tok);
    sasp_tokenizer_free(plain_tok);
}

static int parse(api_kind kind, const char *body, const api_limits *lim, api_request *r, api_error *e)
{
    memset(e, 0, sizeof *e);
    return api_parse(kind, body, strlen(body), lim, 1234, r, e);
}

/* The ids of text (special tokens as text), appended to out at *n. */
static void encode_into(const char *text, int *out, int *n)
{
    int *ids, k = sasp_encode(fim_tok, text, strlen(text), 0, &ids);
    memcpy(out + *n, ids, (size_t)k * sizeof *ids);
    *n += k;
    free(ids);
}

static void same_ids(const int *a, int na, const int *b, int nb, const char *what)
{
    ck_assert_msg(na == nb, "%s: %d ids against %d", what, na, nb);
    for (int i = 0; i < na; i++) ck_assert_msg(a[i] == b[i], "%s: id %d is %d, not %d", what, i, a[i], b[i]);
}

/* --- the fill-in-the-middle prompt --- */

START_TEST(test_infill_prompt_order)
{
    api_request r;
    api_error e;
    const char *body = "{\"input_prefix\": \"def f(x):\\n\", \"input_suffix\": \"\\nprint(f(1))\\n\", "
                       "\"prompt\": \"    ret\", \"token_healing\": false, \"input_extra\": [{\"filename\": \"a.py\", "
                       "\"text\": \"import os\\n\"}, {\"text\": \"X = 1\\n\"}]}";
    ck_assert_int_eq(parse(API_INFILL, body, &fim, &r, &e), 0);
    int want[256], n = 0, eot = 0;
    encode_into("import os\n", want, &n);
    want[n++] = eot;
    encode_into("X = 1\n", want, &n);
    want[n++] = eot;
    want[n++] = PRE;
    encode_into("def f(x):\n", want, &n);
    want[n++] = SUF;
    encode_into("\nprint(f(1))\n", want, &n);
    want[n++] = MID;
    encode_into("    ret", want, &n);
    ck_assert_int_eq(r.n_seqs, 1);
    same_ids(r.prompt[0], r.n_prompt[0], want, n, "extra, prefix, suffix, middle");
    ck_assert(r.infill && !r.text_prompt && !r.gen.token_healing);
    ck_assert(!r.heal_text || !r.heal_text[0]);
    ck_assert_int_eq(r.gen.max_tokens, 256); /* n_predict -1: until the context is full */
    api_request_free(&r);
}
END_TEST

/* Healing: the middle's last token (or, with no middle, the prefix's) leaves the prompt, and its bytes
 * are what the output must start with. */
START_TEST(test_infill_heals_the_cursor_token)
{
    api_request r;
    api_error e;
    int m[64], nm = 0;
    encode_into("    ret", m, &nm);
    ck_assert_int_eq(parse(API_INFILL, "{\"input_prefix\": \"def f(x):\\n\", \"input_suffix\": \"\", \"prompt\": "
                                       "\"    ret\"}",
                           &fim, &r, &e),
                     0);
    size_t len;
    const char *last = sasp_token_bytes(fim_tok, m[nm - 1], &len);
    ck_assert(r.heal_text && r.heal_text[0] && r.heal_len[0] == len && !memcmp(r.heal_text[0], last, len));
    ck_assert_int_eq(r.prompt[0][r.n_prompt[0] - 1], nm > 1 ? m[nm - 2] : MID);
    api_request_free(&r);
    int p[64], np = 0;
    encode_into("def f(x):\n    ", p, &np);
    ck_assert_int_eq(parse(API_INFILL, "{\"input_prefix\": \"def f(x):\\n    \", \"input_suffix\": \"y\"}", &fim, &r, &e), 0);
    last = sasp_token_bytes(fim_tok, p[np - 1], &len);
    ck_assert(r.heal_text[0] && r.heal_len[0] == len && !memcmp(r.heal_text[0], last, len));
    ck_assert_int_eq(r.prompt[0][r.n_prompt[0] - 1], MID);
    ck_assert_int_eq(r.prompt[0][np], SUF); /* the prefix lost its last token: SUF follows np - 1 of them + PRE */
    api_request_free(&r);
}
END_TEST

START_TEST(test_infill_rejects)
{
    static const struct {
        const char *body;
        const char *param;
    } bad[] = {
        {"{\"input_suffix\": \"\"}", "input_prefix"},
        {"{\"input_prefix\": \"\"}", "input_suffix"},
        {"{\"input_prefix\": 5, \"input_suffix\": \"\"}", "input_prefix"},
        {"{\"input_prefix\": \"\", \"input_suffix\": \"\", \"prompt\": [1]}", "prompt"},
        {"{\"input_prefix\": \"\", \"input_suffix\": \"\", \"input_extra\": {}}", "input_extra"},
        {"{\"input_prefix\": \"\", \"input_suffix\": \"\", \"input_extra\": [{\"filename\": \"a\"}]}", "input_extra"},
        {"{\"input_prefix\": \"\", \"input_suffix\": \"\", \"input_extra\": [{\"text\": \"a\", \"filename\": 1}]}",
         "input_extra"},
        {"{\"input_prefix\": \"\", \"input_suffix\": \"\", \"grammar\": \"root ::= x\"}", "grammar"},
        {"{\"input_prefix\": \"\", \"input_suffix\": \"\", \"n_discard\": 4}", "n_discard"},
        {"{\"input_prefix\": \"\", \"input_suffix\": \"\", \"samplers\": [\"top_k\", \"mirostat\"]}", "samplers"},
        {"{\"input_prefix\": \"\", \"input_suffix\": \"\", \"n_indent\": -1}", "n_indent"},
        {"{\"input_prefix\": \"\", \"input_suffix\": \"\", \"truncate\": 1}", "truncate"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        api_request r;
        api_error e;
        ck_assert_msg(parse(API_INFILL, bad[i].body, &fim, &r, &e) == -1, "accepted: %s", bad[i].body);
        ck_assert_msg(e.status == 400 && !strcmp(e.param, bad[i].param), "%s: %d '%s'", bad[i].body, e.status, e.param);
        api_request_free(&r);
    }
    /* a model without the FIM tokens: a 400 that says so, on /infill and for a suffix */
    static const struct {
        api_kind kind;
        const char *body;
        const char *param;
    } no_fim[] = {
        {API_INFILL, "{\"input_prefix\": \"a\", \"input_suffix\": \"b\"}", "input_prefix"},
        {API_COMPLETIONS, "{\"prompt\": \"a\", \"suffix\": \"b\"}", "suffix"},
        {API_GENERATE, "{\"prompt\": \"a\", \"suffix\": \"b\"}", "suffix"},
    };
    for (size_t i = 0; i < sizeof no_fim / sizeof *no_fim; i++) {
        api_request r;
        api_error e;
        ck_assert_int_eq(parse(no_fim[i].kind, no_fim[i].body, &plain, &r, &e), -1);
        ck_assert_str_eq(e.param, no_fim[i].param);
        ck_assert_msg(strstr(e.message, "<|fim_prefix|>") && strstr(e.message, "tiny-model"), "%s", e.message);
        api_request_free(&r);
    }
}
END_TEST

/* suffix on OpenAI's and Ollama's paths: the same prompt as /infill with prefix = prompt; each prompt
 * of /v1/completions its own; token ids, a context or echo cannot be combined with it. */
START_TEST(test_suffix_maps_to_infill)
{
    api_request a, b, c;
    api_error e;
    ck_assert_int_eq(parse(API_INFILL, "{\"input_prefix\": \"def f(\", \"input_suffix\": \"return 1\"}", &fim, &a, &e), 0);
    ck_assert_int_eq(parse(API_COMPLETIONS, "{\"prompt\": [\"def f(\", \"def f(\"], \"suffix\": \"return 1\", \"n\": 2}",
                           &fim, &b, &e),
                     0);
    ck_assert_int_eq(parse(API_GENERATE, "{\"prompt\": \"def f(\", \"suffix\": \"return 1\"}", &fim, &c, &e), 0);
    ck_assert_int_eq(b.n_seqs, 4);
    for (int i = 0; i < 4; i++) {
        same_ids(b.prompt[i], b.n_prompt[i], a.prompt[0], a.n_prompt[0], "/v1/completions with suffix");
        ck_assert(b.heal_text[i] && b.heal_len[i] == a.heal_len[0] && !memcmp(b.heal_text[i], a.heal_text[0], a.heal_len[0]));
    }
    same_ids(c.prompt[0], c.n_prompt[0], a.prompt[0], a.n_prompt[0], "/api/generate with suffix");
    ck_assert(!b.gen.token_healing && b.infill);
    api_request_free(&a), api_request_free(&b), api_request_free(&c);
    static const struct {
        api_kind kind;
        const char *body;
        const char *param;
    } bad[] = {
        {API_COMPLETIONS, "{\"prompt\": [1, 2], \"suffix\": \"x\"}", "suffix"},
        {API_COMPLETIONS, "{\"prompt\": \"a\", \"suffix\": \"x\", \"echo\": true}", "echo"},
        {API_GENERATE, "{\"prompt\": \"a\", \"context\": [1], \"suffix\": \"x\"}", "suffix"},
        {API_COMPLETIONS, "{\"prompt\": \"a\", \"suffix\": 3}", "suffix"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_msg(parse(bad[i].kind, bad[i].body, &fim, &a, &e) == -1, "accepted %s", bad[i].body);
        ck_assert_str_eq(e.param, bad[i].param);
        api_request_free(&a);
    }
}
END_TEST

/* --- long prompts --- */

/* A body of an /infill request whose prefix has n_lines lines of code (and its text, for encoding). */
static char *infill_body(int n_lines, const char *extra_line, char *prefix, size_t size)
{
    prefix[0] = 0;
    for (int i = 0; i < n_lines; i++) {
        size_t l = strlen(prefix);
        snprintf(prefix + l, size - l, "x%d = f(x%d)\n", i, i);
    }
    size_t l = strlen(prefix);
    snprintf(prefix + l, size - l, "%s", extra_line);
    json_t *j = json_pack("{s:s,s:s,s:b,s:[{s:s}]}", "input_prefix", prefix, "input_suffix",
                          "\nreturn y\nprint(1)\nprint(2)\nprint(3)\nprint(4)\nprint(5)\nprint(6)\nprint(7)\n",
                          "token_healing", 0, "input_extra", "text", "import os\nimport sys\nimport re\n");
    char *s = json_dumps(j, 0);
    json_decref(j);
    return s;
}

/* Cut to three quarters of the context: the extra context goes first, the suffix keeps its start,
 * the prefix its end (next to the cursor); n_dropped counts what went; typing at the cursor leaves the
 * kept start where it was (the next request shares its prefix); strict requests get the 400. */
START_TEST(test_infill_cut_keeps_the_cursor_side)
{
    api_limits small = fim;
    small.n_ctx = 64;
    char prefix[8192];
    api_request r, r2;
    api_error e;
    char *body = infill_body(40, "y = ", prefix, sizeof prefix);
    ck_assert_int_eq(parse(API_INFILL, body, &small, &r, &e), 0);
    int n = r.n_prompt[0], *ids = r.prompt[0];
    ck_assert_int_le(n, 48);
    ck_assert_int_eq(ids[0], PRE); /* the extra context went first */
    int p[4096], np = 0, s[256], ns = 0;
    encode_into(prefix, p, &np);
    encode_into("\nreturn y\nprint(1)\nprint(2)\nprint(3)\nprint(4)\nprint(5)\nprint(6)\nprint(7)\n", s, &ns);
    int at_suf = 0;
    while (ids[at_suf] != SUF) at_suf++;
    int kept = at_suf - 1; /* the prefix's end, next to the cursor */
    same_ids(ids + 1, kept, p + np - kept, kept, "the end of the prefix");
    int kept_s = n - 1 - (at_suf + 1);
    ck_assert_int_eq(ids[n - 1], MID);
    same_ids(ids + at_suf + 1, kept_s, s, kept_s, "the start of the suffix");
    int extra_n = 0, ex[64];
    encode_into("import os\nimport sys\nimport re\n", ex, &extra_n);
    ck_assert_int_eq(r.n_dropped, (extra_n + 1) + (np - kept) + (ns - kept_s));
    /* typing at the cursor, one character (here one token) at a time: the kept part starts at the same
     * token but when the prefix's growth crosses a block boundary (a quarter of its room) */
    int moved = 0, first = ids[1];
    for (int k = 1; k <= 12; k++) {
        char line[32];
        snprintf(line, sizeof line, "y = %.*s", k, "123456789012");
        char *body2 = infill_body(40, line, prefix, sizeof prefix);
        ck_assert_int_eq(parse(API_INFILL, body2, &small, &r2, &e), 0);
        moved += r2.prompt[0][1] != first;
        first = r2.prompt[0][1];
        api_request_free(&r2);
        free(body2);
    }
    ck_assert_int_le(moved, 2);
    api_request_free(&r);
    free(body);
    /* strict: beyond the context a 400; within it (though over three quarters) uncut */
    body = infill_body(40, "y = ", prefix, sizeof prefix);
    json_t *j = json_loads(body, 0, NULL);
    json_object_set_new(j, "truncate", json_false());
    char *strict = json_dumps(j, 0);
    ck_assert_int_eq(parse(API_INFILL, strict, &small, &r, &e), -1);
    ck_assert_str_eq(e.code, "context_length_exceeded");
    api_request_free(&r);
    free(strict);
    json_decref(j);
    free(body);
}
END_TEST

/* Plain prompts: the first n_keep tokens and the end stay; /completion and /api/generate cut by
 * default (Ollama keeps num_keep 4), /v1/completions only when asked (OpenAI's 400 otherwise). */
START_TEST(test_plain_cut)
{
    api_limits small = fim;
    small.n_ctx = 64;
    char ids_text[1024] = "";
    for (int i = 0; i < 100; i++) snprintf(ids_text + strlen(ids_text), sizeof ids_text - strlen(ids_text), "%s%d", i ? "," : "", 1 + i);
    api_request r;
    api_error e;
    char full[2200];
    snprintf(full, sizeof full, "{\"prompt\": [%s], \"n_keep\": 5}", ids_text);
    ck_assert_int_eq(parse(API_LLAMA_COMPLETION, full, &small, &r, &e), 0);
    int n = r.n_prompt[0];
    ck_assert_int_le(n, 48);
    for (int i = 0; i < 5; i++) ck_assert_int_eq(r.prompt[0][i], 1 + i);
    for (int i = 5; i < n; i++) ck_assert_int_eq(r.prompt[0][i], 100 - (n - i) + 1); /* the end, in order */
    ck_assert_int_eq(r.n_dropped, 100 - n);
    api_request_free(&r);
    static const struct {
        api_kind kind;
        const char *fields;
        int ok;
    } cases[] = {
        {API_LLAMA_COMPLETION, "\"truncate\": false", 0},
        {API_LLAMA_COMPLETION, "\"n_keep\": -1", 0}, /* keep it all: it cannot be cut */
        {API_COMPLETIONS, "\"n\": 1", 0},            /* OpenAI's 400 by default */
        {API_COMPLETIONS, "\"truncate\": true", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(full, sizeof full, "{\"prompt\": [%s], %s}", ids_text, cases[i].fields);
        ck_assert_int_eq(parse(cases[i].kind, full, &small, &r, &e), cases[i].ok ? 0 : -1);
        if (cases[i].ok) ck_assert_int_le(r.n_prompt[0], 48);
        else ck_assert_str_eq(e.code, "context_length_exceeded");
        api_request_free(&r);
    }
    /* Ollama: the prompt text, cut keeping num_keep (4) */
    char gen[4096] = "{\"prompt\": \"";
    for (int i = 0; i < 60; i++) snprintf(gen + strlen(gen), sizeof gen - strlen(gen), "w%d ", i);
    strcat(gen, "\", \"options\": {\"num_ctx\": 64}}");
    ck_assert_int_eq(parse(API_GENERATE, gen, &fim, &r, &e), 0);
    ck_assert_int_le(r.n_prompt[0], 48);
    ck_assert_int_gt(r.n_dropped, 0);
    api_request_free(&r);
}
END_TEST

/* --- llama.cpp's fields --- */

START_TEST(test_llama_completion_fields)
{
    api_request r;
    api_error e;
    ck_assert_int_eq(parse(API_LLAMA_COMPLETION, "{\"prompt\": [1, \"ab\", 2], \"samplers\": [\"top_k\", \"Top-P\", "
                                                 "\"infill\"], \"top_k\": 7, \"min_p\": 0.2, \"repeat_penalty\": 1.3, "
                                                 "\"n_predict\": 0, \"n_indent\": 4, \"t_max_predict_ms\": 250, "
                                                 "\"cache_prompt\": false, \"n_probs\": 3, \"id_slot\": 2, "
                                                 "\"t_max_prompt_ms\": 500, \"return_tokens\": true, \"response_fields\": "
                                                 "[\"content\", \"timings/prompt_n\"], \"logit_bias\": [[5, false], "
                                                 "[\"ab\", 1.5]], \"typical_p\": 1, \"dry_multiplier\": 0, "
                                                 "\"top_n_sigma\": -1}",
                           &fim, &r, &e),
                     0);
    int want[16] = {1}, n = 1;
    encode_into("ab", want, &n);
    want[n++] = 2;
    same_ids(r.prompt[0], r.n_prompt[0], want, n, "a mixed prompt");
    const sasp_sampling *p = &r.gen.sampling;
    /* the chain is what "samplers" lists, in its order; the parameters are as asked */
    ck_assert_int_eq(p->n_chain, 3);
    ck_assert(p->chain[0] == SASP_SMP_TOP_K && p->chain[1] == SASP_SMP_TOP_P && p->chain[2] == SASP_SMP_INFILL);
    ck_assert(p->top_k == 7 && p->min_p == 0.2f && p->repeat_penalty == 1.3f && p->typical_p == 1);
    ck_assert(r.gen.max_tokens == 0 && r.gen.n_indent == 4 && r.gen.t_max_predict_ms == 250 && r.gen.no_cache);
    ck_assert(r.n_probs == 3 && r.gen.logprobs && r.gen.top_logprobs == 3 && r.return_tokens);
    ck_assert_int_eq(r.n_response_fields, 2);
    ck_assert_ptr_nonnull(strstr(r.ignored, "id_slot"));
    ck_assert_ptr_nonnull(strstr(r.ignored, "t_max_prompt_ms"));
    ck_assert_int_ge(r.gen.n_logit_bias, 2);
    ck_assert(r.gen.logit_bias[0].id == 5 && isinf(r.gen.logit_bias[0].bias) && r.gen.logit_bias[0].bias < 0);
    ck_assert(r.gen.logit_bias[1].bias == 1.5f);
    api_request_free(&r);
    /* letters, n_predict -1 (the default: until the context is full) and beyond the context */
    ck_assert_int_eq(parse(API_LLAMA_COMPLETION, "{\"prompt\": \"x\", \"samplers\": \"kt\", \"n_predict\": 100000}",
                           &fim, &r, &e),
                     0);
    ck_assert(r.gen.sampling.n_chain == 2 && r.gen.sampling.chain[0] == SASP_SMP_TOP_K &&
              r.gen.sampling.chain[1] == SASP_SMP_TEMPERATURE && r.gen.max_tokens == 256);
    ck_assert(r.gen.token_healing && !r.gen.no_cache);
    api_request_free(&r);
    static const struct {
        const char *body;
        const char *param;
    } bad[] = {
        {"{}", "prompt"},
        {"{\"prompt\": [\"a\", \"b\"]}", "prompt"},
        {"{\"prompt\": [[1], [2]]}", "prompt"},
        {"{\"prompt\": [1, {}]}", "prompt"},
        {"{\"prompt\": \"x\", \"n_predict\": -2}", "n_predict"},
        {"{\"prompt\": \"x\", \"n_probs\": 21}", "n_probs"},
        {"{\"prompt\": \"x\", \"samplers\": [\"nope\"]}", "samplers"},
        {"{\"prompt\": \"x\", \"samplers\": [\"adaptive_p\"]}", "samplers"},
        {"{\"prompt\": \"x\", \"samplers\": 3}", "samplers"},
        {"{\"prompt\": \"x\", \"samplers\": \"ka\"}", "samplers"},
        {"{\"prompt\": \"x\", \"samplers\": \"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\"}", "samplers"},
        {"{\"prompt\": \"x\", \"dry_multiplier\": -0.8}", "dry_multiplier"},
        {"{\"prompt\": \"x\", \"dry_base\": \"2\"}", "dry_base"},
        {"{\"prompt\": \"x\", \"dry_allowed_length\": -1}", "dry_allowed_length"},
        {"{\"prompt\": \"x\", \"dry_penalty_last_n\": -2}", "dry_penalty_last_n"},
        {"{\"prompt\": \"x\", \"dry_sequence_breakers\": []}", "dry_sequence_breakers"},
        {"{\"prompt\": \"x\", \"dry_sequence_breakers\": \"\\n\"}", "dry_sequence_breakers"},
        {"{\"prompt\": \"x\", \"dry_sequence_breakers\": [1]}", "dry_sequence_breakers"},
        {"{\"prompt\": \"x\", \"typical_p\": 1.5}", "typical_p"},
        {"{\"prompt\": \"x\", \"xtc_probability\": 2}", "xtc_probability"},
        {"{\"prompt\": \"x\", \"xtc_threshold\": -0.1}", "xtc_threshold"},
        {"{\"prompt\": \"x\", \"min_keep\": -1}", "min_keep"},
        {"{\"prompt\": \"x\", \"dynatemp_range\": -1}", "dynatemp_range"},
        {"{\"prompt\": \"x\", \"top_n_sigma\": \"1\"}", "top_n_sigma"},
        {"{\"prompt\": \"x\", \"post_sampling_probs\": 1}", "post_sampling_probs"},
        {"{\"prompt\": \"x\", \"mirostat\": 2}", "mirostat"},
        {"{\"prompt\": \"x\", \"n_cmpl\": 2}", "n_cmpl"},
        {"{\"prompt\": \"x\", \"lora\": [{\"id\": 0, \"scale\": 1}]}", "lora"},
        {"{\"prompt\": \"x\", \"logit_bias\": [[1]]}", "logit_bias"},
        {"{\"prompt\": \"x\", \"logit_bias\": [[600, 1]]}", "logit_bias"},
        {"{\"prompt\": \"x\", \"response_fields\": [1]}", "response_fields"},
        {"{\"prompt\": \"x\", \"json_schema\": 1}", "json_schema"},
        {"{\"prompt\": \"x\", \"n_keep\": -2}", "n_keep"},
        {"{\"prompt\": \"x\", \"cache_prompt\": \"yes\"}", "cache_prompt"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_msg(parse(API_LLAMA_COMPLETION, bad[i].body, &fim, &r, &e) == -1, "accepted: %s", bad[i].body);
        ck_assert_msg(e.status == 400 && !strcmp(e.param, bad[i].param), "%s: %d '%s'", bad[i].body, e.status, e.param);
        api_request_free(&r);
    }
    /* cache_prompt on every generation endpoint */
    ck_assert_int_eq(parse(API_COMPLETIONS, "{\"prompt\": \"x\", \"cache_prompt\": false}", &fim, &r, &e), 0);
    ck_assert(r.gen.no_cache);
    api_request_free(&r);
}
END_TEST

/* llama.cpp's sampler fields, on /completion and as extra fields of OpenAI's endpoints: each read,
 * DRY's breakers as strings (empty ones skipped), dry_base below 1 the default; too many breaker bytes
 * are refused by name. */
START_TEST(test_llama_sampler_fields)
{
    api_request r;
    api_error e;
    ck_assert_int_eq(parse(API_LLAMA_COMPLETION, "{\"prompt\": \"x\", \"dry_multiplier\": 0.8, \"dry_base\": 0.5, "
                                                 "\"dry_allowed_length\": 3, \"dry_penalty_last_n\": -1, "
                                                 "\"dry_sequence_breakers\": [\"\\n\", \"\", \"def\"], \"typical_p\": 0.9, "
                                                 "\"top_n_sigma\": 1.5, \"xtc_probability\": 0.5, \"xtc_threshold\": 0.2, "
                                                 "\"dynatemp_range\": 0.3, \"dynatemp_exponent\": 2, \"min_keep\": 2, "
                                                 "\"samplers\": [\"dry\", \"xtc\", \"temp\"], \"n_probs\": 2, "
                                                 "\"post_sampling_probs\": true}",
                           &fim, &r, &e),
                     0);
    const sasp_sampling *p = &r.gen.sampling;
    ck_assert(p->dry_multiplier == 0.8f && p->dry_base == 1.75f && p->dry_allowed_length == 3 &&
              p->dry_penalty_last_n == -1);
    ck_assert_int_eq(p->n_dry_breakers, 2);
    size_t len;
    const char *b = sasp_sampling_breaker(p, 1, &len);
    ck_assert(len == 3 && !memcmp(b, "def", 3));
    ck_assert(p->typical_p == 0.9f && p->top_n_sigma == 1.5f && p->xtc_probability == 0.5f && p->xtc_threshold == 0.2f);
    ck_assert(p->dynatemp_range == 0.3f && p->dynatemp_exponent == 2 && p->min_keep == 2);
    ck_assert(p->n_chain == 3 && p->chain[0] == SASP_SMP_DRY && p->chain[1] == SASP_SMP_XTC &&
              p->chain[2] == SASP_SMP_TEMPERATURE);
    ck_assert(r.gen.post_sampling_probs && r.n_probs == 2);
    api_request_free(&r);
    /* OpenAI's endpoints take them as extra fields, llama.cpp's way */
    ck_assert_int_eq(parse(API_COMPLETIONS, "{\"prompt\": \"x\", \"dry_multiplier\": 0.5, \"samplers\": \"edkt\", "
                                            "\"typical_p\": 0.7}",
                           &fim, &r, &e),
                     0);
    ck_assert(r.gen.sampling.dry_multiplier == 0.5f && r.gen.sampling.n_chain == 4 && r.gen.sampling.typical_p == 0.7f);
    api_request_free(&r);
    char body[2048] = "{\"prompt\": \"x\", \"dry_sequence_breakers\": [";
    for (int i = 0; i < 20; i++) strcat(body, i ? ", \"0123456789012345678901234567890123456789\"" : "\"x\"");
    strcat(body, "]}");
    ck_assert_int_eq(parse(API_LLAMA_COMPLETION, body, &fim, &r, &e), -1);
    ck_assert_str_eq(e.param, "dry_sequence_breakers");
    api_request_free(&r);
}
END_TEST

/* --- answers --- */

static sasp_event ev_tokens(int index, const char *text, int id)
{
    sasp_event ev;
    memset(&ev, 0, sizeof ev);
    ev.index = index;
    ev.text = strdup(text);
    ev.len = strlen(text);
    ev.ids = malloc(sizeof *ev.ids);
    ev.ids[0] = id;
    ev.n_ids = 1;
    ev.slot = 1;
    ev.prompt_tokens = 9;
    return ev;
}

/* The last event: a stop string ended it, 6 of its 9 prompt tokens came from the cache, 2 were cut. */
static sasp_event ev_last(int index)
{
    sasp_event ev = ev_tokens(index, "", 9);
    ev.done = 1;
    ev.finish_reason = "stop";
    ev.end = SASP_END_WORD;
    ev.stop_word = strdup("\n\n");
    ev.completion_tokens = 3;
    ev.cached_tokens = 6;
    ev.dropped_tokens = 2;
    ev.total_ns = 9000000, ev.prompt_ns = 3000000, ev.eval_ns = 6000000;
    return ev;
}

START_TEST(test_write_llama_final)
{
    api_request r;
    api_error e;
    ck_assert_int_eq(parse(API_INFILL, "{\"input_prefix\": \"a\", \"input_suffix\": \"b\", \"n_predict\": 3, "
                                       "\"return_tokens\": true, \"stop\": [\"\\n\\n\"]}",
                           &fim, &r, &e),
                     0);
    api_out *o = api_out_new(&r, "tiny-fim", fim_tok, 1700000000);
    sasp_event evs[] = {ev_tokens(0, "x", 7), ev_tokens(0, "\n", 8), ev_last(0)};
    char *text = feed(o, evs, 3);
    json_t *j = json_loads(text, 0, NULL);
    ck_assert_msg(j != NULL, "%s", text);
    ck_assert_str_eq(json_string_value(json_object_get(j, "content")), "x\n");
    ck_assert_int_eq(json_array_size(json_object_get(j, "tokens")), 3);
    ck_assert(json_is_true(json_object_get(j, "stop")) && json_is_true(json_object_get(j, "has_new_line")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "stop_type")), "word");
    ck_assert_str_eq(json_string_value(json_object_get(j, "stopping_word")), "\n\n");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "id_slot")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "tokens_evaluated")), 9);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "tokens_predicted")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "tokens_cached")), 6);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "tokens_dropped")), 2);
    ck_assert(json_is_true(json_object_get(j, "truncated")));
    json_t *t = json_object_get(j, "timings");
    ck_assert_int_eq(json_integer_value(json_object_get(t, "cache_n")), 6);
    ck_assert_int_eq(json_integer_value(json_object_get(t, "prompt_n")), 3);
    ck_assert(fabs(json_number_value(json_object_get(t, "prompt_ms")) - 3.0) < 1e-9);
    ck_assert_int_eq(json_integer_value(json_object_get(t, "predicted_n")), 3);
    ck_assert(fabs(json_number_value(json_object_get(t, "predicted_per_second")) - 500.0) < 1e-6);
    json_t *gs = json_object_get(j, "generation_settings");
    ck_assert_int_eq(json_integer_value(json_object_get(gs, "n_predict")), 3);
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(j, "prompt")), "<|fim_middle|>"));
    json_decref(j);
    free(text);
    api_out_free(o);
    api_request_free(&r);
}
END_TEST

/* Streamed: a chunk per piece of text with its tokens, then the final object, no [DONE];
 * response_fields pick fields of the final object, "a/b" unnested under its path. */
START_TEST(test_write_llama_stream_and_fields)
{
    api_request r;
    api_error e;
    ck_assert_int_eq(parse(API_LLAMA_COMPLETION, "{\"prompt\": \"a\", \"stream\": true, \"response_fields\": "
                                                 "[\"content\", \"timings/prompt_n\", \"tokens_cached\", \"nope/x\"]}",
                           &fim, &r, &e),
                     0);
    api_out *o = api_out_new(&r, "tiny-fim", fim_tok, 1700000000);
    sasp_event evs[] = {ev_tokens(0, "x", 7), ev_last(0)};
    char *text = feed(o, evs, 2);
    ck_assert_ptr_null(strstr(text, "[DONE]"));
    char *second = strstr(text + 1, "data: ");
    ck_assert(!strncmp(text, "data: ", 6) && second);
    json_t *chunk = json_loadb(text + 6, (size_t)(second - text - 6), 0, NULL);
    ck_assert_str_eq(json_string_value(json_object_get(chunk, "content")), "x");
    ck_assert(json_is_false(json_object_get(chunk, "stop")));
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(chunk, "tokens"), 0)), 7);
    json_t *last = json_loads(second + 6, JSON_DISABLE_EOF_CHECK, NULL);
    ck_assert_int_eq(json_object_size(last), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(last, "timings/prompt_n")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(last, "tokens_cached")), 6);
    ck_assert_str_eq(json_string_value(json_object_get(last, "content")), "");
    json_decref(chunk), json_decref(last);
    free(text);
    api_out_free(o);
    api_request_free(&r);
}
END_TEST

/* generation_settings reports every sampler field and the chain in llama.cpp's names;
 * post_sampling_probs writes "prob" and "top_probs" (probabilities, not logs). */
START_TEST(test_write_llama_sampling)
{
    api_request r;
    api_error e;
    ck_assert_int_eq(parse(API_LLAMA_COMPLETION, "{\"prompt\": \"a\", \"n_probs\": 2, \"post_sampling_probs\": true, "
                                                 "\"dry_multiplier\": 0.8, \"samplers\": \"dkt\"}",
                           &fim, &r, &e),
                     0);
    api_out *o = api_out_new(&r, "tiny-fim", fim_tok, 1700000000);
    sasp_event evs[] = {ev_tokens(0, "x", 7), ev_last(0)};
    evs[0].info = calloc(1, sizeof *evs[0].info);
    evs[0].info[0] = (sasp_token_info){.id = 7, .logprob = logf(0.75f), .n_top = 2, .top = {{7, logf(0.75f)}, {8, logf(0.25f)}}};
    char *text = feed(o, evs, 2);
    json_t *j = json_loads(text, 0, NULL), *gs = json_object_get(j, "generation_settings");
    ck_assert_msg(j != NULL, "%s", text);
    static const char *const fields[] = {"temperature", "dynatemp_range", "dynatemp_exponent", "top_k", "top_p",
                                         "min_p", "top_n_sigma", "xtc_probability", "xtc_threshold", "typical_p",
                                         "min_keep", "repeat_last_n", "repeat_penalty", "presence_penalty",
                                         "frequency_penalty", "dry_multiplier", "dry_base", "dry_allowed_length",
                                         "dry_penalty_last_n", "dry_sequence_breakers", "n_probs",
                                         "post_sampling_probs", "samplers"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        ck_assert_msg(json_object_get(gs, fields[i]) != NULL, "generation_settings lacks %s", fields[i]);
    json_t *smp = json_object_get(gs, "samplers"), *brk = json_object_get(gs, "dry_sequence_breakers");
    ck_assert_int_eq(json_array_size(smp), 3);
    ck_assert_str_eq(json_string_value(json_array_get(smp, 0)), "dry");
    ck_assert_str_eq(json_string_value(json_array_get(smp, 1)), "top_k");
    ck_assert_str_eq(json_string_value(json_array_get(smp, 2)), "temperature");
    ck_assert_int_eq(json_array_size(brk), 4);
    ck_assert_str_eq(json_string_value(json_array_get(brk, 0)), "\n");
    ck_assert(fabs(json_number_value(json_object_get(gs, "dry_multiplier")) - 0.8) < 1e-6);
    json_t *pr = json_array_get(json_object_get(j, "completion_probabilities"), 0);
    ck_assert(fabs(json_number_value(json_object_get(pr, "prob")) - 0.75) < 1e-6 && !json_object_get(pr, "logprob"));
    json_t *top = json_object_get(pr, "top_probs");
    ck_assert(json_array_size(top) == 2 && !json_object_get(pr, "top_logprobs"));
    ck_assert(fabs(json_number_value(json_object_get(json_array_get(top, 1), "prob")) - 0.25) < 1e-6);
    json_decref(j);
    free(text);
    api_out_free(o);
    api_request_free(&r);
}
END_TEST

/* OpenAI's usage reports the cached prompt tokens, and the cut ones when prompts were cut. */
START_TEST(test_write_openai_usage_cache)
{
    api_request r;
    api_error e;
    ck_assert_int_eq(parse(API_COMPLETIONS, "{\"prompt\": \"a\", \"suffix\": \"b\"}", &fim, &r, &e), 0);
    r.n_dropped = 2;
    api_out *o = api_out_new(&r, "tiny-fim", fim_tok, 1700000000);
    sasp_event evs[] = {ev_last(0)};
    char *text = feed(o, evs, 1);
    json_t *j = json_loads(text, 0, NULL), *u = json_object_get(j, "usage");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens")), 6);
    ck_assert_int_eq(json_integer_value(json_object_get(u, "prompt_tokens_dropped")), 2);
    json_decref(j);
    free(text);
    api_out_free(o);
    api_request_free(&r);
}
END_TEST

/* /slots and /props objects. */
START_TEST(test_slot_objects)
{
    sasp_slot_info s = {.id = 2, .state = "generating", .n_prompt = 30, .n_past = 35, .n_generated = 5, .n_ctx = 256, .n_cached = 35, .n_reused = 24, .max_tokens = 16, .task = 7};
    sasp_sampling_defaults(&s.sampling);
    json_t *j = api_slot_json(&s);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "id")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "id_task")), 7);
    ck_assert(json_is_true(json_object_get(j, "is_processing")));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "n_reused")), 24);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "next_token"), "n_remain")), 11);
    ck_assert(json_is_object(json_object_get(j, "params")));
    json_decref(j);
    j = api_llama_default_settings(256);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "n_ctx")), 256);
    ck_assert(fabs(json_number_value(json_object_get(json_object_get(j, "params"), "temperature")) - 0.8) < 1e-6);
    json_decref(j);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("api_llama");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_infill_prompt_order);
    tcase_add_test(tc, test_infill_heals_the_cursor_token);
    tcase_add_test(tc, test_infill_rejects);
    tcase_add_test(tc, test_suffix_maps_to_infill);
    tcase_add_test(tc, test_infill_cut_keeps_the_cursor_side);
    tcase_add_test(tc, test_plain_cut);
    tcase_add_test(tc, test_llama_completion_fields);
    tcase_add_test(tc, test_llama_sampler_fields);
    tcase_add_test(tc, test_write_llama_sampling);
    tcase_add_test(tc, test_write_llama_final);
    tcase_add_test(tc, test_write_llama_stream_and_fields);
    tcase_add_test(tc, test_write_openai_usage_cache);
    tcase_add_test(tc, test_slot_objects);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
