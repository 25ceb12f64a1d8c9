/* check_api.c: sasp-server's wire format without a socket: stop-string scanning (against a brute-force
 * reference on random strings), UTF-8 validation, request parsing (defaults, prompt forms, every
 * rejected input with its field), the chat template, and the SSE / NDJSON / JSON writers fed with
 * synthetic events. Uses the tokenizer of tests/fixtures/tiny-model. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "text/sampler.h"
#include "engine/scheduler.h"
#include "api_fixture.h"

static sasp_tokenizer *tok;
static api_limits lim;

static void setup(void)
{
    tok = load_tokenizer("tiny-model");
    lim = (api_limits){tok, 64, 512, 0, "tiny"};
}

static void teardown(void) { sasp_tokenizer_free(tok); }

/* --- stop strings --- */

/* The obvious definition: earliest occurrence of any stop string; otherwise hold back the longest
 * tail of buf that is a proper prefix of some stop string. */
static int ref_scan(const char *buf, size_t n, char *const *stops, int ns, size_t *cut)
{
    size_t best = (size_t)-1;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < ns; k++) {
            size_t l = strlen(stops[k]);
            if (l && i + l <= n && memcmp(buf + i, stops[k], l) == 0 && i < best) best = i;
        }
    if (best != (size_t)-1) {
        *cut = best;
        return 1;
    }
    size_t hold = 0;
    for (int k = 0; k < ns; k++) {
        size_t l = strlen(stops[k]);
        for (size_t h = 1; h < l && h <= n; h++)
            if (memcmp(buf + n - h, stops[k], h) == 0 && h > hold) hold = h;
    }
    *cut = n - hold;
    return 0;
}

START_TEST(test_stop_scan_examples)
{
    char *stops[] = {"world", "\n\n", "wxyz"};
    size_t cut;
    ck_assert_int_eq(sasp_stop_scan("hello wor", 9, stops, 3, &cut), 0);
    ck_assert_uint_eq(cut, 6); /* "wor" could start "world" */
    ck_assert_int_eq(sasp_stop_scan("hello world!", 12, stops, 3, &cut), 1);
    ck_assert_uint_eq(cut, 6);
    ck_assert_int_eq(sasp_stop_scan("a\n\nworld", 8, stops, 3, &cut), 1);
    ck_assert_uint_eq(cut, 1); /* the earliest of two */
    ck_assert_int_eq(sasp_stop_scan("abc\n", 4, stops, 3, &cut), 0);
    ck_assert_uint_eq(cut, 3);
    ck_assert_int_eq(sasp_stop_scan("w", 1, stops, 3, &cut), 0);
    ck_assert_uint_eq(cut, 0);
    ck_assert_int_eq(sasp_stop_scan("abc", 3, stops, 0, &cut), 0);
    ck_assert_uint_eq(cut, 3);
    char *empty[] = {""};
    ck_assert_int_eq(sasp_stop_scan("abc", 3, empty, 1, &cut), 0);
    ck_assert_uint_eq(cut, 3);
}
END_TEST

START_TEST(test_stop_scan_random)
{
    sasp_rng r;
    sasp_rng_seed(&r, 77);
    char buf[32], s0[8], s1[8], s2[8];
    char *stops[3] = {s0, s1, s2};
    for (int trial = 0; trial < 20000; trial++) {
        size_t n = sasp_rng_next(&r) % 20;
        for (size_t i = 0; i < n; i++) buf[i] = "abc"[sasp_rng_next(&r) % 3];
        int ns = (int)(sasp_rng_next(&r) % 4);
        for (int k = 0; k < ns; k++) {
            size_t l = sasp_rng_next(&r) % 5;
            for (size_t i = 0; i < l; i++) stops[k][i] = "abc"[sasp_rng_next(&r) % 3];
            stops[k][l] = 0;
        }
        size_t c1, c2;
        int f1 = sasp_stop_scan(buf, n, stops, ns, &c1), f2 = ref_scan(buf, n, stops, ns, &c2);
        ck_assert_int_eq(f1, f2);
        ck_assert_uint_eq(c1, c2);
    }
}
END_TEST

/* --- UTF-8 --- */

START_TEST(test_utf8)
{
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"", 1},
        {"plain", 1},
        {"caf\xc3\xa9", 1},
        {"\xe6\x97\xa5\xe6\x9c\xac", 1},
        {"\xf0\x9f\x98\x80", 1},
        {"\xf4\x8f\xbf\xbf", 1}, /* U+10FFFF */
        {"\xc3", 0},
        {"\xe6\x97", 0}, /* truncated */
        {"\xc0\xaf", 0},
        {"\xe0\x80\xaf", 0},     /* overlong */
        {"\xed\xa0\x80", 0},     /* a surrogate */
        {"\xf4\x90\x80\x80", 0}, /* past U+10FFFF */
        {"\x80", 0},
        {"\xff", 0},
        {"a\xc3(", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        ck_assert_msg(api_utf8_valid(cases[i].s, strlen(cases[i].s)) == cases[i].ok, "case %zu", i);
}
END_TEST

/* --- parsing --- */

static int parse(api_kind kind, const char *body, api_request *r, api_error *e)
{
    memset(e, 0, sizeof *e);
    return api_parse(kind, body, strlen(body), &lim, 1234, r, e);
}

