/* ollama.c: Ollama's dialects of a generation request (docs/api.md): /api/generate and /api/chat
 * with their "options" (each one honoured, accepted as having no effect on the output, or refused by
 * name), keep_alive and format (its answers are write.c's). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "base/util.h"

/* --- options --- */

/* The options that only say where and how fast the work runs (threads, GPUs, memory mapping, batch
 * size): the server's own settings decide those, the output is the same, so they are accepted and
 * listed in the answer's X-Sasp-Ignored-Options header. */
static const char *const placement_options[] = {
    "num_batch", "num_gpu", "main_gpu", "num_thread", "use_mmap", "use_mlock", "numa", "low_vram",
    "f16_kv", "vocab_only", "logits_all", "embedding_only", NULL};

/* The options that sampling reads (api_read_sampling: Ollama's own, and DRY's, which Ollama does not
 * have), and the ones read here. */
static const char *const honoured_options[] = {
    "temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty", "repetition_penalty",
    "repeat_last_n", "presence_penalty", "frequency_penalty", "dry_multiplier", "dry_base", "dry_allowed_length",
    "dry_penalty_last_n", "dry_sequence_breakers", "seed", "stop", "num_predict", "num_ctx", "num_keep",
    "ignore_eos", NULL};

static int listed(const char *const *list, const char *k)
{
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], k)) return 1;
    return 0;
}

/* An option whose only value we implement is the one that turns it off: accepted at that value,
 * refused (naming it and the value that works) at any other. */
static int check_neutral_option(json_t *opts, const char *k, double off, api_error *e)
{
    json_t *v = json_object_get(opts, k);
    if (!v || json_is_null(v)) return 0;
    double d = json_is_number(v) ? json_number_value(v) : json_is_boolean(v) ? json_is_true(v)
                                                                             : -1e300;
    if (d == off) return 0;
    api_bad(e, k, "option '%s' is not supported (only %g, which is off, is accepted)", k, off);
    return -1;
}

/* Each option is known: honoured, neutral at its off value, or placement (listed in r->ignored). */
static int check_option_names(json_t *opts, api_request *r, api_error *e)
{
    static const struct {
        const char *name;
        double off;
    } neutral[] = {
        {"tfs_z", 1}, {"mirostat", 0}, {"penalize_newline", 1}};
    const char *k;
    json_t *v;
    json_object_foreach (opts, k, v) {
        if (listed(honoured_options, k) || !strcmp(k, "mirostat_tau") || !strcmp(k, "mirostat_eta")) continue;
        int is_neutral = 0;
        for (size_t i = 0; i < sizeof neutral / sizeof *neutral; i++)
            if (!strcmp(k, neutral[i].name)) {
                if (check_neutral_option(opts, k, neutral[i].off, e)) return -1;
                is_neutral = 1;
            }
        if (is_neutral) continue;
        if (!listed(placement_options, k)) {
            api_bad(e, "options", "unknown option '%s'", k);
            return -1;
        }
        size_t used = strlen(r->ignored);
        snprintf(r->ignored + used, sizeof r->ignored - used, "%s%s", used ? ", " : "", k);
    }
    return 0;
}

/* num_ctx: fewer positions than the model serves are honoured (generation stops there); more are
 * refused, since the model was not trained for them. *n_ctx is the context the request works in. */
static int read_num_ctx(json_t *opts, const api_limits *lim, int *n_ctx, api_error *e)
{
    long long k;
    int got = api_get_int(opts, "num_ctx", &k, e);
    if (got <= 0) return got;
    if (k < 1 || k > lim->n_ctx) {
        api_bad(e, "num_ctx", "option 'num_ctx' must be between 1 and this model's context of %d tokens, got %lld",
                lim->n_ctx, k);
        return -1;
    }
    *n_ctx = (int)k;
    return 1;
}

/* Ollama's "options" object: the sampling fields, num_predict, num_ctx and stop honoured, the
 * options that only place the work accepted and listed in r->ignored, any other one refused by name. */
static int read_ollama_options(json_t *opts, api_request *r, const api_limits *lim, int *n_ctx, api_error *e)
{
    *n_ctx = lim->n_ctx;
    if (!opts || json_is_null(opts)) return 0;
    if (!json_is_object(opts)) {
        api_bad(e, "options", "'options' must be an object");
        return -1;
    }
    int keep;
    if (check_option_names(opts, r, e) || api_read_n_keep(opts, "num_keep", &keep, e) < 0 ||
        api_get_bool(opts, "ignore_eos", &r->gen.ignore_eos, e) < 0)
        return -1;
    if (api_read_sampling(opts, &r->gen.sampling, &r->seed_base, e)) return -1;
    if (read_num_ctx(opts, lim, n_ctx, e) < 0) return -1;
    if (*n_ctx < lim->n_ctx) r->gen.n_ctx = *n_ctx;
    return api_read_stop(opts, &r->gen, e);
}

/* A Go duration ("5m", "1h30m", "2.5s", "300ms", "0"), or a whole number of seconds ("300", "-1"),
 * into nanoseconds; -1 when it is none. */
