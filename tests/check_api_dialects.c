/* check_api_dialects.c: the wire format of Anthropic's Messages API and OpenAI's Responses API without a
 * socket: requests into parameters (the prompt the chat template of /v1/chat/completions makes of the
 * same conversation, prefill, stop sequences, lengths, JSON formats, every refused field with the field
 * it names), /v1/messages/count_tokens, Anthropic's error shape, and the answers written from
 * synthetic events: the message and response objects (each way a sequence can end) and the named
 * event streams (order, types, sequence numbers, the text they add up to, an engine failure). Uses the
 * tokenizer of tests/fixtures/tiny-model. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "engine/scheduler.h"
#include "base/util.h"
#include "api_fixture.h"

static sasp_tokenizer *tok;
static api_limits lim;

static void setup(void)
{
    tok = load_tokenizer("tiny-model");
    lim = (api_limits){tok, 64, 512, 0, "tiny"};
}

static void teardown(void) { sasp_tokenizer_free(tok); }

static int parse(api_kind kind, const char *body, api_request *r, api_error *e)
{
    memset(e, 0, sizeof *e);
    return api_parse(kind, body, strlen(body), &lim, 1234, r, e);
}

/* The prompt's ids of body parsed as kind equal those of chat's body: the same template. */
static void assert_same_prompt(api_kind kind, const char *body, const char *chat_body)
{
    api_request a, b;
    api_error e;
    ck_assert_msg(parse(kind, body, &a, &e) == 0, "%s: %s", body, e.message);
    ck_assert_msg(parse(API_CHAT, chat_body, &b, &e) == 0, "%s: %s", chat_body, e.message);
    ck_assert_str_eq(a.prompt_text[0], b.prompt_text[0]);
    ck_assert_int_eq(a.n_prompt[0], b.n_prompt[0]);
    ck_assert_mem_eq(a.prompt[0], b.prompt[0], (size_t)a.n_prompt[0] * sizeof **a.prompt);
    ck_assert_int_eq(a.gen.n_stop, b.gen.n_stop);
    api_request_free(&a);
    api_request_free(&b);
}

/* A body refused with a 400 naming param, its message saying says (when given). */
typedef struct rejected {
    const char *body, *param, *says;
} rejected;

static void assert_rejected(api_kind kind, const rejected *bad, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        api_request r;
        api_error e;
        ck_assert_msg(parse(kind, bad[i].body, &r, &e) == -1, "accepted: %s", bad[i].body);
        ck_assert_msg(e.status == 400, "%s: status %d", bad[i].body, e.status);
        ck_assert_msg(!strcmp(e.param, bad[i].param), "%s: param '%s', not '%s'", bad[i].body, e.param, bad[i].param);
        ck_assert_msg(!bad[i].says || strstr(e.message, bad[i].says), "%s: '%s' lacks '%s'", bad[i].body, e.message,
                      bad[i].says);
        api_request_free(&r);
    }
}

/* --- Anthropic's messages: requests --- */

