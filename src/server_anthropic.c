/* server_anthropic.c: Anthropic's POST /v1/messages/count_tokens: the tokens the prompt of a
 * /v1/messages body takes on the model it names (a name that is no served model's: 404, as
 * /v1/messages answers it). /v1/messages itself is a generation endpoint of server.c (handle_generate);
 * the wire format is api_anthropic.c's. Errors in Anthropic's shape (server.c, send_error). */
#include <stdio.h>

#include "server.h"
#include "server_models.h"

enum MHD_Result handle_count_tokens(struct MHD_Connection *c, conn *k)
{
    char name[256];
    served_model *m = served_model_at(0);
    if (api_requested_model(body_text(k), k->body.len, 0, name, sizeof name) && !(m = served_model_find(name)))
        return send_model_not_found(c, k, name);
    api_error e = {0};
    char *answer = api_count_message_tokens(body_text(k), k->body.len, &m->lim, &e);
    return answer ? send_json(c, k, 200, answer) : send_error(c, k, &e, NULL, NULL);
}
