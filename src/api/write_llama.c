/* write_llama.c: llama.cpp's native answers, as its server's README shows them. /completion and
 * /infill: streamed, one server-sent event per piece of text {"index", "content", "tokens", "stop":
 * false, "id_slot", "tokens_predicted", "tokens_evaluated"}, then the final object, and no "[DONE]";
 * not streamed, the final object alone: "content", "tokens" (with return_tokens), "id_slot", "stop":
 * true, "model", "tokens_predicted", "tokens_evaluated", "generation_settings", "prompt",
 * "has_new_line", "truncated", "stop_type", "stopping_word", "tokens_cached", "timings" (cache_n,
 * prompt_n, prompt_ms, predicted_n, predicted_ms and their rates), sasp's "tokens_dropped" (prompt
 * tokens cut to fit the context), and "completion_probabilities" with n_probs; response_fields picks
 * fields of it. Also the slot objects of /slots and the default settings of /props. */
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

/* The sampling parameters in llama.cpp's names, and the chain ("samplers", llama.cpp's names in its
 * order). */
static json_t *sampling_json(const sasp_sampling *p, int n_predict)
{
    json_t *samplers = json_array(), *breakers = json_array();
    for (int i = 0; i < p->n_chain; i++) json_array_append_new(samplers, json_string(sasp_sampler_names[p->chain[i]]));
    for (int i = 0; i < p->n_dry_breakers; i++) {
        size_t len;
        const char *b = sasp_sampling_breaker(p, i, &len);
        json_array_append_new(breakers, api_json_text(b, len));
    }
    json_t *j = json_pack("{s:i,s:i,s:f,s:f,s:f,s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:i}", "n_predict", n_predict,
                          "max_tokens", n_predict, "temperature", (double)p->temperature, "dynatemp_range",
                          (double)p->dynatemp_range, "dynatemp_exponent", (double)p->dynatemp_exponent, "top_k",
                          p->top_k, "top_p", (double)p->top_p, "min_p", (double)p->min_p, "top_n_sigma",
                          (double)p->top_n_sigma, "xtc_probability", (double)p->xtc_probability, "xtc_threshold",
                          (double)p->xtc_threshold, "typical_p", (double)p->typical_p, "min_keep", p->min_keep);
    json_t *pen = json_pack("{s:i,s:f,s:f,s:f,s:f,s:f,s:i,s:i,s:o,s:i,s:i}", "repeat_last_n", p->repeat_last_n,
                            "repeat_penalty", (double)p->repeat_penalty, "presence_penalty",
                            (double)p->presence_penalty, "frequency_penalty", (double)p->frequency_penalty,
                            "dry_multiplier", (double)p->dry_multiplier, "dry_base", (double)p->dry_base,
                            "dry_allowed_length", p->dry_allowed_length, "dry_penalty_last_n", p->dry_penalty_last_n,
                            "dry_sequence_breakers", breakers, "mirostat", 0, "n_discard", 0);
    json_object_update(j, pen);
    json_decref(pen);
    json_object_set_new(j, "samplers", samplers);
    return j;
}

json_t *api_llama_settings(const api_request *r)
{
    json_t *j = sampling_json(&r->gen.sampling, r->gen.max_tokens), *stop = json_array();
    for (int k = 0; k < r->gen.n_stop; k++) json_array_append_new(stop, json_string(r->gen.stop[k]));
    json_t *more = json_pack("{s:I,s:o,s:b,s:b,s:i,s:b,s:i,s:I,s:b}", "seed", (json_int_t)r->seed_base, "stop", stop,
                             "ignore_eos", r->gen.ignore_eos, "stream", r->stream, "n_probs", r->n_probs,
                             "post_sampling_probs", r->gen.post_sampling_probs, "n_indent", r->gen.n_indent,
                             "t_max_predict_ms", (json_int_t)r->gen.t_max_predict_ms, "cache_prompt", !r->gen.no_cache);
    json_object_update(j, more);
    json_decref(more);
    return j;
}

