/* slots.c: llama.cpp's state endpoints. GET /props: the server and a model (the first, or
 * ?model=ID) in llama.cpp's shape (default_generation_settings, n_ctx, total_slots, model_path,
 * chat_template, modalities) and sasp's (simd, threads, config, every model's id, each slot's state);
 * GET /slots: every slot as llama.cpp lists them, with what its prompt cache holds (n_cached, and
 * n_reused of its last prompt); ?fail_on_no_slot=1 answers 503 when no slot is idle. POST
 * /slots/{id}?action=save|restore|erase: a slot's cache to a file of --slot-save-path and back, or
 * emptied; the engine thread does the copy in or out between two steps (engine/scheduler.h), this
 * file reads and writes the files (engine/slot_file.h), the connection suspended meanwhile. */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/api.h"
#include "kernels.h"
#include "engine/slot_file.h"
#include "http/reply.h"
#include "http/wait.h"
#include "server/handlers.h"
#include "server/models.h"

#define MAX_SLOTS 256

/* The model ?model= names (its id, with or without :latest), else the first, loaded (llama.cpp's
 * router loads it too); NULL after a 404, or while it loads (the handler runs again). */
static served_model *model_of_query(struct MHD_Connection *c, conn *k, enum MHD_Result *sent)
{
    const char *name = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "model");
    served_model *m = !name || !name[0] ? served_model_at(0) : served_model_find(name);
    if (!m) *sent = reply_errorf(c, k, 404, "not_found_error", "model_not_found", "model '%s' is not served here", name);
    return m ? served_model_ready(c, k, m, SERVED_KEEP_DEFAULT, sent) : NULL;
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

enum MHD_Result handle_llama_slots(struct MHD_Connection *c, conn *k)
{
    enum MHD_Result sent = MHD_NO;
    served_model *m = model_of_query(c, k, &sent);
    if (!m) return sent;
    int idle;
    json_t *slots = slots_json(m, &idle);
    const char *fail_arg = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "fail_on_no_slot");
    if (fail_arg && strcmp(fail_arg, "0") && idle == 0) {
        json_decref(slots);
        return reply_errorf(c, k, 503, "unavailable_error", NULL, "%s", "no slot is available");
    }
    return reply_jval(c, k, 200, slots);
}

enum MHD_Result handle_llama_props(struct MHD_Connection *c, conn *k)
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
    return reply_jval(c, k, 200, j);
}

/* --- POST /slots/{id}?action=save|restore|erase --- */

static const char *g_save_path; /* --slot-save-path, or NULL: save and restore are refused */

int slots_init(const char *save_path)
{
    struct stat st;
    if (save_path && (stat(save_path, &st) != 0 || !S_ISDIR(st.st_mode))) {
        fprintf(stderr, "sasp-server: --slot-save-path %s: not an existing directory\n", save_path);
        return -1;
    }
    g_save_path = save_path;
    return 0;
}

/* What a slot action keeps while its connection waits (k->run.work). */
typedef struct slot_work {
    served_model *m;
    int action, id;
    char filename[256];
    char path[PATH_MAX];
    long long bytes_read; /* restore: the file's size */
    sasp_event ev;        /* the job's one event, once the waiter took it */
    int have_ev;
} slot_work;

static void slot_work_free(void *p)
{
    slot_work *w = p;
    sasp_event_clear(&w->ev);
    free(w);
}

static void take_action_event(conn *k, sasp_event *ev)
{
    slot_work *w = k->run.work;
    sasp_event_clear(&w->ev);
    w->ev = *ev;
    w->have_ev = 1;
}

/* The access handler's call once the action's job has ended (or the client left): a save's copy goes
 * to its file here, then llama.cpp's answer. */
static enum MHD_Result finish_action(struct MHD_Connection *c, conn *k)
{
    slot_work *w = k->run.work;
    if (k->wait.gone) {
        sasp_job_cancel(k->run.job);
        k->res.status = 499;
        return MHD_NO;
    }
    if (!k->wait.end) return wait_resuspend_whole(k);
    if (!w->have_ev || w->ev.error) {
        int oom = w->have_ev && strstr(w->ev.text, "out of memory");
        return reply_errorf(c, k, oom ? 500 : 400, oom ? "server_error" : "invalid_request_error", NULL, "%s",
                            w->have_ev ? w->ev.text : "the engine did not answer");
    }
    long long bytes = w->bytes_read;
    if (w->action == SASP_SLOT_SAVE) {
        int *ids;
        char err[PATH_MAX + 64];
        sasp_kv *kv = sasp_job_take_saved(k->run.job, &ids);
        bytes = sasp_slot_file_write(w->path, w->m->model, w->m->digest, kv, ids, kv ? kv->len : 0, err, sizeof err);
        sasp_kv_free(kv);
        free(ids);
        if (bytes < 0) {
            fprintf(stderr, "sasp-server: slot save: %s\n", err);
            return reply_errorf(c, k, 500, "server_error", NULL, "%s", "the slot file could not be written");
        }
    }
    double ms = (double)(sasp_now_ns() - k->req.t0) * 1e-6;
    return reply_json(c, k, 200, api_slot_action_answer(w->action, w->id, w->filename, w->ev.prompt_tokens, bytes, ms));
}

