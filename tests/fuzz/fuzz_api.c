/* fuzz_api.c: fuzz target of the request parser (src/api.c): a request body into generation
 * parameters, for each endpoint, and the /tokenize and /detokenize bodies. The first input byte picks
 * the endpoint, the rest is the body. Checks what the server relies on after a successful parse (ids
 * in the vocabulary, prompts within the context, bounded counts), and that every failure carries a
 * 4xx status and a JSON error body. Tokenizer and limits: tests/fixtures/tiny-model, as the server
 * tests use them. */
#include <jansson.h>
#include <string.h>
#include "api.h"
#include "fuzz.h"

static sasp_tokenizer *tok;
static api_limits lim;

static void setup(void)
{
    tok = fuzz_load_tokenizer("tests/fixtures/tiny-model/tokenizer.json", "fuzz_api");
    lim = (api_limits){tok, 256, sasp_tokenizer_vocab_size(tok), 0};
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
    int which = data[0] % 5;
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
    api_kind kind = which == 0 ? API_COMPLETIONS : which == 1 ? API_CHAT : API_GENERATE;
    api_request r;
    if (api_parse(kind, body, len, &lim, 42, &r, &e) == 0) {
        FUZZ_CHECK(r.empty || (r.n_seqs >= 1 && r.n_seqs <= API_MAX_SEQS));
        FUZZ_CHECK(r.gen.max_tokens >= 1 && r.gen.max_tokens <= lim.n_ctx);
        FUZZ_CHECK(r.gen.n_stop >= 0 && r.gen.n_stop <= SASP_MAX_STOPS);
        FUZZ_CHECK(r.gen.top_logprobs >= 0 && r.gen.top_logprobs <= SASP_MAX_TOP_LOGPROBS);
        for (int i = 0; i < r.gen.n_stop; i++) FUZZ_CHECK(r.gen.stop[i] && r.gen.stop[i][0]);
        for (int i = 0; i < r.n_seqs; i++) {
            FUZZ_CHECK(r.n_prompt[i] >= 0 && r.n_prompt[i] <= lim.n_ctx);
            FUZZ_CHECK(r.n_prompt[i] == 0 || r.prompt[i] != NULL);
            for (int k = 0; k < r.n_prompt[i]; k++) FUZZ_CHECK(r.prompt[i][k] >= 0 && r.prompt[i][k] < lim.vocab);
            if (r.prompt_text[i]) FUZZ_CHECK(api_utf8_valid(r.prompt_text[i], strlen(r.prompt_text[i])));
        }
    } else {
        check_error(&e);
    }
    api_request_free(&r);
    return 0;
}
