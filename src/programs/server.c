/* server.c: sasp-server's main: the command line, the models loaded (server/models.h), the HTTP daemon
 * started with the route table (http/listen.h, server/routes.c), the signals that stop it gracefully.
 * The layers under it (src/README.md): the endpoints in server/, the HTTP layer in http/ (connections,
 * the guard, routing, replies, the waiter of suspended connections), the wire format in api/, the
 * engine thread in engine/, the model in model/, text in text/. docs/api.md is the manual. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "base/notify.h"
#include "base/paths.h"
#include "http/guard.h"
#include "http/listen.h"
#include "http/wait.h"
#include "kernels.h"
#include "model/checkpoint.h"
#include "server/handlers.h"
#include "server/models.h"

/* --- options and global state --- */

static struct {
    const char *model_dir, *host, *api_key, *www, *slot_save_path;
    const char *ssl_key_file, *ssl_cert_file; /* both: HTTPS */
    int port, threads, parallel, ctx, max_queue, chunk, step_delay;
    size_t max_body;
    int timeout;                               /* seconds a connection may make no progress (a client that stops reading) */
    const char *model_dirs[SERVER_MAX_MODELS]; /* every -m, in order (model_dir is the first) */
    int n_model_dirs;
    int cache_ram;                                                                                                                                                                  /* MiB of evicted prompt prefixes kept per model (--cache-ram) */
    const char *models_dir;                                                                                                                                                         /* --models-dir: models loaded on first use */
    int models_max;                                                                                                                                                                 /* --models-max: models loaded at once (0: no limit) */
    int64_t keep_alive;                                                                                                                                                             /* --keep-alive: ns a model stays loaded after its last request (< 0: for ever) */
} opt = {.host = "127.0.0.1", .port = 8080, .parallel = 4, .max_queue = 64, .chunk = 128, .max_body = 1 << 20, .timeout = 300, .cache_ram = 64, .models_max = 4, .keep_alive = -1}; /* the defaults; what is not named starts at 0 or NULL */

#define MAX_MODEL_OPTIONS 16 /* -m options */

/* the HTTP layer: its epoll threads and the guard's limits (http/guard.h); max_inflight_client < 0:
 * --parallel plus half of --max-queue, set once the options are read */
static int g_http_threads = 4;
static int g_weights = SASP_WEIGHTS_FAST;      /* --weights */
static const char *g_api_keys[GUARD_MAX_LIST]; /* every --api-key (opt.api_key is the first) */
static int g_n_api_keys;
static guard_options g_guard = {.max_conn_per_ip = 128, .max_connections = 8192, .header_timeout = 10, .max_inflight_client = -1, .max_inflight_key = 0};

