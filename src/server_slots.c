/* server_slots.c: llama.cpp's state endpoints. GET /props: the server and a model (the first, or
 * ?model=ID) in llama.cpp's shape (default_generation_settings, n_ctx, total_slots, model_path,
 * chat_template, modalities) and sasp's (simd, threads, config, every model's id, each slot's state);
 * GET /slots: every slot as llama.cpp lists them, with what its prompt cache holds (n_cached, and
 * n_reused of its last prompt); ?fail_on_no_slot=1 answers 503 when no slot is idle. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "kernels.h"
#include "server.h"
#include "server_models.h"

#define MAX_SLOTS 256

/* The model ?model= names (its id, with or without :latest), else the first; NULL after a 404. */
static served_model *model_of_query(struct MHD_Connection *c, conn *k, enum MHD_Result *sent)
{
    const char *name = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "model");
    if (!name || !name[0]) return served_model_at(0);
    served_model *m = served_model_find(name);
    if (!m) *sent = fail(c, k, 404, "not_found_error", "model_not_found", "model '%s' is not served here", name);
    return m;
}

/* Every slot of m, as /slots and /props list them; *idle counts the idle ones. */
static json_t *slots_json(served_model *m, int *idle)
{
    sasp_slot_info info[MAX_SLOTS];
    int n = sasp_sched_slots(m->sched, info, MAX_SLOTS);
    json_t *slots = json_array();
    *idle = 0;
    for (int i = 0; i < n && i < MAX_SLOTS; i++) {
        *idle += !strcmp(info[i].state, "idle");
        json_array_append_new(slots, api_slot_json(&info[i]));
    }
    return slots;
}

enum MHD_Result handle_slots(struct MHD_Connection *c, conn *k)
{
    enum MHD_Result sent = MHD_NO;
    served_model *m = model_of_query(c, k, &sent);
    if (!m) return sent;
    int idle;
    json_t *slots = slots_json(m, &idle);
    const char *fail_arg = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "fail_on_no_slot");
    if (fail_arg && strcmp(fail_arg, "0") && idle == 0) {
        json_decref(slots);
        return fail(c, k, 503, "unavailable_error", NULL, "%s", "no slot is available");
    }
    return send_jval(c, k, 200, slots);
}

enum MHD_Result handle_props(struct MHD_Connection *c, conn *k)
{
    enum MHD_Result sent = MHD_NO;
    served_model *m = model_of_query(c, k, &sent);
    if (!m) return sent;
    int idle;
    json_t *slots = slots_json(m, &idle), *ids = json_array();
    for (int i = 0; i < served_models_count(); i++) json_array_append_new(ids, json_string(served_model_at(i)->id));
    json_t *model_object = api_openai_model(&m->info);
    json_t *config = json_incref(json_object_get(model_object, "meta"));
    json_decref(model_object);
    int infill = api_has_fim_tokens(&m->lim);
    json_t *j = json_pack("{s:s,s:s,s:I,s:i,s:s,s:s,s:i,s:I,s:i,s:o,s:s,s:s,s:o,s:b,s:{s:b},s:s}", "model", m->id,
                          "model_path", m->dir, "n_params", (json_int_t)m->model->n_params, "n_ctx", m->lim.n_ctx,
                          "weights", m->info.weights, "simd", sasp_kernels_active()->name, "threads", sasp_pool_size(m->model->pool), "total_slots",
                          (json_int_t)json_array_size(slots), "max_queue", served_options()->max_queue, "config", config,
                          "chat_template", "System: {system}\\nUser: {user}\\nAssistant: {assistant}\\n...Assistant:",
                          "version", SASP_VERSION, "models", ids, "infill", infill, "modalities", "vision", 0,
                          "build_info", "sasp-server " SASP_VERSION);
    json_object_set_new(j, "slots", slots);
    json_object_set_new(j, "default_generation_settings", api_llama_default_settings(m->lim.n_ctx));
    return send_jval(c, k, 200, j);
}
