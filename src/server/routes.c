/* routes.c: the route table of sasp-server, one row per path: the one method it takes ("GET" also
 * takes HEAD), the path, the handler (handlers.h), the endpoint that /metrics counts it under (aliases
 * share their /v1/ path's), and ROUTE_OPEN (no API key needed) or ROUTE_PREFIX (the path and whatever
 * follows it). An endpoint is one row here and one handler; http/route.c does the rest (the method,
 * the key, the size, CORS). A GET of any other path outside /v1/ and /api/ is a static file. */
#include "server/handlers.h"

const http_route server_routes[] = {
    {"POST", "/v1/completions", handle_openai_completions, "/v1/completions", 0},
    {"POST", "/completions", handle_openai_completions, "/v1/completions", 0},
    {"POST", "/v1/chat/completions", handle_openai_chat, "/v1/chat/completions", 0},
    {"POST", "/chat/completions", handle_openai_chat, "/v1/chat/completions", 0},
    {"POST", "/api/generate", handle_ollama_generate, "/api/generate", 0},
    {"GET", "/v1/models", handle_openai_models, "/v1/models", 0},
    {"GET", "/models", handle_llama_models, "/models", 0},
    {"POST", "/models/load", handle_llama_models_load, "/models/load", 0},
    {"POST", "/models/unload", handle_llama_models_unload, "/models/unload", 0},
    {"GET", "/health", handle_health, "/health", ROUTE_OPEN},
    {"GET", "/metrics", handle_metrics, "/metrics", 0},
    {"GET", "/props", handle_llama_props, "/props", 0},
    {"POST", "/tokenize", handle_llama_tokenize, "/tokenize", 0},
    {"POST", "/detokenize", handle_llama_detokenize, "/detokenize", 0},
    {"GET", "/api/tags", handle_ollama_tags, "/api/tags", 0},
    {"POST", "/api/chat", handle_ollama_chat, "/api/chat", 0},
    {"POST", "/api/show", handle_ollama_show, "/api/show", 0},
    {"GET", "/api/version", handle_ollama_version, "/api/version", 0},
    {"GET", "/api/ps", handle_ollama_ps, "/api/ps", 0},
    {"POST", "/v1/embeddings", handle_openai_embeddings, "/v1/embeddings", 0},
    {"POST", "/embeddings", handle_openai_embeddings, "/v1/embeddings", 0},
    {"POST", "/api/embed", handle_ollama_embed, "/api/embed", 0},
    {"POST", "/api/embeddings", handle_ollama_embeddings, "/api/embeddings", 0},
    {"GET", "/v1/models/", handle_openai_model, "/v1/models/{id}", ROUTE_PREFIX},
    {"GET", "/models/", handle_openai_model, "/v1/models/{id}", ROUTE_PREFIX},
    {"POST", "/api/pull", handle_ollama_manage, "/api/pull etc.", 0},
    {"POST", "/api/push", handle_ollama_manage, "/api/pull etc.", 0},
    {"POST", "/api/create", handle_ollama_manage, "/api/pull etc.", 0},
    {"POST", "/api/copy", handle_ollama_manage, "/api/pull etc.", 0},
    {"DELETE", "/api/delete", handle_ollama_manage, "/api/pull etc.", 0},
    {"POST", "/api/blobs/", handle_ollama_manage, "/api/pull etc.", ROUTE_PREFIX},
    {"POST", "/completion", handle_llama_completion, "/completion", 0},
    {"POST", "/infill", handle_llama_infill, "/infill", 0},
    {"GET", "/slots", handle_llama_slots, "/slots", 0},
    {"POST", "/v1/messages", handle_anthropic_messages, "/v1/messages", 0},
    {"POST", "/v1/messages/count_tokens", handle_anthropic_count_tokens, "/v1/messages/count_tokens", 0},
    {"POST", "/v1/responses", handle_openai_responses, "/v1/responses", 0},
    {"POST", "/responses", handle_openai_responses, "/v1/responses", 0},
};
const int server_n_routes = (int)(sizeof server_routes / sizeof *server_routes);
