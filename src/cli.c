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

#include "kernels.h"
#include "model.h"
#include "tokenizer.h"

#define DEFAULT_MODEL "models/sasp-small"
#define DEFAULT_GENERATE 128

static void usage(FILE *f) {
    fprintf(f,
            "usage: sasp-cli [-m MODEL_DIR] [options]\n"
            "\n"
            "Input (one of):\n"
            "  --tokens LIST        prompt as comma-separated token ids, e.g. --tokens 5,17,300\n"
            "  -p, --prompt TEXT    prompt as text (encoded with MODEL_DIR/tokenizer.json)\n"
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
            "  --tokenize TEXT      print the token ids of TEXT, then one line per token: id and\n"
            "                       its bytes as a JSON string\n"
            "  --perplexity FILE    mean negative log-likelihood (nats per token) and perplexity of\n"
            "                       the text in FILE. FILE is encoded (special tokens such as\n"
            "                       <|endoftext|> recognised) and cut into non-overlapping windows of\n"
            "                       max_seq_len tokens (the last one may be shorter); each window is\n"
            "                       run from an empty cache and predicts its tokens 1..n-1 from the\n"
            "                       ones before them, so a file of N tokens in W windows scores N - W\n"
            "                       predictions.\n"
            "  --info               print the model's config, parameter count and SIMD kernels\n"
            "\n"
            "Options:\n"
            "  -m, --model DIR      model directory: config.json, model.safetensors and optionally\n"
            "                       tokenizer.json (default: %s)\n"
            "  -t, --threads N      worker threads, N >= 1 (default: one per core)\n"
            "  -h, --help           this help\n"
            "\n"
            "Environment: SASP_SIMD=scalar|avx2|avx512|neon forces a kernel set.\n"
            "Exit status: 0 ok, 1 the model or input could not be used, 2 bad arguments.\n",
            DEFAULT_GENERATE, DEFAULT_MODEL);
}

