/* threadpool.h: a persistent pool of worker threads for the forward pass.
 *
 * sasp_pool_run(pool, fn, arg) calls fn(arg, i, n) once for each i < n, where n is the pool's thread
 * count, the calling thread taking i = 0, and returns when all have returned. Between runs the workers
 * spin for a short while (then sleep on a condition variable), so a run in a burst of runs costs a
 * cache-line round trip, not a wake-up. One run at a time per pool: a model's pool is run by sasp_forward
 * and, between passes on the same thread, by the scheduler's draws (sasp-bench makes pools of its own
 * for the machine's ceilings). */
#ifndef SASP_THREADPOOL_H
#define SASP_THREADPOOL_H

typedef struct sasp_pool sasp_pool;
typedef void (*sasp_pool_fn)(void *arg, int ith, int nth);

/* n_threads <= 0 means the number of online cores. Returns NULL on failure. */
sasp_pool *sasp_pool_new(int n_threads);
int sasp_pool_size(const sasp_pool *pool);
void sasp_pool_run(sasp_pool *pool, sasp_pool_fn fn, void *arg);
/* The same for work that the threads claim as they go (a counter, or shares others may take from):
 * when fn(arg, 0, n) returns on the calling thread, nothing is left unclaimed, so a worker that has
 * not begun the run by then is let off it (it skips the run) rather than waited for. A worker that
 * the OS has not run yet (a busy machine, a client on the same cores) then holds up nothing. */
void sasp_pool_run_claimed(sasp_pool *pool, sasp_pool_fn fn, void *arg);
/* How many times a worker was let off a run so far (for tests and benchmarks). */
long sasp_pool_let_off(const sasp_pool *pool);
void sasp_pool_free(sasp_pool *pool);

/* The contiguous share [*lo, *hi) of n items that thread ith of nth takes. */
void sasp_split(int n, int ith, int nth, int *lo, int *hi);

#endif