/* --- main --- */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: sasp-server [options]\n"
            "Serve SAS-P models over HTTP: OpenAI-compatible /v1/completions, /v1/chat/completions,\n"
            "/v1/responses, /v1/embeddings and /v1/models, Anthropic's /v1/messages and its count_tokens,\n"
            "Ollama's /api/generate, /api/chat, /api/embed, /api/tags, /api/show, /api/ps and /api/version,\n"
            "llama.cpp's /completion, /infill, /slots, /props and /apply-template, /tokenize, /detokenize,\n"
            "/health, /metrics, its router's /models, /models/load and /models/unload, and the files of\n"
            "--www at /. docs/api.md describes every endpoint; docs/editor.md the set-up of code editors.\n\n"
            "Options:\n"
            "  -m, --model DIR      model directory (config.json, model.safetensors, tokenizer.json), or a\n"
            "                       directory of model directories; may be given up to 16 times, and a\n"
            "                       request's \"model\" picks one (the first is the default); loaded at\n"
            "                       start, up to --models-max of them [default, without --models-dir:\n"
            "                       " SASP_SOURCE_MODEL_DIR " if the current directory has it, else\n"
            "                       " SASP_INSTALLED_MODEL_DIR "]\n"
            "      --models-dir DIR every model directory in DIR (a subdirectory with a config.json) is\n"
            "                       served, loaded on the first request that names it (llama.cpp's router)\n"
            "      --models-max N   models loaded at once: beyond N the least recently used one that no\n"
            "                       request is running on is unloaded (0: no limit) [default: 4]\n"
            "      --keep-alive D   how long a model stays loaded after its last request, as Ollama's\n"
            "                       keep_alive: a duration (\"5m\", \"1h\", \"30s\"), seconds, 0 (unload at\n"
            "                       once) or -1 (for ever); a request's keep_alive wins [default: -1]\n"
            "      --host ADDR      address to listen on (an IPv4 or IPv6 address or a host name)\n"
            "                       [default: 127.0.0.1]\n"
            "      --port N         TCP port; 0 picks a free one (the URL printed at start says which)\n"
            "                       [default: 8080]\n"
            "      --ssl-key-file FILE   serve HTTPS (TLS, libmicrohttpd's GnuTLS) with this private key (PEM)\n"
            "      --ssl-cert-file FILE  and this certificate (PEM, the chain after it); both or neither\n"
            "                       [default: plain HTTP]\n"
            "  -t, --threads N      threads of the forward pass [default: one per core]\n"
            "      --weights TYPE   the weight matrices' type in memory: f32, bf16 or q8_0 (converted at\n"
            "                       load), stored (as the checkpoint stores them), or auto: the type this\n"
            "                       CPU's kernels run fastest, q8_0 with SIMD, f32 on the scalar reference\n"
            "                       (a file stored narrower stays as it is). Every type gives a request the\n"
            "                       same tokens alone or under load [default: auto]\n"
            "      --parallel N     sequences decoded at once (slots, each with its own KV-cache) [default: 4]\n"
            "      --ctx N          context of each slot in tokens [default: the model's max_seq_len]\n"
            "      --api-key KEY    require 'Authorization: Bearer KEY' or 'x-api-key: KEY' (all but /health\n"
            "                       and files); may be repeated: any of the keys is accepted, each\n"
            "                       with its own --max-inflight-per-key\n"
            "      --www DIR        directory of static files served at / [default: " SASP_SOURCE_WWW_DIR "\n"
            "                       if the current directory has it, else " SASP_INSTALLED_WWW_DIR "]\n"
            "      --max-queue N    requests waiting for a slot beyond which the server answers 429\n"
            "                       [default: 64]\n"
            "      --chunk N        prompt tokens fed per engine step, shared by prefilling slots [default: 128]\n"
            "      --cache-ram MIB  memory per model for prompt prefixes evicted from the slots' caches, kept\n"
            "                       for requests that share them (0: none) [default: 64]\n"
            "      --max-body N     largest request body in bytes; larger gets 413 [default: 1048576]\n"
            "      --step-delay MS  sleep MS milliseconds after every engine step, to slow generation down\n"
            "                       on purpose (tests, demos of streaming with a tiny model) [default: 0]\n"
            "      --timeout S      close a connection that makes no progress for S seconds (a client that\n"
            "                       stops reading its stream, or sends nothing) [default: 300]\n"
            "      --slot-save-path DIR  directory of the files of POST /slots/{id}?action=save|restore (a\n"
            "                       slot's tokens and KV-cache); without it those answer 501 [default: none]\n"
            "\nWho may connect (docs/api.md, \"Origins, hosts and limits\"):\n"
            "      --allow-origin O web pages of origin O (scheme://host:port, scheme://host:* for any port,\n"
            "                       or * for every page) may call the server; may be repeated. Pages on\n"
            "                       http://localhost:*, http://127.0.0.1:*, http://[::1]:* and the server's\n"
            "                       own may always; a request with another Origin gets 403\n"
            "      --allow-host N   answer requests whose Host header is N (a name, *.domain, or *); may be\n"
            "                       repeated. Loopback names and addresses, the listening address and\n"
            "                       --host always pass; another Host gets 403 (DNS rebinding)\n"
            "      --max-conn-per-ip N  connections one client address may hold open; more are closed at\n"
            "                       once (0: no limit) [default: 128]\n"
            "      --max-connections N  connections of all clients together [default: 8192]\n"
            "      --header-timeout S  close a connection that has not sent its request headers S seconds\n"
            "                       after it opened or after its last answer [default: 10]\n"
            "      --max-inflight-per-client N  generation requests (running or queued) one client address\n"
            "                       may have at once; more get 429 (0: no limit) [default: --parallel +\n"
            "                       half of --max-queue, or none when that is all of them]\n"
            "      --max-inflight-per-key N  the same for all the requests of one API key (0: no limit)\n"
            "                       [default: 0]\n"
            "      --trusted-proxy ADDR  a balancer or reverse proxy (an IPv4 or IPv6 address, or ADDR/BITS)\n"
            "                       whose requests count, in the per-client limits above, as the client's\n"
            "                       that its X-Forwarded-For names (the right-most address that is no\n"
            "                       trusted proxy); its own connections are not limited per address; may be\n"
            "                       repeated [default: none: X-Forwarded-For is ignored]\n"
            "      --http-threads N threads of the HTTP layer (epoll; each serves many connections)\n"
            "                       [default: 4]\n"
            "  -h, --help           show this help and exit\n"
            "      --version        print the version and exit\n");
}

