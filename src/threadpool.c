/* threadpool.c: persistent worker threads that the forward pass splits its loops across.
 *
 * A run is one round trip: the caller publishes fn and arg and bumps a generation counter; each
 * worker, seeing the new generation, runs its share and decrements `pending`; the caller runs share 0
 * itself and then waits for pending == 0. A decode step makes a dozen runs of a few microseconds each,
 * so waiting is done by spinning on the two counters (with the CPU's pause hint) for up to SPIN_NS;
 * only a thread that has waited longer than that, or that finds the thread it waits for on its own
 * CPU, sleeps on a condition variable, and the other side takes the mutex to wake it only when it
 * knows someone sleeps.
 *
 * Memory order: fn, arg and pending are written before the release increment of the generation and
 * read after the acquire load that sees it; each worker's results are published by its release
 * decrement of pending, which the caller reads with acquire. The sleep/wake hand-off is the classic
 * pair "store my flag, then re-check the other's counter" on both sides, all sequentially consistent,
 * so either the sleeper sees the change or the waker sees the sleeper (and then signals under the
 * mutex that the sleeper holds until it waits): no wake-up is lost. */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_NS 100000 /* how long a waiting thread spins before it sleeps: 100 us */

struct sasp_pool {
    alignas(64) atomic_ulong generation; /* bumped by the caller for each run (and on quit) */
    alignas(64) atomic_int pending;      /* workers still running the current run */
    alignas(64) atomic_int sleepers;     /* workers asleep (or about to be) on `wake` */
    atomic_int caller_sleeps;            /* the caller is asleep (or about to be) on `done` */
    atomic_int quit;
    sasp_pool_fn fn;
    void *arg;
    int n;                 /* threads, the caller included */
    pthread_t *threads;    /* n - 1 workers */
    atomic_int *cpu;       /* [n] the CPU each thread last ran on, as far as it said (-1: unknown) */
    pthread_mutex_t lock;
    pthread_cond_t wake;   /* workers sleep here for a new generation */
    pthread_cond_t done;   /* the caller sleeps here for pending == 0 */
};

typedef struct {
    sasp_pool *pool;
    int ith;
} worker_arg;

/* The CPU the calling thread runs on, or -1 where the system does not say. */
static int current_cpu(void) {
#ifdef __linux__
    return sched_getcpu();
#else
    return -1;
#endif
}

/* One more turn of a wait that began at *start (0: not yet timed): the pause hint, and every 64
 * turns a look at the clock and at the CPU we run on. Returns 0 (stop spinning, go to sleep) once
 * SPIN_NS have passed, or as soon as a thread we wait for last ran on our CPU: then it cannot run
 * while we spin, and a wake-up from it is far cheaper than the rest of our time slice. (On a busy
 * machine the scheduler does put both threads on one core at times; without this check decode with
 * 2 threads then fell to a third of the speed of 1.) No sched_yield: a yielding waiter can lose its
 * core to another process for a whole time slice. */
static int keep_spinning(sasp_pool *pool, int me, unsigned i, int64_t *start) {
    cpu_relax();
    if (i & 63) return 1;
    int64_t t = sasp_now_ns();
    if (!*start) *start = t;
    if (t - *start > SPIN_NS) return 0;
    int cpu = current_cpu();
    atomic_store_explicit(&pool->cpu[me], cpu, memory_order_relaxed);
    if (cpu < 0) return 1;
    for (int j = me ? 0 : 1; j < (me ? 1 : pool->n); j++) /* a worker waits on the caller, the caller on all */
        if (atomic_load_explicit(&pool->cpu[j], memory_order_relaxed) == cpu) return 0;
    return 1;
}

/* Spin until the generation differs from `seen` or the spin ends; returns the generation. */
static unsigned long spin_for_generation(sasp_pool *pool, int me, unsigned long seen) {
    int64_t start = 0;
    for (unsigned i = 1;; i++) {
        unsigned long g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (g != seen || !keep_spinning(pool, me, i, &start)) return g;
    }
}

