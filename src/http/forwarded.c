/* forwarded.c: the client behind a trusted proxy (forwarded.h). */
#include "http/forwarded.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct network {
    unsigned char addr[16];
    int bits; /* of the 128 that must match */
} network;

static network g_nets[FORWARDED_MAX_PROXIES];
static int g_n_nets;

void forwarded_addr_bytes(const struct sockaddr *sa, unsigned char out[16])
{
    memset(out, 0, 16);
    if (sa && sa->sa_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

/* An IPv4 or IPv6 literal (len bytes of s) as 16 bytes; *v4 says which. 0, or -1 when it is neither. */
static int parse_addr(const char *s, size_t len, unsigned char out[16], int *v4)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    struct in_addr a4;
    memset(out, 0, 16);
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        *v4 = 1;
        return 0;
    }
    *v4 = 0;
    return inet_pton(AF_INET6, buf, out) == 1 ? 0 : -1;
}

int forwarded_init(const char *const *proxies, int n)
{
    g_n_nets = 0;
    for (int i = 0; i < n && i < FORWARDED_MAX_PROXIES; i++) {
        const char *s = proxies[i], *slash = strchr(s, '/');
        network *net = &g_nets[g_n_nets];
        int v4, bits = -1;
        if (slash) {
            char *end;
            long b = strtol(slash + 1, &end, 10);
            bits = *end || end == slash + 1 ? -1 : (int)b;
        }
        if (parse_addr(s, slash ? (size_t)(slash - s) : strlen(s), net->addr, &v4) != 0 ||
            (slash && (bits < 0 || bits > (v4 ? 32 : 128)))) {
            fprintf(stderr, "sasp-server: --trusted-proxy %s: not an IPv4 or IPv6 address (ADDR or ADDR/BITS)\n", s);
            return -1;
        }
        net->bits = !slash ? 128 : v4 ? 96 + bits
                                      : bits;
        g_n_nets++;
    }
    return 0;
}

static int bytes_trusted(const unsigned char a[16])
{
    for (int i = 0; i < g_n_nets; i++) {
        const network *net = &g_nets[i];
        int whole = net->bits / 8, rest = net->bits % 8;
        if (memcmp(a, net->addr, (size_t)whole)) continue;
        if (rest && ((a[whole] ^ net->addr[whole]) & (0xff << (8 - rest)) & 0xff)) continue;
        return 1;
    }
    return 0;
}

int forwarded_trusted(const struct sockaddr *sa)
{
    if (g_n_nets == 0 || !sa) return 0;
    unsigned char b[16];
    forwarded_addr_bytes(sa, b);
    return bytes_trusted(b);
}

/* The X-Forwarded-For headers of a request, joined with commas in their order. */
typedef struct xff {
    char text[2048];
    size_t len;
} xff;

static enum MHD_Result collect_xff(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    xff *x = cls;
    if (strcasecmp(key, "X-Forwarded-For") || !value) return MHD_YES;
    int n = snprintf(x->text + x->len, sizeof x->text - x->len, "%s%s", x->len ? "," : "", value);
    if (n < 0 || (size_t)n >= sizeof x->text - x->len) { /* too long: keep only the newest (right-most) header */
        snprintf(x->text, sizeof x->text, "%s", value);
        x->len = strlen(x->text);
    } else {
        x->len += (size_t)n;
    }
    return MHD_YES;
}

/* One entry of the list (s .. e) as an address: blanks trimmed, "[v6]:port" and "v4:port" allowed. */
static int entry_addr(const char *s, const char *e, unsigned char out[16])
{
    while (s < e && (*s == ' ' || *s == '\t')) s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
    int v4;
    if (s < e && *s == '[') {
        const char *close = memchr(s, ']', (size_t)(e - s));
        return close ? parse_addr(s + 1, (size_t)(close - s - 1), out, &v4) : -1;
    }
    const char *colon = memchr(s, ':', (size_t)(e - s));
    if (colon && !memchr(colon + 1, ':', (size_t)(e - colon - 1)) && memchr(s, '.', (size_t)(colon - s)))
        e = colon; /* an IPv4 address with a port */
    return parse_addr(s, (size_t)(e - s), out, &v4);
}

void forwarded_client(struct MHD_Connection *c, const struct sockaddr *peer, unsigned char out[16])
{
    forwarded_addr_bytes(peer, out);
    if (!forwarded_trusted(peer)) return;
    xff x = {.len = 0};
    x.text[0] = 0;
    MHD_get_connection_values(c, MHD_HEADER_KIND, collect_xff, &x);
    const char *end = x.text + x.len;
    while (end > x.text) { /* right to left: the first address that is no trusted proxy */
        const char *start = end;
        while (start > x.text && start[-1] != ',') start--;
        unsigned char a[16];
        if (entry_addr(start, end, a) != 0) return; /* not an address: the nearest proxy is the client */
        memcpy(out, a, 16);
        if (!bytes_trusted(a)) return;
        end = start > x.text ? start - 1 : x.text;
    }
}