START_TEST(test_parse_defaults_and_forms)
{
    api_request r;
    api_error e;
    ck_assert_int_eq(parse(API_COMPLETIONS, "{\"prompt\": \"The caf\\u00e9\", \"unknown\": [1, {}]}", &r, &e), 0);
    ck_assert_int_eq(r.n_seqs, 1);
    ck_assert_int_eq(r.gen.max_tokens, 16);
    ck_assert_int_eq(r.stream, 0);
    ck_assert_float_eq_tol(r.gen.sampling.temperature, 0.8f, 1e-6);
    ck_assert_int_eq(r.gen.sampling.top_k, 40);
    ck_assert_uint_eq(r.gen.sampling.seed, 1234); /* no seed: the random one given */
    int *ids;
    int n = sasp_encode(tok, "The caf\xc3\xa9", strlen("The caf\xc3\xa9"), 1, &ids);
    ck_assert_int_eq(r.n_prompt[0], n);
    ck_assert_mem_eq(r.prompt[0], ids, (size_t)n * sizeof *ids);
    free(ids);
    ck_assert_str_eq(r.prompt_text[0], "The caf\xc3\xa9");
    api_request_free(&r);

    ck_assert_int_eq(parse(API_COMPLETIONS, "{\"prompt\": [\"a\", \"bc\"], \"n\": 3, \"seed\": 9, \"max_tokens\": 64, "
                                            "\"stop\": \"x\", \"stream\": true, \"stream_options\": {\"include_usage\": true}}",
                           &r, &e),
                     0);
    ck_assert_int_eq(r.n_seqs, 6);
    ck_assert_int_eq(r.n_choices, 3);
    ck_assert_uint_eq(r.seed_base, 9);
    ck_assert_int_eq(r.gen.max_tokens, 64);
    ck_assert_int_eq(r.gen.n_stop, 1);
    ck_assert_str_eq(r.gen.stop[0], "x");
    ck_assert_int_eq(r.stream, 1);
    ck_assert_int_eq(r.include_usage, 1);
    ck_assert_str_eq(r.prompt_text[2], "a");
    ck_assert_str_eq(r.prompt_text[3], "bc");
    api_request_free(&r);

    ck_assert_int_eq(parse(API_COMPLETIONS, "{\"prompt\": [[1, 2], [3]], \"logprobs\": 3, \"echo\": true}", &r, &e), 0);
    ck_assert_int_eq(r.n_seqs, 2);
    ck_assert_int_eq(r.n_prompt[0], 2);
    ck_assert_int_eq(r.prompt[1][0], 3);
    ck_assert_int_eq(r.gen.logprobs, 1);
    ck_assert_int_eq(r.gen.top_logprobs, 3);
    ck_assert_int_eq(r.gen.prompt_logprobs, 1);
    api_request_free(&r);

    /* an empty prompt is the BOS token */
    ck_assert_int_eq(parse(API_COMPLETIONS, "{\"prompt\": \"\"}", &r, &e), 0);
    ck_assert_int_eq(r.n_prompt[0], 1);
    ck_assert_int_eq(r.prompt[0][0], 0);
    api_request_free(&r);

    /* chat: the template and its stop strings; the default length is the context */
    ck_assert_int_eq(parse(API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stop\": [\"END\"]}",
                           &r, &e),
                     0);
    ck_assert_str_eq(r.prompt_text[0], "User: hi\nAssistant:");
    ck_assert_int_eq(r.gen.n_stop, 3);
    ck_assert_str_eq(r.gen.stop[0], "END");
    ck_assert_str_eq(r.gen.stop[1], "\nUser:");
    ck_assert_int_eq(r.gen.max_tokens, 64);
    api_request_free(&r);

    /* Ollama: streams by default, options override, -1 means the whole context, context prepended */
    ck_assert_int_eq(parse(API_GENERATE, "{\"prompt\": \"hi\", \"context\": [5, 6], \"options\": {\"num_predict\": -1, "
                                         "\"temperature\": 0, \"seed\": 3, \"stop\": [\"q\"]}}",
                           &r, &e),
                     0);
    ck_assert_int_eq(r.stream, 1);
    ck_assert_int_eq(r.gen.max_tokens, 64);
    ck_assert_float_eq(r.gen.sampling.temperature, 0);
    ck_assert_uint_eq(r.seed_base, 3);
    ck_assert_int_eq(r.prompt[0][0], 5);
    ck_assert_int_eq(r.prompt[0][1], 6);
    ck_assert_int_eq(r.gen.n_stop, 1);
    ck_assert_int_eq(r.empty, 0);
    api_request_free(&r);
    ck_assert_int_eq(parse(API_GENERATE, "{\"model\": \"m\"}", &r, &e), 0);
    ck_assert_int_eq(r.empty, 1);
    api_request_free(&r);
}
END_TEST

/* Ollama's keep_alive: Go durations, seconds, negative for ever; read before the model is loaded with
 * whether the request asks for nothing (only loads or unloads). */
