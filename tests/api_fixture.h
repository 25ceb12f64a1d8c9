/* api_fixture.h: what the wire-format tests (check_api.c, check_api_llama.c, check_api_dialects.c)
 * share: a test fixture's tokenizer, and feed(), which runs events through an answer being written and
 * collects every byte it gives. Functions of each test program (static), included once by each. */
#ifndef SASP_TESTS_API_FIXTURE_H
#define SASP_TESTS_API_FIXTURE_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "api/api.h"
#include "base/util.h"
#include "engine/scheduler.h"
#include "text/tokenizer.h"

/* tests/fixtures/FIXTURE/tokenizer.json, loaded (the test fails when it cannot be). */
static sasp_tokenizer *load_tokenizer(const char *fixture)
{
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/tests/fixtures/%s/tokenizer.json", SASP_SRCDIR, fixture);
    sasp_tokenizer *t = sasp_tokenizer_load(path, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    return t;
}

/* o's start, then each of the n events (cleared once written), then its finish: the bytes, malloc'd. */
static char *feed(api_out *o, sasp_event *evs, int n)
{
    sasp_buf all = {0};
    size_t k;
    char *b = api_out_start(o, &k);
    if (b) sasp_buf_append(&all, b, k);
    free(b);
    for (int i = 0; i < n; i++) {
        b = api_out_event(o, &evs[i], &k);
        if (b) sasp_buf_append(&all, b, k);
        free(b);
        sasp_event_clear(&evs[i]);
    }
    b = api_out_finish(o, &k);
    if (b) sasp_buf_append(&all, b, k);
    free(b);
    return sasp_buf_take(&all, NULL);
}

#endif
