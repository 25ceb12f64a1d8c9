/* cli.c: sasp-cli, the command-line front end of the engine.
 *
 * It checks and exercises the engine from a shell: print the logits of a token sequence as JSON
 * (so other tools can compare them with the PyTorch reference), greedily continue a prompt given as
 * token ids or as text, show how text tokenizes, print a model's configuration, and measure the
 * perplexity of a text file. Run `sasp-cli --help` for the options. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "text/constrain.h"
#include "text/sampler.h"
#include "kernels.h"
#include "model/model.h"
#include "base/paths.h"
#include "text/tokenizer.h"
#include "base/util.h"

#define DEFAULT_MODEL_HELP SASP_SOURCE_MODEL_DIR " if the current directory has\n" \
                                                 "                       it, else " SASP_INSTALLED_MODEL_DIR
#define DEFAULT_GENERATE 128

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sasp-cli [-m MODEL_DIR] [options]\n"
            "\n"
            "Input (one of):\n"
            "  --tokens LIST        prompt as comma-separated token ids, e.g. --tokens 5,17,300\n"
            "  -p, --prompt TEXT    prompt as text (encoded with MODEL_DIR/tokenizer.json); its last\n"
            "                       token is healed (see --no-token-healing)\n"
            "  --prefix TEXT --suffix TEXT\n"
            "                       fill in the middle: generate what goes between the two texts\n"
            "                       (needs a model with the <|fim_prefix|>, <|fim_suffix|> and\n"
            "                       <|fim_middle|> tokens); prints the middle\n"
            "\n"
            "What to do (the default with a prompt is to continue it):\n"
            "  --logits             print the logits at every prompt position as JSON: an array of\n"
            "                       arrays, one per position (vocab_size numbers each, %%.9g)\n"
            "  -n, --generate N     greedily continue the prompt by up to N tokens (default %d with\n"
            "                       -p; 0 with --tokens). Stops early at eos_token_id (see\n"
            "                       --ignore-eos) or at the model's context (max_seq_len).\n"
            "                       With --tokens it prints the new ids on one line, then their\n"
            "                       text when the model has a tokenizer; with -p it streams text.\n"
            "  --ignore-eos         do not stop at eos_token_id\n"
            "  --no-token-healing   with -p, keep the prompt's last token as it is. By default it is\n"
            "                       backed off and the first generated token(s) must begin with its\n"
            "                       bytes, so a prompt that ends inside what the tokenizer would\n"
            "                       write as one token (a newline before indentation, half a word)\n"
            "                       continues as the model saw such text in training\n"
            "  --tokenize TEXT      print the token ids of TEXT, then one line per token: id and\n"
            "                       its bytes as a JSON string\n"
            "  --perplexity FILE    mean negative log-likelihood (nats per token) and perplexity of\n"
            "                       the text in FILE. FILE is encoded (special tokens such as\n"
            "                       <|endoftext|> recognised) and cut into non-overlapping windows of\n"
            "                       max_seq_len tokens (the last one may be shorter); each window is\n"
            "                       run from an empty cache and predicts its tokens 1..n-1 from the\n"
            "                       ones before them, so a file of N tokens in W windows scores N - W\n"
            "                       predictions. Also in bits per byte: the mean NLL times the\n"
            "                       file's tokens over its bytes, over ln 2.\n"
            "  --info               print the model's config, parameter count and SIMD kernels\n"
            "\n"
            "Options:\n"
            "  -m, --model DIR      model directory: config.json, model.safetensors and optionally\n"
            "                       tokenizer.json (default: %s)\n"
            "  -t, --threads N      worker threads, N >= 1 (default: one per core)\n"
            "      --weights TYPE   the weight matrices' type in memory: f32, bf16 or q8_0 (converted at\n"
            "                       load), stored (each as the checkpoint stores it; sasp-quantize writes\n"
            "                       them), or auto: the type this CPU's kernels run fastest, q8_0 with\n"
            "                       SIMD, f32 on the scalar reference; a file stored narrower stays as it\n"
            "                       is (default: auto; --info says which)\n"
            "  -h, --help           this help\n"
            "      --version        print the version and exit\n"
            "\n"
            "Environment: SASP_SIMD=scalar|avx2|avx512|neon forces a kernel set.\n"
            "Exit status: 0 ok, 1 the model or input could not be used, 2 bad arguments.\n",
            DEFAULT_GENERATE, DEFAULT_MODEL_HELP);
}

static void die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "sasp-cli: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'sasp-cli --help'.\n");
    exit(2);
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* "5,17,300" -> ids. Returns the count, or -1 when the list is malformed. */
static int parse_tokens(const char *s, int **out)
{
    int n = 0, cap = 16;
    int *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return -1;
    const char *p = s;
    for (;;) {
        while (*p == ' ') p++;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT_MAX) goto bad;
        if (n == cap) {
            int *t = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!t) goto bad;
            ids = t;
        }
        ids[n++] = (int)v;
        p = end;
        while (*p == ' ') p++;
        if (*p == '\0') break;
        if (*p != ',') goto bad;
        p++;
    }
    *out = ids;
    return n;
