/* server_models.c: loading the models sasp-server serves and finding the one a request names
 * (server_models.h). */
#include "server_models.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "sha256.h"

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
    sm->lim = (api_limits){sm->tok, n_ctx, cfg->vocab_size, cfg->bos_token_id, sm->id};
    sm->info = (api_model_info){sm->id, sm->dir, cfg, sm->model->n_params, n_ctx, 0, 0, sm->digest,
                                (long)time(NULL), sasp_model_describe(sm->model).weights};
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
