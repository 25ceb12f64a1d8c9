/* metrics.c: GET /metrics, in Prometheus' text format: the requests answered by endpoint and status
 * (http/route.h), every model's scheduler (tokens, slots, the queue, engine steps, constraints, the
 * prompt cache) added up, the guard's counts, and the latency histograms. */
#include <stdio.h>

#include "http/guard.h"
#include "http/reply.h"
#include "http/route.h"
#include "server/handlers.h"
#include "server/models.h"

static void hist_text(sasp_buf *b, const char *name, const char *help, const sasp_hist *h)
{
    sasp_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < SASP_HIST_BUCKETS; i++) {
        cum += h->count[i];
        sasp_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->le[i], (unsigned long long)cum);
    }
    sasp_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name, (unsigned long long)h->n,
                    name, h->sum, name, (unsigned long long)h->n);
}

static void hist_add(sasp_hist *to, const sasp_hist *h)
{
    for (int i = 0; i < SASP_HIST_BUCKETS; i++) to->count[i] += h->count[i];
    to->n += h->n;
    to->sum += h->sum;
}

/* The stats of every loaded model's scheduler, added up (a model unloaded takes its counts with it). */
static void all_stats(sasp_sched_stats *st)
{
    sasp_sched_stats_empty(st);
    for (int i = 0; i < served_models_count(); i++) {
        sasp_sched_stats o;
        if (!served_model_take_loaded(served_model_at(i))) continue;
        sasp_sched_get_stats(served_model_at(i)->sched, &o);
        served_model_give_back(served_model_at(i));
        st->n_slots += o.n_slots, st->active += o.active, st->queued += o.queued;
        st->prompt_tokens += o.prompt_tokens, st->generated_tokens += o.generated_tokens;
        st->cancelled += o.cancelled, st->sequences_done += o.sequences_done, st->steps += o.steps;
        st->forward_seconds += o.forward_seconds, st->constraint_seconds += o.constraint_seconds;
        st->constrained_tokens += o.constrained_tokens;
        st->cached_tokens += o.cached_tokens, st->copied_tokens += o.copied_tokens;
        st->host_hits += o.host_hits, st->host_saves += o.host_saves, st->dropped_tokens += o.dropped_tokens;
        st->host_entries += o.host_entries, st->host_bytes += o.host_bytes;
        hist_add(&st->ttft, &o.ttft);
        hist_add(&st->token_latency, &o.token_latency);
    }
}

/* The prompt cache's series: prompt tokens served from it (and copied between caches), the host
 * cache of evicted prefixes, and the prompt tokens cut to fit the context. */
static void cache_metrics_text(sasp_buf *b, const sasp_sched_stats *st)
{
    sasp_buf_printf(b,
                    "# HELP sasp_prompt_tokens_cached_total Prompt tokens served from a prompt cache instead of computed.\n"
                    "# TYPE sasp_prompt_tokens_cached_total counter\nsasp_prompt_tokens_cached_total %llu\n"
                    "# HELP sasp_prompt_cache_copied_tokens_total Cached prompt tokens copied from another slot or the host cache.\n"
                    "# TYPE sasp_prompt_cache_copied_tokens_total counter\nsasp_prompt_cache_copied_tokens_total %llu\n"
                    "# HELP sasp_prompt_cache_host_hits_total Prefixes restored from the host cache (--cache-ram).\n"
                    "# TYPE sasp_prompt_cache_host_hits_total counter\nsasp_prompt_cache_host_hits_total %llu\n"
                    "# HELP sasp_prompt_cache_host_saves_total Evicted prefixes kept in the host cache.\n"
                    "# TYPE sasp_prompt_cache_host_saves_total counter\nsasp_prompt_cache_host_saves_total %llu\n"
                    "# HELP sasp_prompt_cache_host_entries Prefixes the host cache holds.\n"
                    "# TYPE sasp_prompt_cache_host_entries gauge\nsasp_prompt_cache_host_entries %d\n"
                    "# HELP sasp_prompt_cache_host_bytes Memory the host cache holds.\n"
                    "# TYPE sasp_prompt_cache_host_bytes gauge\nsasp_prompt_cache_host_bytes %zu\n"
                    "# HELP sasp_prompt_tokens_dropped_total Prompt tokens cut to fit the context.\n"
                    "# TYPE sasp_prompt_tokens_dropped_total counter\nsasp_prompt_tokens_dropped_total %llu\n",
                    (unsigned long long)st->cached_tokens, (unsigned long long)st->copied_tokens,
                    (unsigned long long)st->host_hits, (unsigned long long)st->host_saves, st->host_entries, st->host_bytes,
                    (unsigned long long)st->dropped_tokens);
}