bad:
    free(ids);
    return -1;
}

/* Print bytes as a JSON string. */
static void print_json_bytes(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch == '\n') fputs("\\n", f);
        else if (ch == '\t') fputs("\\t", f);
        else if (ch == '\r') fputs("\\r", f);
        else if (ch < 0x20 || ch == 0x7f) fprintf(f, "\\u%04x", ch);
        else if (ch >= 0x80) fprintf(f, "\\x%02x", ch); /* raw byte of a possibly partial character */
        else fputc(ch, f);
    }
    fputc('"', f);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *t = realloc(buf, (cap *= 2) + 1);
        if (!t) {
            free(buf);
            buf = NULL;
        }
        buf = t;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static sasp_tokenizer *load_tokenizer(const char *dir, int required)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    struct stat st;
    if (stat(path, &st) != 0) {
        if (required) fprintf(stderr, "sasp-cli: %s: not found; this option needs the model's tokenizer\n", path);
        return NULL;
    }
    char err[512];
    sasp_tokenizer *t = sasp_tokenizer_load(path, err, sizeof err);
    if (!t) fprintf(stderr, "sasp-cli: %s\n", err);
    return t;
}

static void print_info(const sasp_model *m)
{
    const sasp_config *c = &m->cfg;
    sasp_model_info info = sasp_model_describe(m);
    printf("model:          %s\n", info.dir);
    printf("architecture:   %s\n", sasp_arch_names[c->arch]);
    printf("vocab_size:     %d\n", c->vocab_size);
    printf("d_model:        %d\n", c->d_model);
    printf("n_layers:       %d\n", c->n_layers);
    printf("n_heads:        %d (head size %d)\n", c->n_heads, c->d_model / c->n_heads);
    printf("d_ff:           %d\n", c->d_ff);
    printf("max_seq_len:    %d\n", c->max_seq_len);
    printf("norm:           %s (eps %g)\n", sasp_norm_names[c->norm], (double)c->norm_eps);
    printf("activation:     %s\n", sasp_act_names[c->activation]);
    if (c->position == SASP_POS_ROPE) printf("position:       %s (theta %g)\n", sasp_pos_names[c->position], (double)c->rope_theta);
    else printf("position:       %s\n", sasp_pos_names[c->position]);
    printf("tie_embeddings: %s\n", c->tie_embeddings ? "true" : "false");
    printf("bos/eos ids:    %d / %d\n", c->bos_token_id, c->eos_token_id);
    printf("optional:       W_V in %d layers, W_O in %d layers, skip gain in %d, q/k biases %s\n", info.layers_with_wv,
           info.layers_with_wo, info.layers_with_skip, info.qk_bias ? "yes" : "no");
    printf("parameters:     %zu (%.2f M)\n", info.n_params, info.n_params / 1e6);
    printf("multiply-adds:  %.0f per token (matrices only)\n", sasp_model_flops_per_token(m, 0));
    printf("simd kernels:   %s (table %s)\n", info.kernels, m->kernels->id);
    printf("weights:        %s\n", info.weights);
    printf("threads:        %d\n", info.threads);
}

