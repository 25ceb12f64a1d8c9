/* ollama.c: Ollama's model endpoints: /api/tags (the models), /api/ps (the loaded ones, with when
 * their keep_alive unloads them), /api/show (one model's details, parameters, template and model_info), /api/version,
 * and the model management endpoints (pull, push, create, copy, delete, blobs), which are refused: the
 * server serves the models it was started with. Errors in Ollama's shape (http/reply.h). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "http/reply.h"
#include "server/handlers.h"
#include "server/models.h"

/* The version of Ollama whose API this server follows: clients that gate features on the version
 * (structured outputs, embed) see one that has them. sasp-server's own version is in the Server
 * header and /props. */
#define OLLAMA_API_VERSION "0.6.4"

/* /api/tags: every model; /api/ps (running): the loaded ones, with when they unload. */
static enum MHD_Result list_models(struct MHD_Connection *c, conn *k, int running)
{
    json_t *models = json_array();
    for (int i = 0; i < served_models_count(); i++) {
        served_view v;
        served_model_view(i, &v);
        if (!running || v.state == MODEL_LOADED) json_array_append_new(models, api_ollama_tag(&v.info, running));
    }
    return reply_jval(c, k, 200, json_pack("{s:o}", "models", models));
}

enum MHD_Result handle_ollama_tags(struct MHD_Connection *c, conn *k) { return list_models(c, k, 0); }
enum MHD_Result handle_ollama_ps(struct MHD_Connection *c, conn *k) { return list_models(c, k, 1); }

enum MHD_Result handle_ollama_version(struct MHD_Connection *c, conn *k)
{
    return reply_jval(c, k, 200, json_pack("{s:s}", "version", OLLAMA_API_VERSION));
}

enum MHD_Result handle_ollama_show(struct MHD_Connection *c, conn *k)
{
    api_error e;
    json_error_t je;
    json_t *root = json_loadb(conn_body(k), k->req.body.len, 0, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        api_error_set(&e, 400, "invalid_request_error", NULL, NULL, "the request body must be a JSON object");
        return reply_error(c, k, &e, NULL, NULL);
    }
    json_decref(root);
    char name[256];
    if (!api_requested_model(conn_body(k), k->req.body.len, 1, name, sizeof name)) {
        api_error_set(&e, 400, "invalid_request_error", NULL, "model", "'model' (a model's name) is required");
        return reply_error(c, k, &e, NULL, NULL);
    }
    served_model *m = served_model_find(name);
    if (!m) return served_reply_not_found(c, k, name);
    served_view v;
    served_model_view(served_model_index(m), &v);
    return reply_jval(c, k, 200, api_ollama_show(&v.info));
}

enum MHD_Result handle_ollama_manage(struct MHD_Connection *c, conn *k)
{
    char names[512] = "";
    for (int i = 0; i < served_models_count(); i++) {
        size_t n = strlen(names);
        snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "", served_model_at(i)->id);
    }
    api_error e;
    api_error_set(&e, 403, "permission_error", NULL, NULL,
                  "%s: sasp-server serves the models it was started with (-m, --models-dir) and does not pull, push, create, copy "
                  "or delete models; it serves %s",
                  k->req.path, names);
    return reply_error(c, k, &e, NULL, NULL);
}
