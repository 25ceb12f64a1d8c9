/* models.c: loading the models sasp-server serves, finding the one a request names, and the answers
 * that speak of them: a model not found, a job its scheduler refused (models.h). */
#include "server/models.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/sha256.h"
#include "http/reply.h"

static served_model g_models[SERVER_MAX_MODELS];
static int g_n_models;
static serve_options g_options;

const serve_options *served_options(void) { return &g_options; }
static sasp_engine *g_engine;

int served_models_count(void) { return g_n_models; }
served_model *served_model_at(int i) { return i >= 0 && i < g_n_models ? &g_models[i] : NULL; }

served_model *served_model_find(const char *name)
{
    for (int i = 0; i < g_n_models; i++)
        if (api_ollama_name_matches(&g_models[i].info, name)) return &g_models[i];
    return NULL;
}

/* The last component of dir. */
static void dir_name(const char *dir, char *out, size_t size)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dir);
    size_t l = strlen(tmp);
    while (l > 1 && tmp[l - 1] == '/') tmp[--l] = 0;
    const char *base = strrchr(tmp, '/');
    snprintf(out, size, "%s", base ? base + 1 : tmp);
}

/* The file facts Ollama's listings carry: size, modification time, sha256 of model.safetensors. */
static void describe_file(served_model *sm)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/model.safetensors", sm->dir);
    struct stat st;
    if (stat(path, &st) == 0) {
        sm->info.file_size = (long long)st.st_size;
        sm->info.modified = (long long)st.st_mtime;
    }
    if (sasp_sha256_file(path, sm->digest) != 0) snprintf(sm->digest, sizeof sm->digest, "%s", "unknown");
}

/* Load one model directory into the next entry. 0, or -1 after saying why. */
static int load_one(const char *dir, const serve_options *o)
{
    if (g_n_models == SERVER_MAX_MODELS) {
        fprintf(stderr, "sasp-server: at most %d models\n", SERVER_MAX_MODELS);
        return -1;
    }
    served_model *sm = &g_models[g_n_models];
    char err[512], tokpath[PATH_MAX + 32];
    snprintf(sm->dir, sizeof sm->dir, "%s", dir);
    dir_name(dir, sm->id, sizeof sm->id);
    if (served_model_find(sm->id)) {
        fprintf(stderr, "sasp-server: two models are named %s (%s)\n", sm->id, dir);
        return -1;
    }
    sm->model = sasp_model_load_as(dir, o->threads, o->weights, err, sizeof err);
    if (!sm->model) {
        fprintf(stderr, "sasp-server: cannot load the model: %s\n", err);
        return -1;
    }
    g_n_models++; /* from here on served_models_free frees what is loaded */
    snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", dir);
    sm->tok = sasp_tokenizer_load(tokpath, err, sizeof err);
    if (!sm->tok) {
        fprintf(stderr, "sasp-server: cannot load the tokenizer: %s\n", err);
        return -1;
    }
    const sasp_config *cfg = &sm->model->cfg;
    if (sasp_tokenizer_vocab_size(sm->tok) > cfg->vocab_size) {
        fprintf(stderr, "sasp-server: %s has %d tokens but the model only %d\n", tokpath,
                sasp_tokenizer_vocab_size(sm->tok), cfg->vocab_size);
        return -1;
    }
    int n_ctx = o->ctx > 0 && o->ctx < cfg->max_seq_len ? o->ctx : cfg->max_seq_len;
    if (o->ctx > cfg->max_seq_len)
        fprintf(stderr, "sasp-server: --ctx %d is beyond %s's %d positions; using %d\n", o->ctx, sm->id,
                cfg->max_seq_len, n_ctx);
    sm->sched = sasp_sched_new_on(g_engine, sm->model, sm->tok, o->parallel, n_ctx, o->max_queue, o->chunk, err,
                                  sizeof err);
    if (!sm->sched) {
        fprintf(stderr, "sasp-server: %s\n", err);
        return -1;
    }
    sasp_sched_set_step_delay(sm->sched, o->step_delay);
    sasp_sched_set_cache_ram(sm->sched, o->cache_ram);
    sm->lim = (api_limits){.tok = sm->tok, .n_ctx = n_ctx, .vocab = cfg->vocab_size, .bos = cfg->bos_token_id,
                           .model_id = sm->id};
    sm->info = (api_model_info){.id = sm->id, .path = sm->dir, .cfg = cfg, .n_params = sm->model->n_params,
                                .n_ctx = n_ctx, .digest = sm->digest, .created = (long)time(NULL)};
    describe_file(sm);
    return 0;
}