static int run_step(sasp_model *m, sasp_kv *kv, const int *toks, int n, int n_logits, float *logits)
{
    char err[256];
    sasp_step st = {.kv = kv, .tokens = toks, .n_tokens = n, .n_logits = n_logits, .logits = logits};
    if (sasp_forward(m, &st, 1, err, sizeof err)) {
        fprintf(stderr, "sasp-cli: %s\n", err);
        return -1;
    }
    return 0;
}

static int print_logits(const float *logits, int n, int V)
{
    printf("[");
    for (int i = 0; i < n; i++) {
        printf(i ? ",\n[" : "\n[");
        for (int j = 0; j < V; j++) printf(j ? ",%.9g" : "%.9g", (double)logits[(size_t)i * V + j]);
        printf("]");
    }
    printf("\n]\n");
    return 0;
}

/* A greedy continuation: the prompt is already in kv and last holds its last logits. With heal (token
 * healing), the first tokens are kept to those that reproduce the backed-off bytes, and those bytes,
 * already printed with the prompt, are not printed again. */
typedef struct {
    sasp_model *m;
    sasp_kv *kv;
    float *last;
    int n_gen, ignore_eos, stream;
    const sasp_tokenizer *tok;
    sasp_constraint *heal;
    size_t skip; /* bytes of the generated text already printed (the healed ones) */
} greedy_run;

/* Stream the bytes of one generated token, less those still to skip. */
static void stream_token(greedy_run *g, sasp_utf8_stream *us, int id)
{
    size_t blen;
    const char *b = sasp_token_bytes(g->tok, id, &blen);
    if (!b) return;
    size_t drop = g->skip < blen ? g->skip : blen;
    g->skip -= drop;
    char *buf = malloc(3 * blen + 8);
    if (!buf) return;
    size_t w = sasp_stream_push(us, b + drop, blen - drop, buf, 3 * blen + 8);
    fwrite(buf, 1, w, stdout);
    fflush(stdout);
    free(buf);
}

/* The next token: the arg-max, among those the healing constraint allows while it is active. */
static int next_token(greedy_run *g, const sasp_token_table *table)
{
    int V = g->m->cfg.vocab_size;
    if (g->heal && sasp_constraint_active(g->heal)) {
        sasp_constraint_mask(g->heal, table, g->last, g->n_gen, g->ignore_eos ? -1 : g->m->cfg.eos_token_id);
        int next = sasp_argmax(g->last, V);
        sasp_constraint_accept(g->heal, table, next);
        return next;
    }
    return sasp_argmax(g->last, V);
}

static void print_ids_and_text(const sasp_tokenizer *tok, const int *out, int n)
{
    for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", out[i]);
    printf("\n");
    if (!tok) return;
    size_t len;
    char *text = sasp_decode(tok, out, n, &len);
    if (text) {
        fwrite(text, 1, len, stdout);
        printf("\n");
        free(text);
    }
}