START_TEST(test_keep_alive)
{
    static const struct {
        const char *text;
        int64_t ns;
    } ok[] = {
        {"5m", 300000000000LL}, {"1h30m", 5400000000000LL}, {"2.5s", 2500000000LL}, {"300ms", 300000000LL}, {"0", 0}, {"0s", 0}, {"300", 300000000000LL}, {"-1", -1}, {"-1m", -1}, {"1h0m0s", 3600000000000LL}, {"10us", 10000}, {"7ns", 7}};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        int64_t ns = 12345;
        ck_assert_msg(api_parse_keep_alive(ok[i].text, &ns) == 0, "%s", ok[i].text);
        ck_assert_msg(ns == ok[i].ns, "%s: %lld", ok[i].text, (long long)ns);
    }
    static const char *const bad[] = {"", "m", "5x", "5 m", "five", "1.5", "-", "5m3", "m5"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t ns;
        ck_assert_msg(api_parse_keep_alive(bad[i], &ns) == -1, "'%s' parsed", bad[i]);
    }
    static const struct {
        const char *body;
        int chat, rc, empty;
        int64_t ns;
    } bodies[] = {
        {"{\"model\": \"m\", \"keep_alive\": 0}", 0, 1, 1, 0},
        {"{\"model\": \"m\", \"prompt\": \"\", \"keep_alive\": \"5m\"}", 0, 1, 1, 300000000000LL},
        {"{\"model\": \"m\", \"prompt\": \"x\", \"keep_alive\": -1}", 0, 1, 0, -1},
        {"{\"model\": \"m\", \"context\": [1], \"keep_alive\": 0}", 0, 1, 0, 0},
        {"{\"model\": \"m\", \"keep_alive\": 2.5}", 0, 1, 1, 2500000000LL},
        {"{\"model\": \"m\", \"messages\": [], \"keep_alive\": 0}", 1, 1, 1, 0},
        {"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", 1, 0, 0, 7},
        {"{\"model\": \"m\"}", 0, 0, 1, 7},
        {"{\"keep_alive\": \"soon\"}", 0, -1, 1, 7},
        {"{\"keep_alive\": [1]}", 1, -1, 1, 7},
        {"not json", 0, 0, 0, 7}};
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        int64_t ns = 7;
        int empty = -1;
        api_error e = {0};
        int rc = api_ollama_keep_alive(bodies[i].body, strlen(bodies[i].body), bodies[i].chat, &ns, &empty, &e);
        ck_assert_msg(rc == bodies[i].rc && empty == bodies[i].empty && ns == bodies[i].ns, "%s: rc %d empty %d ns %lld",
                      bodies[i].body, rc, empty, (long long)ns);
        if (rc < 0) ck_assert(e.status == 400 && strstr(e.message, "keep_alive"));
    }
}
END_TEST

