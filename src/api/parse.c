/* parse.c: a generation request's body into an api_request, by dialect (api.h): api_parse sets what
 * every request starts from, reads the body as a JSON object and hands it to its dialect's parser
 * (openai.c, ollama.c, llama.c, anthropic.c, responses.c), which read the fields in their own order with the readers below them
 * (read.c, prompt.c, infill.c, truncate.c, checks.c); api_request_free, and the model a body names
 * before it is parsed. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

int api_parse(api_kind kind, const char *body, size_t len, const api_limits *lim, uint64_t random_seed,
              api_request *r, api_error *e)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->stream = api_kind_is_ollama(kind); /* Ollama streams by default, OpenAI does not */
    r->n_choices = 1;
    r->seed_base = random_seed; /* unless the request names a seed */
    sasp_sampling_defaults(&r->gen.sampling);
    r->gen.max_tokens = kind == API_COMPLETIONS ? 16 : lim->n_ctx;
    json_t *root = api_parse_body(body, len, e);
    if (!root) return -1;
    int rc = kind == API_COMPLETIONS        ? api_parse_completions(root, lim, r, e)
             : kind == API_CHAT             ? api_parse_chat(root, lim, r, e)
             : kind == API_GENERATE         ? api_parse_generate(root, lim, r, e)
             : kind == API_OLLAMA_CHAT      ? api_parse_ollama_chat(root, lim, r, e)
             : kind == API_LLAMA_COMPLETION ? api_parse_llama_completion(root, lim, r, e)
             : kind == API_MESSAGES         ? api_parse_messages(root, lim, r, e)
             : kind == API_RESPONSES        ? api_parse_responses(root, lim, r, e)
                                            : api_parse_infill(root, lim, r, e);
    json_decref(root);
    if (rc) {
        if (e->status == 0) api_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    r->gen.sampling.seed = r->seed_base;
    return 0;
}

void api_request_free(api_request *r)
{
    for (int i = 0; i < r->n_seqs; i++) {
        free(r->prompt[i]);
        free(r->prompt_text[i]);
    }
    free(r->prompt);
    free(r->n_prompt);
    free(r->prompt_text);
    free(r->context);
    for (int i = 0; r->heal_text && i < API_MAX_SEQS; i++) free(r->heal_text[i]);
    free(r->heal_text);
    free(r->heal_len);
    for (int i = 0; i < r->n_response_fields; i++) free(r->response_fields[i]);
    free(r->response_fields);
    for (int i = 0; i < r->gen.n_stop; i++) free(r->gen.stop[i]);
    free((void *)r->gen.logit_bias);
    sasp_json_schema_free(r->schema);
    json_decref(r->repeats);
    memset(r, 0, sizeof *r);
}

int api_requested_model(const char *body, size_t len, int with_name, char *out, size_t outlen)
{
    out[0] = 0;
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *m = json_object_get(root, "model");
    if (!json_is_string(m) && with_name) m = json_object_get(root, "name");
    int named = json_is_string(m) && json_string_length(m) > 0;
    if (named) snprintf(out, outlen, "%s", json_string_value(m));
    json_decref(root);
    return named;
}
