/* check_scheduler.c: the engine loop of sasp-server through its C interface (scheduler.h), on the
 * tiny model of tests/fixtures/tiny-model: admission into the slots and the stats that report it,
 * chunked prefill interleaved with decoding (both progress in the same steps, and give what each gives
 * alone), cancellation while queued, during prefill and while generating, the queue limit (-1, which
 * the server answers 429) and jobs that can never fit (-3), shutdown (-2), batching invariance (a
 * request gives the same tokens alone or with 7 others), stop strings (across token boundaries, never
 * sent), max_tokens, a full context and the end-of-text token with their finish reasons, and prompt
 * scoring across prompt chunks. Sampling uses fixed seeds, so every run is the same; step delays
 * slow the engine where a test must see a stage. The tiny model's weights are random: greedy decoding
 * repeats the last prompt token, so most tests sample (temperature 1, no truncation). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"
#include "scheduler.h"
#include "tokenizer.h"
#include "util.h"

#ifndef SASP_SRCDIR
#define SASP_SRCDIR "."
#endif

static sasp_model *model;
static sasp_tokenizer *tok;

static void setup(void)
{
    const char *src = getenv("SASP_SRCDIR");
    if (!src || !*src) src = SASP_SRCDIR;
    char dir[4096], path[4200], err[512];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/tiny-model", src);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    model = sasp_model_load(dir, 1, err, sizeof err);
    ck_assert_msg(model != NULL, "%s", err);
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

static void same_result(const result *a, const result *b, const char *what)
{
    ck_assert_msg(a->n_ids == b->n_ids, "%s: %d tokens against %d", what, a->n_ids, b->n_ids);
    ck_assert_msg(!memcmp(a->ids, b->ids, (size_t)a->n_ids * sizeof *a->ids), "%s: other tokens", what);
    ck_assert_msg(a->len == b->len && !memcmp(a->text, b->text, a->len), "%s: other text", what);
    ck_assert_str_eq(a->finish, b->finish);
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
#define WAIT_FOR(cond)                                                                   \
    do {                                                                                 \
        int64_t until_ = sasp_now_ns() + 20 * 1000000000LL;                              \
        while (!(cond)) {                                                                \
            ck_assert_msg(sasp_now_ns() < until_, "timed out waiting for %s", #cond);    \
            sleep_us(200);                                                               \
        }                                                                                \
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
    ck_assert_uint_eq(st.ttft.n, 3);          /* one first token per sequence */
    ck_assert_uint_eq(st.token_latency.n, 87); /* and the gaps between the others */
    ck_assert_uint_ge(st.steps, 60); /* 30 steps each; the third starts once a slot frees */
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
    enum { CHUNK = 8, LONG = 96 };
    int pa[4], pb[LONG];
    make_prompt(pa, 4, 1);
    make_prompt(pb, LONG, 2);
    sasp_gen_params ga = sampled(80, 5), gb = sampled(10, 6);

    sasp_sched *s = new_sched(2, 0, 4, CHUNK);
    sasp_sched_set_step_delay(s, 4);
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
            ck_assert_int_eq(ib.n_past % CHUNK, 0);  /* b feeds whole chunks */
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

START_TEST(test_batching_invariance)
{
    int p[12];
    make_prompt(p, 12, 8);
    sasp_gen_params g = sampled(24, 1234);
    g.sampling.temperature = 0.8f; /* the server's defaults, and a seed */
    g.sampling.top_k = 40;
    g.sampling.top_p = 0.95f;
    g.sampling.min_p = 0.05f;
    result alone;
    run_alone(8, 0, 128, p, 12, &g, &alone);
    ck_assert_int_eq(alone.n_ids, 24);

    sasp_sched *s = new_sched(8, 0, 8, 128);
    int others[7][40];
    sasp_job *jobs[8];
    for (int i = 0; i < 8; i++) {
        if (i == 3) {
            jobs[i] = job1(p, 12, &g);
        } else { /* other prompts, lengths, seeds and lengths of answer */
            int k = i < 3 ? i : i - 1, n = 5 + 5 * k;
            make_prompt(others[k], n, 20 + k);
            sasp_gen_params go = sampled(10 + 4 * k, 50 + (uint64_t)k);
            jobs[i] = job1(others[k], n, &go);
        }
        submit(s, jobs[i]);
    }
    result res[8];
    for (int i = 0; i < 8; i++) collect(jobs[i], &res[i], 1);
    same_result(&res[3], &alone, "batched with 7 others");
    for (int i = 0; i < 8; i++) sasp_job_release(jobs[i]);
    sasp_sched_free(s);
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
    double worst = 0;
    for (int k = 0; k < 20; k++) {
        ck_assert(one.prompt_logprob[k] <= 0);
        double d = fabs((double)one.prompt_logprob[k] - chunked.prompt_logprob[k]);
        if (d > worst) worst = d;
    }
    /* not bit for bit: the forward pass sums in another order for another number of rows */
    ck_assert_msg(worst < 1e-5, "prompt logprobs differ by %g between chunk sizes", worst);
    same_result(&one, &chunked, "scored in 6 chunks against one");
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
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