START_TEST(test_parse_rejects)
{
    static const struct {
        api_kind kind;
        const char *body;
        int status;
        const char *param;
    } bad[] = {
        {API_COMPLETIONS, "{not json", 400, ""},
        {API_COMPLETIONS, "[1]", 400, ""},
        {API_COMPLETIONS, "{\"prompt\": \"caf\xe9\"}", 400, ""},
        {API_COMPLETIONS, "{\"prompt\": \"a\", \"prompt\": \"b\"}", 400, ""},
        {API_COMPLETIONS, "{}", 400, "prompt"},
        {API_COMPLETIONS, "{\"prompt\": 5}", 400, "prompt"},
        {API_COMPLETIONS, "{\"prompt\": []}", 400, "prompt"},
        {API_COMPLETIONS, "{\"prompt\": [1, \"a\"]}", 400, "prompt"},
        {API_COMPLETIONS, "{\"prompt\": [[1], [\"a\"]]}", 400, "prompt"},
        {API_COMPLETIONS, "{\"prompt\": [[]]}", 400, "prompt"},
        {API_COMPLETIONS, "{\"prompt\": [512]}", 400, "prompt"},
        {API_COMPLETIONS, "{\"prompt\": [-1]}", 400, "prompt"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"temperature\": -0.1}", 400, "temperature"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"temperature\": \"1\"}", 400, "temperature"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"top_p\": 0}", 400, "top_p"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"top_p\": 1.01}", 400, "top_p"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"min_p\": -0.5}", 400, "min_p"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"top_k\": -2}", 400, "top_k"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"top_k\": 1.5}", 400, "top_k"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"repeat_penalty\": 0}", 400, "repeat_penalty"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"repeat_last_n\": -2}", 400, "repeat_last_n"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"presence_penalty\": 2.5}", 400, "presence_penalty"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"frequency_penalty\": -2.5}", 400, "frequency_penalty"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"max_tokens\": 0}", 400, "max_tokens"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"max_tokens\": 65}", 400, "max_tokens"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"max_tokens\": true}", 400, "max_tokens"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"seed\": \"1\"}", 400, "seed"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"stop\": [1]}", 400, "stop"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"stop\": {}}", 400, "stop"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"stop\": [\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\","
                          "\"11\",\"12\",\"13\",\"14\",\"15\"]}",
         400, "stop"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"logprobs\": 21}", 400, "logprobs"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"echo\": \"yes\"}", 400, "echo"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"stream\": 1}", 400, "stream"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"stream_options\": []}", 400, "stream_options"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"stream_options\": {\"include_usage\": 1}}", 400, "include_usage"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"n\": 17}", 400, "n"},
        {API_COMPLETIONS, "{\"prompt\": [\"a\",\"b\",\"c\",\"d\",\"e\"], \"n\": 16}", 400, "n"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"model\": 1}", 400, "model"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"user\": []}", 400, "user"},
        {API_CHAT, "{}", 400, "messages"},
        {API_CHAT, "{\"messages\": {}}", 400, "messages"},
        {API_CHAT, "{\"messages\": [1]}", 400, "messages"},
        {API_CHAT, "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}", 400, "messages"},
        {API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", 400, "messages"},
        {API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logprobs\": 1}", 400, "logprobs"},
        {API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_logprobs\": 2}", 400, "top_logprobs"},
        {API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_completion_tokens\": 0}", 400,
         "max_completion_tokens"},
        {API_GENERATE, "{\"prompt\": 1}", 400, "prompt"},
        {API_GENERATE, "{\"prompt\": \"x\", \"options\": 1}", 400, "options"},
        {API_GENERATE, "{\"prompt\": \"x\", \"options\": {\"top_p\": 2}}", 400, "top_p"},
        {API_GENERATE, "{\"prompt\": \"x\", \"context\": [\"a\"]}", 400, "context"},
        {API_GENERATE, "{\"prompt\": \"x\", \"context\": [600]}", 400, "context"},
        {API_GENERATE, "{\"prompt\": \"x\", \"raw\": \"no\"}", 400, "raw"},
        /* what is not supported is refused by name */
        {API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{\"type\": \"function\"}]}", 400,
         "tools"},
        {API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"functions\": [{}]}", 400, "functions"},
        {API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tool_choice\": \"required\"}", 400,
         "tool_choice"},
        {API_CHAT, "{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{}]}]}", 400, "messages"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"suffix\": \"y\"}", 400, "suffix"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"best_of\": 3}", 400, "best_of"},
        {API_GENERATE, "{\"prompt\": \"x\", \"images\": [\"AAAA\"]}", 400, "images"},
        {API_GENERATE, "{\"prompt\": \"x\", \"suffix\": \"y\"}", 400, "suffix"},
        {API_GENERATE, "{\"prompt\": \"x\", \"template\": \"{{ .Prompt }}\"}", 400, "template"},
        {API_OLLAMA_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"images\": [\"AAAA\"]}]}", 400,
         "messages"},
        {API_OLLAMA_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{}]}", 400, "tools"},
        {API_OLLAMA_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": [\"x\"]}]}", 400, "messages"},
        {API_OLLAMA_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"think\": true}", 400, "think"},
        /* Ollama's options: unknown, not honoured, out of range */
        {API_GENERATE, "{\"prompt\": \"x\", \"options\": {\"tempurature\": 1}}", 400, "options"},
        {API_GENERATE, "{\"prompt\": \"x\", \"options\": {\"typical_p\": 1.5}}", 400, "typical_p"},
        {API_GENERATE, "{\"prompt\": \"x\", \"options\": {\"xtc_probability\": 0.5}}", 400, "options"},
        {API_GENERATE, "{\"prompt\": \"x\", \"options\": {\"dry_allowed_length\": -1}}", 400, "dry_allowed_length"},
        {API_GENERATE, "{\"prompt\": \"x\", \"options\": {\"mirostat\": 2}}", 400, "mirostat"},
        {API_GENERATE, "{\"prompt\": \"x\", \"options\": {\"num_ctx\": 65}}", 400, "num_ctx"},
        {API_GENERATE, "{\"prompt\": \"x\", \"keep_alive\": []}", 400, "keep_alive"},
        /* JSON output: formats, and documents that cannot fit */
        {API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"response_format\": {\"type\": \"xml\"}}",
         400, "response_format"},
        {API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"response_format\": {\"type\": "
                   "\"json_schema\"}}",
         400, "response_format"},
        {API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"response_format\": {\"type\": "
                   "\"json_schema\", \"json_schema\": {\"schema\": {\"type\": \"object\", \"patternProperties\": {}}}}}",
         400, "response_format"},
        {API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 1, \"response_format\": "
                   "{\"type\": \"json_object\"}}",
         400, "max_tokens"},
        {API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stop\": \"}\", \"response_format\": "
                   "{\"type\": \"json_object\"}}",
         400, "stop"},
        {API_GENERATE, "{\"prompt\": \"x\", \"format\": \"yaml\"}", 400, "format"},
        {API_GENERATE, "{\"prompt\": \"x\", \"format\": \"json\", \"options\": {\"num_predict\": 1}}", 400, "num_predict"},
        /* logit_bias */
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"logit_bias\": {\"512\": 1}}", 400, "logit_bias"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"logit_bias\": {\"a\": 1}}", 400, "logit_bias"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"logit_bias\": {\"5\": 101}}", 400, "logit_bias"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"logit_bias\": [1]}", 400, "logit_bias"},
        /* max_tokens 0 only scores a prompt (echo with logprobs) */
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"max_tokens\": 0, \"echo\": true}", 400, "max_tokens"},
        {API_COMPLETIONS, "{\"prompt\": \"x\", \"max_tokens\": 0, \"logprobs\": 1}", 400, "max_tokens"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        api_request r;
        api_error e;
        ck_assert_msg(parse(bad[i].kind, bad[i].body, &r, &e) == -1, "accepted: %s", bad[i].body);
        ck_assert_msg(e.status == bad[i].status, "%s: status %d", bad[i].body, e.status);
        ck_assert_msg(!strcmp(e.param, bad[i].param), "%s: param '%s', want '%s'", bad[i].body, e.param, bad[i].param);
        ck_assert_msg(e.message[0] && e.type, "%s: no message", bad[i].body);
        api_request_free(&r);
    }
    /* a prompt longer than the context names both counts */
    char body[1024] = "{\"prompt\": [1";
    for (int i = 1; i < 70; i++) strcat(body, ",1");
    strcat(body, "]}");
    api_request r;
    api_error e;
    ck_assert_int_eq(parse(API_COMPLETIONS, body, &r, &e), -1);
    ck_assert_str_eq(e.code, "context_length_exceeded");
    ck_assert_ptr_nonnull(strstr(e.message, "64"));
    ck_assert_ptr_nonnull(strstr(e.message, "70"));
    api_request_free(&r);
    /* the error body is OpenAI's shape */
    char *s = api_error_body(&e);
    json_t *j = json_loads(s, 0, NULL);
    json_t *err = json_object_get(j, "error");
    ck_assert_int_eq(json_object_size(j), 1);
    ck_assert_int_eq(json_object_size(err), 4);
    ck_assert_str_eq(json_string_value(json_object_get(err, "param")), "prompt");
    ck_assert_str_eq(json_string_value(json_object_get(err, "type")), "invalid_request_error");
    json_decref(j);
    free(s);
}
END_TEST

/* What shapes the output: response_format and format compile a schema; logit_bias; scoring only;
 * token healing on text prompts only; Ollama's options honoured or listed as having no effect. */
