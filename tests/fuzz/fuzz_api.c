/* fuzz_api.c: fuzz target of the request parser (src/api/): a request body into generation
 * parameters, for each endpoint, and the /tokenize and /detokenize bodies. The first input byte picks
 * the endpoint (OpenAI completions and chat, Ollama generate and chat, /tokenize, /detokenize; from
 * 0xe0 Anthropic's messages, OpenAI's responses and Anthropic's count_tokens; from 0xf0 on llama.cpp's
 * /completion and /infill, with the tokenizer that has the FIM tokens), the rest is the body. Checks what the server relies on after a successful parse (ids in the vocabulary,
 * prompts within the context, bounded counts, healed bytes only for fill-in-the-middle prompts), and
 * that every failure carries a 4xx status and a JSON error body. Tokenizers and limits:
 * tests/fixtures/tiny-model and tiny-fim, as the server tests use them. */
#include <jansson.h>
#include <string.h>
#include "api/api.h"
#include "fuzz.h"

static sasp_tokenizer *tok, *fim_tok;
static api_limits plain_lim, fim_lim;

static void setup(void)
{
    tok = fuzz_load_tokenizer("tests/fixtures/tiny-model/tokenizer.json", "fuzz_api");
    fim_tok = fuzz_load_tokenizer("tests/fixtures/tiny-fim/tokenizer.json", "fuzz_api");
    plain_lim = (api_limits){tok, 256, sasp_tokenizer_vocab_size(tok), 0, "tiny-model"};
    fim_lim = (api_limits){fim_tok, 96, sasp_tokenizer_vocab_size(fim_tok), 0, "tiny-fim"};
}

static void check_error(const api_error *e)
{
    FUZZ_CHECK(e->status >= 400 && e->status < 600);
    FUZZ_CHECK(e->status != 500); /* 500 is only out of memory, which the fuzzer does not provoke */
    FUZZ_CHECK(e->type != NULL);
    FUZZ_CHECK(memchr(e->message, 0, sizeof e->message) != NULL);
    for (int anthropic = 0; anthropic < 2; anthropic++) {
        char *body = anthropic ? api_error_body_anthropic(e) : api_error_body(e);
        FUZZ_CHECK(body != NULL);
        json_error_t je;
        json_t *j = json_loads(body, JSON_ALLOW_NUL, &je);
        FUZZ_CHECK(j != NULL && json_is_object(json_object_get(j, "error")));
        FUZZ_CHECK(!anthropic || json_is_string(json_object_get(json_object_get(j, "error"), "type")));
        json_decref(j);
        free(body);
    }
}

/* /v1/messages/count_tokens: {"input_tokens": n >= 1}, or an error. */
static void count_tokens(const char *body, size_t len, const api_limits *lim)
{
    api_error e;
    memset(&e, 0, sizeof e);
    char *out = api_count_message_tokens(body, len, lim, &e);
    if (!out) {
        check_error(&e);
        return;
    }
    json_t *j = json_loads(out, 0, NULL);
    FUZZ_CHECK(j != NULL && json_integer_value(json_object_get(j, "input_tokens")) >= 1);
    json_decref(j);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tok) setup();
    if (size < 1) return 0;
    int llama = data[0] >= 0xf0, dialect = data[0] >= 0xe0 && !llama;
    int which = llama ? 6 + data[0] % 2 : dialect ? 8 + (data[0] - 0xe0) % 3
                                                  : data[0] % 6;
    const api_limits lim = llama ? fim_lim : plain_lim;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    api_error e;
    memset(&e, 0, sizeof e);
    if (which == 10) {
        count_tokens(body, len, &lim);
        return 0;
    }
    if (which == 3 || which == 4) {
        char *out = which == 3 ? api_tokenize(body, len, &lim, &e) : api_detokenize(body, len, &lim, &e);
        if (!out) {
            check_error(&e);
            return 0;
        }
        json_error_t je;
        json_t *j = json_loads(out, JSON_ALLOW_NUL, &je); /* "\u0000" is valid JSON */
        FUZZ_CHECK(j != NULL);
        json_decref(j);
        free(out);
        return 0;
    }
    static const api_kind kinds[] = {API_COMPLETIONS, API_CHAT, API_GENERATE, API_OLLAMA_CHAT, API_OLLAMA_CHAT,
                                     API_OLLAMA_CHAT, API_LLAMA_COMPLETION, API_INFILL, API_MESSAGES, API_RESPONSES};
    api_kind kind = kinds[which];
    api_request r;
    if (api_parse(kind, body, len, &lim, 42, &r, &e) == 0) {
        FUZZ_CHECK(r.empty || (r.n_seqs >= 1 && r.n_seqs <= API_MAX_SEQS));
        FUZZ_CHECK(r.gen.max_tokens >= (r.gen.prompt_logprobs || llama || kind == API_MESSAGES ? 0 : 1) &&
                   r.gen.max_tokens <= lim.n_ctx);
        FUZZ_CHECK(!r.gen.json || r.gen.json == r.schema);
        FUZZ_CHECK(r.gen.n_logit_bias >= 0 && r.gen.n_logit_bias <= API_MAX_LOGIT_BIAS);
        for (int i = 0; i < r.gen.n_logit_bias; i++)
            FUZZ_CHECK(r.gen.logit_bias[i].id >= 0 && r.gen.logit_bias[i].id < lim.vocab);
        FUZZ_CHECK(!r.gen.token_healing || (r.text_prompt && !r.gen.json && !r.echo));
        FUZZ_CHECK(r.gen.n_stop >= 0 && r.gen.n_stop <= SASP_MAX_STOPS);
        FUZZ_CHECK(r.gen.top_logprobs >= 0 && r.gen.top_logprobs <= SASP_MAX_TOP_LOGPROBS);
        for (int i = 0; i < r.gen.n_stop; i++) FUZZ_CHECK(r.gen.stop[i] && r.gen.stop[i][0]);
        for (int i = 0; i < r.n_seqs; i++) {
            FUZZ_CHECK(r.n_prompt[i] >= 0 && r.n_prompt[i] <= lim.n_ctx);
            FUZZ_CHECK(r.n_prompt[i] == 0 || r.prompt[i] != NULL);
            for (int k = 0; k < r.n_prompt[i]; k++) FUZZ_CHECK(r.prompt[i][k] >= 0 && r.prompt[i][k] < lim.vocab);
            if (r.prompt_text[i]) FUZZ_CHECK(api_utf8_valid(r.prompt_text[i], strlen(r.prompt_text[i])));
            FUZZ_CHECK(r.infill || !r.heal_text || !r.heal_text[i]);
        }
        FUZZ_CHECK(r.n_dropped >= 0);
    } else {
        check_error(&e);
    }
    api_request_free(&r);
    return 0;
}
