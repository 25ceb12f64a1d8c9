/* loader.h: the loader thread of sasp-server's models (loader.c), over the models' registry
 * (models.c): it loads a model asked for, frees one unloaded, and unloads one that nothing holds when
 * its keep_alive has run out, when it was asked to, or when it is the least recently used beyond
 * --models-max. The rest of the server reaches it through the functions of models.h that loader.c
 * defines (served_models_load, served_model_ready, served_model_view, ...). */
#ifndef SASP_SERVER_LOADER_H
#define SASP_SERVER_LOADER_H

#include "server/models.h"

/* Start the engine thread (the models' schedulers run on it); -1 after saying why. */
int loader_init(const serve_options *o);
/* Load m now, on the calling thread (the -m models at start). 0, or -1 with m->error set. */
int loader_load_now(served_model *m);
/* Start the loader thread. 0, or -1 after saying why. */
int loader_start(void);
/* Shut every loaded model's scheduler down (open sequences end at their next step). */
void loader_shutdown(void);
/* Stop the loader thread, free every model and stop the engine thread. */
void loader_free(void);
/* Lock and unlock the models' states (served_model's loader fields). */
void loader_lock(void);
void loader_unlock(void);

#endif