/* One token's entry: id, token, bytes (less the skip bytes that token healing left in the prompt) and
 * its "logprob", or with post_sampling_probs its "prob". */
static json_t *prob_entry(const api_out *o, int id, int skip, float logprob)
{
    json_t *j = json_pack("{s:i,s:o,s:o}", "id", id, "token", api_token_string(o->tok, id, skip), "bytes",
                          api_token_bytes(o->tok, id, skip));
    if (o->post_sampling_probs) json_object_set_new(j, "prob", json_real(exp((double)logprob)));
    else json_object_set_new(j, "logprob", json_real(isfinite(logprob) ? (double)logprob : -FLT_MAX));
    return j;
}

json_t *api_llama_probs(api_out *o, const sasp_event *ev, json_t *acc)
{
    if (!o->n_probs || !ev->info) return acc;
    json_t *arr = acc ? acc : json_array();
    for (int i = 0; i < ev->n_ids; i++) {
        const sasp_token_info *ti = &ev->info[i];
        json_t *top = json_array(), *j = prob_entry(o, ti->id, ti->skip, ti->logprob);
        for (int k = 0; k < ti->n_top; k++) json_array_append_new(top, prob_entry(o, ti->top[k].id, 0, ti->top[k].logprob));
        json_object_set_new(j, o->post_sampling_probs ? "top_probs" : "top_logprobs", top);
        json_array_append_new(arr, j);
    }
    return arr;
}

/* llama.cpp's timings: the prompt's tokens computed (prompt_n) and served from the cache (cache_n),
 * the generated ones, and the times, in milliseconds. */
static json_t *timings_json(const api_choice *c)
{
    int prompt_n = c->prompt_tokens - c->cached_tokens, predicted_n = c->completion_tokens;
    double prompt_ms = (double)c->prompt_ns * 1e-6, predicted_ms = (double)c->eval_ns * 1e-6;
    return json_pack("{s:i,s:i,s:f,s:f,s:f,s:i,s:f,s:f,s:f}", "cache_n", c->cached_tokens, "prompt_n", prompt_n,
                     "prompt_ms", prompt_ms, "prompt_per_token_ms", prompt_n ? prompt_ms / prompt_n : 0.0,
                     "prompt_per_second", prompt_ms > 0 ? 1e3 * prompt_n / prompt_ms : 0.0, "predicted_n", predicted_n,
                     "predicted_ms", predicted_ms, "predicted_per_token_ms",
                     predicted_n ? predicted_ms / predicted_n : 0.0, "predicted_per_second",
                     predicted_ms > 0 ? 1e3 * predicted_n / predicted_ms : 0.0);
}

static const char *stop_type(int end)
{
    switch (end) {
    case SASP_END_EOS:
    case SASP_END_DOCUMENT: return "eos";
    case SASP_END_WORD: return "word";
    case SASP_END_LIMIT:
    case SASP_END_CONTEXT: return "limit";
    default: return "none";
    }
}

static json_t *ids_json(const int *ids, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    return a;
}

/* response_fields: each path ("timings/prompt_n") that leads to a value, under the path's name. */
static json_t *pick_fields(json_t *j, char *const *fields, int n)
{
    json_t *out = json_object();
    for (int i = 0; i < n; i++) {
        json_t *v = j;
        char path[256];
        snprintf(path, sizeof path, "%s", fields[i]);
        for (char *save = NULL, *k = strtok_r(path, "/", &save); k && v; k = strtok_r(NULL, "/", &save))
            v = json_is_object(v) ? json_object_get(v, k) : NULL;
        if (v) json_object_set(out, fields[i], v);
    }
    json_decref(j);
    return out;
}