START_TEST(test_messages_parse)
{
    api_request r;
    api_error e;
    ck_assert_int_eq(parse(API_MESSAGES, "{\"model\": \"tiny\", \"max_tokens\": 9, \"system\": \"Be brief.\", "
                                         "\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], "
                                         "\"stop_sequences\": [\"END\", \"\"], \"temperature\": 0.5, \"top_k\": 7, "
                                         "\"top_p\": 0.9, \"metadata\": {\"user_id\": \"u1\"}}",
                           &r, &e),
                     0);
    ck_assert_str_eq(r.prompt_text[0], "System: Be brief.\nUser: Hi\nAssistant:");
    ck_assert_int_eq(r.gen.max_tokens, 9);
    ck_assert_int_eq(r.stream, 0);
    ck_assert_int_eq(r.gen.n_stop, 3); /* END, then the template's two */
    ck_assert_str_eq(r.gen.stop[0], "END");
    ck_assert_str_eq(r.gen.stop[1], "\nUser:");
    ck_assert_float_eq_tol(r.gen.sampling.temperature, 0.5f, 1e-6);
    ck_assert_float_eq_tol(r.gen.sampling.top_p, 0.9f, 1e-6);
    ck_assert_int_eq(r.gen.sampling.top_k, 7);
    ck_assert_int_eq(r.text_prompt, 0); /* a template's text is never healed */
    ck_assert_int_eq((int)json_array_size(json_object_get(r.repeats, "stop_sequences")), 2);
    api_request_free(&r);

    /* text blocks, a prefill (a last assistant message is continued), max_tokens 0, streaming */
    ck_assert_int_eq(parse(API_MESSAGES, "{\"model\": \"m\", \"max_tokens\": 0, \"stream\": true, \"system\": [{\"type\": "
                                         "\"text\", \"text\": \"A\"}, {\"type\": \"text\", \"text\": \"B\", \"cache_control\": "
                                         "{\"type\": \"ephemeral\"}}], \"messages\": [{\"role\": \"user\", \"content\": "
                                         "[{\"type\": \"text\", \"text\": \"Q\"}]}, {\"role\": \"assistant\", \"content\": "
                                         "\"The answer is (\"}]}",
                           &r, &e),
                     0);
    ck_assert_str_eq(r.prompt_text[0], "System: AB\nUser: Q\nAssistant: The answer is (");
    ck_assert_int_eq(r.gen.max_tokens, 0);
    ck_assert_int_eq(r.stream, 1);
    api_request_free(&r);

    /* output_config.format (and the beta output_format) go through the JSON constraint */
    ck_assert_int_eq(parse(API_MESSAGES, "{\"model\": \"m\", \"max_tokens\": 40, \"messages\": [{\"role\": \"user\", "
                                         "\"content\": \"x\"}], \"output_config\": {\"effort\": \"low\", \"format\": "
                                         "{\"type\": \"json_schema\", \"schema\": {\"type\": \"object\"}}}}",
                           &r, &e),
                     0);
    ck_assert_ptr_nonnull(r.gen.json);
    ck_assert_str_eq(r.ignored, "output_config.effort");
    api_request_free(&r);
    ck_assert_int_eq(parse(API_MESSAGES, "{\"model\": \"m\", \"max_tokens\": 40, \"messages\": [{\"role\": \"user\", "
                                         "\"content\": \"x\"}], \"output_format\": {\"type\": \"json_schema\", \"schema\": "
                                         "{\"type\": \"object\"}}}",
                           &r, &e),
                     0);
    ck_assert_ptr_nonnull(r.gen.json);
    api_request_free(&r);

    /* what asks for nothing passes */
    ck_assert_int_eq(parse(API_MESSAGES, "{\"model\": \"m\", \"max_tokens\": 4, \"messages\": [{\"role\": \"user\", "
                                         "\"content\": \"x\"}], \"tools\": [], \"tool_choice\": {\"type\": \"none\"}, "
                                         "\"thinking\": {\"type\": \"disabled\"}, \"service_tier\": \"auto\"}",
                           &r, &e),
                     0);
    api_request_free(&r);

    /* the prompt is the one /v1/chat/completions makes of the same conversation */
    assert_same_prompt(API_MESSAGES,
                       "{\"model\": \"m\", \"max_tokens\": 4, \"system\": \"S\", \"messages\": [{\"role\": \"user\", "
                       "\"content\": \"a\"}, {\"role\": \"assistant\", \"content\": [{\"type\": \"text\", \"text\": \"b\"}]}, "
                       "{\"role\": \"user\", \"content\": \"c\"}]}",
                       "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"a\"}, "
                       "{\"role\": \"assistant\", \"content\": \"b\"}, {\"role\": \"user\", \"content\": \"c\"}]}");
}
END_TEST