static int generate(greedy_run *g)
{
    int n = 0;
    int *out = malloc(((size_t)g->n_gen + 1) * sizeof *out);
    sasp_token_table *table = g->heal ? sasp_token_table_new(g->tok) : NULL;
    if (!out || (g->heal && !table)) {
        free(out);
        return -1;
    }
    sasp_utf8_stream us;
    sasp_stream_init(&us);
    int64_t t0 = sasp_now_ns();
    while (n < g->n_gen) {
        int next = next_token(g, table);
        if (!g->ignore_eos && next == g->m->cfg.eos_token_id) break;
        out[n++] = next;
        if (g->stream && g->tok) stream_token(g, &us, next);
        if (n == g->n_gen || g->kv->len >= g->kv->cap) break;
        if (run_step(g->m, g->kv, &next, 1, 1, g->last)) {
            free(out), sasp_token_table_free(table);
            return -1;
        }
    }
    double secs = (double)(sasp_now_ns() - t0) * 1e-9;
    if (g->stream && g->tok) {
        char buf[16];
        size_t w = sasp_stream_finish(&us, buf, sizeof buf);
        fwrite(buf, 1, w, stdout);
        printf("\n");
    } else print_ids_and_text(g->tok, out, n);
    if (n > 1) fprintf(stderr, "sasp-cli: %d tokens, %.1f tokens/s\n", n, (n - 1) / (secs > 0 ? secs : 1e-9));
    free(out);
    sasp_token_table_free(table);
    return 0;
}

static int perplexity(sasp_model *m, const sasp_tokenizer *tok, const char *path)
{
    size_t len;
    char *text = read_file(path, &len);
    if (!text) {
        fprintf(stderr, "sasp-cli: %s: cannot read: %s\n", path, strerror(errno));
        return -1;
    }
    int *ids;
    int n = sasp_encode(tok, text, len, 1, &ids);
    free(text);
    if (n < 0) {
        fprintf(stderr, "sasp-cli: %s: out of memory encoding\n", path);
        return -1;
    }
    int C = m->cfg.max_seq_len, V = m->cfg.vocab_size;
    sasp_kv *kv = sasp_kv_new(m, C);
    float *logits = malloc((size_t)C * V * sizeof *logits);
    if (!kv || !logits) {
        fprintf(stderr, "sasp-cli: out of memory\n");
        free(ids), free(logits), sasp_kv_free(kv);
        return -1;
    }
    double nll = 0;
    long predicted = 0;
    int windows = 0, rc = 0;
    for (int start = 0; start < n; start += C) {
        int w = n - start < C ? n - start : C;
        windows++;
        if (w < 2) continue;
        sasp_kv_reset(kv);
        if (run_step(m, kv, ids + start, w, w, logits)) {
            rc = -1;
            break;
        }
        for (int i = 0; i + 1 < w; i++) {
            const float *row = logits + (size_t)i * V;
            double mx = row[0], sum = 0;
            for (int j = 1; j < V; j++)
                if (row[j] > mx) mx = row[j];
            for (int j = 0; j < V; j++) sum += exp((double)row[j] - mx);
            nll += mx + log(sum) - row[ids[start + i + 1]];
            predicted++;
        }
        fprintf(stderr, "\rsasp-cli: window %d of %d", windows, (n + C - 1) / C);
    }
    fprintf(stderr, "\n");
    if (rc == 0) {
        if (predicted == 0) {
            fprintf(stderr, "sasp-cli: %s: %d tokens, too few to predict any\n", path, n);
            rc = -1;
        } else {
            double mean = nll / (double)predicted;
            printf("file:        %s\n", path);
            printf("tokens:      %d in %d windows of up to %d (%ld predicted)\n", n, windows, C, predicted);
            printf("mean NLL:    %.6f nats/token\n", mean);
            printf("perplexity:  %.4f\n", exp(mean));
            printf("bits/byte:   %.6f (%zu bytes)\n", mean * n / (double)len / log(2.0), len);
        }
    }
    free(ids), free(logits), sasp_kv_free(kv);
    return rc;
}

typedef struct {
    const char *dir, *tokens_arg, *prompt, *tokenize, *ppl_file, *prefix, *suffix;
    int want_logits, want_info, ignore_eos, n_threads, no_healing, weights;
    long n_gen; /* -1: the default, which depends on the input */
} cli_options;

