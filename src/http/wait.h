/* wait.h: connections waiting on the engine (wait.c). libmicrohttpd's threads serve every connection
 * and none of them may block on a job: a stream whose next event is not there yet, and a non-streamed
 * answer until its job ends, suspend their connection, and one thread resumes it when there is
 * something to do. */
#ifndef SASP_HTTP_WAIT_H
#define SASP_HTTP_WAIT_H

#include <microhttpd.h>
#include "http/conn.h"

/* wait_suspend suspends k->mc (call it from the access handler or the content reader only) until k's
 * job has an event (k->wait.have_ev) or has ended (k->wait.end), or the client left (k->wait.gone); -1,
 * not suspended, once the server stops. wait_resume_all resumes every suspended connection
 * (k->wait.gone set) before the daemon stops. */
int wait_start(void);
int wait_suspend(conn *k);
void wait_resume_all(void);
void wait_stop(void);

/* Suspend k until its job k->run.job has ended: the waiter hands every event to k->wait.take, and the
 * access handler calls k->wait.resume when it resumed k. The first time (an answer that stops the server's exit
 * until it is sent, counted in wait_open_answers), and again after a resume that came early. */
enum MHD_Result wait_suspend_whole(struct MHD_Connection *c, conn *k);
enum MHD_Result wait_resuspend_whole(conn *k);

/* Suspend k, which has no job, until ready(on) is nonzero (looked at every 2 ms: a model that loads,
 * server/models.c), its client left (k->wait.gone) or the server stops (gone too); then the access
 * handler calls resume, as for a whole answer. Counted in wait_open_answers while it waits. */
enum MHD_Result wait_suspend_until(struct MHD_Connection *c, conn *k, int (*ready)(const void *on), const void *on,
                                   conn_resume_fn resume);

/* The answers a graceful stop waits for: streams and suspended non-streamed answers (add 1 when one
 * starts, -1 when it ends), and how many are open now. */
void wait_count_answer(int delta);
int wait_open_answers(void);

#endif
