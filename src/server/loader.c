/* loader.c: models loaded and unloaded while sasp-server runs (loader.h, models.h). One thread, the
 * loader, does every load and every free, so that an HTTP thread never waits for one (a request for a
 * model that loads is suspended, http/wait.h) and the engine thread keeps stepping the other models.
 * L.mu guards every model's state fields (served_model: state, users, answering, last_used, last_asked,
 * keep_alive, unload_asked, failed, error, and model, tok, sched and lim while they change). A model that a request
 * holds (users > 0) is never unloaded; one that nothing holds is taken off (its state "unloaded" at
 * once) and its memory freed by the loader: its scheduler first (sasp_sched_free waits until the
 * engine thread no longer steps it), then its tokenizer and weights. */
#include "server/loader.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"
#include "http/reply.h"
#include "http/route.h"
#include "http/wait.h"

/* What a loaded model holds, freed together. */
typedef struct instance {
    sasp_model *model;
    sasp_tokenizer *tok;
    sasp_sched *sched;
    struct instance *next; /* the list of unloaded ones to free */
} instance;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* wakes the loader: a load asked for, a model given back or unloaded, quit */
    pthread_t thread;
    int started, quit;
    sasp_engine *engine;
    serve_options o;
    instance *unloaded; /* to free */
} L = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

void loader_lock(void) { pthread_mutex_lock(&L.mu); }
void loader_unlock(void) { pthread_mutex_unlock(&L.mu); }

static void instance_free(instance *in)
{
    sasp_sched_free(in->sched);
    sasp_tokenizer_free(in->tok);
    sasp_model_free(in->model);
}

/* Load m's directory into in (nothing of m changes). 0, or -1 with err. */
static int instance_load(const served_model *m, instance *in, char *err, size_t errlen)
{
    char tokpath[PATH_MAX + 32];
    *in = (instance){0};
    in->model = sasp_model_load_as(m->dir, L.o.threads, L.o.weights, err, errlen);
    if (!in->model) return -1;
    snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", m->dir);
    in->tok = sasp_tokenizer_load(tokpath, err, errlen);
    if (in->tok && sasp_tokenizer_vocab_size(in->tok) > in->model->cfg.vocab_size)
        snprintf(err, errlen, "%.200s has %d tokens but the model only %d", tokpath, sasp_tokenizer_vocab_size(in->tok),
                 in->model->cfg.vocab_size);
    else if (in->tok)
        in->sched = sasp_sched_new_on(L.engine, in->model, in->tok, L.o.parallel, m->info.n_ctx, L.o.max_queue,
                                      L.o.chunk, err, errlen);
    if (!in->sched) {
        instance_free(in);
        return -1;
    }
    sasp_sched_set_step_delay(in->sched, L.o.step_delay);
    sasp_sched_set_cache_ram(in->sched, L.o.cache_ram);
    return 0;
}

/* Under L.mu: m is loaded from in. */
static void attach(served_model *m, const instance *in)
{
    const sasp_config *cfg = &in->model->cfg;
    m->model = in->model;
    m->tok = in->tok;
    m->sched = in->sched;
    m->lim = (api_limits){.tok = in->tok, .n_ctx = m->info.n_ctx, .vocab = cfg->vocab_size, .bos = cfg->bos_token_id, .model_id = m->id};
    m->info.n_params = in->model->n_params;
    m->info.weights = sasp_model_describe(in->model).weights;
    m->state = MODEL_LOADED;
    m->failed = 0;
    m->error[0] = 0;
    m->last_used = m->last_asked = sasp_now_ns();
}

/* Under L.mu: m (loaded, held by nothing) is unloaded from now on; the loader frees its memory. */
static void detach(served_model *m)
{
    instance *in = malloc(sizeof *in);
    if (in) {
        *in = (instance){.model = m->model, .tok = m->tok, .sched = m->sched, .next = L.unloaded};
        L.unloaded = in;
    } else { /* out of memory: free it here (nothing here waits for L.mu) */
        instance now = {.model = m->model, .tok = m->tok, .sched = m->sched};
        instance_free(&now);
    }
    m->model = NULL;
    m->tok = NULL;
    m->sched = NULL;
    m->state = MODEL_UNLOADED;
    m->unload_asked = 0;
    fprintf(stderr, "sasp-server: unloaded %s\n", m->id);
    pthread_cond_signal(&L.cv);
}