/* The options, or exit 2 with a message when they are malformed or contradict each other. */
static cli_options parse_args(int argc, char **argv)
{
    enum { OPT_TOKENS = 256,
           OPT_LOGITS,
           OPT_TOKENIZE,
           OPT_INFO,
           OPT_PERPLEXITY,
           OPT_IGNORE_EOS,
           OPT_VERSION,
           OPT_PREFIX,
           OPT_SUFFIX,
           OPT_NO_HEALING,
           OPT_WEIGHTS };
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"tokens", required_argument, NULL, OPT_TOKENS},
        {"prompt", required_argument, NULL, 'p'},
        {"logits", no_argument, NULL, OPT_LOGITS},
        {"generate", required_argument, NULL, 'n'},
        {"ignore-eos", no_argument, NULL, OPT_IGNORE_EOS},
        {"tokenize", required_argument, NULL, OPT_TOKENIZE},
        {"perplexity", required_argument, NULL, OPT_PERPLEXITY},
        {"info", no_argument, NULL, OPT_INFO},
        {"threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"suffix", required_argument, NULL, OPT_SUFFIX},
        {"no-token-healing", no_argument, NULL, OPT_NO_HEALING},
        {"weights", required_argument, NULL, OPT_WEIGHTS},
        {NULL, 0, NULL, 0},
    };
    cli_options o = {.n_gen = -1, .weights = SASP_WEIGHTS_FAST};
    long v;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:p:n:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o.dir = optarg; break;
        case 'p': o.prompt = optarg; break;
        case OPT_TOKENS: o.tokens_arg = optarg; break;
        case OPT_LOGITS: o.want_logits = 1; break;
        case 'n':
            if (parse_int(optarg, 0, INT_MAX, &o.n_gen)) die_usage("--generate takes a count >= 0, not '%s'", optarg);
            break;
        case OPT_IGNORE_EOS: o.ignore_eos = 1; break;
        case OPT_PREFIX: o.prefix = optarg; break;
        case OPT_SUFFIX: o.suffix = optarg; break;
        case OPT_NO_HEALING: o.no_healing = 1; break;
        case OPT_TOKENIZE: o.tokenize = optarg; break;
        case OPT_PERPLEXITY: o.ppl_file = optarg; break;
        case OPT_INFO: o.want_info = 1; break;
        case OPT_WEIGHTS:
            if ((o.weights = sasp_weights_parse(optarg)) == SASP_WEIGHTS_UNKNOWN)
                die_usage("--weights takes " SASP_WEIGHTS_HELP ", not '%s'", optarg);
            break;
        case 't':
            if (parse_int(optarg, 1, 1024, &v)) die_usage("--threads takes a number from 1 to 1024, not '%s'", optarg);
            o.n_threads = (int)v;
            break;
        case 'h': usage(stdout); exit(0);
        case OPT_VERSION: printf("sasp-cli %s\n", SASP_VERSION); exit(0);
        case ':': die_usage("option '%s' needs an argument", argv[optind - 1]); break;
        default: die_usage("unknown option '%s'", argv[optind - 1]); break;
        }
    }
    if (optind < argc) die_usage("unexpected argument '%s'", argv[optind]);
    if (!o.dir) o.dir = sasp_default_model_dir();
    if (o.tokens_arg && o.prompt) die_usage("%s", "give either --tokens or -p, not both");
    if (!o.prefix != !o.suffix) die_usage("%s", "--prefix and --suffix go together");
    if (o.prefix && (o.tokens_arg || o.prompt || o.want_logits))
        die_usage("%s", "--prefix/--suffix replace the prompt: no --tokens, -p or --logits with them");
    if (o.want_logits && !o.tokens_arg && !o.prompt) die_usage("%s", "--logits needs --tokens or -p");
    if (o.n_gen >= 0 && !o.tokens_arg && !o.prompt) die_usage("%s", "--generate needs --tokens or -p");
    if (!o.tokens_arg && !o.prompt && !o.prefix && !o.tokenize && !o.ppl_file && !o.want_info)
        die_usage("%s", "nothing to do: give --tokens, -p, --prefix/--suffix, --tokenize, --perplexity or --info");
    return o;
}