START_TEST(test_parse_output_shape)
{
    api_request r;
    api_error e;
    ck_assert_int_eq(parse(API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"response_format\": "
                                     "{\"type\": \"json_schema\", \"json_schema\": {\"name\": \"p\", \"strict\": true, \"schema\": "
                                     "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}}, "
                                     "\"required\": [\"a\"]}}}}",
                           &r, &e),
                     0);
    ck_assert_ptr_nonnull(r.schema);
    ck_assert_ptr_eq(r.gen.json, r.schema);
    ck_assert_int_eq(r.gen.token_healing, 0);
    api_request_free(&r);
    ck_assert_int_eq(parse(API_COMPLETIONS, "{\"prompt\": \"x\", \"response_format\": {\"type\": \"text\"}, "
                                            "\"logit_bias\": {\"5\": -100, \"7\": 2.5}}",
                           &r, &e),
                     0);
    ck_assert_ptr_null(r.gen.json);
    ck_assert_int_eq(r.gen.n_logit_bias, 2);
    ck_assert_int_eq(r.gen.token_healing, 1); /* a text prompt: healed by default */
    api_request_free(&r);
    ck_assert_int_eq(parse(API_COMPLETIONS, "{\"prompt\": [1, 2], \"max_tokens\": 0, \"echo\": true, \"logprobs\": 1}",
                           &r, &e),
                     0);
    ck_assert_int_eq(r.gen.max_tokens, 0);
    ck_assert_int_eq(r.gen.token_healing, 0); /* token ids, and echo: never healed */
    api_request_free(&r);
    ck_assert_int_eq(parse(API_COMPLETIONS, "{\"prompt\": \"x\", \"token_healing\": false}", &r, &e), 0);
    ck_assert_int_eq(r.gen.token_healing, 0);
    api_request_free(&r);
    ck_assert_int_eq(parse(API_GENERATE, "{\"prompt\": \"x y\", \"format\": \"json\", \"keep_alive\": \"5m\", \"options\": "
                                         "{\"num_ctx\": 32, \"num_thread\": 2, \"num_gpu\": 0, \"typical_p\": 0.5, \"num_keep\": 4, "
                                         "\"dry_multiplier\": 0.8, \"dry_sequence_breakers\": [\"\\n\"]}}",
                           &r, &e),
                     0);
    ck_assert(r.gen.sampling.typical_p == 0.5f && r.gen.sampling.dry_multiplier == 0.8f); /* Ollama's and DRY's */
    ck_assert_int_eq(r.gen.sampling.n_dry_breakers, 1);
    ck_assert_ptr_nonnull(r.gen.json);
    ck_assert_int_eq(r.gen.n_ctx, 32);
    ck_assert_int_eq(r.gen.max_tokens, 32);
    ck_assert_str_eq(r.ignored, "num_thread, num_gpu");
    ck_assert_int_eq(r.gen.token_healing, 0);
    api_request_free(&r);
    /* Ollama's chat: streams by default; no messages only loads, keep_alive 0 unloads */
    ck_assert_int_eq(parse(API_OLLAMA_CHAT, "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": "
                                            "\"user\", \"content\": \"hi\"}], \"tools\": []}",
                           &r, &e),
                     0);
    ck_assert_int_eq(r.stream, 1);
    ck_assert_str_eq(r.prompt_text[0], "System: s\nUser: hi\nAssistant:");
    ck_assert_int_eq(r.gen.n_stop, 2);
    ck_assert_int_eq(r.gen.token_healing, 0);
    api_request_free(&r);
    ck_assert_int_eq(parse(API_OLLAMA_CHAT, "{\"model\": \"m\", \"messages\": [], \"keep_alive\": 0}", &r, &e), 0);
    ck_assert(r.empty && r.unload);
    char *body = api_ollama_empty_answer(&r, "m");
    ck_assert_ptr_nonnull(strstr(body, "\"done_reason\":\"unload\""));
    ck_assert_ptr_nonnull(strstr(body, "\"message\""));
    free(body);
    api_request_free(&r);
    char name[64];
    const char *named = "{\"name\": \"x:latest\"}";
    ck_assert_int_eq(api_requested_model(named, strlen(named), 1, name, sizeof name), 1);
    ck_assert_str_eq(name, "x:latest");
    ck_assert_int_eq(api_requested_model(named, strlen(named), 0, name, sizeof name), 0);
}
END_TEST

/* Ollama's error shape is the message alone. */
START_TEST(test_error_shapes)
{
    api_error e;
    api_error_set(&e, 404, "not_found_error", NULL, "model", "model \"%s\" not found", "q");
    char *s = api_error_body_ollama(&e);
    ck_assert_str_eq(s, "{\"error\":\"model \\\"q\\\" not found\"}");
    free(s);
}
END_TEST

