/* handlers.h: the handlers of sasp-server's endpoints, each named by a row of the route table
 * (routes.c: method, path, handler); docs/api.md is their manual. A handler answers one request
 * (http/conn.h) with the replies of http/reply.h, in the shapes of its API (api/api.h); one that runs a
 * job on the engine suspends its connection while the job has nothing new (http/wait.h). */
#ifndef SASP_SERVER_HANDLERS_H
#define SASP_SERVER_HANDLERS_H

#include <microhttpd.h>
#include "http/conn.h"
#include "http/route.h"

/* The route table (routes.c). */
extern const http_route server_routes[];
extern const int server_n_routes;

/* The generation endpoints (generate.c). */
enum MHD_Result handle_openai_completions(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_openai_chat(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_ollama_generate(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_ollama_chat(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_llama_completion(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_llama_infill(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_anthropic_messages(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_openai_responses(struct MHD_Connection *c, conn *k);

/* The embeddings endpoints (embed.c). */
enum MHD_Result handle_openai_embeddings(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_ollama_embed(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_ollama_embeddings(struct MHD_Connection *c, conn *k);

/* /health, the models (/v1/models, and /models with their status), /tokenize, /detokenize and
 * /apply-template, Anthropic's count_tokens (info.c); /metrics (metrics.c). */
enum MHD_Result handle_health(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_openai_models(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_openai_model(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_llama_models(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_llama_tokenize(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_llama_detokenize(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_llama_apply_template(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_anthropic_count_tokens(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_metrics(struct MHD_Connection *c, conn *k);

/* Ollama's model endpoints (ollama.c). */
enum MHD_Result handle_ollama_tags(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_ollama_ps(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_ollama_show(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_ollama_version(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_ollama_manage(struct MHD_Connection *c, conn *k);

/* llama.cpp's router: a model loaded or unloaded on request (router.c). */
enum MHD_Result handle_llama_models_load(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_llama_models_unload(struct MHD_Connection *c, conn *k);

/* llama.cpp's state endpoints, /props and /slots, and the slot actions /slots/{id}?action=save|
 * restore|erase (slots.c). slots_init takes --slot-save-path (NULL: save and restore answer 501 as
 * llama.cpp does); 0, or -1 after saying why it is no directory. */
int slots_init(const char *save_path);
enum MHD_Result handle_llama_props(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_llama_slots(struct MHD_Connection *c, conn *k);
enum MHD_Result handle_llama_slot_action(struct MHD_Connection *c, conn *k);

/* The files of --www at / (static_files.c): the routes' fallback for GET. static_files_init finds
 * the directory (a note when it does not exist: / then answers 404). */
void static_files_init(const char *www);
enum MHD_Result handle_static(struct MHD_Connection *c, conn *k);

#endif
