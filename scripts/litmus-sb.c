/* litmus-sb.c: the "store buffering" litmus test, to tell whether a machine (or an emulator) keeps
 * C11's sequentially consistent store-then-load order between two locations, which the thread pool's
 * old sleep hand-off relied on (threadpool.c's header says why it no longer does).
 *
 * Two threads, over and over:   A: x = 1; r0 = y;      B: y = 1; r1 = x;
 * With seq_cst stores and loads, r0 == 0 && r1 == 0 is forbidden. With an RMW in place of each store
 * (atomic_exchange) it is forbidden too, and that is the form threadpool.c uses now.
 *
 *   cc -O2 -pthread scripts/litmus-sb.c -o litmus-sb && ./litmus-sb 1000000
 *   aarch64-linux-gnu-gcc -O2 -pthread scripts/litmus-sb.c -o litmus-sb-arm64 && qemu-aarch64 ./litmus-sb-arm64
 *
 * Prints how many of N rounds showed the forbidden outcome, for each form. A diagnostic, not a test
 * of sasp's code: measured 2026-12-06 under qemu-aarch64 7.2 on an x86-64 host, see docs/reliability.md. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* round i uses its own x[i], y[i] (no reset between rounds); the two threads meet at each round's
 * start by spinning on each other's progress, so that their stores and loads overlap in time */
static atomic_int *x, *y;
static int *r0, *r1;
static atomic_long progress[2];
static long rounds;
static int use_rmw;

static void *side(void *arg)
{
    int me = arg != NULL;
    atomic_int *mine = me ? x : y, *theirs = me ? y : x;
    int *r = me ? r0 : r1;
    for (long i = 0; i < rounds; i++) {
        while (atomic_load_explicit(&progress[!me], memory_order_acquire) < i)
            ;
        if (use_rmw) atomic_exchange(&mine[i], 1);
        else atomic_store(&mine[i], 1);
        r[i] = atomic_load(&theirs[i]);
        atomic_store_explicit(&progress[me], i + 1, memory_order_release);
    }
    return NULL;
}

static long run(int rmw)
{
    use_rmw = rmw;
    x = calloc((size_t)rounds, sizeof *x);
    y = calloc((size_t)rounds, sizeof *y);
    r0 = calloc((size_t)rounds, sizeof *r0);
    r1 = calloc((size_t)rounds, sizeof *r1);
    if (!x || !y || !r0 || !r1) exit(2);
    atomic_store(&progress[0], 0);
    atomic_store(&progress[1], 0);
    pthread_t ta, tb;
    pthread_create(&ta, NULL, side, (void *)1);
    pthread_create(&tb, NULL, side, NULL);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    long forbidden = 0;
    for (long i = 0; i < rounds; i++) forbidden += r0[i] == 0 && r1[i] == 0;
    free(x), free(y), free(r0), free(r1);
    return forbidden;
}

int main(int argc, char **argv)
{
    rounds = argc > 1 ? atol(argv[1]) : 1000000;
    long plain = run(0), rmw = run(1);
    printf("store-buffering: r0 == r1 == 0 (forbidden by C11) in %ld of %ld rounds with seq_cst store + load, "
           "%ld with exchange + load\n",
           plain, rounds, rmw);
    return rmw != 0;
}