/* The slot number of /slots/{id}: digits only; -1 otherwise. */
static int slot_of_path(const conn *k)
{
    const char *p = k->req.path + strlen(k->req.route->path);
    long v = 0;
    if (!*p || strlen(p) > 6) return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    return (int)v;
}

/* The action of ?action=, or 0. */
static int action_of_query(struct MHD_Connection *c)
{
    const char *a = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "action");
    if (!a) return 0;
    return !strcmp(a, "save") ? SASP_SLOT_SAVE : !strcmp(a, "restore") ? SASP_SLOT_RESTORE
                                             : !strcmp(a, "erase")     ? SASP_SLOT_ERASE
                                                                       : 0;
}

/* The file a save or restore names, into w (400 into *sent when the body or the name is bad). */
static int action_file(struct MHD_Connection *c, conn *k, slot_work *w, enum MHD_Result *sent)
{
    api_error e = {0};
    if (api_slot_filename(conn_body(k), k->req.body.len, w->filename, sizeof w->filename, &e) != 0) {
        *sent = reply_error(c, k, &e, NULL, NULL);
        return -1;
    }
    snprintf(w->path, sizeof w->path, "%s/%s", g_save_path, w->filename);
    return 0;
}

/* The job of w's action; a restore reads its file first (400 into *sent when it cannot be restored). */
static sasp_job *action_job(struct MHD_Connection *c, conn *k, slot_work *w, enum MHD_Result *sent)
{
    sasp_kv *kv = NULL;
    int *ids = NULL;
    if (w->action == SASP_SLOT_RESTORE) {
        char err[PATH_MAX + 64];
        if (sasp_slot_file_read(w->path, w->m->model, w->m->digest, &kv, &ids, &w->bytes_read, err, sizeof err) != 0) {
            *sent = reply_errorf(c, k, 400, "invalid_request_error", NULL, "Unable to restore slot: %s",
                                 strstr(err, w->path) ? "no such file in --slot-save-path" : err);
            return NULL;
        }
    }
    sasp_job *job = sasp_job_new_slot_action(w->action, w->id, kv, ids);
    if (!job) {
        sasp_kv_free(kv);
        free(ids);
        *sent = reply_errorf(c, k, 500, "server_error", NULL, "%s", "out of memory");
    }
    return job;
}

enum MHD_Result handle_llama_slot_action(struct MHD_Connection *c, conn *k)
{
    enum MHD_Result sent = MHD_NO;
    int action = action_of_query(c), id = slot_of_path(k);
    if (!action) return reply_errorf(c, k, 400, "invalid_request_error", NULL, "%s", "Invalid action");
    if (action != SASP_SLOT_ERASE && !g_save_path)
        return reply_errorf(c, k, 501, "not_supported_error", NULL, "%s",
                            "This server does not support slots action. Start it with `--slot-save-path`");
    served_model *m = model_of_query(c, k, &sent);
    if (!m) return sent;
    if (id < 0 || id >= sasp_sched_slots(m->sched, NULL, 0))
        return reply_errorf(c, k, 400, "invalid_request_error", NULL, "%s", "Invalid slot ID");
    slot_work *w = calloc(1, sizeof *w);
    if (!w) return reply_errorf(c, k, 500, "server_error", NULL, "%s", "out of memory");
    *w = (slot_work){.m = m, .action = action, .id = id};
    k->run.work = w;
    k->run.free_work = slot_work_free;
    if (action != SASP_SLOT_ERASE && action_file(c, k, w, &sent) != 0) return sent;
    if (!(k->run.job = action_job(c, k, w, &sent))) return sent;
    int rc = sasp_sched_submit(m->sched, k->run.job);
    if (rc != 0) return served_reply_refused(c, k, rc);
    k->wait.take = take_action_event;
    k->wait.resume = finish_action;
    return wait_suspend_whole(c, k);
}