/* Embeddings requests in the three dialects, and their answers. */
START_TEST(test_embed_requests)
{
    api_embed_request r;
    api_error e = {0};
    const char *b = "{\"input\": [\"ab\", [1, 2, 3]], \"encoding_format\": \"base64\"}";
    ck_assert_int_eq(api_embed_parse(API_EMBED_OPENAI, b, strlen(b), &lim, 4, &r, &e), 0);
    ck_assert_int_eq(r.n_inputs, 2);
    ck_assert_int_eq(r.n_ids[1], 3);
    ck_assert_int_eq(r.base64, 1);
    float v0[4] = {1, 0, 0, 0}, v1[4] = {0, 0.5f, 0.5f, 0};
    float *vs[2] = {v0, v1};
    char *ans = api_embed_answer(&r, "tiny", vs, 4, 10);
    json_t *j = json_loads(ans, 0, NULL);
    ck_assert_str_eq(json_string_value(json_object_get(j, "object")), "list");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "embedding")),
                     "AACAPwAAAAAAAAAAAAAAAA==");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")),
                     r.n_ids[0] + 3);
    json_decref(j);
    free(ans);
    api_embed_request_free(&r);
    b = "{\"model\": \"m\", \"input\": \"hello\", \"truncate\": false}";
    ck_assert_int_eq(api_embed_parse(API_EMBED_OLLAMA, b, strlen(b), &lim, 4, &r, &e), 0);
    ans = api_embed_answer(&r, "m", vs, 4, 10);
    j = json_loads(ans, 0, NULL);
    ck_assert_int_eq(json_array_size(json_array_get(json_object_get(j, "embeddings"), 0)), 4);
    json_decref(j);
    free(ans);
    api_embed_request_free(&r);
    b = "{\"prompt\": \"\"}";
    ck_assert_int_eq(api_embed_parse(API_EMBED_OLLAMA_LEGACY, b, strlen(b), &lim, 4, &r, &e), 0);
    ck_assert_int_eq(r.n_inputs, 0);
    ans = api_embed_answer(&r, "m", NULL, 4, 10);
    ck_assert_str_eq(ans, "{\"embedding\":[]}");
    free(ans);
    api_embed_request_free(&r);
    static const char *const bad[] = {"{}", "{\"input\": \"\"}", "{\"input\": [1, \"a\"]}", "{\"input\": [[512]]}",
                                      "{\"input\": \"x\", \"dimensions\": 3}", "{\"input\": \"x\", \"encoding_format\": \"hex\"}",
                                      "{\"input\": \"x\", \"pooling\": \"max\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(&e, 0, sizeof e);
        ck_assert_msg(api_embed_parse(API_EMBED_OPENAI, bad[i], strlen(bad[i]), &lim, 4, &r, &e) == -1, "%s", bad[i]);
        ck_assert_int_eq(e.status, 400);
        api_embed_request_free(&r);
    }
}
END_TEST

/* --- writers --- */

static sasp_event ev_text(int index, const char *text, int id)
{
    sasp_event ev = {0};
    ev.index = index;
    ev.text = strdup(text);
    ev.len = strlen(text);
    ev.ids = malloc(sizeof *ev.ids);
    ev.ids[0] = id;
    ev.n_ids = 1;
    return ev;
}

static sasp_event ev_done(int index, const char *text, const char *reason, int prompt, int gen)
{
    sasp_event ev = ev_text(index, text, 7);
    ev.done = 1;
    ev.finish_reason = reason;
    ev.prompt_tokens = prompt;
    ev.completion_tokens = gen;
    ev.total_ns = 3000;
    ev.prompt_ns = 1000;
    ev.eval_ns = 2000;
    return ev;
}

/* Split SSE text into JSON objects; checks the framing and the final [DONE]. */
static int sse_objects(const char *text, json_t **out, int max)
{
    int n = 0, done = 0;
    const char *p = text;
    while (*p) {
        ck_assert_msg(!strncmp(p, "data: ", 6), "not SSE: %s", p);
        p += 6;
        const char *end = strstr(p, "\n\n");
        ck_assert_ptr_nonnull(end);
        ck_assert(!done);
        if (!strncmp(p, "[DONE]", 6)) done = 1;
        else {
            ck_assert_int_lt(n, max);
            out[n] = json_loadb(p, (size_t)(end - p), 0, NULL);
            ck_assert_ptr_nonnull(out[n]);
            n++;
        }
        p = end + 2;
    }
    ck_assert(done);
    return n;
}

START_TEST(test_write_completion_stream)
{
    api_request r;
    api_error e;
    ck_assert_int_eq(parse(API_COMPLETIONS, "{\"prompt\": [\"ab\", \"c\"], \"stream\": true, \"echo\": true, "
                                            "\"stream_options\": {\"include_usage\": true}}",
                           &r, &e),
                     0);
    api_out *o = api_out_new(&r, "tiny", tok, 1700000000);
    sasp_event evs[] = {ev_text(0, "x", 5), ev_text(1, "\xc3\xa9", 6), ev_done(0, "y", "stop", 2, 2),
                        ev_done(1, "", "length", 1, 3)};
    char *all = feed(o, evs, 4);
    json_t *obj[16];
    int n = sse_objects(all, obj, 16);
    ck_assert_int_eq(n, 2 + 4 + 1); /* 2 echo chunks, 4 events, usage */
    char acc[2][64] = {"", ""};
    for (int i = 0; i < n; i++) {
        ck_assert_str_eq(json_string_value(json_object_get(obj[i], "object")), "text_completion");
        ck_assert_str_eq(json_string_value(json_object_get(obj[i], "model")), "tiny");
        ck_assert_int_eq(json_integer_value(json_object_get(obj[i], "created")), 1700000000);
        json_t *ch = json_object_get(obj[i], "choices");
        if (i == n - 1) {
            ck_assert_int_eq(json_array_size(ch), 0);
            json_t *u = json_object_get(obj[i], "usage");
            ck_assert_int_eq(json_integer_value(json_object_get(u, "prompt_tokens")), 3);
            ck_assert_int_eq(json_integer_value(json_object_get(u, "completion_tokens")), 5);
            ck_assert_int_eq(json_integer_value(json_object_get(u, "total_tokens")), 8);
            continue;
        }
        json_t *c = json_array_get(ch, 0);
        int idx = (int)json_integer_value(json_object_get(c, "index"));
        strcat(acc[idx], json_string_value(json_object_get(c, "text")));
    }
    ck_assert_str_eq(acc[0], "abxy");
    ck_assert_str_eq(acc[1], "c\xc3\xa9");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(obj[4], "choices"), 0),
                                                       "finish_reason")),
                     "stop");
    for (int i = 0; i < n; i++) json_decref(obj[i]);
    free(all);
    api_out_free(o);
    api_request_free(&r);
}
END_TEST