static void die_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "sasp-cli: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'sasp-cli --help'.\n");
    exit(2);
}

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* "5,17,300" -> ids. Returns the count, or -1 when the list is malformed. */
static int parse_tokens(const char *s, int **out) {
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

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Print bytes as a JSON string. */
static void print_json_bytes(FILE *f, const char *s, size_t n) {
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

static char *read_file(const char *path, size_t *len) {
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

static sasp_tokenizer *load_tokenizer(const char *dir, int required) {
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

static void print_info(const sasp_model *m) {
    const sasp_config *c = &m->cfg;
    static const char *const norms[] = {"rmsnorm", "layernorm", "none"};
    static const char *const acts[] = {"relu", "gelu", "silu"};
    int n_wv = 0, n_wo = 0, n_skip = 0, qk_bias = 0;
    for (int l = 0; l < c->n_layers; l++) {
        n_wv += m->layers[l].has_wv;
        n_wo += m->layers[l].wo != NULL;
        n_skip += m->layers[l].has_skip;
        qk_bias |= m->layers[l].b_in != NULL;
    }
    printf("model:          %s\n", m->dir);
    printf("architecture:   %s\n", c->arch == SASP_ARCH_SASP ? "sasp" : "preln");
    printf("vocab_size:     %d\n", c->vocab_size);
    printf("d_model:        %d\n", c->d_model);
    printf("n_layers:       %d\n", c->n_layers);
    printf("n_heads:        %d (head size %d)\n", c->n_heads, c->d_model / c->n_heads);
    printf("d_ff:           %d\n", c->d_ff);
    printf("max_seq_len:    %d\n", c->max_seq_len);
    printf("norm:           %s (eps %g)\n", norms[c->norm], (double)c->norm_eps);
    printf("activation:     %s\n", acts[c->activation]);
    if (c->position == SASP_POS_ROPE) printf("position:       rope (theta %g)\n", (double)c->rope_theta);
    else printf("position:       learned\n");
    printf("tie_embeddings: %s\n", c->tie_embeddings ? "true" : "false");
    printf("bos/eos ids:    %d / %d\n", c->bos_token_id, c->eos_token_id);
    printf("optional:       W_V in %d layers, W_O in %d layers, skip gain in %d, q/k biases %s\n", n_wv, n_wo,
           n_skip, qk_bias ? "yes" : "no");
    printf("parameters:     %zu (%.2f M)\n", m->n_params, m->n_params / 1e6);
    printf("multiply-adds:  %.0f per token (matrices only)\n", sasp_model_flops_per_token(m, 0));
    printf("simd kernels:   %s\n", m->k->name);
    printf("threads:        %d\n", sasp_pool_size(m->pool));
}

static int run_step(sasp_model *m, sasp_kv *kv, const int *toks, int n, int n_logits, float *logits) {
    char err[256];
    sasp_step st = {kv, toks, n, n_logits, logits};
    if (sasp_forward(m, &st, 1, err, sizeof err)) {
        fprintf(stderr, "sasp-cli: %s\n", err);
        return -1;
    }
    return 0;
}

static int print_logits(const float *logits, int n, int V) {
    printf("[");
    for (int i = 0; i < n; i++) {
        printf(i ? ",\n[" : "\n[");
        for (int j = 0; j < V; j++) printf(j ? ",%.9g" : "%.9g", (double)logits[(size_t)i * V + j]);
        printf("]");
    }
    printf("\n]\n");
    return 0;
}

/* Greedy continuation of the prompt. The prompt is already in kv; last holds its last logits. */
static int generate(sasp_model *m, sasp_kv *kv, float *last, int n_gen, int ignore_eos, const sasp_tokenizer *tok,
                    int stream) {
    int V = m->cfg.vocab_size, n = 0;
    int *out = malloc(((size_t)n_gen + 1) * sizeof *out);
    if (!out) return -1;
    sasp_utf8_stream us;
    sasp_stream_init(&us);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (n < n_gen) {
        int next = argmax(last, V);
        if (!ignore_eos && next == m->cfg.eos_token_id) break;
        out[n++] = next;
        if (stream && tok) {
            size_t blen;
            const char *b = sasp_token_bytes(tok, next, &blen);
            if (b) {
                char *buf = malloc(3 * blen + 8);
                if (buf) {
                    size_t w = sasp_stream_push(&us, b, blen, buf, 3 * blen + 8);
                    fwrite(buf, 1, w, stdout);
                    fflush(stdout);
                    free(buf);
                }
            }
        }
        if (n == n_gen || kv->len >= kv->cap) break;
        if (run_step(m, kv, &next, 1, 1, last)) {
            free(out);
            return -1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (stream && tok) {
        char buf[16];
        size_t w = sasp_stream_finish(&us, buf, sizeof buf);
        fwrite(buf, 1, w, stdout);
        printf("\n");
    } else {
        for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", out[i]);
        printf("\n");
        if (tok) {
            size_t len;
            char *text = sasp_decode(tok, out, n, &len);
            if (text) {
                fwrite(text, 1, len, stdout);
                printf("\n");
                free(text);
            }
        }
    }
    if (n > 1)
        fprintf(stderr, "sasp-cli: %d tokens, %.1f tokens/s\n", n, (n - 1) / (secs > 0 ? secs : 1e-9));
    free(out);
    return 0;
}

static int perplexity(sasp_model *m, const sasp_tokenizer *tok, const char *path) {
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
        }
    }
    free(ids), free(logits), sasp_kv_free(kv);
    return rc;
}

int main(int argc, char **argv) {
    enum { OPT_TOKENS = 256, OPT_LOGITS, OPT_TOKENIZE, OPT_INFO, OPT_PERPLEXITY, OPT_IGNORE_EOS };
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},       {"tokens", required_argument, NULL, OPT_TOKENS},
        {"prompt", required_argument, NULL, 'p'},      {"logits", no_argument, NULL, OPT_LOGITS},
        {"generate", required_argument, NULL, 'n'},    {"ignore-eos", no_argument, NULL, OPT_IGNORE_EOS},
        {"tokenize", required_argument, NULL, OPT_TOKENIZE}, {"perplexity", required_argument, NULL, OPT_PERPLEXITY},
        {"info", no_argument, NULL, OPT_INFO},         {"threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},              {NULL, 0, NULL, 0},
    };
    const char *dir = DEFAULT_MODEL, *tokens_arg = NULL, *prompt = NULL, *tokenize = NULL, *ppl_file = NULL;
    int want_logits = 0, want_info = 0, ignore_eos = 0, n_threads = 0;
    long n_gen = -1, v;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:p:n:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': dir = optarg; break;
        case 'p': prompt = optarg; break;
        case OPT_TOKENS: tokens_arg = optarg; break;
        case OPT_LOGITS: want_logits = 1; break;
        case 'n':
            if (parse_int(optarg, 0, INT_MAX, &n_gen)) die_usage("--generate takes a count >= 0, not '%s'", optarg);
            break;
        case OPT_IGNORE_EOS: ignore_eos = 1; break;
        case OPT_TOKENIZE: tokenize = optarg; break;
        case OPT_PERPLEXITY: ppl_file = optarg; break;
        case OPT_INFO: want_info = 1; break;
        case 't':
            if (parse_int(optarg, 1, 1024, &v)) die_usage("--threads takes a number from 1 to 1024, not '%s'", optarg);
            n_threads = (int)v;
            break;
        case 'h': usage(stdout); return 0;
        case ':': die_usage("option '%s' needs an argument", argv[optind - 1]); break;
        default: die_usage("unknown option '%s'", argv[optind - 1]); break;
        }
    }
    if (optind < argc) die_usage("unexpected argument '%s'", argv[optind]);
    if (tokens_arg && prompt) die_usage("%s", "give either --tokens or -p, not both");
    if (want_logits && !tokens_arg && !prompt) die_usage("%s", "--logits needs --tokens or -p");
    if (n_gen >= 0 && !tokens_arg && !prompt) die_usage("%s", "--generate needs --tokens or -p");
    if (!tokens_arg && !prompt && !tokenize && !ppl_file && !want_info)
        die_usage("%s", "nothing to do: give --tokens, -p, --tokenize, --perplexity or --info");
    int *ids = NULL, n_ids = 0;
    if (tokens_arg && (n_ids = parse_tokens(tokens_arg, &ids)) <= 0)
        die_usage("--tokens takes comma-separated token ids such as 5,17,300, not '%s'", tokens_arg);

    /* Tokenizer-only work needs no weights. */
    sasp_tokenizer *tok = NULL;
    int need_tok = prompt || tokenize || ppl_file;
    if (need_tok && !(tok = load_tokenizer(dir, 1))) return 1;
    if (tokenize) {
        int *tids;
        int nt = sasp_encode(tok, tokenize, strlen(tokenize), 1, &tids);
        if (nt < 0) return 1;
        for (int i = 0; i < nt; i++) printf(i ? ",%d" : "%d", tids[i]);
        printf("\n");
        for (int i = 0; i < nt; i++) {
            size_t blen;
            const char *b = sasp_token_bytes(tok, tids[i], &blen);
            printf("%6d ", tids[i]);
            print_json_bytes(stdout, b ? b : "", b ? blen : 0);
            printf("\n");
        }
        free(tids);
        if (!tokens_arg && !prompt && !ppl_file && !want_info) {
            sasp_tokenizer_free(tok);
            return 0;
        }
    }

    char err[1024];
    sasp_model *m = sasp_model_load(dir, n_threads, err, sizeof err);
    if (!m) {
        fprintf(stderr, "sasp-cli: %s\n", err);
        sasp_tokenizer_free(tok);
        free(ids);
        return 1;
    }
    int rc = 0;
    if (want_info) print_info(m);
    if (ppl_file && perplexity(m, tok, ppl_file)) rc = 1;

    if (rc == 0 && (tokens_arg || prompt)) {
        if (prompt) {
            n_ids = sasp_encode(tok, prompt, strlen(prompt), 1, &ids);
            if (n_ids <= 0) {
                fprintf(stderr, "sasp-cli: the prompt encodes to no tokens\n");
                rc = 1;
            }
        } else if (!tok) {
            tok = load_tokenizer(dir, 0); /* optional: to print the text of generated ids */
        }
        if (n_gen < 0) n_gen = prompt && !want_logits ? DEFAULT_GENERATE : 0;
        int V = m->cfg.vocab_size;
        sasp_kv *kv = NULL;
        float *logits = NULL;
        if (rc == 0 && n_ids > m->cfg.max_seq_len) {
            fprintf(stderr, "sasp-cli: the prompt has %d tokens; the model's context is %d\n", n_ids,
                    m->cfg.max_seq_len);
            rc = 1;
        }
        if (rc == 0) {
            kv = sasp_kv_new(m, 0);
            logits = malloc((size_t)n_ids * V * sizeof *logits);
            if (!kv || !logits) {
                fprintf(stderr, "sasp-cli: out of memory\n");
                rc = 1;
            }
        }
        int n_logits = want_logits ? n_ids : 1;
        if (rc == 0 && run_step(m, kv, ids, n_ids, n_logits, logits)) rc = 1;
        if (rc == 0 && want_logits) print_logits(logits, n_ids, V);
        if (rc == 0 && n_gen > 0) {
            if (prompt && !want_logits) {
                fwrite(prompt, 1, strlen(prompt), stdout);
                fflush(stdout);
            }
            float *last = logits + (size_t)(n_logits - 1) * V;
            if (generate(m, kv, last, (int)n_gen, ignore_eos, tok, prompt != NULL)) rc = 1;
        }
        free(logits);
        sasp_kv_free(kv);
    }
    free(ids);
    sasp_tokenizer_free(tok);
    sasp_model_free(m);
    return rc;
}
