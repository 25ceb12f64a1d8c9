/* prompt_cache.c: slot choice by common prefix and the host cache of evicted prefixes
 * (prompt_cache.h). */
#include "engine/prompt_cache.h"

#include <stdlib.h>
#include <string.h>

int sasp_common_prefix(const int *a, int na, const int *b, int nb)
{
    int n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

int sasp_pick_slot(const sasp_slot_view *v, int n_slots, const int *prompt, int n, int reuse)
{
    int best = -1, best_common = -1;
    for (int i = 0; i < n_slots; i++) {
        if (!v[i].free) continue;
        int common = reuse ? sasp_common_prefix(v[i].ids, v[i].n, prompt, n) : 0;
        if (common > best_common || (common == best_common && v[i].last_used < v[best].last_used)) {
            best = i;
            best_common = common;
        }
    }
    return best;
}

/* --- the host cache --- */

typedef struct entry {
    sasp_kv *kv; /* cap = n positions */
    int *ids;
    int n;
    uint64_t used; /* the cache's clock when last saved or restored */
    size_t bytes;
} entry;

struct sasp_host_cache {
    const sasp_model *m;
    size_t max_bytes, bytes;
    entry *e;
    int n, cap;
    uint64_t clock;
};

sasp_host_cache *sasp_host_cache_new(const sasp_model *m, size_t max_bytes)
{
    if (max_bytes == 0) return NULL;
    sasp_host_cache *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->m = m;
    h->max_bytes = max_bytes;
    return h;
}

static void entry_free(entry *e)
{
    sasp_kv_free(e->kv);
    free(e->ids);
}

void sasp_host_cache_free(sasp_host_cache *h)
{
    if (!h) return;
    for (int i = 0; i < h->n; i++) entry_free(&h->e[i]);
    free(h->e);
    free(h);
}

int sasp_host_cache_find(const sasp_host_cache *h, const int *ids, int n, int *common)
{
    int best = -1;
    *common = 0;
    for (int i = 0; h && i < h->n; i++) {
        int c = sasp_common_prefix(h->e[i].ids, h->e[i].n, ids, n);
        if (c > *common) {
            *common = c;
            best = i;
        }
    }
    return best;
}

int sasp_host_cache_restore(sasp_host_cache *h, int e, sasp_kv *kv, int *ids, int len)
{
    if (!h || e < 0 || e >= h->n || len > h->e[e].n) return -1;
    if (sasp_kv_copy(h->m, kv, h->e[e].kv, len) != 0) return -1;
    memcpy(ids, h->e[e].ids, (size_t)len * sizeof *ids);
    h->e[e].used = ++h->clock;
    return 0;
}

/* The memory an entry of n positions takes: keys and values of every layer, the centring sums, ids. */
static size_t entry_bytes(const sasp_model *m, int n)
{
    size_t per_layer = (size_t)m->cfg.d_model * (2 * (size_t)n * sizeof(float) + sizeof(double));
    return (size_t)m->cfg.n_layers * per_layer + (size_t)n * sizeof(int);
}

static void drop_entry(sasp_host_cache *h, int i)
{
    h->bytes -= h->e[i].bytes;
    entry_free(&h->e[i]);
    h->e[i] = h->e[--h->n];
}

/* Drop the least recently used entry. */
static void evict_oldest(sasp_host_cache *h)
{
    int old = 0;
    for (int i = 1; i < h->n; i++)
        if (h->e[i].used < h->e[old].used) old = i;
    drop_entry(h, old);
}

/* Drop the entries that ids[0..n) holds whole (a new, longer copy replaces them). */
static void drop_covered(sasp_host_cache *h, const int *ids, int n)
{
    for (int i = 0; i < h->n;) {
        if (h->e[i].n <= n && sasp_common_prefix(h->e[i].ids, h->e[i].n, ids, n) == h->e[i].n) drop_entry(h, i);
        else i++;
    }
}

/* An entry slot to fill (grown when needed), or NULL. */
static entry *new_entry(sasp_host_cache *h)
{
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 8;
        entry *e = realloc(h->e, (size_t)cap * sizeof *e);
        if (!e) return NULL;
        h->e = e;
        h->cap = cap;
    }
    return &h->e[h->n];
}

int sasp_host_cache_save(sasp_host_cache *h, const sasp_kv *kv, const int *ids, int n)
{
    if (!h || n <= 0) return 0;
    size_t bytes = entry_bytes(h->m, n);
    int common;
    if (bytes > h->max_bytes || (sasp_host_cache_find(h, ids, n, &common) >= 0 && common == n)) return 0;
    drop_covered(h, ids, n);
    while (h->n && h->bytes + bytes > h->max_bytes) evict_oldest(h);
    entry *e = new_entry(h);
    if (!e) return 0;
    memset(e, 0, sizeof *e);
    e->kv = sasp_kv_new(h->m, n);
    e->ids = malloc((size_t)n * sizeof *e->ids);
    if (!e->kv || !e->ids || e->kv->cap < n || sasp_kv_copy(h->m, e->kv, kv, n) != 0) {
        entry_free(e);
        return 0;
    }
    memcpy(e->ids, ids, (size_t)n * sizeof *ids);
    e->n = n;
    e->used = ++h->clock;
    e->bytes = bytes;
    h->bytes += bytes;
    h->n++;
    return 1;
}

void sasp_host_cache_usage(const sasp_host_cache *h, int *entries, size_t *bytes)
{
    *entries = h ? h->n : 0;
    *bytes = h ? h->bytes : 0;
}