/* The final object of choice i (content: its whole text, or "" when streamed). */
static json_t *final_object(api_out *o, int i, const char *content, size_t len)
{
    api_choice *c = &o->ch[i];
    json_t *j = json_pack("{s:i,s:o,s:o,s:i,s:b,s:s,s:i,s:i,s:O,s:o,s:b}", "index", i, "content",
                          api_json_text(content, len), "tokens", o->return_tokens ? ids_json(c->ids, c->n_ids) : json_array(),
                          "id_slot", c->slot, "stop", 1, "model", o->model, "tokens_predicted", c->completion_tokens,
                          "tokens_evaluated", c->prompt_tokens, "generation_settings", o->settings, "prompt",
                          api_json_text(o->prompt_text[i], strlen(o->prompt_text[i])), "has_new_line", c->has_new_line);
    json_t *end = json_pack("{s:b,s:s,s:s,s:i,s:i,s:o}", "truncated", c->dropped_tokens > 0 || c->end == SASP_END_CONTEXT,
                            "stop_type", stop_type(c->end), "stopping_word", c->stop_word ? c->stop_word : "",
                            "tokens_cached", c->cached_tokens, "tokens_dropped", c->dropped_tokens, "timings",
                            timings_json(c));
    json_object_update(j, end);
    json_decref(end);
    if (!o->stream && c->lp) json_object_set(j, "completion_probabilities", c->lp);
    return o->fields ? pick_fields(j, o->fields, o->n_fields) : j;
}

void api_llama_event(api_out *o, api_choice *c, const sasp_event *ev, const char *text, size_t tl, sasp_buf *b)
{
    if (tl || (ev->n_ids && !ev->done)) {
        json_t *j = json_pack("{s:i,s:o,s:o,s:b,s:i,s:i,s:i}", "index", ev->index, "content", api_json_text(text, tl),
                              "tokens", ids_json(ev->ids, ev->n_ids), "stop", 0, "id_slot", ev->slot,
                              "tokens_predicted", c->n_ids, "tokens_evaluated", c->prompt_tokens);
        json_t *probs = api_llama_probs(o, ev, NULL);
        if (probs) json_object_set_new(j, "completion_probabilities", probs);
        api_emit(b, o->kind, j);
    }
    if (ev->done) api_emit(b, o->kind, final_object(o, ev->index, "", 0));
}

json_t *api_llama_answer(api_out *o)
{
    api_choice *c = &o->ch[0];
    return final_object(o, 0, c->text.data ? c->text.data : "", c->text.len);
}

/* --- /slots and /props --- */

json_t *api_slot_json(const sasp_slot_info *s)
{
    int busy = strcmp(s->state, "idle") != 0;
    json_t *params = sampling_json(&s->sampling, s->max_tokens);
    json_t *next = json_pack("{s:b,s:b,s:i,s:i}", "has_next_token", busy, "has_new_line", 0, "n_remain",
                             busy ? s->max_tokens - s->n_generated : -1, "n_decoded", s->n_generated);
    json_t *j = json_pack("{s:i,s:I,s:i,s:b,s:b,s:s,s:i,s:i,s:i,s:i,s:i}", "id", s->id, "id_task",
                          s->task ? (json_int_t)s->task : (json_int_t)-1, "n_ctx", s->n_ctx, "speculative", 0,
                          "is_processing", busy, "state", s->state, "n_prompt", s->n_prompt, "n_past", s->n_past,
                          "n_generated", s->n_generated, "n_cached", s->n_cached, "n_reused", s->n_reused);
    json_object_set_new(j, "params", params);
    json_object_set_new(j, "next_token", next);
    return j;
}

json_t *api_llama_default_settings(int n_ctx)
{
    sasp_sampling d;
    sasp_sampling_defaults(&d);
    json_t *params = sampling_json(&d, -1);
    json_object_set_new(params, "seed", json_integer(-1));
    json_object_set_new(params, "stream", json_false());
    json_object_set_new(params, "cache_prompt", json_true());
    json_t *next = json_pack("{s:b,s:b,s:i,s:i}", "has_next_token", 1, "has_new_line", 0, "n_remain", -1,
                             "n_decoded", 0);
    return json_pack("{s:i,s:i,s:i,s:b,s:b,s:o,s:s,s:o}", "id", 0, "id_task", -1, "n_ctx", n_ctx, "speculative", 0,
                     "is_processing", 0, "params", params, "prompt", "", "next_token", next);
}
