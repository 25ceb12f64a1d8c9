/* prompt_cache.h: the prompt cache of sasp-server's scheduler. Every slot's KV-cache keeps the
 * tokens it last read (prompt and generated) after its sequence ends; a new sequence goes to the free
 * slot whose tokens share the longest prefix with its prompt (the least recently used one when none
 * shares any) and prefills only the rest. A prefix that another slot (busy or not) or the host cache
 * holds at greater length is copied in (sasp_kv_copy) instead of being recomputed. The host cache keeps
 * copies of prefixes that were about to be overwritten, within a memory budget, least recently used
 * out first. Restoring a prefix of length n (sasp_kv_truncate, sasp_kv_copy) recomputes the SAS-P
 * centring sum over exactly those n positions, so the next step continues as if only they had been
 * fed.
 *
 * These functions run on the engine thread only (scheduler.c); they take no locks. */
#ifndef SASP_PROMPT_CACHE_H
#define SASP_PROMPT_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include "model/model.h"

/* How many of a[0..na) and b[0..nb) are equal from the start. */
int sasp_common_prefix(const int *a, int na, const int *b, int nb);

/* What slot choice knows of a slot: the tokens its cache holds, whether it is free, when it was last
 * taken (a counter). */
typedef struct sasp_slot_view {
    const int *ids;
    int n;
    int free;
    uint64_t last_used;
} sasp_slot_view;

/* The free slot for a prompt: the longest common prefix with it (ties: the least recently used), or
 * the least recently used free slot when reuse is 0 (the prompt may not reuse a cache: its slot is
 * the one whose loss costs least). -1 when no slot is free. */
int sasp_pick_slot(const sasp_slot_view *v, int n_slots, const int *prompt, int n, int reuse);

/* The host cache of evicted prefixes. */
typedef struct sasp_host_cache sasp_host_cache;

/* At most max_bytes of copies (0: off; NULL then too). */
sasp_host_cache *sasp_host_cache_new(const sasp_model *m, size_t max_bytes);
void sasp_host_cache_free(sasp_host_cache *h);
/* The entry sharing the longest prefix with ids[0..n) (its length in *common), or -1 when none shares
 * a token. */
int sasp_host_cache_find(const sasp_host_cache *h, const int *ids, int n, int *common);
/* Copy the first len positions of entry e into kv and their tokens into ids (the slot's); 0 or -1. */
int sasp_host_cache_restore(sasp_host_cache *h, int e, sasp_kv *kv, int *ids, int len);
/* Keep a copy of kv's first n positions, whose tokens are ids, unless an entry already holds them;
 * older entries leave to make room. 1 kept, 0 not (too big, already there, or out of memory). */
int sasp_host_cache_save(sasp_host_cache *h, const sasp_kv *kv, const int *ids, int n);
/* Its entries and their bytes. */
void sasp_host_cache_usage(const sasp_host_cache *h, int *entries, size_t *bytes);

#endif
