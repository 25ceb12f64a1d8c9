/* check_scheduler.c: the engine loop of sasp-server through its C interface (scheduler.h), on the
 * tiny model of tests/fixtures/tiny-model: admission into the slots and the stats that report it,
 * chunked prefill interleaved with decoding (both progress in the same steps, and give what each gives
 * alone), cancellation while queued, during prefill and while generating, the queue limit (-1, which
 * the server answers 429) and jobs that can never fit (-3), shutdown (-2), batching invariance (a
 * request gives the same tokens and logprobs, bit for bit, alone or with 7 others), stop strings (across token boundaries, never
 * sent), max_tokens, a full context and the end-of-text token with their finish reasons, and prompt
 * scoring across prompt chunks. Sampling uses fixed seeds, so every run is the same; step delays
 * slow the engine where a test must see a stage. The tiny model's weights are random: greedy decoding
 * repeats the last prompt token, so most tests sample (temperature 1, no truncation). Then the
 * per-sequence constraints (token healing, against the joint tokenisation, also with the shipped model;
 * a JSON schema; logit biases), scoring a prompt without generating, embeddings (pooled hidden states against one forward pass), and two models on one engine.
 * Last the prompt cache: a reused or copied prefix against one prefill (logits, and greedy runs with
 * their logprobs, bit for bit), slot choice, two requests sharing a prefix at once, the host
 * cache of evicted prefixes, the cache off; n_indent, t_max_predict_ms and the end causes. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model.h"
#include "engine/prompt_cache.h"
#include "engine/scheduler.h"
#include "text/tokenizer.h"
#include "base/util.h"

#ifndef SASP_SRCDIR
#define SASP_SRCDIR "."
#endif

static sasp_model *model;
static sasp_tokenizer *tok;

/* The source tree: $SASP_SRCDIR, else the one this test was built from. */
static const char *srcdir(void)
{
    const char *src = getenv("SASP_SRCDIR");
    return src && *src ? src : SASP_SRCDIR;
}

