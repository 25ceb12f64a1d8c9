/* check_threadpool.c: the thread pool's sleep and wake paths, driven hard (threadpool.c).
 *
 * A run's shares take times chosen around the pool's spin limit (100 us), and the gaps between runs
 * too, so that every hand-off happens many times over, in both orders:
 *   - the caller finishes first and sleeps before the last worker finishes (a worker's share is long);
 *   - the last worker finishes just as the caller's spin ends (shares of 60-140 us: the race window);
 *   - the workers sleep between runs and are woken by the next one (gaps longer than the spin), or
 *     announce their sleep just as the next run is published (gaps of 60-140 us);
 *   - nobody sleeps (short shares, no gaps).
 * And runs of claimed work (sasp_pool_run_claimed), where a worker late to a run is let off it.
 * With 1 to 4 threads, thousands of runs each. Each run checks that every share ran exactly once and
 * that the caller sees what each worker wrote. A lost wake-up would hang: a watchdog thread fails the
 * test (naming the case, thread count and run) when no run completes for 20 s (CK_TIMEOUT_MULTIPLIER
 * times that under qemu), long before Check's own timeout. Runs natively and under qemu-aarch64
 * (scripts/check-neon.sh), where the old protocol's store-to-load hand-off hung. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "model/threadpool.h"
#include "base/util.h"

#define MAX_THREADS 4

typedef struct {
    int64_t share_ns[MAX_THREADS]; /* how long each share runs */
    atomic_int calls[MAX_THREADS]; /* times each share ran */
    uint64_t written[MAX_THREADS]; /* a plain write of each share, read by the caller after the run */
    uint64_t stamp;                /* what this run's shares write */
} run_plan;

static void busy_for(int64_t ns)
{
    int64_t end = sasp_now_ns() + ns;
    while (sasp_now_ns() < end) {
    }
}

static void share_fn(void *arg, int ith, int nth)
{
    run_plan *p = arg;
    if (ith < 0 || ith >= nth || nth > MAX_THREADS) abort();
    busy_for(p->share_ns[ith]);
    p->written[ith] = p->stamp + (uint64_t)ith;
    atomic_fetch_add_explicit(&p->calls[ith], 1, memory_order_relaxed);
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* a time in [lo, hi) microseconds */
static int64_t us_between(uint64_t *s, int lo, int hi)
{
    return (int64_t)(lo + (int)(rng_next(s) % (uint64_t)(hi - lo))) * 1000;
}

/* --- the watchdog: fails the test when runs stop completing --- */

static struct {
    atomic_long completed;
    atomic_int stop;
    const char *what;
    int threads;
    int64_t limit_ns;
} dog;

static void *watchdog_main(void *arg)
{
    (void)arg;
    long last = -1;
    int64_t since = sasp_now_ns();
    while (!atomic_load(&dog.stop)) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        long now_done = atomic_load(&dog.completed);
        int64_t now = sasp_now_ns();
        if (now_done != last) {
            last = now_done;
            since = now;
        } else if (now - since > dog.limit_ns) {
            fprintf(stderr, "check_threadpool: HANG in case '%s', %d threads: run %ld has not returned in %.0f s\n",
                    dog.what, dog.threads, now_done, (double)dog.limit_ns / 1e9);
            fflush(stderr);
            abort();
        }
    }
    return NULL;
}

static pthread_t watchdog_start(const char *what, int threads)
{
    const char *mult = getenv("CK_TIMEOUT_MULTIPLIER");
    double m = mult ? atof(mult) : 1.0;
    dog.what = what;
    dog.threads = threads;
    dog.limit_ns = (int64_t)(20e9 * (m >= 1 ? m : 1));
    atomic_store(&dog.completed, 0);
    atomic_store(&dog.stop, 0);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, watchdog_main, NULL), 0);
    return t;
}

static void watchdog_stop(pthread_t t)
{
    atomic_store(&dog.stop, 1);
    pthread_join(t, NULL);
}

/* --- the cases --- */

typedef enum { CALLER_SLEEPS,
               LAST_WORKER_RACE,
               WORKERS_SLEEP,
               GAP_RACE,
               NOBODY_SLEEPS,
               MIXED } case_kind;
static const char *case_names[] = {"caller sleeps", "last worker at the spin limit", "workers sleep",
                                   "publish at the sleep", "nobody sleeps", "mixed"};

