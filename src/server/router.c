/* router.c: llama.cpp's router endpoints that load and unload models while the server runs: POST
 * /models/load and POST /models/unload, each with {"model": NAME} (its id, or "id:latest"). GET
 * /models, the list with each model's status, is info.c's. models.h says when a model loads and
 * unloads; these ask for it. */
#include <jansson.h>
#include <stdio.h>

#include "http/reply.h"
#include "server/handlers.h"
#include "server/models.h"

/* The model the body names, or NULL with the answer sent: 400 for a body that is no JSON object with
 * a "model" string, 404 for a name that is no model's. */
static served_model *named_model(struct MHD_Connection *c, conn *k, enum MHD_Result *sent)
{
    json_t *root = json_loadb(conn_body(k), k->req.body.len, 0, NULL);
    json_t *name = json_object_get(root, "model");
    served_model *m = json_is_string(name) ? served_model_find(json_string_value(name)) : NULL;
    api_error e;
    if (!json_is_object(root) || !json_is_string(name) || !json_string_length(name)) {
        api_error_set(&e, 400, "invalid_request_error", NULL, "model",
                      "the body must be a JSON object with \"model\", the name of a model (GET /models lists them)");
        *sent = reply_error(c, k, &e, NULL, NULL);
    } else if (!m) {
        api_error_set(&e, 404, "not_found_error", "model_not_found", "model", "model \"%s\" not found",
                      json_string_value(name));
        *sent = reply_error(c, k, &e, NULL, NULL);
    }
    json_decref(root);
    return m;
}

/* POST /models/load: answered once the model is loaded (at once when it is), 500 when it cannot be. */
enum MHD_Result handle_llama_models_load(struct MHD_Connection *c, conn *k)
{
    enum MHD_Result sent = MHD_NO;
    served_model *m = named_model(c, k, &sent);
    if (!m || !(m = served_model_ready(c, k, m, SERVED_KEEP_DEFAULT, &sent))) return sent;
    return reply_jval(c, k, 200, json_pack("{s:b}", "success", 1));
}

/* POST /models/unload: unloaded at once when no request runs on it, else as soon as none does
 * ("deferred"); 400 when it is not loaded. */
enum MHD_Result handle_llama_models_unload(struct MHD_Connection *c, conn *k)
{
    enum MHD_Result sent = MHD_NO;
    served_model *m = named_model(c, k, &sent);
    if (!m) return sent;
    int rc = served_model_unload(m);
    if (rc < 0) {
        api_error e;
        api_error_set(&e, 400, "invalid_request_error", NULL, "model", "model \"%s\" is not loaded", m->id);
        return reply_error(c, k, &e, NULL, NULL);
    }
    return reply_jval(c, k, 200, json_pack("{s:b,s:b}", "success", 1, "deferred", rc == 0));
}