START_TEST(test_messages_rejects)
{
#define MSGS "\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]"
    static const rejected bad[] = {
        {"{\"max_tokens\": 4, " MSGS "}", "model", "'model' is required"},
        {"{\"model\": 3, \"max_tokens\": 4, " MSGS "}", "model", NULL},
        {"{\"model\": \"m\", " MSGS "}", "max_tokens", "'max_tokens' is required"},
        {"{\"model\": \"m\", \"max_tokens\": 65, " MSGS "}", "max_tokens", "context size 64"},
        {"{\"model\": \"m\", \"max_tokens\": -1, " MSGS "}", "max_tokens", NULL},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"temperature\": 1.5, " MSGS "}", "temperature", "[0, 1]"},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"top_p\": 0, " MSGS "}", "top_p", NULL},
        {"{\"model\": \"m\", \"max_tokens\": 4}", "messages", "required"},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"messages\": []}", "messages", NULL},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"messages\": [{\"role\": \"system\", \"content\": \"x\"}]}", "messages",
         "top-level 'system'"},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"messages\": [{\"role\": \"user\", \"content\": 5}]}",
         "messages[0].content", NULL},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image\", "
         "\"source\": {}}]}]}",
         "messages[0].content", "'image'"},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", "
         "\"text\": \"a\"}, {\"type\": \"document\", \"source\": {}}]}]}",
         "messages[0].content", "content[1]"},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": "
         "\"tool_result\", \"tool_use_id\": \"t\"}]}]}",
         "messages[0].content", "'tool_result'"},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}",
         "messages[0].content", ".text' must be a string"},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"system\": [{\"type\": \"image\"}], " MSGS "}", "system", "'image'"},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"tools\": [{\"name\": \"f\", \"input_schema\": {}}], " MSGS "}", "tools",
         "does not call tools"},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"tool_choice\": {\"type\": \"any\"}, " MSGS "}", "tool_choice", NULL},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"thinking\": {\"type\": \"enabled\", \"budget_tokens\": 1024}, " MSGS "}",
         "thinking", "does not think"},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"mcp_servers\": [{\"url\": \"u\"}], " MSGS "}", "mcp_servers", NULL},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"stop_sequences\": \"x\", " MSGS "}", "stop_sequences", NULL},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"metadata\": [], " MSGS "}", "metadata", NULL},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"metadata\": {\"user_id\": 1}, " MSGS "}", "user_id", NULL},
        {"{\"model\": \"m\", \"max_tokens\": 4, \"output_config\": {\"format\": {\"type\": \"json_object\"}}, " MSGS "}",
         "output_config.format", NULL},
        {"{\"model\": \"m\", \"max_tokens\": 40, \"stop_sequences\": [\"}\"], \"output_config\": {\"format\": {\"type\": "
         "\"json_schema\", \"schema\": {\"type\": \"object\"}}}, " MSGS "}",
         "stop_sequences", "JSON"},
        {"{\"model\": \"m\", \"max_tokens\": 1, \"output_config\": {\"format\": {\"type\": \"json_schema\", \"schema\": "
         "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}}, \"required\": [\"name\"]}}}, " MSGS "}",
         "max_tokens", "shortest JSON document"},
    };
#undef MSGS
    assert_rejected(API_MESSAGES, bad, sizeof bad / sizeof *bad);
}
END_TEST

START_TEST(test_messages_count_tokens_and_errors)
{
    const char *body = "{\"model\": \"m\", \"system\": \"S\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello there\"}]}";
    api_error e = {0};
    char *out = api_count_message_tokens(body, strlen(body), &lim, &e);
    ck_assert_ptr_nonnull(out);
    json_t *j = json_loads(out, 0, NULL);
    api_request r;
    const char *with_max = "{\"model\": \"m\", \"max_tokens\": 1, \"system\": \"S\", \"messages\": [{\"role\": \"user\", "
                           "\"content\": \"Hello there\"}]}";
    ck_assert_int_eq(parse(API_MESSAGES, with_max, &r, &e), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "input_tokens")), r.n_prompt[0]);
    ck_assert_int_eq((int)json_object_size(j), 1);
    api_request_free(&r);
    json_decref(j);
    free(out);
    static const char *const bad[] = {"{\"model\": \"m\"}", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}",
                                      "{\"model\": \"m\", \"tools\": [{}], \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}",
                                      "[", "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image\"}]}]}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(&e, 0, sizeof e);
        ck_assert_ptr_null(api_count_message_tokens(bad[i], strlen(bad[i]), &lim, &e));
        ck_assert_msg(e.status == 400, "%s", bad[i]);
    }

    /* Anthropic's error shape, its type following the status */
    static const struct {
        int status;
        const char *type;
    } shapes[] = {
        {400, "invalid_request_error"}, {405, "invalid_request_error"}, {401, "authentication_error"}, {403, "permission_error"}, {404, "not_found_error"}, {413, "request_too_large"}, {429, "rate_limit_error"}, {500, "api_error"}, {503, "overloaded_error"}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        api_error_set(&e, shapes[i].status, "whatever", "code", "param", "went \"wrong\" %d", 1);
        char *s = api_error_body_anthropic(&e);
        char want[256];
        snprintf(want, sizeof want, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"went \\\"wrong\\\" 1\"}}",
                 shapes[i].type);
        ck_assert_str_eq(s, want);
        free(s);
    }
}
END_TEST

/* --- OpenAI's responses: requests --- */