/* --tokenize: the ids of text on one line, then one line per token: id and its bytes as JSON. */
static int print_tokenization(const sasp_tokenizer *tok, const char *text)
{
    int *ids;
    int n = sasp_encode(tok, text, strlen(text), 1, &ids);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
    printf("\n");
    for (int i = 0; i < n; i++) {
        size_t blen;
        const char *b = sasp_token_bytes(tok, ids[i], &blen);
        printf("%6d ", ids[i]);
        print_json_bytes(stdout, b ? b : "", b ? blen : 0);
        printf("\n");
    }
    free(ids);
    return 0;
}

/* The fill-in-the-middle prompt: <|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|>, the
 * order the model was trained on. Returns its length (*ids malloc'd), or -1 with a message. */
static int fim_prompt(const sasp_tokenizer *tok, const char *prefix, const char *suffix, int **ids)
{
    int pre = sasp_tokenizer_lookup(tok, "<|fim_prefix|>"), suf = sasp_tokenizer_lookup(tok, "<|fim_suffix|>");
    int mid = sasp_tokenizer_lookup(tok, "<|fim_middle|>");
    if (pre < 0 || suf < 0 || mid < 0) {
        fprintf(stderr, "sasp-cli: this model's tokenizer has no fill-in-the-middle tokens "
                        "(<|fim_prefix|>, <|fim_suffix|>, <|fim_middle|>)\n");
        return -1;
    }
    int *p, *q;
    int np = sasp_encode(tok, prefix, strlen(prefix), 0, &p), nq = sasp_encode(tok, suffix, strlen(suffix), 0, &q);
    int n = np + nq + 3;
    *ids = np >= 0 && nq >= 0 ? malloc((size_t)n * sizeof **ids) : NULL;
    if (*ids) {
        (*ids)[0] = pre;
        memcpy(*ids + 1, p, (size_t)np * sizeof *p);
        (*ids)[1 + np] = suf;
        memcpy(*ids + 2 + np, q, (size_t)nq * sizeof *q);
        (*ids)[n - 1] = mid;
    } else fprintf(stderr, "sasp-cli: out of memory\n");
    if (np >= 0) free(p);
    if (nq >= 0) free(q);
    return *ids ? n : -1;
}

/* The ids to run: --tokens as given, -p encoded (and healed: *heal gets the constraint and *n_run the
 * tokens to feed, one fewer), or the fill-in-the-middle prompt. Returns the count or -1. */
static int prompt_ids(const cli_options *o, const sasp_tokenizer *tok, const int *given, int n_given, int **ids,
                      sasp_constraint **heal)
{
    *heal = NULL;
    if (o->prefix) return fim_prompt(tok, o->prefix, o->suffix, ids);
    if (!o->prompt) {
        *ids = malloc((size_t)n_given * sizeof **ids);
        if (*ids) memcpy(*ids, given, (size_t)n_given * sizeof **ids);
        return *ids ? n_given : -1;
    }
    int n = sasp_encode(tok, o->prompt, strlen(o->prompt), 1, ids);
    if (n <= 0) {
        fprintf(stderr, "sasp-cli: the prompt encodes to no tokens\n");
        if (n == 0) free(*ids);
        return -1;
    }
    if (o->no_healing || o->want_logits) return n;
    int keep = sasp_heal_prompt(tok, *ids, n, heal);
    return keep < 0 ? (free(*ids), -1) : keep;
}

/* --tokens / -p / --prefix: run the prompt through the model, then print its logits (--logits) and
 * continue it (--generate). *tok may be loaded here, to print the text of generated ids. Returns the
 * exit status. */
