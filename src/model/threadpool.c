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
 * Late workers. In a run of claimed work (sasp_pool_run_claimed: the forward pass's item phases, the
 * scheduler's draws) the caller's fn takes whatever no thread has claimed, so when it returns only the
 * workers that have begun the run have anything to finish. The caller then lets off the others: a
 * compare-and-swap on each worker's entry word, which the worker itself sets by a compare-and-swap
 * before it reads fn and arg (enter_run); whoever comes first decides, and a worker let off skips the
 * run. Without it a worker the OS had not run yet (a client or the HTTP threads on the same cores)
 * held up every phase it was late to; one streaming client on the 2-vCPU VM of docs/performance.md
 * was served 1.08-1.31x faster with it (medians of five A/B runs).
 *
 * Memory order: fn, arg and pending are written before the increment of the generation (a release)
 * and read after the acquire load that sees it; each worker's results are published by its decrement
 * of pending (acq_rel), which the caller reads with acquire.
 *
 * The sleep/wake hand-off. A sleeper must announce itself in the same atomic word its waker changes,
 * by a read-modify-write: the workers' sleeper count lives in the low bits of the generation word
 * (`gate`), and the caller's "asleep" flag in the pending word. A would-be sleeper's RMW and the
 * waker's RMW on that one word are ordered one before the other (coherence of a single location, on
 * every CPU and emulator): if the sleeper's comes first the waker sees it and signals under the mutex
 * (which the sleeper holds from before its RMW until it waits); if the waker's comes first the
 * sleeper's RMW returns the new value and it does not sleep. No wake-up can be lost.
 *
 * The earlier protocol put the flag in a word of its own ("store my flag, then load the other's
 * counter", Dekker's pattern), which needs store-to-load ordering between two locations. C11's
 * sequentially consistent store and load promise it, and AArch64's STLR followed by LDAR keeps it, but
 * qemu-user translates STLR as "barrier, store" and LDAR as "load, barrier" on an x86 host, so the
 * caller's load of pending could pass its own store of the flag in the host's store buffer: the last
 * worker then saw no sleeper, the caller saw a worker still running, and every thread slept for good
 * (the hang of check_model under qemu in check-neon.sh; scripts/litmus-sb.c shows the reordering). */
#include "model/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" :: \
                                             : "memory")
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_NS 100000 /* how long a waiting thread spins before it sleeps: 100 us */

/* gate: the generation in the bits above GATE_SHIFT, workers asleep (or about to be) below. */
#define GATE_SHIFT 16
#define GATE_ONE ((uint64_t)1 << GATE_SHIFT)
#define GATE_SLEEPERS (GATE_ONE - 1)
#define generation_of(gate) ((gate) >> GATE_SHIFT)
/* pending: workers still running the current run, and CALLER_ASLEEP while the caller sleeps */
#define CALLER_ASLEEP (1 << 30)
#define PENDING_COUNT (CALLER_ASLEEP - 1)

struct sasp_pool {
    alignas(64) _Atomic uint64_t gate; /* the generation, bumped for each run (and on quit); sleepers */
    alignas(64) atomic_int pending;    /* workers still running the current run; CALLER_ASLEEP */
    alignas(64) atomic_int quit;
    sasp_pool_fn fn;
    void *arg;
    int n;                 /* threads, the caller included */
    struct entry *entries; /* [n] each worker's entry into the runs (enter_run); [0], the caller's, unused */
    atomic_long let_off;   /* workers let off a run, so far */
    pthread_t *threads;    /* n - 1 workers */
    atomic_int *cpu;       /* [n] the CPU each thread last ran on, as far as it said (-1: unknown) */
    pthread_mutex_t lock;
    pthread_cond_t wake; /* workers sleep here for a new generation */
    pthread_cond_t done; /* the caller sleeps here for pending == 0 */
};

/* Worker i's entry into the runs: the generation of the last run it entered (<< 1), or of the last
 * run the caller let it off (<< 1 | 1); on a cache line of its own. */
