/* models.c: what the server says about its models: OpenAI's model objects (/v1/models,
 * /v1/models/{id}), Ollama's /api/tags and /api/ps entries (name, digest, size, details) and its
 * /api/show answer (details, parameters, the template, model_info with the architecture and the
 * context length). All from an api_model_info the server fills once per loaded model. */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/internal.h"
#include "model/checkpoint.h"
#include "text/sampler.h"

json_t *api_openai_model(const api_model_info *m)
{
    const sasp_config *c = m->cfg;
    json_t *meta = json_pack("{s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:s,s:I,s:i}", "architecture", sasp_arch_names[c->arch],
                             "vocab_size", c->vocab_size, "d_model", c->d_model, "n_layers", c->n_layers, "n_heads",
                             c->n_heads, "d_ff", c->d_ff, "max_seq_len", c->max_seq_len, "position",
                             sasp_pos_names[c->position], "norm", sasp_norm_names[c->norm], "n_params",
                             (json_int_t)m->n_params, "n_ctx", m->n_ctx);
    return json_pack("{s:s,s:s,s:I,s:s,s:o}", "id", m->id, "object", "model", "created", (json_int_t)m->created,
                     "owned_by", "sasp", "meta", meta);
}

json_t *api_anthropic_model(const api_model_info *m)
{
    char created[32];
    time_t t = (time_t)m->created;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_pack("{s:s,s:s,s:s,s:s}", "type", "model", "id", m->id, "display_name", m->id, "created_at", created);
}

json_t *api_anthropic_model_list(json_t *models)
{
    size_t n = json_array_size(models);
    json_t *first = n ? json_object_get(json_array_get(models, 0), "id") : NULL;
    json_t *last = n ? json_object_get(json_array_get(models, n - 1), "id") : NULL;
    return json_pack("{s:o,s:b,s:O,s:O}", "data", models, "has_more", 0, "first_id", first ? first : json_null(),
                     "last_id", last ? last : json_null());
}

/* "6.2M", "137K", "1.2B", as Ollama writes parameter_size. */
static void human_count(size_t n, char *out, size_t size)
{
    double d = (double)n;
    if (d >= 1e9) snprintf(out, size, "%.1fB", d / 1e9);
    else if (d >= 1e6) snprintf(out, size, "%.1fM", d / 1e6);
    else if (d >= 1e3) snprintf(out, size, "%.0fK", d / 1e3);
    else snprintf(out, size, "%zu", n);
}

static json_t *rfc3339(long long unix_seconds)
{
    time_t t = (time_t)unix_seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[40];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

/* Ollama's quantization_level of a weight type as served: "F32", "BF16", "Q8_0" (its own spelling);
 * "unknown" for a model whose file does not load. */
static json_t *quantization_level(const char *weights)
{
    char up[16] = "unknown";
    for (size_t i = 0; weights && weights[i] && i + 1 < sizeof up; i++) up[i] = (char)toupper((unsigned char)weights[i]), up[i + 1] = 0;
    return json_string(up);
}

static json_t *details(const api_model_info *m)
{
    char size[32];
    human_count(m->n_params, size, sizeof size);
    const char *arch = sasp_arch_names[m->cfg->arch];
    return json_pack("{s:s,s:s,s:s,s:[s],s:s,s:o}", "parent_model", "", "format", "safetensors", "family", arch,
                     "families", arch, "parameter_size", size, "quantization_level", quantization_level(m->weights));
}

int api_ollama_name_matches(const api_model_info *m, const char *name)
{
    size_t n = strlen(m->id);
    return !strncmp(name, m->id, n) && (name[n] == 0 || !strcmp(name + n, ":latest"));
}

json_t *api_ollama_tag(const api_model_info *m, int running)
{
    char name[300];
    snprintf(name, sizeof name, "%s:latest", m->id);
    json_t *j = json_pack("{s:s,s:s,s:I,s:s,s:o}", "name", name, "model", name, "size", (json_int_t)m->file_size,
                          "digest", m->digest, "details", details(m));
    if (running) {
        /* on the CPU; until its keep_alive runs out, or for ever */
        json_object_set_new(j, "expires_at", m->expires_at ? rfc3339(m->expires_at) : json_string("9999-12-31T23:59:59Z"));
        json_object_set_new(j, "size_vram", json_integer(0));
        json_object_set_new(j, "context_length", json_integer(m->n_ctx));
    } else {
        json_object_set_new(j, "modified_at", rfc3339(m->modified));
    }
    return j;
}

/* The chat template of prompt.c, in the Go template syntax Ollama shows. */
static const char chat_template[] =
    "{{- range .Messages }}"
    "{{ if or (eq .Role \"system\") (eq .Role \"developer\") }}System: "
    "{{ else if eq .Role \"user\" }}User: {{ else if eq .Role \"assistant\" }}Assistant: {{ else }}Tool: {{ end }}"
    "{{ .Content }}\n{{ end }}Assistant:";

/* The default sampling settings as Modelfile PARAMETER lines (the samplers that are off by default
 * only when they are on). */
static json_t *parameters_text(void)
{
    sasp_sampling d;
    sasp_sampling_defaults(&d);
    char buf[768];
    int n = snprintf(buf, sizeof buf, "temperature %g\ntop_k %d\ntop_p %g\nmin_p %g\nrepeat_penalty %g\nrepeat_last_n %d\n",
                     (double)d.temperature, d.top_k, (double)d.top_p, (double)d.min_p, (double)d.repeat_penalty,
                     d.repeat_last_n);
    if (d.typical_p < 1) n += snprintf(buf + n, sizeof buf - (size_t)n, "typical_p %g\n", (double)d.typical_p);
    if (d.frequency_penalty != 0 || d.presence_penalty != 0)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "frequency_penalty %g\npresence_penalty %g\n",
                      (double)d.frequency_penalty, (double)d.presence_penalty);
    if (d.dry_multiplier != 0)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "dry_multiplier %g\ndry_base %g\ndry_allowed_length %d\n"
                                                       "dry_penalty_last_n %d\n",
                      (double)d.dry_multiplier, (double)d.dry_base, d.dry_allowed_length,
                      d.dry_penalty_last_n);
    snprintf(buf + n, sizeof buf - (size_t)n, "stop \"\\nUser:\"\nstop \"\\nSystem:\"");
    return json_string(buf);
}

static json_t *model_info(const api_model_info *m)
{
    const sasp_config *c = m->cfg;
    const char *arch = sasp_arch_names[c->arch];
    json_t *j = json_pack("{s:s,s:I,s:s}", "general.architecture", arch, "general.parameter_count",
                          (json_int_t)m->n_params, "general.basename", m->id);
    static const char *const keys[] = {"context_length", "embedding_length", "block_count", "attention.head_count",
                                       "feed_forward_length", "vocab_size"};
    int vals[] = {m->n_ctx, c->d_model, c->n_layers, c->n_heads, c->d_ff, c->vocab_size};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        char k[64];
        snprintf(k, sizeof k, "%s.%s", arch, keys[i]);
        json_object_set_new(j, k, json_integer(vals[i]));
    }
    return j;
}

json_t *api_ollama_show(const api_model_info *m)
{
    json_t *caps = json_pack("[s,s]", "completion", "embedding");
    return json_pack("{s:s,s:o,s:s,s:o,s:o,s:o,s:o}", "modelfile", "", "parameters", parameters_text(), "template",
                     chat_template, "details", details(m), "model_info", model_info(m), "capabilities", caps,
                     "modified_at", rfc3339(m->modified));
}