/* Under L.mu: whether m, held by nothing, should be unloaded at now. */
static int unload_due(const served_model *m, int64_t now)
{
    return m->state == MODEL_LOADED && m->users == 0 &&
           (m->unload_asked || m->keep_alive == 0 || (m->keep_alive > 0 && now - m->last_used >= m->keep_alive));
}

/* Under L.mu: unload what is due, then, while more than --models-max are loaded or loading (not
 * counting those on their way out), the least recently used of the models whose requests are all
 * answered: at once, or when the last connection that holds it is freed (a client may have its answer,
 * and ask for the next model, before that). */
static void unload_what_is_due(int64_t now)
{
    int n = served_models_count(), busy = 0;
    for (int i = 0; i < n; i++) {
        served_model *m = served_model_at(i);
        if (unload_due(m, now)) detach(m);
        busy += m->state != MODEL_UNLOADED && !m->unload_asked;
    }
    while (L.o.models_max > 0 && busy > L.o.models_max) {
        served_model *lru = NULL;
        for (int i = 0; i < n; i++) {
            served_model *m = served_model_at(i);
            if (m->state == MODEL_LOADED && m->answering == 0 && !m->unload_asked &&
                (!lru || m->last_asked < lru->last_asked))
                lru = m;
        }
        if (!lru) break; /* every loaded one is answering a request: unloaded when it is not */
        if (lru->users == 0) detach(lru);
        else lru->unload_asked = 1;
        busy--;
    }
}

/* Under L.mu (released meanwhile): load m, asked for. */
static void load_asked(served_model *m)
{
    char err[sizeof m->error];
    instance in;
    pthread_mutex_unlock(&L.mu);
    int64_t t0 = sasp_now_ns();
    int rc = instance_load(m, &in, err, sizeof err);
    pthread_mutex_lock(&L.mu);
    if (rc == 0) {
        attach(m, &in);
        fprintf(stderr, "sasp-server: loaded %s in %.0f ms\n", m->id, (double)(sasp_now_ns() - t0) * 1e-6);
    } else {
        m->state = MODEL_UNLOADED;
        m->failed = 1;
        snprintf(m->error, sizeof m->error, "%s", err);
        fprintf(stderr, "sasp-server: cannot load %s: %s\n", m->id, err);
    }
}

/* Under L.mu: when the next keep_alive runs out (0: none will). */
static int64_t next_expiry(void)
{
    int64_t next = 0;
    for (int i = 0; i < served_models_count(); i++) {
        const served_model *m = served_model_at(i);
        if (m->state != MODEL_LOADED || m->users || m->keep_alive <= 0) continue;
        int64_t t = m->last_used + m->keep_alive;
        if (!next || t < next) next = t;
    }
    return next;
}

static void *loader_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&L.mu);
    while (!L.quit) {
        unload_what_is_due(sasp_now_ns());
        if (L.unloaded) { /* free them without the lock */
            instance *list = L.unloaded;
            L.unloaded = NULL;
            pthread_mutex_unlock(&L.mu);
            for (instance *in; (in = list);) {
                list = in->next;
                instance_free(in);
                free(in);
            }
            pthread_mutex_lock(&L.mu);
            continue;
        }
        served_model *asked = NULL;
        for (int i = 0; i < served_models_count() && !asked; i++)
            if (served_model_at(i)->state == MODEL_LOADING) asked = served_model_at(i);
        if (asked) {
            load_asked(asked);
            continue;
        }
        int64_t next = next_expiry();
        if (!next) {
            pthread_cond_wait(&L.cv, &L.mu);
            continue;
        }
        int64_t wait_ns = next - sasp_now_ns() + 1000000;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)(wait_ns / 1000000000);
        until.tv_nsec += (long)(wait_ns % 1000000000);
        if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
        if (wait_ns > 0) pthread_cond_timedwait(&L.cv, &L.mu, &until);
    }
    pthread_mutex_unlock(&L.mu);
    return NULL;
}