START_TEST(test_write_nonstream_and_chat)
{
    api_request r;
    api_error e;
    /* completions, n = 2: usage counts the prompt once */
    ck_assert_int_eq(parse(API_COMPLETIONS, "{\"prompt\": \"ab\", \"n\": 2}", &r, &e), 0);
    api_out *o = api_out_new(&r, "tiny", tok, 1);
    sasp_event evs[] = {ev_text(1, "q", 5), ev_done(0, "p", "length", r.n_prompt[0], 1),
                        ev_done(1, "r", "stop", r.n_prompt[0], 2)};
    char *all = feed(o, evs, 3);
    json_t *j = json_loads(all, 0, NULL);
    ck_assert_ptr_nonnull(j);
    json_t *ch = json_object_get(j, "choices");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(ch, 0), "text")), "p");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(ch, 1), "text")), "qr");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(ch, 1), "finish_reason")), "stop");
    json_t *u = json_object_get(j, "usage");
    ck_assert_int_eq(json_integer_value(json_object_get(u, "prompt_tokens")), r.n_prompt[0]);
    ck_assert_int_eq(json_integer_value(json_object_get(u, "completion_tokens")), 3);
    int pt, ct; /* the counts the server logs are the usage the answer reports */
    api_out_usage(o, &pt, &ct);
    ck_assert_int_eq(pt, r.n_prompt[0]);
    ck_assert_int_eq(ct, 3);
    json_decref(j);
    free(all);
    api_out_free(o);
    api_request_free(&r);

    /* chat stream: role first, content deltas, an empty delta with the reason, [DONE] */
    ck_assert_int_eq(parse(API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stream\": true}", &r,
                           &e),
                     0);
    o = api_out_new(&r, "tiny", tok, 1);
    sasp_event cevs[] = {ev_text(0, "He", 5), ev_done(0, "y", "length", 3, 2)};
    all = feed(o, cevs, 2);
    json_t *obj[8];
    int n = sse_objects(all, obj, 8);
    ck_assert_int_eq(n, 4);
    json_t *d0 = json_object_get(json_array_get(json_object_get(obj[0], "choices"), 0), "delta");
    ck_assert_str_eq(json_string_value(json_object_get(d0, "role")), "assistant");
    ck_assert_str_eq(json_string_value(json_object_get(obj[1], "object")), "chat.completion.chunk");
    json_t *d1 = json_object_get(json_array_get(json_object_get(obj[1], "choices"), 0), "delta");
    ck_assert_str_eq(json_string_value(json_object_get(d1, "content")), "He");
    json_t *c3 = json_array_get(json_object_get(obj[3], "choices"), 0);
    ck_assert_int_eq(json_object_size(json_object_get(c3, "delta")), 0);
    ck_assert_str_eq(json_string_value(json_object_get(c3, "finish_reason")), "length");
    for (int i = 0; i < n; i++) json_decref(obj[i]);
    free(all);
    api_out_free(o);
    api_request_free(&r);
}
END_TEST

START_TEST(test_write_generate)
{
    api_request r;
    api_error e;
    ck_assert_int_eq(parse(API_GENERATE, "{\"prompt\": \"hi\"}", &r, &e), 0);
    api_out *o = api_out_new(&r, "tiny", tok, 1);
    sasp_event evs[] = {ev_text(0, "a", 5), ev_done(0, "b", "length", r.n_prompt[0], 2)};
    int np = r.n_prompt[0];
    char *all = feed(o, evs, 2);
    /* NDJSON: three lines, the last one done with the counts and the context */
    char *line = all, *nl;
    json_t *lines[4];
    int n = 0;
    while ((nl = strchr(line, '\n'))) {
        ck_assert_int_lt(n, 4);
        lines[n] = json_loadb(line, (size_t)(nl - line), 0, NULL);
        ck_assert_ptr_nonnull(lines[n]);
        n++;
        line = nl + 1;
    }
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(json_string_value(json_object_get(lines[0], "response")), "a");
    ck_assert(json_is_false(json_object_get(lines[0], "done")));
    json_t *last = lines[2];
    ck_assert(json_is_true(json_object_get(last, "done")));
    ck_assert_str_eq(json_string_value(json_object_get(last, "done_reason")), "length");
    ck_assert_int_eq(json_integer_value(json_object_get(last, "eval_count")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(last, "prompt_eval_count")), np);
    ck_assert_int_eq(json_integer_value(json_object_get(last, "eval_duration")), 2000);
    ck_assert_int_eq((int)json_array_size(json_object_get(last, "context")), np + 2);
    for (int i = 0; i < n; i++) json_decref(lines[i]);
    free(all);
    api_out_free(o);
    api_request_free(&r);
}
END_TEST

