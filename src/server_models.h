/* server_models.h: the models sasp-server serves. Each -m names a model directory, or a directory
 * of model directories (every subdirectory with a config.json); each model gets its tokenizer, its
 * --parallel slots and a scheduler, all on one engine thread that steps the models in turn
 * (scheduler.h, sasp_engine). The first model is the default one. */
#ifndef SASP_SERVER_MODELS_H
#define SASP_SERVER_MODELS_H

#include <limits.h>
#include "api.h"
#include "model.h"
#include "scheduler.h"
#include "tokenizer.h"

#define SERVER_MAX_MODELS 16

typedef struct served_model {
    sasp_model *model;
    sasp_tokenizer *tok;
    sasp_sched *sched;
    api_limits lim;
    api_model_info info;
    char id[256];         /* the directory's name, unique among the models */
    char dir[PATH_MAX];
    char digest[65];      /* sha256 of model.safetensors */
} served_model;

/* How each model is served: the options of the command line that concern the engine. */
typedef struct serve_options {
    int threads, parallel, ctx, max_queue, chunk, step_delay;
    size_t cache_ram; /* bytes of evicted prompt prefixes kept per model (--cache-ram) */
    int weights;      /* --weights: a sasp_wtype to convert the matrices to, SASP_WEIGHTS_FAST or _AS_STORED */
} serve_options;

/* Load every model of dirs (n of them). 0, or -1 after saying why on stderr. */
int served_models_load(const char *const *dirs, int n, const serve_options *o);
/* The options they were loaded with. */
const serve_options *served_options(void);
int served_models_count(void);
served_model *served_model_at(int i);
/* The model a request names: its id (with Ollama's ":latest" tag or without); NULL when none is. */
served_model *served_model_find(const char *name);
/* Shut every scheduler down (open sequences end at the next step). */
void served_models_shutdown(void);
void served_models_free(void);

#endif