int loader_init(const serve_options *o)
{
    char err[256];
    L.o = *o;
    L.engine = sasp_engine_new(err, sizeof err);
    if (!L.engine) fprintf(stderr, "sasp-server: %s\n", err);
    return L.engine ? 0 : -1;
}

int loader_load_now(served_model *m)
{
    instance in;
    if (instance_load(m, &in, m->error, sizeof m->error) != 0) return -1;
    pthread_mutex_lock(&L.mu);
    attach(m, &in);
    m->keep_alive = L.o.keep_alive;
    pthread_mutex_unlock(&L.mu);
    return 0;
}

int loader_start(void)
{
    if (pthread_create(&L.thread, NULL, loader_main, NULL) != 0) {
        fprintf(stderr, "sasp-server: cannot start the thread that loads the models\n");
        return -1;
    }
    L.started = 1;
    return 0;
}

void loader_shutdown(void)
{
    pthread_mutex_lock(&L.mu);
    L.quit = 1; /* no load starts from now on */
    pthread_cond_signal(&L.cv);
    for (int i = 0; i < served_models_count(); i++)
        if (served_model_at(i)->sched) sasp_sched_shutdown(served_model_at(i)->sched);
    pthread_mutex_unlock(&L.mu);
}

void loader_free(void)
{
    if (L.started) {
        pthread_mutex_lock(&L.mu);
        L.quit = 1;
        pthread_cond_signal(&L.cv);
        pthread_mutex_unlock(&L.mu);
        pthread_join(L.thread, NULL);
        L.started = 0;
    }
    for (int i = 0; i < served_models_count(); i++) {
        served_model *m = served_model_at(i);
        if (m->state == MODEL_LOADED) detach(m);
    }
    for (instance *in; (in = L.unloaded);) {
        L.unloaded = in->next;
        instance_free(in);
        free(in);
    }
    sasp_engine_free(L.engine);
    L.engine = NULL;
}

/* --- what requests hold (models.h) --- */

/* A model a request holds is given back: touch (a request's, not /metrics') makes it the most
 * recently used and starts its keep_alive. */
static void give_back(served_model *m, int touch)
{
    pthread_mutex_lock(&L.mu);
    m->users--;
    if (touch) m->last_used = sasp_now_ns();
    if (unload_due(m, sasp_now_ns())) detach(m);        /* keep_alive 0, or asked: unloaded when the answer is */
    else if (m->users == 0) pthread_cond_signal(&L.cv); /* a model over --models-max may go now */
    pthread_mutex_unlock(&L.mu);
}

static void give_back_held(void *hold) { give_back(hold, 1); }

/* A request's answer is complete: its model is no longer in use for the choice of the least recently
 * used (it stays held until the answer's connection is freed); keep_alive starts. */
static void answered_held(void *hold)
{
    served_model *m = hold;
    pthread_mutex_lock(&L.mu);
    m->answering--;
    m->last_used = sasp_now_ns();
    if (m->answering == 0) pthread_cond_signal(&L.cv); /* a model over --models-max may go now */
    pthread_mutex_unlock(&L.mu);
}

int served_model_take_loaded(served_model *m)
{
    pthread_mutex_lock(&L.mu);
    int loaded = m->state == MODEL_LOADED;
    m->users += loaded;
    pthread_mutex_unlock(&L.mu);
    return loaded;
}

void served_model_give_back(served_model *m) { give_back(m, 0); }

/* Under L.mu: ask the loader for m unless it is loaded or loading. */
static void ask_load(served_model *m)
{
    if (m->state != MODEL_UNLOADED) return;
    m->state = MODEL_LOADING;
    m->failed = 0;
    pthread_cond_signal(&L.cv);
}

int served_model_unload(served_model *m)
{
    pthread_mutex_lock(&L.mu);
    int rc = m->state == MODEL_UNLOADED ? -1 : m->users == 0 && m->state == MODEL_LOADED ? 1
                                                                                         : 0;
    if (rc == 1) detach(m);
    else if (rc == 0) m->unload_asked = 1;
    pthread_mutex_unlock(&L.mu);
    return rc;
}