static int parse_duration(const char *s, double *ns)
{
    if (!*s) return -1;
    static const struct {
        const char *unit;
        double ns;
    } units[] = {
        {"ns", 1}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
    int sign = *s == '-' ? -1 : 1;
    if (*s == '-' || *s == '+') s++;
    char *end;
    double whole = strtod(s, &end);
    if (end != s && !*end && strspn(s, "0123456789") == strlen(s)) { /* seconds */
        *ns = sign * whole * 1e9;
        return 0;
    }
    double total = 0;
    do {
        if (*s < '0' || *s > '9') {
            if (*s != '.') return -1;
        }
        double v = strtod(s, &end);
        if (end == s) return -1;
        s = end;
        size_t best = 0;
        double mult = 0;
        for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
            size_t n = strlen(units[i].unit);
            if (n > best && !strncmp(s, units[i].unit, n)) best = n, mult = units[i].ns;
        }
        if (!best) return -1;
        s += best;
        total += v * mult;
    } while (*s);
    *ns = sign * total;
    return 0;
}

static int read_keep_alive_ns(json_t *root, int64_t *ns, api_error *e)
{
    json_t *v = json_object_get(root, "keep_alive");
    if (!v || json_is_null(v)) return 0;
    if (json_is_number(v)) {
        double d = json_number_value(v) * 1e9;
        *ns = d < 0 ? -1 : d > 9e18 ? INT64_MAX
                                    : (int64_t)d;
        return 1;
    }
    if (json_is_string(v) && api_parse_keep_alive(json_string_value(v), ns) == 0) return 1;
    api_bad(e, "keep_alive", "'keep_alive' must be a duration (\"5m\", \"1h30m\", \"0\") or a number of "
                             "seconds (-1: for ever)");
    return -1;
}

int api_parse_keep_alive(const char *s, int64_t *ns)
{
    double d;
    if (parse_duration(s, &d) != 0) return -1;
    *ns = d < 0 ? -1 : d > 9e18 ? INT64_MAX
                                : (int64_t)d;
    return 0;
}

/* Whether an Ollama request asks for nothing to be generated (no prompt nor context; no messages):
 * it only loads, or with keep_alive 0 unloads, the model. */
static int asks_nothing(json_t *root, int chat)
{
    if (chat) {
        json_t *msgs = json_object_get(root, "messages");
        return !msgs || json_is_null(msgs) || (json_is_array(msgs) && json_array_size(msgs) == 0);
    }
    json_t *prompt = json_object_get(root, "prompt"), *ctx = json_object_get(root, "context");
    return (!prompt || json_is_null(prompt) || (json_is_string(prompt) && !json_string_length(prompt))) &&
           json_array_size(ctx) == 0;
}

int api_ollama_keep_alive(const char *body, size_t len, int chat, int64_t *ns, int *empty, api_error *e)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    int rc = json_is_object(root) ? read_keep_alive_ns(root, ns, e) : 0;
    *empty = json_is_object(root) && asks_nothing(root, chat);
    json_decref(root);
    return rc;
}

/* keep_alive: 0 with no prompt is answered "unload" (server/ unloads the model: the HTTP layer reads
 * keep_alive with api_ollama_keep_alive before the model is loaded). */
static int read_keep_alive(json_t *root, api_request *r, api_error *e)
{
    int64_t ns;
    int rc = read_keep_alive_ns(root, &ns, e);
    r->unload = rc == 1 && ns == 0;
    return rc < 0 ? -1 : 0;
}

/* The fields both Ollama endpoints read, in Ollama's order: the top level's own sampling fields,
 * then options (which win), the length, keep_alive, format, what is refused. *n_ctx: the request's
 * context (num_ctx). */
static int read_ollama_common(json_t *root, const api_limits *lim, api_request *r, int *n_ctx, api_error *e)
{
    if (api_read_common(root, r, e) || api_refuse_unsupported(root, r->kind, lim, e)) return -1;
    json_t *opts = json_object_get(root, "options");
    if (read_ollama_options(opts, r, lim, n_ctx, e)) return -1;
    api_limits in_ctx = *lim;
    in_ctx.n_ctx = *n_ctx;
    r->gen.max_tokens = *n_ctx;
    json_t *from = json_is_object(opts) && json_object_get(opts, "num_predict") ? opts : root;
    if (api_read_max_tokens(from, "num_predict", API_UNTIL_FULL, &in_ctx, &r->gen.max_tokens, e) < 0) return -1;
    if (api_read_stop(root, &r->gen, e) || read_keep_alive(root, r, e)) return -1;
    if (api_get_bool(root, "ignore_eos", &r->gen.ignore_eos, e) < 0) return -1;
    return api_read_ollama_format(root, r, e);
}

/* --- /api/generate --- */

/* Ollama's context (the ids an earlier answer returned) goes before the prompt's ids; an empty
 * prompt's BOS token is not needed after it. */