START_TEST(test_responses_parse)
{
    api_request r;
    api_error e;
    ck_assert_int_eq(parse(API_RESPONSES, "{\"model\": \"x\", \"input\": \"Hi\", \"max_output_tokens\": 12, "
                                          "\"instructions\": \"Be brief.\", \"metadata\": {\"k\": \"v\"}, \"store\": false, "
                                          "\"temperature\": 0.3, \"top_p\": 0.5, \"user\": \"u\"}",
                           &r, &e),
                     0);
    ck_assert_str_eq(r.prompt_text[0], "System: Be brief.\nUser: Hi\nAssistant:");
    ck_assert_int_eq(r.gen.max_tokens, 12);
    ck_assert_int_eq(r.stream, 0);
    ck_assert_int_eq(r.gen.n_stop, 2);
    ck_assert_ptr_null(r.gen.json);
    json_t *rep = r.repeats;
    ck_assert_str_eq(json_string_value(json_object_get(rep, "instructions")), "Be brief.");
    ck_assert_int_eq(json_integer_value(json_object_get(rep, "max_output_tokens")), 12);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(rep, "metadata"), "k")), "v");
    ck_assert_float_eq_tol(json_real_value(json_object_get(rep, "temperature")), 0.3, 1e-6);
    ck_assert_float_eq_tol(json_real_value(json_object_get(rep, "top_p")), 0.5, 1e-6);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(rep, "text"), "format"), "type")),
                     "text");
    ck_assert_str_eq(json_string_value(json_object_get(rep, "user")), "u");
    api_request_free(&r);

    /* no limit: the rest of the context, and null in the response; a json_schema format */
    ck_assert_int_eq(parse(API_RESPONSES, "{\"input\": [{\"role\": \"user\", \"content\": [{\"type\": \"input_text\", "
                                          "\"text\": \"A person\"}]}], \"stream\": true, \"text\": {\"format\": {\"type\": "
                                          "\"json_schema\", \"name\": \"p\", \"strict\": true, \"schema\": {\"type\": "
                                          "\"object\", \"properties\": {\"n\": {\"type\": \"string\"}}}}}}",
                           &r, &e),
                     0);
    ck_assert_int_eq(r.gen.max_tokens, 64);
    ck_assert_int_eq(r.stream, 1);
    ck_assert_ptr_nonnull(r.gen.json);
    ck_assert(json_is_null(json_object_get(r.repeats, "max_output_tokens")));
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(r.repeats, "text"), "format"), "name")),
                     "p");
    api_request_free(&r);
    ck_assert_int_eq(parse(API_RESPONSES, "{\"input\": \"x\", \"text\": {\"format\": {\"type\": \"json_object\"}}}", &r, &e), 0);
    ck_assert_ptr_nonnull(r.gen.json);
    api_request_free(&r);

    /* what asks for nothing passes */
    ck_assert_int_eq(parse(API_RESPONSES, "{\"input\": \"x\", \"tools\": [], \"tool_choice\": \"auto\", \"reasoning\": "
                                          "{\"effort\": null}, \"include\": [], \"truncation\": \"disabled\", "
                                          "\"background\": false, \"top_logprobs\": 0, \"parallel_tool_calls\": true}",
                           &r, &e),
                     0);
    api_request_free(&r);

    /* the prompt is the one /v1/chat/completions makes of the same conversation */
    assert_same_prompt(API_RESPONSES,
                       "{\"instructions\": \"S\", \"input\": [{\"role\": \"developer\", \"content\": \"d\"}, {\"type\": "
                       "\"message\", \"role\": \"user\", \"content\": [{\"type\": \"input_text\", \"text\": \"a\"}, "
                       "{\"type\": \"input_text\", \"text\": \"b\"}]}, {\"type\": \"message\", \"role\": \"assistant\", "
                       "\"id\": \"msg_1\", \"status\": \"completed\", \"content\": [{\"type\": \"output_text\", \"text\": "
                       "\"c\", \"annotations\": []}]}, {\"role\": \"user\", \"content\": \"e\"}]}",
                       "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"developer\", \"content\": "
                       "\"d\"}, {\"role\": \"user\", \"content\": \"ab\"}, {\"role\": \"assistant\", \"content\": \"c\"}, "
                       "{\"role\": \"user\", \"content\": \"e\"}]}");
}
END_TEST

