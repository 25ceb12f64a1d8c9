/* sampling.c: the sampling fields of a request, read the same way for every dialect (OpenAI's
 * extra fields, llama.cpp's /completion and /infill, Ollama's options): OpenAI's names and llama.cpp's,
 * the DRY fields and sequence breakers, and "samplers" (the chain's order). Each is checked and a bad
 * value is a 400 naming it. sampler.h is what the fields mean; docs/api.md the user's description. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

/* An integer field >= lo (capped at 2^30) into *out; hint says what the small values mean. */
static int read_int_from(json_t *o, const char *name, long long lo, const char *hint, int *out, api_error *e)
{
    long long k;
    int got = api_get_int(o, name, &k, e);
    if (got <= 0) return got;
    if (k < lo) {
        api_bad(e, name, "'%s' must be >= %lld%s, got %lld", name, lo, hint, k);
        return -1;
    }
    *out = k > 1 << 30 ? 1 << 30 : (int)k;
    return 1;
}

/* The truncation samplers and temperature: OpenAI's and llama.cpp's names. */
static int read_truncation(json_t *o, sasp_sampling *p, api_error *e)
{
    if (api_get_range(o, "temperature", &p->temperature, 0, 0, 1e9, 0, e) < 0) return -1;
    if (api_get_range(o, "dynatemp_range", &p->dynatemp_range, 0, 0, 1e9, 0, e) < 0) return -1;
    if (api_get_range(o, "dynatemp_exponent", &p->dynatemp_exponent, 0, 0, 1e9, 0, e) < 0) return -1;
    if (api_get_range(o, "top_p", &p->top_p, 0, 1, 1, 0, e) < 0) return -1;
    if (api_get_range(o, "min_p", &p->min_p, 0, 0, 1, 0, e) < 0) return -1;
    if (read_int_from(o, "top_k", 0, " (0 = off)", &p->top_k, e) < 0) return -1;
    if (api_get_range(o, "typical_p", &p->typical_p, 0, 0, 1, 0, e) < 0) return -1;
    if (api_get_range(o, "typ_p", &p->typical_p, 0, 0, 1, 0, e) < 0) return -1;
    if (api_get_range(o, "top_n_sigma", &p->top_n_sigma, -1e30, 0, 1e9, 0, e) < 0) return -1;
    if (api_get_range(o, "xtc_probability", &p->xtc_probability, 0, 0, 1, 0, e) < 0) return -1;
    if (api_get_range(o, "xtc_threshold", &p->xtc_threshold, 0, 0, 1, 0, e) < 0) return -1;
    return read_int_from(o, "min_keep", 0, "", &p->min_keep, e) < 0 ? -1 : 0;
}

/* The repetition, frequency and presence penalties. */
static int read_penalties(json_t *o, sasp_sampling *p, api_error *e)
{
    if (api_get_range(o, "repetition_penalty", &p->repeat_penalty, 0, 1, 1e9, 0, e) < 0) return -1;
    if (api_get_range(o, "repeat_penalty", &p->repeat_penalty, 0, 1, 1e9, 0, e) < 0) return -1;
    if (read_int_from(o, "repeat_last_n", -1, " (-1 = whole sequence)", &p->repeat_last_n, e) < 0) return -1;
    if (api_get_range(o, "frequency_penalty", &p->frequency_penalty, -2, 0, 2, 0, e) < 0) return -1;
    return api_get_range(o, "presence_penalty", &p->presence_penalty, -2, 0, 2, 0, e) < 0 ? -1 : 0;
}

/* DRY's sequence breakers: a non-empty array of strings, as llama.cpp takes them (empty strings are
 * skipped, each is cut to SASP_DRY_BREAKER_MAX bytes). */