static int prepend_context(api_request *r, json_t *ctx, int empty_prompt, const api_limits *lim, api_error *e)
{
    size_t nc = json_array_size(ctx), i;
    int *ids = malloc((nc + (size_t)r->n_prompt[0]) * sizeof *ids);
    if (!ids) return -1;
    json_t *v;
    json_array_foreach (ctx, i, v) {
        long long id = json_integer_value(v);
        if (id < 0 || id >= lim->vocab) {
            free(ids);
            api_bad(e, "context", "token ids must be in [0, %d)", lim->vocab);
            return -1;
        }
        ids[i] = (int)id;
    }
    int np = empty_prompt ? 0 : r->n_prompt[0];
    memcpy(ids + nc, r->prompt[0], (size_t)np * sizeof *ids);
    free(r->prompt[0]);
    r->prompt[0] = ids;
    r->n_prompt[0] = (int)nc + np;
    return 0;
}

/* Ollama's prompt: "system\n\n" (unless raw) then prompt, after the context's ids. */
static int read_generate_prompt(json_t *root, api_request *r, const api_limits *lim, api_error *e)
{
    const char *prompt = "", *system = NULL;
    int raw = 0;
    if (api_get_str(root, "prompt", &prompt, e) < 0 || api_get_str(root, "system", &system, e) < 0 ||
        api_get_bool(root, "raw", &raw, e) < 0)
        return -1;
    json_t *ctx = json_object_get(root, "context");
    if (ctx && !json_is_null(ctx) && (!json_is_array(ctx) || !api_all_of(ctx, api_is_int))) {
        api_bad(e, "context", "'context' must be an array of token ids");
        return -1;
    }
    r->empty = prompt[0] == 0 && json_array_size(ctx) == 0;
    sasp_buf text = {0};
    if (system && system[0] && !raw) {
        sasp_buf_puts(&text, system);
        sasp_buf_puts(&text, "\n\n");
    }
    sasp_buf_puts(&text, prompt);
    size_t tn;
    char *t = sasp_buf_take(&text, &tn);
    if (!t) return -1;
    int failed = api_add_text_prompt(r, t, tn, lim, e);
    free(t);
    if (failed) return -1;
    if (prompt[0] == 0) r->text_prompt = 0; /* the context's ids alone: nothing to heal */
    return json_array_size(ctx) ? prepend_context(r, ctx, prompt[0] == 0, lim, e) : 0;
}

/* A prompt beyond the context (num_ctx) is cut as Ollama cuts it, keeping num_keep tokens (Ollama's
 * default, 4) and the end (unless "truncate": false); with a suffix it is a fill-in-the-middle prompt. */
static int fit_generate_prompt(json_t *root, api_request *r, const api_limits *in_ctx, api_error *e)
{
    int truncate, num_keep = 4;
    json_t *opts = json_object_get(root, "options");
    if (api_read_truncation(root, 1, &truncate, e) || (json_is_object(opts) && api_read_n_keep(opts, "num_keep", &num_keep, e) < 0))
        return -1;
    if (api_apply_suffix(root, r, in_ctx, truncate, e) < 0) return -1;
    if (r->infill) return 0;
    return api_fit_prompts(r, truncate, num_keep, "prompt", in_ctx, e);
}

int api_parse_generate(json_t *root, const api_limits *lim, api_request *r, api_error *e)
{
    int n_ctx;
    if (read_ollama_common(root, lim, r, &n_ctx, e)) return -1;
    int n_stops = r->gen.n_stop;
    if (read_generate_prompt(root, r, lim, e) || api_read_token_healing(root, r, e)) return -1;
    api_limits in_ctx = *lim;
    in_ctx.n_ctx = n_ctx;
    if (!r->empty && fit_generate_prompt(root, r, &in_ctx, e)) return -1;
    if (api_check_sequences(r, "prompt", &in_ctx, e)) return -1;
    if (!r->empty && api_check_json_budget(r, &in_ctx, n_stops, e)) return -1;
    /* the prompt's ids come back in the answer's "context" */
    r->context = malloc((size_t)r->n_prompt[0] * sizeof *r->context);
    if (r->context) memcpy(r->context, r->prompt[0], (size_t)r->n_prompt[0] * sizeof *r->context);
    return r->context ? 0 : -1;
}

/* --- /api/chat --- */

int api_parse_ollama_chat(json_t *root, const api_limits *lim, api_request *r, api_error *e)
{
    int n_ctx;
    if (read_ollama_common(root, lim, r, &n_ctx, e)) return -1;
    int n_stops = r->gen.n_stop;
    if (asks_nothing(root, 1)) {
        r->empty = 1; /* Ollama: no messages only loads (or unloads) the model */
        return 0;
    }
    if (api_add_chat_prompt(json_object_get(root, "messages"), 0, r, lim, e)) return -1;
    api_limits in_ctx = *lim;
    in_ctx.n_ctx = n_ctx;
    if (api_check_sequences(r, "messages", &in_ctx, e)) return -1;
    return api_check_json_budget(r, &in_ctx, n_stops, e);
}