/* The shares' times of run r and the gap after it, for a case. */
static int64_t plan_run(case_kind kind, run_plan *p, int nth, uint64_t *s)
{
    if (kind == MIXED) kind = (case_kind)(rng_next(s) % MIXED);
    int64_t gap = 0;
    for (int i = 0; i < nth; i++) p->share_ns[i] = us_between(s, 0, 5);
    switch (kind) {
    case CALLER_SLEEPS:
        p->share_ns[1 + (int)(rng_next(s) % (uint64_t)(nth - 1))] = us_between(s, 150, 400);
        break;
    case LAST_WORKER_RACE:
        for (int i = 1; i < nth; i++) p->share_ns[i] = us_between(s, 60, 140);
        break;
    case WORKERS_SLEEP:
        gap = us_between(s, 150, 600);
        break;
    case GAP_RACE:
        gap = us_between(s, 60, 140);
        break;
    default:
        break;
    }
    return gap;
}

static void drive(case_kind kind, int nth, int runs, uint64_t seed)
{
    sasp_pool *pool = sasp_pool_new(nth);
    ck_assert_ptr_nonnull(pool);
    ck_assert_int_eq(sasp_pool_size(pool), nth);
    pthread_t t = watchdog_start(case_names[kind], nth);
    uint64_t s = seed | 1;
    run_plan p;
    for (int r = 0; r < runs; r++) {
        int64_t gap = plan_run(kind, &p, nth, &s);
        p.stamp = (uint64_t)r << 8;
        for (int i = 0; i < nth; i++) {
            atomic_store_explicit(&p.calls[i], 0, memory_order_relaxed);
            p.written[i] = 0;
        }
        sasp_pool_run(pool, share_fn, &p);
        for (int i = 0; i < nth; i++) {
            ck_assert_msg(atomic_load_explicit(&p.calls[i], memory_order_relaxed) == 1,
                          "%s, %d threads, run %d: share %d ran %d times", case_names[kind], nth, r, i,
                          atomic_load(&p.calls[i]));
            ck_assert_msg(p.written[i] == p.stamp + (uint64_t)i, "%s, %d threads, run %d: share %d's write not seen",
                          case_names[kind], nth, r, i);
        }
        atomic_fetch_add(&dog.completed, 1);
        if (gap) busy_for(gap);
    }
    watchdog_stop(t);
    sasp_pool_free(pool);
}

static int runs_for(int base)
{
    const char *e = getenv("SASP_POOL_RUNS"); /* more for a soak: SASP_POOL_RUNS=100000 */
    return e ? atoi(e) : base;
}

START_TEST(pool_caller_sleeps)
{
    for (int nth = 2; nth <= MAX_THREADS; nth++) drive(CALLER_SLEEPS, nth, runs_for(2000), 11u + (unsigned)nth);
}
END_TEST

START_TEST(pool_last_worker_race)
{
    for (int nth = 2; nth <= MAX_THREADS; nth++) drive(LAST_WORKER_RACE, nth, runs_for(4000), 23u + (unsigned)nth);
}
END_TEST

START_TEST(pool_workers_sleep)
{
    for (int nth = 2; nth <= MAX_THREADS; nth++) drive(WORKERS_SLEEP, nth, runs_for(2000), 37u + (unsigned)nth);
}
END_TEST

START_TEST(pool_gap_race)
{
    for (int nth = 2; nth <= MAX_THREADS; nth++) drive(GAP_RACE, nth, runs_for(4000), 41u + (unsigned)nth);
}
END_TEST

START_TEST(pool_nobody_sleeps)
{
    for (int nth = 1; nth <= MAX_THREADS; nth++) drive(NOBODY_SLEEPS, nth, runs_for(20000), 53u + (unsigned)nth);
}
END_TEST

START_TEST(pool_mixed)
{
    for (int nth = 2; nth <= MAX_THREADS; nth++) drive(MIXED, nth, runs_for(6000), 67u + (unsigned)nth);
}
END_TEST

/* --- runs of claimed work (sasp_pool_run_claimed) --- */

#define CLAIM_ITEMS 24

typedef struct {
    atomic_int next;               /* the next item to claim */
    int n;                         /* items in this run */
    int64_t item_ns[CLAIM_ITEMS];  /* how long each runs */
    atomic_int calls[CLAIM_ITEMS]; /* times each ran */
    uint64_t written[CLAIM_ITEMS]; /* a plain write of each item */
    uint64_t stamp;
    atomic_long fn_calls; /* every call of claim_fn, ever: none may come after a run returned */
} claim_plan;