struct entry {
    alignas(64) _Atomic uint64_t gen;
};

typedef struct {
    sasp_pool *pool;
    int ith;
} worker_arg;

/* The CPU the calling thread runs on, or -1 where the system does not say. */
static int current_cpu(void)
{
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
static int keep_spinning(sasp_pool *pool, int me, unsigned i, int64_t *start)
{
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

static uint64_t generation_now(sasp_pool *pool)
{
    return generation_of(atomic_load_explicit(&pool->gate, memory_order_acquire));
}

/* Spin until the generation differs from `seen` or the spin ends; returns the generation. */
static uint64_t spin_for_generation(sasp_pool *pool, int me, uint64_t seen)
{
    int64_t start = 0;
    for (unsigned i = 1;; i++) {
        uint64_t g = generation_now(pool);
        if (g != seen || !keep_spinning(pool, me, i, &start)) return g;
    }
}

/* Sleep until the generation differs from `seen`; returns it. The sleeper count is raised by an RMW
 * on the gate itself (see the header), under the mutex that the publisher takes to wake us. */
static uint64_t sleep_for_generation(sasp_pool *pool, uint64_t seen)
{
    pthread_mutex_lock(&pool->lock);
    uint64_t g = generation_of(atomic_fetch_add(&pool->gate, 1));
    while (g == seen) {
        pthread_cond_wait(&pool->wake, &pool->lock);
        g = generation_now(pool);
    }
    atomic_fetch_sub(&pool->gate, 1);
    pthread_mutex_unlock(&pool->lock);
    return g;
}

/* The end of a worker's share: the last one wakes the caller if it sleeps. */
static void finish_share(sasp_pool *pool)
{
    int before = atomic_fetch_sub(&pool->pending, 1);
    if ((before & PENDING_COUNT) == 1 && (before & CALLER_ASLEEP)) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_signal(&pool->done);
        pthread_mutex_unlock(&pool->lock);
    }
}

/* Worker ith's entry into run g: 1, or 0 when the caller has let it off (sasp_pool_run_claimed). Its
 * compare-and-swap and the caller's are on one word: whichever comes first decides, and a worker that
 * enters is waited for. A worker that saw g late may find a later run's generation there (the caller
 * let it off g and went on): then g is over, and it must not enter it. */
static int enter_run(sasp_pool *pool, int ith, uint64_t g)
{
    _Atomic uint64_t *e = &pool->entries[ith].gen;
    uint64_t v = atomic_load_explicit(e, memory_order_acquire);
    do {
        if (v >> 1 >= g) return 0;
    } while (!atomic_compare_exchange_weak_explicit(e, &v, g << 1, memory_order_acq_rel, memory_order_acquire));
    return 1;
}

/* The caller of run g, its own share done: every worker that has not entered g is let off it, and
 * stops counting in pending. */
static void let_off_late(sasp_pool *pool, uint64_t g)
{
    for (int i = 1; i < pool->n; i++) {
        _Atomic uint64_t *e = &pool->entries[i].gen;
        uint64_t v = atomic_load_explicit(e, memory_order_relaxed);
        while (v >> 1 < g)
            if (atomic_compare_exchange_weak_explicit(e, &v, g << 1 | 1, memory_order_acq_rel, memory_order_relaxed)) {
                atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&pool->let_off, 1, memory_order_relaxed);
                break;
            }
    }
}

static void *worker_main(void *p)
{
    worker_arg wa = *(worker_arg *)p;
    free(p);
    sasp_pool *pool = wa.pool;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g = spin_for_generation(pool, wa.ith, seen);
        if (g == seen) g = sleep_for_generation(pool, seen);
        seen = g;
        if (atomic_load_explicit(&pool->quit, memory_order_acquire)) break;
        atomic_store_explicit(&pool->cpu[wa.ith], current_cpu(), memory_order_relaxed);
        if (!enter_run(pool, wa.ith, g)) continue; /* let off: the caller did the work */
        pool->fn(pool->arg, wa.ith, pool->n);
        finish_share(pool);
    }
    return NULL;
}