static int read_dry_breakers(json_t *o, sasp_sampling *p, api_error *e)
{
    json_t *v = json_object_get(o, "dry_sequence_breakers");
    if (!v || json_is_null(v)) return 0;
    size_t n = json_array_size(v);
    if (!json_is_array(v) || n == 0 || !api_all_of(v, api_is_str)) {
        api_bad(e, "dry_sequence_breakers", "'dry_sequence_breakers' must be a non-empty array of strings");
        return -1;
    }
    const char *strs[SASP_DRY_BREAKERS_BYTES / 2];
    size_t lens[SASP_DRY_BREAKERS_BYTES / 2];
    int rc = n <= SASP_DRY_BREAKERS_BYTES / 2 ? 0 : -1;
    for (size_t i = 0; i < n && rc == 0; i++) {
        strs[i] = json_string_value(json_array_get(v, i));
        lens[i] = json_string_length(json_array_get(v, i));
    }
    if (rc == 0) rc = sasp_sampling_set_breakers(p, strs, lens, (int)n);
    if (rc) api_bad(e, "dry_sequence_breakers", "'dry_sequence_breakers' must fit in %d bytes (each string takes "
                                                "its length, at most %d, plus one)",
                    SASP_DRY_BREAKERS_BYTES, SASP_DRY_BREAKER_MAX);
    return rc;
}

/* DRY: dry_base below 1 means the default base, as in llama.cpp. */
static int read_dry(json_t *o, sasp_sampling *p, api_error *e)
{
    double base;
    int got;
    if (api_get_range(o, "dry_multiplier", &p->dry_multiplier, 0, 0, 1e9, 0, e) < 0) return -1;
    if ((got = api_get_num(o, "dry_base", &base, e)) < 0) return -1;
    if (got) {
        sasp_sampling d;
        sasp_sampling_defaults(&d);
        p->dry_base = base < 1 ? d.dry_base : (float)base;
    }
    if (read_int_from(o, "dry_allowed_length", 0, "", &p->dry_allowed_length, e) < 0) return -1;
    if (read_int_from(o, "dry_penalty_last_n", -1, " (-1 = the context, 0 = off)", &p->dry_penalty_last_n, e) < 0)
        return -1;
    return read_dry_breakers(o, p, e);
}

int api_read_sampling(json_t *o, sasp_sampling *p, uint64_t *seed, api_error *e)
{
    long long k;
    int r;
    if (read_truncation(o, p, e) || read_penalties(o, p, e) || read_dry(o, p, e)) return -1;
    if ((r = api_get_int(o, "seed", &k, e)) < 0) return -1;
    if (r && k != -1) *seed = (uint64_t)k;
    return 0;
}

/* One entry of "samplers" appended to the chain. */
static int add_sampler(const char *name, size_t len, sasp_sampling *p, api_error *e)
{
    int kind = sasp_sampler_kind_of(name, len);
    if (kind < 0) {
        api_bad(e, "samplers", kind == -2 ? "sampler '%.*s' (adaptive_p) is not supported" : "unknown sampler '%.*s' (penalties, dry, top_n_sigma, top_k, typ_p, top_p, min_p, xtc, temperature, "
                                                                                             "infill, or their letters edskypmxti)",
                (int)len, name);
        return -1;
    }
    if (p->n_chain == SASP_MAX_CHAIN) {
        api_bad(e, "samplers", "at most %d samplers", SASP_MAX_CHAIN);
        return -1;
    }
    p->chain[p->n_chain++] = (unsigned char)kind;
    return 0;
}

int api_read_samplers(json_t *root, sasp_sampling *p, api_error *e)
{
    json_t *v = json_object_get(root, "samplers");
    if (!v || json_is_null(v)) return 0;
    p->n_chain = 0;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        for (size_t i = 0; i < json_string_length(v); i++)
            if (add_sampler(s + i, 1, p, e)) return -1;
        return 0;
    }
    if (!json_is_array(v) || !api_all_of(v, api_is_str)) {
        api_bad(e, "samplers", "'samplers' must be an array of sampler names or a string of their letters");
        return -1;
    }
    size_t i;
    json_t *x;
    json_array_foreach (v, i, x)
        if (add_sampler(json_string_value(x), json_string_length(x), p, e)) return -1;
    return 0;
}
