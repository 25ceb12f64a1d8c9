/* models.c: the registry of the models sasp-server serves (models.h): found at start (-m, --models-dir), each with
 * its config and its file facts; the one a request names; what the listings say of them; the answers
 * that speak of them (a model not found, a job its scheduler refused). loader.c loads and unloads
 * them. */
#include "server/models.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/sha256.h"
#include "base/util.h"
#include "http/reply.h"
#include "model/checkpoint.h"

static served_model g_models[SERVER_MAX_MODELS];
static int g_n_models;
static serve_options g_options;

const serve_options *served_options(void) { return &g_options; }
int served_models_count(void) { return g_n_models; }
served_model *served_model_at(int i) { return i >= 0 && i < g_n_models ? &g_models[i] : NULL; }
int served_model_index(const served_model *m) { return (int)(m - g_models); }

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

/* The parameters a config implies (the tensors it requires), until the model is loaded and counted. */
static size_t params_of(const sasp_config *c)
{
    size_t n = 0;
    for (int k = 0; k < SASP_N_TENSOR_KINDS; k++)
        for (int l = 0; l < (sasp_tensor_per_layer((sasp_tensor_kind)k) ? c->n_layers : 1); l++) {
            sasp_tensor_spec spec;
            if (sasp_tensor_spec_of(c, (sasp_tensor_kind)k, l, &spec) == SASP_TENSOR_REQUIRED)
                n += (size_t)spec.shape[0] * (size_t)(spec.ndim == 2 ? spec.shape[1] : 1);
        }
    return n;
}

/* A model directory into the next entry, not loaded: its config, its name, its file facts. The entry,
 * or NULL after saying why. */
static served_model *add_model(const char *dir, const serve_options *o)
{
    if (g_n_models == SERVER_MAX_MODELS) {
        fprintf(stderr, "sasp-server: at most %d models\n", SERVER_MAX_MODELS);
        return NULL;
    }
    served_model *sm = &g_models[g_n_models];
    char err[512];
    snprintf(sm->dir, sizeof sm->dir, "%s", dir);
    dir_name(dir, sm->id, sizeof sm->id);
    if (served_model_find(sm->id)) {
        fprintf(stderr, "sasp-server: two models are named %s (%s)\n", sm->id, dir);
        return NULL;
    }
    if (sasp_config_load(dir, &sm->cfg, err, sizeof err) != 0) {
        fprintf(stderr, "sasp-server: cannot load the model: %s\n", err);
        return NULL;
    }
    int n_ctx = o->ctx > 0 && o->ctx < sm->cfg.max_seq_len ? o->ctx : sm->cfg.max_seq_len;
    if (o->ctx > sm->cfg.max_seq_len)
        fprintf(stderr, "sasp-server: --ctx %d is beyond %s's %d positions; using %d\n", o->ctx, sm->id,
                sm->cfg.max_seq_len, n_ctx);
    sm->info = (api_model_info){.id = sm->id, .path = sm->dir, .cfg = &sm->cfg, .n_params = params_of(&sm->cfg), .n_ctx = n_ctx, .digest = sm->digest, .created = (long)time(NULL)};
    sm->keep_alive = o->keep_alive;
    sm->info.weights = sasp_model_weights_of(dir, o->weights); /* until loaded: from the header */
    describe_file(sm);
    g_n_models++;
    return sm;
}

static int has_config(const char *dir)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/config.json", dir);
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The model directories of dir (every subdirectory with a config.json), in name order, into names
 * (at most max, to free). How many, or -1 when dir is no directory. */
static int model_dirs_of(const char *dir, char **names, int max)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < max) {
        char sub[PATH_MAX];
        if (de->d_name[0] == '.' || snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name) >= (int)sizeof sub) continue;
        if (has_config(sub) && (names[n] = strdup(sub))) n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_name);
    return n;
}

int served_models_add(const char *dir, const serve_options *o, int lazy)
{
    char *names[SERVER_MAX_MODELS];
    int n = lazy || !has_config(dir) ? model_dirs_of(dir, names, SERVER_MAX_MODELS) : 0, rc = 0;
    if (n < 0 && lazy) {
        fprintf(stderr, "sasp-server: --models-dir %s is not a directory\n", dir);
        return -1;
    }
    if (n <= 0 && !lazy) { /* one model directory (or what loading it says is wrong) */
        names[0] = strdup(dir);
        n = names[0] ? 1 : 0;
    } else if (n == 0) {
        fprintf(stderr, "sasp-server: %s holds no model (no config.json in its subdirectories)\n", dir);
        rc = -1;
    }
    g_options = *o;
    for (int i = 0; i < n; i++) {
        if (rc == 0 && !add_model(names[i], o)) rc = -1;
        free(names[i]);
    }
    return rc;
}

const char *served_state_name(served_state s)
{
    return s == MODEL_LOADED ? "loaded" : s == MODEL_LOADING ? "loading"
                                                             : "unloaded";
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
                  "queue places together",
                  served_options()->parallel, served_options()->max_queue);
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