/* Ollama's chat: NDJSON lines with message.content, the last one done with the counts, no context. */
START_TEST(test_write_ollama_chat)
{
    api_request r;
    api_error e;
    ck_assert_int_eq(parse(API_OLLAMA_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", &r, &e), 0);
    api_out *o = api_out_new(&r, "tiny:latest", tok, 1);
    sasp_event evs[] = {ev_text(0, "He", 5), ev_done(0, "y", "stop", 4, 2)};
    char *all = feed(o, evs, 2);
    json_t *last = NULL;
    int n = 0;
    for (char *line = all, *nl; (nl = strchr(line, '\n')); line = nl + 1, n++) {
        json_decref(last);
        last = json_loadb(line, (size_t)(nl - line), 0, NULL);
        ck_assert_ptr_nonnull(last);
        ck_assert_str_eq(json_string_value(json_object_get(last, "model")), "tiny:latest");
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(last, "message"), "role")), "assistant");
    }
    ck_assert_int_eq(n, 3);
    ck_assert(json_is_true(json_object_get(last, "done")));
    ck_assert_ptr_null(json_object_get(last, "context"));
    ck_assert_int_eq(json_integer_value(json_object_get(last, "eval_count")), 2);
    json_decref(last);
    free(all);
    api_out_free(o);
    api_request_free(&r);
}
END_TEST

/* Every logprob an answer carries reads back as the float it was, bit for bit, in each dialect that
 * returns them (OpenAI's completions and chat, llama.cpp's completion_probabilities): 9 significant
 * digits. The values include neighbours a float apart, which 7 digits print alike. */
static const float LOGPROBS[] = {-1.60083795f, -1.60083783f, -1.58485699f, -1e-8f, -17.25f, -0.1f, -3.4028235e38f};
#define N_LP (int)(sizeof LOGPROBS / sizeof *LOGPROBS)

static sasp_event ev_with_logprobs(int index, const char *text, int k, int done)
{
    sasp_event ev = done ? ev_done(index, text, "length", 2, 1) : ev_text(index, text, 5 + k);
    ev.info = calloc(1, sizeof *ev.info);
    ev.info->id = ev.ids[0];
    ev.info->logprob = LOGPROBS[k % N_LP];
    ev.info->n_top = 2;
    for (int t = 0; t < 2; t++) ev.info->top[t] = (sasp_logprob){.id = 5 + t, .logprob = LOGPROBS[(k + 1 + t) % N_LP]};
    return ev;
}

/* The float a JSON number reads back as, against the one written. */
static void expect_float(json_t *v, float want, const char *where)
{
    ck_assert_msg(json_is_number(v), "%s: not a number", where);
    float got = (float)json_number_value(v);
    ck_assert_msg(memcmp(&got, &want, sizeof got) == 0, "%s: %.9g read back as %.9g", where, want, got);
}

START_TEST(test_write_logprobs_round_trip)
{
    static const struct {
        api_kind kind;
        const char *body;
    } cases[] = {
        {API_COMPLETIONS, "{\"prompt\": \"ab\", \"logprobs\": 2}"},
        {API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"logprobs\": true, \"top_logprobs\": 2}"},
        {API_LLAMA_COMPLETION, "{\"prompt\": \"ab\", \"n_probs\": 2}"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        api_request r;
        api_error e;
        ck_assert_int_eq(parse(cases[c].kind, cases[c].body, &r, &e), 0);
        api_out *o = api_out_new(&r, "tiny", tok, 1);
        sasp_event evs[N_LP];
        for (int k = 0; k < N_LP; k++) evs[k] = ev_with_logprobs(0, "x", k, k == N_LP - 1);
        char *all = feed(o, evs, N_LP);
        json_t *j = json_loads(all, 0, NULL);
        ck_assert_msg(j != NULL, "%s", all);
        json_t *choice = json_array_get(json_object_get(j, "choices"), 0);
        for (int k = 0; k < N_LP; k++) {
            json_t *chosen, *tops;
            if (cases[c].kind == API_COMPLETIONS) {
                json_t *lp = json_object_get(choice, "logprobs");
                chosen = json_array_get(json_object_get(lp, "token_logprobs"), (size_t)k);
                json_t *top = json_array_get(json_object_get(lp, "top_logprobs"), (size_t)k), *v;
                const char *key;
                int t = 0;
                json_object_foreach (top, key, v) t++, expect_float(v, LOGPROBS[(k + t) % N_LP], "completions top");
                ck_assert_int_eq(t, 2);
                tops = NULL;
            } else if (cases[c].kind == API_CHAT) {
                json_t *ent = json_array_get(json_object_get(json_object_get(choice, "logprobs"), "content"), (size_t)k);
                chosen = json_object_get(ent, "logprob");
                tops = json_object_get(ent, "top_logprobs");
            } else {
                json_t *ent = json_array_get(json_object_get(j, "completion_probabilities"), (size_t)k);
                chosen = json_object_get(ent, "logprob");
                tops = json_object_get(ent, "top_logprobs");
            }
            expect_float(chosen, LOGPROBS[k], cases[c].body);
            for (int t = 0; tops && t < 2; t++)
                expect_float(json_object_get(json_array_get(tops, (size_t)t), "logprob"), LOGPROBS[(k + 1 + t) % N_LP],
                             cases[c].body);
        }
        json_decref(j);
        free(all);
        api_out_free(o);
        api_request_free(&r);
    }
}
END_TEST

int main(void)
{
    Suite *su = suite_create("api");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_stop_scan_examples);
    tcase_add_test(tc, test_stop_scan_random);
    tcase_add_test(tc, test_utf8);
    tcase_add_test(tc, test_parse_defaults_and_forms);
    tcase_add_test(tc, test_parse_rejects);
    tcase_add_test(tc, test_keep_alive);
    tcase_add_test(tc, test_write_completion_stream);
    tcase_add_test(tc, test_write_nonstream_and_chat);
    tcase_add_test(tc, test_write_generate);
    tcase_add_test(tc, test_write_ollama_chat);
    tcase_add_test(tc, test_write_logprobs_round_trip);
    tcase_add_test(tc, test_parse_output_shape);
    tcase_add_test(tc, test_error_shapes);
    tcase_add_test(tc, test_embed_requests);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