sasp_pool *sasp_pool_new(int n_threads)
{
    if (n_threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = cores > 0 ? (int)cores : 1;
    }
    if (n_threads > 1024) n_threads = 1024;
    sasp_pool *pool = aligned_alloc(64, (sizeof *pool + 63) & ~(size_t)63);
    if (!pool) return NULL;
    memset(pool, 0, sizeof *pool);
    pool->n = n_threads;
    atomic_init(&pool->gate, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->quit, 0);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    pool->cpu = malloc((size_t)n_threads * sizeof *pool->cpu);
    pool->entries = aligned_alloc(64, (size_t)n_threads * sizeof *pool->entries);
    if (!pool->cpu || !pool->entries) goto fail;
    for (int i = 0; i < n_threads; i++) atomic_init(&pool->entries[i].gen, 0);
    atomic_init(&pool->let_off, 0);
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
    free(pool->entries);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    free(pool);
    return NULL;
}

int sasp_pool_size(const sasp_pool *pool) { return pool ? pool->n : 1; }

/* Publish a new generation and wake the workers that sleep (or are about to: see the header); returns
 * the generation. */
static uint64_t publish(sasp_pool *pool)
{
    uint64_t gate = atomic_fetch_add(&pool->gate, GATE_ONE);
    if (gate & GATE_SLEEPERS) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }
    return generation_of(gate) + 1;
}

/* A run (sasp_pool_run, or with claimed set sasp_pool_run_claimed). */
static void run(sasp_pool *pool, sasp_pool_fn fn, void *arg, int claimed)
{
    if (!pool || pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->cpu[0], current_cpu(), memory_order_relaxed);
    atomic_store_explicit(&pool->pending, pool->n - 1, memory_order_relaxed);
    uint64_t g = publish(pool);

    fn(arg, 0, pool->n);
    if (claimed) let_off_late(pool, g);

    int64_t start = 0;
    for (unsigned i = 1; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0; i++)
        if (!keep_spinning(pool, 0, i, &start)) break;
    if (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) {
        /* announce the sleep by an RMW on pending itself (see the header) */
        pthread_mutex_lock(&pool->lock);
        int left = atomic_fetch_or(&pool->pending, CALLER_ASLEEP) & PENDING_COUNT;
        while (left > 0) {
            pthread_cond_wait(&pool->done, &pool->lock);
            left = atomic_load_explicit(&pool->pending, memory_order_acquire) & PENDING_COUNT;
        }
        atomic_store_explicit(&pool->pending, 0, memory_order_relaxed);
        pthread_mutex_unlock(&pool->lock);
    }
}

void sasp_pool_run(sasp_pool *pool, sasp_pool_fn fn, void *arg) { run(pool, fn, arg, 0); }

void sasp_pool_run_claimed(sasp_pool *pool, sasp_pool_fn fn, void *arg) { run(pool, fn, arg, 1); }

void sasp_pool_free(sasp_pool *pool)
{
    if (!pool) return;
    atomic_store(&pool->quit, 1);
    publish(pool);
    for (int i = 1; i < pool->n; i++) pthread_join(pool->threads[i - 1], NULL);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    free(pool->threads);
    free(pool->cpu);
    free(pool->entries);
    free(pool);
}

long sasp_pool_let_off(const sasp_pool *pool) { return pool ? atomic_load(&pool->let_off) : 0; }

void sasp_split(int n, int ith, int nth, int *lo, int *hi)
{
    if (nth < 1) nth = 1;
    long base = n / nth, extra = n % nth;
    long start = ith * base + (ith < extra ? ith : extra);
    *lo = (int)start;
    *hi = (int)(start + base + (ith < extra ? 1 : 0));
}