static void *worker_main(void *p) {
    worker_arg wa = *(worker_arg *)p;
    free(p);
    sasp_pool *pool = wa.pool;
    unsigned long seen = 0;
    for (;;) {
        unsigned long g = spin_for_generation(pool, wa.ith, seen);
        if (g == seen) {
            pthread_mutex_lock(&pool->lock);
            atomic_fetch_add(&pool->sleepers, 1);
            while ((g = atomic_load(&pool->generation)) == seen) pthread_cond_wait(&pool->wake, &pool->lock);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->lock);
        }
        seen = g;
        if (atomic_load_explicit(&pool->quit, memory_order_acquire)) break;
        atomic_store_explicit(&pool->cpu[wa.ith], current_cpu(), memory_order_relaxed);
        pool->fn(pool->arg, wa.ith, pool->n);
        if (atomic_fetch_sub(&pool->pending, 1) == 1 && atomic_load(&pool->caller_sleeps)) {
            pthread_mutex_lock(&pool->lock);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->lock);
        }
    }
    return NULL;
}

sasp_pool *sasp_pool_new(int n_threads) {
    if (n_threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = cores > 0 ? (int)cores : 1;
    }
    if (n_threads > 1024) n_threads = 1024;
    sasp_pool *pool = aligned_alloc(64, (sizeof *pool + 63) & ~(size_t)63);
    if (!pool) return NULL;
    memset(pool, 0, sizeof *pool);
    pool->n = n_threads;
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->caller_sleeps, 0);
    atomic_init(&pool->quit, 0);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    pool->cpu = malloc((size_t)n_threads * sizeof *pool->cpu);
    if (!pool->cpu) goto fail;
    for (int i = 0; i < n_threads; i++) atomic_init(&pool->cpu[i], -1);
    if (n_threads > 1) {
        pool->threads = calloc((size_t)n_threads - 1, sizeof *pool->threads);
        if (!pool->threads) goto fail;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) goto fail_started;
        wa->pool = pool;
        wa->ith = i;
        if (pthread_create(&pool->threads[i - 1], NULL, worker_main, wa) != 0) {
            free(wa);
            goto fail_started;
        }
        continue;
    fail_started:
        pool->n = i; /* threads [1, i) run: stop and join them */
        sasp_pool_free(pool);
        return NULL;
    }
    return pool;
fail:
    free(pool->cpu);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    free(pool);
    return NULL;
}

int sasp_pool_size(const sasp_pool *pool) { return pool ? pool->n : 1; }

/* Publish a new generation and wake the workers that sleep. */
static void publish(sasp_pool *pool) {
    atomic_fetch_add(&pool->generation, 1); /* seq_cst: a release, and ordered before the load below */
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }
}

void sasp_pool_run(sasp_pool *pool, sasp_pool_fn fn, void *arg) {
    if (!pool || pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->cpu[0], current_cpu(), memory_order_relaxed);
    atomic_store_explicit(&pool->pending, pool->n - 1, memory_order_relaxed);
    publish(pool);

    fn(arg, 0, pool->n);

    int64_t start = 0;
    for (unsigned i = 1; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0; i++)
        if (!keep_spinning(pool, 0, i, &start)) break;
    if (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&pool->lock);
        atomic_store(&pool->caller_sleeps, 1);
        while (atomic_load(&pool->pending) > 0) pthread_cond_wait(&pool->done, &pool->lock);
        atomic_store(&pool->caller_sleeps, 0);
        pthread_mutex_unlock(&pool->lock);
    }
}

void sasp_pool_free(sasp_pool *pool) {
    if (!pool) return;
    atomic_store(&pool->quit, 1);
    publish(pool);
    for (int i = 1; i < pool->n; i++) pthread_join(pool->threads[i - 1], NULL);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    free(pool->threads);
    free(pool->cpu);
    free(pool);
}

void sasp_split(int n, int ith, int nth, int *lo, int *hi) {
    if (nth < 1) nth = 1;
    long base = n / nth, extra = n % nth;
    long start = ith * base + (ith < extra ? ith : extra);
    *lo = (int)start;
    *hi = (int)(start + base + (ith < extra ? 1 : 0));
}
