/* wait.c: connections suspended while their job waits on the engine (wait.h). libmicrohttpd
 * runs a few epoll threads for every connection; none of them may block on a job. A stream whose next
 * event is not there yet, and a non-streamed answer until its job ends, suspend their connection
 * (MHD_suspend_connection) and join a list that one thread watches: it takes the jobs' events (for a
 * stream, one, handed to its content reader; for a whole answer, all of them, to its take), looks
 * every 50 ms whether the client left, and resumes the connection when there is something to do. It
 * waits on the job most likely to run, then polls every job without waiting (wait_main): a suspended
 * stream costs no thread, and a round of the thread follows each engine step. A request may also wait
 * without a job, until something else is ready (a model loading: wait_suspend_until). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "http/reply.h"
#include "http/wait.h"

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    conn *list;
    int quit, stopping, started;
    int fresh; /* a request was suspended since the thread last waited */
    pthread_t thread;
} w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static atomic_int g_open_streams; /* the answers a graceful stop waits for (wait_count_answer) */

/* What sasp_job_next returned for k (r, and ev when r is 1) into k: a stream keeps the event for its
 * reader, a whole answer hands it to its take. Whether k should resume for it. */
static int take(conn *k, int r, sasp_event *ev)
{
    if (r < 0) return k->wait.end = 1;
    if (r == 0) return 0;
    k->wait.got = 1;
    if (!k->wait.whole) {
        k->wait.ev = *ev;
        return k->wait.have_ev = 1;
    }
    k->wait.take(k, ev);
    return 0;
}

/* Under w.mu: whether k's connection should resume now, after taking what its job has (without
 * waiting) and, every 50 ms, looking whether its client left. */
static int wake_due(conn *k, int64_t now)
{
    sasp_event ev;
    if (k->wait.ready) { /* no job: waits until what it waits on is ready */
        if (k->wait.ready(k->wait.on)) return 1;
    } else if (k->wait.end || k->wait.have_ev) {
        return 1;
    }
    for (; !k->wait.ready;) {
        int r = sasp_job_next(k->run.job, &ev, 0);
        if (take(k, r, &ev)) return 1;
        if (r == 0) break;
    }
    if (now - k->wait.checked < 50000000) return 0;
    k->wait.checked = now;
    if (!conn_client_gone(k->mc)) return 0;
    k->wait.gone = 1;
    if (k->run.job) sasp_job_cancel(k->run.job);
    return 1;
}

/* The thread. Each round waits (up to 5 ms) for the next event of the most recently suspended request
 * whose job has sent one already, as it runs (streams suspend again as soon as they have sent what
 * they had, to the head of the list); when it comes, an engine step has just posted to every running
 * job, and every suspended request is looked at. Without one, they are all looked at every 25 ms (a
 * job on another model's scheduler, a client that left), and every 2 ms while no job has sent an event
 * yet (all of them waiting for their first token) or a request has just been suspended. */
static void *wait_main(void *arg)
{
    (void)arg;
    int64_t last_full = 0;
    pthread_mutex_lock(&w.mu);
    while (!w.quit) {
        if (!w.list) {
            pthread_cond_wait(&w.cv, &w.mu);
            continue;
        }
        conn *head = NULL; /* the job to wait on: one that has sent an event, else any */
        for (conn *k = w.list; k; k = k->wait.next)
            if (!k->wait.ready && (!head || k->wait.got)) {
                head = k;
                if (k->wait.got) break;
            }
        int full = 1;
        if (!head && !w.stopping) { /* only requests without a job (a model loading): look every 2 ms */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 2000000;
            if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&w.cv, &w.mu, &until);
        } else if (!w.stopping && !head->wait.end && !head->wait.have_ev) {
            w.fresh = 0;
            pthread_mutex_unlock(&w.mu); /* head stays suspended: only this thread resumes it */
            sasp_event ev;
            int r = sasp_job_next(head->run.job, &ev, head->wait.got ? 5 : 2);
            pthread_mutex_lock(&w.mu);
            take(head, r, &ev);
            full = r != 0 || !head->wait.got || w.fresh || sasp_now_ns() - last_full >= 25000000;
        }
        if (!full) continue;
        int64_t now = last_full = sasp_now_ns();
        for (conn **pp = &w.list; *pp;) {
            conn *k = *pp;
            if (!w.stopping && !wake_due(k, now)) {
                pp = &k->wait.next;
                continue;
            }
            if (w.stopping) k->wait.gone = 1;
            *pp = k->wait.next;
            k->wait.next = NULL;
            if (k->wait.ready) { /* the access handler calls its resume */
                k->wait.ready = NULL;
                k->wait.after_ready = 1;
            }
            MHD_resume_connection(k->mc);
        }
    }
    pthread_mutex_unlock(&w.mu);
    return NULL;
}