START_TEST(test_responses_rejects)
{
    static const rejected bad[] = {
        {"{}", "input", "required"},
        {"{\"input\": []}", "input", NULL},
        {"{\"input\": 3}", "input", NULL},
        {"{\"input\": \"x\", \"previous_response_id\": \"resp_1\"}", "previous_response_id", "stateless"},
        {"{\"input\": \"x\", \"conversation\": \"conv_1\"}", "conversation", NULL},
        {"{\"input\": \"x\", \"store\": true}", "store", NULL},
        {"{\"input\": \"x\", \"background\": true}", "background", NULL},
        {"{\"input\": \"x\", \"tools\": [{\"type\": \"function\", \"name\": \"f\"}]}", "tools", "does not call tools"},
        {"{\"input\": \"x\", \"tool_choice\": \"required\"}", "tool_choice", NULL},
        {"{\"input\": \"x\", \"prompt\": {\"id\": \"pmpt_1\"}}", "prompt", NULL},
        {"{\"input\": \"x\", \"reasoning\": {\"effort\": \"high\"}}", "reasoning", NULL},
        {"{\"input\": \"x\", \"include\": [\"message.output_text.logprobs\"]}", "include", NULL},
        {"{\"input\": \"x\", \"top_logprobs\": 2}", "top_logprobs", NULL},
        {"{\"input\": \"x\", \"truncation\": \"auto\"}", "truncation", NULL},
        {"{\"input\": \"x\", \"max_output_tokens\": 0}", "max_output_tokens", NULL},
        {"{\"input\": \"x\", \"max_output_tokens\": 65}", "max_output_tokens", NULL},
        {"{\"input\": \"x\", \"instructions\": 1}", "instructions", NULL},
        {"{\"input\": \"x\", \"metadata\": {\"k\": 1}}", "metadata", NULL},
        {"{\"input\": \"x\", \"text\": {\"format\": {\"type\": \"grammar\"}}}", "text.format", "'grammar'"},
        {"{\"input\": \"x\", \"text\": {\"format\": {\"type\": \"json_schema\", \"name\": \"n\"}}}", "text.format",
         "schema"},
        {"{\"input\": \"x\", \"text\": \"json\"}", "text", NULL},
        {"{\"input\": [{\"type\": \"function_call_output\", \"call_id\": \"c\", \"output\": \"o\"}]}", "input",
         "'function_call_output'"},
        {"{\"input\": [{\"role\": \"tool\", \"content\": \"x\"}]}", "input", "role"},
        {"{\"input\": [{\"role\": \"user\", \"content\": [{\"type\": \"input_image\", \"image_url\": \"u\"}]}]}",
         "input[0].content", "'input_image'"},
        {"{\"input\": [{\"role\": \"user\", \"content\": [{\"type\": \"input_file\", \"file_id\": \"f\"}]}]}",
         "input[0].content", NULL},
        {"{\"input\": \"x\", \"max_output_tokens\": 1, \"text\": {\"format\": {\"type\": \"json_schema\", \"name\": \"n\", "
         "\"schema\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\"}}, \"required\": [\"a\"]}}}}",
         "max_output_tokens", "shortest JSON document"},
    };
    assert_rejected(API_RESPONSES, bad, sizeof bad / sizeof *bad);
}
END_TEST

/* --- answers --- */

static sasp_event ev_text(const char *text)
{
    sasp_event ev = {0};
    ev.text = strdup(text);
    ev.len = strlen(text);
    return ev;
}

/* The last event of the sequence: how it ended (reason, SASP_END_*, the stop string) and its counts. */
static sasp_event ev_end(const char *text, const char *reason, int end, const char *word, int prompt, int gen)
{
    sasp_event ev = ev_text(text);
    ev.done = 1;
    ev.finish_reason = reason;
    ev.end = end;
    ev.stop_word = word ? strdup(word) : NULL;
    ev.prompt_tokens = prompt;
    ev.completion_tokens = gen;
    ev.cached_tokens = 2;
    return ev;
}

/* Feed the events to a fresh answer of body, collect the bytes. */
static char *answer(api_kind kind, const char *body, sasp_event *evs, int n)
{
    api_request r;
    api_error e;
    ck_assert_msg(parse(kind, body, &r, &e) == 0, "%s", e.message);
    api_out *o = api_out_new(&r, "tiny", tok, 1700000000);
    api_request_free(&r);
    char *all = feed(o, evs, n);
    api_out_free(o);
    return all;
}

/* Named server-sent events into names[] and their JSON data; checks the framing and that each data's
 * "type" is its event's name. */