enum MHD_Result handle_metrics(struct MHD_Connection *c, conn *k)
{
    sasp_sched_stats st;
    all_stats(&st);
    sasp_buf b = {0};
    route_metrics_text(&b);
    sasp_buf_printf(&b,
                    "# HELP sasp_prompt_tokens_total Prompt tokens processed.\n# TYPE sasp_prompt_tokens_total counter\n"
                    "sasp_prompt_tokens_total %llu\n"
                    "# HELP sasp_generated_tokens_total Tokens generated.\n# TYPE sasp_generated_tokens_total counter\n"
                    "sasp_generated_tokens_total %llu\n"
                    "# HELP sasp_requests_cancelled_total Sequences cancelled by their client (disconnect) before the end.\n"
                    "# TYPE sasp_requests_cancelled_total counter\nsasp_requests_cancelled_total %llu\n"
                    "# HELP sasp_sequences_finished_total Sequences that left the scheduler.\n"
                    "# TYPE sasp_sequences_finished_total counter\nsasp_sequences_finished_total %llu\n"
                    "# HELP sasp_slots_active Slots holding a sequence.\n# TYPE sasp_slots_active gauge\nsasp_slots_active %d\n"
                    "# HELP sasp_slots_total Slots (--parallel).\n# TYPE sasp_slots_total gauge\nsasp_slots_total %d\n"
                    "# HELP sasp_queue_depth Sequences waiting for a slot.\n# TYPE sasp_queue_depth gauge\nsasp_queue_depth %d\n"
                    "# HELP sasp_engine_steps_total Batched forward steps.\n# TYPE sasp_engine_steps_total counter\n"
                    "sasp_engine_steps_total %llu\n"
                    "# HELP sasp_engine_forward_seconds_total Time inside the batched forward pass.\n"
                    "# TYPE sasp_engine_forward_seconds_total counter\nsasp_engine_forward_seconds_total %.6f\n"
                    "# HELP sasp_constraint_seconds_total Time spent masking logits for JSON output and token healing.\n"
                    "# TYPE sasp_constraint_seconds_total counter\nsasp_constraint_seconds_total %.6f\n"
                    "# HELP sasp_constrained_tokens_total Tokens sampled under a constraint's mask.\n"
                    "# TYPE sasp_constrained_tokens_total counter\nsasp_constrained_tokens_total %llu\n",
                    (unsigned long long)st.prompt_tokens, (unsigned long long)st.generated_tokens,
                    (unsigned long long)st.cancelled, (unsigned long long)st.sequences_done, st.active, st.n_slots, st.queued,
                    (unsigned long long)st.steps, st.forward_seconds, st.constraint_seconds,
                    (unsigned long long)st.constrained_tokens);
    cache_metrics_text(&b, &st);
    guard_metrics_text(&b);
    hist_text(&b, "sasp_time_to_first_token_seconds", "From request to its first sampled token.", &st.ttft);
    hist_text(&b, "sasp_token_latency_seconds", "Between consecutive tokens of a sequence.", &st.token_latency);
    size_t n;
    char *text = sasp_buf_take(&b, &n);
    if (!text) return MHD_NO;
    return reply_buf(c, k, 200, "text/plain; version=0.0.4", text, n);
}
