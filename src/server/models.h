/* models.h: the models sasp-server serves, loaded and unloaded while it runs. Each -m names a model
 * directory, or a directory of model directories (every subdirectory with a config.json), loaded at
 * start; --models-dir names a directory whose models are loaded on the first request that names them
 * (llama.cpp's router mode). A loaded model has its tokenizer, its --parallel slots and a scheduler on
 * the one engine thread that steps every model (scheduler.h, sasp_engine). One loader thread loads
 * and frees models, so that neither the HTTP threads nor the engine thread wait for a load. A
 * request holds its model (served_model_ready) until its connection is freed: a held model is never
 * unloaded; one that nothing holds unloads when its keep_alive runs out (Ollama's), when it is asked
 * to (POST /models/unload, keep_alive 0), or when it is the least recently used beyond --models-max.
 * The first model is the default one. */
#ifndef SASP_SERVER_MODELS_H
#define SASP_SERVER_MODELS_H

#include <limits.h>
#include <microhttpd.h>
#include <stdint.h>
#include "api/api.h"
#include "model/model.h"
#include "engine/scheduler.h"
#include "http/conn.h"
#include "text/tokenizer.h"

#define SERVER_MAX_MODELS 256

typedef enum { MODEL_UNLOADED,
               MODEL_LOADING,
               MODEL_LOADED } served_state;

typedef struct served_model {
    /* set when the model is found, never changed after */
    char id[256]; /* the directory's name, unique among the models */
    char dir[PATH_MAX];
    char digest[65];     /* sha256 of model.safetensors */
    sasp_config cfg;     /* its config.json */
    api_model_info info; /* what the listings say of it (n_params: the loaded model's once loaded) */
    /* valid while the model is held by the caller and loaded (served_model_ready) */
    sasp_model *model;
    sasp_tokenizer *tok;
    sasp_sched *sched;
    api_limits lim;
    /* the loader's (models.c), under its lock */
    served_state state;
    int users;          /* requests that hold it: in flight, or waiting for its load */
    int answering;      /* of them, those whose answer is not complete yet (conn_answered) */
    int64_t last_used;  /* when a request last took it, was answered or gave it back (ns, monotonic):
                         * keep_alive's start */
    int64_t last_asked; /* when a request last came for it, or its load ended: the LRU order, the order
                         * clients sent their requests in, whatever order their connections end in */
    int64_t keep_alive; /* how long it stays loaded once nothing holds it (ns); < 0: for ever */
    int unload_asked;   /* unload it as soon as nothing holds it (asked, or the least recently used) */
    int failed;         /* its last load failed (error says why) */
    char error[384];
} served_model;

/* How each model is served: the options of the command line that concern the engine. */
typedef struct serve_options {
    int threads, parallel, ctx, max_queue, chunk, step_delay;
    size_t cache_ram;   /* bytes of evicted prompt prefixes kept per model (--cache-ram) */
    int weights;        /* --weights: a sasp_wtype to convert the matrices to, SASP_WEIGHTS_FAST or _AS_STORED */
    int models_max;     /* --models-max: models loaded at once (0: no limit) */
    int64_t keep_alive; /* --keep-alive: the default keep_alive (ns; < 0: for ever) */
} serve_options;

/* Find the models: every one of dirs (n of them; each loaded now, up to models_max) and every model
 * of models_dir (NULL: none; loaded when first named), then start the loader (loader.c). 0, or -1
 * after saying why on stderr. */
int served_models_load(const char *const *dirs, int n, const char *models_dir, const serve_options *o);
/* Add the models of dir, one model directory or a directory of them (lazy: --models-dir, which must
 * hold some), unloaded, to the models served (models.c). 0, or -1 after saying why on stderr. */
int served_models_add(const char *dir, const serve_options *o, int lazy);
/* The options they were loaded with. */
const serve_options *served_options(void);
int served_models_count(void);
served_model *served_model_at(int i);
int served_model_index(const served_model *m);
/* The model a request names: its id (with Ollama's ":latest" tag or without); NULL when none is. */
served_model *served_model_find(const char *name);
/* Shut every scheduler down (open sequences end at the next step), then stop the loader and free. */
void served_models_shutdown(void);
void served_models_free(void);

/* What the listings say of model i: its info (expires_at set for a loaded model) and its state, read
 * under the loader's lock. The strings point into the model, which outlives the server. */
typedef struct served_view {
    api_model_info info;
    served_state state;
    int users, failed;
    char error[384];
} served_view;
void served_model_view(int i, served_view *v);
/* "unloaded", "loading", "loaded" (llama.cpp's /models status values). */
const char *served_state_name(served_state s);

/* The model a request names. OpenAI's endpoints: an id picks that model, any other name (or none)
 * the first one; Ollama's: a name that is no model's id is 404, as Ollama answers (no name: the first
 * model). NULL when the answer was sent (*sent). *name gets the name Ollama's answers echo. */
served_model *served_model_pick(struct MHD_Connection *c, conn *k, int strict, char *name, size_t size,
                                enum MHD_Result *sent);
/* m, loaded and held by k until k is freed: when it is not loaded yet, its load is asked for and k is
 * suspended until it ends, when k's handler runs again (NULL, *sent MHD_YES); NULL with the answer in
 * *sent when its load failed. keep_alive (ns): how long it stays loaded after k (< 0 for ever;
 * SERVED_KEEP_DEFAULT: --keep-alive). */
#define SERVED_KEEP_DEFAULT INT64_MIN
served_model *served_model_ready(struct MHD_Connection *c, conn *k, served_model *m, int64_t keep_alive,
                                 enum MHD_Result *sent);
/* Hold m if it is loaded (1: give it back with served_model_give_back), else 0: for /metrics. */
int served_model_take_loaded(served_model *m);
void served_model_give_back(served_model *m);
/* Unload m now if nothing holds it (1), else as soon as nothing does (0); -1 when it is not loaded. */
int served_model_unload(served_model *m);

/* 404 model "X" not found, as Ollama answers. */
enum MHD_Result served_reply_not_found(struct MHD_Connection *c, conn *k, const char *name);
/* The answer to a job sasp_sched_submit refused (rc < 0). */
enum MHD_Result served_reply_refused(struct MHD_Connection *c, conn *k, int rc);

#endif