int wait_start(void)
{
    if (pthread_create(&w.thread, NULL, wait_main, NULL) != 0) {
        fprintf(stderr, "sasp-server: cannot start the thread of suspended connections\n");
        return -1;
    }
    w.started = 1;
    return 0;
}

int wait_suspend(conn *k)
{
    pthread_mutex_lock(&w.mu);
    if (w.stopping) {
        pthread_mutex_unlock(&w.mu);
        return -1;
    }
    MHD_suspend_connection(k->mc); /* first: the thread resumes only what is suspended */
    k->wait.checked = sasp_now_ns();
    k->wait.next = w.list;
    w.list = k;
    w.fresh = 1;
    pthread_cond_signal(&w.cv);
    pthread_mutex_unlock(&w.mu);
    return 0;
}

void wait_resume_all(void)
{
    pthread_mutex_lock(&w.mu);
    w.stopping = 1;
    pthread_cond_signal(&w.cv);
    pthread_mutex_unlock(&w.mu);
    for (int i = 0; i < 200; i++) { /* the thread resumes them; wait until the list is empty */
        pthread_mutex_lock(&w.mu);
        int empty = !w.list;
        pthread_mutex_unlock(&w.mu);
        if (empty) break;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
}

void wait_stop(void)
{
    if (!w.started) return;
    wait_resume_all();
    pthread_mutex_lock(&w.mu);
    w.quit = 1;
    pthread_cond_signal(&w.cv);
    pthread_mutex_unlock(&w.mu);
    pthread_join(w.thread, NULL);
    w.started = 0;
}

enum MHD_Result wait_suspend_whole(struct MHD_Connection *c, conn *k)
{
    k->mc = c;
    if (!k->wait.whole) atomic_fetch_add(&g_open_streams, 1);
    k->wait.whole = 1;
    if (wait_suspend(k) != 0) {
        sasp_job_cancel(k->run.job);
        return reply_errorf(c, k, 503, "unavailable_error", NULL, "%s", "the server is shutting down");
    }
    return MHD_YES;
}

enum MHD_Result wait_suspend_until(struct MHD_Connection *c, conn *k, int (*ready)(const void *on), const void *on,
                                   conn_resume_fn resume)
{
    k->mc = c;
    k->wait.ready = ready;
    k->wait.on = on;
    k->wait.resume = resume;
    if (wait_suspend(k) != 0) {
        k->wait.ready = NULL;
        return reply_errorf(c, k, 503, "unavailable_error", NULL, "%s", "the server is shutting down");
    }
    atomic_fetch_add(&g_open_streams, 1); /* until the access handler resumes it (listen.c) */
    return MHD_YES;
}

enum MHD_Result wait_resuspend_whole(conn *k) { return wait_suspend(k) == 0 ? MHD_YES : MHD_NO; }

void wait_count_answer(int delta) { atomic_fetch_add(&g_open_streams, delta); }
int wait_open_answers(void) { return atomic_load(&g_open_streams); }