static int run_prompt(sasp_model *m, const cli_options *o, sasp_tokenizer **tok, const int *given, int n_given)
{
    if (!o->prompt && !o->prefix && !*tok) *tok = load_tokenizer(o->dir, 0); /* optional: the text of ids */
    int *ids = NULL;
    sasp_constraint *heal = NULL;
    int n_ids = prompt_ids(o, *tok, given, n_given, &ids, &heal);
    if (n_ids < 0) return 1;
    int text_in = o->prompt || o->prefix;
    long n_gen = o->n_gen >= 0 ? o->n_gen : text_in && !o->want_logits ? DEFAULT_GENERATE
                                                                       : 0;
    int V = m->cfg.vocab_size, rc = 0;
    sasp_kv *kv = NULL;
    float *logits = NULL;
    if (n_ids > m->cfg.max_seq_len) {
        fprintf(stderr, "sasp-cli: the prompt has %d tokens; the model's context is %d\n", n_ids, m->cfg.max_seq_len);
        rc = 1;
    }
    if (rc == 0 && (!(kv = sasp_kv_new(m, 0)) || !(logits = malloc((size_t)n_ids * V * sizeof *logits)))) {
        fprintf(stderr, "sasp-cli: out of memory\n");
        rc = 1;
    }
    int n_logits = o->want_logits ? n_ids : 1;
    if (rc == 0 && run_step(m, kv, ids, n_ids, n_logits, logits)) rc = 1;
    if (rc == 0 && o->want_logits) print_logits(logits, n_ids, V);
    if (rc == 0 && n_gen > 0) {
        if (o->prompt && !o->want_logits) {
            fwrite(o->prompt, 1, strlen(o->prompt), stdout);
            fflush(stdout);
        }
        greedy_run g = {.m = m, .kv = kv, .last = logits + (size_t)(n_logits - 1) * V, .n_gen = (int)n_gen, .ignore_eos = o->ignore_eos, .stream = text_in, .tok = *tok, .heal = heal};
        if (heal) sasp_token_bytes(*tok, ids[n_ids], &g.skip); /* the healed bytes, printed with the prompt */
        if (generate(&g)) rc = 1;
    }
    free(logits);
    sasp_kv_free(kv);
    sasp_constraint_free(heal);
    free(ids);
    return rc;
}

int main(int argc, char **argv)
{
    cli_options o = parse_args(argc, argv);
    int *ids = NULL, n_ids = 0;
    if (o.tokens_arg && (n_ids = parse_tokens(o.tokens_arg, &ids)) <= 0)
        die_usage("--tokens takes comma-separated token ids such as 5,17,300, not '%s'", o.tokens_arg);

    /* Tokenizer-only work needs no weights. */
    sasp_tokenizer *tok = NULL;
    if ((o.prompt || o.prefix || o.tokenize || o.ppl_file) && !(tok = load_tokenizer(o.dir, 1))) return 1;
    if (o.tokenize) {
        if (print_tokenization(tok, o.tokenize)) return 1;
        if (!o.tokens_arg && !o.prompt && !o.prefix && !o.ppl_file && !o.want_info) {
            sasp_tokenizer_free(tok);
            return 0;
        }
    }

    char err[1024];
    sasp_model *m = sasp_model_load_as(o.dir, o.n_threads, o.weights, err, sizeof err);
    if (!m) {
        fprintf(stderr, "sasp-cli: %s\n", err);
        sasp_tokenizer_free(tok);
        free(ids);
        return 1;
    }
    int rc = 0;
    if (o.want_info) print_info(m);
    if (o.ppl_file && perplexity(m, tok, o.ppl_file)) rc = 1;
    if (rc == 0 && (o.tokens_arg || o.prompt || o.prefix)) rc = run_prompt(m, &o, &tok, ids, n_ids);
    free(ids);
    sasp_tokenizer_free(tok);
    sasp_model_free(m);
    return rc;
}