/* What a request for a model that loads waits for: the load has ended. */
static int load_ended(const void *on)
{
    const served_model *m = on;
    pthread_mutex_lock(&L.mu);
    int ended = m->state != MODEL_LOADING;
    pthread_mutex_unlock(&L.mu);
    return ended;
}

/* The access handler's call when a request that waited for its model is resumed: its handler again. */
static enum MHD_Result run_again(struct MHD_Connection *c, conn *k)
{
    if (k->wait.gone) {
        k->res.status = 499; /* nginx's "client closed request", for the log */
        return MHD_NO;
    }
    return k->req.route->handler(c, k);
}

served_model *served_model_ready(struct MHD_Connection *c, conn *k, served_model *m, int64_t keep_alive,
                                 enum MHD_Result *sent)
{
    int again = k->run.hold == m; /* the handler runs again after the load */
    pthread_mutex_lock(&L.mu);
    if (!again) {
        m->users++;
        m->answering++;
        m->last_used = m->last_asked = sasp_now_ns();
        m->keep_alive = keep_alive == SERVED_KEEP_DEFAULT ? L.o.keep_alive : keep_alive;
        m->unload_asked = 0; /* a request that comes keeps it (Ollama: the last keep_alive wins) */
        k->run.hold = m;
        k->run.unhold = give_back_held;
        k->run.answered = answered_held;
        ask_load(m);
    } else if (!m->failed) {
        ask_load(m);
    }
    served_state state = m->state;
    int failed = m->failed;
    char error[sizeof m->error];
    snprintf(error, sizeof error, "%s", m->error);
    pthread_mutex_unlock(&L.mu);
    if (state == MODEL_LOADED) return m;
    if (again && failed) {
        api_error e;
        api_error_set(&e, 500, "server_error", NULL, "model", "cannot load the model %s: %s", m->id, error);
        *sent = reply_error(c, k, &e, NULL, NULL);
        return NULL;
    }
    *sent = wait_suspend_until(c, k, load_ended, m, run_again);
    return NULL;
}

/* --- the models as a whole: found and loaded at start, shut down, seen by the listings --- */

int served_models_load(const char *const *dirs, int n, const char *models_dir, const serve_options *o)
{
    if (loader_init(o) != 0) return -1;
    for (int i = 0; i < n; i++) { /* -m's: loaded now while fewer than --models-max are */
        int first = served_models_count();
        if (served_models_add(dirs[i], o, 0) != 0) return -1;
        for (int j = first; j < served_models_count(); j++) {
            int loaded = 0;
            for (int k = 0; k < served_models_count(); k++) loaded += served_model_at(k)->state == MODEL_LOADED;
            served_model *m = served_model_at(j);
            if ((o->models_max <= 0 || loaded < o->models_max) && loader_load_now(m) != 0) {
                fprintf(stderr, "sasp-server: cannot load the model: %s\n", m->error);
                return -1;
            }
        }
    }
    if (models_dir && served_models_add(models_dir, o, 1) != 0) return -1;
    return loader_start();
}

void served_models_shutdown(void) { loader_shutdown(); }

void served_models_free(void) { loader_free(); }

void served_model_view(int i, served_view *v)
{
    served_model *m = served_model_at(i);
    loader_lock();
    v->info = m->info;
    v->state = m->state;
    v->users = m->users;
    v->failed = m->failed;
    snprintf(v->error, sizeof v->error, "%s", m->error);
    v->info.expires_at = 0;
    if (m->state == MODEL_LOADED && m->keep_alive >= 0) { /* Ollama: keep_alive after the last request */
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        int64_t now = sasp_now_ns(), end = (m->users ? now : m->last_used) + m->keep_alive;
        double at = (double)wall.tv_sec + wall.tv_nsec * 1e-9 + (double)(end - now) * 1e-9;
        v->info.expires_at = at > 253402300799.0 ? 0 : (long long)(at + 0.5); /* beyond 9999: never */
    }
    loader_unlock();
}