static void claim_fn(void *arg, int ith, int nth)
{
    claim_plan *p = arg;
    if (ith < 0 || ith >= nth || nth > MAX_THREADS) abort();
    atomic_fetch_add(&p->fn_calls, 1);
    for (int it; (it = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < p->n;) {
        busy_for(p->item_ns[it]);
        p->written[it] = p->stamp + (uint64_t)it;
        atomic_fetch_add_explicit(&p->calls[it], 1, memory_order_relaxed);
    }
}

/* Claimed runs, plain runs between them, gaps that let the workers sleep: each item runs once, the
 * caller sees its write, and no worker calls fn after its run has returned (one let off must not). */
static void drive_claimed(int nth, int runs, uint64_t seed)
{
    sasp_pool *pool = sasp_pool_new(nth);
    ck_assert_ptr_nonnull(pool);
    pthread_t t = watchdog_start("claimed work", nth);
    uint64_t s = seed | 1;
    claim_plan *p = calloc(1, sizeof *p);
    run_plan plain = {0};
    for (int r = 0; r < runs; r++) {
        long before = atomic_load(&p->fn_calls);
        p->n = 1 + (int)(rng_next(&s) % CLAIM_ITEMS);
        for (int i = 0; i < p->n; i++) {
            p->item_ns[i] = rng_next(&s) % 4 ? us_between(&s, 0, 3) : us_between(&s, 20, 80);
            atomic_store(&p->calls[i], 0);
            p->written[i] = 0;
        }
        p->stamp = (uint64_t)r << 8;
        atomic_store(&p->next, 0);
        sasp_pool_run_claimed(pool, claim_fn, p);
        long after = atomic_load(&p->fn_calls);
        ck_assert_msg(after - before >= 1 && after - before <= nth, "run %d: fn called %ld times", r, after - before);
        for (int i = 0; i < p->n; i++) {
            ck_assert_msg(atomic_load(&p->calls[i]) == 1, "%d threads, run %d: item %d ran %d times", nth, r, i,
                          atomic_load(&p->calls[i]));
            ck_assert_msg(p->written[i] == p->stamp + (uint64_t)i, "%d threads, run %d: item %d's write not seen",
                          nth, r, i);
        }
        int64_t gap = rng_next(&s) % 8 == 0 ? us_between(&s, 60, 300) : 0;
        if (gap) busy_for(gap);
        ck_assert_msg(atomic_load(&p->fn_calls) == after, "%d threads, run %d: a worker ran fn after the run returned",
                      nth, r);
        if (r % 5 == 4) { /* a plain run between: every worker must take part in it */
            for (int i = 0; i < nth; i++) atomic_store(&plain.calls[i], 0), plain.share_ns[i] = 0;
            sasp_pool_run(pool, share_fn, &plain);
            for (int i = 0; i < nth; i++)
                ck_assert_msg(atomic_load(&plain.calls[i]) == 1, "%d threads, run %d: plain share %d ran %d times",
                              nth, r, i, atomic_load(&plain.calls[i]));
        }
        atomic_fetch_add(&dog.completed, 1);
    }
    fprintf(stderr, "check_threadpool: claimed work, %d threads: workers let off %ld times in %d runs\n", nth,
            sasp_pool_let_off(pool), runs);
    watchdog_stop(t);
    sasp_pool_free(pool);
    free(p);
}

START_TEST(pool_claimed)
{
    for (int nth = 1; nth <= MAX_THREADS; nth++) drive_claimed(nth, runs_for(6000), 71u + (unsigned)nth);
}
END_TEST

/* A pool made and freed while its workers sleep, spin, or have never run. */
START_TEST(pool_free_in_every_state)
{
    for (int nth = 1; nth <= MAX_THREADS; nth++) {
        for (int k = 0; k < 200; k++) {
            sasp_pool *pool = sasp_pool_new(nth);
            ck_assert_ptr_nonnull(pool);
            run_plan p = {0};
            if (k % 3) sasp_pool_run(pool, share_fn, &p);
            if (k % 3 == 2) busy_for(150 * 1000); /* the workers have gone to sleep */
            sasp_pool_free(pool);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("threadpool");
    TCase *tc = tcase_create("sleep and wake");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, pool_caller_sleeps);
    tcase_add_test(tc, pool_last_worker_race);
    tcase_add_test(tc, pool_workers_sleep);
    tcase_add_test(tc, pool_gap_race);
    tcase_add_test(tc, pool_nobody_sleeps);
    tcase_add_test(tc, pool_mixed);
    tcase_add_test(tc, pool_claimed);
    tcase_add_test(tc, pool_free_in_every_state);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
