/* info.c: the endpoints that tell about the server and its models without running them: /health,
 * OpenAI's /v1/models and /v1/models/{id}, llama.cpp's /tokenize and /detokenize (of the model the
 * body names, or the first) and /apply-template, and Anthropic's /v1/messages/count_tokens. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "http/reply.h"
#include "server/handlers.h"
#include "server/models.h"

/* Whether the request is Anthropic's (its SDKs send anthropic-version): its model objects, then. */
static int anthropic_asks(struct MHD_Connection *c)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, "anthropic-version") != NULL;
}

/* The model object of model i: Anthropic's (anthropic), or OpenAI's; with_state: llama.cpp's router's
 * fields too, its path and its status ({"value": "loaded"}, "loading" or "unloaded", with "failed"
 * and the error after a failed load). */
static json_t *model_object(int i, int anthropic, int with_state)
{
    served_view v;
    served_model_view(i, &v);
    if (anthropic) return api_anthropic_model(&v.info);
    json_t *j = api_openai_model(&v.info);
    if (!with_state) return j;
    json_t *status = json_pack("{s:s}", "value", served_state_name(v.state));
    if (v.failed) {
        json_object_set_new(status, "failed", json_true());
        json_object_set_new(status, "error", json_string(v.error));
    }
    json_object_set_new(j, "path", json_string(v.info.path));
    json_object_set_new(j, "status", status);
    return j;
}

static enum MHD_Result list_models(struct MHD_Connection *c, conn *k, int with_state)
{
    json_t *data = json_array();
    int anthropic = !with_state && anthropic_asks(c);
    for (int i = 0; i < served_models_count(); i++)
        json_array_append_new(data, model_object(i, anthropic, with_state));
    if (anthropic) return reply_jval(c, k, 200, api_anthropic_model_list(data));
    return reply_jval(c, k, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

/* GET /v1/models: every model, loaded or not (a request loads it), in Anthropic's shapes when the
 * request carries anthropic-version; GET /models: llama.cpp's router's list, the same objects with
 * each model's path and status. */
enum MHD_Result handle_openai_models(struct MHD_Connection *c, conn *k) { return list_models(c, k, 0); }
enum MHD_Result handle_llama_models(struct MHD_Connection *c, conn *k) { return list_models(c, k, 1); }

/* GET /v1/models/{id}: one (its id as Ollama writes it too, "id:latest"), or 404 as OpenAI answers an
 * unknown id. */
static enum MHD_Result model_by_id(struct MHD_Connection *c, conn *k, const char *id)
{
    served_model *m = served_model_find(id);
    if (m) return reply_jval(c, k, 200, model_object(served_model_index(m), anthropic_asks(c), 0));
    api_error e;
    api_error_set(&e, 404, "invalid_request_error", "model_not_found", "model", "The model '%s' does not exist", id);
    return reply_error(c, k, &e, NULL, NULL);
}

enum MHD_Result handle_openai_model(struct MHD_Connection *c, conn *k)
{
    return model_by_id(c, k, k->req.path + strlen(k->req.route->path)); /* /v1/models/{id} */
}

enum MHD_Result handle_health(struct MHD_Connection *c, conn *k)
{
    return reply_jval(c, k, 200, json_pack("{s:s}", "status", "ok"));
}

static enum MHD_Result handle_tok(struct MHD_Connection *c, conn *k, int de)
{
    api_error e = {0};
    char name[256];
    enum MHD_Result sent = MHD_NO;
    served_model *m = api_requested_model(conn_body(k), k->req.body.len, 0, name, sizeof name) ? served_model_find(name)
                                                                                               : NULL;
    if (!(m = served_model_ready(c, k, m ? m : served_model_at(0), SERVED_KEEP_DEFAULT, &sent))) return sent;
    const api_limits *lim = &m->lim;
    char *s = de ? api_detokenize(conn_body(k), k->req.body.len, lim, &e) : api_tokenize(conn_body(k), k->req.body.len, lim, &e);
    if (!s) return reply_error(c, k, &e, NULL, NULL);
    return reply_json(c, k, 200, s);
}

enum MHD_Result handle_llama_tokenize(struct MHD_Connection *c, conn *k) { return handle_tok(c, k, 0); }
enum MHD_Result handle_llama_detokenize(struct MHD_Connection *c, conn *k) { return handle_tok(c, k, 1); }

/* llama.cpp's /apply-template: the messages through the chat template, the prompt back (api/slots.c). */
enum MHD_Result handle_llama_apply_template(struct MHD_Connection *c, conn *k)
{
    api_error e = {0};
    char *answer = api_apply_template(conn_body(k), k->req.body.len, &e);
    return answer ? reply_json(c, k, 200, answer) : reply_error(c, k, &e, NULL, NULL);
}

/* The tokens the prompt of a /v1/messages body takes on the model it names (a name that is no served
 * model's: 404, as /v1/messages answers it); the wire format is api/anthropic.c's. */
enum MHD_Result handle_anthropic_count_tokens(struct MHD_Connection *c, conn *k)
{
    char name[256];
    served_model *m = served_model_at(0);
    if (api_requested_model(conn_body(k), k->req.body.len, 0, name, sizeof name) && !(m = served_model_find(name)))
        return served_reply_not_found(c, k, name);
    enum MHD_Result sent = MHD_NO;
    if (!(m = served_model_ready(c, k, m, SERVED_KEEP_DEFAULT, &sent))) return sent;
    api_error e = {0};
    char *answer = api_count_message_tokens(conn_body(k), k->req.body.len, &m->lim, &e);
    return answer ? reply_json(c, k, 200, answer) : reply_error(c, k, &e, NULL, NULL);
}