static int has_config(const char *dir)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/config.json", dir);
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A directory without config.json: every subdirectory that has one, in name order. */
static int load_collection(const char *dir, const serve_options *o)
{
    DIR *d = opendir(dir);
    if (!d) return load_one(dir, o); /* loading it says what is wrong */
    char *names[256];
    int n = 0, rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 256) {
        char sub[PATH_MAX];
        if (de->d_name[0] == '.' || snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name) >= (int)sizeof sub) continue;
        if (has_config(sub)) names[n++] = strdup(sub);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_name);
    if (n == 0) {
        fprintf(stderr, "sasp-server: %s holds no model (no config.json in it or in its subdirectories)\n", dir);
        rc = -1;
    }
    for (int i = 0; i < n; i++) {
        if (rc == 0 && names[i]) rc = load_one(names[i], o);
        free(names[i]);
    }
    return rc;
}

int served_models_load(const char *const *dirs, int n, const serve_options *o)
{
    char err[256];
    g_options = *o;
    g_engine = sasp_engine_new(err, sizeof err);
    if (!g_engine) {
        fprintf(stderr, "sasp-server: %s\n", err);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if ((has_config(dirs[i]) ? load_one(dirs[i], o) : load_collection(dirs[i], o)) != 0) return -1;
    return 0;
}

void served_models_shutdown(void)
{
    for (int i = 0; i < g_n_models; i++)
        if (g_models[i].sched) sasp_sched_shutdown(g_models[i].sched);
}

void served_models_free(void)
{
    for (int i = 0; i < g_n_models; i++) {
        sasp_sched_free(g_models[i].sched);
        sasp_tokenizer_free(g_models[i].tok);
        sasp_model_free(g_models[i].model);
    }
    g_n_models = 0;
    sasp_engine_free(g_engine);
    g_engine = NULL;
}

/* --- the model of a request, and the answers that speak of the models --- */

enum MHD_Result served_reply_refused(struct MHD_Connection *c, conn *k, int rc)
{
    api_error e;
    if (rc == -1) {
        api_error_set(&e, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
                      "the server is busy: all %d slots and %d queue places are taken; retry later",
                      served_options()->parallel, served_options()->max_queue);
        return reply_error(c, k, &e, "Retry-After", "1");
    }
    if (rc == -2) return reply_errorf(c, k, 503, "unavailable_error", NULL, "%s", "the server is shutting down");
    api_error_set(&e, 400, "invalid_request_error", NULL, "n",
                  "the request asks for more sequences (prompts x n) than this server's %d slots and %d "
                  "queue places together", served_options()->parallel, served_options()->max_queue);
    return reply_error(c, k, &e, NULL, NULL);
}

/* The model a request names. OpenAI's endpoints: an id picks that model, any other name (or none)
 * the first one; Ollama's and Anthropic's (strict): a name that is no model's id is 404, as they
 * answer (no name: the first model; Ollama's older "name" is read too). NULL when the answer was
 * sent. *name gets the name the answers echo. */
served_model *served_model_pick(struct MHD_Connection *c, conn *k, int strict, char *name, size_t size,
                                enum MHD_Result *sent)
{
    int named = api_requested_model(conn_body(k), k->req.body.len, strict, name, size);
    served_model *m = named ? served_model_find(name) : NULL;
    if (!m && named && strict) {
        *sent = served_reply_not_found(c, k, name);
        return NULL;
    }
    if (!m) m = served_model_at(0);
    if (!named || !strict) snprintf(name, size, "%s", m->id);
    return m;
}

enum MHD_Result served_reply_not_found(struct MHD_Connection *c, conn *k, const char *name)
{
    api_error e;
    api_error_set(&e, 404, "not_found_error", "model_not_found", "model", "model \"%s\" not found", name);
    return reply_error(c, k, &e, NULL, NULL);
}