/* The tiny model, its forward pass on `threads` threads. */
static sasp_model *load_tiny(int threads)
{
    char dir[4096], err[512];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/tiny-model", srcdir());
    sasp_model *m = sasp_model_load(dir, threads, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    return m;
}

static void setup(void)
{
    char path[4200], err[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/tiny-model/tokenizer.json", srcdir());
    model = load_tiny(1);
    tok = sasp_tokenizer_load(path, err, sizeof err);
    ck_assert_msg(tok != NULL, "%s", err);
}

static void teardown(void)
{
    sasp_tokenizer_free(tok);
    sasp_model_free(model);
}

/* --- helpers --- */

static sasp_sched *new_sched(int slots, int n_ctx, int max_queue, int chunk)
{
    char err[256];
    sasp_sched *s = sasp_sched_new(model, tok, slots, n_ctx, max_queue, chunk, err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    return s;
}

/* Sampling from the model's own distribution (temperature 1, no truncation) with a fixed seed. */
static sasp_gen_params sampled(int max_tokens, uint64_t seed)
{
    sasp_gen_params g;
    memset(&g, 0, sizeof g);
    sasp_sampling_defaults(&g.sampling);
    g.sampling.temperature = 1.0f;
    g.sampling.top_k = 0;
    g.sampling.top_p = 1.0f;
    g.sampling.min_p = 0.0f;
    g.sampling.seed = seed;
    g.max_tokens = max_tokens;
    g.ignore_eos = 1;
    return g;
}

/* n token ids, a different prompt for each salt (no end-of-text token). */
static void make_prompt(int *ids, int n, int salt)
{
    for (int i = 0; i < n; i++) ids[i] = 1 + (i * 37 + salt * 101) % 500;
}

static sasp_job *job1(const int *prompt, int n, const sasp_gen_params *g)
{
    sasp_job *job = sasp_job_new(1);
    ck_assert_ptr_nonnull(job);
    ck_assert_int_eq(sasp_job_set(job, 0, prompt, n, g), 0);
    return job;
}

static void submit(sasp_sched *s, sasp_job *job) { ck_assert_int_eq(sasp_sched_submit(s, job), 0); }

/* Everything one sequence delivered. */
typedef struct result {
    int ids[512];
    int n_ids;
    char text[8192];
    size_t len;
    int n_done;
    const char *finish;
    int error, prompt_tokens, completion_tokens;
    int n_prompt_events, n_prompt_info;
    float prompt_logprob[256];
    int end, cached_tokens, slot; /* of the last event */
    char stop_word[64];
    float logprob[64];                           /* with logprobs: of the first 64 tokens, the chosen one's */
    sasp_logprob top[64][SASP_MAX_TOP_LOGPROBS]; /* and the alternatives */
    int n_top;
} result;

static void add_event(result *r, const sasp_event *ev)
{
    ck_assert_msg(r->n_done == 0, "an event after the last one of its sequence");
    if (ev->prompt_info) {
        ck_assert_int_eq(r->n_ids, 0); /* the scored prompt comes before every generated token */
        r->n_prompt_events++;
        r->n_prompt_info = ev->n_ids - 1;
        for (int k = 0; k < ev->n_ids - 1 && k < 256; k++) r->prompt_logprob[k] = ev->prompt_info[k].logprob;
        return;
    }
    ck_assert_int_le(r->n_ids + ev->n_ids, 512);
    for (int k = 0; ev->info && k < ev->n_ids && r->n_ids + k < 64; k++) {
        r->logprob[r->n_ids + k] = ev->info[k].logprob;
        r->n_top = ev->info[k].n_top;
        memcpy(r->top[r->n_ids + k], ev->info[k].top, (size_t)r->n_top * sizeof *r->top[0]);
    }
    if (ev->n_ids) memcpy(r->ids + r->n_ids, ev->ids, (size_t)ev->n_ids * sizeof *ev->ids);
    r->n_ids += ev->n_ids;
    ck_assert_uint_lt(r->len + ev->len, sizeof r->text);
    if (ev->len) memcpy(r->text + r->len, ev->text, ev->len);
    r->len += ev->len;
    r->text[r->len] = 0;
    if (ev->done) {
        r->n_done++;
        r->finish = ev->finish_reason;
        r->error = ev->error;
        r->prompt_tokens = ev->prompt_tokens;
        r->completion_tokens = ev->completion_tokens;
        r->end = ev->end;
        r->cached_tokens = ev->cached_tokens;
        r->slot = ev->slot;
        snprintf(r->stop_word, sizeof r->stop_word, "%s", ev->stop_word ? ev->stop_word : "");
    }
}

/* Read job's events until every sequence has ended (each exactly once, last), into res[0..n_seq). */
static void collect(sasp_job *job, result *res, int n_seq)
{
    memset(res, 0, (size_t)n_seq * sizeof *res);
    int64_t until = sasp_now_ns() + 30 * 1000000000LL;
    sasp_event ev;
    int got;
    while ((got = sasp_job_next(job, &ev, 100)) >= 0) {
        ck_assert_msg(sasp_now_ns() < until, "the job did not end");
        if (got == 0) continue;
        ck_assert(ev.index >= 0 && ev.index < n_seq);
        add_event(&res[ev.index], &ev);
        sasp_event_clear(&ev);
    }
    for (int i = 0; i < n_seq; i++) ck_assert_int_eq(res[i].n_done, 1);
}

/* One request on a fresh scheduler of its own: what it gives alone. */
static void run_alone(int slots, int n_ctx, int chunk, const int *prompt, int n, const sasp_gen_params *g,
                      result *out)
{
    sasp_sched *s = new_sched(slots, n_ctx, 4, chunk);
    sasp_job *job = job1(prompt, n, g);
    submit(s, job);
    collect(job, out, 1);
    sasp_job_release(job);
    sasp_sched_free(s);
}

/* The same tokens, text and finish, and the same logprobs (chosen, alternatives, the scored prompt's)
 * bit for bit: the forward pass is batch-invariant (simd/kernels.h), so what else ran in a step, how
 * the prompt was cut into chunks or whether it came from the cache changes nothing. */
static void same_result(const result *a, const result *b, const char *what)
{
    ck_assert_msg(a->n_ids == b->n_ids, "%s: %d tokens against %d", what, a->n_ids, b->n_ids);
    ck_assert_msg(!memcmp(a->ids, b->ids, (size_t)a->n_ids * sizeof *a->ids), "%s: other tokens", what);
    ck_assert_msg(a->len == b->len && !memcmp(a->text, b->text, a->len), "%s: other text", what);
    ck_assert_str_eq(a->finish, b->finish);
    int n = a->n_ids < 64 ? a->n_ids : 64;
    for (int t = 0; t < n; t++)
        ck_assert_msg(!memcmp(&a->logprob[t], &b->logprob[t], sizeof(float)), "%s: token %d logprob %.9g against %.9g",
                      what, t, a->logprob[t], b->logprob[t]);
    ck_assert_int_eq(a->n_top, b->n_top);
    for (int t = 0; t < n; t++)
        ck_assert_msg(!memcmp(a->top[t], b->top[t], (size_t)a->n_top * sizeof a->top[t][0]),
                      "%s: token %d, other alternatives or logprobs", what, t);
    ck_assert_int_eq(a->n_prompt_info, b->n_prompt_info);
    int np = a->n_prompt_info < 256 ? a->n_prompt_info : 256;
    ck_assert_msg(!memcmp(a->prompt_logprob, b->prompt_logprob, (size_t)np * sizeof(float)),
                  "%s: the scored prompt's logprobs differ", what);
}

static sasp_sched_stats stats(sasp_sched *s)
{
    sasp_sched_stats st;
    sasp_sched_get_stats(s, &st);
    return st;
}

static sasp_slot_info slot(sasp_sched *s, int i)
{
    sasp_slot_info info[16];
    ck_assert_int_le(sasp_sched_slots(s, info, 16), 16);
    return info[i];
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Poll cond (every 200 us, for at most 20 s). */
#define WAIT_FOR(cond)                                                                \
    do {                                                                              \
        int64_t until_ = sasp_now_ns() + 20 * 1000000000LL;                           \
        while (!(cond)) {                                                             \
            ck_assert_msg(sasp_now_ns() < until_, "timed out waiting for %s", #cond); \
            sleep_us(200);                                                            \
        }                                                                             \
    } while (0)

static int all_idle(sasp_sched *s, int n_slots)
{
    for (int i = 0; i < n_slots; i++)
        if (strcmp(slot(s, i).state, "idle")) return 0;
    return 1;
}

/* --- admission --- */

START_TEST(test_admission)
{
    sasp_sched *s = new_sched(2, 0, 8, 64);
    sasp_sched_set_step_delay(s, 3);
    ck_assert_int_eq(stats(s).n_slots, 2);
    int prompt[3][6];
    sasp_job *jobs[3];
    for (int i = 0; i < 3; i++) {
        make_prompt(prompt[i], 6, i);
        sasp_gen_params g = sampled(30, 10 + (uint64_t)i);
        jobs[i] = job1(prompt[i], 6, &g);
        submit(s, jobs[i]);
    }
    /* two run at once, the third waits; never more than the slots */
    WAIT_FOR(stats(s).active == 2 && stats(s).queued == 1);
    /* the slot table is a snapshot taken after each step: it follows within one */
    WAIT_FOR(strcmp(slot(s, 0).state, "idle") && strcmp(slot(s, 1).state, "idle"));
    ck_assert_int_eq(slot(s, 0).n_prompt, 6);
    ck_assert_int_eq(slot(s, 1).n_prompt, 6);
    result res[3];
    for (int i = 0; i < 3; i++) {
        sasp_sched_stats st = stats(s);
        ck_assert_int_le(st.active, 2);
        collect(jobs[i], &res[i], 1);
        ck_assert_str_eq(res[i].finish, "length");
        ck_assert_int_eq(res[i].completion_tokens, 30);
        ck_assert_int_eq(res[i].prompt_tokens, 6);
        ck_assert_int_eq(res[i].n_ids, 30);
        sasp_job_release(jobs[i]);
    }
    WAIT_FOR(all_idle(s, 2));
    sasp_sched_stats st = stats(s);
    ck_assert_int_eq(st.active, 0);
    ck_assert_int_eq(st.queued, 0);
    ck_assert_uint_eq(st.sequences_done, 3);
    ck_assert_uint_eq(st.generated_tokens, 90);
    ck_assert_uint_eq(st.prompt_tokens, 18);
    ck_assert_uint_eq(st.cancelled, 0);
    ck_assert_uint_eq(st.ttft.n, 3);           /* one first token per sequence */
    ck_assert_uint_eq(st.token_latency.n, 87); /* and the gaps between the others */
    ck_assert_uint_ge(st.steps, 60);           /* 30 steps each; the third starts once a slot frees */
    sasp_sched_free(s);
}
END_TEST

/* A job of several sequences takes one slot each. */
START_TEST(test_admission_multi_sequence_job)
{
    sasp_sched *s = new_sched(3, 0, 8, 64);
    sasp_sched_set_step_delay(s, 3);
    int prompt[4];
    make_prompt(prompt, 4, 7);
    sasp_job *job = sasp_job_new(3);
    for (int i = 0; i < 3; i++) {
        sasp_gen_params g = sampled(20, 100 + (uint64_t)i);
        ck_assert_int_eq(sasp_job_set(job, i, prompt, 4, &g), 0);
    }
    submit(s, job);
    WAIT_FOR(stats(s).active == 3);
    ck_assert_int_eq(stats(s).queued, 0);
    result res[3];
    collect(job, res, 3);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(res[i].completion_tokens, 20);
    /* each sequence has its own seed: same prompt, other tokens */
    ck_assert(memcmp(res[0].ids, res[1].ids, sizeof res[0].ids[0] * 20) != 0);
    sasp_job_release(job);
    sasp_sched_free(s);
}
END_TEST

/* --- chunked prefill interleaved with decoding --- */

START_TEST(test_chunked_prefill_interleaves_with_decode)
{
    enum { CHUNK = 8,
           LONG = 96 };
    int pa[4], pb[LONG];
    make_prompt(pa, 4, 1);
    make_prompt(pb, LONG, 2);
    sasp_gen_params ga = sampled(80, 5), gb = sampled(10, 6);

    sasp_sched *s = new_sched(2, 0, 4, CHUNK);
    sasp_sched_set_step_delay(s, 10); /* ms: the watcher below must see most steps, on a loaded machine too */
    sasp_job *a = job1(pa, 4, &ga), *b = job1(pb, LONG, &gb);
    submit(s, a);
    WAIT_FOR(!strcmp(slot(s, 0).state, "generating"));
    submit(s, b);
    /* watch the slots while b reads its prompt: every snapshot is taken after a step */
    int seen = 0, last_past = -1, last_gen = -1, both_moved = 0;
    int64_t until = sasp_now_ns() + 20 * 1000000000LL;
    for (;;) {
        ck_assert(sasp_now_ns() < until);
        sasp_slot_info ia = slot(s, 0), ib = slot(s, 1);
        if (!strcmp(ib.state, "generating") || (!strcmp(ib.state, "idle") && seen)) break;
        if (!strcmp(ib.state, "prefill") && ib.n_past != last_past) {
            ck_assert_str_eq(ia.state, "generating"); /* a decodes meanwhile */
            ck_assert_int_eq(ib.n_past % CHUNK, 0);   /* b feeds whole chunks */
            ck_assert_int_lt(ib.n_past, LONG);
            if (last_past >= 0 && ia.n_generated > last_gen) both_moved++;
            last_past = ib.n_past;
            last_gen = ia.n_generated;
            seen++;
        }
        sleep_us(100);
    }
    ck_assert_msg(seen >= 3, "saw b prefilling in only %d steps", seen);
    ck_assert_msg(both_moved >= 2, "a did not decode while b prefilled (%d)", both_moved);

    result ra, rb;
    collect(a, &ra, 1);
    collect(b, &rb, 1);
    ck_assert_int_eq(rb.prompt_tokens, LONG);
    ck_assert_uint_eq(stats(s).prompt_tokens, 4 + LONG);
    sasp_job_release(a);
    sasp_job_release(b);
    sasp_sched_free(s);

    /* the same as each alone */
    result aa, ab;
    run_alone(2, 0, CHUNK, pa, 4, &ga, &aa);
    run_alone(2, 0, CHUNK, pb, LONG, &gb, &ab);
    same_result(&ra, &aa, "decoding next to a prefill");
    same_result(&rb, &ab, "prefilling next to a decode");
    /* and the chunk size does not matter either */
    run_alone(2, 0, 128, pb, LONG, &gb, &ab);
    same_result(&rb, &ab, "one chunk against twelve");
}
END_TEST

/* --- cancellation --- */

START_TEST(test_cancel_queued)
{
    sasp_sched *s = new_sched(1, 0, 4, 64);
    sasp_sched_set_step_delay(s, 3);
    int p[5];
    make_prompt(p, 5, 3);
    sasp_gen_params g = sampled(200, 1);
    sasp_job *running = job1(p, 5, &g), *waiting = job1(p, 5, &g);
    submit(s, running);
    submit(s, waiting);
    WAIT_FOR(!strcmp(slot(s, 0).state, "generating") && stats(s).queued == 1);
    sasp_job_cancel(waiting);
    result r;
    collect(waiting, &r, 1);
    ck_assert_str_eq(r.finish, "stop");
    ck_assert_int_eq(r.completion_tokens, 0);
    ck_assert_int_eq(r.n_ids, 0);
    ck_assert_uint_eq(r.len, 0);
    WAIT_FOR(stats(s).sequences_done == 1); /* counted just after its last event is posted */
    sasp_sched_stats st = stats(s);
    ck_assert_int_eq(st.queued, 0);
    ck_assert_int_eq(st.active, 1); /* the other one runs on */
    ck_assert_uint_eq(st.cancelled, 1);
    ck_assert_uint_eq(st.sequences_done, 1);
    sasp_job_cancel(running);
    collect(running, &r, 1);
    ck_assert_int_lt(r.completion_tokens, 200);
    sasp_job_release(running);
    sasp_job_release(waiting);
    sasp_sched_free(s);
}
END_TEST

START_TEST(test_cancel_during_prefill)
{
    enum { LONG = 200 };
    sasp_sched *s = new_sched(1, 0, 4, 4); /* 50 steps of prompt */
    sasp_sched_set_step_delay(s, 3);
    int p[LONG];
    make_prompt(p, LONG, 4);
    sasp_gen_params g = sampled(10, 1);
    sasp_job *job = job1(p, LONG, &g);
    submit(s, job);
    WAIT_FOR(!strcmp(slot(s, 0).state, "prefill") && slot(s, 0).n_past >= 8);
    sasp_job_cancel(job);
    result r;
    collect(job, &r, 1);
    ck_assert_str_eq(r.finish, "stop");
    ck_assert_int_eq(r.completion_tokens, 0);
    ck_assert_int_eq(r.n_ids, 0);
    WAIT_FOR(all_idle(s, 1));
    sasp_sched_stats st = stats(s);
    ck_assert_int_eq(st.active, 0);
    ck_assert_uint_eq(st.cancelled, 1);
    ck_assert_uint_lt(st.prompt_tokens, LONG); /* the prompt was not read to its end */
    ck_assert_uint_eq(st.generated_tokens, 0);
    sasp_job_release(job);
    sasp_sched_free(s);
}
END_TEST

START_TEST(test_cancel_while_generating)
{
    sasp_sched *s = new_sched(1, 0, 4, 64);
    sasp_sched_set_step_delay(s, 3);
    int p[5];
    make_prompt(p, 5, 5);
    sasp_gen_params g = sampled(200, 2);
    sasp_job *job = job1(p, 5, &g);
    submit(s, job);
    WAIT_FOR(slot(s, 0).n_generated >= 3);
    sasp_job_cancel(job);
    result r;
    collect(job, &r, 1);
    ck_assert_str_eq(r.finish, "stop");
    ck_assert_int_ge(r.completion_tokens, 3);
    ck_assert_int_lt(r.completion_tokens, 200);
    WAIT_FOR(all_idle(s, 1));
    ck_assert_uint_eq(stats(s).cancelled, 1);
    ck_assert_int_eq(stats(s).active, 0);
    sasp_job_release(job);
    /* the slot is free for the next one, which runs to its end */
    sasp_gen_params g2 = sampled(5, 3);
    job = job1(p, 5, &g2);
    submit(s, job);
    collect(job, &r, 1);
    ck_assert_str_eq(r.finish, "length");
    ck_assert_int_eq(r.completion_tokens, 5);
    sasp_job_release(job);
    sasp_sched_free(s);
}
END_TEST

/* --- the queue and its limit --- */

START_TEST(test_queue_limit)
{
    sasp_sched *s = new_sched(1, 0, 2, 64); /* 1 slot + 2 queue places */
    sasp_sched_set_step_delay(s, 5);
    int p[3];
    make_prompt(p, 3, 6);
    sasp_gen_params g = sampled(250, 4);
    sasp_job *jobs[3];
    for (int i = 0; i < 3; i++) {
        jobs[i] = job1(p, 3, &g);
        submit(s, jobs[i]);
    }
    sasp_job *extra = job1(p, 3, &g);
    ck_assert_int_eq(sasp_sched_submit(s, extra), -1); /* full: the server answers 429 */
    sasp_job *big = sasp_job_new(4), *three = sasp_job_new(3);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(sasp_job_set(big, i, p, 3, &g), 0);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(sasp_job_set(three, i, p, 3, &g), 0);
    ck_assert_int_eq(sasp_sched_submit(s, big), -3);   /* more than slots + queue: never */
    ck_assert_int_eq(sasp_sched_submit(s, three), -1); /* would fit an idle server */
    WAIT_FOR(stats(s).active == 1);
    ck_assert_int_eq(stats(s).queued, 2);

    /* one ends: one place frees */
    sasp_job_cancel(jobs[0]);
    result r;
    collect(jobs[0], &r, 1);
    WAIT_FOR(stats(s).active + stats(s).queued == 2);
    ck_assert_int_eq(sasp_sched_submit(s, extra), 0);
    ck_assert_int_eq(sasp_sched_submit(s, three), -1);

    /* shutdown ends everything open, queued or running, and refuses new jobs */
    sasp_sched_shutdown(s);
    ck_assert_int_eq(sasp_sched_submit(s, three), -2);
    for (int i = 1; i < 3; i++) {
        collect(jobs[i], &r, 1);
        ck_assert_str_eq(r.finish, "stop");
        ck_assert_int_eq(r.error, 0);
    }
    collect(extra, &r, 1);
    ck_assert_str_eq(r.finish, "stop");
    for (int i = 0; i < 3; i++) sasp_job_release(jobs[i]);
    sasp_job_release(extra);
    sasp_job_release(big);
    sasp_job_release(three);
    sasp_sched_free(s);

    /* an idle scheduler takes a job that fills its slot and its queue */
    s = new_sched(1, 0, 2, 64);
    three = sasp_job_new(3);
    g.max_tokens = 3;
    for (int i = 0; i < 3; i++) ck_assert_int_eq(sasp_job_set(three, i, p, 3, &g), 0);
    submit(s, three);
    result rs[3];
    collect(three, rs, 3);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(rs[i].completion_tokens, 3);
    sasp_job_release(three);
    sasp_sched_free(s);
}
END_TEST

/* --- batching invariance --- */

/* The request g on prompt p run beside 7 others (other prompts, seeds and lengths), on the model
 * `model` is now: its result in *out. */
static void run_with_seven(const int *p, int n, const sasp_gen_params *g, result *out)
{
    sasp_sched *s = new_sched(8, 0, 8, 128);
    int others[7][40];
    sasp_job *jobs[8];
    for (int i = 0; i < 8; i++) {
        if (i == 3) {
            jobs[i] = job1(p, n, g);
        } else { /* other prompts, lengths, seeds and lengths of answer */
            int k = i < 3 ? i : i - 1, len = 5 + 5 * k;
            make_prompt(others[k], len, 20 + k);
            sasp_gen_params go = sampled(10 + 4 * k, 50 + (uint64_t)k);
            jobs[i] = job1(others[k], len, &go);
        }
        submit(s, jobs[i]);
    }
    result res[8];
    for (int i = 0; i < 8; i++) collect(jobs[i], &res[i], 1);
    *out = res[3];
    for (int i = 0; i < 8; i++) sasp_job_release(jobs[i]);
    sasp_sched_free(s);
}

START_TEST(test_batching_invariance)
{
    int p[12];
    make_prompt(p, 12, 8);
    sasp_gen_params g = sampled(24, 1234);
    g.logprobs = 1; /* compared bit for bit too */
    g.top_logprobs = 5;
    g.sampling.temperature = 0.8f; /* the server's defaults, and a seed */
    g.sampling.top_k = 40;
    g.sampling.top_p = 0.95f;
    g.sampling.min_p = 0.05f;
    result alone, batched;
    run_alone(8, 0, 128, p, 12, &g, &alone);
    ck_assert_int_eq(alone.n_ids, 24);
    run_with_seven(p, 12, &g, &batched);
    same_result(&batched, &alone, "batched with 7 others");
    /* again with the forward pass on three threads, where the eight draw side by side on them */
    sasp_model *one = model;
    model = load_tiny(3);
    run_with_seven(p, 12, &g, &batched);
    sasp_model_free(model);
    model = one;
    same_result(&batched, &alone, "batched with 7 others, 3 threads");
}
END_TEST

/* --- stop strings, max_tokens, the context, end of text --- */

/* The decoded text's length after each token, as the scheduler streams it; returns the length once
 * the decoder is flushed at the end. */
static size_t text_offsets(const result *r, size_t *off)
{
    sasp_utf8_stream st;
    sasp_stream_init(&st);
    size_t len = 0;
    char buf[4096];
    for (int k = 0; k < r->n_ids; k++) {
        size_t nb = 0;
        const char *b = sasp_token_bytes(tok, r->ids[k], &nb);
        ck_assert_uint_le(3 * nb + 8, sizeof buf);
        if (b && nb && !sasp_tokenizer_is_special(tok, r->ids[k])) len += sasp_stream_push(&st, b, nb, buf, sizeof buf);
        off[k] = len;
    }
    return len + sasp_stream_finish(&st, buf, sizeof buf);
}

static int printable(char c) { return c > ' ' && c < 0x7f; }

START_TEST(test_stop_strings)
{
    int p[6];
    make_prompt(p, 6, 9);
    sasp_gen_params g = sampled(60, 77);
    result full;
    run_alone(1, 0, 64, p, 6, &g, &full);
    ck_assert_str_eq(full.finish, "length");

    /* a two-byte stop string across a token boundary, well into the text */
    size_t off[512];
    ck_assert_uint_eq(text_offsets(&full, off), full.len);
    int at = -1;
    for (int k = 8; k < full.n_ids - 1 && at < 0; k++)
        if (off[k] > off[k - 1] && off[k] < full.len && printable(full.text[off[k] - 1]) &&
            printable(full.text[off[k]]))
            at = k;
    ck_assert_msg(at >= 0, "no printable token boundary in: %s", full.text);
    char stop[3] = {full.text[off[at] - 1], full.text[off[at]], 0};
    size_t expect = (size_t)((const char *)memmem(full.text, full.len, stop, 2) - full.text);

    sasp_gen_params gs = g;
    char other[] = "\x01never";
    gs.stop[0] = other;
    gs.stop[1] = stop;
    gs.n_stop = 2;
    result r;
    run_alone(1, 0, 64, p, 6, &gs, &r);
    ck_assert_str_eq(r.finish, "stop");
    ck_assert_uint_eq(r.len, expect); /* the text before the stop string, which is not sent */
    ck_assert(!memcmp(r.text, full.text, expect));
    /* the tokens up to the one that completed it, counted */
    ck_assert_int_eq(r.completion_tokens, r.n_ids);
    ck_assert(!memcmp(r.ids, full.ids, (size_t)r.n_ids * sizeof *r.ids));
    ck_assert_uint_ge(off[r.n_ids - 1], expect + 2);
    ck_assert(r.n_ids == 1 || off[r.n_ids - 2] < expect + 2);

    /* stop strings that never match change nothing */
    gs.n_stop = 1;
    run_alone(1, 0, 64, p, 6, &gs, &r);
    same_result(&r, &full, "an unmatched stop string");
}
END_TEST

START_TEST(test_length_and_finish_reasons)
{
    int p[30];
    make_prompt(p, 30, 10);
    /* max_tokens: exactly that many, the first of a longer run's */
    sasp_gen_params g = sampled(40, 9);
    result full, r;
    run_alone(1, 0, 64, p, 6, &g, &full);
    g.max_tokens = 7;
    run_alone(1, 0, 64, p, 6, &g, &r);
    ck_assert_str_eq(r.finish, "length");
    ck_assert_int_eq(r.completion_tokens, 7);
    ck_assert_int_eq(r.n_ids, 7);
    ck_assert(!memcmp(r.ids, full.ids, 7 * sizeof *r.ids));
    ck_assert_int_eq(r.error, 0);

    /* a full context: a 32-position cache and a 29-token prompt leave room for 3 more tokens fed,
     * and the last one sampled is never fed */
    g.max_tokens = 100;
    run_alone(1, 32, 64, p, 29, &g, &r);
    ck_assert_str_eq(r.finish, "length");
    ck_assert_int_eq(r.completion_tokens, 32 - 29 + 1);

    /* the end-of-text token (greedy decoding of this model repeats a prompt's last token) */
    int q[4] = {17, 42, 99, model->cfg.eos_token_id};
    sasp_gen_params ge = sampled(10, 1);
    ge.sampling.temperature = 0;
    run_alone(1, 0, 64, q, 4, &ge, &full);
    int first = -1;
    for (int k = 0; k < full.n_ids && first < 0; k++)
        if (full.ids[k] == model->cfg.eos_token_id) first = k;
    ck_assert_msg(first >= 0, "the fixture's greedy answer has no end-of-text token");
    ge.ignore_eos = 0;
    run_alone(1, 0, 64, q, 4, &ge, &r);
    ck_assert_str_eq(r.finish, "stop");
    ck_assert_int_eq(r.completion_tokens, first + 1); /* the end-of-text token counts, has no text */
    ck_assert_int_eq(r.ids[r.n_ids - 1], model->cfg.eos_token_id);
}
END_TEST

/* --- scoring the prompt (echo with logprobs) across chunks --- */

START_TEST(test_prompt_logprobs_across_chunks)
{
    int p[21];
    make_prompt(p, 21, 11);
    sasp_gen_params g = sampled(4, 3);
    g.logprobs = 1;
    g.prompt_logprobs = 1;
    result one, chunked;
    run_alone(1, 0, 64, p, 21, &g, &one);
    run_alone(1, 0, 4, p, 21, &g, &chunked);
    ck_assert_int_eq(one.n_prompt_events, 1);
    ck_assert_int_eq(one.n_prompt_info, 20); /* every prompt token but the first */
    ck_assert_int_eq(chunked.n_prompt_info, 20);
    for (int k = 0; k < 20; k++) ck_assert(one.prompt_logprob[k] <= 0);
    same_result(&one, &chunked, "scored in 6 chunks against one"); /* the prompt's logprobs too */
}
END_TEST

/* --- constraints: token healing, JSON documents, logit biases; scoring only; several models --- */

/* The model's own arg-max: temperature 0 and none of the default penalties (frequency, DRY). */
static sasp_gen_params greedy(int max_tokens)
{
    sasp_gen_params g = sampled(max_tokens, 1);
    g.sampling.temperature = 0;
    g.sampling.frequency_penalty = 0;
    g.sampling.dry_multiplier = 0;
    return g;
}

/* Token healing on prompts that end inside what would be one token: greedy healed generation from P
 * gives ids G and text C. The prompt read is P's ids less the last; the generated bytes start with
 * the removed ones, which the text does not repeat (decode(kept + G) == P + C); and G is the model's
 * own greedy continuation of that joint sequence: a plain greedy run from kept + G[0..c] continues
 * with G[c+1..], G[c] the token that completes the removed bytes (usually G[0]). When encode(P + C) is the joint sequence itself (the model chose the tokenisation training
 * would have), that is checked too and counted; with sasp-small it holds on most boundary prompts. */
static int check_healing(sasp_model *m, sasp_tokenizer *tk, const char *prompt)
{
    int *ids;
    int n = sasp_encode(tk, prompt, strlen(prompt), 1, &ids);
    ck_assert_int_ge(n, 2);
    size_t removed_len;
    const char *removed = sasp_token_bytes(tk, ids[n - 1], &removed_len);
    char err[256];
    sasp_sched *s = sasp_sched_new(m, tk, 1, 0, 4, 64, err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    sasp_gen_params g = greedy(12);
    g.token_healing = 1;
    result healed, plain;
    sasp_job *job = job1(ids, n, &g);
    submit(s, job);
    collect(job, &healed, 1);
    sasp_job_release(job);
    ck_assert_int_eq(healed.prompt_tokens, n - 1);
    ck_assert_int_eq(healed.completion_tokens, healed.n_ids);
    /* the generated bytes begin with the removed token's, and the text starts where the prompt ended */
    size_t gl, jl;
    char *gen = sasp_decode(tk, healed.ids, healed.n_ids, &gl);
    ck_assert_uint_ge(gl, removed_len);
    ck_assert_mem_eq(gen, removed, removed_len);
    int joint[600];
    memcpy(joint, ids, (size_t)(n - 1) * sizeof *joint);
    memcpy(joint + n - 1, healed.ids, (size_t)healed.n_ids * sizeof *joint);
    char *all = sasp_decode(tk, joint, n - 1 + healed.n_ids, &jl);
    ck_assert_uint_eq(jl, strlen(prompt) + (gl - removed_len));
    ck_assert_mem_eq(all, prompt, strlen(prompt));
    if (healed.len == gl - removed_len) ck_assert_mem_eq(healed.text, gen + removed_len, healed.len);
    /* the model's own greedy continuation of kept + G[0..c], where G[c] is the token that completes
     * the removed bytes (the ones before it are prefixes of them, still under the constraint) */
    int c = 0;
    for (size_t got = 0; c < healed.n_ids; c++) {
        size_t tb = 0;
        sasp_token_bytes(tk, healed.ids[c], &tb);
        if ((got += tb) >= removed_len) break;
    }
    ck_assert_int_lt(c, healed.n_ids);
    sasp_gen_params g2 = greedy(healed.n_ids - 1 - c);
    job = job1(joint, n + c, &g2);
    submit(s, job);
    collect(job, &plain, 1);
    sasp_job_release(job);
    ck_assert_int_eq(plain.n_ids, healed.n_ids - 1 - c);
    ck_assert_mem_eq(plain.ids, healed.ids + 1 + c, (size_t)plain.n_ids * sizeof *plain.ids);
    /* and, when it holds, the joint tokenisation of P + C */
    int *again, canonical = 0;
    int na = sasp_encode(tk, all, jl, 1, &again);
    if (na >= n - 1 + healed.n_ids - 1 && !memcmp(again, joint, (size_t)(n - 1 + healed.n_ids - 1) * sizeof *again))
        canonical = 1;
    free(again);
    free(all);
    free(gen);
    free(ids);
    sasp_sched_free(s);
    return canonical;
}

START_TEST(test_token_healing)
{
    static const char *const prompts[] = {"def add(a, b):\n", "def add(a, b):\n    ret", "for i in ran",
                                          "import o", "x = [1, 2,", "if __name__ == \"__ma"};
    int n = (int)(sizeof prompts / sizeof *prompts);
    for (int i = 0; i < n; i++) check_healing(model, tok, prompts[i]);
    /* with the shipped model, whose greedy output means something, also the joint tokenisation */
    char dir[4096], path[4200], err[512];
    snprintf(dir, sizeof dir, "%s/models/sasp-small", srcdir());
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    sasp_model *small = sasp_model_load(dir, 1, err, sizeof err);
    if (!small) return; /* a tree without the shipped model: the tiny one's checks stand */
    sasp_tokenizer *stok = sasp_tokenizer_load(path, err, sizeof err);
    ck_assert_msg(stok != NULL, "%s", err);
    int canonical = 0;
    for (int i = 0; i < n; i++) canonical += check_healing(small, stok, prompts[i]);
    fprintf(stderr, "token healing: encode(P + C) is the healed sequence for %d of %d prompts (sasp-small)\n",
            canonical, n);
    ck_assert_int_ge(canonical, n / 2);
    sasp_tokenizer_free(stok);
    sasp_model_free(small);
}
END_TEST

/* A JSON schema enforced on random sampling: the text parses as the schema's document, the sequence
 * ends with "stop" as soon as it closes, even when max_tokens leaves just enough room. */
START_TEST(test_json_constraint)
{
    char err[256];
    json_t *schema = json_loads("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
                                "\"b\":{\"type\":\"array\",\"items\":{\"type\":\"boolean\"}}},\"required\":[\"a\",\"b\"]}",
                                0, NULL);
    sasp_json_schema *js = sasp_json_schema_compile(schema, err, sizeof err);
    ck_assert_msg(js != NULL, "%s", err);
    int need = sasp_json_schema_min_len(js);
    sasp_sched *s = new_sched(4, 0, 8, 64);
    int prompt[6];
    make_prompt(prompt, 6, 3);
    for (int k = 0; k < 8; k++) {
        sasp_gen_params g = sampled(k < 4 ? 60 : need, 100 + (uint64_t)k);
        g.json = js;
        g.ignore_eos = 0;
        result r;
        sasp_job *job = job1(prompt, 6, &g);
        submit(s, job);
        collect(job, &r, 1);
        sasp_job_release(job);
        json_error_t je;
        json_t *doc = json_loadb(r.text, r.len, 0, &je);
        ck_assert_msg(doc != NULL, "not JSON (%s): %s", je.text, r.text);
        ck_assert(json_is_integer(json_object_get(doc, "a")) && json_is_array(json_object_get(doc, "b")));
        ck_assert_str_eq(r.finish, "stop");
        json_decref(doc);
    }
    sasp_sched_free(s);
    sasp_json_schema_free(js);
    json_decref(schema);
}
END_TEST

/* A bias of +100 on one token makes greedy decoding choose it every time; -100 on the greedy choice
 * moves it elsewhere. */
START_TEST(test_logit_bias)
{
    int prompt[5];
    make_prompt(prompt, 5, 9);
    sasp_logit_bias up = {77, 100.0f};
    sasp_gen_params g = greedy(6);
    g.logit_bias = &up;
    g.n_logit_bias = 1;
    result r, base;
    run_alone(1, 0, 64, prompt, 5, &g, &r);
    for (int i = 0; i < r.n_ids; i++) ck_assert_int_eq(r.ids[i], 77);
    sasp_gen_params g0 = greedy(1);
    run_alone(1, 0, 64, prompt, 5, &g0, &base);
    sasp_logit_bias down = {base.ids[0], -100.0f};
    g0.logit_bias = &down;
    g0.n_logit_bias = 1;
    run_alone(1, 0, 64, prompt, 5, &g0, &r);
    ck_assert_int_ne(r.ids[0], base.ids[0]);
}
END_TEST

/* max_tokens 0 with prompt scoring: the prompt event, then the end ("length"), no token. */
START_TEST(test_score_only)
{
    int prompt[20];
    make_prompt(prompt, 20, 4);
    sasp_gen_params g = greedy(0);
    g.prompt_logprobs = 1;
    g.logprobs = 1;
    result r;
    run_alone(1, 0, 8, prompt, 20, &g, &r);
    ck_assert_int_eq(r.n_prompt_events, 1);
    ck_assert_int_eq(r.n_prompt_info, 19);
    ck_assert_int_eq(r.n_ids, 0);
    ck_assert_int_eq(r.completion_tokens, 0);
    ck_assert_str_eq(r.finish, "length");
}
END_TEST

/* --- embeddings --- */

/* The embedding of ids by one forward pass over them all: the mean (or the last) of the final hidden
 * states in float64, L2-normalised. */
static void reference_embedding(const int *ids, int n, int pooling, double *out)
{
    int d = model->cfg.d_model;
    sasp_kv *kv = sasp_kv_new(model, n);
    float *hidden = malloc((size_t)n * (size_t)d * sizeof *hidden);
    ck_assert(kv && hidden);
    sasp_step st = {.kv = kv, .tokens = ids, .n_tokens = n, .n_hidden = n, .hidden = hidden};
    char err[256];
    ck_assert_int_eq(sasp_forward(model, &st, 1, err, sizeof err), 0);
    double norm = 0;
    for (int j = 0; j < d; j++) {
        out[j] = 0;
        for (int r = pooling == SASP_POOL_LAST ? n - 1 : 0; r < n; r++) out[j] += hidden[(size_t)r * d + j];
        norm += out[j] * out[j];
    }
    for (int j = 0; j < d; j++) out[j] /= sqrt(norm);
    free(hidden);
    sasp_kv_free(kv);
}

/* Embeddings through the scheduler (prompts longer than a chunk, fewer slots than inputs, mean and
 * last pooling in one job) equal one forward pass's pooled hidden states, and carry unit norm. */
START_TEST(test_embeddings_pool_hidden_states)
{
    enum { N = 4 };
    int lens[N] = {20, 7, 1, 13}, pools[N] = {SASP_POOL_MEAN, SASP_POOL_MEAN, SASP_POOL_MEAN, SASP_POOL_LAST};
    int prompts[N][20];
    int d = model->cfg.d_model, done = 0;
    double ref[N][512];
    ck_assert_int_le(d, 512);
    /* the references first: sasp_forward is not to run on one model from two threads at once (the
     * scheduler's engine thread owns the model while the job runs; computing a reference in the event
     * loop raced with it and failed 1 run in about 40 under load) */
    for (int i = 0; i < N; i++) {
        make_prompt(prompts[i], lens[i], 10 + i);
        reference_embedding(prompts[i], lens[i], pools[i], ref[i]);
    }
    sasp_sched *s = new_sched(2, 0, 8, 8);
    sasp_job *job = sasp_job_new(N);
    ck_assert_ptr_nonnull(job);
    for (int i = 0; i < N; i++) {
        sasp_gen_params g = greedy(1);
        g.pooling = pools[i];
        ck_assert_int_eq(sasp_job_set(job, i, prompts[i], lens[i], &g), 0);
    }
    submit(s, job);
    sasp_event ev;
    int got;
    while ((got = sasp_job_next(job, &ev, 100)) >= 0) {
        if (got == 0) continue;
        ck_assert_msg(ev.done && !ev.error, "an embedding ends in one event, without error");
        ck_assert_int_eq(ev.n_embedding, d);
        ck_assert_int_eq(ev.completion_tokens, 0);
        ck_assert_int_eq(ev.prompt_tokens, lens[ev.index]);
        double norm = 0, worst = 0;
        for (int j = 0; j < d; j++) {
            norm += (double)ev.embedding[j] * ev.embedding[j];
            worst = fmax(worst, fabs(ev.embedding[j] - ref[ev.index][j]));
        }
        ck_assert_msg(fabs(norm - 1) < 1e-5, "norm^2 %g", norm);
        ck_assert_msg(worst < 1e-5, "input %d: off the reference by %g", ev.index, worst);
        done++;
        sasp_event_clear(&ev);
    }
    ck_assert_int_eq(done, N);
    sasp_job_release(job);
    sasp_sched_free(s);
}
END_TEST

/* Two schedulers (two models) on one engine thread: both progress in the same period (their steps
 * alternate), each gives what it gives alone, and freeing one leaves the other serving. */
START_TEST(test_two_models_one_engine)
{
    char err[256];
    sasp_engine *e = sasp_engine_new(err, sizeof err);
    ck_assert_msg(e != NULL, "%s", err);
    sasp_sched *a = sasp_sched_new_on(e, model, tok, 2, 0, 4, 64, err, sizeof err);
    sasp_sched *b = sasp_sched_new_on(e, model, tok, 2, 0, 4, 64, err, sizeof err);
    ck_assert(a && b);
    int pa[7], pb[9];
    make_prompt(pa, 7, 1);
    make_prompt(pb, 9, 2);
    sasp_gen_params g = sampled(40, 5);
    result ra, rb, alone_a, alone_b;
    sasp_job *ja = job1(pa, 7, &g), *jb = job1(pb, 9, &g);
    submit(a, ja);
    submit(b, jb);
    collect(ja, &ra, 1);
    collect(jb, &rb, 1);
    ck_assert_uint_gt(stats(a).steps, 0);
    ck_assert_uint_gt(stats(b).steps, 0);
    sasp_job_release(ja);
    sasp_job_release(jb);
    run_alone(2, 0, 64, pa, 7, &g, &alone_a);
    run_alone(2, 0, 64, pb, 9, &g, &alone_b);
    same_result(&ra, &alone_a, "model a");
    same_result(&rb, &alone_b, "model b");
    sasp_sched_free(a);
    g.no_cache = 1; /* sampled: compared with a fresh prefill, bit for bit (see test_prompt_cache) */
    jb = job1(pb, 9, &g);
    submit(b, jb);
    collect(jb, &rb, 1);
    same_result(&rb, &alone_b, "model b after a left");
    sasp_job_release(jb);
    sasp_sched_free(b);
    sasp_engine_free(e);
}
END_TEST

/* --- the prompt cache --- */


static sasp_gen_params greedy_lp(int max_tokens)
{
    sasp_gen_params g = greedy(max_tokens);
    g.logprobs = 1;
    g.top_logprobs = 8;
    return g;
}

static void run_on(sasp_sched *s, const int *prompt, int n, const sasp_gen_params *g, result *out)
{
    sasp_job *job = job1(prompt, n, g);
    submit(s, job);
    collect(job, out, 1);
    sasp_job_release(job);
}

/* The model's own contract, as the cache uses it: a prefix kept by sasp_kv_truncate, or copied by
 * sasp_kv_copy, then the rest fed, gives the logits of one prefill of the whole, bit for bit. */
START_TEST(test_kv_reuse_equals_prefill)
{
    enum { P = 30,
           Q = 10,
           R = 15 };
    int vocab = model->cfg.vocab_size, pq[P + Q], pr[P + R];
    make_prompt(pq, P, 1);
    make_prompt(pq + P, Q, 2);
    memcpy(pr, pq, sizeof(int) * P);
    make_prompt(pr + P, R, 3);
    float *cold = malloc(sizeof(float) * Q * (size_t)vocab), *hot = malloc(sizeof(float) * Q * (size_t)vocab);
    float *copied = malloc(sizeof(float) * Q * (size_t)vocab), *junk = malloc(sizeof(float) * (size_t)vocab);
    sasp_kv *a = sasp_kv_new(model, 0), *b = sasp_kv_new(model, 0), *c = sasp_kv_new(model, 0);
    char err[256];
    sasp_step st = {.kv = a, .tokens = pq, .n_tokens = P + Q, .n_logits = Q, .logits = cold};
    ck_assert_msg(sasp_forward(model, &st, 1, err, sizeof err) == 0, "%s", err);
    st = (sasp_step){.kv = b, .tokens = pr, .n_tokens = P + R, .n_logits = 1, .logits = junk};
    ck_assert_msg(sasp_forward(model, &st, 1, err, sizeof err) == 0, "%s", err);
    sasp_kv_truncate(model, b, P);
    st = (sasp_step){.kv = b, .tokens = pq + P, .n_tokens = Q, .n_logits = Q, .logits = hot};
    ck_assert_msg(sasp_forward(model, &st, 1, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(sasp_kv_copy(model, c, b, P), 0);
    st = (sasp_step){.kv = c, .tokens = pq + P, .n_tokens = Q, .n_logits = Q, .logits = copied};
    ck_assert_msg(sasp_forward(model, &st, 1, err, sizeof err) == 0, "%s", err);
    for (size_t i = 0; i < (size_t)Q * (size_t)vocab; i++) {
        ck_assert_msg(!memcmp(&cold[i], &hot[i], sizeof(float)), "truncated: logit %zu %.9g against %.9g", i, hot[i],
                      cold[i]);
        ck_assert_msg(!memcmp(&cold[i], &copied[i], sizeof(float)), "copied: logit %zu %.9g against %.9g", i,
                      copied[i], cold[i]);
    }
    sasp_kv_free(a), sasp_kv_free(b), sasp_kv_free(c);
    free(cold), free(hot), free(copied), free(junk);
}
END_TEST

/* The same prompt again, and one that shares its first 30 tokens, through the scheduler: they reuse
 * the slot's cache (all but the last prompt token; the shared 30) and give what a cold prefill gives. */
START_TEST(test_prompt_cache_hot_equals_cold)
{
    int prompt[40], other[40];
    make_prompt(prompt, 40, 5);
    memcpy(other, prompt, sizeof(int) * 30);
    make_prompt(other + 30, 10, 6);
    sasp_gen_params g = greedy_lp(12), gc = g;
    gc.no_cache = 1;
    result cold, hot, cold2, hot2;
    sasp_sched *s = new_sched(2, 0, 8, 64);
    run_on(s, prompt, 40, &gc, &cold);
    ck_assert_int_eq(cold.cached_tokens, 0);
    run_on(s, prompt, 40, &g, &hot);
    ck_assert_int_eq(hot.cached_tokens, 39);
    ck_assert_int_eq(hot.slot, cold.slot);
    same_result(&cold, &hot, "the same prompt again");
    run_on(s, other, 40, &g, &hot2);
    ck_assert_int_eq(hot2.cached_tokens, 30);
    run_alone(1, 0, 64, other, 40, &gc, &cold2);
    same_result(&cold2, &hot2, "a prompt sharing 30 tokens");
    sasp_sched_stats st = stats(s);
    ck_assert_uint_eq(st.cached_tokens, 39 + 30);
    ck_assert_uint_eq(st.prompt_tokens, 40 + 1 + 10);
    /* the slot table says what the cache holds and what the last prompt reused */
    sasp_slot_info info = slot(s, hot2.slot);
    ck_assert_int_eq(info.n_reused, 30);
    ck_assert_int_eq(info.n_cached, 40 + 11);
    sasp_sched_free(s);
}
END_TEST

/* Two requests sharing a prefix that one slot holds run at once: one reuses that slot, the other
 * takes a free slot and copies the prefix in; both give what they give cold, alone. */
START_TEST(test_prompt_cache_shared_prefix_at_once)
{
    int warm[32], a[40], b[40];
    make_prompt(warm, 32, 7);
    memcpy(a, warm, sizeof(int) * 30);
    memcpy(b, warm, sizeof(int) * 30);
    make_prompt(a + 30, 10, 8);
    make_prompt(b + 30, 10, 9);
    sasp_gen_params g = greedy_lp(10), gc = g;
    gc.no_cache = 1;
    sasp_sched *s = new_sched(3, 0, 8, 64);
    result w, hot[2], cold[2];
    run_on(s, warm, 32, &g, &w);
    sasp_job *job = sasp_job_new(2); /* one job: both queued at once */
    ck_assert_int_eq(sasp_job_set(job, 0, a, 40, &g), 0);
    ck_assert_int_eq(sasp_job_set(job, 1, b, 40, &g), 0);
    submit(s, job);
    collect(job, hot, 2);
    sasp_job_release(job);
    ck_assert_int_eq(hot[0].cached_tokens, 30);
    ck_assert_int_eq(hot[1].cached_tokens, 30);
    ck_assert_int_ne(hot[0].slot, hot[1].slot);
    ck_assert_uint_ge(stats(s).copied_tokens, 30);
    run_alone(1, 0, 64, a, 40, &gc, &cold[0]);
    run_alone(1, 0, 64, b, 40, &gc, &cold[1]);
    same_result(&cold[0], &hot[0], "a, batched with b, from the cache");
    same_result(&cold[1], &hot[1], "b, batched with a, its prefix copied from a's slot");
    sasp_sched_free(s);
}
END_TEST

/* One slot: a prompt evicted by another one comes back from the host cache (--cache-ram). */
START_TEST(test_prompt_cache_host)
{
    int pa[40], pb[40];
    make_prompt(pa, 40, 10);
    make_prompt(pb, 40, 11);
    sasp_gen_params g = greedy_lp(8), gc = g;
    gc.no_cache = 1;
    sasp_sched *s = new_sched(1, 0, 8, 64);
    sasp_sched_set_cache_ram(s, 16u << 20);
    result ra, rb, again, cold;
    run_on(s, pa, 40, &g, &ra);
    run_on(s, pb, 40, &g, &rb);
    ck_assert_int_eq(rb.cached_tokens, 0);
    ck_assert_uint_eq(stats(s).host_saves, 1);
    run_on(s, pa, 40, &g, &again);
    ck_assert_int_eq(again.cached_tokens, 39);
    sasp_sched_stats st = stats(s);
    ck_assert_uint_eq(st.host_hits, 1);
    ck_assert_int_ge(st.host_entries, 1);
    ck_assert_uint_gt(st.host_bytes, 0);
    run_alone(1, 0, 64, pa, 40, &gc, &cold);
    same_result(&cold, &again, "restored from the host cache");
    sasp_sched_free(s);
}
END_TEST

/* A request goes to the slot that holds its prefix; cache off (no_cache) and prompt scoring reuse
 * nothing; a request that only reads its prompt (max_tokens 0) fills the cache for the next. */
START_TEST(test_prompt_cache_slot_choice_and_off)
{
    int pa[20], pb[20], pa2[24];
    make_prompt(pa, 20, 12);
    make_prompt(pb, 20, 13);
    memcpy(pa2, pa, sizeof pa);
    make_prompt(pa2 + 20, 4, 14);
    sasp_gen_params g = greedy(4), off = g, read = g, score = g;
    off.no_cache = 1;
    read.max_tokens = 0;
    score.max_tokens = 0;
    score.prompt_logprobs = score.logprobs = 1;
    sasp_sched *s = new_sched(2, 0, 8, 64);
    result ra, rb, r;
    run_on(s, pa, 20, &g, &ra);
    run_on(s, pb, 20, &g, &rb);
    ck_assert_int_ne(ra.slot, rb.slot);
    run_on(s, pa2, 24, &g, &r);
    ck_assert_int_eq(r.slot, ra.slot);
    ck_assert_int_eq(r.cached_tokens, 20);
    run_on(s, pa2, 24, &off, &r);
    ck_assert_int_eq(r.cached_tokens, 0);
    run_on(s, pa2, 24, &score, &r);
    ck_assert_int_eq(r.cached_tokens, 0);
    ck_assert_int_eq(r.n_prompt_events, 1);
    run_on(s, pb, 20, &read, &r); /* reads the prompt into the cache, generates nothing */
    ck_assert_int_eq(r.n_ids, 0);
    ck_assert_str_eq(r.finish, "length");
    ck_assert_int_eq(r.end, SASP_END_LIMIT);
    run_on(s, pb, 20, &g, &r);
    ck_assert_int_eq(r.cached_tokens, 19);
    sasp_sched_free(s);
}
END_TEST

/* The host cache on its own: it keeps within its budget (least recently used out first), a longer copy
 * replaces the entries it holds whole, and slot choice prefers the longest shared prefix, then the
 * least recently used slot. */
START_TEST(test_host_cache_and_slot_choice)
{
    enum { N = 40 };
    int ids[3][N + 8];
    sasp_kv *kv = sasp_kv_new(model, 0);
    char err[256];
    for (int k = 0; k < 3; k++) make_prompt(ids[k], N + 8, 20 + k);
    float *junk = malloc(sizeof(float) * (size_t)model->cfg.vocab_size);
    size_t one = 0;
    sasp_host_cache *h = NULL;
    for (int k = 0; k < 3; k++) {
        sasp_kv_truncate(model, kv, 0);
        sasp_step st = {.kv = kv, .tokens = ids[k], .n_tokens = N, .n_logits = 1, .logits = junk};
        ck_assert_msg(sasp_forward(model, &st, 1, err, sizeof err) == 0, "%s", err);
        if (k == 0) { /* measure one entry, then allow two and a half */
            sasp_host_cache *probe = sasp_host_cache_new(model, 1u << 30);
            ck_assert_int_eq(sasp_host_cache_save(probe, kv, ids[k], N), 1);
            int entries;
            sasp_host_cache_usage(probe, &entries, &one);
            sasp_host_cache_free(probe);
            h = sasp_host_cache_new(model, 2 * one + one / 2);
        }
        ck_assert_int_eq(sasp_host_cache_save(h, kv, ids[k], N), 1);
    }
    int n, common;
    size_t bytes;
    sasp_host_cache_usage(h, &n, &bytes);
    ck_assert_int_eq(n, 2);
    ck_assert_uint_le(bytes, 2 * one + one / 2);
    ck_assert_int_eq(sasp_host_cache_find(h, ids[0], N, &common), -1); /* the oldest went */
    ck_assert_int_ge(sasp_host_cache_find(h, ids[2], N, &common), 0);
    ck_assert_int_eq(common, N);
    ck_assert_int_eq(sasp_host_cache_save(h, kv, ids[2], N), 0); /* already held */
    sasp_host_cache_free(h);
    sasp_kv_free(kv);
    free(junk);
    int a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 9, 9}, p[4] = {1, 2, 3, 7};
    sasp_slot_view v[3] = {{b, 4, 1, 5}, {a, 4, 1, 9}, {NULL, 0, 1, 1}};
    ck_assert_int_eq(sasp_pick_slot(v, 3, p, 4, 1), 1); /* the longest shared prefix */
    ck_assert_int_eq(sasp_pick_slot(v, 3, p, 4, 0), 2); /* no reuse: the least recently used */
    v[1].free = 0;
    ck_assert_int_eq(sasp_pick_slot(v, 3, p, 4, 1), 0);
    v[0].free = v[2].free = 0;
    ck_assert_int_eq(sasp_pick_slot(v, 3, p, 4, 1), -1);
}
END_TEST

/* --- editor limits: n_indent, t_max_predict_ms; why a sequence ended --- */

START_TEST(test_indent_scan)
{
    size_t cut;
    const char *ok = "x = 1\n    y = 2\n    return y";
    ck_assert_int_eq(sasp_indent_scan(ok, strlen(ok), 4, &cut), 0);
    ck_assert_uint_eq(cut, strlen(ok));
    const char *out = "x = 1\n    y = 2\ndef g():";
    ck_assert_int_eq(sasp_indent_scan(out, strlen(out), 4, &cut), 1);
    ck_assert_uint_eq(cut, strlen("x = 1\n    y = 2\n")); /* the line is cut whole, the newline kept */
    const char *held = "x = 1\n  ";                       /* undecided: held back from the newline */
    ck_assert_int_eq(sasp_indent_scan(held, strlen(held), 4, &cut), 0);
    ck_assert_uint_eq(cut, strlen("x = 1"));
    const char *blank = "x\n\n    y"; /* a blank line does not end the block */
    ck_assert_int_eq(sasp_indent_scan(blank, strlen(blank), 4, &cut), 0);
    const char *tabs = "x\n\ty";
    ck_assert_int_eq(sasp_indent_scan(tabs, strlen(tabs), 1, &cut), 0);
    ck_assert_int_eq(sasp_indent_scan(tabs, strlen(tabs), 2, &cut), 1);
    const char *first = "no newline at all"; /* the cursor's line is never checked */
    ck_assert_int_eq(sasp_indent_scan(first, strlen(first), 8, &cut), 0);
    ck_assert_int_eq(sasp_indent_scan(out, strlen(out), 0, &cut), 0);
}
END_TEST

/* The id of a text that is one token of the tiny model. */
static int one_token(const char *text)
{
    int *ids, n = sasp_encode(tok, text, strlen(text), 0, &ids);
    ck_assert_int_eq(n, 1);
    int id = ids[0];
    free(ids);
    return id;
}

/* Forced tokens (logit biases) end a sequence for each reason, and say which. */
START_TEST(test_end_causes)
{
    int prompt[6];
    make_prompt(prompt, 6, 15);
    int nl = one_token("\n");
    sasp_logit_bias to_nl = {nl, 100.0f}, to_eos = {0, 100.0f};
    result r;
    sasp_gen_params g = greedy(50);
    g.logit_bias = &to_nl;
    g.n_logit_bias = 1;
    g.stop[0] = "\n\n";
    g.n_stop = 1;
    run_alone(1, 0, 64, prompt, 6, &g, &r);
    ck_assert_int_eq(r.end, SASP_END_WORD);
    ck_assert_str_eq(r.stop_word, "\n\n");
    g.n_stop = 0;
    g.t_max_predict_ms = 30; /* a newline every token; the step delay makes them slow */
    sasp_sched *s = new_sched(1, 0, 4, 64);
    sasp_sched_set_step_delay(s, 10);
    run_on(s, prompt, 6, &g, &r);
    ck_assert_int_eq(r.end, SASP_END_LIMIT);
    ck_assert_str_eq(r.finish, "length");
    ck_assert_int_lt(r.completion_tokens, 50);
    sasp_sched_free(s);
    g.t_max_predict_ms = 0;
    g.logit_bias = &to_eos;
    g.ignore_eos = 0;
    run_alone(1, 0, 64, prompt, 6, &g, &r);
    ck_assert_int_eq(r.end, SASP_END_EOS);
    g.n_logit_bias = 0;
    g.ignore_eos = 1;
    g.max_tokens = 3;
    run_alone(1, 0, 64, prompt, 6, &g, &r);
    ck_assert_int_eq(r.end, SASP_END_LIMIT);
    g.max_tokens = 50;
    run_alone(1, 12, 64, prompt, 6, &g, &r);
    ck_assert_int_eq(r.end, SASP_END_CONTEXT);
}
END_TEST

/* Healing by bytes the caller backed off (an infill's cursor token): the output starts with them,
 * the text does not repeat them. */
START_TEST(test_heal_text)
{
    int prompt[6];
    make_prompt(prompt, 6, 16);
    sasp_gen_params g = sampled(6, 3);
    g.heal_text = "th";
    g.heal_len = 2;
    result r;
    run_alone(1, 0, 64, prompt, 6, &g, &r);
    size_t gl;
    char *gen = sasp_decode(tok, r.ids, r.n_ids, &gl);
    ck_assert_uint_ge(gl, 2);
    ck_assert_mem_eq(gen, "th", 2);
    /* the text is the rest as the streaming decoder writes it (bytes that are not UTF-8 become U+FFFD) */
    sasp_utf8_stream u;
    sasp_stream_init(&u);
    char *want = malloc(3 * gl + 24);
    size_t wl = sasp_stream_push(&u, gen + 2, gl - 2, want, 3 * gl + 8);
    wl += sasp_stream_finish(&u, want + wl, 16);
    ck_assert_uint_eq(r.len, wl);
    ck_assert_mem_eq(r.text, want, r.len);
    free(want);
    free(gen);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("scheduler");
    TCase *tc = tcase_create("engine");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_admission);
    tcase_add_test(tc, test_admission_multi_sequence_job);
    tcase_add_test(tc, test_chunked_prefill_interleaves_with_decode);
    tcase_add_test(tc, test_cancel_queued);
    tcase_add_test(tc, test_cancel_during_prefill);
    tcase_add_test(tc, test_cancel_while_generating);
    tcase_add_test(tc, test_queue_limit);
    tcase_add_test(tc, test_batching_invariance);
    tcase_add_test(tc, test_stop_strings);
    tcase_add_test(tc, test_length_and_finish_reasons);
    tcase_add_test(tc, test_prompt_logprobs_across_chunks);
    tcase_add_test(tc, test_token_healing);
    tcase_add_test(tc, test_json_constraint);
    tcase_add_test(tc, test_logit_bias);
    tcase_add_test(tc, test_score_only);
    tcase_add_test(tc, test_embeddings_pool_hidden_states);
    tcase_add_test(tc, test_two_models_one_engine);
    tcase_add_test(tc, test_kv_reuse_equals_prefill);
    tcase_add_test(tc, test_prompt_cache_hot_equals_cold);
    tcase_add_test(tc, test_prompt_cache_shared_prefix_at_once);
    tcase_add_test(tc, test_prompt_cache_host);
    tcase_add_test(tc, test_prompt_cache_slot_choice_and_off);
    tcase_add_test(tc, test_host_cache_and_slot_choice);
    tcase_add_test(tc, test_indent_scan);
    tcase_add_test(tc, test_end_causes);
    tcase_add_test(tc, test_heal_text);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