static int named_events(const char *text, char names[][40], json_t **data, int max)
{
    int n = 0;
    for (const char *p = text; *p;) {
        ck_assert_msg(!strncmp(p, "event: ", 7), "not a named event: %.60s", p);
        const char *nl = strchr(p, '\n');
        ck_assert_ptr_nonnull(nl);
        ck_assert_int_lt(n, max);
        snprintf(names[n], 40, "%.*s", (int)(nl - p - 7), p + 7);
        p = nl + 1;
        ck_assert_msg(!strncmp(p, "data: ", 6), "no data line: %.60s", p);
        const char *end = strstr(p, "\n\n");
        ck_assert_ptr_nonnull(end);
        data[n] = json_loadb(p + 6, (size_t)(end - p - 6), 0, NULL);
        ck_assert_ptr_nonnull(data[n]);
        ck_assert_str_eq(json_string_value(json_object_get(data[n], "type")), names[n]);
        n++;
        p = end + 2;
    }
    return n;
}

static const char *const MSG_BODY = "{\"model\": \"tiny\", \"max_tokens\": 9, \"stop_sequences\": [\"##\"], \"messages\": "
                                    "[{\"role\": \"user\", \"content\": \"Hi\"}]}";

/* The message object for each way a sequence ends. */
START_TEST(test_messages_answer)
{
    static const struct {
        const char *reason;
        int end;
        const char *word;
        const char *stop_reason, *sequence;
    } ends[] = {
        {"stop", SASP_END_WORD, "##", "stop_sequence", "##"},
        {"stop", SASP_END_WORD, "\nUser:", "end_turn", NULL}, /* the template's stop: the model ended its turn */
        {"stop", SASP_END_EOS, NULL, "end_turn", NULL},
        {"stop", SASP_END_DOCUMENT, NULL, "end_turn", NULL},
        {"length", SASP_END_LIMIT, NULL, "max_tokens", NULL},
        {"length", SASP_END_CONTEXT, NULL, "model_context_window_exceeded", NULL},
    };
    for (size_t i = 0; i < sizeof ends / sizeof *ends; i++) {
        sasp_event evs[] = {ev_text("He"), ev_end("llo", ends[i].reason, ends[i].end, ends[i].word, 5, 3)};
        char *all = answer(API_MESSAGES, MSG_BODY, evs, 2);
        json_t *j = json_loads(all, 0, NULL);
        ck_assert_ptr_nonnull(j);
        ck_assert_str_eq(json_string_value(json_object_get(j, "type")), "message");
        ck_assert(!strncmp(json_string_value(json_object_get(j, "id")), "msg_", 4));
        ck_assert_str_eq(json_string_value(json_object_get(j, "role")), "assistant");
        ck_assert_str_eq(json_string_value(json_object_get(j, "model")), "tiny");
        json_t *content = json_object_get(j, "content");
        ck_assert_int_eq((int)json_array_size(content), 1);
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(content, 0), "type")), "text");
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(content, 0), "text")), "Hello");
        ck_assert_str_eq(json_string_value(json_object_get(j, "stop_reason")), ends[i].stop_reason);
        json_t *seq = json_object_get(j, "stop_sequence");
        if (ends[i].sequence) ck_assert_str_eq(json_string_value(seq), ends[i].sequence);
        else ck_assert(json_is_null(seq));
        json_t *u = json_object_get(j, "usage");
        ck_assert_int_eq(json_integer_value(json_object_get(u, "input_tokens")), 5);
        ck_assert_int_eq(json_integer_value(json_object_get(u, "output_tokens")), 3);
        json_decref(j);
        free(all);
    }
}
END_TEST