static int parse_int(const char *name, const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "sasp-server: %s must be an integer in [%d, %d], got '%s'\n", name, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Append v to a list of at most GUARD_MAX_LIST entries (--allow-origin, --allow-host). */
static int add_to_list(const char *name, const char **list, int *n, const char *v)
{
    if (*n == GUARD_MAX_LIST || !v[0]) {
        fprintf(stderr, "sasp-server: %s takes a non-empty value, at most %d times\n", name, GUARD_MAX_LIST);
        return -1;
    }
    list[(*n)++] = v;
    return 0;
}

/* Read the command line into opt. Returns -1 to go on, or the status to exit with (--help, --version,
 * a bad option). */
static int parse_options(int argc, char **argv)
{
    enum { O_HOST = 256,
           O_PORT,
           O_PARALLEL,
           O_CTX,
           O_KEY,
           O_WWW,
           O_QUEUE,
           O_CHUNK,
           O_BODY,
           O_DELAY,
           O_TIMEOUT,
           O_VERSION,
           O_CACHE_RAM,
           O_ORIGIN,
           O_ALLOW_HOST,
           O_CONN_IP,
           O_CONNS,
           O_HDR_TIMEOUT,
           O_INFL_CLIENT,
           O_INFL_KEY,
           O_HTTP_THREADS,
           O_WEIGHTS,
           O_SLOT_SAVE_PATH,
           O_TRUSTED_PROXY,
           O_SSL_KEY,
           O_SSL_CERT,
           O_MODELS_DIR,
           O_MODELS_MAX,
           O_KEEP_ALIVE };
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'}, {"host", required_argument, 0, O_HOST}, {"port", required_argument, 0, O_PORT}, {"threads", required_argument, 0, 't'}, {"parallel", required_argument, 0, O_PARALLEL}, {"ctx", required_argument, 0, O_CTX}, {"api-key", required_argument, 0, O_KEY}, {"www", required_argument, 0, O_WWW}, {"max-queue", required_argument, 0, O_QUEUE}, {"chunk", required_argument, 0, O_CHUNK}, {"max-body", required_argument, 0, O_BODY}, {"step-delay", required_argument, 0, O_DELAY}, {"timeout", required_argument, 0, O_TIMEOUT}, {"cache-ram", required_argument, 0, O_CACHE_RAM}, {"allow-origin", required_argument, 0, O_ORIGIN}, {"allow-host", required_argument, 0, O_ALLOW_HOST}, {"max-conn-per-ip", required_argument, 0, O_CONN_IP}, {"max-connections", required_argument, 0, O_CONNS}, {"header-timeout", required_argument, 0, O_HDR_TIMEOUT}, {"max-inflight-per-client", required_argument, 0, O_INFL_CLIENT}, {"max-inflight-per-key", required_argument, 0, O_INFL_KEY}, {"http-threads", required_argument, 0, O_HTTP_THREADS}, {"weights", required_argument, 0, O_WEIGHTS}, {"slot-save-path", required_argument, 0, O_SLOT_SAVE_PATH}, {"trusted-proxy", required_argument, 0, O_TRUSTED_PROXY}, {"ssl-key-file", required_argument, 0, O_SSL_KEY}, {"ssl-cert-file", required_argument, 0, O_SSL_CERT}, {"models-dir", required_argument, 0, O_MODELS_DIR}, {"models-max", required_argument, 0, O_MODELS_MAX}, {"keep-alive", required_argument, 0, O_KEEP_ALIVE}, {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, O_VERSION}, {0, 0, 0, 0}};
    int ch, body = 0;
    while ((ch = getopt_long(argc, argv, "m:t:h", lo, NULL)) != -1) {
        int bad = 0;
        switch (ch) {
        case 'm':
            if (opt.n_model_dirs == MAX_MODEL_OPTIONS) {
                fprintf(stderr, "sasp-server: at most %d -m options\n", MAX_MODEL_OPTIONS);
                return 2;
            }
            opt.model_dirs[opt.n_model_dirs++] = optarg;
            opt.model_dir = opt.model_dirs[0];
            break;
        case O_HOST: opt.host = optarg; break;
        case O_PORT: bad = parse_int("--port", optarg, 0, 65535, &opt.port); break;
        case 't': bad = parse_int("--threads", optarg, 0, 1024, &opt.threads); break;
        case O_PARALLEL: bad = parse_int("--parallel", optarg, 1, 256, &opt.parallel); break;
        case O_CTX: bad = parse_int("--ctx", optarg, 1, 1 << 20, &opt.ctx); break;
        case O_KEY:
            if (optarg[0]) bad = add_to_list("--api-key", g_api_keys, &g_n_api_keys, optarg);
            opt.api_key = g_n_api_keys ? g_api_keys[0] : NULL;
            break;
        case O_WWW: opt.www = optarg; break;
        case O_QUEUE: bad = parse_int("--max-queue", optarg, 0, 1 << 20, &opt.max_queue); break;
        case O_CHUNK: bad = parse_int("--chunk", optarg, 1, 1 << 16, &opt.chunk); break;
        case O_BODY:
            bad = parse_int("--max-body", optarg, 1, INT_MAX, &body);
            opt.max_body = (size_t)body;
            break;
        case O_DELAY: bad = parse_int("--step-delay", optarg, 0, 60000, &opt.step_delay); break;
        case O_TIMEOUT: bad = parse_int("--timeout", optarg, 1, 86400, &opt.timeout); break;
        case O_CACHE_RAM: bad = parse_int("--cache-ram", optarg, 0, 1 << 20, &opt.cache_ram); break;
        case O_ORIGIN: bad = add_to_list("--allow-origin", g_guard.origins, &g_guard.n_origins, optarg); break;
        case O_ALLOW_HOST: bad = add_to_list("--allow-host", g_guard.hosts, &g_guard.n_hosts, optarg); break;
        case O_CONN_IP: bad = parse_int("--max-conn-per-ip", optarg, 0, 1 << 20, &g_guard.max_conn_per_ip); break;
        case O_CONNS: bad = parse_int("--max-connections", optarg, 1, 1 << 20, &g_guard.max_connections); break;
        case O_HDR_TIMEOUT: bad = parse_int("--header-timeout", optarg, 1, 86400, &g_guard.header_timeout); break;
        case O_INFL_CLIENT:
            bad = parse_int("--max-inflight-per-client", optarg, 0, 1 << 20, &g_guard.max_inflight_client);
            break;
        case O_INFL_KEY: bad = parse_int("--max-inflight-per-key", optarg, 0, 1 << 20, &g_guard.max_inflight_key); break;
        case O_HTTP_THREADS: bad = parse_int("--http-threads", optarg, 1, 64, &g_http_threads); break;
        case O_WEIGHTS:
            if ((bad = (g_weights = sasp_weights_parse(optarg)) == SASP_WEIGHTS_UNKNOWN))
                fprintf(stderr, "sasp-server: --weights takes " SASP_WEIGHTS_HELP ", not '%s'\n", optarg);
            break;
        case O_SLOT_SAVE_PATH: opt.slot_save_path = optarg; break;
        case O_SSL_KEY: opt.ssl_key_file = optarg; break;
        case O_SSL_CERT: opt.ssl_cert_file = optarg; break;
        case O_TRUSTED_PROXY:
            bad = add_to_list("--trusted-proxy", g_guard.trusted_proxies, &g_guard.n_trusted_proxies, optarg);
            break;
        case O_MODELS_DIR: opt.models_dir = optarg; break;
        case O_MODELS_MAX: bad = parse_int("--models-max", optarg, 0, SERVER_MAX_MODELS, &opt.models_max); break;
        case O_KEEP_ALIVE:
            if ((bad = api_parse_keep_alive(optarg, &opt.keep_alive) != 0))
                fprintf(stderr, "sasp-server: --keep-alive takes a duration (5m, 1h, 30s), seconds, 0 or -1, not '%s'\n",
                        optarg);
            break;
        case 'h': usage(stdout); return 0;
        case O_VERSION: printf("sasp-server %s\n", SASP_VERSION); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "sasp-server: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!opt.ssl_key_file != !opt.ssl_cert_file) {
        fprintf(stderr, "sasp-server: --ssl-key-file and --ssl-cert-file go together: give both, or neither\n");
        return 2;
    }
    if (opt.api_key && !opt.api_key[0]) opt.api_key = NULL;
    if (g_guard.max_inflight_client < 0) { /* no lower than the slots and queue: their own 429 says it */
        int d = opt.parallel + (opt.max_queue + 1) / 2;
        g_guard.max_inflight_client = d < opt.parallel + opt.max_queue ? d : 0;
    }
    g_guard.listen_host = opt.host;
    if (!opt.model_dir && !opt.models_dir) opt.model_dir = sasp_default_model_dir();
    if (!opt.www) opt.www = sasp_default_www_dir();
    return -1;
}

/* Load the models and their tokenizers, start their schedulers on one engine thread, find --www.
 * 0, or -1 after saying why. */
static int load_engine(void)
{
    if (opt.n_model_dirs == 0 && opt.model_dir) opt.model_dirs[opt.n_model_dirs++] = opt.model_dir;
    serve_options so = {.threads = opt.threads, .parallel = opt.parallel, .ctx = opt.ctx, .max_queue = opt.max_queue, .chunk = opt.chunk, .step_delay = opt.step_delay, .cache_ram = (size_t)opt.cache_ram << 20, .weights = g_weights, .models_max = opt.models_max, .keep_alive = opt.keep_alive};
    if (slots_init(opt.slot_save_path) != 0 ||
        served_models_load(opt.model_dirs, opt.n_model_dirs, opt.models_dir, &so) != 0)
        return -1;
    static_files_init(opt.www);
    return 0;
}

/* Raise the soft limit of open files to what --max-connections needs (and the models and the log a few
 * more), as far as the hard limit allows; lower --max-connections to fit when it cannot, saying so. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t want = (rlim_t)g_guard.max_connections + 256, before = rl.rlim_cur;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want) {
        int fit = rl.rlim_cur > 320 ? (int)(rl.rlim_cur - 256) : 64;
        fprintf(stderr, "sasp-server: note: open files limited to %llu (hard limit); --max-connections lowered "
                        "from %d to %d\n",
                (unsigned long long)rl.rlim_cur, g_guard.max_connections, fit);
        g_guard.max_connections = fit;
    }
    printf("sasp-server: open files limit %llu (was %llu) for up to %d connections\n",
           (unsigned long long)rl.rlim_cur, (unsigned long long)before, g_guard.max_connections);
}

/* Listen on --host and --port for the routes and print where; NULL after saying why not. */
static struct MHD_Daemon *start_listening(void)
{
    static http_options o;
    o = (http_options){.host = opt.host, .port = opt.port, .threads = g_http_threads, .timeout = opt.timeout, .max_body = opt.max_body, .api_keys = g_api_keys, .n_api_keys = g_n_api_keys, .guard = &g_guard, .routes = server_routes, .n_routes = server_n_routes, .fallback = handle_static, .tls_key_file = opt.ssl_key_file, .tls_cert_file = opt.ssl_cert_file};
    int port, ipv6;
    struct MHD_Daemon *d = listen_start(&o, &port, &ipv6);
    if (!d) return NULL;
    for (int i = 0; i < served_models_count(); i++) {
        served_model *m = served_model_at(i);
        if (served_model_take_loaded(m)) {
            sasp_model_info info = sasp_model_describe(m->model);
            printf("sasp-server: %s (%zu parameters, %s weights%s, context %d, %d slots, %s kernels (%s), %d threads)\n",
                   m->id, m->model->n_params, info.weights,
                   g_weights == SASP_WEIGHTS_FAST ? " (auto: the kernels' fastest)" : "", m->lim.n_ctx, opt.parallel,
                   info.kernels, m->model->kernels->id, info.threads);
            served_model_give_back(m);
        } else
            printf("sasp-server: %s (%s, loaded when a request names it)\n", m->id, m->dir);
    }
    printf("sasp-server: HTTP: %d epoll threads, at most %d connections (%d per client address), headers "
           "within %d s, %d generation requests in flight per client (0: no limit)\n",
           g_http_threads,
           g_guard.max_connections, g_guard.max_conn_per_ip, g_guard.header_timeout, g_guard.max_inflight_client);
    printf("sasp-server: listening on http%s://%s%s%s:%d/\n", opt.ssl_key_file ? "s" : "", ipv6 ? "[" : "", opt.host,
           ipv6 ? "]" : "", port);
    fflush(stdout);
    return d;
}

/* After SIGINT or SIGTERM: end every open sequence (its stream closes
 * cleanly), give the streams up to 5 s to send their last bytes, free everything. */
static void stop_gracefully(struct MHD_Daemon *d, int sig)
{
    fprintf(stderr, "sasp-server: %s: finishing open requests and stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    /* No MHD_quiesce_daemon: with a thread pool under epoll, libmicrohttpd 0.9.75 removes the listen
     * socket from a worker's epoll set in the caller while that worker may remove it too (it sees
     * was_quiesced), and panics on the second removal ("Failed to remove listen FD from epoll set",
     * seen in 2 of about 12 full server-test runs). A request that comes during the drain finds the
     * schedulers shut down and is answered with an error; MHD_stop_daemon closes the socket. */
    served_models_shutdown();
    for (int i = 0; i < 500 && wait_open_answers() > 0; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    wait_stop(); /* libmicrohttpd stops only with no connection suspended */
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    MHD_stop_daemon(d);
    guard_stop();
    served_models_free();
    fprintf(stderr, "sasp-server: stopped\n");
}

int main(int argc, char **argv)
{
    int status = parse_options(argc, argv);
    if (status >= 0) return status;

    /* SIGINT/SIGTERM are taken by sigwait below; every thread started from here on inherits the block */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (load_engine() != 0) return 1;
    raise_nofile();
    if (guard_start(&g_guard) != 0 || wait_start() != 0) return 1;
    struct MHD_Daemon *d = start_listening();
    if (!d) return 1;
    sasp_notify("READY=1\nSTATUS=model loaded, listening"); /* a Type=notify unit is started */
    int sig = 0;
    sigwait(&sigs, &sig);
    sasp_notify("STOPPING=1");
    stop_gracefully(d, sig);
    return 0;
}
