/* fuzz_api.c: fuzz target of the request parser (src/api/): a request body into generation
 * parameters, for each endpoint, and the /tokenize and /detokenize bodies. The first input byte picks
 * the endpoint (OpenAI completions and chat, Ollama generate and chat, /tokenize, /detokenize; from
 * 0xf0 on llama.cpp's /completion and /infill, with the tokenizer that has the FIM tokens), the rest
 * is the body. Checks what the server relies on after a successful parse (ids in the vocabulary,
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
    char *body = api_error_body(e);
    FUZZ_CHECK(body != NULL);
    json_error_t je;
    json_t *j = json_loads(body, JSON_ALLOW_NUL, &je);
    FUZZ_CHECK(j != NULL && json_is_object(json_object_get(j, "error")));
    json_decref(j);
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tok) setup();
    if (size < 1) return 0;
    int llama = data[0] >= 0xf0, which = llama ? 6 + data[0] % 2 : data[0] % 6;
    const api_limits lim = llama ? fim_lim : plain_lim;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    api_error e;
    memset(&e, 0, sizeof e);
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
                                     API_OLLAMA_CHAT, API_LLAMA_COMPLETION, API_INFILL};
    api_kind kind = kinds[which];
    api_request r;
    if (api_parse(kind, body, len, &lim, 42, &r, &e) == 0) {
        FUZZ_CHECK(r.empty || (r.n_seqs >= 1 && r.n_seqs <= API_MAX_SEQS));
        FUZZ_CHECK(r.gen.max_tokens >= (r.gen.prompt_logprobs || llama ? 0 : 1) && r.gen.max_tokens <= lim.n_ctx);
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