/* Anthropic's event sequence, and an engine failure as an error event. */
START_TEST(test_messages_stream)
{
    char body[512];
    snprintf(body, sizeof body, "%.*s, \"stream\": true}", (int)strlen(MSG_BODY) - 1, MSG_BODY);
    sasp_event evs[] = {ev_text("He"), ev_text("l\xc3\xa9"), ev_end("", "stop", SASP_END_WORD, "##", 5, 3)};
    char *all = answer(API_MESSAGES, body, evs, 3);
    char names[16][40];
    json_t *d[16];
    int n = named_events(all, names, d, 16);
    static const char *const want[] = {"message_start", "content_block_start", "ping", "content_block_delta",
                                       "content_block_delta", "content_block_stop", "message_delta", "message_stop"};
    ck_assert_int_eq(n, 8);
    for (int i = 0; i < n; i++) ck_assert_str_eq(names[i], want[i]);
    json_t *msg = json_object_get(d[0], "message");
    ck_assert_str_eq(json_string_value(json_object_get(msg, "type")), "message");
    ck_assert_int_eq((int)json_array_size(json_object_get(msg, "content")), 0);
    ck_assert(json_is_null(json_object_get(msg, "stop_reason")));
    api_request r; /* message_start counts the prompt before the engine has read it */
    api_error e;
    ck_assert_int_eq(parse(API_MESSAGES, body, &r, &e), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(msg, "usage"), "input_tokens")), r.n_prompt[0]);
    api_request_free(&r);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(d[1], "content_block"), "type")), "text");
    char text[32] = "";
    for (int i = 3; i <= 4; i++) {
        json_t *delta = json_object_get(d[i], "delta");
        ck_assert_int_eq(json_integer_value(json_object_get(d[i], "index")), 0);
        ck_assert_str_eq(json_string_value(json_object_get(delta, "type")), "text_delta");
        strcat(text, json_string_value(json_object_get(delta, "text")));
    }
    ck_assert_str_eq(text, "Hel\xc3\xa9");
    json_t *delta = json_object_get(d[6], "delta");
    ck_assert_str_eq(json_string_value(json_object_get(delta, "stop_reason")), "stop_sequence");
    ck_assert_str_eq(json_string_value(json_object_get(delta, "stop_sequence")), "##");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(d[6], "usage"), "output_tokens")), 3);
    for (int i = 0; i < n; i++) json_decref(d[i]);
    free(all);

    sasp_event failed[] = {ev_text("a"), ev_end("out of memory", "stop", SASP_END_STOPPED, NULL, 5, 1)};
    failed[1].error = 1;
    all = answer(API_MESSAGES, body, failed, 2);
    n = named_events(all, names, d, 16);
    ck_assert_int_eq(n, 5);
    ck_assert_str_eq(names[4], "error");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(d[4], "error"), "type")), "api_error");
    ck_assert(strstr(json_string_value(json_object_get(json_object_get(d[4], "error"), "message")), "out of memory"));
    for (int i = 0; i < n; i++) json_decref(d[i]);
    free(all);
}
END_TEST

static const char *const RESP_BODY = "{\"input\": \"Hi\", \"max_output_tokens\": 9, \"instructions\": \"Be brief.\", "
                                     "\"metadata\": {\"k\": \"v\"}}";

/* The response object, completed and incomplete. */
START_TEST(test_responses_answer)
{
    for (int cut = 0; cut < 2; cut++) {
        sasp_event evs[] = {ev_text("He"), ev_end("llo", cut ? "length" : "stop", cut ? SASP_END_LIMIT : SASP_END_EOS,
                                                  NULL, 5, 3)};
        char *all = answer(API_RESPONSES, RESP_BODY, evs, 2);
        json_t *j = json_loads(all, 0, NULL);
        ck_assert_ptr_nonnull(j);
        const char *id = json_string_value(json_object_get(j, "id"));
        ck_assert(!strncmp(id, "resp_", 5));
        ck_assert_str_eq(json_string_value(json_object_get(j, "object")), "response");
        ck_assert_int_eq(json_integer_value(json_object_get(j, "created_at")), 1700000000);
        ck_assert_str_eq(json_string_value(json_object_get(j, "status")), cut ? "incomplete" : "completed");
        json_t *details = json_object_get(j, "incomplete_details");
        if (cut) ck_assert_str_eq(json_string_value(json_object_get(details, "reason")), "max_output_tokens");
        else ck_assert(json_is_null(details));
        ck_assert(json_is_null(json_object_get(j, "error")));
        ck_assert_str_eq(json_string_value(json_object_get(j, "model")), "tiny");
        ck_assert_str_eq(json_string_value(json_object_get(j, "instructions")), "Be brief.");
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "metadata"), "k")), "v");
        ck_assert_int_eq(json_integer_value(json_object_get(j, "max_output_tokens")), 9);
        ck_assert(json_is_false(json_object_get(j, "store")));
        json_t *output = json_object_get(j, "output");
        ck_assert_int_eq((int)json_array_size(output), 1);
        json_t *item = json_array_get(output, 0);
        ck_assert_str_eq(json_string_value(json_object_get(item, "type")), "message");
        ck_assert_str_eq(json_string_value(json_object_get(item, "role")), "assistant");
        ck_assert_str_eq(json_string_value(json_object_get(item, "status")), cut ? "incomplete" : "completed");
        ck_assert(!strncmp(json_string_value(json_object_get(item, "id")), "msg_", 4));
        ck_assert_str_eq(json_string_value(json_object_get(item, "id")) + 4, id + 5);
        json_t *part = json_array_get(json_object_get(item, "content"), 0);
        ck_assert_str_eq(json_string_value(json_object_get(part, "type")), "output_text");
        ck_assert_str_eq(json_string_value(json_object_get(part, "text")), "Hello");
        ck_assert_int_eq((int)json_array_size(json_object_get(part, "annotations")), 0);
        json_t *u = json_object_get(j, "usage");
        ck_assert_int_eq(json_integer_value(json_object_get(u, "input_tokens")), 5);
        ck_assert_int_eq(json_integer_value(json_object_get(u, "output_tokens")), 3);
        ck_assert_int_eq(json_integer_value(json_object_get(u, "total_tokens")), 8);
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(u, "input_tokens_details"), "cached_tokens")), 2);
        json_decref(j);
        free(all);
    }
}
END_TEST

