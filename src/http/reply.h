/* reply.h: the ways to answer a request (conn.h): a buffer, JSON text or a JSON value, an error in the
 * shape of the path's API (Ollama's {"error": "..."} under /api/, OpenAI's elsewhere), each with the
 * headers every answer carries (CORS for an allowed Origin, Server, X-Request-Id, and the X-Sasp-
 * headers of what the request's options did). */
#ifndef SASP_HTTP_REPLY_H
#define SASP_HTTP_REPLY_H

#include <jansson.h>
#include <microhttpd.h>
#include "api/api.h"
#include "http/conn.h"

/* Queue r as the answer with status (the headers every answer has added) and let it go; the request is
 * answered (conn_answered). */
enum MHD_Result reply_queue(struct MHD_Connection *c, conn *k, int status, struct MHD_Response *r);
/* The same for a stream, whose content reader calls conn_answered when it has made the last bytes. */
enum MHD_Result reply_queue_stream(struct MHD_Connection *c, conn *k, int status, struct MHD_Response *r);
/* buf (len bytes, malloc'd: taken) with its Content-Type. */
enum MHD_Result reply_buf(struct MHD_Connection *c, conn *k, int status, const char *type, char *buf, size_t len);
/* JSON text (malloc'd, taken) with a newline, or j (consumed) so written. */
enum MHD_Result reply_json(struct MHD_Connection *c, conn *k, int status, char *json);
enum MHD_Result reply_jval(struct MHD_Connection *c, conn *k, int status, json_t *j);
/* e in the path's error shape, with one extra header when hname is given. */
enum MHD_Result reply_error(struct MHD_Connection *c, conn *k, const api_error *e, const char *hname, const char *hval);
enum MHD_Result reply_errorf(struct MHD_Connection *c, conn *k, int status, const char *type, const char *code,
                             const char *fmt, const char *arg);

#endif