/* The Responses API's event sequence with consecutive sequence numbers, and response.failed. */
START_TEST(test_responses_stream)
{
    char body[512];
    snprintf(body, sizeof body, "%.*s, \"stream\": true}", (int)strlen(RESP_BODY) - 1, RESP_BODY);
    sasp_event evs[] = {ev_text("He"), ev_text(""), ev_end("y\xc3\xa9", "stop", SASP_END_EOS, NULL, 5, 3)};
    char *all = answer(API_RESPONSES, body, evs, 3);
    char names[16][40];
    json_t *d[16];
    int n = named_events(all, names, d, 16);
    static const char *const want[] = {
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"};
    ck_assert_int_eq(n, 10);
    const char *item_id = json_string_value(json_object_get(json_object_get(d[2], "item"), "id"));
    char text[32] = "";
    for (int i = 0; i < n; i++) {
        ck_assert_str_eq(names[i], want[i]);
        ck_assert_int_eq(json_integer_value(json_object_get(d[i], "sequence_number")), i);
        json_t *id = json_object_get(d[i], "item_id");
        if (id) ck_assert_str_eq(json_string_value(id), item_id);
        if (!strcmp(names[i], "response.output_text.delta")) strcat(text, json_string_value(json_object_get(d[i], "delta")));
    }
    ck_assert_str_eq(text, "Hey\xc3\xa9");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(d[0], "response"), "status")), "in_progress");
    ck_assert_int_eq((int)json_array_size(json_object_get(json_object_get(d[0], "response"), "output")), 0);
    ck_assert_str_eq(json_string_value(json_object_get(d[6], "text")), text);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(d[7], "part"), "text")), text);
    json_t *final = json_object_get(d[9], "response");
    ck_assert_str_eq(json_string_value(json_object_get(final, "status")), "completed");
    json_t *item = json_array_get(json_object_get(final, "output"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(item, "id")), item_id);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(item, "content"), 0), "text")), text);
    ck_assert(json_equal(item, json_object_get(d[8], "item")));
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(final, "usage"), "output_tokens")), 3);
    for (int i = 0; i < n; i++) json_decref(d[i]);
    free(all);

    sasp_event cut[] = {ev_end("x", "length", SASP_END_LIMIT, NULL, 5, 9)};
    all = answer(API_RESPONSES, body, cut, 1);
    n = named_events(all, names, d, 16);
    ck_assert_str_eq(names[n - 1], "response.incomplete");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(d[n - 1], "response"),
                                                                       "incomplete_details"),
                                                       "reason")),
                     "max_output_tokens");
    for (int i = 0; i < n; i++) json_decref(d[i]);
    free(all);

    sasp_event failed[] = {ev_end("engine down", "stop", SASP_END_STOPPED, NULL, 5, 0)};
    failed[0].error = 1;
    all = answer(API_RESPONSES, body, failed, 1);
    n = named_events(all, names, d, 16);
    ck_assert_int_eq(n, 5);
    ck_assert_str_eq(names[4], "response.failed");
    json_t *r = json_object_get(d[4], "response");
    ck_assert_str_eq(json_string_value(json_object_get(r, "status")), "failed");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "error"), "code")), "server_error");
    ck_assert(strstr(json_string_value(json_object_get(json_object_get(r, "error"), "message")), "engine down"));
    for (int i = 0; i < n; i++) json_decref(d[i]);
    free(all);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("api_dialects");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_messages_parse);
    tcase_add_test(tc, test_messages_rejects);
    tcase_add_test(tc, test_messages_count_tokens_and_errors);
    tcase_add_test(tc, test_responses_parse);
    tcase_add_test(tc, test_responses_rejects);
    tcase_add_test(tc, test_messages_answer);
    tcase_add_test(tc, test_messages_stream);
    tcase_add_test(tc, test_responses_answer);
    tcase_add_test(tc, test_responses_stream);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
